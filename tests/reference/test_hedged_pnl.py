"""Delta-hedged P&L of European calls: zero mean and 1/sqrt(N) error when realised = hedge vol; mean equal to
the expected gamma P&L E[int e^{-rt} 1/2 Gamma_h S^2 (sigma_r^2 - sigma_h^2) dt] (computed here by nested
adaptive quadrature over time and the lognormal law of S_t) when they differ; path-block invariance."""

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.risk.hedging import hedged_pnl

SPOT, RATE = 100.0, 0.03
STRIKES, EXPIRIES = [90.0, 100.0, 115.0], [0.25, 1.0]


def test_matched_vols_mean_is_zero_and_std_shrinks_like_one_over_sqrt_steps():
    coarse = hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=0.2, hedge_vol=0.2, spot=SPOT, rate=RATE,
                        paths=8000, steps=40, seed=1)
    fine = hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=0.2, hedge_vol=0.2, spot=SPOT, rate=RATE,
                      paths=8000, steps=160, seed=2)
    for result in (coarse, fine):
        assert np.all(np.abs(result.mean) < 3.0 * result.std_error), (result.mean, result.std_error)
    ratio = coarse.std / fine.std
    # Relative standard error of a sample std is ~ sqrt((kurtosis - 1) / (4 n)) < 2.5 % here: 0.2 is > 4 of them.
    np.testing.assert_allclose(ratio, 2.0, atol=0.2)


def expected_gamma_pnl(strike, expiry, realised_vol, hedge_vol, spot=SPOT, rate=RATE):
    """E[int_0^T e^{-rt} 1/2 Gamma_h(t, S_t) S_t^2 (sigma_r^2 - sigma_h^2) dt], S_t lognormal with vol sigma_r
    and drift r; Gamma_h S^2 = S n(d1) / (sigma_h sqrt(T - t))."""

    def at_time(t):
        tau = expiry - t
        mean, stdev = np.log(spot) + (rate - 0.5 * realised_vol ** 2) * t, realised_vol * np.sqrt(t)

        def integrand(y):
            d1 = (y - np.log(strike) + (rate + 0.5 * hedge_vol ** 2) * tau) / (hedge_vol * np.sqrt(tau))
            gamma_s2 = np.exp(y) * norm.pdf(d1) / (hedge_vol * np.sqrt(tau))
            return gamma_s2 * norm.pdf(y, mean, stdev)

        lo, hi = mean - 12 * stdev, mean + 12 * stdev
        value, _ = integrate.quad(integrand, lo, hi, points=[np.clip(np.log(strike), lo, hi)], limit=200)
        return np.exp(-rate * t) * value

    value, _ = integrate.quad(at_time, 1e-12, expiry, limit=200, epsabs=1e-10)
    return 0.5 * (realised_vol ** 2 - hedge_vol ** 2) * value


@pytest.mark.parametrize("realised_vol, hedge_vol", [(0.30, 0.20), (0.15, 0.25)])
def test_mismatched_vols_mean_matches_expected_gamma_pnl(realised_vol, hedge_vol):
    result = hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=realised_vol, hedge_vol=hedge_vol,
                        spot=SPOT, rate=RATE, paths=10000, steps=40, seed=3)
    expected = np.array([expected_gamma_pnl(k, t, realised_vol, hedge_vol)
                         for k, t in zip(result.strikes, result.expiries)])
    assert np.all(np.abs(expected) > 10 * result.std_error)
    assert np.all(np.abs(result.mean - expected) < 4.0 * result.std_error), (result.mean, expected,
                                                                           result.std_error)


def test_grid_layout_statistics_and_path_and_option_tiles():
    a = hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=0.25, hedge_vol=0.2, paths=300, steps=12,
                   seed=4, block=64)
    b = hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=0.25, hedge_vol=0.2, paths=300, steps=12,
                   seed=4, block=32, option_block=4)
    np.testing.assert_array_equal(a.pnl, b.pnl)
    assert a.pnl.shape == (6, 300) and a.pnl.dtype == np.float64 and a.grid_shape == (3, 2)
    np.testing.assert_array_equal(a.strikes, np.repeat(STRIKES, 2))
    np.testing.assert_array_equal(a.expiries, np.tile(EXPIRIES, 3))
    np.testing.assert_allclose(a.mean, a.pnl.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(a.std, a.pnl.std(axis=1, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(a.quantiles, np.quantile(a.pnl, a.quantile_levels, axis=1).T, rtol=1e-12)
    frame = a.to_frame()
    assert list(frame.columns[:6]) == ["strike", "expiry", "moneyness", "mean", "std", "std_error"]
    with pytest.raises(InputError, match="hedge_vol"):
        hedged_pnl(strikes=STRIKES, expiries=EXPIRIES, realised_vol=0.2, hedge_vol=0.0)

"""Dupire local variance kernel and the local-vol grid: flat surfaces give constant local vol (to 1e-6),
term structure gives the forward vols, the kernel agrees with Dupire's formula in price space (finite
differences of Black prices), safeguards act and are counted, the grid interpolates as documented."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.kernels.dupire import dupire_denominator, dupire_local_variance
from shoals.kernels.svi import butterfly_density
from shoals.market.curves import ZeroCurve
from shoals.market.local_vol import LocalVolGrid, build_local_vol, local_vol_function
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface

EXPIRIES = np.array([0.1, 0.25, 0.5, 1.0, 2.0])


def market(surface, spot=100.0, rate=0.03, dividend=0.01):
    return MarketSnapshot(spot=jnp.asarray(spot), rate=ZeroCurve.flat(rate), dividend=ZeroCurve.flat(dividend),
                          surface=surface)


def flat_surface(vol=0.2):
    """b = 0: w(k, T) = a(T) = vol^2 T at every k."""
    return VolSurface.from_svi(expiries=EXPIRIES, a=vol ** 2 * EXPIRIES, b=0.0, rho=0.0, m=0.0, sigma=0.1)


def skew_surface():
    t = EXPIRIES
    return VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(t))


def local_variance_on_surface(surface, k, t, **options):
    d = surface.derivatives(k, t)
    return dupire_local_variance(log_moneyness=k, total_variance=d.w, dw_dk=d.dw_dk, d2w_dk2=d.d2w_dk2,
                                 dw_dt=d.dw_dt, **options)


def test_flat_surface_gives_constant_local_vol():
    surface = flat_surface(0.2)
    k = np.linspace(-1.5, 1.5, 61)[:, None]
    t = np.array([1e-3, 0.05, 0.1, 0.3, 0.77, 1.0, 1.9, 2.0, 3.5])[None, :]
    result = local_variance_on_surface(surface, k, t)
    np.testing.assert_allclose(np.sqrt(result.local_variance), 0.2, atol=1e-6)
    assert not np.any(result.safeguarded)


def test_flat_surface_grid_is_constant_with_rates_and_dividends():
    grid, report = build_local_vol(market(flat_surface(0.25), rate=0.05, dividend=0.02), n_times=41, n_spots=81,
                                   t_max=3.0)
    np.testing.assert_allclose(grid.vols, 0.25, atol=1e-6)
    assert report.clean and report.n_safeguarded == 0
    np.testing.assert_allclose(grid.vol(jnp.asarray([0.0, 0.5, 7.0]), jnp.asarray([1.0, 100.0, 1e4])), 0.25,
                               atol=1e-6)


def test_term_structure_gives_forward_vols():
    """b = 0 with a_i = v_i^2 T_i: sigma_loc^2 = (a_{i+1} - a_i) / (T_{i+1} - T_i) between slices."""
    vols = np.array([0.3, 0.25, 0.22, 0.2, 0.2])
    a = vols ** 2 * EXPIRIES
    surface = VolSurface.from_svi(expiries=EXPIRIES, a=a, b=0.0, rho=0.0, m=0.0, sigma=0.1)
    forward = np.sqrt(np.diff(a) / np.diff(EXPIRIES))
    middles = 0.5 * (EXPIRIES[1:] + EXPIRIES[:-1])
    got = np.sqrt(local_variance_on_surface(surface, 0.1, middles).local_variance)
    np.testing.assert_allclose(got, forward, rtol=1e-12)
    # the grid keeps the jump at each expiry: left limit at T_i, right limit just after
    grid, _ = build_local_vol(market(surface), n_times=21, n_spots=11, t_max=2.0)
    times = np.asarray(grid.times)
    for i in (1, 2, 3):
        at = np.flatnonzero(times == EXPIRIES[i])[0]
        np.testing.assert_allclose(grid.vols[at], forward[i - 1], rtol=1e-10)
        np.testing.assert_allclose(grid.vols[at + 1], forward[i], rtol=1e-10)
        assert times[at + 1] - times[at] == pytest.approx(2e-6)


def black_call(forward, strike, w, discount):
    s = np.sqrt(w)
    d1 = np.log(forward / strike) / s + 0.5 * s
    return discount * (forward * norm.cdf(d1) - strike * norm.cdf(d1 - s))


@pytest.mark.parametrize("strike", [75.0, 90.0, 100.0, 112.0, 130.0])
@pytest.mark.parametrize("t", [0.05, 0.4, 0.75, 1.5, 2.6])
def test_kernel_matches_dupire_in_price_space(strike, t):
    """sigma^2(K, T) = 2 (C_T + (r - q) K C_K + q C) / (K^2 C_KK) from central differences of the
    surface's Black call prices, at times away from the expiries."""
    surface, spot, r, q = skew_surface(), 100.0, 0.03, 0.01

    def call(K, T):
        forward = spot * np.exp((r - q) * T)
        w = float(surface.total_variance(np.log(K / forward), T))
        return black_call(forward, K, w, np.exp(-r * T))

    hk, ht = 3e-4 * strike, 1e-5
    c = call(strike, t)
    c_t = (call(strike, t + ht) - call(strike, t - ht)) / (2 * ht)
    c_k = (call(strike + hk, t) - call(strike - hk, t)) / (2 * hk)
    c_kk = (call(strike + hk, t) - 2 * c + call(strike - hk, t)) / hk ** 2
    price_space = 2 * (c_t + (r - q) * strike * c_k + q * c) / (strike ** 2 * c_kk)
    k = np.log(strike / (spot * np.exp((r - q) * t)))
    kernel = float(local_variance_on_surface(surface, k, t).local_variance)
    assert kernel == pytest.approx(price_space, rel=1e-4)


def test_denominator_is_the_butterfly_function():
    surface = skew_surface()
    k = jnp.linspace(-1.0, 1.0, 21)
    d = surface.derivatives(k, 0.6)
    np.testing.assert_allclose(
        dupire_denominator(log_moneyness=k, total_variance=d.w, dw_dk=d.dw_dk, d2w_dk2=d.d2w_dk2),
        butterfly_density(w=d.w, dw=d.dw_dk, d2w=d.d2w_dk2, log_moneyness=k), rtol=1e-13)


def test_safeguards_act_and_are_counted():
    k = jnp.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 0.3])
    result = dupire_local_variance(log_moneyness=k,
                                   total_variance=jnp.asarray([0.04, 0.04, 0.04, 0.04, 0.0, 0.04]),
                                   dw_dk=jnp.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
                                   d2w_dk2=jnp.asarray([0.0, 0.0, -2.5, 0.0, 0.0, 0.0]),
                                   dw_dt=jnp.asarray([0.04, -0.01, 0.04, 100.0, 0.04, 1e-12]))
    np.testing.assert_array_equal(result.numerator_floored, [False, True, False, False, False, False])
    np.testing.assert_array_equal(result.denominator_floored, [False, False, True, False, False, False])
    np.testing.assert_array_equal(result.result_capped, [False, False, True, True, False, False])
    np.testing.assert_array_equal(result.w_floored, [False, False, False, False, True, False])
    np.testing.assert_array_equal(result.result_floored, [False, True, False, False, False, True])
    np.testing.assert_array_equal(result.safeguarded, [False, True, True, True, True, True])
    np.testing.assert_allclose(result.local_variance, [0.04, 1e-8, 25.0, 25.0, 0.04, 1e-8])
    assert np.all(np.isfinite(result.local_variance))


def test_arbitrageable_surfaces_trigger_counted_safeguards():
    """A calendar violation (slice 3 below slice 2) floors the numerator; Vogt's butterfly-arbitrage slice
    floors the denominator.  Both are counted by the report and flagged in its mask; vols stay finite."""
    t = EXPIRIES
    a = 0.04 * t
    a[3] = 0.8 * a[2]
    calendar = VolSurface.from_svi(expiries=t, a=a, b=0.0, rho=0.0, m=0.0, sigma=0.1)
    grid, report = build_local_vol(market(calendar), n_times=41, n_spots=21)
    assert report.counts["numerator_floored"] > 0 and not report.clean
    assert report.n_safeguarded == int(np.count_nonzero(report.mask)) > 0
    between = (np.asarray(grid.times) > t[2]) & (np.asarray(grid.times) <= t[3])
    assert report.mask[between].all() and not report.mask[~between].any()
    assert "numerator_floored" in report.summary()
    assert report.core_counts["numerator_floored"] > 0
    assert 0 < report.n_safeguarded_core <= report.n_safeguarded
    k = np.log(np.asarray(grid.spots)[None, :] / np.asarray(market(calendar).forward(grid.times))[:, None])
    np.testing.assert_array_equal(report.core, np.abs(k) <= 1.5 * np.sqrt(np.asarray(grid.times))[:, None])

    vogt = VolSurface.from_svi(expiries=[1.0], a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    grid, report = build_local_vol(market(vogt, rate=0.0, dividend=0.0), n_times=11, n_spots=201,
                                   spot_range=(50.0, 400.0))
    assert report.counts["denominator_floored"] > 0
    assert np.all(np.isfinite(np.asarray(grid.vols)))
    k = np.log(np.asarray(grid.spots) / 100.0)
    flagged = report.mask[-1]                                 # t = T: the slice itself, D = g
    assert flagged.any() and np.all((k[flagged] > 0.55) & (k[flagged] < 1.35))


def test_kernel_is_jit_grad_safe_without_nans():
    surface = skew_surface()

    def local_vol(s, k, t):
        return jnp.sqrt(local_variance_on_surface(s, k, t).local_variance)

    value = jax.jit(local_vol)(surface, 0.1, 0.6)
    grads = jax.grad(local_vol)(surface, 0.1, 0.6)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    at_zero = dupire_local_variance(log_moneyness=0.0, total_variance=0.0, dw_dk=0.0, d2w_dk2=0.0, dw_dt=0.0)
    assert np.isfinite(at_zero.local_variance) and bool(at_zero.safeguarded)
    assert value.dtype == jnp.float64


def test_grid_matches_direct_local_vol_at_nodes_and_reports_settings():
    snapshot = market(skew_surface())
    grid, report = build_local_vol(snapshot, n_times=31, n_spots=41, t_max=1.5)
    f = local_vol_function(snapshot, side="left")
    times, spots = np.asarray(grid.times), np.asarray(grid.spots)
    inner = times[1:]
    direct, mask = f(inner[:, None], spots[None, :])
    np.testing.assert_allclose(np.asarray(grid.vols)[1:], direct, rtol=1e-12)
    assert not np.any(mask) and report.clean
    assert times[0] == 0.0 and times[-1] == 1.5
    assert set(report.expiry_nodes) == {0.1, 0.25, 0.5, 1.0}
    assert report.settings["n_spots"] == 41 and grid.vols.shape == (times.size, 41)
    assert spots[0] < 100.0 < spots[-1]


def test_grid_bilinear_interpolation_and_flat_extrapolation():
    times = jnp.asarray([0.0, 1.0, 2.0])
    spots = jnp.asarray([50.0, 100.0, 200.0])
    vols = 0.1 + 0.01 * times[:, None] + 0.001 * spots[None, :]          # bilinear: reproduced exactly
    grid = LocalVolGrid(times=times, spots=spots, vols=vols)
    t = jnp.asarray([0.3, 1.7, 0.0, 2.0])[:, None]
    s = jnp.asarray([60.0, 150.0, 199.0])[None, :]
    np.testing.assert_allclose(grid.vol(t, s), 0.1 + 0.01 * t + 0.001 * s, rtol=1e-14)
    np.testing.assert_allclose(grid.vol(-1.0, 10.0), vols[0, 0])
    np.testing.assert_allclose(grid.vol(5.0, 1e6), vols[-1, -1])
    np.testing.assert_allclose(grid.variance(0.3, 60.0), grid.vol(0.3, 60.0) ** 2)
    assert jax.jit(grid.vol)(0.5, 75.0).dtype == jnp.float64
    assert jax.grad(lambda g: g.vol(0.5, 75.0))(grid).vols.shape == (3, 3)


@pytest.mark.parametrize("times, spots, vols", [
    ([0.0, 0.0], [1.0, 2.0], np.ones((2, 2))),
    ([0.0, 1.0], [2.0, 1.0], np.ones((2, 2))),
    ([0.0, 1.0], [1.0, 2.0], np.ones((3, 2))),
    ([0.0], [1.0, 2.0], np.ones((1, 2))),
])
def test_grid_validation(times, spots, vols):
    with pytest.raises(InputError):
        LocalVolGrid(times=jnp.asarray(times), spots=jnp.asarray(spots), vols=jnp.asarray(vols))


def test_build_local_vol_validation():
    snapshot = market(flat_surface())
    with pytest.raises(InputError):
        build_local_vol(snapshot, n_times=1)
    with pytest.raises(InputError):
        build_local_vol(snapshot, t_max=0.0)
    with pytest.raises(InputError):
        build_local_vol(snapshot, spot_range=(120.0, 80.0))
    grid, _ = build_local_vol(snapshot, n_times=5, n_spots=5, spot_range=(80.0, 120.0))
    assert float(grid.spots[0]) == pytest.approx(80.0) and float(grid.spots[-1]) == pytest.approx(120.0)

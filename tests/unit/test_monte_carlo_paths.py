"""Path engine units: Brownian-bridge matrix, step draws, QMC against pseudo-random at equal paths, the
seed's exercises (4M-path European call and put and arithmetic Asian call in seeded batches), bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shoals as sh
from shoals.kernels.monte_carlo import counter_normals, step_normals, stream_keys
from shoals.kernels.paths import brownian_bridge_matrix

MARKET = sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)


@pytest.mark.parametrize("n", [1, 2, 5, 12, 64])
def test_brownian_bridge_gives_independent_standard_increments(n):
    m = brownian_bridge_matrix(n)
    np.testing.assert_allclose(m @ m.T, np.eye(n), atol=1e-12)     # Cov(dZ) = I
    np.testing.assert_allclose(m[:, 0], np.full(n, 1.0 / np.sqrt(n)), atol=1e-14)  # z_0 sets W_1 = sum dZ / sqrt(N)


def test_step_zero_draws_are_the_european_draws():
    key = stream_keys(4, np.array([7]))[0]
    draws = jnp.arange(1000, dtype=jnp.uint32)
    np.testing.assert_array_equal(np.asarray(jax.jit(step_normals)(key, 0, draws)),
                                  np.asarray(jax.jit(counter_normals)(key, draws.astype(jnp.uint64))))
    assert not np.any(np.asarray(step_normals(key, 1, draws)) == np.asarray(step_normals(key, 0, draws)))


def _error_spread(method, instrument, exact, seeds):
    values = np.array([float(method(seed).price(instrument, MARKET).value) for seed in seeds])
    return np.sqrt(np.mean((values - exact) ** 2))


def test_qmc_beats_pseudo_random_at_equal_paths():
    """Root-mean-square error over 6 seeds at 16,384 paths, European (closed form) and geometric Asian
    (closed form, 12 fixings: a 12-dimensional Sobol problem with the Brownian bridge)."""
    from shoals.kernels.asian import geometric_asian_price

    seeds = range(6)
    cases = {
        "european": (sh.European(strike=100.0, maturity=1.0), float(sh.price(sh.European(strike=100.0, maturity=1.0),
                                                                             MARKET).value)),
        "asian": (sh.Asian(maturity=1.0, fixings=12, strike=100.0, geometric=True),
                  float(geometric_asian_price(spots=100.0, strikes=100.0, expiries=1.0, volatilities=0.2, rates=0.05,
                                              dividend_yields=0.0, fixings=12, is_call=True))),
    }
    for name, (instrument, exact) in cases.items():
        # control_variate=False and qmc=False on a European would take the one-step kernel: same estimator
        pseudo = _error_spread(lambda s: sh.MonteCarlo(paths=16_384, seed=s, greeks=False), instrument, exact, seeds)
        quasi = _error_spread(lambda s: sh.MonteCarlo(paths=16_384, seed=s, greeks=False, qmc=True), instrument, exact,
                              seeds)
        print(f"{name}: RMS error pseudo-random {pseudo:.5f}, Sobol + Brownian bridge {quasi:.5f} "
              f"({pseudo / quasi:.1f}x smaller)")
        assert quasi < 0.5 * pseudo


def test_qmc_standard_error_is_honest():
    instrument = sh.European(strike=np.array([90.0, 100.0, 110.0]), maturity=1.0)
    exact = sh.price(instrument, MARKET).value
    result = sh.MonteCarlo(paths=32_768, seed=3, qmc=True).price(instrument, MARKET)
    assert result.diagnostics["qmc_replications"] == 16
    assert np.all(np.abs(result.value - exact) < 4.0 * result.std_error)
    assert np.all(result.std_error < 0.01)
    # pathwise Greeks pooled over all replications
    for name in ("delta", "vega", "rho"):
        np.testing.assert_allclose(result.greeks[name], sh.price(instrument, MARKET).greeks[name], rtol=5e-3,
                                   err_msg=name)


@pytest.mark.slow
def test_seed_exercises_4m_paths_in_seeded_batches_are_reproducible():
    """The seed's exercise: 4M paths as 8 seeded batches of 500k (here one batch = one seed), European call
    and put and an arithmetic Asian call (12 fixings); each batch reproducible; the pooled estimate within
    4 standard errors of the closed form (Europeans) or of the geometric-controlled estimate (Asian)."""
    instruments = {"call": sh.European(strike=100.0, maturity=1.0, is_call=True),
                   "put": sh.European(strike=100.0, maturity=1.0, is_call=False),
                   "asian": sh.Asian(maturity=1.0, fixings=12, strike=100.0)}
    for name, instrument in instruments.items():
        batches = [sh.MonteCarlo(paths=500_000, seed=seed, greeks=False) for seed in range(8)]
        values = np.array([float(b.price(instrument, MARKET).value) for b in batches])
        again = float(batches[3].price(instrument, MARKET).value)
        assert again == values[3]
        pooled, error = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
        if name == "asian":
            reference = float(sh.MonteCarlo(paths=500_000, seed=99, greeks=False, control_variate=True)
                              .price(instrument, MARKET).value)
        else:
            reference = float(sh.price(instrument, MARKET).value)
        print(f"{name}: 8 x 500k paths {pooled:.5f} +- {error:.5f}, reference {reference:.5f}")
        assert abs(pooled - reference) < 4.0 * error + 1e-3


def test_bad_inputs_raise_input_errors_naming_the_field():
    with pytest.raises(sh.InputError) as info:
        sh.MonteCarlo(paths=1000, seed=1).price(sh.Barrier(strike=100.0, maturity=1.0, barrier=105.0), MARKET)
    assert info.value.field == "barrier.barrier"
    with pytest.raises(sh.InputError) as info:
        sh.MonteCarlo(paths=1000, qmc=True)
    assert info.value.field == "paths"
    with pytest.raises(sh.InputError) as info:
        sh.MonteCarlo(paths=1000, steps_per_year=0)
    assert info.value.field == "steps_per_year"
    with pytest.raises(sh.UnsupportedError, match="American"):
        sh.MonteCarlo(paths=1000).price(sh.American(strike=100.0, maturity=1.0), MARKET)
    # discrete monitoring does not watch today: the spot beyond the barrier is allowed
    result = sh.MonteCarlo(paths=1000, seed=1, greeks=False).price(
        sh.Barrier(strike=100.0, maturity=1.0, barrier=105.0, monitoring_dates=4), MARKET)
    assert np.isfinite(result.value)


def test_nan_market_field_is_named():
    import shoals.methods.monte_carlo as mc_module

    with pytest.raises(sh.InputError) as info:
        mc_module._check_finite("market.vol", np.array([0.2, np.nan]))
    assert info.value.field == "market.vol"


def test_results_stay_float64_and_shapes_follow_the_batch():
    instrument = sh.Asian(maturity=np.array([[1.0, 0.5]]), fixings=4, strike=100.0)
    result = sh.MonteCarlo(paths=2048, seed=1, greeks=False).price(instrument, MARKET)
    assert result.value.shape == (1, 2) and result.value.dtype == np.float64
    assert result.std_error.shape == (1, 2) and result.diagnostics["steps"].shape == (1, 2)

"""Finite-difference Asian, lookback and cliquet pricers: extra-state convergence, exact identities, bounds,
monotonicity, Greeks vs bumped prices, local vol, bad input."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from shoals.errors import InputError, UnsupportedError
from shoals.instruments import Asian, Cliquet, Lookback
from shoals.kernels.pde import VolTable
from shoals.market import FlatMarket
from shoals.methods.fd_path_dependent import STATE_NODES, asian_pde, cliquet_pde, lookback_pde
from shoals.methods.finite_difference import FiniteDifference, PdeMarket, pde_market

LEAN = FiniteDifference(space_nodes=121, time_steps=60, vega=False)


def _market(batch, spot=100.0, rate=0.03, vol=0.3, dividend=0.02):
    return FlatMarket(spot=np.broadcast_to(spot, (batch,)).astype(float), rate=rate, vol=vol, dividend=dividend)


def _skewed(market):
    """The PdeMarket of ``market`` with a shared, skewed local vol table sigma(t, S) in place of the flat vol."""
    spots = jnp.linspace(20.0, 400.0, 40)
    times = jnp.array([0.0, 1.0, 3.0])
    vols = 0.25 - 0.1 * jnp.log(spots / 100.0)[None, :] + 0.02 * times[:, None]
    batch = np.size(market.spot)
    return PdeMarket(spot=np.asarray(market.spot, dtype=float),
                     vol=VolTable(times=times, spots=spots, vols=jnp.clip(vols, 0.1, 0.6)),
                     flat_rate=np.full(batch, market.rate), flat_dividend=np.full(batch, market.dividend))


def _geometric_asian_exact(spot, strike, rate, dividend, vol, maturity, fixings, is_call):
    """Closed form of the discrete geometric-average-price option (ln G normal)."""
    times = maturity * np.arange(1, fixings + 1) / fixings
    mean = np.log(spot) + (rate - dividend - 0.5 * vol ** 2) * times.mean()
    var = vol ** 2 * np.minimum.outer(times, times).mean()
    forward = np.exp(mean + 0.5 * var)
    d1 = (np.log(forward / strike) + 0.5 * var) / np.sqrt(var)
    w = 1.0 if is_call else -1.0
    return np.exp(-rate * maturity) * w * (forward * norm.cdf(w * d1) - strike * norm.cdf(w * (d1 - np.sqrt(var))))


@pytest.mark.slow
def test_asian_converges_in_average_nodes():
    contract = Asian(maturity=np.array([1.0, 2.0]), fixings=12, strike=np.array([100.0, 110.0]),
                     is_call=np.array([True, False]), geometric=True)
    market = pde_market(_market(2), contract.maturity)
    exact = np.array([_geometric_asian_exact(100.0, k, 0.03, 0.02, 0.3, t, 12, c)
                      for k, t, c in ((100.0, 1.0, True), (110.0, 2.0, False))])
    errors = [np.abs(asian_pde(contract, market, LEAN, state_nodes=n)["value"] - exact).max() for n in (9, 17, 33)]
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 2e-3


@settings(max_examples=4, deadline=None)
@given(vol=st.floats(0.1, 0.6), maturity=st.floats(0.1, 5.0), dividend=st.sampled_from([0.0, 0.02]))
def test_asian_call_decreases_in_strike_and_arithmetic_exceeds_geometric(vol, maturity, dividend):
    strikes = np.array([80.0, 95.0, 100.0, 105.0, 120.0])
    contract = Asian(maturity=np.full(10, maturity), fixings=6, strike=np.tile(strikes, 2),
                     geometric=np.repeat([False, True], 5))
    market = pde_market(_market(10, vol=vol, dividend=dividend), contract.maturity)
    values = asian_pde(contract, market, LEAN)["value"]
    arithmetic, geometric = values[:5], values[5:]
    assert np.all(np.diff(arithmetic) <= 1e-9) and np.all(np.diff(geometric) <= 1e-9)
    assert np.all(arithmetic >= geometric - 1e-6)
    assert np.all(geometric >= -1e-9)


def test_floating_asian_put_call_parity_in_the_average():
    """max(S_T - A, 0) - max(A - S_T, 0) = S_T - A: the price difference is the forward minus the average's
    forward, sum_k S e^{(r - q) t_k} / n discounted from T."""
    contract = Asian(maturity=np.full(2, 2.0), fixings=8, is_call=np.array([True, False]), floating=True)
    market = pde_market(_market(2), contract.maturity)
    values = asian_pde(contract, market, LEAN)["value"]
    times = 2.0 * np.arange(1, 9) / 8
    expected = np.exp(-0.03 * 2.0) * (100.0 * np.exp(0.01 * 2.0) - np.mean(100.0 * np.exp(0.01 * times)))
    assert values[0] - values[1] == pytest.approx(expected, abs=1e-3)


def test_fixed_lookback_equals_floating_with_extreme_at_strike_plus_forward():
    maturity, strike = 1.5, 110.0
    fixed = Lookback(maturity=maturity, strike=strike, is_call=True, floating=False)
    floating = Lookback(maturity=maturity, is_call=False, floating=True, running_extreme=strike)
    market = pde_market(_market(1), [maturity])
    forward = 100.0 * np.exp(-0.02 * maturity) - strike * np.exp(-0.03 * maturity)
    got = lookback_pde(fixed, market, LEAN)
    reference = lookback_pde(floating, market, LEAN)
    assert got["value"][0] == pytest.approx(reference["value"][0] + forward, abs=1e-7)
    assert got["delta"][0] == pytest.approx(reference["delta"][0] + np.exp(-0.02 * maturity), abs=1e-8)


@pytest.mark.slow
def test_lookback_family_is_exact_under_flat_vol_and_converges_under_local_vol():
    contract = Lookback(maturity=np.array([1.0, 1.0]), is_call=np.array([True, False]), floating=True)
    flat = pde_market(_market(2), contract.maturity)
    flat_values = [lookback_pde(contract, flat, LEAN, state_nodes=n)["value"] for n in (5, 9)]
    np.testing.assert_allclose(flat_values[0], flat_values[1], rtol=1e-12)
    local = _skewed(_market(2))
    values = [lookback_pde(contract, local, LEAN, state_nodes=n)["value"] for n in (5, 9, 17, 33)]
    assert np.abs(values[3] - values[2]).max() < 1e-3 and np.abs(values[2] - values[1]).max() < 1e-3
    assert np.abs(values[-1] - flat_values[0]).max() > 0.05          # the local vol does change the price


def test_lookback_greeks_match_bumped_prices():
    """The bumped prices sit on grids that move with the spot (their own O(h^2) grid error over 2h): the
    grid delta converges faster (-0.03088, -0.03099, -0.03102 at 121, 241, 481 nodes; bumped -0.03150,
    -0.03115, -0.03106)."""
    h, dt = 0.5, 1e-3
    base = Lookback(maturity=1.0, is_call=False, floating=True, running_extreme=110.0)
    result = lookback_pde(base, pde_market(_market(1), [1.0]), LEAN)
    spots = np.array([100.0 - h, 100.0 + h])
    bumped = lookback_pde(Lookback(maturity=np.ones(2), is_call=False, floating=True, running_extreme=110.0),
                          pde_market(_market(2, spot=spots), np.ones(2)), LEAN)["value"]
    later = lookback_pde(Lookback(maturity=1.0 - dt, is_call=False, floating=True, running_extreme=110.0),
                         pde_market(_market(1), [1.0 - dt]), LEAN)["value"]
    assert result["delta"][0] == pytest.approx((bumped[1] - bumped[0]) / (2 * h), abs=8e-4)
    assert result["gamma"][0] == pytest.approx((bumped[1] - 2 * result["value"][0] + bumped[0]) / h ** 2, abs=2e-4)
    assert result["theta"][0] == pytest.approx((later[0] - result["value"][0]) / dt, rel=2e-2)


def test_asian_greeks_match_bumped_prices_in_float64():
    """The bumped prices sit on grids that move with the spot: on LEAN's 121 nodes their second difference
    wanders by ~2e-4 with the average-node count (0.01945-0.01964 at 21-101 nodes while the grid gamma stays
    0.019682), on 241 nodes by ~2e-5, so the comparison is made there."""
    h = 0.5
    spots = np.array([100.0, 100.0 - h, 100.0 + h])
    contract = Asian(maturity=np.ones(3), fixings=6, strike=105.0)
    result = asian_pde(contract, pde_market(_market(3, spot=spots), np.ones(3)),
                       FiniteDifference(space_nodes=241, time_steps=LEAN.time_steps))
    value = result["value"]
    assert value.dtype == np.float64 and result["delta"].dtype == np.float64
    assert result["diagnostics"]["state_nodes"] == STATE_NODES["asian"]
    assert result["delta"][0] == pytest.approx((value[2] - value[1]) / (2 * h), abs=2e-4)
    assert result["gamma"][0] == pytest.approx((value[2] - 2 * value[0] + value[1]) / h ** 2, abs=2e-4)


def test_cliquet_delta_is_the_started_first_period_and_flat_vol_cliquet_is_spot_free():
    """At R = S_0 held fixed only the first period depends on S: delta = e^{-q tau} N(d1) / R for a call
    paid at t_1; the price itself (a new cliquet) does not depend on the spot under flat vol."""
    contract = Cliquet(maturity=np.full(2, 1.0), resets=4, pay_per_period=True)
    result = cliquet_pde(contract, pde_market(_market(2, spot=np.array([100.0, 150.0])), np.ones(2)), LEAN)
    tau, vol = 0.25, 0.3
    d1 = (0.01 * tau + 0.5 * vol ** 2 * tau) / (vol * np.sqrt(tau))
    assert result["delta"][0] == pytest.approx(np.exp(-0.02 * tau) * norm.cdf(d1) / 100.0, rel=2e-3)
    assert result["value"][0] == pytest.approx(result["value"][1], rel=1e-6)


def test_cliquet_bounds_and_payment_timing():
    contract = Cliquet(maturity=np.full(3, 2.0), resets=8, local_cap=np.array([np.inf, 0.05, 0.05]),
                       pay_per_period=np.array([True, True, False]))
    values = cliquet_pde(contract, pde_market(_market(3), contract.maturity), LEAN)["value"]
    assert values[0] > values[1] > values[2] > 0.0
    assert values[1] <= 8 * 0.05


@pytest.mark.slow
def test_cliquet_under_local_vol_converges_in_reset_nodes():
    contract = Cliquet(maturity=np.full(2, 2.0), resets=4, is_call=np.array([True, False]))
    local = _skewed(_market(2))
    values = [cliquet_pde(contract, local, LEAN, state_nodes=n)["value"] for n in (7, 13, 25)]
    assert np.abs(values[2] - values[1]).max() < np.abs(values[1] - values[0]).max() + 1e-6
    assert np.abs(values[2] - values[1]).max() < 2e-3


def test_global_floor_or_cap_is_unsupported_and_points_to_monte_carlo():
    contract = Cliquet(maturity=1.0, resets=4, global_cap=0.2)
    with pytest.raises(UnsupportedError, match="MonteCarlo"):
        FiniteDifference(vega=False).price(contract, _market(1))


@pytest.mark.parametrize("pricer, contract", [
    (asian_pde, Asian(maturity=1.0, fixings=4, strike=100.0)),
    (lookback_pde, Lookback(maturity=1.0)),
    (cliquet_pde, Cliquet(maturity=1.0, resets=4)),
])
def test_too_few_state_nodes_is_an_input_error(pricer, contract):
    with pytest.raises(InputError, match="state_nodes"):
        pricer(contract, pde_market(_market(1), [1.0]), LEAN, state_nodes=2)


def test_finite_difference_dispatches_path_dependent_instruments_with_vega():
    method = FiniteDifference(space_nodes=LEAN.space_nodes, time_steps=LEAN.time_steps)
    for contract in (Asian(maturity=1.0, fixings=4, strike=100.0), Lookback(maturity=1.0),
                     Cliquet(maturity=1.0, resets=4)):
        assert method.supports(contract, _market(1))
        result = method.price(contract, _market(1))
        assert np.isfinite(result.value) and np.isfinite(result.greeks["vega"])
        assert result.greeks["vega"] > 0.0


def test_state_nodes_is_a_method_setting():
    market = FlatMarket(spot=100.0, rate=0.03, vol=0.2)
    asian = Asian(maturity=1.0, fixings=12, strike=100.0)
    default = FiniteDifference(vega=False).price(asian, market)
    finer = FiniteDifference(vega=False, state_nodes=61).price(asian, market)
    assert default.diagnostics["state_nodes"] == STATE_NODES["asian"] and finer.diagnostics["state_nodes"] == 61
    assert abs(float(finer.value) / float(default.value) - 1.0) < 1e-3
    with pytest.raises(InputError, match="state_nodes"):
        FiniteDifference(state_nodes=2).price(asian, market)

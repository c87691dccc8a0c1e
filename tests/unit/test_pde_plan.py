"""PdePlan: a PDE solve prepared once and re-solved on other vol nodes (bumps, reverse-mode AD)."""

from __future__ import annotations

import numpy as np
import pytest
from support import skewed_snapshot

from shoals.instruments import American, Asian, Barrier, European, Lookback
from shoals.kernels.black_scholes import black_scholes_price
from shoals.market import FlatMarket
from shoals.market.local_vol import build_local_vol
from shoals.methods import FiniteDifference

LEAN = FiniteDifference(space_nodes=101, time_steps=60, vega=False)


@pytest.fixture(scope="module")
def market():
    snapshot = skewed_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=1.0, n_times=41, n_spots=161)
    return snapshot, grid


CONTRACTS = {
    "american": American(strike=np.array([110.0, 95.0]), maturity=np.array([0.5, 0.8]), is_call=False),
    "european": European(strike=np.array([90.0, 105.0]), maturity=np.array([0.5, 0.8]), is_call=np.array([False, True])),
    "barrier": Barrier.of_type("up-and-in", strike=100.0, barrier=np.array([115.0, 125.0]), maturity=0.7, is_call=True),
    "asian": Asian(strike=100.0, maturity=np.array([0.6, 0.9]), fixings=np.array([4, 6]), is_call=True),
    "lookback": Lookback(maturity=np.array([0.5, 0.8]), is_call=False, floating=True),
}


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_plan_values_are_the_price(market, kind):
    snapshot, grid = market
    plan, _ = LEAN.plan(CONTRACTS[kind], snapshot, local_vol=grid)
    price = LEAN.price(CONTRACTS[kind], snapshot, local_vol=grid).value
    np.testing.assert_allclose(np.asarray(plan.values()), price, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_gradient_matches_central_differences(market, kind):
    """Reverse mode through the time loop (checkpointed) against a central difference of the plan's values
    along a random direction of the local vol nodes."""
    snapshot, grid = market
    plan, _ = LEAN.plan(CONTRACTS[kind], snapshot, local_vol=grid)
    weights = np.array([1.5, -0.5])
    value, gradient = plan.value_and_gradient(weights)
    np.testing.assert_allclose(float(value), weights @ np.asarray(plan.values()), rtol=1e-12)
    direction = np.random.default_rng(3).uniform(-1.0, 1.0, np.shape(grid.vols)) * np.asarray(grid.vols)
    step = 1e-4
    up, down = (weights @ np.asarray(plan.values(np.asarray(grid.vols) + s * step * direction)) for s in (1.0, -1.0))
    finite_difference = (up - down) / (2.0 * step)
    assert float(np.sum(np.asarray(gradient) * direction)) == pytest.approx(finite_difference, rel=1e-5, abs=1e-8)


def test_flat_vol_plan_bumped_is_black_scholes_at_the_bumped_vol():
    """Re-solving a flat-vol plan (grids sized for the base vol) on vol + 0.03 prices at the bumped vol: the
    Black-Scholes value there, within the lean grid's error."""
    contract = European(strike=np.array([95.0, 110.0]), maturity=1.0, is_call=True)
    market = FlatMarket(spot=100.0, rate=0.03, vol=np.array([0.2, 0.25]), dividend=0.01)
    plan, _ = LEAN.plan(contract, market)
    exact = black_scholes_price(spots=100.0, strikes=np.array([95.0, 110.0]), expiries=1.0,
                                volatilities=np.array([0.23, 0.28]), rates=0.03, dividend_yields=0.01, is_call=True)
    np.testing.assert_allclose(np.asarray(plan.values(np.asarray(plan.table.vols) + 0.03)), np.asarray(exact),
                               rtol=2e-4)


def test_mismatched_vol_nodes_are_refused(market):
    snapshot, grid = market
    plan, _ = LEAN.plan(CONTRACTS["european"], snapshot, local_vol=grid)
    with pytest.raises(ValueError, match="do not match"):
        plan.values(np.ones((3, 3)))

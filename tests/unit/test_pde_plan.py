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


def test_values_at_other_spots_against_closed_forms():
    """One solve at S_0 = 100 read at other spots (PdePlan.values_at) against independent prices there: Black-
    Scholes for Europeans, QuantLib's AnalyticBarrierEngine for a down-and-out call (flat vol 0.25, r 0.03,
    q 0.01).  Off the grid gives NaN."""
    ql = pytest.importorskip("QuantLib")
    from support import quantlib_flat_process

    fd = FiniteDifference(vega=False)
    market = FlatMarket(spot=100.0, rate=0.03, vol=0.25, dividend=0.01)
    spots = np.array([[85.0, 92.0, 100.0, 108.0, 118.0]] * 2)
    europeans = European(strike=np.array([95.0, 110.0]), maturity=np.array([0.5, 1.0]), is_call=np.array([True, False]))
    values = fd.values_at(europeans, market, spots)
    expected = np.asarray(black_scholes_price(spots=spots, strikes=np.array([[95.0], [110.0]]),
                                              expiries=np.array([[0.5], [1.0]]), volatilities=0.25, rates=0.03,
                                              dividend_yields=0.01, is_call=np.array([[True], [False]])))
    np.testing.assert_allclose(values, expected, rtol=2e-4, atol=2e-4)

    barrier = Barrier(strike=100.0, maturity=1.0, barrier=80.0, is_call=True)
    ladder = np.array([[82.0, 90.0, 100.0, 110.0, 120.0]])
    values = fd.values_at(barrier, market, ladder)[0]
    today = ql.Date(2, 1, 2024)
    option = ql.BarrierOption(ql.Barrier.DownOut, 80.0, 0.0, ql.PlainVanillaPayoff(ql.Option.Call, 100.0),
                              ql.EuropeanExercise(today + 365))
    for spot, value in zip(ladder[0], values):
        process = quantlib_flat_process(today, spot=float(spot), rate=0.03, dividend=0.01, vol=0.25)
        option.setPricingEngine(ql.AnalyticBarrierEngine(process))
        assert value == pytest.approx(option.NPV(), rel=2e-3, abs=2e-4)
    far = fd.values_at(European(strike=100.0, maturity=0.1), market, np.array([[1.0, 100.0, 1e4]]))[0]
    assert np.isnan(far[0]) and np.isfinite(far[1]) and np.isnan(far[2])


def test_values_at_agree_with_solves_at_those_spots_under_local_vol(market):
    """Under the skewed local vol: the curve of one solve equals separate solves at each spot (grids centred
    elsewhere) within the grids' error, for every type; the cliquet's curve is the diagonal of its reset-level
    family (the trade struck at each spot, as pricing it there gives)."""
    from shoals.instruments import Cliquet

    snapshot, grid = market
    fd = FiniteDifference(vega=False)
    spots = np.array([[88.0, 95.0, 100.0, 104.0, 109.0]])          # the lookback: below its running max
    contracts = [European(strike=95.0, maturity=0.5), American(strike=100.0, maturity=1.0, is_call=False),
                 Asian(strike=100.0, maturity=1.0, fixings=12),
                 Barrier(strike=100.0, maturity=1.0, barrier=80.0, is_call=True),
                 Lookback(strike=100.0, maturity=1.0, floating=False, is_call=True, running_extreme=110.0),
                 Cliquet(maturity=1.0, resets=4, local_floor=0.0)]
    for contract in contracts:
        curve = fd.values_at(contract, snapshot, spots, local_vol=grid)[0]
        direct = [float(np.asarray(fd.price(contract, snapshot.bump(spot=spot), local_vol=grid).value))
                  for spot in spots[0]]
        np.testing.assert_allclose(curve, direct, rtol=2e-3, atol=2e-3, err_msg=type(contract).__name__)

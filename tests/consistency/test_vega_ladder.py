"""Vega ladder by expiry pillar: central bumps of each SVI slice's ATM vol (local vol rebuilt, trades repriced on
their base grids) against one reverse-mode pass through the PDE and the Dupire construction."""

from __future__ import annotations

import numpy as np
import pytest
from support import SKEWED_EXPIRIES, skewed_snapshot

from shoals.greeks.vega_ladder import (
    bump_pillars,
    bumped_vol_grids,
    ladder_from_bumps,
    parallel_vol_grids,
    pillar_atm_vols,
    surface_gradient,
)
from shoals.instruments import Asian, Barrier, Cliquet, European, Lookback
from shoals.market.local_vol import build_local_vol
from shoals.methods import FiniteDifference
from shoals.methods.pde_plan import WINDOW_GROUPS, window_groups
from shoals.risk.run import run_book

LEAN = FiniteDifference(space_nodes=121, time_steps=80, vega=False)


@pytest.fixture(scope="module")
def market():
    snapshot = skewed_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=1.5, n_times=81, n_spots=241)
    return snapshot, grid, bumped_vol_grids(snapshot, grid), parallel_vol_grids(snapshot, grid)


def _ladders(market, contract, weights):
    snapshot, grid, bumped, parallel = market
    plan, _ = LEAN.plan(contract, snapshot, local_vol=grid)
    per_trade = ladder_from_bumps(np.stack([np.asarray(plan.values(v)) for v in bumped], axis=1))
    up, down = (np.asarray(plan.values(v)) for v in parallel)
    _, gradient = plan.value_and_gradient(weights)
    aad = surface_gradient(snapshot, grid, gradient).ladder
    return weights @ per_trade, aad, weights @ (up - down) / 0.02, per_trade


def test_bump_moves_one_atm_vol_by_the_size():
    snapshot = skewed_snapshot()
    shifts = np.zeros(SKEWED_EXPIRIES.size)
    shifts[3] = 0.01
    before, after = pillar_atm_vols(snapshot.surface), pillar_atm_vols(bump_pillars(snapshot, shifts).surface)
    np.testing.assert_allclose(after - before, shifts, atol=1e-14)
    k = np.linspace(-0.5, 0.5, 11)
    moved = np.asarray(bump_pillars(snapshot, shifts).surface.params.total_variance(k[:, None]))
    base = np.asarray(snapshot.surface.params.total_variance(k[:, None]))
    np.testing.assert_allclose(np.delete(moved - base, 3, axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(moved[:, 3] - base[:, 3], (moved - base)[0, 3])    # parallel in total variance


BOOK = {
    "mixed": (Barrier.of_type("down-and-out", strike=100.0, barrier=np.array([80.0, 85.0]), maturity=np.array([1.0, 0.7]),
                              is_call=True), np.array([2.0, -1.0])),
    "asian": (Asian(strike=np.array([100.0, 95.0]), maturity=np.array([1.2, 0.4]), fixings=np.array([12, 4]),
                    is_call=np.array([True, False])), np.array([1.0, 3.0])),
}


@pytest.mark.parametrize("name", sorted(BOOK))
def test_aad_ladder_matches_bumps(market, name):
    bump, aad, parallel, _ = _ladders(market, *BOOK[name])
    largest = np.abs(bump).max()
    assert np.abs(aad - bump).max() <= 0.02 * largest
    assert bump.sum() == pytest.approx(parallel, rel=0.02)


def test_european_ladder_sits_on_the_bracketing_pillars(market):
    """Under a local vol consistent with the surface a European depends only on the slices around its
    maturity (the surface is linear in total variance between them)."""
    contract = European(strike=np.array([100.0, 90.0, 110.0]), maturity=np.array([0.6, 1.2, 0.3]),
                        is_call=np.array([True, False, True]))
    _, _, _, per_trade = _ladders(market, contract, np.ones(3))
    for ladder, maturity in zip(per_trade, (0.6, 1.2, 0.3)):
        upper = int(np.searchsorted(SKEWED_EXPIRIES, maturity))
        bracket = [upper - 1, upper]
        assert np.abs(ladder[bracket]).sum() >= 0.95 * np.abs(ladder).sum()
        np.testing.assert_array_equal(ladder[upper + 1:], 0.0)


WINDOWED = {
    "barrier": (Barrier.of_type("down-and-out", strike=100.0, barrier=np.array([80.0, 85.0]),
                                maturity=np.array([1.0, 0.7]), is_call=True), np.array([2.0, -1.0])),
    "knock-in": (Barrier.of_type("up-and-in", strike=np.array([100.0, 95.0]), barrier=np.array([120.0, 115.0]),
                                 maturity=np.array([1.3, 0.45]), is_call=np.array([True, False]),
                                 rebate=np.array([0.0, 2.0])), np.array([1.0, -3.0])),
    "asian": BOOK["asian"],
    "lookback": (Lookback(maturity=np.array([1.1, 0.35]), strike=np.array([np.nan, 100.0]),
                          is_call=np.array([False, True]), floating=np.array([True, False])), np.array([1.0, 2.0])),
    "cliquet": (Cliquet(maturity=np.array([1.4, 0.6]), resets=np.array([4, 3]), local_cap=np.array([0.08, 0.1]),
                        pay_per_period=np.array([True, False])), np.array([-1.0, 0.5])),
    "european": (European(strike=np.array([100.0, 90.0, 110.0]), maturity=np.array([0.6, 1.2, 0.3]),
                          is_call=np.array([True, False, True])), np.array([1.0, 1.0, -2.0])),
}


@pytest.mark.parametrize("grouped", [False, True], ids=["all-rows", "maturity-groups"])
@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_windowed_bumps_are_the_full_bumped_solves(market, name, grouped):
    """PdePlan.ladder_values solves each bump only over the steps it changes and carries the change to t = 0
    by the base adjoint state: the same trade values as solving every bumped market over the whole life; with
    the trades cut into maturity groups (each group's windows on its own rows, by its subset plan) too."""
    snapshot, grid, bumped, _ = market
    contract, weights = WINDOWED[name]
    plan, _ = LEAN.plan(contract, snapshot, local_vol=grid)
    full = np.stack([np.asarray(plan.values(v)) for v in bumped], axis=1)
    options = {"min_saving": 0.0} if grouped else {"max_groups": 1}
    groups = plan._window_groups(bumped, WINDOW_GROUPS, 0.0) if grouped else []
    assert not grouped or (len(groups) > 1 and all(group.plan is not plan for group in groups))
    result = plan.ladder_values(weights, bumped, **options)
    value, gradient = plan.value_and_gradient(weights)
    np.testing.assert_allclose(result.base, np.asarray(plan.values()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.bumped, full, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(ladder_from_bumps(result.bumped), ladder_from_bumps(full), rtol=1e-8, atol=1e-8)
    assert result.value == pytest.approx(float(value), rel=1e-12)
    np.testing.assert_allclose(result.gradient, np.asarray(gradient), rtol=1e-10, atol=1e-12)
    windows = [plan.bump_window(v) for v in bumped]
    assert any(w is not None and w[1] - w[0] < plan.arguments["steps"].dt.shape[0] for w in windows)


def test_window_groups_cut_the_trades_by_maturity_where_it_saves():
    """Two short trades reading early steps and two long ones reading late steps: two groups of neighbouring
    maturities, each covering only its own steps; one group when the saving is below ``min_saving``."""
    steps, rows = 40, 4
    reads = np.zeros((1, steps, rows), dtype=bool)
    reads[0, 2:6, [0, 2]] = True                   # trades 0 and 2: short
    reads[0, 30:38, [1, 3]] = True                 # trades 1 and 3: long
    owner, maturity = np.arange(rows), np.array([0.5, 3.0, 0.4, 2.5])
    groups = window_groups(reads, owner, maturity, 3, 0.0, nodes=10)
    assert [sorted(g.tolist()) for g in groups] == [[0, 2], [1, 3]]
    one = 38 * rows * 10                           # steps 1 .. 38 (widened by one) on four rows of ten nodes
    two = (6 + 10) * 2 * 10                        # steps 1 .. 6 and 29 .. 38 on two rows each
    assert [len(window_groups(reads, owner, maturity, 3, one - two - 1.0, nodes=10)),
            len(window_groups(reads, owner, maturity, 3, one - two, nodes=10))] == [2, 1]
    assert len(window_groups(reads, owner, maturity, 1, 0.0, nodes=10)) == 1


def test_windowed_bumps_need_non_zero_weights(market):
    snapshot, grid, bumped, _ = market
    plan, _ = LEAN.plan(WINDOWED["barrier"][0], snapshot, local_vol=grid)
    with pytest.raises(ValueError, match="non-zero weights"):
        plan.ladder_values(np.array([1.0, 0.0]), bumped[:2])


def test_run_ladder_by_windows_is_the_ladder_by_full_bumped_solves(tmp_path):
    """run_book with AAD solves the bumps by windows; without AAD by full bumped solves: same bump ladder."""
    header = "id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,average,fixings"
    lines = ["b0,barrier,call,100,0.3,1,10,80,down-and-out,,", "b1,barrier,put,95,1.2,-2,5,85,down-and-out,,",
             "a0,asian,call,100,0.8,1,3,,,arithmetic,8", "a1,asian,put,105,1.4,1,2,,,arithmetic,12"]
    book = tmp_path / "book.csv"
    book.write_text(header + "\n" + "\n".join(lines) + "\n")
    snapshot = skewed_snapshot()
    windowed = run_book(market=snapshot, book=book, quote_risk=False)
    full = run_book(market=snapshot, book=book, quote_risk=False, aad=False)
    assert windowed.summary["ladder"]["aad_trades"] == 4
    scale = np.abs(full.ladder["vega_bump"]).max()
    np.testing.assert_allclose(windowed.ladder["vega_bump"], full.ladder["vega_bump"], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(windowed.trades["vega"], full.trades["vega"], rtol=1e-9, atol=1e-12)

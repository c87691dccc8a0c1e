"""The vega ladder skips the bumped solves that cannot move a trade, and the run bands chunks by maturity so
that it can (:func:`shoals.greeks.vega_ladder.unchanged_until`, :func:`shoals.risk.run.ladder_bands`).

* ``unchanged_until``: each bumped local vol grid equals the base bit for bit on every time row up to the
  returned time and differs on the next row (checked on the skewed SVI market against the grids themselves,
  and on hand-made grids for the edge cases).
* The skip is exact: for every bump whose unchanged time reaches a trade's maturity, the PDE solve under the
  bumped grid returns the base values bit for bit (so reusing them changes nothing); the other bumps do move
  the values.
* Banding changes no number: ``run_book`` with the ladder's maturity bands gives the trades table and both
  ladders of the run without bands (one chunk per type) to 1e-9 of the largest bucket.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import SKEWED_EXPIRIES, skewed_snapshot

import shoals.risk.run as run_module
from shoals.greeks.vega_ladder import bumped_vol_grids, unchanged_until
from shoals.instruments import Asian, Barrier, Lookback
from shoals.io.book import read_book
from shoals.market.local_vol import LocalVolGrid, build_local_vol
from shoals.methods import FiniteDifference
from shoals.risk.run import book_chunks, ladder_bands, run_book

LEAN = FiniteDifference(space_nodes=121, time_steps=60, vega=False)


@pytest.fixture(scope="module")
def market():
    snapshot = skewed_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=2.5, n_times=81, n_spots=161)
    return snapshot, grid, bumped_vol_grids(snapshot, grid)


def test_unchanged_until_is_the_last_time_row_equal_to_the_base(market):
    _, grid, bumped = market
    times = np.asarray(grid.times)
    reach = unchanged_until(bumped, grid)
    assert reach.shape == (bumped.shape[0],)
    for vols, until in zip(bumped, reach):
        same = np.all(vols == np.asarray(grid.vols), axis=1)
        assert same[times <= until].all()
        assert not same[times > until][0]
    # Pillar i's bump moves the surface from T_{i-1} on: pillar 1 from t = 0, the later ones from their
    # previous expiry (its left limit stays unchanged).
    assert np.all(reach[:2] == -np.inf)
    np.testing.assert_array_equal(reach[2::2], SKEWED_EXPIRIES[:-1])
    np.testing.assert_array_equal(reach[3::2], SKEWED_EXPIRIES[:-1])


def test_unchanged_until_edge_cases():
    grid = LocalVolGrid(times=np.array([0.0, 0.5, 1.0]), spots=np.array([50.0, 100.0, 150.0]),
                        vols=np.full((3, 3), 0.2))
    changed = np.stack([grid.vols, grid.vols.copy(), grid.vols.copy()])
    changed[1, 0, 1] = 0.21
    changed[2, 2, 0] = 0.19
    np.testing.assert_array_equal(unchanged_until(changed, grid), [np.inf, -np.inf, 0.5])


@pytest.mark.parametrize("contract", [
    Barrier.of_type("down-and-out", strike=np.array([95.0, 105.0]), maturity=np.array([0.3, 0.5]),
                    barrier=80.0, is_call=True),
    Asian(maturity=np.array([0.4, 0.5]), fixings=np.array([4, 6]), strike=100.0),
    Lookback(maturity=np.array([0.25, 0.5]), strike=100.0, is_call=False, floating=False),
], ids=["barrier", "asian", "lookback"])
def test_bumps_that_leave_the_rows_read_unchanged_leave_the_values_unchanged(market, contract):
    snapshot, grid, bumped = market
    plan, _ = LEAN.plan(contract, snapshot, local_vol=grid)
    base = np.asarray(plan.values())
    reach = unchanged_until(bumped, grid)
    horizon = float(np.max(contract.maturity))
    skipped = np.flatnonzero(reach >= horizon)
    moved = np.flatnonzero(reach < horizon)
    assert skipped.size >= 4 and moved.size >= 4
    for k in skipped:
        np.testing.assert_array_equal(np.asarray(plan.values(bumped[k])), base)
    assert all(np.any(np.asarray(plan.values(bumped[k])) != base) for k in moved)


def test_ladder_bands_cut_where_the_bumps_skipped_save_most():
    rows = read_book(run_module.example_path(run_module.EXAMPLE_BOOK))
    expiries = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
    assert ladder_bands(rows, expiries, count=1) == ()
    assert ladder_bands(rows, expiries, count=2) == (1.0,)
    cuts = ladder_bands(rows, expiries, count=3)
    assert len(cuts) == 2 and cuts == tuple(sorted(cuts)) and set(cuts) <= set(expiries)
    for bands in ((1.0,), cuts):
        chunks = book_chunks(rows, bands=bands)
        assert sorted(i for chunk in chunks for i in chunk.indices) == list(range(len(rows)))
        for chunk in chunks:
            assert len({row.instrument for row in chunk.rows}) == 1
            band = {int(np.searchsorted(bands, float(row.fields["maturity"]), side="left")) for row in chunk.rows}
            assert len(band) == 1
    # Without cuts, one chunk per type as before.
    assert len(book_chunks(rows)) == len({row.instrument for row in rows})


def test_banded_run_gives_the_numbers_of_the_unbanded_run(tmp_path, monkeypatch):
    header = "id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,average,fixings"
    lines = [f"b{i},barrier,{kind},{strike},{maturity},1,{notional},80,down-and-out,,"
             for i, (kind, strike, maturity, notional) in enumerate(
                 [("call", 100, 0.3, 10), ("put", 95, 0.6, 5), ("call", 105, 1.2, 3), ("put", 100, 2.0, 2)])]
    book = tmp_path / "book.csv"
    book.write_text(header + "\n" + "\n".join(lines) + "\n")
    snapshot = skewed_snapshot()
    banded = run_book(market=snapshot, book=book, quote_risk=False)
    assert ladder_bands(read_book(book), snapshot.surface.expiries) != ()
    monkeypatch.setattr(run_module, "LADDER_BANDS", 1)
    single = run_book(market=snapshot, book=book, quote_risk=False)
    numbers = ["price", "npv", "delta", "gamma", "theta", "vega"]
    np.testing.assert_allclose(banded.trades[numbers].to_numpy(dtype=float),
                               single.trades[numbers].to_numpy(dtype=float), rtol=1e-11, atol=1e-12)
    for column in ("vega_bump", "vega_aad"):
        scale = np.abs(single.ladder[column]).max()
        np.testing.assert_allclose(banded.ladder[column], single.ladder[column], rtol=0, atol=1e-9 * scale)

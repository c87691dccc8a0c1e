"""The whole-book pipeline (:func:`shoals.risk.run.run_book`) on the skewed SVI market of tests/support.py.

The book (5 trades, maturities <= 0.75 y, mixed quantity x notional, one of each path-dependent type):
a European call T = 0.6, a down-and-out call, an arithmetic Asian call, a fixed-strike lookback put and a
cliquet call.

* Vega ladder: the AAD ladder agrees with the bump ladder within 2 % of the largest |bucket|; the sum over
  buckets (bump and AAD) matches a central parallel bump of every pillar on the trades' own PDE plans within
  2 %; a European alone has >= 95 % of its ladder on the two pillars bracketing its maturity, exactly 0
  after the next pillar above it, and buckets within 3 % of the largest of the Black-Scholes reference
  (the European's price depends on the surface only through w(k_K, T), linear in the two pillars' ``a``).
* Prices: per-trade price, delta, gamma, theta equal ``FiniteDifference(vega=False).price`` of the same
  contracts (built here, not from the book reader) on the run's local vol grid to 1e-10; ``method="mc"``
  agrees with the PDE within 4 standard errors + 1e-3 relative (slow).
* Broken rows get ``error:`` statuses naming the row and the field, the other rows keep the numbers (and
  the book ladder) of the run without them, ``by_type`` counts the failures.
* ``ProcessExecutor(workers=2)`` and ``ThreadExecutor(workers=2)`` give exactly the serial trades table and ladders.
* Chunking: one type per chunk in book order; the numbers do not depend on the chunk size (tolerance
  1e-12: a different chunk is a different batch, whose padding could change the compiled shapes; here the
  PDE batches are padded to >= 8 rows either way and the numbers came out identical).

Measured at commit 9095c23 (``pytest -s`` prints them): largest |AAD - bump| 0.20 % of the largest book
bucket; sum of buckets vs the parallel bump -0.08 % (bump), -0.001 % (AAD); European: 99.46 % of |ladder| on
the 0.5 / 0.75 pillars, exactly 0 from 1.0 on, within 2.04 % (bump) / 2.07 % (AAD) of the largest Black-Scholes
bucket (the sum within 0.1 %: the split between the two pillars carries the local-vol time discretisation);
Monte Carlo (200k paths) within 2.1, 0.1, 0.3 standard errors; serial == processes == threads bit for bit.  Run time
(loaded 2-core machine, cold JAX): 100-170 s without the slow Monte Carlo test (~45 s), most of it compiling
the 5-type book with its ladder.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from support import SKEWED_EXPIRIES, skewed_snapshot

import shoals  # noqa: F401  (float64)
import shoals.risk.run as run_module
from shoals.execution import ProcessExecutor, SerialExecutor, ThreadExecutor
from shoals.greeks.vega_ladder import VOL_POINT, parallel_vol_grids
from shoals.instruments import Asian, Barrier, Cliquet, European, Lookback
from shoals.io.book import read_book
from shoals.methods.finite_difference import FiniteDifference
from shoals.risk.run import book_chunks, run_book

SPOT, RATE, DIVIDEND = 100.0, 0.03, 0.01
HEADER = ("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,strike_type,average,"
          "fixings,resets")
ROWS = {
    "eu": "eu,european,call,100,0.6,2,10,,,,,,",
    "dao": "dao,barrier,call,100,0.5,-1,5,85,down-and-out,,,,",
    "asn": "asn,asian,call,100,0.5,1,3,,,,arithmetic,6,",
    "lb": "lb,lookback,put,100,0.4,1,2,,,fixed,,,",
    "cq": "cq,cliquet,call,,0.75,-1,100,,,,,,3",
}
SCALE = {"eu": 20.0, "dao": -5.0, "asn": 3.0, "lb": 2.0, "cq": -100.0}
#: The same trades built directly (independently of the book reader).
CONTRACTS = {
    "eu": European(strike=100.0, maturity=0.6, is_call=True),
    "dao": Barrier.of_type("down-and-out", strike=100.0, maturity=0.5, barrier=85.0, is_call=True),
    "asn": Asian(maturity=0.5, fixings=6, strike=100.0, is_call=True),
    "lb": Lookback(maturity=0.4, strike=100.0, is_call=False, floating=False),
    "cq": Cliquet(maturity=0.75, resets=3, is_call=True),
}
#: Broken rows (inserted between the good ones) and what their status must name.
BROKEN = {
    "negk": ("negk,european,put,-5,0.6,1,1,,,,,,", "strike"),
    "typo": ("typo,europian,call,100,0.6,1,1,,,,,,", "instrument"),
    "breached": ("breached,barrier,call,100,0.5,1,1,105,down-and-out,,,,", "barrier"),
    "nomat": ("nomat,european,call,100,,1,1,,,,,,", "maturity"),
    "nanstrike": ("nanstrike,asian,call,nan,0.5,1,1,,,,arithmetic,6,", "strike"),
}
BROKEN_ORDER = ["negk", "eu", "typo", "dao", "breached", "asn", "nomat", "lb", "nanstrike", "cq"]
NUMBERS = ["price", "npv", "delta", "gamma", "theta", "vega"]


def write_book(folder, ids, name):
    path = folder / name
    lines = [ROWS[i] if i in ROWS else BROKEN[i][0] for i in ids]
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def snapshot():
    return skewed_snapshot(SPOT, RATE, DIVIDEND)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("run_pipeline")


@pytest.fixture(scope="module")
def book_run(snapshot, folder):
    """The 5-trade book with the vega ladder by bump and AAD (serial)."""
    return run_book(market=snapshot, book=write_book(folder, list(ROWS), "book.csv"))


@pytest.fixture(scope="module")
def european_run(snapshot, folder, book_run):
    return run_book(market=snapshot, book=write_book(folder, ["eu"], "european.csv"))


def test_run_prices_every_trade_by_finite_differences(book_run):
    trades = book_run.trades
    assert list(trades["id"]) == list(ROWS)
    assert (trades["status"] == "ok").all()
    assert (trades["method"] == "finite-difference").all()
    assert book_run.summary["ladder"]["aad_trades"] == len(ROWS)
    assert book_run.summary["failed"] == 0 and book_run.summary["trades"] == len(ROWS)
    np.testing.assert_allclose(trades["quantity"] * trades["notional"], [SCALE[i] for i in ROWS], rtol=0)
    np.testing.assert_array_equal(book_run.ladder["expiry"], SKEWED_EXPIRIES)


def test_aad_ladder_agrees_with_bump_ladder(book_run):
    ladder = book_run.ladder
    bump, aad = ladder["vega_bump"].to_numpy(), ladder["vega_aad"].to_numpy()
    assert np.all(np.isfinite(bump)) and np.all(np.isfinite(aad))
    largest = np.max(np.abs(bump))
    worst = np.max(np.abs(aad - bump)) / largest
    print(f"\nbook ladder: bump {np.round(bump, 4)}\n             AAD  {np.round(aad, 4)}\n"
          f"largest |AAD - bump| = {100 * worst:.3f} % of the largest bucket ({largest:.3f})")
    assert worst < 0.02
    # every trade matures by 0.75: the later pillars carry nothing, the earlier ones do
    late = ladder["expiry"].to_numpy() > 0.75
    assert np.all(bump[late] == 0.0) and np.all(aad[late] == 0.0)
    assert np.all(np.abs(bump[~late]) > 1e-3 * largest)


def test_ladder_sum_matches_a_parallel_bump_of_every_pillar(book_run, snapshot):
    grids = parallel_vol_grids(snapshot, book_run.local_vol)
    method = FiniteDifference(vega=False)
    parallel = {}
    for trade, contract in CONTRACTS.items():
        plan, _ = method.plan(contract, snapshot, local_vol=book_run.local_vol)
        up, down = (float(np.asarray(plan.values(grid))[0]) for grid in grids)
        parallel[trade] = (up - down) / (2.0 * VOL_POINT)
    book = sum(SCALE[t] * v for t, v in parallel.items())
    bump_sum = float(book_run.ladder["vega_bump"].sum())
    aad_sum = float(book_run.ladder["vega_aad"].sum())
    print(f"\nparallel bump {book:.4f}, sum of bump buckets {bump_sum:.4f} ({100 * (bump_sum / book - 1):+.3f} %), "
          f"sum of AAD buckets {aad_sum:.4f} ({100 * (aad_sum / book - 1):+.3f} %)")
    assert bump_sum == pytest.approx(book, rel=0.02)
    assert aad_sum == pytest.approx(book, rel=0.02)
    assert book_run.summary["vega"] == pytest.approx(bump_sum, rel=1e-12)
    # per trade: the vega column (sum of the trade's ladder) against its parallel bump
    vega = book_run.trades.set_index("id")["vega"]
    for trade, value in parallel.items():
        assert vega[trade] == pytest.approx(value, rel=0.02, abs=1e-3), trade
    np.testing.assert_allclose(book_run.ladder_by_trade.sum(axis=1).loc[list(ROWS)], vega.loc[list(ROWS)],
                               rtol=1e-12)


def _svi_total_variance(k, t):
    """w(k, T) of the skewed market from its SVI formula, linear in T between slices at fixed k."""
    def slice_w(expiry):
        a, b, rho, sigma = 0.02 * expiry, 0.1 * math.sqrt(expiry), -0.5, 0.2 * math.sqrt(expiry)
        return a + b * (rho * k + math.sqrt(k * k + sigma * sigma))

    upper = int(np.searchsorted(SKEWED_EXPIRIES, t))
    t0, t1 = SKEWED_EXPIRIES[upper - 1], SKEWED_EXPIRIES[upper]
    weight = (t1 - t) / (t1 - t0)
    return weight * slice_w(t0) + (1.0 - weight) * slice_w(t1), upper - 1, weight


def test_european_ladder_sits_on_the_bracketing_pillars(european_run):
    strike, maturity, scale = 100.0, 0.6, SCALE["eu"]
    expiries = european_run.ladder["expiry"].to_numpy()
    lower = int(np.searchsorted(expiries, maturity)) - 1
    assert expiries[lower] < maturity < expiries[lower + 1]
    # Black-Scholes reference: V depends on the surface through w(k_K, T) only, and a central bump of pillar
    # i's ATM vol by h moves a_i by ((s_i + h)^2 - s_i^2) T_i (s_i = 20 %), i.e. w(k_K, T) by weight_i x that
    forward = SPOT * math.exp((RATE - DIVIDEND) * maturity)
    k = math.log(strike / forward)
    w, _, weight = _svi_total_variance(k, maturity)
    d1 = -k / math.sqrt(w) + 0.5 * math.sqrt(w)
    dv_dw = forward * math.exp(-RATE * maturity) * norm.pdf(d1) / (2.0 * math.sqrt(w))
    reference = np.zeros(expiries.size)
    for pillar, share in ((lower, weight), (lower + 1, 1.0 - weight)):
        reference[pillar] = scale * dv_dw * share * 2.0 * 0.2 * expiries[pillar]
    for column in ("vega_bump", "vega_aad"):
        ladder = european_run.ladder[column].to_numpy()
        absolute = np.abs(ladder)
        share = absolute[lower:lower + 2].sum() / absolute.sum()
        error = np.max(np.abs(ladder - reference)) / np.max(np.abs(reference))
        print(f"\nEuropean {column}: {np.round(ladder, 4)}; on the bracketing pillars {100 * share:.3f} %; "
              f"Black-Scholes reference {np.round(reference, 4)}: max difference {100 * error:.3f} % of the "
              f"largest bucket")
        assert share >= 0.95
        assert np.all(ladder[lower + 2:] == 0.0), column
        assert error < 0.03
    # a one-trade book: its ladder is the trade's own bump ladder x quantity x notional
    np.testing.assert_allclose(european_run.ladder["vega_bump"].to_numpy() / scale,
                               european_run.ladder_by_trade.loc["eu"].to_numpy(), rtol=1e-12)


def test_prices_equal_finite_differences_on_the_run_grid(book_run, snapshot):
    method = FiniteDifference(vega=False)
    trades = book_run.trades.set_index("id")
    for trade, contract in CONTRACTS.items():
        result = method.price(contract, snapshot, local_vol=book_run.local_vol)
        expected = {"price": result.value, **{g: result.greeks[g] for g in ("delta", "gamma", "theta")}}
        for name, value in expected.items():
            assert trades.loc[trade, name] == pytest.approx(float(np.asarray(value)), rel=1e-10, abs=1e-12), \
                (trade, name)
        assert trades.loc[trade, "npv"] == pytest.approx(SCALE[trade] * trades.loc[trade, "price"], rel=1e-14)
        assert np.isnan(trades.loc[trade, "std_error"])


@pytest.mark.slow
def test_monte_carlo_run_agrees_with_the_pde_run(book_run, snapshot, folder):
    ids = ["eu", "dao", "asn"]
    mc = run_book(market=snapshot, book=write_book(folder, ids, "mc.csv"), method="mc", paths=200_000, seed=3,
                  vega=False).trades.set_index("id")
    pde = book_run.trades.set_index("id")
    assert (mc.loc[ids, "method"] == "monte-carlo").all() and (mc["status"] == "ok").all()
    for trade in ids:
        gap = abs(mc.loc[trade, "price"] - pde.loc[trade, "price"])
        allowed = 4.0 * mc.loc[trade, "std_error"] + 1e-3 * abs(pde.loc[trade, "price"])
        print(f"\n{trade}: MC {mc.loc[trade, 'price']:.5f} +- {mc.loc[trade, 'std_error']:.5f}, "
              f"PDE {pde.loc[trade, 'price']:.5f}: gap {gap / mc.loc[trade, 'std_error']:.2f} standard errors")
        assert gap < allowed, trade


@pytest.fixture(scope="module")
def broken_run(snapshot, folder, book_run):
    return run_book(market=snapshot, book=write_book(folder, BROKEN_ORDER, "broken.csv"))


def test_broken_rows_fail_alone(broken_run, book_run):
    trades = broken_run.trades.set_index("id")
    assert list(trades.index) == BROKEN_ORDER
    for trade, (_, field) in BROKEN.items():
        status = trades.loc[trade, "status"]
        row = BROKEN_ORDER.index(trade) + 1
        assert status.startswith("error:"), (trade, status)
        assert f"row {row}" in status and field in status, (trade, status)
        assert trades.loc[trade, ["price", "npv", "delta", "vega"]].isna().all(), trade
    good = list(ROWS)
    assert (trades.loc[good, "status"] == "ok").all()
    reference = book_run.trades.set_index("id")
    pd.testing.assert_frame_equal(trades.loc[good, NUMBERS], reference.loc[good, NUMBERS], check_exact=False,
                                  rtol=1e-12, atol=0)
    pd.testing.assert_frame_equal(broken_run.ladder, book_run.ladder, check_exact=False, rtol=1e-12, atol=1e-12)
    summary = broken_run.summary
    assert summary["trades"] == len(BROKEN_ORDER) and summary["failed"] == len(BROKEN) and summary["ok"] == 5
    assert summary["npv"] == pytest.approx(book_run.summary["npv"], rel=1e-12)
    by_type = broken_run.by_type.set_index("instrument")
    expected = {"european": (3, 2), "barrier": (2, 1), "asian": (2, 1), "lookback": (1, 0), "cliquet": (1, 0),
                "(invalid)": (1, 1)}
    assert set(by_type.index) == set(expected)
    for kind, (count, failed) in expected.items():
        assert (by_type.loc[kind, "trades"], by_type.loc[kind, "failed"]) == (count, failed), kind
    reference_by_type = book_run.by_type.set_index("instrument")
    for kind in reference_by_type.index:
        assert by_type.loc[kind, "npv"] == pytest.approx(reference_by_type.loc[kind, "npv"], rel=1e-12)


@pytest.mark.parametrize("parallel_executor", [ProcessExecutor, ThreadExecutor])
def test_processes_and_threads_give_exactly_the_serial_numbers(snapshot, folder, book_run, parallel_executor):
    book = write_book(folder, ["dao", "eu"], "two_types.csv")
    assert len(book_chunks(read_book(book))) == 2
    serial = run_book(market=snapshot, book=book, executor=SerialExecutor())
    with parallel_executor(workers=2) as pool:
        parallel = run_book(market=snapshot, book=book, executor=pool)
    assert parallel.summary["executor"] != serial.summary["executor"]
    assert (serial.trades["status"] == "ok").all()
    pd.testing.assert_frame_equal(parallel.trades, serial.trades, check_exact=True)
    pd.testing.assert_frame_equal(parallel.ladder, serial.ladder, check_exact=True)
    pd.testing.assert_frame_equal(parallel.ladder_by_trade, serial.ladder_by_trade, check_exact=True)
    assert np.isfinite(serial.ladder[["vega_bump", "vega_aad"]].to_numpy()).all()


def test_book_chunks_one_type_per_chunk_in_book_order(folder):
    rows = read_book(write_book(folder, BROKEN_ORDER, "chunks.csv"))
    for max_cost in (run_module.CHUNK_COST, 1.0, 40.0):
        tasks = book_chunks(rows, max_cost=max_cost)
        flat = [i for task in tasks for i in task.indices]
        assert sorted(flat) == list(range(len(rows)))
        for task in tasks:
            assert list(task.indices) == sorted(task.indices)
            assert [r.id for r in task.rows] == [rows[i].id for i in task.indices]
            kinds = {rows[i].instrument if rows[i].error is None else "" for i in task.indices}
            assert len(kinds) == 1, kinds
        if max_cost == run_module.CHUNK_COST:  # one chunk per type, types in order of first appearance
            assert [rows[t.indices[0]].id for t in tasks] == ["negk", "eu", "dao", "asn", "lb", "cq"]
            assert [len(t.indices) for t in tasks] == [4, 1, 2, 1, 1, 1]
    assert len(book_chunks(rows, max_cost=1.0)) == len(rows)  # every trade costs >= 1: one chunk each


CHUNKING_ROWS = [
    "e1,european,call,100,0.6,2,10,,,,,,",
    "d1,barrier,call,100,0.5,-1,5,85,down-and-out,,,,",
    "e2,european,put,95,0.3,-1,4,,,,,,",
    "e3,european,call,110,0.9,1,1,,,,,,",
    "d2,barrier,put,100,0.8,1,2,120,up-and-out,,,,",
]


def test_results_do_not_depend_on_chunk_size(snapshot, folder, monkeypatch, book_run):
    book = folder / "chunking.csv"
    book.write_text(HEADER + "\n" + "\n".join(CHUNKING_ROWS) + "\n")
    whole = run_book(market=snapshot, book=book)
    assert len(run_module.book_chunks(read_book(book))) == 2
    monkeypatch.setattr(run_module, "CHUNK_COST", 1.0)
    assert len(run_module.book_chunks(read_book(book))) == 5
    split = run_book(market=snapshot, book=book)
    assert (whole.trades["status"] == "ok").all()
    numbers = [c for c in whole.trades.columns if whole.trades[c].dtype.kind == "f"]
    pd.testing.assert_frame_equal(split.trades.drop(columns=numbers), whole.trades.drop(columns=numbers),
                                  check_exact=True)
    np.testing.assert_allclose(split.trades[numbers].to_numpy(), whole.trades[numbers].to_numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(split.ladder.to_numpy(), whole.ladder.to_numpy(), rtol=1e-12, atol=1e-12)
    difference = np.nanmax(np.abs(split.trades[numbers].to_numpy() - whole.trades[numbers].to_numpy()))
    print(f"\nchunk size: largest difference {difference:.3e}")

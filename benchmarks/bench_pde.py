"""Benchmark: batched finite differences (Shoals) vs QuantLib's FdBlackScholesBarrierEngine.

1,000 continuous barrier options (random down/up, in/out, call/put, strikes 80-120, barriers 70-95 /
105-130, maturities 0.25-2 y, vols 0.15-0.45, dividend 0 or 2 %; spot 100, r = 3 %) at 1e-3 accuracy:

1. accuracy: on a sample of ``--sample`` options, each method's grid is refined along a ladder until its
   largest error against QuantLib's AnalyticBarrierEngine, |error| / max(1, |price|) (absolute below a
   price of 1, relative above; spot 100), is <= ``--accuracy`` at the given quantiles of the sample
   (``--quantiles``: 1.0 = the largest error, 0.95 = all but the worst 5 %; QuantLib's engine converges at
   first order on a few options, near-barrier and knock-in cases, so its largest error falls slowly);
2. timing, warm, medians of ``--repeats`` runs: Shoals prices the whole book in one batched call (value,
   delta, gamma, theta; no vega), QuantLib prices ``--quantlib-options`` of the options one by one at its
   grid (per-option time = total / count);
3. the per-option ratio QuantLib / Shoals is printed (goal >= 10).

The seed-book section (``--book``, on by default): the seed's 150-trade exotic book
(:func:`shoals.data.synthetic.seed_book`: down-and-out and up-and-in barriers, fixed lookbacks, monthly
Asians and cliquets, maturities 0.25-5 y) under the Dupire local vol of the seed's synthetic market
(calibrated from :func:`shoals.data.synthetic.seed_quotes`, not timed), priced by
:func:`shoals.price_book` with value, delta, gamma and theta (no vega) at the default grid: warm median
time, time per instrument type, the largest relative error against a 2x refined grid, and the seed's own
PDE time per trade (``seed_pipeline_native.py --mode pde``, one trade, extrapolated to the book).

Run: ``python benchmarks/bench_pde.py`` (2 cores; takes a few minutes).  Sections are functions of :func:`main`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import QuantLib as ql
from common import median_time

import shoals
from shoals.instruments import Barrier
from shoals.market import FlatMarket
from shoals.methods.finite_difference import FiniteDifference

SPOT, RATE = 100.0, 0.03
TODAY = ql.Date(2, 1, 2024)
SHOALS_LADDER = [(61, 40), (81, 50), (101, 60), (121, 80), (161, 100), (201, 150), (241, 200), (321, 300)]
QUANTLIB_LADDER = [(50, 100), (100, 200), (200, 400), (300, 600), (400, 800), (600, 1200), (800, 1600)]
QL_TYPES = {(False, False): ql.Barrier.DownOut, (False, True): ql.Barrier.DownIn,
            (True, False): ql.Barrier.UpOut, (True, True): ql.Barrier.UpIn}


def barrier_book(count: int, seed: int = 7) -> dict:
    """Random continuous barrier options (field arrays; maturities in whole days for QuantLib dates)."""
    rng = np.random.default_rng(seed)
    is_up = rng.random(count) < 0.5
    return {"strike": rng.uniform(80.0, 120.0, count),
            "maturity": np.round(rng.uniform(0.25, 2.0, count) * 365.0) / 365.0,
            "barrier": np.where(is_up, rng.uniform(105.0, 130.0, count), rng.uniform(70.0, 95.0, count)),
            "is_up": is_up, "is_knock_in": rng.random(count) < 0.5, "is_call": rng.random(count) < 0.5,
            "vol": rng.uniform(0.15, 0.45, count), "dividend": rng.choice([0.0, 0.02], count)}


def take(book: dict, rows) -> dict:
    return {name: values[rows] for name, values in book.items()}


def shoals_inputs(book: dict):
    contract = Barrier(strike=book["strike"], maturity=book["maturity"], barrier=book["barrier"],
                       is_up=book["is_up"], is_knock_in=book["is_knock_in"], is_call=book["is_call"])
    return contract, FlatMarket(spot=SPOT, rate=RATE, vol=book["vol"], dividend=book["dividend"])


def quantlib_options(book: dict, engine_factory) -> list:
    """One QuantLib BarrierOption per trade, each with its own flat process and engine."""
    ql.Settings.instance().evaluationDate = TODAY
    day_count = ql.Actual365Fixed()
    options = []
    for i in range(book["strike"].size):
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(SPOT)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, float(book["dividend"][i]), day_count)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, RATE, day_count)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), float(book["vol"][i]),
                                                               day_count)))
        option = ql.BarrierOption(QL_TYPES[(bool(book["is_up"][i]), bool(book["is_knock_in"][i]))],
                                  float(book["barrier"][i]), 0.0,
                                  ql.PlainVanillaPayoff(ql.Option.Call if book["is_call"][i] else ql.Option.Put,
                                                        float(book["strike"][i])),
                                  ql.EuropeanExercise(TODAY + round(book["maturity"][i] * 365.0)))
        option.setPricingEngine(engine_factory(process))
        options.append(option)
    return options


def quantlib_prices(options: list) -> np.ndarray:
    for option in options:
        option.recalculate()
    return np.array([option.NPV() for option in options])


def fd_engine(time_grid: int, space_grid: int):
    return lambda process: ql.FdBlackScholesBarrierEngine(process, time_grid, space_grid)


def shoals_method(space_nodes: int, time_steps: int) -> FiniteDifference:
    return FiniteDifference(space_nodes=space_nodes, time_steps=time_steps, vega=False)


def calibrate_grids(sample: dict, accuracy: float, quantile: float = 1.0):
    """The first grid of each ladder whose error |e| / max(1, |price|) on ``sample``, at ``quantile`` of the
    sample (1.0: the largest), is <= ``accuracy``."""
    exact = quantlib_prices(quantlib_options(sample, ql.AnalyticBarrierEngine))
    contract, market = shoals_inputs(sample)
    chosen = {}
    for name, ladder, prices in (
            ("shoals", SHOALS_LADDER, lambda grid: shoals_method(*grid).price(contract, market).value),
            ("quantlib", QUANTLIB_LADDER, lambda grid: quantlib_prices(quantlib_options(sample, fd_engine(*grid))))):
        for grid in ladder:
            error = np.abs(prices(grid) - exact) / np.maximum(1.0, np.abs(exact))
            print(f"  {name:8s} grid {grid}: max error {error.max():.2e}, 95th pct {np.quantile(error, 0.95):.2e}, "
                  f"median {np.median(error):.2e}")
            if np.quantile(error, quantile) <= accuracy:
                chosen[name] = grid
                break
        else:
            chosen[name] = ladder[-1]
            print(f"  {name}: no grid of the ladder reaches {accuracy:g}; using the finest")
    return chosen["shoals"], chosen["quantlib"]


def barrier_section(count: int, sample_size: int, quantlib_count: int, accuracy: float, repeats: int,
                    quantile: float = 1.0) -> dict:
    """1,000 barrier options at ``accuracy``: grids by refinement, warm median timings, per-option ratio."""
    book = barrier_book(count)
    sample = take(book, np.arange(sample_size))
    print(f"[barrier] grid refinement against AnalyticBarrierEngine on {sample_size} options, accuracy "
          f"{accuracy:g} at quantile {quantile:g} of the errors:")
    shoals_grid, quantlib_grid = calibrate_grids(sample, accuracy, quantile)
    contract, market = shoals_inputs(book)
    method = shoals_method(*shoals_grid)
    shoals_total = median_time(lambda: method.price(contract, market), repeats)
    options = quantlib_options(take(book, np.arange(quantlib_count)), fd_engine(*quantlib_grid))
    quantlib_total = median_time(lambda: quantlib_prices(options), repeats)
    per_shoals, per_quantlib = shoals_total / count, quantlib_total / quantlib_count
    print(f"[barrier] Shoals FD {shoals_grid} nodes x steps: {count} options in {shoals_total:.3f} s "
          f"({per_shoals * 1e3:.3f} ms/option, with delta, gamma, theta)")
    print(f"[barrier] QuantLib FdBlackScholesBarrierEngine {quantlib_grid} t x x: {quantlib_count} options in "
          f"{quantlib_total:.3f} s ({per_quantlib * 1e3:.3f} ms/option, value only)")
    print(f"[barrier] per-option ratio QuantLib / Shoals: {per_quantlib / per_shoals:.1f}x (goal >= 10x)")
    return {"shoals_grid": shoals_grid, "quantlib_grid": quantlib_grid, "shoals_s": shoals_total,
            "quantlib_s_per_option": per_quantlib, "ratio": per_quantlib / per_shoals}


def seed_book_section(repeats: int, baseline: Path | None) -> dict:
    """The seed's 150-trade book under local vol, value + delta + gamma + theta (module docstring)."""
    from shoals.calibration.surface import calibrate_surface
    from shoals.data.synthetic import seed_book, seed_quotes
    from shoals.instruments import stack
    from shoals.io.quotes import read_quotes
    from shoals.market.local_vol import default_local_vol
    from shoals.risk.book import price_book

    with tempfile.TemporaryDirectory() as folder:
        quotes, book = Path(folder) / "quotes.csv", Path(folder) / "book.csv"
        seed_quotes().to_csv(quotes, index=False)
        seed_book().to_csv(book, index=False)
        snapshot = calibrate_surface(*read_quotes(quotes, spot=100.0), spot=100.0).snapshot
        rows = shoals.read_book(book)
    grid = default_local_vol(snapshot, [r.fields["maturity"] for r in rows])
    method = FiniteDifference(vega=False)
    total = median_time(lambda: price_book(rows, method, market=snapshot, local_vol=grid), repeats)
    base = price_book(rows, method, market=snapshot, local_vol=grid)["price"].to_numpy()
    fine = price_book(rows, FiniteDifference(vega=False, space_nodes=481, time_steps=400), market=snapshot,
                      local_vol=grid)["price"].to_numpy()
    error = np.abs(base - fine) / np.maximum(np.abs(fine), 1e-2)
    kinds = np.array([r.instrument for r in rows])
    print(f"[seed book] {len(rows)} trades under local vol (value, delta, gamma, theta) in {total:.3f} s warm "
          f"(median of {repeats}; goal <= 0.5 s)")
    for kind in np.unique(kinds):
        members = [r for r in rows if r.instrument == kind]
        contract = stack([r.contract for r in members])
        seconds = median_time(lambda c=contract: method.price(c, snapshot, local_vol=grid), repeats)
        print(f"[seed book]   {kind:9s} {len(members):3d} trades {seconds:.3f} s, max relative error vs "
              f"481 x 400: {error[kinds == kind].max():.1e}")
    report = {"trades": len(rows), "shoals_s": total, "max_relative_error": float(error.max())}
    if baseline is not None and baseline.exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, str(baseline), "--mode", "pde", "--trade-index", "0"], check=True,
                       capture_output=True)
        per_trade = time.perf_counter() - started
        print(f"[seed book] seed pipeline PDE: {per_trade:.2f} s for one trade (300 x 300, proxy payoff; process "
              f"start and its local vol included) -> ~{150 * per_trade:.0f} s for the book; ratio "
              f"{150 * per_trade / total:.0f}x")
        report["seed_s_per_trade"] = per_trade
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--quantlib-options", type=int, default=200)
    parser.add_argument("--accuracy", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantiles", default="1.0,0.95")
    parser.add_argument("--book", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--barriers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--baseline", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                        / "baselines" / "seed_pipeline_native.py")
    args = parser.parse_args(argv)
    if args.book:
        seed_book_section(args.repeats, args.baseline)
    if not args.barriers:
        return
    for quantile in (float(q) for q in args.quantiles.split(",")):
        barrier_section(args.count, args.sample, args.quantlib_options, args.accuracy, args.repeats, quantile)


if __name__ == "__main__":
    main()

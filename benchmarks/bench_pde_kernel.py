"""Benchmark: the batched Crank-Nicolson kernel (:func:`shoals.kernels.pde.solve_backward`) on the shapes of
the example book.

The 150-trade example book (``seed_book.csv``) under the Dupire local vol of the example market
(``seed_quotes.csv`` calibrated by :func:`shoals.calibration.surface.calibrate_surface`, one shared VolTable
for the whole book; not timed) is priced family by family with ``FiniteDifference(vega=False)`` (value,
delta, gamma, theta) at the default grid.  Each family is one batched solve of rows x nodes x steps
(Asian: trades x average nodes; cliquet: trades x reset-level nodes; lookback: trades x extreme nodes;
barriers: one to three rows per trade), printed with:

* rows: the rows of the batched solve (trades x state nodes for the path-dependent families);
* first: the wall time of the first price (tracing + XLA compilation + one run; the first family also pays
  the one-off set-up of the market functions);
* compile: first - warm (the compilation and tracing cost);
* warm: the median wall time of ``--repeats`` further prices (:func:`common.median_time`).

Run: ``python benchmarks/bench_pde_kernel.py [--repeats 7]`` (CPU, float64).
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files

from common import median_time

import shoals  # noqa: F401  (float64 before any array)
from shoals.calibration.surface import calibrate_surface
from shoals.instruments import stack
from shoals.io.book import read_book
from shoals.io.quotes import read_quotes
from shoals.market.local_vol import default_local_vol
from shoals.methods import FiniteDifference


def book_families():
    """(snapshot, local vol, {instrument: stacked contract}) of the example book and market."""
    data = files("shoals.data")
    table, cleaning = read_quotes(data / "seed_quotes.csv", spot=100.0)
    snapshot = calibrate_surface(table, cleaning, spot=100.0).snapshot
    rows = read_book(data / "seed_book.csv")
    local_vol = default_local_vol(snapshot, [row.fields["maturity"] for row in rows])
    groups = {}
    for row in rows:
        groups.setdefault(row.instrument, []).append(row.contract)
    return snapshot, local_vol, {name: stack(contracts) for name, contracts in groups.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm prices per family (median)")
    args = parser.parse_args()
    snapshot, local_vol, families = book_families()
    method = FiniteDifference(vega=False)
    print(f"{'family':<10} {'trades':>6} {'rows':>6} {'first s':>8} {'compile s':>9} {'warm s':>8}")
    for name, contract in families.items():
        def price(contract=contract):
            return method.price(contract, snapshot, local_vol=local_vol)

        started = time.perf_counter()
        result = price()
        first = time.perf_counter() - started
        warm = median_time(price, args.repeats, warm_up=False)
        trades = result.value.size
        rows = result.diagnostics.get("rows", trades * result.diagnostics.get("state_nodes", 1))
        print(f"{name:<10} {trades:>6} {rows:>6} {first:>8.2f} {first - warm:>9.2f} {warm:>8.3f}")


if __name__ == "__main__":
    main()

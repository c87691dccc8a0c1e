"""The whole book pipeline (``shoals run``) against the seed pipeline (../shared/baselines/seed_pipeline_native.py).

Prints, measured in one run:

* the seed pipeline at a small size (``--baseline-trades`` trades with its vega ladder, its own timer) and
  Shoals' pipeline on the same number of trades of the embedded book (the first trades of the seed's own
  generator), warm, with the per-trade ratio;
* Shoals' full default run (150 trades, 8-pillar ladder by bump AND by AAD, report files) warm (median of
  ``--repeats`` in-process runs) and cold: a fresh ``shoals run`` process with an empty JAX compilation cache,
  then a fresh process with the persistent cache filled by the first.

Run: ``python benchmarks/bench_run.py [--baseline-trades 4] [--repeats 3] [--skip-baseline]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median_time

BASELINE = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "seed_pipeline_native.py"


def baseline_seconds(trades: int) -> float:
    """Wall time of the seed pipeline with ``trades`` trades and its vega ladder (its own report)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "baseline.json"
        subprocess.run([sys.executable, str(BASELINE), "--n-trades", str(trades), "--vega", "--json", str(report)],
                       check=True, capture_output=True)
        return float(json.loads(report.read_text())["total_s"])


def small_book(trades: int, folder: Path) -> Path:
    """The first ``trades`` rows of the embedded 150-trade book."""
    import pandas as pd

    from shoals.data import path

    book = folder / "small_book.csv"
    pd.read_csv(path("seed_book.csv")).head(trades).to_csv(book, index=False)
    return book


def cold_run(out: Path, cache: Path) -> float:
    """Wall time of a fresh ``shoals run`` process (default example, outputs in ``out``) with the JAX
    compilation cache in ``cache``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shoals.cli.main", "run", "--out", str(out)], check=True, capture_output=True,
                   env={**os.environ, "SHOALS_JAX_CACHE": str(cache)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-trades", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    from shoals.reports.outputs import write_run_outputs
    from shoals.risk.run import run_book

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        book = small_book(args.baseline_trades, folder)
        small = median_time(lambda: run_book(book=book), args.repeats)
        print(f"shoals run, {args.baseline_trades} trades with the ladder (bump + AAD), warm: {small:.2f} s "
              f"({small / args.baseline_trades:.3f} s per trade)")
        if not args.skip_baseline:
            seed = baseline_seconds(args.baseline_trades)
            print(f"seed pipeline, {args.baseline_trades} trades with its vega ladder: {seed:.1f} s "
                  f"({seed / args.baseline_trades:.1f} s per trade)")
            print(f"per-trade ratio seed / shoals (small size): {seed / small:.0f}x")

        def full():
            result = run_book()
            write_run_outputs(result, folder / "report")
            return result

        warm = median_time(full, args.repeats)
        result = full()
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
        print(f"shoals run, default example (150 trades, 8 pillars by bump and AAD, outputs), warm median: "
              f"{warm:.2f} s ({warm / 150:.3f} s per trade; stages of the last run: {stages})")
        cache = folder / "jax-cache"
        first = cold_run(folder / "cold1", cache)
        second = cold_run(folder / "cold2", cache)
        print(f"shoals run cold (fresh process): {first:.1f} s with an empty compilation cache, "
              f"{second:.1f} s with the persistent cache")
        if not args.skip_baseline:
            print(f"per-trade ratio seed (small size) / shoals full run warm: "
                  f"{(seed / args.baseline_trades) / (warm / 150):.0f}x")


if __name__ == "__main__":
    main()

"""Risk benchmarks: the original VaR example vs the seed baseline, and delta-hedged P&L throughput.

usage:
  python benchmarks/bench_risk.py [--repeat 15] [--skip-baseline]
         [--options 1000] [--paths 1000] [--steps 180] [--device cpu|gpu] [--block 64] [--option-block 512]

VaR: 100k scenarios x 10 days x 5 assets (the embedded example), warm median of ``value_at_risk`` (both draw
modes), against ``shared/baselines/seed_mc_var.py var --sims 100000`` (sequential and process-pool) run in the
same process tree.  Hedged P&L: a grid of calls (``--options`` = strikes x 10 maturities) x paths x steps;
throughput in option-path-steps per second, extrapolated linearly to 10,000 options x 1,000 paths x 180 steps
when the measured grid is smaller (the cost is linear in options x paths x steps).
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

import numpy as np
from common import median_time

import shoals  # noqa: F401  (float64 before any array)
from shoals.data import path as data_path
from shoals.risk.hedging import hedged_pnl
from shoals.risk.var import Portfolio, value_at_risk

BASELINE = Path(__file__).resolve().parents[1].parent / "shared" / "baselines" / "seed_mc_var.py"
TARGET = (10_000, 1_000, 180)


def bench_var(repeat, skip_baseline):
    portfolio = Portfolio.from_mapping(json.loads(data_path("portfolio_example.json").read_text()))
    out = {}
    for draws in ("portfolio", "assets"):
        result = value_at_risk(portfolio, horizon_days=10, simulations=100_000, seed=0, draws=draws)
        out[draws] = {"warm_median_s": median_time(
            lambda d=draws: value_at_risk(portfolio, horizon_days=10, simulations=100_000, seed=0, draws=d),
            repeat), **result.figures()}
        print(f"shoals VaR ({draws} draws): {1e3 * out[draws]['warm_median_s']:.1f} ms warm median, "
              f"VaR95 {result.var[0]:,.0f}, VaR99 {result.var[1]:,.0f}, CVaR95 {result.cvar[0]:,.0f}")
    if skip_baseline or not BASELINE.exists():
        return out
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "baseline.json"
        subprocess.run([sys.executable, str(BASELINE), "var", "--sims", "100000", "--json", str(file)],
                       check=True, capture_output=True)
        baseline = json.loads(file.read_text())
    out["baseline"] = baseline
    for mode in ("seq", "par"):
        if mode in baseline:
            wall = baseline[mode]["wall_s"]
            print(f"baseline {mode}: {wall:.2f} s (VaR95 {baseline[mode]['var95_usd']:,.0f}); "
                  f"ratio baseline / shoals(portfolio) = {wall / out['portfolio']['warm_median_s']:,.0f}x, "
                  f"/ shoals(assets) = {wall / out['assets']['warm_median_s']:,.0f}x")
    return out


def bench_hedge(options, paths, steps, device, block, option_block):
    import jax

    maturities = 10
    strikes = max(options // maturities, 1)
    target = jax.devices(device)[0]

    def run():
        with jax.default_device(target):
            return hedged_pnl(strikes=np.linspace(70.0, 130.0, strikes), expiries=np.linspace(0.1, 1.0, maturities),
                              realised_vol=0.25, hedge_vol=0.20, paths=paths, steps=steps, keep_paths=False,
                              block=block, option_block=option_block)

    start = time.perf_counter()
    run()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    result = run()
    warm = time.perf_counter() - start
    work = result.mean.size * paths * steps
    rate = work / warm
    print(f"hedged P&L on {target.platform}: {result.mean.size:,} options x {paths:,} paths x {steps} steps: "
          f"{warm:.2f} s warm ({cold:.2f} s cold), {rate:,.3e} option-path-steps/s, "
          f"{result.mean.size * steps / warm:,.3e} option-steps/s")
    full = TARGET[0] * TARGET[1] * TARGET[2]
    if work < full:
        print(f"  extrapolated (linear in work) to {TARGET[0]:,} x {TARGET[1]:,} x {TARGET[2]}: {full / rate:.1f} s")
    return {"options": int(result.mean.size), "paths": paths, "steps": steps, "warm_s": warm, "cold_s": cold,
            "option_path_steps_per_s": rate, "device": target.platform, "block": block,
            "option_block": option_block}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-var", action="store_true")
    parser.add_argument("--options", type=int, default=1000)
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=180)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--option-block", type=int, default=512)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    out = {}
    if not args.skip_var:
        out["var"] = bench_var(args.repeat, args.skip_baseline)
    out["hedge"] = bench_hedge(args.options, args.paths, args.steps, args.device, args.block,
                               args.option_block)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

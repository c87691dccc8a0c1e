"""Monte Carlo benchmarks beside the seed baseline (../shared/baselines/seed_mc_var.py mc, run as a
subprocess in the same run): the 4M-path European call (one-step exact GBM kernel) and a 100k-path x
252-step arithmetic Asian (252 fixings) under Dupire local vol (log-Euler, grid built once, not timed).

    python benchmarks/bench_monte_carlo.py [--paths 4000000] [--asian-paths 100000] [--repeat 5]
        [--baseline PATH] [--json FILE]

Figures are medians over ``--repeat`` warm runs (after one compile/warm-up run); ratios are baseline
time / Shoals time (> 1: Shoals faster).  The baseline prices only the 4M-path European call (NumPy, 8
seeded batches, sequential and with a process pool); the Asian ratio is against that same baseline run,
for scale (25.2M path steps against 4M terminal draws).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import jax
from bench_foundation import bench_monte_carlo
from common import median_time

import shoals as sh
from shoals.data.synthetic import skewed_svi_market
from shoals.market.local_vol import build_local_vol

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "seed_mc_var.py"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=4_000_000)
    parser.add_argument("--asian-paths", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.baseline.exists():
        parser.error(f"baseline script not found: {args.baseline} (pass --baseline PATH)")

    european = bench_monte_carlo(args.paths, args.repeat, args.baseline)   # plain paths, with the seed baseline
    european_s, sequential, parallel = european["shoals_s"], european["baseline_seq_s"], european["baseline_par_s"]
    market = sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)
    call = sh.European(strike=100.0, maturity=1.0)
    antithetic = sh.MonteCarlo(paths=args.paths, seed=1, greeks=False, antithetic=True)
    antithetic_result = antithetic.price(call, market)
    antithetic_s = median_time(lambda: antithetic.price(call, market), args.repeat)

    snapshot = skewed_svi_market()
    grid = build_local_vol(snapshot, t_max=1.0)[0]
    asian = sh.Asian(maturity=1.0, fixings=252, strike=100.0)
    asian_method = sh.MonteCarlo(paths=args.asian_paths, seed=1, steps_per_year=252, greeks=False)
    asian_result = asian_method.price(asian, snapshot, local_vol=grid)
    asian_s = median_time(lambda: asian_method.price(asian, snapshot, local_vol=grid), args.repeat)

    print(f"European call, {args.paths:,} paths: Shoals {european_s * 1e3:.1f} ms warm (price "
          f"{european['shoals_price']:.4f} +- {european['shoals_std_error']:.4f}) | baseline sequential "
          f"{sequential * 1e3:.1f} ms, pool {parallel * 1e3:.1f} ms (price {european['baseline_price']:.4f}) | ratio {sequential / european_s:.1f}x vs sequential, {parallel / european_s:.1f}x "
          f"vs pool")
    print(f"European call, {args.paths:,} paths as {args.paths // 2:,} antithetic pairs: Shoals {antithetic_s * 1e3:.1f} ms "
          f"warm (price {float(antithetic_result.value):.4f} +- {float(antithetic_result.std_error):.4f}) | ratio "
          f"{sequential / antithetic_s:.1f}x vs sequential, {parallel / antithetic_s:.1f}x vs pool")
    print(f"Local-vol arithmetic Asian, {args.asian_paths:,} paths x 252 steps: Shoals {asian_s * 1e3:.0f} ms warm "
          f"(price {float(asian_result.value):.4f} +- {float(asian_result.std_error):.4f}) | ratio to the baseline's "
          f"4M-path European: {sequential / asian_s:.2f}x sequential, {parallel / asian_s:.2f}x pool")
    report = {"european": dict(european, antithetic_s=antithetic_s),
              "local_vol_asian": {"paths": args.asian_paths, "steps": 252, "shoals_s": asian_s,
                                  "price": float(asian_result.value), "std_error": float(asian_result.std_error)},
              "cpus": os.cpu_count(), "jax": jax.__version__, "loadavg": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

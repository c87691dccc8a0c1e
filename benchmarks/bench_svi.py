"""SVI calibration benchmark: batched fit_svi on the seed's synthetic 8-expiry quote set beside the seed's
own calibrate_svi_for_expiry measured in the same run, and the SPX 2011-01-24 fit time and quality.

    python benchmarks/bench_svi.py [--repeat 7] [--seed-expiries 8] [--seed-subprocess]
        [--baseline PATH] [--json FILE]

Shoals figures are medians over ``--repeat`` warm runs after one compile run (reported separately).
The baseline is ``seed_pipeline_native.calibrate_svi_for_expiry`` (scipy SLSQP, 30 random restarts plus
basin hopping, one expiry per call) called in-process for the first ``--seed-expiries`` of the 8
expiries (wall and process CPU per expiry); with ``--seed-subprocess`` the seed's own command line
``--mode svi --expiry 1.0`` is run instead and its reported calibrate time used.  The ratio is the seed
total for all 8 expiries (extrapolated from the mean per expiry when fewer are run) over the Shoals warm
time for all 8 at once.  Fit quality (RMSE in vol points against mid, share of fitted vols inside
[bid, ask]) is computed for both on the same quotes.  SmileData are built by the small builders of
tests/unit/test_svi_calibration.py (the production quotes -> SmileData path is calibration/smiles.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import shoals  # noqa: F401  (float64)
from shoals.calibration.svi import fit_svi

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = ROOT.parent / "shared" / "baselines" / "seed_pipeline_native.py"


def load_builders():
    spec = importlib.util.spec_from_file_location("svi_test_builders", ROOT / "tests" / "unit" / "test_svi_calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_fits(smiles, repeat, **options):
    """(compile+first run seconds, warm median seconds, fit)."""
    started = time.perf_counter()
    fit = fit_svi(smiles, **options)
    jax.block_until_ready(fit.params.a)
    cold = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        jax.block_until_ready(fit_svi(smiles, **options).params.a)
        times.append(time.perf_counter() - started)
    return cold, statistics.median(times), fit


def quality(smiles, vols):
    """RMSE (vol points) and inside-[bid, ask] share per slice of fitted vols (slices, quotes)."""
    mask = smiles.mask
    error = np.where(mask, vols - smiles.mid_vol, 0.0)
    rmse = 100.0 * np.sqrt((error ** 2).sum(axis=1) / mask.sum(axis=1))
    lower = np.where(np.isfinite(smiles.bid_vol), smiles.bid_vol, 0.0)
    has_ask = mask & np.isfinite(smiles.ask_vol)
    inside = has_ask & (vols >= lower) & (vols <= np.where(has_ask, smiles.ask_vol, np.inf))
    return rmse, inside.sum(axis=1) / np.maximum(has_ask.sum(axis=1), 1)


def bench_seed_baseline(module, expiries, n_expiries, smiles):
    market = module.load_market_quotes(spot=100.0, rate=0.04, expiries=expiries, seed=42)
    rows, vols = [], np.zeros_like(smiles.mid_vol)
    for i, expiry in enumerate(expiries[:n_expiries]):
        wall, cpu = time.perf_counter(), time.process_time()
        params = module.calibrate_svi_for_expiry(market, expiry)
        rows.append({"expiry": expiry, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
        vols[i] = params.implied_vol(smiles.log_moneyness[i])
    rmse, inside = quality(smiles, vols)
    for i, row in enumerate(rows):
        row.update(rmse_vol_points=float(rmse[i]), inside_share=float(inside[i]))
    return rows


def bench_seed_subprocess(baseline):
    completed = subprocess.run([sys.executable, str(baseline), "--mode", "svi", "--expiry", "1.0"],
                               capture_output=True, text=True, check=True)
    match = re.search(r"calibrate_svi_for_expiry\s+calls=\s*1\s+wall=\s*([0-9.]+)s\s+cpu=\s*([0-9.]+)s",
                      completed.stdout)
    if not match:
        raise RuntimeError("could not read the seed's stage timing:\n" + completed.stdout[-2000:])
    return [{"expiry": 1.0, "wall_s": float(match.group(1)), "cpu_s": float(match.group(2))}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed-expiries", type=int, default=8, help="seed expiries to calibrate (1-8)")
    parser.add_argument("--seed-subprocess", action="store_true", help="time the seed CLI for expiry 1.0 instead")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.baseline.exists():
        parser.error(f"baseline script not found: {args.baseline} (pass --baseline PATH)")
    builders = load_builders()
    seed_module = builders.load_seed_module() if args.baseline == DEFAULT_BASELINE else None
    if seed_module is None:
        spec = importlib.util.spec_from_file_location("seed_pipeline_native", args.baseline)
        seed_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(seed_module)

    # ---- seed synthetic set: 8 expiries x 15 strikes
    smiles = builders.seed_smile_data(seed=42)
    cold, warm, fit = timed_fits(smiles, args.repeat)
    print(f"seed synthetic set, 8 expiries x 15 quotes: fit_svi warm median {warm * 1e3:.1f} ms for all 8 "
          f"(first call incl. compile {cold:.2f} s); converged {int(fit.converged.sum())}/8, "
          f"butterfly-free {int(fit.butterfly_free.sum())}/8")
    if args.seed_subprocess:
        seed_rows = bench_seed_subprocess(args.baseline)
    else:
        seed_rows = bench_seed_baseline(seed_module, builders.SEED_EXPIRIES, max(1, min(8, args.seed_expiries)), smiles)
    per_expiry_wall = statistics.mean(r["wall_s"] for r in seed_rows)
    per_expiry_cpu = statistics.mean(r["cpu_s"] for r in seed_rows)
    seed_total = per_expiry_wall * 8
    print(f"seed calibrate_svi_for_expiry: {per_expiry_wall:.2f} s wall ({per_expiry_cpu:.2f} s CPU) per expiry over "
          f"{len(seed_rows)} expiries -> {seed_total:.1f} s for 8 | ratio {seed_total / warm:,.0f}x "
          f"(CPU: {per_expiry_cpu * 8 / warm:,.0f}x)")
    print(f"{'expiry':>7} {'shoals rmse':>12} {'shoals in':>10} {'seed rmse':>10} {'seed in':>8} {'seed s':>7}")
    by_expiry = {r["expiry"]: r for r in seed_rows}
    for i, expiry in enumerate(fit.expiries):
        row = by_expiry.get(float(expiry), {})
        print(f"{expiry:7.2f} {fit.rmse_vol_points[i]:12.5f} {fit.inside_share[i]:10.3f} "
              f"{row.get('rmse_vol_points', float('nan')):10.4f} {row.get('inside_share', float('nan')):8.3f} "
              f"{row.get('wall_s', float('nan')):7.2f}")

    # ---- SPX 2011-01-24
    spx = builders.spx_smile_data()
    later = spx.expiries > builders.TWO_WEEKS
    spx_report = {}
    for weighting in ("vega", "spread"):
        cold_spx, warm_spx, spx_fit = timed_fits(spx, args.repeat, weighting=weighting)
        median_inside = float(np.median(spx_fit.inside_share[later]))
        print(f"\nSPX 2011-01-24, {spx.n_slices} slices ({int(spx.counts.sum())} OTM quotes), weighting={weighting}: "
              f"warm median {warm_spx * 1e3:.1f} ms (first call {cold_spx:.2f} s); median inside share "
              f"(T > 2 weeks) {median_inside:.3f}, median RMSE {np.median(spx_fit.rmse_vol_points):.3f} vol points")
        frame = spx_fit.to_frame()[["expiry", "quotes", "rmse_vol_points", "inside_share", "converged", "iterations",
                                    "min_butterfly_density", "butterfly_free"]]
        print(frame.to_string(index=False, float_format="%.4f"))
        spx_report[weighting] = {"cold_s": cold_spx, "warm_s": warm_spx, "median_inside_later": median_inside,
                                 "table": json.loads(frame.to_json(orient="records"))}

    report = {"seed_set": {"warm_s": warm, "cold_s": cold, "rmse_vol_points": fit.rmse_vol_points.tolist(),
                           "inside_share": fit.inside_share.tolist(), "seed_rows": seed_rows,
                           "seed_total_8_s": seed_total, "ratio": seed_total / warm},
              "spx": spx_report, "cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0]),
              "loadavg": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

"""Foundation benchmarks: closed-form price+delta+vega throughput and 4M-path European Monte Carlo,
each beside the seed baseline (../shared/baselines/seed_mc_var.py) measured in the same run.

    python benchmarks/bench_foundation.py [--options 10000000] [--paths 4000000] [--repeat 5]
        [--baseline PATH] [--json FILE]

Figures are medians over ``--repeat`` warm runs (after one compile/warm-up run); ratios are
baseline time / Shoals time, so > 1 means Shoals is faster.  Both sides read NumPy input arrays and
return NumPy output arrays (Shoals: ``shoals.execution.map_chunks`` of the jitted kernel).  Shoals' closed form is reported twice: NumPy arrays in and
out (``map_chunks``, includes the host transfers and the output concatenation) and on device-resident
chunks (the kernel alone, as data would sit on a GPU).  The closed-form baseline is the seed's
``black_scholes_call`` (NumPy + scipy.stats.norm, price only) on the same options; the Monte Carlo
baseline is ``seed_mc_var.py mc`` (NumPy, 8 seeded batches), sequential and with its process pool.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

import jax
import numpy as np
from common import median_time, seed_mc_baseline

import shoals as sh
from shoals.execution.chunks import DEFAULT_CHUNK, map_chunks
from shoals.kernels.black_scholes import black_scholes_greeks

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "seed_mc_var.py"


@jax.jit
def price_delta_vega(spots, strikes, expiries, vols, rates, dividends, is_call):
    greeks = black_scholes_greeks(spots=spots, strikes=strikes, expiries=expiries, volatilities=vols,
                                  rates=rates, dividend_yields=dividends, is_call=is_call)
    return greeks.price, greeks.delta, greeks.vega


def random_options(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(80, 120, n), rng.uniform(80, 120, n), rng.uniform(0.05, 3.0, n),
            rng.uniform(0.05, 0.6, n), rng.uniform(0.0, 0.06, n), rng.uniform(0.0, 0.04, n),
            rng.uniform(size=n) < 0.5)


def load_baseline(path):
    spec = importlib.util.spec_from_file_location("seed_mc_var", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_closed_form(n, repeat, baseline):
    host = random_options(n)
    shoals_s = median_time(lambda: map_chunks(price_delta_vega, host), repeat)
    chunk = DEFAULT_CHUNK
    resident = [[jax.device_put(a[start:start + chunk]) for a in host] for start in range(0, n, chunk)]
    resident_s = median_time(lambda: jax.block_until_ready([price_delta_vega(*c) for c in resident]), repeat)
    spots, strikes, expiries, vols, rates = host[:5]
    baseline_s = median_time(lambda: baseline.black_scholes_call(spots, strikes, expiries, rates, vols),
                             max(1, repeat // 2))
    return {"options": n, "shoals_s": shoals_s, "shoals_options_per_s": n / shoals_s,
            "shoals_resident_s": resident_s, "shoals_resident_options_per_s": n / resident_s,
            "baseline_price_only_s": baseline_s, "baseline_options_per_s": n / baseline_s,
            "ratio": baseline_s / shoals_s}


def bench_monte_carlo(paths, repeat, baseline_path):
    market = sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)
    option = sh.European(strike=100.0, maturity=1.0)
    method = sh.MonteCarlo(paths=paths, seed=1, greeks=False)
    result = sh.price(option, market, method)
    shoals_s = median_time(lambda: sh.price(option, market, method), repeat)
    base = seed_mc_baseline(baseline_path, paths, repeat)
    sequential, parallel = base["seq_s"], base["par_s"]
    exact = float(sh.price(option, market).value)
    return {"paths": paths, "shoals_s": shoals_s, "shoals_price": float(result.value),
            "shoals_std_error": float(result.std_error), "closed_form": exact,
            "baseline_seq_s": sequential, "baseline_par_s": parallel, "baseline_price": base["price"],
            "ratio_vs_seq": sequential / shoals_s, "ratio_vs_par": parallel / shoals_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=10_000_000)
    parser.add_argument("--paths", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.baseline.exists():
        parser.error(f"baseline script not found: {args.baseline} (pass --baseline PATH)")
    baseline = load_baseline(args.baseline)

    closed = bench_closed_form(args.options, args.repeat, baseline)
    print(f"closed form, price+delta+vega, {closed['options']:,} options: "
          f"NumPy in/out {closed['shoals_s']:.3f} s = {closed['shoals_options_per_s'] / 1e6:.1f} M options/s, "
          f"device-resident {closed['shoals_resident_s']:.3f} s = "
          f"{closed['shoals_resident_options_per_s'] / 1e6:.1f} M options/s | "
          f"baseline (price only) {closed['baseline_price_only_s']:.3f} s = "
          f"{closed['baseline_options_per_s'] / 1e6:.1f} M options/s | ratio {closed['ratio']:.1f}x")
    mc = bench_monte_carlo(args.paths, args.repeat, args.baseline)
    print(f"Monte Carlo European, {mc['paths']:,} paths: Shoals {mc['shoals_s'] * 1e3:.1f} ms warm "
          f"(price {mc['shoals_price']:.4f} +- {mc['shoals_std_error']:.4f}, closed form {mc['closed_form']:.4f}) | "
          f"baseline sequential {mc['baseline_seq_s'] * 1e3:.1f} ms, process pool {mc['baseline_par_s'] * 1e3:.1f} ms "
          f"| ratio {mc['ratio_vs_seq']:.1f}x vs sequential, {mc['ratio_vs_par']:.1f}x vs pool")
    report = {"closed_form": closed, "monte_carlo": mc, "cpus": os.cpu_count(), "jax": jax.__version__,
              "device": str(jax.devices()[0]), "loadavg": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

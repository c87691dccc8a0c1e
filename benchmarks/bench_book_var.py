"""Full-revaluation VaR of the example book: exact repricing of every scenario against Chebyshev proxies.

The embedded example (seed market, 150 exotics) under ``--scenarios`` simulated 10-day spot / implied-vol
scenarios (:func:`shoals.risk.revaluation.simulated_scenarios`), measured in one run on one executor:

* exact: every trade repriced under every scenario (:func:`shoals.risk.revaluation.book_var`);
* proxies: every trade's Chebyshev proxy over (spot return, vol factor) from ``--spot-nodes`` x
  ``--vol-nodes`` repricings (:func:`shoals.risk.proxy_revaluation.proxy_book_var`), run twice: the first run
  compiles its batch shapes (cold), the second is timed warm;
* the delta-gamma-vega approximation's VaR (from the same exact run) with ``--approximation``.

Prints VaR/CVaR of each and the relative differences, the wall times, the repricing counts and the speed-up
(exact / warm proxy).  Run: ``python benchmarks/bench_book_var.py [--scenarios 600] [--executor processes:2]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=600)
    parser.add_argument("--executor", default="processes:2")
    parser.add_argument("--spot-nodes", type=int, default=9)
    parser.add_argument("--vol-nodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--approximation", action="store_true")
    args = parser.parse_args()

    from shoals.cli.common import enable_compilation_cache
    from shoals.execution import executor_from_spec
    from shoals.risk.proxy_revaluation import proxy_book_var
    from shoals.risk.revaluation import book_var, book_var_inputs

    enable_compilation_cache()
    inputs = book_var_inputs(scenarios=args.scenarios, horizon_days=10, seed=args.seed)
    rows, snapshot, grid, scenarios, method = (inputs.rows, inputs.snapshot, inputs.grid, inputs.scenarios,
                                               inputs.method)
    levels = (0.95, 0.99)
    nodes = {"spot_nodes": args.spot_nodes, "vol_nodes": args.vol_nodes}
    with executor_from_spec(args.executor) as executor:
        clock = time.perf_counter()
        proxy_book_var(rows, snapshot, grid, scenarios, method=method, levels=levels, executor=executor, **nodes)
        proxy_cold = time.perf_counter() - clock
        clock = time.perf_counter()
        proxy = proxy_book_var(rows, snapshot, grid, scenarios, method=method, levels=levels, executor=executor,
                               **nodes)
        proxy_warm = time.perf_counter() - clock
        clock = time.perf_counter()
        exact = book_var(rows, snapshot, grid, scenarios, method=method, levels=levels, executor=executor,
                         approximation=args.approximation)
        exact_seconds = exact.timings["revaluation"]
        total_exact = time.perf_counter() - clock

    print(f"book: {len(rows)} trades, {scenarios.count} scenarios (10 days, simulated), executor {args.executor}")
    print(f"{'':<24}{'VaR 95':>14}{'VaR 99':>14}{'CVaR 95':>14}{'CVaR 99':>14}")
    rows_out = [("exact", exact.var, exact.cvar), ("proxy", proxy.var, proxy.cvar)]
    if args.approximation:
        rows_out.append(("delta-gamma-vega", exact.approximate_var, exact.approximate_cvar))
    for name, var, cvar in rows_out:
        print(f"{name:<24}" + "".join(f"{v:>14,.0f}" for v in (*var, *cvar)))
    for name, var, cvar in rows_out[1:]:
        difference = np.concatenate([(var - exact.var) / exact.var, (cvar - exact.cvar) / exact.cvar])
        print(f"{name + ' vs exact':<24}" + "".join(f"{100 * d:>13.3f}%" for d in difference))
    error = np.abs(proxy.pnl - exact.pnl)
    print(f"proxy P&L error: largest {error.max():,.0f}, RMS {np.sqrt(np.mean(error ** 2)):,.0f} "
          f"(P&L std {np.std(exact.pnl):,.0f})")
    print(f"exact: {exact_seconds:.1f} s ({scenarios.count * len(rows) + len(rows):,} trade repricings"
          f"{f'; with the approximation {total_exact:.1f} s' if args.approximation else ''})")
    print(f"proxy: {proxy_warm:.1f} s warm, {proxy_cold:.1f} s cold ({proxy.repricings:,} trade prices solved for; "
          f"nodes {proxy.timings['nodes']:.1f} s, evaluation {proxy.timings['evaluation']:.1f} s)")
    print(f"speed-up exact / proxy: {exact_seconds / proxy_warm:.1f}x warm, {exact_seconds / proxy_cold:.1f}x cold")


if __name__ == "__main__":
    main()

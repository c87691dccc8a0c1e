"""Chebyshev proxy benchmark: Shoals vs pychebyshev 0.21.1 on the 5-D Black-Scholes problem.

S in [80, 120], K in [90, 110], T in [0.25, 1], sigma in [0.15, 0.35], r in [0.01, 0.08], q = 0.02; 11 nodes
per dimension (161,051 nodes).  Measured, warm, medians over repeats: build time, single-point latency,
batch throughput on 100,000 points for the price and for price + 5 Greeks (delta, gamma, vega, rho, theta),
timed in turn so that both see the same load.
pychebyshev's batch API loops over the points in Python, so it is timed on fewer points and its rate
per point is extrapolated (printed as such).  Shoals is timed in its exact mode (compression=0) and its
default mode (compression=0.5: Tucker truncation whose l1 bound is at most half the interpolation error
estimate); the last line reports the default mode's price throughput:

    points/s shoals=X pychebyshev=Y ratio=Z

Run:  python benchmarks/chebyshev_vs_pychebyshev.py  [--points 100000] [--repeats 5]
      python benchmarks/chebyshev_vs_pychebyshev.py --tt   (the tensor-train trade-off table only)
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial
from importlib.metadata import version

import jax.numpy as jnp
import numpy as np
from common import median_time as common_median_time
from common import paired_median_times
from pychebyshev import ChebyshevApproximation
from scipy.special import ndtr

import shoals  # noqa: F401  (enables float64)
from shoals.kernels.black_scholes import black_scholes_greeks, black_scholes_price
from shoals.methods.chebyshev import ChebyshevProxy, ChebyshevTT

DOMAIN = [(80.0, 120.0), (90.0, 110.0), (0.25, 1.0), (0.15, 0.35), (0.01, 0.08)]
NAMES = ("S", "K", "T", "sigma", "r")
NODES = 11
Q = 0.02
GREEKS = {"price": "value", "delta": "S", "gamma": ("S", "S"), "vega": "sigma", "rho": "r", "dV/dT": "T"}
ORDERS = [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1],
          [0, 0, 1, 0, 0]]


def pricer(points):
    """The batched pricer Shoals proxies (JAX closed form, one call for all nodes)."""
    points = jnp.asarray(points)
    return np.asarray(black_scholes_price(spots=points[:, 0], strikes=points[:, 1], expiries=points[:, 2],
                                          volatilities=points[:, 3], rates=points[:, 4], dividend_yields=Q))


def numpy_pricer(points):
    """The same price in NumPy/SciPy (no JAX compilation per new batch size: used for the TT table)."""
    s, k, t, v, r = points.T
    st = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - Q + 0.5 * v * v) * t) / st
    return s * np.exp(-Q * t) * ndtr(d1) - k * np.exp(-r * t) * ndtr(d1 - st)


def scalar_pricer(x, _):
    """The same price for pychebyshev's per-node callback f(point, data)."""
    s, k, t, v, r = x
    st = v * math.sqrt(t)
    d1 = (math.log(s / k) + (r - Q + 0.5 * v * v) * t) / st
    cdf = 0.5 * (1.0 + math.erf(d1 / math.sqrt(2.0)))
    cdf2 = 0.5 * (1.0 + math.erf((d1 - st) / math.sqrt(2.0)))
    return s * math.exp(-Q * t) * cdf - k * math.exp(-r * t) * cdf2


median_time = partial(common_median_time, warm_up=False)   # callers warm up explicitly


def smooth_10d(points):
    """A 10-D test function with coupled neighbours: exp(-|x|^2 / 10) cos(sum_i x_i x_{i+1} / 4)."""
    return np.exp(-np.sum(points ** 2, axis=1) / 10.0) * np.cos(np.sum(points[:, 1:] * points[:, :-1], axis=1)
                                                               / 4.0)


def tt_table():
    """Accuracy / cost of ChebyshevTT: 5-D Black-Scholes (vs the full 11^5 tensor) and a 10-D function."""
    box = np.asarray(DOMAIN)
    rng = np.random.default_rng(5)
    points = box[:, 0] + rng.random((10_000, 5)) * (box[:, 1] - box[:, 0])
    reference = pricer(points)
    full = ChebyshevProxy.build(pricer, DOMAIN, NODES, names=NAMES)
    print(f"5-D Black-Scholes, {NODES} nodes: full tensor {NODES ** 5:,} evaluations, max |error| "
          f"{np.abs(full.value(points) - reference).max():.1e}")
    print("rank  sweeps  evaluations  max|error| vs closed form  max|diff| vs full tensor  build s")
    for rank in (2, 4, 6, 8, 12, 16):
        start = time.perf_counter()
        tt = ChebyshevTT.build(numpy_pricer, DOMAIN, NODES, names=NAMES, rank=rank, sweeps=2)
        elapsed = time.perf_counter() - start
        values = tt.value(points)
        print(f"{rank:4d}  {2:6d}  {tt.evaluations:11,d}  {np.abs(values - reference).max():25.1e}  "
              f"{np.abs(values - full.value(points)).max():24.1e}  {elapsed:7.2f}")
    domain10 = [(-1.0, 1.0)] * 10
    points10 = rng.uniform(-1.0, 1.0, (10_000, 10))
    print("10-D exp(-|x|^2/10) cos(sum x_i x_{i+1} / 4), 9 nodes (full tensor 9^10 = 3.5e9 evaluations)")
    print("rank  sweeps  evaluations  max|error|  build s")
    for rank in (2, 4, 6, 8):
        start = time.perf_counter()
        tt = ChebyshevTT.build(smooth_10d, domain10, 9, rank=rank, sweeps=2)
        elapsed = time.perf_counter() - start
        error = np.abs(tt.value(points10) - smooth_10d(points10)).max()
        print(f"{rank:4d}  {2:6d}  {tt.evaluations:11,d}  {error:10.1e}  {elapsed:7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tt", action="store_true", help="print the tensor-train table only")
    args = parser.parse_args()
    if args.tt:
        tt_table()
        return
    box = np.asarray(DOMAIN)
    rng = np.random.default_rng(2024)
    points = box[:, 0] + rng.random((args.points, 5)) * (box[:, 1] - box[:, 0])
    exact = black_scholes_greeks(spots=points[:, 0], strikes=points[:, 1], expiries=points[:, 2],
                                 volatilities=points[:, 3], rates=points[:, 4], dividend_yields=Q)
    print(f"5-D Black-Scholes, {NODES}^5 = {NODES ** 5:,} nodes, {args.points:,} points, shoals vs "
          f"pychebyshev {version('pychebyshev')}; medians of {args.repeats} (shoals) / 3 (pychebyshev), warm")

    # ---------------------------------------------------------------------------------------- Shoals
    pricer(ChebyshevProxy.grid(DOMAIN, NODES))                         # compile the pricer once
    results = {}
    for label, compression in (("exact", 0.0), ("default", 0.5)):
        build = median_time(lambda c=compression: ChebyshevProxy.build(pricer, DOMAIN, NODES, names=NAMES,
                                                                       compression=c), args.repeats)

        def build_and_prepare(c=compression):
            proxy = ChebyshevProxy.build(pricer, DOMAIN, NODES, names=NAMES, compression=c)
            proxy.prepare()
            return proxy

        prepared = median_time(build_and_prepare, args.repeats)
        proxy = build_and_prepare()
        proxy.value(points)
        proxy.greeks(points, GREEKS)
        proxy.value(points[0])
        single = median_time(lambda p=proxy: p.value(points[7]), 200)
        price_time, greeks_time = paired_median_times([lambda p=proxy: p.value(points),
                                                       lambda p=proxy: p.greeks(points, GREEKS)], args.repeats)
        got = proxy.greeks(points, GREEKS)
        price_error = np.abs(got["price"] - np.asarray(exact.price)).max()
        delta_error = np.abs(got["delta"] - np.asarray(exact.delta)).max()
        results[label] = args.points / price_time
        print(f"shoals {label:10s}: build {build * 1e3:6.1f} ms (with compression and plan {prepared * 1e3:6.1f} ms), "
              f"single point {single * 1e6:7.1f} us, price {args.points / price_time:11,.0f} points/s, "
              f"price+5 Greeks {args.points / greeks_time:11,.0f} points/s "
              f"(x{greeks_time / price_time:.2f} the price), max |error| price {price_error:.1e} "
              f"delta {delta_error:.1e}, error estimate {proxy.error_estimate():.1e}")

    # ----------------------------------------------------------------------------------- pychebyshev
    start = time.perf_counter()
    theirs = ChebyshevApproximation(scalar_pricer, 5, [list(b) for b in DOMAIN], [NODES] * 5,
                                    max_derivative_order=2)
    theirs.build(verbose=False)
    their_build = time.perf_counter() - start
    info = ChebyshevApproximation.nodes(5, [list(b) for b in DOMAIN], [NODES] * 5)
    values = pricer(info["full_grid"]).reshape(info["shape"])
    their_from_values = median_time(lambda: ChebyshevApproximation.from_values(
        values, 5, [list(b) for b in DOMAIN], [NODES] * 5), 3)
    their_single = median_time(lambda: theirs.vectorized_eval(list(points[7]), [0] * 5), 200)
    sample = points[:2000]
    their_price = median_time(lambda: theirs.vectorized_eval_batch(sample, [0] * 5), 3) / len(sample)
    greek_sample = points[:500]
    their_greeks = median_time(lambda: [theirs.vectorized_eval_multi(list(p), ORDERS) for p in greek_sample],
                               3) / len(greek_sample)
    their_error = np.abs(theirs.vectorized_eval_batch(sample, [0] * 5) - np.asarray(exact.price)[:2000]).max()
    our_error = np.abs(proxy.value(sample) - np.asarray(exact.price)[:2000]).max()
    print(f"pychebyshev      : build {their_build * 1e3:8.1f} ms (161,051 Python callbacks; from_values on "
          f"the same batched values {their_from_values * 1e3:.1f} ms), single point {their_single * 1e6:7.1f} us, "
          f"price {1 / their_price:11,.0f} points/s, price+5 Greeks {1 / their_greeks:11,.0f} points/s "
          f"(x{their_greeks / their_price:.2f}; both extrapolated per point from 2,000 / 500 points: the batch "
          f"API loops in Python), max |error| price on those 2,000 points {their_error:.1e} (shoals "
          f"{our_error:.1e})")
    ours, theirs_rate = results["default"], 1 / their_price
    print(f"points/s shoals={ours:.0f} pychebyshev={theirs_rate:.0f} ratio={ours / theirs_rate:.1f}")


if __name__ == "__main__":
    main()

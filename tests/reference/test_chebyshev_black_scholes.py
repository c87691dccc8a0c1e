"""5-D Black-Scholes Chebyshev proxy (S, K, T, sigma, r; q = 2%) against the closed form and its Greeks.

The reference is an independent SciPy implementation of the Black-Scholes-Merton call with the e^{-qT}
factors (Hull ch. 15/19); theta is the calendar-time derivative -dV/dT.  Errors on 10,000 uniform points.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from scipy.special import ndtr

import shoals  # noqa: F401  (enables float64)
from shoals.kernels.black_scholes import black_scholes_price
from shoals.methods.chebyshev import ChebyshevProxy

DOMAIN = [(80.0, 120.0), (90.0, 110.0), (0.25, 1.0), (0.15, 0.35), (0.01, 0.08)]
NAMES = ("S", "K", "T", "sigma", "r")
Q = 0.02
GREEKS = {"price": "value", "delta": "S", "gamma": ("S", "S"), "vega": "sigma", "rho": "r", "dV/dT": "T"}


def closed_form(points):
    """Price and Greeks of a call by the BSM formulas (independent of the library's kernel)."""
    s, k, t, v, r = points.T
    sqrt_t = np.sqrt(t)
    d1 = (np.log(s / k) + (r - Q + 0.5 * v * v) * t) / (v * sqrt_t)
    d2 = d1 - v * sqrt_t
    dq, dr = np.exp(-Q * t), np.exp(-r * t)
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi)
    price = s * dq * ndtr(d1) - k * dr * ndtr(d2)
    theta = -s * dq * pdf * v / (2.0 * sqrt_t) - r * k * dr * ndtr(d2) + Q * s * dq * ndtr(d1)
    return {"price": price, "delta": dq * ndtr(d1), "gamma": dq * pdf / (s * v * sqrt_t),
            "vega": s * dq * pdf * sqrt_t, "rho": k * t * dr * ndtr(d2), "theta": theta}


def pricer(points):
    """The pricer being proxied: the library's JAX closed form, one batched call for the whole grid."""
    return np.asarray(black_scholes_price(spots=points[:, 0], strikes=points[:, 1], expiries=points[:, 2],
                                          volatilities=points[:, 3], rates=points[:, 4], dividend_yields=Q))


@pytest.fixture(scope="module")
def points():
    box = np.asarray(DOMAIN)
    return box[:, 0] + np.random.default_rng(9).random((10_000, 5)) * (box[:, 1] - box[:, 0])


def errors(proxy, points):
    got = proxy.greeks(points, GREEKS)
    exact = closed_form(points)
    meaningful = exact["price"] > 0.01
    out = {"price abs": np.abs(got["price"] - exact["price"]).max(),
           "price rel (>0.01)": (np.abs(got["price"] - exact["price"]) / exact["price"])[meaningful].max()}
    for name in ("delta", "gamma", "vega", "rho"):
        out[name] = np.abs(got[name] - exact[name]).max()
    out["theta"] = np.abs(-got["dV/dT"] - exact["theta"]).max()
    return out


def test_reference_formulas_agree_with_the_library_kernel(points):
    np.testing.assert_allclose(pricer(points[:500]), closed_form(points[:500])["price"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("compression", [0.0, 0.5])
def test_eleven_nodes_price_and_greeks(points, compression):
    proxy = ChebyshevProxy.build(pricer, DOMAIN, 11, names=NAMES, compression=compression)
    measured = errors(proxy, points)
    print(f"\n5-D BS, 11^5 nodes, compression {compression}: max errors on 10,000 points "
          f"(estimate {proxy.error_estimate():.2e})")
    for name, value in measured.items():
        print(f"  {name:18s} {value:.3e}")
    bounds = {"price abs": 1e-3, "price rel (>0.01)": 2e-2, "delta": 5e-4, "gamma": 1e-3, "vega": 5e-2,
              "rho": 1e-2, "theta": 2e-2}
    for name, bound in bounds.items():
        assert measured[name] < bound, (name, measured[name])
    assert 0.1 * measured["price abs"] < proxy.error_estimate() < 10.0 * measured["price abs"]


def convergence_rows(node_counts, points):
    rows = []
    for nodes in node_counts:
        proxy = ChebyshevProxy.build(pricer, DOMAIN, nodes, names=NAMES)
        rows.append((nodes, proxy.error_estimate(), errors(proxy, points)))
    print("\nnodes  estimate   price abs  price rel  delta      gamma      vega       rho        theta")
    for nodes, estimate, e in rows:
        print(f"{nodes:5d}  {estimate:.2e}   " + "  ".join(f"{v:.2e}" for v in e.values()))
    return rows


def test_convergence_with_the_node_count(points):
    rows = convergence_rows((7, 9, 11), points[:2000])
    price = [e["price abs"] for _, _, e in rows]
    assert price[0] > price[1] > price[2]


@pytest.mark.slow
def test_convergence_table_7_to_21_nodes(points):
    rows = convergence_rows((7, 9, 11, 13, 15, 17, 19, 21), points[:2000])
    price = [e["price abs"] for _, _, e in rows]
    assert all(a > b for a, b in pairwise(price))
    assert price[-1] < 1e-6

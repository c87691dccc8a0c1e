"""A discretely monitored barrier option's PDE price proxied over (spot, vol), the spot split at the barrier.

Down-and-out call, K = 100, H = 90, T = 1, 12 monthly monitoring dates, r = 3%, q = 1%; spot 80-130
(either side of the barrier: discrete monitoring), vol 15%-35%.  The proxy
(:class:`shoals.methods.Chebyshev` over FiniteDifference) is compared with direct FiniteDifference prices
at random points more than 2% away from the barrier.  The FD price itself moves by ~5e-5 (relative) as
the grid follows the spot and vol, which is the floor of the achievable agreement (docs/chebyshev.md).
"""

from __future__ import annotations

import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.instruments import Barrier
from shoals.market import FlatMarket
from shoals.methods import Chebyshev, FiniteDifference

BARRIER = 90.0
CONTRACT = {"strike": 100.0, "maturity": 1.0, "barrier": BARRIER, "is_call": True, "is_up": False,
            "monitoring_dates": 12}
DOMAIN = {"spot": (80.0, 130.0), "vol": (0.15, 0.35)}
FD = FiniteDifference(vega=False)


def market(spots, vols):
    return FlatMarket(spot=spots, rate=0.03, vol=vols, dividend=0.01)


def scenarios(count, seed):
    """Random (spot, vol) in the box, spot more than 2% away from the barrier, with direct FD prices."""
    rng = np.random.default_rng(seed)
    spots, vols = rng.uniform(*DOMAIN["spot"], 4 * count), rng.uniform(*DOMAIN["vol"], 4 * count)
    keep = np.abs(spots / BARRIER - 1.0) > 0.02
    spots, vols = spots[keep][:count], vols[keep][:count]
    batch = Barrier(**{name: np.full(count, value) for name, value in CONTRACT.items()})
    return spots, vols, np.asarray(FD.price(batch, market(spots, vols)).value)


def relative_errors(nodes, spots, vols, reference, splits):
    method = Chebyshev(base=FD, domain=DOMAIN, nodes=nodes, splits=splits)
    got = method.price(Barrier(**CONTRACT), market(spots, vols))
    return np.abs(got.value - reference) / np.abs(reference)


def test_barrier_proxy_split_at_the_barrier_reaches_1e_4():
    spots, vols, reference = scenarios(30, seed=3)
    errors = relative_errors({"spot": 15, "vol": 9}, spots, vols, reference, {"spot": [BARRIER]})
    print(f"\n15x9 nodes per cell, 30 points: max relative error {errors.max():.2e}")
    assert errors.max() < 1e-4


@pytest.mark.slow
def test_barrier_proxy_accuracy_table():
    spots, vols, reference = scenarios(150, seed=4)
    rows = {}
    for nodes in ((13, 7), (17, 9), (21, 11)):
        rows[nodes] = relative_errors({"spot": nodes[0], "vol": nodes[1]}, spots, vols, reference,
                                      {"spot": [BARRIER]})
    unsplit = relative_errors({"spot": 33, "vol": 9}, spots, vols, reference, {})
    for nodes, errors in rows.items():
        print(f"\nsplit, {nodes[0]}x{nodes[1]} per cell: max {errors.max():.2e} median {np.median(errors):.1e}")
    print(f"no split, 33x9: max {unsplit.max():.2e} median {np.median(unsplit):.1e}")
    assert rows[(17, 9)].max() < 1e-4 and rows[(21, 11)].max() < 1e-4

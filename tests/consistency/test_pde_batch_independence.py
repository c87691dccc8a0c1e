"""A trade's finite-difference price and Greeks do not depend on the trades batched with it.

Trades of one batch share a step count: a trade with fewer steps (fewer periods, or fewer of the local vol's
expiry pillars inside its life, where :func:`~shoals.kernels.pde.split_steps` cuts its steps) is padded with
zero-length steps, placed before its maturity (:func:`~shoals.kernels.pde.end_at_zero`) so that the vega
ladder's bump windows stay short.  A zero-length step must be the identity, including the lookback's lagged
Robin end condition, which is not idempotent: before 2026-11-23 the padding applied it again at t = 0, and
a lookback's gamma moved by up to 28 % (theta by up to 100 %) with its batch-mates in the example run's
chunks.  Under the Dupire local vol of a skewed SVI surface (pillars at 0.1 ... 2.5 y), each family priced
as one batch of mixed maturities equals each trade priced alone, to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import skewed_snapshot

import shoals  # noqa: F401  (float64)
from shoals.instruments import Asian, Cliquet, Lookback
from shoals.methods.finite_difference import FiniteDifference

METHOD = FiniteDifference(vega=False, space_nodes=121, time_steps=60)
MATURITIES = np.array([0.3, 0.8, 1.7, 2.4])
FAMILIES = {
    "lookback": Lookback(maturity=MATURITIES, strike=np.array([np.nan, 100.0, np.nan, 95.0]),
                         is_call=np.array([True, True, False, False]), floating=np.array([True, False, True, False])),
    "cliquet": Cliquet(maturity=MATURITIES, resets=np.array([3, 10, 20, 8]), local_cap=0.05),
    "asian": Asian(maturity=MATURITIES, fixings=np.array([3, 12, 20, 30]), strike=100.0,
                   is_call=np.array([True, False, True, False])),
}


@pytest.fixture(scope="module")
def snapshot():
    return skewed_snapshot(100.0, 0.03, 0.01)


def _columns(result):
    return np.stack([np.asarray(result.value).ravel()]
                    + [np.asarray(result.greeks[name]).ravel() for name in ("delta", "gamma", "theta")])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_batch_prices_each_trade_as_it_prices_it_alone(snapshot, family):
    contract = FAMILIES[family]
    together = _columns(METHOD.price(contract, snapshot))
    alone = np.concatenate([_columns(METHOD.price(
        type(contract)(**{name: np.asarray(value)[[i]] if np.ndim(value) else value
                          for name, value in vars(contract).items()}), snapshot))
        for i in range(MATURITIES.size)], axis=1)
    np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12)

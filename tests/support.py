"""Shared test fixtures that are plain functions: markets and QuantLib processes used by several test files
(``pythonpath = ["tests"]`` in pyproject.toml makes this importable as ``support``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import shoals  # noqa: F401  (float64)
from shoals.market.curves import ZeroCurve
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface

SKEWED_EXPIRIES = np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5])


def skewed_snapshot(spot=100.0, rate=0.03, dividend=0.01) -> MarketSnapshot:
    """8 raw SVI slices (T = 0.1 ... 2.5) with a = 0.02 T, b = 0.1 sqrt(T), rho = -0.5, m = 0,
    sigma = 0.2 sqrt(T): ATM vol 20 % at every expiry, skew -0.125 / sqrt(T) per unit k, calendar- and
    butterfly-free; flat rate and dividend yield."""
    t = SKEWED_EXPIRIES
    surface = VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0,
                                  sigma=0.2 * np.sqrt(t))
    return MarketSnapshot(spot=jnp.asarray(spot), rate=ZeroCurve.flat(rate), dividend=ZeroCurve.flat(dividend),
                          surface=surface)


def quantlib_flat_process(today, *, spot, rate, dividend, vol):
    """QuantLib Black-Scholes-Merton process with flat continuously compounded rate, dividend yield and vol
    (Actual365Fixed), with the evaluation date set to ``today``."""
    import QuantLib as ql

    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    return ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, dividend, day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, rate, day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, day_count)))

"""Shared test fixtures that are plain functions: markets and QuantLib processes used by several test files
(``pythonpath = ["tests"]`` in pyproject.toml makes this importable as ``support``)."""

from __future__ import annotations

import numpy as np

import shoals  # noqa: F401  (float64)
from shoals.data.synthetic import SKEWED_EXPIRIES as _EXPIRIES
from shoals.data.synthetic import skewed_svi_market as skewed_snapshot  # noqa: F401  (re-exported for the tests)

SKEWED_EXPIRIES = np.asarray(_EXPIRIES)


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

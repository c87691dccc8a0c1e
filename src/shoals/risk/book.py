"""Pricing a book of trades with per-trade failure isolation; the table behind ``shoals price``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shoals.errors import ShoalsError
from shoals.instruments import European
from shoals.io.book import BookRow
from shoals.market import FlatMarket
from shoals.methods import MonteCarlo, stream_of
from shoals.results import GREEK_NAMES

OUTPUT_COLUMNS = ("id", "price", "npv", "delta", "gamma", "vega", "theta", "rho", "std_error", "method",
                  "status")
_REQUIRED_MARKET = ("spot", "rate", "vol")


def _row_problem(row: BookRow, method) -> str | None:
    if row.error is not None:
        return row.error
    if row.instrument != "european":
        return (f"row {row.row}: instrument '{row.instrument}' is not priced by {method.name} in this "
                f"version (European only); the trade is skipped")
    missing = [key for key in _REQUIRED_MARKET if key not in row.fields]
    if missing:
        return (f"row {row.row}: no market for the trade: field(s) {', '.join(missing)} missing "
                f"(give spot, rate, vol and optionally dividend per row)")
    return None


def _batch(rows: list[BookRow]):
    column = lambda key, default=None: np.array([r.fields.get(key, default) for r in rows], dtype=np.float64)  # noqa: E731
    instrument = European(strike=column("strike"), maturity=column("maturity"),
                          is_call=np.array([r.fields["option_type"] == "call" for r in rows]))
    market = FlatMarket(spot=column("spot"), rate=column("rate"), vol=column("vol"),
                        dividend=column("dividend", 0.0))
    return instrument, market


def _price_rows(rows: list[BookRow], method) -> pd.DataFrame:
    instrument, market = _batch(rows)
    options = {"streams": [stream_of(r.id) for r in rows]} if isinstance(method, MonteCarlo) else {}
    result = method.price(instrument, market, **options)
    frame = pd.DataFrame({"price": np.atleast_1d(result.value)})
    for name in GREEK_NAMES:
        frame[name] = np.atleast_1d(result.greeks.get(name, np.full(len(rows), np.nan)))
    frame["std_error"] = (np.atleast_1d(result.std_error) if result.std_error is not None
                          else np.full(len(rows), np.nan))
    return frame


def price_book(rows: list[BookRow], method, *, progress=None) -> pd.DataFrame:
    """Price every valid European row of a book (one batched kernel call); returns the output table.

    Columns as in BOOK_SCHEMA.md: ``id, price, npv, delta, gamma, vega, theta, rho, std_error, method,
    status`` with ``npv = price * quantity * notional`` and Greeks per unit of underlying.  A row that
    cannot be priced keeps its id, gets the reason in ``status`` and empty numbers; if the batched call
    fails, rows are priced one by one so that only the failing ones are marked.
    ``progress`` (optional) is called with the number of rows finished.
    """
    out = pd.DataFrame({"id": [r.id for r in rows], "method": method.name, "status": "ok"})
    for name in OUTPUT_COLUMNS[1:-2]:
        out[name] = np.nan
    problems = [_row_problem(r, method) for r in rows]
    for index, problem in enumerate(problems):
        if problem is not None:
            out.loc[index, "status"] = f"error: {problem}"
    priceable = [i for i, problem in enumerate(problems) if problem is None]
    groups = [priceable]
    while groups:
        group = groups.pop()
        if not group:
            continue
        try:
            frame = _price_rows([rows[i] for i in group], method)
        except ShoalsError as error:
            if len(group) == 1:
                out.loc[group[0], "status"] = f"error: row {rows[group[0]].row}: {error}"
                continue
            groups.extend([group[:len(group) // 2], group[len(group) // 2:]])
            continue
        for column in frame.columns:
            out.loc[group, column] = frame[column].to_numpy()
        if progress is not None:
            progress(len(group))
    scale = np.array([r.quantity * r.notional for r in rows], dtype=np.float64)
    out["npv"] = out["price"].to_numpy(dtype=np.float64) * scale
    bad_value = (out["status"] == "ok") & ~np.isfinite(out["price"].to_numpy(dtype=np.float64))
    out.loc[bad_value, "status"] = "error: the method returned a non-finite price"
    return out[list(OUTPUT_COLUMNS)]

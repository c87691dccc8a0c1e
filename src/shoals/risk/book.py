"""Pricing a book of trades with per-trade failure isolation; the table behind ``shoals price``.

Trades are grouped by instrument type and priced in one batched call per group.  The market is either
per row (flat Black-Scholes: ``spot``, ``rate``, ``vol``, optional ``dividend``) or one
:class:`~shoals.market.snapshot.MarketSnapshot` for the whole book (Dupire local vol, the grid built once
and shared by every method).  The method is one pricing method or :class:`Auto`, which takes for each
group the first method of its list that supports it and falls back to the next one when a method
declines a trade (e.g. a cliquet with global floor/cap, priced by Monte Carlo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shoals.errors import InputError, ShoalsError, UnsupportedError
from shoals.instruments import stack
from shoals.io.book import BookRow
from shoals.market import FlatMarket
from shoals.market.local_vol import default_local_vol
from shoals.market.snapshot import MarketSnapshot
from shoals.methods import ClosedForm, FiniteDifference, MonteCarlo, stream_of
from shoals.results import GREEK_NAMES

OUTPUT_COLUMNS = ("id", "price", "npv", "delta", "gamma", "vega", "theta", "rho", "std_error", "method",
                  "status")
_ROW_MARKET = ("spot", "rate", "vol", "dividend")
_REQUIRED_MARKET = ("spot", "rate", "vol")


@dataclass(frozen=True)
class Auto:
    """Per instrument group, the first of ``methods`` that supports it (closed form for Europeans on a flat
    market, finite differences for the rest, Monte Carlo where the PDE declines a trade)."""

    methods: tuple = field(default_factory=lambda: (ClosedForm(), FiniteDifference(), MonteCarlo()))

    name = "auto"


def _row_problem(row: BookRow, snapshot) -> str | None:
    if row.error is not None:
        return row.error
    given = [key for key in _ROW_MARKET if key in row.fields]
    if snapshot is not None:
        if given:
            return (f"row {row.row}: per-row market field(s) {', '.join(given)} given with a market file; "
                    f"leave them empty (the book is priced on the market file)")
        return None
    missing = [key for key in _REQUIRED_MARKET if key not in row.fields]
    if missing:
        return (f"row {row.row}: no market for the trade: field(s) {', '.join(missing)} missing "
                f"(give spot, rate, vol and optionally dividend per row, or a market file)")
    return None


def _market_of(rows: list[BookRow], snapshot):
    if snapshot is not None:
        return snapshot
    column = lambda key, default=None: np.array([r.fields.get(key, default) for r in rows], dtype=np.float64)
    return FlatMarket(spot=column("spot"), rate=column("rate"), vol=column("vol"), dividend=column("dividend", 0.0))


def _price_rows(rows: list[BookRow], method, snapshot, local_vol) -> pd.DataFrame:
    instrument = stack([r.contract for r in rows])
    market = _market_of(rows, snapshot)
    options = {}
    if isinstance(method, MonteCarlo):
        options["streams"] = [stream_of(r.id) for r in rows]
    if snapshot is not None and not isinstance(method, ClosedForm):
        options["local_vol"] = local_vol
    result = method.price(instrument, market, **options)
    frame = pd.DataFrame({"price": np.atleast_1d(result.value)})
    for name in GREEK_NAMES:
        frame[name] = np.atleast_1d(result.greeks.get(name, np.full(len(rows), np.nan)))
    frame["std_error"] = (np.atleast_1d(result.std_error) if result.std_error is not None
                          else np.full(len(rows), np.nan))
    frame["method"] = method.name
    return frame


def _candidates(method, instrument, market):
    if not isinstance(method, Auto):
        return [method]
    return [m for m in method.methods if m.supports(instrument, market)]


def price_book(rows: list[BookRow], method, *, market: MarketSnapshot | None = None, local_vol=None,
               progress=None) -> pd.DataFrame:
    """Price every valid row of a book; returns the output table of BOOK_SCHEMA.md.

    Columns ``id, price, npv, delta, gamma, vega, theta, rho, std_error, method, status`` with
    ``npv = price * quantity * notional`` and Greeks per unit of underlying.  ``market``: one snapshot for
    the whole book (its local vol grid built once, or ``local_vol``), else each row's flat market.  Rows
    are priced in one batched call per instrument type; a row that cannot be priced keeps its id, gets
    the reason in ``status`` and empty numbers; if a batched call fails, the group is split in halves
    until only the failing rows are marked, so one bad trade never sinks the book.  With :class:`Auto`,
    a group the first method declines (:class:`UnsupportedError`) goes to the next method.
    ``progress`` (optional) is called with the number of rows finished.
    """
    out = pd.DataFrame({"id": [r.id for r in rows], "method": getattr(method, "name", ""), "status": "ok"})
    for name in OUTPUT_COLUMNS[1:-2]:
        out[name] = np.nan
    problems = [_row_problem(r, market) for r in rows]
    for index, problem in enumerate(problems):
        if problem is not None:
            out.loc[index, "status"] = f"error: {problem}"
    priceable = [i for i, problem in enumerate(problems) if problem is None]
    if market is not None and priceable and local_vol is None and not isinstance(method, ClosedForm):
        local_vol = default_local_vol(market, [rows[i].fields["maturity"] for i in priceable])
    by_type: dict[str, list[int]] = {}
    for i in priceable:
        by_type.setdefault(rows[i].instrument, []).append(i)
    for members in by_type.values():
        sample = rows[members[0]].contract
        candidates = _candidates(method, sample, _market_of([rows[members[0]]], market))
        if not candidates:
            for i in members:
                out.loc[i, "status"] = (f"error: row {rows[i].row}: no method prices a {rows[i].instrument} "
                                        f"on this market with {method.name}")
            continue
        _price_group(rows, members, candidates, market, local_vol, out, progress)
    return _with_npv(out, rows)


def _with_npv(out: pd.DataFrame, rows: list[BookRow]) -> pd.DataFrame:
    """``out`` with ``npv = price * quantity * notional`` and a non-finite price reported in ``status``, its
    columns in the order of BOOK_SCHEMA.md."""
    scale = np.array([r.quantity * r.notional for r in rows], dtype=np.float64)
    out["npv"] = out["price"].to_numpy(dtype=np.float64) * scale
    bad_value = (out["status"] == "ok") & ~np.isfinite(out["price"].to_numpy(dtype=np.float64))
    out.loc[bad_value, "status"] = "error: the method returned a non-finite price"
    return out[list(OUTPUT_COLUMNS)]


def first_method(rows: list[BookRow], method, market):
    """The method :func:`price_book` tries first for ``rows`` (one instrument type) on ``market`` (a snapshot),
    or None when a row has a problem it reports (invalid row, market fields) or no method supports the type."""
    if any(_row_problem(row, market) is not None for row in rows):
        return None
    candidates = _candidates(method, rows[0].contract, _market_of(rows[:1], market))
    return candidates[0] if candidates else None


def solved_book(rows: list[BookRow], method, greeks: dict) -> pd.DataFrame:
    """The output table of :func:`price_book` for ``rows`` (each without problems, :func:`first_method`)
    already solved together by ``method``: ``greeks`` holds the value and Greeks per row (e.g. from the forward
    pass of a vega ladder's reverse-mode solve); Greeks it lacks are empty, as in :func:`price_book`."""
    out = pd.DataFrame({"id": [r.id for r in rows], "price": np.asarray(greeks["value"], dtype=np.float64)})
    for name in GREEK_NAMES:
        out[name] = np.asarray(greeks[name], dtype=np.float64) if name in greeks else np.nan
    out["std_error"], out["method"], out["status"] = np.nan, method.name, "ok"
    return _with_npv(out, rows)


def _price_group(rows, members, candidates, market, local_vol, out, progress):
    """Price ``members`` (row indices of one instrument type) with the first candidate method, splitting on
    errors and handing trades a method declines to the next candidate."""
    groups = [(members, 0)]
    while groups:
        group, level = groups.pop()
        if not group:
            continue
        method = candidates[level]
        try:
            frame = _price_rows([rows[i] for i in group], method, market, local_vol)
        except UnsupportedError as error:
            if len(group) > 1:
                groups.extend([(group[:len(group) // 2], level), (group[len(group) // 2:], level)])
            elif level + 1 < len(candidates):
                groups.append((group, level + 1))
            else:
                out.loc[group[0], "status"] = f"error: {_row_message(rows[group[0]], error)}"
            continue
        except ShoalsError as error:
            if len(group) == 1:
                out.loc[group[0], "status"] = f"error: {_row_message(rows[group[0]], error)}"
                continue
            groups.extend([(group[:len(group) // 2], level), (group[len(group) // 2:], level)])
            continue
        for column in frame.columns:
            out.loc[group, column] = frame[column].to_numpy()
        if progress is not None:
            progress(len(group))


def _row_message(row: BookRow, error: ShoalsError) -> str:
    """The error of a trade priced alone, located at its book row (a method's batch index is dropped)."""
    if isinstance(error, InputError):
        field = error.field.split(".")[-1] if error.field else None
        return str(InputError(error.reason, field=field, row=row.row))
    return f"row {row.row}: {error}"

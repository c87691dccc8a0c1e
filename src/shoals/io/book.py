"""Reading trade books (CSV, Parquet, JSON) per ../shared/BOOK_SCHEMA.md, with row-level validation.

A file-level problem (unreadable file, unknown column, duplicate or missing ids) raises
:class:`~shoals.errors.InputError`.  A row-level problem (bad value, missing required key, a key that
does not apply to the row's instrument) does not: the row is kept with its error, so one bad trade
never sinks the book.  Rows are numbered from 1 (the first trade), as in the error messages.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shoals.errors import InputError
from shoals.instruments import American, Asian, Barrier, Cliquet, European, Lookback

INSTRUMENTS = ("european", "american", "barrier", "lookback", "asian", "cliquet")
COMMON_KEYS = ("id", "instrument", "option_type", "strike", "maturity", "quantity", "notional")
MARKET_KEYS = ("spot", "rate", "dividend", "vol")
INSTRUMENT_KEYS = {
    "european": (),
    "american": (),
    "barrier": ("barrier", "barrier_type", "rebate", "monitoring", "monitoring_dates", "rebate_timing"),
    "lookback": ("strike_type", "running_extreme"),
    "asian": ("average", "fixings", "strike_type"),
    "cliquet": ("resets", "moneyness", "local_floor", "local_cap", "global_floor", "global_cap", "payment"),
}
DATE_KEYS = ("maturity_date",)
ALL_KEYS = frozenset(COMMON_KEYS + MARKET_KEYS + DATE_KEYS
                     + tuple(k for keys in INSTRUMENT_KEYS.values() for k in keys))
_CHOICES = {
    "option_type": ("call", "put"),
    "barrier_type": ("down-and-out", "down-and-in", "up-and-out", "up-and-in"),
    "monitoring": ("continuous", "discrete"),
    "rebate_timing": ("hit", "maturity"),
    "strike_type": ("fixed", "floating"),
    "average": ("arithmetic", "geometric"),
    "payment": ("maturity", "period"),
}
_INTEGER_KEYS = ("monitoring_dates", "fixings", "resets")
_POSITIVE_KEYS = ("strike", "maturity", "spot", "barrier", "running_extreme", "moneyness")
_NON_NEGATIVE_KEYS = ("vol", "rebate")


@dataclass(frozen=True)
class BookRow:
    """One validated row of a book: its 1-based ``row`` number, ``id``, parsed ``fields`` and ``error``
    (``None`` when the row is valid).  ``fields`` holds every non-empty key with its typed value;
    ``contract`` the instrument of a valid row (built once, by :func:`contract_of`, when the row is read)."""

    row: int
    id: str
    fields: dict
    error: str | None = None
    contract: object = None

    @property
    def instrument(self) -> str | None:
        return self.fields.get("instrument")

    @property
    def quantity(self) -> float:
        return self.fields.get("quantity", 1.0)

    @property
    def notional(self) -> float:
        return self.fields.get("notional", 1.0)


def _load_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".json":
            records = json.loads(path.read_text())
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("the JSON file must hold a list of objects, one per trade")
            return pd.DataFrame.from_records(records)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", source=str(path)) from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"cannot read the file ({error}); expected a CSV, Parquet or JSON list of objects",
                         source=str(path)) from None
    raise InputError(f"unknown file type '{suffix}': use .csv, .parquet or .json", source=str(path))


def _is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _parse_value(key: str, value):
    """Typed value of one cell, or raise ValueError with the reason."""
    if key in ("id",):
        return str(value).strip()
    if key == "maturity_date":
        return pd.Timestamp(value).date()
    if key in _CHOICES or key == "instrument":
        text = str(value).strip().lower()
        choices = INSTRUMENTS if key == "instrument" else _CHOICES[key]
        if text not in choices:
            raise ValueError(f"'{value}' is not one of {', '.join(choices)}")
        return text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if key in _INTEGER_KEYS:
        if number != int(number) or number < 1:
            raise ValueError(f"{value!r} is not a positive integer")
        return int(number)
    if key in _POSITIVE_KEYS and number <= 0:
        raise ValueError(f"{value!r} must be > 0")
    if key in _NON_NEGATIVE_KEYS and number < 0:
        raise ValueError(f"{value!r} must be >= 0")
    return number


def _validate_row(number: int, record: dict, valuation_date: _dt.date | None) -> BookRow:
    trade_id = str(record.get("id", "")).strip()
    fields = {}
    try:
        for key, raw in record.items():
            if _is_empty(raw):
                continue
            try:
                fields[key] = _parse_value(key, raw)
            except ValueError as error:
                raise InputError(str(error), field=key, row=number, value=raw) from None
        instrument = fields.get("instrument")
        if instrument is None:
            raise InputError("required key is missing", field="instrument", row=number)
        if "option_type" not in fields and instrument != "cliquet":
            raise InputError("required key is missing (call or put)", field="option_type", row=number)
        if "maturity_date" in fields:
            if "maturity" in fields:
                raise InputError("give maturity or maturity_date, not both", field="maturity_date", row=number)
            if valuation_date is None:
                raise InputError("a maturity_date needs a valuation date (--valuation-date)",
                                 field="maturity_date", row=number)
            days = (fields.pop("maturity_date") - valuation_date).days
            if days <= 0:
                raise InputError(f"the trade has expired ({-days} days before the valuation date)",
                                 field="maturity_date", row=number)
            fields["maturity"] = days / 365.0
        if "maturity" not in fields:
            raise InputError("required key is missing", field="maturity", row=number)
        # A floating lookback or Asian has no strike (BOOK_SCHEMA.md: a key that does not apply stays empty).
        floating = instrument in ("lookback", "asian") and fields.get("strike_type") == "floating"
        if "strike" not in fields and instrument != "cliquet" and not floating:
            raise InputError("required key is missing", field="strike", row=number)
        allowed = set(COMMON_KEYS + MARKET_KEYS) | set(INSTRUMENT_KEYS[instrument])
        for key in fields:
            if key not in allowed:
                raise InputError(f"does not apply to a {instrument} trade; leave it empty", field=key,
                                 row=number)
    except InputError as error:
        return BookRow(row=number, id=trade_id, fields=fields, error=str(error))
    try:
        contract = contract_of(BookRow(row=number, id=trade_id, fields=fields))
    except InputError as error:
        return BookRow(row=number, id=trade_id, fields=fields, error=str(error))
    return BookRow(row=number, id=trade_id, fields=fields, contract=contract)


def read_book(path, *, valuation_date: _dt.date | str | None = None) -> list[BookRow]:
    """Read and validate a book file; returns one :class:`BookRow` per trade, in file order.

    Raises :class:`InputError` for file-level problems: unreadable or unknown format, unknown key
    (named with the first row that uses it), missing ``id`` column, empty or duplicate ids.
    Row-level problems are returned in :attr:`BookRow.error`.
    """
    path = Path(path)
    table = _load_table(path)
    table.columns = [str(column).strip().lower() for column in table.columns]
    if isinstance(valuation_date, str):
        valuation_date = _dt.date.fromisoformat(valuation_date)
    records = table.to_dict(orient="records")
    for column in table.columns:
        if column not in ALL_KEYS:
            used = next((i for i, r in enumerate(records, 1) if not _is_empty(r.get(column))), None)
            raise InputError(f"unknown key '{column}'; the keys of a book are listed in BOOK_SCHEMA.md",
                             field=column, row=used, source=str(path))
    if "id" not in table.columns:
        raise InputError("the book has no 'id' column", field="id", source=str(path))
    seen = {}
    for number, record in enumerate(records, 1):
        trade_id = record.get("id")
        if _is_empty(trade_id):
            raise InputError("every trade needs an id", field="id", row=number, source=str(path))
        trade_id = str(trade_id).strip()
        if trade_id in seen:
            raise InputError(f"duplicate id '{trade_id}' (first at row {seen[trade_id]})", field="id",
                             row=number, source=str(path))
        seen[trade_id] = number
    return [_validate_row(number, record, valuation_date) for number, record in enumerate(records, 1)]


def contract_of(row: BookRow):
    """The instrument (a scalar contract of :mod:`shoals.instruments`) of a valid book row.

    Defaults as in BOOK_SCHEMA.md; a lookback's missing ``running_extreme`` stays NaN (the spot at
    pricing time).  Raises :class:`InputError` naming the row for a row with an error or a bad combination.
    """
    if row.error is not None:
        raise InputError(row.error, row=row.row)
    f = row.fields
    is_call = f.get("option_type", "call") == "call"
    nan = math.nan
    try:
        if row.instrument == "european":
            return European(strike=f["strike"], maturity=f["maturity"], is_call=is_call)
        if row.instrument == "american":
            return American(strike=f["strike"], maturity=f["maturity"], is_call=is_call)
        if row.instrument == "barrier":
            for key in ("barrier", "barrier_type"):
                if key not in f:
                    raise InputError("required key is missing", field=key)
            discrete = f.get("monitoring", "continuous") == "discrete"
            if discrete != ("monitoring_dates" in f):
                raise InputError("give monitoring_dates exactly when monitoring is discrete",
                                 field="monitoring_dates")
            knock_in = f["barrier_type"].endswith("in")
            if knock_in and f.get("rebate_timing") == "hit":
                raise InputError("an in-option's rebate is paid at maturity", field="rebate_timing")
            return Barrier.of_type(f["barrier_type"], strike=f["strike"], maturity=f["maturity"],
                                   barrier=f["barrier"], is_call=is_call, rebate=f.get("rebate", 0.0),
                                   monitoring_dates=f.get("monitoring_dates", 0),
                                   rebate_at_hit=f.get("rebate_timing", "hit") == "hit")
        if row.instrument == "lookback":
            floating = f.get("strike_type", "floating") == "floating"
            if floating and "strike" in f:
                raise InputError("a floating-strike lookback has no strike; leave it empty", field="strike")
            return Lookback(maturity=f["maturity"], strike=f.get("strike", nan), is_call=is_call,
                            floating=floating, running_extreme=f.get("running_extreme", nan))
        if row.instrument == "asian":
            if "fixings" not in f:
                raise InputError("required key is missing", field="fixings")
            floating = f.get("strike_type", "fixed") == "floating"
            if floating and "strike" in f:
                raise InputError("a floating-strike Asian has no strike; leave it empty", field="strike")
            return Asian(maturity=f["maturity"], fixings=f["fixings"], strike=f.get("strike", nan),
                         is_call=is_call, geometric=f.get("average", "arithmetic") == "geometric",
                         floating=floating)
        if "resets" not in f:
            raise InputError("required key is missing", field="resets")
        if "strike" in f:
            raise InputError("a cliquet has no strike (use moneyness); leave it empty", field="strike")
        return Cliquet(maturity=f["maturity"], resets=f["resets"], is_call=is_call,
                       moneyness=f.get("moneyness", 1.0), local_floor=f.get("local_floor", 0.0),
                       local_cap=f.get("local_cap", math.inf), global_floor=f.get("global_floor", -math.inf),
                       global_cap=f.get("global_cap", math.inf), pay_per_period=f.get("payment") == "period")
    except InputError as error:
        field = error.field.split(".")[-1] if error.field else None
        raise InputError(error.reason, field=field, row=row.row, value=error.value) from None

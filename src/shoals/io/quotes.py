"""Reading option quotes (CSV or Parquet) per ../shared/BOOK_SCHEMA.md "Quotes", with cleaning.

Layout (one quote a row, as in ``../shared/data/*/*_clean.csv``): ``expiry_years``, or ``expiry_date``
with a ``quote_date`` column or the ``valuation_date`` argument (Act/365: years = days / 365; where both
are given ``expiry_years`` wins, as it can carry the time of day); ``strike``; ``option_type``
(``C``/``P``/``call``/``put``, any case); ``bid`` and ``ask`` prices, or ``mid_iv`` (decimal vols) when
only vols are quoted.  Optional: ``spot`` (used when no ``spot`` argument is given; the median if it
varies), ``quote_date``; for vol-only files ``forward`` and ``discount_factor``, or ``rate_cc`` and
``div_yield`` (continuous), per row.  Other columns are ignored.  Rows are numbered from 1 (the first
data row), as in the messages.

Two kinds of problem:

* **invalid data** raises :class:`~shoals.errors.InputError` naming the row and field: a missing
  required column, a non-numeric or non-positive strike, a non-numeric or negative price or vol, an
  unknown option type, a missing expiry, an unparseable date, several quote dates in one file;
* **bad markets**, normal in real chains, are dropped and counted by reason in the
  :class:`~shoals.market.quotes.CleaningReport` per :class:`~shoals.calibration.smiles.CleaningPolicy`:
  0/0 markets, zero or empty ask, crossed markets, zero bids, locked markets (off by default), wide
  spreads (off by default), duplicates, expired quotes, empty vols; then, once the forwards are known
  (:func:`~shoals.calibration.forwards.fit_forwards` on the quotes left), mids outside the no-arbitrage
  bounds.  Mids that are not monotone or not convex in strike are flagged (kept).  An empty bid or ask
  counts as 0 (the convention of the data files: a missing side is coded 0).

Validation: tests/unit/test_read_quotes.py (errors naming row and field, counts by reason, policy),
tests/unit/test_smiles.py (SPX and DAX files end to end).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoals.calibration.forwards import ExpiryForward, fit_forwards
from shoals.calibration.smiles import (
    FLAG_MONOTONE, FLAG_CONVEX, FLAG_NOT_CHECKED, FLAG_VOL_CONVEX, FLAG_VOL_MONOTONE, REASON_ABOVE,
    REASON_BELOW, REASON_CROSSED, REASON_DUPLICATE, REASON_EXPIRED, REASON_LOCKED, REASON_NO_ASK,
    REASON_NO_MARKET, REASON_NO_VOL, REASON_WIDE, REASON_ZERO_BID, CleaningPolicy, black_prices,
    match_forwards, no_arbitrage_bounds, shape_violations)
from shoals.errors import CalibrationError, InputError
from shoals.market.quotes import CleaningReport, QuoteTable

__all__ = ["CleaningPolicy", "read_forwards", "read_quotes"]

_CALL = {"c": True, "call": True, "p": False, "put": False}
_MAX_VOL = 5.0  # larger mid_iv values are taken as percent given by mistake


@dataclass(frozen=True)
class _Source:
    frame: pd.DataFrame
    name: str

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def raw(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=object)

    def error(self, message: str, *, field: str, row: int | None = None, value=None) -> InputError:
        return InputError(message, field=field, row=row, value=value, source=self.name)


def _load(path) -> _Source:
    if isinstance(path, pd.DataFrame):
        frame, name = path.copy(), "<DataFrame>"
    else:
        path = Path(path)
        name = str(path)
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
            elif suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            else:
                raise InputError(f"unknown file type '{suffix}': use .csv or .parquet", source=name)
        except FileNotFoundError:
            raise InputError(f"no such file: {path}", source=name) from None
        except (ValueError, OSError, pd.errors.ParserError) as error:
            raise InputError(f"cannot read the file ({error}); expected a CSV or Parquet table of quotes",
                             source=name) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame) == 0:
        raise InputError("the file has no quotes", source=name)
    return _Source(frame.reset_index(drop=True), name)


def _is_empty(values: np.ndarray) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and math.isnan(v))
                     or (isinstance(v, str) and v.strip() == "") or v is pd.NA for v in values], bool)


def _numbers(source: _Source, column: str) -> np.ndarray:
    """The column as float64, NaN where empty; raises naming the first non-numeric cell."""
    raw = source.raw(column)
    empty = _is_empty(raw)
    values = pd.to_numeric(pd.Series(np.where(empty, np.nan, raw), dtype=object), errors="coerce")
    values = np.array(values.to_numpy(dtype=np.float64), dtype=np.float64)  # writable copy
    bad = (~empty & ~np.isfinite(values))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise source.error(f"'{raw[i]}' is not a finite number", field=column, row=i + 1, value=raw[i])
    return values


def _require(source: _Source, column: str, hint: str = "") -> None:
    if not source.has(column):
        raise source.error(f"required column '{column}' is missing{hint}", field=column)


def _as_date(value, field: str) -> _dt.date | None:
    if value is None or isinstance(value, _dt.date):
        return value if not isinstance(value, _dt.datetime) else value.date()
    try:
        return _dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"'{value}' is not a date (YYYY-MM-DD)", field=field, value=value) from None


def _dates(source: _Source, column: str, rows: np.ndarray) -> dict[int, _dt.date]:
    raw = source.raw(column)
    out = {}
    for i in rows:
        value = raw[i]
        if _is_empty(np.array([value], dtype=object))[0]:
            continue
        try:
            if isinstance(value, _dt.datetime):
                out[int(i)] = value.date()
            elif isinstance(value, _dt.date):
                out[int(i)] = value
            else:  # ISO dates only: YYYY-MM-DD, optionally followed by a time
                out[int(i)] = _dt.date.fromisoformat(str(value).strip()[:10])
        except (ValueError, TypeError):
            raise source.error(f"'{value}' is not a date (YYYY-MM-DD)", field=column, row=int(i) + 1,
                               value=value) from None
    return out


def _valuation_date(source: _Source, valuation_date) -> _dt.date | None:
    if valuation_date is not None:
        return _as_date(valuation_date, "valuation_date")
    if not source.has("quote_date"):
        return None
    found = _dates(source, "quote_date", np.arange(len(source.frame)))
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        first_other = next(i for i, d in found.items() if d != distinct[0])
        raise source.error(f"the file holds several quote dates ({distinct[0]}, {distinct[1]}, ...); "
                           "split it by date or pass valuation_date=", field="quote_date",
                           row=first_other + 1, value=found[first_other])
    return distinct[0] if distinct else None


def _expiries(source: _Source, valuation: _dt.date | None) -> np.ndarray:
    """Expiry in years per row: ``expiry_years`` where given, else (expiry_date - valuation)/365."""
    if not source.has("expiry_years") and not source.has("expiry_date"):
        raise source.error("required column 'expiry_years' (or 'expiry_date' with a quote_date) is missing",
                           field="expiry_years")
    n = len(source.frame)
    years = _numbers(source, "expiry_years") if source.has("expiry_years") else np.full(n, np.nan)
    missing = np.flatnonzero(~np.isfinite(years))
    if missing.size and source.has("expiry_date"):
        dates = _dates(source, "expiry_date", missing)
        if dates and valuation is None:
            i = min(dates)
            raise source.error("an expiry_date needs a quote_date column or valuation_date=",
                               field="expiry_date", row=i + 1)
        for i, date in dates.items():
            years[i] = (date - valuation).days / 365.0
    missing = np.flatnonzero(~np.isfinite(years))
    if missing.size:
        field = "expiry_years" if source.has("expiry_years") else "expiry_date"
        raise source.error("required value is empty", field=field, row=int(missing[0]) + 1)
    return years


def _spot(source: _Source, spot) -> float | None:
    if spot is not None:
        if not (np.isfinite(spot) and spot > 0):
            raise InputError(f"must be a finite number > 0, got {spot!r}", field="spot", value=spot)
        return float(spot)
    if not source.has("spot"):
        return None
    values = _numbers(source, "spot")
    bad = np.flatnonzero(np.isfinite(values) & ~(values > 0))
    if bad.size:
        i = int(bad[0])
        raise source.error(f"must be > 0, got {values[i]!r}", field="spot", row=i + 1, value=values[i])
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _per_expiry(source: _Source, years: np.ndarray, column: str, rows: np.ndarray) -> dict[float, float]:
    """One value of ``column`` per expiry (rows restricted to ``rows``); raises if it varies in an expiry."""
    values = _numbers(source, column)
    out, first = {}, {}
    for i in rows:
        t, v = float(years[i]), values[i]
        if not np.isfinite(v):
            raise source.error("required value is empty", field=column, row=int(i) + 1)
        if t in out and abs(out[t] - v) > 1e-9 * max(1.0, abs(v)):
            raise source.error(f"{v!r} differs from {out[t]!r} at row {first[t]} of the same expiry",
                               field=column, row=int(i) + 1, value=v)
        out.setdefault(t, float(v))
        first.setdefault(t, int(i) + 1)
    return out


def _forwards_from_columns(source: _Source, years: np.ndarray, rows: np.ndarray,
                           spot: float | None) -> list[ExpiryForward]:
    """Forwards from ``forward``/``discount_factor`` columns, else ``rate_cc``/``div_yield`` with a spot."""
    rows = rows[years[rows] > 0.0]
    if source.has("forward") and source.has("discount_factor"):
        forward = _per_expiry(source, years, "forward", rows)
        discount = _per_expiry(source, years, "discount_factor", rows)
        for column, table in (("forward", forward), ("discount_factor", discount)):
            for t, v in table.items():
                if not v > 0.0:
                    i = next(int(i) for i in rows if years[i] == t)
                    raise source.error(f"must be > 0, got {v!r}", field=column, row=i + 1, value=v)
        return [ExpiryForward(t, forward[t], discount[t], 0, math.nan, "file columns forward, discount_factor")
                for t in sorted(forward)]
    if source.has("rate_cc") and spot is not None:
        rate = _per_expiry(source, years, "rate_cc", rows)
        dividend = (_per_expiry(source, years, "div_yield", rows) if source.has("div_yield")
                    else {t: 0.0 for t in rate})
        return [ExpiryForward(t, spot * math.exp((rate[t] - dividend[t]) * t), math.exp(-rate[t] * t), 0,
                              math.nan, "file columns rate_cc, div_yield (carry from spot)")
                for t in sorted(rate)]
    return []


def read_forwards(path, *, spot: float | None = None, valuation_date=None) -> list[ExpiryForward]:
    """Forwards and discount factors per expiry from the columns of a quote file (vol-only files).

    Uses ``forward`` and ``discount_factor`` when both columns exist, else F = S e^{(r - q) T},
    DF = e^{-r T} from ``rate_cc`` (r) and ``div_yield`` (q, 0 when absent) with the spot (argument or
    ``spot`` column).  Returns an empty list when the file has none of these.  Values must agree within
    an expiry.  Pass the result as ``given=`` to :func:`~shoals.calibration.forwards.fit_forwards`.

    Validation: tests/reference/test_forwards_spx.py (DAX forwards from its columns).
    """
    source = _load(path)
    years = _expiries(source, _valuation_date(source, valuation_date))
    return _forwards_from_columns(source, years, np.arange(len(source.frame)), _spot(source, spot))


def read_quotes(path, *, spot: float | None = None, rate=None, dividend: float | None = None,
                valuation_date: _dt.date | str | None = None, policy: CleaningPolicy | None = None
                ) -> tuple[QuoteTable, CleaningReport]:
    """Read, validate and clean a quote file (CSV or Parquet, or a DataFrame in that layout).

    Returns the cleaned :class:`~shoals.market.quotes.QuoteTable` and a
    :class:`~shoals.market.quotes.CleaningReport` with every dropped row under its reason and every
    flagged row under its finding (``kept + sum(dropped) == total``).

    Cleaning, in order, each row counted under the first reason that applies (``policy`` defaults to
    :class:`CleaningPolicy()`): expired; for prices 0/0, zero or empty ask, crossed (ask < bid), zero bid
    (``drop_zero_bid``), locked (``drop_locked``), relative spread (ask - bid)/mid above
    ``max_relative_spread``; for vols an empty or zero ``mid_iv``; duplicates of (expiry, strike, type).
    Then forwards F and discount factors D per expiry (:func:`~shoals.calibration.forwards.fit_forwards`
    with ``rate`` and ``dividend``: put-call parity for prices; for vol-only files the arguments when
    ``rate`` is given, else the file's forward columns, see :func:`read_forwards`) and

    * ``drop_outside_bounds``: drop mids with mid <= D max(w (F - K), 0) or mid >= D F (call), D K (put);
    * ``check_shape``: flag, per expiry and option type, mids that break
      0 >= dC/dK >= -D, 0 <= dP/dK <= D or convexity (for vol-only files, the Black call prices of the
      vols), see :func:`~shoals.calibration.smiles.shape_violations`.

    When no forward can be found, the rows are flagged as not checked instead.

    Parameters
    ----------
    path : file path (.csv, .parquet) or pandas DataFrame.
    spot : underlying level; default the file's ``spot`` column, if any.
    rate : flat continuous rate (or a curve with ``discount(t)``), for the discount factor of short
        expiries in the parity fit and the carry of vol-only quotes.
    dividend : continuous dividend yield for the carry of vol-only quotes (default 0).
    valuation_date : date of the quotes (date or ISO string); default the ``quote_date`` column.
    policy : the :class:`CleaningPolicy`.

    References: Merton (1973) for the bounds; Carr and Madan (2005) for the shape conditions.
    Validation: tests/unit/test_read_quotes.py, tests/unit/test_smiles.py.
    """
    policy = policy or CleaningPolicy()
    source = _load(path)
    n = len(source.frame)
    rows = np.arange(1, n + 1, dtype=np.int64)

    _require(source, "strike")
    _require(source, "option_type", " (C/P or call/put)")
    strike = _numbers(source, "strike")
    for i in np.flatnonzero(~(strike > 0.0)):
        message = "required value is empty" if not np.isfinite(strike[i]) else f"must be > 0, got {strike[i]!r}"
        raise source.error(message, field="strike", row=int(i) + 1, value=strike[i])
    is_call = np.zeros(n, bool)
    for i, value in enumerate(source.raw("option_type")):
        key = "" if _is_empty(np.array([value], dtype=object))[0] else str(value).strip().lower()
        if key not in _CALL:
            raise source.error(f"'{value}' is not an option type: use C, P, call or put", field="option_type",
                               row=i + 1, value=value)
        is_call[i] = _CALL[key]
    valuation = _valuation_date(source, valuation_date)
    years = _expiries(source, valuation)
    spot_value = _spot(source, spot)

    has_prices = source.has("bid") and source.has("ask")
    bid = _numbers(source, "bid") if source.has("bid") else np.full(n, np.nan)
    ask = _numbers(source, "ask") if source.has("ask") else np.full(n, np.nan)
    vol_only = not (has_prices and np.any(np.isfinite(bid) | np.isfinite(ask)))
    if vol_only and not source.has("mid_iv"):
        missing = "bid" if not source.has("bid") else "ask" if not source.has("ask") else "bid"
        raise source.error(f"required column '{missing}' is missing or empty (give bid and ask prices, "
                           "or mid_iv vols)", field=missing)

    reason = np.full(n, None, dtype=object)

    def assign(mask, text):
        reason[mask & (reason == None)] = text  # noqa: E711 (element-wise)

    assign(years <= 0.0, REASON_EXPIRED)
    if vol_only:
        mid_iv = _numbers(source, "mid_iv")
        for i in np.flatnonzero(mid_iv < 0.0):
            raise source.error(f"must be >= 0, got {mid_iv[i]!r}", field="mid_iv", row=int(i) + 1,
                               value=mid_iv[i])
        for i in np.flatnonzero(mid_iv > _MAX_VOL):
            raise source.error(f"vol {mid_iv[i]!r} > {_MAX_VOL}: give vols as decimals (0.25 for 25%)",
                               field="mid_iv", row=int(i) + 1, value=mid_iv[i])
        assign(~(mid_iv > 0.0), REASON_NO_VOL)
        bid = np.full(n, np.nan)
        ask = np.full(n, np.nan)
    else:
        mid_iv = np.full(n, np.nan)
        for column, values in (("bid", bid), ("ask", ask)):
            for i in np.flatnonzero(values < 0.0):
                raise source.error(f"a price must be >= 0, got {values[i]!r}", field=column, row=int(i) + 1,
                                   value=values[i])
        bid = np.where(np.isfinite(bid), bid, 0.0)
        ask = np.where(np.isfinite(ask), ask, 0.0)
        assign((bid == 0.0) & (ask == 0.0), REASON_NO_MARKET)
        assign(ask == 0.0, REASON_NO_ASK)
        assign(ask < bid, REASON_CROSSED)
        if policy.drop_zero_bid:
            assign(bid == 0.0, REASON_ZERO_BID)
        if policy.drop_locked:
            assign(ask == bid, REASON_LOCKED)
        if policy.max_relative_spread is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = (ask - bid) / (0.5 * (ask + bid))
            assign(spread > policy.max_relative_spread, REASON_WIDE)
    seen = set()
    for i in np.flatnonzero(reason == None):  # noqa: E711
        key = (years[i], strike[i], is_call[i])
        if key in seen:
            reason[i] = REASON_DUPLICATE
        seen.add(key)

    def table(keep):
        return QuoteTable(expiry=years[keep], strike=strike[keep], is_call=is_call[keep], bid=bid[keep],
                          ask=ask[keep], mid_iv=mid_iv[keep], row=rows[keep], spot=spot_value,
                          quote_date=valuation, source=source.name)

    flagged: dict[str, list[int]] = {}
    keep = reason == None  # noqa: E711
    first = table(keep)
    forwards = None
    if len(first):
        given = None
        if vol_only and rate is None:
            given = _forwards_from_columns(source, years, np.flatnonzero(keep), spot_value)
        try:
            forwards = fit_forwards(first, rate=rate, dividend=dividend, given=given)
        except (InputError, CalibrationError):
            flagged[FLAG_NOT_CHECKED] = [int(r) for r in first.row]
    if forwards is not None:
        f_map = dict(zip(first.expiries.tolist(), match_forwards(first.expiries, forwards)))
        forward = np.array([f_map[t].forward if keep[i] else np.nan for i, t in enumerate(years)])
        discount = np.array([f_map[t].discount_factor if keep[i] else np.nan for i, t in enumerate(years)])
        index = np.flatnonzero(keep)
        if not vol_only and policy.drop_outside_bounds:
            mid = 0.5 * (bid + ask)
            lower, upper = no_arbitrage_bounds(forwards=forward[index], strikes=strike[index],
                                               discount_factors=discount[index], is_call=is_call[index])
            assign(np.isin(np.arange(n), index[mid[index] <= lower]), REASON_BELOW)
            assign(np.isin(np.arange(n), index[mid[index] >= upper]), REASON_ABOVE)
            keep = reason == None  # noqa: E711
        if policy.check_shape:
            _flag_shapes(flagged, keep, years, strike, is_call, bid, ask, mid_iv, forward, discount,
                         rows, vol_only, policy.shape_tolerance)

    dropped: dict[str, list[int]] = {}
    for i in np.flatnonzero(reason != None):  # noqa: E711
        dropped.setdefault(reason[i], []).append(int(rows[i]))
    final = table(keep)
    report = CleaningReport(total=n, kept=len(final), dropped=dropped,
                            flagged={k: sorted(v) for k, v in flagged.items() if v})
    return final, report


def _flag_shapes(flagged, keep, years, strike, is_call, bid, ask, mid_iv, forward, discount, rows,
                 vol_only, tolerance) -> None:
    """Monotonicity and convexity flags per expiry and option type (vol-only: call prices of the vols)."""
    call_prices = None
    if vol_only:  # one kernel call for all quotes
        kept = np.flatnonzero(keep)
        call_prices = np.full(years.shape, np.nan)
        call_prices[kept] = black_prices(forwards=forward[kept], strikes=strike[kept], expiries=years[kept],
                                         discount_factors=discount[kept], volatilities=mid_iv[kept],
                                         is_call=True)
    for t in np.unique(years[keep]):
        index = np.flatnonzero(keep & (years == t))
        d = discount[index[0]]
        if vol_only:
            groups = [(index, call_prices[index], True, FLAG_VOL_MONOTONE, FLAG_VOL_CONVEX)]
        else:
            groups = []
            for call in (True, False):
                sub = index[is_call[index] == call]
                groups.append((sub, 0.5 * (bid[sub] + ask[sub]), call, FLAG_MONOTONE[call], FLAG_CONVEX[call]))
        for sub, prices, call, flag_monotone, flag_convex in groups:
            if sub.size < 2:
                continue
            monotone_bad, convex_bad = shape_violations(strike[sub], prices, discount_factor=d, is_call=call,
                                                        tolerance=tolerance)
            if np.any(monotone_bad):
                flagged.setdefault(flag_monotone, []).extend(int(r) for r in rows[sub[monotone_bad]])
            if np.any(convex_bad):
                flagged.setdefault(flag_convex, []).extend(int(r) for r in rows[sub[convex_bad]])

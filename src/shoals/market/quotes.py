"""Option quotes: the cleaned columnar table and the per-expiry smile arrays the calibration consumes."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QuoteTable:
    """Cleaned option quotes, one entry per quote (NumPy arrays of equal length).

    ``expiry`` in years from the valuation date; ``bid``/``ask`` prices (NaN where the file has vols
    only); ``mid_iv`` a quoted mid implied vol (NaN where prices are given); ``row`` the 1-based row of
    the source file (for messages).  ``spot`` is the underlying level when known.
    """

    expiry: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    mid_iv: np.ndarray
    row: np.ndarray
    spot: float | None = None
    quote_date: _dt.date | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.expiry.shape[0])

    @property
    def expiries(self) -> np.ndarray:
        """Sorted distinct expiries."""
        return np.unique(self.expiry)

    def take(self, index) -> "QuoteTable":
        """The sub-table of the given boolean mask or integer index."""
        return QuoteTable(expiry=self.expiry[index], strike=self.strike[index], is_call=self.is_call[index],
                          bid=self.bid[index], ask=self.ask[index], mid_iv=self.mid_iv[index], row=self.row[index],
                          spot=self.spot, quote_date=self.quote_date, source=self.source)


@dataclass(frozen=True)
class CleaningReport:
    """What the quote-cleaning policy dropped or flagged: counts by reason and the rows concerned.

    ``dropped`` maps a reason (e.g. "zero bid") to the list of 1-based source rows dropped for it;
    ``flagged`` maps a data-quality finding that does not drop the quote (e.g. "call prices not convex in
    strike") to its rows.
    """

    total: int
    kept: int
    dropped: dict = field(default_factory=dict)
    flagged: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.kept} of {self.total} quotes kept"]
        lines += [f"  dropped {len(rows)}: {reason}" for reason, rows in self.dropped.items() if rows]
        lines += [f"  flagged {len(rows)}: {reason}" for reason, rows in self.flagged.items() if rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class SmileData:
    """Out-of-the-money quotes per expiry as padded arrays of shape (slices, max quotes per slice).

    ``log_moneyness`` k = ln(K / F_T); vols are Black implied vols from the slice's forward and discount
    factor: ``mid_vol`` (always finite where ``mask``), ``bid_vol`` (NaN where the bid is zero or below
    intrinsic: no lower vol bound) and ``ask_vol`` (NaN when unknown).  ``mask`` marks real entries;
    padding has mask False and finite dummy values.  ``vega`` is the Black vega dPrice/dsigma of the mid
    (for weights).  Per-slice arrays have shape (slices,).
    """

    expiries: np.ndarray
    forwards: np.ndarray
    discount_factors: np.ndarray
    log_moneyness: np.ndarray
    strikes: np.ndarray
    is_call: np.ndarray
    mid_vol: np.ndarray
    bid_vol: np.ndarray
    ask_vol: np.ndarray
    vega: np.ndarray
    mask: np.ndarray
    rows: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(self.expiries.shape[0])

    @property
    def counts(self) -> np.ndarray:
        return self.mask.sum(axis=1)

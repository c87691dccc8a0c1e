"""Quote cleaning policy, no-arbitrage checks on quotes, and out-of-the-money smiles per expiry.

:class:`CleaningPolicy` is shared by :func:`shoals.io.quotes.read_quotes` (row-level cleaning, bounds and
shape checks once forwards are known) and :func:`build_smiles` (selection of the out-of-the-money quote
at each strike and Black implied vols of its mid, bid and ask).  Every quote that is not kept is counted
under a reason in a :class:`~shoals.market.quotes.CleaningReport`; nothing is dropped silently.

References: Black, "The pricing of commodity contracts" (1976) for the vols; Carr and Madan, "A note on
sufficient conditions for no arbitrage" (2005) for the monotonicity, slope and convexity conditions on
call prices in strike.

Validation: tests/unit/test_smiles.py (SPX 2011-01-24 smiles vs the data set's vols, OTM selection,
slices kept and dropped; DAX 2002-07-05 butterfly violations flagged), tests/unit/test_read_quotes.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from shoals._chunks import map_chunks
from shoals.errors import InputError
from shoals.kernels.black_scholes import black_scholes_greeks
from shoals.kernels.implied_vol import ABOVE_MAXIMUM, BELOW_INTRINSIC, OK, REASONS, implied_volatility
from shoals.market.quotes import CleaningReport, QuoteTable, SmileData

# Reasons for dropping a quote (keys of CleaningReport.dropped).
REASON_NO_MARKET = "no bid and no ask (0/0 or empty)"
REASON_NO_ASK = "zero or absent ask"
REASON_ZERO_BID = "zero bid (one-sided market)"
REASON_CROSSED = "crossed market (ask < bid)"
REASON_LOCKED = "locked market (ask == bid)"
REASON_WIDE = "relative spread (ask - bid) / mid above max_relative_spread (stale or indicative quote)"
REASON_DUPLICATE = "duplicate quote (same expiry, strike and option type; first kept)"
REASON_EXPIRED = "expired (expiry at or before the valuation date)"
REASON_NO_VOL = "no mid vol (vol-only quote with an empty or zero mid_iv)"
REASON_BELOW = "mid at or below intrinsic value DF max(w (F - K), 0) (no-arbitrage lower bound)"
REASON_ABOVE = "mid at or above DF F (call) or DF K (put) (no-arbitrage upper bound)"
REASON_ITM = "in-the-money side not used (out-of-the-money quote at the same strike used, or otm_fallback off)"
REASON_ITM_NO_BID_VOL = ("in-the-money quote with bid at or below intrinsic value, at a strike without a "
                         "valid out-of-the-money quote (its mid is intrinsic plus spread: no vol information)")
REASON_NO_FORWARD = "no forward for the expiry"
REASON_THIN_SLICE = "slice with fewer than min_quotes usable quotes"

# Findings that flag quotes without dropping them (keys of CleaningReport.flagged).
FLAG_MONOTONE = {True: "call mids not monotone in strike (need 0 >= dC/dK >= -DF)",
                 False: "put mids not monotone in strike (need 0 <= dP/dK <= DF)"}
FLAG_CONVEX = {True: "call mids not convex in strike (butterfly arbitrage)",
               False: "put mids not convex in strike (butterfly arbitrage)"}
FLAG_VOL_MONOTONE = "call prices from mid vols not monotone in strike (need 0 >= dC/dK >= -DF)"
FLAG_VOL_CONVEX = "call prices from mid vols not convex in strike (butterfly arbitrage)"
FLAG_ITM_USED = "in-the-money quote used (out-of-the-money side missing or invalid)"
FLAG_NOT_CHECKED = "not checked against no-arbitrage bounds or shape (no forward; pass rate= or forward columns)"


@dataclass(frozen=True)
class CleaningPolicy:
    """What counts as a bad quote.  Defaults follow common practice for listed index options.

    Parameters
    ----------
    drop_zero_bid : drop quotes with bid == 0 (a one-sided market: the mid is not a price), default True.
        Quotes with no ask (0 or empty) are always dropped: they have no mid.  Crossed markets
        (ask < bid) are always dropped.
    drop_locked : drop locked markets (ask == bid > 0), default False (kept: a tradeable price).
    max_relative_spread : drop quotes with (ask - bid) / mid above this (stale or indicative quotes);
        default None (off).  2.0 is the largest possible value for bid >= 0.
    drop_outside_bounds : drop quotes whose mid is at or below the discounted intrinsic value or at or
        above DF F (call) / DF K (put), once the expiry's forward is known; default True.
    check_shape : flag (not drop) call and put mids that are not monotone or not convex in strike per
        expiry; for vol-only quotes, the call prices implied by the vols; default True.
    shape_tolerance : price tolerance of the shape checks (a butterfly or spread may violate its bound
        by this much before it is flagged), default 0.0.
    min_quotes : slices with fewer usable out-of-the-money quotes are dropped by ``build_smiles``,
        default 5.
    otm_fallback : at a strike whose out-of-the-money quote is missing or invalid, use the
        in-the-money quote when valid and its bid is above intrinsic value (so that bid and ask bracket
        the vol; a deep in-the-money mid with a bid below intrinsic is intrinsic plus half the spread),
        default True.
    """

    drop_zero_bid: bool = True
    drop_locked: bool = False
    max_relative_spread: float | None = None
    drop_outside_bounds: bool = True
    check_shape: bool = True
    shape_tolerance: float = 0.0
    min_quotes: int = 5
    otm_fallback: bool = True

    def __post_init__(self):
        if self.max_relative_spread is not None and not self.max_relative_spread > 0.0:
            raise InputError(f"must be > 0 or None, got {self.max_relative_spread!r}",
                             field="CleaningPolicy.max_relative_spread", value=self.max_relative_spread)
        if not self.shape_tolerance >= 0.0:
            raise InputError(f"must be >= 0, got {self.shape_tolerance!r}",
                             field="CleaningPolicy.shape_tolerance", value=self.shape_tolerance)
        if int(self.min_quotes) != self.min_quotes or self.min_quotes < 1:
            raise InputError(f"must be a positive integer, got {self.min_quotes!r}",
                             field="CleaningPolicy.min_quotes", value=self.min_quotes)


def no_arbitrage_bounds(*, forwards, strikes, discount_factors, is_call):
    """Bounds (lower, upper) of a European option price.

    .. math:: D \\max(w (F - K), 0) \\le V \\le D F \\ (\\text{call}),\\quad D K \\ (\\text{put})

    with w = +1 for a call and -1 for a put; a mid must lie strictly inside for a positive finite vol.

    References: Merton (1973), "Theory of rational option pricing".
    Validation: tests/unit/test_read_quotes.py (quotes outside bounds dropped).
    """
    forwards, strikes, discount_factors, is_call = np.broadcast_arrays(
        np.asarray(forwards, np.float64), np.asarray(strikes, np.float64),
        np.asarray(discount_factors, np.float64), np.asarray(is_call, bool))
    sign = np.where(is_call, 1.0, -1.0)
    lower = discount_factors * np.maximum(sign * (forwards - strikes), 0.0)
    upper = discount_factors * np.where(is_call, forwards, strikes)
    return lower, upper


def shape_violations(strikes, prices, *, discount_factor: float, is_call: bool, tolerance: float = 0.0):
    """Masks (not_monotone, not_convex) over quotes of one expiry and option type.

    With the quotes sorted by strike, the slopes s_i = (V_{i+1} - V_i) / (K_{i+1} - K_i) must satisfy
    -D <= s_i <= 0 for calls and 0 <= s_i <= D for puts (a vertical spread is worth between 0 and
    D (K_{i+1} - K_i)); both quotes of a violating pair are flagged.  Convexity requires
    V_i <= V_{i-1} (K_{i+1} - K_i)/(K_{i+1} - K_{i-1}) + V_{i+1} (K_i - K_{i-1})/(K_{i+1} - K_{i-1})
    (a butterfly is worth >= 0); the body V_i of a violating butterfly is flagged.  ``tolerance`` is in
    price units, plus 1e-12 of the largest price for rounding.  Returns masks in the input order.

    References: Carr and Madan (2005), "A note on sufficient conditions for no arbitrage".
    Validation: tests/unit/test_smiles.py (DAX 4400-4600 butterflies), tests/unit/test_read_quotes.py.
    """
    strikes = np.asarray(strikes, np.float64)
    prices = np.asarray(prices, np.float64)
    order = np.argsort(strikes, kind="stable")
    k, v = strikes[order], prices[order]
    n = k.size
    monotone_bad = np.zeros(n, bool)
    convex_bad = np.zeros(n, bool)
    if n >= 2:
        tol = tolerance + 1e-12 * float(np.max(np.abs(v)))
        dk = np.diff(k)
        dv = np.diff(v)
        if is_call:
            bad = (dv > tol) | (-dv > discount_factor * dk + tol)
        else:
            bad = (-dv > tol) | (dv > discount_factor * dk + tol)
        monotone_bad[:-1] |= bad
        monotone_bad[1:] |= bad
    if n >= 3:
        left, body, right = k[:-2], k[1:-1], k[2:]
        chord = (v[:-2] * (right - body) + v[2:] * (body - left)) / (right - left)
        convex_bad[1:-1] = v[1:-1] > chord + tol
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    return monotone_bad[inverse], convex_bad[inverse]


@jax.jit
def _black(forwards, strikes, expiries, discount_factors, volatilities, is_call):
    rate = -jnp.log(discount_factors) / expiries
    greeks = black_scholes_greeks(spots=forwards, strikes=strikes, expiries=expiries, volatilities=volatilities,
                                  rates=rate, dividend_yields=rate, is_call=is_call)
    return greeks.price, greeks.vega


def _black_chunked(forwards, strikes, expiries, discount_factors, volatilities, is_call=True):
    arrays = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (
        forwards, strikes, expiries, discount_factors, volatilities)), np.asarray(is_call, bool))
    shape = arrays[0].shape
    price, vega = map_chunks(_black, [a.ravel() for a in arrays], chunk_size=_CHUNK)
    return price.reshape(shape), vega.reshape(shape)


def black_prices(*, forwards, strikes, expiries, discount_factors, volatilities, is_call):
    """Black-76 prices V = D [w F N(w d1) - w K N(w d2)], d_{1,2} = [ln(F/K) +- sigma^2 T/2] / (sigma sqrt T),
    broadcast over all inputs: :func:`~shoals.kernels.black_scholes.black_scholes_greeks` with S = F and
    r = q = -ln D / T, evaluated in fixed-size chunks (one compiled shape whatever the number of quotes).

    References: Black, "The pricing of commodity contracts" (1976).
    Validation: tests/unit/test_smiles.py (vs a closed form).
    """
    return _black_chunked(forwards, strikes, expiries, discount_factors, volatilities, is_call)[0]


def black_vega(*, forwards, strikes, expiries, discount_factors, volatilities):
    """Black-76 vega dV/dsigma = D F n(d1) sqrt(T) (same evaluation as :func:`black_prices`).

    References: Black (1976).
    Validation: tests/unit/test_smiles.py (vs a finite difference of :func:`black_prices`).
    """
    return _black_chunked(forwards, strikes, expiries, discount_factors, volatilities)[1]


def match_forwards(expiries, forwards) -> list:
    """For each expiry, the :class:`~shoals.calibration.forwards.ExpiryForward` at that expiry (to 1e-9
    relative) or None."""
    times = np.array([f.expiry for f in forwards], dtype=np.float64)
    out = []
    for t in np.asarray(expiries, np.float64):
        hit = np.flatnonzero(np.abs(times - t) <= 1e-9 * max(1.0, float(t)))
        out.append(forwards[int(hit[0])] if hit.size else None)
    return out


_CHUNK = 4096  # one shape for the jitted solver: it compiles once (about 2 s on CPU), whatever the size


@jax.jit
def _implied(prices, forwards, strikes, expiries, discount_factors, is_call):
    return implied_volatility(prices=prices, forwards=forwards, strikes=strikes, expiries=expiries,
                              discount_factors=discount_factors, is_call=is_call)


def _solve(prices, forwards, strikes, expiries, discount_factors, is_call):
    """Implied vols and reason codes in fixed-size chunks, so the solver compiles once."""
    return map_chunks(_implied, [prices, forwards, strikes, expiries, discount_factors, is_call], chunk_size=_CHUNK)


def _mid_reason(code: int, vol: float) -> str | None:
    if code == BELOW_INTRINSIC or (code == OK and vol == 0.0):
        return REASON_BELOW
    if code == ABOVE_MAXIMUM:
        return REASON_ABOVE
    if code != OK:
        return f"implied vol cannot be computed: {REASONS[int(code)]}"
    return None


def build_smiles(quotes: QuoteTable, forwards, *, policy: CleaningPolicy | None = None
                 ) -> tuple[SmileData, CleaningReport]:
    """Out-of-the-money smiles per expiry, with Black vols of mid, bid and ask, as padded arrays.

    At each (expiry, strike) the out-of-the-money quote is taken (call for K >= F, put for K < F); if it
    is missing or invalid and ``policy.otm_fallback``, the in-the-money quote (flagged) when its bid is
    above intrinsic value.  Vols solve

    .. math::
        V = D\\,[w F N(w d_1) - w K N(w d_2)],\\quad
        d_{1,2} = \\frac{\\ln(F/K) \\pm \\sigma^2 T/2}{\\sigma\\sqrt T}

    for the mid, bid and ask of all quotes together with the vectorised solver
    (:func:`~shoals.kernels.implied_vol.implied_volatility`), in fixed chunks of 4096 so that it compiles
    once whatever the number of quotes.  A quote is invalid (dropped, reported) when its mid is at or
    below intrinsic value, at or above the upper bound, or its vol cannot be computed; vol-only quotes
    (``mid_iv``) are used as quoted, as the out-of-the-money side (a vol is the same for the call and the
    put).  ``bid_vol`` is NaN where the bid is 0 or below intrinsic, ``ask_vol`` NaN where the ask is at
    or above the upper bound; ``vega`` is the Black vega of the mid (:func:`black_vega`).  Slices with
    fewer than ``policy.min_quotes`` quotes are dropped.  Arrays have shape (slices, max quotes), strikes ascending; padding repeats the slice's last quote
    with ``mask`` False, ``vega`` 0 and ``rows`` 0.

    ``forwards`` is a list of :class:`~shoals.calibration.forwards.ExpiryForward` (see
    :func:`~shoals.calibration.forwards.fit_forwards`).  Returns the smiles and a report whose
    ``kept + sum(dropped)`` equals ``len(quotes)``.

    References: Black (1976); Jaeckel, "Let's be rational" (2015) for the solver.
    Validation: tests/unit/test_smiles.py.
    """
    policy = policy or CleaningPolicy()
    n = len(quotes)
    dropped: dict[str, list[int]] = {}
    flagged: dict[str, list[int]] = {}

    def drop(reason, index):
        dropped.setdefault(reason, []).extend(int(quotes.row[i]) for i in np.atleast_1d(index))

    expiries = np.asarray(quotes.expiry, np.float64)
    strikes = np.asarray(quotes.strike, np.float64)
    is_call = np.asarray(quotes.is_call, bool)
    bid = np.asarray(quotes.bid, np.float64)
    ask = np.asarray(quotes.ask, np.float64)
    mid_iv = np.asarray(quotes.mid_iv, np.float64)

    distinct = np.unique(expiries)
    matched = match_forwards(distinct, list(forwards))
    forward = np.full(n, np.nan)
    discount = np.full(n, np.nan)
    for t, f in zip(distinct, matched):
        if f is not None:
            forward[expiries == t] = f.forward
            discount[expiries == t] = f.discount_factor
    has_forward = np.isfinite(forward)
    drop(REASON_NO_FORWARD, np.flatnonzero(~has_forward))

    vol_only = ~np.isfinite(bid) & ~np.isfinite(ask)
    two_sided = np.isfinite(bid) & np.isfinite(ask) & (bid >= 0.0) & (ask > 0.0) & (ask >= bid)
    mid = np.where(two_sided, 0.5 * (bid + ask), np.nan)
    f_safe = np.where(has_forward, forward, 1.0)
    d_safe = np.where(has_forward, discount, 1.0)

    # One solver call for the mids, bids and asks of all quotes.
    vols, codes = _solve(np.concatenate([mid, bid, ask]), np.tile(f_safe, 3), np.tile(strikes, 3),
                         np.tile(expiries, 3), np.tile(d_safe, 3), np.tile(is_call, 3))
    mid_vol, bid_vol, ask_vol = vols[:n], vols[n:2 * n], vols[2 * n:]
    mid_code = codes[:n]
    bid_vol = np.where((bid > 0.0) & (codes[n:2 * n] == OK), bid_vol, np.nan)
    ask_vol = np.where(codes[2 * n:] == OK, ask_vol, np.nan)
    mid_vol = np.where(vol_only, mid_iv, mid_vol)
    bid_vol = np.where(vol_only, np.nan, bid_vol)
    ask_vol = np.where(vol_only, np.nan, ask_vol)

    invalid_reason: list[str | None] = [None] * n
    for i in np.flatnonzero(has_forward):
        if vol_only[i]:
            if not (np.isfinite(mid_iv[i]) and mid_iv[i] > 0.0):
                invalid_reason[i] = REASON_NO_VOL
        elif not two_sided[i]:
            invalid_reason[i] = "no valid mid (needs 0 <= bid <= ask, ask > 0)"
        else:
            invalid_reason[i] = _mid_reason(int(mid_code[i]), float(mid_vol[i]))
    valid = has_forward & np.array([r is None for r in invalid_reason])

    selected: dict[float, list[int]] = {}
    for t in distinct:
        rows_t = np.flatnonzero((expiries == t) & has_forward)
        if rows_t.size == 0:
            continue
        chosen = []
        for k in np.unique(strikes[rows_t]):
            at_k = rows_t[strikes[rows_t] == k]
            otm_is_call = k >= forward[at_k[0]]
            # A vol-only quote stands for both sides (parity: the call and put vols are equal).
            otm = [i for i in at_k if is_call[i] == otm_is_call or vol_only[i]]
            itm = [i for i in at_k if not (is_call[i] == otm_is_call or vol_only[i])]
            pick = next((i for i in otm if valid[i]), None)
            if pick is None and policy.otm_fallback:
                pick = next((i for i in itm if valid[i] and np.isfinite(bid_vol[i])), None)
                if pick is not None:
                    flagged.setdefault(FLAG_ITM_USED, []).append(int(quotes.row[pick]))
            for i in at_k:
                if i == pick:
                    continue
                if invalid_reason[i] is not None:
                    drop(invalid_reason[i], i)
                elif pick is not None and (is_call[i] == is_call[pick] or vol_only[i]):
                    drop(REASON_DUPLICATE, i)
                elif pick is None and policy.otm_fallback:
                    drop(REASON_ITM_NO_BID_VOL, i)
                else:
                    drop(REASON_ITM, i)
            if pick is not None:
                chosen.append(pick)
        if len(chosen) < policy.min_quotes:
            drop(REASON_THIN_SLICE, chosen)
        else:
            selected[float(t)] = chosen

    slices = sorted(selected)
    width = max((len(selected[t]) for t in slices), default=0)
    shape = (len(slices), width)
    out = {name: np.zeros(shape) for name in ("log_moneyness", "strikes", "mid_vol", "bid_vol", "ask_vol",
                                               "vega")}
    out_call = np.zeros(shape, bool)
    out_mask = np.zeros(shape, bool)
    out_rows = np.zeros(shape, np.int64)
    slice_forward = np.zeros(len(slices))
    slice_discount = np.zeros(len(slices))
    for j, t in enumerate(slices):
        index = np.array(selected[t])
        index = index[np.argsort(strikes[index], kind="stable")]
        m = index.size
        pad = np.concatenate([index, np.full(width - m, index[-1])])
        f, d = forward[index[0]], discount[index[0]]
        slice_forward[j], slice_discount[j] = f, d
        out["strikes"][j] = strikes[pad]
        out["log_moneyness"][j] = np.log(strikes[pad] / f)
        out["mid_vol"][j] = mid_vol[pad]
        out["bid_vol"][j] = np.where(np.arange(width) < m, bid_vol[pad], mid_vol[pad])
        out["ask_vol"][j] = np.where(np.arange(width) < m, ask_vol[pad], mid_vol[pad])
        vega = black_vega(forwards=f, strikes=strikes[pad], expiries=t, discount_factors=d,
                          volatilities=mid_vol[pad])
        out["vega"][j] = np.where(np.arange(width) < m, vega, 0.0)
        out_call[j] = np.where(vol_only[pad], strikes[pad] >= f, is_call[pad])
        out_mask[j, :m] = True
        out_rows[j, :m] = quotes.row[index]

    smiles = SmileData(expiries=np.array(slices, dtype=np.float64), forwards=slice_forward,
                       discount_factors=slice_discount, log_moneyness=out["log_moneyness"],
                       strikes=out["strikes"], is_call=out_call, mid_vol=out["mid_vol"],
                       bid_vol=out["bid_vol"], ask_vol=out["ask_vol"], vega=out["vega"], mask=out_mask,
                       rows=out_rows)
    report = CleaningReport(total=n, kept=int(out_mask.sum()),
                            dropped={k: sorted(v) for k, v in dropped.items() if v},
                            flagged={k: sorted(v) for k, v in flagged.items() if v})
    return smiles, report

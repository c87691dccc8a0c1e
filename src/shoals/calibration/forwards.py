"""Forwards and discount factors per expiry from put-call parity (robust regression) or from carry.

For each expiry the call and put mids at a common strike satisfy put-call parity

.. math:: C_{mid}(K) - P_{mid}(K) = D\\,(F - K),

a straight line in K with slope -D (the discount factor) and root F (the forward).  The line is fitted
by iteratively reweighted least squares with Huber weights on pairs near the money, so that a few stale
quotes do not move it; where D is poorly identified (short expiries, few pairs) D is fixed and only F is
fitted.  Quotes that carry vols only (no prices) get F and D from spot, rate and dividend yield, or from
values given per expiry (e.g. the ``forward``/``discount_factor`` columns of the quote file).

References: R. C. Merton, "Theory of rational option pricing" (1973) for parity; P. J. Huber, "Robust
estimation of a location parameter" (1964) and P. W. Holland, R. E. Welsch, "Robust regression using
iteratively reweighted least-squares" (1977) for the IRLS scheme; CBOE VIX white paper (2019) for
forward selection at the strike where |C - P| is smallest.

Validation: tests/reference/test_forwards_spx.py (SPX 2011-01-24 forwards and discount factors vs the
data set's independent parity fit; DAX 2002-07-05 forwards from its columns and from carry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from shoals.errors import CalibrationError, InputError

#: Huber tuning constant (95% efficiency under normal errors).
HUBER_C = 1.345

METHOD_JOINT = "irls F and DF"
METHOD_RATE = "irls F, DF from rate"
METHOD_IMPLIED_RATE = "irls F, DF from rate implied by longer expiries"
METHOD_NO_RATE = "irls F, DF = 1 (no rate known)"
METHOD_INTERPOLATED = "interpolated ln F, ln DF in T (no usable pairs)"
METHOD_CARRY = "carry: F = S exp((r - q) T), DF = exp(-r T)"


@dataclass(frozen=True)
class ExpiryForward:
    """Forward F and discount factor DF of one expiry (years), with how they were obtained.

    ``pairs_used`` is the number of call/put pairs in the parity regression (0 when not fitted),
    ``rmse`` the root-mean-square parity residual C - P - DF (F - K) over those pairs (price units, NaN
    when not fitted), ``method`` one of the ``METHOD_*`` strings of this module or a caller's label.
    """

    expiry: float
    forward: float
    discount_factor: float
    pairs_used: int = 0
    rmse: float = math.nan
    method: str = ""

    @property
    def rate(self) -> float:
        """Continuously compounded rate r = -ln(DF) / T."""
        return -math.log(self.discount_factor) / self.expiry


def _discount(rate, expiry: float) -> float:
    """DF from a flat continuous rate (float) or a curve object with ``discount(t)``."""
    if hasattr(rate, "discount"):
        return float(np.asarray(rate.discount(expiry)))
    return math.exp(-float(rate) * expiry)


def huber_regression(x, y, sigma, *, fit_slope=True, slope=0.0, iterations=100):
    """Robust fit of y = a + b (x - xbar) (or of y = a + slope (x - xbar), slope fixed) by IRLS.

    Start: Theil-Sen (median of pairwise slopes, median intercept), or the median for a location, so
    that the start and the scale do not depend on outliers.  Iterate weighted least squares with
    w_i = h(u_i / s) / sigma_i^2, standardised residuals u_i = r_i / sigma_i, Huber's
    h(z) = min(1, c / |z|), c = 1.345, and the scale s = 1.4826 median|u| of the start's residuals
    (floored at 0.05, i.e. 5% of a spread; held fixed), until the coefficients change by less than
    1e-13 relative.  Returns (a, b, xbar, residuals, weights).

    References: Huber (1964); Holland and Welsch (1977); Sen, "Estimates of the regression coefficient
    based on Kendall's tau" (1968) for the start.
    Validation: tests/reference/test_forwards_spx.py (stale pairs do not move the forward).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    base = 1.0 / sigma ** 2
    xbar = float(np.sum(base * x) / np.sum(base))
    dx = x - xbar
    if fit_slope and x.size >= 2:
        i, j = np.triu_indices(x.size, k=1)
        distinct = dx[j] != dx[i]
        b = float(np.median((y[j] - y[i])[distinct] / (dx[j] - dx[i])[distinct])) if distinct.any() else 0.0
    else:
        b = float(slope)
    a = float(np.median(y - b * dx))
    # Preliminary scale from the robust start, then held fixed: re-estimating it from the current fit
    # lets outliers inflate it step by step (their influence grows with the scale).
    scale = max(1.4826 * float(np.median(np.abs((y - a - b * dx) / sigma))), 0.05)
    weights = base
    for _ in range(iterations):
        z = np.abs((y - a - b * dx) / sigma) / scale
        weights = base * np.minimum(1.0, HUBER_C / np.maximum(z, 1e-300))
        if fit_slope:
            design = np.stack([np.ones_like(dx), dx], axis=1)
            root = np.sqrt(weights)
            (a_new, b_new), *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
        else:
            a_new, b_new = float(np.sum(weights * (y - b * dx)) / np.sum(weights)), b
        converged = abs(a_new - a) <= 1e-13 * (1.0 + abs(a)) and abs(b_new - b) <= 1e-13 * (1.0 + abs(b))
        a, b = float(a_new), float(b_new)
        if converged:
            break
    residuals = y - a - b * dx
    return a, b, xbar, residuals, weights


@dataclass(frozen=True)
class _Pairs:
    strikes: np.ndarray
    difference: np.ndarray  # C_mid - P_mid
    sigma: np.ndarray       # half-spread of C plus half-spread of P (uncertainty of the difference)


def _parity_pairs(quotes, mask) -> _Pairs:
    """Call/put pairs at common strikes with both sides bid > 0 and ask >= bid."""
    strike = quotes.strike[mask]
    call = quotes.is_call[mask]
    bid, ask = quotes.bid[mask], quotes.ask[mask]
    two_sided = (bid > 0.0) & (ask >= bid) & np.isfinite(bid) & np.isfinite(ask)
    calls = {k: (b, a) for k, b, a, c, ok in zip(strike, bid, ask, call, two_sided) if c and ok}
    puts = {k: (b, a) for k, b, a, c, ok in zip(strike, bid, ask, call, two_sided) if not c and ok}
    common = np.array(sorted(set(calls) & set(puts)), dtype=np.float64)
    if common.size == 0:
        empty = np.zeros(0)
        return _Pairs(empty, empty, empty)
    c_bid, c_ask = np.array([calls[k] for k in common]).T
    p_bid, p_ask = np.array([puts[k] for k in common]).T
    difference = 0.5 * (c_bid + c_ask) - 0.5 * (p_bid + p_ask)
    sigma = 0.5 * (c_ask - c_bid) + 0.5 * (p_ask - p_bid)
    floor = max(1e-4, 1e-6 * float(np.median(common)))
    return _Pairs(common, difference, np.maximum(sigma, floor))


def _near_money(pairs: _Pairs, expiry: float, discount: float, band: tuple[float, float],
                min_pairs: int) -> np.ndarray:
    """Mask of pairs with |ln K/F0| <= width sqrt(T) + floor, doubled until ``min_pairs`` are inside.

    F0 = K* + (C - P)(K*) / DF at the strike K* where |C - P| is smallest (CBOE VIX white paper).
    """
    i = int(np.argmin(np.abs(pairs.difference)))
    f0 = pairs.strikes[i] + pairs.difference[i] / discount
    if not f0 > 0.0:
        f0 = pairs.strikes[i]
    distance = np.abs(np.log(pairs.strikes / f0))
    half_width = band[0] * math.sqrt(expiry) + band[1]
    inside = distance <= half_width
    while inside.sum() < min(min_pairs, pairs.strikes.size):
        half_width *= 2.0
        inside = distance <= half_width
    return inside


def _fit_forward_given_discount(pairs: _Pairs, inside, discount: float):
    """F = robust mean of K + (C - P)/DF; returns (F, rmse of C - P - DF (F - K))."""
    k, y, s = pairs.strikes[inside], pairs.difference[inside], pairs.sigma[inside]
    a, _, xbar, residuals, _ = huber_regression(k, y / discount + k, s / discount, fit_slope=False)
    forward = a
    rmse = float(np.sqrt(np.mean((y - discount * (forward - k)) ** 2)))
    return float(forward), rmse


def _fit_forward_and_discount(pairs: _Pairs, inside):
    """(F, DF, rmse) from the robust line C - P = DF F - DF K."""
    k, y, s = pairs.strikes[inside], pairs.difference[inside], pairs.sigma[inside]
    a, b, xbar, residuals, _ = huber_regression(k, y, s, fit_slope=True)
    discount = -b
    if not discount > 0.0:
        return math.nan, math.nan, math.nan
    forward = xbar + a / discount
    rmse = float(np.sqrt(np.mean((y - discount * (forward - k)) ** 2)))
    return float(forward), float(discount), rmse


def _plausible(discount: float, expiry: float, max_abs_rate: float) -> bool:
    return discount > 0.0 and abs(math.log(discount) / expiry) <= max_abs_rate


def _interpolate(expiry: float, fitted: list[ExpiryForward]) -> tuple[float, float]:
    """ln F and ln DF linear in T through the fitted expiries, extrapolated from the nearest two; with a
    single fitted expiry, its forward and its rate."""
    times = np.array([f.expiry for f in fitted])
    log_f = np.log([f.forward for f in fitted])
    log_d = np.log([f.discount_factor for f in fitted])
    if len(fitted) == 1:
        return (float(np.exp(log_f[0])),
                float(np.exp(log_d[0] * expiry / times[0])))
    j = int(np.clip(np.searchsorted(times, expiry), 1, len(times) - 1))
    w = (expiry - times[j - 1]) / (times[j] - times[j - 1])
    return (float(np.exp(log_f[j - 1] + w * (log_f[j] - log_f[j - 1]))),
            float(np.exp(log_d[j - 1] + w * (log_d[j] - log_d[j - 1]))))


def fit_forwards(quotes, *, rate=None, dividend=None, given=None, short_expiry: float = 0.25,
                 min_pairs: int = 5, band: tuple[float, float] = (0.10, 0.02),
                 max_abs_rate: float = 0.25) -> list[ExpiryForward]:
    """Forward and discount factor of every expiry of ``quotes`` (a :class:`~shoals.market.quotes.QuoteTable`).

    Per expiry T with priced quotes, put-call parity

    .. math:: y_i = C_{mid}(K_i) - P_{mid}(K_i) = D (F - K_i) + \\varepsilon_i

    is fitted on the pairs with both sides bid > 0 and ask >= bid near the money,
    |ln K/F_0| <= band[0] sqrt(T) + band[1] (the band doubles until ``min_pairs`` pairs are inside),
    by IRLS with Huber weights and base weights 1/sigma_i^2, sigma_i = half-spread(C) + half-spread(P)
    (:func:`huber_regression`).  The methods, in order of preference:

    1. ``METHOD_JOINT``: F and D both fitted, for T >= ``short_expiry`` with >= ``min_pairs`` pairs and
       a plausible D (|ln D / T| <= ``max_abs_rate``);
    2. D fixed, F fitted (robust mean of K_i + y_i / D) where D is poorly identified: D = exp(-r T)
       from ``rate`` (``METHOD_RATE``; a float is a flat continuous rate, an object with ``discount(t)``
       such as :class:`~shoals.market.curves.ZeroCurve` a curve), else from the rate implied by the
       nearest expiry fitted by 1 (``METHOD_IMPLIED_RATE``), else D = 1 (``METHOD_NO_RATE``);
    3. no pair: ln F and ln D interpolated linearly in T from the fitted expiries
       (``METHOD_INTERPOLATED``).

    Expiries quoted in vols only (bid/ask NaN) take F and D from ``given`` (a list of
    :class:`ExpiryForward`, e.g. :func:`shoals.io.quotes.read_forwards`; ``given`` wins for every expiry
    it covers, priced or not), else from carry F = S e^{(r-q)T}, D = e^{-rT} with S = ``quotes.spot``,
    r = ``rate``, q = ``dividend`` (0 when None) (``METHOD_CARRY``).

    Raises :class:`~shoals.errors.InputError` when a vol-only expiry has no forward (pass ``rate`` and a
    spot, or ``given``), and :class:`~shoals.errors.CalibrationError` when no expiry has a usable pair.

    References: Merton (1973); Huber (1964); Holland and Welsch (1977); CBOE VIX white paper (2019).
    Validation: tests/reference/test_forwards_spx.py.
    """
    given = list(given or [])
    given_times = np.array([f.expiry for f in given], dtype=np.float64)
    expiries = [float(t) for t in quotes.expiries]
    result: dict[float, ExpiryForward] = {}
    pending_fixed, pending_interpolated = [], []
    for expiry in expiries:
        match = np.flatnonzero(np.abs(given_times - expiry) <= 1e-9 * max(1.0, expiry))
        if match.size:
            result[expiry] = replace(given[int(match[0])], expiry=expiry)
            continue
        at = quotes.expiry == expiry
        priced = np.isfinite(quotes.bid[at]) | np.isfinite(quotes.ask[at])
        if not np.any(priced):
            if rate is None or quotes.spot is None:
                raise InputError(
                    f"expiry {expiry:.6g}y is quoted in vols only and has no forward: pass rate= (and "
                    "dividend=) with a spot, or given= forwards (read_forwards reads forward/discount_factor "
                    "or rate_cc/div_yield columns)", field="forward")
            discount = _discount(rate, expiry)
            q = 0.0 if dividend is None else float(dividend)
            forward = float(quotes.spot) * math.exp(-q * expiry) / discount
            result[expiry] = ExpiryForward(expiry, forward, discount, 0, math.nan, METHOD_CARRY)
            continue
        pairs = _parity_pairs(quotes, at)
        if pairs.strikes.size == 0:
            pending_interpolated.append(expiry)
            continue
        if expiry >= short_expiry and pairs.strikes.size >= min_pairs:
            inside = _near_money(pairs, expiry, 1.0, band, min_pairs)
            forward, discount, rmse = _fit_forward_and_discount(pairs, inside)
            if _plausible(discount, expiry, max_abs_rate):
                result[expiry] = ExpiryForward(expiry, forward, discount, int(inside.sum()), rmse,
                                               METHOD_JOINT)
                continue
        pending_fixed.append((expiry, pairs))

    joint = sorted((f for f in result.values() if f.method == METHOD_JOINT), key=lambda f: f.expiry)
    for expiry, pairs in pending_fixed:
        if rate is not None:
            discount, method = _discount(rate, expiry), METHOD_RATE
        elif joint:
            nearest = min(joint, key=lambda f: abs(f.expiry - expiry))
            discount, method = math.exp(-nearest.rate * expiry), METHOD_IMPLIED_RATE
        else:
            discount, method = 1.0, METHOD_NO_RATE
        inside = _near_money(pairs, expiry, discount, band, min_pairs)
        forward, rmse = _fit_forward_given_discount(pairs, inside, discount)
        result[expiry] = ExpiryForward(expiry, forward, discount, int(inside.sum()), rmse, method)

    if pending_interpolated:
        fitted = sorted((f for f in result.values() if f.pairs_used > 0), key=lambda f: f.expiry)
        if not fitted:
            raise CalibrationError(
                "no expiry has a call/put pair with both bids > 0, so no forward can be fitted; "
                "pass given= forwards or quotes with two-sided markets")
        for expiry in pending_interpolated:
            forward, discount = _interpolate(expiry, fitted)
            result[expiry] = ExpiryForward(expiry, forward, discount, 0, math.nan, METHOD_INTERPOLATED)
    return [result[t] for t in expiries]

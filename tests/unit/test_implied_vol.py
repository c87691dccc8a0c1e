"""Implied volatility: round trips, in-the-money conditioning, deep wings, bounds, jit and batching.

Reference prices for the accuracy tests in the wings come from an independent high-precision Black
formula (``decimal`` with 80 significant digits: the normal CDF by its Taylor series for |z| < 6 and the
Laplace continued fraction of Mills' ratio beyond), so that the vol error measured is the solver's, not
the float64 price kernel's (whose *relative* error grows in the far wings, where the price is a
difference of two nearly equal terms).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import jax
import numpy as np
import pytest

import shoals as sh
from shoals.kernels.implied_vol import (ABOVE_MAXIMUM, BAD_INPUT, BELOW_INTRINSIC, NOT_FINITE, OK, REASONS,
                                        normalised_black_price)

EPS = np.finfo(np.float64).eps
ONE_HOUR = 1.0 / (365.0 * 24.0)
ONE_MINUTE = ONE_HOUR / 60.0

_implied_vol = jax.jit(sh.implied_volatility)
_greeks = jax.jit(sh.black_scholes_greeks)


# --- high-precision Black formula -------------------------------------------------------------------

_PREC = 80


def _decimal_pi():
    """pi to the context precision (the recipe of the ``decimal`` documentation)."""
    three = Decimal(3)
    lasts, t, s, n, na, d, da = 0, three, 3, 1, 0, 0, 24
    while s != lasts:
        lasts = s
        n, na = n + na, na + 8
        d, da = d + da, da + 32
        t = (t * n) / d
        s += t
    return +s


with localcontext() as _context:
    _context.prec = _PREC + 10
    _SQRT_2PI = (2 * _decimal_pi()).sqrt()


def _norm_pdf(z: Decimal) -> Decimal:
    return (-(z * z) / 2).exp() / _SQRT_2PI


def _norm_cdf(z: Decimal) -> Decimal:
    """N(z) to ~75 significant digits (relative, also deep in the left tail)."""
    if z <= -6:
        ratio = -z  # Mills' ratio R(t) = N(-t)/n(t) = 1/(t + 1/(t + 2/(t + 3/(t + ...)))), t = -z
        for k in range(600, 0, -1):
            ratio = -z + k / ratio
        return _norm_pdf(z) / ratio
    if z >= 6:
        return 1 - _norm_cdf(-z)
    term = total = z  # N(z) = 1/2 + n(z) sum_k z^{2k+1} / (2k+1)!!
    k, z2 = 0, z * z
    while abs(term) > abs(total) * Decimal(10) ** (-_PREC - 5):
        k += 1
        term = term * z2 / (2 * k + 1)
        total += term
    return Decimal("0.5") + _norm_pdf(z) * total


def _reference(forward, strike, expiry, vol, discount, is_call):
    """(price, d price / d vol, condition number p / (sigma dp/dsigma), |d ln s / d x|) of the exact Black formula
    for the float64 inputs taken as exact decimals."""
    with localcontext() as context:
        context.prec = _PREC
        context.Emin, context.Emax = -10 ** 15, 10 ** 15  # exp(-d^2/2) must not underflow for |d| ~ 1e5
        f, k, t, v, df = (Decimal(float(a)) for a in (forward, strike, expiry, vol, discount))
        s = v * t.sqrt()
        x = (f / k).ln()
        d1 = x / s + s / 2
        d2 = d1 - s
        if is_call:
            price = df * (f * _norm_cdf(d1) - k * _norm_cdf(d2))
            dp_dx = df * (f * _norm_cdf(d1))  # d price / d ln F at fixed K (the n(d) terms cancel)
        else:
            price = df * (k * _norm_cdf(-d2) - f * _norm_cdf(-d1))
            dp_dx = df * (f * _norm_cdf(-d1))
        dp_ds = df * f * _norm_pdf(d1)
        vega = dp_ds * t.sqrt()
        condition = price / (s * dp_ds) if price > 0 else Decimal(0)
        x_sensitivity = dp_dx / (s * dp_ds)  # |d ln s / d x|: error of s from an ulp of x = ln(F/K)
        return float(price), float(vega), float(condition), float(x_sensitivity), float(x)


# --- (a) one million out-of-the-money round trips ------------------------------------------------------

def _random_market(n, seed):
    rng = np.random.default_rng(seed)
    spot = 100.0
    log_k_over_f = rng.uniform(-3.0, 3.0, n)
    expiries = np.exp(rng.uniform(np.log(ONE_HOUR), np.log(10.0), n))
    vols = np.exp(rng.uniform(np.log(0.01), np.log(2.0), n))
    rates = rng.uniform(-0.02, 0.1, n)
    dividends = rng.uniform(0.0, 0.05, n)
    forwards = spot * np.exp((rates - dividends) * expiries)
    strikes = forwards * np.exp(log_k_over_f)
    return dict(spot=spot, forwards=forwards, strikes=strikes, expiries=expiries, vols=vols, rates=rates,
                dividends=dividends, discounts=np.exp(-rates * expiries))


def _price_and_invert(m, is_call):
    greeks = _greeks(spots=m["spot"], strikes=m["strikes"], expiries=m["expiries"], volatilities=m["vols"],
                     rates=m["rates"], dividend_yields=m["dividends"], is_call=is_call)
    prices = np.asarray(greeks.price)
    vols, reasons = _implied_vol(prices=prices, forwards=m["forwards"], strikes=m["strikes"], expiries=m["expiries"],
                                 discount_factors=m["discounts"], is_call=is_call)
    return prices, np.asarray(greeks.vega), np.asarray(vols), np.asarray(reasons)


def test_round_trip_one_million_out_of_the_money():
    m = _random_market(1_000_000, seed=2024)
    calls = m["strikes"] > m["forwards"]  # the out-of-the-money option
    prices, vega, vols, reasons = _price_and_invert(m, calls)
    error = np.abs(vols - m["vols"])
    informative = vega > 1e-8
    positive = prices > 0.0
    max_error = float(np.max(error[informative]))
    print(f"\n1M OTM round trip: max |vol error| = {max_error:.3e} over {informative.sum()} points with vega > 1e-8 "
          f"({positive.sum()} prices > 0, {(~positive).sum()} underflowed to 0)")
    assert informative.sum() > 200_000
    assert max_error < 1e-10
    assert np.all(reasons == OK)
    assert not np.isnan(vols[positive]).any()
    assert np.all(vols[positive] > 0.0)
    assert np.all(vols[~positive] == 0.0)  # a zero OTM price is at intrinsic value: vol 0


# --- (b) in the money ----------------------------------------------------------------------------------

def test_in_the_money_exact_prices_conditioning_bound():
    """With exact prices (rounded once to float64) the vol error is within 1e-10 + 20 eps price / vega, the
    conditioning of recovering the time value by subtracting the intrinsic value (measured: <= ~5 eps p/vega)."""
    m = _random_market(400, seed=11)
    calls = m["strikes"] < m["forwards"]  # the in-the-money option
    refs = [_reference(f, k, t, v, df, c) for f, k, t, v, df, c in
            zip(m["forwards"], m["strikes"], m["expiries"], m["vols"], m["discounts"], calls)]
    prices = np.array([r[0] for r in refs])
    vega = np.array([r[1] for r in refs])
    vols, reasons = (np.asarray(a) for a in _implied_vol(
        prices=prices, forwards=m["forwards"], strikes=m["strikes"], expiries=m["expiries"],
        discount_factors=m["discounts"], is_call=calls))
    ok = reasons == OK
    assert ok.mean() > 0.6
    with np.errstate(divide="ignore", over="ignore"):
        bound = 1e-10 + 20.0 * EPS * prices / vega
    error = np.abs(vols - m["vols"])
    print(f"\nITM exact prices: max error / (1e-10 + 20 eps p / vega) = {np.max(error[ok] / bound[ok]):.3f}")
    assert np.all(error[ok] <= bound[ok]), np.max(error[ok] / bound[ok])
    # The others are prices whose time value is below their own rounding: the rounded price is at or below
    # intrinsic value, which the solver reports (never a wrong vol).
    intrinsic = m["discounts"] * np.abs(m["forwards"] - m["strikes"])
    assert np.all(reasons[~ok] == BELOW_INTRINSIC)
    assert np.all(np.isnan(vols[~ok]))
    assert np.all(prices[~ok] - intrinsic[~ok] <= 4.0 * EPS * prices[~ok])


def test_in_the_money_kernel_prices():
    """200,000 ITM prices from black_scholes_price.  Besides the conditioning above, the input carries the
    kernel's own rounding, ~eps (S e^{-qT} + K e^{-rT}) in absolute terms (it subtracts two terms of that
    size), so the bound is 1e-10 + 20 eps (price + DF (F + K)) / vega.  Where that rounding swallows the
    whole time value (deep in the money, short expiries: most of this sample) the solver returns vol 0
    (price at intrinsic) or NaN with BELOW_INTRINSIC; that is checked separately, since a linear bound
    in 1/vega does not describe the collapse of the vol to 0."""
    m = _random_market(200_000, seed=12)
    calls = m["strikes"] < m["forwards"]
    prices, vega, vols, reasons = _price_and_invert(m, calls)
    ok = reasons == OK
    solved = ok & (vols > 0.0)
    terms = m["discounts"] * (m["forwards"] + m["strikes"])
    time_value = prices - m["discounts"] * np.abs(m["forwards"] - m["strikes"])
    with np.errstate(divide="ignore", over="ignore"):
        bound = 1e-10 + 20.0 * EPS * (prices + terms) / vega
    error = np.abs(vols - m["vols"])
    assert solved.sum() > 40_000
    print(f"\nITM kernel prices: {solved.sum()} solved, max error / bound = {np.max(error[solved] / bound[solved]):.3f}, "
          f"max |vol error| where vega > 1e-3: {np.max(error[solved & (vega > 1e-3)]):.2e}")
    assert np.all(error[solved] <= bound[solved]), np.max(error[solved] / bound[solved])
    # Vol 0 or NaN only where the time value is within the price's rounding; NaN only as "below intrinsic".
    at_intrinsic = ok & (vols == 0.0)
    assert np.all(time_value[at_intrinsic] <= 8.0 * EPS * terms[at_intrinsic])
    assert np.all(reasons[~ok] == BELOW_INTRINSIC)
    assert np.all(time_value[~ok] <= 8.0 * EPS * terms[~ok])


# --- (c) deep wings, tiny prices, one-minute expiries ---------------------------------------------------

_WING_LOG_MONEYNESS = (-5.0, -3.0, -1.0, -0.1, -1e-3, 1e-3, 0.1, 1.0, 3.0, 5.0)  # x = ln(F/K)
_WING_STDEVS = (0.05, 0.1, 0.135, 0.2, 0.5, 1.0, 2.0, 3.0)


@pytest.fixture(scope="module")
def wing_grid():
    rows = []
    forward, discount = 100.0, 0.97
    for x in _WING_LOG_MONEYNESS:
        for s in _WING_STDEVS:
            for expiry in (1.0, ONE_MINUTE):
                strike = forward * np.exp(-x)
                vol = s / np.sqrt(expiry)
                is_call = strike > forward  # out of the money
                rows.append((forward, strike, expiry, vol, discount, is_call)
                            + _reference(forward, strike, expiry, vol, discount, is_call))
    # Short expiries just off the money (one minute to one hour, vols 5% to 150%).
    for expiry in (ONE_MINUTE, 10 * ONE_MINUTE, ONE_HOUR):
        for x in (-2e-3, -5e-4, 5e-4, 2e-3):
            for vol in (0.05, 0.2, 0.8, 1.5):
                strike = forward * np.exp(-x)
                is_call = strike > forward
                rows.append((forward, strike, expiry, vol, discount, is_call)
                            + _reference(forward, strike, expiry, vol, discount, is_call))
    table = np.array([r[:5] + r[6:] for r in rows], dtype=np.float64)
    calls = np.array([r[5] for r in rows])
    return dict(forwards=table[:, 0], strikes=table[:, 1], expiries=table[:, 2], vols=table[:, 3],
                discounts=table[:, 4], prices=table[:, 5], vega=table[:, 6], condition=table[:, 7],
                x_sensitivity=table[:, 8], calls=calls)


def test_deep_wings_and_tiny_time_values(wing_grid):
    g = wing_grid
    vols, reasons = (np.asarray(a) for a in _implied_vol(
        prices=g["prices"], forwards=g["forwards"], strikes=g["strikes"], expiries=g["expiries"],
        discount_factors=g["discounts"], is_call=g["calls"]))
    positive = g["prices"] > 0.0
    assert np.all(reasons == OK)
    assert positive.sum() > 140 and g["prices"][positive].min() < 1e-299  # prices down to 1e-300
    assert np.all(np.isfinite(vols[positive])) and np.all(vols[positive] > 0.0)
    assert np.all(vols[~positive] == 0.0)
    # Relative precision the inputs determine: eps * condition (price) + eps * |d ln s / d x| (the ulp of
    # x = ln(F/K) the solver computes), with a factor 8.
    relative_error = np.abs(vols[positive] / g["vols"][positive] - 1.0)
    bound = 8.0 * EPS * (np.maximum(1.0, g["condition"][positive]) + g["x_sensitivity"][positive])
    print(f"\nwings: max relative vol error {relative_error.max():.2e}, "
          f"max error / bound {np.max(relative_error / bound):.3f}")
    assert np.all(relative_error <= bound)


@pytest.mark.parametrize("is_call, log_moneyness", [(True, -5.0), (False, 5.0), (True, -1.0), (False, 0.5)])
@pytest.mark.parametrize("target", [1e-300, 1e-250, 1e-200, 1e-100, 1e-30])
def test_tiny_prices_reprice_exactly(is_call, log_moneyness, target):
    """Backward error: the vol found for a price of 1e-300 ... 1e-30 reprices (exactly) to that price within
    the rounding of the vol itself, i.e. a relative 8 eps (1 + s (dp/ds) / p)."""
    forward, discount = 1.0, 1.0
    strike = forward * np.exp(-log_moneyness)
    vol, reason = (float(a) for a in _solve(prices=target, forwards=forward, strikes=strike, expiries=1.0,
                                            discount_factors=discount, is_call=is_call))
    assert reason == OK and np.isfinite(vol) and vol > 0.0
    price, _, condition, _, _ = _reference(forward, strike, 1.0, vol, discount, is_call)
    assert abs(price / target - 1.0) <= 8.0 * EPS * (1.0 + 1.0 / condition)


# --- (d) bounds and reason codes ------------------------------------------------------------------------

def _solve(prices, forwards, strikes, expiries=1.0, discount_factors=1.0, is_call=True):
    """The jitted solver with every argument given as a float64 / bool array, so that all scalar cases share
    one compilation (eager calls re-trace the solver's while loop every time, ~1 s each)."""
    *numbers, calls = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (
        prices, forwards, strikes, expiries, discount_factors)), np.asarray(is_call, dtype=bool))
    vols, reasons = _implied_vol(prices=numbers[0], forwards=numbers[1], strikes=numbers[2], expiries=numbers[3],
                                 discount_factors=numbers[4], is_call=calls)
    return np.asarray(vols), np.asarray(reasons)


def test_reason_codes_are_documented():
    assert set(REASONS) == {OK, NOT_FINITE, BELOW_INTRINSIC, ABOVE_MAXIMUM, BAD_INPUT}
    assert sh.IMPLIED_VOL_REASONS is REASONS
    assert all(isinstance(text, str) and text for text in REASONS.values())


@pytest.mark.parametrize("case, kwargs, reason", [
    ("call below intrinsic", dict(prices=9.0, forwards=100.0, strikes=90.0, discount_factors=0.95), BELOW_INTRINSIC),
    ("put below intrinsic", dict(prices=9.0, forwards=90.0, strikes=100.0, discount_factors=0.95, is_call=False),
     BELOW_INTRINSIC),
    ("negative OTM call", dict(prices=-1e-3, forwards=100.0, strikes=120.0), BELOW_INTRINSIC),
    ("negative OTM put", dict(prices=-1e-300, forwards=100.0, strikes=80.0, is_call=False), BELOW_INTRINSIC),
    ("zero ITM call", dict(prices=0.0, forwards=100.0, strikes=90.0), BELOW_INTRINSIC),
    ("call at DF F", dict(prices=95.0, forwards=100.0, strikes=90.0, discount_factors=0.95), ABOVE_MAXIMUM),
    ("call above DF F", dict(prices=95.5, forwards=100.0, strikes=90.0, discount_factors=0.95), ABOVE_MAXIMUM),
    ("put at DF K", dict(prices=85.5, forwards=100.0, strikes=90.0, discount_factors=0.95, is_call=False),
     ABOVE_MAXIMUM),
    ("put above DF K", dict(prices=100.0, forwards=100.0, strikes=90.0, discount_factors=0.95, is_call=False),
     ABOVE_MAXIMUM),
    ("NaN price", dict(prices=np.nan, forwards=100.0, strikes=100.0), NOT_FINITE),
    ("inf price", dict(prices=np.inf, forwards=100.0, strikes=100.0), NOT_FINITE),
    ("NaN forward", dict(prices=1.0, forwards=np.nan, strikes=100.0), NOT_FINITE),
    ("inf expiry", dict(prices=1.0, forwards=100.0, strikes=100.0, expiries=np.inf), NOT_FINITE),
    ("zero strike", dict(prices=1.0, forwards=100.0, strikes=0.0), BAD_INPUT),
    ("negative strike", dict(prices=1.0, forwards=100.0, strikes=-5.0), BAD_INPUT),
    ("zero expiry", dict(prices=1.0, forwards=100.0, strikes=100.0, expiries=0.0), BAD_INPUT),
    ("negative expiry", dict(prices=1.0, forwards=100.0, strikes=100.0, expiries=-1.0), BAD_INPUT),
    ("zero forward", dict(prices=1.0, forwards=0.0, strikes=100.0), BAD_INPUT),
    ("zero discount factor", dict(prices=1.0, forwards=100.0, strikes=100.0, discount_factors=0.0), BAD_INPUT),
])
def test_invalid_prices_give_nan_and_reason(case, kwargs, reason):
    kwargs = dict(dict(expiries=1.0), **kwargs)
    vols, reasons = _solve(**kwargs)
    assert np.isnan(vols), case
    assert int(reasons) == reason, (case, int(reasons), REASONS[int(reasons)])


def test_reasons_in_one_batch():
    prices = np.array([5.0, 9.0, 96.0, np.nan, 1.0, 1.0])
    strikes = np.array([100.0, 90.0, 90.0, 100.0, -1.0, 100.0])
    expiries = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    vols, reasons = _solve(prices=prices, forwards=100.0, strikes=strikes, expiries=expiries, discount_factors=0.95)
    assert list(reasons) == [OK, BELOW_INTRINSIC, ABOVE_MAXIMUM, NOT_FINITE, BAD_INPUT, BAD_INPUT]
    assert np.isfinite(vols[0]) and np.all(np.isnan(vols[1:]))
    assert reasons.dtype.kind == "i"


@pytest.mark.parametrize("forward, strike, is_call", [(100.0, 120.0, True), (100.0, 80.0, False), (100.0, 100.0, True),
                                                      (100.0, 100.0, False)])
def test_zero_price_at_or_out_of_the_money_is_vol_zero(forward, strike, is_call):
    """Price exactly at intrinsic value (here 0: OTM or ATM) -> vol 0, reason OK."""
    vols, reasons = _solve(prices=0.0, forwards=forward, strikes=strike, expiries=1.0, discount_factors=0.9,
                           is_call=is_call)
    assert float(vols) == 0.0 and int(reasons) == OK


@pytest.mark.parametrize("forward, strike, discount, is_call", [
    (100.0, 90.0, 1.0, True), (100.0, 90.0, 0.95, True), (90.0, 100.0, 1.0, False), (123.4, 117.9, 0.987, True),
    (50.0, 140.0, 0.9, False)])
def test_price_exactly_at_positive_intrinsic_is_vol_zero(forward, strike, discount, is_call):
    """Documented: a price exactly at intrinsic value returns 0 (with reason OK), also in the money.
    (On commit 399385b this failed: the intrinsic value was recomputed in normalised form and its rounding
    gave NaN/BELOW_INTRINSIC, e.g. F=100, K=90, DF=1, price=10, or a spurious vol up to ~0.15.)"""
    intrinsic = discount * max((forward - strike) if is_call else (strike - forward), 0.0)
    vols, reasons = _solve(prices=intrinsic, forwards=forward, strikes=strike, expiries=1.0,
                           discount_factors=discount, is_call=is_call)
    assert int(reasons) == OK and float(vols) == 0.0


def test_random_prices_at_intrinsic_are_vol_zero():
    rng = np.random.default_rng(5)
    forwards, strikes = rng.uniform(50.0, 150.0, 400), rng.uniform(50.0, 150.0, 400)
    discounts = rng.uniform(0.8, 1.0, 400)
    calls = rng.random(400) < 0.5
    intrinsic = discounts * np.maximum(np.where(calls, forwards - strikes, strikes - forwards), 0.0)
    vols, reasons = _implied_vol(prices=intrinsic, forwards=forwards, strikes=strikes, expiries=np.ones(400),
                                 discount_factors=discounts, is_call=calls)
    assert np.all(np.asarray(reasons) == OK)
    assert np.all(np.asarray(vols) == 0.0)


# --- (e) jit and batched shapes -------------------------------------------------------------------------

def test_jit_and_two_dimensional_broadcasting():
    forwards = np.array([90.0, 100.0, 110.0])[:, None]             # (3, 1)
    strikes = np.array([80.0, 95.0, 105.0, 130.0])[None, :]       # (1, 4)
    discounts = np.array([0.99, 0.97, 0.95])[:, None]             # (3, 1)
    expiries = 0.75
    true_vols = np.linspace(0.1, 0.6, 12).reshape(3, 4)
    calls = np.broadcast_to(strikes > forwards, (3, 4))
    prices = np.asarray(normalised_black_price(
        log_moneyness=np.log(forwards / strikes), stdev=true_vols * np.sqrt(expiries), is_call=calls)
    ) * discounts * np.sqrt(forwards * strikes)
    eager_vols, eager_reasons = sh.implied_volatility(prices=prices, forwards=forwards, strikes=strikes,
                                                      expiries=expiries, discount_factors=discounts, is_call=calls)
    jit_vols, jit_reasons = _implied_vol(prices=prices, forwards=forwards, strikes=strikes, expiries=expiries,
                                         discount_factors=discounts, is_call=calls)
    for vols, reasons in ((eager_vols, eager_reasons), (jit_vols, jit_reasons)):
        assert vols.shape == reasons.shape == (3, 4)
        assert vols.dtype == np.float64
        assert np.all(np.asarray(reasons) == OK)
        np.testing.assert_allclose(np.asarray(vols), true_vols, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(jit_vols), np.asarray(eager_vols), rtol=1e-14)
    # Element by element (scalar solves) gives the same numbers: elements do not interact in the batch.
    for i, j in np.ndindex(3, 4):
        alone, _ = _solve(prices=prices[i, j], forwards=forwards[i, 0], strikes=strikes[0, j], expiries=expiries,
                          discount_factors=discounts[i, 0], is_call=calls[i, j])
        np.testing.assert_allclose(float(alone), float(np.asarray(jit_vols)[i, j]), rtol=1e-14)


def test_jit_does_not_recompile_for_same_shapes():
    first = _solve(prices=5.0, forwards=100.0, strikes=100.0)
    compiled = _implied_vol._cache_size()
    second = _solve(prices=3.0, forwards=100.0, strikes=110.0, expiries=0.5, discount_factors=0.98, is_call=True)
    third = _solve(prices=2.0, forwards=100.0, strikes=90.0, is_call=False)
    assert _implied_vol._cache_size() == compiled, "same shapes and dtypes must reuse the compiled solver"
    for vols, reasons in (first, second, third):
        assert np.isfinite(vols) and reasons == OK


def test_a_hard_element_does_not_change_easy_ones():
    """Convergence is per element: adding a far-wing element (many iterations) to a batch leaves the results
    of the others unchanged."""
    # Shape (6,) like test_reasons_in_one_batch: no extra compilation.
    forwards = np.full(6, 100.0)
    easy = dict(prices=np.array([8.0, 3.0, 8.0, 3.0, 8.0, 3.0]), strikes=np.array([100.0, 110.0] * 3))
    hard = dict(prices=np.array([8.0, 3.0, 1e-280, 1e-300, 8.0, 3.0]),
                strikes=np.array([100.0, 110.0, 100.0 * np.exp(4.0), 100.0 * np.exp(-5.0), 100.0, 110.0]))
    alone, _ = _solve(forwards=forwards, **easy)
    together, reasons = _solve(forwards=forwards, is_call=np.array([True, True, True, False, True, True]), **hard)
    assert np.all(reasons == OK) and np.all(together > 0.0)
    np.testing.assert_array_equal(together[[0, 1, 4, 5]], alone[[0, 1, 4, 5]])


def test_is_call_broadcasts_like_the_other_arguments():
    # Put-call parity: C - P = DF (F - K) = 0 at the money, so the same price inverts to the same vol.
    vols, reasons = _implied_vol(prices=np.float64(8.0), forwards=np.float64(100.0), strikes=np.float64(100.0),
                                 expiries=np.float64(1.0), discount_factors=np.float64(1.0),
                                 is_call=np.array([True, False]))
    assert np.asarray(vols).shape == (2,) and np.all(np.asarray(reasons) == OK)
    assert float(vols[0]) == float(vols[1])

"""Black-Scholes-Merton kernels against QuantLib's ``AnalyticEuropeanEngine``.

Reference: QuantLib (``BlackScholesMertonProcess`` with flat continuously-compounded rate and dividend
curves and a flat Black vol, all on Actual/365 Fixed).  Maturity dates are whole days after the
evaluation date, so QuantLib's year fraction is exactly ``days / 365.0`` -- the same double we pass to
shoals -- and nothing is lost to date rounding (asserted in the fixture).

Grid: S = 100; K/S from 0.5 to 2 (deep ITM to deep OTM for both calls and puts); T from 3 days to
10 years; sigma from 0.01 to 1.0; (r, q) with zero, positive and negative rates and q > r; calls and
puts.  Everything is evaluated once per module (QuantLib ~0.2 s, shoals one vectorised call).

QuantLib conventions (checked in ``test_quantlib_conventions`` from QuantLib's own prices, so the
comparison is like for like): ``theta()`` is dV/dt per year of calendar time (= -dV/dT, and
``thetaPerDay() = theta() / 365``), ``vega()`` is dV/dsigma per 1.00 of vol, ``rho()`` is dV/dr per 1.00
of rate (the dividend-curve sensitivity is the separate ``dividendRho()``) -- the units of shoals.

QuantLib has no analytic vanna, volga or charm; their reference values are central finite differences,
Richardson-extrapolated (4th order), of QuantLib's own analytic delta (vanna = d delta / d sigma, charm)
and vega (volga = d vega / d sigma).  Charm needs a derivative in T, and QuantLib dates are whole days;
the BSM price and delta depend on T only through sigma^2 T, r T and q T, so delta at T (1 + e) is
QuantLib's delta at the same dates with sigma sqrt(1 + e), r (1 + e), q (1 + e).

Tolerances (|shoals - QuantLib| <= atol + rtol |QuantLib|), all at the S = 100 scale:

* price, delta, gamma, vega, rho: rtol 1e-12, atol 1e-12.  Both sides evaluate the same closed forms
  in double precision; observed maximum absolute differences: price 6e-14, delta 9e-14, gamma 3e-13,
  vega 1e-12 (on vegas up to ~1e3), rho 1.5e-12.  Where they differ most, QuantLib is the less
  accurate side: its far-OTM prices come from the cancelling form with absolute error ~1e-14 (it even
  returns -1.1e-14 for a put worth 3.8e-16), and its rho of a deep OTM 10y call is off by 8e-8 relative
  (5e-13 absolute) against K T DF N(d2) evaluated with scipy, which shoals matches to 1e-14.
* theta: rtol 1e-12, atol 1e-11.  QuantLib computes theta as
  -(ln(DF) V + ln(F/S) S delta + sigma^2 T S^2 gamma / 2) / T, which loses ~eps S / T in absolute terms
  (~3e-12 at T = 3 days; observed max 2.9e-12); shoals uses the direct formula.
* vanna, volga, charm (vs finite differences): rtol 1e-7, atol 5e-8.  With relative step 1e-3 the
  Richardson truncation error is ~1e-12 relative; what is left is QuantLib's ~1e-14..1e-13 rounding in
  delta/vega divided by the step (observed max absolute errors: vanna 1.2e-8, charm 1.9e-8, both at
  T = 3 days and sigma = 1%; volga 1.4e-7 on volgas of ~800, i.e. 2e-10 relative).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64 before any array is created)
from shoals.kernels.black_scholes import (black_scholes_greeks, black_scholes_greeks_autodiff,
                                          black_scholes_price)

ql = pytest.importorskip("QuantLib")

SPOT = 100.0
MONEYNESS = (0.5, 0.7, 0.9, 0.97, 1.0, 1.03, 1.1, 1.5, 2.0)          # K / S
DAYS = (3, 30, 182, 365, 1826, 3650)                                 # T = days / 365
VOLS = (0.01, 0.1, 0.3, 1.0)
RATES_AND_YIELDS = ((0.0, 0.0), (0.05, 0.02), (-0.01, 0.0), (-0.005, 0.01), (0.02, 0.06))
FD_STEP = 1e-3  # relative bump for the finite-difference references

# (rtol, atol) for |shoals - reference| <= atol + rtol |reference|; see the module docstring.
TOLERANCES = {
    "price": (1e-12, 1e-12),
    "delta": (1e-12, 1e-12),
    "gamma": (1e-12, 1e-12),
    "vega": (1e-12, 1e-12),
    "theta": (1e-12, 1e-11),
    "rho": (1e-12, 1e-12),
    "vanna": (1e-7, 5e-8),
    "volga": (1e-7, 5e-8),
    "charm": (1e-7, 5e-8),
}
ANALYTIC = ("price", "delta", "gamma", "vega", "theta", "rho")
FINITE_DIFFERENCE = ("vanna", "volga", "charm")


def _richardson(f, h):
    """4th-order central difference f'(0) from f(+-h), f(+-h/2)."""
    coarse = (f(h) - f(-h)) / (2.0 * h)
    fine = (f(0.5 * h) - f(-0.5 * h)) / h
    return (4.0 * fine - coarse) / 3.0


class _QuantLibMarket:
    """Flat BSM market on quotes, so one option object can be revalued under bumped parameters."""

    def __init__(self, today):
        self.today = today
        self.day_counter = ql.Actual365Fixed()
        self.spot = ql.SimpleQuote(SPOT)
        self.vol = ql.SimpleQuote(0.2)
        self.rate = ql.SimpleQuote(0.0)
        self.dividend = ql.SimpleQuote(0.0)
        rates = ql.YieldTermStructureHandle(
            ql.FlatForward(today, ql.QuoteHandle(self.rate), self.day_counter, ql.Continuous))
        dividends = ql.YieldTermStructureHandle(
            ql.FlatForward(today, ql.QuoteHandle(self.dividend), self.day_counter, ql.Continuous))
        vols = ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(self.vol), self.day_counter))
        process = ql.BlackScholesMertonProcess(ql.QuoteHandle(self.spot), dividends, rates, vols)
        self.engine = ql.AnalyticEuropeanEngine(process)

    def option(self, is_call, strike, days):
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, strike)
        option = ql.EuropeanOption(payoff, ql.EuropeanExercise(self.today + days))
        option.setPricingEngine(self.engine)
        return option

    def value(self, option, what, vol, rate, dividend):
        self.vol.setValue(vol)
        self.rate.setValue(rate)
        self.dividend.setValue(dividend)
        return getattr(option, what)()


@pytest.fixture(scope="module")
def grid():
    """Inputs, QuantLib values and finite-difference references on the whole grid, as arrays."""
    settings = ql.Settings.instance()
    saved_date = settings.evaluationDate
    today = ql.Date(15, 1, 2024)
    settings.evaluationDate = today
    try:
        market = _QuantLibMarket(today)
        for days in DAYS:
            assert market.day_counter.yearFraction(today, today + days) == days / 365.0
        rows = []
        for m, days, vol, (r, q), is_call in itertools.product(
                MONEYNESS, DAYS, VOLS, RATES_AND_YIELDS, (True, False)):
            option = market.option(is_call, SPOT * m, days)
            expiry = days / 365.0
            value = lambda what, v=vol, rr=r, qq=q: market.value(option, what, v, rr, qq)  # noqa: E731
            row = {"spot": SPOT, "strike": SPOT * m, "expiry": expiry, "vol": vol, "rate": r,
                   "dividend": q, "is_call": is_call,
                   "price": value("NPV"), "delta": value("delta"), "gamma": value("gamma"),
                   "vega": value("vega"), "theta": value("theta"), "rho": value("rho"),
                   "theta_per_day": value("thetaPerDay")}
            row["vanna"] = _richardson(lambda e: value("delta", v=vol * (1 + e)), FD_STEP) / vol
            row["volga"] = _richardson(lambda e: value("vega", v=vol * (1 + e)), FD_STEP) / vol
            # delta at T (1 + e): same dates, sigma sqrt(1 + e), r (1 + e), q (1 + e)
            row["charm"] = -_richardson(
                lambda e: value("delta", v=vol * np.sqrt(1 + e), rr=r * (1 + e), qq=q * (1 + e)),
                FD_STEP) / expiry
            # finite differences of QuantLib prices, for the conventions test
            row["fd_vega"] = _richardson(lambda e: value("NPV", v=vol * (1 + e)), FD_STEP) / vol
            row["fd_rho"] = _richardson(lambda e: value("NPV", rr=r + e), 1e-4)
            row["fd_theta"] = -_richardson(
                lambda e: value("NPV", v=vol * np.sqrt(1 + e), rr=r * (1 + e), qq=q * (1 + e)),
                FD_STEP) / expiry
            rows.append(row)
    finally:
        settings.evaluationDate = saved_date
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _inputs(grid):
    return dict(spots=grid["spot"], strikes=grid["strike"], expiries=grid["expiry"],
                volatilities=grid["vol"], rates=grid["rate"], dividend_yields=grid["dividend"],
                is_call=grid["is_call"])


@pytest.fixture(scope="module")
def shoals_greeks(grid):
    return black_scholes_greeks(**_inputs(grid))


def _assert_close(name, got, grid, rtol, atol, reference=None):
    expected = grid[name] if reference is None else reference
    got = np.asarray(got)
    assert got.shape == expected.shape
    assert np.all(np.isfinite(got)), f"{name}: non-finite values"
    error = np.abs(got - expected)
    excess = error - (atol + rtol * np.abs(expected))
    worst = int(np.argmax(excess))
    point = {key: grid[key][worst] for key in
             ("spot", "strike", "expiry", "vol", "rate", "dividend", "is_call")}
    assert excess[worst] <= 0.0, (
        f"{name}: |error| {error[worst]:.3e} > atol {atol:g} + rtol {rtol:g} * |ref| at {point}: "
        f"shoals {got[worst]!r}, reference {expected[worst]!r}")


def test_grid_covers_the_edge_cases(grid):
    strikes_over_spot = grid["strike"] / grid["spot"]
    assert strikes_over_spot.min() <= 0.5 and strikes_over_spot.max() >= 2.0
    assert grid["expiry"].min() < 0.01 and grid["expiry"].max() >= 10.0
    assert grid["vol"].min() <= 0.01 and grid["vol"].max() >= 1.0
    assert (grid["rate"] < 0.0).any() and (grid["dividend"] > grid["rate"]).any()
    assert grid["is_call"].any() and not grid["is_call"].all()
    # deep out of the money, tiny but still representable prices are part of the comparison
    assert (grid["price"] < 1e-100).any() and (grid["price"] > 50.0).any()


def test_quantlib_conventions(grid):
    """QuantLib's theta/vega/rho are dV/dt per year, dV/dsigma and dV/dr per 1.00 (from its own prices)."""
    np.testing.assert_allclose(grid["theta_per_day"] * 365.0, grid["theta"], rtol=1e-14, atol=1e-14)
    # finite differences are good to ~1e-8 here; a unit mistake (per 1%, per day, sign) is >= 1e-2 off
    for name in ("theta", "vega", "rho"):
        _assert_close(name, grid[name], grid, rtol=1e-6, atol=1e-6, reference=grid[f"fd_{name}"])


@pytest.mark.parametrize("name", ANALYTIC)
def test_analytic_greeks_match_quantlib(name, grid, shoals_greeks):
    rtol, atol = TOLERANCES[name]
    _assert_close(name, getattr(shoals_greeks, name), grid, rtol, atol)


@pytest.mark.parametrize("name", FINITE_DIFFERENCE)
def test_second_order_greeks_match_quantlib_finite_differences(name, grid, shoals_greeks):
    rtol, atol = TOLERANCES[name]
    _assert_close(name, getattr(shoals_greeks, name), grid, rtol, atol)


def test_price_kernel_matches_quantlib(grid):
    rtol, atol = TOLERANCES["price"]
    _assert_close("price", black_scholes_price(**_inputs(grid)), grid, rtol, atol)


def test_autodiff_greeks_match_quantlib(grid):
    """The AD Greeks against the same references; AD of the price kernel adds a few ulps of rounding."""
    greeks = black_scholes_greeks_autodiff(**_inputs(grid))
    for name in ANALYTIC + FINITE_DIFFERENCE:
        rtol, atol = TOLERANCES[name]
        _assert_close(name, getattr(greeks, name), grid, max(rtol, 1e-11), max(atol, 1e-11))

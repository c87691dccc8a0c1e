"""Finite-difference Asian, lookback and cliquet prices vs QuantLib under flat vol (references computed here).

Tolerance: 1e-3 absolute or 0.2% relative at the default FiniteDifference grid (plus 3 standard errors
where the reference is QuantLib's Monte Carlo), over maturities 0.1-5y, vols 0.1-0.6, dividend yields 0
and 0.02.  All cases of an instrument type are priced in one batched call.

Conventions mapped: QuantLib dates are Actual/365F days from 2025-01-01 with maturities chosen so that
every fixing/reset falls on a whole day; QuantLib's ``DiscreteAveragingAsianOption`` fixings are our
T/n, ..., T; ``CliquetOption`` reset dates are today, T/n, ..., (n-1)T/n with exercise at T.
``AnalyticPerformanceEngine`` values sum_i P(0, t_i) E[max(w(R_i - m), 0)] (our ``pay_per_period``
cliquet, floor 0, no cap); ``AnalyticCliquetEngine`` pays S_{t_{i-1}} max(w(R_i - m), 0) at t_i, which
equals S_0 times ours when r = q; local floors/caps and payment at maturity map to sums of single-period
performance options (c = F + max(w(R - m) - F, 0) - max(w(R - m) - C, 0)).  QuantLib's
``AnalyticDiscreteGeometricAverageStrikeAsianEngine`` does not reproduce the exact lognormal price of
max(w(S_T - G), 0) with G over T/n..T (0.3% off at 12 fixings, exact at 4), so floating geometric Asians
are checked against that exact formula, written out below.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.stats import norm
from support import quantlib_flat_process

from shoals.instruments import Asian, Cliquet, Lookback
from shoals.market import FlatMarket
from shoals.methods.finite_difference import FiniteDifference

ql = pytest.importorskip("QuantLib")

TODAY = ql.Date(1, 1, 2025)
DAYS = (36, 180, 360, 720, 1800)          # 0.1 to 4.9 years, divisible by 4 and 12
VOLS = (0.1, 0.25, 0.4, 0.6)
DIVIDENDS = (0.0, 0.02)
SPOT = 100.0


def _tolerance(expected, extra=0.0):
    return max(1e-3, 2e-3 * abs(expected)) + extra


def _process(rate, dividend, vol, spot=SPOT):
    return quantlib_flat_process(TODAY, spot=spot, rate=rate, dividend=dividend, vol=vol)


def _spread(count, seed, **choices):
    """``count`` cases drawn from the grids in ``choices`` (deterministic), cycling maturities, vols and
    dividends so that every value of each appears."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        case = {"days": DAYS[i % len(DAYS)], "vol": VOLS[(i // 2) % len(VOLS)],
                "dividend": DIVIDENDS[i % 2], "rate": float(rng.choice([0.01, 0.03, 0.05]))}
        case.update({name: values[rng.integers(len(values))] for name, values in choices.items()})
        cases.append(case)
    return cases


def _fd_prices(contract, cases):
    market = FlatMarket(spot=SPOT, rate=np.array([c["rate"] for c in cases]),
                        vol=np.array([c["vol"] for c in cases]), dividend=np.array([c["dividend"] for c in cases]))
    return FiniteDifference(vega=False).price(contract, market).value


# --------------------------------------------------------------------------------------------------- Asian

ASIAN_GEOMETRIC = _spread(16, 1, strike=(80.0, 90.0, 100.0, 110.0, 120.0), fixings=(4, 12), is_call=(True, False))
ASIAN_ARITHMETIC = _spread(10, 2, strike=(85.0, 100.0, 115.0), fixings=(4, 12), is_call=(True, False))
ASIAN_FLOATING = _spread(6, 3, fixings=(4, 12), is_call=(True, False))
ASIAN_CASES = ([dict(c, geometric=True, floating=False) for c in ASIAN_GEOMETRIC]
               + [dict(c, geometric=False, floating=False) for c in ASIAN_ARITHMETIC]
               + [dict(c, geometric=True, floating=True, strike=np.nan) for c in ASIAN_FLOATING]
               + [dict(c, geometric=False, floating=True, strike=np.nan) for c in ASIAN_FLOATING[:3]])


@functools.cache
def _asian_prices():
    contract = Asian(maturity=np.array([c["days"] / 365.0 for c in ASIAN_CASES]),
                     fixings=np.array([c["fixings"] for c in ASIAN_CASES]),
                     strike=np.array([c["strike"] for c in ASIAN_CASES]),
                     is_call=np.array([c["is_call"] for c in ASIAN_CASES]),
                     geometric=np.array([c["geometric"] for c in ASIAN_CASES]),
                     floating=np.array([c["floating"] for c in ASIAN_CASES]))
    return _fd_prices(contract, ASIAN_CASES)


def _ql_asian(case, engine):
    n, days = case["fixings"], case["days"]
    fixings = [TODAY + days * k // n for k in range(1, n + 1)]
    kind = ql.Option.Call if case["is_call"] else ql.Option.Put
    average = ql.Average.Geometric if case["geometric"] else ql.Average.Arithmetic
    option = ql.DiscreteAveragingAsianOption(average, 1.0 if case["geometric"] else 0.0, 0, fixings,
                                             ql.PlainVanillaPayoff(kind, 0.0 if case["floating"] else case["strike"]),
                                             ql.EuropeanExercise(fixings[-1]))
    option.setPricingEngine(engine(_process(case["rate"], case["dividend"], case["vol"])))
    return option


def _label(cases):
    return [f"T{c['days']}d-vol{c['vol']}-q{c['dividend']}-" + "-".join(
        f"{k}{v}" for k, v in c.items() if k not in ("days", "vol", "dividend")) for c in cases]


@pytest.mark.parametrize("index", range(len(ASIAN_GEOMETRIC)), ids=_label(ASIAN_GEOMETRIC))
def test_geometric_asian_matches_quantlib_analytic(index):
    case = ASIAN_CASES[index]
    expected = _ql_asian(case, ql.AnalyticDiscreteGeometricAveragePriceAsianEngine).NPV()
    assert abs(_asian_prices()[index] - expected) <= _tolerance(expected)


@pytest.mark.parametrize("index", range(len(ASIAN_ARITHMETIC)), ids=_label(ASIAN_ARITHMETIC))
def test_arithmetic_asian_matches_quantlib_monte_carlo(index):
    index += len(ASIAN_GEOMETRIC)
    case = ASIAN_CASES[index]
    option = _ql_asian(case, lambda process: ql.MCDiscreteArithmeticAPEngine(
        process, "pseudorandom", requiredSamples=50_000, seed=42, controlVariate=True, antitheticVariate=True))
    expected, error = option.NPV(), option.errorEstimate()
    assert error < 0.5 * _tolerance(expected)
    assert abs(_asian_prices()[index] - expected) <= _tolerance(expected, 3.0 * error)


def _geometric_average_strike(case):
    """Exact price of max(w(S_T - G), 0), G the geometric mean of S at t_k = kT/n, k = 1..n: ln S_T and
    ln G are jointly normal, so it is Margrabe's exchange option on two lognormals."""
    n, maturity = case["fixings"], case["days"] / 365.0
    rate, dividend, vol = case["rate"], case["dividend"], case["vol"]
    times = maturity * np.arange(1, n + 1) / n
    drift = rate - dividend - 0.5 * vol ** 2
    var_s, var_g = vol ** 2 * maturity, vol ** 2 * np.minimum.outer(times, times).mean()
    cov = vol ** 2 * np.minimum(maturity, times).mean()
    mean_s = SPOT * np.exp(drift * maturity + 0.5 * var_s)
    mean_g = SPOT * np.exp(drift * times.mean() + 0.5 * var_g)
    sd = np.sqrt(var_s + var_g - 2.0 * cov)
    w = 1.0 if case["is_call"] else -1.0
    d1 = (np.log(mean_s / mean_g) + 0.5 * sd ** 2) / sd
    return np.exp(-rate * maturity) * w * (mean_s * norm.cdf(w * d1) - mean_g * norm.cdf(w * (d1 - sd)))


@pytest.mark.parametrize("index", range(len(ASIAN_FLOATING)), ids=_label(ASIAN_FLOATING))
def test_floating_geometric_asian_matches_exact_lognormal_price(index):
    index += len(ASIAN_GEOMETRIC) + len(ASIAN_ARITHMETIC)
    expected = _geometric_average_strike(ASIAN_CASES[index])
    assert abs(_asian_prices()[index] - expected) <= _tolerance(expected)


def test_geometric_average_strike_formula_matches_quantlib_at_four_fixings():
    case = dict(ASIAN_FLOATING[0], fixings=4, geometric=True, floating=True, strike=np.nan)
    expected = _ql_asian(case, ql.AnalyticDiscreteGeometricAverageStrikeAsianEngine).NPV()
    assert _geometric_average_strike(case) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3), ids=_label(ASIAN_FLOATING[:3]))
def test_floating_arithmetic_asian_matches_quantlib_monte_carlo(index):
    index += len(ASIAN_GEOMETRIC) + len(ASIAN_ARITHMETIC) + len(ASIAN_FLOATING)
    option = _ql_asian(ASIAN_CASES[index], lambda process: ql.MCDiscreteArithmeticASEngine(
        process, "pseudorandom", requiredSamples=400_000, seed=42, antitheticVariate=True))
    expected, error = option.NPV(), option.errorEstimate()
    assert abs(_asian_prices()[index] - expected) <= _tolerance(expected, 3.0 * error)


# ------------------------------------------------------------------------------------------------ lookback

LOOKBACK_CASES = (
    [dict(c, floating=True, strike=np.nan) for c in _spread(10, 4, is_call=(True, False), extreme=(None, 0.9, 1.12))]
    + [dict(c, floating=False) for c in _spread(12, 5, is_call=(True, False), strike=(85.0, 100.0, 115.0),
                                                 extreme=(None, 0.93, 1.08))])
for _case in LOOKBACK_CASES:      # a running min is <= spot, a running max >= spot
    if _case["extreme"] is not None:
        _is_max = _case["floating"] != _case["is_call"]
        _case["extreme"] = SPOT * (max(_case["extreme"], 1 / _case["extreme"]) if _is_max
                                   else min(_case["extreme"], 1 / _case["extreme"]))


@functools.cache
def _lookback_prices():
    contract = Lookback(maturity=np.array([c["days"] / 365.0 for c in LOOKBACK_CASES]),
                        strike=np.array([c["strike"] for c in LOOKBACK_CASES]),
                        is_call=np.array([c["is_call"] for c in LOOKBACK_CASES]),
                        floating=np.array([c["floating"] for c in LOOKBACK_CASES]),
                        running_extreme=np.array([np.nan if c["extreme"] is None else c["extreme"]
                                                  for c in LOOKBACK_CASES]))
    return _fd_prices(contract, LOOKBACK_CASES)


@pytest.mark.parametrize("index", range(len(LOOKBACK_CASES)), ids=_label(LOOKBACK_CASES))
def test_lookback_matches_quantlib_analytic(index):
    case = LOOKBACK_CASES[index]
    process = _process(case["rate"], case["dividend"], case["vol"])
    exercise = ql.EuropeanExercise(TODAY + case["days"])
    kind = ql.Option.Call if case["is_call"] else ql.Option.Put
    extreme = SPOT if case["extreme"] is None else case["extreme"]
    if case["floating"]:
        option = ql.ContinuousFloatingLookbackOption(extreme, ql.FloatingTypePayoff(kind), exercise)
        option.setPricingEngine(ql.AnalyticContinuousFloatingLookbackEngine(process))
    else:
        option = ql.ContinuousFixedLookbackOption(extreme, ql.PlainVanillaPayoff(kind, case["strike"]), exercise)
        option.setPricingEngine(ql.AnalyticContinuousFixedLookbackEngine(process))
    expected = option.NPV()
    assert abs(_lookback_prices()[index] - expected) <= _tolerance(expected)


# ------------------------------------------------------------------------------------------------- cliquet

CLIQUET_CASES = (
    [dict(c, floor=0.0, cap=np.inf, per_period=True)
     for c in _spread(10, 6, resets=(4, 12), is_call=(True, False), moneyness=(0.95, 1.0, 1.05))]
    + [dict(c, per_period=bool(i % 2)) for i, c in enumerate(_spread(
        10, 7, resets=(4, 12), is_call=(True, False), moneyness=(1.0, 1.02), floor=(-0.02, 0.0, 0.01),
        cap=(0.05, 0.1, np.inf)))])
CLIQUET_SAME_RATES = [dict(c, rate=c["dividend"], floor=0.0, cap=np.inf, per_period=True)
                      for c in _spread(4, 8, resets=(4, 12), is_call=(True, False), moneyness=(0.98, 1.0))]
CLIQUET_ALL = CLIQUET_CASES + CLIQUET_SAME_RATES


@functools.cache
def _cliquet_prices():
    contract = Cliquet(maturity=np.array([c["days"] / 365.0 for c in CLIQUET_ALL]),
                       resets=np.array([c["resets"] for c in CLIQUET_ALL]),
                       is_call=np.array([c["is_call"] for c in CLIQUET_ALL]),
                       moneyness=np.array([c["moneyness"] for c in CLIQUET_ALL]),
                       local_floor=np.array([c["floor"] for c in CLIQUET_ALL]),
                       local_cap=np.array([c["cap"] for c in CLIQUET_ALL]),
                       pay_per_period=np.array([c["per_period"] for c in CLIQUET_ALL]))
    return _fd_prices(contract, CLIQUET_ALL)


def _ql_cliquet(case, moneyness, resets, exercise_date, engine):
    kind = ql.Option.Call if case["is_call"] else ql.Option.Put
    option = ql.CliquetOption(ql.PercentageStrikePayoff(kind, moneyness), ql.EuropeanExercise(exercise_date), resets)
    option.setPricingEngine(engine(_process(case["rate"], case["dividend"], case["vol"])))
    return option.NPV()


def _cliquet_reference(case):
    """sum_i pi_i E[c_i] P(0, t_i) with c = F + max(w(R - m) - F, 0) - max(w(R - m) - C, 0), each
    max(...) a single-period AnalyticPerformanceEngine value at moneyness m + wF (m + wC)."""
    n, days, w = case["resets"], case["days"], 1.0 if case["is_call"] else -1.0
    dates = [TODAY + days * k // n for k in range(n + 1)]
    day_count = ql.Actual365Fixed()
    total = 0.0
    for i in range(1, n + 1):
        discount = np.exp(-case["rate"] * day_count.yearFraction(TODAY, dates[i]))
        period = case["floor"] * discount + _ql_cliquet(case, case["moneyness"] + w * case["floor"], [dates[i - 1]],
                                                        dates[i], ql.AnalyticPerformanceEngine)
        if np.isfinite(case["cap"]):
            period -= _ql_cliquet(case, case["moneyness"] + w * case["cap"], [dates[i - 1]], dates[i],
                                  ql.AnalyticPerformanceEngine)
        pay = 1.0 if case["per_period"] else np.exp(-case["rate"] * days / 365.0) / discount
        total += pay * period
    return total


@pytest.mark.parametrize("index", range(10), ids=_label(CLIQUET_CASES[:10]))
def test_cliquet_per_period_matches_quantlib_performance_engine(index):
    case = CLIQUET_CASES[index]
    n, days = case["resets"], case["days"]
    expected = _ql_cliquet(case, case["moneyness"], [TODAY + days * k // n for k in range(n)], TODAY + days,
                           ql.AnalyticPerformanceEngine)
    assert expected == pytest.approx(_cliquet_reference(case), rel=1e-10)
    assert abs(_cliquet_prices()[index] - expected) <= _tolerance(expected)


@pytest.mark.parametrize("index", range(10, len(CLIQUET_CASES)), ids=_label(CLIQUET_CASES[10:]))
def test_cliquet_with_local_floor_cap_matches_quantlib_performance_decomposition(index):
    expected = _cliquet_reference(CLIQUET_CASES[index])
    assert abs(_cliquet_prices()[index] - expected) <= _tolerance(expected)


@pytest.mark.parametrize("index", range(len(CLIQUET_SAME_RATES)), ids=_label(CLIQUET_SAME_RATES))
def test_cliquet_matches_quantlib_cliquet_engine_when_rate_equals_dividend(index):
    case = CLIQUET_SAME_RATES[index]
    n, days = case["resets"], case["days"]
    expected = _ql_cliquet(case, case["moneyness"], [TODAY + days * k // n for k in range(n)], TODAY + days,
                           ql.AnalyticCliquetEngine) / SPOT
    assert abs(_cliquet_prices()[len(CLIQUET_CASES) + index] - expected) <= _tolerance(expected)

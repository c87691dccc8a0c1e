"""Finite-difference prices (default grid) against QuantLib, computed in the test, under flat vol.

* European: AnalyticEuropeanEngine.
* Barrier, all 8 types, with and without rebate, barriers 65-95 % (down) and 105-130 % (up) of the spot:
  AnalyticBarrierEngine (Reiner-Rubinstein / Haug).  QuantLib's rebate convention is BOOK_SCHEMA's:
  paid at the hit for knock-outs, at expiry for knock-ins never knocked in.
* American put: FdBlackScholesVanillaEngine at a fine grid (2000 time x 2000 space steps, Douglas / CN).
* Discrete monitoring (50 dates): the continuous analytic price at the Broadie-Glasserman-Kou shifted
  barrier, within 5e-3 (measured 1.1e-3 to 2.9e-3, the correction's own error).

Each within 1e-3 absolute or 0.2 % relative, over maturities 0.1-5 y, vols 0.1-0.6, dividend yields 0 and
0.02.  Cases are a fixed random spread (seeded); every case is priced in one batched call per instrument.
Maturities are whole days (QuantLib dates, Actual/365).

Measured (default grid 241 x 200): largest absolute errors 3.4e-4 (European), 2.3e-3 on a price of 8.3
(barrier), 7.9e-3 on 34.3 (American put); see docs/pde.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import quantlib_flat_process

import shoals  # noqa: F401  (float64)
from shoals.instruments import American, Barrier, European
from shoals.market import FlatMarket
from shoals.methods.finite_difference import FiniteDifference

ql = pytest.importorskip("QuantLib")

SPOT, RATE = 100.0, 0.03
TODAY = ql.Date(2, 1, 2024)
METHOD = FiniteDifference(vega=False)


def _close(got, expected):
    return abs(got - expected) <= max(1e-3, 2e-3 * abs(expected))


def _process(vol, dividend):
    return quantlib_flat_process(TODAY, spot=SPOT, rate=RATE, dividend=dividend, vol=vol)


def _draw(count, seed):
    """(maturity in whole days / 365, vol, dividend) spread over 0.1-5 y, 0.1-0.6, {0, 0.02}."""
    rng = np.random.default_rng(seed)
    maturities = np.round(np.exp(rng.uniform(np.log(0.1), np.log(5.0), count)) * 365.0) / 365.0
    return maturities, rng.uniform(0.1, 0.6, count), rng.choice([0.0, 0.02], count), rng


def _market(vols, dividends):
    return FlatMarket(spot=SPOT, rate=RATE, vol=vols, dividend=dividends)


def _report(name, got, expected):
    error = np.abs(got - expected)
    worst = int(np.argmax(error / np.maximum(1e-3, 2e-3 * np.abs(expected))))
    print(f"{name}: max abs error {error.max():.2e}, max rel error "
          f"{np.max(error / np.maximum(np.abs(expected), 1e-12)):.2e}; worst case #{worst}: "
          f"{got[worst]:.6f} vs {expected[worst]:.6f}")


@pytest.fixture(scope="module")
def european_cases():
    maturities, vols, dividends, rng = _draw(16, 11)
    strikes = rng.uniform(70.0, 130.0, 16)
    is_call = np.arange(16) % 2 == 0
    expected = []
    for k, t, v, q, call in zip(strikes, maturities, vols, dividends, is_call):
        option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, k),
                                  ql.EuropeanExercise(TODAY + round(t * 365)))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(_process(v, q)))
        expected.append(option.NPV())
    got = METHOD.price(European(strike=strikes, maturity=maturities, is_call=is_call),
                       _market(vols, dividends)).value
    return got, np.array(expected)


@pytest.mark.parametrize("case", range(16))
def test_european_pde_matches_quantlib_analytic(european_cases, case):
    got, expected = european_cases
    if case == 0:
        _report("european", got, expected)
    assert _close(got[case], expected[case]), (got[case], expected[case])


BARRIER_TYPES = [(up, knock_in, call, rebate) for up in (False, True) for knock_in in (False, True)
                 for call in (True, False) for rebate in (0.0, 3.0)]


@pytest.fixture(scope="module")
def barrier_cases():
    count = 2 * len(BARRIER_TYPES)
    maturities, vols, dividends, rng = _draw(count, 12)
    kinds = BARRIER_TYPES * 2
    is_up = np.array([k[0] for k in kinds])
    knock_in = np.array([k[1] for k in kinds])
    is_call = np.array([k[2] for k in kinds])
    rebates = np.array([k[3] for k in kinds])
    barriers = np.where(is_up, rng.uniform(105.0, 130.0, count), rng.uniform(65.0, 95.0, count))
    strikes = rng.uniform(80.0, 120.0, count)
    ql_types = {(False, False): ql.Barrier.DownOut, (False, True): ql.Barrier.DownIn,
                (True, False): ql.Barrier.UpOut, (True, True): ql.Barrier.UpIn}
    expected = []
    for i in range(count):
        option = ql.BarrierOption(ql_types[(bool(is_up[i]), bool(knock_in[i]))], barriers[i], rebates[i],
                                  ql.PlainVanillaPayoff(ql.Option.Call if is_call[i] else ql.Option.Put,
                                                        strikes[i]),
                                  ql.EuropeanExercise(TODAY + round(maturities[i] * 365)))
        option.setPricingEngine(ql.AnalyticBarrierEngine(_process(vols[i], dividends[i])))
        expected.append(option.NPV())
    contract = Barrier(strike=strikes, maturity=maturities, barrier=barriers, is_call=is_call, is_up=is_up,
                       is_knock_in=knock_in, rebate=rebates)
    got = METHOD.price(contract, _market(vols, dividends)).value
    return got, np.array(expected), kinds


@pytest.mark.parametrize("case", range(2 * len(BARRIER_TYPES)))
def test_barrier_pde_matches_quantlib_analytic(barrier_cases, case):
    got, expected, kinds = barrier_cases
    if case == 0:
        _report("barrier", got, expected)
    assert _close(got[case], expected[case]), (kinds[case], got[case], expected[case])


@pytest.fixture(scope="module")
def american_cases():
    count = 8
    maturities, vols, dividends, rng = _draw(count, 13)
    strikes = rng.uniform(80.0, 120.0, count)
    expected = []
    for k, t, v, q in zip(strikes, maturities, vols, dividends):
        option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Put, k),
                                  ql.AmericanExercise(TODAY, TODAY + round(t * 365)))
        option.setPricingEngine(ql.FdBlackScholesVanillaEngine(_process(v, q), 2000, 2000, 2))
        expected.append(option.NPV())
    got = METHOD.price(American(strike=strikes, maturity=maturities, is_call=False),
                       _market(vols, dividends)).value
    return got, np.array(expected)


@pytest.mark.parametrize("case", range(8))
def test_american_put_pde_matches_quantlib_fine_grid(american_cases, case):
    got, expected = american_cases
    if case == 0:
        _report("american put", got, expected)
    assert _close(got[case], expected[case]), (got[case], expected[case])


def test_discrete_barrier_pde_matches_broadie_glasserman_kou():
    """Discrete monitoring (50 dates a year) vs the continuous analytic price with the barrier shifted by
    exp(+-0.5826 sigma sqrt(T / m)) (Broadie, Glasserman & Kou 1997; the correction's own error is
    O(1/m), ~1e-3 here): within 5e-3."""
    vol, maturity, dates = 0.25, 1.0, 50
    cases = [(False, 90.0, True, False), (False, 90.0, True, True), (True, 115.0, False, False),
             (True, 115.0, False, True)]
    expected = []
    for is_up, barrier, is_call, knock_in in cases:
        shifted = barrier * np.exp((1.0 if is_up else -1.0) * 0.5826 * vol * np.sqrt(maturity / dates))
        option = ql.BarrierOption({(False, False): ql.Barrier.DownOut, (False, True): ql.Barrier.DownIn,
                                   (True, False): ql.Barrier.UpOut, (True, True): ql.Barrier.UpIn}[(is_up, knock_in)],
                                  shifted, 0.0,
                                  ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, 100.0),
                                  ql.EuropeanExercise(TODAY + 365))
        option.setPricingEngine(ql.AnalyticBarrierEngine(_process(vol, 0.0)))
        expected.append(option.NPV())
    columns = np.array(cases)
    contract = Barrier(strike=100.0, maturity=1.0, barrier=columns[:, 1], is_up=columns[:, 0].astype(bool),
                       is_call=columns[:, 2].astype(bool), is_knock_in=columns[:, 3].astype(bool),
                       monitoring_dates=dates)
    got = METHOD.price(contract, _market(np.full(4, vol), np.zeros(4))).value
    print(f"discrete vs BGK: differences {np.round(got - np.array(expected), 5)}")
    assert np.max(np.abs(got - np.array(expected))) < 5e-3

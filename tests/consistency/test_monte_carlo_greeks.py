"""Monte Carlo Greeks: pathwise AD (through the path simulation) against the closed form for Europeans
within 4 standard errors (from independent streams of one trade), and against common-random-number bumps
of the same simulation for path-dependent payoffs; barrier bump Greeks against QuantLib's analytic ones.

The lookback uses K = 95, not the spot: a fixed-strike lookback whose running maximum is the spot has a
gamma jump at S = K (two closed-form branches, M_0 above or below K), where a central difference errs by
O(h) (measured 7e-3 relative at h = 1 %) while the pathwise derivative equals the one-sided limit."""

from __future__ import annotations

import numpy as np
import pytest

import shoals as sh

MARKET = sh.FlatMarket(spot=100.0, rate=0.04, vol=0.25, dividend=0.01)
REPLICAS = 8


def test_path_engine_european_greeks_match_closed_form():
    instrument = sh.European(strike=np.full(REPLICAS, 105.0), maturity=1.0, is_call=True)
    # control_variate routes Europeans through the path engine (the pathwise kernels of paths.py)
    mc = sh.MonteCarlo(paths=40_000, seed=5, control_variate=True).price(instrument, MARKET)
    exact = sh.price(sh.European(strike=105.0, maturity=1.0), MARKET)
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        estimates = mc.greeks[name]
        mean, error = estimates.mean(), estimates.std(ddof=1) / np.sqrt(REPLICAS)
        print(f"{name}: MC {mean:.5f} +- {error:.5f}, closed form {float(exact.greeks[name]):.5f}")
        assert abs(mean - float(exact.greeks[name])) < 4.0 * error + 1e-3 * abs(float(exact.greeks[name]))


@pytest.mark.parametrize("contract", [
    sh.Asian(maturity=1.0, fixings=12, strike=100.0),
    pytest.param(sh.Lookback(maturity=1.0, strike=95.0, floating=False), marks=pytest.mark.slow),
    pytest.param(sh.Cliquet(maturity=1.0, resets=4, local_cap=0.1), marks=pytest.mark.slow)],
    ids=["asian", "lookback", "cliquet"])
def test_pathwise_greeks_agree_with_crn_bumps(contract):
    method = sh.MonteCarlo(paths=32_768, seed=2)
    base = method.price(contract, MARKET)
    plain = sh.MonteCarlo(paths=32_768, seed=2, greeks=False)
    h = 1e-3

    def bumped(**changes):
        fields = {"spot": 100.0, "rate": 0.04, "vol": 0.25, "dividend": 0.01, **changes}
        return float(plain.price(contract, sh.FlatMarket(**fields)).value)

    delta = (bumped(spot=100.0 * (1 + h)) - bumped(spot=100.0 * (1 - h))) / (2 * h * 100.0)
    vega = (bumped(vol=0.25 + 1e-3) - bumped(vol=0.25 - 1e-3)) / 2e-3
    rho = (bumped(rate=0.04 + 1e-4) - bumped(rate=0.04 - 1e-4)) / 2e-4
    print(f"{type(contract).__name__}: delta AD {float(base.greeks['delta']):.6f} CRN {delta:.6f}; "
          f"vega AD {float(base.greeks['vega']):.5f} CRN {vega:.5f}; rho AD {float(base.greeks['rho']):.5f} CRN {rho:.5f}")
    scale = abs(float(base.value)) + 1e-12
    assert abs(float(base.greeks["delta"]) - delta) < 2e-3 * scale / 100.0 + 2e-3 * abs(delta)
    assert abs(float(base.greeks["vega"]) - vega) < 2e-3 * abs(vega) + 1e-4 * scale
    assert abs(float(base.greeks["rho"]) - rho) < 2e-3 * abs(rho) + 1e-4 * scale


def test_barrier_bump_greeks_match_quantlib():
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    spot = ql.SimpleQuote(100.0)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot), ql.YieldTermStructureHandle(ql.FlatForward(today, 0.01, day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, 0.04, day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.25, day_count)))
    option = ql.BarrierOption(ql.Barrier.DownOut, 85.0, 0.0, ql.PlainVanillaPayoff(ql.Option.Call, 100.0),
                              ql.EuropeanExercise(today + 365))
    option.setPricingEngine(ql.AnalyticBarrierEngine(process))
    h = 1e-4
    values = []
    for s in (100.0 * (1 - h), 100.0, 100.0 * (1 + h)):
        spot.setValue(s)
        values.append(option.NPV())
    delta_ql = (values[2] - values[0]) / (200.0 * h)
    instrument = sh.Barrier(strike=np.full(REPLICAS, 100.0), maturity=1.0, barrier=85.0)
    mc = sh.MonteCarlo(paths=40_000, seed=8).price(instrument, MARKET)
    mean, error = mc.greeks["delta"].mean(), mc.greeks["delta"].std(ddof=1) / np.sqrt(REPLICAS)
    print(f"down-and-out delta: MC (CRN bumps) {mean:.5f} +- {error:.5f}, QuantLib {delta_ql:.5f}")
    assert abs(mean - delta_ql) < 4.0 * error + 2e-3
    assert "CRN" in mc.diagnostics["greeks"]

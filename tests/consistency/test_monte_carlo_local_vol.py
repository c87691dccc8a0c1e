"""Monte Carlo under Dupire local vol: Europeans reproduce the implied surface's Black prices within
4 standard errors plus the grid's own error (1e-3 relative, tests/consistency/test_local_vol_reprices.py)
plus the log-Euler bias (100 steps a year); every family prices under a MarketSnapshot.

The surface is that of tests/consistency/test_local_vol_reprices.py: 8 raw SVI slices, ATM vol 20 %,
skew -0.125 / sqrt(T); spot 100, r = 3 %, q = 1 %.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
from support import skewed_snapshot

import shoals as sh
from shoals.market.local_vol import build_local_vol

SPOT, RATE, DIVIDEND = 100.0, 0.03, 0.01


@pytest.fixture(scope="module")
def snapshot():
    return skewed_snapshot(SPOT, RATE, DIVIDEND)


@pytest.fixture(scope="module")
def grid(snapshot):
    return build_local_vol(snapshot, t_max=1.0)[0]


def _black(snapshot, strikes, maturity, is_call):
    forward = SPOT * np.exp((RATE - DIVIDEND) * maturity)
    s = np.sqrt(np.asarray(snapshot.surface.total_variance(jnp.log(strikes / forward), maturity)))
    d1 = np.log(forward / strikes) / s + 0.5 * s
    w = np.where(is_call, 1.0, -1.0)
    return np.exp(-RATE * maturity) * w * (forward * norm.cdf(w * d1) - strikes * norm.cdf(w * (d1 - s)))


def test_europeans_reproduce_the_surface(snapshot, grid):
    strikes = np.array([80.0, 90.0, 100.0, 110.0, 120.0, 90.0, 100.0, 115.0])
    maturities = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    calls = strikes >= 100.0
    instrument = sh.European(strike=strikes, maturity=maturities, is_call=calls)
    method = sh.MonteCarlo(paths=131_072, seed=21, antithetic=True, control_variate=True, steps_per_year=100,
                           greeks=False)
    mc = method.price(instrument, snapshot, local_vol=grid)
    reference = _black(snapshot, strikes, maturities, calls)
    z = (mc.value - reference) / (mc.std_error + 1e-3 * reference)
    for k, t, v, se, ref in zip(strikes, maturities, mc.value, mc.std_error, reference):
        print(f"K={k:.0f} T={t}: MC {v:.4f} +- {se:.4f}, surface {ref:.4f}, z = {(v - ref) / se:+.2f}")
    assert np.all(np.abs(z) < 4.0), z


@pytest.mark.slow
def test_every_family_prices_under_a_snapshot(snapshot, grid):
    method = sh.MonteCarlo(paths=16_384, seed=3, steps_per_year=50, greeks=False)
    contracts = [sh.Barrier(strike=100.0, maturity=1.0, barrier=85.0, rebate=1.0),
                 sh.Lookback(maturity=1.0), sh.Asian(maturity=1.0, fixings=12, strike=100.0),
                 sh.Cliquet(maturity=1.0, resets=4, local_cap=0.08)]
    for contract in contracts:
        local = method.price(contract, snapshot, local_vol=grid)
        flat = method.price(contract, sh.FlatMarket(spot=SPOT, rate=RATE, vol=0.2, dividend=DIVIDEND))
        print(f"{type(contract).__name__}: local vol {float(local.value):.4f} +- {float(local.std_error):.4f}, "
              f"flat 20% {float(flat.value):.4f}")
        assert np.isfinite(local.value) and local.std_error > 0
        assert abs(float(local.value) / float(flat.value) - 1.0) < 0.5   # same order as ATM flat vol
        assert local.diagnostics["engine"] == "log-Euler under local vol"


def test_grid_is_built_when_not_given_and_greeks_are_sticky_local_vol(snapshot):
    result = sh.MonteCarlo(paths=8192, seed=1, steps_per_year=20).price(sh.European(strike=100.0, maturity=0.5),
                                                                         snapshot)
    assert abs(float(result.value) - float(_black(snapshot, np.array(100.0), 0.5, True))) < 4 * float(result.std_error)
    assert "sticky local vol" in result.diagnostics["greeks"]
    assert np.isnan(result.greeks["rho"]) and np.isnan(result.greeks["theta"])
    assert 20.0 < float(result.greeks["vega"]) < 35.0   # surface vega (tests/consistency/test_surface_vega.py)
    assert 0.4 < float(result.greeks["delta"]) < 0.7 and float(result.greeks["gamma"]) > 0.0

"""Black-Scholes kernels at and near the degenerate limits s = sigma sqrt(T) -> 0.

At T = 0 or sigma = 0 the option is worth its discounted intrinsic value on the forward,
DF max(w(F - K), 0) = max(w(S e^{-qT} - K e^{-rT}), 0); delta is the discounted digital
w e^{-qT} 1{w(F - K) > 0} (1/2 at the money); gamma, vega, vanna and volga vanish away from the money;
gamma is +inf at the money (Dirac mass of the kink).  Nothing is ever NaN, neither in the analytic
Greeks nor in the autodiff ones, and values at tiny T (1e-12 ... 1e-50) or tiny sigma approach the
limit continuously.

"At the money" here means ln(F/K) == 0 exactly in floating point: K = S with r = q (or T = 0).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

import shoals as sh
from shoals.kernels.black_scholes import BlackScholesGreeks

FIELDS = BlackScholesGreeks._fields
SPOT = 100.0
STRIKES = (80.0, 100.0, 125.0)
RATE_DIVIDEND = ((0.05, 0.05), (0.05, 0.01), (-0.02, 0.03))
LIMITS = ((0.0, 0.2), (0.0, 0.0), (1.0, 0.0), (0.5, 0.0))  # (T, sigma) with s = 0 exactly
TINY = ((1e-12, 0.2), (1e-30, 0.2), (1e-50, 0.2), (1.0, 1e-12), (1.0, 1e-30), (1.0, 1e-50),
        (1e-12, 1e-12), (1e-30, 1e-30), (0.0, 1e-12), (1e-12, 0.0))
SEQUENCE_T = tuple((10.0 ** -k, 0.2) for k in range(1, 13))   # T -> 0 at sigma = 0.2
SEQUENCE_SIGMA = tuple((1.0, 10.0 ** -k) for k in range(1, 13))  # sigma -> 0 at T = 1

_autodiff = jax.jit(sh.black_scholes_greeks_autodiff)


def _table(scenarios):
    rows = list(itertools.product(scenarios, RATE_DIVIDEND, STRIKES, (True, False)))
    return dict(
        expiries=np.array([s[0] for (s, _, _, _) in rows]), volatilities=np.array([s[1] for (s, _, _, _) in rows]),
        rates=np.array([rq[0] for (_, rq, _, _) in rows]), dividend_yields=np.array([rq[1] for (_, rq, _, _) in rows]),
        strikes=np.array([k for (_, _, k, _) in rows]), is_call=np.array([c for (_, _, _, c) in rows]),
        spots=np.full(len(rows), SPOT))


@pytest.fixture(scope="module")
def cases():
    """Analytic and autodiff Greeks of every scenario, computed in one call per kernel."""
    groups = {"limits": LIMITS, "tiny": TINY, "sequence_t": SEQUENCE_T, "sequence_sigma": SEQUENCE_SIGMA}
    tables = {name: _table(scenarios) for name, scenarios in groups.items()}
    union = {key: np.concatenate([t[key] for t in tables.values()]) for key in tables["limits"]}
    analytic = sh.black_scholes_greeks(**union)
    autodiff = _autodiff(**union)
    out, start = {}, 0
    for name, table in tables.items():
        rows = slice(start, start + len(table["spots"]))
        start = rows.stop
        out[name] = (table,
                     {f: np.asarray(getattr(analytic, f))[rows] for f in FIELDS},
                     {f: np.asarray(getattr(autodiff, f))[rows] for f in FIELDS})
    return out


def _limit_values(t):
    """Expected s = 0 limits from the module docstring, for a table ``t``."""
    w = np.where(t["is_call"], 1.0, -1.0)
    discounted_spot = t["spots"] * np.exp(-t["dividend_yields"] * t["expiries"])
    discounted_strike = t["strikes"] * np.exp(-t["rates"] * t["expiries"])
    log_moneyness = np.log(t["spots"] / t["strikes"]) + (t["rates"] - t["dividend_yields"]) * t["expiries"]
    atm = log_moneyness == 0.0
    indicator = np.where(atm, 0.5, (w * log_moneyness > 0.0).astype(float))
    return dict(
        atm=atm, w=w,
        price=np.maximum(w * (discounted_spot - discounted_strike), 0.0),
        delta=w * np.exp(-t["dividend_yields"] * t["expiries"]) * indicator,
        rho=w * t["strikes"] * t["expiries"] * np.exp(-t["rates"] * t["expiries"]) * indicator,
        theta_drift=-w * t["rates"] * discounted_strike * indicator + w * t["dividend_yields"] * discounted_spot * indicator,
        charm=w * t["dividend_yields"] * np.exp(-t["dividend_yields"] * t["expiries"]) * indicator,
    )


@pytest.mark.parametrize("group", ["limits", "tiny", "sequence_t", "sequence_sigma"])
def test_no_nan_in_any_greek(cases, group):
    table, analytic, autodiff = cases[group]
    for name in FIELDS:
        for label, values in (("analytic", analytic), ("autodiff", autodiff)):
            bad = np.isnan(values[name])
            assert not bad.any(), (label, name, {k: v[bad] for k, v in table.items()})


def test_price_is_discounted_forward_intrinsic_at_the_limit(cases):
    table, analytic, autodiff = cases["limits"]
    expected = _limit_values(table)
    np.testing.assert_allclose(analytic["price"], expected["price"], rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(autodiff["price"], expected["price"], rtol=1e-14, atol=1e-13)
    assert np.all(analytic["price"] >= 0.0)


def test_delta_is_discounted_digital_at_the_limit(cases):
    table, analytic, autodiff = cases["limits"]
    expected = _limit_values(table)
    assert expected["atm"].any() and (~expected["atm"]).any()  # the grid has both kinds of point
    np.testing.assert_allclose(analytic["delta"], expected["delta"], rtol=1e-15, atol=0.0)
    np.testing.assert_allclose(autodiff["delta"], expected["delta"], rtol=1e-15, atol=0.0)


def test_other_greeks_at_the_limit(cases):
    table, analytic, autodiff = cases["limits"]
    expected = _limit_values(table)
    away = ~expected["atm"]
    for name in ("gamma", "vega", "vanna", "volga"):
        assert np.all(analytic[name][away] == 0.0), name
        assert np.all(autodiff[name][away] == 0.0), name
    # rho and charm are the digital-weighted drift terms everywhere; theta away from the money.
    np.testing.assert_allclose(analytic["rho"], expected["rho"], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(analytic["charm"], expected["charm"], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(analytic["theta"][away], expected["theta_drift"][away], rtol=1e-14, atol=1e-14)
    # Autodiff agrees with the analytic limits away from the money.
    for name in ("price", "delta", "theta", "rho", "charm"):
        np.testing.assert_allclose(autodiff[name][away], analytic[name][away], rtol=1e-14, atol=1e-14, err_msg=name)
    # At the money: gamma is +inf (Dirac mass); theta is -inf when T = 0 and sigma > 0.
    atm = expected["atm"]
    assert np.all(analytic["gamma"][atm] == np.inf)
    dirac_theta = atm & (table["expiries"] == 0.0) & (table["volatilities"] > 0.0)
    assert dirac_theta.any()
    assert np.all(analytic["theta"][dirac_theta] == -np.inf)
    # At T = 0 there is no optionality left at all: vega is 0 at the money too.
    expired = atm & (table["expiries"] == 0.0)
    assert np.all(analytic["vega"][expired] == 0.0)


def test_tiny_values_approach_the_limit(cases):
    """T or sigma of 1e-12 ... 1e-50 give (numerically) the s = 0 limit away from the money, and a
    vanishing time value at the money."""
    table, analytic, autodiff = cases["tiny"]
    expected = _limit_values(table)
    stdev = table["volatilities"] * np.sqrt(table["expiries"])
    # "Near" the money: within a few s of the forward (only K = S with r != q and tiny T qualifies here).
    log_moneyness = np.log(table["spots"] / table["strikes"]) + (table["rates"] - table["dividend_yields"]) * table["expiries"]
    near = np.abs(log_moneyness) <= 10.0 * stdev
    away = ~near
    assert away.any() and near.any()
    for values in (analytic, autodiff):
        np.testing.assert_allclose(values["price"][away], expected["price"][away], rtol=1e-14, atol=1e-12)
        np.testing.assert_allclose(values["delta"][away], expected["delta"][away], rtol=1e-14, atol=1e-14)
        for name in ("gamma", "vega", "vanna", "volga"):
            np.testing.assert_allclose(values[name][away], 0.0, atol=1e-12, err_msg=name)
    # Near the money: price bounded by the time value S s / sqrt(2 pi) (plus the drift part), delta -> w/2.
    np.testing.assert_array_less(np.abs(analytic["price"][near] - expected["price"][near]),
                                 SPOT * stdev[near] + 1e-10)
    half_digital = 0.5 * expected["w"][near] * np.exp(-table["dividend_yields"][near] * table["expiries"][near])
    np.testing.assert_allclose(analytic["delta"][near], half_digital, atol=1e-5)
    np.testing.assert_allclose(autodiff["delta"][near], half_digital, atol=1e-5)


@pytest.mark.parametrize("group", ["sequence_t", "sequence_sigma"])
def test_convergence_to_the_limit(cases, group):
    """Along T = 10^-k (sigma = 0.2) and sigma = 10^-k (T = 1), k = 1..12, the distance of price and delta
    to the s = 0 limit shrinks towards 0 (monotone up to rounding) at every strike."""
    table, analytic, _ = cases[group]
    n_steps = 12
    per_step = len(table["spots"]) // n_steps
    limit_table = dict(table)
    if group == "sequence_t":
        limit_table["expiries"] = np.zeros_like(table["expiries"])
    else:
        limit_table["volatilities"] = np.zeros_like(table["volatilities"])
    limit = sh.black_scholes_greeks(**limit_table)
    final_stdev = (table["volatilities"] * np.sqrt(table["expiries"])).reshape(n_steps, per_step)[-1]
    # At the money the time value is S e^{-qT} s / sqrt(2 pi) + O(s^3): the distance at s = 2e-7 (T sequence)
    # or 1e-12 (sigma sequence) is bounded by 0.4 S s; away from it the limit is reached to rounding.
    final_tolerance = {"price": 0.4 * SPOT * final_stdev + 1e-11, "delta": np.full(per_step, 1e-6)}
    for name in ("price", "delta"):
        distance = np.abs(analytic[name] - np.asarray(getattr(limit, name))).reshape(n_steps, per_step)
        assert np.all(np.diff(distance, axis=0) <= 1e-13), name
        assert np.all(distance[-1] <= final_tolerance[name]), (name, distance[-1])


def test_tiny_sigma_at_the_money_vega_is_continuous():
    """At the forward-ATM point the right derivative dV/dsigma at sigma = 0+ is S e^{-qT} sqrt(T) n(0) (the
    price is ~ S e^{-qT} sigma sqrt(T) / sqrt(2 pi)); the value returned at sigma = 0 equals that limit."""
    kwargs = dict(spots=SPOT, strikes=SPOT, expiries=1.0, rates=0.03, dividend_yields=0.03)
    at_zero = sh.black_scholes_greeks(volatilities=0.0, **kwargs)
    tiny = sh.black_scholes_greeks(volatilities=1e-12, **kwargs)
    expected = SPOT * np.exp(-0.03) / np.sqrt(2.0 * np.pi)
    np.testing.assert_allclose(float(tiny.vega), expected, rtol=1e-12)
    np.testing.assert_allclose(float(at_zero.vega), expected, rtol=1e-12)


@pytest.mark.parametrize("expiry, vol", [(1e-250, 0.2), (1e-300, 0.2), (1e-150, 1e-150)])
def test_analytic_charm_not_nan_at_extremely_small_expiry(expiry, vol):
    greeks = sh.black_scholes_greeks(spots=SPOT, strikes=np.array(STRIKES), expiries=expiry, volatilities=vol,
                                     rates=0.05, dividend_yields=0.01, is_call=True)
    assert not np.isnan(np.asarray(greeks.charm)).any()

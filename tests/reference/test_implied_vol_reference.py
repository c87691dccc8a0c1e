"""``implied_volatility`` against Jaeckel's "Let's be rational" and QuantLib.

References:

* ``py_lets_be_rational`` (pure-Python port of P. Jaeckel's LetsBeRational, "Let's be rational",
  Wilmott 2015): ``black(F, K, sigma, T, q)`` is the undiscounted Black price (q = +1 call, -1 put),
  accurate to a few ulps also in the far wings (asymptotic / small-t expansions, erfcx), and
  ``implied_volatility_from_a_transformed_rational_guess(price, F, K, T, q)`` its inverse to machine
  precision in two Householder steps.  It raises ``BelowIntrinsicException`` / ``AboveMaximumException``
  outside the no-arbitrage bounds.
* QuantLib's ``blackFormulaImpliedStdDev`` (safeguarded Newton on the total stdev) and
  ``EuropeanOption.impliedVolatility`` (Brent on the analytic BSM price), on a few points.

Random sample (fixed seed): ln(F/K) in [-3, 3] plus deep wings |ln(F/K)| in [3, 12], total stdev
s = sigma sqrt(T) log-uniform in [1e-3, 6], plus small time values near the money (s in [1e-3, 0.05],
|ln(F/K)| <= 8 s), T from 1 day to 30 years, discount factors from rates in
[-2%, 10%], calls and puts.  Prices are LetsBeRational's undiscounted Black prices times DF; points
whose time value is not a positive normal float, or is only a few ulps of the price (kappa > 1e12,
below), are dropped, leaving ~3,300 points (2,000 OTM), OTM prices down to ~1e-306 included.

Conditioning: kappa = |d ln sigma / d ln price| = price / (sigma dprice/dsigma).  A relative error eps
in the price moves sigma by eps kappa, so no solver can do better than that.  Tolerances:

* OTM and kappa <= 100 (well conditioned; every OTM point of the sample has kappa < 34): shoals vs
  LetsBeRational and vs the generating vol, 1e-12 relative.  Observed: 3.4e-13, at the smallest
  stdevs (s ~ 1e-3, see the tiny-stdev xfails below); ~3e-14 for s >= 1e-2.  LetsBeRational itself is
  within 5e-15 of the generating vol.
* ITM (the time value is recovered by subtracting the intrinsic value): 1e-12 + 16 eps kappa_n with
  kappa_n = max(price, sqrt(F K)) / (sigma vega) (undiscounted), restricted to kappa_n <= 1e10; observed
  at most 2.2 eps kappa_n (max relative difference 1.4e-6, at kappa_n ~ 1e10).  The tighter
  eps * price / vega scale of the docstring is checked by ``test_in_the_money_accuracy_matches_the_docstring``.
  ITM points with kappa <= 10: 1e-12 (observed 2.2e-13).
* QuantLib: 1e-11 relative on OTM/ATM points (QuantLib's Newton stops at its accuracy criterion;
  observed 2.7e-12 on 46 points), 1e-12 absolute for ``EuropeanOption.impliedVolatility`` with
  accuracy 1e-14 (observed 1.5e-15; 3.7e-15 from the vol that generated the prices).

The tests marked ``xfail(strict=True)`` pin down deviations of ``src/`` from its documented behaviour
(see their reasons); they turn into failures when the deviation is fixed, so the marker can be removed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.kernels.implied_vol import REASONS, implied_volatility, normalised_black_price

lbr = pytest.importorskip("py_lets_be_rational")
from py_lets_be_rational.exceptions import AboveMaximumException, BelowIntrinsicException  # noqa: E402

EPS = np.finfo(np.float64).eps
OK, BELOW_INTRINSIC, ABOVE_MAXIMUM = 0, 2, 3
PAD = 4096  # every call to the solver is padded to this length: one compilation for the whole module


def _shoals_iv(prices, forwards, strikes, expiries, discount_factors, is_call):
    """implied_volatility on 1-d inputs, padded to PAD elements so the while-loop compiles once."""
    columns = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in
                                    (prices, forwards, strikes, expiries, discount_factors)),
                                  np.asarray(is_call, dtype=bool))
    n = columns[0].size
    assert n <= PAD
    padding = (5.0, 100.0, 100.0, 1.0, 1.0, True)  # a harmless ATM point
    padded = [np.concatenate([np.ravel(c), np.full(PAD - n, fill, dtype=c.dtype)])
              for c, fill in zip(columns, padding)]
    vols, reasons = implied_volatility(prices=padded[0], forwards=padded[1], strikes=padded[2],
                                       expiries=padded[3], discount_factors=padded[4], is_call=padded[5])
    return np.asarray(vols)[:n], np.asarray(reasons)[:n]


def _lbr_iv(undiscounted_price, forward, strike, expiry, is_call):
    return lbr.implied_volatility_from_a_transformed_rational_guess(
        float(undiscounted_price), float(forward), float(strike), float(expiry), 1.0 if is_call else -1.0)


def _log_kappa(undiscounted_price, forward, strike, stdev):
    """ln of price / (sigma dprice/dsigma) for the undiscounted Black price, in logs (no underflow)."""
    h = np.log(forward / strike) / stdev
    t = 0.5 * stdev
    log_sigma_vega = np.log(stdev) + 0.5 * np.log(forward * strike) - 0.5 * (h * h + t * t) \
        - 0.5 * math.log(2.0 * math.pi)
    return np.log(undiscounted_price) - log_sigma_vega, log_sigma_vega


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(20240115)
    n_core, n_wings, n_small = 3000, 4000, 500
    stdevs = np.exp(rng.uniform(math.log(1e-3), math.log(6.0), n_core + n_wings + n_small))
    stdevs[-n_small:] = np.exp(rng.uniform(math.log(1e-3), math.log(5e-2), n_small))
    log_moneyness = np.concatenate([rng.uniform(-3.0, 3.0, n_core),
                                    rng.choice([-1.0, 1.0], n_wings) * rng.uniform(3.0, 12.0, n_wings),
                                    # small time values near the money: h = x / s in [-8, 8]
                                    stdevs[-n_small:] * rng.uniform(-8.0, 8.0, n_small)])
    n = log_moneyness.size
    forwards = 100.0 * np.exp(rng.uniform(-1.0, 1.0, n))
    strikes = forwards * np.exp(-log_moneyness)
    expiries = rng.choice([1.0 / 365.0, 7.0 / 365.0, 0.25, 1.0, 5.0, 30.0], n)
    vols = stdevs / np.sqrt(expiries)
    is_call = rng.random(n) < 0.5
    discount_factors = np.exp(-rng.uniform(-0.02, 0.10, n) * expiries)

    undiscounted = np.array([lbr.black(forwards[i], strikes[i], vols[i], expiries[i],
                                       1.0 if is_call[i] else -1.0) for i in range(n)])
    intrinsic = np.maximum(np.where(is_call, forwards - strikes, strikes - forwards), 0.0)
    upper = np.where(is_call, forwards, strikes)
    keep = ((undiscounted - intrinsic > np.finfo(float).tiny) & (undiscounted < upper)
            & (undiscounted * discount_factors > np.finfo(float).tiny))
    data = {key: value[keep] for key, value in dict(
        forward=forwards, strike=strikes, expiry=expiries, stdev=stdevs, vol=vols, is_call=is_call,
        discount_factor=discount_factors, undiscounted=undiscounted, intrinsic=intrinsic).items()}
    data["price"] = data["undiscounted"] * data["discount_factor"]
    data["otm"] = data["intrinsic"] == 0.0
    data["log_kappa"], log_sigma_vega = _log_kappa(data["undiscounted"], data["forward"], data["strike"],
                                                   data["stdev"])
    scale = np.maximum(data["undiscounted"], np.sqrt(data["forward"] * data["strike"]))
    data["log_kappa_n"] = np.log(scale) - log_sigma_vega
    # drop the degenerate ITM points whose time value is a few ulps of the price (kappa > 1e12: the
    # price does not determine the vol to 1e-4); shoals returns 0 there, LetsBeRational noise
    resolvable = data["log_kappa"] <= math.log(1e12)
    data = {key: value[resolvable] for key, value in data.items()}
    data["lbr"] = np.array([
        _lbr_iv(data["undiscounted"][i], data["forward"][i], data["strike"][i], data["expiry"][i],
                data["is_call"][i]) for i in range(data["price"].size)])
    data["shoals"], data["reason"] = _shoals_iv(data["price"], data["forward"], data["strike"],
                                                data["expiry"], data["discount_factor"], data["is_call"])
    return data


def _relative(a, b):
    return np.abs(a - b) / np.abs(b)


def _describe(data, i):
    keys = ("forward", "strike", "expiry", "vol", "is_call", "discount_factor", "price")
    return {key: data[key][i] for key in keys} | {"shoals": data["shoals"][i], "lbr": data["lbr"][i]}


def test_sample_covers_wings_and_tiny_prices(sample):
    assert sample["price"].size >= 2500
    otm = sample["otm"]
    assert otm.sum() >= 1500 and (~otm).sum() >= 500
    assert (sample["price"][otm] < 1e-100).sum() >= 100
    assert (sample["price"][otm] < 1e-250).sum() >= 10
    assert (np.abs(np.log(sample["forward"] / sample["strike"])) > 6.0).sum() >= 200
    assert (sample["stdev"] < 1e-2).sum() >= 200 and (sample["stdev"] > 3.0).sum() >= 200
    assert sample["is_call"].any() and not sample["is_call"].all()


def test_every_sample_point_is_solved(sample):
    assert np.all(sample["reason"] == OK), np.unique(sample["reason"], return_counts=True)
    assert np.all(np.isfinite(sample["shoals"]) & (sample["shoals"] > 0.0))
    assert np.all(np.isfinite(sample["lbr"]) & (sample["lbr"] > 0.0))


def test_out_of_the_money_matches_lets_be_rational_to_1e_12(sample):
    """Well-conditioned (OTM, kappa <= 100), deep wings and prices down to 1e-300 included."""
    mask = sample["otm"] & (sample["log_kappa"] <= math.log(100.0))
    assert mask.sum() >= 1500
    for reference in ("lbr", "vol"):
        error = _relative(sample["shoals"], sample[reference])
        worst = int(np.argmax(np.where(mask, error, -1.0)))
        assert error[worst] <= 1e-12, (reference, error[worst], _describe(sample, worst))
    # the reference itself is at machine precision here (a check of the check)
    assert np.max(_relative(sample["lbr"], sample["vol"])[mask]) <= 1e-13


def test_in_the_money_matches_lets_be_rational_within_conditioning(sample):
    """ITM: agreement limited by eps times the conditioning of the time value (see module docstring)."""
    mask = ~sample["otm"] & (sample["log_kappa_n"] <= math.log(1e10))
    assert mask.sum() >= 400
    bound = 1e-12 + 16.0 * EPS * np.exp(sample["log_kappa_n"])
    for reference in ("lbr", "vol"):
        excess = _relative(sample["shoals"], sample[reference]) / bound
        worst = int(np.argmax(np.where(mask, excess, -1.0)))
        assert excess[worst] <= 1.0, (reference, excess[worst], _describe(sample, worst))
    # well-conditioned ITM points (kappa <= 10, e.g. near the money with a large time value): 1e-12
    good = ~sample["otm"] & (sample["log_kappa"] <= math.log(10.0))
    assert good.sum() >= 100
    assert np.max(_relative(sample["shoals"], sample["lbr"])[good]) <= 1e-12


def test_normalised_black_price_matches_lets_be_rational():
    """shoals' normalised Black price b(x, s) vs LetsBeRational's, for s >= 0.1, |x| up to 40.

    1e-12 relative (observed 1.6e-13).  Below s ~ 0.1 shoals' b loses relative accuracy (see the xfail
    ``test_normalised_black_price_at_small_stdev``).
    """
    rng = np.random.default_rng(7)
    n = 3000
    wings = n - n // 2
    x = np.concatenate([rng.uniform(-2.0, 2.0, n // 2),
                        rng.choice([-1.0, 1.0], wings)
                        * np.exp(rng.uniform(math.log(2.0), math.log(40.0), wings))])
    s = np.exp(rng.uniform(math.log(0.1), math.log(20.0), n))
    is_call = rng.random(n) < 0.5
    reference = np.array([lbr.normalised_black(x[i], s[i], 1.0 if is_call[i] else -1.0) for i in range(n)])
    got = np.asarray(normalised_black_price(log_moneyness=x, stdev=s, is_call=is_call))
    normal = reference > np.finfo(float).tiny
    assert normal.sum() >= 1500 and (reference[normal] < 1e-200).any()
    error = _relative(got[normal], reference[normal])
    assert error.max() <= 1e-12, error.max()
    # where the reference underflows to 0 (or a subnormal), shoals returns at most a subnormal
    assert np.all(np.abs(got[~normal]) <= np.finfo(float).tiny)


def test_bound_violations_are_rejected_like_lets_be_rational():
    """Below intrinsic and at/above the upper bound: NaN with the reason code, where LBR raises."""
    forward, strike, expiry = 100.0, 90.0, 0.5
    cases = [  # (undiscounted price, is_call, expected reason, LBR exception)
        (9.0, True, BELOW_INTRINSIC, BelowIntrinsicException),         # ITM call below F - K = 10
        (-1e-3, False, BELOW_INTRINSIC, BelowIntrinsicException),      # negative OTM put
        (100.0, True, ABOVE_MAXIMUM, AboveMaximumException),           # call at the forward
        (150.0, True, ABOVE_MAXIMUM, AboveMaximumException),           # call above the forward
        (90.0, False, ABOVE_MAXIMUM, AboveMaximumException),           # put at the strike
        (95.0, False, ABOVE_MAXIMUM, AboveMaximumException),           # put above the strike
    ]
    prices = np.array([c[0] for c in cases])
    calls = np.array([c[1] for c in cases])
    discount = 0.97
    vols, reasons = _shoals_iv(prices * discount, forward, strike, expiry, discount, calls)
    for (price, is_call, reason, exception), vol, got in zip(cases, vols, reasons):
        assert np.isnan(vol) and got == reason, (price, is_call, REASONS[int(got)])
        with pytest.raises(exception):
            _lbr_iv(price, forward, strike, expiry, is_call)


# --- QuantLib -----------------------------------------------------------------------------------------


def test_matches_quantlib_black_formula_implied_stddev():
    ql = pytest.importorskip("QuantLib")
    rows = []
    for strike in (60.0, 90.0, 100.0, 110.0, 150.0):
        for expiry in (0.05, 1.0, 5.0):
            for vol in (0.05, 0.3, 0.8):
                for is_call in (True, False):
                    option_type = ql.Option.Call if is_call else ql.Option.Put
                    forward, discount = 100.0, math.exp(-0.03 * expiry)
                    otm = (strike >= forward) if is_call else (strike <= forward)
                    price = ql.blackFormula(option_type, strike, forward, vol * math.sqrt(expiry), discount)
                    if not otm or price < 1e-8:  # QuantLib's solver needs a well-conditioned price
                        continue
                    stdev = ql.blackFormulaImpliedStdDev(option_type, strike, forward, price, discount, 0.0,
                                                         ql.nullDouble(), 1e-15, 1000)
                    rows.append((price, forward, strike, expiry, discount, is_call,
                                 stdev / math.sqrt(expiry)))
    assert len(rows) >= 20
    price, forward, strike, expiry, discount, is_call, reference = map(np.array, zip(*rows))
    vols, reasons = _shoals_iv(price, forward, strike, expiry, discount, is_call)
    assert np.all(reasons == OK)
    error = _relative(vols, reference)
    assert error.max() <= 1e-11, (error.max(), rows[int(np.argmax(error))])


def test_matches_quantlib_european_option_implied_volatility():
    """Equity inputs through a BSM process: F = S e^{(r-q)T}, DF = e^{-rT} on Actual/365 Fixed."""
    ql = pytest.importorskip("QuantLib")
    settings = ql.Settings.instance()
    saved_date = settings.evaluationDate
    today = ql.Date(15, 1, 2024)
    settings.evaluationDate = today
    try:
        spot, rate, dividend, vol = 100.0, 0.03, 0.01, 0.25
        day_counter = ql.Actual365Fixed()
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(spot)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, dividend, day_counter)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, rate, day_counter)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, day_counter)))
        engine = ql.AnalyticEuropeanEngine(process)
        rows = []
        for strike, days, is_call in ((80.0, 91, False), (95.0, 30, False), (100.0, 365, True),
                                      (120.0, 730, True), (105.0, 3650, True)):
            option = ql.EuropeanOption(
                ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, strike),
                ql.EuropeanExercise(today + days))
            option.setPricingEngine(engine)
            price = option.NPV()
            implied = option.impliedVolatility(price, process, 1e-14, 1000, 1e-4, 4.0)
            expiry = day_counter.yearFraction(today, today + days)
            rows.append((price, spot * math.exp((rate - dividend) * expiry), strike, expiry,
                         math.exp(-rate * expiry), is_call, implied))
    finally:
        settings.evaluationDate = saved_date
    price, forward, strike, expiry, discount, is_call, reference = map(np.array, zip(*rows))
    vols, reasons = _shoals_iv(price, forward, strike, expiry, discount, is_call)
    assert np.all(reasons == OK)
    np.testing.assert_allclose(vols, reference, rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(vols, vol, rtol=0.0, atol=1e-12)


# --- documented behaviour that src/ does not meet (strict xfails) ------------------------------------


def test_price_at_intrinsic_gives_zero_vol():
    cases = [  # (price, forward, strike, is_call), price == max(w (F - K), 0) exactly, DF = 1
        (40.0, 100.0, 60.0, True), (10.0, 100.0, 90.0, True), (1.0, 100.0, 99.0, True),
        (10.0, 100.0, 110.0, False), (50.0, 100.0, 150.0, False),
        (1.0, 101.0, 100.0, True), (0.5, 100.0, 100.5, False)]
    price, forward, strike, is_call = map(np.array, zip(*cases))
    for p, f, k, c in cases:
        assert _lbr_iv(p, f, k, 1.0, c) == 0.0
    vols, reasons = _shoals_iv(price, forward, strike, 1.0, 1.0, is_call)
    assert np.all(reasons == OK), reasons
    assert np.all(vols == 0.0), vols


# Near-the-money ITM puts with a small time value: the documented error is ~eps price / vega (the time
# value is formed in price space, price - DF max(w(F - K), 0)).
_ITM_POINTS = [  # (forward, strike, expiry, vol), puts
    (100.0, 101.0, 1.0, 0.002), (100.0, 100.5, 1.0, 0.001), (50.0, 50.5, 1.0, 0.0015)]


def _itm_points():
    rows = []
    for forward, strike, expiry, vol in _ITM_POINTS:
        price = lbr.black(forward, strike, vol, expiry, -1.0)
        log_kappa, _ = _log_kappa(price, forward, strike, vol * math.sqrt(expiry))
        rows.append((price, forward, strike, expiry, vol, math.exp(log_kappa)))
    return rows


def test_lets_be_rational_meets_the_documented_itm_accuracy():
    """The bound of the next test is achievable: LetsBeRational meets it on the same points."""
    for price, forward, strike, expiry, vol, kappa in _itm_points():
        implied = _lbr_iv(price, forward, strike, expiry, False)
        assert abs(implied - vol) / vol <= 4.0 * EPS * kappa


def test_in_the_money_accuracy_matches_the_docstring():
    rows = _itm_points()
    price, forward, strike, expiry, vol, kappa = map(np.array, zip(*rows))
    vols, reasons = _shoals_iv(price, forward, strike, expiry, 1.0, False)
    assert np.all(reasons == OK)
    assert np.all(_relative(vols, vol) <= 4.0 * EPS * kappa), _relative(vols, vol) / (EPS * kappa)


# Tiny total stdev near the money ("tiny time values"): s = x = 1e-6 ... 1e-4.
_TINY_STDEV_POINTS = [(-1e-6, 1e-6), (-1e-5, 1e-5), (-1e-4, 1e-4), (-2e-5, 5e-6)]  # (x = ln(F/K), s)
# Small stdev in the wings (h = x / s of -20 to -27); values checked against a quadrature of
# db/ds = exp(-(h^2 + s^2/4)/2) / sqrt(2 pi), which LetsBeRational matches to <1e-13.
_SMALL_STDEV_WING_POINTS = [(-0.05151, 0.002346), (-0.04558, 0.00184), (-0.8508, 0.03186)]


def test_normalised_black_price_at_tiny_stdev_near_the_money():
    """Jaeckel's small-t expansion (t < 0.21, h >= -10) keeps b to ~1e-14 relative where the erfcx
    difference cancels (it lost 5.4e-10 at x = s = 1e-6 before the expansion was added)."""
    x, s = map(np.array, zip(*_TINY_STDEV_POINTS))
    reference = np.array([lbr.normalised_black(xi, si, 1.0) for xi, si in _TINY_STDEV_POINTS])
    got = np.asarray(normalised_black_price(log_moneyness=x, stdev=s, is_call=True))
    assert np.all(_relative(got, reference) <= 1e-13), _relative(got, reference)


@pytest.mark.xfail(strict=True, reason=(
    "known limitation: for h = x/s < -10 with small s (far wings, tiny time value) b(x, s) is the erfcx "
    "difference, which loses ~eps |h| / t relative: b(-0.04558, 0.00184) ~ 6.7e-140 is 5.2e-12 off, "
    "b(-0.8508, 0.03186) ~ 2.5e-160 is 2e-13 off (LetsBeRational < 6e-14 with its asymptotic expansion). "
    "The implied vol error this causes is ~ that / h^2 < 1e-14 relative."))
def test_normalised_black_price_at_small_stdev_in_the_wings():
    points = _SMALL_STDEV_WING_POINTS
    x, s = map(np.array, zip(*points))
    reference = np.array([lbr.normalised_black(xi, si, 1.0) for xi, si in points])
    got = np.asarray(normalised_black_price(log_moneyness=x, stdev=s, is_call=True))
    assert np.all(_relative(got, reference) <= 1e-13), _relative(got, reference)


def test_out_of_the_money_tiny_stdev_matches_lets_be_rational_to_1e_12():
    forward, expiry = 100.0, 1.0
    rows = []
    for x, s in _TINY_STDEV_POINTS:
        strike = forward * math.exp(-x)
        rows.append((lbr.black(forward, strike, s, expiry, 1.0), strike, s))
    price, strike, vol = map(np.array, zip(*rows))
    reference = np.array([_lbr_iv(p, forward, k, expiry, True) for p, k, _ in rows])
    assert np.all(_relative(reference, vol) <= 1e-14)
    vols, reasons = _shoals_iv(price, forward, strike, expiry, 1.0, True)
    assert np.all(reasons == OK)
    assert np.all(_relative(vols, reference) <= 1e-12), _relative(vols, reference)

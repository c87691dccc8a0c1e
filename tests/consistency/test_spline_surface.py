"""The arbitrage-free spline surface (``shoals calibrate --model spline``) on tight markets.

* Synthetic: Heston smiles (v0 0.04, kappa 1.5, theta 0.06, xi 0.8, rho -0.7: not SVI-shaped), 6 expiries
  0.04-2 y, 41 strikes from the 5-delta put to the 5-delta call, a call and a put at each, bid/ask vols a
  mid -+ 0.05-0.1 vol points with the mid off the model by up to half the half spread
  (:func:`shoals.data.synthetic.tight_heston_quotes`).  The Heston prices are checked against QuantLib's
  AnalyticHestonEngine first (an independent oracle for the generator).
* Real: SPX 2011-01-24 (the packaged chain, 807 out-of-the-money quotes after cleaning, 15 expiries).

Asserted: >= 95 % (synthetic) and >= 97 % (SPX) of quotes inside bid/ask; no arbitrage by
:func:`shoals.arbitrage.checks.check_arbitrage` (g >= 0 on the node-scale density, calendar exact at the
union of nodes) and by the literal Black prices at the node strikes (convex); the Dupire local vol of the
synthetic fit reprices the surface's own Black prices within 1e-3 relative by an independent PDE (the one
of tests/consistency/test_local_vol_reprices.py).

Measured (2 cores): synthetic 100 % inside (RMSE 0.02 vol points against the quoted mids), SPX 100 %
inside; largest local-vol repricing error (strikes 80-120 %, T = 0.25, 0.75, 1.5) in the test's output.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_local_vol_reprices import black_prices, pde_prices

import shoals  # noqa: F401  (float64)
from shoals.arbitrage.checks import check_arbitrage
from shoals.calibration.spline import node_butterflies
from shoals.calibration.surface import calibrate_surface, overall_fit
from shoals.data.synthetic import TIGHT_EXPIRIES, heston_call_prices, tight_heston_quotes
from shoals.io.quotes import read_forwards, read_quotes
from shoals.market.local_vol import build_local_vol

SPOT, RATE, DIVIDEND = 100.0, 0.03, 0.01   # the market of test_local_vol_reprices' pde_prices and black_prices


def calibrated(path, **quote_options):
    table, cleaning = read_quotes(path, **quote_options)
    given = read_forwards(path, **quote_options)
    return calibrate_surface(table, cleaning, given_forwards=given, model="spline")


@pytest.fixture(scope="module")
def heston_fit(tmp_path_factory):
    path = tmp_path_factory.mktemp("heston") / "quotes.csv"
    tight_heston_quotes(spot=SPOT, rate=RATE, dividend=DIVIDEND).to_csv(path, index=False)
    return calibrated(path, spot=SPOT)


def test_heston_prices_match_quantlib():
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, day_count))
    process = ql.HestonProcess(flat, flat, ql.QuoteHandle(ql.SimpleQuote(1.0)), 0.04, 1.5, 0.06, 0.8, -0.7)
    engine = ql.AnalyticHestonEngine(ql.HestonModel(process), 1e-14, 100000)
    for days in (15, 182, 730):
        maturity = today + days
        expiry = day_count.yearFraction(today, maturity)
        k = np.linspace(-2.0, 1.0, 7) * np.sqrt(0.06 * expiry)
        ours = heston_call_prices(k, expiry)
        for kk, value in zip(k, ours):
            option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, float(np.exp(kk))),
                                      ql.EuropeanExercise(maturity))
            option.setPricingEngine(engine)
            assert value == pytest.approx(option.NPV(), abs=1e-12)


def assert_arbitrage_free(result):
    report = check_arbitrage(result.surface)
    assert report.ok, report.summary()
    slices = result.surface.params
    for k, w in zip(np.asarray(slices.k), np.asarray(slices.w)):
        butterflies, _ = node_butterflies(k, w)
        assert butterflies.min() >= -1e-12


def test_tight_heston_market_inside_bid_ask_and_arbitrage_free(heston_fit):
    overall = overall_fit(heston_fit.smiles, heston_fit.fit_table())
    print(overall)
    assert overall["inside_share"] >= 0.95
    assert heston_fit.fit.converged.all()
    assert_arbitrage_free(heston_fit)


def test_spx_inside_bid_ask_and_arbitrage_free():
    from importlib.resources import files

    result = calibrated(files("shoals.data") / "spx_20110124_clean.csv")
    overall = overall_fit(result.smiles, result.fit_table())
    print(overall)
    assert overall["inside_share"] >= 0.97
    assert_arbitrage_free(result)


def test_local_vol_of_the_fit_reprices_its_black_prices(heston_fit):
    snapshot = heston_fit.snapshot
    grid, report = build_local_vol(snapshot, n_times=201, n_spots=1601, t_max=1.5)
    strikes = np.linspace(80.0, 120.0, 9)
    errors = []
    for maturity in (0.25, 0.75, 1.5):
        reference, is_call = black_prices(snapshot, strikes, maturity)
        got = pde_prices(grid.vol, strikes, is_call, maturity, breaks=TIGHT_EXPIRIES, n_x=2401, dt=1 / 800,
                         half_width=2.4 * np.sqrt(maturity) + 0.2)
        errors.append(got / reference - 1.0)
    errors = np.asarray(errors)
    print("largest relative error", np.abs(errors).max(), report.summary())
    assert np.abs(errors).max() < 1e-3, errors

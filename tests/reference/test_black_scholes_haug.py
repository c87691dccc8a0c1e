"""Black-Scholes-Merton prices and Greeks against published textbook values.

Sources:

* E. G. Haug, *Option Pricing Formulas* (McGraw-Hill, 1998), pages as cited.  These worked examples
  (generalised BSM and its Greeks) reappear in chapters 1-2 of the 2nd edition, *The Complete Guide to
  Option Pricing Formulas* (2007); the 2nd-edition page numbers were not checked, so the 1998 pages
  are cited.  This is the data set QuantLib's own test suite uses (test-suite/europeanoption.cpp,
  ``testValues`` and ``testGreekValues``), which is where the inputs and page numbers come from.  Haug writes the generalised BSM with cost of carry b; with a continuous
  dividend yield b = r - q, so q = r - b (b = r: stock, b = 0: future, b = r - r_f: currency).
* J. C. Hull, *Options, Futures, and Other Derivatives*: the BSM example (S0 = 42, K = 40, r = 10%,
  sigma = 20%, T = 0.5; chapter "The Black-Scholes-Merton model", ch. 15 in the 8th ed.) and the
  running examples of chapter "The Greek letters" (ch. 19 in the 8th ed.): a call with S0 = 49, K = 50, r = 5%,
  sigma = 20%, T = 20 weeks, and the 4-month index put S0 = 305, K = 300, q = 3%, r = 8%, sigma = 25%.
  Hull's vega (66.44) and rho (-42.57) for that index put are left out on purpose: the exact values
  are 66.4479 and -42.5792, so the published figures carry Hull's intermediate rounding (of d1, N(d1))
  and are not the correctly rounded values; the entries kept here all agree to their last digit.
* The values quoted for shoals (S = K = 100, r = 5%, sigma = 20%, T = 1: 10.45058357 in the package
  docstring; 10.4506 / 5.5735 and the S = 80 / 120 calls 1.8594 / 26.169 as quoted in its docs).

Each published value is written as a string with the digits printed in the source; the tolerance is
half a unit in its last digit (the rounding of the published value), plus 1e-12 for the float -- with
one documented exception (Haug p. 24, 1.8734 for an exact 1.873345: one unit).
Units are shoals': theta per year (Haug's theta per day is theta / 365), vega and rho per 1.00.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.kernels.black_scholes import black_scholes_greeks, black_scholes_price


def _case(source, quantity, published, *, s, k, t, sigma, r, q=0.0, call=True, last_digit_units=0.5):
    """One published value; the tolerance is ``last_digit_units`` units in its last printed digit."""
    inputs = dict(spots=s, strikes=k, expiries=t, volatilities=sigma, rates=r, dividend_yields=q,
                  is_call=call)
    kind = "call" if call else "put"
    tolerance = last_digit_units * 10.0 ** Decimal(published).as_tuple().exponent + 1e-12
    return pytest.param(quantity, published, inputs, tolerance,
                        id=f"{source}-{kind}-{quantity}-{published}")


CASES = [
    # --- Haug (1998) pp. 2-8: the worked examples of chapter 1 --------------------------------------
    # Black-Scholes (1973), stock without dividends: S=60, X=65, T=0.25, r=0.08, b=r, sigma=0.30
    _case("haug-pp2-8-bs73", "price", "2.1334", s=60.0, k=65.0, t=0.25, sigma=0.30, r=0.08),
    # Merton (1973), dividend yield: S=100, X=95, T=0.5, r=0.10, q=0.05 (b=0.05), sigma=0.20
    _case("haug-pp2-8-merton73", "price", "2.4648", s=100.0, k=95.0, t=0.5, sigma=0.20, r=0.10, q=0.05,
          call=False),
    # Black (1976), futures: F=19, X=19, T=0.75, r=0.10, b=0 (q=r), sigma=0.28; c = p at the money
    _case("haug-pp2-8-black76", "price", "1.7011", s=19.0, k=19.0, t=0.75, sigma=0.28, r=0.10, q=0.10),
    _case("haug-pp2-8-black76", "price", "1.7011", s=19.0, k=19.0, t=0.75, sigma=0.28, r=0.10, q=0.10,
          call=False),
    # Garman-Kohlhagen (1983), currency: S=1.56, X=1.60, T=0.5, r=0.06, r_f=0.08 (q=r_f), sigma=0.12
    _case("haug-pp2-8-gk83", "price", "0.0291", s=1.56, k=1.60, t=0.5, sigma=0.12, r=0.06, q=0.08),
    # Generalised BSM: S=75, X=70, T=0.5, r=0.10, b=0.05 (q=0.05), sigma=0.35
    _case("haug-pp2-8-gbsm", "price", "4.0870", s=75.0, k=70.0, t=0.5, sigma=0.35, r=0.10, q=0.05,
          call=False),
    # --- Haug (1998) p. 27: European call with b = r - q = -0.04 (q > r) ------------------------------
    _case("haug-p27", "price", "5.0975", s=42.0, k=40.0, t=0.75, sigma=0.35, r=0.04, q=0.08),
    # --- Haug (1998) pp. 11-16: Greeks of the generalised BSM (chapter 2 of the 2nd ed.) -------------
    # delta, futures option: S=105, X=100, T=0.5, r=0.10, b=0 (q=r), sigma=0.36
    _case("haug-pp11-16", "delta", "0.5946", s=105.0, k=100.0, t=0.5, sigma=0.36, r=0.10, q=0.10),
    _case("haug-pp11-16", "delta", "-0.3566", s=105.0, k=100.0, t=0.5, sigma=0.36, r=0.10, q=0.10,
          call=False),
    # elasticity (lambda = delta S / V), same put
    _case("haug-pp11-16", "elasticity", "-4.8775", s=105.0, k=100.0, t=0.5, sigma=0.36, r=0.10, q=0.10,
          call=False),
    # gamma and vega: S=55, X=60, T=0.75, r=0.10, b=0.10 (q=0), sigma=0.30
    _case("haug-pp11-16", "gamma", "0.0278", s=55.0, k=60.0, t=0.75, sigma=0.30, r=0.10),
    _case("haug-pp11-16", "gamma", "0.0278", s=55.0, k=60.0, t=0.75, sigma=0.30, r=0.10, call=False),
    _case("haug-pp11-16", "vega", "18.9358", s=55.0, k=60.0, t=0.75, sigma=0.30, r=0.10),
    _case("haug-pp11-16", "vega", "18.9358", s=55.0, k=60.0, t=0.75, sigma=0.30, r=0.10, call=False),
    # theta, index put: S=430, X=405, T=0.0833 (as printed; one month), r=0.07, b=0.02 (q=0.05),
    # sigma=0.20: theta = -31.1924 per year, -0.0855 per day (theta / 365)
    _case("haug-pp11-16", "theta", "-31.1924", s=430.0, k=405.0, t=0.0833, sigma=0.20, r=0.07, q=0.05,
          call=False),
    _case("haug-pp11-16", "theta_per_day", "-0.0855", s=430.0, k=405.0, t=0.0833, sigma=0.20, r=0.07,
          q=0.05, call=False),
    # rho: S=72, X=75, T=1, r=0.09, b=r, sigma=0.19
    _case("haug-pp11-16", "rho", "38.7325", s=72.0, k=75.0, t=1.0, sigma=0.19, r=0.09),
    # --- Haug (1998) p. 24: table of European values, futures options (b=0): S in {90,100,110}, X=100,
    # r=0.10, q=r, T in {0.1, 0.5}, sigma in {0.15, 0.25, 0.35} ----------------------------------------
    # The at-the-money T=0.1, sigma=0.15 entry (call = put) is printed as 1.8734; the exact value is
    # 1.873345 (QuantLib's analytic engine gives the same), so that one entry is allowed one full unit
    # in the last digit -- QuantLib's own test allows 1e-4 on the whole table.
    *[_case("haug-p24", "price", value, s=s, k=100.0, t=t, sigma=sigma, r=0.10, q=0.10, call=call,
            last_digit_units=1.0 if value == "1.8734" else 0.5)
      for call, table in (
          (True, {(0.1, 0.15): ("0.0205", "1.8734", "9.9413"),
                  (0.1, 0.25): ("0.3150", "3.1217", "10.3556"),
                  (0.1, 0.35): ("0.9474", "4.3693", "11.1381"),
                  (0.5, 0.15): ("0.8069", "4.0232", "10.5769"),
                  (0.5, 0.25): ("2.7026", "6.6997", "12.7857"),
                  (0.5, 0.35): ("4.9329", "9.3679", "15.3086")}),
          (False, {(0.1, 0.15): ("9.9210", "1.8734", "0.0408"),
                   (0.1, 0.25): ("10.2155", "3.1217", "0.4551"),
                   (0.1, 0.35): ("10.8479", "4.3693", "1.2376"),
                   (0.5, 0.15): ("10.3192", "4.0232", "1.0646"),
                   (0.5, 0.25): ("12.2149", "6.6997", "3.2734"),
                   (0.5, 0.35): ("14.4452", "9.3679", "5.7963")}))
      for (t, sigma), values in table.items()
      for s, value in zip((90.0, 100.0, 110.0), values)],
    # --- Hull: BSM example (ch. 15 of the 8th ed.) ----------------------------------------------------
    _case("hull-bsm", "price", "4.76", s=42.0, k=40.0, t=0.5, sigma=0.20, r=0.10),
    _case("hull-bsm", "price", "0.81", s=42.0, k=40.0, t=0.5, sigma=0.20, r=0.10, call=False),
    # --- Hull: the Greek letters (ch. 19 of the 8th ed.), call S0=49, K=50, r=0.05, sigma=0.2, T=20/52 -
    _case("hull-greeks", "price", "2.40", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    _case("hull-greeks", "delta", "0.522", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    _case("hull-greeks", "gamma", "0.066", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    _case("hull-greeks", "vega", "12.1", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    _case("hull-greeks", "theta", "-4.31", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    _case("hull-greeks", "rho", "8.91", s=49.0, k=50.0, t=20.0 / 52.0, sigma=0.20, r=0.05),
    # 4-month index put, S0=305, K=300, q=0.03, r=0.08, sigma=0.25 (theta and gamma examples)
    _case("hull-index-put", "theta", "-18.15", s=305.0, k=300.0, t=4.0 / 12.0, sigma=0.25, r=0.08,
          q=0.03, call=False),
    _case("hull-index-put", "gamma", "0.00857", s=305.0, k=300.0, t=4.0 / 12.0, sigma=0.25, r=0.08,
          q=0.03, call=False),
    # --- shoals documentation: S=K=100, r=0.05, sigma=0.2, T=1 (and S = 80, 120) ----------------------
    _case("shoals-doc", "price", "10.45058357", s=100.0, k=100.0, t=1.0, sigma=0.20, r=0.05),
    _case("shoals-doc", "price", "10.4506", s=100.0, k=100.0, t=1.0, sigma=0.20, r=0.05),
    _case("shoals-doc", "price", "5.5735", s=100.0, k=100.0, t=1.0, sigma=0.20, r=0.05, call=False),
    _case("shoals-doc", "price", "1.8594", s=80.0, k=100.0, t=1.0, sigma=0.20, r=0.05),
    _case("shoals-doc", "price", "26.169", s=120.0, k=100.0, t=1.0, sigma=0.20, r=0.05),
]


def _computed(quantity, inputs):
    greeks = black_scholes_greeks(**inputs)
    if quantity == "elasticity":
        return float(greeks.delta * inputs["spots"] / greeks.price)
    if quantity == "theta_per_day":
        return float(greeks.theta) / 365.0
    return float(getattr(greeks, quantity))


@pytest.mark.parametrize("quantity, published, inputs, tolerance", CASES)
def test_published_value(quantity, published, inputs, tolerance):
    computed = _computed(quantity, inputs)
    assert abs(computed - float(published)) <= tolerance, (
        f"{quantity}: shoals {computed!r}, published {published} (tolerance {tolerance:g})")


def test_published_prices_through_the_price_kernel():
    """``black_scholes_price`` in one vectorised call over every published price above."""
    prices = [(published, inputs, tolerance) for quantity, published, inputs, tolerance
              in (c.values for c in CASES) if quantity == "price"]
    columns = {key: np.array([inputs[key] for _, inputs, _ in prices]) for key in prices[0][1]}
    computed = np.asarray(black_scholes_price(**columns))
    published = np.array([float(value) for value, _, _ in prices])
    tolerance = np.array([tolerance for _, _, tolerance in prices])
    assert computed.shape == published.shape
    assert np.all(np.abs(computed - published) <= tolerance), np.abs(computed - published) - tolerance

"""Closed form of the discretely monitored geometric-average-price Asian option under Black-Scholes.

With fixings t_i = i T / n (i = 1..n), ln G = (1/n) sum ln S_{t_i} is normal with

.. math:: \\mu = \\ln S + (r - q - \\sigma^2/2)\\,T\\,\\frac{n+1}{2n}, \\qquad
          v = \\sigma^2 T \\frac{(n+1)(2n+1)}{6 n^2}

(v = sigma^2 / n^2 sum_{i,j} min(t_i, t_j)), so the price is a Black formula on a lognormal G:

.. math:: V = e^{-rT} \\big[ w\\, e^{\\mu + v/2} N(w d_1) - w K N(w d_2) \\big],\\quad
          d_1 = \\frac{\\mu - \\ln K + v}{\\sqrt v},\\ d_2 = d_1 - \\sqrt v.

References: Kemna & Vorst, "A pricing method for options based on average asset values" (1990);
Haug, "The Complete Guide to Option Pricing Formulas" (2007) 4.20.1.
Validation: tests/reference/test_monte_carlo_quantlib.py::test_geometric_asian_closed_form_matches_quantlib
(QuantLib AnalyticDiscreteGeometricAveragePriceAsianEngine).
"""

from __future__ import annotations

import jax.numpy as jnp

from shoals.kernels.special import normal_cdf


def geometric_asian_price(*, spots, strikes, expiries, volatilities, rates, dividend_yields, fixings, is_call):
    """Discrete geometric-average-price Asian (fixed strike) price, broadcast over all inputs (see module)."""
    spots, strikes, expiries, vols, rates, dividends, n = (
        jnp.asarray(a, dtype=jnp.float64) for a in (spots, strikes, expiries, volatilities, rates, dividend_yields,
                                                     fixings))
    sign = jnp.where(jnp.asarray(is_call), 1.0, -1.0)
    mean = jnp.log(spots) + (rates - dividends - 0.5 * vols * vols) * expiries * (n + 1.0) / (2.0 * n)
    variance = vols * vols * expiries * (n + 1.0) * (2.0 * n + 1.0) / (6.0 * n * n)
    stdev = jnp.sqrt(variance)
    d1 = (mean - jnp.log(strikes) + variance) / stdev
    d2 = d1 - stdev
    forward = jnp.exp(mean + 0.5 * variance)
    return jnp.exp(-rates * expiries) * sign * (forward * normal_cdf(sign * d1) - strikes * normal_cdf(sign * d2))

"""Black-Scholes-Merton kernels: price and analytic Greeks, broadcast over arrays of any shape.

All functions are pure ``jax.numpy``: jit-, vmap- and grad-safe, keyword-only, plural argument names.
Conventions (base units, per unit of underlying):

* ``expiries`` T in years, ``volatilities`` sigma as 0.20, ``rates`` r and ``dividend_yields`` q
  continuous;
* vega = dV/dsigma (per 1.00 of vol), theta = dV/dt = -dV/dT (per year of calendar time passing),
  rho = dV/dr, vanna = d2V/dS dsigma, volga = d2V/dsigma2, charm = d(delta)/dt = -d(delta)/dT.

Limits: the option is priced on the forward, F = S e^{(r-q)T}, with total standard deviation
s = sigma sqrt(T).  When s = 0 (T -> 0 or sigma -> 0) the kernels return the limits: price
DF max(w(F - K), 0), delta the discounted digital w e^{-qT} 1{w(F-K) > 0} (1/2 at the money),
vanna, volga and the diffusive part of charm 0, vega 0 away from the money and its sigma -> 0+ limit
S e^{-qT} sqrt(T) n(0) at the forward; gamma 0 away from the money and +inf at it
(the Dirac mass of the payoff's kink), theta -inf at the money when T = 0 and sigma > 0.  No value is
ever NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from shoals.kernels.special import normal_cdf

_INV_SQRT_2PI = 0.3989422804014327


def _normal_pdf(x):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


class BlackScholesGreeks(NamedTuple):
    """Price and first/second-order sensitivities of a European option (see module docstring)."""

    price: jnp.ndarray
    delta: jnp.ndarray
    gamma: jnp.ndarray
    vega: jnp.ndarray
    theta: jnp.ndarray
    rho: jnp.ndarray
    vanna: jnp.ndarray
    volga: jnp.ndarray
    charm: jnp.ndarray


def _moneyness_terms(spots, strikes, expiries, volatilities, rates, dividend_yields, is_call):
    """Broadcast inputs (``is_call`` included) and return them with sign w, d1, d2 and safe limits.

    d_{1,2} = [ln(F/K) +- s^2/2] / s with s = sigma sqrt(T); for s = 0 they are +-inf by the sign of
    ln(F/K) and 0 at the money, so N(d) gives the correct digital limits without NaN.
    """
    spots, strikes, expiries, volatilities, rates, dividend_yields, is_call = jnp.broadcast_arrays(
        *(jnp.asarray(a, dtype=jnp.float64) for a in
          (spots, strikes, expiries, volatilities, rates, dividend_yields)), jnp.asarray(is_call))
    sign = jnp.where(is_call, 1.0, -1.0)
    alive = expiries > 0.0
    sqrt_t = jnp.where(alive, jnp.sqrt(jnp.where(alive, expiries, 1.0)), 0.0)
    stdev = volatilities * sqrt_t
    positive = stdev > 0.0
    safe_stdev = jnp.where(positive, stdev, 1.0)
    log_moneyness = jnp.log(spots / strikes) + (rates - dividend_yields) * expiries
    d1_regular = log_moneyness / safe_stdev + 0.5 * safe_stdev
    d2_regular = d1_regular - safe_stdev
    limit = jnp.where(log_moneyness > 0.0, jnp.inf, jnp.where(log_moneyness < 0.0, -jnp.inf, 0.0))
    d1 = jnp.where(positive, d1_regular, limit)
    d2 = jnp.where(positive, d2_regular, limit)
    return (spots, strikes, expiries, volatilities, rates, dividend_yields, sign,
            sqrt_t, positive, safe_stdev, d1, d2)


def black_scholes_price(*, spots, strikes, expiries, volatilities, rates=0.0,
                        dividend_yields=0.0, is_call=True):
    """Black-Scholes-Merton price of European options, broadcast over all inputs.

    .. math::
        C = S e^{-qT} N(d_1) - K e^{-rT} N(d_2),\\quad P = K e^{-rT} N(-d_2) - S e^{-qT} N(-d_1),
        \\quad d_{1,2} = \\frac{\\ln(S/K) + (r - q \\pm \\sigma^2/2) T}{\\sigma\\sqrt{T}}

    Far out of the money the two terms nearly cancel: the relative accuracy of the price degrades like
    eps |ln(F/K)| / (sigma^2 T) while the absolute error stays ~ eps S.

    References: Hull, *Options, Futures and Other Derivatives*, ch. 15 and 17; Haug, *The Complete
    Guide to Option Pricing Formulas* (2007), 1.1.
    Validation: tests/reference/test_black_scholes_quantlib.py, tests/reference/test_black_scholes_haug.py,
    tests/properties/test_black_scholes_properties.py.
    """
    (spots, strikes, expiries, _, rates, dividend_yields, sign,
     _, _, _, d1, d2) = _moneyness_terms(spots, strikes, expiries, volatilities, rates, dividend_yields, is_call)
    discounted_spot = spots * jnp.exp(-dividend_yields * expiries)
    discounted_strike = strikes * jnp.exp(-rates * expiries)
    return sign * (discounted_spot * normal_cdf(sign * d1) - discounted_strike * normal_cdf(sign * d2))


def black_scholes_greeks(*, spots, strikes, expiries, volatilities, rates=0.0,
                         dividend_yields=0.0, is_call=True) -> BlackScholesGreeks:
    """Price and analytic Greeks (delta, gamma, vega, theta, rho, vanna, volga, charm) of European options.

    With w = +1 (call) / -1 (put), n the normal density, s = sigma sqrt(T):

    .. math::
        \\Delta = w e^{-qT} N(w d_1),\\quad \\Gamma = \\frac{e^{-qT} n(d_1)}{S s},
        \\quad \\mathcal{V} = S e^{-qT} n(d_1) \\sqrt{T},\\\\
        \\Theta = -\\frac{S e^{-qT} n(d_1) \\sigma}{2\\sqrt{T}} - w r K e^{-rT} N(w d_2)
                  + w q S e^{-qT} N(w d_1),\\quad \\rho = w K T e^{-rT} N(w d_2),\\\\
        \\text{vanna} = -e^{-qT} n(d_1) d_2 / \\sigma,\\quad \\text{volga} = \\mathcal{V} d_1 d_2 / \\sigma,
        \\quad \\text{charm} = w q e^{-qT} N(w d_1)
                 - e^{-qT} n(d_1) \\frac{2(r-q)T - d_2 s}{2 T s}.

    Theta and charm are derivatives in calendar time (t = -T).  At s = 0 every Greek takes its limit
    (see the module docstring); none is NaN.

    References: Haug (2007), 2.1-2.3 (Greeks of the generalised BSM formula); Hull ch. 19.
    Validation: tests/reference/test_black_scholes_quantlib.py (QuantLib AnalyticEuropeanEngine),
    tests/unit/test_black_scholes_autodiff.py (AD vs analytic to 1e-10), tests/unit/test_black_scholes_limits.py.
    """
    (spots, strikes, expiries, volatilities, rates, dividend_yields, sign,
     sqrt_t, positive, safe_stdev, d1, d2) = _moneyness_terms(
        spots, strikes, expiries, volatilities, rates, dividend_yields, is_call)
    dividend_discount = jnp.exp(-dividend_yields * expiries)
    rate_discount = jnp.exp(-rates * expiries)
    cdf1 = normal_cdf(sign * d1)
    cdf2 = normal_cdf(sign * d2)
    pdf1 = _normal_pdf(d1)
    at_the_money_limit = ~positive & (d1 == 0.0)

    price = sign * (spots * dividend_discount * cdf1 - strikes * rate_discount * cdf2)
    delta = sign * dividend_discount * cdf1
    gamma = jnp.where(positive, dividend_discount * pdf1 / (spots * safe_stdev),
                      jnp.where(at_the_money_limit, jnp.inf, 0.0))
    vega = spots * dividend_discount * pdf1 * sqrt_t
    safe_sqrt_t = jnp.where(sqrt_t > 0.0, sqrt_t, 1.0)
    decay = jnp.where(positive, -spots * dividend_discount * pdf1 * volatilities / (2.0 * safe_sqrt_t),
                      jnp.where(at_the_money_limit & (volatilities > 0.0), -jnp.inf, 0.0))
    theta = (decay - sign * rates * strikes * rate_discount * cdf2
             + sign * dividend_yields * spots * dividend_discount * cdf1)
    rho = sign * strikes * expiries * rate_discount * cdf2
    safe_vol = jnp.where(volatilities > 0.0, volatilities, 1.0)
    vanna = jnp.where(positive, -dividend_discount * pdf1 * d2 / safe_vol, 0.0)
    volga = jnp.where(positive, vega * d1 * d2 / safe_vol, 0.0)
    safe_t = jnp.where(expiries > 0.0, expiries, 1.0)
    # n(d1) [2(r-q)T - d2 s] / (2 T s) written as n(d1) [(r-q)/s - d2/(2T)] so that 2 T s cannot underflow.
    drift_term = jnp.where(
        positive & (pdf1 > 0.0),
        dividend_discount * pdf1 * ((rates - dividend_yields) / safe_stdev - d2 / (2.0 * safe_t)),
        0.0)
    charm = sign * dividend_yields * dividend_discount * cdf1 - drift_term
    return BlackScholesGreeks(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho,
                              vanna=vanna, volga=volga, charm=charm)


def black_scholes_greeks_autodiff(*, spots, strikes, expiries, volatilities, rates=0.0,
                                  dividend_yields=0.0, is_call=True) -> BlackScholesGreeks:
    """The Greeks of :func:`black_scholes_greeks` by automatic differentiation of the price kernel.

    First order by reverse mode (``jax.grad`` of the summed prices: each price depends only on its own
    inputs, so the gradient of the sum is the elementwise derivative); second order by forward mode over
    the gradient (``jax.jvp``), e.g. gamma = d/dS (dV/dS), charm = -d/dT (dV/dS).  Used as the
    independent check of the analytic formulas and as the template for Greeks of any JAX pricer.

    Validation: tests/unit/test_black_scholes_autodiff.py (agreement with the analytic Greeks to 1e-10).
    """
    *inputs, calls = jnp.broadcast_arrays(
        *(jnp.asarray(a, dtype=jnp.float64) for a in (spots, strikes, expiries, volatilities, rates,
                                                      dividend_yields)), jnp.asarray(is_call))
    spot_, vol_, expiry_, rate_ = 0, 3, 2, 4

    def total_price(s, k, t, v, r, q):
        return jnp.sum(black_scholes_price(spots=s, strikes=k, expiries=t, volatilities=v, rates=r,
                                           dividend_yields=q, is_call=calls))

    gradient = jax.grad(total_price, argnums=(spot_, expiry_, vol_, rate_))

    def directional(argnum):
        tangents = tuple(jnp.ones_like(a) if i == argnum else jnp.zeros_like(a)
                         for i, a in enumerate(inputs))
        return jax.jvp(gradient, tuple(inputs), tangents)

    (delta, d_expiry, vega, rho), (gamma, _, vanna, _) = directional(spot_)
    _, (d_delta_d_expiry, _, _, _) = directional(expiry_)
    _, (_, _, volga, _) = directional(vol_)
    price = black_scholes_price(spots=inputs[0], strikes=inputs[1], expiries=inputs[2],
                                volatilities=inputs[3], rates=inputs[4], dividend_yields=inputs[5],
                                is_call=calls)
    return BlackScholesGreeks(price=price, delta=delta, gamma=gamma, vega=vega, theta=-d_expiry,
                              rho=rho, vanna=vanna, volga=volga, charm=-d_delta_d_expiry)

"""Implied volatility of European options to machine precision, vectorised and jit-safe.

The solver follows the structure of Jaeckel's "Let's be rational" (Wilmott 2015): it works on the
normalised Black price of the out-of-the-money option,

.. math::
    b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),\\qquad x = \\ln(F/K) \\le 0,
    \\quad s = \\sigma\\sqrt{T},

(in-the-money prices are mapped by put-call parity, puts by b_put(x) = b_call(-x)), splits the
price range at the inflection point s_c = sqrt(2|x|) into three zones and iterates on the objective
that is nearly linear in each:

* low zone (beta < b_l): ln b(s) - ln beta, with b evaluated as
  (1/2) e^{-(h^2+t^2)/2} [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)], h = x/s, t = s/2, so that
  prices down to the smallest float (deep wings, tiny time values) keep full relative precision;
* middle zone: b(s) - beta;
* high zone (beta > b_u): ln(b_max - b(s)) with b_max - b = e^{x/2} N(-h-t) + e^{-x/2} N(h-t)
  summed in log space (no cancellation near the upper bound).

Newton steps are safeguarded by a bracket that every evaluation tightens (bisection in log s when a
step leaves it), so convergence does not depend on the starting point; the start is the zone's
asymptotic inversion.  An element stops when its relative step falls below 4 eps, or below 1e-12 without
shrinking (the residual's rounding noise); the loop when all have.

Prices outside the no-arbitrage bounds give NaN and a reason code (:data:`REASONS`), never a wrong vol.

References: P. Jaeckel, "Let's be rational", Wilmott (2015) 40-53; Jaeckel, "By implication",
Wilmott (2006).  Validation: tests/unit/test_implied_vol.py (round trip on 1M random points,
deep wings, tiny time values, bounds), tests/reference/test_implied_vol_reference.py
(py_lets_be_rational and QuantLib).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from shoals.kernels.special import erfcx, log_ndtr, normal_cdf

_SQRT_HALF = 0.7071067811865476
_LOG_SQRT_2PI = 0.9189385332046728
_EPS = float(jnp.finfo(jnp.float64).eps)
_MAX_ITERATIONS = 100
_NOISE_FLOOR = 1e-12

OK, NOT_FINITE, BELOW_INTRINSIC, ABOVE_MAXIMUM, BAD_INPUT = 0, 1, 2, 3, 4
REASONS = {
    OK: "ok",
    NOT_FINITE: "price or input is NaN or infinite",
    BELOW_INTRINSIC: "price below intrinsic value (no-arbitrage lower bound)",
    ABOVE_MAXIMUM: "price at or above the no-arbitrage upper bound (discounted forward for a call, "
                   "discounted strike for a put)",
    BAD_INPUT: "non-positive forward, strike, expiry or discount factor",
}


_SMALL_T = 0.21
_SMALL_T_MIN_H = -10.0


def _small_t_expansion(h, t):
    """Jaeckel's Taylor expansion of the odd part in t of e^{ht} N(h+t) (LBR, "small t expansion"):
    b = (2t / sqrt(2 pi)) e^{-(h^2+t^2)/2} [a + t^2 (...) + ... + t^12 (...)],  a = 1 + h Y(h),
    Y(h) = N(h)/n(h) = sqrt(pi/2) erfcx(-h/sqrt2).  Returns the bracket times 2t (relative accuracy ~1e-14
    for t < 0.21, h >= -10)."""
    a = 1.0 + h * (0.5 * jnp.sqrt(2.0 * jnp.pi)) * erfcx(-_SQRT_HALF * h)
    w = t * t
    h2 = h * h
    series = (-89055 + 135135 * a + h2 * (-82845 + 270270 * a + h2 * (-20370 + 135135 * a + h2 * (
        -1926 + 25740 * a + h2 * (-75 + 2145 * a + h2 * (-1 + 78 * a + a * h2)))))) * w / 6227020800.0
    series = w * ((-6555 + 10395 * a + h2 * (-4680 + 17325 * a + h2 * (-840 + 6930 * a + h2 * (
        -52 + 990 * a + h2 * (-1 + 55 * a + a * h2))))) / 39916800 + series)
    series = w * ((-561 + 945 * a + h2 * (-285 + 1260 * a + h2 * (-33 + 378 * a + h2 * (
        -1 + 36 * a + a * h2)))) / 362880 + series)
    series = w * ((-57 + 105 * a + h2 * (-18 + 105 * a + h2 * (-1 + 21 * a + a * h2))) / 5040 + series)
    series = w * ((-7 + 15 * a + h2 * (-1 + 10 * a + a * h2)) / 120 + series)
    series = w * ((-1 + 3 * a + a * h2) / 6 + series)
    return 2.0 * t * (a + series)


def _log_normalised_otm_call(x, s):
    """ln b(x, s) for x <= 0, s > 0, accurate to relative precision even when b underflows.

    Three evaluations (after Jaeckel 2015): the small-t expansion for t = s/2 < 0.21 and h = x/s >= -10
    (where the erfcx difference below cancels), the erfcx form
    (1/2) e^{-(h^2+t^2)/2} [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)] for h + t <= 0, and the direct
    e^{x/2} N(h+t) - e^{-x/2} N(h-t) above.
    """
    h = x / s
    t = 0.5 * s
    exponent = -0.5 * (h * h + t * t)
    small = (t < _SMALL_T) & (h >= _SMALL_T_MIN_H)
    expansion = exponent - _LOG_SQRT_2PI + jnp.log(_small_t_expansion(jnp.where(small, h, -1.0),
                                                                      jnp.where(small, t, 0.1)))
    scaled = jnp.log(0.5 * (erfcx(-(h + t) * _SQRT_HALF) - erfcx(-(h - t) * _SQRT_HALF)))
    low = exponent + scaled
    high = jnp.log(jnp.exp(0.5 * x) * normal_cdf(h + t) - jnp.exp(-0.5 * x) * normal_cdf(h - t))
    return jnp.where(small, expansion, jnp.where(h + t <= 0.0, low, high))


def _log_normalised_time_value_gap(x, s):
    """ln(b_max - b(x, s)) = ln(e^{x/2} N(-h-t) + e^{-x/2} N(h-t)), summed in log space."""
    h = x / s
    t = 0.5 * s
    return jnp.logaddexp(0.5 * x + log_ndtr(-h - t), -0.5 * x + log_ndtr(h - t))


def _log_normalised_vega(x, s):
    """ln db/ds = -(h^2 + t^2)/2 - ln sqrt(2 pi)."""
    h = x / s
    t = 0.5 * s
    return -0.5 * (h * h + t * t) - _LOG_SQRT_2PI


def normalised_black_price(*, log_moneyness, stdev, is_call=True):
    """Normalised Black price b = price / (DF sqrt(F K)) of a call (or put) at x = ln(F/K), s = sigma sqrt(T).

    .. math:: b = \\theta [e^{x/2} N(\\theta(x/s + s/2)) - e^{-x/2} N(\\theta(x/s - s/2))]

    Evaluated as intrinsic + out-of-the-money part, the latter in the erfcx form for relative accuracy.
    """
    x = jnp.asarray(log_moneyness, dtype=jnp.float64)
    s = jnp.asarray(stdev, dtype=jnp.float64)
    theta = jnp.where(jnp.asarray(is_call), 1.0, -1.0)
    intrinsic = jnp.maximum(theta * (jnp.exp(0.5 * x) - jnp.exp(-0.5 * x)), 0.0)
    x_otm = -jnp.abs(x)
    s_safe = jnp.where(s > 0.0, s, 1.0)
    time_value = jnp.where(s > 0.0, jnp.exp(_log_normalised_otm_call(x_otm, s_safe)), 0.0)
    return intrinsic + time_value


def _solve_normalised(log_beta, x):
    """Solve b(x, s) = beta for s, x <= 0, 0 < beta < e^{x/2}, given ln beta. Returns (s, iterations)."""
    beta = jnp.exp(log_beta)
    b_max = jnp.exp(0.5 * x)
    s_c = jnp.sqrt(-2.0 * x)
    s_c_safe = jnp.where(s_c > 0.0, s_c, 1.0)
    b_c = jnp.where(s_c > 0.0, jnp.exp(_log_normalised_otm_call(x, s_c_safe)), 0.0)
    vega_c = jnp.exp(_log_normalised_vega(x, s_c_safe))
    vega_c = jnp.where(s_c > 0.0, vega_c, 1.0 / jnp.sqrt(2.0 * jnp.pi))
    s_l = s_c - b_c / vega_c
    s_u = s_c + (b_max - b_c) / vega_c
    b_l = jnp.where(s_l > 0.0, jnp.exp(_log_normalised_otm_call(x, jnp.where(s_l > 0.0, s_l, 1.0))), 0.0)
    b_u = jnp.exp(_log_normalised_otm_call(x, s_u))
    zone_low = beta < b_l
    zone_high = beta > b_u
    log_gap_beta = jnp.log(b_max - beta)

    # Starting points: asymptotic inversions per zone, clipped into the zone's s-range.
    two_log_beta = 2.0 * log_beta
    guess_low = jnp.sqrt(2.0 * x * x / (-two_log_beta + jnp.sqrt(jnp.maximum(two_log_beta ** 2 - x * x, 0.0))))
    guess_mid = s_c + (beta - b_c) / vega_c
    guess_high = -2.0 * ndtri(0.5 * (b_max - beta) / jnp.cosh(0.5 * x))
    guess = jnp.where(zone_low, guess_low, jnp.where(zone_high, guess_high, guess_mid))
    lower = jnp.where(zone_high, s_u, jnp.where(zone_low, 0.0, jnp.maximum(s_l, 0.0)))
    upper = jnp.where(zone_low, s_l, jnp.where(zone_high, jnp.inf, s_u))
    inside = (guess > lower) & (guess < upper) & jnp.isfinite(guess)
    fallback = jnp.where(jnp.isfinite(upper), jnp.where(lower > 0.0, 0.5 * (lower + upper), 0.5 * upper),
                         2.0 * lower)
    s0 = jnp.where(inside, guess, fallback)

    def residual_and_slope(s):
        log_b = _log_normalised_otm_call(x, s)
        log_vega = _log_normalised_vega(x, s)
        log_gap = _log_normalised_time_value_gap(x, s)
        residual = jnp.where(zone_low, log_b - log_beta,
                             jnp.where(zone_high, log_gap_beta - log_gap, jnp.exp(log_b) - beta))
        slope = jnp.where(zone_low, jnp.exp(log_vega - log_b),
                          jnp.where(zone_high, jnp.exp(log_vega - log_gap), jnp.exp(log_vega)))
        return residual, slope

    def body(state):
        s, lo, hi, previous_step, done, iteration = state
        residual, slope = residual_and_slope(s)
        lo = jnp.where(residual < 0.0, s, lo)
        hi = jnp.where(residual > 0.0, s, hi)
        newton = s - residual / slope
        bisection = jnp.where(jnp.isfinite(hi), jnp.where(lo > 0.0, jnp.sqrt(lo * hi), 0.5 * hi), 2.0 * lo)
        ok_step = jnp.isfinite(newton) & (newton >= lo) & (newton <= hi)
        s_next = jnp.where(done | (residual == 0.0), s, jnp.where(ok_step, newton, bisection))
        step = jnp.abs(s_next - s)
        # Converged at machine precision, or at the noise floor of the residual: a Newton step that is
        # already tiny and no smaller than the one before it only moves s around the root by rounding.
        at_noise_floor = ok_step & (step <= _NOISE_FLOOR * s_next) & (step >= previous_step)
        iteration = iteration + ~done
        done = done | (step <= 4.0 * _EPS * s_next) | at_noise_floor
        return s_next, lo, hi, step, done, iteration

    def not_done(state):
        return ~jnp.all(state[4]) & (jnp.max(state[5]) < _MAX_ITERATIONS)

    state = (s0, lower, upper, jnp.full(s0.shape, jnp.inf), jnp.zeros(s0.shape, dtype=bool),
             jnp.zeros(s0.shape, dtype=jnp.int32))
    s, _, _, _, _, iterations = jax.lax.while_loop(not_done, body, state)
    return s, iterations


@jax.jit
def implied_volatility(*, prices, forwards, strikes, expiries, discount_factors=1.0, is_call=True):
    """Black implied volatility from option prices; returns ``(vols, reasons)``.

    Solves  price = DF [theta (F N(theta d1) - K N(theta d2))]  for sigma, broadcast over all inputs.
    For an equity with spot S, rate r and dividend yield q use F = S e^{(r-q)T} and DF = e^{-rT}.
    ``reasons`` is an int array (0 = ok); see :data:`REASONS`.  Where the reason is not 0 the vol is NaN.
    A price exactly at intrinsic value returns 0.

    Accuracy: the relative error of sigma is a few ulps of what the input price determines; for an
    in-the-money price the time value is recovered by subtracting the intrinsic value DF max(w(F-K), 0)
    in price space, so the vol error there grows like eps * price / vega (as in every parity-based
    solver, including Jaeckel's).  A price below intrinsic by no more than 4 eps (rounding of the price
    formula) counts as at intrinsic and returns 0.
    """
    prices, forwards, strikes, expiries, discount_factors, calls = jnp.broadcast_arrays(
        *(jnp.asarray(a, dtype=jnp.float64) for a in (prices, forwards, strikes, expiries, discount_factors)),
        jnp.asarray(is_call))
    finite = (jnp.isfinite(prices) & jnp.isfinite(forwards) & jnp.isfinite(strikes)
              & jnp.isfinite(expiries) & jnp.isfinite(discount_factors))
    valid_inputs = (forwards > 0.0) & (strikes > 0.0) & (expiries > 0.0) & (discount_factors > 0.0)
    safe = finite & valid_inputs
    forwards = jnp.where(safe, forwards, 1.0)
    strikes = jnp.where(safe, strikes, 1.0)
    expiries = jnp.where(safe, expiries, 1.0)
    discount_factors = jnp.where(safe, discount_factors, 1.0)

    theta = jnp.where(calls, 1.0, -1.0)
    x = jnp.log(forwards / strikes)
    x_otm = -jnp.abs(x)
    # Time value in price space: F - K is exact to one rounding, so the error of the recovered vol is
    # eps * price / vega, not eps * sqrt(F K) / vega as after normalising.  A price below intrinsic by
    # no more than rounding (4 eps) is taken as at intrinsic.
    intrinsic = discount_factors * jnp.maximum(theta * (forwards - strikes), 0.0)
    time_value = prices - intrinsic
    rounding = 4.0 * _EPS * jnp.maximum(jnp.abs(prices), intrinsic)
    at_intrinsic = (time_value <= rounding) & (time_value >= -rounding) & (prices >= 0.0)
    below = (time_value < -rounding) | (prices < 0.0)
    above = prices >= discount_factors * jnp.where(calls, forwards, strikes)
    log_beta_otm = (jnp.log(jnp.abs(time_value)) - jnp.log(discount_factors)
                    - 0.5 * (jnp.log(forwards) + jnp.log(strikes)))
    solvable = safe & ~below & ~above & ~at_intrinsic
    log_beta_safe = jnp.where(solvable, log_beta_otm, 0.5 * x_otm - jnp.log(2.0))
    stdev, _ = _solve_normalised(log_beta_safe, x_otm)

    reasons = jnp.where(~finite, NOT_FINITE,
                        jnp.where(~valid_inputs, BAD_INPUT,
                                  jnp.where(below, BELOW_INTRINSIC,
                                            jnp.where(above, ABOVE_MAXIMUM, OK))))
    vols = jnp.where(at_intrinsic, 0.0, stdev / jnp.sqrt(expiries))
    return jnp.where(reasons == OK, vols, jnp.nan), reasons

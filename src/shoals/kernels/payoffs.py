"""Path payoffs as scan observers: each family reads a simulated log-price path step by step.

An observer is three pure ``jax.numpy`` functions on one trade's ``terms`` (a dict of scalars) and arrays of
samples: ``init(terms, x0) -> state``; ``step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform)
-> state`` for the step from ln S = x0 to x1 (``spot1`` = e^{x1} when the observer ``needs_spot``, else
None) with integrated variance sigma^2 dt, discount factor
D(t_{j+1}) at its end and ``fixing`` True when t_{j+1} is a fixing / reset / monitoring date; and
``final(terms, state, x_T, discount_T) -> (payoff, control)`` giving the discounted payoff and a control
variate sample.  The control is the family's own (``terms['cv_own']`` = 1: the vanilla payoff for
barriers, the geometric average payoff for fixed-strike Asians; both have closed forms under flat vol) or
else the discounted terminal spot D(T) S_T, whose mean S_0 e^{-int q} is exact under any model simulated
with the exact forward drift (log-Euler included).

Continuous monitoring uses the Brownian bridge between the simulated points (exact for GBM):

* barrier H, log-distance a_k = ln H - x_k: the path crosses within the step with probability
  exp(-2 a_0 a_1 / (sigma^2 dt)) when both ends lie on the alive side (else 1); the estimator carries
  the survival probability P = prod (1 - p_j) (a conditional expectation: smooth, lower variance) and,
  for rebates paid at the hit, sum_j P_{j-1} p_j D(t_{j+1}), i.e. the hit time is approximated by the
  end of its step (bias O(dt) in the discounting only);
* lookback extremes: the maximum of the bridge from x0 to x1 is exactly
  (x0 + x1 + sqrt((x1 - x0)^2 - 2 sigma^2 dt ln U)) / 2, U uniform (the minimum with a minus sign).

References: Glasserman, "Monte Carlo Methods in Financial Engineering" (2003) 6.4 (barriers, extremes);
Beaglehole, Dybvig & Zhou, "Going to extremes" (1997).
Validation: tests/reference/test_monte_carlo_quantlib.py (every family vs QuantLib under flat vol).
"""

from __future__ import annotations

import jax.numpy as jnp


def _vanilla(terms, spot):
    return jnp.maximum(terms["sign"] * (spot - terms["strike"]), 0.0)


def _control(terms, own, x_t, discount_t):
    return jnp.where(terms["cv_own"] > 0.0, own, discount_t * jnp.exp(x_t))


class European:
    """max(w(S_T - K), 0), discounted."""

    needs_uniforms = False
    needs_spot = False

    @staticmethod
    def init(terms, x0):
        return ()

    @staticmethod
    def step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform):
        return state

    @staticmethod
    def final(terms, state, x_t, discount_t):
        value = discount_t * _vanilla(terms, jnp.exp(x_t))
        return value, _control(terms, value, x_t, discount_t)


class Barrier:
    """Single barrier, in or out, rebate, continuous (bridge) or discrete monitoring.

    out: D(T) v(S_T) P + R [sum_j P_{j-1} p_j D(t_{j+1}) at the hit, or D(T)(1 - P) at maturity];
    in: D(T) v(S_T) (1 - P) + R D(T) P, with P the survival probability of the path.
    """

    needs_uniforms = False
    needs_spot = False

    @staticmethod
    def init(terms, x0):
        return jnp.ones_like(x0), jnp.zeros_like(x0)

    @staticmethod
    def step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform):
        survival, hit_value = state
        side = terms["side"]                      # +1: up barrier (alive below), -1: down
        a0 = side * (terms["log_barrier"] - x0)
        a1 = side * (terms["log_barrier"] - x1)
        alive = (a0 > 0.0) & (a1 > 0.0)
        safe_variance = jnp.where(variance > 0.0, variance, 1.0)
        crossing = jnp.where(variance > 0.0, jnp.exp(-2.0 * a0 * a1 / safe_variance), 0.0)
        continuous = jnp.where(alive, 1.0 - crossing, 0.0)
        discrete = jnp.where(fixing, (a1 > 0.0).astype(x1.dtype), 1.0)
        survive = jnp.where(terms["continuous"] > 0.0, continuous, discrete)
        return survival * survive, hit_value + survival * (1.0 - survive) * discount1

    @staticmethod
    def final(terms, state, x_t, discount_t):
        survival, hit_value = state
        vanilla = discount_t * _vanilla(terms, jnp.exp(x_t))
        out_rebate = jnp.where(terms["at_hit"] > 0.0, hit_value, discount_t * (1.0 - survival))
        knock_out = vanilla * survival + terms["rebate"] * out_rebate
        knock_in = vanilla * (1.0 - survival) + terms["rebate"] * discount_t * survival
        value = jnp.where(terms["knock_in"] > 0.0, knock_in, knock_out)
        return value, _control(terms, vanilla, x_t, discount_t)


class Lookback:
    """Floating call S_T - min S, put max S - S_T; fixed call max(max S - K, 0), put max(K - min S, 0),
    with the running extreme m_0 (``log_extreme``) and the exact bridge extreme of every step."""

    needs_uniforms = True
    needs_spot = False

    @staticmethod
    def init(terms, x0):
        side = terms["side"]                      # +1: track the maximum, -1: the minimum
        return side * jnp.maximum(side * terms["log_extreme"], side * x0)

    @staticmethod
    def step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform):
        side = terms["side"]
        square = (x1 - x0) ** 2 - 2.0 * variance * jnp.log(uniform)
        # zero-length (padding) steps: no excursion, and no infinite derivative of sqrt at 0
        spread = jnp.where(variance > 0.0, jnp.sqrt(jnp.where(variance > 0.0, square, 1.0)), jnp.abs(x1 - x0))
        extreme = 0.5 * (x0 + x1 + side * spread)
        return side * jnp.maximum(side * state, side * extreme)

    @staticmethod
    def final(terms, state, x_t, discount_t):
        spot, extreme = jnp.exp(x_t), jnp.exp(state)
        floating = terms["sign"] * (spot - extreme)
        fixed = jnp.maximum(terms["sign"] * (extreme - terms["strike"]), 0.0)
        value = discount_t * jnp.where(terms["floating"] > 0.0, floating, fixed)
        return value, _control(terms, value, x_t, discount_t)


class Asian:
    """Arithmetic A = (1/n) sum S_{t_i} or geometric exp((1/n) sum ln S_{t_i}); fixed max(w(A - K), 0),
    floating max(w(S_T - A), 0).  The own control is the fixed-strike geometric payoff."""

    needs_uniforms = False
    needs_spot = True

    @staticmethod
    def init(terms, x0):
        return jnp.zeros_like(x0), jnp.zeros_like(x0)

    @staticmethod
    def step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform):
        total, log_total = state
        return total + jnp.where(fixing, spot1, 0.0), log_total + jnp.where(fixing, x1, 0.0)

    @staticmethod
    def final(terms, state, x_t, discount_t):
        total, log_total = state
        geometric = jnp.exp(log_total / terms["fixings"])
        average = jnp.where(terms["geometric"] > 0.0, geometric, total / terms["fixings"])
        spot = jnp.exp(x_t)
        fixed = jnp.maximum(terms["sign"] * (average - terms["strike"]), 0.0)
        floating = jnp.maximum(terms["sign"] * (spot - average), 0.0)
        value = discount_t * jnp.where(terms["floating"] > 0.0, floating, fixed)
        own = discount_t * jnp.maximum(terms["sign"] * (geometric - terms["strike"]), 0.0)
        return value, _control(terms, own, x_t, discount_t)


class Cliquet:
    """c_i = clip(w(S_{t_i}/S_{t_{i-1}} - m), local floor, local cap); paid at T as
    D(T) clip(sum c_i, global floor, global cap) or per period as sum D(t_i) c_i."""

    needs_uniforms = False
    needs_spot = True

    @staticmethod
    def init(terms, x0):
        return jnp.exp(x0), jnp.zeros_like(x0)

    @staticmethod
    def step(terms, state, x0, x1, spot1, variance, discount1, fixing, uniform):
        last, total = state
        ratio = spot1 / last
        coupon = jnp.clip(terms["sign"] * (ratio - terms["moneyness"]), terms["local_floor"], terms["local_cap"])
        paid = jnp.where(terms["per_period"] > 0.0, discount1 * coupon, coupon)
        return jnp.where(fixing, spot1, last), total + jnp.where(fixing, paid, 0.0)

    @staticmethod
    def final(terms, state, x_t, discount_t):
        _, total = state
        at_maturity = discount_t * jnp.clip(total, terms["global_floor"], terms["global_cap"])
        value = jnp.where(terms["per_period"] > 0.0, total, at_maturity)
        return value, _control(terms, value, x_t, discount_t)


OBSERVERS = {"european": European, "barrier": Barrier, "lookback": Lookback, "asian": Asian, "cliquet": Cliquet}

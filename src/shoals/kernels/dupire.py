"""Dupire local variance from an implied total-variance surface, with counted safeguards.

In total-variance form (Gatheral, "The Volatility Surface", eq. 1.10), with k = ln(K / F_T) and
w(k, T) = sigma_BS^2 T:

.. math::

    \\sigma_{loc}^2(k, T) = \\frac{\\partial_T w}{D},\\qquad
    D = 1 - \\frac{k}{w} w' + \\frac14\\left(-\\frac14 - \\frac1w + \\frac{k^2}{w^2}\\right) w'^2
        + \\frac12 w''

D equals the Gatheral-Jacquier butterfly function g(k) (expand the square in g), so D <= 0 means
butterfly arbitrage and a negative numerator means calendar arbitrage.  The local volatility at spot S
and time t is sigma_loc(k = ln(S / F_t), t).

Safeguards (all jit-safe ``where`` masks; each returns a flag so that callers can count where it acted):

* ``w_floored``: w < ``min_total_variance`` (only at t ~ 0 or for invalid slices): w is floored;
* ``numerator_floored``: dw/dT < 0 (calendar arbitrage): the numerator is set to 0;
* ``denominator_floored``: D < ``min_denominator`` (butterfly arbitrage, or a density ~0): D is floored;
* ``result_floored`` / ``result_capped``: the local variance is clipped to
  [``min_variance``, ``max_variance``].

References: Dupire, "Pricing with a smile", Risk 7 (1994); Gatheral, "The Volatility Surface" (2006)
eq. (1.10); Gatheral & Jacquier, Quantitative Finance 14 (2014), eq. (2.1) (g(k)).
Validation: tests/unit/test_dupire.py (flat surface -> constant local vol to 1e-6, kernel vs a finite-
difference Dupire in price space, safeguard counts), tests/consistency/test_local_vol_reprices.py
(PDE under the local vol reprices the surface's Black prices).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class LocalVariance(NamedTuple):
    """Local variance sigma_loc^2 and the masks of the safeguards that acted (same shape)."""

    local_variance: jnp.ndarray
    w_floored: jnp.ndarray
    numerator_floored: jnp.ndarray
    denominator_floored: jnp.ndarray
    result_floored: jnp.ndarray
    result_capped: jnp.ndarray

    @property
    def safeguarded(self):
        """True where any safeguard acted."""
        return (self.w_floored | self.numerator_floored | self.denominator_floored | self.result_floored
                | self.result_capped)


def dupire_denominator(*, log_moneyness, total_variance, dw_dk, d2w_dk2):
    """D(k) = 1 - (k/w) w' + (1/4)(-1/4 - 1/w + k^2/w^2) w'^2 + (1/2) w'' (no safeguard; equals g(k))."""
    k = jnp.asarray(log_moneyness, dtype=jnp.float64)
    w = jnp.asarray(total_variance, dtype=jnp.float64)
    dw = jnp.asarray(dw_dk, dtype=jnp.float64)
    d2w = jnp.asarray(d2w_dk2, dtype=jnp.float64)
    ratio = k / w
    return 1.0 - ratio * dw + 0.25 * (-0.25 - 1.0 / w + ratio * ratio) * dw * dw + 0.5 * d2w


def dupire_local_variance(*, log_moneyness, total_variance, dw_dk, d2w_dk2, dw_dt,
                          min_total_variance=1e-12, min_denominator=1e-4, min_variance=1e-8,
                          max_variance=25.0) -> LocalVariance:
    """Dupire local variance sigma_loc^2(k, T) = (dw/dT) / D(k), broadcast over all inputs.

    .. math:: \\sigma_{loc}^2 = \\mathrm{clip}\\left(\\frac{\\max(\\partial_T w, 0)}
              {\\max(D(k; \\max(w, w_{min})), D_{min})}, v_{min}, v_{max}\\right)

    The defaults floor D at 1e-4 (a clean SVI smile has D of order 1 and D -> 1/4 - b^2(1 +- rho)^2/16 in
    the wings) and clip the local variance to [1e-8, 25] (vol 0.01 % to 500 %).  See the module docstring
    for the masks returned.

    References: Gatheral, "The Volatility Surface" (2006) eq. (1.10).
    Validation: tests/unit/test_dupire.py.
    """
    k = jnp.asarray(log_moneyness, dtype=jnp.float64)
    w = jnp.asarray(total_variance, dtype=jnp.float64)
    dwdt = jnp.asarray(dw_dt, dtype=jnp.float64)
    k, w, dw, d2w, dwdt = jnp.broadcast_arrays(k, w, jnp.asarray(dw_dk, dtype=jnp.float64),
                                               jnp.asarray(d2w_dk2, dtype=jnp.float64), dwdt)
    w_floored = ~(w >= min_total_variance)
    safe_w = jnp.where(w_floored, min_total_variance, w)
    denominator = dupire_denominator(log_moneyness=k, total_variance=safe_w, dw_dk=dw, d2w_dk2=d2w)
    denominator_floored = ~(denominator >= min_denominator)
    numerator_floored = ~(dwdt >= 0.0)
    numerator = jnp.where(numerator_floored, 0.0, dwdt)
    raw = numerator / jnp.where(denominator_floored, min_denominator, denominator)
    result_floored = raw < min_variance
    result_capped = raw > max_variance
    local_variance = jnp.clip(raw, min_variance, max_variance)
    return LocalVariance(local_variance=local_variance, w_floored=w_floored, numerator_floored=numerator_floored,
                         denominator_floored=denominator_floored, result_floored=result_floored,
                         result_capped=result_capped)

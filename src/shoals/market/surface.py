"""An implied volatility surface: slices at a few expiries, interpolated in total variance.

The slices w_i(k) are a slice model: raw SVI (:class:`shoals.market.svi.SVIParams`, analytic w', w'') or
total variance on a k-grid (:class:`shoals.market.slices.NodeSlices`, the ``"slices"`` form of a market file:
linear in k between nodes, linearly extrapolated, w', w'' by its node-scale rule).  Both give
``derivatives_at(k, index)`` (w, w', w'' of slice ``index`` at k) and ``shift_total_variance(deltas)``; the
rule in t below is the same for both.

Interpolation rule (also in docs/surface.md).  At fixed log-forward-moneyness k = ln(K / F_t), with
slices w_i(k) at expiries 0 < T_1 < ... < T_n:

.. math::

    w(k, t) = \\begin{cases}
        w_1(k)\\, t / T_1                                       & 0 \\le t < T_1 \\\\
        w_i(k) + \\frac{t - T_i}{T_{i+1} - T_i}\\,[w_{i+1}(k) - w_i(k)] & T_i \\le t < T_{i+1} \\\\
        w_n(k)\\, t / T_n                                       & t \\ge T_n
    \\end{cases}

i.e. linear in t between slices, and constant implied volatility at fixed k (w proportional to t)
before the first and after the last slice; w(k, t) = 0 for t <= 0.  Consequences:

* dw/dt at fixed k is piecewise constant in t: (w_{i+1}(k) - w_i(k)) / (T_{i+1} - T_i) between slices,
  w_1(k) / T_1 before the first and w_n(k) / T_n after the last.  It is >= 0 at every k exactly where
  the slices are calendar-ordered (w_i(k) <= w_{i+1}(k)), so the Dupire numerator is non-negative
  exactly where :func:`shoals.arbitrage.checks.check_calendar` passes, and it is exact (no finite
  differences).  It jumps at the interior expiries; ``derivatives(..., side="right")`` (default) returns
  the derivative over [T_i, T_{i+1}), ``side="left"`` over (T_{i-1}, T_i].
* Every smile between two expiries is a convex combination of two slices (smooth in k with analytic
  w', w'' for SVI; w', w'' by the node rule of :mod:`shoals.market.slices` for node slices).  Changing
  slice i changes the surface on (T_{i-1}, T_{i+1}) only (a clean vega ladder, a local repair).
* Beyond the last expiry the surface keeps the last slice's implied volatility at fixed k (rather than
  extending the last interval's forward variance, which can be ~0 on real data and then makes the
  local volatility vanish).

A monotone C^1 rule in t (e.g. Fritsch-Butland slopes) would make dw/dt continuous, but its slopes are
non-linear in the neighbouring slices: w'' and dw/dt then pick up kinks in k where secants cross, the
rule is non-local, and dw/dt >= 0 no longer coincides with a pointwise calendar test.  The jumps of the
linear rule are handled where they matter: :func:`shoals.market.local_vol.build_local_vol` stores the
left and the right limit at every expiry.

References: Gatheral, "The Volatility Surface" (Wiley 2006), ch. 1-3; Gatheral & Jacquier, "Arbitrage-free
SVI volatility surfaces", Quantitative Finance 14 (2014) 59-71 (calendar condition: w non-decreasing in t
at fixed k).
Validation: tests/unit/test_surface.py (rules at and between expiries, calendar monotonicity,
derivatives vs autodiff, jit/grad/pytree, float64), tests/unit/test_node_slices.py (node slices vs the SVI
surface they sample), tests/consistency/test_local_vol_reprices.py, tests/consistency/test_slices_market.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shoals.errors import InputError
from shoals._pytree import register_validated_pytree
from shoals._validation import concrete
from shoals.market.slices import NodeSlices
from shoals.market.svi import SVIParams

PARAM_NAMES = ("a", "b", "rho", "m", "sigma")


class SurfaceDerivatives(NamedTuple):
    """w(k, t) and its partial derivatives dw/dk, d2w/dk2 (at fixed t) and dw/dt (at fixed k)."""

    w: jnp.ndarray
    dw_dk: jnp.ndarray
    d2w_dk2: jnp.ndarray
    dw_dt: jnp.ndarray


def interpolation_weights(*, times, expiries, side="right"):
    """Slice indices and weights of the total-variance rule of this module, broadcast over ``times``.

    Returns ``(lo, hi, c_lo, c_hi, e_lo, e_hi)`` with
    w(k, t) = c_lo w_lo(k) + c_hi w_hi(k) and dw/dt = e_lo w_lo(k) + e_hi w_hi(k).  The same weights
    apply to dw/dk and d2w/dk2 (the rule is linear in the slices), so any slice representation (SVI,
    k/w nodes) can reuse them.  ``side`` picks the interval at t = T_i: "right" [T_i, T_{i+1}),
    "left" (T_{i-1}, T_i].  Times t <= 0 give w = 0 and the t -> 0+ derivative w_1 / T_1.
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', got {side!r}", field="side", value=side)
    expiries = jnp.asarray(expiries, dtype=jnp.float64)
    t = jnp.maximum(jnp.asarray(times, dtype=jnp.float64), 0.0)
    n = expiries.shape[0]
    j = jnp.searchsorted(expiries, t, side=side) - 1
    edge = (j < 0) | (j >= n - 1)
    lo = jnp.clip(j, 0, n - 1)
    hi = jnp.clip(j + 1, 0, n - 1)
    t_lo = expiries[lo]
    span = jnp.where(edge, 1.0, expiries[hi] - t_lo)
    alpha = (t - t_lo) / span
    c_lo = jnp.where(edge, t / t_lo, 1.0 - alpha)
    c_hi = jnp.where(edge, 0.0, alpha)
    e_lo = jnp.where(edge, 1.0 / t_lo, -1.0 / span)
    e_hi = jnp.where(edge, 0.0, 1.0 / span)
    return lo, hi, c_lo, c_hi, e_lo, e_hi


@register_validated_pytree
@dataclass(frozen=True)
class VolSurface:
    """Slices at ``expiries`` (n,), strictly increasing and > 0, with ``params`` the slice model: an
    :class:`SVIParams` whose fields are arrays of shape (n,), or a :class:`NodeSlices` of n slices.  Total
    variance between and beyond the slices follows the rule of the module docstring (linear in t at fixed k
    between slices, constant implied vol at fixed k outside).

    A JAX pytree: every method is jit/vmap/grad-safe and broadcasts over ``(log_moneyness, times)``;
    differentiate prices with respect to ``expiries`` and every number of the slice model (SVI parameters,
    or the k and w nodes).

    Validation: tests/unit/test_surface.py.
    """

    expiries: jax.Array
    params: SVIParams | NodeSlices

    def __post_init__(self):
        expiries = concrete(self.expiries, np.float64)
        if expiries is None:
            return
        if expiries.ndim != 1 or expiries.shape[0] < 1:
            raise InputError("expiries must be a non-empty 1-D list of year fractions", field="surface.expiries",
                             value=expiries)
        if not np.all(np.isfinite(expiries)) or np.any(expiries <= 0.0) or np.any(np.diff(expiries) <= 0.0):
            raise InputError("expiries must be finite, > 0 and strictly increasing; sort the slices and merge "
                             "duplicates", field="surface.expiries", value=expiries)
        n = expiries.shape[0]
        if isinstance(self.params, NodeSlices):
            if concrete(self.params.k, np.float64) is not None and self.params.n_slices != n:
                raise InputError(f"{self.params.n_slices} node slices for {n} expiries; give one slice per expiry",
                                 field="surface.params", value=self.params.n_slices)
            return
        if not isinstance(self.params, SVIParams):
            return
        values = {}
        for name in PARAM_NAMES:
            value = concrete(getattr(self.params, name), np.float64)
            if value is None:
                return
            if value.shape != (n,):
                raise InputError(f"SVI parameter {name} must have shape ({n},) (one per expiry), got "
                                 f"{value.shape}; use VolSurface.from_svi to broadcast scalars",
                                 field=f"surface.params.{name}", value=value)
            if not np.all(np.isfinite(value)):
                raise InputError("SVI parameters must be finite", field=f"surface.params.{name}", value=value)
            values[name] = value
        for name, bad, rule in (("b", values["b"] < 0.0, "b >= 0"),
                                ("rho", np.abs(values["rho"]) >= 1.0, "|rho| < 1"),
                                ("sigma", values["sigma"] <= 0.0, "sigma > 0")):
            if np.any(bad):
                i = int(np.argmax(bad))
                raise InputError(f"raw SVI needs {rule}; slice {i} (expiry {expiries[i]:g}) has "
                                 f"{name} = {values[name][i]!r}", field=f"surface.params.{name}",
                                 value=values[name][i])

    @classmethod
    def from_svi(cls, *, expiries, a, b, rho, m, sigma) -> "VolSurface":
        """A surface from raw SVI parameters per expiry; scalars are broadcast to every slice."""
        expiries = jnp.atleast_1d(jnp.asarray(expiries, dtype=jnp.float64))
        shape = expiries.shape
        fields = [jnp.broadcast_to(jnp.asarray(x, dtype=jnp.float64), shape) for x in (a, b, rho, m, sigma)]
        return cls(expiries=expiries, params=SVIParams(*fields))

    @classmethod
    def from_nodes(cls, *, expiries, ks, ws) -> "VolSurface":
        """A surface of node slices: ``ks[i]``, ``ws[i]`` the k-nodes and total variances of the slice at
        ``expiries[i]`` (lists of possibly different lengths, see :meth:`NodeSlices.from_lists`)."""
        return cls(expiries=jnp.atleast_1d(jnp.asarray(expiries, dtype=jnp.float64)),
                   params=NodeSlices.from_lists(ks, ws))

    @property
    def n_slices(self) -> int:
        return int(jnp.shape(self.expiries)[0])

    def slice_params(self, index: int) -> SVIParams | NodeSlices:
        """The slice model's numbers of slice ``index``: SVI parameters as scalars, or the node rows k, w."""
        return jax.tree.map(lambda x: x[index], self.params)

    def with_slice(self, index: int, params: SVIParams | NodeSlices) -> "VolSurface":
        """A new surface with slice ``index`` replaced by ``params`` (as :meth:`slice_params` returns them)."""
        new = jax.tree.map(lambda x, y: jnp.asarray(x, dtype=jnp.float64).at[index].set(y), self.params, params)
        return replace(self, params=new)

    def slice_total_variance(self, log_moneyness):
        """w_i(k) of every slice: shape ``log_moneyness.shape + (n,)``."""
        k = jnp.asarray(log_moneyness, dtype=jnp.float64)[..., None]
        return self.params.total_variance(k)

    def derivatives(self, log_moneyness, times, *, side: str = "right") -> SurfaceDerivatives:
        """w, dw/dk, d2w/dk2 and dw/dt at ``(log_moneyness, times)`` (broadcast together).

        .. math:: w = c_{lo} w_{lo} + c_{hi} w_{hi},\\quad \\partial_t w = e_{lo} w_{lo} + e_{hi} w_{hi}

        with the weights of :func:`interpolation_weights` and the slice model's w_i, w_i', w_i''
        (``params.derivatives_at``): for SVI the analytic w_i' = b [rho + (k-m)/R], w_i'' = b sigma^2 / R^3,
        R = sqrt((k-m)^2 + sigma^2); for node slices the node-scale rule of :mod:`shoals.market.slices`.
        ``side`` picks the one-sided dw/dt at an expiry (right: the interval that starts there).

        Validation: tests/unit/test_surface.py::test_derivatives_match_autodiff,
        tests/unit/test_node_slices.py.
        """
        if side not in ("right", "left"):
            raise InputError(f"side must be 'right' or 'left', got {side!r}", field="side", value=side)
        return _derivatives(self.expiries, self.params, log_moneyness, times, side=side)

    def total_variance(self, log_moneyness, times):
        """w(k, t) = sigma_BS(k, t)^2 t by the rule of the module docstring (0 for t <= 0)."""
        return self.derivatives(log_moneyness, times).w

    def implied_vol(self, log_moneyness, times):
        """sigma_BS(k, t) = sqrt(w(k, t) / t); for t <= 0 the t -> 0+ limit sqrt(w_1(k) / T_1).

        Where w <= 0 (invalid slices, flagged by ``check_arbitrage``) it returns 0.
        """
        return _implied_vol(self.expiries, self.params, log_moneyness, times)


@partial(jax.jit, static_argnames="side")
def _derivatives(expiries, params, log_moneyness, times, side="right"):
    k, t = jnp.broadcast_arrays(jnp.asarray(log_moneyness, dtype=jnp.float64),
                                jnp.asarray(times, dtype=jnp.float64))
    lo, hi, c_lo, c_hi, e_lo, e_hi = interpolation_weights(times=t, expiries=expiries, side=side)
    d_lo = params.derivatives_at(k, lo)
    d_hi = params.derivatives_at(k, hi)
    return SurfaceDerivatives(
        w=c_lo * d_lo.w + c_hi * d_hi.w,
        dw_dk=c_lo * d_lo.dw + c_hi * d_hi.dw,
        d2w_dk2=c_lo * d_lo.d2w + c_hi * d_hi.d2w,
        dw_dt=e_lo * d_lo.w + e_hi * d_hi.w,
    )


@jax.jit
def _implied_vol(expiries, params, log_moneyness, times):
    k, t = jnp.broadcast_arrays(jnp.asarray(log_moneyness, dtype=jnp.float64),
                                jnp.asarray(times, dtype=jnp.float64))
    expiries = jnp.asarray(expiries, dtype=jnp.float64)
    positive = t > 0.0
    safe_t = jnp.where(positive, t, expiries[0])
    w = _derivatives(expiries, params, k, safe_t).w
    return jnp.sqrt(jnp.maximum(w, 0.0) / safe_t)


@register_validated_pytree
@dataclass(frozen=True)
class ShiftedSurface:
    """A surface whose implied vols are those of ``base`` shifted by ``shift`` (absolute, 0.01 = 1 point):
    sigma'(k, t) = sigma(k, t) + h, i.e. w' = w + 2 h sqrt(w t) + h^2 t.

    Derivatives by the chain rule with g = sqrt(w t): g_k = t w_k / (2g), g_kk = t w_kk / (2g) - t^2 w_k^2 /
    (4 g^3), g_t = (w + t w_t) / (2g); w'_k = w_k + 2h g_k, w'_kk = w_kk + 2h g_kk, w'_t = w_t + 2h g_t + h^2.
    Used for vega as a parallel bump of the implied surface (BOOK_SCHEMA.md) with the local vol rebuilt.

    Validation: tests/unit/test_surface.py::test_shifted_surface_derivatives_match_autodiff.
    """

    base: object
    shift: jax.Array | float

    @property
    def expiries(self):
        return self.base.expiries

    def derivatives(self, log_moneyness, times, *, side: str = "right") -> SurfaceDerivatives:
        d = self.base.derivatives(log_moneyness, times, side=side)
        t = jnp.broadcast_to(jnp.asarray(times, dtype=jnp.float64), jnp.shape(d.w))
        h = jnp.asarray(self.shift, dtype=jnp.float64)
        wt = jnp.maximum(d.w * t, 0.0)
        positive = wt > 0.0
        g = jnp.sqrt(jnp.where(positive, wt, 1.0))
        g_k = jnp.where(positive, t * d.dw_dk / (2.0 * g), 0.0)
        g_kk = jnp.where(positive, t * d.d2w_dk2 / (2.0 * g) - (t * d.dw_dk) ** 2 / (4.0 * g ** 3), 0.0)
        g_t = jnp.where(positive, (d.w + t * d.dw_dt) / (2.0 * g), 0.0)
        return SurfaceDerivatives(w=d.w + 2.0 * h * jnp.where(positive, g, 0.0) + h * h * t,
                                  dw_dk=d.dw_dk + 2.0 * h * g_k, d2w_dk2=d.d2w_dk2 + 2.0 * h * g_kk,
                                  dw_dt=d.dw_dt + 2.0 * h * g_t + h * h)

    def total_variance(self, log_moneyness, times):
        return self.derivatives(log_moneyness, times).w

    def implied_vol(self, log_moneyness, times):
        return self.base.implied_vol(log_moneyness, times) + self.shift

"""SVI slices of an implied volatility surface.

:class:`SVIParams` is one of the two slice models a :class:`shoals.market.surface.VolSurface` holds (the
other is :class:`shoals.market.slices.NodeSlices`); both give ``total_variance``, ``derivatives``,
``derivatives_at`` and ``shift_total_variance`` with the same broadcasting.
Validation: tests/unit/test_surface.py, tests/unit/test_node_slices.py (derivatives_at, shift_total_variance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from shoals._pytree import register_validated_pytree
from shoals.kernels.svi import svi_derivatives, svi_total_variance


@register_validated_pytree
@dataclass(frozen=True)
class SVIParams:
    """Raw SVI parameters; each field a scalar or an array with one entry per slice (expiry).

    w(k) = a + b [rho (k - m) + sqrt((k - m)^2 + sigma^2)],  k = ln(K / F_T).
    """

    a: jax.Array
    b: jax.Array
    rho: jax.Array
    m: jax.Array
    sigma: jax.Array

    def total_variance(self, log_moneyness):
        """w(k); ``log_moneyness`` broadcasts against the parameters (use k[..., None] for a grid x slices)."""
        return svi_total_variance(log_moneyness=log_moneyness, a=self.a, b=self.b, rho=self.rho, m=self.m,
                                  sigma=self.sigma)

    def derivatives(self, log_moneyness):
        """w, w' = b [rho + (k-m)/R], w'' = b sigma^2 / R^3 (R = sqrt((k-m)^2 + sigma^2)), broadcast like
        :meth:`total_variance`."""
        return svi_derivatives(log_moneyness=log_moneyness, a=self.a, b=self.b, rho=self.rho, m=self.m,
                               sigma=self.sigma)

    def derivatives_at(self, log_moneyness, index):
        """w, w', w'' of slice ``index`` (an integer array broadcast with ``log_moneyness``) at each point:
        the parameters gathered at ``index``, then :meth:`derivatives`."""
        gathered = {name: jnp.asarray(getattr(self, name), dtype=jnp.float64)[index]
                    for name in ("a", "b", "rho", "m", "sigma")}
        return svi_derivatives(log_moneyness=log_moneyness, **gathered)

    def shift_total_variance(self, deltas) -> "SVIParams":
        """The slices with w_i(k) moved by ``deltas[i]`` at every k (a parallel shift in total variance):
        a_i -> a_i + deltas_i, the shape kept."""
        return replace(self, a=jnp.asarray(self.a, dtype=jnp.float64) + jnp.asarray(deltas, dtype=jnp.float64))

    def stacked(self):
        """Parameters as an array of shape (..., 5) in the order a, b, rho, m, sigma."""
        return jnp.stack([jnp.asarray(x, dtype=jnp.float64) for x in (self.a, self.b, self.rho, self.m, self.sigma)],
                         axis=-1)

    @classmethod
    def from_stacked(cls, values) -> "SVIParams":
        values = jnp.asarray(values, dtype=jnp.float64)
        return cls(*(values[..., i] for i in range(5)))

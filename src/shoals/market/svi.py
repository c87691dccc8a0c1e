"""SVI slices of an implied volatility surface."""

from __future__ import annotations

from dataclasses import dataclass

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
        return svi_derivatives(log_moneyness=log_moneyness, a=self.a, b=self.b, rho=self.rho, m=self.m,
                               sigma=self.sigma)

    def stacked(self):
        """Parameters as an array of shape (..., 5) in the order a, b, rho, m, sigma."""
        return jnp.stack([jnp.asarray(x, dtype=jnp.float64) for x in (self.a, self.b, self.rho, self.m, self.sigma)],
                         axis=-1)

    @classmethod
    def from_stacked(cls, values) -> "SVIParams":
        values = jnp.asarray(values, dtype=jnp.float64)
        return cls(*(values[..., i] for i in range(5)))

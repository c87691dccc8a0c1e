"""A market snapshot: spot, rate and dividend curves and an implied volatility surface."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field
from shoals.market.curves import ZeroCurve


@register_validated_pytree
@dataclass(frozen=True)
class MarketSnapshot:
    """Spot S, zero curves for the rate r and the dividend yield q, and a vol ``surface`` (a
    :class:`shoals.market.surface.VolSurface`).  Forward F(t) = S exp(int_0^t (r - q)).

    Passed at call time; a bump is a new snapshot (:meth:`bump`).  A JAX pytree, so prices can be
    differentiated with respect to every number in it.
    """

    spot: jax.Array
    rate: ZeroCurve
    dividend: ZeroCurve
    surface: object

    def __post_init__(self):
        check_field("market", "spot", self.spot, positive=True)

    def forward(self, t):
        return self.spot * jnp.exp(self.rate.integral(t) - self.dividend.integral(t))

    def discount(self, t):
        return self.rate.discount(t)

    def log_moneyness(self, strike, t):
        """k = ln(K / F(t))."""
        return jnp.log(strike / self.forward(t))

    def implied_vol(self, strike, t):
        return self.surface.implied_vol(self.log_moneyness(strike, t), t)

    def bump(self, **changes) -> "MarketSnapshot":
        """A new snapshot with the given fields replaced (e.g. ``spot=101.0`` or ``surface=...``)."""
        return replace(self, **changes)

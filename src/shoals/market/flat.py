"""Flat Black-Scholes market: spot, continuous rate, dividend yield and one volatility (per trade)."""

from __future__ import annotations

from dataclasses import dataclass

import jax

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field


@register_validated_pytree
@dataclass(frozen=True)
class FlatMarket:
    """Market of the Black-Scholes model; each field a scalar or an array batched like the instruments.

    ``rate`` r and ``dividend`` q are continuously compounded; ``vol`` sigma in base units (0.20).
    A JAX pytree: passes through jit/vmap/grad (differentiate a price with respect to the market).
    """

    spot: jax.Array | float
    rate: jax.Array | float
    vol: jax.Array | float
    dividend: jax.Array | float = 0.0

    def __post_init__(self):
        check_field("market", "spot", self.spot, positive=True)
        check_field("market", "rate", self.rate)
        check_field("market", "vol", self.vol, non_negative=True)
        check_field("market", "dividend", self.dividend)

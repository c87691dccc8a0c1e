"""European option contract."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field


@register_validated_pytree
@dataclass(frozen=True)
class European:
    """European call or put: pays max(w(S_T - K), 0) at ``maturity`` (w = +1 call, -1 put).

    Fields may be arrays: one ``European`` then holds a batch of contracts priced in one kernel call.
    ``maturity`` is in years from the valuation date; ``is_call`` a bool (array).
    """

    strike: jax.Array | float
    maturity: jax.Array | float
    is_call: jax.Array | bool = True

    def __post_init__(self):
        check_field("european", "strike", self.strike, positive=True)
        check_field("european", "maturity", self.maturity, positive=True)

    @property
    def sign(self):
        """+1 for calls, -1 for puts (the w of the payoff)."""
        return jnp.where(jnp.asarray(self.is_call), 1.0, -1.0)

"""American option contract."""

from __future__ import annotations

from dataclasses import dataclass

import jax

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field


@register_validated_pytree
@dataclass(frozen=True)
class American:
    """American call or put: max(w(S_t - K), 0) paid on exercise at any time t <= ``maturity``.

    Fields may be arrays (a batch).  ``maturity`` in years from the valuation date.
    """

    strike: jax.Array | float
    maturity: jax.Array | float
    is_call: jax.Array | bool = True

    def __post_init__(self):
        check_field("american", "strike", self.strike, positive=True)
        check_field("american", "maturity", self.maturity, positive=True)

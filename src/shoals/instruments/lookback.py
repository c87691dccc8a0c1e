"""Lookback option contract (continuous monitoring, floating or fixed strike, running extreme)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field, check_positive_unless, concrete
from shoals.errors import InputError


@register_validated_pytree
@dataclass(frozen=True)
class Lookback:
    """Lookback call or put on the extreme of S over [0, T], monitored continuously.

    * floating strike (``floating=True``): call S_T - min S, put max S - S_T;
    * fixed strike K: call max(max S - K, 0), put max(K - min S, 0).

    ``running_extreme`` is the extreme observed so far (the minimum for floating calls and fixed puts,
    the maximum otherwise); NaN (the default) means the spot at pricing time, i.e. a new trade.
    ``strike`` is ignored (NaN allowed) for floating-strike contracts.  Fields may be arrays.
    """

    maturity: jax.Array | float
    strike: jax.Array | float = math.nan
    is_call: jax.Array | bool = True
    floating: jax.Array | bool = True
    running_extreme: jax.Array | float = math.nan

    def __post_init__(self):
        check_field("lookback", "maturity", self.maturity, positive=True)
        check_positive_unless("lookback", "strike", self.strike, self.floating,
                             reason="a fixed-strike lookback needs a strike > 0")
        extreme = concrete(self.running_extreme, np.float64)
        if extreme is not None and np.any(extreme <= 0):
            raise InputError("must be > 0 (or NaN for the current spot)", field="lookback.running_extreme",
                             value=self.running_extreme)

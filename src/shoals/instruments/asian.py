"""Asian option contract (arithmetic or geometric average over discrete fixings)."""

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
class Asian:
    """Asian call or put on the average A of S at ``fixings`` = n dates T/n, 2T/n, ..., T.

    A = (1/n) sum S_{t_i} (arithmetic) or (prod S_{t_i})^{1/n} (``geometric``).
    Fixed strike: max(w(A - K), 0); floating strike (``floating=True``): max(w(S_T - A), 0), ``strike``
    ignored (NaN allowed).  Fields may be arrays (a batch).
    """

    maturity: jax.Array | float
    fixings: jax.Array | int
    strike: jax.Array | float = math.nan
    is_call: jax.Array | bool = True
    geometric: jax.Array | bool = False
    floating: jax.Array | bool = False

    def __post_init__(self):
        check_field("asian", "maturity", self.maturity, positive=True)
        fixings = concrete(self.fixings, np.float64)
        if fixings is not None and np.any((fixings < 1) | (fixings != np.round(fixings))):
            raise InputError("must be a positive integer", field="asian.fixings", value=self.fixings)
        check_positive_unless("asian", "strike", self.strike, self.floating,
                             reason="a fixed-strike Asian needs a strike > 0")

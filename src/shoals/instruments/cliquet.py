"""Cliquet (ratchet) contract: a sum of forward-start period returns with local and global floors/caps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field, concrete
from shoals.errors import InputError


@register_validated_pytree
@dataclass(frozen=True)
class Cliquet:
    """Cliquet over ``resets`` = n equal periods [t_{i-1}, t_i], t_i = i T / n, the first starting today.

    R_i = S_{t_i} / S_{t_{i-1}},   c_i = clip(w (R_i - m), local_floor, local_cap)   (w = +1 call, -1 put)

    Paid per 1.0 of notional: at maturity clip(sum c_i, global_floor, global_cap), or, with
    ``pay_per_period``, each c_i at t_i (no global terms allowed).  Defaults: m = 1, local floor 0, no
    local cap (inf), no global floor (-inf) or cap (inf).  Fields may be arrays (a batch).
    """

    maturity: jax.Array | float
    resets: jax.Array | int
    is_call: jax.Array | bool = True
    moneyness: jax.Array | float = 1.0
    local_floor: jax.Array | float = 0.0
    local_cap: jax.Array | float = math.inf
    global_floor: jax.Array | float = -math.inf
    global_cap: jax.Array | float = math.inf
    pay_per_period: jax.Array | bool = False

    def __post_init__(self):
        check_field("cliquet", "maturity", self.maturity, positive=True)
        check_field("cliquet", "moneyness", self.moneyness, positive=True)
        resets = concrete(self.resets, np.float64)
        if resets is not None and np.any((resets < 1) | (resets != np.round(resets))):
            raise InputError("must be a positive integer", field="cliquet.resets", value=self.resets)
        bounds = [concrete(getattr(self, name), np.float64)
                  for name in ("local_floor", "local_cap", "global_floor", "global_cap")]
        if any(b is None for b in bounds):
            return
        local_floor, local_cap, global_floor, global_cap = bounds
        for name, value in zip(("local_floor", "local_cap", "global_floor", "global_cap"), bounds):
            if np.any(np.isnan(value)):
                raise InputError("must be a number (inf for no cap, -inf for no floor)", field=f"cliquet.{name}",
                                 value=value)
        if np.any(local_cap < local_floor):
            raise InputError("local_cap must be >= local_floor", field="cliquet.local_cap", value=self.local_cap)
        if np.any(global_cap < global_floor):
            raise InputError("global_cap must be >= global_floor", field="cliquet.global_cap",
                             value=self.global_cap)
        per_period = concrete(self.pay_per_period, bool)
        if per_period is not None:
            has_global = np.isfinite(global_floor) | np.isfinite(global_cap)
            if np.any(per_period & has_global):
                raise InputError("global floor/cap apply only to payment at maturity", field="cliquet.payment",
                                 value="period")

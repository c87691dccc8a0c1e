"""Single-barrier option contract (knock-in / knock-out, rebate, continuous or discrete monitoring)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field, concrete
from shoals.errors import InputError

BARRIER_TYPES = ("down-and-out", "down-and-in", "up-and-out", "up-and-in")


@register_validated_pytree
@dataclass(frozen=True)
class Barrier:
    """Barrier call or put on the vanilla payoff max(w(S_T - K), 0).

    * ``is_up``: the barrier H is above the spot (up) or below it (down).
    * ``is_knock_in``: the vanilla payoff is paid only if the barrier was hit (in) or only if it was
      never hit (out).
    * ``rebate`` R >= 0: paid to an in-option never knocked in (at maturity) and to a knocked-out
      out-option, at the hit time when ``rebate_at_hit`` (the default) or else at maturity.
    * ``monitoring_dates``: 0 for continuous monitoring; n > 0 for n dates equally spaced at
      T/n, 2T/n, ..., T.

    Fields may be arrays (a batch).  Use :meth:`of_type` to build from a BOOK_SCHEMA ``barrier_type``.
    """

    strike: jax.Array | float
    maturity: jax.Array | float
    barrier: jax.Array | float
    is_call: jax.Array | bool = True
    is_up: jax.Array | bool = False
    is_knock_in: jax.Array | bool = False
    rebate: jax.Array | float = 0.0
    monitoring_dates: jax.Array | int = 0
    rebate_at_hit: jax.Array | bool = True

    def __post_init__(self):
        check_field("barrier", "strike", self.strike, positive=True)
        check_field("barrier", "maturity", self.maturity, positive=True)
        check_field("barrier", "barrier", self.barrier, positive=True)
        check_field("barrier", "rebate", self.rebate, non_negative=True)
        dates = concrete(self.monitoring_dates, np.float64)
        if dates is not None and np.any((dates < 0) | (dates != np.round(dates))):
            raise InputError("must be 0 (continuous) or a positive integer number of dates",
                             field="barrier.monitoring_dates", value=self.monitoring_dates)

    @classmethod
    def of_type(cls, barrier_type: str, **fields) -> Barrier:
        """Build from ``barrier_type`` in ``down-and-out``, ``down-and-in``, ``up-and-out``, ``up-and-in``."""
        if barrier_type not in BARRIER_TYPES:
            raise InputError(f"'{barrier_type}' is not one of {', '.join(BARRIER_TYPES)}", field="barrier_type",
                             value=barrier_type)
        return cls(is_up=barrier_type.startswith("up"), is_knock_in=barrier_type.endswith("in"), **fields)

    @property
    def barrier_type(self):
        """The BOOK_SCHEMA name (scalar contracts) or an array of names (batches)."""
        names = np.array(BARRIER_TYPES)
        index = 2 * np.asarray(self.is_up, dtype=int) + np.asarray(self.is_knock_in, dtype=int)
        result = names[index]
        return str(result) if result.ndim == 0 else result

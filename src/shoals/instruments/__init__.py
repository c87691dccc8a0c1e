"""L1 contracts: frozen dataclasses (pytrees); an instrument never holds market data or a method.

Every field may be an array: one object then holds a batch of like contracts, priced in one kernel call
(:func:`stack` builds such a batch from single contracts).
"""

from dataclasses import fields

import numpy as np

from shoals.instruments.american import American
from shoals.instruments.asian import Asian
from shoals.instruments.barrier import BARRIER_TYPES, Barrier
from shoals.instruments.cliquet import Cliquet
from shoals.instruments.european import European
from shoals.instruments.lookback import Lookback

__all__ = ["BARRIER_TYPES", "American", "Asian", "Barrier", "Cliquet", "European", "Lookback", "stack"]


def stack(contracts):
    """One batched contract (fields as 1-D NumPy arrays) from a non-empty sequence of contracts of one type."""
    contracts = list(contracts)
    kind = type(contracts[0])
    if any(type(c) is not kind for c in contracts):
        raise TypeError(f"stack() needs contracts of one type, got {sorted({type(c).__name__ for c in contracts})}")
    return kind(**{f.name: np.concatenate([np.atleast_1d(np.asarray(getattr(c, f.name))) for c in contracts])
                   for f in fields(kind)})

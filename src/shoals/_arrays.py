"""Small array helpers shared by the pricing methods."""

from __future__ import annotations

import numpy as np


def as_batch(values, size: int, dtype=np.float64) -> np.ndarray:
    """``values`` (a scalar or an array broadcastable to (size,)) as a writable 1-D NumPy array of ``size``."""
    return np.broadcast_to(np.asarray(values, dtype=dtype), (size,)).copy()

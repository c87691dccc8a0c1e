"""Small array helpers shared by the pricing methods."""

from __future__ import annotations

import jax
import numpy as np


def as_batch(values, size: int, dtype=np.float64) -> np.ndarray:
    """``values`` (a scalar or an array broadcastable to (size,)) as a writable 1-D NumPy array of ``size``."""
    return np.broadcast_to(np.asarray(values, dtype=dtype), (size,)).copy()


def on_device(values) -> jax.Array:
    """``values`` as a JAX array, moved by a plain transfer.  ``jnp.asarray`` of a NumPy array without a dtype
    runs a small compiled copy program, one per shape and dtype (JAX 0.10: ``jit(stage)``); planning a book
    moves ~100 arrays of new shapes, each costing a lowering and a cache read (~20 ms) in a fresh process."""
    return values if isinstance(values, jax.Array) else jax.device_put(np.asarray(values))

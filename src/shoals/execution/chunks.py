"""Chunked asynchronous dispatch of a jitted array function: bounded memory, all CPU cores busy.

JAX dispatches jitted calls asynchronously and the CPU client runs independent calls on its thread
pool, so splitting a large elementwise job into chunks both bounds the temporaries and uses every core
(a single fused XLA loop runs on one core).  Knows nothing about finance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def map_chunks(function, arrays, *, chunk_size: int = 1 << 20):
    """Apply ``function(*arrays)`` chunk by chunk along axis 0 and concatenate the outputs (a pytree).

    All ``arrays`` must share the leading dimension.  The last chunk is padded to ``chunk_size`` by
    repeating its last element (one compiled shape) and the padding is cut from the result.
    """
    n = arrays[0].shape[0]
    if n <= chunk_size:
        return function(*arrays)
    outputs = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        parts = [a[start:stop] for a in arrays]
        if stop - start < chunk_size:
            pad = chunk_size - (stop - start)
            parts = [jnp.concatenate([p, jnp.repeat(p[-1:], pad, axis=0)]) for p in parts]
        outputs.append((function(*parts), stop - start))
    return jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(
        [leaf[:size] for leaf, (_, size) in zip(leaves, outputs)]), *[o for o, _ in outputs])

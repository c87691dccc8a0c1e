"""Smiles given as total variance on a k-grid per expiry: the ``"slices"`` form of a market file.

Each slice i holds nodes k_{i,1} < ... < k_{i,m} (k = ln(K / F_T)) and total variances w_{i,j}.  The
value rule is the one of BOOK_SCHEMA.md: w is linear in k between nodes and linearly extrapolated
beyond the end nodes (the end segments' slopes).

Derivatives.  A piecewise-linear w has w'' = 0 between nodes and Dirac masses at them, so Dupire's
formula cannot be read off it literally.  The nodes are a dense sampling (>= 200 nodes per slice in a
file) of a smooth smile, and the derivatives are read at the scale of the node spacing, second order
in it: with segment slopes s_j = (w_{j+1} - w_j) / h_j, h_j = k_{j+1} - k_j,

.. math::

    w'_j = \\frac{h_j s_{j-1} + h_{j-1} s_j}{h_{j-1} + h_j},\\qquad
    w''_j = \\frac{2 (s_j - s_{j-1})}{h_{j-1} + h_j}

at interior nodes (the derivatives of the parabola through three nodes), w'_1 = s_1, w'_m = s_{m-1} and
w''_1 = w''_m = 0 at the end nodes, linear in k between nodes and constant (the end slope, zero
curvature) beyond them, consistent with the linear extrapolation.  For nodes sampled from a smooth w
these differ from the true w', w'' by O(h^2); the rule is linear in the w_{i,j}, so reverse-mode
gradients flow to every node.

Slices with different node counts are padded to a common count with extra nodes on the extrapolation
line beyond the last node, which leaves the value and derivative rules unchanged.

Validation: tests/unit/test_node_slices.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from shoals._pytree import register_validated_pytree
from shoals._validation import concrete
from shoals.errors import InputError
from shoals.kernels.svi import SVIDerivatives

MIN_NODES = 3


@register_validated_pytree
@dataclass(frozen=True)
class NodeSlices:
    """Total variance ``w`` (n, m) at log-moneyness nodes ``k`` (n, m) for n slices (rows strictly
    increasing in k).  The slice model a :class:`shoals.market.surface.VolSurface` holds in place of
    :class:`shoals.market.svi.SVIParams`; see the module docstring for the rules."""

    k: jax.Array
    w: jax.Array

    def __post_init__(self):
        k, w = concrete(self.k, np.float64), concrete(self.w, np.float64)
        if k is None or w is None:
            return
        if k.ndim != 2 or k.shape != w.shape or k.shape[1] < MIN_NODES:
            raise InputError(f"k and w must be arrays of the same shape (slices, nodes) with at least {MIN_NODES} "
                             f"nodes, got {k.shape} and {w.shape}", field="slices", value=(k.shape, w.shape))
        for name, values in (("k", k), ("w", w)):
            if not np.all(np.isfinite(values)):
                i = int(np.argwhere(~np.isfinite(values))[0, 0])
                raise InputError("nodes must be finite", field=f"slices[{i}].{name}", value=values[i])
        steps = np.diff(k, axis=1)
        if np.any(steps <= 0.0):
            i = int(np.argwhere(steps <= 0.0)[0, 0])
            raise InputError("k must be strictly increasing within a slice", field=f"slices[{i}].k", value=k[i])

    @classmethod
    def from_lists(cls, ks, ws) -> "NodeSlices":
        """Slices from per-slice node lists of possibly different lengths, padded with nodes on the
        extrapolation line beyond the last node (exact under the value and derivative rules)."""
        ks = [np.asarray(k, dtype=np.float64) for k in ks]
        ws = [np.asarray(w, dtype=np.float64) for w in ws]
        for i, (k, w) in enumerate(zip(ks, ws)):
            if k.ndim != 1 or k.shape != w.shape or k.shape[0] < MIN_NODES:
                raise InputError(f"k and w must be lists of equal length >= {MIN_NODES}", field=f"slices[{i}]",
                                 value=(k.shape, w.shape))
        count = max(k.shape[0] for k in ks)
        padded_k, padded_w = [], []
        for k, w in zip(ks, ws):
            extra = count - k.shape[0]
            step = k[-1] - k[-2]
            slope = (w[-1] - w[-2]) / step if step > 0 else 0.0
            offsets = step * np.arange(1, extra + 1)
            padded_k.append(np.concatenate([k, k[-1] + offsets]))
            padded_w.append(np.concatenate([w, w[-1] + slope * offsets]))
        return cls(k=jnp.asarray(np.stack(padded_k)), w=jnp.asarray(np.stack(padded_w)))

    @property
    def n_slices(self) -> int:
        return int(jnp.shape(self.k)[0])

    def total_variance(self, log_moneyness):
        """w_i(k) of every slice: ``log_moneyness`` broadcasts against (n,), like SVIParams (k[..., None] for
        a grid x slices)."""
        return self.derivatives(log_moneyness).w

    def derivatives(self, log_moneyness) -> SVIDerivatives:
        """w, w', w'' of every slice by the rules of the module docstring, broadcast against (n,)."""
        k = jnp.asarray(log_moneyness, dtype=jnp.float64)
        shape = jnp.broadcast_shapes(k.shape, (self.n_slices,))
        points = jnp.moveaxis(jnp.broadcast_to(k, shape), -1, 0).reshape(self.n_slices, -1)
        w, dw, d2w = jax.vmap(_slice_derivatives)(jnp.asarray(self.k, dtype=jnp.float64),
                                                  jnp.asarray(self.w, dtype=jnp.float64), points)
        back = (self.n_slices,) + shape[:-1]
        return SVIDerivatives(*(jnp.moveaxis(x.reshape(back), 0, -1) for x in (w, dw, d2w)))

    def derivatives_at(self, log_moneyness, index) -> SVIDerivatives:
        """w, w', w'' of slice ``index`` (an integer array broadcast with ``log_moneyness``) at each point, by the
        rules of the module docstring; only that slice is evaluated at each point (see :func:`_gathered`)."""
        k, index = jnp.broadcast_arrays(jnp.asarray(log_moneyness, dtype=jnp.float64), jnp.asarray(index))
        return _gathered(jnp.asarray(self.k, dtype=jnp.float64), jnp.asarray(self.w, dtype=jnp.float64), k, index)

    def shift_total_variance(self, deltas) -> "NodeSlices":
        """The slices with every w node of slice i moved by ``deltas[i]``: a parallel shift of w_i(k) at every k
        (extrapolation included), w' and w'' unchanged."""
        shift = jnp.asarray(deltas, dtype=jnp.float64)[..., None]
        return replace(self, w=jnp.asarray(self.w, dtype=jnp.float64) + shift)


def node_derivatives(k, w):
    """w'_j and w''_j at the nodes of one slice (the three-point rule of the module docstring)."""
    h = jnp.diff(k)
    s = jnp.diff(w) / h
    span = h[:-1] + h[1:]
    inner_slope = (h[1:] * s[:-1] + h[:-1] * s[1:]) / span
    inner_curvature = 2.0 * (s[1:] - s[:-1]) / span
    slope = jnp.concatenate([s[:1], inner_slope, s[-1:]])
    curvature = jnp.concatenate([jnp.zeros(1), inner_curvature, jnp.zeros(1)])
    return slope, curvature


def _slice_derivatives(k, w, x):
    """Value (linear with linear extrapolation) and node-scale derivatives of one slice at points x."""
    m = k.shape[0]
    j = jnp.clip(jnp.searchsorted(k, x, side="right"), 1, m - 1)
    left, right = k[j - 1], k[j]
    u = (x - left) / (right - left)
    value = w[j - 1] + u * (w[j] - w[j - 1])
    slope, curvature = node_derivatives(k, w)
    inside = jnp.clip(u, 0.0, 1.0)
    return (value, slope[j - 1] + inside * (slope[j] - slope[j - 1]),
            curvature[j - 1] + inside * (curvature[j] - curvature[j - 1]))


def _gathered(k, w, x, index):
    """:func:`_slice_derivatives` of slice ``index[p]`` at each point ``x[p]``, with one search over all nodes:
    row i's nodes are keyed (k_{i,j} - k_{i,1}) + i L, L = the widest row span + 1, so the keys increase along
    the flattened rows, and x (clipped to its row's span, which leaves the segment choice unchanged) is keyed
    the same way.  At a point on a node either neighbouring segment gives the same w, w', w''."""
    n, m = k.shape
    slope, curvature = jax.vmap(node_derivatives)(k, w)
    start, span = k[:, 0], k[:, -1] - k[:, 0]
    width = jax.lax.stop_gradient(jnp.max(span) + 1.0)
    rows = jnp.arange(n, dtype=jnp.float64)
    keys = jax.lax.stop_gradient((k - start[:, None]) + rows[:, None] * width).ravel()
    query = jnp.clip(x - start[index], 0.0, span[index]) + index * width
    j = jnp.clip(jnp.searchsorted(keys, jax.lax.stop_gradient(query), side="right") - index * m, 1, m - 1)
    flat = index * m + j
    left, right = k.ravel()[flat - 1], k.ravel()[flat]
    u = (x - left) / (right - left)
    w_flat, slope, curvature = w.ravel(), slope.ravel(), curvature.ravel()
    inside = jnp.clip(u, 0.0, 1.0)
    return SVIDerivatives(w_flat[flat - 1] + u * (w_flat[flat] - w_flat[flat - 1]),
                          slope[flat - 1] + inside * (slope[flat] - slope[flat - 1]),
                          curvature[flat - 1] + inside * (curvature[flat] - curvature[flat - 1]))

"""Tensor Chebyshev interpolation: Lobatto grids, DCT coefficients, spectral derivatives, fast batched evaluation.

Nodes.  Chebyshev-Lobatto points (extrema of T_{n-1}, "Chebyshev points of the second kind" in Trefethen's
naming), sorted ascending and mapped affinely to the box [a_i, b_i] of each dimension:

.. math::
    t_j = -\\cos\\frac{\\pi j}{n-1},\\quad x_j = \\tfrac{a+b}{2} + \\tfrac{b-a}{2} t_j,\\qquad j = 0..n-1.

They include the end points, so two cells of a piecewise proxy share their common face (continuity at a
split such as a strike or a barrier) and a box edge is a node.

Coefficients.  The interpolant is p(x) = sum_k c_k prod_i T_{k_i}(t_i(x_i)); on Lobatto points the
coefficients are a type-I discrete cosine transform along every axis (for descending nodes cos(pi j/N)):

.. math::
    c_k = \\frac{2 - \\delta_{k0} - \\delta_{kN}}{N} \\sum_{j=0}^{N}{}'' f_j \\cos\\frac{\\pi j k}{N},\\quad N = n-1,

with the end terms of the sum halved; ascending nodes flip the sign of odd k.  Cost O(n^d log n).

Derivatives.  The derivative of a Chebyshev series has the coefficients (spectral differentiation)

.. math::
    c'_j = \\frac{2}{1 + \\delta_{j0}} \\sum_{k > j,\\ k - j \\text{ odd}} k\\, c_k,

i.e. c' = D c, so the derivative basis row is T'(t) = T(t) D and T^{(j)} = T D^j, exactly; the basis
rows T^{(j)}(t) are computed by the differentiated three-term recurrence (:func:`bases`) and
d/dx = (2 / (b - a)) d/dt.  A mixed partial of any order is the same tensor contracted with derivative
basis vectors in the differentiated dimensions, so every Greek costs one contraction and shares the basis.

Fast evaluation.  With the dimensions split into groups A and B, the coefficient tensor is a matrix
M[a, b] and p(x) = W(x)^T M V(x), W and V the row-wise Kronecker products of the basis vectors of the
groups: a batch of m points is one GEMM (m x |A|) (|A| x |B|) plus a row-wise dot with V.  The tensor
may first be compressed to Tucker form c = core x_i U_i (truncated HOSVD); the bases are then rotated,
B_i U_i (n_i -> r_i columns), and the GEMM runs on the smaller core.  Since |T_k| <= 1 on the box, the
change of the value is at most the l1 norm of the discarded coefficients, which is computed exactly and
kept below a budget.  The split is chosen per request by a cost model; outputs that share the basis of
group A share the GEMM.  Large batches are cut into chunks under ``lax.map`` (bounded temporaries).

Error estimate.  For an analytic function the coefficients decay geometrically (Trefethen, ch. 8);
the magnitude of the last two coefficients along a dimension, maximised over the other indices, estimates
the interpolation error caused by that dimension; the estimate is their sum over dimensions.

Tensor trains.  A TT tensor c[k_1..k_d] = G_1[k_1] G_2[k_2] ... G_d[k_d] (G_i[k] an r_{i-1} x r_i matrix)
is evaluated by contracting each core with its basis vector and chaining the small matrix products.

References: L. N. Trefethen, Approximation Theory and Approximation Practice, SIAM 2013 (ch. 2-3: points
and coefficients, ch. 8: decay); M. Gass, K. Glau, M. Mahlstedt, M. Mair, "Chebyshev interpolation for
parametric option pricing", Finance Stoch. 22 (2018), and K. Glau, D. Kressner, F. Statti, "Low-rank tensor
approximation for Chebyshev interpolation in parametric option pricing", SIAM J. Financial Math. 11 (2020);
I. Oseledets, E. Tyrtyshnikov, "TT-cross approximation for multidimensional arrays", Linear Algebra Appl.
432 (2010).
Validation: tests/unit/test_chebyshev.py (polynomial exactness, derivatives, plans vs dense, TT),
tests/reference/test_chebyshev_black_scholes.py (5-D Black-Scholes prices and Greeks vs closed form).
"""

from __future__ import annotations

import itertools
from math import prod
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
from jax import lax

DEFAULT_CHUNK = 256
_ELEMENTWISE_WEIGHT = 12.0


def lobatto_points(count: int) -> np.ndarray:
    """Chebyshev-Lobatto points t_j = -cos(pi j / (n - 1)) on [-1, 1], ascending (exactly symmetric)."""
    j = np.arange(count)
    return np.sin(np.pi * (2 * j - (count - 1)) / (2 * (count - 1)))


def grid_axes(lower, upper, counts) -> list[np.ndarray]:
    """The Lobatto nodes of each dimension mapped to [lower_i, upper_i], ascending, end points exact."""
    axes = []
    for a, b, n in zip(np.asarray(lower, float), np.asarray(upper, float), counts):
        x = 0.5 * (a + b) + 0.5 * (b - a) * lobatto_points(int(n))
        x[0], x[-1] = a, b
        axes.append(x)
    return axes


def grid_points(lower, upper, counts) -> np.ndarray:
    """All nodes of the tensor grid as an (prod(counts), d) array in C order (last dimension fastest)."""
    mesh = np.meshgrid(*grid_axes(lower, upper, counts), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def coefficients_from_values(values) -> np.ndarray:
    """Chebyshev coefficients of the interpolant of ``values`` given on the ascending Lobatto grid.

    A type-I DCT along every axis (scipy.fft.dctn, O(n^d log n)); see the module docstring for the formula.
    """
    values = np.asarray(values, dtype=np.float64)
    coefficients = scipy.fft.dctn(values, type=1)
    for axis, n in enumerate(values.shape):
        shape = [1] * values.ndim
        shape[axis] = n
        weight = np.full(n, 1.0 / (n - 1))
        weight[[0, -1]] *= 0.5
        weight[1::2] *= -1.0
        coefficients = coefficients * weight.reshape(shape)
    return coefficients


def coefficients_along(values, axis: int) -> np.ndarray:
    """Chebyshev coefficients along one ``axis`` only (values on the ascending Lobatto nodes of that axis)."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = values.shape[0]
    coefficients = scipy.fft.dct(values, type=1, axis=0)
    weight = np.full(n, 1.0 / (n - 1))
    weight[[0, -1]] *= 0.5
    weight[1::2] *= -1.0
    return np.moveaxis(coefficients * weight.reshape((n,) + (1,) * (values.ndim - 1)), 0, axis)


def error_estimate_per_dimension(coefficients) -> np.ndarray:
    """max over the other indices of |c_{n-2}| + |c_{n-1}| along each dimension (coefficient decay)."""
    c = np.abs(np.asarray(coefficients))
    out = []
    for axis in range(c.ndim):
        tail = np.take(c, [-2, -1], axis=axis).sum(axis=axis)
        out.append(float(tail.max()))
    return np.asarray(out)


def bases(t, count: int, max_order: int):
    """[T^{(0)}, ..., T^{(max_order)}] of T_0..T_{count-1} at ``t`` in [-1, 1], each t.shape + (count,).

    By the three-term recurrence and its derivatives (Trefethen, ATAP ch. 3), all elementwise and fused
    by XLA (about 5x faster than cos(k arccos t) on CPU, and differentiable on the faces t = +-1):

    .. math::
        T_{k+1} = 2 t T_k - T_{k-1},\\qquad
        T^{(j)}_{k+1} = 2 j T^{(j-1)}_k + 2 t T^{(j)}_k - T^{(j)}_{k-1},

    with T_0 = 1, T_1 = t, T^{(j)}_0 = 0 and T'_1 = 1 (j >= 1).  Exact for the derivatives of the
    interpolant (no truncation); the recurrence is stable on [-1, 1] (rounding grows at most like k^{2j}).
    """
    t = jnp.asarray(t)
    one, zero = jnp.ones_like(t), jnp.zeros_like(t)
    levels = []
    for order in range(max_order + 1):
        terms = [one if order == 0 else zero, t if order == 0 else (one if order == 1 else zero)]
        lower = levels[-1] if levels else None
        for k in range(1, count - 1):
            step = 2.0 * t * terms[k] - terms[k - 1]
            terms.append(step if lower is None else step + (2.0 * order) * lower[k])
        levels.append(terms[:count])
    return [jnp.stack(terms, axis=-1) for terms in levels]


def _scaled_bases(points, lower, upper, counts, max_orders):
    """Per dimension i, the list of derivative bases d^j/dx^j T_k(t(x)) for j <= max_orders[i].

    One recurrence per distinct derivative order over all the dimensions that need it (t of shape
    (m, d'), up to their largest count), sliced per dimension: a few wide fused loops instead of d
    narrow ones (about 3x faster on CPU).
    """
    scale = 2.0 / (upper - lower)
    t = jnp.clip((2.0 * points - (lower + upper)) * (0.5 * scale), -1.0, 1.0)
    out = [None] * len(counts)
    for top in sorted(set(max_orders)):
        dims = [i for i, order in enumerate(max_orders) if order == top]
        levels = bases(t[:, dims], max(counts[i] for i in dims), top)
        for column, i in enumerate(dims):
            out[i] = [levels[j][:, column, :counts[i]] * scale[i] ** j for j in range(top + 1)]
    return out


def _kron_rows(factors):
    """Row-wise Kronecker product of (m, n_i) matrices -> (m, prod n_i), first factor slowest."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, :, None] * f[:, None, :]).reshape(out.shape[0], -1)
    return out


class Compressed(NamedTuple):
    """Tucker form of a coefficient tensor: c ~ core x_1 U_1 ... x_d U_d, U_i (n_i, r_i) orthonormal.

    ``factors[i]`` is ``None`` where the rank is full (no rotation, exact); ``bound`` is the l1 norm of
    the discarded part, computed exactly: a rigorous bound on the change of the value in the box.
    """
    factors: tuple
    core: np.ndarray
    bound: float


def compress(coefficients, budget: float) -> Compressed:
    """Truncated higher-order SVD of the coefficient tensor with sum|c - c~| <= ``budget`` (host, NumPy).

    The left singular vectors of each unfolding come from the eigenvectors of its small Gram matrix
    (n_i x n_i).  Mode ranks are cut where the singular-value tail drops below a threshold tau, started
    at budget / 32 (the l1 norm of a discarded tail is typically ~30x its Frobenius norm here) and
    quartered until the exact l1 norm of the discarded tensor is within the budget (De Lathauwer, De Moor,
    Vandewalle, SIAM J. Matrix Anal. Appl. 21, 2000; for Chebyshev tensors in option pricing: Glau,
    Kressner, Statti 2020).  ``budget = 0`` returns the tensor unchanged.
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if budget <= 0.0 or c.ndim == 1:
        return Compressed((None,) * c.ndim, c, 0.0)
    spectra = []
    for i in range(c.ndim):
        others = [j for j in range(c.ndim) if j != i]
        eigenvalues, vectors = np.linalg.eigh(np.tensordot(c, c, axes=(others, others)))
        spectra.append((vectors[:, ::-1], np.sqrt(np.maximum(eigenvalues[::-1], 0.0))))
    tau = budget / 32.0
    for _ in range(8):
        factors = []
        for (u, s), n in zip(spectra, c.shape):
            tail = np.sqrt(np.cumsum((s ** 2)[::-1])[::-1])
            rank = max(1, int(np.sum(tail > tau)))
            factors.append(None if rank == n else u[:, :rank])
        if all(u is None for u in factors):
            break
        core = _multiply_modes(c, factors, transpose=True)
        bound = float(np.abs(c - _multiply_modes(core, factors)).sum())
        if bound <= budget:
            return Compressed(tuple(factors), core, bound)
        tau *= 0.25
    return Compressed((None,) * c.ndim, c, 0.0)


def _multiply_modes(tensor, factors, transpose=False):
    for axis, u in enumerate(factors):
        if u is not None:
            matrix = u.T if transpose else u
            tensor = np.moveaxis(np.tensordot(tensor, matrix, axes=([axis], [1])), -1, axis)
    return tensor


class Plan(NamedTuple):
    """Evaluation plan: dimension groups A (GEMM rows) and B (GEMM columns) of the (core) tensor.

    ``b_dims`` are in contraction order: after the GEMM the first of them (the leading, slowest axis of
    the GEMM output) is contracted first.  ``chunk`` is the number of points per ``lax.map`` step
    (temporaries of ~2 MB).
    """
    a_dims: tuple
    b_dims: tuple
    chunk: int = DEFAULT_CHUNK


def _variants(outputs, dims):
    return sorted({tuple(o[i] for i in dims) for o in outputs})


def _tree_cost(outputs, shape, a_dims, b_dims):
    """Multiply-adds of contracting the GEMM output over ``b_dims`` (first first), sharing equal prefixes."""
    cost, size = 0, prod(shape[i] for i in b_dims)
    for level in range(len(b_dims)):
        cost += len(_variants(outputs, a_dims + b_dims[:level + 1])) * size
        size //= shape[b_dims[level]]
    return cost


def make_plan(shape, outputs) -> Plan:
    """The split and contraction order that minimise the estimated cost of evaluating ``outputs``.

    Cost = sum over the distinct bases of group A among the outputs of |A| |B| (one GEMM each) plus
    w * (the row-wise Kronecker products of group A and the contraction tree over group B, in which
    outputs that agree on the dimensions contracted so far share the work); w is the measured cost of
    a multiply-add of the tree relative to one of the GEMM.  Every split and every order of B is tried
    (at most 30 x 120 for d = 6, once per shape and output set).
    """
    d = len(shape)
    if d == 1:
        return Plan((0,), ())
    best = None
    for size in range(1, d):
        for a_dims in itertools.combinations(range(d), size):
            rest = [i for i in range(d) if i not in a_dims]
            rows, cols = prod(shape[i] for i in a_dims), prod(shape[i] for i in rest)
            n_var = len(_variants(outputs, a_dims))
            for b_dims in itertools.permutations(rest):
                cost = n_var * rows * cols + _ELEMENTWISE_WEIGHT * (
                    n_var * rows + _tree_cost(outputs, shape, a_dims, b_dims))
                if best is None or cost < best[0]:
                    chunk = int(min(512, max(32, 1 << int(np.log2(max(1, (1 << 18) // max(rows, cols)))))))
                    best = (cost, Plan(a_dims, b_dims, chunk))
    return best[1]


def plan_matrix(core, plan: Plan) -> np.ndarray:
    """The core tensor matricised for ``plan``: rows over group A, columns over group B (C order)."""
    core = np.asarray(core)
    rows = prod(core.shape[i] for i in plan.a_dims)
    return np.transpose(core, plan.a_dims + plan.b_dims).reshape(rows, -1)


def _contract(tensor, b_dims, basis_sets, outputs, indices, results):
    """Contract ``tensor`` (m, r_b1..r_bk) over its leading axis r_b1 for each distinct order of that
    dimension among ``outputs`` (indices into ``results``), recursing on the shared partial results.

    The leading axis is the slowest one, so each contraction is a sum of contiguous rows scaled per
    point (XLA:CPU vectorises it along the rows: ~5x the rate of a reduction over the last axis)."""
    if not b_dims:
        for index in indices:
            results[index] = tensor
        return
    dim = b_dims[0]
    for order in sorted({outputs[i][dim] for i in indices}):
        reduced = jnp.einsum("pk,pk...->p...", basis_sets[dim][order], tensor)
        _contract(reduced, b_dims[1:], basis_sets, outputs,
                  [i for i in indices if outputs[i][dim] == order], results)


def _evaluate_plan_chunk(points, matrix, factors, lower, upper, *, counts, plan, outputs):
    max_orders = [max(o[i] for o in outputs) for i in range(len(counts))]
    basis_sets = _scaled_bases(points, lower, upper, counts, max_orders)
    basis_sets = [levels if u is None else [level @ u for level in levels]
                  for levels, u in zip(basis_sets, factors)]
    ranks = [levels[0].shape[-1] for levels in basis_sets]
    results = [None] * len(outputs)
    for variant in _variants(outputs, plan.a_dims):
        w = _kron_rows([basis_sets[i][j] for i, j in zip(plan.a_dims, variant)])
        z = (w @ matrix).reshape((points.shape[0],) + tuple(ranks[i] for i in plan.b_dims))
        indices = [k for k, o in enumerate(outputs) if tuple(o[i] for i in plan.a_dims) == variant]
        _contract(z, plan.b_dims, basis_sets, outputs, indices, results)
    return jnp.stack([r.reshape(-1) for r in results], axis=1)


def chunked(function, points, chunk: int = DEFAULT_CHUNK):
    """Apply a row-wise ``function`` ((k, d) -> (k, ...)) to ``points`` chunk by chunk under ``lax.map``.

    Pads the batch to a multiple of ``chunk`` (or, below one chunk, to the next power of two; a single
    point is not padded) so that a few shapes are compiled, and cuts the padding from the result.
    """
    m = points.shape[0]
    if m <= chunk:
        size = 1 << max(0, (m - 1).bit_length())
        padded = jnp.concatenate([points, jnp.broadcast_to(points[-1:], (size - m, points.shape[1]))])
        return function(padded)[:m]
    total = -(-m // chunk) * chunk
    padded = jnp.concatenate([points, jnp.broadcast_to(points[-1:], (total - m, points.shape[1]))])
    out = lax.map(function, padded.reshape(total // chunk, chunk, points.shape[1]))
    return out.reshape((total,) + out.shape[2:])[:m]


def plan_evaluator(plan: Plan, counts, outputs):
    """A jitted ``f(points, matrix, factors, lower, upper) -> (m, len(outputs))`` for a fixed plan.

    ``matrix`` is :func:`plan_matrix` of the (core) tensor, ``factors`` the Tucker factors (``None``
    entries for full rank); both are traced arguments, so one compiled program serves every proxy of the
    same shape.
    """
    counts = tuple(int(n) for n in counts)
    outputs = tuple(tuple(int(j) for j in o) for o in outputs)

    @jax.jit
    def evaluate(points, matrix, factors, lower, upper):
        def one_chunk(block):
            return _evaluate_plan_chunk(block, matrix, factors, lower, upper, counts=counts, plan=plan,
                                        outputs=outputs)
        return chunked(one_chunk, points, plan.chunk)

    return evaluate


def evaluate(coefficients, lower, upper, points, outputs=None, *, chunk: int = DEFAULT_CHUNK):
    """Interpolant (or its partial derivatives) at ``points`` (m, d) -> (m, len(outputs)); traceable.

    The dense path: no compression, coefficients may be tracers (usable inside jit/grad/vmap of user
    code).  ``outputs`` is a tuple of derivative-order tuples (default: the value).  Prefer these
    spectral derivatives to ``jax.grad`` with respect to the points: one pass gives all of them, and
    the points are clipped to the box, so autodiff gives zero outside it.
    """
    coefficients = jnp.asarray(coefficients)
    d = coefficients.ndim
    outputs = ((0,) * d,) if outputs is None else tuple(tuple(int(j) for j in o) for o in outputs)
    plan = Plan(tuple(range((d + 1) // 2)), tuple(range((d + 1) // 2, d)))
    matrix = coefficients.reshape(prod(coefficients.shape[:len(plan.a_dims)]), -1)
    points = jnp.atleast_2d(jnp.asarray(points, dtype=matrix.dtype))

    def one_chunk(block):
        return _evaluate_plan_chunk(block, matrix, (None,) * d, jnp.asarray(lower), jnp.asarray(upper),
                                    counts=coefficients.shape, plan=plan, outputs=outputs)
    return chunked(one_chunk, points, chunk)


def tt_evaluate(cores, lower, upper, points, outputs, *, chunk: int = DEFAULT_CHUNK):
    """Tensor-train Chebyshev interpolant at ``points``: cores[i] of shape (r_{i-1}, n_i, r_i), r_0 = r_d = 1.

    value = prod_i (sum_k B_i[k] G_i[:, k, :]), B_i the (derivative) basis of dimension i.
    """
    counts = tuple(core.shape[1] for core in cores)
    outputs = tuple(tuple(int(j) for j in o) for o in outputs)
    max_orders = [max(o[i] for o in outputs) for i in range(len(counts))]

    def one_chunk(block):
        basis_sets = _scaled_bases(block, lower, upper, counts, max_orders)
        results = []
        for order in outputs:
            carry = jnp.einsum("pk,kr->pr", basis_sets[0][order[0]], cores[0][0])
            for i in range(1, len(cores)):
                matrices = jnp.einsum("pk,akb->pab", basis_sets[i][order[i]], cores[i])
                carry = jnp.einsum("pa,pab->pb", carry, matrices)
            results.append(carry[:, 0])
        return jnp.stack(results, axis=1)

    return chunked(one_chunk, jnp.atleast_2d(points), chunk)

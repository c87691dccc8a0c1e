"""Batched theta-scheme (Crank-Nicolson with Rannacher start-up) for the Black-Scholes / Dupire PDE in ln S.

For each trade b of a batch, on its own non-uniform grid x_0 < ... < x_{n-1} in x = ln S,

.. math:: \\partial_t V + a(t, x) \\partial_{xx} V + (\\mu(t) - a(t, x)) \\partial_x V - r(t) V = 0,
          \\qquad a = \\tfrac12 \\sigma^2(t, e^x),\\ \\mu = r - q,

is stepped backward from the payoff at maturity to t = 0.  Space: the three-point central differences of
a non-uniform grid (second order on smoothly stretched grids).  Time: the theta-scheme

.. math:: (I - \\theta \\Delta t L^{n+1/2}) V^{n} = (I + (1 - \\theta) \\Delta t L^{n+1/2}) V^{n+1},

coefficients frozen at the step's mid-time; theta = 1/2 (Crank-Nicolson) except implicit (theta = 1)
start-up steps chosen by the caller after every discontinuity (Rannacher 1984).  Steps of zero length
leave the interior as it is and set the end nodes by the side conditions (the identity where the values
already satisfy them; a boundary hook's condition is skipped there), so trades with different numbers of
events share one step count (padding).

Boundaries: per trade and side, Dirichlet (a given value per step: a knock-out barrier, a rebate) or
"linear in S" (V_SS = 0: V at the end node extrapolated linearly in S from the two next nodes, which keeps
the system tridiagonal after elimination).  Tridiagonal systems are solved by a Thomas sweep vectorised
across the batch (``lax.scan`` over space, one row of the (nodes, batch) layout per iteration).  Measured on
CPU for 800 systems of 239 rows (float64, per solve): 0.7 ms, against 13 ms for
``lax.linalg.tridiagonal_solve``, 47 ms for parallel cyclic reduction and 1.7-2.4 ms for the same scan
unrolled 2-8 times; the sweep costs about 2 ns per row and system, so at the example book's shapes
(~800 rows x 241 nodes x 200-300 steps) it is about a quarter of a solve (profiled: ~5 of ~22 ns per node,
row and step before the grouped table reads below, ~16 ns after; the rest is the step's assembly).

Local vol: sigma(t, S) bilinear in a (times x spots) table that is either shared by the batch (a Dupire
grid) or one table per trade (flat vols: a 2 x 2 table of one value), read at each step's mid-time.  Rows
that step through the same times (``Steps.group``) interpolate a shared table in time once per group, then
each node reads its two neighbours from that row; steps end on the table's jumps in time
(:func:`split_steps`).

References: Tavella & Randall, "Pricing Financial Instruments: the Finite Difference Method" (2000)
ch. 3-5 (non-uniform grids, sinh stretching); Rannacher, Numer. Math. 43 (1984); Duffy, "Finite Difference
Methods in Financial Engineering" (2006).
Validation: tests/unit/test_pde_kernel.py (heat-equation convergence, Black-Scholes European second order
in space and time), and the method tests built on it.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def stretched_nodes(lower, upper, n: int, center, intensity=0.1):
    """Nodes (batch, n) on [lower, upper] concentrated around ``center`` by a sinh map (NumPy, host side).

    x(u) = c + alpha sinh(A (1 - u) + B u), u uniform on [0, 1], A = asinh((lower - c)/alpha),
    B = asinh((upper - c)/alpha), alpha = ``intensity`` (upper - lower): small ``intensity`` concentrates
    strongly, large tends to uniform.  End nodes are exactly ``lower`` and ``upper``.
    """
    lower, upper, center, intensity = (np.atleast_1d(np.asarray(v, dtype=np.float64))
                                       for v in (lower, upper, center, intensity))
    alpha = intensity * (upper - lower)
    a = np.arcsinh((lower - center) / alpha)
    b = np.arcsinh((upper - center) / alpha)
    u = np.linspace(0.0, 1.0, n)[None, :]
    nodes = center[:, None] + alpha[:, None] * np.sinh(a[:, None] * (1.0 - u) + b[:, None] * u)
    nodes[:, 0], nodes[:, -1] = lower, upper
    return nodes


def snap_nodes(nodes, points):
    """Move, per row, the interior node nearest to each finite ``points[b, j]`` onto it (NumPy).

    Used to put discrete barriers, strikes or fixing levels exactly on a node; a node is moved by at most
    half a cell, so the grid stays smooth to first order around it.  NaN points are ignored.
    """
    nodes = np.array(nodes, dtype=np.float64)
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    if points.shape[0] != nodes.shape[0]:
        points = np.broadcast_to(points, (nodes.shape[0], points.shape[-1]))
    for column in points.T:
        ok = np.isfinite(column) & (column > nodes[:, 0]) & (column < nodes[:, -1])
        index = np.clip(np.abs(nodes[:, 1:-1] - column[:, None]).argmin(axis=1) + 1, 1, nodes.shape[1] - 2)
        rows = np.flatnonzero(ok)
        nodes[rows, index[rows]] = column[rows]
    if np.any(np.diff(nodes, axis=1) <= 0.0):
        raise ValueError("snapping points onto the grid made it non-increasing; use more nodes")
    return nodes


class VolTable(NamedTuple):
    """sigma(t, S) on ``times`` (nt,) x ``spots`` (ns,) with ``vols`` (nt, ns) shared by the batch or
    (batch, nt, ns) per trade; bilinear inside, flat outside."""

    times: jax.Array
    spots: jax.Array
    vols: jax.Array


def flat_vol_table(vols):
    """A :class:`VolTable` holding one constant vol per trade (``vols`` of shape (batch,))."""
    vols = jnp.asarray(vols, dtype=jnp.float64)
    return VolTable(times=jnp.array([0.0, 1.0]), spots=jnp.array([1.0, 2.0]),
                    vols=jnp.broadcast_to(vols[:, None, None], vols.shape + (2, 2)))


def _cell(nodes, x):
    i = jnp.clip(jnp.searchsorted(nodes, x, side="right") - 1, 0, nodes.shape[0] - 2)
    u = jnp.clip((x - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    return i, u


def _table_variance_rows(table: VolTable, times, spot_cells):
    """sigma^2 at (times[b], S[i, b]) in the transposed layout (n, batch), spot cells (j, v) of shape (n, batch):
    four direct gathers per node (no row copies)."""
    j, v = spot_cells
    i, u = _cell(table.times, times)
    vols = table.vols
    if vols.ndim == 2:
        def at(rows, cols):
            return vols[rows[None, :], cols]
    else:
        batch = jnp.arange(vols.shape[0])[None, :]

        def at(rows, cols):
            return vols[batch, rows[None, :], cols]
    left = (1.0 - u)[None, :] * at(i, j) + u[None, :] * at(i + 1, j)
    right = (1.0 - u)[None, :] * at(i, j + 1) + u[None, :] * at(i + 1, j + 1)
    return ((1.0 - v) * left + v * right) ** 2


@jax.jit
def table_vol(table: VolTable, times, spots):
    """sigma(t, S) of ``table`` at ``times`` (batch,) and ``spots`` (batch, n): shape (batch, n) (compiled:
    the pricers call it host-side while planning)."""
    j, v = _cell(table.spots, jnp.asarray(spots, dtype=jnp.float64))
    return jnp.sqrt(_table_variance_rows(table, jnp.asarray(times, dtype=jnp.float64), (j.T, v.T))).T


class Geometry(NamedTuple):
    """Time-independent parts of the operator on the interior nodes, transposed to (n - 2, batch), and the
    linear-in-S boundary weights (batch,): with a = sigma^2/2 and mu = r - q at a step,
    l = a l_a + mu l_mu, u = a u_a + mu u_mu and d = -(l + u) - r (see :func:`geometry`)."""

    l_a: jax.Array
    l_mu: jax.Array
    u_a: jax.Array
    u_mu: jax.Array
    low: tuple
    high: tuple


def geometry(x) -> Geometry:
    """:class:`Geometry` of grids ``x`` (batch, n), computed once per solve: the operator
    (L V)_i = l V_{i-1} + d V_i + u V_{i+1} of a V_xx + (mu - a) V_x - r V at the interior nodes by non-uniform
    central differences (h- = x_i - x_{i-1}, h+ = x_{i+1} - x_i),

    V_x  ~ [-h+^2 V_{i-1} + (h+^2 - h-^2) V_i + h-^2 V_{i+1}] / (h- h+ (h- + h+))
    V_xx ~ 2 [h+ V_{i-1} - (h- + h+) V_i + h- V_{i+1}] / (h- h+ (h- + h+)),

    split into the parts multiplying a and mu.  Both stencils vanish on constants, so each row's weights sum to
    zero and the diagonal is d = -(l + u) - r: it is not stored (two arrays fewer to read at every step of
    a memory-bound solve), and the operator is applied as l (V_{i-1} - V_i) + u (V_{i+1} - V_i) - r V_i."""
    minus = (x[:, 1:-1] - x[:, :-2]).T
    plus = (x[:, 2:] - x[:, 1:-1]).T
    scale = 1.0 / (minus * plus * (minus + plus))
    a_low, b_low = 2.0 * scale * plus, scale * plus * plus
    a_up, b_up = 2.0 * scale * minus, scale * minus * minus
    return Geometry(l_a=a_low + b_low, l_mu=-b_low, u_a=a_up - b_up, u_mu=b_up, low=_linear_weights(x, 0),
                    high=_linear_weights(x, -1))


def _thomas_sweep(lower, diag, upper, rhs):
    """Thomas sweep over the leading axis of (m, batch) arrays (``lower[0]``, ``upper[-1]`` ignored).

    Shared factors: the diagonals may be (m, groups, 1) for right-hand sides (m, groups, members), one matrix
    per group (the members of a family on one grid under one vol); the elimination factors are then computed
    once per group, and each member's recurrences multiply by the group's reciprocal pivot (no divide)."""
    shared = diag.shape != rhs.shape

    def forward(carry, row):
        c_prev, y_prev = carry
        l, d, u, r = row
        denominator = d - l * c_prev
        if shared:
            inverse = 1.0 / denominator
            c, y = u * inverse, (r - l * y_prev) * inverse
        else:
            c, y = u / denominator, (r - l * y_prev) / denominator
        return (c, y), (c, y)

    start = (jnp.zeros(diag.shape[1:], dtype=rhs.dtype), jnp.zeros(rhs.shape[1:], dtype=rhs.dtype))
    _, (c, y) = jax.lax.scan(forward, start, (lower.at[0].set(0.0), diag, upper, rhs))

    def backward(following, row):
        c_i, y_i = row
        value = y_i - c_i * following
        return value, value

    _, solution = jax.lax.scan(backward, start[1], (c, y), reverse=True)
    return solution


@jax.custom_vjp
def _thomas_rows(lower, diag, upper, rhs):
    """x = A^{-1} rhs for the tridiagonal A of sub-, main and super-diagonals ``lower``, ``diag``, ``upper``
    (each (m, batch); ``lower[0]``, ``upper[-1]`` ignored), by :func:`_thomas_sweep`.

    Reverse mode by the adjoint of a linear solve (Giles, "Collected matrix derivative results for forward
    and reverse mode algorithmic differentiation", 2008): rhs_bar = A^{-T} x_bar, one more sweep on the
    transposed system (sub-diagonal u_{i-1}, super-diagonal l_{i+1}), and A_bar = -rhs_bar x^T on the three
    diagonals: l_bar_i = -rhs_bar_i x_{i-1}, d_bar_i = -rhs_bar_i x_i, u_bar_i = -rhs_bar_i x_{i+1}.  JAX's own
    reverse mode of the two scans stores and replays every sweep intermediate instead.  Measured (one run,
    2 cores), a checkpointed solve's value and gradient: 650 x 301 x 155 steps 2.36 -> 1.81 s, 735 x 121 x 420
    2.68 -> 1.48 s; the example book's families (AAD of price_book's plans): barrier 0.75 -> 0.50 s, lookback
    2.36 -> 2.12 s, cliquet 2.53 -> 2.34 s; gradients equal to ~1e-12 relative
    (tests/unit/test_pde_kernel.py).
    """
    return _thomas_sweep(lower, diag, upper, rhs)


def _thomas_forward(lower, diag, upper, rhs):
    solution = _thomas_sweep(lower, diag, upper, rhs)
    return solution, (lower, diag, upper, solution)


def _thomas_backward(residuals, solution_bar):
    lower, diag, upper, solution = residuals
    zero = jnp.zeros_like(solution[:1])
    transposed_lower = jnp.concatenate([jnp.zeros_like(upper[:1]), upper[:-1]], axis=0)
    transposed_upper = jnp.concatenate([lower[1:], jnp.zeros_like(lower[:1])], axis=0)
    rhs_bar = _thomas_sweep(transposed_lower, diag, transposed_upper, solution_bar)
    previous = jnp.concatenate([zero, solution[:-1]], axis=0)          # x_{i-1}; 0 where lower is ignored
    following = jnp.concatenate([solution[1:], zero], axis=0)          # x_{i+1}; 0 where upper is ignored

    def matrix_bar(products):                    # summed over the members of a shared matrix
        return products if products.shape == diag.shape else jnp.sum(products, axis=-1, keepdims=True)

    return (matrix_bar(-rhs_bar * previous), matrix_bar(-rhs_bar * solution), matrix_bar(-rhs_bar * following),
            rhs_bar)


_thomas_rows.defvjp(_thomas_forward, _thomas_backward)


def _linear_weights(x, end):
    """Weights (w1, w2) with V_end = w1 V_next + w2 V_nextnext for V linear in S = e^x (end 0 or -1)."""
    if end == 0:
        s0, s1, s2 = (jnp.exp(x[:, k]) for k in (0, 1, 2))
    else:
        s0, s1, s2 = (jnp.exp(x[:, k]) for k in (-1, -2, -3))
    rho = (s0 - s1) / (s2 - s1)
    return 1.0 - rho, rho


def theta_step(v, *, grid: Geometry, half_variance, drift, rate, dt, theta, lower_value, upper_value,
               lower_dirichlet, upper_dirichlet, lower_node=None, upper_node=None, lower_weights=None,
               upper_weights=None):
    """One backward step of length ``dt`` (batch,) from V^{n+1} = ``v`` to V^n, both (n, batch): nodes first,
    the layout :func:`solve_backward` carries, so that the Thomas sweep scans rows without copies.

    ``grid`` is the :func:`geometry` of the grids; ``half_variance`` (n, batch) is a = sigma^2 / 2 at the
    step's mid-time; ``drift`` mu = r - q, ``rate`` r and ``theta`` are (batch,); Dirichlet sides
    (``*_dirichlet`` (batch,) bools) take ``*_value`` (batch,) at the new time level, the others are linear in
    S, or, where ``*_weights`` = (w1, w2, w0) (each (batch,)) is given, V_end = w1 V_next + w2 V_nextnext + w0
    at the new time level (a Robin/Neumann condition discretised one-sidedly, e.g. the lookback's dV/dM = 0 on
    the diagonal).

    Shared operators: ``v`` may be (n, groups, members) with ``grid``, ``half_variance`` (n, groups, 1) and the
    per-trade inputs (groups, 1) (``*_value`` (groups, members)): one matrix per group, factored once
    (:func:`_thomas_sweep`).

    ``lower_node`` / ``upper_node`` (batch,) ints (optional) move a Dirichlet side inside the grid: nodes
    i <= ``lower_node`` (i >= ``upper_node``) are held at ``lower_value`` (``upper_value``) by identity rows,
    so a barrier on an interior node is an exact Dirichlet boundary and the solution beyond it is decoupled
    (knock-out legs on the same nodes as the vanilla they are compared with).  Defaults: the end nodes.
    """
    a = half_variance[1:-1]
    mu = drift[None, :]
    lower = a * grid.l_a + mu * grid.l_mu
    upper = a * grid.u_a + mu * grid.u_mu
    centre = v[1:-1]
    explicit = lower * (v[:-2] - centre) + upper * (v[2:] - centre) - rate[None, :] * centre
    rhs = centre + ((1.0 - theta) * dt)[None, :] * explicit
    step = (theta * dt)[None, :]
    a_lower, a_upper = -step * lower, -step * upper
    a_diag = 1.0 - (a_lower + a_upper) + step * rate[None, :]
    w1_low, w2_low, w0_low = (*grid.low, 0.0) if lower_weights is None else lower_weights
    w1_up, w2_up, w0_up = (*grid.high, 0.0) if upper_weights is None else upper_weights
    # First interior row: V_0 known (Dirichlet) or V_0 = w1 V_1 + w2 V_2 + w0 (linear in S or Robin).
    first_l = a_lower[0]
    rhs = rhs.at[0].add(-first_l * jnp.where(lower_dirichlet, lower_value, w0_low))
    a_diag = a_diag.at[0].add(jnp.where(lower_dirichlet, 0.0, first_l * w1_low))
    a_upper = a_upper.at[0].add(jnp.where(lower_dirichlet, 0.0, first_l * w2_low))
    last_u = a_upper[-1]
    rhs = rhs.at[-1].add(-last_u * jnp.where(upper_dirichlet, upper_value, w0_up))
    a_diag = a_diag.at[-1].add(jnp.where(upper_dirichlet, 0.0, last_u * w1_up))
    a_lower = a_lower.at[-1].add(jnp.where(upper_dirichlet, 0.0, last_u * w2_up))
    if lower_node is not None or upper_node is not None:
        index = jnp.arange(1, v.shape[0] - 1)[:, None]
        held_low = (jnp.asarray(lower_dirichlet)[None, :] & (index <= lower_node[None, :])
                    if lower_node is not None else jnp.zeros_like(index, dtype=bool))
        held_high = (jnp.asarray(upper_dirichlet)[None, :] & (index >= upper_node[None, :])
                     if upper_node is not None else jnp.zeros_like(index, dtype=bool))
        held = held_low | held_high
        rhs = jnp.where(held_low, lower_value[None, :], jnp.where(held_high, upper_value[None, :], rhs))
        a_lower = jnp.where(held, 0.0, a_lower)
        a_diag = jnp.where(held, 1.0, a_diag)
        a_upper = jnp.where(held, 0.0, a_upper)
    inner = _thomas_rows(a_lower, a_diag, a_upper, rhs)
    low = jnp.where(lower_dirichlet, lower_value, w1_low * inner[0] + w2_low * inner[1] + w0_low)
    high = jnp.where(upper_dirichlet, upper_value, w1_up * inner[-1] + w2_up * inner[-2] + w0_up)
    return jnp.concatenate([low[None, :], inner, high[None, :]], axis=0)


class Steps(NamedTuple):
    """Per-step inputs, each of shape (steps, batch), in backward order (step 0 ends at maturity).

    ``start`` is the later time, ``dt`` the length (0 for padding), ``theta`` 1/2 or 1 (Rannacher),
    ``drift`` mu = r - q and ``rate`` r averaged over the step, ``lower_value`` / ``upper_value`` the
    Dirichlet boundary values at the step's earlier end (ignored on linear sides).

    Optional: ``group`` (batch,) ints numbering the distinct step-time columns (rows of a group step
    through the same times: trades of one maturity and schedule) and ``leader`` (groups,) one row of each;
    see :func:`time_groups`.  With them, :func:`solve_backward` interpolates a shared vol table in time once
    per group and step instead of once per row and node."""

    start: jax.Array
    dt: jax.Array
    theta: jax.Array
    drift: jax.Array
    rate: jax.Array
    lower_value: jax.Array
    upper_value: jax.Array
    group: jax.Array | None = None
    leader: jax.Array | None = None


def time_groups(start, dt):
    """``(group, leader)`` of :class:`Steps` (NumPy, host side): rows whose columns of ``start`` and ``dt``
    (steps, batch) are identical share a group; ``leader[g]`` is the first row of group g."""
    key = np.ascontiguousarray(np.concatenate([np.asarray(start, dtype=np.float64),
                                               np.asarray(dt, dtype=np.float64)], axis=0).T)
    rows = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).reshape(-1)   # one bytes key per row
    _, leader, group = np.unique(rows, return_index=True, return_inverse=True)
    return group.reshape(-1).astype(np.int32), leader.astype(np.int32)


class Levels(NamedTuple):
    """Time levels of a solve to capture and to perturb.  Level k is V before step k (level 0 the terminal
    values, level ``steps`` the result).

    ``slots`` (steps + 1,) int32: the slot of each level, C (the last slot) for the levels not chosen;
    ``inject`` (C + 1, batch, n): added to V at each level (slot C: zeros); the gradient of a function of the
    result with respect to ``inject[s]`` is the adjoint state at the level of slot s.  ``captured`` (C + 1, batch,
    n): a buffer that receives V (after the injection) at each chosen level.  Either may be None."""

    slots: jax.Array
    inject: jax.Array | None = None
    captured: jax.Array | None = None


class Window(NamedTuple):
    """Steps ``first`` <= k < ``stop`` (int32 scalars) of a solve, from ``initial`` V (batch, n) at level
    ``first``: one compiled program for every window of the same batch."""

    initial: jax.Array
    first: jax.Array
    stop: jax.Array


@partial(jax.jit, static_argnames=("event", "boundary", "checkpoint", "vol_repeat"))
def solve_backward(terminal, *, x, steps: Steps, vol: VolTable, lower_dirichlet, upper_dirichlet,
                   event=None, event_data=None, checkpoint=False, lower_node=None, upper_node=None,
                   event_constants=None, boundary=None, vol_repeat: int = 1, levels: Levels | None = None,
                   window: Window | None = None):
    """Step ``terminal`` values (batch, n) on grids ``x`` (batch, n) back through ``steps``; returns V at
    the end of the last step (t = 0 for grids built by :func:`time_steps`).

    ``event(values, data, step_index) -> values`` (static; optional) is applied after each step with that
    step's slice of ``event_data`` (a pytree with leading axis steps): early-exercise projection, discrete
    barrier monitoring, jump conditions at fixings.  ``checkpoint`` rematerialises each step under
    reverse-mode AD (memory O(batch n) instead of O(steps batch n)).  ``lower_node`` / ``upper_node``
    (batch,) put Dirichlet sides on interior nodes (see :func:`theta_step`).  ``event_constants`` (a pytree,
    optional) is passed unsliced to the event as a fourth argument, ``event(values, data, step_index,
    constants)``: per-node data that does not change with time (exercise values, barrier weights) without
    repeating it for every step.  ``boundary(values, data, step_index, constants) -> (lower_weights,
    upper_weights)`` (static; optional) gives each step the side weights of :func:`theta_step` from the
    values at the step's later end (a lagged Robin condition; None for a side keeps it linear in S).
    ``vol_repeat`` (static): consecutive groups of that many rows share their grid, their step times, their
    vol table and their side conditions (the members of one trade's family; Dirichlet values may differ), so
    they share one operator: sigma is read, the matrix assembled and factored once per group, and each
    member only adds its right-hand side (:func:`theta_step` on (n, groups, members)); no ``boundary`` hook or
    interior sides then.  Rows that only share step times (``steps.group``) share the time
    interpolation of a shared table.

    ``levels`` (:class:`Levels`): perturb and capture V at chosen time levels; the result is then
    ``(values, captured)``.  ``window`` (:class:`Window`): run only steps first..stop - 1 from the given V
    (``terminal`` ignored), returning V at level ``stop``.  Both serve exact windowed bumps: a bump that
    changes sigma only on steps [first, stop) leaves V at level ``first`` unchanged, and after ``stop`` the
    scheme is affine in V, so the bumped result differs from the base by lambda . (V_bumped - V) at level
    ``stop``, lambda the base adjoint state there (:meth:`shoals.methods.pde_plan.PdePlan.ladder_values`).
    """
    if vol_repeat > 1 and (boundary is not None or lower_node is not None or upper_node is not None):
        raise ValueError("vol_repeat > 1 shares one operator per group: no boundary hook or interior sides")
    group_vol = vol if vol.vols.ndim == 2 or vol_repeat == 1 else vol._replace(vols=vol.vols[::vol_repeat])
    j, v = _cell(vol.spots, jnp.exp(x[::vol_repeat]))
    spot_cells = (j.T, v.T)
    # One operator per group of vol_repeat rows: coefficients (groups, 1) against the members' (groups, members).
    grid = geometry(x) if vol_repeat == 1 else jax.tree.map(lambda a: a[..., None], geometry(x[::vol_repeat]))
    leader = steps.leader
    # Time interpolation once per group of rows with the same step times (a shared table only, and only where
    # the groups' table rows are fewer than the cells they serve).
    grouped = (leader is not None and vol.vols.ndim == 2
               and 4 * leader.shape[0] * vol.spots.shape[0] <= j.shape[0] * j.shape[1])
    if grouped:
        pair_index = steps.group[::vol_repeat][None, :] * (vol.spots.shape[0] - 1) + spot_cells[0]
    steps = steps._replace(group=None, leader=None)

    def variance(step):
        """sigma^2 at the step's mid-time on the grid rows (n, rows / vol_repeat): bilinear in the table."""
        mid = step.start - 0.5 * step.dt
        if not grouped:
            return _table_variance_rows(group_vol, mid[::vol_repeat], spot_cells)
        i, u = _cell(vol.times, mid[leader])
        at_time = (1.0 - u)[:, None] * vol.vols[i] + u[:, None] * vol.vols[i + 1]          # (groups, ns)
        pairs = jnp.stack([at_time[:, :-1], at_time[:, 1:]], axis=-1).reshape(-1, 2)[pair_index]
        return ((1.0 - spot_cells[1]) * pairs[..., 0] + spot_cells[1] * pairs[..., 1]) ** 2

    def body(state, inputs):
        """One step on the state carried nodes first, (n, batch): the layout of the Thomas sweep, so that no
        step transposes it; the hooks see V as (batch, n), a free view of that state."""
        index, step, data = inputs
        half_variance = 0.5 * variance(step)
        if vol_repeat > 1:
            nodes, groups = half_variance.shape
            shared = (lambda a: a[::vol_repeat, None])
            members = (lambda a: a.reshape(groups, vol_repeat))
            state = theta_step(state.reshape(nodes, groups, vol_repeat), grid=grid,
                               half_variance=half_variance[:, :, None], drift=shared(step.drift),
                               rate=shared(step.rate), dt=shared(step.dt), theta=shared(step.theta),
                               lower_value=members(step.lower_value), upper_value=members(step.upper_value),
                               lower_dirichlet=shared(lower_dirichlet),
                               upper_dirichlet=shared(upper_dirichlet)).reshape(nodes, -1)
        else:
            weights = (None, None) if boundary is None else boundary(state.T, data, index, event_constants)
            stepped = theta_step(state, grid=grid, half_variance=half_variance, drift=step.drift, rate=step.rate,
                                 dt=step.dt, theta=step.theta, lower_value=step.lower_value,
                                 upper_value=step.upper_value, lower_dirichlet=lower_dirichlet,
                                 upper_dirichlet=upper_dirichlet, lower_node=lower_node, upper_node=upper_node,
                                 lower_weights=weights[0], upper_weights=weights[1])
            # A hook's side condition (the lookback's lagged Robin end) is not idempotent: a zero-length step
            # (padding) must leave the row as it is, or a trade's value would depend on its batch-mates.
            state = stepped if boundary is None else jnp.where(step.dt > 0.0, stepped, state)
        if event is not None:
            values = (event(state.T, data, index) if event_constants is None
                      else event(state.T, data, index, event_constants))
            state = values.T
        return state, None

    count = steps.dt.shape[0]
    if window is not None:
        def window_body(index, state):
            at = (lambda a: a[index])
            return body(state, (index, jax.tree.map(at, steps), jax.tree.map(at, event_data)))[0]

        return jax.lax.fori_loop(window.first, window.stop, window_body, window.initial.T).T
    if levels is not None:
        # The level buffers in the carried layout, (slots, n, batch), transposed once outside the loop.
        inject = None if levels.inject is None else jnp.swapaxes(levels.inject, 1, 2)

        def at_level(state, captured, index):
            slot = levels.slots[index]
            if inject is not None:
                state = state + inject[slot]
            if captured is not None:
                captured = captured.at[slot].set(state)
            return state, captured

        def level_body(carry, inputs):
            state, captured = at_level(*carry, inputs[0])
            return (body(state, inputs)[0], captured), None

        level_body = jax.checkpoint(level_body) if checkpoint else level_body
        captured = None if levels.captured is None else jnp.swapaxes(levels.captured, 1, 2)
        (state, captured), _ = jax.lax.scan(level_body, (terminal.T, captured), (jnp.arange(count), steps, event_data))
        state, captured = at_level(state, captured, count)
        return state.T, None if captured is None else jnp.swapaxes(captured, 1, 2)
    if checkpoint:
        body = jax.checkpoint(body)
    state, _ = jax.lax.scan(body, terminal.T, (jnp.arange(count), steps, event_data))
    return state.T


def time_steps(maturities, n_steps: int, events=(), rannacher: int = 2):
    """Backward time steps (NumPy, host side) for a batch: each trade's [0, T] is cut at its event times
    (fixings, monitoring dates, resets: ``events[b]`` a sequence in (0, T)), then each piece into steps of
    about T / ``n_steps``; after maturity and after each event, the first step is replaced by ``rannacher``
    implicit sub-steps.  Trades are padded with zero-length steps to a common count.

    Returns ``(start, dt, theta, event_index)``, each (steps, batch): ``start`` the later end of each step
    (backward order), and ``event_index[s, b]`` = e >= 0 when step s of trade b ends on its e-th event
    (counted from the first in time), else -1.
    """
    maturities = np.atleast_1d(np.asarray(maturities, dtype=np.float64))
    batch = maturities.size
    events = [() for _ in range(batch)] if len(events) == 0 else events
    per_trade = []
    for maturity, trade_events in zip(maturities, events):
        stops = np.unique(np.concatenate([[0.0, maturity], [e for e in trade_events if 0.0 < e < maturity]]))
        event_times = stops[1:-1]
        starts, lengths, thetas, tags = [], [], [], []
        for piece in range(len(stops) - 1, 0, -1):
            a, b = stops[piece - 1], stops[piece]
            count = max(1, int(np.ceil((b - a) / maturity * n_steps - 1e-9)))
            grid = np.linspace(b, a, count + 1)
            for k in range(count):
                high, low = grid[k], grid[k + 1]
                if k == 0 and rannacher > 0:
                    sub = np.linspace(high, low, rannacher + 1)
                    starts.extend(sub[:-1])
                    lengths.extend(sub[:-1] - sub[1:])
                    thetas.extend([1.0] * rannacher)
                    tags.extend([-1] * rannacher)
                else:
                    starts.append(high)
                    lengths.append(high - low)
                    thetas.append(0.5)
                    tags.append(-1)
            if piece - 1 > 0:
                tags[-1] = int(np.searchsorted(event_times, a))
        per_trade.append((starts, lengths, thetas, tags))
    count = max(len(s) for s, _, _, _ in per_trade)
    start = np.zeros((count, batch))
    dt = np.zeros((count, batch))
    theta = np.full((count, batch), 0.5)
    event_index = np.full((count, batch), -1, dtype=np.int32)
    for b, (starts, lengths, thetas, tags) in enumerate(per_trade):
        k = len(starts)
        start[:k, b], dt[:k, b], theta[:k, b], event_index[:k, b] = starts, lengths, thetas, tags
    return start, dt, theta, event_index


def uniform_time_steps(maturities, n_steps, pieces, rannacher: int):
    """Vectorised :func:`time_steps` for events equally spaced at T/m, 2T/m, ... (m = ``pieces`` per trade, 1
    for none: Asian fixings, cliquet resets, discrete barrier dates): each piece is cut into ceil(n_steps / m)
    steps, the first (after maturity and after each event) replaced by ``rannacher`` implicit sub-steps;
    zero-length padding.  ``n_steps``: one count for the batch or one per trade.  Returns
    ``(start, dt, theta, event_index)`` as :func:`time_steps` does, without its Python loop over trades and
    steps.

    Validation: tests/unit/test_pde_kernel.py::test_uniform_time_steps_are_the_kernel_time_steps.
    """
    maturities = np.asarray(maturities, dtype=np.float64)
    pieces = np.asarray(pieces, dtype=np.int64)
    per_piece = np.maximum(1, np.ceil(n_steps / pieces - 1e-9)).astype(np.int64)
    steps_per_piece = per_piece - 1 + rannacher if rannacher > 0 else per_piece
    total = pieces * steps_per_piece
    s = np.arange(int(total.max()))[:, None]
    piece, k = s // steps_per_piece, s % steps_per_piece
    valid = s < total
    length = maturities / pieces
    top = maturities - piece * length
    h = length / per_piece
    if rannacher > 0:
        sub = k < rannacher
        start = np.where(sub, top - k * h / rannacher, top - h - (k - rannacher) * h)
        dt = np.where(sub, h / rannacher, h)
        theta = np.where(sub, 1.0, 0.5)
    else:
        start, dt, theta = top - k * h, np.broadcast_to(h, valid.shape), np.full(valid.shape, 0.5)
    at_event = valid & (k == steps_per_piece - 1) & (piece < pieces - 1)
    event_index = np.where(at_event, pieces - 2 - piece, -1).astype(np.int32)
    return np.where(valid, start, 0.0), np.where(valid, dt, 0.0), np.where(valid, theta, 0.5), event_index


@jax.jit
def value_and_derivatives(x, values, x0):
    """V, dV/dx, d2V/dx2 at ``x0`` (batch,) by the cubic through the 4 nodes around it (non-uniform grid).
    Compiled: run op by op it was ~50 small programs per call, each compiled anew per shape on a cold start
    (~24 s of a cold ``shoals run``).

    Returns three (batch,) arrays; delta = V_x / S, gamma = (V_xx - V_x) / S^2 for x = ln S.
    """
    n = x.shape[1]
    i = jnp.clip(jnp.sum(x <= x0[:, None], axis=1) - 2, 0, n - 4)
    index = i[:, None] + jnp.arange(4)[None, :]
    nodes = jnp.take_along_axis(x, index, axis=1)
    ys = jnp.take_along_axis(values, index, axis=1)
    t = x0[:, None]
    value = jnp.zeros_like(x0)
    first = jnp.zeros_like(x0)
    second = jnp.zeros_like(x0)
    for k in range(4):
        others = [m for m in range(4) if m != k]
        denominator = jnp.prod(jnp.stack([nodes[:, k] - nodes[:, m] for m in others]), axis=0)
        d = [t[:, 0] - nodes[:, m] for m in others]
        value = value + ys[:, k] * d[0] * d[1] * d[2] / denominator
        first = first + ys[:, k] * (d[0] * d[1] + d[0] * d[2] + d[1] * d[2]) / denominator
        second = second + ys[:, k] * 2.0 * (d[0] + d[1] + d[2]) / denominator
    return value, first, second


def end_at_zero(start, dt, theta, tags, *, untagged=-1):
    """Move each row's zero-length padding (the trailing steps of length 0 that :func:`uniform_time_steps` and
    :func:`split_steps` add) to its front, at the row's first time (its maturity): every row's last step then
    ends at t = 0 on the solve's last level, so rows stepped at the same step length read the same time at the
    same level whatever their maturities (NumPy, host side; ``(steps, batch)`` arrays in, the same out).

    Why: a vega bump moves the local vol on one pillar's time span only, and the solve levels it changes
    (:meth:`~shoals.methods.pde_plan.PdePlan.bump_window`) are the union over the batch's rows; padded at the
    end, a 1.5 y trade reaches t = 0.5 y near level 84 of 126 while a 5 y one batched with it (420 levels)
    does near level 378, so the windows of the short pillars span most of the solve.  A zero-length step
    leaves the values as they are, before maturity as after t = 0: the theta step with dt = 0 is the
    identity inside, no event fires, a boundary hook's side condition is skipped (:func:`solve_backward`),
    and the default linear-in-S ends already hold for the payoffs these families start from (checked:
    tests/consistency/test_pde_batch_independence.py, a batch = each trade alone)."""
    start, dt, theta, tags = (np.asarray(a) for a in (start, dt, theta, tags))
    steps = dt.shape[0]
    moving = dt > 0.0
    used = np.where(moving.any(axis=0), steps - np.argmax(moving[::-1], axis=0), 0)   # up to the last real step
    shift = steps - used
    source = np.arange(steps)[:, None] - shift[None, :]
    kept = source >= 0
    source = np.maximum(source, 0)

    def moved(a, pad):
        return np.where(kept, np.take_along_axis(a, source, axis=0), pad)

    return (moved(start, start[:1]), moved(dt, 0.0), moved(theta, 0.5),
            moved(tags, np.asarray(untagged, dtype=tags.dtype)))


def split_steps(start, dt, theta, tags, breaks, *, untagged=-1):
    """Cut every backward step that straddles one of the ``breaks`` there (NumPy, host side), so that no
    step's coefficients, read at its mid-time, average across a jump of sigma in time.

    A step [t - dt, t] with breaks b_1 > ... > b_c strictly inside becomes the steps [b_1, t], [b_2, b_1],
    ..., [t - dt, b_c], each with the step's ``theta``; the step's tag (an event at its earlier end) moves
    to the last piece, the others get ``untagged``.  Rows are padded again with zero-length steps (start 0,
    theta 1/2) to a common count.

    Why: the coefficients are frozen at each step's mid-time, which is second order in dt only where
    sigma is smooth over the step; a step across a jump of sigma (the local vol at an expiry pillar) makes
    an O(dt) error whose sign depends on where the pillar falls in the step, so prices wander as the step
    count changes.  With the jumps on step ends the scheme converges smoothly at second order
    (tests/unit/test_pde_kernel.py).

    ``start``, ``dt``, ``theta``, ``tags``: (steps, batch) as returned by :func:`time_steps`; ``breaks`` a
    1-D array of times.  Returns the four arrays cut.
    """
    start, dt, theta, tags = (np.asarray(a) for a in (start, dt, theta, tags))
    breaks = np.sort(np.asarray(breaks, dtype=np.float64))[::-1]
    if breaks.size == 0:
        return start, dt, theta, tags
    low = start - dt
    tolerance = 1e-12 * np.maximum(1.0, np.abs(start))[..., None]
    inside = (breaks < start[..., None] - tolerance) & (breaks > low[..., None] + tolerance) & (dt[..., None] > 0.0)
    cuts = inside.sum(axis=-1)                                                    # (S, B)
    # Inside breaks in descending order first, then -inf: slot m of a step runs from tops[m] down to bottoms[m].
    ordered = np.sort(np.where(inside, breaks, -np.inf), axis=-1)[..., ::-1]
    tops = np.concatenate([start[..., None], ordered], axis=-1)                   # (S, B, K + 1)
    slot = np.arange(breaks.size + 1)
    last = slot == cuts[..., None]
    bottoms = np.where(last, low[..., None], np.concatenate([ordered, np.full(cuts.shape + (1,), -np.inf)], axis=-1))
    valid = slot <= cuts[..., None]
    piece_tags = np.where(last, tags[..., None], untagged)
    piece_theta = np.broadcast_to(theta[..., None], valid.shape)
    steps, batch = start.shape

    def flatten(a):                                     # (S, B, K + 1) -> (S (K + 1), B), time order kept
        return np.moveaxis(a, 2, 1).reshape(steps * (breaks.size + 1), batch)

    valid, tops, bottoms, piece_tags, piece_theta = map(flatten, (valid, tops, bottoms, piece_tags, piece_theta))
    position = np.cumsum(valid, axis=0) - 1
    count = int(valid.sum(axis=0).max())
    rows, columns = np.nonzero(valid)
    out_start, out_dt = np.zeros((count, batch)), np.zeros((count, batch))
    out_theta = np.full((count, batch), 0.5)
    out_tags = np.full((count, batch), untagged, dtype=tags.dtype)
    target = position[rows, columns]
    padding = (dt[rows // (breaks.size + 1), columns] == 0.0)
    out_start[target, columns] = np.where(padding, 0.0, tops[rows, columns])
    out_dt[target, columns] = np.where(padding, 0.0, tops[rows, columns] - bottoms[rows, columns])
    out_theta[target, columns] = piece_theta[rows, columns]
    out_tags[target, columns] = piece_tags[rows, columns]
    return out_start, out_dt, out_theta, out_tags

"""Batched theta-scheme (Crank-Nicolson with Rannacher start-up) for the Black-Scholes / Dupire PDE in ln S.

For each trade b of a batch, on its own non-uniform grid x_0 < ... < x_{n-1} in x = ln S,

.. math:: \\partial_t V + a(t, x) \\partial_{xx} V + (\\mu(t) - a(t, x)) \\partial_x V - r(t) V = 0,
          \\qquad a = \\tfrac12 \\sigma^2(t, e^x),\\ \\mu = r - q,

is stepped backward from the payoff at maturity to t = 0.  Space: the three-point central differences of
a non-uniform grid (second order on smoothly stretched grids).  Time: the theta-scheme

.. math:: (I - \\theta \\Delta t L^{n+1/2}) V^{n} = (I + (1 - \\theta) \\Delta t L^{n+1/2}) V^{n+1},

coefficients frozen at the step's mid-time; theta = 1/2 (Crank-Nicolson) except implicit (theta = 1)
start-up steps chosen by the caller after every discontinuity (Rannacher 1984).  Steps of zero length are
the identity, so trades with different numbers of events share one step count (padding).

Boundaries: per trade and side, Dirichlet (a given value per step: a knock-out barrier, a rebate) or
"linear in S" (V_SS = 0: V at the end node extrapolated linearly in S from the two next nodes, which keeps
the system tridiagonal after elimination).  Tridiagonal systems are solved by a Thomas sweep vectorised
across the batch (``lax.scan`` over space: on CPU ~3x faster than ``lax.linalg.tridiagonal_solve``).

Local vol: sigma(t, S) bilinear in a (times x spots) table that is either shared by the batch (a Dupire
grid) or one table per trade (flat vols: a 2 x 2 table of one value), read at each step's mid-time.

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


def _table_variance(table: VolTable, times, spot_cells):
    """sigma^2 at (times[b], S[b, i]) given the precomputed spot cells (j, v), shape (batch, n)."""
    j, v = spot_cells
    i, u = _cell(table.times, times)
    vols = table.vols
    if vols.ndim == 2:
        row0, row1 = vols[i], vols[i + 1]                                   # (batch, ns)
    else:
        batch = jnp.arange(vols.shape[0])
        row0, row1 = vols[batch, i], vols[batch, i + 1]
    take = partial(jnp.take_along_axis, axis=1)
    left = (1.0 - u)[:, None] * take(row0, j) + u[:, None] * take(row1, j)
    right = (1.0 - u)[:, None] * take(row0, j + 1) + u[:, None] * take(row1, j + 1)
    return ((1.0 - v) * left + v * right) ** 2


def table_vol(table: VolTable, times, spots):
    """sigma(t, S) of ``table`` at ``times`` (batch,) and ``spots`` (batch, n): shape (batch, n)."""
    return jnp.sqrt(_table_variance(table, jnp.asarray(times, dtype=jnp.float64), _cell(table.spots, spots)))


def space_operator(x, half_variance, drift, rate):
    """Coefficients (l, d, u), each (batch, n - 2), of (L V)_i = l V_{i-1} + d V_i + u V_{i+1} at the
    interior nodes: a V_xx + (mu - a) V_x - r V by non-uniform central differences
    (h- = x_i - x_{i-1}, h+ = x_{i+1} - x_i):

    V_x  ~ [-h+^2 V_{i-1} + (h+^2 - h-^2) V_i + h-^2 V_{i+1}] / (h- h+ (h- + h+))
    V_xx ~ 2 [h+ V_{i-1} - (h- + h+) V_i + h- V_{i+1}] / (h- h+ (h- + h+))
    """
    minus = x[:, 1:-1] - x[:, :-2]
    plus = x[:, 2:] - x[:, 1:-1]
    scale = 1.0 / (minus * plus * (minus + plus))
    a = half_variance[:, 1:-1]
    b = drift[:, None] - a
    lower = scale * (2.0 * a * plus - b * plus * plus)
    upper = scale * (2.0 * a * minus + b * minus * minus)
    diag = scale * (-2.0 * a * (minus + plus) + b * (plus * plus - minus * minus)) - rate[:, None]
    return lower, diag, upper


def thomas(lower, diag, upper, rhs):
    """Solve tridiagonal systems along the last axis, batched over the leading axis (Thomas algorithm;
    ``lower[:, 0]`` and ``upper[:, -1]`` are ignored).  Stable for the diagonally dominant systems of
    the implicit step."""
    def forward(carry, row):
        c_prev, y_prev = carry
        l, d, u, r = row
        denominator = d - l * c_prev
        c = u / denominator
        y = (r - l * y_prev) / denominator
        return (c, y), (c, y)

    zeros = jnp.zeros(rhs.shape[0], dtype=rhs.dtype)
    rows = (lower.T.at[0].set(0.0), diag.T, upper.T, rhs.T)
    _, (c, y) = jax.lax.scan(forward, (zeros, zeros), rows)

    def backward(following, row):
        c_i, y_i = row
        value = y_i - c_i * following
        return value, value

    _, solution = jax.lax.scan(backward, zeros, (c, y), reverse=True)
    return solution.T


def _linear_weights(x, end):
    """Weights (w1, w2) with V_end = w1 V_next + w2 V_nextnext for V linear in S = e^x (end 0 or -1)."""
    if end == 0:
        s0, s1, s2 = (jnp.exp(x[:, k]) for k in (0, 1, 2))
    else:
        s0, s1, s2 = (jnp.exp(x[:, k]) for k in (-1, -2, -3))
    rho = (s0 - s1) / (s2 - s1)
    return 1.0 - rho, rho


def theta_step(values, *, x, half_variance, drift, rate, dt, theta, lower_value, upper_value,
               lower_dirichlet, upper_dirichlet, lower_node=None, upper_node=None, lower_weights=None,
               upper_weights=None):
    """One backward step of length ``dt`` (batch,) from V^{n+1} = ``values`` (batch, n) to V^n.

    ``half_variance`` (batch, n) is a = sigma^2 / 2 at the step's mid-time; ``drift`` mu = r - q, ``rate``
    r and ``theta`` are (batch,); Dirichlet sides (``*_dirichlet`` (batch,) bools) take ``*_value`` (batch,)
    at the new time level, the others are linear in S, or, where ``*_weights`` = (w1, w2, w0) (each
    (batch,)) is given, V_end = w1 V_next + w2 V_nextnext + w0 at the new time level (a Robin/Neumann
    condition discretised one-sidedly, e.g. the lookback's dV/dM = 0 on the diagonal).

    ``lower_node`` / ``upper_node`` (batch,) ints (optional) move a Dirichlet side inside the grid: nodes
    i <= ``lower_node`` (i >= ``upper_node``) are held at ``lower_value`` (``upper_value``) by identity rows,
    so a barrier on an interior node is an exact Dirichlet boundary and the solution beyond it is decoupled
    (knock-out legs on the same nodes as the vanilla they are compared with).  Defaults: the end nodes.
    """
    lower, diag, upper = space_operator(x, half_variance, drift, rate)
    explicit = lower * values[:, :-2] + diag * values[:, 1:-1] + upper * values[:, 2:]
    rhs = values[:, 1:-1] + ((1.0 - theta) * dt)[:, None] * explicit
    step = (theta * dt)[:, None]
    a_lower, a_diag, a_upper = -step * lower, 1.0 - step * diag, -step * upper
    w1_low, w2_low, w0_low = (*_linear_weights(x, 0), 0.0) if lower_weights is None else lower_weights
    w1_up, w2_up, w0_up = (*_linear_weights(x, -1), 0.0) if upper_weights is None else upper_weights
    # First interior row: V_0 known (Dirichlet) or V_0 = w1 V_1 + w2 V_2 (linear in S).
    first_l = a_lower[:, 0]
    rhs = rhs.at[:, 0].add(-first_l * jnp.where(lower_dirichlet, lower_value, w0_low))
    a_diag = a_diag.at[:, 0].add(jnp.where(lower_dirichlet, 0.0, first_l * w1_low))
    a_upper = a_upper.at[:, 0].add(jnp.where(lower_dirichlet, 0.0, first_l * w2_low))
    last_u = a_upper[:, -1]
    rhs = rhs.at[:, -1].add(-last_u * jnp.where(upper_dirichlet, upper_value, w0_up))
    a_diag = a_diag.at[:, -1].add(jnp.where(upper_dirichlet, 0.0, last_u * w1_up))
    a_lower = a_lower.at[:, -1].add(jnp.where(upper_dirichlet, 0.0, last_u * w2_up))
    if lower_node is not None or upper_node is not None:
        index = jnp.arange(1, values.shape[1] - 1)[None, :]
        held_low = (jnp.asarray(lower_dirichlet)[:, None] & (index <= lower_node[:, None])
                    if lower_node is not None else jnp.zeros_like(index, dtype=bool))
        held_high = (jnp.asarray(upper_dirichlet)[:, None] & (index >= upper_node[:, None])
                     if upper_node is not None else jnp.zeros_like(index, dtype=bool))
        held = held_low | held_high
        rhs = jnp.where(held_low, lower_value[:, None], jnp.where(held_high, upper_value[:, None], rhs))
        a_lower = jnp.where(held, 0.0, a_lower)
        a_diag = jnp.where(held, 1.0, a_diag)
        a_upper = jnp.where(held, 0.0, a_upper)
    inner = thomas(a_lower, a_diag, a_upper, rhs)
    low = jnp.where(lower_dirichlet, lower_value, w1_low * inner[:, 0] + w2_low * inner[:, 1] + w0_low)
    high = jnp.where(upper_dirichlet, upper_value, w1_up * inner[:, -1] + w2_up * inner[:, -2] + w0_up)
    return jnp.concatenate([low[:, None], inner, high[:, None]], axis=1)


class Steps(NamedTuple):
    """Per-step inputs, each of shape (steps, batch), in backward order (step 0 ends at maturity).

    ``start`` is the later time, ``dt`` the length (0 for padding), ``theta`` 1/2 or 1 (Rannacher),
    ``drift`` mu = r - q and ``rate`` r averaged over the step, ``lower_value`` / ``upper_value`` the
    Dirichlet boundary values at the step's earlier end (ignored on linear sides)."""

    start: jax.Array
    dt: jax.Array
    theta: jax.Array
    drift: jax.Array
    rate: jax.Array
    lower_value: jax.Array
    upper_value: jax.Array


@partial(jax.jit, static_argnames=("event", "boundary", "checkpoint"))
def solve_backward(terminal, *, x, steps: Steps, vol: VolTable, lower_dirichlet, upper_dirichlet,
                   event=None, event_data=None, checkpoint=False, lower_node=None, upper_node=None,
                   event_constants=None, boundary=None):
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
    """
    spot_cells = _cell(vol.spots, jnp.exp(x))

    def body(values, inputs):
        index, step, data = inputs
        mid = step.start - 0.5 * step.dt
        half_variance = 0.5 * _table_variance(vol, mid, spot_cells)
        weights = (None, None) if boundary is None else boundary(values, data, index, event_constants)
        values = theta_step(values, x=x, half_variance=half_variance, drift=step.drift, rate=step.rate,
                            dt=step.dt, theta=step.theta, lower_value=step.lower_value,
                            upper_value=step.upper_value, lower_dirichlet=lower_dirichlet,
                            upper_dirichlet=upper_dirichlet, lower_node=lower_node, upper_node=upper_node,
                            lower_weights=weights[0], upper_weights=weights[1])
        if event is not None:
            values = (event(values, data, index) if event_constants is None
                      else event(values, data, index, event_constants))
        return values, None

    if checkpoint:
        body = jax.checkpoint(body)
    count = steps.dt.shape[0]
    values, _ = jax.lax.scan(body, terminal, (jnp.arange(count), steps, event_data))
    return values


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


def value_and_derivatives(x, values, x0):
    """V, dV/dx, d2V/dx2 at ``x0`` (batch,) by the cubic through the 4 nodes around it (non-uniform grid).

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

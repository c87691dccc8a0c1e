"""Finite-difference pricers of Asian, lookback and cliquet options: path dependence by an extra state.

Each trade becomes a family of 1-D Crank-Nicolson solves in x = ln S, one per node of its extra state
(the running average, the running extreme, the last reset level), all trades and all family members in
ONE batched :func:`~shoals.kernels.pde.solve_backward` call; the state couples the family only through
jump conditions at fixings/resets (an ``event``) or through the boundary on the diagonal S = M (a lagged
Robin ``boundary``).  No similarity reduction is used, so the same code runs under Dupire local vol.

* **Asian** (discrete fixings t_k = kT/n, state A_k the average of the first k fixings, arithmetic, or
  ln G_k for the geometric average): between fixings V(t, S, A) solves the Black-Scholes/Dupire PDE in
  S for every A node; at a fixing

  .. math:: V(t_k^-, S, A) = V(t_k^+, S, A + (S - A)/k)

  (geometric: ln G + (ln S - ln G)/k), by 4-point Lagrange interpolation across the A nodes (linear
  extrapolation beyond them); the last fixing t_n = T is applied exactly to the payoff
  (fixed: max(w(A - K), 0), floating: max(w(S_T - A), 0)).
* **Lookback** (continuous monitoring, running max M; the min case is the mirror image): fixed strikes
  reduce pathwise to floating ones, max(M_T - K, 0) = (M'_T - S_T) + (S_T - K) with M' started at
  max(M_0, K) (min case: max(K - m_T, 0) = (S_T - m'_T) + (K - S_T), m'_0 = min(m_0, K)), exact in any
  model.  Floating: V(t, S, M) = M U(t, x, ln M) on S <= M, one 1-D solve per node of ln M sharing the
  offset grid z = ln M - x, with the Neumann condition V_M = 0 on the diagonal, i.e. the Robin condition

  .. math:: U_x = U + W_{\\ln M}\\big|_{z}  \\quad\\text{at } x = \\ln M,

  discretised by a one-sided second-order difference, the cross-row term W_{ln M} (W(z, ln M) = U)
  taken from the previous time level (it vanishes identically under flat vol, where the family members
  coincide, so there the scheme has the accuracy of a single 1-D solve).  Under local vol the lag makes
  the coupling first order in dt and explicit (stable up to ~33 extreme nodes at the grids tested); on the
  skewed SVI test surface a 1y ATM fixed call moves 17.76, 17.79, 17.81, 17.82 at 9, 17, 25, 33 nodes
  (Monte Carlo 17.89 +- 0.03).
* **Cliquet** (resets t_i = iT/n, R the spot at the last reset, c(rho) = clip(w(rho - m), floor, cap)):
  family over ln R nodes, each on x = ln R + xi (shared xi grid); at t_i

  .. math:: V(t_i^-, S, R) = \\pi_i\\, c(S/R) + V(t_i^+, S, S),

  pi_i = 1 (payment per period) or P(t_i, T) (payment at maturity, no global terms); the diagonal
  V(t_i^+, R', R') is the xi = 0 node of every family member, interpolated (cubic in ln R) at S.
  Global floor/cap couple the periods through the running sum: not priced by PDE here
  (:class:`~shoals.errors.UnsupportedError`; price them with MonteCarlo).

Greeks (value, delta, gamma, theta) from :meth:`PdeMarket.spot_greeks` on the t = 0 solution at the
initial state: Asian (all A nodes coincide before the first fixing), lookback at the running extreme
held fixed (the hedging Greeks; delta equals the bump-and-reprice delta of a new trade, whose extreme moves
with the spot, since V_M = 0 on the diagonal), cliquet at the first reset level R = S_0 held fixed.

References: Wilmott, Howison & Dewynne, "The Mathematics of Financial Derivatives" (1995) ch. 12-13
(Asian jump conditions, lookback Neumann condition); Andreasen, "The pricing of discretely sampled Asian
and lookback options: a change of numeraire approach", J. Comp. Fin. 2 (1998); Forsyth, Vetzal & Zvan,
"Convergence of numerical methods for valuing path-dependent options using interpolation", Rev.
Derivatives Research 5 (2002); Windcliff, Forsyth & Vetzal, "Numerical methods for valuing cliquet
options", Appl. Math. Finance 13 (2006).
Validation: tests/reference/test_pde_path_dependent_quantlib.py (QuantLib analytic and Monte Carlo engines
under flat vol), tests/unit/test_pde_path_dependent.py (state-grid convergence, fixed/floating lookback
identity, bounds and monotonicity, Greeks vs bumped prices, bad input).
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from shoals._arrays import as_batch, on_device
from shoals.errors import InputError, UnsupportedError
from shoals.instruments import Asian, Cliquet, Lookback
from shoals.kernels.pde import (
    end_at_zero,
    snap_nodes,
    solve_backward,
    split_steps,
    stretched_nodes,
    table_vol,
    uniform_time_steps,
)
from shoals.methods.pde_plan import PdePlan, as_table, identity_combine, row_table

#: Default family sizes (nodes of the extra state per trade).  The Asian's average grid carries the
#: payoff's kink in A and sets its accuracy (31 nodes: 9.0e-4 relative, 41: 5.2e-4 on the example book at
#: its default 161 x 60 grid, whatever the spot grid and steps); the extreme and reset-level grids
#: carry only the local-vol dependence (under flat vol the members coincide and any count gives the same
#: price), sized so that local-vol prices agree with Monte Carlo (docs/pde_path_dependent.md).
STATE_NODES = {"asian": 41, "lookback": 25, "cliquet": 21}
#: At least this many time steps per cliquet period (each period restarts from a kinked payoff): the
#: cliquet's accuracy (example book, monthly resets, 121 nodes: 3.1e-3, 1.3e-3, 6.8e-4, 4.1e-4 at 2, 4, 6, 8, when
#: every trade took the batch's largest count; 1.1e-3 at 6 with each trade's own count, as priced alone).
PERIOD_STEPS = 6


#: Allowed extra-state node counts: cubic interpolation needs 4 nodes; the lookback's lagged cross-member term
#: is explicit, so extreme grids finer than the spot grid near the diagonal are unstable above 33.
STATE_NODE_RANGE = {"asian": (4, None, "average"), "lookback": (3, 33, "extreme"), "cliquet": (4, None, "reset-level")}


def _state_nodes(kind: str, method, override) -> int:
    """Extra-state nodes per trade: ``override``, else ``method.state_nodes``, else ``STATE_NODES[kind]``,
    checked against ``STATE_NODE_RANGE``."""
    requested = method.state_nodes if override is None else override
    count = STATE_NODES[kind] if requested is None else int(requested)
    low, high, what = STATE_NODE_RANGE[kind]
    if count < low or (high is not None and count > high):
        bounds = f"at least {low}" if high is None else f"{low} to {high}"
        raise InputError(f"needs {bounds} {what} nodes (see STATE_NODE_RANGE)", field="state_nodes", value=requested)
    return count


def _field(contract, name, batch, dtype=np.float64):
    return as_batch(getattr(contract, name), batch, dtype)


def _vol_scale(market, maturities):
    """Root-mean-square vol at the spot over [0, T] per trade (sets the grid widths)."""
    fractions = 5
    times = (maturities[None, :] * np.linspace(0.0, 1.0, fractions)[:, None]).reshape(-1)
    spots = np.tile(np.asarray(market.spot, dtype=np.float64), fractions)[:, None]
    table = market.vol if market.vol.vols.ndim == 2 else market.vol._replace(
        vols=jnp.tile(market.vol.vols, (fractions, 1, 1)))
    variance = np.asarray(table_vol(table, on_device(times), on_device(spots)))[:, 0].reshape(fractions, -1) ** 2
    return np.maximum(np.sqrt(np.mean(variance, axis=0)), 0.02)


def _row_steps(market, maturities, pieces, method, repeats, *, smooth_events=False, period_steps=0):
    """Kernel steps for a family of ``repeats`` members per trade of ``market`` (the trades' market):
    ``method.time_steps`` over each life cut at ``pieces`` - 1 equally spaced events (fixings, resets; at
    least ``period_steps`` per piece, so a trade with many periods gets more steps than ``time_steps``),
    Rannacher start-up after maturity and, unless the jumps keep the solution smooth (``smooth_events``: Asian
    fixings, no sub-steps), after every event; steps cut at the local vol's jumps in time
    (:attr:`PdeMarket.jumps`, and :func:`~shoals.kernels.pde.split_steps`).  Computed per trade (each its own
    step count: a 3-period cliquet is not stepped as finely as a 60-period one batched with it; the batch runs
    the largest count, the others padded with zero-length steps before maturity (:func:`end_at_zero`: level k
    is the same time for trades of the same step length, which keeps the vega ladder's bump windows short),
    so chunks of similar maturities gain), then repeated for the members.  Returns the
    :class:`~shoals.kernels.pde.Steps` of the rows and the event index (steps, trades)."""
    pieces = np.asarray(pieces, dtype=np.int64)
    count = np.maximum(method.time_steps, period_steps * pieces)
    start, dt, theta, event_index = uniform_time_steps(maturities, count, pieces,
                                                       0 if smooth_events else method.rannacher)
    if smooth_events and method.rannacher > 0:
        # The first step (it ends at maturity for every trade) becomes the implicit start-up sub-steps.
        sub = np.arange(method.rannacher)[:, None] / method.rannacher
        start = np.concatenate([start[0] - sub * dt[0], start[1:]])
        dt = np.concatenate([np.repeat(dt[:1] / method.rannacher, method.rannacher, axis=0), dt[1:]])
        theta = np.concatenate([np.ones((method.rannacher, start.shape[1])), theta[1:]])
        event_index = np.concatenate([np.full((method.rannacher - 1, start.shape[1]), -1), event_index])
    start, dt, theta, event_index = end_at_zero(*split_steps(start, dt, theta, event_index, market.jumps))
    return market.steps(start, dt, theta, repeats=repeats), event_index


def _lagrange(nodes, values, targets):
    """Interpolate ``values`` (C, B, n) given on ``nodes`` (B, n) along the last axis at ``targets`` (C, B, K):
    the cubic through the 4 nodes around each target inside [nodes_0, nodes_{n-1}], linear extrapolation
    from the two end nodes outside.  The layout is the solver's (spot nodes first, C of them): the jump
    conditions read and write the state without transposing it."""
    n = nodes.shape[1]
    # Nodes <= target by comparing with all of them, one node at a time over every target: a family's few
    # state nodes make this cheaper than a vectorised binary search, and the loop over nodes keeps each
    # pass a contiguous elementwise sweep.
    count = jnp.zeros(targets.shape, dtype=jnp.int32)
    for node in range(n):
        count = count + (nodes[None, :, node, None] <= targets).astype(jnp.int32)
    first = jnp.clip(count - 2, 0, n - 4)
    row = jnp.arange(nodes.shape[0])[None, :, None]
    xs = [nodes[row, first + m] for m in range(4)]
    ys = [jnp.take_along_axis(values, first + m, axis=2) for m in range(4)]
    inside = jnp.zeros_like(targets)
    for i in range(4):
        weight = jnp.ones_like(targets)
        for j in range(4):
            if j != i:
                weight = weight * (targets - xs[j]) / (xs[i] - xs[j])
        inside = inside + weight * ys[i]
    low_slope = (values[..., 1] - values[..., 0]) / (nodes[:, 1] - nodes[:, 0])[None, :]
    high_slope = (values[..., -1] - values[..., -2]) / (nodes[:, -1] - nodes[:, -2])[None, :]
    below = values[..., :1] + low_slope[..., None] * (targets - nodes[None, :, :1])
    above = values[..., -1:] + high_slope[..., None] * (targets - nodes[None, :, -1:])
    return jnp.where(targets < nodes[None, :, :1], below, jnp.where(targets > nodes[None, :, -1:], above, inside))


def _log_grid(market, maturities, method, centers, scale):
    """Per-trade spot grids in ln S over ln S_0 +- width * scale, concentrated at ``centers``."""
    log_spot = np.log(market.spot)
    half = method.width * scale
    lower, upper = log_spot - half, log_spot + half
    return stretched_nodes(lower, upper, method.space_nodes, np.clip(centers, lower, upper), 0.1)


# ---------------------------------------------------------------------------------------------- Asian

def _asian_event(values, data, index, constants):
    """Jump condition V(t_k-, S, a) = V(t_k+, S, a + (s - a)/k) at fixing k of the trades fixing at this step;
    a (``state``, (trades, nodes)) is A or ln G, s (``spot_state``) the same function of the spot nodes.
    ``data``: ``fixing`` (trades,) k (0: no fixing) and the ``movers`` / ``size`` of :func:`_jump_movers`."""
    state, spot_state = constants

    def jump(kept, chosen):                       # kept (spot nodes, chosen trades, average nodes)
        fixing = data["fixing"][chosen]
        own = state[chosen]
        targets = own[None] + (spot_state[chosen].T[:, :, None] - own[None]) / jnp.maximum(fixing, 1.0)[None, :, None]
        return jnp.where(fixing[None, :, None] > 0.0, _lagrange(own, kept, targets), kept)

    return _family_jump(values, state.shape, data, jump)


def _family_jump(values, family, data, jump):
    """``values`` (trades x members, nodes) with ``jump`` applied (:func:`_jump_movers`) to the surfaces of
    the trades that jump, in the solver's layout: ``jump(kept, chosen)`` receives and returns
    (nodes, chosen trades, members) (``values.T`` is a free view of the state the solver carries, while
    (trades, members, nodes) would be a transposed copy at every step)."""
    trades, members = family
    surfaces = values.T.reshape(values.shape[1], trades, members)
    return _jump_movers(surfaces, data["movers"], data["size"], jump).reshape(values.shape[1], -1).T


def _jump_movers(surfaces, movers, size, jump):
    """``surfaces`` (nodes, trades, ...) with ``jump(kept, chosen) -> new`` applied to the trades ``chosen``: the first
    ``_mover_sizes(trades)[size - 1]`` of ``movers`` (``size`` 0: none).  Trades fix or reset on different
    steps (~5 of the example's 26 Asians per firing step), so only the smallest batch holding the trades
    that jump is interpolated (a switch over batch sizes); ``jump`` must leave the padding trades (those
    not jumping) as they are."""
    def apply(count):
        def run(surfaces):
            chosen = movers[:count]
            return surfaces.at[:, chosen].set(jump(surfaces[:, chosen], chosen), unique_indices=True)
        return run

    branches = [lambda surfaces: surfaces] + [apply(count) for count in _mover_sizes(movers.shape[0])]
    return jax.lax.switch(size, branches, surfaces)


def _mover_sizes(trades: int) -> list[int]:
    """Batch sizes of :func:`_jump_movers`: powers of two below ``trades``, then ``trades``."""
    return [2 ** p for p in range(max(trades - 1, 0).bit_length()) if 2 ** p < trades] + [trades]


def _movers(active):
    """Per step (``active`` (steps, trades): the trade jumps at the step's end): ``movers`` (steps, trades)
    the jumping trades first (in trade order) then the others, and ``size`` (steps,) the branch of
    :func:`_jump_movers` (0: none jumps, i: the i-th of :func:`_mover_sizes`)."""
    movers = np.argsort(~active, axis=1, kind="stable").astype(np.int32)
    sizes = np.asarray(_mover_sizes(active.shape[1]))
    count = active.sum(axis=1)
    size = np.where(count > 0, np.searchsorted(sizes, count) + 1, 0).astype(np.int32)
    return on_device(movers), on_device(size)


def _asian_march(table, a, options, checkpoint, levels=None, window=None):
    """The family solve of :func:`plan_asian`.  The members of a trade share its spot grid and steps, so sigma
    is read once per trade (``vol_repeat``)."""
    no = jnp.zeros(a["x"].shape[0], dtype=bool)
    return solve_backward(a["terminal"], x=a["x"], steps=a["steps"], vol=row_table(table, a["trade"]),
                          lower_dirichlet=no, upper_dirichlet=no, event=_asian_event, event_data=a["fixing"],
                          event_constants=(a["state"], a["spot_state"]), checkpoint=checkpoint,
                          vol_repeat=a["state"].shape[1], levels=levels, window=window)


def _first_member(values, a, options):
    """Readout of the Asian family: the first member of each trade (all average nodes coincide before the
    first fixing)."""
    trades, per_trade = a["state"].shape
    return values.reshape(trades, per_trade, -1)[:, 0]


def asian_pde(contract: Asian, market, method, *, state_nodes: int | None = None) -> dict:
    """:func:`plan_asian` solved: value, delta, gamma, theta per trade."""
    return plan_asian(contract, market, method, state_nodes=state_nodes).greeks()


def plan_asian(contract: Asian, market, method, *, state_nodes: int | None = None) -> PdePlan:
    """Asian options by a family of 1-D solves over the running-average nodes (see the module doc).

    The average grid (``state_nodes`` per trade) is sinh-stretched in ln A around the strike (fixed) or
    the forward (floating) over 35% of the spot grid's range (the average moves less than the spot); the
    interpolation across it is cubic inside and linear outside (where the value is nearly linear in A:
    surely exercised or surely not).

    Validation: tests/reference/test_pde_path_dependent_quantlib.py (geometric: analytic discrete engines,
    arithmetic: QuantLib Monte Carlo with control variate), tests/unit/test_pde_path_dependent.py.
    """
    per_trade = _state_nodes("asian", method, state_nodes)
    batch = market.batch
    maturity = _field(contract, "maturity", batch)
    fixings = _field(contract, "fixings", batch, np.int64)
    floating = _field(contract, "floating", batch, bool)
    geometric = _field(contract, "geometric", batch, bool)
    sign = np.where(_field(contract, "is_call", batch, bool), 1.0, -1.0)
    strike = np.where(floating, np.nan, _field(contract, "strike", batch))
    scale = _vol_scale(market, maturity) * np.sqrt(maturity)
    log_spot = np.log(market.spot)
    center = np.where(floating, np.log(market.forward(maturity)), np.log(np.where(floating, 1.0, strike)))
    x = _log_grid(market, maturity, method, center, scale)
    half = method.width * scale
    low, high = log_spot - 0.45 * half, log_spot + 0.45 * half
    log_state = stretched_nodes(low, high, per_trade, np.clip(center, low, high), 0.07)
    state = np.where(geometric[:, None], log_state, np.exp(log_state))
    spot_state = np.where(geometric[:, None], x, np.exp(x))

    # Terminal condition: the last fixing applied exactly to the payoff.
    final = state[:, :, None] + (spot_state[:, None, :] - state[:, :, None]) / fixings[:, None, None]
    average = np.where(geometric[:, None, None], np.exp(np.where(geometric[:, None, None], final, 0.0)), final)
    underlying = np.where(floating[:, None, None], np.exp(x)[:, None, :] - average, average - strike[:, None, None])
    terminal = np.maximum(sign[:, None, None] * underlying, 0.0).reshape(batch * per_trade, -1)

    steps, event_index = _row_steps(market, maturity, fixings, method, per_trade, smooth_events=True)
    fixing = np.where(event_index >= 0, event_index + 1.0, 0.0)
    movers, size = _movers(fixing > 0.0)
    arguments = {"terminal": on_device(terminal), "x": on_device(np.repeat(x, per_trade, axis=0)),
                 "steps": steps, "trade": on_device(np.repeat(np.arange(batch), per_trade)),
                 "fixing": {"fixing": on_device(fixing), "movers": movers, "size": size},
                 "state": on_device(state), "spot_state": on_device(spot_state)}
    return PdePlan(march=_asian_march, readout=_first_member, options=(), arguments=arguments,
                   table=as_table(market.vol), x=on_device(x), market=market, combine=identity_combine(batch),
                   diagnostics={"state_nodes": per_trade, "state": "running average (ln G for geometric)"})


# -------------------------------------------------------------------------------------------- lookback

def _end_derivative(x, end):
    """Weights (c0, c1, c2) of the one-sided second-order first derivative at the end node (0 or -1) of
    each row of ``x`` (batch, n): f'(x_end) ~ c0 f_end + c1 f_next + c2 f_nextnext."""
    if end == 0:
        h1, h2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1]
        sign = -1.0
    else:
        h1, h2 = x[:, -1] - x[:, -2], x[:, -2] - x[:, -3]
        sign = 1.0
    return (sign * (2.0 * h1 + h2) / (h1 * (h1 + h2)), -sign * (h1 + h2) / (h1 * h2),
            sign * h1 / (h2 * (h1 + h2)))


def _linear_in_spot(x, end):
    """Weights (w1, w2, 0) of V_end = w1 V_next + w2 V_nextnext for V linear in S = e^x."""
    s = jnp.exp(x)
    s0, s1, s2 = (s[:, 0], s[:, 1], s[:, 2]) if end == 0 else (s[:, -1], s[:, -2], s[:, -3])
    rho = (s0 - s1) / (s2 - s1)
    return 1.0 - rho, rho, jnp.zeros_like(rho)


def _row_derivative(nodes, f):
    """df/dm along axis 1 of ``f`` (trades, n) on non-uniform ``nodes`` (trades, n): three-point
    (second-order) differences, one-sided at the ends."""
    h = jnp.diff(nodes, axis=1)
    hm, hp = h[:, :-1], h[:, 1:]
    inner = (-hp / (hm * (hm + hp)) * f[:, :-2] + (hp - hm) / (hm * hp) * f[:, 1:-1]
             + hm / (hp * (hm + hp)) * f[:, 2:])
    h1, h2 = h[:, 0], h[:, 1]
    first = (-(2 * h1 + h2) / (h1 * (h1 + h2)) * f[:, 0] + (h1 + h2) / (h1 * h2) * f[:, 1]
             - h1 / (h2 * (h1 + h2)) * f[:, 2])
    h1, h2 = h[:, -1], h[:, -2]
    last = ((2 * h1 + h2) / (h1 * (h1 + h2)) * f[:, -1] - (h1 + h2) / (h1 * h2) * f[:, -2]
            + h1 / (h2 * (h1 + h2)) * f[:, -3])
    return jnp.concatenate([first[:, None], inner, last[:, None]], axis=1)


def _lookback_boundary(values, data, index, constants):
    """Side weights of each step: the Robin condition U_x = U + W_m on the diagonal end (upper for a
    running max, lower for a running min) with W_m from the later time level, linear in S at the other."""
    x, level, is_max = constants
    trades, per_trade = level.shape
    diagonal = jnp.where(is_max, values[:, -1], values[:, 0]).reshape(trades, per_trade)
    cross = _row_derivative(level, diagonal).reshape(-1)

    def robin(end):
        c0, c1, c2 = _end_derivative(x, end)
        return -c1 / (c0 - 1.0), -c2 / (c0 - 1.0), cross / (c0 - 1.0)

    upper, lower = robin(-1), robin(0)
    linear_low, linear_up = _linear_in_spot(x, 0), _linear_in_spot(x, -1)
    return (tuple(jnp.where(is_max, lin, r) for r, lin in zip(lower, linear_low)),
            tuple(jnp.where(is_max, r, lin) for r, lin in zip(upper, linear_up)))


def _lookback_march(table, a, options, checkpoint, levels=None, window=None):
    """The family solve of :func:`plan_lookback`."""
    no = jnp.zeros(a["x"].shape[0], dtype=bool)
    return solve_backward(a["terminal"], x=a["x"], steps=a["steps"], vol=row_table(table, a["trade"]),
                          lower_dirichlet=no, upper_dirichlet=no, boundary=_lookback_boundary,
                          event_constants=(a["x"], a["level"], a["is_max"]), checkpoint=checkpoint,
                          levels=levels, window=window)


def _lookback_readout(values, a, options):
    """Readout of the lookback family: the member at the running extreme, scaled back from V / M and plus the
    forward leg of a fixed strike."""
    trades, per_trade = a["level"].shape
    return values.reshape(trades, per_trade, -1)[:, 0] * a["extreme"][:, None] + a["forward_leg"]


def lookback_pde(contract: Lookback, market, method, *, state_nodes: int | None = None) -> dict:
    """:func:`plan_lookback` solved: value, delta, gamma, theta per trade."""
    return plan_lookback(contract, market, method, state_nodes=state_nodes).greeks()


def plan_lookback(contract: Lookback, market, method, *, state_nodes: int | None = None) -> PdePlan:
    """Lookback options by a family of 1-D solves over nodes of the running extreme (see the module doc).

    Fixed strikes are priced as floating ones plus a forward (exact pathwise identity); the extreme grid
    (``state_nodes`` per trade) runs from the running extreme outwards over ``width`` standard deviations,
    every member on the offset grid z = |ln M - ln S| in [0, z_max] sinh-concentrated at the spot.

    Validation: tests/reference/test_pde_path_dependent_quantlib.py (analytic continuous floating and fixed
    lookback engines, running extreme != spot), tests/unit/test_pde_path_dependent.py (fixed/floating
    identity, extreme-grid convergence, Greeks vs bumped prices).
    """
    per_trade = _state_nodes("lookback", method, state_nodes)
    batch = market.batch
    maturity = _field(contract, "maturity", batch)
    floating = _field(contract, "floating", batch, bool)
    is_call = _field(contract, "is_call", batch, bool)
    strike = np.where(floating, np.nan, _field(contract, "strike", batch))
    extreme = _field(contract, "running_extreme", batch)
    spot = market.spot
    is_max = floating != is_call          # floating put and fixed call: running max
    extreme = np.where(np.isnan(extreme), spot, extreme)
    extreme = np.where(is_max, np.maximum(extreme, spot), np.minimum(extreme, spot))
    extreme = np.where(floating, extreme, np.where(is_max, np.maximum(extreme, strike), np.minimum(extreme, strike)))
    direction = np.where(is_max, 1.0, -1.0)       # the extreme moves away from the spot in this direction
    scale = _vol_scale(market, maturity) * np.sqrt(maturity)
    half = method.width * scale
    offset = np.abs(np.log(extreme / spot))      # z of the spot on the initial member
    z = stretched_nodes(0.0, offset + half, method.space_nodes, offset, 0.1)
    levels = direction[:, None] * stretched_nodes(0.0, np.maximum(half - offset, 0.5 * half), per_trade, 0.0, 0.3)
    level = np.log(extreme)[:, None] + levels                                 # ln M_j (trades, per_trade)
    x_rows = np.where(is_max[:, None, None], level[:, :, None] - z[:, None, ::-1], level[:, :, None] + z[:, None, :])
    x_rows = x_rows.reshape(batch * per_trade, -1)
    u = np.where(is_max[:, None], 1.0 - np.exp(-z[:, ::-1]), np.exp(z) - 1.0)    # payoff / M
    terminal = np.repeat(u, per_trade, axis=0)
    steps, _ = _row_steps(market, maturity, np.ones(batch), method, per_trade)
    x = x_rows.reshape(batch, per_trade, -1)[:, 0]
    forward_leg = market.discount(maturity)[:, None] * (np.exp(x) * (market.forward(maturity) / spot)[:, None]
                                                         - np.where(floating, 0.0, strike)[:, None])
    arguments = {"terminal": on_device(terminal), "x": on_device(x_rows), "steps": steps,
                 "trade": on_device(np.repeat(np.arange(batch), per_trade)), "level": on_device(level),
                 "is_max": on_device(np.repeat(is_max, per_trade)), "extreme": on_device(extreme),
                 "forward_leg": on_device(np.where(floating, 0.0, np.where(is_call, 1.0, -1.0))[:, None]
                                            * forward_leg)}
    return PdePlan(march=_lookback_march, readout=_lookback_readout, options=(), arguments=arguments,
                   table=as_table(market.vol), x=on_device(x), market=market, combine=identity_combine(batch),
                   diagnostics={"state_nodes": per_trade,
                                "state": "running extreme (fixed strike: floating + forward)"})


# --------------------------------------------------------------------------------------------- cliquet

def _cliquet_event(values, data, index, constants):
    """Jump at a reset: V(t_i-, S, R) = pi_i c(S/R) + V(t_i+, S, S), the diagonal V(t_i+, R', R') being the
    xi = 0 node of each member, interpolated in ln R at ln S = ln R + xi; for the trades resetting at this
    step (``data``: ``flag`` and ``pay`` pi_i (trades,), the ``movers`` / ``size`` of :func:`_jump_movers`)."""
    level, xi, coupon, origin = constants

    def jump(kept, chosen):                       # kept (xi nodes, chosen trades, reset-level nodes)
        diagonal = kept[origin[chosen], jnp.arange(chosen.shape[0])]                   # (chosen, members)
        targets = level[chosen][None] + xi[chosen].T[:, :, None]
        continuation = _lagrange(level[chosen], jnp.broadcast_to(diagonal, kept.shape), targets)
        moved = data["pay"][chosen][None, :, None] * coupon[chosen].T[:, :, None] + continuation
        return jnp.where(data["flag"][chosen][None, :, None] > 0.0, moved, kept)

    return _family_jump(values, level.shape, data, jump)


def _cliquet_march(table, a, options, checkpoint, levels=None, window=None):
    """The family solve of :func:`plan_cliquet`."""
    no = jnp.zeros(a["x"].shape[0], dtype=bool)
    return solve_backward(a["terminal"], x=a["x"], steps=a["steps"], vol=row_table(table, a["trade"]),
                          lower_dirichlet=no, upper_dirichlet=no, event=_cliquet_event, event_data=a["reset"],
                          event_constants=(a["level"], a["xi"], a["coupon"], a["origin"]), checkpoint=checkpoint,
                          levels=levels, window=window)


def _cliquet_readout(values, a, options):
    """Readout of the cliquet family (``options[0]``): "first", the member at the first reset level R = S_0
    (on its x grid), or "diagonal", V(0, S, R = S) on the nodes ln S = ln R_j: the value of the trade struck
    at S (its first reset level follows the spot)."""
    trades, per_trade = a["level"].shape
    family = values.reshape(trades, per_trade, -1)
    if options[0] == "diagonal":
        return jnp.take_along_axis(family, a["origin"][:, None, None], axis=2)[:, :, 0]
    return family[jnp.arange(trades), a["first"]]


def cliquet_pde(contract: Cliquet, market, method, *, state_nodes: int | None = None) -> dict:
    """:func:`plan_cliquet` solved: value, delta, gamma, theta per trade."""
    return plan_cliquet(contract, market, method, state_nodes=state_nodes).greeks()


def plan_cliquet(contract: Cliquet, market, method, *, state_nodes: int | None = None) -> PdePlan:
    """Cliquets without global floor/cap by a family of 1-D solves over the last reset level (see the module
    doc); payment per period or at maturity.

    Each member lives on x = ln R + xi, xi sinh-concentrated at ln m over +- ``width`` standard deviations of
    one period, with xi = 0 and the kinks of c (rho = m + floor, m + cap for calls, m - floor, m - cap for
    puts) on nodes; the ln R grid (``state_nodes`` per trade) covers +- ``width`` standard deviations of the
    whole life around ln S_0, with ln S_0 on a node.

    Raises UnsupportedError for a global floor or cap (the periods couple through the running sum; price it
    with MonteCarlo).

    Validation: tests/reference/test_pde_path_dependent_quantlib.py (AnalyticPerformanceEngine,
    AnalyticCliquetEngine; local floor/cap as forward-start call spreads), tests/unit/test_pde_path_dependent.py.
    """
    per_trade = _state_nodes("cliquet", method, state_nodes)
    batch = market.batch
    maturity = _field(contract, "maturity", batch)
    resets = _field(contract, "resets", batch, np.int64)
    sign = np.where(_field(contract, "is_call", batch, bool), 1.0, -1.0)
    moneyness = _field(contract, "moneyness", batch)
    floor, cap = _field(contract, "local_floor", batch), _field(contract, "local_cap", batch)
    per_period = _field(contract, "pay_per_period", batch, bool)
    global_terms = (np.isfinite(_field(contract, "global_floor", batch))
                    | np.isfinite(_field(contract, "global_cap", batch)))
    if np.any(global_terms):
        raise UnsupportedError("finite-difference does not price cliquets with a global floor or cap (the "
                               "periods couple through the running sum); price them with MonteCarlo")
    period = maturity / resets
    scale = _vol_scale(market, maturity)
    half = method.width * scale * np.sqrt(period)
    log_m = np.log(moneyness)
    xi = stretched_nodes(np.minimum(log_m, 0.0) - half, np.maximum(log_m, 0.0) + half, method.space_nodes, log_m, 0.15)
    with np.errstate(invalid="ignore", divide="ignore"):
        kinks = np.log(moneyness[:, None] + sign[:, None] * np.stack([floor, cap], axis=1))
    xi = snap_nodes(xi, np.concatenate([kinks, np.zeros((batch, 1))], axis=1))
    origin = np.argmin(np.abs(xi), axis=1)
    coupon = np.clip(sign[:, None] * (np.exp(xi) - moneyness[:, None]), floor[:, None], cap[:, None])
    log_spot = np.log(market.spot)
    life = method.width * scale * np.sqrt(maturity)
    level = snap_nodes(stretched_nodes(log_spot - life, log_spot + life, per_trade, log_spot, 0.3), log_spot[:, None])
    first = np.argmin(np.abs(level - log_spot[:, None]), axis=1)
    x_rows = (level[:, :, None] + xi[:, None, :]).reshape(batch * per_trade, -1)
    terminal = np.repeat(coupon, per_trade, axis=0)

    period_steps = PERIOD_STEPS if method.period_steps is None else int(method.period_steps)
    steps, event_index = _row_steps(market, maturity, resets, method, per_trade, period_steps=period_steps)
    flag = (event_index >= 0).astype(np.float64)
    movers, size = _movers(flag > 0.0)
    reset_times = (event_index + 1.0) * period
    pay = np.where(per_period, 1.0, market.discount(maturity) / market.discount(reset_times))
    arguments = {"terminal": on_device(terminal), "x": on_device(x_rows), "steps": steps,
                 "trade": on_device(np.repeat(np.arange(batch), per_trade)),
                 "reset": {"flag": on_device(flag), "pay": on_device(pay),
                           "movers": movers, "size": size},
                 "level": on_device(level), "xi": on_device(xi), "coupon": on_device(coupon),
                 "origin": on_device(origin), "first": on_device(first)}
    plan = PdePlan(march=_cliquet_march, readout=_cliquet_readout, options=("first",), arguments=arguments,
                   table=as_table(market.vol), x=on_device(log_spot[:, None] + xi), market=market,
                   combine=identity_combine(batch),
                   diagnostics={"state_nodes": per_trade,
                                "state": "last reset level (Greeks at the first reset level S_0 held fixed)"})
    return replace(plan, curve=replace(plan, options=("diagonal",), x=on_device(level)))


PLANNERS = {Asian: plan_asian, Lookback: plan_lookback, Cliquet: plan_cliquet}

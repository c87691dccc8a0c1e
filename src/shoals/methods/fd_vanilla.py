"""Finite-difference pricers of European, American and barrier options (see finite_difference.py).

Every trade of a batch becomes one or more *rows* of a single batched solve
(:func:`shoals.kernels.pde.solve_backward`): one row per trade for European, American and knock-out
options, two (or three) for knock-ins.  Each row has its own grid in x = ln S: a sinh-stretched grid
(:func:`~shoals.kernels.pde.stretched_nodes`) concentrated at the spot over

.. math:: [\\ln S_0 + \\min(0, m) - w \\bar\\sigma\\sqrt T,\\ \\ln S_0 + \\max(0, m) + w \\bar\\sigma\\sqrt T],
          \\qquad m = \\ln(F_T / S_0),

(w = ``width``, \\bar\\sigma the vol at the spot at T/2), extended to hold the barrier H where needed.

* Payoff smoothing: the terminal value of node i is the average of the payoff over its cell
  [x_{i-1/2}, x_{i+1/2}] (midpoints; exact integrals of max(w(e^x - K), 0)), followed by ``rannacher``
  implicit sub-steps: second order in space and time although the payoff has a kink.
* Continuous knock-out: the barrier is the end node of the grid, a Dirichlet boundary holding the rebate R
  (paid at the hit) or R P(t, T) (``rebate_at_hit=False``, paid at maturity).
* Continuous knock-in, in-out parity (default): on one grid with H on an interior node j,
  In = V + O where V is the vanilla and O the knock-out claim paying R - payoff at T if H is never hit
  (zero on the barrier: Dirichlet on the interior node, ``lower_node``/``upper_node`` of the kernel).
  Direct solve (``FiniteDifference(knock_in="direct")``): the knock-in solves the PDE on the live side with
  terminal value R and boundary value V(t, H) of the vanilla solved alongside on the same nodes; the
  coupling is exact within each step by linearity: In^n = In^n|_{V_H = 0} + V^n_H G^n, where G^n is the
  response of the same step to a unit boundary value (a third row, restarted from 0 every step).
* Discrete monitoring at t_k = kT/n: H snapped onto a node; at each date the jump condition
  V(t_k^-) = f V(t_k^+) + (1 - f) K with f the live fraction of each node's cell (1 away from H) and K the
  knocked value: the rebate (knock-out), the vanilla row (direct knock-in) or 0 (parity leg); Rannacher
  sub-steps restart after every date.
* American: projection V = max(V, payoff) after every step (Brennan-Schwartz type; the first-order
  error in time from exercise is small next to the 1e-3 targets at the default grid).

Greeks: delta, gamma at the spot by the cubic through the 4 nodes around it, theta from the PDE at t = 0
(:meth:`PdeMarket.spot_greeks`), combined linearly over the rows of each trade.

References: Tavella & Randall (2000) ch. 5 (barriers as boundaries, jump conditions); Pooley, Forsyth &
Vetzal, "Convergence remedies for non-smooth payoffs in option pricing", J. Comp. Finance 6 (2003)
(cell averaging + Rannacher); Rannacher, Numer. Math. 43 (1984).
Validation: tests/reference/test_pde_quantlib.py (QuantLib analytic European and barrier, FD American),
tests/unit/test_pde_kernel.py (convergence orders, in-out parity, Greeks vs bumps, bad input),
tests/consistency/test_pde_local_vol.py (local vol vs the surface and vs QuantLib's FD barrier engine).
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np

from shoals._arrays import as_batch, on_device
from shoals.errors import InputError
from shoals.instruments import American, Barrier, European
from shoals.kernels.pde import solve_backward, split_steps, stretched_nodes, table_vol, uniform_time_steps
from shoals.methods.pde_plan import PdePlan, as_table, row_table, state_rows

# Row roles.  VANILLA: plain grid; OUT_BOUNDARY: continuous knock-out on a grid ending on the barrier;
# all others on a grid with the barrier on an interior node: VANILLA_LEG (the vanilla of a knock-in),
# OUT_FULL (continuous knock-out, Dirichlet on the interior node), DISCRETE_OUT (jumps to the rebate),
# OUT_LEG (parity leg of a knock-in: R - payoff if never hit), IN_DIRECT (direct knock-in), RESPONSE (the
# unit-boundary response of a continuous direct knock-in).
VANILLA, OUT_BOUNDARY, VANILLA_LEG, OUT_FULL, DISCRETE_OUT, OUT_LEG, IN_DIRECT, RESPONSE = range(8)


def _batch_fields(contract, names, batch):
    return [as_batch(getattr(contract, name), batch) for name in names]


def _payoff_integral(a, b, strike, is_call):
    """int_a^b max(w(e^x - K), 0) dx for a <= b (elementwise)."""
    log_strike = np.log(strike)
    lo, hi = np.maximum(a, log_strike), np.maximum(b, log_strike)
    call = np.exp(hi) - np.exp(lo) - strike * (hi - lo)
    lo, hi = np.minimum(a, log_strike), np.minimum(b, log_strike)
    put = strike * (hi - lo) - (np.exp(hi) - np.exp(lo))
    return np.where(is_call, call, put)


def _bucket(rows: int) -> int:
    """Padded row count: 2^k or 3 * 2^(k-1) (at least 8) up to 256, then a multiple of 128: few distinct
    shapes (few recompilations) and little padding for large batches."""
    if rows > 256:
        return -(-rows // 128) * 128
    size = 8
    while size < rows:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


@cache
def _event(american: bool, discrete: bool, direct_discrete: bool, direct_continuous: bool):
    """The event hook for the row structure at hand (cached: the same function object, no recompiles)."""
    def event(values, data, index, c):
        if american:
            # max(V, payoff) with the exercise value taken on ties: where the holder exercises, V does not
            # depend on the vol (jnp.maximum would send half the gradient through V at exact ties, which the
            # linear-in-S boundary produces for deep in-the-money puts).
            exercise = c["exercise"]
            values = jnp.where(c["american"][:, None], jnp.where(values > exercise, values, exercise), values)
        if discrete:
            knocked = data["rebate"][:, None]
            if direct_discrete:
                knocked = jnp.where(c["from_vanilla"][:, None], values[c["source"]], knocked)
            alive = c["alive"]
            values = jnp.where(data["jump"][:, None], alive * values + (1.0 - alive) * knocked, values)
        if direct_continuous:
            vanilla = values[c["source"]]
            at_barrier = jnp.take_along_axis(vanilla, c["pin"][:, None], axis=1)
            linked = values + at_barrier * values[c["response"]]
            values = jnp.where(c["linked"][:, None], jnp.where(c["held"], vanilla, linked), values)
            values = jnp.where(c["is_response"][:, None], 0.0, values)
        return values

    return event


class _Rows:
    """Host-side description of the rows of one solve (NumPy arrays over rows)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _vanilla_march(table, arguments, options, checkpoint, levels=None, window=None):
    """The batched solve of :func:`_plan` under ``table`` (the trades' vol table): the rows at t = 0 (their
    own readout, :func:`~shoals.methods.pde_plan.state_rows`)."""
    flags, any_pinned = options
    a = arguments
    has_event = any(flags)
    return solve_backward(
        a["terminal"], x=a["x"], steps=a["steps"], vol=row_table(table, a["trade"]),
        lower_dirichlet=a["lower_dirichlet"], upper_dirichlet=a["upper_dirichlet"],
        event=_event(*flags) if has_event else None, event_data=a["event_data"] if has_event else None,
        event_constants=a["constants"] if has_event else None,
        lower_node=a["lower_node"] if any_pinned else None, upper_node=a["upper_node"] if any_pinned else None,
        checkpoint=checkpoint, levels=levels, window=window)


def _plan(rows: _Rows, market, method, n_trades: int) -> PdePlan:
    """Build grids, terminal values, steps and event data for ``rows``: the :class:`PdePlan` of one batched
    solve whose rows combine linearly into the trades."""
    count = rows.trade.size
    size = _bucket(count)
    pad = np.concatenate([np.arange(count), np.zeros(size - count, dtype=np.int64)])
    rows = _Rows(**{name: value[pad] for name, value in rows.__dict__.items()})
    rows.coef[count:] = 0.0
    row_market = market.take(rows.trade)
    n = int(method.space_nodes)
    width = float(getattr(method, "width", 5.0))
    intensity = float(getattr(method, "concentration", 0.1))
    rannacher = int(method.rannacher)

    spot = row_market.spot
    log_spot, log_barrier = np.log(spot), np.log(rows.barrier)
    # The vol setting the width: the larger of sigma(T/2, S_0) and sigma(T/2, K) (a skewed local vol is
    # much higher in the wing of the strike); the strike is kept inside with half the width around it.
    reference_vol = np.max(np.asarray(table_vol(row_market.vol, on_device(0.5 * rows.maturity),
                                                on_device(np.stack([spot, rows.strike], axis=1)))), axis=1)
    spread = width * reference_vol * np.sqrt(rows.maturity)
    drift = np.log(row_market.forward(rows.maturity) / spot)
    log_strike = np.log(rows.strike)
    lower = np.minimum(log_spot + np.minimum(drift, 0.0) - spread, log_strike - 0.5 * spread)
    upper = np.maximum(log_spot + np.maximum(drift, 0.0) + spread, log_strike + 0.5 * spread)
    has_barrier = rows.role != VANILLA
    boundary = rows.role == OUT_BOUNDARY
    pinned = np.isin(rows.role, (OUT_BOUNDARY, OUT_FULL, OUT_LEG, IN_DIRECT, RESPONSE)) & (rows.pieces == 1)
    down, up = has_barrier & ~rows.is_up, has_barrier & rows.is_up
    margin = 0.1 * (upper - lower)
    interior = has_barrier & ~boundary
    lower = np.where(interior & down, np.minimum(lower, log_barrier - margin), lower)
    upper = np.where(interior & up, np.maximum(upper, log_barrier + margin), upper)
    lower = np.where(boundary & down, log_barrier, lower)
    upper = np.where(boundary & up, log_barrier, upper)
    x = stretched_nodes(lower, upper, n, 0.5 * (log_spot + np.clip(log_strike, log_spot - 0.5 * spread, log_spot + 0.5 * spread)), intensity)
    # Put the barrier on a node (interior grids): move the nearest interior node onto it.
    nearest = np.clip(np.abs(x[:, 1:-1] - log_barrier[:, None]).argmin(axis=1) + 1, 1, n - 2)
    snap = np.flatnonzero(interior)
    x[snap, nearest[snap]] = log_barrier[snap]
    if np.any(np.diff(x, axis=1) <= 0.0):
        raise InputError("the barrier is too close to a grid end for the grid; use more space_nodes",
                         field="space_nodes", value=n)
    pin = np.where(boundary, np.where(rows.is_up, n - 1, 0), np.where(interior, nearest, 0))
    node = np.arange(n)[None, :]
    held = pinned[:, None] & np.where(rows.is_up[:, None], node >= pin[:, None], node <= pin[:, None])

    # Cell-averaged terminal values: payoff and live fraction over [x_{i-1/2}, x_{i+1/2}].
    middle = 0.5 * (x[:, 1:] + x[:, :-1])
    left = np.concatenate([x[:, :1], middle], axis=1)
    right = np.concatenate([middle, x[:, -1:]], axis=1)
    cell = right - left
    live_lo = np.where(down, log_barrier, -np.inf)[:, None]
    live_hi = np.where(up, log_barrier, np.inf)[:, None]
    a, b = np.clip(left, live_lo, live_hi), np.clip(right, live_lo, live_hi)
    strike, is_call = rows.strike[:, None], rows.is_call[:, None]
    # Averages only in the cells holding the strike or the barrier (the kinks and jumps); node values
    # elsewhere, where an average would add its own O(h^2) bias (h^2 f''/24).
    log_strike = np.log(strike)
    smooth = ~((left < log_strike) & (log_strike < right)) & ~(
        has_barrier[:, None] & (left < log_barrier[:, None]) & (log_barrier[:, None] < right))
    point = np.maximum(np.where(is_call, 1.0, -1.0) * (np.exp(x) - strike), 0.0)
    point_live = ((x > live_lo) & (x < live_hi)).astype(np.float64)
    payoff_all = np.where(smooth, point, _payoff_integral(left, right, strike, is_call) / cell)
    payoff_live = np.where(held, 0.0, np.where(smooth, point * point_live,
                                                 _payoff_integral(a, b, strike, is_call) / cell))
    live = np.where(held, 0.0, np.where(smooth, point_live, (b - a) / cell))
    terminal = (rows.s_live[:, None] * payoff_live + rows.s_knocked[:, None] * (payoff_all - payoff_live)
                + rows.c_live[:, None] * live + rows.c_knocked[:, None] * (1.0 - live))

    schedule = uniform_time_steps(rows.maturity, int(method.time_steps), rows.pieces, rannacher)
    start, dt, theta, event_index = split_steps(*schedule, market.jumps)
    discount_maturity = row_market.discount(rows.maturity)
    rebate_later = rows.rebate * np.where(rows.rebate_at_hit, 1.0,
                                          discount_maturity / row_market.discount(start - dt))
    pinned_value = np.where(rows.role == RESPONSE, 1.0,
                            np.where(np.isin(rows.role, (OUT_BOUNDARY, OUT_FULL)), rebate_later, 0.0))
    steps = row_market.steps(start, dt, theta, lower_value=pinned_value, upper_value=pinned_value)

    discrete = (rows.pieces > 1) & np.isin(rows.role, (DISCRETE_OUT, OUT_LEG, IN_DIRECT))
    jump = (event_index >= 0) & discrete
    from_vanilla = discrete & (rows.role == IN_DIRECT)
    linked = pinned & (rows.role == IN_DIRECT)
    flags = (bool(rows.american.any()), bool(jump.any()), bool(from_vanilla.any()), bool(linked.any()))
    constants = {"american": rows.american,
                 "exercise": np.maximum(np.where(is_call, 1.0, -1.0) * (np.exp(x) - strike), 0.0),
                 "from_vanilla": from_vanilla, "source": rows.source, "alive": np.where(discrete[:, None], live, 1.0),
                 "pin": pin, "response": rows.response, "linked": linked, "held": held,
                 "is_response": rows.role == RESPONSE}
    event_data = {"jump": jump, "rebate": np.where(rows.role == DISCRETE_OUT, rebate_later, 0.0)}
    any_pinned = bool(pinned.any())
    combine = np.zeros((n_trades, size))
    combine[rows.trade, np.arange(size)] = rows.coef
    # One batched transfer of the solve's inputs (separate transfers cost ~2x more host time per plan).
    arguments, combine = jax.device_put((
        {"terminal": terminal, "x": x, "steps": steps, "trade": rows.trade,
         "lower_dirichlet": pinned & ~rows.is_up, "upper_dirichlet": pinned & rows.is_up,
         "event_data": event_data if any(flags) else None, "constants": constants if any(flags) else None,
         "lower_node": np.where(rows.is_up, 0, pin) if any_pinned else None,
         "upper_node": np.where(rows.is_up, pin, n - 1) if any_pinned else None}, combine))
    vanilla_rows = np.isin(rows.role, (VANILLA, VANILLA_LEG)) & (np.arange(size) < count)
    return PdePlan(march=_vanilla_march, readout=state_rows, options=(flags, any_pinned), arguments=arguments,
                   table=as_table(market.vol), x=arguments["x"], market=row_market, combine=combine,
                   padding=size - count,
                   diagnostics={"space_nodes": n, "time_steps_max": int(start.shape[0]), "rows": count,
                                "vanilla_rows": (rows.trade[vanilla_rows], np.flatnonzero(vanilla_rows))})


def _vanilla_rows(strike, maturity, is_call, american):
    batch = strike.size
    zeros, false = np.zeros(batch), np.zeros(batch, dtype=bool)
    return {"trade": np.arange(batch), "role": np.full(batch, VANILLA), "coef": np.ones(batch), "strike": strike,
                "maturity": maturity, "is_call": is_call.astype(bool), "american": np.full(batch, american),
                "barrier": np.ones(batch), "is_up": false, "pieces": np.ones(batch, dtype=np.int64),
                "rebate": zeros, "rebate_at_hit": np.ones(batch, dtype=bool), "s_live": np.ones(batch),
                "s_knocked": np.ones(batch), "c_live": zeros, "c_knocked": zeros, "source": np.arange(batch),
                "response": np.arange(batch)}


def plan_european(contract: European, market, method) -> PdePlan:
    """European options: one vanilla row per trade (cell-averaged payoff, Rannacher start).

    Validation: tests/reference/test_pde_quantlib.py (AnalyticEuropeanEngine), tests/unit/test_pde_kernel.py.
    """
    batch = market.batch
    strike, maturity, is_call = _batch_fields(contract, ("strike", "maturity", "is_call"), batch)
    return _plan(_Rows(**_vanilla_rows(strike, maturity, is_call, False)), market, method, batch)


def plan_american(contract: American, market, method) -> PdePlan:
    """American options: V = max(V, payoff) after every step.

    Validation: tests/reference/test_pde_quantlib.py (FdBlackScholesVanillaEngine at a fine grid).
    """
    batch = market.batch
    strike, maturity, is_call = _batch_fields(contract, ("strike", "maturity", "is_call"), batch)
    return _plan(_Rows(**_vanilla_rows(strike, maturity, is_call, True)), market, method, batch)


def plan_barrier(contract: Barrier, market, method, *, out_grid: str = "boundary") -> PdePlan:
    """Barrier options (8 types, rebate, continuous or discrete monitoring), knock-ins by in-out parity or
    a direct solve (``method.knock_in``); see the module docstring for the rows of each type.

    ``out_grid="full"`` prices continuous knock-outs on the knock-in's grid (barrier on an interior node)
    instead of the grid that ends on the barrier: the same nodes as the vanilla, for exact parity checks.

    Raises :class:`InputError` (field ``barrier``, row = the trade's index in the batch) when the spot is
    at or beyond a continuously monitored barrier (the option is already knocked in or out).

    Validation: tests/reference/test_pde_quantlib.py (AnalyticBarrierEngine, 8 types, rebates),
    tests/unit/test_pde_kernel.py (parity, convergence), tests/consistency/test_pde_local_vol.py.
    """
    batch = market.batch
    strike, maturity, is_call, barrier, is_up, is_in, rebate, dates, at_hit = _batch_fields(
        contract, ("strike", "maturity", "is_call", "barrier", "is_up", "is_knock_in", "rebate",
                   "monitoring_dates", "rebate_at_hit"), batch)
    is_call, is_up, is_in, at_hit = (v.astype(bool) for v in (is_call, is_up, is_in, at_hit))
    continuous = dates == 0
    breached = continuous & np.where(is_up, market.spot >= barrier, market.spot <= barrier)
    if breached.any():
        i = int(np.flatnonzero(breached)[0])
        raise InputError(f"the barrier is already breached: spot {market.spot[i]:g} is at or beyond the "
                         f"continuously monitored barrier {barrier[i]:g} (already knocked "
                         f"{'in' if is_in[i] else 'out'}); price it as a {'vanilla' if is_in[i] else 'rebate'} "
                         f"instead", field="barrier", row=i,
                         value=float(barrier[i]))
    direct = getattr(method, "knock_in", "parity") == "direct"
    pieces = np.where(continuous, 1, dates).astype(np.int64)
    trade = np.arange(batch)
    false = np.zeros(batch, dtype=bool)
    out_role = np.where(continuous, OUT_FULL if out_grid == "full" else OUT_BOUNDARY, DISCRETE_OUT)
    # Main row of each trade.
    main_role = np.where(is_in, IN_DIRECT if direct else OUT_LEG, out_role)
    main = {
        "trade": trade, "role": main_role, "coef": np.ones(batch), "strike": strike, "maturity": maturity, "is_call": is_call,
        "american": false, "barrier": barrier, "is_up": is_up, "pieces": pieces, "rebate": rebate,
        "rebate_at_hit": at_hit | is_in,
        # out: payoff on the live side, rebate on the knocked side; parity leg: R - payoff on the live side;
        # direct in: R on the live side, payoff on the knocked side.
        "s_live": np.where(is_in, np.where(direct, 0.0, -1.0), 1.0),
        "s_knocked": np.where(is_in & direct, 1.0, 0.0),
        "c_live": np.where(is_in, rebate, 0.0), "c_knocked": np.where(is_in, 0.0, rebate),
        "source": batch + np.cumsum(is_in) - 1, "response": trade}
    main["source"] = np.where(is_in, main["source"], trade)
    legs = [main]
    ins = np.flatnonzero(is_in)
    vanilla = _vanilla_rows(strike[ins], maturity[ins], is_call[ins], False)
    vanilla.update(trade=ins, role=np.full(ins.size, VANILLA_LEG), coef=np.full(ins.size, 0.0 if direct else 1.0), barrier=barrier[ins],
                   is_up=is_up[ins], pieces=pieces[ins], source=batch + np.arange(ins.size),
                   response=batch + np.arange(ins.size))
    legs.append(vanilla)
    if direct:
        responses = np.flatnonzero(is_in & continuous)
        first = batch + ins.size
        main["response"] = np.where(is_in & continuous, first + np.cumsum(is_in & continuous) - 1, trade)
        response = {key: value[responses] for key, value in main.items()}
        response.update(role=np.full(responses.size, RESPONSE), coef=np.zeros(responses.size),
                        s_live=np.zeros(responses.size), s_knocked=np.zeros(responses.size),
                        c_live=np.zeros(responses.size), c_knocked=np.zeros(responses.size),
                        source=first + np.arange(responses.size), response=first + np.arange(responses.size))
        legs.append(response)
    rows = _Rows(**{key: np.concatenate([np.asarray(leg[key]) for leg in legs]) for key in main})
    rows.role = rows.role.astype(np.int64)
    return _plan(rows, market, method, batch)


def price_barrier(contract: Barrier, market, method, *, out_grid: str = "boundary") -> dict:
    """:func:`plan_barrier` solved: value, delta, gamma, theta per trade; ``diagnostics["vanilla_leg"]`` the
    vanilla solved alongside each knock-in on its nodes (NaN for knock-outs)."""
    plan = plan_barrier(contract, market, method, out_grid=out_grid)
    result = plan.greeks()
    trades, rows = plan.diagnostics["vanilla_rows"]
    vanilla = np.full(plan.trades, np.nan)
    vanilla[trades] = result["diagnostics"]["row_value"][rows]
    result["diagnostics"]["vanilla_leg"] = vanilla
    return result


PLANNERS = {European: plan_european, American: plan_american, Barrier: plan_barrier}

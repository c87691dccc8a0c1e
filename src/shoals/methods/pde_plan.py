"""A prepared batched PDE solve, priced again on any vol table with the same nodes: bumps and AAD on one grid.

Every finite-difference pricer (:mod:`shoals.methods.fd_vanilla`, :mod:`shoals.methods.fd_path_dependent`)
first builds a :class:`PdePlan` on the host (grids, payoffs, time steps, event data: everything but the
volatility), then runs it.  The plan is a function of the vol table only, so

* a vol bump (a surface vega, one bucket of a vega ladder) reprices on exactly the grids and steps of the
  base price, and the difference holds no grid noise;
* reverse-mode automatic differentiation of the book value with respect to every node of the local-vol
  grid is one :func:`jax.value_and_grad` through the time loop (:meth:`PdePlan.value_and_gradient`, each
  step rematerialised under ``jax.checkpoint``: memory O(rows x nodes) per step instead of every
  intermediate).

The solve functions are module-level and their options hashable, so the jitted programs below are compiled
once per shape and reused by every plan.

Validation: tests/unit/test_pde_plan.py (bumped plan = repriced market, AAD gradient = finite differences).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shoals._arrays import on_device
from shoals._exported import cached_call
from shoals.errors import InputError
from shoals.kernels.pde import Levels, VolTable, Window, value_and_derivatives


def row_table(table: VolTable, index) -> VolTable:
    """The vol table of the solve rows ``index`` (row -> trade): per-trade tables (batch, nt, ns) are
    gathered, a shared table (nt, ns) is returned as is."""
    if table.vols.ndim == 3:
        return table._replace(vols=table.vols[index])
    return table


@jax.jit
def _trade_values(rows, x, spot, combine):
    """Trade values from readout rows: V at ln S_0 by the cubic on each row's grid, combined over the rows."""
    return combine @ value_and_derivatives(x, rows, jnp.log(spot))[0]


def state_rows(values, arguments, options):
    """The readout of a plan whose solve rows are its readout rows (vanilla, barrier)."""
    return values


@partial(jax.jit, static_argnames=("march", "readout", "options"))
def _weighted_value_and_gradient(march, readout, options, arguments, table, x, spot, combine, weights):
    def total(vols):
        rows = readout(march(table._replace(vols=vols), arguments, options, True), arguments, options)
        return weights @ _trade_values(rows, x, spot, combine)

    return jax.value_and_grad(total)(table.vols)


@partial(jax.jit, static_argnames=("march", "readout", "options"))
def _captured_value_and_gradients(march, readout, options, arguments, table, x, spot, combine, weights, levels):
    def total(vols, inject):
        values, captured = march(table._replace(vols=vols), arguments, options, True, levels._replace(inject=inject))
        rows = readout(values, arguments, options)
        return weights @ _trade_values(rows, x, spot, combine), (rows, captured)

    (value, (rows, captured)), (gradient, adjoint) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        table.vols, levels.inject)
    return value, gradient, rows, captured, adjoint


@partial(jax.jit, static_argnames=("march", "options"))
def _window(march, options, arguments, table, window):
    return march(table, arguments, options, False, window=window)


@partial(jax.jit, static_argnames=("readout", "options"))
def _read(readout, options, values, arguments):
    return readout(values, arguments, options)


#: :meth:`PdePlan.ladder_values` cuts a batch into at most this many maturity groups for its bump windows.
WINDOW_GROUPS = 3
#: Node-steps (rows x nodes x steps over all bumps) a further window group must save: ~0.15 s of solve on one
#: core of the 2026 CI machine (~15 ns per node-step), against the group's plan, its 2K window calls and, on a
#: first run, one more compiled program.
GROUP_SAVING = 1e7


def _span(touched, lower: int, upper: int) -> tuple[int, int] | None:
    """Steps [first, stop) covering the ``touched`` (steps,) bools, widened by one step on each side and clipped
    to [``lower``, ``upper``); None when none is touched."""
    index = np.flatnonzero(touched)
    if index.size == 0:
        return None
    return max(int(index[0]) - 1, lower), min(int(index[-1]) + 2, upper)


def window_groups(reads, owner, maturity, max_groups: int, min_saving: float, nodes: int) -> list[np.ndarray]:
    """Trades cut into groups of neighbouring maturities for the bump windows of :meth:`PdePlan.ladder_values`.

    ``reads`` (K, steps, R): the steps at which each live solve row reads a node a bump changes; ``owner`` (R,)
    the trade of each row; ``maturity`` (T,).  A group's window for bump k spans the steps from the first to
    the last any of its rows reads (widened by one on each side), for all its rows, so its cost is
    sum_k len_k x rows x ``nodes`` node-steps.  The cheapest cut of the trades sorted by maturity into g
    contiguous groups is found for g = 1 .. ``max_groups`` (dynamic programming over the cut points), and g + 1
    groups are taken over g only when they save more than ``min_saving`` node-steps.  Returns the trade
    indices of each group (one group: all trades)."""
    kinds, steps, _ = reads.shape
    trades = maturity.size
    touched = reads.any(axis=1)                                                        # (K, R)
    first = np.where(touched, reads.argmax(axis=1), steps)
    last = np.where(touched, steps - 1 - reads[:, ::-1].argmax(axis=1), -1)
    low, high = np.full((kinds, trades), steps), np.full((kinds, trades), -1)
    for k in range(kinds):
        np.minimum.at(low[k], owner, first[k])
        np.maximum.at(high[k], owner, last[k])
    rows = np.bincount(owner, minlength=trades)
    order = np.argsort(maturity, kind="stable")
    low, high, rows = low[:, order], high[:, order], rows[order]
    cost = np.full((trades + 1, trades + 1), np.inf)                  # cost[i, j]: sorted trades i..j - 1
    for i in range(trades):
        lo, hi = np.minimum.accumulate(low[:, i:], axis=1), np.maximum.accumulate(high[:, i:], axis=1)
        length = np.where(hi >= lo, np.minimum(hi + 2, steps) - np.maximum(lo - 1, 0), 0).sum(axis=0)
        cost[i, i + 1:] = length * np.cumsum(rows[i:]) * float(nodes)
    best, cut = [cost[0]], []
    for _ in range(1, max_groups):
        total = best[-1][:, None] + cost                                               # (previous end i, end j)
        cut.append(np.argmin(total, axis=0))
        best.append(np.min(total, axis=0))
    groups = 1
    while groups < len(best) and best[groups][trades] < best[groups - 1][trades] - min_saving:
        groups += 1
    ends = [trades]
    for g in range(groups - 1, 0, -1):
        ends.append(int(cut[g - 1][ends[-1]]))
    ends = ends[::-1]
    return [order[start:end] for start, end in zip([0] + ends[:-1], ends)]


class WindowGroup(NamedTuple):
    """Rows of :meth:`PdePlan.ladder_values` that solve their bump windows together: ``plan`` (the batch's own
    or a :attr:`PdePlan.subset` plan) whose first ``rows.size`` solve rows are the batch's ``rows``, whose level
    l is the batch's level l + ``offset``, and the window of each bump in the batch's levels (None: none)."""

    plan: "PdePlan"
    rows: np.ndarray
    offset: int
    windows: list


class LadderValues(NamedTuple):
    """:meth:`PdePlan.ladder_values`: the weighted value and its gradient (as :meth:`PdePlan.value_and_gradient`),
    the trade values ``base`` (T,) and ``bumped`` (T, K) under each bumped table, and the base solve's readout
    ``rows`` (its spot Greeks: :meth:`PdePlan.greeks`)."""

    value: float
    gradient: np.ndarray
    base: np.ndarray
    bumped: np.ndarray
    rows: jax.Array


@dataclass(frozen=True)
class PdePlan:
    """A batch of trades ready to be solved on any vol table with the nodes of ``table``.

    ``march(table, arguments, options, checkpoint, levels=None, window=None)`` (module-level, jit-safe) steps
    the prepared terminal values back to t = 0 (:func:`~shoals.kernels.pde.solve_backward`, whose ``levels``
    and ``window`` it passes on) and returns the solve's state (B, n); ``readout(state, arguments, options)``
    maps it to the *readout rows* (R, n): solutions on the grids ``x`` (R, n) whose cubic interpolation at
    ln S_0 of ``market`` (the :class:`PdeMarket` of the readout rows) gives the value of each row; trade values
    are ``combine`` (T, R) times the row values (knock-ins are sums of legs).  ``options`` is hashable (static
    under jit), ``arguments`` a pytree of arrays holding at least ``terminal`` (B, n), ``steps``
    (:class:`~shoals.kernels.pde.Steps`) and ``trade`` (B,), the trade whose value each solve row feeds.

    ``curve``: the plan whose readout rows are the value as a function of the spot, read by :meth:`values_at`
    (``None``: this plan's own rows, the t = 0 solution on the grids, for vanilla, barrier, Asian and lookback
    terms as planned; the cliquet's is the diagonal of its reset-level family, the trade struck at each spot).

    ``padding``: the last ``padding`` solve rows only fill a compiled batch size (copies of row 0, weight 0).
    ``subset(trades)``: the plan of the trades ``trades`` (increasing indices) alone, whose solve rows, grids
    and steps are this plan's rows of those trades (a trade's discretisation does not depend on its
    batch-mates; :meth:`ladder_values` checks it), or None: :meth:`ladder_values` then solves every bump
    window on all rows.
    """

    march: Callable
    readout: Callable
    options: tuple
    arguments: object
    table: VolTable
    x: jax.Array
    market: object
    combine: jax.Array
    diagnostics: dict = field(default_factory=dict)
    curve: "PdePlan | None" = None
    padding: int = 0
    subset: "Callable[[np.ndarray], PdePlan] | None" = None

    @property
    def trades(self) -> int:
        return int(self.combine.shape[0])

    def _table(self, vols) -> VolTable:
        if vols is None:
            return self.table
        vols = jnp.asarray(vols, dtype=jnp.float64)
        if vols.shape != self.table.vols.shape:
            raise InputError(f"vols of shape {vols.shape} do not match the plan's table {self.table.vols.shape}",
                             field="vols", value=vols.shape)
        return self.table._replace(vols=vols)

    def _rows(self, vols=None) -> jax.Array:
        """The readout rows of the solve under ``vols``: the whole solve as the window [0, steps) from the
        terminal values, the program of every bumped window too (:meth:`ladder_values`; compiled once per
        shape and kept on disk with the compilation cache: :func:`shoals._exported.cached_call`), then the
        readout.  Inside a JAX transformation (``vols`` traced) the solve is the plain scan, which reverse mode
        differentiates (a window's loop has traced bounds)."""
        table = self._table(vols)
        if isinstance(table.vols, jax.core.Tracer):
            state = self.march(table, self.arguments, self.options, False)
        else:
            state = self._window_state(table, self.arguments["terminal"], 0, int(self.arguments["steps"].dt.shape[0]))
        return _read(self.readout, self.options, state, self.arguments)

    def _window_state(self, table, initial, first: int, stop: int) -> jax.Array:
        """The solve's state at level ``stop`` from ``initial`` at level ``first`` under ``table``."""
        window = Window(initial=on_device(initial), first=jnp.asarray(first, dtype=jnp.int32),
                        stop=jnp.asarray(stop, dtype=jnp.int32))
        return cached_call(_window, (self.march, self.options), (self.arguments, table, window))

    def _spot(self):
        return on_device(np.asarray(self.market.spot, dtype=np.float64))

    def values(self, vols=None) -> jax.Array:
        """Trade values (T,) on the plan's grids under ``vols`` (the shape of ``table.vols``; default the
        plan's own table): the readout rows of the same compiled solve as :meth:`greeks`, interpolated at
        the spot and combined."""
        rows = self._rows(vols)
        return _trade_values(rows, on_device(self.x), self._spot(), self.combine)

    def values_at(self, spots, vols=None) -> np.ndarray:
        """Trade values (T, K) at ``spots`` (T, K) from one solve: the readout rows of :attr:`curve`
        interpolated (the cubic of :meth:`values`) at the spots of their trade, then combined.  NaN where a
        spot lies outside a row's grid (no extrapolation).  The values
        are those of pricing the trade at each spot (a running extreme as planned; a cliquet's first reset at
        the spot).

        Validation: tests/unit/test_pde_plan.py (values_at tests).
        """
        plan = self if self.curve is None else self.curve
        combine = np.asarray(plan.combine)
        trade_of_row = np.argmax(np.abs(combine), axis=0)
        log_spots = np.log(np.asarray(spots, dtype=np.float64))[trade_of_row]            # (R, K)
        rows = plan._rows(vols)
        x = np.asarray(plan.x)
        values = np.stack([np.asarray(value_and_derivatives(on_device(x), rows, on_device(column))[0])
                           for column in log_spots.T], axis=1)                             # (R, K)
        outside = (log_spots < x[:, :1]) | (log_spots > x[:, -1:])
        return combine @ np.where(outside, np.nan, values)

    def value_and_gradient(self, weights, vols=None):
        """sum_t weights_t V_t and its gradient with respect to every vol node (reverse mode through the
        time loop, steps rematerialised).  Returns ``(value, gradient)``, the gradient of the shape of
        ``table.vols``."""
        weights = jnp.asarray(weights, dtype=jnp.float64)
        return cached_call(_weighted_value_and_gradient, (self.march, self.readout, self.options),
                           (self.arguments, self._table(vols), on_device(self.x), self._spot(), self.combine,
                            weights))

    @cached_property
    def _step_cells(self):
        """Per step and row (host side, computed once per plan): the time cell of the table read at the step's
        mid-time (rows i and i + 1 are read) and whether the step has a length (padding steps are the
        identity whatever the vol)."""
        steps = self.arguments["steps"]
        start, dt = np.asarray(steps.start), np.asarray(steps.dt)
        times = np.asarray(self.table.times)
        cell = np.clip(np.searchsorted(times, start - 0.5 * dt, side="right") - 1, 0, times.size - 2)
        return cell, dt > 0.0

    def _reads(self, vols) -> np.ndarray | None:
        """(steps, B) bools (host side): the steps at which each solve row reads a node of the table where
        ``vols`` differs from the plan's own, by the time cells :func:`~shoals.kernels.pde.solve_backward` reads
        at each step's mid-time; None for a per-trade table (flat vols: every step reads its own vol)."""
        base = np.asarray(self.table.vols)
        if base.ndim != 2:
            return None
        cell, live = self._step_cells
        changed = np.any(np.asarray(self._table(vols).vols) != base, axis=1)     # (nt,)
        return (changed[cell] | changed[cell + 1]) & live

    def bump_window(self, vols) -> tuple[int, int] | None:
        """The steps [first, stop) of this plan's solve that read a node of the table where ``vols`` differs
        from the plan's own (:meth:`_reads`, the union over the rows, widened by one step on each side); None
        when no step does (the values under ``vols`` are the base values).  A per-trade table (flat vols) gives
        the whole solve."""
        reads = self._reads(vols)
        count = self._step_cells[0].shape[0]
        return (0, count) if reads is None else _span(reads.any(axis=1), 0, count)

    def ladder_values(self, weights, bumped_vols, *, max_groups: int | None = None,
                      min_saving: float | None = None) -> LadderValues:
        """The weighted value sum_t weights_t V_t and its gradient with respect to the vol nodes (as
        :meth:`value_and_gradient`), and every trade's value under each table of ``bumped_vols`` (K, nt, ns),
        each bump solved only over the steps it changes (:meth:`bump_window`), exactly:

        * before the window (from maturity) the bumped solve is the base solve, so it starts from the base
          state V at level ``first``, captured by the gradient pass;
        * after it the scheme is affine in V (theta steps, jump conditions, boundary values, readout; not the
          American projection), so the bumped trade value is V_t + lambda . (V_bumped - V) at level ``stop``,
          with lambda = dV_t/dV(stop) the base adjoint state: the gradient pass perturbs the state at every
          window end by zero and returns the gradient of the weighted value there, weights_t lambda on the
          rows of trade t (``weights`` must be non-zero).

        A window is the union of the steps its rows read, and each trade steps at its own T / N, so in a batch
        of mixed maturities the short trades' fine steps widen every window.  The trades are therefore cut
        into up to ``max_groups`` (default :data:`WINDOW_GROUPS`) groups of neighbouring maturities, each
        solving its own windows on its own rows (the :attr:`subset` plans), where that saves at least
        ``min_saving`` (default :data:`GROUP_SAVING`) of the windows' node-steps per further group
        (:func:`window_groups`).

        One gradient pass for the batch, then one window solve per bump and group (one compiled program per
        group).  Validation: tests/consistency/test_vega_ladder.py (= the full bumped solves on every family,
        grouped and not, and the run's ladder = the ladder by full bumped solves)."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.trades,):
            raise InputError(f"one weight per trade ({self.trades}), got shape {weights.shape}", field="weights",
                             value=weights.shape)
        zero = np.flatnonzero(~(weights != 0.0))
        if zero.size:
            raise InputError("ladder_values needs non-zero weights (the adjoint state is divided by them)",
                             field="weights", row=int(zero[0]), value=weights[zero[0]])
        groups = self._window_groups(bumped_vols, WINDOW_GROUPS if max_groups is None else max_groups,
                                     GROUP_SAVING if min_saving is None else min_saving)
        ends = sorted({level for group in groups for window in group.windows if window is not None
                       for level in window})
        count = len(ends)
        slots = np.full(self.arguments["steps"].dt.shape[0] + 1, count, dtype=np.int32)
        slots[ends] = np.arange(count)
        state = on_device(np.zeros((count + 1,) + tuple(self.arguments["terminal"].shape)))
        levels = Levels(slots=on_device(slots), inject=state, captured=state)
        value, gradient, rows, captured, adjoint = cached_call(
            _captured_value_and_gradients, (self.march, self.readout, self.options),
            (self.arguments, self.table, on_device(self.x), self._spot(), self.combine,
             on_device(weights), levels))
        base = np.asarray(_trade_values(rows, on_device(self.x), self._spot(), self.combine))
        captured, adjoint = np.asarray(captured), np.asarray(adjoint)
        owner = np.asarray(self.arguments["trade"])
        bumped = np.repeat(base[:, None], len(bumped_vols), axis=1)
        for group in groups:
            fill = group.plan.arguments["terminal"].shape[0] - group.rows.size     # the group plan's padding
            for k, (vols, window) in enumerate(zip(bumped_vols, group.windows)):
                if window is None:
                    continue
                first, stop = window
                initial = captured[slots[first]][group.rows]
                initial = np.concatenate([initial, np.repeat(initial[:1], fill, axis=0)])
                moved = np.asarray(group.plan._window_state(group.plan._table(vols), initial, first - group.offset,
                                                            stop - group.offset))[:group.rows.size]
                change = np.sum(adjoint[slots[stop]][group.rows] * (moved - captured[slots[stop]][group.rows]),
                                axis=1)
                bumped[:, k] += np.bincount(owner[group.rows], change, minlength=base.size) / weights
        return LadderValues(value=float(value), gradient=np.asarray(gradient), base=base, bumped=bumped, rows=rows)

    def _window_groups(self, bumped_vols, max_groups: int, min_saving: float) -> list[WindowGroup]:
        """The :class:`WindowGroup` s of :meth:`ladder_values`: this plan on all its rows, or the :attr:`subset`
        plans of the trades cut by :func:`window_groups` when that pays and each subset plan's rows and steps
        are this plan's (else all rows: the windows are then only wider, never wrong)."""
        reads = [self._reads(vols) for vols in bumped_vols]
        steps = self._step_cells[0].shape[0]
        rows = np.arange(self.arguments["terminal"].shape[0])
        whole = [WindowGroup(plan=self, rows=rows, offset=0,
                             windows=[(0, steps) if r is None else _span(r.any(axis=1), 0, steps) for r in reads])]
        if self.subset is None or max_groups < 2 or any(r is None for r in reads) or not reads:
            return whole
        live = rows[:rows.size - self.padding]
        owner = np.asarray(self.arguments["trade"])[live]
        dt = np.asarray(self.arguments["steps"].dt)
        maturity = np.zeros(self.trades)
        maturity[owner] = dt[:, live].sum(axis=0)
        cuts = window_groups(np.stack([r[:, live] for r in reads]), owner, maturity, max_groups, min_saving,
                             self.x.shape[-1])
        if len(cuts) < 2:
            return whole
        groups = []
        for trades in cuts:
            group = self._subset_group(np.sort(trades), live, owner, reads)
            if group is None:
                return whole
            groups.append(group)
        return groups

    def _subset_group(self, trades, live, owner, reads) -> WindowGroup | None:
        """The :class:`WindowGroup` of ``trades`` by the :attr:`subset` plan, None unless its live rows are
        this plan's rows of ``trades`` (same grids, same steps, at a level offset)."""
        plan = self.subset(trades)
        rows = live[np.isin(owner, trades)]
        size = rows.size
        if plan.arguments["terminal"].shape[0] - plan.padding != size:
            return None
        if not (np.array_equal(trades[np.asarray(plan.arguments["trade"])[:size]], owner[np.isin(owner, trades)])
                and np.array_equal(np.asarray(plan.arguments["x"])[:size], np.asarray(self.arguments["x"])[rows])):
            return None
        ours, theirs = self.arguments["steps"], plan.arguments["steps"]
        count, own_count = ours.dt.shape[0], theirs.dt.shape[0]

        def same(offset):
            return all(np.array_equal(np.asarray(getattr(ours, name))[offset:offset + own_count][:, rows],
                                      np.asarray(getattr(theirs, name))[:, :size])
                       for name in ("start", "dt", "theta")) and not np.any(
                np.delete(np.asarray(ours.dt)[:, rows], np.arange(offset, offset + own_count), axis=0))

        offset = next((o for o in (0, count - own_count) if same(o)), None)
        if offset is None:
            return None
        windows = [_span(r[:, rows].any(axis=1), offset, offset + own_count) for r in reads]
        return WindowGroup(plan=plan, rows=rows, offset=offset, windows=windows)

    def greeks(self, rows=None) -> dict:
        """Value, delta, gamma, theta per trade (NumPy) at the plan's own table: the readout rows'
        :meth:`PdeMarket.spot_greeks` combined linearly; ``diagnostics`` adds ``row_value`` (R,).  ``rows``:
        the readout rows when already solved (:attr:`LadderValues.rows`), else solved here."""
        rows = self._rows() if rows is None else rows
        per_row = self.market.spot_greeks(np.asarray(self.x), rows)
        combine = np.asarray(self.combine)
        result = {name: combine @ per_row[name] for name in ("value", "delta", "gamma", "theta")}
        result["diagnostics"] = {**self.diagnostics, "row_value": per_row["value"]}
        return result


def identity_combine(trades: int) -> jax.Array:
    """The (T, T) identity: one readout row per trade."""
    return on_device(np.eye(trades))


def as_table(vol: VolTable) -> VolTable:
    """``vol`` with float64 JAX arrays (the plan's pytree leaves)."""
    return VolTable(times=jnp.asarray(vol.times, dtype=jnp.float64), spots=jnp.asarray(vol.spots, dtype=jnp.float64),
                    vols=jnp.asarray(vol.vols, dtype=jnp.float64))

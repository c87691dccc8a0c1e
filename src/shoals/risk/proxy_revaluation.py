"""Proxy-accelerated full-revaluation VaR: each trade's value as a Chebyshev proxy over the scenario plane
(spot log-return x, vol factor u), built from a few exact repricings, then evaluated at every scenario.

Scenarios of a one-factor vol model (:class:`shoals.risk.revaluation.Scenarios` with ``vol_factor``: the
simulated and historical sets) are points (x_j, u_j) of a plane: scenario j is the market of
:func:`shoals.risk.revaluation.scenario_market` with spot return x_j and pillar vol shifts
:meth:`VolFactor.shifts` (u_j).  For each trade, V(x, u) is interpolated on a tensor Chebyshev-Lobatto grid of
``spot_nodes`` x ``vol_nodes`` points over the box of the scenarios (:mod:`shoals.kernels.chebyshev`: DCT
coefficients, evaluation by the Chebyshev basis), with the x axis split into cells where the value has a kink:

* a continuously monitored barrier at x_B = ln(B / S_0) inside the box (beyond it the trade is knocked: a
  constant rebate or the vanilla, :func:`shoals.risk.revaluation.scenario_rows`, so each side is smooth; the
  Lobatto end points put a node on the barrier itself);
* a lookback at x = 0 (the running extreme follows the spot on one side only).

The nodes are exact repricings with the same pricer as the full revaluation (finite differences on the
scenario's sticky local vol).  Along x most of them come from one solve: the PDE's t = 0 solution is the value
as a function of the spot, so a cell whose shocked terms do not move with the spot (vanillas, a barrier's live
side, Asians, a lookback whose extreme stays, cliquets struck at the spot: the diagonal of their reset-level
family) is read at all its x nodes from one solve at today's spot (:meth:`FiniteDifference.values_at`); only a
lookback's cell where the running extreme follows the spot is priced node by node, one spot per row.  Tasks:
(trade chunk) x (vol node), plus today's values of the chunk by the exact revaluation's own code, all on the
same workers.  A chunk the PDE declines or fails on is revalued exactly
(:func:`shoals.risk.revaluation.revalue`) instead, so every trade is priced and the P&L needs no proxy where
none can be built.  The P&L is the proxy's V(x_j, u_j) minus the exact value in today's market (no vol move
is not a point of the factor plane when the pillars' offsets differ).

Cost: about vol_nodes solves per trade (spot_nodes x vol_nodes for a lookback's moving side) plus today's,
against one per scenario; accuracy: the proxy error at the scenarios (measured against exact repricing by
benchmarks/bench_book_var.py and tests/consistency/test_proxy_book_var.py).

References: M. Gass, K. Glau, M. Mahlstedt, M. Mair, "Chebyshev interpolation for parametric option pricing",
Finance Stoch. 22 (2018); Z. Zeron-Medina Laris & I. Ruiz, "Chebyshev methods for ultra-efficient risk
calculations" (2019, the dynamic-sensitivities approach to full-revaluation VaR); Trefethen, "Approximation
Theory and Approximation Practice" (2013) ch. 2-3, 8.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from itertools import pairwise

import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpy.polynomial.chebyshev import chebvander

from shoals.errors import InputError
from shoals.execution import SerialExecutor, cost_sorted_order
from shoals.greeks.vega_ladder import pillar_atm_vols
from shoals.instruments import Barrier, Lookback, stack
from shoals.kernels import chebyshev
from shoals.kernels import risk as kernels
from shoals.market.local_vol import LocalVolGrid
from shoals.methods import FiniteDifference
from shoals.risk.revaluation import (
    RevaluationMarket,
    RevaluationTask,
    Scenarios,
    revalue,
    revalue_chunk,
    scenario_market,
    scenario_rows,
    trade_table,
    values_only,
)
from shoals.risk.run import book_chunks, finite_difference_of, trade_cost
from shoals.risk.var import confidence_levels, var_figures

#: Default Chebyshev nodes per cell along the spot return and along the vol factor.
SPOT_NODES = 9
VOL_NODES = 3


@dataclass(frozen=True)
class ProxyTask:
    """Trades of one instrument type (book indices, rows and their x cells) priced at every x node of their
    cells under vol node ``vol_index``, or (``vol_index`` -1) in today's market."""

    indices: tuple
    rows: tuple
    cells: tuple
    vol_index: int


@dataclass(frozen=True)
class ProxyMarket:
    """Shipped once per worker: base snapshot and local vol grid, the vol nodes' factor values and
    :class:`VolFactor`, the x nodes per cell, the finite-difference method of the nodes and the pricing method
    of today's values (that of the exact revaluation)."""

    snapshot: object
    local_vol: LocalVolGrid
    vol_nodes: np.ndarray
    factor: object
    spot_nodes: int
    method: FiniteDifference
    pricing: object


def trade_cells(row, box: tuple, base_spot: float) -> tuple:
    """The x cells (lo, hi) of one trade over ``box`` = (x_min, x_max): split at a continuously monitored
    barrier's ln(B / S_0) and at 0 for a lookback, where either lies strictly inside the box."""
    x_min, x_max = box
    splits = []
    contract = row.contract
    if row.error is None and isinstance(contract, Barrier) and int(contract.monitoring_dates) == 0:
        splits.append(float(np.log(float(contract.barrier) / base_spot)))
    if row.error is None and isinstance(contract, Lookback):
        splits.append(0.0)
    edges = [x_min, *sorted(x for x in splits if x_min < x < x_max), x_max]
    return tuple(pairwise(edges))


def _node_spot(contract, base_spot: float, x: float) -> float:
    """S_0 e^x, exactly the barrier at a cell edge placed on a barrier (so that the node is the knocked value,
    the limit of the live side, rather than a spot a rounding error short of the barrier)."""
    spot = base_spot * np.exp(x)
    if isinstance(contract, Barrier) and abs(spot / float(contract.barrier) - 1.0) < 1e-12:
        return float(contract.barrier)
    return float(spot)


def _same_terms(first, second) -> bool:
    """Whether two contracts are of one type with equal fields (NaN equal to NaN)."""
    return type(first) is type(second) and all(
        np.array_equal(np.asarray(getattr(first, f.name)), np.asarray(getattr(second, f.name)), equal_nan=True)
        for f in fields(first))


def _cell_entries(row, cells, market, base_spot: float, spot_nodes: int):
    """Per cell of one trade: the node spots and, per node, the shocked row (:func:`scenario_rows`) or its
    fixed value (a knocked-out barrier)."""
    for c, (lo, hi) in enumerate(cells):
        spots = [_node_spot(row.contract, base_spot, x) for x in chebyshev.grid_axes([lo], [hi], [spot_nodes])[0]]
        shocked = []
        for spot in spots:
            if isinstance(row.contract, (Barrier, Lookback)):
                (moved,), fixed = scenario_rows([row], market.bump(spot=jnp.asarray(spot)), base_spot)
                shocked.append((moved, fixed.get(0)))
            else:
                shocked.append((row, None))
        yield c, spots, shocked


def proxy_task(task: ProxyTask, shared: ProxyMarket):
    """One task of :func:`proxy_book_var`: :func:`price_nodes` at a vol node, or (``vol_index`` -1) today's
    values and failures of the chunk by the exact revaluation's own code (:func:`revalue_chunk` on the base
    market), so that the P&L's reference is exactly the exact revaluation's and every task runs on the same
    workers and shared market."""
    if task.vol_index < 0:
        base = RevaluationMarket(snapshot=shared.snapshot, local_vol=shared.local_vol, scenarios=None,
                                 method=shared.pricing)
        return revalue_chunk(RevaluationTask(indices=task.indices, rows=task.rows, scenarios=(-1,)), base)
    return price_nodes(task, shared)


def price_nodes(task: ProxyTask, shared: ProxyMarket) -> tuple[np.ndarray, int]:
    """Per-unit values (trades, max cells, spot nodes) of the chunk at vol node ``vol_index`` (NaN for absent
    cells) and the number of trade prices solved for.  A knocked-out node is its rebate; the other nodes of a
    cell are grouped by their shocked terms, and a group of several (a barrier's live side or its knocked-in
    vanilla; a lookback whose running extreme stays; Europeans, Americans, Asians; cliquets, struck at the
    shocked spot as in the exact revaluation) is read off ONE solve at today's spot
    (:meth:`FiniteDifference.values_at`); a node with terms of its own (where a lookback's extreme follows the
    spot, a barrier node on the barrier) is priced at its spot.  One batched solve per instrument type and
    mode."""
    base_spot = float(np.asarray(shared.snapshot.spot))
    sigma = pillar_atm_vols(shared.snapshot.surface)
    shifts = shared.factor.shifts(sigma, shared.vol_nodes[task.vol_index])[0]
    market, grid = scenario_market(shared.snapshot, shared.local_vol, 0.0, shifts)
    width = max(len(cells) for cells in task.cells)
    values = np.full((len(task.rows), width, shared.spot_nodes), np.nan)
    curves: dict[str, list] = {}
    nodes: dict[str, list] = {}
    for t, (row, cells) in enumerate(zip(task.rows, task.cells)):
        for c, spots, shocked in _cell_entries(row, cells, market, base_spot, shared.spot_nodes):
            groups: list = []                     # (shocked row, node indices) of nodes with equal terms
            for k, (entry, fixed) in enumerate(shocked):
                if fixed is not None:
                    values[t, c, k] = fixed
                    continue
                for moved, members in groups:
                    if _same_terms(moved.contract, entry.contract):
                        members.append(k)
                        break
                else:
                    groups.append((entry, [k]))
            for moved, members in groups:
                if len(members) > 1:              # read off one solve; spots padded to spot_nodes columns
                    padded = [spots[k] for k in members] + [spots[members[0]]] * (shared.spot_nodes - len(members))
                    curves.setdefault(moved.instrument, []).append(((t, c, members), moved.contract, padded))
                else:
                    nodes.setdefault(moved.instrument, []).append(((t, c, members[0]), moved.contract,
                                                                   spots[members[0]]))
    for instrument, entries in curves.items():
        contracts = stack([contract for _, contract, _ in entries])
        spots = np.asarray([spots for _, _, spots in entries])
        curve = shared.method.values_at(contracts, market, spots, local_vol=grid)
        for ((t, c, members), contract, entry_spots), row_values in zip(entries, curve):
            if np.all(np.isfinite(row_values)):
                values[t, c, members] = row_values[:len(members)]
            else:                                 # off the solve's grid: every node priced
                nodes.setdefault(instrument, []).extend(((t, c, k), contract, spot)
                                                        for k, spot in zip(members, entry_spots))
    for entries in nodes.values():
        contracts = stack([contract for _, contract, _ in entries])
        spots = jnp.asarray([spot for _, _, spot in entries])
        prices = np.asarray(shared.method.price(contracts, market.bump(spot=spots), local_vol=grid).value)
        for (position, _, _), price in zip(entries, np.atleast_1d(prices)):
            values[position] = price
    solved = sum(len(entries) for entries in curves.values()) + sum(len(entries) for entries in nodes.values())
    return values, solved


def _evaluate(coefficients, lower, upper, points) -> np.ndarray:
    """The 2-D Chebyshev series ``coefficients`` (n_x, n_u) on the box at ``points`` (m, 2): the Chebyshev
    Vandermonde rows (NumPy's ``chebvander``) of each coordinate contracted with the coefficients."""
    t = [(2.0 * points[:, i] - (lower[i] + upper[i])) / (upper[i] - lower[i]) for i in range(2)]
    basis_x = chebvander(t[0], coefficients.shape[0] - 1)
    basis_u = chebvander(t[1], coefficients.shape[1] - 1)
    return np.einsum("mi,ij,mj->m", basis_x, coefficients, basis_u)


def _cell_values(node_values, cells, vol_box, points) -> tuple[np.ndarray, float]:
    """A trade's proxy values at ``points`` (m, 2) and its coefficient-decay error estimate, from the node
    values (vol nodes, cells, spot nodes) of its ``cells``."""
    out = np.full(points.shape[0], np.nan)
    estimate = 0.0
    for c, (lo, hi) in enumerate(cells):
        grid = node_values[:, c, :].T                                   # (spot nodes, vol nodes)
        coefficients = chebyshev.coefficients_from_values(grid)
        estimate = max(estimate, float(chebyshev.error_estimate_per_dimension(coefficients).sum()))
        inside = (points[:, 0] >= lo) & (points[:, 0] <= hi) & np.isnan(out)
        out[inside] = _evaluate(coefficients, (lo, vol_box[0]), (hi, vol_box[1]), points[inside])
    return out, estimate


@dataclass(frozen=True)
class ProxyVarResult:
    """VaR/CVaR from proxy revaluation: ``pnl`` (N,) book P&L per scenario, ``values`` (N, T) per-unit proxy
    values, ``error_estimate`` (T,) each proxy's coefficient-decay estimate (per unit), ``exact`` (T,) True
    where a trade was revalued exactly instead, ``trades`` per trade (as :func:`trade_table`: status ``ok`` or
    why it is left out), ``repricings`` the number of trade repricings made."""

    levels: tuple
    var: np.ndarray
    cvar: np.ndarray
    pnl: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    trades: pd.DataFrame = field(repr=False)
    error_estimate: np.ndarray = field(repr=False)
    exact: np.ndarray = field(repr=False)
    repricings: int = 0
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def figures(self) -> dict:
        """``var_95``, ``cvar_95``, ... (:func:`shoals.risk.var.var_figures`)."""
        return var_figures(self.levels, self.var, self.cvar)


def _box(values) -> tuple:
    """[min, max] of ``values`` and 0."""
    return min(float(np.min(values)), 0.0), max(float(np.max(values)), 0.0)


def proxy_book_var(rows, snapshot, local_vol: LocalVolGrid, scenarios: Scenarios, *, method,
                   levels=(0.95, 0.99), executor=None, spot_nodes: int = SPOT_NODES, vol_nodes: int = VOL_NODES,
                   progress=None) -> ProxyVarResult:
    """VaR/CVaR of the book ``rows`` under one-factor ``scenarios`` by Chebyshev proxies of every trade over
    (spot return, vol factor) (module docstring); ``method`` as for :func:`shoals.risk.revaluation.book_var`
    (its finite-difference member builds the proxies; trades it declines are revalued exactly).
    """
    levels = confidence_levels(levels)
    if scenarios.vol_factor is None:
        raise InputError("proxies need one-factor scenarios (simulated_scenarios or historical_scenarios); these "
                         "move the pillars independently", field="scenarios.vol_factor")
    for name, count, low in (("spot_nodes", spot_nodes, 3), ("vol_nodes", vol_nodes, 2)):
        if int(count) != count or count < low:
            raise InputError(f"must be a whole number >= {low}, got {count!r}", field=name, value=count)
    executor = SerialExecutor() if executor is None else executor
    timings, clock = {}, time.perf_counter()
    base_spot = float(np.asarray(snapshot.spot))
    x_box = _box(scenarios.spot_return)
    u_box = _box(scenarios.vol_factor)
    flat_vol = u_box[0] == u_box[1]
    u_nodes = np.zeros(1) if flat_vol else chebyshev.grid_axes([u_box[0]], [u_box[1]], [vol_nodes])[0]
    fd = finite_difference_of(method)
    shared = ProxyMarket(snapshot=snapshot, local_vol=local_vol, vol_nodes=u_nodes, factor=scenarios.factor,
                         spot_nodes=int(spot_nodes), method=replace(fd, vega=False), pricing=values_only(method))
    chunks = [chunk for chunk in book_chunks(rows) if all(r.error is None for r in chunk.rows)]
    group = u_nodes.size + 1                                         # per chunk: the vol nodes, then today
    tasks = [ProxyTask(indices=chunk.indices, rows=chunk.rows, vol_index=m,
                       cells=tuple(trade_cells(r, x_box, base_spot) for r in chunk.rows))
             for chunk in chunks for m in (*range(u_nodes.size), -1)]
    order = cost_sorted_order([sum(trade_cost(r) * len(c) for r, c in zip(t.rows, t.cells)) for t in tasks])
    results = executor.map(proxy_task, tasks, shared=shared, order=order, progress=progress,
                           return_exceptions=True)
    timings["nodes"] = time.perf_counter() - clock

    clock = time.perf_counter()
    count = len(rows)
    points = np.column_stack([scenarios.spot_return, scenarios.vol_factor])
    values = np.full((scenarios.count, count), np.nan)
    estimate = np.full(count, np.nan)
    exact = np.ones(count, dtype=bool)
    vol_box = (-1.0, 1.0) if flat_vol else u_box
    repricings = 0
    base = np.full(count, np.nan)
    failures: list = [None] * count
    for first in range(0, len(tasks), group):                        # the vol nodes and today of one chunk
        chunk_results = results[first:first + group]
        if any(isinstance(result, Exception) for result in chunk_results):
            continue                                                  # revalued exactly below
        nodes = np.stack([node_values for node_values, _ in chunk_results[:-1]])  # (vol, trades, cells, spot)
        repricings += sum(solved for _, solved in chunk_results[:-1])
        if flat_vol:
            nodes = np.concatenate([nodes, nodes])                    # a constant second axis: exact for any u
        today, today_failures = chunk_results[-1]
        task = tasks[first]
        for position, (i, cells) in enumerate(zip(task.indices, task.cells)):
            values[:, i], estimate[i] = _cell_values(nodes[:, position], cells, vol_box, points)
            base[i], failures[i] = today[0, position], today_failures[position]
            exact[i] = False
        repricings += len(task.rows)
    subset = np.flatnonzero(exact)
    if subset.size:
        exact_values, exact_failures, _ = revalue([rows[i] for i in subset], snapshot, local_vol, scenarios,
                                                  method=method, executor=executor)
        values[:, subset] = exact_values[1:]
        repricings += subset.size * scenarios.count
        for i, failure in zip(subset, exact_failures):
            failures[i] = failure
    if subset.size:
        base[subset] = exact_values[0]
        repricings += subset.size
    timings["evaluation"] = time.perf_counter() - clock
    scale = np.array([r.quantity * r.notional for r in rows], dtype=np.float64)
    included = np.all(np.isfinite(values), axis=0) & np.isfinite(base)
    trades = trade_table(rows, base, included, failures)
    pnl = (values[:, included] - base[included]) @ scale[included]
    var, cvar = (np.asarray(a) for a in kernels.var_cvar(-pnl, np.asarray(levels)))
    settings = {"method": "chebyshev proxies", "spot_nodes": int(spot_nodes), "vol_nodes": int(u_nodes.size),
                "spot_box": x_box, "vol_box": u_box, "trades": count, "included": int(included.sum()),
                "exact_trades": int(exact.sum()), "scenarios": scenarios.settings}
    return ProxyVarResult(levels=levels, var=var, cvar=cvar, pnl=pnl, values=values, trades=trades,
                          error_estimate=estimate,
                          exact=exact, repricings=repricings, settings=settings, timings=timings)

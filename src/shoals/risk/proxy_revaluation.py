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
scenario's sticky local vol), every node of a trade and cell priced in one batched solve: one
``MarketSnapshot`` with one spot per row (:func:`shoals.methods.finite_difference.pde_market`), one task per
(trade chunk, vol node) on the executor.  A chunk the PDE declines or fails on is revalued exactly
(:func:`shoals.risk.revaluation.revalue`) instead, so every trade is priced and the P&L needs no proxy where
none can be built.  The P&L is the proxy's V(x_j, u_j) minus the exact value in today's market (no vol move
is not a point of the factor plane when the pillars' offsets differ).

Cost: spot_nodes x vol_nodes x cells repricings per trade instead of one per scenario, so the saving is about
N / (spot_nodes vol_nodes) for N scenarios; accuracy: the proxy error at the scenarios (measured against
exact repricing by benchmarks/bench_book_var.py and tests/consistency/test_proxy_book_var.py).

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
    Scenarios,
    revalue,
    scenario_market,
    scenario_rows,
    trade_table,
)
from shoals.risk.run import book_chunks, finite_difference_of, trade_cost
from shoals.risk.var import confidence_levels, var_figures

#: Default Chebyshev nodes per cell along the spot return and along the vol factor.
SPOT_NODES = 9
VOL_NODES = 3


@dataclass(frozen=True)
class ProxyTask:
    """Trades of one instrument type (book indices, rows and their x cells) priced at every x node of their
    cells under vol node ``vol_index``."""

    indices: tuple
    rows: tuple
    cells: tuple
    vol_index: int


@dataclass(frozen=True)
class ProxyMarket:
    """Shipped once per worker: base snapshot and local vol grid, the vol nodes' factor values and
    :class:`VolFactor`, the x nodes per cell and the finite-difference method."""

    snapshot: object
    local_vol: LocalVolGrid
    vol_nodes: np.ndarray
    factor: object
    spot_nodes: int
    method: FiniteDifference


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


def price_nodes(task: ProxyTask, shared: ProxyMarket) -> np.ndarray:
    """Per-unit values (trades, max cells, spot nodes) of the chunk at vol node ``vol_index`` (NaN for absent
    cells).  A cell whose shocked terms are the same at every node (a barrier's live side, or its knocked-in
    vanilla; a lookback whose running extreme stays; Europeans, Americans, Asians, cliquets: struck at the
    shocked spot, as in the exact revaluation) is read off ONE solve at the base spot
    (:meth:`FiniteDifference.values_at`); the other cells (a lookback's extreme following the spot) are priced
    at every node, one spot per row; a knocked-out node is its rebate.  One batched solve per instrument type
    and mode."""
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
            moved = [entry for entry, fixed in shocked if fixed is None]
            if len(moved) == len(shocked) and all(_same_terms(moved[0].contract, m.contract) for m in moved):
                curves.setdefault(moved[0].instrument, []).append(((t, c), moved[0].contract, spots))
                continue
            for k, (spot, (entry, fixed)) in enumerate(zip(spots, shocked)):
                if fixed is None:
                    nodes.setdefault(entry.instrument, []).append(((t, c, k), entry.contract, spot))
                else:
                    values[t, c, k] = fixed
    for instrument, entries in curves.items():
        contracts = stack([contract for _, contract, _ in entries])
        spots = np.asarray([spots for _, _, spots in entries])
        curve = shared.method.values_at(contracts, market, spots, local_vol=grid)
        for (position, contract, entry_spots), row_values in zip(entries, curve):
            if np.all(np.isfinite(row_values)):
                values[position] = row_values
            else:                                 # off the solve's grid: every node priced
                nodes.setdefault(instrument, []).extend(((*position, k), contract, spot)
                                                        for k, spot in enumerate(entry_spots))
    for entries in nodes.values():
        contracts = stack([contract for _, contract, _ in entries])
        spots = jnp.asarray([spot for _, _, spot in entries])
        prices = np.asarray(shared.method.price(contracts, market.bump(spot=spots), local_vol=grid).value)
        for (position, _, _), price in zip(entries, np.atleast_1d(prices)):
            values[position] = price
    return values


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
                         spot_nodes=int(spot_nodes), method=replace(fd, vega=False))
    chunks = [chunk for chunk in book_chunks(rows) if all(r.error is None for r in chunk.rows)]
    tasks = [ProxyTask(indices=chunk.indices, rows=chunk.rows, vol_index=m,
                       cells=tuple(trade_cells(r, x_box, base_spot) for r in chunk.rows))
             for chunk in chunks for m in range(u_nodes.size)]
    order = cost_sorted_order([sum(trade_cost(r) * len(c) for r, c in zip(t.rows, t.cells)) for t in tasks])
    results = executor.map(price_nodes, tasks, shared=shared, order=order, progress=progress,
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
    for first in range(0, len(tasks), u_nodes.size):                 # the vol nodes of one chunk
        chunk_results = results[first:first + u_nodes.size]
        if any(isinstance(result, Exception) for result in chunk_results):
            continue                                                  # revalued exactly below
        nodes = np.stack(chunk_results)                               # (vol nodes, trades, cells, spot nodes)
        if flat_vol:
            nodes = np.concatenate([nodes, nodes])                    # a constant second axis: exact for any u
        task = tasks[first]
        for position, (i, cells) in enumerate(zip(task.indices, task.cells)):
            values[:, i], estimate[i] = _cell_values(nodes[:, position], cells, vol_box, points)
            repricings += len(cells) * spot_nodes * u_nodes.size
            exact[i] = False
    failures: list = [None] * count
    subset = np.flatnonzero(exact)
    if subset.size:
        exact_values, exact_failures, _ = revalue([rows[i] for i in subset], snapshot, local_vol, scenarios,
                                                  method=method, executor=executor)
        values[:, subset] = exact_values[1:]
        repricings += subset.size * scenarios.count
        for i, failure in zip(subset, exact_failures):
            failures[i] = failure
    base = np.full(count, np.nan)
    proxied = np.flatnonzero(~exact)
    base_values, base_failures, _ = revalue([rows[i] for i in proxied], snapshot, local_vol, None, method=method,
                                            executor=executor)
    base[proxied] = base_values[0]
    if subset.size:
        base[subset] = exact_values[0]
    for i, failure in zip(proxied, base_failures):
        failures[i] = failure
    repricings += count
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

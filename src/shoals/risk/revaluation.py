"""Full-revaluation VaR of a trade book: market scenarios of spot and implied-vol moves, every trade repriced
under each scenario with the batched pricers, the P&L distribution, VaR/CVaR, and the delta-gamma-vega
approximation beside it with its error.

Scenarios (:class:`Scenarios`).  Scenario j moves the spot by the log-return x_j, S_j = S_0 e^{x_j}, and the
ATM implied vol of every SVI pillar i by dsigma_ij (a shift of that slice's total variance that keeps its shape,
:func:`shoals.greeks.vega_ladder.bump_pillars`: the vega ladder's bump).  They are simulated
(:func:`simulated_scenarios`: spot and ATM vols jointly lognormal, correlated, the short pillars moving more)
or historical (:func:`historical_scenarios`: overlapping h-day windows of a daily table).  Scenarios are
instantaneous shocks: the trades are repriced today, with no time decay and no fixing in between.

Dynamics: *sticky local vol*, the model's own.  A scenario's local vol is the Dupire local vol of the
vol-shifted surface, built at today's spot on the nodes of the base grid
(:func:`shoals.market.local_vol.local_vol_on`), and the spot then moves on that fixed sigma_loc(t, S) (implied
vols move along the local vol model's backbone).  The grid delta and gamma of the PDE are derivatives along the
same dynamics, so the delta-gamma-vega approximation and the revaluation differ only by higher-order terms.

Revaluation.  The book is cut into chunks of one instrument type (:func:`shoals.risk.run.book_chunks`) and the
scenarios into blocks of :data:`SCENARIO_BLOCK`; each (chunk, block) is one task on the executor (the market
and the scenarios shipped once per worker), priced by :func:`shoals.risk.book.price_book` with values only.
Monte Carlo trades keep their random stream in every scenario (common random numbers), so the P&L holds no
sampling noise of the base price; results are identical for any executor and worker count.  A continuously
monitored barrier that a scenario's spot breaches is priced as what it has become: a knocked-out option is
worth its rebate (paid now, or discounted from maturity), a knocked-in one the vanilla.  A lookback's running
extreme follows the shocked spot.  A trade that fails in the base or in any scenario is left out of the P&L
and reported with its reason; the rest completes.

P&L_j = sum_t q_t N_t (V_t(scenario j) - V_t(base)) with quantity q and notional N; the figures follow
:func:`shoals.kernels.risk.var_cvar` (VaR_a = type-7 a-quantile of the loss -P&L, CVaR_a the mean loss at or
beyond it).  Delta-gamma-vega approximation of the same scenarios:
P&L_j ~ sum_t q_t N_t (Delta_t dS_j + 1/2 Gamma_t dS_j^2 + sum_i vega_ti dsigma_ij), dS_j = S_0 (e^{x_j} - 1),
with the grid delta and gamma of the base price and the bump vega ladder per pillar.

References: Jorion, "Value at Risk", 3rd ed. (2007), ch. 14-15 (full revaluation, delta-gamma methods);
Britten-Jones & Schaefer, "Non-linear value-at-risk", European Finance Review 2 (1999).
Validation: tests/consistency/test_book_var.py (book P&L = sum of per-trade revaluations, every executor equal,
breached barriers, zero scenario, approximation error shrinking with the shock size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from shoals.errors import InputError
from shoals.execution import SerialExecutor, cost_sorted_order
from shoals.greeks.vega_ladder import (
    VOL_POINT,
    bump_pillars,
    bumped_vol_grids,
    ladder_from_bumps,
    pillar_atm_vols,
)
from shoals.instruments import Barrier, European, Lookback
from shoals.io.book import BookRow
from shoals.kernels import risk as kernels
from shoals.market.local_vol import LocalVolGrid, local_vol_on
from shoals.methods import FiniteDifference, MonteCarlo
from shoals.risk.book import Auto, price_book
from shoals.risk.run import (
    SharedMarket,
    book_and_local_vol,
    book_chunks,
    market_stage,
    price_chunk,
    pricing_method,
    trade_cost,
)
from shoals.risk.var import confidence_levels, var_figures

#: Scenarios per task: tasks never depend on the executor or its worker count.
SCENARIO_BLOCK = 8
TRADING_DAYS = kernels.TRADING_DAYS


@dataclass(frozen=True)
class VolFactor:
    """One-factor implied-vol moves: pillar i's ATM vol sigma_i -> sigma_i exp(loading_i u + offset_i) for a
    scenario's factor value u (the law of :func:`simulated_scenarios` and :func:`historical_scenarios`)."""

    loading: np.ndarray
    offset: np.ndarray

    def shifts(self, sigma, factor) -> np.ndarray:
        """Vol shifts (N, P) of the pillars with ATM vols ``sigma`` (P,) for factor values ``factor`` (N,)."""
        exponent = np.multiply.outer(np.atleast_1d(np.asarray(factor, dtype=np.float64)), self.loading)
        return np.asarray(sigma, dtype=np.float64) * np.expm1(exponent + self.offset)


@dataclass(frozen=True)
class Scenarios:
    """``count`` market scenarios: ``spot_return`` (N,) log-returns x_j of the spot and ``vol_shift`` (N, P)
    moves of each pillar's ATM implied vol (vol units: 0.01 is one vol point), with ``settings`` saying how
    they were made.  Scenarios of a one-factor vol model also carry the factor values ``vol_factor`` (N,) and
    its ``factor`` (:class:`VolFactor`), so that every scenario is a point (x, u) of a plane: what the
    proxies of :mod:`shoals.risk.proxy_revaluation` interpolate over."""

    spot_return: np.ndarray
    vol_shift: np.ndarray
    settings: dict = field(default_factory=dict)
    vol_factor: np.ndarray | None = None
    factor: VolFactor | None = None

    def __post_init__(self):
        spot_return = np.atleast_1d(np.asarray(self.spot_return, dtype=np.float64))
        vol_shift = np.asarray(self.vol_shift, dtype=np.float64)
        if spot_return.ndim != 1 or spot_return.size == 0:
            raise InputError(f"must be a non-empty 1-D array, got shape {spot_return.shape}",
                             field="scenarios.spot_return")
        if vol_shift.ndim != 2 or vol_shift.shape[0] != spot_return.size:
            raise InputError(f"must have shape ({spot_return.size}, pillars), got {vol_shift.shape}",
                             field="scenarios.vol_shift")
        for name, array in (("spot_return", spot_return), ("vol_shift", vol_shift)):
            bad = np.argwhere(~np.isfinite(array))
            if bad.size:
                raise InputError(f"scenario {int(bad[0][0])} is not finite", field=f"scenarios.{name}",
                                 row=int(bad[0][0]), value=array[tuple(bad[0])])
        if (self.vol_factor is None) != (self.factor is None):
            raise InputError("give both the factor values and their VolFactor, or neither", field="scenarios.factor")
        if self.vol_factor is not None:
            vol_factor = np.asarray(self.vol_factor, dtype=np.float64)
            if vol_factor.shape != spot_return.shape:
                raise InputError(f"must have shape {spot_return.shape}, got {vol_factor.shape}",
                                 field="scenarios.vol_factor")
            object.__setattr__(self, "vol_factor", vol_factor)
        object.__setattr__(self, "spot_return", spot_return)
        object.__setattr__(self, "vol_shift", vol_shift)

    @property
    def count(self) -> int:
        return int(self.spot_return.size)

    def table(self, expiries) -> pd.DataFrame:
        """One row per scenario: ``spot_return`` and ``vol_shift_<T>`` per pillar."""
        frame = pd.DataFrame({"scenario": np.arange(self.count), "spot_return": self.spot_return})
        for i, expiry in enumerate(np.asarray(expiries, dtype=np.float64)):
            frame[f"vol_shift_{expiry:g}"] = self.vol_shift[:, i]
        return frame


def _pillar_vol_of_vol(expiries, vol_of_vol: float, term_exponent: float) -> np.ndarray:
    """nu_i = nu (1 / T_i)^beta: the lognormal vol of pillar i's ATM vol (nu at T = 1 year)."""
    return vol_of_vol * np.asarray(expiries, dtype=np.float64) ** (-term_exponent)


def _check_number(name: str, value, *, low: float | None = None, high: float | None = None, strict=False):
    value = float(value)
    too_low = low is not None and (value <= low if strict else value < low)
    if not np.isfinite(value) or too_low or (high is not None and value > high):
        bounds = f"{'>' if strict else '>='} {low}" if low is not None else ""
        bounds += (" and " if bounds and high is not None else "") + (f"<= {high}" if high is not None else "")
        raise InputError(f"must be a finite number {bounds}, got {value!r}", field=name, value=value)
    return value


def simulated_scenarios(snapshot, count: int, *, horizon_days: int = 10, spot_vol: float | None = None,
                        vol_of_vol: float = 0.4, correlation: float = -0.7, term_exponent: float = 0.5,
                        seed: int = 0) -> Scenarios:
    """``count`` joint spot / implied-vol scenarios over ``horizon_days`` trading days (h = days / 252):

    .. math:: x_j = -\\tfrac12 s^2 h + s\\sqrt{h} z_{1j},\\qquad
              \\sigma_i \\to \\sigma_i \\exp\\big(\\nu_i\\sqrt{h}\\,(\\rho z_{1j} + \\sqrt{1-\\rho^2} z_{2j})
              - \\tfrac12\\nu_i^2 h\\big),\\qquad \\nu_i = \\nu\\,T_i^{-\\beta}

    with s = ``spot_vol`` (default the ATM implied vol of the first pillar), sigma_i the pillar ATM vols,
    nu = ``vol_of_vol`` (lognormal vol of the 1-year ATM vol), beta = ``term_exponent`` (0: every pillar moves by
    the same relative amount; 0.5: the short end moves more, as 1/sqrt(T)) and rho = ``correlation`` (spot-vol,
    negative for equity indices).  Draw (j, c) is the counter-based normal of
    :func:`shoals.kernels.risk.coordinate_normals` under ``seed``: scenario j never depends on ``count``.
    """
    from shoals.kernels.monte_carlo import stream_keys

    count = int(count)
    if count < 1:
        raise InputError(f"must be >= 1, got {count}", field="scenarios", value=count)
    if int(horizon_days) != horizon_days or horizon_days < 1:
        raise InputError(f"must be a whole number >= 1, got {horizon_days!r}", field="horizon_days",
                         value=horizon_days)
    correlation = _check_number("correlation", correlation, low=-1.0, high=1.0)
    vol_of_vol = _check_number("vol_of_vol", vol_of_vol, low=0.0)
    term_exponent = _check_number("term_exponent", term_exponent, low=0.0, high=2.0)
    sigma = pillar_atm_vols(snapshot.surface)
    expiries = np.asarray(snapshot.surface.expiries, dtype=np.float64)
    spot_vol = float(sigma[0]) if spot_vol is None else _check_number("spot_vol", spot_vol, low=0.0, strict=True)
    h = horizon_days / TRADING_DAYS
    key = stream_keys(int(seed), np.zeros(1, dtype=np.uint32))[0]
    z = np.asarray(kernels.coordinate_normals(key, np.arange(2), np.arange(count)))
    spot_return = -0.5 * spot_vol ** 2 * h + spot_vol * np.sqrt(h) * z[:, 0]
    vol_factor = correlation * z[:, 0] + np.sqrt(1.0 - correlation ** 2) * z[:, 1]
    nu = _pillar_vol_of_vol(expiries, vol_of_vol, term_exponent)
    factor = VolFactor(loading=nu * np.sqrt(h), offset=-0.5 * nu ** 2 * h)
    return Scenarios(spot_return=spot_return, vol_shift=factor.shifts(sigma, vol_factor), vol_factor=vol_factor,
                     factor=factor, settings={
        "kind": "simulated", "count": count, "horizon_days": int(horizon_days), "spot_vol": spot_vol,
        "vol_of_vol": vol_of_vol, "correlation": correlation, "term_exponent": term_exponent, "seed": int(seed)})


def historical_scenarios(table, snapshot, *, horizon_days: int = 1, term_exponent: float = 0.0) -> Scenarios:
    """Scenarios from a daily history: ``table`` (DataFrame, or CSV/Parquet path) with column ``spot_return``
    (daily log-return of the underlying) and optionally ``vol_return`` (daily log-change of the ATM implied vol,
    e.g. of a 1-year ATM vol or a vol index).  Every overlapping window of ``horizon_days`` days is a scenario:
    x = the sum of the window's spot returns, and pillar i's ATM vol moves by
    sigma_i (exp(y T_i^{-beta}) - 1) with y the sum of the window's vol returns (beta = ``term_exponent``;
    0 moves every pillar by the same relative amount).
    """
    if not isinstance(table, pd.DataFrame):
        from pathlib import Path

        path = Path(table)
        if not path.exists():
            raise InputError(f"file not found: {path}", field="history")
        table = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    if "spot_return" not in table.columns:
        raise InputError(f"needs a column 'spot_return' (daily log-returns); found {', '.join(map(str, table.columns))}",
                         field="history")
    columns = ["spot_return"] + (["vol_return"] if "vol_return" in table.columns else [])
    data = {}
    for name in columns:
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(f"{table[name].iloc[bad[0]]!r} is not a finite number; drop or fill the row",
                             field=name, row=int(bad[0]) + 1, value=table[name].iloc[bad[0]])
        data[name] = values
    days = data["spot_return"].size
    if int(horizon_days) != horizon_days or not 1 <= horizon_days <= days:
        raise InputError(f"must be a whole number from 1 to the {days} days of history, got {horizon_days!r}",
                         field="horizon_days", value=horizon_days)
    term_exponent = _check_number("term_exponent", term_exponent, low=0.0, high=2.0)

    def windows(values):
        cumulative = np.concatenate([[0.0], np.cumsum(values)])
        return cumulative[horizon_days:] - cumulative[:-horizon_days]

    spot_return = windows(data["spot_return"])
    vol_return = windows(data["vol_return"]) if "vol_return" in data else np.zeros_like(spot_return)
    factor = VolFactor(loading=_pillar_vol_of_vol(snapshot.surface.expiries, 1.0, term_exponent),
                       offset=np.zeros(np.asarray(snapshot.surface.expiries).size))
    return Scenarios(spot_return=spot_return, vol_shift=factor.shifts(pillar_atm_vols(snapshot.surface), vol_return),
                     vol_factor=vol_return, factor=factor, settings={
        "kind": "historical", "count": int(spot_return.size), "days": days, "horizon_days": int(horizon_days),
        "overlapping": True, "term_exponent": term_exponent, "vol_moves": "vol_return" in data})


@dataclass(frozen=True)
class RevaluationTask:
    """Trades of one instrument type (book indices and rows) under a block of scenarios (indices into the
    scenario set; -1 is the base market)."""

    indices: tuple
    rows: tuple
    scenarios: tuple


@dataclass(frozen=True)
class RevaluationMarket:
    """Shipped once per worker: the base snapshot and local vol grid, the scenarios and the pricing method."""

    snapshot: object
    local_vol: LocalVolGrid
    scenarios: Scenarios
    method: object


def scenario_market(snapshot, local_vol: LocalVolGrid, spot_return: float, vol_shift) -> tuple:
    """The market of one scenario under sticky local vol: the snapshot with its pillar ATM vols moved by
    ``vol_shift`` and its spot by e^{spot_return}, and the Dupire local vol of the vol-moved surface at
    today's spot on the nodes of ``local_vol``.  Returns ``(snapshot, grid)``."""
    vol_shift = np.asarray(vol_shift, dtype=np.float64)
    moved = bump_pillars(snapshot, vol_shift) if np.any(vol_shift != 0.0) else snapshot
    grid = local_vol_on(moved, local_vol) if moved is not snapshot else local_vol
    spot = np.asarray(snapshot.spot, dtype=np.float64) * np.exp(spot_return)
    return moved.bump(spot=spot), grid


def _knocked_value(contract: Barrier, market) -> float:
    """A knocked-out option's value: its rebate, paid now (at hit) or at maturity."""
    rebate = float(contract.rebate)
    if bool(contract.rebate_at_hit):
        return rebate
    return rebate * float(np.asarray(market.discount(float(contract.maturity))))


def scenario_rows(rows, market, base_spot: float) -> tuple[list, dict]:
    """The book rows as they stand after the spot moved from ``base_spot`` to ``market.spot``: a continuously
    monitored barrier at or beyond its barrier becomes the vanilla (knock-in) or is worth its rebate (knock-out,
    returned in the ``values`` dict by row position instead of a row); a lookback's running extreme (NaN: the
    base spot, a trade struck today) takes in the new spot.  Returns ``(rows, values)``."""
    spot = float(np.asarray(market.spot))
    out, values = [], {}
    for position, row in enumerate(rows):
        contract = row.contract
        if row.error is None and isinstance(contract, Barrier) and int(contract.monitoring_dates) == 0:
            breached = spot >= float(contract.barrier) if bool(contract.is_up) else spot <= float(contract.barrier)
            if breached and bool(contract.is_knock_in):
                vanilla = European(strike=contract.strike, maturity=contract.maturity, is_call=contract.is_call)
                row = replace(row, contract=vanilla, fields={**row.fields, "instrument": "european"})
            elif breached:
                values[position] = _knocked_value(contract, market)
        elif row.error is None and isinstance(contract, Lookback):
            keeps_minimum = bool(contract.is_call) == bool(contract.floating)
            extreme = float(contract.running_extreme)
            extreme = base_spot if np.isnan(extreme) else extreme
            moved = min(extreme, spot) if keeps_minimum else max(extreme, spot)
            row = replace(row, contract=replace(contract, running_extreme=moved))
        out.append(row)
    return out, values


def values_only(method):
    """``method`` without Monte Carlo Greeks and PDE vega bumps (a scenario needs values only; the PDE's grid
    delta, gamma and theta cost nothing)."""
    if isinstance(method, MonteCarlo):
        return replace(method, greeks=False)
    if isinstance(method, FiniteDifference):
        return replace(method, vega=False)
    if isinstance(method, Auto):
        return Auto(methods=tuple(values_only(m) for m in method.methods))
    return method


def revalue_chunk(task: RevaluationTask, shared: RevaluationMarket) -> tuple[np.ndarray, list]:
    """Values per unit (scenarios of the block, trades of the chunk) and, per trade, the first failure
    (``None`` when every scenario priced)."""
    values = np.full((len(task.scenarios), len(task.rows)), np.nan)
    failures: list = [None] * len(task.rows)
    for k, j in enumerate(task.scenarios):
        if j < 0:
            market, grid = shared.snapshot, shared.local_vol
        else:
            market, grid = scenario_market(shared.snapshot, shared.local_vol, shared.scenarios.spot_return[j],
                                           shared.scenarios.vol_shift[j])
        # The base market prices the book as given (a barrier breached today is an input error there).
        rows, fixed = (list(task.rows), {}) if j < 0 else scenario_rows(task.rows, market,
                                                                       float(np.asarray(shared.snapshot.spot)))
        priced = [i for i in range(len(rows)) if i not in fixed]
        if priced:
            frame = price_book([rows[i] for i in priced], shared.method, market=market, local_vol=grid)
            ok = (frame["status"] == "ok").to_numpy()
            values[k, priced] = np.where(ok, frame["price"].to_numpy(dtype=np.float64), np.nan)
            for position, status, good in zip(priced, frame["status"], ok):
                if not good and failures[position] is None:
                    failures[position] = f"{'base' if j < 0 else f'scenario {j}'}: {status}"
        for position, value in fixed.items():
            values[k, position] = value
    return values, failures


@dataclass(frozen=True)
class BookVarResult:
    """Full-revaluation VaR/CVaR of a book, positive currency losses per confidence level, with the
    delta-gamma-vega approximation of the same scenarios.

    ``pnl`` (N,) and ``approximate_pnl`` (N,) book P&L per scenario; ``values`` (N, T) per-unit trade values per
    scenario and ``base`` (T,) (NaN for excluded trades); ``trades`` per trade (id, instrument, quantity,
    notional, base price, delta, gamma, status: ``ok`` or the reason it is left out); ``ladder`` (T, P) the bump
    vega ladder used by the approximation.
    """

    levels: tuple
    var: np.ndarray
    cvar: np.ndarray
    approximate_var: np.ndarray
    approximate_cvar: np.ndarray
    pnl: np.ndarray = field(repr=False)
    approximate_pnl: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)
    trades: pd.DataFrame = field(repr=False)
    ladder: np.ndarray | None = field(repr=False)
    scenarios: Scenarios = field(repr=False)
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def figures(self) -> dict:
        """``var_95``, ``cvar_95``, ... (full revaluation) and the same with prefix ``approx_``."""
        return {**var_figures(self.levels, self.var, self.cvar),
                **var_figures(self.levels, self.approximate_var, self.approximate_cvar, prefix="approx_")}

    def approximation_error(self) -> dict:
        """How far the delta-gamma-vega P&L is from full revaluation: largest and RMS absolute P&L error over
        the scenarios, and the relative VaR/CVaR error per level."""
        error = self.approximate_pnl - self.pnl
        out = {"max_abs_pnl_error": float(np.max(np.abs(error))),
               "rms_pnl_error": float(np.sqrt(np.mean(error ** 2))),
               "pnl_std": float(np.std(self.pnl))}
        for level, var, cvar, approx_var, approx_cvar in zip(self.levels, self.var, self.cvar,
                                                              self.approximate_var, self.approximate_cvar):
            tag = f"{100 * level:g}"
            out[f"var_{tag}_relative_error"] = float((approx_var - var) / abs(var)) if var != 0 else None
            out[f"cvar_{tag}_relative_error"] = float((approx_cvar - cvar) / abs(cvar)) if cvar != 0 else None
        return out


def trade_table(rows, base, included, failures) -> pd.DataFrame:
    """Per trade: id, instrument, quantity, notional, base price (NaN when left out) and status (``ok``, or
    why the trade is left out of the P&L: its row error or its first pricing failure)."""
    trades = pd.DataFrame({"id": [r.id for r in rows], "instrument": [r.instrument for r in rows],
                           "quantity": [r.quantity for r in rows], "notional": [r.notional for r in rows],
                           "price": np.where(included, base, np.nan)})
    trades["status"] = [("ok" if ok else (r.error and f"error: {r.error}") or failure or "error: not priced")
                        for ok, r, failure in zip(included, rows, failures)]
    return trades


def _tasks(rows, scenario_count: int, block: int) -> list[RevaluationTask]:
    """(chunk, scenario block) tasks; the base market is scenario -1, at the head of the first block."""
    scenario_ids = np.arange(-1, scenario_count)
    blocks = [tuple(int(j) for j in scenario_ids[i:i + block]) for i in range(0, scenario_ids.size, block)]
    return [RevaluationTask(indices=chunk.indices, rows=chunk.rows, scenarios=scenarios)
            for chunk in book_chunks(rows) for scenarios in blocks]


def _sensitivities(rows, snapshot, local_vol, method, executor, vega: bool):
    """Base price, grid delta and gamma per trade and, with ``vega``, the bump vega ladder (T, P), through
    :func:`shoals.risk.run.price_chunk` (the pipeline's own Greeks)."""
    chunks = book_chunks(rows)
    shared = SharedMarket(snapshot=snapshot, local_vol=local_vol,
                          bumped_vols=bumped_vol_grids(snapshot, local_vol) if vega else None,
                          method=method, aad=False)
    results = executor.map(price_chunk, chunks, shared=shared)
    pillars = int(np.asarray(snapshot.surface.expiries).size)
    greeks = np.full((len(rows), 3), np.nan)
    ladder = np.zeros((len(rows), pillars))
    for chunk, result in zip(chunks, results):
        index = list(chunk.indices)
        greeks[index] = result.frame[["price", "delta", "gamma"]].to_numpy(dtype=np.float64)
        if vega:
            ladder[index] = ladder_from_bumps(result.bump_values, size=VOL_POINT)
    return greeks, (ladder if vega else None)


def revalue(rows: list[BookRow], snapshot, local_vol: LocalVolGrid, scenarios: Scenarios | None, *, method,
            executor=None, block: int = SCENARIO_BLOCK, progress=None) -> tuple[np.ndarray, list, int]:
    """Per-unit values (1 + N, T) of every trade in the base market (row 0) and under each scenario (none when
    ``scenarios`` is None), the first failure of each trade (``None`` if it priced everywhere) and the number
    of tasks: (trade chunk x ``block`` scenarios) tasks of :func:`revalue_chunk` on ``executor`` (default
    serial), values only."""
    if int(block) != block or block < 1:
        raise InputError(f"must be a whole number >= 1, got {block!r}", field="block", value=block)
    executor = SerialExecutor() if executor is None else executor
    count = 0 if scenarios is None else scenarios.count
    tasks = _tasks(rows, count, int(block))
    shared = RevaluationMarket(snapshot=snapshot, local_vol=local_vol, scenarios=scenarios,
                               method=values_only(method))
    order = cost_sorted_order([sum(trade_cost(r) for r in task.rows) * len(task.scenarios) for task in tasks])
    results = executor.map(revalue_chunk, tasks, shared=shared, order=order, progress=progress)
    values = np.full((count + 1, len(rows)), np.nan)
    failures: list = [None] * len(rows)
    for task, (block_values, block_failures) in zip(tasks, results):
        values[np.ix_(np.asarray(task.scenarios) + 1, task.indices)] = block_values
        for i, failure in zip(task.indices, block_failures):
            if failure is not None and failures[i] is None:
                failures[i] = failure
    return values, failures, len(tasks)


def book_var(rows: list[BookRow], snapshot, local_vol: LocalVolGrid, scenarios: Scenarios, *, method,
             levels=(0.95, 0.99), executor=None, block: int = SCENARIO_BLOCK, approximation: bool = True,
             progress=None) -> BookVarResult:
    """Full-revaluation VaR/CVaR of the book ``rows`` on ``snapshot`` (with its base ``local_vol`` grid) under
    ``scenarios`` (module docstring), priced by ``method`` (e.g. :func:`shoals.risk.run.pricing_method`) on
    ``executor`` (default serial) in (chunk x ``block`` scenarios) tasks; with ``approximation`` the
    delta-gamma-vega P&L of the same scenarios (Greeks and the bump vega ladder from the pipeline's
    :func:`shoals.risk.run.price_chunk`).  ``progress(done, total)`` follows the revaluation tasks.
    """

    levels = confidence_levels(levels)
    pillars = np.asarray(snapshot.surface.expiries, dtype=np.float64)
    if scenarios.vol_shift.shape[1] != pillars.size:
        raise InputError(f"scenarios move {scenarios.vol_shift.shape[1]} pillars; the surface has {pillars.size}",
                         field="scenarios.vol_shift")
    timings = {}
    clock = time.perf_counter()
    values, failures, task_count = revalue(rows, snapshot, local_vol, scenarios, method=method, executor=executor,
                                           block=block, progress=progress)
    timings["revaluation"] = time.perf_counter() - clock
    executor = SerialExecutor() if executor is None else executor

    scale = np.array([r.quantity * r.notional for r in rows], dtype=np.float64)
    included = np.all(np.isfinite(values), axis=0) & np.array([r.error is None for r in rows])
    base, moved = values[0], values[1:]
    pnl = (moved[:, included] - base[included]) @ scale[included]
    trades = trade_table(rows, base, included, failures)

    clock = time.perf_counter()
    approximate = np.full(scenarios.count, np.nan)
    ladder = None
    if approximation:
        greeks, ladder = _sensitivities(rows, snapshot, local_vol, method, executor,
                                           vega=bool(np.any(scenarios.vol_shift != 0.0)))
        trades["delta"], trades["gamma"] = greeks[:, 1], greeks[:, 2]
        spot = float(np.asarray(snapshot.spot))
        d_spot = spot * np.expm1(scenarios.spot_return)
        use = included & np.all(np.isfinite(greeks), axis=1)
        per_trade = greeks[use, 1][None, :] * d_spot[:, None] + 0.5 * greeks[use, 2][None, :] * d_spot[:, None] ** 2
        if ladder is not None:
            per_trade = per_trade + scenarios.vol_shift @ ladder[use].T
        approximate = per_trade @ scale[use]
        timings["approximation"] = time.perf_counter() - clock
    losses = np.stack([-pnl, -approximate])
    var, cvar = (np.asarray(a) for a in kernels.var_cvar(losses[0], np.asarray(levels)))
    approx_var, approx_cvar = ((np.asarray(a) for a in kernels.var_cvar(losses[1], np.asarray(levels)))
                               if approximation else (np.full(len(levels), np.nan),) * 2)
    settings = {"method": "full revaluation", "dynamics": "sticky local vol", "shocks": "instantaneous",
                "pillars": pillars.tolist(), "trades": len(rows), "included": int(included.sum()),
                "excluded": int((~included).sum()), "scenarios": scenarios.settings, "tasks": task_count,
                "block": int(block), "executor": getattr(executor, "name", type(executor).__name__),
                "convention": "VaR = type-7 quantile of the loss -P&L; CVaR = mean loss >= VaR; currency units"}
    return BookVarResult(levels=levels, var=var, cvar=cvar, approximate_var=approx_var,
                         approximate_cvar=approx_cvar, pnl=pnl, approximate_pnl=approximate, values=moved,
                         base=base, trades=trades, ladder=ladder, scenarios=scenarios, settings=settings,
                         timings=timings)


@dataclass(frozen=True)
class BookVarInputs:
    """What a book VaR run prices: the book ``rows``, the ``snapshot`` and its local vol ``grid``, the
    ``scenarios``, the pricing ``method`` and the seconds spent building them (``seconds``)."""

    rows: list
    snapshot: object
    grid: LocalVolGrid
    scenarios: Scenarios
    method: object
    seconds: float


def book_var_inputs(*, quotes=None, market=None, book=None, spot: float | None = None, method: str = "pde",
                    scenarios: int | Scenarios = 100, history=None, horizon_days: int = 10, seed: int = 0,
                    paths: int | None = None, **scenario_options) -> BookVarInputs:
    """The inputs of ``shoals book-var`` from files: the market of ``quotes`` (calibrated) or ``market`` (default
    the embedded example, as :func:`shoals.risk.run.run_book`), the ``book`` (default the embedded 150-trade
    book), its local vol grid, and ``scenarios`` (a :class:`Scenarios`, or a count of
    :func:`simulated_scenarios` with ``scenario_options`` and ``seed``) or the overlapping windows of a daily
    ``history`` file (:func:`historical_scenarios`), over ``horizon_days``; ``method`` ``"pde"`` or ``"mc"``
    (:func:`shoals.risk.run.pricing_method`)."""
    clock = time.perf_counter()
    pricing = pricing_method(method, seed=seed, paths=paths)
    snapshot, _, _ = market_stage(quotes, market, spot)
    rows, (grid, _) = book_and_local_vol(book, snapshot)
    if history is not None:
        scenarios = historical_scenarios(history, snapshot, horizon_days=horizon_days, **scenario_options)
    elif not isinstance(scenarios, Scenarios):
        scenarios = simulated_scenarios(snapshot, scenarios, horizon_days=horizon_days, seed=seed,
                                        **scenario_options)
    return BookVarInputs(rows=rows, snapshot=snapshot, grid=grid, scenarios=scenarios, method=pricing,
                         seconds=time.perf_counter() - clock)

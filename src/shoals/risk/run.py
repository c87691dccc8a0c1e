"""The whole book pipeline (``shoals run``): quotes -> forwards -> SVI surface -> arbitrage report -> Dupire
local vol -> every trade priced -> delta, gamma, theta per trade -> vega ladder by expiry (bump and AAD) ->
market-quote vega -> book aggregation.

Fan-out.  The book is cut into chunks of one instrument type (and, with the ladder, one maturity band:
:func:`ladder_bands`) by estimated cost
(:func:`shoals.execution.chunk_by_cost`: the chunks never depend on the executor or its worker count), and
each chunk is priced by :func:`price_chunk` on an executor; the market (snapshot, base local vol grid and the
bumped grids of the ladder) is the executor's ``shared`` object, shipped once per worker.  Each chunk
returns its per-trade table, its trades' values under every bumped grid, and its share of the book value's
gradient with respect to the local vol nodes; the parent sums the gradients in chunk order, so every
number is identical whatever the executor.

Vega.  For the trades priced by finite differences, the ladder is computed on each trade's base grids
(:class:`shoals.methods.pde_plan.PdePlan`) by central bumps of one vol point per pillar and by one
reverse-mode pass (:mod:`shoals.greeks.vega_ladder`).  Trades priced by Monte Carlo (``method="mc"``, or
a cliquet with a global floor/cap under the PDE method) get the bump ladder by repricing with the same
random numbers, and no AAD ladder (reverse mode through the path simulation is not built); American options
get the bump ladder only (:data:`AAD_EXCLUDED`): the summary says how many trades are bump-only.  The
per-trade ``vega`` column is the sum of the trade's bump ladder, i.e. the central difference for a parallel
move of every slice's ATM vol (shape kept in total variance).  A pillar's bump leaves the local vol unchanged
before the previous pillar, so a chunk whose trades all mature by then keeps its base values for that bump
without solving (exactly what the solve would return: :func:`~shoals.greeks.vega_ladder.unchanged_until`,
per step :meth:`PdePlan.bump_window <shoals.methods.pde_plan.PdePlan.bump_window>`);
the maturity bands make such chunks (the example's warm run: 44.6 s -> 29.0 s).  In a chunk with an AAD
pass, each bump is solved only over the steps it changes, exactly (:meth:`PdePlan.ladder_values
<shoals.methods.pde_plan.PdePlan.ladder_values>`; the example's warm run 15.5 s -> ~11 s).

Market-quote vega needs quotes fitted by SVI: with a market file, or a surface of another slice model, it is
skipped and ``summary["quote_vega"]`` says why.

Checkpoint.  With ``checkpoint=`` each chunk's result is stored as it completes and ``resume=True`` prices
only the chunks an interrupted run did not finish (:mod:`shoals.execution.checkpoint`, docs/run.md).

Validation: tests/consistency/test_run_pipeline.py (ladder agreement, broken rows, serial == processes),
tests/unit/test_cli_run.py, tests/execution/test_checkpoint.py (interrupted then resumed == uninterrupted).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from shoals.data import path as example_path
from shoals.errors import InputError, ShoalsError
from shoals.execution import ThreadExecutor, chunk_by_cost, cost_sorted_order
from shoals.execution.checkpoint import (
    checkpointed_map,
    file_digest,
    object_digest,
    open_checkpoint,
)
from shoals.greeks.vega_ladder import (
    VOL_POINT,
    bumped_vol_grids,
    ladder_from_bumps,
    surface_gradient,
)
from shoals.instruments import stack
from shoals.io.book import BookRow, read_book
from shoals.market.local_vol import LocalVolGrid, build_local_vol
from shoals.market.svi import SVIParams
from shoals.methods import FiniteDifference, MonteCarlo, stream_of
from shoals.risk.book import OUTPUT_COLUMNS, Auto, first_method, price_book, solved_book
from shoals.risk.run_result import RunResult

#: The embedded example: the original pipeline's synthetic market (spot 100) and its 150-trade exotic book.
EXAMPLE_QUOTES = "seed_quotes.csv"
EXAMPLE_BOOK = "seed_book.csv"
EXAMPLE_SPOT = 100.0
#: Relative cost of one trade per instrument type at its default grid (rows x nodes x steps against a European's
#: 241 x 200; the example book's families measured 2.4, 14, 19, 19 ms per barrier, Asian, lookback, cliquet
#: trade): the chunking weight.
TRADE_COST = {"european": 1.0, "american": 1.0, "barrier": 2.8, "lookback": 22.0, "asian": 16.0, "cliquet": 22.0}
#: Largest estimated cost of a chunk: ~100 path-dependent trades, so the example book is one chunk per type and
#: maturity band.
CHUNK_COST = 2048.0
#: Maturity bands per instrument type when the vega ladder is on (:func:`ladder_bands`): two, one cut (a third
#: band saved ~2-4 s more of a ~29 s warm run of the example and cost ~20-35 s more compilation on a first run).
LADDER_BANDS = 2
METHODS = ("pde", "mc")
#: Instruments left out of the AAD ladder (bump ladder only): reverse mode through the early-exercise
#: projection disagreed with finite differences of the same discrete solve on the SPX 2011 surface
#: (-22.0 vs -1.21 along a random vol direction; Europeans agree to 1e-8 there), so it is not trusted yet.
AAD_EXCLUDED = ("american",)


@dataclass(frozen=True)
class ChunkTask:
    """Trades of one instrument type priced together (indices into the book)."""

    indices: tuple
    rows: tuple


@dataclass(frozen=True)
class SharedMarket:
    """What every chunk needs, shipped once per worker: the snapshot, the base local vol grid, the ladder's
    bumped vol nodes (2P, nt, ns) or None, the pricing method and whether to run the AAD pass."""

    snapshot: object
    local_vol: LocalVolGrid
    bumped_vols: np.ndarray | None
    method: object
    aad: bool


@dataclass(frozen=True)
class ChunkResult:
    """One chunk priced: ``frame`` (the book table of its trades), ``bump_values`` (trades, 2P) under the
    bumped grids (NaN where not computed), ``aad`` (trades,) True where the trade is in ``vol_gradient``, the
    chunk's share of d(book value)/d(local vol nodes) (None without AAD)."""

    frame: pd.DataFrame
    bump_values: np.ndarray | None
    aad: np.ndarray
    vol_gradient: np.ndarray | None


def pricing_method(name: str, *, seed: int = 0, paths: int | None = None):
    """The method of a run: ``pde`` (finite differences, Monte Carlo where the PDE declines a trade) or ``mc``
    (Monte Carlo with pathwise/likelihood-ratio Greeks)."""
    if name == "pde":
        return Auto(methods=(FiniteDifference(vega=False), MonteCarlo(seed=seed, greeks=True)))
    if name == "mc":
        return MonteCarlo(seed=seed, greeks=True, **({} if paths is None else {"paths": paths}))
    raise InputError(f"unknown method {name!r}; use one of {', '.join(METHODS)}", field="method", value=name)


def price_chunk(task: ChunkTask, shared: SharedMarket) -> ChunkResult:
    """Price one chunk: the base table (statuses, per-trade value and Greeks), then, with ``bumped_vols``,
    each priced trade under every bumped grid on its base grids and, with ``aad``, the chunk's weighted
    gradient with respect to the local vol nodes (weights quantity x notional)."""
    rows = list(task.rows)
    solved = _solved_by_adjoint(rows, shared)
    if solved is not None:
        return solved
    frame = price_book(rows, shared.method, market=shared.snapshot, local_vol=shared.local_vol)
    count = len(rows)
    aad = np.zeros(count, dtype=bool)
    if shared.bumped_vols is None:
        return ChunkResult(frame=frame, bump_values=None, aad=aad, vol_gradient=None)
    bump_values = np.full((count, shared.bumped_vols.shape[0]), np.nan)
    gradient = np.zeros(np.shape(shared.local_vol.vols)) if shared.aad else None
    ok = (frame["status"] == "ok").to_numpy()
    for method_name in ("finite-difference", "monte-carlo"):
        members = np.flatnonzero(ok & (frame["method"] == method_name).to_numpy())
        if members.size == 0:
            continue
        contract = stack([rows[i].contract for i in members])
        if method_name == "finite-difference":
            fd = finite_difference_of(shared.method)
            plan, _ = fd.plan(contract, shared.snapshot, local_vol=shared.local_vol)
            weights = _weights([rows[i] for i in members])
            adjoint = _by_adjoint(rows[members[0]], shared)
            if adjoint and np.all(weights != 0.0):
                # One gradient pass, then each bump solved only over the steps it changes (exact: PdePlan).
                ladder = plan.ladder_values(weights, shared.bumped_vols)
                bump_values[members] = ladder.bumped
                gradient = gradient + ladder.gradient
            else:
                # A bump that changes no vol node these trades' solves read leaves their values as they are.
                base = frame["price"].to_numpy(dtype=np.float64)[members]
                bump_values[members] = np.stack([base if plan.bump_window(v) is None else np.asarray(plan.values(v))
                                                 for v in shared.bumped_vols], axis=1)
                if adjoint:
                    gradient = gradient + np.asarray(plan.value_and_gradient(weights)[1])
            aad[members] = adjoint
        else:
            mc = replace(_monte_carlo(shared.method), greeks=False)
            streams = [stream_of(rows[i].id) for i in members]
            bump_values[members] = np.stack(
                [np.asarray(mc.price(contract, shared.snapshot, streams=streams,
                                     local_vol=replace(shared.local_vol, vols=v)).value)
                 for v in shared.bumped_vols], axis=1)
    return ChunkResult(frame=frame, bump_values=bump_values, aad=aad, vol_gradient=gradient)


def _solved_by_adjoint(rows: list[BookRow], shared: SharedMarket) -> ChunkResult | None:
    """A chunk priced by its vega ladder's reverse-mode pass alone (:meth:`PdePlan.ladder_values`): the pass's
    forward solve gives the base prices and spot Greeks, one solve fewer than :func:`price_book` then the
    ladder.  None where that does not apply, and :func:`price_chunk` goes the long way: no ladder by AAD, a
    type excluded from AAD or not priced by finite differences first, a row :func:`price_book` reports, zero
    weights, an error while planning or solving, or a non-finite price (:func:`price_book` then isolates the
    failing rows)."""
    if shared.bumped_vols is None or not _by_adjoint(rows[0], shared):
        return None
    method = first_method(rows, shared.method, shared.snapshot)
    weights = _weights(rows)
    if not isinstance(method, FiniteDifference) or not np.all(weights != 0.0):
        return None
    try:
        plan, _ = method.plan(stack([row.contract for row in rows]), shared.snapshot, local_vol=shared.local_vol)
        ladder = plan.ladder_values(weights, shared.bumped_vols)
    except ShoalsError:
        return None
    frame = solved_book(rows, method, plan.greeks(ladder.rows))
    if not (frame["status"] == "ok").all():
        return None
    return ChunkResult(frame=frame, bump_values=ladder.bumped, aad=np.ones(len(rows), dtype=bool),
                       vol_gradient=ladder.gradient)


def _weights(rows: list[BookRow]) -> np.ndarray:
    """The book weights of ``rows`` (quantity x notional): the AAD ladder's weights of the trade values."""
    return np.array([row.quantity * row.notional for row in rows], dtype=np.float64)


def _by_adjoint(row: BookRow, shared: SharedMarket) -> bool:
    """Whether trades of ``row``'s type take their vega ladder's gradient by reverse mode in this run."""
    return shared.aad and row.instrument not in AAD_EXCLUDED


def finite_difference_of(method) -> FiniteDifference:
    """The :class:`FiniteDifference` of a run's method (itself, or the member of an :class:`Auto`)."""
    if isinstance(method, FiniteDifference):
        return method
    return next(m for m in method.methods if isinstance(m, FiniteDifference))


def _monte_carlo(method) -> MonteCarlo:
    if isinstance(method, MonteCarlo):
        return method
    return next(m for m in method.methods if isinstance(m, MonteCarlo))


def book_chunks(rows: list[BookRow], *, max_cost: float | None = None, bands=()) -> list[ChunkTask]:
    """Chunks of one instrument type each (book order inside a type), cut by :func:`chunk_by_cost` with
    :data:`TRADE_COST` and ``max_cost`` (default :data:`CHUNK_COST`); invalid rows (unknown instrument) form
    their own chunk so that they are reported.  With ``bands`` (increasing maturities, :func:`ladder_bands`),
    each type's trades are chunked by maturity band: up to the first, then up to the next, ..., after the last."""
    max_cost = CHUNK_COST if max_cost is None else max_cost
    by_type: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        kind = row.instrument if row.error is None else ""
        band = int(np.searchsorted(bands, _maturity(row), side="left")) if kind else 0
        by_type.setdefault((kind, band), []).append(i)
    tasks = []
    for members in by_type.values():
        costs = [trade_cost(rows[i]) for i in members]
        for chunk in chunk_by_cost(costs, max_cost=max_cost):
            indices = tuple(members[j] for j in chunk)
            tasks.append(ChunkTask(indices=indices, rows=tuple(rows[i] for i in indices)))
    return tasks


def _maturity(row: BookRow) -> float:
    return float(np.max(row.contract.maturity))


def ladder_bands(rows: list[BookRow], expiries, *, count: int | None = None) -> tuple:
    """Maturities (expiries of the surface, increasing) at which :func:`book_chunks` cuts each type into
    maturity bands for the vega ladder: at most ``count`` - 1 cuts (default :data:`LADDER_BANDS`).

    The bump of pillar i leaves the trades maturing by T_{i-1} unchanged
    (:func:`~shoals.greeks.vega_ladder.unchanged_until`), so a chunk of trades maturing by a cut T_j skips the
    bumped solves of every pillar i with T_{i-1} >= T_j.  The cuts maximise the estimated cost saved, the sum
    over bands of the band's :func:`trade_cost` x #{i : T_{i-1} >= its upper cut}; cuts that save nothing are
    left out.  Each band is one more compiled shape per type (measured on the example book, warm / first run:
    no cut 44.6 / 103 s, one 29.0 / 125 s, two 25.4 / 146 s, seven 24.6 / 250 s)."""
    count = LADDER_BANDS if count is None else count
    expiries = np.sort(np.asarray(expiries, dtype=np.float64))
    valid = [r for r in rows if r.error is None]
    if not valid or count < 2:
        return ()
    maturity = np.array([_maturity(r) for r in valid])
    cost = np.array([trade_cost(r) for r in valid])
    skipped = {cut: np.sum(expiries[:-1] >= cut) for cut in expiries}

    def saved(cuts):
        lower = -np.inf
        total = 0.0
        for cut in cuts:
            total += cost[(maturity > lower) & (maturity <= cut)].sum() * skipped[cut]
            lower = cut
        return total

    options = [()] + [cuts for size in range(1, count) for cuts in itertools.combinations(expiries, size)]
    best = max(options, key=lambda cuts: (saved(cuts), -len(cuts)))
    return tuple(float(cut) for cut in best)


def trade_cost(row: BookRow) -> float:
    """A row's estimated pricing cost (:data:`TRADE_COST`; 1 for an invalid row): the chunking weight."""
    return TRADE_COST.get(row.instrument, 1.0) if row.error is None else 1.0


def _stage(progress, name: str, done: int = 0, total: int = 1):
    if progress is not None:
        progress(name, done, total)


def run_book(*, quotes=None, market=None, book=None, spot: float | None = None, method: str = "pde",
             executor=None, vega: bool = True, aad: bool = True, seed: int = 0, paths: int | None = None,
             quote_risk: bool = True, progress=None, checkpoint=None, resume: bool = False,
             model: str = "svi") -> RunResult:
    """Run the book pipeline and return a :class:`RunResult`.

    ``quotes`` (CSV/Parquet chain; default the embedded example with spot 100) are calibrated with the slice
    ``model`` ("svi" or "spline", :func:`shoals.calibration.surface.calibrate_surface`) unless a ``market``
    file (or :class:`MarketSnapshot`) is given; ``book`` (BOOK_SCHEMA.md file, default the embedded
    150-trade book); ``method`` ``"pde"`` or ``"mc"``; ``executor`` (default: a :class:`ThreadExecutor`, one
    thread per core, closed at the end: the solves release the GIL, and the numbers are those of every
    other executor; the example's warm run ~13-15 s serial, ~11 s on two threads); ``vega`` the ladder by
    bumps, ``aad`` also by reverse mode (PDE trades); ``seed`` / ``paths`` for Monte Carlo.  ``progress(stage,
    done, total)`` is called as stages advance.  File-level problems raise :class:`InputError`; a bad trade
    only gets its ``status``.

    ``checkpoint`` (a folder): each chunk's :class:`ChunkResult` is stored there as it completes
    (:mod:`shoals.execution.checkpoint`, atomic files), with a manifest of the run's inputs (digests of the
    book, quotes or market files, the options).  ``resume=True`` reuses the chunks stored by an interrupted
    run with the same inputs (else :class:`InputError` naming the field that differs) and prices only the
    others, with any executor; the result is identical to that of an uninterrupted run, and
    ``summary["checkpoint"]`` counts the chunks reused.
    Validation: tests/execution/test_checkpoint.py (interrupted then resumed == uninterrupted, recomputed
    chunks counted), tests/unit/test_cli_run.py.
    """
    timings: dict[str, float] = {}
    own_threads = executor is None
    executor = ThreadExecutor() if own_threads else executor
    base_method = pricing_method(method, seed=seed, paths=paths)
    store = None
    if checkpoint is not None:
        store = open_checkpoint(checkpoint, resume=resume, inputs=_run_inputs(
            quotes=quotes, market=market, book=book, spot=spot, method=method, vega=vega, aad=aad, seed=seed,
            paths=paths, model=model))
    elif resume:
        raise InputError("resume needs the checkpoint folder of the interrupted run", field="checkpoint")

    clock = time.perf_counter()
    _stage(progress, "market")
    snapshot, calibration, arbitrage = market_stage(quotes, market, spot, model=model)
    timings["market"] = time.perf_counter() - clock

    clock = time.perf_counter()
    rows, (grid, grid_report) = book_and_local_vol(book, snapshot)
    bumped = bumped_vol_grids(snapshot, grid) if vega else None
    timings["local_vol"] = time.perf_counter() - clock

    clock = time.perf_counter()
    tasks = book_chunks(rows, bands=ladder_bands(rows, snapshot.surface.expiries) if vega else ())
    shared = SharedMarket(snapshot=snapshot, local_vol=grid, bumped_vols=bumped, method=base_method,
                          aad=bool(vega and aad and method == "pde"))
    _stage(progress, "pricing", 0, len(tasks))
    # The costliest chunks start first (load balance across workers); results come back in task order.
    order = cost_sorted_order([sum(trade_cost(r) for r in task.rows) for task in tasks])
    report = lambda finished, total: _stage(progress, "pricing", finished, total)
    try:
        if store is None:
            results = executor.map(price_chunk, tasks, shared=shared, order=order, progress=report)
        else:
            results, reused = checkpointed_map(executor, price_chunk, tasks, keys=[chunk_key(t) for t in tasks],
                                               checkpoint=store, shared=shared, order=order, progress=report)
    finally:
        if own_threads:
            executor.close()
    timings["pricing"] = time.perf_counter() - clock

    clock = time.perf_counter()
    trades, by_trade, ladder, gradient = _assemble(rows, tasks, results, snapshot, grid, vega)
    quote_vega, quote_vega_note = _market_quote_vega(calibration, gradient, quote_risk)
    timings["aggregation"] = time.perf_counter() - clock
    by_type = book_by_type(trades)
    summary = _summary(trades, by_type, ladder, results, method, executor, timings, vega, shared.aad)
    summary["quote_vega"] = quote_vega_note
    if store is not None:
        summary["checkpoint"] = {"folder": str(store.folder), "chunks": len(tasks), "reused": reused}
    return RunResult(trades=trades, ladder=ladder, ladder_by_trade=by_trade, by_type=by_type, summary=summary,
                     snapshot=snapshot, local_vol=grid, local_vol_report=grid_report, calibration=calibration,
                     arbitrage=arbitrage, quote_vega=quote_vega, timings=timings)


def _market_quote_vega(calibration, gradient, enabled: bool):
    """Market-quote vega (:func:`shoals.greeks.quote_risk.quote_vega`) and the summary's note on it: it needs
    quotes fitted by SVI (a calibration whose surface is SVI) and the AAD gradient of the book; otherwise
    ``(None, why not)``."""
    if not enabled:
        return None, "not requested"
    if calibration is None:
        return None, "not computed: the market was given as a file (no quotes were fitted)"
    if gradient is None:
        return None, "not computed: needs the AAD ladder (vega and aad on, trades priced by the PDE)"
    if not isinstance(gradient.params, SVIParams):
        return None, (f"not computed: the surface is a {type(gradient.params).__name__} surface; market-quote vega "
                      "goes through an SVI fit")
    from shoals.greeks.quote_risk import quote_vega

    return quote_vega(calibration, gradient.params), "computed (d book / d quoted mid implied vol through the SVI fit)"


def chunk_key(task: ChunkTask) -> str:
    """What identifies a chunk in a checkpoint: a digest of its book indices and trade ids (the chunking is
    deterministic, so an unchanged book gives the same chunks)."""
    identity = json.dumps([list(task.indices), [row.id for row in task.rows]])
    return hashlib.sha256(identity.encode()).hexdigest()


def _run_inputs(*, quotes, market, book, spot, method, vega, aad, seed, paths, model="svi") -> dict:
    """What a checkpoint's manifest records of a run (a resumed run must match it): digests of the book and
    of the quotes or market (a file's bytes, or the pickle of an in-memory object), the options that change
    a chunk's numbers, the chunk size and the Shoals version.  The executor is not recorded: every executor
    gives the same numbers."""
    from shoals import __version__

    if quotes is None and market is None:
        quotes = example_path(EXAMPLE_QUOTES)
    return {"shoals": __version__, "book": _digest(example_path(EXAMPLE_BOOK) if book is None else book),
            "quotes": None if quotes is None else _digest(quotes),
            "market": None if market is None else _digest(market), "spot": spot, "method": method, "vega": vega,
            "aad": aad, "seed": seed, "paths": paths, "model": None if market is not None else model,
            "chunk_cost": CHUNK_COST}


def _digest(source) -> str | None:
    # A path that is no file gets None: reading it reports the problem (an InputError naming the file).
    if isinstance(source, str | os.PathLike):
        return file_digest(source) if os.path.isfile(source) else None
    return object_digest(source)


def book_and_local_vol(book, snapshot) -> tuple[list[BookRow], tuple]:
    """The rows of ``book`` (default the embedded example) and :func:`build_local_vol` of ``snapshot`` up to the
    longest of the book's maturities and the surface's last expiry: ``(rows, (grid, report))``."""
    rows = read_book(book if book is not None else example_path(EXAMPLE_BOOK))
    maturities = [r.fields["maturity"] for r in rows if r.error is None and "maturity" in r.fields]
    horizon = max(maturities + [float(np.asarray(snapshot.surface.expiries)[-1])])
    return rows, build_local_vol(snapshot, t_max=horizon)


def market_stage(quotes, market, spot, *, model: str = "svi"):
    """The market of a run: ``market`` (a file or :class:`MarketSnapshot`) as given, or ``quotes`` (default
    the embedded example, spot 100) calibrated with the slice ``model`` ("svi" or "spline").  Returns ``(snapshot, calibration or None, arbitrage report)``."""
    from shoals.arbitrage.checks import check_arbitrage
    from shoals.market.snapshot import MarketSnapshot

    if market is not None:
        if quotes is not None:
            raise InputError("give quotes or a market, not both", field="market")
        if isinstance(market, MarketSnapshot):
            snapshot = market
        else:
            from shoals.io.market import read_market

            snapshot = read_market(market)
        return snapshot, None, check_arbitrage(snapshot.surface)
    from shoals.calibration.surface import calibrate_surface
    from shoals.io.quotes import read_forwards, read_quotes

    if quotes is None:
        quotes = example_path(EXAMPLE_QUOTES)
        spot = EXAMPLE_SPOT if spot is None else spot
    table, cleaning = read_quotes(quotes, spot=spot)
    given = read_forwards(quotes, spot=spot)
    calibration = calibrate_surface(table, cleaning, spot=spot, given_forwards=given, model=model)
    return calibration.snapshot, calibration, calibration.arbitrage


def _assemble(rows, tasks, results, snapshot, grid, vega):
    """Per-trade table in book order, per-trade bump ladder, book ladder and the AAD surface gradient."""
    expiries = np.asarray(snapshot.surface.expiries, dtype=np.float64)
    frame = pd.concat([r.frame.set_index(pd.Index(t.indices)) for t, r in zip(tasks, results)]).sort_index()
    frame = frame.reset_index(drop=True)
    frame["instrument"] = [r.instrument for r in rows]
    frame["quantity"] = [r.quantity for r in rows]
    frame["notional"] = [r.notional for r in rows]
    scale = frame["quantity"].to_numpy(dtype=np.float64) * frame["notional"].to_numpy(dtype=np.float64)
    columns = [f"{t:g}" for t in expiries]
    by_trade = pd.DataFrame(index=pd.Index(frame["id"], name="id"))
    ladder = pd.DataFrame({"expiry": expiries, "vega_bump": np.nan, "vega_aad": np.nan})
    gradient = None
    if vega:
        values = np.full((len(rows), 2 * expiries.size), np.nan)
        by_aad = np.zeros(len(rows), dtype=bool)
        for task, result in zip(tasks, results):
            values[list(task.indices)] = result.bump_values
            by_aad[list(task.indices)] = result.aad
        per_trade = ladder_from_bumps(values, size=VOL_POINT)
        by_trade = pd.DataFrame(per_trade, index=pd.Index(frame["id"], name="id"), columns=columns)
        frame["vega"] = per_trade.sum(axis=1)
        ladder["vega_bump"] = np.nansum(per_trade * scale[:, None], axis=0)
        gradients = [r.vol_gradient for r in results if r.vol_gradient is not None]
        if gradients:
            gradient = surface_gradient(snapshot, grid, sum(gradients[1:], gradients[0]))   # in chunk order
            # Bump-only trades (Monte Carlo, American) enter the AAD column with their bump ladder, so that both
            # columns are book totals and their difference compares the AAD trades alone.
            bump_only = np.nansum(per_trade[~by_aad] * scale[~by_aad, None], axis=0)
            ladder["vega_aad"] = gradient.ladder + bump_only
    frame.loc[frame["status"] != "ok", "vega"] = np.nan
    return frame[list(OUTPUT_COLUMNS) + ["instrument", "quantity", "notional"]], by_trade, ladder, gradient


GREEK_TOTALS = ("npv", "delta", "gamma", "theta", "vega")


def _ladder_difference(ladder: pd.DataFrame) -> float | None:
    """max |AAD - bump| over the pillars as a share of the largest |bump| bucket (None when empty)."""
    bump, aad = ladder["vega_bump"].to_numpy(dtype=float), ladder["vega_aad"].to_numpy(dtype=float)
    largest = np.nanmax(np.abs(bump)) if np.isfinite(bump).any() else 0.0
    if not largest > 0.0 or not np.isfinite(aad).any():
        return None
    return float(np.nanmax(np.abs(aad - bump)) / largest)


def book_by_type(trades: pd.DataFrame) -> pd.DataFrame:
    """NPV and Greeks by instrument type in book units (per-unit Greeks x quantity x notional), summed over
    the priced trades; ``trades`` and ``failed`` count rows."""
    table = trades.assign(instrument=trades["instrument"].fillna("(invalid)"))
    scale = table["quantity"].astype(float) * table["notional"].astype(float)
    ok = table["status"] == "ok"
    records = []
    for kind, group in table.groupby("instrument", sort=True):
        good = group[ok.loc[group.index]]
        record = {"instrument": kind, "trades": len(group), "failed": int((~ok.loc[group.index]).sum()),
                  "npv": float(good["npv"].sum())}
        for greek in GREEK_TOTALS[1:]:
            record[greek] = float((good[greek] * scale.loc[good.index]).sum(min_count=1))
        records.append(record)
    return pd.DataFrame.from_records(records, columns=["instrument", "trades", "failed", *GREEK_TOTALS])


def _summary(trades, by_type, ladder, results, method, executor, timings, vega, aad) -> dict:
    ok = trades["status"] == "ok"
    totals = {greek: float(by_type[greek].sum(min_count=1)) for greek in GREEK_TOTALS}
    aad_trades = int(sum(int(r.aad.sum()) for r in results))
    priced = int(ok.sum())
    return {
        "trades": len(trades), "ok": priced, "failed": int((~ok).sum()),
        "method": method, "executor": getattr(executor, "name", type(executor).__name__),
        "workers": int(getattr(executor, "workers", 1)),
        **totals,
        "methods": {str(k): int(v) for k, v in trades.loc[ok, "method"].value_counts().items()},
        "ladder": {"pillars": ladder["expiry"].tolist(), "bump": "central, one vol point of ATM vol per pillar",
                   "vega_bump_total": float(np.nansum(ladder["vega_bump"])) if vega else None,
                   "vega_aad_total": float(np.nansum(ladder["vega_aad"])) if aad else None,
                   "bump_aad_difference": _ladder_difference(ladder) if aad else None,
                   "aad_trades": aad_trades, "bump_only_trades": priced - aad_trades if vega else 0},
        "units": "base units: vega per 1.00 of vol, theta per year; book totals include quantity x notional",
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }

"""Benchmark: batched finite differences (Shoals) vs QuantLib's FdBlackScholesBarrierEngine.

1,000 continuous barrier options (random down/up, in/out, call/put, strikes 80-120, barriers 70-95 /
105-130, maturities 0.25-2 y, vols 0.15-0.45, dividend 0 or 2 %; spot 100, r = 3 %) at 1e-3 accuracy:

1. accuracy: on a sample of ``--sample`` options, each method's grid is refined along a ladder until its
   largest error against QuantLib's AnalyticBarrierEngine, |error| / max(1, |price|) (absolute below a
   price of 1, relative above; spot 100), is <= ``--accuracy`` at the given quantiles of the sample
   (``--quantiles``: 1.0 = the largest error, 0.95 = all but the worst 5 %; QuantLib's engine converges at
   first order on a few options, near-barrier and knock-in cases, so its largest error falls slowly);
2. timing, warm, medians of ``--repeats`` runs: Shoals prices the whole book in one batched call (value,
   delta, gamma, theta; no vega), QuantLib prices ``--quantlib-options`` of the options one by one at its
   grid (per-option time = total / count);
3. the per-option ratio QuantLib / Shoals is printed (goal >= 10).

The seed-book section (``--book``, on by default): the seed's 150-trade exotic book
(:func:`shoals.data.synthetic.seed_book`: down-and-out and up-and-in barriers, fixed lookbacks, monthly
Asians and cliquets, maturities 0.25-5 y) under the Dupire local vol of the seed's synthetic market
(calibrated from :func:`shoals.data.synthetic.seed_quotes`, not timed), with value, delta, gamma and theta
(no vega):

1. the default grids (per instrument type, ``FiniteDifference.grid_for``) through :func:`shoals.price_book`
   (serial), warm median;
2. accuracy, "300 x 300-equivalent": each family's errors |V - V_ref| / max(|V_ref|, 0.01) against a
   reference at ``REFERENCE_GRID`` with twice the state nodes; the yardstick is the same engine at
   ``YARDSTICK_GRID`` (301 nodes x 300 steps, with the state grids of ``YARDSTICK_STATE``; the same grid with
   the defaults' state grids is printed beside it); for each family the cheapest (rows x nodes x steps) grid
   of ``BOOK_LADDER`` with state nodes of ``STATE_LADDER`` whose largest error is no larger than the
   yardstick's is chosen, and the default grids' errors are printed beside it.  For context, the seed's own
   grid layout (300 nodes uniform in S on [1, 300], 300 steps) on 30 Europeans under the same local vol;
3. the book at the chosen grids, each family in two chunks by maturity (the run's maturity bands), largest
   first: serially, on ``--workers`` threads (:class:`shoals.execution.ThreadExecutor`) and on ``--workers``
   worker processes pinned to a core each (:class:`shoals.execution.ProcessExecutor`, started and warmed
   before timing; tasks and results pickled in the timing), warm medians (goal <= 0.5 s);
4. the seed's own PDE time per trade (``seed_pipeline_native.py --mode pde``, one trade, extrapolated).

Run: ``python benchmarks/bench_pde.py`` (2 cores; takes a few minutes).  Sections are functions of :func:`main`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import QuantLib as ql
from common import median_time

import shoals
from shoals.instruments import Barrier
from shoals.market import FlatMarket
from shoals.methods.finite_difference import FiniteDifference

SPOT, RATE = 100.0, 0.03
TODAY = ql.Date(2, 1, 2024)
SHOALS_LADDER = [(61, 40), (81, 50), (101, 60), (121, 80), (161, 100), (201, 150), (241, 200), (321, 300)]
QUANTLIB_LADDER = [(50, 100), (100, 200), (200, 400), (300, 600), (400, 800), (600, 1200), (800, 1600)]
QL_TYPES = {(False, False): ql.Barrier.DownOut, (False, True): ql.Barrier.DownIn,
            (True, False): ql.Barrier.UpOut, (True, True): ql.Barrier.UpIn}


def barrier_book(count: int, seed: int = 7) -> dict:
    """Random continuous barrier options (field arrays; maturities in whole days for QuantLib dates)."""
    rng = np.random.default_rng(seed)
    is_up = rng.random(count) < 0.5
    return {"strike": rng.uniform(80.0, 120.0, count),
            "maturity": np.round(rng.uniform(0.25, 2.0, count) * 365.0) / 365.0,
            "barrier": np.where(is_up, rng.uniform(105.0, 130.0, count), rng.uniform(70.0, 95.0, count)),
            "is_up": is_up, "is_knock_in": rng.random(count) < 0.5, "is_call": rng.random(count) < 0.5,
            "vol": rng.uniform(0.15, 0.45, count), "dividend": rng.choice([0.0, 0.02], count)}


def take(book: dict, rows) -> dict:
    return {name: values[rows] for name, values in book.items()}


def shoals_inputs(book: dict):
    contract = Barrier(strike=book["strike"], maturity=book["maturity"], barrier=book["barrier"],
                       is_up=book["is_up"], is_knock_in=book["is_knock_in"], is_call=book["is_call"])
    return contract, FlatMarket(spot=SPOT, rate=RATE, vol=book["vol"], dividend=book["dividend"])


def quantlib_options(book: dict, engine_factory) -> list:
    """One QuantLib BarrierOption per trade, each with its own flat process and engine."""
    ql.Settings.instance().evaluationDate = TODAY
    day_count = ql.Actual365Fixed()
    options = []
    for i in range(book["strike"].size):
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(SPOT)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, float(book["dividend"][i]), day_count)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, RATE, day_count)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), float(book["vol"][i]),
                                                               day_count)))
        option = ql.BarrierOption(QL_TYPES[(bool(book["is_up"][i]), bool(book["is_knock_in"][i]))],
                                  float(book["barrier"][i]), 0.0,
                                  ql.PlainVanillaPayoff(ql.Option.Call if book["is_call"][i] else ql.Option.Put,
                                                        float(book["strike"][i])),
                                  ql.EuropeanExercise(TODAY + round(book["maturity"][i] * 365.0)))
        option.setPricingEngine(engine_factory(process))
        options.append(option)
    return options


def quantlib_prices(options: list) -> np.ndarray:
    for option in options:
        option.recalculate()
    return np.array([option.NPV() for option in options])


def fd_engine(time_grid: int, space_grid: int):
    return lambda process: ql.FdBlackScholesBarrierEngine(process, time_grid, space_grid)


def shoals_method(space_nodes: int, time_steps: int) -> FiniteDifference:
    return FiniteDifference(space_nodes=space_nodes, time_steps=time_steps, vega=False)


def calibrate_grids(sample: dict, accuracy: float, quantile: float = 1.0):
    """The first grid of each ladder whose error |e| / max(1, |price|) on ``sample``, at ``quantile`` of the
    sample (1.0: the largest), is <= ``accuracy``."""
    exact = quantlib_prices(quantlib_options(sample, ql.AnalyticBarrierEngine))
    contract, market = shoals_inputs(sample)
    chosen = {}
    for name, ladder, prices in (
            ("shoals", SHOALS_LADDER, lambda grid: shoals_method(*grid).price(contract, market).value),
            ("quantlib", QUANTLIB_LADDER, lambda grid: quantlib_prices(quantlib_options(sample, fd_engine(*grid))))):
        for grid in ladder:
            error = np.abs(prices(grid) - exact) / np.maximum(1.0, np.abs(exact))
            print(f"  {name:8s} grid {grid}: max error {error.max():.2e}, 95th pct {np.quantile(error, 0.95):.2e}, "
                  f"median {np.median(error):.2e}")
            if np.quantile(error, quantile) <= accuracy:
                chosen[name] = grid
                break
        else:
            chosen[name] = ladder[-1]
            print(f"  {name}: no grid of the ladder reaches {accuracy:g}; using the finest")
    return chosen["shoals"], chosen["quantlib"]


def barrier_section(count: int, sample_size: int, quantlib_count: int, accuracy: float, repeats: int,
                    quantile: float = 1.0) -> dict:
    """1,000 barrier options at ``accuracy``: grids by refinement, warm median timings, per-option ratio."""
    book = barrier_book(count)
    sample = take(book, np.arange(sample_size))
    print(f"[barrier] grid refinement against AnalyticBarrierEngine on {sample_size} options, accuracy "
          f"{accuracy:g} at quantile {quantile:g} of the errors:")
    shoals_grid, quantlib_grid = calibrate_grids(sample, accuracy, quantile)
    contract, market = shoals_inputs(book)
    method = shoals_method(*shoals_grid)
    shoals_total = median_time(lambda: method.price(contract, market), repeats)
    options = quantlib_options(take(book, np.arange(quantlib_count)), fd_engine(*quantlib_grid))
    quantlib_total = median_time(lambda: quantlib_prices(options), repeats)
    per_shoals, per_quantlib = shoals_total / count, quantlib_total / quantlib_count
    print(f"[barrier] Shoals FD {shoals_grid} nodes x steps: {count} options in {shoals_total:.3f} s "
          f"({per_shoals * 1e3:.3f} ms/option, with delta, gamma, theta)")
    print(f"[barrier] QuantLib FdBlackScholesBarrierEngine {quantlib_grid} t x x: {quantlib_count} options in "
          f"{quantlib_total:.3f} s ({per_quantlib * 1e3:.3f} ms/option, value only)")
    print(f"[barrier] per-option ratio QuantLib / Shoals: {per_quantlib / per_shoals:.1f}x (goal >= 10x)")
    return {"shoals_grid": shoals_grid, "quantlib_grid": quantlib_grid, "shoals_s": shoals_total,
            "quantlib_s_per_option": per_quantlib, "ratio": per_quantlib / per_shoals}


#: Grids (space nodes, time steps) tried for each family of the seed book (in the order of their solves' sizes;
#: the barriers' error comes from the space grid, hence the space-rich grids at the end); the reference is
#: REFERENCE_GRID with twice the default state nodes (the lookback's capped at its stable maximum).
BOOK_LADDER = [(101, 40), (121, 50), (161, 60), (201, 80), (241, 100), (241, 200), (301, 150), (301, 300),
               (401, 100), (381, 120), (341, 150), (361, 150)]
REFERENCE_GRID = (641, 600)
YARDSTICK_GRID = (301, 300)
#: The yardstick's state discretisation: that of the defaults when the yardstick was set (2026-11-22: 31 average
#: nodes, 25 extreme nodes, 21 reset levels at >= 4 steps per period), so that a 301 x 300 grid is a literal 300
#: steps for the 5 y monthly cliquets and the target does not move when the defaults' state grids change.
YARDSTICK_STATE = {"asian": 31, "lookback": 25, "cliquet": 21}
YARDSTICK_PERIOD_STEPS = 4
#: State-node counts tried with each grid of BOOK_LADDER (the default first): the chosen discretisation is the
#: cheapest (rows x nodes x steps) of grid x state nodes whose largest error is no larger than the yardstick's.
STATE_LADDER = {"asian": (41, 35, 31), "lookback": (25, 17, 13, 9), "cliquet": (21, 15, 11)}


def _book_errors(values, reference):
    return np.abs(np.asarray(values) - reference) / np.maximum(np.abs(reference), 1e-2)


def seed_grid_european_errors(snapshot, local_vol, reference_method) -> np.ndarray:
    """The seed's grid layout done right: 300 spot nodes uniform in S on [1, 300] (spot 100), 300 uniform
    Crank-Nicolson steps (the first two implicit), the same Dupire table and kernel, for 30 Europeans
    (maturities 0.25-5 y, strikes 85-115); relative errors against ``reference_method``."""
    import jax.numpy as jnp

    from shoals.instruments import European
    from shoals.kernels.pde import solve_backward, value_and_derivatives
    from shoals.methods.finite_difference import pde_market

    rng = np.random.default_rng(3)
    maturity = np.repeat([0.25, 0.5, 1.0, 2.0, 3.0, 5.0], 5)
    strike = rng.uniform(85.0, 115.0, maturity.size)
    is_call = rng.random(maturity.size) < 0.5
    reference = np.asarray(reference_method.price(European(strike=strike, maturity=maturity, is_call=is_call),
                                                  snapshot, local_vol=local_vol).value)
    market = pde_market(snapshot, maturity, local_vol=local_vol)
    spots = np.linspace(1.0, 300.0, 300)
    x = np.log(np.broadcast_to(spots, (maturity.size, spots.size)))
    payoff = np.maximum(np.where(is_call[:, None], 1.0, -1.0) * (spots[None, :] - strike[:, None]), 0.0)
    count = 300
    start = maturity[None, :] * (1.0 - np.arange(count)[:, None] / count)
    theta = np.where(np.arange(count)[:, None] < 2, 1.0, 0.5) * np.ones((1, maturity.size))
    steps = market.steps(start, np.broadcast_to(maturity / count, start.shape), theta)
    free = jnp.zeros(maturity.size, dtype=bool)
    values = solve_backward(jnp.asarray(payoff), x=jnp.asarray(x), steps=steps, vol=market.vol,
                            lower_dirichlet=free, upper_dirichlet=free)
    value = value_and_derivatives(jnp.asarray(x), values, jnp.log(jnp.asarray(market.spot)))[0]
    return _book_errors(value, reference)


def _price_family(task, shared):
    """Thread task: value, delta, gamma and theta of one chunk of a family on its own grid."""
    method, contract = task
    snapshot, local_vol = shared
    result = method.price(contract, snapshot, local_vol=local_vol)
    return np.stack([result.value] + [result.greeks[name] for name in ("delta", "gamma", "theta")])


def _price_families(tasks, shared):
    """Worker warm-up: every chunk of the book priced once in this worker (each compiles its programs)."""
    return [_price_family(task, shared) for task in tasks]


def seed_book_section(repeats: int, baseline: Path | None, workers: int) -> dict:
    """The seed's 150-trade book under local vol, value + delta + gamma + theta (module docstring)."""
    import jax

    from shoals.calibration.surface import calibrate_surface
    from shoals.data.synthetic import seed_book, seed_quotes
    from shoals.execution import ProcessExecutor, SerialExecutor, ThreadExecutor
    from shoals.instruments import stack
    from shoals.io.quotes import read_quotes
    from shoals.market.local_vol import default_local_vol
    from shoals.methods.fd_path_dependent import STATE_NODE_RANGE, STATE_NODES
    from shoals.risk.book import price_book

    with tempfile.TemporaryDirectory() as folder:
        quotes, book = Path(folder) / "quotes.csv", Path(folder) / "book.csv"
        seed_quotes().to_csv(quotes, index=False)
        seed_book().to_csv(book, index=False)
        snapshot = calibrate_surface(*read_quotes(quotes, spot=100.0), spot=100.0).snapshot
        rows = shoals.read_book(book)
    grid = default_local_vol(snapshot, [r.fields["maturity"] for r in rows])
    kinds = np.array([r.instrument for r in rows])
    families = {kind: stack([r.contract for r in rows if r.instrument == kind]) for kind in dict.fromkeys(kinds)}

    def method(space_time, kind, state_scale=1, state=None):
        if kind in STATE_NODES and state_scale != 1:
            high = STATE_NODE_RANGE[kind][1]
            state = min(STATE_NODES[kind] * state_scale, high) if high else STATE_NODES[kind] * state_scale
        return FiniteDifference(vega=False, space_nodes=space_time[0], time_steps=space_time[1], state_nodes=state)

    def node_steps(candidate, kind, contract):
        """The solve's size, rows x nodes x steps, of a candidate (space, time, state) (planning only)."""
        plan = method(candidate[:2], kind, state=candidate[2]).plan(contract, snapshot, local_vol=grid)[0]
        arguments = plan.arguments
        return int(np.prod(arguments["terminal"].shape)) * int(arguments["steps"].dt.shape[0])

    default = FiniteDifference(vega=False)
    total_default = median_time(lambda: price_book(rows, default, market=snapshot, local_vol=grid), repeats)
    grids = ", ".join(f"{kind} {g.space_nodes} x {g.time_steps}" for kind, g in
                      ((kind, default.grid_for(type(contract))) for kind, contract in families.items()))
    print(f"[seed book] {len(rows)} trades under local vol (value, delta, gamma, theta), default grids ({grids}), "
          f"price_book serial: {total_default:.3f} s warm (median of {repeats})")

    # Accuracy: against a converged reference; the yardstick is the 300 x 300 grid.
    print(f"[seed book] accuracy: |V - V_ref| / max(|V_ref|, 0.01), V_ref at {REFERENCE_GRID[0]} x "
          f"{REFERENCE_GRID[1]} with twice the state nodes")
    seed_grid = seed_grid_european_errors(snapshot, grid, method(REFERENCE_GRID, "european"))
    print(f"[seed book]   the seed's 300 x 300 layout (uniform in S) on 30 Europeans: max {seed_grid.max():.1e}, "
          f"95th pct {np.quantile(seed_grid, 0.95):.1e}")
    chosen = {}
    for kind, contract in families.items():
        reference = np.asarray(method(REFERENCE_GRID, kind, 2).price(contract, snapshot, local_vol=grid).value)
        literal = FiniteDifference(vega=False, space_nodes=YARDSTICK_GRID[0], time_steps=YARDSTICK_GRID[1],
                                   state_nodes=YARDSTICK_STATE.get(kind), period_steps=YARDSTICK_PERIOD_STEPS)
        yardstick = _book_errors(literal.price(contract, snapshot, local_vol=grid).value, reference)
        current = _book_errors(method(YARDSTICK_GRID, kind).price(contract, snapshot, local_vol=grid).value, reference)
        candidates = sorted(((*space_time, state) for space_time in BOOK_LADDER for state in
                             STATE_LADDER.get(kind, (None,))), key=lambda c: node_steps(c, kind, contract))
        for candidate in candidates:
            errors = _book_errors(method(candidate[:2], kind, state=candidate[2]).price(
                contract, snapshot, local_vol=grid).value, reference)
            if errors.max() <= yardstick.max():
                break
        chosen[kind] = (candidate, errors)
        own = _book_errors(default.price(contract, snapshot, local_vol=grid).value, reference)
        print(f"[seed book]   {kind:9s} 300 x 300: max {yardstick.max():.1e} p95 {np.quantile(yardstick, 0.95):.1e}; "
              f"(with today's state grids {current.max():.1e}); "
              f"default grid: max {own.max():.1e} p95 {np.quantile(own, 0.95):.1e} "
              f"({'' if own.max() <= yardstick.max() else 'NOT '}300 x 300-equivalent); "
              f"chosen {candidate[0]} x {candidate[1]}"
              f"{'' if candidate[2] is None else f' ({candidate[2]} state nodes)'}: "
              f"max {errors.max():.1e} p95 {np.quantile(errors, 0.95):.1e}")

    # Timing at the chosen grids: each family cut in two chunks by maturity (as the run cuts each type into
    # maturity bands: the short chunk runs fewer steps), largest first: serially, on threads, on pinned processes.
    tasks, cost = [], []
    for kind, contract in families.items():
        by_maturity = np.argsort(np.asarray(contract.maturity), kind="stable")
        for half in np.array_split(by_maturity, 2):
            chunk = jax.tree_util.tree_map(lambda a, half=half: a[half] if np.ndim(a) else a, contract)
            tasks.append((method(chosen[kind][0][:2], kind, state=chosen[kind][0][2]), chunk))
            cost.append(node_steps(chosen[kind][0], kind, chunk))
    order = list(np.argsort(cost)[::-1])
    shared = (snapshot, grid)
    report = {"trades": len(rows), "default_s": total_default,
              "grids": {kind: list(candidate) for kind, (candidate, _) in chosen.items()}}
    with ThreadExecutor(workers) as threads, ProcessExecutor(workers) as processes:
        processes.map(_price_families, [tasks] * workers, shared=shared)  # start the workers, compile every chunk
        pinned = " (pinned: a core each)" if processes.pinned else ""
        for name, executor in (("serial", SerialExecutor()), (f"threads:{workers}", threads),
                               (f"processes:{workers}", processes)):
            seconds = median_time(lambda executor=executor: executor.map(_price_family, tasks, shared=shared,
                                                                         order=order), repeats)
            report[name] = seconds
            print(f"[seed book] chosen grids, {name}{pinned if executor is processes else ''}: {seconds:.3f} s "
                  f"warm (median of {repeats}; goal <= 0.5 s)")
    if baseline is not None and baseline.exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, str(baseline), "--mode", "pde", "--trade-index", "0"], check=True,
                       capture_output=True)
        per_trade = time.perf_counter() - started
        best = min(report[f"threads:{workers}"], report[f"processes:{workers}"])
        print(f"[seed book] seed pipeline PDE: {per_trade:.2f} s for one trade (300 x 300, proxy payoff; process "
              f"start and its local vol included) -> ~{150 * per_trade:.0f} s for the book; ratio "
              f"{150 * per_trade / best:.0f}x")
        report["seed_s_per_trade"] = per_trade
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--quantlib-options", type=int, default=200)
    parser.add_argument("--accuracy", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantiles", default="1.0,0.95")
    parser.add_argument("--book", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workers", type=int, default=2, help="threads, and processes, for the seed book")
    parser.add_argument("--barriers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--baseline", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                        / "baselines" / "seed_pipeline_native.py")
    args = parser.parse_args(argv)
    if args.book:
        seed_book_section(args.repeats, args.baseline, args.workers)
    if not args.barriers:
        return
    for quantile in (float(q) for q in args.quantiles.split(",")):
        barrier_section(args.count, args.sample, args.quantlib_options, args.accuracy, args.repeats, quantile)


if __name__ == "__main__":
    main()

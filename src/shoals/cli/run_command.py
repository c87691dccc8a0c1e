"""`shoals run`: the whole book pipeline on the embedded example or on given quotes/market and book
(a thin command over :func:`shoals.risk.run.run_book`; outputs by :func:`shoals.reports.outputs.write_run_outputs`).

Register it on a typer app with :func:`register`.
"""

from __future__ import annotations

import math
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoals.cli.common import (
    BookOption,
    MarketOption,
    ModelOption,
    QuotesOption,
    SpotOption,
    SurfaceModel,
    console,
    enable_compilation_cache,
    errors,
    fail,
)

#: The subfolder of --out holding the run's checkpoint (one file per finished chunk, and a manifest).
CHECKPOINT = "checkpoint"
STAGES = {"market": "surface (quotes -> forwards -> SVI -> arbitrage)", "pricing": "pricing + vega ladder (chunks)",
          "report": "outputs and HTML report"}


class RunMethod(str, Enum):
    pde = "pde"
    mc = "mc"


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _totals_table(result) -> Table:
    summary = result.summary
    table = Table(title=f"book: {summary['ok']} of {summary['trades']} trades priced ({summary['method']}, "
                        f"{summary['executor']}); totals include quantity x notional; vega per 1.00 vol, theta per year")
    table.add_column("instrument", no_wrap=True)
    for column in ("trades", "failed", "npv", "delta", "gamma", "theta", "vega"):
        table.add_column(column, justify="right")
    for record in result.by_type.to_dict(orient="records"):
        table.add_row(record["instrument"], str(record["trades"]), str(record["failed"]),
                      *(_number(record[c]) for c in ("npv", "delta", "gamma", "theta", "vega")))
    table.add_row("[bold]total", str(summary["trades"]), str(summary["failed"]),
                  *(f"[bold]{_number(summary[c])}" for c in ("npv", "delta", "gamma", "theta", "vega")))
    return table


def _ladder_table(result) -> Table:
    table = Table(title="vega ladder by expiry pillar (book, per 1.00 of the pillar's ATM vol)")
    for column in ("expiry", "bump", "AAD", "AAD - bump"):
        table.add_column(column, justify="right")
    for record in result.ladder.to_dict(orient="records"):
        table.add_row(f"{record['expiry']:g}", _number(record["vega_bump"]), _number(record["vega_aad"]),
                      _number(record["vega_aad"] - record["vega_bump"]))
    return table


def run(
    quotes: QuotesOption = None,
    market: MarketOption = None,
    book: BookOption = None,
    method: Annotated[RunMethod, typer.Option(
        "--method", help="pde: Crank-Nicolson (Monte Carlo where the PDE declines); mc: Monte Carlo.")] = RunMethod.pde,
    executor: Annotated[str, typer.Option(
        "--executor", help="threads[:N] (default: threads of this process, one per core; the PDE solves run in parallel without copies of the market), serial, processes[:N] (local processes), dask-local[:N] (a local Dask cluster), dask://host:port (a Dask scheduler) or scaler://host:port (an OpenGRIS Scaler scheduler). Identical numbers whatever the executor.")] = "threads",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default shoals-report); finished chunks are checkpointed in its "
                            "checkpoint/ subfolder as they complete.")] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Output folder of an interrupted run: price only the chunks missing from its "
                         "checkpoint/ (same inputs and options required) and write the outputs there.")] = None,
    vega: Annotated[bool, typer.Option("--vega/--no-vega", help="Vega ladder by bump and AAD.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Monte Carlo seed.")] = 0,
    paths: Annotated[int | None, typer.Option("--paths", help="Monte Carlo paths per trade.")] = None,
    spot: SpotOption = None,
    model: ModelOption = SurfaceModel.svi,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with 1 when any trade failed.")] = False,
) -> None:
    """Run the whole book pipeline: quotes -> forwards -> SVI (or --model spline) surface -> arbitrage report -> local vol ->
    every trade priced with delta, gamma, theta -> vega ladder by expiry (bump and AAD) -> book risk ->
    trades.csv/.parquet, ladder.csv, summary.json, surface.json and report.html in --out.  After Ctrl-C or a
    crash, the same command with --resume OUT prices only the chunks not yet in OUT/checkpoint/."""
    from shoals.errors import ShoalsError
    from shoals.execution import executor_from_spec
    from shoals.reports.outputs import write_run_outputs
    from shoals.risk.run import run_book

    enable_compilation_cache()
    started = time.perf_counter()
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        fail(f"--resume {resume} writes its outputs into {resume}; drop --out {out} or give the same folder")
    out = resume if resume is not None else out if out is not None else Path("shoals-report")
    try:
        pool = executor_from_spec(executor)
    except ShoalsError as error:
        fail(str(error))
    with Progress(TextColumn("{task.description:<52}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks = {}

        def report(stage, done, total):
            if stage not in tasks:
                for task in tasks.values():
                    progress.update(task, completed=progress.tasks[task].total)
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=max(total, 1))
            progress.update(tasks[stage], completed=done, total=max(total, 1))

        try:
            with pool:
                result = run_book(quotes=quotes, market=market, book=book, spot=spot, method=method.value,
                                  executor=pool, vega=vega, seed=seed, paths=paths, progress=report,
                                  checkpoint=out / CHECKPOINT, resume=resume is not None, model=model.value)
            report("report", 0, 1)
            clock = time.perf_counter()
            written = write_run_outputs(result, out)
            report_seconds = time.perf_counter() - clock
            report("report", 1, 1)
        except ShoalsError as error:
            fail(str(error))
        except KeyboardInterrupt:
            errors.print(f"interrupted: the finished chunks are in {out / CHECKPOINT}; rerun with the same "
                         f"options and --resume {out} to price only the others", highlight=False)
            raise typer.Exit(code=130) from None
    console.print(_totals_table(result))
    if vega:
        console.print(_ladder_table(result))
        difference = result.summary["ladder"].get("bump_aad_difference")
        if difference is not None and difference > 0.02:
            errors.print(f"[yellow]warning:[/] the bump and AAD ladders differ by {100 * difference:.1f} % of the "
                         "largest bucket: the local vol is not linear in some slices over one vol point (slices "
                         "close in time or a butterfly denominator near its floor; see the local vol report). The "
                         "AAD column is the derivative at the base, the bump column a one-point move.",
                         highlight=False)
    failed = result.trades[result.trades["status"] != "ok"]
    for record in failed.head(20).to_dict(orient="records"):
        errors.print(f"  {record['id']}: {record['status']}", highlight=False, soft_wrap=True)
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in
                       [*result.timings.items(), ("report", report_seconds)])
    console.print(f"stages: {stages}", highlight=False)
    console.print(f"outputs in {out}/: {', '.join(written)} ({time.perf_counter() - started:.2f} s)", highlight=False)
    if strict and len(failed):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)

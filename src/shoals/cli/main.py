"""The ``shoals`` command: parse arguments, call the public API, print and write reports."""

from __future__ import annotations

import time
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Shoals: derivatives pricing and risk on JAX.")
console = Console()
errors = Console(stderr=True)

_SHOWN_ROWS = 20


class Method(str, Enum):
    closed_form = "closed-form"
    monte_carlo = "monte-carlo"


def _example_book() -> Path:
    return Path(str(resources.files("shoals") / "data" / "example_book.csv"))


def _enable_compilation_cache() -> None:
    """Persist compiled XLA programs across CLI runs (cuts the cold start of repeated commands)."""
    import jax

    cache = Path.home() / ".cache" / "shoals" / "jax"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except OSError:
        pass


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _summary_table(frame, elapsed: float) -> Table:
    columns = ["id", "price", "npv", "delta", "gamma", "vega", "theta"]
    if frame["std_error"].notna().any():
        columns.append("std_error")
    table = Table(title=f"{len(frame)} trades priced in {elapsed:.2f} s "
                        f"(Greeks per unit of underlying; vega per 1.00 vol, theta per year)")
    show_status = bool((frame["status"] != "ok").any())
    for column in columns + (["status"] if show_status else []):
        table.add_column(column, justify="left" if column == "id" else "right", no_wrap=True)
    for record in frame.head(_SHOWN_ROWS).to_dict(orient="records"):
        cells = ["" if record[c] != record[c] else (record[c] if c == "id" else f"{record[c]:.4g}")
                 for c in columns]
        status = ["ok" if record["status"] == "ok" else "[red]error[/]"] if show_status else []
        table.add_row(*cells, *status)
    if len(frame) > _SHOWN_ROWS:
        table.caption = f"first {_SHOWN_ROWS} of {len(frame)} trades; all are in the results file"
    return table


@app.command()
def price(
    book: Optional[Path] = typer.Argument(
        None, help="Book file (CSV, Parquet or JSON; see BOOK_SCHEMA.md). Default: the embedded SPX example."),
    out: Path = typer.Option(Path("results.csv"), "--out", "-o", help="Results file (.csv, .parquet or .json)."),
    method: Method = typer.Option(Method.closed_form, "--method", "-m", help="Pricing method."),
    paths: int = typer.Option(100_000, "--paths", min=2, help="Monte Carlo paths per trade."),
    seed: int = typer.Option(0, "--seed", help="Monte Carlo seed (draws depend on seed and trade id only)."),
    antithetic: bool = typer.Option(False, "--antithetic/--no-antithetic", help="Antithetic variates (MC)."),
    valuation_date: Optional[str] = typer.Option(
        None, "--valuation-date", help="ISO date; converts a maturity_date column to year fractions (ACT/365F)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 1 if any trade failed."),
) -> None:
    """Price every trade of BOOK on its per-row flat market and write one result row per trade.

    Output columns: id, price, npv, delta, gamma, vega, theta, rho, std_error, method, status.
    A trade that fails gets its error in `status`; the rest of the book completes.
    """
    from shoals.errors import InputError
    from shoals.io import read_book, write_results
    from shoals.methods import ClosedForm, MonteCarlo
    from shoals.risk import price_book

    _enable_compilation_cache()
    source = book if book is not None else _example_book()
    started = time.perf_counter()
    try:
        rows = read_book(source, valuation_date=valuation_date)
        pricer = (ClosedForm() if method is Method.closed_form
                  else MonteCarlo(paths=paths, seed=seed, antithetic=antithetic))
    except (InputError, ValueError) as error:
        _fail(str(error))
    with console.status(f"pricing {len(rows)} trades with {pricer.name}..."):
        results = price_book(rows, pricer)
    elapsed = time.perf_counter() - started
    try:
        written = write_results(results, out)
    except InputError as error:
        _fail(str(error))
    console.print(_summary_table(results, elapsed))
    failed = results[results["status"] != "ok"]
    ok = results[results["status"] == "ok"]
    console.print(f"book NPV {ok['npv'].sum():,.2f} over {len(ok)} trades; results written to {written}")
    if len(failed):
        errors.print(f"[yellow]{len(failed)} of {len(results)} trades failed[/] (see the status column):",
                     highlight=False)
        for record in failed.head(10).to_dict(orient="records"):
            errors.print(f"  {record['id']}: {record['status']}", highlight=False, soft_wrap=True)
        if strict:
            raise typer.Exit(code=1)


@app.command()
def version() -> None:
    """Print the Shoals version."""
    from shoals import __version__

    console.print(__version__)


if __name__ == "__main__":
    app()

"""The ``shoals`` command: parse arguments, call the public API, print and write reports."""

from __future__ import annotations

import time
from enum import Enum
from importlib import resources
from pathlib import Path

import typer
from rich.table import Table

from shoals.cli.common import ModelOption, SurfaceModel, console, enable_compilation_cache, errors, fail
from shoals.cli.risk_commands import register as register_risk_commands
from shoals.cli.run_command import register as register_run_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Shoals: derivatives pricing and risk on JAX.")

_SHOWN_ROWS = 20


class Method(str, Enum):
    auto = "auto"
    closed_form = "closed-form"
    finite_difference = "finite-difference"
    monte_carlo = "monte-carlo"


def _example_book() -> Path:
    return Path(str(resources.files("shoals") / "data" / "example_book.csv"))


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
    book: Path | None = typer.Argument(
        None, help="Book file (CSV, Parquet or JSON; see BOOK_SCHEMA.md). Default: the embedded SPX example."),
    out: Path = typer.Option(Path("results.csv"), "--out", "-o", help="Results file (.csv, .parquet or .json)."),
    method: Method = typer.Option(
        Method.auto, "--method", "-m",
        help="Pricing method; auto: closed form for Europeans on flat markets, finite differences for the rest, "
             "Monte Carlo where the PDE declines a trade."),
    market: Path | None = typer.Option(
        None, "--market", help="Market file (JSON, as written by `shoals calibrate`): price the whole book under its "
                               "Dupire local vol instead of per-row flat markets."),
    paths: int = typer.Option(100_000, "--paths", min=2, help="Monte Carlo paths per trade."),
    seed: int = typer.Option(0, "--seed", help="Monte Carlo seed (draws depend on seed and trade id only)."),
    antithetic: bool = typer.Option(False, "--antithetic/--no-antithetic", help="Antithetic variates (MC)."),
    valuation_date: str | None = typer.Option(
        None, "--valuation-date", help="ISO date; converts a maturity_date column to year fractions (ACT/365F)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 1 if any trade failed."),
) -> None:
    """Price every trade of BOOK (per-row flat markets, or --market) and write one result row per trade.

    Output columns: id, price, npv, delta, gamma, vega, theta, rho, std_error, method, status.
    A trade that fails gets its error in `status`; the rest of the book completes.
    """
    from shoals.errors import InputError
    from shoals.io import read_book, read_market, write_results
    from shoals.methods import ClosedForm, FiniteDifference, MonteCarlo
    from shoals.risk import Auto, price_book

    enable_compilation_cache()
    source = book if book is not None else _example_book()
    started = time.perf_counter()
    try:
        rows = read_book(source, valuation_date=valuation_date)
        snapshot = read_market(market) if market is not None else None
        monte_carlo = MonteCarlo(paths=paths, seed=seed, antithetic=antithetic)
        pricer = {Method.auto: Auto(methods=(ClosedForm(), FiniteDifference(), monte_carlo)),
                  Method.closed_form: ClosedForm(), Method.finite_difference: FiniteDifference(),
                  Method.monte_carlo: monte_carlo}[method]
    except (InputError, ValueError) as error:
        fail(str(error))
    with console.status(f"pricing {len(rows)} trades with {pricer.name}..."):
        results = price_book(rows, pricer, market=snapshot)
    elapsed = time.perf_counter() - started
    try:
        written = write_results(results, out)
    except InputError as error:
        fail(str(error))
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


class Weighting(str, Enum):
    vega = "vega"
    spread = "spread"
    uniform = "uniform"


def _fit_table(frame, model: str) -> Table:
    name = "SVI" if model == "svi" else "Arbitrage-free spline"
    table = Table(title=f"{name} fit per expiry (vols in vol points; inside = share of fitted vols within bid/ask)")
    for column in ("expiry", "forward", "quotes", "atm vol", "rmse", "inside", "conv", "iter"):
        table.add_column(column, justify="right")
    for row in frame.to_dict(orient="records"):
        inside = row["inside_bid_ask"]
        table.add_row(f"{row['expiry']:.4f}", f"{row['forward']:.2f}", str(row["quotes"]),
                      f"{100 * row['atm_vol']:.2f}", f"{row['rmse_vol_points']:.3f}",
                      "" if inside != inside else f"{100 * inside:.0f}%", "yes" if row["converged"] else "[red]no[/]",
                      str(row["iterations"]))
    return table


@app.command()
def calibrate(
    quotes: Path = typer.Argument(..., help="Quotes file (CSV or Parquet; see BOOK_SCHEMA.md, 'Quotes')."),
    out: Path = typer.Option(Path("market.json"), "--out", "-o", help="Market file to write (JSON)."),
    spot: float | None = typer.Option(None, "--spot", help="Underlying level (default: the file's spot column)."),
    rate: float | None = typer.Option(
        None, "--rate", help="Flat continuous rate: fixes discount factors parity cannot identify, and vol-only quotes."),
    dividend: float | None = typer.Option(None, "--dividend", help="Flat dividend yield (vol-only quotes)."),
    valuation_date: str | None = typer.Option(None, "--valuation-date", help="ISO date (default: quote_date)."),
    model: ModelOption = SurfaceModel.svi,
    weighting: Weighting = typer.Option(Weighting.vega, "--weighting", help="Quote weights in the SVI fit."),
    repair: bool = typer.Option(True, "--repair/--no-repair", help="Repair calendar/butterfly violations (SVI)."),
    smoothness: float = typer.Option(
        1e-2, "--smoothness", min=0.0, help="Spline roughness weight (higher: smoother, fewer quotes inside)."),
    nodes: int = typer.Option(240, "--nodes", min=200, help="Spline nodes per expiry (>= 200)."),
    plot: Path | None = typer.Option(None, "--plot", help="Folder for PNG plots (smiles, surface, local vol)."),
) -> None:
    """Fit forwards and an arbitrage-free surface (raw SVI or spline) to option quotes and write the market file.

    Prints the cleaning report, a per-expiry fit table, the overall share of quotes inside bid/ask and RMSE,
    and the arbitrage report (before and after repair).
    """
    from shoals.calibration.spline import SplineSettings
    from shoals.calibration.surface import calibrate_surface, overall_fit
    from shoals.errors import ShoalsError
    from shoals.io.market import write_market
    from shoals.io.quotes import read_forwards, read_quotes

    enable_compilation_cache()
    started = time.perf_counter()
    try:
        table, cleaning = read_quotes(quotes, spot=spot, rate=rate, dividend=dividend, valuation_date=valuation_date)
        given = read_forwards(quotes, spot=spot, valuation_date=valuation_date)
        with console.status(f"calibrating {len(table)} quotes..."):
            result = calibrate_surface(table, cleaning, spot=spot, rate=rate, dividend=dividend, given_forwards=given,
                                       weighting=weighting.value, repair=repair, model=model.value,
                                       spline=SplineSettings(nodes=nodes, smoothness=smoothness))
        written = write_market(result.snapshot, out)
    except ShoalsError as error:
        fail(str(error))
    console.print(result.cleaning.summary(), highlight=False)
    fit_table = result.fit_table()
    console.print(_fit_table(fit_table, result.model))
    overall = overall_fit(result.smiles, fit_table)
    inside = (f"{overall['inside']} of {overall['quotes_with_ask']} quotes inside bid/ask "
              f"({100 * overall['inside_share']:.1f}%)" if overall["quotes_with_ask"]
              else "no bid/ask quotes (mid vols)")
    console.print(f"overall: {inside}, RMSE {overall['rmse_vol_points']:.3f} vol points over {overall['quotes']} "
                  "quotes", highlight=False)
    if result.model == "spline":
        console.print(f"spline fit: {result.fit.iterations[0]} quadratic programs, {result.fit.seconds:.2f} s",
                      highlight=False)
    if result.model == "svi":
        console.print(f"arbitrage before repair: {result.arbitrage_before_repair.summary()}", highlight=False)
    if result.repair is not None:
        console.print(result.repair.summary(), highlight=False)
    console.print(f"arbitrage of the written surface: {result.arbitrage.summary()}", highlight=False)
    if plot is not None:
        from shoals.market.local_vol import build_local_vol
        from shoals.reports.plots import (
            plot_implied_surface,
            plot_local_vol,
            plot_smiles,
        )

        grid, _ = build_local_vol(result.snapshot)
        paths = [plot_smiles(result, plot / "smiles.png"), plot_implied_surface(result.snapshot, plot / "surface.png"),
                 plot_local_vol(grid, plot / "local_vol.png",
                                spot_range=(0.5 * float(result.snapshot.spot), 1.5 * float(result.snapshot.spot)))]
        console.print("plots: " + ", ".join(str(p) for p in paths), highlight=False)
    console.print(f"market written to {written} in {time.perf_counter() - started:.2f} s", highlight=False)


register_risk_commands(app)
register_run_command(app)


@app.command()
def version() -> None:
    """Print the Shoals version."""
    from shoals import __version__

    console.print(__version__)


if __name__ == "__main__":
    app()

"""`shoals var` and `shoals hedge-sim`: thin commands over :mod:`shoals.risk.var` and
:mod:`shoals.risk.hedging` (parse -> public API -> table, JSON, CSV/Parquet, PNG).

Register them on a typer app with :func:`register`.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from shoals.cli.common import console, fail
from shoals.data import path as data_path
from shoals.errors import ShoalsError
from shoals.risk.hedging import hedged_pnl
from shoals.risk.var import Portfolio, VarResult, historical_var, value_at_risk

EXAMPLE_PORTFOLIO = "portfolio_example.json"
DEFAULT_OUT = Path("hedge_sim")


class Draws(str, Enum):
    portfolio = "portfolio"
    assets = "assets"


class Model(str, Enum):
    notebook = "notebook"
    gbm = "gbm"


class Device(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


class TableFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


def _read_portfolio(file: Path | None) -> dict:
    import yaml

    source = file or data_path(EXAMPLE_PORTFOLIO)
    suffix = source.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        fail(f"{source}: a portfolio file is YAML or JSON with the keys of {EXAMPLE_PORTFOLIO}")
    try:
        text = Path(source).read_text()
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as error:
        fail(f"{source}: cannot read the portfolio: {error}")
    if not isinstance(data, dict):
        fail(f"{source}: a portfolio file holds one mapping (assets, weights, ...), got {type(data).__name__}")
    return data


def _parse_levels(text: str | None, default) -> tuple:
    if text is None:
        return tuple(default)
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        fail(f"--levels '{text}': give comma-separated levels such as 0.95,0.99")
    return tuple(v / 100.0 if v > 1.0 else v for v in values)


def _read_returns(file: Path, names: tuple) -> np.ndarray:
    import pandas as pd

    try:
        frame = pd.read_parquet(file) if file.suffix.lower() == ".parquet" else pd.read_csv(file)
    except (OSError, ValueError) as error:
        fail(f"{file}: cannot read the returns table: {error}")
    missing = [name for name in names if name not in frame.columns]
    if missing:
        fail(f"{file}: no column for assets {missing}; the table needs one column of daily simple returns per "
              f"asset ({', '.join(names)})")
    return frame[list(names)].to_numpy(dtype=np.float64)


def _var_table(results: dict, value: float, horizon: int) -> Table:
    table = Table(title=f"VaR / CVaR of a {value:,.0f} portfolio over {horizon} trading days "
                        "(positive losses, currency)")
    table.add_column("method")
    table.add_column("level", justify="right")
    table.add_column("VaR", justify="right")
    table.add_column("CVaR", justify="right")
    table.add_column("VaR %", justify="right")
    for method, result in results.items():
        for level, var, cvar in zip(result.levels, result.var, result.cvar):
            table.add_row(method, f"{100 * level:g} %", f"{var:,.0f}", f"{cvar:,.0f}", f"{100 * var / value:.2f}")
    return table


def _plot_var(result: VarResult, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = -result.pnl
    fig, (whole, tail) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.cm.plasma(np.linspace(0.2, 0.8, len(result.levels)))
    whole.hist(losses, bins=200, color="0.6")
    first = float(np.min(result.var))
    tail_losses = losses[losses >= first]
    tail.hist(tail_losses, bins=80, color="firebrick", alpha=0.7)
    for level, var, cvar, colour in zip(result.levels, result.var, result.cvar, colours):
        for axis in (whole, tail):
            axis.axvline(var, color=colour, lw=1.5, label=f"VaR {100 * level:g} % = {var:,.0f}")
            axis.axvline(cvar, color=colour, lw=1.5, ls="--", label=f"CVaR {100 * level:g} % = {cvar:,.0f}")
    whole.axvspan(first, losses.max(), color="firebrick", alpha=0.1)
    whole.set(title=f"Loss distribution, {result.settings['horizon_days']} days, {losses.size:,} scenarios",
              xlabel="loss (currency)", ylabel="scenarios")
    tail.set(title=f"Loss tail beyond VaR {100 * min(result.levels):g} %", xlabel="loss (currency)")
    tail.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def var(
    portfolio: Annotated[Path | None, typer.Argument(
        help="Portfolio JSON (assets, weights, expected_returns, volatilities, correlation, value; optional "
             "horizon_days, levels). Default: the embedded 5-stock example.")] = None,
    sims: Annotated[int, typer.Option("--sims", help="Monte Carlo scenarios.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed; scenario i depends only on (seed, i).")] = 0,
    horizon: Annotated[int | None, typer.Option(
        "--horizon", help="Horizon in trading days (default: file, 10).")] = None,
    levels: Annotated[str | None, typer.Option(
        "--levels", help="Confidence levels, e.g. 0.95,0.99 or 95,99.")] = None,
    draws: Annotated[Draws, typer.Option(
        "--draws", help="portfolio: one normal per scenario-day (exact law); assets: per-asset draws.")
    ] = Draws.portfolio,
    model: Annotated[Model, typer.Option(
        "--model", help="notebook: daily compounded w.(mu/252 + L z); gbm: buy-and-hold correlated GBM.")
    ] = Model.notebook,
    returns: Annotated[Path | None, typer.Option(
        "--returns", help="Daily simple returns table (CSV/Parquet, one column per asset): adds historical VaR.")
    ] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Histogram PNG with VaR/CVaR lines and the loss tail.")] = None,
    json_file: Annotated[Path | None, typer.Option(
        "--json", help="JSON of the figures (var_95, cvar_95, ...).")] = None,
) -> None:
    """Monte Carlo (and historical) VaR / CVaR of a portfolio."""
    data = _read_portfolio(portfolio)
    try:
        book = Portfolio.from_mapping(data)
        horizon_days = int(horizon if horizon is not None else data.get("horizon_days", 10))
        chosen = _parse_levels(levels, data.get("levels", (0.95, 0.99)))
        start = time.perf_counter()
        results = {"monte carlo": value_at_risk(book, horizon_days=horizon_days, levels=chosen, simulations=sims,
                                                seed=seed, draws=draws.value, model=model.value)}
        elapsed = time.perf_counter() - start
        if returns is not None:
            results["historical"] = historical_var(_read_returns(returns, book.names), book.weights, book.value,
                                                   horizon_days=horizon_days, levels=chosen)
    except ShoalsError as error:
        fail(str(error))
    console.print(_var_table(results, book.value, horizon_days))
    console.print(f"{sims:,} scenarios x {horizon_days} days x {book.weights.size} assets in {elapsed:.3f} s")
    if json_file is not None:
        payload = dict(results["monte carlo"].figures())
        payload["settings"] = results["monte carlo"].settings
        if "historical" in results:
            payload["historical"] = {**results["historical"].figures(), "settings": results["historical"].settings}
        json_file.write_text(json.dumps(payload, indent=1))
        console.print(f"figures written to {json_file}")
    if plot is not None:
        _plot_var(results["monte carlo"], plot)
        console.print(f"histogram written to {plot}")


def _heatmap(result, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = result.grid_shape
    moneyness = result.moneyness.reshape(rows, cols)[:, 0]
    maturities = result.expiries.reshape(rows, cols)[0]
    mean = result.mean.reshape(rows, cols)
    fig, axis = plt.subplots(figsize=(8, 5))
    limit = float(np.max(np.abs(mean))) or 1.0
    mesh = axis.pcolormesh(maturities, moneyness, mean, shading="auto", cmap="RdBu", vmin=-limit, vmax=limit)
    fig.colorbar(mesh, ax=axis, label="mean discounted P&L per option")
    s = result.settings
    axis.set(xlabel="maturity (years)", ylabel="moneyness K / S0",
             title=f"Delta-hedged call P&L: sigma_r = {s['realised_vol']:g}, sigma_h = {s['hedge_vol']:g}, "
                   f"{s['paths']} paths x {s['steps']} steps")
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def hedge_sim(
    strike_min: Annotated[float, typer.Option("--strike-min", help="Lowest strike.")] = 80.0,
    strike_max: Annotated[float, typer.Option("--strike-max", help="Highest strike.")] = 120.0,
    strikes: Annotated[int, typer.Option("--strikes", help="Number of strikes (evenly spaced).")] = 21,
    maturity_min: Annotated[float, typer.Option("--maturity-min", help="Shortest maturity (years).")] = 0.1,
    maturity_max: Annotated[float, typer.Option("--maturity-max", help="Longest maturity (years).")] = 1.0,
    maturities: Annotated[int, typer.Option("--maturities", help="Number of maturities (evenly spaced).")] = 10,
    spot: Annotated[float, typer.Option("--spot", help="Spot of the underlying.")] = 100.0,
    paths: Annotated[int, typer.Option("--paths", help="Paths per option.")] = 1000,
    steps: Annotated[int, typer.Option("--steps", help="Hedge steps per option (to its expiry).")] = 180,
    sigma_r: Annotated[float, typer.Option("--sigma-r", help="Realised volatility of the underlying.")] = 0.25,
    sigma_h: Annotated[float, typer.Option("--sigma-h", help="Hedge (and purchase) volatility.")] = 0.20,
    rate: Annotated[float, typer.Option("--rate", help="Continuous risk-free rate (also the drift).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed; path p depends only on (seed, p).")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output directory (statistics table, heatmap).")] = DEFAULT_OUT,
    table_format: Annotated[TableFormat, typer.Option("--format", help="Statistics table format.")] = TableFormat.csv,
    device: Annotated[Device, typer.Option("--device", help="Run on the CPU or the first GPU.")] = Device.cpu,
) -> None:
    """Delta-hedged P&L distribution of a grid of European calls (realised vs hedge volatility)."""
    import jax

    try:
        target = jax.devices(device.value)[0]
    except RuntimeError:
        fail(f"--device {device.value}: no {device.value.upper()} visible to JAX; install jax[cuda12] on a "
              "machine with a CUDA GPU, or use --device cpu")
    try:
        start = time.perf_counter()
        with jax.default_device(target):
            result = hedged_pnl(strikes=np.linspace(strike_min, strike_max, strikes),
                                expiries=np.linspace(maturity_min, maturity_max, maturities),
                                realised_vol=sigma_r, hedge_vol=sigma_h, spot=spot, rate=rate, paths=paths,
                                steps=steps, seed=seed, keep_paths=False)
        elapsed = time.perf_counter() - start
    except ShoalsError as error:
        fail(str(error))
    out.mkdir(parents=True, exist_ok=True)
    frame = result.to_frame()
    table_file = out / f"hedge_pnl_stats.{table_format.value}"
    if table_format is TableFormat.parquet:
        frame.to_parquet(table_file, index=False)
    else:
        frame.to_csv(table_file, index=False)
    _heatmap(result, out / "hedge_pnl_mean.png")
    options = result.mean.size
    table = Table(title=f"{options:,} calls x {paths:,} paths x {steps} steps on {target.platform} in "
                        f"{elapsed:.2f} s ({options * paths * steps / elapsed:,.0f} option-path-steps/s)")
    for column in ("P&L", "min", "median", "max"):
        table.add_column(column, justify="right")
    for name, values in (("mean", result.mean), ("std", result.std)):
        table.add_row(name, f"{values.min():.4g}", f"{np.median(values):.4g}", f"{values.max():.4g}")
    console.print(table)
    console.print(f"statistics written to {table_file}, heatmap to {out / 'hedge_pnl_mean.png'}")


def register(app: typer.Typer) -> None:
    """Add ``var`` and ``hedge-sim`` to ``app``."""
    app.command("var")(var)
    app.command("hedge-sim")(hedge_sim)

"""`shoals var`, `shoals book-var` and `shoals hedge-sim`: thin commands over :mod:`shoals.risk.var`,
:mod:`shoals.risk.revaluation` and :mod:`shoals.risk.hedging` (parse -> public API -> table, JSON,
CSV/Parquet, PNG).

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

from shoals.cli.common import (
    BookOption,
    MarketOption,
    QuotesOption,
    SpotOption,
    console,
    enable_compilation_cache,
    errors,
    fail,
)
from shoals.data import path as data_path
from shoals.errors import ShoalsError
from shoals.risk.hedging import hedged_pnl
from shoals.risk.var import Portfolio, historical_var, value_at_risk

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
                        "(positive losses, currency; approx: delta-gamma-vega)")
    table.add_column("method")
    table.add_column("level", justify="right")
    table.add_column("VaR", justify="right")
    table.add_column("CVaR", justify="right")
    table.add_column("VaR %", justify="right")
    for method, result in results.items():
        for level, var, cvar in zip(result.levels, result.var, result.cvar):
            table.add_row(method, f"{100 * level:g} %", f"{var:,.0f}", f"{cvar:,.0f}", f"{100 * var / value:.2f}")
    return table


def _plot_var(result, file: Path, title: str) -> None:
    """Loss histogram with the VaR/CVaR lines of ``result`` (``pnl``, ``levels``, ``var``, ``cvar``) and the
    loss tail beyond the lowest VaR."""
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
    whole.set(title=f"{title}, {losses.size:,} scenarios", xlabel="loss (currency)", ylabel="scenarios")
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
        _plot_var(results["monte carlo"], plot, f"Loss distribution, {horizon_days} days")
        console.print(f"histogram written to {plot}")


def _book_var_table(result, scenarios, proxy: bool) -> Table:
    how = "Chebyshev proxies" if proxy else "full revaluation; approx: delta-gamma-vega"
    table = Table(title=f"book VaR / CVaR over {scenarios.settings.get('horizon_days')} trading days, "
                        f"{scenarios.count:,} {scenarios.settings.get('kind', '')} scenarios "
                        f"(positive losses, currency; {how})")
    columns = ("level", "VaR", "CVaR") + (() if proxy else ("VaR approx", "CVaR approx", "approx error"))
    for column in columns:
        table.add_column(column, justify="right")
    for i, level in enumerate(result.levels):
        cells = [f"{100 * level:g} %", f"{result.var[i]:,.0f}", f"{result.cvar[i]:,.0f}"]
        if not proxy:
            var, approx_var = result.var[i], result.approximate_var[i]
            error = f"{100 * (approx_var - var) / abs(var):+.1f} %" if var and np.isfinite(approx_var) else ""
            cells += [f"{approx_var:,.0f}", f"{result.approximate_cvar[i]:,.0f}", error]
        table.add_row(*cells)
    return table


def book_var(
    quotes: QuotesOption = None,
    market: MarketOption = None,
    book: BookOption = None,
    spot: SpotOption = None,
    method: Annotated[str, typer.Option("--method", help="pde (Monte Carlo where the PDE declines) or mc.")] = "pde",
    scenarios: Annotated[int, typer.Option(
        "--scenarios", help="Simulated scenarios (each reprices the whole book: ~5 s for the example book on "
                            "one core).")] = 100,
    history: Annotated[Path | None, typer.Option(
        "--history", help="Daily history (CSV/Parquet, columns spot_return and optionally vol_return, log-changes): "
                          "historical scenarios of every overlapping --horizon window instead of simulated ones.")
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Horizon in trading days.")] = 10,
    levels: Annotated[str | None, typer.Option(
        "--levels", help="Confidence levels, e.g. 0.95,0.99 or 95,99.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Scenario (and Monte Carlo) seed.")] = 0,
    spot_vol: Annotated[float | None, typer.Option(
        "--spot-vol", help="Spot vol of the simulated scenarios (default: ATM vol of the first pillar).")] = None,
    vol_of_vol: Annotated[float, typer.Option(
        "--vol-of-vol", help="Lognormal vol of the 1-year ATM vol (pillar i: nu T_i^-beta).")] = 0.4,
    correlation: Annotated[float, typer.Option("--correlation", help="Spot-vol correlation.")] = -0.7,
    term_exponent: Annotated[float | None, typer.Option(
        "--term-exponent", help="beta: short pillars move more, as T^-beta (default 0.5 simulated, 0 historical).")
    ] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="serial, threads[:N], processes[:N], dask-local[:N] or dask://host:port.")] = "serial",
    approximation: Annotated[bool, typer.Option(
        "--approximation/--no-approximation", help="Also the delta-gamma-vega P&L (costs one vega ladder).")] = True,
    proxy: Annotated[bool, typer.Option(
        "--proxy", help="Chebyshev proxies of every trade over (spot return, vol factor) from --spot-nodes x "
                        "--vol-nodes repricings instead of one repricing per scenario.")] = False,
    spot_nodes: Annotated[int, typer.Option("--spot-nodes", help="Proxy nodes along the spot return.")] = 9,
    vol_nodes: Annotated[int, typer.Option("--vol-nodes", help="Proxy nodes along the vol factor.")] = 3,
    json_file: Annotated[Path | None, typer.Option(
        "--json", help="JSON of the figures (var_95, cvar_95, approx_var_95, ...), the approximation error, "
                       "settings and excluded trades.")] = None,
    pnl_file: Annotated[Path | None, typer.Option(
        "--pnl", help="CSV of the scenarios with their full and approximate P&L.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Histogram PNG of the full-revaluation losses with VaR/CVaR lines.")] = None,
) -> None:
    """Full-revaluation VaR / CVaR of a book: every trade repriced under each spot / implied-vol scenario,
    beside the delta-gamma-vega approximation and its error (or, with --proxy, by Chebyshev proxies)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from shoals.execution import executor_from_spec
    from shoals.risk.proxy_revaluation import proxy_book_var
    from shoals.risk.revaluation import book_var as full_revaluation_var
    from shoals.risk.revaluation import book_var_inputs

    enable_compilation_cache()
    options = {} if history is not None else {"spot_vol": spot_vol, "vol_of_vol": vol_of_vol,
                                              "correlation": correlation}
    if term_exponent is not None:
        options["term_exponent"] = term_exponent
    try:
        chosen = _parse_levels(levels, (0.95, 0.99))
        pool = executor_from_spec(executor)
        inputs = book_var_inputs(quotes=quotes, market=market, book=book, spot=spot, method=method,
                                 scenarios=scenarios, history=history, horizon_days=horizon, seed=seed, **options)
        stage = "proxy nodes (trade chunk x vol node)" if proxy else "revaluation (trade chunk x scenario block)"
        with Progress(TextColumn(stage), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as bar, pool:
            task = bar.add_task(stage, total=None)
            common = {"method": inputs.method, "levels": chosen, "executor": pool,
                      "progress": lambda done, total: bar.update(task, completed=done, total=total)}
            arguments = (inputs.rows, inputs.snapshot, inputs.grid, inputs.scenarios)
            result = (proxy_book_var(*arguments, spot_nodes=spot_nodes, vol_nodes=vol_nodes, **common) if proxy
                      else full_revaluation_var(*arguments, approximation=approximation, **common))
    except ShoalsError as error:
        fail(str(error))
    console.print(_book_var_table(result, inputs.scenarios, proxy))
    approximated = approximation and not proxy
    error = result.approximation_error() if approximated else None
    if error is not None:
        console.print(f"delta-gamma-vega P&L error: largest {error['max_abs_pnl_error']:,.0f}, RMS "
                      f"{error['rms_pnl_error']:,.0f} (P&L std {error['pnl_std']:,.0f})", highlight=False)
    if proxy:
        console.print(f"{result.repricings:,} trade repricings ({inputs.scenarios.count * len(inputs.rows):,} for "
                      f"full revaluation); {result.settings['exact_trades']} trades revalued exactly", highlight=False)
    timings = {"inputs": inputs.seconds, **result.timings}
    console.print(f"{result.settings['included']} of {result.settings['trades']} trades in the P&L; "
                  f"stages: {', '.join(f'{k} {v:.2f} s' for k, v in timings.items())}", highlight=False)
    excluded = result.trades.loc[result.trades["status"] != "ok", ["id", "status"]].to_dict(orient="records")
    for record in excluded[:20]:
        errors.print(f"  left out {record['id']}: {record['status']}", highlight=False, soft_wrap=True)
    if json_file is not None:
        payload = {**result.figures(), "approximation_error": error, "settings": result.settings,
                   "excluded": excluded, "timings": timings}
        json_file.write_text(json.dumps(payload, indent=1, default=float))
        console.print(f"figures written to {json_file}")
    if pnl_file is not None:
        table = inputs.scenarios.table(inputs.snapshot.surface.expiries)
        table["pnl"] = result.pnl
        if approximated:
            table["approximate_pnl"] = result.approximate_pnl
        table.to_csv(pnl_file, index=False)
        console.print(f"scenario P&L written to {pnl_file}")
    if plot is not None:
        _plot_var(result, plot, f"Book loss by full revaluation, {horizon} days")
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
    """Add ``var``, ``book-var`` and ``hedge-sim`` to ``app``."""
    app.command("var")(var)
    app.command("book-var")(book_var)
    app.command("hedge-sim")(hedge_sim)

"""The files of a whole-book run (``shoals run --out DIR``): tables, summary, market file and HTML report."""

from __future__ import annotations

import json
from pathlib import Path

from shoals.io.market import write_market
from shoals.io.results import write_results
from shoals.risk.run_result import RunResult


def write_run_outputs(result: RunResult, out, *, html: bool = True) -> dict[str, Path]:
    """Write the outputs of ``result`` into the folder ``out`` (created) and return their paths by name.

    ``trades.csv`` and ``trades.parquet`` (the columns of ``shoals price``, BOOK_SCHEMA.md, then
    ``instrument, quantity, notional``), ``ladder.csv`` (``expiry, vega_bump, vega_aad``: book totals per
    pillar, per 1.00 of vol), ``ladder_by_trade.csv`` (per-trade bump ladder, per unit of underlying),
    ``quote_vega.csv`` (when computed), ``summary.json``, ``surface.json`` (the market file of the surface
    priced on, readable by ``shoals price --market``) and ``report.html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"trades.csv": write_results(result.trades, out / "trades.csv"),
             "trades.parquet": write_results(result.trades, out / "trades.parquet"),
             "ladder.csv": write_results(result.ladder, out / "ladder.csv")}
    if not result.ladder_by_trade.empty:
        result.ladder_by_trade.to_csv(out / "ladder_by_trade.csv")
        paths["ladder_by_trade.csv"] = out / "ladder_by_trade.csv"
    if result.quote_vega is not None:
        paths["quote_vega.csv"] = write_results(result.quote_vega, out / "quote_vega.csv")
    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary, indent=1, default=float))
    paths["summary.json"] = summary
    paths["surface.json"] = write_market(result.snapshot, out / "surface.json")
    if html:
        from shoals.reports.html import write_html_report

        paths["report.html"] = write_html_report(result, out / "report.html")
    return paths

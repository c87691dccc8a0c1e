"""The HTML report of a whole-book run (``shoals run``): one self-contained file.

:func:`render_html_report` turns a :class:`~shoals.risk.run_result.RunResult` into an HTML page with an inline
stylesheet and the plots embedded as base64 PNG data URIs (no external assets, no network);
:func:`write_html_report` writes it.  Sections: valuation summary, timings, vega ladder, NPV and Greeks by
instrument type, trades, surface (SVI fits, fit table, implied and local vol heatmaps), arbitrage, data quality
and market-quote vega.  Every piece of text taken from the result is HTML-escaped.

matplotlib is imported lazily by :mod:`shoals.reports.plots`; a plot that cannot be drawn leaves a note in its
place instead of failing the report.
"""

from __future__ import annotations

import base64
import html
import json
import math
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

TITLE = "Shoals run report"
UNITS_NOTE = ("Greeks in base units: vega per 1.00 of vol, theta per year; book figures include quantity x "
              "notional")
TRADE_COLUMNS = ("id", "instrument", "quantity", "notional", "price", "npv", "delta", "gamma", "vega", "theta",
                 "rho", "std_error", "method", "status")
QUOTE_VEGA_ROWS = 20
CLEANING_ROWS_SHOWN = 15
LARGE = 1e3  # numbers from here on get thousands separators and 2 decimals

SECTIONS = (
    ("summary", "Valuation summary"),
    ("timings", "Timings"),
    ("ladder", "Vega ladder"),
    ("by-type", "NPV and Greeks by instrument type"),
    ("trades", "Trades"),
    ("surface", "Surface"),
    ("arbitrage", "Arbitrage"),
    ("data-quality", "Data quality"),
    ("quote-vega", "Market-quote vega"),
)

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px; color: #222;
       margin: 1.5em auto; max-width: 1200px; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
nav a { margin-right: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fde8e8; }
tr.failed td.status { color: #a00; font-weight: 600; }
.kpi td:first-child { font-weight: 600; }
.note { color: #555; font-style: italic; }
.warn { color: #a00; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.6em; white-space: pre-wrap; font-size: 12px; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
.scroll { max-height: 36em; overflow: auto; }
footer { margin-top: 3em; color: #777; font-size: 12px; }
"""


def render_html_report(result, *, title: str = TITLE, dpi: int | None = None) -> str:
    """The HTML report of ``result`` (a :class:`~shoals.risk.run_result.RunResult`) as one self-contained string.

    ``dpi`` sets the resolution of the embedded PNG plots (default
    :data:`shoals.reports.plots.REPORT_DPI`, small to keep rendering fast and the file light).

    Validation: tests/unit/test_html_report.py.
    """
    from shoals.reports import plots

    context = _Context(plots=plots, dpi=plots.REPORT_DPI if dpi is None else int(dpi))
    body = [
        f"<h1>{_esc(title)}</h1>",
        "<nav>" + "".join(f'<a href="#{anchor}">{_esc(name)}</a>' for anchor, name in SECTIONS) + "</nav>",
        _summary_section(result),
        _timings_section(result),
        _ladder_section(result, context),
        _by_type_section(result, context),
        _trades_section(result),
        _surface_section(result, context),
        _arbitrage_section(result),
        _data_quality_section(result),
        _quote_vega_section(result),
        f"<footer>{_esc(_footer())}</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_html_report(result, path, *, title: str = TITLE, dpi: int | None = None) -> Path:
    """Write :func:`render_html_report` of ``result`` to ``path`` (UTF-8; parent folders created) and return
    the path."""
    path = Path(path)
    text = render_html_report(result, title=title, dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------- helpers


class _Context:
    def __init__(self, plots, dpi):
        self.plots = plots
        self.dpi = dpi

    def image(self, alt: str, build) -> str:
        """An <img> with the PNG of ``build()`` (a figure) as a data URI, or a note when it cannot be drawn."""
        try:
            png = self.plots.figure_png(build(), dpi=self.dpi)
        except Exception as error:  # a plot must not cost the whole report
            return f'<p class="note">plot "{_esc(alt)}" not drawn: {_esc(f"{type(error).__name__}: {error}")}</p>'
        data = base64.b64encode(png).decode("ascii")
        return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt(value, style: str | None = None) -> str:
    """A number or text for a table cell; missing values as an em dash.  ``style`` (see :func:`_column_style`):
    "int" integers with thousands separators, "fixed2" thousands separators and 2 decimals, "sig6" 6 significant
    digits; None decides per value (integral -> "int", |x| >= 1000 -> "fixed2", else "sig6")."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if _is_missing(value):
        return "\u2014"
    if not _is_number(value):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if style is None:
        style = "int" if x.is_integer() and abs(x) < 1e15 else "fixed2" if abs(x) >= LARGE else "sig6"
    if style == "int" and x.is_integer():
        return f"{int(x):,}"
    if style == "fixed2":
        return f"{x:,.2f}"
    return "0" if x == 0.0 else f"{x:.6g}"


def _column_style(values) -> str | None:
    """One number format for a whole column, so its figures line up: "int" when every finite number is integral,
    "fixed2" when the largest reaches 1000, else "sig6" (None without numbers)."""
    numbers = [float(v) for v in values if _is_number(v) and math.isfinite(float(v))]
    if not numbers:
        return None
    if all(x.is_integer() and abs(x) < 1e15 for x in numbers):
        return "int"
    return "fixed2" if max(abs(x) for x in numbers) >= LARGE else "sig6"


def _is_number(value) -> bool:
    return isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_))


def _table(frame: pd.DataFrame, *, row_classes=None, cell_classes=None, index: bool = False) -> str:
    """An HTML table of ``frame`` (escaped, numbers right-aligned with one format per column); ``row_classes``
    one class name (or "") per row; ``cell_classes`` maps a column name to a class added to its cells."""
    if frame is None or len(frame.columns) == 0:
        return '<p class="note">(empty)</p>'
    if index:
        frame = frame.reset_index()
    cell_classes = cell_classes or {}
    styles = [_column_style(frame.iloc[:, position].tolist()) for position in range(len(frame.columns))]
    head = "".join(f"<th>{_esc(column)}</th>" for column in frame.columns)
    rows = []
    for position, values in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for column, style, value in zip(frame.columns, styles, values):
            classes = ["num"] if _is_number(value) else []
            if column in cell_classes:
                classes.append(cell_classes[column])
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attribute}>{_esc(_fmt(value, style))}</td>")
        row_class = row_classes[position] if row_classes is not None else ""
        opening = f'<tr class="{row_class}">' if row_class else "<tr>"
        rows.append(opening + "".join(cells) + "</tr>")
    if not rows:
        return '<p class="note">(no rows)</p>'
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def _key_values(pairs) -> str:
    rows = []
    for key, value in pairs:
        cell = '<td class="num">' if _is_number(value) else "<td>"
        rows.append(f"<tr><td>{_esc(key)}</td>{cell}{_esc(_fmt(value))}</td></tr>")
    return '<table class="kpi"><tbody>' + "".join(rows) + "</tbody></table>"


def _section(anchor: str, content: list) -> str:
    name = dict(SECTIONS)[anchor]
    return f'<section id="{anchor}">\n<h2>{_esc(name)}</h2>\n' + "\n".join(content) + "\n</section>"


def _pre(text) -> str:
    return f"<pre>{_esc(text)}</pre>"


def _note(text) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _frame(value) -> pd.DataFrame | None:
    return value if isinstance(value, pd.DataFrame) else None


def _failed_mask(trades: pd.DataFrame) -> np.ndarray:
    if "status" not in trades:
        return np.zeros(len(trades), dtype=bool)
    return ~trades["status"].astype(str).str.strip().str.lower().eq("ok").to_numpy()


def _footer() -> str:
    try:
        from shoals import __version__
    except ImportError:  # pragma: no cover
        __version__ = "?"
    return f"Generated by shoals {__version__}. {UNITS_NOTE}."


# ----------------------------------------------------------------------------------------------------- sections


def _summary_section(result) -> str:
    summary = dict(result.summary or {})
    trades = _frame(result.trades)
    failed_mask = _failed_mask(trades) if trades is not None else np.zeros(0, dtype=bool)
    total = summary.get("trades", len(trades) if trades is not None else 0)
    failed = summary.get("failed", int(failed_mask.sum()))
    try:
        ok = int(total) - int(failed)
    except (TypeError, ValueError):
        ok = "\u2014"
    figures = [(f"book {name}", summary.get(name)) for name in ("npv", "delta", "gamma", "theta", "vega")]
    run = [("trades", total), ("trades ok", ok), ("trades failed", failed),
           ("method", summary.get("method", "\u2014")), ("executor", summary.get("executor", "\u2014"))]
    content = [_key_values(figures + run), _note(UNITS_NOTE)]
    if failed_mask.any():
        content.append(f'<p class="warn">{int(failed_mask.sum())} trade(s) failed: see <a href="#trades">Trades</a>.'
                       "</p>")
    shown = {"npv", "delta", "gamma", "theta", "vega", "trades", "failed", "method", "executor", "timings"}
    extra = [(key, value if isinstance(value, (str, Real)) or value is None else json.dumps(value, default=str))
             for key, value in summary.items() if key not in shown]
    if extra:
        content += ["<h3>Run settings</h3>", _key_values(extra)]
    return _section("summary", content)


def _timings_section(result) -> str:
    timings = dict(result.timings or (result.summary or {}).get("timings") or {})
    if not timings:
        return _section("timings", [_note("no timings recorded")])
    seconds = {stage: float(value) for stage, value in timings.items() if _is_number(value)}
    total = sum(seconds.values())
    frame = pd.DataFrame({"stage": list(seconds), "seconds": list(seconds.values()),
                          "share": [f"{100 * s / total:.1f} %" if total > 0 else "\u2014" for s in seconds.values()]})
    frame.loc[len(frame)] = ["total (sum of stages)", total, "100.0 %" if total > 0 else "\u2014"]
    return _section("timings", [_table(frame)])


def _ladder_section(result, context: _Context) -> str:
    ladder = _frame(result.ladder)
    if ladder is None or ladder.empty:
        return _section("ladder", [_note("no vega ladder was computed")])
    content = [_note("Book vega per pillar expiry of the surface (quantity x notional included, per 1.00 of the "
                     "pillar's ATM vol): bump-and-reprice and adjoint (AAD) side by side; a dash where a column "
                     "was not computed."),
               context.image("vega ladder", lambda: context.plots.vega_ladder_figure(ladder))]
    table = ladder.astype(object)
    numeric = [c for c in ("vega_bump", "vega_aad") if c in table]
    if numeric:
        table.loc[len(table)] = {"expiry": "total", **{c: float(np.nansum(table[c].to_numpy(dtype=np.float64)))
                                                      if table[c].notna().any() else np.nan for c in numeric}}
    content.append(_table(table))
    return _section("ladder", content)


def _by_type_section(result, context: _Context) -> str:
    by_type = _frame(result.by_type)
    if by_type is None or by_type.empty:
        return _section("by-type", [_note("no trades")])
    content = [_note("Book units: per-unit Greeks x quantity x notional, summed over the type's priced trades."),
               _table(by_type)]
    if {"instrument", "npv"} <= set(by_type.columns):
        content.append(context.image("NPV by instrument type", lambda: context.plots.npv_by_type_figure(by_type)))
    return _section("by-type", content)


def _trades_section(result) -> str:
    trades = _frame(result.trades)
    if trades is None or trades.empty:
        return _section("trades", [_note("no trades")])
    columns = [c for c in TRADE_COLUMNS if c in trades] + [c for c in trades.columns if c not in TRADE_COLUMNS]
    table = trades[columns]
    failed = _failed_mask(trades)
    content = [_note("price and Greeks per unit of underlying (vega per 1.00 of vol, theta per year); "
                     "npv = price x quantity x notional. Failed trades are highlighted with their error.")]
    if failed.any():
        items = "".join(f"<li><b>{_esc(row_id)}</b>: {_esc(status)}</li>"
                        for row_id, status in zip(trades.loc[failed, "id"] if "id" in trades else trades.index[failed],
                                                  trades.loc[failed, "status"]))
        content.append(f'<p class="warn">{int(failed.sum())} of {len(trades)} trade(s) failed:</p><ul>{items}</ul>')
    content.append('<div class="scroll">' + _table(table, row_classes=["failed" if f else "" for f in failed],
                                                   cell_classes={"status": "status"}) + "</div>")
    return _section("trades", content)


def _surface_section(result, context: _Context) -> str:
    plots = context.plots
    calibration = result.calibration
    content = []
    if calibration is not None:
        content += ["<h3>SVI fit per expiry</h3>",
                    _note("Bid/ask implied-vol bars, mid vols and the fitted SVI smile of each expiry."),
                    context.image("SVI fits", lambda: plots.smiles_figure(calibration, panel_size=(3.4, 2.6))),
                    "<h3>Fit table</h3>"]
        try:
            content.append(_table(calibration.fit_table()))
        except Exception as error:
            content.append(_note(f"fit table not available: {type(error).__name__}: {error}"))
    else:
        content.append(_note("The market was given as a file: no quotes were fitted, so there are no SVI fit plots "
                             "or fit table; the surface priced on is shown below."))
    snapshot = result.snapshot
    if snapshot is not None and getattr(snapshot, "surface", None) is not None:
        content += ["<h3>Implied volatility</h3>",
                    context.image("implied vol heatmap", lambda: plots.implied_surface_figure(snapshot))]
    if result.local_vol is not None:
        spot_range = None
        try:
            spot = float(snapshot.spot)
            spot_range = (0.5 * spot, 1.5 * spot)
        except (AttributeError, TypeError, ValueError):
            pass
        content += ["<h3>Local volatility</h3>",
                    context.image("local vol heatmap",
                                  lambda: plots.local_vol_figure(result.local_vol, spot_range=spot_range))]
    if result.local_vol_report is not None:
        content.append(_pre(result.local_vol_report.summary()))
    return _section("surface", content)


def _violations_table(report) -> str:
    if report is None or report.ok:
        return ""
    return _table(report.to_frame())


def _arbitrage_section(result) -> str:
    calibration = result.calibration
    report = result.arbitrage if result.arbitrage is not None else getattr(calibration, "arbitrage", None)
    content = ["<h3>Surface priced on</h3>"]
    if report is None:
        content.append(_note("no arbitrage check was recorded"))
    else:
        content += [_pre(report.summary()), _violations_table(report)]
    if calibration is not None:
        before = calibration.arbitrage_before_repair
        content += ["<h3>Calibrated surface before repair</h3>", _pre(before.summary()), _violations_table(before)]
        content.append("<h3>Repair</h3>")
        if calibration.repair is not None:
            content.append(_pre(calibration.repair.summary()))
        else:
            content.append(_note("no repair was applied"))
    return _section("arbitrage", content)


def _data_quality_section(result) -> str:
    calibration = result.calibration
    cleaning = getattr(calibration, "cleaning", None)
    if cleaning is None:
        return _section("data-quality", [_note("no quotes were read (market given as a file)")])
    rows = []
    for kind, mapping in (("dropped", cleaning.dropped), ("flagged", cleaning.flagged)):
        for reason, source_rows in mapping.items():
            source_rows = list(source_rows)
            if not source_rows:
                continue
            shown = ", ".join(str(r) for r in source_rows[:CLEANING_ROWS_SHOWN])
            if len(source_rows) > CLEANING_ROWS_SHOWN:
                shown += f", ... ({len(source_rows) - CLEANING_ROWS_SHOWN} more)"
            rows.append((kind, reason, len(source_rows), shown))
    content = [_pre(cleaning.summary())]
    if rows:
        content.append(_table(pd.DataFrame(rows, columns=["action", "reason", "quotes", "source rows (1-based)"])))
    else:
        content.append(_note("no quote dropped or flagged"))
    return _section("data-quality", content)


def _quote_vega_section(result) -> str:
    quote_vega = _frame(result.quote_vega)
    if quote_vega is None:
        reason = (result.summary or {}).get("quote_vega") or "not computed"
        return _section("quote-vega", [_note(f"market-quote vega was {reason}")])
    if quote_vega.empty or "vega" not in quote_vega:
        return _section("quote-vega", [_note("no market-quote vega")])
    order = quote_vega["vega"].abs().sort_values(ascending=False, kind="stable").index
    top = quote_vega.loc[order].head(QUOTE_VEGA_ROWS)
    total = float(np.nansum(quote_vega["vega"].to_numpy(dtype=np.float64)))
    content = [_note(f"d book / d quoted mid implied vol (per 1.00 of vol), top {len(top)} of {len(quote_vega)} "
                     f"quotes by |vega|; sum over all quotes {_fmt(total)}."),
               _table(top)]
    return _section("quote-vega", content)

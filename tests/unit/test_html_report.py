"""The HTML report of a whole-book run: one self-contained file with every section, escaped text, the failed
trades' messages and the ladder values; the variant without a calibration (market given as a file)."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import warnings
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from shoals.calibration.surface import calibrate_surface
from shoals.io.quotes import read_quotes
from shoals.market.local_vol import build_local_vol
from shoals.reports.html import SECTIONS, render_html_report, write_html_report
from shoals.reports.plots import plot_implied_surface, plot_local_vol, plot_smiles
from shoals.risk.run_result import RunResult

pytest.importorskip("matplotlib")

FAILED_STATUS = "error: row 3: barrier 0 must be > 0; fix the barrier column"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def calibration():
    table, cleaning = read_quotes(files("shoals.data") / "seed_quotes.csv", spot=100.0)
    return calibrate_surface(table, cleaning, spot=100.0)


@pytest.fixture(scope="module")
def local_vol(calibration):
    return build_local_vol(calibration.snapshot, n_times=41, n_spots=161)


def _trades() -> pd.DataFrame:
    nan = np.nan
    return pd.DataFrame({
        "id": ["T1", "<script>alert(1)</script>", "T3", "T4"],
        "price": [10.4506, 5.5735, nan, 0.00123],
        "npv": [104506.0, -557.35, nan, 12.3],
        "delta": [0.6368, -0.3632, nan, 0.01],
        "gamma": [0.01876, 0.01876, nan, 0.0004],
        "vega": [37.524, 37.524, nan, 1.2],
        "theta": [-6.414, -1.658, nan, -0.1],
        "rho": [53.23, -41.89, nan, 0.2],
        "std_error": [nan, nan, nan, 0.0004],
        "method": ["closed-form", "closed-form", "pde", "monte-carlo"],
        "status": ["ok", "ok", FAILED_STATUS, "ok"],
        "instrument": ["european", "european", "barrier", "asian"],
        "quantity": [10.0, -1.0, 1.0, 1.0],
        "notional": [1000.0, 100.0, 1.0, 10_000.0],
    })


def _result(calibration, local_vol, *, with_calibration: bool = True) -> RunResult:
    grid, report = local_vol
    ladder = pd.DataFrame({"expiry": [0.25, 0.5, 1.0, 2.0], "vega_bump": [1234.5, -56.25, 7.5, 0.0],
                           "vega_aad": [1234.75, -56.5, 7.0, np.nan]})
    by_type = pd.DataFrame({"instrument": ["asian", "barrier", "european"], "trades": [1, 1, 2],
                            "failed": [0, 1, 0], "npv": [12.3, 0.0, 103948.65], "delta": [100.0, 0.0, 6331.8],
                            "gamma": [4.0, 0.0, 185.7], "theta": [-1000.0, 0.0, -64306.2],
                            "vega": [12000.0, 0.0, 371438.6]})
    quote_vega = pd.DataFrame({"expiry": np.repeat([0.25, 0.5], 15), "strike": np.tile(np.linspace(80, 120, 15), 2),
                               "k": np.tile(np.linspace(-0.2, 0.2, 15), 2), "vega": np.linspace(-300.0, 280.0, 30)})
    summary = {"npv": 103960.95, "delta": 6431.8, "gamma": 189.7, "theta": -65306.2, "vega": 383438.6,
               "trades": 4, "failed": 1, "method": "auto", "executor": "serial", "seed": 7,
               "timings": {"calibration": 1.5}}
    return RunResult(
        trades=_trades(), ladder=ladder,
        ladder_by_trade=pd.DataFrame(np.ones((4, 4)), index=_trades()["id"], columns=ladder["expiry"]),
        by_type=by_type, summary=summary, snapshot=calibration.snapshot, local_vol=grid, local_vol_report=report,
        calibration=calibration if with_calibration else None, arbitrage=calibration.arbitrage,
        quote_vega=quote_vega if with_calibration else None,
        timings={"calibration": 1.5, "local_vol": 0.25, "pricing": 3.0, "report": 0.5})


@pytest.fixture(scope="module")
def report(calibration, local_vol, tmp_path_factory):
    path = write_html_report(_result(calibration, local_vol), tmp_path_factory.mktemp("run") / "out" / "report.html")
    return path, path.read_text(encoding="utf-8")


def test_report_is_written_as_one_html_file(report):
    path, text = report
    assert path.is_file() and path.name == "report.html"
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_report_is_self_contained(report):
    _, text = report
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) >= 5  # ladder, NPV by type, smiles, implied vol, local vol
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_report_has_every_section(report):
    _, text = report
    for anchor, name in SECTIONS:
        assert f'<section id="{anchor}">' in text
        assert f"<h2>{name}</h2>" in text
    for heading in ("SVI fit per expiry", "Fit table", "Implied volatility", "Local volatility",
                    "Calibrated surface before repair", "Repair"):
        assert f"<h3>{heading}</h3>" in text


def test_report_shows_the_valuation_summary_and_units(report):
    _, text = report
    assert ("Greeks in base units: vega per 1.00 of vol, theta per year; book figures include quantity x notional"
            in text)
    assert "103,960.95" in text and "383,438.60" in text and "6,431.80" in text  # book NPV, vega, delta
    assert "trades failed" in text and "serial" in text and "auto" in text
    assert "seed" in text  # other settings of the summary


def test_report_shows_the_failed_trade_and_its_message(report):
    _, text = report
    escaped = html.escape(FAILED_STATUS)  # "> 0" reads "&gt; 0"
    assert escaped in text
    assert text.count('<tr class="failed">') == 1
    row = re.search(r'<tr class="failed">(.*?)</tr>', text).group(1)
    assert "T3" in row and escaped in row
    trades = text[text.index('<section id="trades">'):text.index('<section id="surface">')]
    assert ">104,506.00<" in trades and ">-557.35<" in trades  # one format for the whole npv column
    assert ">1,000<" in trades and ">10,000<" in trades  # integral notionals


def test_report_escapes_text(report):
    _, text = report
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_report_shows_the_ladder_timings_and_quote_vega(report):
    _, text = report
    ladder = text[text.index('<section id="ladder">'):text.index('<section id="by-type">')]
    for value in ("1,234.50", "1,234.75", "-56.25", "-56.50", "7.50", "7.00", "\u2014", "1,185.75"):
        assert f">{value}<" in ladder
    timings = text[text.index('<section id="timings">'):text.index('<section id="ladder">')]
    assert "pricing" in timings and ">5.25<" in timings  # sum of the stages
    quote_vega = text[text.index('<section id="quote-vega">'):]
    assert "top 20 of 30" in quote_vega and ">-300<" in quote_vega


def test_report_shows_the_surface_and_quality_reports(report, calibration):
    _, text = report
    assert "no arbitrage found" in text
    assert "120 of 240 quotes kept" in text  # cleaning summary
    assert "in-the-money side not used" in text and ">120<" in text  # dropped by reason with its count
    assert "local vol grid" in text  # local vol report summary
    assert text.count("<th>rmse_vol_points</th>") == 1  # the fit table
    if calibration.repair is not None:
        assert "repair:" in text


def test_report_without_calibration(calibration, local_vol, tmp_path):
    result = _result(calibration, local_vol, with_calibration=False)
    path = write_html_report(result, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text == render_html_report(result)
    for anchor, name in SECTIONS:
        assert f"<h2>{name}</h2>" in text
    assert "The market was given as a file" in text
    assert "<h3>Fit table</h3>" not in text and "<h3>SVI fit per expiry</h3>" not in text
    assert "<h3>Implied volatility</h3>" in text and "<h3>Local volatility</h3>" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 4  # ladder, by type, implied vol, local vol
    assert "no arbitrage found" in text
    assert "market-quote vega was not computed" in text
    assert "https://" not in text and "http://" not in text


def test_report_of_an_empty_ladder_and_no_local_vol(calibration, local_vol):
    result = dataclasses.replace(_result(calibration, local_vol, with_calibration=False),
                                 ladder=pd.DataFrame(columns=["expiry", "vega_bump", "vega_aad"]),
                                 local_vol=None, local_vol_report=None, timings={},
                                 summary={"npv": 1.0, "trades": 4, "failed": 1})
    text = render_html_report(result)
    assert "no vega ladder was computed" in text and "no timings recorded" in text
    assert "<h3>Local volatility</h3>" not in text


def test_file_plots_still_written(calibration, local_vol, tmp_path):
    grid, _ = local_vol
    paths = [plot_smiles(calibration, tmp_path / "smiles.png"),
             plot_implied_surface(calibration.snapshot, tmp_path / "surface.png"),
             plot_local_vol(grid, tmp_path / "nested" / "local_vol.png", spot_range=(50.0, 150.0))]
    for path in paths:
        assert path.is_file() and path.read_bytes().startswith(PNG_MAGIC)


def test_smile_panels_sit_inside_the_figure_without_overlapping(calibration):
    """The fixed margins of the SVI-fit panels (no tight_layout): every panel inside the figure, no two
    overlapping, room for the tick labels on the left; panels too small for the margins still render."""
    from shoals.reports.plots import figure_png, smiles_figure

    figure = smiles_figure(calibration, panel_size=(3.4, 2.6))
    boxes = [axis.get_position() for axis in figure.axes if axis.get_visible()]
    assert len(boxes) == calibration.smiles.n_slices
    width, _ = figure.get_size_inches()
    for index, box in enumerate(boxes):
        assert 0.0 < box.x0 < box.x1 < 1.0 and 0.0 < box.y0 < box.y1 < 1.0
        assert box.x0 * width >= 0.5                                  # inches left of each axis for its labels
        for other in boxes[index + 1:]:
            assert box.x1 <= other.x0 or other.x1 <= box.x0 or box.y1 <= other.y0 or other.y1 <= box.y0
    with warnings.catch_warnings():              # matplotlib may warn that such panels cannot fit their labels
        warnings.simplefilter("ignore", UserWarning)
        assert figure_png(smiles_figure(calibration, panel_size=(0.8, 0.6))).startswith(PNG_MAGIC)


def test_a_plot_that_fails_leaves_a_note(calibration, local_vol, monkeypatch):
    from shoals.reports import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no <backend>")

    monkeypatch.setattr(plots, "vega_ladder_figure", broken)
    text = render_html_report(_result(calibration, local_vol, with_calibration=False))
    assert 'plot "vega ladder" not drawn: RuntimeError: no &lt;backend&gt;' in text
    assert "<h2>Market-quote vega</h2>" in text  # the rest of the report is there


def test_importing_the_report_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, shoals.reports.html, shoals.reports.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

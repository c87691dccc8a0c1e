"""`shoals calibrate`: quotes -> market file (BOOK_SCHEMA.md) that `shoals price`-side readers accept,
with the cleaning, fit and arbitrage reports printed, and plots on request."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from shoals.arbitrage.checks import check_arbitrage
from shoals.cli.main import app
from shoals.data import path as data_path
from shoals.io.market import read_market

runner = CliRunner()
DAX = data_path("dax_20020705_clean.csv")


@pytest.fixture(scope="module")
def dax_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dax")
    result = runner.invoke(app, ["calibrate", str(DAX), "--out", str(folder / "market.json"),
                                 "--plot", str(folder / "plots")])
    return result, folder


def test_dax_vol_grid_calibrates_to_an_arbitrage_free_market_file(dax_run):
    result, folder = dax_run
    assert result.exit_code == 0, result.output
    data = json.loads((folder / "market.json").read_text())
    assert set(data) == {"spot", "rate", "dividend", "svi"}
    assert len(data["svi"]) == 8
    snapshot = read_market(folder / "market.json")
    assert check_arbitrage(snapshot.surface).ok
    meta = json.loads(data_path("dax_20020705_meta.json").read_text())
    assert float(snapshot.spot) == pytest.approx(meta.get("spot", 4468.17))
    # The written curves reproduce the file's forwards at its expiries.
    for expiry, forward in zip(*np.unique(np.genfromtxt(DAX, delimiter=",", names=True, dtype=None, encoding=None)
                                          [["expiry_years", "forward"]].tolist(), axis=0).T):
        assert float(snapshot.forward(float(expiry))) == pytest.approx(float(forward), rel=1e-9)


def test_reports_and_plots(dax_run):
    result, folder = dax_run
    assert "flagged" in result.output and "butterfly" in result.output   # the raw grid's convexity breaks
    assert "arbitrage of the written surface" in result.output and "no arbitrage found" in result.output
    for name in ("smiles.png", "surface.png", "local_vol.png"):
        assert (folder / "plots" / name).stat().st_size > 10_000


def test_bad_quote_file_exits_2_naming_the_problem(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("expiry_years,strike,option_type,bid,ask\n0.5,100,X,1,2\n")
    result = runner.invoke(app, ["calibrate", str(path), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2
    assert "option_type" in result.output

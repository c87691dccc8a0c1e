"""`shoals run`: the files it writes, --no-vega, --executor, --strict, file-level errors, on tiny books priced on
the skewed SVI market of tests/support.py (written as a market file).  The embedded 150-trade example is only
run by the slow test."""

import json

import numpy as np
import pandas as pd
import pytest
from support import SKEWED_EXPIRIES, skewed_snapshot
from typer.testing import CliRunner

import shoals  # noqa: F401  (float64)
from shoals.cli.main import app
from shoals.io.market import read_market, write_market

runner = CliRunner()

HEADER = "id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type"
EUROPEAN = "eu,european,call,100,0.6,2,10,,"
BARRIER = "dao,barrier,call,100,0.5,-1,5,85,down-and-out"
TRADE_COLUMNS = ["id", "price", "npv", "delta", "gamma", "vega", "theta", "rho", "std_error", "method", "status",
                 "instrument", "quantity", "notional"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cli_run")


@pytest.fixture(scope="module")
def market(folder):
    return write_market(skewed_snapshot(100.0, 0.03, 0.01), folder / "market.json")


def write(folder, lines, name):
    path = folder / name
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def outputs(folder, market):
    """``shoals run`` with the ladder on a European and a barrier: (the CliRunner result, the output folder)."""
    out = folder / "full"
    result = runner.invoke(app, ["run", "--market", str(market), "--book", str(write(folder, [EUROPEAN, BARRIER],
                                                                                      "book.csv")),
                                 "--out", str(out)])
    return result, out


def test_run_writes_every_output(outputs):
    result, out = outputs
    assert result.exit_code == 0, result.output
    for name in ("trades.csv", "trades.parquet", "ladder.csv", "summary.json", "surface.json", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    trades = pd.read_csv(out / "trades.csv")
    assert list(trades.columns) == TRADE_COLUMNS
    assert list(trades["id"]) == ["eu", "dao"] and (trades["status"] == "ok").all()
    assert list(trades["instrument"]) == ["european", "barrier"]
    np.testing.assert_allclose(trades["npv"], trades["price"] * trades["quantity"] * trades["notional"], rtol=1e-12)
    assert trades[["price", "delta", "gamma", "vega", "theta"]].notna().all().all()
    parquet = pd.read_parquet(out / "trades.parquet")
    assert list(parquet.columns) == TRADE_COLUMNS
    np.testing.assert_allclose(parquet["price"], trades["price"], rtol=1e-15)
    assert "<html" in (out / "report.html").read_text().lower()


def test_ladder_summary_and_surface_files(outputs):
    result, out = outputs
    assert result.exit_code == 0, result.output
    ladder = pd.read_csv(out / "ladder.csv")
    assert list(ladder.columns) == ["expiry", "vega_bump", "vega_aad"]
    np.testing.assert_allclose(ladder["expiry"], SKEWED_EXPIRIES)
    assert ladder[["vega_bump", "vega_aad"]].notna().all().all()
    bump, aad = ladder["vega_bump"].to_numpy(), ladder["vega_aad"].to_numpy()
    assert np.max(np.abs(aad - bump)) < 0.02 * np.max(np.abs(bump))
    summary = json.loads((out / "summary.json").read_text())
    for key in ("npv", "delta", "gamma", "theta", "vega", "trades", "failed"):
        assert key in summary, key
    assert summary["trades"] == 2 and summary["failed"] == 0
    trades = pd.read_csv(out / "trades.csv")
    assert summary["npv"] == pytest.approx(trades["npv"].sum(), rel=1e-12)
    assert summary["vega"] == pytest.approx(bump.sum(), rel=1e-9)
    surface = read_market(out / "surface.json")
    reference = skewed_snapshot(100.0, 0.03, 0.01)
    np.testing.assert_allclose(np.asarray(surface.surface.expiries), SKEWED_EXPIRIES)
    k = np.linspace(-0.5, 0.3, 9)
    for t in (0.25, 0.6, 2.0):
        np.testing.assert_allclose(np.asarray(surface.surface.total_variance(k, t)),
                                   np.asarray(reference.surface.total_variance(k, t)), rtol=1e-12)
    assert float(surface.spot) == 100.0


def test_no_vega_leaves_the_ladder_empty(folder, market):
    out = folder / "no_vega"
    result = runner.invoke(app, ["run", "--market", str(market), "--book", str(write(folder, [EUROPEAN], "one.csv")),
                                 "--out", str(out), "--no-vega"])
    assert result.exit_code == 0, result.output
    ladder = pd.read_csv(out / "ladder.csv")
    assert list(ladder.columns) == ["expiry", "vega_bump", "vega_aad"] and len(ladder) == len(SKEWED_EXPIRIES)
    assert ladder[["vega_bump", "vega_aad"]].isna().all().all()
    trades = pd.read_csv(out / "trades.csv")
    assert trades.loc[0, "status"] == "ok" and np.isfinite(trades.loc[0, "price"])
    assert np.isnan(trades.loc[0, "vega"])


def test_unknown_executor_exits_2_naming_the_accepted_forms(folder, market):
    result = runner.invoke(app, ["run", "--market", str(market), "--book", str(write(folder, [EUROPEAN], "e.csv")),
                                 "--out", str(folder / "bogus"), "--executor", "bogus"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    for word in ("bogus", "serial", "processes", "processes:N"):
        assert word in text, word
    assert not (folder / "bogus" / "trades.csv").exists()


def test_strict_exits_1_when_a_row_fails(folder, market):
    book = write(folder, [EUROPEAN, "bad,european,put,-5,0.6,1,1,,"], "strict.csv")
    out = folder / "strict"
    result = runner.invoke(app, ["run", "--market", str(market), "--book", str(book), "--out", str(out),
                                 "--no-vega", "--strict"])
    assert result.exit_code == 1, result.output
    trades = pd.read_csv(out / "trades.csv").set_index("id")
    assert trades.loc["eu", "status"] == "ok"
    assert trades.loc["bad", "status"].startswith("error:") and "strike" in trades.loc["bad", "status"]
    assert "bad" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and summary["trades"] == 2


def test_quotes_and_market_together_exit_2(folder, market):
    quotes = folder / "quotes.csv"
    quotes.write_text("expiry_years,strike,option_type,bid,ask\n0.5,100,C,5,5.2\n")
    result = runner.invoke(app, ["run", "--market", str(market), "--quotes", str(quotes),
                                 "--book", str(write(folder, [EUROPEAN], "q.csv")), "--out", str(folder / "both")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "quotes" in text and "market" in text


@pytest.mark.slow
def test_embedded_example_without_vega(tmp_path):
    result = runner.invoke(app, ["run", "--out", str(tmp_path), "--no-vega"])
    assert result.exit_code == 0, result.output
    trades = pd.read_csv(tmp_path / "trades.csv")
    assert len(trades) == 150 and (trades["status"] == "ok").all(), trades.loc[trades["status"] != "ok", "status"]
    assert list(trades.columns) == TRADE_COLUMNS
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trades"] == 150 and summary["failed"] == 0


def test_ctrl_c_leaves_whole_checkpoints_and_resume_prices_only_the_rest(folder, market, monkeypatch):
    import shoals.risk.run as run_module

    book = write(folder, [EUROPEAN, BARRIER], "resume.csv")  # two chunks (one type each)
    # serial: the chunks run one after the other, so the interrupt comes after exactly one whole chunk
    arguments = ["run", "--market", str(market), "--book", str(book), "--no-vega", "--executor", "serial"]
    whole = folder / "whole"
    assert runner.invoke(app, [*arguments, "--out", str(whole)]).exit_code == 0
    price_chunk, calls = run_module.price_chunk, []

    def interrupted_at(at):
        def priced(task, shared):
            calls.append(task.rows[0].id)
            if len(calls) == at:
                raise KeyboardInterrupt  # what Ctrl-C raises in the main process
            return price_chunk(task, shared)
        return priced

    out = folder / "interrupted"
    monkeypatch.setattr(run_module, "price_chunk", interrupted_at(2))
    result = runner.invoke(app, [*arguments, "--out", str(out)])
    assert result.exit_code == 130 and "--resume" in " ".join(result.output.split())
    assert not (out / "trades.csv").exists()
    assert [path.name for path in (out / "checkpoint").glob("*task-*")] == ["task-000001.pkl"]  # no temp file
    calls.clear()
    monkeypatch.setattr(run_module, "price_chunk", interrupted_at(None))
    result = runner.invoke(app, [*arguments, "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == ["eu"]  # the barrier chunk came from the checkpoint
    assert (out / "trades.csv").read_bytes() == (whole / "trades.csv").read_bytes()
    assert json.loads((out / "summary.json").read_text())["checkpoint"]["reused"] == 1
    # another book, or an --out that is not the resumed folder, is refused
    other = write(folder, [EUROPEAN], "other.csv")
    result = runner.invoke(app, ["run", "--market", str(market), "--book", str(other), "--no-vega", "--resume", str(out)])
    assert result.exit_code == 2 and "book" in " ".join(result.output.split())
    result = runner.invoke(app, [*arguments, "--resume", str(out), "--out", str(whole)])
    assert result.exit_code == 2 and "--resume" in result.output

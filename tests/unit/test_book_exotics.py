"""`shoals price` on a book of every instrument: grouped batches, Auto method choice and Monte Carlo fallback,
one bad trade isolated, per-row flat markets or one market file (local vol)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import shoals as sh
from shoals.cli.main import app
from shoals.io.market import write_market
from support import skewed_snapshot

runner = CliRunner()

BOOK = """id,instrument,option_type,strike,maturity,barrier,barrier_type,rebate,strike_type,average,fixings,resets,global_cap,spot,rate,dividend,vol
eu,european,call,100,1,,,,,,,,,100,0.03,0.01,0.2
am,american,put,100,1,,,,,,,,,100,0.03,0.01,0.2
do,barrier,call,100,1,80,down-and-out,1,,,,,,100,0.03,0.01,0.2
ui,barrier,put,95,0.5,115,up-and-in,,,,,,,100,0.03,0.01,0.2
lb,lookback,call,100,1,,,,fixed,,,,,100,0.03,0.01,0.2
as,asian,call,100,1,,,,,arithmetic,12,,,100,0.03,0.01,0.2
cl,cliquet,call,,1,,,,,,,4,,100,0.03,0.01,0.2
cg,cliquet,call,,1,,,,,,,4,0.1,100,0.03,0.01,0.2
br,barrier,call,100,1,105,down-and-out,,,,,,,100,0.03,0.01,0.2
"""


def _run(tmp_path, text, *options):
    book = tmp_path / "book.csv"
    book.write_text(text)
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["price", str(book), "--out", str(out), "--paths", "20000", *options])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out).set_index("id")


def test_every_instrument_is_priced_with_auto_and_the_method_is_reported(tmp_path):
    frame = _run(tmp_path, BOOK)
    assert (frame.drop(index="br")["status"] == "ok").all(), frame["status"].to_dict()
    assert "barrier" in frame.loc["br", "status"] and "breached" in frame.loc["br", "status"]
    assert frame.loc["eu", "method"] == "closed-form"
    assert (frame.loc[["am", "do", "ui", "lb", "as", "cl"], "method"] == "finite-difference").all()
    assert frame.loc["cg", "method"] == "monte-carlo"                     # global cap: the PDE declines it
    assert frame.loc["cg", "std_error"] > 0 and frame.loc["cg", "price"] <= frame.loc["cl", "price"] + 1e-3
    assert frame.loc["am", "price"] >= sh.black_scholes_price(spots=100.0, strikes=100.0, expiries=1.0,
                                                              volatilities=0.2, rates=0.03, dividend_yields=0.01,
                                                              is_call=False)
    assert np.isfinite(frame.drop(index="br")[["delta", "gamma", "vega"]].to_numpy()).all()
    assert np.isfinite(frame.drop(index=["br", "cg"])["theta"]).all()     # MC cliquet theta: NaN (documented)


def test_book_under_a_market_file_prices_every_instrument_under_local_vol(tmp_path):
    market = tmp_path / "market.json"
    write_market(skewed_snapshot(), market)
    text = "\n".join(",".join(line.split(",")[:-4]) for line in BOOK.strip().splitlines() if not line.startswith("br"))
    frame = _run(tmp_path, text + "\n", "--market", str(market))
    assert (frame["status"] == "ok").all(), frame["status"].to_dict()
    assert frame.loc["eu", "method"] == "finite-difference"               # no closed form under local vol
    assert frame.loc["cg", "method"] == "monte-carlo"


def test_per_row_market_with_a_market_file_is_a_row_error(tmp_path):
    market = tmp_path / "market.json"
    write_market(skewed_snapshot(), market)
    frame = _run(tmp_path, "\n".join(BOOK.splitlines()[:2]) + "\n", "--market", str(market))
    assert "market file" in frame.loc["eu", "status"]

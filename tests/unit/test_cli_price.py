"""`shoals price`: schema of the output, per-row status, file-level errors, methods, determinism."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import shoals as sh
from shoals.cli.main import app
from shoals.risk import OUTPUT_COLUMNS

runner = CliRunner()

HEADER = "id,instrument,option_type,strike,maturity,quantity,notional,spot,rate,dividend,vol"


def write(tmp_path, text, name="book.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_embedded_example_runs_and_matches_closed_form(tmp_path):
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["price", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == OUTPUT_COLUMNS
    assert (frame["status"] == "ok").all() and len(frame) == 20
    book = pd.read_csv(sh.cli.main._example_book())
    expected = sh.black_scholes_price(spots=book.spot, strikes=book.strike, expiries=book.maturity,
                                      volatilities=book.vol, rates=book.rate, dividend_yields=book.dividend,
                                      is_call=(book.option_type == "call").to_numpy())
    np.testing.assert_allclose(frame["price"], np.asarray(expected), rtol=1e-14)
    np.testing.assert_allclose(frame["npv"], frame["price"] * book.quantity * book.notional, rtol=1e-14)


def test_reference_values_through_the_cli(tmp_path):
    book = write(tmp_path, HEADER + "\n" + "\n".join(
        f"s{spot},european,call,100,1,1,1,{spot},0.05,0,0.2" for spot in (80, 100, 120))
        + "\np100,european,put,100,1,1,1,100,0.05,0,0.2\n")
    out = tmp_path / "r.csv"
    assert runner.invoke(app, ["price", str(book), "--out", str(out)]).exit_code == 0
    prices = pd.read_csv(out).set_index("id")["price"]
    assert prices["s80"] == pytest.approx(1.8594, abs=5e-5)
    assert prices["s100"] == pytest.approx(10.4506, abs=5e-5)
    assert prices["s120"] == pytest.approx(26.169, abs=5e-4)
    assert prices["p100"] == pytest.approx(5.5735, abs=5e-5)


def test_bad_rows_get_status_and_the_rest_completes(tmp_path):
    book = write(tmp_path, "\n".join([
        HEADER + ",barrier",
        "ok1,european,call,100,1,1,1,100,0.05,0,0.2,",
        "negstrike,european,call,-5,1,1,1,100,0.05,0,0.2,",
        "nanvol,european,put,100,1,1,1,100,0.05,0,nan,",
        "novol,european,put,100,1,1,1,100,0.05,0,,",
        "expired,european,put,100,0,1,1,100,0.05,0,0.2,",
        "typo,europian,put,100,1,1,1,100,0.05,0,0.2,",
        "wrongkey,european,put,100,1,1,1,100,0.05,0,0.2,90",
        "notyet,barrier,put,100,1,1,1,100,0.05,0,0.2,90",
        "ok2,european,put,100,1,-2,10,100,0.05,0,0.2,",
    ]) + "\n")
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["price", str(book), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out).set_index("id")
    assert list(frame.index) == ["ok1", "negstrike", "nanvol", "novol", "expired", "typo", "wrongkey", "notyet",
                                 "ok2"]
    assert frame.loc["ok1", "status"] == "ok" and frame.loc["ok2", "status"] == "ok"
    assert frame.loc["ok2", "npv"] == pytest.approx(-20 * frame.loc["ok2", "price"])
    expectations = {"negstrike": ("row 2", "strike"), "nanvol": ("row 3", "vol"), "novol": ("row 4", "vol"),
                    "expired": ("row 5", "maturity"), "typo": ("row 6", "instrument"),
                    "wrongkey": ("row 7", "barrier"), "notyet": ("row 8", "barrier")}
    for trade, words in expectations.items():
        status = frame.loc[trade, "status"]
        assert status.startswith("error"), trade
        for word in words:
            assert word in status, (trade, status)
        assert np.isnan(frame.loc[trade, "price"])
    assert runner.invoke(app, ["price", str(book), "--out", str(out), "--strict"]).exit_code == 1


@pytest.mark.parametrize("text, words", [
    (HEADER + ",colour\na,european,call,100,1,1,1,100,0.05,0,0.2,red\n", ["colour", "row 1"]),
    (HEADER + "\na,european,call,100,1,1,1,100,0.05,0,0.2\na,european,put,100,1,1,1,100,0.05,0,0.2\n",
     ["duplicate", "row 2"]),
    ("instrument,option_type\neuropean,call\n", ["id"]),
])
def test_file_level_errors_exit_2_naming_key_and_row(tmp_path, text, words):
    result = runner.invoke(app, ["price", str(write(tmp_path, text)), "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    for word in words:
        assert word in result.output


def test_missing_file_and_unknown_output_type(tmp_path):
    assert runner.invoke(app, ["price", str(tmp_path / "none.csv")]).exit_code == 2
    result = runner.invoke(app, ["price", "--out", str(tmp_path / "r.xlsx")])
    assert result.exit_code == 2 and "xlsx" in result.output


def test_parquet_and_json_books_and_outputs(tmp_path):
    rows = pd.DataFrame({"id": ["a", "b"], "instrument": ["european", "european"], "option_type": ["call", "put"],
                         "strike": [100.0, 90.0], "maturity": [1.0, 0.5], "spot": [100.0, 100.0],
                         "rate": [0.05, 0.05], "vol": [0.2, 0.3]})
    rows.to_parquet(tmp_path / "b.parquet")
    (tmp_path / "b.json").write_text(json.dumps(rows.to_dict(orient="records")))
    for book, out in (("b.parquet", "r.json"), ("b.json", "r.parquet")):
        result = runner.invoke(app, ["price", str(tmp_path / book), "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    from_json = pd.read_json(tmp_path / "r.json")
    from_parquet = pd.read_parquet(tmp_path / "r.parquet")
    np.testing.assert_array_equal(from_json["price"], from_parquet["price"])


def test_maturity_date_needs_and_uses_valuation_date(tmp_path):
    text = ("id,instrument,option_type,strike,maturity_date,spot,rate,vol\n"
            "a,european,call,100,2012-01-24,100,0.05,0.2\n")
    book = write(tmp_path, text)
    out = tmp_path / "r.csv"
    assert runner.invoke(app, ["price", str(book), "--out", str(out)]).exit_code == 0
    assert "valuation" in pd.read_csv(out)["status"][0]
    assert runner.invoke(app, ["price", str(book), "--out", str(out), "--valuation-date", "2011-01-24"]).exit_code == 0
    expected = sh.black_scholes_price(spots=100.0, strikes=100.0, expiries=365 / 365.0, volatilities=0.2, rates=0.05)
    assert pd.read_csv(out)["price"][0] == pytest.approx(float(expected), rel=1e-14)


def test_monte_carlo_method_within_standard_errors_and_independent_of_row_order(tmp_path):
    lines = [f"t{i},european,{'call' if i % 2 else 'put'},{90 + 5 * i},1,1,1,100,0.03,0.01,0.25" for i in range(5)]
    forward = write(tmp_path, HEADER + "\n" + "\n".join(lines) + "\n", "f.csv")
    backward = write(tmp_path, HEADER + "\n" + "\n".join(reversed(lines)) + "\n", "b.csv")
    args = ["--method", "monte-carlo", "--paths", "200000", "--seed", "11"]
    for book, out in ((forward, "f_out.csv"), (backward, "b_out.csv"), (forward, "closed.csv")):
        extra = args if out != "closed.csv" else []
        assert runner.invoke(app, ["price", str(book), "--out", str(tmp_path / out), *extra]).exit_code == 0
    mc = pd.read_csv(tmp_path / "f_out.csv").set_index("id")
    mc_reversed = pd.read_csv(tmp_path / "b_out.csv").set_index("id")
    exact = pd.read_csv(tmp_path / "closed.csv").set_index("id")
    assert (mc["method"] == "monte-carlo").all()
    np.testing.assert_array_equal(mc["price"], mc_reversed.loc[mc.index, "price"])
    assert (np.abs(mc["price"] - exact["price"]) < 4 * mc["std_error"]).all()

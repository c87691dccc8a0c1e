"""`shoals var` and `shoals hedge-sim` on the embedded example: table, JSON keys, plots, errors."""

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import shoals  # noqa: F401  (float64)
from shoals.cli.risk_commands import register
from shoals.risk.var import Portfolio, value_at_risk

runner = CliRunner()


@pytest.fixture(scope="module")
def app():
    local = typer.Typer()
    register(local)
    return local


def test_var_on_the_embedded_example_writes_json_and_plot(app, tmp_path):
    figures, plot = tmp_path / "var.json", tmp_path / "var.png"
    result = runner.invoke(app, ["var", "--sims", "20000", "--seed", "3", "--json", str(figures),
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "VaR" in result.output and "CVaR" in result.output
    payload = json.loads(figures.read_text())
    assert {"var_95", "var_99", "cvar_95", "cvar_99"} <= payload.keys()
    assert 0 < payload["var_95"] < payload["var_99"] < payload["cvar_99"]
    assert payload["var_95"] < payload["cvar_95"]
    assert payload["settings"]["horizon_days"] == 10 and payload["settings"]["value"] == 1_000_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_var_of_a_file_with_historical_returns(app, tmp_path):
    portfolio = {"assets": ["A", "B"], "weights": [0.6, 0.4], "expected_returns": [0.05, 0.08],
                 "volatilities": [0.2, 0.3], "correlation": [[1, 0.2], [0.2, 1]], "value": 1000}
    file = tmp_path / "p.json"
    file.write_text(json.dumps(portfolio))
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(0, 0.01, size=(300, 2)), columns=["A", "B"])
    table.to_csv(tmp_path / "returns.csv", index=False)
    figures = tmp_path / "out.json"
    result = runner.invoke(app, ["var", str(file), "--sims", "5000", "--horizon", "5", "--levels", "97.5",
                                 "--returns", str(tmp_path / "returns.csv"), "--json", str(figures)])
    assert result.exit_code == 0, result.output
    payload = json.loads(figures.read_text())
    expected = value_at_risk(Portfolio.from_mapping(portfolio), horizon_days=5, levels=(0.975,), simulations=5000)
    assert payload["var_97.5"] == pytest.approx(expected.var[0], rel=1e-12)
    assert payload["historical"]["settings"]["windows"] == 296


def test_var_reports_a_bad_correlation(app, tmp_path):
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"assets": ["a", "b", "c"], "weights": [0.3, 0.3, 0.4], "expected_returns": [0.1] * 3,
                                "volatilities": [0.2] * 3, "value": 1,
                                "correlation": [[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]]}))
    result = runner.invoke(app, ["var", str(file)])
    assert result.exit_code == 2
    assert "Portfolio.correlation" in result.output and "eigenvalue" in result.output


def test_hedge_sim_writes_statistics_and_heatmap(app, tmp_path):
    result = runner.invoke(app, ["hedge-sim", "--strikes", "3", "--maturities", "2", "--paths", "200", "--steps",
                                 "10", "--out", str(tmp_path), "--format", "parquet"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "hedge_pnl_stats.parquet")
    assert len(frame) == 6 and {"strike", "expiry", "moneyness", "mean", "std", "q50"} <= set(frame.columns)
    assert (tmp_path / "hedge_pnl_mean.png").read_bytes()[:4] == b"\x89PNG"


def test_hedge_sim_on_a_missing_gpu_is_a_clear_error(app, tmp_path):
    import jax

    if any(device.platform == "gpu" for device in jax.devices()):
        pytest.skip("a GPU is present")
    result = runner.invoke(app, ["hedge-sim", "--device", "gpu", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no GPU visible" in result.output


def test_var_reads_a_yaml_portfolio_through_the_shoals_command(tmp_path):
    from shoals.cli.main import app as shoals_app

    file = tmp_path / "portfolio.yaml"
    file.write_text("assets: [A, B]\nweights: [0.6, 0.4]\nexpected_returns: [0.1, 0.05]\nvolatilities: [0.2, 0.1]\n"
                    "correlation: [[1.0, 0.3], [0.3, 1.0]]\nvalue: 1000000\n")
    figures = tmp_path / "figures.json"
    result = runner.invoke(shoals_app, ["var", str(file), "--sims", "20000", "--json", str(figures)])
    assert result.exit_code == 0, result.output
    payload = json.loads(figures.read_text())
    assert 0.0 < payload["var_95"] < payload["cvar_95"] and payload["var_95"] < payload["var_99"]

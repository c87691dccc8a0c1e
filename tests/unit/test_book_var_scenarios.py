"""Scenarios of the full-revaluation VaR (:mod:`shoals.risk.revaluation`): the simulated law (moments within
standard errors, deterministic and prefix-stable draws, the term structure of vol moves), historical windows
checked by hand, the book after a shock (breached barriers, lookback extremes), validation errors and
``shoals book-var``."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import shoals  # noqa: F401  (float64)
from shoals.cli.risk_commands import register
from shoals.errors import InputError
from shoals.greeks.vega_ladder import pillar_atm_vols
from shoals.instruments import Barrier, European, Lookback
from shoals.io.book import BookRow
from shoals.market.curves import ZeroCurve
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface
from shoals.risk.revaluation import (
    Scenarios,
    historical_scenarios,
    scenario_rows,
    simulated_scenarios,
)

EXPIRIES = np.array([0.25, 1.0, 4.0])
RATE = 0.05


@pytest.fixture(scope="module")
def snapshot():
    surface = VolSurface.from_svi(expiries=EXPIRIES, a=0.02 * EXPIRIES, b=0.1 * np.sqrt(EXPIRIES), rho=-0.5,
                                  m=0.0, sigma=0.2 * np.sqrt(EXPIRIES))
    return MarketSnapshot(spot=jnp.asarray(100.0), rate=ZeroCurve.flat(RATE), dividend=ZeroCurve.flat(0.0),
                          surface=surface)


def test_simulated_scenarios_have_the_stated_law(snapshot):
    count, days, spot_vol, nu, rho = 40_000, 10, 0.25, 0.4, -0.7
    scenarios = simulated_scenarios(snapshot, count, horizon_days=days, spot_vol=spot_vol, vol_of_vol=nu,
                                    correlation=rho, term_exponent=0.5, seed=3)
    h = days / 252
    x = scenarios.spot_return
    standard_error = spot_vol * np.sqrt(h / count)
    assert abs(x.mean() + 0.5 * spot_vol ** 2 * h) < 4 * standard_error
    assert abs(x.std() - spot_vol * np.sqrt(h)) < 4 * spot_vol * np.sqrt(h) / np.sqrt(2 * count)
    sigma = pillar_atm_vols(snapshot.surface)
    log_moves = np.log1p(scenarios.vol_shift / sigma)          # nu_i sqrt(h) (rho z1 + ...) - nu_i^2 h / 2
    nu_i = nu * EXPIRIES ** -0.5
    np.testing.assert_allclose(log_moves.std(axis=0), nu_i * np.sqrt(h), rtol=4 / np.sqrt(2 * count))
    np.testing.assert_allclose(log_moves.mean(axis=0), -0.5 * nu_i ** 2 * h, atol=4 * (nu_i * np.sqrt(h / count)).max())
    assert abs(np.corrcoef(x, log_moves[:, 1])[0, 1] - rho) < 4 * (1 - rho ** 2) / np.sqrt(count)
    # Every pillar moves with one factor: the log-moves are proportional to nu_i.
    np.testing.assert_allclose((log_moves + 0.5 * nu_i ** 2 * h) / nu_i, np.repeat(
        ((log_moves[:, :1] + 0.5 * nu_i[0] ** 2 * h) / nu_i[0]), EXPIRIES.size, axis=1), atol=1e-12)
    assert np.all(scenarios.vol_shift > -sigma)


def test_simulated_scenarios_depend_only_on_seed_and_index(snapshot):
    short = simulated_scenarios(snapshot, 5, seed=7)
    long = simulated_scenarios(snapshot, 50, seed=7)
    np.testing.assert_array_equal(long.spot_return[:5], short.spot_return)
    np.testing.assert_array_equal(long.vol_shift[:5], short.vol_shift)
    assert not np.array_equal(simulated_scenarios(snapshot, 5, seed=8).spot_return, short.spot_return)
    flat = simulated_scenarios(snapshot, 5, seed=7, term_exponent=0.0)
    relative = flat.vol_shift / pillar_atm_vols(snapshot.surface)
    np.testing.assert_allclose(relative, relative[:, :1].repeat(EXPIRIES.size, axis=1), rtol=1e-12)


def test_historical_windows_by_hand(snapshot):
    history = pd.DataFrame({"spot_return": [0.01, -0.02, 0.03, 0.005], "vol_return": [0.1, -0.05, 0.0, 0.2]})
    scenarios = historical_scenarios(history, snapshot, horizon_days=2)
    np.testing.assert_allclose(scenarios.spot_return, [-0.01, 0.01, 0.035])
    sigma = pillar_atm_vols(snapshot.surface)
    np.testing.assert_allclose(scenarios.vol_shift, sigma * np.expm1(np.array([0.05, -0.05, 0.2]))[:, None])
    tilted = historical_scenarios(history, snapshot, horizon_days=1, term_exponent=1.0)
    np.testing.assert_allclose(tilted.vol_shift[0], sigma * np.expm1(0.1 / EXPIRIES))
    spot_only = historical_scenarios(history[["spot_return"]], snapshot)
    assert spot_only.count == 4 and not spot_only.vol_shift.any()


def test_historical_scenarios_name_the_bad_row_and_field(snapshot, tmp_path):
    with pytest.raises(InputError, match="vol_return") as error:
        historical_scenarios(pd.DataFrame({"spot_return": [0.01, 0.02], "vol_return": [0.1, np.nan]}), snapshot)
    assert error.value.row == 2
    with pytest.raises(InputError, match="spot_return"):
        historical_scenarios(pd.DataFrame({"close": [1.0]}), snapshot)
    with pytest.raises(InputError, match="horizon_days"):
        historical_scenarios(pd.DataFrame({"spot_return": [0.01]}), snapshot, horizon_days=2)
    with pytest.raises(InputError, match="not found"):
        historical_scenarios(tmp_path / "missing.csv", snapshot)


def test_scenarios_are_validated(snapshot):
    with pytest.raises(InputError, match="scenarios.vol_shift"):
        Scenarios(spot_return=[0.0, 0.1], vol_shift=np.zeros((3, 2)))
    with pytest.raises(InputError, match="scenario 1 is not finite"):
        Scenarios(spot_return=[0.0, np.nan], vol_shift=np.zeros((2, 2)))
    for bad in ({"correlation": 1.5}, {"vol_of_vol": -0.1}, {"spot_vol": 0.0}):
        with pytest.raises(InputError, match=next(iter(bad))):
            simulated_scenarios(snapshot, 3, **bad)
    with pytest.raises(InputError, match="scenarios"):
        simulated_scenarios(snapshot, 0)


def row(contract, instrument):
    return BookRow(row=1, id="t", fields={"instrument": instrument, "quantity": 1.0, "notional": 1.0},
                   contract=contract)


def test_the_book_after_a_shock(snapshot):
    knock_in = Barrier(strike=95.0, maturity=1.0, barrier=110.0, is_call=False, is_up=True, is_knock_in=True)
    knock_out = Barrier(strike=100.0, maturity=2.0, barrier=90.0, rebate=3.0)
    paid_at_expiry = Barrier(strike=100.0, maturity=2.0, barrier=90.0, rebate=3.0, rebate_at_hit=False)
    floating_call = Lookback(maturity=1.0)
    fixed_call = Lookback(maturity=1.0, strike=100.0, floating=False, running_extreme=105.0)
    rows = [row(c, "barrier") for c in (knock_in, knock_out, paid_at_expiry)] + [
        row(c, "lookback") for c in (floating_call, fixed_call)]
    up, values = scenario_rows(rows, snapshot.bump(spot=jnp.asarray(112.0)), 100.0)
    assert up[0].contract == European(strike=95.0, maturity=1.0, is_call=False) and up[0].instrument == "european"
    assert up[1] is rows[1] and values == {}
    assert float(up[3].contract.running_extreme) == 100.0       # running minimum stays at the base spot
    assert float(up[4].contract.running_extreme) == 112.0       # running maximum takes the new spot
    down, values = scenario_rows(rows, snapshot.bump(spot=jnp.asarray(88.0)), 100.0)
    assert values == {1: 3.0, 2: pytest.approx(3.0 * np.exp(-2 * RATE), rel=1e-12)}
    assert down[0] is rows[0]
    assert float(down[3].contract.running_extreme) == 88.0
    assert float(down[4].contract.running_extreme) == 105.0


def test_book_var_cli_writes_figures_and_scenarios(tmp_path):
    app = typer.Typer()
    register(app)
    book = tmp_path / "book.csv"
    book.write_text("id,instrument,option_type,strike,maturity,quantity,notional\n"
                    "c,european,call,100,0.5,1,100\np,european,put,90,1.0,-2,100\n")
    figures, scenario_file = tmp_path / "var.json", tmp_path / "pnl.csv"
    result = CliRunner().invoke(app, ["book-var", "--book", str(book), "--scenarios", "6", "--levels", "90",
                                      "--json", str(figures), "--pnl", str(scenario_file)])
    assert result.exit_code == 0, result.output
    payload = json.loads(figures.read_text())
    assert {"var_90", "cvar_90", "approx_var_90", "approx_cvar_90", "approximation_error"} <= payload.keys()
    assert payload["cvar_90"] >= payload["var_90"] and payload["settings"]["included"] == 2
    table = pd.read_csv(scenario_file)
    assert len(table) == 6 and {"spot_return", "pnl", "approximate_pnl"} <= set(table.columns)
    proxy = CliRunner().invoke(app, ["book-var", "--book", str(book), "--scenarios", "6", "--levels", "90",
                                     "--proxy", "--spot-nodes", "5", "--vol-nodes", "3", "--json", str(figures)])
    assert proxy.exit_code == 0, proxy.output
    proxied = json.loads(figures.read_text())
    assert proxied["settings"]["method"] == "chebyshev proxies" and proxied["settings"]["included"] == 2
    assert proxied["var_90"] == pytest.approx(payload["var_90"], rel=2e-2)
    bad = CliRunner().invoke(app, ["book-var", "--book", str(book), "--correlation", "2"])
    assert bad.exit_code == 2 and "correlation" in bad.output

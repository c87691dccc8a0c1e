"""A market file in the "slices" form (total variance on a k-grid per expiry, BOOK_SCHEMA.md "Market") priced
like an SVI market: the skewed SVI surface of tests/support.py (8 slices, T = 0.1 ... 2.5; spot 100, r = 3 %,
q = 1 %) sampled at 400 equally spaced nodes per slice on k in [-2, 2] (h = 0.01), written as a slices
market file and read back.

Measured (2 cores): the Dupire local vol grid (201 x 801, t <= 2) of the slices surface differs from the
SVI one by at most 5.3e-4 in vol in the core |k| <= 1.5 sqrt(t) (largest at T_1 = 0.1, where the SVI smile's
curvature scale sigma = 0.063 is 6 node spacings); PDE European prices under it reproduce the slices
surface's Black prices within 9.6e-4 relative (strikes 70-130 %, T = 0.25, 0.8, 1.25; with the same PDE the
SVI surface under its own local vol is off by 1.7e-3 at T = 0.25, K = 130); ``shoals price`` (finite differences and Monte Carlo) and ``shoals
run`` prices agree with the SVI market's within 2e-4 relative, the run's bump vega ladder with the SVI one's
within 3e-4 of the largest bucket; the bump and AAD vega ladders agree within 3.2e-4 of the largest bucket
(European and barrier book of the run), 1.1e-4 (barriers) and 2.0e-4 (Asians) on the lean grids.  With the
nodes on [-3, 3] (h = 0.015) the repricing error at T = 0.25 grows to 3.2e-3 (node-scale oscillations of
the local vol in the short, sharply curved slices): the node spacing must resolve the shortest smile.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from support import SKEWED_EXPIRIES, skewed_snapshot
from test_local_vol_reprices import relative_errors
from typer.testing import CliRunner

import shoals  # noqa: F401  (float64)
from shoals.cli.main import app
from shoals.errors import InputError
from shoals.greeks.quote_risk import quote_vega
from shoals.greeks.vega_ladder import bumped_vol_grids, ladder_from_bumps, surface_gradient
from shoals.instruments import Asian, Barrier
from shoals.io.market import read_market, write_market
from shoals.market.local_vol import build_local_vol, local_vol_function
from shoals.market.slices import NodeSlices
from shoals.market.surface import VolSurface
from shoals.methods import FiniteDifference

SPOT, RATE, DIVIDEND = 100.0, 0.03, 0.01
NODES, K_RANGE = 400, (-2.0, 2.0)
BOOK = ("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type\n"
        "eu,european,call,100,0.6,2,10,,\n"
        "put,european,put,85,1.3,1,10,,\n"
        "dao,barrier,call,100,0.5,-1,5,85,down-and-out\n")
runner = CliRunner()


def sampled(snapshot, nodes=NODES, k_range=K_RANGE):
    """``snapshot`` with its SVI slices sampled at ``nodes`` equally spaced k on ``k_range``."""
    k = np.linspace(*k_range, nodes)
    w = np.asarray(snapshot.surface.slice_total_variance(k)).T
    surface = VolSurface.from_nodes(expiries=snapshot.surface.expiries, ks=[k] * len(w), ws=list(w))
    return snapshot.bump(surface=surface)


@pytest.fixture(scope="module")
def markets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices_market")
    svi = skewed_snapshot(SPOT, RATE, DIVIDEND)
    nodes = sampled(svi)
    book = folder / "book.csv"
    book.write_text(BOOK)
    return SimpleNamespace(folder=folder, svi=svi, svi_file=write_market(svi, folder / "svi.json"), nodes=nodes,
                           slices_file=write_market(nodes, folder / "slices.json"), book=book)


@pytest.fixture(scope="module")
def grids(markets):
    """Local vol grids (201 x 801, t <= 2) of the SVI and of the slices market, on the same nodes."""
    options = dict(n_times=201, n_spots=801, t_max=2.0)
    svi_grid, svi_report = build_local_vol(markets.svi, **options)
    spot_range = (float(svi_grid.spots[0]), float(svi_grid.spots[-1]))
    return (svi_grid, svi_report), build_local_vol(read_market(markets.slices_file), spot_range=spot_range, **options)


def test_slices_file_round_trip_is_exact(markets):
    data = json.loads(markets.slices_file.read_text())
    assert "svi" not in data and len(data["slices"]) == SKEWED_EXPIRIES.size
    assert {len(s["k"]) for s in data["slices"]} == {NODES} and set(data["slices"][0]) == {"expiry", "k", "w"}
    back = read_market(markets.slices_file)
    assert isinstance(back.surface.params, NodeSlices)
    for name in ("k", "w"):
        np.testing.assert_array_equal(getattr(back.surface.params, name), getattr(markets.nodes.surface.params, name))
    np.testing.assert_array_equal(back.surface.expiries, SKEWED_EXPIRIES)
    again = write_market(back, markets.folder / "again.json")
    assert again.read_text() == markets.slices_file.read_text()
    k = np.linspace(-0.6, 0.4, 7)
    for t in (0.05, 0.6, 3.0):
        np.testing.assert_array_equal(back.surface.total_variance(k, t), markets.nodes.surface.total_variance(k, t))


def test_local_vol_matches_the_svi_surface(grids, markets):
    (svi_grid, _), (grid, report) = grids
    assert report.clean, report.summary()
    np.testing.assert_array_equal(grid.times, svi_grid.times)
    np.testing.assert_allclose(grid.spots, svi_grid.spots, rtol=1e-14)
    difference = np.abs(np.asarray(grid.vols) - np.asarray(svi_grid.vols))
    assert difference[report.core].max() < 1e-3                  # measured 5.3e-4 (at T_1 = 0.1)
    late = report.core & (report.times[:, None] >= 0.5)
    assert difference[late].max() < 3e-4
    times, spots = np.array([0.05, 0.3, 0.8, 1.7]), np.array([85.0, 97.0, 104.0, 120.0])
    direct = np.asarray(local_vol_function(read_market(markets.slices_file))(times, spots)[0])
    reference = np.asarray(local_vol_function(markets.svi)(times, spots)[0])
    np.testing.assert_allclose(direct, reference, rtol=5e-3)


def test_pde_under_the_slices_local_vol_reprices_the_slices_surface(grids, markets):
    """PDE European prices (the independent solver of test_local_vol_reprices.py) against the slices surface's
    own Black prices, strikes 70-130 %, a quoted short maturity, one between slices, a longer one."""
    _, (grid, _) = grids
    errors = relative_errors(read_market(markets.slices_file), grid.vol, [0.25, 0.8, 1.25],
                             np.linspace(70.0, 130.0, 7), n_x=1201, dt=1 / 400)
    assert np.max(np.abs(errors)) < 2e-3, errors                  # measured 9.6e-4 (T = 0.25, K = 70)


@pytest.mark.parametrize("method", ["finite-difference", pytest.param("monte-carlo", marks=pytest.mark.slow)])
def test_shoals_price_on_a_slices_market(markets, method):
    prices = {}
    for name in ("svi", "slices"):
        out = markets.folder / f"price_{method}_{name}.csv"
        result = runner.invoke(app, ["price", str(markets.book), "--market", str(markets.folder / f"{name}.json"),
                                     "--method", method, "--out", str(out)])
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out)
        assert (frame["status"] == "ok").all(), frame["status"]
        prices[name] = frame.set_index("id")["price"]
    tolerance = 1e-3 if method == "finite-difference" else 5e-3    # Monte Carlo: same seed, same draws
    np.testing.assert_allclose(prices["slices"], prices["svi"], rtol=tolerance)


@pytest.fixture(scope="module")
def run_outputs(markets):
    """``shoals run`` on the slices and on the SVI market file, same book: {name: output folder}."""
    folders = {}
    for name in ("slices", "svi"):
        out = markets.folder / f"run_{name}"
        result = runner.invoke(app, ["run", "--market", str(markets.folder / f"{name}.json"), "--book",
                                     str(markets.book), "--out", str(out)])
        assert result.exit_code == 0, result.output
        folders[name] = out
    return folders


def test_shoals_run_on_a_slices_market(run_outputs, markets):
    trades = {name: pd.read_csv(out / "trades.csv").set_index("id") for name, out in run_outputs.items()}
    assert (trades["slices"]["status"] == "ok").all(), trades["slices"]["status"]
    np.testing.assert_allclose(trades["slices"]["price"], trades["svi"]["price"], rtol=1e-3)
    np.testing.assert_allclose(trades["slices"]["vega"], trades["svi"]["vega"], rtol=5e-3)
    summary = json.loads((run_outputs["slices"] / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["quote_vega"].startswith("not computed")
    written = read_market(run_outputs["slices"] / "surface.json")
    np.testing.assert_array_equal(written.surface.params.w, read_market(markets.slices_file).surface.params.w)
    report = (run_outputs["slices"] / "report.html").read_text()
    assert "market-quote vega was not computed" in report and "no arbitrage found" in report


def test_run_ladders_by_bump_and_aad_agree_on_a_slices_market(run_outputs):
    ladder = pd.read_csv(run_outputs["slices"] / "ladder.csv")
    bump, aad = ladder["vega_bump"].to_numpy(), ladder["vega_aad"].to_numpy()
    assert np.max(np.abs(aad - bump)) <= 0.02 * np.max(np.abs(bump))
    reference = pd.read_csv(run_outputs["svi"] / "ladder.csv")["vega_bump"].to_numpy()
    assert np.max(np.abs(bump - reference)) <= 0.01 * np.max(np.abs(reference))


def test_market_quote_vega_refuses_node_slice_sensitivities(markets):
    snapshot = read_market(markets.slices_file)
    sensitivities = jax.grad(lambda s: jnp.sum(s.total_variance(jnp.linspace(-0.2, 0.2, 5), 0.7)))(snapshot.surface)
    calibration = SimpleNamespace(smiles=SimpleNamespace(n_slices=SKEWED_EXPIRIES.size))
    with pytest.raises(InputError, match="SVI fit") as error:
        quote_vega(calibration, sensitivities)
    assert error.value.field == "dvalue_dparams"


@pytest.mark.slow
def test_vega_ladders_agree_on_path_dependent_trades(markets):
    """Bump (central, one vol point per pillar, local vol rebuilt on the base grid) vs one reverse pass through
    the PDE and the Dupire construction of the node slices, on a barrier and an Asian book."""
    snapshot = read_market(markets.slices_file)
    grid, _ = build_local_vol(snapshot, t_max=1.5, n_times=81, n_spots=241)
    bumped = bumped_vol_grids(snapshot, grid)
    lean = FiniteDifference(space_nodes=121, time_steps=80, vega=False)
    book = [(Barrier.of_type("down-and-out", strike=100.0, barrier=np.array([80.0, 85.0]),
                             maturity=np.array([1.0, 0.7]), is_call=True), np.array([2.0, -1.0])),
            (Asian(strike=np.array([100.0, 95.0]), maturity=np.array([1.2, 0.4]), fixings=np.array([12, 4]),
                   is_call=np.array([True, False])), np.array([1.0, 3.0]))]
    for contract, weights in book:
        plan, _ = lean.plan(contract, snapshot, local_vol=grid)
        bump = weights @ ladder_from_bumps(np.stack([np.asarray(plan.values(v)) for v in bumped], axis=1))
        _, gradient = plan.value_and_gradient(weights)
        result = surface_gradient(snapshot, grid, gradient)
        assert isinstance(result.params, NodeSlices) and np.shape(result.params.w) == (SKEWED_EXPIRIES.size, NODES)
        np.testing.assert_allclose(result.ladder, np.asarray(result.params.w).sum(axis=1) * 2.0
                                   * np.sqrt(np.asarray(snapshot.surface.params.total_variance(0.0)) / SKEWED_EXPIRIES)
                                   * SKEWED_EXPIRIES, rtol=1e-12)
        assert np.max(np.abs(result.ladder - bump)) <= 0.02 * np.max(np.abs(bump))


@pytest.mark.slow
def test_book_var_on_a_slices_market(markets):
    figures = {}
    for name in ("svi", "slices"):
        out = markets.folder / f"var_{name}.json"
        result = runner.invoke(app, ["book-var", "--market", str(markets.folder / f"{name}.json"), "--book",
                                     str(markets.book), "--scenarios", "6", "--levels", "90", "--json", str(out)])
        assert result.exit_code == 0, result.output
        figures[name] = json.loads(out.read_text())
    assert figures["slices"]["settings"]["included"] == 3
    assert figures["slices"]["var_90"] == pytest.approx(figures["svi"]["var_90"], rel=5e-3)


SMALL = [{"expiry": t, "k": list(np.linspace(-1.0, 1.0, 200)), "w": list(0.04 * t + 0.05 * np.linspace(-1.0, 1.0, 200) ** 2)}
         for t in (0.5, 1.0)]


def _bad(change):
    data = {"spot": 100.0, "rate": 0.03, "slices": json.loads(json.dumps(SMALL))}
    change(data)
    return data


@pytest.mark.parametrize("change, field, words", [
    (lambda d: d["slices"][1].update(k=d["slices"][1]["k"][:150], w=d["slices"][1]["w"][:150]), "slices[1].k",
     "at least 200"),
    (lambda d: d["slices"][0]["w"].append(0.1), "slices[0].w", "one w per k"),
    (lambda d: d["slices"][1]["k"].__setitem__(7, d["slices"][1]["k"][6]), "slices[1].k", "strictly increasing"),
    (lambda d: d["slices"][0]["w"].__setitem__(3, -0.01), "slices[0].w", "> 0"),
    (lambda d: d["slices"][1]["w"].__setitem__(5, "x"), "slices[1].w[5]", "not a number"),
    (lambda d: d["slices"][0]["k"].__setitem__(5, float("nan")), "slices[0].k[5]", "finite"),
    (lambda d: d["slices"][0].update(sigma=0.2), "slices[0]", "exactly the keys"),
    (lambda d: d["slices"][1].update(expiry=0.5), "slices", "distinct"),
    (lambda d: d["slices"][1].update(expiry=-1.0), "slices[1].expiry", "> 0"),
    (lambda d: d.update(slices=[]), "slices", "non-empty"),
    (lambda d: d.update(svi=[{"expiry": 1.0, "a": 0.04, "b": 0.1, "rho": -0.4, "m": 0.0, "sigma": 0.2}]), "slices",
     "not both"),
    (lambda d: d.pop("slices"), "svi", "missing"),
])
def test_bad_slices_files_name_the_field(tmp_path, change, field, words):
    path = tmp_path / "market.json"
    path.write_text(json.dumps(_bad(change)))
    with pytest.raises(InputError) as error:
        read_market(path)
    assert error.value.field == field and words in str(error.value), str(error.value)
    assert field in str(error.value)

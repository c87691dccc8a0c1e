"""The spline slice model's building blocks (shoals.calibration.spline) against independent computations:
the sparse value/derivative maps against NodeSlices (the rule the pipeline reads), the partials of g and
of the node butterflies against finite differences, and the fit's constraints on small hand-made markets
(an SVI smile, a calendar conflict, bad settings), plus the CLI.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import shoals  # noqa: F401  (float64)
from shoals.arbitrage.checks import check_arbitrage
from shoals.calibration.spline import (
    SplineSettings,
    _slice_problem,
    density_factor,
    fit_slices,
    fit_spline_surface,
    interpolation_rows,
    node_butterflies,
    node_derivative_maps,
)
from shoals.calibration.surface import calibrate_surface
from shoals.cli.main import app
from shoals.errors import InputError
from shoals.kernels.svi import butterfly_density, svi_total_variance
from shoals.market.quotes import SmileData
from shoals.market.slices import NodeSlices
from shoals.market.surface import VolSurface

runner = CliRunner()


def test_maps_match_node_slices():
    rng = np.random.default_rng(1)
    k = np.sort(rng.uniform(-1.0, 1.0, 40))
    w = 0.04 + 0.1 * k * k + 0.01 * rng.standard_normal(40) ** 2
    points = np.linspace(-1.6, 1.5, 301)
    d = NodeSlices(k=jnp.asarray(k[None]), w=jnp.asarray(w[None])).derivatives(jnp.asarray(points)[:, None])
    slope, curvature = node_derivative_maps(k)
    clipped = interpolation_rows(k, points, clip=True)
    np.testing.assert_allclose(interpolation_rows(k, points) @ w, np.asarray(d.w)[:, 0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(clipped @ (slope @ w), np.asarray(d.dw)[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(clipped @ (curvature @ w), np.asarray(d.d2w)[:, 0], rtol=1e-12, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(w=st.floats(0.005, 0.5), dw=st.floats(-1.5, 1.5), d2w=st.floats(-1.0, 3.0), k=st.floats(-1.0, 1.0))
def test_density_factor_partials_are_derivatives(w, dw, d2w, k):
    g, g_w, g_dw, g_d2w = density_factor(np.array(w), np.array(dw), np.array(d2w), np.array(k))
    assert g == pytest.approx(float(butterfly_density(w=w, dw=dw, d2w=d2w, log_moneyness=k)), rel=1e-12, abs=1e-12)
    step = 1e-6
    for value, partial, bump in ((w, g_w, (step * w, 0, 0)), (dw, g_dw, (0, step, 0)), (d2w, g_d2w, (0, 0, step))):
        up = density_factor(np.array(w + bump[0]), np.array(dw + bump[1]), np.array(d2w + bump[2]), np.array(k))[0]
        down = density_factor(np.array(w - bump[0]), np.array(dw - bump[1]), np.array(d2w - bump[2]), np.array(k))[0]
        h = max(bump)
        assert partial == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-6)


def test_node_butterflies_jacobian_and_sign():
    k = np.linspace(-0.6, 0.4, 60)
    w = np.asarray(svi_total_variance(log_moneyness=k, a=0.01, b=0.1, rho=-0.5, m=0.0, sigma=0.1))
    butterflies, jacobian = node_butterflies(k, w)
    assert butterflies.min() > 0.0            # an arbitrage-free SVI smile: convex call prices
    direction = np.sin(np.arange(60.0))
    step = 1e-7
    numeric = (node_butterflies(k, w + step * direction)[0] - node_butterflies(k, w - step * direction)[0]) / (2 * step)
    np.testing.assert_allclose(jacobian @ direction, numeric, rtol=1e-5, atol=1e-9)
    bent = w.copy()
    bent[30] += 0.01                          # a spike in total variance: a concave price kink next to it
    assert node_butterflies(k, bent)[0].min() < 0.0


def smiles_from(expiries, ks, mids, halves):
    """SmileData of out-of-the-money quotes with vols mid -+ half (forward 100, no discounting)."""
    n = max(len(k) for k in ks)

    def pad(rows, fill):
        return np.array([np.concatenate([r, np.full(n - len(r), fill)]) for r in rows])

    mids = [np.asarray(m, dtype=np.float64) for m in mids]
    return SmileData(expiries=np.asarray(expiries, dtype=np.float64), forwards=np.full(len(expiries), 100.0),
                     discount_factors=np.ones(len(expiries)), log_moneyness=pad(ks, 0.0),
                     strikes=pad([100.0 * np.exp(k) for k in ks], 100.0), is_call=pad([k >= 0 for k in ks], True),
                     mid_vol=pad(mids, 0.2), bid_vol=pad([m - h for m, h in zip(mids, halves)], 0.2),
                     ask_vol=pad([m + h for m, h in zip(mids, halves)], 0.2), vega=pad([np.ones(len(k)) for k in ks], 1.0),
                     mask=pad([np.ones(len(k), dtype=bool) for k in ks], False).astype(bool),
                     rows=pad([np.arange(len(k)) for k in ks], -1).astype(int))


def svi_vols(k, t):
    w = svi_total_variance(log_moneyness=k, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(t))
    return np.sqrt(np.asarray(w) / t)


def test_fit_reproduces_an_svi_surface_inside_its_quotes():
    expiries = [0.25, 1.0]
    ks = [np.linspace(-0.4, 0.25, 25), np.linspace(-0.8, 0.5, 25)]
    mids = [svi_vols(k, t) for k, t in zip(ks, expiries)]
    fit = fit_spline_surface(smiles_from(expiries, ks, mids, [np.full(25, 0.001)] * 2))
    assert np.all(fit.inside_share == 1.0)
    assert fit.converged.all()
    assert np.all(fit.rmse_vol_points < 0.05)
    surface = VolSurface(expiries=jnp.asarray(expiries), params=fit.slices)
    assert check_arbitrage(surface).ok
    assert np.asarray(fit.slices.k).shape == (2, SplineSettings().nodes)


def test_calendar_conflict_is_resolved_without_arbitrage():
    """The later expiry quoted with a lower total variance than the earlier one at every strike (a calendar
    arbitrage in the quotes): the fit stays calendar-free and leaves quotes outside, rather than failing."""
    expiries = [0.5, 0.52]
    k = np.linspace(-0.3, 0.3, 21)
    mids = [np.full(21, 0.25), np.full(21, 0.20)]
    fit = fit_spline_surface(smiles_from(expiries, [k, k], mids, [np.full(21, 0.001)] * 2))
    surface = VolSurface(expiries=jnp.asarray(expiries), params=fit.slices)
    report = check_arbitrage(surface)
    assert report.ok, report.summary()
    assert fit.inside_share.mean() < 1.0


def test_settings_are_validated():
    with pytest.raises(InputError, match="200") as error:
        SplineSettings(nodes=50)
    assert error.value.field == "nodes"
    with pytest.raises(InputError) as error:
        SplineSettings(smoothness=-1.0)
    assert error.value.field == "smoothness"


def test_unknown_model_is_an_error(tmp_path):
    from shoals.data.synthetic import seed_quotes
    from shoals.io.quotes import read_quotes

    path = tmp_path / "quotes.csv"
    seed_quotes().to_csv(path, index=False)
    with pytest.raises(InputError) as error:
        calibrate_surface(*read_quotes(path, spot=100.0), model="sabr")
    assert error.value.field == "model"


def test_fit_slices_reports_rounds():
    k = np.linspace(-0.3, 0.2, 15)
    problem = _slice_problem(0.5, k, svi_vols(k, 0.5), svi_vols(k, 0.5) - 0.001, svi_vols(k, 0.5) + 0.001,
                             SplineSettings())
    xs, rounds, converged = fit_slices([problem], SplineSettings())
    assert converged and 1 <= rounds <= SplineSettings().max_rounds
    assert xs[0].shape == (SplineSettings().nodes,)


def test_cli_calibrate_spline_writes_slices(tmp_path):
    from shoals.data.synthetic import seed_quotes

    quotes = tmp_path / "quotes.csv"
    seed_quotes().to_csv(quotes, index=False)
    out = tmp_path / "market.json"
    result = runner.invoke(app, ["calibrate", str(quotes), "--spot", "100", "--model", "spline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "inside bid/ask" in result.output and "no arbitrage found" in result.output
    market = json.loads(out.read_text())
    assert "slices" in market and "svi" not in market
    assert all(len(s["k"]) == len(s["w"]) >= 200 for s in market["slices"])
    bad = runner.invoke(app, ["calibrate", str(quotes), "--spot", "100", "--model", "spline", "--nodes", "50"])
    assert bad.exit_code == 2


def test_cli_run_on_the_spline_surface(tmp_path):
    """``shoals run --model spline``: the embedded example's quotes fitted by the spline, a European and a
    barrier priced with the vega ladder by bump and AAD, the surface written in the slices form."""
    book = tmp_path / "book.csv"
    book.write_text("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type\n"
                    "eu,european,call,100,0.6,2,10,,\n"
                    "dao,barrier,call,100,0.5,-1,5,85,down-and-out\n")
    out = tmp_path / "report"
    result = runner.invoke(app, ["run", "--model", "spline", "--book", str(book), "--out", str(out)])
    assert result.exit_code == 0, result.output
    surface = json.loads((out / "surface.json").read_text())
    assert "slices" in surface
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ladder"]["bump_aad_difference"] < 0.02
    import pandas as pd

    trades = pd.read_csv(out / "trades.csv")
    assert (trades["status"] == "ok").all()

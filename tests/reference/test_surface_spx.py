"""Surface stage on the real SPX 2011-01-24 chain (Done-when of the surface issue): every slice with
>= 5 clean quotes fitted, median share of fitted vols inside bid/ask >= 90% beyond two weeks on the
final (repaired) surface, no butterfly or calendar violation, and a cleaning report that says why."""

import numpy as np
import pytest

import shoals as sh


@pytest.fixture(scope="module")
def spx():
    quotes, cleaning = sh.read_quotes(sh.data.path("spx_20110124_clean.csv"), rate=0.0035)
    return quotes, sh.calibrate_surface(quotes, cleaning, rate=0.0035)


def test_every_slice_with_five_clean_quotes_is_fitted(spx):
    quotes, result = spx
    table = result.fit_table()
    assert len(table) == 15                      # 16 listed expiries, one (Oct 2011) without quotes
    assert (table["quotes"] >= 5).all() and table["converged"].all()


def test_fitted_vols_inside_bid_ask_and_surface_arbitrage_free(spx):
    _, result = spx
    table = result.fit_table()
    beyond_two_weeks = table["expiry"] > 14 / 365
    assert table.loc[beyond_two_weeks, "inside_bid_ask"].median() >= 0.90
    assert table["rmse_vol_points"].median() < 1.5
    assert result.arbitrage.ok, result.arbitrage.summary()
    assert sh.check_arbitrage(result.surface).ok


def test_cleaning_report_lists_what_was_dropped_and_why(spx):
    _, result = spx
    report = result.cleaning
    assert report.total == 1920
    assert report.kept + sum(len(rows) for rows in report.dropped.values()) == report.total
    reasons = " ".join(report.dropped)
    for word in ("zero bid", "intrinsic"):
        assert word in reasons
    assert any("convex" in reason for reason in report.flagged)


def test_written_market_reproduces_forwards_and_vols(spx, tmp_path):
    _, result = spx
    snapshot = sh.read_market(sh.write_market(result.snapshot, tmp_path / "market.json"))
    expiries = np.asarray(result.smiles.expiries)
    np.testing.assert_allclose(np.asarray(snapshot.forward(expiries)), result.smiles.forwards, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(snapshot.surface.implied_vol(0.0, expiries)),
                               np.asarray(result.surface.implied_vol(0.0, expiries)), rtol=1e-12)

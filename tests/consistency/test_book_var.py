"""Full-revaluation VaR of a book (:func:`shoals.risk.revaluation.book_var`).

* Against QuantLib on a flat surface (b = 0: the local vol is the flat vol, and a parallel pillar bump of d vol
  points is the flat vol sigma + d): every scenario value of every trade equals QuantLib's analytic price at the
  shocked spot and vol (AnalyticEuropeanEngine, AnalyticBarrierEngine) within the PDE's accuracy; a barrier that
  the shocked spot breaches is worth its rebate (knock-out) or the vanilla (knock-in).
* The book P&L equals the sum of the trades revalued one by one, and the zero scenario gives exactly zero.
* Serial, processes and every scenario block size give identical numbers.
* A broken row is reported and left out; the others give the P&L of the book without it.
* The delta-gamma-vega approximation is close for small shocks and its error grows with the shock.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
from support import quantlib_flat_process

import shoals  # noqa: F401  (float64)
from shoals.execution import ProcessExecutor
from shoals.io.book import read_book
from shoals.market.curves import ZeroCurve
from shoals.market.local_vol import build_local_vol
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface
from shoals.risk.revaluation import Scenarios, book_var
from shoals.risk.run import pricing_method

SPOT, RATE, DIVIDEND, VOL = 100.0, 0.03, 0.01, 0.2
EXPIRIES = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
TODAY = ql.Date(15, 1, 2025)
HEADER = "id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,rebate"
# Maturities of whole days (146 = 0.4 y, 292 = 0.8 y) so that QuantLib's dates are exact.
ROWS = {
    "eu_call": "eu_call,european,call,100,0.4,2,10,,,",
    "eu_put": "eu_put,european,put,95,0.8,-1,10,,,",
    "dao_call": "dao_call,barrier,call,100,0.4,1,5,90,down-and-out,2",
    "uip_put": "uip_put,barrier,put,105,0.8,-1,5,110,up-and-in,",
}
# Spot log-returns and parallel vol shifts: scenario 3 breaches the down barrier (88.7 < 90), scenario 4 the
# up barrier (112.7 > 110).
SPOT_RETURNS = np.array([0.0, 0.03, -0.03, -0.12, 0.12])
VOL_SHIFTS = np.array([0.0, 0.02, -0.02, 0.01, 0.03])


def flat_snapshot(vol=VOL):
    surface = VolSurface.from_svi(expiries=EXPIRIES, a=vol ** 2 * EXPIRIES, b=0.0, rho=0.0, m=0.0, sigma=0.1)
    return MarketSnapshot(spot=jnp.asarray(SPOT), rate=ZeroCurve.flat(RATE), dividend=ZeroCurve.flat(DIVIDEND),
                          surface=surface)


def book(tmp_path, names, extra=()):
    path = tmp_path / f"book_{'_'.join(names)}_{len(extra)}.csv"
    path.write_text("\n".join([HEADER, *(ROWS[n] for n in names), *extra]) + "\n")
    return read_book(path)


def parallel(spot_returns, vol_shifts):
    return Scenarios(spot_return=np.asarray(spot_returns, dtype=float),
                     vol_shift=np.repeat(np.asarray(vol_shifts, dtype=float)[:, None], EXPIRIES.size, axis=1))


@pytest.fixture(scope="module")
def market():
    snapshot = flat_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=float(EXPIRIES[-1]))
    return snapshot, grid


@pytest.fixture(scope="module")
def full_book(market, tmp_path_factory):
    rows = book(tmp_path_factory.mktemp("book"), list(ROWS))
    result = book_var(rows, *market, parallel(SPOT_RETURNS, VOL_SHIFTS), method=pricing_method("pde"),
                      levels=(0.8,))
    return rows, result


def quantlib_value(name, spot, vol):
    """QuantLib's analytic price of trade ``name`` at ``spot`` and flat ``vol`` (breached barriers: the rebate
    or the vanilla)."""
    process = quantlib_flat_process(TODAY, spot=spot, rate=RATE, dividend=DIVIDEND, vol=vol)
    fields = ROWS[name].split(",")
    kind, call, strike, maturity = fields[1], fields[2] == "call", float(fields[3]), float(fields[4])
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, strike)
    exercise = ql.EuropeanExercise(TODAY + round(maturity * 365))
    if kind == "barrier":
        barrier, kind_name, rebate = float(fields[7]), fields[8], float(fields[9] or 0.0)
        breached = spot <= barrier if kind_name.startswith("down") else spot >= barrier
        if breached and kind_name.endswith("out"):
            return rebate
        if not breached:
            types = {"down-and-out": ql.Barrier.DownOut, "up-and-in": ql.Barrier.UpIn}
            option = ql.BarrierOption(types[kind_name], barrier, rebate, payoff, exercise)
            option.setPricingEngine(ql.AnalyticBarrierEngine(process))
            return option.NPV()
    option = ql.VanillaOption(payoff, exercise)
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option.NPV()


def test_scenario_values_match_quantlib_at_the_shocked_spot_and_vol(full_book):
    rows, result = full_book
    got = np.vstack([result.base, result.values])   # (1 + N, T): base first
    for t, row in enumerate(rows):
        expected = [quantlib_value(row.id, SPOT, VOL)] + [
            quantlib_value(row.id, SPOT * np.exp(x), VOL + d) for x, d in zip(SPOT_RETURNS, VOL_SHIFTS)]
        np.testing.assert_allclose(got[:, t], expected, rtol=2e-3, atol=2e-3, err_msg=row.id)
    assert (result.trades["status"] == "ok").all()
    # Scenario 0 moves nothing: exactly zero P&L.
    assert result.pnl[0] == 0.0


def test_book_pnl_is_the_sum_of_the_trades_revalued_one_by_one(full_book, market, tmp_path):
    rows, result = full_book
    alone = [book_var(book(tmp_path, [row.id]), *market, parallel(SPOT_RETURNS, VOL_SHIFTS),
                      method=pricing_method("pde"), approximation=False).pnl for row in rows]
    np.testing.assert_allclose(np.sum(alone, axis=0), result.pnl, rtol=1e-12, atol=1e-9)
    scale = np.array([r.quantity * r.notional for r in rows])
    np.testing.assert_allclose((result.values - result.base) @ scale, result.pnl, rtol=1e-12, atol=1e-9)


def test_var_figures_follow_the_pnl_sample(full_book):
    _, result = full_book
    losses = -result.pnl
    var = np.quantile(losses, 0.8)
    assert result.var[0] == pytest.approx(var, rel=1e-12)
    assert result.cvar[0] == pytest.approx(losses[losses >= var].mean(), rel=1e-12)
    figures = result.figures()
    assert set(figures) == {"var_80", "cvar_80", "approx_var_80", "approx_cvar_80"}
    assert result.settings["dynamics"] == "sticky local vol"


def test_every_executor_and_block_size_gives_identical_numbers(market, tmp_path):
    rows = book(tmp_path, ["eu_call", "dao_call"])
    scenarios = parallel(SPOT_RETURNS[:3], VOL_SHIFTS[:3])
    serial = book_var(rows, *market, scenarios, method=pricing_method("pde"), approximation=False)
    one = book_var(rows, *market, scenarios, method=pricing_method("pde"), approximation=False, block=1)
    with ProcessExecutor(workers=2) as executor:
        processes = book_var(rows, *market, scenarios, method=pricing_method("pde"), approximation=False,
                             executor=executor, block=2)
    for other in (one, processes):
        np.testing.assert_array_equal(other.values, serial.values)
        np.testing.assert_array_equal(other.pnl, serial.pnl)


def test_a_broken_row_is_reported_and_the_rest_completes(market, tmp_path):
    scenarios = parallel(SPOT_RETURNS[:3], VOL_SHIFTS[:3])
    clean = book_var(book(tmp_path, ["eu_call", "eu_put"]), *market, scenarios, method=pricing_method("pde"),
                     approximation=False)
    broken = book_var(book(tmp_path, ["eu_call", "eu_put"], extra=["bad,swaption,call,100,1,1,1,,,"]), *market,
                      scenarios, method=pricing_method("pde"), approximation=False)
    status = broken.trades.set_index("id")["status"]
    assert status["bad"].startswith("error:") and "swaption" in status["bad"]
    assert (status.drop("bad") == "ok").all()
    np.testing.assert_array_equal(broken.pnl, clean.pnl)
    assert broken.settings["excluded"] == 1


def test_delta_gamma_vega_approximation_is_close_for_small_shocks_and_worse_for_large(market, tmp_path):
    rows = book(tmp_path, ["eu_call", "eu_put"])
    errors = []
    for size in (0.005, 0.08):
        result = book_var(rows, *market, parallel([size, -size, 0.0, size], [0.0, 0.0, size, -size]),
                          method=pricing_method("pde"))
        error = np.abs(result.approximate_pnl - result.pnl)
        errors.append(error.max() / np.abs(result.pnl).max())
        assert result.approximation_error()["max_abs_pnl_error"] == pytest.approx(error.max())
    assert errors[0] < 0.02, errors
    assert errors[1] > 2.0 * errors[0], errors


def test_one_spot_per_row_prices_each_row_at_its_spot(market):
    """The proxies' batched node solve: a MarketSnapshot with one spot per trade row prices every row at its own
    spot, the European against QuantLib's analytic price at that spot."""
    from shoals.instruments import European, stack
    from shoals.methods import FiniteDifference

    snapshot, grid = market
    spots = np.array([85.0, 100.0, 118.0])
    contract = stack([European(strike=100.0, maturity=0.4)] * spots.size)
    got = np.asarray(FiniteDifference(vega=False).price(contract, snapshot.bump(spot=jnp.asarray(spots)),
                                                        local_vol=grid).value)
    expected = [quantlib_value("eu_call", spot, VOL) for spot in spots]
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)

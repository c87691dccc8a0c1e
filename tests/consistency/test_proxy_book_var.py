"""Proxy-accelerated full-revaluation VaR (:func:`shoals.risk.proxy_revaluation.proxy_book_var`) against exact
repricing of every scenario (:func:`shoals.risk.revaluation.book_var`, itself checked against QuantLib in
test_book_var.py), on the flat-surface book of test_book_var.py (Europeans, a down-and-out call with rebate, an
up-and-in put: both barriers are crossed inside the scenario box, so the proxies are split there).

* 9 x 5 nodes: every trade's value within 3e-3 per unit of the exact repricing at every scenario, VaR and CVaR
  within 1e-4 relative; 9 x 3 nodes: VaR/CVaR within 1 %.
* A trade the PDE declines (a cliquet with a global cap, priced by Monte Carlo) is revalued exactly, equal to
  the exact run; a broken row is left out; serial == processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_book_var import ROWS, book, flat_snapshot

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.execution import ProcessExecutor
from shoals.market.local_vol import build_local_vol
from shoals.risk.proxy_revaluation import proxy_book_var, trade_cells
from shoals.risk.revaluation import Scenarios, book_var, simulated_scenarios
from shoals.risk.run import pricing_method


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    snapshot = flat_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=2.0)
    rows = book(tmp_path_factory.mktemp("proxy"), list(ROWS))
    scenarios = simulated_scenarios(snapshot, 40, horizon_days=20, seed=2)
    exact = book_var(rows, snapshot, grid, scenarios, method=pricing_method("pde"), approximation=False,
                     levels=(0.9, 0.95))
    return snapshot, grid, rows, scenarios, exact


def test_barriers_inside_the_box_split_the_proxy(setting):
    _, _, rows, scenarios, _ = setting
    box = (scenarios.spot_return.min(), scenarios.spot_return.max())
    assert box[0] < np.log(90 / 100) and box[1] > np.log(110 / 100)       # both barriers are crossed
    cells = {row.id: trade_cells(row, box, 100.0) for row in rows}
    assert len(cells["eu_call"]) == 1 and len(cells["dao_call"]) == 2 and len(cells["uip_put"]) == 2
    assert cells["dao_call"][0][1] == pytest.approx(np.log(0.9))


def test_proxy_var_matches_exact_repricing(setting):
    snapshot, grid, rows, scenarios, exact = setting
    fine = proxy_book_var(rows, snapshot, grid, scenarios, method=pricing_method("pde"), spot_nodes=9,
                          vol_nodes=5, levels=(0.9, 0.95))
    np.testing.assert_allclose(fine.values, exact.values, atol=3e-3, rtol=0)
    np.testing.assert_allclose(fine.var, exact.var, rtol=1e-4)
    np.testing.assert_allclose(fine.cvar, exact.cvar, rtol=1e-4)
    # per vol node, one solve per spot curve: the two Europeans, the down-and-out's live side (its barrier
    # node is the rebate), the up-and-in's knocked-in vanilla side, its live side and the vanilla on its
    # barrier node; then today's four values
    assert not fine.exact.any() and fine.repricings == 5 * 6 + 4
    coarse = proxy_book_var(rows, snapshot, grid, scenarios, method=pricing_method("pde"), spot_nodes=9,
                            vol_nodes=3, levels=(0.9, 0.95))
    np.testing.assert_allclose(coarse.var, exact.var, rtol=1e-2)
    np.testing.assert_allclose(coarse.cvar, exact.cvar, rtol=1e-2)


def test_declined_trades_are_revalued_exactly_and_broken_rows_left_out(setting, tmp_path):
    snapshot, grid, _, scenarios, _ = setting
    capped = "cq,cliquet,call,,0.8,1,100,,,"
    path = tmp_path / "book.csv"
    path.write_text("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,rebate,"
                    "resets,global_cap\n" + "\n".join([
                        ROWS["eu_call"] + ",,", capped + ",4,0.1", "bad,swaption,call,100,1,1,1,,,,,"]) + "\n")
    from shoals.io.book import read_book

    rows = read_book(path)
    few = Scenarios(spot_return=scenarios.spot_return[:4], vol_shift=scenarios.vol_shift[:4],
                    vol_factor=scenarios.vol_factor[:4], factor=scenarios.factor)
    method = pricing_method("pde", paths=20_000)
    proxy = proxy_book_var(rows, snapshot, grid, few, method=method, levels=(0.5,))
    exact = book_var(rows, snapshot, grid, few, method=method, approximation=False, levels=(0.5,))
    assert proxy.exact.tolist() == [False, True, True]
    np.testing.assert_array_equal(proxy.values[:, 1], exact.values[:, 1])
    assert proxy.settings["included"] == 2 and np.isnan(proxy.values[:, 2]).all()


def test_serial_and_processes_give_identical_proxies(setting):
    snapshot, grid, rows, scenarios, _ = setting
    serial = proxy_book_var(rows[:2], snapshot, grid, scenarios, method=pricing_method("pde"))
    with ProcessExecutor(workers=2) as executor:
        parallel = proxy_book_var(rows[:2], snapshot, grid, scenarios, method=pricing_method("pde"),
                                  executor=executor)
    np.testing.assert_array_equal(parallel.values, serial.values)
    np.testing.assert_array_equal(parallel.pnl, serial.pnl)


def test_proxies_need_one_factor_scenarios_and_enough_nodes(setting):
    snapshot, grid, rows, scenarios, _ = setting
    independent = Scenarios(spot_return=scenarios.spot_return, vol_shift=scenarios.vol_shift)
    with pytest.raises(InputError, match="one-factor"):
        proxy_book_var(rows, snapshot, grid, independent, method=pricing_method("pde"))
    with pytest.raises(InputError, match="spot_nodes"):
        proxy_book_var(rows, snapshot, grid, scenarios, method=pricing_method("pde"), spot_nodes=2)

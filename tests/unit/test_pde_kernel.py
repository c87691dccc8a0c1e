"""The batched Crank-Nicolson kernel and the vanilla/barrier pricers built on it.

* Second order in space (European call, continuous down-and-out call): successive differences of prices on
  grids of 61, 121, 241 nodes at a fixed time grid (the time error cancels), observed order printed and
  asserted >= 1.8; the finest price within 5e-4 of the exact one.
* Second order in time: the same with 25, 50, 100, 200 time steps on a fixed space grid.
* In-out parity on the same nodes to 1e-8: direct knock-in + knock-out = vanilla leg (continuous barrier as an
  interior Dirichlet node, and discrete monitoring); parity and direct knock-ins agree to 1e-8.
* Greeks: delta and gamma against central spot bumps, theta against maturity bumps (theta = dV/dt = -dV/dT
  in a flat market).
* Bad input: a continuous barrier at or beyond the spot raises InputError naming the field and the trade.
* The vectorised time schedule is the kernel's ``time_steps``; results are float64.
"""

from __future__ import annotations

from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest
from support import skewed_snapshot

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.instruments import American, Barrier, European
from shoals.kernels.black_scholes import black_scholes_price
from shoals.kernels.pde import end_at_zero, split_steps, time_groups, time_steps, uniform_time_steps
from shoals.market import FlatMarket
from shoals.methods.finite_difference import FiniteDifference

SPOT, RATE, DIVIDEND, VOL = 100.0, 0.03, 0.03, 0.25


def _market(spot=SPOT):
    return FlatMarket(spot=spot, rate=RATE, vol=VOL, dividend=DIVIDEND)


def _down_and_out_exact(strike, barrier, maturity):
    """Closed form of a down-and-out call with H < K (Merton 1973; Haug 2007, 4.17.1), r = q here."""
    def call(spot):
        return float(black_scholes_price(spots=spot, strikes=strike, expiries=maturity, volatilities=VOL,
                                         rates=RATE, dividend_yields=DIVIDEND, is_call=True))
    power = 2.0 * (RATE - DIVIDEND) / VOL ** 2 - 1.0
    return call(SPOT) - (barrier / SPOT) ** power * call(barrier ** 2 / SPOT)


def _orders(prices):
    differences = np.abs(np.diff(prices))
    return np.log2(differences[:-1] / differences[1:])


def test_second_order_in_space_european_and_down_and_out():
    european = European(strike=100.0, maturity=1.0, is_call=True)
    barrier = Barrier(strike=100.0, maturity=1.0, barrier=85.0, is_call=True)
    sizes = (61, 121, 241)
    prices = {"european": [], "down-and-out": []}
    for nodes in sizes:
        method = FiniteDifference(space_nodes=nodes, time_steps=200, vega=False)
        prices["european"].append(float(method.price(european, _market()).value))
        prices["down-and-out"].append(float(method.price(barrier, _market()).value))
    exact = {"european": float(black_scholes_price(spots=SPOT, strikes=100.0, expiries=1.0, volatilities=VOL,
                                                   rates=RATE, dividend_yields=DIVIDEND, is_call=True)),
             "down-and-out": _down_and_out_exact(100.0, 85.0, 1.0)}
    for name, values in prices.items():
        orders = _orders(values)
        print(f"{name}: prices {values}, exact {exact[name]:.8f}, observed space orders {orders}")
        assert np.all(orders >= 1.8), (name, orders)
        assert abs(values[-1] - exact[name]) < 5e-4


@pytest.mark.slow
def test_second_order_in_time():
    contract = Barrier(strike=100.0, maturity=1.0, barrier=85.0, is_call=True)
    values = [float(FiniteDifference(space_nodes=121, time_steps=steps, vega=False).price(
        contract, _market()).value) for steps in (25, 50, 100, 200)]
    orders = _orders(values)
    print(f"down-and-out: observed time orders {orders}")
    assert np.all(orders >= 1.8), orders


def _legs(contract, knock_in="direct", out_grid="boundary"):
    from shoals.methods.fd_vanilla import price_barrier
    from shoals.methods.finite_difference import pde_market

    method = FiniteDifference(space_nodes=121, time_steps=200, vega=False, knock_in=knock_in)
    market = pde_market(_market(), np.broadcast_to(contract.maturity, np.shape(contract.strike)))
    return price_barrier(contract, market, method, out_grid=out_grid)


@pytest.mark.parametrize("monitoring_dates", [0, 12])
def test_in_out_parity_on_the_same_nodes(monitoring_dates):
    fields = {"strike": np.array([100.0, 95.0, 105.0, 100.0]), "maturity": np.array([1.0, 0.5, 2.0, 1.0]),
                  "barrier": np.array([85.0, 90.0, 115.0, 120.0]), "is_call": np.array([True, False, True, False]),
                  "is_up": np.array([False, False, True, True]), "monitoring_dates": monitoring_dates}
    knock_in = _legs(Barrier(is_knock_in=True, **fields))
    knock_out = _legs(Barrier(is_knock_in=False, **fields), out_grid="full")
    vanilla = knock_in["diagnostics"]["vanilla_leg"]
    gap = np.abs(knock_in["value"] + knock_out["value"] - vanilla)
    print(f"monitoring dates {monitoring_dates}: |in + out - vanilla| = {gap}")
    assert gap.max() < 1e-8
    parity = _legs(Barrier(is_knock_in=True, **fields), knock_in="parity")
    for name in ("value", "delta", "gamma", "theta"):
        assert np.max(np.abs(parity[name] - knock_in[name])) < 1e-8, name


def test_in_out_parity_across_grids_within_discretisation():
    """Knock-outs on their own grid (ending on the barrier) + knock-ins = the European on its own grid."""
    fields = {"strike": np.array([100.0, 110.0]), "maturity": 1.0, "barrier": np.array([90.0, 120.0]),
                  "is_call": True, "is_up": np.array([False, True]), "rebate": 0.0}
    method = FiniteDifference(vega=False)
    total = (method.price(Barrier(is_knock_in=True, **fields), _market()).value
             + method.price(Barrier(is_knock_in=False, **fields), _market()).value)
    european = method.price(European(strike=fields["strike"], maturity=1.0, is_call=True), _market()).value
    assert np.max(np.abs(total - european)) < 1e-3


@pytest.mark.parametrize("kind", ["european", "american", "barrier"])
def test_greeks_match_bumped_prices(kind):
    method = FiniteDifference(space_nodes=241, time_steps=200, vega=False)

    def contract(maturity):
        if kind == "european":
            return European(strike=105.0, maturity=maturity, is_call=True)
        if kind == "american":
            return American(strike=105.0, maturity=maturity, is_call=False)
        return Barrier(strike=105.0, maturity=maturity, barrier=80.0, is_call=True, rebate=2.0)

    base = method.price(contract(1.0), _market())
    bump = 0.5
    up, down = (float(method.price(contract(1.0), _market(SPOT + s)).value) for s in (bump, -bump))
    delta = (up - down) / (2.0 * bump)
    gamma = (up - 2.0 * float(base.value) + down) / bump ** 2
    dt = 1.0 / 365.0
    theta = -(float(method.price(contract(1.0 + dt), _market()).value)
              - float(method.price(contract(1.0 - dt), _market()).value)) / (2.0 * dt)
    got = {name: float(base.greeks[name]) for name in ("delta", "gamma", "theta")}
    print(kind, got, {"delta": delta, "gamma": gamma, "theta": theta})
    assert got["delta"] == pytest.approx(delta, rel=2e-3, abs=1e-4)
    assert got["gamma"] == pytest.approx(gamma, rel=2e-2, abs=1e-5)
    assert got["theta"] == pytest.approx(theta, rel=2e-2, abs=2e-3)


def test_breached_continuous_barrier_names_field_and_trade():
    contract = Barrier(strike=np.array([100.0, 100.0, 100.0]), maturity=1.0,
                       barrier=np.array([90.0, 100.0, 120.0]), is_up=np.array([False, False, True]))
    with pytest.raises(InputError, match="row 1.*already breached") as error:
        FiniteDifference(vega=False).price(contract, _market())
    assert error.value.field == "barrier" and error.value.row == 1
    discrete = Barrier(strike=100.0, maturity=1.0, barrier=105.0, monitoring_dates=4)
    assert np.isfinite(FiniteDifference(space_nodes=121, time_steps=200, vega=False).price(
        discrete, _market()).value)


def test_bad_method_settings():
    with pytest.raises(InputError, match="knock_in"):
        FiniteDifference(knock_in="both")


@pytest.mark.parametrize("rannacher", [0, 2])
def test_uniform_time_steps_are_the_kernel_time_steps(rannacher):
    maturities = np.array([1.0, 0.5, 2.0, 5.0])
    pieces = np.array([1, 4, 3, 60])
    events = [[maturity * k / m for k in range(1, m)] for maturity, m in zip(maturities, pieces)]
    start, dt, theta, event_index = uniform_time_steps(maturities, 20, pieces, rannacher)
    k_start, k_dt, k_theta, k_event = time_steps(maturities, 20, events, rannacher)
    assert np.allclose(start, k_start, atol=1e-14) and np.allclose(dt, k_dt, atol=1e-14)
    assert np.array_equal(theta, k_theta) and np.array_equal(event_index, k_event)


@pytest.mark.parametrize("rannacher", [0, 2])
def test_uniform_time_steps_with_a_count_per_trade(rannacher):
    """Per-trade step counts: each trade's column is its own :func:`time_steps` schedule, zero-padded."""
    maturities = np.array([1.0, 0.25, 2.0, 5.0])
    pieces = np.array([1, 3, 24, 60])
    counts = np.maximum(40, 6 * pieces)
    start, dt, theta, event_index = uniform_time_steps(maturities, counts, pieces, rannacher)
    for b, (maturity, m, count) in enumerate(zip(maturities, pieces, counts)):
        k_start, k_dt, k_theta, k_event = time_steps([maturity], int(count), [[maturity * k / m for k in range(1, m)]],
                                                     rannacher)
        live = k_dt.shape[0]
        assert np.allclose(start[:live, b], k_start[:, 0], atol=1e-14) and np.allclose(dt[:live, b], k_dt[:, 0])
        assert np.array_equal(theta[:live, b], k_theta[:, 0]) and np.array_equal(event_index[:live, b], k_event[:, 0])
        assert np.all(dt[live:, b] == 0.0) and np.all(event_index[live:, b] == -1)
    assert dt.shape[0] == max(c + (m * (rannacher - 1) if rannacher else 0) for c, m in zip(counts, pieces))


def test_results_are_float64():
    result = FiniteDifference(space_nodes=121, time_steps=200, vega=False).price(
        European(strike=100.0, maturity=1.0), _market())
    assert np.asarray(result.value).dtype == np.float64 and jnp.asarray(result.value).dtype == jnp.float64


def test_pure_crank_nicolson_without_rannacher_steps():
    """rannacher=0 (plain Crank-Nicolson from the cell-averaged payoff) runs and prices a European put and an
    American put close to the closed form / the default scheme."""
    from shoals.instruments import American, European
    from shoals.kernels.black_scholes import black_scholes_price
    from shoals.market import FlatMarket
    from shoals.methods import FiniteDifference

    market = FlatMarket(spot=100.0, rate=0.03, vol=0.25, dividend=0.0)
    plain = FiniteDifference(rannacher=0, vega=False)
    exact = float(black_scholes_price(spots=100.0, strikes=105.0, expiries=0.5, volatilities=0.25, rates=0.03,
                                      is_call=False))
    assert float(plain.price(European(strike=105.0, maturity=0.5, is_call=False), market).value) == pytest.approx(
        exact, abs=2e-3)
    american = American(strike=105.0, maturity=0.5, is_call=False)
    assert float(plain.price(american, market).value) == pytest.approx(
        float(FiniteDifference(vega=False).price(american, market).value), abs=5e-3)


def test_split_steps_cuts_at_breaks_and_keeps_tags():
    start, dt, theta, tags = time_steps(np.array([1.0, 0.5]), 4, [(0.5,), ()], 1)
    cut_start, cut_dt, cut_theta, cut_tags = split_steps(start, dt, theta, tags, [0.3, 0.7, 0.1])
    np.testing.assert_allclose(cut_dt.sum(axis=0), [1.0, 0.5])
    ends = cut_start - cut_dt
    for column, maturity in enumerate((1.0, 0.5)):
        live = cut_dt[:, column] > 0
        bounds = np.concatenate([cut_start[live, column], ends[live, column][-1:]])
        assert np.all(np.diff(bounds) < 0) and bounds[0] == maturity and bounds[-1] == 0.0
        for moment in (0.3, 0.7, 0.1):
            if moment < maturity:
                assert np.any(np.isclose(ends[live, column], moment))
    # The event at t = 0.5 stays on the piece that ends there; the Rannacher step stays implicit in both pieces.
    assert cut_tags[:, 0].tolist().count(0) == 1 and ends[cut_tags[:, 0] == 0, 0] == pytest.approx(0.5)
    assert cut_theta[np.isclose(cut_start[:, 0], 0.5) | np.isclose(cut_start[:, 0], 0.3), 0].tolist() == [1.0, 1.0]


def test_prices_converge_smoothly_in_time_across_local_vol_jumps():
    """The Dupire local vol jumps in t at each expiry of the surface; with steps ending there the time error
    is second order and small, whatever the step count (before: O(dt) errors of either sign, ~3e-3 of the
    price for this knock-in, as pillars fell at different places inside the steps)."""
    snapshot = skewed_snapshot()
    contract = Barrier(strike=108.0, maturity=2.2, barrier=119.0, is_up=True, is_knock_in=True, is_call=False)
    prices = {m: float(FiniteDifference(space_nodes=161, time_steps=m, vega=False).price(contract, snapshot).value)
              for m in (70, 130, 250, 500)}
    spread = max(abs(prices[m] - prices[500]) for m in (70, 130, 250))
    assert spread <= 2e-4 * prices[500], prices


def test_time_groups_share_identical_step_columns():
    start = np.array([[1.0, 1.0, 2.0, 1.0], [0.5, 0.5, 1.0, 0.5]])
    dt = np.array([[0.5, 0.5, 1.0, 0.5], [0.5, 0.5, 1.0, 0.4]])
    group, leader = time_groups(start, dt)
    assert group[0] == group[1] and len({group[0], group[2], group[3]}) == 3
    assert sorted(leader.tolist()) == [0, 2, 3]
    np.testing.assert_array_equal(group[leader], np.arange(leader.size))


def test_grouped_sigma_reads_equal_the_per_row_reads():
    """The grouped read (time interpolation once per group of rows with the same step times) is the same
    bilinear formula as the per-row read of the whole table: the solves agree to rounding, value and vol
    gradient."""
    snapshot = skewed_snapshot()
    rng = np.random.default_rng(11)
    count = 128        # enough rows per group for the grouped read to be taken (see solve_backward)
    is_up = rng.random(count) < 0.5
    contract = Barrier(strike=rng.uniform(85.0, 115.0, count), maturity=rng.choice([0.5, 1.0], count),
                       barrier=np.where(is_up, 125.0, 80.0), is_up=is_up, is_knock_in=False,
                       is_call=rng.random(count) < 0.5)
    plan, _ = FiniteDifference(space_nodes=121, time_steps=60, vega=False).plan(contract, snapshot)
    steps = plan.arguments["steps"]
    groups = int(np.asarray(steps.leader).size)
    assert 4 * groups * np.asarray(plan.table.spots).size <= 121 * np.asarray(steps.dt).shape[1]
    per_row = replace(plan, arguments={**plan.arguments,
                                       "steps": plan.arguments["steps"]._replace(group=None, leader=None)})
    np.testing.assert_allclose(plan.values(), per_row.values(), rtol=1e-13, atol=1e-13)
    weights = rng.standard_normal(count)
    grouped_gradient = np.asarray(plan.value_and_gradient(weights)[1])
    np.testing.assert_allclose(grouped_gradient, np.asarray(per_row.value_and_gradient(weights)[1]),
                               rtol=1e-10, atol=1e-12 * np.abs(grouped_gradient).max())


def test_tridiagonal_adjoint_equals_autodiff_and_finite_differences():
    """The hand-written reverse mode of the Thomas solve (rhs_bar = A^-T x_bar, A_bar = -rhs_bar x^T on the
    three diagonals) against JAX's own reverse mode of the plain sweep and against central differences; the
    ignored corners (lower[0], upper[-1]) get zero gradient."""
    import jax

    from shoals.kernels.pde import _thomas_rows, _thomas_sweep

    rng = np.random.default_rng(3)
    m, batch = 9, 3
    lower, upper = -0.4 * rng.random((2, m, batch))
    diag = 1.0 + rng.random((m, batch))
    rhs = rng.standard_normal((m, batch))
    weights = rng.standard_normal((m, batch))

    def loss(solve):
        return lambda *args: jnp.sum(weights * solve(*args))

    arguments = tuple(jnp.asarray(a) for a in (lower, diag, upper, rhs))
    custom = jax.grad(loss(_thomas_rows), argnums=(0, 1, 2, 3))(*arguments)
    plain = jax.grad(loss(_thomas_sweep), argnums=(0, 1, 2, 3))(*arguments)
    for ours, theirs in zip(custom, plain):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert np.all(np.asarray(custom[0])[0] == 0.0) and np.all(np.asarray(custom[2])[-1] == 0.0)
    bump = 1e-6
    for which in range(4):
        for row, column in ((0, 0), (4, 1), (m - 1, 2)):
            up, down = (list(arguments), list(arguments))
            up[which] = up[which].at[row, column].add(bump)
            down[which] = down[which].at[row, column].add(-bump)
            numeric = (loss(_thomas_rows)(*up) - loss(_thomas_rows)(*down)) / (2 * bump)
            assert abs(float(custom[which][row, column]) - float(numeric)) < 1e-8


def test_shared_factor_solve_and_adjoint_equal_the_solve_per_member():
    """Diagonals (m, groups, 1) with right-hand sides (m, groups, members) (one matrix per group, factored once)
    solve and differentiate as the same matrices broadcast to every member: values to rounding, the diagonals'
    gradients summed over the members."""
    import jax

    from shoals.kernels.pde import _thomas_rows

    rng = np.random.default_rng(5)
    m, groups, members = 11, 3, 4
    lower, upper = -0.4 * rng.random((2, m, groups, 1))
    diag = 1.0 + rng.random((m, groups, 1))
    rhs = rng.standard_normal((m, groups, members))
    weights = rng.standard_normal((m, groups, members))
    arguments = tuple(jnp.asarray(a) for a in (lower, diag, upper, rhs))

    def shared(*args):
        return jnp.sum(weights * _thomas_rows(*args))

    def per_member(*args):
        wide = [jnp.broadcast_to(a, rhs.shape).reshape(m, -1) for a in args[:3]]
        return jnp.sum(weights * _thomas_rows(*wide, args[3].reshape(m, -1)).reshape(rhs.shape))

    np.testing.assert_allclose(shared(*arguments), per_member(*arguments), rtol=1e-13)
    for ours, theirs in zip(jax.grad(shared, argnums=(0, 1, 2, 3))(*arguments),
                            jax.grad(per_member, argnums=(0, 1, 2, 3))(*arguments)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_end_at_zero_moves_the_padding_before_maturity():
    """Each row's zero-length steps move to its front at its maturity, its real steps keep their order and end
    on the last level; a row without padding is unchanged."""
    maturities = np.array([1.0, 0.25, 2.0])
    pieces = np.array([12, 3, 24])
    start, dt, theta, tags = split_steps(*uniform_time_steps(maturities, np.maximum(20, 6 * pieces), pieces, 2),
                                         np.array([0.1, 0.6, 1.5]))
    moved = end_at_zero(start, dt, theta, tags)
    for b, maturity in enumerate(maturities):
        real = dt[:, b] > 0.0
        pad = int((~real).sum())
        assert np.all(moved[1][:pad, b] == 0.0) and np.all(moved[0][:pad, b] == maturity)
        assert np.all(moved[2][:pad, b] == 0.5) and np.all(moved[3][:pad, b] == -1)
        for before, after in zip((start, dt, theta, tags), moved):
            assert np.array_equal(after[pad:, b], before[real, b])
    assert int((dt[:, 2] == 0.0).sum()) == 0 and all(np.array_equal(a[:, 2], b[:, 2])
                                                     for a, b in zip(moved, (start, dt, theta, tags)))

"""Analytic Black-Scholes Greeks against automatic differentiation of the price kernel.

``black_scholes_greeks`` (closed-form formulas) and ``black_scholes_greeks_autodiff`` (reverse mode for
first order, forward-over-reverse for second order) are independent computations of the same nine
quantities; they must agree to 1e-10 on a broad random grid of calls and puts.

Tolerance: |analytic - autodiff| <= 1e-10 * max(1, |analytic|) for every field (absolute below 1 and
relative above it, since vega, rho, theta and volga scale with the spot and reach O(10^3) here).
Measured on this grid (S in [1, 1000]): the scaled difference stays below ~1e-12.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import shoals as sh
from shoals.kernels.black_scholes import BlackScholesGreeks

FIELDS = BlackScholesGreeks._fields
NAMES = ("spots", "strikes", "expiries", "volatilities", "rates", "dividend_yields", "is_call")
TOLERANCE = 1e-10
N_RANDOM = 20_000

# One compilation per kernel for the whole grid (eager autodiff dispatches hundreds of small ops).
_analytic = jax.jit(sh.black_scholes_greeks)
_autodiff = jax.jit(sh.black_scholes_greeks_autodiff)


def _random_grid(n: int, seed: int):
    rng = np.random.default_rng(seed)
    spots = np.exp(rng.uniform(np.log(1.0), np.log(1000.0), n))
    strikes = spots * np.exp(rng.uniform(-1.5, 1.5, n))
    expiries = np.exp(rng.uniform(np.log(0.01), np.log(10.0), n))
    vols = rng.uniform(0.05, 1.0, n)
    rates = rng.uniform(-0.02, 0.1, n)
    dividends = rng.uniform(0.0, 0.08, n)
    calls = rng.random(n) < 0.5
    return dict(zip(NAMES, (spots, strikes, expiries, vols, rates, dividends, calls)))


def _cartesian_grid():
    """Every combination of edge-of-range values (ATM, deep ITM/OTM, short/long, low/high vol, r < 0)."""
    axes = np.meshgrid([100.0], [40.0, 90.0, 100.0, 110.0, 250.0], [0.01, 0.25, 1.0, 10.0], [0.05, 0.3, 1.0],
                       [-0.02, 0.0, 0.1], [0.0, 0.08], [True, False], indexing="ij")
    return {name: axis.ravel() for name, axis in zip(NAMES, axes)}


@pytest.fixture(scope="module")
def grid():
    random, cartesian = _random_grid(N_RANDOM, seed=20240601), _cartesian_grid()
    inputs = {name: np.concatenate([random[name], cartesian[name]]) for name in NAMES}
    return inputs, _analytic(**inputs), _autodiff(**inputs)


@pytest.mark.parametrize("part", ["random", "cartesian"])
def test_autodiff_matches_analytic_on_all_fields(grid, part):
    _, analytic, autodiff = grid
    rows = slice(0, N_RANDOM) if part == "random" else slice(N_RANDOM, None)
    worst = {}
    for name in FIELDS:
        a = np.asarray(getattr(analytic, name))[rows]
        b = np.asarray(getattr(autodiff, name))[rows]
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), name
        worst[name] = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))
    print(f"\nmax |analytic - autodiff| / max(1, |analytic|) on the {part} grid: "
          + ", ".join(f"{k}={v:.2e}" for k, v in worst.items()))
    for name, value in worst.items():
        assert value <= TOLERANCE, (name, value)


def test_jitted_kernels_equal_eager_kernels(grid):
    """The module-level jit does not change the numbers (spot check on a slice, eager analytic kernel)."""
    inputs, analytic, _ = grid
    subset = {name: values[:256] for name, values in inputs.items()}
    eager = sh.black_scholes_greeks(**subset)
    for name in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(analytic, name))[:256], np.asarray(getattr(eager, name)),
                                   rtol=1e-14, atol=1e-14, err_msg=name)


def test_greeks_are_float64(grid):
    _, analytic, autodiff = grid
    for greeks in (analytic, autodiff):
        for name in FIELDS:
            assert np.asarray(getattr(greeks, name)).dtype == np.float64, name


def test_autodiff_matches_analytic_on_broadcast_shapes():
    """Strikes along one axis and expiries along another: both kernels broadcast the same way."""
    inputs = dict(spots=100.0, strikes=np.array([80.0, 100.0, 125.0])[:, None],
                  expiries=np.array([0.1, 1.0, 5.0, 10.0])[None, :], volatilities=0.25, rates=0.03,
                  dividend_yields=0.01, is_call=False)
    analytic = sh.black_scholes_greeks(**inputs)
    autodiff = _autodiff(**inputs)
    for name in FIELDS:
        a, b = np.asarray(getattr(analytic, name)), np.asarray(getattr(autodiff, name))
        assert a.shape == b.shape == (3, 4)
        np.testing.assert_allclose(b, a, rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)


@pytest.mark.parametrize("kernel", [sh.black_scholes_greeks, sh.black_scholes_greeks_autodiff],
                         ids=["analytic", "autodiff"])
def test_jit_does_not_recompile_for_same_shapes(kernel):
    traces = []

    def greeks(spots, strikes, expiries, volatilities, rates, dividend_yields, is_call):
        traces.append(1)  # Python side effect: runs only while tracing
        return kernel(spots=spots, strikes=strikes, expiries=expiries, volatilities=volatilities, rates=rates,
                      dividend_yields=dividend_yields, is_call=is_call)

    jitted = jax.jit(greeks)
    first_inputs, second_inputs = _random_grid(64, seed=2), _random_grid(64, seed=3)
    first = jitted(*(first_inputs[n] for n in NAMES))
    assert len(traces) == 1 and jitted._cache_size() == 1
    second = jitted(*(second_inputs[n] for n in NAMES))
    assert len(traces) == 1, "a second call with the same shapes and dtypes retraced"
    assert jitted._cache_size() == 1
    assert not np.array_equal(np.asarray(first.price), np.asarray(second.price))
    for name in FIELDS:
        assert np.asarray(getattr(second, name)).dtype == np.float64, name
    if kernel is sh.black_scholes_greeks:  # a new shape compiles once more, and only once
        jitted(*(_random_grid(65, seed=4)[n] for n in NAMES))
        jitted(*(_random_grid(65, seed=5)[n] for n in NAMES))
        assert len(traces) == 2 and jitted._cache_size() == 2


def test_autodiff_broadcasts_is_call_like_the_analytic_kernel():
    inputs = dict(spots=100.0, strikes=np.array([90.0, 110.0, 120.0]), expiries=1.0, volatilities=0.2, rates=0.01,
                  dividend_yields=0.0, is_call=np.array([[True], [False]]))
    analytic = sh.black_scholes_greeks(**inputs)
    assert np.asarray(analytic.price).shape == (2, 3)
    autodiff = _autodiff(**inputs)
    for name in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(autodiff, name)), np.asarray(getattr(analytic, name)),
                                   rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)

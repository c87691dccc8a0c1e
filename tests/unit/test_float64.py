"""Double precision everywhere: ``import shoals`` turns on JAX's x64 mode and every public kernel returns
float64 whatever the input dtypes (Python ints/floats, int32/int64, float32 arrays, bools).

Output dtypes are checked with ``jax.eval_shape`` (abstract tracing: exact dtypes, no compilation) over a
matrix of input dtypes, and by executing each kernel once on small inputs.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shoals as sh
from shoals.kernels import monte_carlo as mc
from shoals.kernels.black_scholes import BlackScholesGreeks
from shoals.kernels.implied_vol import normalised_black_price
from shoals.kernels.special import erfcx, log_ndtr


def test_x64_is_enabled_after_import():
    assert jax.config.read("jax_enable_x64") is True
    assert jnp.asarray(1.0).dtype == jnp.float64
    assert jnp.zeros(3).dtype == jnp.float64
    assert jnp.arange(3).dtype == jnp.int64


def test_x64_is_enabled_by_import_in_a_fresh_interpreter():
    """Also when JAX was imported (and used) before shoals."""
    code = ("import jax, jax.numpy as jnp; before = jnp.asarray(1.0).dtype; import shoals; "
            "after = jnp.asarray(1.0).dtype; print(before, after, jax.config.read('jax_enable_x64'))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"JAX_PLATFORMS": "cpu", "PATH": ""}).stdout.split()
    assert output == ["float32", "float64", "True"]


def _input_variants():
    """The same market in several input dtypes."""
    return {
        "python": dict(spots=100, strikes=100.0, expiries=1, volatilities=0.2, rates=0, dividend_yields=0.01),
        "float32": {k: np.asarray(v, dtype=np.float32) for k, v in
                    dict(spots=[100, 90], strikes=[100, 95], expiries=[1, 2], volatilities=[0.2, 0.3],
                         rates=[0.05, 0.0], dividend_yields=[0.01, 0.0]).items()},
        "int32": {k: np.asarray(v, dtype=np.int32) for k, v in
                  dict(spots=[100, 90], strikes=[100, 95], expiries=[1, 2], volatilities=[1, 1],
                       rates=[0, 0], dividend_yields=[0, 0]).items()},
        "jax float32": {k: jnp.asarray(v, dtype=jnp.float32) for k, v in
                        dict(spots=100.0, strikes=110.0, expiries=0.5, volatilities=0.25, rates=0.02,
                             dividend_yields=0.0).items()},
    }


def _abstract(function, **kwargs):
    """Output avals of ``function(**kwargs)`` (non-array keyword values closed over)."""
    arrays = {k: v for k, v in kwargs.items() if not isinstance(v, (bool, int, float))}
    constants = {k: v for k, v in kwargs.items() if k not in arrays}
    return jax.eval_shape(lambda a: function(**a, **constants), arrays)


@pytest.mark.parametrize("variant", list(_input_variants()))
@pytest.mark.parametrize("kernel", [sh.black_scholes_price, sh.black_scholes_greeks, sh.black_scholes_greeks_autodiff],
                         ids=["price", "greeks", "greeks_autodiff"])
def test_black_scholes_kernels_return_float64(kernel, variant):
    inputs = dict(_input_variants()[variant], is_call=np.array(False))
    out = _abstract(kernel, **inputs)
    leaves = jax.tree_util.tree_leaves(out)
    assert leaves and all(leaf.dtype == jnp.float64 for leaf in leaves)


@pytest.mark.parametrize("variant", ["python", "float32", "int32"])
def test_implied_volatility_returns_float64_vols_and_integer_reasons(variant):
    cast = {"python": lambda v: v, "float32": lambda v: np.asarray(v, dtype=np.float32),
            "int32": lambda v: np.asarray(v, dtype=np.int32)}[variant]
    vols, reasons = _abstract(sh.implied_volatility, prices=cast(8), forwards=cast(100), strikes=cast(100),
                              expiries=cast(1), discount_factors=cast(1))
    assert vols.dtype == jnp.float64
    assert jnp.issubdtype(reasons.dtype, jnp.integer)


def test_special_functions_and_normalised_price_return_float64():
    for x in (np.float32(1.5), np.arange(4, dtype=np.int32), 3, jnp.ones(2, dtype=jnp.float32)):
        assert _abstract(erfcx, x=x).dtype == jnp.float64
        assert _abstract(log_ndtr, x=x).dtype == jnp.float64
    out = _abstract(normalised_black_price, log_moneyness=np.float32(-0.1), stdev=np.float32(0.2))
    assert out.dtype == jnp.float64


def _gbm_inputs(dtype):
    keys = mc.stream_keys(0, np.arange(2))
    return dict(keys=keys, samples=jnp.asarray(1000), spots=np.asarray([100, 90], dtype=dtype),
                strikes=np.asarray([100, 95], dtype=dtype), expiries=np.asarray([1, 1], dtype=dtype),
                volatilities=np.asarray([0.2, 0.3], dtype=dtype), rates=np.asarray([0, 0], dtype=dtype),
                dividend_yields=np.asarray([0, 0], dtype=dtype), signs=np.asarray([1, -1], dtype=dtype))


def _gbm_outputs(dtype):
    inputs = _gbm_inputs(dtype)
    stats = jax.eval_shape(lambda a: mc.european_gbm_block_stats(first_block=0, n_blocks=1, **a), inputs)
    sums = jax.eval_shape(lambda a: mc.european_gbm_pathwise_sums(first_block=0, n_blocks=1, **a), inputs)
    return stats, sums


def test_monte_carlo_kernels_return_float64():
    keys = mc.stream_keys(0, np.arange(2))
    assert keys.dtype == jnp.uint32 and keys.shape == (2, 2)
    counters = np.arange(8, dtype=np.uint64)
    assert _abstract(mc.counter_uniforms, key=keys[0], counters=counters).dtype == jnp.float64
    assert _abstract(mc.counter_normals, key=keys[0], counters=counters).dtype == jnp.float64
    for dtype in (np.float64, np.float32):  # the price statistics are float64 in both cases
        (counts, means, m2), _ = _gbm_outputs(dtype)
        assert jnp.issubdtype(counts.dtype, jnp.integer)
        assert means.dtype == m2.dtype == jnp.float64
    _, sums = _gbm_outputs(np.float64)
    assert sums.dtype == jnp.float64
    mean, std_error = mc.combine_block_stats(np.array([[10, 5]]), np.float32([[1.0, 2.0]]), np.float32([[3.0, 4.0]]))
    assert mean.dtype == std_error.dtype == jnp.float64


def test_pathwise_sums_are_float64_for_float32_inputs():
    _, sums = _gbm_outputs(np.float32)
    assert sums.dtype == jnp.float64


def test_executed_kernels_are_float64():
    """Concrete values, not only abstract dtypes (cheap kernels only; the others execute in their own tests)."""
    variants = _input_variants()
    for variant in ("float32", "int32"):
        price = sh.black_scholes_price(**variants[variant])
        assert isinstance(price, jax.Array) and price.dtype == jnp.float64
        greeks = sh.black_scholes_greeks(**variants[variant])
        assert isinstance(greeks, BlackScholesGreeks)
        assert all(getattr(greeks, name).dtype == jnp.float64 for name in greeks._fields)
    # float32 cannot represent 0.1 + its rounding: float64 input and float32 input differ as they should.
    assert float(sh.black_scholes_price(spots=100.0, strikes=100.0, expiries=1.0, volatilities=0.1)) != float(
        sh.black_scholes_price(spots=100.0, strikes=100.0, expiries=1.0, volatilities=np.float32(0.1)))
    assert erfcx(np.float32(2.0)).dtype == jnp.float64
    assert mc.counter_normals(mc.stream_keys(0, [0])[0], jnp.arange(4, dtype=jnp.uint64)).dtype == jnp.float64


def test_price_results_are_float64():
    instrument = sh.European(strike=np.array([90, 110], dtype=np.int32), maturity=np.float32(1.0))
    market = sh.FlatMarket(spot=np.float32(100.0), rate=0, vol=np.float32(0.2))
    for method in (sh.ClosedForm(), sh.MonteCarlo(paths=1_000, seed=0)):
        result = sh.price(instrument, market, method)
        assert result.value.dtype == np.float64 and result.value.shape == (2,)
        if result.std_error is not None:
            assert result.std_error.dtype == np.float64
        assert set(result.greeks) == {"delta", "gamma", "vega", "theta", "rho"}
        assert all(values.dtype == np.float64 for values in result.greeks.values())

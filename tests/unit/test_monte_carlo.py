"""Monte Carlo under GBM: accuracy against the closed form, determinism, chunking, batching, pathwise
Greeks, input validation and the counter-based random numbers.

Reference case: S = K = 100, r = 5%, sigma = 20%, T = 1 call (closed form 10.450583572185565).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import shoals as sh
from shoals.kernels.monte_carlo import (
    BLOCK_SAMPLES,
    counter_normals,
    counter_uniforms,
    european_gbm_block_stats,
    european_gbm_pathwise_sums,
    stream_keys,
)

GREEKS = ("delta", "gamma", "vega", "theta", "rho")
CALL = sh.European(strike=100.0, maturity=1.0, is_call=True)
# Jitted once per shape (eager dispatch compiles each Threefry primitive separately: slower).
_normals = jax.jit(counter_normals)
_uniforms = jax.jit(counter_uniforms)
MARKET = sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)


@pytest.fixture(scope="module")
def closed_form():
    return sh.price(CALL, MARKET)


def _assert_bitwise_equal(a: sh.PriceResult, b: sh.PriceResult, greeks=True):
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.std_error, b.std_error)
    if greeks:
        assert set(a.greeks) == set(b.greeks)
        for name in a.greeks:
            np.testing.assert_array_equal(a.greeks[name], b.greeks[name], err_msg=name)


def test_price_close_to_closed_form(closed_form):
    result = sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=7))
    reference = float(closed_form.value)
    value, std_error = float(result.value), float(result.std_error)
    print(f"\nMC 20k paths: {value:.6f} +- {std_error:.6f} vs closed form {reference:.6f}")
    assert abs(reference - 10.450583572185565) < 1e-12
    assert abs(value / reference - 1.0) < 0.02
    assert abs(value - reference) < 4.0 * std_error
    # The standard error is that of a payoff with sd ~ 14.7 over 20,000 paths.
    assert 0.08 < std_error < 0.13
    assert result.method == "monte-carlo"
    assert result.diagnostics["paths"] == 20_000 and result.diagnostics["seed"] == 7
    assert result.diagnostics["blocks"] == 1


def test_rerun_with_same_seed_is_bitwise_identical():
    method = sh.MonteCarlo(paths=20_000, seed=7)
    _assert_bitwise_equal(sh.price(CALL, MARKET, method), sh.price(CALL, MARKET, method))
    _assert_bitwise_equal(sh.price(CALL, MARKET, method), sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=7)))


def test_different_seed_gives_different_value():
    a = sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=7, greeks=False))
    b = sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=8, greeks=False))
    assert float(a.value) != float(b.value)
    assert abs(float(a.value) - float(b.value)) < 6.0 * float(a.std_error)  # but statistically the same


CHUNKS = (1, 2, 7, 64)
PATHS_MULTI_BLOCK = 300_000  # 4 full blocks of 65,536 samples and a partial fifth (37,856 samples)


@pytest.fixture(scope="module")
def by_chunk():
    results = {}
    for antithetic in (False, True):
        for chunk in CHUNKS:
            method = sh.MonteCarlo(paths=PATHS_MULTI_BLOCK, seed=3, chunk_blocks=chunk, antithetic=antithetic,
                                   greeks=not antithetic)  # pathwise Greeks once (the costly part)
            results[antithetic, chunk] = sh.price(CALL, MARKET, method)
    return results


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("chunk", CHUNKS[:-1])
def test_chunk_blocks_do_not_change_the_price(by_chunk, antithetic, chunk):
    """Price and standard error are bitwise identical for every chunking of the blocks."""
    assert by_chunk[False, 64].diagnostics["blocks"] == 5
    assert by_chunk[True, 64].diagnostics["blocks"] == 3  # 150,000 antithetic pairs
    _assert_bitwise_equal(by_chunk[antithetic, chunk], by_chunk[antithetic, 64], greeks=False)


@pytest.mark.parametrize("chunk", CHUNKS[:-1])
def test_chunk_blocks_change_greeks_by_rounding_at_most(by_chunk, chunk):
    a, b = by_chunk[False, chunk], by_chunk[False, 64]
    for name in GREEKS:
        np.testing.assert_allclose(a.greeks[name], b.greeks[name], rtol=1e-13, err_msg=name)


def test_chunk_blocks_and_batching_bitwise_for_everything(by_chunk):
    failures = []
    for chunk in CHUNKS[:-1]:
        try:
            _assert_bitwise_equal(by_chunk[False, chunk], by_chunk[False, 64])
        except AssertionError:
            failures.append(f"single trade, greeks, chunk_blocks={chunk}")
    instrument = sh.European(strike=np.array([100.0, 95.0]), maturity=np.array([1.0, 0.5]),
                             is_call=np.array([True, False]))
    market = sh.FlatMarket(spot=np.array([100.0, 90.0]), rate=np.array([0.05, 0.01]), vol=np.array([0.2, 0.3]),
                           dividend=np.array([0.0, 0.02]))
    results = [sh.price(instrument, market, sh.MonteCarlo(paths=PATHS_MULTI_BLOCK, seed=3, antithetic=True,
                                                          chunk_blocks=chunk, greeks=False)) for chunk in (1, 64)]
    try:
        _assert_bitwise_equal(*results, greeks=False)
    except AssertionError:
        failures.append("2-trade antithetic batch, price, chunk_blocks=1 vs 64")
    assert not failures, failures


def test_antithetic_reduces_the_standard_error():
    plain = sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=1, greeks=False))
    antithetic = sh.price(CALL, MARKET, sh.MonteCarlo(paths=20_000, seed=1, antithetic=True, greeks=False))
    assert float(antithetic.std_error) < 0.8 * float(plain.std_error)
    assert abs(float(antithetic.value) - 10.450583572185565) < 4.0 * float(antithetic.std_error)
    assert antithetic.diagnostics["antithetic"] is True


def test_batch_equals_each_trade_alone_with_its_stream():
    strikes = np.array([80.0, 100.0, 120.0, 100.0])
    expiries = np.array([0.5, 1.0, 2.0, 0.25])
    calls = np.array([True, False, True, False])
    vols = np.array([0.2, 0.25, 0.3, 0.15])
    method = sh.MonteCarlo(paths=70_000, seed=11)  # two blocks, the second partial
    batch = method.price(sh.European(strike=strikes, maturity=expiries, is_call=calls),
                         sh.FlatMarket(spot=100.0, rate=0.03, vol=vols, dividend=0.01))
    assert batch.value.shape == (4,) and batch.std_error.shape == (4,)
    for i in range(4):
        alone = method.price(sh.European(strike=strikes[i], maturity=expiries[i], is_call=calls[i]),
                             sh.FlatMarket(spot=100.0, rate=0.03, vol=vols[i], dividend=0.01), streams=[i])
        assert alone.value.shape == ()
        # Same random numbers and the same reduction tree: bitwise equal.
        np.testing.assert_array_equal(batch.value[i], alone.value)
        np.testing.assert_array_equal(batch.std_error[i], alone.std_error)
        for name in GREEKS:
            np.testing.assert_array_equal(batch.greeks[name][i], alone.greeks[name], err_msg=name)
        # Another stream is another sample.
        other = sh.MonteCarlo(paths=70_000, seed=11, greeks=False).price(
            sh.European(strike=strikes[i], maturity=expiries[i], is_call=calls[i]),
            sh.FlatMarket(spot=100.0, rate=0.03, vol=vols[i], dividend=0.01), streams=[i + 100])
        assert float(other.value) != float(alone.value)
    # And every trade agrees with its closed form.
    exact = sh.price(sh.European(strike=strikes, maturity=expiries, is_call=calls),
                     sh.FlatMarket(spot=100.0, rate=0.03, vol=vols, dividend=0.01))
    assert np.all(np.abs(batch.value - exact.value) < 4.0 * batch.std_error)


N_REPLICAS = 12
REPLICA_PATHS = 32_768


@pytest.fixture(scope="module")
def replicas():
    """N_REPLICAS independent estimates (streams 0..11) of a call and of a put with dividends."""
    calls = np.array([True] * N_REPLICAS + [False] * N_REPLICAS)
    instrument = sh.European(strike=np.where(calls, 100.0, 105.0), maturity=np.where(calls, 1.0, 0.75), is_call=calls)
    market = sh.FlatMarket(spot=100.0, rate=np.where(calls, 0.05, 0.02), vol=np.where(calls, 0.2, 0.3),
                           dividend=np.where(calls, 0.0, 0.03))
    mc = sh.price(instrument, market, sh.MonteCarlo(paths=REPLICA_PATHS, seed=5))
    exact = sh.price(instrument, market)
    return mc, exact


@pytest.mark.parametrize("name", ("value",) + GREEKS)
@pytest.mark.parametrize("option", ["call", "put"])
def test_pathwise_greeks_agree_with_closed_form(replicas, name, option):
    """Mean of 12 independent estimates within 4 standard errors (estimated from their spread) of the closed
    form.  Gamma (central difference of pathwise deltas at S(1 +- 1%)) has an O(h^2) bias ~1e-4 relative:
    negligible at this standard error."""
    mc, exact = replicas
    rows = slice(0, N_REPLICAS) if option == "call" else slice(N_REPLICAS, None)
    estimates = (mc.value if name == "value" else mc.greeks[name])[rows]
    reference = float((exact.value if name == "value" else exact.greeks[name])[rows][0])
    mean = estimates.mean()
    standard_error = estimates.std(ddof=1) / np.sqrt(N_REPLICAS)
    print(f"\n{option} {name}: MC {mean:.6f} +- {standard_error:.6f}, closed form {reference:.6f}")
    assert standard_error < 0.01 * abs(reference)  # the test has power: SE below 1% of the value
    assert abs(mean - reference) < 4.0 * standard_error


def test_reported_standard_error_matches_the_spread(replicas):
    mc, _ = replicas
    for rows in (slice(0, N_REPLICAS), slice(N_REPLICAS, None)):
        spread = mc.value[rows].std(ddof=1)
        reported = mc.std_error[rows].mean()
        assert 0.5 < spread / reported < 1.6  # chi-square with 11 dof: 99.9% within [0.43, 1.75]


@pytest.mark.parametrize("kwargs", [
    {"paths": 1}, {"paths": 0}, {"paths": -10}, {"paths": 3, "antithetic": True}, {"paths": 20_001, "antithetic": True},
    {"paths": 1_000, "chunk_blocks": 0}])
def test_bad_parameters_raise_input_error(kwargs):
    with pytest.raises(sh.InputError) as info:
        sh.MonteCarlo(**kwargs)
    assert info.value.field in ("paths", "chunk_blocks")
    assert isinstance(info.value, ValueError) and isinstance(info.value, sh.ShoalsError)


def test_good_edge_parameters_are_accepted():
    sh.MonteCarlo(paths=2)
    sh.MonteCarlo(paths=2, antithetic=True)
    result = sh.price(CALL, MARKET, sh.MonteCarlo(paths=2, seed=0, greeks=False))
    assert np.isfinite(result.value) and np.isfinite(result.std_error)


@pytest.fixture(scope="module")
def kernel_inputs():
    keys = stream_keys(3, np.array([0, 1]))
    return {"keys": keys, "samples": jnp.asarray(4 * BLOCK_SAMPLES + 1234, dtype=jnp.int64),
                "spots": jnp.array([100.0, 90.0]), "strikes": jnp.array([100.0, 95.0]), "expiries": jnp.array([1.0, 0.5]),
                "volatilities": jnp.array([0.2, 0.3]), "rates": jnp.array([0.05, 0.01]),
                "dividend_yields": jnp.array([0.0, 0.02]), "signs": jnp.array([1.0, -1.0])}


@pytest.mark.parametrize("antithetic", [False])
def test_block_stats_are_independent_of_how_blocks_are_grouped(kernel_inputs, antithetic):
    whole = european_gbm_block_stats(first_block=0, n_blocks=5, antithetic=antithetic, **kernel_inputs)
    head = european_gbm_block_stats(first_block=0, n_blocks=2, antithetic=antithetic, **kernel_inputs)
    tail = european_gbm_block_stats(first_block=2, n_blocks=3, antithetic=antithetic, **kernel_inputs)
    for part_whole, part_head, part_tail in zip(whole, head, tail):
        assert np.asarray(part_whole).shape == (2, 5)
        np.testing.assert_array_equal(np.asarray(part_whole),
                                      np.concatenate([np.asarray(part_head), np.asarray(part_tail)], axis=1))
    counts = np.asarray(whole[0])
    np.testing.assert_array_equal(counts, [[BLOCK_SAMPLES] * 4 + [1234]] * 2)


def test_pathwise_sums_are_independent_of_how_blocks_are_grouped(kernel_inputs):
    whole = np.asarray(european_gbm_pathwise_sums(first_block=0, n_blocks=5, **kernel_inputs))
    head = np.asarray(european_gbm_pathwise_sums(first_block=0, n_blocks=2, **kernel_inputs))
    tail = np.asarray(european_gbm_pathwise_sums(first_block=2, n_blocks=3, **kernel_inputs))
    assert whole.shape == (2, 5, 6)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail], axis=1))


def test_counter_normals_are_standard_normal():
    key = stream_keys(0, np.array([0]))[0]
    n = 200_000
    z = np.asarray(_normals(key, jnp.arange(n, dtype=jnp.uint64)))
    assert z.dtype == np.float64 and z.shape == (n,)
    assert abs(z.mean()) < 5.0 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5.0 * np.sqrt(2.0 / n)
    assert abs(scipy.stats.skew(z)) < 5.0 * np.sqrt(6.0 / n)
    assert abs(scipy.stats.kurtosis(z)) < 5.0 * np.sqrt(24.0 / n)
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    u = np.asarray(_uniforms(key, jnp.arange(n, dtype=jnp.uint64)))
    assert np.all((u > 0.0) & (u < 1.0))
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
    assert len(np.unique(u)) == n


def test_counter_draws_depend_only_on_key_and_counter():
    keys = stream_keys(0, np.array([0, 1]))
    all_draws = np.asarray(_normals(keys[0], jnp.arange(100, dtype=jnp.uint64)))
    # Counters beyond 2^32 use the high word too (2^32 + 5 is not counter 5).
    some = np.asarray(_normals(keys[0], jnp.array([5, 6, 7, 99, 2 ** 32 + 5], dtype=jnp.uint64)))
    np.testing.assert_array_equal(some[:4], all_draws[[5, 6, 7, 99]])
    assert some[4] != all_draws[5]
    other_stream = np.asarray(_normals(keys[1], jnp.arange(100, dtype=jnp.uint64)))
    assert not np.any(other_stream == all_draws)
    other_seed = np.asarray(_normals(stream_keys(1, np.array([0]))[0], jnp.arange(100, dtype=jnp.uint64)))
    assert not np.any(other_seed == all_draws)

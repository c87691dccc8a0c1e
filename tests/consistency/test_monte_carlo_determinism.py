"""Monte Carlo results are bitwise identical for a given seed whatever the dispatch size (chunk_blocks),
the batch composition (a trade alone with its stream, or in another batch order) and the process that
computes them (two spawned worker processes pricing halves of a batch)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import shoals as sh
from shoals.kernels.paths import PATH_BLOCK_SAMPLES

PATHS = 3 * PATH_BLOCK_SAMPLES + 1000    # three full blocks and a partial fourth
MARKET = sh.FlatMarket(spot=100.0, rate=np.array([0.03, 0.05, 0.01, 0.04]), vol=np.array([0.2, 0.3, 0.25, 0.15]),
                       dividend=0.01)
BATCHES = {
    "barrier": sh.Barrier(strike=np.array([100.0, 95.0, 105.0, 100.0]), maturity=np.array([1.0, 0.5, 0.75, 1.0]),
                          barrier=np.array([90.0, 120.0, 85.0, 110.0]), is_up=np.array([False, True, False, True]),
                          is_knock_in=np.array([False, False, True, True]), rebate=np.array([2.0, 1.0, 0.0, 0.5]),
                          monitoring_dates=np.array([0, 0, 12, 0])),
    "lookback": sh.Lookback(maturity=np.array([1.0, 0.5, 0.75, 1.0]), strike=np.array([np.nan, 100.0, np.nan, 95.0]),
                            is_call=np.array([True, True, False, False]), floating=np.array([True, False, True, False])),
    "asian": sh.Asian(maturity=np.array([1.0, 0.5, 1.0, 2.0]), fixings=np.array([12, 6, 12, 12]),
                      strike=np.array([100.0, 95.0, np.nan, 100.0]), floating=np.array([False, False, True, False])),
    "cliquet": sh.Cliquet(maturity=np.array([1.0, 2.0, 1.0, 1.0]), resets=np.array([4, 8, 4, 4]),
                          local_cap=np.array([0.1, np.inf, 0.05, 0.2]),
                          pay_per_period=np.array([False, True, False, True])),
}


def _take(instrument, rows):
    return type(instrument)(**{k: np.broadcast_to(np.asarray(v), (4,))[rows] for k, v in vars(instrument).items()})


def _market(rows):
    return sh.FlatMarket(spot=100.0, rate=MARKET.rate[rows], vol=MARKET.vol[rows], dividend=0.01)


def _assert_bitwise(a, b, rows_a=slice(None), rows_b=slice(None)):
    np.testing.assert_array_equal(a.value[rows_a], b.value[rows_b])
    np.testing.assert_array_equal(a.std_error[rows_a], b.std_error[rows_b])
    for name in a.greeks:
        np.testing.assert_array_equal(a.greeks[name][rows_a], b.greeks[name][rows_b], err_msg=name)


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in ("cliquet", "lookback") else f
                                    for f in sorted(BATCHES)])
def test_chunking_and_batch_composition_do_not_change_results(family):
    instrument = BATCHES[family]
    greeks = family == "asian"    # the Greek kernels once (compiling them is the costly part)
    method = sh.MonteCarlo(paths=PATHS, seed=9, steps_per_year=24, greeks=greeks, antithetic=True)
    whole = method.price(instrument, MARKET)
    assert np.all(np.isfinite(whole.value)) and np.all(whole.std_error > 0)
    one_chunk = sh.MonteCarlo(paths=PATHS, seed=9, steps_per_year=24, greeks=greeks, antithetic=True,
                              chunk_blocks=1).price(instrument, MARKET)
    _assert_bitwise(whole, one_chunk)
    reordered_rows = np.array([3, 1])
    reordered = method.price(_take(instrument, reordered_rows), _market(reordered_rows), streams=reordered_rows)
    _assert_bitwise(whole, reordered, reordered_rows)


def test_qmc_is_independent_of_batch_composition():
    instrument = BATCHES["asian"]
    method = sh.MonteCarlo(paths=16 * 1024, seed=2, qmc=True, greeks=False, control_variate=True)
    whole = method.price(instrument, MARKET)
    alone = method.price(_take(instrument, [2]), _market([2]), streams=[2])
    _assert_bitwise(whole, alone, [2])


def _price_rows(rows):
    method = sh.MonteCarlo(paths=PATHS, seed=9, steps_per_year=24, greeks=False)
    result = method.price(_take(BATCHES["barrier"], rows), _market(rows), streams=rows)
    return result.value, result.std_error, dict(result.greeks)


@pytest.mark.slow
def test_two_processes_pricing_halves_equal_one_process():
    rows = np.arange(4)
    local = _price_rows(rows)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        halves = list(pool.map(_price_rows, [rows[:2], rows[2:]]))
    np.testing.assert_array_equal(local[0], np.concatenate([h[0] for h in halves]))
    np.testing.assert_array_equal(local[1], np.concatenate([h[1] for h in halves]))
    for name in local[2]:
        np.testing.assert_array_equal(local[2][name], np.concatenate([h[2][name] for h in halves]), err_msg=name)

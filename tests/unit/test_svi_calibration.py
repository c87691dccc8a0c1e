"""Batched SVI calibration (shoals.calibration.svi.fit_svi): exact recovery, noisy bid/ask quotes, the
admissible domain and g(k) >= 0 as a property, determinism, masking, a 5-quote slice, SPX 2011-01-24
and the seed pipeline's synthetic quote set.

The SmileData builders here are deliberately small and local (the production quote -> SmileData path
is calibration/smiles.py); ``benchmarks/bench_svi.py`` imports them from this file.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import shoals  # noqa: F401  (enables float64)
from shoals.calibration.svi import SVIFit, fit_svi, raw_from_unconstrained, unconstrained_from_raw
from shoals.errors import InputError
from shoals.kernels.svi import butterfly_density, svi_derivatives, svi_total_variance
from shoals.market.quotes import SmileData
from shoals.data import path as data_path

SHARED = Path(__file__).resolve().parents[3] / "shared"
SEED_PIPELINE = SHARED / "baselines" / "seed_pipeline_native.py"
SPX_CSV = data_path("spx_20110124_clean.csv")
SEED_EXPIRIES = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
TWO_WEEKS = 14.0 / 365.0


# --------------------------------------------------------------------------------------- builders

def black_vega(forward, strikes, expiry, vols, discount_factor):
    """Black-76 vega dPrice/dsigma."""
    stdev = vols * np.sqrt(expiry)
    d1 = (np.log(forward / strikes) + 0.5 * stdev * stdev) / stdev
    return discount_factor * forward * norm.pdf(d1) * np.sqrt(expiry)


def smile_data_from_slices(slices) -> SmileData:
    """Pad per-slice dicts (expiry, forward, discount_factor, strikes, is_call, mid, bid, ask[, rows]) into
    a SmileData, quotes sorted by strike."""
    n, q = len(slices), max(len(s["strikes"]) for s in slices)
    shape = (n, q)
    k, strikes = np.zeros(shape), np.ones(shape)
    mid, bid, ask = np.full(shape, 0.2), np.full(shape, np.nan), np.full(shape, np.nan)
    vega, mask, is_call, rows = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, int)
    for i, s in enumerate(slices):
        order = np.argsort(s["strikes"])
        count = len(order)
        strikes[i, :count] = np.asarray(s["strikes"], float)[order]
        k[i, :count] = np.log(strikes[i, :count] / s["forward"])
        is_call[i, :count] = np.asarray(s["is_call"])[order]
        mid[i, :count] = np.asarray(s["mid"], float)[order]
        bid[i, :count] = np.asarray(s["bid"], float)[order]
        ask[i, :count] = np.asarray(s["ask"], float)[order]
        vega[i, :count] = black_vega(s["forward"], strikes[i, :count], s["expiry"], mid[i, :count],
                                     s["discount_factor"])
        mask[i, :count] = True
        rows[i, :count] = np.asarray(s.get("rows", np.arange(1, count + 1)))[order]
    return SmileData(expiries=np.array([s["expiry"] for s in slices], float),
                     forwards=np.array([s["forward"] for s in slices], float),
                     discount_factors=np.array([s["discount_factor"] for s in slices], float),
                     log_moneyness=k, strikes=strikes, is_call=is_call, mid_vol=mid, bid_vol=bid, ask_vol=ask,
                     vega=vega, mask=mask, rows=rows)


def load_seed_module():
    spec = importlib.util.spec_from_file_location("seed_pipeline_native", SEED_PIPELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_smile_data(seed: int = 42, spot: float = 100.0, rate: float = 0.04) -> SmileData:
    """The seed pipeline's synthetic quotes (load_market_quotes) as SmileData, 8 expiries x 15 strikes."""
    _, rate, expiries, quotes = load_seed_module().load_market_quotes(spot=spot, rate=rate, expiries=SEED_EXPIRIES,
                                                                      seed=seed)
    slices = []
    for expiry in expiries:
        chosen = [q for q in quotes if abs(q.expiry - expiry) < 1e-12]
        slices.append(dict(expiry=expiry, forward=chosen[0].forward, discount_factor=np.exp(-rate * expiry),
                           strikes=[q.strike for q in chosen], is_call=[q.option_type == "call" for q in chosen],
                           mid=[q.mid_vol for q in chosen], bid=[q.bid_vol for q in chosen],
                           ask=[q.ask_vol for q in chosen]))
    return smile_data_from_slices(slices)


def spx_smile_data(min_quotes: int = 5) -> SmileData:
    """SPX 2011-01-24 OTM quotes (calls K >= F, puts K < F) with a finite mid vol, per (root, expiry), from
    the file's parity forwards/discount factors and bid/ask/mid vols; slices with < min_quotes dropped."""
    frame = pd.read_csv(SPX_CSV)
    frame["row"] = np.arange(len(frame)) + 2  # 1-based file row, header is row 1
    frame = frame[np.isfinite(frame["mid_iv"])]
    otm = (((frame.option_type == "C") & (frame.strike >= frame.parity_forward))
           | ((frame.option_type == "P") & (frame.strike < frame.parity_forward)))
    slices = []
    for (expiry, _root), group in frame[otm].groupby(["expiry_years", "root"]):
        if len(group) < min_quotes:
            continue
        slices.append(dict(expiry=float(expiry), forward=float(group.parity_forward.iloc[0]),
                           discount_factor=float(group.parity_discount_factor.iloc[0]),
                           strikes=group.strike.to_numpy(float), is_call=(group.option_type == "C").to_numpy(),
                           mid=group.mid_iv.to_numpy(float), bid=group.bid_iv.to_numpy(float),
                           ask=group.ask_iv.to_numpy(float), rows=group.row.to_numpy()))
    return smile_data_from_slices(slices)


def svi_smile_data(params, expiries, log_moneyness, *, half_spread=0.005, noise=None) -> SmileData:
    """Quotes from raw-SVI params (rows of a, b, rho, m, sigma) at log-moneyness per slice; mid = SVI vol
    (+ noise), bid/ask = mid -+ half_spread; forward 100, discount factor 1."""
    slices = []
    for i, (expiry, ks) in enumerate(zip(expiries, log_moneyness)):
        a, b, rho, m, sigma = params[i]
        vols = np.sqrt(np.asarray(svi_total_variance(log_moneyness=ks, a=a, b=b, rho=rho, m=m, sigma=sigma)) / expiry)
        mid = vols + (0.0 if noise is None else noise[i][: len(ks)])
        spread = half_spread if np.ndim(half_spread) == 0 else half_spread[i][: len(ks)]
        slices.append(dict(expiry=expiry, forward=100.0, discount_factor=1.0, strikes=100.0 * np.exp(ks),
                           is_call=ks >= 0, mid=mid, bid=mid - spread, ask=mid + spread))
    return smile_data_from_slices(slices)


# --------------------------------------------------------------------------------------- checks

def stacked(fit: SVIFit) -> np.ndarray:
    return np.asarray(fit.params.stacked())


def min_g_and_w(params_row, expiry, half_width_sqrt_t=3.0, extra=()):
    """Brute-force min of g(k) and of w(k): 20,001 points on [-3 sqrt(T), 3 sqrt(T)] plus ``extra`` points."""
    a, b, rho, m, sigma = params_row
    k = np.concatenate([np.linspace(-1.0, 1.0, 20001) * half_width_sqrt_t * np.sqrt(expiry), np.asarray(extra)])
    d = svi_derivatives(log_moneyness=k, a=a, b=b, rho=rho, m=m, sigma=sigma)
    g = np.asarray(butterfly_density(w=d.w, dw=d.dw, d2w=d.d2w, log_moneyness=k))
    return g.min(), np.asarray(d.w).min()


def wide_points(params_row):
    """Far points: m +- sigma sinh(u) for u up to 14 (beyond the fit's own report grid) and |k| <= 50."""
    _, _, _, m, sigma = params_row
    return np.concatenate([m + sigma * np.sinh(np.linspace(-14.0, 14.0, 40001)), np.linspace(-50.0, 50.0, 40001)])


def assert_admissible(fit: SVIFit, *, wide=True):
    p = stacked(fit)
    a, b, rho, _, sigma = p.T
    assert np.all(np.isfinite(p))
    assert np.all(b >= 0.0)
    assert np.all(np.abs(rho) < 1.0)
    assert np.all(sigma > 0.0)
    assert np.all(a + b * sigma * np.sqrt(1.0 - rho * rho) > 0.0)
    assert np.all(b * (1.0 + np.abs(rho)) <= 2.0)
    assert np.all(fit.butterfly_free) and np.all(fit.min_butterfly_density >= 0.0)
    for i, expiry in enumerate(fit.expiries):
        g_min, w_min = min_g_and_w(p[i], expiry, extra=wide_points(p[i]) if wide else ())
        assert g_min >= 0.0, (i, p[i], g_min)
        assert w_min > 0.0, (i, p[i], w_min)


# ---------------------------------------------------------------------------- synthetic fixtures

EXPIRIES8 = np.array([0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0])


def true_params8():
    """Eight butterfly-free raw-SVI slices (min g > 0.05 everywhere), rows a, b, rho, m, sigma."""
    i = np.arange(8)
    b = 0.06 + 0.04 * EXPIRIES8
    rho = -0.7 + 0.08 * i
    m = -0.02 + 0.015 * i
    sigma = 0.08 + 0.06 * np.sqrt(EXPIRIES8)
    a = 0.035 * EXPIRIES8 - 0.5 * b * sigma * np.sqrt(1.0 - rho * rho)
    return np.stack([a, b, rho, m, sigma], axis=1)


def quote_grid(expiries, n=15, lower=-2.5, upper=1.5):
    """n log-moneyness points from lower to upper 'standard deviations' at 20% vol."""
    return [np.linspace(lower, upper, n) * 0.2 * np.sqrt(t) for t in expiries]


@pytest.fixture(scope="module")
def exact_case():
    params = true_params8()
    for row, expiry in zip(params, EXPIRIES8):
        assert min_g_and_w(row, expiry, extra=wide_points(row))[0] > 0.05
    smiles = svi_smile_data(params, EXPIRIES8, quote_grid(EXPIRIES8))
    return params, smiles, fit_svi(smiles)


# --------------------------------------------------------------------------------------- tests

def test_reparametrisation_round_trip_and_bounds():
    raw = np.array([[0.01, 0.2, -0.5, 0.1, 0.3], [-0.01, 0.9, 0.95, -0.3, 0.05], [0.3, 0.01, 0.0, 0.0, 2.0]])
    x = unconstrained_from_raw(*raw.T)
    back = np.stack([np.asarray(v) for v in raw_from_unconstrained(x)], axis=1)
    np.testing.assert_allclose(back, raw, rtol=1e-12, atol=1e-14)
    extreme = np.array([[-800.0, -800.0, 800.0, 0.0, -30.0], [30.0, 800.0, -800.0, 5.0, 30.0]])
    a, b, rho, _, sigma = (np.asarray(v) for v in raw_from_unconstrained(extreme))
    assert np.all(b > 0) and np.all(np.abs(rho) < 1) and np.all(sigma > 0)
    assert np.all(b * (1 + np.abs(rho)) <= 2.0)
    assert np.all(a + b * sigma * np.sqrt(1 - rho ** 2) > 0)


def test_exact_recovery_of_eight_slices_at_once(exact_case):
    params, _, fit = exact_case
    assert fit.params.a.shape == (8,) and fit.params.a.dtype == np.float64
    assert np.all(fit.converged)
    np.testing.assert_allclose(stacked(fit), params, rtol=0, atol=1e-6)
    assert np.all(fit.rmse_vol_points < 1e-6)
    assert np.all(fit.inside_share == 1.0)
    assert np.all(fit.butterfly_free)


def test_determinism_bitwise(exact_case):
    _, smiles, fit = exact_case
    again = fit_svi(smiles)
    assert np.array_equal(stacked(fit), stacked(again))
    for name in ("rmse_vol_points", "inside_share", "converged", "iterations", "min_butterfly_density", "objective"):
        assert np.array_equal(getattr(fit, name), getattr(again, name), equal_nan=True), name


def test_second_call_does_not_recompile(exact_case):
    from shoals.calibration.svi import _fit_arrays

    _, smiles, _ = exact_case
    before = _fit_arrays._cache_size()
    fit_svi(smiles)
    assert _fit_arrays._cache_size() == before


def test_masked_quotes_contribute_nothing(exact_case):
    _, smiles, fit = exact_case
    # widen the padding with garbage behind the mask: same bucket (16 quotes), same result bitwise
    pad = 1
    def widen(values, fill):
        return np.concatenate([values, np.full((values.shape[0], pad), fill, dtype=values.dtype)], axis=1)
    garbage = SmileData(
        expiries=smiles.expiries, forwards=smiles.forwards, discount_factors=smiles.discount_factors,
        log_moneyness=widen(smiles.log_moneyness, 7.0), strikes=widen(smiles.strikes, 1e6),
        is_call=widen(smiles.is_call, True), mid_vol=widen(smiles.mid_vol, 9.0), bid_vol=widen(smiles.bid_vol, 8.0),
        ask_vol=widen(smiles.ask_vol, 10.0), vega=widen(smiles.vega, 1e9), mask=widen(smiles.mask, False),
        rows=widen(smiles.rows, 0))
    other = fit_svi(garbage)
    assert np.array_equal(stacked(fit), stacked(other))
    assert np.array_equal(fit.inside_share, other.inside_share)


def test_noisy_bid_ask_quotes_fit_inside_the_spread():
    rng = np.random.default_rng(11)
    params = true_params8()
    ks = quote_grid(EXPIRIES8)
    half = rng.uniform(0.004, 0.01, size=(8, 15))        # 0.4 to 1 vol point half spreads
    noise = rng.uniform(-0.4, 0.4, size=(8, 15)) * half  # mids scattered inside the spread around the truth
    smiles = svi_smile_data(params, EXPIRIES8, ks, half_spread=half, noise=noise)
    fit = fit_svi(smiles)
    assert np.all(fit.converged)
    assert np.all(fit.inside_share >= 14 / 15), fit.inside_share
    assert fit.inside_share.mean() >= 0.99
    assert np.all(fit.rmse_vol_points < 0.5)
    assert_admissible(fit)


def test_five_quote_slice_converges():
    params = true_params8()
    ks = quote_grid(EXPIRIES8)
    ks[3] = np.linspace(-2.0, 1.5, 5) * 0.2 * np.sqrt(EXPIRIES8[3])
    rng = np.random.default_rng(5)
    noise = [rng.uniform(-0.002, 0.002, size=len(k)) for k in ks]
    smiles = svi_smile_data(params, EXPIRIES8, ks, noise=noise)
    assert smiles.counts[3] == 5
    fit = fit_svi(smiles)
    assert fit.converged[3] and fit.iterations[3] >= 1
    assert fit.rmse_vol_points[3] < 0.2
    assert fit.inside_share[3] == 1.0
    assert_admissible(fit)


@st.composite
def random_smiles(draw):
    """Up to 8 slices of 5 to 16 quotes: random raw SVI (arbitrage-free or not) or a parabola in vol, with
    noise; quote ranges and expiries random."""
    n_slices = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    slices = []
    for _ in range(n_slices):
        expiry = float(np.exp(rng.uniform(np.log(0.01), np.log(10.0))))
        n = int(rng.integers(5, 17))
        width = rng.uniform(0.5, 4.0) * 0.25 * np.sqrt(expiry)
        ks = np.sort(rng.uniform(-1.5 * width, width, n))
        ks[0], ks[-1] = -1.5 * width, width
        if rng.uniform() < 0.5:
            b = rng.uniform(0.01, 1.5)
            rho = rng.uniform(-0.99, 0.99)
            sigma = rng.uniform(0.005, 1.0) * np.sqrt(expiry)
            a = rng.uniform(0.005, 0.1) * expiry - rng.uniform(0.0, 1.0) * b * sigma * np.sqrt(1 - rho ** 2)
            w = np.asarray(svi_total_variance(log_moneyness=ks, a=a, b=b, rho=rho, m=rng.uniform(-0.2, 0.2) * width,
                                              sigma=sigma))
            vols = np.sqrt(np.maximum(w, 1e-6 * expiry) / expiry)
        else:
            atm = rng.uniform(0.08, 0.8)
            vols = np.maximum(atm + rng.uniform(-0.6, 0.2) * ks / np.sqrt(expiry)
                              + rng.uniform(0.0, 2.0) * ks ** 2 / expiry, 0.03)
        vols = vols * np.exp(rng.normal(0.0, 0.02, n))
        half = rng.uniform(0.001, 0.02, n)
        slices.append(dict(expiry=expiry, forward=100.0, discount_factor=1.0, strikes=100.0 * np.exp(ks),
                           is_call=ks >= 0, mid=vols, bid=np.where(rng.uniform(size=n) < 0.2, np.nan, vols - half),
                           ask=vols + half))
    return smile_data_from_slices(slices)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(smiles=random_smiles(), weighting=st.sampled_from(["vega"]))
def test_output_is_admissible_and_butterfly_free(smiles, weighting):
    fit = fit_svi(smiles, weighting=weighting)
    assert fit.params.a.shape == (smiles.n_slices,)
    assert_admissible(fit)
    assert np.all((fit.inside_share >= 0) & (fit.inside_share <= 1))
    assert np.all(np.isfinite(fit.rmse_vol_points))


def test_input_errors_propose_a_fix(exact_case):
    _, smiles, _ = exact_case
    with pytest.raises(InputError, match="weighting"):
        fit_svi(smiles, weighting="price")
    mask = smiles.mask.copy()
    mask[2, 2:] = False
    thin = SmileData(**{**smiles.__dict__, "mask": mask})
    with pytest.raises(InputError, match="drop the slice"):
        fit_svi(thin)
    mid = smiles.mid_vol.copy()
    mid[1, 4] = np.nan
    with pytest.raises(InputError, match="mid_vol"):
        fit_svi(SmileData(**{**smiles.__dict__, "mid_vol": mid}))


def test_to_frame_has_one_row_per_slice(exact_case):
    _, _, fit = exact_case
    frame = fit.to_frame()
    assert len(frame) == 8
    assert {"expiry", "a", "b", "rho", "m", "sigma", "rmse_vol_points", "inside_share", "converged", "iterations",
            "butterfly_free"} <= set(frame.columns)


# ------------------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def spx_smiles():
    return spx_smile_data()


@pytest.mark.parametrize("weighting", ["vega", "spread"])
def test_spx_20110124_inside_bid_ask(spx_smiles, weighting):
    fit = fit_svi(spx_smiles, weighting=weighting)
    frame = fit.to_frame()[["expiry", "quotes", "rmse_vol_points", "inside_share", "converged", "iterations",
                            "min_butterfly_density"]]
    print(f"\nSPX 2011-01-24, weighting={weighting}\n{frame.to_string(index=False, float_format='%.4f')}")
    later = fit.expiries > TWO_WEEKS
    median = float(np.median(fit.inside_share[later]))
    print(f"median inside share (T > 2 weeks): {median:.4f}; median RMSE {np.median(fit.rmse_vol_points):.3f} vol pts")
    assert spx_smiles.n_slices == 15
    assert median >= 0.90
    assert np.all(fit.rmse_vol_points < 4.0)
    assert fit.converged.mean() >= 0.8
    assert_admissible(fit)


# --------------------------------------------------------------------------------- seed quote set

@pytest.mark.skipif(not SEED_PIPELINE.exists(), reason="the seed baseline script lives in the project's shared/ "
                    "folder (benchmark input, not shipped); benchmarks/bench_svi.py runs the same comparison")
def test_seed_quote_set_eight_expiries_fit_and_timing():
    smiles = seed_smile_data(seed=42)
    assert smiles.n_slices == 8 and np.all(smiles.counts == 15)
    fit = fit_svi(smiles)
    jax.block_until_ready(fit.params.a)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        jax.block_until_ready(fit_svi(smiles).params.a)
        times.append(time.perf_counter() - started)
    warm = statistics.median(times)
    print(f"\nseed quote set: 8 expiries x 15 strikes, warm fit_svi {warm * 1e3:.1f} ms (target <= 200 ms; "
          f"seed ~2 s per expiry)\n{fit.to_frame().to_string(index=False, float_format='%.5f')}")
    assert np.all(fit.converged)
    assert np.all(fit.inside_share == 1.0)
    assert np.all(fit.rmse_vol_points < 0.05)
    assert_admissible(fit)
    assert warm < 1.0  # generous for shared CI machines; the target (0.2 s) is reported by benchmarks/bench_svi.py

"""Forwards from put-call parity vs the SPX data set's independent fit; DAX forwards from its columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shoals.calibration.forwards import (
    METHOD_CARRY, METHOD_IMPLIED_RATE, METHOD_INTERPOLATED, METHOD_JOINT, METHOD_RATE, ExpiryForward,
    fit_forwards, huber_regression)
from shoals.errors import CalibrationError, InputError
from shoals.io.quotes import read_forwards, read_quotes
from shoals.market.curves import ZeroCurve
from shoals.market.quotes import QuoteTable
from shoals.data import path as data_path

SPX = data_path("spx_20110124_clean.csv")
DAX = data_path("dax_20020705_clean.csv")

SPX_RATE = 0.0035  # H.15 2011-01-24: Eurodollar deposits 1M 0.32%, 3M 0.39%


@pytest.fixture(scope="module")
def spx():
    quotes, _ = read_quotes(SPX, rate=SPX_RATE)
    reference = pd.read_csv(SPX).groupby("expiry_years")[["parity_forward", "parity_discount_factor"]].first()
    return quotes, reference


def file_values(reference, expiry):
    row = reference.iloc[int(np.argmin(np.abs(reference.index.to_numpy() - expiry)))]
    return row.parity_forward, row.parity_discount_factor


def test_spx_forwards_match_the_file_within_one_basis_point(spx):
    quotes, reference = spx
    forwards = fit_forwards(quotes, rate=SPX_RATE)
    assert len(forwards) == 15                      # 16 slices; SPX Oct 2011 has no quote at all
    errors = []
    for f in forwards:
        forward, discount = file_values(reference, f.expiry)
        errors.append(f.forward / forward - 1.0)
        if f.expiry < 0.25:                         # DF from the rate, as in the file (H.15 deposits)
            assert f.method == METHOD_RATE
            assert f.discount_factor == pytest.approx(discount, abs=1e-4)
        else:                                       # F and DF fitted: DF is the noisier of the two
            assert f.method == METHOD_JOINT
            assert f.discount_factor == pytest.approx(discount, abs=2e-3)
            assert -0.002 < f.rate < 0.02
        assert f.pairs_used >= 5 and 0.0 < f.rmse < 0.5
    errors = np.abs(errors)
    assert errors.max() < 1e-4 and np.median(errors) < 3e-5


def test_spx_without_rate_uses_the_rate_implied_by_longer_expiries(spx):
    quotes, reference = spx
    forwards = fit_forwards(quotes)
    short = [f for f in forwards if f.expiry < 0.25]
    assert short and all(f.method == METHOD_IMPLIED_RATE for f in short)
    for f in forwards:
        assert f.forward == pytest.approx(file_values(reference, f.expiry)[0], rel=2e-4)


def test_spx_missing_slice_is_interpolated(spx):
    quotes, reference = spx
    forwards = {round(f.expiry, 6): f for f in fit_forwards(quotes, rate=SPX_RATE)}
    # Remove the call side of the Sep 2011 SPX slice: no pair left, F and DF come from its neighbours.
    sep = np.isclose(quotes.expiry, 0.643316, atol=1e-6)
    f = {round(g.expiry, 6): g for g in fit_forwards(quotes.take(~(sep & quotes.is_call)), rate=SPX_RATE)}
    interpolated = f[0.643316]
    assert interpolated.method == METHOD_INTERPOLATED and interpolated.pairs_used == 0
    assert interpolated.forward == pytest.approx(forwards[0.643316].forward, rel=3e-4)
    assert interpolated.discount_factor == pytest.approx(forwards[0.643316].discount_factor, abs=2e-3)


def synthetic_parity(forward=100.0, discount=0.98, strikes=np.arange(80.0, 121.0, 2.5), expiry=0.5):
    """Quotes whose mids satisfy parity exactly: C = P + DF (F - K), P = 5 + 0.1 |K - F|."""
    put = 5.0 + 0.1 * np.abs(strikes - forward)
    call = put + discount * (forward - strikes)
    k = np.concatenate([strikes, strikes])
    mid = np.concatenate([call, put])
    n = k.size
    return QuoteTable(expiry=np.full(n, expiry), strike=k, is_call=np.arange(n) < strikes.size,
                      bid=mid - 0.1, ask=mid + 0.1, mid_iv=np.full(n, np.nan), row=np.arange(1, n + 1))


def test_exact_parity_is_recovered():
    (f,) = fit_forwards(synthetic_parity())
    assert f.method == METHOD_JOINT
    assert f.forward == pytest.approx(100.0, rel=1e-12) and f.discount_factor == pytest.approx(0.98, rel=1e-12)
    (f,) = fit_forwards(synthetic_parity(expiry=0.1), rate=0.05)
    assert f.method == METHOD_RATE and f.discount_factor == pytest.approx(math.exp(-0.005))


def test_stale_pairs_do_not_move_the_forward():
    quotes = synthetic_parity()
    stale = quotes.is_call & np.isin(quotes.strike, [97.5, 102.5])
    bid = np.where(stale, quotes.bid + np.array([3.0]), quotes.bid)
    ask = np.where(stale, quotes.ask + np.array([3.0]), quotes.ask)
    corrupted = QuoteTable(expiry=quotes.expiry, strike=quotes.strike, is_call=quotes.is_call, bid=bid,
                           ask=ask, mid_iv=quotes.mid_iv, row=quotes.row)
    (f,) = fit_forwards(corrupted)
    # Least squares on the same pairs moves F by 3 * 2 / pairs / DF ~ 0.5; Huber weights by < 0.01.
    k = np.unique(quotes.strike)
    inside = np.abs(np.log(k / 100.0)) <= 0.1 * math.sqrt(0.5) + 0.02      # the default band
    y = 0.98 * (100.0 - k) + np.where(np.isin(k, [97.5, 102.5]), 3.0, 0.0)
    slope, intercept = np.polyfit(k[inside], y[inside], 1)
    assert abs(intercept / -slope - 100.0) > 0.3
    assert 5 <= f.pairs_used <= inside.sum()
    assert f.forward == pytest.approx(100.0, abs=0.01)
    assert f.discount_factor == pytest.approx(0.98, abs=2e-3)
    x = np.arange(5.0)
    a, b, xbar, _, _ = huber_regression(x, 2.0 * x + np.array([0, 0, 50.0, 0, 0]), np.ones(5))
    assert b == pytest.approx(2.0, abs=1e-6) and a + b * (0 - xbar) == pytest.approx(0.0, abs=0.05)


def test_no_pairs_at_all_raises():
    quotes = synthetic_parity()
    with pytest.raises(CalibrationError, match="pair"):
        fit_forwards(quotes.take(quotes.is_call))


def test_dax_forwards_from_the_columns():
    quotes, _ = read_quotes(DAX)
    raw = pd.read_csv(DAX).groupby("expiry_years")[["forward", "discount_factor", "rate_cc"]].first()
    given = read_forwards(DAX)
    assert len(given) == 8
    forwards = fit_forwards(quotes, given=given)
    for f, (expiry, row) in zip(forwards, raw.iterrows()):
        assert f.expiry == pytest.approx(expiry, abs=1e-12)
        assert (f.forward, f.discount_factor) == (row.forward, row.discount_factor)
        assert f.method.startswith("file columns")


def test_dax_forwards_from_carry():
    quotes, _ = read_quotes(DAX)
    raw = pd.read_csv(DAX).groupby("expiry_years")[["forward", "discount_factor", "rate_cc"]].first()
    spot = 4468.17
    assert quotes.spot == spot
    # A flat rate: exact at the first expiry, whose zero rate is that rate.
    flat = fit_forwards(quotes, rate=0.0357, dividend=0.0)
    assert all(f.method == METHOD_CARRY for f in flat)
    assert flat[0].forward == pytest.approx(raw.forward.iloc[0], rel=2e-8)
    # The zero curve of the file: every forward and discount factor (the file rounds to 8 digits).
    curve = ZeroCurve(times=raw.index.to_numpy(), zero_rates=raw.rate_cc.to_numpy())
    for f, (_, row) in zip(fit_forwards(quotes, rate=curve), raw.iterrows()):
        assert f.forward == pytest.approx(row.forward, rel=2e-8)
        assert f.discount_factor == pytest.approx(row.discount_factor, rel=2e-8)
    # read_forwards from rate_cc when the forward columns are absent.
    frame = pd.read_csv(DAX).drop(columns=["forward", "discount_factor"])
    for f, (_, row) in zip(read_forwards(frame), raw.iterrows()):
        assert f.forward == pytest.approx(row.forward, rel=2e-8)
    f = ExpiryForward(expiry=2.0, forward=100.0, discount_factor=math.exp(-0.06))
    assert f.rate == pytest.approx(0.03)


def test_vol_only_quotes_without_forward_information_raise():
    quotes, _ = read_quotes(DAX)
    with pytest.raises(InputError) as info:
        fit_forwards(quotes)
    assert info.value.field == "forward" and "rate=" in str(info.value)

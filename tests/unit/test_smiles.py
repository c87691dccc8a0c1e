"""build_smiles: OTM selection, Black vols vs the data sets' vols, slices kept and dropped, padding."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from shoals.calibration.forwards import ExpiryForward, fit_forwards
from shoals.calibration.smiles import (
    FLAG_ITM_USED, FLAG_VOL_CONVEX, REASON_ABOVE, REASON_BELOW, REASON_ITM, REASON_ITM_NO_BID_VOL,
    REASON_THIN_SLICE, CleaningPolicy, black_prices, black_vega, build_smiles, no_arbitrage_bounds)
from shoals.io.quotes import read_forwards, read_quotes
from shoals.kernels.black_scholes import black_scholes_price
from shoals.market.quotes import QuoteTable
from shoals.data import path as data_path

SPX = data_path("spx_20110124_clean.csv")
DAX = data_path("dax_20020705_clean.csv")
SPX_RATE = 0.0035


@pytest.fixture(scope="module")
def spx():
    quotes, report = read_quotes(SPX, rate=SPX_RATE)
    forwards = fit_forwards(quotes, rate=SPX_RATE)
    smiles, smile_report = build_smiles(quotes, forwards)
    return quotes, forwards, smiles, smile_report, pd.read_csv(SPX)


def file_forwards(raw):
    grouped = raw.groupby("expiry_years")[["parity_forward", "parity_discount_factor"]].first()
    return [ExpiryForward(t, row.parity_forward, row.parity_discount_factor, method="file")
            for t, row in grouped.iterrows()]


def valid_mid(quotes, forwards):
    """Independent check of which quotes have a mid strictly inside the no-arbitrage bounds."""
    by_expiry = {f.expiry: f for f in forwards}
    f = np.array([by_expiry[t].forward for t in quotes.expiry])
    d = np.array([by_expiry[t].discount_factor for t in quotes.expiry])
    lower, upper = no_arbitrage_bounds(forwards=f, strikes=quotes.strike, discount_factors=d,
                                       is_call=quotes.is_call)
    mid = 0.5 * (quotes.bid + quotes.ask)
    otm = np.where(quotes.is_call, quotes.strike >= f, quotes.strike < f)
    # An in-the-money quote is usable only when its bid is above intrinsic (bid and ask bracket the vol).
    return (mid > lower) & (mid < upper) & (otm | (quotes.bid > lower)), f


def test_spx_every_slice_with_five_clean_strikes_is_present(spx):
    quotes, forwards, smiles, report, _ = spx
    valid, _ = valid_mid(quotes, forwards)
    expected = {}
    for t in quotes.expiries:
        strikes = np.unique(quotes.strike[(quotes.expiry == t) & valid])
        if strikes.size >= 5:
            expected[t] = strikes.size
    assert smiles.expiries.tolist() == sorted(expected)
    assert smiles.counts.tolist() == [expected[t] for t in sorted(expected)]
    assert smiles.n_slices == 15 and (smiles.counts >= 5).all()
    assert report.total == len(quotes) and report.kept == smiles.mask.sum()
    assert report.kept + sum(map(len, report.dropped.values())) == report.total
    assert REASON_THIN_SLICE not in report.dropped


def test_spx_out_of_the_money_selection(spx):
    quotes, forwards, smiles, report, _ = spx
    itm_used = set(report.flagged.get(FLAG_ITM_USED, []))
    assert len(itm_used) < 0.2 * smiles.mask.sum()
    by_row = {int(r): i for i, r in enumerate(quotes.row)}
    for j in range(smiles.n_slices):
        m = smiles.mask[j]
        otm = np.where(smiles.is_call[j][m], smiles.strikes[j][m] >= smiles.forwards[j],
                       smiles.strikes[j][m] < smiles.forwards[j])
        rows = smiles.rows[j][m]
        assert np.all(otm | np.isin(rows, list(itm_used)))
        assert not np.any(otm & np.isin(rows, list(itm_used)))
        assert np.all(np.diff(smiles.strikes[j][m]) > 0)                       # one quote per strike
        np.testing.assert_allclose(smiles.log_moneyness[j][m], np.log(smiles.strikes[j][m] / smiles.forwards[j]))
        np.testing.assert_array_equal(quotes.is_call[[by_row[r] for r in rows]], smiles.is_call[j][m])
    # Every quote not used is in the money, at a strike with a used OTM quote or with a bid below
    # intrinsic (the mid of a deep in-the-money quote is intrinsic plus half the spread).
    assert set(report.dropped) == {REASON_ITM, REASON_ITM_NO_BID_VOL}
    assert np.all(np.isfinite(smiles.bid_vol[smiles.mask & np.isin(smiles.rows, list(itm_used))]))


def test_spx_vols_match_the_file_with_the_file_forwards(spx):
    quotes, _, _, _, raw = spx
    smiles, report = build_smiles(quotes, file_forwards(raw))
    m = smiles.mask
    rows = smiles.rows[m] - 1
    np.testing.assert_allclose(smiles.mid_vol[m], raw.mid_iv.to_numpy()[rows], atol=1e-8, rtol=0)
    file_bid, file_ask = raw.bid_iv.to_numpy()[rows], raw.ask_iv.to_numpy()[rows]
    np.testing.assert_array_equal(np.isnan(smiles.bid_vol[m]), np.isnan(file_bid))
    np.testing.assert_array_equal(np.isnan(smiles.ask_vol[m]), np.isnan(file_ask))
    ok = ~np.isnan(file_bid)
    np.testing.assert_allclose(smiles.bid_vol[m][ok], file_bid[ok], atol=1e-8, rtol=0)
    np.testing.assert_allclose(smiles.ask_vol[m], file_ask, atol=1e-8, rtol=0)
    assert np.all(smiles.bid_vol[m][ok] <= smiles.mid_vol[m][ok])
    assert np.all(smiles.mid_vol[m] <= smiles.ask_vol[m])
    # A mid below intrinsic by the file's forward is dropped with its reason.
    assert REASON_BELOW in report.dropped


def test_spx_vols_match_the_file_where_the_forwards_agree(spx):
    """Where our F and DF move the price at the file's vol by less than 5e-5 vega, vols agree to 1e-4."""
    _, _, smiles, _, raw = spx
    m = smiles.mask
    rows = smiles.rows[m] - 1
    file_vol = raw.mid_iv.to_numpy()[rows]
    f_ours = np.broadcast_to(smiles.forwards[:, None], m.shape)[m]
    d_ours = np.broadcast_to(smiles.discount_factors[:, None], m.shape)[m]
    t = np.broadcast_to(smiles.expiries[:, None], m.shape)[m]
    k, call = smiles.strikes[m], smiles.is_call[m]
    f_file, d_file = raw.parity_forward.to_numpy()[rows], raw.parity_discount_factor.to_numpy()[rows]
    has = np.isfinite(file_vol)
    safe_vol = np.where(has, file_vol, 0.2)
    shift = (black_prices(forwards=f_ours, strikes=k, expiries=t, discount_factors=d_ours, volatilities=safe_vol,
                          is_call=call)
             - black_prices(forwards=f_file, strikes=k, expiries=t, discount_factors=d_file, volatilities=safe_vol,
                            is_call=call))
    vega = black_vega(forwards=f_file, strikes=k, expiries=t, discount_factors=d_file, volatilities=safe_vol)
    agree = has & (np.abs(shift) < 5e-5 * vega)
    assert agree.sum() > 0.5 * m.sum()
    assert np.max(np.abs(smiles.mid_vol[m][agree] - file_vol[agree])) < 1e-4
    # And overall the smiles are close: median difference well under a tenth of a vol point.
    assert np.nanmedian(np.abs(smiles.mid_vol[m] - file_vol)) < 1e-4


def test_spx_arrays_padding_and_vega(spx):
    _, _, smiles, _, _ = spx
    shape = smiles.mask.shape
    assert shape == (15, smiles.counts.max())
    for name in ("log_moneyness", "strikes", "mid_vol", "bid_vol", "ask_vol", "vega"):
        array = getattr(smiles, name)
        assert array.shape == shape and array.dtype == np.float64
        assert np.all(np.isfinite(array[~smiles.mask]))
    assert np.all(smiles.vega[~smiles.mask] == 0.0) and np.all(smiles.rows[~smiles.mask] == 0)
    assert np.all(np.isfinite(smiles.mid_vol[smiles.mask])) and np.all(smiles.mid_vol[smiles.mask] > 0)
    assert np.all(np.diff(smiles.expiries) > 0)
    # Vega vs a central difference of the Black price.
    j = 5
    m = smiles.mask[j]
    args = dict(forwards=smiles.forwards[j], strikes=smiles.strikes[j][m], expiries=smiles.expiries[j],
                discount_factors=smiles.discount_factors[j], is_call=smiles.is_call[j][m])
    h = 1e-5
    bump = (black_prices(volatilities=smiles.mid_vol[j][m] + h, **args)
            - black_prices(volatilities=smiles.mid_vol[j][m] - h, **args)) / (2 * h)
    np.testing.assert_allclose(smiles.vega[j][m], bump, rtol=1e-6, atol=1e-9)


def test_black_prices_match_the_closed_form():
    from scipy.special import ndtr

    k = np.array([80.0, 100.0, 120.0])
    vol = np.array([0.3, 0.2, 0.15])
    call = np.array([False, True, True])
    f, t, d = 100.0, 0.7, 0.97
    d1 = (np.log(f / k) + 0.5 * vol ** 2 * t) / (vol * np.sqrt(t))
    d2 = d1 - vol * np.sqrt(t)
    w = np.where(call, 1.0, -1.0)
    expected = d * w * (f * ndtr(w * d1) - k * ndtr(w * d2))
    got = black_prices(forwards=f, strikes=k, expiries=t, discount_factors=d, volatilities=vol, is_call=call)
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    rate = -np.log(d) / t
    kernel = black_scholes_price(spots=f, strikes=k, expiries=t, volatilities=vol, rates=rate,
                                 dividend_yields=rate, is_call=call)
    np.testing.assert_allclose(got, np.asarray(kernel), rtol=1e-12)


def synthetic_quotes(strikes, *, expiry=0.5, forward=100.0, discount=0.99, vol=0.2):
    k = np.repeat(np.asarray(strikes, float), 2)
    call = np.tile([True, False], len(strikes))
    price = black_prices(forwards=forward, strikes=k, expiries=expiry, discount_factors=discount,
                         volatilities=vol, is_call=call)
    n = k.size
    return QuoteTable(expiry=np.full(n, expiry), strike=k, is_call=call, bid=price * 0.99, ask=price * 1.01,
                      mid_iv=np.full(n, np.nan), row=np.arange(1, n + 1))


def test_fallback_to_the_in_the_money_side_and_thin_slices():
    quotes = synthetic_quotes([90, 95, 100, 105, 110])
    forwards = [ExpiryForward(0.5, 100.0, 0.99)]
    # Break the OTM put at 90 (mid 95 above DF K): the ITM call at 90 is used instead.
    bid = quotes.bid.copy()
    ask = quotes.ask.copy()
    bid[1] = ask[1] = 95.0
    broken = QuoteTable(expiry=quotes.expiry, strike=quotes.strike, is_call=quotes.is_call, bid=bid, ask=ask,
                        mid_iv=quotes.mid_iv, row=quotes.row)
    smiles, report = build_smiles(broken, forwards)
    assert smiles.counts.tolist() == [5]
    assert report.flagged[FLAG_ITM_USED] == [1]
    assert report.dropped[REASON_ABOVE] == [2]
    np.testing.assert_allclose(smiles.mid_vol[0], 0.2, atol=2e-4)
    assert smiles.is_call[0].tolist() == [True, False, True, True, True]   # 100 is at the forward: call
    # Without the fallback the slice has 4 quotes: dropped as thin.
    smiles, report = build_smiles(broken, forwards, policy=CleaningPolicy(otm_fallback=False))
    assert smiles.n_slices == 0 and smiles.mask.shape == (0, 0)
    assert report.dropped[REASON_THIN_SLICE] == [4, 5, 7, 9]
    smiles, _ = build_smiles(broken, forwards, policy=CleaningPolicy(otm_fallback=False, min_quotes=4))
    assert smiles.counts.tolist() == [4]


def test_zero_bid_gives_a_nan_bid_vol():
    quotes = synthetic_quotes([90, 95, 100, 105, 110])
    bid = quotes.bid.copy()
    bid[-2] = 0.0                                      # the 110 call
    table = QuoteTable(expiry=quotes.expiry, strike=quotes.strike, is_call=quotes.is_call, bid=bid,
                       ask=quotes.ask, mid_iv=quotes.mid_iv, row=quotes.row)
    smiles, _ = build_smiles(table, [ExpiryForward(0.5, 100.0, 0.99)])
    assert np.isnan(smiles.bid_vol[0, -1]) and np.isfinite(smiles.bid_vol[0, :-1]).all()


def test_dax_smiles_and_butterflies():
    quotes, report = read_quotes(DAX)
    flagged = np.array(report.flagged[FLAG_VOL_CONVEX]) - 1
    raw = pd.read_csv(DAX)
    near = raw.strike.to_numpy()[flagged]
    assert np.sum((near >= 4400) & (near <= 4600)) >= 4
    assert {int(d) for d in raw.expiry_days.to_numpy()[flagged[(near >= 4400) & (near <= 4600)]]} == {
        165, 256, 524, 703}
    smiles, smile_report = build_smiles(quotes, fit_forwards(quotes, given=read_forwards(DAX)))
    assert smiles.mask.shape == (8, 13) and smiles.mask.all()
    assert smile_report.kept == 104 and not smile_report.dropped and not smile_report.flagged
    np.testing.assert_array_equal(smiles.mid_vol.ravel(), raw.mid_iv.to_numpy()[smiles.rows.ravel() - 1])
    assert np.isnan(smiles.bid_vol).all() and np.isnan(smiles.ask_vol).all()
    np.testing.assert_array_equal(smiles.is_call, smiles.strikes >= smiles.forwards[:, None])

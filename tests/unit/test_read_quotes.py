"""read_quotes: validation errors name row and field; bad markets are dropped and counted by reason."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shoals.calibration.smiles import (
    FLAG_CONVEX, FLAG_MONOTONE, FLAG_NOT_CHECKED, FLAG_VOL_CONVEX, REASON_ABOVE, REASON_BELOW,
    REASON_CROSSED, REASON_DUPLICATE, REASON_EXPIRED, REASON_LOCKED, REASON_NO_ASK, REASON_NO_MARKET,
    REASON_NO_VOL, REASON_WIDE, REASON_ZERO_BID, black_prices, no_arbitrage_bounds, shape_violations)
from shoals.errors import InputError
from shoals.io.quotes import CleaningPolicy, read_quotes
from shoals.data import path as data_path

SPX = data_path("spx_20110124_clean.csv")
DAX = data_path("dax_20020705_clean.csv")

HEADER = "expiry_years,strike,option_type,bid,ask\n"


def write(tmp_path, text, name="q.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def synthetic_chain(*, forward=100.0, discount=0.99, expiry=0.5, vol=0.2, half_spread=0.05,
                    strikes=tuple(range(80, 125, 5))):
    """A clean two-sided chain priced by Black-76 (calls and puts at every strike)."""
    k = np.repeat(np.asarray(strikes, float), 2)
    call = np.tile([True, False], len(strikes))
    price = black_prices(forwards=forward, strikes=k, expiries=expiry, discount_factors=discount,
                         volatilities=vol, is_call=call)
    price = np.maximum(np.round(price, 2), 0.10)
    return pd.DataFrame({"expiry_years": expiry, "strike": k, "option_type": np.where(call, "C", "P"),
                         "bid": price - half_spread, "ask": price + half_spread})


def error_of(tmp_path, text, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        read_quotes(write(tmp_path, text), **kwargs)
    return info.value


# ---------------------------------------------------------------- validation errors name row and field

def test_missing_required_column_names_the_field(tmp_path):
    error = error_of(tmp_path, "expiry_years,option_type,bid,ask\n0.5,C,1,2\n")
    assert error.field == "strike" and error.row is None and "missing" in str(error)


def test_missing_prices_and_vols_names_the_field(tmp_path):
    error = error_of(tmp_path, "expiry_years,strike,option_type,bid\n0.5,100,C,1\n")
    assert error.field == "ask"


def test_missing_expiry_column(tmp_path):
    error = error_of(tmp_path, "strike,option_type,bid,ask\n100,C,1,2\n")
    assert error.field == "expiry_years"


def test_non_numeric_strike_names_row_and_field(tmp_path):
    error = error_of(tmp_path, HEADER + "0.5,100,C,1,2\n0.5,abc,C,1,2\n")
    assert (error.row, error.field, error.value) == (2, "strike", "abc")
    assert "row 2" in str(error) and "'strike'" in str(error)


def test_empty_and_non_positive_strike(tmp_path):
    assert error_of(tmp_path, HEADER + "0.5,,C,1,2\n").row == 1
    error = error_of(tmp_path, HEADER + "0.5,100,C,1,2\n0.5,100,P,1,2\n0.5,-5,C,1,2\n")
    assert (error.row, error.field) == (3, "strike")


def test_unknown_option_type(tmp_path):
    error = error_of(tmp_path, HEADER + "0.5,100,call,1,2\n0.5,100,PUT,1,2\n0.5,100,X,1,2\n")
    assert (error.row, error.field, error.value) == (3, "option_type", "X")


def test_negative_price(tmp_path):
    error = error_of(tmp_path, HEADER + "0.5,100,C,1,2\n0.5,100,P,1,-2\n")
    assert (error.row, error.field) == (2, "ask")


def test_non_numeric_price(tmp_path):
    error = error_of(tmp_path, HEADER + "0.5,100,C,1.x,2\n")
    assert (error.row, error.field) == (1, "bid")


def test_empty_expiry(tmp_path):
    error = error_of(tmp_path, HEADER + "0.5,100,C,1,2\n,100,P,1,2\n")
    assert (error.row, error.field) == (2, "expiry_years")


def test_expiry_date_needs_a_valuation_date(tmp_path):
    error = error_of(tmp_path, "expiry_date,strike,option_type,bid,ask\n2011-03-18,100,C,1,2\n")
    assert (error.row, error.field) == (1, "expiry_date")


def test_bad_expiry_date(tmp_path):
    error = error_of(tmp_path, "quote_date,expiry_date,strike,option_type,bid,ask\n"
                               "2011-01-24,2011-03-18,100,C,1,2\n2011-01-24,March,100,P,1,2\n")
    assert (error.row, error.field) == (2, "expiry_date")


def test_several_quote_dates(tmp_path):
    error = error_of(tmp_path, "quote_date,expiry_years,strike,option_type,bid,ask\n"
                               "2011-01-24,0.5,100,C,1,2\n2011-01-25,0.5,100,P,1,2\n")
    assert (error.row, error.field) == (2, "quote_date")


def test_vols_in_percent_are_refused(tmp_path):
    error = error_of(tmp_path, "expiry_years,strike,option_type,mid_iv\n0.5,100,C,0.2\n0.5,110,C,25\n")
    assert (error.row, error.field) == (2, "mid_iv") and "decimals" in str(error)


def test_unknown_file_type(tmp_path):
    with pytest.raises(InputError, match="unknown file type"):
        read_quotes(write(tmp_path, HEADER, name="q.txt"))


# ---------------------------------------------------------------- dates, spot, formats

def test_expiry_dates_with_quote_date_and_valuation_date(tmp_path):
    text = ("quote_date,expiry_date,strike,option_type,bid,ask,spot\n"
            "2011-01-24,2011-03-18,100,C,1,2,99\n2011-01-24,2011-03-18,100,P,1,2,101\n")
    quotes, _ = read_quotes(write(tmp_path, text))
    assert quotes.expiry == pytest.approx([53 / 365.0] * 2)
    assert str(quotes.quote_date) == "2011-01-24" and quotes.spot == 100.0
    quotes, _ = read_quotes(write(tmp_path, text), valuation_date="2011-01-18", spot=50.0)
    assert quotes.expiry == pytest.approx([59 / 365.0] * 2) and quotes.spot == 50.0


def test_expiry_years_wins_over_dates(tmp_path):
    text = ("quote_date,expiry_date,expiry_years,strike,option_type,bid,ask\n"
            "2011-01-24,2011-03-18,0.1447,100,C,1,2\n2011-01-24,2011-03-18,,100,P,1,2\n")
    quotes, _ = read_quotes(write(tmp_path, text), policy=CleaningPolicy(check_shape=False))
    assert sorted(quotes.expiry) == pytest.approx([0.1447, 53 / 365.0])


def test_parquet_and_dataframe_read_like_csv(tmp_path):
    frame = synthetic_chain()
    frame.to_csv(tmp_path / "q.csv", index=False)
    frame.to_parquet(tmp_path / "q.parquet")
    tables = [read_quotes(source)[0] for source in (tmp_path / "q.csv", tmp_path / "q.parquet", frame)]
    for table in tables[1:]:
        for name in ("expiry", "strike", "is_call", "bid", "ask", "row"):
            np.testing.assert_array_equal(getattr(table, name), getattr(tables[0], name))


# ---------------------------------------------------------------- cleaning: drop and count

def test_bad_markets_are_dropped_and_counted_by_reason(tmp_path):
    frame = synthetic_chain()
    n = len(frame)
    extra = pd.DataFrame({
        "expiry_years": [0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5],
        "strike": [130, 130, 135, 135, 140, 100, 80, 125],
        "option_type": ["C", "P", "C", "P", "C", "C", "C", "C"],
        "bid": [0.0, 0.0, 0.3, 0.2, "", 1.0, 1.0, 0.3],
        "ask": [0.0, 0.5, 0.0, 0.1, "", 2.0, 2.0, 0.3],
    })
    quotes, report = read_quotes(pd.concat([frame, extra], ignore_index=True))
    rows = {reason: rows for reason, rows in report.dropped.items()}
    assert rows[REASON_ZERO_BID] == [n + 2]
    assert rows[REASON_NO_ASK] == [n + 3]
    assert rows[REASON_CROSSED] == [n + 4]
    assert rows[REASON_NO_MARKET] == [n + 1, n + 5]      # 0/0 and empty/empty
    assert rows[REASON_EXPIRED] == [n + 6]
    assert rows[REASON_DUPLICATE] == [n + 7]             # 80 C is already in the chain
    assert REASON_LOCKED not in rows                     # locked markets are kept by default
    assert n + 8 in quotes.row
    assert report.total == n + 8 and report.kept == len(quotes) == n + 1
    assert report.kept + sum(len(r) for r in report.dropped.values()) == report.total
    assert "kept" in report.summary()


def test_policy_switches(tmp_path):
    frame = synthetic_chain()
    n = len(frame)
    extra = pd.DataFrame({"expiry_years": [0.5, 0.5, 0.5], "strike": [130, 135, 140],
                          "option_type": ["P", "C", "C"], "bid": [0.0, 0.2, 0.05], "ask": [0.5, 0.2, 1.0]})
    chain = pd.concat([frame, extra], ignore_index=True)
    _, report = read_quotes(chain, policy=CleaningPolicy(drop_zero_bid=False, drop_locked=True,
                                                         max_relative_spread=1.0))
    assert REASON_ZERO_BID not in report.dropped
    assert report.dropped[REASON_LOCKED] == [n + 2]
    assert n + 3 in report.dropped[REASON_WIDE] and n + 1 in report.dropped[REASON_WIDE]
    with pytest.raises(InputError) as info:
        CleaningPolicy(max_relative_spread=0.0)
    assert info.value.field == "CleaningPolicy.max_relative_spread"


def test_mids_outside_no_arbitrage_bounds_are_dropped(tmp_path):
    frame = synthetic_chain(forward=100.0, discount=0.99)
    n = len(frame)
    # Deep in-the-money call with a mid below intrinsic 0.99 * 30, a put with a mid above DF K.
    extra = pd.DataFrame({"expiry_years": [0.5, 0.5], "strike": [70.0, 60.0], "option_type": ["C", "P"],
                          "bid": [28.0, 59.5], "ask": [29.0, 60.5]})
    quotes, report = read_quotes(pd.concat([frame, extra], ignore_index=True))
    assert report.dropped[REASON_BELOW] == [n + 1]
    assert report.dropped[REASON_ABOVE] == [n + 2]
    assert len(quotes) == n


def test_bounds_helper():
    lower, upper = no_arbitrage_bounds(forwards=100.0, strikes=[90.0, 110.0], discount_factors=0.9,
                                       is_call=[True, False])
    np.testing.assert_allclose(lower, [9.0, 9.0])
    np.testing.assert_allclose(upper, [90.0, 99.0])


def test_convexity_and_monotonicity_violations_are_flagged_not_dropped(tmp_path):
    frame = synthetic_chain()
    body = frame.index[(frame.strike == 100) & (frame.option_type == "C")][0]
    frame.loc[body, ["bid", "ask"]] += 3.0          # call at 100 above the 95/105 chord
    put = frame.index[(frame.strike == 90) & (frame.option_type == "P")][0]
    frame.loc[put, ["bid", "ask"]] -= 1.2           # put at 90 (0.55) below the put at 85 (0.80)
    quotes, report = read_quotes(frame)
    assert len(quotes) == len(frame) and not report.dropped
    assert report.flagged[FLAG_CONVEX[True]] == [body + 1]
    assert report.flagged[FLAG_MONOTONE[False]] == [put - 1, put + 1]       # the 85/90 pair
    # 85 lies above the 80/90 chord, 95 above the 90/100 chord.
    assert report.flagged[FLAG_CONVEX[False]] == [put - 1, put + 3]
    # The call at 100 (8.58) is above the call at 95 (8.27), and 5 above the call at 105: slope < -DF.
    assert report.flagged[FLAG_MONOTONE[True]] == [body - 1, body + 1, body + 3]


def test_shape_violations_helper():
    k = np.array([110.0, 90.0, 100.0, 120.0])
    calls = np.array([2.0, 12.0, 8.0, 0.5])          # 100 lies above the 90/110 chord (7.0)
    monotone, convex = shape_violations(k, calls, discount_factor=1.0, is_call=True)
    assert not monotone.any() and convex.tolist() == [False, False, True, False]
    monotone, _ = shape_violations([90.0, 100.0], [5.0, 6.0], discount_factor=1.0, is_call=True)
    assert monotone.all()
    monotone, _ = shape_violations([90.0, 100.0], [25.0, 14.0], discount_factor=1.0, is_call=True)
    assert monotone.all()                            # slope -1.1 < -DF
    _, convex = shape_violations([90.0, 100.0, 110.0], [10.0, 5.0, 0.0], discount_factor=1.0,
                                 is_call=True)
    assert not convex.any()                          # linear: no violation from rounding


def test_vol_only_file_without_forward_is_flagged_not_checked(tmp_path):
    text = "expiry_years,strike,option_type,mid_iv\n0.5,90,P,0.25\n0.5,100,C,0.2\n0.5,110,C,\n"
    quotes, report = read_quotes(write(tmp_path, text))
    assert report.dropped == {REASON_NO_VOL: [3]}
    assert report.flagged[FLAG_NOT_CHECKED] == [1, 2]
    assert np.isnan(quotes.bid).all() and quotes.mid_iv.tolist() == [0.25, 0.2]


def test_vol_only_file_with_rate_and_spot_is_checked(tmp_path):
    text = ("expiry_years,strike,option_type,mid_iv\n"
            "0.5,90,P,0.25\n0.5,100,C,0.2\n0.5,105,C,0.30\n0.5,110,C,0.19\n")
    _, report = read_quotes(write(tmp_path, text), spot=100.0, rate=0.02)
    assert FLAG_NOT_CHECKED not in report.flagged
    assert report.flagged[FLAG_VOL_CONVEX] == [3]


# ---------------------------------------------------------------- the real files

def test_spx_file_drops_and_flags():
    quotes, report = read_quotes(SPX, rate=0.0035)
    raw = pd.read_csv(SPX)
    assert report.total == 1920
    assert len(report.dropped[REASON_NO_MARKET]) == 10                          # the 0/0 quotes
    assert len(report.dropped[REASON_ZERO_BID]) == int((raw.bid == 0).sum()) - 10  # 158 zero bids
    assert REASON_CROSSED not in report.dropped and REASON_NO_ASK not in report.dropped
    below = np.array(report.dropped[REASON_BELOW]) - 1
    assert 0 < below.size < 150
    # Only in-the-money quotes can be below intrinsic, by the file's forward too.
    itm = np.where(raw.option_type[below] == "C", raw.strike[below] < raw.parity_forward[below],
                   raw.strike[below] > raw.parity_forward[below])
    assert itm.all()
    assert report.kept + sum(map(len, report.dropped.values())) == 1920 == report.kept + (1920 - len(quotes))
    # SPX Oct 2011 (one strike, 0/0 on both sides) is gone entirely.
    assert not np.any(np.isclose(quotes.expiry, 0.739207, atol=1e-5))
    assert quotes.spot == pytest.approx(1290.59)
    assert all(report.flagged[FLAG_CONVEX[call]] for call in (True, False))


def test_dax_file_flags_butterflies():
    quotes, report = read_quotes(DAX)
    raw = pd.read_csv(DAX)
    assert len(quotes) == 104 and not report.dropped
    rows = np.array(report.flagged[FLAG_VOL_CONVEX]) - 1
    at_4500 = {int(d) for d, k in zip(raw.expiry_days[rows], raw.strike[rows]) if k == 4500}
    assert at_4500 == {165, 256, 524, 703}
    assert set(raw.strike[rows]) <= {3800, 4200, 4400, 4500, 4600}
    assert math.isnan(quotes.bid[0]) and quotes.mid_iv[0] == pytest.approx(0.6625)

"""The synthetic market and exotic book of the original pipeline (../shared/baselines/seed_pipeline_native.py),
generated with the same random draws, in Shoals' file formats (quotes and BOOK_SCHEMA.md books).

Market (``seed_quotes``): spot 100, rate 4 %, no dividend, expiries 0.25-5 y, 15 strikes per expiry at
log-moneyness -0.40 ... 0.40 of the forward; vol smile atm + skew k + kurt k^2 with atm = 0.20 +
0.05 e^{-T/0.5} + U(-0.01, 0.01), skew = -0.05 e^{-T}, kurt = 0.02 e^{-T/2}; bid/ask vols mid -+ U(0.002,
0.008) (bid floored at 2 %); quoted as Black prices of a call and a put at every strike (the seed kept the
out-of-the-money side only; both sides let put-call parity identify the forwards, as on a real chain).

Book (``seed_book``): the seed's trade generator, draw for draw, mapped to real contracts:

* ``barrier_do`` -> down-and-out barrier, barrier 65-90 % of spot, continuous, no rebate;
* ``barrier_ui`` -> up-and-in barrier at spot x (2 - u), u ~ U(0.65, 0.90) (110-135 % of spot: the seed
  draws 65-90 % for both, which for an up-and-in is a contract already knocked in);
* ``lookback`` -> fixed-strike lookback (the seed's "fixed strike" lookback), continuous;
* ``asian`` -> arithmetic fixed-strike Asian with monthly fixings (round(12 T), at least 1);
* ``cliquet`` -> monthly-reset cliquet (round(12 T) periods), moneyness 1, local floor 0, no caps, paid at
  maturity (the seed's "monthly resetting option; payoff = sum of monthly returns").

The seed priced lookbacks, Asians and cliquets by proxy payoffs; Shoals prices the contracts themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED_EXPIRIES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
SKEWED_EXPIRIES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5)
SEED_INSTRUMENTS = ("barrier_do", "barrier_ui", "lookback", "asian", "cliquet")


def seed_quotes(*, spot: float = 100.0, rate: float = 0.04, expiries=SEED_EXPIRIES, n_strikes: int = 15,
                seed: int = 0) -> pd.DataFrame:
    """The seed's synthetic option quotes as a quote table (``expiry_years, strike, option_type, bid, ask``
    in prices, plus ``mid_iv``), ready for :func:`shoals.read_quotes` / ``shoals calibrate``."""
    from shoals.kernels.black_scholes import black_scholes_price

    rng = np.random.default_rng(seed)
    records = []
    for expiry in expiries:
        forward = spot * np.exp(rate * expiry)
        atm = 0.20 + 0.05 * np.exp(-expiry / 0.5) + rng.uniform(-0.01, 0.01)
        skew = -0.05 * np.exp(-expiry / 1.0)
        kurt = 0.02 * np.exp(-expiry / 2.0)
        for k in np.linspace(-0.40, 0.40, n_strikes):
            mid = max(atm + skew * k + kurt * k ** 2, 0.05)
            half = rng.uniform(0.002, 0.008)
            for option_type in ("call", "put"):
                records.append((expiry, forward * np.exp(k), option_type, max(mid - half, 0.02), mid + half, mid))
    table = pd.DataFrame.from_records(records, columns=["expiry_years", "strike", "option_type", "bid_vol",
                                                       "ask_vol", "mid_iv"])
    is_call = (table["option_type"] == "call").to_numpy()
    for side in ("bid", "ask"):
        table[side] = np.asarray(black_scholes_price(
            spots=spot, strikes=table["strike"].to_numpy(), expiries=table["expiry_years"].to_numpy(),
            volatilities=table[f"{side}_vol"].to_numpy(), rates=rate, is_call=is_call))
    return table[["expiry_years", "strike", "option_type", "bid", "ask", "mid_iv"]]


def seed_book(n_trades: int = 150, *, spot: float = 100.0, expiries=SEED_EXPIRIES, seed: int = 42,
              market_columns: dict | None = None) -> pd.DataFrame:
    """The seed's exotic book (module docstring) as a BOOK_SCHEMA table, one row per trade.

    ``market_columns`` (e.g. ``{"spot": 100, "rate": 0.04, "vol": 0.2}``) adds per-row flat-market
    columns; without it the book is meant for a market file (``shoals price --market``).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_trades):
        kind = str(rng.choice(list(SEED_INSTRUMENTS)))
        strike = float(spot * rng.uniform(0.85, 1.15))
        level = float(rng.uniform(0.65, 0.90))
        maturity = float(rng.choice(list(expiries)))
        option_type = str(rng.choice(["call", "put"]))
        notional = float(rng.choice([1e5, 5e5, 1e6]))
        quantity = int(rng.choice([-1, 1]))
        row = {"id": f"EX_{i:04d}", "option_type": option_type, "maturity": maturity, "quantity": quantity,
               "notional": notional}
        months = max(1, int(round(12 * maturity)))
        if kind == "barrier_do":
            row.update(instrument="barrier", strike=strike, barrier=spot * level, barrier_type="down-and-out")
        elif kind == "barrier_ui":
            row.update(instrument="barrier", strike=strike, barrier=spot * (2.0 - level), barrier_type="up-and-in")
        elif kind == "lookback":
            row.update(instrument="lookback", strike=strike, strike_type="fixed")
        elif kind == "asian":
            row.update(instrument="asian", strike=strike, average="arithmetic", fixings=months)
        else:
            row.update(instrument="cliquet", resets=months)
        rows.append(row)
    columns = ["id", "instrument", "option_type", "strike", "maturity", "quantity", "notional", "barrier",
               "barrier_type", "strike_type", "average", "fixings", "resets"]
    book = pd.DataFrame.from_records(rows).reindex(columns=columns)
    for key, value in (market_columns or {}).items():
        book[key] = value
    return book


def skewed_svi_market(spot: float = 100.0, rate: float = 0.03, dividend: float = 0.01):
    """A steep-skew analytic market (the test and benchmark market of local vol): 8 raw SVI slices
    (T = 0.1 ... 2.5) with a = 0.02 T, b = 0.1 sqrt(T), rho = -0.5, m = 0, sigma = 0.2 sqrt(T): ATM vol 20 % at
    every expiry, skew -0.125 / sqrt(T) per unit log-moneyness, calendar- and butterfly-free; flat rate and
    dividend yield.  Returns a :class:`~shoals.market.snapshot.MarketSnapshot`."""
    import jax.numpy as jnp

    from shoals.market.curves import ZeroCurve
    from shoals.market.snapshot import MarketSnapshot
    from shoals.market.surface import VolSurface

    t = np.asarray(SKEWED_EXPIRIES)
    surface = VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(t))
    return MarketSnapshot(spot=jnp.asarray(spot), rate=ZeroCurve.flat(rate), dividend=ZeroCurve.flat(dividend),
                          surface=surface)

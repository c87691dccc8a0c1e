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
    return quote_table(records, "mid_iv", spot=spot, rate=rate)


def quote_table(records, vol_column: str, *, spot: float, rate: float, dividend: float = 0.0) -> pd.DataFrame:
    """Quote rows ``(expiry_years, strike, option_type, bid_vol, ask_vol, <vol_column>)`` as a quote file: bid and
    ask as Black-Scholes prices of their vols (spot, flat rate and dividend yield), columns
    ``expiry_years, strike, option_type, bid, ask, <vol_column>``."""
    from shoals.kernels.black_scholes import black_scholes_price

    table = pd.DataFrame.from_records(records, columns=["expiry_years", "strike", "option_type", "bid_vol",
                                                       "ask_vol", vol_column])
    is_call = (table["option_type"] == "call").to_numpy()
    for side in ("bid", "ask"):
        table[side] = np.asarray(black_scholes_price(
            spots=spot, strikes=table["strike"].to_numpy(), expiries=table["expiry_years"].to_numpy(),
            volatilities=table[f"{side}_vol"].to_numpy(), rates=rate, dividend_yields=dividend, is_call=is_call))
    return table[["expiry_years", "strike", "option_type", "bid", "ask", vol_column]]


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


HESTON_MARKET = {"v0": 0.04, "kappa": 1.5, "theta": 0.06, "xi": 0.8, "rho": -0.7}
TIGHT_EXPIRIES = (0.04, 0.1, 0.25, 0.5, 1.0, 2.0)


def heston_characteristic(u, expiry, *, v0, kappa, theta, xi, rho):
    """E[exp(i u X_T)] of X_T = ln(S_T / F_T) under Heston, in the "little trap" form (no branch cuts).

    .. math:: \\phi(u) = \\exp(C \\theta + D v_0),\\quad \\alpha = -\\tfrac{u^2}{2} - \\tfrac{iu}{2},\\
              \\beta = \\kappa - \\rho \\xi i u,\\ d = \\sqrt{\\beta^2 - 2\\alpha\\xi^2},\\
              r_\\pm = \\frac{\\beta \\pm d}{\\xi^2},\\ g = \\frac{r_-}{r_+},
    .. math:: D = r_- \\frac{1 - e^{-dT}}{1 - g e^{-dT}},\\quad
              C = \\kappa \\Big[r_- T - \\frac{2}{\\xi^2} \\ln \\frac{1 - g e^{-dT}}{1 - g}\\Big]

    References: Gatheral, "The Volatility Surface" (2006) ch. 2; Albrecher, Mayer, Schoutens & Tistaert,
    "The little Heston trap", Wilmott (2007).
    """
    u = np.asarray(u, dtype=np.complex128)
    alpha = -0.5 * u * u - 0.5j * u
    beta = kappa - rho * xi * 1j * u
    d = np.sqrt(beta * beta - 2.0 * alpha * xi * xi)
    r_minus = (beta - d) / (xi * xi)
    g = r_minus / ((beta + d) / (xi * xi))
    decay = np.exp(-d * expiry)
    big_d = r_minus * (1.0 - decay) / (1.0 - g * decay)
    big_c = kappa * (r_minus * expiry - 2.0 / (xi * xi) * np.log((1.0 - g * decay) / (1.0 - g)))
    return np.exp(big_c * theta + big_d * v0)


def heston_call_prices(log_moneyness, expiry, **heston):
    """Undiscounted call prices per unit forward, E[(S_T/F_T - e^k)^+], under Heston by Lewis' formula

    .. math:: c(k) = 1 - \\frac{e^{k/2}}{\\pi} \\int_0^\\infty
              \\mathrm{Re}\\big[e^{-iuk} \\phi(u - i/2)\\big] \\frac{du}{u^2 + 1/4}

    integrated adaptively (scipy.integrate.quad_vec, absolute tolerance 1e-14), vectorised over k.
    ``heston``: v0, kappa, theta, xi, rho (:data:`HESTON_MARKET` by default).

    References: Lewis, "Option Valuation under Stochastic Volatility" (2000) eq. (2.10); Gatheral (2006)
    ch. 2.  Validation: tests/consistency/test_spline_surface.py (against QuantLib's AnalyticHestonEngine).
    """
    from scipy.integrate import quad_vec

    params = {**HESTON_MARKET, **heston}
    k = np.asarray(log_moneyness, dtype=np.float64)

    def integrand(u):
        phi = heston_characteristic(u - 0.5j, expiry, **params)
        return np.real(np.exp(-1j * u * k) * phi) / (u * u + 0.25)

    integral, _ = quad_vec(integrand, 0.0, np.inf, epsabs=1e-14, epsrel=1e-12, limit=2000)
    return 1.0 - np.exp(0.5 * k) / np.pi * integral


def heston_implied_vols(log_moneyness, expiry, **heston):
    """Black implied vols of :func:`heston_call_prices` (out-of-the-money side: calls for k >= 0, puts
    below, by put-call parity p = c - 1 + e^k)."""
    from shoals.kernels.implied_vol import implied_volatility

    k = np.asarray(log_moneyness, dtype=np.float64)
    calls = heston_call_prices(k, expiry, **heston)
    is_call = k >= 0.0
    prices = np.where(is_call, calls, calls - 1.0 + np.exp(k))
    vols, _ = implied_volatility(prices=prices, forwards=1.0, strikes=np.exp(k), expiries=expiry, is_call=is_call)
    return np.asarray(vols)


def tight_heston_quotes(*, spot: float = 100.0, rate: float = 0.03, dividend: float = 0.01,
                        expiries=TIGHT_EXPIRIES, n_strikes: int = 41, wing_delta: float = 0.05,
                        half_spread=(0.0005, 0.001), mid_noise: float = 0.5, seed: int = 0,
                        **heston) -> pd.DataFrame:
    """A tight synthetic option chain from a Heston smile (not SVI-shaped): per expiry ``n_strikes``
    strikes uniform in k from the ``wing_delta`` put to the ``wing_delta`` call (Black deltas of the Heston
    implied vols), a call and a put at every strike, bid/ask vols a mid -+ a half spread h drawn uniformly in
    ``half_spread`` (0.05-0.1 vol points), the mid off the Heston vol by U(-1, 1) ``mid_noise`` h (the model
    stays inside every quote, so an arbitrage-free fit inside all of them exists), quoted as Black prices with discounting at
    ``rate`` and forward S e^{(r - q) T}.

    Returns ``expiry_years, strike, option_type, bid, ask, heston_iv`` (a quote file for ``shoals calibrate``;
    ``heston_iv``, the model's vol, is ignored by the quote reader).
    """
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    params = {**HESTON_MARKET, **heston}
    records = []
    for expiry in np.asarray(expiries, dtype=np.float64):
        forward = spot * np.exp((rate - dividend) * expiry)
        scale = np.sqrt(params["theta"] * expiry)
        probe = np.linspace(-8.0, 5.0, 105) * scale
        probe_vols = heston_implied_vols(probe, expiry, **params)
        stdev = probe_vols * np.sqrt(expiry)
        valid = np.isfinite(stdev) & (stdev > 0.0)
        call_delta = ndtr(-probe / np.where(valid, stdev, 1.0) + 0.5 * stdev)
        inside = valid & (call_delta <= 1.0 - wing_delta) & (call_delta >= wing_delta)
        k = np.linspace(probe[inside].min(), probe[inside].max(), n_strikes)
        vols = heston_implied_vols(k, expiry, **params)
        halves = rng.uniform(*half_spread, size=k.shape[0])
        mids = vols + mid_noise * halves * rng.uniform(-1.0, 1.0, size=k.shape[0])
        for strike, vol, mid, half in zip(forward * np.exp(k), vols, mids, halves):
            for option_type in ("call", "put"):
                records.append((expiry, strike, option_type, mid - half, mid + half, vol))
    return quote_table(records, "heston_iv", spot=spot, rate=rate, dividend=dividend)

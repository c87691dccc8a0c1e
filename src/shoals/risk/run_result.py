"""The result of a whole-book run (``shoals run`` / :func:`shoals.risk.run.run_book`): what the outputs and the
HTML report are written from."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class RunResult:
    """Everything one run produced.

    ``trades``: one row per trade, the output columns of BOOK_SCHEMA.md (``id, price, npv, delta, gamma, vega,
    theta, rho, std_error, method, status``) followed by ``instrument, quantity, notional``; Greeks per unit of
    underlying in base units (vega per 1.00 of vol, theta per year).
    ``ladder``: one row per expiry pillar of the surface: ``expiry``, ``vega_bump``, ``vega_aad`` (book totals,
    quantity x notional included, per 1.00 of the pillar's ATM vol); NaN where a column was not computed.
    Trades without an AAD ladder (Monte Carlo, American: ``summary["ladder"]["bump_only_trades"]``) enter
    ``vega_aad`` with their bump ladder, so both columns are book totals.
    ``ladder_by_trade``: (trades x pillars) bump ladder per unit of underlying, indexed by trade id, columns the
    pillar expiries (empty frame without vega).
    ``by_type``: one row per instrument type: ``instrument, trades, failed, npv, delta, gamma, theta, vega`` (book
    units: per-unit Greeks x quantity x notional, summed over the type's priced trades).
    ``summary``: JSON-ready totals and settings (``npv``, ``delta``, ``gamma``, ``theta``, ``vega``,
    ``trades``, ``failed``, ``method``, ``executor``, ``timings`` ...).
    ``snapshot``: the :class:`~shoals.market.snapshot.MarketSnapshot`; ``local_vol`` / ``local_vol_report``: the
    Dupire grid and its :class:`~shoals.market.local_vol.LocalVolReport`; ``calibration``: the
    :class:`~shoals.calibration.surface.SurfaceCalibration` when the run fitted quotes (None with a market
    file); ``arbitrage``: the :class:`~shoals.arbitrage.checks.ArbitrageReport` of the surface priced on;
    ``quote_vega``: market-quote vega (``expiry, strike, k, vega``: d book / d quoted mid implied vol) or None.
    ``timings``: seconds per stage.
    """

    trades: pd.DataFrame
    ladder: pd.DataFrame
    ladder_by_trade: pd.DataFrame
    by_type: pd.DataFrame
    summary: dict
    snapshot: object
    local_vol: object
    local_vol_report: object
    calibration: object | None = None
    arbitrage: object | None = None
    quote_vega: pd.DataFrame | None = None
    timings: dict = field(default_factory=dict)

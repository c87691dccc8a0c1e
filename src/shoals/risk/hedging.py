"""Delta-hedged P&L distributions of a grid of European calls (realised vs hedge volatility).

Model and P&L definition: :func:`shoals.kernels.risk.delta_hedged_pnl`.  Each call is bought at its
Black-Scholes price at the hedge vol sigma_h and delta-hedged at sigma_h every step to expiry while the
underlying moves with the realised vol sigma_r; the discounted P&L per path is kept, with its mean, standard
deviation, standard error and quantiles per option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shoals.errors import InputError
from shoals.kernels import risk as kernels

QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class HedgeSimResult:
    """Per option (the grid flattened strike-major: option i = (strike i // m, maturity i % m) for m
    maturities): ``strikes``, ``expiries``, ``moneyness`` K / S0, P&L ``mean``, ``std`` (n - 1),
    ``std_error`` = std / sqrt(paths), ``quantiles`` (options x ``quantile_levels``); ``pnl`` the
    (options x paths) sample when kept; ``grid_shape`` (strikes, maturities); ``settings`` the inputs.

    Validation: tests/reference/test_hedged_pnl.py (layout and statistics vs NumPy).
    """

    strikes: np.ndarray
    expiries: np.ndarray
    moneyness: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    std_error: np.ndarray
    quantile_levels: tuple
    quantiles: np.ndarray
    grid_shape: tuple
    settings: dict
    pnl: np.ndarray | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per option: strike, expiry, moneyness, mean, std, std_error, q01 .. q99."""
        frame = pd.DataFrame({"strike": self.strikes, "expiry": self.expiries, "moneyness": self.moneyness,
                              "mean": self.mean, "std": self.std, "std_error": self.std_error})
        for j, level in enumerate(self.quantile_levels):
            frame[f"q{100 * level:g}"] = self.quantiles[:, j]
        return frame


def _positive(name: str, value, *, allow_zero=False) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(array) | ((array < 0) if allow_zero else (array <= 0)))
    if bad.size:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"must be finite and {bound}, got {array[bad[0]]!r} (element {bad[0]})", field=name,
                         value=array[bad[0]])
    return array


def hedged_pnl(*, strikes: Sequence[float], expiries: Sequence[float], realised_vol: float, hedge_vol: float,
               spot: float = 100.0, rate: float = 0.0, drift: float | None = None, paths: int = 1000,
               steps: int = 180, seed: int = 0, grid: bool = True,
               quantile_levels: Sequence[float] = QUANTILE_LEVELS, keep_paths: bool = True,
               block: int = kernels.HEDGE_BLOCK, option_block: int = kernels.HEDGE_OPTION_BLOCK) -> HedgeSimResult:
    """Simulate the delta-hedged P&L of long European calls, all options x paths in one jitted program.

    With ``grid`` the options are every (strike, expiry) pair of ``strikes`` x ``expiries``; otherwise the
    two sequences are paired elementwise.  Each option is hedged on N = ``steps`` equal steps of its own
    expiry; the stock drifts at ``drift`` (default: the rate, the risk-neutral case).  The discounted P&L
    e^{-rT} payoff - V_h(0) - sum_k Delta_k (S~_{k+1} - S~_k) tends, as N grows, to

    .. math:: \\int_0^T e^{-rt} \\tfrac12 \\Gamma_h(t, S_t) S_t^2 (\\sigma_r^2 - \\sigma_h^2)\\,dt,

    whose expectation under drift r is BS(sigma_r) - BS(sigma_h); with sigma_r = sigma_h the mean is zero
    and the std (discrete-hedging error) falls like 1/sqrt(N).  ``block`` paths x ``option_block`` options
    is the tile computed at once (memory ~ 10 x 8 bytes x tile; larger tiles suit a GPU).

    References: Ahmad & Wilmott (2005), "Which free lunch would you like today, Sir?: Delta hedging,
    volatility arbitrage and optimal portfolios", Wilmott Magazine; Hull, "Options, Futures and Other
    Derivatives", ch. 19 (delta hedging), ch. 22 (volatility).
    Validation: tests/reference/test_hedged_pnl.py.
    """
    strikes = _positive("strikes", strikes)
    expiries = _positive("expiries", expiries)
    if grid:
        strike_grid, expiry_grid = np.meshgrid(strikes, expiries, indexing="ij")
        grid_shape = (strikes.size, expiries.size)
        strikes, expiries = strike_grid.ravel(), expiry_grid.ravel()
    elif strikes.size != expiries.size:
        raise InputError(f"{strikes.size} strikes but {expiries.size} expiries; pass grid=True for all pairs",
                         field="expiries")
    else:
        grid_shape = (strikes.size,)
    spot = float(_positive("spot", spot)[0])
    realised_vol = float(_positive("realised_vol", realised_vol, allow_zero=True)[0])
    hedge_vol = float(_positive("hedge_vol", hedge_vol)[0])
    for name, count in (("paths", paths), ("steps", steps), ("block", block), ("option_block", option_block)):
        if int(count) != count or count < 1:
            raise InputError(f"must be a whole number >= 1, got {count!r}", field=name, value=count)
    drift = rate if drift is None else drift
    levels = tuple(float(a) for a in quantile_levels)
    pnl = kernels.delta_hedged_pnl(seed=int(seed), spot=spot, strikes=strikes, expiries=expiries,
                                   realised_vol=realised_vol, hedge_vol=hedge_vol, rate=float(rate),
                                   drift=float(drift), paths=int(paths), steps=int(steps), block=int(block),
                                   option_block=int(option_block))
    mean, std, std_error, quantiles = kernels.pnl_statistics(pnl, np.asarray(levels))
    return HedgeSimResult(
        strikes=strikes, expiries=expiries, moneyness=strikes / spot, mean=np.asarray(mean), std=np.asarray(std),
        std_error=np.asarray(std_error), quantile_levels=levels, quantiles=np.asarray(quantiles),
        grid_shape=grid_shape, pnl=np.asarray(pnl) if keep_paths else None,
        settings={"spot": spot, "realised_vol": realised_vol, "hedge_vol": hedge_vol, "rate": float(rate),
                  "drift": float(drift), "paths": int(paths), "steps": int(steps), "seed": int(seed)})

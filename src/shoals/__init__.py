"""Shoals: derivatives pricing and risk on JAX (float64 on CPU and GPU).

The public API:

>>> import shoals as sh
>>> sh.price(sh.European(strike=100.0, maturity=1.0), sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)).value
array(10.45058357)
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from shoals import data  # noqa: E402,F401
from shoals.errors import ArbitrageError, CalibrationError, InputError, ShoalsError, UnsupportedError  # noqa: E402
from shoals.instruments import American, Asian, Barrier, Cliquet, European, Lookback  # noqa: E402
from shoals.kernels.black_scholes import (  # noqa: E402
    black_scholes_greeks, black_scholes_greeks_autodiff, black_scholes_price)
from shoals.kernels.implied_vol import REASONS as IMPLIED_VOL_REASONS  # noqa: E402
from shoals.kernels.implied_vol import implied_volatility  # noqa: E402
from shoals.market import FlatMarket  # noqa: E402
from shoals.market.curves import ZeroCurve  # noqa: E402
from shoals.market.local_vol import LocalVolGrid, build_local_vol  # noqa: E402
from shoals.market.snapshot import MarketSnapshot  # noqa: E402
from shoals.market.slices import NodeSlices  # noqa: E402
from shoals.market.surface import VolSurface  # noqa: E402
from shoals.market.svi import SVIParams  # noqa: E402
from shoals.arbitrage.checks import check_arbitrage  # noqa: E402
from shoals.arbitrage.repair import repair_surface  # noqa: E402
from shoals.calibration.forwards import fit_forwards  # noqa: E402
from shoals.calibration.smiles import build_smiles  # noqa: E402
from shoals.calibration.surface import calibrate_surface  # noqa: E402
from shoals.calibration.svi import fit_svi  # noqa: E402
from shoals.io.market import read_market, write_market  # noqa: E402
from shoals.io.quotes import read_forwards, read_quotes  # noqa: E402
from shoals.methods import (  # noqa: E402
    ChebyshevProxy, ChebyshevTT, ClosedForm, FiniteDifference, MonteCarlo, PiecewiseChebyshevProxy, price)
from shoals.io.book import read_book  # noqa: E402
from shoals.risk import (  # noqa: E402
    Auto, HedgeSimResult, Portfolio, VarResult, hedged_pnl, historical_var, price_book, value_at_risk)
from shoals.results import PriceResult  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "American", "ArbitrageError", "Asian", "Auto", "Barrier", "CalibrationError", "ChebyshevProxy", "ChebyshevTT",
    "Cliquet", "ClosedForm", "European", "PiecewiseChebyshevProxy",
    "FiniteDifference", "HedgeSimResult", "Lookback", "Portfolio", "VarResult", "hedged_pnl", "historical_var",
    "price_book", "read_book", "value_at_risk", "FlatMarket", "IMPLIED_VOL_REASONS",
    "InputError", "LocalVolGrid", "MarketSnapshot", "MonteCarlo", "NodeSlices", "PriceResult", "SVIParams", "ShoalsError",
    "UnsupportedError", "VolSurface", "ZeroCurve", "black_scholes_greeks", "black_scholes_greeks_autodiff",
    "black_scholes_price", "build_local_vol", "build_smiles", "calibrate_surface", "check_arbitrage",
    "fit_forwards", "fit_svi", "implied_volatility", "price", "read_forwards", "read_market", "read_quotes",
    "repair_surface", "write_market",
]

"""Shoals: derivatives pricing and risk on JAX (float64 on CPU and GPU).

The public API:

>>> import shoals as sh
>>> sh.price(sh.European(strike=100.0, maturity=1.0), sh.FlatMarket(spot=100.0, rate=0.05, vol=0.2)).value
array(10.45058357)
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from shoals.errors import ArbitrageError, CalibrationError, InputError, ShoalsError, UnsupportedError  # noqa: E402
from shoals.instruments import European  # noqa: E402
from shoals.kernels.black_scholes import (  # noqa: E402
    black_scholes_greeks, black_scholes_greeks_autodiff, black_scholes_price)
from shoals.kernels.implied_vol import REASONS as IMPLIED_VOL_REASONS  # noqa: E402
from shoals.kernels.implied_vol import implied_volatility  # noqa: E402
from shoals.market import FlatMarket  # noqa: E402
from shoals.methods import ClosedForm, MonteCarlo, price  # noqa: E402
from shoals.results import PriceResult  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ArbitrageError", "CalibrationError", "ClosedForm", "European", "FlatMarket", "IMPLIED_VOL_REASONS",
    "InputError", "MonteCarlo", "PriceResult", "ShoalsError", "UnsupportedError", "black_scholes_greeks",
    "black_scholes_greeks_autodiff", "black_scholes_price", "implied_volatility", "price",
]

"""Closed-form pricing (Black-Scholes-Merton) of European options."""

from __future__ import annotations

from dataclasses import dataclass

import jax

import numpy as np

from shoals.errors import UnsupportedError
from shoals.instruments import European
from shoals.kernels.black_scholes import black_scholes_greeks
from shoals.market import FlatMarket
from shoals.results import GREEK_NAMES, PriceResult

_greeks = jax.jit(black_scholes_greeks)


@dataclass(frozen=True)
class ClosedForm:
    """Analytic Black-Scholes-Merton price and Greeks (Greeks analytic, see
    :func:`shoals.kernels.black_scholes.black_scholes_greeks`)."""

    name = "closed-form"

    def supports(self, instrument, market) -> bool:
        return isinstance(instrument, European) and isinstance(market, FlatMarket)

    def price(self, instrument, market) -> PriceResult:
        if not self.supports(instrument, market):
            raise UnsupportedError(
                f"closed-form prices European options on a FlatMarket, not {type(instrument).__name__} "
                f"on {type(market).__name__}; use method=MonteCarlo(...)")
        greeks = _greeks(
            spots=market.spot, strikes=instrument.strike, expiries=instrument.maturity,
            volatilities=market.vol, rates=market.rate, dividend_yields=market.dividend,
            is_call=instrument.is_call)
        return PriceResult(
            value=np.asarray(greeks.price), method=self.name,
            greeks={name: np.asarray(getattr(greeks, name)) for name in GREEK_NAMES},
            diagnostics={"greeks": "analytic"})

"""L1 market data: frozen pytrees passed at call time (a bump is a new market)."""

from shoals.market.flat import FlatMarket

__all__ = ["FlatMarket"]

"""L1 contracts: frozen dataclasses (pytrees); an instrument never holds market data or a method."""

from shoals.instruments.european import European

__all__ = ["European"]

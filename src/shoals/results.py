"""Results of pricing: frozen, batched over trades, convertible to a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho")


@dataclass(frozen=True)
class PriceResult:
    """Price (per unit of underlying) and Greeks of one instrument or of a batch of them.

    ``value`` and every entry of ``greeks`` have the batch shape of the priced instrument.
    ``std_error`` is the Monte Carlo standard error of ``value`` (``None`` for deterministic methods).
    Greeks are in base units: delta dV/dS, gamma d2V/dS2, vega dV/dsigma (per 1.00 of vol),
    theta dV/dt (per year of calendar time passing), rho dV/dr.
    ``diagnostics`` carries method-specific information (paths, seed, blocks, Greek methods...).
    """

    value: np.ndarray
    method: str
    std_error: np.ndarray | None = None
    greeks: Mapping[str, np.ndarray] = field(default_factory=dict)
    diagnostics: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "value", np.asarray(self.value, dtype=np.float64))
        if self.std_error is not None:
            object.__setattr__(self, "std_error", np.asarray(self.std_error, dtype=np.float64))
        object.__setattr__(self, "greeks", MappingProxyType(
            {name: np.asarray(values, dtype=np.float64) for name, values in self.greeks.items()}))
        object.__setattr__(self, "diagnostics", MappingProxyType(dict(self.diagnostics)))

    def to_frame(self):
        """One row per priced instrument: ``price``, ``std_error`` and the Greeks as columns."""
        import pandas as pd

        columns = {"price": np.atleast_1d(self.value)}
        columns["std_error"] = (np.atleast_1d(self.std_error) if self.std_error is not None
                                else np.full(columns["price"].shape, np.nan))
        for name, values in self.greeks.items():
            columns[name] = np.atleast_1d(values)
        return pd.DataFrame(columns)

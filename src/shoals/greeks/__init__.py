"""Greeks and risk beyond the pricing methods: market-quote risk through the calibration."""

from shoals.greeks.quote_risk import (
    QuoteJacobian,
    fit_parameter_jacobian,
    quote_vega,
    repaired_slices,
    svi_parameter_jacobian,
)

__all__ = ["QuoteJacobian", "fit_parameter_jacobian", "quote_vega", "repaired_slices", "svi_parameter_jacobian"]

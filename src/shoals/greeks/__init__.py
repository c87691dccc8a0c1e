"""Greeks and risk beyond the pricing methods: the vega ladder by expiry pillar (bump and AAD) and
market-quote risk through the calibration."""

from shoals.greeks.quote_risk import (
    QuoteJacobian,
    fit_parameter_jacobian,
    quote_vega,
    repaired_slices,
    svi_parameter_jacobian,
)
from shoals.greeks.vega_ladder import (
    VOL_POINT,
    SurfaceGradient,
    bump_pillars,
    bumped_vol_grids,
    ladder_from_bumps,
    parallel_vol_grids,
    pillar_atm_vols,
    surface_gradient,
)

__all__ = ["VOL_POINT", "QuoteJacobian", "SurfaceGradient", "bump_pillars", "bumped_vol_grids", "fit_parameter_jacobian",
           "ladder_from_bumps", "parallel_vol_grids", "pillar_atm_vols", "quote_vega", "repaired_slices",
           "surface_gradient", "svi_parameter_jacobian"]

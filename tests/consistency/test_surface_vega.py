"""Vega under local vol = parallel bump of the implied surface (BOOK_SCHEMA.md): on a flat implied surface
the local vol is flat, so the PDE and Monte Carlo surface vegas of Europeans equal the Black-Scholes vega."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import shoals  # noqa: F401  (float64)
from shoals.instruments import European
from shoals.kernels.black_scholes import black_scholes_greeks
from shoals.market.curves import ZeroCurve
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface
from shoals.methods import FiniteDifference, MonteCarlo


def _flat_surface_market(vol=0.2):
    t = np.array([0.25, 0.5, 1.0, 2.0])
    surface = VolSurface.from_svi(expiries=t, a=vol ** 2 * t, b=0.0 * t, rho=0.0, m=0.0, sigma=0.1)
    return MarketSnapshot(spot=jnp.asarray(100.0), rate=ZeroCurve.flat(0.03), dividend=ZeroCurve.flat(0.01),
                          surface=surface)


def test_surface_vega_of_finite_difference_and_monte_carlo_is_the_black_scholes_vega():
    market = _flat_surface_market()
    strikes = np.array([85.0, 100.0, 115.0])
    contract = European(strike=strikes, maturity=1.0, is_call=np.array([False, True, True]))
    exact = np.asarray(black_scholes_greeks(spots=100.0, strikes=strikes, expiries=1.0, volatilities=0.2, rates=0.03,
                                            dividend_yields=0.01).vega)
    pde = FiniteDifference().price(contract, market).greeks["vega"]
    np.testing.assert_allclose(pde, exact, rtol=2e-3)
    mc = MonteCarlo(paths=100_000, seed=2, steps_per_year=50).price(contract, market)
    # CRN central difference of prices; its noise is a few tenths of a percent of vega at 100k paths
    np.testing.assert_allclose(mc.greeks["vega"], exact, rtol=3e-2)
    assert "implied surface" in mc.diagnostics["local_vol"]

"""Vega ladder by expiry pillar of the implied surface, by bump-and-reprice and by reverse-mode AD.

Bucket i of the ladder is the sensitivity to the ATM implied vol of slice i, sigma_i = sqrt(w_i(0)/T_i),
moved by a parallel shift of that slice's total variance (``shift_total_variance`` of the slice model: the
``a`` parameter of an SVI slice, every w node of a node slice):

.. math:: w_i(k) \\to w_i(k) + \\delta_i,\\qquad \\delta_i = \\big((\\sigma_i + h)^2 - \\sigma_i^2\\big) T_i,

which moves the ATM vol of the slice by exactly h and keeps its shape in total variance.  Only the surface
on (T_{i-1}, T_{i+1}) changes (the surface is linear in total variance between slices), so a European option
of maturity T between two pillars has its whole ladder on those two.  After the bump the Dupire local vol is
rebuilt from the bumped surface on the nodes of the base grid (:func:`shoals.market.local_vol.local_vol_on`)
and every trade is repriced on its base grid (:class:`shoals.methods.pde_plan.PdePlan`): no implied vol is
used as local vol and no grid noise enters the difference.

* **Bump** (per 1.00 of vol): V_i = (V(+h) - V(-h)) / (2h), central, h = one vol point (0.01).
* **AAD**: one reverse pass for the whole ladder.  The book value's gradient with respect to every node of
  the local vol grid (:meth:`PdePlan.value_and_gradient`) is pulled back through the Dupire construction to
  the slice model (``jax.vjp`` of :func:`local_vol_on`) and on to the shifts, V_i = dV/d delta_i * 2 sigma_i T_i
  (dV/da_i for SVI, the sum of dV/dw over the slice's nodes for node slices).  The same pass gives dV/d(every
  number of the slice model); for SVI that is the input of market-quote risk
  (:func:`shoals.greeks.quote_risk.quote_vega`).

References: Gatheral, "The Volatility Surface" (2006) ch. 1 (Dupire) and 3 (SVI); Giles & Glasserman, "Smoking
adjoints: fast Monte Carlo Greeks", Risk (2006) (adjoint Greeks); Capriotti & Giles, "Algorithmic
differentiation: adjoint Greeks made easy", Risk (2012).
Validation: tests/consistency/test_vega_ladder.py (bump vs AAD within 2 % of the largest bucket, the sum
of buckets vs a parallel surface bump, European ladder on the bracketing pillars),
tests/consistency/test_slices_market.py (bump vs AAD on a node-slices market).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from shoals.errors import InputError
from shoals.market.local_vol import LocalVolGrid, local_vol_on
from shoals.market.surface import VolSurface

#: The ladder's bump: one vol point of ATM implied vol.
VOL_POINT = 0.01


def pillar_atm_vols(surface: VolSurface) -> np.ndarray:
    """sigma_i = sqrt(w_i(0) / T_i), the ATM (k = 0) implied vol of each slice."""
    _check_surface(surface)
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    return np.sqrt(np.asarray(surface.params.total_variance(0.0), dtype=np.float64) / expiries)


def _check_surface(surface) -> None:
    if not isinstance(surface, VolSurface):
        raise InputError(f"the vega ladder bumps the slices of a VolSurface; the market's surface is a "
                         f"{type(surface).__name__}", field="surface", value=type(surface).__name__)


def bump_pillars(snapshot, shifts) -> object:
    """``snapshot`` with slice i's ATM implied vol moved by ``shifts[i]`` (vol units), every slice's shape kept:
    w_i(k) -> w_i(k) + ((sigma_i + shift_i)^2 - sigma_i^2) T_i (``shift_total_variance`` of the slice model)."""
    surface = snapshot.surface
    sigma = pillar_atm_vols(surface)
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    shifts = np.broadcast_to(np.asarray(shifts, dtype=np.float64), sigma.shape)
    if np.any(sigma + shifts <= 0.0):
        raise InputError("a vol bump would make an ATM vol non-positive", field="shifts", value=shifts)
    deltas = ((sigma + shifts) ** 2 - sigma ** 2) * expiries
    return snapshot.bump(surface=replace(surface, params=surface.params.shift_total_variance(deltas)))


def bumped_vol_grids(snapshot, local_vol: LocalVolGrid, *, size: float = VOL_POINT) -> np.ndarray:
    """Local vol nodes of the 2P bumped markets, shape (2P, nt, ns): pillar i up by ``size`` at index 2i,
    down at 2i + 1, each on the nodes of ``local_vol``."""
    shifts = np.kron(np.eye(int(np.asarray(snapshot.surface.expiries).shape[0])), [[size], [-size]])
    return np.stack([_bumped_vols(snapshot, local_vol, row) for row in shifts])


def parallel_vol_grids(snapshot, local_vol: LocalVolGrid, *, size: float = VOL_POINT) -> np.ndarray:
    """Local vol nodes (2, nt, ns) with every pillar bumped together by +``size`` and -``size`` (the parallel
    bump whose central difference is the sum of the ladder's buckets, up to second order)."""
    count = int(np.asarray(snapshot.surface.expiries).shape[0])
    return np.stack([_bumped_vols(snapshot, local_vol, np.full(count, sign * size)) for sign in (1.0, -1.0)])


def _bumped_vols(snapshot, local_vol: LocalVolGrid, shifts) -> np.ndarray:
    """Local vol nodes of the market with pillar ATM vols moved by ``shifts``, on the nodes of ``local_vol``."""
    return np.asarray(local_vol_on(bump_pillars(snapshot, shifts), local_vol).vols)


def unchanged_until(bumped_vols, local_vol: LocalVolGrid) -> np.ndarray:
    """For each bumped grid of ``bumped_vols`` (K, nt, ns), the time up to which it equals the base grid
    ``local_vol`` bit for bit: ``times[r - 1]`` with r its first differing time row (-inf when row 0 differs,
    +inf when none does).

    A pillar's bump moves the surface only on (T_{i-1}, T_{i+1}), so its local vol rows before T_{i-1} are
    those of the base.  A PDE solve of trades of maturity <= this time reads only base rows (its steps'
    mid-times t are below the maturity and sigma(t, .) is read from the two rows around t), so its value
    under the bumped grid IS its base value, exactly: the ladder skips that solve (:func:`price_chunk
    <shoals.risk.run.price_chunk>`)."""
    times = np.asarray(local_vol.times, dtype=np.float64)
    changed = np.any(np.asarray(bumped_vols) != np.asarray(local_vol.vols)[None], axis=2)      # (K, nt)
    first = np.where(changed.any(axis=1), changed.argmax(axis=1), times.size)
    padded = np.concatenate([[-np.inf], times, [np.inf]])
    return np.where(first == times.size, np.inf, padded[first])


def ladder_from_bumps(values, *, size: float = VOL_POINT) -> np.ndarray:
    """Per-trade ladder (T, P) per 1.00 of vol from values (T, 2P) under :func:`bumped_vol_grids`."""
    values = np.asarray(values, dtype=np.float64)
    return (values[:, 0::2] - values[:, 1::2]) / (2.0 * size)


@dataclass(frozen=True)
class SurfaceGradient:
    """The gradient of a book value V with respect to the surface's slice model: ``params`` dV/d(every number
    of it) in its own form (an SVIParams of dV/d(a, b, rho, m, sigma), shape (P,) each, or a NodeSlices of
    dV/dk and dV/dw, shape (P, nodes)), and the AAD vega ladder ``ladder`` (P,) per 1.00 of each pillar's ATM
    vol."""

    params: object
    ladder: np.ndarray


def surface_gradient(snapshot, local_vol: LocalVolGrid, vol_gradient) -> SurfaceGradient:
    """Pull dV/d(local vol nodes) ``vol_gradient`` (nt, ns) back through the Dupire construction on the nodes
    of ``local_vol`` (:func:`local_vol_on`, reverse mode) to the slice model; the AAD ladder is
    dV/d delta_i * 2 sigma_i T_i (the derivative of the bump of :func:`bump_pillars`), with dV/d delta_i the
    slice model's cotangent pulled back through ``shift_total_variance`` (dV/da_i for SVI, the sum of dV/dw
    over slice i's nodes for node slices)."""
    _check_surface(snapshot.surface)
    vol_gradient = jnp.asarray(vol_gradient, dtype=jnp.float64)
    if vol_gradient.shape != tuple(np.shape(local_vol.vols)):
        raise InputError(f"gradient of shape {vol_gradient.shape} does not match the grid {np.shape(local_vol.vols)}",
                         field="vol_gradient", value=vol_gradient.shape)
    params = snapshot.surface.params
    _, pullback = jax.vjp(lambda p: _grid_vols(snapshot, p, local_vol), params)
    (cotangent,) = pullback(vol_gradient)
    expiries = np.asarray(snapshot.surface.expiries, dtype=np.float64)
    _, shift_pullback = jax.vjp(params.shift_total_variance, jnp.zeros(expiries.shape, dtype=jnp.float64))
    (by_shift,) = shift_pullback(cotangent)
    ladder = np.asarray(by_shift) * 2.0 * pillar_atm_vols(snapshot.surface) * expiries
    return SurfaceGradient(params=jax.tree.map(np.asarray, cotangent), ladder=ladder)


def _grid_vols(snapshot, params, like):
    surface = replace(snapshot.surface, params=params)
    return local_vol_on(snapshot.bump(surface=surface), like).vols

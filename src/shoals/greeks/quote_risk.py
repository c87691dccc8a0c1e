r"""Market-quote risk: sensitivities to the quoted mid implied vols through the SVI fit.

A value V computed from the calibrated surface depends on the quotes only through the fitted raw-SVI
parameters p*(q) of each slice (V = V(p*(q))).  Given dV/dp (e.g. by reverse-mode AD of a book
through the :class:`~shoals.market.surface.VolSurface`), the **market-quote vega** of quote j of slice i is

.. math:: \frac{\partial V}{\partial q_{ij}} = \sum_{p} \frac{\partial V}{\partial p_i}\,
          \frac{\partial p^*_i}{\partial q_{ij}}.

**Implicit function theorem.**  :func:`shoals.calibration.svi.fit_svi` minimises, per slice, in the
unconstrained coordinates x of :func:`~shoals.calibration.svi.raw_from_unconstrained`,

.. math:: F(x, q) = \sum_j \omega_j \big(\sqrt{w(k_j; p(x))/T} - q_j\big)^2 + \text{butterfly penalty}(x)

(``_slice_residuals``: normalised weights omega, the penalty 10 max(0, 1e-3 - g)/sqrt(n) on the check
grid, which does not depend on q).  At an interior minimum grad_x F(x*, q) = 0; differentiating this
identity in q gives

.. math:: \frac{\partial x^*}{\partial q} = -\big(\nabla^2_{xx} F\big)^{-1}\,\nabla^2_{xq} F,
          \qquad \frac{\partial p^*}{\partial q} = \frac{\partial p}{\partial x}(x^*)\,
          \frac{\partial x^*}{\partial q}.

Both second derivatives are exact (``jax.hessian`` / ``jax.jacfwd`` of ``jax.grad`` of the fit's own
residual function, not Gauss-Newton: the term sum_j r_j d^2 r_j/dx^2 is kept, which matters when the
residuals are not small), vmapped over slices.  The 5 x 5 Hessian is solved through its eigen
decomposition with a Tikhonov floor: eigenvalues max(lambda, 0) + ``ridge`` * lambda_max, so a
singular or ill-conditioned Hessian (fewer than 5 informative quotes, SVI's near-degenerate directions,
e.g. sigma -> inf when the smile is a parabola in k) gives the damped, minimum-movement answer along its
flat directions instead of inf/NaN; ``condition`` = lambda_max / lambda_min (inf when lambda_min <= 0)
reports it per slice.

What is, and is not, differentiated:

* **Weights are held fixed.**  The ``"vega"`` weights (Black vega of the mid) and ``"spread"`` weights
  (bid/ask vols) are treated as constants: the risk is that of the weighted least-squares fit with
  frozen weights (the usual convention; a weight moves with the mid only at second order in the fit
  residuals).
* **The butterfly penalty** enters the Hessian (it is part of F); its check grid is a constant of the
  parameters in the fit (``stop_gradient``) and here.  ``penalty_active`` flags slices where it binds.
* **Arbitrage repair is not differentiated.**  :func:`~shoals.calibration.surface.calibrate_surface`
  may move a slice after the fit (:func:`~shoals.arbitrage.repair.repair_surface`); the quote risk here
  is that of the SVI fit, ``calibration.fit.params``.  ``repaired`` flags slices whose surface
  parameters differ from the fit's; for them dV/dp is taken at the repaired surface and applied to the
  fit's dp/dq (an approximation).
* **Non-converged fits** (``converged`` False) are not at a stationary point; their Jacobian is the
  IFT formula evaluated where the fit stopped and is flagged, not corrected.  ``newton_step`` (the
  largest component of the regularised Newton step -H^{-1} grad_x F in x) says how far from
  stationary the reported optimum is.

References: Henrard, "Adjoint algorithmic differentiation: calibration and implicit function theorem",
OpenGamma Quantitative Research 1 (2011); Giles & Glasserman, "Smoking adjoints: fast Monte Carlo
Greeks", Risk (2006) (adjoint sensitivities); Gatheral (2004) (raw SVI).
Validation: tests/unit/test_quote_risk.py (IFT Jacobian vs central bump-and-refit of single quotes in
three slices, linear functional c . J, parallel shift of a whole slice vs refit, padding, repair and
weighting flags).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from shoals._exported import cached_call
from shoals.calibration.svi import (
    _CHECK_FAR,
    _CHECK_LOCAL,
    _CHECK_ROOTS,
    _CHECK_UNIFORM,
    PENALTY_MARGIN,
    PENALTY_SCALE,
    WING_SLOPE_FLOOR,
    SVIFit,
    _g_on,
    _grid,
    _refined_minima,
    _weights,
    raw_from_unconstrained,
    unconstrained_from_raw,
)
from shoals.errors import InputError
from shoals.kernels.svi import svi_total_variance
from shoals.market.quotes import SmileData
from shoals.market.slices import NodeSlices
from shoals.market.svi import SVIParams

PARAM_NAMES = ("a", "b", "rho", "m", "sigma")
DEFAULT_RIDGE = 1e-12  # Tikhonov floor relative to the Hessian's largest eigenvalue


@dataclass(frozen=True)
class QuoteJacobian:
    """dp_raw/dq of an SVI fit, per slice, with diagnostics.

    ``jacobian`` (slices, 5, quotes): d(a, b, rho, m, sigma)/d(mid vol of quote j), zero on padding;
    ``condition`` lambda_max/lambda_min of the Hessian of the fit objective in the unconstrained
    coordinates (inf when lambda_min <= 0); ``eigenvalues`` (slices, 5) ascending; ``regularised``
    whether the Tikhonov floor changed the solve materially (condition > 1e-3 / ridge);
    ``newton_step`` the largest |component| of -H^{-1} grad_x F (0 at an exact optimum);
    ``penalty_active`` whether the butterfly penalty binds (min g on the check grid < 1e-3);
    ``converged`` the fit's flag; ``mask`` the quotes used.
    """

    jacobian: np.ndarray
    expiries: np.ndarray
    mask: np.ndarray
    condition: np.ndarray
    eigenvalues: np.ndarray
    regularised: np.ndarray
    newton_step: np.ndarray
    penalty_active: np.ndarray
    converged: np.ndarray
    weighting: str
    ridge: float

    def to_frame(self) -> pd.DataFrame:
        """One row per slice: expiry, quotes, condition, smallest/largest eigenvalue and the flags."""
        return pd.DataFrame({
            "expiry": self.expiries, "quotes": self.mask.sum(axis=1), "condition": self.condition,
            "min_eigenvalue": self.eigenvalues[:, 0], "max_eigenvalue": self.eigenvalues[:, -1],
            "regularised": self.regularised, "newton_step": self.newton_step,
            "penalty_active": self.penalty_active, "converged": self.converged,
        })


def _check_points(x, half_width):
    """The fit's butterfly check points at x (:func:`~shoals.calibration.svi._min_density`: the grid of
    ``_grid`` and its refined chunk minima), as constants."""
    a, b, rho, m, sigma = raw_from_unconstrained(jax.lax.stop_gradient(x))
    grid = (_CHECK_UNIFORM, _CHECK_LOCAL, _CHECK_FAR, _CHECK_ROOTS)
    points = _grid(half_width, a, b, rho, m, sigma, *grid)
    g = _g_on(points, a, b, rho, m, sigma)
    layout = [(len(_CHECK_UNIFORM), 8), (len(_CHECK_LOCAL), 8), (len(_CHECK_FAR), 4), (len(_CHECK_FAR), 4)] \
        + [(len(_CHECK_ROOTS), 1)] * 4
    refined = _refined_minima(points, g, a, b, rho, m, sigma, layout)
    return jax.lax.stop_gradient(jnp.concatenate([points, refined]))


def _residuals(x, q, k, sqrt_weight, expiry, points):
    """``_slice_residuals`` of the fit with its check points given: identical values and derivatives (the
    fit's points are ``stop_gradient`` constants), but the second derivatives need not be traced through
    the grid construction (half the compile time)."""
    a, b, rho, m, sigma = raw_from_unconstrained(x)
    w = svi_total_variance(log_moneyness=k, a=a, b=b, rho=rho, m=m, sigma=sigma)
    fit = sqrt_weight * (jnp.sqrt(w / expiry) - q)
    g = _g_on(points, a, b, rho, m, sigma)
    penalty = PENALTY_SCALE / math.sqrt(g.shape[-1]) * jnp.maximum(PENALTY_MARGIN - g, 0.0)
    return jnp.concatenate([fit, penalty]), jnp.min(g)


def _objective(x, q, k, sqrt_weight, expiry, points):
    r, _ = _residuals(x, q, k, sqrt_weight, expiry, points)
    return jnp.sum(r * r)


def _slice_ift(x, q, k, sqrt_weight, expiry, half_width, ridge):
    """dp_raw/dq (5, Q), the Hessian's eigenvalues, the Newton step and min g for one slice."""
    points = _check_points(x, half_width)
    args = (k, sqrt_weight, expiry, points)
    gradient = jax.grad(_objective)
    hessian = jax.jacfwd(gradient)(x, q, *args)
    hessian = 0.5 * (hessian + hessian.T)
    cross = jax.jacfwd(gradient, argnums=1)(x, q, *args)                       # d2F/dx dq, (5, Q)
    eigenvalues, vectors = jnp.linalg.eigh(hessian)
    top = jnp.max(jnp.abs(eigenvalues))
    floored = jnp.maximum(eigenvalues, 0.0) + ridge * top + 1e-300

    def solve(rhs):
        return vectors @ ((vectors.T @ rhs) / (floored[:, None] if rhs.ndim == 2 else floored))

    dx_dq = -solve(cross)
    to_raw = jax.jacfwd(lambda z: jnp.stack(raw_from_unconstrained(z)))(x)   # (5, 5)
    newton = -solve(gradient(x, q, *args))
    _, min_g = _residuals(x, q, *args)
    return to_raw @ dx_dq, eigenvalues, jnp.max(jnp.abs(newton)), min_g


@partial(jax.jit, static_argnames=("weighting",))
def _ift_arrays(x, k, mid_vol, bid_vol, ask_vol, vega, mask, expiry, half_width, ridge, *, weighting):
    mid_vol = jnp.where(mask, mid_vol, 0.2)  # the fit's padding (fit_svi / _fit_arrays)
    k = jnp.where(mask, k, 0.0)
    sqrt_weight = jnp.sqrt(_weights(weighting, mask, vega, bid_vol, ask_vol))
    jac, eigenvalues, newton, min_g = jax.vmap(_slice_ift, in_axes=(0, 0, 0, 0, 0, 0, None))(
        x, mid_vol, k, sqrt_weight, expiry, half_width, ridge)
    return jnp.where(mask[:, None, :], jac, 0.0), eigenvalues, newton, min_g


def fit_parameter_jacobian(smiles: SmileData, fit: SVIFit, *, weighting: str | None = None,
                           ridge: float = DEFAULT_RIDGE) -> QuoteJacobian:
    r"""dp_raw/dq of ``fit`` (a :func:`~shoals.calibration.svi.fit_svi` result on ``smiles``) by the
    implicit function theorem (module docstring):

    .. math:: \frac{\partial p^*}{\partial q} = -\frac{\partial p}{\partial x}
              \big(\nabla^2_{xx}F + \epsilon\lambda_{max} I\big)^{-1}\nabla^2_{xq}F

    with F the fit's objective (weighted mean squared vol error plus butterfly penalty) in the
    unconstrained coordinates x, weights held fixed, epsilon = ``ridge`` (negative eigenvalues are
    clipped to 0 first).  ``weighting`` defaults to the fit's and must match it.  Batched over slices
    (vmap); one compilation per array shape.

    References: Henrard, "Adjoint algorithmic differentiation: calibration and implicit function
    theorem", OpenGamma Quantitative Research 1 (2011).
    Validation: tests/unit/test_quote_risk.py (vs central bump-and-refit).
    """
    weighting = _check_weighting(weighting, fit)
    if not (np.isfinite(ridge) and ridge >= 0.0):
        raise InputError("ridge must be a finite number >= 0 (e.g. 1e-12)", field="ridge", value=ridge)
    mask = np.asarray(smiles.mask, dtype=bool)
    n_slices = mask.shape[0]
    if fit.n_slices != n_slices:
        raise InputError(f"the fit has {fit.n_slices} slices but the smiles have {n_slices}; pass the SmileData "
                         "the fit was made on", field="fit", value=fit.n_slices)
    params = np.asarray(fit.params.stacked(), dtype=np.float64).reshape(n_slices, 5)
    x = unconstrained_from_raw(*(jnp.asarray(params[:, i]) for i in range(5)), slope_floor=WING_SLOPE_FLOOR * (1.0 + 1e-9))
    jac, eigenvalues, newton, min_g = cached_call(_ift_arrays, (), (
        x, jnp.asarray(smiles.log_moneyness, dtype=jnp.float64), jnp.asarray(smiles.mid_vol, dtype=jnp.float64),
        jnp.asarray(smiles.bid_vol, dtype=jnp.float64), jnp.asarray(smiles.ask_vol, dtype=jnp.float64),
        jnp.asarray(smiles.vega, dtype=jnp.float64), jnp.asarray(mask),
        jnp.asarray(smiles.expiries, dtype=jnp.float64), jnp.asarray(fit.half_widths, dtype=jnp.float64),
        jnp.float64(ridge)), {"weighting": weighting})
    eigenvalues = np.asarray(eigenvalues)
    low, high = eigenvalues[:, 0], np.max(np.abs(eigenvalues), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        condition = np.where(low > 0.0, high / np.where(low > 0.0, low, 1.0), np.inf)
    return QuoteJacobian(
        jacobian=np.asarray(jac), expiries=np.asarray(smiles.expiries, dtype=np.float64), mask=mask,
        condition=condition, eigenvalues=eigenvalues,
        regularised=condition > (1e-3 / ridge if ridge > 0 else np.inf), newton_step=np.asarray(newton),
        penalty_active=np.asarray(min_g) < PENALTY_MARGIN, converged=np.asarray(fit.converged, dtype=bool),
        weighting=weighting, ridge=float(ridge))


def svi_parameter_jacobian(calibration, *, weighting: str | None = None, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """dp_raw/dq of a :class:`~shoals.calibration.surface.SurfaceCalibration`'s SVI fit: array
    (slices, 5, max_quotes), parameters in the order (a, b, rho, m, sigma), quotes in the order (and
    padding) of ``calibration.smiles`` (zero columns on padding).  See :func:`fit_parameter_jacobian`
    (which also returns the diagnostics) and the module docstring; the arbitrage repair is not
    differentiated.

    Validation: tests/unit/test_quote_risk.py.
    """
    return fit_parameter_jacobian(calibration.smiles, calibration.fit, weighting=weighting, ridge=ridge).jacobian


def repaired_slices(calibration) -> np.ndarray:
    """Per slice, whether the arbitrage repair moved the surface's SVI parameters away from the fit's."""
    fit = np.asarray(calibration.fit.params.stacked(), dtype=np.float64)
    final = np.asarray(calibration.surface.params.stacked(), dtype=np.float64)
    if fit.shape != final.shape:
        return np.ones(fit.shape[0], dtype=bool)
    return np.any(fit != final, axis=-1)


def quote_vega(calibration, dvalue_dparams, *, weighting: str | None = None,
               ridge: float = DEFAULT_RIDGE) -> pd.DataFrame:
    r"""Market-quote vega: dV/d(quoted mid implied vol) of every quote used in the SVI fit.

    .. math:: \mathrm{vega}_{ij} = \sum_{p \in (a, b, \rho, m, \sigma)}
              \frac{\partial V}{\partial p_i}\,\frac{\partial p^*_i}{\partial q_{ij}}

    with dp*/dq from :func:`fit_parameter_jacobian` (implicit function theorem on the fit's optimality
    condition, exact Hessian, fit weights held fixed).  ``vega`` is per 1.00 of implied vol (multiply by
    0.01 for a vol point).

    Parameters
    ----------
    calibration : SurfaceCalibration
        The result of :func:`~shoals.calibration.surface.calibrate_surface`.
    dvalue_dparams : array (slices, 5), SVIParams, or VolSurface
        dV/d(a, b, rho, m, sigma) per slice, e.g. the ``params`` of ``jax.grad`` of a value with respect
        to the surface (an SVIParams or a VolSurface of sensitivities is accepted as is).
    weighting : str, optional
        The fit's weighting (default: ``calibration.fit.weighting``; another value is an error: the risk
        of a different fit is not defined at this one's optimum).
    ridge : float
        Tikhonov floor of the Hessian solve, relative to its largest eigenvalue.

    Returns
    -------
    pandas.DataFrame
        One row per quote used in the fit (slice order, then the smile's quote order): ``expiry``,
        ``strike``, ``k`` (log-forward-moneyness), ``option_type`` ("call"/"put"), ``mid_vol``, ``vega``,
        and ``slice``, ``row`` (source row), per-slice diagnostics ``condition``, ``newton_step`` (distance
        of the fit from stationarity in x; large values mean the IFT is evaluated away from an optimum,
        e.g. a fit stopped by ``vol_tolerance`` on a near-degenerate smile), ``converged``,
        ``penalty_active`` and ``repaired`` (the arbitrage repair moved this slice after the fit: its
        repair is not differentiated; dV/dp at the repaired surface is applied to the fit's dp/dq).

    References: Henrard, "Adjoint algorithmic differentiation: calibration and implicit function
    theorem", OpenGamma Quantitative Research 1 (2011).
    Validation: tests/unit/test_quote_risk.py (bump-and-refit agreement; linear functional; parallel
    shift of a slice).
    """
    smiles = calibration.smiles
    gradient = _as_gradient(dvalue_dparams, smiles.n_slices)
    result = fit_parameter_jacobian(smiles, calibration.fit, weighting=weighting, ridge=ridge)
    vega = np.einsum("sp,spq->sq", gradient, result.jacobian)
    mask = result.mask
    slice_index = np.broadcast_to(np.arange(mask.shape[0])[:, None], mask.shape)
    per_slice = {"condition": result.condition, "newton_step": result.newton_step, "converged": result.converged,
                 "penalty_active": result.penalty_active, "repaired": repaired_slices(calibration)}
    frame = {
        "expiry": np.broadcast_to(np.asarray(smiles.expiries, dtype=np.float64)[:, None], mask.shape)[mask],
        "strike": np.asarray(smiles.strikes, dtype=np.float64)[mask],
        "k": np.asarray(smiles.log_moneyness, dtype=np.float64)[mask],
    }
    if getattr(smiles, "is_call", None) is not None:
        frame["option_type"] = np.where(np.asarray(smiles.is_call, dtype=bool)[mask], "call", "put")
    frame["mid_vol"] = np.asarray(smiles.mid_vol, dtype=np.float64)[mask]
    frame["vega"] = vega[mask]
    frame["slice"] = slice_index[mask]
    if getattr(smiles, "rows", None) is not None:
        frame["row"] = np.asarray(smiles.rows)[mask]
    for name, values in per_slice.items():
        frame[name] = np.asarray(values)[slice_index[mask]]
    return pd.DataFrame(frame)


def _check_weighting(weighting, fit: SVIFit) -> str:
    if weighting is None:
        return fit.weighting
    if weighting != fit.weighting:
        raise InputError(f"weighting {weighting!r} differs from the fit's {fit.weighting!r}; the quote risk is "
                         "that of the fit that was made: pass its weighting (or leave it out)",
                         field="weighting", value=weighting)
    return weighting


def _as_gradient(dvalue_dparams, n_slices: int) -> np.ndarray:
    value = getattr(dvalue_dparams, "params", dvalue_dparams)  # a VolSurface of sensitivities
    if isinstance(value, NodeSlices):
        raise InputError("market-quote vega goes through the SVI fit; these are sensitivities to node slices "
                         "(k, w nodes), which have no SVI parameters", field="dvalue_dparams",
                         value=type(value).__name__)
    if isinstance(value, SVIParams):
        value = value.stacked()
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (n_slices, 5):
        raise InputError(f"dvalue_dparams must have shape ({n_slices}, 5) (slices x (a, b, rho, m, sigma)), got "
                         f"{value.shape}", field="dvalue_dparams", value=value.shape)
    if not np.all(np.isfinite(value)):
        raise InputError("dvalue_dparams must be finite", field="dvalue_dparams")
    return value

"""Market-quote risk (shoals.greeks.quote_risk): the implicit-function-theorem Jacobian dp/dq of the SVI
fit against an independent bump-and-refit, the linear-functional identity vega = c . J, a parallel shift
of whole slices, padding, a singular Hessian, the repair flag and input errors.

Reference: central differences of ``fit_svi`` refits (h = 1e-4 in vol, fit tolerance 1e-14, no absolute
vol tolerance), started afresh from the fit's own initial guess.  The "vega" weights are Black vegas that
the IFT holds fixed; the bumps change the mid vols only (SmileData.vega unchanged), so both sides see
the same weights.  Measured (3 slices x 13 noisy quotes): largest relative difference 1.3e-5 per slice
and quote (scale: max |dp/dq| of the slice); the tolerances below are 1e-3, about 100x that.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.calibration.svi import fit_svi
from shoals.errors import InputError
from shoals.greeks.quote_risk import (
    fit_parameter_jacobian,
    quote_vega,
    svi_parameter_jacobian,
)
from shoals.kernels.svi import svi_total_variance
from shoals.market.quotes import SmileData
from shoals.market.surface import VolSurface
from shoals.market.svi import SVIParams

EXPIRIES = np.array([0.1, 0.5, 2.0])
N_QUOTES = 13
WIDTH = N_QUOTES + 2  # two padding columns per slice
TIGHT = {"tolerance": 1e-14, "vol_tolerance": 0.0}
H = 1e-4
RELATIVE_TOLERANCE = 1e-3


def true_params() -> np.ndarray:
    b = 0.06 + 0.04 * EXPIRIES
    rho = np.array([-0.7, -0.5, -0.3])
    m = np.array([-0.02, 0.01, 0.05])
    sigma = 0.08 + 0.06 * np.sqrt(EXPIRIES)
    a = 0.035 * EXPIRIES - 0.5 * b * sigma * np.sqrt(1.0 - rho * rho)
    return np.stack([a, b, rho, m, sigma], axis=1)


def noisy_smiles(seed: int = 1, noise: float = 0.003) -> SmileData:
    """SVI vols at 13 strikes per slice plus N(0, 0.3 vol points) noise (a non-zero-residual fit, where
    the exact Hessian differs from Gauss-Newton); forward 100, bid/ask = mid -+ 0.5 vol points."""
    rng = np.random.default_rng(seed)
    shape = (len(EXPIRIES), WIDTH)
    k, mid, mask = np.zeros(shape), np.full(shape, 0.2), np.zeros(shape, bool)
    for i, (p, t) in enumerate(zip(true_params(), EXPIRIES)):
        ks = np.linspace(-2.5, 1.5, N_QUOTES) * 0.2 * np.sqrt(t)
        vols = np.sqrt(np.asarray(svi_total_variance(log_moneyness=ks, a=p[0], b=p[1], rho=p[2], m=p[3],
                                                     sigma=p[4])) / t)
        k[i, :N_QUOTES], mid[i, :N_QUOTES], mask[i, :N_QUOTES] = ks, vols + noise * rng.standard_normal(N_QUOTES), True
    sqrt_t = np.sqrt(EXPIRIES)[:, None]
    vega = np.where(mask, 100.0 * sqrt_t * np.exp(-0.5 * (k / (mid * sqrt_t)) ** 2) / np.sqrt(2 * np.pi), 0.0)
    return SmileData(expiries=EXPIRIES.copy(), forwards=np.full(3, 100.0), discount_factors=np.ones(3),
                     log_moneyness=k, strikes=100.0 * np.exp(k), is_call=k >= 0.0, mid_vol=mid,
                     bid_vol=mid - 0.005, ask_vol=mid + 0.005, vega=vega, mask=mask,
                     rows=np.arange(shape[0] * shape[1]).reshape(shape) + 2)


def with_mid(smiles: SmileData, mid: np.ndarray) -> SmileData:
    return SmileData(**{**smiles.__dict__, "mid_vol": mid})


def refit_params(smiles: SmileData) -> np.ndarray:
    return np.asarray(fit_svi(smiles, weighting="vega", **TIGHT).params.stacked())


def calibration_of(smiles, fit, surface_params=None):
    """The parts of a SurfaceCalibration that quote_vega reads."""
    params = fit.params if surface_params is None else SVIParams.from_stacked(surface_params)
    return SimpleNamespace(smiles=smiles, fit=fit, surface=VolSurface(expiries=smiles.expiries, params=params))


@pytest.fixture(scope="module")
def case():
    smiles = noisy_smiles()
    fit = fit_svi(smiles, weighting="vega", **TIGHT)
    assert np.all(fit.converged)
    return smiles, fit, fit_parameter_jacobian(smiles, fit)


def test_jacobian_matches_bump_and_refit(case):
    smiles, _, result = case
    assert result.jacobian.shape == (3, 5, WIDTH)
    assert np.all(result.newton_step < 1e-6)  # the fits are stationary: the IFT applies
    assert not np.any(result.penalty_active)
    assert np.all(np.isfinite(result.condition)) and not np.any(result.regularised)
    worst = 0.0
    for j in (0, 6, 12):
        up, down = smiles.mid_vol.copy(), smiles.mid_vol.copy()
        up[:, j] += H
        down[:, j] -= H
        finite_difference = (refit_params(with_mid(smiles, up)) - refit_params(with_mid(smiles, down))) / (2 * H)
        ift = result.jacobian[:, :, j]
        scale = np.max(np.abs(ift), axis=1)
        assert np.all(scale > 1.0)  # a quote moves its slice's parameters
        relative = np.max(np.abs(finite_difference - ift), axis=1) / scale
        worst = max(worst, float(relative.max()))
        assert np.all(relative < RELATIVE_TOLERANCE), (j, relative)
    print(f"\nIFT vs bump-and-refit: worst relative difference {worst:.2e}")


def test_padding_rows_and_linear_functional(case):
    smiles, fit, result = case
    assert np.all(result.jacobian[:, :, N_QUOTES:] == 0.0)
    c = np.random.default_rng(7).standard_normal((3, 5))
    frame = quote_vega(calibration_of(smiles, fit), c)
    assert list(frame.columns[:6]) == ["expiry", "strike", "k", "option_type", "mid_vol", "vega"]
    assert len(frame) == 3 * N_QUOTES
    expected = np.einsum("sp,spq->sq", c, result.jacobian)[smiles.mask]
    np.testing.assert_allclose(frame["vega"].to_numpy(), expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(frame["mid_vol"].to_numpy(), smiles.mid_vol[smiles.mask])
    np.testing.assert_array_equal(frame["option_type"].to_numpy(),
                                  np.where(smiles.is_call[smiles.mask], "call", "put"))
    # the VolSurface of sensitivities that jax.grad returns (and an SVIParams) is accepted as is
    surface = VolSurface(expiries=smiles.expiries, params=fit.params)
    grad_surface = jax.grad(lambda s: jnp.sum(jnp.asarray(c) * s.params.stacked()))(surface)
    for gradient in (grad_surface, grad_surface.params):
        np.testing.assert_allclose(quote_vega(calibration_of(smiles, fit), gradient)["vega"], frame["vega"],
                                   rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(svi_parameter_jacobian(calibration_of(smiles, fit)), result.jacobian)
    assert not frame["repaired"].any() and frame["converged"].all()


def test_parallel_shift_of_each_slice_matches_refit(case):
    """d/ds of V = c . p*(q + s) by refitting every quote shifted by s equals the slice's total quote vega."""
    smiles, fit, _ = case
    c = np.array([[100.0, 20.0, 1.0, 5.0, 3.0]] * 3) * np.array([[1.0], [-2.0], [0.5]])
    frame = quote_vega(calibration_of(smiles, fit), c)
    total = frame.groupby("slice")["vega"].sum().to_numpy()
    shifted = [refit_params(with_mid(smiles, smiles.mid_vol + s)) for s in (H, -H)]
    finite_difference = np.sum(c * (shifted[0] - shifted[1]), axis=1) / (2 * H)
    relative = np.abs(total - finite_difference) / np.abs(finite_difference)
    print(f"\nparallel shift: total quote vega {total}, refit {finite_difference}, relative {relative}")
    assert np.all(relative < RELATIVE_TOLERANCE)


def test_singular_hessian_is_regularised_and_flagged(case):
    """Four quotes for five parameters: the Hessian is (numerically) singular; the Tikhonov floor keeps
    the Jacobian finite and the slice is flagged, the other slices are unaffected."""
    smiles, _, full = case
    mask = smiles.mask.copy()
    mask[0, 4:] = False
    thin = SmileData(**{**smiles.__dict__, "mask": mask})
    fit = fit_svi(thin, weighting="vega", **TIGHT)
    result = fit_parameter_jacobian(thin, fit)
    assert np.all(np.isfinite(result.jacobian))
    assert result.regularised[0] and not np.any(result.regularised[1:])
    assert result.condition[0] > 1e9
    assert np.all(result.jacobian[0, :, 4:] == 0.0)
    np.testing.assert_allclose(result.jacobian[1:], full.jacobian[1:], rtol=1e-10, atol=1e-10)
    frame = quote_vega(calibration_of(thin, fit), np.ones((3, 5)))
    assert len(frame) == 4 + 2 * N_QUOTES and np.all(np.isfinite(frame["vega"]))


def test_repair_flag_and_input_errors(case):
    smiles, fit, _ = case
    moved = np.asarray(fit.params.stacked()).copy()
    moved[1, 0] += 1e-4
    frame = quote_vega(calibration_of(smiles, fit, moved), np.ones((3, 5)))
    assert frame.groupby("slice")["repaired"].all().tolist() == [False, True, False]
    with pytest.raises(InputError, match="weighting"):
        quote_vega(calibration_of(smiles, fit), np.ones((3, 5)), weighting="uniform")
    with pytest.raises(InputError, match="shape"):
        quote_vega(calibration_of(smiles, fit), np.ones((2, 5)))

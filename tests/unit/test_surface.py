"""VolSurface: the interpolation rule in t at fixed k (docs/surface.md), calendar monotonicity, analytic
derivatives vs autodiff, pytree/jit/grad behaviour, float64, input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.market.curves import ZeroCurve
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface, interpolation_weights
from shoals.market.svi import SVIParams

EXPIRIES = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
K = np.linspace(-0.8, 0.8, 33)


def skew_surface(expiries=EXPIRIES):
    t = np.asarray(expiries)
    return VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(t))


def slice_w(surface, i, k):
    p = {name: float(np.asarray(getattr(surface.params, name))[i]) for name in ("a", "b", "rho", "m", "sigma")}
    km = k - p["m"]
    return p["a"] + p["b"] * (p["rho"] * km + np.sqrt(km ** 2 + p["sigma"] ** 2))


def test_slices_are_reproduced_at_their_expiries():
    surface = skew_surface()
    for i, t in enumerate(EXPIRIES):
        np.testing.assert_allclose(surface.total_variance(K, t), slice_w(surface, i, K), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9])
def test_linear_in_time_between_slices(alpha):
    surface = skew_surface()
    for i in range(len(EXPIRIES) - 1):
        t = EXPIRIES[i] + alpha * (EXPIRIES[i + 1] - EXPIRIES[i])
        lo, hi = slice_w(surface, i, K), slice_w(surface, i + 1, K)
        d = surface.derivatives(K, t)
        np.testing.assert_allclose(d.w, (1 - alpha) * lo + alpha * hi, rtol=1e-13)
        np.testing.assert_allclose(d.dw_dt, (hi - lo) / (EXPIRIES[i + 1] - EXPIRIES[i]), rtol=1e-12)


def test_constant_implied_vol_before_first_and_after_last_expiry():
    surface = skew_surface()
    first, last = EXPIRIES[0], EXPIRIES[-1]
    for t in (1e-4, 0.03, 0.0999):
        np.testing.assert_allclose(surface.implied_vol(K, t), surface.implied_vol(K, first), rtol=1e-13)
        np.testing.assert_allclose(surface.derivatives(K, t).dw_dt, slice_w(surface, 0, K) / first, rtol=1e-13)
    for t in (2.0, 2.5, 10.0):
        np.testing.assert_allclose(surface.implied_vol(K, t), surface.implied_vol(K, last), rtol=1e-13)
        np.testing.assert_allclose(surface.derivatives(K, t).dw_dt, slice_w(surface, 4, K) / last, rtol=1e-13)


def test_time_zero_and_negative_times():
    surface = skew_surface()
    np.testing.assert_array_equal(surface.total_variance(K, 0.0), 0.0)
    np.testing.assert_array_equal(surface.total_variance(K, -1.0), 0.0)
    np.testing.assert_allclose(surface.implied_vol(K, 0.0), surface.implied_vol(K, EXPIRIES[0]), rtol=1e-14)
    assert np.all(np.isfinite(surface.implied_vol(K, -1.0)))


def test_one_sided_time_derivative_at_an_expiry():
    surface = skew_surface()
    i = 2
    right = surface.derivatives(K, EXPIRIES[i]).dw_dt
    left = surface.derivatives(K, EXPIRIES[i], side="left").dw_dt
    w = [slice_w(surface, j, K) for j in (i - 1, i, i + 1)]
    np.testing.assert_allclose(left, (w[1] - w[0]) / (EXPIRIES[i] - EXPIRIES[i - 1]), rtol=1e-12)
    np.testing.assert_allclose(right, (w[2] - w[1]) / (EXPIRIES[i + 1] - EXPIRIES[i]), rtol=1e-12)
    with pytest.raises(InputError):
        interpolation_weights(times=1.0, expiries=EXPIRIES, side="middle")


def ssvi(expiries, vol, rho, eta, gamma):
    theta = vol ** 2 * np.asarray(expiries)
    phi = eta * theta ** -gamma * (1 + theta) ** (gamma - 1)
    return VolSurface.from_svi(expiries=expiries, a=theta / 2 * (1 - rho ** 2), b=theta * phi / 2, rho=rho,
                               m=-rho / phi, sigma=np.sqrt(1 - rho ** 2) / phi)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.05, 3.0), min_size=1, max_size=6, unique=True).map(sorted)
       .filter(lambda t: len(t) < 2 or np.min(np.diff(t)) > 1e-3),
       st.floats(0.1, 0.6), st.floats(-0.9, 0.9), st.floats(0.3, 1.9), st.floats(0.1, 0.5))
def test_calendar_monotonicity_is_preserved_between_and_beyond_slices(expiries, vol, rho, eta, gamma):
    """Calendar-free slices (SSVI, Gatheral & Jacquier 2014 Thm 4.1) give w non-decreasing in t and
    dw/dt >= 0 at every k, including before the first and after the last expiry."""
    surface = ssvi(expiries, vol, rho, eta / (1 + abs(rho)), gamma)
    k = np.linspace(-2.0, 2.0, 41)
    grid = np.linspace(0.0, 4.0, 161)
    d = surface.derivatives(k[:, None], grid[None, :])
    at = surface.derivatives(k[:, None], np.asarray(expiries)[None, :])
    times = np.concatenate([grid, expiries])
    order = np.argsort(times, kind="stable")
    w = np.concatenate([np.asarray(d.w), np.asarray(at.w)], axis=1)[:, order]
    assert np.all(np.diff(w, axis=1) >= -1e-15)
    assert np.all(np.asarray(d.dw_dt) >= 0.0) and np.all(np.asarray(at.dw_dt) >= 0.0)
    left = surface.derivatives(k[:, None], np.asarray(expiries)[None, :], side="left").dw_dt
    assert np.all(np.asarray(left) >= 0.0)


@pytest.mark.parametrize("t", [0.05, 0.17, 0.3, 0.75, 1.5, 3.0])
def test_derivatives_match_autodiff(t):
    surface = skew_surface()
    k = jnp.asarray(K)
    d = surface.derivatives(k, t)
    w_of = lambda kk, tt: surface.total_variance(kk, tt)  # noqa: E731
    dk = jax.vmap(jax.grad(w_of, argnums=0), in_axes=(0, None))(k, t)
    d2k = jax.vmap(jax.grad(jax.grad(w_of, argnums=0), argnums=0), in_axes=(0, None))(k, t)
    dt = jax.vmap(jax.grad(w_of, argnums=1), in_axes=(0, None))(k, t)
    np.testing.assert_allclose(d.dw_dk, dk, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d.d2w_dk2, d2k, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d.dw_dt, dt, rtol=1e-12, atol=1e-14)


def test_broadcasting_and_float64():
    surface = skew_surface()
    d = surface.derivatives(K[:, None], np.array([0.2, 0.7, 3.0])[None, :])
    for field in d:
        assert field.shape == (K.size, 3) and field.dtype == jnp.float64
    assert surface.implied_vol(0.0, 1).dtype == jnp.float64
    assert surface.slice_total_variance(K).shape == (K.size, EXPIRIES.size)
    np.testing.assert_allclose(surface.implied_vol(0.0, EXPIRIES), 0.2, rtol=1e-14)


def test_pytree_jit_grad_and_no_recompilation():
    surface = skew_surface()
    traces = []

    @jax.jit
    def atm_vol(s, t):
        traces.append(1)
        return s.implied_vol(0.1, t)

    v1 = atm_vol(surface, 0.6)
    bumped = jax.tree.map(lambda x: x * 1.01, surface)
    v2 = atm_vol(bumped, 0.6)
    assert len(traces) == 1 and v1 != v2
    assert isinstance(bumped, VolSurface) and isinstance(bumped.params, SVIParams)
    # gradient with respect to every SVI parameter (and the expiries) vs central differences
    grads = jax.grad(lambda s: s.total_variance(0.1, 0.6))(surface)
    h = 1e-6
    for name in ("a", "b", "rho", "m", "sigma"):
        for i in range(len(EXPIRIES)):
            def bump(sign):
                values = np.asarray(getattr(surface.params, name)).copy()
                values[i] += sign * h
                params = SVIParams(**{n: (values if n == name else getattr(surface.params, n))
                                      for n in ("a", "b", "rho", "m", "sigma")})
                return float(VolSurface(expiries=surface.expiries, params=params).total_variance(0.1, 0.6))
            fd = (bump(1) - bump(-1)) / (2 * h)
            assert float(getattr(grads.params, name)[i]) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    assert jax.vmap(lambda t: surface.total_variance(0.0, t))(jnp.asarray([0.2, 0.4])).shape == (2,)


def test_with_slice_and_slice_params():
    surface = skew_surface()
    p = surface.slice_params(1)
    replaced = surface.with_slice(1, SVIParams(a=p.a + 0.01, b=p.b, rho=p.rho, m=p.m, sigma=p.sigma))
    np.testing.assert_allclose(replaced.total_variance(K, EXPIRIES[1]), slice_w(surface, 1, K) + 0.01, rtol=1e-13)
    np.testing.assert_array_equal(replaced.total_variance(K, EXPIRIES[3]), surface.total_variance(K, EXPIRIES[3]))
    assert surface.n_slices == len(EXPIRIES)


def test_snapshot_uses_forward_log_moneyness():
    surface = skew_surface()
    market = MarketSnapshot(spot=jnp.asarray(100.0), rate=ZeroCurve.flat(0.03), dividend=ZeroCurve.flat(0.01),
                            surface=surface)
    strikes, t = np.array([80.0, 100.0, 120.0]), 0.75
    k = np.log(strikes / (100.0 * np.exp(0.02 * t)))
    np.testing.assert_allclose(market.implied_vol(strikes, t), surface.implied_vol(k, t), rtol=1e-14)


@pytest.mark.parametrize("changes, field", [
    (dict(expiries=[0.5, 0.25]), "surface.expiries"),
    (dict(expiries=[0.0, 0.25]), "surface.expiries"),
    (dict(expiries=[[0.25, 0.5]]), "surface.expiries"),
    (dict(sigma=[0.1, 0.0]), "surface.params.sigma"),
    (dict(rho=[0.5, 1.0]), "surface.params.rho"),
    (dict(b=[-0.1, 0.1]), "surface.params.b"),
    (dict(a=[0.01, np.nan]), "surface.params.a"),
])
def test_invalid_surfaces_are_rejected(changes, field):
    values = dict(expiries=[0.25, 0.5], a=[0.01, 0.02], b=[0.1, 0.1], rho=[-0.5, -0.5], m=[0.0, 0.0],
                  sigma=[0.1, 0.1])
    values.update(changes)
    with pytest.raises(InputError) as error:
        if np.ndim(values["expiries"]) == 2:
            VolSurface(expiries=jnp.asarray(values["expiries"]),
                       params=SVIParams(*(jnp.asarray(values[n]) for n in ("a", "b", "rho", "m", "sigma"))))
        else:
            VolSurface.from_svi(**values)
    assert error.value.field == field


def test_parameter_shape_must_match_expiries():
    with pytest.raises(InputError, match="shape"):
        VolSurface(expiries=jnp.asarray([0.25, 0.5]), params=SVIParams(*(jnp.asarray([0.1]) for _ in range(5))))


def test_shifted_surface_derivatives_match_autodiff():
    from shoals.market.surface import ShiftedSurface

    t = np.array([0.25, 0.5, 1.0, 2.0])
    base = VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(t))
    shifted = ShiftedSurface(base=base, shift=0.013)
    k, times = jnp.array([-0.4, -0.1, 0.0, 0.3]), jnp.array([0.3, 0.7, 1.2, 2.5])
    d = shifted.derivatives(k, times)
    w = shifted.total_variance
    np.testing.assert_allclose(d.dw_dk, jax.vmap(jax.grad(w, 0))(k, times), atol=1e-14)
    np.testing.assert_allclose(d.d2w_dk2, jax.vmap(jax.grad(jax.grad(w, 0), 0))(k, times), atol=1e-13)
    np.testing.assert_allclose(d.dw_dt, jax.vmap(jax.grad(w, 1))(k, times), atol=1e-14)
    np.testing.assert_allclose(jnp.sqrt(d.w / times), base.implied_vol(k, times) + 0.013, rtol=1e-14)

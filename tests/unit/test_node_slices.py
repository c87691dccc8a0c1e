"""NodeSlices (the market file's "slices" form): the value rule (linear between nodes, linear extrapolation),
the node-scale derivatives vs a sampled SVI smile (second order in the spacing), exact padding of ragged
slices, gradients with respect to the w nodes, validation, and a VolSurface of node slices against the SVI
surface it was sampled from (at and between expiries, jit/grad, float64)."""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shoals  # noqa: F401  (float64)
from shoals.errors import InputError
from shoals.market.slices import NodeSlices
from shoals.market.surface import VolSurface
from shoals.market.svi import SVIParams

EXPIRIES = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
SVI = dict(a=0.02 * EXPIRIES, b=0.1 * np.sqrt(EXPIRIES), rho=-0.5, m=0.0, sigma=0.2 * np.sqrt(EXPIRIES))
K_RANGE = (-3.0, 3.0)


@lru_cache(maxsize=None)
def svi_surface():
    return VolSurface.from_svi(expiries=EXPIRIES, **SVI)


@lru_cache(maxsize=None)
def sampled_surface(nodes=400, k_range=K_RANGE):
    """The SVI surface sampled at ``nodes`` equally spaced k per slice."""
    k = np.linspace(*k_range, nodes)
    w = np.asarray(svi_surface().slice_total_variance(k)).T
    return VolSurface.from_nodes(expiries=EXPIRIES, ks=[k] * EXPIRIES.size, ws=list(w))


def one_slice(k, w):
    return NodeSlices(k=jnp.asarray([k], dtype=jnp.float64), w=jnp.asarray([w], dtype=jnp.float64))


def test_value_is_linear_between_nodes_and_extrapolated_linearly():
    k = np.array([-1.0, -0.2, 0.0, 0.5, 1.5])
    w = np.array([0.30, 0.08, 0.05, 0.07, 0.20])
    slices = one_slice(k, w)
    np.testing.assert_allclose(slices.total_variance(k[:, None])[:, 0], w, rtol=1e-15)
    middle = 0.5 * (k[:-1] + k[1:])
    np.testing.assert_allclose(slices.total_variance(middle[:, None])[:, 0], 0.5 * (w[:-1] + w[1:]), rtol=1e-15)
    left, right = (w[1] - w[0]) / (k[1] - k[0]), (w[-1] - w[-2]) / (k[-1] - k[-2])
    d = slices.derivatives(np.array([-3.0, 4.0])[:, None])
    np.testing.assert_allclose(d.w[:, 0], [w[0] + left * (-2.0), w[-1] + right * 2.5], rtol=1e-14)
    np.testing.assert_allclose(d.dw[:, 0], [left, right], rtol=1e-14)
    np.testing.assert_array_equal(d.d2w[:, 0], 0.0)


def test_node_derivatives_are_the_three_point_parabola():
    k = np.array([-1.0, -0.2, 0.0, 0.5, 1.5])
    w = 0.04 + 0.1 * k + 0.3 * k ** 2          # a parabola: the rule is exact at interior nodes
    d = one_slice(k, w).derivatives(k[1:-1, None])
    np.testing.assert_allclose(d.dw[:, 0], 0.1 + 0.6 * k[1:-1], rtol=1e-13)
    np.testing.assert_allclose(d.d2w[:, 0], 0.6, rtol=1e-12)


def _errors(nodes):
    """Largest errors (3, slices) of w, w', w'' of the sampled surface vs SVI on |k| <= 1 (off the nodes)."""
    sampled, exact = sampled_surface(nodes).params, svi_surface().params
    points = np.linspace(-1.0, 1.0, 1001)[:, None] + 1e-3
    got, want = sampled.derivatives(points), exact.derivatives(points)
    return np.stack([np.max(np.abs(np.asarray(g) - np.asarray(e)), axis=0) for g, e in zip(got, want)])


def test_derivatives_converge_to_svi_at_second_order():
    """Measured at 401 nodes over [-3, 3] (h = 0.015): w 1.4e-5, w' 4.2e-4 (T = 0.1) to 9.9e-5 (T = 2),
    w'' 1.5e-2 (T = 0.1, where h / sigma_SVI = 0.24) to 8.7e-4 (T = 2); halving h divides them by 3.6-4.1."""
    coarse, fine = _errors(401), _errors(801)
    assert np.all(coarse / fine > 3.5)
    assert np.all(coarse < np.array([[2e-5], [5e-4], [2e-2]]))
    assert np.all(coarse[:, -1] < [2e-5, 1.5e-4, 1e-3])


def test_padding_of_ragged_slices_is_exact():
    k_short, k_long = np.linspace(-1.0, 1.0, 7), np.linspace(-1.5, 1.2, 12)
    w_short, w_long = 0.04 + 0.05 * k_short ** 2 - 0.01 * k_short, 0.08 + 0.03 * k_long ** 2
    padded = NodeSlices.from_lists([k_short, k_long], [w_short, w_long])
    assert padded.k.shape == (2, 12) and padded.k.dtype == jnp.float64
    points = np.linspace(-3.0, 3.0, 241)
    alone = one_slice(k_short, w_short).derivatives(points[:, None])
    together = padded.derivatives_at(points, 0)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b, a[:, 0], rtol=1e-12, atol=1e-14)


def test_derivatives_at_evaluates_the_indexed_slice():
    """The one-search gather of derivatives_at against every slice evaluated then indexed, at points between
    nodes, on nodes and beyond both ends, on ragged (padded) slices."""
    rng = np.random.default_rng(5)
    ks = [np.sort(rng.uniform(-2.0, 2.0, size)) for size in (9, 30, 17)]
    ws = [0.05 + 0.1 * k ** 2 + 0.01 * rng.standard_normal(k.size) ** 2 for k in ks]
    slices = NodeSlices.from_lists(ks, ws)
    points = np.concatenate([rng.uniform(-4.0, 4.0, 200), ks[0], ks[1], ks[2], [-2.5, 2.5]])
    index = rng.integers(0, 3, points.size)
    got = slices.derivatives_at(points, index)
    every = slices.derivatives(points[:, None])
    for g, e in zip(got, every):
        np.testing.assert_allclose(g, np.asarray(e)[np.arange(points.size), index], rtol=1e-12, atol=1e-12)


def test_gradient_flows_to_every_w_node():
    slices = sampled_surface(nodes=200).params
    points = jnp.linspace(-0.5, 0.5, 7)

    def curvature(w):
        return jnp.sum(NodeSlices(k=slices.k, w=w).derivatives_at(points, 2).d2w)

    gradient = jax.grad(curvature)(slices.w)
    assert gradient.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(gradient)[[0, 1, 3, 4]], 0.0)
    direction = jax.random.normal(jax.random.PRNGKey(3), slices.w.shape, dtype=jnp.float64)
    step = 1e-6
    bumped = (curvature(slices.w + step * direction) - curvature(slices.w - step * direction)) / (2 * step)
    assert float(jnp.sum(gradient * direction)) == pytest.approx(float(bumped), rel=1e-6)


@pytest.mark.parametrize("k, w, field", [
    ([[0.0, 0.1, 0.1, 0.3]], [[0.1, 0.1, 0.1, 0.1]], "slices[0].k"),
    ([[0.0, 0.1, 0.2], [0.0, 0.3, 0.2]], [[0.1] * 3, [0.1] * 3], "slices[1].k"),
    ([[0.0, 0.1, 0.2], [0.0, 0.1, 0.2]], [[0.1] * 3, [0.1, np.nan, 0.1]], "slices[1].w"),
    ([[0.0, 0.1, 0.2]], [[0.1, 0.1]], "slices"),
    ([[0.0, 0.1]], [[0.1, 0.1]], "slices"),
])
def test_invalid_nodes_are_rejected(k, w, field):
    with pytest.raises(InputError) as error:
        NodeSlices(k=jnp.asarray(k), w=jnp.asarray(w))
    assert error.value.field == field


def test_surface_needs_one_slice_per_expiry():
    k = np.linspace(-1.0, 1.0, 5)
    with pytest.raises(InputError, match="one slice per expiry") as error:
        VolSurface.from_nodes(expiries=[0.5, 1.0], ks=[k], ws=[0.04 + 0.0 * k])
    assert error.value.field == "surface.params"


def test_shift_total_variance_is_parallel_for_both_models():
    deltas = np.array([0.0, 0.01, 0.0, -0.002, 0.003])
    k = np.linspace(-4.0, 4.0, 17)[:, None]     # beyond the nodes too
    for surface in (svi_surface(), sampled_surface()):
        moved = surface.params.shift_total_variance(deltas)
        assert type(moved) is type(surface.params)
        np.testing.assert_allclose(moved.total_variance(k) - surface.params.total_variance(k),
                                   np.broadcast_to(deltas, (17, 5)), atol=1e-15)
        np.testing.assert_allclose(moved.derivatives(k).d2w, surface.params.derivatives(k).d2w, atol=1e-12)


def test_svi_derivatives_at_gathers_the_slice():
    params = svi_surface().params
    k = np.linspace(-1.0, 1.0, 9)
    index = np.array([0, 4, 2, 2, 1, 3, 0, 4, 1])
    got = params.derivatives_at(k, index)
    every = params.derivatives(k[:, None])
    for g, e in zip(got, every):
        np.testing.assert_allclose(g, np.asarray(e)[np.arange(9), index], rtol=1e-15)
    assert isinstance(params, SVIParams)


@pytest.mark.parametrize("t", [0.05, 0.1, 0.18, 0.25, 0.7, 1.0, 1.6, 2.0, 3.0])
def test_surface_of_nodes_matches_the_svi_surface_it_samples(t):
    k = np.linspace(-1.0, 1.0, 101) + 1e-3
    nodes, svi = sampled_surface().derivatives(k, t), svi_surface().derivatives(k, t)
    scale = max(1.0, t / EXPIRIES[-1])           # w = w_n t / T_n beyond the last expiry
    for name, tolerance in (("w", 2e-5 * scale), ("dw_dk", 5e-4 * scale), ("d2w_dk2", 2e-2 * scale), ("dw_dt", 2e-4)):
        np.testing.assert_allclose(getattr(nodes, name), getattr(svi, name), rtol=0, atol=tolerance, err_msg=name)
    left = sampled_surface().derivatives(k, t, side="left").dw_dt
    np.testing.assert_allclose(left, svi_surface().derivatives(k, t, side="left").dw_dt, atol=2e-4)


def test_surface_of_nodes_is_a_jit_and_grad_safe_pytree():
    surface = sampled_surface(nodes=200)
    k, t = jnp.linspace(-0.5, 0.5, 11), jnp.full(11, 0.7)
    compiled = jax.jit(lambda s: s.implied_vol(k, t))
    first = compiled(surface)
    assert first.dtype == jnp.float64
    np.testing.assert_allclose(first, surface.implied_vol(k, t), rtol=1e-15)
    compiled(VolSurface(expiries=surface.expiries, params=surface.params.shift_total_variance(jnp.full(5, 0.001))))
    assert compiled._cache_size() == 1
    grads = jax.grad(lambda s: jnp.sum(s.total_variance(k, t)))(surface)
    assert isinstance(grads.params, NodeSlices)
    # w(k, 0.7) = 0.6 w_2 + 0.4 w_3 (T = 0.5, 1.0): the w-gradient of slices 2 and 3 sums to 0.6 and 0.4 per point
    np.testing.assert_allclose(np.asarray(grads.params.w).sum(axis=1), [0.0, 0.0, 0.6 * 11, 0.4 * 11, 0.0],
                               atol=1e-12)

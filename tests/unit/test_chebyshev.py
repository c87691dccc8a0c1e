"""Chebyshev proxies: exactness on polynomials, spectral derivatives, shapes, I/O, cells, TT, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.errors import InputError
from shoals.kernels import chebyshev as kernel
from shoals.methods.chebyshev import (
    ChebyshevProxy,
    ChebyshevTT,
    PiecewiseChebyshevProxy,
)

RNG = np.random.default_rng(20240601)


def uniform(domain, count, rng=RNG):
    box = np.asarray(domain, dtype=float)
    return box[:, 0] + rng.random((count, len(box))) * (box[:, 1] - box[:, 0])


def polynomial_3d(p):
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    return 1.5 - x + 2 * x ** 3 * y - 0.5 * y ** 4 * z ** 2 + x * y * z + 0.1 * x ** 3 * y ** 4 * z ** 2


def test_lobatto_grid_and_coefficients_of_a_chebyshev_polynomial():
    t = kernel.lobatto_points(7)
    assert t[0] == -1.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(t, -t[::-1], atol=0)
    values = np.cos(4 * np.arccos(t))                         # T_4 on the nodes
    expected = np.zeros(7)
    expected[4] = 1.0
    np.testing.assert_allclose(kernel.coefficients_from_values(values), expected, atol=1e-15)


def test_polynomials_of_degree_below_the_node_count_are_reproduced_with_their_derivatives():
    domain = [(-1.0, 2.0), (0.5, 1.5), (-2.0, 1.0)]
    proxy = ChebyshevProxy.build(polynomial_3d, domain, (4, 5, 3), names=("x", "y", "z"))
    points = uniform(domain, 500)
    x, y, z = points.T
    exact = {
        "value": polynomial_3d(points),
        "x": -1 + 6 * x ** 2 * y + y * z + 0.3 * x ** 2 * y ** 4 * z ** 2,
        ("x", "x"): 12 * x * y + 0.6 * x * y ** 4 * z ** 2,
        ("x", "y"): 6 * x ** 2 + z + 1.2 * x ** 2 * y ** 3 * z ** 2,
        ("y", "z", "z"): -4 * y ** 3 + 0.8 * x ** 3 * y ** 3,
        (1, 4, 2): 0.1 * 3 * 24 * 2 * x ** 2,
    }
    got = proxy.greeks(points, list(exact))
    for request, reference in exact.items():
        np.testing.assert_allclose(got[request], reference, atol=1e-10 * (1 + np.abs(reference).max()),
                                   err_msg=str(request))


def test_spectral_derivatives_of_smooth_functions():
    domain = [(0.0, 1.0), (-1.0, 2.0), (0.2, 0.9)]

    def f(p):
        return np.exp(p[:, 0]) * np.sin(2 * p[:, 1]) * np.cos(p[:, 2]) + p[:, 0] * p[:, 2] ** 2

    proxy = ChebyshevProxy.build(f, domain, (18, 26, 18), names=("a", "b", "c"), compression=0.0)
    points = uniform(domain, 400)
    a, b, c = points.T
    e, s, co, si, cb = np.exp(a), np.sin(2 * b), np.cos(c), np.sin(c), np.cos(2 * b)
    cases = {
        "value": f(points),
        "a": e * s * co + c ** 2,
        "b": 2 * e * cb * co,
        ("b", "b"): -4 * e * s * co,
        ("a", "c"): -e * s * si + 2 * c,
        ("c", "c"): -e * s * co + 2 * a,
        ("a", "b", "c"): -2 * e * cb * si,
    }
    got = proxy.greeks(points, list(cases))
    tolerances = {"value": 1e-12, "a": 1e-10, "b": 1e-10, ("b", "b"): 1e-8, ("a", "c"): 1e-9,
                  ("c", "c"): 1e-8, ("a", "b", "c"): 1e-8}
    for request, reference in cases.items():
        np.testing.assert_allclose(got[request], reference, atol=tolerances[request], err_msg=str(request))
    single = proxy.derivative(points[3], ("a", "c"))
    assert np.ndim(single) == 0 and single == pytest.approx(cases[("a", "c")][3], abs=1e-9)


def test_dense_kernel_is_traceable_and_agrees_with_autodiff():
    domain = [(0.0, 1.0), (1.0, 3.0)]
    proxy = ChebyshevProxy.build(lambda p: np.sin(p[:, 0] * p[:, 1]), domain, 15, compression=0.0)
    lower, upper, coefficients = (jnp.asarray(a) for a in (proxy.lower, proxy.upper, proxy.coefficients))

    def value(point):
        return kernel.evaluate(coefficients, lower, upper, point[None, :])[0, 0]

    point = jnp.array([0.3, 2.2])
    gradient = jax.jit(jax.grad(value))(point)
    reference = proxy.greeks(np.asarray(point), [(1, 0), (0, 1)])
    np.testing.assert_allclose(gradient, [reference[(1, 0)], reference[(0, 1)]], atol=1e-12)
    assert gradient.dtype == jnp.float64
    leaves, tree = jax.tree_util.tree_flatten(proxy)
    rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
    assert rebuilt.names == proxy.names and rebuilt.value(np.asarray(point)) == proxy.value(np.asarray(point))


def test_compressed_fast_path_stays_within_its_rigorous_bound():
    domain = [(0.5, 1.5)] * 4

    def f(p):
        return 1.0 / (1.0 + np.sum(p ** 2, axis=1)) + np.exp(-p[:, 0] * p[:, 3])

    exact = ChebyshevProxy.build(f, domain, 12, compression=0.0)
    fast = ChebyshevProxy(exact.lower, exact.upper, exact.coefficients, exact.names, compression=1.0)
    compressed = fast._compressed()
    assert compressed.core.size < exact.coefficients.size
    points = uniform(domain, 3000)
    difference = np.abs(fast.value(points) - exact.value(points)).max()
    assert difference <= compressed.bound + 1e-14
    estimate = float(kernel.error_estimate_per_dimension(exact.coefficients).sum())
    assert compressed.bound <= estimate
    dense = np.asarray(kernel.evaluate(exact.coefficients, exact.lower, exact.upper, points))[:, 0]
    np.testing.assert_allclose(exact.value(points), dense, atol=1e-13)


@pytest.mark.parametrize("dimension", [1, 6])
def test_shapes_in_one_and_six_dimensions(dimension):
    domain = [(-1.0, 1.0 + i) for i in range(dimension)]

    def f(p):
        return np.prod(1.0 + p, axis=1) + p[:, 0] ** 3

    proxy = ChebyshevProxy.build(f, domain, 4)
    assert proxy.nodes == (4,) * dimension and proxy.dimension == dimension
    points = uniform(domain, 1000)                         # > one chunk: lax.map path
    values = proxy.value(points)
    assert values.shape == (1000,) and values.dtype == np.float64
    np.testing.assert_allclose(values, f(points), atol=1e-11)
    assert np.ndim(proxy.value(points[0])) == 0
    np.testing.assert_allclose(proxy.value(points[:5]), values[:5], rtol=0, atol=1e-13)
    first = proxy.derivative(points, (1,) + (0,) * (dimension - 1))
    np.testing.assert_allclose(first, np.prod(1.0 + points[:, 1:], axis=1) + 3 * points[:, 0] ** 2,
                               atol=1e-10)


def test_map_batches_fans_out_the_node_evaluations():
    calls = []

    def fan_out(function, points):
        calls.append(len(points))
        return np.concatenate([function(chunk) for chunk in np.array_split(points, 3)])

    domain = [(0.0, 1.0), (0.0, 2.0)]
    one = ChebyshevProxy.build(lambda p: np.cos(p[:, 0] + p[:, 1]), domain, (7, 9))
    three = ChebyshevProxy.build(lambda p: np.cos(p[:, 0] + p[:, 1]), domain, (7, 9), map_batches=fan_out)
    assert calls == [63]
    np.testing.assert_array_equal(one.coefficients, three.coefficients)


def test_save_and_load_round_trip(tmp_path):
    domain = [(80.0, 120.0), (0.1, 0.4)]
    proxy = ChebyshevProxy.build(lambda p: np.log(p[:, 0]) * p[:, 1], domain, (9, 6), names=("S", "vol"))
    proxy.save(tmp_path / "proxy.npz")
    loaded = ChebyshevProxy.load(tmp_path / "proxy.npz")
    assert loaded.names == ("S", "vol") and loaded.nodes == (9, 6)
    np.testing.assert_array_equal(loaded.coefficients, proxy.coefficients)
    points = uniform(domain, 50)
    np.testing.assert_array_equal(loaded.value(points), proxy.value(points))

    piecewise = PiecewiseChebyshevProxy.build(lambda p: np.maximum(p[:, 0] - 100.0, 0.0) * p[:, 1], domain,
                                              (5, 4), splits=[[100.0], []], names=("S", "vol"))
    piecewise.save(tmp_path / "cells.npz")
    again = PiecewiseChebyshevProxy.load(tmp_path / "cells.npz")
    np.testing.assert_array_equal(again.value(points), piecewise.value(points))


def test_malformed_files_raise_input_errors(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="not a readable"):
        ChebyshevProxy.load(garbage)
    proxy = ChebyshevProxy.build(lambda p: p[:, 0] ** 2, [(0.0, 1.0)], 5)
    proxy.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(tmp_path / "future.npz", **dict(arrays, metadata=np.asarray(
        str(arrays["metadata"]).replace('"version": 1', '"version": 99'))))
    with pytest.raises(InputError, match="version"):
        ChebyshevProxy.load(tmp_path / "future.npz")
    np.savez(tmp_path / "short.npz", metadata=arrays["metadata"], lower=arrays["lower"], upper=arrays["upper"])
    with pytest.raises(InputError, match="coefficients"):
        ChebyshevProxy.load(tmp_path / "short.npz")
    with pytest.raises(InputError, match="PiecewiseChebyshevProxy"):
        PiecewiseChebyshevProxy.load(tmp_path / "good.npz")


def test_piecewise_proxy_is_exact_with_the_split_at_the_kink():
    domain = [(80.0, 120.0), (0.0, 1.0)]

    def kinked(p):
        return np.maximum(p[:, 0] - 100.0, 0.0) * (1.0 + p[:, 1] ** 2) + np.abs(p[:, 1] - 0.25)

    split = PiecewiseChebyshevProxy.build(kinked, domain, (5, 6), splits=[[100.0], [0.25]])
    assert len(split.pieces) == 4
    smooth = ChebyshevProxy.build(kinked, domain, (41, 41))
    points = np.concatenate([uniform(domain, 4000), [[100.0, 0.25], [80.0, 0.0], [120.0, 1.0]]])
    error_split = np.abs(split.value(points) - kinked(points)).max()
    error_smooth = np.abs(smooth.value(points) - kinked(points)).max()
    assert error_split < 1e-10
    assert error_smooth > 1e-2                                # O(1/n) without the split
    delta = split.derivative(points[:-3], (1, 0))
    np.testing.assert_allclose(delta, np.where(points[:-3, 0] >= 100.0, 1.0 + points[:-3, 1] ** 2, 0.0),
                               atol=1e-9)
    assert split.error_estimate() < 1e-10 < smooth.error_estimate()


def test_tensor_train_agrees_with_the_full_tensor():
    domain = [(0.0, 1.0)] * 4

    def separable(p):
        return np.exp(p.sum(axis=1))

    rank_one = ChebyshevTT.build(separable, domain, 10, rank=1, sweeps=1)
    points = uniform(domain, 2000)
    np.testing.assert_allclose(rank_one.value(points), separable(points), rtol=1e-9)
    assert rank_one.evaluations < 10 ** 4 / 20

    def coupled(p):
        return 1.0 / (1.0 + p[:, 0] * p[:, 1] + p[:, 2] ** 2 + 0.5 * p[:, 1] * p[:, 3])

    full = ChebyshevProxy.build(coupled, domain, 14)
    tt = ChebyshevTT.build(coupled, domain, 14, rank=10, sweeps=2)
    assert max(tt.ranks) <= 10 and tt.evaluations < 14 ** 4 / 3
    np.testing.assert_allclose(tt.value(points), full.value(points), atol=1e-4)
    np.testing.assert_allclose(tt.derivative(points, (1, 0, 0, 1)), full.derivative(points, (1, 0, 0, 1)),
                               atol=1e-3)
    np.testing.assert_allclose(tt.to_tensor().coefficients, full.coefficients, atol=1e-4)


def test_error_estimate_tracks_the_true_error():
    domain = [(-1.0, 1.0), (0.0, 2.0)]

    def f(p):
        return 1.0 / (1.0 + 4.0 * p[:, 0] ** 2) + np.exp(p[:, 0] * p[:, 1])

    points = uniform(domain, 4000)
    previous = np.inf
    for nodes in (8, 12, 16, 24, 32):
        proxy = ChebyshevProxy.build(f, domain, nodes, compression=0.0)
        true = np.abs(proxy.value(points) - f(points)).max()
        estimate = proxy.error_estimate()
        assert 0.1 * true <= estimate <= 30.0 * true, (nodes, true, estimate)
        assert estimate < previous
        previous = estimate


def test_bad_input_raises_input_errors_naming_the_dimension():
    domain = [(80.0, 120.0), (0.1, 0.5)]
    proxy = ChebyshevProxy.build(lambda p: p[:, 0] * p[:, 1], domain, 5, names=("spot", "vol"))
    with pytest.raises(InputError, match="spot") as outside:
        proxy.value([[121.0, 0.2]])
    assert outside.value.row == 0 and "clamp" in str(outside.value)
    clamped = proxy.value([[121.0, 0.6]], outside="clamp")
    assert clamped[0] == pytest.approx(120.0 * 0.5, abs=1e-12)
    with pytest.raises(InputError, match="vol"):
        proxy.value([[100.0, 0.2], [100.0, np.nan]])
    with pytest.raises(InputError, match="shape"):
        proxy.value(np.ones((3, 3)))
    with pytest.raises(InputError, match="unknown dimension"):
        proxy.greeks([[100.0, 0.2]], ["rate"])
    with pytest.raises(InputError, match="lower"):
        ChebyshevProxy.build(lambda p: p[:, 0], [(1.0, 1.0)], 5)
    with pytest.raises(InputError, match="nodes"):
        ChebyshevProxy.build(lambda p: p[:, 0], [(0.0, 1.0)], 1)
    with pytest.raises(InputError, match="non-finite"):
        ChebyshevProxy.build(lambda p: np.where(p[:, 0] > 0.5, np.nan, p[:, 0]), [(0.0, 1.0)], 5)
    with pytest.raises(InputError, match="ChebyshevTT"):
        ChebyshevProxy.build(lambda p: p[:, 0], [(0.0, 1.0)] * 7, 2)
    with pytest.raises(InputError, match="strictly inside"):
        PiecewiseChebyshevProxy.build(lambda p: p[:, 0], domain, 3, splits=[[130.0], []])

"""Chebyshev kernel internals: recurrence bases and their derivatives, evaluation plans."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import shoals  # noqa: F401  (enables float64)
from shoals.kernels import chebyshev as kernel


def test_recurrence_bases_match_the_trigonometric_form_and_its_derivatives_up_to_the_faces():
    t = np.concatenate([[-1.0, 1.0], np.random.default_rng(3).uniform(-1.0, 1.0, 50)])
    count = 23
    values, first, second = (np.asarray(b) for b in kernel.bases(jnp.asarray(t), count, 2))
    k = np.arange(count)
    np.testing.assert_allclose(values, np.cos(k * np.arccos(t)[:, None]), atol=1e-13)
    # T_k'(+-1) = (+-1)^{k+1} k^2 and T_k''(+-1) = (+-1)^k k^2 (k^2 - 1) / 3 (Trefethen, ATAP ch. 3)
    np.testing.assert_allclose(first[:2], [(-1.0) ** (k + 1) * k ** 2, k ** 2.0], rtol=1e-12)
    np.testing.assert_allclose(second[:2], [(-1.0) ** k * k ** 2 * (k ** 2 - 1) / 3, k ** 2 * (k ** 2 - 1) / 3.0],
                               rtol=1e-12)
    theta = np.arccos(t[2:])[:, None]                    # interior: T_k' = k sin(k theta) / sin(theta)
    np.testing.assert_allclose(first[2:], k * np.sin(k * theta) / np.sin(theta), atol=1e-9)
    derivative = jax.vmap(jax.jacfwd(lambda s: kernel.bases(s, count, 0)[0]))(jnp.asarray(t))
    np.testing.assert_allclose(derivative, first, atol=1e-10)                 # autodiff finite at the faces


def test_plan_contracts_the_shared_dimensions_first():
    shape = (11, 9, 7, 8, 5)
    outputs = ((0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (2, 0, 0, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1),
               (0, 0, 1, 0, 0))
    plan = kernel.make_plan(shape, outputs)
    assert sorted(plan.a_dims + plan.b_dims) == list(range(5))
    every_order = [kernel._tree_cost(outputs, shape, plan.a_dims, order)
                   for order in itertools.permutations(plan.b_dims)]
    assert kernel._tree_cost(outputs, shape, plan.a_dims, plan.b_dims) == min(every_order)
    price = kernel.make_plan(shape, outputs[:1])
    assert len(kernel._variants(outputs[:1], price.a_dims)) == 1

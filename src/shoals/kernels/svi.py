"""Raw SVI total-variance smile and its analytic k-derivatives, batched over slices and strikes.

    w(k) = a + b [rho (k - m) + sqrt((k - m)^2 + sigma^2)],   k = ln(K / F_T),  w = sigma_BS^2 T

References: Gatheral, "A parsimonious arbitrage-free implied volatility parameterization" (2004);
Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14 (2014) 59-71.
Validation: tests/unit/test_svi_kernel.py (derivatives vs autodiff, g(k) vs finite differences).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SVIDerivatives(NamedTuple):
    """w, dw/dk, d2w/dk2 at the given log-moneyness."""

    w: jnp.ndarray
    dw: jnp.ndarray
    d2w: jnp.ndarray


@jax.jit
def svi_total_variance(*, log_moneyness, a, b, rho, m, sigma):
    """Raw SVI total implied variance w(k), broadcast over all inputs."""
    km = jnp.asarray(log_moneyness, dtype=jnp.float64) - m
    return a + b * (rho * km + jnp.sqrt(km * km + sigma * sigma))


@jax.jit
def svi_derivatives(*, log_moneyness, a, b, rho, m, sigma) -> SVIDerivatives:
    """w, w' = b [rho + (k-m)/R], w'' = b sigma^2 / R^3 with R = sqrt((k-m)^2 + sigma^2)."""
    km = jnp.asarray(log_moneyness, dtype=jnp.float64) - m
    root = jnp.sqrt(km * km + sigma * sigma)
    w = a + b * (rho * km + root)
    return SVIDerivatives(w=w, dw=b * (rho + km / root), d2w=b * sigma * sigma / root ** 3)


@jax.jit
def butterfly_density(*, w, dw, d2w, log_moneyness):
    """Gatheral-Jacquier g(k); the smile is free of butterfly arbitrage iff g >= 0 (and w > 0).

    .. math:: g(k) = \\left(1 - \\frac{k w'}{2w}\\right)^2 - \\frac{w'^2}{4}\\left(\\frac{1}{w} + \\frac14\\right)
                     + \\frac{w''}{2}

    g(k) n(d_-(k)) / sqrt(w) is the risk-neutral density of ln(S_T/F_T) (Gatheral & Jacquier 2014, 2.1).
    """
    k = jnp.asarray(log_moneyness, dtype=jnp.float64)
    return (1.0 - k * dw / (2.0 * w)) ** 2 - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w

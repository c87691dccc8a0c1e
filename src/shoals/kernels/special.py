"""Special functions with full relative precision over the whole float64 range.

``jax.scipy.special.erfcx`` (JAX 0.10) returns 0 for arguments in [26.543, 26.642] and
``jax.scipy.special.log_ndtr`` loses about five digits below -20; the versions here patch both:

* erfcx(x) for x >= 25 by its asymptotic series
  erfcx(x) = 1/(x sqrt(pi)) sum_k (-1)^k (2k-1)!! / (2x^2)^k (terms below 1e-17 relative at x = 25);
* log N(x) = ln(erfcx(-x/sqrt2)/2) - x^2/2 for x < 0 (no underflow, relative accuracy of erfcx),
  ln N(x) for 0 <= x < 1 and log1p(-N(-x)) for x >= 1.

Validation: tests/unit/test_special.py (against scipy.special).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erfcx as _jax_erfcx

_INV_SQRT_PI = 0.5641895835477563
_SQRT_HALF = 0.7071067811865476
_ASYMPTOTIC_FROM = 25.0
_ASYMPTOTIC_TERMS = 9


def erfcx(x):
    """Scaled complementary error function e^{x^2} erfc(x), accurate for every float64 argument."""
    x = jnp.asarray(x, dtype=jnp.float64)
    large = x >= _ASYMPTOTIC_FROM
    z = jnp.where(large, x, _ASYMPTOTIC_FROM)
    inverse_two_z2 = 0.5 / (z * z)
    term = jnp.ones_like(z)
    total = jnp.ones_like(z)
    for k in range(1, _ASYMPTOTIC_TERMS):
        term = -term * (2 * k - 1) * inverse_two_z2
        total = total + term
    asymptotic = _INV_SQRT_PI / z * total
    return jnp.where(large, asymptotic, _jax_erfcx(jnp.where(large, 0.0, x)))


def normal_cdf(x):
    """N(x) = erfc(-x/sqrt2)/2: one erfc (``jax.scipy.special.ndtr`` evaluates erf and erfc and selects,
    4x slower on CPU); relative accuracy ~2e-15 in the left tail, absolute 1e-16 in the right."""
    return 0.5 * jax.lax.erfc(jnp.asarray(x, dtype=jnp.float64) * -_SQRT_HALF)


def log_ndtr(x):
    """ln N(x) of the standard normal distribution with relative accuracy for every float64 argument."""
    x = jnp.asarray(x, dtype=jnp.float64)
    negative = x < 0.0
    left = jnp.log(0.5 * erfcx(-jnp.where(negative, x, 0.0) * _SQRT_HALF)) - 0.5 * jnp.where(negative, x, 0.0) ** 2
    middle = jnp.log(normal_cdf(jnp.where(negative, 0.0, x)))
    right = jnp.log1p(-normal_cdf(-jnp.where(negative, 0.0, x)))
    return jnp.where(negative, left, jnp.where(x < 1.0, middle, right))

"""Zero-rate curves (rates and dividend yields) and forwards."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from shoals._pytree import register_validated_pytree
from shoals._validation import check_field


@register_validated_pytree
@dataclass(frozen=True)
class ZeroCurve:
    """Continuously compounded zero rates z(t) at ``times``; t z(t) is interpolated linearly in t, flat z
    before the first and after the last pillar (BOOK_SCHEMA.md: "interpolated linearly in t*r").

    A flat rate is ``ZeroCurve.flat(r)``.  ``discount(t) = exp(-t z(t))``.
    """

    times: jax.Array
    zero_rates: jax.Array

    def __post_init__(self):
        check_field("curve", "times", self.times, positive=True)
        check_field("curve", "zero_rates", self.zero_rates)
        times = np.asarray(self.times) if not isinstance(self.times, jax.core.Tracer) else None
        if times is not None and (times.ndim != 1 or np.any(np.diff(times) <= 0)):
            from shoals.errors import InputError

            raise InputError("curve times must be a strictly increasing 1-D list", field="curve.times",
                             value=times)

    @classmethod
    def flat(cls, rate: float) -> "ZeroCurve":
        return cls(times=jnp.asarray([1.0]), zero_rates=jnp.asarray([float(rate)]))

    def integral(self, t):
        """int_0^t z = t z(t) (linear in t between pillars; flat zero rate outside)."""
        return _integral(jnp.asarray(self.times, dtype=jnp.float64), jnp.asarray(self.zero_rates, dtype=jnp.float64),
                         jnp.asarray(t, dtype=jnp.float64))

    def zero_rate(self, t):
        t = jnp.asarray(t, dtype=jnp.float64)
        safe = jnp.where(t > 0.0, t, 1.0)
        return jnp.where(t > 0.0, self.integral(safe) / safe, jnp.asarray(self.zero_rates, dtype=jnp.float64)[0])

    def discount(self, t):
        return jnp.exp(-self.integral(t))


@jax.jit
def _integral(times, rates, t):
    """:meth:`ZeroCurve.integral` (one compiled program per shape, not one per operation)."""
    inside = jnp.interp(t, times, times * rates)
    return jnp.where(t < times[0], t * rates[0], jnp.where(t > times[-1], t * rates[-1], inside))

"""Checks of numeric fields that run on concrete values and stay silent under jit tracing."""

from __future__ import annotations

import jax
import numpy as np

from shoals.errors import InputError


def concrete(value, dtype=None):
    """``value`` as a NumPy array, or ``None`` when it is ``None`` or a JAX tracer (inside jit/grad/vmap);
    with a ``dtype``, also ``None`` when the value does not convert (a non-numeric pytree placeholder)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    if dtype is None:
        return np.asarray(value)
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        return None


def check_field(owner: str, name: str, value, *, positive=False, non_negative=False, finite=True):
    """Raise :class:`InputError` naming ``owner.name`` and the first bad element, if any."""
    array = concrete(value)
    if array is None or array.dtype == bool:
        return
    checks = []
    if finite:
        checks.append((~np.isfinite(array), "must be a finite number"))
    if positive:
        checks.append((~(array > 0), "must be > 0"))
    if non_negative:
        checks.append((~(array >= 0), "must be >= 0"))
    for bad, message in checks:
        if np.any(bad):
            index = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
            element = np.atleast_1d(array)[index]
            where = f" (element {index[0] if len(index) == 1 else index})" if array.ndim else ""
            raise InputError(f"{message}, got {element!r}{where}", field=f"{owner}.{name}", value=element)


def check_positive_unless(owner: str, name: str, value, unless, *, reason: str):
    """Raise :class:`InputError` naming ``owner.name`` if ``value`` is not > 0 where the mask ``unless`` is False."""
    array, exempt = concrete(value, np.float64), concrete(unless, bool)
    mask = None if exempt is None else ~exempt
    if array is None or mask is None:
        return
    array, mask = np.broadcast_arrays(np.atleast_1d(array), np.atleast_1d(mask))
    bad = mask & ~(array > 0)
    if np.any(bad):
        index = int(np.argmax(bad))
        raise InputError(f"{reason}, got {float(array[index])!r}" + (f" (element {index})" if array.size > 1 else ""),
                         field=f"{owner}.{name}", value=array[index])

"""Frozen dataclasses as JAX pytrees whose validation runs for users, not for JAX."""

from __future__ import annotations

from dataclasses import fields

import jax


def register_validated_pytree(cls):
    """Register a frozen dataclass as a JAX pytree whose unflattening bypasses ``__init__``.

    Validation in ``__post_init__`` then runs when a user builds the object, never when JAX rebuilds it
    from leaves that are not market data: gradients (``jax.grad`` returns a surface of cotangents, whose
    "expiries" may be 0 or negative), ``tree_map`` placeholders, vmap axis specs.
    """
    names = tuple(f.name for f in fields(cls))

    def flatten_with_keys(obj):
        return [(jax.tree_util.GetAttrKey(name), getattr(obj, name)) for name in names], None

    def flatten(obj):
        return [getattr(obj, name) for name in names], None

    def unflatten(_, children):
        obj = object.__new__(cls)
        for name, child in zip(names, children):
            object.__setattr__(obj, name, child)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls

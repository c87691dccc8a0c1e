"""Traced programs kept on disk, so that a fresh process skips tracing and lowering the PDE programs.

JAX's persistent compilation cache (which the CLI turns on) keeps compiled executables, but a fresh process
still has to trace and lower each program to find its cache key.  On the example run (``shoals run
--executor serial`` with the cache filled, ``JAX_LOG_COMPILES=1``, 2 cores) the 8 AAD programs took 9.8 s
to trace and 1.9 s to lower, and the 8 readout programs 2.0 s and 1.1 s: a quarter of the cold run; the
SVI fit and its implicit-function Jacobian (quote vega) 1.8 s and 0.9 s more.

With a compilation cache directory set, :func:`cached_call` keeps each program as a serialised
:mod:`jax.export` artefact in ``<cache>/shoals-exported/``.  The key covers the function, its static
arguments, the tree, shapes and dtypes of its array arguments, the JAX version, the platform, the x64 flag
and a digest of Shoals' own source files.  A later process deserialises the artefact in milliseconds
instead of tracing.  An exported program is the StableHLO that ``jax.jit`` lowers, so results are bitwise
equal (tests/unit/test_exported.py).  Without a cache directory (library use, tests) it is the plain
jitted call.  Files that do not load (truncated, other versions) are exported again; a folder that cannot
be written only costs the saving.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

from shoals._files import write_atomically

#: Subfolder of the compilation cache directory holding the exported programs.
FOLDER = "shoals-exported"

_PROGRAMS: dict[str, object] = {}
_LOCK = threading.Lock()


@functools.cache
def source_digest() -> str:
    """SHA-256 of Shoals' Python sources and the JAX version: an exported program is reused only by the code
    that exported it."""
    root = Path(__file__).parent
    digest = hashlib.sha256(jax.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def export_folder() -> Path | None:
    """Where exported programs are kept: beside JAX's compilation cache, or None when it is off."""
    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / FOLDER if cache else None


def _describe(value) -> str:
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def program_key(function, static: tuple, tree, leaves, keywords: dict | None = None) -> str:
    """The artefact's name: a digest of everything the traced program depends on."""
    parts = [_describe(function), *map(_describe, static), *(f"{name}={_describe(value)}" for name, value in
                                                           sorted((keywords or {}).items())), str(tree),
             *(f"{leaf.shape}{leaf.dtype}" for leaf in leaves), jax.default_backend(),
             str(jax.config.jax_enable_x64), source_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cached_call(function, static: tuple, arguments: tuple, keywords: dict | None = None):
    """``function(*static, *arguments, **keywords)`` for a jitted ``function`` whose leading arguments
    ``static`` are static; through a kept export when a compilation cache directory is set (module doc).
    ``keywords`` are part of the key and fixed in the exported program (options, tolerances)."""
    keywords = keywords or {}
    folder = export_folder()
    leaves, tree = jax.tree_util.tree_flatten(arguments)
    if folder is None or any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return function(*static, *arguments, **keywords)  # off, or inside a transformation (an export has no AD)
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    key = program_key(function, static, tree, leaves, keywords)
    program = _PROGRAMS.get(key)
    if program is None:
        with _LOCK:
            program = _PROGRAMS.get(key) or _load_or_export(folder / f"{key}.jaxexport", function, static, tree,
                                                            leaves, keywords)
            _PROGRAMS[key] = program
    return program(*leaves)


def _load_or_export(path: Path, function, static, tree, leaves, keywords):
    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # missing, truncated or from another JAX: export it again
        def flat(*flat_leaves):
            return function(*static, *jax.tree_util.tree_unflatten(tree, flat_leaves), **keywords)

        exported = jax.export.export(jax.jit(flat))(*(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
                                                      for leaf in leaves))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, bytes(exported.serialize()))
        except OSError:  # a read-only or full cache folder: keep the program for this process only
            pass
    return jax.jit(exported.call)

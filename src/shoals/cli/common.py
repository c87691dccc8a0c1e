"""What every ``shoals`` command shares: the consoles, the error exit and the compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with code 2 (bad input: the command did not run)."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs across CLI runs (cuts the cold start of repeated commands); the folder is
    ``$SHOALS_JAX_CACHE`` or ``~/.cache/shoals/jax``."""
    import jax

    cache = Path(os.environ.get("SHOALS_JAX_CACHE", Path.home() / ".cache" / "shoals" / "jax"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except OSError:
        pass

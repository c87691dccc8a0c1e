"""What every ``shoals`` command shares: the consoles, the error exit and the compilation cache."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)

#: The inputs of the book commands (``shoals run``, ``shoals book-var``).
QuotesOption = Annotated[Path | None, typer.Option(
    "--quotes", help="Option quotes (CSV/Parquet) to calibrate; default: the embedded example (spot 100).")]
MarketOption = Annotated[Path | None, typer.Option(
    "--market", help="Market file (JSON, as written by `shoals calibrate`) instead of quotes.")]
BookOption = Annotated[Path | None, typer.Option(
    "--book", help="Book file (CSV/Parquet/JSON, BOOK_SCHEMA.md); default: the embedded 150-trade book.")]
SpotOption = Annotated[float | None, typer.Option("--spot", help="Spot for quotes without a spot column.")]


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
        # Every program, however quick to compile: a cold run compiles hundreds of small ones (~10.7 s
        # for 363 on the embedded example when only those over 0.2 s were kept).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except OSError:
        pass


class SurfaceModel(str, Enum):
    """The slice model fitted to quotes (``shoals calibrate --model``, ``shoals run --model``)."""

    svi = "svi"
    spline = "spline"


ModelOption = Annotated[SurfaceModel, typer.Option(
    "--model", help="Slice model fitted to quotes: svi (raw SVI, repaired if needed) or spline (arbitrage-free "
                    "smoothing spline in total variance, fitted inside bid/ask; written as 'slices').")]

"""Embedded example data: the book of ``shoals price`` and two real option-chain snapshots.

* ``example_book.csv``: 20 European SPX options of 2011-01-24 (see README.md here);
* ``spx_20110124_clean.csv`` / ``_meta.json``: SPX option chain, 2011-01-24 14:03 ET, bid/ask (CBOE delayed
  quotes via enthought/pyql, BSD-3);
* ``dax_20020705_clean.csv`` / ``_meta.json``: DAX implied-vol grid, 2002-07-05 (QuantLib test suite);
* ``seed_quotes.csv`` / ``seed_book.csv``: the original pipeline's synthetic market (call and put quotes) and
  150-trade exotic book, written by :mod:`shoals.data.synthetic` (``seed_quotes()``, ``seed_book()``);
* ``portfolio_example.json``: the original VaR example (5 assets, $1M, 10 days);
* ``spx_book.csv``: 13 index exotics on SPX of 2011-01-24 (every instrument type, maturities 0.4-2 y) for
  ``shoals run --quotes spx_20110124_clean.csv --book spx_book.csv``.

Provenance and conventions: ``shared/data/README.md`` of the project and the ``_meta.json`` files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("example_book.csv", "spx_20110124_clean.csv", "spx_20110124_meta.json", "dax_20020705_clean.csv",
         "dax_20020705_meta.json", "portfolio_example.json", "seed_quotes.csv", "seed_book.csv", "spx_book.csv")


def path(name: str) -> Path:
    """Filesystem path of an embedded data file (one of :data:`FILES`)."""
    if name not in FILES:
        raise KeyError(f"no embedded data file '{name}'; available: {', '.join(FILES)}")
    return Path(str(resources.files(__name__) / name))

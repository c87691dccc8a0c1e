"""Embedded example data: the book of ``shoals price`` and two real option-chain snapshots.

* ``example_book.csv``: 20 European SPX options of 2011-01-24 (see README.md here);
* ``spx_20110124_clean.csv`` / ``_meta.json``: SPX option chain, 2011-01-24 14:03 ET, bid/ask (CBOE delayed
  quotes via enthought/pyql, BSD-3);
* ``dax_20020705_clean.csv`` / ``_meta.json``: DAX implied-vol grid, 2002-07-05 (QuantLib test suite).

Provenance and conventions: ``shared/data/README.md`` of the project and the ``_meta.json`` files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("example_book.csv", "spx_20110124_clean.csv", "spx_20110124_meta.json", "dax_20020705_clean.csv",
         "dax_20020705_meta.json", "portfolio_example.json")


def path(name: str) -> Path:
    """Filesystem path of an embedded data file (one of :data:`FILES`)."""
    if name not in FILES:
        raise KeyError(f"no embedded data file '{name}'; available: {', '.join(FILES)}")
    return Path(str(resources.files(__name__) / name))

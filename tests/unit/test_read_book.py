"""Book rows whose keys depend on the instrument: strikes of floating contracts, the embedded example books."""

from __future__ import annotations

import numpy as np
import pytest

from shoals.data import path
from shoals.io.book import read_book

HEADER = "id,instrument,option_type,strike,maturity,fixings,strike_type\n"


@pytest.mark.parametrize(("strike", "strike_type", "error"), [
    ("", "floating", None),
    ("100", "floating", "no strike"),
    ("", "fixed", "required key is missing"),
    ("100", "fixed", None),
])
def test_asian_strike_follows_the_strike_type(tmp_path, strike, strike_type, error):
    book = tmp_path / "book.csv"
    book.write_text(HEADER + f"a1,asian,call,{strike},1.0,12,{strike_type}\n")
    (row,) = read_book(book)
    if error is None:
        assert row.error is None
        assert bool(np.asarray(row.contract.floating)) == (strike_type == "floating")
    else:
        assert error in row.error and "strike" in row.error and "row 1" in row.error


@pytest.mark.parametrize("name", ["seed_book.csv", "spx_book.csv", "example_book.csv"])
def test_embedded_books_are_valid(name):
    rows = read_book(path(name))
    assert rows and all(r.error is None for r in rows)

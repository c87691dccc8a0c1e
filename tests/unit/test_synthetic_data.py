"""The seed's synthetic market and exotic book: same draws as the seed, valid files, a clean surface."""

from __future__ import annotations

import numpy as np

import shoals
from shoals.data.synthetic import SEED_EXPIRIES, SEED_INSTRUMENTS, seed_book, seed_quotes


def test_seed_book_is_a_valid_book_with_the_seed_mix(tmp_path):
    book = seed_book(market_columns={"spot": 100.0, "rate": 0.04, "vol": 0.2})
    path = tmp_path / "book.csv"
    book.to_csv(path, index=False)
    rows = shoals.read_book(path)
    assert len(rows) == 150 and all(r.error is None for r in rows)
    # the seed's generator draws the instrument first: replay its draws
    rng = np.random.default_rng(42)
    kinds = []
    for _ in range(150):
        kinds.append(str(rng.choice(list(SEED_INSTRUMENTS))))
        rng.uniform(0.85, 1.15), rng.uniform(0.65, 0.90), rng.choice(list(SEED_EXPIRIES)), rng.choice(["call", "put"])
        rng.choice([1e5, 5e5, 1e6]), rng.choice([-1, 1])
    mapped = {"barrier_do": ("barrier", "down-and-out"), "barrier_ui": ("barrier", "up-and-in"),
              "lookback": ("lookback", None), "asian": ("asian", None), "cliquet": ("cliquet", None)}
    assert [(r.instrument, r.fields.get("barrier_type")) for r in rows] == [mapped[k] for k in kinds]
    barriers = book.loc[book["instrument"] == "barrier"]
    down = barriers["barrier_type"] == "down-and-out"
    assert barriers.loc[down, "barrier"].between(65, 90).all()
    assert barriers.loc[~down, "barrier"].between(110, 135).all()


def test_seed_quotes_calibrate_to_an_arbitrage_free_surface(tmp_path):
    path = tmp_path / "quotes.csv"
    seed_quotes().to_csv(path, index=False)
    table, cleaning = shoals.read_quotes(path, spot=100.0)
    result = shoals.calibrate_surface(table, cleaning, spot=100.0)
    assert result.arbitrage.ok
    forwards = np.array([f.forward for f in result.forwards])
    np.testing.assert_allclose(forwards, 100.0 * np.exp(0.04 * np.array([0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5])),
                               rtol=1e-6)
    assert result.fit_table()["inside_bid_ask"].min() > 0.9


def test_embedded_seed_files_are_the_generators_output():
    import pandas as pd

    from shoals.data import path

    quotes = pd.read_csv(path("seed_quotes.csv"))
    pd.testing.assert_frame_equal(quotes, seed_quotes(), rtol=1e-11, check_dtype=False)
    book = pd.read_csv(path("seed_book.csv"))
    pd.testing.assert_frame_equal(book, seed_book(), rtol=1e-11, check_dtype=False)

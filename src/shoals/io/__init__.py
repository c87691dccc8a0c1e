"""L2 input/output: reading books, markets and quotes, writing results. The only layer (with reports and cli)
that touches files."""

from shoals.io.book import BookRow, contract_of, read_book
from shoals.io.market import read_market, write_market
from shoals.io.results import write_results

__all__ = ["BookRow", "contract_of", "read_book", "read_market", "write_market", "write_results"]

"""L2 input/output: reading books, writing results. The only layer (with reports and cli) that touches files."""

from shoals.io.book import BookRow, read_book
from shoals.io.results import write_results

__all__ = ["BookRow", "read_book", "write_results"]

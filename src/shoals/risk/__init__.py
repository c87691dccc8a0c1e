"""L2 risk: book pricing and aggregation."""

from shoals.risk.book import OUTPUT_COLUMNS, price_book

__all__ = ["OUTPUT_COLUMNS", "price_book"]

"""L2 risk: book pricing and aggregation."""

from shoals.risk.book import OUTPUT_COLUMNS, Auto, price_book

__all__ = ["OUTPUT_COLUMNS", "Auto", "price_book"]

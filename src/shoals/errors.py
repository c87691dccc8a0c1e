"""Exceptions of Shoals. Every error names what is wrong and, where possible, how to fix it."""

from __future__ import annotations


class ShoalsError(Exception):
    """Base class of all errors raised by Shoals."""


class InputError(ShoalsError, ValueError):
    """Bad input data: names the field, the row (when the input is a table) and the offending value."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None,
                 value: object = None, source: str | None = None):
        location = ", ".join(part for part in (
            source,
            f"row {row}" if row is not None else None,
            f"field '{field}'" if field is not None else None,
        ) if part)
        super().__init__(f"{location}: {message}" if location else message)
        self.field = field
        self.row = row
        self.value = value
        self.source = source
        self.reason = message


class UnsupportedError(ShoalsError, NotImplementedError):
    """A valid request that the chosen method cannot serve (e.g. an instrument a method does not price)."""


class CalibrationError(ShoalsError):
    """A calibration that did not converge or produced an unusable result."""


class ArbitrageError(ShoalsError):
    """Market data that violates no-arbitrage constraints where they are required."""

"""Chunked asynchronous dispatch (see :mod:`shoals._chunks`; kept there so every layer can use it)."""

from shoals._chunks import DEFAULT_CHUNK, map_chunks

__all__ = ["DEFAULT_CHUNK", "map_chunks"]

"""L2 execution: fans work out (chunks, processes, clusters); knows no finance."""

from shoals.execution.chunks import map_chunks

__all__ = ["map_chunks"]

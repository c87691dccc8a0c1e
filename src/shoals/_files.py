"""File helpers shared by the layers (no Shoals imports)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk and moved into
    place with :func:`os.replace` (atomic on POSIX and Windows): readers see the old file or the whole new
    one, never a part, and an interrupt leaves no temporary file behind.  The temporary name is unique per
    call (threads of one process may write the same path)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

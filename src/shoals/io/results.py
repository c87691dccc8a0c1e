"""Writing result tables (CSV, Parquet or JSON by file extension)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from shoals.errors import InputError


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with full float precision (repr) and NaN as null."""
    return [{key: (None if isinstance(value, float) and math.isnan(value) else value)
             for key, value in record.items()} for record in frame.to_dict(orient="records")]


def write_results(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` to ``path`` (.csv, .parquet or .json); creates the parent directory."""
    path = Path(path)
    suffix = path.suffix.lower()
    writers = {".csv": lambda: frame.to_csv(path, index=False),
               ".parquet": lambda: frame.to_parquet(path, index=False),
               ".json": lambda: path.write_text(json.dumps(_records(frame), indent=1))}
    if suffix not in writers:
        raise InputError(f"unknown output type '{suffix}': use .csv, .parquet or .json", field="--out",
                         value=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    writers[suffix]()
    return path

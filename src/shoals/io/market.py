"""Reading and writing market files (JSON) per BOOK_SCHEMA.md, "Market".

    {"spot": 100.0,
     "rate": 0.04,                                   # or {"times": [...], "zero_rates": [...]}
     "dividend": 0.0,                                # idem
     "svi": [{"expiry": 0.25, "a": 0.01, "b": 0.1, "rho": -0.4, "m": 0.0, "sigma": 0.2}, ...]}

or, instead of ``"svi"``, ``"slices": [{"expiry": 0.25, "k": [...], "w": [...]}, ...]``: total variance w on
a k-grid per expiry (at least :data:`MIN_FILE_NODES` nodes, k strictly increasing, w > 0), read into a
:class:`~shoals.market.slices.NodeSlices` surface (linear in k between nodes, linearly extrapolated; the
rules are in :mod:`shoals.market.slices`).  A file carries one of the two forms.
Validation: tests/unit/test_market_io.py, tests/consistency/test_slices_market.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from shoals.errors import InputError
from shoals.market.curves import ZeroCurve
from shoals.market.slices import NodeSlices
from shoals.market.snapshot import MarketSnapshot
from shoals.market.surface import VolSurface
from shoals.market.svi import SVIParams

_SVI_KEYS = ("expiry", "a", "b", "rho", "m", "sigma")
_NODE_KEYS = ("expiry", "k", "w")
_TOP_KEYS = ("spot", "rate", "dividend", "svi", "slices")
#: The fewest nodes a slice of the ``"slices"`` form may have (BOOK_SCHEMA.md, "Market").
MIN_FILE_NODES = 200


def _number(value, field: str, source: str, *, positive=False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"'{value}' is not a number", field=field, source=source) from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise InputError(f"{value!r} must be a finite number{' > 0' if positive else ''}", field=field,
                         source=source)
    return number


def _curve(value, field: str, source: str) -> ZeroCurve:
    if isinstance(value, dict):
        unknown = set(value) - {"times", "zero_rates"}
        if unknown or not {"times", "zero_rates"} <= set(value):
            raise InputError("a curve is {\"times\": [...], \"zero_rates\": [...]}"
                             + (f"; unknown key(s) {sorted(unknown)}" if unknown else ""), field=field, source=source)
        times = [_number(t, f"{field}.times", source, positive=True) for t in value["times"]]
        rates = [_number(r, f"{field}.zero_rates", source) for r in value["zero_rates"]]
        if len(times) != len(rates) or not times:
            raise InputError("times and zero_rates must be non-empty lists of equal length", field=field,
                             source=source)
        try:
            return ZeroCurve(times=jnp.asarray(times), zero_rates=jnp.asarray(rates))
        except InputError as error:
            raise InputError(error.reason, field=field, source=source) from None
    return ZeroCurve.flat(_number(value, field, source))


def read_market(path) -> MarketSnapshot:
    """Read a market JSON file into a :class:`MarketSnapshot`; errors name the key (and slice index)."""
    path = Path(path)
    source = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", source=source) from None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the market file ({error})", source=source) from None
    if not isinstance(data, dict):
        raise InputError("the market file must hold one JSON object", source=source)
    unknown = set(data) - set(_TOP_KEYS)
    if unknown:
        raise InputError(f"unknown key(s) {sorted(unknown)}; expected {', '.join(_TOP_KEYS)}", source=source)
    if "svi" in data and "slices" in data:
        raise InputError("give the surface once: 'svi' or 'slices', not both", field="slices", source=source)
    for key in ("spot", "rate"):
        if key not in data:
            raise InputError("required key is missing", field=key, source=source)
    if "svi" not in data and "slices" not in data:
        raise InputError("required key is missing (or give 'slices')", field="svi", source=source)
    spot = _number(data["spot"], "spot", source, positive=True)
    rate = _curve(data["rate"], "rate", source)
    dividend = _curve(data.get("dividend", 0.0), "dividend", source)
    surface = _svi_surface(data["svi"], source) if "svi" in data else _node_surface(data["slices"], source)
    return MarketSnapshot(spot=jnp.asarray(spot), rate=rate, dividend=dividend, surface=surface)


def _slice_items(slices, name: str, keys, source: str):
    """``(field, item)`` for each slice of the list ``name``: a non-empty list of objects with exactly
    ``keys``; errors name ``name[i]``."""
    if not isinstance(slices, list) or not slices:
        raise InputError(f"must be a non-empty list of slices with the keys {', '.join(keys)}", field=name,
                         source=source)
    for index, item in enumerate(slices):
        field = f"{name}[{index}]"
        if not isinstance(item, dict) or set(item) != set(keys):
            found = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise InputError(f"a slice has exactly the keys {', '.join(keys)}; got {found}", field=field,
                             source=source)
        yield field, item


def _svi_surface(slices, source: str) -> VolSurface:
    """The ``"svi"`` list as a surface; errors name ``svi[i].key``."""
    rows = [[_number(item[key], f"{field}.{key}", source) for key in _SVI_KEYS]
            for field, item in _slice_items(slices, "svi", _SVI_KEYS, source)]
    table = np.asarray(sorted(rows))
    if np.any(np.diff(table[:, 0]) <= 0) or table[0, 0] <= 0:
        raise InputError("slice expiries must be positive and distinct", field="svi", source=source)
    return VolSurface(expiries=jnp.asarray(table[:, 0]), params=SVIParams.from_stacked(table[:, 1:]))


def _node_surface(slices, source: str) -> VolSurface:
    """The ``"slices"`` list as a :class:`NodeSlices` surface; errors name ``slices[i].key``."""
    expiries, ks, ws = [], [], []
    for field, item in _slice_items(slices, "slices", _NODE_KEYS, source):
        expiries.append(_number(item["expiry"], f"{field}.expiry", source, positive=True))
        k, w = (_nodes(item[key], f"{field}.{key}", source) for key in ("k", "w"))
        if k.size != w.size:
            raise InputError(f"k has {k.size} nodes and w {w.size}; give one w per k", field=f"{field}.w",
                             source=source)
        if np.any(np.diff(k) <= 0.0):
            j = int(np.argmax(np.diff(k) <= 0.0))
            raise InputError(f"k must be strictly increasing; k[{j}] = {k[j]!r}, k[{j + 1}] = {k[j + 1]!r}",
                             field=f"{field}.k", source=source)
        if np.any(w <= 0.0):
            j = int(np.argmax(w <= 0.0))
            raise InputError(f"total variance must be > 0; w[{j}] = {w[j]!r}", field=f"{field}.w", source=source)
        ks.append(k)
        ws.append(w)
    order = np.argsort(expiries, kind="stable")
    sorted_expiries = np.asarray(expiries)[order]
    if np.any(np.diff(sorted_expiries) <= 0):
        raise InputError("slice expiries must be distinct", field="slices", source=source)
    return VolSurface(expiries=jnp.asarray(sorted_expiries),
                      params=NodeSlices.from_lists([ks[i] for i in order], [ws[i] for i in order]))


def _nodes(value, field: str, source: str) -> np.ndarray:
    """A list of at least :data:`MIN_FILE_NODES` finite numbers."""
    if not isinstance(value, list) or len(value) < MIN_FILE_NODES:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise InputError(f"must be a list of at least {MIN_FILE_NODES} numbers (one per node), got {size}",
                         field=field, source=source)
    return np.asarray([_number(x, f"{field}[{j}]", source) for j, x in enumerate(value)], dtype=np.float64)


def _curve_json(curve: ZeroCurve):
    times = np.asarray(curve.times, dtype=float).tolist()
    rates = np.asarray(curve.zero_rates, dtype=float).tolist()
    return rates[0] if len(times) == 1 else {"times": times, "zero_rates": rates}


def market_to_dict(snapshot: MarketSnapshot) -> dict:
    """The JSON-ready dict of a snapshot (full float precision): the ``"slices"`` form for a
    :class:`NodeSlices` surface (every node, padding included), the ``"svi"`` form for an SVI surface."""
    surface = snapshot.surface
    expiries = np.asarray(surface.expiries, dtype=float)
    data = {"spot": float(snapshot.spot), "rate": _curve_json(snapshot.rate),
            "dividend": _curve_json(snapshot.dividend)}
    if isinstance(surface.params, NodeSlices):
        ks, ws = (np.asarray(x, dtype=float) for x in (surface.params.k, surface.params.w))
        data["slices"] = [{"expiry": float(t), "k": k.tolist(), "w": w.tolist()} for t, k, w in zip(expiries, ks, ws)]
        return data
    params = np.asarray(surface.params.stacked(), dtype=float)
    data["svi"] = [dict(zip(_SVI_KEYS, [float(t), *map(float, p)])) for t, p in zip(expiries, params)]
    return data


def write_market(snapshot: MarketSnapshot, path) -> Path:
    """Write ``snapshot`` as a market JSON file readable by :func:`read_market` (round trip exact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(market_to_dict(snapshot), indent=1))
    return path

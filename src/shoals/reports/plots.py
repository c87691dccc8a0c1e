"""PNG plots of the surface and risk stages: smile fits with bid/ask bars, the implied surface, the local vol,
the vega ladder and NPV by instrument type.

matplotlib is imported lazily (extra ``plot``).  Each ``*_figure`` function builds one
:class:`matplotlib.figure.Figure` (object-oriented, no pyplot state); :func:`figure_png` renders a figure to PNG
bytes in memory (for the HTML report) and :func:`save_figure` writes it to a file.  The ``plot_*`` functions are
thin wrappers that write one file and return its path (``shoals calibrate --plot``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from shoals.errors import ShoalsError

FILE_DPI = 110
REPORT_DPI = 85


def _new_figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ShoalsError("plots need matplotlib: pip install 'shoals[plot]'") from None
    return Figure(figsize=figsize)


def figure_png(figure, *, dpi: int = REPORT_DPI) -> bytes:
    """The figure rendered as PNG bytes (Agg, in memory)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(figure, path, *, dpi: int = FILE_DPI) -> Path:
    """Write the figure as a PNG file (parent folders created) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return path


def _implied_vols(surface, log_moneyness, times, *, chunk: int = 4096) -> np.ndarray:
    """``surface.implied_vol`` on broadcast (k, t) evaluated in fixed-size 1-D chunks, so every figure reuses one
    compiled shape whatever its grid (a jitted call compiles once per input shape)."""
    k, t = np.broadcast_arrays(np.asarray(log_moneyness, dtype=np.float64), np.asarray(times, dtype=np.float64))
    flat_k, flat_t = k.ravel(), t.ravel()
    size = flat_k.size
    padded = max(chunk, -(-size // chunk) * chunk)
    pad_t = float(flat_t[0]) if size else 1.0
    flat_k = np.concatenate([flat_k, np.zeros(padded - size)])
    flat_t = np.concatenate([flat_t, np.full(padded - size, pad_t)])
    out = np.concatenate([
        np.asarray(surface.implied_vol(jnp.asarray(flat_k[i:i + chunk]), jnp.asarray(flat_t[i:i + chunk])))
        for i in range(0, padded, chunk)])
    return out[:size].reshape(k.shape)


def smiles_figure(calibration, *, max_columns: int = 4, panel_size=(4.0, 3.0)):
    """One panel per expiry: bid/ask implied-vol bars, mid vols and the fitted smile (vols in %); ``panel_size``
    (width, height) in inches per panel."""
    smiles, surface = calibration.smiles, calibration.surface
    n = smiles.n_slices
    columns = max(1, min(max_columns, n))
    rows = max(1, math.ceil(n / columns))
    figure = _new_figure((panel_size[0] * columns, panel_size[1] * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    # one batched evaluation of the fitted smiles (slices x grid) instead of one per panel
    grids = []
    for index in range(n):
        k = smiles.log_moneyness[index][smiles.mask[index]]
        grids.append(np.linspace(k.min() - 0.05, k.max() + 0.05, 200) if k.size else np.linspace(-0.5, 0.5, 200))
    fitted_all = _implied_vols(surface, np.stack(grids), np.asarray(smiles.expiries)[:, None]) if n else None
    for index, axis in enumerate(axes.flat):
        if index >= n:
            axis.set_visible(False)
            continue
        mask = smiles.mask[index]
        k = smiles.log_moneyness[index][mask]
        mid = smiles.mid_vol[index][mask]
        bid = np.nan_to_num(smiles.bid_vol[index][mask], nan=0.0)
        ask = smiles.ask_vol[index][mask]
        has_ask = np.isfinite(ask)
        axis.vlines(k[has_ask], 100 * bid[has_ask], 100 * ask[has_ask], color="0.6", linewidth=1, label="bid/ask")
        axis.plot(k, 100 * mid, ".", color="tab:blue", markersize=3, label="mid")
        axis.plot(grids[index], 100 * fitted_all[index], color="tab:red", linewidth=1.2, label="SVI")
        axis.set_title(f"T = {smiles.expiries[index]:.3f} y", fontsize=9)
        axis.set_xlabel("k = ln(K/F)", fontsize=8)
        axis.set_ylabel("implied vol (%)", fontsize=8)
        axis.tick_params(labelsize=7)
        if k.size:
            upper = np.nanmax(np.where(has_ask, ask, mid)) * 100
            if np.isfinite(upper) and upper > 0:
                axis.set_ylim(0, min(upper * 1.1, 300))
    axes.flat[0].legend(fontsize=7)
    _panel_margins(figure, rows, columns)
    return figure


def _panel_margins(figure, rows: int, columns: int, *, left=0.55, right=0.12, bottom=0.45, top=0.3, across=0.6,
                   down=0.75):
    """Margins and gaps of a grid of panels, in inches (``across``/``down``: between panels), for the fixed
    font sizes of :func:`smiles_figure`.  ``tight_layout`` measured every tick label of every panel instead
    (~0.4 s of the run's report for 8 panels, more than drawing them).  Panels too small for these margins
    fall back to ``tight_layout``."""
    width, height = figure.get_size_inches()
    axis_width = (width - left - right - (columns - 1) * across) / columns
    axis_height = (height - bottom - top - (rows - 1) * down) / rows
    if min(axis_width, axis_height) < 0.5:
        figure.tight_layout()
        return
    figure.subplots_adjust(left=left / width, right=1.0 - right / width, bottom=bottom / height,
                           top=1.0 - top / height, wspace=across / axis_width, hspace=down / axis_height)


def implied_surface_figure(snapshot, *, k_range=(-0.5, 0.3)):
    """Heatmap of the implied vol over (k, T) between the first and last expiry."""
    expiries = np.asarray(snapshot.surface.expiries)
    times = np.linspace(expiries[0], expiries[-1], 120)
    ks = np.linspace(*k_range, 160)
    vols = _implied_vols(snapshot.surface, ks[None, :], times[:, None])
    figure = _new_figure((7, 4.5))
    axis = figure.subplots()
    image = axis.pcolormesh(ks, times, 100 * vols, shading="auto", cmap="viridis")
    figure.colorbar(image, ax=axis, label="implied vol (%)")
    axis.set_xlabel("k = ln(K/F_T)")
    axis.set_ylabel("T (years)")
    axis.set_title("Implied volatility surface")
    return figure


def local_vol_figure(grid, *, spot_range=None):
    """Heatmap of a :class:`LocalVolGrid` over (S, t); ``spot_range`` (low, high) limits the S axis
    (default: the whole grid)."""
    spots = np.asarray(grid.spots)
    keep = (np.ones_like(spots, dtype=bool) if spot_range is None
            else (spots >= spot_range[0]) & (spots <= spot_range[1]))
    if keep.sum() < 2:
        keep = np.ones_like(spots, dtype=bool)
    figure = _new_figure((7, 4.5))
    axis = figure.subplots()
    image = axis.pcolormesh(spots[keep], np.asarray(grid.times), 100 * np.asarray(grid.vols)[:, keep],
                            shading="auto", cmap="magma")
    figure.colorbar(image, ax=axis, label="local vol (%)")
    axis.set_xlabel("S")
    axis.set_ylabel("t (years)")
    axis.set_title("Dupire local volatility")
    return figure


def vega_ladder_figure(ladder):
    """Bars per pillar expiry of a vega ladder frame (``expiry``, ``vega_bump``, ``vega_aad``): the bump and
    AAD ladders side by side (a column that is all NaN is left out)."""
    expiries = np.asarray(ladder["expiry"], dtype=np.float64)
    series = [(column, label, color) for column, label, color in
              (("vega_bump", "bump", "tab:blue"), ("vega_aad", "AAD", "tab:orange"))
              if column in ladder and np.isfinite(np.asarray(ladder[column], dtype=np.float64)).any()]
    figure = _new_figure((7, 3.6))
    axis = figure.subplots()
    positions = np.arange(expiries.size)
    width = 0.8 / max(1, len(series))
    for offset, (column, label, color) in enumerate(series):
        values = np.nan_to_num(np.asarray(ladder[column], dtype=np.float64), nan=0.0)
        axis.bar(positions + (offset - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
    axis.axhline(0.0, color="0.3", linewidth=0.8)
    axis.set_xticks(positions, [f"{t:.3g}" for t in expiries])
    axis.set_xlabel("pillar expiry (years)")
    axis.set_ylabel("book vega (per 1.00 of vol)")
    axis.set_title("Vega ladder")
    if series:
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def npv_by_type_figure(by_type):
    """Horizontal bars of the book NPV per instrument type (``instrument``, ``npv``)."""
    names = [str(name) for name in by_type["instrument"]]
    values = np.nan_to_num(np.asarray(by_type["npv"], dtype=np.float64), nan=0.0)
    figure = _new_figure((7, max(2.0, 0.45 * len(names) + 1.2)))
    axis = figure.subplots()
    positions = np.arange(len(names))
    axis.barh(positions, values, color=np.where(values >= 0.0, "tab:green", "tab:red"))
    axis.set_yticks(positions, names)
    axis.invert_yaxis()
    axis.axvline(0.0, color="0.3", linewidth=0.8)
    axis.set_xlabel("NPV")
    axis.set_title("NPV by instrument type")
    figure.tight_layout()
    return figure


def plot_smiles(calibration, path) -> Path:
    """Write :func:`smiles_figure` to ``path``."""
    return save_figure(smiles_figure(calibration), path)


def plot_implied_surface(snapshot, path, *, k_range=(-0.5, 0.3)) -> Path:
    """Write :func:`implied_surface_figure` to ``path``."""
    return save_figure(implied_surface_figure(snapshot, k_range=k_range), path)


def plot_local_vol(grid, path, *, spot_range=None) -> Path:
    """Write :func:`local_vol_figure` to ``path``."""
    return save_figure(local_vol_figure(grid, spot_range=spot_range), path)

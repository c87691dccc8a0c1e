"""PNG plots of the surface stage: smile fits with bid/ask bars, the implied surface, the local vol.

matplotlib is imported lazily (extra ``plot``); every function writes one file and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from shoals.errors import ShoalsError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ShoalsError("plots need matplotlib: pip install 'shoals[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_smiles(calibration, path) -> Path:
    """One panel per expiry: bid/ask implied-vol bars, mid vols and the fitted smile (vols in %)."""
    plt = _pyplot()
    smiles, surface = calibration.smiles, calibration.surface
    n = smiles.n_slices
    columns = min(4, n)
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
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
        grid = np.linspace(k.min() - 0.05, k.max() + 0.05, 200)
        fitted = np.asarray(surface.implied_vol(jnp.asarray(grid), float(smiles.expiries[index])))
        axis.plot(grid, 100 * fitted, color="tab:red", linewidth=1.2, label="SVI")
        axis.set_title(f"T = {smiles.expiries[index]:.3f} y", fontsize=9)
        axis.set_xlabel("k = ln(K/F)", fontsize=8)
        axis.set_ylabel("implied vol (%)", fontsize=8)
        axis.tick_params(labelsize=7)
        upper = np.nanmax(np.where(has_ask, ask, mid)) * 100
        axis.set_ylim(0, min(upper * 1.1, 300))
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_implied_surface(snapshot, path, *, k_range=(-0.5, 0.3)) -> Path:
    """Heatmap of the implied vol over (k, T) between the first and last expiry."""
    plt = _pyplot()
    expiries = np.asarray(snapshot.surface.expiries)
    times = np.linspace(expiries[0], expiries[-1], 120)
    ks = np.linspace(*k_range, 160)
    vols = np.asarray(snapshot.surface.implied_vol(jnp.asarray(ks)[None, :], jnp.asarray(times)[:, None]))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    image = axis.pcolormesh(ks, times, 100 * vols, shading="auto", cmap="viridis")
    figure.colorbar(image, ax=axis, label="implied vol (%)")
    axis.set_xlabel("k = ln(K/F_T)")
    axis.set_ylabel("T (years)")
    axis.set_title("Implied volatility surface")
    return _save(figure, plt, path)


def plot_local_vol(grid, path, *, spot_range=None) -> Path:
    """Heatmap of a :class:`LocalVolGrid` over (S, t); ``spot_range`` (low, high) limits the S axis
    (default: the whole grid)."""
    plt = _pyplot()
    spots = np.asarray(grid.spots)
    keep = np.ones_like(spots, dtype=bool) if spot_range is None else (spots >= spot_range[0]) & (spots <= spot_range[1])
    figure, axis = plt.subplots(figsize=(7, 4.5))
    image = axis.pcolormesh(spots[keep], np.asarray(grid.times), 100 * np.asarray(grid.vols)[:, keep],
                            shading="auto", cmap="magma")
    figure.colorbar(image, ax=axis, label="local vol (%)")
    axis.set_xlabel("S")
    axis.set_ylabel("t (years)")
    axis.set_title("Dupire local volatility")
    return _save(figure, plt, path)


def _save(figure, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

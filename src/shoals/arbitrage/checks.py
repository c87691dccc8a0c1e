"""Static-arbitrage checks of an SVI :class:`~shoals.market.surface.VolSurface`, with a report that lists
every violation (kind, expiry or expiry pair, k-range, size).

Conditions (Gatheral & Jacquier 2014), on the log-forward-moneyness k = ln(K / F_T) and the total implied
variance w(k, T):

* **butterfly** (each slice): the density of ln(S_T / F_T) is g(k) n(d_-(k)) / sqrt(w(k)), so a slice is
  free of butterfly arbitrage iff g(k) >= 0 with

  .. math:: g(k) = \\left(1 - \\frac{k w'}{2w}\\right)^2 - \\frac{w'^2}{4}\\left(\\frac1w + \\frac14\\right)
                   + \\frac{w''}{2}

  evaluated from the analytic SVI derivatives on a dense grid.  Two analytic companions:
  **wing**: as |k| -> inf, g -> 1/4 - b^2 (1 +- rho)^2 / 16, negative iff b (1 + |rho|) > 2 (Roger Lee's
  moment bound; reported with k-range to +-inf and size = that limit);
  **variance**: min_k w = a + b sigma sqrt(1 - rho^2) (at k* = m - rho sigma / sqrt(1 - rho^2)) must be > 0.
* **calendar** (each pair of consecutive slices): w(k, T_{i+1}) >= w(k, T_i) for every k.

Grids: slice i is checked on ``n_points`` uniform points of |k| <= ``k_width`` sqrt(T_i) (default
k_width = 1.5: about 7.5 standard deviations of a 20 % vol at every expiry), the pair (i, i+1) on the
grid of T_{i+1}; or on a caller's ``k_grid``.  The grid depends on the expiries only, never on the SVI
parameters, so a repaired surface is checked where the original was.  A violation is a maximal run of
consecutive grid points where the condition fails by more than ``tolerance``; in addition every discrete
local minimum of g (or of the calendar gap) is refined by golden-section search between its neighbouring
grid points, so that a dip narrower than the grid spacing (typical of repaired slices that touch their
neighbour) is found too (a violation of width 0 at the refined k, or a deeper size for a run).

Node slices (:class:`~shoals.market.slices.NodeSlices`, the market file's ``slices`` form): g(k) from the
node-scale w', w'' that the local vol reads, at every node, every segment midpoint, the grid above and
six points on each extrapolated wing (out to 16 ATM standard deviations); **wing**: an end slope beyond
Lee's bound |w'| <= 2; **variance**: a node with w <= 0, or an end slope that takes w below 0 beyond the
nodes; **calendar**: exact, as the difference of two piecewise-linear slices is piecewise linear: at the
union of both slices' nodes (and the grid), plus the end slopes beyond all nodes.

References: Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14 (2014)
59-71 (g(k), Lemma 2.1; calendar, Lemma 2.2); Lee, "The moment formula for implied volatility at extreme
strikes", Mathematical Finance 14 (2004).
Validation: tests/properties/test_arbitrage_properties.py (hand-made arbitrageable slices flagged, clean
surfaces pass, verdicts agree with an independent finite-difference g(k)).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from shoals.errors import ArbitrageError, InputError
from shoals.kernels.svi import butterfly_density, svi_derivatives
from shoals.market.slices import NodeSlices

KINDS = ("butterfly", "wing", "variance", "calendar")
DEFAULT_K_WIDTH = 1.5
DEFAULT_POINTS = 401


@dataclass(frozen=True)
class Violation:
    """One arbitrage violation.

    ``kind``: "butterfly" (g < 0 on a k-range of a slice), "wing" (b (1 + |rho|) > 2: g < 0 as k -> +-inf),
    "variance" (w <= 0 somewhere) or "calendar" (w(k, T_{i+1}) < w(k, T_i) on a k-range).
    ``slice_index`` i (for calendar the earlier slice of the pair; -1 for an interpolated time),
    ``expiry`` T_i, ``expiry_next`` T_{i+1} (calendar only), ``[k_lo, k_hi]`` the k-range,
    ``size``: min g (butterfly, < 0), the limit of g (wing, < 0), min w (variance, <= 0) or the largest
    decrease w_i - w_{i+1} (calendar, > 0); ``n_points`` the grid points in the range (0 for analytic kinds).
    """

    kind: str
    slice_index: int
    expiry: float
    expiry_next: float | None
    k_lo: float
    k_hi: float
    size: float
    n_points: int

    def describe(self) -> str:
        where = (f"T={self.expiry:g}->{self.expiry_next:g}" if self.expiry_next is not None else f"T={self.expiry:g}")
        measure = {"butterfly": "min g", "wing": "g(+-inf)", "variance": "min w",
                   "calendar": "max decrease of w"}[self.kind]
        return f"{self.kind} at {where}, k in [{self.k_lo:.4f}, {self.k_hi:.4f}]: {measure} = {self.size:.3g}"


@dataclass(frozen=True)
class ArbitrageReport:
    """The violations found by :func:`check_arbitrage` (or one of its parts) and how they were sought.

    ``ok`` is True when there is none.  :meth:`to_frame` gives one row per violation, :meth:`summary` a
    short text, :meth:`raise_if_arbitrage` an :class:`ArbitrageError` that proposes the repair.
    """

    violations: tuple
    expiries: tuple
    checks: tuple = KINDS
    n_points: int = DEFAULT_POINTS
    k_width: float | None = DEFAULT_K_WIDTH

    @property
    def ok(self) -> bool:
        return len(self.violations) == 0

    def of_kind(self, *kinds: str) -> tuple:
        return tuple(v for v in self.violations if v.kind in kinds)

    @property
    def slices_with_violations(self) -> tuple:
        """Sorted indices of the slices involved in a violation (both slices of a calendar pair)."""
        indices = set()
        for v in self.violations:
            if v.slice_index >= 0:
                indices.add(v.slice_index)
                if v.kind == "calendar":
                    indices.add(v.slice_index + 1)
        return tuple(sorted(indices))

    def merged(self, other: "ArbitrageReport") -> "ArbitrageReport":
        return ArbitrageReport(violations=self.violations + other.violations, expiries=self.expiries,
                               checks=tuple(dict.fromkeys(self.checks + other.checks)), n_points=self.n_points,
                               k_width=self.k_width)

    def to_frame(self):
        """One row per violation: kind, slice, expiry, expiry_next, k_lo, k_hi, size, n_points."""
        import pandas as pd

        columns = ("kind", "slice", "expiry", "expiry_next", "k_lo", "k_hi", "size", "n_points")
        rows = [(v.kind, v.slice_index, v.expiry, np.nan if v.expiry_next is None else v.expiry_next, v.k_lo,
                 v.k_hi, v.size, v.n_points) for v in self.violations]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> str:
        grid = (f"|k| <= {self.k_width:g} sqrt(T), {self.n_points} points" if self.k_width is not None
                else f"caller's k grid, {self.n_points} points")
        head = f"{len(self.expiries)} slices checked for {', '.join(self.checks)} ({grid}): "
        if self.ok:
            return head + "no arbitrage found"
        counts = {kind: len(self.of_kind(kind)) for kind in KINDS if self.of_kind(kind)}
        lines = [head + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + " violation(s)"]
        lines += ["  " + v.describe() for v in self.violations]
        return "\n".join(lines)

    def raise_if_arbitrage(self):
        if not self.ok:
            raise ArbitrageError(self.summary() + "\nrepair with shoals.arbitrage.repair.repair_surface(surface)")


def slice_grids(expiries, *, k_grid=None, k_width: float = DEFAULT_K_WIDTH, n_points: int = DEFAULT_POINTS):
    """Check grids, shape (n_slices, n_points): |k| <= k_width sqrt(T_i) uniform, or ``k_grid`` per slice."""
    expiries = np.asarray(expiries, dtype=np.float64)
    if k_grid is not None:
        grid = np.asarray(k_grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)):
            raise InputError("k_grid must be a finite 1-D array of at least 2 log-moneyness points",
                             field="k_grid", value=grid)
        return np.broadcast_to(np.sort(grid), (expiries.shape[0], grid.size))
    if not (k_width > 0 and n_points >= 2):
        raise InputError("need k_width > 0 and n_points >= 2", field="k_width/n_points", value=(k_width, n_points))
    return k_width * np.sqrt(expiries)[:, None] * np.linspace(-1.0, 1.0, int(n_points))[None, :]


def _runs(mask):
    """(start, stop) index pairs of the maximal runs of True in a 1-D boolean array (stop inclusive)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2], edges[1::2] - 1))


def svi_w_numpy(theta, k):
    """Raw SVI w(k) for one slice, theta = (a, b, rho, m, sigma), in NumPy (the kernel's formula)."""
    a, b, rho, m, sigma = theta
    x = np.asarray(k, dtype=np.float64) - m
    return a + b * (rho * x + np.sqrt(x * x + sigma * sigma))


def svi_g_numpy(theta, k):
    """Gatheral-Jacquier g(k) for one slice in NumPy (the formula of shoals.kernels.svi.butterfly_density)."""
    a, b, rho, m, sigma = theta
    k = np.asarray(k, dtype=np.float64)
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + root)
    dw = b * (rho + x / root)
    d2w = b * sigma * sigma / root ** 3
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - k * dw / (2.0 * w)) ** 2 - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w


def refined_minima(func, grid, values, iterations: int = 60):
    """Minima of a smooth function between grid points.

    Every interior discrete local minimum (values[j] < values[j-1], values[j] <= values[j+1]) is refined
    by golden-section search on [grid[j-1], grid[j+1]] (vectorised over the minima), so that a dip narrower
    than the grid spacing is found.  ``func`` maps an array of k to values.  Returns arrays (k, func(k)).
    """
    values = np.asarray(values, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if values.size < 3:
        return np.empty(0), np.empty(0)
    inner = values[1:-1]
    j = np.flatnonzero((inner < values[:-2]) & (inner <= values[2:])) + 1
    if j.size == 0:
        return np.empty(0), np.empty(0)
    lo, hi = grid[j - 1], grid[j + 1]
    ratio = 0.5 * (np.sqrt(5.0) - 1.0)
    for _ in range(iterations):
        c = hi - ratio * (hi - lo)
        d = lo + ratio * (hi - lo)
        left = func(c) < func(d)
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
    k = 0.5 * (lo + hi)
    return k, func(k)


def _merge_refined(violations, kind, index, expiry, expiry_next, grid, k_star, f_star, tolerance, sign):
    """Add the refined minima below -tolerance (f = g or the calendar gap) to the grid violations: inside
    (or next to) a reported run they deepen its size, elsewhere they are a new violation of width 0."""
    spacing = float(np.max(np.diff(grid))) if grid.size > 1 else 0.0
    out = list(violations)
    for k, value in zip(k_star, f_star):
        if not value < -tolerance:
            continue
        size = float(sign * value)
        for n, v in enumerate(out):
            if v.k_lo - spacing <= k <= v.k_hi + spacing:
                better = min(v.size, size) if sign > 0 else max(v.size, size)
                out[n] = Violation(v.kind, v.slice_index, v.expiry, v.expiry_next, min(v.k_lo, float(k)),
                                   max(v.k_hi, float(k)), better, v.n_points)
                break
        else:
            out.append(Violation(kind, index, expiry, expiry_next, float(k), float(k), size, 0))
    return out


def _params(surface):
    return {name: np.asarray(getattr(surface.params, name), dtype=np.float64)
            for name in ("a", "b", "rho", "m", "sigma")}


def slice_g(surface, grids):
    """g(k) and w(k) of every slice on its grid row: arrays of shape grids.shape."""
    p = {name: jnp.asarray(value)[:, None] for name, value in _params(surface).items()}
    d = svi_derivatives(log_moneyness=jnp.asarray(grids), **p)
    g = butterfly_density(w=d.w, dw=d.dw, d2w=d.d2w, log_moneyness=jnp.asarray(grids))
    return np.asarray(g), np.asarray(d.w)


def check_butterfly(surface, *, k_grid=None, k_width: float = DEFAULT_K_WIDTH, n_points: int = DEFAULT_POINTS,
                    times=None, tolerance: float = 0.0, refine: bool = True) -> ArbitrageReport:
    """Butterfly arbitrage of every slice: g(k) < -``tolerance`` on the grid (and, with ``refine``, at the
    refined local minima of g between grid points, see :func:`refined_minima`), the Lee wing bound
    b (1 + |rho|) <= 2 and positivity of min_k w = a + b sigma sqrt(1 - rho^2).

    ``times`` (optional) also checks the interpolated smiles w(., t) of the surface at those times
    (g from :meth:`VolSurface.derivatives`, grid |k| <= k_width sqrt(t)); their violations carry
    ``slice_index`` -1 and ``expiry`` t.

    References: Gatheral & Jacquier (2014) Lemma 2.1 and section 3; Lee (2004).
    Validation: tests/properties/test_arbitrage_properties.py.
    """
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    grids = slice_grids(expiries, k_grid=k_grid, k_width=k_width, n_points=n_points)
    if isinstance(surface.params, NodeSlices):
        violations = _node_butterfly(surface.params, expiries, grids, tolerance)
        if times is not None:
            violations += _interpolated_butterfly(surface, times, k_grid, k_width, n_points, tolerance, refine)
        return ArbitrageReport(violations=tuple(violations), expiries=tuple(float(t) for t in expiries),
                               checks=("butterfly", "wing", "variance"), n_points=grids.shape[1],
                               k_width=None if k_grid is not None else float(k_width))
    g, w = slice_g(surface, grids)
    p = _params(surface)
    violations = []
    for i, t in enumerate(expiries):
        found = _grid_violations("butterfly", i, float(t), None, grids[i], g[i] < -tolerance, g[i], np.min)
        if refine:
            theta = tuple(p[name][i] for name in ("a", "b", "rho", "m", "sigma"))
            k_star, g_star = refined_minima(lambda k, theta=theta: svi_g_numpy(theta, k), grids[i], g[i])
            found = _merge_refined(found, "butterfly", i, float(t), None, grids[i], k_star, g_star, tolerance, 1.0)
        violations += found
        for sign, side in ((1.0, "right"), (-1.0, "left")):
            slope = p["b"][i] * (1.0 + sign * p["rho"][i])
            limit = 0.25 - slope * slope / 16.0
            if slope > 2.0 and limit < -tolerance:
                k_lo, k_hi = (float(grids[i, -1]), np.inf) if side == "right" else (-np.inf, float(grids[i, 0]))
                violations.append(Violation("wing", i, float(t), None, k_lo, k_hi, float(limit), 0))
        root = np.sqrt(max(1.0 - p["rho"][i] ** 2, 0.0))
        w_min = p["a"][i] + p["b"][i] * p["sigma"][i] * root
        if w_min <= 0.0:
            k_star = p["m"][i] - p["rho"][i] * p["sigma"][i] / max(root, 1e-300)
            negative = _negative_range(p, i, k_star)
            violations.append(Violation("variance", i, float(t), None, negative[0], negative[1], float(w_min), 0))
    if times is not None:
        violations += _interpolated_butterfly(surface, times, k_grid, k_width, n_points, tolerance, refine)
    return ArbitrageReport(violations=tuple(violations), expiries=tuple(float(t) for t in expiries),
                           checks=("butterfly", "wing", "variance"), n_points=grids.shape[1],
                           k_width=None if k_grid is not None else float(k_width))


def _interpolated_butterfly(surface, times, k_grid, k_width, n_points, tolerance, refine):
    """Butterfly violations of the interpolated smiles w(., t) at ``times`` (slice index -1)."""
    violations = []
    for t in np.atleast_1d(np.asarray(times, dtype=np.float64)):
        grid = (np.sort(np.asarray(k_grid, dtype=np.float64)) if k_grid is not None
                else k_width * np.sqrt(t) * np.linspace(-1.0, 1.0, int(n_points)))

        def g_at(k, t=float(t)):
            d = surface.derivatives(jnp.asarray(k), t)
            return np.asarray(butterfly_density(w=d.w, dw=d.dw_dk, d2w=d.d2w_dk2, log_moneyness=jnp.asarray(k)))

        gt = g_at(grid)
        found = _grid_violations("butterfly", -1, float(t), None, grid, gt < -tolerance, gt, np.min)
        if refine:
            k_star, g_star = refined_minima(g_at, grid, gt)
            found = _merge_refined(found, "butterfly", -1, float(t), None, grid, k_star, g_star, tolerance, 1.0)
        violations += found
    return violations


def node_check_points(slices: NodeSlices, expiries, grids):
    """Per slice, the sorted points where the node-slice checks evaluate g: grid, nodes, segment midpoints
    and six points on each extrapolated wing (0.5 ... 16 ATM standard deviations beyond the end nodes)."""
    k_nodes = np.asarray(slices.k, dtype=np.float64)
    w_atm = np.asarray(slices.total_variance(0.0), dtype=np.float64)
    out = []
    for i in range(k_nodes.shape[0]):
        width = np.sqrt(max(w_atm[i], 1e-12))
        far = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0]) * width
        nodes = k_nodes[i]
        out.append(np.unique(np.concatenate([grids[i], nodes, 0.5 * (nodes[1:] + nodes[:-1]), nodes[0] - far,
                                             nodes[-1] + far])))
    return out


def _end_slopes(slices: NodeSlices):
    k, w = np.asarray(slices.k, dtype=np.float64), np.asarray(slices.w, dtype=np.float64)
    return (w[:, 1] - w[:, 0]) / (k[:, 1] - k[:, 0]), (w[:, -1] - w[:, -2]) / (k[:, -1] - k[:, -2])


def _node_butterfly(slices: NodeSlices, expiries, grids, tolerance):
    """Butterfly, wing and variance violations of node slices (module docstring)."""
    violations = []
    left, right = _end_slopes(slices)
    k_nodes, w_nodes = np.asarray(slices.k, dtype=np.float64), np.asarray(slices.w, dtype=np.float64)
    for i, (t, points) in enumerate(zip(expiries, node_check_points(slices, expiries, grids))):
        d = slices.derivatives(jnp.asarray(points)[:, None])
        w, dw, d2w = (np.asarray(x)[:, i] for x in d)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.asarray(butterfly_density(w=w, dw=dw, d2w=d2w, log_moneyness=points))
        positive = w > 0.0
        violations += _grid_violations("butterfly", i, float(t), None, points, positive & (g < -tolerance), g, np.min)
        for slope, k_lo, k_hi in ((right[i], float(k_nodes[i, -1]), np.inf), (left[i], -np.inf, float(k_nodes[i, 0]))):
            limit = 0.25 - slope * slope / 16.0
            if abs(slope) > 2.0 and limit < -tolerance:
                violations.append(Violation("wing", i, float(t), None, k_lo, k_hi, float(limit), 0))
        if w_nodes[i].min() <= 0.0 or left[i] > 0.0 or right[i] < 0.0:
            negative = points[~positive]
            k_lo = -np.inf if left[i] > 0.0 else float(negative.min()) if negative.size else float(k_nodes[i, 0])
            k_hi = np.inf if right[i] < 0.0 else float(negative.max()) if negative.size else float(k_nodes[i, -1])
            violations.append(Violation("variance", i, float(t), None, k_lo, k_hi,
                                        float(min(w_nodes[i].min(), w.min())), 0))
    return violations


def _node_calendar(slices: NodeSlices, expiries, grids, tolerance):
    """Calendar violations of node slices: exact at the union of the two slices' nodes (and the grid of the
    later one), plus the end slopes beyond all nodes."""
    violations = []
    k_nodes = np.asarray(slices.k, dtype=np.float64)
    left, right = _end_slopes(slices)
    for i in range(expiries.shape[0] - 1):
        points = np.unique(np.concatenate([k_nodes[i], k_nodes[i + 1], grids[i + 1]]))
        w = np.asarray(slices.total_variance(jnp.asarray(points)[:, None]))
        gap = w[:, i + 1] - w[:, i]
        violations += _grid_violations("calendar", i, float(expiries[i]), float(expiries[i + 1]), points,
                                       gap < -tolerance, -gap, np.max)
        for bad, k_lo, k_hi, decrease in ((left[i + 1] > left[i], -np.inf, float(points[0]), left[i + 1] - left[i]),
                                          (right[i + 1] < right[i], float(points[-1]), np.inf, right[i] - right[i + 1])):
            if bad:
                violations.append(Violation("calendar", i, float(expiries[i]), float(expiries[i + 1]), k_lo, k_hi,
                                            float(decrease), 0))
    return violations


def _negative_range(p, i, k_star):
    """k-range where w < 0 (w convex, so an interval), by bisection either side of its minimum."""
    def w(k):
        km = k - p["m"][i]
        return p["a"][i] + p["b"][i] * (p["rho"][i] * km + np.sqrt(km * km + p["sigma"][i] ** 2))

    ends = []
    for direction in (-1.0, 1.0):
        step = 1.0
        far = k_star + direction * step
        while w(far) < 0.0 and step < 1e6:
            step *= 2.0
            far = k_star + direction * step
        if w(far) < 0.0:
            ends.append(direction * np.inf)
            continue
        inner, outer = k_star, far
        for _ in range(80):
            mid = 0.5 * (inner + outer)
            inner, outer = (mid, outer) if w(mid) < 0.0 else (inner, mid)
        ends.append(float(outer))
    return ends[0], ends[1]


def _grid_violations(kind, index, expiry, expiry_next, grid, bad, values, reduce):
    out = []
    for start, stop in _runs(np.asarray(bad)):
        out.append(Violation(kind, index, expiry, expiry_next, float(grid[start]), float(grid[stop]),
                             float(reduce(values[start:stop + 1])), int(stop - start + 1)))
    return out


def calendar_gaps(surface, grids):
    """w_{i+1}(k) - w_i(k) for each consecutive pair on the grid of T_{i+1}: shape (n - 1, n_points)."""
    p = {name: jnp.asarray(value) for name, value in _params(surface).items()}
    pair_grids = jnp.asarray(grids[1:])
    earlier = {name: value[:-1, None] for name, value in p.items()}
    later = {name: value[1:, None] for name, value in p.items()}
    w_earlier = svi_derivatives(log_moneyness=pair_grids, **earlier).w
    w_later = svi_derivatives(log_moneyness=pair_grids, **later).w
    return np.asarray(w_later - w_earlier)


def check_calendar(surface, *, k_grid=None, k_width: float = DEFAULT_K_WIDTH, n_points: int = DEFAULT_POINTS,
                   tolerance: float = 0.0, refine: bool = True) -> ArbitrageReport:
    """Calendar arbitrage: w(k, T_{i+1}) < w(k, T_i) - ``tolerance`` on the grid of T_{i+1} (|k| <=
    k_width sqrt(T_{i+1}), the wider of the pair) or on ``k_grid``, and, with ``refine``, at the refined
    local minima of the gap between grid points.  Size: the largest decrease.

    Under the surface's interpolation (linear in t at fixed k) this is exactly dw/dt >= 0 on the grid.

    References: Gatheral & Jacquier (2014) Lemma 2.2.
    Validation: tests/properties/test_arbitrage_properties.py.
    """
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    grids = slice_grids(expiries, k_grid=k_grid, k_width=k_width, n_points=n_points)
    violations = []
    if isinstance(surface.params, NodeSlices):
        violations = _node_calendar(surface.params, expiries, grids, tolerance)
    elif expiries.shape[0] > 1:
        gaps = calendar_gaps(surface, grids)
        p = _params(surface)
        thetas = [tuple(p[name][i] for name in ("a", "b", "rho", "m", "sigma")) for i in range(expiries.shape[0])]
        for i in range(expiries.shape[0] - 1):
            found = _grid_violations("calendar", i, float(expiries[i]), float(expiries[i + 1]), grids[i + 1],
                                     gaps[i] < -tolerance, -gaps[i], np.max)
            if refine:
                def gap(k, early=thetas[i], late=thetas[i + 1]):
                    return svi_w_numpy(late, k) - svi_w_numpy(early, k)
                k_star, gap_star = refined_minima(gap, grids[i + 1], gaps[i])
                found = _merge_refined(found, "calendar", i, float(expiries[i]), float(expiries[i + 1]), grids[i + 1],
                                       k_star, gap_star, tolerance, -1.0)
            violations += found
    return ArbitrageReport(violations=tuple(violations), expiries=tuple(float(t) for t in expiries),
                           checks=("calendar",), n_points=grids.shape[1],
                           k_width=None if k_grid is not None else float(k_width))


def check_arbitrage(surface, *, k_grid=None, k_width: float = DEFAULT_K_WIDTH, n_points: int = DEFAULT_POINTS,
                    times=None, tolerance: float = 0.0, refine: bool = True) -> ArbitrageReport:
    """Butterfly (with wing and variance) and calendar checks of :func:`check_butterfly` and
    :func:`check_calendar` in one report.

    Validation: tests/properties/test_arbitrage_properties.py, tests/consistency/test_local_vol_reprices.py.
    """
    options = dict(k_grid=k_grid, k_width=k_width, n_points=n_points, tolerance=tolerance, refine=refine)
    return check_butterfly(surface, times=times, **options).merged(check_calendar(surface, **options))

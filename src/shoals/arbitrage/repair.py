"""Repair of an SVI surface with static arbitrage: the nearest arbitrage-free SVI slices, with a report.

Problem.  A slice i that has to change gets the raw SVI parameters theta_i minimising the distance in
implied-vol points to the original slice on its grid or, with quotes, to the quoted total variances plus
the original slice at the grid points outside the quoted k-range (total weight ``wing_weight``, the quotes
weighing 1: unquoted wings otherwise move freely and can force every later slice to move),

.. math::

    \\min_{\\theta_i} \\frac{1}{\\sum_j u_j} \\sum_j u_j
        \\left(\\frac{w(k_j; \\theta_i) - \\hat w_j}{2 \\sqrt{\\hat w_j T_i}\\; 0.01}\\right)^2
        + 10^{-6} \\| (\\theta_i - \\theta_i^0) / s \\|^2

(Delta w / (2 sqrt(w T)) is the first-order change of implied vol), subject to, on the grids of
:mod:`shoals.arbitrage.checks` and at the refined minima between their points (added as cutting planes):
g(k; theta_i) >= eps_g = 1e-3 (butterfly; 10 x the Dupire denominator floor), b_i (1 + |rho_i|) <= 2 - 1e-6
(wings), a_i + b_i sigma_i sqrt(1 - rho_i^2) >= w_min (positive variance), w(k; theta_i) - w(k; theta_{i-1})
>= eps_c = 1e-8 against the final previous slice (calendar) and, where it is usable (butterfly-free and
above slice i - 1), w(k; theta_{i+1}^0) - w(k; theta_i) >= eps_c against the original next slice, so that a
repair does not push the next slice. Solved as penalised least squares: the residuals above plus sqrt(mu) x
the shortfall of every constraint from 3 x its margin, by a trust-region reflective solver with bounds
(analytic Jacobians, scaled parameters), mu raised 1 -> 1e10 until every constraint holds with its margin;
started from the original parameters, then (if that did not end feasible) from the projection below. (SLSQP
on the same constraints was tried first: on real SPX/DAX fits it often stopped with "positive directional
derivative" far from the optimum; the penalty method found better feasible points in every case tried.)

Method: sequential in expiry order.  Slice i is kept exactly when it passes its own butterfly checks and
lies above the final slice i - 1.  When its only fault is lying above slice i + 1 somewhere, the cheaper of
"lower slice i below slice i + 1" and "raise slice i + 1 above slice i" (smaller objective) is taken.
Otherwise slice i is refit as above.  If the refit fails, the *projection* is used, arbitrage-free by
construction: a slice failing its butterfly conditions has its smile flattened about k = m
(b -> lambda b, a -> a + (1 - lambda) b sigma, keeping w(m); lambda in [0, 1] the largest that passes, by
bisection; lambda = 0 is a flat smile with g = 1); a slice below its predecessor is raised (a += the
largest shortfall); alternated at most 5 times, then, as the documented last resort, the slice becomes flat
at the predecessor's maximum on the grid.  By induction every slice passes its butterfly checks and lies
above its predecessor, so the result passes :func:`check_arbitrage` on the same grids; this is verified,
the plain projection of every slice is the fallback, and an :class:`ArbitrageError` is raised, never a
silent failure, if even that did not pass.  The report says per slice what was done ("unchanged",
"refit", "projection"), the parameter changes and the largest change of w and of implied vol on the
slice's grid.

References: Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14 (2014)
(conditions; section 5 on removing arbitrage by refitting under the constraints); Kraft, "A software package
for sequential quadratic programming" (1988); Branch, Coleman & Li, SIAM J. Sci. Comput. 21 (1999) 1-23
(trust-region reflective least squares).
Validation: tests/properties/test_arbitrage_properties.py (repair output always passes check_arbitrage,
clean surfaces unchanged, repairs small for small violations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from shoals.arbitrage.checks import (DEFAULT_K_WIDTH, DEFAULT_POINTS, ArbitrageReport, check_arbitrage,
                                     refined_minima, slice_grids, svi_g_numpy)
from shoals.errors import ArbitrageError, InputError
from shoals.market.surface import PARAM_NAMES, VolSurface
from shoals.market.svi import SVIParams

BUTTERFLY_MARGIN = 1e-3    # 10 x the Dupire denominator floor (shoals.kernels.dupire): repaired slices never trip it
CALENDAR_MARGIN = 1e-8
WING_MARGIN = 1e-6
MIN_TOTAL_VARIANCE = 1e-8
_SCALES = np.array([0.01, 0.1, 1.0, 0.1, 0.1])


@dataclass(frozen=True)
class SliceRepair:
    """What :func:`repair_surface` did to one slice.

    ``action``: "unchanged", "refit" (constrained least squares) or "projection" (the arbitrage-free
    projection of the module docstring: smile flattened and/or level raised).  ``before`` / ``after`` the
    SVI parameters; ``max_abs_dw`` the largest |Delta w| and ``max_abs_dvol`` / ``rms_dvol`` the largest
    and RMS change of implied vol, in vol points (0.01), on the slice's check grid (which reaches far beyond
    the quotes: with quotes, wing changes there cost nothing); ``target_rmse_before`` / ``_after`` the
    weighted RMS distance, in vol points, from the target (the quotes when given, else the original slice
    on its grid, so 0 before).
    """

    index: int
    expiry: float
    action: str
    before: Mapping[str, float]
    after: Mapping[str, float]
    max_abs_dw: float = 0.0
    max_abs_dvol: float = 0.0
    rms_dvol: float = 0.0
    target_rmse_before: float = 0.0
    target_rmse_after: float = 0.0
    converged: bool | None = None
    iterations: int = 0
    note: str = ""

    def __post_init__(self):
        object.__setattr__(self, "before", MappingProxyType(dict(self.before)))
        object.__setattr__(self, "after", MappingProxyType(dict(self.after)))

    @property
    def deltas(self) -> dict:
        return {name: self.after[name] - self.before[name] for name in PARAM_NAMES}


@dataclass(frozen=True)
class RepairReport:
    """Per-slice account of a repair (:class:`SliceRepair`) and the arbitrage reports before and after."""

    slices: tuple
    before: ArbitrageReport
    after: ArbitrageReport
    settings: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    @property
    def changed(self) -> tuple:
        return tuple(s.index for s in self.slices if s.action != "unchanged")

    def to_frame(self):
        """One row per slice: action, parameter deltas d_a ... d_sigma, max/RMS change in vol points."""
        import pandas as pd

        rows = []
        for s in self.slices:
            row = {"slice": s.index, "expiry": s.expiry, "action": s.action}
            row.update({f"d_{name}": delta for name, delta in s.deltas.items()})
            row.update({"max_abs_dw": s.max_abs_dw, "max_abs_dvol_points": s.max_abs_dvol,
                        "rms_dvol_points": s.rms_dvol, "target_rmse_before": s.target_rmse_before,
                        "target_rmse_after": s.target_rmse_after, "converged": s.converged,
                        "iterations": s.iterations, "note": s.note})
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [f"repair: {len(self.before.violations)} violation(s) before, {len(self.after.violations)} after; "
                 f"{len(self.changed)} of {len(self.slices)} slices changed"]
        for s in self.slices:
            if s.action != "unchanged":
                lines.append(f"  slice {s.index} (T={s.expiry:g}): {s.action}, max |dvol| {s.max_abs_dvol:.3f} "
                             f"vol pts (rms {s.rms_dvol:.3f}), max |dw| {s.max_abs_dw:.2e}, distance to target "
                             f"{s.target_rmse_before:.3f} -> {s.target_rmse_after:.3f} vol pts"
                             + (f"; {s.note}" if s.note else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- numerics


def _w(theta, k):
    km = k - theta[3]
    return theta[0] + theta[1] * (theta[2] * km + np.sqrt(km * km + theta[4] ** 2))


def _dw_dtheta(theta, k):
    """d w / d(a, b, rho, m, sigma): shape k.shape + (5,)."""
    a, b, rho, m, sigma = theta
    km = k - m
    root = np.sqrt(km * km + sigma * sigma)
    return np.stack([np.ones_like(k), rho * km + root, b * km, -b * (rho + km / root), b * sigma / root], axis=-1)


def _min_w(theta):
    return theta[0] + theta[1] * theta[4] * np.sqrt(max(1.0 - theta[2] ** 2, 0.0))


def _min_g(theta, grid):
    """min g on ``grid`` and at its refined local minima between grid points (NaN-safe: NaN -> -inf)."""
    g = svi_g_numpy(theta, grid)
    _, g_star = refined_minima(lambda k: svi_g_numpy(theta, k), grid, g)
    values = np.concatenate([g, g_star])
    return -np.inf if np.any(np.isnan(values)) else float(np.min(values))


def _min_gap(theta, previous, grid):
    """min of w(theta) - w(previous) on ``grid`` and at its refined local minima between grid points."""
    def gap(k):
        return _w(theta, k) - _w(previous, k)

    values = gap(grid)
    _, refined = refined_minima(gap, grid, values)
    return float(np.min(np.concatenate([values, refined])))


def _butterfly_ok(theta, grid, margin):
    if theta[1] * (1.0 + abs(theta[2])) > 2.0 - WING_MARGIN or _min_w(theta) < MIN_TOTAL_VARIANCE:
        return False
    return _min_g(theta, grid) >= margin


def _calendar_shortfall(theta, previous, grid, margin):
    """max_k (w_prev - w + margin) on ``grid`` and between its points (<= 0 when calendar-free with the
    margin)."""
    return margin - _min_gap(theta, previous, grid)


def _flatten(theta, lam):
    """b -> lam b, a -> a + (1 - lam) b sigma (+ a lift so that the flat limit is >= 2 w_min): keeps w(m)."""
    a, b, rho, m, sigma = theta
    lift = max(0.0, 2.0 * MIN_TOTAL_VARIANCE - (a + b * sigma))
    return np.array([a + (1.0 - lam) * (b * sigma + lift), lam * b, rho, m, sigma])


def _shrink(theta, grid, margin):
    """Largest lam in [0, 1] (bisection) with _flatten(theta, lam) butterfly-free; lam = 0 always is."""
    if _butterfly_ok(theta, grid, margin):
        return theta, 1.0
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _butterfly_ok(_flatten(theta, mid), grid, margin) else (lo, mid)
    return _flatten(theta, lo), lo


def _slice_ok(theta, previous, grid, margin_g, margin_c):
    """Butterfly conditions on ``grid`` and calendar against ``previous`` (or None), with the margins."""
    return _butterfly_ok(theta, grid, margin_g) and (
        previous is None or _calendar_shortfall(theta, previous, grid, margin_c) <= 0.0)


def _project_slice(theta, previous, grid, margin_g, margin_c):
    """Arbitrage-free projection of one slice given its (final) predecessor (module docstring, step 1).
    Returns (theta, note); the result passes _slice_ok with the margins."""
    if _slice_ok(theta, previous, grid, margin_g, margin_c):
        return theta, ""
    steps = []
    for _ in range(5):
        if not _butterfly_ok(theta, grid, margin_g):
            theta, lam = _shrink(theta, grid, 2.0 * margin_g)
            steps.append(f"smile flattened (b x {lam:.4f})")
        if previous is not None:
            shortfall = _calendar_shortfall(theta, previous, grid, 2.0 * margin_c)
            if shortfall > 0.0:
                theta = theta + np.array([shortfall, 0.0, 0.0, 0.0, 0.0])
                steps.append(f"level raised (a + {shortfall:.3g})")
        if _slice_ok(theta, previous, grid, margin_g, margin_c):
            break
    else:
        level = max(2.0 * MIN_TOTAL_VARIANCE, theta[0] + theta[1] * theta[4])
        if previous is not None:
            level = max(level, float(np.max(_w(previous, grid))) + 2.0 * margin_c)
        theta = np.array([level, 0.0, theta[2], theta[3], theta[4]])
        steps.append("last resort: flat smile at the predecessor's maximum")
    return theta, "; ".join(dict.fromkeys(steps))


def _project(thetas, grids, margin_g, margin_c):
    """Projection of every slice in expiry order.  Returns (thetas, notes)."""
    thetas = thetas.copy()
    notes = [""] * len(thetas)
    for i in range(len(thetas)):
        thetas[i], notes[i] = _project_slice(thetas[i], thetas[i - 1] if i > 0 else None, grids[i], margin_g,
                                             margin_c)
    return thetas, notes


def _g_and_jacobian(theta, k):
    """g(k; theta) and dg/dtheta (shape k.shape + (5,)) by the chain rule through w, w', w''.

    With x = k - m, R = sqrt(x^2 + sigma^2): w = a + b(rho x + R), w' = b(rho + x/R), w'' = b sigma^2/R^3 and
    dg/dw = (1 - k w'/2w) k w'/w^2 + w'^2/(4 w^2),  dg/dw' = -(1 - k w'/2w) k/w - (w'/2)(1/w + 1/4),
    dg/dw'' = 1/2.
    """
    with np.errstate(divide="ignore", invalid="ignore"):   # w = 0: g is NaN and fails every test
        return _g_and_jacobian_unguarded(theta, k)


def _g_and_jacobian_unguarded(theta, k):
    a, b, rho, m, sigma = theta
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    r3, r5 = root ** 3, root ** 5
    w = a + b * (rho * x + root)
    dw = b * (rho + x / root)
    d2w = b * sigma * sigma / r3
    lead = 1.0 - k * dw / (2.0 * w)
    g = lead ** 2 - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w
    g_w = lead * k * dw / (w * w) + dw * dw / (4.0 * w * w)
    g_dw = -lead * k / w - 0.5 * dw * (1.0 / w + 0.25)
    one, zero = np.ones_like(k), np.zeros_like(k)
    d_w = np.stack([one, rho * x + root, b * x, -b * (rho + x / root), b * sigma / root], axis=-1)
    d_dw = np.stack([zero, rho + x / root, b * one, -b * sigma * sigma / r3, -b * x * sigma / r3], axis=-1)
    d_d2w = np.stack([zero, sigma * sigma / r3, zero, 3.0 * b * sigma * sigma * x / r5,
                      b * sigma * (2.0 * root * root - 3.0 * sigma * sigma) / r5], axis=-1)
    return g, g_w[..., None] * d_w + g_dw[..., None] * d_dw + 0.5 * d_d2w


class _SliceFit:
    """Constrained least squares for one slice (module docstring), its neighbours fixed.

    The optimiser works on theta / _SCALES; calendar and variance constraints are in units of 1e-3 of total
    variance, g constraints as they are.  A point is feasible when every constraint holds with its margin
    (so the zero-tolerance checks pass)."""

    def __init__(self, theta0, target, grid, previous, following, margin_g, margin_c):
        self.theta0 = theta0
        self.target = target
        self.grid = grid
        self.previous = previous        # theta of the fixed previous slice (calendar on ``grid``) or None
        self.following = following      # (theta, its grid) of the fixed next slice or None
        self.margin_g = margin_g
        self.margin_c = margin_c
        self.points = np.asarray(grid, dtype=np.float64)               # g and calendar-previous points
        self.following_points = None if following is None else np.asarray(following[1], dtype=np.float64)

    def objective(self, theta):
        k, w_hat, weights, scale = self.target
        residual = (_w(theta, k) - w_hat) / scale
        norm = weights.sum()
        delta = (theta - self.theta0) / _SCALES
        value = np.sum(weights * residual ** 2) / norm + 1e-6 * np.sum(delta ** 2)
        gradient = 2.0 * np.sum((weights * residual / scale)[:, None] * _dw_dtheta(theta, k), 0) / norm
        return value, gradient + 2e-6 * delta / _SCALES

    def constraints(self, theta):
        """(values, jacobian, row scales, row margins, grid-row mask); feasible means values >= margins."""
        a, b, rho, m, sigma = theta
        g, dg = _g_and_jacobian(theta, self.points)
        root = np.sqrt(max(1.0 - rho * rho, 1e-300))
        rows = [(g, dg, 1.0, self.margin_g, True),
                (np.array([2.0 - b * (1.0 + rho), 2.0 - b * (1.0 - rho)]),
                 np.array([[0.0, -(1.0 + rho), -b, 0.0, 0.0], [0.0, -(1.0 - rho), b, 0.0, 0.0]]), 1.0, WING_MARGIN,
                 False),
                (np.array([_min_w(theta)]), np.array([[1.0, sigma * root, -b * sigma * rho / root, 0.0, b * root]]),
                 1e-3, MIN_TOTAL_VARIANCE, False)]
        if self.previous is not None:
            rows.append((_w(theta, self.points) - _w(self.previous, self.points), _dw_dtheta(theta, self.points),
                         1e-3, self.margin_c, True))
        if self.following is not None:
            following, points = self.following[0], self.following_points
            rows.append((_w(following, points) - _w(theta, points), -_dw_dtheta(theta, points), 1e-3,
                         self.margin_c, True))
        return (np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows], axis=0),
                np.concatenate([np.full(r[0].shape, r[2]) for r in rows]),
                np.concatenate([np.full(r[0].shape, r[3]) for r in rows]),
                np.concatenate([np.full(r[0].shape, r[4]) for r in rows]))

    def violated(self, theta):
        """Mask of the constraints failing their margins at ``theta`` (None if theta is not finite)."""
        if not np.all(np.isfinite(theta)):
            return None
        values, _, _, margins, _ = self.constraints(theta)
        return ~(values >= margins)

    def feasible(self, theta):
        """Every constraint holds with its margin at the points and between the grid points."""
        bad = self.violated(theta)
        if bad is None or bad.any() or not _butterfly_ok(theta, self.grid, self.margin_g):
            return False
        if self.previous is not None and _calendar_shortfall(theta, self.previous, self.grid, self.margin_c) > 0:
            return False
        if self.following is not None and _min_gap(self.following[0], theta, self.following[1]) < self.margin_c:
            return False
        return True

    def add_points(self, theta):
        """Cutting planes: add the refined between-grid minima of g and of the calendar gaps that fall
        short of 2 x their margin.  Returns whether any point was added."""
        added = False

        def extend(points, candidates):
            new = candidates[np.all(np.abs(candidates[:, None] - points[None, :]) > 1e-12, axis=1)]
            return np.sort(np.concatenate([points, new])), new.size > 0

        k_g, g_star = refined_minima(lambda k: svi_g_numpy(theta, k), self.grid, svi_g_numpy(theta, self.grid))
        candidates = [k_g[~(g_star >= 2.0 * self.margin_g)]]
        if self.previous is not None:
            def gap(k):
                return _w(theta, k) - _w(self.previous, k)
            k_c, c_star = refined_minima(gap, self.grid, gap(self.grid))
            candidates.append(k_c[c_star < 2.0 * self.margin_c])
        self.points, added = extend(self.points, np.concatenate(candidates))
        if self.following is not None:
            def gap_next(k):
                return _w(self.following[0], k) - _w(theta, k)
            k_f, f_star = refined_minima(gap_next, self.following[1], gap_next(self.following[1]))
            self.following_points, more = extend(self.following_points, k_f[f_star < 2.0 * self.margin_c])
            added = added or more
        return added

    def residuals(self, theta, penalty):
        """Residual vector and Jacobian of the penalised least-squares problem: fit residuals, a small
        ridge to the original parameters and sqrt(penalty) x the shortfall of every constraint from 3 x its
        margin (in the constraint's scale)."""
        k, w_hat, weights, scale = self.target
        root_weights = np.sqrt(weights / weights.sum())
        fit = root_weights * (_w(theta, k) - w_hat) / scale
        fit_jac = (root_weights / scale)[:, None] * _dw_dtheta(theta, k)
        ridge = 1e-3 * (theta - self.theta0) / _SCALES
        ridge_jac = np.diag(1e-3 / _SCALES)
        values, jac, scales, margins, _ = self.constraints(theta)
        shortfall = (values - 3.0 * margins) / scales
        active = shortfall < 0.0
        weight = np.sqrt(penalty)
        return (np.concatenate([fit, ridge, weight * np.where(active, shortfall, 0.0)]),
                np.concatenate([fit_jac, ridge_jac, weight * np.where(active[:, None], jac / scales[:, None], 0.0)]))

    def solve(self, starts, max_iterations):
        """Penalised least squares (trust-region reflective, bounds) with the penalty raised 1 -> 1e10 until
        the constraints hold with their margins, from each start (the next only if the previous did not
        end feasible); tiny leftovers are removed by the projection.  Returns (theta, objective, converged,
        function evaluations, message) for the feasible result with the least objective, or None."""
        stacked = np.stack(list(starts) + [self.theta0])
        lo, hi = stacked.min(axis=0), stacked.max(axis=0)
        bounds = np.array([(min(lo[0], -1.0), max(hi[0], 10.0)), (0.0, max(hi[1], 2.0)),
                           (min(lo[2], -0.999), max(hi[2], 0.999)), (min(lo[3], -5.0), max(hi[3], 5.0)),
                           (max(1e-4, 0.2 * lo[4]), max(hi[4], 10.0))]) / _SCALES[:, None]
        best = None
        for start in starts:
            y = np.clip(start / _SCALES, bounds[:, 0], bounds[:, 1])
            evaluations, result, first_level = 0, None, 0
            for _ in range(6):                      # cutting-plane rounds
                y, result, used, level = self._penalised(y, bounds, max_iterations, first_level)
                evaluations += used
                if result is None or self.feasible(y * _SCALES) or not self.add_points(y * _SCALES):
                    break
                first_level = level
            if result is None:
                continue
            theta = y * _SCALES
            if not self.feasible(theta):
                theta, _ = _project_slice(theta, self.previous, self.grid, self.margin_g, self.margin_c)
            if not self.feasible(theta):
                continue
            value = self.objective(theta)[0]
            if best is None or value < best[1]:
                best = (theta, value, bool(result.status > 0), evaluations, str(result.message))
            break
        return best

    def _penalised(self, y, bounds, max_iterations, first_level):
        """Penalty continuation from level ``first_level`` until the point constraints hold.  Returns
        (y, last result or None, function evaluations, level reached)."""
        levels = (1.0, 1e2, 1e4, 1e6, 1e8, 1e10)
        from scipy.optimize import least_squares  # lazy: keeps scipy.optimize off `import shoals` (0.27 s)

        evaluations, result, level = 0, None, first_level
        for level in range(first_level, len(levels)):
            cache = {}

            def residuals(z, penalty=levels[level], cache=cache):
                key = z.tobytes()
                if key not in cache:
                    cache.clear()
                    values, jac = self.residuals(z * _SCALES, penalty)
                    cache[key] = (values, jac * _SCALES[None, :])
                return cache[key]

            try:
                result = least_squares(lambda z: residuals(z)[0], y, jac=lambda z: residuals(z)[1],
                                       bounds=(bounds[:, 0], bounds[:, 1]), method="trf", max_nfev=max_iterations)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                return y, None, evaluations, level
            evaluations += int(result.nfev)
            y = np.asarray(result.x, dtype=np.float64)
            bad = self.violated(y * _SCALES)
            if bad is not None and not bad.any():
                break
        return y, result, evaluations, level


def _targets(surface, grids, quotes_k, quotes_w, weights, wing_weight):
    """Per slice, (objective target, reported target), each (k, w_hat, weights, scale).

    Without quotes both are the original slice on its grid.  With quotes the reported target is the quotes;
    the objective adds the original slice at the grid points outside the quoted k-range with total weight
    ``wing_weight`` (the quotes' weights sum to 1), so that the wings, which no quote pins down, stay close
    to the original slice instead of moving freely (a free wing can force every later slice to move)."""
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    n = expiries.shape[0]
    thetas = np.asarray(surface.params.stacked(), dtype=np.float64).reshape(n, 5)
    if (quotes_k is None) != (quotes_w is None):
        raise InputError("give both quotes_k and quotes_w (one array per slice, None to use the slice)",
                         field="quotes_k/quotes_w")
    for name, value in (("quotes_k", quotes_k), ("quotes_w", quotes_w), ("weights", weights)):
        if value is not None and len(value) != n:
            raise InputError(f"must hold one entry per slice ({n}), got {len(value)}", field=name)

    def target(k, w_hat, u, t):
        return k, w_hat, u, 0.02 * np.sqrt(np.maximum(w_hat, 1e-6) * t)

    objective, reported = [], []
    for i in range(n):
        grid, t = grids[i], expiries[i]
        original = target(grid, _w(thetas[i], grid), np.ones_like(grid), t)
        if quotes_k is None or quotes_k[i] is None or not len(quotes_k[i]):
            objective.append(original)
            reported.append(original)
            continue
        k = np.asarray(quotes_k[i], dtype=np.float64)
        w_hat = np.asarray(quotes_w[i], dtype=np.float64)
        if k.shape != w_hat.shape or k.ndim != 1 or not (np.all(np.isfinite(k)) and np.all(w_hat > 0.0)):
            raise InputError(f"slice {i}: quotes_k and quotes_w must be 1-D, of equal length, finite, w > 0",
                             field="quotes_w", row=i)
        u = np.ones_like(k)
        if weights is not None and weights[i] is not None:
            u = np.broadcast_to(np.asarray(weights[i], dtype=np.float64), k.shape).copy()
            if np.any(u < 0.0) or not np.any(u > 0.0):
                raise InputError(f"slice {i}: weights must be >= 0 with one > 0", field="weights", row=i)
        u = u / u.sum()
        quotes = target(k, w_hat, u, t)
        reported.append(quotes)
        outside = (grid < k.min()) | (grid > k.max())
        if wing_weight > 0.0 and outside.any():
            anchor = [x[outside] for x in original]
            anchor[2] = np.full(int(outside.sum()), wing_weight / outside.sum())
            objective.append(tuple(np.concatenate([q, a]) for q, a in zip(quotes, anchor)))
        else:
            objective.append(quotes)
    return objective, reported


def _refit_slice(i, thetas0, final, targets, grids, margin_g, margin_c, max_iterations, upper):
    """Constrained least squares for slice i alone: butterfly, above final[i - 1] and, when ``upper``,
    below the original slice i + 1.  Returns (theta, objective, converged, iterations, message) or None."""
    n = thetas0.shape[0]
    previous = final[i - 1] if i > 0 else None
    following = (thetas0[i + 1], grids[i + 1]) if upper and i + 1 < n else None
    fit = _SliceFit(thetas0[i], targets[i], grids[i], previous, following, margin_g, margin_c)
    projected, _ = _project_slice(thetas0[i], previous, grids[i], margin_g, margin_c)
    return fit.solve([thetas0[i], projected], max_iterations)


def _upper_usable(i, thetas0, final, grids, margin_g, margin_c):
    """Whether the original slice i + 1 can bound slice i from above: it exists, is butterfly-free and lies
    above the final slice i - 1 on the grid of slice i."""
    n = thetas0.shape[0]
    if i + 1 >= n or not _butterfly_ok(thetas0[i + 1], grids[i + 1], margin_g):
        return False
    return i == 0 or _calendar_shortfall(thetas0[i + 1], final[i - 1], grids[i], 4.0 * margin_c) <= 0.0


def repair_surface(surface: VolSurface, *, quotes_k=None, quotes_w=None, weights=None,
                   k_width: float = DEFAULT_K_WIDTH, n_points: int = DEFAULT_POINTS,
                   butterfly_margin: float = BUTTERFLY_MARGIN, calendar_margin: float = CALENDAR_MARGIN,
                   wing_weight: float = 0.25, max_iterations: int = 200):
    """The nearest arbitrage-free SVI surface to ``surface`` (module docstring), and a :class:`RepairReport`.

    ``quotes_k`` / ``quotes_w`` (optional): per slice, log-moneyness and total variances to stay close to
    (``None`` for a slice: its original SVI smile on the check grid); ``weights`` per slice, per quote;
    ``wing_weight``: with quotes, the total weight (quotes: 1) of the original slice at the grid points
    outside the quoted k-range, which keeps unquoted wings near the original.
    Slices are changed only where needed (module docstring: sequential in expiry order; a clean slice
    stays exactly as it was unless the next one must move to it, or it is lowered below the next one
    because that is the smaller change).  The grids are those of
    :func:`check_arbitrage` with the same ``k_width`` / ``n_points``; the result passes
    ``check_arbitrage(result, k_width=k_width, n_points=n_points)`` (verified; ArbitrageError otherwise).

    ``max_iterations``: function evaluations of the least-squares solver per penalty level.

    References: Gatheral & Jacquier (2014); Branch, Coleman & Li (1999).
    Validation: tests/properties/test_arbitrage_properties.py.
    """
    options = dict(k_width=k_width, n_points=n_points)
    before = check_arbitrage(surface, **options)
    expiries = np.asarray(surface.expiries, dtype=np.float64)
    n = expiries.shape[0]
    grids = np.asarray(slice_grids(expiries, **options))
    thetas0 = np.asarray(surface.params.stacked(), dtype=np.float64).reshape(n, 5)
    targets, reported = _targets(surface, grids, quotes_k, quotes_w, weights, wing_weight)
    settings = dict(options, butterfly_margin=butterfly_margin, calendar_margin=calendar_margin,
                    wing_weight=wing_weight, max_iterations=max_iterations, quotes=quotes_k is not None)
    if before.ok:
        slices = []
        for i in range(n):
            rmse = _target_rmse(thetas0[i], reported[i], expiries[i])
            slices.append(SliceRepair(i, float(expiries[i]), "unchanged", _as_dict(thetas0[i]), _as_dict(thetas0[i]),
                                      target_rmse_before=rmse, target_rmse_after=rmse))
        slices = tuple(slices)
        return surface, RepairReport(slices, before, before, settings)

    final = thetas0.copy()
    actions = ["unchanged"] * n
    info = [(None, 0, "")] * n
    for i in range(n):
        previous = final[i - 1] if i > 0 else None
        own_ok = _slice_ok(thetas0[i], previous, grids[i], 0.0, 0.0)
        crosses_next = i + 1 < n and _calendar_shortfall(thetas0[i + 1], thetas0[i], grids[i + 1], 0.0) > 0.0
        upper = _upper_usable(i, thetas0, final, grids, butterfly_margin, calendar_margin)
        if own_ok and not (crosses_next and upper):
            continue
        fit = _refit_slice(i, thetas0, final, targets, grids, butterfly_margin, calendar_margin, max_iterations,
                           upper) if upper else None
        note = "kept below the next slice" if fit is not None else ""
        if own_ok:
            # only a crossing with the next slice: lower this slice, or leave it and raise the next one
            # (decided by the smaller refit objective)
            if fit is None:
                continue
            final_if_kept = final.copy()
            final_if_kept[i] = thetas0[i]
            alternative = _refit_slice(i + 1, thetas0, final_if_kept, targets, grids, butterfly_margin,
                                       calendar_margin, max_iterations,
                                       _upper_usable(i + 1, thetas0, final_if_kept, grids, butterfly_margin,
                                                     calendar_margin))
            if alternative is not None and alternative[1] <= fit[1]:
                continue
            note = "lowered below the next slice (cheaper than raising it)"
        if fit is None:
            fit = _refit_slice(i, thetas0, final, targets, grids, butterfly_margin, calendar_margin, max_iterations,
                               False)
        if fit is not None:
            final[i] = fit[0]
            actions[i] = "refit"
            message = "" if fit[2] else f"least squares: {fit[4]} (result feasible)"
            info[i] = (fit[2], fit[3], "; ".join(x for x in (note, message) if x))
        else:
            final[i], steps = _project_slice(thetas0[i], previous, grids[i], butterfly_margin, calendar_margin)
            actions[i] = "projection"
            info[i] = (None, 0, "refit failed: " + steps)
    repaired = _surface_from(surface, final)
    after = check_arbitrage(repaired, **options)
    if not after.ok:
        projected, notes = _project(thetas0, grids, butterfly_margin, calendar_margin)
        final = projected
        actions = ["projection" if not np.array_equal(projected[i], thetas0[i]) else "unchanged" for i in range(n)]
        info = [(None, 0, notes[i]) for i in range(n)]
        repaired = _surface_from(surface, final)
        after = check_arbitrage(repaired, **options)
        if not after.ok:
            raise ArbitrageError("repair_surface could not remove every violation (please report this surface):\n"
                                 + after.summary())
    slices = []
    for i in range(n):
        if np.array_equal(final[i], thetas0[i]):
            actions[i] = "unchanged"
        dw, dvol = _changes(thetas0[i], final[i], grids[i], expiries[i])
        converged, iterations, note = info[i]
        slices.append(SliceRepair(i, float(expiries[i]), actions[i], _as_dict(thetas0[i]), _as_dict(final[i]),
                                  max_abs_dw=float(np.max(np.abs(dw))), max_abs_dvol=float(np.max(np.abs(dvol))),
                                  rms_dvol=float(np.sqrt(np.mean(dvol ** 2))),
                                  target_rmse_before=_target_rmse(thetas0[i], reported[i], expiries[i]),
                                  target_rmse_after=_target_rmse(final[i], reported[i], expiries[i]),
                                  converged=converged, iterations=iterations,
                                  note=note if actions[i] != "unchanged" else ""))
    return repaired, RepairReport(tuple(slices), before, after, settings)


def _target_rmse(theta, target, expiry):
    """Weighted RMS of the implied-vol distance (vol points) from the target points."""
    k, w_hat, weights, _ = target
    vol = np.sqrt(np.maximum(_w(theta, k), 0.0) / expiry)
    error = 100.0 * (vol - np.sqrt(np.maximum(w_hat, 0.0) / expiry))
    return float(np.sqrt(np.sum(weights * error ** 2) / np.sum(weights)))


def _as_dict(theta):
    return {name: float(value) for name, value in zip(PARAM_NAMES, theta)}


def _changes(theta0, theta, grid, expiry):
    w0, w1 = _w(theta0, grid), _w(theta, grid)
    vol0 = np.sqrt(np.maximum(w0, 0.0) / expiry)
    vol1 = np.sqrt(np.maximum(w1, 0.0) / expiry)
    return w1 - w0, 100.0 * (vol1 - vol0)


def _surface_from(surface, thetas):
    params = SVIParams.from_stacked(jnp.asarray(thetas))
    return VolSurface(expiries=jnp.asarray(surface.expiries, dtype=jnp.float64), params=params)

"""An arbitrage-free smoothing spline in total variance, fitted inside bid/ask: the ``spline`` model.

Each expiry T_i gets a :class:`shoals.market.slices.NodeSlices` slice, total variance w_j at m nodes
k_j uniform on the quoted log-moneyness range widened on both sides (linear between nodes, linear
beyond, derivatives read at the node scale: the rules of :mod:`shoals.market.slices`).  The slices are
fitted one after the other, shortest expiry first, each as a sequence of convex quadratic programs
(sequential convex programming on the butterfly condition):

.. math::

    \\min_{w}\\; \\frac{1}{n}\\sum_q \\Big[\\frac{(w(k_q) - w^{ask}_q)_+^2 + (w^{bid}_q - w(k_q))_+^2}{\\tau_q^2}
       + \\mu \\frac{(w(k_q) - w^{mid}_q)^2}{\\tau_q^2}\\Big]
       + \\lambda\\, s^3 \\sum_j h \\Big(\\frac{w_{j-1} - 2 w_j + w_{j+1}}{h^2\\, \\bar w}\\Big)^2

with w^{bid}, w^{ask}, w^{mid} the total variances of the quotes' bid, ask and mid implied vols (a
missing bid vol is 0), tau_q the half spread in total variance (floored), s = sigma_ATM sqrt(T) (the
smoothness term is the integral of the squared curvature in the standardised variable k / s, so one
lambda fits every expiry) and w-bar the slice's ATM total variance.  Zero cost inside the band, a
quadratic one outside it, a small pull to the mid (mu) and the roughness penalty: the smoothest smile
that stays within bid/ask, a convex, well-conditioned problem.  Constraints, all linear:

* **butterfly**: g(k) >= margin at every node, between nodes and on the extrapolated wings, with
  g = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2 the Gatheral-Jacquier density factor of the
  slice as the local vol reads it (node-scale w', w'').  g is not linear in w: it is linearised at the
  current iterate and the program solved again until the exact g >= 0 everywhere (a few rounds);
* **calendar**: w_i(k) >= w_{i-1}(k) for every k, which for two piecewise-linear slices is exact at the
  union of their nodes plus the two end slopes (left: s_1^{(i)} <= s_1^{(i-1)}, right: the reverse);
* **wings**: end slopes in [-2 + 1e-3, -1e-6] (left) and [1e-6, 2 - 1e-3] (right) (Lee's moment bound; w stays
  positive beyond the nodes), and w_j >= 1e-4 w-bar.

Solved by Clarabel (interior point).  Fengler's arbitrage-free smoothing spline works in call-price
space on the quoted strikes; this is its counterpart in total variance on the market file's node
form, so that what is fitted is exactly what the pipeline consumes.

References: Fengler, "Arbitrage-free smoothing of the implied volatility surface", Quantitative Finance
9 (2009) 417-428; Gatheral & Jacquier (2014) for g(k) and the calendar condition; Lee (2004) for the
wings; Goulart & Chen, "Clarabel: an interior-point solver for conic programs with quadratic
objectives" (2024).
Validation: tests/unit/test_spline_fit.py, tests/consistency/test_spline_surface.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from shoals.errors import CalibrationError, InputError
from shoals.market.quotes import SmileData
from shoals.market.slices import NodeSlices

WING_SLOPE = 2.0 - 1e-3
WING_FLOOR = 1e-6         # |end slope| >= 1e-6: w grows beyond the nodes, never flat to rounding
CALENDAR_MARGIN = 1e-8    # w_i - w_{i-1} >= 1e-8 w-bar_i and end slopes apart by >= 1e-6: ordered beyond rounding
SLOPE_MARGIN = 1e-6


@dataclass(frozen=True)
class SplineSettings:
    """Settings of :func:`fit_spline_surface` (defaults measured on SPX 2011-01-24 and synthetic Heston
    markets, see docs/calibration.md).

    ``nodes`` per slice (>= 200, the market file's minimum); ``widening`` the node range beyond the quotes
    on each side, in multiples of sigma_ATM sqrt(T) plus ``widening_share`` of the quoted range;
    ``smoothness`` lambda; ``mid_weight`` mu; ``spread_floor`` the smallest half spread, in vol;
    ``mid_only_spread`` the half width, in vol, of the band put around a quote with a mid vol only (a vol
    grid such as the DAX file);
    ``margin`` the floor on the linearised g; ``max_rounds`` of linearisation per slice.
    """

    nodes: int = 240
    widening: float = 1.0
    widening_share: float = 0.25
    smoothness: float = 1e-2
    mid_weight: float = 0.05
    spread_floor: float = 2e-4
    mid_only_spread: float = 2.5e-3
    margin: float = 1e-3
    max_rounds: int = 12

    def __post_init__(self):
        if int(self.nodes) < 200:
            raise InputError("a slice needs at least 200 nodes (BOOK_SCHEMA.md, market 'slices')",
                             field="nodes", value=self.nodes)
        for name in ("widening", "widening_share", "smoothness", "mid_weight", "spread_floor", "mid_only_spread",
                     "margin"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise InputError("must be a finite number >= 0", field=name, value=value)
        if self.spread_floor <= 0.0:
            raise InputError("must be > 0", field="spread_floor", value=self.spread_floor)
        if int(self.max_rounds) < 1:
            raise InputError("must be >= 1", field="max_rounds", value=self.max_rounds)


@dataclass(frozen=True)
class SplineFit:
    """Result of :func:`fit_spline_surface`, one entry per slice: ``slices`` (NodeSlices), ``expiries``,
    ``rmse_vol_points`` (fitted vs mid, x100), ``inside_share`` (fitted vol within [bid, ask]; a missing bid
    counts as 0; a mid-only quote counts as inside within ``mid_only_spread``), ``min_butterfly_density``
    (exact g at the check points), ``converged`` (all conditions held within ``max_rounds``),
    ``iterations`` (quadratic programs solved), ``quotes`` and ``seconds``."""

    slices: NodeSlices
    expiries: np.ndarray
    rmse_vol_points: np.ndarray
    inside_share: np.ndarray
    min_butterfly_density: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    quotes: np.ndarray
    seconds: float


def interpolation_rows(nodes, points, *, clip=False):
    """Sparse (points x nodes) matrix of linear interpolation in k with linear extrapolation beyond the end
    nodes (``clip``: constant beyond them instead), the value rule of :mod:`shoals.market.slices`."""
    nodes = np.asarray(nodes, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    m = nodes.shape[0]
    j = np.clip(np.searchsorted(nodes, points, side="right"), 1, m - 1)
    u = (points - nodes[j - 1]) / (nodes[j] - nodes[j - 1])
    if clip:
        u = np.clip(u, 0.0, 1.0)
    rows = np.repeat(np.arange(points.shape[0]), 2)
    cols = np.stack([j - 1, j], axis=1).ravel()
    values = np.stack([1.0 - u, u], axis=1).ravel()
    return sp.csr_matrix((values, (rows, cols)), shape=(points.shape[0], m))


def node_derivative_maps(nodes):
    """Sparse (nodes x nodes) matrices giving w'_j and w''_j from the w_j: the three-point rule of
    :func:`shoals.market.slices.node_derivatives` (end nodes: end slope, zero curvature)."""
    k = np.asarray(nodes, dtype=np.float64)
    m = k.shape[0]
    h = np.diff(k)
    slopes = sp.diags([-1.0 / h, 1.0 / h], [0, 1], shape=(m - 1, m), format="csr")
    span = h[:-1] + h[1:]
    inner_slope = sp.diags(h[1:] / span, 0) @ slopes[:-1] + sp.diags(h[:-1] / span, 0) @ slopes[1:]
    inner_curvature = sp.diags(2.0 / span, 0) @ (slopes[1:] - slopes[:-1])
    slope = sp.vstack([slopes[:1], inner_slope, slopes[-1:]]).tocsr()
    curvature = sp.vstack([sp.csr_matrix((1, m)), inner_curvature, sp.csr_matrix((1, m))]).tocsr()
    return slope, curvature


def density_factor(w, dw, d2w, k):
    """g(k) and its partial derivatives with respect to w, w' and w'' (NumPy).

    .. math:: g = \\Big(1 - \\frac{k w'}{2w}\\Big)^2 - \\frac{w'^2}{4}\\Big(\\frac1w + \\frac14\\Big) + \\frac{w''}{2}
    """
    a = 1.0 - k * dw / (2.0 * w)
    g = a * a - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w
    g_w = a * k * dw / (w * w) + 0.25 * dw * dw / (w * w)
    g_dw = -a * k / w - 0.5 * dw * (1.0 / w + 0.25)
    return g, g_w, g_dw, np.full_like(g, 0.5)


@dataclass(frozen=True)
class _SliceProblem:
    """One slice's fixed data in units of its scale w-bar: nodes, check points and their linear maps."""

    expiry: float
    scale: float
    nodes: np.ndarray
    quotes_k: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    mid: np.ndarray
    spread: np.ndarray
    check_k: np.ndarray
    value_map: sp.csr_matrix
    slope_map: sp.csr_matrix
    curvature_map: sp.csr_matrix


def _slice_problem(expiry, k, mid_vol, bid_vol, ask_vol, settings: SplineSettings) -> _SliceProblem:
    order = np.argsort(k)
    k, mid_vol, bid_vol, ask_vol = k[order], mid_vol[order], bid_vol[order], ask_vol[order]
    atm_vol = float(np.interp(0.0, k, mid_vol))
    width = atm_vol * np.sqrt(expiry)
    reach = settings.widening * width + settings.widening_share * (k[-1] - k[0])
    nodes = np.linspace(k[0] - reach, k[-1] + reach, int(settings.nodes))
    scale = atm_vol * atm_vol * expiry
    mid = mid_vol ** 2 * expiry / scale
    mid_only = ~np.isfinite(bid_vol) & ~np.isfinite(ask_vol)
    bid_vol = np.where(mid_only, np.maximum(mid_vol - settings.mid_only_spread, 0.0), bid_vol)
    ask_vol = np.where(mid_only, mid_vol + settings.mid_only_spread, ask_vol)
    lower = np.where(np.isfinite(bid_vol), np.nan_to_num(bid_vol) ** 2 * expiry / scale, 0.0)
    upper = np.where(np.isfinite(ask_vol), np.nan_to_num(ask_vol, nan=0.0) ** 2 * expiry / scale, np.inf)
    floor = 2.0 * mid_vol * expiry * settings.spread_floor / scale
    half = np.where(np.isfinite(upper), 0.5 * (upper - lower), mid - lower)
    spread = np.maximum(half, floor)
    step = nodes[1] - nodes[0]
    far = (np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0]) * width)[None, :]
    check_k = np.concatenate([nodes, 0.5 * (nodes[1:] + nodes[:-1]), (nodes[0] - step - far).ravel(),
                              (nodes[-1] + step + far).ravel()])
    slope, curvature = node_derivative_maps(nodes)
    clipped = interpolation_rows(nodes, check_k, clip=True)
    return _SliceProblem(expiry=float(expiry), scale=scale, nodes=nodes, quotes_k=k, lower=lower, upper=upper,
                         mid=mid, spread=spread, check_k=check_k, value_map=interpolation_rows(nodes, check_k),
                         slope_map=(clipped @ slope).tocsr(), curvature_map=(clipped @ curvature).tocsr())


def _density(problem: _SliceProblem, x):
    """Exact g at the check points and its Jacobian (check points x nodes) at scaled variances x."""
    w = problem.scale * (problem.value_map @ x)
    dw = problem.scale * (problem.slope_map @ x)
    d2w = problem.scale * (problem.curvature_map @ x)
    g, g_w, g_dw, g_d2w = density_factor(w, dw, d2w, problem.check_k)
    jacobian = problem.scale * (sp.diags(g_w) @ problem.value_map + sp.diags(g_dw) @ problem.slope_map
                                + sp.diags(g_d2w) @ problem.curvature_map)
    return g, jacobian.tocsr()


def node_butterflies(nodes, w):
    """Discrete butterflies on the node strikes K_j = F e^{k_j}: the change of call slope
    (c_{j+1} - c_j)/(K_{j+1} - K_j) - (c_j - c_{j-1})/(K_j - K_{j-1}) of undiscounted calls per unit forward
    c_j = N(d_1) - e^{k_j} N(d_1 - sqrt(w_j)), d_1 = -k_j / sqrt(w_j) + sqrt(w_j) / 2 (the literal Black prices
    of the slice at its nodes); >= 0 for a convex, hence arbitrage-free, set of call prices.  Returns
    (butterflies, Jacobian with respect to w)."""
    root = np.sqrt(w)
    d1 = -nodes / root + 0.5 * root
    calls = ndtr(d1) - np.exp(nodes) * ndtr(d1 - root)
    vega = np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi) / (2.0 * root)
    strikes = np.exp(nodes)
    slopes = sp.diags([-1.0 / np.diff(strikes), 1.0 / np.diff(strikes)], [0, 1],
                      shape=(nodes.shape[0] - 1, nodes.shape[0]), format="csr")
    change = (slopes[1:] - slopes[:-1]).tocsr()
    return change @ calls, (change @ sp.diags(vega)).tocsr()


def _conditions(problem: _SliceProblem, x, margin: float):
    """The butterfly conditions of one slice as c(x) >= floor: g >= ``margin`` at the check points and the
    node-strike butterflies >= 0.  Returns (c, Jacobian in x, floor)."""
    g, g_jacobian = _density(problem, x)
    butterflies, b_jacobian = node_butterflies(problem.nodes, problem.scale * x)
    return (np.concatenate([g, butterflies]), sp.vstack([g_jacobian, problem.scale * b_jacobian]).tocsr(),
            np.concatenate([np.full(g.shape[0], margin), np.zeros(butterflies.shape[0])]))


def _satisfied(problem: _SliceProblem, x) -> bool:
    """Exact g >= 0 at every check point and node-strike butterflies >= -1e-12 (rounding of the prices)."""
    return bool(_density(problem, x)[0].min() >= 0.0
                and node_butterflies(problem.nodes, problem.scale * x)[0].min() >= -1e-12)


def _objective(problem: _SliceProblem, settings: SplineSettings):
    """P, q of 1/2 z'Pz + q'z over z = (x, above, below): band excess, mid pull and roughness."""
    m, n = problem.nodes.shape[0], problem.quotes_k.shape[0]
    quotes = interpolation_rows(problem.nodes, problem.quotes_k)
    weight = 1.0 / (n * problem.spread ** 2)
    mid_term = 2.0 * settings.mid_weight * (quotes.T @ sp.diags(weight) @ quotes)
    h = problem.nodes[1] - problem.nodes[0]
    second = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(m - 2, m)) / (h * h)
    width = np.sqrt(problem.scale)
    roughness = 2.0 * settings.smoothness * width ** 3 * h * (second.T @ second)
    hinge = sp.diags(np.concatenate([2.0 * weight, 2.0 * weight]))
    p = sp.block_diag([mid_term + roughness, hinge], format="csc")
    q = np.concatenate([-2.0 * settings.mid_weight * (quotes.T @ (weight * problem.mid)), np.zeros(2 * n)])
    return sp.triu(p, format="csc"), q, quotes


def _slice_constraints(problem: _SliceProblem, quotes):
    """(G, h) with G z <= h on one slice's z = (x, above, below): band rows with their slacks, slacks >= 0,
    wing slopes, positivity."""
    m, n = problem.nodes.shape[0], problem.quotes_k.shape[0]
    eye_n = sp.identity(n, format="csr")
    zeros_n = sp.csr_matrix((n, n))
    finite = np.isfinite(problem.upper)
    left, right = _end_slopes(problem.nodes)
    wings = sp.hstack([sp.csr_matrix(np.stack([left, -left, -right, right])), sp.csr_matrix((4, 2 * n))])
    positive = sp.hstack([-sp.identity(m), sp.csr_matrix((m, 2 * n))])
    rows = sp.vstack([sp.hstack([quotes[finite], -eye_n[finite], zeros_n[finite]]),
                      sp.hstack([-quotes, zeros_n, -eye_n]),
                      sp.hstack([sp.csr_matrix((2 * n, m)), -sp.identity(2 * n)]), wings, positive])
    bounds = np.concatenate([problem.upper[finite], -problem.lower, np.zeros(2 * n),
                             np.array([-WING_FLOOR, WING_SLOPE, -WING_FLOOR, WING_SLOPE]) / problem.scale,
                             np.full(m, -1e-4)])
    return rows, bounds


def _end_slopes(nodes):
    """Rows giving the first and the last segment's slope from the node values."""
    left = np.zeros(nodes.shape[0])
    left[:2] = np.array([-1.0, 1.0]) / (nodes[1] - nodes[0])
    right = np.zeros(nodes.shape[0])
    right[-2:] = np.array([-1.0, 1.0]) / (nodes[-1] - nodes[-2])
    return left, right


def _calendar_rows(earlier: _SliceProblem, later: _SliceProblem):
    """Rows (C_earlier, C_later) with C_earlier x_earlier + C_later x_later <= 0 for w_later >= w_earlier at
    every k: at the union of the nodes (exact for two piecewise-linear slices) and for the end slopes
    beyond them (left: the later slice's is not larger; right: not smaller).  In units of the later scale.
    Returns (C_earlier, C_later, bounds) with the margins of :data:`CALENDAR_MARGIN`, :data:`SLOPE_MARGIN`."""
    points = np.union1d(earlier.nodes, later.nodes)
    ratio = earlier.scale / later.scale
    left_early, right_early = _end_slopes(earlier.nodes)
    left_late, right_late = _end_slopes(later.nodes)
    c_earlier = sp.vstack([ratio * interpolation_rows(earlier.nodes, points),
                           sp.csr_matrix(ratio * np.stack([-left_early, right_early]))])
    c_later = sp.vstack([-interpolation_rows(later.nodes, points), sp.csr_matrix(np.stack([left_late, -right_late]))])
    bounds = np.concatenate([np.full(points.shape[0], -CALENDAR_MARGIN), np.full(2, -SLOPE_MARGIN / later.scale)])
    return c_earlier.tocsr(), c_later.tocsr(), bounds


def _solve(p, q, g_matrix, h_vector):
    """Clarabel on 1/2 z'Pz + q'z subject to G z <= h, every row of G scaled to unit norm first (the rows mix
    slopes, curvatures and values of very different sizes; scaled, the interior point needs ~30 iterations
    rather than ~60 and reaches full accuracy).  Returns (z, status) with z None unless solved."""
    g_matrix = sp.csr_matrix(g_matrix)
    norms = np.sqrt(np.asarray(g_matrix.multiply(g_matrix).sum(axis=1)).ravel())
    norms = np.where(norms > 0.0, norms, 1.0)
    g_matrix = sp.csc_matrix(sp.diags(1.0 / norms) @ g_matrix)
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    solver = clarabel.DefaultSolver(sp.csc_matrix(p), q, g_matrix, h_vector / norms,
                                    [clarabel.NonnegativeConeT(g_matrix.shape[0])], settings)
    solution = solver.solve()
    status = str(solution.status)
    if "Solved" not in status:
        return None, status
    return np.asarray(solution.x), status


def _joint_program(problems, settings: SplineSettings):
    """The quadratic program of every slice at once: block-diagonal objective and slice constraints, plus the
    calendar rows coupling consecutive slices.  Returns (P, q, G, h, offsets of each slice's z)."""
    objectives = [_objective(problem, settings) for problem in problems]
    sizes = [objective[1].shape[0] for objective in objectives]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    blocks = [_slice_constraints(problem, objective[2]) for problem, objective in zip(problems, objectives)]
    rows = [sp.block_diag([block[0] for block in blocks], format="csr")]
    bounds = [np.concatenate([block[1] for block in blocks])]
    for i in range(1, len(problems)):
        c_earlier, c_later, calendar_bounds = _calendar_rows(problems[i - 1], problems[i])
        coupling = sp.lil_matrix((c_later.shape[0], offsets[-1]))
        m_earlier, m_later = problems[i - 1].nodes.shape[0], problems[i].nodes.shape[0]
        coupling[:, offsets[i - 1]:offsets[i - 1] + m_earlier] = c_earlier
        coupling[:, offsets[i]:offsets[i] + m_later] = c_later
        rows.append(coupling.tocsr())
        bounds.append(calendar_bounds)
    p = sp.block_diag([objective[0] for objective in objectives], format="csc")
    q = np.concatenate([objective[1] for objective in objectives])
    return p, q, sp.vstack(rows).tocsr(), np.concatenate(bounds), offsets


def fit_slices(problems, settings: SplineSettings):
    """Scaled node variances of every slice by sequential convex programming on the butterfly conditions
    (:func:`_conditions`): solve, linearise the conditions where they come close to binding (g < 1/4, or a
    node butterfly below 1e-4), solve again, until they hold exactly on every slice.  Returns
    (xs, rounds, converged)."""
    p, q, g_matrix, h_vector, offsets = _joint_program(problems, settings)
    active = [None] * len(problems)
    xs = None
    for rounds in range(1, int(settings.max_rounds) + 1):
        if xs is None:
            rows, limits = g_matrix, h_vector
        else:
            extra_rows, extra_limits = [], []
            for i, (problem, x) in enumerate(zip(problems, xs)):
                values, jacobian, floor = _conditions(problem, x, settings.margin)
                near = values < np.where(floor > 0.0, 0.25, 1e-4)
                active[i] = near if active[i] is None else active[i] | near
                linear = jacobian[active[i]]
                block = sp.lil_matrix((linear.shape[0], offsets[-1]))
                block[:, offsets[i]:offsets[i] + x.shape[0]] = -linear
                extra_rows.append(block.tocsr())
                extra_limits.append(values[active[i]] - linear @ x - floor[active[i]])
            rows = sp.vstack([g_matrix, *extra_rows]).tocsc()
            limits = np.concatenate([h_vector, *extra_limits])
        z, status = _solve(p, q, rows, limits)
        if z is None:
            if xs is None:
                raise CalibrationError(f"the spline fit is infeasible ({status})")
            break
        xs = [z[offsets[i]:offsets[i] + problem.nodes.shape[0]] for i, problem in enumerate(problems)]
        if all(_satisfied(problem, x) for problem, x in zip(problems, xs)):
            return xs, rounds, True
    return xs, rounds, False


def fit_spline_surface(smiles: SmileData, settings: SplineSettings | None = None) -> SplineFit:
    """Fit the arbitrage-free smoothing spline (module docstring) to every slice of ``smiles``.

    Returns a :class:`SplineFit`; put ``fit.slices`` in a :class:`shoals.market.surface.VolSurface` with
    ``smiles.expiries``.  Raises :class:`CalibrationError` when a slice cannot meet its calendar bound.
    """
    settings = settings or SplineSettings()
    started = time.perf_counter()
    expiries = np.asarray(smiles.expiries, dtype=np.float64)
    problems = []
    for i, expiry in enumerate(expiries):
        mask = np.asarray(smiles.mask[i])
        problems.append(_slice_problem(expiry, *(np.asarray(a[i], dtype=np.float64)[mask] for a in
                                                 (smiles.log_moneyness, smiles.mid_vol, smiles.bid_vol,
                                                  smiles.ask_vol)), settings))
    xs, rounds, converged = fit_slices(problems, settings)
    ks, ws, rmse, inside = [], [], [], []
    for problem, x in zip(problems, xs):
        w = problem.scale * x
        expiry = problem.expiry
        fitted = np.sqrt(np.maximum(interpolation_rows(problem.nodes, problem.quotes_k) @ w, 0.0) / expiry)
        mid_vol = np.sqrt(problem.mid * problem.scale / expiry)
        lower = np.sqrt(problem.lower * problem.scale / expiry)
        upper = np.sqrt(problem.upper * problem.scale / expiry)
        has_ask = np.isfinite(upper)
        hit = has_ask & (fitted >= lower - 1e-12) & (fitted <= upper + 1e-12)
        ks.append(problem.nodes)
        ws.append(w)
        rmse.append(100.0 * np.sqrt(np.mean((fitted - mid_vol) ** 2)))
        inside.append(hit.sum() / has_ask.sum() if has_ask.any() else np.nan)
    min_g = np.array([_density(problem, x)[0].min() for problem, x in zip(problems, xs)])
    return SplineFit(slices=NodeSlices.from_lists(ks, ws), expiries=np.asarray(smiles.expiries, dtype=np.float64),
                     rmse_vol_points=np.asarray(rmse), inside_share=np.asarray(inside),
                     min_butterfly_density=min_g, converged=np.full(len(problems), converged),
                     iterations=np.full(len(problems), rounds),
                     quotes=np.array([problem.quotes_k.shape[0] for problem in problems]),
                     seconds=time.perf_counter() - started)

r"""Batched raw-SVI calibration of every expiry slice at once, free of butterfly arbitrage.

One jitted computation fits all slices of a :class:`~shoals.market.quotes.SmileData`:

1. **Initial guess (data-driven, deterministic, no random restarts)** -- the quasi-explicit method of
   Zeliade (2009): for fixed (m, sigma) the raw-SVI total variance is linear in
   (a, d, c) = (a, rho b sigma, b sigma),

   .. math:: w(k) = a + d\,y + c\sqrt{y^2 + 1}, \qquad y = (k - m)/\sigma,

   a weighted linear least squares.  It is solved on a fixed grid of 13 x 12 (m, sigma) per slice
   (m from k_min - span/2 to k_max + span/2, sigma geometric from 0.5% to 5x the quoted k span), both
   unconstrained and on the faces d = +-c of |d| <= c (rho = +-1), giving 468 candidates, each projected
   into the admissible domain below.  They are screened by their vol objective and g(k) >= 0 on a coarse
   grid; the best 4, and a nearly flat smile that is always butterfly-free, are checked in full, and the
   best feasible one starts step 2.
2. **Batched Levenberg-Marquardt** (Marquardt's diagonal scaling, Nielsen's damping update): one damping
   factor, accept/reject decision, iteration count and convergence flag per slice, fixed-size padded
   arrays, one ``lax.while_loop`` that stops when every slice is done (done slices are frozen by masks);
   the Jacobian is ``jax.jacfwd`` of the slice residuals, ``vmap``-ed over slices, and the 5 x 5 damped
   normal equations are solved by an unrolled Cholesky factorisation.  A trial step is accepted only if
   it lowers the objective *and* keeps g(k) >= 1e-9 on the check grid: the start is feasible, so every
   iterate, and the output, is butterfly-free on that grid.

**Residuals: implied vol, not total variance.**  Per slice, weighted and normalised,

.. math:: r_i = \sqrt{\omega_i / \textstyle\sum_j \omega_j}\,\left(\sqrt{w(k_i)/T} - \sigma^{mid}_i\right),

so the objective is the weighted mean squared vol error, the quantity the quality measures (RMSE in vol
points, share inside the bid-ask vol interval) look at; fitting w with weights 1/(2 sigma T) is its
linearisation, used only for the initial linear step.  Weights omega: ``"vega"`` the Black vega of the
mid (Sum vega (d sigma)^2: price errors scaled by 1/sqrt(vega)), ``"spread"`` 1/spread^2 with the spread
in vol (residuals in units of the quote's spread; a missing bid vol counts as 0, a missing ask vol takes
the slice's median spread, spreads are floored at 1/4 of that median), ``"uniform"`` 1.  Masked (padding)
quotes have weight 0.

**Reparametrisation (admissible domain by construction).**  The unconstrained x = (x_v, x_+, x_-, m, x_s)
maps to raw SVI through the minimum total variance v and the two wing slopes s_+- = b (1 +- rho) of w:

.. math::
    v = v_0 + e^{x_v},\quad s_\pm = s_0 + (s_1 - s_0)\,\mathrm{sigmoid}(x_\pm),\quad
    \sigma = \sigma_0 + e^{x_s},\quad
    b = \frac{s_+ + s_-}{2},\quad \rho = \frac{s_+ - s_-}{s_+ + s_-},\quad a = v - \sigma\sqrt{s_+ s_-}

(b sqrt(1 - rho^2) = sqrt(s_+ s_-)), with floors v_0 = 1e-8, s_0 = 1e-10, sigma_0 = 1e-4 and the wing
cap s_1 = 2 (1 - 1e-3).  Hence b > 0, |rho| < 1, sigma > 0, min_k w = a + b sigma sqrt(1 - rho^2) = v > 0
and b (1 + |rho|) = max(s_+, s_-) < 2.  The wing cap is Lee's moment bound (limsup w(k)/|k| <= 2); it
is also what g(k) >= 0 needs as |k| -> inf, where g -> 1/4 - s^2/16 for a wing of total-variance slope
s, and it is stricter than the Rogers-Tehranchi bound |dw/dk| <= 4 (b (1 + |rho|) <= 4 in total
variance, Gatheral 2004's 4/T in implied variance), which it implies.  The floors keep the reported
parameters inside the domain after rounding and the kink at m resolvable by the check grid.

**Butterfly arbitrage** (Gatheral-Jacquier g(k) >= 0, ``kernels.svi.butterfly_density``) is enforced on a
check grid that is a constant of each iterate: 256 points uniform on [-L, L] with
L = max(butterfly_width sqrt(T), 1.25 max|k_quote|); 192 points m + sigma sinh(u), |u| <= 12 (g varies
on the scale sigma around m); 2 x 96 points m +- 10^[-2, 4] (the far wings, out to where g has settled
to its limit); 4 x 15 points around the zeros of h = 2w - k w' in each wing (g can dip below 0 in a far
wing only where h is small; the zeros come from the asymptotic quadratic s x^2 + (2a -+ s m) x
+ 1.5 b sigma^2 = 0 refined by Newton on the exact h); and the minimum of each of 28 chunks of the grid
refined by Newton steps on g'(k) = 0 between its neighbours.  The objective carries the penalty
residuals 10 max(0, 10^-3 - g_j) / sqrt(n_grid), and trial steps with min g < 1e-9 are rejected.  After
the fit g is re-checked on a 10x denser grid of the same construction and reported per slice
(``min_butterfly_density``, ``butterfly_free``).

References: Gatheral, "A parsimonious arbitrage-free implied volatility parameterization" (2004);
Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14 (2014) 59-71;
Lee, "The moment formula for implied volatility at extreme strikes", Math. Finance 14 (2004) 469-480;
Rogers & Tehranchi, "Can the implied volatility surface move by parallel shifts?", Finance Stoch. 14
(2010) 235-248; Zeliade Systems, "Quasi-explicit calibration of Gatheral's SVI model" (2009); Nielsen,
"Damping parameter in Marquardt's method", IMM-REP-1999-05; Madsen, Nielsen & Tingleff, "Methods for
non-linear least squares problems" (2004).
Validation: tests/unit/test_svi_calibration.py (exact recovery of 8 slices at once, noisy bid/ask quotes,
domain and g >= 0 as a hypothesis property with brute-force grids, bitwise determinism, masking,
no recompilation, 5-quote slice, SPX 2011-01-24, the seed pipeline's synthetic set and its timing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shoals._exported import cached_call
from shoals.errors import InputError
from shoals.kernels.svi import butterfly_density, svi_derivatives, svi_total_variance
from shoals.market.quotes import SmileData
from shoals.market.svi import SVIParams

WEIGHTINGS = ("vega", "spread", "uniform")
MIN_QUOTES = 3

WING_SLOPE_BOUND = 2.0 * (1.0 - 1e-3)  # Lee: b (1 + |rho|) < 2 in total variance, with a margin
WING_SLOPE_FLOOR = 1e-10  # keeps |rho| <= 1 - 5e-11 / b representable as < 1
SIGMA_FLOOR = 1e-4  # sigma > 1e-4 (in k): keeps the kink at m resolvable by the butterfly check
MIN_VARIANCE_FLOOR = 1e-8  # min_k w > 1e-8: a + b sigma sqrt(1 - rho^2) > 0 survives rounding
BUTTERFLY_FLOOR = 1e-9  # steps need g >= 1e-9 on the check grid: a buffer against rounding in g
PENALTY_SCALE = 10.0
PENALTY_MARGIN = 1e-3
EXACT_FIT_COST = 1e-26  # weighted mean squared vol error at which a slice counts as fitted exactly

_CHECK_UNIFORM = np.linspace(-1.0, 1.0, 256)
_CHECK_LOCAL = np.sinh(np.linspace(-12.0, 12.0, 192))
_CHECK_FAR = np.geomspace(1e-2, 1e4, 96)
_CHECK_ROOTS = np.concatenate([-np.geomspace(0.32, 0.005, 7), [0.0], np.geomspace(0.005, 0.32, 7)])
_REPORT_UNIFORM = np.linspace(-1.0, 1.0, 2000)
_REPORT_LOCAL = np.sinh(np.linspace(-12.0, 12.0, 2400))
_REPORT_FAR = np.geomspace(1e-2, 1e4, 480)
_REPORT_ROOTS = np.linspace(-0.4, 0.4, 201)
_NEWTON_STEPS = 4
_GRADIENT_TOLERANCE = 1e-8
_SCREEN_UNIFORM = np.linspace(-1.0, 1.0, 64)
_SCREEN_LOCAL = np.sinh(np.linspace(-6.0, 6.0, 49))
_SHORTLIST = 4
_GUESS_M = np.linspace(-0.5, 1.5, 13)        # m = k_min + span * this
_GUESS_SIGMA = np.geomspace(0.005, 5.0, 12)  # sigma = span * this


@dataclass(frozen=True)
class SVIFit:
    """Result of :func:`fit_svi`: raw-SVI parameters and diagnostics, one entry per slice.

    ``params`` an :class:`SVIParams` whose fields have shape (slices,); ``rmse_vol_points`` the RMSE of
    fitted vs mid vol in vol points (x100, unweighted); ``inside_share`` the share of quotes whose fitted
    vol lies in [bid_vol, ask_vol] (a missing bid vol counts as 0; quotes without an ask vol are left
    out; NaN when no quote has one); ``converged``/``iterations`` from Levenberg-Marquardt;
    ``min_butterfly_density`` the minimum of the Gatheral-Jacquier g(k) on the dense report grid
    (2,000 points uniform on [-L, L] with ``half_widths`` L = max(butterfly_width sqrt(T),
    1.25 max|k_quote|), 2,400 points m + sigma sinh(u), |u| <= 12, 2 x 480 points m +- 10^[-2, 4],
    4 x 201 points around the far-wing zeros of 2w - k w', and 28 refined local minima) and
    ``butterfly_free`` whether it is >= 0 (the fit enforces g >= 1e-9 on a coarser grid of the same
    construction); ``quotes`` the quotes per slice; ``objective`` the final weighted mean squared vol
    error plus butterfly penalty; ``weighting`` the weighting used.
    """

    params: SVIParams
    expiries: np.ndarray
    rmse_vol_points: np.ndarray
    inside_share: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    min_butterfly_density: np.ndarray
    butterfly_free: np.ndarray
    quotes: np.ndarray
    half_widths: np.ndarray
    objective: np.ndarray
    weighting: str = "vega"

    @property
    def n_slices(self) -> int:
        return int(self.expiries.shape[0])

    def to_frame(self):
        """One row per slice: expiry, a, b, rho, m, sigma and the diagnostics."""
        import pandas as pd

        stacked = np.asarray(self.params.stacked()).reshape(-1, 5)
        return pd.DataFrame({
            "expiry": self.expiries, "a": stacked[:, 0], "b": stacked[:, 1], "rho": stacked[:, 2],
            "m": stacked[:, 3], "sigma": stacked[:, 4], "quotes": self.quotes,
            "rmse_vol_points": self.rmse_vol_points, "inside_share": self.inside_share,
            "converged": self.converged, "iterations": self.iterations,
            "min_butterfly_density": self.min_butterfly_density, "butterfly_free": self.butterfly_free,
        })


# ---------------------------------------------------------------------------------------------- maps

def raw_from_unconstrained(x):
    """Raw SVI (a, b, rho, m, sigma) from the unconstrained vector x[..., 5] (see module docstring)."""
    v = MIN_VARIANCE_FLOOR + jnp.exp(x[..., 0])
    s_up = WING_SLOPE_FLOOR + (WING_SLOPE_BOUND - WING_SLOPE_FLOOR) * jax.nn.sigmoid(x[..., 1])
    s_down = WING_SLOPE_FLOOR + (WING_SLOPE_BOUND - WING_SLOPE_FLOOR) * jax.nn.sigmoid(x[..., 2])
    sigma = SIGMA_FLOOR + jnp.exp(x[..., 4])
    b = 0.5 * (s_up + s_down)
    rho = (s_up - s_down) / (s_up + s_down)
    a = v - sigma * jnp.sqrt(s_up * s_down)
    return a, b, rho, x[..., 3], sigma


@jax.jit
def unconstrained_from_raw(a, b, rho, m, sigma, *, min_variance_floor=1e-10, slope_floor=1e-8):
    """Inverse of :func:`raw_from_unconstrained`, projecting into the admissible domain first.

    The wing slopes b (1 +- rho) are clipped into [slope_floor, WING_SLOPE_BOUND (1 - 1e-9)], sigma is
    floored just above SIGMA_FLOOR and the minimum variance a + b sigma sqrt(1 - rho^2) at
    max(min_variance_floor, 2 MIN_VARIANCE_FLOOR); ``a`` then follows from the projected v, slopes and
    sigma.  Broadcasts over all inputs; returns shape (..., 5).
    """
    b = jnp.maximum(b, 0.0)
    rho = jnp.clip(rho, -1.0, 1.0)
    sigma = jnp.maximum(sigma, SIGMA_FLOOR * (1.0 + 1e-6))
    top = WING_SLOPE_BOUND * (1.0 - 1e-9)
    s_up = jnp.clip(b * (1.0 + rho), slope_floor, top)
    s_down = jnp.clip(b * (1.0 - rho), slope_floor, top)
    v = jnp.maximum(a + b * sigma * jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)),
                    jnp.maximum(min_variance_floor, 2.0 * MIN_VARIANCE_FLOOR))

    def logit(slope):
        p = (slope - WING_SLOPE_FLOOR) / (WING_SLOPE_BOUND - WING_SLOPE_FLOOR)
        return jnp.log(p) - jnp.log1p(-p)
    return jnp.stack([jnp.log(v - MIN_VARIANCE_FLOOR), logit(s_up), logit(s_down),
                      jnp.asarray(m, dtype=jnp.float64) + 0.0 * v, jnp.log(sigma - SIGMA_FLOOR)], axis=-1)


def _g_on(points, a, b, rho, m, sigma):
    d = svi_derivatives(log_moneyness=points, a=a, b=b, rho=rho, m=m, sigma=sigma)
    return butterfly_density(w=d.w, dw=d.dw, d2w=d.d2w, log_moneyness=points)


def _wing_roots(a, b, rho, m, sigma):
    """Approximate zeros of h(k) = 2 w - k w' in each wing (two per wing), as offsets k - m, shape (..., 4).

    Far in a wing g(k) ~ (h / 2w)^2 - w'^2 (1/w + 1/4) / 4 + w''/2, so g can dip below 0 only where h
    is small.  With x = +-(k - m) >> sigma and s = b (1 +- rho) the wing slope,
    h ~ s x + (2a -+ s m) + 1.5 b sigma^2 / x, whose two zeros solve a quadratic (without real zeros
    the minimiser sqrt(1.5 b sigma^2 / s) of the approximation is used); each is refined by Newton steps
    on the exact h and clipped to [sigma, 1e6].
    """
    side = jnp.array([1.0, 1.0, -1.0, -1.0])
    branch = jnp.array([1.0, -1.0, 1.0, -1.0])
    a, b, rho, m, sigma = (v[..., None] for v in (a, b, rho, m, sigma))
    slope = jnp.maximum(b * (1.0 + side * rho), 1e-300)
    c1 = 2.0 * a - side * slope * m
    c0 = 1.5 * b * sigma * sigma
    disc = c1 * c1 - 4.0 * slope * c0
    x = jnp.where(disc >= 0.0, (-c1 + branch * jnp.sqrt(jnp.maximum(disc, 0.0))) / (2.0 * slope),
                  jnp.sqrt(c0 / slope))
    x = jnp.clip(x, sigma, 1e6)

    def newton(_, x):
        k = m + side * x
        d = svi_derivatives(log_moneyness=k, a=a, b=b, rho=rho, m=m, sigma=sigma)
        h = 2.0 * d.w - k * d.dw
        dh = side * (d.dw - k * d.d2w)
        x_new = x - h / jnp.where(dh != 0.0, dh, 1.0)
        return jnp.where(jnp.isfinite(x_new) & (dh != 0.0), jnp.clip(x_new, 0.5 * x, 2.0 * x), x)

    x = jax.lax.fori_loop(0, _NEWTON_STEPS, newton, x)
    return side * jnp.clip(x, sigma, 1e6)


def _grid(half_width, a, b, rho, m, sigma, uniform, local, far, roots):
    """Check points, shape (..., n), constants of the parameters (no derivatives flow through them):
    uniform on [-L, L], m + sigma * local (sinh-spaced: g varies on the scale sigma around m),
    m +- far (geometric, out to |k - m| = 1e4, where g has settled to its limit 1/4 - s^2/16) and
    m + x_r (1 + roots) around the approximate wing zeros x_r of 2w - k w' (:func:`_wing_roots`)."""
    a, b, rho, m, sigma = (jax.lax.stop_gradient(v) for v in (a, b, rho, m, sigma))
    x = _wing_roots(a, b, rho, m, sigma)
    around = (m[..., None, None] + x[..., None] * (1.0 + roots)).reshape(*x.shape[:-1], -1)
    return jnp.concatenate([half_width[..., None] * uniform, m[..., None] + sigma[..., None] * local,
                            m[..., None] + far, m[..., None] - far, around], axis=-1)


def _refined_minima(points, g, a, b, rho, m, sigma, layout):
    """Locate the minima of g between grid points: the lowest grid point of each chunk (``layout`` lists
    (segment length, chunks) of the sorted segments of the grid) is refined by Newton steps on
    g'(k) = 0 (g', g'' by autodiff in k), kept inside the bracket of its grid neighbours.  The points
    are constants of the parameters."""
    a, b, rho, m, sigma, g, points = (jax.lax.stop_gradient(v) for v in (a, b, rho, m, sigma, g, points))
    index, low, high, start = [], [], [], 0
    for length, chunks in layout:
        best = jnp.argmin(g[start:start + length].reshape(chunks, length // chunks), axis=-1)
        best = start + best + np.arange(chunks) * (length // chunks)
        below = points[jnp.maximum(best - 1, start)]
        above = points[jnp.minimum(best + 1, start + length - 1)]
        index.append(best)
        low.append(jnp.minimum(below, above))
        high.append(jnp.maximum(below, above))
        start += length
    index, low, high = (jnp.concatenate(v) for v in (index, low, high))

    def g_at(k):
        return _g_on(k, a, b, rho, m, sigma)

    slope = jax.vmap(jax.grad(g_at))
    curvature = jax.vmap(jax.grad(jax.grad(g_at)))

    def newton(_, k):
        g1, g2 = slope(k), curvature(k)
        step = -g1 / jnp.where(g2 > 0.0, g2, 1.0)
        return jnp.clip(jnp.where((g2 > 0.0) & jnp.isfinite(step), k + step, k), low, high)

    return jax.lax.fori_loop(0, _NEWTON_STEPS, newton, points[index])


def _min_density(half_width, a, b, rho, m, sigma, uniform, local, far, roots):
    """g on the grid of :func:`_grid` and at its refined chunk minima (concatenated), for one slice."""
    points = _grid(half_width, a, b, rho, m, sigma, uniform, local, far, roots)
    g = _g_on(points, a, b, rho, m, sigma)
    layout = [(len(uniform), 8), (len(local), 8), (len(far), 4), (len(far), 4)] + [(len(roots), 1)] * 4
    refined = _refined_minima(points, g, a, b, rho, m, sigma, layout)
    return jnp.concatenate([g, _g_on(refined, a, b, rho, m, sigma)])


# ----------------------------------------------------------------------------------------- residuals

def _slice_residuals(x, k, mid_vol, sqrt_weight, expiry, half_width):
    """Residual vector of one slice (weighted vol errors, then butterfly penalty) and min g on the grid."""
    a, b, rho, m, sigma = raw_from_unconstrained(x)
    w = svi_total_variance(log_moneyness=k, a=a, b=b, rho=rho, m=m, sigma=sigma)
    fit = sqrt_weight * (jnp.sqrt(w / expiry) - mid_vol)
    g = _min_density(half_width, a, b, rho, m, sigma, _CHECK_UNIFORM, _CHECK_LOCAL, _CHECK_FAR, _CHECK_ROOTS)
    penalty = PENALTY_SCALE / math.sqrt(g.shape[-1]) * jnp.maximum(PENALTY_MARGIN - g, 0.0)
    return jnp.concatenate([fit, penalty]), jnp.min(g)


def _slice_jacobian(x, k, mid_vol, sqrt_weight, expiry, half_width):
    def both(z):
        r, min_g = _slice_residuals(z, k, mid_vol, sqrt_weight, expiry, half_width)
        return r, (r, min_g)
    jac, (r, min_g) = jax.jacfwd(both, has_aux=True)(x)
    return r, jac, min_g


# ------------------------------------------------------------------------------------ small solves

def _solve_spd(matrix, rhs):
    """Solve A x = b for small symmetric positive definite A (..., n, n) by an unrolled Cholesky
    factorisation (n <= 5 here: cheaper to compile and run than batched LU for tiny systems)."""
    n = matrix.shape[-1]
    low = [[None] * n for _ in range(n)]
    for j in range(n):
        diag = matrix[..., j, j] - sum(low[j][p] * low[j][p] for p in range(j))
        low[j][j] = jnp.sqrt(jnp.maximum(diag, 1e-300))
        for i in range(j + 1, n):
            low[i][j] = (matrix[..., i, j] - sum(low[i][p] * low[j][p] for p in range(j))) / low[j][j]
    y = []
    for i in range(n):
        y.append((rhs[..., i] - sum(low[i][p] * y[p] for p in range(i))) / low[i][i])
    x = [None] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(low[p][i] * x[p] for p in range(i + 1, n))) / low[i][i]
    return jnp.stack(x, axis=-1)


# ------------------------------------------------------------------------------------ initial guess

def _initial_guess(k, mid_vol, weight, mask, expiry, half_width, sqrt_weight):
    """Best butterfly-free candidate among the quasi-explicit (m, sigma) grid and a flat smile.

    For each (m, sigma) of the grid: the unconstrained linear least squares in (a, d, c) and its
    solutions on the faces d = +-c of |d| <= c (rho = +-1), each projected into the admissible domain.
    """
    maskf = mask.astype(jnp.float64)
    big = 1e300
    k_min = jnp.min(jnp.where(mask, k, big), axis=-1)
    k_max = jnp.max(jnp.where(mask, k, -big), axis=-1)
    k_min = jnp.where(k_min < big, k_min, -0.1)
    k_max = jnp.where(k_max > -big, k_max, 0.1)
    span = jnp.maximum(k_max - k_min, 1e-3)
    ms = k_min[:, None, None] + span[:, None, None] * jnp.asarray(_GUESS_M)[None, :, None]     # (S, M, 1)
    sigmas = span[:, None, None] * jnp.asarray(_GUESS_SIGMA)[None, None, :]                   # (S, 1, N)
    ms, sigmas = jnp.broadcast_arrays(ms, sigmas)
    ms = ms.reshape(ms.shape[0], -1)
    sigmas = sigmas.reshape(sigmas.shape[0], -1)                                              # (S, C)
    total = mid_vol * mid_vol * expiry[:, None]                                               # (S, Q)
    w_weight = weight * maskf / (2.0 * mid_vol * expiry[:, None]) ** 2
    y = (k[:, None, :] - ms[..., None]) / sigmas[..., None]                                   # (S, C, Q)
    root = jnp.sqrt(y * y + 1.0)
    ones = jnp.ones_like(y)

    def solve(features):  # weighted linear least squares of w_mid on the features, batched (S, C)
        features = jnp.stack(features, axis=-1)
        weighted = features * w_weight[:, None, :, None]
        normal = jnp.einsum("scqi,scqj->scij", weighted, features)
        rhs = jnp.einsum("scqi,sq->sci", weighted, total)
        eye = jnp.eye(features.shape[-1])
        ridge = 1e-12 * jnp.trace(normal, axis1=-2, axis2=-1)[..., None, None] * eye + 1e-300 * eye
        return _solve_spd(normal + ridge, rhs)

    # unconstrained (a, d, c), and the faces d = +c (rho = 1) and d = -c (rho = -1) of |d| <= c
    full = solve([ones, y, root])
    up = solve([ones, y + root])
    down = solve([ones, root - y])
    a = jnp.concatenate([full[..., 0], up[..., 0], down[..., 0]], axis=1)
    d = jnp.concatenate([full[..., 1], up[..., 1], -down[..., 1]], axis=1)
    c = jnp.maximum(jnp.concatenate([full[..., 2], up[..., 1], down[..., 1]], axis=1), 1e-12)
    ms, sigmas = (jnp.concatenate([v, v, v], axis=1) for v in (ms, sigmas))
    b = c / sigmas
    rho = jnp.clip(d / c, -1.0, 1.0)
    mean_total = jnp.sum(total * weight * maskf, axis=-1) / jnp.maximum(jnp.sum(weight * maskf, axis=-1), 1e-300)
    mean_total = jnp.where(jnp.isfinite(mean_total) & (mean_total > 0), mean_total, 0.04 * expiry)
    floor = 0.05 * jnp.min(jnp.where(mask, total, big), axis=-1)
    floor = jnp.where(floor < big, floor, 1e-4 * expiry)
    x_candidates = unconstrained_from_raw(a, b, rho, ms, sigmas, min_variance_floor=floor[:, None])
    # a nearly flat smile: slopes 0.05 v / L keep k w'/(2w) <= 0.025 on the grid, so g ~ 1 > 0
    flat_slope = 0.05 * mean_total / half_width
    x_flat = unconstrained_from_raw(mean_total - span * flat_slope, flat_slope, 0.0 * flat_slope,
                                    0.5 * (k_min + k_max), span, min_variance_floor=floor)
    # screen all candidates by the fit alone and a coarse g grid, then check the best few in full
    a, b, rho, m, sigma = raw_from_unconstrained(x_candidates)                                 # (S, C)
    w = svi_total_variance(log_moneyness=k[:, None, :], a=a[..., None], b=b[..., None], rho=rho[..., None],
                           m=m[..., None], sigma=sigma[..., None])
    fit_cost = jnp.sum((sqrt_weight[:, None, :] * (jnp.sqrt(w / expiry[:, None, None]) - mid_vol[:, None, :])) ** 2,
                       axis=-1)
    uniform = jnp.broadcast_to(half_width[:, None, None] * jnp.asarray(_SCREEN_UNIFORM), (*m.shape, len(_SCREEN_UNIFORM)))
    coarse = jnp.concatenate([uniform, m[..., None] + sigma[..., None] * jnp.asarray(_SCREEN_LOCAL)], axis=-1)
    coarse_g = _g_on(coarse, a[..., None], b[..., None], rho[..., None], m[..., None], sigma[..., None])
    screened = jnp.where(jnp.isfinite(fit_cost) & (jnp.min(coarse_g, axis=-1) >= BUTTERFLY_FLOOR), fit_cost, jnp.inf)
    _, chosen = jax.lax.top_k(-screened, _SHORTLIST)
    x_short = jnp.take_along_axis(x_candidates, chosen[..., None], axis=1)
    x_all = jnp.concatenate([x_short, x_flat[:, None, :]], axis=1)                            # (S, K+1, 5)
    residuals = jax.vmap(jax.vmap(_slice_residuals, in_axes=(0, None, None, None, None, None)))
    r, min_g = residuals(x_all, k, mid_vol, sqrt_weight, expiry, half_width)
    cost = jnp.sum(r * r, axis=-1)
    ok = jnp.isfinite(cost) & (min_g >= BUTTERFLY_FLOOR)
    cost = jnp.where(ok, cost, jnp.inf)
    cost = cost.at[:, -1].set(jnp.where(ok[:, -1], cost[:, -1], 1e300))  # the flat smile as last resort
    best = jnp.argmin(cost, axis=1)
    return jnp.take_along_axis(x_all, best[:, None, None], axis=1)[:, 0, :]


# ----------------------------------------------------------------------------------------- LM loop

def _weights(weighting, mask, vega, bid_vol, ask_vol):
    maskf = mask.astype(jnp.float64)
    if weighting == "uniform":
        raw = maskf
    elif weighting == "vega":
        raw = jnp.where(mask & jnp.isfinite(vega) & (vega > 0), vega, 0.0)
        # a slice without a usable vega falls back to uniform weights
        raw = jnp.where(jnp.sum(raw, axis=-1, keepdims=True) > 0, raw, maskf)
    else:  # spread
        spread = ask_vol - jnp.where(jnp.isfinite(bid_vol), bid_vol, 0.0)
        known = mask & jnp.isfinite(spread) & (spread > 0)
        median = jnp.nanmedian(jnp.where(known, spread, jnp.nan), axis=-1, keepdims=True)
        median = jnp.where(jnp.isfinite(median), median, 0.01)
        spread = jnp.maximum(jnp.where(known, spread, median), 0.25 * median)
        raw = jnp.where(mask, (median / spread) ** 2, 0.0)
    total = jnp.sum(raw, axis=-1, keepdims=True)
    return raw / jnp.where(total > 0, total, 1.0)


@partial(jax.jit, static_argnames=("weighting", "max_iterations"))
def _fit_arrays(k, mid_vol, bid_vol, ask_vol, vega, mask, expiry, *, weighting, max_iterations, tolerance,
                vol_tolerance, butterfly_width):
    """The jitted batched fit on padded arrays (slices, quotes): parameters, flags and diagnostics."""
    mid_vol = jnp.where(mask, mid_vol, 0.2)
    k = jnp.where(mask, k, 0.0)
    weight = _weights(weighting, mask, vega, bid_vol, ask_vol)
    sqrt_weight = jnp.sqrt(weight)
    k_abs = jnp.max(jnp.where(mask, jnp.abs(k), 0.0), axis=-1)
    half_width = jnp.maximum(butterfly_width * jnp.sqrt(expiry), 1.25 * k_abs)
    active = jnp.any(mask, axis=-1)

    x0 = _initial_guess(k, mid_vol, weight, mask, expiry, half_width, sqrt_weight)
    jacobian = jax.vmap(_slice_jacobian)
    r0, j0, _ = jacobian(x0, k, mid_vol, sqrt_weight, expiry, half_width)
    cost0 = jnp.sum(r0 * r0, axis=-1)
    n = x0.shape[0]
    state = dict(x=x0, r=r0, jac=j0, cost=cost0, lam=jnp.full(n, 1e-3), nu=jnp.full(n, 2.0),
                 done=~active | (cost0 <= EXACT_FIT_COST), converged=~active | (cost0 <= EXACT_FIT_COST),
                 iterations=jnp.zeros(n, dtype=jnp.int32), i=jnp.int32(0))

    def cond(s):
        return (s["i"] < max_iterations) & ~jnp.all(s["done"])

    def body(s):
        jac, r, cost, lam = s["jac"], s["r"], s["cost"], s["lam"]
        normal = jnp.einsum("sri,srj->sij", jac, jac)
        grad = jnp.einsum("sri,sr->si", jac, r)
        diag = jnp.diagonal(normal, axis1=-2, axis2=-1)
        diag = diag + 1e-12 * jnp.max(diag, axis=-1, keepdims=True) + 1e-300
        step = -_solve_spd(normal + lam[:, None, None] * jax.vmap(jnp.diag)(diag), grad)
        x_trial = s["x"] + step
        r_t, jac_t, min_g_t = jacobian(x_trial, k, mid_vol, sqrt_weight, expiry, half_width)
        cost_t = jnp.sum(r_t * r_t, axis=-1)
        predicted = cost - jnp.sum((r + jnp.einsum("sri,si->sr", jac, step)) ** 2, axis=-1)
        accept = (~s["done"] & jnp.isfinite(cost_t) & (cost_t < cost) & (min_g_t >= BUTTERFLY_FLOOR)
                  & jnp.all(jnp.isfinite(jac_t), axis=(-2, -1)))
        gain = (cost - cost_t) / jnp.where(predicted > 0, predicted, jnp.inf)
        lam_next = jnp.where(accept, lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3), lam * s["nu"])
        lam_next = jnp.clip(lam_next, 1e-15, 1e300)
        nu_next = jnp.where(accept, 2.0, 2.0 * s["nu"])
        gained = cost - cost_t
        small_change = accept & ((gained <= tolerance * cost_t)
                                 | ((gained <= vol_tolerance * vol_tolerance) & (gained <= 0.5 * cost)))
        small_step = accept & (jnp.max(jnp.abs(step), axis=-1)
                               <= tolerance * (jnp.max(jnp.abs(s["x"]), axis=-1) + tolerance))
        exact = accept & (cost_t <= EXACT_FIT_COST)
        column_norms = jnp.sqrt(jnp.diagonal(normal, axis1=-2, axis2=-1))
        cosine = jnp.max(jnp.abs(grad) / jnp.maximum(column_norms * jnp.sqrt(cost)[:, None], 1e-300), axis=-1)
        stationary = ~s["done"] & (cosine <= _GRADIENT_TOLERANCE)
        stalled = ~s["done"] & (lam_next >= 1e16)
        newly = ~s["done"] & (small_change | small_step | exact | stationary)
        pick = accept[:, None]
        return dict(
            x=jnp.where(pick, x_trial, s["x"]), r=jnp.where(pick, r_t, r),
            jac=jnp.where(pick[..., None], jac_t, jac), cost=jnp.where(accept, cost_t, cost),
            lam=jnp.where(s["done"], lam, lam_next), nu=jnp.where(s["done"], s["nu"], nu_next),
            done=s["done"] | newly | stalled, converged=s["converged"] | newly,
            iterations=s["iterations"] + (~s["done"]).astype(jnp.int32), i=s["i"] + 1)

    s = jax.lax.while_loop(cond, body, state)
    x = s["x"]
    a, b, rho, m, sigma = raw_from_unconstrained(x)
    w = svi_total_variance(log_moneyness=k, a=a[:, None], b=b[:, None], rho=rho[:, None], m=m[:, None],
                           sigma=sigma[:, None])
    rmse, share = fit_quality(jnp.sqrt(w / expiry[:, None]), mid_vol=mid_vol, bid_vol=bid_vol, ask_vol=ask_vol,
                              mask=mask)
    report = partial(_min_density, uniform=_REPORT_UNIFORM, local=_REPORT_LOCAL, far=_REPORT_FAR,
                     roots=_REPORT_ROOTS)
    min_g = jnp.min(jax.vmap(report)(half_width, a, b, rho, m, sigma), axis=-1)
    return dict(a=a, b=b, rho=rho, m=m, sigma=sigma, rmse=rmse, inside=share, converged=s["converged"],
                iterations=s["iterations"], min_g=min_g, half_width=half_width, cost=s["cost"])


def fit_quality(fitted_vol, *, mid_vol, bid_vol, ask_vol, mask):
    """Per slice (last axis = quotes): RMSE of fitted vs mid vol in vol points (x100) and the share of
    quotes whose fitted vol lies in [bid vol, ask vol] (a missing bid vol counts as 0; quotes without an
    ask vol are left out of the share, NaN when a slice has none).  jit-safe."""
    maskf = mask.astype(jnp.float64)
    count = jnp.maximum(jnp.sum(maskf, axis=-1), 1.0)
    rmse = 100.0 * jnp.sqrt(jnp.sum(maskf * jnp.where(mask, fitted_vol - mid_vol, 0.0) ** 2, axis=-1) / count)
    lower = jnp.where(jnp.isfinite(bid_vol), bid_vol, 0.0)
    has_ask = mask & jnp.isfinite(ask_vol)
    inside = has_ask & (fitted_vol >= lower) & (fitted_vol <= jnp.where(has_ask, ask_vol, jnp.inf))
    n_ask = jnp.sum(has_ask, axis=-1)
    share = jnp.where(n_ask > 0, jnp.sum(inside, axis=-1) / jnp.maximum(n_ask, 1), jnp.nan)
    return rmse, share


def _bucket(n: int, minimum: int = 8) -> int:
    """Pad sizes to a few buckets (powers of two up to 64, then multiples of 64) to limit recompiles."""
    if n <= 64:
        return max(minimum, 1 << max(0, (n - 1).bit_length()))
    return -(-n // 64) * 64


def _validate(smiles: SmileData, weighting: str, max_iterations: int, tolerance: float,
              vol_tolerance: float, butterfly_width: float) -> None:
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)}",
                         field="weighting", value=weighting)
    if int(max_iterations) < 1:
        raise InputError("max_iterations must be >= 1", field="max_iterations", value=max_iterations)
    if not tolerance > 0:
        raise InputError("tolerance must be > 0 (e.g. 1e-10)", field="tolerance", value=tolerance)
    if not vol_tolerance >= 0:
        raise InputError("vol_tolerance must be >= 0 (e.g. 1e-6)", field="vol_tolerance", value=vol_tolerance)
    if not (np.isfinite(butterfly_width) and butterfly_width > 0):
        raise InputError("butterfly_width must be a positive number (e.g. 3.0)", field="butterfly_width",
                         value=butterfly_width)
    expiries = np.asarray(smiles.expiries, dtype=np.float64)
    mask = np.asarray(smiles.mask, dtype=bool)
    for i, t in enumerate(expiries):
        if not (np.isfinite(t) and t > 0):
            raise InputError(f"slice {i}: expiry {t} is not a positive year fraction; drop the slice",
                             field="expiries", value=t)
        count = int(mask[i].sum())
        if count < MIN_QUOTES:
            raise InputError(f"slice {i} (T={t:.6g}) has {count} quotes; SVI needs at least {MIN_QUOTES} "
                             "(5 to be determined): drop the slice", field="mask", value=count)
    for name in ("log_moneyness", "mid_vol"):
        values = np.asarray(getattr(smiles, name), dtype=np.float64)[mask]
        bad = ~np.isfinite(values) | ((values <= 0) if name == "mid_vol" else False)
        if bad.any():
            rows = np.asarray(smiles.rows)[mask][bad]
            raise InputError(f"{int(bad.sum())} quotes with non-finite or non-positive {name} (first source row "
                             f"{rows[0]}); drop them or mask them out", field=name, row=int(rows[0]),
                             value=float(values[bad][0]))


def fit_svi(smiles: SmileData, *, weighting: str = "vega", max_iterations: int = 300,
            tolerance: float = 1e-10, vol_tolerance: float = 1e-6, butterfly_width: float = 3.0) -> SVIFit:
    """Calibrate one butterfly-free raw-SVI smile per expiry slice, all slices at once.

    Minimises, per slice, the weighted mean squared implied-vol error

    .. math:: \\min_\\theta \\sum_i \\omega_i \\Big(\\sqrt{w(k_i;\\theta)/T} - \\sigma^{mid}_i\\Big)^2
              \\Big/ \\sum_i \\omega_i, \\qquad w(k) = a + b\\big[\\rho(k-m) + \\sqrt{(k-m)^2+\\sigma^2}\\big]

    over the admissible domain b > 0, |rho| < 1, sigma > 0, a + b sigma sqrt(1 - rho^2) > 0 and
    b (1 + |rho|) < 2 (Lee), by reparametrisation, and the Gatheral-Jacquier condition g(k) >= 0 on a
    check grid that covers |k| <= L = max(butterfly_width sqrt(T), 1.25 max|k_quote|) uniformly and the
    wings out to |k - m| = 1e4 (penalty plus rejection of steps), starting from a quasi-explicit
    (Zeliade) initial guess, by batched Levenberg-Marquardt (see the module docstring).  Deterministic
    (no random restarts; bitwise repeatable on one machine).  Masked (padding) quotes contribute nothing;
    shapes are padded to buckets (slices to powers of two >= 8, quotes to powers of two >= 16, then
    multiples of 64), so similar data sets reuse one compilation.

    Parameters
    ----------
    smiles : SmileData
        Padded OTM quotes per slice; each slice needs >= 3 quotes (5 for a determined fit).
    weighting : {"vega", "spread", "uniform"}
        Vol-residual weights: Black vega of the mid, 1/spread^2 (bid-ask spread in vol), or equal.
    max_iterations : int
        Levenberg-Marquardt iterations at most (the loop stops once every slice is done).
    tolerance, vol_tolerance : float
        A slice has converged when an accepted step lowers its objective C (the weighted mean squared
        vol error) by at most ``tolerance * C``, or by at most ``vol_tolerance**2`` and at most half of
        C (not a quadratically converging step), moves x by at most ``tolerance`` relative, fits exactly
        (weighted RMS vol error <= 1e-13) or is stationary (cosine between the residual and every
        Jacobian column <= 1e-8).  The absolute term stops the slow crawl along SVI's degenerate
        directions (e.g. sigma -> inf, the parabolic limit, when the smile is a parabola in k) once a
        step gains less than (1e-6 vol)^2; set it to 0 for a purely relative criterion.
    butterfly_width : float
        Half-width of the uniform part of the butterfly check grid in units of sqrt(T) (it always
        covers the quotes; the far wings are checked regardless).

    Returns
    -------
    SVIFit
        Parameters (arrays of shape (slices,)) and per-slice diagnostics.

    Raises
    ------
    InputError
        Unknown weighting, bad tolerances, a non-positive expiry, a slice with fewer than 3 quotes, or a
        non-finite log-moneyness / non-positive mid vol among the unmasked quotes (the message names the
        first source row and proposes to drop or mask it).

    References: Gatheral (2004); Gatheral & Jacquier (2014); Lee (2004); Zeliade (2009); Nielsen (1999).
    Validation: tests/unit/test_svi_calibration.py (recovery to 1e-6 of 8 exact slices at once, noisy
    bid/ask inside share, hypothesis property: domain and brute-force g >= 0, determinism, masking,
    5-quote slice, SPX 2011-01-24 median inside share >= 90% for T > 2 weeks, seed quote set).
    """
    _validate(smiles, weighting, max_iterations, tolerance, vol_tolerance, butterfly_width)
    n_slices, n_quotes = np.asarray(smiles.mask).shape
    rows, cols = _bucket(n_slices), _bucket(n_quotes, 16)

    def pad(values, fill, dtype=np.float64):
        out = np.full((rows, cols), fill, dtype=dtype)
        out[:n_slices, :n_quotes] = np.asarray(values, dtype=dtype)
        return out

    mask = pad(smiles.mask, False, bool)
    expiry = np.ones(rows)
    expiry[:n_slices] = np.asarray(smiles.expiries, dtype=np.float64)
    out = cached_call(_fit_arrays, (), (pad(np.where(smiles.mask, smiles.log_moneyness, 0.0), 0.0),
                                        pad(np.where(smiles.mask, smiles.mid_vol, 0.2), 0.2),
                                        pad(smiles.bid_vol, np.nan), pad(smiles.ask_vol, np.nan),
                                        pad(smiles.vega, 0.0), mask, expiry),
                      {"weighting": weighting, "max_iterations": int(max_iterations),
                       "tolerance": jnp.float64(tolerance), "vol_tolerance": jnp.float64(vol_tolerance),
                       "butterfly_width": jnp.float64(butterfly_width)})
    out = {name: np.asarray(value)[:n_slices] for name, value in out.items()}
    params = SVIParams(*(jnp.asarray(out[name]) for name in ("a", "b", "rho", "m", "sigma")))
    return SVIFit(params=params, expiries=np.asarray(smiles.expiries, dtype=np.float64),
                  rmse_vol_points=out["rmse"], inside_share=out["inside"], converged=out["converged"].astype(bool),
                  iterations=out["iterations"].astype(np.int64), min_butterfly_density=out["min_g"],
                  butterfly_free=out["min_g"] >= 0.0,
                  quotes=np.asarray(smiles.mask).sum(axis=1), half_widths=out["half_width"],
                  objective=out["cost"], weighting=weighting)

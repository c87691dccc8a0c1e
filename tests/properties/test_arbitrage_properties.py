"""Properties of the static-arbitrage checks and of the repair (hypothesis).

* Verdicts agree with an independent NumPy implementation: g(k) by central finite differences of w, and
  the calendar gaps w_{i+1} - w_i, on the checks' own grids (points within 1e-3 of the boundary skipped).
* Hand-made arbitrage is flagged: b too large with |rho| near 1 (butterfly and Lee wing), crossing slices
  (calendar), negative variance.
* Clean surfaces pass: SSVI with the power-law phi and eta (1 + |rho|) <= 2 is free of static arbitrage
  (Gatheral & Jacquier 2014, section 4), and so is the family used by the local-vol consistency test.
* The output of repair_surface always passes check_arbitrage; clean surfaces come back unchanged; slices
  not involved in a violation are not touched when the refit succeeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import shoals  # noqa: F401  (float64)
from shoals.arbitrage.checks import (check_arbitrage, check_butterfly, check_calendar, slice_grids)
from shoals.arbitrage.repair import repair_surface
from shoals.market.surface import VolSurface

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def svi_w(k, a, b, rho, m, sigma):
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma ** 2))


def g_finite_difference(k, params, h=1e-4):
    """Gatheral-Jacquier g(k) from central differences of w (independent of the analytic kernel)."""
    w = svi_w(k, *params)
    up, down = svi_w(k + h, *params), svi_w(k - h, *params)
    dw = (up - down) / (2 * h)
    d2w = (up - 2 * w + down) / h ** 2
    return (1 - k * dw / (2 * w)) ** 2 - dw ** 2 / 4 * (1 / w + 0.25) + d2w / 2


def ssvi_surface(expiries, vol, rho, eta, gamma):
    """SSVI w = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2)), theta = vol^2 T,
    phi = eta theta^-gamma (1 + theta)^(gamma - 1), as raw SVI (Gatheral & Jacquier 2014, Lemma 3.2)."""
    theta = vol ** 2 * np.asarray(expiries)
    phi = eta * theta ** -gamma * (1 + theta) ** (gamma - 1)
    return VolSurface.from_svi(expiries=expiries, a=theta / 2 * (1 - rho ** 2), b=theta * phi / 2, rho=rho,
                               m=-rho / phi, sigma=np.sqrt(1 - rho ** 2) / phi)


expiry_lists = st.lists(st.floats(0.05, 3.0), min_size=1, max_size=5, unique=True).map(sorted).filter(
    lambda t: np.all(np.diff(t) > 0.02) if len(t) > 1 else True)


@st.composite
def ssvi_surfaces(draw):
    rho = draw(st.floats(-0.9, 0.9))
    return ssvi_surface(draw(expiry_lists), draw(st.floats(0.1, 0.6)), rho,
                        draw(st.floats(0.3, 1.9)) / (1 + abs(rho)), draw(st.floats(0.1, 0.5)))


@st.composite
def raw_slices(draw):
    """One raw SVI slice with wide parameter ranges (arbitrage or not)."""
    t = draw(st.floats(0.1, 2.0))
    return t, (draw(st.floats(-0.05, 0.1)) * t, draw(st.floats(0.0, 2.5)), draw(st.floats(-0.99, 0.99)),
               draw(st.floats(-0.3, 0.3)), draw(st.floats(0.05, 0.6)))


@st.composite
def perturbed_surfaces(draw):
    """A clean SSVI surface with one or two slices broken: Lee wing bound exceeded, |rho| -> 1 with a sharp
    and steep smile, level dropped below the previous slice or raised above the next one."""
    surface = draw(ssvi_surfaces())
    params = np.asarray(surface.params.stacked()).copy()
    n = params.shape[0]
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, n - 1))
        atm = params[i, 0] + params[i, 1] * params[i, 4]
        kind = draw(st.sampled_from(["wings", "skew", "drop", "raise"]))
        if kind == "wings":  # b (1 + |rho|) > 2, w(m) kept
            b = draw(st.floats(2.1, 4.0)) / (1 + abs(params[i, 2]))
            params[i, 0] += (params[i, 1] - b) * params[i, 4]
            params[i, 1] = b
        elif kind == "skew":
            params[i, 2] = draw(st.sampled_from([-1, 1])) * draw(st.floats(0.9, 0.99))
            params[i, 4] *= draw(st.floats(0.05, 0.3))
            params[i, 1] *= draw(st.floats(2.0, 8.0))
        elif kind == "drop":
            params[i, 0] -= draw(st.floats(0.2, 0.9)) * atm
        else:
            params[i, 0] += draw(st.floats(0.3, 1.0)) * atm
    return VolSurface.from_svi(expiries=surface.expiries, **dict(zip(("a", "b", "rho", "m", "sigma"), params.T)))


# ------------------------------------------------------------------------------------------ checks


@FAST
@given(raw_slices())
def test_butterfly_verdict_matches_finite_difference_g(case):
    t, params = case
    assume(params[0] + params[1] * params[4] * np.sqrt(1 - params[2] ** 2) > 1e-4)  # w > 0: g defined
    surface = VolSurface.from_svi(expiries=[t], a=params[0], b=params[1], rho=params[2], m=params[3],
                                  sigma=params[4])
    grid = slice_grids([t])[0]
    g = g_finite_difference(grid, params)
    flagged = np.zeros(grid.shape, bool)
    for v in check_butterfly(surface).of_kind("butterfly"):
        flagged |= (grid >= v.k_lo) & (grid <= v.k_hi)
    clear = np.abs(g) > 1e-3
    np.testing.assert_array_equal(flagged[clear], (g < 0)[clear])
    wing = any(v.kind == "wing" for v in check_butterfly(surface).violations)
    assert wing == (params[1] * (1 + abs(params[2])) > 2.0)


@FAST
@given(raw_slices(), raw_slices())
@example(first=(1.0, (0.0, 2.2518091740288644, 0.634652921644576, 0.3, 0.05749475481130531)),
         second=(1.6468467165604121, (0.0, 0.0, 0.0, 0.0, 0.5)))   # sizes ~6: an absolute 1e-15 was below 1 ulp
def test_calendar_verdict_matches_direct_comparison(first, second):
    (t1, p1), (t2, p2) = sorted([first, second], key=lambda c: c[0])
    assume(t2 - t1 > 1e-3)
    surface = VolSurface.from_svi(expiries=[t1, t2], **dict(zip(("a", "b", "rho", "m", "sigma"),
                                                                 np.array([p1, p2]).T)))
    grid = slice_grids([t1, t2])[1]
    gap = svi_w(grid, *p2) - svi_w(grid, *p1)
    flagged = np.zeros(grid.shape, bool)
    report = check_calendar(surface)
    spacing = grid[1] - grid[0]
    for v in report.violations:
        assert v.kind == "calendar" and v.expiry == t1 and v.expiry_next == t2
        inside = (grid >= v.k_lo) & (grid <= v.k_hi)
        flagged |= inside
        # size: the largest decrease on the run, refined between grid points (dense evaluation as truth)
        dense = np.linspace(max(v.k_lo - spacing, grid[0]), min(v.k_hi + spacing, grid[-1]), 20001)
        truth = np.max(-(svi_w(dense, *p2) - svi_w(dense, *p1)))
        largest = np.max(-gap[inside], initial=0.0)
        assert v.size >= largest - 4 * np.finfo(float).eps * max(1.0, abs(largest))   # to rounding of w2 - w1
        assert v.size == pytest.approx(truth, rel=1e-6, abs=1e-12)
    np.testing.assert_array_equal(flagged, gap < 0)


@FAST
@given(st.floats(0.1, 2.0), st.floats(0.9, 0.99), st.sampled_from([-1.0, 1.0]), st.floats(1.1, 3.0),
       st.floats(0.02, 0.2))
def test_large_b_with_rho_near_one_is_flagged(t, abs_rho, sign, wing_slope, sigma):
    """b (1 + |rho|) > 2: g -> 1/4 - b^2 (1 + |rho|)^2 / 16 < 0 in the steep wing."""
    rho = sign * abs_rho
    b = 2.0 * wing_slope / (1 + abs_rho)
    surface = VolSurface.from_svi(expiries=[t], a=0.04 * t, b=b, rho=rho, m=0.0, sigma=sigma)
    report = check_butterfly(surface)
    wings = report.of_kind("wing")
    assert len(wings) == 1
    assert (wings[0].k_hi == np.inf) == (rho > 0)
    assert wings[0].size == pytest.approx(0.25 - (b * (1 + abs_rho)) ** 2 / 16)
    assert not check_arbitrage(surface).ok


def test_published_butterfly_arbitrage_example_is_flagged():
    """Axel Vogt's slice (Gatheral & Jacquier 2014, section 2.3): g < 0 around k ~ 0.6-1.3."""
    surface = VolSurface.from_svi(expiries=[1.0], a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    report = check_arbitrage(surface)
    (violation,) = report.violations
    assert violation.kind == "butterfly"
    assert 0.5 < violation.k_lo < 0.8 and 1.0 < violation.k_hi < 1.5
    assert violation.size < -0.02
    frame = report.to_frame()
    assert list(frame["kind"]) == ["butterfly"] and "butterfly" in report.summary()


@FAST
@given(st.floats(0.1, 1.0), st.floats(0.05, 0.5), st.floats(0.2, 0.8), st.floats(1.5, 3.0))
def test_crossing_slices_are_flagged(t, dt, drop, steeper):
    """A later slice with a lower ATM level but steeper wings crosses the earlier one near the money."""
    first = dict(a=0.02 * t, b=0.1, rho=-0.4, m=0.0, sigma=0.2)
    atm = first["a"] + first["b"] * first["sigma"]
    second = dict(a=(1 - drop) * atm - 0.1 * steeper * 0.2, b=0.1 * steeper, rho=-0.4, m=0.0, sigma=0.2)
    surface = VolSurface.from_svi(expiries=[t, t + dt], **{k: [first[k], second[k]] for k in first})
    report = check_calendar(surface)
    assert not report.ok
    (violation,) = report.violations
    assert violation.k_lo < 0.0 < violation.k_hi
    assert violation.size >= drop * atm * (1 - 1e-12)


def test_dip_between_grid_points_is_found():
    """Two sharp slices (sigma 0.004 and 0.002) centred half-way between two grid points: the later slice
    is below the earlier one only on |k - m| < ~0.003, narrower than the grid spacing 0.0075, so only the
    refined check (golden-section search at each discrete local minimum) sees it."""
    m = 0.5 * 0.0075
    surface = VolSurface.from_svi(expiries=[0.5, 1.0], a=[0.04, 0.04015], b=0.1, rho=0.0, m=m,
                                  sigma=[0.004, 0.002])
    grid = slice_grids([0.5, 1.0])[1]
    assert np.all(svi_w(grid, 0.04015, 0.1, 0.0, m, 0.002) >= svi_w(grid, 0.04, 0.1, 0.0, m, 0.004))
    assert check_calendar(surface, refine=False).ok
    (violation,) = check_calendar(surface).violations
    assert violation.n_points == 0 and violation.k_lo == pytest.approx(m, abs=1e-9)
    assert violation.size == pytest.approx(0.04 - 0.04015 + 0.1 * (0.004 - 0.002), rel=1e-9)
    repaired, _ = repair_surface(surface)
    assert check_arbitrage(repaired).ok


def test_negative_variance_is_flagged():
    surface = VolSurface.from_svi(expiries=[0.5], a=-0.05, b=0.1, rho=0.0, m=0.0, sigma=0.2)
    (violation,) = check_arbitrage(surface).of_kind("variance")
    assert violation.size == pytest.approx(-0.05 + 0.1 * 0.2)
    assert violation.k_lo < 0.0 < violation.k_hi


@FAST
@given(ssvi_surfaces())
def test_ssvi_surfaces_are_clean(surface):
    report = check_arbitrage(surface)
    assert report.ok, report.summary()


def test_consistency_test_surface_is_clean_including_between_slices():
    t = np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5])
    surface = VolSurface.from_svi(expiries=t, a=0.02 * t, b=0.1 * np.sqrt(t), rho=-0.5, m=0.0,
                                  sigma=0.2 * np.sqrt(t))
    assert check_arbitrage(surface, times=np.linspace(0.05, 3.0, 40)).ok


# ------------------------------------------------------------------------------------------ repair


@FAST
@given(raw_slices(), st.floats(-1.5, 1.5))
def test_repair_constraint_jacobian_matches_autodiff(case, shift):
    """The analytic dg/dtheta used by the repair's optimiser equals autodiff of the kernel's g(k)."""
    import jax
    import jax.numpy as jnp

    from shoals.arbitrage.repair import _g_and_jacobian
    from shoals.kernels.svi import butterfly_density, svi_derivatives

    _, params = case
    assume(params[0] + params[1] * params[4] * np.sqrt(1 - params[2] ** 2) > 1e-3)
    k = np.linspace(-1.0, 1.0, 9) + shift

    def g(theta):
        d = svi_derivatives(log_moneyness=jnp.asarray(k), a=theta[0], b=theta[1], rho=theta[2], m=theta[3],
                            sigma=theta[4])
        return butterfly_density(w=d.w, dw=d.dw, d2w=d.d2w, log_moneyness=jnp.asarray(k))

    theta = np.asarray(params, dtype=np.float64)
    value, jacobian = _g_and_jacobian(theta, k)
    np.testing.assert_allclose(value, np.asarray(g(jnp.asarray(theta))), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jacobian, np.asarray(jax.jacfwd(g)(jnp.asarray(theta))), rtol=1e-8, atol=1e-10)


@SLOW
@given(perturbed_surfaces())
def test_repair_output_always_passes_the_checks(surface):
    repaired, report = repair_surface(surface)
    assert check_arbitrage(repaired).ok, report.summary()
    assert report.after.ok
    before = np.asarray(surface.params.stacked())
    after = np.asarray(repaired.params.stacked())
    for s in report.slices:
        assert (s.action == "unchanged") == np.array_equal(before[s.index], after[s.index])
        assert s.action in ("unchanged", "refit", "projection")
    involved = set(report.before.slices_with_violations)
    for i in report.changed:  # a slice moves only if involved in a violation or pushed by its predecessor
        assert i in involved or i - 1 in report.changed, report.summary()
    assert len(report.to_frame()) == len(report.slices)


@FAST
@given(ssvi_surfaces())
def test_repair_leaves_clean_surfaces_unchanged(surface):
    repaired, report = repair_surface(surface)
    assert repaired is surface
    assert report.changed == () and report.before.ok and report.after.ok


def test_repair_of_published_example_is_small():
    """Vogt's slice needs a small change: under 2 vol points anywhere on |k| <= 1.5."""
    surface = VolSurface.from_svi(expiries=[1.0], a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    repaired, report = repair_surface(surface)
    assert check_arbitrage(repaired).ok
    (s,) = report.slices
    assert s.action == "refit" and s.max_abs_dvol < 2.0 and s.rms_dvol < 1.0


def test_repair_fits_quotes_when_given():
    """With quotes the repaired slice tracks them (here: the quotes are a clean slice that the broken one
    was perturbed from; the repair lands within 0.5 vol point of them)."""
    t = 0.5
    clean = dict(a=0.02 * t, b=0.1, rho=-0.5, m=0.0, sigma=0.15)
    k = np.linspace(-0.5, 0.5, 21)
    quotes_w = svi_w(k, *clean.values())
    broken = VolSurface.from_svi(expiries=[t], **dict(clean, b=1.6, rho=-0.95))
    # wing_weight=0: the broken slice's wings beyond the quotes are garbage, do not anchor to them
    repaired, report = repair_surface(broken, quotes_k=[k], quotes_w=[quotes_w], wing_weight=0.0)
    assert check_arbitrage(repaired).ok
    vols = np.sqrt(np.asarray(repaired.total_variance(k, t)) / t)
    assert np.max(np.abs(vols - np.sqrt(quotes_w / t))) < 0.005


def test_repair_keeps_uninvolved_slices():
    """A crossing between slices 1 and 2 of a 4-slice surface leaves slices 0 and 3 exactly as they were."""
    t = np.array([0.25, 0.5, 1.0, 2.0])
    surface = ssvi_surface(t, 0.2, -0.5, 1.0, 0.4)
    params = np.asarray(surface.params.stacked()).copy()
    params[2, 0] -= 0.6 * (params[2, 0] + params[2, 1] * params[2, 4])
    broken = VolSurface.from_svi(expiries=t, **dict(zip(("a", "b", "rho", "m", "sigma"), params.T)))
    assert not check_calendar(broken).ok
    repaired, report = repair_surface(broken)
    assert check_arbitrage(repaired).ok
    assert set(report.changed) <= {1, 2}
    after = np.asarray(repaired.params.stacked())
    np.testing.assert_array_equal(after[[0, 3]], params[[0, 3]])

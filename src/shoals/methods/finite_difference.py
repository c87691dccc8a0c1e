"""Finite-difference (Crank-Nicolson) pricing of every instrument, under flat vol or Dupire local vol.

The numerical core is :mod:`shoals.kernels.pde`.  This module turns a market into the kernel's inputs
(:class:`PdeMarket`: spots, the vol table, rates per step), dispatches each instrument type to its pricer
(:mod:`shoals.methods.fd_vanilla` for European, American and barrier options,
:mod:`shoals.methods.fd_path_dependent` for Asian, lookback and cliquet options) and adds vega by bumping
the vol input: the flat vol, or the implied surface of a :class:`MarketSnapshot` shifted in parallel
(the local vol is rebuilt from the shifted surface), by a central difference.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shoals._arrays import on_device
from shoals.errors import InputError, UnsupportedError
from shoals.kernels.pde import (
    Steps,
    VolTable,
    flat_vol_table,
    table_vol,
    time_groups,
    value_and_derivatives,
)
from shoals.market import FlatMarket
from shoals.market.local_vol import LocalVolGrid, default_local_vol, shifted_local_vol
from shoals.market.snapshot import MarketSnapshot
from shoals.methods.pde_plan import row_table
from shoals.results import PriceResult


@dataclass(frozen=True)
class PdeMarket:
    """The market as the PDE kernel sees it, for a batch of trades.

    ``spot`` (batch,); ``vol`` a :class:`~shoals.kernels.pde.VolTable` (one shared local vol grid or a
    constant vol per trade); ``flat_rate`` / ``flat_dividend`` (batch,) for a flat market, else the
    snapshot's zero curves (``curves``).
    """

    spot: np.ndarray
    vol: VolTable
    flat_rate: np.ndarray | None = None
    flat_dividend: np.ndarray | None = None
    curves: MarketSnapshot | None = None

    @property
    def batch(self) -> int:
        return self.spot.shape[0]

    @property
    def jumps(self) -> np.ndarray:
        """Times at which sigma jumps: the surface's expiries under local vol (Dupire's sigma^2 = dw/dt / D
        with the total variance interpolated between slices is discontinuous in t at each slice; the grid of
        :func:`~shoals.market.local_vol.build_local_vol` holds the left and right limits there).  The
        pricers end time steps on them (:func:`~shoals.kernels.pde.split_steps`).  Empty for flat vols."""
        if self.curves is None or self.curves.surface is None:
            return np.zeros(0)
        return np.asarray(self.curves.surface.expiries, dtype=np.float64)

    def take(self, trades) -> "PdeMarket":
        """The market of the trades (or solve rows) ``trades`` (indices into the batch)."""
        pick = (lambda v: None if v is None else np.asarray(v)[trades])
        return PdeMarket(spot=np.asarray(self.spot)[trades], vol=row_table(self.vol, on_device(trades)),
                         flat_rate=pick(self.flat_rate), flat_dividend=pick(self.flat_dividend), curves=self.curves)

    def integrals(self, times):
        """int_0^t r and int_0^t q at ``times`` (any shape whose last axis is the batch)."""
        times = np.asarray(times, dtype=np.float64)
        if self.curves is None:
            return times * self.flat_rate, times * self.flat_dividend
        # Padded to a power of two: a few compiled shapes for every step array of a run.
        flat = times.reshape(-1)
        padded = np.zeros(max(64, 1 << max(flat.size - 1, 0).bit_length()))
        padded[:flat.size] = flat
        rate, dividend = _curve_integrals(self.curves.rate, self.curves.dividend, on_device(padded))
        return tuple(np.asarray(a)[:flat.size].reshape(times.shape) for a in (rate, dividend))

    def discount(self, times):
        """exp(-int_0^t r) at ``times`` (last axis the batch)."""
        return np.exp(-self.integrals(times)[0])

    def forward(self, times):
        """S exp(int_0^t (r - q)) at ``times`` (last axis the batch)."""
        rate, dividend = self.integrals(times)
        return self.spot * np.exp(rate - dividend)

    def steps(self, start, dt, theta, lower_value=None, upper_value=None, *, repeats: int = 1) -> Steps:
        """Kernel :class:`~shoals.kernels.pde.Steps` from step times (steps, batch): r and mu = r - q are
        the averages over each step (the instantaneous values at the step's start for padding steps); rows
        with the same step times grouped (:func:`~shoals.kernels.pde.time_groups`).  ``repeats``: each trade's
        column repeated for that many solve rows (trade-major; the members of a path-dependent family), the
        rates and groups computed once per trade."""
        start, dt = np.asarray(start, dtype=np.float64), np.asarray(dt, dtype=np.float64)
        end = start - dt
        rate_hi, div_hi = self.integrals(start)
        rate_lo, div_lo = self.integrals(end)
        safe = np.where(dt > 0.0, dt, 1.0)
        if self.curves is None:
            rate = np.broadcast_to(self.flat_rate, start.shape)
            dividend = np.broadcast_to(self.flat_dividend, start.shape)
        else:
            eps = 1e-6
            rate_eps, div_eps = self.integrals(start + eps)
            rate = np.where(dt > 0.0, (rate_hi - rate_lo) / safe, (rate_eps - rate_hi) / eps)
            dividend = np.where(dt > 0.0, (div_hi - div_lo) / safe, (div_eps - div_hi) / eps)
        zeros = np.zeros_like(start)
        group, leader = time_groups(start, dt)
        rows = (lambda a: np.repeat(np.broadcast_to(a, start.shape), repeats, axis=1))
        # One batched transfer for the nine arrays (separate transfers cost ~2x more host time per plan).
        return Steps(*jax.device_put((rows(start), rows(dt), rows(theta), rows(rate - dividend), rows(rate),
                                      rows(zeros if lower_value is None else lower_value),
                                      rows(zeros if upper_value is None else upper_value),
                                      np.repeat(group, repeats), leader * repeats)))

    def spot_greeks(self, x, values):
        """Value, delta, gamma and theta at the spot from solutions ``values`` (batch, n) at t = 0 on grids
        ``x`` (batch, n) in ln S.

        V, V_x, V_xx by the cubic through the 4 nodes around ln S_0 (:func:`value_and_derivatives`);
        delta = V_x / S, gamma = (V_xx - V_x) / S^2; theta from the PDE itself at t = 0:
        theta = dV/dt = r V - (r - q) S delta - sigma^2(0, S) S^2 gamma / 2.
        """
        first_step = self.steps(np.full((1, self.batch), 1e-6), np.full((1, self.batch), 1e-6), 0.5)
        greeks = _spot_greeks(on_device(x), on_device(values), on_device(np.asarray(self.spot, dtype=np.float64)),
                              self.vol, on_device(np.asarray(first_step.rate)[0]),
                              on_device(np.asarray(first_step.drift)[0]))
        return {name: np.asarray(v) for name, v in zip(("value", "delta", "gamma", "theta"), greeks)}


@jax.jit
def _spot_greeks(x, values, spot, vol, rate, mu):
    """:meth:`PdeMarket.spot_greeks` on the device (one compiled program per shape: run op by op, each
    operation was a program of its own in a fresh process)."""
    value, first, second = value_and_derivatives(x, values, jnp.log(spot))
    delta = first / spot
    gamma = (second - first) / spot ** 2
    sigma = table_vol(vol, jnp.zeros_like(spot), spot[:, None])[:, 0]
    theta = rate * value - mu * spot * delta - 0.5 * sigma ** 2 * spot ** 2 * gamma
    return value, delta, gamma, theta


@jax.jit
def _curve_integrals(rate_curve, dividend_curve, times):
    """int_0^t r and int_0^t q of two zero curves (compiled: planning calls it with every step array)."""
    return rate_curve.integral(times), dividend_curve.integral(times)


def pde_market(market, maturities, *, local_vol: LocalVolGrid | None = None) -> PdeMarket:
    """:class:`PdeMarket` for a batch of trades with ``maturities`` (batch,) from a :class:`FlatMarket`
    (fields broadcast with the batch) or a :class:`MarketSnapshot` (local vol: ``local_vol`` or, by
    default, :func:`default_local_vol`; its spot a scalar or one per trade, the same curves and local vol
    for all: how proxies price one trade at many spots in one solve)."""
    maturities = np.atleast_1d(np.asarray(maturities, dtype=np.float64))
    batch = maturities.shape[0]
    if isinstance(market, FlatMarket):
        spot, rate, vol, dividend = (np.broadcast_to(np.asarray(v, dtype=np.float64), (batch,)).copy()
                                     for v in (market.spot, market.rate, market.vol, market.dividend))
        return PdeMarket(spot=spot, vol=flat_vol_table(vol), flat_rate=rate, flat_dividend=dividend)
    if isinstance(market, MarketSnapshot):
        if local_vol is None:
            local_vol = default_local_vol(market, maturities)
        table = VolTable(times=on_device(local_vol.times), spots=on_device(local_vol.spots),
                         vols=on_device(local_vol.vols))
        spot = np.broadcast_to(np.asarray(market.spot, dtype=np.float64), (batch,)).copy()
        return PdeMarket(spot=spot, vol=table, curves=market)
    raise UnsupportedError(f"finite-difference prices on a FlatMarket or a MarketSnapshot, not "
                           f"{type(market).__name__}")


def _subset_plan(planner, instrument, market: PdeMarket, method, trades):
    """The plan of the trades ``trades`` of the batch ``instrument`` (flattened) on ``market``: the planner run
    on those trades alone (:attr:`~shoals.methods.pde_plan.PdePlan.subset`)."""
    shape = np.broadcast_shapes(*(np.shape(getattr(instrument, f.name)) for f in fields(instrument)))
    picked = type(instrument)(**{f.name: np.broadcast_to(np.asarray(getattr(instrument, f.name)), shape)
                                 .reshape(-1)[trades] for f in fields(instrument)})
    return planner(picked, market.take(trades), method)


def _planners():
    from shoals.methods import fd_path_dependent, fd_vanilla

    return {**fd_vanilla.PLANNERS, **fd_path_dependent.PLANNERS}


#: Default (space nodes, time steps) per instrument type; other types take :data:`DEFAULT_GRID`.  Each is the
#: cheapest grid measured to be at least as accurate as 301 nodes x 300 steps ("300 x 300-equivalent") on
#: its family of the example book (``seed_book.csv``) under the example market's Dupire local vol, against
#: 641 x 600 with twice the state nodes (largest error |V - V_ref| / max(|V_ref|, 0.01); 2 cores, warm):
#:
#: ========  ==========  ====================  ====================  ==================
#: family    grid        largest error         at 301 x 300          at 241 x 200
#: ========  ==========  ====================  ====================  ==================
#: barrier   301 x 300   9.0e-4, 0.17 s        (itself)              1.5e-3, 0.12 s
#: lookback  301 x 150   3.1e-4, 0.42 s        3.6e-4, 0.85 s        5.8e-4, 0.47 s
#: asian     161 x 60    5.2e-4 (41 averages)  6.8e-4 (31), 1.15 s   7.3e-4 (31), 0.72 s
#: cliquet   121 x 50    1.1e-3 (6 per period) 1.4e-3 (4), 1.91 s    1.0e-3 (4), 0.95 s
#: ========  ==========  ====================  ====================  ==================
#:
#: The families' errors come from different places: the Asian's from its average grid (31 -> 41 nodes:
#: 9.0e-4 -> 5.2e-4 at 161 x 60, while 100 or 200 steps give the same error), the cliquet's from the steps
#: per reset period (:data:`~shoals.methods.fd_path_dependent.PERIOD_STEPS`: 4 -> 8 gives 1.3e-3 -> 4.1e-4 at
#: 121 nodes, while 121 or 301 nodes give the same; each cliquet steps at its own count since 2026-11-23, which
#: moved its 6.8e-4 to 1.1e-3), the barrier's from the space grid.  Re-measure with
#: ``benchmarks/bench_pde.py`` (seed-book section) before changing them.
DEFAULT_GRIDS = {"Barrier": (301, 300), "Lookback": (301, 150), "Asian": (161, 60), "Cliquet": (121, 50)}
DEFAULT_GRID = (241, 200)


@dataclass(frozen=True)
class FiniteDifference:
    """Crank-Nicolson finite differences (Rannacher start-up) on non-uniform grids in ln S.

    Parameters
    ----------
    space_nodes: nodes of the spot grid of each 1-D solve; ``None`` (default) takes the instrument type's
        default (:data:`DEFAULT_GRIDS`, else :data:`DEFAULT_GRID`: 241).
    time_steps: time steps per trade over its life (plus Rannacher sub-steps after each event); ``None``
        (default) takes the instrument type's default (:data:`DEFAULT_GRIDS`, else 200).
    rannacher: implicit sub-steps replacing the first step after maturity and after each event.
    vega: also compute vega by a central bump of the vol input (costs two more solves per trade).
    vol_bump: the vega bump (absolute vol, 0.01 = one vol point).
    width: half-width of the grid in standard deviations sigma sqrt(T) around the spot (and the forward).
    concentration: sinh stretching of the grid around the spot (alpha / grid length; small = strong).
    knock_in: ``"parity"`` (knock-in = vanilla + knock-out leg on the same nodes) or ``"direct"`` (the
        knock-in solved with the vanilla's value on the barrier as boundary value, vanilla alongside).
    state_nodes: nodes of the extra state of path-dependent contracts (running average, running extreme,
        last reset level); ``None`` takes each type's default (``fd_path_dependent.STATE_NODES``).
    period_steps: at least this many time steps per cliquet reset period; ``None`` takes
        ``fd_path_dependent.PERIOD_STEPS`` (6).

    ``price(instrument, market, *, local_vol=None)``: ``market`` a :class:`FlatMarket` (per-trade fields)
    or a :class:`MarketSnapshot` (Dupire local vol, built once per call unless ``local_vol`` is given).
    Greeks: delta and gamma at the spot from the grid (cubic interpolation, not the nearest node), theta
    from the PDE at t = 0 (a true time derivative of the discrete solution), vega by bump.
    """

    space_nodes: int | None = None
    time_steps: int | None = None
    rannacher: int = 2
    vega: bool = True
    vol_bump: float = 1e-3
    width: float = 5.0
    concentration: float = 0.1
    knock_in: str = "parity"
    state_nodes: int | None = None
    period_steps: int | None = None

    name = "finite-difference"

    def __post_init__(self):
        checks = (("space_nodes", 8, True), ("time_steps", 2, True), ("rannacher", 0, False), ("period_steps", 1, True))
        for field_name, minimum, optional in checks:
            value = getattr(self, field_name)
            if value is None and optional:
                continue
            if value is None or int(value) != value or value < minimum:
                raise InputError(f"must be an integer >= {minimum}, got {value!r}", field=field_name,
                                 value=value)
        if self.knock_in not in ("parity", "direct"):
            raise InputError(f"must be 'parity' or 'direct', got {self.knock_in!r}", field="knock_in",
                             value=self.knock_in)
        for field_name in ("width", "concentration"):
            if not getattr(self, field_name) > 0.0:
                raise InputError(f"must be > 0, got {getattr(self, field_name)!r}", field=field_name,
                                 value=getattr(self, field_name))
        if not self.vol_bump > 0.0:
            raise InputError(f"must be > 0, got {self.vol_bump!r}", field="vol_bump", value=self.vol_bump)

    def grid_for(self, instrument_type: type) -> "FiniteDifference":
        """This method with its grid resolved for ``instrument_type``: fields left ``None`` take the type's
        default (:data:`DEFAULT_GRIDS`, else :data:`DEFAULT_GRID`)."""
        space_nodes, time_steps = DEFAULT_GRIDS.get(instrument_type.__name__, DEFAULT_GRID)
        return replace(self, space_nodes=space_nodes if self.space_nodes is None else self.space_nodes,
                       time_steps=time_steps if self.time_steps is None else self.time_steps)

    def supports(self, instrument, market) -> bool:
        return type(instrument) in _planners() and isinstance(market, (FlatMarket, MarketSnapshot))

    def plan(self, instrument, market, *, local_vol: LocalVolGrid | None = None):
        """The :class:`~shoals.methods.pde_plan.PdePlan` of ``instrument`` (a batch of one type) on
        ``market``: grids, payoffs and steps built once, solvable on any vol table with the nodes of the
        market's (bumps and automatic differentiation on the same grids).  Returns ``(plan, shape)``, the
        batch shape of the instrument."""
        planners = _planners()
        planner = planners.get(type(instrument))
        if planner is None:
            raise UnsupportedError(f"finite-difference does not price {type(instrument).__name__}; "
                                   f"supported: {', '.join(sorted(t.__name__ for t in planners))}")
        shape = np.broadcast_shapes(*(np.shape(getattr(instrument, f.name)) for f in fields(instrument)))
        maturities = np.broadcast_to(np.asarray(instrument.maturity, dtype=np.float64), shape).ravel()
        market = pde_market(market, maturities, local_vol=local_vol)
        method = self.grid_for(type(instrument))
        plan = planner(instrument, market, method)
        return replace(plan, subset=partial(_subset_plan, planner, instrument, market, method)), shape

    def values_at(self, instrument, market, spots, *, local_vol: LocalVolGrid | None = None) -> np.ndarray:
        """Values (trades, K) of ``instrument`` (a batch of one type, flattened) at ``spots`` (trades, K) from
        ONE solve at the market's spot (:meth:`PdePlan.values_at`): what :meth:`price` gives at each spot, up
        to the grids (a running extreme as given or, when NaN, the market's spot; a cliquet struck at each
        spot), for a spot ladder or the nodes of a spot proxy.  NaN where a spot is off a trade's grid."""
        plan, _ = self.plan(instrument, market, local_vol=local_vol)
        spots = np.asarray(spots, dtype=np.float64)
        if spots.ndim != 2 or spots.shape[0] != plan.trades:
            raise InputError(f"spots must have shape (trades, K) = ({plan.trades}, K), got {spots.shape}",
                             field="spots", value=spots.shape)
        bad = ~np.isfinite(spots) | (spots <= 0.0)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"spots must be finite and > 0; trade {row}, spot {column} is {spots[row, column]!r}",
                             field="spots", value=spots[row, column])
        return plan.values_at(spots)

    def price(self, instrument, market, *, local_vol: LocalVolGrid | None = None) -> PriceResult:
        plan, shape = self.plan(instrument, market, local_vol=local_vol)
        grid = self.grid_for(type(instrument))
        result = plan.greeks()
        greeks = {name: result[name] for name in ("delta", "gamma", "theta") if name in result}
        if self.vega:
            up, down = (np.asarray(plan.values(_shifted_vols(market, sign * self.vol_bump, plan)))
                        for sign in (1.0, -1.0))
            greeks["vega"] = (up - down) / (2.0 * self.vol_bump)
        return PriceResult(
            value=np.reshape(result["value"], shape), method=self.name,
            greeks={name: np.reshape(values, shape) for name, values in greeks.items()},
            diagnostics={"space_nodes": grid.space_nodes, "time_steps": grid.time_steps,
                         "rannacher": self.rannacher,
                         **{k: v for k, v in result["diagnostics"].items() if k not in ("row_value", "vanilla_rows")},
                         "greeks": "delta, gamma: cubic interpolation on the grid; theta: the PDE at t = 0; "
                                   "vega: central bump of the vol input, repriced on the same grids"
                                   + (" (parallel shift of the implied surface, local vol rebuilt)"
                                      if isinstance(market, MarketSnapshot) else "")})


def _shifted_vols(market, shift: float, plan):
    """The vol nodes of ``plan``'s table with every implied vol shifted by ``shift``: the flat vols, or the
    local vol rebuilt on the same nodes from the implied surface shifted in parallel
    (:func:`shifted_local_vol`)."""
    if isinstance(market, FlatMarket):
        return plan.table.vols + shift
    like = LocalVolGrid(times=plan.table.times, spots=plan.table.spots, vols=plan.table.vols)
    return shifted_local_vol(market, shift, like)[1].vols

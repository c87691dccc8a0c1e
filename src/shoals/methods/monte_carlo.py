"""Monte Carlo pricing of every instrument family under flat vol (GBM) or Dupire local vol.

See docs/monte_carlo.md for the estimators, the Greek method used per instrument and measured figures.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace

import jax.numpy as jnp
import numpy as np

from shoals._arrays import as_batch
from shoals.errors import InputError, UnsupportedError
from shoals.instruments import American, Asian, Barrier, Cliquet, European, Lookback
from shoals.kernels.asian import geometric_asian_price
from shoals.kernels.black_scholes import black_scholes_price
from shoals.kernels.monte_carlo import (
    BLOCK_SAMPLES,
    combine_block_moments,
    combine_block_stats,
    european_gbm_block_stats,
    european_gbm_pathwise_sums,
    ordered_sum,
    stream_keys,
)
from shoals.kernels.paths import (
    PATH_BLOCK_SAMPLES,
    brownian_bridge_matrix,
    padded_steps,
    path_block_moments,
    path_block_tangents,
    sobol_normals,
)
from shoals.market import FlatMarket
from shoals.market.local_vol import default_local_vol, shifted_local_vol
from shoals.market.snapshot import MarketSnapshot
from shoals.results import PriceResult

_CORES = os.cpu_count() or 1
FAMILIES = {European: "european", Barrier: "barrier", Lookback: "lookback", Asian: "asian", Cliquet: "cliquet"}
PATHWISE = ("european", "lookback", "asian", "cliquet")
GREEK_METHODS = {
    "european": "pathwise AD (delta, vega, rho, theta = -dV/dT); gamma: CRN difference of pathwise deltas",
    "lookback": "pathwise AD (delta, vega, rho, theta = -dV/dT); gamma: CRN difference of pathwise deltas",
    "asian": "pathwise AD (delta, vega, rho); gamma: CRN difference of pathwise deltas; theta NaN (fixing dates "
             "do not age with -dV/dT)",
    "cliquet": "pathwise AD (delta, vega, rho); gamma: CRN difference of pathwise deltas; theta NaN (reset dates "
               "do not age with -dV/dT)",
    "barrier": "CRN central bumps (spot +-h S, vol +-vol_bump, rate +-rate_bump, maturity +-maturity_bump): the "
               "knock indicator makes pathwise derivatives biased",
}
LOCAL_VOL_NOTE = ("under a MarketSnapshot: delta and gamma with the local vol grid held fixed (sticky local vol); "
                  "vega: CRN central difference under the implied surface shifted in parallel by +-vol_bump, "
                  "local vol rebuilt; theta and rho are NaN in this version")


def stream_of(trade_id: str) -> int:
    """Stable 32-bit random-stream number of a trade id (BLAKE2b): independent of row order and process."""
    return int.from_bytes(hashlib.blake2b(str(trade_id).encode(), digest_size=4).digest(), "little")


def _check_finite(name, values):
    values = np.asarray(values, dtype=np.float64)
    if np.any(np.isnan(values)):
        raise InputError("must be a number, got NaN", field=name, value=values)


@dataclass(frozen=True)
class MonteCarlo:
    """Monte Carlo with counter-based random numbers, for European, barrier, lookback, Asian and cliquet
    options on a :class:`FlatMarket` (exact GBM) or a :class:`MarketSnapshot` (Dupire local vol, log-Euler).

    Parameters
    ----------
    paths: simulated paths per trade (with ``antithetic`` pairs count as two paths; must then be even; with
        ``qmc`` a multiple of ``qmc_replications`` (x 2 with antithetic)).
    seed: with the trade's stream number it fixes every draw (:mod:`shoals.kernels.monte_carlo`).
    antithetic: average the payoffs of Z and -Z per sample.
    chunk_blocks: blocks evaluated per dispatch (memory and parallelism only: results are bitwise identical
        for any value).
    greeks: also estimate delta, gamma, vega, theta, rho (method per instrument in ``diagnostics['greeks']``):
        pathwise forward-mode AD through the simulation for European, lookback, Asian and cliquet payoffs
        (Lipschitz in the parameters: unbiased, Broadie & Glasserman 1996), gamma by a central difference of
        pathwise deltas at S(1 +- ``gamma_bump``); barriers by central bumps with common random numbers.
    gamma_bump, vol_bump, rate_bump, maturity_bump: bump sizes (relative spot; absolute vol, rate, years).
    steps_per_year: time steps a year for log-Euler under local vol and for barriers with a rebate paid at
        the hit (at least one step between consecutive fixing / reset / monitoring dates).  Under flat vol the
        GBM transition is exact and the bridge corrections are exact, so other payoffs step only from date
        to date.
    qmc: scrambled Sobol points with Brownian-bridge construction instead of pseudo-random draws; the
        standard error comes from ``qmc_replications`` independent scramblings.
    control_variate: regress on a control with a known mean (beta estimated from the same samples):
        under flat vol the BS vanilla for barriers and the geometric Asian closed form for fixed-strike
        arithmetic Asians; otherwise the discounted terminal spot (mean S e^{-int q}, exact also under the
        log-Euler scheme).

    European options on a FlatMarket without ``qmc`` or ``control_variate`` use the one-step kernel of
    :func:`shoals.kernels.monte_carlo.european_gbm_block_stats` (blocks of 65,536 samples).  American
    options are not priced by Monte Carlo (use the PDE method).

    Validation: tests/unit/test_monte_carlo.py, tests/unit/test_monte_carlo_paths.py,
    tests/reference/test_monte_carlo_quantlib.py, tests/consistency/test_monte_carlo_determinism.py,
    tests/consistency/test_monte_carlo_local_vol.py, tests/consistency/test_monte_carlo_greeks.py.
    """

    paths: int = 100_000
    seed: int = 0
    antithetic: bool = False
    chunk_blocks: int = 16
    greeks: bool = True
    gamma_bump: float = 0.01
    steps_per_year: int = 252
    qmc: bool = False
    qmc_replications: int = 16
    control_variate: bool = False
    vol_bump: float = 0.01
    rate_bump: float = 1e-3
    maturity_bump: float = 1e-2

    name = "monte-carlo"

    def __post_init__(self):
        if int(self.paths) < 2:
            raise InputError(f"must be an integer >= 2, got {self.paths!r}", field="paths", value=self.paths)
        if self.antithetic and int(self.paths) % 2:
            raise InputError(f"must be even with antithetic variates, got {self.paths!r}", field="paths",
                             value=self.paths)
        if int(self.chunk_blocks) < 1:
            raise InputError(f"must be >= 1, got {self.chunk_blocks!r}", field="chunk_blocks",
                             value=self.chunk_blocks)
        if int(self.steps_per_year) < 1:
            raise InputError(f"must be >= 1, got {self.steps_per_year!r}", field="steps_per_year",
                             value=self.steps_per_year)
        if self.qmc:
            if int(self.qmc_replications) < 2:
                raise InputError("need at least 2 replications for a standard error", field="qmc_replications",
                                 value=self.qmc_replications)
            if self.samples % int(self.qmc_replications):
                raise InputError(f"with qmc, paths must be a multiple of {self.qmc_replications} replications"
                                 f"{' x 2 (antithetic)' if self.antithetic else ''}; got {self.paths}",
                                 field="paths", value=self.paths)

    def supports(self, instrument, market) -> bool:
        return type(instrument) in FAMILIES and isinstance(market, (FlatMarket, MarketSnapshot))

    @property
    def samples(self) -> int:
        """Independent samples per trade: paths, or path pairs with antithetic variates."""
        return int(self.paths) // 2 if self.antithetic else int(self.paths)

    @property
    def n_blocks(self) -> int:
        """Blocks of the one-step European kernel."""
        return -(-self.samples // BLOCK_SAMPLES)

    def price(self, instrument, market, *, streams=None, local_vol=None) -> PriceResult:
        """Price a (batch of) contract(s) of one family; ``streams`` are the trades' random-stream numbers
        (default: position in the batch; the CLI uses :func:`stream_of` of the trade ids); ``local_vol`` a
        prebuilt :class:`LocalVolGrid` for a MarketSnapshot (default: :func:`default_local_vol`)."""
        if isinstance(instrument, American):
            raise UnsupportedError("monte-carlo does not price American options (early exercise needs a "
                                   "regression or a PDE); use method=FiniteDifference()")
        if not self.supports(instrument, market):
            raise UnsupportedError(f"monte-carlo prices European, Barrier, Lookback, Asian and Cliquet contracts on a "
                                   f"FlatMarket or MarketSnapshot, not {type(instrument).__name__} on "
                                   f"{type(market).__name__}")
        if isinstance(market, FlatMarket):
            for name in ("spot", "rate", "vol", "dividend"):
                _check_finite(f"market.{name}", getattr(market, name))
        else:
            _check_finite("market.spot", market.spot)
        if isinstance(instrument, European) and isinstance(market, FlatMarket) and not (
                self.qmc or self.control_variate):
            return self._price_european_gbm(instrument, market, streams)
        if isinstance(market, FlatMarket) or not self.greeks:
            return self._price_paths(instrument, market, streams, local_vol)
        if local_vol is None:
            local_vol = default_local_vol(market, instrument.maturity)
        result = self._price_paths(instrument, market, streams, local_vol)
        return self._with_surface_vega(result, instrument, market, streams, local_vol)

    def _with_surface_vega(self, result, instrument, market, streams, grid):
        """Add vega under local vol: central difference of prices under the implied surface shifted by
        +-``vol_bump`` (local vol rebuilt on the same range), common random numbers."""
        plain = replace(self, greeks=False)
        values = []
        for sign in (1.0, -1.0):
            bumped, bumped_grid = shifted_local_vol(market, sign * self.vol_bump, grid)
            values.append(plain._price_paths(instrument, bumped, streams, bumped_grid).value)
        up, down = values
        greeks = dict(result.greeks, vega=(up - down) / (2.0 * self.vol_bump))
        note = dict(result.diagnostics, local_vol=LOCAL_VOL_NOTE)
        return replace(result, greeks=greeks, diagnostics=note)

    # ------------------------------------------------------------------ one-step European under GBM
    def _price_european_gbm(self, instrument, market, streams):
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (
            market.spot, instrument.strike, instrument.maturity, market.vol, market.rate, market.dividend,
            np.where(np.asarray(instrument.is_call), 1.0, -1.0))))
        shape = arrays[0].shape
        spots, strikes, expiries, vols, rates, dividends, signs = (jnp.asarray(a.ravel()) for a in arrays)
        streams = np.arange(spots.size) if streams is None else np.asarray(streams).ravel()
        keys = stream_keys(self.seed, streams)
        inputs = {"keys": keys, "samples": jnp.asarray(self.samples, dtype=jnp.int64), "spots": spots,
                      "strikes": strikes, "expiries": expiries, "volatilities": vols, "rates": rates,
                      "dividend_yields": dividends, "signs": signs}
        stats = self._over_blocks(european_gbm_block_stats, inputs)
        value, std_error = combine_block_stats(*stats)
        greeks = {}
        if self.greeks:
            (sums,) = self._over_blocks(european_gbm_pathwise_sums, dict(inputs, gamma_bump=self.gamma_bump),
                                        outputs=1)
            d_spot, d_vol, d_rate, d_expiry, up, down = np.moveaxis(
                np.asarray(ordered_sum(np.moveaxis(sums, 1, -1))) / self.samples, -1, 0)
            greeks = {"delta": d_spot, "gamma": (up - down) / (2.0 * self.gamma_bump * np.asarray(spots)),
                      "vega": d_vol, "theta": -d_expiry, "rho": d_rate}
        return PriceResult(
            value=np.asarray(value).reshape(shape), std_error=np.asarray(std_error).reshape(shape),
            method=self.name, greeks={k: np.asarray(v).reshape(shape) for k, v in greeks.items()},
            diagnostics={"paths": int(self.paths), "seed": int(self.seed), "antithetic": self.antithetic,
                         "blocks": self.n_blocks, "engine": "one-step exact GBM",
                         "greeks": "pathwise AD (delta, vega, rho, theta); gamma: CRN difference of pathwise delta"
                         if self.greeks else "none"})

    def _over_blocks(self, kernel, inputs, outputs=3):
        """Run ``kernel`` over all blocks in chunks dispatched asynchronously (JAX runs them on all
        cores), then concatenate the per-block outputs in block order."""
        chunk = min(int(self.chunk_blocks), self.n_blocks)
        parts = [kernel(first_block=first, n_blocks=chunk, antithetic=self.antithetic, **inputs)
                 for first in range(0, self.n_blocks, chunk)]
        if outputs == 1:
            parts = [(p,) for p in parts]
        return tuple(np.concatenate([np.asarray(p[i]) for p in parts], axis=1)[:, :self.n_blocks]
                     for i in range(outputs))

    # ------------------------------------------------------------------ path engine
    def _price_paths(self, instrument, market, streams, local_vol):
        family = FAMILIES[type(instrument)]
        local = isinstance(market, MarketSnapshot)
        shape = np.broadcast_shapes(*(np.shape(v) for v in vars(instrument).values()),
                                    *(() if local else (np.shape(getattr(market, f)) for f in
                                                        ("spot", "rate", "vol", "dividend"))))
        n = int(np.prod(shape, dtype=int))
        maturity = as_batch(np.broadcast_to(np.asarray(instrument.maturity, dtype=np.float64), shape).ravel(), n)
        spot = as_batch(np.broadcast_to(np.asarray(market.spot, dtype=np.float64), shape).ravel(), n)
        if local:
            rate = dividend = vol = None
        else:
            rate, vol, dividend = (as_batch(np.broadcast_to(np.asarray(getattr(market, f), dtype=np.float64), shape)
                                         .ravel(), n) for f in ("rate", "vol", "dividend"))
        fields = {k: np.broadcast_to(np.asarray(v), shape).ravel() for k, v in vars(instrument).items()}
        terms, intervals, fine = _contract_terms(family, fields, spot, n)
        steps = np.where(fine | local, np.maximum(1, np.ceil(self.steps_per_year * maturity / intervals - 1e-9)),
                         1).astype(int)
        cv_own = np.zeros(n)
        if self.control_variate and not local:
            cv_own = _own_control(family, fields)
        terms["cv_own"] = cv_own
        cv_mean = self._control_means(family, terms, fields, spot, maturity, rate, vol, dividend, market, local)
        streams = np.arange(n) if streams is None else np.asarray(streams).ravel()
        keys = np.asarray(stream_keys(self.seed, streams))
        grid = None
        if local:
            grid = local_vol if local_vol is not None else default_local_vol(market, maturity)
        log_uniform = local and _log_uniform(grid.spots)
        moments = np.zeros((n, 6)) if not self.qmc else np.zeros((n, int(self.qmc_replications), 6))
        tangents = np.full((n, 7), np.nan)
        bumps = None
        n_steps = (intervals * steps).astype(int)
        padded = np.array([padded_steps(k) for k in n_steps])
        # One trade per dispatch (dispatches run concurrently): vmapping trades of one padded size together
        # let XLA vectorise their per-trade scalars differently with the batch size and changed last bits;
        # alone, a trade's arithmetic depends only on its own data and the padded size.
        for rows in (np.array([row]) for size in np.unique(padded) for row in np.flatnonzero(padded == size)):
            size = int(padded[rows[0]])
            schedule = _schedule(n_steps[rows], steps[rows], size, maturity[rows], market if local else None, grid)
            group_market = {"spot": spot[rows]} if local else {
                "spot": spot[rows], "vol": vol[rows], "rate": rate[rows], "dividend": dividend[rows],
                "maturity": maturity[rows]}
            setup = {"family": family, "antithetic": self.antithetic, "local": local,
                     "terms": {k: jnp.asarray(v[rows]) for k, v in terms.items()}, "keys": jnp.asarray(keys[rows]),
                     "schedule": {k: jnp.asarray(v) for k, v in schedule.items()},
                     "vol_spots": jnp.asarray(grid.spots) if local else None,
                     "vol_table": jnp.asarray(grid.vols) if local else None, "log_uniform": log_uniform}
            group_market = {k: jnp.asarray(v) for k, v in group_market.items()}
            shape_info = (n_steps[rows], size)
            moments[rows] = self._moments(setup, group_market, streams[rows], shape_info)
            if self.greeks:
                if family in PATHWISE:
                    tangents[rows] = self._pathwise(setup, group_market, streams[rows], shape_info, local, family)
                else:
                    bump_rows = self._bumped(setup, group_market, streams[rows], shape_info, local)
                    bumps = np.full((n, bump_rows.shape[1]), np.nan) if bumps is None else bumps
                    bumps[rows] = bump_rows
        value, std_error, beta, plain = self._estimate(moments, cv_mean)
        greeks = {}
        if self.greeks:
            greeks = self._greeks(family, tangents, bumps, plain, spot, local, n)
        notes = [GREEK_METHODS[family]] + ([LOCAL_VOL_NOTE] if local else [])
        diagnostics = {"paths": int(self.paths), "seed": int(self.seed), "antithetic": self.antithetic,
                       "qmc": self.qmc, "engine": "log-Euler under local vol" if local else "exact GBM",
                       "steps": n_steps.reshape(shape), "control_variate": self.control_variate,
                       "control_beta": beta.reshape(shape),
                       "blocks": -(-self._samples_per_replication() // PATH_BLOCK_SAMPLES),
                       "greeks": "; ".join(notes) if self.greeks else "none"}
        if self.qmc:
            diagnostics["qmc_replications"] = int(self.qmc_replications)
        return PriceResult(value=value.reshape(shape), std_error=std_error.reshape(shape), method=self.name,
                           greeks={k: v.reshape(shape) for k, v in greeks.items()}, diagnostics=diagnostics)

    def _samples_per_replication(self):
        return self.samples // int(self.qmc_replications) if self.qmc else self.samples

    def _dispatches(self, setup, market, streams, shape_info):
        """(kernel keyword arguments) per dispatch: chunks of pseudo-random blocks, or one Sobol block of one
        replication at a time (one trade: its N-dimensional Sobol increments behind size - N zero-length
        padding steps); yields (replication, kwargs, first block, blocks)."""
        samples = self._samples_per_replication()
        n_blocks = -(-samples // PATH_BLOCK_SAMPLES)
        if not self.qmc:
            chunk = min(int(self.chunk_blocks), -(-n_blocks // _CORES))   # at least one dispatch per core
            for first in range(0, n_blocks, chunk):
                yield 0, dict(setup, market=market, first_block=first, n_blocks=chunk,
                              samples=jnp.asarray(samples, dtype=jnp.int64),
                              offset=jnp.asarray(0, dtype=jnp.uint64)), first, chunk
            return
        (n_steps,), size = shape_info
        bridge = brownian_bridge_matrix(n_steps)
        padding = np.zeros((size - n_steps, PATH_BLOCK_SAMPLES))
        for replication in range(int(self.qmc_replications)):
            for block in range(n_blocks):
                start = block * PATH_BLOCK_SAMPLES
                increments = sobol_normals((int(self.seed), int(streams[0]), replication), n_steps, start,
                                           PATH_BLOCK_SAMPLES, bridge)
                normals = np.concatenate([padding, increments])[None, None]
                yield replication, dict(setup, market=market, first_block=block, n_blocks=1,
                                        samples=jnp.asarray(samples, dtype=jnp.int64),
                                        offset=jnp.asarray(replication * samples, dtype=jnp.uint64),
                                        normals=jnp.asarray(normals)), block, 1

    def _moments(self, setup, market, streams, shape_info):
        """Pooled moments (trades, 6), or per replication (trades, R, 6) with ``qmc``."""
        parts = {}
        for replication, kwargs, _, _ in self._dispatches(setup, market, streams, shape_info):
            parts.setdefault(replication, []).append(path_block_moments(**kwargs))
        n_blocks = -(-self._samples_per_replication() // PATH_BLOCK_SAMPLES)
        pooled = [np.asarray(combine_block_moments(np.concatenate([np.asarray(p) for p in parts[r]],
                                                                  axis=1)[:, :n_blocks]))
                  for r in sorted(parts)]
        return pooled[0] if not self.qmc else np.stack(pooled, axis=1)

    def _tangent_sums(self, setup, market, streams, shape_info, directions, spot_scales):
        sums = [np.asarray(path_block_tangents(directions=directions, spot_scales=spot_scales, **kwargs))
                for _, kwargs, _, _ in self._dispatches(setup, market, streams, shape_info)]
        blocks = np.concatenate(sums, axis=1)                           # (trades, blocks, scales, directions)
        if not self.qmc:                                                # the last chunk may run past the end
            blocks = blocks[:, :-(-self.samples // PATH_BLOCK_SAMPLES)]
        total = np.asarray(ordered_sum(np.moveaxis(blocks, 1, -1)))     # (trades, scales, directions)
        return total / (self._samples_per_replication() * (int(self.qmc_replications) if self.qmc else 1))

    def _pathwise(self, setup, market, streams, shape_info, local, family):
        """(trades, 7): dV/dS, dV/dsigma, dV/dr, dV/dT, dV/dS at S(1+h), at S(1-h), unused."""
        out = np.full((len(streams), 7), np.nan)
        directions = ("spot",) if local else (("spot", "vol", "rate", "maturity") if family in ("european", "lookback")
                                              else ("spot", "vol", "rate"))
        base = self._tangent_sums(setup, market, streams, shape_info, directions, (1.0,))[:, 0]
        out[:, :len(directions)] = base
        h = float(self.gamma_bump)
        shifted = self._tangent_sums(setup, market, streams, shape_info, ("spot",), (1.0 + h, 1.0 - h))
        out[:, 4], out[:, 5] = shifted[:, 0, 0], shifted[:, 1, 0]
        return out

    def _bumped(self, setup, market, streams, shape_info, local):
        """Means of the payoff (trades, k) under CRN-bumped markets: spot up/down, then (flat) vol, rate and
        maturity up/down."""
        h = float(self.gamma_bump)
        scenarios = [("spot", 1.0 + h, True), ("spot", 1.0 - h, True)]
        if not local:
            scenarios += [("vol", self.vol_bump, False), ("vol", -self.vol_bump, False),
                          ("rate", self.rate_bump, False), ("rate", -self.rate_bump, False),
                          ("maturity", self.maturity_bump, False), ("maturity", -self.maturity_bump, False)]
        columns = []
        for name, size, relative in scenarios:
            bumped = dict(market, **{name: market[name] * size if relative else market[name] + size})
            moments = self._moments(setup, bumped, streams, shape_info)
            columns.append(moments[..., 1] if not self.qmc else moments[..., 1].mean(axis=1))
        return np.stack(columns, axis=1)

    def _estimate(self, moments, cv_mean):
        """(value, std_error, beta, plain mean) per trade from pooled moments (or per-replication moments
        with ``qmc``): value = mean_x - beta (mean_c - E[c]), beta = M_xc / M_cc (0 without control
        variate); pseudo-random SE sqrt((M_xx - beta M_xc) / (N - 1) / N); QMC SE from the spread of the
        replication estimates Y_r = mean_x,r - beta (mean_c,r - E[c]) with beta pooled within replications."""
        if self.qmc:
            pooled = np.asarray(ordered_sum(np.moveaxis(moments[..., 3:], 1, -1)))
            m_cc, m_xc = pooled[:, 1], pooled[:, 2]
        else:
            m_cc, m_xc = moments[:, 4], moments[:, 5]
        beta = np.where(m_cc > 0.0, m_xc / np.where(m_cc > 0.0, m_cc, 1.0), 0.0) if self.control_variate else (
            np.zeros(moments.shape[0]))
        if self.qmc:
            replications = moments.shape[1]
            estimates = moments[..., 1] - beta[:, None] * (moments[..., 2] - cv_mean[:, None])
            value = np.asarray(ordered_sum(estimates)) / replications
            spread = np.asarray(ordered_sum((estimates - value[:, None]) ** 2))
            plain = np.asarray(ordered_sum(moments[..., 1])) / replications
            return value, np.sqrt(spread / (replications - 1) / replications), beta, plain
        count = moments[:, 0]
        value = moments[:, 1] - beta * (moments[:, 2] - cv_mean)
        residual = np.maximum(moments[:, 3] - beta * m_xc, 0.0)
        return value, np.sqrt(residual / np.maximum(count - 1.0, 1.0) / count), beta, moments[:, 1]

    def _control_means(self, family, terms, fields, spot, maturity, rate, vol, dividend, market, local):
        """E[control] per trade: the closed form of the family's own control (flat vol), else the
        discounted terminal spot's mean S e^{-int_0^T q}."""
        if local:
            return spot * np.asarray(market.dividend.discount(jnp.asarray(maturity)))
        mean = spot * np.exp(-dividend * maturity)
        own = terms["cv_own"] > 0.0
        if not np.any(own):
            return mean
        strike = np.asarray(terms["strike"])
        is_call = terms["sign"] > 0.0
        if family == "barrier":
            closed = black_scholes_price(spots=spot, strikes=strike, expiries=maturity, volatilities=vol, rates=rate,
                                         dividend_yields=dividend, is_call=is_call)
        else:
            closed = geometric_asian_price(spots=spot, strikes=strike, expiries=maturity, volatilities=vol,
                                           rates=rate, dividend_yields=dividend, fixings=terms["fixings"],
                                           is_call=is_call)
        return np.where(own, np.asarray(closed), mean)

    def _greeks(self, family, tangents, bumps, value, spot, local, n):
        h = float(self.gamma_bump)
        nan = np.full(n, np.nan)
        if family in PATHWISE:
            delta, vega, rho, d_maturity, up, down = (tangents[:, k] for k in range(6))
            gamma = (up - down) / (2.0 * h * spot)
            theta = -d_maturity
        else:
            delta = (bumps[:, 0] - bumps[:, 1]) / (2.0 * h * spot)
            gamma = (bumps[:, 0] - 2.0 * value + bumps[:, 1]) / (h * spot) ** 2
            if local:
                vega = rho = theta = nan
            else:
                vega = (bumps[:, 2] - bumps[:, 3]) / (2.0 * self.vol_bump)
                rho = (bumps[:, 4] - bumps[:, 5]) / (2.0 * self.rate_bump)
                theta = -(bumps[:, 6] - bumps[:, 7]) / (2.0 * self.maturity_bump)
        if local:
            vega, rho, theta = nan, nan, nan
        return {"delta": delta, "gamma": gamma, "vega": vega, "theta": theta, "rho": rho}


def _contract_terms(family, fields, spot, n):
    """Per-trade scalars of the payoff (:mod:`shoals.kernels.payoffs`), the number of date intervals of the
    time grid, and whether the grid needs ``steps_per_year`` under flat vol (rebate paid at the hit)."""
    sign = np.where(np.asarray(fields["is_call"], dtype=bool), 1.0, -1.0) if "is_call" in fields else np.ones(n)
    ones, zeros = np.ones(n), np.zeros(n)
    if family == "european":
        return {"strike": as_batch(fields["strike"], n), "sign": sign}, ones, zeros.astype(bool)
    if family == "barrier":
        barrier = as_batch(fields["barrier"], n)
        up = np.asarray(fields["is_up"], dtype=bool)
        dates = as_batch(fields["monitoring_dates"], n)
        rebate = as_batch(fields["rebate"], n)
        at_hit = np.asarray(fields["rebate_at_hit"], dtype=bool)
        breached = (dates == 0) & np.where(up, spot >= barrier, spot <= barrier)
        if np.any(breached):
            raise InputError("the spot is already at or beyond the continuously monitored barrier (the option has "
                             "knocked in or out); price the knocked-in contract as a European, a knocked-out one is "
                             "worth its rebate", field="barrier.barrier", value=barrier[breached])
        terms = {"strike": as_batch(fields["strike"], n), "sign": sign, "log_barrier": np.log(barrier),
                 "side": np.where(up, 1.0, -1.0), "knock_in": np.asarray(fields["is_knock_in"], dtype=float),
                 "rebate": rebate, "continuous": (dates == 0).astype(float), "at_hit": at_hit.astype(float)}
        return terms, np.where(dates > 0, dates, 1.0), (dates == 0) & (rebate > 0) & at_hit
    if family == "lookback":
        floating = np.asarray(fields["floating"], dtype=bool)
        call = sign > 0
        side = np.where(floating != call, 1.0, -1.0)       # +1: the maximum (floating put, fixed call)
        extreme = as_batch(fields["running_extreme"], n)
        log_extreme = np.where(np.isnan(extreme), -side * np.inf, np.log(np.where(np.isnan(extreme), 1.0, extreme)))
        strike = as_batch(fields["strike"], n)
        terms = {"strike": np.where(floating, 1.0, strike), "sign": sign, "floating": floating.astype(float),
                 "side": side, "log_extreme": log_extreme}
        return terms, ones, zeros.astype(bool)
    if family == "asian":
        floating = np.asarray(fields["floating"], dtype=bool)
        fixings = as_batch(fields["fixings"], n)
        terms = {"strike": np.where(floating, 1.0, as_batch(fields["strike"], n)), "sign": sign,
                 "geometric": np.asarray(fields["geometric"], dtype=float), "floating": floating.astype(float),
                 "fixings": fixings}
        return terms, fixings, zeros.astype(bool)
    terms = {"sign": sign, **{name: as_batch(fields[name], n) for name in (
        "moneyness", "local_floor", "local_cap", "global_floor", "global_cap")},
        "per_period": np.asarray(fields["pay_per_period"], dtype=float)}
    return terms, as_batch(fields["resets"], n), zeros.astype(bool)


def _own_control(family, fields):
    """1 where the family's own closed-form control applies under flat vol: every barrier (the vanilla),
    fixed-strike arithmetic Asians (the geometric Asian)."""
    n = np.asarray(fields["maturity"]).size
    if family == "barrier":
        return np.ones(n)
    if family == "asian":
        return (~np.asarray(fields["floating"], dtype=bool) & ~np.asarray(fields["geometric"], dtype=bool)).astype(float)
    return np.zeros(n)


def _schedule(n_steps, steps, size, maturity, snapshot, grid):
    """Per-trade grid data (see :func:`shoals.kernels.paths.path_samples`) for trades of N = ``n_steps`` steps
    (``steps`` per date interval) padded to ``size`` steps by leading zero-length steps: draw index of each
    step, fixing flags, and t_j / T with sqrt(dt_j / T) (flat vol) or, under the ``snapshot``'s local vol
    ``grid``, times, sqrt(dt), drift integrals int (r - q) and discount factors from its curves and the time
    cell of each step start in the grid (linear in t, as LocalVolGrid.vol)."""
    index = np.arange(size)[None, :] - (size - n_steps)[:, None]             # the unpadded step number
    fixings = (index >= 0) & ((index + 1) % steps[:, None] == 0)
    fractions = np.concatenate([np.zeros((n_steps.size, 1)), np.maximum(index + 1, 0) / n_steps[:, None]], axis=1)
    schedule = {"steps": np.maximum(index, 0).astype(np.uint32), "fixings": fixings}
    if snapshot is None:
        return dict(schedule, fractions=fractions, sqrt_fractions=np.sqrt(np.diff(fractions, axis=1)))
    times = maturity[:, None] * fractions
    carry = np.asarray(snapshot.rate.integral(jnp.asarray(times))) - np.asarray(
        snapshot.dividend.integral(jnp.asarray(times)))
    nodes = np.asarray(grid.times, dtype=np.float64)
    starts = times[:, :-1]
    cell = np.clip(np.searchsorted(nodes, starts, side="right") - 1, 0, nodes.size - 2)
    weight = np.clip((starts - nodes[cell]) / (nodes[cell + 1] - nodes[cell]), 0.0, 1.0)
    return dict(schedule, times=times, sqrt_dt=np.sqrt(np.diff(times, axis=1)), log_drifts=np.diff(carry, axis=1),
                discounts=np.asarray(snapshot.rate.discount(jnp.asarray(times))), vol_index=cell.astype(np.int32),
                vol_weight=weight)


def _log_uniform(spots) -> bool:
    """True when the spot nodes are uniform in ln S (as built by build_local_vol): the cell of a spot is then
    found by one division instead of a binary search."""
    steps = np.diff(np.log(np.asarray(spots, dtype=np.float64)))
    return bool(np.all(np.abs(steps - steps.mean()) <= 1e-9 * steps.mean()))

"""Monte Carlo pricing of European options under geometric Brownian motion."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from shoals.errors import InputError, UnsupportedError
from shoals.instruments import European
from shoals.kernels.monte_carlo import (
    BLOCK_SAMPLES, combine_block_stats, european_gbm_block_stats, european_gbm_pathwise_sums, ordered_sum, stream_keys)
from shoals.market import FlatMarket
from shoals.results import PriceResult


def stream_of(trade_id: str) -> int:
    """Stable 32-bit random-stream number of a trade id (BLAKE2b): independent of row order and process."""
    return int.from_bytes(hashlib.blake2b(str(trade_id).encode(), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class MonteCarlo:
    """Monte Carlo under GBM with counter-based random numbers.

    Parameters
    ----------
    paths: number of simulated paths per trade (with ``antithetic``, pairs count as two paths; must
        then be even).
    seed: the seed; with the trade's stream number it fixes every draw (see
        :mod:`shoals.kernels.monte_carlo`).
    antithetic: average f(z) and f(-z) per draw.
    chunk_blocks: blocks of 65,536 samples evaluated per dispatch (memory and parallelism only;
        results are bitwise identical for any value).
    greeks: also estimate delta, vega, rho, theta pathwise (automatic differentiation through the
        simulation, unbiased for the Lipschitz European payoff) and gamma by a central difference of
        the pathwise delta at S(1 +- ``gamma_bump``) with common random numbers.

    The result's ``std_error`` is the standard error of the price estimate.
    """

    paths: int = 100_000
    seed: int = 0
    antithetic: bool = False
    chunk_blocks: int = 16
    greeks: bool = True
    gamma_bump: float = 0.01

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

    def supports(self, instrument, market) -> bool:
        return isinstance(instrument, European) and isinstance(market, FlatMarket)

    @property
    def samples(self) -> int:
        """Independent samples per trade: paths, or path pairs with antithetic variates."""
        return int(self.paths) // 2 if self.antithetic else int(self.paths)

    def price(self, instrument, market, *, streams=None) -> PriceResult:
        """Price a (batch of) European option(s); ``streams`` are the trades' random-stream numbers
        (default: position in the batch; the CLI uses :func:`stream_of` of the trade ids)."""
        if not self.supports(instrument, market):
            raise UnsupportedError(
                f"monte-carlo prices European options on a FlatMarket in this version, not "
                f"{type(instrument).__name__} on {type(market).__name__}")
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (
            market.spot, instrument.strike, instrument.maturity, market.vol, market.rate, market.dividend,
            np.where(np.asarray(instrument.is_call), 1.0, -1.0))))
        shape = arrays[0].shape
        spots, strikes, expiries, vols, rates, dividends, signs = (jnp.asarray(a.ravel()) for a in arrays)
        streams = np.arange(spots.size) if streams is None else np.asarray(streams).ravel()
        keys = stream_keys(self.seed, streams)
        inputs = dict(keys=keys, samples=jnp.asarray(self.samples, dtype=jnp.int64), spots=spots,
                      strikes=strikes, expiries=expiries, volatilities=vols, rates=rates,
                      dividend_yields=dividends, signs=signs)
        stats = self._over_blocks(european_gbm_block_stats, inputs)
        value, std_error = combine_block_stats(*stats)
        greeks = {}
        if self.greeks:
            (sums,) = self._over_blocks(european_gbm_pathwise_sums, dict(inputs, gamma_bump=self.gamma_bump),
                                        outputs=1)
            d_spot, d_vol, d_rate, d_expiry, up, down = np.moveaxis(np.asarray(ordered_sum(np.moveaxis(sums, 1, -1))) / self.samples, -1, 0)
            greeks = {"delta": d_spot, "gamma": (up - down) / (2.0 * self.gamma_bump * np.asarray(spots)),
                      "vega": d_vol, "theta": -d_expiry, "rho": d_rate}
        return PriceResult(
            value=np.asarray(value).reshape(shape), std_error=np.asarray(std_error).reshape(shape),
            method=self.name, greeks={k: np.asarray(v).reshape(shape) for k, v in greeks.items()},
            diagnostics={"paths": int(self.paths), "seed": int(self.seed), "antithetic": self.antithetic,
                         "blocks": self.n_blocks,
                         "greeks": "pathwise AD (delta, vega, rho, theta); gamma: CRN difference of pathwise delta"
                         if self.greeks else "none"})

    @property
    def n_blocks(self) -> int:
        return -(-self.samples // BLOCK_SAMPLES)

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

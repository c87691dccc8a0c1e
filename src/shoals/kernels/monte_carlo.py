"""Counter-based random numbers and the Monte Carlo European kernel under geometric Brownian motion.

Random stream.  Sample i of a stream uses the Threefry-2x32 block cipher (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011; the generator behind ``jax.random``) keyed by the
stream key (derived from (seed, trade)) on the 64-bit counter i; its 64 output bits give the
uniform u = (floor(bits / 2^11) + 1/2) 2^-53 in (0, 1) and the normal z = N^{-1}(u).  A draw therefore
depends only on (seed, trade, i): never on how samples are split into blocks, chunks, processes or
machines.

Blocks.  Samples are reduced in fixed blocks of :data:`BLOCK_SAMPLES` (the unit of the reduction
tree).  Each block returns its count, mean and sum of squared deviations (and, optionally, pathwise
Greek sums); blocks are combined in block order by :func:`combine_block_stats`.  Any grouping of
blocks into chunks or tasks therefore gives bitwise the same result.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.random import threefry_2x32
from jax.scipy.special import ndtri

BLOCK_SAMPLES = 1 << 16
_TWO_TO_MINUS_53 = 2.0 ** -53


def stream_keys(seed: int, streams):
    """Key words, shape (n, 2) uint32, of the random streams ``streams`` (one per trade) under ``seed``:
    Threefry-2x32 of the seed's key on the counter (0, stream)."""
    base = jax.random.key_data(jax.random.PRNGKey(seed))
    streams = jnp.asarray(streams, dtype=jnp.uint32).ravel()
    mixed = threefry_2x32(base, jnp.concatenate([jnp.zeros_like(streams), streams]))
    return jnp.stack([mixed[:streams.size], mixed[streams.size:]], axis=1)


def counter_uniforms(key, counters):
    """Uniforms in (0, 1) with 53 random bits from Threefry-2x32(key, counter); shape of ``counters``."""
    counters = jnp.asarray(counters, dtype=jnp.uint64)
    n = counters.size
    words = jnp.concatenate([(counters.ravel() >> 32).astype(jnp.uint32), counters.ravel().astype(jnp.uint32)])
    mixed = threefry_2x32(key, words)
    bits = (mixed[:n].astype(jnp.uint64) << 32) | mixed[n:].astype(jnp.uint64)
    uniforms = ((bits >> 11).astype(jnp.float64) + 0.5) * _TWO_TO_MINUS_53
    return uniforms.reshape(counters.shape)


def counter_normals(key, counters):
    """Standard normals N^{-1}(u) of :func:`counter_uniforms`; shape of ``counters``."""
    return ndtri(counter_uniforms(key, counters))


def _block_payoffs(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign, antithetic):
    """Discounted payoff samples of one block (masked beyond ``samples``) and the validity mask."""
    index = block.astype(jnp.uint64) * BLOCK_SAMPLES + jnp.arange(BLOCK_SAMPLES, dtype=jnp.uint64)
    valid = index < samples.astype(jnp.uint64)
    z = counter_normals(key, index)
    drift = (rate - dividend - 0.5 * vol * vol) * expiry
    diffusion = vol * jnp.sqrt(expiry)
    discount = jnp.exp(-rate * expiry)

    def payoff(shock):
        terminal = spot * jnp.exp(drift + diffusion * shock)
        return discount * jnp.maximum(sign * (terminal - strike), 0.0)

    samples_ = 0.5 * (payoff(z) + payoff(-z)) if antithetic else payoff(z)
    return jnp.where(valid, samples_, 0.0), valid


def _block_stats(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign, antithetic):
    values, valid = _block_payoffs(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign,
                                   antithetic)
    count = jnp.sum(valid)
    mean = jnp.sum(values) / jnp.maximum(count, 1)
    m2 = jnp.sum(jnp.where(valid, (values - mean) ** 2, 0.0))
    return count, mean, m2


def _block_pathwise_sums(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign, antithetic,
                         gamma_bump):
    """Sums over one block of pathwise dV/d(spot, vol, rate, expiry) and of pathwise delta at spot(1 +- h)."""

    def block_sum(s, v, r, t):
        values, _ = _block_payoffs(key, block, samples, s, strike, t, v, r, dividend, sign, antithetic)
        return jnp.sum(values)

    gradient = jax.grad(block_sum, argnums=(0, 1, 2, 3))
    d_spot, d_vol, d_rate, d_expiry = gradient(spot, vol, rate, expiry)
    up = gradient(spot * (1.0 + gamma_bump), vol, rate, expiry)[0]
    down = gradient(spot * (1.0 - gamma_bump), vol, rate, expiry)[0]
    return jnp.stack([d_spot, d_vol, d_rate, d_expiry, up, down])


@partial(jax.jit, static_argnames=("n_blocks", "antithetic"))
def european_gbm_block_stats(*, keys, first_block, n_blocks, samples, spots, strikes, expiries,
                             volatilities, rates, dividend_yields, signs, antithetic=False):
    """Per-block (count, mean, M2) of discounted European payoffs for a batch of trades.

    S_T = S exp((r - q - sigma^2/2) T + sigma sqrt(T) z), sample = e^{-rT} max(w(S_T - K), 0), or with
    antithetic variates the pair average [f(z) + f(-z)]/2 (one sample per counter).
    ``keys`` has shape (trades, 2); the other arrays shape (trades,).  Returns arrays (trades, n_blocks).
    """
    blocks = first_block + jnp.arange(n_blocks)
    per_block = jax.vmap(_block_stats, in_axes=(None, 0) + (None,) * 9)
    per_trade = jax.vmap(per_block, in_axes=(0, None, None, 0, 0, 0, 0, 0, 0, 0, None))
    return per_trade(keys, blocks, samples, spots, strikes, expiries, volatilities, rates,
                     dividend_yields, signs, antithetic)


@partial(jax.jit, static_argnames=("n_blocks", "antithetic"))
def european_gbm_pathwise_sums(*, keys, first_block, n_blocks, samples, spots, strikes, expiries,
                               volatilities, rates, dividend_yields, signs, antithetic=False, gamma_bump=0.01):
    """Per-block sums of pathwise derivatives, shape (trades, n_blocks, 6).

    Columns: dV/dS, dV/dsigma, dV/dr, dV/dT, and dV/dS at S(1+h) and S(1-h) with common random
    numbers (for gamma by central difference of the pathwise delta, h = ``gamma_bump``).
    Pathwise differentiation (Broadie-Glasserman 1996) is unbiased here because the payoff is
    Lipschitz in each parameter; its second derivative is not (a Dirac at the strike), hence the
    difference for gamma.
    """
    blocks = first_block + jnp.arange(n_blocks)
    per_block = jax.vmap(_block_pathwise_sums, in_axes=(None, 0) + (None,) * 10)
    per_trade = jax.vmap(per_block, in_axes=(0, None, None, 0, 0, 0, 0, 0, 0, 0, None, None))
    return per_trade(keys, blocks, samples, spots, strikes, expiries, volatilities, rates,
                     dividend_yields, signs, antithetic, gamma_bump)


def combine_block_stats(counts, means, m2s):
    """Mean and standard error from per-block (count, mean, M2) along the last axis, in block order.

    Chan, Golub & LeVeque (1979): N = sum n_b, mean = sum n_b mean_b / N,
    M2 = sum M2_b + sum n_b (mean_b - mean)^2, std_error = sqrt(M2 / (N - 1) / N).
    """
    counts = jnp.asarray(counts, dtype=jnp.float64)
    total = jnp.sum(counts, axis=-1)
    mean = jnp.sum(counts * means, axis=-1) / total
    m2 = jnp.sum(m2s, axis=-1) + jnp.sum(counts * (means - mean[..., None]) ** 2, axis=-1)
    return mean, jnp.sqrt(m2 / jnp.maximum(total - 1.0, 1.0) / total)

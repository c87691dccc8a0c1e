"""Counter-based random numbers and the Monte Carlo European kernel under geometric Brownian motion.

Random stream.  Sample i of a stream uses the Threefry-2x32 block cipher (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011; the generator behind ``jax.random``) keyed by the
stream key (derived from (seed, trade)) on the 64-bit counter i; its 64 output bits give the
uniform u = (floor(bits / 2^11) + 1/2) 2^-53 in (0, 1) and the normal z = N^{-1}(u) (Wichura's AS241,
:func:`shoals.kernels.special.ndtri`).  A draw therefore
depends only on (seed, trade, i): never on how samples are split into blocks, chunks, processes or
machines.

Path draws.  A path sample needs one normal per time step (and, for lookbacks, one uniform per step):
the draw of step j for sample i uses the counter with high word j (normals) or 2^31 + j (uniforms) and
low word i (:func:`step_normals`, :func:`step_uniforms`), so it depends only on (seed, trade, i, j);
step 0 of a path is the European draw of the same sample (i < 2^32 samples per trade).

Blocks.  Samples are reduced in fixed blocks of :data:`BLOCK_SAMPLES` by a pairwise tree of
elementwise adds (:func:`tree_sum`: the same rounding whatever the batch or chunk shape).  Each block returns its count, mean and sum of squared deviations (and, optionally, pathwise
Greek sums); blocks are combined in block order by :func:`combine_block_stats`.  Any grouping of
blocks into chunks or tasks therefore gives bitwise the same result.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.random import threefry_2x32

from shoals.kernels.special import ndtri

BLOCK_SAMPLES = 1 << 16
_TWO_TO_MINUS_53 = 2.0 ** -53


@jax.jit
def stream_keys(seed, streams):
    """Key words, shape (n, 2) uint32, of the random streams ``streams`` (one per trade) under ``seed``:
    Threefry-2x32 of the seed's key on the counter (0, stream)."""
    base = jax.random.key_data(jax.random.PRNGKey(seed))
    streams = jnp.asarray(streams, dtype=jnp.uint32).ravel()
    mixed = threefry_2x32(base, jnp.concatenate([jnp.zeros_like(streams), streams]))
    return jnp.stack([mixed[:streams.size], mixed[streams.size:]], axis=1)


def counter_uniforms(key, counters):
    """Uniforms in (0, 1) with 53 random bits from Threefry-2x32(key, counter); shape of ``counters``."""
    counters = jnp.asarray(counters, dtype=jnp.uint64)
    return _word_uniforms(key, (counters >> 32).astype(jnp.uint32), counters.astype(jnp.uint32))


def counter_normals(key, counters):
    """Standard normals N^{-1}(u) of :func:`counter_uniforms`; shape of ``counters``."""
    return ndtri(counter_uniforms(key, counters))


_UNIFORM_WORD = 1 << 31


def _word_uniforms(key, high, low):
    """Uniforms u = (floor(bits / 2^11) + 1/2) 2^-53 from the 64 bits of Threefry-2x32(key, (high, low)) for
    32-bit counter words ``high`` (broadcast against ``low``) and ``low``; shape of ``low``."""
    low = jnp.asarray(low, dtype=jnp.uint32)
    high = jnp.broadcast_to(jnp.asarray(high, dtype=jnp.uint32), low.shape)
    n = low.size
    mixed = threefry_2x32(key, jnp.concatenate([high.ravel(), low.ravel()]))
    bits = (mixed[:n].astype(jnp.uint64) << 32) | mixed[n:].astype(jnp.uint64)
    return (((bits >> 11).astype(jnp.float64) + 0.5) * _TWO_TO_MINUS_53).reshape(low.shape)


def step_normals(key, step, samples):
    """Normals of time step ``step`` (scalar) for sample indices ``samples``: counter (step, sample)."""
    return ndtri(_word_uniforms(key, step, samples))


def step_uniforms(key, step, samples):
    """Uniforms in (0, 1) of time step ``step`` for ``samples``: counter (2^31 + step, sample), a stream
    disjoint from :func:`step_normals` (used to sample the Brownian-bridge extreme of a step)."""
    return _word_uniforms(key, jnp.asarray(step, dtype=jnp.uint32) + jnp.uint32(_UNIFORM_WORD), samples)


def tree_sum(values):
    """Sum over the last axis (a power of two) by pairwise halving: elementwise adds only, so the rounding
    is the same whatever the leading (batch, block) shape; XLA's reduce may reorder with the shape."""
    while values.shape[-1] > 1:
        half = values.shape[-1] // 2
        values = values[..., :half] + values[..., half:]
    return values[..., 0]


def _discounted_payoff(shock, spot, strike, expiry, vol, rate, dividend, sign, antithetic):
    """e^{-rT} max(w(S_T - K), 0) with S_T = S exp((r - q - sigma^2/2) T + sigma sqrt(T) z); with antithetic
    variates the average over z and -z."""
    drift = (rate - dividend - 0.5 * vol * vol) * expiry
    diffusion = vol * jnp.sqrt(expiry)
    discount = jnp.exp(-rate * expiry)

    def payoff(z):
        return discount * jnp.maximum(sign * (spot * jnp.exp(drift + diffusion * z) - strike), 0.0)

    return 0.5 * (payoff(shock) + payoff(-shock)) if antithetic else payoff(shock)


def _block_shocks(key, block, samples):
    index = block.astype(jnp.uint64) * BLOCK_SAMPLES + jnp.arange(BLOCK_SAMPLES, dtype=jnp.uint64)
    return counter_normals(key, index), index < samples.astype(jnp.uint64)


def _block_stats(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign, antithetic):
    shocks, valid = _block_shocks(key, block, samples)
    values = jnp.where(valid, _discounted_payoff(shocks, spot, strike, expiry, vol, rate, dividend, sign,
                                                 antithetic), 0.0)
    count = jnp.sum(valid)
    mean = tree_sum(values) / jnp.maximum(count, 1)
    m2 = tree_sum(jnp.where(valid, (values - mean) ** 2, 0.0))
    return count, mean, m2


def _block_pathwise_sums(key, block, samples, spot, strike, expiry, vol, rate, dividend, sign, antithetic,
                         gamma_bump):
    """Sums over one block of pathwise dV/d(spot, vol, rate, expiry) and of pathwise delta at spot(1 +- h)."""
    shocks, valid = _block_shocks(key, block, samples)

    def sample(z, s, v, r, t):
        return _discounted_payoff(z, s, strike, t, v, r, dividend, sign, antithetic)

    per_sample = jax.vmap(jax.grad(sample, argnums=(1, 2, 3, 4)), in_axes=(0, None, None, None, None))
    d_spot, d_vol, d_rate, d_expiry = per_sample(shocks, spot, vol, rate, expiry)
    up = per_sample(shocks, spot * (1.0 + gamma_bump), vol, rate, expiry)[0]
    down = per_sample(shocks, spot * (1.0 - gamma_bump), vol, rate, expiry)[0]
    return jnp.stack([tree_sum(jnp.where(valid, g, 0.0)) for g in (d_spot, d_vol, d_rate, d_expiry, up, down)])


@partial(jax.jit, static_argnames=("n_blocks", "antithetic"))
def european_gbm_block_stats(*, keys, first_block, n_blocks, samples, spots, strikes, expiries,
                             volatilities, rates, dividend_yields, signs, antithetic=False):
    """Per-block (count, mean, M2) of discounted European payoffs for a batch of trades.

    S_T = S exp((r - q - sigma^2/2) T + sigma sqrt(T) z), sample = e^{-rT} max(w(S_T - K), 0), or with
    antithetic variates the pair average [f(z) + f(-z)]/2 (one sample per counter).
    ``keys`` has shape (trades, 2); the other arrays shape (trades,).  Returns arrays (trades, n_blocks).
    """
    spots, strikes, expiries, volatilities, rates, dividend_yields, signs = (
        jnp.asarray(a, dtype=jnp.float64)
        for a in (spots, strikes, expiries, volatilities, rates, dividend_yields, signs))
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
    spots, strikes, expiries, volatilities, rates, dividend_yields, signs = (
        jnp.asarray(a, dtype=jnp.float64)
        for a in (spots, strikes, expiries, volatilities, rates, dividend_yields, signs))
    blocks = first_block + jnp.arange(n_blocks)
    per_block = jax.vmap(_block_pathwise_sums, in_axes=(None, 0) + (None,) * 10)
    per_trade = jax.vmap(per_block, in_axes=(0, None, None, 0, 0, 0, 0, 0, 0, 0, None, None))
    return per_trade(keys, blocks, samples, spots, strikes, expiries, volatilities, rates,
                     dividend_yields, signs, antithetic, gamma_bump)


def _add(carry, row):
    return carry + row, None


@jax.jit
def ordered_sum(values):
    """Sum over the last axis strictly left to right (a scan of elementwise adds): the result of each
    row does not depend on how many rows there are, unlike a reduce."""
    values = jnp.moveaxis(jnp.asarray(values), -1, 0)
    total, _ = jax.lax.scan(_add, jnp.zeros_like(values[0]), values)
    return total


@jax.jit
def combine_block_stats(counts, means, m2s):
    """Mean and standard error from per-block (count, mean, M2) along the last axis, in block order.

    Chan, Golub & LeVeque (1979): N = sum n_b, mean = sum n_b mean_b / N,
    M2 = sum M2_b + sum n_b (mean_b - mean)^2, std_error = sqrt(M2 / (N - 1) / N).
    """
    counts = jnp.asarray(counts, dtype=jnp.float64)
    total = ordered_sum(counts)
    mean = ordered_sum(counts * means) / total
    m2 = ordered_sum(m2s) + ordered_sum(counts * (means - mean[..., None]) ** 2)
    return mean, jnp.sqrt(m2 / jnp.maximum(total - 1.0, 1.0) / total)


def block_moments(values, controls, valid):
    """(count, mean_x, mean_c, M_xx, M_cc, M_xc) of one block along the last axis (a power of two):
    means and centred co-moments of the samples ``values`` and control variates ``controls`` where ``valid``."""
    count = jnp.sum(valid, axis=-1).astype(jnp.float64)
    safe = jnp.maximum(count, 1.0)
    x = jnp.where(valid, values, 0.0)
    c = jnp.where(valid, controls, 0.0)
    mean_x = tree_sum(x) / safe
    mean_c = tree_sum(c) / safe
    dx = jnp.where(valid, x - mean_x[..., None], 0.0)
    dc = jnp.where(valid, c - mean_c[..., None], 0.0)
    return jnp.stack([count, mean_x, mean_c, tree_sum(dx * dx), tree_sum(dc * dc), tree_sum(dx * dc)], axis=-1)


@jax.jit
def combine_block_moments(moments):
    """Pool per-block moments (..., blocks, 6) of :func:`block_moments` in block order (Chan, Golub &
    LeVeque 1979, extended to the co-moment): returns (..., 6) = (N, mean_x, mean_c, M_xx, M_cc, M_xc)."""
    moments = jnp.moveaxis(jnp.asarray(moments, dtype=jnp.float64), -2, -1)
    count, mean_x, mean_c, m_xx, m_cc, m_xc = (moments[..., k, :] for k in range(6))
    total = ordered_sum(count)
    safe = jnp.maximum(total, 1.0)
    pooled_x = ordered_sum(count * mean_x) / safe
    pooled_c = ordered_sum(count * mean_c) / safe
    dx = mean_x - pooled_x[..., None]
    dc = mean_c - pooled_c[..., None]
    return jnp.stack([total, pooled_x, pooled_c, ordered_sum(m_xx) + ordered_sum(count * dx * dx),
                      ordered_sum(m_cc) + ordered_sum(count * dc * dc),
                      ordered_sum(m_xc) + ordered_sum(count * dx * dc)], axis=-1)

"""Risk kernels: Monte Carlo and historical VaR/CVaR of a portfolio, delta-hedged P&L of an option grid.

Random draws.  Every normal comes from the counter-based Threefry stream of
:mod:`shoals.kernels.monte_carlo`: the draw of coordinate c (day x asset, or time step) for scenario / path
i uses the 64-bit counter (c << 32) | i under the stream key of the seed.  A draw therefore depends only on
(seed, i, c), never on the block size, the number of scenarios or the device (i < 2^32).

Portfolio model (the original notebook's): with weights w, annual expected returns mu, annual covariance
Sigma = diag(sigma) C diag(sigma) and L = chol(Sigma / 252), the daily portfolio simple return of day d is
r_d = w . (mu / 252 + L z_d), z_d ~ N(0, I), and the horizon return compounds the days,
R = prod_{d=1}^{h} (1 + r_d) - 1; the P&L of a portfolio worth V is V R and the loss is -V R.

Estimators (Jorion, "Value at Risk", 3rd ed., ch. 5 and 7).  VaR_a is the a-quantile of the loss
distribution; on a sample it is the linear-interpolation quantile of the sorted losses
l_(1) <= ... <= l_(n) (Hyndman-Fan type 7, NumPy's default, ``np.quantile(losses, a)``):
VaR_a = l_(k) + (h - k)(l_(k+1) - l_(k)), h = 1 + (n - 1) a, k = floor(h).  Because type 7 is symmetric,
this equals ``-np.percentile(returns, 100 (1 - a)) V``, the convention of the original notebook.
CVaR_a (expected shortfall) is the mean of the losses at or beyond VaR_a: mean{l_i : l_i >= VaR_a}.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from shoals.kernels.black_scholes import black_scholes_greeks
from shoals.kernels.monte_carlo import counter_normals, stream_keys

TRADING_DAYS = 252
VAR_BLOCK = 1 << 18
HEDGE_BLOCK = 64
HEDGE_OPTION_BLOCK = 512


def coordinate_normals(key, coordinates, indices):
    """Standard normals of shape (indices, coordinates): the draw of coordinate c (< 2^32) for scenario /
    path index i uses the Threefry counter (c << 32) | i, so it depends only on (key, c, i).

    Validation: tests/reference/test_var_reference.py::test_scenarios_depend_only_on_seed_and_index.
    """
    coordinates = jnp.asarray(coordinates, dtype=jnp.uint64)
    indices = jnp.asarray(indices, dtype=jnp.uint64)
    return counter_normals(key, (coordinates[None, :] << 32) | indices[:, None])


def correlated_normals(key, cholesky, indices, days):
    """Correlated normals L z of shape (indices, days, assets) for the lower-triangular factor ``cholesky``
    (assets x assets); z of (scenario i, day d, asset a) is coordinate d * assets + a of scenario i.

    Validation: tests/reference/test_var_reference.py (original example with ``draws="assets"``).
    """
    assets = cholesky.shape[0]
    z = coordinate_normals(key, jnp.arange(days * assets), indices).reshape(-1, days, assets)
    return jnp.einsum("ab,ndb->nda", cholesky, z)


def daily_cholesky(volatilities, correlation):
    """L with L L^T = diag(sigma) C diag(sigma) / 252: the daily covariance factor of the notebook model."""
    volatilities = jnp.asarray(volatilities, dtype=jnp.float64)
    covariance = jnp.outer(volatilities, volatilities) * jnp.asarray(correlation, dtype=jnp.float64)
    return jnp.linalg.cholesky(covariance / TRADING_DAYS)


@partial(jax.jit, static_argnames=("scenarios", "days", "draws", "model", "block"))
def simulate_portfolio_returns(*, seed, weights, expected_returns, volatilities, correlation, scenarios, days,
                               draws="portfolio", model="notebook", block=VAR_BLOCK):
    """Horizon simple returns R_i = prod_{d=1}^{days} (1 + w . (mu/252 + L z_{i,d})) - 1, i < ``scenarios``.

    ``model="gbm"`` instead holds the assets to the horizon under correlated geometric Brownian motion,
    R_i = w . (exp((mu - sigma^2/2) h/252 + sqrt(h) L z_i) - 1) (one correlated draw per scenario, the
    coordinates of the assets): for one asset R is exactly lognormal.

    ``draws="assets"`` draws the notebook's correlated asset shocks L z_{i,d} (days x assets normals per
    scenario, :func:`correlated_normals`).  ``draws="portfolio"`` (default) uses that the daily portfolio
    return is linear in the shocks: w . L z_{i,d} = s u_{i,d} with u_{i,d} ~ N(0, 1) and
    s = ||L^T w|| = sqrt(w^T Sigma w / 252), so one normal per scenario-day (coordinate d) gives exactly the
    same distribution of R at 1/assets of the cost (the sample differs, not the law).
    Scenarios are simulated in blocks of at most ``block`` (``lax.map``, bounded memory: a single block runs
    ~3x faster on CPU than a loop of small ones, so the default is large, 2^18); by the counter-based draws
    (module docstring) scenario i is the same for any block size.  Returns shape (scenarios,).

    References: Jorion, "Value at Risk", 3rd ed., ch. 12 (Monte Carlo methods); the original notebook model.
    Validation: tests/reference/test_var_reference.py.
    """
    weights, expected_returns = (jnp.asarray(a, dtype=jnp.float64) for a in (weights, expected_returns))
    cholesky = daily_cholesky(volatilities, correlation)
    key = stream_keys(seed, jnp.zeros(1, dtype=jnp.uint32))[0]
    drift = weights @ expected_returns / TRADING_DAYS
    scale = jnp.sqrt(jnp.sum((cholesky.T @ weights) ** 2))
    block = min(block, scenarios)
    n_blocks = -(-scenarios // block)

    def one_block(first):
        indices = first + jnp.arange(block, dtype=jnp.uint64)
        if model == "gbm":
            log_returns = ((expected_returns - 0.5 * jnp.asarray(volatilities, dtype=jnp.float64) ** 2)
                           * days / TRADING_DAYS
                           + jnp.sqrt(days) * correlated_normals(key, cholesky, indices, 1)[:, 0, :])
            return jnp.expm1(log_returns) @ weights
        if draws == "assets":
            shocks = jnp.sum(correlated_normals(key, cholesky, indices, days) * weights, axis=-1)
        else:
            shocks = scale * coordinate_normals(key, jnp.arange(days), indices)
        return jnp.prod(1.0 + (drift + shocks), axis=-1) - 1.0

    firsts = jnp.arange(n_blocks, dtype=jnp.uint64) * jnp.uint64(block)
    return jax.lax.map(one_block, firsts).reshape(-1)[:scenarios]


_LOW_63_BITS = 0x7FFFFFFFFFFFFFFF


def _total_order_key(values):
    """Involution between float64 and int64 whose integer order is the float order (IEEE 754 totalOrder:
    flip the magnitude bits of negatives)."""
    return jnp.where(values < 0, values ^ jnp.int64(_LOW_63_BITS), values)


def sort_floats(values):
    """Ascending sort of float64 values along the last axis through integer keys: the same result as
    ``jnp.sort`` for finite values (NaNs sort by sign bit), about 4x faster on CPU than XLA's float comparator.

    Validation: tests/reference/test_var_reference.py (estimators equal NumPy's on sorted samples).
    """
    keys = _total_order_key(jax.lax.bitcast_convert_type(values, jnp.int64))
    return jax.lax.bitcast_convert_type(_total_order_key(jax.lax.sort(keys, is_stable=False)), jnp.float64)


def sorted_quantiles(ordered, levels):
    """Type-7 quantiles at ``levels`` (shape (levels,)) of samples sorted along the last axis: position
    p = (n - 1) a, q = x_(floor p) + (p - floor p)(x_(floor p + 1) - x_(floor p)) (0-based); shape
    ordered.shape[:-1] + levels.shape."""
    n = ordered.shape[-1]
    position = (n - 1) * jnp.asarray(levels, dtype=jnp.float64)
    below = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, n - 1)
    above = jnp.minimum(below + 1, n - 1)
    low, high = ordered[..., below], ordered[..., above]
    return low + (position - below) * (high - low)


@jax.jit
def var_cvar(losses, levels):
    """VaR_a and CVaR_a of a loss sample for each confidence level a in ``levels``.

    VaR_a = type-7 (linear interpolation) a-quantile of the losses; CVaR_a = mean{l_i : l_i >= VaR_a}
    (module docstring).  Returns two arrays of the shape of ``levels``.

    References: Jorion, "Value at Risk", 3rd ed., ch. 5; Acerbi & Tasche (2002), "On the coherence of
    expected shortfall".
    Validation: tests/reference/test_var_reference.py (lognormal quantile, hand-computed series).
    """
    losses = sort_floats(jnp.asarray(losses, dtype=jnp.float64).ravel())
    levels = jnp.asarray(levels, dtype=jnp.float64)
    n = losses.size
    var = sorted_quantiles(losses, levels)
    first = jnp.searchsorted(losses, var, side="left")
    cumulative = jnp.concatenate([jnp.zeros(1), jnp.cumsum(losses)])
    cvar = (cumulative[n] - cumulative[first]) / jnp.maximum(n - first, 1)
    return var, cvar


@partial(jax.jit, static_argnames=("days",))
def horizon_returns(asset_returns, weights, days):
    """Overlapping ``days``-day portfolio returns from daily asset simple returns (T, assets).

    r_t = w . R_t (daily rebalanced to w, the notebook's model) and, for t = 0 .. T - days,
    R^{(h)}_t = prod_{k=0}^{h-1} (1 + r_{t+k}) - 1: every window of h consecutive days, overlapping
    (T - h + 1 windows; they are dependent, which widens the estimator's error but not its bias).

    References: Jorion, "Value at Risk", 3rd ed., ch. 12 (historical simulation).
    Validation: tests/reference/test_var_reference.py (hand-computable series).
    """
    daily = jnp.asarray(asset_returns, dtype=jnp.float64) @ jnp.asarray(weights, dtype=jnp.float64)
    windows = daily.shape[0] - days + 1
    index = jnp.arange(windows)[:, None] + jnp.arange(days)[None, :]
    return jnp.prod(1.0 + daily[index], axis=1) - 1.0


@partial(jax.jit, static_argnames=("paths", "steps", "block", "option_block"))
def delta_hedged_pnl(*, seed, spot, strikes, expiries, realised_vol, hedge_vol, rate, drift, paths, steps,
                     block=HEDGE_BLOCK, option_block=HEDGE_OPTION_BLOCK):
    """Discounted P&L of a long European call delta-hedged at ``hedge_vol``, per option and path.

    Each option j (strike K_j, expiry T_j) is hedged to expiry on the grid t_k = k T_j / N, k = 0..N, with
    the Black-Scholes delta at the hedge vol sigma_h; the underlying follows GBM with the realised vol
    sigma_r and drift mu, S_{k+1} = S_k exp((mu - sigma_r^2/2) dt_j + sigma_r sqrt(dt_j) z_k), where the
    normal z_k of path p is coordinate k of p (shared by all options: common random numbers over the grid).
    With tilde for discounting at r (V~_k = e^{-r t_k} V_h(t_k, S_k), V_h the price at sigma_h, V_N the
    payoff), the self-financing step P&L is

        dPnL_k = (V~_{k+1} - V~_k) - Delta_k (S~_{k+1} - S~_k),

    and the result is sum_k dPnL_k = e^{-rT} payoff - V_h(0) - sum_k Delta_k (S~_{k+1} - S~_k), the P&L of
    buying the option at the hedge vol and hedging it; the kernel accumulates the telescoped form (one delta
    per option, path and step, no repricing).  As N -> infinity it tends to
    int_0^T e^{-rt} 1/2 Gamma_h S_t^2 (sigma_r^2 - sigma_h^2) dt (Wilmott-Ahmad), so with mu = r its mean is
    BS(sigma_r) - BS(sigma_h) for every N and, when sigma_r = sigma_h, its std is the discrete-hedging
    error ~ 1/sqrt(N).

    All options x paths in one program: ``lax.scan`` over the N steps, vectorised over a tile of
    ``option_block`` options x ``block`` paths (cache-sized), ``lax.map`` over option and path tiles (bounded
    memory; the options are padded to a whole tile by repeating the last one).  Returns (options, paths).

    References: Hull, "Options, Futures and Other Derivatives", ch. 19 (delta hedging); Ahmad & Wilmott
    (2005), "Which free lunch would you like today, Sir?: Delta hedging, volatility arbitrage and optimal
    portfolios", Wilmott Magazine.
    Validation: tests/reference/test_hedged_pnl.py.
    """
    strikes, expiries = (jnp.asarray(a, dtype=jnp.float64).ravel() for a in (strikes, expiries))
    spot, realised_vol, hedge_vol, rate, drift = (
        jnp.asarray(a, dtype=jnp.float64) for a in (spot, realised_vol, hedge_vol, rate, drift))
    key = stream_keys(seed, jnp.zeros(1, dtype=jnp.uint32))[0]
    options = strikes.size
    tile = min(option_block, options)
    n_tiles = -(-options // tile)
    padding = n_tiles * tile - options
    tiles = (jnp.pad(strikes, (0, padding), mode="edge").reshape(n_tiles, tile),
             jnp.pad(expiries, (0, padding), mode="edge").reshape(n_tiles, tile))
    n_blocks = -(-paths // block)
    firsts = jnp.arange(n_blocks, dtype=jnp.uint64) * jnp.uint64(block)

    def option_tile(strikes_and_expiries):
        tile_strikes, tile_expiries = (a[:, None] for a in strikes_and_expiries)
        dt = tile_expiries / steps
        step_drift = (drift - 0.5 * realised_vol ** 2) * dt
        step_diffusion = realised_vol * jnp.sqrt(dt)
        step_discount = jnp.exp(-rate * dt)
        premium = black_scholes_greeks(spots=spot, strikes=tile_strikes, expiries=tile_expiries,
                                       volatilities=hedge_vol, rates=rate).price

        def hedge_delta(spots, k):
            return black_scholes_greeks(spots=spots, strikes=tile_strikes, expiries=tile_expiries * (1.0 - k / steps),
                                        volatilities=hedge_vol, rates=rate).delta

        def path_block(first):
            shocks = coordinate_normals(key, jnp.arange(steps), first + jnp.arange(block, dtype=jnp.uint64))
            spots = jnp.full((tile, block), spot)

            def step(carry, inputs):
                spots, delta, discount, hedge = carry
                k, z = inputs
                next_spots = spots * jnp.exp(step_drift + step_diffusion * z[None, :])
                next_discount = discount * step_discount
                hedge = hedge + delta * (next_discount * next_spots - discount * spots)
                return (next_spots, hedge_delta(next_spots, k + 1), next_discount, hedge), None

            start = (spots, hedge_delta(spots, 0), jnp.ones_like(dt), jnp.zeros_like(spots))
            (final_spots, _, discount, hedge), _ = jax.lax.scan(step, start, (jnp.arange(steps), shocks.T))
            return discount * jnp.maximum(final_spots - tile_strikes, 0.0) - premium - hedge

        return jnp.moveaxis(jax.lax.map(path_block, firsts), 0, 1).reshape(tile, -1)

    return jax.lax.map(option_tile, tiles).reshape(n_tiles * tile, -1)[:options, :paths]


@jax.jit
def pnl_statistics(pnl, quantile_levels):
    """Per row of ``pnl`` (options x paths): mean, standard deviation (n - 1), standard error of the mean
    and type-7 quantiles at ``quantile_levels`` (shape (options, levels)).

    Validation: tests/reference/test_hedged_pnl.py (equal to NumPy's mean, std and quantile).
    """
    pnl = jnp.asarray(pnl, dtype=jnp.float64)
    n = pnl.shape[-1]
    mean = jnp.mean(pnl, axis=-1)
    std = jnp.sqrt(jnp.sum((pnl - mean[:, None]) ** 2, axis=-1) / max(n - 1, 1))
    quantiles = sorted_quantiles(sort_floats(pnl), quantile_levels)
    return mean, std, std / jnp.sqrt(n), quantiles

"""Second method: Monte Carlo against the closed form over a batch of calls and puts, within 4 standard
errors, for price and (pathwise) delta, vega, rho, theta."""

import numpy as np

import shoals as sh


def test_batch_of_europeans_mc_matches_closed_form_within_standard_errors():
    rng = np.random.default_rng(5)
    n = 12
    option = sh.European(strike=rng.uniform(80, 120, n), maturity=rng.uniform(0.1, 3.0, n),
                         is_call=rng.uniform(size=n) < 0.5)
    market = sh.FlatMarket(spot=100.0, rate=rng.uniform(-0.01, 0.06, n), vol=rng.uniform(0.1, 0.5, n),
                           dividend=rng.uniform(0.0, 0.04, n))
    exact = sh.price(option, market)
    mc = sh.price(option, market, sh.MonteCarlo(paths=400_000, seed=2024, antithetic=True))
    z = (mc.value - exact.value) / mc.std_error
    assert np.all(np.abs(z) < 4.0), z
    # Pathwise Greeks: standard errors from 8 independent seeds (common to all trades).
    runs = [sh.price(option, market, sh.MonteCarlo(paths=100_000, seed=s)) for s in range(8)]
    for greek in ("delta", "vega", "rho", "theta"):
        estimates = np.stack([r.greeks[greek] for r in runs])
        mean = estimates.mean(axis=0)
        error = estimates.std(axis=0, ddof=1) / np.sqrt(len(runs))
        assert np.all(np.abs(mean - exact.greeks[greek]) < 4.0 * error + 1e-12), greek

"""Portfolio VaR/CVaR: exact lognormal and normal quantiles, the original notebook example against an
independent NumPy large-sample reference, historical VaR on a hand-computed series, validation and
determinism."""

import json

import numpy as np
import pytest
from scipy.stats import norm

import shoals  # noqa: F401  (float64)
from shoals.data import path as data_path
from shoals.errors import InputError
from shoals.kernels import risk as kernels
from shoals.risk.var import Portfolio, historical_var, value_at_risk

LEVELS = (0.95, 0.99)


def example() -> Portfolio:
    return Portfolio.from_mapping(json.loads(data_path("portfolio_example.json").read_text()))


def quantile_standard_error(level, n, density):
    """Asymptotic standard error of the sample a-quantile: sqrt(a (1 - a) / n) / f(q_a)."""
    return np.sqrt(level * (1.0 - level) / n) / density


def cvar_standard_error(losses, level, var):
    """Asymptotic standard error of the sample CVaR (Brazauskas et al. 2008):
    sqrt([Var(L | L >= q) + a (E[L | L >= q] - q)^2] / (n (1 - a)))."""
    tail = losses[losses >= var]
    return np.sqrt((tail.var() + level * (tail.mean() - var) ** 2) / (losses.size * (1.0 - level)))


def one_asset(mu=0.10, sigma=0.30, value=1_000_000.0):
    return Portfolio(names=("X",), weights=[1.0], expected_returns=[mu], volatilities=[sigma],
                     correlation=[[1.0]], value=value)


def test_one_asset_lognormal_var_and_cvar_match_the_exact_distribution():
    mu, sigma, value, days, n = 0.10, 0.30, 1_000_000.0, 10, 200_000
    result = value_at_risk(one_asset(mu, sigma, value), horizon_days=days, levels=LEVELS, simulations=n, seed=3,
                           model="gbm")
    t = days / 252
    m, s = (mu - 0.5 * sigma ** 2) * t, sigma * np.sqrt(t)
    for level, var, cvar in zip(LEVELS, result.var, result.cvar):
        q = norm.ppf(1.0 - level)
        exact_var = -value * np.expm1(m + s * q)
        exact_cvar = value * (1.0 - np.exp(m + 0.5 * s * s) * norm.cdf(q - s) / (1.0 - level))
        gross = np.exp(m + s * q)
        density = norm.pdf(q) / (s * gross * value)  # density of the loss at VaR
        assert abs(var - exact_var) < 4.0 * quantile_standard_error(level, n, density)
        assert abs(cvar - exact_cvar) < 4.0 * cvar_standard_error(-result.pnl, level, var)


def test_one_day_notebook_model_is_normal_with_exact_quantile():
    mu, sigma, value, n = 0.10, 0.30, 1_000_000.0, 200_000
    result = value_at_risk(one_asset(mu, sigma, value), horizon_days=1, levels=LEVELS, simulations=n, seed=5)
    s = sigma / np.sqrt(252)
    for level, var in zip(LEVELS, result.var):
        exact = -value * (mu / 252 + s * norm.ppf(1.0 - level))
        density = norm.pdf(norm.ppf(level)) / (s * value)
        assert abs(var - exact) < 4.0 * quantile_standard_error(level, n, density)


def numpy_reference(portfolio, days, sims, seed=2024, chunk=250_000):
    """The notebook model with NumPy's own generator: per day, 5 correlated asset returns
    mu/252 + L z (L = chol(Sigma/252)), portfolio return w . r, compounded over the horizon."""
    rng = np.random.default_rng(seed)
    covariance = np.outer(portfolio.volatilities, portfolio.volatilities) * portfolio.correlation / 252
    factor = np.linalg.cholesky(covariance)
    out = []
    for start in range(0, sims, chunk):
        z = rng.standard_normal((min(chunk, sims - start), days, portfolio.weights.size))
        daily = (portfolio.expected_returns / 252 + z @ factor.T) @ portfolio.weights
        out.append(np.prod(1.0 + daily, axis=1) - 1.0)
    return -portfolio.value * np.concatenate(out)


@pytest.mark.parametrize("draws", ["portfolio", "assets"])
def test_original_example_matches_numpy_large_sample_reference(draws):
    portfolio = example()
    n, n_ref = 200_000, 1_000_000
    reference = numpy_reference(portfolio, 10, n_ref)
    result = value_at_risk(portfolio, horizon_days=10, levels=LEVELS, simulations=n, seed=11, draws=draws)
    losses = -result.pnl
    for level, var in zip(LEVELS, result.var):
        ref = np.quantile(reference, level)
        width = 0.01 * np.std(reference)
        density = np.mean(np.abs(reference - ref) < width) / (2.0 * width)
        se = quantile_standard_error(level, n, density) * np.sqrt(1.0 + n / n_ref)
        assert abs(var - ref) < 4.0 * se, (level, var, ref, se)
    ref_var = np.quantile(reference, 0.95)
    ref_cvar = reference[reference >= ref_var].mean()
    se = np.hypot(cvar_standard_error(losses, 0.95, result.var[0]), cvar_standard_error(reference, 0.95, ref_var))
    assert abs(result.cvar[0] - ref_cvar) < 4.0 * se
    assert result.pnl.dtype == np.float64 and result.pnl.shape == (n,)
    assert result.figures().keys() == {"var_95", "var_99", "cvar_95", "cvar_99"}


def test_estimators_follow_numpy_type7_quantile_and_tail_mean():
    losses = np.random.default_rng(1).standard_normal(1001)
    var, cvar = kernels.var_cvar(losses, np.array([0.9, 0.95, 0.999]))
    np.testing.assert_allclose(var, np.quantile(losses, [0.9, 0.95, 0.999]), rtol=1e-14)
    np.testing.assert_allclose(cvar, [losses[losses >= v].mean() for v in np.asarray(var)], rtol=1e-13)


def test_historical_var_on_a_hand_computed_series():
    # Equal weights: daily portfolio returns -1 %, +2 %, -3 %, +4 %, -5 %.
    table = np.array([[-0.02, 0.0], [0.04, 0.0], [-0.03, -0.03], [0.08, 0.0], [-0.10, 0.0]])
    one_day = historical_var(table, [0.5, 0.5], value=100.0, horizon_days=1, levels=(0.8,))
    # losses 1, -2, 3, -4, 5 -> sorted -4, -2, 1, 3, 5; position 4 x 0.8 = 3.2 -> 3 + 0.2 x 2.
    assert one_day.var[0] == pytest.approx(3.4, abs=1e-12)
    assert one_day.cvar[0] == pytest.approx(5.0, abs=1e-12)
    two_day = historical_var(table, [0.5, 0.5], value=100.0, horizon_days=2, levels=(0.5, 0.75))
    # windows: 0.99 x 1.02, 1.02 x 0.97, 0.97 x 1.04, 1.04 x 0.95 -> losses -0.98, 1.06, -0.88, 1.2.
    np.testing.assert_allclose(-two_day.pnl, [-0.98, 1.06, -0.88, 1.2], atol=1e-12)
    np.testing.assert_allclose(two_day.var, [0.09, 1.095], atol=1e-12)
    np.testing.assert_allclose(two_day.cvar, [1.13, 1.2], atol=1e-12)
    assert two_day.settings["windows"] == 4


def test_correlation_not_positive_definite_is_an_input_error_naming_the_eigenvalue():
    correlation = [[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]
    with pytest.raises(InputError, match="smallest eigenvalue") as info:
        Portfolio(names=("a", "b", "c"), weights=[0.3, 0.3, 0.4], expected_returns=[0.1] * 3,
                  volatilities=[0.2] * 3, correlation=correlation)
    assert info.value.field == "Portfolio.correlation"
    assert info.value.value == pytest.approx(np.linalg.eigvalsh(correlation)[0])


@pytest.mark.parametrize("field, change, message", [
    ("correlation", {"correlation": [[1.0, 0.5], [0.4, 1.0]]}, "symmetric"),
    ("correlation", {"correlation": [[1.0, 0.5], [0.5, 0.9]]}, "diagonal"),
    ("volatilities", {"volatilities": [0.2, -0.1]}, ">= 0"),
    ("weights", {"weights": [0.5, np.nan]}, "finite"),
])
def test_bad_portfolio_fields_name_the_field(field, change, message):
    data = {"names": ("a", "b"), "weights": [0.5, 0.5], "expected_returns": [0.1, 0.1], "volatilities": [0.2, 0.2],
                "correlation": [[1.0, 0.5], [0.5, 1.0]]}
    data.update(change)
    with pytest.raises(InputError, match=message) as info:
        Portfolio(**data)
    assert info.value.field == f"Portfolio.{field}"


@pytest.mark.parametrize("draws", ["portfolio", "assets"])
def test_scenarios_depend_only_on_seed_and_index(draws):
    p = example()
    args = {"seed": 7, "weights": p.weights, "expected_returns": p.expected_returns, "volatilities": p.volatilities,
                "correlation": p.correlation, "days": 10, "draws": draws}
    whole = np.asarray(kernels.simulate_portfolio_returns(scenarios=5000, block=8192, **args))
    for block in (256,):
        np.testing.assert_array_equal(np.asarray(kernels.simulate_portfolio_returns(
            scenarios=5000, block=block, **args)), whole)
    np.testing.assert_array_equal(np.asarray(kernels.simulate_portfolio_returns(
        scenarios=3000, block=256, **args)), whole[:3000])
    again = value_at_risk(p, simulations=5000, seed=7, draws=draws)
    np.testing.assert_array_equal(again.pnl, p.value * whole)
    other = value_at_risk(p, simulations=5000, seed=8, draws=draws)
    assert not np.array_equal(other.pnl, again.pnl)

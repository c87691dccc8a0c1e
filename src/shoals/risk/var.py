"""Portfolio Value at Risk and expected shortfall: Monte Carlo (the notebook model) and historical simulation.

Model, estimators and quantile convention: :mod:`shoals.kernels.risk`.  Figures are positive currency
losses: VaR_a = a-quantile of the loss -V R, CVaR_a = mean loss at or beyond VaR_a.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shoals.errors import InputError
from shoals.kernels import risk as kernels

_OWNER = "Portfolio"


def _vector(name: str, value, size: int | None = None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"must be numbers, got {value!r}", field=f"{_OWNER}.{name}", value=value) from error
    if array.ndim != 1 or (size is not None and array.size != size):
        raise InputError(f"must be a list of {size if size is not None else 'one or more'} numbers (one per "
                         f"asset), got shape {array.shape}", field=f"{_OWNER}.{name}", value=value)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise InputError(f"must be finite, got {array[bad[0]]!r} (element {bad[0]})", field=f"{_OWNER}.{name}",
                         value=array[bad[0]])
    return array


def _check_correlation(correlation: np.ndarray, size: int) -> None:
    name = f"{_OWNER}.correlation"
    if correlation.shape != (size, size):
        raise InputError(f"must be a {size} x {size} matrix (one row per asset), got shape {correlation.shape}",
                         field=name, value=correlation)
    if not np.all(np.isfinite(correlation)):
        row, col = np.argwhere(~np.isfinite(correlation))[0]
        raise InputError(f"entry ({row}, {col}) is {correlation[row, col]!r}; must be finite", field=name,
                         value=correlation[row, col])
    asymmetry = np.abs(correlation - correlation.T)
    if asymmetry.max() > 1e-12:
        row, col = np.unravel_index(int(np.argmax(asymmetry)), asymmetry.shape)
        raise InputError(f"must be symmetric: entry ({row}, {col}) = {correlation[row, col]!r} but "
                         f"({col}, {row}) = {correlation[col, row]!r}", field=name, value=correlation[row, col])
    diagonal = np.flatnonzero(np.abs(np.diag(correlation) - 1.0) > 1e-12)
    if diagonal.size:
        i = diagonal[0]
        raise InputError(f"diagonal entry ({i}, {i}) is {correlation[i, i]!r}; must be 1", field=name,
                         value=correlation[i, i])
    eigenvalues = np.linalg.eigvalsh(correlation)
    if eigenvalues[0] <= 1e-12:
        raise InputError(f"must be positive definite: smallest eigenvalue {eigenvalues[0]:.6g} <= 0; fix the "
                         "inconsistent correlations (e.g. nearest-correlation-matrix repair, Higham 2002)",
                         field=name, value=eigenvalues[0])


@dataclass(frozen=True)
class Portfolio:
    """Assets held in fixed weights: ``weights`` w (fractions of ``value``), annual ``expected_returns`` mu,
    annual ``volatilities`` sigma, ``correlation`` C (symmetric, unit diagonal, positive definite).

    Validation on construction raises :class:`~shoals.errors.InputError` naming the field and the
    offending element, entry or eigenvalue.

    Validation: tests/reference/test_var_reference.py (non-PD, asymmetric, non-unit diagonal, negative vol,
    NaN weight).
    """

    names: tuple
    weights: np.ndarray
    expected_returns: np.ndarray
    volatilities: np.ndarray
    correlation: np.ndarray
    value: float = 1.0

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        weights = _vector("weights", self.weights)
        size = weights.size
        if len(names) != size:
            raise InputError(f"{len(names)} names for {size} weights", field=f"{_OWNER}.names", value=names)
        expected = _vector("expected_returns", self.expected_returns, size)
        vols = _vector("volatilities", self.volatilities, size)
        negative = np.flatnonzero(vols < 0)
        if negative.size:
            raise InputError(f"must be >= 0, got {vols[negative[0]]!r} (element {negative[0]}, "
                             f"{names[negative[0]]})", field=f"{_OWNER}.volatilities", value=vols[negative[0]])
        correlation = np.asarray(self.correlation, dtype=np.float64)
        _check_correlation(correlation, size)
        value = float(self.value)
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"must be a finite number > 0, got {self.value!r}", field=f"{_OWNER}.value",
                             value=self.value)
        for name, item in (("names", names), ("weights", weights), ("expected_returns", expected),
                           ("volatilities", vols), ("correlation", correlation), ("value", value)):
            object.__setattr__(self, name, item)

    @classmethod
    def from_mapping(cls, data: Mapping) -> Portfolio:
        """From a mapping with ``assets`` (list of names), ``weights``, ``expected_returns``,
        ``volatilities``, ``correlation`` (list of rows) and ``value`` (the JSON example's schema)."""
        required = ("assets", "weights", "expected_returns", "volatilities", "correlation", "value")
        missing = [key for key in required if key not in data]
        if missing:
            raise InputError(f"missing keys {missing}; a portfolio needs {list(required)}", field="portfolio")
        return cls(names=tuple(data["assets"]), weights=data["weights"], expected_returns=data["expected_returns"],
                   volatilities=data["volatilities"], correlation=data["correlation"], value=data["value"])


def var_figures(levels, var, cvar, prefix: str = "") -> dict:
    """``{prefix + "var_95": ..., prefix + "cvar_95": ..., ...}``: the level in percent (``var_97.5`` for 0.975)."""
    out = {}
    for level, value, tail in zip(levels, var, cvar):
        tag = f"{100 * level:g}"
        out[f"{prefix}var_{tag}"] = float(value)
        out[f"{prefix}cvar_{tag}"] = float(tail)
    return out


@dataclass(frozen=True)
class VarResult:
    """VaR and CVaR (expected shortfall) per confidence level, positive currency losses, with the P&L sample.

    ``pnl`` is the simulated (or historical) horizon P&L V R per scenario; ``settings`` records how it was
    produced (method, horizon, scenarios, seed, quantile convention).

    Validation: tests/reference/test_var_reference.py, tests/unit/test_risk_cli.py (figures, JSON keys).
    """

    levels: tuple
    var: np.ndarray
    cvar: np.ndarray
    pnl: np.ndarray = field(repr=False)
    settings: dict

    def figures(self) -> dict:
        """``{"var_95": ..., "cvar_95": ..., ...}`` with the level in percent (``var_97.5`` for 0.975)."""
        return var_figures(self.levels, self.var, self.cvar)


def confidence_levels(levels: Sequence[float]) -> tuple:
    array = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    bad = np.flatnonzero(~((array > 0) & (array < 1)))
    if bad.size:
        raise InputError(f"confidence levels must lie in (0, 1) (0.95 for 95 %), got {array[bad[0]]!r}",
                         field="levels", value=array[bad[0]])
    return tuple(float(a) for a in array)


def _positive_int(name: str, value) -> int:
    if int(value) != value or value < 1:
        raise InputError(f"must be a whole number >= 1, got {value!r}", field=name, value=value)
    return int(value)


_CONVENTION = "VaR = type-7 (linear) quantile of the loss; CVaR = mean loss >= VaR"


def value_at_risk(portfolio: Portfolio, *, horizon_days: int = 10, levels: Sequence[float] = (0.95, 0.99),
                  simulations: int = 100_000, seed: int = 0, draws: str = "portfolio",
                  model: str = "notebook") -> VarResult:
    """Monte Carlo VaR/CVaR of ``portfolio`` over ``horizon_days`` trading days.

    R = prod_{d=1}^{h} (1 + w . (mu/252 + L z_d)) - 1, L L^T = diag(sigma) C diag(sigma) / 252; the loss is
    -V R; VaR_a = a-quantile of the loss (type 7), CVaR_a = E[loss | loss >= VaR_a] on the sample.
    ``draws``: ``"portfolio"`` (one normal per scenario-day, the exact law of w . L z) or ``"assets"``
    (the correlated asset draws of the original notebook); see
    :func:`shoals.kernels.risk.simulate_portfolio_returns`.  ``model="gbm"``: buy-and-hold under correlated
    GBM, R = w . (exp((mu - sigma^2/2) h/252 + sqrt(h) L z) - 1) (exactly lognormal for one asset).
    Deterministic in (seed, scenario index).

    References: Jorion, "Value at Risk", 3rd ed., ch. 5 (VaR, expected shortfall), ch. 12 (Monte Carlo).
    Validation: tests/reference/test_var_reference.py (one-asset lognormal quantile, NumPy large-sample
    reference of the original example, determinism).
    """
    horizon_days = _positive_int("horizon_days", horizon_days)
    simulations = _positive_int("simulations", simulations)
    if draws not in ("portfolio", "assets"):
        raise InputError(f"must be 'portfolio' or 'assets', got {draws!r}", field="draws", value=draws)
    if model not in ("notebook", "gbm"):
        raise InputError(f"must be 'notebook' or 'gbm', got {model!r}", field="model", value=model)
    levels = confidence_levels(levels)
    returns = kernels.simulate_portfolio_returns(
        seed=int(seed), weights=portfolio.weights, expected_returns=portfolio.expected_returns,
        volatilities=portfolio.volatilities, correlation=portfolio.correlation, scenarios=simulations,
        days=horizon_days, draws=draws, model=model)
    pnl = portfolio.value * returns
    var, cvar = kernels.var_cvar(-pnl, np.asarray(levels))
    return VarResult(levels=levels, var=np.asarray(var), cvar=np.asarray(cvar), pnl=np.asarray(pnl),
                     settings={"method": "monte_carlo", "horizon_days": horizon_days, "simulations": simulations,
                               "seed": int(seed), "draws": draws, "model": model, "value": portfolio.value,
                               "convention": _CONVENTION})


def historical_var(returns_table, weights, value: float, horizon_days: int = 1,
                   levels: Sequence[float] = (0.95, 0.99)) -> VarResult:
    """Historical-simulation VaR/CVaR from daily simple returns (T days x assets; array or DataFrame).

    r_t = w . R_t, horizon returns over every overlapping window of h days
    R^{(h)}_t = prod_{k<h} (1 + r_{t+k}) - 1 (T - h + 1 windows), loss -V R^{(h)}_t; the estimators of
    :func:`value_at_risk`.

    References: Jorion, "Value at Risk", 3rd ed., ch. 12 (historical simulation).
    Validation: tests/reference/test_var_reference.py (hand-computable series).
    """
    table = np.asarray(returns_table, dtype=np.float64)
    if table.ndim == 1:
        table = table[:, None]
    weights = np.atleast_1d(np.asarray(weights, dtype=np.float64))
    if table.ndim != 2 or table.shape[1] != weights.size:
        raise InputError(f"returns table has shape {table.shape}; expected (days, {weights.size}) for "
                         f"{weights.size} weights", field="returns_table")
    bad = np.argwhere(~np.isfinite(table))
    if bad.size:
        raise InputError(f"return {table[tuple(bad[0])]!r} is not finite; drop or fill the row",
                         field="returns_table", row=int(bad[0][0]), value=table[tuple(bad[0])])
    horizon_days = _positive_int("horizon_days", horizon_days)
    if horizon_days > table.shape[0]:
        raise InputError(f"horizon of {horizon_days} days exceeds the {table.shape[0]} days of returns",
                         field="horizon_days", value=horizon_days)
    levels = confidence_levels(levels)
    pnl = float(value) * np.asarray(kernels.horizon_returns(table, weights, days=horizon_days))
    var, cvar = kernels.var_cvar(-pnl, np.asarray(levels))
    return VarResult(levels=levels, var=np.asarray(var), cvar=np.asarray(cvar), pnl=pnl,
                     settings={"method": "historical", "horizon_days": horizon_days, "windows": pnl.size,
                               "overlapping": True, "value": float(value), "convention": _CONVENTION})

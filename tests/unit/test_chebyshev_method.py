"""The Chebyshev pricing method: a proxy of a base method over market/contract variables (``method=``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import shoals  # noqa: F401  (enables float64)
from shoals.errors import InputError, UnsupportedError
from shoals.execution import SerialExecutor
from shoals.instruments import Asian, European
from shoals.market import FlatMarket
from shoals.methods import Chebyshev, ClosedForm, FiniteDifference, price
from shoals.methods.chebyshev import ChebyshevProxy, PiecewiseChebyshevProxy
from shoals.results import PriceResult

RNG = np.random.default_rng(77)
DOMAIN = {"spot": (80.0, 120.0), "vol": (0.12, 0.4), "maturity": (0.5, 1.5)}


class CountingClosedForm(ClosedForm):
    """The closed form, counting the contracts it prices (to see when the proxy is built)."""

    calls: list

    def __init__(self):
        object.__setattr__(self, "calls", [])

    def price(self, instrument, market):
        self.calls.append(np.size(market.spot))
        return super().price(instrument, market)


def random_book(count):
    spot = RNG.uniform(*DOMAIN["spot"], count)
    vol = RNG.uniform(*DOMAIN["vol"], count)
    maturity = RNG.uniform(*DOMAIN["maturity"], count)
    return European(strike=100.0, maturity=maturity), FlatMarket(spot=spot, rate=0.03, vol=vol, dividend=0.01)


def test_matches_the_base_method_with_greeks_at_random_points_inside_the_box():
    method = Chebyshev(base=ClosedForm(), domain=DOMAIN, nodes={"spot": 21, "vol": 15, "maturity": 11})
    instrument, market = random_book(500)
    got = price(instrument, market, method=method)
    exact = ClosedForm().price(instrument, market)
    assert got.value.shape == (500,) and got.method == "chebyshev"
    np.testing.assert_allclose(got.value, exact.value, rtol=1e-6, atol=1e-6)
    tolerances = {"delta": 1e-6, "gamma": 1e-6, "vega": 1e-4, "theta": 1e-4}
    assert set(got.greeks) == set(tolerances)                         # no rho: rate is not a variable
    for name, tolerance in tolerances.items():
        np.testing.assert_allclose(got.greeks[name], exact.greeks[name], atol=tolerance, err_msg=name)
    assert got.diagnostics["error_estimate"] < 1e-5


def test_finite_difference_base_is_reproduced_at_random_points():
    fd = FiniteDifference(space_nodes=121, time_steps=60)
    method = Chebyshev(base=fd, domain={"spot": (85.0, 115.0), "vol": (0.15, 0.3)}, nodes=(11))
    spots, vols = RNG.uniform(85.0, 115.0, 6), RNG.uniform(0.15, 0.3, 6)
    instrument = European(strike=100.0, maturity=1.0)
    market = FlatMarket(spot=spots, rate=0.02, vol=vols)
    got = method.price(instrument, market)
    direct = fd.price(European(strike=np.full(6, 100.0), maturity=1.0), market)
    np.testing.assert_allclose(got.value, direct.value, rtol=2e-5)
    np.testing.assert_allclose(got.greeks["delta"], direct.greeks["delta"], atol=2e-4)
    np.testing.assert_allclose(got.greeks["vega"], direct.greeks["vega"], rtol=2e-3)


def test_built_once_per_contract_and_through_an_executor():
    base = CountingClosedForm()
    method = Chebyshev(base=base, domain={"spot": (80.0, 120.0), "vol": (0.1, 0.4)}, nodes=9,
                       executor=SerialExecutor(), batch=20)
    market = FlatMarket(spot=np.array([90.0, 101.0]), rate=0.01, vol=0.2)
    first = method.price(European(strike=100.0, maturity=1.0), market)
    method.price(European(strike=100.0, maturity=1.0), FlatMarket(spot=110.0, rate=0.01, vol=0.3))
    assert base.calls == [17, 16, 16, 16, 16]                         # 81 nodes in blocks of <= 20, once
    batched_rate = method.price(European(strike=100.0, maturity=1.0),
                                FlatMarket(spot=101.0, rate=np.full(3, 0.01), vol=0.2))
    assert batched_rate.value.shape == (3,) and len(base.calls) == 5  # same contract and market: cached
    method.price(European(strike=105.0, maturity=1.0), market)        # another contract: a new proxy
    assert sum(base.calls[5:]) == 81
    plain = Chebyshev(base=ClosedForm(), domain={"spot": (80.0, 120.0), "vol": (0.1, 0.4)}, nodes=9)
    np.testing.assert_allclose(plain.price(European(strike=100.0, maturity=1.0), market).value, first.value,
                               rtol=1e-14)
    assert isinstance(plain.build(European(strike=100.0, maturity=1.0), market), ChebyshevProxy)


def test_splits_give_a_piecewise_proxy():
    method = Chebyshev(base=ClosedForm(), domain={"spot": (80.0, 120.0)}, nodes=9, splits={"spot": [100.0]})
    proxy = method.build(European(strike=100.0, maturity=1.0), FlatMarket(spot=100.0, rate=0.0, vol=0.2))
    assert isinstance(proxy, PiecewiseChebyshevProxy) and proxy.splits == ((100.0,),)


def test_errors_name_the_field():
    method = Chebyshev(base=ClosedForm(), domain={"spot": (80.0, 120.0), "vol": (0.1, 0.4)}, nodes=7)
    contract = European(strike=100.0, maturity=1.0)
    with pytest.raises(InputError, match="outside the proxy's domain") as error:
        method.price(contract, FlatMarket(spot=np.array([100.0, 130.0]), rate=0.0, vol=0.2))
    assert error.value.field == "market.spot" and error.value.row == 1
    with pytest.raises(InputError) as error:
        method.price(contract, FlatMarket(spot=100.0, rate=0.0, vol=0.5))
    assert error.value.field == "market.vol"
    with pytest.raises(InputError, match="unsupported variable") as error:
        Chebyshev(domain={"strike": (90.0, 110.0)})
    assert error.value.field == "domain"
    with pytest.raises(InputError) as error:
        Chebyshev(domain={"spot": (90.0, 110.0)}, splits={"vol": [0.2]})
    assert error.value.field == "splits"
    with pytest.raises(InputError) as error:
        Chebyshev(domain={"spot": (110.0, 90.0)})
    assert error.value.field == "domain[spot]"
    with pytest.raises(InputError, match="varies across the batch") as error:
        method.price(European(strike=np.array([95.0, 100.0]), maturity=1.0),
                     FlatMarket(spot=100.0, rate=0.0, vol=0.2))
    assert error.value.field == "instrument.strike"
    with pytest.raises(UnsupportedError):
        method.price(contract, object())


def test_a_built_method_pickles_with_its_proxies_for_process_workers():
    base = CountingClosedForm()
    method = Chebyshev(base=base, domain={"spot": (80.0, 120.0)}, nodes=9)
    contract, market = European(strike=100.0, maturity=1.0), FlatMarket(spot=np.array([90.0, 111.0]), rate=0.0,
                                                                         vol=0.2)
    before = method.price(contract, market).value
    copy = pickle.loads(pickle.dumps(method))
    np.testing.assert_array_equal(copy.price(contract, market).value, before)
    assert copy.base.calls == [9]                                     # priced by the shipped proxy


class SpotSquared:
    """A base pricing any contract at spot^2 vol (to test contracts with NaN fields), counting calls."""

    name = "spot-squared"

    def __init__(self):
        self.calls = 0

    def supports(self, instrument, market):
        return True

    def price(self, instrument, market):
        self.calls += 1
        return PriceResult(value=np.asarray(market.spot) ** 2 * np.asarray(market.vol), method=self.name)


def test_nan_fields_are_one_contract_and_nodes_may_be_a_sequence():
    base = SpotSquared()
    method = Chebyshev(base=base, domain={"spot": (50.0, 150.0), "vol": (0.1, 0.5)}, nodes=(3, 2))
    floating = Asian(maturity=np.array([1.0, 1.0]), fixings=12, floating=True)    # strike NaN
    for _ in range(2):
        got = method.price(floating, FlatMarket(spot=np.array([60.0, 140.0]), rate=0.0, vol=0.3))
    assert base.calls == 1 and method.nodes == {"spot": 3, "vol": 2}
    np.testing.assert_allclose(got.value, [1080.0, 5880.0], rtol=1e-12)         # exact: degree (2, 1)
    np.testing.assert_allclose(got.greeks["gamma"], [0.6, 0.6], rtol=1e-12)
    np.testing.assert_allclose(got.greeks["vega"], [3600.0, 19600.0], rtol=1e-12)
    with pytest.raises(InputError) as error:
        Chebyshev(domain={"spot": (50.0, 150.0), "vol": (0.1, 0.5)}, nodes=(3, 2, 4))
    assert error.value.field == "nodes"

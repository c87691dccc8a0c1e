"""Market files (BOOK_SCHEMA.md, "Market"): exact round trip, curves, and errors naming the key."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from shoals.errors import InputError
from shoals.io.market import read_market, write_market

MARKET = {"spot": 100.0, "rate": 0.04, "dividend": {"times": [0.5, 2.0], "zero_rates": [0.01, 0.015]},
          "svi": [{"expiry": 0.25, "a": 0.01, "b": 0.1, "rho": -0.4, "m": 0.0, "sigma": 0.2},
                  {"expiry": 1.0, "a": 0.04, "b": 0.1, "rho": -0.4, "m": 0.0, "sigma": 0.2}]}


def write(tmp_path, data, name="market.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_round_trip_is_exact(tmp_path):
    snapshot = read_market(write(tmp_path, MARKET))
    again = read_market(write_market(snapshot, tmp_path / "again.json"))
    assert json.loads((tmp_path / "again.json").read_text()) == MARKET
    for t in (0.1, 0.25, 0.7, 1.0, 3.0):
        assert float(again.forward(t)) == float(snapshot.forward(t))
        assert float(again.implied_vol(110.0, t)) == float(snapshot.implied_vol(110.0, t))


def test_forward_uses_rate_and_dividend_curves(tmp_path):
    snapshot = read_market(write(tmp_path, MARKET))
    t = 1.25
    tq = np.interp(t, [0.5, 2.0], [0.5 * 0.01, 2.0 * 0.015])
    assert float(snapshot.forward(t)) == pytest.approx(100.0 * np.exp(0.04 * t - tq), rel=1e-14)
    assert float(snapshot.forward(0.25)) == pytest.approx(100.0 * np.exp((0.04 - 0.01) * 0.25), rel=1e-14)
    assert float(snapshot.discount(2.0)) == pytest.approx(np.exp(-0.08), rel=1e-14)
    w = float(snapshot.surface.total_variance(jnp.asarray(0.0), 1.0))
    assert w == pytest.approx(0.04 + 0.1 * 0.2, rel=1e-14)


@pytest.mark.parametrize("change, words", [
    (lambda m: m.pop("spot"), ["spot", "missing"]),
    (lambda m: m.update(spot=-1), ["spot", "> 0"]),
    (lambda m: m.update(colour="red"), ["colour"]),
    (lambda m: m["svi"][1].pop("rho"), ["svi[1]", "rho"]),
    (lambda m: m["svi"][0].update(b="x"), ["svi[0].b", "not a number"]),
    (lambda m: m.update(rate={"times": [1.0]}), ["rate"]),
    (lambda m: m.update(rate={"times": [2.0, 1.0], "zero_rates": [0.01, 0.02]}), ["rate"]),
    (lambda m: m.update(svi=[]), ["svi"]),
])
def test_errors_name_the_key(tmp_path, change, words):
    data = json.loads(json.dumps(MARKET))
    change(data)
    with pytest.raises(InputError) as error:
        read_market(write(tmp_path, data))
    for word in words:
        assert word in str(error.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_market(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        read_market(tmp_path / "bad.json")

"""Programs kept on disk (shoals._exported): the same numbers as the jitted call, loaded instead of traced.

The export folder is patched to a temporary one (setting JAX's compilation cache directory in a test would
turn on JAX's own cache for the rest of the session)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from support import skewed_snapshot

import shoals._exported as exported
from shoals.instruments import European
from shoals.market.local_vol import build_local_vol
from shoals.methods import FiniteDifference

LEAN = FiniteDifference(space_nodes=61, time_steps=30, vega=False)
CONTRACT = European(strike=np.array([95.0, 105.0]), maturity=np.array([0.6, 0.9]),
                    is_call=np.array([True, False]))


@pytest.fixture(scope="module")
def plan():
    snapshot = skewed_snapshot()
    grid, _ = build_local_vol(snapshot, t_max=1.0, n_times=21, n_spots=81)
    return LEAN.plan(CONTRACT, snapshot, local_vol=grid)[0]


def _results(plan):
    bumped = np.asarray(plan.table.vols) * 1.01
    value, gradient = plan.value_and_gradient(np.array([1.0, -2.0]))
    return [np.asarray(plan.values()), np.asarray(plan.values(bumped)), plan.greeks()["gamma"],
            np.asarray(value), np.asarray(gradient)]


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """Exports kept in a temporary folder, with an empty in-memory table before and after."""
    monkeypatch.setattr(exported, "export_folder", lambda: tmp_path)
    monkeypatch.setattr(exported, "_PROGRAMS", {})
    return tmp_path


def test_kept_programs_give_bitwise_the_jitted_numbers_and_load_instead_of_tracing(plan, kept, monkeypatch):
    with monkeypatch.context() as plain:
        plain.setattr(exported, "export_folder", lambda: None)
        reference = _results(plan)
    first = _results(plan)
    files = sorted(kept.glob("*.jaxexport"))
    assert len(files) == 2  # the readout (base, bumped and Greeks share it) and the AAD pass
    for ours, theirs in zip(first, reference):
        np.testing.assert_array_equal(ours, theirs)

    def no_tracing(*args, **kwargs):
        raise AssertionError("a kept program was traced again")

    monkeypatch.setattr(exported, "_PROGRAMS", {})  # a fresh process
    monkeypatch.setattr(jax.export, "export", no_tracing)
    for ours, theirs in zip(_results(plan), reference):
        np.testing.assert_array_equal(ours, theirs)


def test_a_damaged_file_is_exported_again(plan, kept, monkeypatch):
    reference = np.asarray(plan.values())
    (path,) = kept.glob("*.jaxexport")
    path.write_bytes(b"not a program")
    monkeypatch.setattr(exported, "_PROGRAMS", {})
    np.testing.assert_array_equal(np.asarray(plan.values()), reference)
    assert path.stat().st_size > 100 and not list(kept.glob(".*.tmp"))


def test_a_folder_that_cannot_be_written_only_costs_the_saving(plan, kept, monkeypatch):
    reference = np.asarray(plan.values())
    monkeypatch.setattr(exported, "_PROGRAMS", {})
    for path in kept.glob("*.jaxexport"):
        path.unlink()

    def refuse(path, data):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(exported, "write_atomically", refuse)
    np.testing.assert_array_equal(np.asarray(plan.values()), reference)
    assert not list(kept.glob("*.jaxexport"))


def test_the_key_follows_shapes_static_options_and_sources(plan):
    leaves, tree = jax.tree_util.tree_flatten((plan.arguments, plan.table))
    key = exported.program_key(plan.march, (plan.options,), tree, leaves)
    assert key == exported.program_key(plan.march, (plan.options,), tree, leaves)
    assert key != exported.program_key(plan.march, (("other",),), tree, leaves)
    shorter = [leaf[..., :1] if np.ndim(leaf) else leaf for leaf in leaves]
    assert key != exported.program_key(plan.march, (plan.options,), tree, shorter)
    assert len(exported.source_digest()) == 64


def test_calls_inside_a_transformation_are_traced_as_usual(plan, kept):
    """jax.grad through PdePlan.values: the kept program (an export has no derivative) is not used there."""
    weights = np.array([1.0, -2.0])
    gradient = jax.grad(lambda vols: weights @ plan.values(vols))(plan.table.vols)
    np.testing.assert_allclose(np.asarray(gradient), np.asarray(plan.value_and_gradient(weights)[1]),
                               rtol=1e-9, atol=1e-12)

"""Checkpoint and resume: finished tasks stored atomically as they complete; an interrupted map (Ctrl-C inside a
task) resumed recomputes only the missing tasks (counted) and gives the uninterrupted results; a changed input
is refused naming the field; the book pipeline interrupted then resumed == uninterrupted, bit for bit.
"""

import json

import numpy as np
import pandas as pd
import pytest
from executor_tasks import numeric_task
from support import skewed_snapshot

import shoals.risk.run as run_module
from shoals.errors import InputError
from shoals.execution import SerialExecutor
from shoals.execution.checkpoint import (
    MANIFEST,
    checkpointed_map,
    file_digest,
    object_digest,
    open_checkpoint,
)
from shoals.risk.run import book_chunks, run_book

SHARED = {"matrix": np.random.default_rng(5).standard_normal((40, 30)), "offsets": np.arange(40.0)}
TASKS = [(seed, 0.2 * seed) for seed in range(6)]
KEYS = [f"task {seed}" for seed, _ in TASKS]
INPUTS = {"book": "abc", "vega": True}


class Interrupt:
    """A task function that counts its calls and raises KeyboardInterrupt (Ctrl-C) on call number ``at``."""

    def __init__(self, at=None):
        self.at = at
        self.calls = []

    def __call__(self, task, shared):
        self.calls.append(task)
        if self.at is not None and len(self.calls) == self.at:
            raise KeyboardInterrupt
        return numeric_task(task, shared)


def test_an_interrupted_map_resumes_with_the_missing_tasks_only(tmp_path):
    expected = SerialExecutor().map(numeric_task, TASKS, shared=SHARED)
    order = [5, 4, 3, 2, 1, 0]
    interrupted = Interrupt(at=4)
    with pytest.raises(KeyboardInterrupt):
        checkpointed_map(SerialExecutor(), interrupted, TASKS, keys=KEYS, shared=SHARED, order=order,
                         checkpoint=open_checkpoint(tmp_path, inputs=INPUTS))
    stored = sorted(path.name for path in tmp_path.iterdir())
    assert stored == [MANIFEST, "task-000003.pkl", "task-000004.pkl", "task-000005.pkl"]  # whole files only
    resumed = Interrupt()
    progress = []
    results, reused = checkpointed_map(SerialExecutor(), resumed, TASKS, keys=KEYS, shared=SHARED, order=order,
                                       checkpoint=open_checkpoint(tmp_path, inputs=INPUTS, resume=True),
                                       progress=lambda done, total: progress.append((done, total)))
    assert reused == 3 and resumed.calls == [TASKS[2], TASKS[1], TASKS[0]]  # the missing ones, in `order`
    assert progress == [(4, 6), (5, 6), (6, 6)]
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    # complete: nothing left to compute
    again = Interrupt()
    results, reused = checkpointed_map(SerialExecutor(), again, TASKS, keys=KEYS, shared=SHARED,
                                       checkpoint=open_checkpoint(tmp_path, inputs=INPUTS, resume=True))
    assert (reused, again.calls) == (6, [])
    # a fresh (not resumed) open forgets the stored tasks
    fresh = Interrupt()
    checkpointed_map(SerialExecutor(), fresh, TASKS, keys=KEYS, shared=SHARED,
                     checkpoint=open_checkpoint(tmp_path, inputs=INPUTS))
    assert fresh.calls == TASKS


def test_a_stored_result_counts_only_under_the_same_key_and_unreadable_files_are_recomputed(tmp_path):
    checkpoint = open_checkpoint(tmp_path, inputs=INPUTS)
    checkpointed_map(SerialExecutor(), numeric_task, TASKS, keys=KEYS, shared=SHARED, checkpoint=checkpoint)
    (tmp_path / "task-000001.pkl").write_bytes(b"not a pickle")
    changed = [*KEYS[:4], "other trades", KEYS[5]]
    resumed = Interrupt()
    _, reused = checkpointed_map(SerialExecutor(), resumed, TASKS, keys=changed, shared=SHARED,
                                 checkpoint=open_checkpoint(tmp_path, inputs=INPUTS, resume=True))
    assert reused == 4 and resumed.calls == [TASKS[1], TASKS[4]]
    with pytest.raises(InputError, match="keys must name every task") as caught:
        checkpointed_map(SerialExecutor(), numeric_task, TASKS, keys=KEYS[:2], checkpoint=checkpoint)
    assert caught.value.field == "keys"


def test_resume_refuses_other_inputs_naming_the_field(tmp_path):
    open_checkpoint(tmp_path, inputs={**INPUTS, "paths": (1, 2)})
    assert json.loads((tmp_path / MANIFEST).read_text())["inputs"] == {**INPUTS, "paths": [1, 2]}
    open_checkpoint(tmp_path, inputs={**INPUTS, "paths": (1, 2)}, resume=True)  # the same, tuples as lists
    with pytest.raises(InputError, match=r"its run had book = 'abc', this one has 'xyz'") as caught:
        open_checkpoint(tmp_path, inputs={**INPUTS, "book": "xyz", "paths": (1, 2)}, resume=True)
    assert caught.value.field == "book"
    with pytest.raises(InputError, match="had paths") as caught:
        open_checkpoint(tmp_path, inputs=INPUTS, resume=True)
    assert caught.value.field == "paths"
    with pytest.raises(InputError, match="no checkpoint to resume") as caught:
        open_checkpoint(tmp_path / "empty", inputs=INPUTS, resume=True)
    assert caught.value.field == "resume"


def test_digests_follow_the_content(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("id\n1\n")
    second.write_text("id\n1\n")
    assert file_digest(first) == file_digest(second)
    second.write_text("id\n2\n")
    assert file_digest(first) != file_digest(second)
    assert object_digest(skewed_snapshot()) == object_digest(skewed_snapshot())
    assert object_digest(skewed_snapshot()) != object_digest(skewed_snapshot(101.0))


BOOK = ("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type\n"
        "eu1,european,call,100,0.6,2,10,,\n"
        "eu2,european,put,95,0.4,1,3,,\n"
        "eu3,european,call,110,0.5,-3,2,,\n"
        "eu4,european,put,100,0.3,1,1,,\n"
        "bad,european,put,-5,0.6,1,1,,\n")


def test_the_book_pipeline_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "CHUNK_COST", 1.0)  # one trade per chunk: 5 chunks (a failing row too)
    book = tmp_path / "book.csv"
    book.write_text(BOOK)
    snapshot = skewed_snapshot()
    assert len(book_chunks(run_module.read_book(book))) == 5
    price_chunk = run_module.price_chunk
    calls = []

    def counting(at):
        def priced(task, shared):
            calls.append([row.id for row in task.rows])
            if len(calls) == at:
                raise KeyboardInterrupt
            return price_chunk(task, shared)
        return priced

    uninterrupted = run_book(market=snapshot, book=book, vega=False)
    folder = tmp_path / "checkpoint"
    monkeypatch.setattr(run_module, "price_chunk", counting(at=3))
    with pytest.raises(KeyboardInterrupt):  # serial: exactly the first two chunks finish
        run_book(market=snapshot, book=book, vega=False, checkpoint=folder, executor=SerialExecutor())
    finished = {tuple(ids) for ids in calls[:2]}
    assert len(list(folder.glob("task-*.pkl"))) == 2
    calls.clear()
    monkeypatch.setattr(run_module, "price_chunk", counting(at=None))
    resumed = run_book(market=skewed_snapshot(), book=book, vega=False, checkpoint=folder, resume=True)
    # only the 3 missing chunks (one trade each) were priced again; none twice, none lost
    assert len(calls) == 3 and not {tuple(ids) for ids in calls} & finished
    assert sorted(id_ for ids in [*calls, *finished] for id_ in ids) == sorted(uninterrupted.trades["id"])
    assert resumed.summary["checkpoint"]["reused"] == 2 and resumed.summary["checkpoint"]["chunks"] == 5
    pd.testing.assert_frame_equal(resumed.trades, uninterrupted.trades, check_exact=True)
    pd.testing.assert_frame_equal(resumed.ladder, uninterrupted.ladder, check_exact=True)
    # another book (or option) is refused, naming the field
    book.write_text(BOOK.replace("eu3,european,call,110", "eu3,european,call,111"))
    with pytest.raises(InputError, match="cannot resume") as caught:
        run_book(market=snapshot, book=book, vega=False, checkpoint=folder, resume=True)
    assert caught.value.field == "book"
    with pytest.raises(InputError) as caught:
        run_book(market=snapshot, book=book, vega=False, seed=1, resume=True)
    assert caught.value.field == "checkpoint"


def test_a_missing_book_is_reported_by_the_reader_not_by_the_checkpoint(tmp_path):
    with pytest.raises(InputError, match="missing.csv"):
        run_book(market=skewed_snapshot(), book=tmp_path / "missing.csv", vega=False, checkpoint=tmp_path / "c")

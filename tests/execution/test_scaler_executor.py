"""ScalerExecutor (OpenGRIS Scaler): serial == scaler bit for bit, shared sent once and unpickled once per worker
process, task order, errors, progress and on_result, a killed worker process (its task resubmitted), the
``scaler://`` spec, the install hint without the package, and the book pipeline on Scaler == serial (slow).

One local Scaler cluster (scheduler, object storage, two worker processes) serves the module; skipped when
``opengris-scaler`` is not installed (``pip install "shoals[scaler]"``).  Scaler 2.9's worker processes log
to stdout at INFO whatever the cluster's logging settings.
"""

import os
import re
import signal
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("scaler", reason='opengris-scaler is not installed (pip install "shoals[scaler]")')

from executor_tasks import (
    CountingShared,
    fail_on_three,
    numeric_task,
    sleepy_square,
    worker_token,
)
from support import skewed_snapshot

from shoals.errors import InputError, UnsupportedError
from shoals.execution import (
    EXECUTOR_SPECS,
    Executor,
    ScalerExecutor,
    SerialExecutor,
    TaskError,
    WorkerLostError,
    cost_sorted_order,
    executor_from_spec,
)

pytestmark = pytest.mark.distributed

WORKERS = 2


@pytest.fixture(scope="module")
def scaler():
    with ScalerExecutor(workers=WORKERS) as executor:
        yield executor


def test_scaler_executor_follows_the_protocol_and_equals_serial(scaler):
    assert isinstance(scaler, Executor)
    assert (scaler.name, scaler.workers) == ("scaler", WORKERS)
    rng = np.random.default_rng(7)
    shared = {"matrix": rng.standard_normal((300, 200)), "offsets": rng.standard_normal(300)}
    tasks = [(seed, 0.5 + 0.1 * seed) for seed in range(12)]
    serial = SerialExecutor().map(numeric_task, tasks, shared=shared)
    parallel = scaler.map(numeric_task, tasks, shared=shared)
    assert len(parallel) == len(tasks)
    for expected, got in zip(serial, parallel):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)


def test_shared_is_sent_once_and_unpickled_once_per_worker(scaler, tmp_path, monkeypatch):
    sends = []
    send = scaler.client.send_object
    monkeypatch.setattr(scaler.client, "send_object", lambda *args, **kwargs: sends.append(1) or send(*args, **kwargs))
    log = tmp_path / "unpickled.txt"
    shared = CountingShared(log, np.arange(1000.0))
    first = scaler.map(worker_token, range(16), shared=shared)
    second = scaler.map(worker_token, range(16), shared=shared)
    assert len(sends) == 1
    assert {shared_id for _, shared_id in scaler.map(worker_token, range(4))} == {None}
    assert len(set(first + second)) <= WORKERS  # one copy per worker process, used by all its tasks
    unpickled_by = log.read_text().split()
    assert len(unpickled_by) == len(set(unpickled_by)) <= WORKERS
    assert {str(pid) for pid, _ in first + second} <= set(unpickled_by)
    third = scaler.map(worker_token, range(4), shared=CountingShared(log, np.arange(3.0)))  # a new object: sent
    assert len(sends) == 2 and not set(third) & set(first)


def test_results_come_back_in_task_order_with_uneven_durations(scaler):
    count = 8
    tasks = [(index, 0.05 * (count - index) if index % 2 else 0.0) for index in range(count)]
    expected = [index * index for index in range(count)]
    assert scaler.map(sleepy_square, tasks) == expected
    assert scaler.map(sleepy_square, tasks, order=cost_sorted_order([s for _, s in tasks])) == expected
    assert scaler.map(numeric_task, []) == []
    assert scaler.map(lambda task, shared: task * shared, range(3), shared=2) == [0, 2, 4]  # cloudpickle


def test_errors_progress_and_on_result(scaler):
    with pytest.raises(TaskError, match=r"task 3 \(of 6\) failed: ValueError: bad task 3") as caught:
        scaler.map(fail_on_three, range(6))
    assert caught.value.index == 3 and caught.value.__cause__ is caught.value.error
    events = []
    results = scaler.map(fail_on_three, range(6), return_exceptions=True,
                         on_result=lambda index, result: events.append(("result", index, result)),
                         progress=lambda done, total: events.append(("progress", done, total)))
    assert isinstance(results[3], ValueError) and [r for i, r in enumerate(results) if i != 3] == [1, 2, 3, 5, 6]
    returned = [event for event in events if event[0] == "result"]
    assert sorted(returned) == [("result", index, results[index]) for index in (0, 1, 2, 4, 5)]
    assert [event[1:] for event in events if event[0] == "progress"] == [(done, 6) for done in range(1, 7)]
    assert all(events[events.index(event) + 1][0] == "progress" for event in returned)
    assert scaler.map(fail_on_three, range(3)) == [1, 2, 3]  # still usable


def test_unpicklable_shared_or_function_is_refused_with_input_error(scaler):
    import threading

    lock = threading.Lock()
    with pytest.raises(InputError, match="shared object cannot be sent to the Scaler workers") as caught:
        scaler.map(fail_on_three, range(2), shared=lock)
    assert caught.value.field == "shared"
    with pytest.raises(InputError, match="cannot be sent to the Scaler workers") as caught:
        scaler.map(lambda task, shared: lock, range(2))
    assert caught.value.field == "function"
    assert scaler.map(fail_on_three, range(2)) == [1, 2]


def test_a_worker_process_killed_mid_run_loses_nothing(scaler):
    victim = scaler.map(worker_token, [0])[0][0]
    tasks = [(index, 0.4) for index in range(6)]

    def kill_after_first(done, total):
        if done == 1:
            os.kill(victim, signal.SIGKILL)

    assert scaler.map(sleepy_square, tasks, progress=kill_after_first) == [index * index for index in range(6)]


def test_without_retries_a_killed_task_is_reported_lost(scaler, monkeypatch):
    monkeypatch.setattr(scaler, "retries", 0)
    victim = scaler.map(worker_token, [0])[0][0]
    results = scaler.map(sleepy_square, [(index, 0.4) for index in range(4)], return_exceptions=True,
                         progress=lambda done, total: done == 1 and os.kill(victim, signal.SIGKILL))
    lost = [index for index, result in enumerate(results) if isinstance(result, WorkerLostError)]
    assert lost and all(results[index].indices == tuple(lost) for index in lost)
    assert all(results[index] == index * index for index in range(4) if index not in lost)


@pytest.mark.slow  # ~40 s on 2 busy cores: the worker process imports Shoals and compiles the PDE
def test_the_book_pipeline_on_scaler_equals_serial(scaler, tmp_path):
    from shoals.risk.run import run_book

    book = tmp_path / "book.csv"
    book.write_text("id,instrument,option_type,strike,maturity,quantity,notional\n"
                    "eu,european,call,100,0.6,2,10\n"
                    "eu2,european,put,90,0.4,-1,5\n")
    serial = run_book(market=skewed_snapshot(), book=book, vega=False)
    on_scaler = run_book(market=skewed_snapshot(), book=book, executor=scaler, vega=False)
    assert on_scaler.summary["executor"] == "scaler" and list(serial.trades["status"]) == ["ok", "ok"]
    pd.testing.assert_frame_equal(on_scaler.trades, serial.trades, check_exact=True)


def test_the_scaler_spec_connects_lazily_and_bad_forms_are_refused():
    executor = executor_from_spec("scaler://127.0.0.1:2345")
    assert isinstance(executor, ScalerExecutor) and executor.address == "tcp://127.0.0.1:2345"
    assert executor._client is None and executor.workers == 0
    executor.close()
    for spec in ("scaler", "scaler://", "scaler://host", "scaler://host:0", "scaler://host:x", "scaler://h:1/p"):
        with pytest.raises(InputError, match="accepted: " + re.escape(", ".join(EXECUTOR_SPECS))):
            executor_from_spec(spec)


def test_an_unreachable_scheduler_is_reported_with_the_fix():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with executor_from_spec(f"scaler://127.0.0.1:{port}") as executor, \
            pytest.raises(InputError, match="cannot reach a Scaler scheduler at tcp://127.0.0.1:") as caught:
        executor.map(fail_on_three, range(2))
    assert caught.value.field == "executor"


def test_arguments_are_validated_and_a_missing_package_names_the_install_command(monkeypatch):
    for kwargs in ({"workers": 0}, {"workers": True}, {"retries": -1}, {"address": " "}):
        with pytest.raises(InputError):
            ScalerExecutor(**kwargs)
    monkeypatch.setitem(sys.modules, "scaler", None)  # makes `import scaler` fail
    with pytest.raises(UnsupportedError, match=re.escape('pip install "shoals[scaler]"')):
        executor_from_spec("scaler://127.0.0.1:2345")

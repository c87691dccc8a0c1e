"""DaskExecutor: serial == dask bit for bit, shared scattered once per worker, task order, errors, progress,
a killed worker (tasks rerun elsewhere), a cluster that loses `shared` (WorkerLostError, then recovery), the
``dask-local`` / ``dask://`` specs and ``shoals run --executor dask://...`` against a scheduler and a worker
started as separate processes, and the book pipeline on Dask == serial.

One local cluster of two worker processes serves the module (started once, ~5 s).  The task functions are
module-level so that the workers can import this module (the spawned workers get the parent's sys.path; the
separately started worker gets it through PYTHONPATH).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from executor_tasks import (
    CountingShared,
    fail_on_three,
    numeric_task,
    parent_cache,
    sleepy_square,
    worker_jax_cache,
    worker_token,
)
from support import skewed_snapshot

from shoals.errors import InputError, ShoalsError, UnsupportedError
from shoals.execution import (
    EXECUTOR_SPECS,
    DaskExecutor,
    Executor,
    SerialExecutor,
    TaskError,
    WorkerLostError,
    cost_sorted_order,
    executor_from_spec,
)

pytestmark = pytest.mark.distributed

WORKERS = 2


def slow_identity(task, shared):
    time.sleep(0.4)
    return task, shared


@pytest.fixture(scope="module")
def dask():
    with DaskExecutor(workers=WORKERS) as executor:
        executor.client.wait_for_workers(WORKERS, timeout=120)
        yield executor


def worker_pids(executor) -> dict:
    executor.client.wait_for_workers(WORKERS, timeout=120)
    return executor.client.run(os.getpid)


def test_local_workers_use_the_parents_persistent_compilation_cache(tmp_path):
    """Spawned local workers take this process's cache folder (a worker plugin); no program is compiled here
    while the option is set."""
    with parent_cache(tmp_path), DaskExecutor(workers=1) as local:
        seen = local.map(worker_jax_cache, range(2))
    assert {(cache, minimum) for _, cache, minimum in seen} == {(str(tmp_path), 0.0)}


def test_dask_executor_follows_the_protocol(dask):
    assert isinstance(dask, Executor)
    assert (dask.name, dask.workers) == ("dask", WORKERS)
    assert len(worker_pids(dask)) == WORKERS


def test_serial_and_dask_give_identical_results(dask):
    rng = np.random.default_rng(7)
    shared = {"matrix": rng.standard_normal((300, 200)), "offsets": rng.standard_normal(300)}
    tasks = [(seed, 0.5 + 0.1 * seed) for seed in range(12)]
    serial = SerialExecutor().map(numeric_task, tasks, shared=shared)
    parallel = dask.map(numeric_task, tasks, shared=shared)
    assert len(parallel) == len(tasks)
    for expected, got in zip(serial, parallel):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)


def test_shared_is_scattered_once_per_worker_and_not_again_for_the_same_object(dask, tmp_path, monkeypatch):
    scatters = []
    scatter = dask.client.scatter
    monkeypatch.setattr(dask.client, "scatter", lambda *args, **kwargs: scatters.append(1) or scatter(*args, **kwargs))
    log = tmp_path / "unpickled.txt"
    shared = CountingShared(log, np.arange(1000.0))
    first = dask.map(worker_token, range(16), shared=shared)
    second = dask.map(worker_token, range(16), shared=shared)
    without_shared = dask.map(worker_token, range(4))
    assert len(scatters) == 1
    assert {shared_id for _, shared_id in without_shared} == {None}
    # one copy per worker, used by all its tasks, in both maps
    assert len({token for token in first + second}) <= WORKERS
    unpickled_by = log.read_text().split()
    assert len(unpickled_by) == len(set(unpickled_by)) <= WORKERS
    assert {str(pid) for pid, _ in first + second} <= set(unpickled_by)
    # a different object is scattered anew
    third = dask.map(worker_token, range(4), shared=CountingShared(log, np.arange(3.0)))
    assert len(scatters) == 2
    assert not {shared_id for _, shared_id in third} & {shared_id for _, shared_id in first}


def test_a_dict_or_list_shared_arrives_whole(dask):
    shared = {"a": [1, 2], "b": (3,)}
    assert dask.map(slow_identity, ["x"], shared=shared) == [("x", shared)]
    assert dask.map(slow_identity, ["y"], shared=[1, 2]) == [("y", [1, 2])]


def test_results_come_back_in_task_order_with_uneven_durations(dask):
    count = 8
    tasks = [(index, 0.05 * (count - index) if index % 2 else 0.0) for index in range(count)]
    expected = [index * index for index in range(count)]
    assert dask.map(sleepy_square, tasks) == expected
    costs = [seconds for _, seconds in tasks]
    assert dask.map(sleepy_square, tasks, order=cost_sorted_order(costs)) == expected
    with pytest.raises(InputError, match="permutation"):
        dask.map(sleepy_square, tasks, order=[0] * count)


def test_a_failing_task_raises_task_error_naming_its_index(dask):
    with pytest.raises(TaskError, match=r"task 3 \(of 6\) failed: ValueError: bad task 3") as caught:
        dask.map(fail_on_three, range(6))
    assert caught.value.index == 3
    assert isinstance(caught.value.error, ValueError)
    assert isinstance(caught.value, ShoalsError)
    assert caught.value.__cause__ is caught.value.error
    assert caught.value.error.__traceback__ is not None  # the worker's traceback


def test_return_exceptions_keeps_the_other_results_and_the_cluster_stays_usable(dask):
    results = dask.map(fail_on_three, range(6), return_exceptions=True)
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad task 3"
    assert [r for i, r in enumerate(results) if i != 3] == [1, 2, 3, 5, 6]
    assert dask.map(fail_on_three, range(3)) == [1, 2, 3]


def test_progress_is_called_once_per_task_ending_with_total(dask):
    calls = []
    dask.map(fail_on_three, range(7), progress=lambda done, total: calls.append((done, total)),
             return_exceptions=True)
    assert calls == [(done, 7) for done in range(1, 8)]


def test_on_result_sees_each_returned_task_once_before_its_progress(dask):
    events = []
    results = dask.map(fail_on_three, range(6), return_exceptions=True,
                       on_result=lambda index, result: events.append(("result", index, result)),
                       progress=lambda done, total: events.append(("progress", done)))
    returned = [event for event in events if event[0] == "result"]
    assert sorted(returned) == [("result", index, results[index]) for index in (0, 1, 2, 4, 5)]  # not task 3
    assert [event[1] for event in events if event[0] == "progress"] == list(range(1, 7))
    assert all(events[events.index(event) + 1][0] == "progress" for event in returned)


def test_empty_task_list_and_lambdas(dask):
    assert dask.map(numeric_task, []) == []
    assert dask.map(lambda task, shared: task * shared, range(3), shared=2) == [0, 2, 4]  # cloudpickle


def test_unpicklable_shared_or_function_is_refused_with_input_error(dask):
    import threading

    lock = threading.Lock()
    with pytest.raises(InputError, match="shared object cannot be sent to the Dask workers") as caught:
        dask.map(fail_on_three, range(2), shared=lock)
    assert caught.value.field == "shared"
    with pytest.raises(InputError, match="cannot be sent to the Dask workers") as caught:
        dask.map(lambda task, shared: lock, range(2))
    assert caught.value.field == "function"
    assert dask.map(fail_on_three, range(2)) == [1, 2]


def test_the_book_pipeline_on_dask_equals_serial(dask, tmp_path):
    from shoals.risk.run import run_book

    book = tmp_path / "book.csv"
    book.write_text("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type,strike_type,"
                    "average,fixings,resets\n"
                    "eu,european,call,100,0.6,2,10,,,,,,\n"
                    "dao,barrier,call,100,0.5,-1,5,85,down-and-out,,,,\n")
    snapshot = skewed_snapshot()
    serial = run_book(market=snapshot, book=book, vega=False)
    on_dask = run_book(market=snapshot, book=book, executor=dask, vega=False)
    assert (on_dask.summary["executor"], on_dask.summary["workers"]) == ("dask", WORKERS)
    assert list(serial.trades["status"]) == ["ok", "ok"]
    pd.testing.assert_frame_equal(on_dask.trades, serial.trades, check_exact=True)


def test_a_worker_killed_mid_run_loses_nothing(dask):
    victim = next(iter(worker_pids(dask).values()))
    tasks = [(index, 0.5) for index in range(8)]

    def kill_after_first(done, total):
        if done == 1:
            os.kill(victim, signal.SIGKILL)

    results = dask.map(sleepy_square, tasks, progress=kill_after_first)
    assert results == [index * index for index in range(8)]
    assert victim not in worker_pids(dask).values()  # the nanny restarted it


def test_losing_every_copy_of_shared_raises_worker_lost_error_then_recovers(dask):
    pids = list(worker_pids(dask).values())
    shared = np.arange(10.0)

    def kill_all_after_first(done, total):
        if done == 1:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)

    results = dask.map(slow_identity, range(8), shared=shared, progress=kill_all_after_first,
                       return_exceptions=True)
    lost = [index for index, result in enumerate(results) if isinstance(result, WorkerLostError)]
    assert lost and all(results[index].indices == tuple(lost) for index in lost)
    assert "lost" in str(results[lost[0]]) and "`shared`" in str(results[lost[0]])
    assert all(results[index][0] == index for index in range(8) if index not in lost)
    # the next map scatters `shared` again to the restarted workers
    worker_pids(dask)
    again = dask.map(slow_identity, range(4), shared=shared)
    assert [task for task, _ in again] == [0, 1, 2, 3]
    assert all(np.array_equal(copy, shared) for _, copy in again)


@pytest.mark.parametrize("spec, workers", [("dask-local:2", 2), (" Dask-Local ", os.cpu_count())])
def test_executor_from_spec_builds_local_dask_clusters_lazily(spec, workers):
    executor = executor_from_spec(spec)
    assert isinstance(executor, DaskExecutor) and executor.workers == workers
    assert executor._client is None  # nothing started before the first map
    executor.close()


@pytest.mark.parametrize("spec", ["dask", "dask-local:", "dask-local:0", "dask-local:x", "dask://", "dask://host",
                                  "dask://:8786", "dask://host:port", "dask://host:0", "dask://host:70000",
                                  "dask://host:8786/path", "tcp://host:8786"])
def test_executor_from_spec_rejects_bad_dask_forms_listing_every_accepted_form(spec):
    with pytest.raises(InputError, match="accepted: " + re.escape(", ".join(EXECUTOR_SPECS))) as caught:
        executor_from_spec(spec)
    assert caught.value.field == "executor"
    assert {"dask-local:N", "dask://host:port"} <= set(EXECUTOR_SPECS)


def test_a_missing_distributed_package_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(UnsupportedError, match=re.escape('pip install "shoals[dask]"')):
        executor_from_spec("dask-local:2")


def test_dask_executor_validates_its_arguments():
    for kwargs in ({"workers": 0}, {"workers": True}, {"threads_per_worker": 0}, {"address": " "},
                   {"address": "tcp://host:8786", "workers": 2}):
        with pytest.raises(InputError):
            DaskExecutor(**kwargs)


def test_an_unreachable_scheduler_is_reported_with_the_fix():
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        executor = executor_from_spec(f"dask://127.0.0.1:{free_port()}")
        with pytest.raises(InputError, match="cannot reach a Dask scheduler at tcp://127.0.0.1:.*dask scheduler"):
            executor.map(fail_on_three, range(2))
        executor.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(path: Path, pattern: str, process: subprocess.Popen, timeout: float = 120.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} from {process.args}: {path.read_text()[-2000:]}")


@pytest.fixture
def scheduler_and_worker(tmp_path):
    """A `dask scheduler` and a `dask worker` started as separate processes on localhost (random port),
    stopped at the end; yields the scheduler's port."""
    environment = {**os.environ,
                   "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    processes = []
    try:
        log = tmp_path / "scheduler.log"
        with open(log, "w") as sink:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                 "--idle-timeout", "600"], stdout=sink, stderr=subprocess.STDOUT, env=environment))
        port = int(wait_for_line(log, r"Scheduler at:\s*tcp://127\.0\.0\.1:(\d+)", processes[0]).group(1))
        with open(tmp_path / "worker.log", "w") as sink:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--death-timeout", "60"],
                stdout=sink, stderr=subprocess.STDOUT, env=environment))
        yield port
    finally:
        for process in reversed(processes):  # the worker first, while its scheduler is still there
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def test_a_scheduler_and_worker_started_by_hand_via_the_dask_spec(scheduler_and_worker):
    with executor_from_spec(f"dask://127.0.0.1:{scheduler_and_worker}") as executor:
        assert isinstance(executor, DaskExecutor) and executor.address.startswith("tcp://127.0.0.1:")
        executor.client.wait_for_workers(1, timeout=120)
        assert executor.workers == 1
        rng = np.random.default_rng(3)
        shared = {"matrix": rng.standard_normal((50, 40)), "offsets": rng.standard_normal(50)}
        tasks = [(seed, 0.3 * seed) for seed in range(5)]
        expected = SerialExecutor().map(numeric_task, tasks, shared=shared)
        for got, want in zip(executor.map(numeric_task, tasks, shared=shared), expected):
            np.testing.assert_array_equal(got, want)
        with pytest.raises(TaskError) as caught:
            executor.map(fail_on_three, range(5))
        assert caught.value.index == 3


def test_shoals_run_against_a_scheduler_started_by_hand(scheduler_and_worker, tmp_path):
    """`shoals run --executor dask://127.0.0.1:PORT` on a market file and a two-trade book writes the same
    trades table as `--executor serial`."""
    from typer.testing import CliRunner

    from shoals.cli.main import app
    from shoals.io.market import write_market

    market, book = tmp_path / "market.json", tmp_path / "book.csv"
    write_market(skewed_snapshot(), market)
    book.write_text("id,instrument,option_type,strike,maturity,quantity,notional,barrier,barrier_type\n"
                    "eu,european,call,100,0.6,2,10,,\n"
                    "dao,barrier,call,100,0.5,-1,5,85,down-and-out\n")
    tables = {}
    for spec in ("serial", f"dask://127.0.0.1:{scheduler_and_worker}"):
        out = tmp_path / spec.split(":")[0]
        result = CliRunner().invoke(app, ["run", "--market", str(market), "--book", str(book), "--no-vega",
                                          "--executor", spec, "--out", str(out)])
        assert result.exit_code == 0, result.output
        tables[spec] = (out / "trades.csv").read_text()
    serial, on_dask = tables.values()
    assert on_dask == serial and serial.count(",ok,") == 2

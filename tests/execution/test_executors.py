"""Executors: serial == processes, shared shipped once per worker, task order, errors, progress, specs,
and the cost-based chunking (hypothesis).

The task functions are module-level so that spawned workers can import them (this module is importable
there: spawn passes the parent's sys.path on).
"""

import os
import time

import numpy as np
import pytest
from executor_tasks import (
    CountingShared,
    fail_on_three,
    numeric_task,
    parent_cache,
    sleepy_square,
    worker_cores,
    worker_jax_cache,
    worker_token,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from shoals.errors import InputError, ShoalsError
from shoals.execution import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    TaskError,
    ThreadExecutor,
    WorkerLostError,
    chunk_by_cost,
    cost_sorted_order,
    executor_from_spec,
)
from shoals.execution.executors import pinnable_cores

WORKERS = 2


def die_on_two(task, shared):
    if task == 2:
        os._exit(3)
    time.sleep(0.05)
    return task


@pytest.fixture(scope="module")
def processes():
    with executor_from_spec(f"processes:{WORKERS}") as executor:
        yield executor


@pytest.fixture(params=["serial", "threads", "processes"])
def executor(request, processes):
    if request.param == "threads":
        with ThreadExecutor(WORKERS) as threads:
            yield threads
        return
    yield SerialExecutor() if request.param == "serial" else processes


def test_executors_follow_the_protocol(processes):
    assert isinstance(SerialExecutor(), Executor)
    assert isinstance(processes, Executor)
    assert (processes.name, processes.workers) == ("processes", WORKERS)
    assert (SerialExecutor().name, SerialExecutor().workers) == ("serial", 1)
    with ThreadExecutor(3) as threads:
        assert isinstance(threads, Executor) and (threads.name, threads.workers) == ("threads", 3)


def test_threads_run_closures_on_the_callers_shared_object():
    shared = {"scale": np.arange(4.0)}
    with ThreadExecutor(2) as threads:
        results = threads.map(lambda task, context: (context is shared, task * context["scale"]), range(5),
                              shared=shared)
    assert all(same for same, _ in results)
    np.testing.assert_array_equal(results[3][1], 3.0 * np.arange(4.0))


def test_threads_keep_the_results_of_running_tasks_when_interrupted():
    """An interrupt (KeyboardInterrupt) stops the map as is, not as a TaskError; the tasks already running,
    which threads cannot stop, still reach on_result (a checkpoint keeps them): no finished work is lost."""
    started, kept = [], {}

    def task(index, _):
        started.append(index)
        if index == 0:
            raise KeyboardInterrupt
        time.sleep(0.3)
        return 10 * index

    with ThreadExecutor(2) as threads, pytest.raises(KeyboardInterrupt):
        threads.map(task, [0, 1, 2], on_result=kept.__setitem__)
    assert 1 in started and kept == {index: 10 * index for index in started if index != 0}


def test_serial_and_processes_give_identical_results(processes):
    rng = np.random.default_rng(7)
    shared = {"matrix": rng.standard_normal((300, 200)), "offsets": rng.standard_normal(300)}
    tasks = [(seed, 0.5 + 0.1 * seed) for seed in range(12)]
    serial = SerialExecutor().map(numeric_task, tasks, shared=shared)
    parallel = processes.map(numeric_task, tasks, shared=shared)
    assert len(parallel) == len(tasks)
    for expected, got in zip(serial, parallel):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(len(pinnable_cores()) < WORKERS, reason=f"needs {WORKERS} CPUs and CPU affinity (Linux)")
def test_pinned_workers_each_own_a_core_and_run_xla_on_one_thread(processes):
    assert processes.pinned
    workers = dict((pid, (cores, threads)) for pid, cores, threads in processes.map(worker_cores, range(16)))
    cores = [cores for cores, _ in workers.values()]
    assert all(len(owned) == 1 for owned in cores) and len(set(cores)) == len(cores) <= WORKERS
    assert {threads for _, threads in workers.values()} == {1}
    with ProcessExecutor(WORKERS, pin=False) as free:
        assert not free.pinned
        assert {cores for _, cores, _ in free.map(worker_cores, range(4))} == {tuple(pinnable_cores())}
    assert not ProcessExecutor(len(pinnable_cores()) + 1).pinned  # more workers than cores: the OS schedules


def test_workers_use_the_parents_persistent_compilation_cache(tmp_path):
    """A spawned worker starts with JAX's defaults; it takes the parent's cache folder (and minimum compile time)
    when the parent has one, and stays without a cache otherwise.  No program is compiled here while the
    option is set, so this process's own cache is not touched."""
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        with ProcessExecutor(WORKERS) as workers:
            assert {cache for _, cache, _ in workers.map(worker_jax_cache, range(4))} == {None}
    with parent_cache(tmp_path), ProcessExecutor(WORKERS) as workers:
        seen = workers.map(worker_jax_cache, range(4))
    assert {(cache, minimum) for _, cache, minimum in seen} == {(str(tmp_path), 0.0)}


def test_shared_is_shipped_once_per_worker_and_not_again_for_the_same_object(processes, tmp_path):
    log = tmp_path / "unpickled.txt"
    shared = CountingShared(log, np.arange(1000.0))
    first = processes.map(worker_token, range(16), shared=shared)
    second = processes.map(worker_token, range(16), shared=shared)
    without_shared = processes.map(worker_token, range(4))
    third = processes.map(worker_token, range(16), shared=CountingShared(log, np.arange(3.0)))
    tokens = set(first) | set(second)
    assert 1 <= len(tokens) <= WORKERS
    assert {shared_id for _, shared_id in without_shared} == {None}
    # a different shared object restarts the workers: new processes, new copies
    assert not set(third) & tokens
    unpickled_by = log.read_text().split()
    assert len(unpickled_by) == len(set(unpickled_by)) <= 2 * WORKERS  # once per worker, never per task
    assert {str(pid) for pid, _ in first + second + third} <= set(unpickled_by)


def test_results_come_back_in_task_order_with_uneven_durations(executor):
    count = 8
    tasks = [(index, 0.03 * (count - index) if index % 2 else 0.0) for index in range(count)]
    expected = [index * index for index in range(count)]
    assert executor.map(sleepy_square, tasks) == expected
    costs = [seconds for _, seconds in tasks]
    assert executor.map(sleepy_square, tasks, order=cost_sorted_order(costs)) == expected


def test_a_failing_task_raises_task_error_naming_its_index(executor):
    with pytest.raises(TaskError, match=r"task 3 \(of 6\) failed: ValueError: bad task 3") as caught:
        executor.map(fail_on_three, range(6))
    assert caught.value.index == 3
    assert isinstance(caught.value.error, ValueError)
    assert isinstance(caught.value, ShoalsError)
    assert caught.value.__cause__ is caught.value.error


def test_return_exceptions_keeps_the_other_results(executor):
    results = executor.map(fail_on_three, range(6), return_exceptions=True)
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad task 3"
    assert [r for i, r in enumerate(results) if i != 3] == [1, 2, 3, 5, 6]


def test_progress_is_called_once_per_task_ending_with_total(executor):
    calls = []
    executor.map(fail_on_three, range(7), progress=lambda done, total: calls.append((done, total)),
                 return_exceptions=True)
    assert calls == [(done, 7) for done in range(1, 8)]


def test_on_result_sees_each_returned_task_once_before_its_progress(executor):
    events = []
    results = executor.map(fail_on_three, range(6), return_exceptions=True, order=[5, 4, 3, 2, 1, 0],
                           on_result=lambda index, result: events.append(("result", index, result)),
                           progress=lambda done, total: events.append(("progress", done)))
    returned = [event for event in events if event[0] == "result"]
    assert sorted(returned) == [("result", index, results[index]) for index in (0, 1, 2, 4, 5)]  # not task 3
    assert [event[1] for event in events if event[0] == "progress"] == list(range(1, 7))
    assert all(events[events.index(event) + 1][0] == "progress" for event in returned)


def test_empty_task_list(executor):
    assert executor.map(numeric_task, []) == []


def test_a_dead_worker_names_the_lost_tasks_and_the_executor_recovers(processes):
    results = processes.map(die_on_two, range(6), return_exceptions=True)
    assert isinstance(results[2], WorkerLostError)
    lost = results[2].indices
    assert 2 in lost and "tasks were lost" in str(results[2])
    assert all(results[i] == i if i not in lost else isinstance(results[i], WorkerLostError) for i in range(6))
    with pytest.raises(WorkerLostError, match="worker process died") as caught:
        processes.map(die_on_two, range(4))
    assert 2 in caught.value.indices
    assert processes.map(fail_on_three, range(3)) == [1, 2, 3]


def test_unpicklable_function_is_refused_with_the_fix(processes):
    with pytest.raises(InputError, match="module-level function") as caught:
        processes.map(lambda task, shared: task, range(3))
    assert caught.value.field == "function"
    assert SerialExecutor().map(lambda task, shared: task * 2, range(3)) == [0, 2, 4]


def test_task_error_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(TaskError("task 1 failed", index=1, error=ValueError("x"))))
    assert (error.index, str(error), str(error.error)) == (1, "task 1 failed", "x")
    lost = pickle.loads(pickle.dumps(WorkerLostError("lost", indices=[4, 5], error=RuntimeError("y"))))
    assert (lost.index, lost.indices) == (4, (4, 5))


@pytest.mark.parametrize("spec, kind, workers", [
    ("serial", SerialExecutor, 1),
    (" Serial ", SerialExecutor, 1),
    ("processes", ProcessExecutor, os.cpu_count()),
    ("processes:3", ProcessExecutor, 3),
    ("threads", ThreadExecutor, os.cpu_count()),
    ("threads:2", ThreadExecutor, 2),
])
def test_executor_from_spec_accepts(spec, kind, workers):
    executor = executor_from_spec(spec)
    assert isinstance(executor, kind) and executor.workers == workers
    executor.close()


@pytest.mark.parametrize("spec", ["", "thread", "threads:0", "processes:", "processes:0", "processes:-2", "processes:x",
                                  "processes:2:3", "serial:2", "scaler://host", "scaler-local:2"])
def test_executor_from_spec_rejects_with_the_accepted_forms(spec):
    with pytest.raises(InputError, match=r"accepted: serial, threads, threads:N, processes, processes:N") as caught:
        executor_from_spec(spec)
    assert caught.value.field == "executor"


def test_process_executor_rejects_bad_worker_counts():
    for workers in (0, -1, 1.5, True):
        with pytest.raises(InputError):
            ProcessExecutor(workers)


costs_strategy = st.lists(st.floats(min_value=0.0, max_value=100.0, allow_nan=False), max_size=60)
max_costs = st.none() | st.floats(min_value=0.01, max_value=250.0)
max_items = st.none() | st.integers(min_value=1, max_value=10)


@settings(max_examples=300, deadline=None)
@given(costs=costs_strategy, max_cost=max_costs, max_items=max_items)
def test_chunk_by_cost_properties(costs, max_cost, max_items):
    chunks = chunk_by_cost(costs, max_cost=max_cost, max_items=max_items)
    # every index once, in order, each chunk contiguous and non-empty
    assert [index for chunk in chunks for index in chunk] == list(range(len(costs)))
    assert all(chunk and chunk == list(range(chunk[0], chunk[-1] + 1)) for chunk in chunks)
    for position, chunk in enumerate(chunks):
        total = sum(costs[index] for index in chunk)
        # limits kept; an item above max_cost alone in its chunk
        assert max_cost is None or total <= max_cost or len(chunk) == 1
        assert max_items is None or len(chunk) <= max_items
        # maximal (greedy): the next item would have broken a limit
        if position + 1 < len(chunks):
            following = costs[chunks[position + 1][0]]
            assert ((max_cost is not None and total + following > max_cost)
                    or (max_items is not None and len(chunk) == max_items))
    # deterministic, and the chunks know nothing of workers
    assert chunk_by_cost(list(costs), max_cost=max_cost, max_items=max_items) == chunks


def test_chunk_by_cost_examples_and_validation():
    assert chunk_by_cost([1, 2, 3, 10, 1, 1], max_cost=5) == [[0, 1], [2], [3], [4, 5]]
    assert chunk_by_cost([1] * 5, max_items=2) == [[0, 1], [2, 3], [4]]
    assert chunk_by_cost([1, 2, 3]) == [[0, 1, 2]]
    assert chunk_by_cost([]) == []
    assert chunk_by_cost(np.array([2.0, 2.0, 2.0]), max_cost=4.0) == [[0, 1], [2]]
    with pytest.raises(InputError, match="row 1"):
        chunk_by_cost([1.0, -1.0])
    with pytest.raises(InputError):
        chunk_by_cost([1.0], max_cost=0.0)
    with pytest.raises(InputError):
        chunk_by_cost([1.0], max_items=0)


def test_cost_sorted_order_is_largest_first_and_stable():
    assert cost_sorted_order([1.0, 5.0, 3.0, 5.0, 0.0]) == [1, 3, 2, 0, 4]
    assert cost_sorted_order([]) == []


def test_order_must_be_a_permutation():
    with pytest.raises(InputError, match="permutation"):
        SerialExecutor().map(fail_on_three, range(3), order=[0, 0, 1])

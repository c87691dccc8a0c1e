"""Executors: fan independent tasks out (in process, or to local processes) and gather them in task order.

An executor calls ``function(task, shared)`` for every task and returns the results in task order.
``shared`` is the large read-only context of the tasks (a market snapshot with its local-vol grids): it is
shipped once per worker, never once per task.  Work is split by the caller (:func:`chunk_by_cost`) into
chunks that never depend on the number of workers, so results never depend on the executor either.

Knows no finance.  See docs/execution.md.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shoals.errors import InputError, ShoalsError

EXECUTOR_SPECS = ("serial", "threads", "threads:N", "processes", "processes:N", "dask-local", "dask-local:N",
                  "dask://host:port", "scaler://host:port")
"""The forms :func:`executor_from_spec` accepts (the ``--executor`` option of ``shoals run``)."""

Progress = Callable[[int, int], None]
OnResult = Callable[[int, Any], None]


class TaskError(ShoalsError):
    """A task of :meth:`Executor.map` failed: names the task index and keeps the original error
    (also chained as ``__cause__``, with the worker's traceback where the task ran in another process)."""

    def __init__(self, message: str, *, index: int, error: BaseException):
        super().__init__(message)
        self.index = index
        self.error = error

    def __reduce__(self):
        return _rebuild_task_error, (type(self), str(self), self.index, self.error)


class WorkerLostError(TaskError):
    """A worker process died (killed, out of memory, crashed in native code) and took tasks with it.

    ``indices`` are the tasks lost (``index`` is the first of them); they did not fail on their own and can
    be resubmitted.
    """

    def __init__(self, message: str, *, indices: Sequence[int], error: BaseException):
        super().__init__(message, index=indices[0], error=error)
        self.indices = tuple(indices)

    def __reduce__(self):
        return _rebuild_worker_lost, (str(self), self.indices, self.error)


def _rebuild_task_error(cls, message, index, error):
    return cls(message, index=index, error=error)


def _rebuild_worker_lost(message, indices, error):
    return WorkerLostError(message, indices=indices, error=error)


@runtime_checkable
class Executor(Protocol):
    """What the book pipeline needs from a backend (serial, local processes, a cluster).

    ``map(function, tasks, *, shared, progress, return_exceptions, order)`` calls ``function(task, shared)``
    for every task and returns the results in task order:

    * ``shared`` is shipped to each worker once (not once per task) and should be treated as read-only;
      passing the same object to successive ``map`` calls does not ship it again.
    * ``progress(done, total)`` is called in the caller's process after each task completes (in any
      completion order), ending with ``(total, total)`` unless ``map`` raises.
    * a failing task raises :class:`TaskError` naming its index (pending work is cancelled); with
      ``return_exceptions=True`` its exception object takes its slot and the other tasks complete.
    * ``order`` (a permutation of the task indices, e.g. :func:`cost_sorted_order`) is the order in which
      tasks are started; it changes neither the results nor their order.
    * ``on_result(index, result)`` is called in the caller's process as each task returns (completion order,
      before ``progress``; not for a task that raised): a checkpoint writes finished results there
      (:func:`shoals.execution.checkpoint.checkpointed_map`).  If it raises, ``map`` raises that error and
      cancels the pending tasks.

    ``close()`` releases the workers; executors are context managers.
    """

    name: str
    workers: int

    def map(self, function: Callable[[Any, Any], Any], tasks: Sequence[Any], *, shared: Any = None,
            progress: Progress | None = None, return_exceptions: bool = False,
            order: Sequence[int] | None = None, on_result: OnResult | None = None) -> list: ...

    def close(self) -> None: ...

    def __enter__(self): ...

    def __exit__(self, *exc_info) -> None: ...


@dataclass(frozen=True)
class SerialExecutor:
    """Runs every task in this process, one after the other (the reference the others are tested
    against; no pickling, so lambdas and closures work here, and only here)."""

    name: str = field(default="serial", init=False)
    workers: int = field(default=1, init=False)

    def map(self, function, tasks, *, shared=None, progress=None, return_exceptions=False, order=None,
            on_result=None):
        """See :class:`Executor`."""
        tasks = list(tasks)
        results: list = [None] * len(tasks)
        for done, index in enumerate(_start_order(order, len(tasks)), start=1):
            try:
                results[index] = function(tasks[index], shared)
            except Exception as error:
                if not return_exceptions:
                    raise _task_error(index, len(tasks), error) from error
                results[index] = error
            else:
                if on_result is not None:
                    on_result(index, results[index])
            if progress is not None:
                progress(done, len(tasks))
        return results

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# Worker side of ProcessExecutor: the pool initializer installs the shared object here, once per worker.
_WORKER_SHARED: Any = None

#: JAX options a worker process takes from its parent: the persistent compilation cache.  A spawned worker
#: starts with JAX's defaults, so without them it compiles every program afresh although the parent (``shoals
#: run``, which enables the cache) has them on disk: ~120 s per worker for the embedded example's programs.
INHERITED_JAX_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


def parent_jax_options() -> dict:
    """This process's values of :data:`INHERITED_JAX_OPTIONS` when it has a persistent compilation cache
    (``{}`` otherwise, or when JAX is not imported), for the worker processes it starts on this machine."""
    jax = sys.modules.get("jax")
    if jax is None or jax.config.jax_compilation_cache_dir is None:
        return {}
    return {name: getattr(jax.config, name) for name in INHERITED_JAX_OPTIONS}


def apply_jax_options(options: dict) -> None:
    """Set JAX ``options`` (name -> value) in this process (a worker's start-up; starts no JAX client)."""
    if options:
        import jax

        for name, value in options.items():
            jax.config.update(name, value)


def _start_worker(cores, jax_options: dict, payload: bytes | None) -> None:
    """Pool initializer: pin this worker to the next core of the queue ``cores`` (if pinning), take the
    parent's ``jax_options`` (:func:`parent_jax_options`), then install the shared object.  Pinning comes
    first: XLA sizes its intra-op thread pool and its per-op task split from the CPUs the process may run on
    when the JAX client starts, which unpickling ``shared`` may do; setting options starts no client."""
    global _WORKER_SHARED
    if cores is not None:
        os.sched_setaffinity(0, {cores.get()})
    apply_jax_options(jax_options)
    if payload is not None:
        _WORKER_SHARED = pickle.loads(payload)


def pinnable_cores() -> list[int]:
    """The CPUs this process may run on (sorted), or ``[]`` where the platform cannot pin (not Linux)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []


def _call(function, task, with_shared: bool):
    return function(task, _WORKER_SHARED if with_shared else None)


class ProcessExecutor:
    """Runs tasks on local worker processes (``concurrent.futures.ProcessPoolExecutor``, *spawn* start
    method: JAX is multithreaded and forking it is unsafe).

    ``workers`` defaults to ``os.cpu_count()``.  With ``pin`` (the default) and no more workers than CPUs, each
    worker is pinned to a CPU of its own (``os.sched_setaffinity``, Linux; elsewhere ``pin`` does nothing)
    before its JAX starts, so XLA runs it on one thread: unpinned, XLA's CPU runtime splits each large
    elementwise op of a program across a thread per core, and for the PDE solves' small per-step ops the
    hand-offs (and the idle threads' spinning) cost more than they gain and steal the other worker's core.
    Measured (2 cores, the seed book's 8 PDE chunks on two workers, medians of 9 in one window): 0.30-0.41 s
    per book pinned, 0.44-0.54 s unpinned, 0.37-0.47 s on two threads of one process (whose single solves
    keep ~1.5 cores busy for no gain in wall time); bit-identical results (docs/execution.md).

    The pool starts on the first ``map`` and is reused until :meth:`close` (or the end of a ``with`` block).
    Workers use the parent's persistent JAX compilation cache, if it has one (:data:`INHERITED_JAX_OPTIONS`).
    ``shared`` is pickled once in the parent and unpickled once per worker by the pool initializer; a ``map``
    with a different ``shared`` object restarts the workers (identity decides, so mutate nothing you passed
    as ``shared``).  ``function``, the tasks and their results must be picklable: ``function`` a
    module-level function of an importable module (no lambda, closure or function defined in ``__main__``
    of an interactive session).

    Not a frozen dataclass: it owns a process pool.
    """

    name = "processes"

    def __init__(self, workers: int | None = None, *, pin: bool = True):
        self.workers = worker_count(workers)
        cores = pinnable_cores()
        self.pinned = bool(pin) and 0 < self.workers <= len(cores)
        self._cores = cores[:self.workers] if self.pinned else []
        self._pool: ProcessPoolExecutor | None = None
        self._installed: Any = None  # the shared object the workers hold (identity is the token)

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, pinned={self.pinned})"

    def map(self, function, tasks, *, shared=None, progress=None, return_exceptions=False, order=None,
            on_result=None):
        """See :class:`Executor`.  A worker that dies loses the tasks it held and those queued behind it:
        :class:`WorkerLostError` names them (with ``return_exceptions=True`` it fills each lost slot), and
        the next ``map`` starts fresh workers."""
        tasks = list(tasks)
        start_order = _start_order(order, len(tasks))
        try:
            pickle.dumps(function)
        except Exception as error:
            raise InputError(
                f"function {function!r} cannot be sent to worker processes ({error}); make it a "
                "module-level function of an importable module (no lambda or closure), or use "
                "SerialExecutor", field="function", value=function) from error
        if not tasks:
            return []
        with_shared = shared is not None
        try:
            futures = self._submit(function, tasks, shared, with_shared, start_order)
        except BrokenProcessPool:  # a worker died while the pool was idle: start afresh, once
            self._discard()
            futures = self._submit(function, tasks, shared, with_shared, start_order)
        return self._gather(futures, len(tasks), progress, return_exceptions, on_result)

    def _submit(self, function, tasks, shared, with_shared, start_order):
        pool = self._pool_for(shared)
        return {pool.submit(_call, function, tasks[index], with_shared): index for index in start_order}

    def _pool_for(self, shared) -> ProcessPoolExecutor:
        if self._pool is not None and (shared is None or shared is self._installed):
            return self._pool
        self._discard()
        payload = None
        if shared is not None:
            try:
                payload = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                raise InputError(f"shared object cannot be pickled for the worker processes ({error})",
                                 field="shared", value=type(shared).__name__) from error
        context = multiprocessing.get_context("spawn")
        cores = None
        if self.pinned:
            cores = context.Queue()
            for core in self._cores:
                cores.put(core)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_start_worker,
                                         initargs=(cores, parent_jax_options(), payload))
        self._installed = shared
        return self._pool

    def _gather(self, futures, total, progress, return_exceptions, on_result):
        results, lost, broken = gather_futures(futures, total, progress=progress, return_exceptions=return_exceptions,
                                               on_result=on_result, lost_if=BrokenProcessPool)
        if lost:
            self._discard()
            message = (f"a worker process died (killed, out of memory, crashed in native code, or its "
                       f"initializer failed to unpickle `shared`: {broken}); {len(lost)} of {total} tasks "
                       f"were lost: {_format_indices(lost)}")
            if not return_exceptions:
                raise WorkerLostError(message, indices=lost, error=broken) from broken
            for index in lost:
                results[index] = WorkerLostError(message, indices=lost, error=broken)
        return results

    def _discard(self, *, wait: bool = False) -> None:
        # Without waiting, the old workers finish the tasks they are running (if any) and exit on their own.
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
        self._pool = None
        self._installed = None

    def close(self) -> None:
        """Cancel queued tasks, wait for running ones and stop the workers (a later ``map`` restarts them)."""
        self._discard(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ThreadExecutor:
    """Runs tasks on threads of this process (``concurrent.futures.ThreadPoolExecutor``).

    The array work of a task runs in compiled XLA code, which releases the GIL, so tasks that are mostly
    JAX solves (the book's PDE chunks) run in parallel on the cores without a process per worker: nothing
    is pickled, ``shared`` is the caller's object itself (no copy, no second compilation per worker), and
    lambdas and closures work.  ``workers`` defaults to ``os.cpu_count()``.  Results are identical to
    :class:`SerialExecutor`'s (every task is computed as it would be alone).

    Measured (2 cores, two halves of an 800-row batched Crank-Nicolson solve): 0.71 s on two threads against
    1.41 s one after the other; less where tasks also do host-side Python work, which holds the GIL
    (docs/execution.md).
    """

    name = "threads"

    def __init__(self, workers: int | None = None):
        self.workers = worker_count(workers)
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"ThreadExecutor(workers={self.workers})"

    def map(self, function, tasks, *, shared=None, progress=None, return_exceptions=False, order=None,
            on_result=None):
        """See :class:`Executor`."""
        tasks = list(tasks)
        start_order = _start_order(order, len(tasks))
        if not tasks:
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="shoals")
        futures = {self._pool.submit(function, tasks[index], shared): index for index in start_order}
        return gather_futures(futures, len(tasks), progress=progress, return_exceptions=return_exceptions,
                              on_result=on_result, finish_running=True)[0]

    def close(self) -> None:
        """Cancel queued tasks, wait for running ones and stop the threads (a later ``map`` restarts them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def worker_count(workers: int | None) -> int:
    """``workers`` checked (a positive integer; InputError naming the field otherwise), or one per CPU."""
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}", field="workers", value=workers)
    return workers


def gather_futures(futures: dict, total: int, *, progress=None, return_exceptions=False, on_result=None,
                   lost_if=None, retry=None, finish_running=False):
    """Wait for ``futures`` ({future: task index}) in completion order, settling each (:func:`settle`) and
    reporting ``progress``; pending futures are cancelled if this raises.  A future whose exception is a
    ``lost_if`` (an exception type or tuple: a dead worker) is not settled: ``retry(index)`` (optional) may
    return a new future for the task, which is awaited in its place; otherwise its index is returned in
    ``lost``.  ``finish_running`` (threads, which cannot be stopped): when this raises (an interrupt, a failed
    task), the tasks already running are awaited and their results still reach ``on_result`` (a checkpoint
    keeps them); the error is raised after.

    Returns ``(results, lost, first_lost_error)``, ``lost`` sorted.  The gather loop of the pool and cluster
    executors."""
    results: list = [None] * total
    lost: list[int] = []
    cause: BaseException | None = None
    done = 0
    pending = set(futures)
    settled: set = set()
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=futures.__getitem__):
                index = futures[future]
                error = future.exception()
                if lost_if is not None and isinstance(error, lost_if):
                    again = None if retry is None else retry(index)
                    if again is not None:
                        futures[again] = index
                        pending.add(again)
                        continue
                    lost.append(index)
                    cause = cause or error
                else:
                    settled.add(future)
                    settle(results, index, future, error, return_exceptions=return_exceptions, on_result=on_result)
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        for future in pending:
            future.cancel()
        if finish_running and on_result is not None:
            _finish_running(futures, settled, on_result)
    return results, sorted(lost), cause


def _finish_running(futures: dict, settled: set, on_result) -> None:
    """Await the futures neither ``settled`` nor cancelled (finished or running when the gather stopped) and
    pass the results of those that succeeded to ``on_result``; their errors are dropped (the caller is
    already raising, or every future was settled)."""
    running = [future for future in futures if future not in settled and not future.cancelled()]
    wait(running)
    for future in sorted(running, key=futures.__getitem__):
        if not future.cancelled() and future.exception() is None:
            on_result(futures[future], future.result())


def executor_from_spec(spec: str) -> Executor:
    """The executor a ``--executor`` value names: ``serial``, ``threads`` / ``threads:N`` (threads of this
    process: one per CPU / N), ``processes`` (one worker per CPU),
    ``processes:N`` (N workers), ``dask-local`` / ``dask-local:N`` (a Dask cluster on this machine: one worker
    process per CPU / N workers), ``dask://host:port`` (the Dask scheduler at ``tcp://host:port``) or
    ``scaler://host:port`` (the OpenGRIS Scaler scheduler at ``tcp://host:port``).

    Raises :class:`~shoals.errors.InputError` (field ``executor``) listing the accepted forms otherwise, and
    :class:`~shoals.errors.UnsupportedError` for a Dask (Scaler) form when ``distributed`` (``opengris-scaler``)
    is not installed.  Dask and Scaler executors connect (or start) on first use.
    Validation: tests/execution/test_executors.py, tests/execution/test_dask_executor.py,
    tests/execution/test_scaler_executor.py.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    lowered = text.lower()
    name, separator, argument = lowered.partition(":")
    if lowered == "serial":
        return SerialExecutor()
    if lowered == "threads" or (name == "threads" and separator and _is_count(argument)):
        return ThreadExecutor(int(argument) if argument else None)
    if lowered == "processes":
        return ProcessExecutor()
    if name == "processes" and separator and _is_count(argument):
        return ProcessExecutor(int(argument))
    if lowered == "dask-local" or (name == "dask-local" and separator and _is_count(argument)):
        from shoals.execution.dask_executor import DaskExecutor

        return DaskExecutor(workers=int(argument) if argument else None)
    for scheme in ("dask", "scaler"):
        if lowered.startswith(f"{scheme}://"):
            host, separator, port = text[len(scheme) + 3:].rpartition(":")
            if separator and host and "/" not in host and _is_count(port) and int(port) < 65536:
                if scheme == "dask":
                    from shoals.execution.dask_executor import DaskExecutor

                    return DaskExecutor(f"tcp://{host}:{port}")
                from shoals.execution.scaler_executor import ScalerExecutor

                return ScalerExecutor(f"tcp://{host}:{port}")
    raise InputError(f"unknown executor {spec!r}; accepted: {', '.join(EXECUTOR_SPECS)} "
                     "(N a positive integer, e.g. processes:4 or dask-local:4; host:port of a Dask or Scaler "
                     "scheduler, e.g. dask://scheduler:8786)", field="executor", value=spec)


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) >= 1


def chunk_by_cost(costs: Sequence[float], *, max_cost: float | None = None,
                  max_items: int | None = None) -> list[list[int]]:
    """Split items ``0..n-1`` into contiguous chunks, in order: a chunk closes when the next item would
    take its summed cost above ``max_cost`` or its length above ``max_items``.

    An item costing more than ``max_cost`` gets a chunk of its own.  Greedy and deterministic: the chunks
    depend only on the costs and the limits, never on the number of workers, so neither do the results.
    With neither limit, all items form one chunk; no items, no chunks.

    Validation: tests/execution/test_executors.py (hypothesis: every index once, contiguous, limits kept,
    maximal).
    """
    costs = [float(cost) for cost in costs]
    for row, cost in enumerate(costs):
        if not (math.isfinite(cost) and cost >= 0.0):
            raise InputError(f"cost must be finite and >= 0, got {cost}", field="costs", row=row, value=cost)
    if max_cost is not None and not (math.isfinite(max_cost) and max_cost > 0.0):
        raise InputError(f"max_cost must be finite and > 0, got {max_cost}", field="max_cost", value=max_cost)
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise InputError(f"max_items must be a positive integer, got {max_items!r}", field="max_items",
                         value=max_items)
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0.0
    for index, cost in enumerate(costs):
        if current and ((max_cost is not None and total + cost > max_cost)
                        or (max_items is not None and len(current) >= max_items)):
            chunks.append(current)
            current, total = [], 0.0
        current.append(index)
        total += cost
    if current:
        chunks.append(current)
    return chunks


def cost_sorted_order(costs: Sequence[float]) -> list[int]:
    """Task indices by decreasing cost (ties by index): pass as ``order=`` to start the longest tasks first,
    which balances the workers' load; results still come back in task order."""
    return sorted(range(len(costs)), key=lambda index: -float(costs[index]))


def _start_order(order: Sequence[int] | None, count: int) -> list[int]:
    if order is None:
        return list(range(count))
    order = [int(index) for index in order]
    if sorted(order) != list(range(count)):
        raise InputError(f"order must be a permutation of the {count} task indices", field="order",
                         value=order)
    return order


def settle(results: list, index: int, future, error, *, return_exceptions: bool, on_result) -> None:
    """Record the outcome of finished task ``index`` (``error`` its exception or None): its result in
    ``results`` (then ``on_result(index, result)``), or the exception with ``return_exceptions``, else raise
    :class:`TaskError`.  An interrupt (``KeyboardInterrupt``, ``SystemExit``: not an ``Exception``) raised in
    a task is raised as is, whatever ``return_exceptions``: it stops the run rather than failing the task.
    The step every executor's gather loop shares."""
    if error is None:
        results[index] = future.result()
        if on_result is not None:
            on_result(index, results[index])
    elif not isinstance(error, Exception):
        raise error
    elif return_exceptions:
        results[index] = error
    else:
        raise _task_error(index, len(results), error) from error


def _task_error(index: int, total: int, error: BaseException) -> TaskError:
    return TaskError(f"task {index} (of {total}) failed: {type(error).__name__}: {error}", index=index,
                     error=error)


def _format_indices(indices: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(index) for index in indices[:limit])
    return shown + (f", ... ({len(indices) - limit} more)" if len(indices) > limit else "")

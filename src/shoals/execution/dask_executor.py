"""DaskExecutor: fan tasks out to a Dask cluster (a scheduler at an address, or a local cluster it starts).

Keeps the guarantees of :class:`~shoals.execution.executors.Executor`: results in task order, ``shared``
shipped once per worker (scattered to every worker, not sent with each task), :class:`TaskError` naming the
task, :class:`WorkerLostError` naming the tasks the cluster lost, ``progress`` in the caller.

``distributed`` is imported when a :class:`DaskExecutor` is built, so that Shoals imports without it
(``pip install "shoals[dask]"``).  Knows no finance.  See docs/execution.md.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from shoals.errors import InputError, UnsupportedError
from shoals.execution.executors import (
    WorkerLostError,
    _format_indices,
    _start_order,
    _task_error,
    apply_jax_options,
    parent_jax_options,
)

INSTALL_HINT = 'pip install "shoals[dask]"'


def _distributed():
    try:
        import distributed
    except ImportError as error:
        raise UnsupportedError(f"the Dask executor needs the `distributed` package ({error}); install it with "
                               f"{INSTALL_HINT}") from error
    return distributed


class _Job:
    """One task and its function, opaque to Dask (which would otherwise look inside lists, tuples and dicts
    of a task for futures and keys)."""

    __slots__ = ("function", "task")

    def __init__(self, function, task):
        self.function = function
        self.task = task


def _inherit_jax_options(client, options: dict) -> None:
    """Have every worker of ``client``'s cluster, including those started later, set JAX ``options`` (the
    parent's persistent compilation cache, :func:`~shoals.execution.executors.parent_jax_options`) before its
    first task: a worker plugin, run at each worker's start."""
    if not options:
        return
    distributed = _distributed()

    class JaxOptions(distributed.WorkerPlugin):
        name = "shoals-jax-options"

        def __init__(self, options):
            self.options = options

        def setup(self, worker):
            apply_jax_options(self.options)

    client.register_plugin(JaxOptions(options))


def _run(job: _Job, shared):
    # Worker side: Dask resolves the scattered ``shared`` future to the worker's own copy.
    return job.function(job.task, shared)


class DaskExecutor:
    """Runs tasks on a Dask cluster: the scheduler at ``address`` (``"tcp://host:8786"``), or, with no
    address, a ``distributed.LocalCluster`` of ``workers`` worker processes (default ``os.cpu_count()``)
    with ``threads_per_worker`` threads each, started on the first ``map`` (or the first use of
    :attr:`client`) and stopped by :meth:`close`; its dashboard listens on a free localhost port
    (``executor.client.dashboard_link``; the pages need ``bokeh``).  ``close`` disconnects from a remote
    scheduler and leaves its cluster running.

    * ``shared`` is scattered to every worker once (``client.scatter(..., broadcast=True)``); passing the same
      object (identity) to the next ``map`` reuses it, a different object replaces it.  Workers that join
      later fetch it from a peer, once.  Treat it as read-only.
    * Each task is one Dask task with a fresh key (``<function>-<run token>-<index>``), submitted in
      ``order``: the scheduler starts them in submission order.
    * A worker that dies mid-run: the scheduler reruns its tasks on other (or restarted) workers, up to
      ``distributed.scheduler.allowed-failures`` deaths per task (default 3); beyond that, or when the
      cluster loses ``shared`` (every worker holding it died), :class:`WorkerLostError` names the lost tasks
      and the next ``map`` scatters ``shared`` again.  Tasks that raise are not rerun.
    * ``function`` and the tasks are pickled with cloudpickle: a module-level function must be importable
      on the workers (Shoals installed there); lambdas and closures travel by value.

    With no address and ``processes=True`` the workers are spawned: a script that builds a DaskExecutor at
    import time needs the ``if __name__ == "__main__":`` guard; they use this process's persistent JAX
    compilation cache, if it has one (a worker plugin: workers restarted later too).  Workers of a remote
    cluster set their own (``dask worker --preload``, docs/execution.md).
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, workers: int | None = None, threads_per_worker: int = 1,
                 processes: bool = True):
        _distributed()
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InputError(f"address must be a scheduler address such as tcp://host:8786, got {address!r}",
                             field="address", value=address)
        if address is not None and workers is not None:
            raise InputError("workers applies to the local cluster only; a remote cluster has the workers "
                             "started for it (dask worker, dask-kubernetes, dask-jobqueue)", field="workers",
                             value=workers)
        for field_name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{field_name} must be a positive integer, got {value!r}", field=field_name,
                                 value=value)
        self.address = address.strip() if address is not None else None
        self._local_workers = (workers or os.cpu_count() or 1) if address is None else None
        self._threads_per_worker = threads_per_worker
        self._processes = bool(processes)
        self._cluster = None
        self._client = None
        self._shared: Any = None  # the object scattered (identity is the token) ...
        self._shared_future = None  # ... and its future on the cluster

    def __repr__(self) -> str:
        where = self.address if self.address is not None else f"local, workers={self._local_workers}"
        return f"DaskExecutor({where})"

    @property
    def client(self):
        """The ``distributed.Client`` (connects, or starts the local cluster, on first use)."""
        if self._client is None:
            self._start()
        return self._client

    @property
    def workers(self) -> int:
        """The number of workers: as configured for a local cluster, as connected now for a remote one."""
        if self._local_workers is not None:
            return self._local_workers
        return len(self.client.nthreads())

    def _start(self) -> None:
        distributed = _distributed()
        if self.address is None:
            self._cluster = distributed.LocalCluster(
                n_workers=self._local_workers, threads_per_worker=self._threads_per_worker,
                processes=self._processes, dashboard_address="127.0.0.1:0")  # never a fixed port
            try:
                self._client = distributed.Client(self._cluster)
                if self._processes:
                    _inherit_jax_options(self._client, parent_jax_options())
            except BaseException:
                self._cluster.close()
                self._cluster = None
                raise
            return
        try:
            self._client = distributed.Client(self.address)
        except (OSError, distributed.TimeoutError) as error:
            raise InputError(f"cannot reach a Dask scheduler at {self.address} ({error}); start one with "
                             "`dask scheduler` and workers with `dask worker <address>` (docs/execution.md)",
                             field="executor", value=self.address) from error

    def map(self, function, tasks, *, shared=None, progress=None, return_exceptions=False, order=None,
            on_result=None):
        """See :class:`~shoals.execution.executors.Executor`.  With ``return_exceptions=True`` each lost task's
        slot holds a :class:`WorkerLostError`."""
        tasks = list(tasks)
        start_order = _start_order(order, len(tasks))
        if not tasks:
            return []
        client = self.client
        shared_future = None if shared is None else self._scatter(client, shared)
        prefix = f"{getattr(function, '__name__', type(function).__name__)}-{uuid.uuid4().hex}"
        futures: list = [None] * len(tasks)
        try:
            for index in start_order:
                futures[index] = client.submit(_run, _Job(function, tasks[index]), shared_future,
                                               key=f"{prefix}-{index}")
        except Exception as error:
            client.cancel([future for future in futures if future is not None])
            if isinstance(error, OSError):  # the connection, not the task
                raise
            raise InputError(f"task {index} (function {function!r}) cannot be sent to the Dask workers "
                             f"({type(error).__name__}: {error})", field="function", value=function) from error
        return self._gather(client, futures, progress, return_exceptions, on_result)

    def _scatter(self, client, shared):
        if shared is self._shared and self._shared_future is not None and self._shared_future.status == "finished":
            return self._shared_future
        self._release_shared()
        distributed = _distributed()
        try:
            [future] = client.scatter([shared], broadcast=True, hash=False)
        except (TimeoutError, distributed.TimeoutError) as error:  # the scheduler had no worker to take it
            raise InputError(f"no Dask worker is connected to the scheduler ({error}); start workers with "
                             "`dask worker <scheduler address>`", field="executor", value=self.address) from error
        except OSError:
            raise
        except Exception as error:
            raise InputError(f"shared object cannot be sent to the Dask workers ({type(error).__name__}: {error})",
                             field="shared", value=type(shared).__name__) from error
        self._shared, self._shared_future = shared, future
        return future

    def _release_shared(self) -> None:
        # Dropping the last reference to the future lets the scheduler free the workers' copies.
        self._shared = self._shared_future = None

    def _gather(self, client, futures, progress, return_exceptions, on_result):
        distributed = _distributed()
        total = len(futures)
        index_of = {future.key: index for index, future in enumerate(futures)}
        results: list = [None] * total
        lost: list[int] = []
        reasons: set[str] = set()
        cause: BaseException | None = None  # the first loss, as Dask reported it
        remaining = set(index_of)
        done = 0
        completed = distributed.as_completed(futures, with_results=True, raise_errors=False)
        try:
            for future, result in completed:
                index = index_of[future.key]
                remaining.discard(future.key)
                if future.status == "finished":
                    results[index] = result
                    if on_result is not None:
                        on_result(index, result)
                elif future.status == "error":
                    error = future.exception()
                    error = error.with_traceback(future.traceback())
                    if isinstance(error, distributed.KilledWorker):
                        lost.append(index)
                        reasons.add(f"workers died while running it ({error})")
                        cause = cause or error
                    elif return_exceptions:
                        results[index] = error
                    else:
                        raise _task_error(index, total, error) from error
                else:  # cancelled or lost by the cluster: its input `shared` is gone, or the scheduler
                    lost.append(index)
                    reasons.add(f"the cluster dropped it ({future.status}): every worker holding `shared` "
                                "died, or the scheduler went away")
                    cause = cause or (result if isinstance(result, BaseException) else None)
                done += 1
                if progress is not None:
                    progress(done, total)
        finally:
            if remaining:
                completed.clear()
                client.cancel([futures[index_of[key]] for key in remaining])
        if lost:
            self._release_shared()
            lost.sort()
            message = (f"the Dask cluster lost {len(lost)} of {total} tasks ({'; '.join(sorted(reasons))}): "
                       f"{_format_indices(lost)}")
            cause = cause or RuntimeError(message)
            if not return_exceptions:
                raise WorkerLostError(message, indices=lost, error=cause) from cause
            for index in lost:
                results[index] = WorkerLostError(message, indices=lost, error=cause)
        return results

    def close(self) -> None:
        """Release ``shared``, disconnect, and stop the local cluster if this executor started one (a later
        ``map`` starts again)."""
        self._release_shared()
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

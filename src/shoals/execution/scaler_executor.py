"""ScalerExecutor: fan tasks out to an OpenGRIS Scaler cluster (a scheduler at an address, or a local cluster it
starts), for users who already run a Scaler grid (PyPI ``opengris-scaler``; https://github.com/finos/opengris-scaler).

Keeps the guarantees of :class:`~shoals.execution.executors.Executor`, as
:class:`~shoals.execution.dask_executor.DaskExecutor` does: results in task order, ``shared`` shipped once
(``client.send_object``: stored by the scheduler's object storage, fetched and unpickled once per worker
process, which caches it), :class:`TaskError` naming the task, :class:`WorkerLostError` naming the tasks lost,
``progress`` and ``on_result`` in the caller.  Scaler does not rerun the task of a worker process that died
(it reports ``ProcessorDiedError`` / ``WorkerDiedError``): this executor resubmits such a task up to
``retries`` times, then reports it lost.

``scaler`` is imported when a :class:`ScalerExecutor` is built, so that Shoals imports without it
(``pip install "shoals[scaler]"``).  Knows no finance.  See docs/execution.md.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from shoals.errors import InputError, UnsupportedError
from shoals.execution.executors import (
    WorkerLostError,
    _format_indices,
    _start_order,
    gather_futures,
)

INSTALL_HINT = 'pip install "shoals[scaler]"'
#: Seconds allowed to open a TCP connection to the scheduler before reporting it unreachable (Scaler's client
#: itself retries for about a minute, then cancels every task).
CONNECT_TIMEOUT = 10.0


def _scaler():
    try:
        import scaler
    except ImportError as error:
        raise UnsupportedError(f"the Scaler executor needs the `opengris-scaler` package ({error}); install it "
                               f"with {INSTALL_HINT}") from error
    return scaler


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScalerExecutor:
    """Runs tasks on an OpenGRIS Scaler cluster: the scheduler at ``address`` (``"tcp://host:port"``), or, with no
    address, a local ``scaler.SchedulerClusterCombo`` (scheduler, object storage and ``workers`` worker
    processes, default ``os.cpu_count()``, on a free localhost port) started on the first ``map`` (or the
    first use of :attr:`client`) and stopped by :meth:`close`.  ``close`` disconnects from a remote scheduler
    and leaves its cluster running.

    * ``shared`` is sent once (``client.send_object``); each worker process fetches and unpickles it once and
      reuses it for all its tasks.  The same object (identity) passed to the next ``map`` is not sent again; a
      different one replaces it (``client.clear()`` releases the old one).  Treat it as read-only.
    * Tasks are submitted in ``order`` (``client.submit(function, task, shared)``); the results come back in
      task order.
    * A task whose worker process dies is resubmitted, up to ``retries`` times; beyond that
      :class:`WorkerLostError` names the lost tasks.  Tasks that raise are not rerun.
    * ``function`` and the tasks are pickled with cloudpickle: a module-level function must be importable on
      the workers; lambdas and closures travel by value.

    ``workers`` is the local cluster's size, or, for a remote cluster, the count the caller declares (Scaler's
    client does not report its workers; ``scaler_top`` shows them), 0 when not given.  With no address the
    workers are spawned: a script that builds a ScalerExecutor at import time needs the
    ``if __name__ == "__main__":`` guard.
    """

    name = "scaler"

    def __init__(self, address: str | None = None, *, workers: int | None = None, retries: int = 3):
        _scaler()
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InputError(f"address must be a scheduler address such as tcp://host:2345, got {address!r}",
                             field="address", value=address)
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InputError(f"workers must be a positive integer, got {workers!r}", field="workers", value=workers)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InputError(f"retries must be an integer >= 0, got {retries!r}", field="retries", value=retries)
        self.address = address.strip() if address is not None else None
        self.workers = (workers or os.cpu_count() or 1) if address is None else (workers or 0)
        self.retries = retries
        self._cluster = None
        self._client = None
        self._shared: Any = None  # the object sent (identity is the token) ...
        self._shared_reference = None  # ... and its reference in the scheduler's object storage

    def __repr__(self) -> str:
        where = self.address if self.address is not None else f"local, workers={self.workers}"
        return f"ScalerExecutor({where})"

    @property
    def client(self):
        """The ``scaler.Client`` (connects, or starts the local cluster, on first use)."""
        if self._client is None:
            self._start()
        return self._client

    def _start(self) -> None:
        scaler = _scaler()
        if self.address is None:
            self._cluster = scaler.SchedulerClusterCombo(
                n_workers=self.workers, address=f"tcp://127.0.0.1:{_free_port()}", logging_paths=(os.devnull,),
                logging_level="WARNING")
            try:
                self._client = scaler.Client(address=self._cluster.get_address())
            except BaseException:
                self._cluster.shutdown()
                self._cluster = None
                raise
            return
        host, _, port = self.address.rpartition("//")[2].rpartition(":")
        try:  # Scaler's client would retry for a minute and then cancel the tasks: say it at once
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
        except (OSError, ValueError) as error:
            raise InputError(f"cannot reach a Scaler scheduler at {self.address} ({error}); start one with "
                             "`scaler_scheduler` and workers with `scaler_worker_manager baremetal_native` (Scaler docs) "
                             "(docs/execution.md)", field="executor", value=self.address) from error
        self._client = scaler.Client(address=self.address)

    def map(self, function, tasks, *, shared=None, progress=None, return_exceptions=False, order=None,
            on_result=None):
        """See :class:`~shoals.execution.executors.Executor`.  With ``return_exceptions=True`` each lost task's
        slot holds a :class:`WorkerLostError`."""
        tasks = list(tasks)
        start_order = _start_order(order, len(tasks))
        if not tasks:
            return []
        client = self.client
        reference = None if shared is None else self._send(client, shared)
        futures: dict = {}
        for index in start_order:
            futures[self._submit(client, function, tasks[index], reference, index)] = index
        return self._gather(client, futures, function, tasks, reference, progress, return_exceptions, on_result)

    @staticmethod
    def _submit(client, function, task, reference, index):
        try:
            return client.submit(function, task, reference)
        except Exception as error:
            raise InputError(f"task {index} (function {function!r}) cannot be sent to the Scaler workers "
                             f"({type(error).__name__}: {error})", field="function", value=function) from error

    def _send(self, client, shared):
        if shared is self._shared and self._shared_reference is not None:
            return self._shared_reference
        if self._shared_reference is not None:
            client.clear()  # releases the previous object (no task is running between maps)
        self._shared = self._shared_reference = None
        try:
            reference = client.send_object(shared, name="shoals-shared")
        except Exception as error:
            raise InputError(f"shared object cannot be sent to the Scaler workers ({type(error).__name__}: "
                             f"{error})", field="shared", value=type(shared).__name__) from error
        self._shared, self._shared_reference = shared, reference
        return reference

    def _gather(self, client, futures, function, tasks, reference, progress, return_exceptions, on_result):
        from scaler.utility.exceptions import ProcessorDiedError, WorkerDiedError

        total = len(tasks)
        attempts = [0] * total

        def retry(index):
            attempts[index] += 1
            if attempts[index] <= self.retries:  # run it again, on whichever worker is free
                return self._submit(client, function, tasks[index], reference, index)
            return None

        results, lost, cause = gather_futures(futures, total, progress=progress, return_exceptions=return_exceptions,
                                              on_result=on_result, lost_if=(ProcessorDiedError, WorkerDiedError),
                                              retry=retry)
        if lost:
            message = (f"Scaler workers died running {len(lost)} of {total} tasks, {self.retries + 1} times each "
                       f"({cause}): {_format_indices(lost)}")
            if not return_exceptions:
                raise WorkerLostError(message, indices=lost, error=cause) from cause
            for index in lost:
                results[index] = WorkerLostError(message, indices=lost, error=cause)
        return results

    def close(self) -> None:
        """Release ``shared``, disconnect, and stop the local cluster if this executor started one (a later
        ``map`` starts again)."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        self._shared = self._shared_reference = None
        if client is not None:
            client.disconnect()
        if cluster is not None:
            cluster.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

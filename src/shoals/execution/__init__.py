"""L2 execution: fans work out (chunks, processes, clusters); knows no finance."""

from shoals.execution.chunks import map_chunks
from shoals.execution.dask_executor import DaskExecutor
from shoals.execution.executors import (
    EXECUTOR_SPECS,
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
from shoals.execution.scaler_executor import ScalerExecutor

__all__ = [
    "EXECUTOR_SPECS",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "ScalerExecutor",
    "SerialExecutor",
    "TaskError",
    "ThreadExecutor",
    "WorkerLostError",
    "chunk_by_cost",
    "cost_sorted_order",
    "executor_from_spec",
    "map_chunks",
]

"""Task functions shared by the executor tests (module-level in an importable module, so that spawned
processes and Dask workers can import them: they get the parent's sys.path, which holds tests/)."""

import contextlib
import os
import time

import numpy as np


def numeric_task(task, shared):
    seed, scale = task
    return np.sin(shared["matrix"] * scale).sum(axis=1) + shared["offsets"] * seed


def worker_token(task, shared):
    return os.getpid(), None if shared is None else id(shared)


def sleepy_square(task, shared):
    index, seconds = task
    time.sleep(seconds)
    return index * index


def fail_on_three(task, shared):
    if task == 3:
        raise ValueError(f"bad task {task}")
    return task + 1


class CountingShared:
    """Appends a line to ``path`` each time it is unpickled: counts the copies the workers receive."""

    def __init__(self, path, payload):
        self.path = str(path)
        self.payload = payload

    def __reduce__(self):
        return _unpickle_counting, (self.path, self.payload)


def _unpickle_counting(path, payload):
    with open(path, "a") as log:
        log.write(f"{os.getpid()}\n")
    return CountingShared(path, payload)


def worker_cores(task, shared):
    """(pid, the CPUs this worker may run on, the threads of its XLA CPU runtime once JAX has started)."""
    import glob

    import jax

    jax.numpy.zeros(1).block_until_ready()
    names = [open(f"{folder}/comm").read() for folder in glob.glob("/proc/self/task/*")]
    time.sleep(0.05)
    return os.getpid(), tuple(sorted(os.sched_getaffinity(0))), sum("XLAEigen" in name for name in names)


def worker_jax_cache(task, shared):
    """(pid, the worker's persistent compilation cache folder and minimum compile time)."""
    import jax

    return os.getpid(), jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs


@contextlib.contextmanager
def parent_cache(folder):
    """This process with a persistent compilation cache in ``folder`` (minimum compile time 0) for the block,
    its options restored after; compile nothing inside, so that this process's own cache is not touched."""
    import jax

    from shoals.execution.executors import INHERITED_JAX_OPTIONS

    before = {name: getattr(jax.config, name) for name in INHERITED_JAX_OPTIONS}
    try:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)

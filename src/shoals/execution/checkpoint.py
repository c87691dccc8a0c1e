"""Checkpoints: the results of finished tasks kept in a folder as they complete, so that a run interrupted
(Ctrl-C, a crash, a killed process) and started again with ``resume=True`` recomputes only the missing tasks.

The folder holds ``manifest.json`` (the run's ``inputs``: a JSON-ready dict of file digests and options) and
one file per finished task, ``task-<index>.pkl``, with the task's key and its result.  Every file is written to
a temporary name and moved into place with :func:`os.replace` (atomic on POSIX and Windows), so an interrupt
leaves whole files only.  A resumed run must have the same inputs (else :class:`InputError` naming the first
field that differs) and keeps a stored result only where the task at that index has the same key (e.g. the
same trades), so no task is lost or counted twice.

The results are pickled: resume only from folders this installation wrote (unpickling runs code).  Knows no
finance.  See docs/execution.md.
Validation: tests/execution/test_checkpoint.py, tests/unit/test_cli_run.py (Ctrl-C then ``--resume``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoals._files import write_atomically
from shoals.errors import InputError
from shoals.execution.executors import Executor, _start_order

MANIFEST = "manifest.json"
FORMAT = 1
_TASK_FILE = re.compile(r"task-(\d+)\.pkl")


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's bytes: how a manifest records an input file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def object_digest(value) -> str:
    """SHA-256 (hex) of ``pickle.dumps(value)``: records an in-memory input (equal values pickle alike)."""
    return hashlib.sha256(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """An open checkpoint folder (see :func:`open_checkpoint`)."""

    folder: Path
    inputs: dict

    def _path(self, index: int) -> Path:
        return self.folder / f"task-{index:06d}.pkl"

    def save(self, index: int, key: str, result: Any) -> None:
        """Store the ``result`` of task ``index`` (identified by ``key``), atomically."""
        write_atomically(self._path(index), pickle.dumps((key, result), protocol=pickle.HIGHEST_PROTOCOL))

    def load(self, keys: Sequence[str]) -> dict[int, Any]:
        """The stored results by task index, for the tasks whose stored key equals ``keys[index]``; files
        that do not match, or cannot be read, are left out (their tasks are recomputed)."""
        found: dict[int, Any] = {}
        for path in self.folder.iterdir():
            match = _TASK_FILE.fullmatch(path.name)
            if match is None or int(match.group(1)) >= len(keys):
                continue
            index = int(match.group(1))
            try:
                key, result = pickle.loads(path.read_bytes())
            except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, TypeError, ValueError):
                key = result = None  # a file this version cannot read: its task is recomputed
            if key == keys[index]:
                found[index] = result
        return found


def open_checkpoint(folder, *, inputs: dict, resume: bool = False) -> Checkpoint:
    """Open the checkpoint in ``folder`` for a run with ``inputs`` (JSON-ready: digests from
    :func:`file_digest` / :func:`object_digest`, options).

    ``resume=False`` starts afresh: the folder is created, its task files (and stray temporary files) are
    removed and the manifest is written.  ``resume=True`` keeps the task files and requires the folder's
    manifest to record the same ``inputs``: otherwise :class:`InputError` names the first field that differs
    (``field=`` that name), or ``field="resume"`` when the folder holds no checkpoint.
    """
    folder = Path(folder)
    inputs = json.loads(json.dumps(inputs))  # as stored: tuples become lists
    manifest = folder / MANIFEST
    if resume:
        if not manifest.is_file():
            raise InputError(f"no checkpoint to resume in {folder} ({MANIFEST} missing): give the --out folder of "
                             "an earlier run, or run without --resume", field="resume", value=str(folder))
        recorded = json.loads(manifest.read_text())
        if recorded.get("format") != FORMAT:
            raise InputError(f"checkpoint in {folder} has format {recorded.get('format')!r}, this version writes "
                             f"{FORMAT}: run without --resume", field="resume", value=str(folder))
        stored = recorded.get("inputs", {})
        for name in sorted(set(stored) | set(inputs), key=lambda name: (name not in inputs, name)):
            if stored.get(name) != inputs.get(name):
                raise InputError(f"cannot resume from {folder}: its run had {name} = {stored.get(name)!r}, this "
                                 f"one has {inputs.get(name)!r}; resume with the inputs and options of that run, "
                                 "or run afresh without --resume", field=name, value=inputs.get(name))
        return Checkpoint(folder=folder, inputs=inputs)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if _TASK_FILE.fullmatch(path.name) or (path.name.startswith(".task-") and path.name.endswith(".tmp")):
            path.unlink()
    write_atomically(manifest, json.dumps({"format": FORMAT, "inputs": inputs}, indent=1).encode())
    return Checkpoint(folder=folder, inputs=inputs)


def checkpointed_map(executor: Executor, function, tasks, *, keys: Sequence[str], checkpoint: Checkpoint,
                     shared=None, order=None, progress=None) -> tuple[list, int]:
    """``executor.map(function, tasks, ...)`` that takes the results stored in ``checkpoint`` and computes only
    the other tasks, storing each as it completes (``on_result``).  Returns ``(results in task order, number
    of results taken from the checkpoint)``.

    ``keys[i]`` identifies task ``i`` (its content, e.g. the trades it prices): a stored result counts only
    under the same key.  ``order`` (over all tasks) is kept for the tasks computed; ``progress(done, total)``
    counts the stored tasks as done.  An interrupted call keeps every result stored so far.
    """
    tasks = list(tasks)
    if len(keys) != len(tasks):
        raise InputError(f"keys must name every task: {len(keys)} keys for {len(tasks)} tasks", field="keys",
                         value=len(keys))
    start_order = _start_order(order, len(tasks))
    results: list = [None] * len(tasks)
    stored = checkpoint.load(keys)
    for index, result in stored.items():
        results[index] = result
    missing = sorted(set(range(len(tasks))) - set(stored))  # the tasks to compute, in task order
    slot_of = {index: slot for slot, index in enumerate(missing)}
    report = None if progress is None else (lambda done, total: progress(done + len(stored), len(tasks)))
    computed = executor.map(function, [tasks[index] for index in missing], shared=shared,
                            order=[slot_of[index] for index in start_order if index in slot_of], progress=report,
                            on_result=lambda slot, result: checkpoint.save(missing[slot], keys[missing[slot]], result))
    for index, result in zip(missing, computed):
        results[index] = result
    if progress is not None and not missing:
        progress(len(tasks), len(tasks))
    return results, len(stored)

"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_time(function, repeats: int, *, warm_up: bool = True) -> float:
    """Median wall time of ``repeats`` calls of ``function`` (after one untimed call when ``warm_up``)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def seed_mc_baseline(script: Path, paths: int, repeats: int) -> dict:
    """Run ``seed_mc_var.py mc`` (the seed's 4M-path European, sequential and with a process pool on every
    core) and return its median wall times ``seq_s``, ``par_s`` and its ``price``."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "baseline.json"
        subprocess.run([sys.executable, str(script), "mc", "--paths", str(paths), "--repeat", str(repeats),
                        "--workers", str(os.cpu_count()), "--json", str(report)], check=True, capture_output=True)
        base = json.loads(report.read_text())
    return {"seq_s": statistics.median(r["wall_s"] for r in base["seq"]),
            "par_s": statistics.median(r["wall_s"] for r in base["par"]), "price": base["seq"][0]["price"]}


def paired_median_times(functions, repeats: int) -> list[float]:
    """Median wall times of several ``functions`` called in turn, ``repeats`` rounds after one untimed
    round: interleaving exposes them to the same load, so their ratio is fair on shared cores."""
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, spent in zip(functions, times):
            started = time.perf_counter()
            function()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]

"""The book pipeline on a local Dask cluster against serial: ``run_book(..., vega=False)`` on a book of ``--trades``
trades (the embedded 150-trade example mix, replicated with unique ids; default 5,000) priced serially and on
``dask-local:--workers`` (default 2), in one process, on this machine.

Prints:

* wall time of the pricing stage (the executor's part: chunks out, results back) and of the whole run, serial
  and on Dask, and their ratio (serial / Dask, so > 1 means Dask is faster); the serial run's CPU time (XLA
  already spreads one process over the cores);
* the tasks (chunks) and their compute time on the workers (Dask's task stream), the parallel efficiency
  (compute / (wall x workers)) and the overhead per task: the pricing wall x workers minus the compute, per
  task (scheduling, result transfer, load imbalance), and the wall time per empty task on the warm cluster
  (``--empty`` no-op tasks with the market as ``shared``: the scheduler's round trip alone);
* shipping the market: its pickled size, the CPU time to pickle it in the client and to unpickle it on a worker,
  the wall time of the scatter, and the number of scatters during the run and of copies on the workers
  (one transfer per worker, never one per task).

The first run of each side compiles its PDE shapes (serial in this process, Dask in each worker): with
``--repeats 2`` a second, warm run of each side is timed too.

Run: ``python benchmarks/bench_dask.py [--trades 5000] [--workers 2] [--repeats 1] [--empty 200] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path


def replicated_book(trades: int, folder: Path) -> Path:
    """The embedded book's rows repeated until ``trades`` rows, ids made unique (``<id>_<copy>``)."""
    import pandas as pd

    from shoals.data import path

    seed = pd.read_csv(path("seed_book.csv"))
    copies = []
    for copy in range(math.ceil(trades / len(seed))):
        copies.append(seed.assign(id=seed["id"] + f"_{copy}"))
    book = folder / f"book_{trades}.csv"
    pd.concat(copies, ignore_index=True).head(trades).to_csv(book, index=False)
    return book


def noop(task, shared):
    """An empty task (the scheduler's round trip and the result's return alone)."""
    return task


def timed_run(book: Path, executor) -> tuple[float, float, object]:
    """Wall seconds, this process's CPU seconds (all its threads: XLA's included) and the result of one run."""
    from shoals.risk.run import run_book

    started, cpu = time.perf_counter(), time.process_time()
    result = run_book(book=book, executor=executor, vega=False)
    return time.perf_counter() - started, time.process_time() - cpu, result


def shipping(executor, shared) -> dict:
    """Size and CPU cost of shipping ``shared`` (the SharedMarket), and one scatter's wall time."""
    started = time.process_time()
    payload = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_cpu = time.process_time() - started
    started = time.process_time()
    pickle.loads(payload)
    unpickle_cpu = time.process_time() - started
    client = executor.client
    started = time.perf_counter()
    [future] = client.scatter([shared], broadcast=True, hash=False)
    scatter_wall = time.perf_counter() - started
    copies = len(client.who_has([future])[future.key])
    del future
    return {"bytes": len(payload), "pickle_cpu_s": pickle_cpu, "unpickle_cpu_s_per_worker": unpickle_cpu,
            "scatter_wall_s": scatter_wall, "copies_after_one_scatter": copies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="1: cold runs only; 2: also a warm run each")
    parser.add_argument("--empty", type=int, default=200, help="empty tasks for the per-task overhead")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()

    import distributed

    import shoals  # noqa: F401  (float64)
    from shoals.execution import DaskExecutor, SerialExecutor

    figures: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                     "trades": arguments.trades, "workers": arguments.workers}
    with tempfile.TemporaryDirectory() as folder:
        book = replicated_book(arguments.trades, Path(folder))
        serial_runs = []
        for _ in range(arguments.repeats):
            wall, cpu, result = timed_run(book, SerialExecutor())
            serial_runs.append({"wall_s": wall, "cpu_s": cpu, "pricing_s": result.timings["pricing"]})
            print(f"serial:        run {wall:8.2f} s   pricing {result.timings['pricing']:8.2f} s   CPU {cpu:8.2f} s "
                  f"({cpu / wall:.2f} cores: XLA's own threads)", flush=True)
        serial_trades = result.trades
        with DaskExecutor(workers=arguments.workers) as executor:
            client = executor.client
            client.wait_for_workers(arguments.workers, timeout=300)
            scatter = client.scatter
            scatters = []  # (the object, client CPU seconds, wall seconds) per scatter during the runs

            def counted_scatter(data, **kwargs):
                cpu, started = time.process_time(), time.perf_counter()
                futures = scatter(data, **kwargs)
                scatters.append((data[0], time.process_time() - cpu, time.perf_counter() - started))
                return futures

            client.scatter = counted_scatter
            dask_runs = []
            for _ in range(arguments.repeats):
                with distributed.get_task_stream(client) as stream:
                    wall, _, result = timed_run(book, executor)
                compute = [sum(stop - start for action, start, stop in
                               ((s["action"], s["start"], s["stop"]) for s in record["startstops"])
                               if action == "compute")
                           for record in stream.data if record["key"].startswith("price_chunk")]
                pricing = result.timings["pricing"]
                dask_runs.append({"wall_s": wall, "pricing_s": pricing, "tasks": len(compute),
                                  "compute_s": sum(compute), "largest_task_s": max(compute),
                                  "efficiency": sum(compute) / (pricing * arguments.workers),
                                  "overhead_s_per_task": (pricing * arguments.workers - sum(compute)) / len(compute)})
                print(f"dask-local:{arguments.workers}:  run {wall:8.2f} s   pricing {pricing:8.2f} s   "
                      f"{len(compute)} tasks, compute {sum(compute):.2f} s (largest {max(compute):.2f} s), "
                      f"efficiency {dask_runs[-1]['efficiency']:.0%}, overhead "
                      f"{1e3 * dask_runs[-1]['overhead_s_per_task']:.0f} ms/task (incl. load imbalance)", flush=True)
            assert result.trades.equals(serial_trades), "Dask and serial trades differ"
            client.scatter = scatter
            market = scatters[-1][0]  # the SharedMarket of the last run, still on the workers
            executor.map(noop, range(arguments.empty), shared=market)  # warm-up; `market` is not sent again
            started = time.perf_counter()
            executor.map(noop, range(arguments.empty), shared=market)
            empty = (time.perf_counter() - started) / arguments.empty
            figures["shipping"] = shipping(executor, market)
            figures["shipping"].update(scatters_per_run=len(scatters) / arguments.repeats,
                                       scatter_client_cpu_s_in_runs=[cpu for _, cpu, _ in scatters],
                                       scatter_wall_s_in_runs=[wall for _, _, wall in scatters])
    figures.update(serial=serial_runs, dask=dask_runs, empty_task_wall_s=empty,
                   ratio_pricing=[s["pricing_s"] / d["pricing_s"] for s, d in zip(serial_runs, dask_runs)],
                   ratio_run=[s["wall_s"] / d["wall_s"] for s, d in zip(serial_runs, dask_runs)])
    ship = figures["shipping"]
    print(f"ratio serial / dask: pricing {', '.join(f'{r:.2f}' for r in figures['ratio_pricing'])}, "
          f"run {', '.join(f'{r:.2f}' for r in figures['ratio_run'])}  (identical trades tables)")
    print(f"empty task: {1e3 * empty:.1f} ms wall each ({arguments.empty} tasks, {arguments.workers} workers)")
    print(f"market: {ship['bytes'] / 1e6:.2f} MB pickled; pickle {1e3 * ship['pickle_cpu_s']:.1f} ms CPU, unpickle "
          f"{1e3 * ship['unpickle_cpu_s_per_worker']:.1f} ms CPU per worker; one scatter "
          f"{1e3 * ship['scatter_wall_s']:.0f} ms wall -> {ship['copies_after_one_scatter']} copies (one per worker); "
          f"scatters per run: {ship['scatters_per_run']:g}, client CPU in them "
          f"{', '.join(f'{1e3 * cpu:.0f}' for cpu in ship['scatter_client_cpu_s_in_runs'])} ms")
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

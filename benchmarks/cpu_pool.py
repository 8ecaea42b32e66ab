"""XLA:CPU's intra-op pool size (``NPROC``) against a sweep's time, on a quiet and a loaded machine.

The drivers (``jaxflow.sweep``, ``jaxflow reproduce``, the CLI) size XLA:CPU's intra-op thread
pool before the backend starts (``jaxflow._platform.guard_cpu_thread_pool``): enough threads that
batched LAPACK calls blocking pool threads cannot park all of them (``docs/platform.md``), and
no more, because every extra thread splits a batched decomposition into more tasks than there are
cores. This measures the choice: one sweep (an MLP grid of width 128 at depths 2, 8 and 24, tanh
and relu × xavier and he × 4 seeds, every J_l and P_l spectrum) in a fresh process per run, with
``NPROC`` set to each candidate, alternating, ``--repeats`` times, first on the quiet machine and
then with as many busy-looping processes as there are cores beside it ("load"). Whole-process
seconds (the compilation cache off) are reported, and each pool's ratio to the fastest.
Results go to ``benchmarks/results/cpu-pool-<machine>-<date>.{json,md}``.

    python benchmarks/cpu_pool.py                     # candidates: the default rule and others
    python benchmarks/cpu_pool.py --nproc 2 3 8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

sys.path.insert(0, HERE)

from _results import claim_stem, write_report  # noqa: E402

CHILD = r"""
import time
start = time.perf_counter()
import jaxflow as jf
grid = jf.Grid(depth=[2, 8, 24], width=128, activation=["tanh", "relu"], init=["xavier", "he"],
               seeds=4, batch=4)
ds = jf.sweep(grid, quiet=True)
float(ds.P_sv_max.sum())
print(time.perf_counter() - start)
"""


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def one_run(nproc: int) -> float:
    env = dict(os.environ, NPROC=str(nproc), JAXFLOW_CACHE_DIR="off")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    n = cores()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nproc",
        type=int,
        nargs="+",
        default=sorted({n, n + 1, 2 * n, max(8, 4 * n)}),
        help="pool sizes to compare (default: cores, cores + 1, 2 × cores, max(8, 4 × cores))",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--machine", default="dev-2core")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    stem, date = claim_stem(args.out, "cpu-pool", args.machine)
    rows = []
    for load in (0, n):
        busy = []
        try:  # started inside, so that a failed start still stops those already running
            for _ in range(load):
                busy.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
            times = {p: [] for p in args.nproc}
            for _ in range(args.repeats):
                for p in args.nproc:  # alternating, so drift in the machine hits every pool
                    times[p].append(round(one_run(p), 2))
                    print(f"load {load} NPROC {p}: {times[p][-1]} s", file=sys.stderr, flush=True)
        finally:
            for b in busy:
                b.kill()
                b.wait()
        best = min(statistics.median(t) for t in times.values())
        for p, t in times.items():
            rows.append(
                dict(
                    load=load,
                    nproc=p,
                    seconds=t,
                    median=round(statistics.median(t), 2),
                    ratio_to_best=round(statistics.median(t) / best, 2),
                )
            )
    title = (
        f"XLA:CPU pool size (NPROC) and a sweep's whole-process time, {n} cores "
        f"({args.machine}, {date}); load = busy-looping processes beside it"
    )
    table = "\n".join(
        [
            title,
            "",
            "| load | NPROC | seconds (each run) | median | × fastest at this load |",
            "|---|---|---|---|---|",
            *(
                f"| {r['load']} | {r['nproc']} | {', '.join(map(str, r['seconds']))} | "
                f"{r['median']} | {r['ratio_to_best']} |"
                for r in rows
            ),
        ]
    )
    record = {"title": title, "cores": n, "machine": args.machine, "date": date, "rows": rows}
    write_report(stem, record, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

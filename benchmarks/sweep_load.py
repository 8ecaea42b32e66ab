"""A sweep 10× the reference grid: peak memory against the budget it planned with, and progress.

The reference sweep (``jaxflow.sweeps.reference.REFERENCE``) is an MLP of width 64 at depths
5–40; this load test runs the same 72 networks (relu/tanh/sigmoid × xavier/he/orthogonal × 8
seeds, 4 inputs each, every J_l and P_l spectrum summarised) at width 128 and depths to 200: ten
times the reference's depth × width, about 40 times its work (an SVD costs ∝ width³). Each case
runs ``jaxflow.sweep`` into a fresh store, in a fresh child process that reports, from
``/proc/self/status``, its peak resident memory (``VmHWM``) after importing jaxflow (``baseline``)
and after the sweep (``peak``), with the budget and the chunk size the sweep planned with
(``memory_budget``, default ``jaxflow.sweeps.run.CPU_MEMORY_BUDGET`` on a CPU). The child prints a
progress line to stderr as each chunk is written (chunk, seconds, resident memory); the parent
passes them on and counts them. A case passes when the whole process's peak stays within the
budget (the budget bounds a chunk's working memory; the
process's own size — Python, jax, the compiler, ~300 MB — is in the peak too, and is reported as
``added`` = peak − baseline beside it). Results go to
``benchmarks/results/sweep-load-<machine>-<date>-<scale>.{json,md}``.

    python benchmarks/sweep_load.py                      # full scale, the default budget
    python benchmarks/sweep_load.py --scale quick        # seconds: the same code on a small grid
    python benchmarks/sweep_load.py --depth 5 10 20 40 80 --budget-mb 0   # a scale of your own

``--budget-mb 0`` is the sweep's default budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _results  # noqa: E402

SCALES = {
    "full": dict(depth=(5, 10, 20, 40, 80, 120, 160, 200), width=128, seeds=8),
    "quick": dict(depth=(2, 4, 8), width=16, seeds=2),
}
"""Depths, width and seeds per scale; activations, inits and 4 inputs per seed as the reference."""

CHILD = r"""
import json, os, sys, time

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

grid_json, budget, store = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import jaxflow as jf
from jaxflow.sweeps import compute, run

grid = jf.Grid.from_dict(json.loads(grid_json))
baseline = rss("VmHWM")
start = time.perf_counter()

def progress(index, total):
    print(f"chunk {index + 1}/{total} written, {time.perf_counter() - start:.0f} s, "
          f"RSS {rss('VmRSS'):.0f} MB", file=sys.stderr, flush=True)

ds = jf.sweep(grid, store=store, quiet=True, memory_budget=budget or None, callback=progress)
seconds = time.perf_counter() - start
devices = run.resolve_devices(None)
planned = budget or run.default_memory_budget(devices[0]) * len(devices)
per_config = compute.bytes_per_config(compute.spec_of(grid))
last = ds.P_sv_max.where(ds.layer == ds.depth).max("layer")
import numpy as np
print(json.dumps({
    "memory_budget_mb": round(planned / 2**20, 1),
    "chunk_size": int(ds.attrs["chunk_size"]),
    "num_chunks": int(ds.attrs["num_chunks"]),
    "estimate_per_chunk_mb": round(int(ds.attrs["chunk_size"]) * per_config / 2**20, 1),
    "baseline_mb": round(baseline, 1),
    "peak_mb": round(rss("VmHWM"), 1),
    "seconds": round(seconds, 1),
    "compilations": int(ds.attrs["compilations"]),
    "checksum": float(np.log(last.values.astype(np.float64)).sum()),
    "nproc": os.environ.get("NPROC"),
}))
"""


def grid_dict(depth, width, seeds) -> dict:
    """The load grid: the reference's networks at these depths, width and seeds."""
    from jaxflow.sweeps.reference import REFERENCE

    return dict(
        REFERENCE,
        depth=list(depth),
        width=width,
        seeds=seeds,
        activation=list(REFERENCE["activation"]),
        init=list(REFERENCE["init"]),
        metrics=["J_spectrum", "P_spectrum"],
    )


def run_case(grid: dict, budget_mb: float, timeout: float) -> dict:
    """One sweep in a fresh process: its measurement, with the progress lines it printed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps(grid),
                str(int(budget_mb * 2**20)),
                os.path.join(folder, "load.zarr"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        progress = []
        try:
            for line in child.stderr:  # passed on as it comes: the sweep shows its progress
                sys.stderr.write(line)
                sys.stderr.flush()
                if line.startswith("chunk "):
                    progress.append(line.strip())
            out = child.stdout.read()
            status = child.wait(timeout=timeout)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if status != 0:
        raise RuntimeError(f"the sweep failed (exit status {status}): {out}")
    result = json.loads(out.strip().splitlines()[-1])
    result["progress_lines"] = len(progress)
    result["added_mb"] = round(result["peak_mb"] - result["baseline_mb"], 1)
    result["within_budget"] = result["peak_mb"] <= result["memory_budget_mb"]
    return result


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--depth", type=int, nargs="+", help="depths (default: the scale's)")
    parser.add_argument("--width", type=int, help="width (default: the scale's)")
    parser.add_argument("--seeds", type=int, help="seeds (default: the scale's)")
    parser.add_argument(
        "--budget-mb",
        type=float,
        nargs="+",
        default=[0],
        help="memory budgets in MiB; 0 is the sweep's default (the default)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    parser.add_argument("--machine", default="dev-2core")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    sizes = dict(SCALES[args.scale])
    for key in ("depth", "width", "seeds"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    grid = grid_dict(**sizes)
    label = (
        "full"
        if sizes == SCALES["full"]
        else (
            args.scale
            if sizes == SCALES[args.scale]
            else f"depth{max(sizes['depth'])}-width{sizes['width']}-seeds{sizes['seeds']}"
        )
    )
    stem, date = _results.claim_stem(args.out, "sweep-load", args.machine, label)
    cases = []
    for budget in args.budget_mb:
        load = load_average()
        started = time.perf_counter()
        case = run_case(grid, budget, args.timeout)
        case.update(
            budget_arg_mb=budget,
            process_seconds=round(time.perf_counter() - started, 1),
            load_before=load,
            load_after=load_average(),
        )
        cases.append(case)
        print(json.dumps(case), flush=True)
    networks = len(grid["activation"]) * len(grid["init"]) * grid["seeds"]
    title = (
        f"jaxflow.sweep under load: {networks} MLPs (relu/tanh/sigmoid × xavier/he/orthogonal × "
        f"{grid['seeds']} seeds, 4 inputs each), width {grid['width']}, depths "
        f"{', '.join(map(str, grid['depth']))}; J_spectrum + P_spectrum; scale {label} "
        f"({args.machine}, {date})"
    )
    rows = [
        f"| {c['memory_budget_mb']:.0f} | {c['num_chunks']} × {c['chunk_size']} | "
        f"{c['estimate_per_chunk_mb']} | {c['baseline_mb']:.0f} | {c['peak_mb']:.0f} | "
        f"{c['added_mb']:.0f} | "
        f"{'yes' if c['within_budget'] else '**no**'} | {c['progress_lines']} | "
        f"{c['seconds']} | {c['load_before']} |"
        for c in cases
    ]
    table = "\n".join(
        [
            title,
            "",
            "| budget (MB) | chunks × size | estimate per chunk (MB) | baseline (MB) | "
            "peak RSS (MB) | added (MB) | within budget | progress lines | sweep seconds | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    report = {"title": title, "grid": grid, "machine": args.machine, "date": date, "cases": cases}
    _results.write_report(stem, report, table)
    print(table)
    return 0 if all(c["within_budget"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())

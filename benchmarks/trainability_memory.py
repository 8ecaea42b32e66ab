"""Peak memory of ``jaxflow.experiments.trainability`` as the grid grows, against the budget.

The issue asks that training a grid stay within the sweep's memory budget however many
configurations it has: the engine sizes its chunks by ``bytes_per_config`` (an estimate) and the
budget (default ``jaxflow.sweeps.run.CPU_MEMORY_BUDGET``, 2 GiB, on a CPU), so past one chunk's
worth of configurations the peak should stop growing. Each case trains the benchmark's full-scale
networks (``workloads.TRAINABILITY["full"]``: tanh, depths 4–32, width 64, six σ_w²) with more
seeds, for ``--steps`` SGD steps (memory does not grow with the steps: only the recorded curves
do), in a fresh child process that reports its peak resident memory (``VmHWM``, as
:func:`protocol.peak_rss_mb` reads it) after importing jaxflow and loading the digits
(``baseline``) and after the call (``peak``); ``peak − baseline`` is what training added,
compilation included. Results go to
``benchmarks/results/trainability-memory-<machine>-<date>.{json,md}``.

    python benchmarks/trainability_memory.py [--seeds 2 16 48] [--budget-mb 0 256] [--steps 20]

``--budget-mb 0`` is the engine's default budget. Needs scikit-learn (the digits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _results  # noqa: E402

CHILD = r"""
import json, sys, time

def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

seeds, steps, budget_mb = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
import jaxflow as jf
import jaxflow.experiments
from jaxflow.data import digits
from jaxflow.sweeps import run, train
import workloads

spec = workloads.get_spec("trainability", "full")
data = digits(seed=spec.data_seed, test_fraction=spec.test_fraction)
grid = jf.Grid(depth=spec.depths, activation=(spec.activation,),
               init=tuple((float(w), spec.sigma_b2) for w in spec.sigma_w2),
               width=spec.width, seeds=seeds)
training = jf.Training(steps=steps, learning_rate=spec.learning_rate,
                       batch_size=spec.batch_size, record_every=steps, eval_size=spec.eval_size)
budget = int(budget_mb * 2**20) if budget_mb > 0 else run.CPU_MEMORY_BUDGET
baseline = hwm()
start = time.perf_counter()
ds = jaxflow.experiments.trainability(grid, data, training, memory_budget=budget, progress=False)
seconds = time.perf_counter() - start
per_config = train.bytes_per_config(train.spec_of(grid, data, training)._replace(num_classes=10))
print(json.dumps({
    "configs": len(grid.depth) * len(grid.init) * seeds, "seeds": seeds, "steps": steps,
    "budget_mb": round(budget / 2**20, 1), "baseline_mb": round(baseline, 1),
    "peak_mb": round(hwm(), 1), "seconds": round(seconds, 2),
    "chunk_size": int(ds.attrs["chunk_size"]), "num_chunks": int(ds.attrs["num_chunks"]),
    "estimate_per_config_mb": round(per_config / 2**20, 3),
    "estimate_per_chunk_mb": round(per_config * int(ds.attrs["chunk_size"]) / 2**20, 1),
    "compilations": int(ds.attrs["compilations"]),
}))
"""


def _run(seeds, steps, budget_mb):
    path = os.pathsep.join(p for p in (ROOT, HERE, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # as protocol.use_jax_platform does
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(seeds), str(steps), str(budget_mb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 16, 48])
    parser.add_argument("--budget-mb", type=float, nargs="+", default=[0.0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--machine", default="dev-2core")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    stem, date = _results.claim_stem(args.out, "trainability-memory", args.machine)
    rows = []
    for budget_mb in args.budget_mb:
        for seeds in args.seeds:
            load = os.getloadavg()
            rows.append({**_run(seeds, args.steps, budget_mb), "load_before": load})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = {
        "meta": {
            "date": date,
            "machine": args.machine,
            "python": sys.version.split()[0],
            "workload": "trainability (full-scale networks, more seeds)",
        },  # fmt: skip
        "rows": rows,
    }
    lines = [
        f"jaxflow.experiments.trainability peak memory as the grid grows: tanh, depths 4–32, "
        f"width 64, six σ_w², {args.steps} SGD steps ({args.machine}, {date})",
        "",
        "| configurations | budget (MB) | chunks × size | estimate per chunk (MB) "
        "| peak RSS (MB) | baseline (MB) | added by training (MB) | seconds | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['configs']} | {r['budget_mb']:.0f} | {r['num_chunks']} × {r['chunk_size']} | "
            f"{r['estimate_per_chunk_mb']:.0f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
            f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['seconds']:.1f} | "
            f"{r['load_before'][0]:.1f} |"
        )
    _results.write_report(stem, report, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``jaxflow.sweep`` on the spectra workload's grid against torch.func, whole processes, A B A B.

The runner's spectra comparison (``run.py``) holds every implementation to the same NumPy-drawn
weights, which ``jaxflow.sweep`` cannot read: it draws its own from each seed. This script times
the sweep engine itself on the same grid (``python -m jaxflow.sweeps.reference``: width 64,
depths 5/10/20/40, relu/tanh/sigmoid, xavier/he/orthogonal, 8 seeds, 4 inputs, the singular
values of every J_l and P_l) against ``spectra_torch_func.py`` on the same machine, A B A B ….
Same sizes, same decompositions, different random weights, so the checksums are not compared;
each side's own checksum is recorded (the sweep's must not change between rounds).

Usage: ``python benchmarks/sweep_engine.py [--repeats 5] [--torch-python PY] [--machine NAME]
[--out benchmarks/results]``; writes ``sweep-engine-<machine>-<date>.json``, never overwriting.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _timed(command, env):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--python", default=sys.executable, help="interpreter with jaxflow")
    p.add_argument("--torch-python", default=sys.executable, help="interpreter with torch")
    p.add_argument("--machine", default=os.uname().nodename)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give at least 1")
    env = dict(os.environ, PYTHONPATH=ROOT)
    sides = {
        "jaxflow.sweep": [args.python, "-m", "jaxflow.sweeps.reference"],
        "torch-func": [args.torch_python, os.path.join(HERE, "spectra_torch_func.py")],
    }
    rounds = {name: [] for name in sides}
    checksums = {name: set() for name in sides}
    for r in range(args.repeats + 1):  # round 0 warms the file caches and is not counted
        for name, command in sides.items():
            wall, stdout = _timed(command, env)
            if name == "jaxflow.sweep":
                checksums[name].add(json.loads(stdout.strip().splitlines()[-1])["checksum"])
            else:
                line = next(x for x in stdout.splitlines() if x.startswith("JAXFLOW_BENCH_RESULT "))
                record = json.loads(line.split(" ", 1)[1])
                checksums[name].add(record["checksums"]["log_sigma_max"])
            if r:
                rounds[name].append(wall)
            print(f"round {r}/{args.repeats} {name}: {wall:.2f} s", file=sys.stderr, flush=True)
    if len(checksums["jaxflow.sweep"]) != 1:
        raise SystemExit(f"the sweep's checksum changed between rounds: {checksums}")
    ratios = [t / j for t, j in zip(rounds["torch-func"], rounds["jaxflow.sweep"])]
    result = {
        "machine": args.machine,
        "date": datetime.date.today().isoformat(),
        "load_average_end": os.getloadavg(),
        "whole_process_s": {
            n: {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": v}
            for n, v in rounds.items()
        },
        "torch_func_over_sweep": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        },
        "checksums": {n: sorted(v) for n, v in checksums.items()},
    }
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, HERE)
    import _results

    path = _results.fresh_stem(args.out, f"sweep-engine-{args.machine}", result["date"]) + ".json"
    _results.write_new({path: json.dumps(result, indent=1)})
    median = result["torch_func_over_sweep"]["median"]
    print(
        f"jaxflow.sweep {statistics.median(rounds['jaxflow.sweep']):.2f} s, torch-func "
        f"{statistics.median(rounds['torch-func']):.2f} s whole-process (medians): torch-func / "
        f"sweep = {median:.2f} (target ≥ 2) — {'met' if median >= 2 else 'NOT met'}; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

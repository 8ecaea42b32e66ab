"""Values-only SVDs of a batch of float32 n×n matrices: LAPACK against the one-sided Jacobi SVD.

The sweep engine spends most of its run time in values-only SVDs of small matrices, one batched
call per layer inside its scan (``jaxflow/sweeps/compute.py``). This times, at n ∈ {32, 64, 128,
256}, on the default device, four ways of computing the same singular values:

* ``lapack-scan``: ``jnp.linalg.svd(compute_uv=False)`` on ``batch`` matrices per step of a
  ``lax.scan`` over ``steps`` steps — what the sweep does today;
* ``lapack-chunk``: the same matrices in one batched call outside any scan (what computing them
  per chunk after the scan would do; jaxlib may split a large batch over XLA:CPU's pool);
* ``jacobi-scan`` and ``jacobi-chunk``: :func:`jaxflow.jacobi_singular_values` the same two ways.

XLA:CPU's thread pool is sized as ``jaxflow.sweep`` sizes it (``NPROC``, unless set).
Matrices are Gaussian with entries N(0, 1/n) (a J_l at initialisation). Methods are timed one
call each in turn, round after round (A B C D A B C D …), so drift in a shared machine hits every
method alike; ratios are taken round by round against ``lapack-scan``. Each method's error is
checked against float64 NumPy on the first matrices (``max_err``: the largest
|σ_i − σ_i^ref| / (1e-4·σ_i + n·ε·σ_max), ≤ 1 is within the tests' rule).

Usage: ``python benchmarks/svd_methods.py [--repeats 5] [--widths 32 64 128 256] [--quick]
[--machine NAME] [--label LABEL] [--out benchmarks/results]``; writes
``svd-methods-<machine>-<date>[-label].{json,md}``, never overwriting.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _results import claim_stem, write_report  # noqa: E402

# (steps, batch) per width: the sweep's 64 matrices per step at n = 64 (8 configurations × 4
# inputs × {J_l, P_l}), fewer at larger widths so every call takes ~0.1-1 s with LAPACK on a CPU.
SIZES = {32: (10, 128), 64: (10, 64), 128: (10, 16), 256: (5, 8)}
QUICK = {32: (2, 8), 64: (2, 4)}
METHODS = ("lapack-scan", "lapack-chunk", "jacobi-scan", "jacobi-chunk")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def programs():
    """Each method as a jitted function of a (steps, batch, n, n) array → (steps, batch, n)."""
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    def lapack(a):
        return jnp.linalg.svd(a, compute_uv=False)

    def in_scan(svd):
        def run(a):
            return jax.lax.scan(lambda c, x: (c, svd(x)), 0, a)[1]

        return run

    return {
        "lapack-scan": jax.jit(in_scan(lapack)),
        "lapack-chunk": jax.jit(lapack),
        "jacobi-scan": jax.jit(in_scan(jf.jacobi_singular_values)),
        "jacobi-chunk": jax.jit(jf.jacobi_singular_values),
    }


def max_error(values, matrices) -> float:
    """The largest |σ_i − σ_i^ref| / (1e-4·σ_i + n·ε·σ_max) against float64 NumPy."""
    import numpy as np

    a = np.asarray(matrices, np.float64)
    ref = np.linalg.svd(a, compute_uv=False)
    floor = a.shape[-1] * np.finfo(np.float32).eps * ref[..., :1]
    return float(np.max(np.abs(np.asarray(values, np.float64) - ref) / (1e-4 * ref + floor)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--widths", type=int, nargs="+", default=None)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: checks the script")
    p.add_argument("--machine", default=os.uname().nodename)
    p.add_argument("--label", default="")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else SIZES
    widths = args.widths or sorted(sizes)
    unknown = [n for n in widths if n not in sizes]
    if unknown:
        p.error(f"--widths {unknown}: choose from {sorted(sizes)}")
    repeats = 2 if args.quick else args.repeats
    if repeats < 1:
        p.error(f"--repeats {repeats}: give at least 1")
    stem, date = claim_stem(args.out, "svd-methods", args.machine, args.label)
    from jaxflow import _platform

    _platform.guard_cpu_thread_pool()  # XLA:CPU's pool as the sweep sizes it (NPROC)
    import jax
    import numpy as np

    fns = programs()
    load_start = os.getloadavg()
    rows = []
    for n in widths:
        steps, batch = sizes[n]
        rng = np.random.default_rng(n)
        a = (rng.standard_normal((steps, batch, n, n)) / np.sqrt(n)).astype(np.float32)
        x = jax.device_put(a)
        errors, compile_s = {}, {}
        for name, fn in fns.items():  # compile, and check the answer, before any timing
            start = time.perf_counter()
            out = np.asarray(fn(x))
            compile_s[name] = round(time.perf_counter() - start, 3)
            errors[name] = max_error(out[0, : min(batch, 8)], a[0, : min(batch, 8)])
        wall = {name: [] for name in fns}
        cpu = {name: [] for name in fns}
        for r in range(repeats):
            for name, fn in fns.items():
                t, c = time.perf_counter(), _cpu_seconds()
                fn(x).block_until_ready()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(_cpu_seconds() - c)
            print(
                f"n={n} round {r + 1}/{repeats}: "
                + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in wall.items()),
                file=sys.stderr,
                flush=True,
            )
        count = steps * batch
        for name in fns:
            ratios = [w / base for w, base in zip(wall[name], wall["lapack-scan"], strict=True)]
            rows.append(
                dict(
                    n=n,
                    method=name,
                    matrices_per_call=count,
                    wall_s=[round(w, 4) for w in wall[name]],
                    us_per_matrix=round(statistics.median(wall[name]) / count * 1e6, 1),
                    cpu_us_per_matrix=round(statistics.median(cpu[name]) / count * 1e6, 1),
                    over_lapack_scan=round(statistics.median(ratios), 3),
                    over_lapack_scan_range=[round(min(ratios), 3), round(max(ratios), 3)],
                    first_call_s=compile_s[name],
                    max_err=round(errors[name], 4),
                )
            )
    device = jax.devices()[0]
    title = (
        f"Values-only SVD of float32 n×n batches on {device.device_kind} ({args.machine}, {date}, "
        f"jax {jax.__version__}); {repeats} interleaved rounds; load average "
        f"{load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    table = "\n".join(
        [
            title,
            "",
            "| n | method | matrices per call | µs per matrix (wall, median) | CPU µs per matrix "
            "| × lapack-scan (median [min–max], by round) | max_err (≤ 1 passes) |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {r['n']} | {r['method']} | {r['matrices_per_call']} | {r['us_per_matrix']} | "
                f"{r['cpu_us_per_matrix']} | {r['over_lapack_scan']} "
                f"[{r['over_lapack_scan_range'][0]}–{r['over_lapack_scan_range'][1]}] | "
                f"{r['max_err']} |"
                for r in rows
            ),
        ]
    )
    record = {
        "title": title,
        "machine": args.machine,
        "date": date,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "jax": jax.__version__,
        "nproc": os.environ.get("NPROC"),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    write_report(stem, record, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

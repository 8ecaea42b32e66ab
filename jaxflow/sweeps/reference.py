"""The reference spectra sweep (issue 6's workload), timed whole-process.

Run ``python -m jaxflow.sweeps.reference`` (add ``--spectra`` to keep every singular value): MLP
width 64, depths {5, 10, 20, 40}, relu/tanh/sigmoid, xavier/he/orthogonal (zero biases), 8 seeds,
4 inputs per seed; every J_l by autodiff and the singular values of every J_l and every prefix
product P_l. It prints one JSON line: the wall seconds since the process started (imports and compilation
included; Linux only, else ``null``), the process's CPU seconds, the sweep's own seconds, the
compilation count, and the checksum Σ log σ_max(P_d) over activations, inits, seeds, inputs and
depths d. Time the whole process from outside too, e.g. ``/usr/bin/time -f %e python -m
jaxflow.sweeps.reference``; compare runs only on a quiet machine.

Where the time goes (2-core CPU, jax 0.10.2, CPU-seconds, which load does not inflate):
importing jaxflow ≈ 0.55; tracing ≈ 0.4; compiling ≈ 1.2 (at XLA's -O1; 2.4 at the default -O2,
almost all of it LLVM on the threefry and Jacobian code); running ≈ 3.25, of which the 23,040
values-only 64×64 SVDs (40 layers × 72 networks × 4 inputs × {J_l, P_l}) are ≈ 2.8 (≈ 120 µs
each) — jaxlib splits each batched SVD call over both cores, so they take ≈ 1.4 s of wall time;
importing xarray ≈ 0.25, hidden behind the compilation. Answering each depth separately instead
(four sweeps: four compilations, 43,200 SVDs) costs 14–17 CPU-seconds against 6.1–6.7 for the one
pass, measured interleaved. Setting ``JAX_COMPILATION_CACHE_DIR`` (and
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``) lets a second process load the compiled kernel
instead of compiling it (≈ 1.1 CPU-seconds less).
"""

from __future__ import annotations

import json
import sys

REFERENCE = dict(
    model="mlp",
    depth=(5, 10, 20, 40),
    activation=("relu", "tanh", "sigmoid"),
    init=("xavier", "he", "orthogonal"),
    width=64,
    seeds=8,
    batch=4,
)


def checksum(ds) -> float:
    """Σ log σ_max(P_d) over every activation, init, seed, input and depth d."""
    import numpy as np

    last = ds.P_sv_max.where(ds.layer == ds.depth).max("layer")
    return float(np.log(last.values.astype(np.float64)).sum())  # summed in float64


def _process_wall_seconds():
    """Seconds since this process started, from /proc (Linux), or None elsewhere."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def main(argv=None) -> int:
    """Runs the reference sweep and prints its timings and checksum as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    import jaxflow as jf

    metrics = ["J_spectrum", "P_spectrum"] + (
        ["J_spectra", "P_spectra"] if "--spectra" in argv else []
    )
    grid = jf.Grid(**REFERENCE, metrics=metrics)
    ds = jf.sweep(grid, quiet=True)
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "process_seconds": _process_wall_seconds(),
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "sweep_seconds": ds.attrs["seconds"],
        "compilations": ds.attrs["compilations"],
        "checksum": checksum(ds),
        "device_kind": ds.attrs["device_kind"],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

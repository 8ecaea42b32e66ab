"""The reference spectra sweep (issue 6's workload), timed whole-process.

Run ``python -m jaxflow.sweeps.reference`` (add ``--spectra`` to keep every singular value): MLP
width 64, depths {5, 10, 20, 40}, relu/tanh/sigmoid, xavier/he/orthogonal (zero biases), 8 seeds,
4 inputs per seed; every J_l by autodiff and the singular values of every J_l and every prefix
product P_l. It prints one JSON line: the wall seconds since the process started (imports and compilation
included; Linux only, else ``null``), the process's CPU seconds, the sweep's own seconds, the
compilation count, and the checksum Σ log σ_max(P_d) over activations, inits, seeds, inputs and
depths d. Time the whole process from outside too, e.g. ``/usr/bin/time -f %e python -m
jaxflow.sweeps.reference``; compare runs only on a quiet machine.
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
    return float(np.log(last.values).sum())


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

    metrics = ["J_spectrum", "P_spectrum"] + (["J_spectra", "P_spectra"] if "--spectra" in argv else [])
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

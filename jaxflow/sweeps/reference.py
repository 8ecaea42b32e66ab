"""The reference spectra sweep (issue 6's workload), timed whole-process.

Run ``python -m jaxflow.sweeps.reference`` (add ``--spectra`` to keep every singular value): MLP
width 64, depths {5, 10, 20, 40}, relu/tanh/sigmoid, xavier/he/orthogonal (zero biases), 8 seeds,
4 inputs per seed; every J_l by autodiff and the singular values of every J_l and every prefix
product P_l. It prints one JSON line: the seconds from interpreter start (``time`` of the process
minus nothing: imports and compilation included), the sweep's own seconds, the compilation count,
and the checksum Σ log σ_max(P_d) over activations, inits, seeds, inputs and depths d.
"""

from __future__ import annotations

import time

_START = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

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


def main(argv=None) -> int:
    """Runs the reference sweep and prints its timings and checksum as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    import jaxflow as jf

    metrics = ["J_spectrum", "P_spectrum"] + (["J_spectra", "P_spectra"] if "--spectra" in argv else [])
    grid = jf.Grid(**REFERENCE, metrics=metrics)
    ds = jf.sweep(grid, quiet=True)
    report = {
        "process_seconds": round(time.perf_counter() - _START, 3),
        "sweep_seconds": ds.attrs["seconds"],
        "compilations": ds.attrs["compilations"],
        "checksum": checksum(ds),
        "device_kind": ds.attrs["device_kind"],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

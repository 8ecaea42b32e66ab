"""One sweep, two processes, one store: the multi-host recipe, runnable on one machine.

Every process of a multi-host sweep calls ``jax.distributed.initialize(...)`` and then
``jaxflow.sweep(grid, store=path)`` with the same grid and the same (shared) store path. Process p
computes the chunks ``index % process_count == p`` on its own devices and writes them to the store;
every process then returns the whole dataset, and process 0 writes ``result/``. Kill any process
and rerun all of them: the sweep resumes, recomputing only the chunks that were not written.

    python examples/two_process_sweep.py sweep.zarr                # starts both processes here
    python examples/two_process_sweep.py sweep.zarr --process-id 0 --num-processes 2 \\
        --coordinator 127.0.0.1:12345                             # one process; start each by hand
    srun --ntasks 2 python examples/two_process_sweep.py /shared/sweep.zarr --slurm

With ``--slurm`` (or any cluster ``jax.distributed.initialize()`` detects: SLURM, Open MPI,
Kubernetes, Cloud TPU) the coordinator, process count and process id come from the environment.
On CPUs the processes talk through gloo (``jax_cpu_collectives_implementation``; the sweep needs
them for one barrier at the end). Each process prints one JSON line: its id, the chunks it
computed, and Σ log σ_max(P_d) of the whole result.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

GRID = dict(
    depth=[2, 4, 8],
    activation=["relu", "tanh"],
    init=["xavier", "he", "orthogonal"],
    width=8,
    seeds=2,
    batch=2,
    metrics=["J_spectrum", "P_spectrum", "grad_ratio", "weight_grad_norm"],
)
"""A small grid: 2 activations × (2 normal + 1 orthogonal inits) × 2 seeds: 6 chunks of 2."""


def run_one(store: str, distributed: dict | None) -> dict:
    """Joins the distributed run (``distributed``: initialize()'s arguments) and runs the sweep."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk by gloo
    if distributed is None:
        jax.distributed.initialize()  # a cluster's environment says who is who (SLURM, ...)
    else:
        jax.distributed.initialize(**distributed)

    import numpy as np

    import jaxflow as jf

    def written(index, total):
        print(f"process {jax.process_index()}: chunk {index} of {total} written", flush=True)

    ds = jf.sweep(jf.Grid(**GRID), store=store, quiet=True, callback=written)
    last = ds.P_sv_max.where(ds.layer == ds.depth).max("layer")
    return {
        "process": jax.process_index(),
        "process_count": jax.process_count(),
        "chunks_computed": json.loads(ds.attrs["chunks_computed"]),
        "checksum": float(np.log(last.values.astype(np.float64)).sum()),
    }


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(store: str, processes: int, timeout: float) -> int:
    """Starts ``processes`` copies of this script on 127.0.0.1 and waits for all of them."""
    coordinator = f"127.0.0.1:{free_port()}"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                store,
                "--coordinator",
                coordinator,
                "--num-processes",
                str(processes),
                "--process-id",
                str(p),
            ]
        )
        for p in range(processes)
    ]
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = [child.poll() for child in children]
            if None not in statuses or any(status not in (None, 0) for status in statuses):
                break  # all done, or one failed: a failed process stops the run
            time.sleep(0.2)
        for child in children:  # give the others a moment to stop on their own
            try:
                child.wait(timeout=max(0.0, min(60.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        statuses = [child.poll() for child in children]
        return 0 if statuses == [0] * len(children) else 1
    finally:
        for child in children:  # one that failed or timed out leaves no process behind
            if child.poll() is None:
                child.kill()
                child.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", help="the sweep's store (a directory every process can reach)")
    parser.add_argument("--process-id", type=int, help="this process's id, 0 … num-processes − 1")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--coordinator", help="host:port of process 0's coordination service")
    parser.add_argument(
        "--slurm",
        action="store_true",
        help="take coordinator, count and id from the cluster's environment",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds the launcher waits for its processes"
    )
    args = parser.parse_args(argv)
    if args.slurm:
        print(json.dumps(run_one(args.store, None)), flush=True)
        return 0
    if args.process_id is None:
        return launch(args.store, args.num_processes, args.timeout)
    distributed = dict(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    print(json.dumps(run_one(args.store, distributed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

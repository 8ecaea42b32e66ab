"""The tiny protocol between the benchmark scripts and the runner (standard library only).

Every implementation script is a whole process: ``python benchmarks/<script>.py [--scale S]
[--data DIR] [--device D]``. It prints whatever it likes, and exactly one line that starts with
:data:`PREFIX` followed by a JSON object:

``{"workload", "implementation", "scale", "status": "ok", "checksums": {...},
"phases": {"import_s", "data_s", "compile_s", "run_s"}, "peak_rss_mb", "info": {...}}``

* ``import_s`` — from the script's first line to the end of its imports (interpreter start-up
  is in the runner's whole-process time, not here);
* ``data_s`` — drawing or loading the workload's data and moving it to the device;
* ``compile_s`` — in-process compilation where it can be separated (``jax.jit``'s lower +
  compile), else ``null``: eager code compiles or dispatches inside ``run_s``;
* ``run_s`` — the workload itself once compiled: the steady-state time.

A script whose implementation cannot run in this checkout (a jaxflow API that has not landed yet)
prints ``"status": "unavailable"`` with a ``reason`` and exits 0; the runner reports it and skips
the workload's comparison — it never invents a number. Any other failure is a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

PREFIX = "JAXFLOW_BENCH_RESULT "
SCALES = ("full", "quick", "gpu")


class Phases:
    """Wall-clock phases of one script, started at construction (put it before heavy imports).

    Example:
      >>> phases = Phases()
      >>> with phases.time("run_s"):
      ...     pass
      >>> sorted(phases.as_dict())
      ['compile_s', 'data_s', 'import_s', 'run_s']
    """

    def __init__(self):
        self._start = time.perf_counter()
        self._times = {"import_s": None, "data_s": None, "compile_s": None, "run_s": None}

    def imports_done(self) -> None:
        """Marks the end of the imports."""
        self._times["import_s"] = time.perf_counter() - self._start

    @contextlib.contextmanager
    def time(self, phase: str):
        """Adds the time spent in the ``with`` block to ``phase``."""
        if phase not in self._times:
            raise ValueError(f"phase={phase!r} is not one of {list(self._times)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self._times[phase] = (self._times[phase] or 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict:
        """The phases in seconds (``None`` where not measured)."""
        return dict(self._times)


def parser(description: str, devices: tuple[str, ...] = ("cpu",)) -> argparse.ArgumentParser:
    """The command line every implementation script shares.

    Args:
      description: the script's one-line description.
      devices: the ``--device`` choices the script supports, default first.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--scale", choices=SCALES, default="full", help="workload size (default: full)")
    p.add_argument(
        "--data",
        default=None,
        help="directory of the workload's arrays, written by "
        "`workloads export` (default: draw them in-process)",
    )
    p.add_argument("--device", choices=devices, default=devices[0], help="where to run")
    return p


JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}


def use_jax_platform(device: str) -> None:
    """Points jax at ``device`` (``"cpu"`` or ``"gpu"``); call it before jax is imported.

    An explicit ``JAX_PLATFORMS`` in the environment wins. On a machine without the GPU asked for,
    jax then fails loudly at its first use instead of falling back to the CPU.

    It also keeps the LAPACK that jaxlib calls on the CPU (SciPy's OpenBLAS) to one thread unless
    ``OPENBLAS_NUM_THREADS`` says otherwise: XLA already spreads a batched decomposition over the
    cores, and OpenBLAS's own threads on top oversubscribe them — on a shared machine a 128×128
    SVD then stalls for up to hundreds of milliseconds instead of taking about one.
    """
    os.environ.setdefault("JAX_PLATFORMS", JAX_PLATFORMS[device])
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def torch_device(device: str):
    """The torch device for ``device`` (``"cpu"`` or ``"gpu"``), float32 matmuls at full precision.

    TF32 is turned off so a GPU's float32 products match jaxflow's ``Precision.HIGHEST``.

    Raises:
      SystemExit: for ``"gpu"`` when torch sees no CUDA device.
    """
    import torch

    if device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--device gpu: torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch.device("cuda" if device == "gpu" else "cpu")


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory of a process (``VmHWM`` in ``/proc/<pid>/status``), MB; ``None``
    where there is no ``/proc`` (or the process is gone).

    ``VmHWM`` belongs to the process's address space since its ``exec``. ``getrusage``'s
    ``ru_maxrss`` is not a substitute: Linux carries the pre-``exec`` peak into it, so a child of a
    large runner would report at least the runner's size.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _environment() -> dict:
    """The versions and device of whichever of jax and torch the script imported."""
    env = {}
    jax = sys.modules.get("jax")
    if jax is not None:
        device = jax.devices()[0]
        env.update(jax=jax.__version__, platform=device.platform, device=device.device_kind)
    torch = sys.modules.get("torch")
    if torch is not None:
        env.update(torch=torch.__version__, threads=torch.get_num_threads())
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        env.setdefault("device", torch.cuda.get_device_name() if cuda else "cpu")
    return env


def emit(
    workload: str,
    implementation: str,
    scale: str,
    checksums: dict,
    phases: Phases,
    info: dict | None = None,
) -> None:
    """Prints the result line and flushes; ``info`` is added to the library versions and device."""
    record = {
        "workload": workload,
        "implementation": implementation,
        "scale": scale,
        "status": "ok",
        "checksums": {k: float(v) for k, v in checksums.items()},
        "phases": phases.as_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "info": {**_environment(), **(info or {})},
    }
    print(PREFIX + json.dumps(record), flush=True)


def unavailable(workload: str, implementation: str, scale: str, reason: str) -> None:
    """Prints an ``unavailable`` result line and exits 0 (see the module docs)."""
    record = {
        "workload": workload,
        "implementation": implementation,
        "scale": scale,
        "status": "unavailable",
        "reason": reason,
    }
    print(PREFIX + json.dumps(record), flush=True)
    sys.exit(0)


def require_api(module, name: str, workload: str, implementation: str, scale: str, issue: str):
    """``module.name``, or an ``unavailable`` result naming the issue that adds it (and exit 0)."""
    api = getattr(module, name, None)
    if api is None:
        unavailable(
            workload,
            implementation,
            scale,
            f"{module.__name__}.{name} ({issue}) is not available in this checkout",
        )
    return api


def parse(stdout: str) -> dict:
    """The result record in a script's standard output.

    Raises:
      ValueError: if there is no result line, or more than one.
    """
    lines = [line[len(PREFIX) :] for line in stdout.splitlines() if line.startswith(PREFIX)]
    if len(lines) != 1:
        raise ValueError(f"expected one line starting with {PREFIX.strip()!r}, found {len(lines)}")
    return json.loads(lines[0])

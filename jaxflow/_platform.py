"""Process-level settings jaxflow needs from JAX's CPU backend, applied once at import.

jaxlib 0.10's batched LAPACK kernels (SVD, QR, eigh) split a large batch into tasks on XLA:CPU's
intra-op thread pool and block the calling thread until they finish. When the caller is itself a
pool thread — a decomposition inside a ``lax.scan``/``while`` body, or two programs in flight at
once — and every pool thread is inside such a call, no thread is left to run the tasks and the
process hangs (every ``tf_XLAEigen`` thread parked in ``jax::ParallelBatchMap`` →
``BlockingCounter::Wait``). XLA sizes that pool to the number of cores, so on a 2-core machine two
concurrent decompositions are enough; we saw it hang mid-experiment.

XLA reads the pool size from ``NPROC`` when the CPU backend starts. If the user has not set it and
no backend is running yet, jaxflow sets it to max(8, 4 × cores): a hang would then need that many
decompositions blocked at once. The extra threads cost nothing measurable (they only take turns
on the same cores). Set ``NPROC`` yourself to choose another size.
"""

from __future__ import annotations

import os

_MINIMUM_POOL = 8


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without the probe: assume the worst
        return True


def guard_cpu_thread_pool() -> None:
    """Sizes XLA:CPU's intra-op pool so batched LAPACK calls cannot park every thread."""
    if "NPROC" not in os.environ and not _backends_started():
        os.environ["NPROC"] = str(max(_MINIMUM_POOL, 4 * _cores()))


def cpu_pool_threads() -> int:
    """The number of threads in XLA:CPU's intra-op pool (``NPROC`` if set, else the cores)."""
    try:
        return max(1, int(os.environ["NPROC"]))
    except (KeyError, ValueError):
        return _cores()


def prefer_fast_compilation() -> bool:
    """Compiles at XLA's -O1 for the rest of the process, if no backend has started yet.

    For drivers that compile many small programs once each (``jaxflow reproduce``): -O1 roughly
    halves XLA:CPU's compile time; it changes how hard LLVM optimises, not floating-point
    semantics, and these programs are too small for the run-time difference to show. A level the
    user set in ``XLA_FLAGS`` is kept. Returns whether the level now applies.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags:
        return True
    if _backends_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=1".strip()
    return True

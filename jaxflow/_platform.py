"""Process-level settings for JAX's CPU backend, applied by the drivers before a backend starts.

:func:`guard_cpu_thread_pool` enlarges XLA:CPU's intra-op thread pool so that batched LAPACK
calls blocking pool threads cannot hang the process; :func:`prefer_fast_compilation` selects
XLA's -O1. Both only act before the first backend starts, so the drivers (``jaxflow.sweep``,
``jaxflow reproduce``, the CLI) call them first thing; ``import jaxflow`` sets nothing. Why and
what was observed: ``docs/platform.md``.
"""

from __future__ import annotations

import os

_MINIMUM_POOL = 8


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _backends_started() -> bool:
    """Whether JAX has started a backend (after which XLA no longer reads these settings).

    JAX offers no public probe (``jax.extend.backend``, in jax 0.10 and in the current source, has
    only calls that *start* the backends), so this is the one place jaxflow reads JAX's private
    ``xla_bridge.backends_are_initialized``; a public probe, should ``jax.extend.backend`` gain
    one, is preferred. Without either, assume a backend runs, so nothing is set that would then
    not apply.
    """
    import jax.extend.backend

    probe = getattr(jax.extend.backend, "backends_are_initialized", None)
    if probe is None:
        try:
            from jax._src import xla_bridge  # private: isolated here, with the fallback below

            probe = xla_bridge.backends_are_initialized
        except (ImportError, AttributeError):
            return True
    return bool(probe())


def guard_cpu_thread_pool() -> None:
    """Sizes XLA:CPU's intra-op pool so batched LAPACK calls cannot park every thread.

    Sets ``NPROC`` to max(8, 4 × cores) unless the user set it or a backend already runs.
    """
    if "NPROC" not in os.environ and not _backends_started():
        os.environ["NPROC"] = str(max(_MINIMUM_POOL, 4 * _cores()))


def cpu_pool_threads() -> int:
    """The number of threads in XLA:CPU's intra-op pool (``NPROC`` if set, else the cores)."""
    try:
        return max(1, int(os.environ["NPROC"]))
    except (KeyError, ValueError):
        return _cores()


_FUSION_EMITTERS_OFF_JAXLIB = ("0.10.",)
"""jaxlib releases where ``--xla_cpu_use_fusion_emitters`` was measured (and is known to exist:
XLA aborts the process on a flag it does not know, so it is never set blindly)."""


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return str(jaxlib.__version__)
    except (ImportError, AttributeError):
        return ""


def prefer_fast_compilation() -> bool:
    """Compiles at XLA's -O1, with XLA:CPU's older elemental emitters, for the rest of the
    process, if no backend has started yet.

    For drivers that compile many small programs once each (``jaxflow reproduce``): -O1 changes
    how hard LLVM optimises, not floating-point semantics; ``--xla_cpu_use_fusion_emitters=false``
    has XLA:CPU emit its fusions through the elemental IR emitter instead of the MLIR fusion
    emitters, which takes about 30 % less compile CPU time (see ``docs/platform.md``). The second
    is set only on jaxlib releases where it was measured. A setting the user made in
    ``XLA_FLAGS`` is kept. Returns whether the -O1 level now applies.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    wanted = ["--xla_backend_optimization_level=1"]
    if _jaxlib_version().startswith(_FUSION_EMITTERS_OFF_JAXLIB):
        wanted.append("--xla_cpu_use_fusion_emitters=false")
    missing = [f for f in wanted if f[2:].split("=")[0] not in flags]
    if not missing:
        return True
    if _backends_started():
        return "xla_backend_optimization_level" in flags
    os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()
    return True

"""Process-level settings for JAX's CPU backend, applied by the drivers before a backend starts.

:func:`guard_cpu_thread_pool` enlarges XLA:CPU's intra-op thread pool so that batched LAPACK
calls blocking pool threads cannot hang the process; :func:`prefer_fast_compilation` selects
XLA's -O1. Both only act before the first backend starts, so the drivers (``jaxflow.sweep``,
``jaxflow reproduce``, the CLI) call them first thing; ``import jaxflow`` sets nothing. Why and
what was observed: ``docs/platform.md``.

:func:`use_compilation_cache` turns on JAX's persistent compilation cache, so a second process
loads its programs from disk instead of compiling them. The drivers (the CLI, ``jaxflow
reproduce``, the sweeps, the experiments) call it; the library functions never do. It keeps one
folder per jax/jaxlib version pair under the per-user cache folder (``$XDG_CACHE_HOME/jaxflow``,
else ``~/.cache/jaxflow``); ``JAXFLOW_CACHE_DIR`` (or the CLI's ``--cache-dir``) moves it, and the
value ``off`` turns it off.
"""

from __future__ import annotations

import os

SPARE_THREADS = 1
"""Pool threads the drivers add to max(cores, CPU devices) (:func:`default_pool_size`)."""


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


def _count(value) -> int:
    try:
        return int(str(value).strip().strip("\"'"))
    except ValueError:
        return 0


def _asked_host_devices() -> int:
    """The CPU devices the user asked for before the backend starts, 0 without a request: jax's
    ``jax_num_cpu_devices`` (``JAX_NUM_CPU_DEVICES`` or ``jax.config``), which wins, else the last
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` (as XLA reads them)."""
    import jax

    asked = max(_count(os.environ.get("JAX_NUM_CPU_DEVICES", -1)),
                _count(getattr(jax.config, "jax_num_cpu_devices", -1)))  # fmt: skip
    if asked > 0:
        return asked
    found = 0
    for flag in os.environ.get("XLA_FLAGS", "").split():
        name, _, value = flag.partition("=")
        if name.lstrip("-") == "xla_force_host_platform_device_count":
            found = max(1, _count(value))
    return found


def _forced_host_devices() -> int:
    """The CPU devices the backend will have: :func:`_asked_host_devices`, else 1."""
    return _asked_host_devices() or 1


def spread_cpu_devices() -> int:
    """Gives JAX's CPU backend one device per core, for a driver whose programs are data-parallel
    over configurations and do little batched LAPACK (the training engine), if no backend has
    started and the user asked for no device count.

    XLA:CPU runs one device's program on one thread at a time, and the small batched matmuls of a
    training step do not spread over cores on their own (measured: 1.0 CPU-s per wall-s); two
    devices on 2 cores train a grid's halves side by side (1.8× faster, ``benchmarks/README.md``).
    Only the CPU client's device count changes: ``jax.devices()`` still starts with the
    accelerator where there is one, and a computation not sharded explicitly still runs on the
    first device. ``JAX_NUM_CPU_DEVICES=1`` (or any count the user sets) keeps the user's choice.

    Returns:
      The CPU device count the backend has or will have (the user's count, the cores, or 1 when a
      backend already runs without a request).
    """
    asked = _asked_host_devices()
    if asked or _backends_started():
        return asked or 1
    cores = _cores()
    if cores > 1:
        import jax

        jax.config.update("jax_num_cpu_devices", cores)
    return cores


def prepare_training(devices=None) -> None:
    """What a training driver does first, before anything starts a backend: with ``devices=None``
    :func:`spread_cpu_devices`, then :func:`guard_cpu_thread_pool` (whose size counts them)."""
    if devices is None:
        spread_cpu_devices()
    guard_cpu_thread_pool()


def default_pool_size(cores: int, host_devices: int = 1) -> int:
    """The intra-op pool the drivers choose: max(cores, host devices) + :data:`SPARE_THREADS`.

    Each CPU device executes on a pool thread, and a batched decomposition blocks the thread that
    calls it until the pool has run its tasks. XLA's own default, one thread per core, hung on 2
    cores with both threads parked that way; with one thread more, a device blocked in a
    decomposition still leaves a thread per core for its tasks, and a hang needs more
    decompositions blocked at once than there are cores and devices. No more than that: every
    thread beyond the cores takes a share of them (a sweep on 2 cores, ``benchmarks/cpu_pool.py``:
    1.14-1.28× the time of a 2-thread pool at 3 threads, 1.45-1.65× at 4, 1.76-4.95× at 8).

    Example:
      >>> from jaxflow._platform import default_pool_size
      >>> default_pool_size(2), default_pool_size(16), default_pool_size(2, host_devices=4)
      (3, 17, 5)
    """
    return max(cores, host_devices) + SPARE_THREADS


def guard_cpu_thread_pool() -> None:
    """Sizes XLA:CPU's intra-op pool so batched LAPACK calls cannot park every thread.

    Sets ``NPROC`` to :func:`default_pool_size` unless the user set it or a backend already runs.
    """
    if "NPROC" not in os.environ and not _backends_started():
        os.environ["NPROC"] = str(default_pool_size(_cores(), _forced_host_devices()))


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


def _fast_compile_flags() -> dict:
    """:func:`prefer_fast_compilation`'s options (-O1, and the elemental emitters on the jaxlib
    releases where they were measured) as compiler options, less those the user set in
    ``XLA_FLAGS``."""
    wanted = {"xla_backend_optimization_level": 1}
    if _jaxlib_version().startswith(_FUSION_EMITTERS_OFF_JAXLIB):
        wanted["xla_cpu_use_fusion_emitters"] = False
    flags = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in wanted.items() if k not in flags}


def _under_a_trace() -> bool:
    """Whether a jit, scan, cond or eval_shape is tracing (a nested ``jax.jit`` must not carry
    compiler options: JAX raises). JAX offers no public probe; its private one is read here, and
    without it the answer is yes, so no options are ever passed where they are refused."""
    try:
        from jax._src import core  # private: isolated here, with the fallback below

        return bool(core.unsafe_am_i_under_a_jit())
    except (ImportError, AttributeError):
        return True


def fast_compiling_jit(fun, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` that compiles at XLA:CPU's -O1 with the elemental emitters
    (:func:`prefer_fast_compilation`'s options, for this program only) when it is called outside
    any trace and JAX's default backend is the CPU.

    For the library's own programs whose run time is LAPACK's and the batched matmuls' and whose
    results the options leave bitwise the same (measured: the Jacobian chain, the layer Jacobians,
    the gradient bound; ``benchmarks/README.md``, issue 13): their compile CPU time falls two- to
    three-fold. Not for the log-spectrum kernels: -O1 changes the graded kernel's rounding. Under
    a user's ``jit``, ``scan`` or ``eval_shape`` the plain program is traced instead (a nested
    ``jax.jit`` may not carry options) and the user's own ``jit`` decides; under an eager
    ``vmap`` or ``grad`` the options still apply. Each variant is compiled once per static
    arguments and shapes, as by ``jax.jit``; ``.plain`` and ``.fast`` are the two jitted
    functions.
    """
    import functools

    import jax

    plain = jax.jit(fun, **jit_kwargs)
    options = _fast_compile_flags()
    if not options:
        return plain
    fast = jax.jit(fun, compiler_options=options, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        if jax.default_backend() == "cpu" and not _under_a_trace():
            return fast(*args, **kwargs)
        return plain(*args, **kwargs)

    call.plain, call.fast = plain, fast
    return call


CACHE_ENV = "JAXFLOW_CACHE_DIR"
"""The environment variable that moves jaxflow's compilation cache (a folder) or turns it off
(``off``)."""

CACHE_OFF = "off"

# Programs that compile faster than this are not written to the cache (JAX's default is 1 s). The
# drivers compile many programs of 0.1-1 s each (the notes' comparison: one of about 1.4 s, the
# report: a few hundred), which together are most of a cold process; below ~0.1 s, the op-by-op
# dispatch of eager primitives, a file per program would cost more than it saves.
MIN_COMPILE_SECONDS = 0.1


def compilation_cache_dir(setting: str | None = None) -> str | None:
    """The folder jaxflow's drivers keep compiled programs in, or ``None`` when it is off.

    Args:
      setting: a folder, or ``"off"``; default ``$JAXFLOW_CACHE_DIR``, else the per-user cache
        folder (``$XDG_CACHE_HOME/jaxflow``, else ``~/.cache/jaxflow``).

    Returns:
      ``<folder>/jax-<jax version>-jaxlib-<jaxlib version>``: programs compiled by one version
      pair are never offered to another. ``None`` for ``"off"``.

    Example:
      >>> from jaxflow._platform import compilation_cache_dir
      >>> compilation_cache_dir("/tmp/cache").startswith("/tmp/cache/jax-")
      True
      >>> compilation_cache_dir("off") is None
      True
    """
    if setting is None:
        setting = os.environ.get(CACHE_ENV)
    if setting is not None and setting.strip().lower() == CACHE_OFF:
        return None
    if not setting:
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        setting = os.path.join(root, "jaxflow")
    import jax
    import jaxlib

    version = f"jax-{jax.__version__}-jaxlib-{jaxlib.__version__}"
    return os.path.join(os.path.abspath(os.path.expanduser(setting)), version)


def use_compilation_cache(setting: str | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache in :func:`compilation_cache_dir` for the rest
    of the process; what the drivers call before they compile.

    A cache the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``) is kept unless a
    jaxflow setting (``setting``, ``$JAXFLOW_CACHE_DIR``) names another. Programs that compile
    in under :data:`MIN_COMPILE_SECONDS` are not written
    (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` overrides it). Cached programs are the same
    programs, so results do not change; only compile time does.

    Args:
      setting: a folder or ``"off"``, as in :func:`compilation_cache_dir`.

    Returns:
      The folder in use, or ``None`` when jaxflow's cache is off (JAX's own settings then apply
      unchanged).
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if setting is None and not os.environ.get(CACHE_ENV) and current:  # empty counts as unset
        return current
    target = compilation_cache_dir(setting)
    if target is None or target == current:
        return target
    if current:  # a cache in use is replaced only through a reset
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", target)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # else the user's choice
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return target

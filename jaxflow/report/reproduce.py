"""``jaxflow reproduce``: every claim of the gradient-flow notes, measured and set beside its theory.

Each section is a function ``section(ctx) -> Section`` registered in :data:`SECTIONS`, in report
order; the sections live one module per topic in :mod:`jaxflow.report`. A section runs an
experiment (jit-compiled, vmapped over seeds and configurations), saves its figure into the report
folder, and states its checks: measured value, theory, tolerance, pass/fail. :func:`reproduce`
runs them with a progress display and writes the report (:func:`jaxflow.report.write_report`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax

import jaxflow as jf
from jaxflow import _platform
from jaxflow.report import bounds, gradient_flow, mean_field, spectra, sweep, trainability
from jaxflow.report._context import Context
from jaxflow.report.writer import Section, write_report

__all__ = ["SECTIONS", "Context", "Report", "reproduce"]


class Report(NamedTuple):
    """What :func:`reproduce` wrote.

    Attributes:
      sections: the :class:`~jaxflow.report.Section` results, in order.
      paths: ``{"markdown", "html", "json"}`` file paths.
      seconds: total wall-clock time.

    Example:
      See :func:`reproduce`; its fields:

      >>> from jaxflow.report.reproduce import Report
      >>> Report._fields
      ('sections', 'paths', 'seconds')
    """

    sections: tuple[Section, ...]
    paths: dict
    seconds: float

    @property
    def passed(self) -> bool:
        """Whether every section passed its theory checks."""
        return all(s.passed for s in self.sections)


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "chain_rule": gradient_flow.chain_rule,
    "gradient_table": gradient_flow.gradient_table,
    "gradient_flow": gradient_flow.gradient_flow,
    "sigmoid_bound": bounds.sigmoid_bound_section,
    "init": gradient_flow.init_comparison,
    "mean_field": mean_field.mean_field,
    "spectra": spectra.spectra,
    "residual": gradient_flow.residual,
    "clipping": gradient_flow.clipping,
    "dead_relu": mean_field.dead_relu,
    "sweep": sweep.sweep,
    "trainability": trainability.trainability,
}
"""The report's sections, in order."""


_LONGEST_FIRST = ("trainability",)
"""Sections started before the others (the report keeps its order): the pool runs ``jobs`` at a
time, so a long section started last would run alone at the end. The trainability section's two
training compilations take about twice the time of the next longest section."""


_MEAN_FIELD_SECTIONS = frozenset({"sigmoid_bound", "mean_field", "sweep", "trainability"})
"""Sections that call :mod:`jaxflow.theory`'s mean-field program (every call of the report
shares one compiled program: float32, batches padded to 8)."""


def _compile_mean_field_program():
    """Compiles the mean-field program once, before any section asks for it.

    It is the report's costliest shared program (seconds on 2 cores); JAX does not merge two
    threads' compilations of the same program, so two sections reaching it at once would both
    pay. :meth:`Context.once` holds the others back until it is ready.
    """
    return float(jf.mean_field("tanh", 1.0, 0.0).chi1)


class _CompileClock:
    """XLA compile time and count per section, read from ``jax.monitoring``'s events.

    JAX reports each trace, lowering and backend compilation as a duration event on the thread
    that does it; sections run on worker threads, so each event is credited to the section the
    thread is running (:meth:`section`). Compilation is most of a report's time on a CPU, and a
    program that several sections compile is paid for by the first one that asks.
    """

    _EVENTS = {
        "/jax/core/compile/backend_compile_duration": "compile_seconds",
        "/jax/core/compile/jaxpr_trace_duration": "trace_seconds",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "trace_seconds",
    }

    def __init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()
        self.totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def __call__(self, event, duration, **kwargs):
        field = self._EVENTS.get(event)
        key = getattr(self._local, "key", None)
        if field is None or key is None:
            return
        with self._lock:
            self.totals[key][field] += duration
            if field == "compile_seconds":
                self.totals[key]["compilations"] += 1

    @contextlib.contextmanager
    def section(self, key):
        """Credits this thread's compile events to ``key`` while the block runs."""
        self._local.key = key
        try:
            yield
        finally:
            self._local.key = None

    @contextlib.contextmanager
    def listening(self):
        """Registers the clock with ``jax.monitoring`` while the block runs."""
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self)
        try:
            yield self
        finally:
            unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
            if unregister is not None:  # else the listener stays: it only counts, keyed by run
                unregister(self)

    def timing(self, key, seconds) -> dict:
        """``{"seconds", "compile_seconds", "trace_seconds", "compilations"}`` of a section."""
        totals = self.totals.get(key, collections.Counter())
        return {
            "seconds": round(seconds, 2),
            "compile_seconds": round(totals["compile_seconds"], 2),
            "trace_seconds": round(totals["trace_seconds"], 2),
            "compilations": int(totals["compilations"]),
        }


INCOMPLETE = "INCOMPLETE"
"""The marker file of a report folder being written (see :func:`reproduce`)."""


def check_out_folder(out) -> str:
    """``out`` as a string, checked before anything runs: a new or empty folder that can be
    created (and renamed onto) where it is."""
    from jaxflow._files import check_writable

    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out={out!r} is not a folder path")
    folder = os.fspath(out)
    if not folder:
        raise ValueError("out='' is not a folder path")
    if os.path.lexists(folder):
        if not os.path.isdir(folder):
            raise FileExistsError(f"out={folder!r} exists and is not a folder")
        if os.listdir(folder):
            raise FileExistsError(
                f"out={folder!r} exists and is not empty; choose another --out (nothing is "
                "overwritten)"
            )
    check_writable("out", os.path.dirname(os.path.abspath(folder)))
    return folder


def _start(folder: str) -> str:
    """Makes the hidden sibling of ``folder`` the report is written into, marked INCOMPLETE."""
    from jaxflow._files import write_file

    parent, name = os.path.split(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".{name}.incomplete-{secrets.token_hex(4)}")
    os.mkdir(work)
    try:
        write_file(
            os.path.join(work, INCOMPLETE),
            f"An unfinished `jaxflow reproduce` run into {folder!r} (process {os.getpid()}, "
            f"started {time.strftime('%Y-%m-%d %H:%M:%S')}). A finished report is renamed to "
            f"{name!r}; this folder is what a run that was killed left behind, and can be "
            "deleted.\n",
        )
    except BaseException:
        os.rmdir(work)
        raise
    return work


def _finish(work: str, folder: str) -> None:
    """Gives the finished report ``work`` the name ``folder`` (an empty folder there is
    replaced; a non-empty one is not)."""
    os.unlink(os.path.join(work, INCOMPLETE))
    try:
        os.rename(work, folder)
    except OSError as error:
        if os.path.isdir(folder) and os.listdir(folder):
            raise FileExistsError(
                f"out={folder!r} was filled by something else while the report ran; nothing "
                f"there was overwritten, and the finished report is in {work!r}"
            ) from None
        raise error


def reproduce(
    out: str | os.PathLike = "jaxflow-report",
    *,
    quick: bool = False,
    sections: tuple[str, ...] | None = None,
    seed: int = 0,
    progress=sys.stderr,
    jobs: int | None = None,
) -> Report:
    """Runs the canned experiments and writes the report (Markdown, HTML, figures, JSON) to ``out``.

    Args:
      out: the report folder; it must not exist or be empty (nothing is overwritten).
      quick: smaller sizes (for tests and a first look); the same sections and checks.
      sections: run only these keys of :data:`SECTIONS` (default: all, in order).
      seed: the random seed of every experiment.
      progress: a text stream for one progress line per section, or ``None`` for silence.
      jobs: sections run at once on worker threads (default: min(2, cores)); every section's
        numbers are the same whatever ``jobs`` is.

    The report is written into a hidden sibling folder ``.NAME.incomplete-XXXXXXXX`` that holds
    an ``INCOMPLETE`` file while the run lasts and is renamed to ``out`` at the end: ``out`` only
    ever holds a finished report. A run that fails removes its sibling; a run that is killed
    leaves it, marked INCOMPLETE, and a rerun is not blocked by it.

    Returns:
      A :class:`Report`; ``report.passed`` says whether every section agreed with its theory.

    Raises:
      FileExistsError: if ``out`` exists and is not an empty folder (checked before any section
        runs).
      ValueError: for an unknown section name or an empty ``out``.
      OSError: if ``out`` cannot be created where it is (inside a file, read-only, a full disk).

    Example:
      >>> import tempfile
      >>> from jaxflow.report.reproduce import reproduce
      >>> report = reproduce(tempfile.mkdtemp(), quick=True, sections=("dead_relu",), progress=None)
      >>> report.passed
      True
    """
    _platform.guard_cpu_thread_pool()  # before any JAX backend starts
    _platform.use_compilation_cache()  # a second run loads its programs instead of compiling
    keys = tuple(SECTIONS) if sections is None else tuple(sections)
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        raise ValueError(f"sections={unknown} are unknown; valid: {', '.join(SECTIONS)}")
    if jobs is None:
        jobs = min(2, os.cpu_count() or 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is not allowed; it must be an integer >= 1")
    folder = check_out_folder(out)
    try:
        key = jax.random.key(seed)
    except (OverflowError, TypeError):
        raise ValueError(
            f"seed={seed!r} is not allowed; it must be an integer that fits in 64 bits"
        ) from None
    work = _start(folder)
    try:
        results, meta, seconds = _run_sections(work, keys, quick, key, seed, progress, jobs, folder)
        paths = write_report(results, work, meta)
        _finish(work, folder)
    except BaseException:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
        raise
    paths = {kind: os.path.join(folder, os.path.basename(path)) for kind, path in paths.items()}
    return Report(tuple(results), paths, seconds)


def _run_sections(work, keys, quick, key, seed, progress, jobs, folder):
    """(section results, run facts, seconds) of running ``keys`` into the folder ``work``."""
    ctx = Context(work, quick, key, {}, threading.Lock())
    start = time.perf_counter()
    done = [0]
    report_lock = threading.Lock()

    clock = _CompileClock()

    def run(key):
        t0 = time.perf_counter()
        with clock.section(key):
            if key in _MEAN_FIELD_SECTIONS:
                ctx.once("mean-field program", _compile_mean_field_program)
            section = SECTIONS[key](ctx)
        seconds = time.perf_counter() - t0
        section = section._replace(seconds=seconds, timing=clock.timing(key, seconds))
        with report_lock:
            done[0] += 1
            if progress is not None:
                verdict = "pass" if section.passed else "FAIL"
                compiled = section.timing["compile_seconds"]
                print(f"[{done[0]}/{len(keys)}] {key}: {verdict} ({section.seconds:.1f} s, of "
                      f"which {compiled:.1f} s compiling; {time.perf_counter() - start:.0f} s "
                      "elapsed)", file=progress, flush=True)  # fmt: skip
        return section

    # Sections are independent and mostly compile, which XLA does outside the GIL on one core:
    # running `jobs` at a time keeps every core compiling. Results keep the report's order.
    if progress is not None:
        print(f"reproducing {len(keys)} section{'' if len(keys) == 1 else 's'} ({'quick' if quick else 'full'} sizes, "
              f"{jobs} at a time) into {folder}", file=progress, flush=True)  # fmt: skip
    with clock.listening(), ThreadPoolExecutor(max_workers=jobs) as pool:
        started = sorted(keys, key=_LONGEST_FIRST.count, reverse=True)  # stable: else in order
        futures = {key: pool.submit(run, key) for key in started}
        results = [futures[key].result() for key in keys]
    seconds = time.perf_counter() - start
    device = jax.devices()[0]
    meta = {
        "title": "jaxflow: the gradient-flow notes, reproduced",
        "jaxflow": jf.__version__,
        "jax": jax.__version__,
        "device": f"{device.platform} ({device.device_kind}) × {jax.device_count()}",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "seconds": round(seconds, 1),
        "compile_seconds": round(sum(s.timing["compile_seconds"] for s in results), 1),
        "compilations": sum(s.timing["compilations"] for s in results),
    }
    return results, meta, seconds

"""Run the benchmarks side by side as whole processes, check their checksums, and report.

    python benchmarks/run.py [--quick | --scale full|quick|gpu] [--workload NAME ...]
                             [--impl NAME ...] [--repeats N] [--check] [--note TEXT]

For each workload the runner

1. draws the workload's data once (``workloads/``) into a temporary directory, so every
   implementation loads the very same weights and inputs;
2. computes the float64 NumPy reference checksums (skipped at the GPU scale, where they would take
   longer than the benchmark; the implementations must still agree with each other);
3. runs every implementation once untimed (warm file caches; a script whose jaxflow API has not
   landed reports ``unavailable`` here and is skipped, clearly reported), then ``--repeats``
   timed rounds that alternate the implementations A B C A B C …;
4. **refuses** any implementation whose checksum disagrees with the reference or with the
   baseline (``workloads.CHECKSUM_RTOL``, or the spec's statistical ``checksum_rtol``): its times are not reported and the exit status is 1;
5. reports per implementation the median [min–max] whole-process wall time, the in-process
   compile and steady-state times the script reports (``protocol.py``), peak RSS (the child's
   ``VmHWM``), and the ratio to the workload's baseline (jaxflow; for the monitor, the plain
   optax step) computed round by round, so each ratio compares two runs taken seconds apart;
6. for the spectra sweep, measures the roofline (``roofline.py``) and prints the floor time and
   jaxflow's ratio to it.

Results go to ``benchmarks/results/<machine>-<date>.json`` and ``.md`` (never overwriting: a
second run the same day gets a time suffix). ``--check`` runs each implementation once for the
checksums only and writes nothing (the test suite's smoke test).

The PyTorch scripts run under ``--torch-python`` (or ``$JAXFLOW_BENCH_TORCH_PYTHON``), the jax ones
under ``--python`` (or ``$JAXFLOW_BENCH_PYTHON``), both defaulting to this interpreter; when torch
cannot be imported there, the PyTorch implementations are reported as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _results  # noqa: E402
import protocol  # noqa: E402
import roofline  # noqa: E402
import workloads  # noqa: E402


class Implementation(NamedTuple):
    """One implementation of a workload: a script run as a whole process."""

    name: str
    script: str
    runtime: str  # "jax" or "torch": which interpreter runs it
    args: tuple[str, ...] = ()


_PUBLIC_API = "spectra_public_api.py"  # the spectra sweep written with jaxflow's public API

IMPLEMENTATIONS = {
    "spectra": [
        Implementation("jaxflow", "spectra_jaxflow.py", "jax"),
        Implementation("jaxflow-api", _PUBLIC_API, "jax"),
        Implementation("jaxflow-api-o1", _PUBLIC_API, "jax", ("--variant", "jit-o1")),
        Implementation("jaxflow-api-eager", _PUBLIC_API, "jax", ("--variant", "eager")),
        Implementation("jaxflow-api-prefix", _PUBLIC_API, "jax", ("--variant", "prefix")),
        Implementation("torch-func", "spectra_torch_func.py", "torch"),
        Implementation("torch-tutorial", "spectra_torch_tutorial.py", "torch"),
        Implementation("jax-eager", "spectra_jax_eager.py", "jax"),
    ],
    "notes": [
        Implementation("jaxflow", "notes_jaxflow.py", "jax"),
        Implementation("torch-notes", "notes_torch.py", "torch"),
    ],
    "deep-chain": [
        Implementation("jaxflow", "deep_chain_jaxflow.py", "jax"),
        Implementation("torch-func", "deep_chain_torch.py", "torch"),
    ],
    "trainability": [
        Implementation("jaxflow", "trainability_jaxflow.py", "jax"),
        Implementation("torch-func", "trainability_torch_func.py", "torch"),
        Implementation("torch-loop", "trainability_torch_loop.py", "torch"),
    ],
    "monitor": [
        Implementation("optax", "monitor_jaxflow.py", "jax", ("--variant", "plain")),
        Implementation("jaxflow-monitor", "monitor_jaxflow.py", "jax", ("--variant", "monitor")),
    ],
}
"""workload → implementations; the first is the baseline every ratio divides by (when it is not
among ``--impl``, the first one selected is)."""

TARGETS = {
    ("spectra", "torch-func"): ("whole", 2.0, "jaxflow ≥ 2× faster than the best PyTorch"),
    ("spectra", "torch-tutorial"): ("whole", 10.0, "jaxflow ≥ 10× faster than the tutorial loop"),
    ("notes", "torch-notes"): ("whole", 1.0, "jaxflow no slower than the notes' PyTorch"),
    ("trainability", "torch-func"): ("whole", 3.0, "jaxflow ≥ 3× faster than the best PyTorch"),
    ("monitor", "jaxflow-monitor"): ("steady", 1.1, "the monitor adds ≤ 10% to a step"),
}
"""(workload, implementation) → (which time, bound on ratio, what the issue asks). Competitor
ratios must be ≥ the bound; the monitor's overhead ratio ≤ it."""


class Run(NamedTuple):
    """One whole-process run."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    record: dict | None
    error: str | None


def run_process(command: list[str], env: dict, timeout: float) -> Run:
    """Runs ``command`` to completion: wall time, peak RSS and its result record.

    Peak RSS is the child's ``VmHWM`` (``protocol.peak_rss_mb``), polled while it runs and as the
    script reports it at the end; only without ``/proc`` does it fall back to ``os.wait4``'s
    ``ru_maxrss``, which on Linux would include this runner's own size at the fork.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True
        )
        deadline, peak = start + timeout, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(filter(None, (peak, protocol.peak_rss_mb(proc.pid))), default=None)
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                rss = peak if peak is not None else usage.ru_maxrss / 1024
                return Run(timeout, rss, -9, None, f"timed out after {timeout:.0f} s")
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    rss = peak if peak is not None else usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        return Run(wall, rss, proc.returncode, None, f"exit status {proc.returncode}:\n{tail}")
    try:
        record = protocol.parse(stdout)
    except ValueError as exc:
        return Run(wall, rss, 0, None, f"{exc}; stdout ends:\n{stdout[-2000:]}")
    reported = record.get("peak_rss_mb")
    if reported is not None:
        rss = max(rss, reported) if peak is not None else reported
    return Run(wall, rss, 0, record, None)


def _interpreters(args) -> dict:
    return {
        "jax": args.python or os.environ.get("JAXFLOW_BENCH_PYTHON") or sys.executable,
        "torch": args.torch_python
        or os.environ.get("JAXFLOW_BENCH_TORCH_PYTHON")
        or sys.executable,
    }


_PROBES: dict = {}


def _importable(python: str, module: str, env: dict) -> str | None:
    """None if ``python`` can import ``module``, else the reason (probed once per pair)."""
    if (python, module) not in _PROBES:
        probe = subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True, text=True, env=env
        )
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        _PROBES[python, module] = (
            None
            if probe.returncode == 0
            else (
                f"{module} is not importable by {python} ({last}); install the bench extra "
                "(pip install -e '.[bench]') or pass --torch-python"
            )
        )
    return _PROBES[python, module]


def _env(cache_dir: str = "off") -> dict:
    """The children's environment; ``cache_dir`` is their ``JAXFLOW_CACHE_DIR`` (default
    ``off``: every process compiles, as a first run does)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, HERE, env.get("PYTHONPATH")) if p)
    env["JAXFLOW_CACHE_DIR"] = cache_dir
    return env


def _stats(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _verify(record: dict, reference: dict | None, baseline: dict | None, rtol: float) -> str | None:
    """None if the record's checksums agree with the reference and the baseline to ``rtol`` (the
    workload's), else why not."""
    for label, expected in (("the float64 reference", reference), ("the baseline", baseline)):
        if expected is None:
            continue
        ok, message = workloads.checksums_agree(record["checksums"], expected, rtol)
        if not ok:
            return f"checksum disagrees with {label}: {message}"
    return None


def bench_workload(name: str, args, interpreters: dict, env: dict, data_root: str) -> dict:
    """Runs one workload's implementations (see the module docs) and returns its result dict."""
    spec = workloads.get_spec(name, args.scale)
    impls = [i for i in IMPLEMENTATIONS[name] if not args.impl or i.name in args.impl]
    result = {"spec": spec.__dict__ | {"name": name}, "implementations": {}, "ratios": {}}
    log(f"\n== {name} ({args.scale}): {spec}")
    try:
        data = workloads.get_workload(name).draw(spec)
    except ImportError as exc:  # an optional package the data needs (the digits: scikit-learn)
        reason = f"its data cannot be drawn here: {exc}"
        log(f"   skipped: {reason}")
        result["implementations"] = {
            i.name: {"status": "skipped", "reason": reason, "runs": [], "script": i.script}
            for i in impls
        }
        return result
    data_dir = workloads.save_data(data, os.path.join(data_root, name))
    reference_fn = workloads.get_workload(name).reference
    rtol = workloads.checksum_rtol(spec)
    reference = None
    if reference_fn is not None and (
        args.reference == "always" or (args.reference == "auto" and args.scale != "gpu")
    ):
        start = time.perf_counter()
        reference = reference_fn(spec, data)
        log(f"   float64 reference checksums {reference} ({time.perf_counter() - start:.1f} s)")
    result["reference_checksums"] = reference
    del data

    entries = {}
    for impl in impls:
        entry = {"status": "pending", "runs": [], "script": impl.script, "runtime": impl.runtime}
        missing = _importable(interpreters[impl.runtime], impl.runtime, env)
        if missing:
            entry.update(status="skipped", reason=missing)
            log(f"   {impl.name}: skipped: {missing}")
        entries[impl.name] = entry
    result["implementations"] = entries

    def command(impl):
        return [
            interpreters[impl.runtime],
            os.path.join(HERE, impl.script),
            "--scale",
            args.scale,
            "--data",
            data_dir,
            "--device",
            args.device,
            *impl.args,
        ]

    baseline_name = baseline_of(name, impls)
    result["baseline"] = baseline_name
    baseline_checksums = None
    # The warm-up round: availability, crashes and checksums; not timed.
    for impl in impls:
        entry = entries[impl.name]
        if entry["status"] != "pending":
            continue
        run = run_process(command(impl), env, args.timeout)
        if run.error:
            entry.update(status="failed", reason=run.error)
            log(f"   {impl.name}: FAILED: {run.error}")
            continue
        if run.record["status"] == "unavailable":
            entry.update(status="unavailable", reason=run.record["reason"])
            log(f"   {impl.name}: not available in this checkout: {run.record['reason']}")
            continue
        is_baseline = impl.name == baseline_name
        problem = _verify(run.record, reference, None if is_baseline else baseline_checksums, rtol)
        entry["checksums"] = run.record["checksums"]
        if problem:
            entry.update(status="refused", reason=problem)
            log(f"   {impl.name}: REFUSED: {problem}")
            continue
        if is_baseline:  # only a verified baseline becomes what the others must agree with
            baseline_checksums = run.record["checksums"]
        entry["status"] = "ok"
        compared = reference is not None or not is_baseline
        verdict = "agree" if compared else "(the baseline: nothing to compare with)"
        log(f"   {impl.name}: checksums {run.record['checksums']} {verdict} ({run.wall_s:.1f} s)")

    live = [i for i in impls if entries[i.name]["status"] == "ok"]
    rounds = 0 if args.check else args.repeats
    for r in range(rounds):
        for impl in live:
            entry = entries[impl.name]
            if entry["status"] != "ok":
                continue
            run = run_process(command(impl), env, args.timeout)
            problem = run.error or _verify(run.record, reference, baseline_checksums, rtol)
            if problem:
                entry.update(status="refused" if not run.error else "failed", reason=problem)
                log(f"   {impl.name} round {r + 1}: {entry['status'].upper()}: {problem}")
                continue
            entry["runs"].append(
                {
                    "round": r,
                    "wall_s": run.wall_s,
                    "peak_rss_mb": run.peak_rss_mb,
                    "phases": run.record["phases"],
                    "info": run.record.get("info", {}),
                }
            )
            log(
                f"   {impl.name} round {r + 1}/{rounds}: {run.wall_s:.2f} s whole, "
                f"run {_fmt(run.record['phases'].get('run_s'))} s, {run.peak_rss_mb:.0f} MB"
            )

    for entry in entries.values():
        if entry["status"] != "ok" or not entry["runs"]:
            entry.pop("summary", None)
            continue
        runs = entry["runs"]
        entry["summary"] = {
            "wall_s": _stats([r["wall_s"] for r in runs]),
            "peak_rss_mb": _stats([r["peak_rss_mb"] for r in runs]),
            **{
                k: _stats([r["phases"].get(k) for r in runs])
                for k in ("import_s", "data_s", "compile_s", "run_s")
            },
        }
    baseline = entries.get(baseline_name)
    if baseline and baseline.get("summary"):
        base_runs = {r["round"]: r for r in baseline["runs"]}
        for impl_name, entry in entries.items():
            if impl_name == baseline_name or not entry.get("summary"):
                continue
            pairs = [(r, base_runs[r["round"]]) for r in entry["runs"] if r["round"] in base_runs]
            result["ratios"][impl_name] = {
                "whole": _stats([a["wall_s"] / b["wall_s"] for a, b in pairs]),
                "steady": _stats([a["phases"]["run_s"] / b["phases"]["run_s"] for a, b in pairs]),
            }
    return result


def baseline_of(name: str, impls: list[Implementation]) -> str:
    """The implementation a workload's ratios divide by: its first, or where that one is not
    selected, the first selected (e.g. ``--impl jaxflow-api torch-func``)."""
    names = [i.name for i in impls]
    first = IMPLEMENTATIONS[name][0].name
    return first if first in names or not names else names[0]


def spectra_roofline(args, interpreters, env, result) -> dict:
    """Measures the roofline with every backend available and relates jaxflow's time to it."""
    spec = workloads.get_spec("spectra", args.scale)
    measurements = []
    for backend, runtime in (("jax", "jax"), ("numpy", "jax"), ("torch", "torch")):
        if backend == "numpy" and args.device != "cpu":
            continue
        if _importable(interpreters[runtime], backend, env):
            continue
        cmd = [
            interpreters[runtime],
            os.path.join(HERE, "roofline.py"),
            "--backend",
            backend,
            "--width",
            str(spec.width),
            "--device",
            args.device,
        ]
        run = run_process(cmd, env, args.timeout)
        if run.error:
            log(f"   roofline {backend}: FAILED: {run.error}")
            continue
        measurements.append(run.record["info"])
    if not measurements:
        return {"error": "no roofline measurement succeeded"}
    rates = roofline.best_rates(measurements)
    counts = spec.counts(reuse_prefixes=True)
    out = {
        "measurements": measurements,
        "best": rates,
        "counts": counts,
        "counts_per_configuration": spec.counts(reuse_prefixes=False),
        **roofline.floor(counts, rates),
    }
    jaxflow = result["implementations"].get("jaxflow", {}).get("summary")
    if jaxflow:
        out["jaxflow_steady_over_floor"] = jaxflow["run_s"]["median"] / out["floor_s"]
        out["jaxflow_whole_over_floor"] = jaxflow["wall_s"]["median"] / out["floor_s"]
    return out


def _fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_stats(s, digits=2):
    if not s:
        return "–"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def markdown(report: dict) -> str:
    """The report as markdown: one table per workload, the roofline, targets and notes."""
    meta = report["meta"]
    lines = [f"# Benchmarks: {meta['machine']}, {meta['date']}", ""]
    lines.append(
        f"{meta['cpu']}, {meta['cores']} cores; scale `{meta['scale']}`, {meta['repeats']} "
        f"timed rounds after one warm-up; load average {meta['load_start']} at start, "
        f"{meta['load_end']} at end."
    )
    if meta.get("note"):
        lines += ["", f"**Note:** {meta['note']}"]
    lines += [
        "",
        "Times in seconds, median [min–max]; ratios are the implementation's time over the "
        "baseline's, taken round by round.",
        "",
    ]
    for name, w in report["workloads"].items():
        impls = w["implementations"]
        base = w.get("baseline", IMPLEMENTATIONS[name][0].name)
        lines += [f"## {name}", "", f"`{json.dumps(w['spec'])}`", ""]
        lines.append(
            f"| implementation | whole process | compile | steady state | peak RSS MB | "
            f"÷ {base} (whole) | ÷ {base} (steady) |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for impl_name, e in impls.items():
            if e.get("summary"):
                s = e["summary"]
                ratio = w["ratios"].get(impl_name, {})
                lines.append(
                    f"| {impl_name} | {_fmt_stats(s['wall_s'])} | {_fmt_stats(s['compile_s'])} | "
                    f"{_fmt_stats(s['run_s'], 3)} | {_fmt(s['peak_rss_mb']['max'], 0)} | "
                    f"{_fmt_stats(ratio.get('whole'))} | {_fmt_stats(ratio.get('steady'))} |"
                )
            else:
                why = e.get("reason", e["status"]).splitlines()[0]
                lines.append(f"| {impl_name} | **{e['status']}**: {why} | | | | | |")
        for impl_name, ratio in w["ratios"].items():
            # The targets are the issue's, for the full scale on a CPU.
            target = (
                TARGETS.get((name, impl_name))
                if meta["scale"] == "full" and meta["device"] == "cpu"
                else None
            )
            if target and ratio.get(target[0]):
                which, bound, text = target
                value = ratio[which]["median"]
                met = value >= bound if impl_name != "jaxflow-monitor" else value <= bound
                lines.append(
                    f"\nTarget ({text}): {which} ratio {value:.2f} — {'met' if met else 'NOT met'}."
                )
        if w.get("roofline") and "floor_s" in w["roofline"]:
            lines += ["", _roofline_text(w["roofline"], full=meta["scale"] == "full")]
        lines.append("")
    return "\n".join(lines)


def _roofline_text(r: dict, full: bool) -> str:
    """The roofline paragraph of the markdown report."""
    best, counts = r["best"], r["counts"]
    gflop = (counts["product_flops"] + counts["jacobian_flops"] + counts["forward_flops"]) / 1e9
    rate, rate_source = best["matmul_batched_gflops"]
    text = (
        f"**Roofline.** {counts['svds']:,} SVDs at {best['svd_us'][0]:.1f} µs "
        f"({best['svd_us'][1]}) = {r['svd_s']:.2f} s; {gflop:.2f} GFLOP at {rate:.1f} GFLOP/s "
        f"batched ({rate_source}) = {r['matmul_s']:.2f} s; floor {r['floor_s']:.2f} s "
        f"(large-matmul peak "
        f"{best['matmul_large_gflops'][0]:.0f} GFLOP/s). A loop over configurations does "
        f"{r['counts_per_configuration']['svds']:,} SVDs."
    )
    if "jaxflow_steady_over_floor" in r:
        text += (
            f"\njaxflow steady state = {r['jaxflow_steady_over_floor']:.2f} × floor; whole process"
            f" = {r['jaxflow_whole_over_floor']:.2f} × floor"
            + (" (target: within 2×)." if full else ".")
        )
    return text


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="the quick scale (same as --scale quick)")
    p.add_argument("--scale", choices=workloads.SCALES, default="full")
    p.add_argument(
        "--workload",
        nargs="+",
        choices=list(IMPLEMENTATIONS),
        default=None,
        help="workloads to run (default: all)",
    )
    p.add_argument("--impl", nargs="+", default=None, help="only these implementations (by name)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument(
        "--check", action="store_true", help="one run each, checksums only; write nothing"
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per process (default 1800)"
    )
    p.add_argument(
        "--reference",
        choices=("auto", "always", "never"),
        default="auto",
        help="float64 reference checksums (auto: all but the gpu scale)",
    )
    p.add_argument(
        "--cache-dir",
        default="off",
        metavar="DIR",
        help="jaxflow's persistent compilation cache for the jax processes (JAXFLOW_CACHE_DIR); "
        "the untimed first run fills it, so the timed rounds are second and later processes "
        "(default: off, every process compiles)",
    )
    p.add_argument("--no-roofline", action="store_true", help="skip the roofline measurement")
    p.add_argument("--python", default=None, help="interpreter for the jax scripts")
    p.add_argument("--torch-python", default=None, help="interpreter for the PyTorch scripts")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    p.add_argument("--json", default=None, help="also write the report to this new file (any mode)")
    p.add_argument(
        "--machine", default=socket.gethostname(), help="machine name for the results file"
    )
    p.add_argument(
        "--note", default="", help="a note stored with the results (e.g. the machine was loaded)"
    )
    return p


def run_benchmarks(args) -> tuple[dict, int]:
    """Runs what ``args`` asks for; returns the report and the exit status (1 if any
    implementation failed or was refused)."""
    names = args.workload or list(IMPLEMENTATIONS)
    interpreters, env = _interpreters(args), _env(args.cache_dir)
    now = datetime.datetime.now()
    report = {
        "meta": {
            "machine": args.machine,
            "date": now.strftime("%Y-%m-%d"),
            "time": now.isoformat(timespec="seconds"),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "scale": args.scale,
            "repeats": args.repeats,
            "device": args.device,
            "compile_cache": args.cache_dir,
            "note": args.note,
            "interpreters": interpreters,
            "command": " ".join(sys.argv),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="jaxflow-bench-") as data_root:
        for name in names:
            result = bench_workload(name, args, interpreters, env, data_root)
            if name == "spectra" and not args.check and not args.no_roofline:
                result["roofline"] = spectra_roofline(args, interpreters, env, result)
            report["workloads"][name] = result
    report["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    bad = [
        f"{name}/{impl}"
        for name, w in report["workloads"].items()
        for impl, e in w["implementations"].items()
        if e["status"] in ("failed", "refused")
    ]
    if bad:
        log(f"failed or refused: {', '.join(bad)}; see above")
    return report, 1 if bad else 0


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:
        if args.scale not in ("full", "quick"):
            p.error("--quick contradicts --scale " + args.scale)
        args.scale = "quick"
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    known = {i.name for impls in IMPLEMENTATIONS.values() for i in impls}
    if args.impl and not set(args.impl) <= known:
        p.error(f"unknown --impl {sorted(set(args.impl) - known)}; known: {sorted(known)}")
    if args.json:
        try:
            _results.check_new([args.json])
        except FileExistsError as error:
            p.error(f"--json {error}")
    report, status = run_benchmarks(args)
    if args.json:
        _results.write_new({args.json: json.dumps(report, indent=1)})
    if args.check:
        for name, w in report["workloads"].items():
            for impl_name, e in w["implementations"].items():
                detail = e.get("reason") or e.get("checksums")
                print(f"{name:11s} {impl_name:16s} {e['status']:12s} {detail}")
        return status
    text = markdown(report)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = _results.fresh_stem(args.out, args.machine, report["meta"]["date"])
    _results.write_new({path + ".json": json.dumps(report, indent=1), path + ".md": text})
    log(f"\nwrote {path}.json and {path}.md")
    return status


if __name__ == "__main__":
    sys.exit(main())

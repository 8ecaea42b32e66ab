"""How jaxflow's spectra sweep scales: time and peak memory against depth, width and seeds.

Each point is a fresh process running ``spectra_jaxflow.spectra`` on a sweep that differs from a
base grid along one axis, so its peak RSS and its compile time are its own. Three axes:

* ``depth`` (to 1,000): the compile time must stay flat — the chain is one ``lax.scan`` — while
  the run time grows linearly;
* ``width`` (32 … 1,024): the run time grows like n³ (products and SVDs);
* ``seeds``: the run time grows linearly once the batch fills the cores; compile time is flat.

Writes ``benchmarks/results/scaling-<machine>-<date>.json`` and one figure per axis
(``…-depth.png``, ``…-width.png``, ``…-seeds.png``: time on the left, peak memory on the right),
never overwriting.

Usage: ``python benchmarks/scaling.py [--quick] [--axis depth width seeds] [--repeats N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import socket
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _results  # noqa: E402
import protocol  # noqa: E402
import run  # noqa: E402
import workloads  # noqa: E402
from workloads import SpectraSweep  # noqa: E402

AXES = {
    "full": {
        "depth": (SpectraSweep(width=64, depths=(1,), seeds=2, inputs=2), [10, 30, 100, 300, 1000]),
        "width": (
            SpectraSweep(
                width=1, depths=(10,), activations=("tanh",), inits=("xavier",), seeds=2, inputs=1
            ),
            [32, 64, 128, 256, 512, 1024],
        ),
        "seeds": (SpectraSweep(width=64, depths=(40,), seeds=1, inputs=4), [1, 2, 4, 8, 16, 32]),
    },
    "quick": {
        "depth": (SpectraSweep(width=16, depths=(1,), seeds=1, inputs=1), [5, 10, 20, 40]),
        "width": (
            SpectraSweep(
                width=1, depths=(5,), activations=("tanh",), inits=("xavier",), seeds=1, inputs=1
            ),
            [8, 16, 32],
        ),
        "seeds": (SpectraSweep(width=16, depths=(5,), seeds=1, inputs=1), [1, 2, 4]),
    },
}
"""scale → axis → (base sweep, values); a point replaces the axis's field of the base."""

FIELDS = {"depth": "depths", "width": "width", "seeds": "seeds"}


def point_spec(base: SpectraSweep, axis: str, value: int) -> SpectraSweep:
    """The base sweep with ``axis`` set to ``value`` (a depth point sweeps that one depth)."""
    return dataclasses.replace(base, **{FIELDS[axis]: (value,) if axis == "depth" else value})


def child(spec_json: str, device: str) -> int:
    """Runs one point in this process and prints its result line."""
    phases = protocol.Phases()
    protocol.use_jax_platform(device)
    import jax

    import spectra_jaxflow

    phases.imports_done()
    raw = json.loads(spec_json)
    spec = SpectraSweep(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    with phases.time("data_s"):
        data = workloads.spectra_data(spec)
    spectra_jaxflow.spectra(spec, data, phases)
    stats = jax.devices()[0].memory_stats() or {}
    protocol.emit(
        "scaling",
        "jaxflow",
        "point",
        {},
        phases,
        {"device_peak_bytes": stats.get("peak_bytes_in_use")},
    )
    return 0


def measure(
    axis: str, base: SpectraSweep, values: list[int], repeats: int, device: str, timeout: float
) -> list[dict]:
    """Runs every point of one axis ``repeats`` times; medians per point."""
    points = []
    for value in values:
        spec = point_spec(base, axis, value)
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            json.dumps(dataclasses.asdict(spec)),
            "--device",
            device,
        ]
        runs = []
        for _ in range(repeats):
            result = run.run_process(cmd, run._env(), timeout)
            if result.error:
                raise SystemExit(f"scaling {axis}={value} failed: {result.error}")
            runs.append(result)
        phases = [r.record["phases"] for r in runs]
        point = {
            axis: value,
            "wall_s": statistics.median(r.wall_s for r in runs),
            "compile_s": statistics.median(p["compile_s"] for p in phases),
            "run_s": statistics.median(p["run_s"] for p in phases),
            "peak_rss_mb": max(r.peak_rss_mb for r in runs),
            "device_peak_mb": _mb(runs[0].record["info"].get("device_peak_bytes")),
            "svds": spec.counts()["svds"],
        }
        run.log(
            f"   {axis}={value}: run {point['run_s']:.3f} s, compile {point['compile_s']:.2f} s, "
            f"peak RSS {point['peak_rss_mb']:.0f} MB"
        )
        points.append(point)
    return points


def _mb(nbytes):
    return None if nbytes is None else nbytes / 2**20


def plot(axis: str, base: SpectraSweep, points: list[dict], path: str) -> str:
    """One figure: run and compile time against the axis (log–log), and peak memory."""
    from matplotlib.figure import Figure

    from jaxflow.plotting import STYLE, new_axes, save_figure

    fig = Figure(figsize=(2 * STYLE["figsize"][0], STYLE["figsize"][1]), layout="constrained")
    left, right = new_axes(fig.add_subplot(1, 2, 1)), new_axes(fig.add_subplot(1, 2, 2))
    x = [p[axis] for p in points]
    style = dict(
        marker=STYLE["marker"], markersize=STYLE["markersize"], linewidth=STYLE["linewidth"]
    )
    left.loglog(x, [p["run_s"] for p in points], label="run (steady state)", **style)
    left.loglog(x, [p["compile_s"] for p in points], label="compile", **style)
    left.loglog(x, [p["wall_s"] for p in points], label="whole process", linestyle=":", **style)
    left.set_xlabel(f"{axis} (log scale)")
    left.set_ylabel("time, s (log scale)")
    left.legend()
    right.semilogx(x, [p["peak_rss_mb"] for p in points], label="peak RSS (process)", **style)
    if all(p["device_peak_mb"] is not None for p in points):
        right.semilogx(
            x, [p["device_peak_mb"] for p in points], label="peak device memory", **style
        )
    right.set_ylim(bottom=0)  # the JAX runtime alone is a few hundred MB; show growth against it
    right.set_xlabel(f"{axis} (log scale)")
    right.set_ylabel("memory, MB")
    right.legend()
    fixed = ", ".join(
        f"{k}={'/'.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in dataclasses.asdict(base).items()
        if k != FIELDS[axis]
    )
    fig.suptitle(
        f"jaxflow spectra sweep against {axis}, one process per point ({fixed})",
        fontsize=STYLE["title_fontsize"],
    )
    return save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small points, for development")
    p.add_argument("--axis", nargs="+", choices=list(FIELDS), default=list(FIELDS))
    p.add_argument("--repeats", type=int, default=1, help="runs per point (median)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--machine", default=socket.gethostname())
    p.add_argument("--note", default="")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.device)
    scale = "quick" if args.quick else "full"
    report = {
        "meta": {
            "machine": args.machine,
            "date": datetime.date.today().isoformat(),
            "scale": scale,
            "cpu": run._cpu_model(),
            "cores": os.cpu_count(),
            "note": args.note,
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "axes": {},
    }
    for axis in args.axis:
        base, values = AXES[scale][axis]
        run.log(f"== {axis}: {values}")
        report["axes"][axis] = {
            "base": dataclasses.asdict(base),
            "points": measure(axis, base, values, args.repeats, args.device, args.timeout),
        }
    report["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(args.out, exist_ok=True)
    prefix = _results.fresh_stem(args.out, f"scaling-{args.machine}", report["meta"]["date"])
    _results.check_new([prefix + ".json", *(f"{prefix}-{axis}.png" for axis in report["axes"])])
    for axis, result in report["axes"].items():
        base = AXES[scale][axis][0]
        result["figure"] = os.path.basename(
            plot(axis, base, result["points"], f"{prefix}-{axis}.png")
        )
    _results.write_new({prefix + ".json": json.dumps(report, indent=1)})
    run.log(f"wrote {prefix}.json and its figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())

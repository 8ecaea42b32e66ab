"""Peak memory of ``jf.gradient_bound`` at depth 1,000: the base commit against this tree.

Before the chain engine, ``gradient_bound`` kept every per-layer Jacobian and every prefix product
(``_scaled_products(keep_all=True)``: O(L·n²)) and ran a second forward pass for the prefix
depths; now one forward scan carries the product with a running scale and one backward scan pulls
every prefix depth's readout gradient down at once (O(L·n)).

Each (version, prefixes) case runs in a fresh child process, which reports its peak resident
memory (``VmHWM``, read as :func:`protocol.peak_rss_mb` does) after importing jaxflow and
initialising the model (``baseline``) and after the jitted ``gradient_bound`` has run (``peak``);
``peak − baseline`` is what the bound itself (compilation included) added. The base commit's
``jaxflow`` is exported with ``git archive`` into a temporary directory. Results go to
``benchmarks/results/gradient-bound-memory-<machine>-<date>-depth<L>-width<n>.{json,md}``.

    python benchmarks/gradient_bound_memory.py [--depth 1000] [--width 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _results  # noqa: E402

BASE_COMMIT = "135eff6"

CHILD = r"""
import json, sys, time

def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

depth, width, prefixes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
import jax, jax.numpy as jnp
import jaxflow as jf
model = jf.mlp(depth, width, activation="sigmoid", init="orthogonal")
x = jax.random.normal(jax.random.key(1), (width,))
variables = model.init(jax.random.key(0), x)
jax.block_until_ready(variables)
baseline = hwm()
bound = jax.jit(lambda v, x: jf.gradient_bound(model, v, x, prefixes=prefixes))
start = time.perf_counter()
b = jax.block_until_ready(bound(variables, x))
seconds = time.perf_counter() - start
log_ratio = jnp.ravel(b.log_ratio)[-1]
print(json.dumps({
    "jaxflow": jf.__file__, "baseline_mb": round(baseline, 1), "peak_mb": round(hwm(), 1),
    "seconds": round(seconds, 2), "log_ratio": float(log_ratio),
    "log_worst": float(jnp.ravel(b.log_worst)[-1]),
}))
"""


def _run(pythonpath, depth, width, prefixes):
    env = {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(depth), str(width), "1" if prefixes else "0"],
        cwd=pythonpath,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="depth 100")
    parser.add_argument("--machine", default="dev-2core")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    depth = 100 if args.quick else args.depth
    label = f"depth{depth}-width{args.width}"
    stem, date = _results.claim_stem(args.out, "gradient-bound-memory", args.machine, label)
    rows = []
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(
            ["git", "archive", BASE_COMMIT, "jaxflow"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        for prefixes in (False, True):
            for version, path in ((f"base {BASE_COMMIT}", base), ("chain engine", ROOT)):
                result = _run(path, depth, args.width, prefixes)
                result.pop("jaxflow")
                rows.append({"version": version, "prefixes": prefixes, **result})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = {
        "meta": {
            "date": date,
            "machine": args.machine,
            "depth": depth,
            "width": args.width,
            "activation": "sigmoid",
            "init": "orthogonal",
            "python": sys.version.split()[0],
        },
        "rows": rows,
    }
    lines = [
        f"gradient_bound peak memory, sigmoid MLP depth {depth}, width {args.width} "
        f"({args.machine}, {date})",
        "",
        "| version | prefixes | peak RSS (MB) | baseline (MB) | added by the bound (MB) "
        "| seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['version']} | {r['prefixes']} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
            f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['seconds']:.1f} |"
        )
    _results.write_report(stem, report, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

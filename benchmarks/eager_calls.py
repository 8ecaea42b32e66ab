"""A repeated eager call of the public measurements against the same call under ``jax.jit``.

Issue 13, item 1: a user's script calls ``jf.jacobian_chain(model, variables, x)`` in a loop,
without a ``jit`` of its own. Each function keeps its compiled program, so from the second call on
the eager call should cost what the jitted one does (target: within 1.5×). In one process, per
function: the first eager call (trace and compile), then ``--repeats`` rounds alternating one
eager call and one call of ``jax.jit`` of the same function, each on new values of the same
shapes, and the trace/compile events (``jax.monitoring``) seen during the eager rounds, which
must be 0. Times are wall and CPU time of the process (XLA's threads included): on a shared
machine the wall time of a call varies several-fold with the load, its CPU time much less.
Results go to ``benchmarks/results/eager-calls-<machine>-<date>-depth<L>-width<n>.{json,md}``
(never overwriting).

    python benchmarks/eager_calls.py [--width 256] [--depth 12] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import _results  # noqa: E402


def _cases(jf, jnp, depth, width):
    model = jf.mlp(depth, width, activation="tanh", init="orthogonal")

    def block(w, h):
        return jnp.tanh(w @ h)

    return {
        "jacobian_chain": (lambda v, x, w, g: jf.jacobian_chain(model, v, x)),
        "jacobian_chain (block function)": (lambda v, x, w, g: jf.jacobian_chain(block, w, x)),
        "log_spectrum": (lambda v, x, w, g: jf.log_spectrum(model, v, x)),
        "lyapunov_exponents": (lambda v, x, w, g: jf.lyapunov_exponents(model, v, x, batches=4)),
        "gradient_bound": (lambda v, x, w, g: jf.gradient_bound(model, v, x)),
        "gradient_stats": (lambda v, x, w, g: jf.gradient_stats(g, v["params"])),
        "block_chain (functions)": (lambda v, x, w, g: jf.block_chain([jnp.tanh] * depth, None, x)),
    }, model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="depth 4, width 16, 3 repeats")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--machine", default=socket.gethostname())
    p.add_argument("--note", default="")
    p.add_argument("--only", nargs="+", metavar="NAME", help="measure only these functions")
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.repeats = 4, 16, 3

    import jax
    import jax.numpy as jnp
    from jax import monitoring

    import jaxflow as jf

    events = []
    monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: events.append(event)
        if event.startswith("/jax/core/compile/") else None
    )  # fmt: skip
    cases, model = _cases(jf, jnp, args.depth, args.width)
    if args.only:
        unknown = set(args.only) - set(cases)
        if unknown:
            p.error(f"--only: unknown {sorted(unknown)}; known: {sorted(cases)}")
        cases = {name: cases[name] for name in args.only}
    rounds = args.repeats + 2
    keys = jax.random.split(jax.random.key(0), 3 * rounds)
    xs = [jax.random.normal(k, (args.width,)) for k in keys[:rounds]]
    vs = [model.init(k, xs[0]) for k in keys[rounds : 2 * rounds]]
    ws = [jax.random.normal(k, (args.depth, args.width, args.width)) / args.width**0.5
          for k in keys[2 * rounds :]]  # fmt: skip
    # gradient_stats' "gradients": another round's parameters, so that under jax.jit the
    # gradients and the parameters are distinct arrays (the same array twice would let XLA
    # compute its norms once, which no real gradient allows).
    gs = [vs[i - 1]["params"] for i in range(rounds)]
    jax.block_until_ready((xs, vs, ws))

    def timed(f, *a):
        """(wall seconds, CPU seconds of this process, XLA's threads included)."""
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(f(*a))
        return time.perf_counter() - t, time.process_time() - c

    results = {}
    load_start = os.getloadavg()
    for name, f in cases.items():
        jitted = jax.jit(f)
        first = timed(f, vs[0], xs[0], ws[0], gs[0])[0]
        jit_first = timed(jitted, vs[0], xs[0], ws[0], gs[0])[0]
        eager, jit, recompiles = [], [], 0
        for i in range(1, args.repeats + 1):
            before = len(events)
            eager.append(timed(f, vs[i], xs[i], ws[i], gs[i]))
            recompiles += len(events) - before
            jit.append(timed(jitted, vs[i], xs[i], ws[i], gs[i]))
        # On a shared machine the wall time of one call varies several-fold with the load;
        # the process's CPU time much less, so the ratio is taken on both.
        ratios = [e[1] / j[1] for e, j in zip(eager, jit, strict=True)]
        wall_ratios = [e[0] / j[0] for e, j in zip(eager, jit, strict=True)]
        results[name] = {
            "first_eager_s": first,
            "first_jit_s": jit_first,
            "eager_s": statistics.median(e[0] for e in eager),
            "jit_s": statistics.median(j[0] for j in jit),
            "eager_cpu_s": statistics.median(e[1] for e in eager),
            "jit_cpu_s": statistics.median(j[1] for j in jit),
            "ratio_median": statistics.median(ratios),
            "ratio_min_max": [min(ratios), max(ratios)],
            "wall_ratio_median": statistics.median(wall_ratios),
            "wall_ratio_min_max": [min(wall_ratios), max(wall_ratios)],
            "compile_events_on_repeated_eager_calls": recompiles,
        }
        r = results[name]
        print(f"{name}: first {first:.2f} s; CPU eager {r['eager_cpu_s'] * 1e3:.1f} ms, jit "
              f"{r['jit_cpu_s'] * 1e3:.1f} ms, eager/jit {r['ratio_median']:.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]; wall {r['wall_ratio_median']:.2f}; "
              f"compile events {recompiles}", flush=True)  # fmt: skip
    now = datetime.datetime.now()
    meta = {
        "machine": args.machine,
        "time": now.isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "depth": args.depth,
        "width": args.width,
        "repeats": args.repeats,
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "note": args.note,
        "command": " ".join(sys.argv),
    }
    os.makedirs(args.out, exist_ok=True)
    stem = f"eager-calls-{args.machine}-{now:%Y-%m-%d}-depth{args.depth}-width{args.width}"
    path, n = os.path.join(args.out, stem), 1
    while os.path.exists(path + ".json"):
        n += 1
        path = os.path.join(args.out, f"{stem}-{n}")
    lines = [
        f"# Eager calls against jax.jit: depth {args.depth}, width {args.width}",
        "",
        f"{meta['time']}, {args.machine}, {meta['cores']} cores, jax {jax.__version__}, load "
        f"{meta['load_start']} → {meta['load_end']}; medians of {args.repeats} alternating rounds.",
        "",
        "| function | first call (wall) | eager (CPU) | jit (CPU) | eager / jit, CPU [min–max] "
        "| eager / jit, wall [min–max] | compiles on repeat |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| `{name}` | {r['first_eager_s']:.2f} s | {r['eager_cpu_s'] * 1e3:.1f} ms | "
            f"{r['jit_cpu_s'] * 1e3:.1f} ms | {r['ratio_median']:.2f} [{r['ratio_min_max'][0]:.2f}–"
            f"{r['ratio_min_max'][1]:.2f}] | {r['wall_ratio_median']:.2f} "
            f"[{r['wall_ratio_min_max'][0]:.2f}–{r['wall_ratio_min_max'][1]:.2f}] | "
            f"{r['compile_events_on_repeated_eager_calls']} |"
        )
    _results.write_new(
        {
            path + ".json": json.dumps({"meta": meta, "results": results}, indent=2),
            path + ".md": "\n".join(lines) + "\n",
        }
    )
    print(f"wrote {path}.json and .md")
    clean = all(r["compile_events_on_repeated_eager_calls"] == 0 for r in results.values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

"""Where the monitor's overhead comes from: adam steps that read the gradients less and less.

The monitor workload's step (the notes' DeepNet, batch 32, ``optax.adam``) with, chained in front
of adam, transformations that do ever more with the gradients: nothing (``optax.identity``), read
one scalar, read one slice of every leaf, ``optax.tree.norm`` (one pass), and
``jaxflow.gradient_monitor()`` (the gradient table). One process, the variants interleaved round
by round, the best of ``--rounds`` rounds of ``--steps`` steps each; the ratio is each variant's
time per step over adam's. Reading every leaf at all makes XLA materialise the gradients that
adam alone consumes inside its own fused update, which is a floor no monitor can go under (see
README.md, "Results and targets").

``--models`` (issue 13, item 4) times instead, per model, the adam step with and without
``jaxflow.gradient_monitor()``, alternating round by round: the notes' DeepNet (4 leaves, 22 rows),
a small CNN (10 leaves), a small transformer (70 leaves: 4 pre-LN blocks with attention, width 32),
``tiny`` — 100 leaves of 16 entries under a quadratic loss, whose step does almost nothing, so
the monitor's added time there is its fixed cost — and two parameter-heavy ReLU MLPs (256 × 8 at
batch 256, 1024 × 4 at batch 8), where its passes over the entries decide; beside them ``optax.tree.norm`` chained in front
of adam, the floor of any monitor that reads every entry. Reported: the median over rounds of each
variant's time per step (wall and process CPU time), the median of the per-round ratios and
differences, ``gradient_stats`` alone on the model's gradients, and the load.

Usage: ``python benchmarks/monitor_probe.py [--rounds 7] [--steps 1000] [--models] [--machine NAME]
[--out benchmarks/results]``; writes ``monitor-probe-<machine>-<date>.json`` (with ``--models``:
``monitor-models-...``), never overwriting.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _reader(fn):
    import optax

    return optax.GradientTransformation(lambda params: fn(params), lambda u, s, p=None: (u, fn(u)))


def variants():
    """name → optimizer, from adam alone to adam behind the monitor."""
    import jax
    import optax

    import jaxflow as jf

    def leaf_slices(tree):
        return [leaf.reshape(leaf.shape[0], -1)[:, 0] for leaf in jax.tree.leaves(tree)]

    adam = optax.adam(1e-3)
    return {
        "adam": adam,
        "identity + adam": optax.chain(optax.identity(), adam),
        "read one scalar + adam": optax.chain(
            _reader(lambda u: jax.tree.leaves(u)[0].ravel()[0]), adam
        ),
        "read a slice of every leaf + adam": optax.chain(_reader(leaf_slices), adam),
        "optax.tree.norm + adam": optax.chain(_reader(optax.tree.norm), adam),
        "jaxflow.gradient_monitor() + adam": optax.chain(jf.gradient_monitor(), adam),
    }


def models():
    """name → (params, loss function) of the ``--models`` set (see the module docs)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    import jaxflow as jf
    import workloads

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for c in (16, 32, 32):
                x = nn.avg_pool(nn.relu(nn.Conv(c, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10)(x)

    class Block(nn.Module):
        width: int
        heads: int

        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(self.heads)(h, h)
            h = nn.LayerNorm()(x)
            return x + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(h)))

    class Transformer(nn.Module):
        vocab: int = 64
        width: int = 32
        depth: int = 4

        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(self.vocab, self.width)(tokens)
            x = x + self.param("pos", nn.initializers.normal(0.02), (tokens.shape[1], self.width))
            for i in range(self.depth):
                x = Block(self.width, 4, name=f"layers_{i}")(x)
            return nn.Dense(self.vocab)(nn.LayerNorm()(x))

    def cross_entropy(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    out = {}
    spec = workloads.get_spec("monitor", "full")
    data = workloads.load_data("monitor", "full", None)
    params = jax.tree.map(jnp.asarray, workloads.mlp_variables(data, 0))["params"]
    x, y = jnp.asarray(data.x[0]), jnp.asarray(data.y[0])
    mlp = jf.mlp(spec.depth, spec.width, activation="relu", out_dim=1)
    out["deepnet"] = (params, lambda p: jnp.mean(jnp.square(mlp.apply({"params": p}, x) - y)))
    keys = jax.random.split(jax.random.key(0), 4)
    images = jax.random.normal(keys[0], (32, 16, 16, 3))
    labels = jax.random.randint(keys[1], (32,), 0, 10)
    cnn = CNN()
    out["cnn"] = (
        cnn.init(keys[2], images)["params"],
        lambda p: cross_entropy(cnn.apply({"params": p}, images), labels),
    )
    tokens = jax.random.randint(keys[3], (8, 16), 0, 64)
    transformer = Transformer()
    out["transformer"] = (
        transformer.init(keys[2], tokens)["params"],
        lambda p: cross_entropy(transformer.apply({"params": p}, tokens), jnp.roll(tokens, -1, 1)),
    )
    tiny = {f"leaf_{i:03d}": jnp.full((16,), 0.01 * (i + 1)) for i in range(100)}
    out["tiny"] = (tiny, lambda p: sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(p)))
    # Parameter-heavy steps, where the monitor's passes over the entries, not its fixed cost,
    # decide: 0.5M parameters at batch 256, and 4.2M at batch 8 (a step that mostly streams
    # memory: adam's update and the monitor both read every entry).
    for width, depth, batch in ((256, 8, 256), (1024, 4, 8)):
        k = jax.random.split(jax.random.key(width), 3)
        inputs = jax.random.normal(k[0], (batch, width))
        targets = jax.random.normal(k[1], (batch, 1))
        net = jf.mlp(depth, width, activation="relu", out_dim=1)
        out[f"mlp{width}x{depth}b{batch}"] = (
            net.init(k[2], inputs)["params"],
            lambda p, net=net, x=inputs, y=targets: jnp.mean(
                jnp.square(net.apply({"params": p}, x) - y)
            ),
        )
    return out


def _compile(params, loss_fn, optimizer):
    import jax
    import optax

    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = optimizer.init(params)
    return jax.jit(step).lower(params, state).compile(), state


def _time_steps(step, state, params, steps):
    """µs per step: (wall, CPU time of the process, XLA's threads included)."""
    import jax

    current, state = jax.block_until_ready(step(params, state)[:2])
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        current, state, _ = step(current, state)
    jax.block_until_ready(current)
    return (
        (time.perf_counter() - start) / steps * 1e6,
        (time.process_time() - cpu) / steps * 1e6,
    )


def _time_calls(fn, tree, calls):
    import jax

    jax.block_until_ready(fn(tree))
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = fn(tree)
    jax.block_until_ready(out)
    return (
        (time.perf_counter() - start) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def run_models(args) -> dict:
    """The ``--models`` measurement: per model, adam with and without the monitor, alternating."""
    import statistics

    import jax
    import optax

    import jaxflow as jf

    results, load = {}, [os.getloadavg()]
    for name, (params, loss_fn) in models().items():
        adam = optax.adam(1e-3)
        built = {
            "adam": _compile(params, loss_fn, adam),
            "monitor + adam": _compile(params, loss_fn, optax.chain(jf.gradient_monitor(), adam)),
            # The floor of any monitor that reads every entry: one global norm.
            "optax.tree.norm + adam": _compile(
                params, loss_fn, optax.chain(_reader(optax.tree.norm), adam)
            ),
        }
        # The measurement alone, on this model's gradients, against a program that reads one
        # entry of each leaf (the call's own dispatch): its fixed and per-entry cost in isolation.
        grads = jax.grad(loss_fn)(params)
        alone = {
            "read": jax.jit(lambda g: sum(leaf.ravel()[0] for leaf in jax.tree.leaves(g))),
            "gradient_stats": jax.jit(jf.gradient_stats),
        }
        times = {variant: [] for variant in [*built, *alone]}
        for _ in range(args.rounds):
            for variant, (step, state) in built.items():
                times[variant].append(_time_steps(step, state, params, args.steps))
            for variant, fn in alone.items():
                times[variant].append(_time_calls(fn, grads, args.steps))
        leaves = jax.tree.leaves(params)
        results[name] = {"leaves": len(leaves), "entries": sum(leaf.size for leaf in leaves)}
        line = f"{name:12s} {len(leaves):3d} leaves {results[name]['entries']:7d} entries"
        # On a shared machine the wall time varies several-fold with the load; the process's CPU
        # time much less: both are reported, each as medians of round-by-round comparisons.
        for clock, c in (("wall", 0), ("cpu", 1)):
            adam_t = [t[c] for t in times["adam"]]
            monitor_t = [t[c] for t in times["monitor + adam"]]
            ratios = [m / a for a, m in zip(adam_t, monitor_t, strict=True)]
            read, stats = times["read"], times["gradient_stats"]
            alone = [s[c] - r[c] for r, s in zip(read, stats, strict=True)]
            added = [m - a for a, m in zip(adam_t, monitor_t, strict=True)]
            floor_t = [t[c] for t in times["optax.tree.norm + adam"]]
            floor = [f / a for a, f in zip(adam_t, floor_t, strict=True)]
            results[name][clock] = {
                "step_us_median": {
                    v: statistics.median(t[c] for t in ts) for v, ts in times.items()
                },
                "ratio_median": statistics.median(ratios),
                "ratio_min_max": [min(ratios), max(ratios)],
                "floor_ratio_median": statistics.median(floor),
                "added_us_median": statistics.median(added),
                "stats_alone_us_median": statistics.median(alone),
            }
            r = results[name][clock]
            line += (f" | {clock}: adam {r['step_us_median']['adam']:7.1f} µs, monitor "
                     f"{r['added_us_median']:+6.1f} µs ×{r['ratio_median']:.2f} "
                     f"[{min(ratios):.2f}–{max(ratios):.2f}] (tree.norm "
                     f"×{r['floor_ratio_median']:.2f}), "
                     f"alone {r['stats_alone_us_median']:+6.1f}")  # fmt: skip
        results[name]["times_us"] = times
        print(line, flush=True)
        load.append(os.getloadavg())
    return {"models": results, "load_average": load}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--machine", default=os.uname().nodename)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--models", action="store_true", help="the monitor on several models")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be at least 1")
    sys.path.insert(0, HERE)
    import _results

    if args.models:
        import jax

        import jaxflow as jf

        result = {
            "machine": args.machine,
            "date": datetime.date.today().isoformat(),
            "jax": jax.__version__,
            "jaxflow": os.path.dirname(jf.__file__),
            "cpus": os.cpu_count(),
            "rounds": args.rounds,
            "steps": args.steps,
            "note": args.note,
            **run_models(args),
        }
        os.makedirs(args.out, exist_ok=True)
        stem = _results.fresh_stem(args.out, f"monitor-models-{args.machine}", result["date"])
        _results.write_new({stem + ".json": json.dumps(result, indent=1)})
        print(f"wrote {stem}.json")
        return 0
    import jax
    import jax.numpy as jnp

    import jaxflow as jf
    import workloads

    spec = workloads.get_spec("monitor", "full")
    data = workloads.load_data("monitor", "full", None)
    params = jax.tree.map(jnp.asarray, workloads.mlp_variables(data, 0))["params"]
    x, y = jnp.asarray(data.x[0]), jnp.asarray(data.y[0])
    model = jf.mlp(spec.depth, spec.width, activation="relu", out_dim=1)

    def loss_fn(params):
        return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

    built = {name: _compile(params, loss_fn, opt) for name, opt in variants().items()}
    best = dict.fromkeys(built, float("inf"))
    for _ in range(args.rounds):
        for name, (step, state) in built.items():
            wall_us, _ = _time_steps(step, state, params, args.steps)
            best[name] = min(best[name], wall_us)
    result = {
        "machine": args.machine,
        "date": datetime.date.today().isoformat(),
        "jax": jax.__version__,
        "step_us_best": best,
        "ratio_to_adam": {name: t / best["adam"] for name, t in best.items()},
    }
    for name, t in best.items():
        print(f"{name:36s} {t:7.1f} µs/step  ×{t / best['adam']:.2f}")
    os.makedirs(args.out, exist_ok=True)
    path = _results.fresh_stem(args.out, f"monitor-probe-{args.machine}", result["date"]) + ".json"
    _results.write_new({path: json.dumps(result, indent=1)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

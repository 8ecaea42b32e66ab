"""Where the monitor's overhead comes from: adam steps that read the gradients less and less.

The monitor workload's step (the notes' DeepNet, batch 32, ``optax.adam``) with, chained in front
of adam, transformations that do ever more with the gradients: nothing (``optax.identity``), read
one scalar, read one slice of every leaf, ``optax.tree.norm`` (one pass), and ``jaxflow.gradient_monitor()``
(the gradient table). One process, the variants interleaved round by round, the best of
``--rounds`` rounds of ``--steps`` steps each; the ratio is each variant's time per step over
adam's. Reading every leaf at all makes XLA materialise the gradients that adam alone consumes
inside its own fused update, which is a floor no monitor can go under (see README.md, "Results
and targets").

Usage: ``python benchmarks/monitor_probe.py [--rounds 7] [--steps 1000] [--machine NAME]
[--out benchmarks/results]``; writes ``monitor-probe-<machine>-<date>.json``, never overwriting.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--machine", default=os.uname().nodename)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be at least 1")
    sys.path.insert(0, HERE)
    import jax
    import jax.numpy as jnp
    import optax

    import jaxflow as jf
    import workloads

    spec = workloads.get_spec("monitor", "full")
    data = workloads.load_data("monitor", "full", None)
    params = jax.tree.map(jnp.asarray, workloads.mlp_variables(data, 0))["params"]
    x, y = jnp.asarray(data.x[0]), jnp.asarray(data.y[0])
    model = jf.mlp(spec.depth, spec.width, activation="relu", out_dim=1)

    def loss_fn(params):
        return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

    def compiled(optimizer):
        def step(params, opt_state):
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        state = optimizer.init(params)
        return jax.jit(step).lower(params, state).compile(), state

    built = {name: compiled(opt) for name, opt in variants().items()}
    best = dict.fromkeys(built, float("inf"))
    for _ in range(args.rounds):
        for name, (step, state) in built.items():
            current, state = jax.block_until_ready(step(params, state)[:2])
            start = time.perf_counter()
            for _ in range(args.steps):
                current, state, loss = step(current, state)
            jax.block_until_ready(current)
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps * 1e6)
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
    import run  # the runner's naming: never overwrite an earlier file

    path = run._results_path(args.out, f"monitor-probe-{args.machine}", result["date"]) + ".json"
    with open(path, "x") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A jitted optax training step with and without ``jaxflow.monitor``, as a whole process.

``--variant plain``: ``optax.adam``; ``--variant monitor``: ``optax.chain(jaxflow.gradient_monitor(),
optax.adam)`` (issue 3). The model is the notes' ``DeepNet`` as ``jaxflow.mlp(depth=10, width=64,
out_dim=1)`` on the workload's shared initial weights and batch; the loop is what users write: a
Python loop calling one jitted step. ``run_s`` is the time of ``steps`` steps after a warm-up
step, so the runner's steady-state ratio monitor/plain is the monitor's overhead per step. The
monitor passes updates through unchanged, so both variants' early losses (the checksum, see
``workloads.TrainingMonitor``) must agree.

Usage: ``python benchmarks/monitor_jaxflow.py --variant plain|monitor [--scale S] [--data DIR]``
"""

from protocol import Phases, emit, parser, require_api, use_jax_platform  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import workloads  # noqa: E402

VARIANTS = {"plain": "optax", "monitor": "jaxflow-monitor"}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0], devices=("cpu", "gpu"))
    p.add_argument("--variant", choices=list(VARIANTS), required=True)
    args = p.parse_args(argv)
    use_jax_platform(args.device)
    import jax
    import jax.numpy as jnp
    import optax

    import jaxflow as jf

    phases.imports_done()
    name = VARIANTS[args.variant]
    spec = workloads.get_spec("monitor", args.scale)
    optimizer = optax.adam(spec.learning_rate)
    if args.variant == "monitor":
        monitor = require_api(jf, "gradient_monitor", "monitor", name, args.scale, "issue 3")
        optimizer = optax.chain(monitor(), optimizer)
    with phases.time("data_s"):
        data = workloads.load_data("monitor", args.scale, args.data)
        params = jax.tree.map(jnp.asarray, workloads.mlp_variables(data, 0))["params"]
        x, y = jnp.asarray(data.x[0]), jnp.asarray(data.y[0])
    model = jf.mlp(spec.depth, spec.width, activation="relu", out_dim=1)

    def loss_fn(params):
        return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    with phases.time("compile_s"):
        step = jax.jit(step).lower(params, opt_state).compile()
    params, opt_state, loss = jax.block_until_ready(step(params, opt_state))  # warm-up step
    losses = [loss]
    with phases.time("run_s"):
        for _ in range(spec.steps):
            params, opt_state, loss = step(params, opt_state)
            if len(losses) < spec.checked_steps:
                losses.append(loss)  # a device array: no synchronisation here
        jax.block_until_ready((params, opt_state, loss))
    emit(
        "monitor",
        name,
        args.scale,
        workloads.monitor_checksum(losses[: spec.checked_steps]),
        phases,
        {
            "steps": spec.steps,
            "step_us": phases.as_dict()["run_s"] / spec.steps * 1e6,
            "final_loss": float(loss),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

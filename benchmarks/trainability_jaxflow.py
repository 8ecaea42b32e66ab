"""jaxflow's side of the trainability grid (``jaxflow.experiments.trainability``), as a whole
process.

One call trains every (depth, σ_w², seed) configuration of ``workloads.TRAINABILITY`` together:
``jf.Grid(depth, activation, init=[(σ_w², σ_b²), ...], width, seeds)`` and
``jf.Training(steps, learning_rate, batch_size, record_every=steps, optimizer="sgd", eval_size,
jacobian_inputs=0)`` on the workload's digits split (the same arrays the PyTorch scripts train on,
as a ``jaxflow.data.Dataset``). jaxflow draws its own weights and minibatches from its seeds, so
its checksums are compared with the PyTorch ones at the workload's statistical tolerance (the
spec's ``checksum_rtol``). The initial Jacobian spread, which the engine computes by default, is
switched off (``jacobian_inputs=0``): the PyTorch scripts do not compute it (it adds a graded
log-spectrum per configuration, and about as much compilation as the training itself).
Compilation happens inside the call, so ``compile_s`` is not separated: ``run_s`` is the whole
call. Until ``jaxflow.experiments.trainability`` is in the checkout, the script reports
``unavailable`` (the runner skips it) — never a number computed another way.

Usage: ``python benchmarks/trainability_jaxflow.py [--scale S] [--data DIR] [--device cpu|gpu]``
"""

from protocol import Phases, emit, parser, require_api, use_jax_platform  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import numpy as np  # noqa: E402

import workloads  # noqa: E402

NAME = "jaxflow"


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    use_jax_platform(args.device)
    import jaxflow as jf
    import jaxflow.experiments
    from jaxflow.data import Dataset

    phases.imports_done()
    trainability = require_api(
        jaxflow.experiments, "trainability", "trainability", NAME, args.scale, "issue 12"
    )
    training_type = require_api(jf, "Training", "trainability", NAME, args.scale, "issue 12")
    spec = workloads.get_spec("trainability", args.scale)
    with phases.time("data_s"):
        arrays = workloads.load_data("trainability", args.scale, args.data)
        data = Dataset(
            np.array(arrays.x_train),
            np.array(arrays.y_train),
            np.array(arrays.x_test),
            np.array(arrays.y_test),
            int(arrays.g_out.shape[1]),
            f"digits(seed={spec.data_seed})",
        )
    grid = jf.Grid(
        depth=spec.depths,
        activation=(spec.activation,),
        init=tuple((float(w), spec.sigma_b2) for w in spec.sigma_w2),
        width=spec.width,
        seeds=spec.seeds,
    )
    training = training_type(
        steps=spec.steps,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        record_every=spec.steps,
        optimizer="sgd",
        eval_size=spec.eval_size,
        jacobian_inputs=0,
    )
    with phases.time("run_s"):
        ds = trainability(grid, data, training, progress=False)
    final = ds.sel(step=ds["step"].values[-1])
    checksums = workloads.trainability_checksum(final["train_loss"].values)
    info = {
        "configs": spec.num_configs,
        "final_test_accuracy_mean": float(final["test_accuracy"].mean()),
        "compilations": ds.attrs.get("compilations"),
        "engine_seconds": ds.attrs.get("seconds"),
        "devices": ds.attrs.get("num_devices"),
        "chunks": ds.attrs.get("num_chunks"),
        "chunk_size": ds.attrs.get("chunk_size"),
        "final_train_loss_by_depth": final["train_loss"]
        .mean([d for d in final["train_loss"].dims if d != "depth"])
        .values.tolist(),
    }
    emit("trainability", NAME, args.scale, checksums, phases, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

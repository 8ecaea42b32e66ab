"""jaxflow's side of the notes comparison (``jaxflow.compare_activations``), as a whole process.

Calls ``jaxflow.compare_activations`` (issue 3) on the workload's shared weights and batch: all
three activations in one compiled call, returning the per-Linear weight-gradient norms. Until that
function is in the checkout, the script reports ``unavailable`` (the runner skips the workload's
comparison); if its signature does not take the shared weights and batch, it says so and names
this file as the place to adapt — it never reports a number computed on other weights.

Usage: ``python benchmarks/notes_jaxflow.py [--data DIR] [--device cpu|gpu]``
"""

from protocol import Phases, emit, parser, require_api, unavailable, use_jax_platform  # noqa: I001

phases = Phases()

import inspect  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import workloads  # noqa: E402

NAME = "jaxflow"


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    use_jax_platform(args.device)
    import jax

    import jaxflow

    phases.imports_done()
    compare = require_api(jaxflow, "compare_activations", "notes", NAME, args.scale, "issue 3")
    spec = workloads.get_spec("notes", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("notes", args.scale, args.data)
        per_activation = [workloads.mlp_variables(data, i) for i in range(len(spec.activations))]
        variables = jax.tree.map(lambda *a: np.stack(a), *per_activation)
    # The intended call: the networks' variables stacked over activations (the layout of
    # ActivationComparison.variables) and the shared batch, x (A, batch, width), y (A, batch, 1).
    call = dict(
        activations=spec.activations,
        depth=spec.depth,
        width=spec.width,
        batch=spec.batch,
        variables=variables,
        x=np.asarray(data.x),
        y=np.asarray(data.y),
    )
    try:
        inspect.signature(compare).bind(**call)
    except TypeError as exc:
        unavailable(
            "notes",
            NAME,
            args.scale,
            f"jaxflow.compare_activations{inspect.signature(compare)} does not take the shared "
            f"weights and batch ({exc}); adapt benchmarks/notes_jaxflow.py to its API",
        )
    with phases.time("run_s"):
        result = jax.block_until_ready(compare(**call))
    norms = getattr(result, "weight_grad_norms", None)
    if norms is None:
        unavailable(
            "notes",
            NAME,
            args.scale,
            f"jaxflow.compare_activations returned {type(result).__name__} without "
            "weight_grad_norms; adapt benchmarks/notes_jaxflow.py to its result",
        )
    emit(
        "notes",
        NAME,
        args.scale,
        workloads.notes_checksum(np.asarray(norms)),
        phases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

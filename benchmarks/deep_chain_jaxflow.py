"""jaxflow's side of the deep chain (``jaxflow.log_spectrum``), as a whole process.

For each chain and seed, the stable log-spectra of the prefix products P_d of a ``jaxflow.mlp``
holding the workload's shared weights, at the workload's depths, from ``jaxflow.log_spectrum``
(issue 4, item 6: ``method="graded"``, ln σ_i(P_d) at any depth), jit-compiled once per chain
and vmapped over seeds; the checksum is Σ log σ_max(P_d). Until ``jaxflow.log_spectrum`` is in the
checkout, the script reports ``unavailable`` (the runner skips the comparison) — never a number
computed another way.

Usage: ``python benchmarks/deep_chain_jaxflow.py [--scale S] [--data DIR] [--device cpu|gpu]``
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
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    phases.imports_done()
    log_spectrum = require_api(jf, "log_spectrum", "deep-chain", NAME, args.scale, "issue 4")
    spec = workloads.get_spec("deep-chain", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("deep-chain", args.scale, args.data)
        kernels = jnp.asarray(np.swapaxes(data.weights, -1, -2))  # Flax kernels are Wᵀ
        biases, inputs = jnp.asarray(data.biases), jnp.asarray(data.inputs)
    compiled = []
    with phases.time("compile_s"):
        for c, (activation, init, _) in enumerate(spec.chains):
            model = jf.mlp(
                spec.max_depth, spec.width, activation=activation, init=init, out_dim=None
            )

            def top(kernels, bias, x, model=model):
                variables = {"params": {"blocks": {"Dense_0": {"kernel": kernels, "bias": bias}}}}
                return log_spectrum(
                    model, variables, x, method="graded", layers=spec.depths
                ).values[:, 0]

            compiled.append(jax.jit(jax.vmap(top)).lower(kernels[c], biases[c], inputs).compile())
    with phases.time("run_s"):
        log_sigma_max = np.stack(
            [
                np.asarray(jax.block_until_ready(f(kernels[c], biases[c], inputs)))
                for c, f in enumerate(compiled)
            ]
        )
    emit(
        "deep-chain",
        NAME,
        args.scale,
        workloads.deep_chain_checksum(log_sigma_max),
        phases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

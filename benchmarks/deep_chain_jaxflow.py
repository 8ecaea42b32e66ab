"""jaxflow's side of the deep chain (``jaxflow.spectra``), as a whole process.

For each chain and seed, the stable log-spectra of every prefix product P_l of a ``jaxflow.mlp``
holding the workload's shared weights, from ``jaxflow.spectra`` (issue 4, item 6), jit-compiled
once; the checksum is Σ log σ_max(P_d) over the workload's depths. Until ``jaxflow.spectra`` is in
the checkout, the script reports ``unavailable`` (the runner skips the comparison); if the API
differs from the intended one used here (``jaxflow.spectra.log_spectra(model, variables, x)``
returning ``log_singular_values`` of shape (L, n), descending), it says so and names this file as
the place to adapt.

Usage: ``python benchmarks/deep_chain_jaxflow.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

from protocol import Phases, emit, parser, unavailable  # noqa: I001

phases = Phases()

import importlib.util  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import workloads  # noqa: E402

NAME = "jaxflow"


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", {"cpu": "cpu", "gpu": "cuda"}[args.device])
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    phases.imports_done()
    if importlib.util.find_spec("jaxflow.spectra") is None:
        unavailable("deep-chain", NAME, args.scale, "jaxflow.spectra (issue 4) is not available in this checkout")
    from jaxflow import spectra

    log_spectra = getattr(spectra, "log_spectra", None)
    if log_spectra is None:
        unavailable("deep-chain", NAME, args.scale,
                    "jaxflow.spectra has no log_spectra(model, variables, x); adapt "
                    "benchmarks/deep_chain_jaxflow.py to its API")
    spec = workloads.get_spec("deep-chain", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("deep-chain", args.scale, args.data)
        kernels = jnp.asarray(np.swapaxes(data.weights, -1, -2))  # Flax kernels are Wᵀ
        inputs = jnp.asarray(data.inputs)
    rows = jnp.asarray(spec.depths) - 1
    compiled = []
    with phases.time("compile_s"):
        for activation, init in spec.chains:
            model = jf.mlp(spec.max_depth, spec.width, activation=activation, init=init,
                           out_dim=None, use_bias=False)

            def top(kernels, x, model=model):
                variables = {"params": {"blocks": {"Dense_0": {"kernel": kernels}}}}
                return log_spectra(model, variables, x).log_singular_values[rows, 0]

            over_seeds = jax.vmap(top)
            compiled.append(jax.jit(over_seeds).lower(kernels[0], inputs).compile())
    with phases.time("run_s"):
        log_sigma_max = np.stack([np.asarray(jax.block_until_ready(f(kernels[c], inputs)))
                                  for c, f in enumerate(compiled)])
    emit("deep-chain", NAME, args.scale, workloads.deep_chain_checksum(log_sigma_max), phases,
         {"device": jax.devices()[0].device_kind, "jax": jax.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())

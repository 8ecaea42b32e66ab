"""Eager JAX (no ``jit``) for the spectra sweep, as a whole process.

The same program as the best PyTorch (``spectra_torch_func.py``) written in plain JAX:
``jax.jacrev`` for every J_l, ``jax.vmap`` over seeds and inputs, one batched
``jnp.linalg.svd(compute_uv=False)`` per configuration for all J_l and another for all P_l, Python
loops over configurations and layers — and no ``jax.jit``, so every operation is dispatched
(and compiled once per shape) on its own.

Needs jax and NumPy (not jaxflow). Usage:
``python benchmarks/spectra_jax_eager.py [--scale full|quick|gpu] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, use_jax_platform  # noqa: I001

phases = Phases()

import sys  # noqa: E402

import workloads  # noqa: E402

NAME = "jax-eager"


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    use_jax_platform(args.device)
    import jax
    import jax.numpy as jnp

    phases.imports_done()
    activations = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}
    highest = jax.lax.Precision.HIGHEST

    def chain_jacobians(phi, weights, h):
        def block(W, h):
            out = phi(jnp.matmul(W, h, precision=highest))
            return out, out

        jacobians = []
        for layer in range(weights.shape[0]):
            J, h = jax.jacrev(block, argnums=1, has_aux=True)(weights[layer], h)
            jacobians.append(J)
        return jnp.stack(jacobians)

    spec = workloads.get_spec("spectra", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("spectra", args.scale, args.data)
        weights, inputs = jnp.asarray(data.weights), jnp.asarray(data.inputs)
    checksum = workloads.SpectraChecksum()
    with phases.time("run_s"):
        for activation in spec.activations:
            phi = activations[activation]
            over_inputs = jax.vmap(lambda w, h: chain_jacobians(phi, w, h), in_axes=(None, 0))
            over_seeds = jax.vmap(over_inputs, in_axes=(0, 0))
            for i in range(len(spec.inits)):
                for depth in spec.depths:
                    J = over_seeds(weights[i, :, :depth], inputs)  # (seeds, inputs, d, n, n)
                    P, products = jnp.eye(spec.width), []
                    for layer in range(depth):
                        P = jnp.matmul(J[..., layer, :, :], P, precision=highest)
                        products.append(P)
                    layer_sv = jnp.linalg.svd(J, compute_uv=False)
                    product_sv = jnp.linalg.svd(jnp.stack(products, axis=-3), compute_uv=False)
                    checksum.add(layer_sv, product_sv)
    emit("spectra", NAME, args.scale, checksum.values(), phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""jaxflow's side of the spectra sweep (see ``workloads.SpectraSweep``), as a whole process.

One ``jax.jit`` compilation answers the whole grid: every depth comes from one pass at the largest
depth (a depth-d network is the first d blocks of a deeper one), inits and seeds and inputs are
``vmap`` axes over the shared weights, and the activations are three scans inside the same
compiled program. Each chain is ``jf.accumulate_chain`` (carrying P_l) over the blocks of a ``jf.mlp`` (its
``decompose``), emitting the singular values of J_l and P_l inside the scan, so memory does not
grow with the number of matrices.

On a CPU with jaxlib 0.10 the batched SVD inside the scan runs on one core (XLA:CPU gives a
LAPACK call in a loop body no other thread); outside a loop it spreads over the cores only now
and then. Emitting the matrices and decomposing them in segments outside the scan was tried and
measured no faster, so the scan keeps its flat memory; the steady state sits near the one-core
SVD floor (see README.md, "The roofline").

This is written with the core API (``jf.mlp(...).decompose`` + ``jf.accumulate_chain``), because every
implementation here must use the workload's NumPy-drawn weights and ``jaxflow.sweep`` draws its
own from each seed. The sweep engine on the same grid (its own weights) is timed by
``python -m jaxflow.sweeps.reference``; benchmarks/README.md reports both.
``benchmarks/scaling.py`` imports :func:`spectra` too.

Usage: ``python benchmarks/spectra_jaxflow.py [--scale S] [--data DIR] [--device cpu|gpu]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, use_jax_platform  # noqa: I001

phases = Phases()

import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import workloads  # noqa: E402

NAME = "jaxflow"
SVD_ENV = "JAXFLOW_BENCH_SVD"
"""Environment variable naming the SVD algorithm: ``default`` (``jf.singular_values``), one of
``jax.lax.linalg.SvdAlgorithm``'s ``qr``, ``jacobi``, ``polar`` (GPU), or ``jaxflow-jacobi``
(``jf.jacobi_singular_values``, any device); ``benchmarks/gpu.sh`` picks the fastest the roofline
measured, since small-matrix SVD is the GPU's weak spot."""
SVD_ALGORITHMS = ("default", "qr", "jacobi", "polar", "jaxflow-jacobi")


def _singular_values():
    """The values-only SVD the sweep uses (see :data:`SVD_ENV`)."""
    import jax

    import jaxflow as jf

    name = os.environ.get(SVD_ENV, "default")
    if name not in SVD_ALGORITHMS:
        raise ValueError(f"{SVD_ENV}={name!r} is not an SVD algorithm; use one of {SVD_ALGORITHMS}")
    if name == "default":
        return jf.singular_values
    if name == "jaxflow-jacobi":
        return jf.jacobi_singular_values
    algorithm = {
        "qr": jax.lax.linalg.SvdAlgorithm.QR,
        "jacobi": jax.lax.linalg.SvdAlgorithm.JACOBI,
        "polar": jax.lax.linalg.SvdAlgorithm.POLAR,
    }[name]
    return lambda a: jax.lax.linalg.svd(
        a, full_matrices=False, compute_uv=False, algorithm=algorithm
    )


def spectra(
    spec: workloads.SpectraSweep, data: workloads.SpectraData, phases: Phases | None = None
):
    """The singular values of every J_l and P_l of the sweep, at the largest depth.

    The sweep engine could replace the body::

        ds = jaxflow.sweep(jaxflow.Grid(model="mlp", depth=list(spec.depths),
                           activation=list(spec.activations), init=list(spec.inits),
                           width=spec.width, seeds=spec.seeds, batch=spec.inputs,
                           metrics=("J_spectra", "P_spectra"), ...), quiet=True)

    and return ``ds.J_sv`` and ``ds.P_sv`` at the largest depth in the layout below. One thing
    must come with it: ``jaxflow.sweep`` draws its own weights and inputs from each seed
    (``model.init`` of the core model), while every implementation here must use the same
    arrays. Either the sweep accepts the workload's arrays, or the runner exports the sweep's
    draw as the workload's data (``SpectraData`` layout, written with ``workloads.save_data``)
    so the competitors load that instead of the NumPy draw; the checksums then still hold every
    implementation to the same numbers (the float64 reference reads the same data).

    Args:
      spec: the workload.
      data: its weights (inits, seeds, D, n, n) in the (out, in) layout, and inputs.
      phases: where to record ``compile_s`` and ``run_s`` (optional).

    Returns:
      ``(layer_sv, product_sv)``, NumPy arrays of shape (activations, inits, seeds, inputs, D, n).
    """
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    phases = phases or Phases()
    depth, width = spec.max_depth, spec.width
    singular_values = _singular_values()

    def _left_multiply(J, P):
        return jax.numpy.matmul(J, P, precision=jax.lax.Precision.HIGHEST)

    def emit_spectra(J, P):
        return singular_values(J), singular_values(P)

    def over_grid(activation):
        model = jf.mlp(depth, width, activation=activation, out_dim=None, use_bias=False)

        def chain(kernels, h0):
            stack = model.decompose({"params": {"blocks": {"Dense_0": {"kernel": kernels}}}})
            carry = jax.numpy.eye(width, dtype=h0.dtype)  # P_0 = I; P_l = J_l P_(l-1)
            return jf.accumulate_chain(
                stack.block_fn, stack.blocks, h0, carry, _left_multiply, emit_spectra
            ).emitted

        over_inputs = jax.vmap(chain, in_axes=(None, 0))
        over_seeds = jax.vmap(over_inputs, in_axes=(0, 0))
        return jax.vmap(over_seeds, in_axes=(0, None))  # over inits: the inputs are shared

    def sweep(kernels, inputs):
        per_activation = [over_grid(a)(kernels, inputs) for a in spec.activations]
        return tuple(jnp.stack(arrays) for arrays in zip(*per_activation))

    # Flax kernels are Wᵀ: the block computes h @ kernel.
    kernels = jnp.asarray(np.swapaxes(data.weights, -1, -2))
    inputs = jnp.asarray(data.inputs)
    with phases.time("compile_s"):
        compiled = jax.jit(sweep).lower(kernels, inputs).compile()
    with phases.time("run_s"):
        layer_sv, product_sv = jax.block_until_ready(compiled(kernels, inputs))
    return np.asarray(layer_sv), np.asarray(product_sv)


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], devices=("cpu", "gpu")).parse_args(argv)
    use_jax_platform(args.device)
    import jaxflow  # noqa: F401  (imported here, with jax, so import_s counts them)

    phases.imports_done()
    spec = workloads.get_spec("spectra", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("spectra", args.scale, args.data)
    layer_sv, product_sv = spectra(spec, data, phases)
    checksum = workloads.SpectraChecksum()
    checksum.add_prefixes(layer_sv, product_sv, spec.depths)
    emit(
        "spectra",
        NAME,
        args.scale,
        checksum.values(),
        phases,
        {"svd": os.environ.get(SVD_ENV, "default")},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The spectra sweep as a researcher writes it with jaxflow's public API, as a whole process.

A block function h ↦ φ(W h) over the workload's NumPy-drawn weights, ``jf.jacobian_chain`` for
every J_l, P_l and their singular values, ``jax.vmap`` over seeds and inputs, and one
``jax.jit`` per configuration shape: one jitted function per activation, compiled once per depth
(4 depths × 3 activations = 12 programs); the inits are data of the same shape, so the three of
each (activation, depth) share one program. Each depth is its own configuration, as a loop over
configurations computes it (no reuse of the deepest chain's prefixes: that is
``spectra_jaxflow.py``'s specialisation).

With ``--variant eager`` (the runner's ``jaxflow-api-eager``) there is no ``jax.jit`` of the
user's: ``jax.vmap`` of ``jf.jacobian_chain`` is called eagerly, and the library's own program is
compiled once per shape (issue 13, item 1) with the XLA options jaxflow chooses for it
(``jaxflow._platform.fast_compiling_jit``); under a user's ``jit`` the user's options apply.

With ``--variant jit-o1`` (``jaxflow-api-o1``) the user's ``jax.jit`` is given the options
jaxflow's own programs use on a CPU, ``compiler_options={"xla_backend_optimization_level": 1,
"xla_cpu_use_fusion_emitters": False}`` (the second exists in jaxlib 0.10's XLA, where it was
measured): the library cannot set them for a user's program, because JAX refuses compiler options
on a nested ``jit``.

With ``--variant prefix`` (``jaxflow-api-prefix``) the user's plain ``jax.jit`` computes each
chain once, at the largest depth, and reads every depth off its first d layers (a depth-d network
is the first d blocks of a deeper one): 3 programs instead of 12, 23,040 SVDs instead of 43,200.
It is not the issue's 12-shape workload; it shows what the same public call gives written that
way.

JAX's persistent compilation cache is used only when the runner gives one (``run.py
--cache-dir DIR`` sets ``JAXFLOW_CACHE_DIR``; a user sets ``jax_compilation_cache_dir``).

Usage: ``python benchmarks/spectra_public_api.py [--scale S] [--data DIR] [--device cpu|gpu]
[--variant jit|jit-o1|eager|prefix]``
"""

# The clock starts before the heavy imports.
from protocol import Phases, emit, parser, use_jax_platform  # noqa: I001

phases = Phases()

import os  # noqa: E402
import sys  # noqa: E402

import workloads  # noqa: E402

NAME = "jaxflow-api"


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0], devices=("cpu", "gpu"))
    p.add_argument("--variant", choices=("jit", "jit-o1", "eager", "prefix"), default="jit")
    args = p.parse_args(argv)
    use_jax_platform(args.device)
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    phases.imports_done()
    cache = os.environ.get("JAXFLOW_CACHE_DIR", "off")
    if cache.strip().lower() != "off":
        from jaxflow._platform import use_compilation_cache

        use_compilation_cache(cache)
    options = None
    if args.variant == "jit-o1" and args.device == "cpu":
        options = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
    activations = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}

    def spectra_of(phi):
        def block(W, h):
            return phi(W @ h)

        def spectra(weights, inputs):
            """weights (seeds, d, n, n), inputs (seeds, inputs, n) -> (seeds, inputs, d, n) × 2."""
            chain = jax.vmap(lambda w, x: jf.jacobian_chain(block, w, x))(weights, inputs)
            return chain.layer_singular_values, chain.product_singular_values

        if args.variant == "eager":
            return spectra
        return jax.jit(spectra, compiler_options=options)

    spec = workloads.get_spec("spectra", args.scale)
    with phases.time("data_s"):
        data = workloads.load_data("spectra", args.scale, args.data)
        weights, inputs = jnp.asarray(data.weights), jnp.asarray(data.inputs)
    checksum = workloads.SpectraChecksum()
    for activation in spec.activations:
        spectra = spectra_of(activations[activation])
        if args.variant == "prefix":
            deepest = spec.max_depth
            with phases.time("compile_s"):
                compiled = spectra.lower(weights[0, :, :deepest], inputs).compile()
            with phases.time("run_s"):
                for i in range(len(spec.inits)):
                    layer_sv, product_sv = compiled(weights[i, :, :deepest], inputs)
                    checksum.add_prefixes(layer_sv, product_sv, spec.depths)
            continue
        for depth in spec.depths:
            # One program per (activation, depth), compiled first so compile_s is separate; the
            # eager variant compiles inside its first call, which is counted as compilation.
            compiled = spectra
            if args.variant != "eager":
                with phases.time("compile_s"):
                    compiled = spectra.lower(weights[0, :, :depth], inputs).compile()
            for i in range(len(spec.inits)):
                first = args.variant == "eager" and i == 0
                with phases.time("compile_s" if first else "run_s"):
                    layer_sv, product_sv = compiled(weights[i, :, :depth], inputs)
                    checksum.add(layer_sv, product_sv)
    name = NAME if args.variant == "jit" else f"{NAME}-{args.variant.replace('jit-', '')}"
    emit("spectra", name, args.scale, checksum.values(), phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``jaxflow spectra``: per-layer singular values of J_l and P_l for one network."""

from __future__ import annotations

import argparse
import sys

from jaxflow.cli._common import (
    _add_model_options,
    _build_model,
    dump_json,
    encodable,
    format_spectra_table,
    spectra_rows,
)

EXAMPLES = """examples:
  jaxflow spectra --depth 20 --width 64 --activation sigmoid --init xavier
  jaxflow spectra --depth 50 --model residual --activation relu --init he --json
  jaxflow spectra --depth 10 --init 2.0,0.05        # mean-field (sigma_w2, sigma_b2) variances
"""


def run_spectra(args) -> int:
    """Per-layer spectral norms and smallest singular values of J_l and P_l for one network."""
    import jax

    import jaxflow as jf

    model = _build_model(args)
    key_init, key_x = jax.random.split(jax.random.key(args.seed))
    x = jax.random.normal(key_x, (args.width,))
    variables = model.init(key_init, x)
    chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, x)
    rows = spectra_rows(chain)
    config = {
        "model": args.model,
        "depth": args.depth,
        "width": args.width,
        "activation": args.activation,
        "init": list(args.init) if isinstance(args.init, tuple) else args.init,
        "seed": args.seed,
        "input": "x ~ N(0, I)",
    }
    if args.json:
        dump_json({"config": config, "finite": bool(chain.finite), "layers": rows}, sys.stdout)
        return 0
    print(
        f"{args.model} depth={args.depth} width={args.width} activation={args.activation} "
        f"init={config['init']} seed={args.seed}   J_l = dh_l/dh_(l-1), P_l = J_l ... J_1"
    )
    print(format_spectra_table(rows, fancy=encodable("‖σₗ₂"), width=args.width))
    if not bool(chain.finite):
        print("warning: non-finite values in the chain (inputs, parameters or Jacobians)")
    if any(row["P_resolved"] < args.width for row in rows):
        print(
            "note: 'resolved' counts the singular values of P_l above its float32 rounding floor "
            "sigma_max*n*eps; smaller ones (sigma_min included) are rounding or exact zeros"
        )
    if any(row["underflow"] for row in rows):
        first = next(row["layer"] for row in rows if row["underflow"])
        print(
            f"note: P_l underflows float32 from layer {first} on (sigma_max*n*eps below the "
            "smallest normal number); its singular values there are not the network's"
        )
    return 0


def add_parser(commands) -> None:
    """Registers ``spectra`` on the subcommands of the ``jaxflow`` parser."""
    spectra = commands.add_parser(
        "spectra",
        help="per-layer Jacobian and product-chain singular values of one network",
        description="Print, per layer l, ‖J_l‖₂ and σ_min(J_l) of the block Jacobian "
        "J_l = ∂h_l/∂h_{l-1}, and ‖P_l‖₂ and σ_min(P_l) of the product P_l = J_l ⋯ J_1, for one "
        "network at one random input x ~ N(0, I).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(spectra)
    spectra.add_argument(
        "--json",
        action="store_true",
        help='print JSON instead of a table (NaN as null, infinities as "inf"/"-inf")',
    )
    spectra.set_defaults(run=run_spectra)

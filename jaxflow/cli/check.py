"""``jaxflow check``: gradient health and per-layer spectra of a user's model."""

from __future__ import annotations

import argparse
import json
import sys

from jaxflow.cli._common import UsageError, format_spectra_table, spectra_rows

EXAMPLES = """examples:
  jaxflow check mymodels:build            # build() returns (model, variables, x) or (..., y)
  jaxflow check path/to/file.py:build --json

The function takes no arguments. x is a batch (batch, d) or one input (d,); without y the
target is zeros and the loss is MSE. The gradient report covers any flax model; the per-layer
spectra need a jaxflow model (jf.mlp, jf.residual_stack).
"""


def _load_user_function(spec):
    """Imports ``module:function`` or ``path/to/file.py:function`` and returns the function."""
    import importlib
    import importlib.util
    import os

    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise UsageError(f"jaxflow check: {spec!r} is not of the form module:function")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise UsageError(f"jaxflow check: file {module_name!r} does not exist")
            module_spec = importlib.util.spec_from_file_location("_jaxflow_check_user", module_name)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path.remove(os.getcwd())
    except ImportError as error:
        raise UsageError(f"jaxflow check: cannot import {module_name!r}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"jaxflow check: {module_name!r} has no function {function_name!r}")
    return function


def run_check(args) -> int:
    """Gradient health and per-layer spectra of a user's model."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxflow as jf

    built = _load_user_function(args.target)()
    if not isinstance(built, (tuple, list)) or len(built) not in (3, 4):
        raise UsageError(
            f"jaxflow check: {args.target}() returned {type(built).__name__}; it must return "
            "(model, variables, x) or (model, variables, x, y)"
        )
    model, variables, x = built[:3]
    if not isinstance(model, nn.Module):
        raise UsageError(f"jaxflow check: the model is a {type(model).__name__}, not a flax Module")
    x = jnp.asarray(x)
    batch = x if x.ndim >= 2 else x[None]
    try:
        prediction = jax.eval_shape(lambda v, x: model.apply(v, x), variables, batch)
    except Exception as error:  # the user's model, the user's shapes: report, do not trace back
        raise UsageError(f"jaxflow check: model.apply(variables, x) fails: {error}") from None
    y = jnp.asarray(built[3]) if len(built) == 4 else jnp.zeros(prediction.shape, prediction.dtype)
    if y.ndim == x.ndim and x.ndim == 1:
        y = y[None]
    if y.shape != prediction.shape:
        raise UsageError(f"jaxflow check: y has shape {y.shape}; the model predicts {prediction.shape}")

    def loss(params):
        return jnp.mean(jnp.square(model.apply({**variables, "params": params}, batch) - y))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    stats = jf.gradient_stats(grads, variables["params"])
    output = {"gradients": {
        "global_norm": float(stats.global_norm),
        "layers": dict(zip(stats.layer_names, np.asarray(stats.layer_norms).tolist())),
        "leaves": {name: {"norm": float(n), "status": status}
                   for name, n, status in zip(stats.names, np.asarray(stats.norm), jf.GradientStatus.name_of(stats.status))},
    }}  # fmt: skip
    chain = None
    if isinstance(model, jf.Network):
        chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, batch[0])
        output["spectra"] = spectra_rows(chain, underflow=False)
    if args.json:
        json.dump(output, sys.stdout, indent=2)
        print()
        return 0
    print(jf.format_gradient_report(stats, stream=sys.stdout))
    if chain is None:
        print("(per-layer spectra need a jaxflow model: jf.mlp or jf.residual_stack)")
        return 0
    print("\nper-layer spectra at the first input (J_l = dh_l/dh_(l-1), P_l = J_l ... J_1):")
    print(format_spectra_table(output["spectra"]))
    return 0


def add_parser(commands) -> None:
    """Registers ``check`` on the subcommands of the ``jaxflow`` parser."""
    check = commands.add_parser(
        "check",
        help="gradient health and per-layer spectra of your own model",
        description="Load MODULE:FUNCTION, call it with no arguments to get (model, variables, x) "
        "or (model, variables, x, y), and print the gradient-health report of an MSE loss (every "
        "parameter's gradient norm, mean, max, status) and, for a jaxflow model, the per-layer "
        "Jacobian spectra at the first input.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("target", metavar="MODULE:FUNCTION",
                       help="e.g. mymodels:build or path/to/file.py:build")
    check.add_argument("--json", action="store_true", help="print JSON instead of tables")
    check.set_defaults(run=run_check)

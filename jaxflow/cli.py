"""The ``jaxflow`` command line.

Every subcommand is a function ``run_<name>(args) -> int`` registered in :func:`build_parser`;
:func:`main` turns user errors (bad options, bad values) into one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

__all__ = ["main"]

EXAMPLES = {
    "theory": """examples:
  jaxflow theory --activation tanh relu erf --sigma-w2 1.5 --sigma-b2 0.05
  jaxflow theory --activation sigmoid --sigma-w2 1 --json
  jaxflow theory --activation tanh --phase-diagram tanh_phase.png --quantity chi1
""",
    "check": """examples:
  jaxflow check mymodels:build            # build() returns (model, variables, x) or (..., y)
  jaxflow check path/to/file.py:build --json

The function takes no arguments. x is a batch (batch, d) or one input (d,); without y the
target is zeros and the loss is MSE. The gradient report covers any flax model; the per-layer
spectra need a jaxflow model (jf.mlp, jf.residual_stack).
""",
    "reproduce": """examples:
  jaxflow reproduce                          # every section, into ./jaxflow-report
  jaxflow reproduce --quick --out /tmp/r     # smaller sizes, same checks
  jaxflow reproduce --sections chain_rule spectra --platform cpu
""",
    "spectra": """examples:
  jaxflow spectra --depth 20 --width 64 --activation sigmoid --init xavier
  jaxflow spectra --depth 50 --model residual --activation relu --init he --json
  jaxflow spectra --depth 10 --init 2.0,0.05        # mean-field (sigma_w2, sigma_b2) variances
""",
    "sweep": """examples:
  jaxflow sweep grid.toml --out results.zarr
  jaxflow sweep --depth 5 10 20 40 --activation relu tanh sigmoid --init xavier he orthogonal \
      --seeds 8 --out results.zarr --plot figures/
  jaxflow sweep grid.toml --depth 5 10 --init 1.0,0.0 2.0,0.05 --quiet   # flags override the file

grid.toml holds the Grid's fields at top level, e.g.
  depth = [5, 10, 20, 40]
  activation = ["relu", "tanh", "sigmoid"]
  init = ["xavier", "he", "orthogonal", [1.5, 0.05]]
  width = 64
  seeds = 8
Rerunning with the same --out resumes; a store of a different grid is refused.
""",
}


class UsageError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage block; one line is enough
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def encodable(text: str, stream=None) -> bool:
    """Whether ``stream`` (default: stdout) can encode ``text``."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be >= 1")
    return value


def _init_arg(text):
    """A scheme name, or 'sigma_w2,sigma_b2' variances."""
    if "," in text:
        try:
            sigma_w2, sigma_b2 = (float(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a pair of variances 'sigma_w2,sigma_b2'"
            ) from None
        return (sigma_w2, sigma_b2)
    return text


def _add_model_options(parser):
    from jaxflow.activations import ACTIVATIONS
    from jaxflow.initializers import INIT_SCHEMES

    parser.add_argument("--model", choices=("mlp", "residual"), default="mlp", help="network family")
    parser.add_argument("--depth", type=_positive_int, default=20, help="number of blocks L")
    parser.add_argument("--width", type=_positive_int, default=64, help="hidden width n")
    parser.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        default="sigmoid",
        metavar="NAME",
        help=f"activation: {', '.join(sorted(ACTIVATIONS))} (default: sigmoid)",
    )
    parser.add_argument(
        "--init",
        type=_init_arg,
        default="xavier",
        metavar="SCHEME",
        help=f"initialisation: {', '.join(INIT_SCHEMES)}, or variances 'sigma_w2,sigma_b2' "
        "(default: xavier)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for weights and input")


def _build_model(args):
    import jaxflow as jf

    builder = jf.mlp if args.model == "mlp" else jf.residual_stack
    try:
        return builder(args.depth, args.width, activation=args.activation, init=args.init)
    except ValueError as error:  # the builders' messages name the argument and what is allowed
        raise UsageError(f"jaxflow {args.command}: {error}") from None


def run_spectra(args) -> int:
    """Per-layer spectral norms and smallest singular values of J_l and P_l for one network."""
    import jax

    import jaxflow as jf

    model = _build_model(args)
    key_init, key_x = jax.random.split(jax.random.key(args.seed))
    x = jax.random.normal(key_x, (args.width,))
    variables = model.init(key_init, x)
    chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, x)
    layer_sv = chain.layer_singular_values
    product_sv = chain.product_singular_values
    rows = [
        {
            "layer": l + 1,
            "J_norm": float(layer_sv[l, 0]),
            "J_min": float(layer_sv[l, -1]),
            "P_norm": float(product_sv[l, 0]),
            "P_min": float(product_sv[l, -1]),
            "P_resolved": int(chain.resolved[l]),
            "underflow": bool(chain.underflow[l]),
        }
        for l in range(layer_sv.shape[0])
    ]
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
        json.dump({"config": config, "finite": bool(chain.finite), "layers": rows}, sys.stdout, indent=2)
        print()
        return 0
    fancy = encodable("‖σₗ₂")
    headers = (
        ("layer", "‖J_l‖₂", "σ_min(J_l)", "‖P_l‖₂", "σ_min(P_l)")
        if fancy
        else ("layer", "|J_l|_2", "smin(J_l)", "|P_l|_2", "smin(P_l)")
    )
    print(
        f"{args.model} depth={args.depth} width={args.width} activation={args.activation} "
        f"init={config['init']} seed={args.seed}   J_l = dh_l/dh_(l-1), P_l = J_l ... J_1"
    )
    print(f"{headers[0]:>5}  " + "  ".join(f"{h:>11}" for h in headers[1:]) + "  resolved")
    for row in rows:
        mark = "  underflow" if row["underflow"] else ""
        values = (row["J_norm"], row["J_min"], row["P_norm"], row["P_min"])
        print(
            f"{row['layer']:>5}  "
            + "  ".join(f"{v:>11.4e}" for v in values)
            + f"  {row['P_resolved']:>5}/{args.width}{mark}"
        )
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


def _select_platform(platform):
    """Points JAX at ``platform`` before it picks a backend; a mismatch is a user error."""
    import jax

    if platform is None:
        return
    try:
        jax.config.update("jax_platforms", platform)
        found = jax.devices()[0].platform
    except RuntimeError as error:
        raise UsageError(f"jaxflow: --platform {platform}: JAX cannot use it here ({error})") from None
    if found != platform:
        raise UsageError(
            f"jaxflow: --platform {platform} was asked for but JAX is already running on {found}"
        )


def run_reproduce(args) -> int:
    """Runs every canned experiment and writes the report folder."""
    from jaxflow import _platform

    _platform.prefer_fast_compilation()  # many small programs, each compiled once
    _select_platform(args.platform)
    from jaxflow.experiments import reproduce

    try:
        report = reproduce(
            args.out,
            quick=args.quick,
            sections=args.sections,
            seed=args.seed,
            progress=None if args.quiet else sys.stderr,
            jobs=args.jobs,
        )
    except FileExistsError as error:  # only the output folder is the user's to fix
        raise UsageError(f"jaxflow reproduce: {error}") from None
    failed = [s.title for s in report.sections if not s.passed]
    if args.json:
        json.dump(
            {
                "passed": report.passed,
                "seconds": report.seconds,
                "paths": report.paths,
                "sections": {s.key: s.passed for s in report.sections},
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(f"{len(report.sections) - len(failed)} of {len(report.sections)} sections pass "
              f"their theory checks ({report.seconds:.0f} s); report: {report.paths['markdown']}")
        for title in failed:
            print(f"FAILED: {title}")
    return 0 if report.passed else 1


def run_sweep(args) -> int:
    """Runs a grid sweep from a TOML file and/or flags; stores it, plots it, summarises it."""
    import os

    import jaxflow as jf

    values = {}
    source = "jaxflow sweep"
    if args.config is not None:
        if not os.path.isfile(args.config):
            raise UsageError(f"jaxflow sweep: config file {args.config!r} does not exist")
        try:
            values = jf.Grid.from_toml(args.config).to_dict()
        except ValueError as error:
            raise UsageError(f"jaxflow sweep: {error}") from None
        source = args.config
    for key in ("model", "depth", "activation", "init", "width", "seeds", "batch", "metrics"):
        flag = getattr(args, key)
        if flag is not None:
            values[key] = flag
    if args.plot and "grad_ratio" not in values.get("metrics", jf.METRICS):
        raise UsageError("jaxflow sweep: --plot draws the gradient ratio; include grad_ratio in --metrics")
    try:
        grid = jf.Grid.from_dict(values, source=source)
    except ValueError as error:
        raise UsageError(f"jaxflow sweep: {error}") from None
    if args.plot and os.path.exists(args.plot) and not os.path.isdir(args.plot):
        raise UsageError(f"jaxflow sweep: --plot {args.plot!r} exists and is not a directory")
    try:
        ds = jf.sweep(grid, store=args.out, quiet=args.quiet, chunk_size=args.chunk_size)
    except ValueError as error:  # a store of another grid, a bad chunk size
        raise UsageError(f"jaxflow sweep: {error}") from None
    if args.plot:
        from jaxflow.plotting import plot_gradient_ratio, plot_sweep_heatmap, save_figure

        if args.metric not in ds.data_vars or "depth" not in ds[args.metric].dims:
            choices = sorted(n for n, v in ds.data_vars.items() if "depth" in v.dims)
            raise UsageError(f"jaxflow sweep: --metric {args.metric!r} is not in this sweep; use one of {', '.join(choices)}")
        os.makedirs(args.plot, exist_ok=True)
        for name, draw in (
            (f"heatmap_{args.metric}.png", lambda: plot_sweep_heatmap(ds, args.metric)[0]),
            ("grad_ratio_vs_depth.png", lambda: plot_gradient_ratio(ds)),
        ):
            path = os.path.join(args.plot, name)
            try:
                save_figure(draw(), path)
            except FileExistsError as error:
                raise UsageError(f"jaxflow sweep: {error}") from None
            if not args.quiet:
                print(f"wrote {path}")
    if args.json:
        summary = {
            "store": args.out,
            "networks": grid.num_configs,
            "depths": list(grid.depth),
            "compilations": int(ds.attrs["compilations"]),
            "seconds": float(ds.attrs["seconds"]),
        }
        if "grad_ratio" in ds:
            from jaxflow.plotting import sweep_summary

            ratio = sweep_summary(ds, "grad_ratio")
            summary["median_grad_ratio"] = {
                str(a): {str(i): dict(zip(map(int, ratio["depth"].values),
                                          map(float, ratio.sel(activation=a, init=i).values)))
                         for i in ratio["init"].values}
                for a in ratio["activation"].values
            }  # fmt: skip
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    if not args.quiet:
        print(
            f"swept {grid.num_configs} networks x {len(grid.depth)} depths "
            f"({ds.attrs['num_chunks']} chunks, {ds.attrs['compilations']} compilation(s), "
            f"{ds.attrs['seconds']} s on {ds.attrs['num_devices']} {ds.attrs['device_kind']})"
            + (f"; stored in {args.out}" if args.out else "")
        )
        if "grad_ratio" in ds:
            from jaxflow.plotting import sweep_summary

            ratio = sweep_summary(ds, "grad_ratio")
            print("median ||dL/dh_0|| / ||dL/dh_d||:")
            print(ratio.to_dataframe(name="grad_ratio")["grad_ratio"].unstack("depth").to_string())
    return 0


def _float_at_least(minimum, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"{value} is not allowed; it must be {'>' if strict else '>='} {minimum} "
                "(a variance)"
            )
        return value

    return parse


def run_theory(args) -> int:
    """Mean-field quantities for each activation, or a phase-diagram figure."""
    import numpy as np

    import jaxflow as jf

    if args.phase_diagram:
        from jaxflow.plotting import plot_phase_diagram, save_figure

        if len(args.activation) != 1:
            raise UsageError("jaxflow theory: --phase-diagram draws one --activation at a time")
        low_w, high_w = args.sigma_w2_range
        low_b, high_b = args.sigma_b2_range
        if not (0 < low_w < high_w) or not (0 <= low_b < high_b):
            raise UsageError(
                "jaxflow theory: the ranges must satisfy 0 < low < high for --sigma-w2-range and "
                "0 <= low < high for --sigma-b2-range"
            )
        diagram = jf.phase_diagram(
            args.activation[0],
            np.linspace(low_w, high_w, args.grid),
            np.linspace(low_b, high_b, args.grid),
        )
        ax = plot_phase_diagram(diagram, quantity=args.quantity)
        try:
            save_figure(ax, args.phase_diagram)
        except FileExistsError as error:
            raise UsageError(f"jaxflow theory: {error}") from None
        if args.json:
            json.dump({"figure": args.phase_diagram, "activation": args.activation[0]}, sys.stdout)
            print()
        else:
            print(f"wrote {args.phase_diagram}")
        return 0
    rows = []
    for activation in args.activation:
        mf = jf.mean_field(activation, args.sigma_w2, args.sigma_b2)
        critical = jf.critical_sigma_w2(activation, args.sigma_b2)
        rows.append(
            {
                "activation": activation,
                "sigma_w2": args.sigma_w2,
                "sigma_b2": args.sigma_b2,
                "status": str(jf.status_name(mf.status)),
                "q_star": float(mf.q_star),
                "chi1": float(mf.chi1),
                "c_star": float(mf.c_star),
                "chi_c": float(mf.chi_c),
                "xi_q": float(mf.xi_q),
                "xi_c": float(mf.xi_c),
                "critical_sigma_w2": float(critical.value),
                "critical_status": str(jf.status_name(critical.status)),
            }
        )
    if args.json:
        json.dump({"rows": rows}, sys.stdout, indent=2, allow_nan=True)
        print()
        return 0
    names = ("q*", "chi1", "c*", "chi_c", "xi_q", "xi_c", "crit sw2")
    keys = ("q_star", "chi1", "c_star", "chi_c", "xi_q", "xi_c", "critical_sigma_w2")
    print(f"mean-field theory at sigma_w2={args.sigma_w2:g}, sigma_b2={args.sigma_b2:g} "
          "(variances; Poole et al. 2016, Schoenholz et al. 2017)")  # fmt: skip
    print(f"{'activation':>11}  " + "  ".join(f"{n:>10}" for n in names) + "  status")
    for row in rows:
        values = "  ".join(f"{row[k]:>10.4g}" for k in keys)
        print(f"{row['activation']:>11}  {values}  {row['status']}")
    print("chi1 = 1 is the edge of chaos; 'crit sw2' is the sigma_w2 where chi1 = 1 at this sigma_b2")
    return 0


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
                   for name, n, status in zip(stats.names, np.asarray(stats.norm), stats.status_names())},
    }}  # fmt: skip
    chain = None
    if isinstance(model, jf.Network):
        chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, batch[0])
        output["spectra"] = [
            {"layer": l + 1,
             "J_norm": float(chain.layer_singular_values[l, 0]),
             "J_min": float(chain.layer_singular_values[l, -1]),
             "P_norm": float(chain.product_singular_values[l, 0]),
             "P_min": float(chain.product_singular_values[l, -1]),
             "P_resolved": int(chain.resolved[l])}
            for l in range(chain.layers.shape[0])
        ]  # fmt: skip
    if args.json:
        json.dump(output, sys.stdout, indent=2)
        print()
        return 0
    print(jf.format_gradient_report(stats, stream=sys.stdout))
    if chain is None:
        print("(per-layer spectra need a jaxflow model: jf.mlp or jf.residual_stack)")
        return 0
    print(f"\nper-layer spectra at the first input (J_l = dh_l/dh_(l-1), P_l = J_l ... J_1):")
    print(f"{'layer':>5}  {'|J_l|_2':>11}  {'smin(J_l)':>11}  {'|P_l|_2':>11}  {'smin(P_l)':>11}")
    for row in output["spectra"]:
        print(f"{row['layer']:>5}  " + "  ".join(f"{row[k]:>11.4e}" for k in ("J_norm", "J_min", "P_norm", "P_min")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxflow`` argument parser with every subcommand."""
    parser = _Parser(
        prog="jaxflow",
        description="Study how gradients flow through deep networks, in JAX.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    spectra = commands.add_parser(
        "spectra",
        help="per-layer Jacobian and product-chain singular values of one network",
        description="Print, per layer l, ‖J_l‖₂ and σ_min(J_l) of the block Jacobian "
        "J_l = ∂h_l/∂h_{l-1}, and ‖P_l‖₂ and σ_min(P_l) of the product P_l = J_l ⋯ J_1, for one "
        "network at one random input x ~ N(0, I).",
        epilog=EXAMPLES["spectra"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(spectra)
    spectra.add_argument("--json", action="store_true", help="print JSON instead of a table")
    spectra.set_defaults(run=run_spectra)

    from jaxflow.activations import ACTIVATIONS

    theory = commands.add_parser(
        "theory",
        help="mean-field q*, chi1, c*, depth scales and the critical line, or a phase diagram",
        description="Mean-field theory of signal propagation (Poole et al. 2016; Schoenholz et "
        "al. 2017) for each activation at one (sigma_w2, sigma_b2), both variances: the length-map "
        "fixed point q*, chi1, the correlation fixed point c*, chi_c, the depth scales xi_q and "
        "xi_c, and the critical sigma_w2 (chi1 = 1) at this sigma_b2. With --phase-diagram, a "
        "figure over a (sigma_w2, sigma_b2) grid instead.",
        epilog=EXAMPLES["theory"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    theory.add_argument("--activation", nargs="+", choices=sorted(ACTIVATIONS), default=["tanh"],
                        metavar="NAME", help=f"one or more of: {', '.join(sorted(ACTIVATIONS))}")
    theory.add_argument("--sigma-w2", type=_float_at_least(0.0, True), default=1.0,
                        help="weight variance sigma_w2 = fan_in * Var(W) (default 1)")
    theory.add_argument("--sigma-b2", type=_float_at_least(0.0, False), default=0.0,
                        help="bias variance sigma_b2 (default 0)")
    theory.add_argument("--phase-diagram", metavar="FILE.png",
                        help="write a phase-diagram figure instead (never overwrites FILE)")
    theory.add_argument("--quantity", choices=("chi1", "xi_c", "q_star"), default="chi1",
                        help="what the phase diagram colours (default chi1)")
    theory.add_argument("--sigma-w2-range", type=float, nargs=2, default=(0.5, 4.0),
                        metavar=("LOW", "HIGH"), help="phase-diagram sigma_w2 range (default 0.5 4)")
    theory.add_argument("--sigma-b2-range", type=float, nargs=2, default=(0.0, 0.5),
                        metavar=("LOW", "HIGH"), help="phase-diagram sigma_b2 range (default 0 0.5)")
    theory.add_argument("--grid", type=_positive_int, default=25,
                        help="phase-diagram points per axis (default 25)")
    theory.add_argument("--json", action="store_true", help="print JSON instead of a table")
    theory.set_defaults(run=run_theory)

    check = commands.add_parser(
        "check",
        help="gradient health and per-layer spectra of your own model",
        description="Load MODULE:FUNCTION, call it with no arguments to get (model, variables, x) "
        "or (model, variables, x, y), and print the gradient-health report of an MSE loss (every "
        "parameter's gradient norm, mean, max, status) and, for a jaxflow model, the per-layer "
        "Jacobian spectra at the first input.",
        epilog=EXAMPLES["check"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("target", metavar="MODULE:FUNCTION",
                       help="e.g. mymodels:build or path/to/file.py:build")
    check.add_argument("--json", action="store_true", help="print JSON instead of tables")
    check.set_defaults(run=run_check)

    from jaxflow.experiments.reproduce import SECTIONS

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce every claim of the gradient-flow notes as a report",
        description="Run the canned experiments and write DIR/report.md, a self-contained "
        "DIR/report.html, every figure as PNG and every number as DIR/numbers.json: one section "
        "per claim, each with its theory check. Exit status 1 if any check fails.",
        epilog=EXAMPLES["reproduce"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reproduce.add_argument("--out", default="jaxflow-report", metavar="DIR",
                           help="report folder; must not exist or be empty (default: jaxflow-report)")
    reproduce.add_argument("--quick", action="store_true", help="smaller sizes, same checks")
    reproduce.add_argument("--platform", choices=("cpu", "gpu", "tpu"), default=None,
                           help="JAX platform (default: what JAX finds)")
    reproduce.add_argument("--sections", nargs="+", choices=list(SECTIONS), metavar="NAME",
                           help=f"run only these sections: {', '.join(SECTIONS)}")
    reproduce.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    reproduce.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                           help="sections run at once (default: min(2, cores); numbers do not change)")
    reproduce.add_argument("--quiet", action="store_true", help="no progress lines")
    reproduce.add_argument("--json", action="store_true", help="print a JSON summary")
    reproduce.set_defaults(run=run_reproduce)
    from jaxflow.activations import ACTIVATIONS
    from jaxflow.sweeps.grid import METRICS

    sweep = commands.add_parser(
        "sweep",
        help="Jacobian spectra and gradient ratios over depth x activation x init x seeds",
        description="Run every network of a grid in one compiled call per chunk and store the "
        "labelled results (xarray/Zarr). The grid comes from a TOML file, flags, or both (flags "
        "win).",
        epilog=EXAMPLES["sweep"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("config", nargs="?", help="TOML file with the grid's fields")
    sweep.add_argument("--out", help="Zarr store to write (and resume from)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    sweep.add_argument("--plot", metavar="DIR", help="write a heatmap and a gradient-ratio plot here")
    sweep.add_argument(
        "--metric", default="grad_ratio", help="what the heatmap shows (default: grad_ratio)"
    )
    sweep.add_argument("--model", choices=("mlp", "residual"), help="network family")
    sweep.add_argument("--depth", type=_positive_int, nargs="+", help="depths, e.g. 5 10 20 40")
    sweep.add_argument(
        "--activation",
        nargs="+",
        choices=sorted(ACTIVATIONS),
        metavar="NAME",
        help=f"activations: {', '.join(sorted(ACTIVATIONS))}",
    )
    sweep.add_argument(
        "--init", type=_init_arg, nargs="+", metavar="SCHEME", help="scheme names or 'sigma_w2,sigma_b2'"
    )
    sweep.add_argument("--width", type=_positive_int, help="hidden width n")
    sweep.add_argument("--seeds", type=_positive_int, help="number of seeds")
    sweep.add_argument("--batch", type=_positive_int, help="inputs per seed")
    sweep.add_argument(
        "--metrics", nargs="+", choices=METRICS, metavar="METRIC", help=f"metrics: {', '.join(METRICS)}"
    )
    sweep.add_argument("--chunk-size", type=_positive_int, help="configurations per compiled call")
    sweep.add_argument("--json", action="store_true", help="print a JSON summary instead of tables")
    sweep.set_defaults(run=run_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jaxflow`` command; returns the exit status.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 on a user error (reported as one line on stderr).

    Example:
      >>> from jaxflow.cli import main
      >>> main(["spectra", "--depth", "0"])
      2
    """
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

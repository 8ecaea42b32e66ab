"""``jaxflow sweep``: a grid of networks in one compiled call per chunk, stored and summarised."""

from __future__ import annotations

import argparse
import sys

from jaxflow.cli._common import (
    UsageError,
    _init_arg,
    _output_path,
    _positive_int,
    dump_json,
)

EXAMPLES = """examples:
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
"""


def _figure_names(args):
    return (f"heatmap_{args.metric}.png", "grad_ratio_vs_depth.png")


def _check_outputs(args):
    """Refuses, before any computation, outputs that could not be written: a store or plot
    folder inside a file or in a read-only folder, a --plot that is a file or already holds the
    figures (nothing is overwritten)."""
    import os

    from jaxflow._files import check_writable

    if args.out is not None and not os.path.isdir(args.out):
        check_writable("--out", os.path.dirname(os.path.abspath(args.out)))
    if args.plot:
        if os.path.exists(args.plot) and not os.path.isdir(args.plot):
            raise UsageError(f"jaxflow sweep: --plot {args.plot!r} exists and is not a directory")
        check_writable("--plot", args.plot)
        taken = [n for n in _figure_names(args) if os.path.exists(os.path.join(args.plot, n))]
        if taken:
            raise UsageError(
                f"jaxflow sweep: --plot {args.plot!r} already holds {', '.join(taken)}; choose "
                "another directory (nothing is overwritten)"
            )


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
        raise UsageError(
            "jaxflow sweep: --plot draws the gradient ratio; include grad_ratio in --metrics"
        )
    try:
        grid = jf.Grid.from_dict(values, source=source)
    except ValueError as error:
        raise UsageError(f"jaxflow sweep: {error}") from None
    _check_outputs(args)
    try:
        ds = jf.sweep(grid, store=args.out, quiet=args.quiet, chunk_size=args.chunk_size)
    except ValueError as error:  # a store of another grid, a bad chunk size
        raise UsageError(f"jaxflow sweep: {error}") from None
    if args.plot:
        from jaxflow.plotting import plot_gradient_ratio, plot_sweep_heatmap, save_figure

        if args.metric not in ds.data_vars or "depth" not in ds[args.metric].dims:
            choices = sorted(n for n, v in ds.data_vars.items() if "depth" in v.dims)
            raise UsageError(
                f"jaxflow sweep: --metric {args.metric!r} is not in this sweep; use one of {', '.join(choices)}"
            )
        os.makedirs(args.plot, exist_ok=True)
        for name, draw in (
            (_figure_names(args)[0], lambda: plot_sweep_heatmap(ds, args.metric)[0]),
            (_figure_names(args)[1], lambda: plot_gradient_ratio(ds)),
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
        dump_json(summary, sys.stdout)
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


def add_parser(commands) -> None:
    """Registers ``sweep`` on the subcommands of the ``jaxflow`` parser."""
    from jaxflow.activations import ACTIVATIONS
    from jaxflow.sweeps.grid import METRICS

    sweep = commands.add_parser(
        "sweep",
        help="Jacobian spectra and gradient ratios over depth x activation x init x seeds",
        description="Run every network of a grid in one compiled call per chunk and store the "
        "labelled results (xarray/Zarr). The grid comes from a TOML file, flags, or both (flags "
        "win).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("config", nargs="?", help="TOML file with the grid's fields")
    sweep.add_argument("--out", type=_output_path, help="Zarr store to write (and resume from)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    sweep.add_argument(
        "--plot",
        type=_output_path,
        metavar="DIR",
        help="write a heatmap and a gradient-ratio plot here (never overwrites a file)",
    )
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
        "--init",
        type=_init_arg,
        nargs="+",
        metavar="SCHEME",
        help="scheme names or 'sigma_w2,sigma_b2'",
    )
    sweep.add_argument("--width", type=_positive_int, help="hidden width n")
    sweep.add_argument("--seeds", type=_positive_int, help="number of seeds")
    sweep.add_argument("--batch", type=_positive_int, help="inputs per seed")
    sweep.add_argument(
        "--metrics",
        nargs="+",
        choices=METRICS,
        metavar="METRIC",
        help=f"metrics: {', '.join(METRICS)}",
    )
    sweep.add_argument("--chunk-size", type=_positive_int, help="configurations per compiled call")
    sweep.add_argument(
        "--json",
        action="store_true",
        help='print a JSON summary instead of tables (NaN as null, infinities as "inf")',
    )
    sweep.set_defaults(run=run_sweep)

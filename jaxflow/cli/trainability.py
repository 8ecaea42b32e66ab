"""``jaxflow trainability``: every network of a grid trained in one compiled call, stored, plotted
and summarised."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from jaxflow.cli._common import (
    UsageError,
    _float_at_least,
    _init_arg,
    _output_path,
    _positive_int,
    dump_json,
    json_number,
)

EXAMPLES = """examples:
  jaxflow trainability --depth 2 6 12 24 --sigma-w2 0.5 1 1.76 3 4 --steps 300 --plot figures/
  jaxflow trainability --depth 8 24 48 --init 1.19,0.001 orthogonal:1.19,0.001 \\
      --data teacher-student --out runs/iso.zarr --plot figures/ --json   # tanh at criticality
  jaxflow trainability --data mnist:~/data --width 64 --seeds 4 --optimizer adam

--init takes scheme names (xavier, he, orthogonal, ...), Gaussian variances 'sigma_w2,sigma_b2'
and orthogonal weights at a variance 'orthogonal:sigma_w2,sigma_b2'; --sigma-w2 adds Gaussian
pairs at --sigma-b2 (without --init the grid is --sigma-w2 0.5 1 1.5 2 3 4 at σ_b² = 0.05).
--data is digits (scikit-learn's bundled 8x8 digits: pip install 'jaxflow[data]'),
teacher-student (synthetic, NumPy only), mnist:DIR or cifar10:DIR (files you have; never
downloaded). Rerunning with the same --out resumes; a store of another grid, training or data set
is refused. --plot writes the heat map (accuracy over depth x sigma_w2 with 6 xi_c) for each
activation with Gaussian inits, and the isometry figure where an orthogonal init has a Gaussian
twin of the same variances; an existing file is never overwritten.
"""

DEFAULT_SIGMA_W2 = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
DEFAULT_SIGMA_B2 = 0.05
DATA_CHOICES = "digits, teacher-student, mnist:DIR, cifar10:DIR"


def _init_entry(text):
    """A scheme name, 'sigma_w2,sigma_b2', or 'orthogonal:sigma_w2,sigma_b2'."""
    if text.startswith("orthogonal:"):
        pair = _init_arg(text.split(":", 1)[1])
        if not isinstance(pair, tuple):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not 'orthogonal:sigma_w2,sigma_b2' (two variances after the colon)"
            )
        return ("orthogonal", *pair)
    return _init_arg(text)


def _data_arg(text):
    name, _, folder = text.partition(":")
    if name in ("digits", "teacher-student") and not folder:
        return (name, None)
    if name in ("mnist", "cifar10") and folder:
        return (name, os.path.expanduser(folder))
    raise argparse.ArgumentTypeError(f"{text!r} is not one of {DATA_CHOICES}")


def load_data(choice):
    """The :class:`jaxflow.data.Dataset` of a ``--data`` choice ``(name, folder)``."""
    from jaxflow import data

    name, folder = choice
    if name == "teacher-student":
        # A linear teacher, as the experiments' fallback: a shallow network learns it in a few
        # hundred SGD steps, so what fails to train is the depth, not the task.
        return data.teacher_student(
            num_train=1024, num_test=256, features=16, num_classes=4, hidden=()
        )
    if name == "digits":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise UsageError(
                "jaxflow trainability: --data digits needs scikit-learn, which ships the images: "
                "pip install 'jaxflow[data]' (or use --data teacher-student)"
            ) from None
        return data.digits()
    loader = data.mnist if name == "mnist" else data.cifar10
    try:
        return loader(folder)
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())
        raise UsageError(f"jaxflow trainability: --data {name}:{folder}: {message}") from None


def build_grid(args):
    """The :class:`jaxflow.Grid` of the grid options."""
    import jaxflow as jf

    inits = list(args.init or ())
    sigma_w2 = args.sigma_w2
    if args.sigma_b2 is not None and sigma_w2 is None and args.init is not None:
        raise UsageError(
            "jaxflow trainability: --sigma-b2 sets the bias variance of --sigma-w2's Gaussian "
            "pairs; give --sigma-w2 too (or write --init 'sigma_w2,sigma_b2')"
        )
    if sigma_w2 is None and args.init is None:
        sigma_w2 = DEFAULT_SIGMA_W2
    sigma_b2 = DEFAULT_SIGMA_B2 if args.sigma_b2 is None else args.sigma_b2
    inits += [(float(w), float(sigma_b2)) for w in sigma_w2 or ()]
    values = {
        "model": "mlp",
        "depth": args.depth,
        "activation": args.activation,
        "init": inits,
        "width": args.width,
        "seeds": args.seeds,
    }
    try:
        return jf.Grid.from_dict(values, source="jaxflow trainability")
    except ValueError as error:
        raise UsageError(f"jaxflow trainability: {error}") from None


def build_training(args):
    """The :class:`jaxflow.Training` of the training options."""
    import jaxflow as jf

    every = args.record_every or max(1, args.steps // 10)
    try:
        return jf.Training(
            steps=args.steps,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            record_every=every,
            optimizer=args.optimizer,
        )
    except ValueError as error:
        raise UsageError(f"jaxflow trainability: {error}") from None


def _figures(grid):
    """[(file name, kind, activation)] of the figures ``--plot`` draws for ``grid``."""
    from jaxflow.sweeps.grid import init_family, init_variances

    gaussian = [init_variances(i) for i in grid.init if init_family(i) == "normal"]
    orthogonal = [init_variances(i) for i in grid.init if init_family(i) == "orthogonal"]
    figures = []
    one_bias = len({b for _, b in gaussian}) == 1 and len(set(gaussian)) == len(gaussian)
    if gaussian and one_bias:
        for activation in grid.activation:
            figures.append((f"trainability_{activation}.png", "heatmap", activation))
    if any(pair in gaussian for pair in orthogonal):
        figures.append(("isometry.png", "isometry", None))
    return figures


def _plot(ds, figures, folder, quiet):
    from jaxflow.plotting import plot_isometry, plot_trainability, save_figure

    for name, kind, activation in figures:
        path = os.path.join(folder, name)
        if kind == "heatmap":
            figure = plot_trainability(ds, activation=activation)
        else:
            figure = plot_isometry(ds)[0]
        try:
            save_figure(figure, path)
        except FileExistsError as error:
            raise UsageError(f"jaxflow trainability: {error}") from None
        if not quiet:
            print(f"wrote {path}")


_number = json_number  # a float for JSON: None for NaN, "inf"/"-inf" for infinities


def summary(ds, store=None) -> dict:
    """The ``--json`` summary of a trainability dataset.

    Per activation and init (its label): σ_w², σ_b², weight family, mean-field χ₁ and ξ_c, and per
    depth the final test accuracy (mean over seeds) and each seed's first non-finite step (-1:
    stayed finite). Non-finite numbers are ``None`` (NaN) or ``"inf"``.
    """
    final = ds["test_accuracy"].isel(step=-1).mean("seed")
    results = {}
    for activation in ds["activation"].values:
        per_init = {}
        for k, init in enumerate(ds["init"].values):
            cell = {"activation": activation, "init": init}
            depths = {}
            for depth in ds["depth"].values:
                at = {**cell, "depth": depth}
                depths[str(int(depth))] = {
                    "test_accuracy": _number(final.sel(at)),
                    "first_nonfinite_step": [
                        int(s) for s in ds["first_nonfinite_step"].sel(at).values
                    ],
                }
            per_init[str(init)] = {
                "sigma_w2": float(ds["sigma_w2"].values[k]),
                "sigma_b2": float(ds["sigma_b2"].values[k]),
                "family": str(ds["family"].values[k]),
                "chi1": _number(ds["chi1"].sel(cell)),
                "xi_c": _number(ds["xi_c"].sel(cell)),
                "depths": depths,
            }
        results[str(activation)] = per_init
    return {
        "store": store,
        "dataset": ds.attrs["dataset"],
        "chance_accuracy": float(ds.attrs["chance_accuracy"]),
        "networks": int(ds.sizes["depth"] * ds.sizes["activation"] * ds.sizes["init"])
        * int(ds.sizes["seed"]),
        "steps": int(ds["step"].values[-1]),
        "compilations": int(ds.attrs["compilations"]),
        "chunks": int(ds.attrs["num_chunks"]),
        "chunks_computed": len(json.loads(ds.attrs["chunks_computed"])),
        "devices": int(ds.attrs["num_devices"]),
        "seconds": float(ds.attrs["seconds"]),
        "final_test_accuracy": results,
    }


def _table(ds) -> str:
    final = ds["test_accuracy"].isel(step=-1).mean("seed")
    lines = []
    for activation in ds["activation"].values:
        table = final.sel(activation=activation).transpose("depth", "init").to_pandas()
        table.columns.name, table.index.name = "init", "depth"
        lines += [f"{activation}:", table.to_string(float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)


def run_trainability(args) -> int:
    """Trains every network of a grid on a data set; stores, plots and summarises the result."""
    from jaxflow._files import check_writable
    from jaxflow.experiments import trainability

    grid = build_grid(args)
    training = build_training(args)
    figures = []
    if args.plot:
        if os.path.exists(args.plot) and not os.path.isdir(args.plot):
            raise UsageError(f"jaxflow trainability: --plot {args.plot!r} is not a directory")
        figures = _figures(grid)
        if not figures:
            raise UsageError(
                "jaxflow trainability: --plot has nothing to draw for this grid: the heat map "
                "needs Gaussian inits of one σ_b² (--sigma-w2), the isometry figure an "
                "'orthogonal:w,b' init beside its Gaussian 'w,b'"
            )
        check_writable("--plot", args.plot)
        taken = [n for n, _, _ in figures if os.path.exists(os.path.join(args.plot, n))]
        if taken:  # before training, not after: nothing is ever overwritten
            raise UsageError(
                f"jaxflow trainability: --plot {args.plot!r} already holds {', '.join(taken)}; "
                "choose another directory (nothing is overwritten)"
            )
    if args.out is not None and not os.path.isdir(args.out):
        check_writable("--out", os.path.dirname(os.path.abspath(args.out)))
    data = load_data(args.data)
    try:
        ds = trainability(
            grid,
            data,
            training,
            store=args.out,
            chunk_size=args.chunk_size,
            progress=not args.quiet,  # tqdm, on stderr and only on a terminal
        )
    except ValueError as error:  # a store of another run, a bad chunk size
        raise UsageError(f"jaxflow trainability: {' '.join(str(error).split())}") from None
    if figures:
        os.makedirs(args.plot, exist_ok=True)
        _plot(ds, figures, args.plot, args.quiet or args.json)
    if args.json:
        dump_json(summary(ds, args.out), sys.stdout)
        return 0
    if not args.quiet:
        computed = len(json.loads(ds.attrs["chunks_computed"]))
        print(
            f"trained {grid.num_configs} networks x {len(grid.depth)} depths on "
            f"{ds.attrs['dataset']} for {training.steps} steps ({computed} of "
            f"{ds.attrs['num_chunks']} chunks computed, {ds.attrs['compilations']} "
            f"compilation(s) on {ds.attrs['num_devices']} device(s), {ds.attrs['seconds']} s)"
            + (f"; stored in {args.out}" if args.out else "")
        )
        print(f"final test accuracy, mean over seeds (chance {ds.attrs['chance_accuracy']:.3f}):")
        print(_table(ds))
    return 0


def _positive_float(text):
    value = _float_at_least(0.0, strict=True)(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be finite")
    return value


def add_parser(commands) -> None:
    """Registers ``trainability`` on the subcommands of the ``jaxflow`` parser."""
    from jaxflow.activations import ACTIVATIONS
    from jaxflow.sweeps.training import OPTIMIZERS

    parser = commands.add_parser(
        "trainability",
        help="train a grid of deep networks in one compiled call: which ones train, how fast",
        description="Train every network of depth x activation x init x seeds on a data set in "
        "one compiled call per chunk (Schoenholz et al. 2017; Pennington et al. 2017) and store "
        "the labelled training curves (xarray/Zarr).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--depth",
        type=_positive_int,
        nargs="+",
        default=[2, 6, 12, 24],
        help="depths (default: 2 6 12 24)",
    )
    grid.add_argument(
        "--activation",
        nargs="+",
        choices=sorted(ACTIVATIONS),
        default=["tanh"],
        metavar="NAME",
        help=f"activations: {', '.join(sorted(ACTIVATIONS))} (default: tanh)",
    )
    grid.add_argument(
        "--init",
        type=_init_entry,
        nargs="+",
        metavar="SCHEME",
        help="scheme names, 'sigma_w2,sigma_b2' or 'orthogonal:sigma_w2,sigma_b2'",
    )
    grid.add_argument(
        "--sigma-w2",
        type=_float_at_least(0.0, strict=True),
        nargs="+",
        metavar="W",
        help="Gaussian inits at these weight variances (with --sigma-b2); default without "
        "--init: 0.5 1 1.5 2 3 4",
    )
    grid.add_argument(
        "--sigma-b2",
        type=_float_at_least(0.0, strict=False),
        metavar="B",
        help=f"bias variance of the --sigma-w2 inits (default: {DEFAULT_SIGMA_B2})",
    )
    grid.add_argument("--width", type=_positive_int, default=32, help="hidden width (default: 32)")
    grid.add_argument("--seeds", type=_positive_int, default=2, help="seeds (default: 2)")
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=_positive_int, default=300, help="steps (default: 300)")
    train.add_argument(
        "--learning-rate", type=_positive_float, default=0.1, help="step size (default: 0.1)"
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=32, help="minibatch size (default: 32)"
    )
    train.add_argument(
        "--record-every",
        type=_positive_int,
        help="record the curves every this many steps (default: steps/10)",
    )
    train.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="sgd", help="optimiser (default: sgd)"
    )
    parser.add_argument(
        "--data",
        type=_data_arg,
        default=("digits", None),
        metavar="DATA",
        help=f"{DATA_CHOICES} (default: digits)",
    )
    parser.add_argument(
        "--out", type=_output_path, metavar="STORE", help="Zarr store to write (and resume from)"
    )
    parser.add_argument(
        "--plot",
        type=_output_path,
        metavar="DIR",
        help="write the heat map and isometry figures here",
    )
    parser.add_argument("--chunk-size", type=_positive_int, help="configurations per compiled call")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(run=run_trainability)

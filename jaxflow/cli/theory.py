"""``jaxflow theory``: mean-field quantities per activation, or a phase-diagram figure."""

from __future__ import annotations

import argparse
import sys

from jaxflow.cli._common import (
    UsageError,
    _finite_float,
    _float_at_least,
    _int_from_one_to,
    _output_path,
    dump_json,
)

MAX_GRID = 1000
"""The most phase-diagram points per axis (a million mean-field solves in all)."""


_grid_points = _int_from_one_to(MAX_GRID)


EXAMPLES = """examples:
  jaxflow theory --activation tanh relu erf --sigma-w2 1.5 --sigma-b2 0.05
  jaxflow theory --activation sigmoid --sigma-w2 1 --json
  jaxflow theory --activation tanh --phase-diagram tanh_phase.png --quantity chi1
"""


def run_theory(args) -> int:
    """Mean-field quantities for each activation, or a phase-diagram figure."""
    import numpy as np

    import jaxflow as jf

    if args.phase_diagram:
        from jaxflow._files import check_output_path, figure_format
        from jaxflow.plotting import plot_phase_diagram, save_figure

        # Before any solve: an existing file, a folder that is a file or read-only, a format
        # matplotlib cannot write.
        check_output_path("--phase-diagram", args.phase_diagram)
        try:
            figure_format(args.phase_diagram, "--phase-diagram")
        except ValueError as error:
            raise UsageError(f"jaxflow theory: {error}") from None
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
            dump_json({"figure": args.phase_diagram, "activation": args.activation[0]}, sys.stdout)
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
                "status": str(jf.PredictionStatus.name_of(mf.status)),
                "q_star": float(mf.q_star),
                "chi1": float(mf.chi1),
                "c_star": float(mf.c_star),
                "chi_c": float(mf.chi_c),
                "xi_q": float(mf.xi_q),
                "xi_c": float(mf.xi_c),
                "critical_sigma_w2": float(critical.value),
                "critical_status": str(jf.PredictionStatus.name_of(critical.status)),
            }
        )
    if args.json:
        dump_json({"rows": rows}, sys.stdout)
        return 0
    names = ("q*", "chi1", "c*", "chi_c", "xi_q", "xi_c", "crit sw2")
    keys = ("q_star", "chi1", "c_star", "chi_c", "xi_q", "xi_c", "critical_sigma_w2")
    print(f"mean-field theory at sigma_w2={args.sigma_w2:g}, sigma_b2={args.sigma_b2:g} "
          "(variances; Poole et al. 2016, Schoenholz et al. 2017)")  # fmt: skip
    print(f"{'activation':>11}  " + "  ".join(f"{n:>10}" for n in names) + "  status")
    for row in rows:
        values = "  ".join(f"{row[k]:>10.4g}" for k in keys)
        print(f"{row['activation']:>11}  {values}  {row['status']}")
    print(
        "chi1 = 1 is the edge of chaos; 'crit sw2' is the sigma_w2 where chi1 = 1 at this sigma_b2"
    )
    return 0


def add_parser(commands) -> None:
    """Registers ``theory`` on the subcommands of the ``jaxflow`` parser."""
    from jaxflow.activations import ACTIVATIONS

    theory = commands.add_parser(
        "theory",
        help="mean-field q*, chi1, c*, depth scales and the critical line, or a phase diagram",
        description="Mean-field theory of signal propagation (Poole et al. 2016; Schoenholz et "
        "al. 2017) for each activation at one (sigma_w2, sigma_b2), both variances: the length-map "
        "fixed point q*, chi1, the correlation fixed point c*, chi_c, the depth scales xi_q and "
        "xi_c, and the critical sigma_w2 (chi1 = 1) at this sigma_b2. With --phase-diagram, a "
        "figure over a (sigma_w2, sigma_b2) grid instead.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    theory.add_argument(
        "--activation",
        nargs="+",
        choices=sorted(ACTIVATIONS),
        default=["tanh"],
        metavar="NAME",
        help=f"one or more of: {', '.join(sorted(ACTIVATIONS))}",
    )
    theory.add_argument(
        "--sigma-w2",
        type=_float_at_least(0.0, True),
        default=1.0,
        help="weight variance sigma_w2 = fan_in * Var(W) (default 1)",
    )
    theory.add_argument(
        "--sigma-b2",
        type=_float_at_least(0.0, False),
        default=0.0,
        help="bias variance sigma_b2 (default 0)",
    )
    theory.add_argument(
        "--phase-diagram",
        type=_output_path,
        metavar="FILE.png",
        help="write a phase-diagram figure instead (never overwrites FILE)",
    )
    theory.add_argument(
        "--quantity",
        choices=("chi1", "xi_c", "q_star"),
        default="chi1",
        help="what the phase diagram colours (default chi1)",
    )
    theory.add_argument(
        "--sigma-w2-range",
        type=_finite_float,
        nargs=2,
        default=(0.5, 4.0),
        metavar=("LOW", "HIGH"),
        help="phase-diagram sigma_w2 range (default 0.5 4)",
    )
    theory.add_argument(
        "--sigma-b2-range",
        type=_finite_float,
        nargs=2,
        default=(0.0, 0.5),
        metavar=("LOW", "HIGH"),
        help="phase-diagram sigma_b2 range (default 0 0.5)",
    )
    theory.add_argument(
        "--grid",
        type=_grid_points,
        default=25,
        help=f"phase-diagram points per axis (default 25, at most {MAX_GRID})",
    )
    theory.add_argument(
        "--json",
        action="store_true",
        help='print JSON instead of a table (NaN as null, infinities as "inf"/"-inf")',
    )
    theory.set_defaults(run=run_theory)

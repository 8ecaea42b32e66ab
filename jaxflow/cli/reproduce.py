"""``jaxflow reproduce``: every section of the report, run and written to a folder."""

from __future__ import annotations

import argparse
import json
import sys

from jaxflow.cli._common import UsageError, _output_path, _positive_int, _seed

EXAMPLES = """examples:
  jaxflow reproduce                          # every section, into ./jaxflow-report
  jaxflow reproduce --quick --out /tmp/r     # smaller sizes, same checks
  jaxflow reproduce --sections chain_rule spectra --platform cpu
"""


def _select_platform(platform):
    """Points JAX at ``platform`` before it picks a backend; a mismatch is a user error."""
    import jax

    if platform is None:
        return
    try:
        jax.config.update("jax_platforms", platform)
        found = jax.devices()[0].platform
    except RuntimeError as error:
        raise UsageError(
            f"jaxflow: --platform {platform}: JAX cannot use it here ({error})"
        ) from None
    if found != platform:
        raise UsageError(
            f"jaxflow: --platform {platform} was asked for but JAX is already running on {found}"
        )


def run_reproduce(args) -> int:
    """Runs every canned experiment and writes the report folder."""
    from jaxflow import _platform

    _platform.prefer_fast_compilation()  # many small programs, each compiled once
    from jaxflow.report.reproduce import check_out_folder, reproduce

    check_out_folder(args.out)  # before anything runs: a file, a non-empty folder, read-only
    _select_platform(args.platform)

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
        print(
            f"{len(report.sections) - len(failed)} of {len(report.sections)} sections pass "
            f"their theory checks ({report.seconds:.0f} s); report: {report.paths['markdown']}"
        )
        for title in failed:
            print(f"FAILED: {title}")
    return 0 if report.passed else 1


def add_parser(commands) -> None:
    """Registers ``reproduce`` on the subcommands of the ``jaxflow`` parser."""
    from jaxflow.report.reproduce import SECTIONS

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce every claim of the gradient-flow notes as a report",
        description="Run the canned experiments and write DIR/report.md, a self-contained "
        "DIR/report.html, every figure as PNG and every number as DIR/numbers.json: one section "
        "per claim, each with its theory check. Exit status 1 if any check fails.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reproduce.add_argument(
        "--out",
        type=_output_path,
        default="jaxflow-report",
        metavar="DIR",
        help="report folder; must not exist or be empty (default: jaxflow-report). It is "
        "written as .DIR.incomplete-* beside it and renamed at the end: DIR only ever holds a "
        "finished report",
    )
    reproduce.add_argument("--quick", action="store_true", help="smaller sizes, same checks")
    reproduce.add_argument(
        "--platform",
        choices=("cpu", "gpu", "tpu"),
        default=None,
        help="JAX platform (default: what JAX finds)",
    )
    reproduce.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS),
        metavar="NAME",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    reproduce.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    reproduce.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="sections run at once (default: min(2, cores); numbers do not change)",
    )
    reproduce.add_argument("--quiet", action="store_true", help="no progress lines")
    reproduce.add_argument("--json", action="store_true", help="print a JSON summary")
    reproduce.set_defaults(run=run_reproduce)

"""The ``jaxflow`` command line.

One module per subcommand, each a function ``run_<name>(args) -> int`` and an ``add_parser`` that
:func:`build_parser` calls; :func:`main` turns user errors (bad options, bad values) into one line
on stderr and exit code 2, never a traceback.

Every command keeps its compiled programs in JAX's persistent compilation cache, so a second run
does not compile again: ``--cache-dir DIR`` (before or after the command) moves the cache,
``--cache-dir off`` turns it off, and so does ``JAXFLOW_CACHE_DIR`` (see ``jaxflow --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxflow.cli import check, reproduce, spectra, sweep, theory, trainability
from jaxflow.cli._common import UsageError, _Parser

__all__ = ["main"]

_SUBCOMMANDS = (spectra, theory, check, reproduce, sweep, trainability)  # in --help order


def build_parser() -> _Parser:
    """The ``jaxflow`` argument parser with every subcommand."""
    parser = _Parser(
        prog="jaxflow",
        description="Study how gradients flow through deep networks, in JAX.",
    )
    _add_cache_option(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for subcommand in _SUBCOMMANDS:
        subcommand.add_parser(commands)
    for command in dict.fromkeys(commands.choices.values()):
        # SUPPRESS: an option given before the command is not reset by the command's parser.
        _add_cache_option(command, default=argparse.SUPPRESS)
    return parser


def _add_cache_option(parser, default) -> None:
    parser.add_argument(
        "--cache-dir",
        default=default,
        metavar="DIR",
        help="where compiled programs are kept between runs, or 'off' (default: "
        "$JAXFLOW_CACHE_DIR, else $XDG_CACHE_HOME/jaxflow or ~/.cache/jaxflow; one subfolder "
        "per jax/jaxlib version)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jaxflow`` command; returns the exit status.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 on a user error (reported as one line on stderr): bad options or values,
      and files that cannot be read or written (missing, inside a file, read-only, a full
      disk). Outputs are written whole or not at all, so a failed write leaves nothing behind.

    Example:
      >>> from jaxflow.cli import main
      >>> main(["spectra", "--depth", "0"])
      2
    """
    from jaxflow import _platform

    _platform.guard_cpu_thread_pool()  # before any JAX backend starts
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.cache_dir is not None:  # for the whole process, the drivers it calls included
            os.environ[_platform.CACHE_ENV] = args.cache_dir
        _platform.use_compilation_cache()
        return args.run(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except OSError as error:  # a path the user gave cannot be read or written: theirs to fix
        command = getattr(args, "command", None)
        print(f"jaxflow{f' {command}' if command else ''}: {_describe(error)}", file=sys.stderr)
        return 2


def _describe(error: OSError) -> str:
    """One line for a file-system error: ``PATH: reason`` for the system's own errors, the
    message for jaxflow's (which name the option's argument)."""
    if error.strerror and error.filename is not None:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error)
    return " ".join(text.split())

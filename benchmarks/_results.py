"""Writing a benchmark's result files: each appears whole or not at all, and none is ever replaced.

A result is a set of files (the ``.json`` and the ``.md`` of one run, say). :func:`write_new`
refuses the whole set, before writing anything, when one of its files exists; it then writes
each file through :func:`jaxflow._files.write_file` (a temporary sibling, flushed and fsynced,
that takes the file's name by a hard link, which fails rather than replace a file another run
published in the meantime) and removes the files of the set it had published if a later one
fails. An interrupted run thus leaves no truncated file that looks like a result, and two runs
started at once cannot overwrite one another.

Scripts that run for long call :func:`refuse_taken` on their file names first, so that a name taken
is refused before the measurement rather than after it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import IO

Content = str | bytes | Callable[[IO[bytes]], object]


def _taken(path: str) -> str:
    return f"{path} exists; results are never overwritten"


def check_new(paths: Iterable[str | os.PathLike]) -> None:
    """Raises ``FileExistsError`` naming the first of ``paths`` that exists (a file, a folder or a
    dangling link).

    Example:
      >>> import os, tempfile
      >>> folder = tempfile.mkdtemp()
      >>> check_new([os.path.join(folder, "run.json")])
      >>> check_new([folder])  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      FileExistsError: ... exists; results are never overwritten
    """
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(_taken(os.fspath(path)))


def refuse_taken(paths: Iterable[str | os.PathLike]) -> None:
    """:func:`check_new` for a script's start: exits with the message instead of raising."""
    try:
        check_new(paths)
    except FileExistsError as error:
        raise SystemExit(str(error)) from None


def write_new(files: Mapping[str | os.PathLike, Content]) -> list[str]:
    """Writes a set of result files, all of them whole or none of them.

    Args:
      files: path → content: ``str`` (written as UTF-8), ``bytes``, or a function that writes
        into a binary file object. The folders must exist.

    Returns:
      The paths written, as strings, in the order given.

    Raises:
      FileExistsError: if one of the paths exists, before anything is written, or if another
        process publishes one of them while this call writes the set; the message names it.
      OSError: whatever the system raises (full disk, read-only folder).

      On any error the set's files already published by this call are removed and no temporary
      file is left behind: a file of the set exists afterwards only if it existed before.

    Example:
      >>> import os, tempfile
      >>> stem = os.path.join(tempfile.mkdtemp(), "machine-2026-01-01")
      >>> [os.path.basename(p) for p in write_new({stem + ".json": "{}", stem + ".md": "# run"})]
      ['machine-2026-01-01.json', 'machine-2026-01-01.md']
      >>> write_new({stem + ".md": "# again"})  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      FileExistsError: ...machine-2026-01-01.md exists; results are never overwritten
    """
    # Imported here, after the measurements: a runner that only orchestrates child processes
    # does not carry jax (which jaxflow's package imports) while it measures them.
    from jaxflow._files import write_file

    files = {os.fspath(path): content for path, content in files.items()}
    check_new(files)
    written = []
    try:
        for path, content in files.items():
            try:
                written.append(write_file(path, content))
            except FileExistsError:
                raise FileExistsError(_taken(path)) from None
    except BaseException:
        for path in written:  # a failed removal must not hide the error that stopped the writes
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return written


def claim_stem(out: str, name: str, machine: str, label: str = "") -> tuple[str, str]:
    """``(stem, date)`` of a run's result files, ``out/name-machine-date[-label]``, refused at the
    start (:func:`refuse_taken`) if its ``.json`` or ``.md`` exists. A check, not a reservation:
    of two runs started together, the second is refused when it writes (:func:`write_new`).

    Example:
      >>> import tempfile
      >>> stem, date = claim_stem(tempfile.mkdtemp(), "load", "box", "quick")
      >>> stem.endswith(f"load-box-{date}-quick")
      True
    """
    date = datetime.date.today().isoformat()
    stem = os.path.join(out, "-".join(filter(None, [name, machine, date, label])))
    refuse_taken([stem + ".json", stem + ".md"])
    return stem, date


def write_report(stem: str, report: dict, table: str) -> list[str]:
    r"""Writes one run's ``stem.json`` (``report``) and ``stem.md`` (``table``) with
    :func:`write_new`, creating the folder if need be.

    Example:
      >>> import json, pathlib, tempfile
      >>> stem = pathlib.Path(tempfile.mkdtemp(), "results", "memory-2026-01-01")
      >>> _ = write_report(str(stem), {"rows": [1]}, "| rows |")
      >>> stem.with_suffix(".md").read_text(), json.loads(stem.with_suffix(".json").read_text())
      ('| rows |\n', {'rows': [1]})
    """
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    return write_new({stem + ".json": json.dumps(report, indent=1), stem + ".md": table + "\n"})


def fresh_stem(directory: str, name: str, date: str) -> str:
    """``directory/name-date``, or with the time of day appended when that run's ``.json``
    exists: the file names of a second run the same day.

    Example:
      >>> import tempfile
      >>> folder = tempfile.mkdtemp()
      >>> stem = fresh_stem(folder, "laptop", "2026-01-01")
      >>> stem.endswith("laptop-2026-01-01")
      True
      >>> _ = write_new({stem + ".json": "{}"})
      >>> fresh_stem(folder, "laptop", "2026-01-01") != stem
      True
    """
    base = os.path.join(directory, f"{name}-{date}")
    if not os.path.exists(base + ".json"):
        return base
    return base + datetime.datetime.now().strftime("-%H%M%S")

"""Writing outputs: a file appears whole or not at all, and an existing one is replaced only when
the caller asks.

Every output jaxflow writes outside a sweep store (figures, report files) goes through
:func:`write_file`: the bytes go to a hidden temporary sibling (``.NAME.<random>.partial``) that
is linked or renamed onto the path only once it is complete, so a run killed or a disk filled
mid-write leaves the old file (or none), never a truncated one. :func:`check_output_path` and
:func:`check_writable` run the same checks up front, before any computation, so that a bad path
costs nothing.
"""

from __future__ import annotations

import os
import secrets


def _nearest_existing(path: str) -> str:
    """``path`` or its nearest ancestor that exists (``"."`` for a relative path's top)."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(name: str, folder: str | os.PathLike) -> None:
    """Raises unless files can be created in ``folder`` or, if it does not exist yet, in the
    folder that would hold it: ``NotADirectoryError`` when a component of the path is a file,
    ``PermissionError`` (or the ``OSError`` the system gives, e.g. a read-only file system)
    when nothing can be created there. ``name`` is the argument, for the message.

    Creating (and removing) an empty file is the one test the system answers honestly: access
    bits say nothing to a privileged user or about a read-only mount.
    """
    folder = os.fspath(folder) or "."
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"{name}: cannot write in {folder!r}: {existing!r} is a file, not a folder"
        )
    probe = os.path.join(existing, f".jaxflow-probe-{secrets.token_hex(4)}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise type(error)(
            f"{name}={folder!r}: cannot write in {existing!r} ({error.strerror})"
        ) from None
    os.unlink(probe)


def check_output_path(name: str, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """``path`` as a string, after the checks :func:`write_file` would fail on, made up front.

    Raises:
      ValueError: for an empty path.
      FileExistsError: if ``path`` is a folder, or an existing file and ``overwrite`` is False.
      FileNotFoundError: if the folder that would hold it does not exist.
      NotADirectoryError, PermissionError, OSError: see :func:`check_writable`.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name}='' is not a file path")
    if os.path.isdir(path):
        raise FileExistsError(f"{path} is a folder; give a file path")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    folder = os.path.dirname(path) or "."
    check_writable(name, folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name}={path!r}: the folder {folder!r} does not exist")
    return path


def figure_format(path: str | os.PathLike, name: str = "path") -> str:
    """The format ``jaxflow.plotting.save_figure`` writes ``path`` in (its suffix; ``png``
    without one), or ``ValueError`` naming the argument ``name`` when matplotlib cannot write
    it."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        raise ValueError(
            f"{name}={os.fspath(path)!r}: matplotlib cannot write .{suffix} figures; use one of "
            f"{', '.join('.' + s for s in sorted(supported))}"
        )
    return suffix


def _open_temp(path: str):
    """A new binary file at ``path`` (never an existing one), mode 0o666 less the umask."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


def write_file(path: str | os.PathLike, write, *, overwrite: bool = False) -> str:
    """Writes a file whole or not at all: ``write(f)`` fills a temporary sibling, which then
    takes ``path``'s name.

    Args:
      path: the file to write.
      write: a function of a binary file object, or ``bytes``/``str`` (UTF-8) to write.
      overwrite: replace an existing file (atomically: a reader sees the old file or the new).

    Returns:
      ``path`` as a string.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False; nothing is written.
      OSError: whatever the system raises (full disk, read-only); the temporary file is removed
        and ``path`` is as it was.

    Example:
      >>> import os, tempfile
      >>> from jaxflow._files import write_file
      >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
      >>> write_file(path, "one") == path
      True
      >>> write_file(path, "two")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      FileExistsError: ... exists; pass overwrite=True to replace it
      >>> _ = write_file(path, "two", overwrite=True)
      >>> with open(path) as f:
      ...     f.read()
      'two'
    """
    path = os.fspath(path)
    if isinstance(write, str):
        write = write.encode("utf-8")
    if isinstance(write, bytes):
        data, write = write, (lambda f: f.write(data))
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    folder, base = os.path.split(path)
    temp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.partial")
    try:
        with _open_temp(temp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # complete on disk before it takes the name
        if overwrite:
            os.replace(temp, path)
        else:
            _link_new(temp, path)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return path


def _link_new(temp: str, path: str) -> None:
    """Gives ``temp``'s file the name ``path`` unless ``path`` exists (even if it appeared since
    the check): a hard link fails rather than replace; where links are not supported, a rename
    after one more check."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
        os.replace(temp, path)

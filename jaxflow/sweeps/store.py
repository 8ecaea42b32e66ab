"""The resumable Zarr store of a sweep: verified chunks, completion records, one writer at a time.

Layout of ``path.zarr`` (a local or shared-filesystem directory)::

    zarr.json           root group; attributes: store format, the grid (JSON), the chunk size, the
                        number of chunks, and the x64 mode the values were computed in
    lock                the writer's lock (``fcntl.flock``); records pid, host and start time
    chunks/00007/       one chunk's raw results, flat over its configurations (dimension ``config``)
    finished/00007      chunk 7's completion record: the grid's hash, the chunk size, the chunk's
                        coordinates and a SHA-256 of every variable (written last, atomically)
    result/             the labelled dataset, written once every chunk is finished
    result.json         result/'s completion record, with per-variable (and per-activation) SHA-256

Failure guarantees:

* **Killed** (SIGKILL, out of memory): a chunk's data is written first and its record last, by
  writing a synced temporary file and renaming it (``os.replace`` is atomic on POSIX), so a chunk
  without a record is redone on resume; likewise ``result/`` counts only once its record is there
  (:func:`open_sweep` refuses a result without one, and the next run rewrites it). Chunk data is
  not synced: data a machine crash loses fails its checksums and is recomputed.
* **Full disk** (or any failed write): the error propagates before the record is written, so no
  chunk or result is marked complete that is not; rerun when there is space.
* **Damaged files** (a truncated, deleted or bit-flipped chunk file, edited array metadata, a
  chunk or record copied from another store): every finished chunk is read back and checked
  against its record's checksums (and the record against this grid and chunk size) before it is
  used. On resume, or on rerunning a finished sweep, damaged chunks are named with their
  coordinates in a warning and recomputed; ``result/`` is verified and rewritten only when it does
  not match the verified chunks. :func:`open_sweep` verifies ``result/`` and refuses a damaged one,
  naming the variables (and activations) that fail. Nothing damaged is read back as numbers.
* **A concurrent writer**: a second process (not of the same multi-host sweep) pointed at a store
  in use is refused with a one-line message naming the holder's pid, host and start time. The lock
  is a ``flock`` on ``lock``, which the kernel releases when its process dies, so a lock left by a
  killed process is stale by construction and the next run takes it over. In a multi-host sweep
  (``jax.distributed``), process 0 holds the lock for all of them (it tells the others whether it
  got it) and each process writes only its own chunks and their records. On a file system without
  ``flock`` (some Lustre mounts) the sweep warns and runs unlocked; a store this process cannot
  write (read-only) is verified without a lock, since nothing of this process can change it.
* **Precision**: a store computed in float32 is refused by a process with ``jax_enable_x64`` on,
  and the other way round, rather than mixing precisions.
* A store of a different grid is refused, never overwritten; so is any existing path that is not a
  jaxflow sweep store.

Stores of format 1 (jaxflow before chunk checksums) carry no checksums and cannot be verified: a
sweep refuses to resume or rewrite one (sweep into a new path; the old one is left as it is), and
:func:`open_sweep` still reads its finished ``result/`` with a warning that it is unverified.

zarr and xarray are imported here, when a store is used, not by ``import jaxflow``.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import socket
import warnings

import numpy as np

from .grid import same_grid_differences

FORMAT = 2
"""The store format this jaxflow writes (1: before completion records with checksums)."""

RESULT_RECORD = "result.json"
"""``result/``'s completion record, beside it in the store's root."""


def _x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def _precision(x64: bool) -> str:
    return f"jax_enable_x64={x64} ({'float64' if x64 else 'float32'})"


class SweepStore:
    """A sweep's Zarr store on disk (see the module docs for the layout)."""

    def __init__(self, path, grid_json: str, chunk_size: int, num_chunks: int):
        self.path = os.fspath(path)
        self.grid_json = grid_json
        self.chunk_size = chunk_size
        self.num_chunks = num_chunks
        self.identity = hashlib.sha256(grid_json.encode()).hexdigest()

    @classmethod
    def open(cls, path, grid, chunk_size: int | None, num_chunks_of) -> SweepStore:
        """Opens (or creates) the store for ``grid``; refuses a store of another grid.

        Args:
          path: the store directory (conventionally ``*.zarr``).
          grid: the :class:`~jaxflow.Grid`.
          chunk_size: the requested chunk size, or ``None`` to take the store's (or the caller's
            default, for a new store — see ``num_chunks_of``).
          num_chunks_of: ``chunk_size -> (chunk_size, num_chunks)`` for this grid, resolving
            ``None`` to the default.

        Returns:
          The :class:`SweepStore`.

        Raises:
          ValueError: if ``path`` exists and is not this grid's sweep store (or is a store of
            format 1, or of the other x64 mode), or a different explicit chunk size is asked of
            an existing store.
        """
        import zarr

        path = os.fspath(path)
        grid_json = grid.to_json()
        if os.path.exists(path):
            attrs = cls._read_attrs(path)
            if attrs.get("jaxflow_sweep") == 1:
                raise ValueError(
                    f"store={path!r} was written by an older jaxflow (store format 1, without "
                    "checksums), so its chunks cannot be verified and it is not resumed or "
                    "rewritten; sweep into a new path (jaxflow.open_sweep still reads its result)"
                )
            if attrs.get("jaxflow_sweep") != FORMAT:
                raise ValueError(
                    f"store={path!r} exists and is not a jaxflow sweep store; refusing to "
                    "overwrite it (choose another path)"
                )
            if attrs["grid"] != grid_json:
                diff = same_grid_differences(json.loads(attrs["grid"]), json.loads(grid_json))
                raise ValueError(
                    f"store={path!r} holds a sweep of a different grid ({'; '.join(diff)}); "
                    "refusing to overwrite it — use another path, or rerun with the same grid "
                    "to resume"
                )
            if attrs.get("x64") != _x64():
                raise ValueError(
                    f"store={path!r} was computed with {_precision(attrs.get('x64'))} and this "
                    f"process runs with {_precision(_x64())}; resuming would mix precisions — "
                    f"set JAX_ENABLE_X64={int(bool(attrs.get('x64')))} to resume it, or use "
                    "another path"
                )
            if chunk_size is not None and chunk_size != attrs["chunk_size"]:
                raise ValueError(
                    f"chunk_size={chunk_size} differs from the store's {attrs['chunk_size']}; a "
                    f"store resumes with its own chunks (omit chunk_size to use them)"
                )
            return cls(path, grid_json, attrs["chunk_size"], attrs["num_chunks"])
        chunk_size, num_chunks = num_chunks_of(chunk_size)
        attrs = {
            "jaxflow_sweep": FORMAT,
            "grid": grid_json,
            "chunk_size": chunk_size,
            "num_chunks": num_chunks,
            "x64": _x64(),
        }
        try:
            zarr.open_group(path, mode="w-", attributes=attrs)
        except (FileExistsError, zarr.errors.ContainsGroupError):
            # Another process of a multi-host sweep created it first: check it is ours.
            return cls.open(path, grid, chunk_size, num_chunks_of)
        os.makedirs(os.path.join(path, "finished"), exist_ok=True)
        return cls(path, grid_json, chunk_size, num_chunks)

    @staticmethod
    def _read_attrs(path) -> dict:
        meta = os.path.join(path, "zarr.json")
        try:
            with open(meta) as f:
                return json.load(f).get("attributes", {}) or {}
        except (OSError, ValueError, AttributeError):
            return {}

    def lock(self) -> StoreLock:
        """Takes the store's writer lock (see :class:`StoreLock`); release it when done."""
        lock = StoreLock(os.path.join(self.path, "lock"), self.path)
        lock.acquire()
        return lock

    def _record(self, name) -> str:
        return os.path.join(self.path, "finished", name)

    def finished(self) -> set[int]:
        """Indices of the chunks whose record is on disk (not yet verified)."""
        folder = os.path.join(self.path, "finished")
        if not os.path.isdir(folder):
            return set()
        return {int(name) for name in os.listdir(folder) if name.isdigit()}

    def write_chunk(self, index: int, dataset, where: str = "") -> None:
        """Writes one chunk's data, then its completion record (atomically, last).

        Any record of an earlier write goes first, so a failure part-way (a full disk) leaves
        the chunk unfinished, never finished with other data.
        """
        record = self._record(f"{index:05d}")
        _remove(record)
        dataset.to_zarr(self.path, group=f"chunks/{index:05d}", mode="w", consolidated=False)
        _write_json(
            record,
            {
                "format": FORMAT,
                "chunk": index,
                "grid_sha256": self.identity,
                "chunk_size": self.chunk_size,
                "where": where,
                "sha256": checksums(dataset),
            },
        )

    def forget_chunk(self, index: int) -> None:
        """Removes chunk ``index``'s completion record (it will be recomputed)."""
        _remove(self._record(f"{index:05d}"))

    def read_chunk(self, index: int):
        """One chunk's raw dataset as on disk, loaded into memory (unverified)."""
        import xarray as xr

        group = f"chunks/{index:05d}"
        with xr.open_zarr(self.path, group=group, consolidated=False) as ds:
            return ds.load()

    def load_chunk(self, index: int):
        """``(dataset, None)`` for a verified finished chunk, else ``(None, problem)``.

        ``problem`` is ``None`` for a chunk that has no record (not finished, or interrupted
        before its record was written), else why a recorded chunk cannot be trusted.
        """
        record, problem = _read_record(self._record(f"{index:05d}"))
        if record is None:
            return None, problem
        if (
            record.get("grid_sha256") != self.identity
            or record.get("chunk") != index
            or record.get("chunk_size") != self.chunk_size
        ):
            return None, "its completion record belongs to another grid, chunk or chunk size"
        return _read_verified(
            lambda: self.read_chunk(index),
            record,
            unreadable="its data cannot be read ({})",
            mismatched="its data does not match the recorded checksums ({})",
        )

    def write_result(self, dataset) -> bool:
        """Writes the labelled dataset to ``result/`` unless it is there, verified, and the same.

        ``result/``'s record goes first and comes back last, so an interrupted write (killed,
        full disk) leaves a result that :func:`open_sweep` refuses and the next run rewrites.

        Returns:
          Whether ``result/`` was (re)written.
        """
        sums = checksums(dataset)
        path = os.path.join(self.path, RESULT_RECORD)
        record, _ = _read_record(path)
        if record is not None and record.get("grid_sha256") == self.identity:
            same = {k: v for k, v in sums.items() if k != ATTRS}
            was = {k: v for k, v in (record.get("sha256") or {}).items() if k != ATTRS}
            if same == was:
                problem = _verify_result(self.path, record)[1]
                if problem is None:
                    return False
                warnings.warn(
                    f"store={self.path!r}: result/ is damaged ({problem}); rewriting it from the "
                    "verified chunks",
                    UserWarning,
                    stacklevel=3,
                )
        _remove(path)
        dataset.to_zarr(self.path, group="result", mode="w", consolidated=False)
        _write_json(path, {"format": FORMAT, "grid_sha256": self.identity, "sha256": sums})
        return True


class StoreLock:
    """One writer per store: an exclusive ``fcntl.flock`` on ``path``, with the holder recorded.

    The kernel drops a ``flock`` when the process holding it dies (also SIGKILL), so a lock file
    left by a killed process is stale by construction: the next :meth:`acquire` takes it over.
    Locks are per open file, so two stores opened in one process exclude each other too.
    """

    def __init__(self, path: str, store: str):
        self.path = path
        self.store = store
        self.fd = None

    def acquire(self) -> None:
        """Takes the lock, or raises ``ValueError`` naming the live holder (pid, host, start)."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return  # a store we cannot write: nothing of ours can damage it (reads verify)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ValueError(
                f"store={self.store!r} is in use by another jaxflow process ({holder}); wait for "
                "it to finish (a rerun then resumes), or stop it, or use another path"
            ) from None
        except OSError as error:  # a file system without flock
            os.close(fd)
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            warnings.warn(
                f"store={self.store!r}: its file system does not support file locks "
                f"({_one_line(error)}); nothing stops a second process writing to it at once",
                UserWarning,
                stacklevel=3,
            )
            return
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Releases the lock (a no-op when it was not taken)."""
        import fcntl

        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _holder(fd) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


ATTRS = "@attrs"
"""The checksums' key for a dataset's attributes."""


def checksums(dataset, split: str = "activation") -> dict[str, str]:
    """SHA-256 of every variable (name, dims, dtype, shape, attributes and values) of a dataset.

    A variable with a ``split`` dimension gets one checksum per label along it (``"name[label]"``),
    so a mismatch names where the damage is; the dataset's attributes are under ``"@attrs"``.
    Strings hash the same whatever numpy type holds them (zarr reads them back as StringDType).
    """
    out = {ATTRS: hashlib.sha256(_json(dict(dataset.attrs)).encode()).hexdigest()}
    labels = dataset[split].values if split in dataset.dims else None
    for name in sorted(map(str, dataset.variables)):
        var = dataset.variables[name]
        if labels is not None and split in var.dims and name != split:
            for j, label in enumerate(labels):
                out[f"{name}[{split}={label}]"] = _digest(name, var[{split: j}])
        else:
            out[name] = _digest(name, var)
    return out


def _digest(name, var) -> str:
    values = np.asarray(var.values)
    text = values.dtype.kind in "OUST"
    header = {
        "name": name,
        "dims": list(var.dims),
        "shape": list(values.shape),
        "dtype": "str" if text else values.dtype.str,
        "attrs": json.loads(_json(dict(var.attrs))),
    }
    sha = hashlib.sha256(_json(header).encode())
    if text:
        sha.update(json.dumps([str(v) for v in values.ravel()]).encode())
    else:
        sha.update(np.ascontiguousarray(values).tobytes())
    return sha.hexdigest()


def _json(value) -> str:
    def plain(o):
        return o.item() if hasattr(o, "item") else str(o)

    return json.dumps(value, sort_keys=True, default=plain)


def _mismatches(recorded, actual: dict) -> str:
    """What differs between recorded and actual checksums ('' when nothing does)."""
    if not isinstance(recorded, dict):
        return "no checksums recorded"
    bad = sorted(k for k in recorded.keys() | actual.keys() if recorded.get(k) != actual.get(k))
    return ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")


def _one_line(error) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _remove(path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _write_json(path, value) -> None:
    """Writes ``value`` to ``path`` atomically: a synced temporary file, then a rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _read_record(path):
    """``(record, None)``, ``(None, None)`` when there is none, or ``(None, problem)``."""
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as error:
        return None, f"its completion record is unreadable ({_one_line(error)})"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None, "its completion record is not one this jaxflow writes"
    return record, None


def _read_result(path):
    import xarray as xr

    with xr.open_zarr(path, group="result", consolidated=False) as ds:
        ds = ds.load()
    for name, coord in ds.coords.items():  # zarr returns numpy's StringDType; keep plain str
        if coord.dtype.kind == "T":
            ds = ds.assign_coords({name: (coord.dims, coord.values.astype(object), coord.attrs)})
    return ds


def _read_verified(read, record, unreadable: str, mismatched: str):
    """``(read(), None)`` if it reads and matches the checksums ``record`` holds, else
    ``(None, problem)``: ``unreadable`` or ``mismatched`` filled in with what went wrong."""
    try:
        ds = read()
    except Exception as error:  # any decoding failure of damaged files
        return None, unreadable.format(_one_line(error))
    bad = _mismatches(record.get("sha256"), checksums(ds))
    if bad:
        return None, mismatched.format(bad)
    return ds, None


def _verify_result(path, record):
    """``(dataset, None)`` if ``result/`` matches its record, else ``(None, problem)``."""
    return _read_verified(
        lambda: _read_result(path),
        record,
        unreadable="it cannot be read ({})",
        mismatched="these do not match their recorded checksums: {}",
    )


def open_sweep(path):
    """Opens a finished sweep's labelled dataset from its store, verified against its checksums.

    Args:
      path: a store written by :func:`jaxflow.sweep` with ``store=path``.

    Returns:
      The ``xarray.Dataset`` (loaded into memory).

    Raises:
      ValueError: if ``path`` is not a sweep store, its sweep has not finished, its ``result/``
        was not completed (interrupted while it was written), or ``result/`` is damaged (the
        message names the variables and activations that fail their checksums). Rerunning
        :func:`jaxflow.sweep` with the same grid repairs the last three.

    Example:
      >>> import os, tempfile, jaxflow as jf
      >>> grid = jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3, seeds=1,
      ...                batch=1, metrics=["P_spectrum"])
      >>> path = os.path.join(tempfile.mkdtemp(), "sweep.zarr")
      >>> computed = jf.sweep(grid, store=path, quiet=True)
      >>> bool(jf.open_sweep(path)["P_sv_max"].equals(computed["P_sv_max"]))
      True
    """
    path = os.fspath(path)
    attrs = SweepStore._read_attrs(path)
    fmt = attrs.get("jaxflow_sweep")
    has_result = os.path.exists(os.path.join(path, "result", "zarr.json"))
    if fmt == 1:
        if not has_result:
            raise ValueError(
                f"{path!r} is an unfinished store of an older jaxflow (format 1, without "
                "checksums), which this jaxflow does not resume; sweep into a new path"
            )
        warnings.warn(
            f"{path!r} is a store of an older jaxflow (format 1, without checksums): its result "
            "is read unverified",
            UserWarning,
            stacklevel=2,
        )
        return _read_result(path)
    if fmt != FORMAT:
        raise ValueError(f"{path!r} is not a jaxflow sweep store")
    rerun = "rerun jaxflow.sweep with the same grid and store to"
    record, problem = _read_record(os.path.join(path, RESULT_RECORD))
    if record is None:
        if problem is None and not has_result:
            raise ValueError(f"{path!r} holds an unfinished sweep; {rerun} finish it")
        raise ValueError(
            f"{path!r}: result/ was not completed (the sweep stopped while writing it, e.g. "
            f"killed or out of disk space{'' if problem is None else '; ' + problem}); {rerun} "
            "write it again"
        )
    # The record's grid first: result/ is not even read for another grid's record.
    grid = attrs.get("grid")
    if record.get("grid_sha256") != hashlib.sha256(str(grid).encode()).hexdigest():
        ds, problem = None, "it was recorded for another grid than the store's zarr.json names"
    else:
        ds, problem = _verify_result(path, record)
    if problem is not None:
        raise ValueError(
            f"{path!r}: result/ is damaged and was not read ({problem}); {rerun} verify every "
            "chunk, recompute the damaged ones and rewrite result/"
        )
    return ds

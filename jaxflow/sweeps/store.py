"""The resumable Zarr store of a sweep: one group per finished chunk, a record of finished chunks.

Layout of ``path.zarr`` (a local or shared-filesystem directory)::

    zarr.json           root group; attributes: the grid (JSON), the chunk size, the number of chunks
    chunks/00007/       one chunk's raw results, flat over its configurations (dimension ``config``)
    finished/00007      the record that chunk 7 is complete (written last, atomically)
    result/             the labelled dataset, written once every chunk is finished

Crash safety: a chunk's data is written first and its ``finished`` record last, by writing a
temporary file and renaming it (``os.replace`` is atomic on POSIX), so a chunk with a record is
complete and a chunk without one is redone — a chunk group left half-written by a killed process is
rewritten from scratch. Records are separate files, so processes of a multi-host sweep write their
own chunks and records without touching each other's. A store made by a different grid is refused,
never overwritten; so is any existing path that is not a jaxflow sweep store.

zarr and xarray are imported here, when a store is used, not by ``import jaxflow``.
"""

from __future__ import annotations

import json
import os

from .grid import same_grid_differences

FORMAT = 1


class SweepStore:
    """A sweep's Zarr store on disk (see the module docs for the layout)."""

    def __init__(self, path, grid_json: str, chunk_size: int, num_chunks: int):
        self.path = os.fspath(path)
        self.grid_json = grid_json
        self.chunk_size = chunk_size
        self.num_chunks = num_chunks

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
          ValueError: if ``path`` exists and is not this grid's sweep store, or a different
            explicit chunk size is asked of an existing store.
        """
        import zarr

        path = os.fspath(path)
        grid_json = grid.to_json()
        if os.path.exists(path):
            attrs = cls._read_attrs(path)
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
        except (OSError, ValueError):
            return {}

    def finished(self) -> set[int]:
        """Indices of the chunks whose record is on disk."""
        folder = os.path.join(self.path, "finished")
        if not os.path.isdir(folder):
            return set()
        return {int(name) for name in os.listdir(folder) if name.isdigit()}

    def write_chunk(self, index: int, dataset) -> None:
        """Writes one chunk's data, then records it as finished (atomically, last)."""
        dataset.to_zarr(self.path, group=f"chunks/{index:05d}", mode="w", consolidated=False)
        folder = os.path.join(self.path, "finished")
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(folder, f"{index:05d}")
        temporary = f"{final}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            json.dump({"chunk": index, "configs": int(dataset.sizes["config"])}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)

    def read_chunk(self, index: int):
        """One finished chunk's raw dataset, loaded into memory."""
        import xarray as xr

        group = f"chunks/{index:05d}"
        with xr.open_zarr(self.path, group=group, consolidated=False) as ds:
            return ds.load()

    def write_result(self, dataset) -> None:
        """Writes the labelled dataset to ``result/`` (our own derived data: rewritten freely)."""
        dataset.to_zarr(self.path, group="result", mode="w", consolidated=False)


def open_sweep(path):
    """Opens a finished sweep's labelled dataset from its store.

    Args:
      path: a store written by :func:`jaxflow.sweep` with ``store=path``.

    Returns:
      The ``xarray.Dataset`` (loaded into memory).

    Raises:
      ValueError: if ``path`` is not a sweep store or its sweep has not finished.

    Example:
      >>> import os, tempfile, jaxflow as jf
      >>> grid = jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3, seeds=1,
      ...                batch=1, metrics=["P_spectrum"])
      >>> path = os.path.join(tempfile.mkdtemp(), "sweep.zarr")
      >>> computed = jf.sweep(grid, store=path, quiet=True)
      >>> bool(jf.open_sweep(path)["P_sv_max"].equals(computed["P_sv_max"]))
      True
    """
    import xarray as xr

    path = os.fspath(path)
    if SweepStore._read_attrs(path).get("jaxflow_sweep") != FORMAT:
        raise ValueError(f"{path!r} is not a jaxflow sweep store")
    if not os.path.exists(os.path.join(path, "result", "zarr.json")):
        raise ValueError(f"{path!r} holds an unfinished sweep; rerun jaxflow.sweep to finish it")
    with xr.open_zarr(path, group="result", consolidated=False) as ds:
        ds = ds.load()
    for name, coord in ds.coords.items():  # zarr returns numpy's StringDType; keep plain str
        if coord.dtype.kind == "T":
            ds = ds.assign_coords({name: coord.values.astype(object)})
    return ds

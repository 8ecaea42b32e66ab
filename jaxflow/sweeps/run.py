"""The sweep driver: plan chunks, shard them over devices, run, store, and label the results."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jaxflow import _platform

from . import compute
from .grid import Grid, init_family, init_variances, kernel_variances

CPU_MEMORY_BUDGET = 2 * 2**30
"""Default memory budget on CPU, where jax reports no device memory limit (bytes)."""

ACCELERATOR_MEMORY_FRACTION = 0.5
"""Default budget on a GPU/TPU: this fraction of the device's memory limit."""

PREFIX_METRICS = {
    "J_spectrum": ("J_sv_max", "J_sv_min", "J_sv_mean_sq", "J_sv_mean_log", "J_cond"),
    "P_spectrum": ("P_sv_max", "P_sv_min", "P_sv_mean_sq", "P_sv_mean_log", "P_cond", "P_resolved"),
    "J_spectra": ("J_sv",),
    "P_spectra": ("P_sv",),
    "dead_fraction": ("dead_fraction",),
    "saturated_fraction": ("saturated_fraction",),
}

DESCRIPTIONS = {
    "J_sv_max": "largest singular value of J_l = dh_l/dh_(l-1)",
    "J_sv_min": "smallest singular value of J_l",
    "J_sv_mean_sq": "mean of the squared singular values of J_l, (1/n)||J_l||_F^2",
    "J_sv_mean_log": "mean of log singular values of J_l (natural log)",
    "J_cond": "condition number sigma_max/sigma_min of J_l",
    "J_sv": "singular values of J_l, descending",
    "P_sv_max": "largest singular value of P_l = J_l ... J_1",
    "P_sv_min": "smallest singular value of P_l (float32: meaningful only above the rounding floor)",
    "P_sv_mean_sq": "mean of the squared singular values of P_l, (1/n)||P_l||_F^2",
    "P_sv_mean_log": "mean of log singular values of P_l (natural log)",
    "P_cond": "condition number sigma_max/sigma_min of P_l",
    "P_resolved": "number of singular values of P_l above sigma_max*n*eps (float32 resolution)",
    "P_sv": "singular values of P_l, descending",
    "dead_fraction": "fraction of units with phi'(z_l) = 0 for every input of the batch",
    "saturated_fraction": "fraction of units with |phi'(z_l)| <= saturation*sup|phi'| for every input",
    "activation_grad_norm": "||dL/dh_l||_F over the batch, for the depth-d network",
    "weight_grad_norm": "||dL/dW_l||_F (Dense kernels of block l), for the depth-d network",
    "grad_ratio": "||dL/dh_0|| / ||dL/dh_d||: first-to-last activation-gradient ratio at depth d",
    "weight_grad_ratio": "||dL/dW_1|| / ||dL/dW_d||: first-to-last weight-gradient ratio at depth d",
}


class Chunk(NamedTuple):
    """One compiled call: configurations of one activation and one weight family.

    Attributes:
      index: position in the plan (and the store's chunk name).
      activation: index into ``grid.activation``.
      family: index into the spec's weight families.
      configs: flat (init, seed) indices ``init * seeds + seed`` within the activation's block.
    """

    index: int
    activation: int
    family: int
    configs: tuple


def resolve_devices(devices) -> tuple:
    """The devices a sweep shards over (see :func:`jaxflow.sweep`)."""
    if devices is None:
        devices = jax.local_devices()
        if devices[0].platform == "cpu" and _lapack_blocks_pool():
            devices = devices[:1]
    devices = tuple(devices)
    if not devices:
        raise ValueError("devices=() is empty; give at least one device")
    return devices


def resolve_training_devices(devices, uses_lapack: bool) -> tuple:
    """The devices a training run shards over (see :func:`jaxflow.experiments.trainability`).

    Default: every local device. A training step is small batched matmuls, which one CPU device
    runs on one thread, so on a CPU every device (``jaxflow._platform.spread_cpu_devices``: one
    per core) trains its share of the configurations side by side. On jaxlib < 0.11 the CPU
    devices are capped one below XLA:CPU's pool threads, as :func:`check_host_devices` requires
    (the orthogonal draws' QR and the Jacobian spread's decompositions are batched LAPACK); an
    explicit ``devices`` beyond that is refused where the kernel decomposes anything.
    """
    explicit = devices is not None
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices=() is empty; give at least one device")
    if devices[0].platform != "cpu" or not _lapack_blocks_pool():
        return devices
    threads = _platform.cpu_pool_threads()
    if not explicit:
        return devices[: max(1, threads - 1)]
    if uses_lapack and len(devices) >= threads:
        raise ValueError(
            f"devices: {len(devices)} CPU devices on a pool of {threads} threads would deadlock "
            "jaxlib < 0.11's batched decompositions (the orthogonal draws' QR, the Jacobian "
            f"spread); pass at most {max(1, threads - 1)} devices, or devices=None"
        )
    return devices


def _lapack_blocks_pool() -> bool:
    # jaxlib < 0.11 splits every batched LAPACK call (the SVD included) over XLA:CPU's intra-op
    # pool and blocks a pool thread while it waits. One CPU device already uses every core that
    # way; several host devices each block a thread in the same pool and, once they hold all of
    # them, wait forever (see the sweeps module docs).
    import jaxlib

    major, minor = (int(p) for p in jaxlib.__version__.split(".")[:2])
    return (major, minor) < (0, 11)


def check_host_devices(devices, spec, padded: int) -> None:
    """Refuses a sharding over CPU devices that jaxlib < 0.11's LAPACK kernels would deadlock.

    jaxlib 0.10's batched SVD splits a call of ``b`` m×n matrices into tasks on XLA:CPU's intra-op
    pool (one thread per core) when b·10·m·n ≥ 200,000, and blocks its own thread until they finish.
    A device executes on a pool thread, so once as many devices as pool threads are inside such a
    call, every thread waits for tasks that no thread is left to run. The pool has ``NPROC``
    threads (the sweep sets it before the backend starts; see :mod:`jaxflow._platform`), else one
    per core.
    """
    if len(devices) < 2 or devices[0].platform != "cpu" or not _lapack_blocks_pool():
        return
    threads = _platform.cpu_pool_threads()
    svd_batch = (padded // len(devices)) * spec.batch * 2
    if len(devices) >= threads and svd_batch * 10 * spec.width**2 >= 200_000:
        raise ValueError(
            f"devices: {len(devices)} CPU devices on {threads} cores would deadlock jaxlib < 0.11's "
            "batched SVD (each device blocks a pool thread waiting for its own sub-tasks); one CPU "
            "device already uses every core for the decompositions — pass devices=None"
        )


def default_memory_budget(device) -> int:
    """Bytes a chunk may use: half the accelerator's memory, or 2 GiB on CPU."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends raise instead of returning None
        stats = {}
    limit = stats.get("bytes_limit")
    if limit:
        return int(ACCELERATOR_MEMORY_FRACTION * limit)
    return CPU_MEMORY_BUDGET


def _family_groups(grid: Grid, spec, per: int = 1) -> list[list[int]]:
    """Flat (init, seed) indices of each weight family's inits, in the spec's family order.

    With ``per`` > 1 every (init, seed) is ``per`` configurations (a training run's depths), flat
    index ``(init * seeds + seed) * per + k``.
    """
    return [
        [
            (i * grid.seeds + s) * per + k
            for i, init in enumerate(grid.init)
            if init_family(init) == family
            for s in range(grid.seeds)
            for k in range(per)
        ]
        for family in spec.families
    ]


def plan_chunks(grid: Grid, spec, chunk_size: int, per: int = 1) -> list[Chunk]:
    """Chunks of at most ``chunk_size`` configurations, never mixing activations or families."""
    chunks = []
    for a in range(len(grid.activation)):
        for f, group in enumerate(_family_groups(grid, spec, per)):
            for start in range(0, len(group), chunk_size):
                chunks.append(Chunk(len(chunks), a, f, tuple(group[start : start + chunk_size])))
    return chunks


def choose_chunk_size(
    grid: Grid, spec, chunk_size, memory_budget, devices, per_config_bytes=None, per: int = 1
) -> int:
    """The configurations per chunk: ``chunk_size``, or as many as ``memory_budget`` holds.

    The default is capped at the smallest family group (seeds × that family's inits), so chunks of
    one size tile every group without padding when the groups are multiples of it.
    ``per_config_bytes`` is one configuration's memory (default: the sweep kernel's,
    :func:`jaxflow.sweeps.compute.bytes_per_config`); ``per`` as for :func:`plan_chunks`.
    """
    groups = _family_groups(grid, spec, per)
    if per_config_bytes is None:
        per_config_bytes = compute.bytes_per_config(spec)
    largest = max(len(g) for g in groups)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(
                f"chunk_size={chunk_size!r} is not allowed; it must be an integer >= 1"
            )
        return min(chunk_size, largest)
    if memory_budget is None:
        memory_budget = default_memory_budget(devices[0]) * len(devices)
    elif (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, (int, float))
        or memory_budget <= 0
    ):
        raise ValueError(f"memory_budget={memory_budget!r} is not allowed; it must be bytes > 0")
    fits = int(memory_budget // per_config_bytes)
    if fits < 1:
        raise ValueError(
            f"memory_budget={memory_budget} bytes is below one configuration's estimated "
            f"{per_config_bytes} bytes; raise it or shrink width/batch"
        )
    return min(min(len(g) for g in groups), fits)


def chunk_inputs(grid: Grid, chunk: Chunk, padded: int):
    """Host arrays (activation index, family index, w_vars, b_var, seed) of a chunk, padded."""
    flat = np.asarray(chunk.configs)
    flat = np.concatenate([flat, np.full(padded - flat.size, flat[-1])])  # repeat the last one
    init_idx, seed = np.divmod(flat, grid.seeds)
    table = np.asarray([kernel_variances(i, grid.width) for i in grid.init], np.float32)
    return (
        np.int32(chunk.activation),
        np.int32(chunk.family),
        table[init_idx, :2],
        table[init_idx, 2],
        seed.astype(np.int32),
    )


def chunk_dataset(grid: Grid, chunk: Chunk, outputs: dict, per: int = 1, dims_of=None):
    """One chunk's raw results as an xarray.Dataset over its flat ``config`` dimension.

    ``dims_of(name)`` names the dimensions of an output after ``config`` (default: the sweep's).
    """
    import xarray as xr

    dims_of = _raw_dims if dims_of is None else dims_of
    size = len(chunk.configs)
    offset = chunk.activation * len(grid.init) * grid.seeds * per
    data = {}
    for name, value in outputs.items():
        value = np.asarray(value)[:size]
        dims = ("config",) + dims_of(name)[: value.ndim - 1]
        data[name] = (dims, value)
    coords = {"config": offset + np.asarray(chunk.configs)}
    return xr.Dataset(data, coords=coords)


def _raw_dims(name):
    if name in ("J_sv", "P_sv"):
        return ("example", "layer", "sv")
    if name.startswith(("J_", "P_")):
        return ("example", "layer")
    if name in ("dead_fraction", "saturated_fraction"):
        return ("layer",)
    if name in ("activation_grad_norm", "weight_grad_norm"):
        return ("depth", "layer")
    return ("depth",)


def assemble(grid: Grid, raw, attrs: dict):
    """The labelled dataset from the raw per-config results of every chunk.

    Prefix quantities (spectra, unit fractions) are computed once per layer and shown at every
    depth d for layers l ≤ d (NaN beyond d), so every variable reads the same way:
    ``ds.P_sv_max.sel(depth=20)`` is the depth-20 network.
    """
    import xarray as xr

    raw = raw.sortby("config")
    A, I, S = len(grid.activation), len(grid.init), grid.seeds
    depths = np.asarray(grid.depth)
    layers = np.arange(1, grid.max_depth + 1)
    mask = layers[None, :] <= depths[:, None]  # (depth, layer)
    data = {}
    for name, var in raw.data_vars.items():
        # float32 as computed (NaN marks layers beyond a depth; counts become float32 too)
        values = np.asarray(var.values, dtype=np.float32)
        values = values.reshape((A, I, S) + values.shape[1:])
        dims = ("activation", "init", "seed") + var.dims[1:]
        if "layer" in var.dims and "depth" not in var.dims:
            # prefix quantity: insert a depth axis before the layer axis, masked to l <= d
            axis = dims.index("layer")
            values = np.expand_dims(values, axis)
            shape = [1] * values.ndim
            shape[axis], shape[axis + 1] = mask.shape
            values = np.where(mask.reshape(shape), values, np.float32(np.nan))
            dims = dims[:axis] + ("depth",) + dims[axis:]
        elif "layer" in var.dims:
            axis = dims.index("depth")
            shape = [1] * values.ndim
            shape[axis], shape[axis + 1] = mask.shape
            values = np.where(mask.reshape(shape), values, np.float32(np.nan))
        data[name] = xr.Variable(dims, values, attrs={"description": DESCRIPTIONS.get(name, "")})
    sigma = np.asarray([init_variances(i) for i in grid.init])
    coords = {
        "activation": np.asarray(grid.activation, dtype=object),
        "init": np.asarray(grid.init_labels, dtype=object),
        "sigma_w2": ("init", sigma[:, 0]),
        "sigma_b2": ("init", sigma[:, 1]),
        "seed": np.arange(S),
        "example": np.arange(grid.batch),
        "depth": depths,
        "layer": layers,
    }
    if "sv" in raw.dims:
        coords["sv"] = np.arange(1, grid.width + 1)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return ds


def _prefetch(grid: Grid, store: bool, theory: dict) -> None:
    """Host work that overlaps the first compilation: imports, and the mean-field predictions."""
    try:
        import xarray  # noqa: F401

        if store:
            import zarr  # noqa: F401
        _versions()
        if "theory" in grid.metrics:
            from .theory import chi1_table

            theory["chi1"] = chi1_table(grid)
    except BaseException as error:  # re-raised by the main thread after join()
        theory["error"] = error


@functools.cache
def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for package in ("jaxflow", "jax", "jaxlib", "flax", "numpy", "xarray", "zarr"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return out


def _progress(
    total_configs: int, total_chunks: int, done_chunks: int, quiet: bool, desc: str = "sweep"
):
    """A tqdm bar (configurations, their rate and ETA; chunks in the postfix), or None."""
    stream = sys.stderr
    if quiet or not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total_configs, unit="config", desc=desc, file=stream, dynamic_ncols=True)
    bar.set_postfix_str(f"chunks {done_chunks}/{total_chunks}")
    return bar


def check_store_path(store) -> None:
    """Refuses a ``store=`` that is neither ``None`` nor a non-empty folder path."""
    if store is None:
        return
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(
            f"store is a {type(store).__name__}; pass a folder path (str or os.PathLike) or None"
        )
    if not os.fspath(store):
        raise ValueError("store='' is not allowed; pass a folder path such as 'runs/sweep.zarr'")


def resolve_processes(
    store, process_index: int | None = None, process_count: int | None = None, kind: str = "sweep"
) -> tuple[int, int]:
    """(this process's index, the number of processes): jax's where not given.

    Refuses a multi-host run without a store (``kind`` names the run in the message): each
    process writes its own chunks to the shared store, the only place the results meet.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if process_count > 1 and store is None:
        raise ValueError(
            f"a multi-host {kind} needs store=: each process writes its own chunks to a shared store"
        )
    return process_index, process_count


def plan(
    grid: Grid,
    spec,
    identity,
    store,
    chunk_size,
    memory_budget,
    devices,
    process_index: int = 0,
    process_count: int = 1,
    **sizing,
):
    """(chunk size, chunks, store or ``None``) of a chunked run over ``grid``'s configurations.

    Args:
      grid, spec: the grid and its kernel's static spec.
      identity: what the store records and checks on resume (``identity.to_json()``): the grid
        itself for a sweep, the grid with its training and data for a training run.
      store: a store path or ``None``.
      chunk_size, memory_budget, devices, process_index, process_count: as for :func:`sweep`;
        in a multi-host run process 0 opens (or creates) the store first, the others after it
        (:func:`open_in_turn`).
      **sizing: ``per_config_bytes`` and ``per`` for :func:`choose_chunk_size` and
        :func:`plan_chunks` (a training run: the depths are configurations too).
    """
    per = sizing.get("per", 1)
    check_store_path(store)

    def sizes(requested):
        size = choose_chunk_size(grid, spec, requested, memory_budget, devices, **sizing)
        return size, len(plan_chunks(grid, spec, size, per))

    sweep_store = None
    if store is not None:
        from .store import SweepStore

        requested = None if chunk_size is None else sizes(chunk_size)[0]
        sweep_store = open_in_turn(
            lambda: SweepStore.open(store, identity, requested, sizes),
            process_index,
            process_count,
        )
        chunk_size = sweep_store.chunk_size
    else:
        chunk_size = sizes(chunk_size)[0]
    return chunk_size, plan_chunks(grid, spec, chunk_size, per), sweep_store


def chunk_coordinates(grid: Grid, chunk: Chunk, per: int = 1) -> str:
    """Where a chunk lies in the grid, for messages: its activation, inits and seeds."""
    flat = np.asarray(chunk.configs) // per
    inits = sorted(set((flat // grid.seeds).tolist()))
    seeds = sorted(set((flat % grid.seeds).tolist()))
    labels = [grid.init_labels[i] for i in inits]
    return f"activation={grid.activation[chunk.activation]!r}, init={labels}, seed={seeds}"


@contextlib.contextmanager
def holding(sweep_store, process_index: int):
    """Holds the store's writer lock for this sweep (process 0 takes it for every process).

    In a ``jax.distributed`` run, process 0 tells the others whether it got the lock, so a second
    sweep's processes are all refused before any of them writes.
    """
    if sweep_store is None:
        yield
        return
    lock, refused = None, None
    if process_index == 0:
        try:
            lock = sweep_store.lock()
        except ValueError as error:
            refused = error
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        granted = multihost_utils.broadcast_one_to_all(np.int32(refused is None))
        if not int(granted) and refused is None:
            refused = ValueError(
                f"store={sweep_store.path!r} is in use by another jaxflow process (process 0 of "
                "this sweep could not take its lock); wait for it to finish or use another path"
            )
    if refused is not None:
        raise refused
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _verified(sweep_store, chunks, describe, process_index, process_count) -> dict:
    """Every finished chunk that passes its checksums; damaged ones are named and forgotten."""
    verified, damaged = {}, []
    for chunk in chunks:
        ds, problem = sweep_store.load_chunk(chunk.index)
        if ds is not None:
            verified[chunk.index] = ds
        elif problem is not None:
            damaged.append(f"chunk {chunk.index} ({describe(chunk)}): {problem}")
            if chunk.index % process_count == process_index:
                sweep_store.forget_chunk(chunk.index)
    if damaged:
        warnings.warn(
            f"store={sweep_store.path!r}: {len(damaged)} damaged chunk(s) will be recomputed: "
            + "; ".join(damaged),
            UserWarning,
            stacklevel=4,
        )
    return verified


def open_in_turn(open_store, process_index: int, process_count: int):
    """``open_store()`` in every process of a run, process 0 first and the others after it.

    Processes that create a new store at once race: one that looks while another is still
    writing the root metadata finds a folder that is not (yet) a sweep store, and refuses it. So
    process 0 opens or creates the store alone, every process meets at a barrier (reached by
    process 0 even when its opening fails, so that none waits for it), and then the others open
    the store process 0 made — or fail as it did, with the same error.
    """
    if process_count == 1:
        return open_store()
    from jax.experimental import multihost_utils

    barrier = "jaxflow: the store is open"
    if process_index == 0:
        try:
            return open_store()
        finally:
            multihost_utils.sync_global_devices(barrier)
    multihost_utils.sync_global_devices(barrier)
    return open_store()


def run_chunks(
    dispatch,
    to_dataset,
    chunks,
    sweep_store,
    *,
    quiet,
    callback,
    process_index,
    process_count,
    desc="sweep",
    after_loop=None,
    describe=None,
):
    """Runs this process's unfinished chunks, writes or keeps each, and returns every chunk's data.

    With a store, every chunk it records as finished is read back and verified against its
    checksums first; a damaged one is named (with ``describe(chunk)``) in a warning and recomputed
    by the process it belongs to.

    Args:
      dispatch: ``chunk -> outputs``: starts the compiled call (asynchronously, as jax does).
      to_dataset: ``(chunk, host outputs) -> xarray.Dataset`` over a flat ``config`` dimension.
      chunks: the plan; sweep_store: a :class:`~jaxflow.sweeps.store.SweepStore` or ``None``.
      quiet, callback, process_index, process_count: as for :func:`sweep`.
      desc: the progress bar's label.
      after_loop: called once the last chunk is finished (before any multi-host barrier).
      describe: ``chunk -> str``, the chunk's coordinates for messages (default: none).

    Returns:
      ``(raw, done)``: every chunk's dataset concatenated over ``config``, and the indices of the
      chunks computed in this call.
    """
    describe = (lambda chunk: "") if describe is None else describe
    finished = (
        _verified(sweep_store, chunks, describe, process_index, process_count)
        if sweep_store
        else {}
    )
    todo = [
        c for c in chunks if c.index not in finished and c.index % process_count == process_index
    ]
    bar = _progress(sum(len(c.configs) for c in todo), len(chunks), len(finished), quiet, desc)
    results = dict(finished)

    def finish(chunk, outputs):
        ds = to_dataset(chunk, jax.device_get(outputs))
        if sweep_store is not None:
            sweep_store.write_chunk(chunk.index, ds, describe(chunk))
        results[chunk.index] = ds
        if bar is not None:
            bar.update(len(chunk.configs))
            bar.set_postfix_str(f"chunks {len(finished) + len(done) + 1}/{len(chunks)}")
        done.append(chunk.index)
        if callback is not None:
            callback(chunk.index, len(chunks))

    done: list[int] = []
    in_flight = None
    failure = None
    try:
        for chunk in todo:
            # Dispatch the next chunk before finishing the previous one: the device computes
            # while the host converts and writes.
            outputs = dispatch(chunk)
            if in_flight is not None:
                finish(*in_flight)
            in_flight = (chunk, outputs)
        if in_flight is not None:
            finish(*in_flight)
    except Exception as error:
        if process_count == 1:
            raise
        # The other processes wait for this one at the barrier below. Meeting them there lets
        # them stop at once, reporting this process's chunks as missing, instead of waiting
        # (minutes) for jax's shutdown timeout while this process waits for them to shut down.
        failure = error
    finally:
        if bar is not None:
            bar.close()
    if after_loop is not None and failure is None:
        after_loop()
    import xarray as xr

    if process_count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxflow.{desc}: every chunk written")
        if failure is not None:
            raise failure
    if sweep_store is not None:
        # Other processes' chunks of a multi-host sweep, verified as they are read.
        missing, damaged = [], []
        for chunk in chunks:
            if chunk.index not in results:
                ds, problem = sweep_store.load_chunk(chunk.index)
                if ds is not None:
                    results[chunk.index] = ds
                elif problem is None:
                    missing.append(chunk.index)
                else:
                    damaged.append(f"chunk {chunk.index} ({describe(chunk)}): {problem}")
        if missing:
            raise RuntimeError(
                f"chunks {missing} are not in the store {sweep_store.path!r} after every process "
                "finished; a process of this multi-host sweep failed — rerun to resume"
            )
        if damaged:
            raise RuntimeError(
                f"store {sweep_store.path!r}: chunks written by another process of this sweep are "
                f"damaged ({'; '.join(damaged)}) — rerun to recompute them"
            )
    parts = [results[c.index] for c in chunks]
    raw = xr.concat(parts, dim="config") if len(parts) > 1 else parts[0]
    return raw, done


def sweep(
    grid: Grid,
    store=None,
    *,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
    devices=None,
    quiet: bool = False,
    callback: Callable[[int, int], None] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    data=None,
    training=None,
):
    """Runs every network of ``grid`` in one compiled, chunked, sharded call per chunk.

    Metrics (``grid.metrics``; each a name from :data:`METRICS`):

    * ``J_spectrum`` / ``P_spectrum`` — per layer and input, summaries of the singular values of
      J_l = ∂h_l/∂h_{l−1} and of P_l = J_l ⋯ J_1: ``*_sv_max``, ``*_sv_min``, ``*_sv_mean_sq``
      ((1/n)‖·‖_F²), ``*_sv_mean_log``, ``*_cond``, and ``P_resolved`` (values above P_l's float32
      rounding floor σ_max·n·ε); ``J_spectra`` / ``P_spectra`` add the full spectra ``J_sv``,
      ``P_sv`` (a ``sv`` dimension of length width).
    * ``activation_grad_norm`` — ‖∂L/∂h_l‖ (Frobenius over the batch) of the depth-d network;
      ``weight_grad_norm`` — ‖∂L/∂W_l‖ of block l's Dense kernels.
    * ``grad_ratio`` — ‖∂L/∂h_0‖ / ‖∂L/∂h_d‖ (the whole chain of d blocks) and
      ``weight_grad_ratio`` — ‖∂L/∂W_1‖ / ‖∂L/∂W_d‖.
    * ``dead_fraction`` / ``saturated_fraction`` (MLP) — per layer, the fraction of units with
      φ′(z_l) = 0, resp. |φ′(z_l)| ≤ ``grid.saturation``·sup|φ′|, for every input of the batch.
    * ``theory`` (in the default metrics; needs :mod:`jaxflow.theory`): ``theory_chi1`` with
      the theory's ``theory_status``, and the mean-field predictions ``theory_P_sv_mean_sq``
      (χ₁^l) and ``theory_grad_ratio`` (χ₁^{d/2}) beside the measurements. Computed on the host,
      on a second thread while the kernel compiles; without the module, ``ds.attrs["theory"]``
      says so.
    * ``training`` (never a default; needs ``data=`` and ``training=``) — trains every network
      on ``data`` and returns what :func:`jaxflow.experiments.trainability` returns (training
      curves over a ``step`` dimension, ``first_nonfinite_step``, ``jacobian_spread``, ``chi1``,
      ``xi_c``). With other metrics beside it, both runs are made and their datasets merged
      (without a store: a training run keeps a store of its own).

    The loss of a depth-d network is the batch-mean squared error of its readout of h_d against
    targets y ~ N(0, 1). Seed s draws ``k_init, k_data = jax.random.split(jax.random.key(s))``;
    weights are ``model.init(k_init, x)`` of the core model (``jf.mlp`` / ``jf.residual_stack``
    with the grid's width, activation and init), so any configuration can be rebuilt and checked
    with the core functions; x and y are the columns of
    ``jax.random.normal(k_data, (batch, width + 1))`` (x the first width).

    A driver: it turns on JAX's persistent compilation cache (a per-user folder, one per
    jax/jaxlib version; ``JAXFLOW_CACHE_DIR`` moves it, ``JAXFLOW_CACHE_DIR=off`` turns it off,
    and a ``JAX_COMPILATION_CACHE_DIR`` of your own is kept), so the same grid run again in a
    new process loads its kernel instead of compiling it.

    Args:
      grid: the :class:`Grid`.
      store: ``None`` (results in memory only) or a directory path (``"results.zarr"``): each
        finished chunk is written as it completes; rerunning with the same grid resumes, skipping
        finished chunks once they pass their checksums (damaged ones are named in a warning and
        recomputed); a store of another grid or x64 mode, or in use by another process, is
        refused, never overwritten (:mod:`jaxflow.sweeps.store` lists the failure guarantees).
      chunk_size: configurations per compiled call (default: as many as ``memory_budget`` holds,
        up to the smallest group of one activation and one weight family, e.g. ``seeds`` when the
        grid has an orthogonal and a Gaussian init). Chunks never mix activations or weight
        families; results do not depend on the chunk size.
      memory_budget: bytes a chunk may use (default: half the accelerator memory; 2 GiB per CPU
        device, where jax reports no limit).
      devices: devices to shard each chunk's configurations over (default: every local device; on
        CPU with jaxlib < 0.11 one device — see the module docs).
      quiet: no progress bar (there is none anyway when stderr is not a terminal).
      callback: ``callback(chunk_index, num_chunks)``, called after each chunk is finished (and
        written, with a store).
      process_index, process_count: this process's place in a multi-host sweep (default:
        ``jax.process_index()``, ``jax.process_count()``); process p computes the chunks
        ``index % process_count == p``.
      data: the data set of the ``"training"`` metric (a ``jaxflow.data.Dataset``).
      training: the :class:`~jaxflow.Training` of the ``"training"`` metric.

    Returns:
      An ``xarray.Dataset`` with dimensions ``activation``, ``init`` (with ``sigma_w2`` and
      ``sigma_b2`` coordinates), ``seed``, ``example`` (inputs of a seed), ``depth``, ``layer``
      (1…max depth; NaN beyond each depth) and ``sv``, and attributes recording the grid (JSON),
      package versions, platform, device kind, number of devices, ``compilations``, chunking and
      the chunks computed in this call. ``ds.to_dataframe()`` gives one row per coordinate tuple.

    Raises:
      TypeError: if ``grid`` is not a :class:`Grid`.
      ValueError: for a bad chunk size, memory budget, store (another grid's, another x64
        mode's, a format-1 store, one in use by another process), or a CPU sharding that jaxlib's
        LAPACK kernels would deadlock (see the module docs).
      RuntimeError: in a multi-host sweep, if chunks are missing or damaged once every process
        is done.
      OSError: if writing the store fails (a full disk): nothing unfinished is marked finished.

    Example:
      >>> import jaxflow as jf
      >>> grid = jf.Grid(depth=[1, 2], activation=["tanh"], init=["xavier"], width=4, seeds=1,
      ...                batch=1, metrics=["P_spectrum"])
      >>> ds = jf.sweep(grid, quiet=True)
      >>> ds.P_sv_max.dims
      ('activation', 'init', 'seed', 'example', 'depth', 'layer')
    """
    if not isinstance(grid, Grid):
        raise TypeError(
            f"grid is a {type(grid).__name__}; pass a jaxflow.Grid (or Grid.from_toml(path))"
        )
    if "training" in grid.metrics or data is not None or training is not None:
        return _sweep_with_training(
            grid,
            store,
            data,
            training,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            devices=devices,
            quiet=quiet,
            callback=callback,
            process_index=process_index,
            process_count=process_count,
        )
    _platform.guard_cpu_thread_pool()  # before the first computation starts a backend
    _platform.use_compilation_cache()
    start_time = time.perf_counter()
    # xarray (and pandas) take ~0.3 s to import; XLA's compilation releases the GIL, so importing
    # them on a second thread hides that behind the compile of the first chunk.
    theory = {}
    check_store_path(store)
    prefetch = threading.Thread(
        target=_prefetch, args=(grid, store is not None, theory), daemon=True
    )
    prefetch.start()
    # Joined on every way out: a daemon thread still compiling when the interpreter exits (after a
    # refused sweep, say) is torn down inside XLA, which aborts the process.
    try:
        processes = resolve_processes(store, process_index, process_count)
        process_index, process_count = processes
        devices = resolve_devices(devices)  # this process's own devices, also in a multi-host sweep
        spec = compute.spec_of(grid)
        chunk_size, chunks, sweep_store = plan(
            grid, spec, grid, store, chunk_size, memory_budget, devices, *processes
        )
        padded = math.ceil(chunk_size / len(devices)) * len(devices)
        check_host_devices(devices, spec, padded)
        kernel = compute.compiled_kernel(spec, devices)
        traces_before = compute.TRACES[spec]
        with holding(sweep_store, process_index):
            raw, done = run_chunks(
                lambda chunk: kernel(*chunk_inputs(grid, chunk, padded)),
                lambda chunk, outputs: chunk_dataset(grid, chunk, outputs),
                chunks,
                sweep_store,
                quiet=quiet,
                callback=callback,
                process_index=process_index,
                process_count=process_count,
                after_loop=prefetch.join,
                describe=lambda chunk: chunk_coordinates(grid, chunk),
            )
            if "error" in theory:
                raise theory["error"]
            device = devices[0]
            attrs = {
                "grid": grid.to_json(),
                "versions": json.dumps(dict(_versions()), sort_keys=True),
                "platform": device.platform,
                "device_kind": device.device_kind,
                "num_devices": len(devices),
                "process_count": process_count,
                "compilations": compute.TRACES[spec] - traces_before,
                "chunk_size": chunk_size,
                "num_chunks": len(chunks),
                "chunks_computed": json.dumps(sorted(done)),
                "seconds": round(time.perf_counter() - start_time, 3),
                "conventions": (
                    "J_l = dh_l/dh_(l-1) over the hidden blocks, P_l = J_l...J_1; singular values "
                    "descending; depth-d quantities of a depth-D pass; loss = batch-mean squared "
                    "error of the readout against y ~ N(0, 1); seed s: k_init, k_data = split(key(s)), "
                    "[x | y] = normal(k_data, (batch, width + 1)); weights = model.init(k_init, x)"
                ),
            }
            ds = assemble(grid, raw, attrs)
            if "theory" in grid.metrics:
                from .theory import add_theory

                ds = add_theory(ds, theory.get("chi1"))
            if sweep_store is not None and process_index == 0:
                sweep_store.write_result(ds)
        return ds
    finally:
        prefetch.join()


def _sweep_with_training(grid: Grid, store, data, training, **options):
    """:func:`sweep` of a grid whose metrics include ``"training"``."""
    import dataclasses

    from .train import trainability

    if "training" not in grid.metrics:
        raise ValueError(
            "data= and training= are for the 'training' metric, which grid.metrics lacks; add "
            "'training' to the grid's metrics (or drop data= and training=)"
        )
    if data is None or training is None:
        given = (("data=", data), ("training=", training))
        missing = " and ".join(name for name, value in given if value is None)
        raise ValueError(
            f"grid.metrics asks for 'training' but {missing} is missing: training metrics need a "
            "data set (e.g. jaxflow.data.digits()) and a jaxflow.Training"
        )
    others = tuple(m for m in grid.metrics if m != "training")
    if others and store is not None:
        raise ValueError(
            f"store={store!r} with 'training' and {', '.join(others)}: a store holds one kind of "
            "run; sweep the other metrics and the training separately, each with its store"
        )
    if options["process_count"] not in (None, 1) or options["process_index"] not in (None, 0):
        raise ValueError("process_index/process_count: a training run takes them from jax")
    trained = trainability(
        grid,
        data,
        training,
        store=store,
        devices=options["devices"],
        memory_budget=options["memory_budget"],
        chunk_size=options["chunk_size"],
        progress=not options["quiet"],
        callback=options["callback"],
    )
    if not others:
        return trained
    import xarray as xr

    measured = sweep(dataclasses.replace(grid, metrics=others), **options)
    return xr.merge(
        [measured, trained], compat="no_conflicts", join="outer", combine_attrs="drop_conflicts"
    )

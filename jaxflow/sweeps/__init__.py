"""Sweeps: one compiled call over depth × activation × initialization × seeds.

A :class:`Grid` names the networks; :func:`sweep` runs them all and returns a labelled
``xarray.Dataset``. The sweep is a *driver* (DESIGN.md): it jits, shards and chunks; the leaf
functions it calls are the core's (:func:`jaxflow.scan_chain`, the models' ``decompose``).

How it runs:

* **One compilation** per (model family, width, batch shape, depths, activations, metrics): the
  kernel (:mod:`jaxflow.sweeps.compute`) runs one scan to the largest depth and answers every depth
  from it; activations are a ``lax.switch`` index, init schemes vmapped data, seeds vmapped.
  ``ds.attrs["compilations"]`` says how many ran (0 when an identical sweep ran before in the same
  process).
* **Chunks** of (init, seed) configurations of one activation and one weight family (normal,
  uniform or orthogonal), as many as fit a memory budget (default: half the accelerator's memory,
  2 GiB on CPU), all padded to one shape; the chunk size never changes a result.
* **Devices**: each chunk's configuration axis is sharded over the devices (``Mesh`` +
  ``NamedSharding``), padded to a multiple of their number.
* **Store**: with ``store="path.zarr"`` every finished chunk is written as it completes and a rerun
  resumes (:mod:`jaxflow.sweeps.store`).

Multi-host: call ``jax.distributed.initialize()`` in every process, then ``jaxflow.sweep(grid,
store=shared_path)`` in every process with the same grid. Each process computes the chunks
``index % process_count == process_index`` on its own local devices (no cross-host communication
inside a chunk), writes them and their records to the shared store, waits at a barrier for the
others, and then every process returns the whole dataset (process 0 writes ``result/``).

CPU devices, measured on jax/jaxlib 0.10.2: jaxlib's batched LAPACK kernels (the SVD included)
already split a batch over XLA:CPU's intra-op thread pool, one thread per core, so a single CPU
device keeps every core busy on the decompositions. Several host devices
(``--xla_force_host_platform_device_count``) each run their own LAPACK call on that same pool, and
each call blocks its pool thread waiting for sub-tasks queued behind it: once as many devices as
pool threads are inside a decomposition, no thread is left to run the sub-tasks and the process
hangs (a backtrace shows every ``tf_XLAEigen`` thread in ``jax::ParallelBatchMap`` →
``BlockingCounter::Wait``). That is why ``devices=None`` uses one device on CPU with jaxlib < 0.11;
pass ``devices=jax.devices()`` to shard over host devices anyway (small batches do not trigger the
split, which is how the tests check multi-device results).
"""

from .grid import DEFAULT_METRICS, METRICS, Grid
from .run import run_sweep
from .store import open_sweep

__all__ = ["Grid", "METRICS", "open_sweep", "sweep"]


def sweep(
    grid: Grid,
    store=None,
    *,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
    devices=None,
    quiet: bool = False,
    callback=None,
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
    * With :mod:`jaxflow.theory` installed: ``theory_chi1`` and the mean-field predictions
      ``theory_P_sv_mean_sq`` (χ₁^l) and ``theory_grad_ratio`` (χ₁^{d/2}) beside the measurements.

    The loss of a depth-d network is the batch-mean squared error of its readout of h_d against
    targets y ~ N(0, 1). Seed s draws ``k_init, k_data = jax.random.split(jax.random.key(s))``;
    weights are ``model.init(k_init, x)`` of the core model (``jf.mlp`` / ``jf.residual_stack``
    with the grid's width, activation and init), so any configuration can be rebuilt and checked
    with the core functions; x and y are the columns of
    ``jax.random.normal(k_data, (batch, width + 1))`` (x the first width).

    Args:
      grid: the :class:`Grid`.
      store: ``None`` (results in memory only) or a directory path (``"results.zarr"``): each
        finished chunk is written as it completes; rerunning with the same grid resumes, skipping
        finished chunks; a store of another grid is refused, never overwritten.
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

    Returns:
      An ``xarray.Dataset`` with dimensions ``activation``, ``init`` (with ``sigma_w2`` and
      ``sigma_b2`` coordinates), ``seed``, ``example`` (inputs of a seed), ``depth``, ``layer``
      (1…max depth; NaN beyond each depth) and ``sv``, and attributes recording the grid (JSON),
      package versions, platform, device kind, number of devices, ``compilations``, chunking and
      the chunks computed in this call. ``ds.to_dataframe()`` gives one row per coordinate tuple.

    Raises:
      TypeError: if ``grid`` is not a :class:`Grid`.
      ValueError: for a bad chunk size, memory budget or store (see above).

    Example:
      >>> import jaxflow as jf
      >>> grid = jf.Grid(depth=[1, 2], activation=["tanh"], init=["xavier"], width=4, seeds=1,
      ...                batch=1, metrics=["P_spectrum"])
      >>> ds = jf.sweep(grid, quiet=True)
      >>> ds.P_sv_max.dims
      ('activation', 'init', 'seed', 'example', 'depth', 'layer')
    """
    return run_sweep(
        grid,
        store,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        devices=devices,
        quiet=quiet,
        callback=callback,
    )

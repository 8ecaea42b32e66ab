"""Sweeps: one compiled call over depth × activation × initialization × seeds.

A :class:`Grid` names the networks; :func:`sweep` runs them all and returns a labelled
``xarray.Dataset``. The sweep is a *driver* (DESIGN.md): it jits, shards and chunks; the leaf
functions it calls are the core's (:func:`jaxflow.accumulate_chain`, the models' ``decompose``).

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
* **Store**: with ``store="path.zarr"`` every finished chunk is written as it completes, with a
  checksum, and a rerun resumes after verifying what is there; one process writes a store at a
  time (:mod:`jaxflow.sweeps.store`, which lists the failure guarantees).
* **Training** (:mod:`jaxflow.sweeps.train`): with ``"training"`` in the grid's metrics and
  ``data=``/``training=`` (a :class:`Training`), every network is trained in the same chunked,
  sharded, resumable way (:func:`jaxflow.experiments.trainability`).

Multi-host: call ``jax.distributed.initialize()`` in every process, then ``jaxflow.sweep(grid,
store=shared_path)`` in every process with the same grid. Each process computes the chunks
``index % process_count == process_index`` on its own local devices (no cross-host communication
inside a chunk), writes them and their records to the shared store, waits at a barrier for the
others, and then every process returns the whole dataset (process 0 writes ``result/``). Process 0
creates a new store before the others open it; a process that raises still meets the others at
the barrier, so they stop at once, naming its missing chunks. The recipe, runnable on one machine:
``examples/two_process_sweep.py`` (README, "Several processes or hosts").

CPU devices: ``devices=None`` uses one device on CPU with jaxlib < 0.11, and a sharding over as
many CPU devices as cores that would deadlock jaxlib's batched SVD is refused with an error
(why: ``docs/platform.md``, "CPU devices in a sweep").
"""

from .grid import METRICS, Grid
from .run import sweep
from .store import open_sweep
from .training import Training

__all__ = ["Grid", "METRICS", "Training", "open_sweep", "sweep"]

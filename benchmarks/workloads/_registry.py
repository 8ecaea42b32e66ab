"""The registry the scripts and the runner share, and reading and writing a workload's data."""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from ._common import CHECKSUM_RTOL, SCALES
from .deep_chain import DEEP, DeepChainData, deep_chain_data, deep_chain_reference
from .monitor import MONITOR, monitor_data
from .notes import NOTES, NotesData, notes_data, notes_reference
from .spectra import SPECTRA, SpectraData, spectra_data, spectra_reference
from .trainability import (
    NUM_CLASSES,
    TRAINABILITY,
    TrainabilityData,
    trainability_data,
)


class Workload(NamedTuple):
    """One workload: its specs by scale, how to draw its data, and its float64 reference.

    Checksums must agree to :data:`CHECKSUM_RTOL`, or to the spec's own ``checksum_rtol`` where it
    has one (see :func:`checksum_rtol`)."""

    name: str
    specs: dict
    draw: object
    data_type: type
    reference: object | None


WORKLOADS = {
    "spectra": Workload("spectra", SPECTRA, spectra_data, SpectraData, spectra_reference),
    "notes": Workload("notes", NOTES, notes_data, NotesData, notes_reference),
    "deep-chain": Workload(
        "deep-chain", DEEP, deep_chain_data, DeepChainData, deep_chain_reference
    ),
    # The monitor's two variants must agree bit for bit; there is no separate reference.
    "monitor": Workload("monitor", MONITOR, monitor_data, NotesData, None),
    # Training is compared by a configuration mean; jaxflow draws its own weights, so the
    # tolerance is statistical, per scale (Trainability.checksum_rtol). No float64 reference.
    "trainability": Workload(
        "trainability", TRAINABILITY, trainability_data, TrainabilityData, None
    ),
}
"""name → :class:`Workload`."""


def get_workload(name: str) -> Workload:
    """The workload called ``name``; a ``ValueError`` lists the valid names."""
    if name not in WORKLOADS:
        raise ValueError(f"workload={name!r} is not defined; use one of {list(WORKLOADS)}")
    return WORKLOADS[name]


def checksum_rtol(spec) -> float:
    """The relative tolerance on a workload's checksums: the spec's ``checksum_rtol`` if it has
    one (a statistical comparison), else :data:`CHECKSUM_RTOL`."""
    return float(getattr(spec, "checksum_rtol", CHECKSUM_RTOL))


def get_spec(name: str, scale: str):
    """The spec of workload ``name`` at ``scale`` (one of :data:`SCALES`)."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not defined; use one of {SCALES}")
    return get_workload(name).specs[scale]


def save_data(data: NamedTuple, path: str) -> str:
    """Writes a workload's arrays to the directory ``path`` as one ``.npy`` per field.

    ``.npy`` (not ``.npz``) so a large GPU-scale array can be memory-mapped. Refuses an existing
    directory: data is never overwritten.

    Returns:
      ``path``.
    """
    os.makedirs(path, exist_ok=False)
    for field, array in data._asdict().items():
        np.save(os.path.join(path, f"{field}.npy"), array)
    return path


def load_data(name: str, scale: str, path: str | None) -> NamedTuple:
    """The data of workload ``name``: loaded from ``path`` (see :func:`save_data`) or drawn.

    Args:
      name: a workload name.
      scale: one of :data:`SCALES`.
      path: a directory written by :func:`save_data`, or ``None`` to draw the data now.

    Raises:
      ValueError: if the files do not have the shapes this workload and scale define.
    """
    workload = get_workload(name)
    spec = get_spec(name, scale)
    if path is None:
        return workload.draw(spec)
    fields = {}
    for field in workload.data_type._fields:
        file = os.path.join(path, f"{field}.npy")
        if not os.path.exists(file):
            raise ValueError(f"{file} is missing; write the data with `workloads export`")
        fields[field] = np.load(file, mmap_mode="r")
    data = workload.data_type(**fields)
    expected = _shapes(name, spec)
    actual = {k: v.shape for k, v in data._asdict().items()}
    if actual != expected:
        raise ValueError(
            f"{path} holds {name} data of shapes {actual}, not the {scale} scale's {expected}"
        )
    return data


def _shapes(name, spec) -> dict:
    """The array shapes of workload ``name`` at ``spec``, without drawing anything."""
    if name == "spectra":
        n = spec.width
        return {
            "weights": (len(spec.inits), spec.seeds, spec.max_depth, n, n),
            "inputs": (spec.seeds, spec.inputs, n),
        }
    if name == "deep-chain":
        n, c, d = spec.width, len(spec.chains), spec.max_depth
        return {
            "weights": (c, spec.seeds, d, n, n),
            "biases": (c, spec.seeds, d, n),
            "inputs": (spec.seeds, n),
        }
    if name == "trainability":
        n, s, d, c = spec.width, spec.seeds, spec.max_depth, NUM_CLASSES
        n_test = int(round(spec.test_fraction * 1797))  # the digits: 1,797 images of 64 pixels
        return {
            "x_train": (1797 - n_test, 64),
            "y_train": (1797 - n_test,),
            "x_test": (n_test, 64),
            "y_test": (n_test,),
            "batches": (spec.steps, spec.batch_size),
            "g_in": (s, n, 64),
            "g_hidden": (s, d, n, n),
            "g_out": (s, c, n),
            "b_in": (s, n),
            "b_hidden": (s, d, n),
            "b_out": (s, c),
        }
    if name == "notes":
        a, d, n, b = len(spec.activations), spec.depth, spec.width, spec.batch
    else:
        a, d, n, b = 1, spec.depth, spec.width, spec.batch
    return {
        "hidden_weight": (a, d, n, n),
        "hidden_bias": (a, d, n),
        "out_weight": (a, 1, n),
        "out_bias": (a, 1),
        "x": (a, b, n),
        "y": (a, b, 1),
    }


def checksums_agree(a: dict, b: dict, rtol: float = CHECKSUM_RTOL) -> tuple[bool, str]:
    """Whether two checksum dicts have the same keys and agree to ``rtol``; and why not.

    Returns:
      ``(agree, message)``; the message names the first disagreeing checksum and both values.
    """
    if set(a) != set(b):
        return False, f"different checksums: {sorted(a)} vs {sorted(b)}"
    for key in sorted(a):
        x, y = float(a[key]), float(b[key])
        if not (math.isfinite(x) and math.isfinite(y)):
            return False, f"{key} is not finite: {x!r} vs {y!r}"
        if abs(x - y) > rtol * max(abs(x), abs(y)):
            return (
                False,
                f"{key}: {x!r} vs {y!r} (relative difference "
                f"{abs(x - y) / max(abs(x), abs(y)):.2e} > {rtol:g})",
            )
    return True, "agree"

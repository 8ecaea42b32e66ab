"""Workload 4: the training monitor's overhead."""

from __future__ import annotations

import dataclasses

import numpy as np

from .notes import NotesData, _linear_stack_data


@dataclasses.dataclass(frozen=True)
class TrainingMonitor:
    """A jitted optax training step with and without ``jaxflow.monitor``.

    The notes' ``DeepNet``: ``depth`` × (Linear(width, width) + ReLU) + Linear(width, 1), MSE on a
    fixed batch, ``optax.adam(learning_rate)``, one warm-up step then ``steps`` timed steps. The
    monitor passes updates through unchanged, but the two compiled programs may fuse the
    gradient differently, so their parameters can drift apart by rounding, and a fixed batch
    trained for thousands of steps amplifies that drift chaotically. The checksum is therefore
    taken early: the sum of the losses of the first ``checked_steps`` steps (warm-up included).
    """

    depth: int = 10
    width: int = 64
    batch: int = 32
    steps: int = 2000
    learning_rate: float = 1e-3
    checked_steps: int = 20

    ID = 4


MONITOR = {
    "full": TrainingMonitor(),
    "quick": TrainingMonitor(steps=50),
    "gpu": TrainingMonitor(),
}


def monitor_data(spec: TrainingMonitor) -> NotesData:
    """The monitor workload's initial parameters and batch (the notes' layout, one set)."""
    return _linear_stack_data((spec.ID,), 1, spec.depth, spec.width, spec.batch)


def monitor_checksum(losses) -> dict:
    """``early_loss_sum`` = Σ of the first ``checked_steps`` losses, in float64.

    Args:
      losses: the losses of the first ``checked_steps`` steps.
    """
    return {"early_loss_sum": float(np.sum(np.asarray(losses, np.float64)))}

"""What a trainability run trains and records: :class:`Training` (validated, JSON round-trip)."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers

from jaxflow._checks import positive_int

__all__ = ["OPTIMIZERS", "Training", "record_steps"]

OPTIMIZERS = ("sgd", "adam")
"""The optimisers a :class:`Training` may name (``optax.sgd``, ``optax.adam``)."""


def record_steps(steps: int, every: int) -> tuple[int, ...]:
    """0, every, 2·every, …, and ``steps`` (always)."""
    recorded = list(range(0, steps + 1, every))
    if recorded[-1] != steps:
        recorded.append(steps)
    return tuple(recorded)


@dataclasses.dataclass(frozen=True)
class Training:
    """How every network of a trainability run is trained and recorded.

    Attributes:
      steps: optimiser steps, ≥ 1.
      learning_rate: the optimiser's step size, a finite number > 0.
      batch_size: examples per minibatch (drawn with replacement), ≥ 1.
      record_every: record the metrics every this many steps (and at step 0 and the last step).
      optimizer: ``"sgd"`` (plain SGD, ``optax.sgd``) or ``"adam"`` (``optax.adam``).
      eval_size: the metrics are taken on the first ``eval_size`` training examples and the
        first ``eval_size`` test examples (fewer if a set is smaller), ≥ 1.
      jacobian_inputs: training inputs over which the initial Jacobian spread is averaged; 0
        skips it (``jacobian_spread`` is then NaN), which saves its compilation and run time.

    Example:
      >>> import jaxflow as jf
      >>> training = jf.Training(steps=100, learning_rate=0.05, batch_size=32, record_every=40)
      >>> training.record_steps
      (0, 40, 80, 100)
      >>> jf.Training.from_dict(training.to_dict()) == training
      True
    """

    steps: int = 500
    learning_rate: float = 0.01
    batch_size: int = 64
    record_every: int = 50
    optimizer: str = "sgd"
    eval_size: int = 512
    jacobian_inputs: int = 2

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for key in ("steps", "batch_size", "record_every", "eval_size"):
            set_(key, positive_int(key, getattr(self, key)))
        set_("jacobian_inputs", positive_int("jacobian_inputs", self.jacobian_inputs, 0))
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, numbers.Real)
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise ValueError(f"learning_rate={lr!r} is not allowed; it must be a finite number > 0")
        set_("learning_rate", float(lr))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r} is not allowed; use one of {', '.join(OPTIMIZERS)}"
            )

    @property
    def record_steps(self) -> tuple[int, ...]:
        """The recorded steps: 0, k, 2k, …, and ``steps`` (always)."""
        return record_steps(self.steps, self.record_every)

    def to_dict(self) -> dict:
        """A JSON-able dict that :meth:`from_dict` turns back into an equal value."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in a run's attributes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, mapping: dict, *, source: str = "training") -> Training:
        """Builds a :class:`Training` from a mapping, rejecting unknown keys.

        Args:
          mapping: field name → value.
          source: what to call the mapping in error messages.

        Returns:
          The :class:`Training`.

        Raises:
          ValueError: for an unknown key (listing the allowed ones) or an invalid value.
        """
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in mapping:
            if key not in allowed:
                raise ValueError(
                    f"{source}: unknown key {key!r}; allowed keys are: {', '.join(allowed)}"
                )
        return cls(**mapping)

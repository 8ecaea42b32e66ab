"""Workload 2: the notes' compare_activations."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from ._common import NP_ACTIVATIONS, _rng


@dataclasses.dataclass(frozen=True)
class NotesComparison:
    """The notes' ``compare_activations``: per-Linear weight-gradient norms of three deep nets.

    For each activation: ``depth`` × (Linear(width, width) + φ) + Linear(width, 1), a batch of
    ``batch`` inputs x ~ N(0, I) and targets y ~ N(0, 1), MSE loss (mean over the batch), one
    backward pass, ‖∂L/∂W‖_F of every Linear (``depth + 1`` norms). Weights and biases are
    PyTorch's default ``nn.Linear`` draw, U(±1/√fan_in), drawn here with NumPy, fresh per
    activation as in the notes (which build a new model each time).
    """

    activations: tuple[str, ...] = ("relu", "sigmoid", "tanh")
    depth: int = 10
    width: int = 64
    batch: int = 32

    ID = 2


NOTES = {"full": NotesComparison(), "quick": NotesComparison(), "gpu": NotesComparison()}


class NotesData(NamedTuple):
    """The notes comparison's parameters and data, float32, one set per activation.

    Attributes:
      hidden_weight: (activations, depth, width, width), (out, in) layout.
      hidden_bias: (activations, depth, width).
      out_weight: (activations, 1, width).
      out_bias: (activations, 1).
      x: (activations, batch, width).
      y: (activations, batch, 1).
    """

    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    out_weight: np.ndarray
    out_bias: np.ndarray
    x: np.ndarray
    y: np.ndarray


def _linear_stack_data(key: tuple, sets: int, depth: int, width: int, batch: int) -> NotesData:
    """``sets`` independent draws of a Linear stack's parameters (PyTorch's default U(±1/√fan_in))
    and of a batch x ~ N(0, I), y ~ N(0, 1), from generators seeded with ``key``."""
    fields = {name: [] for name in NotesData._fields}
    bound = 1.0 / math.sqrt(width)  # fan_in is the width for every Linear here
    for s in range(sets):
        rng = _rng(*key, s)
        fields["hidden_weight"].append(rng.uniform(-bound, bound, (depth, width, width)))
        fields["hidden_bias"].append(rng.uniform(-bound, bound, (depth, width)))
        fields["out_weight"].append(rng.uniform(-bound, bound, (1, width)))
        fields["out_bias"].append(rng.uniform(-bound, bound, (1,)))
        fields["x"].append(rng.standard_normal((batch, width)))
        fields["y"].append(rng.standard_normal((batch, 1)))
    return NotesData(**{k: np.stack(v).astype(np.float32) for k, v in fields.items()})


def notes_data(spec: NotesComparison) -> NotesData:
    """Draws the notes comparison's parameters and data (deterministic), one set per activation."""
    return _linear_stack_data((spec.ID,), len(spec.activations), spec.depth, spec.width, spec.batch)


def mlp_variables(data: NotesData, index: int) -> dict:
    """Set ``index`` of a Linear stack as the variables of ``jaxflow.mlp(depth, width, out_dim=1)``
    (no input layer; Flax kernels are Wᵀ), as NumPy arrays — for the jax scripts."""
    return {
        "params": {
            "blocks": {
                "Dense_0": {
                    "kernel": np.swapaxes(data.hidden_weight[index], -1, -2),
                    "bias": np.asarray(data.hidden_bias[index]),
                }
            },
            "readout": {
                "kernel": np.asarray(data.out_weight[index]).T,
                "bias": np.asarray(data.out_bias[index]),
            },
        }
    }


def notes_checksum(grad_norms) -> dict:
    """``log_grad_norm`` = Σ over activations and Linear layers of log ‖∂L/∂W‖_F.

    Args:
      grad_norms: (activations, depth + 1) weight-gradient norms, input side first.
    """
    return {"log_grad_norm": float(np.sum(np.log(np.asarray(grad_norms, np.float64))))}


def notes_reference(spec: NotesComparison, data: NotesData) -> dict:
    """The notes comparison's checksum by hand-written float64 backpropagation (the notes' own
    ∂L/∂W = δ aᵀ, ∂L/∂a = Wᵀ δ), independent of every autodiff under test."""
    norms = []
    for a, name in enumerate(spec.activations):
        phi, dphi = NP_ACTIVATIONS[name]
        d = {k: np.asarray(v[a], np.float64) for k, v in data._asdict().items()}
        h, inputs, zs = d["x"], [], []
        for W, b in zip(d["hidden_weight"], d["hidden_bias"]):
            inputs.append(h)
            zs.append(h @ W.T + b)
            h = phi(zs[-1])
        pred = h @ d["out_weight"].T + d["out_bias"]
        delta = 2.0 * (pred - d["y"]) / pred.size  # ∂ mean((pred − y)²) / ∂pred
        layer_norms = [np.linalg.norm(delta.T @ h)]
        grad_h = delta @ d["out_weight"]
        for W, a_in, z in zip(d["hidden_weight"][::-1], inputs[::-1], zs[::-1]):
            delta = grad_h * dphi(z)
            layer_norms.append(np.linalg.norm(delta.T @ a_in))
            grad_h = delta @ W
        norms.append(layer_norms[::-1])
    return notes_checksum(norms)

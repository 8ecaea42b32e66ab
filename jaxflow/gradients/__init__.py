"""Gradient health: per-parameter statistics, activation gradients, dead and saturated units, a
training loop that records clipping and stops at the first non-finite step, and an optax monitor.

The notes' PyTorch ``check_gradient_flow`` loops over ``named_parameters`` in Python and marks a
parameter ⚠ when its gradient norm is below 1e-7 or above 1e3. :func:`gradient_stats` is the same
table as a pure, jit-compatible function of pytrees (:mod:`~jaxflow.gradients.stats`),
:func:`format_gradient_report` prints it (:mod:`~jaxflow.gradients.report`), and
:func:`gradient_monitor` puts it inside any ``optax.chain`` (:mod:`~jaxflow.gradients.monitoring`;
not ``monitor.py``, whose name would hide the deprecated ``jaxflow.gradients.monitor`` alias).

Conventions (they change numbers, so they are fixed here and tested):

* **Leaf keys are paths**, ``/``-joined: ``readout/kernel``. Leaves under a *stacked* subtree
  (default: any path component named ``blocks``, the ``nn.scan`` stack of jaxflow models) carry a
  leading depth axis and are split per layer, with the index zero-padded to at least two digits
  (``blocks/07/Dense_0/kernel``), so a depth-L stack gives L rows per leaf.
* **Layers** group the leaves: a stacked leaf belongs to its block (``blocks/07``), any other leaf
  to its first path component (``input``, ``readout``; a leading ``params`` collection level is kept
  in the name but not used as the group on its own). The per-layer norms are √Σ‖g‖² over a
  group's leaves, so their root-sum-square is the global norm.
* **Global norm** is √(Σ g²) over every entry of the measured leaves — the number
  ``optax.clip_by_global_norm`` compares with its threshold, not the sum of per-parameter norms
  the popular snippets add up. It is computed with scaling, so it stays finite (and right) above
  √(float32 max) ≈ 1.8e19, where ``optax.tree.norm`` overflows to inf.
* **Status** is an integer code per leaf (strings cannot live inside ``jit``), a
  :class:`GradientStatus`: ``OK``, ``VANISHING``, ``EXPLODING``, ``NONFINITE`` (0…3);
  ``GradientStatus.name_of(codes)`` names them on the host. ``nonfinite`` (any NaN or
  ±Inf entry) wins over ``exploding`` (norm > ``exploding``, default 1e3), which wins over
  ``vanishing`` (norm < ``vanishing``, default 1e-7, the notes' thresholds). An all-zero gradient
  is vanishing; ``nonfinite`` means the gradient itself holds NaN or Inf.
* **Norms do not underflow or overflow.** Per-leaf and per-layer norms are √Σg² computed after
  scaling by max|g|: a plain float32 √Σg² is 0 for gradients near 1e-20 (their squares underflow:
  exactly the vanishing regime) and inf above ~1e19. The global norm is their root-sum-square,
  scaled the same way, so it stays finite where ``optax.tree.norm`` (what the clipper sees)
  overflows.
* **Frozen leaves** are skipped and listed by name in ``frozen``: ``None`` and
  ``optax.MaskedNode`` leaves (parameters left out of the gradient), integer, boolean and
  ``float0`` leaves (what ``jax.grad(..., allow_int=True)`` returns for integers), and empty arrays.
* **Losses** are per example, ``loss(prediction, y) -> scalar`` (``"mse"``: the mean over outputs of
  the squared error, as in :func:`jaxflow.chain_rule_check`); a batch's loss is their mean, which
  for ``"mse"`` is PyTorch's ``nn.MSELoss()``.
* **Activation gradients** ∂L/∂h_l are taken for l = 0…L, h_0 the output of the input map and h_L
  the input of the readout (the chain convention of :mod:`jaxflow.jacobians`).
"""

from jaxflow import _deprecation
from jaxflow.gradients.layers import (
    activation_gradient_norms,
    dead_unit_fraction,
    saturated_unit_fraction,
)
from jaxflow.gradients.monitoring import MonitorState, gradient_monitor
from jaxflow.gradients.report import format_gradient_report
from jaxflow.gradients.stats import GradientStats, GradientStatus, LeafStats, gradient_stats
from jaxflow.gradients.training import TrainResult, train

__all__ = [
    "GradientStats",
    "GradientStatus",
    "LeafStats",
    "MonitorState",
    "TrainResult",
    "activation_gradient_norms",
    "dead_unit_fraction",
    "format_gradient_report",
    "gradient_monitor",
    "gradient_stats",
    "saturated_unit_fraction",
    "train",
]

__getattr__ = _deprecation.getattr_hook(
    __name__, {"STATUSES": _deprecation.STATUSES, "monitor": _deprecation.MONITOR}
)

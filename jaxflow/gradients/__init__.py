"""Gradient health: per-parameter statistics, activation gradients, dead and saturated units, a
training loop that records clipping and stops at the first non-finite step, and an optax monitor.

The notes' PyTorch ``check_gradient_flow`` loops over ``named_parameters`` in Python and marks a
parameter ⚠ when its gradient norm is below 1e-7 or above 1e3. :func:`gradient_stats` is the same
table as a pure, jit-compatible function of pytrees (:mod:`~jaxflow.gradients.stats`),
:func:`format_gradient_report` prints it (:mod:`~jaxflow.gradients.report`), and
:func:`gradient_monitor` puts it inside any ``optax.chain`` (:mod:`~jaxflow.gradients.monitoring`;
not ``monitor.py``, whose name would hide the deprecated ``jaxflow.gradients.monitor`` alias).

Conventions (they change numbers, so they are fixed here and tested):

* **Any parameter tree.** Flax linen boxes (``nn.Partitioned``, ``nn.LogicallyPartitioned``) and
  NNX ``Variable``s (in a ``State`` or not) are read through, so a boxed and a plain tree give the
  same names. Leaves that are not arrays (functions and strings in an Equinox module, Python
  numbers), typed PRNG keys (``jax.random.key``, NNX's ``RngKey``) and frozen leaves (below) are
  skipped and listed by name in ``frozen``.
* **Leaf keys are paths**, ``/``-joined, without the boxes' ``value``: ``readout/kernel``,
  ``blocks/0/linear/kernel`` (an ``nnx.List``), ``layers/3/weight`` (Equinox's ``layers[3]``).
* **Stacks.** A scanned stack (``nn.scan``, ``nnx.vmap``/``nnx.scan``, ``eqx.filter_vmap``)
  holds every layer's parameters in one leaf with a leading depth axis L. ``stacked`` says which
  subtrees are stacks (by a path component's name; the first one on a path counts). Named by
  you (``stacked="layers"``, ``stacked=("blocks", "layers")``), a subtree is split per layer, and
  its leaves must share one leading length (a per-layer scalar gate is an (L,) leaf; a scalar or
  differing lengths are an error). The default ``"auto"`` guesses, for jaxflow's own models: a
  subtree named ``blocks`` is split only when every leaf has at least two axes, the first of one
  common length, and among them are a stacked vector (two axes: a scanned bias or scale) and a
  stacked matrix or more (a scanned weight), or only stacked matrices (three axes each: scanned
  bias-free ``Dense`` layers, as ``jf.mlp(use_bias=False)`` makes). So a square ``Dense`` named
  ``blocks`` (1-D bias), a bias-free ``Dense`` or ``Conv``, or an ``Embed`` is one leaf, not a
  stack of rows (a bias-free ``DenseGeneral`` or 1-D ``Conv`` kernel, 3-D, would be taken for a
  stack outside a module named like ``conv``: pass ``stacked=()``); a stack of bias-free
  convolutions, of vectors alone, or with a
  scalar gate is measured unsplit until you name it. A list of layers right below the name (``nnx.List``, a Python list,
  all-digit keys) is split by layer already and never split again; a list inside a stack's layer
  (an Equinox ``MLP`` stacked by ``filter_vmap``) is split by the leading axis with the rest.
  Each split leaf gives L rows, with the index zero-padded to at least two digits
  (``blocks/07/Dense_0/kernel``).
* **Layers** group the leaves (``group_by``). By default a leaf's layer is its path up to its
  last *layer index* — a list position (``layers/3``, ``blocks/0``), an all-digit key
  (``blocks/07``) or a lowercase name ending in ``_N`` (``layers_3``, ``blocks_5``,
  ``Transformer/encoderblock_7``, ``decoder/encoderdecoderblock_0``), except, inside another
  layer index, a module holding parameters only whose numbering among its siblings does not
  start at 0 (GPT-2's ``ln_1`` and ``ln_2`` inside ``h_0`` name two norms of one block, so its
  layer is ``h_0``; a ResNet's ``stage_1/block_2/conv_1`` groups as ``stage_1/block_2``); linen's automatic CamelCase names (``Dense_0``, ``MlpBlock_0``) number
  parts of a layer and do not count, and a split stack's
  layer is its block (``blocks/07``), whatever is numbered inside it. With nested numbering the
  last index wins (``blocks/3/mlp/layers/0`` in an Equinox block holding an MLP): pass
  ``group_by="blocks/[0-9]+"`` for one row per block. A leaf without a
  layer index belongs to its first path component (``input``, ``readout``; a leading ``params``
  collection level is kept in the name but not used as the group on its own). ``group_by`` may
  instead be a regular expression (the layer is its first match in the leaf name, or the match's
  first group) or a callable ``leaf name -> layer name``. The per-layer norms are √Σ‖g‖² over a
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
  ``float0`` leaves (what ``jax.grad(..., allow_int=True)`` returns for integers), empty arrays,
  and the non-array leaves and PRNG keys above.
* **Losses** are per example, ``loss(prediction, y) -> scalar`` (``"mse"``: the mean over outputs of
  the squared error, as in :func:`jaxflow.chain_rule_check`; the names are
  :func:`jaxflow.jacobians.get_loss`'s); a batch's loss is their mean, which for ``"mse"`` is
  PyTorch's ``nn.MSELoss()``.
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

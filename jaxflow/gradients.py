"""Gradient health: per-parameter statistics, activation gradients, dead and saturated units, a
training loop that records clipping and stops at the first non-finite step, and an optax monitor.

The notes' PyTorch ``check_gradient_flow`` loops over ``named_parameters`` in Python and marks a
parameter ⚠ when its gradient norm is below 1e-7 or above 1e3. :func:`gradient_stats` is the same
table as a pure, jit-compatible function of pytrees, and :func:`monitor` puts it inside any
``optax.chain``.

Conventions (they change numbers, so they are fixed here and tested):

* **Leaf keys are paths**, ``/``-joined: ``readout/kernel``. Leaves under a *stacked* subtree
  (default: any path component named ``blocks``, the ``nn.scan`` stack of jaxflow models) carry a
  leading depth axis and are split per layer, with the index zero-padded to at least two digits
  (``blocks/07/Dense_0/kernel``), so a depth-L stack gives L rows per leaf.
* **Layers** group the leaves: a stacked leaf belongs to its block (``blocks/07``), any other leaf
  to its first path component (``input``, ``readout``; a leading ``params`` collection level is kept
  in the name but not used as the group on its own). The per-layer norms are √Σ‖g‖² over a
  group's leaves, so their root-sum-square is the global norm.
* **Global norm** is ``optax.tree.norm`` of the measured leaves: the number
  ``optax.clip_by_global_norm`` compares with its threshold. It is √(Σ g²) over every entry, not
  the sum of per-parameter norms the popular snippets add up.
* **Status** is an integer code per leaf (strings cannot live inside ``jit``): index into
  :data:`STATUSES` = ``("ok", "vanishing", "exploding", "nonfinite")``. ``nonfinite`` (any NaN or
  ±Inf entry) wins over ``exploding`` (norm > ``exploding``, default 1e3), which wins over
  ``vanishing`` (norm < ``vanishing``, default 1e-7, the notes' thresholds). An all-zero gradient
  is vanishing. Norms are √Σg² like optax's, so in float32 a gradient above ~1.8e19 has norm
  ``inf`` yet status ``exploding``: ``nonfinite`` means the gradient itself holds NaN or Inf.
* **Frozen leaves** are skipped and listed by name in ``frozen``: ``None`` and
  ``optax.MaskedNode`` leaves (parameters left out of the gradient), integer, boolean and
  ``float0`` leaves (what ``jax.grad(..., allow_int=True)`` returns for integers), and empty arrays.
* **Losses** are per example, ``loss(prediction, y) -> scalar`` (``"mse"``: the mean over outputs of
  the squared error, as in :func:`jaxflow.chain_rule_check`); a batch's loss is their mean, which
  for ``"mse"`` is PyTorch's ``nn.MSELoss()``.
* **Activation gradients** ∂L/∂h_l are taken for l = 0…L, h_0 the output of the input map and h_L
  the input of the readout (the chain convention of :mod:`jaxflow.jacobians`).
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow.activations import get_activation
from jaxflow.jacobians import _loss_fn
from jaxflow.models import MLP, Network, _check_input, _check_positive_int

__all__ = [
    "STATUSES",
    "GradientStats",
    "MonitorState",
    "TrainResult",
    "activation_gradient_norms",
    "dead_unit_fraction",
    "format_gradient_report",
    "gradient_stats",
    "monitor",
    "saturated_unit_fraction",
    "train",
]

STATUSES = ("ok", "vanishing", "exploding", "nonfinite")
"""Status names, indexed by the integer codes in :attr:`GradientStats.status`."""

_OK, _VANISHING, _EXPLODING, _NONFINITE = range(len(STATUSES))
_ROOT = "(root)"

# optax.global_norm warns (deprecated) in recent optax; optax.tree.norm is what
# clip_by_global_norm itself calls there. Older optax has only global_norm.
_global_norm = optax.tree.norm if hasattr(optax, "tree") else optax.global_norm

# One function object per loss name, so a jitted driver keyed on it does not recompile per call.
_loss = functools.lru_cache(maxsize=None)(_loss_fn)


class LeafStats(NamedTuple):
    """The statistics of one leaf (or one layer of a stacked leaf), from :meth:`GradientStats.leaf`.

    Attributes:
      norm: ‖g‖₂.
      mean: mean of g.
      max_abs: max |g|.
      ratio: ‖g‖/‖w‖ (NaN when no params were given).
      status: the int code, an index into :data:`STATUSES`.
    """

    norm: jax.Array
    mean: jax.Array
    max_abs: jax.Array
    ratio: jax.Array
    status: jax.Array


@flax.struct.dataclass
class GradientStats:
    """Per-leaf and per-layer gradient statistics, from :func:`gradient_stats`.

    A registered pytree: the arrays are its leaves and the names are static, so it passes through
    ``jit``, ``vmap`` and ``lax.scan`` (which add leading axes to every array field). Shapes below
    are for one gradient; n is the number of measured leaves (stacked leaves count once per layer),
    m the number of layers.

    Attributes:
      norm: (n,) ‖g‖₂ of each leaf.
      mean: (n,) mean of g.
      max_abs: (n,) max |g|.
      ratio: (n,) ‖g‖/‖w‖ when params were given, else NaN; +inf where ‖w‖ = 0 < ‖g‖ (e.g. zero-
        initialised biases), 0 where both are 0.
      status: (n,) int32 codes into :data:`STATUSES`.
      layer_norms: (m,) √Σ‖g‖² over each layer's leaves.
      global_norm: () ``optax.tree.norm`` of the measured leaves.
      status_counts: (4,) int32, how many leaves have each status, in :data:`STATUSES` order.
      names: n leaf keys (static), e.g. ``blocks/07/Dense_0/kernel``.
      layers: n layer indices (static), the layer of each leaf.
      layer_names: m layer names (static), e.g. ``blocks/07``, ``readout``.
      frozen: keys of the skipped leaves (static; see the module docs).
      thresholds: ``(vanishing, exploding)`` used for the status (static).

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> stats.names, stats.norm.tolist(), stats.status_names().tolist()
      (('b', 'w'), [1e-09, 5.0], ['vanishing', 'ok'])
    """

    norm: jax.Array
    mean: jax.Array
    max_abs: jax.Array
    ratio: jax.Array
    status: jax.Array
    layer_norms: jax.Array
    global_norm: jax.Array
    status_counts: jax.Array
    names: tuple[str, ...] = flax.struct.field(pytree_node=False)
    layers: tuple[int, ...] = flax.struct.field(pytree_node=False)
    layer_names: tuple[str, ...] = flax.struct.field(pytree_node=False)
    frozen: tuple[str, ...] = flax.struct.field(pytree_node=False)
    thresholds: tuple[float, float] = flax.struct.field(pytree_node=False)

    def status_names(self) -> np.ndarray:
        """The status of every leaf as a NumPy array of strings (host-side), shaped like ``status``."""
        return np.asarray(STATUSES)[np.asarray(self.status)]

    def leaf(self, name: str) -> LeafStats:
        """The statistics of the leaf ``name`` (e.g. ``"blocks/07/Dense_0/kernel"``).

        Raises:
          KeyError: for an unknown name, listing the known ones.
        """
        if name not in self.names:
            raise KeyError(f"{name!r} is not a measured leaf; known: {', '.join(self.names)}")
        i = self.names.index(name)
        return LeafStats(*(a[..., i] for a in (self.norm, self.mean, self.max_abs, self.ratio, self.status)))

    def leaves_with(self, status: str) -> tuple[str, ...]:
        """The names of the leaves with ``status`` (host-side, for unbatched stats).

        Raises:
          ValueError: for an unknown status or batched stats.
        """
        if status not in STATUSES:
            raise ValueError(f"status={status!r} is not known; use one of {STATUSES}")
        codes = np.asarray(self.status)
        if codes.ndim != 1:
            raise ValueError(
                f"these stats are batched (status shape {codes.shape}); select one first, e.g. "
                "jax.tree.map(lambda a: a[i], stats)"
            )
        return tuple(n for n, c in zip(self.names, codes) if c == STATUSES.index(status))


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _is_frozen_node(x) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _flatten(tree):
    """[(path parts, leaf)] in pytree order, with None and MaskedNode kept as leaves."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_frozen_node)
    return [(tuple(_key_name(k) for k in path), leaf) for path, leaf in flat]


def _leaf_dtype(leaf):
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.result_type(leaf)


class _Row(NamedTuple):
    """One measured row: leaf ``leaf`` of the float leaves, layer ``layer`` of it if stacked."""

    name: str
    leaf: int
    layer: int | None
    group: str


def _plan(grads, stacked):
    """The static layout: measured rows in order, float leaves, their paths, and frozen names."""
    rows, leaves, paths, frozen, anchors = [], [], [], [], {}
    for pos, (parts, leaf) in enumerate(_flatten(grads)):
        name = "/".join(parts) or _ROOT
        if _is_frozen_node(leaf):
            frozen.append(name)
            continue
        dtype = _leaf_dtype(leaf)
        if np.issubdtype(dtype, np.complexfloating):
            raise TypeError(f"grads leaf {name!r} is complex ({dtype}); only real gradients are measured")
        if not np.issubdtype(dtype, np.floating) or math.prod(jnp.shape(leaf)) == 0:
            frozen.append(name)
            continue
        where = next((i for i, part in enumerate(parts) if part in stacked), None)
        index = len(leaves)
        leaves.append(leaf)
        paths.append(parts)
        if where is None:
            top = 1 if parts[:1] == ("params",) and len(parts) > 1 else 0
            group = "/".join(parts[: top + 1]) or _ROOT
            rows.append(((pos, 0, pos), _Row(name, index, None, group)))
            continue
        if jnp.ndim(leaf) == 0:
            raise ValueError(
                f"grads leaf {name!r} sits under the stacked subtree {parts[where]!r} but is a "
                "scalar; stacked leaves need a leading depth axis (pass stacked=() if it has none)"
            )
        prefix = parts[: where + 1]
        anchor = anchors.setdefault(prefix, pos)
        depth = jnp.shape(leaf)[0]
        width = max(2, len(str(depth - 1)))
        for layer in range(depth):
            index_part = f"{layer:0{width}d}"
            full = "/".join(prefix + (index_part,) + parts[where + 1 :])
            rows.append(((anchor, layer, pos), _Row(full, index, layer, "/".join(prefix + (index_part,)))))
    rows = [row for _, row in sorted(rows, key=lambda r: r[0])]
    return rows, leaves, paths, tuple(frozen)


def _check_thresholds(vanishing, exploding):
    for arg, value in (("vanishing", vanishing), ("exploding", exploding)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise ValueError(f"{arg}={value!r} is not allowed; it must be a real number")
    if not (0 <= vanishing < exploding) or math.isinf(vanishing):
        raise ValueError(
            f"vanishing={vanishing!r}, exploding={exploding!r} are not allowed; they need "
            "0 <= vanishing < exploding, vanishing finite"
        )


def _as_names(stacked) -> frozenset:
    if isinstance(stacked, str):
        return frozenset((stacked,))
    if stacked is None:
        return frozenset()
    stacked = tuple(stacked)
    if not all(isinstance(s, str) for s in stacked):
        raise TypeError(f"stacked={stacked!r} must be a name or a sequence of names")
    return frozenset(stacked)


def _norm(x, axis=None):
    """√Σx² along ``axis``, scaled by max|x| first.

    Vanishing gradients reach 1e-20 and below, whose squares underflow float32 to zero (and
    exploding ones above ~1e19 overflow), so the plain √Σx² reports 0 (or inf) where the norm is
    perfectly representable.
    """
    x = jnp.asarray(x)
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, 1.0).astype(x.dtype)
    axes = tuple(range(x.ndim)) if axis is None else axis
    return jnp.squeeze(safe, axes) * jnp.sqrt(jnp.sum(jnp.square(x / safe), axis=axis))


def _per_row(values, rows):
    """Gathers per-leaf (k,) vectors into the row order with one static gather."""
    offsets = np.cumsum([0] + [v.shape[0] for v in values])
    index = np.array([offsets[r.leaf] + (r.layer or 0) for r in rows])
    return jnp.concatenate(values)[index]


def _nonfinite(block):
    return ~jnp.all(jnp.isfinite(block), axis=1)


def _nonfinite_rows(tree, stacked):
    """(row names, (n,) bool: whether each row holds a NaN or Inf), in gradient_stats' layout."""
    rows, leaves, _, _ = _plan(tree, stacked)
    is_stacked = {r.leaf: r.layer is not None for r in rows}
    flags = [_nonfinite(_rows_of(leaf, is_stacked[i])) for i, leaf in enumerate(leaves)]
    return tuple(r.name for r in rows), _per_row(flags, rows)


def _rows_of(leaf, stacked_leaf):
    a = jnp.asarray(leaf)
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    return a.reshape((a.shape[0], -1) if stacked_leaf else (1, -1))


def gradient_stats(
    grads,
    params=None,
    *,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    stacked: Any = ("blocks",),
) -> GradientStats:
    """The notes' gradient table as a pure function: per-leaf and per-layer norms, and a status.

    Pure and jit-compatible (the thresholds and ``stacked`` are static); ``vmap`` over a batch of
    gradients adds a leading axis to every array. See the module docs for the conventions (keys,
    layers, status codes, frozen leaves).

    Args:
      grads: a pytree of gradients, e.g. ``jax.grad(loss)(params)``.
      params: the parameters, same structure (frozen leaves may differ), for ‖g‖/‖w‖; or ``None``.
      vanishing: a leaf whose ‖g‖ is below this is ``vanishing`` (the notes' 1e-7).
      exploding: a leaf whose ‖g‖ is above this is ``exploding`` (the notes' 1e3).
      stacked: path component names whose subtrees carry a leading depth axis, split per layer;
        ``()`` for none.

    Returns:
      A :class:`GradientStats`.

    Raises:
      ValueError: for bad thresholds, a scalar leaf under a stacked subtree, a ``params`` tree that
        lacks a measured leaf or has another shape, or no floating-point leaf at all.
      TypeError: for complex gradients.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> grads = {"blocks": {"kernel": jnp.stack([jnp.full((2, 2), 1e-9), jnp.ones((2, 2))])},
      ...          "readout": {"kernel": jnp.array([[jnp.nan], [1.0]])}}
      >>> stats = jax.jit(jf.gradient_stats)(grads)
      >>> stats.names
      ('blocks/00/kernel', 'blocks/01/kernel', 'readout/kernel')
      >>> stats.status_names().tolist()
      ['vanishing', 'ok', 'nonfinite']
      >>> stats.layer_names, stats.layer_norms[:2].tolist()
      (('blocks/00', 'blocks/01', 'readout'), [2e-09, 2.0])
    """
    _check_thresholds(vanishing, exploding)
    return _gradient_stats(grads, params, float(vanishing), float(exploding), _as_names(stacked))


# Jitted even when called eagerly: op-by-op dispatch would compile every small reduction of every
# leaf separately (seconds on the first call); under an outer jit this is simply inlined.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _gradient_stats(grads, params, vanishing, exploding, stacked) -> GradientStats:
    rows, leaves, paths, frozen = _plan(grads, stacked)
    if not leaves:
        raise ValueError(
            f"grads has no floating-point leaves to measure (frozen or non-float: {list(frozen)})"
        )
    is_stacked = {r.leaf: r.layer is not None for r in rows}
    blocks = [_rows_of(leaf, is_stacked[i]) for i, leaf in enumerate(leaves)]
    norm = _per_row([_norm(b, axis=1) for b in blocks], rows)
    mean = _per_row([jnp.mean(b, axis=1) for b in blocks], rows)
    max_abs = _per_row([jnp.max(jnp.abs(b), axis=1) for b in blocks], rows)
    nonfinite = _per_row([_nonfinite(b) for b in blocks], rows)

    if params is None:
        ratio = jnp.full_like(norm, jnp.nan)
    else:
        by_path = {parts: leaf for parts, leaf in _flatten(params)}
        w_blocks = []
        for i, parts in enumerate(paths):
            w = by_path.get(parts)
            name = "/".join(parts) or _ROOT
            if w is None or _is_frozen_node(w):
                raise ValueError(f"params has no array at {name!r}, where grads has a gradient")
            if jnp.shape(w) != jnp.shape(leaves[i]):
                raise ValueError(
                    f"params[{name!r}] has shape {jnp.shape(w)} but its gradient has shape "
                    f"{jnp.shape(leaves[i])}"
                )
            w_blocks.append(_rows_of(w, is_stacked[i]))
        w_norm = _per_row([_norm(b, axis=1) for b in w_blocks], rows)
        safe = jnp.where(w_norm > 0, w_norm, 1.0)
        ratio = jnp.where(w_norm > 0, norm / safe, jnp.where(norm > 0, jnp.inf, 0.0)).astype(norm.dtype)

    status = jnp.where(
        nonfinite,
        _NONFINITE,
        jnp.where(norm > exploding, _EXPLODING, jnp.where(norm < vanishing, _VANISHING, _OK)),
    ).astype(jnp.int32)

    layer_names = tuple(dict.fromkeys(r.group for r in rows))
    layer_of = tuple(layer_names.index(r.group) for r in rows)
    ids, groups = np.asarray(layer_of), len(layer_names)
    # √Σ‖g‖² per layer, scaled by the layer's largest leaf norm as in _norm.
    scale = jax.ops.segment_max(norm, ids, num_segments=groups)
    scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, 1.0)
    layer_norms = scale * jnp.sqrt(
        jax.ops.segment_sum(jnp.square(norm / scale[ids]), ids, num_segments=groups)
    )
    codes = jnp.arange(len(STATUSES), dtype=jnp.int32)
    status_counts = jnp.sum(status[None, :] == codes[:, None], axis=1, dtype=jnp.int32)
    return GradientStats(
        norm=norm,
        mean=mean,
        max_abs=max_abs,
        ratio=ratio,
        status=status,
        layer_norms=layer_norms,
        global_norm=_global_norm(leaves),
        status_counts=status_counts,
        names=tuple(r.name for r in rows),
        layers=layer_of,
        layer_names=layer_names,
        frozen=frozen,
        thresholds=(vanishing, exploding),
    )


_MARKS = {True: ("✓", "⚠", "‖g‖/‖w‖"), False: ("ok", "!!", "|g|/|w|")}


def format_gradient_report(stats: GradientStats, *, stream=None, unicode: bool | None = None) -> str:
    """The notes' gradient table as text: one line per leaf, ✓ or ⚠, then layers and totals.

    Host-side (reads the numbers). The marks are ✓ / ⚠ as in the notes, or ``ok`` / ``!!`` when
    ``stream`` cannot encode them (a plain-ASCII terminal or log).

    Args:
      stats: unbatched :class:`GradientStats` (index a batch first: ``jax.tree.map(lambda a: a[i],
        stats)``).
      stream: where the text will go, to pick the marks (default ``sys.stdout``).
      unicode: force Unicode (``True``) or ASCII (``False``) marks; ``None`` decides by ``stream``.

    Returns:
      The report, a multi-line string (print it).

    Raises:
      TypeError: if ``stats`` is not a GradientStats. ValueError: if it is batched.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> print(jf.format_gradient_report(stats, unicode=False))  # doctest: +ELLIPSIS
      Gradient statistics: 2 leaves, global norm 5.00e+00
      ...
      !! b       norm=1.00e-09  mean=1.00e-09  max=1.00e-09  vanishing
      ok w       norm=5.00e+00  mean=3.50e+00  max=4.00e+00
      ...
    """
    if not isinstance(stats, GradientStats):
        raise TypeError(f"stats is a {type(stats).__name__}; pass the GradientStats of gradient_stats")
    if np.ndim(stats.norm) != 1:
        raise ValueError(
            f"stats are batched (norm shape {np.shape(stats.norm)}); select one first, e.g. "
            "jax.tree.map(lambda a: a[i], stats)"
        )
    if unicode is None:
        from jaxflow.cli import encodable

        unicode = encodable("".join(_MARKS[True]), stream or sys.stdout)
    good, bad, ratio_label = _MARKS[bool(unicode)]
    norm, mean, max_abs, ratio = (np.asarray(a) for a in (stats.norm, stats.mean, stats.max_abs, stats.ratio))
    statuses = stats.status_names()
    width = max(len(n) for n in stats.names)
    show_ratio = not np.all(np.isnan(ratio))
    vanishing, exploding = stats.thresholds
    lines = [
        f"Gradient statistics: {len(stats.names)} leaves, global norm {float(stats.global_norm):.2e}",
        f"({bad} marks norm < {vanishing:.0e} vanishing, > {exploding:.0e} exploding, or NaN/Inf nonfinite)",
        "-" * (width + 60),
    ]
    for i, name in enumerate(stats.names):
        mark = good if statuses[i] == "ok" else bad
        line = f"{mark} {name:{width}s}  norm={norm[i]:.2e}  mean={mean[i]:.2e}  max={max_abs[i]:.2e}"
        if show_ratio:
            line += f"  {ratio_label}={ratio[i]:.2e}"
        if statuses[i] != "ok":
            line += f"  {statuses[i]}"
        lines.append(line)
    lines.append("-" * (width + 60))
    layers = ", ".join(f"{n} {v:.2e}" for n, v in zip(stats.layer_names, np.asarray(stats.layer_norms)))
    lines.append(f"layer norms: {layers}")
    counts = ", ".join(f"{int(c)} {s}" for s, c in zip(STATUSES, np.asarray(stats.status_counts)))
    lines.append(f"status: {counts}")
    if stats.frozen:
        lines.append(f"frozen (not measured): {', '.join(stats.frozen)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Activation gradients: one backward pass through zero taps added to every h_l.


def _tapped_forward(stack, x, taps):
    """readout(h_L) and (h_0, …, h_L) for a batch x (B, d), with taps[l] added to h_l.

    ∂L/∂taps[l] = ∂L/∂h_l: a zero tap enters exactly where h_l does, so one backward pass gives
    the gradient at every layer.
    """
    block = jax.vmap(stack.block_fn, in_axes=(None, 0))
    h0 = jax.vmap(stack.input_map)(x) + taps[0]

    def body(h, inputs):
        block_vars, tap = inputs
        h = block(block_vars, h) + tap
        return h, h

    h_last, hs = jax.lax.scan(body, h0, (stack.blocks, taps[1:]))
    return jax.vmap(stack.readout)(h_last), jnp.concatenate([h0[None], hs])


def _tap_shape(stack, x):
    h0 = jax.eval_shape(jax.vmap(stack.input_map), x)
    return jax.ShapeDtypeStruct((stack.depth + 1,) + h0.shape, h0.dtype)


def _loss_and_gradients(model, variables, x, y, loss_fn, reduce="mean"):
    """(loss, ∂loss/∂params, ∂loss/∂h_l for l = 0…L (L+1, B, n)) from one backward pass.

    x: (B, d), y: (B, out); the loss is the ``reduce`` ("mean" or "sum") over examples of
    ``loss_fn(prediction, y)``.
    """
    rest = {k: v for k, v in variables.items() if k != "params"}
    reduce_fn = jnp.mean if reduce == "mean" else jnp.sum

    def objective(params, taps):
        stack = model.decompose({"params": params, **rest})
        prediction, _ = _tapped_forward(stack, x, taps)
        return reduce_fn(jax.vmap(loss_fn)(prediction, y))

    shape = _tap_shape(model.decompose(variables), x)
    taps = jnp.zeros(shape.shape, shape.dtype)
    value, (param_grads, tap_grads) = jax.value_and_grad(objective, argnums=(0, 1))(
        variables["params"], taps
    )
    return value, param_grads, tap_grads


def _check_model(model, fn):
    if not isinstance(model, Network):
        raise TypeError(
            f"model is a {type(model).__name__}; {fn} takes a jaxflow model (jf.mlp, jf.residual_stack)"
        )


def _batch_xy(model, x, y):
    """x as (B, d) and y as (B, out), checked against the model; and whether x was one example."""
    _check_input(x, model.input_dim, "x")
    x, y = jnp.asarray(x), jnp.asarray(y)
    single = x.ndim == 1
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}; it must be (d,) or (batch, d)")
    out = model.width if model.out_dim is None else model.out_dim
    expected = (out,) if single else (x.shape[0], out)
    if y.shape != expected:
        raise ValueError(f"y has shape {y.shape}; for x of shape {x.shape} it must be {expected}")
    return (x[None], y[None], True) if single else (x, y, False)


def activation_gradient_norms(model, variables, x, y, loss: Any = "mse") -> jax.Array:
    """‖∂ℓ/∂h_l‖ at every layer l = 0…L, per example, from one backward pass.

    This is the quantity the vanishing-gradient bound speaks of: by the chain rule
    ∂ℓ/∂h_l = J_{l+1}ᵀ ⋯ J_Lᵀ J_outᵀ ∇_y ℓ. Rather than materialising Jacobians, a zero vector
    ε_l is added to every h_l inside the one scan over the blocks, and ``jax.grad`` with respect
    to the stacked ε (shape (L+1, batch, n)) returns every ∂ℓ/∂h_l at the cost of one backward
    pass. For a batch, the per-example losses ℓ_b are summed, so row b holds the gradient of ℓ_b
    alone (examples do not interact; BatchNorm runs in inference mode). For the batch-mean loss
    divide by the batch size.

    Pure and jit-compatible.

    Args:
      model: a jaxflow model (:func:`~jaxflow.mlp`, :func:`~jaxflow.residual_stack`).
      variables: its variables.
      x: one input (d,) or a batch (batch, d).
      y: the target, (out,) or (batch, out) (the width n when the model has no readout).
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``.

    Returns:
      (L+1,) for one example, (batch, L+1) for a batch; column l is ‖∂ℓ/∂h_l‖₂, h_0 the input
      map's output and h_L the readout's input.

    Example:
      Two linear blocks h_l = W h_{l−1} with W = I/2 and no readout: each step back halves the
      gradient, ∂ℓ/∂h_0 = Wᵀ Wᵀ ∂ℓ/∂h_2.

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="linear", out_dim=None)
      >>> W = {"kernel": 0.5 * jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> variables = {"params": {"blocks": {"Dense_0": W}}}
      >>> x, y = jnp.array([1.0, 1.0]), jnp.array([0.25, -0.75])  # h_2 = (0.25, 0.25)
      >>> jf.activation_gradient_norms(model, variables, x, y).tolist()  # ‖∂ℓ/∂h_2‖ = 1
      [0.25, 0.5, 1.0]
    """
    _check_model(model, "activation_gradient_norms")
    x, y, single = _batch_xy(model, x, y)
    norms = _activation_gradient_norms(model, variables, x, y, _loss(loss))
    return norms[0] if single else norms


# Jitted with the model static (also when called eagerly: one compile instead of op-by-op).
@functools.partial(jax.jit, static_argnums=(0, 4))
def _activation_gradient_norms(model, variables, x, y, loss_fn):
    _, _, tap_grads = _loss_and_gradients(model, variables, x, y, loss_fn, reduce="sum")
    return _norm(tap_grads, axis=-1).T  # (B, L+1)


# ----------------------------------------------------------------------------------------------
# Dead and saturated units.


def _preactivation_derivatives(model, variables, x, fn):
    """φ′(z_l) for every hidden layer of an MLP: (L, B, n), from the pre-activation chain."""
    if not isinstance(model, MLP):
        raise TypeError(
            f"model is a {type(model).__name__}; {fn} measures the hidden units of a jaxflow MLP "
            "(jf.mlp)"
        )
    if model.depth < 2:
        raise ValueError(
            f"{fn} needs an MLP of depth >= 2 (it reads z_1…z_L from "
            f"model.decompose(wrt='preactivation')); this model has depth={model.depth}"
        )
    _check_input(x, model.input_dim, "x")
    x = jnp.asarray(x)
    return _derivatives(model, variables, x[None] if x.ndim == 1 else x)


@functools.partial(jax.jit, static_argnums=0)
def _derivatives(model, variables, x):
    # The pre-activation stack starts at z_1 (its input map is the first Dense) and its blocks
    # give z_2…z_L, so its h_0…h_{L−1} are every z_l.
    stack = model.decompose(variables, wrt="preactivation")
    shape = _tap_shape(stack, x)
    _, zs = _tapped_forward(stack, x, jnp.zeros(shape.shape, shape.dtype))
    return get_activation(model.activation).derivative(zs)


def dead_unit_fraction(model, variables, x) -> jax.Array:
    """Per hidden layer, the fraction of units that pass no gradient for any input of the batch.

    A unit i of layer l is dead when φ′(z_l[i]) = 0 for every example: for ReLU that is an output
    of exactly zero for every input (z ≤ 0, with ReLU′(0) = 0 as ``jax.grad`` has it), so no
    gradient reaches its incoming weights from this batch.

    Pure and jit-compatible.

    Args:
      model: a jaxflow MLP of depth ≥ 2.
      variables: its variables.
      x: one input (d,) or a batch (batch, d).

    Returns:
      (L,) fractions in [0, 1], layer l = 1…L.

    Example:
      Two ReLU blocks with W = I; the second unit of layer 1 has bias −5, so it is zero for both
      inputs, and stays zero in layer 2:

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="relu", out_dim=None)
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.array([[0.0, -5.0], [0.0, 0.0]])}
      >>> x = jnp.array([[1.0, 1.0], [2.0, 3.0]])
      >>> jf.dead_unit_fraction(model, {"params": {"blocks": {"Dense_0": blocks}}}, x).tolist()
      [0.5, 0.5]
    """
    derivative = _preactivation_derivatives(model, variables, x, "dead_unit_fraction")
    return jnp.mean(jnp.all(derivative == 0, axis=1), axis=-1)


def saturated_unit_fraction(model, variables, x, *, threshold: float = 1e-2) -> jax.Array:
    """Per hidden layer, the fraction of units in saturation for every input of the batch.

    A unit i of layer l is saturated when |φ′(z_l[i])| < ``threshold`` for every example (sigmoid:
    |z| > 4.6 at the default 1e-2; tanh: |z| > 3.0): it passes almost no gradient for any input.
    For ReLU this counts the dead units (φ′ is 0 or 1).

    Pure and jit-compatible.

    Args:
      model: a jaxflow MLP of depth ≥ 2.
      variables: its variables.
      x: one input (d,) or a batch (batch, d).
      threshold: |φ′| below this is saturated; > 0.

    Returns:
      (L,) fractions in [0, 1], layer l = 1…L.

    Raises:
      ValueError: for a threshold that is not a positive number.

    Example:
      Two tanh blocks with W = I; the second unit of layer 1 has bias 8, so z ≥ 9 and
      tanh′(z) < 1e-7 for both inputs; layer 2 sees |z| ≤ 1 and is not saturated:

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="tanh", out_dim=None)
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.array([[0.0, 8.0], [0.0, 0.0]])}
      >>> x = jnp.array([[1.0, 1.0], [2.0, 3.0]])
      >>> jf.saturated_unit_fraction(model, {"params": {"blocks": {"Dense_0": blocks}}}, x).tolist()
      [0.5, 0.0]
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold > 0:
        raise ValueError(f"threshold={threshold!r} is not allowed; it must be a number > 0")
    derivative = _preactivation_derivatives(model, variables, x, "saturated_unit_fraction")
    return jnp.mean(jnp.all(jnp.abs(derivative) < threshold, axis=1), axis=-1)


# ----------------------------------------------------------------------------------------------
# Training with clipping, stopping at the first non-finite step.


class TrainResult(NamedTuple):
    """What :func:`train` recorded. T is the number of steps recorded: ``steps``, or the first
    non-finite step + 1 when training stopped there.

    Attributes:
      variables: the final variables, always finite: after the last update whose loss, gradient
        and resulting parameters were all finite.
      opt_state: the optimizer state that goes with them.
      loss: (T,) the loss at each step, before its update.
      grad_norm: (T,) the global gradient norm before clipping.
      clipped: (T,) bool, whether clipping changed the gradient at that step.
      layer_norms: (T, m) the per-layer gradient norms before clipping.
      layer_names: the m layer names.
      stats: :class:`GradientStats` of each step's gradient (before clipping), leading axis T.
      steps_run: how many updates were applied.
      clip_fraction: the fraction of the ``steps_run`` updates whose gradient was clipped.
      first_nonfinite_step: the first step whose loss, gradient or updated parameters were not
        finite, or ``None``.
      nonfinite: what was not finite at that step: ``"loss"`` and the names of gradient leaves;
        or, when those were finite, ``"param:<name>"`` for the parameters its update would have
        made non-finite.
      clip_norm: the ``clip_by_global_norm`` threshold used, or ``None``.
      clip_value: the ``clip`` (by value) threshold used, or ``None``.
    """

    variables: Any
    opt_state: Any
    loss: np.ndarray
    grad_norm: np.ndarray
    clipped: np.ndarray
    layer_norms: np.ndarray
    layer_names: tuple[str, ...]
    stats: GradientStats
    steps_run: int
    clip_fraction: float
    first_nonfinite_step: int | None
    nonfinite: tuple[str, ...]
    clip_norm: float | None
    clip_value: float | None

    @property
    def finite(self) -> bool:
        """Whether every step was finite."""
        return self.first_nonfinite_step is None


def _clipper(clip_norm, clip_value):
    parts = []
    for arg, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise ValueError(f"{arg}={value!r} is not allowed; it must be a finite number > 0 or None")
    if clip_value is not None:
        parts.append(optax.clip(clip_value))
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    return optax.chain(*parts) if parts else optax.identity()


def _batch_loss(model, loss_fn, train_mode):
    """loss(params, rest, x, y) -> (mean loss, updated non-param collections)."""

    def objective(params, rest, x, y):
        variables = {"params": params, **rest}
        if train_mode:
            prediction, updated = model.apply(variables, x, train=True, mutable=list(rest))
            rest = {**rest, **updated}
        else:
            prediction = model.apply(variables, x)
        return jnp.mean(jax.vmap(loss_fn)(prediction, y)), rest

    return objective


@functools.partial(
    jax.jit,
    static_argnames=("model", "optimizer", "steps", "loss_fn", "clip", "thresholds", "stacked"),
)
def _train_loop(variables, opt_state, xs, ys, *, model, optimizer, steps, loss_fn, clip, thresholds,
                stacked):
    clip_norm, clip_value = clip
    clipper = _clipper(clip_norm, clip_value)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    train_mode = isinstance(model, Network) and "batch_stats" in rest
    objective = jax.value_and_grad(_batch_loss(model, loss_fn, train_mode), has_aux=True)
    vanishing, exploding = thresholds

    def measure(params, grads):
        return gradient_stats(grads, params, vanishing=vanishing, exploding=exploding, stacked=stacked)

    stats0 = jax.eval_shape(measure, params, params)
    (loss0, _), _ = jax.eval_shape(objective, params, rest, xs[0], ys[0])
    records = {
        "loss": jnp.full((steps,), jnp.nan, loss0.dtype),
        "clipped": jnp.zeros((steps,), bool),
        "stats": jax.tree.map(lambda s: jnp.zeros((steps,) + s.shape, s.dtype), stats0),
    }
    bad_values = jnp.zeros((len(stats0.names),), bool)

    def step(carry):
        t, params, rest, opt_state, records, _, _ = carry
        x, y = xs[t % xs.shape[0]], ys[t % ys.shape[0]]
        (loss, new_rest), grads = objective(params, rest, x, y)
        stats = measure(params, grads)
        clipped_grads, _ = clipper.update(grads, clipper.init(params))
        changed = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), clipped_grads, grads))
        fired = jnp.any(jnp.stack(changed)) if changed else jnp.array(False)
        updates, new_opt_state = optimizer.update(clipped_grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        _, bad_values = _nonfinite_rows(new_params, frozenset(stacked))
        finite = jnp.isfinite(loss) & jnp.all(stats.status != _NONFINITE) & ~jnp.any(bad_values)
        # Keep the last finite state: the bad step is recorded, its update is not applied.
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        records = {
            "loss": records["loss"].at[t].set(loss),
            "clipped": records["clipped"].at[t].set(fired & finite),
            "stats": jax.tree.map(lambda r, s: r.at[t].set(s), records["stats"], stats),
        }
        return (t + 1, keep(new_params, params), keep(new_rest, rest), keep(new_opt_state, opt_state),
                records, ~finite, bad_values)

    def running(carry):
        t, *_, bad, _ = carry
        return (t < steps) & ~bad

    carry = (jnp.array(0), params, rest, opt_state, records, jnp.array(False), bad_values)
    t, params, rest, opt_state, records, bad, bad_values = jax.lax.while_loop(running, step, carry)
    return t, {"params": params, **rest}, opt_state, records, bad, bad_values


def _train_data(model, data, steps):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be a pair (x, y) of arrays")
    x, y = (jnp.asarray(a) for a in data)
    if isinstance(model, Network):
        _check_input(x, model.input_dim, "data x")
    if x.ndim == 2 and y.ndim == 2:
        x, y = x[None], y[None]
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"data has x {x.shape}, y {y.shape}; use one batch x (B, d), y (B, out), reused every "
            "step, or batches x (N, B, d), y (N, B, out), step t using batch t mod N"
        )
    return x, y


def train(
    model,
    variables,
    data,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    loss: Any = "mse",
    clip_norm: float | None = None,
    clip_value: float | None = None,
    opt_state=None,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    stacked: Any = ("blocks",),
) -> TrainResult:
    """Trains with optax in one compiled loop, recording gradient health and stopping on NaN/Inf.

    Each step computes the batch loss and its gradient, records the loss, the global gradient norm
    *before* clipping, the per-layer norms (:func:`gradient_stats`) and whether clipping changed
    the gradient, then clips (``optax.clip(clip_value)``, then
    ``optax.clip_by_global_norm(clip_norm)``) and applies ``optimizer``. The loop is one
    ``lax.while_loop`` under ``jit``: it stops at the first step whose loss, gradient or updated
    parameters are not finite, records that step, does not apply its update, and names the
    offending leaves — never a silent NaN run. Recompiles only for a new model, optimizer object
    (``optax.sgd(0.1)`` builds new functions on every call: keep one), ``steps``, loss, data
    shapes or thresholds.

    Args:
      model: a flax module (``model.apply(variables, x)``); a jaxflow model with ``batch_stats``
        trains BatchNorm in training mode.
      variables: its variables (``{"params": ..., ...}``).
      data: ``(x, y)``: one batch x (B, d), y (B, out) reused every step, or N batches
        x (N, B, d), y (N, B, out), step t using batch t mod N.
      optimizer: an ``optax.GradientTransformation`` (without clipping: pass it here instead, so it
        is recorded).
      steps: number of steps ≥ 1.
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``; the batch loss is the mean.
      clip_norm: clip by global norm at this threshold (``optax.clip_by_global_norm``), or ``None``.
      clip_value: clip every entry to ±this (``optax.clip``), or ``None``.
      opt_state: the optimizer state to resume from (default ``optimizer.init(params)``).
      vanishing, exploding, stacked: passed to :func:`gradient_stats`.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError / TypeError: for bad data shapes, ``steps`` or clip thresholds.

    Example:
      >>> import jax.numpy as jnp, optax, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="tanh")
      >>> variables = {"params": {
      ...     "blocks": {"Dense_0": {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}},
      ...     "readout": {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}}}
      >>> x, y = jnp.eye(2), jnp.array([[0.5], [-0.5]])
      >>> result = jf.train(model, variables, (x, y), optax.sgd(0.1), 20, clip_norm=0.5)
      >>> result.loss.shape, result.finite, bool(result.loss[-1] < 1e-3 * result.loss[0])
      ((20,), True, True)
      >>> result.layer_names, result.clip_fraction  # clipped while ‖g‖ > 0.5
      (('blocks/00', 'blocks/01', 'readout'), 0.45)
    """
    steps = _check_positive_int("steps", steps)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer is a {type(optimizer).__name__}; pass an optax.GradientTransformation")
    if not (isinstance(variables, dict) or hasattr(variables, "items")) or "params" not in variables:
        raise ValueError("variables must be the model's variables, a mapping with a 'params' entry")
    _check_thresholds(vanishing, exploding)
    _clipper(clip_norm, clip_value)  # validates the thresholds here, not inside jit
    xs, ys = _train_data(model, data, steps)
    stacked = tuple(sorted(_as_names(stacked)))
    variables = dict(variables)
    if opt_state is None:
        opt_state = optimizer.init(variables["params"])
    t, final, opt_state, records, bad, bad_values = _train_loop(
        variables,
        opt_state,
        xs,
        ys,
        model=model,
        optimizer=optimizer,
        steps=steps,
        loss_fn=_loss(loss),
        clip=(clip_norm, clip_value),
        thresholds=(float(vanishing), float(exploding)),
        stacked=stacked,
    )
    recorded = int(t)
    stats = jax.tree.map(lambda a: a[:recorded], records["stats"])
    clipped = np.asarray(records["clipped"][:recorded])
    first_bad, nonfinite = None, ()
    steps_run = recorded
    if bool(bad):
        first_bad = steps_run = recorded - 1
        last = jax.tree.map(lambda a: a[-1], stats)
        param_names = [row.name for row in _plan(final["params"], frozenset(stacked))[0]]
        loss_bad = () if np.isfinite(records["loss"][recorded - 1]) else ("loss",)
        nonfinite = loss_bad + last.leaves_with("nonfinite")
        if not nonfinite:  # a finite gradient whose update overflowed the parameters
            nonfinite = tuple(f"param:{n}" for n, b in zip(param_names, np.asarray(bad_values)) if b)
    return TrainResult(
        variables=final,
        opt_state=opt_state,
        loss=np.asarray(records["loss"][:recorded]),
        grad_norm=np.asarray(stats.global_norm),
        clipped=clipped,
        layer_norms=np.asarray(stats.layer_norms),
        layer_names=stats.layer_names,
        stats=stats,
        steps_run=steps_run,
        clip_fraction=float(clipped[:steps_run].mean()) if steps_run else 0.0,
        first_nonfinite_step=first_bad,
        nonfinite=nonfinite,
        clip_norm=clip_norm,
        clip_value=clip_value,
    )


# ----------------------------------------------------------------------------------------------
# The monitor: gradient_stats inside any optax chain.


class MonitorState(NamedTuple):
    """The state of :func:`monitor`.

    Attributes:
      count: () int32, how many updates it has seen (0: ``stats`` are zeros, nothing seen yet).
      stats: the :class:`GradientStats` of the latest updates it saw.
    """

    count: jax.Array
    stats: GradientStats


def monitor(
    *, vanishing: float = 1e-7, exploding: float = 1e3, stacked: Any = ("blocks",)
) -> optax.GradientTransformation:
    """An optax transformation that passes updates through unchanged and keeps their statistics.

    Place it in any ``optax.chain``: first, it sees the raw gradients; after a clipping step, the
    clipped ones. Its state (:class:`MonitorState`) holds the latest :func:`gradient_stats`
    (global and per-layer norms, per-leaf norms and status codes, status counts), computed inside
    the same jitted update, with ‖g‖/‖w‖ when ``update`` is given ``params``.

    Args:
      vanishing, exploding, stacked: passed to :func:`gradient_stats`.

    Returns:
      An ``optax.GradientTransformation``; ``update`` returns the updates it was given.

    References:
      The transformation follows optax's own ``(init, update)`` pattern (e.g. ``optax.snapshot``).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxflow as jf
      >>> params = {"w": jnp.ones(3)}
      >>> opt = optax.chain(jf.monitor(), optax.adam(1e-3))
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.array([3.0, 4.0, 0.0])}
      >>> updates, state = jax.jit(opt.update)(grads, state, params)
      >>> float(state[0].stats.global_norm), int(state[0].count)
      (5.0, 1)
    """
    _check_thresholds(vanishing, exploding)
    stacked = tuple(sorted(_as_names(stacked)))
    measure = functools.partial(gradient_stats, vanishing=vanishing, exploding=exploding, stacked=stacked)

    def init_fn(params):
        shapes = jax.eval_shape(measure, params, params)
        stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return MonitorState(jnp.zeros((), jnp.int32), stats)

    def update_fn(updates, state, params=None):
        stats = measure(updates, params)
        return updates, MonitorState(state.count + 1, stats)

    return optax.GradientTransformation(init_fn, update_fn)

"""Gradient statistics: the notes' per-parameter table as a pure, jit-compatible function.

See :mod:`jaxflow.gradients` for the conventions (leaf keys, layers, status codes, frozen leaves).
The text report is in :mod:`jaxflow.gradients.report`, the optax transformation in
:mod:`jaxflow.gradients.monitoring`.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow import _deprecation
from jaxflow._numerics import HIGHEST
from jaxflow._numerics import scaled_norm as _norm  # noqa: F401  (gradients/layers.py imports it)
from jaxflow._status import StatusCode

__all__ = [
    "GradientStats",
    "GradientStatus",
    "LeafStats",
    "gradient_stats",
]


class GradientStatus(StatusCode):
    """The status of a gradient leaf: the integer codes in :attr:`GradientStats.status`.

    An ``IntEnum``, so the codes compare equal to the int32 values computed inside ``jit``.
    ``NONFINITE`` (any NaN or ±Inf entry) wins over ``EXPLODING`` (‖g‖ above the threshold), which
    wins over ``VANISHING`` (‖g‖ below it). ``GradientStatus.name_of(codes)`` gives the lowercase
    names used in reports (``"ok"``, ``"vanishing"``, ``"exploding"``, ``"nonfinite"``).

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> jf.GradientStatus.name_of(stats.status).tolist()
      ['vanishing', 'ok']
      >>> int(stats.leaf("b").status) == jf.GradientStatus.VANISHING
      True
    """

    OK = 0
    VANISHING = 1
    EXPLODING = 2
    NONFINITE = 3


_ROOT = "(root)"
__getattr__ = _deprecation.getattr_hook(__name__, {"STATUSES": _deprecation.STATUSES})


class LeafStats(NamedTuple):
    """The statistics of one leaf (or one layer of a stacked leaf), from :meth:`GradientStats.leaf`.

    Attributes:
      norm: ‖g‖₂.
      mean: mean of g.
      max_abs: max |g|.
      ratio: ‖g‖/‖w‖ (NaN when no params were given).
      status: the int code, a :class:`GradientStatus`.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> leaf = stats.leaf("w")
      >>> float(leaf.norm), jf.GradientStatus.name_of(leaf.status)
      (5.0, 'ok')
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
      status: (n,) int32 :class:`GradientStatus` codes.
      layer_norms: (m,) √Σ‖g‖² over each layer's leaves.
      global_norm: () √Σg² over every measured entry, not a sum of norms: the number
        ``optax.clip_by_global_norm`` compares with its threshold, except that it is computed
        with scaling and stays finite above √(float32 max) ≈ 1.8e19, where optax's plain Σg²
        overflows to inf (and its clipping then zeroes the update).
      status_counts: (4,) int32, how many leaves have each status, in :class:`GradientStatus`
        order.
      names: n leaf keys (static), e.g. ``blocks/07/Dense_0/kernel``.
      layers: n layer indices (static), the layer of each leaf.
      layer_names: m layer names (static), e.g. ``blocks/07``, ``readout``.
      frozen: keys of the skipped leaves (static; see the module docs).
      thresholds: ``(vanishing, exploding)`` used for the status (static).

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> stats.names, stats.norm.tolist(), jf.GradientStatus.name_of(stats.status).tolist()
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
        """Deprecated: use ``GradientStatus.name_of(stats.status)``.

        Every leaf's status as a NumPy array of strings (host-side), shaped like ``status``.
        """
        _deprecation.warn(
            "GradientStats.status_names()", "jaxflow.GradientStatus.name_of(stats.status)"
        )
        return GradientStatus.name_of(self.status)

    def leaf(self, name: str) -> LeafStats:
        """The statistics of the leaf ``name`` (e.g. ``"blocks/07/Dense_0/kernel"``).

        Raises:
          KeyError: for an unknown name, listing the known ones.
        """
        if name not in self.names:
            raise KeyError(f"{name!r} is not a measured leaf; known: {', '.join(self.names)}")
        i = self.names.index(name)
        return LeafStats(
            *(a[..., i] for a in (self.norm, self.mean, self.max_abs, self.ratio, self.status))
        )

    def leaves_with(self, status: GradientStatus | str) -> tuple[str, ...]:
        """The names of the leaves with ``status`` (host-side, for unbatched stats).

        Args:
          status: a :class:`GradientStatus` or its name (``"nonfinite"``).

        Raises:
          ValueError: for an unknown status or batched stats.
        """
        names = tuple(member.name.lower() for member in GradientStatus)
        if isinstance(status, str) and status in names:
            status = GradientStatus(names.index(status))
        if not isinstance(status, GradientStatus):
            raise ValueError(
                f"status={status!r} is not known; use a GradientStatus or one of {names}"
            )
        codes = np.asarray(self.status)
        if codes.ndim != 1:
            raise ValueError(
                f"these stats are batched (status shape {codes.shape}); select one first, e.g. "
                "jax.tree.map(lambda a: a[i], stats)"
            )
        return tuple(n for n, c in zip(self.names, codes, strict=True) if c == status)


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
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"grads leaf {name!r} is complex ({dtype}); only real gradients are measured"
            )
        # jnp.issubdtype: NumPy does not count bfloat16 or float8 as floating.
        if not jnp.issubdtype(dtype, jnp.floating) or math.prod(jnp.shape(leaf)) == 0:
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
            rows.append(
                ((anchor, layer, pos), _Row(full, index, layer, "/".join(prefix + (index_part,))))
            )
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


def _per_row(values, rows):
    """Gathers per-leaf (k,) vectors into the row order with one static gather."""
    offsets = np.cumsum([0] + [v.shape[0] for v in values])
    index = np.array([offsets[r.leaf] + (r.layer or 0) for r in rows])
    return jnp.concatenate(values)[index]


def _nonfinite(block):
    return ~jnp.all(jnp.isfinite(block), axis=1)


def _root_sum_square(norms, ids, groups):
    """√Σ norms² over each group (``ids``: static group index per entry), scaled by its largest.

    Masked reductions over a static membership mask rather than segment sums (scatters, slow on
    CPU) or a matrix product (0·NaN would leak one NaN leaf into every group).
    """
    member = np.zeros((groups, len(ids)), bool)
    member[ids, np.arange(len(ids))] = True
    scale = jnp.max(jnp.where(member, norms, -jnp.inf), axis=1)
    scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, 1.0)
    terms = jnp.where(member, jnp.square(norms / scale[ids]), 0.0)
    return scale * jnp.sqrt(jnp.sum(terms, axis=1))


def _row_stats(block):
    """Per-row (‖x‖, Σx, max|x|, nonfinite) of a (k, n) block in three passes over the data.

    ‖x‖ is m·√Σ(x/m)² with m = max|x|, as in :func:`jaxflow._numerics.scaled_norm`, so norms far
    below 1e-19 (whose squares underflow float32) or above 1e19 come out to float32 precision.
    The sums are
    matrix-vector products with a ones vector: XLA:CPU runs those as vectorised kernels and its
    reductions one element at a time (a matvec sum of the notes' DeepNet gradients took about
    half the time of ``jnp.sum``). A row holds a NaN or Inf exactly when its scaled Σ is not
    finite (the max cannot tell: XLA:CPU's vectorised max may skip a NaN).
    """
    ones = jnp.ones((block.shape[1],), block.dtype)
    # HIGHEST: no TF32 (GPU) or bfloat16 (TPU) passes in these sums.
    dot = functools.partial(jnp.matmul, precision=HIGHEST)
    max_abs = jnp.max(jnp.abs(block), axis=1)
    scale = jnp.where((max_abs > 0) & jnp.isfinite(max_abs), max_abs, 1.0)
    sumsq = dot(jnp.square(block / scale[:, None]), ones)
    norm = scale * jnp.sqrt(sumsq)
    nonfinite = ~jnp.isfinite(sumsq)
    # A NaN entry makes Σ(x/m)² NaN (an Inf alone makes it +inf), and the row's max NaN, as
    # NumPy's would be.
    max_abs = jnp.where(jnp.isnan(sumsq), jnp.nan, max_abs)
    return norm, dot(block, ones), max_abs, nonfinite


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
      >>> jf.GradientStatus.name_of(stats.status).tolist()
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
    norm, total, max_abs, nonfinite = (
        _per_row(list(column), rows)
        for column in zip(*(_row_stats(b) for b in blocks), strict=True)
    )
    sizes = _per_row([jnp.full(b.shape[:1], b.shape[1], b.dtype) for b in blocks], rows)
    mean = total / sizes

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
        w_norm = _per_row([_row_stats(b)[0] for b in w_blocks], rows)
        safe = jnp.where(w_norm > 0, w_norm, 1.0)
        # ‖w‖ = 0: inf for a nonzero gradient, 0 for a zero one, NaN stays NaN.
        undefined = jnp.where(norm == 0, 0.0, norm * jnp.inf)
        ratio = jnp.where(w_norm > 0, norm / safe, undefined).astype(norm.dtype)

    S = GradientStatus
    status = jnp.where(
        nonfinite,
        S.NONFINITE,
        jnp.where(norm > exploding, S.EXPLODING, jnp.where(norm < vanishing, S.VANISHING, S.OK)),
    ).astype(jnp.int32)

    layer_names = tuple(dict.fromkeys(r.group for r in rows))
    layer_of = tuple(layer_names.index(r.group) for r in rows)
    ids, groups = np.asarray(layer_of), len(layer_names)
    # √Σ‖g‖² per layer, then over the layers for the global norm.
    layer_norms = _root_sum_square(norm, ids, groups)
    global_norm = _root_sum_square(layer_norms, np.zeros(groups, int), 1)[0]
    codes = jnp.arange(len(GradientStatus), dtype=jnp.int32)
    status_counts = jnp.sum(status[None, :] == codes[:, None], axis=1, dtype=jnp.int32)
    return GradientStats(
        norm=norm,
        mean=mean,
        max_abs=max_abs,
        ratio=ratio,
        status=status,
        layer_norms=layer_norms,
        global_norm=global_norm,
        status_counts=status_counts,
        names=tuple(r.name for r in rows),
        layers=layer_of,
        layer_names=layer_names,
        frozen=frozen,
        thresholds=(vanishing, exploding),
    )

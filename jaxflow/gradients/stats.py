"""Gradient statistics: the notes' per-parameter table as a pure, jit-compatible function.

See :mod:`jaxflow.gradients` for the conventions (leaf keys, layers, status codes, frozen leaves).
The text report is in :mod:`jaxflow.gradients.report`, the optax transformation in
:mod:`jaxflow.gradients.monitoring`.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import re
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.core.meta import AxisMetadata as _AxisMetadata

try:  # NNX (flax >= 0.8): Variables box their values
    from flax.nnx import Variable as _NnxVariable
except ImportError:  # pragma: no cover
    _NnxVariable = None

from jaxflow import _deprecation
from jaxflow._numerics import unscale
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
      frozen: keys of the skipped leaves: frozen, non-array and PRNG-key leaves (static; see the
        module docs).
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


def _key_name(key) -> tuple[str, bool]:
    """(name, whether the key is a list position), for one key of a pytree path."""
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx), True
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key), isinstance(key.key, numbers.Integral)  # nnx.List: integer keys
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr)), False
    return str(key), False


def _is_frozen_node(x) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _is_boxed(x) -> bool:
    """Flax's boxes: linen ``nn.Partitioned``/``LogicallyPartitioned`` (``AxisMetadata``), NNX
    ``Variable`` (``nnx.Param``, ...), whose flattened paths would end in ``/value``."""
    return isinstance(x, _AxisMetadata) or (
        _NnxVariable is not None and isinstance(x, _NnxVariable)
    )


def _unbox(x):
    return x.unbox() if isinstance(x, _AxisMetadata) else x.get_value()


def _flatten(tree, prefix=()):
    """[(path parts, layer-index flags, leaf)] in pytree order, boxes read through, with None and
    MaskedNode kept as leaves."""
    is_leaf = lambda x: _is_frozen_node(x) or _is_boxed(x)  # noqa: E731
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]:
        keys = prefix + tuple(_key_name(k) for k in path)
        if _is_boxed(leaf):
            out.extend(_flatten(_unbox(leaf), keys))
        else:
            out.append((tuple(k for k, _ in keys), tuple(i for _, i in keys), leaf))
    return out


# Path components that number layers: list positions (``layers[3]``, an ``nnx.List``'s 3), all-
# digit keys (``blocks/03``), and lowercase names ending in _N (``layers_3``, ``encoderblock_7``:
# what linen names list attributes and numbered blocks). Linen's automatic CamelCase names
# (``Dense_0``, ``MlpBlock_0``) number sublayers inside a block, not layers.
# A _N name counts only where its numbering among its siblings starts at 0, as a list's does:
# GPT-2's ``ln_1``/``ln_2`` inside block ``h_0`` name two norms of one block, not layers 1 and 2.
_NUMBERED = re.compile(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)*)_(\d+)")


def _layer_indices(all_parts, paths):
    """For each path of ``paths`` (a list of (parts, positional)), which parts are layer
    indices: list positions, all-digit keys, and _N names, except a _N name inside another
    layer index that holds leaves only and whose sibling family (over ``all_parts``, every
    leaf's path, frozen ones included) has no 0: GPT-2's ``ln_1``/``ln_2`` in ``h_0``, while
    ``encoder/layer_1`` and ``stage_1/block_2`` numbered from 1 stay layers."""
    families = collections.defaultdict(set)
    for parts, _ in all_parts:
        for i, part in enumerate(parts):
            match = _NUMBERED.fullmatch(part)
            if match is not None:
                families[parts[:i], match.group(1)].add(int(match.group(2)))

    def flags(parts, positional):
        out = []
        for i, (part, pos) in enumerate(zip(parts, positional, strict=True)):
            match = _NUMBERED.fullmatch(part)
            # Excluded: a name inside another index, numbered from 1, holding leaves only (the
            # module of parts[-1]): ln_1 in h_0; block_1 of stage_1 holds modules and counts.
            numbered = match is not None and (
                not any(out) or 0 in families[parts[:i], match.group(1)] or i < len(parts) - 2
            )
            out.append(pos or part.isdigit() or numbered)
        return tuple(out)

    return [flags(parts, positional) for parts, positional in paths]


def _default_group(parts, indices) -> str:
    last = max((i for i, index in enumerate(indices) if index), default=None)
    if last is not None:
        return "/".join(parts[: last + 1])
    top = 1 if parts[:1] == ("params",) and len(parts) > 1 else 0
    return "/".join(parts[: top + 1]) or _ROOT


def _grouper(group_by):
    """name, parts, layer-index flags -> group name, for ``group_by`` (validated here)."""
    if group_by is None:
        return lambda name, parts, indices: _default_group(parts, indices)
    if isinstance(group_by, (str, re.Pattern)):
        try:
            pattern = re.compile(group_by)
        except re.error as error:
            raise ValueError(
                f"group_by={group_by!r} is not a valid regular expression: {error}"
            ) from None

        def by_pattern(name, parts, indices):
            match = pattern.search(name)
            if match is None:
                return _default_group(parts, indices)
            return match.group(1 if pattern.groups else 0)

        return by_pattern
    if callable(group_by):

        def by_callable(name, parts, indices):
            group = group_by(name)
            if not isinstance(group, str):
                raise TypeError(
                    f"group_by({name!r}) returned {group!r}; it must return the layer name, a str"
                )
            return group

        return by_callable
    raise TypeError(
        f"group_by={group_by!r} is not allowed; pass None (the default grouping), a regular "
        "expression or a callable name -> layer name"
    )


def _measured(name, leaf) -> bool:
    """Whether ``leaf`` is a floating-point array to measure; raises for complex gradients."""
    if _is_frozen_node(leaf) or not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        return False  # functions, strings, Python scalars: not arrays, not parameters
    dtype = leaf.dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key) or jnp.issubdtype(dtype, jax.dtypes.float0):
        return False
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"grads leaf {name!r} is complex ({dtype}); only real gradients are measured"
        )
    # jnp.issubdtype: NumPy does not count bfloat16 or float8 as floating.
    return jnp.issubdtype(dtype, jnp.floating) and math.prod(leaf.shape) > 0


class _Row(NamedTuple):
    """One measured row: leaf ``leaf`` of the float leaves, layer ``layer`` of it if stacked."""

    name: str
    leaf: int
    layer: int | None
    group: str


class _Layout(NamedTuple):
    """What gradient_stats measures, static (hashable): rows in order, each measured leaf's path
    and whether it is a split stack, and the names of the skipped leaves."""

    rows: tuple[_Row, ...]
    paths: tuple[tuple[str, ...], ...]
    split: tuple[bool, ...]
    frozen: tuple[str, ...]


class _Stacks(NamedTuple):
    """``stacked`` as :func:`_as_names` reads it: the subtree names, and whether they were the
    default guess (``"auto"``) or the caller's word. Hashable, so a static argument."""

    names: frozenset
    auto: bool


# The name jaxflow's models give their nn.scan stack: what stacked="auto" looks under.
_AUTO_NAMES = frozenset(("blocks",))


def _stacks(measured, stacked: _Stacks):
    """{prefix: whether the subtree at prefix is split per layer}, for the stacked candidates.

    A candidate is the subtree under the first path component named in ``stacked.names``. A list
    of layers (a list position or an all-digit key right below the name) is split by layer
    already and never split again. Otherwise:

    * named by the caller, it is a stack: every leaf has a leading axis of one common length L
      (a per-layer scalar gate is an (L,) leaf), else a ValueError says which leaves differ;
    * guessed (``"auto"``), it is split only when its shapes leave little doubt: every leaf with
      at least two axes, the first of one common length L, and either a stacked vector (two
      axes: a scanned bias or scale) beside a stacked matrix or more (a scanned weight), or
      only stacked matrices (three axes: scanned bias-free ``Dense`` layers, as in
      ``jf.mlp(use_bias=False)``). A 1-D leaf is an unscanned module's bias or scale; 2-D leaves
      alone are as likely a bias-free ``Dense`` or an ``Embed`` as a stack of vectors, and 4-D
      leaves alone a bias-free ``Conv`` as a stack of 3-D kernels: neither is split on a guess.
    """
    names = _AUTO_NAMES if stacked.auto else stacked.names
    found = {}
    for parts, listed, _, leaf in measured:
        where = next(
            (
                i
                for i, (p, ix) in enumerate(zip(parts, listed, strict=True))
                if p in names and not ix
            ),
            None,
        )
        if where is not None:
            found.setdefault(parts[: where + 1], []).append((parts, listed[where + 1 :], leaf))
    split = {}
    for prefix, members in found.items():
        if any(ix[:1] == (True,) for _, ix, _ in members):
            split[prefix] = False  # a list of layers
        elif stacked.auto:
            shapes = [jnp.shape(leaf) for _, _, leaf in members]
            # A stacked vector has width > 1 (Equinox's conv biases are (C, 1) and (C, 1, 1)),
            # and 3-D leaves alone are a stack only outside convolutions (a 1-D conv's kernel)
            # and lists.
            convolution = any("conv" in p.lower() for parts, _, _ in members for p in parts) or any(
                any(ix) for _, ix, _ in members
            )  # (a list below: an eqx.nn.Sequential of bias-free convolutions)
            split[prefix] = (
                all(len(s) >= 2 for s in shapes)
                and len({s[0] for s in shapes}) == 1
                and (
                    (
                        any(len(s) == 2 and s[1] > 1 for s in shapes)
                        and any(len(s) >= 3 for s in shapes)
                    )
                    or (all(len(s) == 3 for s in shapes) and not convolution)
                )
            )
        else:
            split[prefix] = _check_named_stack(prefix, members)
    return split


def _check_named_stack(prefix, members):
    """True, after checking that the caller's stack ``prefix`` has one leading length."""
    name = "/".join(prefix)
    for parts, _, leaf in members:
        if jnp.ndim(leaf) == 0:
            raise ValueError(
                f"grads leaf {'/'.join(parts)!r} sits under the stacked subtree {name!r} but is "
                "a scalar; stacked leaves need a leading depth axis (leave "
                f"{prefix[-1]!r} out of stacked if it is not a scanned stack)"
            )
    lengths = {}
    for parts, _, leaf in members:
        lengths.setdefault(jnp.shape(leaf)[0], []).append(("/".join(parts), jnp.shape(leaf)))
    if len(lengths) > 1:
        seen = "; ".join(f"{path} {shape}" for path, shape in (v[0] for v in lengths.values()))
        raise ValueError(
            f"stacked names {prefix[-1]!r}, but {name!r} is not a scanned stack: its leaves have "
            f"no common leading depth axis ({seen}); leave it out of stacked"
        )
    return True


# Layouts worked out already, most recently used last, keyed by :func:`_structure`: the layout
# depends on nothing else, and working it out in Python (paths, stacks, layer groups) cost more
# than the compiled measurement itself on small trees (issue 13). Bounded, so a long-running
# process that sees many tree shapes keeps only the latest.
_PLANS: collections.OrderedDict = collections.OrderedDict()
_PLANS_KEPT = 64


def _structure(tree, *options):
    """A hashable key of all a layout depends on: the tree's structure (paths, boxes, node types),
    each leaf's shape and dtype (or that it is not an array), and ``options``; None when some
    part cannot be hashed (then nothing is cached)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    kinds = tuple(
        (tuple(leaf.shape), str(leaf.dtype))
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype")
        else type(leaf)
        for leaf in leaves
    )
    key = (treedef, kinds, options)
    try:
        hash(key)
    except TypeError:
        return None, leaves
    return key, leaves


def _positions(chosen, leaves):
    """The index in ``leaves`` of each of ``chosen`` (by identity), or None unless each is found
    exactly once (a leaf read through a box that made a new array, or one array at two paths)."""
    where = {}
    for i, leaf in enumerate(leaves):
        where.setdefault(id(leaf), []).append(i)
    found = [where.get(id(leaf), ()) for leaf in chosen]
    if any(len(f) != 1 for f in found):
        return None
    return tuple(f[0] for f in found)


def _recall(key):
    """What was remembered under ``key`` (marked most recently used), or None."""
    if key is None or key not in _PLANS:
        return None
    _PLANS.move_to_end(key)
    return _PLANS[key]


def _remember(key, value):
    _PLANS[key] = value
    if len(_PLANS) > _PLANS_KEPT:
        _PLANS.popitem(last=False)


def _plan(grads, stacked, group_by=None):
    """(the static :class:`_Layout`, the measured leaves) of a gradient tree, worked out once per
    tree structure (see :func:`_structure`)."""
    key, flat = _structure(grads, "grads", stacked, group_by)
    known = _recall(key)
    if known is not None:
        layout, positions = known
        return layout, [flat[i] for i in positions]
    layout, leaves = _make_plan(grads, stacked, group_by)
    positions = None if key is None else _positions(leaves, flat)
    if positions is not None:
        _remember(key, (layout, positions))
    return layout, leaves


def _make_plan(grads, stacked, group_by=None):
    """(the static :class:`_Layout`, the measured leaves) of a gradient tree."""
    group = _grouper(group_by)
    found, frozen, every = [], [], []
    for parts, positional, leaf in _flatten(grads):
        name = "/".join(parts) or _ROOT
        every.append((parts, positional))
        if _measured(name, leaf):
            found.append((parts, positional, leaf))
        else:
            frozen.append(name)
    indices = _layer_indices(every, [(parts, pos) for parts, pos, _ in found])
    measured = [
        (parts, tuple(p or part.isdigit() for part, p in zip(parts, pos, strict=True)), ix, leaf)
        for (parts, pos, leaf), ix in zip(found, indices, strict=True)
    ]
    stacks = _stacks(measured, stacked)
    rows, leaves, paths, split, anchors = [], [], [], [], {}
    for pos, (parts, _, indices, leaf) in enumerate(measured):
        prefix = next((p for p in stacks if parts[: len(p)] == p), None)
        index = len(leaves)
        leaves.append(leaf)
        paths.append(parts)
        split.append(prefix is not None and stacks[prefix])
        if not split[-1]:
            name = "/".join(parts) or _ROOT
            rows.append(((pos, 0, pos), _Row(name, index, None, group(name, parts, indices))))
            continue
        anchor = anchors.setdefault(prefix, pos)
        depth = jnp.shape(leaf)[0]
        width = max(2, len(str(depth - 1)))
        where = len(prefix)
        for layer in range(depth):
            full_parts = prefix + (f"{layer:0{width}d}",) + parts[where:]
            # A scanned layer is one block: numbered names inside it do not start new layers.
            full_indices = indices[:where] + (True,) + (False,) * (len(parts) - where)
            full = "/".join(full_parts)
            rows.append(
                (
                    (anchor, layer, pos),
                    _Row(full, index, layer, group(full, full_parts, full_indices)),
                )
            )
    rows = tuple(row for _, row in sorted(rows, key=lambda r: r[0]))
    return _Layout(rows, tuple(paths), tuple(split), tuple(frozen)), leaves


def _check_thresholds(vanishing, exploding):
    for arg, value in (("vanishing", vanishing), ("exploding", exploding)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise ValueError(f"{arg}={value!r} is not allowed; it must be a real number")
    if not (0 <= vanishing < exploding) or math.isinf(vanishing):
        raise ValueError(
            f"vanishing={vanishing!r}, exploding={exploding!r} are not allowed; they need "
            "0 <= vanishing < exploding, vanishing finite"
        )


def _as_names(stacked) -> _Stacks:
    if isinstance(stacked, _Stacks):
        return stacked
    if isinstance(stacked, str) and stacked == "auto":
        return _Stacks(_AUTO_NAMES, True)
    if isinstance(stacked, str):
        return _Stacks(frozenset((stacked,)), False)
    if stacked is None:
        return _Stacks(frozenset(), False)
    if isinstance(stacked, (bool, int, float)) or not hasattr(stacked, "__iter__"):
        raise TypeError(
            f"stacked={stacked!r} is not allowed; pass 'auto', a subtree name (e.g. 'blocks'), "
            "a sequence of names, or None"
        )
    stacked = tuple(stacked)
    if not all(isinstance(s, str) for s in stacked):
        raise TypeError(f"stacked={stacked!r} must be 'auto', a name or a sequence of names")
    return _Stacks(frozenset(stacked), False)


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
    terms = jnp.where(member, jnp.square(unscale(norms, scale[ids])), 0.0)
    return scale * jnp.sqrt(jnp.sum(terms, axis=1))


# Leaves with at least this many entries are measured in place, each on its own: copying them into
# the fused block costs more than the few kernels of their own that it saves (measured on the
# notes' DeepNet, whose 10 stacked 64×64 kernels are one leaf of 40,960 entries).
_FUSE_BELOW = 1 << 14


def _chunk_width(sizes) -> int:
    """The chunk width C for rows of ``sizes`` entries: the power of two that minimises the padded
    entries plus the (rows × chunks of the longest row) combination table, weighed 4:1."""

    def cost(c):
        padded = sum(-(-n // c) * c for n in sizes)
        return padded + 4 * len(sizes) * -(-max(sizes) // c)

    candidates = [1 << p for p in range(3, 21)]
    if len(set(sizes)) == 1:
        candidates.append(sizes[0])  # one chunk per row: no padding, no copy of a lone block
    return min(candidates, key=cost)


def _power_of_two_scale(m):
    """2^-e with m·2^-e in [0.5, 1) (frexp's exponent e), for m > 0 finite; 1 elsewhere.

    Multiplying by a power of two is exact, so sums of x·s and (x·s)² are s and s² times the plain
    sums, to the last bit, without their overflow above ~1e19 (Σx²) or underflow below ~1e-19.
    e is clipped to the exponents whose 2^-e and 2^e are both normal (±126 in float32): XLA:CPU
    flushes subnormals to zero. At the clip m·s stays within [2^-24, 4], which neither changes.
    """
    finfo = jnp.finfo(m.dtype)
    ok = (m > 0) & jnp.isfinite(m)
    e = jnp.clip(jnp.frexp(jnp.where(ok, m, 1))[1], finfo.minexp, -finfo.minexp)
    return jnp.where(ok, jnp.ldexp(jnp.ones_like(m), -e), 1).astype(m.dtype)


def _fused_row_stats(blocks, means=True):
    """Per-row (‖x‖, mean, max|x|, nonfinite) of (k_i, n_i) blocks of one dtype, in few kernels.

    The fixed cost of measuring a gradient tree is the number of kernels XLA runs, not the
    entries: per leaf a max, a scaling pass and two sums came to ~20 µs on a loaded 2-core CPU
    (1.7 ms for a 70-leaf transformer). Here every row is cut into chunks of C entries (zero-
    padded: zeros change no max, Σx² or Σx) and all chunks of all blocks form one (R, C) matrix,
    measured in two passes for the norm: the chunk maxima, then — each chunk multiplied by its
    row's power-of-two scale s (:func:`_power_of_two_scale` of the row's max) — the chunk sums of
    (x·s)². ‖x‖ = √Σ(x·s)² / s neither overflows nor underflows (as
    :func:`jaxflow._numerics.scaled_norm`), and because the scale is exact it is the plain sum
    wherever that is representable. A row holds a NaN or Inf exactly when its Σ(x·s)² is not
    finite (the max cannot tell: XLA:CPU's vectorised max may skip a NaN). The mean is one more
    plain reduction, Σx/n, recomputed as Σ(x·s)/(n·s) under a branch only where Σx overflows.

    A block with one chunk per row (a leaf measured in place) is read as it is, with no copy.
    The sums used to be matrix-vector products with a ones vector, on each chunk divided by its
    own max: five passes over the entries for the norm, against two here (2–8× slower on leaves
    of 1M–4M entries on the 2-core CPU, and 1e-5 relative error on rows of 1M entries).

    Args:
      blocks: (k_i, n_i) arrays of one floating dtype, each row one measured row.
      means: also compute the means (``False`` for parameters, whose means are not reported).

    Returns:
      (norm, mean, max_abs, nonfinite), each (Σk_i,), rows in order; ``mean`` is None when
      ``means`` is False.
    """
    dtype = blocks[0].dtype
    sizes = [b.shape[1] for b in blocks for _ in range(b.shape[0])]
    c = _chunk_width(sizes)
    parts, starts, counts, first = [], [], [], 0
    for b in blocks:
        k, n = b.shape
        per_row = -(-n // c)
        pad = per_row * c - n
        if pad and k > 1:
            parts.append(jnp.pad(b, ((0, 0), (0, pad))).ravel())
        else:  # one concatenate with zero operands: XLA fuses it into one kernel, not one per pad
            parts.extend([b.ravel()] + ([jnp.zeros((pad,), dtype)] if pad else []))
        starts.extend(first + per_row * np.arange(k))
        counts.extend([per_row] * k)
        first += k * per_row
    x = (parts[0] if len(parts) == 1 else jnp.concatenate(parts)).reshape(first, c)
    counts = np.array(counts)
    row_of_chunk = np.repeat(np.arange(len(counts)), counts)
    chunked = first > len(counts)

    def per_row(chunk_values):
        """(rows,) Σ of each row's chunk values; with one chunk per row, the values."""
        if not chunked:
            return chunk_values
        # (rows, most chunks) indices of each row's chunks; missing ones point at a neutral 0.
        take = np.arange(counts.max())
        index = np.where(take < counts[:, None], np.array(starts)[:, None] + take, first)
        return jnp.concatenate([chunk_values, jnp.zeros((1,), dtype)])[index]

    def row_sums(values):
        """(rows,) Σ of each row of (R, C) values: within each chunk, then across the row's."""
        sums = jnp.sum(values, axis=1)
        return jnp.sum(per_row(sums), axis=1) if chunked else sums

    def scaled():
        return x * (scale[row_of_chunk] if chunked else scale)[:, None]

    chunk_max = jnp.max(jnp.abs(x), axis=1)
    max_abs = jnp.max(per_row(chunk_max), axis=1) if chunked else chunk_max
    scale = _power_of_two_scale(max_abs)
    sumsq = row_sums(jnp.square(scaled()))
    norm = jnp.sqrt(sumsq) / scale
    nonfinite = ~jnp.isfinite(sumsq)
    # A NaN entry makes Σ(x·s)² NaN (an Inf alone makes it +inf), and the row's max NaN, as
    # NumPy's would be.
    max_abs = jnp.where(jnp.isnan(sumsq), jnp.nan, max_abs)
    if not means:
        return norm, None, max_abs, nonfinite
    n = np.array(sizes, dtype=np.dtype(dtype))
    # The mean reads the entries once more, as they are: Σx fused with Σ(x·s)² into one kernel, or
    # as one variadic reduction, runs 1.3-5× slower on XLA:CPU than two plain reductions. Σx
    # overflows only where n entries come near the float32 maximum (above ~3e38/n); then, and only
    # then (a branch, so no pass is spent on it otherwise), the mean is Σ(x·s)/(n·s), which cannot.
    plain = row_sums(x)
    # inf, or NaN where the partial sums overflowed to +inf and to -inf (entries of both signs).
    overflowed = ~jnp.isfinite(plain) & ~nonfinite
    mean = jax.lax.cond(
        jnp.any(overflowed),
        lambda: jnp.where(overflowed, row_sums(scaled()) / n / scale, plain / n),
        lambda: plain / n,
    )
    return norm, mean, max_abs, nonfinite


def _fuse_across_leaves() -> bool:
    """Whether leaves may be concatenated into one block: only where there is one device.

    With several devices the leaves may be sharded differently (a kernel split over a "model"
    axis, its bias replicated), and the partitioner propagates the concatenation's sharding back
    into the computation of the gradients themselves, which then round differently: the updates
    would no longer be bit-identical to the chain without the monitor. Each leaf is measured on
    its own there (a few kernels per leaf, as before the fusion).
    """
    return jax.device_count() == 1


def _grouped_row_stats(blocks, means=True):
    """:func:`_fused_row_stats` of blocks of any dtypes and sizes, rows in the blocks' order.

    Blocks are fused by dtype (with one device, see :func:`_fuse_across_leaves`); a block of
    ``_FUSE_BELOW`` entries or more is measured on its own, in place.
    """
    fuse = _fuse_across_leaves()
    groups = {}
    for i, b in enumerate(blocks):
        key = (b.dtype, None) if fuse and b.size < _FUSE_BELOW else (b.dtype, i)
        groups.setdefault(key, []).append(i)
    columns, order = [[], [], [], []], []
    for members in groups.values():
        for column, values in zip(
            columns, _fused_row_stats([blocks[i] for i in members], means), strict=True
        ):
            column.append(values)
        order.extend((i, r) for i in members for r in range(blocks[i].shape[0]))
    position = {row: p for p, row in enumerate(order)}
    index = np.array([position[(i, r)] for i, b in enumerate(blocks) for r in range(b.shape[0])])
    out = []
    for column in columns:
        if column[0] is None:
            out.append(None)
            continue
        values = column[0] if len(column) == 1 else jnp.concatenate(column)
        out.append(values if len(groups) == 1 else values[index])
    return tuple(out)


def _nonfinite_rows(tree, stacked):
    """(row names, (n,) bool: whether each row holds a NaN or Inf), in gradient_stats' layout."""
    layout, leaves = _plan(tree, stacked)
    flags = [_nonfinite(_rows_of(leaf, s)) for leaf, s in zip(leaves, layout.split, strict=True)]
    return tuple(r.name for r in layout.rows), _per_row(flags, layout.rows)


def _rows_of(leaf, stacked_leaf):
    a = jnp.asarray(leaf)
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    return a.reshape((a.shape[0], -1) if stacked_leaf else (1, -1))


def _param_leaves(params, layout, leaves):
    """The parameters at the measured gradients' paths (boxes read through), checked; where they
    sit in ``params`` is worked out once per structure (see :func:`_structure`)."""
    # The gradients' shapes are part of the key: the check compares them with the parameters'.
    key, flat = _structure(params, "params", layout, tuple(jnp.shape(g) for g in leaves))
    positions = _recall(key)
    if positions is not None:
        return [flat[i] for i in positions]
    out = _check_param_leaves(params, layout, leaves)
    positions = None if key is None else _positions(out, flat)
    if positions is not None:
        _remember(key, positions)
    return out


def _check_param_leaves(params, layout, leaves):
    """The parameters at the measured gradients' paths (boxes read through), checked."""
    by_path = {parts: leaf for parts, _, leaf in _flatten(params)}
    out = []
    for parts, g in zip(layout.paths, leaves, strict=True):
        w = by_path.get(parts)
        name = "/".join(parts) or _ROOT
        if w is None or _is_frozen_node(w) or not hasattr(w, "shape"):
            raise ValueError(f"params has no array at {name!r}, where grads has a gradient")
        if jnp.shape(w) != jnp.shape(g):
            raise ValueError(
                f"params[{name!r}] has shape {jnp.shape(w)} but its gradient has shape "
                f"{jnp.shape(g)}"
            )
        out.append(w)
    return out


def gradient_stats(
    grads,
    params=None,
    *,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    stacked: Any = "auto",
    group_by: Any = None,
) -> GradientStats:
    """The notes' gradient table as a pure function: per-leaf and per-layer norms, and a status.

    Pure and jit-compatible (the thresholds, ``stacked`` and ``group_by`` are static); ``vmap``
    over a batch of gradients adds a leading axis to every array. Any parameter tree: Flax linen
    and NNX boxes are read through, non-array leaves (functions, strings), PRNG keys and frozen
    leaves are skipped and listed. See the module docs for the conventions (keys, stacks, layers,
    status codes, skipped leaves).

    Args:
      grads: a pytree of gradients, e.g. ``jax.grad(loss)(params)``, ``nnx.grad``'s ``State`` or
        ``eqx.filter_grad``'s module.
      params: the parameters, same paths (boxing and skipped leaves may differ), for ‖g‖/‖w‖; or
        ``None``.
      vanishing: a leaf whose ‖g‖ is below this is ``vanishing`` (the notes' 1e-7).
      exploding: a leaf whose ‖g‖ is above this is ``exploding`` (the notes' 1e3).
      stacked: which subtrees are scanned stacks (``nn.scan`` / ``nnx.vmap`` /
        ``eqx.filter_vmap`` modules, one leading depth axis on every leaf), measured per layer:
        ``"auto"`` (a subtree named ``blocks``, as jaxflow's models name theirs, when its shapes
        leave little doubt), the names of yours (``"layers"``, ``("blocks", "layers")``: each is
        split, and must be a stack), or ``()`` for none. See the module docs.
      group_by: how leaves form layers for ``layer_norms``: ``None`` (the path up to its last
        layer index, else the first component; see the module docs), a regular expression (the
        layer is its first match in the leaf name, or its first group if it has one; names it
        does not match fall back to the default), or a callable ``leaf name -> layer name``.

    Returns:
      A :class:`GradientStats`.

    Raises:
      ValueError: for bad thresholds, a subtree named in ``stacked`` whose leaves lack a common
        leading axis (a scalar among them), a ``params`` tree that
        lacks a measured leaf or has another shape, a bad ``group_by`` pattern, or no
        floating-point leaf at all.
      TypeError: for complex gradients, a ``stacked`` that is not names, or a bad ``group_by``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> grads = {"blocks": {"kernel": jnp.stack([jnp.full((2, 2), 1e-9), jnp.ones((2, 2))])},
      ...          "readout": {"kernel": jnp.array([[jnp.nan], [1.0]])}}
      >>> stats = jax.jit(jf.gradient_stats, static_argnames="stacked")(grads, stacked="blocks")
      >>> stats.names
      ('blocks/00/kernel', 'blocks/01/kernel', 'readout/kernel')
      >>> jf.GradientStatus.name_of(stats.status).tolist()
      ['vanishing', 'ok', 'nonfinite']
      >>> stats.layer_names, stats.layer_norms[:2].tolist()
      (('blocks/00', 'blocks/01', 'readout'), [2e-09, 2.0])

      A list of layers is not a stack: each leaf is one leaf, one layer per list entry.

      >>> stats = jf.gradient_stats({"blocks": [{"kernel": jnp.ones((16, 16))}] * 2})
      >>> stats.names, stats.norm.tolist(), stats.layer_names
      (('blocks/0/kernel', 'blocks/1/kernel'), [16.0, 16.0], ('blocks/0', 'blocks/1'))
    """
    _check_thresholds(vanishing, exploding)
    layout, leaves = _plan(grads, _as_names(stacked), group_by)
    if not leaves:
        raise ValueError(
            f"grads has no floating-point leaves to measure (skipped: {list(layout.frozen)})"
        )
    w_leaves = None if params is None else _param_leaves(params, layout, leaves)
    return _gradient_stats(leaves, w_leaves, layout, float(vanishing), float(exploding))


# Jitted even when called eagerly: op-by-op dispatch would compile every small reduction of every
# leaf separately (seconds on the first call); under an outer jit this is simply inlined. The
# layout (names, groups, stacks) is static, worked out on the host from the tree's structure.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _gradient_stats(leaves, w_leaves, layout, vanishing, exploding) -> GradientStats:
    rows = layout.rows
    blocks = [_rows_of(leaf, s) for leaf, s in zip(leaves, layout.split, strict=True)]
    # The fused stats come in the blocks' row order; one static gather puts them in ``rows``'.
    offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
    order = np.array([offsets[r.leaf] + (r.layer or 0) for r in rows])
    norm, mean, max_abs, nonfinite = (a[order] for a in _grouped_row_stats(blocks))

    if w_leaves is None:
        ratio = jnp.full_like(norm, jnp.nan)
    else:
        w_blocks = [_rows_of(w, s) for w, s in zip(w_leaves, layout.split, strict=True)]
        w_norm = _grouped_row_stats(w_blocks, means=False)[0][order]
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

    layer_index = {group: i for i, group in enumerate(dict.fromkeys(r.group for r in rows))}
    layer_names = tuple(layer_index)
    layer_of = tuple(layer_index[r.group] for r in rows)
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
        frozen=layout.frozen,
        thresholds=(vanishing, exploding),
    )

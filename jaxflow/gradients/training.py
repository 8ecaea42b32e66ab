"""Training with optax in one compiled loop: clipping recorded, the first non-finite step caught.

See :mod:`jaxflow.gradients` for the conventions (losses, statistics).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from typing import Any, NamedTuple

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow._checks import model_input, module_kind, positive_int
from jaxflow.gradients.stats import (
    GradientStats,
    GradientStatus,
    _as_names,
    _check_thresholds,
    _flatten,
    _grouper,
    _key_name,
    _nonfinite_rows,
    _plan,
    gradient_stats,
)
from jaxflow.jacobians import get_loss
from jaxflow.models import Network

__all__ = ["TrainResult", "train"]


class TrainResult(NamedTuple):
    """What :func:`train` recorded. T is the number of steps recorded: ``steps``; or the first
    non-finite step + 1 when training stopped there; or the number of batches an iterator
    yielded, if fewer.

    Attributes:
      variables: the final variables (model form) or parameters (loss-function form), always
        finite: after the last update whose loss, gradient, resulting parameters and state were
        all finite.
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
        made non-finite and ``"state:<name>"`` for the leaves of the new state that were.
      clip_norm: the ``clip_by_global_norm`` threshold used, or ``None``.
      clip_value: the ``clip`` (by value) threshold used, or ``None``.
      params: the final parameters (``variables["params"]`` in the model form).
      state: the final mutable state: what ``loss_fn`` returned last (``None`` without
        ``state=``); in the model form, the variables' other collections (``batch_stats``).

    Example:
      See :func:`train`; the fields:

      >>> import jaxflow as jf
      >>> jf.TrainResult._fields[2:5]
      ('loss', 'grad_norm', 'clipped')
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
    params: Any = None
    state: Any = None

    @property
    def finite(self) -> bool:
        """Whether every step was finite."""
        return self.first_nonfinite_step is None


def _clipper(clip_norm, clip_value):
    parts = []
    for arg, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not 0 < value < math.inf
        ):
            raise ValueError(
                f"{arg}={value!r} is not allowed; it must be a finite number > 0 or None"
            )
    if clip_value is not None:
        parts.append(optax.clip(clip_value))
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    return optax.chain(*parts) if parts else optax.identity()


@dataclasses.dataclass(frozen=True)
class _ModelObjective:
    """A jaxflow/linen model's batch loss as a stateful loss function (hashable, so a static
    argument of the compiled loop): (params, rest, (x, y), rng) -> (mean loss, updated rest)."""

    model: Any
    loss_fn: Any
    train_mode: bool

    def __call__(self, params, rest, batch, rng):
        x, y = batch
        variables = {"params": params, **rest}
        try:
            if self.train_mode:
                prediction, updated = self.model.apply(variables, x, train=True, mutable=list(rest))
                rest = {**rest, **updated}
            else:
                prediction = self.model.apply(variables, x)
        except TypeError as error:
            if "required" not in str(error):
                raise
            raise TypeError(
                f"the model form runs model.apply(variables, x), but the model needs more "
                f"arguments ({str(error).splitlines()[0]}); give them defaults, or train it in "
                "the loss-function form (jf.train(loss_fn, params, data, optimizer, steps), "
                "see jf.train's docs)"
            ) from None
        except flax.errors.InvalidRngError as error:
            raise TypeError(
                f"the model form runs model.apply(variables, x) without random numbers, but the "
                f"model draws some ({str(error).splitlines()[0]}); make its Dropout "
                "deterministic by default, or train it in the loss-function form with key= "
                "(jf.train(loss_fn, params, data, optimizer, steps, key=...), see jf.train's docs)"
            ) from None
        return jnp.mean(jax.vmap(self.loss_fn)(prediction, y)), rest


@dataclasses.dataclass(frozen=True)
class _LossObjective:
    """A user's ``loss_fn`` in the stateful form (params, state, batch, rng) -> (loss, state),
    its output checked while it is traced."""

    loss_fn: Any
    stateful: bool

    def __call__(self, params, state, batch, rng):
        name = getattr(self.loss_fn, "__name__", "loss_fn")
        try:
            return self._call(name, params, state, batch, rng)
        except Exception as error:
            if rng is None and re.search(r"rng|prng|key", str(error), re.IGNORECASE):
                error.add_note(
                    f"(jf.train called {name} with rng=None, as no key= was given; pass "
                    "key=jax.random.key(0) if the model draws random numbers, e.g. for dropout)"
                )
            raise

    def _call(self, name, params, state, batch, rng):
        if self.stateful:
            out = self.loss_fn(params, state, batch, rng)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(
                    f"loss_fn {name} returned a {type(out).__name__}; with state= it must return "
                    "a pair (loss, new_state)"
                )
            loss, new_state = out
            if jax.tree.structure(new_state) != jax.tree.structure(state):
                raise ValueError(
                    f"loss_fn {name} returned a new_state of structure "
                    f"{jax.tree.structure(new_state)}; it must have the structure of state= "
                    f"({jax.tree.structure(state)})"
                )
        else:
            loss, new_state = self.loss_fn(params, batch, rng), state
            if isinstance(loss, (tuple, list)):
                raise TypeError(
                    f"loss_fn {name} returned a {type(loss).__name__}; without state= it must "
                    "return the loss, a scalar (for mutable state such as BatchNorm statistics "
                    "pass state= and return (loss, new_state))"
                )
        shape, dtype = jnp.shape(loss), getattr(loss, "dtype", None)
        if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"loss_fn {name} returned an array of shape {shape} and dtype {dtype}; it must "
                "return a floating-point scalar (e.g. the mean loss over the batch)"
            )
        return loss, new_state


def _step_fn(objective, optimizer, clip, thresholds, stacked, group_by):
    """One training step: (params, state, opt_state, batch, rng) -> (new carry, records).

    The one step body of both loops: the compiled one over in-memory data and the Python one
    over an iterator. The new carry is the old one when anything came out non-finite.
    """
    clipper = _clipper(*clip)
    vanishing, exploding = thresholds
    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(params, state, opt_state, batch, rng):
        (loss, new_state), grads = grad_fn(params, state, batch, rng)
        stats = gradient_stats(
            grads,
            params,
            vanishing=vanishing,
            exploding=exploding,
            stacked=stacked,
            group_by=group_by,
        )
        clipped_grads, _ = clipper.update(grads, clipper.init(params))
        changed = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), clipped_grads, grads))
        fired = jnp.any(jnp.stack(changed)) if changed else jnp.array(False)
        extra = {}
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            # optax.lbfgs's line search, reduce_on_plateau: the loss, its gradient and the loss
            # as a function of the parameters at this step's batch (ignored by the others).
            extra = dict(
                value=loss,
                grad=clipped_grads,
                value_fn=lambda p: objective(p, state, batch, rng)[0],
            )
        updates, new_opt_state = optimizer.update(clipped_grads, opt_state, params, **extra)
        new_params = optax.apply_updates(params, updates)
        _, bad_params = _nonfinite_rows(new_params, stacked)
        bad_state = jnp.stack(
            [jnp.array(False)]
            + [~jnp.all(jnp.isfinite(leaf)) for _, leaf in _state_leaves(new_state)]
        )[1:]
        finite = (
            jnp.isfinite(loss)
            & jnp.all(stats.status != GradientStatus.NONFINITE)
            & ~jnp.any(bad_params)
            & ~jnp.any(bad_state)
        )

        # Keep the last finite state: the bad step is recorded, its update is not applied.
        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        carry = (keep(new_params, params), keep(new_state, state), keep(new_opt_state, opt_state))
        record = {
            "loss": loss,
            "clipped": fired & finite,
            "stats": stats,
            "finite": finite,
            "bad_params": bad_params,
            "bad_state": bad_state,
        }
        return carry, record

    return step


def _state_leaves(state):
    """[(name, leaf)] of the floating-point leaves of the mutable state, boxes read through."""
    return [
        ("/".join(parts) or "(root)", leaf)
        for parts, _, leaf in _flatten(state)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]


def _rng(key, t):
    return None if key is None else jax.random.fold_in(key, t)


_STATIC = ("objective", "optimizer", "clip", "thresholds", "stacked", "group_by")


@functools.partial(jax.jit, static_argnames=_STATIC + ("steps", "batch_size"))
def _train_loop(
    params,
    state,
    opt_state,
    data,
    key,
    *,
    objective,
    optimizer,
    steps,
    batch_size,
    clip,
    thresholds,
    stacked,
    group_by,
):
    """Up to ``steps`` steps in one ``lax.while_loop``; step t uses the ``batch_size`` examples
    of ``data`` (leading axis N) starting at (t mod ⌊N/batch_size⌋)·batch_size."""
    step = _step_fn(objective, optimizer, clip, thresholds, stacked, group_by)
    batches = jax.tree.leaves(data)[0].shape[0] // batch_size

    def batch_at(t):
        start = (t % batches) * batch_size
        return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, batch_size), data)

    t0 = jnp.array(0)
    _, record0 = jax.eval_shape(step, params, state, opt_state, batch_at(t0), _rng(key, t0))
    records = jax.tree.map(lambda s: jnp.zeros((steps,) + s.shape, s.dtype), record0)
    records["loss"] = jnp.full((steps,), jnp.nan, record0["loss"].dtype)

    def body(carry):
        t, params, state, opt_state, records = carry
        (params, state, opt_state), record = step(
            params, state, opt_state, batch_at(t), _rng(key, t)
        )
        records = jax.tree.map(lambda r, s: r.at[t].set(s), records, record)
        return t + 1, params, state, opt_state, records

    def running(carry):
        t, *_, records = carry
        return (t < steps) & ((t == 0) | records["finite"][jnp.maximum(t - 1, 0)])

    carry = (t0, params, state, opt_state, records)
    return jax.lax.while_loop(running, body, carry)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _train_step(
    params,
    state,
    opt_state,
    batch,
    key,
    t,
    *,
    objective,
    optimizer,
    clip,
    thresholds,
    stacked,
    group_by,
):
    """One step of :func:`_step_fn`, compiled once for a batch shape (the iterator loop)."""
    step = _step_fn(objective, optimizer, clip, thresholds, stacked, group_by)
    return step(params, state, opt_state, batch, _rng(key, t))


def _train_data(model, data):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be a pair (x, y) of arrays")
    x, y = (jnp.asarray(a) for a in data)
    if isinstance(model, Network):
        model_input("data x", x, model.input_dim)
    if x.ndim == 2 and y.ndim == 2:
        x, y = x[None], y[None]
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"data has x {x.shape}, y {y.shape}; use one batch x (B, d), y (B, out), reused every "
            "step, or batches x (N, B, d), y (N, B, out), step t using batch t mod N"
        )
    return x, y


_RECIPES = {
    "nnx": (
        "an NNX",
        "split it and pass a loss function: graphdef, params, rest = nnx.split(model, nnx.Param, "
        "...); loss_fn(params, rest, batch, rng) makes model = nnx.merge(graphdef, params, "
        "rest, copy=True) and returns (loss, nnx.state(model, nnx.Not(nnx.Param))); "
        "jf.train(loss_fn, params, data, optimizer, steps, state=rest) (see jf.train's docs)",
    ),
    "equinox": (
        "an Equinox",
        "partition it and pass a loss function: params, static = eqx.partition(model, "
        "eqx.is_inexact_array); loss_fn(params, batch, rng) calls eqx.combine(params, static); "
        "jf.train(loss_fn, params, data, optimizer, steps) (see jf.train's docs)",
    ),
}


def _in_memory(data, batch_size):
    """(data with jnp leaves, batch_size), checked: a pytree of arrays sharing axis 0's length."""
    leaves, treedef = jax.tree.flatten(data)
    if not leaves:
        raise ValueError("data has no arrays; pass arrays, e.g. (x, y), or an iterator of batches")
    names = [
        "/".join(_key_name(k)[0] for k in path) or "(root)"
        for path, _ in jax.tree_util.tree_flatten_with_path(data)[0]
    ]
    for name, leaf in zip(names, leaves, strict=True):
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise TypeError(
                f"data leaf {name!r} is a {type(leaf).__name__}; in-memory data is a pytree of "
                "arrays batched along axis 0 (e.g. (x, y)); for anything else pass an iterator "
                "of batches"
            )
    shapes = {name: tuple(leaf.shape) for name, leaf in zip(names, leaves, strict=True)}
    if any(len(s) == 0 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
        raise ValueError(
            f"data has shapes {shapes}; in-memory arrays are batched along axis 0, so every "
            "array needs axis 0 of one common length N (the number of examples)"
        )
    n = leaves[0].shape[0]
    if batch_size is None:
        batch_size = n
    batch_size = positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is not allowed; data holds only N={n} examples "
            "(axis 0), so it must be <= N"
        )
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in leaves]), batch_size


def _check_differentiable(params):
    """Every array leaf of ``params`` is differentiated and updated: refuse an integer or boolean
    one here, by name, rather than inside ``jax.grad``."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            continue
        if not jnp.issubdtype(dtype, jnp.inexact) and not jnp.issubdtype(dtype, jax.dtypes.float0):
            raise TypeError(
                f"params leaf {jax.tree_util.keystr(path)!r} is an array of {dtype}; jf.train "
                "differentiates and updates every array in params, so it holds floating-point "
                "arrays only: partition an Equinox model with eqx.is_inexact_array (not "
                "eqx.is_array), or keep integer arrays in the loss function's closure or state="
            )


def _list_of_batches(data) -> bool:
    """A list of two or more containers (tuples, dicts, lists) with one tree structure and the
    same leaf shapes, as ``[(x1, y1), (x2, y2)]`` (the last may be smaller): batches to iterate
    over. ``[(xa, xb), (ya, yb)]``, inputs and targets of other shapes, stays one pytree of
    in-memory arrays, as does a list of arrays ``[x, y]``."""
    if not isinstance(data, list) or len(data) < 2:
        return False
    if not all(isinstance(b, (tuple, list, dict)) for b in data):
        return False
    signatures = [_signature(b) for b in data]
    if len({s[0] for s in signatures}) != 1:
        return False
    full = signatures[:-1] if len(signatures) > 2 else signatures
    return len({s[1] for s in full}) == 1


def _signature(batch):
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple((tuple(np.shape(a)), str(getattr(a, "dtype", type(a)))) for a in leaves)


def _iterate(data, steps, run_step):
    """The Python loop over an iterator or iterable: up to ``steps`` batches, one compiled step
    each; an iterable (not an iterator) restarts when it runs out, an iterator ends the run."""
    iterator = iter(data)
    restarts = iterator is not data
    records, first = [], None
    for t in range(steps):
        batch = next(iterator, _END)
        if batch is _END and restarts and t > 0:
            iterator = iter(data)
            batch = next(iterator, _END)
        if batch is _END:
            if t == 0:
                raise ValueError("data yielded no batches; pass a non-empty iterator of batches")
            break
        signature = _signature(batch)
        if first is None:
            first = signature
        elif signature != first:
            raise ValueError(
                f"data's batch {t} has structure {signature[0]} and shapes {signature[1]}, but "
                f"batch 0 had {first[0]}, {first[1]}; every batch needs the same structure and "
                "shapes (one compiled step serves them all): drop or pad a last partial batch"
            )
        record = run_step(batch, t)
        records.append(record)
        if not bool(record["finite"]):
            break
    return jax.tree.map(lambda *r: jnp.stack(r), *records)


_END = object()


def train(
    model,
    variables,
    data,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    loss: Any = "mse",
    state: Any = None,
    key: jax.Array | None = None,
    batch_size: int | None = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    opt_state=None,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    stacked: Any = "auto",
    group_by: Any = None,
) -> TrainResult:
    """Trains any model with optax, recording gradient health and stopping on NaN/Inf.

    Two forms. **Loss function** (any model: linen, NNX, Equinox, plain functions)::

        jf.train(loss_fn, params, data, optimizer, steps, key=..., state=..., batch_size=...)

    with ``loss_fn(params, batch, rng) -> loss``, or, when ``state=`` is given (mutable state
    such as BatchNorm statistics), ``loss_fn(params, state, batch, rng) -> (loss, new_state)``:
    the gradient is taken with respect to ``params`` only, and ``new_state`` (same structure as
    ``state``) is the next step's ``state``. ``loss`` is a floating-point scalar (e.g. the batch
    mean); ``rng`` is step t's key ``jax.random.fold_in(key, t)`` (for dropout), or ``None``
    without ``key=``. **Model** (unchanged): ``jf.train(model, variables, (x, y), optimizer,
    steps)`` with a jaxflow or linen model and a per-example ``loss``.

    Each step computes the loss and its gradient, records the loss, the global gradient norm
    *before* clipping, the per-layer norms (:func:`gradient_stats`, layers by ``group_by``) and
    whether clipping changed the gradient, then clips (``optax.clip(clip_value)``, then
    ``optax.clip_by_global_norm(clip_norm)``) and applies ``optimizer``. It stops at the first
    step whose loss, gradient, updated parameters or new state are not finite, records that
    step, does not apply its update, and names the offending leaves — never a silent NaN run.

    Data and compilation: in-memory arrays (a pytree of arrays sharing axis 0's length N, e.g.
    ``(x, y)``) run as one ``lax.while_loop`` under ``jit``; step t uses the ``batch_size``
    examples starting at (t mod ⌊N/batch_size⌋)·batch_size, in order (shuffle beforehand; the
    last N mod batch_size examples are unused), or all N without ``batch_size``. An iterator (or
    any other iterable, e.g. a data loader, or a list of ``(x, y)`` batches of one shape) of
    batches — any pytree, the same shapes every time —
    runs one jitted step per batch in a Python loop, compiled once per batch shape; an iterable
    restarts when it runs out (epochs), an iterator ends the run early. Both recompile only for a
    new ``loss_fn``/model or optimizer object (``optax.sgd(0.1)`` builds new functions on every
    call: keep one; define ``loss_fn`` once, not in a loop), ``steps`` (in-memory), data shapes
    or thresholds.

    Recipes (the frameworks' own split/merge and filter):

    * **Flax NNX** — parameters are the ``nnx.Param`` state, the rest (BatchNorm statistics, RNG
      counts) is ``state``; merge a copy inside the loss (``copy=True``: the traced state
      must not be mutated in place)::

          graphdef, params, rest = nnx.split(model, nnx.Param, ...)

          def loss_fn(params, rest, batch, rng):
              model = nnx.merge(graphdef, params, rest, copy=True)
              model.train()  # or set the modules' use_running_average / deterministic
              loss = ...  # model(batch[0], ...) against batch[1]
              return loss, nnx.state(model, nnx.Not(nnx.Param))

          result = jf.train(loss_fn, params, data, optimizer, steps, state=rest, key=key)
          nnx.update(model, result.params, result.state)

    * **Equinox** — the inexact arrays are the parameters, the rest is static::

          params, static = eqx.partition(model, eqx.is_inexact_array)

          def loss_fn(params, batch, rng):
              model = eqx.combine(params, static)
              x, y = batch
              return jnp.mean((jax.vmap(model)(x) - y) ** 2)

          result = jf.train(loss_fn, params, (x, y), optimizer, steps, batch_size=32)
          model = eqx.combine(result.params, static)

    * **Flax linen** with dropout and BatchNorm: ``params = variables["params"]``,
      ``state=variables["batch_stats"]``, and the loss calls ``model.apply({"params": params,
      "batch_stats": state}, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng})``
      and returns ``(loss, updated["batch_stats"])``.

    Args:
      model: a loss function (above); or a jaxflow model, or any flax linen module whose
        ``model.apply(variables, x)`` is the prediction (a jaxflow model with ``batch_stats``
        trains BatchNorm in training mode; another linen module's variables may hold only
        ``params``, since jaxflow cannot know how it switches to training mode: use the
        loss-function form for BatchNorm or dropout). An NNX or Equinox module is refused with the recipe.
      variables: the parameters ``params`` (any pytree; NNX ``State`` and Equinox partitions
        included) for a loss function; the variables (``{"params": ..., ...}``) for a model.
      data: for a loss function, in-memory arrays or an iterator/iterable of batches (above). For
        a model, ``(x, y)``: one batch x (B, d), y (B, out) reused every step, or N batches
        x (N, B, d), y (N, B, out), step t using batch t mod N.
      optimizer: an ``optax.GradientTransformation`` (without clipping: pass it here instead, so it
        is recorded). One that takes extra arguments (``optax.lbfgs``,
        ``optax.contrib.reduce_on_plateau``) is given the step's ``value`` (the loss), ``grad``
        (the clipped gradient) and ``value_fn`` (the loss of other parameters on the same batch
        and key).
      steps: number of steps ≥ 1.
      loss: model form only: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``; the
        batch loss is their mean.
      state: loss-function form only: the initial mutable state threaded through ``loss_fn``
        (see above), or ``None``.
      key: loss-function form only: a PRNG key; step t's ``rng`` is ``fold_in(key, t)``, so it
        does not depend on ``steps`` or the data source.
      batch_size: loss-function form with in-memory arrays only: examples per step.
      clip_norm: clip by global norm at this threshold (``optax.clip_by_global_norm``), or ``None``.
      clip_value: clip every entry to ±this (``optax.clip``), or ``None``.
      opt_state: the optimizer state to resume from (default ``optimizer.init(params)``).
      vanishing, exploding, stacked, group_by: passed to :func:`gradient_stats` (``layer_norms``
        and ``layer_names`` follow ``group_by``).

    Returns:
      A :class:`TrainResult`; ``params`` and ``state`` are the final parameters and state
      (``variables`` is ``params`` in the loss-function form).

    Raises:
      ValueError: for ``steps`` < 1, bad data shapes or ``batch_size``, a model's variables with
        collections besides ``params`` (other than a jaxflow model's), an empty iterator, a
        batch whose shapes differ from the first, or a ``loss_fn`` that returns a non-scalar
        (or a ``new_state`` of another structure); bad clip thresholds.
      TypeError: for an NNX or Equinox module passed as ``model`` (with the recipe), a
        ``loss_fn`` returning a tuple without ``state=`` or not a pair with it, options of one
        form given to the other, or an optimizer that is not an optax transformation.

    Example:
      A loss function on in-memory arrays, 2 examples per step:

      >>> import jax, jax.numpy as jnp, optax, jaxflow as jf
      >>> def loss_fn(params, batch, rng):
      ...     x, y = batch
      ...     return jnp.mean((jnp.tanh(x @ params["hidden"]) @ params["out"] - y) ** 2)
      >>> params = {"hidden": 0.5 * jnp.ones((3, 4)), "out": 0.1 * jnp.ones((4, 1))}
      >>> x = jax.random.normal(jax.random.key(0), (8, 3))
      >>> result = jf.train(loss_fn, params, (x, jnp.sin(x[:, :1])), optax.adam(0.05), 40,
      ...                   batch_size=2)
      >>> result.loss.shape, result.finite, result.layer_names
      ((40,), True, ('hidden', 'out'))
      >>> bool(result.loss[-8:].mean() < 0.2 * result.loss[:8].mean())
      True

      A jaxflow model:

      >>> model = jf.mlp(2, 2, activation="tanh")
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> readout = {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}
      >>> variables = {"params": {"blocks": {"Dense_0": blocks}, "readout": readout}}
      >>> x, y = jnp.eye(2), jnp.array([[0.5], [-0.5]])
      >>> result = jf.train(model, variables, (x, y), optax.sgd(0.1), 20, clip_norm=0.5)
      >>> result.loss.shape, result.finite, bool(result.loss[-1] < 1e-3 * result.loss[0])
      ((20,), True, True)
      >>> result.layer_names, result.clip_fraction  # clipped while ‖g‖ > 0.5
      (('blocks/00', 'blocks/01', 'readout'), 0.45)
    """
    steps = positive_int("steps", steps)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer is a {type(optimizer).__name__}; pass an optax.GradientTransformation"
        )
    _check_thresholds(vanishing, exploding)
    _clipper(clip_norm, clip_value)  # validates the thresholds here, not inside jit
    stacked = _as_names(stacked)
    _grouper(group_by)  # validated here, not inside jit
    kind = module_kind(model)
    if kind in _RECIPES:
        raise TypeError(f"model is {_RECIPES[kind][0]} module; {_RECIPES[kind][1]}")
    is_model = kind == "linen" or (hasattr(model, "apply") and hasattr(model, "init"))
    if is_model:
        given = [
            n
            for n, v in (("state", state), ("key", key), ("batch_size", batch_size))
            if v is not None
        ]
        if given:
            raise TypeError(
                f"{', '.join(given)}= belong to the loss-function form; with a model pass "
                "(x, y) batches, or write loss_fn(params, state, batch, rng) and pass it instead"
            )
        if (
            not (isinstance(variables, dict) or hasattr(variables, "items"))
            or "params" not in variables
        ):
            raise ValueError(
                "variables must be the model's variables, a mapping with a 'params' entry"
            )
        xs, ys = _train_data(model, data)
        if isinstance(loss, str):  # the built-in losses compare y with the prediction elementwise
            try:
                predicted = jax.eval_shape(model.apply, variables, xs[0]).shape
            except Exception:  # noqa: BLE001 — the step itself will say what the model needs
                predicted = None
            if predicted is not None and predicted != ys.shape[1:]:
                raise ValueError(
                    f"data y has batches of shape {ys.shape[1:]}; the model predicts {predicted} "
                    f"for a batch x of shape {xs.shape[1:]}, and loss={loss!r} needs y of that "
                    "shape (no broadcasting)"
                )
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        if state and not isinstance(model, Network):
            # Only jaxflow's models are known to take train=True; anything else would train in
            # inference mode (running BatchNorm statistics never updated, dropout off), silently.
            raise ValueError(
                f"variables holds collections besides 'params' ({', '.join(map(str, state))}), "
                f"and jf.train cannot know how your {type(model).__name__} switches to training "
                "mode; use the loss-function form: loss_fn(params, state, batch, rng) calling "
                "model.apply({'params': params, **state}, x, train=True, mutable=list(state), "
                "rngs={'dropout': rng}) and returning (loss, updated), with "
                "jf.train(loss_fn, variables['params'], data, optimizer, steps, "
                "state={k: v for k, v in variables.items() if k != 'params'}, key=key)"
            )
        train_mode = isinstance(model, Network) and "batch_stats" in state
        objective = _ModelObjective(model, get_loss(loss), train_mode)
        # N batches of B as N·B examples, B per step: step t uses batch t mod N.
        batch_size = xs.shape[1]
        data = (xs.reshape((-1,) + xs.shape[2:]), ys.reshape((-1,) + ys.shape[2:]))
    elif callable(model):
        if not (isinstance(loss, str) and loss == "mse"):
            raise TypeError(
                "loss= belongs to the model form; a loss function computes its own loss"
            )
        params = variables
        _check_differentiable(params)
        objective = _LossObjective(model, stateful=state is not None)
    else:
        raise TypeError(
            f"model is a {type(model).__name__}; pass a loss function loss_fn(params, batch, rng)"
            " (or loss_fn(params, state, batch, rng) with state=), or a jaxflow/linen model"
        )
    if opt_state is None:
        opt_state = optimizer.init(params)
    static = dict(
        objective=objective,
        optimizer=optimizer,
        clip=(clip_norm, clip_value),
        thresholds=(float(vanishing), float(exploding)),
        stacked=stacked,
        group_by=group_by,
    )
    in_memory = not _list_of_batches(data) and (
        is_model or isinstance(data, (tuple, list, dict)) or hasattr(data, "shape")
    )
    if in_memory and not hasattr(data, "__next__"):
        data, batch_size = _in_memory(data, batch_size)
        t, params, state, opt_state, records = _train_loop(
            params, state, opt_state, data, key, steps=steps, batch_size=batch_size, **static
        )
        records = jax.tree.map(lambda a: a[: int(t)], records)
    elif hasattr(data, "__iter__") or hasattr(data, "__next__"):
        if batch_size is not None:
            raise ValueError(
                f"batch_size={batch_size!r} is not allowed with batches (an iterator, or a list "
                "of (x, y) batches: each is one step's batch); batch_size splits in-memory "
                "arrays, given as a tuple or dict such as (x, y)"
            )
        carry = [params, state, opt_state]

        def run_step(batch, t):
            carry[:], record = _train_step(*carry, batch, key, t, **static)
            return record

        records = _iterate(data, steps, run_step)
        params, state, opt_state = carry
    else:
        raise TypeError(
            f"data is a {type(data).__name__}; pass in-memory arrays (e.g. (x, y)) or an "
            "iterator/iterable of batches"
        )
    return _result(records, params, state, opt_state, (clip_norm, clip_value), stacked, is_model)


def _result(records, params, state, opt_state, clip, stacked, is_model) -> TrainResult:
    stats = records["stats"]
    clipped = np.asarray(records["clipped"])
    recorded = len(clipped)
    first_bad, nonfinite, steps_run = None, (), recorded
    if not bool(records["finite"][-1]):
        first_bad = steps_run = recorded - 1
        last = jax.tree.map(lambda a: a[-1], stats)
        loss_bad = () if np.isfinite(records["loss"][-1]) else ("loss",)
        nonfinite = loss_bad + last.leaves_with("nonfinite")
        if not nonfinite:  # a finite gradient whose update overflowed the parameters or state
            param_names = [row.name for row in _plan(params, stacked)[0].rows]
            state_names = [name for name, _ in _state_leaves(state)]
            flagged = (
                ("param", param_names, records["bad_params"][-1]),
                ("state", state_names, records["bad_state"][-1]),
            )
            nonfinite = tuple(
                f"{kind}:{n}"
                for kind, names, flags in flagged
                for n, b in zip(names, np.asarray(flags), strict=True)
                if b
            )
    return TrainResult(
        variables={"params": params, **state} if is_model else params,
        opt_state=opt_state,
        loss=np.asarray(records["loss"]),
        grad_norm=np.asarray(stats.global_norm),
        clipped=clipped,
        layer_norms=np.asarray(stats.layer_norms),
        layer_names=stats.layer_names,
        stats=stats,
        steps_run=steps_run,
        clip_fraction=float(clipped[:steps_run].mean()) if steps_run else 0.0,
        first_nonfinite_step=first_bad,
        nonfinite=nonfinite,
        clip_norm=clip[0],
        clip_value=clip[1],
        params=params,
        state=state,
    )

"""Training with optax in one compiled loop: clipping recorded, the first non-finite step caught.

See :mod:`jaxflow.gradients` for the conventions (losses, statistics).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow._checks import positive_int
from jaxflow.gradients.layers import _loss
from jaxflow.gradients.stats import (
    GradientStats,
    GradientStatus,
    _as_names,
    _check_thresholds,
    _grouper,
    _nonfinite_rows,
    _plan,
    gradient_stats,
)
from jaxflow.models import Network, _check_input

__all__ = ["TrainResult", "train"]


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
    static_argnames=(
        "model",
        "optimizer",
        "steps",
        "loss_fn",
        "clip",
        "thresholds",
        "stacked",
        "group_by",
    ),
)
def _train_loop(
    variables,
    opt_state,
    xs,
    ys,
    *,
    model,
    optimizer,
    steps,
    loss_fn,
    clip,
    thresholds,
    stacked,
    group_by,
):
    clip_norm, clip_value = clip
    clipper = _clipper(clip_norm, clip_value)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    train_mode = isinstance(model, Network) and "batch_stats" in rest
    objective = jax.value_and_grad(_batch_loss(model, loss_fn, train_mode), has_aux=True)
    vanishing, exploding = thresholds

    def measure(params, grads):
        return gradient_stats(
            grads,
            params,
            vanishing=vanishing,
            exploding=exploding,
            stacked=stacked,
            group_by=group_by,
        )

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
        finite = (
            jnp.isfinite(loss)
            & jnp.all(stats.status != GradientStatus.NONFINITE)
            & ~jnp.any(bad_values)
        )
        for leaf in jax.tree.leaves(new_rest):  # BatchNorm statistics updated by this step
            finite &= jnp.all(jnp.isfinite(leaf))

        # Keep the last finite state: the bad step is recorded, its update is not applied.
        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        records = {
            "loss": records["loss"].at[t].set(loss),
            "clipped": records["clipped"].at[t].set(fired & finite),
            "stats": jax.tree.map(lambda r, s: r.at[t].set(s), records["stats"], stats),
        }
        return (
            t + 1,
            keep(new_params, params),
            keep(new_rest, rest),
            keep(new_opt_state, opt_state),
            records,
            ~finite,
            bad_values,
        )

    def running(carry):
        t, *_, bad, _ = carry
        return (t < steps) & ~bad

    carry = (jnp.array(0), params, rest, opt_state, records, jnp.array(False), bad_values)
    t, params, rest, opt_state, records, bad, bad_values = jax.lax.while_loop(running, step, carry)
    return t, {"params": params, **rest}, opt_state, records, bad, bad_values


def _train_data(model, data):
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
    group_by: Any = None,
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
      model: a jaxflow model (or any flax module whose ``model.apply(variables, x)`` is the
        prediction); a jaxflow model with ``batch_stats`` trains BatchNorm in training mode.
      variables: its variables (``{"params": ..., ...}``).
      data: ``(x, y)``: one batch x (B, d), y (B, out) reused every step, or N batches
        x (N, B, d), y (N, B, out), step t using batch t mod N.
      optimizer: an ``optax.GradientTransformation`` (without clipping: pass it here instead, so it
        is recorded).
      steps: number of steps ≥ 1.
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``; the batch loss is their
        mean.
      clip_norm: clip by global norm at this threshold (``optax.clip_by_global_norm``), or ``None``.
      clip_value: clip every entry to ±this (``optax.clip``), or ``None``.
      opt_state: the optimizer state to resume from (default ``optimizer.init(params)``).
      vanishing, exploding, stacked, group_by: passed to :func:`gradient_stats` (``layer_norms``
        and ``layer_names`` follow ``group_by``).

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError / TypeError: for bad data shapes, ``steps`` or clip thresholds.

    Example:
      >>> import jax.numpy as jnp, optax, jaxflow as jf
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
    if (
        not (isinstance(variables, dict) or hasattr(variables, "items"))
        or "params" not in variables
    ):
        raise ValueError("variables must be the model's variables, a mapping with a 'params' entry")
    _check_thresholds(vanishing, exploding)
    _clipper(clip_norm, clip_value)  # validates the thresholds here, not inside jit
    xs, ys = _train_data(model, data)
    stacked = tuple(sorted(_as_names(stacked)))
    _grouper(group_by)  # validated here, not inside jit
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
        group_by=group_by,
    )
    recorded = int(t)
    stats = jax.tree.map(lambda a: a[:recorded], records["stats"])
    clipped = np.asarray(records["clipped"][:recorded])
    first_bad, nonfinite = None, ()
    steps_run = recorded
    if bool(bad):
        first_bad = steps_run = recorded - 1
        last = jax.tree.map(lambda a: a[-1], stats)
        param_names = [row.name for row in _plan(final["params"], frozenset(stacked))[0].rows]
        loss_bad = () if np.isfinite(records["loss"][recorded - 1]) else ("loss",)
        nonfinite = loss_bad + last.leaves_with("nonfinite")
        if not nonfinite:  # a finite gradient whose update overflowed the parameters
            nonfinite = tuple(
                f"param:{n}" for n, b in zip(param_names, np.asarray(bad_values), strict=True) if b
            )
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

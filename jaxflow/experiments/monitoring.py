"""Gradient monitoring: a deep network's per-parameter gradient table, and training with and
without clipping where gradients explode."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxflow import _platform

__all__ = ["ClippingComparison", "clipping_comparison", "deep_gradient_stats"]


def deep_gradient_stats(depth=20, width=64, activation="sigmoid", init="xavier", *, key, init_key):
    """:func:`jaxflow.gradient_stats` of an MLP's MSE gradient on one batch (jit-compiled).

    Args:
      depth: L.
      width: n; the input has width n and the output one unit.
      activation: an activation name.
      init: an init scheme name or ``(σ_w², σ_b²)``.
      key: draws the batch (32 inputs and targets).
      init_key: draws the weights.

    Returns:
      A :class:`jaxflow.GradientStats`, every scanned block split per layer.

    Example:
      >>> import jax
      >>> from jaxflow.experiments.monitoring import deep_gradient_stats
      >>> stats = deep_gradient_stats(3, 4, key=jax.random.key(0), init_key=jax.random.key(1))
      >>> "blocks/00/Dense_0/kernel" in stats.names
      True
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    from jaxflow.gradients import gradient_stats
    from jaxflow.models import mlp

    model = mlp(depth, width, activation=activation, init=init)

    @jax.jit  # the draws and flax's scanned init too: eagerly they are a dozen small programs
    def stats(key, init_key):
        x, y = _batch(key, width)
        variables = model.init(init_key, x)

        def loss(params):
            return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

        return gradient_stats(jax.grad(loss)(variables["params"]), variables["params"])

    return stats(key, init_key)


def _batch(key, width):
    """The 32 inputs (width n) and targets (one unit) that ``key`` draws."""
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (32, width)), jax.random.normal(ky, (32, 1))


class ClippingComparison(NamedTuple):
    """One network trained twice from the same weights: without and with gradient clipping.

    Attributes:
      plain: the :class:`jaxflow.TrainResult` without clipping.
      clipped: the :class:`jaxflow.TrainResult` with ``optax.clip_by_global_norm(clip_norm)``.
      depth: L.
      width: n.
      steps: the steps asked for.
      clip_norm: the clipping threshold.

    Example:
      >>> from jaxflow.experiments.monitoring import ClippingComparison
      >>> ClippingComparison._fields[:2]
      ('plain', 'clipped')
    """

    plain: object
    clipped: object
    depth: int
    width: int
    steps: int
    clip_norm: float


def clipping_comparison(
    depth=10, width=16, steps=60, *, init=(3.0, 0.0), learning_rate=0.05, clip_norm=1.0, key,
    init_key,
) -> ClippingComparison:  # fmt: skip
    """A ReLU MLP above criticality (σ_w² = 3 > 2) trained by SGD with a large step, once as is
    and once with its global gradient norm clipped: the notes' exploding case.

    Args:
      depth: L.
      width: n; the input has width n and the output one unit.
      steps: SGD steps (training stops at the first non-finite one).
      init: the init scheme or ``(σ_w², σ_b²)``.
      learning_rate: the SGD step.
      clip_norm: the threshold of ``optax.clip_by_global_norm``.
      key: draws the batch (32 inputs and targets).
      init_key: draws the weights (the same for both runs).

    Returns:
      A :class:`ClippingComparison`.

    Example:
      >>> import jax
      >>> from jaxflow.experiments.monitoring import clipping_comparison
      >>> r = clipping_comparison(3, 4, 5, key=jax.random.key(0), init_key=jax.random.key(1))
      >>> r.clipped.finite
      True
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    import optax

    from jaxflow.gradients import train
    from jaxflow.models import mlp

    model = mlp(depth, width, activation="relu", init=init)

    @jax.jit  # one program for the draws and flax's scanned init (eagerly a dozen small ones)
    def drawn(key, init_key):
        x, y = _batch(key, width)
        return x, y, model.init(init_key, x)

    x, y, variables = drawn(key, init_key)
    optimizer = optax.sgd(learning_rate)
    plain = train(model, variables, (x, y), optimizer, steps)
    clipped = train(model, variables, (x, y), optimizer, steps, clip_norm=clip_norm)
    return ClippingComparison(plain, clipped, depth, width, steps, clip_norm)

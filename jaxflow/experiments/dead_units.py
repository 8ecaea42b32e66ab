"""Dead ReLU units at initialisation, measured and predicted from the arc-cosine kernel.

A ReLU unit is *dead* on a batch when its pre-activation is ≤ 0 for every input, so it passes no
gradient for any of them (the notes: "ReLU prevents saturation but can cause dead neurons"). For a
ReLU MLP with zero biases and W ~ N(0, σ_w²/n), the pre-activations of two inputs at layer l are,
at large width, jointly Gaussian with a correlation ρ_l that follows ReLU's arc-cosine kernel
(Cho & Saul 2009; the ReLU case of Poole et al. 2016's correlation map):

    ρ_{l+1} = (√(1 − ρ_l²) + (π − arccos ρ_l) ρ_l) / π,      ρ_1 = cos∠(x_a, x_b),

independently of σ_w². Sheppard's formula then gives the probability that a unit is off for both
inputs, P(z_a ≤ 0, z_b ≤ 0) = 1/4 + arcsin(ρ_l)/(2π): a quarter for orthogonal inputs, rising
towards a half as depth pulls the two inputs' representations together (ρ_l → 1).

The check (:meth:`DeadUnits.z_scores`, :meth:`DeadUnits.agrees`). The units of one layer are not
independent trials: they share the layer's input, whose correlation ρ̂_{l−1} fluctuates by
O(1/√n) from network to network, so a seed's fraction varies by
Var = E[p̂(1 − p̂)]/n + Var(p(ρ̂_{l−1})) — the binomial p(1 − p)/n times a design effect (measured
1.0–1.8 at n = 128–512). Seeds are the independent replicates: the standard error of the mean is
the seed-to-seed spread over √S, floored at the binomial √(p(1 − p)/(nS)), a lower bound on the
true one that keeps a handful of seeds from understating it. The theory passes when every layer
and the mean over layers (each seed's layer-average, over seeds) lie within 4 standard errors.
At depth 12, width 256 and 32 seeds that is ±0.006 per layer against a predicted rise of 0.098:
shifting the prediction by 20 % of its rise moves the layer-mean by 6–12 standard errors.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow import _platform
from jaxflow._checks import positive_int
from jaxflow.gradients import dead_unit_fraction
from jaxflow.models import mlp

__all__ = ["DeadUnits", "dead_relu_fraction", "relu_correlation_map"]

CHECK_SIGMAS = 4.0
"""Standard errors the measured fractions may stray from the prediction (per layer and for the
layer-mean): a false alarm for ~4e-4 of layers with 32 seeds (Student's t, 31 degrees of
freedom)."""


class DeadUnits(NamedTuple):
    """Per-layer dead-unit fractions for pairs of inputs, measured and predicted.

    Attributes:
      layers: (L,) l = 1…L.
      correlation: the input correlation ρ_1 = cos∠(x_a, x_b).
      predicted_correlation: (L,) ρ_l from the arc-cosine kernel.
      predicted: (L,) 1/4 + arcsin(ρ_l)/(2π), the predicted fraction of units dead on both inputs.
      measured: (S, L) the fraction measured in each of S seeds (fresh weights and inputs).
      mean: (L,) the mean over seeds.
      error: (L,) its standard error.
      width: n.

    Example:
      >>> from jaxflow.experiments import dead_relu_fraction
      >>> result = dead_relu_fraction(depth=3, width=16, seeds=2)
      >>> result.measured.shape, result.predicted.shape  # (seeds, layers), (layers,)
      ((2, 3), (3,))
    """

    layers: np.ndarray
    correlation: float
    predicted_correlation: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    mean: np.ndarray
    error: np.ndarray
    width: int

    def z_scores(self, predicted=None) -> tuple[np.ndarray, float]:
        """(measured − predicted)/s.e. per layer, and for the mean over layers (module docs).

        Args:
          predicted: (L,) the prediction to test (default: ``self.predicted``).

        Returns:
          ((L,) per-layer z, the layer-mean's z). Each standard error is the seeds' spread over
          √S, floored at the binomial √(p(1 − p)/(nS)).
        """
        predicted = self.predicted if predicted is None else np.asarray(predicted, np.float64)
        seeds = self.measured.shape[0]
        floor = np.sqrt(predicted * (1 - predicted) / (self.width * seeds))
        deviation = self.measured - predicted
        spread = deviation.std(axis=0, ddof=1) if seeds > 1 else np.zeros_like(floor)
        z = deviation.mean(axis=0) / np.maximum(spread / math.sqrt(seeds), floor)
        pooled = deviation.mean(axis=1)
        pooled_spread = pooled.std(ddof=1) if seeds > 1 else 0.0
        pooled_floor = math.sqrt(np.mean(predicted * (1 - predicted)) / (self.width * seeds))
        pooled_error = max(pooled_spread / math.sqrt(seeds), pooled_floor / math.sqrt(len(pooled)))
        return z, float(pooled.mean() / pooled_error)

    def agrees(self, predicted=None, sigmas: float = CHECK_SIGMAS) -> bool:
        """Whether every layer and the layer-mean lie within ``sigmas`` standard errors of
        ``predicted`` (default: the arc-cosine prediction). See the module docs.

        Example:
          >>> from jaxflow.experiments import dead_relu_fraction
          >>> result = dead_relu_fraction(depth=4, width=64, seeds=2)
          >>> result.agrees(), result.agrees(result.predicted + 0.25)
          (True, False)
        """
        z, pooled = self.z_scores(predicted)
        return bool(np.all(np.abs(z) <= sigmas) and abs(pooled) <= sigmas)


def relu_correlation_map(rho, depth: int) -> np.ndarray:
    """ρ_1 … ρ_depth of ReLU's arc-cosine kernel, starting from ρ_1 = ``rho``.

    Args:
      rho: the correlation of the first layer's pre-activations, in [−1, 1].
      depth: how many layers.

    Returns:
      (depth,) float64 correlations.

    References:
      Cho & Saul, "Kernel methods for deep learning", NeurIPS 2009 (the arc-cosine kernel of
      degree 1); Poole et al., NeurIPS 2016 (the correlation map).

    Example:
      >>> from jaxflow.experiments import relu_correlation_map
      >>> relu_correlation_map(0.0, 3).round(4).tolist()  # 1/π, then the map of 1/π
      [0.0, 0.3183, 0.4937]
    """
    if not -1.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho={rho!r} is not a correlation; it must be in [-1, 1]")
    values = [float(rho)]
    for _ in range(positive_int("depth", depth) - 1):
        r = values[-1]
        values.append((math.sqrt(max(0.0, 1.0 - r * r)) + (math.pi - math.acos(r)) * r) / math.pi)
    return np.array(values)


@functools.cache
def _measure(depth, width, seeds, correlation, init):
    model = mlp(depth, width, activation="relu", init=init, use_bias=False)

    def one(key):
        k_init, k_x = jax.random.split(key)
        a, b = jax.random.normal(k_x, (2, width))
        a = a / jnp.linalg.norm(a)
        b = b - jnp.dot(a, b, precision="highest") * a
        b = b / jnp.linalg.norm(b)
        x = jnp.stack([a, correlation * a + math.sqrt(1 - correlation**2) * b]) * math.sqrt(width)
        return dead_unit_fraction(model, model.init(k_init, x), x)

    return jax.jit(jax.vmap(one))


def dead_relu_fraction(
    depth: int = 20,
    width: int = 256,
    *,
    seeds: int = 8,
    correlation: float = 0.5,
    init="he",
    key=None,
) -> DeadUnits:
    """Measures, layer by layer, the fraction of ReLU units dead on two inputs, beside theory.

    Each seed draws fresh weights (zero biases) and a fresh pair of inputs with correlation
    ``correlation`` and norm √n; all seeds run in one compiled call.

    Args:
      depth: hidden layers L ≥ 2.
      width: n (the prediction is a large-width one: its error is O(1/√n)).
      seeds: independent networks.
      correlation: cos∠(x_a, x_b), in (−1, 1).
      init: the weight scheme (the prediction does not depend on σ_w² for zero biases).
      key: a ``jax.random.key`` (default ``key(0)``).

    Returns:
      A :class:`DeadUnits`.

    References:
      Cho & Saul, NeurIPS 2009; Sheppard, "On the application of the theory of error to cases of
      normal distribution and normal correlation", 1899 (P(z_a ≤ 0, z_b ≤ 0)).

    Example:
      >>> import jax
      >>> from jaxflow.experiments import dead_relu_fraction
      >>> result = dead_relu_fraction(depth=4, width=64, seeds=2)
      >>> result.predicted.round(3).tolist()
      [0.333, 0.354, 0.37, 0.382]
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    if not -1.0 < float(correlation) < 1.0:
        raise ValueError(f"correlation={correlation!r} is not allowed; it must be in (-1, 1)")
    depth = positive_int("depth", depth, minimum=2)
    width = positive_int("width", width)
    seeds = positive_int("seeds", seeds)
    keys = jax.random.split(jax.random.key(0) if key is None else key, seeds)
    measured = np.asarray(_measure(depth, width, seeds, float(correlation), init)(keys), np.float64)
    rho = relu_correlation_map(correlation, depth)
    error = measured.std(axis=0, ddof=1) / math.sqrt(seeds) if seeds > 1 else np.full(depth, np.nan)
    return DeadUnits(
        layers=np.arange(1, depth + 1),
        correlation=float(correlation),
        predicted_correlation=rho,
        predicted=0.25 + np.arcsin(rho) / (2 * math.pi),
        measured=measured,
        mean=measured.mean(axis=0),
        error=error,
        width=width,
    )

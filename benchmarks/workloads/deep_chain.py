"""Workload 3: the deep chain."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from ._common import NP_ACTIVATIONS, _rng, draw_weights


@dataclasses.dataclass(frozen=True)
class DeepChain:
    """Log-spectra of very deep chains, where a plain float32 product under- or overflows.

    For each (activation, init, σ_b²) chain: ``max(depths)`` square layers
    h_l = φ(W_l h_{l−1} + b_l) of width ``width``, one input x ~ N(0, I) per seed; at every depth
    d in ``depths``, the log singular values of P_d by a method that is stable at any depth. Both
    chains use the same standard normals G per seed, scaled by √(σ_w²/n) (xavier for sigmoid, he
    for relu). The relu chain has biases b ~ N(0, σ_b² = 0.05): without them its activations
    shrink by about 2% per layer at width 64 (the finite-width drift of log‖h_l‖ at σ_w² = 2), so
    h_l itself underflows float32 to exactly 0 after ~2,700 layers and every P_d beyond is 0 —
    in float32 the zero-bias relu chain has no spectrum at depth 10,000 to measure.
    """

    width: int = 64
    depths: tuple[int, ...] = (100, 1000, 10000)
    chains: tuple[tuple[str, str, float], ...] = (("sigmoid", "xavier", 0.0), ("relu", "he", 0.05))
    seeds: int = 1

    ID = 3

    @property
    def max_depth(self) -> int:
        return max(self.depths)


DEEP = {
    "full": DeepChain(),
    "quick": DeepChain(width=16, depths=(10, 50, 200)),
    "gpu": DeepChain(width=256),
}


class DeepChainData(NamedTuple):
    """The deep chain's weights, biases and inputs, float32.

    Attributes:
      weights: (chains, seeds, max_depth, n, n), (out, in) layout.
      biases: (chains, seeds, max_depth, n).
      inputs: (seeds, n).
    """

    weights: np.ndarray
    biases: np.ndarray
    inputs: np.ndarray


def deep_chain_data(spec: DeepChain) -> DeepChainData:
    """Draws the deep chain's weights, biases and inputs (deterministic)."""
    n, depth = spec.width, spec.max_depth
    weights = np.empty((len(spec.chains), spec.seeds, depth, n, n), np.float32)
    biases = np.zeros((len(spec.chains), spec.seeds, depth, n), np.float32)
    inputs = np.empty((spec.seeds, n), np.float32)
    for seed in range(spec.seeds):
        gaussian = _rng(spec.ID, 0, seed).standard_normal((depth, n, n))
        for c, (_, init, sigma_b2) in enumerate(spec.chains):
            weights[c, seed] = draw_weights(gaussian, init)
            if sigma_b2:
                biases[c, seed] = math.sqrt(sigma_b2) * _rng(spec.ID, 2, seed, c).standard_normal(
                    (depth, n)
                )
        inputs[seed] = _rng(spec.ID, 1, seed).standard_normal(n)
    return DeepChainData(weights, biases, inputs)


def deep_chain_checksum(log_sigma_max) -> dict:
    """``log_sigma_max`` = Σ over chains, seeds and depths of log σ_max(P_d).

    Args:
      log_sigma_max: (chains, seeds, len(depths)) log σ_max(P_d), finite.
    """
    values = np.asarray(log_sigma_max, np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("log σ_max(P_d) is not finite: the method under- or overflowed")
    return {"log_sigma_max": float(np.sum(values))}


def deep_chain_reference(spec: DeepChain, data: DeepChainData) -> dict:
    """The deep chain's checksum in float64 NumPy: log σ_max(P_d) = Σ log s_l + log σ_max(P̃_d),
    where P̃_l = J_l P̃_{l−1} / s_l is the product renormalised to unit Frobenius norm each layer
    (exact: only the common scale leaves the matrix)."""
    log_sigma_max = np.empty((len(spec.chains), spec.seeds, len(spec.depths)))
    for c, (name, _, _) in enumerate(spec.chains):
        phi, dphi = NP_ACTIVATIONS[name]
        for seed in range(spec.seeds):
            h = data.inputs[seed].astype(np.float64)
            P, log_scale = np.eye(spec.width), 0.0
            for layer in range(spec.max_depth):
                W = data.weights[c, seed, layer].astype(np.float64)
                z = W @ h + data.biases[c, seed, layer]
                P = (dphi(z)[:, None] * W) @ P
                h = phi(z)
                scale = np.linalg.norm(P)
                P, log_scale = P / scale, log_scale + math.log(scale)
                if layer + 1 in spec.depths:
                    top = np.linalg.svd(P, compute_uv=False)[0]
                    log_sigma_max[c, seed, spec.depths.index(layer + 1)] = log_scale + math.log(top)
    return deep_chain_checksum(log_sigma_max)

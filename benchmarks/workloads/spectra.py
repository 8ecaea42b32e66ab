"""Workload 1: the spectra sweep."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ._common import NP_ACTIVATIONS, _rng, draw_weights


@dataclasses.dataclass(frozen=True)
class SpectraSweep:
    """The spectra sweep: every J_l, P_l and their singular values over a grid of MLPs.

    For every activation × init × seed × input × depth: an MLP of ``depth`` square hidden layers
    h_l = φ(W_l h_{l−1}) (zero biases, no input or output layer), every J_l by autodiff, and the
    singular values of every J_l and every P_l. A depth-d network is the first d layers of the
    deepest one (same weights), so the layer weights are drawn once per (init, seed) at the
    largest depth. Inputs are N(0, I), ``inputs`` of them per seed, shared by every activation,
    init and depth.
    """

    width: int
    depths: tuple[int, ...]
    activations: tuple[str, ...] = ("relu", "tanh", "sigmoid")
    inits: tuple[str, ...] = ("xavier", "he", "orthogonal")
    seeds: int = 8
    inputs: int = 4

    ID = 1

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def chains(self) -> int:
        """Number of (activation, init, seed, input) chains at one depth."""
        return len(self.activations) * len(self.inits) * self.seeds * self.inputs

    def counts(self, reuse_prefixes: bool = True) -> dict:
        """The work: Jacobians, SVDs and matmul FLOPs of the sweep.

        Args:
          reuse_prefixes: count one pass at the largest depth (the least work that answers every
            depth); ``False`` counts every depth separately, as a loop over configurations does.

        Returns:
          A dict with ``layers`` (J_l computed), ``svds`` (n×n singular-value decompositions),
          ``product_flops`` (2n³ per P_l = J_l P_{l−1}, l ≥ 2), ``jacobian_flops`` (n² per J_l,
          the least: diag(φ′)·W) and ``forward_flops`` (2n² per layer).
        """
        n = self.width
        depths = [self.max_depth] if reuse_prefixes else list(self.depths)
        layers = self.chains * sum(depths)
        products = self.chains * sum(d - 1 for d in depths)
        return dict(
            layers=layers,
            svds=2 * layers,
            product_flops=2 * n**3 * products,
            jacobian_flops=n**2 * layers,
            forward_flops=2 * n**2 * layers,
        )


SPECTRA = {
    "full": SpectraSweep(width=64, depths=(5, 10, 20, 40)),
    "quick": SpectraSweep(width=16, depths=(2, 4, 6), seeds=2, inputs=2),
    # 288 chains like the full scale, up to 100 layers. Width 64, not 256: on an H200 (jax 0.11)
    # one 256×256 SVD costs ~4.5 ms (64×64: ~0.4 ms; results/gpu-NVIDIA-H200-2026-12-04-*), so
    # width 256 is ≥ 260 s of SVDs per process and timed out at 170 s; width 64 is ~24 s.
    "gpu": SpectraSweep(width=64, depths=(25, 50, 100), seeds=16, inputs=2),
}


class SpectraData(NamedTuple):
    """The spectra sweep's weights and inputs, float32.

    Attributes:
      weights: (inits, seeds, max_depth, n, n), W_l in the (out, in) layout.
      inputs: (seeds, inputs, n), h_0.
    """

    weights: np.ndarray
    inputs: np.ndarray


def spectra_data(spec: SpectraSweep) -> SpectraData:
    """Draws the spectra sweep's weights and inputs (deterministic; same on every machine).

    Args:
      spec: the workload.

    Returns:
      :class:`SpectraData`.
    """
    n, depth = spec.width, spec.max_depth
    weights = np.empty((len(spec.inits), spec.seeds, depth, n, n), np.float32)
    inputs = np.empty((spec.seeds, spec.inputs, n), np.float32)
    for seed in range(spec.seeds):
        gaussian = _rng(spec.ID, 0, seed).standard_normal((depth, n, n))
        for i, init in enumerate(spec.inits):
            weights[i, seed] = draw_weights(gaussian, init)
        inputs[seed] = _rng(spec.ID, 1, seed).standard_normal((spec.inputs, n))
    return SpectraData(weights, inputs)


class SpectraChecksum:
    """Accumulates the spectra sweep's checksums, in float64, one chain or a batch at a time.

    * ``log_sigma_max`` = Σ over activation, init, seed, input and depth d of log σ_max(P_d);
    * ``sigma_sum`` = Σ over the same configurations of Σ_{l ≤ d} Σ_i [σ_i(J_l) + σ_i(P_l)],
      so an implementation that skips any decomposition fails it.

    Example:
      >>> s = np.ones((3, 2))  # one chain of depth 3, width 2, every singular value 1
      >>> c = SpectraChecksum(); c.add(s, s); c.values()
      {'log_sigma_max': 0.0, 'sigma_sum': 12.0}
    """

    def __init__(self):
        self._log_sigma_max = 0.0
        self._sigma_sum = 0.0

    def add(self, layer_sv, product_sv) -> None:
        """Adds chains of one depth d.

        Args:
          layer_sv: (..., d, n) singular values of J_1 … J_d (descending), any float dtype.
          product_sv: (..., d, n) singular values of P_1 … P_d.
        """
        layer_sv = np.asarray(layer_sv, np.float64)
        product_sv = np.asarray(product_sv, np.float64)
        self._log_sigma_max += float(np.sum(np.log(product_sv[..., -1, 0])))
        self._sigma_sum += float(np.sum(layer_sv) + np.sum(product_sv))

    def add_prefixes(self, layer_sv, product_sv, depths) -> None:
        """Adds every depth of ``depths`` from chains computed once at the largest depth.

        Args:
          layer_sv: (..., D, n), D ≥ max(depths); the first d layers are the depth-d network.
          product_sv: (..., D, n).
          depths: the depths to count.
        """
        for d in depths:
            self.add(np.asarray(layer_sv)[..., :d, :], np.asarray(product_sv)[..., :d, :])

    def values(self) -> dict:
        """The checksums, as a dict of floats."""
        return {"log_sigma_max": self._log_sigma_max, "sigma_sum": self._sigma_sum}


def spectra_reference(spec: SpectraSweep, data: SpectraData) -> dict:
    """The spectra sweep's checksums from explicit float64 NumPy matrices (no autodiff).

    J_l = diag(φ′(z_l)) W_l in closed form, products in float64, ``np.linalg.svd``. Independent of
    every implementation under test.

    Returns:
      The checksum dict of :class:`SpectraChecksum`.
    """
    checksum = SpectraChecksum()
    weights = data.weights.astype(np.float64)  # (I, S, D, n, n)
    n = spec.width
    for name in spec.activations:
        phi, dphi = NP_ACTIVATIONS[name]
        # h: (I, S, inputs, n); all inits and seeds at once, one layer at a time.
        h = np.broadcast_to(
            data.inputs.astype(np.float64), weights.shape[:2] + data.inputs.shape[1:]
        )
        P = np.broadcast_to(np.eye(n), h.shape[:-1] + (n, n))
        layer_sv, product_sv = [], []
        for layer in range(spec.max_depth):
            W = weights[:, :, layer][:, :, None]  # (I, S, 1, n, n)
            z = np.einsum("...ij,...j->...i", W, h)
            J = dphi(z)[..., :, None] * W
            P = J @ P
            h = phi(z)
            layer_sv.append(np.linalg.svd(J, compute_uv=False))
            product_sv.append(np.linalg.svd(P, compute_uv=False))
        checksum.add_prefixes(np.stack(layer_sv, -2), np.stack(product_sv, -2), spec.depths)
    return checksum.values()

"""The benchmark workloads, defined once: sizes, seeds, how weights and inputs are drawn, checksums.

Every implementation (jaxflow, eager JAX, tutorial-style and best PyTorch) reads its workload from
here, so they all compute the same numbers on **the same weights**: weights and inputs are drawn
with NumPy from fixed seeds (never from a framework's own RNG), in float32, and every script either
draws them in-process with the functions below or loads the very same arrays from a file the
runner wrote once (``python benchmarks/workloads.py export ...``). A checksum of each workload's
outputs — defined here, with its tolerance — must agree across implementations and with the
float64 NumPy reference below, or the runner refuses to report the result.

This module needs only NumPy (no jax, no torch), so the PyTorch scripts import it too.

Conventions shared by every workload: a hidden layer is h_l = φ(W_l h_{l−1}) with W_l in the
mathematical (out, in) layout (``torch.nn.Linear.weight`` as is; a Flax kernel is W_lᵀ), zero
biases unless stated, J_l = ∂h_l/∂h_{l−1} = diag(φ′(z_l)) W_l, P_l = J_l ⋯ J_1, singular values
descending.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import NamedTuple

import numpy as np

ROOT_SEED = 20260606
"""Every NumPy generator here is seeded with ``[ROOT_SEED, <workload id>, ...]``."""

SCALES = ("full", "quick", "gpu")
"""``full``: the issue's workload on a CPU; ``quick``: a few-second version for development and
the test suite's smoke test; ``gpu``: a GPU-sized version (``benchmarks/gpu.sh``)."""

CHECKSUM_RTOL = 1e-6
"""Relative tolerance on every checksum, between implementations and against the float64
reference. Float32 rounding moves each summand by ~1e-7 relative; the checksums are sums of
hundreds of terms of one sign, so honest implementations agree to a few 1e-8."""


# --------------------------------------------------------------------------------------------
# Activations, in float64 NumPy (the reference) — the names every implementation maps to its own.


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


NP_ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
}
"""name → (φ, φ′) in NumPy; φ′(0) = 0 for relu, as ``jax.grad`` and ``torch.autograd`` give."""

INIT_VARIANCES = {"xavier": 1.0, "he": 2.0, "orthogonal": None}
"""σ_w² = n·Var(W_ij) of each Gaussian scheme on a square n×n layer (xavier N(0, 1/n),
he N(0, 2/n)); orthogonal is Haar with gain 1 (every singular value 1)."""


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([ROOT_SEED, *key])


def draw_weights(gaussian: np.ndarray, init: str) -> np.ndarray:
    """Square weights of scheme ``init`` from standard normals, in float32.

    Xavier and He scale the same standard normals G (so He = √2·Xavier, as jaxflow's own schemes
    give for one key); orthogonal is the Q of G = QR with diag(R) > 0, which is Haar-distributed
    (Mezzadri 2007).

    Args:
      gaussian: (..., n, n) standard normals, float64.
      init: ``"xavier"``, ``"he"`` or ``"orthogonal"``.

    Returns:
      (..., n, n) float32, the (out, in) layout.
    """
    n = gaussian.shape[-1]
    if init == "orthogonal":
        q, r = np.linalg.qr(gaussian)
        w = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    elif init in INIT_VARIANCES:
        w = gaussian * math.sqrt(INIT_VARIANCES[init] / n)
    else:
        raise ValueError(
            f"init={init!r} is not a benchmark init; use one of {list(INIT_VARIANCES)}"
        )
    return w.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Workload 1: the spectra sweep.


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
    # 288 chains like the full scale, at 4× the width and up to 100 layers (1.3 GB of weights).
    "gpu": SpectraSweep(width=256, depths=(25, 50, 100), seeds=16, inputs=2),
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


# --------------------------------------------------------------------------------------------
# Workload 2: the notes' compare_activations.


@dataclasses.dataclass(frozen=True)
class NotesComparison:
    """The notes' ``compare_activations``: per-Linear weight-gradient norms of three deep nets.

    For each activation: ``depth`` × (Linear(width, width) + φ) + Linear(width, 1), a batch of
    ``batch`` inputs x ~ N(0, I) and targets y ~ N(0, 1), MSE loss (mean over the batch), one
    backward pass, ‖∂L/∂W‖_F of every Linear (``depth + 1`` norms). Weights and biases are
    PyTorch's default ``nn.Linear`` draw, U(±1/√fan_in), drawn here with NumPy, fresh per
    activation as in the notes (which build a new model each time).
    """

    activations: tuple[str, ...] = ("relu", "sigmoid", "tanh")
    depth: int = 10
    width: int = 64
    batch: int = 32

    ID = 2


NOTES = {"full": NotesComparison(), "quick": NotesComparison(), "gpu": NotesComparison()}


class NotesData(NamedTuple):
    """The notes comparison's parameters and data, float32, one set per activation.

    Attributes:
      hidden_weight: (activations, depth, width, width), (out, in) layout.
      hidden_bias: (activations, depth, width).
      out_weight: (activations, 1, width).
      out_bias: (activations, 1).
      x: (activations, batch, width).
      y: (activations, batch, 1).
    """

    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    out_weight: np.ndarray
    out_bias: np.ndarray
    x: np.ndarray
    y: np.ndarray


def _linear_stack_data(key: tuple, sets: int, depth: int, width: int, batch: int) -> NotesData:
    """``sets`` independent draws of a Linear stack's parameters (PyTorch's default U(±1/√fan_in))
    and of a batch x ~ N(0, I), y ~ N(0, 1), from generators seeded with ``key``."""
    fields = {name: [] for name in NotesData._fields}
    bound = 1.0 / math.sqrt(width)  # fan_in is the width for every Linear here
    for s in range(sets):
        rng = _rng(*key, s)
        fields["hidden_weight"].append(rng.uniform(-bound, bound, (depth, width, width)))
        fields["hidden_bias"].append(rng.uniform(-bound, bound, (depth, width)))
        fields["out_weight"].append(rng.uniform(-bound, bound, (1, width)))
        fields["out_bias"].append(rng.uniform(-bound, bound, (1,)))
        fields["x"].append(rng.standard_normal((batch, width)))
        fields["y"].append(rng.standard_normal((batch, 1)))
    return NotesData(**{k: np.stack(v).astype(np.float32) for k, v in fields.items()})


def notes_data(spec: NotesComparison) -> NotesData:
    """Draws the notes comparison's parameters and data (deterministic), one set per activation."""
    return _linear_stack_data((spec.ID,), len(spec.activations), spec.depth, spec.width, spec.batch)


def mlp_variables(data: NotesData, index: int) -> dict:
    """Set ``index`` of a Linear stack as the variables of ``jaxflow.mlp(depth, width, out_dim=1)``
    (no input layer; Flax kernels are Wᵀ), as NumPy arrays — for the jax scripts."""
    return {
        "params": {
            "blocks": {
                "Dense_0": {
                    "kernel": np.swapaxes(data.hidden_weight[index], -1, -2),
                    "bias": np.asarray(data.hidden_bias[index]),
                }
            },
            "readout": {
                "kernel": np.asarray(data.out_weight[index]).T,
                "bias": np.asarray(data.out_bias[index]),
            },
        }
    }


def notes_checksum(grad_norms) -> dict:
    """``log_grad_norm`` = Σ over activations and Linear layers of log ‖∂L/∂W‖_F.

    Args:
      grad_norms: (activations, depth + 1) weight-gradient norms, input side first.
    """
    return {"log_grad_norm": float(np.sum(np.log(np.asarray(grad_norms, np.float64))))}


def notes_reference(spec: NotesComparison, data: NotesData) -> dict:
    """The notes comparison's checksum by hand-written float64 backpropagation (the notes' own
    ∂L/∂W = δ aᵀ, ∂L/∂a = Wᵀ δ), independent of every autodiff under test."""
    norms = []
    for a, name in enumerate(spec.activations):
        phi, dphi = NP_ACTIVATIONS[name]
        d = {k: np.asarray(v[a], np.float64) for k, v in data._asdict().items()}
        h, inputs, zs = d["x"], [], []
        for W, b in zip(d["hidden_weight"], d["hidden_bias"]):
            inputs.append(h)
            zs.append(h @ W.T + b)
            h = phi(zs[-1])
        pred = h @ d["out_weight"].T + d["out_bias"]
        delta = 2.0 * (pred - d["y"]) / pred.size  # ∂ mean((pred − y)²) / ∂pred
        layer_norms = [np.linalg.norm(delta.T @ h)]
        grad_h = delta @ d["out_weight"]
        for W, a_in, z in zip(d["hidden_weight"][::-1], inputs[::-1], zs[::-1]):
            delta = grad_h * dphi(z)
            layer_norms.append(np.linalg.norm(delta.T @ a_in))
            grad_h = delta @ W
        norms.append(layer_norms[::-1])
    return notes_checksum(norms)


# --------------------------------------------------------------------------------------------
# Workload 3: the deep chain.


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


# --------------------------------------------------------------------------------------------
# Workload 4: the training monitor's overhead.


@dataclasses.dataclass(frozen=True)
class TrainingMonitor:
    """A jitted optax training step with and without ``jaxflow.monitor``.

    The notes' ``DeepNet``: ``depth`` × (Linear(width, width) + ReLU) + Linear(width, 1), MSE on a
    fixed batch, ``optax.adam(learning_rate)``, one warm-up step then ``steps`` timed steps. The
    monitor passes updates through unchanged, but the two compiled programs may fuse the
    gradient differently, so their parameters can drift apart by rounding, and a fixed batch
    trained for thousands of steps amplifies that drift chaotically. The checksum is therefore
    taken early: the sum of the losses of the first ``checked_steps`` steps (warm-up included).
    """

    depth: int = 10
    width: int = 64
    batch: int = 32
    steps: int = 2000
    learning_rate: float = 1e-3
    checked_steps: int = 20

    ID = 4


MONITOR = {
    "full": TrainingMonitor(),
    "quick": TrainingMonitor(steps=50),
    "gpu": TrainingMonitor(),
}


def monitor_data(spec: TrainingMonitor) -> NotesData:
    """The monitor workload's initial parameters and batch (the notes' layout, one set)."""
    return _linear_stack_data((spec.ID,), 1, spec.depth, spec.width, spec.batch)


def monitor_checksum(losses) -> dict:
    """``early_loss_sum`` = Σ of the first ``checked_steps`` losses, in float64.

    Args:
      losses: the losses of the first ``checked_steps`` steps.
    """
    return {"early_loss_sum": float(np.sum(np.asarray(losses, np.float64)))}


# --------------------------------------------------------------------------------------------
# The registry the scripts and the runner share.


class Workload(NamedTuple):
    """One workload: its specs by scale, how to draw its data, and its float64 reference."""

    name: str
    specs: dict
    draw: object
    data_type: type
    reference: object | None


WORKLOADS = {
    "spectra": Workload("spectra", SPECTRA, spectra_data, SpectraData, spectra_reference),
    "notes": Workload("notes", NOTES, notes_data, NotesData, notes_reference),
    "deep-chain": Workload(
        "deep-chain", DEEP, deep_chain_data, DeepChainData, deep_chain_reference
    ),
    # The monitor's two variants must agree bit for bit; there is no separate reference.
    "monitor": Workload("monitor", MONITOR, monitor_data, NotesData, None),
}
"""name → :class:`Workload`."""


def get_workload(name: str) -> Workload:
    """The workload called ``name``; a ``ValueError`` lists the valid names."""
    if name not in WORKLOADS:
        raise ValueError(f"workload={name!r} is not defined; use one of {list(WORKLOADS)}")
    return WORKLOADS[name]


def get_spec(name: str, scale: str):
    """The spec of workload ``name`` at ``scale`` (one of :data:`SCALES`)."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not defined; use one of {SCALES}")
    return get_workload(name).specs[scale]


def save_data(data: NamedTuple, path: str) -> str:
    """Writes a workload's arrays to the directory ``path`` as one ``.npy`` per field.

    ``.npy`` (not ``.npz``) so a large GPU-scale array can be memory-mapped. Refuses an existing
    directory: data is never overwritten.

    Returns:
      ``path``.
    """
    os.makedirs(path, exist_ok=False)
    for field, array in data._asdict().items():
        np.save(os.path.join(path, f"{field}.npy"), array)
    return path


def load_data(name: str, scale: str, path: str | None) -> NamedTuple:
    """The data of workload ``name``: loaded from ``path`` (see :func:`save_data`) or drawn.

    Args:
      name: a workload name.
      scale: one of :data:`SCALES`.
      path: a directory written by :func:`save_data`, or ``None`` to draw the data now.

    Raises:
      ValueError: if the files do not have the shapes this workload and scale define.
    """
    workload = get_workload(name)
    spec = get_spec(name, scale)
    if path is None:
        return workload.draw(spec)
    fields = {}
    for field in workload.data_type._fields:
        file = os.path.join(path, f"{field}.npy")
        if not os.path.exists(file):
            raise ValueError(f"{file} is missing; write the data with `workloads.py export`")
        fields[field] = np.load(file, mmap_mode="r")
    data = workload.data_type(**fields)
    expected = _shapes(name, spec)
    actual = {k: v.shape for k, v in data._asdict().items()}
    if actual != expected:
        raise ValueError(
            f"{path} holds {name} data of shapes {actual}, not the {scale} scale's {expected}"
        )
    return data


def _shapes(name, spec) -> dict:
    """The array shapes of workload ``name`` at ``spec``, without drawing anything."""
    if name == "spectra":
        n = spec.width
        return {
            "weights": (len(spec.inits), spec.seeds, spec.max_depth, n, n),
            "inputs": (spec.seeds, spec.inputs, n),
        }
    if name == "deep-chain":
        n, c, d = spec.width, len(spec.chains), spec.max_depth
        return {
            "weights": (c, spec.seeds, d, n, n),
            "biases": (c, spec.seeds, d, n),
            "inputs": (spec.seeds, n),
        }
    if name == "notes":
        a, d, n, b = len(spec.activations), spec.depth, spec.width, spec.batch
    else:
        a, d, n, b = 1, spec.depth, spec.width, spec.batch
    return {
        "hidden_weight": (a, d, n, n),
        "hidden_bias": (a, d, n),
        "out_weight": (a, 1, n),
        "out_bias": (a, 1),
        "x": (a, b, n),
        "y": (a, b, 1),
    }


def checksums_agree(a: dict, b: dict, rtol: float = CHECKSUM_RTOL) -> tuple[bool, str]:
    """Whether two checksum dicts have the same keys and agree to ``rtol``; and why not.

    Returns:
      ``(agree, message)``; the message names the first disagreeing checksum and both values.
    """
    if set(a) != set(b):
        return False, f"different checksums: {sorted(a)} vs {sorted(b)}"
    for key in sorted(a):
        x, y = float(a[key]), float(b[key])
        if not (math.isfinite(x) and math.isfinite(y)):
            return False, f"{key} is not finite: {x!r} vs {y!r}"
        if abs(x - y) > rtol * max(abs(x), abs(y)):
            return (
                False,
                f"{key}: {x!r} vs {y!r} (relative difference "
                f"{abs(x - y) / max(abs(x), abs(y)):.2e} > {rtol:g})",
            )
    return True, "agree"


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a workload's data once (export), or print its float64 reference "
        "checksums (reference)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the arrays to a new directory")
    reference = sub.add_parser("reference", help="print the float64 NumPy reference checksums")
    for p in (export, reference):
        p.add_argument("workload", choices=list(WORKLOADS))
        p.add_argument("--scale", choices=SCALES, default="full")
    export.add_argument("path", help="a directory that does not exist yet")
    reference.add_argument("--data", help="a directory written by export (default: draw)")
    args = parser.parse_args(argv)
    if args.command == "export":
        spec = get_spec(args.workload, args.scale)
        print(save_data(get_workload(args.workload).draw(spec), args.path))
        return 0
    workload = get_workload(args.workload)
    if workload.reference is None:
        print(f"{args.workload} has no float64 reference (its variants must agree bit for bit)")
        return 1
    data = load_data(args.workload, args.scale, args.data)
    print(json.dumps(workload.reference(get_spec(args.workload, args.scale), data)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())

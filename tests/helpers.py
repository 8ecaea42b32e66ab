"""Shared test helpers: tolerances keyed by dtype (in one place) and independent NumPy references.

The references here are written from the closed forms in float64 NumPy, never through jaxflow's
own code path.
"""

from __future__ import annotations

import numpy as np

# Tolerances, keyed by dtype then by what is compared. Every numerical test takes its tolerance
# from here.
TOLERANCES = {
    "float32": {
        "elementwise": 2e-6,  # φ, φ′ against each other or autodiff (relative)
        "jacobian": 2e-6,  # entries of J_l vs float64, relative to max |J_l|
        "svd": 1e-4,  # singular values vs float64 SVD, relative to σ_max of the same matrix
        "chain_rule": 1e-5,  # ∂L/∂x, relative norm error
        "model": 1e-5,  # scanned vs unrolled model outputs
        "orthogonal": 1e-5,  # WᵀW − gain²I, absolute
        # A benchmark checksum (a sum of hundreds of float32 results of one sign) against the
        # float64 reference, relative; benchmarks/workloads.py CHECKSUM_RTOL is the runner's copy.
        "checksum": 1e-6,
    },
    "float64": {
        "elementwise": 1e-12,
        "jacobian": 1e-12,
        "svd": 1e-10,
        "chain_rule": 1e-12,
        "model": 1e-12,
        "orthogonal": 1e-12,
        "checksum": 1e-12,  # two float64 routes to the same checksum, relative
    },
}


def tol(dtype, kind: str) -> float:
    """The tolerance for comparing ``kind`` at ``dtype``."""
    return TOLERANCES[np.dtype(dtype).name][kind]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# φ and φ′(z) in float64 NumPy, from the textbook formulas.
NP_ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "linear": (lambda z: z, lambda z: np.ones_like(z)),
}


def as64(tree):
    """A pytree of arrays as float64 NumPy (nested dicts)."""
    if isinstance(tree, dict):
        return {k: as64(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64)


def np_mlp_chain(params, x, activation, wrt="postactivation"):
    """Per-layer Jacobians of a jaxflow MLP's hidden stack, from diag(φ′(z_l)) W_l in float64.

    Returns (layers, products, h_L); for wrt="preactivation" the layers are W^[l] diag(φ′(z^[l−1])),
    l = 2…L.
    """
    phi, dphi = NP_ACTIVATIONS[activation]
    p = as64(params)
    h = np.asarray(x, np.float64)
    if "input" in p:
        h = p["input"]["kernel"].T @ h + p["input"]["bias"]
    kernels = p["blocks"]["Dense_0"]["kernel"]
    biases = p["blocks"]["Dense_0"].get("bias", np.zeros(kernels.shape[:2]))
    layers, zs = [], []
    for W_t, b in zip(kernels, biases):
        W = W_t.T
        z = W @ h + b
        zs.append(z)
        layers.append(np.diag(dphi(z)) @ W)
        h = phi(z)
    if wrt == "preactivation":
        layers = [kernels[l].T @ np.diag(dphi(zs[l - 1])) for l in range(1, len(zs))]
    products, P = [], np.eye(layers[0].shape[0])
    for J in layers:
        P = J @ P
        products.append(P)
    return np.stack(layers), np.stack(products), h


def np_residual_chain(variables, x, activation, norm=None, eps=1e-5):
    """Per-layer Jacobians I + ∂F_l/∂h of a jaxflow residual stack (branch_depth 2) in float64.

    ``norm`` is None or "batch" (inference mode: z ↦ γ(z − μ)/√(v + ε) + β).
    """
    phi, dphi = NP_ACTIVATIONS[activation]
    p = as64(variables["params"])
    stats = as64(variables.get("batch_stats", {}))
    h = np.asarray(x, np.float64)
    if "input" in p:
        h = p["input"]["kernel"].T @ h + p["input"]["bias"]
    blocks = p["blocks"]
    depth = blocks["Dense_0"]["kernel"].shape[0]
    layers = []
    for l in range(depth):
        W0, b0 = blocks["Dense_0"]["kernel"][l].T, blocks["Dense_0"]["bias"][l]
        W1, b1 = blocks["Dense_1"]["kernel"][l].T, blocks["Dense_1"]["bias"][l]
        u = W0 @ h + b0
        D = np.eye(len(u))
        if norm == "batch":
            bn, st = blocks["BatchNorm_0"], stats["blocks"]["BatchNorm_0"]
            g = bn["scale"][l] / np.sqrt(st["var"][l] + eps)
            u = g * (u - st["mean"][l]) + bn["bias"][l]
            D = np.diag(g)
        layers.append(np.eye(len(h)) + W1 @ np.diag(dphi(u)) @ D @ W0)
        h = h + W1 @ phi(u) + b1
    products, P = [], np.eye(len(h))
    for J in layers:
        P = J @ P
        products.append(P)
    return np.stack(layers), np.stack(products), h


def sv_error(computed, matrices):
    """max |σ_i − σ_i^ref| / σ_max^ref over each matrix, reference from float64 NumPy SVD."""
    ref = np.linalg.svd(np.asarray(matrices, np.float64), compute_uv=False)
    computed = np.asarray(computed, np.float64)
    return float(np.max(np.abs(computed - ref) / ref[..., :1]))

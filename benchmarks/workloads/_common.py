"""What every workload shares: the root seed, the scales, the checksum tolerance, the NumPy
activations and the weight draws."""

from __future__ import annotations

import math

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

"""Free-probability moments of the end-to-end Jacobian (Pennington, Schoenholz & Ganguli 2017).

The object is jaxflow's post-activation chain P_L = J_L ⋯ J_1 = D_L W_L ⋯ D_1 W_1, with
D_l = diag(φ′(z_l)) — PSG's input–output Jacobian ∂x^L/∂x^0. Its squared singular values are the
eigenvalues λ of P_L P_Lᵀ, and their empirical distribution has moments
m_k = (1/n) tr[(P_L P_Lᵀ)^k]. Treating the W_l and D_l as asymptotically free (n → ∞), the
S-transforms multiply, S_{PPᵀ} = (S_{WᵀW} S_{D²})^L, and expanding to first order in z gives

    mean      m₁ = (σ_w² μ₁)^L = χ₁^L,
    variance  m₂ − m₁² = m₁² · L (μ₂/μ₁² − 1 − s₁),

where μ_k = E[φ′(h)^{2k}], h ~ N(0, q*), are the moments of D², and s₁ is the first coefficient of
S_{WᵀW}(z) = σ_w⁻²(1 + s₁ z + O(z²)): s₁ = −1 for Gaussian W (Marchenko–Pastur: the squared
singular values of a square N(0, σ_w²/n) matrix have mean σ_w² and variance σ_w⁴) and s₁ = 0 for
orthogonal W = σ_w·O (every squared singular value equals σ_w²). At criticality (χ₁ = 1) the
variance is L(μ₂/μ₁² − 1 − s₁) (PSG 2017): linear and orthogonal 0, linear and
Gaussian L, ReLU (μ₁ = μ₂ = 1/2) and orthogonal L, ReLU and Gaussian 2L.

Normalisation conventions, fixed here and tested against Monte Carlo:

* "variance" is the variance of the spectral distribution of one P_L (over its n squared singular
  values), not a variance across random draws of the network;
* W_l has entries of variance σ_w²/n (Gaussian) or is σ_w times a Haar orthogonal matrix, so that
  (1/n) tr W_lᵀW_l = σ_w² in both cases;
* μ_k are taken at the mean-field fixed point q* (with the q → 0⁺ / q → ∞ limits of
  :mod:`jaxflow.theory.propagation` where q* is 0, infinite or undetermined), i.e. the input's
  pre-activations are assumed to sit at q*;
* ``relative_variance`` = variance/mean² = L(μ₂/μ₁² − 1 − s₁) is the scale-free spread of the
  spectrum; dynamical isometry is relative_variance → 0 at χ₁ = 1.

References:
  Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep learning through dynamical
  isometry: theory and practice", NeurIPS 2017.
  Pennington, Schoenholz & Ganguli, "The emergence of spectral universality in deep networks",
  AISTATS 2018.
  Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear
  neural networks", ICLR 2014 (orthogonal initialisation).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow.activations import Activation
from jaxflow.theory._solvers import evaluate
from jaxflow.theory.results import TOL

__all__ = ["FreeMoments", "free_moments"]

WEIGHT_ENSEMBLES = {"gaussian": -1.0, "orthogonal": 0.0}
"""s₁, the first S-transform coefficient of WᵀW (normalised by σ_w²), for each weight ensemble."""


class FreeMoments(NamedTuple):
    """Mean and variance of the squared singular values of P_l, l = 1…L, from free probability.

    Fields without a depth axis have the broadcast shape ``S`` of σ_w², σ_b², q0; the others are
    (*S, L).

    Attributes:
      depth: (L,) the depths l = 1…L.
      mu1: μ₁ = E[φ′(h)²], h ~ N(0, q*).
      mu2: μ₂ = E[φ′(h)⁴].
      s1: the weights' S-transform coefficient (−1 Gaussian, 0 orthogonal).
      chi1: σ_w² μ₁.
      mean: (*S, L) m₁ = χ₁^l, the mean squared singular value.
      variance: (*S, L) m₂ − m₁² = m₁² l (μ₂/μ₁² − 1 − s₁).
      relative_variance: (*S, L) variance/mean² = l (μ₂/μ₁² − 1 − s₁).
      q_star: the length map's fixed point.
      status: its status code (see :class:`jaxflow.PredictionStatus`).

    Example:
      >>> import jaxflow as jf
      >>> fm = jf.free_moments("linear", 1.0, 0.0, depth=3, weights="gaussian")
      >>> fm.variance.tolist()
      [1.0, 2.0, 3.0]
    """

    depth: jax.Array
    mu1: jax.Array
    mu2: jax.Array
    s1: jax.Array
    chi1: jax.Array
    mean: jax.Array
    variance: jax.Array
    relative_variance: jax.Array
    q_star: jax.Array
    status: jax.Array


def free_moments(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    depth: int,
    weights: str = "gaussian",
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> FreeMoments:
    """Mean and variance of the squared singular values of the end-to-end Jacobian, per depth.

    Args:
      activation: a name from :data:`jaxflow.ACTIVATIONS` or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² > 0 (orthogonal: W = σ_w·O).
      sigma_b2: bias variance σ_b² ≥ 0.
      depth: L ≥ 1; moments are returned for every l = 1…L.
      weights: ``"gaussian"`` (s₁ = −1) or ``"orthogonal"`` (s₁ = 0).
      q0: the first layer's pre-activation variance (see :func:`~jaxflow.theory.q_star`).
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance for the length map.

    Returns:
      A :class:`FreeMoments`.

    Raises:
      ValueError: for an unknown activation, ensemble or quadrature, depth < 1, or invalid
        variances.

    References:
      Pennington, Schoenholz & Ganguli, NeurIPS 2017 (the first two moments of JJᵀ):
      m₁ = (σ_w²μ₁)^L and m₂ = (σ_w²μ₁)^{2L} L (μ₂/μ₁² + 1/L − 1 − s₁).

    Example:
      >>> import jaxflow as jf
      >>> relu = jf.free_moments("relu", 2.0, 0.0, depth=4, weights="orthogonal")
      >>> [round(v, 4) for v in relu.variance.tolist()]   # L at criticality
      [1.0, 2.0, 3.0, 4.0]
    """
    if weights not in WEIGHT_ENSEMBLES:
        raise ValueError(
            f"weights={weights!r} is not a known ensemble; use one of {tuple(WEIGHT_ENSEMBLES)}"
        )
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth={depth!r} is not allowed; it must be an integer >= 1")
    m = evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol)
    dtype = m.mu1.dtype
    s1 = jnp.full_like(m.mu1, WEIGHT_ENSEMBLES[weights])
    depths = jnp.arange(1, depth + 1)
    layers = depths.astype(dtype).reshape((1,) * m.mu1.ndim + (depth,))
    excess = (m.mu2 / jnp.square(m.mu1) - 1.0 - s1)[..., None]
    mean = jnp.power(m.chi1[..., None], layers)
    relative = layers * excess
    return FreeMoments(
        depths,
        m.mu1,
        m.mu2,
        s1,
        m.chi1,
        mean,
        jnp.square(mean) * relative,
        relative,
        m.q_star,
        m.status,
    )

"""Mean-field signal propagation: q*, χ₁, c*, the depth scales and the order-to-chaos line.

For a wide MLP z^l = W^l φ(z^{l−1}) + b^l with W_ij ~ N(0, σ_w²/n) and b_i ~ N(0, σ_b²) (σ² are
**variances**), the pre-activations of one input are Gaussian with variance q^l and those of two
inputs have correlation c^l, which obey (Poole et al. 2016; Schoenholz et al. 2017, §2)

    length map       q^l = V(q^{l−1}) = σ_w² ∫Dz φ(√q^{l−1} z)² + σ_b²,
    correlation map  c^l = C(c^{l−1}) = [σ_w² ∫Dz₁Dz₂ φ(u₁)φ(u₂) + σ_b²] / q*,
                     u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1 − c²) z₂),

with Dz the standard Gaussian measure. Their linearisations at the fixed points give
(Schoenholz et al. 2017, §2 for χ₁ and §3 for the depth scales):

    χ₁ = σ_w² ∫Dz φ′(√q* z)²                       (C′(1): order χ₁ < 1, chaos χ₁ > 1),
    ξ_q⁻¹ = −ln[χ₁ + σ_w² ∫Dz φ″(√q* z) φ(√q* z)]   (q^l − q* ∝ e^{−l/ξ_q}),
    χ_c = σ_w² ∫Dz₁Dz₂ φ′(u₁)φ′(u₂) at c*,          ξ_c⁻¹ = −ln χ_c   (c^l − c* ∝ e^{−l/ξ_c}).

jaxflow evaluates the bracket of ξ_q as V′(q*) = σ_w² ∫Dz z φ(√q* z) φ′(√q* z)/√q*, which equals
χ₁ + σ_w²∫Dz φ″φ by Gaussian integration by parts for smooth φ and is the true slope of the length
map for kinked φ too (hard_tanh's φ″ is a pair of deltas). In the ordered phase c* = 1 and
χ_c = χ₁, so ξ_c = −1/ln χ₁; on the chaotic side c* < 1 and χ_c < 1 as well. Either way ξ_c is
finite wherever χ₁ ≠ 1 and grows like 1/|χ₁ − 1| near it (the edge of chaos): ξ_c ≈ 26,600 at
χ₁ = 1 ± 3.75e-5 for tanh with σ_b² = 0.05.

Conventions and edge cases, reported in every result rather than hidden:

* **Which fixed point.** q* is the fixed point the length map reaches from ``q0`` (the first layer's
  pre-activation variance, default 1): the root of V(q) = q next above q0 if V(q0) > q0, next below
  it otherwise (the map is increasing for every registered activation, so iterates move
  monotonically). Roots are located on a log grid of 97 points over [1e-20, 1e20] and refined by
  bisection in log q. Where the map has more than one attractor (GELU and SiLU with σ_w² ≳ 2 and a
  small σ_b²: a stable small-q fixed point, and divergence beyond an unstable one; Tsuchida et al.
  2021), ``unique`` is False and q* depends on q0. c* is unique: C is a power series in c with
  non-negative coefficients (Mehler's expansion), hence convex on [0, 1] with C(1) = 1, so c* = 1
  when χ₁ ≤ 1 and c* is the single root in [0, 1) when χ₁ > 1. Near χ₁ = 1 that root is lost
  by solving C(c) = c directly (the residual is O((1 − c)²), far below the quadrature's error), so
  it is solved for ε = 1 − c* with the trivial root divided out, g(ε) = (1 − C(1 − ε))/ε − 1,
  the leading term χ₁ε of 1 − C(1 − ε) taken from the 1-D quadrature and only the O(ε²)
  remainder from the 2-D one (``jaxflow.theory._solvers._solve_c`` has the formulas); 1 − χ_c is
  formed the same way, and ξ_c = −1/log1p(χ_c − 1). In float64 c*, χ_c and ξ_c then match 40-digit
  references to ~3e-7 relative down to |χ₁ − 1| = 4e-5 (tests/test_theory_edge.py). In float32
  both c* (absolute) and ξ_c (relative) carry ~3–11 ulps / (1 − χ_c): 1/(1 − χ_c) is the condition
  number of c* = C(c*) itself, so c* ≤ 1e-6 and ξ_c ≤ 1e-5 hold where 1 − χ_c ≳ 0.3 and
  0.1, and at 1 − χ_c = 0.01 (erf, σ_w² = 2, σ_b² = 0.3) ξ_c is good to ~3e-5.
* **status** (:class:`PredictionStatus`): ``OK``; ``MARGINAL`` where the length map's slope at the fixed
  point is within ``tol`` of 1 (ξ_q > 1/tol layers: tanh at σ_w² = 1, σ_b² = 0) or where V(q)/q → 1
  as q → ∞ with no stable root below; ``DIVERGES`` where V(q) > (1 + tol)·q up to 1e20, i.e.
  q^l → ∞ geometrically; ``INVALID`` for σ_w² ≤ 0, σ_b² < 0 or non-finite values passed
  under ``jit`` (concrete bad values raise ``ValueError``). ``q_star`` is ``inf`` where it diverges
  and ``nan`` where it is not determined — a continuum of fixed points or a map within tol of the
  identity at large q. For ReLU V(q) = σ_w² q/2 + σ_b² exactly, so q* = σ_b²/(1 − σ_w²/2) for
  σ_w² < 2, q* diverges for σ_w² > 2 (any σ_b² ≥ 0), and σ_w² = 2 is marginal: every q is a fixed
  point when σ_b² = 0, and q^l = q^0 + l·σ_b² grows linearly (not geometrically) when σ_b² > 0.
* **q → 0⁺ and q → ∞.** Where q* = 0 (odd φ, σ_b² = 0, ordered), χ₁ and the other expectations are
  the q → 0⁺ limits (ReLU: χ₁ = σ_w²/2, not relu′(0) = 0). Where q* is ``inf`` or ``nan`` they are
  the q → ∞ limits (evaluated at q = 1e20): the per-layer rates a network approaches as its
  pre-activations grow; for positively homogeneous φ (ReLU, leaky ReLU, linear) they do not depend
  on q at all. ``xi_q`` is ``nan`` where q* diverges. ``chi_c`` is always the slope of the
  correlation map C(c) = [σ_w² E[φ(u₁)φ(u₂)] + σ_b²]/V(q) at c*, which is Schoenholz et al.'s
  σ_w² E[φ′φ′] at a genuine fixed point (V(q*) = q*) but picks up the factor q/V(q) in these
  limits: at q* = 0 with σ_b² = 0 the network is linear and correlations stop changing (χ_c = 1,
  ξ_c = ∞ — the σ_b² → 0⁺ limit −1/ln χ₁ is singular there), and for ReLU with σ_w² > 2 the map
  C is σ_w²-independent with C′(1) = 1 although χ₁ = σ_w²/2 > 1.
* **critical** is |χ₁ − 1| ≤ tol, a label only: c*, χ_c and ξ_c are computed there as anywhere
  else, and ξ_c (then ≳ 1/tol) is finite wherever χ₁ ≠ 1 — at a genuine fixed point
  0 < q* < ∞, ξ_c = ∞ and c* = 1 only where C′(1) is within the dtype's resolution of 1
  (ε^(3/4): float32 6e-6, float64 2e-12). At the q → 0⁺ / q → ∞ limits above C′(1) is taken at
  q = 1e∓20 and carries up to ~1e-11 of that, so there max(tol, resolution) decides, as it does
  for ξ_q, which stays ∞ wherever the length map is ``MARGINAL``.

All functions are pure, jit- and vmap-compatible, and broadcast over array-valued σ_w², σ_b², q0.
They run two compiled programs — the length map alone (``q_star``, ``chi1``,
:func:`~jaxflow.free_moments`), and the full mean-field theory with the critical-line search
(``mean_field``, ``c_star``, ``depth_scales``, ``critical_sigma_w2``, ``phase_diagram``) — each
compiled once per (quadrature, tol) for all registered activations together (the activation is a
``lax.switch`` index) and cached; inputs are padded to a few batch sizes so that arrays of similar
size share a program.

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in deep neural networks
  through transient chaos", NeurIPS 2016.
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation", ICLR 2017.
  Tsuchida, Pearce, van der Heide, Roosta & Gallagher, "Avoiding kernel fixed points: computing
  with ELU and GELU infinite networks", AAAI 2021.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxflow.activations import Activation
from jaxflow.theory._solvers import _check_inputs, _float_dtype, evaluate, evaluate_mean_field
from jaxflow.theory.results import (
    TOL,
    DepthScales,
    FixedPoint,
    MeanField,
    PhaseDiagram,
    Prediction,
)

__all__ = [
    "c_star",
    "chi1",
    "critical_sigma_w2",
    "depth_scales",
    "mean_field",
    "phase_diagram",
    "q_star",
]


def mean_field(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> MeanField:
    """Every mean-field quantity: q*, V′(q*), χ₁, c*, χ_c, ξ_q, ξ_c, with status flags.

    Args:
      activation: a name from :data:`jaxflow.ACTIVATIONS` or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² (W_ij ~ N(0, σ_w²/n)); > 0; array-valued broadcasts.
      sigma_b2: bias variance σ_b²; ≥ 0.
      q0: the first layer's pre-activation variance, which picks the fixed point where the length
        map has several (see ``unique``); > 0.
      quadrature: ``"split"`` (default; accurate for kinks and any q) or ``"hermite"`` (plain
        128-node Gauss–Hermite). See :mod:`jaxflow.theory._quadrature`.
      tol: marginality tolerance (slopes within tol of 1 are marginal, |χ₁ − 1| ≤ tol critical).

    Returns:
      A :class:`MeanField`; every field has the broadcast shape of ``sigma_w2, sigma_b2, q0``.

    Raises:
      ValueError: for an unknown activation or quadrature, or concrete invalid variances.

    References:
      Poole et al., NeurIPS 2016; Schoenholz et al., "Deep information propagation", ICLR 2017
      (§2 for q*, c* and χ₁, §3 for ξ_q and ξ_c; the formulas are in the module docs).

    Example:
      >>> import jaxflow as jf
      >>> mf = jf.mean_field("tanh", 2.0, 0.0)        # chaotic: c* < 1
      >>> bool(mf.chi1 > 1), bool(mf.c_star < 1), bool(mf.chi_c < 1)
      (True, True, True)
    """
    return evaluate_mean_field(activation, (sigma_w2, sigma_b2, q0), None, quadrature, tol)[0]


def q_star(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> FixedPoint:
    """The stable fixed point q* of the length map q ← σ_w² E[φ(√q z)²] + σ_b².

    Args:
      activation, sigma_w2, sigma_b2, q0, quadrature, tol: as for :func:`mean_field`.

    Returns:
      A :class:`FixedPoint` (broadcast shape of the inputs).

    References:
      Poole et al., NeurIPS 2016 (the length map); Schoenholz et al., ICLR 2017, §2.

    Example:
      >>> import jaxflow as jf
      >>> fp = jf.q_star("relu", 2.0, 0.0)   # every q is a fixed point: not determined
      >>> float(fp.q_star), jf.PredictionStatus.name_of(fp.status), bool(fp.unique)
      (nan, 'marginal', False)
    """
    mf = evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol)
    return FixedPoint(mf.q_star, mf.slope, mf.status, mf.unique)


def chi1(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> Prediction:
    """χ₁ = σ_w² E[φ′(√q* z)²], the mean squared singular value of one layer's Jacobian.

    Where q* = 0 this is the q → 0⁺ limit, where q* diverges or is undetermined the q → ∞ limit
    (see :mod:`jaxflow.theory.propagation`); ``status`` says which.

    Args:
      activation, sigma_w2, sigma_b2, q0, quadrature, tol: as for :func:`mean_field`.

    Returns:
      A :class:`Prediction` ``(value=χ₁, status)``.

    References:
      Schoenholz et al., ICLR 2017, §2: χ₁ = σ_w² ∫Dz φ′(√q* z)².

    Example:
      >>> import jaxflow as jf
      >>> round(float(jf.chi1("relu", 1.5, 0.0).value), 6)   # σ_w²/2, the q → 0⁺ limit
      0.75
    """
    mf = evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol)
    return Prediction(mf.chi1, mf.status)


def c_star(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> Prediction:
    """The stable fixed point c* ∈ [0, 1] of the correlation map (1 in the ordered phase).

    Args:
      activation, sigma_w2, sigma_b2, q0, quadrature, tol: as for :func:`mean_field`.

    Returns:
      A :class:`Prediction` ``(value=c*, status)``.

    References:
      Poole et al., NeurIPS 2016 (the correlation map); Schoenholz et al., ICLR 2017, §2.

    Example:
      >>> import jaxflow as jf
      >>> float(jf.c_star("tanh", 0.5, 0.1).value)
      1.0
    """
    mf = mean_field(activation, sigma_w2, sigma_b2, q0=q0, quadrature=quadrature, tol=tol)
    return Prediction(mf.c_star, mf.status)


def depth_scales(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any = 0.0,
    *,
    q0: Any = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> DepthScales:
    """Schoenholz et al.'s depth scales ξ_q = −1/ln|V′(q*)| and ξ_c = −1/ln χ_c.

    Args:
      activation, sigma_w2, sigma_b2, q0, quadrature, tol: as for :func:`mean_field`.

    Returns:
      A :class:`DepthScales`.

    References:
      Schoenholz et al., ICLR 2017, §3: ξ_q⁻¹ = −ln[χ₁ + σ_w²∫Dz φ″(√q* z)φ(√q* z)] and
      ξ_c⁻¹ = −ln[σ_w²∫Dz₁Dz₂ φ′(u₁)φ′(u₂)].

    Example:
      >>> import jaxflow as jf
      >>> ds = jf.depth_scales("linear", 0.5, 1.0)   # V(q) = q/2 + 1: ξ_q = ξ_c = 1/ln 2
      >>> round(float(ds.xi_q), 4), round(float(ds.xi_c), 4)
      (1.4427, 1.4427)
    """
    mf = mean_field(activation, sigma_w2, sigma_b2, q0=q0, quadrature=quadrature, tol=tol)
    return DepthScales(mf.xi_q, mf.xi_c, mf.status)


def critical_sigma_w2(
    activation: str | Activation,
    sigma_b2: Any = 0.0,
    *,
    quadrature: str = "split",
    tol: float = TOL,
) -> Prediction:
    """The weight variance σ_w² on the edge of chaos, χ₁(σ_w², σ_b²) = 1, for each σ_b².

    The critical line is traced along the curve of fixed points (Poole et al. 2016): for each
    q > σ_b², q is a fixed point of the length map for σ_w²(q) = (q − σ_b²)/E[φ(√q z)²], where
    χ₁ = σ_w²(q)·E[φ′(√q z)²]. The smallest q (hence, for the registered activations, the smallest
    σ_w²) at which χ₁ − 1 turns non-negative is located on a log grid and refined by bisection —
    one 1-D quadrature per point instead of a fixed-point solve per trial σ_w². Where the crossing
    is a limit of the curve it is reported as that limit: q* → 0 for odd φ with σ_b² = 0
    (σ_w² = 1/φ′(0)²: tanh 1, erf π/4) and q* → ∞ where χ₁ → 1 from below as q grows (ReLU: 2).
    This is a fixed point of the length map but, where the map has several attractors
    (:func:`q_star`'s ``unique`` is False), not necessarily the one reached from a given q0.

    Args:
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_b2: bias variance(s) σ_b² ≥ 0.
      quadrature: ``"split"`` or ``"hermite"``.
      tol: how close to 0 χ₁ − 1 must come at an end of the curve to count as a crossing there.

    Returns:
      A :class:`Prediction` ``(value=σ_w², status)``; status ``NOT_FOUND`` (value ``nan``) where
      χ₁ < 1 along the whole curve.

    References:
      Poole et al., NeurIPS 2016; Schoenholz et al., ICLR 2017 (the order-to-chaos line χ₁ = 1).

    Example:
      >>> import jaxflow as jf
      >>> round(float(jf.critical_sigma_w2("erf", 0.0).value), 4)   # π/4
      0.7854
    """
    return evaluate_mean_field(activation, None, sigma_b2, quadrature, tol)[1]


def phase_diagram(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any,
    *,
    q0: float = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> PhaseDiagram:
    """Mean-field theory on a (σ_w², σ_b²) grid and the critical line, in one compiled call.

    The whole grid and the critical σ_w² for every σ_b² are one call of one jitted program (nested
    ``vmap``s; the same program :func:`mean_field` and :func:`critical_sigma_w2` use): no Python
    loop over grid points, and a second diagram of a similar size compiles nothing.

    Args:
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_w2: (n_w,) weight variances, each > 0.
      sigma_b2: (n_b,) bias variances, each ≥ 0.
      q0: the starting variance of the length map.
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance.

    Returns:
      A :class:`PhaseDiagram` (its ``mean_field`` fields are (n_w, n_b)).

    References:
      Poole et al., NeurIPS 2016 (Fig. 2's phase diagram); Schoenholz et al., ICLR 2017.

    Example:
      >>> import jaxflow as jf
      >>> pd = jf.phase_diagram("tanh", [0.5, 2.0], [0.0, 0.1])
      >>> pd.mean_field.chi1.shape, pd.critical_sigma_w2.value.shape
      ((2, 2), (2,))
    """
    _check_inputs(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    dtype = _float_dtype(sigma_w2, sigma_b2, q0)
    sw2 = jnp.asarray(sigma_w2, dtype)
    sb2 = jnp.asarray(sigma_b2, dtype)
    if sw2.ndim != 1 or sb2.ndim != 1 or sw2.size == 0 or sb2.size == 0:
        raise ValueError(
            "sigma_w2 and sigma_b2 must be non-empty 1-D grids; "
            f"got shapes {sw2.shape} and {sb2.shape}"
        )
    w, b = jnp.meshgrid(sw2, sb2, indexing="ij")
    grid, crit = evaluate_mean_field(activation, (w, b, q0), sb2, quadrature, tol)
    return PhaseDiagram(sw2, sb2, grid, crit)

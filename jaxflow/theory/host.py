"""χ₁ and ξ_c by the theory's own rule, in float64 NumPy on the host: no compilation.

:func:`jaxflow.theory.mean_field` runs one jitted program for every registered activation; its
first call in a process compiles it (seconds on a CPU), which is most of the time a small
trainability grid spends on its mean-field table. This module evaluates the same quantities by
the same steps — the split quadrature rule with the same panels (:mod:`._quadrature`), the length
map's fixed point bracketed on the same log grid and refined by bisection in log q, χ₁ =
σ_w² E[φ′²], and on the chaotic side c* = 1 − ε* from the same g(ε) with the trivial root
divided out, 1 − χ_c formed without cancellation (the formulas are in
:func:`jaxflow.theory._solvers._solve_c`) — in float64 NumPy, for a handful of (σ_w², σ_b²) in
milliseconds. The 2-D rule uses the panel order of the dtype jax computes in (5 points in float32,
8 in float64), so the result equals the compiled theory's to that dtype's rounding, amplified as
the theory's own values are by the condition number 1/(1 − χ_c) (see the propagation docs).

It answers only the plain case and says so by returning ``None`` otherwise, for the caller to
use the compiled theory: an activation without a NumPy form here (erf and gelu: NumPy has no
erf) or a custom one, a length map that does not reach a finite positive fixed point from q0 = 1
or is marginal there (``status`` other than OK), and the neighbourhood of the edge of chaos,
|C′(1) − 1| ≤ :data:`EDGE`, where the theory's dtype-dependent conventions (``critical``, ξ_c = ∞
within the dtype's resolution) decide and float32 carries ≲ 3 digits anyway.
"""

from __future__ import annotations

import math

import numpy as np

from jaxflow.theory import _quadrature

EDGE = 1e-3
"""|C′(1) − 1| at or below which the host path defers to the compiled theory."""

_LEAKY = 0.01


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _pair(fn, derivative):
    return lambda z: (fn(z), derivative(z))


# φ and φ′ in float64 NumPy, written as jaxflow.activations writes them (same kink conventions).
_NUMPY = {
    "relu": _pair(lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "leaky_relu": _pair(
        lambda z: np.where(z >= 0, z, _LEAKY * z), lambda z: np.where(z >= 0, 1.0, _LEAKY)
    ),
    "sigmoid": _pair(_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": lambda z: (lambda t: (t, 1.0 - t * t))(np.tanh(z)),
    "hard_tanh": _pair(
        lambda z: np.where(np.abs(z) < 1, z, np.sign(z)), lambda z: (np.abs(z) < 1).astype(float)
    ),
    "silu": _pair(
        lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))
    ),
    "elu": _pair(
        lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
        lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))),
    ),
    "softplus": _pair(lambda z: np.logaddexp(0.0, z), _sigmoid),
    "linear": _pair(lambda z: z, np.ones_like),
}

_MAX_KINKS = 2  # the compiled theory pads every activation's kinks to two (with 0.0)


def _features(kinks):
    padded = tuple(kinks) + (0.0,) * (_MAX_KINKS - len(kinks))
    return np.concatenate([_quadrature._U_BREAKS, np.asarray(padded, float)])


def _standard_nodes(mean, sd, features, order):
    """The split rule's nodes z and weights w for N(mean, sd²), batched over ``mean`` (…,)."""
    mean = np.asarray(mean, float)[..., None]
    z_breaks = np.broadcast_to(_quadrature._Z_BREAKS, mean.shape[:-1] + (13,))
    breaks = np.concatenate([z_breaks, (features - mean) / sd], axis=-1)
    breaks = np.sort(np.clip(breaks, _quadrature._Z_BREAKS[0], _quadrature._Z_BREAKS[-1]), -1)
    x, w = _quadrature._LEGENDRE[order]
    mid, half = (breaks[..., 1:] + breaks[..., :-1]) / 2, (breaks[..., 1:] - breaks[..., :-1]) / 2
    z = (mid[..., None] + half[..., None] * x).reshape(mean.shape[:-1] + (-1,))
    weight = (half[..., None] * w).reshape(z.shape) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, weight


def _nodes(q, features, order=_quadrature.PANEL_ORDER):
    sd = math.sqrt(max(q, _quadrature.VAR_FLOOR))
    z, w = _standard_nodes(0.0, sd, features, order)
    return sd * z, w


def _moments(phi, q, features):
    """(E[φ²], E[uφφ′]/q, E[φ′²]) for u ~ N(0, q)."""
    u, w = _nodes(q, features)
    value, slope = phi(u)
    m = w @ np.stack([value * value, u * value * slope, slope * slope], axis=-1)
    m[1] /= max(q, _quadrature.VAR_FLOOR)
    return m


def _bisect(test, lo, hi, steps):
    """Geometric bisection keeping test(lo) True; the last midpoint and its aux."""
    mid, aux = lo, None
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        keep, aux = test(mid)
        lo, hi = (mid, hi) if keep else (lo, mid)
    return mid, aux


def _fixed_point(phi, sigma_w2, sigma_b2, q0, features, tol):
    """(q*, moments there) reached from q0, or None unless the theory's status there is OK."""
    from jaxflow.theory._solvers import _GRID, Q_MAX, Q_MIN

    grid = np.exp(np.linspace(math.log(Q_MIN), math.log(Q_MAX), _GRID))

    def G(q):
        m = _moments(phi, q, features)
        return (sigma_w2 * m[0] + sigma_b2) / q - 1.0, m

    Gg = np.asarray([G(q)[0] for q in grid])
    up = G(q0)[0] > 0
    if up:
        above = (grid > q0) & (Gg <= 0)
        if not above.any():
            return None  # diverges or marginal at q → ∞
        i = int(np.argmax(above))
        lo, hi = max(q0, grid[max(i - 1, 0)]), grid[i]
    else:
        below = (grid < q0) & (Gg > 0)
        if not below.any():
            return None  # q* = 0
        j = _GRID - 1 - int(np.argmax(below[::-1]))
        lo, hi = grid[j], min(q0, grid[min(j + 1, _GRID - 1)])
    q, m = _bisect(lambda q: (lambda g: (g[0] > 0, g[1]))(G(q)), lo, hi, 64)
    if (not up and np.all(np.abs(Gg[grid < q]) <= tol)) or abs(sigma_w2 * m[1] - 1.0) <= tol:
        return None  # a root the map cannot separate from 0, or a marginal slope
    return q, m


def _pair_moments(phi, q, eps, features, order):
    """The three bivariate expectations of ``_solve_c``'s test at c = 1 − eps (its expect_pair)."""
    u1, w1 = _nodes(q, features, order)
    sd = math.sqrt(max(q * eps * (2.0 - eps), _quadrature.VAR_FLOOR))
    z2, w2 = _standard_nodes(u1 - eps * u1, sd, features, order)
    delta = (-eps * u1)[:, None] + sd * z2
    (v1, s1), (v2, s2) = phi(u1), phi(u1[:, None] + delta)
    v1, s1, u = v1[:, None], s1[:, None], u1[:, None]
    r = (v2 - v1) - s1 * delta
    curvature = 0.5 * eps * s1 * s1 * (u * u - q) + (s1 * delta * r + 0.5 * r * r) / eps
    terms = (curvature, 0.5 * np.square(s2 - s1), v1 * v2)
    return np.asarray([w1 @ np.sum(w2 * t, axis=1) for t in terms])


def chi1_xi_c(activation: str, sigma_w2: float, sigma_b2: float, *, float64: bool, tol: float):
    """(χ₁, ξ_c) at (σ_w², σ_b²) with q0 = 1, or ``None`` where the compiled theory must answer
    (see the module docs). ``float64`` picks the 2-D panel order of that dtype's theory."""
    from jaxflow.activations import ACTIVATIONS

    phi = _NUMPY.get(activation)
    if phi is None or not (sigma_w2 > 0 and sigma_b2 >= 0):
        return None
    features = _features(ACTIVATIONS[activation].kinks)
    reached = _fixed_point(phi, sigma_w2, sigma_b2, 1.0, features, tol)
    if reached is None:
        return None
    q, m = reached
    chi1 = sigma_w2 * m[2]
    norm = sigma_w2 * m[0] + sigma_b2
    excess = chi1 * q / norm - 1.0  # C′(1) − 1
    if abs(excess) <= EDGE:
        return None
    if excess < 0:  # ordered: c* = 1, χ_c = C′(1)
        gap = -excess
    else:
        gain = sigma_w2 / norm
        order = _quadrature.PANEL_ORDER if float64 else _quadrature.PANEL_ORDER_2D

        def test(eps):
            mm = _pair_moments(phi, q, eps, features, order)
            if eps > 0.5:
                below = (sigma_w2 * mm[2] + sigma_b2) / norm < 1.0 - eps
            else:
                below = excess + gain * mm[0] > 0
            return below, mm[1]

        # 40 halvings of ln ε over [ε_f32², 1]: ε* to 3e-11 relative, far below float32.
        _, spread = _bisect(test, np.finfo(np.float32).eps ** 2, 1.0, 40)
        gap = max(gain * q * spread - excess, 0.0)
    xi_c = -1.0 / math.log1p(-gap) if gap > 0 else math.inf
    return float(chi1), float(xi_c)

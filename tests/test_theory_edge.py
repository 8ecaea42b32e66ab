"""c*, χ_c and ξ_c at the edge of chaos, against independent float64 references.

Near χ₁ = 1 the correlation fixed point c* → 1 and ξ_c → ∞: C(c) − c vanishes to second order
there, so these are the numbers a solver loses first. The references are written from the papers,
not from jaxflow's quadrature:

* erf, closed forms (Williams 1997, "Computing with infinite networks"): for (u₁, u₂) centred
  Gaussian with covariance q[[1, c], [c, 1]],
  E[erf(u₁)erf(u₂)] = (2/π) arcsin(2qc/(1 + 2q)), and since erf′(u) = (2/√π)e^{−u²} and
  E[exp(−uᵀu)] = det(I + 2Σ)^{−1/2} for u ~ N(0, Σ),
  E[erf′(u₁)erf′(u₂)] = (4/π)/√((1 + 2q)² − (2qc)²) (the c-derivative of the first over q, as
  Price's theorem requires). Solved in mpmath with 20 digits.
* tanh (and erf again), Mehler's expansion (Daniely, Frostig & Singer 2016): with
  φ(√q z) = Σ_k a_k He_k(z)/√k!, E[φ(u₁)φ(u₂)] = Σ_k a_k² c^k, so
  1 − C(1 − ε) = σ_w² Σ_k a_k² (1 − (1 − ε)^k)/q* and χ_c = σ_w² Σ_k k a_k² c^{k−1}/q*, summed with
  expm1/log1p so nothing cancels; a_k by 300-node Gauss–Hermite in float64, q* and χ₁ by mpmath
  quadrature with 20 digits.

Schoenholz et al. (2017), eq. 9: ξ_c = −1/ln χ_c, χ_c = σ_w² E[φ′(u₁)φ′(u₂)] at c*.
"""

import functools
import math

import jax
import mpmath as mp
import numpy as np
import pytest
from numpy.polynomial import hermite_e
from scipy import optimize

import jaxflow as jf
from helpers import NP_ACTIVATIONS, gaussian_expectation, tol

# σ_w² on the critical line at σ_b² = 0.05 (the issue's values; the references below compute χ₁
# at each σ_w² they are given, so these need not be exact).
CRITICAL = {"tanh": 1.760954639607, "erf": 1.375839007347}
OFFSETS = (1e-2, -1e-2, 1e-3, -1e-3, 1e-4, -1e-4)  # χ₁ − 1 ≈ 0.4 × offset
DPS = 20


def _mp_expect(f, q):
    with mp.workdps(DPS):
        s = mp.sqrt(q)
        value = mp.quad(lambda z: f(s * z) * mp.exp(-z * z / 2), [-mp.inf, 0, mp.inf])
        return value / mp.sqrt(2 * mp.pi)


def _mp_length(name, sigma_w2, sigma_b2):
    """(q*, χ₁) in mpmath: erf in closed form, tanh by 40-digit quadrature."""
    with mp.workdps(DPS):
        w, b = mp.mpf(sigma_w2), mp.mpf(sigma_b2)
        if name == "erf":
            q = mp.findroot(lambda q: w * 2 / mp.pi * mp.asin(2 * q / (1 + 2 * q)) + b - q, 0.5)
            return q, w * 4 / mp.pi / mp.sqrt(1 + 4 * q)
        q = mp.findroot(lambda q: w * _mp_expect(lambda u: mp.tanh(u) ** 2, q) + b - q, 0.5)
        return q, w * _mp_expect(lambda u: mp.sech(u) ** 4, q)


@functools.cache
def _gauss_hermite(nodes):
    z, w = hermite_e.hermegauss(nodes)
    return z, w / math.sqrt(2 * math.pi)


def _hermite_power(name, q, nodes=300):
    """a_k² (k = 0…nodes/2) for φ(√q z) = Σ a_k He_k(z)/√k!, by Gauss–Hermite in float64."""
    z, w = _gauss_hermite(nodes)
    f = NP_ACTIVATIONS[name][0](math.sqrt(q) * z)
    previous, current = np.zeros_like(z), np.ones_like(z)
    coefficients = []
    for k in range(nodes // 2):
        coefficients.append(np.sum(w * f * current))
        previous, current = current, (z * current - math.sqrt(k) * previous) / math.sqrt(k + 1)
    return np.square(coefficients)


@functools.cache
def mehler_reference(name, sigma_w2, sigma_b2):
    """(χ₁ − 1, 1 − c*, 1 − χ_c, ξ_c) from Mehler's expansion (module docs)."""
    q, chi1 = _mp_length(name, sigma_w2, sigma_b2)
    power = _hermite_power(name, float(q))
    k = np.arange(power.size)
    excess = float(chi1 - 1)
    # Σ k a_k² σ_w²/q* is χ₁ again: the expansion has converged.
    assert abs(sigma_w2 * np.sum(k * power) / float(q) - float(chi1)) < 1e-13

    def g(eps):  # (1 − C(1 − ε))/ε − 1 = (χ₁ − 1) − σ_w² Σ a_k² (kε − 1 + (1 − ε)^k)/(q*ε)
        tail = k * eps + np.expm1(k * np.log1p(-eps))
        return excess - sigma_w2 * np.sum(power * tail) / (float(q) * eps)

    eps = 0.0
    if excess > 0:  # odd φ with σ_b² = 0: C(0) = 0, so c* = 0
        odd = sigma_b2 == 0 and np.all(power[::2] < 1e-30)
        eps = 1.0 if odd else optimize.brentq(g, 1e-14, 1 - 1e-12, xtol=1e-300, rtol=1e-15)
    gap = -excess + sigma_w2 * np.sum(k * power * -np.expm1((k - 1) * np.log1p(-eps))) / float(q)
    return excess, eps, gap, -1 / math.log1p(-gap)


@functools.cache
def erf_reference(sigma_w2, sigma_b2):
    """(χ₁ − 1, 1 − c*, 1 − χ_c, ξ_c) for erf from the closed forms, in mpmath."""
    q, chi1 = _mp_length("erf", sigma_w2, sigma_b2)
    with mp.workdps(DPS):
        w, b = mp.mpf(sigma_w2), mp.mpf(sigma_b2)

        def C(c):
            return (w * 2 / mp.pi * mp.asin(2 * q * c / (1 + 2 * q)) + b) / q

        eps = mp.mpf(0)
        if chi1 > 1 and sigma_b2 == 0:  # erf is odd: C(0) = 0, so c* = 0
            eps = mp.mpf(1)
        elif chi1 > 1:
            eps = mp.findroot(
                lambda e: (1 - C(1 - e)) / e - 1, (mp.mpf(1e-20), mp.mpf(1)), solver="anderson"
            )
        chi_c = w * 4 / mp.pi / mp.sqrt((1 + 2 * q) ** 2 - (2 * q * (1 - eps)) ** 2)
        return float(chi1 - 1), float(eps), float(1 - chi_c), float(-1 / mp.log(chi_c))


def _references(name, sigma_w2, sigma_b2):
    if name == "erf":
        return erf_reference(sigma_w2, sigma_b2)
    return mehler_reference(name, sigma_w2, sigma_b2)


def _rel(computed, reference):
    return abs(float(computed) - reference) / abs(reference)


def test_the_two_erf_references_agree():
    """Mehler's series against erf's closed forms: the series reference is sound."""
    for sigma_w2, sigma_b2 in ((1.375839007347 * 1.0001, 0.05), (2.0, 0.3)):
        series = mehler_reference("erf", sigma_w2, sigma_b2)
        closed = erf_reference(sigma_w2, sigma_b2)
        for a, b in zip(series, closed, strict=True):
            assert _rel(a, b) < 1e-10


# Each compiles the float64 mean-field program (4-8 s on 2 cores): the slow pass runs them; the
# fast suite keeps the float32 conditioning test below and the float64 scipy comparisons of
# test_theory.py.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CRITICAL))
def test_c_star_and_xi_c_to_1e_6_at_the_edge_of_chaos_float64(name):
    """χ₁ − 1 = ±4e-3, ±4e-4, ±4e-5 at σ_b² = 0.05: 1 − c*, 1 − χ_c and ξ_c to 1e-6 relative."""
    sigma_w2 = [CRITICAL[name] * (1 + d) for d in OFFSETS]
    with jax.enable_x64(True):
        mf = jax.tree.map(np.asarray, jf.mean_field(name, np.asarray(sigma_w2), 0.05))
    rtol = tol("float64", "edge_of_chaos")
    for i, w in enumerate(sigma_w2):
        excess, eps, gap, xi_c = _references(name, w, 0.05)
        assert 0.3 < abs(excess) / abs(OFFSETS[i]) < 0.5  # χ₁ − 1 as the docstring says
        assert _rel(mf.chi1[i] - 1, excess) < rtol
        if excess > 0:
            assert _rel(1 - mf.c_star[i], eps) < rtol, (w, float(1 - mf.c_star[i]), eps)
        else:
            assert float(mf.c_star[i]) == 1.0
        assert _rel(1 - mf.chi_c[i], gap) < rtol, (w, float(1 - mf.chi_c[i]), gap)
        assert _rel(mf.xi_c[i], xi_c) < rtol, (w, float(mf.xi_c[i]), xi_c)
        # The tolerance only labels: ξ_c is finite although |χ₁ − 1| ≤ tol = 1e-4 at ±4e-5.
        assert bool(mf.critical[i]) == (abs(excess) <= jf.theory.results.TOL)


def test_the_issue_examples_in_float64():
    """Issue 15's numbers: ξ_c ≈ 26,643 (tanh), 24,933 (erf) and 1,812.4 (erf, σ_b² = 0.3).

    The third is σ_w² = 1.001 × the critical 1.963070586514732 at σ_b² = 0.3 (χ₁ − 1 = 5.5e-4).
    """
    cases = {
        "tanh": [(CRITICAL["tanh"] * (1 + 1e-4), 0.05, 26643.4, 2.316e-4)],
        "erf": [
            (CRITICAL["erf"] * (1 + 1e-4), 0.05, 24932.6, 2.301e-4),
            (1.963070586514732 * 1.001, 0.3, 1812.39, 1.0023e-3),
        ],
    }
    rtol = tol("float64", "edge_of_chaos")
    for name, rows in cases.items():
        w, b = (np.array([row[i] for row in rows]) for i in (0, 1))
        with jax.enable_x64(True):
            mf = jax.tree.map(np.asarray, jf.mean_field(name, w, b))
        for i, (sigma_w2, sigma_b2, xi_c, eps) in enumerate(rows):
            excess, ref_eps, _, ref_xi_c = _references(name, sigma_w2, sigma_b2)
            assert round(ref_xi_c, 2 if xi_c < 2e3 else 1) == xi_c
            assert ref_eps == pytest.approx(eps, rel=1e-3)
            assert _rel(mf.xi_c[i], ref_xi_c) < rtol and _rel(1 - mf.c_star[i], ref_eps) < rtol
            assert bool(mf.critical[i]) == (excess <= jf.theory.results.TOL)


def test_flags_and_depth_scales_are_consistent_at_genuine_fixed_points():
    """Where 0 < q* < ∞: c* < 1 exactly where χ₁ > 1, ξ_c is finite wherever χ₁ ≠ 1 to the
    dtype's resolution (|χ₁ − 1| here down to 4e-5 in float32, 4e-9 in float64), and critical is
    |χ₁ − 1| ≤ tol, which only labels."""
    for x64, offsets in ((False, (-1e-4, 1e-4, 1e-3)), (True, (-1e-8, 1e-8, 1e-3))):
        sigma_w2 = np.array([CRITICAL["erf"] * (1 + d) for d in offsets] + [1.0, 2.0])
        with jax.enable_x64(x64):
            mf = jax.tree.map(np.asarray, jf.mean_field("erf", sigma_w2, 0.05))
        chi1 = mf.chi1.astype(np.float64)
        assert np.all(np.isfinite(mf.q_star)) and np.all(mf.q_star > 0)
        np.testing.assert_array_equal(mf.c_star < 1, chi1 > 1)
        assert np.all(np.isfinite(mf.xi_c)) and np.all(mf.xi_c > 0)
        if not x64:
            ds = jf.depth_scales("erf", sigma_w2, 0.05)
            np.testing.assert_array_equal(ds.xi_c, mf.xi_c)
        np.testing.assert_array_equal(mf.critical, np.abs(chi1 - 1) <= jf.theory.results.TOL)
        assert mf.critical[:2].all() and not mf.critical[2:].any()


def _float64_reference(name, sigma_w2, sigma_b2):
    """(c*, ξ_c, 1 − χ_c) for an ordinary grid point, in float64 from SciPy and Mehler's series."""
    if name == "erf":
        _, eps, gap, xi_c = erf_reference(sigma_w2, sigma_b2)
        return 1 - eps, xi_c, gap
    phi, dphi = NP_ACTIVATIONS[name]
    q = optimize.brentq(
        lambda q: sigma_w2 * gaussian_expectation(lambda u: phi(u) ** 2, q) + sigma_b2 - q,
        1e-8,
        1e3,
        xtol=1e-15,
        rtol=1e-14,
    )
    chi1 = sigma_w2 * gaussian_expectation(lambda u: dphi(u) ** 2, q)
    power = _hermite_power(name, q)
    k = np.arange(power.size)
    if chi1 <= 1:
        return 1.0, -1 / math.log(chi1), 1 - chi1

    def g(eps):
        return sigma_w2 * np.sum(power * -np.expm1(k * np.log1p(-eps))) / (q * eps) - 1

    if sigma_b2 == 0:  # odd φ: C(0) = 0, so c* = 0
        eps = 1.0
    else:
        eps = optimize.brentq(g, 1e-12, 1 - 1e-12, xtol=1e-300, rtol=1e-15)
    chi_c = sigma_w2 * np.sum(k * power * (1 - eps) ** np.maximum(k - 1, 0)) / q
    return 1 - eps, -1 / math.log(chi_c), 1 - chi_c


# Ordered, chaotic and deeply chaotic points (σ_b² = 0 with χ₁ < 1 has q* = 0, a limit, not a
# fixed point to compare).
GRID = [(0.8, 0.05), (0.8, 0.3)] + [(w, b) for w in (1.5, 2.0, 3.0) for b in (0.0, 0.05, 0.3)]


@pytest.mark.parametrize("name", ["erf", "tanh"])
def test_float32_accuracy_is_the_conditioning_of_the_fixed_point(name):
    """float32 on an ordinary grid: |δc*| and |δξ_c|/ξ_c ≤ k·2⁻²³/(1 − χ_c).

    1/(1 − χ_c) is the condition number of c* = C(c*): a rounding δ in C moves c* by
    δ/(1 − C′(c*)), and ξ_c = −1/ln χ_c by the same factor relative. Where 1 − χ_c ≥ 0.5 that is
    c* to 4e-6 absolute and ξ_c to 4e-6 relative; at 1 − χ_c = 0.01 a hundred times looser.
    """
    w = np.array([p[0] for p in GRID], np.float32)
    b = np.array([p[1] for p in GRID], np.float32)
    mf = jf.mean_field(name, w, b)
    assert mf.c_star.dtype == np.float32
    k = tol("float32", "edge_of_chaos")
    for i, (sigma_w2, sigma_b2) in enumerate(GRID):
        c_star, xi_c, gap = _float64_reference(name, float(w[i]), float(b[i]))
        bound = k / abs(gap)
        assert abs(float(mf.c_star[i]) - c_star) <= bound, (sigma_w2, sigma_b2)
        assert _rel(mf.xi_c[i], xi_c) <= bound, (sigma_w2, sigma_b2, float(mf.xi_c[i]), xi_c)

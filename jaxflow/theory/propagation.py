"""Mean-field signal propagation: q*, χ₁, c*, the depth scales and the order-to-chaos line.

For a wide MLP z^l = W^l φ(z^{l−1}) + b^l with W_ij ~ N(0, σ_w²/n) and b_i ~ N(0, σ_b²) (σ² are
**variances**), the pre-activations of one input are Gaussian with variance q^l and those of two
inputs have correlation c^l, which obey (Poole et al. 2016; Schoenholz et al. 2017, eqs. 2–3)

    length map       q^l = V(q^{l−1}) = σ_w² ∫Dz φ(√q^{l−1} z)² + σ_b²,
    correlation map  c^l = C(c^{l−1}) = [σ_w² ∫Dz₁Dz₂ φ(u₁)φ(u₂) + σ_b²] / q*,
                     u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1 − c²) z₂),

with Dz the standard Gaussian measure. Their linearisations at the fixed points give
(Schoenholz et al. 2017, eq. 4 and §3):

    χ₁ = σ_w² ∫Dz φ′(√q* z)²                       (C′(1): order χ₁ < 1, chaos χ₁ > 1),
    ξ_q⁻¹ = −ln[χ₁ + σ_w² ∫Dz φ″(√q* z) φ(√q* z)]   (q^l − q* ∝ e^{−l/ξ_q}),
    χ_c = σ_w² ∫Dz₁Dz₂ φ′(u₁)φ′(u₂) at c*,          ξ_c⁻¹ = −ln χ_c   (c^l − c* ∝ e^{−l/ξ_c}).

jaxflow evaluates the bracket of ξ_q as V′(q*) = σ_w² ∫Dz z φ(√q* z) φ′(√q* z)/√q*, which equals
χ₁ + σ_w²∫Dz φ″φ by Gaussian integration by parts for smooth φ and is the true slope of the length
map for kinked φ too (hard_tanh's φ″ is a pair of deltas). In the ordered phase c* = 1 and
χ_c = χ₁, so ξ_c = −1/ln χ₁; at χ₁ = 1 it diverges (the edge of chaos).

Conventions and edge cases, reported in every result rather than hidden:

* **Which fixed point.** q* is the fixed point the length map reaches from ``q0`` (the first layer's
  pre-activation variance, default 1): the root of V(q) = q next above q0 if V(q0) > q0, next below
  it otherwise (the map is increasing for every registered activation, so iterates move
  monotonically). Roots are located on a log grid of 97 points over [1e-20, 1e20] and refined by
  bisection in log q. Where the map has more than one attractor (GELU and SiLU with σ_w² ≳ 2 and a
  small σ_b²: a stable small-q fixed point, and divergence beyond an unstable one; Tsuchida et al.
  2021), ``unique`` is False and q* depends on q0. c* is unique: C is a power series in c with
  non-negative coefficients (Mehler's expansion), hence convex on [0, 1] with C(1) = 1, so c* = 1 when
  χ₁ ≤ 1 and c* is the single root in [0, 1) when χ₁ > 1, found by bisection.
* **status** (``STATUS_NAMES``): ``OK``; ``MARGINAL`` where the length map's slope at the fixed point
  is within ``tol`` of 1 (ξ_q > 1/tol layers: tanh at σ_w² = 1, σ_b² = 0) or where V(q)/q → 1
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
  on q at all. ``xi_q`` is ``nan`` where q* diverges.
* **critical** is |χ₁ − 1| ≤ tol: c* = 1 is then marginal and ξ_c is infinite or larger than 1/tol.

All functions are pure, jit- and vmap-compatible, and broadcast over array-valued σ_w², σ_b², q0.
They run three compiled kernels — the length map, the correlation map and the critical-line
search — each compiled once per (quadrature, tol) for all registered activations together (the
activation is a ``lax.switch`` index) and cached; inputs are padded to a few batch sizes so that
arrays of similar size share a program.

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in deep neural networks
  through transient chaos", NeurIPS 2016.
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation", ICLR 2017.
  Tsuchida, Pearce, van der Heide, Roosta & Gallagher, "Avoiding kernel fixed points: computing
  with ELU and GELU infinite networks", AAAI 2021.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow.activations import ACTIVATIONS, Activation, get_activation
from jaxflow.theory import _quadrature
from jaxflow.theory._quadrature import check_rule, expect, expect2

__all__ = [
    "DepthScales",
    "FixedPoint",
    "MeanField",
    "PhaseDiagram",
    "Prediction",
    "STATUS_NAMES",
    "c_star",
    "chi1",
    "critical_sigma_w2",
    "depth_scales",
    "mean_field",
    "phase_diagram",
    "q_star",
    "status_name",
]

STATUS_NAMES = ("ok", "marginal", "diverges", "invalid", "not_found")
"""Names of the integer ``status`` codes in theory results, indexed by code."""
OK, MARGINAL, DIVERGES, INVALID, NOT_FOUND = range(len(STATUS_NAMES))

Q_MIN, Q_MAX = 1e-20, 1e20
_GRID = 97
TOL = 1e-4


def status_name(status) -> str | np.ndarray:
    """The name of a status code (or an array of names for an array of codes).

    Args:
      status: an integer code from a theory result, or an array of them.

    Returns:
      ``"ok"``, ``"marginal"``, ``"diverges"``, ``"invalid"`` or ``"not_found"`` (same shape).

    Example:
      >>> import jaxflow as jf
      >>> jf.status_name(jf.q_star("relu", 3.0, 0.0).status)
      'diverges'
    """
    codes = np.asarray(status)
    names = np.asarray(STATUS_NAMES, dtype=object)[codes]
    return str(names) if codes.ndim == 0 else names


class FixedPoint(NamedTuple):
    """The length map's fixed point, with the flags that say how far to trust it.

    Every field has the broadcast shape of the inputs.

    Attributes:
      q_star: q* (``inf`` where it diverges, ``nan`` where it is not determined; see status).
      slope: V′(q*) = ∂q^l/∂q^{l−1} at q*; −1/ln|slope| is ξ_q.
      status: int code, see :data:`STATUS_NAMES`.
      unique: whether the length map has a single attractor, so q* does not depend on q0.

    Example:
      >>> import jaxflow as jf
      >>> fp = jf.q_star("relu", 1.0, 0.5)   # q* = σ_b²/(1 − σ_w²/2) = 1
      >>> round(float(fp.q_star), 5), jf.status_name(fp.status)
      (1.0, 'ok')
    """

    q_star: jax.Array
    slope: jax.Array
    status: jax.Array
    unique: jax.Array


class Prediction(NamedTuple):
    """One predicted number and the status of the computation behind it.

    Attributes:
      value: the prediction (broadcast shape of the inputs).
      status: int code, see :data:`STATUS_NAMES` (for χ₁ and c*, the length map's status).

    Example:
      >>> import jaxflow as jf
      >>> jf.chi1("linear", 0.5, 0.0)
      Prediction(value=Array(0.5, dtype=float32), status=Array(0, dtype=int32))
    """

    value: jax.Array
    status: jax.Array


class DepthScales(NamedTuple):
    """Schoenholz et al.'s depth scales ξ_q = −1/ln|V′(q*)| and ξ_c = −1/ln χ_c.

    Attributes:
      xi_q: ξ_q (``inf`` when marginal, ``nan`` where q* diverges).
      xi_c: ξ_c (``inf`` at χ₁ = 1).
      status: the length map's status, see :data:`STATUS_NAMES`.

    Example:
      >>> import jaxflow as jf
      >>> ds = jf.depth_scales("tanh", 1.5, 0.05)       # Schoenholz et al.'s Fig. 1 setting
      >>> bool(ds.xi_c > ds.xi_q)
      True
    """

    xi_q: jax.Array
    xi_c: jax.Array
    status: jax.Array


class MeanField(NamedTuple):
    """Every mean-field quantity at one (σ_w², σ_b²); fields have the inputs' broadcast shape.

    Attributes:
      q_star: fixed point of the length map (see :class:`FixedPoint`).
      slope: V′(q*).
      chi1: χ₁ = σ_w² E[φ′(√q* z)²].
      c_star: stable fixed point of the correlation map, in [0, 1].
      chi_c: χ_c = σ_w² E[φ′(u₁)φ′(u₂)] at c* (equals χ₁ when c* = 1).
      xi_q: −1/ln|slope|.
      xi_c: −1/ln χ_c.
      status: int code of the length map, see :data:`STATUS_NAMES`.
      critical: whether |χ₁ − 1| ≤ tol (the edge of chaos).
      unique: whether the length map has a single attractor.

    Example:
      >>> import jaxflow as jf
      >>> mf = jf.mean_field("erf", 3.14159265 / 4, 0.0)   # erf's critical point
      >>> round(float(mf.chi1), 4), bool(mf.critical)
      (1.0, True)
    """

    q_star: jax.Array
    slope: jax.Array
    chi1: jax.Array
    c_star: jax.Array
    chi_c: jax.Array
    xi_q: jax.Array
    xi_c: jax.Array
    status: jax.Array
    critical: jax.Array
    unique: jax.Array


class PhaseDiagram(NamedTuple):
    """Mean-field theory over a (σ_w², σ_b²) grid, and the critical line χ₁ = 1.

    Attributes:
      sigma_w2: (n_w,) weight variances.
      sigma_b2: (n_b,) bias variances.
      mean_field: a :class:`MeanField` whose fields are (n_w, n_b).
      critical_sigma_w2: a :class:`Prediction` with (n_b,) fields: σ_w² on the critical line for
        each σ_b² (status ``NOT_FOUND`` where there is none).

    Example:
      >>> import jaxflow as jf
      >>> pd = jf.phase_diagram("relu", [1.0, 3.0], [0.0])
      >>> jf.status_name(pd.mean_field.status).tolist()
      [['ok'], ['diverges']]
    """

    sigma_w2: jax.Array
    sigma_b2: jax.Array
    mean_field: MeanField
    critical_sigma_w2: Prediction


# ----------------------------------------------------------------------------- expectations


class _Phi(NamedTuple):
    """φ and φ′ side by side, u ↦ (..., 2), and φ's kinks (an array, padded with repeats of 0)."""

    pointwise: Any
    kinks: jax.Array


_MAX_KINKS = 2


def _registered_table() -> tuple[Activation, ...]:
    return tuple(ACTIVATIONS[name] for name in ACTIVATIONS)


def _phi(table: tuple[Activation, ...], index) -> _Phi:
    """table[index] as a :class:`_Phi`.

    With several activations the pointwise evaluation is a ``lax.switch`` on an unbatched index, so
    one compiled program serves every registered activation (and under ``vmap`` the switch stays a
    switch: only the selected branch runs).
    """
    branches = [lambda u, a=a: jnp.stack([a.fn(u), a.derivative(u)], axis=-1) for a in table]
    padded = [tuple(a.kinks) + (0.0,) * (_MAX_KINKS - len(a.kinks)) for a in table]
    kinks = jnp.asarray(padded)[index]
    if len(branches) == 1:
        return _Phi(branches[0], kinks)
    return _Phi(lambda u: jax.lax.switch(index, branches, u), kinks)


def _moments(phi: _Phi, q, rule):
    """(E[φ²], E[u φ φ′]/q, E[φ′²], E[φ′⁴]) for u ~ N(0, q), one quadrature pass; shape (4,)."""

    def integrands(u):
        value, slope = jnp.moveaxis(phi.pointwise(u), -1, 0)
        slope2 = slope * slope
        return jnp.stack([value * value, u * value * slope, slope2, slope2 * slope2], axis=-1)

    m = expect(integrands, jnp.zeros_like(q), q, phi.kinks.astype(q.dtype), rule)
    return m.at[1].divide(jnp.maximum(q, _quadrature.VAR_FLOOR))


def _steps(dtype, extra):
    return jnp.finfo(dtype).nmant + extra


def _bisect(test, lo, hi, steps, geometric=False):
    """Bisection keeping ``test(lo)`` True and ``test(hi)`` False.

    ``test(x)`` returns ``(bool, aux)``; the result is the last midpoint and its ``aux``, so the
    quantities computed to decide the last step are not computed again.
    """

    def body(_, carry):
        a, b, _, _ = carry
        mid = jnp.sqrt(a * b) if geometric else (a + b) / 2
        keep, aux = test(mid)
        return jnp.where(keep, mid, a), jnp.where(keep, b, mid), mid, aux

    aux = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(test, lo)[1])
    _, _, mid, aux = jax.lax.fori_loop(0, steps, body, (lo, hi, lo, aux))
    return mid, aux


# ----------------------------------------------------------------------------- the length map


def _attractors(G, tol):
    """How many attractors the sampled G(q) = V(q)/q − 1 shows (signs within ±tol count as 0)."""
    s = jnp.where(G > tol, 1, jnp.where(G < -tol, -1, 0))
    idx = jnp.where(s != 0, jnp.arange(s.size), -1)
    last = jax.lax.cummax(idx)
    filled = jnp.where(last >= 0, s[jnp.maximum(last, 0)], 0)
    first = s[jnp.argmax(s != 0)]
    interior = jnp.sum((filled[:-1] > 0) & (filled[1:] < 0))
    return (first < 0).astype(interior.dtype) + interior + (filled[-1] > 0)


class LengthMap(NamedTuple):
    """What the correlation map and the moments need from the length map (internal)."""

    fixed_point: FixedPoint
    q: jax.Array  # where expectations are evaluated: q*, or the q → 0⁺ / q → ∞ limit
    moments: jax.Array  # _moments at q


def solve_q(phi, sigma_w2, sigma_b2, q0, rule, tol) -> LengthMap:
    """The fixed point reached from q0, its slope, status and uniqueness (see module docs)."""
    dtype = jnp.result_type(sigma_w2)
    q0 = jnp.clip(q0, Q_MIN, Q_MAX)
    grid = jnp.exp(jnp.linspace(math.log(Q_MIN), math.log(Q_MAX), _GRID, dtype=dtype))

    def G(q, m):
        return (sigma_w2 * m[..., 0] + sigma_b2) / q - 1.0

    points = jnp.append(grid, q0)
    sampled = jax.vmap(lambda q: _moments(phi, q, rule))(points)
    g_all = G(points, sampled)
    Gg, up = g_all[:-1], g_all[-1] > 0
    # Moving up from q0: the first grid point above it where V(q) ≤ q closes the bracket.
    above = (grid > q0) & (Gg <= 0)
    i = jnp.argmax(above)
    lo_up, hi_up = jnp.maximum(q0, grid[jnp.maximum(i - 1, 0)]), grid[i]
    # Moving down: the last grid point below q0 where V(q) > q.
    below = (grid < q0) & (Gg > 0)
    j = _GRID - 1 - jnp.argmax(below[::-1])
    lo_dn, hi_dn = grid[j], jnp.minimum(q0, grid[jnp.minimum(j + 1, _GRID - 1)])

    def test(q):
        m = _moments(phi, q, rule)
        return G(q, m) > 0, m

    root, at_root = _bisect(
        test, jnp.where(up, lo_up, lo_dn), jnp.where(up, hi_up, hi_dn), _steps(dtype, 8), True
    )
    to_inf = up & ~jnp.any(above)
    # A root the map cannot separate from the identity anywhere below it is 0 (tanh and erf on
    # the critical line with σ_b² = 0, where q^l → 0 like 1/l); float rounding places it anywhere.
    flat_below = jnp.all(jnp.where(grid < root, jnp.abs(Gg) <= tol, True))
    to_zero = ~up & (~jnp.any(below) | flat_below)
    # The grid's ends are Q_MIN and Q_MAX: their moments are already in `sampled`.
    at_min, at_max = sampled[0], sampled[_GRID - 1]
    reached = jnp.where(to_inf, at_max, jnp.where(to_zero, at_min, at_root))
    slope = sigma_w2 * reached[1]
    tail = Gg[-1]
    marginal = jnp.abs(slope - 1.0) <= tol
    diverges = to_inf & (tail > tol)
    undetermined = (to_inf & ~diverges) | (marginal & (jnp.abs(tail) <= tol))
    status = jnp.where(to_inf, jnp.where(diverges, DIVERGES, MARGINAL), jnp.where(marginal, MARGINAL, OK))
    q = jnp.where(diverges, jnp.inf, jnp.where(undetermined, jnp.nan, jnp.where(to_zero, 0.0, root)))
    fixed_point = FixedPoint(q.astype(dtype), slope, status.astype(jnp.int32), _attractors(Gg, tol) == 1)
    # Where q* is infinite or undetermined, the expectations are the q → ∞ limits.
    limit = diverges | undetermined
    q_eval = jnp.where(limit, Q_MAX, jnp.where(to_zero, Q_MIN, root)).astype(dtype)
    return LengthMap(fixed_point, q_eval, jnp.where(limit, at_max, reached))


def _solve_c(phi, sigma_w2, sigma_b2, q, norm, chi, rule, tol):
    """c* and χ_c, the slope of C(c) = [σ_w² E[φ(u₁)φ(u₂)] + σ_b²]/V(q) at c*.

    At a fixed point V(q*) = q* and the slope is Schoenholz et al.'s σ_w² E[φ′(u₁)φ′(u₂)]; at the
    q → 0⁺ and q → ∞ limits the factor q/V(q) matters (ReLU with σ_b² = 0: C′(1) = 1 while χ₁ = σ_w²/2).
    """
    scale = q / norm
    dtype = jnp.result_type(q)

    def test(c):
        both = expect2(phi.pointwise, q, c, phi.kinks.astype(dtype), rule)
        return (sigma_w2 * both[0] + sigma_b2) / norm - c >= 0, both[1]

    at_one = chi * scale
    # Within tol of C′(1) = 1 the root near 1 is not resolved: c* = 1, flagged by `critical`.
    chaotic = at_one > 1.0 + tol
    c_root, slopes = _bisect(test, jnp.zeros((), dtype), jnp.ones((), dtype), _steps(dtype, 2))
    c = jnp.where(chaotic, c_root, 1.0)
    chi_c = jnp.where(chaotic, sigma_w2 * scale * slopes, at_one)
    return c, chi_c


def _depth_scale(rate, tol):
    """−1/ln|rate|, and inf where |rate| is within tol of 1 (a depth scale beyond 1/tol layers)."""
    rate = jnp.abs(rate)
    finite = rate < 1.0 - tol
    return jnp.where(finite, -1.0 / jnp.log(jnp.where(finite, rate, 0.5)), jnp.inf)


def sanitize(sigma_w2, sigma_b2, q0):
    """(valid, σ_w², σ_b², q0) with invalid traced inputs replaced by harmless ones."""
    valid = (
        jnp.isfinite(sigma_w2)
        & jnp.isfinite(sigma_b2)
        & jnp.isfinite(q0)
        & (sigma_w2 > 0)
        & (sigma_b2 >= 0)
        & (q0 > 0)
    )
    return valid, jnp.where(valid, sigma_w2, 1.0), jnp.where(valid, sigma_b2, 0.0), jnp.where(valid, q0, 1.0)


def invalidate(result, valid):
    """NaN every float field and INVALID the status where the inputs are invalid."""

    def fix(name, value):
        if name == "status":
            return jnp.where(valid, value, INVALID).astype(jnp.int32)
        if jnp.issubdtype(value.dtype, jnp.floating):
            return jnp.where(valid, value, jnp.nan)
        return jnp.where(valid, value, False)

    return type(result)(*(fix(n, v) for n, v in zip(result._fields, result)))


class LengthResult(NamedTuple):
    """The length map's fixed point with χ₁ and μ_k = E[φ′^{2k}] there (internal).

    ``q`` is where the expectations were taken (q*, or the q → 0⁺ / q → ∞ limit) and ``norm``
    is V(q) = σ_w² E[φ(√q z)²] + σ_b², what the correlation map divides by.
    """

    q_star: jax.Array
    slope: jax.Array
    status: jax.Array
    unique: jax.Array
    chi1: jax.Array
    mu1: jax.Array
    mu2: jax.Array
    q: jax.Array
    norm: jax.Array


def scalar_length(phi, sigma_w2, sigma_b2, q0, rule, tol):
    """The length map only (no bivariate quadrature): what every theory function starts from."""
    valid, sw2, sb2, q0 = sanitize(sigma_w2, sigma_b2, q0)
    length = solve_q(phi, sw2, sb2, q0, rule, tol)
    m = length.moments
    result = LengthResult(*length.fixed_point, sw2 * m[2], m[2], m[3], length.q, sw2 * m[0] + sb2)
    return invalidate(result, valid)


def _scalar_correlation(phi, sigma_w2, sigma_b2, q, norm, chi, rule, tol):
    """(c*, χ_c) given the length map's result; the only bivariate quadrature."""
    return _solve_c(phi, sigma_w2, sigma_b2, q, norm, chi, rule, tol)


# ----------------------------------------------------------------------------- public API


def _check_inputs(**values):
    """Raise ValueError for concrete invalid variances (traced values are flagged INVALID)."""
    rules = {"sigma_w2": "> 0", "sigma_b2": ">= 0", "q0": "> 0"}
    for name, value in values.items():
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name}={value!r} is not a number or an array of numbers")
        arr = arr.astype(float)
        bad = ~np.isfinite(arr) | ((arr <= 0) if rules[name] == "> 0" else (arr < 0))
        if np.any(bad):
            raise ValueError(
                f"{name}={value!r} is not allowed: it must be finite and {rules[name]} "
                "(σ² are variances, not standard deviations)"
            )


def _float_dtype(*values):
    return jnp.result_type(float, *(jnp.asarray(v).dtype for v in values))


def _table_index(act: Activation):
    """(table, index): the registry table when ``act`` is registered (one compiled program for
    all of them), else a table of one."""
    table = _registered_table()
    for index, entry in enumerate(table):
        if entry is act:
            return table, index
    return (act,), 0


@functools.lru_cache(maxsize=None)
def _compiled(table: tuple, rule: str, tol: float, scalar_fn):
    """One jitted, vmapped ``scalar_fn(phi, *arrays, rule, tol)`` per table (all activations)."""

    def run(index, *arrays):
        one = functools.partial(scalar_fn, _phi(table, index), rule=rule, tol=tol)
        return jax.vmap(one)(*arrays)

    return jax.jit(run)


def evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol) -> LengthResult:
    """Validates the inputs and runs the length-map kernel, broadcast over the inputs."""
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    _check_inputs(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    run = functools.partial(_compiled(table, rule, tol, scalar_length), index)
    return _broadcast_call(run, sigma_w2, sigma_b2, q0)


def _resolve(activation, quadrature, tol):
    act = get_activation(activation)
    check_rule(quadrature)
    if not isinstance(tol, numbers.Real) or not 0 < tol < 1:
        raise ValueError(f"tol={tol!r} is not allowed; it must be a number in (0, 1)")
    table, index = _table_index(act)
    return table, jnp.asarray(index, jnp.int32), quadrature, float(tol)


def _bucket(size: int) -> int:
    """Padded batch size — 8, then powers of two up to 64, then multiples of 64 — so that scalar
    calls and small arrays share one compiled program."""
    if size <= 64:
        return max(8, 1 << max(size - 1, 0).bit_length())
    return -(-size // 64) * 64


def _broadcast_call(fn, *args):
    dtype = _float_dtype(*args)
    arrays = jnp.broadcast_arrays(*(jnp.asarray(a, dtype) for a in args))
    shape = arrays[0].shape
    size = math.prod(shape)
    if size == 0:
        raise ValueError(f"the inputs broadcast to the empty shape {shape}")
    flat = [jnp.pad(a.reshape(-1), (0, _bucket(size) - size), mode="edge") for a in arrays]
    out = fn(*flat)
    return jax.tree.map(lambda leaf: leaf[:size].reshape(shape), out)


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
      (eqs. 2–4 and §3 for q*, χ₁, ξ_q, ξ_c).

    Example:
      >>> import jaxflow as jf
      >>> mf = jf.mean_field("tanh", 2.0, 0.0)        # chaotic: c* < 1
      >>> bool(mf.chi1 > 1), bool(mf.c_star < 1), bool(mf.chi_c < 1)
      (True, True, True)
    """
    length = evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol)
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    arrays = jnp.broadcast_arrays(*(jnp.asarray(a, length.q.dtype) for a in (sigma_w2, sigma_b2, q0)))
    valid, sw2, sb2, _ = sanitize(*arrays)
    correlation = functools.partial(_compiled(table, rule, tol, _scalar_correlation), index)
    c, chi_c = _broadcast_call(correlation, sw2, sb2, length.q, length.norm, length.chi1)
    xi_q = jnp.where(length.status == DIVERGES, jnp.nan, _depth_scale(length.slope, tol))
    result = MeanField(
        length.q_star,
        length.slope,
        length.chi1,
        c,
        chi_c,
        xi_q,
        _depth_scale(chi_c, tol),
        length.status,
        jnp.abs(length.chi1 - 1.0) <= tol,
        length.unique,
    )
    return invalidate(result, valid)


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
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² > 0.
      sigma_b2: bias variance σ_b² ≥ 0.
      q0: the starting variance (picks the basin where there are several attractors).
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance.

    Returns:
      A :class:`FixedPoint` (broadcast shape of the inputs).

    References:
      Poole et al., NeurIPS 2016; Schoenholz et al., ICLR 2017, eq. 2.

    Example:
      >>> import jaxflow as jf
      >>> fp = jf.q_star("relu", 2.0, 0.0)   # every q is a fixed point: not determined
      >>> float(fp.q_star), jf.status_name(fp.status), bool(fp.unique)
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
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² > 0.
      sigma_b2: bias variance σ_b² ≥ 0.
      q0: the starting variance of the length map.
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance.

    Returns:
      A :class:`Prediction` ``(value=χ₁, status)``.

    References:
      Schoenholz et al., ICLR 2017, eq. 4.

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
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² > 0.
      sigma_b2: bias variance σ_b² ≥ 0.
      q0: the starting variance of the length map.
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance.

    Returns:
      A :class:`Prediction` ``(value=c*, status)``.

    References:
      Poole et al., NeurIPS 2016; Schoenholz et al., ICLR 2017, eq. 3.

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
      activation: a registered name or an :class:`~jaxflow.Activation`.
      sigma_w2: weight variance σ_w² > 0.
      sigma_b2: bias variance σ_b² ≥ 0.
      q0: the starting variance of the length map.
      quadrature: ``"split"`` or ``"hermite"``.
      tol: marginality tolerance.

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


def _scalar_critical(phi, sigma_b2, rule, tol):
    """σ_w² on the critical line, traced along the curve of fixed points (module docs)."""
    dtype = jnp.result_type(sigma_b2)
    valid = jnp.isfinite(sigma_b2) & (sigma_b2 >= 0)
    sigma_b2 = jnp.where(valid, sigma_b2, 0.0)
    # Parametrise by x = q − σ_b² > 0: q is a fixed point for σ_w²(q) = x/E[φ²](q), where
    # χ₁ − 1 = x·E[φ′²](q)/E[φ²](q) − 1 =: g(q). One quadrature per point, no nested solve.
    grid = jnp.exp(jnp.linspace(math.log(Q_MIN), math.log(Q_MAX), _GRID, dtype=dtype))

    def on_curve(x):
        m = _moments(phi, x + sigma_b2, rule)
        return x * m[2] / m[0] - 1.0, x / m[0]

    g, sigma_w2 = jax.vmap(on_curve)(grid)
    # Where g is within tol of 0 at an end of the curve, the crossing is that limit: q* → 0 for
    # odd φ with σ_b² = 0 (tanh, erf: σ_w² = 1/φ′(0)²), q* → ∞ for ReLU-like φ (σ_w² = 2).
    at_start = g[0] >= -tol
    rising = (g[:-1] < 0) & (g[1:] >= 0)
    inside = jnp.any(rising)
    i = jnp.argmax(rising)
    at_end = ~inside & (jnp.abs(g[-1]) <= tol)

    def test(log_x):
        below, w = on_curve(jnp.exp(log_x))
        return below < 0, w

    _, refined = _bisect(test, jnp.log(grid[i]), jnp.log(grid[i + 1]), _steps(dtype, 8))
    value = jnp.where(at_start, sigma_w2[0], jnp.where(inside, refined, sigma_w2[-1]))
    found = valid & (at_start | inside | at_end)
    status = jnp.where(valid, jnp.where(found, OK, NOT_FOUND), INVALID).astype(jnp.int32)
    return Prediction(jnp.where(found, value, jnp.nan), status)


@functools.lru_cache(maxsize=None)
def _compiled_critical(table: tuple, rule: str, tol: float):
    def run(index, sigma_b2):
        one = functools.partial(_scalar_critical, _phi(table, index), rule=rule, tol=tol)
        return jax.vmap(one)(sigma_b2)

    return jax.jit(run)


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
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    _check_inputs(sigma_b2=sigma_b2)
    run = functools.partial(_compiled_critical(table, rule, tol), index)
    return _broadcast_call(run, sigma_b2)


def phase_diagram(
    activation: str | Activation,
    sigma_w2: Any,
    sigma_b2: Any,
    *,
    q0: float = 1.0,
    quadrature: str = "split",
    tol: float = TOL,
) -> PhaseDiagram:
    """Mean-field theory on a (σ_w², σ_b²) grid, in one compiled call, and the critical line.

    The whole grid is one call of the compiled, vmapped kernel that :func:`mean_field` uses (and
    the critical σ_w² for every σ_b² one call of :func:`critical_sigma_w2`'s): no Python loop over
    grid points, and a second diagram of a similar size compiles nothing.

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
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    _check_inputs(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    dtype = _float_dtype(sigma_w2, sigma_b2, q0)
    sw2 = jnp.asarray(sigma_w2, dtype)
    sb2 = jnp.asarray(sigma_b2, dtype)
    if sw2.ndim != 1 or sb2.ndim != 1 or sw2.size == 0 or sb2.size == 0:
        raise ValueError(
            f"sigma_w2 and sigma_b2 must be non-empty 1-D grids; got shapes {sw2.shape} and {sb2.shape}"
        )
    w, b = jnp.meshgrid(sw2, sb2, indexing="ij")
    grid = mean_field(activation, w, b, q0=q0, quadrature=quadrature, tol=tol)
    crit = _broadcast_call(functools.partial(_compiled_critical(table, rule, tol), index), sb2)
    return PhaseDiagram(sw2, sb2, grid, crit)

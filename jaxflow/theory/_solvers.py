"""The numerical machinery behind :mod:`jaxflow.theory.propagation` (see its docs).

Gaussian expectations over φ, the fixed-point solvers of the length and correlation maps, the
critical-line search, and the compiled, cached kernels that run them for every registered
activation at once (the activation is a ``lax.switch`` index, so one program serves them all).
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
from jaxflow.theory._quadrature import check_rule, expect, expect_pair
from jaxflow.theory.results import (
    FixedPoint,
    MeanField,
    Prediction,
    PredictionStatus,
)

OK, MARGINAL, DIVERGES, INVALID, NOT_FOUND = PredictionStatus  # the codes, inside jit

Q_MIN, Q_MAX = 1e-20, 1e20
_GRID = 97


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
    status = jnp.where(
        to_inf, jnp.where(diverges, DIVERGES, MARGINAL), jnp.where(marginal, MARGINAL, OK)
    )
    q = jnp.where(
        diverges, jnp.inf, jnp.where(undetermined, jnp.nan, jnp.where(to_zero, 0.0, root))
    )
    fixed_point = FixedPoint(
        q.astype(dtype), slope, status.astype(jnp.int32), _attractors(Gg, tol) == 1
    )
    # Where q* is infinite or undetermined, the expectations are the q → ∞ limits.
    limit = diverges | undetermined
    q_eval = jnp.where(limit, Q_MAX, jnp.where(to_zero, Q_MIN, root)).astype(dtype)
    return LengthMap(fixed_point, q_eval, jnp.where(limit, at_max, reached))


def _resolution(dtype):
    """How close to 1 a slope is indistinguishable from 1 at a genuine fixed point: ε^(3/4) of the
    dtype (float32 6e-6, float64 2e-12), where C′(1) itself carries ~1e-6 (float32) and ~5e-14
    (float64) of quadrature and rounding error."""
    return jnp.finfo(dtype).eps ** 0.75


def _solve_c(phi, sigma_w2, sigma_b2, q, norm, chi, band, rule):
    """c*, χ_c and ξ_c of the correlation map C(c) = [σ_w² E[φ(u₁)φ(u₂)] + σ_b²]/V(q).

    At a fixed point V(q*) = q* and C′(c*) is Schoenholz et al.'s χ_c = σ_w² E[φ′(u₁)φ′(u₂)]; at
    the q → 0⁺ and q → ∞ limits the factor q/V(q) matters (ReLU with σ_b² = 0: C′(1) = 1 while
    χ₁ = σ_w²/2).

    Near the edge of chaos c* → 1 and C(c) − c vanishes to second order there, far below any
    quadrature's error, so the root is solved for ε = 1 − c* in a form with the trivial root ε = 0
    divided out and the leading term taken exactly. With u₂ = u₁ + Δ and V = σ_w² E[φ²] + σ_b²,

        1 − C(1 − ε) = σ_w² E[(φ(u₂) − φ(u₁))²]/(2V),  and with R = φ(u₂) − φ(u₁) − φ′(u₁)Δ,
        E[(φ(u₂) − φ(u₁))²]/2 = qε E[φ′²] + (ε²/2)(E[u₁²φ′²] − q E[φ′²]) + E[φ′ΔR] + E[R²]/2,

    (E[Δ² | u₁] = ε²u₁² + qε(2 − ε)), so g(ε) = (1 − C(1 − ε))/ε − 1 is

        g(ε) = (C′(1) − 1) + (σ_w²/V)·[(ε/2)(E[u₁²φ′²] − q E[φ′²]) + (E[φ′ΔR] + E[R²]/2)/ε],

    where C′(1) = σ_w² q E[φ′²]/V comes from the 1-D rule (it is χ₁ at a fixed point) and the
    bracket, O(ε), from the 2-D rule, whose relative error then moves ε* by as little. C is convex
    (Mehler), so g decreases and its root is the one c* < 1, found by bisection in log ε; for
    ε > 1/2 the sign of g is read from the plain residual C(c) − c (g > 0 ⟺ C(c) < c), which far
    from c = 1 has no O(q) terms cancelling in it (float32's error in deep chaos halves). Likewise

        1 − χ_c = (1 − C′(1)) + (σ_w² q/V)·E[(φ′(u₂) − φ′(u₁))²]/2,

    and ξ_c = −1/ln χ_c = −1/log1p(−(1 − χ_c)) keeps its relative accuracy as χ_c → 1. Where
    |C′(1) − 1| ≤ ``band`` — :func:`_resolution` at a genuine fixed point (the edge of chaos to
    the dtype's precision), max(tol, resolution) at the q → 0⁺ / q → ∞ limits, which are
    evaluated at q = 1e∓20 and there move C′(1) by up to ~1e-11 — c* = 1, χ_c = 1 and ξ_c = ∞;
    elsewhere ξ_c is finite.
    """
    dtype = jnp.result_type(q)
    kinks = phi.kinks.astype(dtype)
    gain = sigma_w2 / norm
    at_one = chi * q / norm  # C′(1)
    excess = at_one - 1.0
    chaotic = excess > band

    def test(eps):
        def combine(p1, p2, u1, delta):
            (v1, s1), (v2, s2) = jnp.moveaxis(p1, -1, 0), jnp.moveaxis(p2, -1, 0)
            r = (v2 - v1) - s1 * delta
            curvature = 0.5 * eps * s1 * s1 * (u1 * u1 - q) + (s1 * delta * r + 0.5 * r * r) / eps
            both = v1 * v2 + jnp.zeros_like(delta)
            return jnp.stack([curvature, 0.5 * jnp.square(s2 - s1), both], axis=-1)

        m = expect_pair(phi.pointwise, combine, q, eps, kinks, rule)
        # g(ε) > 0 ⟺ C(c) < c. Far from c = 1 the plain residual C(c) − c is the better
        # conditioned of the two (no O(q) terms cancel in it), and c = 1 − ε is exact there.
        below = jnp.where(
            eps > 0.5, (sigma_w2 * m[2] + sigma_b2) / norm < 1.0 - eps, excess + gain * m[0] > 0
        )
        return below, m[1]

    tiny = jnp.asarray(jnp.finfo(dtype).eps ** 2, dtype)
    eps, spread = _bisect(test, tiny, jnp.ones((), dtype), _steps(dtype, 7), geometric=True)
    # 1 − χ_c: exact in the ordered phase (c* = 1, χ_c = C′(1)).
    gap = jnp.where(chaotic, jnp.maximum(gain * q * spread - excess, 0.0), -excess)
    gap = jnp.where(~chaotic & (jnp.abs(excess) <= band), 0.0, gap)
    c = jnp.where(chaotic, 1.0 - eps, 1.0)
    finite = gap > 0
    xi_c = jnp.where(finite, -1.0 / jnp.log1p(-jnp.where(finite, gap, 0.5)), jnp.inf)
    return c, 1.0 - gap, xi_c


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
    return (
        valid,
        jnp.where(valid, sigma_w2, 1.0),
        jnp.where(valid, sigma_b2, 0.0),
        jnp.where(valid, q0, 1.0),
    )


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


def _scalar_mean_field(phi, sigma_w2, sigma_b2, q0, rule, tol) -> MeanField:
    """Every mean-field quantity at one (σ_w², σ_b², q0): the length map, then the correlation
    map."""
    valid, sw2, sb2, _ = sanitize(sigma_w2, sigma_b2, q0)
    length = scalar_length(phi, sigma_w2, sigma_b2, q0, rule, tol)
    # At a genuine fixed point 0 < q* < ∞ only the dtype's resolution keeps ξ_c from being finite;
    # at the q → 0⁺ / q → ∞ limits, tol (see _solve_c).
    genuine = (length.q_star > 0) & jnp.isfinite(length.q_star)
    resolution = _resolution(length.q.dtype)
    band = jnp.where(genuine, resolution, jnp.maximum(tol, resolution))
    c, chi_c, xi_c = _solve_c(phi, sw2, sb2, length.q, length.norm, length.chi1, band, rule)
    xi_q = jnp.where(length.status == DIVERGES, jnp.nan, _depth_scale(length.slope, tol))
    result = MeanField(
        length.q_star,
        length.slope,
        length.chi1,
        c,
        chi_c,
        xi_q,
        xi_c,
        length.status,
        jnp.abs(length.chi1 - 1.0) <= tol,
        length.unique,
    )
    return invalidate(result, valid)


# ----------------------------------------------------------------------------- compiled kernels


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


@functools.cache
def length_program(table: tuple, rule: str, tol: float):
    """The length map (1-D quadrature only), vmapped and jitted, for every activation in
    ``table``."""

    def length_program(index, sigma_w2, sigma_b2, q0):
        one = functools.partial(scalar_length, _phi(table, index), rule=rule, tol=tol)
        return jax.vmap(one)(sigma_w2, sigma_b2, q0)

    return jax.jit(length_program)


@functools.cache
def mean_field_program(table: tuple, rule: str, tol: float):
    """Mean-field theory on a batch of (σ_w², σ_b², q0) and the critical σ_w² on a batch of σ_b²,
    vmapped and jitted together: the one program behind mean_field, critical_sigma_w2 and a whole
    phase diagram."""

    def mean_field_program(index, sigma_w2, sigma_b2, q0, line):
        phi = _phi(table, index)
        grid = jax.vmap(functools.partial(_scalar_mean_field, phi, rule=rule, tol=tol))
        critical = jax.vmap(functools.partial(_scalar_critical, phi, rule=rule, tol=tol))
        return grid(sigma_w2, sigma_b2, q0), critical(line)

    return jax.jit(mean_field_program)


def evaluate(activation, sigma_w2, sigma_b2, q0, quadrature, tol) -> LengthResult:
    """Validates the inputs and runs the length program, broadcast over the inputs."""
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    _check_inputs(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    run = functools.partial(length_program(table, rule, tol), index)
    return _broadcast_call(run, sigma_w2, sigma_b2, q0)


def evaluate_mean_field(activation, grid, line, quadrature, tol):
    """Runs the mean-field program on ``grid`` = (σ_w², σ_b², q0) (broadcast together) and on
    ``line`` = σ_b² values for the critical line, in one call; either may be ``None``.

    Returns (MeanField or None, Prediction or None), each shaped like its input.
    """
    table, index, rule, tol = _resolve(activation, quadrature, tol)
    if grid is not None:
        _check_inputs(sigma_w2=grid[0], sigma_b2=grid[1], q0=grid[2])
    if line is not None:
        _check_inputs(sigma_b2=line)
    dtype = _float_dtype(*(grid or ()), *(() if line is None else (line,)))
    # A placeholder for the part not asked for: the smallest batch of valid values.
    grid_arrays = jnp.broadcast_arrays(*(jnp.asarray(a, dtype) for a in (grid or (1.0, 0.0, 1.0))))
    grid_flat, grid_shape = _pad(grid_arrays)
    (line_flat,), line_shape = _pad([jnp.asarray(0.0 if line is None else line, dtype)])
    mf, crit = mean_field_program(table, rule, tol)(index, *grid_flat, line_flat)
    mf = None if grid is None else jax.tree.map(lambda leaf: _unpad(leaf, grid_shape), mf)
    crit = None if line is None else jax.tree.map(lambda leaf: _unpad(leaf, line_shape), crit)
    return mf, crit


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


def _pad(arrays):
    """Flattens same-shape arrays and pads them (with their last value) to a bucket size."""
    shape = arrays[0].shape
    size = math.prod(shape)
    if size == 0:
        raise ValueError(f"the inputs broadcast to the empty shape {shape}")
    flat = [jnp.pad(a.reshape(-1), (0, _bucket(size) - size), mode="edge") for a in arrays]
    return flat, shape


def _unpad(leaf, shape):
    return leaf[: math.prod(shape)].reshape(shape)


def _broadcast_call(fn, *args):
    dtype = _float_dtype(*args)
    flat, shape = _pad(jnp.broadcast_arrays(*(jnp.asarray(a, dtype) for a in args)))
    return jax.tree.map(lambda leaf: _unpad(leaf, shape), fn(*flat))


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

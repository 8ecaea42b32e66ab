"""Singular values of a batch of matrices by one-sided Jacobi, written in JAX operations.

One-sided Jacobi (Hestenes 1958) rotates pairs of rows of A until every pair is orthogonal; the
row norms are then the singular values. It needs no LAPACK call: every step is an elementwise
product, a sum along the rows and a rotation, the same for every matrix of a batch, so a batch of
B small matrices is B·n/2 independent rotations per step — the shape accelerators run well,
where batched LAPACK-style SVDs of small matrices are slow (jax-ml/jax#2980). On a CPU LAPACK
is faster at every width measured (3–13× by medians at 32–256, ``benchmarks/svd_methods.py``), so
:func:`jaxflow.singular_values` and the sweeps keep LAPACK there.

Rows are paired by the round-robin (circle) ordering (Brent & Luk 1985): each of the n − 1 rounds
of a sweep rotates n/2 disjoint pairs, all at once, and every pair meets exactly once per sweep.
Sweeps repeat until no pair of rows has |cos ∠(a_i, a_j)| above ``tol`` (m·ε by default), under a
``lax.while_loop``; a batch stops when its slowest matrix has converged.

Accuracy: one-sided Jacobi is backward stable, and more — rotating the rows of A = D·B (m ≤ n;
the columns when m > n) with D diagonal and B's rows of unit norm, each σ_i has relative error
O(ε·κ(B)) whatever D (Demmel & Veselić 1992): row-graded matrices keep their small singular
values. Tested against float64 NumPy (``tests/test_jacobi.py``): every σ_i within
1e-4·σ_i + n·ε·σ_max of the reference, for widths 32–256, well and badly conditioned.

References:
  Hestenes (1958), *Inversion of matrices by biorthogonalization and related results*, J. SIAM 6.
  Brent & Luk (1985), *The solution of singular-value and symmetric eigenvalue problems on
  multiprocessor arrays*, SIAM J. Sci. Stat. Comput. 6.
  Demmel & Veselić (1992), *Jacobi's method is more accurate than QR*, SIAM J. Matrix Anal. Appl.
  13.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxflow._checks import positive_int
from jaxflow._numerics import scaled_norm

__all__ = ["jacobi_singular_values"]


def jacobi_singular_values(a, *, max_sweeps: int = 30, tol=None) -> jax.Array:
    """Singular values of a matrix or a stack of matrices by one-sided Jacobi, descending.

    Values only, in JAX operations (no LAPACK), vectorised across the batch: each step rotates
    n/2 disjoint row pairs of every matrix at once (round-robin ordering). Each matrix is first
    scaled by a power of two (exact) so its largest entry is in [1/2, 1), so sums of squares
    neither overflow nor lose the singular values float32 resolves.

    Args:
      a: (..., m, n) floating array.
      max_sweeps: the most sweeps (each n − 1 rounds of n/2 rotations; ≥ 1). Gaussian float32
        matrices converge in about 8 sweeps at 64×64 and 10 at 128×128.
      tol: stop once every pair of rows has |cos ∠| ≤ ``tol``; default max(m, n)·ε of the dtype.

    Returns:
      (..., min(m, n)), descending.

    References:
      Hestenes (1958); Brent & Luk (1985); Demmel & Veselić (1992): see :mod:`jaxflow.spectra`.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> from jaxflow.spectra import jacobi_singular_values
      >>> a = jnp.array([[3.0, 0.0], [4.0, 5.0]])
      >>> np.round(np.asarray(jacobi_singular_values(a)) ** 2, 4).tolist()  # 45 ± √(45² − 15²·4)
      [45.0, 5.0]
    """
    max_sweeps = positive_int("max_sweeps", max_sweeps)
    a = jnp.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"a: shape {a.shape} is not allowed; give a matrix (..., m, n)")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"a: dtype {a.dtype} is not allowed; give a real floating array")
    m, n = a.shape[-2:]
    # Rotate the rows of the wide orientation: k = min(m, n) rows of length l = max(m, n).
    x = a if m <= n else jnp.swapaxes(a, -1, -2)
    k, length = x.shape[-2:]
    if k == 0 or length == 0:
        return jnp.zeros(x.shape[:-2] + (k,), a.dtype)
    if tol is None:
        tol = length * jnp.finfo(a.dtype).eps
    elif isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < 1:
        raise ValueError(f"tol={tol!r} is not allowed; it must be a number in [0, 1) (a cosine)")
    amax = jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True)
    _, exponent = jnp.frexp(jnp.where(amax > 0, amax, 1))
    x = jnp.ldexp(x, -exponent)
    if k % 2:  # the circle method pairs an odd row out with a zero row, which never rotates
        x = jnp.concatenate([x, jnp.zeros_like(x[..., :1, :])], axis=-2)
    half = x.shape[-2] // 2
    rounds = 2 * half - 1

    def one_round(_, carry):
        top, bot, off = carry
        alpha = jnp.sum(top * top, axis=-1)
        beta = jnp.sum(bot * bot, axis=-1)
        gamma = jnp.sum(top * bot, axis=-1)
        norm = jnp.sqrt(alpha) * jnp.sqrt(beta)  # α·β underflows for rows of norm ~1e-10
        cos = jnp.abs(gamma) / jnp.where(norm > 0, norm, 1)
        rotate = cos > tol
        # tan θ is the smaller root of t² + 2ζt − 1 = 0, ζ = (β − α)/(2γ) (Rutishauser's form).
        zeta = (beta - alpha) / (2 * jnp.where(rotate, gamma, 1))
        t = jnp.where(zeta >= 0, 1, -1) / (jnp.abs(zeta) + jnp.sqrt(1 + zeta * zeta))
        t = jnp.where(rotate, t, 0)[..., None]
        c = jax.lax.rsqrt(1 + t * t)
        s = c * t
        top, bot = c * top - s * bot, s * top + c * bot
        if half > 1:  # the circle move: row 0 stays, the others shift one place round
            top, bot = (
                jnp.concatenate([top[..., :1, :], bot[..., :1, :], top[..., 1:-1, :]], axis=-2),
                jnp.concatenate([bot[..., 1:, :], top[..., -1:, :]], axis=-2),
            )
        return top, bot, jnp.maximum(off, jnp.max(cos))

    def sweep(carry):
        top, bot, _, count = carry
        zero = jnp.zeros((), x.dtype)
        top, bot, off = jax.lax.fori_loop(0, rounds, one_round, (top, bot, zero))
        return top, bot, off, count + 1

    def unconverged(carry):
        _, _, off, count = carry
        return (off > tol) & (count < max_sweeps)

    start = (x[..., :half, :], x[..., half:, :], jnp.array(jnp.inf, x.dtype), 0)
    top, bot, _, _ = jax.lax.while_loop(unconverged, sweep, start)
    sv = scaled_norm(jnp.concatenate([top, bot], axis=-2), axis=-1)
    sv = -jnp.sort(-sv, axis=-1)[..., :k]
    return jnp.ldexp(sv, exponent[..., 0])

"""Numerical helpers shared by every measurement: one definition of each.

Private: import them as ``from jaxflow._numerics import HIGHEST, safe_log, ...``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST
"""Every matmul or decomposition that feeds a spectrum or a norm runs at this precision (on GPUs
a float32 dot otherwise defaults to TF32)."""


def safe_log(x):
    """ln x with ln 0 = −inf, and no NaN from the unused branch of ``where`` (so gradients and
    warnings stay clean). Non-positive and NaN inputs give −inf."""
    x = jnp.asarray(x)
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)


def scaled_norm(x, axis=None, keepdims=False):
    """√Σx² along ``axis``, scaled by max|x| first.

    Vanishing gradients reach 1e-20 and below, whose squares underflow float32 to zero (and
    exploding ones above ~1e19 overflow), so the plain √Σx² reports 0 (or inf) where the norm is
    representable. A zero vector has norm 0; a non-finite maximum propagates.

    The division by max|x| goes through √max|x| twice: XLA computes ``x / m`` as ``x · (1/m)``,
    and above ~8.5e37 (float32; ~1e308 in float64) 1/m is subnormal, flushed to zero on CPU, which
    made every such vector's norm 0.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):  # integers: a norm is a float
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, 1.0).astype(x.dtype)
    total = jnp.sqrt(jnp.sum(jnp.square(unscale(x, safe)), axis=axis, keepdims=True))
    out = safe * total
    if keepdims:
        return out
    axes = tuple(range(x.ndim)) if axis is None else axis
    return jnp.squeeze(out, axes)


def unscale(x, scale):
    """``x / scale`` for a positive finite ``scale`` of any magnitude.

    XLA computes a division by a broadcast value as a multiplication by its reciprocal, which is
    subnormal above ~8.5e37 in float32 (~1e308 in float64) and flushed to zero on CPU. Above
    2¹²⁴ (float32; 2¹⁰²⁰ in float64) the division goes through √scale twice, whose reciprocal
    never is; below, it is the plain ``x / scale`` (divided by 1 once more, which is exact).
    """
    dtype = jnp.result_type(x)
    huge = scale > 0.25 / jnp.finfo(dtype).tiny
    root = jnp.sqrt(scale)
    return (x / jnp.where(huge, root, scale)) / jnp.where(huge, root, 1).astype(dtype)


def all_finite(*trees) -> jax.Array:
    """Whether every floating-point leaf of ``trees`` is finite (non-float leaves are ignored)."""
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(trees)
        if hasattr(leaf, "dtype") or isinstance(leaf, (float, complex))
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def relative_error(a, b):
    """‖a − b‖ / ‖b‖ (the absolute error where ‖b‖ = 0)."""
    norm = jnp.linalg.norm(b)
    return jnp.linalg.norm(a - b) / jnp.where(norm > 0, norm, 1.0)


def same_up_to_rounding(dtype) -> float:
    """The relative difference below which two evaluations of one function in ``dtype`` (whole
    against mapped over rows, traced against recorded) count as the same: 1e-3, or 16 ulps where
    the dtype is coarser (bfloat16's 8 bits)."""
    return max(1e-3, 16 * float(jnp.finfo(dtype).eps))

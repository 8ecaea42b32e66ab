"""Matrix-free spectral estimates for wide layers: σ_max by power iteration on JVP/VJP, and the
mean squared singular value by Hutchinson's estimator, for a matrix, a matvec, every J_l of a
network or its end-to-end product P_L.

See :mod:`jaxflow.spectra` for the references.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._chain_inputs import check_square, resolve
from jaxflow._checks import positive_int
from jaxflow._numerics import HIGHEST, scaled_norm
from jaxflow.chain import accumulate_chain, statistic

__all__ = [
    "HutchinsonEstimate",
    "PowerIteration",
    "SpectralEstimates",
    "layer_spectral_estimates",
    "mean_squared_singular_value",
    "product_spectral_estimates",
    "top_singular_value",
]


class PowerIteration(NamedTuple):
    """Top singular value by power iteration on JᵀJ.

    Attributes:
      sigma: (), √(vᵀJᵀJv) for the final unit vector v; never above σ_max (up to rounding).
      vector: (n,), v, the estimate of the top right singular vector.
      error: (), ‖JᵀJv − σ²v‖/σ: some singular value of J lies within ``error`` of ``sigma``.
      iterations: () int, how many JVP/VJP pairs were taken.
      converged: () bool, whether ``error <= tol * sigma`` was reached.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> result = jf.top_singular_value(jnp.diag(jnp.array([3.0, 1.0, 0.5])))
      >>> round(float(result.sigma), 4), bool(result.converged)
      (3.0, True)
    """

    sigma: jax.Array
    vector: jax.Array
    error: jax.Array
    iterations: jax.Array
    converged: jax.Array


class HutchinsonEstimate(NamedTuple):
    """Hutchinson's estimate of the mean squared singular value (1/n)‖J‖_F² = (1/n) Σ σ_i².

    Attributes:
      value: (), (1/(n·p)) Σ_k ‖J v_k‖² over p Rademacher probes v_k (n = input dimension).
      standard_error: (), the sample standard deviation of ‖J v_k‖²/n over √p.
      probes: () int, p.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> estimate = jf.mean_squared_singular_value(jnp.eye(8), key=jax.random.key(0), num_probes=4)
      >>> float(estimate.value), float(estimate.standard_error)  # (1/n)‖I‖_F² = 1, exactly
      (1.0, 0.0)
    """

    value: jax.Array
    standard_error: jax.Array
    probes: jax.Array


class SpectralEstimates(NamedTuple):
    """Matrix-free estimates for J_l (a leading layer axis on every field) or for P_L.

    Attributes:
      top: :class:`PowerIteration` for σ_max.
      mean_squared: :class:`HutchinsonEstimate` for (1/n)‖·‖_F².

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(3, 4, activation="tanh")
      >>> variables = model.init(jax.random.key(0), jnp.ones(4))
      >>> estimates = jf.layer_spectral_estimates(model, variables, jnp.ones(4), key=jax.random.key(1))
      >>> estimates.top.sigma.shape, estimates.mean_squared.value.shape  # one per layer
      ((3,), (3,))
    """

    top: PowerIteration
    mean_squared: HutchinsonEstimate


def _linear_operator(matrix_or_matvec, dim, dtype, precision, name):
    """(matvec, rmatvec, n, dtype) for a matrix or a linear function of one vector."""
    if callable(matrix_or_matvec):
        if dim is None:
            raise ValueError(f"{name}: a matvec needs dim= (the length of the vectors it takes)")
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"{name}: dim={dim!r} is not allowed; it must be an integer >= 1")
        matvec = matrix_or_matvec
        dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
        n = int(dim)
    else:
        matrix = jnp.asarray(matrix_or_matvec)
        if matrix.ndim != 2 or not jnp.issubdtype(matrix.dtype, jnp.floating):
            raise ValueError(
                f"{name}: got an array of shape {matrix.shape} and dtype {matrix.dtype}; pass a "
                "real matrix (m, n) or a matvec function v -> J v"
            )
        n, dtype = matrix.shape[1], matrix.dtype

        def matvec(v):
            return jnp.matmul(matrix, v, precision=precision)

    vector = jax.ShapeDtypeStruct((n,), dtype)
    try:
        transpose = jax.linear_transpose(matvec, vector)
        jax.eval_shape(transpose, jax.eval_shape(matvec, vector))
    except (NotImplementedError, TypeError, ValueError) as error:
        raise TypeError(
            f"{name}: the matvec must be a linear function of one vector of length {n} (a matrix "
            "product, jax.linearize's output, or lambda v: jax.jvp(f, (x,), (v,))[1]); "
            f"transposing it failed: {error}"
        ) from None
    return matvec, lambda u: transpose(u)[0], n, dtype


def top_singular_value(
    matrix_or_matvec: jax.Array | Callable[[jax.Array], jax.Array],
    *,
    key: jax.Array | None = None,
    v0: jax.Array | None = None,
    dim: int | None = None,
    dtype: Any = None,
    num_iters: int = 1000,
    tol: float | None = None,
    precision: jax.lax.Precision = HIGHEST,
) -> PowerIteration:
    """σ_max(J) by power iteration on JᵀJ: one JVP (v ↦ Jv) and one VJP (u ↦ Jᵀu) per step.

    The VJP is ``jax.linear_transpose`` of the matvec, so a matvec must be linear in its argument
    (a ``jax.linearize``-d function, or ``lambda v: jax.jvp(f, (x,), (v,))[1]``). The loop stops
    when ``error <= tol * sigma``: then some singular value lies within a relative ``tol`` of
    ``sigma``, and the Rayleigh quotient σ² itself is accurate to O(error²/gap) (Kato–Temple).
    It converges to σ_max like (σ₂/σ₁)^{2k}; close top singular values need many steps.

    Args:
      matrix_or_matvec: a matrix (m, n) or a linear function R^n → R^m.
      key: for the random start vector (used when ``v0`` is None; default ``jax.random.key(0)``).
      v0: start vector (n,).
      dim: n, required for a matvec without ``v0``.
      dtype: dtype of the vectors for a matvec without ``v0`` (default: JAX's default float).
      num_iters: most steps to take, ≥ 1.
      tol: relative tolerance on ``error / sigma`` (default 100 ε of the dtype).
      precision: of the matrix products (for a matrix).

    Returns:
      A :class:`PowerIteration`.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> J = jnp.array([[3.0, 0.0], [4.0, 5.0]])  # σ = 3√5, √5
      >>> round(float(jf.top_singular_value(J).sigma) ** 2, 3)
      45.0
      >>> round(float(jf.top_singular_value(lambda v: J @ v, dim=2).sigma) ** 2, 3)
      45.0
    """
    if v0 is not None:
        v0 = jnp.asarray(v0)
        dim, dtype = v0.shape[-1] if v0.ndim == 1 else dim, v0.dtype
    matvec, rmatvec, n, dtype = _linear_operator(
        matrix_or_matvec, dim, dtype, precision, "top_singular_value"
    )
    num_iters = positive_int("num_iters", num_iters)
    if tol is not None and not tol > 0:
        raise ValueError(f"tol={tol!r} is not allowed; it must be > 0 (or None for 100 ε)")
    if v0 is None:
        v0 = jax.random.normal(jax.random.key(0) if key is None else key, (n,), dtype)
    elif v0.shape != (n,):
        raise ValueError(f"v0 has shape {v0.shape}; it must be ({n},)")
    tol = 100 * jnp.finfo(dtype).eps if tol is None else tol

    def body(carry):
        v, _, _, count, _ = carry
        u = matvec(v)
        w = rmatvec(u)
        sigma = jnp.sqrt(jnp.sum(u * u))
        residual = scaled_norm(w - sigma**2 * v, 0)
        error = jnp.where(sigma > 0, residual / jnp.where(sigma > 0, sigma, 1), 0)
        w_norm = scaled_norm(w, 0)
        following = jnp.where(w_norm > 0, w / jnp.where(w_norm > 0, w_norm, 1), v)
        return following, sigma, error, count + 1, v

    def unconverged(carry):
        _, sigma, error, count, _ = carry
        return (error > tol * sigma) & (count < num_iters)

    v0 = v0 / scaled_norm(v0, 0)
    inf = jnp.array(jnp.inf, dtype)
    _, sigma, error, count, v = jax.lax.while_loop(
        unconverged, body, (v0, jnp.zeros((), dtype), inf, jnp.zeros((), jnp.int32), v0)
    )
    return PowerIteration(sigma, v, error, count, error <= tol * sigma)


def mean_squared_singular_value(
    matrix_or_matvec: jax.Array | Callable[[jax.Array], jax.Array],
    *,
    key: jax.Array,
    num_probes: int = 100,
    dim: int | None = None,
    dtype: Any = None,
    precision: jax.lax.Precision = HIGHEST,
) -> HutchinsonEstimate:
    """(1/n)‖J‖_F² = (1/n) Σ σ_i² by Hutchinson's estimator with Rademacher probes.

    E[‖Jv‖²] = ‖J‖_F² for v with independent ±1 entries, and Rademacher probes give the smallest
    variance among such estimators: Var‖Jv‖² = 2 Σ_{i≠j} (JᵀJ)_ij² ≤ 2‖J‖_F⁴ (Hutchinson 1989).
    The probes are pushed through the matvec together (``jax.vmap``).

    Args:
      matrix_or_matvec: a matrix (m, n) or a linear function R^n → R^m.
      key: for the probes.
      num_probes: p ≥ 2.
      dim: n, required for a matvec.
      dtype: dtype of the probes for a matvec (default: JAX's default float).
      precision: of the matrix products (for a matrix).

    Returns:
      A :class:`HutchinsonEstimate`; its ``standard_error`` is the empirical one.

    References:
      Hutchinson (1989).

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> J = jnp.diag(jnp.array([1.0, 2.0, 3.0]))  # (1 + 4 + 9) / 3
      >>> round(float(jf.mean_squared_singular_value(J, key=jax.random.key(0)).value), 4)
      4.6667
    """
    _check_key(key, "mean_squared_singular_value")
    matvec, _, n, dtype = _linear_operator(
        matrix_or_matvec, dim, dtype, precision, "mean_squared_singular_value"
    )
    num_probes = positive_int("num_probes", num_probes, 2)
    probes = jax.random.rademacher(key, (num_probes, n), dtype)
    squares = jnp.sum(jnp.square(jax.vmap(matvec)(probes)), axis=-1) / n
    return HutchinsonEstimate(
        jnp.mean(squares),
        jnp.std(squares, ddof=1) / np.sqrt(num_probes),
        jnp.asarray(num_probes, jnp.int32),
    )


def _check_key(key, name):
    if key is None:
        raise ValueError(f"{name}: key=None; pass a key, e.g. key=jax.random.key(0)")


def _stack_and_h0(model, variables, x, wrt, name, key):
    _check_key(key, name)
    stack, x = resolve(model, variables, x, wrt)
    if jnp.ndim(x) != 1:
        raise ValueError(
            f"x has shape {jnp.shape(x)}; {name} takes one input (jax.vmap it for a batch)"
        )
    h0 = stack.input_map(x)
    check_square(stack.block_fn, stack.blocks, h0)
    return stack, h0


def _estimates(matvec, n, dtype, key, num_iters, tol, num_probes):
    power_key, probe_key = jax.random.split(key)
    return SpectralEstimates(
        top_singular_value(matvec, key=power_key, dim=n, dtype=dtype, num_iters=num_iters, tol=tol),
        mean_squared_singular_value(
            matvec, key=probe_key, num_probes=num_probes, dim=n, dtype=dtype
        ),
    )


def layer_spectral_estimates(
    model,
    variables,
    x,
    *,
    key: jax.Array,
    num_iters: int = 1000,
    tol: float | None = None,
    num_probes: int = 100,
    wrt: str = "postactivation",
) -> SpectralEstimates:
    """σ_max(J_l) and (1/n)‖J_l‖_F² for every layer, without materialising any J_l.

    The chain's scan runs with ``mode="linear"``: each J_l arrives as the linearised block
    v ↦ J_l v (``jax.linearize``), its transpose is the VJP, and :func:`top_singular_value` and
    :func:`mean_squared_singular_value` run on it. Memory is O(n·probes), not O(n²), per layer.

    Args:
      model: a jaxflow model or a block function.
      variables: its variables, or the stacked block params.
      x: one input (d,), or h_0 for a block function.
      key: randomness for start vectors and probes (layer l uses ``fold_in(key, l)``).
      num_iters: power-iteration steps at most, per layer.
      tol: power-iteration tolerance (see :func:`top_singular_value`).
      num_probes: Hutchinson probes per layer.
      wrt: as in :func:`~jaxflow.jacobian_chain`.

    Returns:
      :class:`SpectralEstimates` with a leading axis of length L on every field.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> ws = jnp.stack([jnp.diag(jnp.array([3.0, 1.0])), jnp.diag(jnp.array([2.0, 2.0]))])
      >>> est = jf.layer_spectral_estimates(lambda w, h: jnp.tanh(w @ h), ws, jnp.zeros(2),
      ...                                   key=jax.random.key(1))  # tanh′(0) = 1: J_l = W_l
      >>> est.top.sigma.round(4).tolist(), est.mean_squared.value.round(4).tolist()
      ([3.0, 2.0], [5.0, 4.0])
    """
    stack, h0 = _stack_and_h0(model, variables, x, wrt, "layer_spectral_estimates", key)
    n, dtype = h0.shape[-1], h0.dtype

    def estimates(layer):
        return _estimates(
            layer.jacobian,
            n,
            dtype,
            jax.random.fold_in(key, layer.index),
            num_iters,
            tol,
            num_probes,
        )

    _, _, estimates = accumulate_chain(
        stack.block_fn, stack.blocks, h0, statistic(estimates), mode="linear"
    )
    return estimates


def product_spectral_estimates(
    model,
    variables,
    x,
    *,
    key: jax.Array,
    num_iters: int = 1000,
    tol: float | None = None,
    num_probes: int = 100,
    wrt: str = "postactivation",
) -> SpectralEstimates:
    """σ_max(P_L) and (1/n)‖P_L‖_F² of the end-to-end product, by chained JVPs through the network.

    P_L v is the JVP of the hidden stack h_0 ↦ h_L (``jax.linearize`` of the forward pass, which
    chains J_L ⋯ J_1 v layer by layer), P_Lᵀ u its transpose (the backward pass). Nothing of size
    n² is formed, so this scales to widths where :func:`~jaxflow.jacobian_chain` cannot.

    Args:
      model: a jaxflow model or a block function.
      variables: its variables, or the stacked block params.
      x: one input (d,), or h_0 for a block function.
      key: randomness for the start vector and the probes.
      num_iters: power-iteration steps at most.
      tol: power-iteration tolerance (see :func:`top_singular_value`).
      num_probes: Hutchinson probes.
      wrt: as in :func:`~jaxflow.jacobian_chain`.

    Returns:
      :class:`SpectralEstimates` for P_L (scalar fields).

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> ws = jnp.stack([jnp.diag(jnp.array([3.0, 1.0])), jnp.diag(jnp.array([2.0, 2.0]))])
      >>> est = jf.product_spectral_estimates(lambda w, h: jnp.tanh(w @ h), ws, jnp.zeros(2),
      ...                                     key=jax.random.key(1))  # P_2 = diag(6, 2)
      >>> round(float(est.top.sigma), 4), round(float(est.mean_squared.value), 4)
      (6.0, 20.0)
    """
    stack, h0 = _stack_and_h0(model, variables, x, wrt, "product_spectral_estimates", key)

    def hidden(h):  # the forward pass over the blocks, h_0 ↦ h_L (the chain with no reduction)
        return accumulate_chain(stack.block_fn, stack.blocks, h, ()).output

    _, chained_jvp = jax.linearize(hidden, h0)
    return _estimates(chained_jvp, h0.shape[-1], h0.dtype, key, num_iters, tol, num_probes)

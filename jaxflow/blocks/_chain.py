"""The numerics of :func:`~jaxflow.block_chain`: the result type, the dense chain (J_l, P_l,
SVDs, the graded log-spectrum of a rectangular chain) and the matrix-free estimates.

See :mod:`jaxflow.blocks` for the conventions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._chain_kernels import METHODS as _KERNELS
from jaxflow._numerics import HIGHEST, all_finite, same_up_to_rounding, scaled_norm
from jaxflow.jacobians import JacobianChain
from jaxflow.spectra import SpectralEstimates, mean_squared_singular_value, top_singular_value

MATRIX_FREE_ABOVE = 2048
"""``method="auto"`` goes matrix-free once some state has more entries than this: a float32 J of
2048 × 2048 is 16 MiB, its SVD about a second on one CPU core, and the graded log-spectrum costs
O(N³) per block; beyond that the estimates on JVP/VJP pay off."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlockChain:
    """Per-block Jacobians of a selected chain of blocks, their products and spectra.

    One list entry per block, because blocks may be rectangular (a stride-2 block maps
    (H, W, C) to (H/2, W/2, 2C)), so J_l and P_l cannot be stacked in general; where they can
    (every state of the same size), :meth:`to_jacobian_chain` gives the stacked
    :class:`~jaxflow.JacobianChain`. With ``batch_axis=0`` every array gains a leading batch axis.
    Fields that a method does not compute are ``None``.

    Attributes:
      names: (static) the blocks' names: linen module paths (``"layers_0/block"``), NNX attribute
        paths (``"blocks.3"``), Equinox attribute paths (``"layers.2"``) or ``"block_2"``.
      shapes: (static) the state shapes h_0, h_1, …, h_L of one example; n_l is their size.
      method: (static) ``"dense"`` or ``"matrix_free"``, what was computed.
      layers: dense: tuple of J_l, (n_l, n_{l−1}).
      products: dense: tuple of P_l = J_l ⋯ J_1, (n_l, n_0).
      layer_singular_values: tuple of (min(n_l, n_{l−1}),) descending (dense), or of the top-k
        estimates (k,) (matrix-free).
      product_singular_values: tuple of (min(n_l, n_0),) descending (dense), or top-k estimates.
      log_spectrum: dense: tuple of (r_l,), ln σ_i(P_l) descending by the graded product,
        r_l = min(n_0, …, n_l) (−inf for an exact zero); ``None`` if not asked for.
      layer_sigma_max: (L,), σ_max(J_l) (exact, or the larger of the power iteration's and
        Lanczos' estimates, both lower bounds).
      product_sigma_max: (L,), σ_max(P_l).
      layer_mean_squared: (L,), (1/n_{l−1})‖J_l‖_F² (exact, or Hutchinson's estimate).
      product_mean_squared: (L,), (1/n_0)‖P_l‖_F².
      layer_estimates: matrix-free: tuple of :class:`~jaxflow.SpectralEstimates` per J_l (with
        the power iteration's error bound and Hutchinson's standard error).
      product_estimates: matrix-free: tuple of :class:`~jaxflow.SpectralEstimates` per P_l.
      resolved: dense: (L,) int, singular values of P_l above σ_max·max(n_l, n_0)·ε.
      underflow: dense: (L,) bool, whether that floor is below the dtype's smallest normal.
      connected: (L−1,) bool, whether block l's output is exactly block l+1's input in the
        forward pass (:func:`block_chain` raises where it is not).
      reproduced: (L,) bool, whether block l, as its Jacobian sees it (one example at a time
        with ``batch_axis=0``), gives its output in the forward pass to 1e-3 of the output's
        scale; not where it mixes the examples of a batch (BatchNorm on batch statistics) or
        draws other random numbers (Dropout in training mode). :func:`block_chain` raises
        where it does not.
      finite: () bool, whether the inputs, the states and every computed value are finite.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> chain = jf.block_chain([jnp.tanh, lambda h: h[:2]], None, jnp.zeros(3))
      >>> chain.method, chain.shapes, [J.shape for J in chain.layers]
      ('dense', ((3,), (3,), (2,)), [(3, 3), (2, 3)])
    """

    names: tuple = dataclasses.field(metadata=dict(static=True))
    shapes: tuple = dataclasses.field(metadata=dict(static=True))
    method: str = dataclasses.field(metadata=dict(static=True))
    layers: Any = None
    products: Any = None
    layer_singular_values: Any = None
    product_singular_values: Any = None
    log_spectrum: Any = None
    layer_sigma_max: Any = None
    product_sigma_max: Any = None
    layer_mean_squared: Any = None
    product_mean_squared: Any = None
    layer_estimates: Any = None
    product_estimates: Any = None
    resolved: Any = None
    underflow: Any = None
    connected: Any = None
    reproduced: Any = None
    finite: Any = None

    def to_jacobian_chain(self) -> JacobianChain:
        """The same chain as a stacked :class:`~jaxflow.JacobianChain` (dense, square blocks).

        Returns:
          A :class:`~jaxflow.JacobianChain` whose ``layers`` are (L, n, n).

        Raises:
          ValueError: if the chain is matrix-free or its states differ in size.

        Example:
          >>> import jax.numpy as jnp, jaxflow as jf
          >>> chain = jf.block_chain([jnp.tanh, jnp.sin], None, jnp.zeros(3))
          >>> chain.to_jacobian_chain().products.shape
          (2, 3, 3)
        """
        sizes = {_size(shape) for shape in self.shapes}
        if self.method != "dense" or len(sizes) != 1:
            raise ValueError(
                f"to_jacobian_chain needs a dense chain of states of one size; this one is "
                f"{self.method} with state shapes {self.shapes}: use the per-block fields"
            )
        axis = self.layers[0].ndim - 2  # after a batch axis, if any

        def stack(xs):
            return jnp.stack(xs, axis=axis)

        return JacobianChain(
            stack(self.layers),
            stack(self.products),
            stack(self.layer_singular_values),
            stack(self.product_singular_values),
            self.finite,
            self.resolved,
            self.underflow,
        )


class _Block(NamedTuple):
    """One selected block as seen in the forward pass (all arrays traced)."""

    name: str
    fn: Callable[[jax.Array], jax.Array]  # the block closed over its variables and extra args
    h_in: jax.Array
    h_out: jax.Array


# ---------------------------------------------------------------------------------------------
# The chain of one example, from the captured blocks.


def _flat(fn, shape):
    return lambda v: jnp.reshape(fn(jnp.reshape(v, shape)), (-1,))


def _at_least_float32(fn, dtype):
    """``fn`` taking and giving at least float32, computing in ``dtype`` as the model does."""
    if jnp.promote_types(dtype, jnp.float32) == dtype:
        return fn

    def wide(v):
        out = fn(v.astype(dtype))
        return out.astype(jnp.promote_types(out.dtype, jnp.float32))

    return wide


def _svd(a):
    return jnp.linalg.svd(a, compute_uv=False)


def _graded_log_spectra(layers, sizes):
    """ln σ(P_l) of a rectangular chain by the graded product on zero-embedded N × N matrices,
    one ``lax.scan`` over the embedded layers (compiled once, whatever the depth)."""
    _, update, read = _KERNELS["graded"]
    big = max(sizes)
    dtype = layers[0].dtype
    eye = jnp.eye(big, dtype=dtype)
    padded = jnp.stack(
        [jnp.zeros((big, big), dtype).at[: J.shape[0], : J.shape[1]].set(J) for J in layers]
    )
    # P_0 = I_{n_0} embedded: the rows of D beyond n_0 are exact zeros (ln 0 = −inf).
    hi = jnp.where(jnp.arange(big) < sizes[0], 0.0, -jnp.inf).astype(dtype)

    def step(state, J):
        state = update(J, state)
        return state, read(state)

    _, values = jax.lax.scan(step, (eye, hi, jnp.zeros(big, dtype), eye), padded)
    ranks = np.minimum.accumulate(sizes)[1:]
    return tuple(values[l, :r] for l, r in enumerate(ranks))


def _dense(fns, h_ins, mode, want_log_spectrum):
    layers, products = [], []
    P = None
    for f, h in zip(fns, h_ins):
        n_in = h.size
        n_out = jax.eval_shape(f, h).size
        jac = jax.jacfwd if mode == "fwd" or (mode == "auto" and n_in < n_out) else jax.jacrev
        J = jac(f)(h)
        P = J if P is None else jnp.matmul(J, P, precision=HIGHEST)
        layers.append(J)
        products.append(P)
    layer_sv = tuple(_svd(J) for J in layers)
    product_sv = tuple(_svd(P) for P in products)
    finfo = jnp.finfo(products[0].dtype)
    floors = jnp.stack([sv[0] * max(P.shape) * finfo.eps for sv, P in zip(product_sv, products)])
    resolved = jnp.stack([jnp.sum(sv > f) for sv, f in zip(product_sv, floors)])
    sizes = [h_ins[0].size] + [J.shape[0] for J in layers]
    return dict(
        layers=tuple(layers),
        products=tuple(products),
        layer_singular_values=layer_sv,
        product_singular_values=product_sv,
        log_spectrum=_graded_log_spectra(layers, sizes) if want_log_spectrum else None,
        layer_sigma_max=jnp.stack([sv[0] for sv in layer_sv]),
        product_sigma_max=jnp.stack([sv[0] for sv in product_sv]),
        layer_mean_squared=jnp.stack(
            [jnp.sum(sv**2) / J.shape[1] for sv, J in zip(layer_sv, layers)]
        ),
        product_mean_squared=jnp.stack(
            [jnp.sum(sv**2) / P.shape[1] for sv, P in zip(product_sv, products)]
        ),
        resolved=resolved,
        underflow=floors < finfo.tiny,
    )


def _top_k_singular_values(matvec, n, dtype, k, key, steps):
    """The k largest singular values of a linear map R^n → R^n by Golub–Kahan–Lanczos
    bidiagonalisation with full reorthogonalisation (Golub & Kahan 1965; Larsen 1998): ``steps``
    JVP/VJP pairs give J V = U B with B upper bidiagonal, and the largest singular values of B
    converge to those of J far faster than power or subspace iteration when they are close
    (a conv layer's are). Exact when ``steps`` reaches the rank.
    """
    transpose = jax.linear_transpose(matvec, jax.ShapeDtypeStruct((n,), dtype))
    floor = steps * jnp.finfo(dtype).eps  # relative to the largest α, β so far

    def unit(x):
        norm = scaled_norm(x)
        return x / jnp.where(norm > 0, norm, 1), norm

    def orthogonalise(x, basis):  # twice is enough (Giraud et al. 2005)
        for _ in range(2):
            x = x - jnp.matmul(basis.T, jnp.matmul(basis, x, precision=HIGHEST), precision=HIGHEST)
        return x

    def step(j, carry):
        # Once α or β falls to rounding the Krylov space is invariant (the rank is exhausted):
        # B's values are then exact, and what follows is rounding noise, so the rest stays 0.
        V, U, alpha, beta, v, u_prev, b, scale, alive = carry
        V = V.at[j].set(v)
        u, a = unit(orthogonalise(matvec(v) - b * u_prev, U))
        scale = jnp.maximum(scale, a)
        alive = alive & (a > floor * scale)
        u, a = jnp.where(alive, u, 0), jnp.where(alive, a, 0)
        U = U.at[j].set(u)
        v, b = unit(orthogonalise(transpose(u)[0] - a * v, V))
        scale = jnp.maximum(scale, b)
        alive = alive & (b > floor * scale)
        v, b = jnp.where(alive, v, 0), jnp.where(alive, b, 0)
        return V, U, alpha.at[j].set(a), beta.at[j].set(b), v, u, b, scale, alive

    v0, _ = unit(jax.random.normal(key, (n,), dtype))
    zeros = jnp.zeros((steps, n), dtype)
    vector, scalar = jnp.zeros(steps, dtype), jnp.zeros((), dtype)
    carry = (zeros, zeros, vector, vector, v0, v0 * 0, scalar, scalar, jnp.array(True))
    _, _, alpha, beta, *_ = jax.lax.fori_loop(0, steps, step, carry)
    B = jnp.diag(alpha) + jnp.diag(beta[:-1], 1)
    return _svd(B)[:k]


def _matrix_free(fns, h_ins, key, top_k, num_probes, num_iters, tol):
    """Estimates for every J_l and P_l from the linearised blocks, in one compiled loop.

    Each J_l is embedded in R^N → R^N (N the largest state, zero-padded), so the 2L operators
    (J_l, and P_l = J_l ⋯ J_1 as a chain of JVPs) share one signature and the estimators run
    in a single ``lax.map`` whose body ``lax.switch``-es to the block: compile time does not
    grow with the number of estimators times blocks.
    """
    jvps, sizes = [], [h_ins[0].size]
    for f, h in zip(fns, h_ins):
        _, jvp = jax.linearize(f, h)
        jvps.append(jvp)
        sizes.append(jax.eval_shape(f, h).size)
    depth, big, dtype = len(jvps), max(sizes), h_ins[0].dtype
    steps = min(big, 2 * top_k + 24)  # Lanczos steps for the top-k

    def embedded(jvp, n_in):
        return lambda v: jnp.zeros(big, dtype).at[: _n_out(jvp, n_in, dtype)].set(jvp(v[:n_in]))

    branches = [embedded(jvp, n) for jvp, n in zip(jvps, sizes)] + [lambda v: v]
    # Operator i < L is J_{i+1}; operator L + i is P_{i+1}: it applies blocks first … last.
    first = np.array([*range(depth), *[0] * depth])
    last = np.array([*range(depth), *range(depth)])
    n_in = np.array([*sizes[:-1], *[sizes[0]] * depth])
    n_out = np.array([*sizes[1:], *sizes[1:]])

    def estimate(args):
        lo, hi, inputs, key = args

        def matvec(v):
            def step(v, j):
                on = (j >= lo) & (j <= hi)
                return jax.lax.switch(jnp.where(on, j, depth), branches, v), None

            return jax.lax.scan(step, v, jnp.arange(depth))[0]

        k1, k2, k3 = jax.random.split(key, 3)
        top = top_singular_value(matvec, key=k1, dim=big, dtype=dtype, num_iters=num_iters, tol=tol)
        mean_sq = mean_squared_singular_value(
            matvec, key=k2, num_probes=num_probes, dim=big, dtype=dtype
        )
        scale = big / inputs  # the probes' padded entries meet zero columns
        mean_sq = mean_sq._replace(
            value=mean_sq.value * scale, standard_error=mean_sq.standard_error * scale
        )
        values = _top_k_singular_values(matvec, big, dtype, top_k, k3, steps)
        return SpectralEstimates(top, mean_sq), values

    keys = jax.random.split(key, 2 * depth)
    estimates, values = jax.lax.map(
        estimate, (jnp.asarray(first), jnp.asarray(last), jnp.asarray(n_in, dtype), keys)
    )

    def pick(i):
        e = jax.tree.map(lambda a: a[i], estimates)
        e = e._replace(top=e.top._replace(vector=e.top.vector[: n_in[i]]))
        return e, values[i, : min(top_k, n_in[i], n_out[i])]

    # Power iteration and Lanczos both approach σ_max from below: the larger is the better.
    sigma_max = jnp.maximum(estimates.top.sigma, values[:, 0])
    layer = [pick(i) for i in range(depth)]
    prod = [pick(depth + i) for i in range(depth)]
    return dict(
        layer_singular_values=tuple(v for _, v in layer),
        product_singular_values=tuple(v for _, v in prod),
        layer_sigma_max=sigma_max[:depth],
        product_sigma_max=sigma_max[depth:],
        layer_mean_squared=estimates.mean_squared.value[:depth],
        product_mean_squared=estimates.mean_squared.value[depth:],
        layer_estimates=tuple(e for e, _ in layer),
        product_estimates=tuple(e for e, _ in prod),
    )


def _n_out(jvp, n_in, dtype):
    return jax.eval_shape(jvp, jax.ShapeDtypeStruct((n_in,), dtype)).shape[0]


def _measure(captured, options, key):
    """BlockChain from the captured blocks (inside the compiled function)."""
    method, mode, batched, top_k, num_probes, num_iters, tol, want_log = options
    names = tuple(b.name for b in captured)
    for b in captured:
        if not jnp.issubdtype(b.h_in.dtype, jnp.floating):
            raise TypeError(
                f"block {b.name!r}'s input has dtype {b.h_in.dtype}; a Jacobian needs real "
                "floating-point states (for a list of callables, pass h_0 as float32)"
            )
    for a, b in zip(captured, captured[1:]):
        if a.h_out.shape != b.h_in.shape:
            raise ValueError(
                f"block {a.name!r}'s output {a.h_out.shape} does not feed block {b.name!r}'s "
                f"input {b.h_in.shape}: something between them changes the state, so the product "
                "of their Jacobians is not ∂h_L/∂h_0. Select blocks that follow one another "
                "directly (or a parent module that contains what lies between)"
            )
    # The same traced array passed on is connected by construction; anything else (a copy, a
    # cast) is compared by value, and block_chain raises after the call where it differs.
    connected = jnp.stack(
        [jnp.asarray(True)]
        + [
            jnp.asarray(True) if a.h_out is b.h_in else jnp.array_equal(a.h_out, b.h_in)
            for a, b in zip(captured, captured[1:])
        ]
    )[1:]
    if batched:
        for b in captured:
            if b.h_in.ndim == 0 or b.h_in.shape[0] != captured[0].h_in.shape[0]:
                raise ValueError(
                    f"batch_axis=0, but block {b.name!r}'s input has shape {b.h_in.shape} while "
                    f"the first block's batch is {captured[0].h_in.shape[0]}"
                )
        shapes = tuple(b.h_in.shape[1:] for b in captured) + (captured[-1].h_out.shape[1:],)
        fns = [_flat(lambda h, fn=b.fn: fn(h[None])[0], b.h_in.shape[1:]) for b in captured]
        h_ins = [jnp.reshape(b.h_in, (b.h_in.shape[0], -1)) for b in captured]
    else:
        shapes = tuple(b.h_in.shape for b in captured) + (captured[-1].h_out.shape,)
        fns = [_flat(b.fn, b.h_in.shape) for b in captured]
        h_ins = [jnp.reshape(b.h_in, (-1,)) for b in captured]
    # Mixed precision (bfloat16 or float16 states): the Jacobians, products and decompositions
    # run in float32 on the blocks' own half-precision arithmetic (LAPACK has no half types).
    fns = [_at_least_float32(fn, h.dtype) for fn, h in zip(fns, h_ins, strict=True)]
    h_ins = [h.astype(jnp.promote_types(h.dtype, jnp.float32)) for h in h_ins]

    # Each block as its Jacobian sees it must give the forward pass's output; a block that mixes
    # the examples of a batch, or draws other random numbers, has no such Jacobian.
    def reproduces(fn, b):
        h_in = jnp.reshape(b.h_in, (b.h_in.shape[0], -1) if batched else (-1,))
        h_out = jnp.reshape(b.h_out, (b.h_out.shape[0], -1) if batched else (-1,))
        out = jax.vmap(fn)(h_in) if batched else fn(h_in)
        # Non-finite entries are the forward pass's own (reported by ``finite``): they reproduce
        # when they are the same non-finite value; the rest is compared to the finite scale.
        finite = jnp.isfinite(h_out)
        scale = jnp.max(jnp.where(finite, jnp.abs(h_out), 0))
        # Rounding of the state's own dtype (bfloat16: 8 bits) is not a difference.
        rtol = same_up_to_rounding(h_out.dtype)
        close = jnp.abs(out - h_out) <= rtol * scale + jnp.finfo(h_out.dtype).tiny
        same = (out == h_out) | (jnp.isnan(out) & jnp.isnan(h_out))
        return jnp.all(jnp.where(finite, close, same))

    reproduced = jnp.stack([reproduces(fn, b) for fn, b in zip(fns, captured)])
    if method == "auto":
        method = "dense" if max(_size(s) for s in shapes) <= MATRIX_FREE_ABOVE else "matrix_free"

    def one(h_ins, key):
        if method == "dense":
            return _dense(fns, h_ins, mode, want_log)
        return _matrix_free(fns, h_ins, key, top_k, num_probes, num_iters, tol)

    if batched:
        keys = jax.random.split(key, h_ins[0].shape[0])
        fields = jax.vmap(one)(h_ins, keys)
    else:
        fields = one(h_ins, key)
    # ln 0 = −inf in the log-spectrum is mathematics (an exactly singular product), not overflow.
    fields["finite"] = all_finite(
        h_ins, captured[-1].h_out, {k: v for k, v in fields.items() if k != "log_spectrum"}
    )
    return BlockChain(names, shapes, method, connected=connected, reproduced=reproduced, **fields)


def _size(shape):
    size = 1
    for d in shape:
        size *= d
    return size

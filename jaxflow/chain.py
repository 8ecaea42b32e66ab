"""The chain engine: one forward scan and one backward scan over the stacked blocks.

Every walk of the stack in jaxflow is one of these two calls:

* :func:`accumulate_chain` runs the blocks h_l = f(θ_l, h_{l−1}) once, takes J_l = ∂h_l/∂h_{l−1}
  where a reduction asks for it, and folds each layer into any number of **reductions** at once.
  A :class:`Reduction` is an ``(init, update, read)`` triple: ``init(h_0)`` gives the state before
  layer 1, ``update(layer, state)`` the state after layer l, and ``read(layer, state_l)`` what is
  emitted at layer l (stacked over the L layers). The standard ones are :func:`products` (P_l),
  :func:`jacobians` (J_l), :func:`outputs` (h_l), :func:`spectral_norms` (‖J_l‖₂),
  :func:`scaled_products` (P_l with a running log scale), :func:`log_spectrum` (the graded / QR /
  SVD log-spectra of :mod:`jaxflow.spectra`) and :func:`statistic` (any per-layer function).
* :func:`backward_chain` pulls cotangents back through the same blocks with one ``jax.vjp`` per
  layer, in one reverse scan, given the block inputs h_0 … h_{L−1} the forward scan emitted. K
  backward passes run at once, pass k starting with ``cotangents[k]`` at h_{d_k} (the loss of a
  depth-d_k network), so every depth of a sweep is answered by one scan. Optionally the cotangents
  carry a running log scale, so a gradient that vanishes geometrically over a thousand layers is
  still measured (its logarithm) rather than flushed to zero.

Memory: the forward carry is each reduction's state (O(n²) for a product), the emitted values are
O(L) times what each ``read`` returns; the backward carry is K cotangents. Nothing is O(L·n²)
unless a reduction emits an n × n matrix per layer (:func:`products`, :func:`jacobians`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow._numerics import HIGHEST, safe_log, scaled_norm

__all__ = [
    "Accumulated",
    "Backward",
    "BackwardStep",
    "Layer",
    "Reduction",
    "accumulate_chain",
    "backward_chain",
    "jacobians",
    "log_spectrum",
    "outputs",
    "products",
    "scaled_products",
    "scan_chain",
    "singular_values",
    "spectral_norms",
    "statistic",
]

MODES = ("rev", "fwd")


def singular_values(a: jax.Array) -> jax.Array:
    """Singular values of a matrix or a stack of matrices, descending.

    Args:
      a: (..., m, n).

    Returns:
      (..., min(m, n)), descending; float32 for a bfloat16 or float16 ``a``.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> jf.singular_values(jnp.diag(jnp.array([1.0, 3.0, 2.0]))).tolist()
      [3.0, 2.0, 1.0]
    """
    # LAPACK has no half types: bfloat16 / float16 matrices are decomposed in float32.
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    with jax.default_matmul_precision("float32"):
        return jnp.linalg.svd(a, compute_uv=False)


class Layer(NamedTuple):
    """What a reduction sees of layer l.

    Attributes:
      index: () int32, l (1-based).
      params: block l's variables θ_l.
      input: h_{l−1}.
      output: h_l.
      jacobian: J_l = ∂h_l/∂h_{l−1}: an (n, n) array (``mode="rev"``/``"fwd"``) or the linear map
        v ↦ J_l v (``mode="linear"``); ``None`` when no reduction asks for it.
    """

    index: jax.Array
    params: Any
    input: jax.Array
    output: jax.Array
    jacobian: Any


class Reduction(NamedTuple):
    """One quantity folded over the layers: ``(init, update, read)`` and whether it needs J_l.

    Attributes:
      init: ``h_0 -> state``, the state before layer 1 (any pytree, or ``None``).
      update: ``(layer, state) -> state`` with the same structure, shapes and dtypes, or ``None``
        for a stateless reduction.
      read: ``(layer, state_l) -> pytree`` emitted at every layer (stacked on a leading axis of
        length L), or ``None`` to emit nothing (only the final state is wanted).
      jacobian: whether ``update``/``read`` use ``layer.jacobian``. When no reduction does, the
        scan is a plain forward pass and h may have any shape (e.g. a batch).

    Example:
      Σ_l ln|det J_l| as a state, and tr J_l emitted per layer:

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> log_det = jf.Reduction(
      ...     lambda h0: 0.0, lambda layer, s: s + jnp.linalg.slogdet(layer.jacobian)[1])
      >>> trace = jf.chain.statistic(lambda layer: jnp.trace(layer.jacobian))
      >>> ws = jnp.stack([2 * jnp.eye(2), 3 * jnp.eye(2)])
      >>> _, (s, _), (_, traces) = jf.accumulate_chain(
      ...     lambda w, h: w @ h, ws, jnp.ones(2), (log_det, trace))
      >>> round(float(jnp.exp(s))), traces.tolist()
      (36, [4.0, 6.0])
    """

    init: Callable[[jax.Array], Any] | None = None
    update: Callable[[Layer, Any], Any] | None = None
    read: Callable[[Layer, Any], Any] | None = None
    jacobian: bool = True


class Accumulated(NamedTuple):
    """What :func:`accumulate_chain` returns; ``state`` and ``emitted`` mirror the reductions
    (one value, a tuple or a dict).

    Attributes:
      output: h_L.
      state: every reduction's state after layer L.
      emitted: every reduction's per-layer reads, each leaf with a leading axis of length L
        (``None`` for a reduction without ``read``).
    """

    output: jax.Array
    state: Any
    emitted: Any


def _check_mode(mode, allowed):
    if mode not in allowed:
        raise ValueError(f"mode={mode!r} is not a known differentiation mode; use one of {allowed}")


def _as_reductions(reductions):
    """(flat tuple of Reductions, function rebuilding the caller's structure from a flat list)."""
    if isinstance(reductions, Reduction):
        return (reductions,), lambda flat: flat[0]
    if isinstance(reductions, dict):
        keys = tuple(reductions)
        return tuple(reductions[k] for k in keys), lambda flat: dict(zip(keys, flat))
    if isinstance(reductions, (tuple, list)):
        return tuple(reductions), tuple
    raise TypeError(
        f"reductions is a {type(reductions).__name__}; give a Reduction, a tuple of them or a "
        "dict of them (or the legacy form init, update, emit)"
    )


def accumulate_chain(
    block_fn: Callable[[Any, jax.Array], jax.Array],
    blocks: Any,
    h0: jax.Array,
    reductions: Any,
    update: Callable[[Any, Any], Any] | None = None,
    emit: Callable[..., Any] | None = None,
    *,
    mode: str = "rev",
    with_output: bool = False,
) -> Accumulated:
    """The one forward scan over the stack, folding each layer into every reduction at once.

    Layer by layer it computes h_l = ``block_fn(θ_l, h_{l−1})``, takes J_l at h_{l−1} if any
    reduction needs it (``jax.jacrev``, ``jax.jacfwd`` or ``jax.linearize``, once for all of
    them), and for each reduction sets ``state_l = update(layer, state_{l−1})`` and emits
    ``read(layer, state_l)``.

    The **single-state form** ``accumulate_chain(block_fn, blocks, h0, init, update, emit)`` is
    kept (and not deprecated): it is one reduction whose ``update(J_l, state)`` and
    ``emit(J_l, state_l)`` (``emit(J_l, state_l, h_l)`` with ``with_output=True``) see J_l
    only. It is recognised by the positional ``update``.

    Args:
      block_fn: ``(block_variables, h) -> h``; square (h_l has h_{l−1}'s shape).
      blocks: stacked block variables, every leaf with a leading axis of length L.
      h0: the input of the first block; (n,) whenever a reduction needs J_l.
      reductions: a :class:`Reduction`, a tuple of them or a dict of them (single-state form:
        the initial state).
      update: single-state form only: ``(J_l, state) -> state``.
      emit: single-state form only: ``(J_l, state_l) -> pytree`` or ``None``.
      mode: how J_l is taken: ``"rev"`` (an (n, n) array from ``jax.jacrev``, the default),
        ``"fwd"`` (the same from ``jax.jacfwd``) or ``"linear"`` (the function v ↦ J_l v from
        ``jax.linearize``; its transpose is ``jax.linear_transpose``).
      with_output: single-state form only: pass h_l to ``emit`` as a third argument.

    Returns:
      :class:`Accumulated` ``(output, state, emitted)``, which unpacks as ``h_L, state, emitted``.

    Raises:
      ValueError: for an unknown ``mode``.
      TypeError: if ``reductions`` is not a Reduction, a tuple or a dict of them.

    Example:
      Several reductions in one scan: the product P_l and the outputs h_l.

      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> block = lambda w, h: w @ h
      >>> ws = jnp.stack([2 * jnp.eye(2), 3 * jnp.eye(2)])
      >>> h, (P, _), (_, hs) = jf.accumulate_chain(
      ...     block, ws, jnp.ones(2), (jf.chain.products(read=False), jf.chain.outputs()))
      >>> P.tolist(), hs[:, 0].tolist()
      ([[6.0, 0.0], [0.0, 6.0]], [2.0, 6.0])

      The single-state form:

      >>> _, log_det, _ = jf.accumulate_chain(
      ...     block, ws, jnp.ones(2), 0.0, lambda J, s: s + jnp.linalg.slogdet(J)[1])
      >>> round(float(jnp.exp(log_det)))  # det(J_2 J_1) = 4 · 9
      36
    """
    _check_mode(mode, MODES + ("linear",))
    if update is not None:
        return _single_state(block_fn, blocks, h0, reductions, update, emit, mode, with_output)
    if emit is not None or with_output:
        raise TypeError(
            "emit= and with_output= belong to the single-state form (init, update, emit)"
        )
    flat, rebuild = _as_reductions(reductions)
    for r in flat:
        if not isinstance(r, Reduction):
            raise TypeError(f"{r!r} is not a Reduction (init, update, read, jacobian)")
    need_jacobian = any(r.jacobian for r in flat)
    states0 = tuple(None if r.init is None else r.init(h0) for r in flat)

    def body(carry, xs):
        h, states = carry
        index, block_vars = xs

        def step(h):
            out = block_fn(block_vars, h)
            return out, out

        if not need_jacobian:
            out, J = block_fn(block_vars, h), None
        elif mode == "linear":
            out, J = jax.linearize(lambda h: step(h)[0], h)
        else:
            jacobian = jax.jacrev if mode == "rev" else jax.jacfwd
            J, out = jacobian(step, has_aux=True)(h)
        layer = Layer(index, block_vars, h, out, J)
        states = tuple(s if r.update is None else r.update(layer, s) for r, s in zip(flat, states))
        reads = tuple(None if r.read is None else r.read(layer, s) for r, s in zip(flat, states))
        return (out, states), reads

    depth = jax.tree.leaves(blocks)[0].shape[0]
    indices = jnp.arange(1, depth + 1, dtype=jnp.int32)
    (h, states), reads = jax.lax.scan(body, (h0, states0), (indices, blocks))
    return Accumulated(h, rebuild(list(states)), rebuild(list(reads)))


def _single_state(block_fn, blocks, h0, init, update, emit, mode, with_output):
    def read(layer, state):
        if emit is None:
            return None
        if with_output:
            return emit(layer.jacobian, state, layer.output)
        return emit(layer.jacobian, state)

    reduction = Reduction(lambda h: init, lambda layer, state: update(layer.jacobian, state), read)
    return accumulate_chain(block_fn, blocks, h0, reduction, mode=mode)


def scan_chain(
    block_fn: Callable[[Any, jax.Array], jax.Array],
    blocks: Any,
    h0: jax.Array,
    emit: Callable[[jax.Array, jax.Array | None], Any],
    *,
    products: bool = True,
    mode: str = "rev",
    with_output: bool = False,
):
    """Deprecated: :func:`accumulate_chain` with the :func:`products` reduction.

    Takes every J_l, carries P_l and emits ``emit(J_l, P_l)`` (``emit(J_l, P_l, h_l)`` with
    ``with_output``; P_l is ``None`` if ``products`` is False), returning ``(h_L, emitted)``.
    Write ``accumulate_chain(block_fn, blocks, h0, (products(), jacobians()))`` or a
    :func:`statistic` instead; this wrapper warns and goes in the next release.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> block = lambda w, h: jnp.tanh(w @ h)
      >>> ws = jnp.stack([jnp.eye(3), 2 * jnp.eye(3)])
      >>> _, (P, _), (_, dets) = jf.accumulate_chain(block, ws, jnp.zeros(3), (
      ...     jf.chain.products(read=False),
      ...     jf.chain.statistic(lambda layer: jnp.linalg.det(layer.jacobian))))
      >>> jnp.linalg.det(P).tolist(), dets.tolist()
      (8.0, [1.0, 8.0])
    """
    warnings.warn(
        "jaxflow.scan_chain is deprecated; use jaxflow.accumulate_chain with the "
        "jaxflow.chain.products() reduction",
        DeprecationWarning,
        stacklevel=2,
    )
    _check_mode(mode, MODES)
    if products:
        init = jnp.eye(h0.shape[-1], dtype=h0.dtype)

        def update(J, P):
            return jnp.matmul(J, P, precision=HIGHEST)
    else:
        init = None

        def update(J, P):
            return None

    h, _, emitted = accumulate_chain(
        block_fn, blocks, h0, init, update, emit, mode=mode, with_output=with_output
    )
    return h, emitted


# ---------------------------------------------------------------------------------------------
# Standard reductions


def products(*, read: bool = True) -> Reduction:
    """P_l = J_l ⋯ J_1, left-multiplied at ``Precision.HIGHEST``; emitted per layer if ``read``
    (O(L·n²): for every P_l; with ``read=False`` only P_L is kept, as the final state)."""

    def init(h0):
        return jnp.eye(h0.shape[-1], dtype=h0.dtype)

    def update(layer, P):
        return jnp.matmul(layer.jacobian, P, precision=HIGHEST)

    return Reduction(init, update, (lambda layer, P: P) if read else None)


def jacobians() -> Reduction:
    """J_l at every layer, (L, n, n) (or the linear maps under ``mode="linear"``)."""
    return Reduction(None, None, lambda layer, _: layer.jacobian)


def outputs() -> Reduction:
    """h_l at every layer, (L, *h.shape); needs no Jacobian."""
    return Reduction(None, None, lambda layer, _: layer.output, jacobian=False)


def statistic(fn: Callable[[Layer], Any], *, jacobian: bool = True) -> Reduction:
    """``fn(layer)`` emitted at every layer: any per-layer statistic of θ_l, h_{l−1}, h_l, J_l."""
    return Reduction(None, None, lambda layer, _: fn(layer), jacobian=jacobian)


def spectral_norms() -> Reduction:
    """‖J_l‖₂ = σ_max(J_l) at every layer, (L,)."""
    return statistic(lambda layer: singular_values(layer.jacobian)[0])


class ScaledProduct(NamedTuple):
    """P_l = e^{log_scale}·direction, ‖direction‖_F = 1 (or 0 once P_l = 0)."""

    direction: jax.Array
    log_scale: jax.Array


def scaled_products(*, read: Callable[[ScaledProduct], Any] | None = None) -> Reduction:
    """P_l kept as a unit-Frobenius-norm matrix and the natural log of its scale, so a product
    that shrinks or grows geometrically neither underflows nor overflows at any depth.

    Args:
      read: ``ScaledProduct -> pytree`` emitted at every layer (e.g. its log singular values),
        or ``None`` to keep only the final state.
    """

    def init(h0):
        n = h0.shape[-1]
        return ScaledProduct(jnp.eye(n, dtype=h0.dtype), jnp.zeros((), h0.dtype))

    def update(layer, state):
        M = jnp.matmul(layer.jacobian, state.direction, precision=HIGHEST)
        norm = scaled_norm(M)
        return ScaledProduct(M / jnp.where(norm > 0, norm, 1), state.log_scale + safe_log(norm))

    return Reduction(init, update, None if read is None else (lambda layer, s: read(s)))


def log_spectrum(method: str = "graded", selected: jax.Array | None = None) -> Reduction:
    """ln σ_i(P_l) by one of the kernels of :mod:`jaxflow.spectra` (``"graded"``, ``"qr"``,
    ``"svd"``), emitted at every layer (n,), NaN at layers where ``selected[l − 1]`` is False (the
    read-out is skipped there by a ``lax.cond``). The state is O(n²) whatever the depth.

    Args:
      method: the kernel's name (see :func:`jaxflow.log_spectrum`).
      selected: (L,) bool, or ``None`` for every layer.
    """
    from jaxflow._chain_kernels import METHODS as KERNELS

    if method not in KERNELS:
        raise ValueError(f"method={method!r} is not known; use one of {tuple(KERNELS)}")
    kernel = KERNELS[method]

    def init(h0):
        return kernel.init(h0.shape[-1], h0.dtype)

    def update(layer, state):
        return kernel.update(layer.jacobian, state)

    def read(layer, state):
        if selected is None:
            return kernel.read(state)
        n = layer.input.shape[-1]
        return jax.lax.cond(
            selected[layer.index - 1],
            kernel.read,
            lambda _: jnp.full((n,), jnp.nan, layer.input.dtype),
            state,
        )

    return Reduction(init, update, read)


# ---------------------------------------------------------------------------------------------
# The backward engine


class BackwardStep(NamedTuple):
    """What ``emit`` sees of layer l in :func:`backward_chain` (K = number of passes).

    Attributes:
      index: () int32, l (1-based).
      cotangent: (K, *h.shape), ∂ℓ_k/∂h_l for every pass (zero for a pass starting below l);
        with ``scaled=True`` its direction, the pass's gradient being e^{log_scale}·cotangent.
      log_scale: (K,), zeros unless ``scaled``.
      params: ∂ℓ_k/∂θ_l, every leaf with a leading K axis (with the same scale as
        ``cotangent``), or ``None`` unless ``params=True``.
    """

    index: jax.Array
    cotangent: jax.Array
    log_scale: jax.Array
    params: Any


class Backward(NamedTuple):
    """What :func:`backward_chain` returns.

    Attributes:
      input: (K, *h.shape), ∂ℓ_k/∂h_0 (its direction with ``scaled=True``).
      log_scale: (K,), ln of the scale of ``input`` (zeros unless ``scaled``): the gradient is
        e^{log_scale}·input.
      emitted: ``emit``'s per-layer values, each leaf with a leading axis of length L (layer
        l = 1…L), or ``None``.
    """

    input: jax.Array
    log_scale: jax.Array
    emitted: Any


def backward_chain(
    block_fn: Callable[[Any, jax.Array], jax.Array],
    blocks: Any,
    hs: jax.Array,
    cotangents: jax.Array,
    *,
    depths: Any = None,
    emit: Callable[[BackwardStep], Any] | None = None,
    params: bool = False,
    scaled: bool = False,
) -> Backward:
    """K backward passes through the stack at once: one reverse scan of ``jax.vjp`` steps.

    Pass k is the backward pass of a loss read out at h_{d_k}: it starts at layer d_k with
    ``cotangents[k]`` = ∂ℓ_k/∂h_{d_k} and pulls it back, ∂ℓ_k/∂h_{l−1} = J_lᵀ ∂ℓ_k/∂h_l, through
    every block below; above d_k it is zero. Each step is one ``jax.vjp`` of block l at its input
    h_{l−1} applied to all K cotangents (never a materialised J_l).

    Args:
      block_fn: ``(block_variables, h) -> h``, as in :func:`accumulate_chain`.
      blocks: stacked block variables, leading axis L.
      hs: (L, *h.shape), the block inputs h_0 … h_{L−1} (e.g. h_0 and the forward scan's
        :func:`outputs` but the last).
      cotangents: (K, *h.shape), the cotangent each pass starts with.
      depths: (K,) ints in 1…L, the layer whose output each pass starts at; default L for all.
      emit: ``BackwardStep -> pytree`` emitted at every layer, or ``None``.
      params: also pull back to θ_l and hand ∂ℓ_k/∂θ_l to ``emit``.
      scaled: carry each pass as a unit-norm direction and the natural log of its norm,
        renormalised after every layer, so gradients that vanish or explode geometrically keep
        their logarithm at any depth (a pass that becomes exactly zero gets log scale −inf).

    Returns:
      :class:`Backward` ``(input, log_scale, emitted)``.

    Example:
      Linear blocks h_l = w_l h_{l−1}: a loss at h_2 pulls back through w_2 then w_1, one at h_1
      through w_1 only.

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> ws = jnp.array([2.0, 3.0])
      >>> hs = jnp.array([[1.0], [2.0]])  # h_0, h_1
      >>> back = jf.backward_chain(lambda w, h: w * h, ws, hs, jnp.ones((2, 1)), depths=[2, 1])
      >>> back.input[:, 0].tolist()  # ∂h_2/∂h_0 = 6, ∂h_1/∂h_0 = 2
      [6.0, 2.0]
    """
    depth = jax.tree.leaves(blocks)[0].shape[0]
    cotangents = jnp.asarray(cotangents)
    if jnp.ndim(hs) < 1 or jnp.shape(hs)[0] != depth:
        raise ValueError(
            f"hs has shape {jnp.shape(hs)}; it must be the L = {depth} block inputs "
            "h_0 … h_{L−1} stacked on a leading axis"
        )
    if cotangents.shape[1:] != jnp.shape(hs)[1:]:
        raise ValueError(
            f"cotangents has shape {cotangents.shape}; it must be (K, *h.shape) = "
            f"(K, {', '.join(map(str, jnp.shape(hs)[1:]))})"
        )
    num = cotangents.shape[0]
    if depths is None:
        depths = jnp.full((num,), depth, jnp.int32)
    depths = jnp.asarray(depths, jnp.int32)
    if depths.shape != (num,):
        raise ValueError(f"depths has shape {depths.shape}; it must be ({num},), one per cotangent")
    expand = (slice(None),) + (None,) * (cotangents.ndim - 1)
    dtype = cotangents.dtype

    def step(carry, xs):
        G, log_scale = carry
        index, block_vars, h_prev = xs
        start = depths == index
        G = jnp.where(start[expand], cotangents, G)
        log_scale = jnp.where(start, 0, log_scale)
        if params:
            _, pullback = jax.vjp(block_fn, block_vars, h_prev)
            d_vars, d_h = jax.vmap(pullback)(G)
        else:
            _, pullback = jax.vjp(lambda h: block_fn(block_vars, h), h_prev)
            (d_h,), d_vars = jax.vmap(pullback)(G), None
        out = None if emit is None else emit(BackwardStep(index, G, log_scale, d_vars))
        if scaled:
            norm = jax.vmap(scaled_norm)(d_h)
            d_h = d_h / jnp.where(norm > 0, norm, 1)[expand]
            log_scale = jnp.where(depths >= index, log_scale + safe_log(norm), log_scale)
        return (d_h, log_scale), out

    indices = jnp.arange(1, depth + 1, dtype=jnp.int32)
    init = (jnp.zeros_like(cotangents), jnp.zeros((num,), dtype))
    (G0, log_scale), emitted = jax.lax.scan(step, init, (indices, blocks, hs), reverse=True)
    return Backward(G0, log_scale, emitted)

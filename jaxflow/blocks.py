"""Per-block Jacobian chains of any network: Flax linen, Flax NNX, Equinox, or a list of functions.

A user's model is a sequence of blocks h_l = f_l(h_{l−1}) between an input map and a readout,
once the blocks are *selected* (see ``/work/shared/DESIGN.md``, "Any model"). :func:`block_chain`
finds the blocks' inputs in one forward pass, closes each block over its own variables, flattens
every state ((T, d) tokens, (H, W, C) feature maps) to a vector and takes

* J_l = ∂f_l(h)/∂h at the captured input h_{l−1}, an (n_l, n_{l−1}) matrix (rectangular for a
  stride, a projection or a change of width), with ``jax.jacfwd`` where n_{l−1} < n_l and
  ``jax.jacrev`` otherwise (the cheaper of n_{l−1} JVPs and n_l VJPs);
* P_l = J_l ⋯ J_1 = ∂h_l/∂h_0, an (n_l, n_0) matrix, at ``Precision.HIGHEST``;
* the singular values of each, and a stable log-spectrum ln σ_i(P_l) by the graded (UDT) product
  of :mod:`jaxflow.spectra`, which neither underflows nor loses small singular values at depth.

Conventions (they change numbers):

* ``x`` is **one example**; the whole state is flattened in C order, so a (T, d) state is one
  vector of T·d entries, never a batch of T. A leading batch axis is read only where
  ``batch_axis=0`` says so (or under ``jax.vmap``); then every field gains a leading batch axis
  and each example's chain is ∂h_l[b]/∂h_0[b], the block applied to that example alone.
* Log-spectrum of a rectangular chain: the rank of P_l is at most r_l = min(n_0, n_1, …, n_l),
  so ``log_spectrum[l]`` keeps r_l values — the graded factorisation carries a frame of that
  width. (Implementation: every J_l is embedded in the top-left corner of an N × N zero matrix,
  N = max_l n_l, and the exact zeros the embedding adds are ranked last, as −inf, by the graded
  update; they are cut off.)
* Mean squared singular value: (1/n_in)‖J‖_F² with n_in the number of columns (inputs), as in
  :func:`~jaxflow.mean_squared_singular_value`.
* ``method="auto"`` materialises J_l and P_l while every state has at most
  :data:`MATRIX_FREE_ABOVE` entries, and otherwise switches to matrix-free estimates on
  JVP/VJP (σ_max by power iteration, (1/n)‖·‖_F² by Hutchinson, the top-k singular values by
  subspace iteration); the result's ``method`` field says which was used.

Each (model, selection, options) is compiled once per input shape and kept in a small cache, so
repeated eager calls do not trace again (:data:`TRACES` counts the traces).
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._numerics import HIGHEST, all_finite
from jaxflow.jacobians import JacobianChain
from jaxflow.spectra import (
    SpectralEstimates,
    mean_squared_singular_value,
    top_singular_value,
)
from jaxflow.spectra._kernels import METHODS as _KERNELS

__all__ = ["BlockChain", "block_chain"]

MATRIX_FREE_ABOVE = 2048
"""``method="auto"`` goes matrix-free once some state has more entries than this: a float32 J of
2048 × 2048 is 16 MiB, its SVD about a second on one CPU core, and the graded log-spectrum costs
O(N³) per block; beyond that the estimates on JVP/VJP pay off."""

METHODS = ("auto", "dense", "matrix_free")
MODES = ("auto", "rev", "fwd")

TRACES: collections.Counter = collections.Counter()
"""How many times :func:`block_chain`'s compiled function was traced, by kind of model
(``"linen"``, ``"nnx"``, ``"equinox"``, ``"callables"``). A trace happens once per model,
selection, options and input shape; a second eager call with the same shapes does not add one."""

_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


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
        paths (``"blocks.3"``), Equinox attribute paths (``"layers[2]"``) or ``"block_2"``.
      shapes: (static) the state shapes h_0, h_1, …, h_L of one example; n_l is their size.
      method: (static) ``"dense"`` or ``"matrix_free"``, what was computed.
      layers: dense: tuple of J_l, (n_l, n_{l−1}).
      products: dense: tuple of P_l = J_l ⋯ J_1, (n_l, n_0).
      layer_singular_values: tuple of (min(n_l, n_{l−1}),) descending (dense), or of the top-k
        estimates (k,) (matrix-free).
      product_singular_values: tuple of (min(n_l, n_0),) descending (dense), or top-k estimates.
      log_spectrum: dense: tuple of (r_l,), ln σ_i(P_l) descending by the graded product,
        r_l = min(n_0, …, n_l) (−inf for an exact zero); ``None`` if not asked for.
      layer_sigma_max: (L,), σ_max(J_l) (exact, or by power iteration).
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
# Capture: one forward pass that records each selected block's input and output.


def _output(out, name):
    if not isinstance(out, jax.Array) and not hasattr(out, "shape"):
        raise ValueError(
            f"block {name!r} returns {type(out).__name__}, not one array; select blocks that map "
            "a state array to a state array (h -> h)"
        )
    return out


def _linen_selector(blocks):
    if isinstance(blocks, type) or (
        isinstance(blocks, tuple) and blocks and all(isinstance(b, type) for b in blocks)
    ):
        return lambda module, path: isinstance(module, blocks)
    if isinstance(blocks, str):
        pattern = re.compile(blocks)
        return lambda module, path: pattern.fullmatch(path) is not None
    names = set(blocks)
    return lambda module, path: path in names


def _capture_linen(model, blocks, variables, x, kwargs):
    selected = _linen_selector(blocks)
    seen, calls, inside = [], [], [0]
    apply_options = {k: kwargs.pop(k) for k in ("rngs", "mutable") if k in kwargs}

    def interceptor(next_fun, args, kw, context):
        if context.method_name != "__call__" or not args:
            return next_fun(*args, **kw)
        module = context.module
        path = "/".join(module.path)
        seen.append(path)
        if inside[0] or not selected(module, path):
            return next_fun(*args, **kw)
        sub, sub_variables = module.unbind()
        inside[0] += 1
        try:
            out = next_fun(*args, **kw)
        finally:
            inside[0] -= 1
        calls.append((path, sub, sub_variables, args, kw, out))
        return out

    with nn.intercept_methods(interceptor):
        model.apply(variables, x, **kwargs, **apply_options)
    if isinstance(blocks, tuple) and all(isinstance(b, str) for b in blocks):
        missing = [b for b in blocks if b not in {c[0] for c in calls}]
        if missing:
            _no_match(blocks, seen, f"these names were not called: {missing}")
    if not calls:
        _no_match(blocks, seen)
    result, counts = [], collections.Counter(c[0] for c in calls)
    index = collections.Counter()
    for path, sub, sub_variables, args, kw, out in calls:
        index[path] += 1
        name = path if counts[path] == 1 else f"{path}#{index[path]}"

        def fn(h, sub=sub, sub_variables=sub_variables, args=args, kw=kw, name=name):
            out = sub.apply(sub_variables, h, *args[1:], **kw, **apply_options)
            if "mutable" in apply_options and apply_options["mutable"] is not False:
                out = out[0]  # updated collections are dropped: the caller's state is not mutated
            return _output(out, name)

        result.append(_Block(name, fn, args[0], _output(out, name)))
    return result


def _no_match(blocks, available, detail=""):
    listed = list(dict.fromkeys(p for p in available if p))
    if blocks is None:
        raise ValueError(
            f"blocks=None: a linen model needs a selection; the submodules called in the forward "
            f"pass are {listed}. Pass submodule paths, a regex (matched in full against the "
            "path), or a module type"
        )
    raise ValueError(
        f"blocks={blocks!r} matched no block{': ' + detail if detail else ''}; the submodules "
        f"called in the forward pass are {listed}. Pass submodule paths, a regex (matched in "
        "full against the path), or a module type"
    )


def _get(obj, part):
    if isinstance(part, int) or part.isdigit():
        return obj[int(part)]
    return getattr(obj, part)


def _set(obj, part, value):
    if isinstance(part, int) or part.isdigit():
        obj[int(part)] = value
    else:
        object.__setattr__(obj, part, value) if _is_frozen(obj) else setattr(obj, part, value)


def _is_frozen(obj):
    return dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen


def _is_sequence(obj):
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(obj, nnx.Sequential):
        return True
    if isinstance(obj, (list, tuple)):
        return True
    return nnx is not None and isinstance(obj, nnx.List)


def _items(obj):
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(obj, nnx.Sequential):
        return obj.layers
    return obj


def _resolve_paths(model, blocks, available):
    """[(name, parent, key, block)] for attribute paths ("blocks", "encoder.layers", "layer1")."""
    paths = [blocks] if isinstance(blocks, str) else list(blocks)
    found = []
    for path in paths:
        parts = [p for p in re.split(r"[.\[\]]+", path) if p]
        parent, obj = None, model
        try:
            for part in parts:
                parent, obj = obj, _get(obj, part)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise ValueError(
                f"blocks={blocks!r}: the model has no attribute path {path!r}; its submodule "
                f"paths are {available()}"
            ) from None
        if _is_sequence(obj):
            seq = _items(obj)
            found += [(f"{path}.{i}", seq, i, b) for i, b in enumerate(seq)]
        else:
            found.append((path, parent, parts[-1] if parts else None, obj))
    if not found:
        raise ValueError(
            f"blocks={blocks!r} selects no block; the submodule paths are {available()}"
        )
    return found


class _Recorder:
    """Stands in for a block during the capture pass: calls it and records input and output."""

    def __init__(self, name, block, calls):
        self.name, self.block, self.calls = name, block, calls

    def __call__(self, *args, **kw):
        out = self.block(*args, **kw)
        self.calls.append((self.name, args, kw, out))
        return out


def _record_in_order(found, x, kwargs, make_fn):
    """Calls the blocks in order, h_l = f_l(h_{l−1}): the model is a plain sequence."""
    calls, h = [], x
    for name, _, _, block in found:
        out = block(h, **kwargs)
        calls.append((name, (h,), kwargs, out))
        h = out
    return _blocks_from_calls(found, calls, make_fn)


def _blocks_from_calls(found, calls, make_fn):
    by_name = {name: block for name, _, _, block in found}
    result = []
    for name, args, kw, out in calls:
        result.append(
            _Block(name, make_fn(name, by_name[name], args, kw), args[0], _output(out, name))
        )
    missing = [name for name in by_name if name not in {c[0] for c in calls}]
    if missing:
        raise ValueError(
            f"the selected blocks {missing} were not called by the model's forward pass"
        )
    return result


def _capture_nnx(graphdef, state, blocks, x, kwargs):
    from flax import nnx

    model = nnx.merge(graphdef, state)

    def available():
        return [".".join(map(str, p)) for p, _ in nnx.iter_modules(model) if p]

    sequence = blocks is None
    if sequence and not _is_sequence(model):
        raise ValueError(
            "blocks=None needs an nnx.Sequential or nnx.List model; for another NNX model pass "
            f"attribute paths, e.g. blocks='blocks'; its submodule paths are {available()}"
        )
    found = (
        [(str(i), None, i, b) for i, b in enumerate(_items(model))]
        if sequence
        else _resolve_paths(model, blocks, available)
    )
    # Split every block before the forward pass, so the block functions see the state the
    # forward pass started from (a training-mode BatchNorm or a Dropout's RNG counter would
    # otherwise have moved on); merged again inside each Jacobian, they are pure.
    pure = {}
    for name, _, _, block in found:
        pure[name] = nnx.split(block) if isinstance(block, nnx.Module) else None

    def make_fn(name, block, args, kw):
        def fn(h):
            module = nnx.merge(*pure[name]) if pure[name] is not None else block
            return _output(module(h, *args[1:], **kw), name)

        return fn

    if sequence:
        return _record_in_order(found, x, kwargs, make_fn)
    calls = []
    for name, parent, key, block in found:
        _set(parent, key, _Recorder(name, block, calls))
    model(x, **kwargs)
    return _blocks_from_calls(found, calls, make_fn)


def _capture_pytree(model, blocks, x, kwargs):
    """Equinox modules and lists of callables: ``model`` is the recombined pytree."""

    def make_fn(name, block, args, kw):
        return lambda h: _output(block(h, *args[1:], **kw), name)

    if blocks is None:
        if not _is_sequence(model):
            raise ValueError(
                "blocks=None needs a list of blocks; for an Equinox module pass the attribute "
                f"that holds them, e.g. blocks='layers' (its fields: {_fields(model)})"
            )
        found = [(f"block_{i}", None, i, b) for i, b in enumerate(model)]
        for name, _, _, block in found:
            if not callable(block):
                raise TypeError(f"{name} is a {type(block).__name__}, not a callable h -> h")
        return _record_in_order(found, x, kwargs, make_fn)
    import equinox as eqx

    found = _resolve_paths(model, blocks, lambda: _fields(model))
    calls = []
    names = [name for name, _, _, _ in found]
    leaves = [block for _, _, _, block in found]
    recorded = eqx.tree_at(
        lambda m: [_at(m, name) for name in names],
        model,
        replace=[_Recorder(name, b, calls) for name, b in zip(names, leaves)],
        is_leaf=lambda node: any(node is b for b in leaves),
    )
    recorded(x, **kwargs)
    return _blocks_from_calls(found, calls, make_fn)


def _at(model, name):
    obj = model
    for part in [p for p in re.split(r"[.\[\]]+", name) if p]:
        obj = _get(obj, part)
    return obj


def _fields(model):
    if dataclasses.is_dataclass(model):
        return [f.name for f in dataclasses.fields(model)]
    return sorted(vars(model)) if hasattr(model, "__dict__") else []


# ---------------------------------------------------------------------------------------------
# The chain of one example, from the captured blocks.


def _flat(fn, shape):
    return lambda v: jnp.reshape(fn(jnp.reshape(v, shape)), (-1,))


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


def _top_k_singular_values(matvec, n, m, dtype, k, key, num_iters, tol):
    """The k largest singular values of a linear map R^n → R^m by subspace iteration on JᵀJ
    (block power iteration with QR, Rayleigh–Ritz at the end; Halko, Martinsson & Tropp 2011),
    one vmapped JVP and VJP per step. The block carries k + 4 columns, so σ_k converges like
    (σ_{k+5}/σ_k)^{2t} rather than (σ_{k+1}/σ_k)^{2t}."""
    q = min(n, m, k + 4)
    k = min(k, q)
    transpose = jax.linear_transpose(matvec, jax.ShapeDtypeStruct((n,), dtype))
    gram = jax.vmap(lambda v: transpose(matvec(v))[0])
    V = jnp.linalg.qr(jax.random.normal(key, (n, q), dtype))[0]

    def ritz(V):
        W = gram(V.T).T
        small = jnp.matmul(V.T, W, precision=HIGHEST)
        values = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh((small + small.T) / 2)[::-1], 0))
        return W, values

    def body(carry):
        V, previous, _, count = carry
        W, values = ritz(V)
        change = jnp.max(jnp.abs(values[:k] - previous[:k])) / jnp.maximum(values[0], finfo_tiny)
        return jnp.linalg.qr(W)[0], values, change, count + 1

    def unconverged(carry):
        _, _, change, count = carry
        return (change > tol) & (count < num_iters)

    finfo_tiny = jnp.finfo(dtype).tiny
    start = (V, jnp.zeros(q, dtype), jnp.array(jnp.inf, dtype), 0)
    V, _, _, _ = jax.lax.while_loop(unconverged, body, start)
    return ritz(V)[1][:k]


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
    power_tol = 100 * jnp.finfo(dtype).eps if tol is None else tol
    topk_tol = 1e-4 if tol is None else tol

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
        top = top_singular_value(
            matvec, key=k1, dim=big, dtype=dtype, num_iters=num_iters, tol=power_tol
        )
        mean_sq = mean_squared_singular_value(
            matvec, key=k2, num_probes=num_probes, dim=big, dtype=dtype
        )
        scale = big / inputs  # the probes' padded entries meet zero columns
        mean_sq = mean_sq._replace(
            value=mean_sq.value * scale, standard_error=mean_sq.standard_error * scale
        )
        values = _top_k_singular_values(matvec, big, big, dtype, top_k, k3, num_iters, topk_tol)
        return SpectralEstimates(top, mean_sq), values

    keys = jax.random.split(key, 2 * depth)
    estimates, values = jax.lax.map(
        estimate, (jnp.asarray(first), jnp.asarray(last), jnp.asarray(n_in, dtype), keys)
    )

    def pick(i):
        e = jax.tree.map(lambda a: a[i], estimates)
        e = e._replace(top=e.top._replace(vector=e.top.vector[: n_in[i]]))
        return e, values[i, : min(top_k, n_in[i], n_out[i])]

    layer = [pick(i) for i in range(depth)]
    prod = [pick(depth + i) for i in range(depth)]
    return dict(
        layer_singular_values=tuple(v for _, v in layer),
        product_singular_values=tuple(v for _, v in prod),
        layer_sigma_max=estimates.top.sigma[:depth],
        product_sigma_max=estimates.top.sigma[depth:],
        layer_mean_squared=estimates.mean_squared.value[:depth],
        product_mean_squared=estimates.mean_squared.value[depth:],
        layer_estimates=tuple(e for e, _ in layer),
        product_estimates=tuple(e for e, _ in prod),
    )


def _n_out(jvp, n_in, dtype):
    return jax.eval_shape(jvp, jax.ShapeDtypeStruct((n_in,), dtype)).shape[0]


def _chain(captured, options, key):
    """BlockChain from the captured blocks (inside the compiled function)."""
    method, mode, batched, top_k, num_probes, num_iters, tol, want_log = options
    names = tuple(b.name for b in captured)
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
    return BlockChain(names, shapes, method, connected=connected, **fields)


def _size(shape):
    size = 1
    for d in shape:
        size *= d
    return size


# ---------------------------------------------------------------------------------------------
# Front end: kinds of model, the compile cache, argument checks.


def _kind(model):
    if isinstance(model, nn.Module):
        return "linen"
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return "nnx"
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(model, eqx.Module):
        return "equinox"
    if isinstance(model, (list, tuple)):
        if nnx is not None and any(isinstance(b, nnx.Module) for b in model):
            return "nnx"
        if eqx is not None and any(isinstance(b, eqx.Module) for b in model):
            return "equinox"
        return "callables"
    raise TypeError(
        f"model is a {type(model).__name__}; block_chain takes a flax.linen Module (with its "
        "variables), a flax.nnx Module, an equinox Module, or a list of callables h -> h"
    )


def _hashable(value, name):
    if isinstance(value, list):
        return tuple(_hashable(v, name) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v, name)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"{name}={value!r} is neither an array nor hashable; pass arrays, numbers, strings, "
            "tuples or types"
        ) from None
    return value


def _is_array(x):
    return isinstance(x, (jax.Array, jnp.ndarray)) or hasattr(x, "__jax_array__")


def _split_arrays(tree):
    """(arrays, static): the array leaves (traced) and the rest (part of the cache key)."""
    leaves, treedef = jax.tree.flatten(tree)
    arrays = [leaf if _is_array(leaf) else None for leaf in leaves]
    static = tuple(None if _is_array(leaf) else leaf for leaf in leaves)
    return arrays, (treedef, static)


def _join_arrays(arrays, static):
    treedef, leaves = static
    return jax.tree.unflatten(treedef, [a if s is None else s for a, s in zip(arrays, leaves)])


def _cache_key(obj):
    try:
        hash(obj)
        return obj
    except TypeError:  # unhashable fields (a ResNet's stage_sizes list): the object itself
        return ("id", id(obj))


def _compiled(key, kind, build, keepalive):
    entry = _CACHE.get(key)
    if entry is None:

        def traced(*args):
            TRACES[kind] += 1  # runs only while tracing: counts compilations
            return build(*args)

        entry = (jax.jit(traced), keepalive)
        _CACHE[key] = entry
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return entry[0]


def _check_positive(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")


def block_chain(
    model,
    variables,
    x,
    *,
    blocks: Any = None,
    method: str = "auto",
    mode: str = "auto",
    batch_axis: int | None = None,
    log_spectrum: bool = True,
    key: jax.Array | None = None,
    top_k: int = 8,
    num_probes: int = 100,
    num_iters: int = 1000,
    tol: float | None = None,
    **apply_kwargs,
) -> BlockChain:
    """Per-block Jacobians J_l, products P_l = J_l ⋯ J_1 and their spectra, for any network.

    The blocks are selected, their inputs captured in one forward pass, each block closed over
    its own variables, and every state flattened to a vector (see the module docs for the
    conventions). Compiled once per model, selection, options and input shape, and cached.

    * **Flax linen**: ``block_chain(model, variables, x, blocks=...)`` with ``blocks`` a list of
      submodule paths (``["layers_0", "layers_1"]``, nested ones as ``"encoder/block_3"``), a
      regex matched in full against the paths (``r"ResNetBlock_\\d+"``), or a module type
      (``ResNetBlock``). Inputs are captured with ``nn.intercept_methods`` on the selected
      ``__call__``s; only the outermost selected call counts, and a module called twice gives
      two blocks (``"path#1"``, ``"path#2"``). Each block is ``module.apply`` of the submodule
      with its variable slice and the extra arguments of its call (e.g. ``train=False``).
      ``apply_kwargs`` go to the model's ``apply`` (``train=False``, ``deterministic=True``,
      ``rngs=``); with ``mutable=`` the updated collections are dropped, never written back.
    * **Flax NNX**: ``block_chain(model, None, x, blocks="blocks")`` with attribute paths
      (``"blocks"`` for an ``nnx.List``, ``"encoder.layers"``, ``["layer1", "layer2"]``); an
      ``nnx.Sequential`` or ``nnx.List`` model needs no ``blocks``. The model (a copy made by
      ``nnx.split``/``nnx.merge``) runs its own ``__call__`` with each block wrapped, which
      records the inputs, so blocks called in any order or with anything between them are seen
      as they are; each block is made pure by ``nnx.split`` before the pass and ``nnx.merge``
      inside its Jacobian. The caller's model is never mutated. Put it in inference mode first
      (``model.eval()``) or pass the keywords its ``__call__`` takes.
    * **Equinox**: ``block_chain(model, None, x, blocks="layers")`` (attribute paths of a list of
      modules, run through the model's ``__call__`` with the blocks wrapped via
      ``eqx.tree_at``), or ``block_chain([layer, ...], None, x)``; arrays are traced, the rest
      (``eqx.partition``) is part of the cache key.
    * **Functions**: ``block_chain([f_1, …, f_L], None, h_0)``, each ``f_l: h -> h``. Closures are
      compiled into the cached function: pass the same function objects to reuse it.

    Args:
      model: a ``flax.linen`` Module, a ``flax.nnx`` Module, an ``equinox`` Module, or a list of
        callables h -> h (Equinox or NNX modules included).
      variables: the linen model's variables; ``None`` for the others.
      x: **one** input example (any shape: a (T, d) sequence is one example, not a batch of T),
        or a batch if ``batch_axis=0``; for a list of callables, h_0.
      blocks: the selection, as above.
      method: ``"auto"`` (dense up to :data:`MATRIX_FREE_ABOVE` entries per state, otherwise
        matrix-free), ``"dense"`` or ``"matrix_free"``.
      mode: ``"auto"`` (``jacfwd`` where a block has fewer inputs than outputs, else ``jacrev``),
        ``"rev"`` or ``"fwd"``.
      batch_axis: ``None`` (``x`` is one example) or ``0``: ``x`` has a leading batch axis, the
        model runs once on the batch and each example gets its own chain (each block is applied
        to one example at a time, ``h[None]``; extra array arguments of a block are passed as
        they are). A model that needs a batch axis takes ``x[None]`` with ``batch_axis=0``.
      log_spectrum: whether to compute the stable log-spectrum (dense only; O(N³) per block).
      key: randomness of the matrix-free estimates (default ``jax.random.key(0)``).
      top_k: matrix-free: how many top singular values to estimate per J_l and P_l.
      num_probes: matrix-free: Hutchinson probes.
      num_iters: matrix-free: most power/subspace iterations.
      tol: matrix-free: relative tolerance of the iterations (default 100 ε for σ_max, 1e-4
        change for the top-k).
      **apply_kwargs: passed to the model's ``apply`` (linen) or ``__call__`` (NNX, Equinox).

    Returns:
      A :class:`BlockChain`.

    Raises:
      ValueError: when no block matches (the message lists the submodule paths), when a block's
        output does not feed the next block's input, for a bad ``batch_axis`` or option.
      TypeError: for a model of another kind.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> W = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # 3 → 2: a change of width
      >>> chain = jf.block_chain([lambda h: W @ h, jnp.tanh], None, jnp.zeros(3))
      >>> [P.shape for P in chain.products], chain.product_singular_values[-1].tolist()
      ([(2, 3), (2, 3)], [2.0, 1.0])
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed; use one of {METHODS}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed; use one of {MODES}")
    if batch_axis not in (None, 0) or isinstance(batch_axis, bool):
        raise ValueError(
            f"batch_axis={batch_axis!r} is not allowed; use None (x is one example) or 0 (x has "
            "a leading batch axis); move another batch axis to the front first"
        )
    for value, name in ((top_k, "top_k"), (num_iters, "num_iters")):
        _check_positive(value, name)
    _check_positive(num_probes, "num_probes", 2)
    if tol is not None and not tol > 0:
        raise ValueError(f"tol={tol!r} is not allowed; it must be > 0 (or None)")
    x = jnp.asarray(x)
    if batch_axis == 0 and x.ndim == 0:
        raise ValueError("batch_axis=0 needs an x with a leading batch axis; x is a scalar")
    kind = _kind(model)
    if kind == "linen" and variables is None:
        raise ValueError("variables=None: a flax.linen model needs its variables (model.init(...))")
    if kind != "linen" and variables is not None:
        raise ValueError(
            f"variables must be None for a {kind} model (its parameters live in the model); got "
            f"{type(variables).__name__}"
        )
    key = jax.random.key(0) if key is None else key
    options = (method, mode, batch_axis == 0, top_k, num_probes, num_iters, tol, bool(log_spectrum))
    kw_arrays, kw_static = _split_arrays(apply_kwargs)
    kw_static = (kw_static[0], tuple(_hashable(v, "apply keyword") for v in kw_static[1]))
    selection = blocks if isinstance(blocks, (str, type)) or blocks is None else tuple(blocks)
    _hashable(selection, "blocks")

    if kind == "linen":
        static = (kind, _cache_key(model), selection, kw_static, options)

        def build(variables, x, kw_arrays, key):
            kwargs = _join_arrays(kw_arrays, kw_static)
            if selection is None:
                _no_match(None, _linen_paths(model, variables, x, kwargs))
            return _chain(_capture_linen(model, selection, variables, x, kwargs), options, key)

        dynamic = (variables,)
        keepalive = model
    elif kind == "nnx":
        from flax import nnx

        target = nnx.List(model) if isinstance(model, (list, tuple)) else model
        graphdef, state = nnx.split(target)
        static = (kind, graphdef, selection, kw_static, options)

        def build(state, x, kw_arrays, key):
            kwargs = _join_arrays(kw_arrays, kw_static)
            return _chain(_capture_nnx(graphdef, state, selection, x, kwargs), options, key)

        dynamic = (state,)
        keepalive = None
    else:
        if kind == "equinox":
            import equinox as eqx

            tree = tuple(model) if isinstance(model, list) else model  # a tuple hashes
            arrays, rest = eqx.partition(tree, eqx.is_array)
            structure = _cache_key(rest)

            def combine(arrays):
                return eqx.combine(arrays, rest)
        else:
            if selection is not None:
                raise ValueError(
                    f"blocks={blocks!r}: a list of callables is its own selection; pass "
                    "blocks=None (or select a sublist yourself)"
                )
            arrays, rest = _split_arrays(list(model))
            structure = (rest[0], tuple(_cache_key(s) for s in rest[1]))

            def combine(arrays):
                return _join_arrays(arrays, rest)

        static = (kind, structure, selection, kw_static, options)

        def build(arrays, x, kw_arrays, key):
            kwargs = _join_arrays(kw_arrays, kw_static)
            return _chain(_capture_pytree(combine(arrays), selection, x, kwargs), options, key)

        dynamic = (arrays,)
        keepalive = model
    result = _compiled(static, kind, build, keepalive)(*dynamic, x, kw_arrays, key)
    _check_connected(result)
    return result


def _linen_paths(model, variables, x, kwargs):
    seen = []

    def interceptor(next_fun, args, kw, context):
        if context.method_name == "__call__":
            seen.append("/".join(context.module.path))
        return next_fun(*args, **kw)

    with nn.intercept_methods(interceptor):
        model.apply(variables, x, **kwargs)
    return seen


def _check_connected(result):
    try:
        connected = np.asarray(result.connected)
    except jax.errors.JAXTypeError:
        return  # under an outer jit or vmap: the field says it
    bad = [i for i, ok in enumerate(connected) if not ok]
    if bad:
        pairs = [(result.names[i], result.names[i + 1]) for i in bad]
        raise ValueError(
            f"the output of each of these blocks is not the next block's input in the forward "
            f"pass: {pairs}; something between them changes the state, so the product of their "
            "Jacobians is not ∂h_L/∂h_0. Select blocks that follow one another directly"
        )

"""Per-block Jacobian chains of any network: Flax linen, Flax NNX, Equinox, or a list of functions.

A user's model is a sequence of blocks h_l = f_l(h_{l−1}) between an input map and a readout,
once the blocks are *selected* (the design notes' "Any model"). :func:`block_chain`
finds the blocks' inputs in one forward pass, closes each block over its own variables, flattens
every state ((T, d) tokens, (H, W, C) feature maps) to a vector and takes

* J_l = ∂f_l(h)/∂h at the captured input h_{l−1}, an (n_l, n_{l−1}) matrix (rectangular for a
  stride, a projection or a change of width), with ``jax.jacfwd`` where n_{l−1} < n_l and
  ``jax.jacrev`` otherwise (the cheaper of n_{l−1} JVPs and n_l VJPs);
* P_l = J_l ⋯ J_1 = ∂h_l/∂h_0, an (n_l, n_0) matrix, at ``Precision.HIGHEST``;
* the singular values of each, and on request (``log_spectrum=True``) a stable log-spectrum
  ln σ_i(P_l) by the graded (UDT) product of :mod:`jaxflow.spectra`, which neither underflows nor
  loses small singular values at depth.

Conventions (they change numbers):

* ``x`` is **one example**; the whole state is flattened in C order, so a (T, d) state is one
  vector of T·d entries, never a batch of T. A leading batch axis is read only where
  ``batch_axis=0`` says so (or under ``jax.vmap``); then every field gains a leading batch axis
  and each example's chain is ∂h_l[b]/∂h_0[b], the block applied to that example alone.
* Log-spectrum of a rectangular chain: the rank of P_l is at most r_l = min(n_0, n_1, …, n_l),
  so ``log_spectrum[l]`` keeps r_l values. (Implementation: every J_l is embedded in the
  top-left corner of an N × N zero matrix, N = max_l n_l, so one ``lax.scan`` of the graded
  update runs over the chain; the exact zeros the embedding adds are ranked last, as −inf, and
  cut off. The frame is N wide rather than r_l: O(N³) per block.)
* Mean squared singular value: (1/n_in)‖J‖_F² with n_in the number of columns (inputs), as in
  :func:`~jaxflow.mean_squared_singular_value`.
* ``method="auto"`` materialises J_l and P_l while every state has at most
  :data:`MATRIX_FREE_ABOVE` entries, and otherwise switches to matrix-free estimates on
  JVP/VJP (σ_max by power iteration, (1/n)‖·‖_F² by Hutchinson, the top-k singular values by
  Golub–Kahan–Lanczos bidiagonalisation); the result's ``method`` field says which was used.
  Each P_l is applied as l chained JVPs, so one estimate of every P_l costs O(L²) block
  evaluations per iteration.

Each (model, selection, options) is compiled once per input shape and kept in a small cache, so
repeated eager calls do not trace again (:data:`TRACES` counts the traces).
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._checks import module_kind, positive_int
from jaxflow.blocks._capture import (
    _capture_linen,
    _capture_nnx,
    _capture_pytree,
    _linen_paths,
    _no_match,
)
from jaxflow.blocks._chain import MATRIX_FREE_ABOVE, BlockChain, _measure  # noqa: F401 (re-exported)

__all__ = ["BlockChain", "block_chain"]

METHODS = ("auto", "dense", "matrix_free")
MODES = ("auto", "rev", "fwd")

TRACES: collections.Counter = collections.Counter()
"""How many times :func:`block_chain`'s compiled function was traced, by kind of model
(``"linen"``, ``"nnx"``, ``"equinox"``, ``"callables"``). A trace happens once per model,
selection, options and input shape; a second eager call with the same shapes does not add one."""

_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


# ---------------------------------------------------------------------------------------------
# Front end: kinds of model, the compile cache, argument checks.


def _kind(model):
    kind = module_kind(model)
    if kind is not None:
        return kind
    if isinstance(model, (list, tuple)):
        kinds = {module_kind(block) for block in model}
        return next((k for k in ("nnx", "equinox") if k in kinds), "callables")
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


def block_chain(
    model,
    variables,
    x,
    *,
    blocks: Any = None,
    method: str = "auto",
    mode: str = "auto",
    batch_axis: int | None = None,
    log_spectrum: bool = False,
    key: jax.Array | None = None,
    top_k: int = 8,
    num_probes: int = 100,
    num_iters: int = 200,
    tol: float = 1e-3,
    model_kwargs: dict | None = None,
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
      log_spectrum: whether to compute the stable log-spectrum ln σ(P_l) (dense only). It costs
        O(N³) per block and a few seconds' compilation (about a minute, and 30 s per call on
        one CPU, for a ResNet-18 at 32 × 32 × 8); the plain SVD is exact as long as
        ``underflow`` is False and ``resolved`` counts every singular value you need.
      key: randomness of the matrix-free estimates (default ``jax.random.key(0)``).
      top_k: matrix-free: how many top singular values to estimate per J_l and P_l.
      num_probes: matrix-free: Hutchinson probes.
      num_iters: matrix-free: most power iterations per operator (the top-k take 2·top_k + 24
        Lanczos steps).
      tol: matrix-free: the power iteration stops when ``error <= tol * sigma`` (some singular
        value lies within a relative ``tol``; the Rayleigh quotient itself is accurate to about
        ``tol²`` times the relative gap). A diagnostic rarely needs more; the estimates'
        ``converged`` and ``error`` fields say what was reached.
      model_kwargs: keywords for the model's ``apply``/``__call__`` whose names block_chain
        takes itself (``key=`` of an Equinox model with dropout, linen's ``method=``), as a
        dict; any other keyword can be given directly.
      **apply_kwargs: passed to the model's ``apply`` (linen) or ``__call__`` (NNX, Equinox).

    Returns:
      A :class:`BlockChain`.

    Raises:
      ValueError: when no block matches (the message lists the submodule paths), when a block's
        output does not feed the next block's input, a block takes an earlier state besides its
        own, a selected block is a scanned stack or is handed to a transformation inside the
        forward pass, for a bad ``batch_axis`` or option.
      TypeError: for a model of another kind, a bad ``blocks``, or a state that is not real
        floating-point.

      Under an outer ``jax.jit`` or ``jax.vmap`` the two checks on values (blocks that follow
      one another, blocks that reproduce their forward-pass output) cannot raise: read the
      result's ``connected`` and ``reproduced`` fields.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> W = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # 3 → 2: a change of width
      >>> chain = jf.block_chain([lambda h: W @ h, jnp.tanh], None, jnp.zeros(3))
      >>> [P.shape for P in chain.products], chain.product_singular_values[-1].tolist()
      ([(2, 3), (2, 3)], [2.0, 1.0])
    """
    if method not in METHODS:
        raise ValueError(
            f"method={method!r} is not allowed; use one of {METHODS} (for the model's own "
            "method= keyword, use model_kwargs=)"
        )
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed; use one of {MODES}")
    if batch_axis not in (None, 0) or isinstance(batch_axis, bool):
        raise ValueError(
            f"batch_axis={batch_axis!r} is not allowed; use None (x is one example) or 0 (x has "
            "a leading batch axis); move another batch axis to the front first"
        )
    top_k, num_iters = positive_int("top_k", top_k), positive_int("num_iters", num_iters)
    num_probes = positive_int("num_probes", num_probes, 2)
    if not tol > 0:
        raise ValueError(f"tol={tol!r} is not allowed; it must be > 0")
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
    if isinstance(model, (list, tuple)) and not model:
        raise ValueError("model is an empty list; pass the blocks, a list of callables h -> h")
    if not (
        blocks is None
        or isinstance(blocks, (str, type))
        or (
            isinstance(blocks, (list, tuple))
            and blocks
            and (
                all(isinstance(b, str) for b in blocks) or all(isinstance(b, type) for b in blocks)
            )
        )
    ):
        raise TypeError(
            f"blocks={blocks!r} is not allowed; pass None, submodule or attribute paths (a str or "
            "a list of str), a regex (str), or a module type (or a tuple of types)"
        )
    if model_kwargs is not None:
        if not isinstance(model_kwargs, dict):
            raise TypeError(f"model_kwargs={model_kwargs!r} must be a dict of keyword arguments")
        clash = sorted(set(model_kwargs) & set(apply_kwargs))
        if clash:
            raise ValueError(f"{clash} given both as keywords and in model_kwargs; give them once")
        apply_kwargs = {**apply_kwargs, **model_kwargs}
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
            return _measure(_capture_linen(model, selection, variables, x, kwargs), options, key)

        dynamic = (variables,)
        keepalive = model
    elif kind == "nnx":
        from flax import nnx

        target = nnx.List(model) if isinstance(model, (list, tuple)) else model
        graphdef, state = nnx.split(target)
        static = (kind, graphdef, selection, kw_static, options)

        def build(state, x, kw_arrays, key):
            kwargs = _join_arrays(kw_arrays, kw_static)
            return _measure(_capture_nnx(graphdef, state, selection, x, kwargs), options, key)

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
            return _measure(_capture_pytree(combine(arrays), selection, x, kwargs), options, key)

        dynamic = (arrays,)
        keepalive = model
    try:
        result = _compiled(static, kind, build, keepalive)(*dynamic, x, kw_arrays, key)
    except jax.errors.UnexpectedTracerError as error:
        raise ValueError(
            "a selected block runs inside a transformation in the model's forward pass "
            "(jax.checkpoint, eqx.filter_checkpoint, nnx.remat, nnx.jit, ...), whose values "
            "block_chain cannot keep to take the block's Jacobian (only linen's nn.remat is seen "
            "through): select blocks the forward pass calls directly, or build the model "
            "without that transformation to measure it"
        ) from error
    _check_connected(result, batched=batch_axis == 0)
    return result


def _check_connected(result, *, batched):
    if any(isinstance(a, jax.core.Tracer) for a in (result.connected, result.reproduced)):
        return  # under an outer jit or vmap: the fields connected and reproduced say it
    connected = np.asarray(result.connected)
    bad = [i for i, ok in enumerate(connected) if not ok]
    if bad:
        pairs = [(result.names[i], result.names[i + 1]) for i in bad]
        raise ValueError(
            f"the output of each of these blocks is not the next block's input in the forward "
            f"pass: {pairs}; something between them changes the state, so the product of their "
            "Jacobians is not ∂h_L/∂h_0. Select blocks that follow one another directly"
        )
    bad = [name for name, ok in zip(result.names, np.asarray(result.reproduced)) if not ok]
    if bad and batched:
        raise ValueError(
            f"blocks {bad} do not give their forward-pass output when their Jacobian is taken "
            "(one example at a time with batch_axis=0): they mix the examples of a batch "
            "(BatchNorm on batch statistics), draw other random numbers (Dropout in training "
            "mode), or take another per-example array argument (a mask, an embedding) that is "
            "passed whole, so their Jacobians would describe another function. Use inference "
            "mode (NNX: model.eval(); linen: train=False / deterministic=True; Equinox: "
            "inference=True), or batch_axis=None (the whole batch as one state, or one example "
            "per call)"
        )
    if bad:
        raise ValueError(
            f"blocks {bad} do not give their forward-pass output when their Jacobian is taken: "
            "they draw other random numbers each time they run (Dropout in training mode), so "
            "their Jacobians would describe another function. Use inference mode (NNX: "
            "model.eval(); linen: train=False / deterministic=True; Equinox: inference=True)"
        )

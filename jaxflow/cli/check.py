"""``jaxflow check``: gradient health and per-block Jacobian spectra of a user's model.

``build()`` is the user's function, called with no arguments. What it may return (the protocol,
also in ``jaxflow check --help``):

* ``(model, variables, x)`` or ``(model, variables, x, y)``: a ``flax.linen`` model (jaxflow's
  own ``jf.mlp``/``jf.residual_stack`` included) and its variables;
* ``(model, x)`` or ``(model, x, y)``: a ``flax.nnx`` or ``equinox`` module;
* a dict with ``loss_fn``, ``params``, ``batch``: ``loss_fn(params, batch)`` (or
  ``loss_fn(params, batch, rng)``) returns the loss or ``(loss, aux)``; optionally ``model``
  (+ ``variables`` for linen) and ``x`` for the spectra. A dict may also hold ``model``,
  ``variables``, ``x``, ``y`` alone, as the tuples do.

``x`` is a batch (leading batch axis) for linen and NNX models; an Equinox model is applied to
each example with ``jax.vmap`` (Equinox's convention). The spectra are those of the first example.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import re
import sys

from jaxflow._checks import module_kind
from jaxflow.cli._common import UsageError, format_spectra_table

LOSSES = ("mse", "cross-entropy")

DEFAULT_BLOCKS = r"(?:\w*_)?(?:blocks|layers)|layer\d+|\w*[Bb]lock_?\d+|(?:blocks|layers)_\d+"
"""Names that mark a model's blocks when ``--blocks`` is not given: matched in full against the
last component of a linen submodule path (``blocks_3``, ``layers_0``, ``ResNetBlock_2``,
``encoderblock_7``) or an NNX/Equinox attribute name (``blocks``, ``layers``, ``layer1``)."""

EXAMPLES = f"""what build() returns (it takes no arguments):
  (model, variables, x) or (model, variables, x, y)   a flax.linen model (jf.mlp, jf.residual_stack,
                                                     your own) and model.init(...)'s variables
  (model, x) or (model, x, y)                        a flax.nnx or equinox module
  {{"loss_fn": f, "params": p, "batch": b}}
                                                     f(p, b) or f(p, b, rng) -> loss or
                                                     (loss, aux);
                                                     add "model" (+ "variables" for linen) and "x"
                                                     for the per-block spectra
  x is a batch with a leading batch axis (linen, NNX); an Equinox model is applied to each
  example with jax.vmap. The spectra are taken at the first example.

output: the gradient report (every parameter leaf, then the norm per block by gradient_stats'
  default grouping: the path up to its last layer index), then per block at the first example:
  |J_l|_2 = smax(J_l), smin(J_l), |P_l|_2, smin(P_l) of P_l = J_l ... J_1, and the spread
  ln smax(P_l) - ln smin(P_l) over the singular values above rounding (jf.block_chain).
  --json: the same numbers; a NaN or infinite value is null.

loss (models only; with loss_fn the loss is yours):
  mse            mean squared error against y, or against zeros without y (default)
  cross-entropy  softmax cross-entropy of the last axis; y holds integer labels (shape of the
                 prediction without its last axis) or one-hot/probability rows (the prediction's
                 shape); without y, one fixed random label per example (jax.random.key(0))

blocks: --blocks PATTERN is a regex matched in full against linen submodule paths
  ("blocks_\\d+", "encoder/layer_\\d+") or NNX/Equinox attribute paths ("blocks", "layer[1-4]");
  a list or nnx.List/nnx.Sequential it selects is split into its entries. The blocks must follow
  one another (each one's output is the next one's input). Without --blocks:
  jaxflow models use their own stack; other models the submodules or attributes whose last
  name matches {DEFAULT_BLOCKS}
  and the output says which were found, or that none were.

examples:
  jaxflow check mymodels:build
  jaxflow check path/to/file.py:build --loss cross-entropy --apply-kwarg train=False
  jaxflow check resnet.py:build --blocks 'ResNetBlock_\\d+' --json
"""


# ---------------------------------------------------------------------------------------------
# Loading the user's build() and reading what it returned.


def _load_user_function(spec):
    """Imports ``module:function`` or ``path/to/file.py:function`` and returns the function."""
    import importlib
    import importlib.util
    import os

    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise UsageError(f"jaxflow check: {spec!r} is not of the form module:function")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise UsageError(f"jaxflow check: file {module_name!r} does not exist")
            # As `python path/to/file.py` does: the file's folder goes first on sys.path, so the
            # file imports its sibling modules (and build() may import them lazily later).
            folder = os.path.dirname(os.path.abspath(module_name))
            if folder not in sys.path:
                sys.path.insert(0, folder)
            module_spec = importlib.util.spec_from_file_location("_jaxflow_check_user", module_name)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path.remove(os.getcwd())
    except UsageError:
        raise
    except ImportError as error:
        raise UsageError(f"jaxflow check: cannot import {module_name!r}: {error}") from None
    except Exception as error:  # the user's module raised while importing
        raise UsageError(
            f"jaxflow check: cannot import {module_name!r}: importing it raised {_one_line(error)}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"jaxflow check: {module_name!r} has no function {function_name!r}")
    return function


def _one_line(error, limit=300):
    """``Type: first line of the message``, cut at ``limit`` characters."""
    text = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SHAPES = (
    "it must return (model, variables, x) [+ y] for a flax.linen model, (model, x) [+ y] for an "
    "NNX or Equinox module, or a dict with loss_fn, params, batch (see jaxflow check --help)"
)


def _read_built(built, target):
    """The dict form of what build() returned: model, variables, x, y, loss_fn, params, batch."""
    name = f"jaxflow check: {target}()"
    if isinstance(built, dict):
        known = {"model", "variables", "x", "y", "loss_fn", "params", "batch"}
        unknown = sorted(set(built) - known, key=str)
        if unknown:
            raise UsageError(f"{name} returned a dict with unknown keys {unknown}; {_SHAPES}")
        spec = dict(built)
        if "loss_fn" in spec or "params" in spec or "batch" in spec:
            missing = [k for k in ("loss_fn", "params", "batch") if k not in spec]
            if missing:
                raise UsageError(f"{name} returned a dict without {missing}; {_SHAPES}")
            if not callable(spec["loss_fn"]):
                raise UsageError(
                    f"{name}: loss_fn is a {type(spec['loss_fn']).__name__}, "
                    "not a function loss_fn(params, batch)"
                )
            if "model" in spec and "x" not in spec:
                raise UsageError(
                    f"{name}: the dict has a model but no x; add 'x' (a batch) "
                    "for the per-block spectra, or drop 'model'"
                )
            return spec
        if "model" not in spec or "x" not in spec:
            raise UsageError(f"{name} returned a dict without model and x; {_SHAPES}")
    elif isinstance(built, (tuple, list)) and 2 <= len(built) <= 4:
        kind = module_kind(built[0])
        if kind == "linen":
            if len(built) < 3:
                raise UsageError(
                    f"{name} returned (model, x) for a flax.linen model; return "
                    "(model, variables, x) with variables = model.init(key, x)"
                )
            spec = dict(zip(("model", "variables", "x", "y"), built, strict=False))
        elif kind in ("nnx", "equinox"):
            if len(built) == 4:
                raise UsageError(
                    f"{name} returned 4 values for an {kind} module; return "
                    "(model, x) or (model, x, y): its parameters live in the model"
                )
            spec = dict(zip(("model", "x", "y"), built, strict=False))
        else:
            raise UsageError(
                f"{name} returned a tuple whose first entry is a {type(built[0]).__name__}, not a "
                f"flax.linen, flax.nnx or equinox module; {_SHAPES}"
            )
    else:
        raise UsageError(f"{name} returned {type(built).__name__}; {_SHAPES}")
    kind = module_kind(spec["model"])
    if kind is None:
        raise UsageError(
            f"{name}: the model is a {type(spec['model']).__name__}, not a "
            f"flax.linen, flax.nnx or equinox module; {_SHAPES}"
        )
    if kind == "linen" and spec.get("variables") is None:
        raise UsageError(
            f"{name}: a flax.linen model needs its variables; return (model, "
            "variables, x) with variables = model.init(key, x)"
        )
    if kind != "linen" and spec.get("variables") is not None:
        raise UsageError(f"{name}: an {kind} module keeps its parameters; return (model, x)")
    return spec


def _apply_kwarg(text):
    """``NAME=VALUE`` with VALUE a Python literal (``ast.literal_eval``, never ``eval``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. train=False)")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(
            f"{text!r}: {value!r} is not a Python literal (True, 0.1, 'x', ['batch_stats'])"
        ) from None


def _pattern(text):
    """A regular expression, compiled once here so that a bad one is an option error."""
    try:
        re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a regular expression ({error})"
        ) from None
    return text


# ---------------------------------------------------------------------------------------------
# The forward pass, the loss and its gradients.


def _forward(spec, kwargs):
    """prediction(params, x) and the parameters to differentiate, for each kind of model."""
    import jax

    model, kind = spec["model"], module_kind(spec["model"])
    if kind == "linen":
        variables = spec["variables"]
        if "params" not in variables:
            raise UsageError(
                "jaxflow check: the linen variables have no 'params' collection; "
                "return variables = model.init(key, x)"
            )
        mutable = "mutable" in kwargs and kwargs["mutable"] is not False

        def predict(params, x):
            out = model.apply({**variables, "params": params}, x, **kwargs)
            return out[0] if mutable else out  # updated collections (batch_stats) are dropped

        return predict, variables["params"]
    if kind == "nnx":
        from flax import nnx

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def predict(params, x):
            return nnx.merge(graphdef, params, rest, copy=True)(x, **kwargs)

        return predict, params
    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_inexact_array)

    def predict(params, x):
        module = eqx.combine(params, static)
        return jax.vmap(lambda example: module(example, **kwargs))(x)

    return predict, params


def _call_text(kind, kwargs):
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return {
        "linen": f"model.apply(variables, x{args})",
        "nnx": f"model(x{args})",
        "equinox": f"jax.vmap(lambda e: model(e{args}))(x)",
    }[kind]


def _targets(loss, prediction, y):
    """The targets of ``loss`` for a prediction (a ShapeDtypeStruct), checked."""
    import jax
    import jax.numpy as jnp

    shape = prediction.shape
    if loss == "mse":
        if y is None:
            return jnp.zeros(shape, prediction.dtype)
        y = jnp.asarray(y)
        if y.shape != shape:
            raise UsageError(f"jaxflow check: y has shape {y.shape}; the model predicts {shape}")
        return y
    if len(shape) < 1 or shape[-1] < 2:
        raise UsageError(
            f"jaxflow check: --loss cross-entropy needs logits over >= 2 classes on "
            f"the last axis; the model predicts {shape}. Use --loss mse"
        )
    if y is None:
        return jax.random.randint(jax.random.key(0), shape[:-1], 0, shape[-1])
    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.integer) and y.shape == shape[:-1]:
        return y
    if jnp.issubdtype(y.dtype, jnp.floating) and y.shape == shape:
        return y
    raise UsageError(
        f"jaxflow check: y is {y.dtype} {y.shape}; --loss cross-entropy takes integer labels of "
        f"shape {shape[:-1]} or one-hot float rows of shape {shape}"
    )


def _loss_value(loss, prediction, y):
    import jax.numpy as jnp
    import optax

    if loss == "mse":
        return jnp.mean(jnp.square(prediction - y))
    if jnp.issubdtype(y.dtype, jnp.integer):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(prediction, y))
    return jnp.mean(optax.softmax_cross_entropy(prediction, y))


def _model_gradients(spec, loss, kwargs):
    """(loss value, grads, params, description) of the model's loss on x."""
    import jax
    import jax.numpy as jnp

    kind = module_kind(spec["model"])
    predict, params = _forward(spec, kwargs)
    x = jnp.asarray(spec["x"])
    if x.ndim == 0:
        raise UsageError("jaxflow check: x is a scalar; return a batch of inputs")
    if x.shape[0] == 0:
        raise UsageError(f"jaxflow check: x has shape {x.shape}, no examples; return a batch")
    if _is_jaxflow(spec["model"]) and x.ndim == 1:
        x = x[None]  # jaxflow models take one input (d,) or a batch (batch, d)
    try:
        prediction = jax.eval_shape(predict, params, x)
    except UsageError:
        raise
    except Exception as error:  # the user's model and shapes: report, do not trace back
        raise UsageError(
            f"jaxflow check: the forward pass {_call_text(kind, kwargs)} on x {x.shape} fails "
            f"({_one_line(error)}); pass the arguments it needs with --apply-kwarg NAME=VALUE "
            "(e.g. train=False, deterministic=True), or return x as a batch with a leading "
            "batch axis (an Equinox model gets one example at a time); for a model that needs "
            "an argument no literal gives (an Equinox State, a key), return a dict with loss_fn, "
            "params, batch"
        ) from None
    if not isinstance(prediction, jax.ShapeDtypeStruct):
        raise UsageError(
            f"jaxflow check: the forward pass returns {type(prediction).__name__}, "
            "not one array; give build() a model whose output is the prediction, or "
            "return a dict with loss_fn, params, batch"
        )
    y = _targets(loss, prediction, spec.get("y"))

    def value(params):
        return _loss_value(loss, predict(params, x), y)

    try:
        loss_value, grads = jax.jit(jax.value_and_grad(value))(params)
    except Exception as error:
        raise UsageError(
            f"jaxflow check: the gradient of the {loss} loss fails ({_one_line(error)}); pass the "
            "arguments the forward pass needs with --apply-kwarg NAME=VALUE, or return a dict "
            "with your own loss_fn, params, batch"
        ) from None
    target = "y" if spec.get("y") is not None else ("zeros" if loss == "mse" else "random labels")
    return loss_value, grads, params, f"{loss} against {target}, x {tuple(x.shape)}"


def _loss_fn_gradients(spec):
    import jax

    loss_fn, params, batch = spec["loss_fn"], spec["params"], spec["batch"]
    try:
        positional = [
            p
            for p in inspect.signature(loss_fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        takes_rng = len(positional) >= 3
    except (TypeError, ValueError):
        takes_rng = False
    args = (batch, jax.random.key(0)) if takes_rng else (batch,)
    call = "loss_fn(params, batch, rng)" if takes_rng else "loss_fn(params, batch)"
    try:
        out = jax.eval_shape(loss_fn, params, *args)
    except Exception as error:
        raise UsageError(
            f"jaxflow check: {call} fails ({_one_line(error)}); it must return the "
            "loss, a scalar, or (loss, aux)"
        ) from None
    has_aux = isinstance(out, (tuple, list))
    loss_shape = out[0] if has_aux else out
    if getattr(loss_shape, "shape", None) != ():
        raise UsageError(
            f"jaxflow check: {call} returns {_describe(out)}; it must return the "
            "loss, a scalar, or (loss, aux)"
        )
    grad = jax.value_and_grad(loss_fn, has_aux=has_aux)
    try:
        loss_value, grads = jax.jit(grad)(params, *args)
    except Exception as error:
        raise UsageError(
            f"jaxflow check: jax.grad of {call} fails ({_one_line(error)}); params must be a "
            "pytree of float arrays that the loss is differentiable in"
        ) from None
    if has_aux:
        loss_value = loss_value[0]
    return loss_value, grads, params, f"{call}"


def _describe(out):
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    shape = getattr(out, "shape", None)
    return f"shape {shape}" if shape is not None else type(out).__name__


def _is_jaxflow(model):
    import jaxflow as jf

    return isinstance(model, jf.Network)


# ---------------------------------------------------------------------------------------------
# Which blocks to chain.


def _linen_paths(model, variables, x, kwargs):
    """The submodule paths called in the forward pass, in order, each once."""
    import flax.linen as nn

    seen = []

    def interceptor(next_fun, args, kw, context):
        if context.method_name == "__call__":
            seen.append("/".join(context.module.path))
        return next_fun(*args, **kw)

    with nn.intercept_methods(interceptor):
        import jax

        jax.eval_shape(lambda v, x: model.apply(v, x, **kwargs), variables, x)
    return [p for p in dict.fromkeys(seen) if p]


def _attribute_paths(model, kind, depth=3):
    """Attribute paths of the submodules (and lists of them) of an NNX or Equinox module."""
    paths = []

    def children(obj):
        if kind == "equinox" and dataclasses.is_dataclass(obj):
            return [(f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj)]
        if kind == "nnx":
            from flax import nnx

            if isinstance(obj, (nnx.List, list, tuple)):
                return [(str(i), v) for i, v in enumerate(obj)]
            if isinstance(obj, nnx.Module):
                return [(k, v) for k, v in vars(obj).items() if not k.startswith("_")]
        if isinstance(obj, (list, tuple)):
            return [(str(i), v) for i, v in enumerate(obj)]
        return []

    def is_module(obj):
        if module_kind(obj) is not None:
            return True
        # A list of blocks may hold plain functions too (jax.nn.relu, jnp.ravel in the Equinox
        # docs' CNN): it counts when every entry is callable and one is a module.
        return (
            isinstance(obj, (list, tuple))
            and all(callable(o) for o in obj)
            and any(module_kind(o) for o in obj)
        )

    def walk(obj, prefix, level):
        for name, child in children(obj):
            if not is_module(child) and not (kind == "nnx" and module_kind(child) == "nnx"):
                continue
            path = f"{prefix}.{name}" if prefix else name
            paths.append(path)
            if level < depth:
                walk(child, path, level + 1)

    walk(model, "", 0)
    return paths


def _select(paths, pattern, sep, *, last_component):
    """The outermost paths matching ``pattern`` in full (the whole path, or its last name)."""
    regex = re.compile(pattern)
    chosen = []
    for path in paths:
        subject = path.rsplit(sep, 1)[-1] if last_component else path
        if regex.fullmatch(subject) and not any(path.startswith(c + sep) for c in chosen):
            chosen.append(path)
    return chosen


def _jaxflow_blocks(model, variables, x):
    """jaxflow's own stack as a list of callables h -> h and h_0 = input_map(x)."""
    import jax

    stack = model.decompose(variables)
    fns = []
    for layer in range(stack.depth):
        block_vars = jax.tree.map(lambda a, layer=layer: a[layer], stack.blocks)
        fns.append(lambda h, v=block_vars: stack.block_fn(v, h))
    return fns, stack.input_map(x)


def _find_blocks(spec, pattern, kwargs):
    """(selection for block_chain, names found, how they were found, paths) or a note."""
    import jax.numpy as jnp

    model, kind = spec["model"], module_kind(spec["model"])
    x = jnp.asarray(spec["x"])
    if kind == "linen":
        if _is_jaxflow(model) and pattern is None:
            return None, [f"blocks/{i:02d}" for i in range(model.depth)], "its own stack", None
        paths, sep = _linen_paths(model, spec["variables"], x, kwargs), "/"
    else:
        paths, sep = _attribute_paths(model, kind), "."
    if pattern is not None:
        chosen = _select(paths, pattern, sep, last_component=False)
        how = f"--blocks {pattern!r}"
    else:
        chosen = _select(paths, DEFAULT_BLOCKS, sep, last_component=True)
        how = "the default pattern"
    return chosen, chosen, how, paths


# ---------------------------------------------------------------------------------------------
# Rows and output.


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def spectra_rows_of(chain, *, example=None):
    """One dict per block of a :class:`~jaxflow.BlockChain` for :func:`format_spectra_table`.

    ``J_norm`` = ‖J_l‖₂ = σ_max(J_l), ``J_min`` = σ_min(J_l), ``P_norm``, ``P_min`` the same of
    P_l = J_l ⋯ J_1, ``P_resolved`` how many singular values of P_l lie above its rounding floor
    σ_max·n·ε, and ``log_spread`` = ln σ_max(P_l) − ln σ_min(P_l) over those resolved values
    (exact zeros, e.g. of dead ReLU units or a rank-deficient projection, and rounding left out;
    ``P_min`` shows what was left out; ``J_min_resolved`` and ``P_min_resolved`` say whether
    σ_min lies above the rounding floor). Matrix-free chains give only σ_max; the rest is
    ``None``.
    ``example`` indexes a batched chain's (``batch_axis=0``) leading axis.
    """
    import numpy as np

    def at(a):
        return np.asarray(a if example is None else a[example], np.float64)

    rows = []
    for i, name in enumerate(chain.names):
        row = {"layer": i + 1, "block": name}
        row["J_norm"] = _finite_or_none(at(chain.layer_sigma_max)[i])
        row["J_min"] = row["P_min"] = row["P_resolved"] = row["log_spread"] = None
        row["P_norm"] = _finite_or_none(at(chain.product_sigma_max)[i])
        if chain.method == "dense":
            layer_sv = at(chain.layer_singular_values[i])
            row["J_min"] = _finite_or_none(layer_sv[-1])
            row["P_min"] = _finite_or_none(at(chain.product_singular_values[i])[-1])
            row["P_resolved"] = int(at(chain.resolved)[i])
            # Below σ_max·n·ε a singular value is the SVD's rounding, not a measurement.
            eps = float(np.finfo(np.asarray(chain.layer_singular_values[i]).dtype).eps)
            n = max(np.shape(chain.layers[i])[-2:])
            row["J_min_resolved"] = bool(layer_sv[-1] > layer_sv[0] * n * eps)
            row["P_min_resolved"] = row["P_resolved"] == at(chain.product_singular_values[i]).size
            resolved = at(chain.product_singular_values[i])[: row["P_resolved"]]
            row["log_spread"] = (
                float(np.log(resolved[0]) - np.log(resolved[-1])) if resolved.size else None
            )
        row["J_mean_squared"] = _finite_or_none(at(chain.layer_mean_squared)[i])
        rows.append(row)
    return rows


def _chain(spec, selection, kwargs):
    """(the BlockChain, the index of the first example in it or None)."""
    import jax.numpy as jnp

    import jaxflow as jf

    model, kind = spec["model"], module_kind(spec["model"])
    x = jnp.asarray(spec["x"])
    if kind == "linen" and _is_jaxflow(model) and selection is None:
        fns, h0 = _jaxflow_blocks(model, spec["variables"], x if x.ndim == 1 else x[0])
        chain = jf.block_chain(fns, None, h0, log_spectrum=False)
        names = tuple(f"blocks/{i:02d}" for i in range(len(fns)))
        return dataclasses.replace(chain, names=names), None
    options = dict(log_spectrum=False, **kwargs)
    if kind == "equinox":  # applied per example, as Equinox models are
        return jf.block_chain(model, None, x[0], blocks=list(selection), **options), None
    variables = spec.get("variables")
    # Two examples, not one: a block that mixes the examples of a batch (BatchNorm on batch
    # statistics) or draws random numbers (Dropout in training mode) then shows it, and
    # block_chain refuses it, where a batch of one would hide it and give a wrong chain.
    examples = x[:2] if x.ndim >= 1 else x
    chain = jf.block_chain(
        model, variables, examples, blocks=list(selection), batch_axis=0, **options
    )
    return chain, 0


def _batch_hint(spec, selection) -> str:
    """What to say of ``x`` when a chain read per example fails: that path (:func:`_chain` with
    ``batch_axis=0``) reads x's first axis as the batch, so one unbatched example (a (tokens,
    width) sequence) is split into "examples"; the Equinox and jaxflow paths take x[0] or x
    itself, so say nothing there."""
    import numpy as np

    model = spec["model"]
    kind = module_kind(model)
    if kind == "equinox" or (kind == "linen" and _is_jaxflow(model) and selection is None):
        return ""
    shape = tuple(np.shape(spec["x"]))
    return (
        f"; if x {shape} is one example rather than a batch (check reads its first axis as the "
        "batch), return x[None] from build()"
    )


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_check(args) -> int:
    """Gradient health and per-block spectra of a user's model."""
    import numpy as np

    import jaxflow as jf
    from jaxflow.gradients import GradientStatus

    function = _load_user_function(args.target)
    try:
        built = function()
    except Exception as error:
        raise UsageError(f"jaxflow check: {args.target}() raises {_one_line(error)}") from None
    spec = _read_built(built, args.target)
    kwargs = dict(args.apply_kwarg or [])
    if "loss_fn" in spec:
        if args.loss is not None:
            raise UsageError(
                "jaxflow check: --loss applies to a model; build() returned its own "
                "loss_fn, so drop --loss"
            )
        loss_value, grads, params, described = _loss_fn_gradients(spec)
    else:
        loss_value, grads, params, described = _model_gradients(spec, args.loss or "mse", kwargs)
    try:
        stats = jf.gradient_stats(
            grads,
            params,
            stacked="auto" if args.stacked in (None, ["auto"]) else args.stacked,
            group_by=args.group_by,
        )
    except (ValueError, TypeError) as error:
        raise UsageError(f"jaxflow check: gradient statistics fail: {_one_line(error)}") from None

    output = {
        "loss": {"what": described, "value": float(loss_value)},
        "gradients": {
            "global_norm": float(stats.global_norm),
            "layers": dict(
                zip(stats.layer_names, np.asarray(stats.layer_norms).tolist(), strict=True)
            ),
            "leaves": {
                name: {
                    "norm": float(n),
                    "mean": float(m),
                    "max": float(a),
                    "ratio": float(r),
                    "status": status,
                }
                for name, n, m, a, r, status in zip(
                    stats.names,
                    np.asarray(stats.norm),
                    np.asarray(stats.mean),
                    np.asarray(stats.max_abs),
                    np.asarray(stats.ratio),
                    GradientStatus.name_of(stats.status),
                    strict=True,
                )
            },
            "skipped": list(stats.frozen),
        },
    }

    note, chain = None, None
    if "model" not in spec:
        note = (
            "no per-block spectra: build() returned a loss_fn without a model; add 'model' "
            "(+ 'variables' for linen) and 'x' to the dict for them"
        )
    else:
        selection, names, how, paths = _find_blocks(spec, args.blocks, kwargs)
        if names:
            try:
                chain, example = _chain(spec, selection, kwargs)
            except Exception as error:  # the user's blocks: report in one line, never a traceback
                batch = _batch_hint(spec, selection)
                if "do not give their forward-pass output" in str(error):
                    # block_chain refused a model in training mode: say what to change.
                    problem = (
                        f"{names} mix the examples of a batch or draw random numbers (BatchNorm "
                        "or Dropout in training mode), so they have no per-example Jacobian; "
                        "return the model in inference mode from build() (NNX: model.eval()) "
                        f"or pass --apply-kwarg train=False (or deterministic=True){batch}"
                    )
                    if args.blocks is not None:
                        raise UsageError(
                            f"jaxflow check: --blocks {args.blocks!r} selects {problem}"
                        ) from None
                    note = f"no per-block spectra: the blocks {problem}"
                elif "looks like a scanned stack" in str(error):
                    # No pattern helps: the stack's layers are never called one by one.
                    note = f"no per-block spectra: {_one_line(error, 700)}"
                elif args.blocks is not None:
                    raise UsageError(
                        f"jaxflow check: --blocks {args.blocks!r} selects {names}, "
                        f"but {_one_line(error)}{batch}"
                    ) from None
                else:
                    note = (
                        f"no per-block spectra: the default pattern found {names}, but "
                        f"{_one_line(error, 400)}; pass --blocks PATTERN (a regex over the "
                        f"paths {paths}) for blocks that follow one another{batch}"
                    )
            else:
                output["blocks"] = {
                    "found_by": how,
                    "names": list(chain.names),
                    "method": chain.method,
                }
                output["spectra"] = spectra_rows_of(chain, example=example)
        elif args.blocks is not None:
            raise UsageError(
                f"jaxflow check: --blocks {args.blocks!r} matched no block; the "
                f"paths are {paths}; pass a regex matched in full against one of "
                "them"
            )
        else:
            note = (
                f"no per-block spectra: no blocks found with the default pattern among "
                f"{paths}; pass --blocks PATTERN, a regex over these paths (per-layer spectra "
                "without --blocks need a jaxflow model or blocks named like blocks|layers)"
            )
    if note:
        output["blocks"] = {"found_by": None, "names": [], "note": note}

    if args.json:
        json.dump(_json_safe(output), sys.stdout, indent=2, allow_nan=False)
        print()
        return 0
    print(f"loss: {described} = {float(loss_value):.6g}")
    print(jf.format_gradient_report(stats, stream=sys.stdout))
    width = max(len("block"), *(len(n) for n in stats.layer_names))
    grouping = "gradient_stats' default grouping" if args.group_by is None else args.group_by
    if args.stacked not in (None, ["auto"]):
        grouping += f", stacks {', '.join(args.stacked)} per layer"
    print(f"\ngradient norm per block ({grouping}), global {float(stats.global_norm):.4e}:")
    print(f"{'block':<{width}}  {'|g|_2':>11}")
    for name, norm in zip(stats.layer_names, np.asarray(stats.layer_norms), strict=True):
        print(f"{name:<{width}}  {norm:>11.4e}")
    if chain is None:
        print(f"\n({note})")
        return 0
    print(
        f"\nper-layer spectra, one row per block ({output['blocks']['found_by']}: "
        f"{len(chain.names)} block{'s' if len(chain.names) > 1 else ''}, {chain.method}), at the "
        "first example "
        "(J_l = dh_l/dh_(l-1), P_l = J_l ... J_1;\n spread = ln smax(P_l) - ln smin(P_l) over "
        "its singular values above rounding):"
    )
    print(format_spectra_table(output["spectra"]))
    if any(
        row.get(k) is False
        for row in output["spectra"]
        for k in ("J_min_resolved", "P_min_resolved")
    ):
        print(
            "(* below the rounding floor smax·n·eps: the SVD's rounding of a (near-)singular "
            "matrix, not a measured value; the spread leaves it out)"
        )
    return 0


def add_parser(commands) -> None:
    """Registers ``check`` on the subcommands of the ``jaxflow`` parser."""
    check = commands.add_parser(
        "check",
        help="gradient health and per-block spectra of your own model",
        description="Load MODULE:FUNCTION, call it with no arguments, and print the gradient "
        "report of the loss (every parameter's gradient norm, mean, max, status, then the norm "
        "per block by gradient_stats' default grouping) and, where the model's blocks are found, "
        "the per-block Jacobian spectra at the first example (jf.block_chain: ‖J_l‖₂ = σ_max, "
        "σ_min, and the spread of ln σ(P_l)).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "target", metavar="MODULE:FUNCTION", help="e.g. mymodels:build or path/to/file.py:build"
    )
    check.add_argument(
        "--loss",
        choices=LOSSES,
        default=None,
        help="the loss of a model's prediction (default: mse); see below",
    )
    check.add_argument(
        "--apply-kwarg",
        action="append",
        type=_apply_kwarg,
        metavar="NAME=VALUE",
        help="a keyword argument for the forward pass, VALUE a Python literal "
        "(e.g. train=False); repeat for several",
    )
    check.add_argument(
        "--blocks",
        type=_pattern,
        metavar="PATTERN",
        default=None,
        help="regex selecting the blocks to chain (see below)",
    )
    check.add_argument(
        "--stacked",
        action="append",
        metavar="NAME",
        help="a subtree that is a scanned stack (nn.scan, nnx.vmap, eqx.filter_vmap: one leading "
        "depth axis on every leaf), reported per layer; repeat for several (default, or 'auto': "
        "jaxflow's 'blocks' where its shapes say it is one; gradient_stats' stacked)",
    )
    check.add_argument(
        "--group-by",
        type=_pattern,
        metavar="REGEX",
        default=None,
        help="the per-block norms group leaves by their first match of REGEX (or its first "
        "group), e.g. 'blocks/[0-9]+' (default: the path up to its last layer index; "
        "gradient_stats' group_by)",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of tables")
    check.set_defaults(run=run_check)

"""Capture for :func:`~jaxflow.block_chain`: one forward pass of a linen, NNX or Equinox model
(or a list of callables) that records each selected block's input and output and closes the
block over its own variables.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import re
import sys
import threading

import flax.linen as nn
import jax

from jaxflow.blocks._chain import _Block

# ---------------------------------------------------------------------------------------------
# Capture: one forward pass that records each selected block's input and output.


def _output(out, name):
    if not isinstance(out, jax.Array) and not hasattr(out, "shape"):
        raise ValueError(
            f"block {name!r} returns {type(out).__name__}, not one array; select blocks that map "
            "a state array to a state array (h -> h)"
        )
    return out


def _stack_length(arrays):
    """L when the floating-point arrays look like a scanned stack's parameters: every one with
    two axes or more, the first of one common length L, one with three or more (a stacked
    weight); else None. Asked only after a capture failed, to say why."""
    shapes = [
        a.shape
        for a in arrays
        if hasattr(a, "dtype") and jax.numpy.issubdtype(a.dtype, jax.numpy.floating)
    ]
    if not shapes or any(len(s) < 2 for s in shapes) or all(len(s) < 3 for s in shapes):
        return None
    lengths = {s[0] for s in shapes}
    return lengths.pop() if len(lengths) == 1 else None


def _linen_scan_length(variables, path, inner):
    """L when the variables at ``path`` are the module's own (``inner``) with one more leading
    axis of length L: the module runs inside ``nn.scan``/``nn.vmap``; else None."""
    outer = variables
    try:
        for part in ("params", *path.split("/")):
            outer = outer[part]
        inner = inner["params"]
    except (KeyError, TypeError):
        return None
    outer, inner = jax.tree.leaves(outer), jax.tree.leaves(inner)
    if not inner or len(outer) != len(inner):
        return None
    if any(o.shape[1:] != i.shape or o.ndim != i.ndim + 1 for o, i in zip(outer, inner)):
        return None
    lengths = {o.shape[0] for o in outer}
    return lengths.pop() if len(lengths) == 1 else None


def _explain_stacks(error, blocks):
    """Re-raise ``error`` (capture failed) as a ValueError that says so when a selected block is
    a scanned stack; ``blocks`` is [(name, L or None)]. Returns if none is."""
    for name, length in blocks:
        if length is not None:
            raise ValueError(
                f"block {name!r} looks like a scanned stack of {length} layers (nn.scan, "
                "nnx.vmap with nnx.scan, eqx.filter_vmap: its parameters have a leading depth "
                "axis), which the model applies in one call, so block_chain cannot record the "
                "layers one by one. Write one layer as a function layer_fn(layer_params, h) -> h "
                "and pass the stack's parameters: jf.jacobian_chain(layer_fn, stacked_params, "
                "h0) (or jf.log_spectrum)."
            ) from error


class _NoRemat:
    """What ``flax.core.lift`` sees as ``jax`` during a capture: jax itself, but ``remat`` and
    ``checkpoint`` give the function back unchanged."""

    def __getattr__(self, name):
        return getattr(jax, name)

    @staticmethod
    def remat(fun=None, **_):
        return (lambda f: f) if fun is None else fun

    checkpoint = remat


_REMAT_LOCK = threading.Lock()
_REMAT_USERS = [0]


@contextlib.contextmanager
def _remat_as_identity():
    """``nn.remat`` blocks (the Flax examples' ``BlockCls = nn.remat(Block)``) run their module
    inside ``jax.checkpoint``, whose inner tracers the capture would keep after it returns.
    Rematerialisation changes memory, never values, so during the capture's one forward pass
    linen's lift (which looks ``jax.remat`` up in its own module when a block is called) sees
    :class:`_NoRemat`. Only linen's lifted remat is touched, never ``jax.checkpoint`` itself;
    overlapping captures in several threads share one replacement, put back by the last."""
    from flax.core import lift

    with _REMAT_LOCK:
        if _REMAT_USERS[0] == 0:
            _REMAT_USERS.append(lift.jax)
            lift.jax = _NoRemat()
        _REMAT_USERS[0] += 1
    try:
        yield
    finally:
        with _REMAT_LOCK:
            _REMAT_USERS[0] -= 1
            if _REMAT_USERS[0] == 0:
                lift.jax = _REMAT_USERS.pop()


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
    seen, calls, inside, tried = [], [], [0], []
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
        tried.append((path, _linen_scan_length(variables, path, sub_variables)))
        inside[0] += 1
        try:
            out = next_fun(*args, **kw)
        finally:
            inside[0] -= 1
        calls.append((path, sub, sub_variables, args, kw, out))
        return out

    with nn.intercept_methods(interceptor), _remat_as_identity():
        try:
            _forward(model.apply, variables, x, **kwargs, **apply_options)
        except Exception as error:
            _explain_stacks(error, tried)
            raise
    if isinstance(blocks, tuple) and all(isinstance(b, str) for b in blocks):
        missing = [b for b in blocks if b not in {c[0] for c in calls}]
        if missing:
            _no_match(blocks, seen, f"these names were not called: {missing}")
    if not calls:
        _no_match(blocks, seen)
    try:
        return _linen_blocks(calls, apply_options)
    except Exception as error:
        _explain_stacks(error, tried)
        raise


def _linen_blocks(calls, apply_options):
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
    _check_side_inputs(result, [(args[1:], kw) for _, _, _, args, kw, _ in calls])
    return result


def _check_side_inputs(blocks, extras):
    """``ValueError`` when a block takes, besides its state, an earlier state (x0 fed to every
    block, input injection, a dense skip): the chain holds it fixed, so P_l would miss the path
    through it and not be ∂h_l/∂h_0. A state is recognised as the same traced array object (a
    copy or a function of it is not)."""
    states = []
    for block, (args, kw) in zip(blocks, extras, strict=True):
        states.append((f"the input of block {block.name!r}", block.h_in))
        for arg in [*args, *kw.values()]:
            if not hasattr(arg, "shape"):
                continue
            for which, h in states:
                # The capture runs under jit: the same traced array object is the same state.
                if arg is h:
                    raise ValueError(
                        f"block {block.name!r} takes, besides its state, {which} {arg.shape} "
                        "as another argument (x0 fed to every block, input injection); "
                        "block_chain holds every argument but the first fixed, so "
                        "P_l = J_l ⋯ J_1 would miss the path through it and not be ∂h_l/∂h_0. "
                        "Measure such a model with one state that carries both (e.g. h and x0 "
                        "concatenated) in a block function, with jf.jacobian_chain"
                    )
        states.append((f"the output of block {block.name!r}", block.h_out))


def _forward(fn, *args, **kwargs):
    """The model's own forward pass; an error in it gets a note on what block_chain passed."""
    x = args[-1]
    try:
        return fn(*args, **kwargs)
    except Exception as error:
        if "_Recorder" in str(error) or isinstance(error, jax.errors.UnexpectedTracerError):
            raise ValueError(
                "a selected block runs inside a transformation in the model's forward pass "
                "(nnx.remat, nnx.jit, nnx.vmap, jax.checkpoint, eqx.filter_checkpoint, ...), "
                "where block_chain cannot record its input and output (only linen's nn.remat is "
                "seen through): select blocks the forward pass calls directly, or build the "
                "model without that transformation to measure it"
            ) from error
        if type(error).__name__ == "ScopeCollectionNotFound":
            raise ValueError(
                f"the model's variables lack a collection it needs ({str(error).splitlines()[0]}):"
                " pass the whole dict model.init returns as variables (not variables['params'])"
            ) from error
        error.add_note(
            f"(jaxflow.block_chain ran the model's forward pass once on x of shape {x.shape}, as "
            f"given, with keywords {sorted(kwargs)}: batch_axis=0 does not map the model over "
            "the batch, so a model that takes one example at a time (as Equinox models do) "
            "needs batch_axis=None, and a model that needs a batch axis takes x[None] with "
            "batch_axis=0. Pass inference-mode keywords such as train=False or "
            "deterministic=True, mutable=[...] for a training-mode BatchNorm, and keywords "
            "named like block_chain's own options (key=, method=) in model_kwargs=.)"
        )
        raise


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
    """Puts a recorder in place of a block, in the merged copy of an NNX model only."""
    if isinstance(part, int) or part.isdigit():
        obj[int(part)] = value
    else:
        setattr(obj, part, value)


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

    def __init__(self, name, block, calls, entered=None):
        self.name, self.block, self.calls = name, block, calls
        self.entered = set() if entered is None else entered

    def __call__(self, *args, **kw):
        self.entered.add(self.name)  # called as a block, even if the call then fails
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
    _check_side_inputs(result, [(args[1:], kw) for _, args, kw, _ in calls])
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
            module = nnx.merge(*pure[name], copy=True) if pure[name] is not None else block
            return _output(module(h, *args[1:], **kw), name)

        return fn

    if sequence:
        return _record_in_order(found, x, kwargs, make_fn)
    calls, entered = [], set()
    for name, parent, key, block in found:
        _set(parent, key, _Recorder(name, block, calls, entered))
    return _run_recorded(
        model, x, kwargs, found, calls, make_fn, {n: p[1] for n, p in pure.items() if p}, entered
    )


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
    calls, entered = [], set()
    names = [name for name, _, _, _ in found]
    leaves = [block for _, _, _, block in found]
    recorded = eqx.tree_at(
        lambda m: [_at(m, name) for name in names],
        model,
        replace=[_Recorder(name, b, calls, entered) for name, b in zip(names, leaves)],
        is_leaf=lambda node: any(node is b for b in leaves),
    )
    return _run_recorded(
        recorded, x, kwargs, found, calls, make_fn, dict(zip(names, leaves, strict=True)), entered
    )


def _run_recorded(model, x, kwargs, found, calls, make_fn, parameters, entered):
    """The forward pass with the blocks recorded, then the blocks; a failure is explained when a
    selected block that was never called (``entered``) looks like a scanned stack (its
    ``parameters``): a block that was called failed by itself."""
    try:
        _forward(model, x, **kwargs)
        return _blocks_from_calls(found, calls, make_fn)
    except Exception as error:
        _explain_stacks(
            error,
            [
                (n, _stack_length(jax.tree.leaves(p)))
                for n, p in parameters.items()
                if n not in entered
            ],
        )
        raise


def _at(model, name):
    obj = model
    for part in [p for p in re.split(r"[.\[\]]+", name) if p]:
        obj = _get(obj, part)
    return obj


def _fields(model):
    if dataclasses.is_dataclass(model):
        return [f.name for f in dataclasses.fields(model)]
    return sorted(vars(model)) if hasattr(model, "__dict__") else []


def _linen_paths(model, variables, x, kwargs):
    seen = []

    def interceptor(next_fun, args, kw, context):
        if context.method_name == "__call__":
            seen.append("/".join(context.module.path))
        return next_fun(*args, **kw)

    with nn.intercept_methods(interceptor):
        model.apply(variables, x, **kwargs)
    return seen

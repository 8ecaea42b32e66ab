"""The arguments every chain measurement takes — a jaxflow model or a block function, its
variables, one input or a batch — read once: turned into a :class:`~jaxflow.models.Stack`,
checked to be a square chain, and mapped over the batch. Shared by :mod:`jaxflow.jacobians` and
:mod:`jaxflow.spectra`, so that both accept the same arguments and refuse them with the same
messages.

The public measurements check their arguments eagerly, then run one ``jax.jit`` program kept by
JAX's own cache, keyed by the model's static structure (:class:`Static`), the options and the
shapes and dtypes of the arrays: a second eager call with new values of the same shapes neither
traces nor compiles, and under an outer ``jit``/``vmap`` the program is simply inlined.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._checks import module_kind, network_input
from jaxflow._numerics import same_up_to_rounding
from jaxflow.models import Network, Stack


class Static:
    """Any object as a static argument of ``jax.jit``: equal to another ``Static`` when the
    objects are equal (a jaxflow model is a frozen dataclass, a block function is compared by
    identity), or, for an object that cannot be hashed (a model with a list field), when they are
    the same object. JAX's compile cache keeps the ``Static`` and so the object alive, so an
    identity is never reused while it keys a program.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow._chain_inputs import Static
      >>> Static(jf.mlp(3, 4)) == Static(jf.mlp(3, 4)), Static([1]) == Static([1])
      (True, False)
    """

    __slots__ = ("value", "_key")

    def __init__(self, value):
        self.value = value
        try:
            hash(value)
            self._key = (True, value)
        except TypeError:
            self._key = (False, id(value))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Static) and self._key == other._key

    def __repr__(self):
        return f"Static({self.value!r})"


def as_input(x):
    """``x`` as it reaches a compiled program: arrays as they are, nested lists and numbers as an
    array (a list passed to ``jax.jit`` would become a pytree of scalars)."""
    return x if hasattr(x, "shape") else jnp.asarray(x)


def resolve(model, variables, x, wrt, *, check_rows=True) -> tuple[Stack, jax.Array]:
    """(stack, x) for a jaxflow model (x its input) or a block function (x is h_0, and the
    stack's input map and readout are the identity, the input map widening a half-precision
    h_0 to float32). ``check_rows=False`` inside the library's own compiled functions, whose
    public caller has checked the rows already."""
    if isinstance(model, Network):
        x = network_input("x", x, model)
        return model.decompose(variables, wrt), x
    if isinstance(model, nn.Module):
        raise TypeError(
            f"model is a flax.linen module ({type(model).__name__}) not built by jaxflow; the "
            "chain measurements (jacobian_chain, log_spectrum, lyapunov_exponents, ...) take a "
            "jaxflow model (jf.mlp, jf.residual_stack) or a block function "
            "block_fn(block_params, h) -> h. Measure a linen model's blocks with "
            "jf.block_chain(model, variables, x, blocks=...)"
        )
    if not callable(model):
        raise TypeError(
            f"model={model!r} is neither a jaxflow model nor a block function block_fn(params, h)"
        )
    if wrt != "postactivation":
        raise ValueError("wrt= applies to jaxflow MLPs; a block function defines its own chain")
    leaves = jax.tree.leaves(variables)
    kind = module_kind(model)
    framework = {"nnx": "flax.nnx", "equinox": "equinox"}.get(kind)
    if framework is not None and (kind == "nnx" or not leaves):
        raise TypeError(
            f"model is a {framework} module ({type(model).__name__}); the chain measurements "
            "(jacobian_chain, log_spectrum, ...) take a jaxflow model or a block function block_fn(block_params, h) -> h "
            "with stacked block params. Measure the module's blocks with "
            "jf.block_chain(model, None, x, blocks=...), or write its block as such a function"
        )
    if not leaves:
        raise ValueError("stacked block params are empty; they need a leading depth axis")
    depth = jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else 0
    if depth < 1 or any(jnp.ndim(a) == 0 or jnp.shape(a)[0] != depth for a in leaves):
        raise ValueError(
            "stacked block params must all share a leading depth axis of length >= 1; got "
            f"shapes {[jnp.shape(a) for a in leaves]}"
        )
    if jnp.ndim(x) not in (1, 2):
        raise ValueError(f"h0 has shape {jnp.shape(x)}; it must be (n,) or (batch, n)")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(
            f"h0 has dtype {jnp.result_type(x)}; a Jacobian needs a real floating-point h0 "
            "(e.g. h0.astype(jnp.float32))"
        )
    if jnp.ndim(x) == 2 and check_rows:
        check_rows_independent(model, variables, x)
    # Half precision (a bfloat16 / float16 h0, or a block that returns one): the chain
    # (Jacobians, products, SVDs: LAPACK has no half types) runs in at least float32 on the
    # block's own arithmetic, its state in one dtype from layer to layer.
    work = jnp.promote_types(x.dtype, jnp.float32)
    out = _output_dtype(model, variables, x) if work == x.dtype else work
    if work != x.dtype or out != work:
        block_fn = _widened(Static(model), jnp.dtype(x.dtype), jnp.dtype(work))
        cast = functools.partial(_cast, dtype=work)
        return Stack(cast, block_fn, variables, _same, int(depth)), x
    return Stack(_same, model, variables, _same, int(depth)), x


def _output_dtype(block_fn, blocks, x):
    """The dtype ``block_fn`` returns for one row of ``x`` with one block's parameters, from
    shapes alone and worked out once per function, parameter structure and input (a repeated
    eager call traces nothing); ``x.dtype`` when the block does not fit (check_square says so)."""
    leaves, treedef = jax.tree.flatten(blocks)
    spec = (treedef, tuple((tuple(jnp.shape(a)[1:]), jnp.result_type(a)) for a in leaves))
    row = (tuple(jnp.shape(x)[-1:]), jnp.result_type(x))
    return _output_dtype_of(Static(block_fn), spec, row)  # (Static: unhashable ones by identity)


@functools.lru_cache(maxsize=256)
def _output_dtype_of(block_fn, spec, row):
    treedef, leaves = spec
    first = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
    try:
        return jax.eval_shape(block_fn.value, first, jax.ShapeDtypeStruct(*row)).dtype
    except Exception:  # noqa: BLE001 — check_square reports a block that does not fit
        return row[1]


def _same(h):
    return h


def _cast(h, dtype):
    return h.astype(dtype)


@functools.lru_cache(maxsize=64)
def _widened(block_fn, dtype, work):
    """``block_fn`` taking and giving ``work`` states while computing on ``dtype`` ones, the same
    object for the same triple (the compiled programs are keyed by the block function)."""

    def widened(params, h):
        return block_fn.value(params, h.astype(dtype)).astype(work)

    return widened


@functools.partial(jax.jit, static_argnums=0)
def _row_mixing(block_fn, blocks, x):
    """Per block l, (max |f_l(x) − vmap(f_l)(x)|, max |vmap(f_l)(x)|) on a 2-D h_0; (0, 1) when
    f maps the whole h_0 to another shape (then it does not treat it as one state)."""

    def one(params):
        rows = jax.vmap(block_fn.value, in_axes=(None, 0))(params, x)
        whole = block_fn.value(params, x)
        if jnp.shape(whole) != jnp.shape(rows):
            return jnp.zeros((), rows.dtype), jnp.ones((), rows.dtype)
        return jnp.max(jnp.abs(whole - rows)), jnp.max(jnp.abs(rows))

    return jax.vmap(one)(blocks)


def _stand_ins(tree):
    """``tree`` with each traced leaf replaced by standard normal draws of its shape and dtype,
    or None when a traced leaf is not floating-point (no stand-in keeps its meaning)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(0), max(len(leaves), 1))
    out = []
    for key, leaf in zip(keys, leaves, strict=False):
        if not isinstance(leaf, jax.core.Tracer):
            out.append(leaf)
        elif jnp.issubdtype(leaf.dtype, jnp.floating):
            out.append(jax.random.normal(key, leaf.shape, leaf.dtype))
        else:
            return None
    return jax.tree.unflatten(treedef, out)


def check_rows_independent(block_fn, blocks, x) -> None:
    """``ValueError`` when ``block_fn`` mixes the rows of a 2-D h_0, which the chain measurements
    read as a batch of independent examples: a (tokens × width) state passed as it is would give
    each token's Jacobian with the other tokens held out of the block, silently wrong. Compares
    every block applied to h_0 whole with it mapped over the rows (one small compiled program
    per block function and shape). Under ``jit`` or ``vmap``, where the values are tracers, the
    same comparison runs while tracing on standard normal stand-ins of their shapes (mixing is a
    property of the function, which a random point shows); skipped only when a traced leaf is not
    floating-point, and for a block that cannot take the whole h_0 at once."""
    if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
        # A NaN in h0 would hide the comparison: mixing is the function's, checked on a stand-in.
        x = jax.random.normal(jax.random.key(0), jnp.shape(x), x.dtype)
    with jax.ensure_compile_time_eval():
        try:
            inputs = _stand_ins((blocks, x))  # (symbolic shapes, as in jax.export, have none)
            if inputs is None:
                return
            mixed, scale = (np.asarray(v) for v in _row_mixing(Static(block_fn), *inputs))
        except Exception:  # noqa: BLE001 — a block that cannot take the whole batch cannot mix it
            return
    # Rounding of the state's dtype (bfloat16: 8 bits) is not mixing.
    threshold = same_up_to_rounding(x.dtype)
    worst = int(np.argmax(np.where(np.isfinite(mixed), mixed / np.maximum(scale, 1e-30), 0)))
    if mixed[worst] > threshold * scale[worst]:  # (a NaN in h0 is not a sign of mixing)
        n_rows, n = jnp.shape(x)
        raise ValueError(
            f"block_fn mixes the rows of h0 (shape {jnp.shape(x)}): block {worst}'s output on h0 "
            f"as a whole differs from it applied to each row alone (by {mixed[worst]:.3g}, "
            f"against |h| up to {scale[worst]:.3g}), and a 2-D h0 is read as a batch of "
            f"independent examples. For a ({n_rows} × {n}) state such as tokens × width, flatten "
            f"it: block_fn=lambda p, h: f(p, h.reshape({n_rows}, {n})).reshape(-1) with "
            "h0.reshape(-1), or measure the model with jf.block_chain. If block_fn is written "
            "for one example (n,) and only its arithmetic on a 2-D array mixes the rows (a mean "
            "without axis=, W @ h), give its reductions axis=-1 or map it over the batch "
            "yourself: jax.vmap(lambda h: measure(block_fn, params, h))(h0)"
        )


def check_square(block_fn, blocks, h0) -> None:
    """``ValueError`` unless the first block can be applied to h_0 and maps it to the shape of
    h_0 (a Jacobian chain needs square blocks); from shapes alone (``jax.eval_shape``). A block
    that fails on h_0 (a width that does not fit, per-block params not stacked) is reported in
    terms of the arguments, with JAX's error attached as the cause."""
    first = jax.tree.map(lambda a: a[0], blocks)
    try:
        out = jax.eval_shape(block_fn, first, h0)
    except Exception as error:  # noqa: BLE001 — said in terms of the arguments, cause attached
        shapes = jax.tree.map(jnp.shape, first)
        cause = str(error).splitlines()[0].rstrip(".") if str(error) else ""
        raise ValueError(
            f"block_fn cannot be applied to h of shape {jnp.shape(h0)} with the first block's "
            f"params (shapes {shapes}): {type(error).__name__}: {cause}. Does h0 have the "
            "width the blocks expect, and are the params stacked, every leaf with a leading "
            "depth axis?"
        ) from error
    if getattr(out, "shape", None) != jnp.shape(h0):
        raise ValueError(
            f"block_fn maps h of shape {jnp.shape(h0)} to {getattr(out, 'shape', out)}; a Jacobian "
            "chain needs a square stack, every block mapping h to the same shape"
        )


def per_example(fn, x):
    """Applies ``fn`` to one example, or maps it over a leading batch axis."""
    return jax.vmap(fn)(x) if jnp.ndim(x) == 2 else fn(x)

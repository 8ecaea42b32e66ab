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

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxflow._checks import network_input
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


def resolve(model, variables, x, wrt) -> tuple[Stack, jax.Array]:
    """(stack, x) for a jaxflow model (x its input) or a block function (x is h_0, and the
    stack's input map and readout are the identity)."""
    if isinstance(model, Network):
        x = network_input("x", x, model)
        return model.decompose(variables, wrt), x
    if isinstance(model, nn.Module):
        raise TypeError(
            f"model is a {type(model).__name__}; jacobian_chain takes a jaxflow model (jf.mlp, "
            "jf.residual_stack) or a block function block_fn(block_params, h) -> h"
        )
    if not callable(model):
        raise TypeError(
            f"model={model!r} is neither a jaxflow model nor a block function block_fn(params, h)"
        )
    if wrt != "postactivation":
        raise ValueError("wrt= applies to jaxflow MLPs; a block function defines its own chain")
    leaves = jax.tree.leaves(variables)
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
    return Stack(lambda h: h, model, variables, lambda h: h, int(depth)), x


def check_square(block_fn, blocks, h0) -> None:
    """``ValueError`` unless the first block maps h_0 to the shape of h_0 (a Jacobian chain
    needs square blocks); from shapes alone (``jax.eval_shape``)."""
    first = jax.tree.map(lambda a: a[0], blocks)
    out = jax.eval_shape(block_fn, first, h0)
    if getattr(out, "shape", None) != jnp.shape(h0):
        raise ValueError(
            f"block_fn maps h of shape {jnp.shape(h0)} to {getattr(out, 'shape', out)}; a Jacobian "
            "chain needs a square stack, every block mapping h to the same shape"
        )


def per_example(fn, x):
    """Applies ``fn`` to one example, or maps it over a leading batch axis."""
    return jax.vmap(fn)(x) if jnp.ndim(x) == 2 else fn(x)

"""Input checks shared by the public API: one definition of each, with one style of message
(which argument, what was wrong, what is allowed)."""

from __future__ import annotations

import numbers
import sys

import jax.numpy as jnp

MAX_SIZE = 2**31 - 1
"""The largest size or count :func:`positive_int` takes: XLA's dimensions and loop counters are
32-bit, so a larger one would fail deep inside JAX (or overflow) instead of here."""


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is an integer ≥ minimum
    and ≤ :data:`MAX_SIZE` (``bool`` is refused: ``True`` is not a depth)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
    if value > MAX_SIZE:
        raise ValueError(
            f"{name}={value!r} is not allowed; it must be <= {MAX_SIZE} (2**31 - 1: XLA's "
            "sizes and loop counts are 32-bit)"
        )
    return int(value)


def model_input(name: str, x, features: int) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is one input (features,) or a batch
    (…, features) of a model that takes ``features`` input features (read from the shape alone,
    so it works on tracers too)."""
    shape = jnp.shape(x)
    if len(shape) == 0 or shape[-1] != features:
        raise ValueError(
            f"{name} has shape {shape}; its last dimension must be the model's input size "
            f"{features} (shape ({features},) or (batch, {features}))"
        )


def network_input(name: str, x, model):
    """``x`` as the chain functions take it: one input ``(features,)`` or a batch
    ``(batch, features)`` of real floating-point numbers, upcast to the model's ``param_dtype``
    where it is narrower (float16/bfloat16 inputs of a float32 model: exact, and what the
    model's own dense layers do to them; without it a residual stack, whose input is its
    first hidden state, would carry two dtypes through its scan).

    ``ValueError`` naming ``name`` for another shape, ``TypeError`` for integer, boolean or
    complex inputs (the chain is a real Jacobian taken at ``x``). From the shape and dtype
    alone, so it works on tracers too.
    """
    x = x if hasattr(x, "dtype") and hasattr(x, "shape") else jnp.asarray(x)
    model_input(name, x, model.input_dim)
    features = model.input_dim
    if x.ndim > 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; it must be one input ({features},) or a batch "
            f"(batch, {features})"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} has dtype {x.dtype}; it must be real floating point (float16, bfloat16, "
            f"float32, float64), e.g. {name.split()[-1]}.astype(jnp.float32)"
        )
    dtype = jnp.promote_types(x.dtype, model.param_dtype)
    return x if x.dtype == dtype else x.astype(dtype)


def known_keys(source: str, mapping, allowed) -> None:
    """Raises ``ValueError`` naming ``source`` for the first key of ``mapping`` not in ``allowed``.

    Example:
      >>> from jaxflow._checks import known_keys
      >>> known_keys("grid.toml", {"depth": 3}, ["depth", "width"])
      >>> known_keys("grid.toml", {"dept": 3}, ["depth", "width"])
      Traceback (most recent call last):
      ValueError: grid.toml: unknown key 'dept'; allowed keys are: depth, width
    """
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise ValueError(
                f"{source}: unknown key {key!r}; allowed keys are: {', '.join(allowed)}"
            )


def module_kind(model) -> str | None:
    """``"linen"``, ``"nnx"`` or ``"equinox"`` for a module of that framework, else None (a
    function, also one wrapped by ``eqx.filter_jit``; a jaxflow model is ``"linen"``). Reads ``sys.modules``: an object cannot be an
    instance of a class whose module was never imported, so nothing is imported for the check.

    Example:
      >>> import flax.linen as nn
      >>> from jaxflow._checks import module_kind
      >>> module_kind(nn.Dense(3)), module_kind(len)
      ('linen', None)
    """
    for kind, (name, attr) in {
        "linen": ("flax.linen", "Module"),
        "nnx": ("flax.nnx", "Module"),
        "equinox": ("equinox", "Module"),
    }.items():
        module = sys.modules.get(name)
        if module is not None and isinstance(model, getattr(module, attr)):
            # eqx.filter_jit, filter_grad, ... wrap a function in a Module: still a function.
            return None if kind == "equinox" and hasattr(model, "__wrapped__") else kind
    return None

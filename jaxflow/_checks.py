"""Input checks shared by the public API: one definition of each, with one style of message
(which argument, what was wrong, what is allowed)."""

from __future__ import annotations

import numbers

import jax.numpy as jnp


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is an integer ≥ minimum
    (``bool`` is refused: ``True`` is not a depth)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
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

"""Input checks shared by the public API: one definition of each, with one style of message
(which argument, what was wrong, what is allowed)."""

from __future__ import annotations

import numbers


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is an integer ≥ minimum
    (``bool`` is refused: ``True`` is not a depth)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
    return int(value)

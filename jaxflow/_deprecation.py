"""Old public names kept for one release: they still work, and warn with a DeprecationWarning.

Private. Module ``__getattr__`` hooks for renamed constants and aliases, and :func:`warn` for
deprecated functions and methods.

jaxflow's own modules that still use an old name (the command line and the reproduction report,
being migrated) do not trigger the warning, so their users do not see warnings about code they
did not write; the exemption goes with the old names.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any


def _from_jaxflow(depth: int) -> bool:
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return caller == "jaxflow" or caller.startswith("jaxflow.")


def warn(old: str, new: str, *, stacklevel: int = 2) -> None:
    """Warns that ``old`` is deprecated in favour of ``new``, attributed ``stacklevel`` frames up
    from the caller of ``warn`` (2: the caller of the deprecated function)."""
    if _from_jaxflow(stacklevel + 1):
        return
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def getattr_hook(module: str, renamed: dict[str, tuple[str, Callable[[], Any]]]):
    """A module ``__getattr__``: ``renamed[name] = (what to use instead, getter of the value)``."""

    def __getattr__(name: str):
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, get = renamed[name]
        warn(f"{module}.{name}", new, stacklevel=2)
        return get()

    return __getattr__


def _status_names():
    from jaxflow.gradients.stats import GradientStatus

    return tuple(member.name.lower() for member in GradientStatus)


def _prediction_names():
    from jaxflow.theory.results import PredictionStatus

    return tuple(member.name.lower() for member in PredictionStatus)


def _gradient_monitor():
    from jaxflow.gradients.monitoring import gradient_monitor

    return gradient_monitor


STATUSES = ("jaxflow.GradientStatus (names: GradientStatus.name_of(codes))", _status_names)
STATUS_NAMES = (
    "jaxflow.PredictionStatus (names: PredictionStatus.name_of(codes))",
    _prediction_names,
)
MONITOR = ("jaxflow.gradient_monitor (the same function)", _gradient_monitor)

top_level_getattr = getattr_hook(
    "jaxflow", {"STATUSES": STATUSES, "STATUS_NAMES": STATUS_NAMES, "monitor": MONITOR}
)
"""The hook of the ``jaxflow`` package: its ``__init__`` imports it as ``__getattr__``."""

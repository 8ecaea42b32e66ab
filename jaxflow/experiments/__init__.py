"""The canned reproductions: each claim of the gradient-flow notes, run and set beside its theory.

Experiments are drivers: they build models, jit and vmap (over seeds, activations or inits) and
return NamedTuples of labelled numbers that the plotting functions and ``jaxflow reproduce`` read.
Each submodule holds the experiments of one theme; their public names are re-exported here, so
``jaxflow.experiments.<name>`` is the import path whatever the submodule. The report
(``reproduce``, ``Report``) is loaded on first use: it pulls in the report generator and matplotlib.
"""

import importlib
import sys
import types

from jaxflow.experiments.bounds import SigmoidBound, sigmoid_bound
from jaxflow.experiments.dead_units import DeadUnits, dead_relu_fraction, relu_correlation_map
from jaxflow.experiments.gradient_flow import (
    ActivationComparison,
    InitComparison,
    ResidualComparison,
    compare_activations,
    compare_inits,
    compare_residual,
)
from jaxflow.experiments.mean_field import (
    Chi1Decay,
    DynamicalIsometry,
    chi1_decay,
    dynamical_isometry,
)

_LAZY = {"Report": "jaxflow.experiments.reproduce", "reproduce": "jaxflow.experiments.reproduce"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxflow.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    # Importing the submodule jaxflow.experiments.reproduce binds it as this package's attribute
    # `reproduce`; the public name is the function of that name, as it was when imported eagerly.
    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "ActivationComparison",
    "Chi1Decay",
    "DeadUnits",
    "DynamicalIsometry",
    "InitComparison",
    "Report",
    "ResidualComparison",
    "SigmoidBound",
    "chi1_decay",
    "compare_activations",
    "compare_inits",
    "compare_residual",
    "dead_relu_fraction",
    "dynamical_isometry",
    "relu_correlation_map",
    "reproduce",
    "sigmoid_bound",
]

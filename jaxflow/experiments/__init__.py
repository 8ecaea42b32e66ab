"""The canned reproductions: each claim of the gradient-flow notes, run and set beside its theory.

Experiments are drivers: they build models, jit and vmap (over seeds, activations or inits) and
return NamedTuples of labelled numbers that the plotting functions and ``jaxflow reproduce`` read.
Each submodule holds the experiments of one theme; their public names are re-exported here, so
``jaxflow.experiments.<name>`` is the import path whatever the submodule.
"""

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
from jaxflow.experiments.reproduce import Report, reproduce

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

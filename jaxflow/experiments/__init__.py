"""The canned reproductions: each claim of the gradient-flow notes, run and set beside its theory.

Experiments are drivers: they build models, jit and vmap (over seeds, activations or inits) and
return NamedTuples of labelled numbers that the plotting functions and ``jaxflow reproduce`` read.
Each submodule holds the experiments of one theme (:mod:`jaxflow.experiments.trainability`: which
deep networks train, and how fast, beside signal propagation); their public names are re-exported here, so
``jaxflow.experiments.<name>`` is the import path whatever the submodule. The report
(``reproduce``, ``Report``) now lives in :mod:`jaxflow.report`; the old names here warn for one
release.
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
from jaxflow.experiments.trainability import (
    IsometrySpeedup,
    SchoenholzHeatmap,
    isometry_speedup,
    schoenholz_heatmap,
    trainability,
)


def __getattr__(name: str):
    if name in ("Report", "reproduce"):  # deprecated: the report sits above the experiments
        import jaxflow.report.reproduce as driver
        from jaxflow._deprecation import warn

        warn(f"jaxflow.experiments.{name}", f"{name} from jaxflow.report.reproduce")
        return getattr(driver, name)
    raise AttributeError(f"module 'jaxflow.experiments' has no attribute {name!r}")


__all__ = [
    "ActivationComparison",
    "Chi1Decay",
    "DeadUnits",
    "DynamicalIsometry",
    "InitComparison",
    "IsometrySpeedup",
    "ResidualComparison",
    "SchoenholzHeatmap",
    "SigmoidBound",
    "chi1_decay",
    "compare_activations",
    "compare_inits",
    "compare_residual",
    "dead_relu_fraction",
    "dynamical_isometry",
    "isometry_speedup",
    "relu_correlation_map",
    "schoenholz_heatmap",
    "sigmoid_bound",
    "trainability",
]

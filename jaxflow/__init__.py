"""jaxflow: how gradients flow through deep networks, in JAX.

Build a deep MLP or residual stack in one call, take every per-layer Jacobian
J_l = ∂h_l/∂h_{l−1}, the product chain P_l = J_l ⋯ J_1 and the singular values of each, and check
the chain rule against autodiff:

>>> import jax, jaxflow as jf
>>> model = jf.mlp(depth=20, width=64, activation="sigmoid", init="xavier")
>>> x = jax.random.normal(jax.random.key(1), (64,))
>>> chain = jf.jacobian_chain(model, model.init(jax.random.key(0), x), x)
>>> chain.layers.shape
(20, 64, 64)
"""

import importlib as _importlib

from jaxflow._deprecation import top_level_getattr as _deprecated  # STATUSES, monitor, ...
from jaxflow.activations import ACTIVATIONS, Activation, get_activation
from jaxflow.blocks import BlockChain, block_chain
from jaxflow.bounds import GradientBound, gradient_bound
from jaxflow.chain import Reduction, backward_chain
from jaxflow.gradients import (
    GradientStats,
    GradientStatus,
    LeafStats,
    MonitorState,
    TrainResult,
    activation_gradient_norms,
    dead_unit_fraction,
    format_gradient_report,
    gradient_monitor,
    gradient_stats,
    saturated_unit_fraction,
    train,
)
from jaxflow.initializers import (
    INIT_SCHEMES,
    InitScheme,
    gaussian,
    get_init,
    he_normal,
    he_uniform,
    lecun_normal,
    orthogonal,
    orthogonal_at,
    pytorch_default,
    xavier_normal,
    xavier_uniform,
)
from jaxflow.jacobians import (
    ChainRuleCheck,
    JacobianChain,
    LinearGrads,
    accumulate_chain,
    chain_rule_check,
    jacobian_chain,
    layer_jacobians,
    linear_layer_grads,
    scan_chain,  # noqa: F401  (deprecated: warns when called; not in __all__)
    singular_values,
)
from jaxflow.models import MLP, Network, ResidualStack, Stack, mlp, residual_stack
from jaxflow.spectra import (
    HutchinsonEstimate,
    LogSpectrum,
    LyapunovSpectrum,
    PowerIteration,
    SpectralEstimates,
    jacobi_singular_values,
    layer_spectral_estimates,
    log_spectrum,
    lyapunov_exponents,
    mean_squared_singular_value,
    product_spectral_estimates,
    top_singular_value,
)
from jaxflow.sweeps import METRICS, Grid, Training, open_sweep, sweep
from jaxflow.theory import (
    DepthScales,
    FixedPoint,
    FreeMoments,
    MeanField,
    PhaseDiagram,
    Prediction,
    PredictionStatus,
    c_star,
    chi1,
    critical_sigma_w2,
    depth_scales,
    free_moments,
    mean_field,
    phase_diagram,
    q_star,
    status_name,  # noqa: F401  (deprecated, warns; not in __all__)
)

# Names whose module is loaded on first use, so that `import jaxflow` stays light: the
# experiments package also holds the report generator (and, through it, matplotlib).
_LAZY = {
    "ActivationComparison": "jaxflow.experiments.gradient_flow",
    "InitComparison": "jaxflow.experiments.gradient_flow",
    "ResidualComparison": "jaxflow.experiments.gradient_flow",
    "compare_activations": "jaxflow.experiments.gradient_flow",
    "compare_inits": "jaxflow.experiments.gradient_flow",
    "compare_residual": "jaxflow.experiments.gradient_flow",
}


# Subpackages loaded on first use (``jf.experiments.trainability(...)`` works after a plain
# ``import jaxflow``), for the same reason.
_LAZY_MODULES = ("data", "experiments", "plotting", "report")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"jaxflow.{name}")  # the import sets the attribute
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    return _deprecated(name)  # old names warn for one release; anything else: AttributeError


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jaxflow")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


__version__ = _version()

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ActivationComparison",
    "BlockChain",
    "ChainRuleCheck",
    "DepthScales",
    "FixedPoint",
    "FreeMoments",
    "GradientBound",
    "GradientStats",
    "GradientStatus",
    "Grid",
    "HutchinsonEstimate",
    "INIT_SCHEMES",
    "InitComparison",
    "InitScheme",
    "JacobianChain",
    "LeafStats",
    "LinearGrads",
    "LogSpectrum",
    "LyapunovSpectrum",
    "METRICS",
    "MLP",
    "MeanField",
    "MonitorState",
    "Network",
    "PhaseDiagram",
    "PowerIteration",
    "Prediction",
    "PredictionStatus",
    "Reduction",
    "ResidualComparison",
    "ResidualStack",
    "SpectralEstimates",
    "Stack",
    "TrainResult",
    "Training",
    "accumulate_chain",
    "activation_gradient_norms",
    "backward_chain",
    "block_chain",
    "c_star",
    "chain_rule_check",
    "chi1",
    "compare_activations",
    "compare_inits",
    "compare_residual",
    "critical_sigma_w2",
    "dead_unit_fraction",
    "depth_scales",
    "format_gradient_report",
    "free_moments",
    "gaussian",
    "get_activation",
    "get_init",
    "gradient_bound",
    "gradient_monitor",
    "gradient_stats",
    "he_normal",
    "he_uniform",
    "jacobi_singular_values",
    "jacobian_chain",
    "layer_jacobians",
    "layer_spectral_estimates",
    "lecun_normal",
    "linear_layer_grads",
    "log_spectrum",
    "lyapunov_exponents",
    "mean_field",
    "mean_squared_singular_value",
    "mlp",
    "open_sweep",
    "orthogonal",
    "orthogonal_at",
    "phase_diagram",
    "product_spectral_estimates",
    "pytorch_default",
    "q_star",
    "residual_stack",
    "saturated_unit_fraction",
    "singular_values",
    "sweep",
    "top_singular_value",
    "train",
    "xavier_normal",
    "xavier_uniform",
]

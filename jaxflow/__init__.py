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

from jaxflow.activations import ACTIVATIONS, Activation, get_activation
from jaxflow.initializers import (
    INIT_SCHEMES,
    InitScheme,
    gaussian,
    get_init,
    he_normal,
    he_uniform,
    lecun_normal,
    orthogonal,
    xavier_normal,
    xavier_uniform,
)
from jaxflow.jacobians import (
    ChainRuleCheck,
    JacobianChain,
    LinearGrads,
    chain_rule_check,
    jacobian_chain,
    layer_jacobians,
    linear_layer_grads,
    scan_chain,
    singular_values,
)
from jaxflow.models import MLP, Network, ResidualStack, Stack, mlp, residual_stack
from jaxflow.theory import (
    STATUS_NAMES,
    DepthScales,
    FixedPoint,
    FreeMoments,
    GradientBound,
    MeanField,
    PhaseDiagram,
    Prediction,
    c_star,
    chi1,
    critical_sigma_w2,
    depth_scales,
    free_moments,
    gradient_bound,
    mean_field,
    phase_diagram,
    q_star,
    status_name,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ChainRuleCheck",
    "DepthScales",
    "FixedPoint",
    "FreeMoments",
    "GradientBound",
    "INIT_SCHEMES",
    "InitScheme",
    "JacobianChain",
    "LinearGrads",
    "MLP",
    "MeanField",
    "Network",
    "PhaseDiagram",
    "Prediction",
    "ResidualStack",
    "STATUS_NAMES",
    "Stack",
    "c_star",
    "chain_rule_check",
    "chi1",
    "critical_sigma_w2",
    "depth_scales",
    "free_moments",
    "gaussian",
    "get_activation",
    "get_init",
    "gradient_bound",
    "he_normal",
    "he_uniform",
    "jacobian_chain",
    "layer_jacobians",
    "lecun_normal",
    "linear_layer_grads",
    "mean_field",
    "mlp",
    "orthogonal",
    "phase_diagram",
    "q_star",
    "residual_stack",
    "scan_chain",
    "singular_values",
    "status_name",
    "xavier_normal",
    "xavier_uniform",
]

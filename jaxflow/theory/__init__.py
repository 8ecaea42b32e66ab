"""Theory beside measurement: the gradient bound, mean-field signal propagation, free probability.

* :func:`gradient_bound` — the notes' vanishing-gradient bound
  ‖∂L/∂z^[1]‖ ≤ ∏_{l=2}^{L} ‖J^[l]‖₂ · ‖∂L/∂z^[L]‖, measured per example.
* Mean-field theory (:mod:`jaxflow.theory.propagation`; result types in
  :mod:`jaxflow.theory.results`): :func:`q_star`, :func:`chi1`,
  :func:`c_star`, :func:`depth_scales`, :func:`critical_sigma_w2`, :func:`mean_field` and
  :func:`phase_diagram`, for every registered activation, with status flags for divergent and
  marginal fixed points.
* Free probability (:mod:`jaxflow.theory.free`): :func:`free_moments`, the mean and variance of the
  squared singular values of the end-to-end Jacobian for Gaussian and orthogonal weights.

Every function here is a pure leaf function (jit/vmap-compatible); the drivers that set theory next
to Monte-Carlo measurements live in :mod:`jaxflow.experiments`. Status codes in results are
:class:`PredictionStatus` values (``OK``, ``MARGINAL``, ``DIVERGES``, ``INVALID``, ``NOT_FOUND``;
``PredictionStatus.name_of(codes)`` names them); ``WEIGHT_ENSEMBLES`` maps each weight ensemble
to its S-transform coefficient s₁.
"""

from jaxflow import _deprecation
from jaxflow.theory import results as _results
from jaxflow.theory.free import WEIGHT_ENSEMBLES, FreeMoments, free_moments  # noqa: F401
from jaxflow.theory.propagation import (
    c_star,
    chi1,
    critical_sigma_w2,
    depth_scales,
    mean_field,
    phase_diagram,
    q_star,
)
from jaxflow.theory.results import (
    DepthScales,
    FixedPoint,
    MeanField,
    PhaseDiagram,
    Prediction,
    PredictionStatus,
    status_name,  # noqa: F401  (deprecated, warns; not in __all__)
)

__all__ = [
    "DepthScales",
    "FixedPoint",
    "FreeMoments",
    "MeanField",
    "PhaseDiagram",
    "Prediction",
    "PredictionStatus",
    "c_star",
    "chi1",
    "critical_sigma_w2",
    "depth_scales",
    "free_moments",
    "mean_field",
    "phase_diagram",
    "q_star",
]


def _bounds(name):
    def get():
        from jaxflow import bounds

        return getattr(bounds, name)

    return get


# Deprecated for one release: STATUS_NAMES and the codes OK, MARGINAL, ... as module constants,
# and the gradient bound, a measurement that now lives in jaxflow.bounds (jaxflow.gradient_bound).
__getattr__ = _deprecation.getattr_hook(
    __name__,
    {
        **_results._DEPRECATED,
        "GradientBound": ("jaxflow.GradientBound", _bounds("GradientBound")),
        "gradient_bound": ("jaxflow.gradient_bound", _bounds("gradient_bound")),
    },
)

"""Result types and status codes of :mod:`jaxflow.theory`'s mean-field functions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxflow import _deprecation
from jaxflow._status import StatusCode

__all__ = [
    "DepthScales",
    "FixedPoint",
    "MeanField",
    "PhaseDiagram",
    "Prediction",
    "PredictionStatus",
]


class PredictionStatus(StatusCode):
    """The status of a theory result: the integer codes in the ``status`` fields.

    An ``IntEnum``, so the codes compare equal to the int32 values computed inside ``jit``:
    ``OK``; ``MARGINAL`` where the length map's slope at the fixed point is within ``tol`` of 1;
    ``DIVERGES`` where q^l → ∞; ``INVALID`` for invalid variances; ``NOT_FOUND`` where a root
    (the critical σ_w²) does not exist. ``PredictionStatus.name_of(codes)`` gives the lowercase
    names (``"ok"``, ``"marginal"``, ``"diverges"``, ``"invalid"``, ``"not_found"``).

    Example:
      >>> import jaxflow as jf
      >>> fp = jf.q_star("relu", 3.0, 0.0)
      >>> jf.PredictionStatus.name_of(fp.status), int(fp.status) == jf.PredictionStatus.DIVERGES
      ('diverges', True)
    """

    OK = 0
    MARGINAL = 1
    DIVERGES = 2
    INVALID = 3
    NOT_FOUND = 4


_DEPRECATED = {
    "STATUS_NAMES": _deprecation.STATUS_NAMES,
    **{  # the codes were module constants (OK, MARGINAL, ...)
        member.name: (f"jaxflow.PredictionStatus.{member.name}", lambda member=member: member)
        for member in PredictionStatus
    },
}
__getattr__ = _deprecation.getattr_hook(__name__, _DEPRECATED)

TOL = 1e-4
"""Default marginality tolerance: slopes within TOL of 1 are marginal (depth scales > 1/TOL)."""


def status_name(status) -> str | np.ndarray:
    """Deprecated: use ``PredictionStatus.name_of(status)``.

    The name of a status code (or an array of names for an array of codes).

    Args:
      status: an integer code from a theory result, or an array of them.

    Returns:
      ``"ok"``, ``"marginal"``, ``"diverges"``, ``"invalid"`` or ``"not_found"`` (same shape).

    Example:
      >>> import jaxflow as jf
      >>> jf.PredictionStatus.name_of(jf.q_star("relu", 3.0, 0.0).status)  # not status_name
      'diverges'
    """
    _deprecation.warn("jaxflow.status_name", "jaxflow.PredictionStatus.name_of")
    codes = np.asarray(status)
    PredictionStatus.name_of(codes)  # a ValueError naming the codes allowed, not an IndexError
    names = np.asarray([m.name.lower() for m in PredictionStatus], dtype=object)[codes]
    return str(names) if codes.ndim == 0 else names


class FixedPoint(NamedTuple):
    """The length map's fixed point, with the flags that say how far to trust it.

    Every field has the broadcast shape of the inputs.

    Attributes:
      q_star: q* (``inf`` where it diverges, ``nan`` where it is not determined; see status).
      slope: V′(q*) = ∂q^l/∂q^{l−1} at q*; −1/ln|slope| is ξ_q.
      status: int code, see :class:`PredictionStatus`.
      unique: whether the length map has a single attractor, so q* does not depend on q0.

    Example:
      >>> import jaxflow as jf
      >>> fp = jf.q_star("relu", 1.0, 0.5)   # q* = σ_b²/(1 − σ_w²/2) = 1
      >>> round(float(fp.q_star), 5), jf.PredictionStatus.name_of(fp.status)
      (1.0, 'ok')
    """

    q_star: jax.Array
    slope: jax.Array
    status: jax.Array
    unique: jax.Array


class Prediction(NamedTuple):
    """One predicted number and the status of the computation behind it.

    Attributes:
      value: the prediction (broadcast shape of the inputs).
      status: int code, see :class:`PredictionStatus` (for χ₁ and c*, the length map's status).

    Example:
      >>> import jaxflow as jf
      >>> jf.chi1("linear", 0.5, 0.0)
      Prediction(value=Array(0.5, dtype=float32), status=Array(0, dtype=int32))
    """

    value: jax.Array
    status: jax.Array


class DepthScales(NamedTuple):
    """Schoenholz et al.'s depth scales ξ_q = −1/ln|V′(q*)| and ξ_c = −1/ln χ_c.

    Attributes:
      xi_q: ξ_q (``inf`` when marginal, ``nan`` where q* diverges).
      xi_c: ξ_c, finite wherever χ₁ ≠ 1: near the edge of chaos it grows like 1/|χ₁ − 1|, on both
        sides (ξ_c ≈ 26,600 at χ₁ = 1 ± 3.75e-5 for tanh, σ_b² = 0.05), including where
        ``critical`` labels |χ₁ − 1| ≤ tol. It is ``inf`` only where χ₁ is 1 to the dtype's
        resolution (float32 6e-6, float64 2e-12), and in the q* → 0 / q* → ∞ limits where the
        correlation map's slope at c = 1 is 1 (see :mod:`jaxflow.theory.propagation`).
      status: the length map's status, see :class:`PredictionStatus`.

    Example:
      >>> import jaxflow as jf
      >>> ds = jf.depth_scales("tanh", 1.5, 0.05)       # Schoenholz et al.'s Fig. 1 setting
      >>> bool(ds.xi_c > ds.xi_q)
      True
    """

    xi_q: jax.Array
    xi_c: jax.Array
    status: jax.Array


class MeanField(NamedTuple):
    """Every mean-field quantity at one (σ_w², σ_b²); fields have the inputs' broadcast shape.

    Attributes:
      q_star: fixed point of the length map (see :class:`FixedPoint`).
      slope: V′(q*).
      chi1: χ₁ = σ_w² E[φ′(√q* z)²].
      c_star: stable fixed point of the correlation map, in [0, 1].
      chi_c: χ_c = σ_w² E[φ′(u₁)φ′(u₂)] at c* (equals χ₁ when c* = 1).
      xi_q: −1/ln|slope|.
      xi_c: −1/ln χ_c.
      status: int code of the length map, see :class:`PredictionStatus`.
      critical: whether |χ₁ − 1| ≤ tol (the edge of chaos).
      unique: whether the length map has a single attractor.

    Example:
      >>> import jaxflow as jf
      >>> mf = jf.mean_field("erf", 3.14159265 / 4, 0.0)   # erf's critical point
      >>> round(float(mf.chi1), 4), bool(mf.critical)
      (1.0, True)
    """

    q_star: jax.Array
    slope: jax.Array
    chi1: jax.Array
    c_star: jax.Array
    chi_c: jax.Array
    xi_q: jax.Array
    xi_c: jax.Array
    status: jax.Array
    critical: jax.Array
    unique: jax.Array


class PhaseDiagram(NamedTuple):
    """Mean-field theory over a (σ_w², σ_b²) grid, and the critical line χ₁ = 1.

    Attributes:
      sigma_w2: (n_w,) weight variances.
      sigma_b2: (n_b,) bias variances.
      mean_field: a :class:`MeanField` whose fields are (n_w, n_b).
      critical_sigma_w2: a :class:`Prediction` with (n_b,) fields: σ_w² on the critical line for
        each σ_b² (status ``NOT_FOUND`` where there is none).

    Example:
      >>> import jaxflow as jf
      >>> pd = jf.phase_diagram("relu", [1.0, 3.0], [0.0])
      >>> jf.PredictionStatus.name_of(pd.mean_field.status).tolist()
      [['ok'], ['diverges']]
    """

    sigma_w2: jax.Array
    sigma_b2: jax.Array
    mean_field: MeanField
    critical_sigma_w2: Prediction

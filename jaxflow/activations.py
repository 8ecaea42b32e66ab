"""The activation table: φ, φ′, φ′ from the output, and sup|φ′|.

Every activation jaxflow knows is an :class:`Activation` in :data:`ACTIVATIONS`, looked up by name
with :func:`get_activation`. Each entry carries

* ``fn`` — φ(z), applied elementwise to the pre-activation z;
* ``derivative`` — φ′(z), as a function of the pre-activation;
* ``derivative_from_output`` — φ′ written in terms of the output a = φ(z), where a closed form
  exists (the notes' table: ReLU 1_{a>0}, sigmoid a(1−a), tanh 1−a²), else ``None``;
* ``sup_derivative`` — sup_z |φ′(z)|, the per-layer factor in the vanishing-gradient bound
  (sigmoid 1/4, tanh 1, ReLU 1), and ``argsup``, a point where it is attained (``None`` when the
  supremum is only approached as z → +∞, as for softplus).

Convention at kinks: ``derivative`` equals what ``jax.grad(fn)`` returns at every point, kinks
included, so the explicit Jacobians and autodiff agree bit for bit in the branch they take:

* relu: φ′(0) = 0 (the right-hand limit is 1; ``jax.nn.relu`` picks 0);
* leaky_relu: φ′(0) = 1;
* hard_tanh: φ′(±1) = 0 (the flat side);
* elu: φ′(0) = 1 (both one-sided limits agree for α = 1).

Mean-field theory (:mod:`jaxflow.theory`) never evaluates φ′ exactly at a kink with nonzero
probability, so the convention does not change any prediction; it matters only for inputs that sit
exactly on a kink, e.g. zero-initialised biases with a zero input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxflow._registry import Registry

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]

ArrayFn = Callable[[jax.Array], jax.Array]


class Activation(NamedTuple):
    """One row of the activation table.

    Attributes:
      name: registry name, e.g. ``"sigmoid"``.
      fn: φ(z), elementwise.
      derivative: φ′(z) as a function of the pre-activation z.
      derivative_from_output: φ′ as a function of the output a = φ(z), or ``None`` where no closed
        form exists (erf, gelu, silu).
      sup_derivative: sup_z |φ′(z)|.
      argsup: a point z where |φ′(z)| = sup|φ′|, or ``None`` if it is approached only as z → ∞.
      kinks: points where φ is not differentiable (the convention there is ``jax.grad``'s).

    Example:
      >>> import jaxflow as jf
      >>> act = jf.get_activation("sigmoid")
      >>> float(act.derivative(0.0)), act.sup_derivative
      (0.25, 0.25)
    """

    name: str
    fn: ArrayFn
    derivative: ArrayFn
    derivative_from_output: ArrayFn | None
    sup_derivative: float
    argsup: float | None
    kinks: tuple[float, ...] = ()


_LEAKY_SLOPE = 0.01
_SQRT2 = math.sqrt(2.0)


def _relu(z):
    return jax.nn.relu(z)


def _leaky_relu(z):
    return jnp.where(z >= 0, z, _LEAKY_SLOPE * z)


def _hard_tanh(z):
    # Written with `where` rather than `clip`: jnp.clip's gradient at ±1 is 1/2 (a tie of
    # min/max), which is neither one-sided derivative.
    return jnp.where(jnp.abs(z) < 1, z, jnp.sign(z))


def _gelu(z):
    # The exact GELU, z·Φ(z) (Hendrycks & Gimpel 2016), not the tanh approximation.
    return jax.nn.gelu(z, approximate=False)


def _gelu_derivative(z):
    cdf = 0.5 * jax.lax.erfc(-z / _SQRT2)  # not 1 + erf(·): that cancels for z ≪ 0
    pdf = jnp.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


def _silu_derivative(z):
    s = jax.nn.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _elu(z):
    # α = 1; expm1 of a clamped argument so the unused branch cannot overflow.
    return jnp.where(z > 0, z, jnp.expm1(jnp.where(z > 0, 0.0, z)))


def _ones_like(z):
    return jnp.ones_like(jnp.asarray(z))


_TABLE = (
    Activation(
        "relu",
        _relu,
        lambda z: jnp.where(jnp.asarray(z) > 0, 1.0, 0.0).astype(jnp.result_type(z, float)),
        lambda a: jnp.where(jnp.asarray(a) > 0, 1.0, 0.0).astype(jnp.result_type(a, float)),
        1.0,
        1.0,
        (0.0,),
    ),
    Activation(
        "leaky_relu",
        _leaky_relu,
        lambda z: jnp.where(jnp.asarray(z) >= 0, 1.0, _LEAKY_SLOPE).astype(
            jnp.result_type(z, float)
        ),
        lambda a: jnp.where(jnp.asarray(a) >= 0, 1.0, _LEAKY_SLOPE).astype(
            jnp.result_type(a, float)
        ),
        1.0,
        1.0,
        (0.0,),
    ),
    Activation(
        "sigmoid",
        jax.nn.sigmoid,
        lambda z: jax.nn.sigmoid(z) * (1.0 - jax.nn.sigmoid(z)),
        lambda a: a * (1.0 - a),
        0.25,
        0.0,
    ),
    Activation(
        "tanh",
        jnp.tanh,
        lambda z: 1.0 - jnp.tanh(z) ** 2,
        lambda a: 1.0 - a * a,
        1.0,
        0.0,
    ),
    Activation(
        "hard_tanh",
        _hard_tanh,
        lambda z: jnp.where(jnp.abs(z) < 1, 1.0, 0.0).astype(jnp.result_type(z, float)),
        lambda a: jnp.where(jnp.abs(a) < 1, 1.0, 0.0).astype(jnp.result_type(a, float)),
        1.0,
        0.0,
        (-1.0, 1.0),
    ),
    Activation(
        "erf",
        jax.lax.erf,
        lambda z: (2.0 / math.sqrt(math.pi)) * jnp.exp(-jnp.square(z)),
        None,
        2.0 / math.sqrt(math.pi),
        0.0,
    ),
    Activation(
        "gelu",
        _gelu,
        _gelu_derivative,
        None,
        # φ″(z) = pdf(z)(2 − z²) vanishes at z = √2: sup φ′ = Φ(√2) + √2·e^{−1}/√(2π).
        0.5 * (1.0 + math.erf(1.0)) + _SQRT2 * math.exp(-1.0) / math.sqrt(2.0 * math.pi),
        _SQRT2,
    ),
    Activation(
        "silu",
        jax.nn.silu,
        _silu_derivative,
        None,
        # φ″(z) = σ′(z)(2 + z(1 − 2σ(z))) vanishes at z* = 2.399357280515468 (solved to 1e-15).
        1.099839320128867,
        2.399357280515468,
    ),
    Activation(
        "elu",
        _elu,
        lambda z: jnp.where(jnp.asarray(z) > 0, 1.0, jnp.exp(jnp.minimum(z, 0.0))).astype(
            jnp.result_type(z, float)
        ),
        lambda a: jnp.where(jnp.asarray(a) > 0, 1.0, a + 1.0).astype(jnp.result_type(a, float)),
        1.0,
        1.0,
        (0.0,),
    ),
    Activation(
        "softplus",
        jax.nn.softplus,
        jax.nn.sigmoid,
        lambda a: -jnp.expm1(-a),
        1.0,
        None,
    ),
    Activation(
        "linear",
        lambda z: jnp.asarray(z),
        _ones_like,
        _ones_like,
        1.0,
        0.0,
    ),
)

ACTIVATIONS: Registry[Activation] = Registry(
    "activation",
    {act.name: act for act in _TABLE},
    """Read-only registry of every activation (an :class:`Activation`), keyed by name.

    Example:
      >>> import jaxflow as jf
      >>> list(jf.ACTIVATIONS)[:3]
      ['elu', 'erf', 'gelu']
    """,
)


def get_activation(activation: str | Activation) -> Activation:
    """Looks up an activation by name (an :class:`Activation` passes through unchanged).

    Args:
      activation: a name from :data:`ACTIVATIONS` or an :class:`Activation`.

    Returns:
      The :class:`Activation`.

    Raises:
      ValueError: for an unknown name, listing the valid ones.

    Example:
      >>> import jaxflow as jf
      >>> jf.get_activation("tanh").sup_derivative
      1.0
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(
        f"activation={activation!r} is not a known activation; "
        f"valid names are: {', '.join(sorted(ACTIVATIONS))}"
    )

"""Per-layer quantities of the hidden stack: ∂L/∂h_l in one backward pass, dead and saturated units.

See :mod:`jaxflow.gradients` for the conventions (losses, which h_l).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow._checks import network_input
from jaxflow._numerics import scaled_norm
from jaxflow.activations import get_activation
from jaxflow.chain import accumulate_chain, backward_chain, outputs
from jaxflow.jacobians import get_loss
from jaxflow.models import MLP, Network

__all__ = [
    "SATURATION",
    "LossAndGradients",
    "activation_gradient_norms",
    "dead_unit_fraction",
    "loss_and_gradients",
    "saturated",
    "saturated_unit_fraction",
]

SATURATION = 0.1
"""jaxflow's one definition of a saturated unit: |φ′(z)| ≤ SATURATION·sup|φ′|, i.e. the unit passes
at most a tenth of the most gradient its activation can pass. Relative to sup|φ′| so that it means
the same for every activation (sigmoid's φ′ never exceeds 1/4; tanh's reaches 1): sigmoid is
saturated beyond |z| ≈ 3.6, tanh beyond |z| ≈ 1.8, and ReLU (φ′ ∈ {0, 1}) exactly when dead.
:func:`saturated_unit_fraction` and the sweep's ``saturated_fraction`` both use it."""


def saturated(derivative, sup_derivative, fraction: float = SATURATION):
    """Whether |φ′| ≤ ``fraction``·sup|φ′| (elementwise): the one definition of saturation.

    Args:
      derivative: φ′(z), any shape.
      sup_derivative: sup|φ′| of the activation (:attr:`jaxflow.Activation.sup_derivative`).
      fraction: the share of sup|φ′| at or below which a unit is saturated, in (0, 1).

    Returns:
      A boolean array shaped like ``derivative``.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> from jaxflow.gradients.layers import saturated
      >>> sigmoid = jf.get_activation("sigmoid")
      >>> saturated(sigmoid.derivative(jnp.array([0.0, 3.0, 4.0])), sigmoid.sup_derivative).tolist()
      [False, False, True]
    """
    return jnp.abs(derivative) <= fraction * sup_derivative


# Every h_l of a batch: the chain's forward scan with the block mapped over examples.


def _batched_block(stack):
    return jax.vmap(stack.block_fn, in_axes=(None, 0))


def _hidden_outputs(stack, x, taps=None):
    """(h_0, h_1 … h_L) for a batch x (B, d): h_0 (B, n) and hs (L, B, n), with taps[l] added to
    h_l when given (zero taps make ∂loss/∂taps[l] = ∂loss/∂h_l)."""
    h0 = jax.vmap(stack.input_map)(x)
    if taps is None:
        block, blocks = _batched_block(stack), stack.blocks
    else:
        h0 = h0 + taps[0]
        block_fn = _batched_block(stack)

        def block(inputs, h):
            block_vars, tap = inputs
            return block_fn(block_vars, h) + tap

        blocks = (stack.blocks, taps[1:])
    _, _, hs = accumulate_chain(block, blocks, h0, outputs())
    return h0, hs


def _tap_shape(stack, x):
    h0 = jax.eval_shape(jax.vmap(stack.input_map), x)
    return jax.ShapeDtypeStruct((stack.depth + 1,) + h0.shape, h0.dtype)


class LossAndGradients(NamedTuple):
    """A batch's loss with its gradients, from one backward pass (see :func:`loss_and_gradients`).

    Attributes:
      loss: (), the batch's loss.
      param_grads: ∂loss/∂params, shaped like ``variables["params"]``.
      activation_grads: (L+1, batch, n), ∂loss/∂h_l for l = 0…L (h_0 the input map's output, h_L
        the readout's input); (L+1, n) for one example.
    """

    loss: jax.Array
    param_grads: Any
    activation_grads: jax.Array


def loss_and_gradients(
    model, variables, x, y, loss: Any = "mse", *, reduce: str = "mean"
) -> LossAndGradients:
    """A batch's loss, its gradient with respect to the parameters and to every h_l, at once.

    Zero taps t_l are added to every h_l inside the chain's forward scan
    (:func:`~jaxflow.accumulate_chain`), so ``jax.grad`` with respect to them gives every
    ∂loss/∂h_l = ∂loss/∂t_l alongside the parameter gradient, from the one backward pass that
    training takes anyway. :func:`activation_gradient_norms` gives the per-example norms instead
    (each example's own loss, by one reverse scan of the blocks); this is the batch loss's
    gradient, the one an optimizer sees.

    Pure and jit-compatible (the gradient-flow experiments call it inside their compiled call).

    Args:
      model: a jaxflow model (:func:`~jaxflow.mlp`, :func:`~jaxflow.residual_stack`).
      variables: its variables (a ``"params"`` entry, and ``"batch_stats"`` for BatchNorm, which
        runs in inference mode).
      x: a batch (batch, d), or one input (d,).
      y: the targets, (batch, out) or (out,) (the width n when the model has no readout).
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``
        (:func:`jaxflow.jacobians.get_loss`).
      reduce: how the per-example losses make the batch's loss, ``"mean"`` (for ``"mse"``:
        PyTorch's ``nn.MSELoss()``) or ``"sum"``.

    Returns:
      A :class:`LossAndGradients`.

    Example:
      Two linear blocks h_l = W h_{l−1} with W = I/2 and no readout: each step back halves the
      gradient.

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> from jaxflow.gradients.layers import loss_and_gradients
      >>> model = jf.mlp(2, 2, activation="linear", out_dim=None)
      >>> W = {"kernel": 0.5 * jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> variables = {"params": {"blocks": {"Dense_0": W}}}
      >>> x, y = jnp.array([1.0, 1.0]), jnp.array([0.25, -0.75])  # h_2 = (0.25, 0.25)
      >>> result = loss_and_gradients(model, variables, x, y)
      >>> float(result.loss), result.activation_grads.tolist()  # loss (0² + 1²) / 2
      (0.5, [[0.0, 0.25], [0.0, 0.5], [0.0, 1.0]])
    """
    _check_model(model, "loss_and_gradients")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce={reduce!r} is not allowed; use 'mean' or 'sum'")
    x, y, single = _batch_xy(model, x, y)
    loss_fn = get_loss(loss)
    rest = {k: v for k, v in variables.items() if k != "params"}
    reduce_fn = jnp.mean if reduce == "mean" else jnp.sum

    def objective(params, taps):
        stack = model.decompose({"params": params, **rest})
        _, hs = _hidden_outputs(stack, x, taps)
        return reduce_fn(jax.vmap(loss_fn)(jax.vmap(stack.readout)(hs[-1]), y))

    shape = _tap_shape(model.decompose(variables), x)
    taps = jnp.zeros(shape.shape, shape.dtype)
    value, (param_grads, tap_grads) = jax.value_and_grad(objective, argnums=(0, 1))(
        variables["params"], taps
    )
    return LossAndGradients(value, param_grads, tap_grads[:, 0] if single else tap_grads)


def _check_model(model, fn):
    if not isinstance(model, Network):
        raise TypeError(
            f"model is a {type(model).__name__}; {fn} takes a jaxflow model "
            "(jf.mlp, jf.residual_stack)"
        )


def _batch_xy(model, x, y):
    """x as (B, d) and y as (B, out), checked against the model; and whether x was one example."""
    x, y = network_input("x", x, model), jnp.asarray(y)
    single = x.ndim == 1
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}; it must be (d,) or (batch, d)")
    out = model.width if model.out_dim is None else model.out_dim
    expected = (out,) if single else (x.shape[0], out)
    if y.shape != expected:
        raise ValueError(f"y has shape {y.shape}; for x of shape {x.shape} it must be {expected}")
    return (x[None], y[None], True) if single else (x, y, False)


def activation_gradient_norms(model, variables, x, y, loss: Any = "mse") -> jax.Array:
    """‖∂ℓ/∂h_l‖ at every layer l = 0…L, per example, from one backward pass.

    This is the quantity the vanishing-gradient bound speaks of: by the chain rule
    ∂ℓ/∂h_l = J_{l+1}ᵀ ⋯ J_Lᵀ J_outᵀ ∇_y ℓ. Rather than materialising Jacobians, the chain's
    forward scan (:func:`~jaxflow.accumulate_chain`) gives every h_l and its backward scan
    (:func:`~jaxflow.backward_chain`) pulls ∇_{h_L} ℓ back through one ``jax.vjp`` per block,
    reading ‖∂ℓ/∂h_l‖ at each layer: the cost of one backward pass. For a batch, the
    per-example losses ℓ_b are summed, so row b holds the gradient of ℓ_b alone (examples do
    not interact; BatchNorm runs in inference mode). For the batch-mean loss divide by the
    batch size.

    Pure and jit-compatible.

    Args:
      model: a jaxflow model (:func:`~jaxflow.mlp`, :func:`~jaxflow.residual_stack`).
      variables: its variables.
      x: one input (d,) or a batch (batch, d).
      y: the target, (out,) or (batch, out) (the width n when the model has no readout).
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``.

    Returns:
      (L+1,) for one example, (batch, L+1) for a batch; column l is ‖∂ℓ/∂h_l‖₂, h_0 the input
      map's output and h_L the readout's input.

    Example:
      Two linear blocks h_l = W h_{l−1} with W = I/2 and no readout: each step back halves the
      gradient, ∂ℓ/∂h_0 = Wᵀ Wᵀ ∂ℓ/∂h_2.

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="linear", out_dim=None)
      >>> W = {"kernel": 0.5 * jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> variables = {"params": {"blocks": {"Dense_0": W}}}
      >>> x, y = jnp.array([1.0, 1.0]), jnp.array([0.25, -0.75])  # h_2 = (0.25, 0.25)
      >>> jf.activation_gradient_norms(model, variables, x, y).tolist()  # ‖∂ℓ/∂h_2‖ = 1
      [0.25, 0.5, 1.0]
    """
    _check_model(model, "activation_gradient_norms")
    x, y, single = _batch_xy(model, x, y)
    norms = _activation_gradient_norms(model, variables, x, y, get_loss(loss))
    return norms[0] if single else norms


# Jitted with the model static (also when called eagerly: one compile instead of op-by-op).
@functools.partial(jax.jit, static_argnums=(0, 4))
def _activation_gradient_norms(model, variables, x, y, loss_fn):
    stack = model.decompose(variables)
    h0, hs = _hidden_outputs(stack, x)

    def loss(h_last):  # the per-example losses, summed: row b of the gradient is ℓ_b's alone
        return jnp.sum(jax.vmap(loss_fn)(jax.vmap(stack.readout)(h_last), y))

    top = jax.grad(loss)(hs[-1])
    back = backward_chain(
        _batched_block(stack),
        stack.blocks,
        jnp.concatenate([h0[None], hs[:-1]]),
        top[None],
        emit=lambda step: scaled_norm(step.cotangent[0], axis=-1),
    )
    first = scaled_norm(back.input[0], axis=-1)
    return jnp.concatenate([first[None], back.emitted]).T  # (B, L+1)


# Dead and saturated units.


def _preactivation_derivatives(model, variables, x, fn):
    """φ′(z_l) for every hidden layer of an MLP: (L, B, n), from the pre-activation chain."""
    if not isinstance(model, MLP):
        raise TypeError(
            f"model is a {type(model).__name__}; {fn} measures the hidden units of a jaxflow MLP "
            "(jf.mlp)"
        )
    if model.depth < 2:
        raise ValueError(
            f"{fn} needs an MLP of depth >= 2 (it reads z_1…z_L from "
            f"model.decompose(wrt='preactivation')); this model has depth={model.depth}"
        )
    x = network_input("x", x, model)
    return _derivatives(model, variables, x[None] if x.ndim == 1 else x)


@functools.partial(jax.jit, static_argnums=0)
def _derivatives(model, variables, x):
    # The pre-activation stack starts at z_1 (its input map is the first Dense) and its blocks
    # give z_2…z_L, so its h_0…h_{L−1} are every z_l.
    stack = model.decompose(variables, wrt="preactivation")
    z1, zs = _hidden_outputs(stack, x)
    zs = jnp.concatenate([z1[None], zs])
    return get_activation(model.activation).derivative(zs)


def dead_unit_fraction(model, variables, x) -> jax.Array:
    """Per hidden layer, the fraction of units that pass no gradient for any input of the batch.

    A unit i of layer l is dead when φ′(z_l[i]) = 0 for every example: for ReLU that is an output
    of exactly zero for every input (z ≤ 0, with ReLU′(0) = 0 as ``jax.grad`` has it), so no
    gradient reaches its incoming weights from this batch.

    Pure and jit-compatible.

    Args:
      model: a jaxflow MLP of depth ≥ 2.
      variables: its variables.
      x: one input (d,) or a batch (batch, d).

    Returns:
      (L,) fractions in [0, 1], layer l = 1…L.

    Example:
      Two ReLU blocks with W = I; the second unit of layer 1 has bias −5, so it is zero for both
      inputs, and stays zero in layer 2:

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="relu", out_dim=None)
      >>> bias = jnp.array([[0.0, -5.0], [0.0, 0.0]])
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": bias}
      >>> x = jnp.array([[1.0, 1.0], [2.0, 3.0]])
      >>> jf.dead_unit_fraction(model, {"params": {"blocks": {"Dense_0": blocks}}}, x).tolist()
      [0.5, 0.5]
    """
    derivative = _preactivation_derivatives(model, variables, x, "dead_unit_fraction")
    return jnp.mean(jnp.all(derivative == 0, axis=1), axis=-1)


def saturated_unit_fraction(
    model, variables, x, *, fraction: float = SATURATION, threshold: float | None = None
) -> jax.Array:
    """Per hidden layer, the fraction of units in saturation for every input of the batch.

    A unit i of layer l is saturated when |φ′(z_l[i])| ≤ ``fraction``·sup|φ′| for every example
    (:data:`SATURATION` = 0.1 by default; see :func:`saturated`): sigmoid beyond |z| ≈ 3.6, tanh
    beyond |z| ≈ 1.8. It passes little gradient for any input. For ReLU this counts the dead units
    (φ′ is 0 or 1). The sweep's ``saturated_fraction`` is the same definition.

    Pure and jit-compatible.

    Args:
      model: a jaxflow MLP of depth ≥ 2.
      variables: its variables.
      x: one input (d,) or a batch (batch, d).
      fraction: the share of sup|φ′| at or below which a unit is saturated, in (0, 1).
      threshold: deprecated: the former absolute rule |φ′| < ``threshold``, kept for one
        release; it warns.

    Returns:
      (L,) fractions in [0, 1], layer l = 1…L.

    Raises:
      ValueError: for a fraction outside (0, 1) or a threshold that is not a positive number.

    Example:
      Two tanh blocks with W = I; the second unit of layer 1 has bias 8, so z ≥ 9 and
      tanh′(z) < 1e-7 for both inputs; layer 2 sees |z| ≤ 1 (tanh′ ≥ 0.42) and is not saturated:

      >>> import jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(2, 2, activation="tanh", out_dim=None)
      >>> bias = jnp.array([[0.0, 8.0], [0.0, 0.0]])
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": bias}
      >>> x = jnp.array([[1.0, 1.0], [2.0, 3.0]])
      >>> jf.saturated_unit_fraction(model, {"params": {"blocks": {"Dense_0": blocks}}}, x).tolist()
      [0.5, 0.0]
    """

    def is_number(value):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    if threshold is not None:
        if not is_number(threshold) or not threshold > 0:
            raise ValueError(f"threshold={threshold!r} is not allowed; it must be a number > 0")
        warnings.warn(
            "saturated_unit_fraction(threshold=) (the absolute rule |φ′| < threshold) is "
            "deprecated; saturation is |φ′| ≤ fraction·sup|φ′| (fraction=0.1 by default)",
            DeprecationWarning,
            stacklevel=2,
        )
    elif not is_number(fraction) or not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r} is not allowed; it must be a number in (0, 1)")
    derivative = _preactivation_derivatives(model, variables, x, "saturated_unit_fraction")
    if threshold is not None:
        flat = jnp.abs(derivative) < threshold
    else:
        flat = saturated(derivative, get_activation(model.activation).sup_derivative, fraction)
    return jnp.mean(jnp.all(flat, axis=1), axis=-1)

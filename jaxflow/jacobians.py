"""Per-layer Jacobians, their product chain, singular values, and the chain-rule check.

Conventions (they change numbers, so they are fixed here and tested):

* The chain spans the **hidden blocks** only: J_l = ∂h_l/∂h_{l−1} for l = 1…L, where h_0 is the
  output of the input map and h_L the input of the readout. J_l[i, j] = ∂h_l[i]/∂h_{l−1}[j]; for an
  MLP block J_l = diag(φ′(z_l)) W_l, for a residual block J_l = I + ∂F_l/∂h.
* ``wrt="preactivation"`` (MLP only) gives the notes' J^[l] = ∂z^[l]/∂z^[l−1] = W^[l] diag(φ′(z^[l−1]))
  for l = 2…L, so the chain has L − 1 layers.
* P_l = J_l ⋯ J_1 (so P_L = ∂h_L/∂h_0), accumulated left-multiplying at ``Precision.HIGHEST``.
* Singular values are in descending order.
* The chain-rule check includes the input map and the readout: ∂L/∂x = J_inᵀ J_1ᵀ ⋯ J_Lᵀ J_outᵀ ∇_y L.

Float32 limits, flagged per layer in :class:`JacobianChain`:

* **resolution** — P_l is a float32 matrix, so its singular values below about σ_max·n·ε
  (ε = 2⁻²³ ≈ 1.2e-7) are rounding, not the network. ``resolved[l]`` counts the singular values
  above that floor; the rest are noise (or exact zeros, as in a ReLU chain, whose J_l have zero
  rows). A deep sigmoid chain loses its small singular values this way within a few layers.
* **underflow** — once σ_max(P_l)·n·ε falls below float32's smallest normal number (≈ 1.2e-38),
  even the resolvable part of the spectrum is subnormal or zero. A sigmoid MLP with Xavier weights
  at width 64 shrinks by about 0.24 per layer and reaches this within ~60 layers (about layer 50;
  σ_max ≈ 3e-33). ``underflow[l]`` flags it.

The log-domain spectra of :mod:`jaxflow.spectra` have neither limit at any depth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow._chain_inputs import Static, as_input, check_square, per_example, resolve
from jaxflow._checks import network_input
from jaxflow._numerics import HIGHEST, all_finite, relative_error
from jaxflow._platform import fast_compiling_jit
from jaxflow.chain import (
    MODES,
    accumulate_chain,
    backward_chain,
    jacobians,
    outputs,
    products,
    scan_chain,
    singular_values,
)
from jaxflow.models import Network

__all__ = [
    "ChainRuleCheck",
    "JacobianChain",
    "LinearGrads",
    "accumulate_chain",
    "chain_rule_check",
    "jacobian_chain",
    "layer_jacobians",
    "linear_layer_grads",
    "scan_chain",
    "singular_values",
]


class JacobianChain(NamedTuple):
    """Every per-layer Jacobian, every prefix product, and their singular values.

    Shapes are for one example of width n and a chain of L layers; a batch of inputs adds a
    leading batch axis to every field.

    Attributes:
      layers: (L, n, n), J_l = ∂h_l/∂h_{l−1}.
      products: (L, n, n), P_l = J_l ⋯ J_1.
      layer_singular_values: (L, n), singular values of each J_l, descending.
      product_singular_values: (L, n), singular values of each P_l, descending.
      finite: () bool, whether the input, the parameters and every J_l and P_l are finite.
      resolved: (L,) int, how many singular values of P_l lie above the rounding floor
        σ_max(P_l)·n·ε of its dtype; the remaining ones are rounding (or exact zeros).
      underflow: (L,) bool, whether σ_max(P_l)·n·ε is below the dtype's smallest normal number:
        the product has underflowed and even its resolvable singular values are lost.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(3, 4, activation="tanh")
      >>> chain = jf.jacobian_chain(model, model.init(jax.random.key(0), jnp.ones(4)), jnp.ones(4))
      >>> chain.products.shape, chain.resolved.shape, bool(chain.finite)
      ((3, 4, 4), (3,), True)
    """

    layers: jax.Array
    products: jax.Array
    layer_singular_values: jax.Array
    product_singular_values: jax.Array
    finite: jax.Array
    resolved: jax.Array
    underflow: jax.Array


class ChainRuleCheck(NamedTuple):
    """∂L/∂x three ways, and how far apart they are.

    Attributes:
      explicit: J_inᵀ J_1ᵀ ⋯ J_Lᵀ J_outᵀ ∇_y L, block by block.
      grad: ``jax.grad`` of the loss with respect to x.
      vjp: the pullback of ``jax.vjp`` applied to 1.
      explicit_error: ‖explicit − grad‖ / ‖grad‖.
      vjp_error: ‖vjp − grad‖ / ‖grad‖.
      finite: whether inputs, parameters and all three gradients are finite.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> model = jf.mlp(3, 4, activation="sigmoid")
      >>> variables = model.init(jax.random.key(0), jnp.ones(4))
      >>> check = jf.chain_rule_check(model, variables, jnp.ones(4), jnp.zeros(1))
      >>> check.explicit.shape, bool(check.explicit_error < 1e-5)
      ((4,), True)
    """

    explicit: jax.Array
    grad: jax.Array
    vjp: jax.Array
    explicit_error: jax.Array
    vjp_error: jax.Array
    finite: jax.Array


class LinearGrads(NamedTuple):
    """Gradients through z = W a + b given δ = ∂L/∂z.

    Attributes:
      weight: ∂L/∂W = δ aᵀ, summed over the batch; shape (out, in).
      bias: ∂L/∂b = δ, summed over the batch; shape (out,).
      input: ∂L/∂a = Wᵀ δ, per example; shape of ``a``.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> grads = jf.linear_layer_grads(jnp.ones((2, 3)), jnp.ones((5, 3)), jnp.ones((5, 2)))
      >>> grads.weight.shape, grads.bias.tolist(), grads.input.shape  # summed over 5 examples
      ((2, 3), [5.0, 5.0], (5, 3))
    """

    weight: jax.Array
    bias: jax.Array
    input: jax.Array


def layer_jacobians(
    model, variables, x, *, wrt: str = "postactivation", mode: str = "rev"
) -> jax.Array:
    """Every per-layer Jacobian J_l = ∂h_l/∂h_{l−1} of the hidden stack.

    Args:
      model: a jaxflow model (:func:`~jaxflow.mlp`, :func:`~jaxflow.residual_stack`) or a block
        function ``block_fn(block_params, h) -> h``.
      variables: the model's variables, or (for a block function) the stacked block params.
      x: one input (d,) or a batch (batch, d); for a block function, h_0.
      wrt: ``"postactivation"`` (default) or ``"preactivation"`` (MLP only; see module docs).
      mode: ``"rev"`` (``jax.jacrev``) or ``"fwd"`` (``jax.jacfwd``).

    Returns:
      (L, n, n), or (batch, L, n, n) for a batch of inputs.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=5, width=8, activation="tanh", init="xavier")
      >>> x = jax.numpy.ones(8)
      >>> jf.layer_jacobians(model, model.init(jax.random.key(0), x), x).shape
      (5, 8, 8)
    """
    _check_mode(mode)
    _, x = resolve(model, variables, as_input(x), wrt)  # x upcast: one compilation per dtype
    return _layer_jacobians(Static(model), variables, x, wrt, mode)


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a known differentiation mode; use one of {MODES}")


# Compiled once per model structure, options and input shapes (JAX's jit cache), so a repeated
# eager call does not trace again; the arguments were checked eagerly by the public function.
@functools.partial(fast_compiling_jit, static_argnums=(0, 3, 4))
def _layer_jacobians(model, variables, x, wrt, mode):
    stack, x = resolve(model.value, variables, x, wrt, check_rows=False)

    def one(x):
        h0 = stack.input_map(x)
        check_square(stack.block_fn, stack.blocks, h0)
        with jax.default_matmul_precision("float32"):
            return accumulate_chain(
                stack.block_fn, stack.blocks, h0, jacobians(), mode=mode
            ).emitted

    return per_example(one, x)


def jacobian_chain(
    model, variables, x, *, wrt: str = "postactivation", mode: str = "rev"
) -> JacobianChain:
    """The per-layer Jacobians J_l, the products P_l = J_l ⋯ J_1 and their singular values.

    Jit- and vmap-compatible: ``jax.vmap`` over inputs or over stacked parameter sets works, and a
    2-D ``x`` is mapped over its first axis for you. Called eagerly it is compiled once per
    model, options and input shapes and kept, so a repeated call costs what a jitted one does
    (a block function is recognised by identity: pass the same function object to reuse it).
    As under ``jax.jit``, a block function must be pure: a global or attribute it reads is
    fixed at its first call, so to change one, pass it in the parameters or define a new
    function.

    Args:
      model: a jaxflow model (:func:`~jaxflow.mlp`, :func:`~jaxflow.residual_stack`) or any block
        function ``block_fn(block_params, h) -> h`` mapping R^n to R^n.
      variables: the model's variables, or (for a block function) the stacked block params with a
        leading depth axis.
      x: one input (d,) or a batch (batch, d); for a block function, h_0 of shape (n,), or a batch
        (batch, n) of independent examples: a (tokens × width) state must be flattened to (n,)
        (a block that mixes the rows of a 2-D h_0 is refused).
      wrt: ``"postactivation"`` (default, J_l = ∂h_l/∂h_{l−1}) or ``"preactivation"`` (MLP only,
        the notes' J^[l] = ∂z^[l]/∂z^[l−1], l = 2…L).
      mode: ``"rev"`` (``jax.jacrev``, default) or ``"fwd"`` (``jax.jacfwd``); they agree.

    Returns:
      A :class:`JacobianChain`; non-finite inputs or parameters show up as ``finite=False``, and
      underflowed products as ``underflow``.

    Raises:
      ValueError: if x does not fit the model, or a block function is not square or mixes the
        rows of a 2-D h_0.
      TypeError: if ``model`` is neither a jaxflow model nor a block function.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=20, width=64, activation="sigmoid", init="xavier")
      >>> x = jax.random.normal(jax.random.key(1), (64,))
      >>> chain = jf.jacobian_chain(model, model.init(jax.random.key(0), x), x)
      >>> chain.layers.shape, chain.product_singular_values.shape
      ((20, 64, 64), (20, 64))
      >>> bool(chain.layer_singular_values.max() <= 0.25 * 4)  # ‖J_l‖ ≤ sup|φ′|·‖W_l‖
      True
    """
    _check_mode(mode)
    _, x = resolve(model, variables, as_input(x), wrt)  # x upcast: one compilation per dtype
    return _jacobian_chain(Static(model), variables, x, wrt, mode)


@functools.partial(fast_compiling_jit, static_argnums=(0, 3, 4))
def _jacobian_chain(model, variables, x, wrt, mode):
    stack, x = resolve(model.value, variables, x, wrt, check_rows=False)

    def one(x):
        h0 = stack.input_map(x)
        check_square(stack.block_fn, stack.blocks, h0)
        with jax.default_matmul_precision("float32"):
            _, _, (layers, products_) = accumulate_chain(
                stack.block_fn, stack.blocks, h0, (jacobians(), products()), mode=mode
            )
        layer_sv = singular_values(layers)
        product_sv = singular_values(products_)
        finfo = jnp.finfo(product_sv.dtype)
        floor = product_sv[:, :1] * product_sv.shape[-1] * finfo.eps
        resolved = jnp.sum(product_sv > floor, axis=-1)
        underflow = floor[:, 0] < finfo.tiny
        finite = all_finite(x, variables, layers, products_)
        return JacobianChain(layers, products_, layer_sv, product_sv, finite, resolved, underflow)

    return per_example(one, x)


LOSSES = ("mse",)
"""The loss names :func:`get_loss` knows."""


def _mse(prediction, y):
    return jnp.mean(jnp.square(prediction - y))


def get_loss(loss: Any) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The per-example loss ``loss(prediction, y) -> scalar`` that a loss name stands for.

    jaxflow's one definition of its loss names, used wherever a loss is differentiated
    (:func:`chain_rule_check`, :func:`~jaxflow.gradient_bound`, the gradient measurements, the
    training loop and the gradient-flow experiments). A name always gives the same function
    object, so a compiled driver keyed on it does not recompile from one call to the next.

    Args:
      loss: ``"mse"`` (the mean over outputs of the squared error; its batch mean is PyTorch's
        ``nn.MSELoss()``) or a callable ``loss(prediction, y) -> scalar``, returned as it is.

    Returns:
      The loss function, for one example.

    Raises:
      ValueError: if ``loss`` is neither a name in :data:`LOSSES` nor a callable.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxflow.jacobians import get_loss
      >>> float(get_loss("mse")(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))  # (1 + 4) / 2
      2.5
      >>> get_loss("mse") is get_loss("mse")
      True
    """
    if callable(loss):
        return loss
    if loss == "mse":
        return _mse
    raise ValueError(f"loss={loss!r} is not a known loss; use one of {LOSSES} or a callable")


def chain_rule_check(model, variables, x, y, loss: Any = "mse") -> ChainRuleCheck:
    """Checks the notes' central identity ∂L/∂x = J_1ᵀ ⋯ J_Lᵀ ∇_y L against autodiff.

    The explicit side is the chain rule applied layer by layer: ∇_y L (from ``jax.grad`` of the
    loss alone) times the materialised readout Jacobian, transposed, pulled back through every
    block one ``jax.vjp`` at a time by :func:`~jaxflow.backward_chain` (each step is J_lᵀ v at
    the block's own input h_{l−1}), then times the input map's materialised Jacobian, transposed.
    The other sides are ``jax.grad`` and ``jax.vjp`` of the whole network's loss.

    Args:
      model: a jaxflow model.
      variables: its variables.
      x: one input (d,), or a batch (batch, d) checked example by example.
      y: the target, (out_dim,) or (batch, out_dim).
      loss: ``"mse"`` (mean over outputs of the squared error) or ``loss(prediction, y) -> scalar``.

    Returns:
      A :class:`ChainRuleCheck` with all three gradients and their relative errors.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=10, width=16, activation="tanh", init="xavier")
      >>> x, y = jax.numpy.ones(16), jax.numpy.zeros(1)
      >>> check = jf.chain_rule_check(model, model.init(jax.random.key(0), x), x, y)
      >>> bool(check.explicit_error < 1e-5), bool(check.vjp_error < 1e-5)
      (True, True)
    """
    if not isinstance(model, Network):
        raise TypeError(
            f"model is a {type(model).__name__}; chain_rule_check takes a jaxflow model"
        )
    x = network_input("x", x, model)
    loss_fn = get_loss(loss)
    stack = model.decompose(variables)
    if isinstance(loss, str):  # the built-in losses compare y with the prediction elementwise
        predicted = jax.eval_shape(model.apply, variables, x).shape
        if jnp.shape(y) != predicted:
            raise ValueError(
                f"y has shape {jnp.shape(y)}; the model predicts {predicted} for x of shape "
                f"{jnp.shape(x)}, and loss={loss!r} needs y of that shape (no broadcasting)"
            )

    def one(x, y):
        def total(x):
            return loss_fn(model.apply(variables, x), y)

        with jax.default_matmul_precision("float32"):
            h0 = stack.input_map(x)
            h_last, _, hs = accumulate_chain(stack.block_fn, stack.blocks, h0, outputs())
            prediction = stack.readout(h_last)
            grad_y = jax.grad(loss_fn)(prediction, y)
            J_out = jax.jacrev(stack.readout)(h_last)
            J_in = jax.jacrev(stack.input_map)(x)
            v = jnp.matmul(J_out.T, grad_y, precision=HIGHEST)
            inputs = jnp.concatenate([h0[None], hs[:-1]])
            v = backward_chain(stack.block_fn, stack.blocks, inputs, v[None]).input[0]
            explicit = jnp.matmul(J_in.T, v, precision=HIGHEST)
            grad = jax.grad(total)(x)
            _, pullback = jax.vjp(total, x)
            (vjp,) = pullback(jnp.ones((), prediction.dtype))
        finite = all_finite(x, y, variables, explicit, grad, vjp)
        return ChainRuleCheck(
            explicit,
            grad,
            vjp,
            relative_error(explicit, grad),
            relative_error(vjp, grad),
            finite,
        )

    if jnp.ndim(x) == 2:
        return jax.vmap(one)(x, y)
    return one(x, y)


def linear_layer_grads(W: jax.Array, a: jax.Array, delta: jax.Array) -> LinearGrads:
    """The notes' linear-layer gradients for z = W a + b: ∂L/∂W = δaᵀ, ∂L/∂b = δ, ∂L/∂a = Wᵀδ.

    W uses the mathematical (out, in) layout (a Flax kernel is its transpose). For a batch, the
    parameter gradients are summed over examples (the gradient of a summed loss) and ∂L/∂a is per
    example.

    Args:
      W: (out, in).
      a: (in,) or (batch, in), the layer's input.
      delta: (out,) or (batch, out), δ = ∂L/∂z.

    Returns:
      :class:`LinearGrads` ``(weight (out, in), bias (out,), input like a)``.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> g = jf.linear_layer_grads(jnp.eye(2), jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]))
      >>> g.weight.tolist(), g.input.tolist()
      ([[3.0, 6.0], [4.0, 8.0]], [3.0, 4.0])
    """
    W, a, delta = jnp.asarray(W), jnp.asarray(a), jnp.asarray(delta)
    if W.ndim != 2:
        raise ValueError(f"W has shape {W.shape}; it must be a matrix (out, in)")
    out_features, in_features = W.shape
    if a.ndim not in (1, 2) or a.shape[-1] != in_features:
        raise ValueError(
            f"a has shape {a.shape}; it must be ({in_features},) or (batch, {in_features})"
        )
    if delta.shape != a.shape[:-1] + (out_features,):
        raise ValueError(
            f"delta has shape {delta.shape}; for a of shape {a.shape} it must be "
            f"{a.shape[:-1] + (out_features,)}"
        )
    batch = "b" if a.ndim == 2 else ""
    weight = jnp.einsum(f"{batch}o,{batch}i->oi", delta, a, precision=HIGHEST)
    bias = delta.sum(0) if a.ndim == 2 else delta
    return LinearGrads(weight, bias, jnp.matmul(delta, W, precision=HIGHEST))

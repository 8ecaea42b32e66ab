"""The notes' vanishing-gradient bound, measured per example.

For an MLP with pre-activations z^[l] = W^[l] φ(z^[l−1]) + b^[l], the gradient at the first layer is
∂L/∂z^[1] = (J^[L] ⋯ J^[2])ᵀ ∂L/∂z^[L] with J^[l] = ∂z^[l]/∂z^[l−1] = W^[l] diag(φ′(z^[l−1])), so

    ‖∂L/∂z^[1]‖ / ‖∂L/∂z^[L]‖  ≤  σ_max(J^[L] ⋯ J^[2])  ≤  ∏_{l=2}^{L} ‖J^[l]‖₂
                               ≤  ∏_{l=2}^{L} sup|φ′| · ‖W^[l]‖₂,

the first inequality because the ratio is ‖Pᵀg‖/‖g‖ for one direction g, the second by
submultiplicativity, the third because ‖W D‖₂ ≤ ‖W‖₂ max|D_ii|. For sigmoid, sup|φ′| = 1/4, so the
last bound is 0.25^(L−1) ∏‖W^[l]‖₂, so the notes' 0.25^(L−1) (0.25^19 ≈ 3.6e-12 at L = 20) is
guaranteed **when ∏‖W^[l]‖₂ ≤ 1** (orthogonal weights) — a sufficient condition, not a necessary
one. A square Gaussian layer with variance 1/n (Xavier) has ‖W‖₂ ≈ 2, so a Xavier sigmoid network
has no such guarantee: it exceeds 0.25^(L−1) in its worst direction, though in the loss's
direction it stays under it for almost every seed (see :func:`jaxflow.experiments.sigmoid_bound`).

**Which direction.** The measured ratio depends on the direction of g = ∂L/∂z^[L] = diag(φ′(z^[L]))
W_outᵀ ∇_y L: the loss enters only through ∇_y L. With one output (``out_dim=1``, the default) that
is a scalar, so every loss gives the same direction and the same ratio; with several outputs the
ratio depends on the loss and the target. :func:`gradient_bound` uses ``loss`` (default mean squared
error) with target ``y`` (default zeros). ``worst_ratio`` = σ_max(P) is the ratio maximised over
directions, which no loss can exceed.

The chain is the one :func:`jaxflow.jacobian_chain` takes with ``wrt="preactivation"``. One
forward scan (:func:`jaxflow.accumulate_chain`) gives every z^[l], every ‖J^[l]‖₂ and the product
with a running scale (P = e^{s}·P̂ with ‖P̂‖_F = 1, its singular values read per layer when every
prefix is asked for); one backward scan (:func:`jaxflow.backward_chain`) pulls the readout
gradient of every requested depth down to z^[1] at once, each with a running log scale. Every
quantity is kept as a natural logarithm, so nothing underflows at any depth, and memory is O(L·n),
never L matrices; the ``ratio``, ``product``, ``looser`` and ``worst_ratio`` properties
exponentiate them (and may underflow to 0 in float32 beyond ~60 sigmoid layers).

This is a measurement (of a network, by autodiff); :mod:`jaxflow.theory` re-exports it beside
the predictions it is compared with.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow._chain_inputs import Static, as_input
from jaxflow._checks import network_input
from jaxflow._numerics import HIGHEST, all_finite, safe_log, scaled_norm
from jaxflow._platform import fast_compiling_jit
from jaxflow.activations import get_activation
from jaxflow.chain import (
    Reduction,
    accumulate_chain,
    backward_chain,
    outputs,
    scaled_products,
    singular_values,
    spectral_norms,
    statistic,
)
from jaxflow.jacobians import get_loss
from jaxflow.models import MLP

__all__ = ["GradientBound", "gradient_bound"]


class GradientBound(NamedTuple):
    """The three sides of the vanishing-gradient bound for one example, as natural logarithms.

    Shapes are for one example of width n and depth L; ``prefixes=True`` adds a trailing axis of
    length L − 1 (prefix depths d = 2…L) to every field but ``weight_norms``, ``layer_norms`` and
    ``finite``; a batch of inputs adds a leading batch axis to every field.

    Attributes:
      log_ratio: ln(‖∂L/∂z^[1]‖/‖∂L/∂z^[L]‖), the measured ratio in the loss's direction
        (``nan`` where ∂L/∂z^[L] = 0 and there is nothing to propagate, e.g. every top ReLU unit
        dead; ``-inf`` where the gradient dies on the way down).
      log_worst: ln σ_max(∂z^[L]/∂z^[1]), the ratio in the worst direction.
      log_product: Σ_{l=2}^{L} ln‖J^[l]‖₂, the notes' bound.
      log_looser: Σ_{l=2}^{L} ln(sup|φ′|·‖W^[l]‖₂).
      log_singular_values: (n,) ln of every singular value of ∂z^[L]/∂z^[1], descending.
      layer_norms: (L − 1,) ‖J^[l]‖₂ for l = 2…L.
      weight_norms: (L − 1,) ‖W^[l]‖₂ for l = 2…L.
      finite: () bool, whether input, parameters and every J^[l] are finite.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=5, width=8, activation="sigmoid", init="orthogonal")
      >>> x = jax.numpy.ones(8)
      >>> variables = model.init(jax.random.key(0), x)
      >>> b = jax.jit(jf.gradient_bound, static_argnums=0)(model, variables, x)
      >>> round(float(b.looser / 0.25**4), 4)   # every ‖W‖₂ = 1: the looser bound is 0.25^(L−1)
      1.0
    """

    log_ratio: jax.Array
    log_worst: jax.Array
    log_product: jax.Array
    log_looser: jax.Array
    log_singular_values: jax.Array
    layer_norms: jax.Array
    weight_norms: jax.Array
    finite: jax.Array

    # The exponentiated sides; they may underflow to 0 in float32 where the logarithms do not.
    ratio = property(lambda self: jnp.exp(self.log_ratio), doc="‖∂L/∂z^[1]‖/‖∂L/∂z^[L]‖.")
    worst_ratio = property(lambda self: jnp.exp(self.log_worst), doc="σ_max(∂z^[L]/∂z^[1]).")
    product = property(lambda self: jnp.exp(self.log_product), doc="∏ ‖J^[l]‖₂.")
    looser = property(lambda self: jnp.exp(self.log_looser), doc="∏ sup|φ′|·‖W^[l]‖₂.")


def _log_singular_values(product):
    return safe_log(singular_values(product.direction)) + product.log_scale


def _every_prefix(readout_grad):
    """The scaled product P_d with, read at every layer d, ln σ(P_d) and ln‖P_dᵀ g_d‖ for the
    depth-d prefix's readout gradient g_d at z^[d].

    Every prefix's backward pass P_dᵀ g_d is then a matrix–vector product on the product the
    forward scan carries anyway for the spectra: O(L·n³) work and O(n²) state, where L separate
    backward passes (one ``backward_chain`` with L injected depths) cost O(L²·n²).
    """
    product = scaled_products()

    def read(layer, P):
        g = readout_grad(layer.output)
        first = jnp.matmul(g, P.direction, precision=HIGHEST)  # (P̂_dᵀ g_d)ᵀ
        return {
            "log_sv": _log_singular_values(P),
            "log_first": safe_log(scaled_norm(first)) + P.log_scale,
            "log_grad": safe_log(scaled_norm(g)),
        }

    return Reduction(product.init, product.update, read)


def _bound_one(stack, sup, weight_norms, x, y, loss_fn, prefixes):
    with jax.default_matmul_precision("float32"):
        z1 = stack.input_map(x)
        readout_grad = jax.grad(lambda z: loss_fn(stack.readout(z), y))
        reductions = {
            "layer_norms": spectral_norms(),
            "finite": statistic(lambda layer: all_finite(layer.jacobian)),
        }
        if prefixes:
            # The depth-d prefix reads out z^[d], the output of chain layer d − 1.
            reductions["P"] = _every_prefix(readout_grad)
        else:
            reductions["P"], reductions["z"] = scaled_products(), outputs()
        z_last, state, emitted = accumulate_chain(stack.block_fn, stack.blocks, z1, reductions)
        layer_norms = emitted["layer_norms"]  # ‖J^[2…L]‖₂
        if prefixes:
            log_sv = emitted["P"]["log_sv"]
            log_ratio = emitted["P"]["log_first"] - emitted["P"]["log_grad"]
        else:
            log_sv = _log_singular_values(state["P"])[None]
            grads = readout_grad(z_last)[None]
            inputs = jnp.concatenate([z1[None], emitted["z"][:-1]])
            first = backward_chain(
                stack.block_fn,
                stack.blocks,
                inputs,
                grads,
                depths=jnp.array([layer_norms.shape[0]]),
                scaled=True,
            )
            log_ratio = (
                safe_log(jax.vmap(scaled_norm)(first.input))
                + first.log_scale
                - safe_log(jax.vmap(scaled_norm)(grads))
            )
    log_product = jnp.cumsum(safe_log(layer_norms))
    log_looser = jnp.cumsum(jnp.log(sup * weight_norms))
    if not prefixes:
        log_product, log_looser = log_product[-1:], log_looser[-1:]
    squeeze = (lambda a: a) if prefixes else (lambda a: a[0])
    return GradientBound(
        squeeze(log_ratio),
        squeeze(log_sv[:, 0]),
        squeeze(log_product),
        squeeze(log_looser),
        squeeze(log_sv),
        layer_norms,
        weight_norms,
        all_finite(x, stack.blocks) & jnp.all(emitted["finite"]),
    )


def gradient_bound(
    model: MLP,
    variables: Any,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    loss: Any = "mse",
    prefixes: bool = False,
) -> GradientBound:
    """Measures ‖∂L/∂z^[1]‖/‖∂L/∂z^[L]‖ ≤ ∏‖J^[l]‖₂ ≤ ∏ sup|φ′|·‖W^[l]‖₂ per example.

    Jit- and vmap-compatible; a 2-D ``x`` is mapped over its first axis. Called eagerly it is
    compiled once per model, loss, options and input shapes and kept (a loss function is
    recognised by identity; as under ``jax.jit`` it must be pure: a global it reads is fixed at
    its first call).

    Args:
      model: a jaxflow MLP (:func:`~jaxflow.mlp`) of depth L ≥ 2.
      variables: its variables.
      x: one input (d,) or a batch (batch, d).
      y: the target, (out_dim,) or (batch, out_dim); default zeros. It changes the ratio only
        through the direction of ∇_y L, i.e. not at all when out_dim = 1.
      loss: ``"mse"`` or ``loss(prediction, y) -> scalar``.
      prefixes: also answer every shallower network: fields gain a trailing axis over depths
        d = 2…L, entry d − 2 being the depth-d prefix of ``model`` (its first d blocks and the same
        readout, which is a depth-d model with the same key since block initialisation does not
        depend on depth).

    Returns:
      A :class:`GradientBound`.

    Raises:
      TypeError: if ``model`` is not a jaxflow MLP.
      ValueError: if depth < 2 or x, y do not fit the model.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=5, width=8, activation="sigmoid", init="orthogonal")
      >>> x = jax.numpy.ones(8)
      >>> variables = model.init(jax.random.key(0), x)
      >>> b = jax.jit(jf.gradient_bound, static_argnums=0)(model, variables, x)
      >>> bool(b.ratio <= b.worst_ratio < b.product < b.looser)
      True
    """
    if not isinstance(model, MLP):
        raise TypeError(
            f"model is a {type(model).__name__}; gradient_bound takes a jaxflow MLP (jf.mlp): the "
            "bound is stated for the pre-activation chain J^[l] = W^[l] diag(φ′(z^[l−1]))"
        )
    x = network_input("x", as_input(x), model)
    if model.depth < 2:
        model.decompose(variables, wrt="preactivation")  # raises: the chain needs depth >= 2
    batch = jnp.shape(x)[:-1]
    out_shape = (model.out_dim,) if model.out_dim is not None else (model.width,)
    if y is not None:
        y = as_input(y)
        if jnp.shape(y) != batch + out_shape:
            raise ValueError(
                f"y has shape {jnp.shape(y)}; for x of shape {jnp.shape(x)} it must be "
                f"{batch + out_shape}"
            )
    loss_fn = get_loss(loss)
    get_activation(model.activation)
    return _gradient_bound(Static(model), variables, x, y, Static(loss_fn), bool(prefixes))


# Compiled once per model, loss, options and input shapes (JAX's jit cache), so a repeated eager
# call does not trace again; the arguments were checked eagerly by gradient_bound.
@functools.partial(fast_compiling_jit, static_argnums=(0, 4, 5))
def _gradient_bound(model, variables, x, y, loss_fn, prefixes):
    model, loss_fn = model.value, loss_fn.value
    stack = model.decompose(variables, wrt="preactivation")
    if y is None:
        out_shape = (model.out_dim,) if model.out_dim is not None else (model.width,)
        y = jnp.zeros(jnp.shape(x)[:-1] + out_shape, jnp.result_type(x, float))
    sup = get_activation(model.activation).sup_derivative
    with jax.default_matmul_precision("float32"):
        weight_norms = singular_values(stack.blocks["params"]["kernel"])[:, 0]

    def one(x, y):
        return _bound_one(stack, sup, weight_norms, x, y, loss_fn, prefixes)

    return jax.vmap(one)(x, y) if jnp.ndim(x) == 2 else one(x, y)

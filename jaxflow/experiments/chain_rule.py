"""The chain rule checked: the explicit Jacobian product against autodiff and a float64 gradient."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow import _platform

__all__ = ["CHAIN_RULE_CONFIGS", "ChainRuleErrors", "chain_rule_errors"]

CHAIN_RULE_CONFIGS = tuple(
    (family, activation, init)
    for family in ("mlp", "residual")
    for activation, init in (("relu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier"))
)
"""(family, activation, init) of every network :func:`chain_rule_errors` checks by default."""


class ChainRuleErrors(NamedTuple):
    """Relative errors of ∂L/∂x taken three ways in float32, one value per network.

    Attributes:
      configs: ``"family-activation"`` of each network.
      explicit: max relative error of J_inᵀ J_1ᵀ⋯J_Lᵀ J_outᵀ ∇_y L against float64, per network.
      grad: the same for ``jax.grad`` of the whole loss.
      vjp: the same for ``jax.vjp``.
      explicit_vs_grad: max relative error of the explicit product against ``jax.grad``.
      depth: L.
      width: n.

    Example:
      >>> from jaxflow.experiments.chain_rule import ChainRuleErrors
      >>> ChainRuleErrors._fields[:4]
      ('configs', 'explicit', 'grad', 'vjp')
    """

    configs: list
    explicit: list
    grad: list
    vjp: list
    explicit_vs_grad: list
    depth: int
    width: int


def _checked(model):
    """Data, weights and :func:`jaxflow.chain_rule_check` of ``model`` as one jitted program of
    ``(key, index)``: drawn eagerly, flax's scanned init and the random draws compile a dozen
    small programs of their own per network."""
    from jaxflow.jacobians import chain_rule_check

    @jax.jit
    def checked(key, index):
        kx, ky = jax.random.split(jax.random.fold_in(key, index))
        x, y = jax.random.normal(kx, (4, 8)), jax.random.normal(ky, (4, 4))
        variables = model.init(key, x)
        return variables, x, y, chain_rule_check(model, variables, x, y)

    return checked


def chain_rule_errors(depth=20, width=32, configs=CHAIN_RULE_CONFIGS, *, key) -> ChainRuleErrors:
    """∂L/∂x of an MSE loss by the explicit Jacobian product, ``jax.grad`` and ``jax.vjp``, in
    float32, each against the same gradient computed in float64.

    Every J_l is materialised by :func:`jaxflow.chain_rule_check` (input map and readout included)
    for 4 random inputs of dimension 8 and targets of dimension 4. Each network is jit-compiled.

    Args:
      depth: L, the number of blocks.
      width: n, the hidden width.
      configs: ``(family, activation, init)`` triples; family is ``"mlp"`` or ``"residual"``.
      key: the network's weights; the inputs of network i come from ``fold_in(key, i)``.

    Returns:
      A :class:`ChainRuleErrors`, one value per config in each field.

    Example:
      >>> import jax
      >>> from jaxflow.experiments.chain_rule import chain_rule_errors
      >>> r = chain_rule_errors(2, 4, (("mlp", "tanh", "xavier"),), key=jax.random.key(0))
      >>> r.configs, max(r.explicit_vs_grad) < 1e-5
      (['mlp-tanh'], True)
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    from jaxflow.models import mlp, residual_stack

    builders = {"mlp": mlp, "residual": residual_stack}
    names, errors = [], {"explicit": [], "grad": [], "vjp": [], "explicit_vs_grad": []}
    for family, activation, init in configs:
        model = builders[family](
            depth, width, activation=activation, init=init, in_dim=8, out_dim=4
        )
        variables, x, y, check = _checked(model)(key, len(names))
        # The float64 reference: the same weights and inputs, differentiated in float64.
        with jax.enable_x64(True):
            to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731

            @jax.jit
            def reference_grad(v, x, y):
                loss = lambda x, y: jnp.mean(jnp.square(model.apply(v, x) - y))  # noqa: E731
                return jax.vmap(jax.grad(loss))(x, y)

            reference = np.asarray(reference_grad(to64(variables), to64(x), to64(y)))
        norm = np.linalg.norm(reference, axis=-1)
        for field in ("explicit", "grad", "vjp"):
            value = np.asarray(getattr(check, field), np.float64)
            errors[field].append(float(np.max(np.linalg.norm(value - reference, axis=-1) / norm)))
        errors["explicit_vs_grad"].append(float(check.explicit_error.max()))
        names.append(f"{family}-{activation}")
    return ChainRuleErrors(names, **errors, depth=depth, width=width)

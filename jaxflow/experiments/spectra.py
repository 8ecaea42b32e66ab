"""Jacobian spectra against depth: every J_l and every product P_l, for several activations."""

from __future__ import annotations

from typing import NamedTuple

import jax

from jaxflow import _platform

__all__ = ["SPECTRA_CONFIGS", "JacobianSpectra", "jacobian_spectra"]

SPECTRA_CONFIGS = (
    ("tanh", "xavier"),
    ("relu", "he"),
    ("sigmoid", "xavier"),
    ("linear", "orthogonal"),
)
"""(activation, init) of every network :func:`jacobian_spectra` measures by default."""


class JacobianSpectra(NamedTuple):
    """Singular values of J_l and P_l = J_l⋯J_1 for C networks (MLPs without biases), S seeds each.

    Attributes:
      configs: the C ``(activation, init)`` pairs.
      layer_singular_values: (C, S, L, n) singular values of each J_l, descending.
      product_singular_values: (C, S, L, n) singular values of each P_l, descending.
      resolved: (C, S, L) how many singular values of P_l are above its float32 rounding floor.
      depth: L.
      width: n.

    Example:
      >>> from jaxflow.experiments.spectra import JacobianSpectra
      >>> JacobianSpectra._fields[1:3]
      ('layer_singular_values', 'product_singular_values')
    """

    configs: tuple
    layer_singular_values: jax.Array
    product_singular_values: jax.Array
    resolved: jax.Array
    depth: int
    width: int

    @property
    def labels(self) -> list[str]:
        """``"activation, init"`` of each network."""
        return [f"{activation}, {init}" for activation, init in self.configs]


def jacobian_spectra(
    configs=SPECTRA_CONFIGS, *, depth=32, width=64, seeds=4, key
) -> JacobianSpectra:
    """Every J_l and P_l of bias-free MLPs at one input, vmapped over seeds, one jit per network.

    Args:
      configs: ``(activation, init)`` pairs.
      depth: L.
      width: n.
      seeds: S, weight draws per network.
      key: the input x ~ N(0, I) is drawn from it; network i's weights from
        ``split(fold_in(key, i), seeds)``.

    Returns:
      A :class:`JacobianSpectra`.

    Example:
      >>> import jax
      >>> from jaxflow.experiments.spectra import jacobian_spectra
      >>> r = jacobian_spectra((("linear", "orthogonal"),), depth=3, width=4, seeds=2,
      ...                      key=jax.random.key(0))
      >>> r.product_singular_values.shape, bool(abs(r.product_singular_values - 1).max() < 1e-5)
      ((1, 2, 3, 4), True)
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    import jax.numpy as jnp

    from jaxflow.jacobians import jacobian_chain
    from jaxflow.models import mlp

    layer_svs, product_svs, resolveds = [], [], []
    for index, (activation, init) in enumerate(configs):
        model = mlp(depth, width, activation=activation, init=init, use_bias=False)
        keys = jax.random.split(jax.random.fold_in(key, index), seeds)
        x = jax.random.normal(key, (width,))

        @jax.jit
        def spectra(key):
            chain = jacobian_chain(model, model.init(key, x), x)
            return chain.layer_singular_values, chain.product_singular_values, chain.resolved

        layer_sv, sv, resolved = jax.vmap(spectra)(keys)  # (seeds, L, n)
        layer_svs.append(layer_sv)
        product_svs.append(sv)
        resolveds.append(resolved)
    return JacobianSpectra(
        tuple(configs), jnp.stack(layer_svs), jnp.stack(product_svs), jnp.stack(resolveds),
        depth, width,
    )  # fmt: skip

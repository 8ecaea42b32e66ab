"""Equinox: a residual MLP whose blocks are a list field, applied per example; and
``eqx.nn.MLP``, whose layers have activations between them (not a chain of blocks)."""

import equinox as eqx
import jax
import jax.numpy as jnp


class Residual(eqx.Module):
    linear: eqx.nn.Linear

    def __call__(self, x):
        return x + jnp.tanh(self.linear(x))


class Model(eqx.Module):
    layers: list
    head: eqx.nn.Linear
    activation: callable = jax.nn.relu  # a non-array leaf: skipped in the gradient report

    def __init__(self, key):
        keys = jax.random.split(key, 4)
        self.layers = [Residual(eqx.nn.Linear(4, 4, key=k)) for k in keys[:3]]
        self.head = eqx.nn.Linear(4, 3, key=keys[3])

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(self.activation(x))


def build():
    return Model(jax.random.key(0)), jax.random.normal(jax.random.key(1), (2, 4))


def build_mlp():
    return eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0)), jnp.ones((2, 3))


class DocsStyle(eqx.Module):
    """Blocks in a list with plain functions among them, as in the Equinox docs' CNN."""

    layers: list

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.layers = [eqx.nn.Linear(3, 4, key=k1), jax.nn.relu, eqx.nn.Linear(4, 2, key=k2)]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def build_docs_style():
    return DocsStyle(jax.random.key(0)), jnp.ones((2, 3))


class Scanned(eqx.Module):
    """The Equinox docs' "scan over layers": one Linear stacked by ``filter_vmap``, applied by
    ``lax.scan``; its leaves carry a leading depth axis under the field name ``layers``."""

    layers: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, key, depth=3):
        keys = jax.random.split(key, depth + 1)
        self.layers = eqx.filter_vmap(lambda k: eqx.nn.Linear(4, 4, key=k))(keys[:depth])
        self.head = eqx.nn.Linear(4, 3, key=keys[depth])

    def __call__(self, x):
        params, static = eqx.partition(self.layers, eqx.is_array)

        def step(h, p):
            return h + jnp.tanh(eqx.combine(p, static)(h)), None

        h, _ = jax.lax.scan(step, x, params)
        return self.head(h)


def build_scanned():
    return Scanned(jax.random.key(0)), jax.random.normal(jax.random.key(1), (2, 4))

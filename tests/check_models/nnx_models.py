"""Flax NNX: blocks in an ``nnx.List`` (the Flax docs' habit), BatchNorm and Dropout in eval
mode."""

import jax.numpy as jnp
import numpy as np
from flax import nnx


class Block(nnx.Module):
    def __init__(self, width, *, rngs):
        self.linear = nnx.Linear(width, width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return x + self.drop(jnp.tanh(self.norm(self.linear(x))))


class Model(nnx.Module):
    def __init__(self, *, rngs):
        self.embed = nnx.Linear(3, 4, rngs=rngs)
        self.blocks = nnx.List([Block(4, rngs=rngs) for _ in range(3)])
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def build():
    model = Model(rngs=nnx.Rngs(0))
    model.eval()
    return model, jnp.array([[0.3, -1.0, 0.5], [1.0, 0.2, -0.4]])


def build_train_mode():
    """The same model as the Flax docs leave it after construction: BatchNorm on batch statistics
    (updating its running averages) and Dropout drawing masks from its own Rngs stream."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)), jnp.float32)
    return Model(rngs=nnx.Rngs(0)), x


class Mixer(nnx.Module):
    """A token-mixing block, as attention is: each token's output depends on every token."""

    def __init__(self, tokens, *, rngs):
        self.mix = nnx.Linear(tokens, tokens, rngs=rngs)

    def __call__(self, x):  # x: (..., tokens, width)
        return x + jnp.swapaxes(self.mix(jnp.swapaxes(x, -1, -2)), -1, -2)


class SequenceModel(nnx.Module):
    def __init__(self, *, rngs):
        self.blocks = nnx.List([Mixer(5, rngs=rngs) for _ in range(2)])

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def build_one_sequence():
    """One (tokens, width) sequence without a batch axis, in inference mode: check reads x's first
    axis as the batch, so the tokens would be split into examples."""
    model = SequenceModel(rngs=nnx.Rngs(0))
    model.eval()
    return model, jnp.asarray(np.random.default_rng(1).standard_normal((5, 3)), jnp.float32)


def build_sequential():
    """An nnx.Sequential of layers and activations, as the NNX docs write a small MLP."""
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(
        nnx.Linear(3, 4, rngs=rngs), nnx.tanh, nnx.Linear(4, 4, rngs=rngs), nnx.tanh
    )
    return model, jnp.asarray(np.random.default_rng(2).standard_normal((2, 3)), jnp.float32)

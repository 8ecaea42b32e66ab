"""Flax linen: a ResNet-ish model in the style of the Flax examples (BatchNorm, a stride-2
projection block, a ``train`` argument without a default) and a pre-LN transformer."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class ResNetBlock(nn.Module):
    filters: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = nn.relu(norm()(nn.Conv(self.filters, (3, 3), self.strides)(x)))
        y = norm()(nn.Conv(self.filters, (3, 3))(y))
        residual = x
        if residual.shape != y.shape:
            residual = norm()(nn.Conv(self.filters, (1, 1), self.strides, name="conv_proj")(x))
        return nn.relu(residual + y)


class ResNet(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.Conv(2, (3, 3), name="conv_init")(x))
        x = ResNetBlock(2)(x, train)
        x = ResNetBlock(4, strides=(2, 2))(x, train)
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


# Initialised under jit, once: an eager init runs op by op (seconds for a transformer).
_RESNET = ResNet()
_RESNET_INIT = jax.jit(_RESNET.init, static_argnames="train")


def build_resnet():
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 1))
    return _RESNET, _RESNET_INIT(jax.random.key(0), x, train=False), x


class PreLNBlock(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic: bool):
        y = nn.MultiHeadDotProductAttention(num_heads=2, dropout_rate=0.1)(
            nn.LayerNorm()(x), deterministic=deterministic
        )
        x = x + nn.Dropout(0.1)(y, deterministic=deterministic)
        y = nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(2 * x.shape[-1])(nn.LayerNorm()(x))))
        return x + nn.Dropout(0.1)(y, deterministic=deterministic)


class Transformer(nn.Module):
    vocab: int = 5
    width: int = 4

    def setup(self):
        self.embed = nn.Embed(self.vocab, self.width)
        self.blocks = [PreLNBlock() for _ in range(2)]
        self.norm = nn.LayerNorm()

    def __call__(self, tokens, deterministic: bool = False):
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h, deterministic)
        return self.embed.attend(self.norm(h))  # logits over the vocabulary


_TRANSFORMER = Transformer()
_TRANSFORMER_INIT = jax.jit(_TRANSFORMER.init, static_argnames="deterministic")


def build_transformer():
    tokens = jnp.array([[0, 3, 1], [4, 2, 2]])
    return _TRANSFORMER, _TRANSFORMER_INIT(jax.random.key(0), tokens, deterministic=True), tokens


def build_transformer_labels():
    """With integer labels: the next token."""
    model, variables, tokens = build_transformer()
    return model, variables, tokens, jnp.roll(tokens, -1, axis=1)


def build_dense():
    """One Dense layer: no blocks to find."""
    model = nn.Dense(2)
    x = jnp.ones((3, 2))
    return model, model.init(jax.random.key(0), x), x

"""Writes docs/your_model.png: per-block gradient norms of pre-LN and post-LN transformers at init.

The figure of the README's "Your own model" section and of notebooks/06_your_model.ipynb: a
small linen transformer (8 tokens × 16 wide, 6 blocks, 2 heads, MSE against random targets),
gradients of each block's weights grouped by ``jf.gradient_stats(..., group_by=r"block_\\d+")``,
median and range over 64 initialisations. Run from the repository root:
``python docs/make_your_model_figure.py`` (about a minute on a CPU).
"""

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxflow as jf
from jaxflow.plotting import new_axes, save_figure

TOKENS, WIDTH, DEPTH, SEEDS = 8, 16, 6, 64


class Block(nn.Module):
    post_ln: bool = False

    @nn.compact
    def __call__(self, x):
        attention = nn.MultiHeadDotProductAttention(num_heads=2, deterministic=True)
        mlp = lambda h: nn.Dense(WIDTH)(nn.gelu(nn.Dense(4 * WIDTH)(h)))  # noqa: E731
        if self.post_ln:
            x = nn.LayerNorm()(x + attention(x))
            return nn.LayerNorm()(x + mlp(x))
        x = x + attention(nn.LayerNorm()(x))
        return x + mlp(nn.LayerNorm()(x))


class Transformer(nn.Module):
    post_ln: bool = False

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(WIDTH, name="embed")(x)
        for i in range(DEPTH):
            h = Block(self.post_ln, name=f"block_{i}")(h)
        if not self.post_ln:
            h = nn.LayerNorm(name="final_norm")(h)
        return nn.Dense(WIDTH, name="head")(h)


tokens = jax.random.normal(jax.random.key(3), (16, TOKENS, WIDTH))
targets = jax.random.normal(jax.random.key(4), (16, TOKENS, WIDTH))


@functools.partial(jax.jit, static_argnums=0)
@functools.partial(jax.vmap, in_axes=(None, 0))
def block_gradient_norms(post_ln, key):
    model = Transformer(post_ln)
    params = model.init(key, tokens[:1])["params"]
    loss = lambda p: jnp.mean((model.apply({"params": p}, tokens) - targets) ** 2)  # noqa: E731
    stats = jf.gradient_stats(jax.grad(loss)(params), group_by=r"block_\d+")
    rows = [i for i, name in enumerate(stats.layer_names) if name.startswith("block_")]
    return stats.layer_norms[np.array(rows)]


def main():
    keys = jax.random.split(jax.random.key(0), SEEDS)
    ax = new_axes(figsize=(7.0, 4.0))
    blocks = np.arange(1, DEPTH + 1)
    for post_ln, marker, label in ((False, "o", "pre-LN"), (True, "s", "post-LN")):
        rows = np.asarray(block_gradient_norms(post_ln, keys))
        median = np.median(rows, axis=0)
        ax.semilogy(blocks, median, marker + "-", label=f"{label} (median of {SEEDS} inits)")
        ax.fill_between(blocks, *np.percentile(rows, [10, 90], axis=0), alpha=0.2)
        print(f"{label}: last/first block = {np.median(rows[:, -1] / rows[:, 0]):.2f}")
    ax.set_xticks(blocks)
    ax.set_xlabel("block l (l = 6 next to the output)")
    ax.set_ylabel("‖∂L/∂θ_l‖ of block l's weights")
    ax.set_title(f"Transformer ({TOKENS} tokens × {WIDTH} wide) at init: gradient norm per block"
                 "\nband: 10th–90th percentile over inits", fontsize=10)
    ax.legend()
    path = pathlib.Path(__file__).resolve().parent / "your_model.png"
    print(save_figure(ax, path, overwrite=True))


if __name__ == "__main__":
    main()

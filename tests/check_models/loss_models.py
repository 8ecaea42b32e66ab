"""A loss function with its parameters and batch (plain JAX), and builds that go wrong."""

import jax.numpy as jnp
import numpy as np


def _weights():
    rng = np.random.default_rng(0)
    return {
        "layers_0": {"w": jnp.asarray(rng.normal(size=(3, 4)) / 2, jnp.float32)},
        "layers_1": {"w": jnp.asarray(rng.normal(size=(4, 2)) / 2, jnp.float32)},
    }


def loss_fn(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["layers_0"]["w"])
    return jnp.mean(jnp.square(h @ params["layers_1"]["w"] - y))


def batch():
    rng = np.random.default_rng(1)
    return (
        jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        jnp.asarray(rng.normal(size=(5, 2)), jnp.float32),
    )


def build():
    return {"loss_fn": loss_fn, "params": _weights(), "batch": batch()}


def build_raises():
    raise RuntimeError("no data\nsecond line")


def build_wrong():
    return {"model": 3}


def build_scalar_loss_wrong():
    return {
        "loss_fn": lambda p, b: b[0] @ p["layers_0"]["w"],
        "params": _weights(),
        "batch": batch(),
    }

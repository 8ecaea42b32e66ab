"""Models: scanned = unrolled, compile size flat in depth, depth-independent initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from helpers import NP_ACTIVATIONS, as64, tol

WIDTH = 8


def _unrolled_mlp(params, x, activation):
    """A plain Python loop over layers in float64 NumPy (independent of nn.scan)."""
    phi = NP_ACTIVATIONS[activation][0]
    p = as64(params)
    h = np.asarray(x, np.float64)
    if "input" in p:
        h = h @ p["input"]["kernel"] + p["input"]["bias"]
    blocks = p["blocks"]["Dense_0"]
    for kernel, bias in zip(blocks["kernel"], blocks["bias"], strict=True):
        h = phi(h @ kernel + bias)
    return h @ p["readout"]["kernel"] + p["readout"]["bias"]


def _unrolled_residual(variables, x, activation, norm):
    phi = NP_ACTIVATIONS[activation][0]
    p = as64(variables["params"])
    stats = as64(variables.get("batch_stats", {}))
    h = np.asarray(x, np.float64)
    b = p["blocks"]
    for l in range(b["Dense_0"]["kernel"].shape[0]):
        u = h @ b["Dense_0"]["kernel"][l] + b["Dense_0"]["bias"][l]
        if norm == "layer":
            ln = b["LayerNorm_0"]
            mu, var = u.mean(-1, keepdims=True), u.var(-1, keepdims=True)
            u = (u - mu) / np.sqrt(var + 1e-6) * ln["scale"][l] + ln["bias"][l]
        elif norm == "batch":
            bn, st = b["BatchNorm_0"], stats["blocks"]["BatchNorm_0"]
            u = (u - st["mean"][l]) / np.sqrt(st["var"][l] + 1e-5) * bn["scale"][l] + bn["bias"][l]
        h = h + phi(u) @ b["Dense_1"]["kernel"][l] + b["Dense_1"]["bias"][l]
    return h @ p["readout"]["kernel"] + p["readout"]["bias"]


def _randomise(variables, key):
    """Non-trivial norm parameters and running statistics (the defaults are 1 and 0)."""
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    new = [
        leaf + 0.1 * jax.random.uniform(k, leaf.shape, leaf.dtype)
        if leaf.ndim and leaf.shape[0]
        else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, new)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("in_dim", [None, 5])
def test_scanned_mlp_equals_unrolled(activation, in_dim):
    model = jf.mlp(6, WIDTH, activation=activation, init="xavier", in_dim=in_dim, out_dim=3)
    x = jax.random.normal(jax.random.key(1), (4, in_dim or WIDTH))
    variables = model.init(jax.random.key(0), x)
    np.testing.assert_allclose(
        model.apply(variables, x), _unrolled_mlp(variables["params"], x, activation),
        rtol=tol("float32", "model"), atol=tol("float32", "model"),
    )  # fmt: skip


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_scanned_residual_equals_unrolled(norm):
    model = jf.residual_stack(5, WIDTH, activation="tanh", init="xavier", norm=norm, out_dim=2)
    x = jax.random.normal(jax.random.key(1), (3, WIDTH))
    variables = _randomise(model.init(jax.random.key(0), x), jax.random.key(2))
    np.testing.assert_allclose(
        model.apply(variables, x), _unrolled_residual(variables, x, "tanh", norm),
        rtol=tol("float32", "model"), atol=tol("float32", "model"),
    )  # fmt: skip


def test_float64_model():
    with jax.enable_x64(True):
        model = jf.mlp(4, WIDTH, activation="tanh", init="he", param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(1), (WIDTH,), jnp.float64)
        variables = model.init(jax.random.key(0), x)
        y = model.apply(variables, x)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(
            y, _unrolled_mlp(variables["params"], x, "tanh"), rtol=tol("float64", "model")
        )


@pytest.mark.parametrize("builder", [jf.mlp, jf.residual_stack])
def test_lowered_program_does_not_grow_with_depth(builder):
    x = jnp.ones(WIDTH)

    def size(depth):
        model = builder(depth, WIDTH)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        return len(jax.jit(model.apply).lower(variables, x).as_text())

    assert size(256) <= 1.2 * size(4)


_BUILDS = [
    lambda d: jf.mlp(d, WIDTH, activation="tanh", init="orthogonal"),
    lambda d: jf.mlp(d, WIDTH, init=(1.5, 0.1), in_dim=3),
    lambda d: jf.residual_stack(d, WIDTH, norm="batch", init="xavier"),
]


# Every model under jax's default key derivation, and one under each setting of
# jax_threefry_partitionable in the fast suite (each case ~2 s of eager initialisation); the other
# two pairs in the slow pass.
@pytest.mark.parametrize(
    "build, partitionable",
    [
        pytest.param(b, p, marks=() if p == jax.config.jax_threefry_partitionable or i == 0
                     else pytest.mark.slow, id=f"{i}-{p}")
        for i, b in enumerate(_BUILDS)
        for p in (True, False)
    ],
)  # fmt: skip
def test_block_init_does_not_depend_on_depth(build, partitionable):
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        x = jnp.ones(build(1).input_dim)
        shallow = build(3).init(jax.random.key(7), x)
        deep = build(11).init(jax.random.key(7), x)
    finally:
        jax.config.update("jax_threefry_partitionable", previous)
    for path, leaf in jax.tree_util.tree_leaves_with_path(shallow):
        other = deep
        for key in path:
            other = other[key.key]
        if "blocks" in jax.tree_util.keystr(path):
            np.testing.assert_array_equal(leaf, other[:3])
        else:
            np.testing.assert_array_equal(leaf, other)
    kernels = deep["params"]["blocks"]["Dense_0"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # and the layers still differ from each other


def test_notes_deepnet_shape():
    """The notes' DeepNet(depth=10): 10 × (Linear(64, 64) + ReLU) + Linear(64, 1)."""
    model = jf.mlp(10, 64, activation="relu", init="he")
    variables = model.init(jax.random.key(0), jnp.ones((32, 64)))
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {
        "blocks": {"Dense_0": {"kernel": (10, 64, 64), "bias": (10, 64)}},
        "readout": {"kernel": (64, 1), "bias": (1,)},
    }
    assert model.apply(variables, jnp.ones((32, 64))).shape == (32, 1)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: jf.mlp(0, 8), "depth=0"),
        (lambda: jf.mlp(2.5, 8), "depth=2.5"),
        (lambda: jf.mlp(3, 0), "width=0"),
        (lambda: jf.mlp(3, 8, in_dim=0), "in_dim=0"),
        (lambda: jf.mlp(3, 8, activation="relu6"), "activation='relu6'.*valid names"),
        (lambda: jf.mlp(3, 8, init="glorot_truncated"), "init='glorot_truncated'"),
        (lambda: jf.residual_stack(3, 8, norm="group"), "norm='group'.*'layer', 'batch'"),
        (lambda: jf.residual_stack(3, 8, branch_depth=0), "branch_depth=0"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_input_size_mismatch_is_named():
    model = jf.mlp(3, WIDTH, in_dim=5)
    with pytest.raises(ValueError, match=r"x has shape \(8,\); its last dimension must be .* 5"):
        model.init(jax.random.key(0), jnp.ones(WIDTH))

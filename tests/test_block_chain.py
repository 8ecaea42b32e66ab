"""jf.block_chain on models written the way their frameworks' users write them: a linen ResNet
(inference-mode BatchNorm, a stride-2 projection block, conv feature maps), a linen pre-LN
transformer (a (tokens, width) state, attention, dropout off), an NNX model with ``nnx.List``
blocks, Equinox models, and plain functions with a change of width.

References are independent of the library's capture: the composed blocks are called through
the frameworks' own APIs (linen ``apply`` with a ``method``, NNX modules, Equinox modules) and
differentiated with ``jax.jacrev``; the per-block Jacobians of the plain functions are written
out in float64 NumPy.
"""

from __future__ import annotations

import functools

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxflow as jf
from jaxflow import blocks as blocks_module
from tests.helpers import sv_error, tol

F32 = np.float32


def _flat_jacobian(fn, h):
    """∂fn(h)/∂h as an (out size, in size) matrix, by jax.jacrev of the composed function."""
    flat = lambda v: jnp.reshape(fn(jnp.reshape(v, h.shape)), (-1,))  # noqa: E731
    return np.asarray(jax.jit(jax.jacrev(flat))(jnp.reshape(h, (-1,))), np.float64)


def _relative_to_max(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- (1) linen ResNet: inference-mode BatchNorm, a stride-2 projection block -------------------


class ResNetBlock(nn.Module):
    """The Flax examples' ImageNet ResNetBlock, small."""

    filters: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        residual = x
        y = nn.Conv(self.filters, (3, 3), self.strides, padding=[(1, 1), (1, 1)])(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.filters, (3, 3), padding=[(1, 1), (1, 1)])(y)
        y = norm()(y)
        if residual.shape != y.shape:
            residual = nn.Conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = norm()(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    def setup(self):
        self.conv_init = nn.Conv(4, (3, 3), padding="SAME")
        self.blocks = [ResNetBlock(4), ResNetBlock(8, strides=(2, 2))]
        self.head = nn.Dense(3)

    def __call__(self, x, train: bool = True):
        x = nn.relu(self.conv_init(x))
        for block in self.blocks:
            x = block(x, train=train)
        return self.head(jnp.mean(x, axis=(1, 2)))


def _perturbed_batch_stats(variables, seed):
    """Non-trivial running statistics, so inference-mode BatchNorm is not the identity."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        if path[-1].key == "mean":
            return jnp.asarray(rng.normal(0.0, 0.1, a.shape), a.dtype)
        return jnp.asarray(rng.uniform(0.5, 1.5, a.shape), a.dtype)

    stats = jax.tree_util.tree_map_with_path(draw, variables["batch_stats"])
    return {**variables, "batch_stats": stats}


@pytest.fixture(scope="module")
def resnet():
    model = ResNet()
    x = jax.random.normal(jax.random.key(1), (1, 6, 6, 3))
    variables = _perturbed_batch_stats(
        jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x), 0
    )
    chain = jf.block_chain(model, variables, x, blocks=ResNetBlock, batch_axis=0, train=False)
    return model, variables, x, chain


def test_resnet_blocks_are_captured_with_their_shapes(resnet):
    *_, chain = resnet
    assert chain.names == ("blocks_0", "blocks_1")
    assert chain.shapes == ((6, 6, 4), (6, 6, 4), (3, 3, 8))
    assert chain.method == "dense"
    assert [J.shape for J in chain.layers] == [(1, 144, 144), (1, 72, 144)]
    assert bool(chain.finite) and bool(np.all(chain.connected))


def test_resnet_products_equal_jacrev_of_the_composed_blocks(resnet):
    model, variables, x, chain = resnet
    h0 = model.apply(variables, x, method=lambda m, x: nn.relu(m.conv_init(x)))

    def upto(l):
        def composed(h):
            return model.apply(
                variables,
                h,
                method=lambda m, h: _compose(
                    [lambda h, b=b: b(h, train=False) for b in m.blocks[:l]], h
                ),
            )

        return composed

    for l in (1, 2):
        reference = _flat_jacobian(upto(l), h0)
        assert _relative_to_max(chain.products[l - 1][0], reference) < tol(F32, "block_product")
    # The per-block Jacobians, multiplied in float64 NumPy, give the same P_2.
    h1 = model.apply(variables, h0, method=lambda m, h: m.blocks[0](h, train=False))
    J1 = _flat_jacobian(upto(1), h0)
    J2 = _flat_jacobian(
        lambda h: model.apply(variables, h, method=lambda m, h: m.blocks[1](h, train=False)), h1
    )
    assert _relative_to_max(chain.layers[1][0], J2) < tol(F32, "jacobian") * 10
    assert _relative_to_max(chain.products[1][0], J2 @ J1) < tol(F32, "block_product")
    assert sv_error(chain.product_singular_values[1][0], J2 @ J1) < tol(F32, "svd")
    assert sv_error(chain.layer_singular_values[1][0], J2) < tol(F32, "svd")


def _compose(fns, h):
    for f in fns:
        h = f(h)
    return h


def test_linen_selection_by_names_gives_the_same_chain(resnet):
    # (selection by a regex is the transformer's; by a type the fixture's)
    model, variables, x, chain = resnet
    other = jf.block_chain(
        model,
        variables,
        x,
        blocks=["blocks_0", "blocks_1"],
        batch_axis=0,
        train=False,
    )
    assert other.names == chain.names
    np.testing.assert_array_equal(other.products[1], chain.products[1])


def test_linen_errors_name_what_is_available(resnet):
    model, variables, x, _ = resnet
    with pytest.raises(ValueError, match=r"matched no block.*'blocks_1/conv_proj'"):
        jf.block_chain(model, variables, x, blocks="nothing", batch_axis=0, train=False)
    with pytest.raises(ValueError, match="needs a selection.*'blocks_0'"):
        jf.block_chain(model, variables, x, batch_axis=0, train=False)
    with pytest.raises(ValueError, match="needs its variables"):
        jf.block_chain(model, None, x, blocks=ResNetBlock, batch_axis=0, train=False)
    # One (H, W, C) example through a model whose readout needs a batch axis: the model's own
    # error, with a note on how it was called and what to pass instead.
    with pytest.raises(Exception) as info:
        jf.block_chain(model, variables, x[0], blocks=ResNetBlock, train=False)
    assert "takes x[None] with batch_axis=0" in "".join(getattr(info.value, "__notes__", []))
    with pytest.raises(ValueError, match="batch_axis=1 is not allowed"):
        jf.block_chain(model, variables, x, blocks=ResNetBlock, batch_axis=1)


def test_a_repeated_eager_call_does_not_trace_again(resnet):
    model, variables, x, _ = resnet
    before = blocks_module.TRACES["linen"]
    for seed in (1, 2):  # new values, same shapes
        jf.block_chain(
            model,
            _perturbed_batch_stats(variables, seed),
            x + seed,
            blocks=ResNetBlock,
            batch_axis=0,
            train=False,
        )
    assert blocks_module.TRACES["linen"] == before  # the fixture's call compiled it


# --- (2) linen pre-LN transformer: a (tokens, width) state --------------------------------------


class PreLNBlock(nn.Module):
    heads: int = 2
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, deterministic: bool):
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dropout_rate=self.dropout)(
            nn.LayerNorm()(x), deterministic=deterministic
        )
        x = x + nn.Dropout(self.dropout)(y, deterministic=deterministic)
        y = nn.Dense(2 * x.shape[-1])(nn.LayerNorm()(x))
        y = nn.Dense(x.shape[-1])(nn.gelu(y))
        return x + nn.Dropout(self.dropout)(y, deterministic=deterministic)


class Transformer(nn.Module):
    width: int = 8
    depth: int = 2

    def setup(self):
        self.embed = nn.Dense(self.width)
        self.blocks = [PreLNBlock() for _ in range(self.depth)]
        self.norm = nn.LayerNorm()

    def __call__(self, x, deterministic: bool = False):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, deterministic)
        return self.norm(h)


@pytest.fixture(scope="module")
def transformer():
    model = Transformer()
    x = jax.random.normal(jax.random.key(2), (4, 5))  # 4 tokens: one example, not a batch
    variables = jax.jit(functools.partial(model.init, deterministic=True))(jax.random.key(0), x)
    chain = jf.block_chain(model, variables, x, blocks=r"blocks_\d+", deterministic=True)
    return model, variables, x, chain


def test_a_token_state_is_one_example(transformer):
    *_, chain = transformer
    assert chain.shapes == ((4, 8),) * 3
    assert [J.shape for J in chain.layers] == [(32, 32)] * 2
    assert chain.to_jacobian_chain().products.shape == (2, 32, 32)


def test_transformer_products_equal_jacrev_of_the_composed_blocks(transformer):
    model, variables, x, chain = transformer
    h0 = model.apply(variables, x, method=lambda m, x: m.embed(x))
    for l in (2,):  # P_L
        reference = _flat_jacobian(
            lambda h: model.apply(
                variables,
                h,
                method=lambda m, h: _compose([lambda h, b=b: b(h, True) for b in m.blocks[:l]], h),
            ),
            h0,
        )
        assert _relative_to_max(chain.products[l - 1], reference) < tol(F32, "block_product")
        assert sv_error(chain.product_singular_values[l - 1], reference) < tol(F32, "svd")


# --- (3) NNX: blocks in an nnx.List, a change of width, dropout and BatchNorm in eval mode -----


class NNXBlock(nnx.Module):
    def __init__(self, d_in, d_out, *, rngs):
        self.linear = nnx.Linear(d_in, d_out, rngs=rngs)
        self.norm = nnx.BatchNorm(d_out, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(jnp.tanh(self.norm(self.linear(x))))


class NNXModel(nnx.Module):
    def __init__(self, *, rngs):
        self.embed = nnx.Linear(3, 6, rngs=rngs)
        self.blocks = nnx.List([NNXBlock(6, 6, rngs=rngs), NNXBlock(6, 4, rngs=rngs)])
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def _numpy(a):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a = jax.random.key_data(a)
    return np.asarray(a)


@pytest.fixture(scope="module")
def nnx_model():
    model = NNXModel(rngs=nnx.Rngs(0))
    model.eval()
    x = jnp.array([0.3, -1.0, 0.5])
    before = jax.tree.map(_numpy, nnx.state(model))
    chain = jf.block_chain(model, None, x, blocks="blocks")
    return model, x, chain, before


def test_nnx_list_blocks_equal_jacrev_and_leave_the_model_alone(nnx_model):
    model, x, chain, before = nnx_model
    assert chain.names == ("blocks.0", "blocks.1")
    assert chain.shapes == ((6,), (6,), (4,))
    h0 = model.embed(x)
    reference = _flat_jacobian(lambda h: model.blocks[1](model.blocks[0](h)), h0)
    assert _relative_to_max(chain.products[1], reference) < tol(F32, "block_product")
    assert sv_error(chain.product_singular_values[1], reference) < tol(F32, "svd")
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(_numpy, nnx.state(model)), before)


def test_nnx_paths_and_sequential(nnx_model):
    model, x, chain, _ = nnx_model
    by_paths = jf.block_chain(model, None, x, blocks=["blocks.0", "blocks.1"])
    np.testing.assert_array_equal(by_paths.products[1], chain.products[1])
    with pytest.raises(ValueError, match=r"no attribute path 'layers'.*'blocks.0'"):
        jf.block_chain(model, None, x, blocks="layers")
    sequential = nnx.Sequential(model.blocks[0], model.blocks[1])
    seq_chain = jf.block_chain(sequential, None, model.embed(x))
    assert _relative_to_max(seq_chain.products[1], chain.products[1]) < tol(F32, "block_product")


def test_blocks_that_mix_the_batch_or_draw_random_numbers_are_refused():
    # With batch_axis=0 each block's Jacobian is taken one example at a time; a block whose
    # output depends on the other examples has no such Jacobian, and a batch of one would hide it.
    centred = [lambda h: h - jnp.mean(h, axis=0, keepdims=True), jnp.tanh]
    batch = jnp.array([[0.3, -1.0], [1.0, 0.5]])
    with pytest.raises(ValueError, match=r"\['block_0'\] do not give their forward-pass output"):
        jf.block_chain(centred, None, batch, batch_axis=0)
    # As one state (batch_axis=None) the same function is fine: P = (I ⊗ diag tanh') (C ⊗ I)
    # with C = I − 11ᵀ/2 the centring over the two examples, written out in NumPy float64.
    chain = jf.block_chain(centred, None, batch)
    b = np.asarray(batch, np.float64)
    centring = np.kron(np.eye(2) - 0.5, np.eye(2))
    z = (b - b.mean(0)).reshape(-1)
    expected = np.diag(1 - np.tanh(z) ** 2) @ centring
    assert _relative_to_max(chain.products[1], expected) < tol(F32, "block_product")
    # A forward pass that overflows or carries a NaN is reported by `finite`, not refused.
    overflowing = jf.block_chain([lambda h: h * 1e30, lambda h: h * 1e30], None, jnp.ones(3))
    assert not bool(overflowing.finite) and np.asarray(overflowing.reproduced).all()
    with_nan = jf.block_chain([jnp.tanh, jnp.tanh], None, jnp.array([1.0, jnp.nan, 2.0]))
    assert not bool(with_nan.finite) and np.asarray(with_nan.reproduced).all()
    # NNX: BatchNorm on batch statistics and Dropout drawing masks (the model as constructed)
    model = NNXModel(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        jf.block_chain(model, None, jnp.ones((2, 3)) * jnp.array([[1.0], [-0.5]]), blocks="blocks",
                       batch_axis=0)  # fmt: skip


# --- (4) Equinox: a residual MLP; matrix-free estimates against the exact spectra --------------


class EqxResidual(eqx.Module):
    linear: eqx.nn.Linear

    def __call__(self, x):
        return x + jnp.tanh(self.linear(x))


class EqxModel(eqx.Module):
    layers: list

    def __init__(self, width, depth, key):
        self.layers = [
            EqxResidual(eqx.nn.Linear(width, width, key=k)) for k in jax.random.split(key, depth)
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.fixture(scope="module")
def equinox_model():
    model = EqxModel(12, 3, jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (12,))
    return model, x, jf.block_chain(model, None, x, blocks="layers")


def test_equinox_products_equal_jacrev(equinox_model):
    model, x, dense = equinox_model
    assert dense.names == ("layers.0", "layers.1", "layers.2")
    reference = _flat_jacobian(model, x)
    assert _relative_to_max(dense.products[-1], reference) < tol(F32, "block_product")
    assert sv_error(dense.product_singular_values[-1], reference) < tol(F32, "svd")


def test_a_list_of_equinox_modules_is_called_in_order(equinox_model):
    model, x, dense = equinox_model
    listed = jf.block_chain(model.layers, None, x)
    assert listed.names == ("block_0", "block_1", "block_2")
    assert _relative_to_max(listed.products[-1], dense.products[-1]) < tol(F32, "block_product")
    before = jf.blocks.TRACES["equinox"]
    jf.block_chain(model.layers, None, x + 1.0)  # arrays are traced: no new compilation
    assert jf.blocks.TRACES["equinox"] == before


def test_equinox_mlp_layers_do_not_feed_each_other():
    mlp = eqx.nn.MLP(4, 4, 4, 2, key=jax.random.key(0))  # activations sit between its layers
    with pytest.raises(ValueError, match="not the next block's input"):
        jf.block_chain(mlp, None, jnp.ones(4), blocks="layers")
    with pytest.raises(ValueError, match="blocks=None needs a list"):
        jf.block_chain(mlp, None, jnp.ones(4))


class _LinenScanBlock(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return h + jnp.tanh(nn.Dense(4)(h)), None


class _LinenScanned(nn.Module):
    @nn.compact
    def __call__(self, x):
        scan = nn.scan(
            _LinenScanBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
        )
        h, _ = scan(name="layers")(x, None)
        return h


class _NnxScanBlock(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, h):
        return h + jnp.tanh(self.linear(h))


class _NnxScanned(nnx.Module):
    """The Flax NNX docs' scan over layers: nnx.vmap builds the stack, nnx.scan applies it."""

    def __init__(self, rngs):
        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs):
            return _NnxScanBlock(rngs)

        self.layers = create(rngs)

    def __call__(self, h):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def forward(h, block):
            return block(h)

        return forward(h, self.layers)


class _EqxScanned(eqx.Module):
    layers: eqx.nn.Linear

    def __init__(self, key):
        self.layers = eqx.filter_vmap(lambda k: eqx.nn.Linear(4, 4, key=k))(
            jax.random.split(key, 3)
        )

    def __call__(self, h):
        params, static = eqx.partition(self.layers, eqx.is_array)
        return jax.lax.scan(lambda h, p: (eqx.combine(p, static)(h), None), h, params)[0]


def test_a_scanned_stack_is_named_as_one_with_what_to_call_instead():
    # Its layers are never called one by one, so no capture can record them: say what it is
    # and how to measure it (a layer function over the stacked parameters), for each framework.
    h0 = jnp.ones(4)
    linen = _LinenScanned()
    cases = [
        (linen, linen.init(jax.random.key(0), h0), "layers"),
        (_NnxScanned(nnx.Rngs(0)), None, "layers"),
        (_EqxScanned(jax.random.key(0)), None, ["layers"]),
    ]
    for model, variables, blocks in cases:
        with pytest.raises(ValueError, match=r"'layers' looks like a scanned stack of 3 layers"):
            jf.block_chain(model, variables, h0, blocks=blocks)


class _X0Block(nn.Module):
    @nn.compact
    def __call__(self, h, x0):
        return h + jnp.tanh(nn.Dense(4)(h + 0.5 * x0))


class _X0Net(nn.Module):
    """modded-nanogpt's pattern: the stem's output x0 goes to every block beside the state."""

    @nn.compact
    def __call__(self, x):
        h = x0 = nn.Dense(4, name="stem")(x)
        for i in range(3):
            h = _X0Block(name=f"block_{i}")(h, x0)
        return h


def test_a_block_that_also_takes_an_earlier_state_is_refused():
    # Held fixed, x0 would cut the paths through it: P_L would not be ∂h_L/∂h_0.
    model, x = _X0Net(), jnp.ones(3)
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"'block_0' takes, besides its state, the input of"):
        jf.block_chain(model, variables, x, blocks=r"block_\d")


class _HalfBlock(nn.Module):
    dtype: object = jnp.bfloat16

    @nn.compact
    def __call__(self, h):
        return h + jnp.tanh(nn.Dense(6, dtype=self.dtype)(h))


class _HalfNet(nn.Module):
    """The Flax ImageNet example's mixed precision: bfloat16 compute, float32 parameters."""

    dtype: object = jnp.bfloat16
    remat: bool = False

    @nn.compact
    def __call__(self, x):
        block = nn.remat(_HalfBlock) if self.remat else _HalfBlock
        for i in range(3):
            x = block(self.dtype, name=f"block_{i}")(x)
        return x


def _np_half_net(variables, x):
    """σ(P_3) of _HalfNet in float64 NumPy."""
    h, P = np.asarray(x, np.float64), np.eye(6)
    for i in range(3):
        p = variables["params"][f"block_{i}"]["Dense_0"]
        w, b = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
        z = h @ w + b
        J = np.eye(6) + (1 - np.tanh(z) ** 2)[:, None] * w.T
        P, h = J @ P, h + np.tanh(z)
    return np.linalg.svd(P, compute_uv=False)


def test_a_bfloat16_model_is_measured_in_float32_against_float64():
    x = jax.random.normal(jax.random.key(1), (6,))
    variables = _HalfNet().init(jax.random.key(0), x)
    chain = jf.block_chain(_HalfNet(), variables, x, blocks=r"block_\d")
    assert chain.product_singular_values[-1].dtype == jnp.float32
    # bfloat16 rounding (8 bits) bounds the difference from float64 on the same weights.
    expected = _np_half_net(variables, x)
    np.testing.assert_allclose(chain.product_singular_values[-1], expected, rtol=3e-2, atol=3e-2)
    # A batch, example by example: bfloat16's own rounding is not a difference.
    batch = jf.block_chain(_HalfNet(), variables, x[None], blocks=r"block_\d", batch_axis=0)
    np.testing.assert_allclose(batch.product_singular_values[-1][0], expected, rtol=3e-2, atol=3e-2)


def test_blocks_under_nn_remat_are_measured():
    # The Flax examples' BlockCls = nn.remat(Block): recomputation changes memory, not values.
    model = _HalfNet(jnp.float32, remat=True)
    x = jax.random.normal(jax.random.key(1), (6,))
    variables = model.init(jax.random.key(0), x)
    checkpoint = jax.checkpoint
    chain = jf.block_chain(model, variables, x, blocks=r"block_\d")
    np.testing.assert_allclose(
        chain.product_singular_values[-1], _np_half_net(variables, x), rtol=tol(F32, "svd")
    )
    from flax.core import lift

    assert lift.jax is jax and jax.checkpoint is checkpoint  # nothing left replaced


class _NnxWrapped(nnx.Module):
    """Blocks handed to nnx.remat inside the forward pass, module and all."""

    def __init__(self, rngs):
        self.blocks = nnx.List([_NnxScanBlock(rngs) for _ in range(2)])

    def __call__(self, h):
        for block in self.blocks:
            h = nnx.remat(lambda b, h: b(h))(block, h)
        return h


def test_blocks_passed_through_an_nnx_transformation_are_named():
    with pytest.raises(ValueError, match=r"runs inside a transformation in the model"):
        jf.block_chain(_NnxWrapped(nnx.Rngs(0)), None, jnp.ones(4), blocks="blocks")


class _Two(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = _HalfBlock(jnp.float32, name=f"block_{i}")(x)
        return x


_TWO_VARIABLES = _Two().init(jax.random.key(0), jnp.ones(6))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: jf.block_chain([], None, jnp.ones(3)), ValueError, "model is an empty list"),
        (
            lambda: jf.block_chain(_Two(), _TWO_VARIABLES, jnp.ones(6), blocks=3),
            TypeError,
            "blocks=3 is not allowed",
        ),
        (
            lambda: jf.block_chain([jnp.tanh], None, jnp.arange(3)),
            TypeError,
            "'block_0''s input has dtype int32; a Jacobian needs real floating-point",
        ),
        (
            lambda: jf.jacobian_chain(
                lambda w, h: jnp.tanh(w @ h), jnp.ones((2, 3, 3)), jnp.ones(3, jnp.complex64)
            ),
            TypeError,
            "h0 has dtype complex64; a Jacobian needs a real floating-point h0",
        ),
        (
            lambda: jf.block_chain(
                _Two(), _TWO_VARIABLES["params"], jnp.ones(6), blocks=r"block_\d"
            ),
            ValueError,
            r"not variables\['params'\]",
        ),
        (
            lambda: jf.block_chain(
                _Two(), _TWO_VARIABLES, jnp.ones(6), blocks=r"block_\d", method=_Two.__call__
            ),
            ValueError,
            "for the model's own method= keyword, use model_kwargs=",
        ),
    ],
    ids=["empty", "blocks-int", "int-h0", "complex-h0", "params-only", "method-clash"],
)
def test_argument_mistakes_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_model_keywords_named_like_options_go_in_model_kwargs():
    # An Equinox model whose __call__ takes key= (dropout) beside block_chain's own key=.
    from tests.check_models.eqx_models import Residual

    class Net(eqx.Module):
        layers: list

        def __init__(self, key):
            keys = jax.random.split(key, 2)
            self.layers = [Residual(eqx.nn.Linear(4, 4, key=k)) for k in keys]

        def __call__(self, x, *, key):
            for layer in self.layers:
                x = layer(x)
            return x

    net, x = Net(jax.random.key(0)), jnp.ones(4)
    chain = jf.block_chain(net, None, x, blocks="layers", model_kwargs={"key": jax.random.key(1)})
    plain = jf.block_chain(list(net.layers), None, x)  # the same blocks called in order
    np.testing.assert_allclose(chain.product_singular_values[-1], plain.product_singular_values[-1])


def test_blocks_inside_a_checkpoint_are_named():
    class Checkpointed(eqx.Module):
        layers: list

        def __init__(self, key):
            keys = jax.random.split(key, 2)
            self.layers = [eqx.nn.Linear(4, 4, key=k) for k in keys]

        def __call__(self, h):
            for layer in self.layers:
                h = eqx.filter_checkpoint(lambda m, h: h + jnp.tanh(m(h)))(layer, h)
            return h

    with pytest.raises(ValueError, match="runs inside a transformation"):
        jf.block_chain(Checkpointed(jax.random.key(0)), None, jnp.ones(4), blocks="layers")


# --- (5) plain functions with a change of width: float64 NumPy references --------------------


def _weights():
    rng = np.random.default_rng(7)
    return [rng.normal(0, 1 / np.sqrt(n), (m, n)).astype(F32) for m, n in ((5, 3), (5, 5), (2, 5))]


W1, W2, W3 = _weights()
PLAIN = [
    lambda h: jnp.tanh(W1 @ h),
    lambda h: h + jnp.sin(W2 @ h),
    lambda h: W3 @ h,
]


def _np_plain_layers(h):
    h = np.asarray(h, np.float64)
    w1, w2, w3 = (np.asarray(w, np.float64) for w in (W1, W2, W3))
    J1 = np.diag(1 - np.tanh(w1 @ h) ** 2) @ w1
    h = np.tanh(w1 @ h)
    J2 = np.eye(5) + np.diag(np.cos(w2 @ h)) @ w2
    return [J1, J2, w3]


@pytest.fixture(scope="module")
def plain():
    h0 = jnp.array([0.4, -0.7, 1.1])
    return h0, jf.block_chain(PLAIN, None, h0, log_spectrum=True)


def test_plain_functions_against_float64_numpy(plain):
    h0, chain = plain
    assert chain.shapes == ((3,), (5,), (5,), (2,))
    P = np.eye(3)
    for l, J in enumerate(_np_plain_layers(h0)):
        P = J @ P
        assert _relative_to_max(chain.layers[l], J) < tol(F32, "jacobian") * 10
        assert _relative_to_max(chain.products[l], P) < tol(F32, "block_product")
        assert sv_error(chain.product_singular_values[l], P) < tol(F32, "svd")
        # the stable log-spectrum keeps min(n_0, …, n_l) values: 3, 3, 2
        ref = np.log(np.linalg.svd(P, compute_uv=False))[: min(3, P.shape[0])]
        assert chain.log_spectrum[l].shape == ref.shape
        np.testing.assert_allclose(
            chain.log_spectrum[l], ref, rtol=0, atol=tol(F32, "log_spectrum")
        )


def test_plain_functions_do_not_retrace(plain):
    h0, _ = plain
    before = blocks_module.TRACES["callables"]
    jf.block_chain(PLAIN, None, h0 + 1.0, log_spectrum=True)
    assert blocks_module.TRACES["callables"] == before


def test_to_jacobian_chain_refuses_rectangular_chains(plain):
    _, chain = plain
    with pytest.raises(ValueError, match="states of one size"):
        chain.to_jacobian_chain()


def test_matrix_free_estimates_agree_with_the_exact_spectra(plain):
    """Rectangular blocks of rank below the padded width (3 → 5 → 5 → 2): the embedding, the
    Lanczos breakdown at the rank and Hutchinson's 1/n_in all matter here."""
    h0, dense = plain
    free = jf.block_chain(
        PLAIN, None, h0, method="matrix_free", top_k=3, key=jax.random.key(5), tol=1e-6
    )
    assert free.method == "matrix_free" and free.layers is None and free.log_spectrum is None
    for exact, estimated, estimates, matrices in (
        (
            dense.layer_singular_values,
            free.layer_singular_values,
            free.layer_estimates,
            dense.layers,
        ),
        (
            dense.product_singular_values,
            free.product_singular_values,
            free.product_estimates,
            dense.products,
        ),
    ):
        for sv, top_k, est, J in zip(exact, estimated, estimates, matrices):
            sv = np.asarray(sv, np.float64)
            # power iteration: a singular value within `error`, and σ ≤ σ_max up to rounding
            sigma = float(est.top.sigma)
            assert abs(sigma - sv[0]) <= float(est.top.error) + tol(F32, "svd") * sv[0]
            assert top_k.shape == (min(3, *J.shape),)
            np.testing.assert_allclose(top_k, sv[:3], rtol=0, atol=tol(F32, "top_k") * sv[0])
            mean_sq = np.sum(sv**2) / J.shape[1]
            deviation = abs(float(est.mean_squared.value) - mean_sq)
            slack = tol(F32, "z") * float(est.mean_squared.standard_error)
            assert deviation <= slack + tol(F32, "svd") * mean_sq  # (+ rounding where exact)
    for field in ("layer_sigma_max", "product_sigma_max"):
        np.testing.assert_allclose(
            getattr(free, field), getattr(dense, field), rtol=tol(F32, "top_k")
        )

"""gradient_stats on real parameter trees (Flax linen and NNX, Equinox, hand-made), against norms
computed by hand in NumPy float64: stacks split only when they are stacks, boxes read through,
non-array leaves and PRNG keys skipped and listed, and layers that mean layers."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxflow as jf
from helpers import tol

TOL = tol("float32", "gradient")


def _norm64(a):
    return float(np.sqrt(np.sum(np.asarray(a, np.float64) ** 2)))


def _close(a, b):
    return abs(float(a) - b) <= TOL * abs(b)


def _check_leaves(stats, expected):
    """expected: {leaf name: float64 array}; every leaf's norm and nothing else."""
    assert set(stats.names) == set(expected), (stats.names, sorted(expected))
    for name, g in expected.items():
        assert _close(stats.leaf(name).norm, _norm64(g)), name


def _check_layers(stats, expected):
    """expected: {layer name: [float64 arrays of its leaves]}; per-layer √Σ‖g‖² and the order."""
    assert stats.layer_names == tuple(expected)
    for norm, arrays in zip(stats.layer_norms, expected.values(), strict=True):
        assert _close(norm, float(np.sqrt(sum(_norm64(a) ** 2 for a in arrays))))


# ---------------------------------------------------------------------------------------------
# Item 1: never split what is not stacked.


def test_a_list_of_layers_named_blocks_is_not_split():
    stats = jf.gradient_stats({"blocks": [{"kernel": jnp.ones((16, 16))}] * 2})
    assert stats.names == ("blocks/0/kernel", "blocks/1/kernel")
    assert stats.norm.tolist() == [16.0, 16.0]  # ‖ones(16, 16)‖ = √256
    assert jf.GradientStatus.name_of(stats.status).tolist() == ["ok", "ok"]
    assert stats.layer_names == ("blocks/0", "blocks/1")
    assert _close(stats.global_norm, np.sqrt(2 * 256.0))


class _NnxBlock(nnx.Module):
    def __init__(self, width, rngs):
        self.linear = nnx.Linear(width, width, rngs=rngs)  # square: kernel and bias share a length
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)  # holds a typed PRNG key

    def __call__(self, h):
        return self.dropout(self.norm(jnp.tanh(self.linear(h))))


class _NnxNet(nnx.Module):
    def __init__(self, width=8, depth=3, *, rngs):
        self.blocks = nnx.List([_NnxBlock(width, rngs) for _ in range(depth)])
        self.readout = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def _nnx_loss(model, x, y):
    return jnp.mean(jnp.square(model(x) - y))


def _nnx_setup():
    model = _NnxNet(rngs=nnx.Rngs(0))
    model.eval()  # dropout off: deterministic gradients
    x = jax.random.normal(jax.random.key(1), (5, 8))
    y = jax.random.normal(jax.random.key(2), (5, 1))
    return model, x, y


@pytest.mark.skipif(not hasattr(nnx, "List"), reason="nnx.List: flax >= 0.12")
def test_nnx_model_with_list_blocks_against_numpy():
    model, x, y = _nnx_setup()
    grads = nnx.grad(_nnx_loss)(model, x, y)
    stats = jf.gradient_stats(grads, nnx.state(model, nnx.Param))
    by_hand = {}
    for l in range(3):
        g = grads["blocks"][l]
        for sub, leaf in (
            ("linear", "kernel"),
            ("linear", "bias"),
            ("norm", "scale"),
            ("norm", "bias"),
        ):
            by_hand[f"blocks/{l}/{sub}/{leaf}"] = g[sub][leaf].get_value()
    by_hand["readout/kernel"] = grads["readout"]["kernel"].get_value()
    by_hand["readout/bias"] = grads["readout"]["bias"].get_value()
    _check_leaves(stats, by_hand)
    _check_layers(
        stats,
        {
            **{
                f"blocks/{l}": [v for k, v in by_hand.items() if k.startswith(f"blocks/{l}/")]
                for l in range(3)
            },
            "readout": [by_hand["readout/kernel"], by_hand["readout/bias"]],
        },
    )
    w = model.blocks[1].linear.kernel.get_value()
    ratio = _norm64(by_hand["blocks/1/linear/kernel"]) / _norm64(w)
    assert _close(stats.leaf("blocks/1/linear/kernel").ratio, ratio)
    # The whole state (RNG keys and counts included): the keys are skipped and listed, the
    # parameters read through their Variable boxes, no "/value" in any name.
    full = jf.gradient_stats(nnx.state(model))
    assert (
        "blocks/0/dropout/rngs/key" in full.frozen and "blocks/2/dropout/rngs/count" in full.frozen
    )
    assert "blocks/0/linear/kernel" in full.names
    assert not any(n.endswith("/value") for n in full.names + full.frozen)


class _LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, h):
        return nn.LayerNorm()(jnp.tanh(nn.Dense(8)(h)))


class _LinenNet(nn.Module):
    def setup(self):
        self.blocks = [_LinenBlock() for _ in range(6)]  # linen names them blocks_0 … blocks_5
        self.readout = nn.Dense(1)

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def test_linen_model_with_numbered_blocks_against_numpy():
    model = _LinenNet()
    x = jax.random.normal(jax.random.key(1), (5, 8))
    y = jax.random.normal(jax.random.key(2), (5, 1))
    params = model.init(jax.random.key(0), x)["params"]
    grads = jax.grad(lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x) - y)))(params)
    stats = jax.jit(jf.gradient_stats)(grads, params)
    flat = {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]
    }
    assert len(flat) == 6 * 4 + 2 and "blocks_5/Dense_0/kernel" in flat
    _check_leaves(stats, flat)
    _check_layers(
        stats,
        {
            **{
                f"blocks_{l}": [v for k, v in flat.items() if k.startswith(f"blocks_{l}/")]
                for l in range(6)
            },
            "readout": [flat["readout/bias"], flat["readout/kernel"]],
        },
    )


class _ScanBlock(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        kernel_init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        return jnp.tanh(nn.Dense(4, kernel_init=kernel_init)(h)), None


class _ScanNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        scanned = nn.scan(
            _ScanBlock,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=3,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        h, _ = scanned(name="blocks")(x, None)
        return nn.Dense(1, name="readout")(h)


def test_a_scanned_stack_is_split_per_layer_and_boxes_are_read_through():
    model = _ScanNet()
    x = jax.random.normal(jax.random.key(1), (5, 4))
    boxed = model.init(jax.random.key(0), x)["params"]
    assert isinstance(boxed["blocks"]["Dense_0"]["kernel"], nn.LogicallyPartitioned)
    params = nn.unbox(boxed)
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x) ** 2))(params)
    stats = jf.gradient_stats(grads, boxed)  # params boxed, grads not: read through
    kernels = np.asarray(grads["blocks"]["Dense_0"]["kernel"], np.float64)
    expected = {f"blocks/{l:02d}/Dense_0/kernel": kernels[l] for l in range(3)}
    expected |= {
        f"blocks/{l:02d}/Dense_0/bias": grads["blocks"]["Dense_0"]["bias"][l] for l in range(3)
    }
    expected |= {f"readout/{k}": v for k, v in grads["readout"].items()}
    _check_leaves(stats, expected)
    assert stats.layer_names == ("blocks/00", "blocks/01", "blocks/02", "readout")
    w = np.asarray(params["blocks"]["Dense_0"]["kernel"][2], np.float64)
    assert _close(stats.leaf("blocks/02/Dense_0/kernel").ratio, _norm64(kernels[2]) / _norm64(w))
    # The boxed tree itself measures the same, without "/value" in its names.
    assert jf.gradient_stats(boxed).names == jf.gradient_stats(params).names


def test_stack_rules_by_shape_and_by_request():
    ones = jnp.ones
    # One unscanned module named "blocks": leading lengths differ, so not a stack.
    dense = jf.gradient_stats({"blocks": {"kernel": ones((16, 32)), "bias": ones(32)}})
    assert dense.names == ("blocks/bias", "blocks/kernel") and dense.layer_names == ("blocks",)
    # A square one: kernel and bias share their first length, but a 1-D bias is not a stack.
    square = jf.gradient_stats({"blocks": {"kernel": 2 * ones((16, 16)), "bias": ones(16)}})
    assert square.names == ("blocks/bias", "blocks/kernel") and square.norm.tolist() == [4.0, 32.0]
    # A dict of numbered layers under "blocks" is split already.
    numbered = jf.gradient_stats({"blocks": {"0": {"w": ones((3, 3))}, "1": {"w": ones((3, 3))}}})
    assert numbered.names == ("blocks/0/w", "blocks/1/w")
    # An Equinox stack made with filter_vmap is called what its author calls it: say so.
    keys = jax.random.split(jax.random.key(0), 4)
    stack = eqx.filter_vmap(lambda k: eqx.nn.Linear(3, 3, key=k))(keys)
    tree = {"layers": stack}
    assert jf.gradient_stats(tree).names == ("layers/weight", "layers/bias")  # field order
    split = jf.gradient_stats(tree, stacked="layers")
    assert split.names[:2] == ("layers/00/weight", "layers/00/bias") and len(split.names) == 8
    assert split.layer_names == ("layers/00", "layers/01", "layers/02", "layers/03")
    assert _close(split.leaf("layers/03/weight").norm, _norm64(stack.weight[3]))


def test_the_default_guess_splits_no_bias_free_dense_or_embedding_named_blocks():
    rng = np.random.default_rng(0)
    # nn.Dense(16, use_bias=False, name="blocks") and nn.Embed(10, 16, name="blocks"): one 2-D
    # leaf each. Split on a guess, their rows would be reported as 16 or 10 "layers".
    for shape in ((16, 16), (10, 16)):
        kernel = rng.normal(size=shape)
        stats = jf.gradient_stats({"blocks": {"kernel": jnp.asarray(kernel, jnp.float32)}})
        assert stats.names == ("blocks/kernel",) and stats.layer_names == ("blocks",)
        assert _close(stats.norm[0], _norm64(kernel))
    # A scanned Dense with its bias, jaxflow's own stack: split on the guess.
    kernel, bias = rng.normal(size=(3, 4, 4)), rng.normal(size=(3, 4))
    tree = {"blocks": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias)}}
    _check_leaves(
        jf.gradient_stats(tree),
        {
            f"blocks/{l:02d}/{k}": v[l]
            for l in range(3)
            for k, v in (("kernel", kernel), ("bias", bias))
        },
    )


def test_the_default_guess_splits_no_bias_free_convolution_and_does_split_equinox_stacks():
    rng = np.random.default_rng(2)
    # Two bias-free 3×3 convolutions in an unscanned module named "blocks": all 4-D, common
    # first length 3 (the kernel height), so shapes alone could take them for 3 layers.
    convs = {f"Conv_{i}": {"kernel": rng.normal(size=(3, 3, 8, 8))} for i in range(2)}
    stats = jf.gradient_stats({"blocks": convs})
    _check_leaves(
        stats, {f"blocks/Conv_{i}/kernel": convs[f"Conv_{i}"]["kernel"] for i in range(2)}
    )
    # The Equinox docs' stack of MLPs (filter_vmap): lists inside each layer, a weight and a bias
    # in each, one leading depth: split per depth, every inner layer inside its depth's row.
    keys = jax.random.split(jax.random.key(0), 4)
    mlps = eqx.filter_vmap(lambda k: eqx.nn.MLP(3, 3, 5, 2, key=k))(keys)
    stats = jf.gradient_stats({"blocks": mlps})
    assert stats.layer_names == ("blocks/00", "blocks/01", "blocks/02", "blocks/03")
    for l in range(4):
        leaves = [
            np.asarray(a[l], np.float64) for a in jax.tree.leaves(eqx.filter(mlps, eqx.is_array))
        ]
        assert _close(stats.layer_norms[l], float(np.sqrt(sum(np.sum(a**2) for a in leaves))))


def test_numbering_that_does_not_start_at_zero_is_not_a_layer_index():
    # GPT-2's names: blocks h_0..h_2, each with ln_1, attn, ln_2, mlp; then ln_f and head.
    rng = np.random.default_rng(3)
    parts = ("ln_1", "attn", "ln_2", "mlp")
    tree = {f"h_{i}": {p: {"w": rng.normal(size=4)} for p in parts} for i in range(3)}
    tree |= {"ln_f": {"w": rng.normal(size=4)}, "head": {"w": rng.normal(size=4)}}
    stats = jf.gradient_stats(jax.tree.map(jnp.asarray, tree))
    _check_layers(
        stats,
        {f"h_{i}": [tree[f"h_{i}"][p]["w"] for p in sorted(parts)] for i in range(3)}
        | {"head": [tree["head"]["w"]], "ln_f": [tree["ln_f"]["w"]]},
    )
    # Outside another layer index they are layers however they are numbered: from 0, from 1,
    # or with layer 0 frozen (no gradient), as before.
    for first in (0, 1):
        tree = {"encoder": {f"layers_{i}": {"w": jnp.ones(2)} for i in range(first, 3)}}
        names = tuple(f"encoder/layers_{i}" for i in range(first, 3))
        assert jf.gradient_stats(tree).layer_names == names
    tree["encoder"]["layers_0"] = {"w": None}
    assert jf.gradient_stats(tree).layer_names == names


def test_one_based_blocks_that_hold_modules_stay_layers():
    # A ResNet named from 1: stage_1/block_2/conv_1 groups per block, conv_1 and bn_1 inside it.
    tree = {
        f"stage_{s}": {
            f"block_{b}": {m: {"w": jnp.full(2, float(s + b))} for m in ("conv_1", "bn_1")}
            for b in (1, 2)
        }
        for s in (1, 2)
    }
    stats = jf.gradient_stats(tree)
    assert stats.layer_names == tuple(f"stage_{s}/block_{b}" for s in (1, 2) for b in (1, 2))
    assert _close(stats.layer_norms[0], 4.0)  # two leaves of [2, 2]


def test_the_guess_leaves_convolutions_whole():
    rng = np.random.default_rng(4)
    trees = {
        "Equinox Conv1d with bias (C, 1)": {"w": rng.normal(size=(4, 4, 3)), "b": rng.normal(size=(4, 1))},
        "linen Conv1D without bias": {f"Conv_{i}": {"kernel": rng.normal(size=(3, 8, 8))} for i in range(2)},
        "eqx.nn.Sequential of bias-free Conv1d": {"layers": [{"weight": rng.normal(size=(4, 4, 3))}] * 2},
    }  # fmt: skip
    for what, blocks in trees.items():
        stats = jf.gradient_stats({"blocks": jax.tree.map(jnp.asarray, blocks)})
        assert not any(n.startswith("blocks/0") for n in stats.names), what


def test_jaxflow_bias_free_stacks_are_split_on_the_guess():
    model = jf.mlp(depth=3, width=4, in_dim=4, out_dim=1, use_bias=False)
    x = jnp.ones((2, 4))
    params = model.init(jax.random.key(0), x)["params"]
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x) ** 2))(params)
    stats = jf.gradient_stats(grads)
    assert [n for n in stats.layer_names if n.startswith("blocks")] == [
        f"blocks/{l:02d}" for l in range(jax.tree.leaves(grads["blocks"])[0].shape[0])
    ]


def test_a_named_stack_is_split_with_its_scalar_gates_and_inner_lists():
    rng = np.random.default_rng(1)
    # A scanned ReZero block: a per-layer scalar gate is an (L,) leaf; an nnx.List inside the
    # scanned block adds list positions below the stack's name.
    kernel, gate = rng.normal(size=(4, 3, 3)), rng.normal(size=4)
    inner = [rng.normal(size=(4, 3)) for _ in range(2)]
    tree = {
        "blocks": {
            "kernel": jnp.asarray(kernel, jnp.float32),
            "alpha": jnp.asarray(gate, jnp.float32),
            "norms": [{"scale": jnp.asarray(a, jnp.float32)} for a in inner],
        }
    }
    assert jf.gradient_stats(tree).names == (  # the guess leaves it whole
        "blocks/alpha", "blocks/kernel", "blocks/norms/0/scale", "blocks/norms/1/scale"
    )  # fmt: skip
    stats = jf.gradient_stats(tree, stacked="blocks")
    expected = {}
    for l in range(4):
        expected[f"blocks/{l:02d}/alpha"] = gate[l : l + 1]
        expected[f"blocks/{l:02d}/kernel"] = kernel[l]
        expected |= {f"blocks/{l:02d}/norms/{i}/scale": a[l] for i, a in enumerate(inner)}
    _check_leaves(stats, expected)
    _check_layers(
        stats,
        {
            f"blocks/{l:02d}": [gate[l : l + 1], kernel[l], inner[0][l], inner[1][l]]
            for l in range(4)
        },
    )


def test_a_named_stack_must_be_one():
    # Named by the caller, a subtree whose leaves do not share a leading length is a mistake:
    # say so, rather than quietly measure it whole.
    dense = {"layers": {"kernel": jnp.ones((16, 32)), "bias": jnp.ones(32)}}
    with pytest.raises(ValueError, match=r"'layers' is not a scanned stack.*layers/bias \(32,\)"):
        jf.gradient_stats(dense, stacked="layers")
    with pytest.raises(ValueError, match=r"'layers/s' .* is a scalar"):
        jf.gradient_stats({"layers": {"s": jnp.ones(())}}, stacked=("layers",))
    # A list of layers under the name is split by layer already, named or not.
    listed = {"layers": [{"w": jnp.ones((3, 3))}, {"w": jnp.ones((3, 3))}]}
    assert jf.gradient_stats(listed, stacked="layers").names == ("layers/0/w", "layers/1/w")


# ---------------------------------------------------------------------------------------------
# Item 2: real trees.


def test_non_array_leaves_and_prng_keys_are_skipped_and_listed():
    tree = {
        "w": jnp.array([3.0, 4.0]),
        "act": jax.nn.relu,
        "name": "encoder",
        "none": None,
        "eps": 1e-5,  # a Python float is configuration, not a parameter (equinox's is_array)
        "key": jax.random.key(0),
        "keys": jax.random.split(jax.random.key(1), 3),
        "raw_key": jax.random.PRNGKey(2),  # uint32: an integer leaf, skipped as before
    }
    inside_jit = jax.jit(lambda w: jf.gradient_stats({**tree, "w": w}))  # closed over: not args
    for stats in (jf.gradient_stats(tree), inside_jit(tree["w"])):
        assert stats.names == ("w",) and stats.norm.tolist() == [5.0]
        assert set(stats.frozen) == {"act", "name", "none", "eps", "key", "keys", "raw_key"}
    state = jf.gradient_monitor().init(tree)
    assert state.stats.names == ("w",) and set(state.stats.frozen) == set(stats.frozen)


def test_equinox_module_with_functions_is_measured():
    model = eqx.nn.MLP(4, 2, 8, depth=3, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4,))

    @eqx.filter_grad
    def grads_of(m):
        return jnp.sum(m(x) ** 2)

    grads = grads_of(model)
    stats = jf.gradient_stats(grads, model)
    assert {"activation", "final_activation"} <= set(stats.frozen)
    expected = {}
    for l, layer in enumerate(grads.layers):
        expected[f"layers/{l}/weight"] = layer.weight
        expected[f"layers/{l}/bias"] = layer.bias
    _check_leaves(stats, expected)
    _check_layers(
        stats,
        {
            f"layers/{l}": [expected[f"layers/{l}/bias"], expected[f"layers/{l}/weight"]]
            for l in range(4)
        },
    )
    assert jf.gradient_stats(model).names == stats.names  # the module itself: functions skipped


# ---------------------------------------------------------------------------------------------
# Item 3: layers that mean layers.


def _tree(paths, seed=0):
    """A nested dict with a random array at each "/"-path, and the flat {path: array}."""
    rng = np.random.default_rng(seed)
    tree, flat = {}, {}
    for path, shape in paths.items():
        node = tree
        *head, last = path.split("/")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = flat[path] = jnp.asarray(rng.normal(size=shape), jnp.float32)
    return tree, flat


def _expected_groups(flat, group_of):
    groups = {}
    for path in sorted(flat):  # the pytree order of nested dicts
        groups.setdefault(group_of(path), []).append(flat[path])
    return groups


def test_default_groups_of_a_transformer():
    paths = {"decoder/Embed_0/embedding": (11, 8), "decoder/encoderdecoder_norm/scale": (8,)}
    for b in range(3):
        block = f"decoder/encoderdecoderblock_{b}"
        for proj in ("query", "key", "value", "out"):
            paths[f"{block}/MultiHeadDotProductAttention_0/{proj}/kernel"] = (8, 2, 4)
        paths[f"{block}/MlpBlock_0/Dense_0/kernel"] = (8, 16)
        paths[f"{block}/MlpBlock_0/Dense_1/kernel"] = (16, 8)
        paths[f"{block}/LayerNorm_0/scale"] = (8,)
        paths[f"{block}/LayerNorm_1/scale"] = (8,)
    tree, flat = _tree(paths)
    stats = jf.gradient_stats({"params": tree})
    groups = _expected_groups(
        flat, lambda p: "/".join(p.split("/")[:2]) if "block_" in p else "decoder"
    )
    # The blocks first in pytree order: "decoder/Embed_0" sorts before "decoder/encoder...".
    assert set(stats.layer_names) == {f"params/{g}" for g in groups}
    for name, norm in zip(stats.layer_names, stats.layer_norms, strict=True):
        arrays = groups[name.removeprefix("params/")]
        assert _close(norm, float(np.sqrt(sum(_norm64(a) ** 2 for a in arrays))))
    assert "params/decoder/encoderdecoderblock_2" in stats.layer_names


def test_default_groups_of_a_vit():
    paths = {
        "embedding/kernel": (4, 4, 3, 8),
        "cls": (1, 1, 8),
        "Transformer/posembed_input/pos_embedding": (1, 5, 8),
        "Transformer/encoder_norm/scale": (8,),
        "head/kernel": (8, 10),
    }
    for b in range(12):  # encoderblock_10 and _11: numbered, not sorted as text
        paths[f"Transformer/encoderblock_{b}/MlpBlock_0/Dense_0/kernel"] = (8, 16)
        paths[f"Transformer/encoderblock_{b}/LayerNorm_0/scale"] = (8,)
    tree, flat = _tree(paths)
    stats = jf.gradient_stats(tree)

    def group_of(p):
        parts = p.split("/")
        return (
            "/".join(parts[:2]) if parts[1:2] and parts[1].startswith("encoderblock_") else parts[0]
        )

    groups = _expected_groups(flat, group_of)
    assert set(stats.layer_names) == set(groups) and len(groups) == 12 + 4
    for name, norm in zip(stats.layer_names, stats.layer_norms, strict=True):
        assert _close(norm, float(np.sqrt(sum(_norm64(a) ** 2 for a in groups[name]))))


def test_groups_by_pattern_and_by_callable():
    paths = {
        f"Transformer/encoderblock_{b}/MlpBlock_0/Dense_{d}/kernel": (3, 3)
        for b in range(2)
        for d in range(2)
    }
    paths["head/kernel"] = (3, 2)
    tree, flat = _tree(paths)
    by_dense = jf.gradient_stats(tree, group_by=r"Dense_\d+")
    assert by_dense.layer_names == ("Dense_0", "Dense_1", "head")
    expected = [
        np.sqrt(sum(_norm64(flat[p]) ** 2 for p in flat if f"Dense_{d}" in p)) for d in range(2)
    ]
    assert all(_close(n, e) for n, e in zip(by_dense.layer_norms[:2], expected, strict=True))
    grouped = jf.gradient_stats(tree, group_by=r"^(\w+)/")  # the first group of the match
    assert grouped.layer_names == ("Transformer", "head")
    by_leaf = jf.gradient_stats(tree, group_by=lambda name: name)
    assert by_leaf.layer_names == by_leaf.names
    with pytest.raises(ValueError, match="group_by='\\('"):
        jf.gradient_stats(tree, group_by="(")
    with pytest.raises(TypeError, match="group_by=3"):
        jf.gradient_stats(tree, group_by=3)
    with pytest.raises(TypeError, match="must return the layer name"):
        jf.gradient_stats(tree, group_by=lambda name: 0)


def test_default_groups_of_an_equinox_mlp_and_jaxflow_models():
    model = eqx.nn.MLP(3, 1, 5, depth=4, key=jax.random.key(0))
    params = eqx.filter(model, eqx.is_inexact_array)
    stats = jf.gradient_stats(params)
    assert stats.layer_names == tuple(f"layers/{l}" for l in range(5))
    for l, layer in enumerate(model.layers):
        expected = np.sqrt(_norm64(layer.weight) ** 2 + _norm64(layer.bias) ** 2)
        assert _close(stats.layer_norms[l], expected)
    # jaxflow's own stack: unchanged.
    net = jf.mlp(depth=3, width=4)
    variables = net.init(jax.random.key(0), jnp.ones(4))
    assert jf.gradient_stats(variables["params"]).layer_names == (
        "blocks/00",
        "blocks/01",
        "blocks/02",
        "readout",
    )


def test_train_records_layer_norms_by_group_by():
    model = jf.mlp(depth=3, width=4, activation="tanh")
    x = jax.random.normal(jax.random.key(1), (6, 4))
    y = jax.random.normal(jax.random.key(2), (6, 1))
    variables = model.init(jax.random.key(0), x)
    optimizer = optax.sgd(0.1)
    default = jf.train(model, variables, (x, y), optimizer, 2)
    assert default.layer_names == ("blocks/00", "blocks/01", "blocks/02", "readout")
    by_kind = jf.train(
        model, variables, (x, y), optimizer, 2, group_by=lambda name: name.split("/")[-1]
    )
    assert by_kind.layer_names == ("bias", "kernel")
    grads = jax.grad(lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x) - y)))(
        variables["params"]
    )
    for k, kind in enumerate(("bias", "kernel")):
        arrays = [grads["blocks"]["Dense_0"][kind], grads["readout"][kind]]
        expected = float(np.sqrt(sum(_norm64(a) ** 2 for a in arrays)))
        assert _close(by_kind.layer_norms[0, k], expected)


def test_numbered_names_inside_a_scanned_block_stay_in_its_layer():
    stack = {"dense_0": {"kernel": jnp.ones((3, 2, 2))}, "dense_1": {"kernel": jnp.ones((3, 2, 2))}}
    stats = jf.gradient_stats({"blocks": stack}, stacked="blocks")
    assert stats.layer_names == ("blocks/00", "blocks/01", "blocks/02")
    assert stats.names[:2] == ("blocks/00/dense_0/kernel", "blocks/00/dense_1/kernel")
    assert _close(stats.layer_norms[1], np.sqrt(8.0))
    # Unscanned nesting: the last index wins by default, a pattern picks the outer one.
    tree = {"blocks": [{"mlp": {"layers": [{"w": jnp.ones(2)}] * 2}}] * 2}
    assert jf.gradient_stats(tree).layer_names[:2] == (
        "blocks/0/mlp/layers/0",
        "blocks/0/mlp/layers/1",
    )
    outer = jf.gradient_stats(tree, group_by="blocks/[0-9]+")
    assert outer.layer_names == ("blocks/0", "blocks/1") and _close(outer.layer_norms[0], 2.0)

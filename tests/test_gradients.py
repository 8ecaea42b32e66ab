"""Gradient health against NumPy float64 references: the statistics table, activation gradients
against the explicit Jacobian chain, dead and saturated units, the training loop and the monitor."""

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxflow as jf
from helpers import NP_ACTIVATIONS, as64, np_mlp_chain, np_mlp_variables, np_residual_chain, tol


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# ---------------------------------------------------------------------------------------------
# gradient_stats on hand-built pytrees with known answers.


def _zero_grad_of_int():
    """A float0 leaf, exactly what jax.grad returns for an integer input with allow_int=True."""
    return jax.grad(lambda p: p["w"].sum(), allow_int=True)({"w": jnp.ones(2), "n": jnp.array(3)})[
        "n"
    ]


HAND = {
    "a": jnp.array([3.0, 4.0]),  # norm 5, mean 3.5, max 4
    "tiny": jnp.full((4,), 1e-9 / 2),  # norm 1e-9: vanishing
    "huge": jnp.array([[6e3, 8e3]]),  # norm 1e4: exploding
    "nan": jnp.array([jnp.nan, 1.0]),
    "inf": jnp.array([jnp.inf, -2.0]),
    "frozen": None,
    "masked": optax.MaskedNode(),
    "count": jnp.array(7),
    "int_grad": _zero_grad_of_int(),
}
EXPECTED_STATUS = {
    "a": "ok",
    "tiny": "vanishing",
    "huge": "exploding",
    "nan": "nonfinite",
    "inf": "nonfinite",
}


@pytest.mark.parametrize("jit", [False, True])
def test_hand_built_leaves_have_known_statistics(jit):
    stats = (jax.jit(jf.gradient_stats) if jit else jf.gradient_stats)(HAND)
    assert stats.names == ("a", "huge", "inf", "nan", "tiny")  # pytree (sorted-key) order
    assert stats.frozen == ("count", "frozen", "int_grad", "masked")
    assert dict(zip(stats.names, jf.GradientStatus.name_of(stats.status))) == EXPECTED_STATUS
    for name in ("a", "huge", "tiny"):
        g = np.asarray(HAND[name], np.float64).ravel()
        leaf = stats.leaf(name)
        assert _relative(leaf.norm, np.sqrt(np.sum(g**2))) < tol("float32", "gradient")
        assert _relative(leaf.mean, g.mean()) < tol("float32", "gradient")
        assert _relative(leaf.max_abs, np.abs(g).max()) < tol("float32", "gradient")
    # NaN and Inf stay on their own leaf: the others' numbers are untouched.
    assert np.isnan(stats.leaf("nan").norm) and np.isinf(stats.leaf("inf").norm)
    assert float(stats.leaf("a").norm) == 5.0
    assert stats.status_counts.tolist() == [1, 1, 1, 2]
    assert jf.GradientStatus.name_of(stats.leaf("huge").status) == "exploding"
    assert stats.leaves_with("nonfinite") == ("inf", "nan")
    assert np.isnan(stats.global_norm) and np.all(np.isnan(stats.ratio))  # no params given


def test_global_norm_is_the_true_norm_and_layer_norms_sum_in_squares():
    grads = {k: HAND[k] for k in ("a", "tiny", "huge")}
    grads["b"] = {"x": jnp.ones((2, 3)), "y": -jnp.ones(5)}
    stats = jf.gradient_stats(grads)
    flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in jax.tree.leaves(grads)])
    assert _relative(stats.global_norm, np.sqrt(np.sum(flat**2))) < tol("float32", "norm")
    # √(5² + 12²) = 13, not the sum 17 of per-parameter norms that the popular snippets report.
    assert (
        float(jf.gradient_stats({"a": HAND["a"], "c": jnp.array([0.0, 12.0])}).global_norm) == 13.0
    )
    assert stats.layer_names == ("a", "b", "huge", "tiny")
    assert _relative(stats.layer_norms[1], np.sqrt(11.0)) < tol("float32", "gradient")
    rss = np.sqrt(np.sum(np.asarray(stats.layer_norms, np.float64) ** 2))
    assert _relative(rss, stats.global_norm) < tol("float32", "norm")


def test_norms_survive_float32_underflow_and_overflow():
    # Squares of 1e-30 underflow float32 and squares of 1e30 overflow it; the norm does not.
    grads = {"small": jnp.full((16,), 1e-30), "large": jnp.full((16,), 1e30)}
    stats = jf.gradient_stats(grads)
    assert _relative(stats.leaf("small").norm, 4e-30) < tol("float32", "gradient")
    assert _relative(stats.leaf("large").norm, 4e30) < tol("float32", "gradient")
    assert dict(zip(stats.names, jf.GradientStatus.name_of(stats.status))) == {
        "large": "exploding",
        "small": "vanishing",
    }
    flat = np.concatenate([np.asarray(g, np.float64) for g in grads.values()])
    assert _relative(stats.global_norm, np.sqrt(np.sum(flat**2))) < tol("float32", "norm")
    assert np.isinf(float(optax.tree.norm(grads)))  # where optax's plain Σg² overflows


def test_norms_near_the_largest_float_are_not_flushed_to_zero():
    # Scaling by max|g| as a multiplication by 1/max|g| flushed the reciprocal (subnormal above
    # ~8.5e37 in float32) to zero: norm 0, "vanishing". Norms here against NumPy float64; a norm
    # above float32's largest (3.4e38) is inf and exploding, as float32 can only say.
    grads = {"a": jnp.full((4,), 1e38), "b": jnp.full((2,), 3e38), "c": jnp.ones(3)}
    stats = jf.gradient_stats(grads)
    assert _relative(stats.leaf("a").norm, 2e38) < tol("float32", "gradient")
    assert np.isinf(stats.leaf("b").norm) and _relative(stats.leaf("c").norm, np.sqrt(3)) < 1e-6
    assert dict(zip(stats.names, jf.GradientStatus.name_of(stats.status))) == {
        "a": "exploding", "b": "exploding", "c": "ok"
    }  # fmt: skip
    # Σg overflows too: the means are still the entries' (1e38, 3e38), not inf
    np.testing.assert_allclose(stats.mean[:2], [1e38, 3e38], rtol=tol("float32", "gradient"))
    stacked = jf.gradient_stats({"blocks": {"kernel": jnp.full((2, 3, 3), 1e38)}}, stacked="blocks")
    np.testing.assert_allclose(stacked.norm, [3e38, 3e38], rtol=tol("float32", "gradient"))
    with pytest.raises(
        TypeError, match=r"stacked=True is not allowed; pass .auto., a subtree name"
    ):
        jf.gradient_stats(grads, stacked=True)


def test_a_non_finite_layer_of_a_stacked_leaf_is_flagged_alone():
    kernel = np.ones((3, 2, 2), np.float32)
    kernel[1, 0, 0], kernel[2, 1, 1] = np.nan, -np.inf
    kernel[2, 0, 0] = np.nan  # NaN and Inf in one row
    blocks = {"kernel": jnp.asarray(kernel), "bias": jnp.ones((3, 2))}
    grads = {"blocks": blocks, "out": jnp.ones(2)}
    stats = jf.gradient_stats(grads)
    assert jf.GradientStatus.name_of(stats.status).tolist() == [
        "ok", "ok", "ok", "nonfinite", "ok", "nonfinite", "ok"
    ]  # fmt: skip
    assert stats.names[3] == "blocks/01/kernel" and stats.names[5] == "blocks/02/kernel"
    assert np.isnan(stats.max_abs[3]) and np.isnan(stats.max_abs[5]) and np.isnan(stats.mean[3])
    assert float(stats.max_abs[1]) == 1.0 and float(stats.mean[1]) == 1.0
    layer = np.asarray(stats.layer_norms)
    assert np.isnan(layer[1]) and np.isnan(layer[2])  # only the layers holding the NaNs
    assert layer[0] == pytest.approx(np.sqrt(6.0)) and layer[3] == pytest.approx(np.sqrt(2.0))


def test_bfloat16_gradients_are_measured_not_frozen():
    stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0], jnp.bfloat16), "step": jnp.array(1)})
    assert stats.names == ("w",) and stats.frozen == ("step",)
    assert float(stats.norm[0]) == 5.0 and float(stats.global_norm) == 5.0


@functools.cache
def _model(depth=12, width=6, activation="sigmoid", in_dim=3, out_dim=2):
    return jf.mlp(depth, width, activation=activation, in_dim=in_dim, out_dim=out_dim)


@functools.cache
def _mlp_grads(depth=12, seed=0):
    model = _model(depth)
    variables = np_mlp_variables(seed, depth, 6, in_dim=3, out_dim=2)  # zero biases
    rng = np.random.default_rng(seed + 1)
    x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x) - y))))(
        variables["params"]
    )
    return model, variables, x, y, grads


def test_scanned_blocks_split_per_layer_with_padded_index():
    _, variables, _, _, grads = _mlp_grads()
    stats = jax.jit(lambda g, p: jf.gradient_stats(g, p))(grads, variables["params"])
    assert stats.layer_names == tuple(f"blocks/{l:02d}" for l in range(12)) + ("input", "readout")
    assert stats.names[:2] == ("blocks/00/Dense_0/bias", "blocks/00/Dense_0/kernel")
    assert "blocks/07/Dense_0/kernel" in stats.names and len(stats.names) == 2 * 12 + 4
    kernels = np.asarray(grads["blocks"]["Dense_0"]["kernel"], np.float64)
    weights = np.asarray(variables["params"]["blocks"]["Dense_0"]["kernel"], np.float64)
    biases = np.asarray(grads["blocks"]["Dense_0"]["bias"], np.float64)
    for l in (0, 7, 11):
        leaf = stats.leaf(f"blocks/{l:02d}/Dense_0/kernel")
        assert _relative(leaf.norm, np.linalg.norm(kernels[l])) < tol("float32", "gradient")
        assert _relative(leaf.ratio, np.linalg.norm(kernels[l]) / np.linalg.norm(weights[l])) < tol(
            "float32", "gradient"
        )
        layer = np.sqrt(np.sum(kernels[l] ** 2) + np.sum(biases[l] ** 2))
        assert _relative(stats.layer_norms[l], layer) < tol("float32", "gradient")
    # Per-layer norms are a partition of the global norm (optax.tree.norm, what clipping sees).
    rss = np.sqrt(np.sum(np.asarray(stats.layer_norms, np.float64) ** 2))
    assert _relative(rss, optax.tree.norm(grads)) < tol("float32", "norm")
    assert _relative(stats.global_norm, optax.tree.norm(grads)) < tol("float32", "norm")
    # Zero-initialised biases: ‖g‖/‖w‖ is +inf, never a silent NaN.
    assert np.isinf(stats.leaf("readout/bias").ratio)


def test_padding_widens_for_deep_stacks_and_stacked_can_be_turned_off():
    grads = {"blocks": {"w": jnp.ones((101, 2))}, "head": jnp.ones(2)}
    assert jf.gradient_stats(grads, stacked="blocks").names[:2] == ("blocks/000/w", "blocks/001/w")
    assert jf.gradient_stats(grads).names == ("blocks/w", "head")  # 2-D alone: no guess
    assert jf.gradient_stats(grads, stacked=()).names == ("blocks/w", "head")
    assert jf.gradient_stats({"params": grads}).layer_names[-1] == "params/head"


def test_batched_stats_vmap_and_format_needs_one():
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), {"w": jnp.array([3.0, 4.0])})
    stats = jax.vmap(jf.gradient_stats)(stacked)
    assert stats.norm.shape == (2, 1) and stats.norm[:, 0].tolist() == [5.0, 10.0]
    with pytest.raises(ValueError, match="batched"):
        jf.format_gradient_report(stats)
    jf.format_gradient_report(jax.tree.map(lambda a: a[1], stats), unicode=True)


def test_zero_weights_give_inf_or_zero_ratio():
    stats = jf.gradient_stats(
        {"g": jnp.ones(2), "z": jnp.zeros(2)}, {"g": jnp.zeros(2), "z": jnp.zeros(2)}
    )
    assert stats.ratio.tolist() == [np.inf, 0.0]


@pytest.mark.parametrize(
    "grads, kwargs, error, match",
    [
        (
            {"w": jnp.ones(2)},
            {"vanishing": 1.0, "exploding": 1.0},
            ValueError,
            "vanishing < exploding",
        ),
        ({"w": jnp.ones(2)}, {"vanishing": float("nan")}, ValueError, "vanishing=nan"),
        ({"w": jnp.ones(2)}, {"exploding": True}, ValueError, "exploding=True"),
        ({"w": None, "n": jnp.array(1)}, {}, ValueError, "no floating-point leaves"),
        ({"blocks": {"s": jnp.array(1.0)}}, {"stacked": "blocks"}, ValueError, "depth axis"),
        ({"w": jnp.ones(2, jnp.complex64)}, {}, TypeError, "complex"),
        ({"w": jnp.ones(2)}, {"params": {"w": jnp.ones(3)}}, ValueError, r"shape \(3,\)"),
        ({"w": jnp.ones(2)}, {"params": {"v": jnp.ones(2)}}, ValueError, "no array at 'w'"),
        ({"w": jnp.ones(2)}, {"stacked": [1]}, TypeError, "stacked"),
    ],
)
def test_bad_input_is_a_clear_error(grads, kwargs, error, match):
    kwargs = dict(kwargs)
    params = kwargs.pop("params", None)
    with pytest.raises(error, match=match):
        jf.gradient_stats(grads, params, **kwargs)


class _AsciiStream(io.StringIO):
    encoding = "ascii"


def test_report_marks_and_ascii_fallback():
    stats = jf.gradient_stats({k: HAND[k] for k in ("a", "tiny", "huge", "nan", "frozen")})
    text = jf.format_gradient_report(stats, unicode=True)
    lines = {line.split()[1]: line for line in text.splitlines() if line[:1] in "✓⚠"}
    assert lines["a"].startswith("✓ a ") and "norm=5.00e+00" in lines["a"]
    assert lines["tiny"].startswith("⚠") and lines["tiny"].endswith("vanishing")
    assert lines["huge"].startswith("⚠") and lines["huge"].endswith("exploding")
    assert lines["nan"].startswith("⚠") and lines["nan"].endswith("nonfinite")
    assert "frozen (not measured): frozen" in text
    assert "status: 1 ok, 1 vanishing, 1 exploding, 1 nonfinite" in text
    ascii_text = jf.format_gradient_report(stats, stream=_AsciiStream())
    ascii_text.encode("ascii")  # no UnicodeEncodeError
    assert "ok a " in ascii_text and "!! tiny" in ascii_text
    with pytest.raises(TypeError, match="GradientStats"):
        jf.format_gradient_report({"w": 1.0})


# ---------------------------------------------------------------------------------------------
# Activation gradients ∂ℓ/∂h_l against the explicit chain J_{l+1}ᵀ ⋯ J_Lᵀ J_outᵀ ∇_y ℓ.


def _chain_reference(layers, readout_kernel, prediction, y):
    """‖∂ℓ/∂h_l‖, l = 0…L, for one example: the transposed Jacobians applied to ∇_y ℓ (MSE)."""
    g = np.asarray(readout_kernel, np.float64) @ (2.0 * (prediction - y) / len(y))
    norms = [np.linalg.norm(g)]
    for J in np.asarray(layers, np.float64)[::-1]:
        g = J.T @ g
        norms.append(np.linalg.norm(g))
    return np.array(norms[::-1])


def test_activation_gradients_match_the_explicit_jacobian_chain():
    model, variables, x, y, _ = _mlp_grads()
    norms = jf.activation_gradient_norms(model, variables, x, y)
    assert norms.shape == (5, 13)
    layers = np.asarray(
        jax.jit(lambda v, x: jf.layer_jacobians(model, v, x))(variables, x), np.float64
    )
    prediction = np.asarray(jax.jit(model.apply)(variables, x), np.float64)
    kernel = variables["params"]["readout"]["kernel"]
    for b in range(5):
        reference = _chain_reference(layers[b], kernel, prediction[b], np.asarray(y[b], np.float64))
        assert _relative(norms[b], reference) < tol("float32", "gradient")
    one = jf.activation_gradient_norms(model, variables, x[2], y[2])
    assert one.shape == (13,) and _relative(one, norms[2]) < tol("float32", "gradient")


def test_activation_gradients_float64_against_numpy_chain():
    with jax.enable_x64(True):
        model = jf.mlp(8, 6, activation="sigmoid", in_dim=3, out_dim=2, param_dtype=jnp.float64)
        variables = np_mlp_variables(0, 8, 6, in_dim=3, out_dim=2, sigma_b2=0.1, dtype=np.float64)
        rng = np.random.default_rng(1)
        x, y = rng.normal(size=3), rng.normal(size=2)
        norms = jf.activation_gradient_norms(model, variables, x, y)
        assert norms.dtype == jnp.float64
        p = as64(variables["params"])
        layers, _, h_last = np_mlp_chain(p, x, "sigmoid")
        prediction = p["readout"]["kernel"].T @ h_last + p["readout"]["bias"]
        reference = _chain_reference(layers, p["readout"]["kernel"], prediction, np.asarray(y))
        assert _relative(norms, reference) < tol("float64", "gradient")


def test_activation_gradients_of_a_residual_stack():
    model = jf.residual_stack(6, 5, activation="tanh", out_dim=2)
    variables = np_mlp_variables(0, 6, 5, out_dim=2, sigma_b2=0.1)
    variables["params"]["blocks"]["Dense_1"] = np_mlp_variables(1, 6, 5)["params"]["blocks"][
        "Dense_0"
    ]
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=5).astype(np.float32), rng.normal(size=2).astype(np.float32)
    layers, _, h_last = np_residual_chain(variables, x, "tanh")
    p = as64(variables["params"])
    prediction = p["readout"]["kernel"].T @ h_last + p["readout"]["bias"]
    reference = _chain_reference(
        layers, p["readout"]["kernel"], prediction, np.asarray(y, np.float64)
    )
    assert _relative(jf.activation_gradient_norms(model, variables, x, y), reference) < tol(
        "float32", "gradient"
    )


def test_activation_gradients_bad_input():
    model, variables, x, y, _ = _mlp_grads()
    with pytest.raises(ValueError, match=r"y has shape \(5, 3\)"):
        jf.activation_gradient_norms(model, variables, x, jnp.zeros((5, 3)))
    with pytest.raises(TypeError, match="jaxflow model"):
        jf.activation_gradient_norms(lambda v, h: h, variables, x, y)
    with pytest.raises(ValueError, match="not a known loss"):
        jf.activation_gradient_norms(model, variables, x, y, loss="hinge")


# ---------------------------------------------------------------------------------------------
# Dead and saturated units against a NumPy forward pass.


def _np_unit_fractions(params, x, activation, fraction):
    """Dead (φ′ = 0) and saturated (|φ′| ≤ fraction·sup|φ′|) fractions per layer, float64."""
    phi, dphi = NP_ACTIVATIONS[activation]
    p = as64(params)
    h, dead, saturated = np.asarray(x, np.float64), [], []
    for K, b in zip(p["blocks"]["Dense_0"]["kernel"], p["blocks"]["Dense_0"]["bias"]):
        z = h @ K + b
        dead.append(np.mean(np.all(dphi(z) == 0, axis=0)))
        sup = jf.get_activation(activation).sup_derivative
        saturated.append(np.mean(np.all(np.abs(dphi(z)) <= fraction * sup, axis=0)))
        h = phi(z)
    return np.array(dead), np.array(saturated)


@pytest.mark.parametrize(
    "activation, init, which",
    # Large bias variances push a fixed share of units into the flat parts for every input.
    [("relu", (2.0, 4.0), "dead"), ("tanh", (4.0, 16.0), "saturated")],
)
def test_dead_and_saturated_fractions_match_numpy(activation, init, which):
    model = jf.mlp(5, 32, activation=activation)
    variables = np_mlp_variables(0, 5, 32, sigma_w2=init[0], sigma_b2=init[1])
    x = np.random.default_rng(1).normal(size=(16, 32)).astype(np.float32)
    dead, saturated = _np_unit_fractions(variables["params"], x, activation, 0.1)
    reference = dead if which == "dead" else saturated
    # The configuration is chosen so that the reference is neither all nor nothing.
    assert 0 < reference.max() and reference.min() < 1
    computed = (
        jf.dead_unit_fraction(model, variables, x)
        if which == "dead"
        else jf.saturated_unit_fraction(model, variables, x)
    )
    np.testing.assert_array_equal(np.asarray(computed), reference)


def test_saturation_has_one_definition():
    """The relative rule |φ′| ≤ 0.1·sup|φ′| of the sweep; the old absolute threshold= warns."""
    from jaxflow.gradients.layers import SATURATION, saturated

    assert SATURATION == jf.Grid().saturation
    sigmoid = jf.get_activation("sigmoid")
    # σ′(z) = 0.1·(1/4) at |z| ≈ 3.66; tanh′(z) = 0.1 at |z| ≈ 1.82
    z = jnp.array([3.6, 3.7])
    assert saturated(sigmoid.derivative(z), sigmoid.sup_derivative).tolist() == [False, True]
    tanh = jf.get_activation("tanh")
    z = jnp.array([1.8, 1.85])
    assert saturated(tanh.derivative(z), tanh.sup_derivative).tolist() == [False, True]
    model = jf.mlp(3, 8, activation="tanh")
    variables = np_mlp_variables(0, 3, 8, sigma_w2=4.0, sigma_b2=16.0)
    x = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="threshold"):
        old = jf.saturated_unit_fraction(model, variables, x, threshold=1e-2)
    _, reference = _np_unit_fractions_absolute(variables["params"], x, "tanh", 1e-2)
    np.testing.assert_array_equal(np.asarray(old), reference)
    with pytest.raises(ValueError, match="fraction=1"):
        jf.saturated_unit_fraction(model, variables, x, fraction=1)


def _np_unit_fractions_absolute(params, x, activation, threshold):
    phi, dphi = NP_ACTIVATIONS[activation]
    p = as64(params)
    h, dead, saturated = np.asarray(x, np.float64), [], []
    for K, b in zip(p["blocks"]["Dense_0"]["kernel"], p["blocks"]["Dense_0"]["bias"]):
        z = h @ K + b
        dead.append(np.mean(np.all(dphi(z) == 0, axis=0)))
        saturated.append(np.mean(np.all(np.abs(dphi(z)) < threshold, axis=0)))
        h = phi(z)
    return np.array(dead), np.array(saturated)


def test_unit_fractions_bad_input():
    # The arguments are checked before the variables are read, so none are needed here.
    x = jnp.ones((2, 4))
    with pytest.raises(TypeError, match="jaxflow MLP"):
        jf.dead_unit_fraction(jf.residual_stack(3, 4), None, x)
    with pytest.raises(ValueError, match="depth >= 2"):
        jf.dead_unit_fraction(jf.mlp(1, 4), None, x)
    with pytest.raises(ValueError, match="threshold=0"):
        jf.saturated_unit_fraction(jf.mlp(3, 4), None, x, threshold=0)
    with pytest.raises(ValueError, match="input size 4"):
        jf.dead_unit_fraction(jf.mlp(3, 4), None, jnp.ones((2, 5)))


# ---------------------------------------------------------------------------------------------
# Training: clipping recorded, divergence caught at its first step.

# A configuration that diverges within a few SGD steps: ReLU at σ_w² = 3 (above the critical 2)
# amplifies the forward signal and the gradient ×√1.5 per layer, and lr = 0.05 is far too large
# for the resulting ~1e2 gradient norm.
DIVERGE = dict(depth=10, width=16, sigma_w2=3.0, lr=0.05, steps=50)


@functools.cache
def _diverging():
    """The model, its variables, and two batches x (2, 32, n), y (2, 32, 1) that train cycles."""
    depth, width = DIVERGE["depth"], DIVERGE["width"]
    model = jf.mlp(depth, width, activation="relu")
    variables = np_mlp_variables(0, depth, width, sigma_w2=DIVERGE["sigma_w2"])
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 32, width)), rng.normal(size=(2, 32, 1))
    return model, variables, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def _loss_and_grad(model):
    return jax.jit(
        jax.value_and_grad(lambda p, x, y: jnp.mean(jnp.square(model.apply({"params": p}, x) - y)))
    )


# One optimizer object: the compiled loop is cached on it (optax.sgd(...) builds new functions).
SGD = optax.sgd(DIVERGE["lr"])


TRACES = []


def _counting_mse(prediction, y):
    """The MSE, counting how often it is traced (i.e. how often a loop using it is compiled)."""
    TRACES.append(1)
    return jnp.mean(jnp.square(prediction - y))


@functools.cache
def _run(clip_norm=None, clip_value=None, steps=DIVERGE["steps"]):
    model, variables, x, y = _diverging()
    clip = dict(clip_norm=clip_norm, clip_value=clip_value)
    return jf.train(model, variables, (x, y), SGD, steps, loss=_counting_mse, **clip)


def test_divergence_stops_at_the_first_nonfinite_step_and_names_it():
    result = _run()
    bad = result.first_nonfinite_step
    assert bad is not None and bad <= 10 and not result.finite
    assert result.steps_run == bad and len(result.loss) == bad + 1
    assert np.all(np.isfinite(result.loss[:bad])) and not np.isfinite(result.loss[bad])
    assert result.loss[bad - 1] > 1e3 * result.loss[0]  # it blew up on the way
    assert "loss" in result.nonfinite
    named = [n for n in result.nonfinite if n != "loss"]
    last = jax.tree.map(lambda a: a[-1], result.stats)
    assert named and named == list(last.leaves_with("nonfinite"))
    assert "readout/kernel" in named  # the gradient closest to the loss goes first
    # The returned state is the last finite one, not a NaN-filled one.
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(result.variables))
    assert not result.clipped.any() and result.clip_fraction == 0.0


def test_an_update_that_overflows_the_parameters_is_caught_before_it_lands():
    model, variables, x, y = _diverging()
    result = jf.train(model, variables, (x, y), optax.sgd(3e38), 5)
    # Step 0's loss and gradient are finite; lr·g overflows float32 in the weights.
    assert result.first_nonfinite_step == 0 and np.isfinite(result.loss[0])
    assert result.nonfinite and all(n.startswith("param:") for n in result.nonfinite)
    assert "param:blocks/09/Dense_0/kernel" in result.nonfinite
    for a, b in zip(jax.tree.leaves(result.variables), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)  # the update was not applied


def test_clip_by_global_norm_keeps_the_same_run_finite_and_records_pre_clip_norms():
    unclipped, clipped = _run(), _run(clip_norm=1.0)
    assert clipped.finite and len(clipped.loss) == DIVERGE["steps"] == clipped.steps_run
    assert clipped.loss[-1] < clipped.loss[0]
    # Step 0 sees the same parameters in both runs: the recorded norm is the one before clipping,
    # and equals optax's global norm of jax.grad computed here.
    model, variables, x, y = _diverging()
    _, grads = _loss_and_grad(model)(variables["params"], x[0], y[0])
    assert _relative(clipped.grad_norm[0], optax.tree.norm(grads)) < tol("float32", "norm")
    assert clipped.grad_norm[0] == unclipped.grad_norm[0] > 10.0
    # Clipping fired exactly when the pre-clip norm exceeded the threshold.
    np.testing.assert_array_equal(clipped.clipped, clipped.grad_norm > 1.0)
    assert clipped.clip_fraction == float(np.mean(clipped.grad_norm > 1.0)) > 0.9
    assert clipped.layer_norms.shape == (DIVERGE["steps"], DIVERGE["depth"] + 1)
    rss = np.sqrt(np.sum(np.asarray(clipped.layer_norms, np.float64) ** 2, axis=1))
    assert _relative(rss, clipped.grad_norm) < tol("float32", "norm")


def test_training_figure(tmp_path):
    from jaxflow.plotting import plot_training, save_figure

    ax = plot_training(_run(clip_norm=1.0))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["loss", "global gradient norm, before clipping"]
    assert labels[2] == "clipped (100% of steps)" and labels[3] == "clip_by_global_norm(1)"
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
    save_figure(ax, tmp_path / "clipped.png")
    ax = plot_training(_run())
    assert (
        ax.get_lines()[-1].get_label() == f"first non-finite step ({_run().first_nonfinite_step})"
    )
    # The drawn norm equals the recorded one, and both stay finite where a plain float32 sum of
    # squares overflows (this run's last finite step has ‖g‖ ≈ 1e37 > √float32 max ≈ 1.8e19).
    drawn, recorded = ax.get_lines()[1].get_ydata()[:-1], _run().grad_norm[:-1]
    assert np.all(np.isfinite(recorded)) and recorded.max() > 1e30
    assert _relative(drawn, recorded) < tol("float32", "norm")


def test_clipped_runs_match_a_hand_written_loop_with_clipping_by_formula():
    """Against SGD written out: g ← g·min(1, c/‖g‖) (Pascanu et al. 2013) or clip(g, ±v),
    θ ← θ − lr·g, batches cycled t mod 2; the clipping formulas here, not optax's."""
    model, variables, x, y = _diverging()
    loss_and_grad, lr = _loss_and_grad(model), DIVERGE["lr"]
    for clip_norm, clip_value in ((1.0, None), (None, 1e-3)):
        result = _run(clip_norm=clip_norm, clip_value=clip_value)
        assert result.finite and result.clip_fraction == 1.0
        params, losses = variables["params"], []
        for t in range(DIVERGE["steps"]):
            loss, grads = loss_and_grad(params, x[t % 2], y[t % 2])
            g = [np.asarray(a, np.float64) for a in jax.tree.leaves(grads)]
            if clip_norm is not None:
                scale = min(1.0, clip_norm / np.sqrt(sum(np.sum(a**2) for a in g)))
                g = [a * scale for a in g]
            else:
                g = [np.clip(a, -clip_value, clip_value) for a in g]
            losses.append(float(loss))
            leaves = [
                np.asarray(p, np.float64) - lr * a for p, a in zip(jax.tree.leaves(params), g)
            ]
            params = jax.tree.unflatten(
                jax.tree.structure(params), [jnp.asarray(a, jnp.float32) for a in leaves]
            )
        # Float32 rounding of two runs of the same arithmetic compounds over 50 steps.
        assert _relative(result.loss, losses) < 50 * tol("float32", "gradient")
        for a, b in zip(jax.tree.leaves(result.variables["params"]), jax.tree.leaves(params)):
            np.testing.assert_allclose(a, b, rtol=50 * tol("float32", "gradient"), atol=1e-6)


def test_train_does_not_recompile_for_new_values():
    model, variables, x, y = _diverging()
    first = _run()
    traced = len(TRACES)
    halved = jax.tree.map(lambda a: 0.5 * a, variables)
    result = jf.train(model, halved, (x + 1.0, y), SGD, DIVERGE["steps"], loss=_counting_mse)
    assert len(TRACES) == traced > 0
    assert result.loss[0] != first.loss[0]


@pytest.mark.slow
def test_train_updates_batch_norm_statistics():
    model = jf.residual_stack(2, 4, norm="batch")
    x = jax.random.normal(jax.random.key(1), (8, 4))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    result = jf.train(model, variables, (x, jnp.zeros((8, 1))), optax.sgd(0.01), 2)
    before = variables["batch_stats"]["blocks"]["BatchNorm_0"]["mean"]
    after = result.variables["batch_stats"]["blocks"]["BatchNorm_0"]["mean"]
    assert result.finite and not np.allclose(before, after)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(steps=0), ValueError, "steps=0"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm=-1.0"),
        (dict(clip_value=float("inf")), ValueError, "clip_value=inf"),
        (dict(optimizer=lambda g: g), TypeError, "GradientTransformation"),
        (dict(data=(jnp.ones((4, 16)), jnp.ones((5, 1)))), ValueError, "data has x"),
        (dict(data=(jnp.ones((4, 3)), jnp.ones((4, 1)))), ValueError, "input size 16"),
    ],
)
def test_train_bad_input(kwargs, error, match):
    model, variables, x, y = _diverging()
    args = dict(data=(x, y), optimizer=optax.sgd(0.1), steps=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        jf.train(
            model, variables, args.pop("data"), args.pop("optimizer"), args.pop("steps"), **args
        )


# ---------------------------------------------------------------------------------------------
# The monitor inside an optax chain.


def _tiny_net_loss(params, x):
    h = x
    for l in range(params["blocks"]["w"].shape[0]):
        h = jnp.tanh(h @ params["blocks"]["w"][l])
    return jnp.mean(jnp.square(h @ params["readout"]["kernel"] - 1.0))


def test_monitor_passes_updates_through_and_records_gradient_stats():
    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "blocks": {"w": jax.random.normal(keys[0], (4, 3, 3))},
        "readout": {"kernel": jax.random.normal(keys[1], (3, 1))},
    }
    x = jax.random.normal(keys[2], (5, 3))
    monitored = optax.chain(jf.gradient_monitor(ratio=True, stacked="blocks"), optax.adam(1e-2))
    plain = optax.adam(1e-2)

    @jax.jit
    def step(params, state, plain_state, x):
        grads = jax.grad(_tiny_net_loss)(params, x)
        updates, state = monitored.update(grads, state, params)
        plain_updates, plain_state = plain.update(grads, plain_state)
        return (
            optax.apply_updates(params, updates),
            state,
            plain_state,
            grads,
            updates,
            plain_updates,
        )

    state, plain_state = monitored.init(params), plain.init(params)
    assert (
        int(state[0].count) == 0
        and state[0].stats.names == jf.gradient_stats(params, stacked="blocks").names
    )
    outside_stats = jax.jit(functools.partial(jf.gradient_stats, stacked="blocks"))
    for t in range(3):
        before = params
        params, state, plain_state, grads, updates, plain_updates = step(
            params, state, plain_state, x + t
        )
        for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(plain_updates)):
            assert np.array_equal(np.asarray(a), np.asarray(b))  # bit-identical to adam alone
        outside, recorded = outside_stats(grads, before), state[0].stats
        assert int(state[0].count) == t + 1
        assert recorded.names == outside.names and recorded.layer_names == outside.layer_names
        assert recorded.layer_names == (
            "blocks/00",
            "blocks/01",
            "blocks/02",
            "blocks/03",
            "readout",
        )
        np.testing.assert_array_equal(recorded.status, outside.status)
        np.testing.assert_array_equal(recorded.status_counts, outside.status_counts)
        for field in ("norm", "mean", "max_abs", "ratio", "layer_norms", "global_norm"):
            np.testing.assert_allclose(
                getattr(recorded, field), getattr(outside, field), rtol=tol("float32", "norm")
            )


def test_monitor_records_the_ratio_only_when_asked():
    params = {"w": jnp.array([1.0, 2.0, 2.0])}
    grads = {"w": jnp.array([3.0, 0.0, 4.0])}
    state = jf.gradient_monitor().init(params)
    off = jax.jit(jf.gradient_monitor().update)(grads, state, params)[1]
    on = jax.jit(jf.gradient_monitor(ratio=True).update)(grads, state, params)[1]
    assert np.isnan(off.stats.ratio[0]) and float(on.stats.ratio[0]) == pytest.approx(5.0 / 3.0)
    assert float(off.stats.norm[0]) == float(on.stats.norm[0]) == 5.0
    with pytest.raises(TypeError, match="ratio=1 must be True or False"):
        jf.gradient_monitor(ratio=1)


def test_monitor_state_keeps_its_structure_without_params():
    params = {"w": jnp.ones(3), "frozen": jnp.array(2)}
    opt = jf.gradient_monitor(vanishing=1e-3)
    state = opt.init(params)
    updates, new_state = jax.jit(opt.update)(
        {"w": jnp.array([1e-4, 0.0, 0.0]), "frozen": None}, state
    )
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert jf.GradientStatus.name_of(new_state.stats.status).tolist() == ["vanishing"]
    assert np.isnan(new_state.stats.ratio[0])
    assert new_state.stats.frozen == ("frozen",)


# ---------------------------------------------------------------------------------------------
# The fused measurement (one device): every leaf of a dtype cut into chunks of one block.


def _fused_case():
    """Leaves of many sizes, one stacked, with tiny, huge, zero, NaN and Inf entries, float32 and
    float16 (measured as float32), as NumPy float64 arrays and the gradient tree."""
    rng = np.random.default_rng(13)
    leaves = {
        "a": rng.normal(size=(37,)),
        "b": rng.normal(size=(5, 29)) * 1e-30,  # squares underflow float32
        "c": np.full((300,), 3e36),  # Σg² and Σg overflow float32
        "d": np.zeros((7, 3)),
        "e": np.r_[rng.normal(size=50), np.nan],
        "f": np.r_[rng.normal(size=20), -np.inf],
        "g": rng.normal(size=(1,)),
        "h": np.r_[rng.normal(size=1000) * 1e-3, 1e30],  # one chunk of 1e30 among small ones
    }
    stacked = rng.normal(size=(3, 70)) * np.array([[1.0], [1e-25], [1e20]])
    grads = {k: jnp.asarray(v, jnp.float32) for k, v in leaves.items()}
    grads["half"] = jnp.asarray(rng.normal(size=(33,)), jnp.float16)
    leaves["half"] = np.asarray(grads["half"], np.float64)
    grads["blocks"] = {"kernel": jnp.asarray(stacked[:, :, None], jnp.float32)}
    rows = {f"blocks/{i:02d}/kernel": stacked[i] for i in range(3)}
    rows.update({k: np.asarray(grads[k], np.float64).ravel() for k in leaves})
    return grads, rows


def test_fused_measurement_matches_numpy_float64(monkeypatch):
    from jaxflow.gradients import stats as module

    monkeypatch.setattr(module, "_fuse_across_leaves", lambda: True)
    monkeypatch.setattr(module, "_FUSE_BELOW", 250)  # "c" and "h" measured alone, in place
    grads, rows = _fused_case()
    stats = jf.gradient_stats(grads, stacked="blocks")
    rtol = tol("float32", "gradient")
    for name, g in rows.items():
        leaf = stats.leaf(name)
        if not np.all(np.isfinite(g)):
            assert leaf.status == jf.GradientStatus.NONFINITE, name
            assert np.isnan(leaf.max_abs) == np.isnan(g).any(), name
            continue
        norm = np.sqrt(np.sum(g**2))
        assert float(leaf.norm) == pytest.approx(norm, rel=rtol), name
        assert float(leaf.max_abs) == pytest.approx(np.max(np.abs(g)), rel=rtol), name
        spread = np.sum(np.abs(g)) / g.size  # the mean's error is relative to Σ|g|, not Σg
        assert abs(float(leaf.mean) - np.mean(g)) <= rtol * spread, name
    assert stats.leaf("d").status == jf.GradientStatus.VANISHING


@pytest.mark.parametrize("fused", [True, False])
def test_long_rows_keep_float32_accuracy(monkeypatch, fused):
    """Layers of 2^18 entries (a scanned stack of 512×512 kernels): each layer's norm and mean vs
    float64 to the summation floor, not to the error of one long sequential sum; and rows of the
    same length near the float32 maximum and minimum, whose plain Σg² and Σg overflow or lose
    every square."""
    from jaxflow.gradients import stats as module

    monkeypatch.setattr(module, "_fuse_across_leaves", lambda: fused)
    rng = np.random.default_rng(5)
    n = 1 << 18
    stacked = rng.normal(size=(4, n)) + 0.3
    stacked[2] *= 1e33  # Σg overflows float32 (Σg² would, unscaled, already at ~1e19)
    stacked[3] *= 1e-30  # every square underflows float32
    grads = {"blocks": {"kernel": jnp.asarray(stacked, jnp.float32)}}
    g64 = np.asarray(grads["blocks"]["kernel"], np.float64)
    stats = jf.gradient_stats(grads, stacked="blocks")
    rtol = tol("float32", "long_sum")
    for i in range(4):
        leaf = stats.leaf(f"blocks/{i:02d}/kernel")
        assert float(leaf.norm) == pytest.approx(np.linalg.norm(g64[i]), rel=rtol), i
        assert float(leaf.mean) == pytest.approx(np.mean(g64[i]), rel=rtol), i
        assert float(leaf.max_abs) == np.max(np.abs(g64[i])), i


@pytest.mark.parametrize("fused", [True, False])
def test_mean_of_large_entries_of_both_signs(monkeypatch, fused):
    """Finite entries near the float32 maximum, of both signs: the plain Σg overflows to +inf and
    to -inf on the way (NaN), and the mean must still be the float64 one, not NaN. (The norm,
    1.9e39 for the matrix, is above the float32 maximum: inf is its float32 value.)"""
    from jaxflow.gradients import stats as module

    monkeypatch.setattr(module, "_fuse_across_leaves", lambda: fused)
    g = np.random.default_rng(8).normal(size=(64, 64)) * 3e37
    grads = {"w": jnp.asarray(g, jnp.float32), "b": jnp.asarray(g[0], jnp.float32)}
    stats = jf.gradient_stats(grads)
    for name in ("w", "b"):
        g64 = np.asarray(grads[name], np.float64)
        leaf = stats.leaf(name)
        spread = np.mean(np.abs(g64))  # the mean's error is relative to Σ|g|, not Σg
        assert abs(float(leaf.mean) - np.mean(g64)) <= tol("float32", "gradient") * spread, name
        norm64 = np.linalg.norm(g64)
        if norm64 > np.finfo(np.float32).max:
            assert float(leaf.norm) == np.inf, name
        else:
            assert float(leaf.norm) == pytest.approx(norm64, rel=tol("float32", "gradient")), name
    assert stats.leaves_with("exploding") == ("b", "w")

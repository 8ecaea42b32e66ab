"""The Jacobian chain against float64 NumPy on the closed forms, and the chain-rule check."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from helpers import np_mlp_chain, np_residual_chain, sv_error, tol

WIDTH = 16


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@functools.cache
def _compiled_chain(model, wrt="postactivation", mode="rev"):
    return jax.jit(lambda v, x: jf.jacobian_chain(model, v, x, wrt=wrt, mode=mode))


def _setup(model, seed=0, batch=None):
    shape = (model.input_dim,) if batch is None else (batch, model.input_dim)
    x = jax.random.normal(jax.random.key(seed + 100), shape)
    return model.init(jax.random.key(seed), x), x


MLPS = {
    act: jf.mlp(12, WIDTH, activation=act, init="xavier", in_dim=5, out_dim=2)
    for act in ("relu", "tanh", "sigmoid")
}


@pytest.mark.parametrize("activation", sorted(MLPS))
@pytest.mark.parametrize("wrt", ["postactivation", "preactivation"])
def test_mlp_chain_matches_numpy_closed_form(activation, wrt):
    model = MLPS[activation]
    variables, x = _setup(model)
    chain = _compiled_chain(model, wrt)(variables, x)
    layers, products, _ = np_mlp_chain(variables["params"], x, activation, wrt)
    assert (
        chain.layers.shape
        == layers.shape
        == ((12 if wrt == "postactivation" else 11), WIDTH, WIDTH)
    )
    for computed, reference in zip(chain.layers, layers):
        assert _relative(computed, reference) < tol("float32", "jacobian")
    for computed, reference in zip(chain.products, products):
        assert _relative(computed, reference) < 10 * tol("float32", "jacobian")
    assert sv_error(chain.layer_singular_values, layers) < tol("float32", "svd")
    assert sv_error(chain.product_singular_values, products) < tol("float32", "svd")
    assert bool(chain.finite) and not bool(chain.underflow.any())
    # ReLU's J_l have zero rows: the products are exactly rank-deficient, and `resolved` says so.
    # The count is a threshold at σ_max·n·ε: bracket it by the float64 reference's rank at 10× and
    # 1/10 of that floor.
    floor = WIDTH * np.finfo(np.float32).eps * np.linalg.norm(products, 2, axis=(1, 2))
    ref_sv = np.linalg.svd(products, compute_uv=False)
    assert np.all(chain.resolved >= np.sum(ref_sv > 10 * floor[:, None], axis=1))
    assert np.all(chain.resolved <= np.sum(ref_sv > 0.1 * floor[:, None], axis=1))
    if activation == "relu":
        assert int(chain.resolved.min()) < WIDTH


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_last_product_equals_jacobian_of_hidden_map(activation):
    model = MLPS[activation]
    variables, x = _setup(model)
    stack = model.decompose(variables)

    def hidden(h0):
        return jax.lax.scan(lambda h, b: (stack.block_fn(b, h), None), h0, stack.blocks)[0]

    reference = jax.jacrev(hidden)(stack.input_map(x))
    chain = _compiled_chain(model)(variables, x)
    assert _relative(chain.products[-1], reference) < 10 * tol("float32", "jacobian")


@pytest.mark.parametrize("norm", [None, "batch"])
def test_residual_chain_is_identity_plus_branch(norm):
    model = jf.residual_stack(6, WIDTH, activation="tanh", init="xavier", norm=norm)
    variables, x = _setup(model)
    if norm == "batch":  # move the running statistics away from (0, 1) so they matter
        stats = variables["batch_stats"]["blocks"]["BatchNorm_0"]
        keys = jax.random.split(jax.random.key(3))
        stats = {
            "mean": stats["mean"] + jax.random.normal(keys[0], stats["mean"].shape),
            "var": stats["var"]
            * jax.random.uniform(keys[1], stats["var"].shape, minval=0.2, maxval=3),
        }
        variables = {**variables, "batch_stats": {"blocks": {"BatchNorm_0": stats}}}
    chain = _compiled_chain(model)(variables, x)
    layers, products, _ = np_residual_chain(variables, x, "tanh", norm)
    for computed, reference in zip(chain.layers, layers):
        assert _relative(computed, reference) < tol("float32", "jacobian")
    assert sv_error(chain.product_singular_values, products) < tol("float32", "svd")


def test_batchnorm_jacobian_uses_running_statistics():
    """In inference mode the chain does not depend on which other inputs share the batch."""
    model = jf.residual_stack(3, WIDTH, norm="batch")
    variables, xs = _setup(model, batch=4)
    one = _compiled_chain(model)(variables, xs[0])
    batched = _compiled_chain(model)(variables, xs)
    np.testing.assert_array_equal(one.layers, batched.layers[0])


def test_user_block_function():
    depth, n = 7, 6
    ws = jax.random.normal(jax.random.key(0), (depth, n, n)) / np.sqrt(n)
    h0 = jax.random.normal(jax.random.key(1), (n,))

    def block(w, h):
        return jnp.sin(jnp.matmul(w, h, precision="highest"))

    chain = jf.jacobian_chain(block, ws, h0)
    h, P = np.asarray(h0, np.float64), np.eye(n)
    for w in np.asarray(ws, np.float64):
        z = w @ h
        J = np.diag(np.cos(z)) @ w
        h, P = np.sin(z), J @ P
    assert _relative(chain.products[-1], P) < 10 * tol("float32", "jacobian")


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_jacfwd_agrees_with_jacrev(activation):
    model = MLPS[activation]
    variables, x = _setup(model)
    rev = _compiled_chain(model, mode="rev")(variables, x)
    fwd = _compiled_chain(model, mode="fwd")(variables, x)
    np.testing.assert_allclose(fwd.layers, rev.layers, rtol=tol("float32", "jacobian"), atol=1e-7)


def test_vmap_over_inputs_and_parameter_sets():
    model = MLPS["tanh"]
    variables, xs = _setup(model, batch=3)
    batched = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, xs)
    assert batched.layers.shape == (3, 12, WIDTH, WIDTH)
    single = _compiled_chain(model)(variables, xs[1])
    assert _relative(batched.products[1], single.products) < tol("float32", "jacobian")

    keys = jax.random.split(jax.random.key(9), 2)
    stacked = jax.vmap(lambda k: model.init(k, xs[0]))(keys)
    over_params = jax.jit(jax.vmap(lambda v: jf.jacobian_chain(model, v, xs[0])))(stacked)
    second = jax.tree.map(lambda a: a[1], stacked)
    np.testing.assert_allclose(
        over_params.layer_singular_values[1],
        _compiled_chain(model)(second, xs[0]).layer_singular_values,
        rtol=1e-5,
    )


def test_singular_values_descending_and_float64():
    with jax.enable_x64(True):
        model = jf.mlp(5, WIDTH, activation="tanh", init="orthogonal", param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(1), (WIDTH,), jnp.float64)
        variables = model.init(jax.random.key(0), x)
        chain = jf.jacobian_chain(model, variables, x)
        assert chain.product_singular_values.dtype == jnp.float64
        assert bool(jnp.all(jnp.diff(chain.product_singular_values, axis=-1) <= 0))
        _, products, _ = np_mlp_chain(variables["params"], x, "tanh")
        assert sv_error(chain.product_singular_values, products) < tol("float64", "svd")


def test_deep_sigmoid_chain_flags_underflow():
    """Xavier sigmoid at width 64 shrinks ~0.24 per layer: float32 products underflow by ~60."""
    model = jf.mlp(90, 64, activation="sigmoid", init="xavier")
    variables, x = _setup(model)
    chain = _compiled_chain(model)(variables, x)
    flags = np.asarray(chain.underflow)
    assert not flags[:10].any() and flags[-1]
    first = int(np.argmax(flags))
    assert 30 <= first <= 60
    assert np.all(flags[first:])  # once gone, it stays gone
    sigma_max = np.asarray(chain.product_singular_values[:, 0], np.float64)
    floor = sigma_max * 64 * np.finfo(np.float32).eps
    np.testing.assert_array_equal(flags, floor < np.finfo(np.float32).tiny)
    # Long before that, the small singular values are rounding: fewer and fewer are resolved.
    resolved = np.asarray(chain.resolved)
    assert resolved[0] == 64 and resolved[first - 1] < 32
    assert np.all(np.diff(resolved[:first]) <= 2)


FLOAT64_FAST = {("mlp", "relu"), ("residual", "tanh"), ("mlp", "sigmoid")}


def _covering(depths, activations, families, middle):
    """Every (activation, family) at the ``middle`` depth and every depth for one activation per
    family in the fast suite; the rest of the product (each its own compilation, ~1.5 s) in the
    slow pass."""
    cases = []
    for depth in depths:
        for activation in activations:
            for i, family in enumerate(families):
                fast = depth == middle or activation == activations[i % len(activations)]
                marks = () if fast else pytest.mark.slow
                cases.append(pytest.param(family, activation, depth, marks=marks))
    return cases


@pytest.mark.parametrize(
    "family, activation, depth",
    _covering([1, 7, 50], ["relu", "tanh", "sigmoid"], ["mlp", "residual"], middle=7),
)
def test_chain_rule_float32(family, activation, depth):
    builder = jf.mlp if family == "mlp" else jf.residual_stack
    init = "he" if activation == "relu" else "xavier"
    model = builder(depth, WIDTH, activation=activation, init=init, in_dim=5, out_dim=3)
    variables, x = _setup(model, seed=depth)
    y = jax.random.normal(jax.random.key(5), (3,))
    check = jax.jit(lambda v, x, y: jf.chain_rule_check(model, v, x, y))(variables, x, y)
    assert bool(check.finite)
    assert float(check.explicit_error) < tol("float32", "chain_rule")
    assert float(check.vjp_error) < tol("float32", "chain_rule")


# Each compiles its float64 model (~2 s); the fast suite keeps every activation once and both
# families, the slow pass the rest.
@pytest.mark.parametrize(
    "family, activation",
    [
        pytest.param(f, a, marks=() if (f, a) in FLOAT64_FAST else pytest.mark.slow)
        for a in ("relu", "tanh", "sigmoid")
        for f in ("mlp", "residual")
    ],
)
def test_chain_rule_float64(family, activation):
    with jax.enable_x64(True):
        builder = jf.mlp if family == "mlp" else jf.residual_stack
        model = builder(50, WIDTH, activation=activation, init="xavier", in_dim=5, out_dim=3,
                        param_dtype=jnp.float64)  # fmt: skip
        x = jax.random.normal(jax.random.key(1), (5,), jnp.float64)
        y = jax.random.normal(jax.random.key(2), (3,), jnp.float64)
        check = jf.chain_rule_check(model, model.init(jax.random.key(0), x), x, y)
        assert check.explicit.dtype == jnp.float64
        assert float(check.explicit_error) < tol("float64", "chain_rule")
        assert float(check.vjp_error) < tol("float64", "chain_rule")


def test_chain_rule_explicit_side_matches_numpy():
    model = MLPS["sigmoid"]
    variables, x = _setup(model)
    y = jnp.array([0.5, -1.0])
    check = jf.chain_rule_check(model, variables, x, y)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    layers, _, h = np_mlp_chain(variables["params"], x, "sigmoid")
    prediction = p["readout"]["kernel"].T @ h + p["readout"]["bias"]
    v = p["readout"]["kernel"] @ (2 * (prediction - np.asarray(y)) / 2)
    for J in layers[::-1]:
        v = J.T @ v
    reference = p["input"]["kernel"] @ v
    assert np.linalg.norm(check.explicit - reference) / np.linalg.norm(reference) < tol(
        "float32", "chain_rule"
    )


def test_chain_rule_batched_and_callable_loss():
    model = MLPS["tanh"]
    variables, xs = _setup(model, batch=3)
    ys = jnp.zeros((3, 2))
    check = jf.chain_rule_check(model, variables, xs, ys, loss=lambda p, y: jnp.sum(jnp.abs(p - y)))
    assert check.explicit.shape == (3, 5)
    assert float(check.explicit_error.max()) < tol("float32", "chain_rule")


@pytest.mark.parametrize("batch", [None, 4])
def test_linear_layer_grads_match_vjp(batch):
    W = jax.random.normal(jax.random.key(0), (3, 5))
    b = jax.random.normal(jax.random.key(1), (3,))
    a = jax.random.normal(jax.random.key(2), (5,) if batch is None else (batch, 5))
    delta = jax.random.normal(jax.random.key(3), (3,) if batch is None else (batch, 3))

    def z(W, b, a):
        return jnp.matmul(a, W.T, precision="highest") + jnp.broadcast_to(b, delta.shape)

    _, pullback = jax.vjp(z, W, b, a)
    dW, db, da = pullback(delta)
    grads = jf.linear_layer_grads(W, a, delta)
    for ours, theirs in ((grads.weight, dW), (grads.bias, db), (grads.input, da)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_linear_layer_grads_bad_shapes():
    with pytest.raises(ValueError, match="a has shape"):
        jf.linear_layer_grads(jnp.ones((3, 5)), jnp.ones(4), jnp.ones(3))
    with pytest.raises(ValueError, match="delta has shape"):
        jf.linear_layer_grads(jnp.ones((3, 5)), jnp.ones(5), jnp.ones(4))
    with pytest.raises(ValueError, match="W has shape"):
        jf.linear_layer_grads(jnp.ones(3), jnp.ones(5), jnp.ones(3))


def test_input_mismatch_is_named():
    model = MLPS["relu"]
    variables, _ = _setup(model)
    with pytest.raises(ValueError, match=r"x has shape \(16,\).* 5"):
        jf.jacobian_chain(model, variables, jnp.ones(WIDTH))
    with pytest.raises(ValueError, match=r"x has shape"):
        jf.chain_rule_check(model, variables, jnp.ones(7), jnp.ones(2))


def test_non_square_block_function_is_refused():
    ws = jnp.ones((3, 4, 6))
    with pytest.raises(ValueError, match="square stack"):
        jf.jacobian_chain(lambda w, h: w @ h, ws, jnp.ones(6))


def _token_mixing(w, h):
    """A (tokens × width) block: each token sees the mean over tokens."""
    return h + jnp.tanh(h @ w + jnp.mean(h, axis=0, keepdims=True))


@pytest.mark.parametrize(
    "measure", [jf.jacobian_chain, jf.layer_jacobians, jf.log_spectrum, jf.lyapunov_exponents]
)
def test_a_block_that_mixes_the_rows_of_a_2d_h0_is_refused(measure):
    """A 2-D h0 is a batch: a (tokens × width) state given as it is would be measured token by
    token with the others held out, silently wrong; the error says to flatten it."""
    ws = jax.random.normal(jax.random.key(0), (3, 6, 6)) / 3
    h0 = jax.random.normal(jax.random.key(1), (4, 6))
    options = {"batches": 3} if measure is jf.lyapunov_exponents else {}
    with pytest.raises(ValueError, match=r"mixes the rows of h0 \(shape \(4, 6\)\).*flatten"):
        measure(_token_mixing, ws, h0, **options)


@pytest.mark.parametrize(
    "measure", [jf.jacobian_chain, jf.layer_jacobians, jf.log_spectrum, jf.lyapunov_exponents]
)
def test_mixing_is_refused_under_jit_and_vmap_too(measure):
    """Traced, the values are unknown: the check runs on random stand-ins of their shapes, so a
    (tokens × width) state inside jit or vmap is refused as it is eagerly."""
    ws = jax.random.normal(jax.random.key(0), (3, 6, 6)) / 3
    h0 = jax.random.normal(jax.random.key(1), (4, 6))
    options = {"batches": 3} if measure is jf.lyapunov_exponents else {}
    run = functools.partial(measure, _token_mixing, **options)
    with pytest.raises(ValueError, match=r"mixes the rows of h0 \(shape \(4, 6\)\)"):
        jax.jit(run)(ws, h0)
    with pytest.raises(ValueError, match=r"mixes the rows of h0 \(shape \(4, 6\)\)"):
        jax.vmap(run, in_axes=(None, 0))(ws, jnp.stack([h0, h0]))
    # Rows that do not mix pass traced as eagerly.
    plain = jax.jit(functools.partial(measure, _row_wise, **options))(ws, h0)
    assert jax.tree.leaves(plain)


def _row_wise(w, h):
    return h + jnp.tanh(h @ w)


def _gated_mixing(p, h):
    """ReZero: h + α·mix(h); α = 0 makes the block the identity, mixing nothing."""
    return h + p["alpha"] * _token_mixing(p["w"], h)


def test_every_block_is_checked_not_the_first_alone():
    ws = jax.random.normal(jax.random.key(0), (3, 6, 6)) / 3
    params = {"w": ws, "alpha": jnp.array([0.0, 0.5, 0.5])}
    h0 = jax.random.normal(jax.random.key(1), (4, 6))
    with pytest.raises(ValueError, match=r"block 1's output on h0 as a whole differs"):
        jf.jacobian_chain(_gated_mixing, params, h0)


def test_the_flattened_token_state_matches_numpy_float64():
    """The error's recipe, flattened to (tokens·width,): J_1 against an explicit float64 Jacobian
    (finite differences would blur it; the block is written out by hand in NumPy)."""
    t, d = 4, 6
    ws = jax.random.normal(jax.random.key(0), (2, d, d)) / 3
    h0 = jax.random.normal(jax.random.key(1), (t, d))
    chain = jf.jacobian_chain(
        lambda w, h: _token_mixing(w, h.reshape(t, d)).reshape(-1), ws, h0.reshape(-1)
    )
    w, h = np.asarray(ws[0], np.float64), np.asarray(h0, np.float64)
    z = h @ w + h.mean(axis=0)
    s = 1 - np.tanh(z) ** 2  # (t, d): tanh' at each entry
    # ∂out[i, a]/∂h[j, b] = δ_ij δ_ab + s[i, a] (w[b, a] δ_ij + δ_ab / t)
    eye_t, eye_d = np.eye(t), np.eye(d)
    jac = np.einsum("ij,ab->iajb", eye_t, eye_d) + s[:, :, None, None] * (
        np.einsum("ij,ba->iajb", eye_t, w) + np.einsum("ij,ab->iajb", np.ones((t, t)) / t, eye_d)
    )
    np.testing.assert_allclose(
        chain.layers[0], jac.reshape(t * d, t * d), rtol=0, atol=tol("float32", "jacobian")
    )


def test_a_block_function_that_does_not_fit_h0_or_an_integer_h0_is_refused():
    ws = jnp.ones((3, 4, 4))
    with pytest.raises(ValueError, match=r"cannot be applied to h of shape \(6,\).*\(4, 4\)"):
        jf.jacobian_chain(lambda w, h: w @ h, ws, jnp.ones(6))
    per_block = [{"w": jnp.ones((4, 4))}] * 3  # a list of per-block params, not stacked
    with pytest.raises(ValueError, match="are the params stacked"):
        jf.log_spectrum(lambda p, h: p["w"] @ h, per_block, jnp.ones(4))
    with pytest.raises(TypeError, match="h0 has dtype int32"):
        jf.layer_jacobians(lambda w, h: w @ h, ws, jnp.ones(4, jnp.int32))


def test_preactivation_needs_mlp_of_depth_two():
    model = jf.residual_stack(3, WIDTH)
    with pytest.raises(ValueError, match="mlp only"):
        jf.jacobian_chain(model, *_setup(model), wrt="preactivation")
    shallow = jf.mlp(1, WIDTH)
    with pytest.raises(ValueError, match="depth >= 2"):
        jf.jacobian_chain(shallow, *_setup(shallow), wrt="preactivation")


def test_unknown_mode_and_wrt():
    model = MLPS["relu"]
    with pytest.raises(ValueError, match="mode='backward'"):
        jf.jacobian_chain(model, *_setup(model), mode="backward")
    with pytest.raises(ValueError, match="wrt='pre'"):
        jf.jacobian_chain(model, *_setup(model), wrt="pre")


def test_other_modules_are_refused():
    import flax.linen as nn

    with pytest.raises(TypeError, match="Dense"):
        jf.jacobian_chain(nn.Dense(3), {}, jnp.ones(3))


@pytest.mark.parametrize(
    "measure", [jf.jacobian_chain, jf.layer_jacobians, jf.log_spectrum, jf.lyapunov_exponents]
)
def test_nnx_and_equinox_modules_are_refused_with_block_chain_named(measure):
    """They are callable, so they used to be read as a block function with empty params."""
    import equinox as eqx
    from flax import nnx

    for module, framework in (
        (nnx.Linear(3, 3, rngs=nnx.Rngs(0)), "flax.nnx"),
        (eqx.nn.Linear(3, 3, key=jax.random.key(0)), "equinox"),
    ):
        with pytest.raises(TypeError, match=rf"{framework} module \(Linear\).*jf.block_chain"):
            measure(module, None, jnp.ones(3))


def test_non_finite_inputs_and_parameters_are_reported():
    model = MLPS["tanh"]
    variables, x = _setup(model)
    assert not bool(_compiled_chain(model)(variables, x.at[0].set(jnp.nan)).finite)
    bad = jax.tree.map(lambda a: a, variables)
    bad["params"]["readout"]["kernel"] = bad["params"]["readout"]["kernel"].at[0, 0].set(jnp.inf)
    assert not bool(_compiled_chain(model)(bad, x).finite)
    check = jf.chain_rule_check(model, bad, x, jnp.zeros(2))
    assert not bool(check.finite)


def test_a_bfloat16_block_function_is_measured_in_float32():
    """Half-precision h0 and params: the chain runs in float32 (LAPACK has no bfloat16) on the
    block's own bfloat16 arithmetic, against float64 NumPy to bfloat16's 8 bits."""
    ws = (jax.random.normal(jax.random.key(0), (3, 6, 6)) / np.sqrt(6)).astype(jnp.bfloat16)
    h0 = jax.random.normal(jax.random.key(1), (6,)).astype(jnp.bfloat16)
    block = lambda w, h: jnp.tanh(w @ h)  # noqa: E731
    for measure in (jf.jacobian_chain, jax.jit(jf.jacobian_chain, static_argnums=0)):
        chain = measure(block, ws, h0)
        assert chain.product_singular_values.dtype == jnp.float32
        h, P = np.asarray(h0, np.float64), np.eye(6)
        for w in np.asarray(ws, np.float64):
            z = w @ h
            P, h = ((1 - np.tanh(z) ** 2)[:, None] * w) @ P, np.tanh(z)
        expected = np.linalg.svd(P, compute_uv=False)
        np.testing.assert_allclose(
            chain.product_singular_values[-1], expected, rtol=5e-2, atol=1e-2
        )
    values = jf.log_spectrum(block, ws, h0, layers="last").values[0]
    np.testing.assert_allclose(values, np.log(expected), atol=5e-2)


def test_mixing_is_refused_with_a_nan_in_h0_and_half_blocks_run_on_float32_h0():
    ws = jax.random.normal(jax.random.key(0), (3, 6, 6)) / 3
    h0 = jax.random.normal(jax.random.key(1), (4, 6)).at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="mixes the rows"):
        jf.jacobian_chain(_token_mixing, ws, h0)
    # float32 h0, a block returning bfloat16: one float32 state from layer to layer.
    half = lambda w, h: jnp.tanh(w.astype(jnp.bfloat16) @ h.astype(jnp.bfloat16))  # noqa: E731
    chain = jf.jacobian_chain(half, ws, jnp.ones(6))
    full = jf.jacobian_chain(lambda w, h: jnp.tanh(w @ h), ws, jnp.ones(6))
    np.testing.assert_allclose(
        chain.product_singular_values, full.product_singular_values, rtol=5e-2, atol=1e-2
    )

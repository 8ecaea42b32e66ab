"""jf.train with a loss function: linen with dropout and BatchNorm, NNX, Equinox.

Each run is checked against a plain hand-written optax loop (``jax.value_and_grad``,
``optimizer.update``, ``optax.apply_updates``) on the same loss, batches and per-step keys, and
the recorded norms against NumPy float64.
"""

from __future__ import annotations

import itertools

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

RTOL = 50 * tol("float32", "gradient")  # float32 rounding of two runs compounds over the steps


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _reference(loss_fn, params, batches, optimizer, key=None, state=None):
    """The plain optax loop: (losses, grads at each step, final params, final state)."""
    stateful = state is not None

    @jax.jit
    def step(params, state, opt_state, batch, rng):
        if stateful:
            (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, state, batch, rng
            )
        else:
            loss, grads = jax.value_and_grad(loss_fn)(params, batch, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss, grads

    opt_state, losses, all_grads = optimizer.init(params), [], []
    for t, batch in enumerate(batches):
        rng = None if key is None else jax.random.fold_in(key, t)
        params, state, opt_state, loss, grads = step(params, state, opt_state, batch, rng)
        losses.append(float(loss))
        all_grads.append(grads)
    return np.array(losses), all_grads, params, state


def _assert_trees_close(actual, expected, rtol=RTOL):
    actual, expected = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert len(actual) == len(expected) > 0
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)


def _norm64(tree):
    return float(
        np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(tree)))
    )


# ---------------------------------------------------------------------------------------------
# Flax linen: a CNN on 8×8×1 images, dropout and training-mode BatchNorm.


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.avg_pool(nn.relu(x), (2, 2), (2, 2))
        x = nn.Dropout(0.25, deterministic=not train)(x.reshape((x.shape[0], -1)))
        return nn.Dense(3)(x)


CNN_MODEL = CNN()
N, B, STEPS = 32, 8, 24


def cnn_loss(params, batch_stats, batch, rng):
    x, y = batch
    logits, updated = CNN_MODEL.apply(
        {"params": params, "batch_stats": batch_stats},
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": rng},
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updated["batch_stats"]


def _cnn_setup():
    kx, ky, kinit = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (N, 8, 8, 1))
    y = jax.random.randint(ky, (N,), 0, 3)
    variables = CNN_MODEL.init(kinit, x[:B], train=False)
    return x, y, variables


def test_linen_cnn_with_dropout_and_batch_norm_matches_a_plain_optax_loop():
    x, y, variables = _cnn_setup()
    optimizer, key = optax.sgd(0.1, momentum=0.9), jax.random.key(7)
    result = jf.train(
        cnn_loss,
        variables["params"],
        (x, y),
        optimizer,
        STEPS,
        state=variables["batch_stats"],
        key=key,
        batch_size=B,
    )
    assert result.finite and result.steps_run == STEPS and result.loss.shape == (STEPS,)

    batches = [(x[(t % (N // B)) * B :][:B], y[(t % (N // B)) * B :][:B]) for t in range(STEPS)]
    losses, grads, params, batch_stats = _reference(
        cnn_loss, variables["params"], batches, optimizer, key, variables["batch_stats"]
    )
    assert _relative(result.loss, losses) < RTOL
    _assert_trees_close(result.params, params)
    assert result.variables is result.params
    # BatchNorm's running statistics were threaded through every step: they moved, and they
    # equal the plain loop's.
    before = variables["batch_stats"]["BatchNorm_0"]["mean"]
    after = result.state["BatchNorm_0"]["mean"]
    assert np.max(np.abs(np.asarray(after) - np.asarray(before))) > 1e-3
    _assert_trees_close(result.state, batch_stats)
    # Dropout saw a different key each step: the loss of a repeated batch is not repeated.
    assert result.loss[0] != result.loss[N // B]
    # Records: the pre-clip global norm and the per-layer norms (top-level modules) of each
    # step's gradient, against float64 norms of the plain loop's gradients.
    assert result.layer_names == ("BatchNorm_0", "Conv_0", "Dense_0")
    for t in (0, STEPS - 1):
        expected = [_norm64(grads[t][name]) for name in result.layer_names]
        assert _relative(result.layer_norms[t], expected) < RTOL
        assert _relative(result.grad_norm[t], _norm64(grads[t])) < RTOL
    assert not result.clipped.any() and result.clip_fraction == 0.0


def test_the_same_run_from_an_iterator_of_batches_and_group_by():
    """An iterator of the same batches gives the compiled loop's records; group_by passes
    through to the per-layer norms."""
    x, y, variables = _cnn_setup()
    optimizer, key, steps = optax.sgd(0.1, momentum=0.9), jax.random.key(7), 6
    kwargs = dict(state=variables["batch_stats"], key=key, group_by=lambda name: name[-4:])
    compiled = jf.train(
        cnn_loss, variables["params"], (x, y), optimizer, steps, batch_size=B, **kwargs
    )
    batches = ((x[i * B : (i + 1) * B], y[i * B : (i + 1) * B]) for i in range(N // B))
    looped = jf.train(cnn_loss, variables["params"], batches, optimizer, steps, **kwargs)
    # A one-shot iterator of 4 batches ends the run after 4 steps.
    assert looped.steps_run == len(looped.loss) == N // B and looped.finite
    assert compiled.layer_names == looped.layer_names == ("bias", "cale", "rnel")
    assert _relative(looped.loss, compiled.loss[: N // B]) < RTOL
    assert _relative(looped.layer_norms, compiled.layer_norms[: N // B]) < RTOL


# ---------------------------------------------------------------------------------------------
# Flax NNX: split into parameters and the rest (BatchNorm statistics), merged in the loss.


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.linear1 = nnx.Linear(4, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.2)
        self.linear2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x, rng):
        h = nnx.relu(self.norm(self.linear1(x)))
        return self.linear2(self.dropout(h, rngs=rng))


def test_nnx_model_through_split_and_merge_matches_a_plain_optax_loop():
    model = NnxNet(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, rest, batch, rng):
        model = nnx.merge(graphdef, params, rest, copy=True)
        x, y = batch
        loss = jnp.mean((model(x, rng) - y) ** 2)
        return loss, nnx.state(model, nnx.Not(nnx.Param))

    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jnp.sin(x[:, :1])
    optimizer, key, steps = optax.sgd(0.05, momentum=0.9), jax.random.key(3), 20
    result = jf.train(loss_fn, params, (x, y), optimizer, steps, state=rest, key=key)
    assert result.finite and result.layer_names == ("linear1", "linear2", "norm")
    losses, grads, ref_params, ref_rest = _reference(
        loss_fn, params, [(x, y)] * steps, optimizer, key, rest
    )
    assert _relative(result.loss, losses) < RTOL and losses[-1] < losses[0]
    _assert_trees_close(result.params, ref_params)
    _assert_trees_close(result.state, ref_rest)
    assert not np.allclose(result.state["norm"]["mean"][...], rest["norm"]["mean"][...])
    assert _relative(result.grad_norm[0], _norm64(grads[0])) < RTOL
    # The usual way back into the module.
    nnx.update(model, result.params, result.state)
    np.testing.assert_array_equal(model.linear2.kernel[...], result.params["linear2"]["kernel"])


# ---------------------------------------------------------------------------------------------
# Equinox: an MLP partitioned into inexact arrays and the static rest.

TRACES = []


def _eqx_mlp():
    model = eqx.nn.MLP(4, 1, 8, 3, key=jax.random.key(2))  # relu; layers[0] … layers[3]
    return eqx.partition(model, eqx.is_inexact_array)


def _eqx_loss(static):
    def loss_fn(params, batch, rng):
        TRACES.append(1)
        model = eqx.combine(params, static)
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    return loss_fn


def _eqx_data(n=64):
    x = jax.random.normal(jax.random.key(5), (n, 4))
    return x, jnp.cos(x[:, :1]) + x[:, 1:2]


def _np_mlp_grads(params, x, y):
    """∂ mean((f(x) − y)²)/∂(W_l, b_l) of the ReLU MLP by hand, float64 backprop."""
    layers = [
        (np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64))
        for layer in params.layers
    ]
    h, zs, hs = np.asarray(x, np.float64), [], []
    for i, (w, b) in enumerate(layers):
        hs.append(h)
        z = h @ w.T + b
        zs.append(z)
        h = np.maximum(z, 0.0) if i < len(layers) - 1 else z
    delta = 2.0 * (h - np.asarray(y, np.float64)) / h.size
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        grads[i] = (delta.T @ hs[i], delta.sum(axis=0))
        if i:
            delta = (delta @ layers[i][0]) * (zs[i - 1] > 0)
    return grads


def test_equinox_mlp_from_an_iterator_compiles_once_and_matches_a_plain_optax_loop():
    params, static = _eqx_mlp()
    loss_fn, (x, y) = _eqx_loss(static), _eqx_data()
    optimizer, steps = optax.sgd(0.05, momentum=0.9), 16
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    TRACES.clear()
    result = jf.train(loss_fn, params, itertools.cycle(batches), optimizer, steps, clip_norm=1.0)
    assert len(TRACES) == 1  # one jitted step, traced once for 16 steps
    assert result.finite and result.steps_run == steps

    # A data loader: an iterable (not an iterator), restarted every epoch; the same step again
    # (same loss function and optimizer objects), so nothing is traced.
    class Loader:
        def __iter__(self):
            return iter(batches)

    TRACES.clear()
    result = jf.train(loss_fn, params, Loader(), optimizer, steps, clip_norm=1.0)
    assert len(TRACES) == 0 and result.finite and result.steps_run == steps

    clipped = optax.chain(optax.clip_by_global_norm(1.0), optimizer)
    reference = [batches[t % 4] for t in range(steps)]
    losses, grads, ref_params, _ = _reference(loss_fn, params, reference, clipped)
    assert _relative(result.loss, losses) < RTOL
    _assert_trees_close(result.params, ref_params)
    model = eqx.combine(result.params, static)  # back into a module
    assert model.layers[3].weight.shape == (1, 8)
    # Clipping recorded where the pre-clip norm exceeded 1.
    norms = np.array([_norm64(g) for g in grads])
    assert _relative(result.grad_norm, norms) < RTOL
    np.testing.assert_array_equal(result.clipped, result.grad_norm > 1.0)
    assert 0 < result.clip_fraction < 1


def test_equinox_layer_norms_grouped_per_block_against_numpy_float64():
    params, static = _eqx_mlp()
    x, y = _eqx_data()
    result = jf.train(_eqx_loss(static), params, (x, y), optax.sgd(0.01), 3)
    assert result.layer_names == ("layers/0", "layers/1", "layers/2", "layers/3")
    assert "activation" in result.stats.frozen  # Equinox's function fields are skipped
    grads = _np_mlp_grads(params, x, y)  # step 0: the initial params, the full batch
    expected = [np.sqrt(np.sum(gw**2) + np.sum(gb**2)) for gw, gb in grads]
    assert _relative(result.layer_norms[0], expected) < tol("float32", "gradient")
    assert _relative(result.grad_norm[0], np.sqrt(np.sum(np.square(expected)))) < tol(
        "float32", "gradient"
    )
    leaf = result.stats.leaf("layers/2/weight")
    assert _relative(leaf.norm[0], np.linalg.norm(grads[2][0])) < tol("float32", "gradient")


def _naive_logistic_loss(static):
    """−log σ(y·f) written naively: σ underflows to 0 for a large wrong margin, so the loss is
    inf and its gradient (1/σ)·σ′ = ∞·0 is NaN in every leaf."""

    def loss_fn(params, batch, rng):
        model = eqx.combine(params, static)
        x, y = batch
        margin = jax.vmap(model)(x)[:, 0] * jnp.sign(y[:, 0])
        return -jnp.mean(jnp.log(jax.nn.sigmoid(margin)))

    return loss_fn


@pytest.mark.parametrize(
    "make_loss, lr, named",
    [(_eqx_loss, 30.0, ("loss",)), (_naive_logistic_loss, 100.0, ("loss", "layers/0/weight"))],
    ids=["mse-overflows", "naive-log-sigmoid-nan"],
)
def test_a_diverging_run_stops_at_the_first_nonfinite_step_and_names_the_leaf(make_loss, lr, named):
    params, static = _eqx_mlp()
    loss_fn, (x, y) = make_loss(static), _eqx_data()
    optimizer, steps = optax.sgd(lr), 40
    result = jf.train(loss_fn, params, (x, y), optimizer, steps, batch_size=16)
    bad = result.first_nonfinite_step
    assert bad is not None and not result.finite and result.steps_run == bad
    assert len(result.loss) == bad + 1 and np.all(np.isfinite(result.loss[:bad]))

    # The plain loop, step by step, until something is not finite.
    current, opt_state = params, optimizer.init(params)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    for t in range(steps):
        i = (t % 4) * 16
        loss, grads = value_and_grad(current, (x[i : i + 16], y[i : i + 16]), None)
        updates, opt_state = optimizer.update(grads, opt_state, current)
        new = optax.apply_updates(current, updates)
        named = [
            "/".join(str(getattr(k, "name", getattr(k, "idx", k))) for k in path)
            for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
            if not np.all(np.isfinite(g))
        ]
        overflow = [
            "param:" + "/".join(str(getattr(k, "name", getattr(k, "idx", k))) for k in path)
            for path, w in jax.tree_util.tree_flatten_with_path(new)[0]
            if not np.all(np.isfinite(w))
        ]
        if not np.isfinite(loss) or named or overflow:
            break
        current = new
    assert bad == t
    expected = (["loss"] if not np.isfinite(loss) else []) + named
    assert sorted(result.nonfinite) == sorted(expected or overflow)
    assert set(named) <= set(result.nonfinite)  # a step and a leaf, never a silent NaN run
    last = jax.tree.map(lambda a: a[-1], result.stats)
    assert last.leaves_with("nonfinite") == tuple(n for n in result.nonfinite if n != "loss")
    # The returned parameters are the last finite ones, the plain loop's before step t (large by
    # then: compared relative to each leaf's largest entry).
    for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(current), strict=True):
        assert _relative(a, b) < RTOL


# ---------------------------------------------------------------------------------------------
# Clear errors.


def _scalar_loss(params, batch, rng):
    return jnp.mean((batch[0] @ params["w"] - batch[1]) ** 2)


PARAMS = {"w": jnp.ones((3, 1))}
DATA = (jnp.ones((8, 3)), jnp.zeros((8, 1)))


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (dict(steps=0), {}, ValueError, "steps=0"),
        (dict(loss_fn=lambda p, b, r: b[0] @ p["w"]), {}, ValueError, r"shape \(8, 1\)"),
        (dict(loss_fn=lambda p, b, r: (_scalar_loss(p, b, r), 0)), {}, TypeError, "state="),
        (dict(data=(jnp.ones((8, 3)), jnp.zeros((7, 1)))), {}, ValueError, "axis 0"),
        (dict(data=(jnp.ones((8, 3)), jnp.zeros(()))), {}, ValueError, "axis 0"),
        (dict(data=("x", "y")), {}, TypeError, "pytree of"),
        (dict(data=iter([])), {}, ValueError, "no batches"),
        (dict(data=iter([DATA, DATA[::-1]])), {}, ValueError, "batch 1 has"),
        (dict(data=iter([DATA])), dict(batch_size=2), ValueError, "batch_size=2"),
        ({}, dict(batch_size=9), ValueError, "batch_size=9"),
        ({}, dict(batch_size=0), ValueError, "batch_size=0"),
        ({}, dict(loss="mse_sum"), TypeError, "loss="),
        (dict(data=42), {}, TypeError, "data is a int"),
        (
            dict(loss_fn=lambda p, s, b, r: (_scalar_loss(p, b, r), {"n": 1.0})),
            dict(state={"m": 1.0}),
            ValueError,
            "new_state",
        ),
    ],
)
def test_train_with_a_loss_function_bad_input(args, kwargs, error, match):
    call = dict(loss_fn=_scalar_loss, data=DATA, steps=2)
    call.update(args)
    with pytest.raises(error, match=match):
        jf.train(call["loss_fn"], PARAMS, call["data"], optax.sgd(0.1), call["steps"], **kwargs)


def test_modules_passed_directly_are_refused_with_the_recipe():
    with pytest.raises(TypeError, match=r"nnx.split\(model, nnx.Param"):
        jf.train(NnxNet(nnx.Rngs(0)), None, DATA, optax.sgd(0.1), 2)
    with pytest.raises(TypeError, match=r"eqx.partition\(model, eqx.is_inexact_array\)"):
        jf.train(eqx.nn.Linear(3, 1, key=jax.random.key(0)), None, DATA, optax.sgd(0.1), 2)
    model = jf.mlp(2, 3)
    variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(TypeError, match="key= belong to the loss-function form"):
        jf.train(model, variables, DATA, optax.sgd(0.1), 2, key=jax.random.key(0))


def test_a_linen_model_with_batch_norm_in_the_model_form_is_refused_with_the_recipe():
    """The model form cannot know how a user's module switches to training mode: with its
    BatchNorm statistics in the variables it would train in inference mode, silently."""

    class BNMLP(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(4)(x)
            return nn.Dense(1)(nn.relu(nn.BatchNorm(use_running_average=not train)(x)))

    x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
    variables = BNMLP().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"collections besides 'params' \(batch_stats\)"):
        jf.train(BNMLP(), variables, (x, y), optax.sgd(0.1), 2)
    # Its parameters alone (a model without mutable state) still train in the model form.
    plain = nn.Dense(1)
    result = jf.train(plain, plain.init(jax.random.key(0), x), (x, y), optax.sgd(0.1), 2)
    assert result.loss.shape == (2,)


# ---------------------------------------------------------------------------------------------
# What users hand to jf.train as they write it: a list of batches, a jitted loss, a second-order
# optimiser, an integer leaf, a model that draws random numbers.


def _linear_loss(params, batch, rng):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2)


def _linear_batches(n):
    rng = np.random.default_rng(11)
    return [
        (rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32))
        for _ in range(n)
    ]


def test_a_list_of_batches_is_iterated_in_epochs_against_numpy_sgd():
    batches, lr, steps = _linear_batches(3), 0.1, 7
    result = jf.train(_linear_loss, {"w": jnp.zeros((3, 1))}, batches, optax.sgd(lr), steps)
    w, losses = np.zeros((3, 1)), []
    for t in range(steps):  # float64 SGD on the same batches, the list restarting each epoch
        x, y = (np.asarray(a, np.float64) for a in batches[t % 3])
        r = x @ w - y
        losses.append(np.mean(r**2))
        w = w - lr * 2 * x.T @ r / r.size
    assert _relative(result.loss, losses) < RTOL
    assert _relative(result.params["w"], w) < RTOL


def test_a_loss_wrapped_by_equinox_filter_jit_is_a_loss_function():
    batches = _linear_batches(1)[0]
    wrapped = jf.train(
        eqx.filter_jit(_linear_loss), {"w": jnp.zeros((3, 1))}, batches, optax.sgd(0.1), 3
    )
    plain = jf.train(_linear_loss, {"w": jnp.zeros((3, 1))}, batches, optax.sgd(0.1), 3)
    np.testing.assert_allclose(wrapped.loss, plain.loss, rtol=tol("float32", "gradient"))


def test_optimisers_with_extra_arguments_get_the_loss():
    # L-BFGS with its line search reaches the least-squares minimum (NumPy float64 lstsq);
    # reduce_on_plateau reads the loss without failing.
    x, y = (np.asarray(a, np.float64) for a in _linear_batches(1)[0])
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    best = np.mean((x @ w - y) ** 2)
    data = tuple(jnp.asarray(a, jnp.float32) for a in (x, y))
    result = jf.train(_linear_loss, {"w": jnp.zeros((3, 1))}, data, optax.lbfgs(), 10)
    assert abs(float(result.loss[-1]) - best) < 1e-5 * best
    plateau = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau())
    assert np.all(
        np.isfinite(jf.train(_linear_loss, {"w": jnp.zeros((3, 1))}, data, plateau, 3).loss)
    )


def test_an_integer_leaf_in_params_is_refused_by_name():
    params = {"w": jnp.zeros((3, 1)), "perm": jnp.arange(3)}
    with pytest.raises(TypeError, match=r"params leaf \"\['perm'\]\" is an array of int32"):
        jf.train(_linear_loss, params, _linear_batches(1)[0], optax.sgd(0.1), 2)


class _DropoutByDefault(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        return nn.Dense(1)(nn.Dropout(0.5, deterministic=not train)(nn.Dense(4)(x)))


def test_random_numbers_the_model_form_cannot_give_are_named():
    model = _DropoutByDefault()
    x, y = jnp.ones((4, 3)), jnp.ones((4, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    with pytest.raises(TypeError, match=r"without random numbers.*loss-function form with key="):
        jf.train(model, variables, (x, y), optax.sgd(0.1), 2)

    def loss_fn(params, batch, rng):  # forgets key=: rng is None
        prediction = model.apply({"params": params}, batch[0], rngs={"dropout": rng})
        return jnp.mean((prediction - batch[1]) ** 2)

    with pytest.raises(Exception) as caught:
        jf.train(loss_fn, variables["params"], (x, y), optax.sgd(0.1), 2)
    assert any("pass key=jax.random.key(0)" in note for note in caught.value.__notes__)


def test_a_list_of_inputs_and_targets_stays_in_memory_arrays():
    # [(xa, xb), (ya, yb)]: two inputs, two targets of other shapes, one pytree of N examples.
    rng = np.random.default_rng(12)
    xa, xb = (rng.normal(size=(6, 2)).astype(np.float32) for _ in range(2))
    ya, yb = rng.normal(size=(6, 1)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)

    def loss_fn(params, batch, rng):
        (xa, xb), (ya, yb) = batch
        h = xa @ params["a"] + xb @ params["b"]
        return jnp.mean((h[:, :1] - ya) ** 2) + jnp.mean((h - yb) ** 2)

    params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros((2, 3))}
    listed = jf.train(loss_fn, params, [(xa, xb), (ya, yb)], optax.sgd(0.1), 3)
    tupled = jf.train(loss_fn, params, ((xa, xb), (ya, yb)), optax.sgd(0.1), 3)
    np.testing.assert_array_equal(listed.loss, tupled.loss)
    assert float(listed.loss[0]) == pytest.approx(np.mean(ya**2) + np.mean(yb**2), rel=1e-6)


def test_a_model_that_needs_more_arguments_is_named():
    class Needs(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            return nn.Dense(1)(x)

    x = jnp.ones((2, 3))
    variables = Needs().init(jax.random.key(0), x, False)
    with pytest.raises(TypeError, match=r"needs more arguments.*loss-function form"):
        jf.train(Needs(), variables, (x, jnp.ones((2, 1))), optax.sgd(0.1), 2)

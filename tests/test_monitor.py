"""gradient_monitor on real training set-ups: a sharded jit with out_shardings, a lax.scan loop,
nnx.Optimizer and an Equinox model. Updates are bit-identical to the chain without the monitor;
recorded norms match NumPy float64 norms of the gradients; the state's pytree structure does not
depend on the boxing init saw."""

import functools

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxflow as jf
from helpers import tol

TOL = tol("float32", "gradient")


def _norm64(tree):
    return float(
        np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(tree)))
    )


def _assert_identical(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


class _Net(nn.Module):
    """Two blocks with logically partitioned kernels, and a readout."""

    @nn.compact
    def __call__(self, x):
        kernel_init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        for l in range(2):
            x = jnp.tanh(nn.Dense(8, kernel_init=kernel_init, name=f"layers_{l}")(x))
        return nn.Dense(1, name="readout")(x)


def _linen_setup():
    model = _Net()
    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = jax.random.normal(jax.random.key(2), (16, 1))
    boxed = model.init(jax.random.key(0), x)["params"]
    assert isinstance(boxed["layers_0"]["kernel"], nn.LogicallyPartitioned)

    def loss(params, x, y):
        return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

    return boxed, nn.unbox(boxed), loss, x, y


@pytest.mark.skipif(not hasattr(nnx, "as_pure"), reason="nnx.as_pure: flax >= 0.12")
def test_state_structure_does_not_depend_on_boxing():
    boxed, params, loss, x, y = _linen_setup()
    monitor = jf.gradient_monitor()
    state = monitor.init(boxed)
    assert jax.tree.structure(state) == jax.tree.structure(monitor.init(params))
    assert not any(n.endswith("/value") for n in state.stats.names)
    grads = jax.grad(loss)(params, x, y)
    _, new_state = jax.jit(monitor.update)(grads, state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    model = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
    variables, plain = nnx.state(model, nnx.Param), nnx.as_pure(nnx.state(model, nnx.Param))
    assert jax.tree.structure(monitor.init(variables)) == jax.tree.structure(monitor.init(plain))


def test_update_with_other_leaves_than_init_is_a_clear_error():
    monitor = jf.gradient_monitor()
    state = monitor.init({"w": jnp.ones(2), "v": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"init measured \['v'\]"):
        monitor.update({"w": jnp.ones(2), "v": None}, state)


def test_monitor_in_a_sharded_jit_with_out_shardings():
    boxed, params, loss, x, y = _linen_setup()
    mesh = Mesh(np.array(jax.devices()[:4]), ("model",))
    rules = (("embed", None), ("mlp", "model"))
    param_sharding = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    params = jax.device_put(params, param_sharding)
    assert params["layers_0"]["kernel"].sharding.spec == P(None, "model")
    monitored = optax.chain(jf.gradient_monitor(), optax.sgd(0.1))
    plain = optax.sgd(0.1)
    state = monitored.init(boxed)  # the monitor's init sees the boxes, its updates do not
    replicated = NamedSharding(mesh, P())
    state_sharding = jax.tree.map(lambda _: replicated, state)

    def step(tx, params, state):
        grads = jax.grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, grads

    monitored_step = jax.jit(
        functools.partial(step, monitored), out_shardings=(param_sharding, state_sharding, None)
    )
    plain_step = jax.jit(functools.partial(step, plain), out_shardings=(param_sharding, None, None))
    reference, plain_state = params, plain.init(params)
    for _ in range(3):
        params, state, grads = monitored_step(params, state)
        reference, plain_state, _ = plain_step(reference, plain_state)
        _assert_identical(params, reference)
        stats = state[0].stats
        assert abs(float(stats.global_norm) - _norm64(grads)) <= TOL * _norm64(grads)
        assert stats.layer_names == ("layers_0", "layers_1", "readout")
        for name, norm in zip(stats.layer_names, stats.layer_norms, strict=True):
            assert abs(float(norm) - _norm64(grads[name])) <= TOL * _norm64(grads[name])
    assert params["layers_0"]["kernel"].sharding.spec == P(None, "model")
    assert int(state[0].count) == 3


@pytest.mark.parametrize("boxed_init", [True, False])
def test_monitor_in_a_lax_scan_training_loop(boxed_init):
    boxed, params, loss, x, y = _linen_setup()
    inner = optax.sgd(0.05) if boxed_init else optax.adam(1e-2)  # adam's own state needs plain
    monitored = optax.chain(jf.gradient_monitor(ratio=True), inner)
    state = monitored.init(boxed if boxed_init else params)
    if boxed_init:
        assert jax.tree.structure(state) == jax.tree.structure(monitored.init(params))

    def run(tx, params, state):
        def body(carry, _):
            params, state = carry
            grads = jax.grad(loss)(params, x, y)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), (grads, params)

        return jax.lax.scan(body, (params, state), length=5)

    (final, state), (grads, before) = jax.jit(functools.partial(run, monitored))(params, state)
    (reference, _), _ = jax.jit(functools.partial(run, inner))(params, inner.init(params))
    _assert_identical(final, reference)
    last = jax.tree.map(lambda a: a[-1], grads)
    stats = state[0].stats
    assert int(state[0].count) == 5
    assert abs(float(stats.global_norm) - _norm64(last)) <= TOL * _norm64(last)
    g = np.asarray(last["layers_1"]["kernel"], np.float64)
    w = np.asarray(before["layers_1"]["kernel"][-1], np.float64)
    leaf = stats.leaf("layers_1/kernel")
    assert abs(float(leaf.ratio) - np.linalg.norm(g) / np.linalg.norm(w)) <= TOL * float(leaf.ratio)


class _NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.blocks = nnx.List([nnx.Linear(6, 6, rngs=rngs) for _ in range(3)])
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.readout = nnx.Linear(6, 1, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = jnp.tanh(block(x))
        return self.readout(self.dropout(x))


def _nnx_loss(model, x, y):
    return jnp.mean(jnp.square(model(x) - y))


@pytest.mark.skipif(not hasattr(nnx, "List"), reason="nnx.List and Optimizer(wrt=): flax >= 0.12")
def test_monitor_inside_nnx_optimizer():
    x = jax.random.normal(jax.random.key(1), (8, 6))
    y = jax.random.normal(jax.random.key(2), (8, 1))
    model, reference = _NnxNet(nnx.Rngs(0)), _NnxNet(nnx.Rngs(0))
    monitored = nnx.Optimizer(
        model, optax.chain(jf.gradient_monitor(), optax.adam(1e-2)), wrt=nnx.Param
    )
    plain = nnx.Optimizer(reference, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        grads = nnx.grad(_nnx_loss)(model, x, y)  # dropout on: the RNG keys advance
        optimizer.update(model, grads)
        return grads

    for _ in range(3):
        grads = step(model, monitored, x, y)
        step(reference, plain, x, y)
        _assert_identical(nnx.state(model, nnx.Param), nnx.state(reference, nnx.Param))
    stats = jax.tree.map(
        lambda v: v.get_value() if isinstance(v, nnx.Variable) else v,
        monitored.opt_state[0].stats,
        is_leaf=lambda v: isinstance(v, nnx.Variable),
    )
    assert stats.layer_names == ("blocks/0", "blocks/1", "blocks/2", "readout")
    assert not any(n.endswith("/value") for n in stats.names)
    g = nnx.as_pure(grads)
    assert abs(float(stats.global_norm) - _norm64(g)) <= TOL * _norm64(g)
    norm = _norm64(g["blocks"][1]["kernel"])
    assert abs(float(stats.leaf("blocks/1/kernel").norm) - norm) <= TOL * norm


def test_monitor_on_an_equinox_model_with_filtered_trees():
    model = eqx.nn.MLP(4, 2, 8, depth=3, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jax.random.normal(jax.random.key(2), (16, 2))
    monitored = optax.chain(jf.gradient_monitor(), optax.adam(1e-2))
    plain = optax.adam(1e-2)
    params = eqx.filter(model, eqx.is_inexact_array)
    state, plain_state = monitored.init(params), plain.init(params)
    # The whole module (functions included) gives the same monitor state.
    whole = jf.gradient_monitor().init(model)
    assert jax.tree.structure(whole) == jax.tree.structure(state[0])
    assert {"activation", "final_activation"} <= set(whole.stats.frozen)

    @eqx.filter_grad
    def grads_of(model, x, y):
        return jnp.mean(jnp.square(jax.vmap(model)(x) - y))

    @eqx.filter_jit
    def step(tx, model, state):
        grads = grads_of(model, x, y)
        updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, grads

    reference = model
    for _ in range(3):
        model, state, grads = step(monitored, model, state)
        reference, plain_state, _ = step(plain, reference, plain_state)
        _assert_identical(eqx.filter(model, eqx.is_array), eqx.filter(reference, eqx.is_array))
    stats = state[0].stats
    assert stats.layer_names == tuple(f"layers/{l}" for l in range(4))
    g = eqx.filter(grads, eqx.is_array)
    assert abs(float(stats.global_norm) - _norm64(g)) <= TOL * _norm64(g)
    for l in range(4):
        norm = _norm64((grads.layers[l].weight, grads.layers[l].bias))
        assert abs(float(stats.layer_norms[l]) - norm) <= TOL * norm

"""The trainability engine (jaxflow.sweeps.train) against independent references.

One compiled training call serves the module (a module-scoped fixture); every other engine call
here reuses its compilation (same spec: learning rate, depths, seeds and chunking are data). The
references are the core model trained alone: ``jf.mlp`` of the configuration's own depth (no
padding), initialised by the scheme's own initialisers, stepped by a plain Python loop of
``optax.sgd``; the Jacobian spread is recomputed in float64 NumPy from explicit matrices.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxflow as jf
from helpers import NP_ACTIVATIONS, tol
from jaxflow.data import Dataset
from jaxflow.sweeps import train

WIDTH, SEEDS = 16, 3
ORDERED, CRITICAL, CHAOTIC = (0.3, 0.05), (1.76, 0.05), (25.0, 0.05)
ORTHOGONAL = ("orthogonal", 1.76, 0.05)
GRID = jf.Grid(
    depth=[2, 24],
    activation=["tanh"],
    init=[ORDERED, CRITICAL, CHAOTIC, ORTHOGONAL],
    width=WIDTH,
    seeds=SEEDS,
)
TRAINING = jf.Training(
    steps=200, learning_rate=0.1, batch_size=32, record_every=60, eval_size=256, jacobian_inputs=2
)


def _task(num_train=512, num_test=256, features=8, classes=4, seed=0):
    """A linearly separable task: labels = argmax of centred random linear logits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_train + num_test, features)).astype(np.float32)
    z = x @ rng.standard_normal((features, classes))
    y = np.argmax(z - z.mean(0), axis=1).astype(np.int32)
    return Dataset(x[:num_train], y[:num_train], x[num_train:], y[num_train:], classes, "toy")


DATA = _task()
X_TRAIN, Y_TRAIN = jnp.asarray(DATA.x_train), jnp.asarray(DATA.y_train)


@pytest.fixture(scope="module")
def result():
    return train.trainability(GRID, DATA, TRAINING, progress=False)


ONE_SEED = jf.Grid(**{**GRID.to_dict(), "seeds": 1, "depth": [2, 24]})


@pytest.fixture(scope="module")
def gentle(result):
    """The same compiled kernel at a learning rate small enough that 200 steps stay smooth.

    At the fixture's 0.1 a deep network's SGD trajectory is sensitive: two compilations that
    round differently agree to 1e-7 for the first steps and drift apart by step 60, as any two
    float32 runs of it would. At 0.01 the comparison with the network trained alone holds to
    float32 rounding over the whole run. chunk_size=6 keeps the fixture's chunk shape.
    """
    gentle = jf.Training(**{**TRAINING.to_dict(), "learning_rate": 0.01})
    return train.trainability(ONE_SEED, DATA, gentle, chunk_size=6, progress=False)


# --------------------------------------------------------------------------------------------
# The reference: one configuration trained alone.


def _reference_model(depth):
    return jf.mlp(depth, WIDTH, activation="tanh", in_dim=8, out_dim=4)


def _reference_params(depth, init, seed):
    k_init, k_data = jax.random.split(jax.random.key(seed))
    model = jf.mlp(depth, WIDTH, activation="tanh", init=init, in_dim=8, out_dim=4)
    return model.init(k_init, jnp.zeros((1, 8)))["params"], k_data


_STEPS = {}


def _reference_step(depth):
    if depth not in _STEPS:
        model = _reference_model(depth)

        def loss(params, x, y):
            logits = model.apply({"params": params}, x)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        @jax.jit
        def step(params, k_data, t, lr):
            idx = jax.random.randint(jax.random.fold_in(k_data, t), (32,), 0, 512)
            value, grads = jax.value_and_grad(loss)(params, X_TRAIN[idx], Y_TRAIN[idx])
            updates, _ = optax.sgd(lr).update(grads, optax.sgd(lr).init(params), params)
            params = optax.apply_updates(params, updates)
            finite = jnp.isfinite(value) & jnp.all(
                jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)])
            )
            return params, finite

        @jax.jit
        def evaluate(params):
            logits = model.apply({"params": params}, DATA.x_train[:256])
            test = model.apply({"params": params}, DATA.x_test[:256])
            return (
                loss(params, DATA.x_train[:256], DATA.y_train[:256]),
                jnp.mean(jnp.argmax(logits, -1) == DATA.y_train[:256]),
                jnp.mean(jnp.argmax(test, -1) == DATA.y_test[:256]),
            )

        _STEPS[depth] = step, evaluate
    return _STEPS[depth]


def _train_alone(depth, init, seed, lr=0.1, steps=200, record=(0, 60, 120, 180, 200)):
    """(curves (3, records), first non-finite step) of one network trained by a Python loop."""
    step, evaluate = _reference_step(depth)
    params, k_data = _reference_params(depth, init, seed)
    curves, finite = [], [True]
    for t in range(steps + 1):
        if t:
            params, ok = step(params, k_data, t, lr)
            finite.append(ok)
        if t in record:
            curves.append(evaluate(params))
    finite = np.asarray(finite)
    first_bad = int(np.argmin(finite)) if not finite.all() else -1
    return np.asarray(curves, dtype=float).T, first_bad


def _curves(ds, depth, init_label, seed):
    cell = ds.sel(depth=depth, init=init_label, seed=seed).isel(activation=0)
    return np.stack([cell[v].values for v in ("train_loss", "train_accuracy", "test_accuracy")])


# --------------------------------------------------------------------------------------------


def test_layout_matches_the_agreed_interface(result):
    ds = result
    assert ds.train_loss.dims == ("depth", "activation", "init", "seed", "step")
    assert ds.first_nonfinite_step.dims == ("depth", "activation", "init", "seed")
    assert ds.jacobian_spread.dims == ("depth", "activation", "init", "seed")
    assert ds.chi1.dims == ds.xi_c.dims == ("activation", "init")
    assert ds.step.values.tolist() == [0, 60, 120, 180, 200]  # the last step always recorded
    assert ds.init.values.tolist() == [
        "gaussian(0.3,0.05)",
        "gaussian(1.76,0.05)",
        "gaussian(25,0.05)",
        "orthogonal(1.76,0.05)",
    ]
    assert ds.family.values.tolist() == ["normal"] * 3 + ["orthogonal"]
    assert ds.sigma_w2.values.tolist() == [0.3, 1.76, 25.0, 1.76]
    assert ds.train_loss.dtype == ds.test_accuracy.dtype == np.float32
    assert ds.first_nonfinite_step.dtype == np.int32
    assert (ds.first_nonfinite_step == -1).all()
    assert json.loads(ds.attrs["training"]) == TRAINING.to_dict()
    assert jf.Grid.from_dict(json.loads(ds.attrs["grid"])) == GRID
    assert ds.attrs["compilations"] in (0, 1) and ds.attrs["dataset"] == "toy"
    # Sharded over the suite's fake CPU devices by default, so the comparisons with networks
    # trained alone below check the sharded kernel.
    assert ds.attrs["num_devices"] > 1 or len(jax.devices()) == 1
    counts = np.bincount(DATA.y_test, minlength=4)
    assert ds.attrs["chance_accuracy"] == pytest.approx(counts.max() / counts.sum())
    mf = jf.mean_field("tanh", np.asarray([0.3, 1.76, 25.0, 1.76]), 0.05)
    np.testing.assert_allclose(ds.chi1.values[0], np.asarray(mf.chi1), rtol=1e-6)
    np.testing.assert_allclose(ds.xi_c.values[0], np.asarray(mf.xi_c), rtol=1e-6)


@pytest.mark.parametrize(
    "depth, init", [(2, ORDERED), (2, ORTHOGONAL), (24, CRITICAL), (24, ORTHOGONAL)]
)
def test_vmapped_padded_training_equals_each_network_trained_alone(gentle, depth, init):
    # Depth 2 runs padded to 24 blocks in the kernel: the masked blocks change nothing. The
    # reference starts from the scheme's own initialisers (jf.mlp(init=...).init), so step 0
    # also checks that the kernel draws the core model's parameters.
    assert gentle.attrs["compilations"] == 0  # the learning rate is data
    label = jf.Grid(init=[init]).init_labels[0]
    expected, first_bad = _train_alone(depth, init, 0, lr=0.01)
    assert first_bad == -1
    np.testing.assert_allclose(
        _curves(gentle, depth, label, 0), expected, rtol=tol("float32", "training"), atol=1e-6
    )


def test_critical_networks_train_and_deep_ordered_and_chaotic_ones_do_not(result):
    acc = result.test_accuracy.isel(activation=0, step=-1)
    chance = result.attrs["chance_accuracy"]
    deep = acc.sel(depth=24)
    labels = result.init.values
    # Mean-field depth scales: 24 is far beyond 6ξ_c for the ordered (≈4.5) and chaotic (≈20)
    # inits and far below it at criticality (≈3·10⁴).
    six_xi = 6 * result.xi_c.values[0]
    assert six_xi[0] < 24 and six_xi[2] < 24 and six_xi[1] > 24 and six_xi[3] > 24
    for label in (labels[1], labels[3]):  # every seed of the critical ones trains
        assert deep.sel(init=label).min() >= chance + 0.25
    for label in (labels[0], labels[2]):  # no seed of the deep ordered/chaotic ones does
        assert deep.sel(init=label).max() <= chance + 0.12
    assert acc.sel(depth=2).min() >= chance + 0.15  # shallow: everything trains
    # Dynamical isometry: the orthogonal critical network's Jacobian is better conditioned.
    spread = result.jacobian_spread.isel(activation=0).sel(depth=24)
    assert spread.sel(init=labels[3]).max() < 0.5 * spread.sel(init=labels[1]).min()


def test_first_nonfinite_step_on_a_diverging_run(result):
    grid = jf.Grid(
        depth=[2, 24], activation=["tanh"], init=[ORDERED, CRITICAL, CHAOTIC, ORTHOGONAL],
        width=WIDTH, seeds=1,
    )  # fmt: skip
    huge = jf.Training(**{**TRAINING.to_dict(), "learning_rate": 1e37})
    ds = train.trainability(grid, DATA, huge, chunk_size=6, progress=False)
    assert ds.attrs["compilations"] == 0  # the learning rate is data
    first = ds.first_nonfinite_step.isel(activation=0, seed=0)
    assert (first > 0).all()
    for depth, init in ((2, CRITICAL), (24, ORTHOGONAL)):
        label = jf.Grid(init=[init]).init_labels[0]
        curves, expected = _train_alone(depth, init, 0, lr=1e37)
        assert expected > 0
        assert int(first.sel(depth=depth, init=label)) == expected
        loss = ds.train_loss.sel(depth=depth, init=label).isel(activation=0, seed=0).values
        recorded = ds.step.values
        assert np.isnan(loss[recorded >= expected]).all()
        assert np.isfinite(loss[recorded < expected]).all()
        acc = ds.test_accuracy.sel(depth=depth, init=label).isel(activation=0, seed=0).values
        assert ((acc >= 0) & (acc <= 1)).all()


def test_one_compilation_answers_every_depth(result):
    # Depths are data: another set of depths with the same deepest one compiles nothing, and a
    # network's results do not depend on which other depths ran beside it.
    grid = jf.Grid(
        depth=[7, 24], activation=["tanh"], init=[ORDERED, CRITICAL, CHAOTIC, ORTHOGONAL],
        width=WIDTH, seeds=1,
    )  # fmt: skip
    # chunk_size=6: the fixture's padded chunk shape, so nothing is recompiled; the chunks hold
    # other configurations than the fixture's, which must not matter either.
    ds = train.trainability(grid, DATA, TRAINING, chunk_size=6, progress=False)
    assert ds.attrs["compilations"] == 0
    np.testing.assert_allclose(
        _curves(ds, 24, "gaussian(1.76,0.05)", 0),
        _curves(result, 24, "gaussian(1.76,0.05)", 0),
        rtol=tol("float32", "training"),
        atol=1e-6,
    )


def test_chunking_and_resume_do_not_change_results(result, tmp_path):
    path = tmp_path / "train.zarr"
    seen = []

    def stop_after_two(index, total):
        seen.append(index)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.trainability(
            GRID, DATA, TRAINING, store=path, progress=False, callback=stop_after_two
        )
    resumed = train.trainability(GRID, DATA, TRAINING, store=path, progress=False)
    # Chunks of 6 (the smallest family group: the orthogonal init's 3 seeds × 2 depths).
    assert resumed.attrs["chunk_size"] == 6 and resumed.attrs["num_chunks"] == 4
    assert json.loads(resumed.attrs["chunks_computed"]) == [2, 3]
    assert resumed.attrs["compilations"] == 0
    for name in ("train_loss", "test_accuracy", "first_nonfinite_step", "jacobian_spread"):
        np.testing.assert_allclose(
            resumed[name].values, result[name].values, rtol=tol("float32", "training"), atol=1e-6
        )
    assert jf.open_sweep(path).train_loss.dims == result.train_loss.dims
    other = jf.Training(**{**TRAINING.to_dict(), "steps": 100})
    with pytest.raises(ValueError, match="different grid.*training"):
        train.trainability(GRID, DATA, other, store=path, progress=False)


def test_the_sweep_metric_runs_the_same_training(result):
    import dataclasses

    grid = dataclasses.replace(GRID, metrics=["training"])
    ds = jf.sweep(grid, data=DATA, training=TRAINING, quiet=True)
    assert ds.attrs["compilations"] == 0
    np.testing.assert_array_equal(ds.test_accuracy.values, result.test_accuracy.values)
    both = dataclasses.replace(GRID, metrics=["P_spectrum", "training"], batch=1)
    merged = jf.sweep(both, data=DATA, training=TRAINING, quiet=True)
    assert merged.P_sv_max.dims == ("activation", "init", "seed", "example", "depth", "layer")
    np.testing.assert_array_equal(merged.test_accuracy.values, result.test_accuracy.values)
    with pytest.raises(ValueError, match="a store holds one kind of run"):
        jf.sweep(both, "unused.zarr", data=DATA, training=TRAINING)
    with pytest.raises(ValueError, match="'training' but data= is missing"):
        jf.sweep(grid, training=TRAINING)
    with pytest.raises(ValueError, match="which grid.metrics lacks"):
        jf.sweep(GRID, data=DATA, training=TRAINING)


def _np_spread(params, x, depth):
    """std_i ln σ_i(P_d) in float64 NumPy from the explicit layer Jacobians diag(φ′(z_l)) W_lᵀ."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    phi, dphi = NP_ACTIVATIONS["tanh"]
    h = x @ p["input"]["kernel"] + p["input"]["bias"]
    P = np.eye(WIDTH)
    for layer in range(depth):
        kernel = p["blocks"]["Dense_0"]["kernel"][layer]
        z = h @ kernel + p["blocks"]["Dense_0"]["bias"][layer]
        P = (dphi(z)[:, None] * kernel.T) @ P
        h = phi(z)
    return np.std(np.log(np.linalg.svd(P, compute_uv=False)))


@pytest.mark.parametrize("depth, init", [(2, ORDERED), (2, CRITICAL), (24, ORTHOGONAL)])
def test_jacobian_spread_against_float64(result, depth, init):
    label = jf.Grid(init=[init]).init_labels[0]
    params, _ = _reference_params(depth, init, 1)
    expected = np.mean([_np_spread(params, DATA.x_train[i], depth) for i in range(2)])
    got = float(result.jacobian_spread.sel(depth=depth, init=label, seed=1).isel(activation=0))
    assert got == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps=0 is not allowed"),
        (dict(learning_rate=-1.0), "learning_rate=-1.0 is not allowed"),
        (dict(learning_rate=float("nan")), "learning_rate=nan"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(record_every=0), "record_every=0"),
        (dict(optimizer="lbfgs"), "optimizer='lbfgs' is not allowed; use one of sgd, adam"),
        (dict(eval_size=0), "eval_size=0"),
        (dict(jacobian_inputs=-1), "jacobian_inputs=-1"),
    ],
)
def test_bad_training_is_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jf.Training(**kwargs)


def test_training_round_trips_and_rejects_unknown_keys():
    assert jf.Training.from_dict(json.loads(TRAINING.to_json())) == TRAINING
    with pytest.raises(ValueError, match="unknown key 'lr'; allowed keys are: steps"):
        jf.Training.from_dict({"lr": 0.1})


def test_bad_data_and_grid_are_refused():
    with pytest.raises(TypeError, match="tuple without x_train, y_train, x_test"):
        train.trainability(GRID, (DATA.x_train, DATA.y_train), TRAINING)
    bad = DATA._replace(y_train=DATA.y_train.astype(np.float32))
    with pytest.raises(ValueError, match="labels must be integers"):
        train.trainability(GRID, bad, TRAINING)
    bad = DATA._replace(num_classes=3)
    with pytest.raises(ValueError, match=r"labels outside 0…2 \(num_classes=3\)"):
        train.trainability(GRID, bad, TRAINING)
    bad = DATA._replace(x_test=DATA.x_test[:, :5])
    with pytest.raises(ValueError, match="8 features and data.x_test 5"):
        train.trainability(GRID, bad, TRAINING)
    with pytest.raises(ValueError, match="model='mlp' only"):
        train.trainability(jf.Grid(model="residual"), DATA, TRAINING)
    with pytest.raises(TypeError, match="pass a jaxflow.Training"):
        train.trainability(GRID, DATA, {"steps": 10})
    with pytest.raises(ValueError, match="'training' is defined for model='mlp' only"):
        jf.Grid(model="residual", metrics=["training"])


def test_orthogonal_grid_entries():
    grid = jf.Grid(init=("orthogonal", 2, 0.1))
    assert grid.init == (("orthogonal", 2.0, 0.1),) and grid.init_labels == ("orthogonal(2,0.1)",)
    assert jf.Grid.from_dict(json.loads(grid.to_json())) == grid
    scheme = jf.get_init(("orthogonal", 2.0, 0.1))
    assert (scheme.family, scheme.sigma_w2, scheme.sigma_b2) == ("orthogonal", 2.0, 0.1)
    with pytest.raises(ValueError, match="sigma_w2=-1.0 is not a valid variance"):
        jf.Grid(init=[("orthogonal", -1.0, 0.0)])
    with pytest.raises(ValueError, match="must be 'orthogonal' and two numbers"):
        jf.Grid(init=[("orthogonal", "a", 0.0)])
    with pytest.raises(ValueError, match="lists .* twice"):
        jf.Grid(init=[("orthogonal", 1, 0), ("orthogonal", 1.0, 0.0)])


def test_chunks_are_sized_by_the_training_memory_estimate():
    from jaxflow.sweeps import run

    spec = train.spec_of(GRID, DATA, TRAINING)
    per_config = train.bytes_per_config(spec)
    devices = jax.devices()[:1]
    # Parameters (with the gradient, the updated copy and SGD's empty state) and the activations
    # that backprop keeps for every padded block: it grows with depth, width and batch.
    deeper = spec._replace(max_depth=2 * spec.max_depth)
    assert train.bytes_per_config(deeper) > per_config
    assert train.bytes_per_config(spec._replace(optimizer="adam")) > per_config
    size = run.choose_chunk_size(
        GRID, spec, None, 3.5 * per_config, devices, per_config_bytes=per_config, per=2
    )
    assert size == 3
    with pytest.raises(ValueError, match="below one configuration's estimated"):
        run.choose_chunk_size(
            GRID, spec, None, per_config / 2, devices, per_config_bytes=per_config, per=2
        )
    chunks = run.plan_chunks(GRID, spec, 6, per=2)  # (init, seed) pairs × 2 depths
    assert sum(len(c.configs) for c in chunks) == GRID.num_configs * 2
    assert [len(c.configs) for c in chunks] == [6, 6, 6, 6]


# --------------------------------------------------------------------------------------------
# The fast paths: the mean-field table on the host, and one kernel call per depth.

HOST_POINTS = [(w, b) for b in (0.05, 0.3) for w in (0.3, 0.8, 2.5, 9.0)]  # 8: one padded batch


# float64 compiles the theory again (~6 s): the slow pass runs it.
@pytest.mark.parametrize("x64", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_host_mean_field_table_equals_the_compiled_theory(x64):
    # The host path follows the theory's rule in float64 NumPy: against the float64 theory it
    # agrees to the quadrature's own precision; against the float32 theory to float32 rounding,
    # which ξ_c carries amplified by its condition number 1/(1 − χ_c) (the theory's docs).
    from jaxflow.theory import host as host_theory

    with jax.enable_x64(x64):
        for activation in ("tanh", "relu", "hard_tanh", "sigmoid"):
            sw, sb = (np.asarray(v) for v in zip(*HOST_POINTS, strict=True))
            mf = jf.mean_field(activation, sw, sb)
            chi1, xi_c = np.asarray(mf.chi1, float), np.asarray(mf.xi_c, float)
            for k, (w, b) in enumerate(HOST_POINTS):
                host = host_theory.chi1_xi_c(activation, w, b, float64=x64, tol=1e-4)
                if host is None:  # deferred: a status other than OK, or the edge of chaos
                    assert int(mf.status[k]) != 0 or abs(chi1[k] - 1) < 2e-3, (activation, w, b)
                    continue
                rounding = 1e-9 if x64 else 2e-6
                gap = -np.expm1(-1 / xi_c[k])  # 1 − χ_c
                assert host[0] == pytest.approx(chi1[k], rel=rounding), (activation, w, b)
                assert host[1] == pytest.approx(xi_c[k], rel=rounding / gap), (activation, w, b)


def test_mean_field_table_defers_what_the_host_path_does_not_cover():
    # erf has no NumPy form here, relu at σ_w² = 3 diverges, tanh at its critical σ_w² sits on
    # the edge of chaos: those come from the compiled theory, exactly.
    grid = jf.Grid(
        depth=[2],
        activation=["tanh", "relu", "erf"],
        init=[(1.0, 0.05), (1.7614, 0.05), (3.0, 0.05)],
        width=4,
    )
    chi1, xi_c = train.mean_field_table(grid)
    for a, activation in enumerate(grid.activation):
        mf = jf.mean_field(activation, np.asarray([1.0, 1.7614, 3.0]), 0.05)
        np.testing.assert_allclose(chi1[a], np.asarray(mf.chi1), rtol=2e-6)
        np.testing.assert_allclose(xi_c[a], np.asarray(mf.xi_c), rtol=2e-6 / 1e-3)
    assert np.isinf(xi_c[1, 2])  # relu with σ_w² > 2: q* diverges, χ_c = 1


def test_first_blocks_and_its_gradient_equal_a_plain_loop():
    # The hand-written VJP against autodiff of a Python loop over the first d blocks; the
    # blocks past d get exactly zero gradient.
    rng = np.random.default_rng(3)
    W = jnp.asarray(rng.standard_normal((5, 6, 6)) / np.sqrt(6), jnp.float32)
    b = jnp.asarray(rng.standard_normal((5, 6)) * 0.1, jnp.float32)
    h0 = jnp.asarray(rng.standard_normal((3, 6)), jnp.float32)

    def block(theta, h):
        return jnp.tanh(h @ theta[0] + theta[1][None, :])

    for depth in (0, 2, 5):

        def engine(blocks, h0, depth=depth):
            return jnp.sum(jnp.sin(train.first_blocks(block, blocks, h0, jnp.int32(depth))))

        def loop(blocks, h0, depth=depth):
            h = h0
            for layer in range(depth):
                h = block((blocks[0][layer], blocks[1][layer]), h)
            return jnp.sum(jnp.sin(h))

        got = jax.jit(jax.value_and_grad(engine, argnums=(0, 1)))((W, b), h0)
        want = jax.value_and_grad(loop, argnums=(0, 1))((W, b), h0)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=tol("float32", "gradient"), atol=1e-6)
        assert not np.any(np.asarray(got[1][0][0][depth:]))


def test_a_chunk_is_split_into_equal_calls_of_one_depth():
    grid = jf.Grid(depth=[2, 5, 9], activation=["tanh"], init=[ORDERED, CRITICAL], width=4, seeds=2)
    spec = train.spec_of(grid, DATA, TRAINING)
    size = train.call_size(5, 3, 1)
    assert size == 2 and train.call_size(5, 3, 4) == 4 and train.call_size(48, 4, 1) == 12
    from jaxflow.sweeps import run

    seen = []
    for chunk in run.plan_chunks(grid, spec, 5, per=3):  # chunks cut (init, seed) pairs apart
        for positions, depth, (w_vars, b_var, seed) in train.depth_calls(grid, spec, chunk, size):
            configs = np.asarray(chunk.configs)[positions]
            assert (np.asarray(grid.depth)[configs % 3] == depth).all()
            assert w_vars.shape == (size, 3) and b_var.shape == seed.shape == (size,)
            assert (seed[: positions.size] == (configs // 3) % 2).all()
            seen += configs.tolist()
    assert sorted(seen) == list(range(grid.num_configs * 3))


# ~6 s; chunking is tested by test_chunking_and_resume_do_not_change_results; the slow pass
# splits depths across chunks too.
@pytest.mark.slow
def test_depths_split_across_chunks_train_as_each_network_alone():
    # Depths 3 and 5 in chunks of 3: a chunk holds two depths, in calls of 2 configurations (the
    # second padded). Every network equals the one trained alone.
    grid = jf.Grid(
        depth=[3, 5], activation=["tanh"], init=[ORDERED, CRITICAL], width=WIDTH, seeds=1
    )
    gentle = jf.Training(**{**TRAINING.to_dict(), "learning_rate": 0.01, "jacobian_inputs": 0})
    ds = train.trainability(grid, DATA, gentle, chunk_size=3, progress=False)
    assert ds.attrs["compilations"] == 1 and ds.attrs["num_chunks"] == 2
    for depth, init in ((3, CRITICAL), (5, ORDERED), (5, CRITICAL)):
        label = jf.Grid(init=[init]).init_labels[0]
        expected, _ = _train_alone(depth, init, 0, lr=0.01)
        np.testing.assert_allclose(
            _curves(ds, depth, label, 0), expected, rtol=tol("float32", "training"), atol=1e-6
        )


def test_training_devices_stay_below_the_pool_where_lapack_blocks_it(monkeypatch):
    from jaxflow.sweeps import run

    cpus = jax.devices("cpu")
    if len(cpus) < 4:
        pytest.skip("needs the suite's four CPU devices")
    monkeypatch.setattr(run, "_lapack_blocks_pool", lambda: True)  # jaxlib < 0.11's rule
    monkeypatch.setenv("NPROC", "3")
    assert run.resolve_training_devices(None, uses_lapack=True) == tuple(cpus[:2])
    assert run.resolve_training_devices(cpus[:4], uses_lapack=False) == tuple(cpus[:4])
    with pytest.raises(ValueError, match="devices: 4 CPU devices on a pool of 3 threads"):
        run.resolve_training_devices(cpus[:4], uses_lapack=True)
    with pytest.raises(ValueError, match="devices=\\(\\) is empty"):
        run.resolve_training_devices((), uses_lapack=False)
    monkeypatch.setattr(run, "_lapack_blocks_pool", lambda: False)  # jaxlib >= 0.11
    assert run.resolve_training_devices(None, uses_lapack=True) == tuple(jax.local_devices())


def test_the_finiteness_check_of_the_parameters_is_exact():
    # Σ x·0 is 0 exactly when every entry is finite: largest finite values do not overflow it,
    # and one NaN or ±Inf anywhere is caught, under jit with the learning rate as an argument.
    check = jax.jit(train._finite_params)
    big = np.finfo(np.float32).max
    params = {"a": np.full((3, 4), big, np.float32), "b": {"c": np.full(5, -big, np.float32)}}
    assert bool(check(params, np.float32(0.1)))
    for bad in (np.nan, np.inf, -np.inf):
        broken = jax.tree.map(np.copy, params)
        broken["b"]["c"][3] = bad
        assert not bool(check(broken, np.float32(0.1))), bad
    assert bool(check({"a": np.zeros((2, 2), np.float32)}, np.float32(1e-3)))


def test_the_experiments_spread_the_cpu_devices_before_any_theory_runs(monkeypatch):
    # isometry_speedup asks the theory for the critical σ_w² first, which starts a JAX backend:
    # after that the process keeps one CPU device, so the driver spreads them before.
    import importlib

    from jaxflow import _platform, theory

    experiments = importlib.import_module("jaxflow.experiments.trainability")

    calls = []

    class Stop(Exception):
        pass

    def critical(*args, **kwargs):
        calls.append("theory")
        raise Stop

    monkeypatch.setattr(_platform, "spread_cpu_devices", lambda: calls.append("spread"))
    monkeypatch.setattr(theory, "critical_sigma_w2", critical)
    with pytest.raises(Stop):
        experiments.isometry_speedup(data=DATA, depths=(2,), steps=2, width=4, seeds=1)
    assert calls == ["spread", "theory"]
    calls.clear()
    with pytest.raises(Stop):  # devices given: the user's choice, nothing spread
        experiments.isometry_speedup(
            data=DATA, depths=(2,), steps=2, width=4, seeds=1, devices=jax.devices()[:1]
        )
    assert calls == ["theory"]

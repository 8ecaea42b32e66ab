"""Sweeps: every metric against the core functions and float64 NumPy on a few grid points, one
compilation for the whole grid, chunk- and device-invariance, and the labelled dataset."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import jaxflow as jf
from helpers import NP_ACTIVATIONS, as64, sv_error, tol
from jaxflow.sweeps import compute
from jaxflow.sweeps.grid import init_variances

WIDTH = 6
GRID = jf.Grid(
    depth=[2, 5],
    activation=["relu", "tanh", "sigmoid"],
    init=["xavier", "orthogonal", (1.5, 0.1)],
    width=WIDTH,
    seeds=2,
    batch=2,
    metrics=list(jf.METRICS),
)


@pytest.fixture(scope="module")
def ds():
    return jf.sweep(GRID, quiet=True)


def _core_network(grid, activation, init, seed, depth, builder=jf.mlp, **kw):
    """The core model of one grid point, with the sweep's documented weights and data."""
    model = builder(depth, grid.width, activation=activation, init=init, **kw)
    k_init, k_data = jax.random.split(jax.random.key(seed))
    data = jax.random.normal(k_data, (grid.batch, grid.width + 1))
    x, y = data[:, : grid.width], data[:, grid.width :]
    return model, model.init(k_init, x), x, y


def _np_mlp(variables, x, y, activation):
    """Float64 NumPy forward and backward of a jaxflow MLP under the batch-mean squared error.

    Returns per-layer pre-activations z (L, B, n), Jacobians J (B, L, n, n), ‖∂L/∂h_l‖ (L,),
    ‖∂L/∂W_l‖ (L,) and ‖∂L/∂h_0‖.
    """
    phi, dphi = NP_ACTIVATIONS[activation]
    p = as64(variables["params"])
    K, b = p["blocks"]["Dense_0"]["kernel"], p["blocks"]["Dense_0"]["bias"]
    h, hs, zs = np.asarray(x, np.float64), [], []
    for l in range(K.shape[0]):
        hs.append(h)
        zs.append(h @ K[l] + b[l])
        h = phi(zs[-1])
    J = np.stack(
        [[np.diag(dphi(z[e])) @ K[l].T for l, z in enumerate(zs)] for e in range(h.shape[0])]
    )
    pred = h @ p["readout"]["kernel"] + p["readout"]["bias"]
    g = 2.0 * (pred - np.asarray(y, np.float64)) / pred.size @ p["readout"]["kernel"].T
    act, weight = np.zeros(len(zs)), np.zeros(len(zs))
    for l in reversed(range(len(zs))):
        act[l] = np.linalg.norm(g)
        delta = g * dphi(zs[l])
        weight[l] = np.linalg.norm(hs[l].T @ delta)
        g = delta @ K[l].T
    return np.stack(zs), J, act, weight, np.linalg.norm(g)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


POINTS = [("relu", "xavier", 0, 5), ("tanh", "orthogonal", 1, 2), ("sigmoid", (1.5, 0.1), 1, 5)]


@pytest.mark.parametrize("activation, init, seed, depth", POINTS)
def test_spectra_match_core_chain_and_numpy(ds, activation, init, seed, depth):
    model, variables, x, _ = _core_network(GRID, activation, init, seed, depth)
    _, J, *_ = _np_mlp(variables, x, x[:, :1], activation)
    P = np.zeros_like(J)
    for e in range(GRID.batch):
        product = np.eye(WIDTH)
        for l in range(depth):
            product = P[e, l] = J[e, l] @ product
    point = ds.sel(
        activation=activation, init=jf.sweeps.grid.init_label(init), seed=seed, depth=depth
    )
    layers = point.sel(layer=slice(1, depth))
    assert np.all(np.isnan(point.J_sv_max.sel(layer=slice(depth + 1, None))))
    for name, mats in (("J", J), ("P", P)):
        full = layers[f"{name}_sv"].values  # (example, layer, sv)
        assert sv_error(full, mats) < tol("float32", "svd")
        ref = np.linalg.svd(mats, compute_uv=False)
        scale = ref[..., 0]
        assert np.max(np.abs(layers[f"{name}_sv_max"] - ref[..., 0]) / scale) < tol(
            "float32", "svd"
        )
        assert np.max(np.abs(layers[f"{name}_sv_min"] - ref[..., -1]) / scale) < tol(
            "float32", "svd"
        )
        assert _rel(layers[f"{name}_sv_mean_sq"], np.mean(ref**2, -1)) < 10 * tol("float32", "svd")
        ok = ref[..., -1] > 1e-2 * scale  # log σ and σmax/σmin are float32-accurate only there
        if ok.any():
            assert (
                _rel(layers[f"{name}_sv_mean_log"].values[ok], np.mean(np.log(ref), -1)[ok]) < 1e-3
            )
            assert _rel(layers[f"{name}_cond"].values[ok], (ref[..., 0] / ref[..., -1])[ok]) < 1e-2
    if (activation, init) == ("relu", "xavier"):  # and the core's own chain, on one point
        chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, x)
        for name, core in (
            ("J", chain.layer_singular_values),
            ("P", chain.product_singular_values),
        ):
            scale = float(np.max(core))
            np.testing.assert_allclose(
                layers[f"{name}_sv"], core, rtol=0, atol=tol("float32", "svd") * scale
            )
        # a threshold count: equal up to a value sitting on the rounding floor
        assert np.max(np.abs(layers.P_resolved.values - np.asarray(chain.resolved))) <= 1


@pytest.mark.parametrize("activation, init, seed, depth", POINTS)
def test_gradients_match_numpy_and_jax_grad(ds, activation, init, seed, depth):
    model, variables, x, y = _core_network(GRID, activation, init, seed, depth)
    zs, _, act, weight, grad_h0 = _np_mlp(variables, x, y, activation)
    point = ds.sel(
        activation=activation, init=jf.sweeps.grid.init_label(init), seed=seed, depth=depth
    )
    layers = point.sel(layer=slice(1, depth))
    assert _rel(layers.activation_grad_norm, act) < tol("float32", "gradient_norm")
    assert _rel(layers.weight_grad_norm, weight) < tol("float32", "gradient_norm")
    assert _rel(point.grad_ratio, grad_h0 / act[-1]) < tol("float32", "gradient_norm")
    assert _rel(point.weight_grad_ratio, weight[0] / weight[-1]) < tol("float32", "gradient_norm")
    assert np.all(np.isnan(point.weight_grad_norm.sel(layer=slice(depth + 1, None))))
    if activation == "tanh":
        return  # jax.grad of the Flax model on the other two points is enough
    # the same weight gradients from jax.grad of the Flax model's loss
    grads = jax.jit(jax.grad(lambda v: jnp.mean(jnp.square(model.apply(v, x) - y))))(variables)
    kernels = grads["params"]["blocks"]["Dense_0"]["kernel"]
    assert _rel(layers.weight_grad_norm, jnp.linalg.norm(kernels, axis=(1, 2))) < tol(
        "float32", "gradient_norm"
    )
    # dead and saturated units from φ′(z) in float64
    _, dphi = NP_ACTIVATIONS[activation]
    d = dphi(zs)  # (L, B, n)
    sup = jf.get_activation(activation).sup_derivative
    # fractions of WIDTH units: compare the counts
    np.testing.assert_array_equal(
        np.round(layers.dead_fraction * WIDTH), np.sum(np.all(d == 0, axis=1), -1)
    )
    saturated = np.sum(np.all(np.abs(d) <= GRID.saturation * sup, axis=1), -1)
    np.testing.assert_array_equal(np.round(layers.saturated_fraction * WIDTH), saturated)


def test_relu_has_dead_units_and_sigmoid_gradients_vanish(ds):
    # The comparisons above would pass on all-zero fractions; make sure the grid exercises them.
    assert float(ds.dead_fraction.sel(activation="relu").max()) > 0
    ratio = ds.grad_ratio.sel(activation="sigmoid", init="xavier", depth=5)
    assert float(ratio.max()) < 0.25**2  # each sigmoid block scales gradients by ≤ ‖W‖/4


def test_residual_metrics_match_core():
    grid = jf.Grid(
        model="residual",
        depth=[1, 3],
        activation=["tanh"],
        init=["he"],
        width=4,
        seeds=1,
        batch=2,
        metrics=["P_spectra", "weight_grad_norm", "activation_grad_norm"],
    )
    out = jf.sweep(grid, quiet=True).isel(activation=0, init=0, seed=0).sel(depth=3)
    model, variables, x, y = _core_network(grid, "tanh", "he", 0, 3, jf.residual_stack)

    @jax.jit
    def references(variables, x, y):
        chain = jf.jacobian_chain(model, variables, x)
        grads = jax.jit(jax.grad(lambda v: jnp.mean(jnp.square(model.apply(v, x) - y))))(variables)
        stack = model.decompose(variables)
        h_last = jax.lax.scan(
            lambda h, b: (stack.block_fn(b, h), None), stack.input_map(x), stack.blocks
        )[0]
        g = jax.grad(lambda h: jnp.mean(jnp.square(stack.readout(h) - y)))(h_last)
        return chain, grads["params"]["blocks"], g

    chain, grads, g = references(variables, x, y)
    assert sv_error(out.P_sv.values, chain.products) < tol("float32", "svd")
    ref = np.sqrt(
        sum(np.sum(np.square(grads[k]["kernel"]), axis=(1, 2)) for k in ("Dense_0", "Dense_1"))
    )
    assert _rel(out.weight_grad_norm, ref) < tol("float32", "gradient_norm")
    # ‖∂L/∂h_l‖ through the explicit Jacobians: ∂L/∂h_{l-1} = J_lᵀ ∂L/∂h_l, example by example
    g = np.asarray(g, np.float64)
    act = []
    for l in reversed(range(3)):
        act.append(np.linalg.norm(g))
        g = np.einsum("bi,bij->bj", g, np.asarray(chain.layers[:, l], np.float64))
    assert _rel(out.activation_grad_norm, act[::-1]) < tol("float32", "gradient_norm")


# Every scheme the sweep can draw; 1.1 is not a float32: σ²/n rounds once. A Grid refuses
# "pytorch" (uniform biases of fan-in-dependent variance) with a clear error, tested in
# test_sweeps_grid.py.
INITS = sorted(n for n, s in jf.INIT_SCHEMES.items() if s.bias_fan_in_scale is None) + [(1.1, 0.05)]


def test_weights_are_the_core_models():
    """Every scheme draws the weights of jf.mlp(..., init=...).init(key), to float32 rounding.

    The draw is the same arithmetic on the same keys; inside the sweep's one compiled call XLA may
    fuse ``normal(key) * √var`` differently from the core model's ``init`` (an FMA), so an entry
    may differ in its last bit.
    """
    from jaxflow.sweeps.grid import init_family, kernel_variances

    grid = jf.Grid(depth=[3], activation=["relu"], init=INITS, width=5, seeds=1, batch=2)
    spec = compute.spec_of(grid)
    table = [kernel_variances(i, grid.width) for i in grid.init]
    family = jnp.asarray([spec.families.index(init_family(i)) for i in grid.init])
    w_vars = jnp.asarray([t[:2] for t in table])
    b_var = jnp.asarray([t[2] for t in table])
    draw = jax.jit(jax.vmap(lambda f, w, b: compute.draw_network(spec, f, w, b, 7)))
    variables, x, y = draw(family, w_vars, b_var)

    @jax.jit
    def core():
        return [_core_network(grid, "relu", init, 7, 3)[1:] for init in grid.init]

    ulps = functools.partial(np.testing.assert_allclose, rtol=4 * np.finfo(np.float32).eps, atol=0)
    for i, (reference, x_ref, y_ref) in enumerate(core()):
        ulps(x[i], x_ref)
        ulps(y[i], y_ref)
        jax.tree.map(lambda a, b: ulps(a[i], b), variables, reference)
    assert spec.families == ("normal", "uniform", "orthogonal") and spec.bias_noise


def test_one_compilation_for_the_whole_grid(count_grid):
    grid = count_grid
    first = jf.sweep(grid, quiet=True)
    assert first.attrs["compilations"] == 1
    # per activation a chunk of 8 seeds for xavier, he and orthogonal each, all of one shape
    assert first.attrs["num_chunks"] == 9
    second = jf.sweep(grid, quiet=True)
    assert second.attrs["compilations"] == 0
    xr.testing.assert_identical(first.drop_attrs(), second.drop_attrs())


@pytest.fixture(scope="module")
def count_grid():
    return jf.Grid(
        depth=[1, 2, 3, 4],
        activation=["relu", "tanh", "sigmoid"],
        init=["xavier", "he", "orthogonal"],
        width=3,
        seeds=8,
        batch=1,
        metrics=["J_spectrum", "P_spectrum", "grad_ratio"],
    )


def test_chunk_size_does_not_change_results(count_grid):
    one = jf.sweep(count_grid, quiet=True)
    # per activation: normal family 16 configs in 5, 5, 5, 1; orthogonal 8 in 5, 3
    other = jf.sweep(count_grid, quiet=True, chunk_size=5)
    assert other.attrs["num_chunks"] == 18 and one.attrs["num_chunks"] == 9
    xr.testing.assert_identical(one.drop_attrs(), other.drop_attrs())


def test_four_devices_equal_one(count_grid):
    one = jf.sweep(count_grid, quiet=True, devices=jax.devices()[:1])
    assert len(jax.devices()) == 4 and one.attrs["num_devices"] == 1
    sharded = jf.sweep(count_grid, quiet=True, devices=jax.devices(), chunk_size=10)
    assert sharded.attrs["num_devices"] == 4 and sharded.attrs["compilations"] == 1
    # Each device computes whole configurations, but XLA may fuse a 3-configuration shard
    # differently from a 24-configuration chunk: equal to float32 rounding.
    xr.testing.assert_allclose(one.drop_attrs(), sharded.drop_attrs(), rtol=1e-5, atol=0)


def test_host_devices_that_would_deadlock_lapack_are_refused(monkeypatch):
    import os

    from jaxflow.sweeps import run

    monkeypatch.setattr(run, "_lapack_blocks_pool", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    # a pool of as many threads as devices (jaxflow sizes it from NPROC, else from the cores)
    monkeypatch.setenv("NPROC", str(len(jax.devices())))
    grid = jf.Grid(
        depth=[2],
        activation=["tanh"],
        init=["he"],
        width=64,
        seeds=8,
        batch=4,
        metrics=["P_spectrum"],
    )
    with pytest.raises(ValueError, match="would deadlock jaxlib < 0.11's batched SVD"):
        jf.sweep(grid, devices=jax.devices())
    # tiny matrices stay below jaxlib's split threshold: the tests' sharded sweeps are safe
    run.check_host_devices(jax.devices(), compute.spec_of(GRID), 8)


def test_a_refused_sweep_leaves_no_thread_running(monkeypatch):
    # The sweep overlaps host work (imports, the mean-field table) with its first compilation on
    # a daemon thread. A sweep refused after it started must wait for it: a daemon thread still
    # inside XLA when the interpreter exits aborts the process ("exception not rethrown").
    import threading
    import time

    from jaxflow.sweeps import run

    finished = []

    def slow_prefetch(*args):
        time.sleep(0.5)
        finished.append(True)

    monkeypatch.setattr(run, "_prefetch", slow_prefetch)
    with pytest.raises(ValueError, match=r"devices=\(\) is empty"):
        jf.sweep(jf.Grid(depth=[2], width=4, seeds=1), devices=())
    assert finished == [True]
    assert not [t for t in threading.enumerate() if getattr(t, "_target", None) is slow_prefetch]


def test_dataset_is_labelled(ds):
    assert ds.J_sv_max.dims == ("activation", "init", "seed", "example", "depth", "layer")
    assert ds.grad_ratio.dims == ("activation", "init", "seed", "depth")
    assert list(ds.init.values) == ["xavier", "orthogonal", "gaussian(1.5,0.1)"]
    np.testing.assert_array_equal(ds.sigma_w2, [init_variances(i)[0] for i in GRID.init])
    assert jf.Grid.from_dict(__import__("json").loads(ds.attrs["grid"])) == GRID
    for key in ("versions", "device_kind", "platform", "compilations", "num_devices"):
        assert key in ds.attrs
    frame = ds.grad_ratio.to_dataframe()
    assert len(frame) == 3 * 3 * 2 * 2
    assert ds[["J_sv_max", "dead_fraction"]].to_dataframe().index.names[:3] == [
        "activation",
        "init",
        "seed",
    ]


def test_theory_beside_measurement_when_available(ds):
    theory = pytest.importorskip("jaxflow.theory")
    assert hasattr(theory, "chi1")
    # ReLU: χ₁ = σ_w²/2 (the q → 0⁺ limit is not needed at σ_b² = 0), whatever q* is.
    np.testing.assert_allclose(ds.theory_chi1.sel(activation="relu", init="xavier"), 0.5, rtol=1e-4)
    # tanh at σ_b² = 0: q* = 0 and χ₁ = σ_w² φ′(0)² = σ_w² (orthogonal: gain² = 1)
    np.testing.assert_allclose(
        ds.theory_chi1.sel(activation="tanh", init="orthogonal"), 1.0, rtol=1e-4
    )
    np.testing.assert_allclose(
        ds.theory_grad_ratio.sel(activation="relu", init="xavier"), 0.5 ** (ds.depth / 2), rtol=1e-4
    )


def test_progress_bar_only_on_a_terminal(ds, capsys, monkeypatch):
    import io
    import sys

    grid = GRID
    jf.sweep(grid)
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    jf.sweep(grid)
    assert "config" in terminal.getvalue() and "chunks 9/9" in terminal.getvalue()
    terminal.truncate(0)
    jf.sweep(grid, quiet=True)
    assert terminal.getvalue().strip("\x00") == ""


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=[]), "depth=() is empty"),
        (dict(depth=[0, 2]), "depth=0 is not allowed"),
        (dict(depth=[3, 3]), "depth lists 3 twice"),
        (dict(activation=["relu", "swish"]), "activation='swish' is not allowed; valid names are"),
        (dict(init=["xavierr"]), "init='xavierr' is not a known initialisation"),
        (dict(init=["he", "kaiming"]), "init lists 'kaiming' twice"),
        (dict(init=[(1.0, -0.1)]), "sigma_b2=-0.1 is not a valid variance"),
        (dict(width=0), "width=0 is not allowed"),
        (dict(model="cnn"), "model='cnn' is not allowed; use one of mlp, residual"),
        (dict(metrics=["spectrum"]), "metrics='spectrum' is not allowed; valid metrics are"),
        (dict(activation=["gelu"], metrics=["dead_fraction"]), "which gelu lack"),
        (dict(model="residual", metrics=["dead_fraction"]), "model='mlp' only"),
    ],
)
def test_bad_grids_fail_before_running(kwargs, message):
    with pytest.raises(ValueError, match=None) as error:
        jf.Grid(**kwargs)
    assert message in str(error.value)


def test_grid_from_toml(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'depth = [4, 2]\nactivation = ["tanh"]\ninit = ["he", [1.5, 0.05]]\nwidth = 8\n'
    )
    grid = jf.Grid.from_toml(path)
    assert grid.depth == (2, 4) and grid.init == ("he", (1.5, 0.05)) and grid.width == 8
    assert jf.Grid.from_dict(grid.to_dict()) == grid
    path.write_text("depth = [2]\nwidht = 8\n")
    with pytest.raises(ValueError, match="unknown key 'widht'; allowed keys are: depth"):
        jf.Grid.from_toml(path)
    path.write_text("depth = [2\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        jf.Grid.from_toml(path)


def test_bad_sweep_arguments():
    with pytest.raises(TypeError, match="pass a jaxflow.Grid"):
        jf.sweep({"depth": [1]})
    with pytest.raises(ValueError, match="chunk_size=0 is not allowed"):
        jf.sweep(GRID, chunk_size=0)
    with pytest.raises(ValueError, match="below one configuration's estimated"):
        jf.sweep(GRID, memory_budget=10)
    with pytest.raises(ValueError, match="multi-host sweep needs store="):
        jf.sweep(GRID, process_count=2, process_index=0)


def test_memory_budget_sets_the_chunk_size():
    from jaxflow.sweeps.run import choose_chunk_size

    spec = compute.spec_of(GRID)
    devices = jax.devices()[:1]
    big = jf.Grid(depth=[2], activation=["relu"], init=["xavier", "he"], width=WIDTH, seeds=8)
    big_spec = compute.spec_of(big)
    per_config = compute.bytes_per_config(big_spec)
    assert choose_chunk_size(big, big_spec, None, 5 * per_config, devices) == 5
    # capped at the smallest weight-family group: GRID's orthogonal init has 2 seeds
    assert choose_chunk_size(GRID, spec, None, 10**12, devices) == 2
    assert choose_chunk_size(big, big_spec, None, 10**12, devices) == 16


def test_reference_checksum_sums_log_norm_of_each_depths_end_to_end_product(ds):
    from jaxflow.sweeps.reference import REFERENCE, checksum

    ends = [ds.P_sv_max.sel(depth=d, layer=d).values.astype(np.float64) for d in ds.depth.values]
    np.testing.assert_allclose(checksum(ds), np.sum(np.log(ends)), rtol=1e-12)
    assert jf.Grid(**REFERENCE).num_configs == 72 and jf.Grid(**REFERENCE).max_depth == 40


# ---------------------------------------------------------------------------------------------
# P spectra by the stable (graded) method


def test_stable_p_spectra_equal_svd_and_float64_numpy_where_both_are_exact():
    """On a shallow, well-conditioned grid (tanh, orthogonal and xavier, depth ≤ 4) the stable
    method's P spectra equal the SVD's and float64 NumPy's SVD of the explicit products."""
    kw = dict(
        depth=[2, 4],
        activation=["tanh"],
        init=["orthogonal", "xavier"],
        width=WIDTH,
        seeds=2,
        batch=2,
        metrics=["J_spectrum", "P_spectrum", "P_spectra"],
    )
    svd = jf.sweep(jf.Grid(**kw), quiet=True)
    stable = jf.sweep(jf.Grid(**kw, p_spectrum_method="stable"), quiet=True)
    for init in ("orthogonal", "xavier"):
        for seed in range(2):
            point = dict(activation="tanh", init=init, seed=seed, depth=4)
            model, variables, x, _ = _core_network(jf.Grid(**kw), "tanh", init, seed, 4)
            _, J, *_ = _np_mlp(variables, x, x[:, :1], "tanh")
            P = np.stack(
                [
                    np.stack(
                        [
                            np.linalg.multi_dot([*J[e, : l + 1][::-1], np.eye(WIDTH)])
                            for l in range(4)
                        ]
                    )
                    for e in range(2)
                ]
            )
            ref = np.linalg.svd(P, compute_uv=False)  # (example, layer, sv), float64
            got = stable.P_sv.sel(point).values
            plain = svd.P_sv.sel(point).values
            scale = ref[..., :1]
            # Both against float64 at the float32 SVD's accuracy (relative to σ_max) ...
            assert sv_error(got, P) < tol("float32", "svd")
            np.testing.assert_allclose(got, plain, rtol=0, atol=tol("float32", "svd") * scale.max())
            # ... and the graded method to every singular value's own size, where the SVD
            # of the float32 product is not (σ_min/σ_max reaches 1e-6 here).
            np.testing.assert_allclose(got, ref, rtol=1e-3)
            np.testing.assert_allclose(
                stable.P_sv_mean_log.sel(point).values, np.mean(np.log(ref), -1), rtol=1e-4
            )
            np.testing.assert_allclose(
                stable.P_cond.sel(point).values, ref[..., 0] / ref[..., -1], rtol=1e-3
            )
            for name in ("P_sv_max", "P_sv_mean_sq"):
                np.testing.assert_allclose(
                    stable[name].sel(point).values, svd[name].sel(point).values, rtol=1e-4
                )
            ok = ref[..., -1] > 1e-2 * ref[..., 0]  # where the SVD's small values are exact too
            for name in ("P_sv_min", "P_sv_mean_log", "P_cond"):
                np.testing.assert_allclose(
                    stable[name].sel(point).values[ok], svd[name].sel(point).values[ok], rtol=1e-3
                )
            np.testing.assert_array_equal(
                stable.J_sv_max.sel(point).values, svd.J_sv_max.sel(point).values
            )


def test_p_spectrum_method_is_validated_and_old_grids_keep_their_identity():
    with pytest.raises(
        ValueError, match=r"p_spectrum_method='qr' is not allowed; use one of 'svd', 'stable'"
    ):
        jf.Grid(p_spectrum_method="qr")
    default = jf.Grid()
    # A grid recorded before the option existed (no key) is the same grid: an SVD sweep.
    assert "p_spectrum_method" not in default.to_dict()
    assert jf.Grid.from_dict(default.to_dict()) == default
    stable = jf.Grid(p_spectrum_method="stable")
    assert stable.to_dict()["p_spectrum_method"] == "stable"
    assert jf.Grid.from_dict(stable.to_dict()) == stable
    assert compute.spec_of(stable) != compute.spec_of(default)


def test_theory_status_is_mean_fields_own():
    """The sweep names each (activation, init) cell exactly as jf.mean_field does: one source."""
    pytest.importorskip("jaxflow.theory")
    from jaxflow.report.sweep import _unchecked_cells

    inits = [(0.5, 0.0), (2.0, 0.0), (3.0, 0.0), (1.5, 0.1), "he"]
    grid = jf.Grid(depth=[1], activation=["relu", "tanh", "sigmoid"], init=inits, width=2, seeds=1,
                   batch=1, metrics=["grad_ratio", "theory"])  # fmt: skip
    ds = jf.sweep(grid, quiet=True)
    for a in grid.activation:
        for label, init in zip(ds.init.values, inits):
            expected = jf.mean_field(a, *init_variances(init))
            cell = ds.sel(activation=a, init=label)
            assert str(cell.theory_status.item()) == jf.PredictionStatus.name_of(expected.status), (
                a,
                init,
            )
            np.testing.assert_allclose(float(cell.theory_chi1), float(expected.chi1), rtol=1e-6)
    relu3 = str(ds.theory_status.sel(activation="relu", init="gaussian(3,0)").item())
    assert relu3 == "diverges"  # q* = ∞ above ReLU's critical σ_w² = 2, not "marginal"
    status = np.asarray(ds.theory_status)
    cells = _unchecked_cells(grid.activation, ds.sigma_w2.values, status)
    assert "relu at σ_w²=3 (diverges)" in cells and "relu at σ_w²=2 (marginal)" in cells

"""The trainability figures, on small datasets of exactly the schema
jaxflow.experiments.trainability returns, built by hand: what is drawn is checked against NumPy
means and against jaxflow.theory's 6ξ_c and critical σ_w²."""

import numpy as np
import pytest
import xarray as xr

import jaxflow as jf
from jaxflow.plotting import plot_isometry, plot_trainability, save_figure, trainability_map

DIMS = ("depth", "activation", "init", "seed", "step")
SIGMA_B2 = 0.05


def _dataset(activations, inits, depths=(4, 8, 16, 32), seeds=3, steps=(0, 50, 100), seed=0):
    """A trainability dataset of the agreed schema with random values.

    ``inits`` is a list of (family, σ_w², σ_b²); labels are formatted like the Grid's.
    """
    rng = np.random.default_rng(seed)
    shape = (len(depths), len(activations), len(inits), seeds, len(steps))
    prefix = {"normal": "gaussian", "orthogonal": "orthogonal"}
    labels = [f"{prefix.get(f, f)}({w:g},{b:g})" for f, w, b in inits]
    loss = np.exp(rng.normal(0.0, 0.5, shape)) * np.linspace(2.3, 0.2, len(steps))
    chi1 = np.array([[float(jf.chi1(a, w, b).value) for _, w, b in inits] for a in activations])
    return xr.Dataset(
        {
            "train_loss": (DIMS, loss.astype(np.float32)),
            "train_accuracy": (DIMS, rng.uniform(0, 1, shape).astype(np.float32)),
            "test_accuracy": (DIMS, rng.uniform(0, 1, shape).astype(np.float32)),
            "first_nonfinite_step": (DIMS[:4], np.full(shape[:4], -1, np.int32)),
            "chi1": (("activation", "init"), chi1),
            "xi_c": (("activation", "init"), np.ones(chi1.shape)),
            "jacobian_spread": (DIMS[:4], rng.uniform(0, 2, shape[:4]).astype(np.float32)),
        },
        coords={
            "depth": list(depths),
            "activation": list(activations),
            "init": labels,
            "seed": list(range(seeds)),
            "step": list(steps),
            "sigma_w2": ("init", [float(w) for _, w, _ in inits]),
            "sigma_b2": ("init", [float(b) for _, _, b in inits]),
            "family": ("init", [f for f, _, _ in inits]),
        },
        attrs={"dataset": "test", "num_classes": 10, "chance_accuracy": 0.1},
    )


# Gaussian σ_w² out of order (the map sorts them), and an orthogonal init it must leave out.
SIGMAS = [2.5, 0.75, 4.0, 1.25, 1.75, 3.0]
MAP_INITS = [("normal", w, SIGMA_B2) for w in SIGMAS] + [("orthogonal", 1.75, SIGMA_B2)]


@pytest.fixture(scope="module")
def map_ds():
    return _dataset(["tanh"], MAP_INITS)


def _mesh(ax):
    from matplotlib.collections import QuadMesh

    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return mesh


def _line(ax, label_start):
    (line,) = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith(label_start)]
    return line


def test_heat_map_cells_are_the_seed_means_sorted_by_sigma_w2(map_ds):
    order = np.argsort(SIGMAS)
    for step, index in ((-1, 2), (50, 1)):
        ax = plot_trainability(map_ds, step=step, theory=False)
        acc = map_ds["test_accuracy"].values[:, 0, : len(SIGMAS), :, index].astype(np.float64)
        expected = acc.mean(axis=2)[:, order]  # (depth, σ_w² ascending)
        drawn = np.asarray(_mesh(ax).get_array()).reshape(expected.shape)
        np.testing.assert_allclose(drawn, expected, rtol=1e-6)
        assert not ax.get_lines()  # theory=False draws no curve
    table = trainability_map(map_ds, metric="train_loss", step=0)
    loss = map_ds["train_loss"].values[:, 0, :, :, 0].astype(np.float64)  # (depth, init, seed)
    np.testing.assert_allclose(table.values, loss[:, order].mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(table["sigma_w2"].values, np.sort(SIGMAS))


def test_heat_map_theory_is_six_xi_c_and_the_critical_line(map_ds, tmp_path):
    ax = plot_trainability(map_ds)
    curve = _line(ax, "6ξ_c")
    x, y = np.asarray(curve.get_xdata(), float), np.asarray(curve.get_ydata(), float)
    assert len(x) >= 100 and np.all(np.diff(x) > 0)  # smooth: many more points than the grid
    assert x[0] <= min(SIGMAS) and x[-1] >= max(SIGMAS)
    # Eight points of the curve, spread over it and including its highest, in one call (the
    # theory's smallest padded batch, which the scalar calls elsewhere compile; every point would
    # cost as much again as the plot's own call, ~15 ms each).
    picks = np.unique(np.r_[np.linspace(0, len(x) - 1, 7).round().astype(int), np.nanargmax(y)])
    xi_c = np.asarray(jf.depth_scales("tanh", x[picks], SIGMA_B2).xi_c, float)
    np.testing.assert_allclose(y[picks], 6 * xi_c, rtol=1e-6)
    critical = _line(ax, "critical σ_w²")
    expected = float(jf.critical_sigma_w2("tanh", SIGMA_B2).value)
    np.testing.assert_allclose(np.asarray(critical.get_xdata(), float), expected, rtol=1e-6)
    # Schoenholz et al. (2017, Fig. 1) place the tanh critical point at σ_b² = 0.05 near 1.76.
    assert expected == pytest.approx(1.76, abs=0.02)
    # ξ_c peaks at the critical point: the curve's highest point is there.
    assert abs(x[np.nanargmax(np.where(np.isfinite(y), y, np.nan))] - expected) < 0.05
    assert ax.get_xlabel().startswith("weight variance σ_w²") and ax.get_ylabel() == "depth L"
    fig = ax.get_figure()
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert fig.axes[1].get_ylabel() == (
        "test accuracy at step 100\n(mean over 3 seeds; white mark: chance 0.1)"
    )
    save_figure(ax, tmp_path / "trainability.png")


def test_heat_map_masks_non_finite_losses(map_ds):
    ds = map_ds.copy(deep=True)
    ds["train_loss"][0, 0, 0, 1, -1] = np.nan  # one seed of one configuration diverged
    mesh = _mesh(plot_trainability(ds, metric="train_loss", theory=False))
    values = mesh.get_array()
    column = int(np.argsort(SIGMAS).tolist().index(0))
    assert np.ma.getmaskarray(values).reshape(4, len(SIGMAS))[0, column]
    assert np.ma.getmaskarray(values).sum() == 1


@pytest.mark.parametrize(
    "change, kwargs, match",
    [
        (lambda ds: ds.drop_vars("test_accuracy"), {}, "lacks \\['test_accuracy'\\]"),
        (lambda ds: ds.drop_vars("family"), {}, "lacks \\['family'\\]"),
        (lambda ds: ds, {"step": 7}, "step=7 was not recorded"),
        (lambda ds: ds, {"activation": "relu"}, "activation='relu' is not in this dataset"),
        (lambda ds: ds, {"metric": "accuracy"}, "metric='accuracy' is not allowed"),
        (
            lambda ds: ds.assign_coords(sigma_b2=("init", [0.0] + [SIGMA_B2] * 6)),
            {},
            "several σ_b²",
        ),
        (lambda ds: ds.isel(init=[6]), {}, "no Gaussian initialisation"),
    ],
)
def test_heat_map_errors(map_ds, change, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_trainability(change(map_ds), **kwargs)


# The isometry comparison: tanh is critical at σ_w² ≈ 1.76, ReLU at 2 (σ_b² = 0.05).
ISO_INITS = [
    ("normal", 1.76, SIGMA_B2),
    ("orthogonal", 1.76, SIGMA_B2),
    ("normal", 2.0, SIGMA_B2),
    ("orthogonal", 2.0, SIGMA_B2),
]


@pytest.fixture(scope="module")
def iso_ds():
    return _dataset(
        ["tanh", "relu"], ISO_INITS, depths=(10, 30, 60), seeds=4, steps=(0, 20, 40, 60)
    )


def test_isometry_curves_are_seed_means_at_the_critical_pair(iso_ds, tmp_path):
    curves, spread = plot_isometry(iso_ds)
    assert curves.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in curves.get_lines()}
    # For each activation the pair whose χ₁ is nearest 1: tanh → 1.76, relu → 2.
    for activation, sigma_w2 in (("tanh", 1.76), ("relu", 2.0)):
        for family, name in (("normal", "Gaussian"), ("orthogonal", "orthogonal")):
            init = ISO_INITS.index((family, sigma_w2, SIGMA_B2))
            label = f"{activation}, {name} (σ_w²={sigma_w2:g}, σ_b²={SIGMA_B2:g})"
            a = list(iso_ds["activation"].values).index(activation)
            loss = iso_ds["train_loss"].values[-1, a, init].astype(np.float64)  # (seed, step)
            np.testing.assert_allclose(lines[label].get_ydata(), loss.mean(0), rtol=1e-6)
            np.testing.assert_array_equal(lines[label].get_xdata(), [0, 20, 40, 60])
            assert lines[label].get_linestyle() == ("-" if family == "orthogonal" else "--")
            jac = iso_ds["jacobian_spread"].values[:, a, init].astype(np.float64)  # (depth, seed)
            (bars,) = [c for c in spread.containers if c.get_label() == label]
            drawn = bars.lines[0]  # the errorbar's data line
            np.testing.assert_allclose(drawn.get_ydata(), jac.mean(1), rtol=1e-6)
            np.testing.assert_array_equal(drawn.get_xdata(), [10, 30, 60])
    assert len(lines) == 4 and len(curves.collections) == 4  # one band per curve
    curves_30, _ = plot_isometry(iso_ds, depth=30, activations=["relu"], metric="test_accuracy")
    assert curves_30.get_yscale() == "linear" and len(curves_30.get_lines()) == 2
    save_figure(curves, tmp_path / "isometry.png")


@pytest.mark.parametrize(
    "change, kwargs, match",
    [
        (lambda ds: ds.drop_vars("jacobian_spread"), {}, "lacks \\['jacobian_spread'\\]"),
        (lambda ds: ds.drop_vars("chi1"), {}, "lacks \\['chi1'\\]"),
        (lambda ds: ds, {"depth": 11}, "depth=11 is not in this dataset"),
        (lambda ds: ds, {"activations": ["erf"]}, "activation='erf'"),
        (lambda ds: ds.isel(init=[0, 3]), {}, "both an orthogonal and a Gaussian"),
        (lambda ds: ds, {"axes": [None]}, "2"),
    ],
)
def test_isometry_errors(iso_ds, change, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_isometry(change(iso_ds), **kwargs)

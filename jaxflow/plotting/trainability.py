"""Trainability: which deep networks train (Schoenholz et al. 2017's heat map with 6ξ_c on it), and
how much faster orthogonal weights train at criticality (Pennington et al. 2017).

Both figures read the dataset :func:`jaxflow.experiments.trainability` returns: dimensions
``depth, activation, init, seed, step``; ``init`` carries the non-index coordinates ``sigma_w2``,
``sigma_b2`` and ``family``; data variables ``train_loss``, ``train_accuracy``,
``test_accuracy``, ``chi1``, ``jacobian_spread`` (and others these figures do not need).
"""

from __future__ import annotations

import functools

from jaxflow.plotting._common import STYLE, new_axes

__all__ = ["plot_isometry", "plot_trainability", "trainability_map"]

# The 6ξ_c curve: evenly spaced points over the plot's σ_w² range plus points packed
# geometrically towards the critical σ_w² from both sides, where ξ_c diverges. Mean-field theory
# costs ~15 ms per point on a CPU core (a fixed point and a 2-D Gaussian integral each), so the
# curve is computed once per (activation, σ_b², range) in a process.
_CURVE_EVEN = 64
_CURVE_NEAR = 24
_METRICS = ("test_accuracy", "train_accuracy", "train_loss")


def _require(ds, variables, coords=("sigma_w2", "sigma_b2", "family")):
    """``ValueError`` naming what a trainability dataset lacks, if anything."""
    missing = [v for v in variables if v not in ds.data_vars]
    missing += [c for c in coords if c not in ds.coords]
    missing += [d for d in ("depth", "activation", "init", "seed", "step") if d not in ds.dims]
    if missing:
        raise ValueError(
            f"ds lacks {missing}: pass the dataset jaxflow.experiments.trainability returns "
            f"(it has {sorted(ds.data_vars)} and dimensions {sorted(ds.dims)})"
        )


def _activation(ds, activation):
    names = [str(a) for a in ds["activation"].values]
    if activation is None:
        if len(names) == 1:
            return names[0]
        if "tanh" in names:
            return "tanh"
        raise ValueError(f"activation=None is ambiguous for this dataset; use one of {names}")
    if activation not in names:
        raise ValueError(f"activation={activation!r} is not in this dataset; use one of {names}")
    return activation


def _edges(centres):
    """Cell edges around sorted centres: midpoints inside, half a gap beyond each end."""
    import numpy as np

    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def trainability_map(ds, *, activation=None, step: int = -1, metric: str = "test_accuracy"):
    """The heat map's numbers: ``metric`` at ``step``, mean over seeds, over depth × σ_w².

    Only the Gaussian initialisations (``family == "normal"``) enter, sorted by σ_w²; they must
    share one σ_b².

    Args:
      ds: a dataset from :func:`jaxflow.experiments.trainability`.
      activation: which activation (default: the only one, else ``"tanh"``).
      step: a recorded training step (a value of ``ds.step``); ``-1`` for the last.
      metric: ``"test_accuracy"``, ``"train_accuracy"`` or ``"train_loss"``.

    Returns:
      An ``xarray.DataArray`` (depth, init) with the coordinate ``sigma_w2`` on ``init``, sorted
      by it; a configuration whose loss turned non-finite in any seed is NaN.

    Raises:
      ValueError: for a missing variable, an unknown activation, metric or step, no Gaussian
        initialisation, several σ_b², or two Gaussian initialisations with the same σ_w².

    Example:
      >>> import numpy as np, xarray as xr
      >>> from jaxflow.plotting import trainability_map
      >>> dims = ("depth", "activation", "init", "seed", "step")
      >>> ds = xr.Dataset(
      ...     {"test_accuracy": (dims, np.arange(12.0).reshape(2, 1, 3, 2, 1) / 12)},
      ...     coords={"depth": [4, 8], "activation": ["tanh"], "seed": [0, 1], "step": [50],
      ...             "init": ["gaussian(3,0.05)", "gaussian(1,0.05)", "gaussian(2,0.05)"],
      ...             "sigma_w2": ("init", [3.0, 1.0, 2.0]), "sigma_b2": ("init", [0.05] * 3),
      ...             "family": ("init", ["normal"] * 3)})
      >>> table = trainability_map(ds)
      >>> table["sigma_w2"].values.tolist(), table.shape
      ([1.0, 2.0, 3.0], (2, 3))
    """
    import numpy as np

    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; use one of {list(_METRICS)}")
    _require(ds, [metric])
    activation = _activation(ds, activation)
    steps = [int(s) for s in ds["step"].values]
    if step == -1:
        step = steps[-1]
    if step not in steps:
        raise ValueError(f"step={step!r} was not recorded; use -1 or one of {steps}")
    gaussian = ds["family"].values == "normal"
    if not gaussian.any():
        raise ValueError(
            "the dataset has no Gaussian initialisation (family 'normal') to put on the σ_w² axis"
        )
    sub = ds.isel(init=np.flatnonzero(gaussian))
    biases = np.unique(sub["sigma_b2"].values)
    if len(biases) != 1:
        raise ValueError(
            f"the Gaussian initialisations have several σ_b² {list(biases)}; one map shows one "
            "σ_b²: select the inits of one with ds.sel(init=...)"
        )
    order = np.argsort(sub["sigma_w2"].values, kind="stable")
    sub = sub.isel(init=order)
    if len(np.unique(sub["sigma_w2"].values)) != sub.sizes["init"]:
        raise ValueError(
            f"two Gaussian initialisations share a σ_w² ({list(sub['init'].values)}); select one "
            "of each with ds.sel(init=...)"
        )
    values = sub[metric].sel(activation=activation, step=step)
    return values.mean("seed", skipna=False).transpose("depth", "init")


def plot_trainability(
    ds,
    ax=None,
    *,
    activation=None,
    step: int = -1,
    metric: str = "test_accuracy",
    theory: bool = True,
):
    """Schoenholz et al.'s heat map: accuracy after training over depth × σ_w², with 6ξ_c on it.

    Each cell is ``metric`` at ``step`` (mean over seeds) of the Gaussian-initialised network of
    that depth and σ_w² (:func:`trainability_map`). With ``theory``, the mean-field prediction is
    drawn on top, computed with :mod:`jaxflow.theory` at the dataset's σ_b² on a fine σ_w² grid
    (not read from the dataset's ``xi_c``, so the curve is smooth): the depth 6ξ_c(σ_w², σ_b²)
    below which signals still carry information about the input, so that networks train
    (white line), and the critical σ_w² where χ₁ = 1 and ξ_c diverges (dashed vertical line).

    Args:
      ds: a dataset from :func:`jaxflow.experiments.trainability`.
      ax: an Axes, or ``None`` for a new figure.
      activation: which activation (default: the only one, else ``"tanh"``).
      step: a recorded training step; ``-1`` (the default) for the last.
      metric: ``"test_accuracy"`` (the default), ``"train_accuracy"`` or ``"train_loss"``.
      theory: draw 6ξ_c and the critical σ_w².

    Returns:
      The Axes: x is σ_w², y the depth; the colour bar is on the same figure.

    Raises:
      ValueError: as :func:`trainability_map`.

    References:
      Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, Deep Information Propagation, ICLR 2017
      (Fig. 5: accuracy over depth × σ_w² with 6ξ_c).

    Example:
      >>> import numpy as np, xarray as xr
      >>> from jaxflow.plotting import plot_trainability
      >>> dims = ("depth", "activation", "init", "seed", "step")
      >>> w = [1.0, 1.5, 2.0, 3.0]
      >>> ds = xr.Dataset(
      ...     {"test_accuracy": (dims, np.full((2, 1, 4, 1, 1), 0.5))},
      ...     coords={"depth": [4, 8], "activation": ["tanh"], "seed": [0], "step": [50],
      ...             "init": [f"gaussian({x:g},0.05)" for x in w], "sigma_w2": ("init", w),
      ...             "sigma_b2": ("init", [0.05] * 4), "family": ("init", ["normal"] * 4)})
      >>> ax = plot_trainability(ds)
      >>> ax.get_xlabel()
      'weight variance σ_w² (= fan_in·Var W)'
    """
    import numpy as np

    table = trainability_map(ds, activation=activation, step=step, metric=metric)
    activation = _activation(ds, activation)
    step = int(ds["step"].values[-1]) if step == -1 else step
    sigma_w2 = table["sigma_w2"].values.astype(float)
    depths = table["depth"].values.astype(float)
    sigma_b2 = float(table["sigma_b2"].values[0])
    ax = new_axes(ax)
    ax.grid(False)
    accuracy = metric != "train_loss"
    import matplotlib

    # grey: a configuration whose loss turned non-finite in some seed
    cmap = matplotlib.colormaps["viridis" if accuracy else "viridis_r"].with_extremes(bad="0.6")
    x_edges, y_edges = _edges(sigma_w2), _edges(depths)
    values = np.ma.masked_invalid(table.values.astype(float))
    mesh = ax.pcolormesh(
        x_edges,
        y_edges,
        values,
        cmap=cmap,
        vmin=0.0 if accuracy else None,
        vmax=1.0 if accuracy else None,
        shading="flat",
    )
    seeds = ds.sizes["seed"]
    chance = ds.attrs.get("chance_accuracy") if accuracy else None
    label = (
        f"{metric.replace('_', ' ')} at step {step}\n(mean over {seeds} seed{'s' * (seeds > 1)}"
        + (f"; white mark: chance {float(chance):.3g})" if chance is not None else ")")
    )
    colorbar = ax.get_figure().colorbar(mesh, ax=ax, label=label)
    if chance is not None:
        colorbar.ax.axhline(float(chance), color="white", linewidth=1.5)
    if theory:
        from jaxflow.theory import critical_sigma_w2

        critical = float(critical_sigma_w2(activation, sigma_b2).value)
        fine, xi_c = _xi_c_curve(activation, float(sigma_b2), float(x_edges[0]),
                                 float(x_edges[-1]), critical)  # fmt: skip
        ax.plot(fine, 6 * xi_c, color="white", linewidth=2.0, label="6ξ_c (mean field)")
        if np.isfinite(critical):
            ax.axvline(
                critical,
                color="white",
                linestyle=STYLE["theory_linestyle"],
                linewidth=1.2,
                label=f"critical σ_w² = {critical:.3g} (χ₁ = 1)",
            )
        ax.legend(
            loc="upper right", fontsize=8, facecolor="0.3", labelcolor="white", framealpha=0.8
        )
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlabel("weight variance σ_w² (= fan_in·Var W)")
    ax.set_ylabel("depth L")
    ax.set_title(
        f"{activation}, σ_b² = {sigma_b2:g}: which networks train", fontsize=STYLE["title_fontsize"]
    )
    return ax


@functools.lru_cache(maxsize=32)
def _xi_c_curve(activation, sigma_b2, lo, hi, critical):
    """(σ_w² points, ξ_c there) for the heat map's theory curve; deterministic, so cached."""
    import numpy as np

    from jaxflow.theory import depth_scales

    fine = np.linspace(lo, hi, _CURVE_EVEN)
    if np.isfinite(critical) and lo < critical < hi:
        offsets = np.geomspace(1e-3, 1.0, _CURVE_NEAR)
        fine = np.concatenate([fine, critical - offsets * (critical - lo),
                               critical + offsets * (hi - critical)])  # fmt: skip
    fine = np.unique(fine[(fine > 0) & (fine >= lo) & (fine <= hi)])
    xi_c = np.asarray(depth_scales(activation, fine, sigma_b2).xi_c, dtype=float)
    fine.setflags(write=False)
    xi_c.setflags(write=False)
    return fine, xi_c


def _critical_pairs(ds, activation):
    """(σ_w², σ_b², {family: init label}) of the variance pair with both an orthogonal and a
    Gaussian initialisation whose mean-field χ₁ is closest to 1 for ``activation``."""
    import numpy as np

    chi1 = ds["chi1"].sel(activation=activation).values.astype(float)
    families = [str(f) for f in ds["family"].values]
    labels = [str(i) for i in ds["init"].values]
    pairs = {}
    for k, (w, b) in enumerate(zip(ds["sigma_w2"].values, ds["sigma_b2"].values)):
        if families[k] in ("orthogonal", "normal"):
            pairs.setdefault((float(w), float(b)), {})[families[k]] = k
    complete = {key: v for key, v in pairs.items() if len(v) == 2}
    if not complete:
        raise ValueError(
            "the dataset has no (σ_w², σ_b²) with both an orthogonal and a Gaussian "
            f"initialisation to compare; its inits are {labels}"
        )
    key = min(complete, key=lambda kv: abs(np.nanmean(chi1[list(complete[kv].values())]) - 1))
    return key, {family: labels[k] for family, k in complete[key].items()}


def plot_isometry(
    ds,
    axes=None,
    *,
    depth: int | None = None,
    activations=None,
    metric: str = "train_loss",
):
    """Dynamical isometry: training curves of orthogonal against Gaussian weights at criticality.

    Left panel: ``metric`` against the training step at one depth, for each activation, the
    orthogonal (solid) and the Gaussian (dashed) initialisation with the same (σ_w², σ_b²) — the
    pair of the dataset whose mean-field χ₁ is closest to 1 — as the mean over seeds with a band
    from the smallest to the largest seed (log y for the loss). Right panel: the spread of the
    input→last-hidden Jacobian's log singular values at initialisation (``jacobian_spread``)
    against depth for the same initialisations, mean over seeds with the seeds' range as error
    bars: isometry is a spread near 0 that stays there with depth, which orthogonal weights give
    for tanh-like activations and not for ReLU.

    Args:
      ds: a dataset from :func:`jaxflow.experiments.trainability`.
      axes: two Axes (curves, spread), or ``None`` for a new figure.
      depth: the depth whose curves are shown (default: the largest).
      activations: which activations (default: all of the dataset's).
      metric: ``"train_loss"`` (the default), ``"train_accuracy"`` or ``"test_accuracy"``.

    Returns:
      The two Axes.

    Raises:
      ValueError: for a missing variable, an unknown depth, activation or metric, or no variance
        pair with both an orthogonal and a Gaussian initialisation.

    References:
      Pennington, Schoenholz & Ganguli, Resurrecting the sigmoid in deep learning through
      dynamical isometry, NeurIPS 2017 (Figs. 4–5).

    Example:
      >>> import numpy as np, xarray as xr
      >>> from jaxflow.plotting import plot_isometry
      >>> loss = np.exp(-np.linspace(0, 2, 3))  # 3 recorded steps
      >>> ds = xr.Dataset(
      ...     {"train_loss": (("depth", "activation", "init", "seed", "step"),
      ...                     np.broadcast_to(loss, (2, 1, 2, 2, 3))),
      ...      "jacobian_spread": (("depth", "activation", "init", "seed"), np.ones((2, 1, 2, 2))),
      ...      "chi1": (("activation", "init"), [[1.0, 1.0]])},
      ...     coords={"depth": [10, 20], "activation": ["tanh"], "seed": [0, 1],
      ...             "step": [0, 50, 100], "init": ["gaussian(1.76,0.05)", "orthogonal(1.76,0.05)"],
      ...             "sigma_w2": ("init", [1.76] * 2), "sigma_b2": ("init", [0.05] * 2),
      ...             "family": ("init", ["normal", "orthogonal"])})
      >>> curves, spread = plot_isometry(ds)
      >>> curves.get_yscale(), len(curves.get_lines())
      ('log', 2)
    """
    import numpy as np

    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; use one of {list(_METRICS)}")
    _require(ds, [metric, "chi1", "jacobian_spread"])
    depths = [int(d) for d in ds["depth"].values]
    depth = max(depths) if depth is None else depth
    if depth not in depths:
        raise ValueError(f"depth={depth!r} is not in this dataset; use one of {depths}")
    names = [str(a) for a in ds["activation"].values]
    activations = names if activations is None else list(activations)
    for a in activations:
        _activation(ds, a)
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11.0, 4.3), layout="constrained")
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    if len(axes) != 2:
        raise ValueError(f"axes has {len(axes)} panels; plot_isometry draws 2")
    curves, spread = (new_axes(a) for a in axes)
    steps = ds["step"].values.astype(float)
    colors = _colors()
    for i, activation in enumerate(activations):
        (w, b), inits = _critical_pairs(ds, activation)
        color = colors[i % len(colors)]
        for family, linestyle, marker in (("orthogonal", "-", "o"), ("normal", "--", "s")):
            init = inits[family]
            runs = ds[metric].sel(activation=activation, init=init, depth=depth)
            runs = runs.transpose("seed", "step").values.astype(float)
            name = "orthogonal" if family == "orthogonal" else "Gaussian"
            label = f"{activation}, {name} (σ_w²={w:g}, σ_b²={b:g})"
            curves.plot(
                steps,
                runs.mean(0),
                color=color,
                linestyle=linestyle,
                linewidth=STYLE["linewidth"],
                label=label,
            )
            if len(runs) > 1:
                curves.fill_between(steps, runs.min(0), runs.max(0), color=color, alpha=0.15)
            jac = ds["jacobian_spread"].sel(activation=activation, init=init)
            jac = jac.transpose("depth", "seed").values.astype(float)
            mean = jac.mean(1)
            spread.errorbar(
                depths,
                mean,
                yerr=np.stack([mean - jac.min(1), jac.max(1) - mean]),
                color=color,
                linestyle=linestyle,
                marker=marker,
                markersize=STYLE["markersize"],
                capsize=2,
                label=label,
            )
    if metric == "train_loss":
        curves.set_yscale("log")
    seeds = ds.sizes["seed"]
    curves.set_xlabel("training step")
    curves.set_ylabel(
        f"{metric.replace('_', ' ')}{' (log scale)' if metric == 'train_loss' else ''}"
    )
    curves.set_title(
        f"depth {depth}: mean over {seeds} seed{'s' * (seeds > 1)}, band = range",
        fontsize=STYLE["title_fontsize"],
    )
    curves.legend(fontsize=8)
    spread.set_xlabel("depth L")
    spread.set_ylabel("std over i of log σ_i(J) at initialisation")
    spread.set_title("Jacobian spectrum spread (0 = isometry)", fontsize=STYLE["title_fontsize"])
    spread.set_ylim(bottom=0)
    return np.asarray([curves, spread], dtype=object)


def _colors():
    """The default colour cycle's colours."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]

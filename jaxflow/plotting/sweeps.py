"""Sweep results: a metric reduced over seeds, heatmaps and the gradient ratio against depth."""

from __future__ import annotations

from jaxflow.plotting._common import STYLE, new_axes

__all__ = ["plot_gradient_ratio", "plot_sweep_heatmap", "plot_sweep_summary", "sweep_summary"]


def sweep_summary(ds, metric: str):
    """A sweep metric reduced to (activation, init, depth): its value at the network's last layer
    (l = d) for per-layer metrics, then the median over seeds and inputs.

    Args:
      ds: a dataset from :func:`jaxflow.sweep`.
      metric: a data variable of ``ds`` with a ``depth`` dimension.

    Returns:
      An ``xarray.DataArray`` with dimensions (activation, init, depth).

    Raises:
      ValueError: if ``metric`` is not in ``ds`` or has no depth dimension.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import sweep_summary
      >>> ds = jf.sweep(jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3,
      ...                       seeds=1, batch=1, metrics=["P_spectrum"]), quiet=True)
      >>> sweep_summary(ds, "P_sv_max").dims
      ('activation', 'init', 'depth')
    """
    candidates = sorted(name for name, var in ds.data_vars.items() if "depth" in var.dims)
    if metric not in ds.data_vars or "depth" not in ds[metric].dims:
        raise ValueError(
            f"metric={metric!r} is not a per-depth variable of this sweep; use one of {candidates}"
        )
    var = ds[metric]
    if "layer" in var.dims:
        var = var.where(ds["layer"] == ds["depth"]).max("layer")
    others = [d for d in var.dims if d not in ("activation", "init", "depth")]
    return var.median(others).transpose("activation", "init", "depth")


def plot_sweep_heatmap(ds, metric: str = "grad_ratio", *, axes=None, log: bool = True):
    """Heatmaps of a sweep metric over depth × initialisation, one panel per activation.

    Each cell is the median over seeds (and inputs) of the metric at the network's last layer;
    inits are ordered as in the grid and labelled with their σ_w² (and σ_b² when nonzero).

    Args:
      ds: a dataset from :func:`jaxflow.sweep`.
      metric: a per-depth variable, e.g. ``"grad_ratio"`` or ``"P_sv_max"``.
      axes: one Axes per activation, or ``None`` for a new figure.
      log: colour by log10 of the value (the default; gradient ratios span decades).

    Returns:
      The array of Axes, one per activation.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import plot_sweep_heatmap
      >>> ds = jf.sweep(jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3,
      ...                       seeds=1, batch=1, metrics=["P_spectrum"]), quiet=True)
      >>> len(plot_sweep_heatmap(ds, "P_sv_max"))
      1
    """
    import numpy as np

    summary = sweep_summary(ds, metric)
    n = summary.sizes["activation"]
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.6 * n + 1.2, 3.8), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
    axes = np.atleast_1d(axes)
    if len(axes) != n:
        raise ValueError(f"axes has {len(axes)} panels; this sweep has {n} activations")
    values = np.abs(summary.values) if log else summary.values
    with np.errstate(divide="ignore"):
        values = np.log10(values) if log else values
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    labels = [
        # A mean-field pair's name repeats its variances; a scheme's name says which it is.
        ("" if str(init).startswith("gaussian(") else f"{init}\n")
        + f"σ_w²={w:g}"
        + (f", σ_b²={b:g}" if b else "")
        for init, w, b in zip(ds["init"].values, ds["sigma_w2"].values, ds["sigma_b2"].values)
    ]
    image = None
    for ax, activation in zip(axes, summary["activation"].values):
        panel = values[list(summary["activation"].values).index(activation)].T  # (depth, init)
        image = ax.imshow(
            panel, aspect="auto", origin="lower", vmin=vmin, vmax=vmax, cmap="viridis"
        )
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_yticks(range(summary.sizes["depth"]), summary["depth"].values)
        ax.set_xlabel("initialisation (σ_w² = fan_in·Var W)")
        ax.set_ylabel("depth d")
        ax.set_title(str(activation), fontsize=STYLE["title_fontsize"])
        ax.grid(False)
    scale = "log10 " if log else ""
    axes[0].get_figure().colorbar(
        image,
        ax=list(axes),
        label=f"{scale}{metric} (median over seeds{', inputs' if 'example' in ds[metric].dims else ''})",
    )
    return axes


def plot_gradient_ratio(ds, *, ax=None, metric: str = "grad_ratio"):
    """The first-to-last gradient ratio against depth, one line per (activation, init).

    Lines are the median over seeds; the shaded band spans the smallest to the largest seed.
    A dashed line is the mean-field prediction χ₁^{d/2} when the sweep carries it.

    Args:
      ds: a dataset from :func:`jaxflow.sweep` with ``grad_ratio`` (or ``weight_grad_ratio``).
      ax: an Axes, or ``None`` for a new figure.
      metric: ``"grad_ratio"`` (‖∂L/∂h_0‖/‖∂L/∂h_d‖) or ``"weight_grad_ratio"``.

    Returns:
      The Axes (log y axis).

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import plot_gradient_ratio
      >>> ds = jf.sweep(jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3,
      ...                       seeds=1, batch=1, metrics=["grad_ratio"]), quiet=True)
      >>> plot_gradient_ratio(ds).get_yscale()
      'log'
    """
    if metric not in ds.data_vars:
        raise ValueError(
            f"metric={metric!r} is not in this sweep; run it with metrics including 'grad_ratio'"
        )
    ax = new_axes(ax)
    ratio = ds[metric]
    depths = ds["depth"].values
    markers = "osD^vP*Xph"
    # colour says the activation, the marker the init: 12 lines stay tellable apart
    for a, activation in enumerate(ds["activation"].values):
        colour = f"C{a % 10}"
        for i, init in enumerate(ds["init"].values):
            r = ratio.sel(activation=activation, init=init)
            (line,) = ax.plot(
                depths,
                r.median("seed"),
                color=colour,
                marker=markers[i % len(markers)],
                markersize=STYLE["markersize"] + 1,
                linewidth=STYLE["linewidth"],
                label=f"{activation}, {init}",
            )
            ax.fill_between(depths, r.min("seed"), r.max("seed"), color=colour, alpha=0.1)
            if "theory_grad_ratio" in ds and metric == "grad_ratio":
                ax.plot(
                    depths,
                    ds["theory_grad_ratio"].sel(activation=activation, init=init),
                    linestyle=STYLE["theory_linestyle"],
                    color=line.get_color(),
                    linewidth=1.0,
                )
    ax.set_yscale("log")
    ax.set_xticks(depths)
    ax.set_xlabel("depth d")
    what = "‖∂L/∂h₀‖ / ‖∂L/∂h_d‖" if metric == "grad_ratio" else "‖∂L/∂W₁‖ / ‖∂L/∂W_d‖"
    ax.set_ylabel(f"gradient ratio {what} (log scale)")
    title = "first-to-last gradient ratio (median over seeds, band: min–max)"
    if "theory_grad_ratio" in ds and metric == "grad_ratio":
        title += "; dashed: mean-field χ₁^(d/2)"
    ax.set_title(title, fontsize=STYLE["title_fontsize"])
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_sweep_summary(ds, fig=None, *, metric: str = "grad_ratio"):
    """A sweep at a glance: one heatmap per activation (top, :func:`plot_sweep_heatmap`) above
    the gradient ratio against depth (bottom, :func:`plot_gradient_ratio`).

    Args:
      ds: a dataset from :func:`jaxflow.sweep` with ``metric``.
      fig: a matplotlib ``Figure`` to draw on, or ``None`` for a new one.
      metric: the metric of both panels.

    Returns:
      The figure.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import plot_sweep_summary
      >>> ds = jf.sweep(jf.Grid(depth=[1, 2], activation=["tanh"], init=["he"], width=3,
      ...                       seeds=1, batch=1, metrics=["grad_ratio"]), quiet=True)
      >>> len(plot_sweep_summary(ds).subfigs)
      2
    """
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(13, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.1))
    plot_sweep_heatmap(ds, metric, axes=top.subplots(1, ds.sizes["activation"]))
    plot_gradient_ratio(ds, ax=bottom.subplots(), metric=metric)
    return fig

"""Matplotlib figures, in one consistent style.

Every plot function takes an optional ``ax`` (a new figure is made if it is ``None``), draws on it,
labels its axes with their quantity and scale, and returns it. None calls ``plt.show()``; all work
headless (Agg). Save with :func:`save_figure`, which never overwrites a file unless asked.

matplotlib is imported here, not in ``jaxflow/__init__.py``, so the core imports fast.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "new_axes",
    "plot_chi1_decay",
    "plot_dead_units",
    "plot_dynamical_isometry",
    "plot_gradient_flow",
    "plot_gradient_ratio",
    "plot_init_comparison",
    "plot_log_singular_values",
    "plot_lyapunov_spectrum",
    "plot_phase_diagram",
    "plot_residual_comparison",
    "plot_sigmoid_bound",
    "plot_sweep_heatmap",
    "plot_tight_construction",
    "plot_training",
    "save_figure",
    "sweep_summary",
]

STYLE = {
    "figsize": (7.0, 4.5),
    "dpi": 150,
    "grid_alpha": 0.3,
    "marker": "o",
    "markersize": 3.5,
    "linewidth": 1.5,
    "theory_linestyle": "--",
    "title_fontsize": 11,
}
"""The shared look: figure size, resolution, grid, markers, and dashed lines for theory."""


def new_axes(ax=None, *, figsize=None):
    """Returns ``ax``, or the axes of a new figure in the shared style if ``ax`` is ``None``.

    Args:
      ax: an existing ``matplotlib.axes.Axes`` or ``None``.
      figsize: size of a new figure in inches (default: the shared style's).

    Returns:
      A ``matplotlib.axes.Axes`` with the grid on.

    Example:
      >>> from jaxflow.plotting import new_axes
      >>> ax = new_axes()
      >>> ax.get_figure() is not None
      True
    """
    if ax is None:
        from matplotlib.figure import Figure

        # A bare Figure (not pyplot) so no global state or GUI backend is touched.
        fig = Figure(figsize=figsize or STYLE["figsize"], layout="constrained")
        ax = fig.add_subplot()
    ax.grid(True, alpha=STYLE["grid_alpha"], which="both")
    return ax


def save_figure(fig_or_ax: Any, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Saves a figure (or the figure of an axes) to ``path``; refuses to overwrite by default.

    Args:
      fig_or_ax: a ``Figure`` or an ``Axes``.
      path: the file to write; its suffix picks the format (``.png``, ``.pdf``, ``.svg``).
      overwrite: replace an existing file.

    Returns:
      The path written, as a string.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False.

    Example:
      >>> import os, tempfile
      >>> from jaxflow.plotting import new_axes, save_figure
      >>> path = os.path.join(tempfile.mkdtemp(), "empty.png")
      >>> save_figure(new_axes(), path) == path
      True
    """
    fig = fig_or_ax.get_figure() if hasattr(fig_or_ax, "get_figure") else fig_or_ax
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    fig.savefig(path, dpi=STYLE["dpi"])
    return path


_LAYER_AXIS = "Layer l (h_0 = input, h_L = readout input)"
_ACTIVATION_GRADIENT = "Activation gradient norm ‖∂L/∂h_l‖ (log scale)"


def _finish_log_plot(ax, xlabel, ylabel, title):
    """Log y axis, labels, title and legend: the last steps every gradient figure shares."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=STYLE["title_fontsize"])
    ax.legend()
    return ax


def _seed_rows(values):
    """(models, seeds, layers) from (models, *S, layers): every seed axis flattened into one."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return values.reshape(values.shape[0], -1, values.shape[-1])


def _median_band(ax, x, rows, label, **kwargs):
    """A line at the median over seeds, and a shaded min–max band when there are several."""
    import numpy as np

    (line,) = ax.plot(
        x,
        np.median(rows, axis=0),
        marker=STYLE["marker"],
        markersize=STYLE["markersize"],
        linewidth=STYLE["linewidth"],
        label=label if len(rows) == 1 else f"{label}: median of {len(rows)} seeds, band = range",
        **kwargs,
    )
    if len(rows) > 1:
        ax.fill_between(x, rows.min(axis=0), rows.max(axis=0), color=line.get_color(), alpha=0.2)
    return line


def plot_gradient_flow(result, ax=None, *, quantity: str = "weight"):
    """The notes' ``gradient_flow.png``: per-layer gradient norms, one line per activation, log y.

    Args:
      result: an :class:`~jaxflow.ActivationComparison` (from
        :func:`jaxflow.experiments.compare_activations`); with several seeds the line is their
        median and the band their range.
      ax: an Axes, or ``None`` for a new figure.
      quantity: ``"weight"`` (‖∂L/∂W‖ of each Linear layer, as in the notes) or ``"activation"``
        (‖∂L/∂h_l‖, l = 0…L).

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_activations
      >>> from jaxflow.plotting import plot_gradient_flow, save_figure
      >>> ax = plot_gradient_flow(compare_activations(key=jax.random.split(jax.random.key(0), 8)))
      >>> len(ax.get_lines()), ax.get_yscale()
      (3, 'log')
      >>> # save_figure(ax, "gradient_flow.png")  # the notes' figure
    """
    import numpy as np

    if quantity not in ("weight", "activation"):
        raise ValueError(f"quantity={quantity!r} is not known; use 'weight' or 'activation'")
    ax = new_axes(ax)
    values = result.weight_grad_norms if quantity == "weight" else result.activation_grad_norms
    rows = _seed_rows(values)
    depth = rows.shape[-1] - 1
    x = np.arange(1, depth + 2) if quantity == "weight" else np.arange(depth + 1)
    for name, init, per_seed in zip(result.activations, result.inits, rows):
        _median_band(ax, x, per_seed, f"{name} ({init} init)")
    ax.set_xticks(x)
    if quantity == "weight":
        xlabel = f"Layer (Linear layer index; {depth + 1} = readout)"
        ylabel = "Weight gradient norm ‖∂L/∂W‖ (log scale)"
    else:
        xlabel, ylabel = _LAYER_AXIS, _ACTIVATION_GRADIENT
    width = np.shape(result.variables["params"]["blocks"]["Dense_0"]["kernel"])[-1]
    title = f"Gradient flow comparison: MLP of depth {depth}, width {width}"
    return _finish_log_plot(ax, xlabel, ylabel, title)


def plot_init_comparison(result, ax=None):
    """Activation-gradient norms relative to the last layer, per initialisation, with theory.

    ‖∂L/∂h_l‖ / ‖∂L/∂h_L‖ against l on a log axis; the dashed lines are He et al.'s prediction
    (σ_w²/2)^((L−l)/2) for ReLU (a straight line on this axis: 1/√2 per layer for Xavier, flat for
    He).

    Args:
      result: an :class:`~jaxflow.InitComparison` (from :func:`jaxflow.experiments.compare_inits`).
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_inits
      >>> from jaxflow.plotting import plot_init_comparison
      >>> ax = plot_init_comparison(compare_inits(key=jax.random.split(jax.random.key(5), 16)))
      >>> len(ax.get_lines())  # two measured, two predicted
      4
    """
    import numpy as np

    ax = new_axes(ax)
    rows = _seed_rows(result.activation_grad_norms)
    rows = rows / rows[..., -1:]
    depth = rows.shape[-1] - 1
    x = np.arange(depth + 1)
    for i, (name, per_seed) in enumerate(zip(result.inits, rows)):
        line = _median_band(ax, x, per_seed, f"{name} (measured)")
        if result.predicted is not None:
            ax.plot(
                x,
                result.predicted[i] ** (depth - x),
                linestyle=STYLE["theory_linestyle"],
                color=line.get_color(),
                label=f"{name}: ({result.predicted[i]:.3f})^(L−l), He et al. 2015",
            )
    return _finish_log_plot(
        ax,
        _LAYER_AXIS,
        "‖∂L/∂h_l‖ / ‖∂L/∂h_L‖ (log scale)",
        f"Initialisation and backward gradient flow: {result.activation} MLP of depth {depth}",
    )


def plot_residual_comparison(result, ax=None):
    """Activation-gradient norms of a plain MLP and a residual stack of the same depth, log y.

    Args:
      result: a :class:`~jaxflow.ResidualComparison` (from
        :func:`jaxflow.experiments.compare_residual`).
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_residual
      >>> from jaxflow.plotting import plot_residual_comparison
      >>> keys = jax.random.split(jax.random.key(3), 4)
      >>> ax = plot_residual_comparison(compare_residual(activation="sigmoid", key=keys))
      >>> [line.get_label().split(":")[0] for line in ax.get_lines()]
      ['plain MLP', 'residual stack']
    """
    import numpy as np

    ax = new_axes(ax)
    depth = np.shape(result.plain)[-1] - 1
    x = np.arange(depth + 1)
    for label, values in (("plain MLP", result.plain), ("residual stack", result.residual)):
        _median_band(ax, x, _seed_rows(np.asarray(values)[None])[0], label)
    return _finish_log_plot(
        ax,
        _LAYER_AXIS,
        _ACTIVATION_GRADIENT,
        f"Residual vs plain: {result.activation} ({result.init} init), depth {depth}",
    )


def plot_training(result, ax=None):
    """Loss and pre-clipping global gradient norm per step, with clipping and divergence marked.

    Clipped steps are marked on the gradient-norm line, the clipping threshold is dashed, and the
    first non-finite step (if any) is a vertical line. The norm drawn is √Σ‖g_layer‖² in float64,
    equal to ``result.grad_norm`` (both stay finite where a plain float32 Σg² would overflow).

    Args:
      result: a :class:`~jaxflow.TrainResult` (from :func:`jaxflow.train`).
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> import jax.numpy as jnp, optax, jaxflow as jf
      >>> from jaxflow.plotting import plot_training
      >>> model = jf.mlp(2, 2, activation="tanh")
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> readout = {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}
      >>> variables = {"params": {"blocks": {"Dense_0": blocks}, "readout": readout}}
      >>> x, y = jnp.eye(2), jnp.array([[0.5], [-0.5]])
      >>> ax = plot_training(jf.train(model, variables, (x, y), optax.sgd(0.1), 20, clip_norm=0.5))
      >>> [line.get_label() for line in ax.get_lines()][2:]
      ['clipped (45% of steps)', 'clip_by_global_norm(0.5)']
    """
    import numpy as np

    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    steps = np.arange(len(result.loss))
    width = STYLE["linewidth"]
    # √Σ(layer norm)² in float64 equals the recorded optax norm wherever that is finite, and stays
    # finite where optax's float32 sum of squares overflows (exploding gradients near 1e19).
    norm = np.sqrt(np.sum(np.square(np.asarray(result.layer_norms, np.float64)), axis=-1))
    ax.plot(steps, result.loss, linewidth=width, label="loss")
    (line,) = ax.plot(steps, norm, linewidth=width, label="global gradient norm, before clipping")
    clipped = np.asarray(result.clipped, bool)
    if clipped.any():
        ax.plot(
            steps[clipped],
            norm[clipped],
            linestyle="none",
            marker="x",
            color=line.get_color(),
            label=f"clipped ({result.clip_fraction:.0%} of steps)",
        )
    if result.clip_norm is not None:
        ax.axhline(
            result.clip_norm,
            linestyle=STYLE["theory_linestyle"],
            color="gray",
            label=f"clip_by_global_norm({result.clip_norm:g})",
        )
    if result.first_nonfinite_step is not None:
        ax.axvline(
            result.first_nonfinite_step,
            color="red",
            label=f"first non-finite step ({result.first_nonfinite_step})",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish_log_plot(
        ax,
        "Step",
        "Loss and gradient norm (log scale)",
        "Training: loss and gradient norm per step",
    )

def _default_indices(n):
    """All singular values for a small width; else the top three, the middle one and the last."""
    if n <= 8:
        return list(range(n))
    return sorted({0, 1, 2, n // 2, n - 1})


def plot_log_singular_values(spectrum, ax=None, *, indices=None, label=None, **line_kwargs):
    """ln σ_i(P_l) against depth l, one line per chosen i, from a :class:`~jaxflow.LogSpectrum`.

    The y axis is the natural log of the singular value (a log scale for σ drawn on a linear
    axis, so values far below float32's range still show). Values that are −inf (a zero, or an
    underflow of ``method="svd"``) are not drawn: overlay the plain and the graded spectrum to see
    where float32 loses the product.

    Args:
      spectrum: a :class:`~jaxflow.LogSpectrum` of one example (values (K, n)).
      ax: axes to draw on, or ``None`` for a new figure.
      indices: which singular values (0-based, 0 = largest); default all for n ≤ 8, otherwise the
        top three, the middle one and the smallest.
      label: a prefix for the legend entries (e.g. the method).
      **line_kwargs: passed to ``ax.plot`` (e.g. ``linestyle="--"``).

    Returns:
      The axes.

    Example:
      >>> import numpy as np, jaxflow as jf
      >>> from jaxflow.plotting import plot_log_singular_values
      >>> layers = np.arange(1, 31)  # what jf.log_spectrum returns, here for P_l = diag(2, 1/2)^l
      >>> spectrum = jf.LogSpectrum(np.log([2.0, 0.5]) * layers[:, None], layers, True)
      >>> len(plot_log_singular_values(spectrum).get_lines())
      2
    """
    import numpy as np

    values, layers = np.asarray(spectrum.values), np.asarray(spectrum.layers)
    if values.ndim != 2:
        raise ValueError(
            f"spectrum.values has shape {values.shape}; plot one example's (K, n) spectrum "
            "(index a batch first)"
        )
    n = values.shape[1]
    indices = _default_indices(n) if indices is None else list(indices)
    if any(not 0 <= i < n for i in indices):
        raise ValueError(f"indices={indices!r} is not allowed; each must be in 0..{n - 1}")
    ax = new_axes(ax)
    style = dict(linewidth=STYLE["linewidth"])
    if len(layers) <= 30:
        style.update(marker=STYLE["marker"], markersize=STYLE["markersize"])
    style.update(line_kwargs)
    prefix = f"{label}: " if label else ""
    for k, i in enumerate(indices):
        ordinal = " (largest)" if i == 0 else " (smallest)" if i == n - 1 else ""
        # One colour per index, so a second spectrum drawn on the same axes pairs up line by line.
        line_style = {"color": f"C{k % 10}", **style}
        ax.plot(layers, values[:, i], label=f"{prefix}i = {i + 1}{ordinal}", **line_style)
    ax.set_xlabel("layer l  (P_l = J_l ⋯ J_1)")
    ax.set_ylabel("ln σ_i(P_l)  (natural log of the singular value)")
    ax.legend(fontsize="small")
    return ax


def plot_lyapunov_spectrum(spectrum, ax=None, *, theory=None, label="measured (± 2 s.e.)"):
    """Lyapunov exponents λ_i against their index i, with ±2 standard errors and an optional
    theory curve (dashed), from a :class:`~jaxflow.LyapunovSpectrum`.

    Args:
      spectrum: a :class:`~jaxflow.LyapunovSpectrum` of one example ((n,) fields).
      ax: axes to draw on, or ``None`` for a new figure.
      theory: (n,) predicted exponents (e.g. Newman's closed form), or ``None``.
      label: legend entry for the measurement.

    Returns:
      The axes.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import plot_lyapunov_spectrum
      >>> spectrum = jf.LyapunovSpectrum([-0.06, -0.14, -0.23], [0.006, 0.008, 0.01], True)
      >>> plot_lyapunov_spectrum(spectrum, theory=[-0.06, -0.15, -0.23]).get_xlabel()
      'index i  (1 = largest)'
    """
    import numpy as np

    exponents = np.asarray(spectrum.exponents)
    errors = np.asarray(spectrum.standard_error)
    if exponents.ndim != 1:
        raise ValueError(
            f"spectrum.exponents has shape {exponents.shape}; plot one example's (n,) spectrum"
        )
    index = np.arange(1, exponents.size + 1)
    ax = new_axes(ax)
    ax.errorbar(
        index,
        exponents,
        yerr=2 * errors,
        fmt=STYLE["marker"],
        markersize=STYLE["markersize"] + 1,
        capsize=3,
        label=label,
    )
    if theory is not None:
        theory = np.asarray(theory)
        if theory.shape != exponents.shape:
            raise ValueError(f"theory has shape {theory.shape}; it must be {exponents.shape}")
        ax.plot(
            index,
            theory,
            linestyle=STYLE["theory_linestyle"],
            linewidth=STYLE["linewidth"],
            color="black",
            label="theory",
        )
    ax.set_xlabel("index i  (1 = largest)")
    ax.set_ylabel("Lyapunov exponent λ_i  (ln growth per layer)")
    ax.legend(fontsize="small")
    return ax


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
        raise ValueError(f"metric={metric!r} is not a per-depth variable of this sweep; use one of {candidates}")
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
        image = ax.imshow(panel, aspect="auto", origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_yticks(range(summary.sizes["depth"]), summary["depth"].values)
        ax.set_xlabel("initialisation (σ_w² = fan_in·Var W)")
        ax.set_ylabel("depth d")
        ax.set_title(str(activation), fontsize=STYLE["title_fontsize"])
        ax.grid(False)
    scale = "log10 " if log else ""
    axes[0].get_figure().colorbar(
        image, ax=list(axes), label=f"{scale}{metric} (median over seeds{', inputs' if 'example' in ds[metric].dims else ''})"
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
        raise ValueError(f"metric={metric!r} is not in this sweep; run it with metrics including 'grad_ratio'")
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


# ------------------------------------------------------------ theory beside measurement
# (jaxflow.theory, jaxflow.experiments.bounds and jaxflow.experiments.mean_field)


def _np(a):
    import numpy as np

    return np.asarray(a, dtype=float)


def plot_sigmoid_bound(result, ax=None, inits=None):
    """Sigmoid's gradient ratio against depth for random inits, next to 0.25^(d−1) and theory.

    Per initialisation (one colour): the median measured ratio ‖∂L/∂z^[1]‖/‖∂L/∂z^[d]‖ over seeds
    with its 5–95 % band (solid), the median worst-direction ratio σ_max(∂z^[d]/∂z^[1]) (dotted),
    the mean-field χ₁^((d−1)/2) (dashed) and the median product of norms ∏‖J^[l]‖₂ (dash-dot);
    the notes' 0.25^(d−1) in black. The legend gives each scheme's median ‖W‖₂: 0.25^(d−1) bounds
    the ratio only when every ‖W‖₂ ≤ 1. The y range is fitted to the measurements and 0.25^(d−1),
    so a very loose product bound may leave the plot.

    Args:
      result: a :class:`jaxflow.experiments.SigmoidBound`.
      ax: axes to draw on, or ``None`` for a new figure.
      inits: labels (or indices) of the initialisations to draw; default all.

    Returns:
      The ``matplotlib.axes.Axes`` (log-scale y).

    Example:
      >>> import jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_sigmoid_bound
      >>> r = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
      >>> plot_sigmoid_bound(r).get_yscale()
      'log'
    """
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    depths = _np(result.depths)
    log10 = 1 / np.log(10)
    ratio = _np(result.random.log_ratio) * log10
    worst = _np(result.random.log_worst) * log10
    product = _np(result.random.log_product) * log10
    norms = _np(result.random.weight_norms)
    chosen = (
        range(len(result.inits))
        if inits is None
        else [i if isinstance(i, int) else list(result.inits).index(i) for i in inits]
    )
    bound = _np(result.sup_bound)
    low, high = np.log10(bound.min()), 1.0
    for i in chosen:
        color = f"C{i}"
        lo, mid, hi = np.percentile(ratio[i], [5, 50, 95], axis=0)
        top = np.median(worst[i], axis=0)
        low, high = min(low, lo.min()), max(high, hi.max(), top.max())
        ax.fill_between(depths, 10**lo, 10**hi, color=color, alpha=0.18, linewidth=0)
        ax.plot(
            depths,
            10**mid,
            color=color,
            marker=STYLE["marker"],
            markersize=STYLE["markersize"],
            linewidth=STYLE["linewidth"],
            label=f"{result.inits[i]}: median ‖W‖₂ = {np.median(norms[i]):.2f}",
        )
        ax.plot(depths, 10**top, color=color, linestyle=":", linewidth=STYLE["linewidth"])
        ax.plot(depths, _np(result.mean_field[i]), color=color, linestyle=STYLE["theory_linestyle"])
        ax.plot(
            depths, 10 ** np.median(product[i], axis=0), color=color, linestyle="-.", linewidth=1
        )
    ax.plot(depths, bound, color="black", linewidth=2.2)
    ax.set_yscale("log")
    ax.set_ylim(10 ** (low - 0.5), 10 ** (high + 4.0))  # headroom for the legend
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("depth d (the ratio spans the d − 1 Jacobians J^[2], …, J^[d])")
    ax.set_ylabel("‖∂L/∂z^[1]‖ / ‖∂L/∂z^[d]‖ (log scale)")
    ax.set_title(
        f"Sigmoid, {ratio.shape[1]} seeds per init:\n"
        "0.25^(d−1) bounds the ratio only if all ‖W‖₂ ≤ 1",
        fontsize=STYLE["title_fontsize"],
    )
    colours = ax.legend(loc="lower left", fontsize=8, title="init (band: 5–95 % of seeds)")
    colours.get_title().set_fontsize(8)
    ax.add_artist(colours)
    styles = [
        Line2D([], [], color="black", linewidth=2.2, label="0.25^(d−1) (the notes)"),
        Line2D(
            [],
            [],
            color="grey",
            marker=STYLE["marker"],
            markersize=STYLE["markersize"],
            label="measured, loss direction (median)",
        ),
        Line2D([], [], color="grey", linestyle=":", label="worst direction σ_max (median)"),
        Line2D(
            [],
            [],
            color="grey",
            linestyle=STYLE["theory_linestyle"],
            label="mean field χ₁^((d−1)/2)",
        ),
        Line2D([], [], color="grey", linestyle="-.", label="∏‖J^[l]‖₂ (median)"),
    ]
    ax.legend(handles=styles, loc="upper right", fontsize=8)
    return ax


def plot_tight_construction(result, ax=None):
    """The tight construction: every singular value of ∂z^[d]/∂z^[1] on the 0.25^(d−1) line.

    Args:
      result: a :class:`jaxflow.experiments.SigmoidBound`.
      ax: axes to draw on, or ``None`` for a new figure.

    Returns:
      The ``matplotlib.axes.Axes`` (log-scale y).

    Example:
      >>> import jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_tight_construction
      >>> r = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
      >>> len(plot_tight_construction(r).get_lines())
      3
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    depths = _np(result.depths)
    sv = np.exp(_np(result.tight.log_singular_values))
    ratio = _np(result.tight.ratio)
    bound = _np(result.sup_bound)
    width = sv.shape[-1]
    ax.plot(depths, bound, color="black", linewidth=2.2, label="0.25^(d−1)")
    ax.plot(
        np.repeat(depths, width),
        sv.ravel(),
        linestyle="none",
        marker="_",
        markersize=12,
        color="C0",
        label=f"all {width} singular values of ∂z^[d]/∂z^[1]",
    )
    ax.plot(
        depths,
        ratio,
        linestyle="none",
        marker="o",
        markersize=5,
        markerfacecolor="none",
        color="C3",
        label="measured ‖∂L/∂z^[1]‖/‖∂L/∂z^[d]‖",
    )
    error = np.max(np.abs(sv / bound[:, None] - 1))
    ax.set_yscale("log")
    ax.set_xlabel("depth d")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("singular value / gradient ratio (log scale)")
    ax.set_title(
        "Tight construction: orthogonal W, biases putting every z^[l] at 0\n"
        f"max relative deviation from 0.25^(d−1): {error:.1e}",
        fontsize=STYLE["title_fontsize"],
    )
    ax.legend(loc="lower left", fontsize=8)
    return ax


def plot_phase_diagram(diagram, ax=None, quantity: str = "chi1"):
    """Mean-field phase diagram over (σ_w², σ_b²) with the critical line χ₁ = 1.

    Args:
      diagram: a :class:`jaxflow.PhaseDiagram`.
      ax: axes to draw on, or ``None`` for a new figure.
      quantity: ``"chi1"`` (log₁₀ χ₁: blue ordered, red chaotic) or ``"xi_c"`` (log₁₀ ξ_c).

    Returns:
      The ``matplotlib.axes.Axes``. Grid points where q* diverges are hatched grey.

    Example:
      >>> import jaxflow as jf
      >>> from jaxflow.plotting import plot_phase_diagram
      >>> ax = plot_phase_diagram(jf.phase_diagram("relu", [1.0, 3.0], [0.0, 0.1]))
      >>> ax.get_xlabel()
      'σ_w² (weight variance)'
    """
    import numpy as np
    from matplotlib.colors import ListedColormap, TwoSlopeNorm
    from matplotlib.patches import Patch

    if quantity not in ("chi1", "xi_c"):
        raise ValueError(f"quantity={quantity!r} is not known; use 'chi1' or 'xi_c'")
    ax = new_axes(ax)
    ax.grid(False)
    w, b = _np(diagram.sigma_w2), _np(diagram.sigma_b2)
    mf = diagram.mean_field
    diverges = np.asarray(mf.status) == 2  # jaxflow.theory.DIVERGES
    if quantity == "chi1":
        values = np.log10(_np(mf.chi1))
        low = min(np.nanmin(np.where(diverges, np.nan, values)), -1e-3)
        high = max(np.nanmax(np.where(diverges, np.nan, values)), 1e-3)
        mesh = ax.pcolormesh(
            w, b, values.T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, low, high), shading="nearest"
        )
        label = "log₁₀ χ₁  (blue: ordered, red: chaotic)"
    else:
        values = np.log10(np.clip(_np(mf.xi_c), 1e-3, 1e6))
        mesh = ax.pcolormesh(w, b, values.T, cmap="viridis", shading="nearest")
        label = "log₁₀ ξ_c  (layers; clipped at 10⁶)"
    ax.get_figure().colorbar(mesh, ax=ax, label=label)
    handles = []
    if diverges.any():
        masked = np.where(diverges, 1.0, np.nan)
        ax.pcolormesh(w, b, masked.T, cmap=ListedColormap(["0.75"]), shading="nearest")
        handles.append(Patch(facecolor="0.75", label="q* diverges"))
    crit = _np(diagram.critical_sigma_w2.value)
    (line,) = ax.plot(crit, b, color="black", linewidth=2, label="critical line χ₁ = 1")
    ax.set_xlim(w.min(), w.max())
    ax.set_xlabel("σ_w² (weight variance)")
    ax.set_ylabel("σ_b² (bias variance)")
    ax.set_title(
        "Mean-field phase diagram: order (χ₁ < 1) and chaos (χ₁ > 1)",
        fontsize=STYLE["title_fontsize"],
    )
    ax.legend(handles=[line] + handles, loc="upper left", fontsize=8)
    return ax


def plot_chi1_decay(result, ax=None):
    """Measured Jacobian and gradient decay against mean-field χ₁^l, with Monte-Carlo error bars.

    Markers: (1/n)‖P_l‖_F² and ‖∂L/∂h_{L−l}‖²/‖∂L/∂h_L‖², means over seeds with ±2 standard
    errors; dashed: χ₁^l. Layers where a measurement disagrees with theory beyond its error bar are
    circled in red.

    Args:
      result: a :class:`jaxflow.experiments.Chi1Decay`.
      ax: axes to draw on, or ``None`` for a new figure.

    Returns:
      The ``matplotlib.axes.Axes`` (log-scale y).

    Example:
      >>> import jaxflow as jf, jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_chi1_decay
      >>> r = ex.chi1_decay(jf.mlp(8, 16, activation="relu", init="he"), seeds=64)
      >>> plot_chi1_decay(r).get_yscale()
      'log'
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    layers = _np(result.layers)
    ax.plot(
        layers,
        _np(result.predicted),
        color="black",
        linestyle=STYLE["theory_linestyle"],
        label=f"mean field χ₁^l (χ₁ = {float(result.chi1):.4g})",
    )
    series = (
        (
            "(1/n)‖P_l‖_F²  (mean sq. singular value)",
            result.msv,
            result.msv_error,
            result.msv_disagree,
            0,
        ),
        (
            "‖∂L/∂h_{L−l}‖² / ‖∂L/∂h_L‖²  (gradient decay)",
            result.grad_decay,
            result.grad_decay_error,
            result.grad_decay_disagree,
            1,
        ),
    )
    flagged_any = False
    for label, mean, error, flags, i in series:
        mean, error, flags = _np(mean), _np(error), np.asarray(flags)
        x = layers + (i - 0.5) * 0.15
        ax.errorbar(
            x,
            mean,
            yerr=2 * error,
            marker=STYLE["marker"],
            markersize=STYLE["markersize"],
            linestyle="none",
            capsize=2,
            color=f"C{i}",
            label=label,
        )
        if flags.any():
            flagged_any = True
            ax.plot(
                x[flags],
                mean[flags],
                linestyle="none",
                marker="o",
                markersize=9,
                markerfacecolor="none",
                markeredgecolor="red",
            )
    if flagged_any:
        ax.plot(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor="red",
            label="disagrees beyond the error bar",
        )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layers l")
    ax.set_ylabel("squared-norm ratio (log scale)")
    ax.set_title(
        f"Mean-field χ₁^l vs measured (±2 s.e.)\n{result.label}", fontsize=STYLE["title_fontsize"]
    )
    ax.legend(fontsize=8)
    return ax


def plot_dynamical_isometry(result, ax=None, quantity: str = "relative_variance"):
    """Spread of the end-to-end Jacobian's spectrum against depth: Gaussian vs orthogonal weights.

    Args:
      result: a :class:`jaxflow.experiments.DynamicalIsometry`.
      ax: axes to draw on, or ``None`` for a new figure.
      quantity: ``"relative_variance"`` (variance/mean² of the squared singular values, measured
        ±2 standard errors, with the free-probability line l(μ₂/μ₁² − 1 − s₁)) or ``"condition"``
        (median σ_max/σ_min over seeds, log scale; infinite values are not drawn).

    Returns:
      The ``matplotlib.axes.Axes``.

    Example:
      >>> import jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_dynamical_isometry
      >>> r = ex.dynamical_isometry("linear", 1.0, depth=2, width=8, seeds=2)
      >>> plot_dynamical_isometry(r).get_xlabel()
      'depth l'
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    if quantity not in ("relative_variance", "condition"):
        raise ValueError(
            f"quantity={quantity!r} is not known; use 'relative_variance' or 'condition'"
        )
    ax = new_axes(ax)
    depths = _np(result.depths)
    for i, weights in enumerate(result.weights):
        color = f"C{i}"
        if quantity == "condition":
            cond = _np(result.condition[i])
            ax.plot(
                depths,
                np.where(np.isfinite(cond), cond, np.nan),
                color=color,
                marker=STYLE["marker"],
                markersize=STYLE["markersize"],
                label=f"{weights} (measured)",
            )
            continue
        rel = _np(result.relative_variance[i])
        err = _np(result.relative_variance_error[i])
        ax.errorbar(
            depths,
            rel,
            yerr=2 * err,
            color=color,
            marker=STYLE["marker"],
            markersize=STYLE["markersize"],
            linestyle="none",
            capsize=2,
            label=f"{weights} (measured)",
        )
        ax.plot(
            depths,
            _np(result.theory.relative_variance[i]),
            color=color,
            linestyle=STYLE["theory_linestyle"],
            label=f"{weights} (free probability)",
        )
    ax.set_xlabel("depth l")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if quantity == "condition":
        ax.set_yscale("log")
        ax.set_ylabel("condition number σ_max/σ_min of P_l (median, log scale)")
    else:
        ax.set_ylabel("variance / mean² of the squared singular values of P_l")
    ax.set_title(
        f"Dynamical isometry: Gaussian vs orthogonal weights\n{result.label}",
        fontsize=STYLE["title_fontsize"],
    )
    ax.legend(fontsize=8)
    return ax


def plot_dead_units(result, ax=None):
    """Fraction of ReLU units dead on both of two inputs, per layer, measured against theory.

    Args:
      result: a :class:`jaxflow.experiments.DeadUnits`.
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> from jaxflow.experiments import dead_relu_fraction
      >>> from jaxflow.plotting import plot_dead_units
      >>> len(plot_dead_units(dead_relu_fraction(depth=3, width=16, seeds=2)).get_lines()) >= 2
      True
    """
    ax = new_axes(ax)
    ax.errorbar(
        result.layers,
        result.mean,
        yerr=2 * result.error,
        fmt=STYLE["marker"] + "-",
        markersize=STYLE["markersize"],
        capsize=2,
        label=f"measured, width {result.width}: mean of {len(result.measured)} seeds ± 2 s.e.",
    )
    ax.plot(
        result.layers,
        result.predicted,
        linestyle=STYLE["theory_linestyle"],
        color="black",
        label="1/4 + arcsin(ρ_l)/(2π), ρ_l from the arc-cosine kernel",
    )
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1, label="1/2: the two inputs aligned (ρ → 1)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer l")
    ax.set_ylabel("fraction of units dead on both inputs")
    ax.set_title(
        f"Dead ReLUs at initialisation: two inputs with correlation {result.correlation:g}",
        fontsize=STYLE["title_fontsize"],
    )
    ax.legend(fontsize="small")
    return ax

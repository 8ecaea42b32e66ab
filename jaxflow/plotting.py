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
    "plot_dynamical_isometry",
    "plot_phase_diagram",
    "plot_sigmoid_bound",
    "plot_tight_construction",
    "save_figure",
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
        f"Sigmoid, {ratio.shape[1]} seeds per init: "
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

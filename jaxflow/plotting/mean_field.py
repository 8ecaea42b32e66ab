"""Mean-field theory beside measurement: phase diagram, χ₁ decay, dynamical isometry, dead ReLUs."""

from __future__ import annotations

from jaxflow.plotting._common import STYLE, _np, new_axes
from jaxflow.theory.results import PredictionStatus

__all__ = [
    "plot_chi1_decay",
    "plot_chi1_decay_panels",
    "plot_dead_units",
    "plot_dynamical_isometry",
    "plot_phase_diagram",
]


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
    diverges = np.asarray(mf.status) == PredictionStatus.DIVERGES
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
    ax.axhline(
        0.5, color="gray", linestyle=":", linewidth=1, label="1/2: the two inputs aligned (ρ → 1)"
    )
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


def plot_chi1_decay_panels(results, titles, fig=None, *, title=None):
    """:func:`plot_chi1_decay` for several networks side by side, one panel each.

    Args:
      results: :class:`jaxflow.experiments.Chi1Decay` results.
      titles: a title per panel.
      fig: a matplotlib ``Figure`` (or ``SubFigure``) to draw on, or ``None`` for a new one.
      title: the figure's title, or ``None``.

    Returns:
      The figure.

    Example:
      >>> import jaxflow as jf, jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_chi1_decay_panels
      >>> r = ex.chi1_decay(jf.mlp(3, 8, activation="relu", init="he"), seeds=4)
      >>> [ax.get_title() for ax in plot_chi1_decay_panels([r], ["relu"]).axes]
      ['relu']
    """
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5 * len(results), 4.5), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, result, text in zip(axes, results, titles):
        plot_chi1_decay(result, ax)
        ax.set_title(text, fontsize=10)
    if title is not None:
        fig.suptitle(title)
    return fig

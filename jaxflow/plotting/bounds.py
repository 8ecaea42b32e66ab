"""The vanishing-gradient bound beside measurement (:mod:`jaxflow.experiments.bounds`)."""

from __future__ import annotations

from jaxflow.plotting._common import STYLE, _np, new_axes

__all__ = ["plot_bound_panels", "plot_sigmoid_bound", "plot_tight_construction"]

# plot_sigmoid_bound's y margin on each side, as a fraction of the data's own span in decades; the
# legends sit outside the axes, so no headroom is needed for them.
_MARGIN = 0.04


def plot_sigmoid_bound(result, ax=None, inits=None):
    """Sigmoid's gradient ratio against depth for random inits, next to 0.25^(d−1) and theory.

    Per initialisation (one colour): the median measured ratio ‖∂L/∂z^[1]‖/‖∂L/∂z^[d]‖ over seeds
    with its 5–95 % band (solid), the median worst-direction ratio σ_max(∂z^[d]/∂z^[1]) (dotted),
    the mean-field χ₁^((d−1)/2) (dashed) and the median product of norms ∏‖J^[l]‖₂ (dash-dot);
    the notes' 0.25^(d−1) in black. The legend gives each scheme's median ‖W‖₂: 0.25^(d−1) is
    guaranteed to bound the ratio when ∏‖W^[l]‖₂ ≤ 1 (sufficient, not necessary). The y range
    is fitted to everything drawn (bands, medians, theory, products and 0.25^(d−1)), with a margin
    of 4 % of its span in decades on each side; the legends sit to the right of the axes.

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
    drawn = [np.log10(bound)]  # log10 of every curve drawn, for the y range
    for i in chosen:
        color = f"C{i}"
        lo, mid, hi = np.percentile(ratio[i], [5, 50, 95], axis=0)
        top = np.median(worst[i], axis=0)
        drawn += [lo, hi, top, np.median(product[i], axis=0), np.log10(_np(result.mean_field[i]))]
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
    drawn = np.concatenate(drawn)
    low, high = float(np.min(drawn[np.isfinite(drawn)])), float(np.max(drawn[np.isfinite(drawn)]))
    span = max(high - low, 1.0)
    ax.set_ylim(10 ** (low - _MARGIN * span), 10 ** (high + _MARGIN * span))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("depth d (the ratio spans the d − 1 Jacobians J^[2], …, J^[d])")
    ax.set_ylabel("‖∂L/∂z^[1]‖ / ‖∂L/∂z^[d]‖ (log scale)")
    ax.set_title(
        f"Sigmoid, {ratio.shape[1]} seeds per init:\n0.25^(d−1) is guaranteed where ∏‖W‖₂ ≤ 1",
        fontsize=STYLE["title_fontsize"],
    )
    # One legend (colour = init, then line style = quantity) outside the axes: a single legend is
    # what the constrained layout makes room for, and outside it hides no curve.
    colours, labels = ax.get_legend_handles_labels()
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
    blank = Line2D([], [], linestyle="none", label=" ")
    labels = [*labels, " ", *(h.get_label() for h in styles)]
    legend = ax.legend(handles=[*colours, blank, *styles], labels=labels,
                       loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
                       title="colour: init (band: 5–95 % of seeds)\n"
                             "line style: quantity")  # fmt: skip
    legend.get_title().set_fontsize(8)
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


def plot_bound_panels(result, fig=None):
    """The tight construction (left, :func:`plot_tight_construction`) beside the random inits
    (right, :func:`plot_sigmoid_bound`).

    Args:
      result: a :class:`jaxflow.experiments.SigmoidBound`.
      fig: a matplotlib ``Figure`` (or ``SubFigure``) to draw on, or ``None`` for a new one.

    Returns:
      The figure.

    Example:
      >>> import jaxflow.experiments as ex
      >>> from jaxflow.plotting import plot_bound_panels
      >>> r = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
      >>> len(plot_bound_panels(r).axes)
      2
    """
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(14, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_tight_construction(result, left)
    plot_sigmoid_bound(result, right)
    return fig

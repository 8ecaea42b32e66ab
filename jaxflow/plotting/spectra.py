"""Singular values of Jacobian products and Lyapunov spectra."""

from __future__ import annotations

from jaxflow.plotting._common import STYLE, new_axes

__all__ = ["plot_jacobian_spectra", "plot_log_singular_values", "plot_lyapunov_spectrum"]


def _default_indices(n):
    """All singular values for a small width; else the top three, the middle one and the last."""
    if n <= 8:
        return list(range(n))
    return sorted({0, 1, 2, n // 2, n - 1})


def _shown_depths(depth):
    """The depths whose P_l histograms are drawn: 1, 4, 16 and the deepest, each once, ascending."""
    return sorted({d for d in (1, 4, 16, depth) if d <= depth})


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


def _log_range(values, minimum_span=1.0):
    """A histogram range that spans at least ``minimum_span`` decades around the data."""
    import numpy as np

    low, high = float(np.min(values)), float(np.max(values))
    middle, span = (low + high) / 2, max(high - low, minimum_span)
    return middle - span / 2, middle + span / 2


def plot_jacobian_spectra(result, fig=None):
    """Densities of log10 σ: every J_l pooled (top) and P_l at a few depths, one panel per network
    (bottom). Only the singular values of P_l above the float32 floor σ_max·n·ε are the network's,
    so only those are drawn; ReLU's exact zeros are left out of the J_l density.

    Args:
      result: a :class:`jaxflow.experiments.spectra.JacobianSpectra`.
      fig: a matplotlib ``Figure`` to draw on, or ``None`` for a new one.

    Returns:
      The figure.

    Example:
      >>> import numpy as np
      >>> from jaxflow.experiments.spectra import JacobianSpectra
      >>> from jaxflow.plotting import plot_jacobian_spectra
      >>> sv = np.exp(-np.random.default_rng(0).random((1, 2, 4, 3))).cumprod(-1)
      >>> r = JacobianSpectra((("tanh", "xavier"),), sv, sv, np.full((1, 2, 4), 3), 4, 3)
      >>> len(plot_jacobian_spectra(r).axes)
      2
    """
    import numpy as np

    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 7), layout="constrained")
    columns = [f"c{i}" for i in range(len(result.configs))]
    axes = fig.subplot_mosaic([["J"] * len(columns), columns], height_ratios=(1, 1.2))
    new_axes(axes["J"])
    depth, width = result.depth, result.width
    seeds = result.layer_singular_values.shape[1]
    shown = _shown_depths(depth)
    floor = width * float(np.finfo(np.float32).eps)
    # Host copies: indexing device arrays eagerly compiles a small program per shape.
    layer_svs = np.asarray(result.layer_singular_values)
    product_svs = np.asarray(result.product_singular_values)
    for index, label in enumerate(result.labels):
        layer_sv = layer_svs[index]
        sv = product_svs[index]
        j_logs = np.log10(np.maximum(np.asarray(layer_sv, np.float64).ravel(), 1e-30))
        j_logs = j_logs[j_logs > -8]  # exact zeros (ReLU's dead rows) are not a density
        axes["J"].hist(j_logs, bins=60, range=(-3, 1), histtype="step", density=True, label=label)
        ax = new_axes(axes[f"c{index}"])
        per_depth = []
        for l in shown:
            values = np.asarray(sv[:, l - 1], np.float64)
            # Only the float32-resolvable singular values are the network's (see JacobianChain).
            per_depth.append(np.log10(values[values >= values[:, :1] * floor]))
        span = _log_range(np.concatenate(per_depth))
        for l, logs in zip(shown, per_depth):
            ax.hist(logs, bins=30, range=span, histtype="step", density=True, label=f"P_{l}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("log10 σ(P_l)")
        ax.legend(fontsize=8)
    axes["c0"].set_ylabel("density")
    axes["J"].set_xlabel("log10 σ(J_l), all layers pooled")
    axes["J"].set_ylabel("density")
    axes["J"].set_title(
        "Singular values of the per-layer Jacobians J_l = ∂h_l/∂h_{l−1}", fontsize=10
    )
    axes["J"].legend(fontsize=8)
    fig.suptitle(
        f"Jacobian spectra against depth: J_l (top) and the products P_l = J_l⋯J_1 (bottom); "
        f"width {width}, {seeds} seeds"
    )
    return fig

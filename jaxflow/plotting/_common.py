"""The shared style, new axes, saving, and the helpers several figures use."""

from __future__ import annotations

import os
from typing import Any

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

    The file appears whole or not at all: the figure is drawn into a temporary sibling that takes
    ``path``'s name once complete, so an interrupted save or a full disk leaves no truncated file
    (and an existing one as it was).

    Args:
      fig_or_ax: a ``Figure`` or an ``Axes``.
      path: the file to write; its suffix picks the format (``.png``, ``.pdf``, ``.svg``; PNG
        without a suffix).
      overwrite: replace an existing file.

    Returns:
      The path written, as a string.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False, or is a folder.
      ValueError: for an empty path or a suffix matplotlib cannot write.
      OSError: if the folder does not exist, is a file or cannot be written (read-only, full).

    Example:
      >>> import os, tempfile
      >>> from jaxflow.plotting import new_axes, save_figure
      >>> path = os.path.join(tempfile.mkdtemp(), "empty.png")
      >>> save_figure(new_axes(), path) == path
      True
    """
    from jaxflow._files import check_output_path, figure_format, write_file

    fig = fig_or_ax.get_figure() if hasattr(fig_or_ax, "get_figure") else fig_or_ax
    path = check_output_path("path", path, overwrite=overwrite)
    file_format = figure_format(path)
    return write_file(
        path, lambda f: fig.savefig(f, format=file_format, dpi=STYLE["dpi"]), overwrite=overwrite
    )


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


def _np(a):
    import numpy as np

    return np.asarray(a, dtype=float)

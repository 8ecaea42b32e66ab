"""Matplotlib figures, in one consistent style.

Every plot function takes an optional ``ax`` (a new figure is made if it is ``None``), draws on it,
labels its axes with their quantity and scale, and returns it. None calls ``plt.show()``; all work
headless (Agg). Save with :func:`save_figure`, which never overwrites a file unless asked.

matplotlib is imported here, not in ``jaxflow/__init__.py``, so the core imports fast.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["new_axes", "save_figure"]

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


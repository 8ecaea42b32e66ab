"""The shared figure helpers: axes in the house style, saving that never overwrites silently."""

import pytest

from jaxflow.plotting import new_axes, save_figure


def test_new_axes_reuses_given_axes():
    ax = new_axes()
    assert new_axes(ax) is ax


def test_save_figure_refuses_to_overwrite(tmp_path):
    ax = new_axes()
    ax.plot([1, 2], [3, 4])
    path = tmp_path / "figure.png"
    save_figure(ax, path)
    size = path.stat().st_size
    assert size > 1000
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_figure(ax, path)
    assert path.stat().st_size == size
    save_figure(ax, path, overwrite=True)

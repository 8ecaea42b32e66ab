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


def test_every_plot_function_is_rendered_by_a_test():
    """A figure nobody renders rots: each plot_* function must appear in some test file."""
    import pathlib

    import jaxflow.plotting as plotting

    sources = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    untested = [n for n in plotting.__all__ if n.startswith("plot_") and f"{n}(" not in sources]
    assert not untested, f"no test renders {untested}"


def test_dead_units_figure(tmp_path):
    from jaxflow.experiments import dead_relu_fraction
    from jaxflow.plotting import plot_dead_units

    ax = plot_dead_units(dead_relu_fraction(depth=4, width=16, seeds=2))
    assert ax.get_xlabel() == "layer l" and "dead" in ax.get_ylabel()
    assert len(ax.get_lines()) >= 2 and len(ax.get_legend().get_texts()) == 3
    save_figure(ax, tmp_path / "dead.png")
    assert (tmp_path / "dead.png").stat().st_size > 10_000


def test_sweep_figures(tmp_path):
    import jaxflow as jf
    from jaxflow.plotting import plot_gradient_ratio, plot_sweep_heatmap

    ds = jf.sweep(jf.Grid(depth=[1, 3], activation=["relu", "tanh"], init=[(1.0, 0.0), (2.0, 0.0)],
                          width=4, seeds=2, batch=1, metrics=["grad_ratio", "theory"]), quiet=True)  # fmt: skip
    axes = plot_sweep_heatmap(ds, "grad_ratio")
    assert len(axes) == 2 and [a.get_title() for a in axes] == ["relu", "tanh"]
    assert axes[0].get_ylabel() == "depth d" and len(axes[0].get_images()) == 1
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["σ_w²=1", "σ_w²=2"]
    ax = plot_gradient_ratio(ds)
    # one measured line per (activation, init) and one dashed mean-field line each
    assert len(ax.get_lines()) == 8 and "log scale" in ax.get_ylabel()
    save_figure(axes[0], tmp_path / "heatmap.png")
    save_figure(ax, tmp_path / "ratio.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 10_000


def test_residual_growth_line_is_the_theory_from_the_last_layer():
    """The dashed theory line is median ‖∂L/∂H_L‖ · growth^(L−l): 3^(d/2) over d blocks for √3."""
    import numpy as np

    from jaxflow.experiments import ResidualComparison
    from jaxflow.plotting import plot_residual_comparison

    depth, rng = 6, np.random.default_rng(0)
    residual = np.sqrt(3.0) ** (depth - np.arange(depth + 1)) * rng.uniform(0.5, 2, (3, 1))
    plain = np.ones((3, depth + 1))
    result = ResidualComparison("relu", "he", plain, residual, plain[:, 0], residual[:, 0] / residual[:, -1])
    ax = plot_residual_comparison(result, growth=np.sqrt(3), growth_label="3^(d/2)")
    (theory,) = [line for line in ax.get_lines() if line.get_label() == "3^(d/2)"]
    assert theory.get_linestyle() == "--"
    expected = np.median(residual[:, -1]) * 3.0 ** ((depth - np.arange(depth + 1)) / 2)
    np.testing.assert_allclose(theory.get_ydata(), expected, rtol=1e-12)
    assert len(plot_residual_comparison(result).get_lines()) == 2  # no theory unless asked

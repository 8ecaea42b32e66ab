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
    ratios = plain[:, 0], residual[:, 0] / residual[:, -1]
    result = ResidualComparison("relu", "he", plain, residual, *ratios)
    ax = plot_residual_comparison(result, growth=np.sqrt(3), growth_label="3^(d/2)")
    (theory,) = [line for line in ax.get_lines() if line.get_label() == "3^(d/2)"]
    assert theory.get_linestyle() == "--"
    expected = np.median(residual[:, -1]) * 3.0 ** ((depth - np.arange(depth + 1)) / 2)
    np.testing.assert_allclose(theory.get_ydata(), expected, rtol=1e-12)
    assert len(plot_residual_comparison(result).get_lines()) == 2  # no theory unless asked


def test_spectra_draw_each_depth_once_when_the_deepest_is_a_shown_one():
    """depth 16 is both 'the deepest' and one of 1, 4, 16: one histogram and one legend entry."""
    import numpy as np

    from jaxflow.experiments.spectra import JacobianSpectra
    from jaxflow.plotting import plot_jacobian_spectra

    for depth, expected in ((16, ["P_1", "P_4", "P_16"]), (4, ["P_1", "P_4"]),
                            (20, ["P_1", "P_4", "P_16", "P_20"])):  # fmt: skip
        sv = np.exp(-np.random.default_rng(0).random((1, 2, depth, 3))).cumprod(-1)
        result = JacobianSpectra((("tanh", "xavier"),), sv, sv, np.full((1, 2, depth), 3), depth, 3)
        panel = plot_jacobian_spectra(result).axes[1]
        labels = [text.get_text() for text in panel.get_legend().get_texts()]
        assert labels == expected
        assert len(panel.patches) == len(expected)  # one step histogram per shown depth


def test_sigmoid_bound_y_range_fits_its_data():
    """The right panel's y limits enclose every curve and band, with a margin bounded by a
    fixed fraction of the data's span (in decades) on each side."""
    import numpy as np

    import jaxflow.experiments as ex
    from jaxflow.plotting import plot_sigmoid_bound

    result = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
    ax = plot_sigmoid_bound(result)
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
    ys += [path.vertices[:, 1] for band in ax.collections for path in band.get_paths()]
    ys = np.log10(np.concatenate(ys))
    low, high = ys[np.isfinite(ys)].min(), ys[np.isfinite(ys)].max()
    bottom, top = np.log10(ax.get_ylim())
    span = high - low
    assert span > 3  # 0.25^11 alone spans 6.6 decades
    assert bottom <= low and top >= high  # nothing drawn leaves the plot
    assert low - bottom <= 0.05 * span and top - high <= 0.05 * span  # and no empty decades

"""The experiments and figures the report's sections are built from (the sections themselves run
in test_report.py's real-process `reproduce --quick`)."""

import jax
import numpy as np
import pytest

from helpers import tol
from jaxflow.experiments.chain_rule import ChainRuleErrors, chain_rule_errors
from jaxflow.experiments.monitoring import clipping_comparison, deep_gradient_stats
from jaxflow.experiments.spectra import jacobian_spectra
from jaxflow.plotting import (
    plot_bound_panels,
    plot_chain_rule_errors,
    plot_chi1_decay_panels,
    plot_clipping,
    plot_jacobian_spectra,
    plot_sweep_summary,
    save_figure,
)


def test_linear_orthogonal_products_are_isometries():
    """Closed form: every singular value of a product of orthogonal matrices is 1."""
    result = jacobian_spectra((("linear", "orthogonal"), ("tanh", "xavier")), depth=5, width=6,
                              seeds=3, key=jax.random.key(2))  # fmt: skip
    assert result.product_singular_values.shape == (2, 3, 5, 6)
    assert result.resolved.shape == (2, 3, 5)
    sv = np.asarray(result.product_singular_values[0], np.float64)
    np.testing.assert_allclose(sv, 1.0, atol=tol(np.float32, "orthogonal") * 5)
    assert result.labels == ["linear, orthogonal", "tanh, xavier"]


def test_chain_rule_errors_are_float32_small_and_named(tmp_path):
    result = chain_rule_errors(3, 4, (("mlp", "tanh", "xavier"), ("residual", "sigmoid", "xavier")),
                               key=jax.random.key(0))  # fmt: skip
    assert result.configs == ["mlp-tanh", "residual-sigmoid"]
    for field in ("explicit", "grad", "vjp", "explicit_vs_grad"):
        assert len(getattr(result, field)) == 2
        assert max(getattr(result, field)) < tol(np.float32, "chain_rule")
    ax = plot_chain_rule_errors(result)
    assert [t.get_text() for t in ax.get_xticklabels()] == result.configs
    save_figure(ax, tmp_path / "chain_rule.png")


def test_deep_gradient_stats_global_norm_is_the_root_sum_square():
    stats = deep_gradient_stats(4, 8, "sigmoid", "xavier", key=jax.random.key(0),
                                init_key=jax.random.key(1))  # fmt: skip
    norms = np.asarray(stats.norm, np.float64)
    assert abs(np.sqrt(np.sum(norms**2)) / float(stats.global_norm) - 1) < tol(np.float32, "norm")
    assert "blocks/03/Dense_0/kernel" in stats.names


def test_clipping_comparison_starts_from_the_same_weights(tmp_path):
    result = clipping_comparison(3, 4, 5, key=jax.random.key(0), init_key=jax.random.key(1))
    assert float(result.plain.loss[0]) == float(result.clipped.loss[0])
    assert result.clipped.finite
    fig = plot_clipping(result)
    assert [ax.get_title() for ax in fig.axes] == ["no clipping", "optax.clip_by_global_norm(1.0)"]
    save_figure(fig, tmp_path / "clipping.png")


# ~8 s; each figure function is tested in test_plotting*.py; the slow pass renders them together.
@pytest.mark.slow
def test_report_figures_render(tmp_path):
    import jaxflow as jf
    import jaxflow.experiments as ex

    spectra = jacobian_spectra((("relu", "he"), ("linear", "orthogonal")), depth=4, width=4,
                               seeds=2, key=jax.random.key(0))  # fmt: skip
    fig = plot_jacobian_spectra(spectra)
    assert len(fig.axes) == 3  # the pooled J_l panel and one P_l panel per network
    save_figure(fig, tmp_path / "spectra.png")

    bound = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
    assert len(plot_bound_panels(bound).axes) == 2

    decay = ex.chi1_decay(jf.mlp(3, 8, activation="relu", init="he"), seeds=4)
    fig = plot_chi1_decay_panels([decay, decay], ["a", "b"], title="t")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]

    grid = jf.Grid(depth=[1, 2], activation=["tanh", "relu"], init=["he"], width=3, seeds=1,
                   batch=1, metrics=["grad_ratio"])  # fmt: skip
    fig = plot_sweep_summary(jf.sweep(grid, quiet=True))
    assert len(fig.subfigs) == 2 and len(fig.subfigs[0].axes) >= 2
    save_figure(fig, tmp_path / "sweep.png")


def test_chain_rule_errors_fields():
    assert ChainRuleErrors._fields == (
        "configs", "explicit", "grad", "vjp", "explicit_vs_grad", "depth", "width",
    )  # fmt: skip


def test_trainability_section_checks_hold_the_stated_margins():
    """The report's trainability checks on hand-made results at and across their margins (the
    experiments run at tiny sizes in their doctests, the section in the slow report test)."""
    from jaxflow.experiments import IsometrySpeedup, SchoenholzHeatmap
    from jaxflow.report import trainability as section

    def heat(below_train, above_fail):
        depth, xi_c = np.array([2, 12]), np.array([1.19, 15.0])  # 6ξ_c = 7.1 and 90
        below = depth[:, None] < 6 * xi_c[None, :]  # only (12, σ_w² = 0.5) is above
        return SchoenholzHeatmap(
            depth, np.array([0.5, 1.76]), np.array([10, 20]), np.zeros((2, 2, 2)),
            np.zeros((2, 2, 2)), xi_c, 1.76, below, np.array([0.0, below_train]),
            np.array([0.0, above_fail]), 0.4, 0.1, 0.05, None,
        )  # fmt: skip

    def iso(tanh_speedup, relu_speedup, relu_ratio):
        speedup = np.array([[1.0, tanh_speedup], [1.0, relu_speedup]])
        ratio = np.array([[1.0, 1.0], [1.0, relu_ratio]])
        return IsometrySpeedup(
            ("tanh", "relu"), np.array([8, 24]), np.array([1.0, 2.0]), np.array([0, 10]),
            None, None, None, None, speedup, ratio, None, 1.5, 1e-3, None,
        )  # fmt: skip

    good = section.checks(heat(section.BELOW_TRAIN, section.ABOVE_FAIL),
                          iso(section.SPEEDUP, 1 - 0.99 * section.RELU_WITHIN, np.nan))  # fmt: skip
    assert [c.passed for c in good] == [True] * 4
    assert "3 networks" in good[0].name and "1 networks" in good[1].name
    assert "steps-to-target" in good[3].name
    bad = section.checks(heat(section.BELOW_TRAIN - 0.01, section.ABOVE_FAIL - 0.01),
                         iso(section.SPEEDUP - 0.01, np.nan, 1.5))  # fmt: skip
    assert [c.passed for c in bad] == [False] * 4
    assert "final-loss ratio" in bad[3].name and bad[3].measured == 1.5

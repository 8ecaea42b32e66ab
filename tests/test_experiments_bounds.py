"""Sigmoid's 0.25^(L−1), χ₁ against measurement, free-probability spectra against Monte Carlo."""

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
import jaxflow.experiments as ex
from helpers import tol
from jaxflow.plotting import (
    plot_chi1_decay,
    plot_dynamical_isometry,
    plot_phase_diagram,
    plot_sigmoid_bound,
    plot_tight_construction,
    save_figure,
)

EXACT = 2.0**-38  # 0.25^19


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def sigmoid_run():
    """depth 20 (the notes' L), small width and seeds: the test-suite version of the experiment,
    with JAX's compilation log."""
    # Forget a program a doctest in this process compiled for the same sizes.
    ex.bounds._sigmoid_bound_program.cache_clear()
    records = _Records()
    logger = logging.getLogger("jax")
    logger.addHandler(records)
    try:
        with jax.log_compiles():
            result = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
    finally:
        logger.removeHandler(records)
    return result, records.messages


@pytest.fixture(scope="module")
def sigmoid(sigmoid_run):
    return sigmoid_run[0]


def test_tight_construction_gives_exactly_a_quarter_to_the_nineteenth(sigmoid):
    tight = sigmoid.tight
    assert EXACT == 3.637978807091713e-12
    assert abs(float(tight.ratio[-1]) / EXACT - 1) < tol("float32", "tight")
    # Every singular value of ∂z^[d]/∂z^[1], at every depth d, is 0.25^(d−1).
    bound = np.asarray(sigmoid.sup_bound, np.float64)
    sv = np.exp(np.asarray(tight.log_singular_values, np.float64))
    assert np.max(np.abs(sv / bound[:, None] - 1)) < tol("float32", "tight")
    assert np.max(np.abs(np.asarray(tight.ratio) / bound - 1)) < tol("float32", "tight")
    assert float(sigmoid.tight_max_preactivation) < 1e-6  # every z^[l] is 0 (up to rounding)


def test_random_inits_obey_the_chain_of_bounds_and_show_where_quarter_fails(sigmoid):
    r = sigmoid.random
    slack = math.log1p(tol("float32", "bound"))
    assert bool(jnp.all(r.log_ratio <= r.log_worst + slack))
    assert bool(jnp.all(r.log_worst <= r.log_product + slack))
    assert bool(jnp.all(r.log_product <= r.log_looser + slack))
    xavier, orth = sigmoid.inits.index("xavier"), sigmoid.inits.index("orthogonal")
    # ‖W‖₂ = 1: 0.25^(d−1) is a bound, for every seed and depth, in every direction.
    np.testing.assert_allclose(r.weight_norms[orth], 1.0, rtol=1e-5)
    assert float(sigmoid.worst_exceed[orth].max()) == 0.0
    # Xavier: ‖W‖₂ ≈ 2, and in its worst direction seeds exceed 0.25^(d−1) (at width 64 every
    # one of them does; see the slow test).
    assert 1.6 < float(jnp.median(r.weight_norms[xavier])) < 2.4
    assert float(sigmoid.worst_exceed[xavier, -1]) > 0.2


def test_mean_field_predicts_the_typical_ratio(sigmoid):
    """χ₁^((d−1)/2) against the median measured ratio, within the seeds' spread."""
    for i in range(len(sigmoid.inits)):
        log_ratio = np.asarray(sigmoid.random.log_ratio[i])
        centre = np.median(log_ratio, axis=0)
        spread = np.percentile(log_ratio, 90, axis=0) - np.percentile(log_ratio, 10, axis=0)
        predicted = np.log(np.asarray(sigmoid.mean_field[i]))
        assert np.all(np.abs(centre - predicted) < spread), sigmoid.inits[i]


def test_sigmoid_bound_is_one_compiled_program(sigmoid_run):
    """All seeds of all inits and the construction: one XLA compilation of one program."""
    _, messages = sigmoid_run
    programs = [m for m in messages if m.startswith("Compiling") and "sigmoid_bound_program" in m]
    assert len(programs) == 1


@pytest.mark.slow
def test_full_sigmoid_experiment_thousand_seeds():
    """The issue's run: depth 20, width 64, ≥ 1000 seeds per init, one compiled call."""
    result = ex.sigmoid_bound()
    assert result.random.log_ratio.shape == (4, 1000, 19)
    assert abs(float(result.tight.ratio[-1]) / EXACT - 1) < tol("float32", "tight")
    xavier, he = result.inits.index("xavier"), result.inits.index("he")
    # Xavier (‖W‖₂ ≈ 2) exceeds 0.25^19 in its worst direction for ~all seeds; He even in the
    # loss's direction.
    assert float(result.worst_exceed[xavier, -1]) > 0.98 and float(result.exceed[he, -1]) > 0.98
    assert 1.8 < float(jnp.median(result.random.weight_norms[xavier])) < 2.1
    critical = next(i for i, name in enumerate(result.inits) if name.startswith("critical"))
    assert abs(float(result.chi1[critical]) - 1) < 1e-3


# ----------------------------------------------------------------------------- χ₁ vs measurement


def test_relu_he_matches_chi1_at_finite_width():
    """ReLU with zero biases: E[(1/n)‖P_l‖_F²] = (σ_w²/2)^l exactly at any width."""
    result = ex.chi1_decay(jf.mlp(8, 16, activation="relu", init="he"), seeds=64)
    assert float(result.chi1) == pytest.approx(1.0, abs=1e-5)
    assert not bool(result.msv_disagree.any())
    assert not bool(result.grad_decay_disagree.any())
    assert np.all(np.abs(np.asarray(result.msv) - 1) < 4 * np.asarray(result.msv_error) + 1e-4)


def test_finite_width_bias_of_a_smooth_activation_is_flagged():
    """tanh at width 4: each layer's factor is χ₁(1 + O(1/n)) and the products drift, O(l/n)."""
    model = jf.mlp(6, 4, activation="tanh", init=(1.5, 0.1))
    result = ex.chi1_decay(model, seeds=2048, key=jax.random.key(1))
    deviation = np.asarray(result.msv) / np.asarray(result.predicted) - 1
    assert bool(result.msv_disagree.any())  # beyond 3 standard errors
    assert np.all(np.abs(deviation) < 0.5)  # but O(l/n), not a different law
    assert float(result.chi1) == pytest.approx(float(jf.chi1("tanh", 1.5, 0.1).value))


def test_chi1_decay_rejects_residual_stacks():
    with pytest.raises(TypeError, match="jaxflow MLP"):
        ex.chi1_decay(jf.residual_stack(3, 4))


# ----------------------------------------------------------------------------- free probability


@pytest.mark.parametrize(
    "activation, sigma_w2, gaussian, orthogonal",
    [("linear", 1.0, 1.0, 0.0), ("relu", 2.0, 2.0, 1.0)],  # variance per layer, s₁ = −1 / 0
)
def test_free_probability_against_monte_carlo(activation, sigma_w2, gaussian, orthogonal):
    """Width 256, three layers, two seeds: cheap, and well inside the Monte-Carlo error."""
    result = ex.dynamical_isometry(
        activation, sigma_w2, depth=3, width=256, seeds=2, condition=False
    )
    depths = np.arange(1, 4)
    np.testing.assert_allclose(result.theory.relative_variance[0], gaussian * depths, rtol=1e-5)
    np.testing.assert_allclose(
        result.theory.relative_variance[1], orthogonal * depths, rtol=1e-5, atol=1e-6
    )
    measured = np.asarray(result.relative_variance)
    np.testing.assert_allclose(measured[0], gaussian * depths, rtol=0.15)
    if orthogonal == 0.0:  # linear and orthogonal: exact isometry, only rounding is left
        assert np.max(np.abs(measured[1])) < 1e-4
    else:
        np.testing.assert_allclose(measured[1], orthogonal * depths, rtol=0.15)
    np.testing.assert_allclose(result.mean, 1.0, rtol=0.1)


@pytest.mark.slow
def test_free_probability_against_monte_carlo_deep():
    result = ex.dynamical_isometry("relu", 2.0, depth=6, width=512, seeds=4, condition=False)
    assert not bool(result.relative_variance_disagree.any())
    np.testing.assert_allclose(result.relative_variance, result.theory.relative_variance, rtol=0.15)


# ----------------------------------------------------------------------------- figures


def _png(ax, path):
    save_figure(ax, path)
    assert path.stat().st_size > 10_000
    return ax


def test_figures_render(tmp_path, sigmoid):
    ax = _png(plot_sigmoid_bound(sigmoid), tmp_path / "sigmoid.png")
    assert ax.get_yscale() == "log" and "0.25" in ax.get_title()
    assert len(ax.get_lines()) == 4 * len(sigmoid.inits) + 1
    ax = _png(plot_tight_construction(sigmoid), tmp_path / "tight.png")
    assert len(ax.get_lines()) == 3
    diagram = jf.phase_diagram("relu", [1.0, 1.5, 2.5], [0.0, 0.1])
    ax = _png(plot_phase_diagram(diagram), tmp_path / "phase.png")
    assert ax.get_xlabel().startswith("σ_w²") and ax.get_ylabel().startswith("σ_b²")
    decay = ex.chi1_decay(jf.mlp(8, 16, activation="relu", init="he"), seeds=64)
    ax = _png(plot_chi1_decay(decay), tmp_path / "chi1.png")
    assert ax.get_yscale() == "log" and len(ax.containers) == 2  # two error-bar series
    iso = ex.dynamical_isometry("relu", 2.0, depth=3, width=256, seeds=2, condition=False)
    ax = _png(plot_dynamical_isometry(iso), tmp_path / "isometry.png")
    assert len(ax.containers) == 2 and len(ax.get_lines()) >= 2
    with pytest.raises(ValueError, match="quantity"):
        plot_dynamical_isometry(iso, quantity="spread")


def test_condition_number_of_the_end_to_end_jacobian(tmp_path):
    """Orthogonal linear: exactly 1 at every depth; ReLU: P_l is rank-deficient, so infinite."""
    linear = ex.dynamical_isometry("linear", 1.0, depth=2, width=8, seeds=2)  # the doctest's run
    np.testing.assert_allclose(linear.condition[1], 1.0, rtol=1e-4)
    assert np.all(np.asarray(linear.condition[0]) > 1.5)  # Gaussian: Marchenko–Pastur spread
    ax = _png(plot_dynamical_isometry(linear, quantity="condition"), tmp_path / "condition.png")
    assert ax.get_yscale() == "log"

"""The notes' gradient-flow experiments against NumPy backpropagation, He et al.'s per-layer factor
(Monte Carlo over seeds), and robust margins; and their figures."""

import functools

import jax
import numpy as np
import pytest

import jaxflow as jf
from helpers import np_mlp_backprop, tol
from jaxflow.experiments import compare_activations, compare_inits, compare_residual
from jaxflow.experiments import gradient_flow as GF
from jaxflow.plotting import (
    plot_gradient_flow,
    plot_init_comparison,
    plot_residual_comparison,
    save_figure,
)

SEEDS = jax.random.split(jax.random.key(0), 8)


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@functools.cache
def _notes():
    """The notes' defaults (relu/sigmoid/tanh, depth 10, width 64, batch 32, MSE) over 8 seeds."""
    return compare_activations(key=SEEDS)


def test_defaults_are_the_notes_networks_and_match_numpy_backprop():
    result = _notes()
    assert result.activations == ("relu", "sigmoid", "tanh")
    assert result.inits == ("he", "xavier", "xavier")
    # 10 hidden Linear(64, 64) layers and the Linear(64, 1) readout; h_0 … h_10.
    assert result.weight_grad_norms.shape == result.activation_grad_norms.shape == (3, 8, 11)
    assert result.stats.layer_norms.shape == (3, 8, 11)
    for seed in (0, 5):
        # The data as the module documents them, drawn again here.
        _, k_x, k_y = jax.random.split(SEEDS[seed], 3)
        x, y = jax.random.normal(k_x, (32, 64)), jax.random.normal(k_y, (32, 1))
        for a, activation in enumerate(result.activations):
            params = jax.tree.map(lambda v: v[a, seed], result.variables["params"])
            loss, kernel_grads, act_grads = np_mlp_backprop(params, x, y, activation)
            assert _relative(result.loss[a, seed], loss) < tol("float32", "gradient")
            kernel_norms = [np.linalg.norm(g) for g in kernel_grads]
            assert _relative(result.weight_grad_norms[a, seed], kernel_norms) < tol(
                "float32", "gradient"
            )
            act_norms = np.linalg.norm(act_grads, axis=(1, 2))
            assert _relative(result.activation_grad_norms[a, seed], act_norms) < tol(
                "float32", "gradient"
            )


def test_sigmoid_decays_with_depth_while_relu_he_stays_within_a_factor_of_ten():
    norms = np.asarray(_notes().weight_grad_norms, np.float64)  # (activation, seed, layer)
    relu, sigmoid = norms[0], norms[1]
    # Over 512 seeds the ReLU-He spread max/min over the 11 layers has median 3.0, 99th percentile
    # 6.9 and maximum 8.8; sigmoid's first/last hidden-layer ratio has median 1.3e-6 and
    # maximum 2.4e-3 (python -c "from jaxflow.experiments import compare_activations; ...").
    assert np.all(relu.max(axis=1) / relu.min(axis=1) < 10.0)
    assert np.all(sigmoid[:, 0] / sigmoid[:, -2] < 1e-2)
    assert np.all(np.median(sigmoid[:, 1:-1] / sigmoid[:, :-2], axis=1) > 2.0)  # layer over layer


def test_init_choice_per_activation():
    # Default: He for ReLU, Xavier otherwise; "pytorch" (the notes' own networks, σ_w² = 1/3,
    # where ReLU's gradient also falls with depth: max/min over layers 60–1100 on 8 seeds) for all;
    # or a mapping.
    schemes = GF._inits_for(("relu", "tanh"), None, 64)
    assert [s.name for s in schemes] == ["he", "xavier"]
    assert [s.name for s in GF._inits_for(("relu", "tanh"), "pytorch", 64)] == ["pytorch"] * 2
    mapped = GF._inits_for(("relu", "tanh"), {"relu": "xavier", "tanh": (1.5, 0.1)}, 64)
    assert [s.name for s in mapped] == ["xavier", "gaussian"] and mapped[1].sigma_w2 == 1.5


def test_pytorch_default_init_is_uniform_with_bound_one_over_sqrt_fan_in():
    scheme = GF._pytorch_default(64)
    kernel = np.asarray(scheme.kernel_init(jax.random.key(0), (64, 256)), np.float64)
    bias = np.asarray(scheme.bias_init(jax.random.key(1), (256,)), np.float64)
    bound = 1.0 / 8.0
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    # E W² = bound²/3; its standard error from the sample itself.
    squares = kernel.ravel() ** 2
    se = squares.std(ddof=1) / np.sqrt(squares.size)
    assert abs(squares.mean() - bound**2 / 3) < tol("float32", "monte_carlo_sigmas") * se
    assert scheme.sigma_w2 == pytest.approx(1 / 3)


def test_all_activations_and_seeds_are_one_compiled_call():
    result = _notes()
    models = tuple(
        jf.mlp(10, 64, activation=a, init=i) for a, i in zip(result.activations, result.inits)
    )
    # The one jitted function that holds every activation's network; seeds are a vmap axis.
    program = GF._flow(models, 32, "mse", True)
    assert program._cache_size() == 1
    compare_activations(key=jax.random.split(jax.random.key(7), 8))  # new keys: no new program
    assert program._cache_size() == 1


def test_gradient_flow_figure(tmp_path):
    result = _notes()
    ax = plot_gradient_flow(result)
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log"
    assert "Layer" in ax.get_xlabel() and "log scale" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [label.split()[0] for label in labels] == ["relu", "sigmoid", "tanh"]
    path = save_figure(ax, tmp_path / "gradient_flow.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "gradient_flow.png").stat().st_size > 20_000
    ax = plot_gradient_flow(result, quantity="activation")
    assert len(ax.get_lines()) == 3
    with pytest.raises(ValueError, match="quantity"):
        plot_gradient_flow(result, quantity="bias")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(activations=()), ValueError, "activations is empty"),
        (dict(activations=("swish",)), ValueError, "swish"),
        (dict(depth=0), ValueError, "depth=0"),
        (dict(key=0), TypeError, "jax.random.key"),
        (
            dict(activations=("relu", "tanh"), init={"relu": "he"}),
            ValueError,
            r"no entry for activations \['tanh'\]",
        ),
    ],
)
def test_compare_activations_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        compare_activations(**kwargs)


# ---------------------------------------------------------------------------------------------
# Xavier vs He (He et al. 2015) on a 30-layer ReLU MLP.


@functools.cache
def _inits():
    return compare_inits(
        key=jax.random.split(jax.random.key(5), 16)
    )  # depth 30, width 64, batch 32


def test_xavier_shrinks_the_gradient_by_one_over_sqrt2_per_layer_and_he_keeps_it():
    result = _inits()
    k = tol("float32", "monte_carlo_sigmas")
    assert result.inits == ("xavier", "he")
    assert result.predicted == pytest.approx((1 / np.sqrt(2), 1.0))
    # He et al. propagate the second moment: E[(‖∂L/∂h_{l−1}‖ / ‖∂L/∂h_l‖)²] = σ_w²/2 per layer
    # (1/2 for Xavier, σ_w² = 1 on square layers; 1 for He). Its mean of squares has no Jensen
    # bias (the mean of the ratio itself is ~0.5% low at width 64). Each tolerance is k standard
    # errors of a mean over the 16 seeds, estimated from their spread.
    squares = np.asarray(result.layer_ratios, np.float64) ** 2  # (init, seed, layer)
    seeds = squares.shape[1]
    for i, target in enumerate((0.5, 1.0)):
        mean = squares[i].mean(axis=0)
        se = squares[i].std(axis=0, ddof=1) / np.sqrt(seeds)
        assert np.all(np.abs(mean - target) < k * se), (result.inits[i], (mean - target) / se)
        pooled = squares[i].mean(axis=1)  # one number per seed: the mean over its 30 layers
        pooled_se = pooled.std(ddof=1) / np.sqrt(seeds)
        assert abs(pooled.mean() - target) < k * pooled_se
        # The measurement resolves the difference: the other init's value is far outside.
        assert abs(pooled.mean() - (1.5 - target)) > k * pooled_se


def test_init_comparison_figure(tmp_path):
    ax = plot_init_comparison(_inits())
    assert len(ax.get_lines()) == 4 and ax.get_yscale() == "log"  # two measured, two theory
    assert (
        save_figure(ax, tmp_path / "inits.png") and (tmp_path / "inits.png").stat().st_size > 20_000
    )


# ---------------------------------------------------------------------------------------------
# Residual vs plain.


def test_residual_keeps_the_gradient_where_the_plain_sigmoid_mlp_loses_it(tmp_path):
    result = compare_residual(activation="sigmoid", key=jax.random.split(jax.random.key(3), 4))
    assert result.init == "xavier" and result.plain.shape == result.residual.shape == (4, 51)
    plain, residual = np.asarray(result.plain_ratio), np.asarray(result.residual_ratio)
    # Measured: plain ≈ 1e-32 (about 0.23 per layer), residual ≈ 1.4–1.8: margins of more than
    # twenty orders of magnitude and ×100 on the two thresholds.
    assert np.all(plain < 1e-10) and np.all(plain > 0)  # > 0: the norms did not underflow
    assert np.all(residual > 1e-2)
    assert np.all(plain < 1e-20) and np.all(residual > 1.0)
    ax = plot_residual_comparison(result)
    assert [line.get_label().split(":")[0] for line in ax.get_lines()] == [
        "plain MLP",
        "residual stack",
    ]
    assert save_figure(ax, tmp_path / "residual.png")


# ~7 s (two more compilations of the comparison); the slow pass runs it.
@pytest.mark.slow
def test_compare_activations_on_given_weights_matches_the_drawn_ones():
    """Given weights and data reproduce the comparison that drew them (one seed)."""
    import jax
    import numpy as np

    from jaxflow.experiments import compare_activations

    drawn = compare_activations(depth=3, width=8, batch=4, key=jax.random.key(2))
    # Rebuild each network's x, y exactly as the drawn comparison did, from the same key.
    k_init, k_x, k_y = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(k_x, (4, 8))
    y = jax.random.normal(k_y, (4, 1))
    # One key: drawn.variables is stacked over the 3 activations only, as `variables=` wants.
    given = compare_activations(depth=3, width=8, batch=4, variables=drawn.variables,
                                x=np.stack([x] * 3), y=np.stack([y] * 3))  # fmt: skip
    assert given.inits == ("given",) * 3 and given.weight_grad_norms.shape == (3, 1, 4)
    np.testing.assert_allclose(
        given.weight_grad_norms, drawn.weight_grad_norms.reshape(3, 1, 4), rtol=1e-5
    )


def test_compare_activations_rejects_partial_or_misshapen_data():
    import numpy as np

    from jaxflow.experiments import compare_activations

    with pytest.raises(ValueError, match="all three or none"):
        compare_activations(x=np.zeros((3, 32, 64)))
    bad = {"params": {"blocks": {"Dense_0": {"kernel": np.zeros((3, 10, 64, 64))}},
                      "readout": {"kernel": np.zeros((3, 64, 1))}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"x has shape \(3, 32, 8\)"):
        compare_activations(variables=bad, x=np.zeros((3, 32, 8)), y=np.zeros((3, 32, 1)))

"""Dead ReLUs at initialisation: the arc-cosine prediction and the measurement, independently."""

import math

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from helpers import tol
from jaxflow.experiments import dead_relu_fraction, relu_correlation_map
from jaxflow.experiments.dead_units import _measure


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.5, 0.95])
def test_arc_cosine_map_against_quadrature(rho):
    """ρ' = E[relu(u) relu(v)] / E[relu(u)²] for standard normals (u, v) with correlation ρ."""

    # The bivariate normal density written out (scipy's multivariate_normal(...).pdf per point is
    # ~100× slower and the same formula).
    det = 1.0 - rho * rho
    norm = 1.0 / (2.0 * math.pi * math.sqrt(det))

    def integrand(v, u):
        density = norm * math.exp(-(u * u - 2.0 * rho * u * v + v * v) / (2.0 * det))
        return max(u, 0.0) * max(v, 0.0) * density

    moment, _ = integrate.dblquad(integrand, 0, 10, 0, 10, epsabs=1e-10)
    assert relu_correlation_map(rho, 2)[1] == pytest.approx(moment / 0.5, abs=1e-7)


@pytest.mark.parametrize("rho", [-0.3, 0.2, 0.9])
def test_sheppard_against_the_bivariate_normal_cdf(rho):
    cdf = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([0, 0])
    assert 0.25 + math.asin(rho) / (2 * math.pi) == pytest.approx(cdf, abs=1e-5)


def test_measurement_matches_a_numpy_forward_pass():
    depth, width = 5, 32
    key = jax.random.key(3)
    measured = np.asarray(_measure(depth, width, 1, 0.5, "he")(key[None]))[0]
    # Rebuild the same weights and inputs, then count dead units in float64 NumPy.
    import jax.numpy as jnp

    from jaxflow import mlp

    k_init, k_x = jax.random.split(key)
    a, b = np.asarray(jax.random.normal(k_x, (2, width)), np.float64)
    a /= np.linalg.norm(a)
    b -= (a @ b) * a
    b /= np.linalg.norm(b)
    x = np.stack([a, 0.5 * a + math.sqrt(0.75) * b]) * math.sqrt(width)
    model = mlp(depth, width, activation="relu", init="he", use_bias=False)
    kernels = np.asarray(
        model.init(k_init, jnp.asarray(x, jnp.float32))["params"]["blocks"]["Dense_0"]["kernel"],
        np.float64,
    )
    h, dead = x, []
    for kernel in kernels:
        z = h @ kernel
        dead.append(np.mean(np.all(z <= 0, axis=0)))
        h = np.maximum(z, 0)
    np.testing.assert_allclose(measured, dead, atol=1.5 / width)  # at most a unit on the boundary


@pytest.fixture(scope="module")
def deep_result():
    return dead_relu_fraction(depth=12, width=256, seeds=32, key=jax.random.key(7))


def test_measured_fractions_follow_the_prediction(deep_result):
    """Within 4 standard errors per layer and for the layer-mean, seeds as the replicates."""
    result = deep_result
    z, pooled = result.z_scores()
    sigmas = tol("float32", "z")
    assert np.all(np.abs(z) <= sigmas) and abs(pooled) <= sigmas, (z, pooled)
    assert result.agrees()
    # The s.e. is the seeds' spread, never below the binomial one (units share their input, so
    # the spread is the binomial one times a design effect ≥ 1).
    binomial = np.sqrt(result.predicted * (1 - result.predicted) / (result.width * 32))
    assert np.all(result.error > 0.6 * binomial) and np.all(result.error < 2 * binomial)
    assert result.predicted[0] == pytest.approx(1 / 3)  # ρ = 1/2: 1/4 + (π/6)/(2π)
    assert np.all(np.diff(result.predicted) > 0) and result.predicted[-1] < 0.5


def test_the_check_fails_for_a_wrong_theory(deep_result):
    """The check has power: a prediction off by 20 % of its rise over 12 layers, a correlation
    map that stands still (the linear network's: 1/3 at every layer) or one that moves 20 % too
    slowly all fail it."""
    result = deep_result
    predicted = result.predicted
    rise = predicted[-1] - predicted[0]
    wrong = {
        "shifted up": predicted + 0.2 * rise,
        "shifted down": predicted - 0.2 * rise,
        "no correlation map": np.full_like(predicted, 1 / 3),
        "20% less rise": predicted[0] + 0.8 * (predicted - predicted[0]),
    }
    for name, prediction in wrong.items():
        assert not result.agrees(prediction), name
        assert abs(result.z_scores(prediction)[1]) > 1.5 * tol("float32", "z"), name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"correlation": 1.0}, "correlation=1.0"),
        ({"depth": 1}, "depth=1"),
        ({"seeds": 0}, "seeds=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dead_relu_fraction(**kwargs)

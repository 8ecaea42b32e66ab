"""Initialisers: variances against the published formulas, orthogonality, the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from helpers import tol

FAN_IN, FAN_OUT, SAMPLES = 256, 128, 64


def _draw(init, shape=(FAN_IN, FAN_OUT), dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(0), SAMPLES)
    return np.asarray(jax.vmap(lambda k: init(k, shape, dtype))(keys), np.float64)


# (name, expected variance, distribution): Glorot & Bengio 2010, He et al. 2015, LeCun 1998.
CASES = [
    ("xavier", 2 / (FAN_IN + FAN_OUT), "normal"),
    ("glorot", 2 / (FAN_IN + FAN_OUT), "normal"),
    ("xavier_uniform", 2 / (FAN_IN + FAN_OUT), "uniform"),
    ("he", 2 / FAN_IN, "normal"),
    ("kaiming", 2 / FAN_IN, "normal"),
    ("he_uniform", 2 / FAN_IN, "uniform"),
    ("lecun", 1 / FAN_IN, "normal"),
]


@pytest.mark.parametrize("name, variance, distribution", CASES)
def test_variance_matches_formula(name, variance, distribution):
    w = _draw(jf.get_init(name).kernel_init)
    n = w.size
    # The sample variance of n i.i.d. draws has standard error variance·√((κ − 1)/n), with
    # kurtosis κ = 3 (normal) or 9/5 (uniform); allow 5 standard errors.
    kurtosis = 3.0 if distribution == "normal" else 1.8
    assert abs(w.var() - variance) < 5 * variance * np.sqrt((kurtosis - 1) / n)
    assert abs(w.mean()) < 5 * np.sqrt(variance / n)
    if distribution == "uniform":
        assert np.abs(w).max() <= np.sqrt(3 * variance) * (1 + 1e-6)
    else:  # untruncated: tails beyond 3σ exist (P ≈ 0.27%)
        assert np.mean(np.abs(w) > 3 * np.sqrt(variance)) == pytest.approx(0.0027, abs=5e-4)


@pytest.mark.parametrize("gain", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_orthogonal(gain, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        w = jf.orthogonal(gain)(jax.random.key(1), (64, 64), dtype)
        assert w.dtype == dtype
        w = np.asarray(w, np.float64)
    np.testing.assert_allclose(w.T @ w, gain**2 * np.eye(64), atol=tol(dtype, "orthogonal") * gain**2)


def test_gaussian_scheme_variances():
    scheme = jf.gaussian(1.7, 0.3)
    w = _draw(scheme.kernel_init)
    b = _draw(scheme.bias_init, shape=(FAN_OUT,))
    assert abs(w.var() - 1.7 / FAN_IN) < 5 * (1.7 / FAN_IN) * np.sqrt(2 / w.size)
    assert abs(b.var() - 0.3) < 5 * 0.3 * np.sqrt(2 / b.size)
    assert (scheme.sigma_w2, scheme.sigma_b2) == (1.7, 0.3)


def test_gaussian_accepts_traced_variances():
    draw = jax.jit(lambda s: jf.gaussian(s, 0.0).kernel_init(jax.random.key(0), (512, 512)))
    assert float(draw(2.0).var() * 512) == pytest.approx(2.0, rel=0.02)


def test_mean_field_variances_of_named_schemes():
    assert [jf.get_init(n).sigma_w2 for n in ("xavier", "he", "lecun", "orthogonal")] == [1, 2, 1, 1]
    assert jf.get_init("orthogonal").orthogonal and not jf.get_init("he").orthogonal


def test_pair_means_gaussian():
    assert jf.get_init((2.0, 0.1)).name == "gaussian"


@pytest.mark.parametrize("bad", [(-1.0, 0.0), (0.0, 0.0), (1.0, -0.1), (float("nan"), 0.0)])
def test_gaussian_rejects_bad_variances(bad):
    with pytest.raises(ValueError, match="variance"):
        jf.gaussian(*bad)


@pytest.mark.parametrize("bad", ["xaviar", 3, (1.0,), None])
def test_unknown_init_lists_valid(bad):
    with pytest.raises(ValueError, match="orthogonal"):
        jf.get_init(bad)

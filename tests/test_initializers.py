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
    ("pytorch", 1 / (3 * FAN_IN), "uniform"),  # kaiming_uniform(a=√5): bound 1/√fan_in
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
    np.testing.assert_allclose(
        w.T @ w, gain**2 * np.eye(64), atol=tol(dtype, "orthogonal") * gain**2
    )


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
    assert [jf.get_init(n).sigma_w2 for n in ("xavier", "he", "lecun", "orthogonal")] == [
        1,
        2,
        1,
        1,
    ]
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


# Kurtosis E[w⁴]/E[w²]² of each i.i.d. family: normal 3, uniform 9/5.
KURTOSIS = {"normal": 3.0, "uniform": 1.8}
SCHEMES = [jf.get_init(n) for n in sorted(jf.INIT_SCHEMES)] + [jf.gaussian(1.7, 0.3)]


def check_draws(draws, family, variance, what):
    """Asserts that i.i.d. draws (samples, ...) are of ``family`` with entry variance ``variance``.

    Orthogonal draws are checked for W Wᵀ or WᵀW = scale·I (whichever is square), with the
    scale read off the mean square of the entries, which for a Haar-orthogonal (m, n) matrix is
    gain²/max(m, n).
    """
    if family == "orthogonal":
        m, n = draws.shape[-2:]
        gram = (
            np.einsum("sij,sik->sjk", draws, draws)
            if m >= n
            else np.einsum("sji,ski->sjk", draws, draws)
        )
        gain2 = variance * max(m, n)
        np.testing.assert_allclose(
            gram,
            np.broadcast_to(gain2 * np.eye(min(m, n)), gram.shape),
            atol=tol("float32", "orthogonal") * max(gain2, 1),
            err_msg=what,
        )
        return
    w = draws.ravel()
    n = w.size
    kurtosis = KURTOSIS[family]
    sigmas = tol("float32", "monte_carlo_sigmas")
    assert abs(w.var() - variance) < sigmas * variance * np.sqrt((kurtosis - 1) / n), what
    assert abs(w.mean()) < sigmas * np.sqrt(variance / n), what
    # The sample kurtosis tells the families apart: its standard error is below 0.01 here.
    assert abs(np.mean(w**4) / np.mean(w**2) ** 2 - kurtosis) < 0.1, what
    if family == "uniform":
        assert np.abs(w).max() <= np.sqrt(3 * variance) * (1 + 1e-6), what


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
@pytest.mark.parametrize("fan_in, fan_out", [(FAN_IN, FAN_OUT), (FAN_OUT, FAN_IN)])
def test_every_scheme_draws_what_it_describes(scheme, fan_in, fan_out):
    assert scheme.family in ("normal", "uniform", "orthogonal")
    assert scheme.orthogonal == (scheme.family == "orthogonal")
    w = _draw(scheme.kernel_init, (fan_in, fan_out))
    check_draws(w, scheme.family, scheme.kernel_variance(fan_in, fan_out), f"{scheme.name} W")
    # σ_w² is fan_in·Var(W) of a square layer.
    assert scheme.kernel_variance(fan_in, fan_in) * fan_in == pytest.approx(scheme.sigma_w2)
    layer = scheme.for_fan_in(fan_in)
    b = _draw(layer.bias_init, (fan_out,))
    if scheme.bias_family == "zeros":
        assert not b.any() and scheme.bias_variance(fan_in) == 0
    else:
        check_draws(b, scheme.bias_family, scheme.bias_variance(fan_in), f"{scheme.name} b")
        assert layer.sigma_b2 == pytest.approx(scheme.bias_variance(fan_in))


def test_pytorch_is_the_nn_linear_default():
    # torch.nn.Linear.reset_parameters: kaiming_uniform_(a=√5) ⇒ bound gain·√(3/fan_in) with
    # gain² = 2/(1 + a²) = 1/3, i.e. 1/√fan_in; the bias bound is 1/√fan_in too.
    scheme = jf.get_init("pytorch")
    assert scheme.sigma_w2 == pytest.approx(1 / 3) and scheme.family == "uniform"
    layer = scheme.for_fan_in(16)
    b = _draw(layer.bias_init, (4,))
    assert np.abs(b).max() <= 0.25 and np.abs(b).max() > 0.24
    assert layer.sigma_b2 == pytest.approx(1 / 48) and scheme.sigma_b2 == 0.0


def test_models_give_each_pytorch_bias_its_own_fan_in():
    model = jf.mlp(depth=2, width=64, in_dim=16, out_dim=1, init="pytorch")
    keys = jax.random.split(jax.random.key(0), 200)
    params = jax.vmap(lambda k: model.init(k, jnp.ones(16)))(keys)["params"]
    for edge, fan_in in (("input", 16), ("readout", 64)):
        b = np.abs(np.asarray(params[edge]["bias"]))
        assert b.max() <= 1 / np.sqrt(fan_in) and b.max() > 0.9 / np.sqrt(fan_in), edge

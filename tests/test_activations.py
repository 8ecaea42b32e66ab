"""The activation table against autodiff, its own output form, and its supremum."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special

import jaxflow as jf
from helpers import tol

NAMES = sorted(jf.ACTIVATIONS)
REQUIRED = {
    "relu", "leaky_relu", "sigmoid", "tanh", "hard_tanh", "erf", "gelu", "silu", "elu",
    "softplus", "linear",
}  # fmt: skip
# A dense grid that contains every kink exactly (0, ±1 are multiples of the step).
GRID = jnp.linspace(-8.0, 8.0, 16001)


def test_registry_has_required_entries():
    assert REQUIRED <= set(jf.ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_equals_autodiff(name):
    act = jf.get_activation(name)
    auto = jax.vmap(jax.grad(act.fn))(GRID)
    np.testing.assert_allclose(
        act.derivative(GRID), auto, rtol=tol("float32", "elementwise"), atol=1e-7
    )


@pytest.mark.parametrize("name", NAMES)
def test_derivative_equals_autodiff_at_kinks(name):
    act = jf.get_activation(name)
    for kink in act.kinks:
        assert float(act.derivative(jnp.float32(kink))) == float(
            jax.grad(act.fn)(jnp.float32(kink))
        )


@pytest.mark.parametrize("name", [n for n in NAMES if jf.ACTIVATIONS[n].derivative_from_output])
def test_output_form_equals_preactivation_form(name):
    act = jf.get_activation(name)
    with jax.enable_x64(True):
        z = jnp.linspace(-8.0, 8.0, 16001, dtype=jnp.float64)
        np.testing.assert_allclose(
            act.derivative_from_output(act.fn(z)), act.derivative(z), rtol=1e-9, atol=1e-12
        )


def test_notes_table_output_forms():
    a = jnp.array([0.0, 0.2, 0.5, 0.9])
    np.testing.assert_allclose(jf.ACTIVATIONS["sigmoid"].derivative_from_output(a), a * (1 - a))
    np.testing.assert_allclose(jf.ACTIVATIONS["tanh"].derivative_from_output(a), 1 - a**2)
    np.testing.assert_array_equal(jf.ACTIVATIONS["relu"].derivative_from_output(a), [0, 1, 1, 1])


@pytest.mark.parametrize("name", NAMES)
def test_sup_derivative_is_not_exceeded_and_is_attained(name):
    act = jf.get_activation(name)
    with jax.enable_x64(True):
        z = jnp.linspace(-40.0, 40.0, 800001, dtype=jnp.float64)
        d = jnp.abs(act.derivative(z))
        assert float(d.max()) <= act.sup_derivative * (1 + 1e-12)
        if act.argsup is None:  # approached as z → ∞ only
            assert float(d.max()) >= act.sup_derivative * (1 - 1e-12)
            assert float(d.max()) < act.sup_derivative or float(z[jnp.argmax(d)]) > 20
        else:
            attained = float(jnp.abs(act.derivative(jnp.float64(act.argsup))))
            assert attained == pytest.approx(act.sup_derivative, rel=1e-12)


def test_published_sups():
    assert jf.ACTIVATIONS["sigmoid"].sup_derivative == 0.25
    assert jf.ACTIVATIONS["tanh"].sup_derivative == 1.0
    assert jf.ACTIVATIONS["relu"].sup_derivative == 1.0
    assert jf.ACTIVATIONS["erf"].sup_derivative == pytest.approx(2 / math.sqrt(math.pi), rel=1e-15)


@pytest.mark.parametrize(
    "name, dphi",
    [
        ("silu", lambda z: special.expit(z) * (1 + z * (1 - special.expit(z)))),
        ("gelu", lambda z: special.ndtr(z) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)),
    ],
)
def test_smooth_sups_against_scipy(name, dphi):
    result = optimize.minimize_scalar(lambda z: -dphi(z), bounds=(0.5, 5.0), method="bounded",
                                      options={"xatol": 1e-12})  # fmt: skip
    assert jf.ACTIVATIONS[name].sup_derivative == pytest.approx(-result.fun, rel=1e-12)


def test_relu_kink_convention():
    assert float(jf.ACTIVATIONS["relu"].derivative(0.0)) == 0.0
    assert float(jf.ACTIVATIONS["hard_tanh"].derivative(1.0)) == 0.0


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are: elu, erf"):
        jf.get_activation("swish")

"""The one-sided Jacobi SVD (values only) against float64 NumPy on explicit matrices.

The rule (tests/helpers.py ``sv_mixed_error``): every σ_i within 1e-4·σ_i + n·ε·σ_max of
``np.linalg.svd`` of the same float32 matrix taken in float64 — relative 1e-4 on every singular
value above the float32 floor n·ε·σ_max (the floor of the sweeps' ``P_resolved``), which is what a
backward-stable float32 SVD resolves: on the κ = 10⁶ matrices below, LAPACK's own float32 SVD is
off by up to 2e-3 relative at σ_i ≈ n·ε·σ_max, both methods by a few ε·σ_max absolute.
Row-graded matrices are held to 1e-4 relative on *every* singular value (Demmel & Veselić 1992).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from helpers import sv_mixed_error, tol
from jaxflow.spectra import jacobi_singular_values

# Width 256 (~4 s of Jacobi sweeps on 2 cores) runs in the slow pass.
WIDTHS = (32, 64, 128, pytest.param(256, marks=pytest.mark.slow))
KINDS = ("gaussian", "cond1e6", "graded_rows", "zero_rows")


def _haar(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _matrix(kind, n, rng):
    g = rng.standard_normal((n, n))
    if kind == "gaussian":
        return g
    if kind == "cond1e6":  # σ log-spaced from 1 to 1e-6, random singular vectors
        return _haar(rng, n) @ np.diag(np.logspace(0, -6, n)) @ _haar(rng, n).T
    if kind == "graded_rows":  # rows scaled from 1 to 1e-12: σ spans 12 decades
        return np.diag(np.logspace(0, -12, n)) @ g
    g[rng.random(n) < 0.5] = 0  # ReLU units off: exact zero rows, rank ~n/2
    return g


@functools.cache
def _batch(n):
    """Every kind at width n (float32, as given to the SVD) and their singular values, one call."""
    rng = np.random.default_rng(n)
    a = np.stack([_matrix(kind, n, rng) for kind in KINDS]).astype(np.float32)
    return a, np.asarray(jax.jit(jacobi_singular_values)(a))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", WIDTHS)
def test_matches_float64_numpy(n, kind):
    a, s = _batch(n)
    k = KINDS.index(kind)
    assert s.shape == (len(KINDS), n) and s.dtype == np.float32
    assert np.all(np.diff(s[k]) <= 0)  # descending
    assert sv_mixed_error(s[k], a[k], np.float32) <= 1


@pytest.mark.parametrize("n", WIDTHS)
def test_row_graded_matrices_keep_every_singular_value(n):
    a, s = _batch(n)
    k = KINDS.index("graded_rows")
    ref = np.linalg.svd(a[k].astype(np.float64), compute_uv=False)
    assert ref[-1] < 1e-11 * ref[0]
    np.testing.assert_allclose(s[k], ref, rtol=tol(np.float32, "svd_relative"), atol=0)


def test_zero_rows_give_exact_zeros():
    a, s = _batch(32)
    k = KINDS.index("zero_rows")
    rank = int(np.sum(np.any(a[k] != 0, axis=1)))
    assert np.all(s[k, rank:] == 0) and np.all(s[k, :rank] > 0)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (5, 5), (7, 3), (3, 7), (2, 9, 4), (33, 33)])
def test_odd_and_rectangular_shapes(shape):
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    s = np.asarray(jacobi_singular_values(a))
    assert s.shape == shape[:-2] + (min(shape[-2:]),)
    assert sv_mixed_error(s, a, np.float32) <= 1


def test_closed_form():
    # [[3, 0], [4, 5]]: σ² are the roots of λ² − 50λ + 225, i.e. 45 and 5.
    s = jacobi_singular_values(jnp.array([[3.0, 0.0], [4.0, 5.0]]))
    np.testing.assert_allclose(s, np.sqrt([45.0, 5.0]), rtol=tol(np.float32, "elementwise"))


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_any_scale(scale):
    # Sums of squares of 1e-30 underflow and of 1e30 overflow float32: the power-of-two scaling
    # keeps both relative accuracies.
    a = (np.random.default_rng(1).standard_normal((16, 16)) * scale).astype(np.float32)
    s = jacobi_singular_values(jnp.asarray(a))
    assert np.all(np.isfinite(s)) and np.all(s > 0)
    assert sv_mixed_error(s, a, np.float32) <= 1


def test_zero_matrix():
    assert np.all(np.asarray(jacobi_singular_values(jnp.zeros((2, 4, 4)))) == 0)


def test_vmap_equals_batch():
    a = jnp.asarray(np.random.default_rng(2).standard_normal((3, 8, 8)), jnp.float32)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(jacobi_singular_values))(a), jax.jit(jacobi_singular_values)(a)
    )


def test_float64():
    with jax.enable_x64(True):
        a = np.random.default_rng(3).standard_normal((2, 64, 64))
        s = jacobi_singular_values(jnp.asarray(a))
        assert s.dtype == jnp.float64
        assert sv_mixed_error(s, a, np.float64) <= 1


def test_a_looser_tol_stops_sooner_within_its_accuracy():
    a = np.random.default_rng(4).standard_normal((4, 32, 32)).astype(np.float32)
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    loose = np.asarray(jacobi_singular_values(a, tol=1e-3), np.float64)
    # Rows within 1e-3 of orthogonal: each σ_i within ~tol·σ_max of the converged value.
    assert np.max(np.abs(loose - ref) / ref[:, :1]) <= 1e-3


def test_is_public():
    assert jf.jacobi_singular_values is jacobi_singular_values


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: jacobi_singular_values(jnp.ones(3)), ValueError, r"a: shape \(3,\)"),
        (lambda: jacobi_singular_values(jnp.ones((2, 2), int)), TypeError, "a: dtype int"),
        (lambda: jacobi_singular_values(jnp.ones((2, 2)), max_sweeps=0), ValueError, "max_sweeps"),
        (lambda: jacobi_singular_values(jnp.ones((2, 2)), tol=-1e-3), ValueError, r"tol=-0.001"),
        (lambda: jacobi_singular_values(jnp.ones((2, 2)), tol="0"), ValueError, r"tol='0'"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()

"""Stable log-spectra at any depth and matrix-free estimates, against independent references.

References: NumPy float64 products and SVDs of explicit J_l (tests/helpers.py), mpmath products
with hundreds of digits (no underflow at any depth), float64 log-determinants and vector growth,
and Newman's (1986) closed form for Gaussian products, whose Monte-Carlo error is derived exactly
(Bartlett decomposition) rather than estimated.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jaxflow as jf
from helpers import mp_log_singular_values, np_log_growth, np_mlp_chain, np_residual_chain, tol
from jaxflow.plotting import plot_log_singular_values, plot_lyapunov_spectrum, save_figure

F32 = "float32"
EPS32 = float(np.finfo(np.float32).eps)
WIDTH = 8  # 16 for the ReLU MLP, whose product's rank is the fewest units on so far
DEPTH = 10_000  # one scan at this depth answers every smaller one (block l depends on l only)
SHALLOW = 100  # where float64 / mpmath references are taken
METHODS = ("svd", "graded", "qr")

# Four families; each forward pass stays finite in float32 for 10,000 layers (the residual
# branch is scaled so that ‖h_l‖ grows only to ~1e10).
CHAINS = {
    "sigmoid": (jf.mlp(DEPTH, WIDTH, activation="sigmoid", init="xavier"), "sigmoid"),
    "tanh": (jf.mlp(DEPTH, WIDTH, activation="tanh", init="xavier"), "tanh"),
    "relu": (jf.mlp(DEPTH, 2 * WIDTH, activation="relu", init=(1.8, 0.2)), "relu"),
    "residual": (jf.residual_stack(DEPTH, WIDTH, activation="relu", init=(0.1, 0.0)), "relu"),
}
FULL_RANK = ("sigmoid", "tanh", "residual")  # a ReLU MLP's product is exactly singular


def _slack(values, layer):
    """What two float32 sums of the n logs at ``layer`` may differ by: the spectrum tolerance, a
    few ulps of each finite |ln σ| (float32 stores ln σ ≈ −3·10⁴ to about 2e-3), and the
    rounding of n logs per layer accumulated over ``layer`` layers."""
    magnitude = np.sum(np.where(np.isfinite(values), np.abs(values), 0), axis=-1)
    accumulated = tol(F32, "log_per_layer") * values.shape[-1] * np.asarray(layer)
    return tol(F32, "log_spectrum") + tol(F32, "log_rounding") * magnitude + accumulated


@functools.cache
def _chain(name):
    """Every method at every one of the 10,000 layers (one compiled call), and the float64 J_l."""
    model, activation = CHAINS[name]
    x = jax.random.normal(jax.random.key(1), (model.width,))
    variables = model.init(jax.random.key(0), x)
    spectra = jax.jit(lambda v, x: {m: jf.log_spectrum(model, v, x, method=m) for m in METHODS})(
        variables, x
    )
    if name == "residual":
        layers, _, _ = np_residual_chain(variables, x, activation)
    else:
        layers, _, _ = np_mlp_chain(variables["params"], x, activation)
    values = {m: np.asarray(s.values, np.float64) for m, s in spectra.items()}
    finite = {m: bool(s.finite) for m, s in spectra.items()}
    return values, finite, layers


@functools.cache
def _float64_products(name):
    _, _, layers = _chain(name)
    products, P = [], np.eye(layers.shape[-1])
    for J in layers[:SHALLOW]:
        P = J @ P
        products.append(P)
    return np.stack(products)


def _rank(name):
    """rank(P_l) = min_{m ≤ l} (active units at layer m): J_m = diag(φ′) W_m has a zero row per
    unit that is off, and with Gaussian weights nothing else is singular."""
    _, _, layers = _chain(name)
    active = np.sum(np.any(layers != 0, axis=2), axis=1)
    return np.minimum.accumulate(active)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_graded_matches_float64_svd_where_representable(name):
    values, _, _ = _chain(name)
    reference = np.linalg.svd(_float64_products(name), compute_uv=False)
    # The float64 product carries an absolute error ~ l·n·ε₆₄·σ₁, so σ_i is trusted to 1e-4
    # relative only above that times 1e4; and only while σ₁ itself is a normal float64.
    floor = SHALLOW * reference.shape[-1] * np.finfo(np.float64).eps * 1e4
    top = reference[:, :1]
    resolved = (reference >= top * floor) & (top > np.finfo(np.float64).tiny / floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(values["graded"][:SHALLOW] - np.log(reference))
    assert resolved[:, 0].sum() >= min(SHALLOW, int(np.sum(_rank(name)[:SHALLOW] > 0)))
    assert np.max(error[resolved]) <= tol(F32, "log_spectrum")
    if name == "sigmoid":
        # Past layer ~60 float32 has underflowed (the plain path is −inf) while float64 and the
        # graded path still agree: the point of the graded product.
        plain_lost = ~np.isfinite(values["svd"][:SHALLOW, 0])
        assert np.sum(plain_lost & resolved[:, 0]) >= 20


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("layer", [5, 30, SHALLOW])
def test_graded_full_spectrum_matches_mpmath(name, layer):
    """All n values, however far below σ₁ (at layer 100 the sigmoid chain spans e^-145…e^-304)."""
    values, _, layers = _chain(name)
    graded = values["graded"][layer - 1]
    rank = _rank(name)[layer - 1]
    reference = mp_log_singular_values(layers[:layer])
    np.testing.assert_array_less(np.abs(graded[:rank] - reference[:rank]), tol(F32, "log_spectrum"))
    # Exact zeros (units that are off) are exact: −inf, not rounding.
    assert np.all(np.isneginf(graded[rank:]))


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_plain_svd_agrees_where_float32_resolves(name):
    values, _, _ = _chain(name)
    plain, graded = values["svd"], values["graded"]
    # float32's SVD is accurate to n·ε·σ₁ absolute: compare σ_i ≥ σ₁·n·ε·1e4 (1e-4 relative),
    # and only while σ_i² is a normal float32 (the SVD squares entries; below √tiny they go).
    floor = np.log(plain.shape[-1] * EPS32 * tol(F32, "svd_floor"))
    compare = (plain >= plain[:, :1] + floor) & (plain > 0.5 * np.log(np.finfo(np.float32).tiny))
    assert compare[0, 0] and compare.sum() >= 50
    with np.errstate(invalid="ignore"):  # −inf − (−inf) where both are zero or underflowed
        error = np.abs(plain - graded)
    assert np.max(error[compare]) <= tol(F32, "log_spectrum")


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_qr_sums_are_majorised_and_share_the_log_determinant(name):
    """Σ_{i≤k} ln|R_ii| = ln vol_k(P_l e_1…e_k) ≤ Σ_{i≤k} ln σ_i(P_l), equal at k = n, where both
    are ln|det P_l| = Σ_{m≤l} ln|det J_m| (float64 slogdet of the explicit J_m)."""
    values, _, layers = _chain(name)
    qr, graded = values["qr"], values["graded"]
    depth = np.arange(1, len(graded) + 1)
    slack = _slack(graded, depth)[:, None]
    with np.errstate(invalid="ignore"):
        assert np.all(np.cumsum(qr, axis=1) <= np.cumsum(graded, axis=1) + slack)
    log_det = np.cumsum(np.linalg.slogdet(layers)[1])
    for spectrum in (qr, graded):
        total = spectrum.sum(axis=1)
        both_zero = np.isneginf(total) & np.isneginf(log_det)
        with np.errstate(invalid="ignore"):
            assert np.all(both_zero | (np.abs(total - log_det) <= _slack(graded, depth)))


@pytest.mark.parametrize("name", FULL_RANK)
def test_every_value_finite_at_depth_10000(name):
    values, finite, layers = _chain(name)
    assert finite["graded"] and finite["qr"]
    if name == "sigmoid":
        assert not finite["svd"]  # the plain product underflowed long before
    assert np.all(np.isfinite(values["graded"])) and np.all(np.isfinite(values["qr"]))
    assert np.all(np.diff(values["graded"], axis=1) <= 0)  # descending
    # ln‖P_L v‖ ≤ ln σ₁(P_L), and for a random v not much less (|⟨v̂, v₁⟩| > e^-8 unless unlucky).
    v = np.random.default_rng(0).normal(size=layers.shape[-1])
    growth = np_log_growth(layers, v) - np.log(np.linalg.norm(v))
    top = values["graded"][-1, 0]
    assert growth <= top + _slack(values["graded"][-1], DEPTH)
    assert growth >= top - 8
    # Graded and QR estimates of ln σ differ by O(1) at any depth (Oseledets), not O(L).
    assert np.max(np.abs(values["graded"][-1] - values["qr"][-1])) < 20


def test_pivoting_when_the_leading_direction_moves():
    """J_1 = diag(1, e^20, 1, 1) puts the largest scale on the second column; the next layer's
    QR must pivot it first (Loh et al. 1992), or the off-diagonal ratios d_j/d_i ~ e^20 drown
    the small directions in rounding (without pivoting the smallest value is off by ~15)."""
    rng = np.random.default_rng(1)
    layers = np.stack(
        [np.diag([1.0, np.exp(20.0), 1.0, 1.0])] + [rng.normal(size=(4, 4)) for _ in range(5)]
    )
    layers = layers.astype(np.float32)
    spectrum = jf.log_spectrum(
        lambda w, h: jnp.matmul(w, h, precision="highest"), layers, jnp.ones(4), layers="last"
    )
    reference = mp_log_singular_values(layers.astype(np.float64))
    assert np.max(np.abs(np.asarray(spectrum.values[0]) - reference)) <= tol(F32, "log_spectrum")


def test_relu_product_rank_is_exact_at_every_depth():
    """A ReLU MLP's P_l is exactly singular: its zero singular values are −inf, the rest finite."""
    values, finite, _ = _chain("relu")
    rank = _rank("relu")
    assert rank[0] >= 8 and 1 <= rank[-1] < rank[0]  # it falls with depth, here to 1
    for method in ("graded", "qr"):
        np.testing.assert_array_equal(np.sum(np.isfinite(values[method]), axis=1), rank)
    assert not finite["graded"]


def _newman(N):
    """λ_i = ½[ln 2 + ψ((N−i+1)/2)] − ½ ln N, and the exact per-layer variance of ln|R_ii|.

    J Q is again Gaussian (rotation invariance), so by Bartlett's decomposition R_ii² ~
    χ²_{N−i+1}/N, independent over i and over layers: ln|R_ii| has mean λ_i and variance
    ¼ψ′((N−i+1)/2) exactly.
    """
    k = (N - np.arange(1, N + 1) + 1) / 2
    return 0.5 * (np.log(2) + special.digamma(k)) - 0.5 * np.log(N), 0.25 * special.polygamma(1, k)


def test_gaussian_products_follow_newman():
    N, L = 8, 2000
    ws = jax.random.normal(jax.random.key(0), (L, N, N)) / np.sqrt(N)

    def block(w, h):
        return jnp.matmul(w, h, precision="highest")

    lyapunov, graded = jax.jit(
        lambda ws, h: (
            jf.lyapunov_exponents(block, ws, h),
            jf.log_spectrum(block, ws, h, layers="last").values[0],
        )
    )(ws, jnp.ones(N))
    exact, variance = _newman(N)
    se = np.sqrt(variance / L)
    z = (np.asarray(lyapunov.exponents, np.float64) - exact) / se
    assert np.max(np.abs(z)) <= tol(F32, "z")
    assert np.sum(z**2) <= stats.chi2.ppf(0.999, N)  # independent over i, so Σz² ~ χ²_N
    # 20 batch means: the estimated error is within a factor 2 of the exact one (its relative
    # spread is 1/√38 ≈ 0.16).
    ratio = np.asarray(lyapunov.standard_error) / se
    assert np.all((ratio > 0.5) & (ratio < 2))
    # ln σ_i(P_L)/L has the same limit; it differs from the QR sums by O(1)/L.
    graded = np.asarray(graded, np.float64) / L
    assert np.max(np.abs(graded - exact) - tol(F32, "z") * se) <= 20 / L


def test_float64_graded_matches_mpmath():
    """Under x64 the same code is float64 throughout and agrees with mpmath to 1e-9."""
    with jax.enable_x64(True):
        ws = jax.random.normal(jax.random.key(0), (60, 6, 6), jnp.float64) / np.sqrt(6)
        h0 = jax.random.normal(jax.random.key(1), (6,), jnp.float64)
        spectrum = jf.log_spectrum(_tanh_block, ws, h0, layers="last")
        assert spectrum.values.dtype == jnp.float64
    layers, h = [], np.asarray(h0, np.float64)
    for w in np.asarray(ws, np.float64):  # J_l = diag(1 − tanh²(W h)) W, in float64
        h = np.tanh(w @ h)
        layers.append((1 - h**2)[:, None] * w)
    reference = mp_log_singular_values(np.stack(layers))
    assert np.ptp(reference) > 60  # far beyond what a float64 SVD of the product resolves
    assert np.max(np.abs(np.asarray(spectrum.values[0]) - reference)) <= tol(
        "float64", "log_spectrum"
    )


def _tanh_block(w, h):
    return jnp.tanh(jnp.matmul(w, h, precision="highest"))


def test_selected_layers_batches_and_no_recompilation():
    """Selection, batching and tracing are shared by every method: checked on the cheap "qr"
    path, with the graded one vmapped over two parameter sets."""
    ws = jax.random.normal(jax.random.key(3), (2, 30, 4, 4)) / 2
    hs = jax.random.normal(jax.random.key(4), (2, 4))
    traces = []

    @jax.jit
    def spectra(ws, h, hs):
        traces.append(1)
        return (
            jf.log_spectrum(_tanh_block, ws[0], h, method="qr"),
            jf.log_spectrum(_tanh_block, ws[0], h, method="qr", layers=(3, 30)),
            jf.log_spectrum(_tanh_block, ws[0], hs, method="qr", layers="last"),
            jax.vmap(lambda w: jf.log_spectrum(_tanh_block, w, h, layers=(30, 3)))(ws),
        )

    every, selected, batched, graded = spectra(ws, hs[0], hs)
    assert every.values.shape == (30, 4) and every.layers.tolist() == list(range(1, 31))
    np.testing.assert_allclose(selected.values, np.asarray(every.values)[[2, 29]], rtol=1e-6)
    assert selected.layers.tolist() == [3, 30] and batched.layers.tolist() == [[30], [30]]
    assert batched.values.shape == (2, 1, 4)  # a batch of inputs, each at its last layer
    np.testing.assert_allclose(batched.values[0], every.values[-1:], rtol=1e-6)
    # Parameter set 0 is the one above: its graded log-determinants are the QR ones.
    assert graded.values.shape == (2, 2, 4) and graded.layers[0].tolist() == [30, 3]
    np.testing.assert_allclose(
        graded.values[0].sum(axis=1), np.asarray(every.values)[[29, 2]].sum(axis=1), rtol=1e-5
    )
    assert not np.allclose(graded.values[1], graded.values[0])
    moved = spectra(ws + 0.1, hs[1], hs + 1.0)  # new values, same shapes: no new trace
    assert len(traces) == 1
    assert not np.allclose(moved[0].values, every.values)


def test_overflowed_forward_pass_is_not_finite():
    """h_l overflowing leaves finite Jacobians that no longer describe the network (a residual
    ReLU stack at He scale overflows by layer ~200 and then has φ′(NaN) = 0); the result says so.
    Here h_l = 2^l h_0 overflows at l = 128 while every J_l = 2I is finite."""
    ws = jnp.stack([2 * jnp.eye(3)] * 200)
    spectrum = jf.log_spectrum(lambda w, h: w @ h, ws, jnp.ones(3), method="qr", layers="last")
    np.testing.assert_allclose(spectrum.values, np.full((1, 3), 200 * np.log(2)), rtol=1e-6)
    assert not bool(spectrum.finite)


def test_accumulate_chain_is_the_one_scan():
    """The products reduction carries P_l as its state; mode="linear" hands J_l over as
    the map v ↦ J_l v."""
    model = jf.mlp(5, 6, activation="tanh", init="xavier")
    x = jax.random.normal(jax.random.key(1), (6,))
    variables = model.init(jax.random.key(0), x)
    stack = model.decompose(variables)
    dense, _, _ = np_mlp_chain(variables["params"], x, "tanh")
    v = jax.random.normal(jax.random.key(2), (6,))

    @jax.jit
    def both(x):
        linear = jf.accumulate_chain(
            stack.block_fn, stack.blocks, x, 0, lambda J, c: c + 1, lambda J, c: J(v), mode="linear"
        )
        h2, _, products = jf.accumulate_chain(stack.block_fn, stack.blocks, x, jf.chain.products())
        return linear, (h2, products)

    (h, count, jvps), (h2, products) = both(x)
    assert int(count) == 5
    np.testing.assert_allclose(jvps, np.einsum("lij,j->li", dense, v), rtol=1e-5, atol=1e-6)
    _, P, nothing = jax.eval_shape(
        lambda x: jf.accumulate_chain(
            stack.block_fn, stack.blocks, x, jnp.eye(6), lambda J, P: J @ P
        ),
        x,
    )
    assert nothing is None and P.shape == (6, 6)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_allclose(products[-1], np.linalg.multi_dot(dense[::-1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mode='jvp'"):
        jf.accumulate_chain(stack.block_fn, stack.blocks, x, None, lambda J, s: s, mode="jvp")


def test_bad_arguments_are_named():
    model = jf.mlp(5, 4)
    x = jnp.ones(4)
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="method='lu'"):
        jf.log_spectrum(model, variables, x, method="lu")
    for layers in (0, 6, (1, 7), 2.5, "first", ()):
        with pytest.raises(ValueError, match=r"layers=.*1 <= l <= 5|layers='first'"):
            jf.log_spectrum(model, variables, x, layers=layers)
    with pytest.raises(ValueError, match="batches=1"):
        jf.lyapunov_exponents(model, variables, x, batches=1)
    with pytest.raises(ValueError, match="batches=6"):
        jf.lyapunov_exponents(model, variables, x, batches=6)
    with pytest.raises(ValueError, match="x has shape"):
        jf.log_spectrum(model, variables, jnp.ones(3))
    with pytest.raises(ValueError, match="needs dim="):
        jf.top_singular_value(lambda v: v)
    with pytest.raises(ValueError, match="dim=0"):
        jf.mean_squared_singular_value(lambda v: v, key=jax.random.key(0), dim=0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        jf.top_singular_value(jnp.ones(3))
    with pytest.raises(ValueError, match="num_iters=0"):
        jf.top_singular_value(jnp.eye(3), num_iters=0)
    with pytest.raises(ValueError, match="num_probes=1"):
        jf.mean_squared_singular_value(jnp.eye(3), key=jax.random.key(0), num_probes=1)
    with pytest.raises(ValueError, match=r"v0 has shape \(2,\)"):
        jf.top_singular_value(jnp.eye(3), v0=jnp.ones(2))
    with pytest.raises(ValueError, match="key=None"):
        jf.mean_squared_singular_value(jnp.eye(3), key=None)
    with pytest.raises(ValueError, match="key=None"):
        jf.product_spectral_estimates(model, variables, x, key=None)
    with pytest.raises(ValueError, match="tol=0"):
        jf.top_singular_value(jnp.eye(3), tol=0)
    with pytest.raises(ValueError, match="mode='linear'"):
        jf.log_spectrum(model, variables, x, mode="linear")
    with pytest.raises(TypeError, match="must be a linear function"):
        jf.top_singular_value(jnp.tanh, dim=3)
    with pytest.raises(ValueError, match="one input"):
        jf.layer_spectral_estimates(model, variables, jnp.ones((2, 4)), key=jax.random.key(0))


# ---------------------------------------------------------------------------------------------
# Item 7: matrix-free estimates at width 256 against the dense path

WIDE = 256


@functools.cache
def _wide():
    model = jf.mlp(3, WIDE, activation="tanh", init="xavier")
    x = jax.random.normal(jax.random.key(1), (WIDE,))
    variables = model.init(jax.random.key(0), x)
    chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, x)
    return model, variables, x, chain


def _check_power_iteration(result, matrix):
    """σ̂ ≤ σ₁, and σ₁² − σ̂² ≤ ‖r‖²/(σ̂² − σ₂²) (Kato–Temple, r = JᵀJv − σ̂²v, ‖r‖ = σ̂·error),
    up to float32 rounding of ‖Jv‖; the reported error covers some singular value."""
    sv = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    sigma, error = float(result.sigma), float(result.error)
    assert bool(result.converged) and error <= 100 * EPS32 * sigma
    rounding = tol(F32, "power_iteration") * len(sv) * sv[0]
    kato_temple = (sigma * error) ** 2 / (sigma**2 - sv[1] ** 2) / (2 * sigma)
    assert sigma <= sv[0] + rounding
    assert sv[0] - sigma <= kato_temple + rounding
    assert np.min(np.abs(sv - sigma)) <= error + rounding
    assert abs(np.linalg.norm(np.asarray(result.vector)) - 1) < 1e-5


def _check_hutchinson(result, matrix, probes):
    """|estimate − (1/n)‖J‖_F²| ≤ z·SD, SD² = 2 Σ_{i≠j} (JᵀJ)_ij² / (p n²) exactly for Rademacher
    probes (Hutchinson 1989); the reported standard error is within a factor 2 of SD."""
    J = np.asarray(matrix, np.float64)
    n = J.shape[1]
    A = J.T @ J
    exact = np.trace(A) / n
    sd = np.sqrt(2 * (np.sum(A**2) - np.sum(np.diag(A) ** 2)) / probes) / n
    assert abs(float(result.value) - exact) <= tol(F32, "z") * sd
    assert 0.5 < float(result.standard_error) / sd < 2
    assert int(result.probes) == probes


def test_power_iteration_takes_a_matrix_or_a_matvec():
    _, _, _, chain = _wide()
    J = chain.layers[1]
    from_matrix = jf.top_singular_value(J, key=jax.random.key(0))
    from_matvec = jf.top_singular_value(lambda v: jnp.matmul(J, v, precision="highest"), dim=WIDE)
    for result in (from_matrix, from_matvec):
        _check_power_iteration(result, J)
    np.testing.assert_allclose(from_matrix.sigma, chain.layer_singular_values[1, 0], rtol=1e-5)


def test_hutchinson_takes_a_matrix_or_a_matvec():
    _, _, _, chain = _wide()
    J = chain.layers[2]
    key = jax.random.key(4)
    from_matrix = jf.mean_squared_singular_value(J, key=key, num_probes=200)
    from_matvec = jf.mean_squared_singular_value(lambda v: J @ v, key=key, num_probes=200, dim=WIDE)
    for result in (from_matrix, from_matvec):
        _check_hutchinson(result, J, 200)
    np.testing.assert_allclose(from_matrix.value, from_matvec.value, rtol=1e-5)


def test_network_estimates_match_the_dense_chain():
    model, variables, x, chain = _wide()
    key = jax.random.key(7)
    layers, product = jax.jit(
        lambda v, x: (
            jf.layer_spectral_estimates(model, v, x, key=key),
            jf.product_spectral_estimates(model, v, x, key=key),
        )
    )(variables, x)
    assert layers.top.sigma.shape == (3,) and layers.mean_squared.value.shape == (3,)
    for l in range(3):
        _check_power_iteration(jax.tree.map(lambda a: a[l], layers.top), chain.layers[l])
        _check_hutchinson(jax.tree.map(lambda a: a[l], layers.mean_squared), chain.layers[l], 100)
    _check_power_iteration(product.top, chain.products[-1])
    _check_hutchinson(product.mean_squared, chain.products[-1], 100)


@pytest.mark.slow
def test_network_estimates_at_width_1024():
    """Where the matrix-free path is meant to be used; the dense reference takes ~10× longer."""
    model = jf.mlp(3, 1024, activation="tanh", init="xavier")
    x = jax.random.normal(jax.random.key(1), (1024,))
    variables = model.init(jax.random.key(0), x)
    chain = jax.jit(lambda v, x: jf.jacobian_chain(model, v, x))(variables, x)
    key = jax.random.key(7)
    layers, product = jax.jit(
        lambda v, x: (
            jf.layer_spectral_estimates(model, v, x, key=key, num_iters=5000),
            jf.product_spectral_estimates(model, v, x, key=key, num_iters=5000),
        )
    )(variables, x)
    for l in range(3):
        _check_power_iteration(jax.tree.map(lambda a: a[l], layers.top), chain.layers[l])
        _check_hutchinson(jax.tree.map(lambda a: a[l], layers.mean_squared), chain.layers[l], 100)
    _check_power_iteration(product.top, chain.products[-1])
    _check_hutchinson(product.mean_squared, chain.products[-1], 100)


# ---------------------------------------------------------------------------------------------
# Figures


def test_plots_label_their_axes_and_save(tmp_path):
    values, _, _ = _chain("sigmoid")
    layers = np.arange(1, SHALLOW + 1)
    graded = jf.LogSpectrum(values["graded"][:SHALLOW], layers, True)
    plain = jf.LogSpectrum(values["svd"][:SHALLOW], layers, False)
    ax = plot_log_singular_values(graded, indices=[0, 7], label="graded")
    plot_log_singular_values(plain, ax=ax, indices=[0, 7], label="plain SVD", linestyle="--")
    assert len(ax.get_lines()) == 4 and "ln σ_i(P_l)" in ax.get_ylabel()
    assert ax.get_xlabel().startswith("layer l")
    assert ax.get_lines()[0].get_color() == ax.get_lines()[2].get_color()  # paired by index
    save_figure(ax, tmp_path / "log_sv.png")
    exponents, variance = _newman(4)
    spectrum = jf.LyapunovSpectrum(exponents + 0.01, np.sqrt(variance / 200), True)
    ax = plot_lyapunov_spectrum(spectrum, theory=exponents)
    assert ax.get_xlabel().startswith("index i") and "λ_i" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["theory", "measured (± 2 s.e.)"]
    save_figure(ax, tmp_path / "lyapunov.png")
    assert (tmp_path / "log_sv.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="one example"):
        plot_log_singular_values(jf.LogSpectrum(np.zeros((2, 3, 4)), np.ones((2, 3)), True))
    with pytest.raises(ValueError, match="indices="):
        plot_log_singular_values(graded, indices=[8])
    with pytest.raises(ValueError, match="theory has shape"):
        plot_lyapunov_spectrum(spectrum, theory=np.zeros(3))

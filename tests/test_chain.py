"""The chain engine: accumulate_chain (several reductions in one scan) and backward_chain
(several backward passes in one reverse scan), against float64 NumPy and jax.grad; and that no
other module scans the blocks."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from helpers import tol
from jaxflow import chain

DEPTH, WIDTH = 6, 5


def _tanh_chain(dtype):
    ws = jax.random.normal(jax.random.key(0), (DEPTH, WIDTH, WIDTH), dtype) / np.sqrt(WIDTH)
    bs = 0.1 * jax.random.normal(jax.random.key(1), (DEPTH, WIDTH), dtype)
    h0 = jax.random.normal(jax.random.key(2), (WIDTH,), dtype)
    return {"w": ws, "b": bs}, h0


def _block(v, h):
    return jnp.tanh(v["w"] @ h + v["b"])


def _np_chain(blocks, h0):
    """(J_l, P_l, h_l) in float64 from J_l = diag(1 − tanh²(z_l)) W_l."""
    h = np.asarray(h0, np.float64)
    layers, prods, hs, P = [], [], [], np.eye(WIDTH)
    for W, b in zip(np.asarray(blocks["w"], np.float64), np.asarray(blocks["b"], np.float64)):
        z = W @ h + b
        h = np.tanh(z)
        J = np.diag(1 - h**2) @ W
        P = J @ P
        layers.append(J), prods.append(P), hs.append(h)
    return np.stack(layers), np.stack(prods), np.stack(hs)


def test_several_reductions_at_once_equal_separate_runs_and_float64_numpy():
    with jax.enable_x64(True):
        blocks, h0 = _tanh_chain(jnp.float64)
        reductions = {
            "P": chain.products(),
            "J": chain.jacobians(),
            "h": chain.outputs(),
            "norm": chain.spectral_norms(),
            "scaled": chain.scaled_products(read=lambda s: s.log_scale),
            "graded": chain.log_spectrum("graded"),
        }
        together = jax.jit(lambda h0: jf.accumulate_chain(_block, blocks, h0, reductions))(h0)
        for name, reduction in reductions.items():
            alone = jf.accumulate_chain(_block, blocks, h0, reduction)
            np.testing.assert_allclose(alone.emitted, together.emitted[name], rtol=1e-13)
        layers, prods, hs = _np_chain(blocks, h0)
        rtol = tol(jnp.float64, "jacobian")
        np.testing.assert_allclose(together.emitted["J"], layers, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(together.emitted["P"], prods, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(together.emitted["h"], hs, rtol=rtol)
        np.testing.assert_allclose(together.output, hs[-1], rtol=rtol)
        np.testing.assert_allclose(
            together.emitted["norm"], np.linalg.norm(layers, 2, axis=(1, 2)), rtol=1e-10
        )
        np.testing.assert_allclose(
            together.emitted["scaled"], np.log(np.linalg.norm(prods, axis=(1, 2))), rtol=1e-10
        )
        np.testing.assert_allclose(
            together.emitted["graded"],
            np.log(np.linalg.svd(prods, compute_uv=False)),
            rtol=tol(jnp.float64, "svd"),
        )
        # The final states: P_L and the scaled product's direction·e^scale.
        np.testing.assert_allclose(together.state["P"], prods[-1], rtol=rtol, atol=rtol)
        scaled = together.state["scaled"]
        np.testing.assert_allclose(
            scaled.direction * np.exp(scaled.log_scale), prods[-1], rtol=1e-12, atol=1e-14
        )


def test_tuple_single_and_legacy_forms_agree():
    blocks, h0 = _tanh_chain(jnp.float32)
    h, (P, _), (_, hs) = jf.accumulate_chain(
        _block, blocks, h0, (chain.products(read=False), chain.outputs())
    )
    h2, P2, nothing = jf.accumulate_chain(_block, blocks, h0, jnp.eye(WIDTH), lambda J, P: J @ P)
    assert nothing is None
    np.testing.assert_allclose(P, P2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(h, hs[-1])
    np.testing.assert_array_equal(h, h2)
    # No reduction needs J_l: a plain forward pass, for any shape of h (here a batch).
    batch = jnp.stack([h0, -h0])
    out = jf.accumulate_chain(jax.vmap(_block, (None, 0)), blocks, batch, ()).output
    np.testing.assert_allclose(out[0], h, rtol=1e-6)
    with pytest.raises(TypeError, match="reductions"):
        jf.accumulate_chain(_block, blocks, h0, "products")


def test_scan_chain_warns_and_returns_the_same():
    blocks, h0 = _tanh_chain(jnp.float32)
    with pytest.warns(DeprecationWarning, match="accumulate_chain"):
        h, prods = jf.scan_chain(_block, blocks, h0, lambda J, P: P)
    h2, _, prods2 = jf.accumulate_chain(_block, blocks, h0, chain.products())
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(prods, prods2)


def _depth_loss(blocks, h0, depth, target):
    h = h0
    for layer in range(depth):
        h = _block({k: a[layer] for k, a in blocks.items()}, h)
    return 0.5 * jnp.sum(jnp.square(h - target))


def test_backward_chain_injected_at_several_depths_equals_grad_of_each_depth():
    with jax.enable_x64(True):
        blocks, h0 = _tanh_chain(jnp.float64)
        target = jnp.linspace(-1, 1, WIDTH)
        _, _, hs = jf.accumulate_chain(_block, blocks, h0, chain.outputs())
        depths = np.array([2, 6, 4])
        cotangents = hs[depths - 1] - target[None]  # ∂loss_d/∂h_d
        inputs = jnp.concatenate([h0[None], hs[:-1]])

        def emit(step):
            return step.cotangent, step.params

        back = jf.backward_chain(
            _block, blocks, inputs, cotangents, depths=depths, emit=emit, params=True
        )
        scaled = jf.backward_chain(_block, blocks, inputs, cotangents, depths=depths, scaled=True)
        g_h, g_params = back.emitted  # (L, K, n), {"w": (L, K, n, n), ...}
        rtol = tol(jnp.float64, "gradient")
        for k, d in enumerate(depths):
            grad_blocks, grad_h0 = jax.grad(_depth_loss, argnums=(0, 1))(blocks, h0, d, target)
            np.testing.assert_allclose(back.input[k], grad_h0, rtol=rtol, atol=1e-15)
            np.testing.assert_allclose(
                scaled.input[k] * np.exp(scaled.log_scale[k]), grad_h0, rtol=rtol, atol=1e-15
            )
            for name in ("w", "b"):
                np.testing.assert_allclose(
                    g_params[name][:, k], grad_blocks[name], rtol=rtol, atol=1e-15
                )
            # Above its depth a pass is zero; at layer d it is the injected cotangent.
            assert not np.any(np.asarray(g_h[d:, k]))
            np.testing.assert_array_equal(g_h[d - 1, k], cotangents[k])
            for layer in range(1, d):  # ∂loss_d/∂h_l through the first l blocks' outputs
                above = {k: a[layer:] for k, a in blocks.items()}
                grad_hl = jax.grad(_depth_loss, argnums=1)(above, hs[layer - 1], d - layer, target)
                np.testing.assert_allclose(g_h[layer - 1, k], grad_hl, rtol=rtol, atol=1e-15)


def test_backward_chain_scaled_keeps_a_vanishing_gradient():
    """0.5^300 ≈ 5e-91 underflows float32; the scaled carry keeps its logarithm exactly."""
    ws = jnp.full((300,), 0.5)
    hs = jnp.ones((300, 2))
    plain = jf.backward_chain(lambda w, h: w * h, ws, hs, jnp.ones((1, 2)))
    scaled = jf.backward_chain(lambda w, h: w * h, ws, hs, jnp.ones((1, 2)), scaled=True)
    assert not np.any(np.asarray(plain.input))
    log_norm = np.log(np.linalg.norm(scaled.input[0])) + float(scaled.log_scale[0])
    np.testing.assert_allclose(log_norm, 300 * np.log(0.5) + 0.5 * np.log(2), rtol=1e-5)


def test_backward_chain_names_bad_arguments():
    blocks, h0 = _tanh_chain(jnp.float32)
    hs = jnp.zeros((DEPTH, WIDTH))
    with pytest.raises(ValueError, match="hs has shape"):
        jf.backward_chain(_block, blocks, hs[1:], jnp.zeros((1, WIDTH)))
    with pytest.raises(ValueError, match="cotangents has shape"):
        jf.backward_chain(_block, blocks, hs, jnp.zeros((1, WIDTH + 1)))
    with pytest.raises(ValueError, match="depths has shape"):
        jf.backward_chain(_block, blocks, hs, jnp.zeros((2, WIDTH)), depths=[1])


# Scans that are allowed outside the engine, each with why it is not a walk over the blocks.
SCAN_ALLOWED = {
    "jaxflow/chain.py": "the engine itself: the forward and the backward scan over the blocks",
    "jaxflow/models.py": "the model's own definition (nn.scan over identical blocks), not a walk",
    "jaxflow/blocks/_chain.py": "a user's blocks differ in shape and code, so they cannot be the "
    "engine's stacked identical blocks: one scan folds their padded, already-taken Jacobians "
    "into the graded kernel, one applies them (lax.switch) as a matvec for the estimators",
    "jaxflow/sweeps/train.py": "scans over optimiser steps and recording intervals, not over the "
    "blocks (the network's forward pass and its Jacobian chain are accumulate_chain's)",
}


def _scan_calls(tree):
    """Line numbers of calls to lax.scan / jax.lax.scan / nn.scan / a bare imported scan."""
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("jax.lax", "jax", "flax.linen")
        for alias in node.names
        if alias.name == "scan"
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "scan":
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id in imported:
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_engine_scans_the_blocks():
    root = pathlib.Path(jf.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel in SCAN_ALLOWED:
            continue
        lines = _scan_calls(ast.parse(path.read_text(), rel))
        offenders += [f"{rel}:{line}" for line in lines]
    assert not offenders, (
        "these modules scan on their own; walk the chain with jaxflow.accumulate_chain / "
        f"backward_chain (or allow-list a scan that is not over the blocks): {offenders}"
    )
    assert _scan_calls(ast.parse("import jax\njax.lax.scan(f, 0, xs)"))  # the check bites

"""``jaxflow check`` on models written the way their frameworks' users write them
(tests/check_models/): a linen ResNet and pre-LN transformer, an NNX model, Equinox models and a
loss function with its parameters.

Run in-process through ``main([...])``. Every printed number is compared with the library called
directly here (``jf.gradient_stats`` of gradients taken in the test, ``jf.block_chain``), and the
loss function's gradient norms with a NumPy float64 reference written out by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxflow as jf
from jaxflow.cli import main
from tests.check_models import eqx_models, linen_models, loss_models, nnx_models
from tests.helpers import tol

F32 = np.float32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _no_constants(name):
    raise AssertionError(f"bare {name} in the JSON")


def _run_json(capsys, *argv):
    assert main(["check", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out, parse_constant=_no_constants)


def _assert_gradients(out, grads, params):
    stats = jf.gradient_stats(grads, params)
    rtol = tol(F32, "gradient")
    assert list(out["gradients"]["layers"]) == list(stats.layer_names)
    np.testing.assert_allclose(
        list(out["gradients"]["layers"].values()), stats.layer_norms, rtol=rtol
    )
    np.testing.assert_allclose(out["gradients"]["global_norm"], stats.global_norm, rtol=rtol)
    leaves = out["gradients"]["leaves"]
    # Leaves whose gradient is zero up to rounding (an attention bias under a softmax) differ
    # between the two compilations by a few ε of the largest: compared relative to that.
    np.testing.assert_allclose(
        [leaves[n]["norm"] for n in stats.names],
        stats.norm,
        rtol=rtol,
        atol=rtol * float(np.max(stats.norm)),
    )
    return stats


def _assert_spectra(rows, chain, example=None):
    def at(a):
        return np.asarray(a if example is None else a[example], np.float64)

    assert [r["block"] for r in rows] == list(chain.names)
    rtol = tol(F32, "svd")
    for i, row in enumerate(rows):
        assert row["J_norm"] == pytest.approx(at(chain.layer_singular_values[i])[0], rel=rtol)
        assert row["J_min"] == pytest.approx(at(chain.layer_singular_values[i])[-1], rel=rtol)
        assert row["P_norm"] == pytest.approx(at(chain.product_singular_values[i])[0], rel=rtol)
        assert row["P_min"] == pytest.approx(at(chain.product_singular_values[i])[-1], rel=rtol)
        sv = at(chain.product_singular_values[i])[: int(at(chain.resolved)[i])]
        assert row["log_spread"] == pytest.approx(np.log(sv[0] / sv[-1]), rel=rtol, abs=rtol)


def test_linen_resnet_rows_equal_the_library(capsys):
    out = _run_json(
        capsys, "tests.check_models.linen_models:build_resnet", "--apply-kwarg", "train=False"
    )
    model, variables, x = linen_models.build_resnet()

    def loss(params):
        prediction = model.apply({**variables, "params": params}, x, train=False)
        return jnp.mean(jnp.square(prediction))

    stats = _assert_gradients(
        out, jax.jit(jax.grad(loss))(variables["params"]), variables["params"]
    )
    assert "ResNetBlock_1" in stats.layer_names  # one row per block, by the default grouping
    assert out["blocks"] == {
        "found_by": "the default pattern",
        "names": ["ResNetBlock_0", "ResNetBlock_1"],
        "method": "dense",
    }
    chain = jf.block_chain(
        model,
        variables,
        x[:1],
        blocks=["ResNetBlock_0", "ResNetBlock_1"],
        batch_axis=0,
        train=False,
    )
    _assert_spectra(out["spectra"], chain, example=0)
    # zero-initialised biases have ‖g‖/‖w‖ = inf: null in the JSON, never a bare Infinity
    assert out["gradients"]["leaves"]["conv_init/bias"]["ratio"] is None


# ~11 s; token states are tested in test_block_chain.py, the command on linen, NNX and Equinox
# models by the tests around this one; the slow pass runs this one too.
@pytest.mark.slow
def test_linen_transformer_cross_entropy_with_labels(capsys):
    argv = ["tests.check_models.linen_models:build_transformer_labels", "--loss", "cross-entropy",
            "--apply-kwarg", "deterministic=True", "--blocks", r"blocks_\d+"]  # fmt: skip
    out = _run_json(capsys, *argv)
    model, variables, tokens, labels = linen_models.build_transformer_labels()

    def loss(params):
        logits = model.apply({**variables, "params": params}, tokens, deterministic=True)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    assert out["loss"]["value"] == pytest.approx(float(value), rel=tol(F32, "gradient"))
    assert out["loss"]["what"].startswith("cross-entropy against y")
    _assert_gradients(out, grads, variables["params"])
    assert out["blocks"]["found_by"] == "--blocks 'blocks_\\\\d+'"
    chain = jf.block_chain(
        model,
        variables,
        tokens[:1],
        blocks=["blocks_0", "blocks_1"],
        batch_axis=0,
        deterministic=True,
    )
    _assert_spectra(out["spectra"], chain, example=0)


def test_nnx_table_rows_equal_the_library(capsys):
    assert main(["check", "tests.check_models.nnx_models:build"]) == 0
    text = capsys.readouterr().out
    model, x = nnx_models.build()
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grads = jax.jit(jax.grad(lambda p: jnp.mean(jnp.square(nnx.merge(graphdef, p, rest)(x)))))(
        params
    )
    stats = jf.gradient_stats(grads, params)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("gradient norm per block"))
    rows = dict(line.split() for line in lines[start + 2 : start + 2 + len(stats.layer_names)])
    assert list(rows) == ["blocks/0", "blocks/1", "blocks/2", "embed", "head"]
    expected = dict(zip(stats.layer_names, np.asarray(stats.layer_norms), strict=True))
    for name, value in rows.items():  # printed to 5 significant digits
        assert float(value) == pytest.approx(expected[name], rel=1e-4)
    table = lines[next(i for i, ln in enumerate(lines) if "|J_l|_2" in ln) + 1 :]
    chain = jf.block_chain(model, None, x[:1], blocks=["blocks"], batch_axis=0)
    assert [row.split()[-1] for row in table] == ["blocks.0", "blocks.1", "blocks.2"]
    for i, row in enumerate(table):
        j_norm, _, _, p_min, _ = (float(v) for v in row.split()[1:6])
        assert j_norm == pytest.approx(float(chain.layer_singular_values[i][0, 0]), rel=1e-4)
        assert p_min == pytest.approx(float(chain.product_singular_values[i][0, -1]), rel=1e-4)


def test_an_nnx_sequential_is_chained_entry_by_entry(capsys):
    out = _run_json(capsys, "tests.check_models.nnx_models:build_sequential")
    model, x = nnx_models.build_sequential()
    assert out["blocks"]["names"] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    chain = jf.block_chain(model, None, x[:1], blocks="layers", batch_axis=0)
    _assert_spectra(out["spectra"], chain, example=0)


def test_nnx_in_training_mode_gradients_and_why_no_spectra(capsys):
    # The model as the Flax docs leave it after construction: BatchNorm on batch statistics,
    # Dropout drawing masks. The gradients are the training-mode ones (nnx.grad of the same
    # model, same RNG state); per-block spectra are refused with what to change.
    from flax import nnx

    out = _run_json(capsys, "tests.check_models.nnx_models:build_train_mode")
    model, x = nnx_models.build_train_mode()
    grads = nnx.grad(lambda m: jnp.mean(jnp.square(m(x))))(model)
    _assert_gradients(out, grads, nnx.state(model, nnx.Param))
    assert "spectra" not in out
    note = out["blocks"]["note"]
    assert "training mode" in note and "model.eval()" in note


def test_a_sequence_without_a_batch_axis_is_named_as_a_cause(capsys):
    # Token-mixing blocks in inference mode, given one (tokens, width) sequence: its tokens read
    # as a batch look like blocks that mix examples; the note names the missing batch axis too.
    out = _run_json(capsys, "tests.check_models.nnx_models:build_one_sequence")
    assert "spectra" not in out
    note = out["blocks"]["note"]
    assert "if x (5, 3) is one example rather than a batch" in note and "x[None]" in note


def test_equinox_cross_entropy_against_fixed_random_labels(capsys):
    out = _run_json(capsys, "tests.check_models.eqx_models:build", "--loss", "cross-entropy")
    import equinox as eqx

    model, x = eqx_models.build()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    labels = jax.random.randint(jax.random.key(0), (2,), 0, 3)  # the documented targets

    def loss(params):
        logits = jax.vmap(eqx.combine(params, static))(x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert out["loss"]["value"] == pytest.approx(float(value), rel=tol(F32, "gradient"))
    stats = _assert_gradients(out, grads, params)
    assert stats.layer_names == ("layers/0", "layers/1", "layers/2", "head")
    chain = jf.block_chain(model, None, x[0], blocks=["layers"])
    _assert_spectra(out["spectra"], chain)


def test_loss_function_against_float64_numpy(capsys):
    out = _run_json(capsys, "tests.check_models.loss_models:build")
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), loss_models._weights())
    x, y = (np.asarray(a, np.float64) for a in loss_models.batch())
    W0, W1 = params["layers_0"]["w"], params["layers_1"]["w"]
    h = np.tanh(x @ W0)
    d_out = 2 * (h @ W1 - y) / y.size  # ∂ mean((hW1 − y)²) / ∂(hW1)
    g1 = h.T @ d_out
    g0 = x.T @ ((d_out @ W1.T) * (1 - h**2))
    rtol = tol(F32, "gradient")
    layers = out["gradients"]["layers"]
    assert layers["layers_0"] == pytest.approx(np.linalg.norm(g0), rel=rtol)
    assert layers["layers_1"] == pytest.approx(np.linalg.norm(g1), rel=rtol)
    assert out["gradients"]["global_norm"] == pytest.approx(
        np.sqrt(np.sum(g0**2) + np.sum(g1**2)), rel=rtol
    )
    assert out["loss"]["value"] == pytest.approx(np.mean((h @ W1 - y) ** 2), rel=rtol)
    assert out["blocks"]["names"] == [] and "add 'model'" in out["blocks"]["note"]


def test_a_scanned_stack_named_with_stacked_and_grouped_with_group_by(capsys):
    # The Equinox docs' scan over layers: one Linear stacked by filter_vmap under "layers".
    import equinox as eqx

    model, x = eqx_models.build_scanned()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    grads = jax.grad(lambda p: jnp.mean(jax.vmap(eqx.combine(p, static))(x) ** 2))(params)
    weight = np.asarray(grads.layers.weight, np.float64)
    bias = np.asarray(grads.layers.bias, np.float64)
    rtol = tol(F32, "gradient")
    # Without --stacked the stack is one leaf per field (the guess looks under "blocks" only).
    whole = _run_json(capsys, "tests.check_models.eqx_models:build_scanned")
    assert list(whole["gradients"]["layers"]) == ["layers", "head"]
    out = _run_json(capsys, "tests.check_models.eqx_models:build_scanned", "--stacked", "layers")
    assert list(out["gradients"]["layers"]) == ["layers/00", "layers/01", "layers/02", "head"]
    for l in range(3):
        assert out["gradients"]["leaves"][f"layers/{l:02d}/weight"]["norm"] == pytest.approx(
            np.linalg.norm(weight[l]), rel=rtol
        )
        assert out["gradients"]["layers"][f"layers/{l:02d}"] == pytest.approx(
            np.sqrt(np.sum(weight[l] ** 2) + np.sum(bias[l] ** 2)), rel=rtol
        )
    # --group-by: one row for every field of the stack's layers together, one for the head.
    grouped = _run_json(
        capsys,
        "tests.check_models.eqx_models:build_scanned",
        *("--stacked", "layers", "--group-by", "^[a-z]+"),
    )
    assert grouped["gradients"]["layers"]["layers"] == pytest.approx(
        np.sqrt(np.sum(weight**2) + np.sum(bias**2)), rel=rtol
    )
    # A subtree named in --stacked must be a stack: one line, exit 2.
    argv = ["tests.check_models.linen_models:build_resnet", "--apply-kwarg", "train=False"]
    assert main(["check", *argv, "--stacked", "ResNetBlock_0"]) == 2
    err = capsys.readouterr().err
    assert "'ResNetBlock_0' is not a scanned stack" in err and "leave it out of stacked" in err


@pytest.mark.parametrize(
    "target, says",
    [
        ("tests.check_models.linen_models:build_dense", "no blocks found with the default pattern"),
        ("tests.check_models.eqx_models:build_mlp", "is not the next block's input"),
    ],
)
def test_models_without_chainable_blocks_say_how_to_pass_them(capsys, target, says):
    assert main(["check", target]) == 0
    text = capsys.readouterr().out
    assert "gradient norm per block" in text
    note = text.strip().splitlines()[-1]
    assert says in note and "pass --blocks PATTERN" in note


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tests.check_models.broken_import:build"], "cannot import 'tests.check_models.broken_im"),
        (["tests.check_models.loss_models:build_raises"], "build_raises() raises RuntimeError: no"),
        (["tests.check_models.loss_models:build_wrong"], "returned a dict without model and x"),
        (["tests.check_models.loss_models:batch"], "first entry is a ArrayImpl"),
        (["tests.check_models.loss_models:_weights"], "returned a dict with unknown keys"),
        (["tests.check_models.loss_models:build_scalar_loss_wrong"], "it must return the loss"),
        (["tests.check_models.loss_models:build", "--loss", "mse"], "drop --loss"),
        (["tests.check_models.nnx_models:build", "--blocks", "nothing"], "matched no block"),
        (["tests.check_models.eqx_models:build_mlp", "--blocks", "layers"], "--blocks 'layers'"),
        (["tests.check_models.linen_models:build_resnet"], "pass the arguments it needs with "
         "--apply-kwarg NAME=VALUE"),
        (["tests.check_models.linen_models:build_resnet", "--apply-kwarg", "train=maybe"],
         "'maybe' is not a Python literal"),
        (["tests.check_models.linen_models:build_resnet", "--apply-kwarg", "train"],
         "is not NAME=VALUE"),
    ],
)  # fmt: skip
def test_what_it_cannot_do_is_one_line_exit_2(capsys, argv, message):
    assert main(["check", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


def test_help_states_the_protocol_and_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for piece in ("(model, variables, x)", "(model, x)", '"loss_fn"', "--loss", "cross-entropy",
                  "random label", "--apply-kwarg", "--blocks", "--json", "jax.vmap"):  # fmt: skip
        assert piece in text


def test_a_real_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxflow.cli", "check",
         "tests.check_models.eqx_models:build_docs_style", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout, parse_constant=_no_constants)
    # a list of blocks with a plain function among them is found by the default pattern
    assert out["blocks"]["names"] == ["layers.0", "layers.1", "layers.2"]
    assert [round(r["J_norm"], 6) for r in out["spectra"]][1] == 1.0  # relu: J = diag(0 or 1)
    import equinox as eqx

    model, x = eqx_models.build_docs_style()
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.mean(jnp.square(jax.vmap(m)(x)))))(model)
    _assert_gradients(out, grads, eqx.filter(model, eqx.is_inexact_array))


def test_a_file_imports_its_sibling_modules(tmp_path, capsys, monkeypatch):
    # `jaxflow check path/to/file.py:build` runs the file as `python path/to/file.py` would: a
    # model kept in a module beside it is importable (the cwd is elsewhere).
    (tmp_path / "my_layers.py").write_text(
        "import jax.numpy as jnp\ndef loss_fn(p, b):\n    return jnp.sum((b @ p['w']) ** 2)\n"
    )
    (tmp_path / "my_build.py").write_text(
        "import jax.numpy as jnp\nfrom my_layers import loss_fn\n"
        "def build():\n"
        "    return {'loss_fn': loss_fn, 'params': {'w': jnp.eye(2)}, 'batch': jnp.ones((1, 2))}\n"
    )
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = _run_json(capsys, f"{tmp_path / 'my_build.py'}:build")
    # loss = Σ (b W)² with b = (1, 1), W = I: ∂/∂W = 2 bᵀ(b W) = 2·ones(2, 2), norm 4
    assert out["gradients"]["global_norm"] == pytest.approx(4.0, rel=tol(F32, "gradient"))


def test_a_smallest_singular_value_below_rounding_is_marked():
    # A rank-2 3×3 block: float32's SVD returns rounding (≈1e-8·σ_max) as σ_min, not 0.
    from jaxflow.cli._common import format_spectra_table
    from jaxflow.cli.check import spectra_rows_of

    w = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # rank 2, exactly
    chain = jf.block_chain([lambda h: w @ h, lambda h: 2.0 * h], None, jnp.array([0.1, 0.2, 0.3]))
    rows = spectra_rows_of(chain)
    assert [r["J_min_resolved"] for r in rows] == [False, True]
    assert [r["P_min_resolved"] for r in rows] == [False, False]
    lines = format_spectra_table(rows).splitlines()[1:]
    assert lines[0].split()[2].endswith("*") and not lines[1].split()[2].endswith("*")

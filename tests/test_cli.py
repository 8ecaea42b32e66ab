"""The command line, driven through main(argv) and once through a real subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxflow.cli import main


def test_spectra_json_matches_the_library(capsys):
    import jax

    import jaxflow as jf

    assert main(["spectra", "--depth", "4", "--width", "8", "--activation", "tanh", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["depth"] == 4 and len(out["layers"]) == 4 and out["finite"]
    model = jf.mlp(4, 8, activation="tanh", init="xavier")
    key_init, key_x = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (8,))
    chain = jf.jacobian_chain(model, model.init(key_init, x), x)
    np.testing.assert_allclose(
        [r["P_norm"] for r in out["layers"]], chain.product_singular_values[:, 0], rtol=1e-6
    )
    np.testing.assert_allclose(
        [r["J_min"] for r in out["layers"]], chain.layer_singular_values[:, -1], rtol=1e-5
    )


def test_spectra_table(capsys):
    assert (
        main(
            ["spectra", "--depth", "3", "--width", "4", "--model", "residual", "--init", "1.5,0.1"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("residual depth=3 width=4")
    assert lines[1].split()[0] == "layer"
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]


def test_spectra_reports_underflow(capsys):
    assert main(["spectra", "--depth", "70", "--width", "64", "--activation", "sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "underflows float32 from layer" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["spectra", "--depth", "0"], "--depth: 0 is not allowed"),
        (["spectra", "--width", "x"], "--width: 'x' is not an integer"),
        (["spectra", "--activation", "swish"], "--activation: invalid choice: 'swish'"),
        (["spectra", "--init", "xavierr"], "init='xavierr' is not a known initialisation"),
        (["spectra", "--init", "1,-2"], "sigma_b2=-2.0 is not a valid variance"),
        (["spectra", "--init", "1,a"], "not a pair of variances"),
        (["spectra", "--model", "cnn"], "--model: invalid choice"),
        (["spectra", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["spectra", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--depth", "--width", "--activation", "--init", "--seed", "--model", "--json"):
        assert option in text
    assert "examples:" in text


def test_console_script_subprocess():
    # A real process's bad option: exit status 2 and one line, before any JAX work. Its success
    # path in a real process (exit 0, JSON on stdout) is test_cli_check.py::test_a_real_subprocess;
    # `spectra --json` itself is checked in-process above.
    bad = subprocess.run(
        [sys.executable, "-m", "jaxflow.cli", "spectra", "--depth", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "--depth" in bad.stderr


def test_theory_json_matches_the_library(capsys):
    import jaxflow as jf

    assert (
        main(
            [
                "theory",
                "--activation",
                "relu",
                "tanh",
                "--sigma-w2",
                "1.5",
                "--sigma-b2",
                "0.05",
                "--json",
            ]
        )
        == 0
    )
    rows = {r["activation"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    # ReLU in closed form: q* = σ_b²/(1 − σ_w²/2), χ₁ = σ_w²/2, critical σ_w² = 2.
    assert rows["relu"]["q_star"] == pytest.approx(0.05 / (1 - 0.75), rel=1e-4)
    assert rows["relu"]["chi1"] == pytest.approx(0.75, rel=1e-5)
    assert rows["relu"]["critical_sigma_w2"] == pytest.approx(2.0, rel=1e-4)
    assert rows["tanh"]["chi1"] == pytest.approx(float(jf.chi1("tanh", 1.5, 0.05).value), rel=1e-6)


def test_theory_table_and_phase_diagram(tmp_path, capsys):
    assert main(["theory", "--activation", "erf"]) == 0
    assert "erf" in capsys.readouterr().out
    figure = tmp_path / "phase.png"
    argv = ["theory", "--activation", "tanh", "--phase-diagram", str(figure), "--grid", "5"]
    assert main(argv) == 0 and figure.stat().st_size > 10_000
    capsys.readouterr()
    assert main(argv) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


USER_MODULE = """
import jax, jaxflow as jf, flax.linen as nn
def build():
    model = jf.mlp(4, 8, activation="tanh", init="xavier", in_dim=3)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    return model, model.init(jax.random.key(0), x), x
def plain_flax():
    model = nn.Dense(2)
    x = jax.numpy.ones((4, 3))
    return model, model.init(jax.random.key(0), x), x, jax.numpy.zeros((4, 2))
def wrong():
    return 3
"""


# ~6 s; `jaxflow check` is tested on linen, NNX and Equinox models in test_cli_check.py; the
# slow pass runs it on a jaxflow model too.
@pytest.mark.slow
def test_check_reports_gradients_and_spectra(tmp_path, capsys):
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    path = tmp_path / "user_models.py"
    path.write_text(USER_MODULE)
    assert main(["check", f"{path}:build", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["spectra"]) == 4
    model = jf.mlp(4, 8, activation="tanh", init="xavier", in_dim=3)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    variables = model.init(jax.random.key(0), x)
    grads = jax.grad(lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x))))(
        variables["params"]
    )
    import optax

    assert out["gradients"]["global_norm"] == pytest.approx(float(optax.tree.norm(grads)), rel=1e-5)
    assert main(["check", f"{path}:build"]) == 0
    text = capsys.readouterr().out
    assert "Gradient statistics" in text and "per-layer spectra" in text
    assert main(["check", f"{path}:plain_flax"]) == 0
    assert "need a jaxflow model" in capsys.readouterr().out


@pytest.mark.parametrize(
    "target, message",
    [
        ("user_models.py:wrong", "it must return (model, variables, x)"),
        ("user_models.py:missing", "has no function 'missing'"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("justaname", "is not of the form module:function"),
    ],
)
def test_check_bad_targets(tmp_path, monkeypatch, capsys, target, message):
    (tmp_path / "user_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    assert main(["check", target]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_sweep_json(capsys):
    argv = ["sweep", "--depth", "2", "3", "--activation", "tanh", "--init", "he", "--width", "4",
            "--seeds", "2", "--batch", "1", "--json", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["compilations"] == 1 and set(out["median_grad_ratio"]["tanh"]["he"]) == {"2", "3"}

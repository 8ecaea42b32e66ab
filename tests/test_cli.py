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
    np.testing.assert_allclose([r["P_norm"] for r in out["layers"]], chain.product_singular_values[:, 0], rtol=1e-6)
    np.testing.assert_allclose([r["J_min"] for r in out["layers"]], chain.layer_singular_values[:, -1], rtol=1e-5)


def test_spectra_table(capsys):
    assert main(["spectra", "--depth", "3", "--width", "4", "--model", "residual", "--init", "1.5,0.1"]) == 0
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
    result = subprocess.run(
        [sys.executable, "-m", "jaxflow.cli", "spectra", "--depth", "2", "--width", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["layers"]) == 2
    bad = subprocess.run(
        [sys.executable, "-m", "jaxflow.cli", "spectra", "--depth", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

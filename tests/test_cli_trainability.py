"""``jaxflow trainability`` through ``main(argv)``, in process, against the library's own Dataset.

Every run trains the same tiny grid shape (one compiled kernel for the whole file): tanh, depths
1 and 3, width 8, 20 steps on the teacher-student task.
"""

import contextlib
import io
import json
import sys

import numpy as np
import pytest

import jaxflow as jf
from jaxflow.cli import main
from jaxflow.data import teacher_student
from jaxflow.experiments import trainability

GRID = ["--depth", "1", "3", "--activation", "tanh", "--width", "8", "--seeds", "2", "--init",
        "1,0.05", "orthogonal:1,0.05", "--sigma-w2", "2", "--sigma-b2", "0.02"]  # fmt: skip
TRAINING = ["--steps", "20", "--record-every", "10", "--batch-size", "8", "--learning-rate", "0.1"]
ARGV = ["trainability", *GRID, *TRAINING, "--data", "teacher-student", "--chunk-size", "4"]


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The first run into a fresh store: (store path, its JSON summary)."""
    store = str(tmp_path_factory.mktemp("cli") / "run.zarr")
    out = io.StringIO()  # a module-scoped fixture cannot take capsys
    with contextlib.redirect_stdout(out):
        assert main([*ARGV, "--out", store, "--json"]) == 0
    return store, json.loads(out.getvalue())


def _library_dataset():
    grid = jf.Grid(
        depth=[1, 3],
        activation=["tanh"],
        init=[(1.0, 0.05), ("orthogonal", 1.0, 0.05), (2.0, 0.02)],
        width=8,
        seeds=2,
    )
    training = jf.Training(steps=20, learning_rate=0.1, batch_size=8, record_every=10)
    data = teacher_student(num_train=1024, num_test=256, features=16, num_classes=4, hidden=())
    return trainability(grid, data, training, progress=False)


def test_json_matches_the_library(stored):
    store, out = stored
    ds = _library_dataset()
    assert out["store"] == store and out["steps"] == 20 and out["networks"] == 2 * 3 * 2
    assert out["dataset"] == ds.attrs["dataset"] and out["chance_accuracy"] == pytest.approx(
        ds.attrs["chance_accuracy"]
    )
    assert out["compilations"] <= 1 and out["chunks_computed"] == out["chunks"] >= 2
    assert out["seconds"] > 0
    cells = out["final_test_accuracy"]["tanh"]
    assert list(cells) == ["gaussian(1,0.05)", "orthogonal(1,0.05)", "gaussian(2,0.02)"]
    for init in cells:
        cell = cells[init]
        at = {"activation": "tanh", "init": init}
        assert cell["family"] == str(ds["family"].sel(init=init).values)
        assert cell["sigma_w2"] == float(ds["sigma_w2"].sel(init=init))
        assert cell["chi1"] == pytest.approx(float(ds["chi1"].sel(at)), rel=1e-6)
        assert cell["xi_c"] == pytest.approx(float(ds["xi_c"].sel(at)), rel=1e-6)
        for depth in (1, 3):
            numbers = cell["depths"][str(depth)]
            accuracy = ds["test_accuracy"].sel({**at, "depth": depth, "step": 20}).values
            assert numbers["test_accuracy"] == pytest.approx(float(np.mean(accuracy)), abs=1e-6)
            first = ds["first_nonfinite_step"].sel({**at, "depth": depth}).values
            assert numbers["first_nonfinite_step"] == first.tolist()
    assert 0 < cells["gaussian(1,0.05)"]["depths"]["1"]["test_accuracy"] <= 1


def test_rerun_resumes_from_the_store(stored, capsys):
    store, first = stored
    status, out, _ = _run([*ARGV, "--out", store, "--json"], capsys)
    assert status == 0
    again = json.loads(out)
    assert again["chunks_computed"] == 0 and again["compilations"] == 0
    assert again["final_test_accuracy"] == first["final_test_accuracy"]


def test_a_store_of_another_grid_is_refused(stored, capsys):
    store, _ = stored
    argv = [a if a != "2" or i != ARGV.index("--seeds") + 1 else "1" for i, a in enumerate(ARGV)]
    assert argv != ARGV
    status, out, err = _run([*argv, "--out", store], capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "jaxflow trainability:" in err and "different grid" in err and "seeds" in err


def test_plot_writes_the_figures_and_never_overwrites(tmp_path, capsys):
    # Two σ_b² among the Gaussian inits: no heat map (one map is one σ_b²), only the isometry
    # figure (orthogonal(1,0.05) beside gaussian(1,0.05)).
    folder = tmp_path / "figures"
    status, out, _ = _run([*ARGV, "--plot", str(folder)], capsys)
    assert status == 0
    assert [p.name for p in folder.iterdir()] == ["isometry.png"]
    assert f"wrote {folder / 'isometry.png'}" in out and "final test accuracy" in out
    before = (folder / "isometry.png").read_bytes()
    status, _, err = _run([*ARGV, "--plot", str(folder), "--quiet"], capsys)
    assert status == 2 and "already holds isometry.png" in err
    assert (folder / "isometry.png").read_bytes() == before


@pytest.mark.parametrize(
    "options, message",
    [
        (["--steps", "0"], "--steps: 0 is not allowed"),
        (["--learning-rate", "-1"], "--learning-rate: -1.0 is not allowed"),
        (["--batch-size", "x"], "--batch-size: 'x' is not an integer"),
        (["--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
        (["--data", "imagenet"], "--data: 'imagenet' is not one of digits, teacher-student"),
        (["--data", "mnist:/no/such/dir"], "--data mnist:/no/such/dir: MNIST's"),
        (["--init", "orthogonal:1"], "--init: 'orthogonal:1' is not"),
        (["--init", "he", "--sigma-b2", "0.1"], "--sigma-b2 sets the bias variance"),
        (["--sigma-w2", "-1"], "--sigma-w2: -1.0 is not allowed"),
        (["--activation", "swish"], "--activation: invalid choice: 'swish'"),
        (["--init", "xavierr"], "init='xavierr' is not a known initialisation"),
        (["--plot", __file__], "is not a directory"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(options, message, capsys):
    status, out, err = _run(["trainability", "--data", "teacher-student", *options], capsys)
    assert status == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_digits_without_scikit_learn_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    status, _, err = _run(["trainability", "--quiet"], capsys)
    assert status == 2 and "pip install 'jaxflow[data]'" in err
    assert len(err.strip().splitlines()) == 1

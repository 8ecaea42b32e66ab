"""The sweep's Zarr store: written chunk by chunk, resumed after a SIGKILL, never overwritten by
another grid; and the ``jaxflow sweep`` command."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import jaxflow as jf
from jaxflow.cli import main
from test_sweeps import GRID


@pytest.fixture(scope="module")
def reference():
    return jf.sweep(GRID, quiet=True)


def test_store_holds_the_result_and_resumes(reference, tmp_path):
    path = tmp_path / "sweep.zarr"
    seen = []
    first = jf.sweep(GRID, store=path, quiet=True, callback=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 9) for i in range(9)]  # 3 activations × (2 normal + 1 orthogonal)
    assert sorted(os.listdir(path / "finished")) == [f"{i:05d}" for i in range(9)]
    xr.testing.assert_identical(reference.drop_attrs(), first.drop_attrs())
    again = jf.sweep(GRID, store=path, quiet=True)
    assert json.loads(again.attrs["chunks_computed"]) == [] and again.attrs["compilations"] == 0
    xr.testing.assert_identical(reference.drop_attrs(), again.drop_attrs())
    opened = jf.open_sweep(path)
    xr.testing.assert_identical(reference.drop_attrs(), opened.drop_attrs())
    assert opened.to_dataframe().shape[0] > 0


def test_a_half_written_chunk_is_redone(reference, tmp_path):
    path = tmp_path / "sweep.zarr"
    jf.sweep(GRID, store=path, quiet=True)
    # As if the process died while writing chunk 1: its data is there, its record is not.
    os.remove(path / "finished" / "00001")
    junk = xr.Dataset({"P_sv_max": ("config", np.full(5, 7.0))})  # wrong shape and values
    junk.to_zarr(path, group="chunks/00001", mode="w", consolidated=False)
    resumed = jf.sweep(GRID, store=path, quiet=True)
    assert json.loads(resumed.attrs["chunks_computed"]) == [1]
    xr.testing.assert_identical(reference.drop_attrs(), resumed.drop_attrs())


def test_a_store_of_another_grid_is_refused(tmp_path):
    path = tmp_path / "sweep.zarr"
    small = jf.Grid(
        depth=[2],
        activation=["tanh"],
        init=["he"],
        width=3,
        seeds=2,
        batch=1,
        metrics=["P_spectrum"],
    )
    jf.sweep(small, store=path, quiet=True)
    before = sorted(p.name for p in (path / "chunks").iterdir())
    other = jf.Grid(
        depth=[2, 3],
        activation=["tanh"],
        init=["he"],
        width=3,
        seeds=2,
        batch=1,
        metrics=["P_spectrum"],
    )
    with pytest.raises(ValueError, match=r"different grid \(depth: \[2\] vs \[2, 3\]\); refusing"):
        jf.sweep(other, store=path, quiet=True)
    assert sorted(p.name for p in (path / "chunks").iterdir()) == before
    xr.testing.assert_identical(
        jf.open_sweep(path).drop_attrs(), jf.sweep(small, store=path, quiet=True).drop_attrs()
    )
    with pytest.raises(ValueError, match="chunk_size=1 differs from the store's"):
        jf.sweep(small, store=path, chunk_size=1, quiet=True)
    not_a_store = tmp_path / "data.zarr"
    not_a_store.mkdir()
    (not_a_store / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a jaxflow sweep store; refusing to overwrite"):
        jf.sweep(small, store=not_a_store, quiet=True)
    assert (not_a_store / "precious.txt").read_text() == "keep me"


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jaxflow as jf
    from test_sweeps import GRID

    def callback(index, total):
        print(f"finished {index}", flush=True)
        if index == total - 2:
            time.sleep(120)  # the last chunk is in flight (dispatched before this one was written)

    jf.sweep(GRID, store=sys.argv[1], quiet=True, callback=callback)
    """
)


# A real process killed mid-sweep (~10 s): the slow pass runs it; resuming a half-written store
# in-process is test_a_half_written_chunk_is_redone.
@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(reference, tmp_path):
    path = tmp_path / "sweep.zarr"
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]))
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = []
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == "finished 7":
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    assert lines == [f"finished {i}" for i in range(8)] and child.returncode == -signal.SIGKILL
    assert sorted(os.listdir(path / "finished")) == [f"{i:05d}" for i in range(8)]
    resumed = jf.sweep(GRID, store=path, quiet=True)
    assert json.loads(resumed.attrs["chunks_computed"]) == [8]  # only the chunk in flight
    xr.testing.assert_identical(reference.drop_attrs(), resumed.drop_attrs())


def test_multi_host_chunks_split_by_process(reference, tmp_path):
    path = tmp_path / "sweep.zarr"
    # Process 1 of 2 computes the odd chunks only, then (alone here) finds chunks missing.
    with pytest.raises(RuntimeError, match=r"chunks \[0, 2, 4, 6, 8\] are not in the store"):
        jf.sweep(GRID, store=path, quiet=True, process_index=1, process_count=2)
    assert sorted(os.listdir(path / "finished")) == ["00001", "00003", "00005", "00007"]
    done = jf.sweep(GRID, store=path, quiet=True, process_index=0, process_count=2)
    assert json.loads(done.attrs["chunks_computed"]) == [0, 2, 4, 6, 8]
    xr.testing.assert_identical(reference.drop_attrs(), done.drop_attrs())


def _toml(tmp_path, text):
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


GRID_TOML = """
    depth = [2, 5]
    activation = ["relu", "tanh", "sigmoid"]
    init = ["xavier", "orthogonal", [1.5, 0.1]]
    width = 6
    seeds = 2
    batch = 2
    metrics = ["J_spectrum", "P_spectrum", "J_spectra", "P_spectra", "activation_grad_norm",
               "weight_grad_norm", "grad_ratio", "dead_fraction", "saturated_fraction", "theory"]
"""


# ~4 s (the figures); the slow pass runs it; the sweep command's options are in test_bad_input.py.
@pytest.mark.slow
def test_cli_sweep_from_toml_with_plots(reference, tmp_path, capsys):
    config = _toml(tmp_path, GRID_TOML)
    out, plots = tmp_path / "out.zarr", tmp_path / "figures"
    argv = ["sweep", config, "--out", str(out), "--plot", str(plots), "--metric", "P_sv_max"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "swept 18 networks x 2 depths" in text and "median ||dL/dh_0||" in text
    xr.testing.assert_identical(reference.drop_attrs(), jf.open_sweep(out).drop_attrs())
    for name in ("heatmap_P_sv_max.png", "grad_ratio_vs_depth.png"):
        assert (plots / name).stat().st_size > 10_000
    assert main(argv[:-4] + ["--quiet"]) == 0  # resumes: nothing to do, nothing printed
    assert capsys.readouterr().out == ""


def test_cli_sweep_from_flags(tmp_path, capsys):
    argv = [
        "sweep",
        "--depth",
        "1",
        "2",
        "--activation",
        "tanh",
        "--init",
        "he",
        "1.5,0.1",
        "--width",
        "3",
        "--seeds",
        "2",
        "--batch",
        "1",
        "--metrics",
        "grad_ratio",
        "--quiet",
        "--out",
        str(tmp_path / "s.zarr"),
    ]
    assert main(argv) == 0
    ds = jf.open_sweep(tmp_path / "s.zarr")
    assert list(ds.init.values) == ["he", "gaussian(1.5,0.1)"] and list(ds.depth.values) == [1, 2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("depth = [2]\nwidht = 3\n", "unknown key 'widht'; allowed keys are: depth, activation"),
        (
            'depth = [2]\nactivation = ["swish"]\n',
            "activation='swish' is not allowed; valid names are:",
        ),
        ("depth = [0]\n", "depth=0 is not allowed"),
        (
            'depth = [2]\ninit = ["xavierr"]\n',
            "init='xavierr' is not a known initialisation; use one of",
        ),
        ("depth = [2\n", "not valid TOML"),
    ],
)
def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, text, message):
    config = _toml(tmp_path, text)
    assert main(["sweep", config, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and config in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_refuses_another_grids_store(tmp_path, capsys):
    out = str(tmp_path / "s.zarr")
    common = [
        "--activation",
        "tanh",
        "--init",
        "he",
        "--width",
        "3",
        "--seeds",
        "1",
        "--batch",
        "1",
        "--metrics",
        "P_spectrum",
        "--quiet",
        "--out",
        out,
    ]
    assert main(["sweep", "--depth", "2", *common]) == 0
    assert main(["sweep", "--depth", "3", *common]) == 2
    err = capsys.readouterr().err
    assert "different grid (depth: [2] vs [3])" in err and len(err.strip().splitlines()) == 1

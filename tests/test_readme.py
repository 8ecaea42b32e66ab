"""The README's two commands exist, and .ci/run runs the README's test command verbatim."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_exactly_two_commands():
    main_job, tests = _commands()
    assert "jaxflow " in main_job and "pip install" in main_job
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = _commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def _tour():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.+?)\n```", text.split("## A tour", 1)[1], re.S)[:2]


def _run_tour(tour, health, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sweep writes runs/spectra.zarr here
    namespace = {}
    exec(compile(tour, "README.md (tour)", "exec"), namespace)
    exec(compile(health, "README.md (gradient health)", "exec"), namespace)
    assert namespace["stats"].global_norm > 0 and namespace["result"].finite
    assert namespace["chain"].layers.shape == (20, 64, 64)
    assert float(namespace["check"].explicit_error) < 1e-5
    assert (tmp_path / "runs" / "spectra.zarr").is_dir()
    assert namespace["ds"].attrs["compilations"] in (0, 1)


# ~15 s of compilation; the slow pass runs it, and the verbatim tour, on every landing.
@pytest.mark.slow
def test_the_tour_runs(tmp_path, monkeypatch):
    """The README's tour blocks run in order, every line as written but the sweep's seed count:
    one seed instead of eight runs the same compiled sweep on an eighth of the networks (the
    verbatim run is the slow test below)."""
    tour, health = _tour()
    assert tour.count("seeds=8)") == 1
    _run_tour(tour.replace("seeds=8)", "seeds=1)"), health, tmp_path, monkeypatch)


@pytest.mark.slow
def test_the_tour_runs_verbatim(tmp_path, monkeypatch):
    """The README's tour blocks are code a reader will paste: they must run as written, in order."""
    _run_tour(*_tour(), tmp_path, monkeypatch)


# ~8 s; block_chain and group_by on linen models are tested in test_block_chain.py and
# test_gradient_trees.py; the slow pass runs the README's block itself.
@pytest.mark.slow
def test_the_your_model_section_runs():
    """The "Your own model" block runs as written: block_chain on a linen model, per-block norms."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.+?)\n```", section, re.S)
    namespace = {}
    exec(compile(block, "README.md (your own model)", "exec"), namespace)
    chain, stats = namespace["chain"], namespace["block_grads"]
    assert chain.names == tuple(f"block_{i}" for i in range(4))
    assert [J.shape for J in chain.layers] == [(288, 288)] * 4
    assert set(chain.names) <= set(stats.layer_names) and bool((stats.layer_norms > 0).all())

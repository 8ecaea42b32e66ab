"""The report writer and `jaxflow reproduce` plumbing (the sections are tested where they live)."""

import importlib
import json
import pathlib

import pytest

from jaxflow.cli import main
from jaxflow.plotting import new_axes, save_figure
from jaxflow.report import Check, Section, write_report


def _section(folder, passed=True):
    ax = new_axes()
    ax.plot([0, 1], [1, 0])
    save_figure(ax, folder / "demo.png")
    return Section(
        "demo", "A demo claim", "x < 1", "measured x", (Check("x", 0.5 if passed else 2.0, "< 1", passed),),
        ("demo.png",), {"x": [0.5, float("inf")]}, 0.1,
    )  # fmt: skip


def test_write_report_is_self_contained_and_refuses_to_overwrite(tmp_path):
    paths = write_report([_section(tmp_path)], tmp_path, {"title": "T", "jax": "0"})
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "demo.png" not in html.split("<img")[1][:60]
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    assert numbers["sections"]["demo"]["passed"] is True
    assert numbers["sections"]["demo"]["numbers"]["x"] == [0.5, "inf"]
    markdown = (tmp_path / "report.md").read_text()
    assert "1 of 1 sections pass" in markdown and "![A demo claim](demo.png)" in markdown
    before = (tmp_path / "report.md").read_text()
    with pytest.raises(FileExistsError, match="nothing was written"):
        write_report([], tmp_path, {"title": "other"})
    assert (tmp_path / "report.md").read_text() == before
    assert set(paths) == {"markdown", "html", "json"}


def test_failed_check_fails_the_section(tmp_path):
    section = _section(tmp_path, passed=False)
    assert not section.passed
    write_report([section], tmp_path, {"title": "T"})
    assert "**FAIL**" in (tmp_path / "report.md").read_text()


def test_reproduce_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("precious")
    assert main(["reproduce", "--out", str(tmp_path), "--quick"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_reproduce_exit_status_follows_the_checks(tmp_path, monkeypatch, capsys):
    module = importlib.import_module("jaxflow.report.reproduce")

    demo = {"demo": lambda ctx: _section(pathlib.Path(ctx.folder), False)}
    monkeypatch.setattr(module, "SECTIONS", demo)
    assert main(["reproduce", "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "FAILED: A demo claim" in capsys.readouterr().out


def test_reproduce_unknown_section_is_a_usage_error(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--sections", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def _reproduce_in_a_real_process(out, *options):
    """`python -m jaxflow.cli reproduce --quick --json OPTIONS` in a fresh process, as a user runs it."""
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    env["PYTHONPATH"] = str(root)
    result = subprocess.run(
        [sys.executable, "-m", "jaxflow.cli", "reproduce", "--quick", "--out", str(out), "--json",
         *options],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["passed"] and all(summary["sections"].values())
    numbers = json.loads((out / "numbers.json").read_text())
    for key, section in numbers["sections"].items():
        assert section["checks"], f"{key} has no theory check"
        for figure in section["figures"]:
            assert (out / figure).stat().st_size > 10_000, figure
    for key, section in numbers["sections"].items():  # where each section's time went
        timing = section["timing"]
        assert set(timing) == {"seconds", "compile_seconds", "trace_seconds", "compilations"}
        assert 0 <= timing["compile_seconds"] <= timing["seconds"] + 0.01, key
    assert numbers["meta"]["compilations"] == sum(
        s["timing"]["compilations"] for s in numbers["sections"].values()
    )
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == sum(
        len(s["figures"]) for s in numbers["sections"].values()
    )
    return summary, result


def test_compile_clock_credits_each_threads_compilations_to_its_section():
    import threading

    import jax
    import numpy as np

    from jaxflow.report.reproduce import _CompileClock

    clock = _CompileClock()
    with clock.listening():
        with clock.section("a"):
            jax.jit(lambda x: x * 3 + 1)(np.float32(2))  # a new program: one compilation
        thread = threading.Thread(target=lambda: jax.jit(lambda x: x * 5 - 1)(np.float32(2)))
        thread.start()  # outside any section: not counted
        thread.join()
    jax.jit(lambda x: x * 7 + 2)(np.float32(2))  # after listening: not counted either
    timing = clock.timing("a", 1.0)
    assert timing["compilations"] == 1 and timing["compile_seconds"] > 0
    assert clock.timing("b", 0.5) == {
        "seconds": 0.5, "compile_seconds": 0.0, "trace_seconds": 0.0, "compilations": 0
    }  # fmt: skip


# A real `jaxflow reproduce` process (~10 s): the slow pass runs it with the whole report too;
# the sections run in-process in tests/test_report_sections.py, the console script in test_cli.
@pytest.mark.slow
def test_reproduce_one_section_in_a_real_process(tmp_path):
    """The command line end to end on one section: JSON summary, figures, numbers, HTML."""
    summary, result = _reproduce_in_a_real_process(tmp_path / "report", "--sections", "chain_rule")
    assert list(summary["sections"]) == ["chain_rule"]
    assert "reproducing 1 section (quick sizes" in result.stderr  # the progress display


@pytest.mark.slow
def test_reproduce_quick_in_a_real_process(tmp_path):
    """The README's main job at quick sizes, as a user runs it: every section passes its theory.

    Slow (a minute on 2 cores beside the rest of the suite): ``.ci/run`` runs it after the suite.
    """
    from jaxflow.report.reproduce import SECTIONS

    summary, result = _reproduce_in_a_real_process(tmp_path / "report")
    assert list(summary["sections"]) == list(SECTIONS)
    assert "reproducing 12 sections" in result.stderr  # the progress display

"""Outputs are written whole or not at all.

* ``reproduce`` writes into a hidden sibling ``.NAME.incomplete-*`` marked INCOMPLETE and renames
  it at the end: a run killed (SIGKILL, in a real process) leaves ``out`` absent (or as empty as
  it was) and only a marked sibling; a run that fails (an exception in a section, injected
  through the section registry) leaves nothing; a rerun into the same ``out`` works after both.
* A file that cannot be written whole (a full disk) leaves the old file, and no partial one.
* ``--json`` output is valid JSON: NaN as null, infinities as "inf"/"-inf".
"""

from __future__ import annotations

import errno
import glob
import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import jaxflow._files
from jaxflow.cli import main
from jaxflow.report import reproduce as reproduce_module
from jaxflow.report.writer import Check, Section

KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from jaxflow.report import reproduce as r

    def slow(ctx):
        from jaxflow.plotting import new_axes
        ax = new_axes()
        ax.plot([0, 1], [0, 1])
        ctx.save(ax, "slow.png")
        print("figure saved", flush=True)
        time.sleep(300)  # killed here

    r.SECTIONS["slow"] = slow
    r.reproduce(sys.argv[1], sections=("slow",), progress=None)
    """
)


def _quick_section(ctx):
    """A section that draws a figure and checks one number, without compiling anything."""
    from jaxflow.plotting import new_axes

    ax = new_axes()
    ax.plot([0, 1, 2], [1, 0.5, 0.25])
    figure = ctx.save(ax, "quick.png")
    return Section(
        "quick", "Quick", "halving", "three points", (Check("ratio", 0.5, "= 0.5", True),),
        (figure,), {"ratio": 0.5}, 0.0,
    )  # fmt: skip


def _failing_section(ctx):
    from jaxflow.plotting import new_axes

    ctx.save(new_axes(), "failing.png")  # a figure is already in the folder when it fails
    raise RuntimeError("the section failed")


@pytest.fixture
def sections(monkeypatch):
    monkeypatch.setitem(reproduce_module.SECTIONS, "quick", _quick_section)
    monkeypatch.setitem(reproduce_module.SECTIONS, "failing", _failing_section)


def _siblings(out):
    parent, name = os.path.split(os.path.abspath(out))
    return sorted(glob.glob(os.path.join(parent, f".{name}.incomplete-*")))


def _assert_finished_report(out, report):
    assert sorted(os.listdir(out)) == ["numbers.json", "quick.png", "report.html", "report.md"]
    assert report.passed and report.paths["markdown"] == os.path.join(out, "report.md")
    with open(report.paths["json"]) as f:
        assert json.load(f)["sections"]["quick"]["passed"] is True


def _kill_mid_run(out):
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    try:
        line = process.stdout.readline()  # the section has written into the folder
        assert line.strip() == "figure saved", process.stderr.read()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "existing",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # a second real process: 3-5 s
    ids=["new out", "empty out"],
)
def test_a_killed_reproduce_leaves_a_marked_sibling_and_a_rerun_works(tmp_path, sections, existing):
    out = str(tmp_path / "report")
    if existing:
        os.mkdir(out)
    _kill_mid_run(out)
    # out is as it was (absent, or empty): never a partial report that looks whole.
    assert os.listdir(out) == [] if existing else not os.path.exists(out)
    (left,) = _siblings(out)
    assert sorted(os.listdir(left)) == ["INCOMPLETE", "slow.png"]
    with open(os.path.join(left, "INCOMPLETE")) as f:
        assert "unfinished `jaxflow reproduce` run" in f.read()
    # The sibling does not block a rerun into the same folder.
    report = reproduce_module.reproduce(out, sections=("quick",), progress=None)
    _assert_finished_report(out, report)
    assert _siblings(out) == [left]  # a killed run's folder is the user's to delete


def test_a_failed_reproduce_leaves_nothing_and_a_rerun_works(tmp_path, sections):
    out = str(tmp_path / "report")
    with pytest.raises(RuntimeError, match="the section failed"):
        reproduce_module.reproduce(out, sections=("quick", "failing"), progress=None, jobs=1)
    assert not os.path.exists(out) and _siblings(out) == []
    report = reproduce_module.reproduce(out, sections=("quick",), progress=None)
    _assert_finished_report(out, report)
    assert _siblings(out) == []


def test_a_reproduce_that_fails_to_write_its_report_leaves_nothing(tmp_path, sections):
    out = str(tmp_path / "report")
    real = jaxflow._files.write_file

    def full_for_the_report(path, write, **kwargs):
        if os.path.basename(path) == "report.html":  # the figures and numbers.json went in
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write, **kwargs)

    jaxflow._files.write_file = full_for_the_report
    try:
        with pytest.raises(OSError, match="No space left"):
            reproduce_module.reproduce(out, sections=("quick",), progress=None)
    finally:
        jaxflow._files.write_file = real
    assert not os.path.exists(out) and _siblings(out) == []


def test_the_cli_reports_into_an_empty_folder_it_was_given(tmp_path, sections, capsys):
    out = tmp_path / "report"
    out.mkdir()
    assert main(["reproduce", "--out", str(out), "--sections", "quick", "--quiet"]) == 0
    assert "1 of 1 sections pass" in capsys.readouterr().out
    assert (out / "report.md").is_file() and not (out / "INCOMPLETE").exists()
    assert _siblings(str(out)) == []


class _FullDisk(io.FileIO):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "numbers.txt"
    path.write_text("old\n")
    monkeypatch.setattr(jaxflow._files, "_open_temp", lambda p: _FullDisk(p, "xb"))
    with pytest.raises(OSError, match="No space left"):
        jaxflow._files.write_file(str(path), "new\n", overwrite=True)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["numbers.txt"]


def test_write_file_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    path = str(tmp_path / "figure.png")

    def write(f):
        with open(path, "w") as other:  # another process creates the file during the write
            other.write("theirs")
        f.write(b"ours")

    with pytest.raises(FileExistsError, match="exists"):
        jaxflow._files.write_file(path, write)
    with open(path) as f:
        assert f.read() == "theirs"
    assert os.listdir(tmp_path) == ["figure.png"]


def _strict_json(text):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in --json output: not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_has_no_bare_nan_or_infinity(capsys):
    # ReLU at σ_w² = 2 is marginal: q* is undefined (NaN) and the depth scales infinite.
    assert main(["theory", "--activation", "relu", "--sigma-w2", "2", "--json"]) == 0
    (row,) = _strict_json(capsys.readouterr().out)["rows"]
    assert row["q_star"] is None and row["xi_c"] == "inf" and row["chi1"] == 1.0
    # A linear chain with σ_w² = 1e30 overflows float32: its norms are inf or NaN.
    argv = ["spectra", "--depth", "3", "--width", "4", "--init", "1e30,0", "--activation",
            "linear", "--json"]  # fmt: skip
    assert main(argv) == 0
    layers = _strict_json(capsys.readouterr().out)["layers"]
    assert any(row["P_norm"] in (None, "inf") for row in layers)

"""The sweep store under damage, full disks, concurrent writers and stale locks, on real files.

One finished store (a tiny grid, six chunks of one configuration) is made once per module and
copied for each test; damage is done to the copy's files as a disk or a person would do it. The
reference is the same grid swept in memory, without a store.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import pytest
import xarray as xr
import zarr.storage._local as zarr_local

import jaxflow as jf
from jaxflow.cli import main

GRID = jf.Grid(
    depth=[1, 2], activation=["tanh"], init=["he"], width=3, seeds=6, batch=1,
    metrics=["P_spectrum"],
)  # fmt: skip
OTHER = jf.Grid(
    depth=[1, 2], activation=["tanh"], init=["xavier"], width=3, seeds=1, batch=1,
    metrics=["P_spectrum"],
)  # fmt: skip
# Every sweep here runs chunks of one configuration: one compiled kernel for the whole module
# (the same as open_sweep's doctest).


@pytest.fixture(scope="module")
def reference():
    return jf.sweep(GRID, chunk_size=1, quiet=True).drop_attrs()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Finished stores of GRID and of another grid (OTHER), made once."""
    folder = tmp_path_factory.mktemp("stores")
    jf.sweep(GRID, store=folder / "grid.zarr", chunk_size=1, quiet=True)
    jf.sweep(OTHER, store=folder / "other.zarr", chunk_size=1, quiet=True)
    return folder


@pytest.fixture
def store(stores, tmp_path):
    """A fresh copy of GRID's finished store."""
    return shutil.copytree(stores / "grid.zarr", tmp_path / "sweep.zarr")


def _data_file(store, group, variable="P_sv_max"):
    """The one stored chunk file of ``variable`` in ``group`` (the arrays are small)."""
    folder = store / group / variable / "c"
    (path,) = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    return path


def _flip_a_bit(path):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        f.seek(0)
        f.write(data)


def _resume(store):
    return jf.sweep(GRID, store=store, quiet=True)


def test_damaged_chunks_are_named_recomputed_and_never_read(stores, store, reference):
    # A truncated, a deleted and a bit-flipped chunk file, edited array metadata, and a chunk of
    # another grid copied in (data only, and with its record).
    with open(_data_file(store, "chunks/00000"), "r+b") as f:
        f.truncate(5)
    os.remove(_data_file(store, "chunks/00001"))
    _flip_a_bit(_data_file(store, "chunks/00002"))
    meta = store / "chunks/00003/P_sv_min/zarr.json"
    text = json.loads(meta.read_text())
    text["fill_value"] = 0.0 if text["fill_value"] != 0.0 else 1.0
    text["dimension_names"] = list(reversed(text["dimension_names"]))
    meta.write_text(json.dumps(text))
    shutil.rmtree(store / "chunks/00004")
    shutil.copytree(stores / "other.zarr/chunks/00000", store / "chunks/00004")
    shutil.copy(stores / "other.zarr/finished/00000", store / "finished/00005")
    with pytest.warns(UserWarning, match=r"6 damaged chunk\(s\) will be recomputed") as record:
        resumed = _resume(store)
    (message,) = [str(w.message) for w in record]
    for index in range(6):  # every damaged chunk, with its coordinates and what is wrong
        assert f"chunk {index} (activation='tanh', init=['he'], seed=[{index}])" in message
    assert "chunk 4 (activation='tanh', init=['he'], seed=[4]): its data does not match" in message
    assert "chunk 5 (activation='tanh', init=['he'], seed=[5]): its completion record belongs" in (
        message
    )
    assert json.loads(resumed.attrs["chunks_computed"]) == [0, 1, 2, 3, 4, 5]
    xr.testing.assert_identical(reference, resumed.drop_attrs())
    xr.testing.assert_identical(reference, jf.open_sweep(store).drop_attrs())


def test_rerunning_a_finished_sweep_verifies_and_keeps_result(store, reference):
    stamp = os.stat(store / "result.json").st_mtime_ns, os.stat(store / "result/zarr.json")
    again = _resume(store)
    assert json.loads(again.attrs["chunks_computed"]) == []
    xr.testing.assert_identical(reference, again.drop_attrs())
    # Verified and the same: result/ was not rewritten.
    assert os.stat(store / "result.json").st_mtime_ns == stamp[0]
    assert os.stat(store / "result/zarr.json").st_mtime_ns == stamp[1].st_mtime_ns
    # A damaged result/ is named, and rebuilt from the verified chunks.
    _flip_a_bit(_data_file(store, "result"))
    with pytest.warns(UserWarning, match=r"result/ is damaged .*P_sv_max\[activation=tanh\]"):
        _resume(store)
    xr.testing.assert_identical(reference, jf.open_sweep(store).drop_attrs())


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip", "attrs", "root", "record"])
def test_open_sweep_refuses_a_damaged_result(store, damage):
    if damage == "truncate":
        with open(_data_file(store, "result", "P_sv_mean_sq"), "r+b") as f:
            f.truncate(3)
        where = r"P_sv_mean_sq\[activation=tanh\]|cannot be read"
    elif damage == "delete":
        os.remove(_data_file(store, "result", "P_sv_mean_sq"))
        where = r"P_sv_mean_sq\[activation=tanh\]"
    elif damage == "flip":
        _flip_a_bit(_data_file(store, "result", "P_cond"))
        where = r"P_cond\[activation=tanh\]|cannot be read"
    elif damage == "attrs":
        meta = store / "result/zarr.json"
        text = json.loads(meta.read_text())
        text["attributes"]["chunk_size"] = 99
        meta.write_text(json.dumps(text))
        where = "@attrs"
    elif damage == "root":  # the store's own metadata edited: it no longer names this result
        meta = store / "zarr.json"
        text = json.loads(meta.read_text())
        text["attributes"]["grid"] = text["attributes"]["grid"].replace('"width": 3', '"width": 4')
        meta.write_text(json.dumps(text))
        where = "recorded for another grid than the store's zarr.json names"
    else:  # killed (or out of space) while writing result/: its record never came
        os.remove(store / "result.json")
        where = "was not completed"
    with pytest.raises(ValueError, match=where) as error:
        jf.open_sweep(store)
    assert "rerun jaxflow.sweep with the same grid" in str(error.value)


def _failing_writes(monkeypatch, inside, after):
    """Makes zarr's file writes under ``inside`` fail with ENOSPC after ``after`` of them."""
    put, seen = zarr_local._put, []

    def full_disk(path, value, exclusive=False):
        if inside in str(path):
            seen.append(path)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return put(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", full_disk)


def test_a_full_disk_marks_nothing_complete_that_is_not(store, monkeypatch, reference):
    for index in (3, 4, 5):  # as if the sweep had stopped after chunk 2
        os.remove(store / f"finished/{index:05d}")
    os.remove(store / "result.json")
    shutil.rmtree(store / "result")
    with monkeypatch.context() as patch:
        _failing_writes(patch, f"chunks{os.sep}00004", after=2)
        with pytest.raises(OSError, match="No space left"):
            _resume(store)
    assert sorted(os.listdir(store / "finished")) == [f"{i:05d}" for i in range(4)]
    # The disk fills up while result/ is written: open_sweep refuses it; a rerun completes it.
    with monkeypatch.context() as patch:
        _failing_writes(patch, f"sweep.zarr{os.sep}result", after=3)
        with pytest.raises(OSError, match="No space left"):
            _resume(store)
    assert sorted(os.listdir(store / "finished")) == [f"{i:05d}" for i in range(6)]
    with pytest.raises(ValueError, match="result/ was not completed"):
        jf.open_sweep(store)
    _resume(store)
    xr.testing.assert_identical(reference, jf.open_sweep(store).drop_attrs())


def test_x64_mode_is_recorded_and_a_mismatch_refused(store):
    jax.config.update("jax_enable_x64", True)
    try:
        with pytest.raises(ValueError, match=r"jax_enable_x64=False \(float32\) and this process"):
            _resume(store)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_a_format_1_store_is_refused_for_resume_and_read_unverified(store, reference):
    meta = store / "zarr.json"
    text = json.loads(meta.read_text())
    text["attributes"]["jaxflow_sweep"] = 1
    del text["attributes"]["x64"]
    meta.write_text(json.dumps(text))
    os.remove(store / "result.json")
    with pytest.raises(ValueError, match=r"older jaxflow \(store format 1.*new path"):
        _resume(store)
    with pytest.warns(UserWarning, match="read unverified"):
        old = jf.open_sweep(store)
    xr.testing.assert_identical(reference, old.drop_attrs())


# A process that holds the store's lock as jaxflow records it (without importing jaxflow, so it
# starts in milliseconds); the slow test below uses two real sweeps.
HOLDER = textwrap.dedent(
    """
    import fcntl, json, os, socket, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    os.write(fd, json.dumps(info).encode())
    print("locked", flush=True)
    time.sleep(120)
    """
)


def test_a_second_writer_is_refused_and_a_killed_ones_lock_taken_over(store, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store / "lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = f"in use by another jaxflow process \\(pid {holder.pid} on host"
        with pytest.raises(ValueError, match=in_use):
            _resume(store)
        argv = "sweep --depth 1 2 --activation tanh --init he --width 3 --seeds 6 --batch 1"
        argv = [*argv.split(), "--metrics", "P_spectrum", "--quiet", "--out", str(store)]
        assert main(argv) == 2  # jaxflow sweep: one line, exit status 2
        err = capsys.readouterr().err
        assert f"(pid {holder.pid} on host" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    # The holder was killed: its lock is stale and is taken over (a whole rerun after a killed
    # sweep: test_two_sweeps_at_once_then_the_first_killed).
    from jaxflow.sweeps.store import StoreLock

    lock = StoreLock(str(store / "lock"), str(store))
    lock.acquire()
    assert json.loads((store / "lock").read_text())["pid"] == os.getpid()
    lock.release()


SWEEPER = textwrap.dedent(
    """
    import sys, time
    import jaxflow as jf
    from test_store_integrity import GRID

    def callback(index, total):
        print(f"finished {index}", flush=True)
        if index == 0:
            time.sleep(120)  # holds the store, as a long sweep does

    try:
        jf.sweep(GRID, store=sys.argv[1], chunk_size=1, quiet=True, callback=callback)
    except ValueError as error:
        print(error, flush=True)
        sys.exit(2)
    """
)


# Two real sweep processes (~10 s): the slow pass runs it; the lock's refusal and takeover are
# test_a_second_writer_is_refused_and_a_killed_ones_lock_taken_over.
@pytest.mark.slow
def test_two_sweeps_at_once_then_the_first_killed(tmp_path, reference):
    path = tmp_path / "sweep.zarr"
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]))
    command = [sys.executable, "-c", SWEEPER, str(path)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "finished 0"
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 2, second.stderr
        assert f"in use by another jaxflow process (pid {first.pid} on host" in second.stdout
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        first.stdout.close()
    assert sorted(os.listdir(path / "finished")) == ["00000"]
    # The first sweep was killed holding the lock: a rerun takes it over and finishes the store.
    resumed = _resume(path)
    assert json.loads(resumed.attrs["chunks_computed"]) == [1, 2, 3, 4, 5]
    xr.testing.assert_identical(reference, resumed.drop_attrs())
    xr.testing.assert_identical(reference, jf.open_sweep(path).drop_attrs())

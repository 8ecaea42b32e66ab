"""Multi-process sweeps with real processes: two ``jax.distributed`` processes on 127.0.0.1 (CPU,
gloo collectives) run one grid into one store — the README's recipe,
``examples/two_process_sweep.py`` — and equal one process exactly; one killed mid-run resumes with
only its chunks in flight redone; one that fails stops the other at once.

Every test starts real processes (~30 s each on a loaded 2-core machine), so all are slow: run
them with ``pytest --runslow -m slow``. In-process counterparts in the suite:
``test_sweeps_store.py::test_multi_host_chunks_split_by_process`` (the chunk split, without
``jax.distributed``) and ``::test_a_half_written_chunk_is_redone``.
"""

import importlib.util
import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import xarray as xr

import jaxflow as jf

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "two_process_sweep.py"
TIMEOUT = 300  # seconds any one process may take (startup, compilation, the sweep)


def _example():
    spec = importlib.util.spec_from_file_location("two_process_sweep", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRID = jf.Grid(**_example().GRID)
# 2 activations × (normal: xavier, he; orthogonal) × 2 seeds, chunks of 2: process 0 computes
# chunks 0, 2, 4 and process 1 chunks 1, 3, 5.
CHUNKS = 6


def _env():
    env = dict(os.environ)  # XLA_FLAGS, NPROC and the cache setting of the suite, as in-process
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(EXAMPLE.parent)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checksum(ds) -> float:
    """The example's checksum, Σ log σ_max(P_d), of a dataset."""
    last = ds.P_sv_max.where(ds.layer == ds.depth).max("layer")
    return float(np.log(last.values.astype(np.float64)).sum())


def _records(out) -> dict:
    """The JSON line each process prints at the end, by process id."""
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {line["process"]: line for line in lines}


def _assert_equal_exactly(expected, got):
    assert sorted(got.data_vars) == sorted(expected.data_vars)
    for name, value in expected.data_vars.items():
        np.testing.assert_array_equal(got[name].values, value.values, err_msg=name, strict=True)
    xr.testing.assert_identical(expected.drop_attrs(), got.drop_attrs())


class Processes:
    """Child processes whose output lines are read on threads (a hung child cannot block us)."""

    def __init__(self):
        self.children, self.lines = [], []
        self.exited = {}  # child → when finish_all saw it end (time.monotonic())

    def start(self, args):
        child = subprocess.Popen(
            [sys.executable, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(child, lines), daemon=True).start()
        self.children.append(child)
        self.lines.append(lines)
        return len(self.children) - 1

    @staticmethod
    def _pump(child, lines):
        for line in child.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def wait_for(self, which, text, timeout=TIMEOUT):
        """Output lines of child ``which`` up to the first that contains ``text``."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines[which].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {timeout} s; output: {seen}") from None
            if line is None:
                raise AssertionError(f"child {which} ended without {text!r}; output: {seen}")
            seen.append(line)
            if text in line:
                return seen

    def finish(self, which, timeout=TIMEOUT):
        """(exit status, remaining output) of child ``which``."""
        status = self.children[which].wait(timeout=timeout)
        rest = []
        while (line := self.lines[which].get(timeout=10)) is not None:
            rest.append(line)
        return status, "\n".join(rest)

    def finish_all(self, which, timeout=TIMEOUT, grace=90):
        """(exit status, output) of each child in ``which``; once one fails the others get
        ``grace`` seconds (a failed process can leave its peers waiting) and are then killed."""
        deadline = time.monotonic() + timeout
        children = [self.children[w] for w in which]
        while any(c.poll() is None for c in children) and time.monotonic() < deadline:
            for w, child in zip(which, children, strict=True):
                if child.poll() is not None:
                    self.exited.setdefault(w, time.monotonic())
            if any(c.poll() not in (None, 0) for c in children):
                deadline = min(deadline, time.monotonic() + grace)
            time.sleep(0.2)
        for w, child in zip(which, children, strict=True):
            if child.poll() is None:
                child.kill()
            else:
                self.exited.setdefault(w, time.monotonic())
        return [self.finish(w, timeout=30) for w in which]

    def kill_all(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=30)
            child.stdout.close()


@pytest.fixture
def processes():
    started = Processes()
    try:
        yield started
    finally:
        started.kill_all()  # a failed test leaves no process behind


@pytest.fixture(scope="module")
def reference():
    """One process, in memory."""
    return jf.sweep(GRID, quiet=True)


@pytest.fixture(scope="module")
def two_process_store(reference, tmp_path_factory):
    """The README's command, run as written: the example starts both processes and waits."""
    store = tmp_path_factory.mktemp("two") / "sweep.zarr"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(store), "--timeout", str(TIMEOUT)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=TIMEOUT + 60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return store, _records(done.stdout), done.stdout


def test_two_processes_equal_one_process_exactly(reference, two_process_store):
    store, records, out = two_process_store
    assert sorted(records) == [0, 1], out
    assert records[0]["chunks_computed"] == [0, 2, 4]  # index % process_count == process_id
    assert records[1]["chunks_computed"] == [1, 3, 5]
    assert {r["process_count"] for r in records.values()} == {2}
    # each process returns the whole dataset (its checksum), and process 0 writes result/
    assert {r["checksum"] for r in records.values()} == {_checksum(reference)}
    assert sorted(os.listdir(store / "finished")) == [f"{i:05d}" for i in range(CHUNKS)]
    result = jf.open_sweep(store)
    assert result.attrs["process_count"] == 2
    _assert_equal_exactly(reference, result)


KILLABLE = textwrap.dedent(
    """
    import json, sys, time
    import jax
    import jaxflow as jf
    from two_process_sweep import GRID

    store, coordinator = sys.argv[1], sys.argv[2]
    process_id, pause_at = int(sys.argv[3]), int(sys.argv[4])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # jax stops the survivors of a dead process once it misses heartbeats for this long
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=2,
                               process_id=process_id, heartbeat_timeout_seconds=10)

    def written(index, total):
        print(f"written {index}", flush=True)
        if index == pause_at:  # the process's next chunk is in flight: dispatched, not written
            print("paused", flush=True)
            time.sleep(600)
        if index == -pause_at:
            raise OSError(28, "No space left on device")  # as a full disk would, mid-run

    ds = jf.sweep(jf.Grid(**GRID), store=store, quiet=True, callback=written)
    computed = json.loads(ds.attrs["chunks_computed"])
    print(json.dumps({"process": process_id, "chunks_computed": computed}))
    """
)


def _ours(lines):
    """The script's own lines (not gloo's or XLA's log)."""
    return [line for line in lines if line.startswith(("written", "paused"))]


def _stamps(store, chunks):
    """mtime (ns) of every file of these chunks' data and records."""
    stamps = {}
    for index in chunks:
        paths = [store / "finished" / f"{index:05d}"]
        paths += [p for p in (store / "chunks" / f"{index:05d}").rglob("*") if p.is_file()]
        stamps.update({str(p): p.stat().st_mtime_ns for p in paths})
    return stamps


def test_a_process_killed_mid_run_resumes_redoing_only_chunks_in_flight(
    reference, two_process_store, processes, tmp_path
):
    store = tmp_path / "sweep.zarr"
    coordinator = f"127.0.0.1:{_free_port()}"
    # Process 0 pauses once chunk 2 is written (chunk 4 in flight), process 1 once chunk 3 is
    # (chunk 5 in flight); then process 1 is killed.
    first = [
        processes.start(["-c", KILLABLE, store, coordinator, p, pause_at])
        for p, pause_at in ((0, 2), (1, 3))
    ]
    assert _ours(processes.wait_for(first[0], "paused")) == ["written 0", "written 2", "paused"]
    assert _ours(processes.wait_for(first[1], "paused")) == ["written 1", "written 3", "paused"]
    finished = sorted(os.listdir(store / "finished"))
    assert finished == ["00000", "00001", "00002", "00003"]
    before = _stamps(store, range(4))
    processes.children[first[1]].send_signal(signal.SIGKILL)
    status, _ = processes.finish(first[1], timeout=60)
    assert status == -signal.SIGKILL
    # The survivor is stopped by jax's coordination service (missed heartbeats), not left waiting.
    status, out = processes.finish(first[0], timeout=120)
    assert status != 0 and "stopped sending heartbeats" in out, out
    assert sorted(os.listdir(store / "finished")) == finished

    coordinator = f"127.0.0.1:{_free_port()}"
    again = [processes.start(["-c", KILLABLE, store, coordinator, p, -99]) for p in (0, 1)]
    outs = processes.finish_all(again)
    assert [status for status, _ in outs] == [0, 0], outs
    records = _records("\n".join(out for _, out in outs))
    # Only the two chunks in flight at the kill are computed again, one by each process ...
    assert records[0]["chunks_computed"] == [4] and records[1]["chunks_computed"] == [5]
    # ... and the finished chunks' data and records are untouched on disk.
    assert _stamps(store, range(4)) == before
    assert sorted(os.listdir(store / "finished")) == [f"{i:05d}" for i in range(CHUNKS)]
    resumed = jf.open_sweep(store)
    _assert_equal_exactly(jf.open_sweep(two_process_store[0]), resumed)
    _assert_equal_exactly(reference, resumed)


def test_a_process_that_fails_stops_the_others_at_once(reference, processes, tmp_path):
    store = tmp_path / "sweep.zarr"
    coordinator = f"127.0.0.1:{_free_port()}"
    # Process 1 raises once chunk 3 is written (chunk 5 in flight, never written).
    started = [processes.start(["-c", KILLABLE, store, coordinator, p, -3]) for p in (0, 1)]
    (status0, out0), (status1, out1) = processes.finish_all(started)
    # Process 0 stops within seconds of process 1, not after jax's shutdown timeout (300 s):
    # the failed process meets the others at the final barrier, and they report its chunk.
    assert processes.exited.get(started[0], np.inf) - processes.exited[started[1]] < 60
    assert status1 == 1 and "OSError: [Errno 28] No space left on device" in out1, out1
    assert status0 == 1 and "RuntimeError: chunks [5] are not in the store" in out0, out0
    assert sorted(os.listdir(store / "finished")) == [f"{i:05d}" for i in range(5)]
    coordinator = f"127.0.0.1:{_free_port()}"
    again = [processes.start(["-c", KILLABLE, store, coordinator, p, -99]) for p in (0, 1)]
    outs = processes.finish_all(again)
    assert [status for status, _ in outs] == [0, 0], outs
    records = _records("\n".join(out for _, out in outs))
    assert records[0]["chunks_computed"] == [] and records[1]["chunks_computed"] == [5]
    _assert_equal_exactly(reference, jf.open_sweep(store))


RACE = textwrap.dedent(
    """
    import sys
    import jax
    from jax.experimental import multihost_utils
    import jaxflow as jf

    base, coordinator = sys.argv[1], sys.argv[2]
    process_id, rounds = int(sys.argv[3]), int(sys.argv[4])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=2,
                               process_id=process_id)
    grid = jf.Grid(depth=[2], activation=["tanh"], init=["he"], width=3, seeds=2, batch=1,
                   metrics=["P_spectrum"])
    for k in range(rounds):
        multihost_utils.sync_global_devices(f"round {k}")  # both reach the new store at once
        jf.sweep(grid, store=f"{base}/{k}.zarr", quiet=True)
    print("done", flush=True)
    """
)


def test_two_processes_creating_one_store_at_once(processes, tmp_path):
    # Without an order, one process could find the folder another had just made but not yet
    # marked as a sweep store, and refuse it (in ~1 of 5 simultaneous starts).
    coordinator = f"127.0.0.1:{_free_port()}"
    started = [processes.start(["-c", RACE, tmp_path, coordinator, p, 20]) for p in (0, 1)]
    outs = processes.finish_all(started)
    assert all(status == 0 and out.endswith("done") for status, out in outs), outs
    for k in range(20):
        assert sorted(os.listdir(tmp_path / f"{k}.zarr" / "finished")) == ["00000"]

"""The benchmarks: the runner's smoke test (checksums only, never timings) and the workloads.

Benchmarks are scripts (benchmarks/README.md); what the suite checks is that they compute the
right numbers: jaxflow's side of ``benchmarks/run.py --quick`` reproduces the float64 NumPy
reference checksums, the runner refuses a result whose checksum disagrees, and the workload
definitions and references are what they say. The PyTorch side runs only where torch is installed.
"""

import datetime
import errno
import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import tol

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _load(name):
    """A module of benchmarks/ (scripts, not a package; they import their siblings by name)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


workloads = _load("workloads")
run = _load("run")
_results = _load("_results")

TORCH = importlib.util.find_spec("torch") is not None
SKLEARN = importlib.util.find_spec("sklearn") is not None
NO_SKLEARN = "scikit-learn is not installed (pip install 'jaxflow[data]')"


# Six real processes, each importing and compiling jax (~30 CPU-s): the slow pass runs it; the
# runner's checksum logic is tested in-process below with fake implementations.
@pytest.mark.slow
def test_runner_quick_checksums(tmp_path):
    """The issue's smoke test: jaxflow's side of `run.py --quick`, checksums only."""
    report_path = tmp_path / "report.json"
    impls = ["jaxflow", "jaxflow-api", "jaxflow-api-o1", "jaxflow-api-eager", "jaxflow-api-prefix"]
    impls += ["optax", "jaxflow-monitor", "torch-func", "torch-notes"]
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--check",
            "--impl",
            *impls,
            "--json",
            str(report_path),
            "--python",
            sys.executable,
            "--torch-python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(report_path.read_text())["workloads"]
    spectra = report["spectra"]
    for impl in [i for i in impls if i.startswith("jaxflow-api")] + ["jaxflow"]:
        entry = spectra["implementations"][impl]
        assert entry["status"] == "ok", entry
        for key, value in spectra["reference_checksums"].items():
            assert entry["checksums"][key] == pytest.approx(value, rel=tol(np.float32, "checksum"))
    assert report["monitor"]["implementations"]["optax"]["status"] == "ok"
    # jaxflow APIs of other issues: either computed and verified, or reported as unavailable.
    for name, impl in (
        ("notes", "jaxflow"),
        ("deep-chain", "jaxflow"),
        ("monitor", "jaxflow-monitor"),
    ):
        assert report[name]["implementations"][impl]["status"] in ("ok", "unavailable")
    for name, impl in (
        ("spectra", "torch-func"),
        ("notes", "torch-notes"),
        ("deep-chain", "torch-func"),
    ):
        assert report[name]["implementations"][impl]["status"] == ("ok" if TORCH else "skipped")
    trainability = report["trainability"]["implementations"]
    if not SKLEARN:  # the digits cannot be drawn: every implementation is skipped, saying why
        assert {e["status"] for e in trainability.values()} == {"skipped"}
        assert "scikit-learn" in trainability["jaxflow"]["reason"]
    else:
        assert trainability["jaxflow"]["status"] in ("ok", "unavailable")
        assert trainability["torch-func"]["status"] == ("ok" if TORCH else "skipped")


FAKE = """
import sys
sys.path.insert(0, {bench!r})
import protocol
protocol.emit("notes", "fake", "quick", {{"log_grad_norm": {value!r}}}, protocol.Phases())
"""


def test_runner_refuses_a_disagreeing_checksum(tmp_path, monkeypatch):
    spec = workloads.get_spec("notes", "quick")
    reference = workloads.notes_reference(spec, workloads.notes_data(spec))["log_grad_norm"]
    scripts = {}
    for name, value in (("right", reference * (1 + 1e-8)), ("wrong", reference * (1 + 1e-5))):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(FAKE.format(bench=str(BENCH), value=value))
    monkeypatch.setitem(run._PROBES, (sys.executable, "jax"), None)  # the fakes need no jax
    monkeypatch.setitem(
        run.IMPLEMENTATIONS,
        "notes",
        [
            run.Implementation("right", str(scripts["right"]), "jax"),
            run.Implementation("wrong", str(scripts["wrong"]), "jax"),
        ],
    )
    args = run.build_parser().parse_args(
        ["--quick", "--check", "--workload", "notes", "--python", sys.executable]
    )
    args.scale = "quick"
    report, status = run.run_benchmarks(args)
    impls = report["workloads"]["notes"]["implementations"]
    assert status == 1
    assert impls["right"]["status"] == "ok"
    assert impls["wrong"]["status"] == "refused"
    assert "checksum disagrees with the float64 reference" in impls["wrong"]["reason"]
    assert "summary" not in impls["wrong"] and not impls["wrong"]["runs"]


def test_ratios_divide_by_the_first_selected_implementation_without_the_baseline():
    spectra = {i.name: i for i in run.IMPLEMENTATIONS["spectra"]}
    assert run.baseline_of("spectra", list(spectra.values())) == "jaxflow"
    selected = [spectra["jaxflow-api"], spectra["torch-func"]]
    assert run.baseline_of("spectra", selected) == "jaxflow-api"


def test_checksum_tolerance_is_the_suites():
    assert workloads.CHECKSUM_RTOL == tol(np.float32, "checksum")
    ok, _ = workloads.checksums_agree({"a": 100.0}, {"a": 100.0 * (1 + 0.5e-6)})
    bad, message = workloads.checksums_agree({"a": 100.0}, {"a": 100.0 * (1 + 2e-6)})
    missing, _ = workloads.checksums_agree({"a": 1.0}, {"b": 1.0})
    nan, _ = workloads.checksums_agree({"a": float("nan")}, {"a": float("nan")})
    assert ok and not bad and "a:" in message and not missing and not nan


def test_weights_have_the_stated_distributions():
    gaussian = np.random.default_rng(0).standard_normal((200, 32, 32))
    xavier, he, orth = (
        workloads.draw_weights(gaussian, init) for init in ("xavier", "he", "orthogonal")
    )
    assert xavier.dtype == he.dtype == orth.dtype == np.float32
    # Var(W) = σ_w²/n over 200 × 32 × 32 entries: a 1% Monte-Carlo margin is > 10 standard errors.
    assert np.var(xavier) * 32 == pytest.approx(1.0, rel=0.01)
    assert np.var(he) * 32 == pytest.approx(2.0, rel=0.01)
    np.testing.assert_allclose(he, np.sqrt(2) * xavier, rtol=1e-6)
    eye = np.einsum("lij,lik->ljk", orth.astype(np.float64), orth.astype(np.float64))
    np.testing.assert_allclose(
        eye, np.broadcast_to(np.eye(32), eye.shape), atol=tol(np.float32, "orthogonal")
    )
    with pytest.raises(ValueError, match="init='lecun'"):
        workloads.draw_weights(gaussian, "lecun")


def test_data_is_deterministic_and_checked_on_load(tmp_path):
    spec = workloads.get_spec("spectra", "quick")
    first, second = workloads.spectra_data(spec), workloads.spectra_data(spec)
    np.testing.assert_array_equal(first.weights, second.weights)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    path = workloads.save_data(first, str(tmp_path / "spectra"))
    loaded = workloads.load_data("spectra", "quick", path)
    np.testing.assert_array_equal(loaded.weights, first.weights)
    with pytest.raises(FileExistsError):
        workloads.save_data(first, path)  # never overwritten
    with pytest.raises(ValueError, match="not the full scale's"):
        workloads.load_data("spectra", "full", path)
    with pytest.raises(ValueError, match="workload='nope'"):
        workloads.get_workload("nope")


def test_spectra_checksum_counts_every_depth():
    # Two depths answered from one chain of depth 3: the prefixes are the depth-1 and depth-3 nets.
    layer = np.array([[2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    product = np.array([[2.0, 1.0], [6.0, 1.0], [24.0, 1.0]])
    checksum = workloads.SpectraChecksum()
    checksum.add_prefixes(layer, product, depths=(1, 3))
    values = checksum.values()
    assert values["log_sigma_max"] == pytest.approx(math.log(2.0) + math.log(24.0))
    assert values["sigma_sum"] == pytest.approx((3 + 3) + (3 + 4 + 5 + 3 + 7 + 25))


def test_deep_chain_reference_equals_the_plain_float64_product():
    # At the quick scale float64 still holds P_d without rescaling, so the renormalised product
    # (what makes depth 10,000 possible) must equal the plain one.
    spec = workloads.get_spec("deep-chain", "quick")
    data = workloads.deep_chain_data(spec)
    expected = 0.0
    for c, (name, _, _) in enumerate(spec.chains):
        phi, dphi = workloads.NP_ACTIVATIONS[name]
        h, P = data.inputs[0].astype(np.float64), np.eye(spec.width)
        for layer in range(spec.max_depth):
            W = data.weights[c, 0, layer].astype(np.float64)
            z = W @ h + data.biases[c, 0, layer]
            P, h = (dphi(z)[:, None] * W) @ P, phi(z)
            if layer + 1 in spec.depths:
                expected += math.log(np.linalg.svd(P, compute_uv=False)[0])
    got = workloads.deep_chain_reference(spec, data)["log_sigma_max"]
    assert got == pytest.approx(expected, rel=tol(np.float64, "checksum"))


def test_notes_reference_agrees_with_autodiff():
    import jax
    import jax.numpy as jnp

    import jaxflow as jf

    spec = workloads.get_spec("notes", "quick")
    data = workloads.notes_data(spec)
    models = [jf.mlp(spec.depth, spec.width, activation=a, out_dim=1) for a in spec.activations]
    params = [
        jax.tree.map(jnp.asarray, workloads.mlp_variables(data, a))["params"]
        for a in range(len(models))
    ]

    @jax.jit
    def weight_grad_norms(params, x, y):
        norms = []
        for model, p, x_a, y_a in zip(models, params, x, y):
            loss = lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x_a) - y_a))  # noqa: E731
            grads = jax.grad(loss)(p)
            hidden = jnp.linalg.norm(grads["blocks"]["Dense_0"]["kernel"], axis=(1, 2))
            norms.append(jnp.append(hidden, jnp.linalg.norm(grads["readout"]["kernel"])))
        return jnp.stack(norms)

    got = workloads.notes_checksum(weight_grad_norms(params, data.x, data.y))["log_grad_norm"]
    expected = workloads.notes_reference(spec, data)["log_grad_norm"]
    assert got == pytest.approx(expected, rel=tol(np.float32, "checksum"))


def test_trainability_data_is_jaxflows_digits_split():
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    from jaxflow.data import digits

    expected = digits(seed=0, test_fraction=0.25)
    x_train, y_train, x_test, y_test = workloads.digits_split(0, 0.25)
    np.testing.assert_array_equal(x_train, expected.x_train)
    np.testing.assert_array_equal(y_train, expected.y_train)
    np.testing.assert_array_equal(x_test, expected.x_test)
    np.testing.assert_array_equal(y_test, expected.y_test)


def test_trainability_parameters_have_the_stated_distributions(tmp_path):
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    spec = workloads.Trainability(depths=(3, 40), sigma_w2=(1.5,), seeds=2, width=32, steps=5)
    data = workloads.trainability_data(spec)
    again = workloads.trainability_data(spec)
    for field in data._fields:
        np.testing.assert_array_equal(getattr(data, field), getattr(again, field))
    assert data.batches.shape == (5, 32) and data.batches.max() < len(data.x_train)
    deep = workloads.initial_parameters(spec, data, 40, 1.5, seed=1)
    shallow = workloads.initial_parameters(spec, data, 3, 1.5, seed=1)
    assert [w.shape for w, _ in deep] == [(32, 64)] + [(32, 32)] * 40 + [(10, 32)]
    # A depth-3 network is the deepest one's input map, first 3 hidden layers and readout.
    for (w, b), (w_ref, b_ref) in zip(shallow, deep[:4] + deep[-1:]):
        np.testing.assert_array_equal(w, w_ref)
        np.testing.assert_array_equal(b, b_ref)
    hidden = np.stack([w for w, _ in deep[1:-1]]).astype(np.float64)
    biases = np.stack([b for _, b in deep[1:-1]]).astype(np.float64)
    # Var(W) = σ_w²/fan_in over 40 × 32 × 32 entries; Var(b) = σ_b² over 1,280: 5% / 15% margins
    # are > 5 standard errors.
    assert np.var(hidden) * 32 == pytest.approx(1.5, rel=0.05)
    assert np.var(biases) == pytest.approx(spec.sigma_b2, rel=0.15)
    assert np.var(deep[0][0].astype(np.float64)) * 64 == pytest.approx(1.5, rel=0.15)
    path = workloads.save_data(data, str(tmp_path / "trainability"))
    with pytest.raises(ValueError, match="not the quick scale's"):
        workloads.load_data("trainability", "quick", path)


def test_trainability_checksum_and_tolerance():
    checksums = workloads.trainability_checksum([[1.0, float("nan")]])
    assert checksums == {"final_train_loss_mean": pytest.approx((1.0 + math.log(10)) / 2)}
    for scale in workloads.SCALES:
        spec = workloads.get_spec("trainability", scale)
        rtol = workloads.checksum_rtol(spec)
        assert rtol == spec.checksum_rtol and 0.01 <= rtol <= 0.3
        assert workloads.checksums_agree({"a": 1.0}, {"a": 1.0 + rtol / 2}, rtol)[0]
        assert not workloads.checksums_agree({"a": 1.0}, {"a": 1.0 + 2 * rtol}, rtol)[0]
    # Every other workload keeps the strict tolerance.
    for name in ("spectra", "notes", "deep-chain", "monitor"):
        spec = workloads.get_spec(name, "full")
        assert workloads.checksum_rtol(spec) == workloads.CHECKSUM_RTOL


def test_result_files_are_written_exactly(tmp_path):
    report = {"meta": {"machine": "m"}, "rows": [1, 2.5, None]}
    files = {
        tmp_path / "m-2026-01-01.json": json.dumps(report, indent=1),
        tmp_path / "m-2026-01-01.md": "| a |\n|---|\n| é |\n",
        tmp_path / "m-2026-01-01-depth.png": b"\x89PNG\r\n\x00\xff",
    }
    assert _results.write_new(files) == [str(path) for path in files]
    assert json.loads((tmp_path / "m-2026-01-01.json").read_text()) == report
    for path, content in files.items():
        expected = content if isinstance(content, bytes) else content.encode("utf-8")
        assert path.read_bytes() == expected
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path in files)  # no temporaries


def test_an_existing_result_is_refused_before_anything_is_written(tmp_path):
    earlier = tmp_path / "m-2026-01-01.md"
    earlier.write_bytes(b"| an earlier run |\n")
    with pytest.raises(FileExistsError, match=re.escape(f"{earlier} exists; results are never")):
        _results.write_new({tmp_path / "m-2026-01-01.json": "{}", earlier: "| this run |\n"})
    assert earlier.read_bytes() == b"| an earlier run |\n"
    assert os.listdir(tmp_path) == [earlier.name]
    with pytest.raises(SystemExit, match=re.escape(str(earlier))):
        _results.refuse_taken([tmp_path / "m-2026-01-01.json", earlier])


def test_a_failure_mid_write_leaves_no_result_and_no_temporary(tmp_path, monkeypatch):
    first, second = tmp_path / "run.json", tmp_path / "run.md"

    def half_then_fail(f):
        f.write(b'{"rows": [1, 2')
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _results.write_new({first: "{}", second: half_then_fail})
    assert os.listdir(tmp_path) == []  # the first file, already published, is taken back
    # The disk fills while the second file is flushed to it.
    fsync, calls = os.fsync, []

    def full_disk_on_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_on_second_file)
    with pytest.raises(OSError, match="No space left"):
        _results.write_new({first: "{}", second: "| table |\n"})
    assert os.listdir(tmp_path) == []


def test_two_runs_racing_for_one_result_never_overwrite(tmp_path, monkeypatch):
    """Another run publishes the second file after this one's check: this one gives way."""
    first, second = tmp_path / "run.json", tmp_path / "run.md"
    link = os.link

    def other_run_first(src, dst, **kwargs):
        if os.fspath(dst) == str(second):
            second.write_text("the other run's table\n")
        return link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", other_run_first)
    with pytest.raises(FileExistsError, match=re.escape(f"{second} exists")):
        _results.write_new({first: "{}", second: "this run's table\n"})
    assert os.listdir(tmp_path) == [second.name]
    assert second.read_text() == "the other run's table\n"


@pytest.mark.parametrize(
    "script, argv, name",
    [
        ("sweep_load", ["--scale", "quick"], "sweep-load-m-{date}-quick.json"),
        ("trainability_memory", [], "trainability-memory-m-{date}.md"),
        (
            "gradient_bound_memory",
            ["--quick"],
            "gradient-bound-memory-m-{date}-depth100-width64.md",
        ),
        ("svd_methods", ["--quick"], "svd-methods-m-{date}.json"),
    ],
)
def test_memory_scripts_refuse_a_taken_name_before_measuring(tmp_path, script, argv, name):
    taken = tmp_path / name.format(date=datetime.date.today().isoformat())
    taken.write_text("an earlier result")
    with pytest.raises(SystemExit, match=re.escape(f"{taken} exists")):
        _load(script).main([*argv, "--machine", "m", "--out", str(tmp_path)])
    assert taken.read_text() == "an earlier result"


def test_runner_writes_each_run_to_new_files(tmp_path, monkeypatch):
    spec = workloads.get_spec("notes", "quick")
    reference = workloads.notes_reference(spec, workloads.notes_data(spec))["log_grad_norm"]
    script = tmp_path / "fake.py"
    script.write_text(FAKE.format(bench=str(BENCH), value=reference))
    monkeypatch.setitem(run._PROBES, (sys.executable, "jax"), None)  # the fake needs no jax
    monkeypatch.setitem(
        run.IMPLEMENTATIONS, "notes", [run.Implementation("fake", str(script), "jax")]
    )
    out = tmp_path / "results"
    argv = ["--quick", "--workload", "notes", "--repeats", "1", "--python", sys.executable]
    for _ in range(2):
        assert run.main([*argv, "--machine", "m", "--out", str(out)]) == 0
    stems = sorted({path.stem for path in out.iterdir()})
    assert len(stems) == 2 and sorted(os.listdir(out)) == sorted(
        stem + suffix for stem in stems for suffix in (".json", ".md")
    )
    for stem in stems:
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["workloads"]["notes"]["implementations"]["fake"]["status"] == "ok"
        assert (out / f"{stem}.md").read_text() == run.markdown(report)


def test_runner_refuses_an_existing_json_before_running(tmp_path, capsys):
    taken = tmp_path / "report.json"
    taken.write_text("{}")
    with pytest.raises(SystemExit):
        run.main(["--quick", "--check", "--json", str(taken)])
    assert f"--json {taken} exists" in capsys.readouterr().err
    assert taken.read_text() == "{}"


# A real process importing jax and compiling a sweep (~10 s): the slow pass runs it.
@pytest.mark.slow
def test_sweep_load_quick_measures_peak_memory_and_progress(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "sweep_load.py"), "--scale", "quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = tmp_path.glob("sweep-load-*-quick.json")
    (case,) = json.loads(result.read_text())["cases"]
    # 3 activations × (xavier + he: one chunk of 2 seeds each; orthogonal: one) = 9 chunks
    assert case["num_chunks"] == 9 and case["progress_lines"] == 9
    assert "chunk 9/9 written" in proc.stderr
    assert 0 < case["baseline_mb"] < case["peak_mb"] <= case["memory_budget_mb"] == 2048
    assert case["within_budget"] and math.isfinite(case["checksum"])
    assert (tmp_path / result.name.replace(".json", ".md")).read_text().count("| yes |") == 1


def test_svd_methods_quick_checks_every_method_against_float64(tmp_path):
    # Timings are the script's business; the suite checks that every method it times computes
    # the singular values within the tests' rule (tests/helpers.py sv_mixed_error).
    _load("svd_methods").main(["--quick", "--machine", "m", "--out", str(tmp_path)])
    (result,) = tmp_path.glob("svd-methods-m-*.json")
    rows = json.loads(result.read_text())["rows"]
    methods = {"lapack-scan", "lapack-chunk", "jacobi-scan", "jacobi-chunk"}
    assert {(r["n"], r["method"]) for r in rows} == {(n, m) for n in (32, 64) for m in methods}
    assert all(0 <= r["max_err"] <= 1 for r in rows)
    assert result.with_suffix(".md").read_text().count("| jacobi-chunk |") == 2

"""Compile once per shape, and keep the programs between processes.

* A repeated eager call of a public measurement with new values of the same shapes neither traces
  nor compiles: counted with JAX's own instrumentation (``jax.monitoring`` duration events for
  tracing a jaxpr and for XLA's backend compile), never timed.
* Arguments are still checked eagerly: a bad call raises before anything is traced.
* The drivers' persistent compilation cache: one folder per jax/jaxlib version, moved or turned
  off by ``JAXFLOW_CACHE_DIR`` or ``--cache-dir``, never set by ``import jaxflow``; a second
  process loads its programs from it. The suite runs with it off (tests/conftest.py); the tests
  here point it at temporary folders.
"""

import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest
from jax import monitoring

import jaxflow as jf
from jaxflow import _platform
from jaxflow._chain_inputs import Static
from tests.helpers import tol

ROOT = Path(__file__).resolve().parent.parent
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/backend_compile_duration",
)


@pytest.fixture
def compiles():
    """A list that collects every trace and backend-compile event while the test runs."""
    events = []

    def listener(event, duration, **kwargs):
        if event in COMPILE_EVENTS:
            events.append((event, kwargs.get("fun_name")))

    monitoring.register_event_duration_secs_listener(listener)
    yield events
    monitoring.unregister_event_duration_listener(listener)


def _tanh_block(w, h):
    return jnp.tanh(w @ h)


class _Dense2(nn.Module):
    """A plain linen model with two named blocks, for block_chain."""

    @nn.compact
    def __call__(self, x):
        return jnp.tanh(nn.Dense(4, name="layers_1")(nn.Dense(4, name="layers_0")(x)))


def _inputs(width=4, depth=3):
    """Two sets of values of the same shapes: an MLP's variables and inputs, block params, and a
    plain linen model's variables."""
    model = jf.mlp(depth, width, activation="tanh")
    keys = jax.random.split(jax.random.key(0), 8)
    xs = [jax.random.normal(k, (width,)) for k in keys[:2]]
    variables = [model.init(k, xs[0]) for k in keys[2:4]]
    ws = [jax.random.normal(k, (depth, width, width)) / width for k in keys[4:6]]
    linen = [_Dense2().init(k, xs[0]) for k in keys[6:]]
    return model, variables, xs, ws, linen


CALLS = {
    "jacobian_chain": lambda m, v, x, w, n: jf.jacobian_chain(m, v, x),
    "jacobian_chain, block function": lambda m, v, x, w, n: jf.jacobian_chain(_tanh_block, w, x),
    "jacobian_chain of a batch": lambda m, v, x, w, n: jf.jacobian_chain(m, v, jnp.stack([x, -x])),
    "layer_jacobians": lambda m, v, x, w, n: jf.layer_jacobians(m, v, x, wrt="preactivation"),
    "log_spectrum": lambda m, v, x, w, n: jf.log_spectrum(m, v, x, layers=[1, 3]),
    "log_spectrum of a block function": lambda m, v, x, w, n: jf.log_spectrum(_tanh_block, w, x),
    "lyapunov_exponents": lambda m, v, x, w, n: jf.lyapunov_exponents(m, v, x, batches=2),
    "gradient_bound": lambda m, v, x, w, n: jf.gradient_bound(m, v, x),
    "gradient_bound, every prefix": lambda m, v, x, w, n: jf.gradient_bound(m, v, x, prefixes=True),
    "gradient_stats": lambda m, v, x, w, n: jf.gradient_stats(v["params"], v["params"]),
    "block_chain": lambda m, v, x, w, n: jf.block_chain(_Dense2(), n, x, blocks=r"layers_\d"),
    "block_chain of functions": lambda m, v, x, w, n: jf.block_chain([jnp.tanh, jnp.sin], None, x),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CALLS))
def test_a_repeated_eager_call_neither_traces_nor_compiles(name, compiles):
    model, variables, xs, ws, linen = _inputs()
    call = CALLS[name]
    jax.block_until_ready(call(model, variables[0], xs[0], ws[0], linen[0]))
    assert compiles, "the first call compiles"
    compiles.clear()
    jax.block_until_ready(call(model, variables[1], xs[1], ws[1], linen[1]))  # new values
    assert compiles == []


def test_gradient_stats_works_out_a_trees_layout_once(compiles, monkeypatch):
    from jaxflow.gradients import stats as module

    made = []
    make = module._make_plan
    monkeypatch.setattr(module, "_make_plan", lambda *a, **k: made.append(1) or make(*a, **k))
    monkeypatch.setattr(module, "_PLANS", type(module._PLANS)())
    _, variables, _, _, _ = _inputs()
    grads = [jax.tree.map(lambda a, s=s: s * a, variables[0]["params"]) for s in (1, -2)]
    first = jf.gradient_stats(grads[0], variables[0]["params"])
    assert made == [1]
    compiles.clear()
    again = jf.gradient_stats(grads[1], variables[1]["params"])  # new values, same structure
    assert made == [1] and compiles == []
    assert again.names == first.names
    np.testing.assert_allclose(again.norm, 2 * np.asarray(first.norm), rtol=1e-6)
    # Another structure or shape is worked out (and checked) anew.
    wider = jax.tree.map(lambda a: jnp.concatenate([a, a], axis=-1), grads[0])
    with pytest.raises(ValueError, match="has shape"):
        jf.gradient_stats(wider, variables[0]["params"])
    assert len(made) == 2


def test_a_new_shape_compiles_once_more(compiles):
    model, variables, xs, _, _ = _inputs()
    jf.jacobian_chain(model, variables[0], xs[0])
    compiles.clear()
    batches = jnp.stack([xs[0], xs[1], -xs[0]]), jnp.stack([xs[1], xs[0], -xs[1]])
    compiles.clear()
    jf.jacobian_chain(model, variables[0], batches[0])
    assert compiles, "a batch of three is another program"
    compiles.clear()
    jf.jacobian_chain(model, variables[1], batches[1])
    assert compiles == []


def test_an_equal_model_built_again_reuses_the_program(compiles):
    _, variables, xs, _, _ = _inputs()
    jf.log_spectrum(jf.mlp(3, 4, activation="tanh"), variables[0], xs[0])
    compiles.clear()
    jf.log_spectrum(jf.mlp(3, 4, activation="tanh"), variables[1], xs[1])
    assert compiles == []


class _UnhashableBlock:
    """A block function that cannot be hashed (it defines __eq__ only)."""

    def __init__(self, scale):
        self.scale = scale

    def __eq__(self, other):
        return isinstance(other, _UnhashableBlock) and other.scale == self.scale

    __hash__ = None

    def __call__(self, w, h):
        return jnp.tanh(self.scale * (w @ h))


def test_an_unhashable_model_is_kept_by_identity(compiles):
    _, _, xs, ws, _ = _inputs()
    block = _UnhashableBlock(2.0)
    assert Static(block) == Static(block) and Static(block) != Static(_UnhashableBlock(2.0))
    jf.jacobian_chain(block, ws[0], xs[0])
    compiles.clear()
    chain = jf.jacobian_chain(block, ws[1], xs[1])
    assert compiles == []
    assert chain.layers.shape == (3, 4, 4)


def test_arguments_are_checked_before_anything_is_traced(compiles):
    model, variables, xs, ws, _ = _inputs()
    wrong_x, wrong_y = jnp.ones(5), jnp.ones(3)
    compiles.clear()
    v, x, w = variables[0], xs[0], ws[0]
    bad = [
        (ValueError, "x has shape", lambda: jf.jacobian_chain(model, v, wrong_x)),
        (ValueError, "mode='jvp'", lambda: jf.jacobian_chain(model, v, x, mode="jvp")),
        (ValueError, "layers=", lambda: jf.log_spectrum(model, v, x, layers=[9])),
        (ValueError, "batches=", lambda: jf.lyapunov_exponents(_tanh_block, w, x, batches=9)),
        (ValueError, "y has shape", lambda: jf.gradient_bound(model, v, x, wrong_y)),
        (TypeError, "jaxflow MLP", lambda: jf.gradient_bound(jf.residual_stack(3, 4), v, x)),
    ]  # fmt: skip
    for error, message, call in bad:
        with pytest.raises(error, match=message):
            call()
    assert [e for e in compiles if e[0].endswith("jaxpr_trace_duration")] == []


# ---------------------------------------------------------------------------------------------
# The persistent compilation cache


def test_the_cache_folder_is_per_user_and_per_version(monkeypatch, tmp_path):
    version = f"jax-{jax.__version__}-jaxlib-{jaxlib.__version__}"
    monkeypatch.delenv("JAXFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _platform.compilation_cache_dir() == str(tmp_path / "jaxflow" / version)
    monkeypatch.delenv("XDG_CACHE_HOME")
    expected = os.path.join(os.path.expanduser("~"), ".cache", "jaxflow", version)
    assert _platform.compilation_cache_dir() == expected
    monkeypatch.setenv("JAXFLOW_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert _platform.compilation_cache_dir() == str(tmp_path / "elsewhere" / version)
    assert _platform.compilation_cache_dir(str(tmp_path)) == str(tmp_path / version)
    for off in ("off", "OFF", " off "):
        monkeypatch.setenv("JAXFLOW_CACHE_DIR", off)
        assert _platform.compilation_cache_dir() is None
    assert _platform.compilation_cache_dir(str(tmp_path)) == str(tmp_path / version)


def test_a_users_jax_cache_is_kept_unless_jaxflow_is_told_otherwise(monkeypatch, tmp_path):
    from jax.experimental.compilation_cache import compilation_cache

    saved = (jax.config.jax_compilation_cache_dir,
             jax.config.jax_persistent_cache_min_compile_time_secs)  # fmt: skip
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
        monkeypatch.delenv("JAXFLOW_CACHE_DIR", raising=False)
        assert _platform.use_compilation_cache() == str(tmp_path / "users")
        monkeypatch.setenv("JAXFLOW_CACHE_DIR", "off")
        assert _platform.use_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "users")  # left alone
        monkeypatch.setenv("JAXFLOW_CACHE_DIR", str(tmp_path / "ours"))
        ours = _platform.use_compilation_cache()
        assert ours == _platform.compilation_cache_dir(str(tmp_path / "ours"))
        assert jax.config.jax_compilation_cache_dir == ours
        assert _platform.use_compilation_cache() == ours  # a second driver changes nothing
    finally:
        jax.config.update("jax_compilation_cache_dir", saved[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
        compilation_cache.reset_cache()


def test_the_cli_option_goes_before_or_after_the_command():
    from jaxflow.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--cache-dir", "off", "theory"]).cache_dir == "off"
    assert parser.parse_args(["theory", "--cache-dir", "/tmp/c"]).cache_dir == "/tmp/c"
    assert parser.parse_args(["reproduce"]).cache_dir is None


_PROCESS = """
import sys
import jax
from jax import monitoring
import jaxflow
from jaxflow.cli import main
hits = []
monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
print("after import:", jax.config.jax_compilation_cache_dir)
status = main(sys.argv[1:])
print("cache:", jax.config.jax_compilation_cache_dir)
print("hits:", len(hits))
sys.exit(status)
"""


def _process(args, env):
    # A user's process: without the suite's own compilation cache (tests/conftest.py).
    inherited = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env = {**inherited, **env, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PROCESS, *args], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)


# Three real CLI processes (~11 s): the slow pass runs it; the folder, version and switches are
# tested in-process above.
@pytest.mark.slow
def test_a_second_process_loads_the_cli_programs_from_the_cache(tmp_path):
    command = ["spectra", "--depth", "3", "--width", "8"]
    env = {"JAXFLOW_CACHE_DIR": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    first = _process(command, env)
    folder = _platform.compilation_cache_dir(str(tmp_path))
    assert first["after import"] == "None"  # import jaxflow sets nothing
    assert first["cache"] == folder and os.listdir(folder)
    assert first["hits"] == "0"
    # The option moves it: here to the same folder, so the second process finds the programs.
    second = _process(["--cache-dir", str(tmp_path), *command], {**env, "JAXFLOW_CACHE_DIR": "off"})
    assert second["cache"] == folder
    assert int(second["hits"]) > 0
    off = _process(["--cache-dir", "off", *command], env)
    assert off["cache"] == "None" and off["hits"] == "0"


def test_the_librarys_programs_compile_with_their_own_options_and_stay_nestable(
    compiles, monkeypatch
):
    # The suite sets -O1 and the elemental emitters for the whole process (conftest), which makes
    # fast_compiling_jit a plain jax.jit; without them it keeps a second program with options.
    monkeypatch.setenv("XLA_FLAGS", "")

    def spectra(w, h):
        return jf.jacobian_chain(_tanh_block, w, h).product_singular_values

    program = _platform.fast_compiling_jit(spectra)
    assert set(_platform._fast_compile_flags()) >= {"xla_backend_optimization_level"}
    _, _, xs, ws, _ = _inputs()
    eager = program(ws[0], xs[0])
    assert (program.fast._cache_size(), program.plain._cache_size()) == (1, 0)
    compiles.clear()
    program(ws[1], xs[1])  # new values: no trace, no compile
    assert compiles == []
    # Under a user's jit the library's program is traced without options (a nested jit may not
    # carry them: JAX raises); an eager vmap runs it with them.
    nested = jax.jit(program)(ws[0], xs[0])
    batched = jax.vmap(program, in_axes=(None, 0))(ws[0], jnp.stack([xs[0], xs[1]]))
    # Against float64 NumPy: σ_i(P_l) of the explicit products J_l = diag(1 − h_l²) W_l.
    h, P, expected = np.asarray(xs[0], np.float64), np.eye(4), []
    for w in np.asarray(ws[0], np.float64):
        h = np.tanh(w @ h)
        P = np.diag(1 - h**2) @ w @ P
        expected.append(np.linalg.svd(P, compute_uv=False))
    for values in (eager, nested, batched[0]):
        np.testing.assert_allclose(
            values, expected, atol=tol(np.float32, "svd") * np.max(expected), rtol=0
        )

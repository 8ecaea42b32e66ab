"""The drivers size XLA:CPU's thread pool so batched LAPACK calls cannot park every thread.

Fresh interpreters, because the pool is sized once, when the CPU backend starts. ``import
jaxflow`` itself sets nothing (tests/test_layers.py); a driver calls the guard first.
"""

import os
import subprocess
import sys

_PROBE = """
import os, collections
import jaxflow, jaxflow._platform, jax, jax.numpy as jnp
jaxflow._platform.guard_cpu_thread_pool()  # what the drivers do first
jnp.linalg.svd(jnp.ones((8, 64, 64)), compute_uv=False).block_until_ready()
threads = collections.Counter(
    open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")
)["tf_XLAEigen"]
print(os.environ.get("NPROC"), threads, jaxflow._platform.cpu_pool_threads())
"""


def _probe(env):
    """(NPROC, pool threads, what jaxflow reports) in a fresh interpreter started with ``env``,
    as a user's would be: without this process's NPROC (which jaxflow's own import may have set)
    and XLA_FLAGS (the suite's fake devices; XLA gives the pool at least one thread per device)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inherited = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    env = {**inherited, **env, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    nproc, threads, reported = out.split()
    return nproc, int(threads), int(reported)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_the_guard_gives_the_pool_one_thread_beyond_the_cores():
    expected = _cores() + 1
    assert _probe({}) == (str(expected), expected, expected)


def test_forced_host_devices_count_towards_the_pool(monkeypatch):
    # In-process, with the backend taken as not started: the rule, read from XLA_FLAGS.
    from jaxflow import _platform

    monkeypatch.setattr(_platform, "_backends_started", lambda: False)
    monkeypatch.setattr(_platform, "_cores", lambda: 2)
    for flags, expected in [
        ("", 3),
        ("--xla_force_host_platform_device_count=1", 3),
        ("--xla_cpu_use_fusion_emitters=false --xla_force_host_platform_device_count=6", 7),
        ("--xla_force_host_platform_device_count=x", 3),
        ('--xla_force_host_platform_device_count="4"', 5),  # XLA reads quoted values too
        ("--xla_force_host_platform_device_count=2 --xla_force_host_platform_device_count=6", 7),
    ]:
        monkeypatch.delenv("NPROC", raising=False)
        monkeypatch.setenv("XLA_FLAGS", flags)
        _platform.guard_cpu_thread_pool()
        assert os.environ["NPROC"] == str(expected), flags
    # jax's own setting wins over the XLA flag, as it does in jax
    monkeypatch.delenv("NPROC", raising=False)
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "4")
    _platform.guard_cpu_thread_pool()
    assert os.environ["NPROC"] == "5"
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES")
    monkeypatch.setenv("NPROC", "7")  # the user's own setting is kept (that XLA then makes
    _platform.guard_cpu_thread_pool()  # NPROC threads: the fresh interpreter above)
    assert os.environ["NPROC"] == "7"


def test_fast_compilation_flags_keep_the_users_and_never_guess_at_unknown_jaxlibs(monkeypatch):
    from jaxflow import _platform

    monkeypatch.setattr(_platform, "_backends_started", lambda: False)
    monkeypatch.setattr(_platform, "_jaxlib_version", lambda: "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert _platform.prefer_fast_compilation()
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        "--xla_backend_optimization_level=1",
        "--xla_cpu_use_fusion_emitters=false",
    ]
    # The user's own settings are kept; an XLA flag a jaxlib might not know is not set there
    # (XLA aborts on an unknown flag).
    monkeypatch.setattr(_platform, "_jaxlib_version", lambda: "0.99.0")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    assert _platform.prefer_fast_compilation()
    assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=3"


def test_training_drivers_give_the_cpu_a_device_per_core_unless_asked(monkeypatch):
    # In-process, with the backend taken as not started and the config update recorded (jax
    # refuses a real one once its backend runs): the rule.
    import jax

    from jaxflow import _platform

    updates = []
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.append((name, value)))
    monkeypatch.setattr(_platform, "_backends_started", lambda: False)
    monkeypatch.setattr(_platform, "_cores", lambda: 2)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    assert _platform.spread_cpu_devices() == 2 and updates == [("jax_num_cpu_devices", 2)]
    updates.clear()
    for env, value, expected in [
        ("JAX_NUM_CPU_DEVICES", "1", 1),  # the user's count is kept, 1 included
        ("XLA_FLAGS", "--xla_force_host_platform_device_count=3", 3),
    ]:
        monkeypatch.setenv(env, value)
        assert _platform.spread_cpu_devices() == expected and not updates
        monkeypatch.delenv(env)
    monkeypatch.setattr(_platform, "_cores", lambda: 1)  # one core: nothing to spread over
    assert _platform.spread_cpu_devices() == 1 and not updates
    monkeypatch.setattr(_platform, "_backends_started", lambda: True)  # too late: unchanged
    monkeypatch.setattr(_platform, "_cores", lambda: 2)
    assert _platform.spread_cpu_devices() == 1 and not updates


def test_a_fresh_training_process_has_a_cpu_device_per_core_and_a_pool_beyond_them():
    probe = (
        "import os, jax, jaxflow._platform as p; p.spread_cpu_devices(); p.guard_cpu_thread_pool();"
        " print(len(jax.devices('cpu')), os.environ['NPROC'])"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inherited = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    out = subprocess.run([sys.executable, "-c", probe], env={**inherited, "PYTHONPATH": root},
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    assert out.split() == [str(_cores()), str(_cores() + 1)]

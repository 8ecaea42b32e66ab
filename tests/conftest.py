"""Test configuration: strict JAX settings and four fake CPU devices for the sharding tests.

* ``--xla_force_host_platform_device_count=4`` must be set before JAX initialises its backends;
  so must the fast-compilation flags (``_platform.prefer_fast_compilation``; notebook kernels
  inherit them) and the pool size ``NPROC``.
* Rank promotion raises, so a silent broadcast in the library is a test failure.
* Warnings are errors (pyproject's ``filterwarnings``); every ignore there says why.
* ``@pytest.mark.slow`` tests run only with ``--runslow``.
* The drivers' persistent compilation cache is off (``JAXFLOW_CACHE_DIR=off``); the suite keeps
  its own, new for every run and shared by its xdist workers, so a program both workers compile is
  compiled once (JAX's cache: the same programs, so results do not change).
"""

import os
import shutil
import tempfile

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags = f"{_flags} --xla_force_host_platform_device_count=4".strip()
os.environ["XLA_FLAGS"] = _flags
# The drivers keep compiled programs in a per-user cache folder; the suite writes nothing to the
# user's home (tests/test_compile_cache.py points the cache at temporary folders instead).
os.environ["JAXFLOW_CACHE_DIR"] = "off"
# One compilation cache per run: made by the first process to read this file (pytest itself, which
# then starts the xdist workers with it in their environment) and deleted when that process ends.
# Nothing is kept between runs, so every run compiles from cold, as on a fresh machine; a cache of
# the user's own (JAX_COMPILATION_CACHE_DIR) is used instead if set.
_SUITE_CACHE = "JAXFLOW_SUITE_CACHE"
_OWN_CACHE = None
if _SUITE_CACHE not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxflow-suite-cache-")
    os.environ[_SUITE_CACHE] = _OWN_CACHE
if _SUITE_CACHE in os.environ:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ[_SUITE_CACHE])
    # JAX's default writes only programs of 1 s or more; the suite's are mostly 0.1-1 s.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

from jaxflow import _platform  # noqa: E402

# The suite is a driver: it sizes XLA:CPU's pool before any test starts the backend (the drivers'
# rule, max(cores, the 4 fake devices) + 1: five threads per worker on 2 cores), and compiles
# as `jaxflow reproduce` does: XLA's -O1 and, on jaxlib 0.10, the elemental fusion emitters (the
# suite compiles hundreds of small programs once each; neither changes floating-point
# semantics; docs/platform.md). Notebook kernels inherit both through XLA_FLAGS.
_platform.guard_cpu_thread_pool()
_platform.prefer_fast_compilation()

import jax  # noqa: E402
import matplotlib  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Modules that `jaxflow check` imports in tests/test_cli_check.py, not tests (one fails to import
# on purpose).
collect_ignore_glob = ["check_models/*"]


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)

"""Test configuration: strict JAX settings and four fake CPU devices for the sharding tests.

* ``--xla_force_host_platform_device_count=4`` must be set before JAX initialises its backends;
  so must ``--xla_backend_optimization_level=1`` (faster compiles; notebook kernels inherit both).
* Rank promotion raises, so a silent broadcast in the library is a test failure.
* Warnings are errors (pyproject's ``filterwarnings``); every ignore there says why.
* ``@pytest.mark.slow`` tests run only with ``--runslow``.
* The drivers' persistent compilation cache is off (``JAXFLOW_CACHE_DIR=off``).
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags = f"{_flags} --xla_force_host_platform_device_count=4".strip()
# XLA's -O1 (what `jaxflow reproduce` uses): the suite compiles hundreds of small programs once
# each, and -O1 about halves XLA:CPU's compile time without changing floating-point semantics.
if "xla_backend_optimization_level" not in _flags:
    _flags = f"{_flags} --xla_backend_optimization_level=1"
os.environ["XLA_FLAGS"] = _flags
# The drivers keep compiled programs in a per-user cache folder; the suite writes nothing to the
# user's home (tests/test_compile_cache.py points the cache at temporary folders instead).
os.environ["JAXFLOW_CACHE_DIR"] = "off"

from jaxflow import _platform  # noqa: E402

# The suite is a driver: it sizes XLA:CPU's pool before any test starts the backend.
_platform.guard_cpu_thread_pool()

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

"""Test configuration: strict JAX settings and four fake CPU devices for the sharding tests.

* ``--xla_force_host_platform_device_count=4`` must be set before JAX initialises its backends;
  so must the fast-compilation flags (``_platform.prefer_fast_compilation``; notebook kernels
  inherit them) and the pool size ``NPROC``.
* Rank promotion raises, so a silent broadcast in the library is a test failure.
* Warnings are errors (pyproject's ``filterwarnings``); every ignore there says why.
* ``@pytest.mark.slow`` tests run only with ``--runslow``.
* The drivers' persistent compilation cache is off (``JAXFLOW_CACHE_DIR=off``).
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags = f"{_flags} --xla_force_host_platform_device_count=4".strip()
os.environ["XLA_FLAGS"] = _flags
# The drivers keep compiled programs in a per-user cache folder; the suite writes nothing to the
# user's home (tests/test_compile_cache.py points the cache at temporary folders instead).
os.environ["JAXFLOW_CACHE_DIR"] = "off"
# Five pool threads per worker, not the drivers' max(8, 4 × cores): on 2 cores with two workers,
# 8 threads per worker split every batched QR/SVD into more tasks than cores (a vmapped batch of
# 64 QRs of 256×128: 4.7 CPU-s at 8 threads, 0.33 at 4), and a hang still needs more blocked
# decompositions than the 4 fake devices can make (docs/platform.md).
os.environ.setdefault("NPROC", "5")

from jaxflow import _platform  # noqa: E402

# The suite is a driver: it sizes XLA:CPU's pool before any test starts the backend, and compiles
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

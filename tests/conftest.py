"""Test configuration: strict JAX settings and four fake CPU devices for the sharding tests.

* ``--xla_force_host_platform_device_count=4`` must be set before JAX initialises its backends.
* Rank promotion raises, so a silent broadcast in the library is a test failure.
* Warnings are errors (pyproject's ``filterwarnings``); every ignore there says why.
* ``@pytest.mark.slow`` tests run only with ``--runslow``.
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=4".strip()

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

"""A module that fails while importing."""

import jax_no_such_package_xyz  # noqa: F401


def build():
    pass

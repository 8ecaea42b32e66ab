"""What a report section is handed: where to write, how big to run, a key, shared results."""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import jax


class Context(NamedTuple):
    """What a section needs: where to write, how big to run, a key, and results to share."""

    folder: str
    quick: bool
    key: jax.Array
    shared: dict  # results computed once and read by several sections (one compiled call)
    lock: threading.Lock  # sections run on worker threads; `shared` is filled under this lock

    def once(self, name, compute):
        """``compute()`` the first time ``name`` is asked for in this run, the same result after."""
        with self.lock:
            if name not in self.shared:
                self.shared[name] = compute()
            return self.shared[name]

    def size(self, full, quick):
        """``quick`` in a quick run, ``full`` otherwise."""
        return quick if self.quick else full

    def save(self, ax, name: str) -> str:
        """Saves the figure of ``ax`` as ``name`` in the report folder; returns the file name."""
        from jaxflow.plotting import save_figure

        save_figure(ax, os.path.join(self.folder, name))
        return name

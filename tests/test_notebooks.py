"""Every notebook is stored without outputs, calls only names and keywords jaxflow has, and runs
top to bottom at small sizes.

Running a notebook starts a kernel and compiles everything it shows (10-60 s each on 2 cores), so
the runs are ``slow`` (``pytest --runslow``; ``.ci/run`` runs them after the suite, every landing).
The suite checks every notebook's code against the library statically: each code cell compiles,
every ``jaxflow`` name it imports or reads exists (and is not deprecated), and every keyword it
passes to a jaxflow callable is one the callable takes.
"""

import ast
import inspect
import os
import pathlib
import warnings

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def _jaxflow_calls(tree):
    """Yield (dotted name, keyword names) for every jaxflow name the code reads, calls included.

    Names are followed from ``import jaxflow [as jf]``, ``import jaxflow.x as y`` and ``from
    jaxflow[.x] import a [as b]``; a keyword list is ``None`` for a name that is read, not called.
    """
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jaxflow":
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else "jaxflow"
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jaxflow":
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                yield f"{node.module}.{alias.name}", None

    def dotted(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in bound:
            return ".".join([bound[node.id], *reversed(parts)])
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := dotted(node.func)):
            yield name, [k.arg for k in node.keywords if k.arg is not None]
        elif isinstance(node, ast.Attribute) and (name := dotted(node)):
            yield name, None


def _resolve(dotted_name):
    import importlib

    parts = dotted_name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted_name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_names_and_keywords_jaxflow_has(path):
    notebook = nbformat.read(path, as_version=4)
    source = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    tree = ast.parse(source, filename=path.name)
    checked = 0
    for name, keywords in _jaxflow_calls(tree):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a deprecated name in a notebook is a failure
            try:
                obj = _resolve(name)
            except (AttributeError, ImportError) as error:
                pytest.fail(f"{path.name} uses {name}, which jaxflow does not have: {error}")
        checked += 1
        if not keywords or not callable(obj):
            continue
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            continue
        unknown = [k for k in keywords if k not in signature.parameters]
        assert not unknown, f"{path.name} calls {name} with unknown keywords {unknown}"
    assert checked, f"{path.name} uses no jaxflow name the check could follow"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("JAXFLOW_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel is a fresh process: give it this checkout, not whatever jaxflow is installed.
    root = str(path.parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()

"""The package's layers, read from the source: who may import whom.

Every import of every module (function-level ones included) is read with ``ast``. A module may
import only from its own layer or a lower one, the imports form no cycle, no private name
(``_x``) is imported from another package (the shared private modules excepted), and ``import
jaxflow`` stays light. :data:`LAYERS` is the one statement of the order.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxflow"

# Lowest first. A module belongs to the layer of the longest prefix that names it ("jaxflow"
# itself, the public API that re-exports the rest, only by exact name). The theory sits beside
# the measurements in the design: it is the mathematics of the activations and variances alone, so
# it comes right above the leaves and imports nothing that builds or measures a network. The
# public API re-exports the drivers (sweeps, experiments), and the report and figures are written
# with it, so it sits between the two.
LAYERS = (
    ("leaves", ("jaxflow._checks", "jaxflow._deprecation", "jaxflow._files", "jaxflow._numerics",
                "jaxflow._platform", "jaxflow._registry", "jaxflow._status", "jaxflow._text",
                "jaxflow.activations", "jaxflow.data", "jaxflow.initializers")),
    ("theory", ("jaxflow.theory",)),
    ("models", ("jaxflow.models",)),
    ("chain engine", ("jaxflow.jacobians", "jaxflow.chain", "jaxflow._chain_inputs",
                      "jaxflow._chain_kernels")),
    ("measurements", ("jaxflow.gradients", "jaxflow.spectra", "jaxflow.bounds", "jaxflow.blocks")),
    ("drivers", ("jaxflow.sweeps", "jaxflow.experiments")),
    ("public API", ("jaxflow",)),
    ("presentation", ("jaxflow.report", "jaxflow.plotting")),
    ("CLI", ("jaxflow.cli", "jaxflow.__main__")),
)  # fmt: skip

# Private modules any module may import from.
SHARED_PRIVATE = (
    "jaxflow._chain_inputs",
    "jaxflow._chain_kernels",
    "jaxflow._checks",
    "jaxflow._deprecation",
    "jaxflow._files",
    "jaxflow._numerics",
    "jaxflow._platform",
    "jaxflow._status",
    "jaxflow._text",
)

# Known violations, as (importer, imported module or "module:name").
# fixed by the split/engine work; remove when merged.
ALLOWED = {
    "upward": {
        # Deprecated names, kept one release: each shim fetches the renamed object lazily.
        ("jaxflow._deprecation", "jaxflow.gradients.monitoring"),
        ("jaxflow._deprecation", "jaxflow.gradients.stats"),
        ("jaxflow._deprecation", "jaxflow.theory.results"),
        ("jaxflow.experiments", "jaxflow.report.reproduce"),
        ("jaxflow.theory", "jaxflow.bounds"),
        ("jaxflow.sweeps.reference", "jaxflow"),  # a script: python -m jaxflow.sweeps.reference
    },
    "private": set(),
    "cycle": set(),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def layer_of(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact = prefix == "jaxflow"
            if module == prefix or (not exact and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[0]


def imports(module: str):
    """(imported module, imported name or None) for every jaxflow import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # `from jaxflow import _platform`: a module
                    yield submodule, None
                else:
                    yield source, alias.name


def _jaxflow_imports(module):
    return [(m, n) for m, n in imports(module) if m == "jaxflow" or m.startswith("jaxflow.")]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_imports():
    upward = set()
    for module in MODULES:
        for imported, _ in _jaxflow_imports(module):
            if layer_of(imported) > layer_of(module):
                upward.add((module, imported))
    assert upward <= ALLOWED["upward"], sorted(upward - ALLOWED["upward"])
    assert not ALLOWED["upward"] - upward, (
        f"fixed; remove from ALLOWED: {ALLOWED['upward'] - upward}"
    )


def _package_of(module):
    return module if _is_package(module) else module.rpartition(".")[0]


def test_no_private_names_across_packages():
    private = set()
    for module in MODULES:
        for imported, name in imports(module):
            if imported.startswith("jax._src") and module != "jaxflow._platform":
                private.add((module, imported))
            if not imported.startswith("jaxflow") or imported in SHARED_PRIVATE:
                continue
            if _package_of(module) == _package_of(imported):
                continue
            owner = imported if imported in MODULES and not _is_package(imported) else None
            if owner and any(p.startswith("_") for p in owner.split(".")[1:]):
                private.add((module, imported))
            if name and name.startswith("_"):
                private.add((module, f"{imported}:{name}"))
    assert private <= ALLOWED["private"], sorted(private - ALLOWED["private"])
    assert not ALLOWED["private"] - private, (
        f"fixed; remove from ALLOWED: {ALLOWED['private'] - private}"
    )


def _module_level_edges():
    """module → jaxflow modules that importing it runs (its module-level import statements)."""
    edges = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        statements = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for block in tree.body:  # `if TYPE_CHECKING:` / `try:` blocks at module level
            if isinstance(block, (ast.If, ast.Try)):
                statements += [n for n in block.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        targets = {m for n in statements for m, _ in _imports_of(module, n)}
        edges[module] = {t for t in targets if t in MODULES} - {module}
    return edges


def _imports_of(module, tree):
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                for k in range(1, alias.name.count(".") + 2):  # `import a.b` runs a, then a.b
                    yield ".".join(alias.name.split(".")[:k]), None
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            source = (
                ".".join(
                    base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                )
                if node.level
                else node.module
            )
            yield source, None
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    yield f"{source}.{alias.name}", None


def test_no_import_cycles():
    edges = _module_level_edges()
    # A package's __init__ runs before its submodules; a submodule importing its own package is
    # not a cycle of its own (the package is already in sys.modules), so only edges that leave a
    # module's package, or go from a package into its submodules, count.
    graph = {
        m: {t for t in targets if not (m.startswith(t + ".") and _is_package(t))}
        for m, targets in edges.items()
    }
    cycles, state = set(), {}

    def visit(node, stack):
        state[node] = "open"
        for target in graph.get(node, ()):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target]
                cycles.add(" → ".join(cycle))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles <= ALLOWED["cycle"], sorted(cycles - ALLOWED["cycle"])


HEAVY = (
    "matplotlib",
    "zarr",
    "xarray",
    "jaxflow.report",
    "jaxflow.plotting",
)


def test_import_jaxflow_is_light():
    # One fresh interpreter, three moments: after `import jaxflow`; after `import jaxflow.data`,
    # which needs NumPy only (scikit-learn is imported by `digits()`, not before); after reading a
    # lazily exported experiment (`jaxflow.compare_activations`).
    heavy = f"[m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}]"
    data_heavy = "[m for m in ('sklearn', 'matplotlib', 'xarray', 'torch') if m in sys.modules]"
    probe = (
        "import sys, os; import jaxflow\n"
        f"print(repr({heavy}), os.environ.get('NPROC'))\n"
        "import jaxflow.data\n"
        f"print(repr({data_heavy}).replace(' ', ''))\n"
        "jaxflow.compare_activations\n"
        f"print(repr({heavy}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT).stdout.split()  # fmt: skip
    assert out == ["[]", "None", "[]", "[]"]  # nothing heavy loaded, and no platform setting made

"""Bad input gets a clear error naming the argument — never a silent wrong number or a traceback
from inside JAX. Each row was, before its fix, a silently wrong result (a longer chain from
another model's variables, a NaN kernel from a NaN variance, a broadcast target) or an opaque
error (an ``IndexError`` from a status code, a shape error from inside ``jnp``, a "scan body
carry" error, a ``RecursionError``, an ``OverflowError`` from a huge integer, a traceback from a
read-only folder), or is a refusal that must stay one.

One table, :data:`CASES`, for the API and every subcommand of the ``jaxflow`` command:

* an API row expects an exception type and a message (a regex) that names the argument;
* a CLI row (``expected == 2``) runs :func:`jaxflow.cli.main` in this process and expects exit
  status 2, nothing on stdout and one line on stderr matching the message, with no traceback.

Every row also checks that nothing on disk changed: the files the rows point at (an existing
file, a read-only folder, a folder that already holds figures) are snapshotted before and after,
and no temporary or partial file is left. Rows fail before any compilation where they can; the
few that compile say so.
"""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import types

import jax
import jax.numpy as jnp
import optax
import pytest

import jaxflow as jf
import jaxflow._files
from jaxflow.cli import main

USER_MODULE = """
import jax, jax.numpy as jnp, jaxflow as jf

def _model():
    return jf.mlp(2, 4, in_dim=3)

def wrong():
    return 3

def raises():
    raise KeyError("no data here")

def not_a_model():
    return ("model", {}, jnp.ones((2, 3)))

def unknown_keys():
    return {"model": _model(), "x": jnp.ones((2, 3)), "lables": 1}

def loss_not_callable():
    return {"loss_fn": 3, "params": {}, "batch": 1}

def no_examples():
    return _model(), {"params": {}}, jnp.ones((0, 3))  # refused before the variables are read
"""


def _make_read_only(path):
    """Makes the folder ``path`` read-only for this process, also when it runs as root (where
    permission bits are not enforced: then the immutable attribute, if ``chattr`` can set it).
    Returns the command that undoes it, or ``None`` if the folder could not be made read-only."""
    os.chmod(path, 0o555)
    if os.geteuid() != 0:
        return ["chmod", "755", str(path)]
    try:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return ["chattr", "-i", str(path)]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    model = jf.mlp(depth=3, width=4, in_dim=4, out_dim=2)
    x = jnp.ones(4)
    e = types.SimpleNamespace(
        root=root,
        model=model,
        variables=model.init(jax.random.key(0), x),
        x=x,
        deeper=jf.mlp(depth=6, width=4, in_dim=4, out_dim=2).init(jax.random.key(0), x),
        file=str(root / "a_file.txt"),  # an existing file the user did not ask to overwrite
        full=str(root / "full"),  # a folder that already holds things
        empty=str(root / "empty"),  # an existing empty folder
        modules=root / "modules",
    )
    (root / "a_file.txt").write_text("the user's data\n")
    os.mkdir(e.full)
    (root / "full" / "heatmap_grad_ratio.png").write_text("an earlier figure\n")
    os.mkdir(e.empty)
    e.modules.mkdir()
    (e.modules / "user_models.py").write_text(USER_MODULE)
    (e.modules / "raises_at_import.py").write_text("raise RuntimeError('no GPU here')\n")
    (e.modules / "syntax_error.py").write_text("def build(:\n")
    e.module = str(e.modules / "user_models.py")
    for name, text in {
        "malformed.toml": "depth = [2, 3\n",
        "unknown_key.toml": "depth = [2]\nwidht = 4\n",
        "empty_grid.toml": "depth = []\n",
        "nan_init.toml": "depth = [2]\ninit = [[nan, 0.0]]\n",
        "wrong_type.toml": "depth = 'deep'\n",
    }.items():
        (root / name).write_text(text)
    e.toml = lambda name: str(root / name)
    read_only = root / "read_only"
    read_only.mkdir()
    undo = _make_read_only(read_only)
    e.read_only = str(read_only) if undo else None
    yield e
    if undo:
        subprocess.run(undo, check=True)


def _read_only(e, *parts):
    if e.read_only is None:
        pytest.skip("this process cannot make a folder read-only (root without chattr)")
    return os.path.join(e.read_only, *parts)


class _FullDisk(io.FileIO):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _on_full_disk(call):
    """Runs ``call()`` with every file jaxflow writes failing as on a full disk (ENOSPC at the
    first write; the temporary file itself is created, so its removal is checked too)."""
    real = jaxflow._files._open_temp
    jaxflow._files._open_temp = lambda path: _FullDisk(path, "xb")
    try:
        return call()
    finally:
        jaxflow._files._open_temp = real


class _OnFullDisk(list):
    """The argv of a CLI row run with every file jaxflow writes failing as on a full disk."""


def _new_axes():
    from jaxflow.plotting import new_axes

    return new_axes()


def _save(path, **kwargs):
    from jaxflow.plotting import save_figure

    return save_figure(_new_axes(), path, **kwargs)


def _write_report(folder):
    from jaxflow.report import write_report

    return write_report([], folder, {"title": "t"})


def _reproduce(out, **kwargs):
    from jaxflow.report.reproduce import reproduce

    return reproduce(out, **{"quick": True, "sections": ("dead_relu",), "progress": None, **kwargs})


def _grid(**fields):
    return jf.Grid(**{"depth": [2], "width": 4, "seeds": 1, "batch": 1, **fields})


def _sweep(e, *flags):
    """A tiny ``jaxflow sweep`` command line with ``flags``."""
    return ["sweep", "--depth", "2", "--width", "4", "--seeds", "1", "--batch", "1",
            "--activation", "tanh", "--init", "he", "--quiet", *flags]  # fmt: skip


def _train(*flags):
    """A tiny ``jaxflow trainability`` command line with ``flags``."""
    return ["trainability", "--depth", "2", "--sigma-w2", "1", "--width", "4", "--seeds", "1",
            "--steps", "2", "--data", "teacher-student", "--quiet", *flags]  # fmt: skip


CLI = 2  # a CLI row: exit status 2, one line on stderr

CASES = [
    # (id, call(env) -> result, or -> argv for a CLI row, exception or CLI, message)
    # -- the API: models, chains and their inputs
    ("jacobian_chain: a deeper model's variables",
     lambda e: jf.jacobian_chain(e.model, e.deeper, e.x),
     ValueError, r"variables hold 6 stacked blocks; this MLP has depth=3"),
    ("log_spectrum: a deeper model's variables",
     lambda e: jf.log_spectrum(e.model, e.deeper, e.x),
     ValueError, r"variables hold 6 stacked blocks"),
    ("chain_rule_check: y of another shape",
     lambda e: jf.chain_rule_check(e.model, e.variables, e.x, y=jnp.zeros(5)),
     ValueError, r"y has shape \(5,\); the model predicts \(2,\)"),
    ("chain_rule_check: a scalar y is not broadcast",
     lambda e: jf.chain_rule_check(e.model, e.variables, e.x, y=jnp.zeros(())),
     ValueError, r"y has shape \(\); the model predicts \(2,\)"),
    ("train: y of another width",
     lambda e: jf.train(e.model, e.variables, (jnp.ones((8, 4)), jnp.zeros((8, 3))),
                        optax.sgd(0.1), 2),
     ValueError, r"data y has batches of shape \(8, 3\); the model predicts \(8, 2\)"),
    ("jacobian_chain: complex x",
     lambda e: jf.jacobian_chain(e.model, e.variables, e.x.astype(jnp.complex64)),
     TypeError, r"x has dtype complex64; it must be real floating point"),
    ("jacobian_chain: integer x",
     lambda e: jf.jacobian_chain(e.model, e.variables, jnp.ones(4, jnp.int32)),
     TypeError, r"x has dtype int32; it must be real floating point"),
    ("jacobian_chain: 3-D x (was a scan body carry error)",
     lambda e: jf.jacobian_chain(e.model, e.variables, jnp.ones((2, 2, 4))),
     ValueError, r"x has shape \(2, 2, 4\); it must be one input \(4,\) or a batch \(batch, 4\)"),
    ("log_spectrum: 3-D x (was a broadcasting error)",
     lambda e: jf.log_spectrum(e.model, e.variables, jnp.ones((2, 2, 4))),
     ValueError, r"x has shape \(2, 2, 4\)"),
    ("lyapunov_exponents: complex x",
     lambda e: jf.lyapunov_exponents(e.model, e.variables, e.x.astype(jnp.complex64), batches=2),
     TypeError, r"x has dtype complex64"),
    ("gradient_bound: 3-D x (was a scan body carry error)",
     lambda e: jf.gradient_bound(e.model, e.variables, jnp.ones((2, 2, 4))),
     ValueError, r"x has shape \(2, 2, 4\)"),
    ("chain_rule_check: boolean x",
     lambda e: jf.chain_rule_check(e.model, e.variables, jnp.ones(4, bool), jnp.zeros(2)),
     TypeError, r"x has dtype bool"),
    ("activation_gradient_norms: 3-D x",
     lambda e: jf.activation_gradient_norms(e.model, e.variables, jnp.ones((2, 2, 4)),
                                            jnp.zeros((2, 2))),
     ValueError, r"x has shape \(2, 2, 4\)"),
    ("product_spectral_estimates: integer x",
     lambda e: jf.product_spectral_estimates(e.model, e.variables, jnp.ones(4, jnp.int32),
                                             key=jax.random.key(0)),
     TypeError, r"x has dtype int32"),
    ("dead_unit_fraction: complex x",
     lambda e: jf.dead_unit_fraction(e.model, e.variables, e.x.astype(jnp.complex64)),
     TypeError, r"x has dtype complex64"),
    ("mlp: a huge depth",
     lambda e: jf.mlp(depth=10**30, width=4),
     ValueError, r"depth=10+ is not allowed; it must be <= 2147483647"),
    ("mlp: a float depth",
     lambda e: jf.mlp(depth=2.5, width=4),
     ValueError, r"depth=2.5 is not allowed; it must be an integer >= 1"),
    ("residual_stack: width 0",
     lambda e: jf.residual_stack(2, 0),
     ValueError, r"width=0 is not allowed"),
    ("mlp: an unknown activation",
     lambda e: jf.mlp(2, 4, activation="swish"),
     ValueError, r"activation='swish' is not a known activation; valid names are: elu"),
    # -- initialisations and hyper-parameters
    ("init: a NaN variance as a 0-d array",
     lambda e: jf.mlp(depth=2, width=4, init=(jnp.array(jnp.nan), 0.0)),
     ValueError, r"sigma_w2=.*nan.* is not a valid variance"),
    ("init: a negative variance as a 0-d array",
     lambda e: jf.get_init((1.0, jnp.array(-0.5))),
     ValueError, r"sigma_b2=.* is not a valid variance; it must be finite and >= 0"),
    ("init: strings",
     lambda e: jf.get_init(("a", "b")),
     TypeError, r"sigma_w2='a' is not allowed; a variance is a real number"),
    ("init: a bool",
     lambda e: jf.get_init((True, 0.0)),
     TypeError, r"sigma_w2=True is not allowed"),
    ("init: orthogonal with an infinite variance",
     lambda e: jf.orthogonal_at(float("inf")),
     ValueError, r"sigma_w2=inf is not a valid variance"),
    ("mean_field: an infinite sigma_w2",
     lambda e: jf.mean_field("tanh", float("inf"), 0.0),
     ValueError, r"sigma_w2=inf is not allowed: it must be finite and > 0"),
    ("q_star: a NaN sigma_b2",
     lambda e: jf.q_star("tanh", 1.0, float("nan")),
     ValueError, r"sigma_b2=nan is not allowed: it must be finite and >= 0"),
    ("critical_sigma_w2: an infinite sigma_b2",
     lambda e: jf.critical_sigma_w2("tanh", float("inf")),
     ValueError, r"sigma_b2=inf is not allowed"),
    ("mean_field: a string variance",
     lambda e: jf.mean_field("tanh", "1", 0.0),
     TypeError, r"sigma_w2='1' is not a number"),
    ("phase_diagram: an empty grid",
     lambda e: jf.phase_diagram("tanh", [], [0.0, 0.1]),
     ValueError, r"sigma_w2 and sigma_b2 must be non-empty 1-D grids; got shapes \(0,\)"),
    ("Training: a NaN learning rate",
     lambda e: jf.Training(learning_rate=float("nan")),
     ValueError, r"learning_rate=nan is not allowed; it must be a finite number > 0"),
    ("Training: a huge step count",
     lambda e: jf.Training(steps=10**30),
     ValueError, r"steps=10+ is not allowed; it must be <= 2147483647"),
    ("train: a float step count",
     lambda e: jf.train(e.model, e.variables, (jnp.ones((8, 4)), jnp.zeros((8, 2))),
                        optax.sgd(0.1), 2.5),
     ValueError, r"steps=2.5 is not allowed"),
    # -- grids and their TOML files
    ("Grid: an empty depth list",
     lambda e: _grid(depth=[]),
     ValueError, r"depth=\(\) is empty; give at least one value"),
    ("Grid: an empty activation list",
     lambda e: _grid(activation=[]),
     ValueError, r"activation=\(\) is empty"),
    ("Grid: a huge seed count",
     lambda e: _grid(seeds=10**30),
     ValueError, r"seeds=10+ is not allowed; it must be <= 2147483647"),
    ("Grid: an infinite width",
     lambda e: _grid(width=float("inf")),
     ValueError, r"width=inf is not allowed"),
    ("Grid: a NaN init variance",
     lambda e: _grid(init=[(float("nan"), 0.0)]),
     ValueError, r"sigma_w2=nan is not a valid variance"),
    ("Grid.from_toml: malformed TOML",
     lambda e: jf.Grid.from_toml(e.toml("malformed.toml")),
     ValueError, r"malformed.toml: not valid TOML"),
    ("Grid.from_toml: an unknown key",
     lambda e: jf.Grid.from_toml(e.toml("unknown_key.toml")),
     ValueError, r"unknown_key.toml: unknown key 'widht'; allowed keys are: depth"),
    ("Grid.from_dict: a string depth",
     lambda e: jf.Grid.from_dict({"depth": "deep"}),
     ValueError, r"depth='deep' is not allowed"),
    ("sweep: an empty store path",
     lambda e: jf.sweep(_grid(), store=""),
     ValueError, r"store='' is not allowed; pass a folder path"),
    ("sweep: a number for a store path",
     lambda e: jf.sweep(_grid(), store=3),
     TypeError, r"store is a int; pass a folder path"),
    ("sweep: a dict for a grid",
     lambda e: jf.sweep({"depth": [2]}),
     TypeError, r"grid is a dict; pass a jaxflow.Grid"),
    # -- gradients and status codes
    ("gradient_stats: stacked=True",
     lambda e: jf.gradient_stats({"a": jnp.ones(2)}, stacked=True),
     TypeError, r"stacked=True is not allowed; pass .auto., a subtree name"),
    ("gradient_stats: stacked=5",
     lambda e: jf.gradient_stats({"a": jnp.ones(2)}, stacked=5),
     TypeError, r"stacked=5 is not allowed; pass .auto., a subtree name"),
    ("gradient_stats: complex gradients",
     lambda e: jf.gradient_stats({"a": jnp.ones(2, jnp.complex64)}),
     TypeError, r"grads leaf 'a' is complex"),
    ("PredictionStatus.name_of: an unknown code",
     lambda e: jf.PredictionStatus.name_of(99),
     ValueError, r"codes 99 are not all PredictionStatus values; use integers in 0..4"),
    ("GradientStatus.name_of: an unknown code",
     lambda e: jf.GradientStatus.name_of(99),
     ValueError, r"codes 99 are not all GradientStatus values; use integers in 0..3"),
    # -- files: figures, reports
    ("save_figure: onto an existing file",
     lambda e: _save(e.file),
     FileExistsError, r"a_file.txt exists; pass overwrite=True to replace it"),
    ("save_figure: a folder",
     lambda e: _save(e.empty),
     FileExistsError, r"empty is a folder; give a file path"),
    ("save_figure: inside a file",
     lambda e: _save(os.path.join(e.file, "figure.png")),
     NotADirectoryError, r"path: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("save_figure: in a read-only folder",
     lambda e: _save(_read_only(e, "figure.png")),
     PermissionError, r"path=.*read_only.*: cannot write in"),
    ("save_figure: on a full disk",
     lambda e: _on_full_disk(lambda: _save(os.path.join(e.empty, "figure.png"))),
     OSError, r"No space left on device"),
    ("save_figure: overwrite=True on a full disk keeps the old file",
     lambda e: _on_full_disk(lambda: _save(os.path.join(e.full, "heatmap_grad_ratio.png"),
                                           overwrite=True)),
     OSError, r"No space left on device"),
    ("save_figure: a format matplotlib cannot write",
     lambda e: _save(os.path.join(e.empty, "figure.xyz")),
     ValueError, r"path=.*figure.xyz.*: matplotlib cannot write .xyz figures"),
    ("save_figure: an empty path",
     lambda e: _save(""),
     ValueError, r"path='' is not a file path"),
    ("write_report: on a full disk",
     lambda e: _on_full_disk(lambda: _write_report(e.empty)),
     OSError, r"No space left on device"),
    ("reproduce: out is a file",
     lambda e: _reproduce(e.file),
     FileExistsError, r"out=.*a_file.txt' exists and is not a folder"),
    ("reproduce: out is a non-empty folder",
     lambda e: _reproduce(e.full),
     FileExistsError, r"out=.*full' exists and is not empty"),
    ("reproduce: out inside a file",
     lambda e: _reproduce(os.path.join(e.file, "report")),
     NotADirectoryError, r"out: cannot write in"),
    ("reproduce: out in a read-only folder",
     lambda e: _reproduce(_read_only(e, "report")),
     PermissionError, r"out=.*: cannot write in"),
    ("reproduce: out on a full disk",
     lambda e: _on_full_disk(lambda: _reproduce(os.path.join(e.root, "report"))),
     OSError, r"No space left on device"),
    ("reproduce: an empty out",
     lambda e: _reproduce(""),
     ValueError, r"out='' is not a folder path"),
    ("reproduce: a seed beyond 64 bits",
     lambda e: _reproduce(os.path.join(e.root, "report"), seed=2**70),
     ValueError, r"seed=1180591620717411303424 is not allowed; it must be an integer that fits"),
    ("reproduce: jobs=0",
     lambda e: _reproduce(os.path.join(e.root, "report"), jobs=0),
     ValueError, r"jobs=0 is not allowed; it must be an integer >= 1"),
    ("reproduce: an unknown section",
     lambda e: _reproduce(os.path.join(e.root, "report"), sections=("dead_reluu",)),
     ValueError, r"sections=\['dead_reluu'\] are unknown"),
    # -- the command line: jaxflow spectra
    ("cli spectra: a huge --depth (was a TypeError inside MLIR)",
     lambda e: ["spectra", "--depth", str(10**30)],
     CLI, r"jaxflow spectra: argument --depth: 10+ is not allowed; it must be <= 2147483647"),
    ("cli spectra: a huge --width (was out of memory)",
     lambda e: ["spectra", "--width", str(2**40)],
     CLI, r"--width: 1099511627776 is not allowed; it must be <= 2147483647"),
    ("cli spectra: --depth inf",
     lambda e: ["spectra", "--depth", "inf"],
     CLI, r"--depth: 'inf' is not an integer"),
    ("cli spectra: a --seed beyond 64 bits (was an OverflowError)",
     lambda e: ["spectra", "--seed", str(2**70)],
     CLI, r"--seed: 1180591620717411303424 is not allowed; a seed must fit in 64 bits"),
    ("cli spectra: a NaN --init variance",
     lambda e: ["spectra", "--init", "nan,0"],
     CLI, r"jaxflow spectra: sigma_w2=nan is not a valid variance"),
    ("cli spectra: three --init numbers",
     lambda e: ["spectra", "--init", "1,2,3"],
     CLI, r"--init: '1,2,3' is not a pair of variances"),
    # -- jaxflow theory
    ("cli theory: --sigma-w2 inf (was a ValueError traceback)",
     lambda e: ["theory", "--sigma-w2", "inf"],
     CLI, r"--sigma-w2: 'inf' is not allowed; it must be finite"),
    ("cli theory: --sigma-w2 1e400 overflows to inf",
     lambda e: ["theory", "--sigma-w2", "1e400"],
     CLI, r"--sigma-w2: '1e400' is not allowed; it must be finite"),
    ("cli theory: --sigma-b2 inf",
     lambda e: ["theory", "--sigma-b2", "inf"],
     CLI, r"--sigma-b2: 'inf' is not allowed; it must be finite"),
    ("cli theory: --sigma-w2 nan",
     lambda e: ["theory", "--sigma-w2", "nan"],
     CLI, r"--sigma-w2: nan is not allowed; it must be > 0"),
    ("cli theory: a huge --grid (was a MemoryError)",
     lambda e: ["theory", "--phase-diagram", os.path.join(e.root, "p.png"), "--grid", "5000"],
     CLI, r"--grid: 5000 is not allowed; it must be <= 1000"),
    ("cli theory: an infinite --sigma-w2-range",
     lambda e: ["theory", "--phase-diagram", os.path.join(e.root, "p.png"),
                "--sigma-w2-range", "1", "inf"],
     CLI, r"--sigma-w2-range: 'inf' is not allowed; it must be finite"),
    ("cli theory: --phase-diagram onto an existing file",
     lambda e: ["theory", "--phase-diagram", e.file],
     CLI, r"jaxflow theory: .*a_file.txt exists"),
    ("cli theory: --phase-diagram inside a file (was NotADirectoryError)",
     lambda e: ["theory", "--phase-diagram", os.path.join(e.file, "p.png")],
     CLI, r"--phase-diagram: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("cli theory: --phase-diagram in a read-only folder",
     lambda e: ["theory", "--phase-diagram", _read_only(e, "p.png")],
     CLI, r"--phase-diagram=.*: cannot write in"),
    ("cli theory: --phase-diagram in a folder that does not exist",
     lambda e: ["theory", "--phase-diagram", os.path.join(e.root, "nowhere", "p.png")],
     CLI, r"--phase-diagram=.*: the folder .*nowhere' does not exist"),
    ("cli theory: --phase-diagram is a folder",
     lambda e: ["theory", "--phase-diagram", e.empty],
     CLI, r"empty is a folder; give a file path"),
    ("cli theory: --phase-diagram in an unknown format",
     lambda e: ["theory", "--phase-diagram", os.path.join(e.root, "p.xyz")],
     CLI, r"--phase-diagram=.*p.xyz.*: matplotlib cannot write .xyz figures"),
    ("cli theory: --phase-diagram ''",
     lambda e: ["theory", "--phase-diagram", ""],
     CLI, r"--phase-diagram: '' is not a path"),
    # -- jaxflow check
    ("cli check: a target without a function",
     lambda e: ["check", "user_models"],
     CLI, r"'user_models' is not of the form module:function"),
    ("cli check: a module that does not exist",
     lambda e: ["check", "no_such_module_xyz:build"],
     CLI, r"cannot import 'no_such_module_xyz'"),
    ("cli check: a file that does not exist",
     lambda e: ["check", os.path.join(e.root, "nope.py") + ":build"],
     CLI, r"file .*nope.py' does not exist"),
    ("cli check: a module that raises at import",
     lambda e: ["check", str(e.modules / "raises_at_import.py") + ":build"],
     CLI, r"importing it raised RuntimeError: no GPU here"),
    ("cli check: a module with a syntax error",
     lambda e: ["check", str(e.modules / "syntax_error.py") + ":build"],
     CLI, r"importing it raised SyntaxError"),
    ("cli check: a missing function",
     lambda e: ["check", e.module + ":missing"],
     CLI, r"has no function 'missing'"),
    ("cli check: build() returns an int",
     lambda e: ["check", e.module + ":wrong"],
     CLI, r"wrong\(\) returned int; it must return \(model, variables, x\)"),
    ("cli check: build() raises",
     lambda e: ["check", e.module + ":raises"],
     CLI, r"raises\(\) raises KeyError: 'no data here'"),
    ("cli check: build() returns a string for a model",
     lambda e: ["check", e.module + ":not_a_model"],
     CLI, r"returned a tuple whose first entry is a str"),
    ("cli check: build() returns a dict with an unknown key",
     lambda e: ["check", e.module + ":unknown_keys"],
     CLI, r"returned a dict with unknown keys \['lables'\]"),
    ("cli check: a loss_fn that is not a function",
     lambda e: ["check", e.module + ":loss_not_callable"],
     CLI, r"loss_fn is a int, not a function"),
    ("cli check: x with no examples",
     lambda e: ["check", e.module + ":no_examples"],
     CLI, r"x has shape \(0, 3\), no examples"),
    ("cli check: --blocks that is not a regex (was re.error)",
     lambda e: ["check", e.module + ":wrong", "--blocks", "blocks_("],
     CLI, r"--blocks: 'blocks_\(' is not a regular expression"),
    ("cli check: --apply-kwarg with code, never evaluated",
     lambda e: ["check", e.module + ":wrong", "--apply-kwarg", "x=__import__('os').getcwd()"],
     CLI, r"is not a Python literal"),
    # -- jaxflow reproduce
    ("cli reproduce: --out is a file",
     lambda e: ["reproduce", "--out", e.file, "--quick", "--sections", "dead_relu"],
     CLI, r"jaxflow reproduce: out=.*a_file.txt' exists and is not a folder"),
    ("cli reproduce: --out is a non-empty folder",
     lambda e: ["reproduce", "--out", e.full, "--quick", "--sections", "dead_relu"],
     CLI, r"exists and is not empty; choose another --out \(nothing is overwritten\)"),
    ("cli reproduce: --out inside a file (was NotADirectoryError)",
     lambda e: ["reproduce", "--out", os.path.join(e.file, "r"), "--sections", "dead_relu"],
     CLI, r"out: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("cli reproduce: --out in a read-only folder",
     lambda e: ["reproduce", "--out", _read_only(e, "r"), "--sections", "dead_relu"],
     CLI, r"out=.*: cannot write in"),
    ("cli reproduce: a full disk (the INCOMPLETE marker cannot be written)",
     lambda e: _OnFullDisk(["reproduce", "--out", os.path.join(e.root, "r"), "--sections",
                            "dead_relu", "--quiet"]),
     CLI, r"jaxflow reproduce: .*No space left on device"),
    ("cli reproduce: --out '' (was FileNotFoundError)",
     lambda e: ["reproduce", "--out", ""],
     CLI, r"--out: '' is not a path"),
    ("cli reproduce: a huge --jobs",
     lambda e: ["reproduce", "--out", os.path.join(e.root, "r"), "--jobs", str(10**30)],
     CLI, r"--jobs: 10+ is not allowed; it must be <= 2147483647"),
    ("cli reproduce: a --seed beyond 64 bits (was an OverflowError)",
     lambda e: ["reproduce", "--out", os.path.join(e.root, "r"), "--seed", str(2**70)],
     CLI, r"--seed: .* a seed must fit in 64 bits"),
    ("cli reproduce: an unknown section",
     lambda e: ["reproduce", "--sections", "spectrum"],
     CLI, r"--sections: invalid choice: 'spectrum'"),
    # -- jaxflow sweep
    ("cli sweep: --out '' (was a RecursionError)",
     lambda e: _sweep(e, "--out", ""),
     CLI, r"jaxflow sweep: argument --out: '' is not a path"),
    ("cli sweep: --out is a file that is not a store",
     lambda e: _sweep(e, "--out", e.file),
     CLI, r"store=.*a_file.txt' exists and is not a jaxflow sweep store; refusing to overwrite"),
    ("cli sweep: --out inside a file (was NotADirectoryError)",
     lambda e: _sweep(e, "--out", os.path.join(e.file, "s.zarr")),
     CLI, r"--out: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("cli sweep: --out in a read-only folder",
     lambda e: _sweep(e, "--out", _read_only(e, "s.zarr")),
     CLI, r"--out=.*: cannot write in"),
    ("cli sweep: a malformed TOML file",
     lambda e: ["sweep", e.toml("malformed.toml")],
     CLI, r"malformed.toml: not valid TOML"),
    ("cli sweep: an unknown TOML key",
     lambda e: ["sweep", e.toml("unknown_key.toml")],
     CLI, r"unknown key 'widht'"),
    ("cli sweep: an empty grid in TOML",
     lambda e: ["sweep", e.toml("empty_grid.toml")],
     CLI, r"depth=\(\) is empty"),
    ("cli sweep: a NaN variance in TOML",
     lambda e: ["sweep", e.toml("nan_init.toml")],
     CLI, r"sigma_w2=nan is not a valid variance"),
    ("cli sweep: a string depth in TOML",
     lambda e: ["sweep", e.toml("wrong_type.toml")],
     CLI, r"depth='deep' is not allowed"),
    ("cli sweep: a config file that does not exist",
     lambda e: ["sweep", os.path.join(e.root, "nope.toml")],
     CLI, r"config file .*nope.toml' does not exist"),
    ("cli sweep: a huge --depth",
     lambda e: ["sweep", "--depth", str(10**30)],
     CLI, r"--depth: 10+ is not allowed; it must be <= 2147483647"),
    ("cli sweep: --chunk-size 0",
     lambda e: _sweep(e, "--chunk-size", "0"),
     CLI, r"--chunk-size: 0 is not allowed; it must be >= 1"),
    ("cli sweep: --plot is a file",
     lambda e: _sweep(e, "--plot", e.file),
     CLI, r"--plot .*a_file.txt' exists and is not a directory"),
    ("cli sweep: --plot inside a file (was NotADirectoryError after the sweep)",
     lambda e: _sweep(e, "--plot", os.path.join(e.file, "figures")),
     CLI, r"--plot: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("cli sweep: --plot in a read-only folder",
     lambda e: _sweep(e, "--plot", _read_only(e, "figures")),
     CLI, r"--plot=.*: cannot write in"),
    ("cli sweep: --plot already holds the figure (refused before the sweep)",
     lambda e: _sweep(e, "--plot", e.full),
     CLI, r"already holds heatmap_grad_ratio.png; choose another directory"),
    # -- jaxflow trainability
    ("cli trainability: --learning-rate inf",
     lambda e: _train("--learning-rate", "inf"),
     CLI, r"--learning-rate: 'inf' is not allowed; it must be finite"),
    ("cli trainability: --learning-rate nan",
     lambda e: _train("--learning-rate", "nan"),
     CLI, r"--learning-rate: nan is not allowed; it must be > 0"),
    ("cli trainability: --sigma-w2 inf",
     lambda e: _train("--sigma-w2", "inf"),
     CLI, r"--sigma-w2: 'inf' is not allowed; it must be finite"),
    ("cli trainability: a huge --steps (was an OverflowError)",
     lambda e: _train("--steps", str(10**30)),
     CLI, r"--steps: 10+ is not allowed; it must be <= 2147483647"),
    ("cli trainability: a data folder without MNIST",
     lambda e: _train("--data", f"mnist:{e.empty}"),
     CLI, r"--data mnist:.*were not found in"),
    ("cli trainability: an unknown data set",
     lambda e: _train("--data", "imagenet"),
     CLI, r"--data: 'imagenet' is not one of digits, teacher-student"),
    ("cli trainability: --init orthogonal without variances",
     lambda e: _train("--init", "orthogonal:x"),
     CLI, r"'orthogonal:x' is not 'orthogonal:sigma_w2,sigma_b2'"),
    ("cli trainability: --plot is a file",
     lambda e: _train("--plot", e.file),
     CLI, r"--plot .*a_file.txt' is not a directory"),
    ("cli trainability: --plot in a read-only folder (was after training)",
     lambda e: _train("--plot", _read_only(e, "figures")),
     CLI, r"--plot=.*: cannot write in"),
    ("cli trainability: --out inside a file",
     lambda e: _train("--out", os.path.join(e.file, "t.zarr")),
     CLI, r"--out: cannot write in .*a_file.txt.* is a file, not a folder"),
    ("cli trainability: --out in a read-only folder",
     lambda e: _train("--out", _read_only(e, "t.zarr")),
     CLI, r"--out=.*: cannot write in"),
    ("cli trainability: --out ''",
     lambda e: _train("--out", ""),
     CLI, r"--out: '' is not a path"),
    # -- jaxflow itself
    ("cli: no command",
     lambda e: [],
     CLI, r"the following arguments are required: COMMAND"),
    ("cli: an unknown command",
     lambda e: ["spectrum"],
     CLI, r"argument COMMAND: invalid choice: 'spectrum'"),
]  # fmt: skip


def _snapshot(root):
    """Every file under ``root`` (bytecode caches aside) with its size and content hash."""
    import hashlib

    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
        for name in dirs:
            files.setdefault(os.path.relpath(os.path.join(folder, name), root) + "/", "folder")
    return files


@pytest.mark.parametrize(
    "call, expected, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_by_name(env, call, expected, message, capsys):
    before = _snapshot(env.root)
    if expected == CLI:
        argv = call(env)
        capsys.readouterr()
        if isinstance(argv, _OnFullDisk):
            assert _on_full_disk(lambda: main(list(argv))) == 2
        else:
            assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1, captured.err
        assert "Traceback" not in captured.err
        assert captured.err.startswith("jaxflow"), captured.err
        assert re.search(message, captured.err), captured.err
    else:
        with pytest.raises(expected, match=message):
            call(env)
    assert _snapshot(env.root) == before  # nothing written, nothing overwritten, nothing left


def test_the_table_is_large_and_covers_every_subcommand():
    from jaxflow.cli import _SUBCOMMANDS

    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
    for command in (m.__name__.rpartition(".")[2] for m in _SUBCOMMANDS):
        assert any(c[0].startswith(f"cli {command}:") for c in CASES), command


def test_the_deprecated_status_name_refuses_an_unknown_code_too():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"codes 99 are not"):
        jf.status_name(99)


def test_narrow_float_inputs_are_upcast_to_the_parameters_dtype():
    """A float16/bfloat16 input of a float32 residual stack (its first hidden state) failed
    inside the scan; it is now upcast exactly, as the MLP's input layer always did."""
    import numpy as np

    model = jf.residual_stack(3, 4)
    x = jax.random.normal(jax.random.key(1), (4,)).astype(jnp.bfloat16)
    variables = model.init(jax.random.key(0), x.astype(jnp.float32))
    wide = jf.layer_jacobians(model, variables, x.astype(jnp.float32))  # exact: a widening cast
    for narrow in (x, x.astype(jnp.float16)):  # bfloat16 → float16 is exact for these values
        np.testing.assert_array_equal(jf.layer_jacobians(model, variables, narrow), wide)


def test_a_store_that_asks_for_pickle_is_refused_without_running_it(tmp_path):
    """What the README promises: nothing is unpickled from a store. A store whose array names a
    pickle codec, with a chunk that would run code when unpickled, is refused and the code never
    runs (zarr 3 has no pickle codec; jaxflow writes none)."""
    import hashlib
    import json
    import pickle

    import zarr

    from jaxflow.sweeps.store import FORMAT, RESULT_RECORD

    path, ran = tmp_path / "hostile.zarr", tmp_path / "the store's code ran"
    root = zarr.open_group(path, mode="w", zarr_format=3, attributes={"jaxflow_sweep": FORMAT})
    root.create_group("result").create_array("x", shape=(2,), dtype="f8", dimension_names=["i"])
    meta_path = path / "result" / "x" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle", "configuration": {"protocol": 5}}]
    meta_path.write_text(json.dumps(meta))

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(ran),))

    (path / "result" / "x" / "c").mkdir(parents=True, exist_ok=True)
    (path / "result" / "x" / "c" / "0").write_bytes(pickle.dumps(RunsCode()))
    # A completion record, so that open_sweep goes on to read result/ to verify it.
    grid_sha256 = hashlib.sha256(b"None").hexdigest()  # the store names no grid
    (path / RESULT_RECORD).write_text(json.dumps({"format": FORMAT, "grid_sha256": grid_sha256}))
    with pytest.raises(Exception, match="pickle"):
        jf.open_sweep(str(path))
    assert not ran.exists()

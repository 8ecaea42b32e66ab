"""One status vocabulary: the IntEnums, their names, and the old names kept for one release."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
import jaxflow.gradients
import jaxflow.gradients.monitoring
import jaxflow.gradients.stats
import jaxflow.theory
import jaxflow.theory.results


def test_gradient_status_codes_and_names():
    assert [int(s) for s in jf.GradientStatus] == [0, 1, 2, 3]
    assert [s.name for s in jf.GradientStatus] == ["OK", "VANISHING", "EXPLODING", "NONFINITE"]
    grads = {
        "a": jnp.ones(2),
        "b": jnp.full(2, 1e-9),
        "c": jnp.full(2, 1e4),
        "d": jnp.array([jnp.nan]),
    }
    stats = jax.jit(jf.gradient_stats)(grads)
    assert stats.status.tolist() == [
        jf.GradientStatus.OK,
        jf.GradientStatus.VANISHING,
        jf.GradientStatus.EXPLODING,
        jf.GradientStatus.NONFINITE,
    ]
    assert jf.GradientStatus.name_of(stats.status).tolist() == [
        "ok",
        "vanishing",
        "exploding",
        "nonfinite",
    ]
    assert jf.GradientStatus.name_of(jf.GradientStatus.EXPLODING) == "exploding"
    assert jf.GradientStatus.name_of(np.array([[3], [0]])).tolist() == [["nonfinite"], ["ok"]]
    assert (
        stats.leaves_with(jf.GradientStatus.VANISHING) == stats.leaves_with("vanishing") == ("b",)
    )
    with pytest.raises(ValueError, match="GradientStatus"):
        jf.GradientStatus.name_of(4)
    with pytest.raises(ValueError, match="not known"):
        stats.leaves_with("bad")


def test_prediction_status_codes_and_names():
    assert [(s.name, int(s)) for s in jf.PredictionStatus] == [
        ("OK", 0),
        ("MARGINAL", 1),
        ("DIVERGES", 2),
        ("INVALID", 3),
        ("NOT_FOUND", 4),
    ]
    mf = jf.mean_field("relu", jnp.array([1.0, 3.0]), 0.0)
    assert mf.status.tolist() == [jf.PredictionStatus.OK, jf.PredictionStatus.DIVERGES]
    assert jf.PredictionStatus.name_of(mf.status).tolist() == ["ok", "diverges"]
    assert jf.PredictionStatus.name_of(4) == "not_found"


def _warns_same(get, expected):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        value = get()
    assert value is expected or value == expected


@pytest.mark.parametrize(
    "module, name, expected",
    [
        (jf, "STATUSES", ("ok", "vanishing", "exploding", "nonfinite")),
        (jaxflow.gradients, "STATUSES", ("ok", "vanishing", "exploding", "nonfinite")),
        (jaxflow.gradients.stats, "STATUSES", ("ok", "vanishing", "exploding", "nonfinite")),
        (jf, "STATUS_NAMES", ("ok", "marginal", "diverges", "invalid", "not_found")),
        (jaxflow.theory, "STATUS_NAMES", ("ok", "marginal", "diverges", "invalid", "not_found")),
        (
            jaxflow.theory.results,
            "STATUS_NAMES",
            ("ok", "marginal", "diverges", "invalid", "not_found"),
        ),
        (jaxflow.theory, "OK", jf.PredictionStatus.OK),
        (jaxflow.theory, "DIVERGES", 2),
        (jaxflow.theory.results, "NOT_FOUND", 4),
        (jf, "monitor", jf.gradient_monitor),
        (jaxflow.gradients, "monitor", jf.gradient_monitor),
        (jaxflow.gradients.monitoring, "monitor", jf.gradient_monitor),
    ],
)
def test_old_names_warn_and_return_the_same(module, name, expected):
    _warns_same(lambda: getattr(module, name), expected)


def test_old_functions_warn_and_return_the_same_names():
    stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
    with pytest.warns(DeprecationWarning, match="GradientStatus.name_of"):
        old = stats.status_names()
    assert old.tolist() == jf.GradientStatus.name_of(stats.status).tolist() == ["vanishing", "ok"]
    mf = jf.mean_field("relu", jnp.array([1.0, 3.0]), 0.0)
    with pytest.warns(DeprecationWarning, match="PredictionStatus.name_of"):
        old = jf.status_name(mf.status)
    assert old.tolist() == ["ok", "diverges"]
    with pytest.warns(DeprecationWarning):
        assert jf.status_name(mf.status[1]) == "diverges"


def test_new_names_do_not_warn_and_unknown_names_still_raise():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jf.gradient_monitor().init({"w": jnp.ones(2)})
        jf.GradientStatus.name_of(0)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jf.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxflow.theory.nope  # noqa: B018


def test_the_gradients_package_does_not_import_the_cli():
    import ast
    import pathlib

    for path in pathlib.Path(jaxflow.gradients.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert not any(n.startswith("jaxflow.cli") for n in names), path

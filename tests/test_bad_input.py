"""Bad input gets a clear error naming the argument — never a silent wrong number or a traceback
from inside JAX. Each row was, before its fix, a silently wrong result (a longer chain from
another model's variables, a NaN kernel from a NaN variance, a broadcast target) or an opaque
error (an ``IndexError`` from a status code, a shape error from inside ``jnp``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

import jaxflow as jf


@pytest.fixture(scope="module")
def small():
    model = jf.mlp(depth=3, width=4, in_dim=4, out_dim=2)
    x = jnp.ones(4)
    variables = model.init(jax.random.key(0), x)
    deeper = jf.mlp(depth=6, width=4, in_dim=4, out_dim=2).init(jax.random.key(0), x)
    return model, variables, x, deeper


CASES = [
    # (id, call(model, variables, x, deeper), exception, message)
    ("jacobian_chain: a deeper model's variables",
     lambda m, v, x, d: jf.jacobian_chain(m, d, x),
     ValueError, r"variables hold 6 stacked blocks; this MLP has depth=3"),
    ("log_spectrum: a deeper model's variables",
     lambda m, v, x, d: jf.log_spectrum(m, d, x),
     ValueError, r"variables hold 6 stacked blocks"),
    ("chain_rule_check: y of another shape",
     lambda m, v, x, d: jf.chain_rule_check(m, v, x, y=jnp.zeros(5)),
     ValueError, r"y has shape \(5,\); the model predicts \(2,\)"),
    ("chain_rule_check: a scalar y is not broadcast",
     lambda m, v, x, d: jf.chain_rule_check(m, v, x, y=jnp.zeros(())),
     ValueError, r"y has shape \(\); the model predicts \(2,\)"),
    ("train: y of another width",
     lambda m, v, x, d: jf.train(m, v, (jnp.ones((8, 4)), jnp.zeros((8, 3))), optax.sgd(0.1), 2),
     ValueError, r"data y has batches of shape \(8, 3\); the model predicts \(8, 2\)"),
    ("init: a NaN variance as a 0-d array",
     lambda m, v, x, d: jf.mlp(depth=2, width=4, init=(jnp.array(jnp.nan), 0.0)),
     ValueError, r"sigma_w2=.*nan.* is not a valid variance"),
    ("init: a negative variance as a 0-d array",
     lambda m, v, x, d: jf.get_init((1.0, jnp.array(-0.5))),
     ValueError, r"sigma_b2=.* is not a valid variance; it must be finite and >= 0"),
    ("init: strings",
     lambda m, v, x, d: jf.get_init(("a", "b")),
     TypeError, r"sigma_w2='a' is not allowed; a variance is a real number"),
    ("init: a bool",
     lambda m, v, x, d: jf.get_init((True, 0.0)),
     TypeError, r"sigma_w2=True is not allowed"),
    ("init: orthogonal with an infinite variance",
     lambda m, v, x, d: jf.orthogonal_at(float("inf")),
     ValueError, r"sigma_w2=inf is not a valid variance"),
    ("gradient_stats: stacked=True",
     lambda m, v, x, d: jf.gradient_stats({"a": jnp.ones(2)}, stacked=True),
     TypeError, r"stacked=True is not allowed; pass a subtree name"),
    ("PredictionStatus.name_of: an unknown code",
     lambda m, v, x, d: jf.PredictionStatus.name_of(99),
     ValueError, r"codes 99 are not all PredictionStatus values; use integers in 0..4"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, exception, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_by_name(small, call, exception, message):
    with pytest.raises(exception, match=message):
        call(*small)


def test_the_deprecated_status_name_refuses_an_unknown_code_too():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"codes 99 are not"):
        jf.status_name(99)

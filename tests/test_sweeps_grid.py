"""The sweep grid reads every init scheme from the registry: its weight family and variances are
the scheme's own, checked against draws from the scheme's initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow as jf
from jaxflow.initializers import InitScheme
from jaxflow.sweeps.grid import init_family, init_variances, kernel_variances
from test_initializers import check_draws

WIDTH, OUT_DIM = 32, 1
ENTRIES = sorted(jf.INIT_SCHEMES) + [(1.1, 0.05)]


def _sweepable(entry):
    scheme = jf.get_init(entry)
    return scheme.bias_fan_in_scale is None


def _draws(init, shape, samples):
    keys = jax.random.split(jax.random.key(3), samples)
    return np.asarray(jax.vmap(lambda k: init(k, shape, jnp.float32))(keys), np.float64)


@pytest.mark.parametrize("entry", ENTRIES, ids=str)
def test_sweep_variances_are_the_schemes_own(entry):
    scheme = jf.get_init(entry)
    if not _sweepable(entry):
        # The sweep kernel draws zero or N(0, σ_b²) biases only: a scheme it cannot draw is refused
        # by the grid, never drawn as something else.
        with pytest.raises(ValueError, match="biases"):
            jf.Grid(depth=[2], init=[entry])
        with pytest.raises(ValueError, match="biases"):
            kernel_variances(entry, WIDTH)
        return
    family = init_family(entry)
    hidden, readout, bias = (float(v) for v in kernel_variances(entry, WIDTH, OUT_DIM))
    if family == "orthogonal":  # the sweep passes gain² to jf.orthogonal; entries have gain²/n
        hidden, readout = hidden / WIDTH, readout / WIDTH
    check_draws(_draws(scheme.kernel_init, (WIDTH, WIDTH), 500), family, hidden, f"{entry} hidden")
    check_draws(
        _draws(scheme.kernel_init, (WIDTH, OUT_DIM), 4000), family, readout, f"{entry} readout"
    )
    b = _draws(scheme.bias_init, (WIDTH,), 4000)
    if bias == 0:
        assert not b.any()
    else:
        check_draws(b, "normal", bias, f"{entry} bias")
    assert init_variances(entry) == pytest.approx((scheme.sigma_w2, scheme.sigma_b2))


def test_grid_uses_every_sweepable_scheme():
    names = [n for n in sorted(jf.INIT_SCHEMES) if _sweepable(n)]
    grid = jf.Grid(depth=[2], activation=["tanh"], init=names, width=4, seeds=1)
    assert grid.init == tuple(names)


def test_an_undescribed_family_raises_instead_of_falling_back(monkeypatch):
    he = jf.get_init("he")
    odd = InitScheme("laplace", he.kernel_init, he.bias_init, 2.0, family="laplace")
    monkeypatch.setitem(jf.INIT_SCHEMES._entries, "laplace", odd)
    with pytest.raises(ValueError, match="weight family 'laplace'"):
        init_family("laplace")
    with pytest.raises(ValueError, match="weight family 'laplace'"):
        jf.Grid(depth=[2], init=["laplace"])

"""The notes' vanishing-gradient bound, reproduced: sigmoid's 0.25^(L−1), exact and where it fails.

:func:`sigmoid_bound` — the notes' claim ‖∂L/∂z^[1]‖ ≤ 0.25^(L−1)‖∂L/∂z^[L]‖ for sigmoid, in an
exact construction where it is tight, and over random initialisations, where it is guaranteed when
∏‖W^[l]‖₂ ≤ 1 (sufficient, not necessary) — one compiled call (``jax.jit`` of ``vmap``/``lax.map`` over seeds)
returning a NamedTuple that :mod:`jaxflow.plotting` draws. The helpers here (inputs at the
fixed point, argument checks) are shared with :mod:`jaxflow.experiments.mean_field`.

Inputs are drawn **at the mean-field fixed point** (here and in :mod:`.mean_field`):
h_0 = φ(√q* g) with g ~ N(0, I_n), so the first block's pre-activations already have variance q*
(σ_w² E[φ(√q* z)²] + σ_b² = q*) and the theory, which is stated at q*, applies from the first
layer instead of after a transient. Where q* is infinite or undetermined (ReLU at σ_w² ≥ 2) the
inputs use q = 1; for positively homogeneous φ nothing depends on it.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import jaxflow.theory as theory
from jaxflow import _platform
from jaxflow._numerics import HIGHEST
from jaxflow.activations import get_activation
from jaxflow.bounds import GradientBound, gradient_bound
from jaxflow.chain import accumulate_chain, outputs
from jaxflow.initializers import INIT_SCHEMES, InitScheme, gaussian, get_init, orthogonal
from jaxflow.models import mlp

__all__ = ["SigmoidBound", "sigmoid_bound"]

SIGMOID_SUP = 0.25


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
    return int(value)


def _fixed_point_inputs(activation, q_star, key, width):
    """h_0 = φ(√q g), g ~ N(0, I), with q = q* (or 1 where q* is infinite or undetermined)."""
    q = jnp.where(jnp.isfinite(q_star), q_star, 1.0)
    return get_activation(activation).fn(jnp.sqrt(q) * jax.random.normal(key, (width,)))


# ----------------------------------------------------------------------------- sigmoid's 0.25^(L−1)


class SigmoidBound(NamedTuple):
    """Sigmoid's 0.25^(d−1), exactly (tight construction) and over random initialisations.

    Depth axes run over the prefix networks d = 2…L (one compiled call at depth L answers all).

    Attributes:
      depths: (L−1,) d = 2…L.
      sup_bound: (L−1,) 0.25^(d−1), the notes' bound.
      tight: a :class:`~jaxflow.GradientBound` with (L−1,)-shaped fields for the tight
        construction (``log_singular_values`` is (L−1, n)): orthogonal weights and biases that put
        every pre-activation at 0, where every singular value of ∂z^[d]/∂z^[1] is 0.25^(d−1).
      tight_max_preactivation: () max |z^[l]| over the construction's layers (0 up to rounding).
      inits: (I,) labels of the random initialisations.
      sigma_w2: (I,) their σ_w².
      sigma_b2: (I,) their σ_b².
      q_star: (I,) mean-field q* of each.
      chi1: (I,) mean-field χ₁ of each.
      mean_field: (I, L−1) the mean-field prediction χ₁^((d−1)/2) for the ratio.
      random: a :class:`~jaxflow.GradientBound` with (I, S, L−1)-shaped fields (S seeds;
        ``log_singular_values`` (I, S, L−1, n), ``weight_norms`` (I, S, L−1)).
      exceed: (I, L−1) fraction of seeds whose measured ratio exceeds 0.25^(d−1).
      worst_exceed: (I, L−1) fraction whose worst-direction ratio σ_max exceeds 0.25^(d−1).

    Example:
      See :func:`sigmoid_bound`; its fields:

      >>> from jaxflow.experiments import SigmoidBound
      >>> SigmoidBound._fields[:3]
      ('depths', 'sup_bound', 'tight')
    """

    depths: jax.Array
    sup_bound: jax.Array
    tight: GradientBound
    tight_max_preactivation: jax.Array
    inits: tuple
    sigma_w2: jax.Array
    sigma_b2: jax.Array
    q_star: jax.Array
    chi1: jax.Array
    mean_field: jax.Array
    random: GradientBound
    exceed: jax.Array
    worst_exceed: jax.Array


def _resolve_init(init, sigma_b2):
    """(label, InitScheme) for a scheme name, a (σ_w², σ_b²) pair, or "critical"."""
    if init == "critical":
        crit = theory.critical_sigma_w2("sigmoid", sigma_b2)
        if int(crit.status) != theory.PredictionStatus.OK:
            raise ValueError(f"sigmoid has no critical sigma_w2 at sigma_b2={sigma_b2!r}")
        sigma_w2 = float(crit.value)
        return f"critical σ_w²={sigma_w2:.1f}", gaussian(sigma_w2, sigma_b2)
    scheme = get_init(init)
    if scheme.name == "gaussian":
        return f"σ_w²={float(scheme.sigma_w2):g}, σ_b²={float(scheme.sigma_b2):g}", scheme
    return scheme.name, scheme


def _tight_variables(variables, key, x):
    """Haar-orthogonal W^[l]; b^[1] = −W^[1]x and b^[l] = −W^[l]·(½·1): every z^[l] is 0.

    ``variables`` supplies the layout and the readout (any network of the right shape).
    """
    depth, width, _ = variables["params"]["blocks"]["Dense_0"]["kernel"].shape
    kernels = jax.vmap(lambda k: orthogonal()(k, (width, width)))(jax.random.split(key, depth))
    halves = jnp.full((depth - 1, width), 0.5, kernels.dtype)  # sigmoid(0) = 1/2
    inputs = jnp.concatenate([x[None], halves])
    biases = -jnp.einsum("li,lij->lj", inputs, kernels, precision=HIGHEST)
    blocks = {**variables["params"]["blocks"], "Dense_0": {"kernel": kernels, "bias": biases}}
    return {**variables, "params": {**variables["params"], "blocks": blocks}}


def _max_preactivation(model, variables, x):
    stack = model.decompose(variables, wrt="preactivation")
    z1 = stack.input_map(x)
    zs = accumulate_chain(stack.block_fn, stack.blocks, z1, outputs()).emitted
    return jnp.maximum(jnp.max(jnp.abs(z1)), jnp.max(jnp.abs(zs)))


def _scheme_from_key(name, sigma_w2, sigma_b2) -> InitScheme:
    return get_init(name) if name in INIT_SCHEMES else gaussian(sigma_w2, sigma_b2)


@functools.cache
def _sigmoid_bound_program(depth, width, seeds, seed_batch, schemes):
    """The whole of :func:`sigmoid_bound` (b) and (a) as one jitted program, cached per shape.

    ``schemes`` is a tuple of (name, σ_w², σ_b²), hashable where InitSchemes are not.
    """
    models = [mlp(depth, width, activation="sigmoid", init=_scheme_from_key(*s)) for s in schemes]
    structure = models[0]  # every network here has this structure; only the parameters differ

    def sigmoid_bound_program(key, q_stars):
        key, k_tight = jax.random.split(key)
        seed_keys = jax.random.split(key, seeds)

        def draw(model, q):
            def one(k):
                k_init, k_x = jax.random.split(k)
                x = _fixed_point_inputs("sigmoid", q, k_x, width)
                return model.init(k_init, x), x

            return jax.vmap(one)(seed_keys)

        drawn = [draw(model, q) for model, q in zip(models, q_stars)]
        k_init, k_x = jax.random.split(k_tight)
        x_tight = jax.random.normal(k_x, (width,))
        v_tight = _tight_variables(jax.tree.map(lambda a: a[0], drawn[0][0]), k_init, x_tight)
        # One traced gradient_bound serves every network (all inits, all seeds, the construction).
        variables = jax.tree.map(
            lambda *a: jnp.concatenate(a),
            *[d[0] for d in drawn],
            jax.tree.map(lambda a: a[None], v_tight),
        )
        xs = jnp.concatenate([d[1] for d in drawn] + [x_tight[None]])
        bounds = jax.lax.map(
            lambda vx: gradient_bound(structure, vx[0], vx[1], prefixes=True),
            (variables, xs),
            batch_size=seed_batch,
        )
        # Split here, not eagerly after the call (a small program per leaf): the construction
        # is the last network, the rest are (init, seed).
        tight = jax.tree.map(lambda a: a[-1], bounds)
        random = jax.tree.map(lambda a: a[:-1].reshape((len(models), seeds) + a.shape[1:]), bounds)
        return tight, random, _max_preactivation(structure, v_tight, x_tight)

    return jax.jit(sigmoid_bound_program)


def sigmoid_bound(
    depth: int = 20,
    width: int = 64,
    *,
    seeds: int = 1000,
    inits: Sequence[Any] = ("xavier", "he", "orthogonal", "critical"),
    sigma_b2: float = 0.0,
    key: jax.Array | None = None,
    seed_batch: int = 250,
) -> SigmoidBound:
    """Reproduces the notes' 0.25^(L−1) for sigmoid: where it is exact, and where it fails.

    (a) **Tight construction.** Orthogonal weights (‖W‖₂ = 1) and biases b^[1] = −W^[1]x,
    b^[l] = −W^[l]·(½·1): every pre-activation is 0 (zero biases would not do it, since
    sigmoid(0) = 1/2), so J^[l] = W^[l]/4 and every singular value of the backward map over d − 1
    layers is exactly 0.25^(d−1) — 2⁻³⁸ = 3.637978807091713e-12 at d = 20.

    (b) **Random initialisations**, ``seeds`` networks each, in one compiled call: the measured
    ratio ‖∂L/∂z^[1]‖/‖∂L/∂z^[d]‖ (loss: MSE to a zero target through a one-output readout, so the
    direction is diag(φ′(z^[d]))·w_out for every loss), the worst direction σ_max, the product of
    norms ∏‖J^[l]‖₂, and the mean-field prediction χ₁^((d−1)/2). Since the ratio is at most
    0.25^(d−1)·∏‖W^[l]‖₂, **0.25^(d−1) is guaranteed when ∏_{l=2}^{d} ‖W^[l]‖₂ ≤ 1** — sufficient,
    not necessary. For Gaussian W of variance σ_w²/n, ‖W‖₂ ≈ 2σ_w (Xavier at width 64: ≈ 2), so
    the guarantee is void: Xavier networks exceed 0.25^(d−1) in their worst direction
    (``worst_exceed``) yet, at d = 20, stay under it in the loss's direction for almost every seed
    (``exceed``; more exceed at small d); He and the critical σ_w² exceed it in the loss's direction too. The orthogonal scheme obeys
    it. Inputs are drawn at each scheme's mean-field fixed point (see module docs).

    Args:
      depth: L ≥ 2, the deepest network; every depth d = 2…L is answered.
      width: n.
      seeds: random networks per initialisation (≥ 2).
      inits: scheme names, mean-field pairs (σ_w², σ_b²), or ``"critical"`` (Gaussian at
        sigmoid's edge of chaos, χ₁ = 1, for ``sigma_b2``).
      sigma_b2: σ_b² for ``"critical"``.
      key: PRNG key (default ``jax.random.key(0)``); seed s of every scheme uses the same key.
      seed_batch: seeds vectorised at once inside the compiled call (bounds memory).

    Returns:
      A :class:`SigmoidBound`.

    References:
      Glorot & Bengio, AISTATS 2010; Saxe et al., ICLR 2014 (orthogonal weights); Schoenholz et
      al., ICLR 2017 (χ₁).

    Example:
      >>> import jaxflow.experiments as ex
      >>> result = ex.sigmoid_bound(depth=20, width=16, seeds=24, inits=("xavier", "orthogonal"))
      >>> round(float(result.tight.ratio[-1] / 0.25**19), 4)   # 2⁻³⁸ = 3.637978807091713e-12
      1.0
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    depth = _check_int("depth", depth, 2)
    width = _check_int("width", width, 1)
    seeds = _check_int("seeds", seeds, 2)
    seed_batch = _check_int("seed_batch", seed_batch, 1)
    if len(inits) == 0:
        raise ValueError("inits is empty; give at least one initialisation")
    key = jax.random.key(0) if key is None else key
    labelled = [_resolve_init(init, sigma_b2) for init in inits]
    sw2 = jnp.asarray([float(s.sigma_w2) for _, s in labelled])
    sb2 = jnp.asarray([float(s.sigma_b2) for _, s in labelled])
    mf = theory.mean_field("sigmoid", sw2, sb2)
    schemes = tuple((s.name, float(s.sigma_w2), float(s.sigma_b2)) for _, s in labelled)
    program = _sigmoid_bound_program(depth, width, seeds, seed_batch, schemes)
    tight, random, max_z = program(key, mf.q_star)
    depths, sup, mean_field, exceed, worst_exceed = _against_the_line(
        depth, mf.chi1, random.log_ratio, random.log_worst
    )
    return SigmoidBound(
        depths,
        sup,
        tight,
        max_z,
        tuple(label for label, _ in labelled),
        sw2,
        sb2,
        mf.q_star,
        mf.chi1,
        mean_field,
        random,
        exceed,
        worst_exceed,
    )


@functools.partial(jax.jit, static_argnums=0)
def _against_the_line(depth, chi1, log_ratio, log_worst):
    """Depths 2…L, the line 0.25^(d−1), χ₁^((d−1)/2), and the fractions of seeds over the line
    (one program: eagerly, each of these small steps compiles one of its own)."""
    depths = jnp.arange(2, depth + 1)
    log_sup = (depths - 1) * math.log(SIGMOID_SUP)
    mean_field = jnp.exp(0.5 * (depths[None, :] - 1) * jnp.log(chi1)[:, None])
    return (
        depths,
        jnp.exp(log_sup),
        mean_field,
        jnp.mean(log_ratio > log_sup[None, None], axis=1),
        jnp.mean(log_worst > log_sup[None, None], axis=1),
    )

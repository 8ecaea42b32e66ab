"""Mean-field and free-probability theory against Monte Carlo, for one model at a time.

* :func:`chi1_decay` — the measured mean squared singular value (1/n)‖P_l‖_F² of the Jacobian chain
  and the per-layer gradient-norm decay next to the mean-field χ₁^l and √χ₁, with Monte-Carlo
  error bars.
* :func:`dynamical_isometry` — the spectrum's mean and variance against depth for Gaussian and
  orthogonal weights, next to the free-probability prediction, and the condition number.

Both are one compiled call each (``jax.jit`` of ``vmap`` over seeds, cached per configuration) and
return NamedTuples that :mod:`jaxflow.plotting` draws.

Inputs are drawn **at the mean-field fixed point**: h_0 = φ(√q* g) with g ~ N(0, I_n), so the first
block's pre-activations already have variance q* (σ_w² E[φ(√q* z)²] + σ_b² = q*) and the theory,
which is stated at q*, applies from the first layer instead of after a transient. Where q* is
infinite or undetermined (ReLU at σ_w² ≥ 2) the inputs use q = 1; for positively homogeneous φ
nothing depends on it.

**Finite-width bias.** Mean-field theory is the n → ∞ limit. For ReLU with zero biases the mean
E[(1/n)‖P_l‖_F²] = (σ_w²/2)^l holds exactly at every width (the sign symmetry w ↦ −w of each row
makes 1{z_i > 0} independent of (W v)_i²). For smooth φ it does not: the layer's empirical
q̂^l = ‖z^l‖²/n fluctuates around q* with variance O(1/n), E[φ′²] is a nonlinear function of it, and
φ′(z_i) and (W v)_i share the row w_i, so each layer's factor is χ₁(1 + O(1/n)) and the product over
l layers carries a relative bias O(l/n). Where l/n is large enough for that bias to exceed the
Monte-Carlo error, ``chi1_decay`` flags it — a real, documented effect, not a failure of the code
(sigmoid with Xavier weights, depth 20, 64 seeds: −5.3 ± 1.8 % at l = 10 for n = 64, the gradient
decay flagged at 4 of 20 layers; within 0.2 % and nothing flagged for n = 256). The
free-probability moments of ``dynamical_isometry`` have finite-n corrections that grow with l at
fixed n as well (Gaussian linear chain, n = 256: relative variance 8.20 against 8 at l = 8).

**When the error bar itself fails.** For l/n ≳ 1 the distribution of (1/n)‖P_l‖_F² over seeds is
close to log-normal with a log-variance growing like l/n (Hanin & Nica 2019), so a few dozen seeds
underestimate both the mean and its standard error, and flags there can be false alarms (ReLU-He
at n = 16, l = 20, 64 seeds: −51 % ± 12 %, although the exact mean is 1). Compare at l ≪ n.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

import jaxflow.theory as theory
from jaxflow import _platform
from jaxflow._numerics import HIGHEST
from jaxflow.chain import accumulate_chain, backward_chain, outputs, products, singular_values
from jaxflow.experiments.bounds import _check_int, _fixed_point_inputs
from jaxflow.initializers import InitScheme, gaussian, orthogonal
from jaxflow.models import MLP, mlp

__all__ = ["Chi1Decay", "DynamicalIsometry", "chi1_decay", "dynamical_isometry"]

THRESHOLD = 3.0
RTOL = 1e-4


def _compare(samples, predicted, threshold):
    """Mean over seeds (axis 0), its standard error, and whether it disagrees with ``predicted``.

    The statistics are taken of samples/prediction (where the prediction is finite and nonzero):
    (1/n)‖P_l‖_F² of a sigmoid chain is ~1e-25 by layer 20, whose squared deviations underflow
    float32 and would give a zero error bar. A layer disagrees when |mean − prediction| exceeds
    ``threshold`` standard errors plus a float rounding allowance of RTOL·|prediction| (RTOL
    absolute where the prediction is 0, as for the orthogonal linear chain's variance).
    """
    scale = jnp.where(jnp.isfinite(predicted) & (predicted != 0), jnp.abs(predicted), 1.0)
    scale = jnp.broadcast_to(scale, samples.shape[1:])
    ratios = samples / scale[None]
    count = samples.shape[0]
    mean = jnp.mean(ratios, axis=0)
    error = jnp.std(ratios, axis=0, ddof=1) / math.sqrt(count) if count > 1 else 0 * mean
    target = predicted / scale
    disagree = jnp.abs(mean - target) > threshold * error + RTOL * jnp.maximum(jnp.abs(target), 1.0)
    return mean * scale, error * scale, disagree


# ------------------------------------------------------------------ χ₁ against measurement


class Chi1Decay(NamedTuple):
    """Measured Jacobian and gradient decay next to mean-field χ₁, with Monte-Carlo error bars.

    Errors are standard errors of the mean over seeds; ``*_disagree`` flags layers where
    |mean − prediction| > threshold·error + 1e-4·|prediction| (the last term allows for float32
    rounding).

    Attributes:
      label: what was measured (activation, init, width, seeds), for titles and reports.
      layers: (L,) l = 1…L.
      chi1: () mean-field χ₁ of the model's activation and init.
      q_star: () mean-field q*.
      status: () status code of the length map (:class:`jaxflow.PredictionStatus`).
      predicted: (L,) χ₁^l.
      msv: (L,) mean over seeds of (1/n)‖P_l‖_F², the mean squared singular value of P_l.
      msv_error: (L,) its standard error.
      msv_disagree: (L,) bool.
      grad_decay: (L,) mean of ‖∂L/∂h_{L−l}‖²/‖∂L/∂h_L‖², the squared gradient norm l layers
        below the top relative to the top (≈ χ₁^l).
      grad_decay_error: (L,).
      grad_decay_disagree: (L,) bool.
      grad_ratio: (L,) root mean square of ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖, one layer's gradient-norm
        ratio (≈ √χ₁; the root of the mean square, so that the O(1/n) Jensen gap of a plain mean
        of norms does not enter).
      grad_ratio_error: (L,) its standard error (delta method).
      grad_ratio_disagree: (L,) bool.

    Example:
      See :func:`chi1_decay`; the measured and predicted fields:

      >>> from jaxflow.experiments import Chi1Decay
      >>> Chi1Decay._fields[5:8]
      ('predicted', 'msv', 'msv_error')
    """

    label: str
    layers: jax.Array
    chi1: jax.Array
    q_star: jax.Array
    status: jax.Array
    predicted: jax.Array
    msv: jax.Array
    msv_error: jax.Array
    msv_disagree: jax.Array
    grad_decay: jax.Array
    grad_decay_error: jax.Array
    grad_decay_disagree: jax.Array
    grad_ratio: jax.Array
    grad_ratio_error: jax.Array
    grad_ratio_disagree: jax.Array


def _mean_field_of(model: MLP, name: str):
    if not isinstance(model, MLP):
        raise TypeError(
            f"model is a {type(model).__name__}; {name} takes a jaxflow MLP (jf.mlp), the network "
            "mean-field χ₁ describes"
        )
    scheme = model.init_scheme
    sigma_b2 = scheme.sigma_b2 if model.use_bias else 0.0
    return theory.mean_field(model.activation, scheme.sigma_w2, sigma_b2)


@functools.cache
def _chi1_program(model: MLP, directions: int):
    """:func:`chi1_decay`'s measurement, jitted and vmapped over seeds, cached per model."""
    n = model.width

    def one(k, q):
        k_init, k_x, k_g = jax.random.split(k, 3)
        x = _fixed_point_inputs(model.activation, q, k_x, n)
        stack = model.decompose(model.init(k_init, x))
        h0 = stack.input_map(x)
        mean_sq = products()._replace(read=lambda layer, P: jnp.sum(jnp.square(P)) / n)
        with jax.default_matmul_precision("float32"):
            _, _, (msv, hs) = accumulate_chain(
                stack.block_fn, stack.blocks, h0, (mean_sq, outputs())
            )
            top = jax.random.normal(k_g, (n, directions))
            back = backward_chain(
                stack.block_fn,
                stack.blocks,
                jnp.concatenate([h0[None], hs[:-1]]),
                top.T,
                emit=lambda step: jnp.linalg.norm(step.cotangent, axis=-1),
            )
        above = back.emitted  # (L, directions): row l − 1 is ‖δ_l‖, δ_L = top
        norms = jnp.concatenate([jnp.linalg.norm(back.input, axis=-1)[None], above[:-1]])
        top_norm = jnp.linalg.norm(top, axis=0)
        decay = jnp.mean(jnp.square(norms[::-1] / top_norm[None]), axis=-1)
        return msv, decay, jnp.mean(jnp.square(norms / above), axis=-1)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _decay_statistics(msv, decay, ratio, chi1, depth, threshold):
    """:func:`chi1_decay`'s statistics in one program (eagerly, each step compiles its own)."""
    layers = jnp.arange(1, depth + 1)
    predicted = jnp.power(chi1, layers.astype(chi1.dtype))
    # The per-layer ratio is compared through its mean square (against χ₁), then reported as
    # a root mean square with the delta-method error.
    sq_m, sq_e, rat_flag = _compare(ratio, jnp.full(layers.shape, chi1), threshold)
    rat_m = jnp.sqrt(sq_m)
    return (
        layers,
        predicted,
        _compare(msv, predicted, threshold),
        _compare(decay, predicted, threshold),
        (rat_m, sq_e / (2 * rat_m), rat_flag),
    )


def chi1_decay(
    model: MLP,
    *,
    seeds: int = 64,
    directions: int = 8,
    key: jax.Array | None = None,
    threshold: float = THRESHOLD,
) -> Chi1Decay:
    """Measured (1/n)‖P_l‖_F² and gradient-norm decay against mean-field χ₁^l and √χ₁.

    For each seed: fresh parameters, an input at the fixed point (module docs) and, as top
    gradients, ``directions`` vectors δ_L ~ N(0, I_n) — gradients of random linear readouts, the
    setting of the mean-field backward theory (Schoenholz et al. 2017, §5); the seed's gradient
    statistics average over them. One forward scan (:func:`jaxflow.accumulate_chain`) gives every
    h_l and (1/n)‖P_l‖_F²; one backward scan (:func:`jaxflow.backward_chain`) pulls the top
    gradients down, δ_{l−1} = J_lᵀ δ_l, and gives the gradient norms. All seeds run in one
    compiled, vmapped call.

    Args:
      model: a jaxflow MLP; its activation and init scheme (σ_w², σ_b²) set the prediction.
      seeds: number of independent networks (≥ 2).
      directions: top gradients per network (≥ 1).
      key: PRNG key (default ``jax.random.key(0)``).
      threshold: standard errors beyond which a layer is flagged.

    Returns:
      A :class:`Chi1Decay`.

    References:
      Poole et al., NeurIPS 2016; Schoenholz et al., ICLR 2017 (χ₁ and the gradient's mean field);
      Hanin, "Which neural net architectures give rise to exploding and vanishing gradients?",
      NeurIPS 2018; Hanin & Nica, "Products of many large random matrices and gradients in deep
      neural networks", Comm. Math. Phys. 2019 (finite-width fluctuations).

    Example:
      >>> import jaxflow as jf, jaxflow.experiments as ex
      >>> result = ex.chi1_decay(jf.mlp(8, 16, activation="relu", init="he"), seeds=64)
      >>> float(result.chi1), bool(result.msv_disagree.any())
      (1.0, False)
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    mf = _mean_field_of(model, "chi1_decay")
    seeds = _check_int("seeds", seeds, 2)
    directions = _check_int("directions", directions, 1)
    key = jax.random.key(0) if key is None else key
    n = model.width
    msv, decay, ratio = _chi1_program(model, directions)(jax.random.split(key, seeds), mf.q_star)
    statistics = _decay_statistics(msv, decay, ratio, mf.chi1, model.depth, float(threshold))
    layers, predicted, (msv_m, msv_e, msv_flag), (dec_m, dec_e, dec_flag) = statistics[:4]
    rat_m, rat_e, rat_flag = statistics[4]
    scheme = model.init_scheme
    label = (
        f"{model.activation}, {scheme.name} (σ_w²={float(scheme.sigma_w2):g}, "
        f"σ_b²={float(scheme.sigma_b2) if model.use_bias else 0.0:g}), n = {n}, L = {model.depth}, "
        f"{seeds} seeds × {directions} top gradients"
    )
    return Chi1Decay(
        label,
        layers,
        mf.chi1,
        mf.q_star,
        mf.status,
        predicted,
        msv_m,
        msv_e,
        msv_flag,
        dec_m,
        dec_e,
        dec_flag,
        rat_m,
        rat_e,
        rat_flag,
    )


# ----------------------------------------------------------------------------- dynamical isometry


class DynamicalIsometry(NamedTuple):
    """Spectrum of P_l against depth for Gaussian and orthogonal weights: theory and Monte Carlo.

    The leading axis of every (2, L) field is ``weights``. Measured moments are of the empirical
    distribution of the n squared singular values of one P_l, averaged over seeds (errors:
    standard errors over seeds). ``relative_variance_disagree`` flags depths where the measured
    relative variance is further from the free-probability prediction than
    threshold·error + 1e-4·max(|prediction|, 1).

    Attributes:
      label: what was measured (activation, σ_w², σ_b², width, seeds).
      depths: (L,) l = 1…L.
      weights: ("gaussian", "orthogonal").
      theory: a :class:`~jaxflow.FreeMoments` whose depth-dependent fields are (2, L).
      mean: (2, L) measured mean squared singular value.
      mean_error: (2, L).
      variance: (2, L) measured variance of the squared singular values.
      variance_error: (2, L).
      relative_variance: (2, L) measured variance/mean², per network, averaged over seeds (the
        scale-free spread; less noisy than the variance, whose m₁² factor fluctuates).
      relative_variance_error: (2, L).
      relative_variance_disagree: (2, L) bool, against l(μ₂/μ₁² − 1 − s₁).
      condition: (2, L) median over seeds of σ_max/σ_min (inf where σ_min is below the float
        rounding floor σ_max·n·ε, e.g. ReLU, whose P_l is rank-deficient).

    Example:
      See :func:`dynamical_isometry`; its fields:

      >>> from jaxflow.experiments import DynamicalIsometry
      >>> "relative_variance" in DynamicalIsometry._fields
      True
    """

    label: str
    depths: jax.Array
    weights: tuple
    theory: theory.FreeMoments
    mean: jax.Array
    mean_error: jax.Array
    variance: jax.Array
    variance_error: jax.Array
    relative_variance: jax.Array
    relative_variance_error: jax.Array
    relative_variance_disagree: jax.Array
    condition: jax.Array


def _ensemble(sigma_w2, sigma_b2, weights) -> InitScheme:
    """W ~ N(0, σ_w²/n) or W = σ_w·O, b ~ N(0, σ_b²): the ensembles of jaxflow.theory.free."""
    scheme = gaussian(sigma_w2, sigma_b2)
    if weights == "gaussian":
        return scheme
    return InitScheme(
        "orthogonal", orthogonal(math.sqrt(sigma_w2)), scheme.bias_init, sigma_w2, sigma_b2, True
    )


@functools.cache
def _isometry_program(activation, sigma_w2, sigma_b2, depth, width, names, condition):
    """:func:`dynamical_isometry`'s measurement for every ensemble, one jitted program."""
    models = [
        mlp(depth, width, activation=activation, init=_ensemble(sigma_w2, sigma_b2, w))
        for w in names
    ]

    def emit(P):
        # m₁ = (1/n) tr PPᵀ and m₂ = (1/n) tr (PPᵀ)² need no decomposition; the condition
        # number needs the extreme singular values (an SVD per layer, the costly part).
        gram = jnp.matmul(P, P.T, precision=HIGHEST)
        moments = jnp.stack([jnp.trace(gram), jnp.sum(jnp.square(gram))]) / width
        if not condition:
            return moments, jnp.full((), jnp.nan, P.dtype)
        sv = singular_values(P)
        floor = sv[0] * width * jnp.finfo(sv.dtype).eps
        return moments, jnp.where(sv[-1] > floor, sv[0] / sv[-1], jnp.inf)

    def one(model, k, q):
        k_init, k_x = jax.random.split(k)
        x = _fixed_point_inputs(activation, q, k_x, width)
        stack = model.decompose(model.init(k_init, x))
        with jax.default_matmul_precision("float32"):
            reduction = products()._replace(read=lambda layer, P: emit(P))
            _, _, (moments, cond) = accumulate_chain(stack.block_fn, stack.blocks, x, reduction)
        mean, second = moments[:, 0], moments[:, 1]
        variance = second - jnp.square(mean)
        return mean, variance, variance / jnp.square(mean), cond

    def run(keys, q):
        return [jax.vmap(lambda k, m=m: one(m, k, q))(keys) for m in models]

    return jax.jit(run)


def dynamical_isometry(
    activation: str = "tanh",
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    *,
    depth: int = 16,
    width: int = 256,
    seeds: int = 4,
    key: jax.Array | None = None,
    threshold: float = THRESHOLD,
    condition: bool = True,
) -> DynamicalIsometry:
    """Mean, variance and condition number of P_l's spectrum vs depth, against free probability.

    Both weight ensembles (Gaussian N(0, σ_w²/n) and σ_w·Haar-orthogonal) and every depth
    l = 1…L come from one compiled call: one scan per network, the moments
    m_k = (1/n) tr (P_l P_lᵀ)^k (k = 1, 2) and the singular values of each P_l taken inside it.

    Args:
      activation: a registered activation name.
      sigma_w2: weight variance σ_w² > 0 (χ₁ = 1 is criticality; see
        :func:`~jaxflow.critical_sigma_w2`).
      sigma_b2: bias variance σ_b² ≥ 0.
      depth: L ≥ 1.
      width: n (the theory is n → ∞; use ≥ 256 to compare).
      seeds: networks per ensemble (≥ 2).
      key: PRNG key (default ``jax.random.key(0)``).
      threshold: standard errors beyond which a depth is flagged.
      condition: also take every P_l's singular values for its condition number (an SVD per
        layer and network: the expensive part at large width); ``False`` leaves it ``nan``.

    Returns:
      A :class:`DynamicalIsometry`.

    References:
      Pennington, Schoenholz & Ganguli, NeurIPS 2017 and AISTATS 2018; Saxe et al., ICLR 2014.

    Example:
      >>> import jaxflow.experiments as ex
      >>> result = ex.dynamical_isometry("linear", 1.0, depth=2, width=8, seeds=2)
      >>> [round(v, 4) for v in result.variance[1].tolist()]   # orthogonal linear: isometry
      [0.0, 0.0]
      >>> [round(v, 4) for v in result.condition[1].tolist()]
      [1.0, 1.0]
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    depth = _check_int("depth", depth, 1)
    width = _check_int("width", width, 1)
    seeds = _check_int("seeds", seeds, 2)
    key = jax.random.key(0) if key is None else key
    names = tuple(theory.WEIGHT_ENSEMBLES)
    predictions = [
        theory.free_moments(activation, sigma_w2, sigma_b2, depth=depth, weights=w) for w in names
    ]
    prediction = jax.tree.map(lambda *a: jnp.stack(a), *predictions)
    prediction = prediction._replace(depth=predictions[0].depth)
    program = _isometry_program(
        activation, float(sigma_w2), float(sigma_b2), depth, width, names, bool(condition)
    )
    measured = program(jax.random.split(key, seeds), prediction.q_star[0])
    theory_of = (prediction.mean, prediction.variance, prediction.relative_variance)
    (mean, mean_err, _), (var, var_err, _), (rel, rel_err, rel_flag) = (
        [
            jnp.stack(a)
            for a in zip(*[_compare(m[i], t[j], threshold) for j, m in enumerate(measured)])
        ]
        for i, t in enumerate(theory_of)
    )
    label = f"{activation}, σ_w²={sigma_w2:g}, σ_b²={sigma_b2:g}, n = {width}, {seeds} seeds"
    return DynamicalIsometry(
        label,
        prediction.depth,
        names,
        prediction,
        mean,
        mean_err,
        var,
        var_err,
        rel,
        rel_err,
        rel_flag,
        jnp.stack([jnp.median(m[3], axis=0) for m in measured]),
    )

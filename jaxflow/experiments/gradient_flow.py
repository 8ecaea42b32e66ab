"""The notes' gradient-flow experiments: activations compared, Xavier vs He, residual vs plain.

Each experiment is a driver: it builds the models, draws the data and the initialisation from
``key``, and computes everything — every model, every seed — in **one jit-compiled call** (cached,
so a second call with new keys does not recompile). The models differ in their activation or
initialisation, so their forward passes are traced one after the other inside that call; seeds are
``vmap``-ed. ``key`` may be one key or an array of keys: every result field then gains the key's
shape after the model axis.

Losses are the batch mean of the per-example loss (``"mse"``: PyTorch's ``nn.MSELoss()``). For
each seed key, ``k_init, k_x, k_y = jax.random.split(key, 3)``; x ~ N(0, 1) of shape
(batch, width) is drawn from ``k_x``, y ~ N(0, 1) of shape (batch, 1) from ``k_y``, and every
model of the experiment is ``model.init(k_init, x)``: the data are shared by the models of one
seed (the notes draw fresh data per activation; sharing them makes the comparison paired).
Gradients with respect to the weights and to every hidden vector h_l come from one backward pass
(:func:`jaxflow.gradients.layers.loss_and_gradients` explains the zero taps).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxflow import _platform
from jaxflow._checks import positive_int
from jaxflow._numerics import scaled_norm
from jaxflow.gradients.layers import loss_and_gradients
from jaxflow.gradients.stats import GradientStats, gradient_stats
from jaxflow.initializers import InitScheme, get_init
from jaxflow.jacobians import get_loss
from jaxflow.models import mlp, residual_stack

__all__ = [
    "ActivationComparison",
    "InitComparison",
    "ResidualComparison",
    "compare_activations",
    "compare_inits",
    "compare_residual",
]

# He et al. (2015) for the rectifiers, Glorot & Bengio (2010) for the rest.
_HE_FAMILY = ("relu", "leaky_relu")


class ActivationComparison(NamedTuple):
    """Per-layer gradient norms of the notes' ``compare_activations``, one row per activation.

    A is the number of activations, S the shape of ``key`` (absent for one key), L the depth.

    Attributes:
      activations: the A activation names.
      inits: the A initialisation names used.
      weight_grad_norms: (A, *S, L+1) ‖∂L/∂W‖_F of every Linear layer, as the notes collect them:
        the L hidden layers, then the readout (layer L+1).
      activation_grad_norms: (A, *S, L+1) ‖∂L/∂H_l‖_F over the batch, l = 0…L (H_0 is the input
        x, H_L the readout's input).
      loss: (A, *S) the batch loss.
      stats: :class:`~jaxflow.GradientStats` of each network's gradient, leading axes (A, *S).
      variables: the networks' variables, every leaf with leading axes (A, *S).

    Example:
      See :func:`compare_activations`; one network's gradient table:

      >>> import jax, jaxflow as jf
      >>> from jaxflow.experiments import compare_activations
      >>> result = compare_activations(key=jax.random.split(jax.random.key(0), 8))
      >>> sigmoid_seed0 = jax.tree.map(lambda a: a[1, 0], result.stats)
      >>> sigmoid_seed0.layer_names[0], sigmoid_seed0.layer_names[-1]
      ('blocks/00', 'readout')
      >>> bool(sigmoid_seed0.layer_norms[0] < 1e-4 * sigmoid_seed0.layer_norms[-1])
      True
    """

    activations: tuple[str, ...]
    inits: tuple[str, ...]
    weight_grad_norms: jax.Array
    activation_grad_norms: jax.Array
    loss: jax.Array
    stats: GradientStats
    variables: Any


class InitComparison(NamedTuple):
    """Per-layer backward ratios of activation-gradient norms, one row per initialisation.

    Attributes:
      activation: the activation name.
      inits: the I initialisation names.
      activation_grad_norms: (I, *S, L+1) ‖∂L/∂H_l‖_F, l = 0…L.
      layer_ratios: (I, *S, L) ‖∂L/∂H_{l−1}‖ / ‖∂L/∂H_l‖ for l = 1…L: how much the gradient
        shrinks (< 1) or grows (> 1) through block l on its way back.
      mean_ratio: (I, *S) their geometric mean, (‖∂L/∂H_0‖ / ‖∂L/∂H_L‖)^(1/L).
      predicted: for ReLU, √(σ_w²/2) per initialisation (He et al. 2015: the backward variance
        is multiplied by ½·fan_in·Var(W) per layer), else ``None``.

    Example:
      See :func:`compare_inits`.

      >>> from jaxflow.experiments import InitComparison
      >>> InitComparison._fields[2:4]
      ('activation_grad_norms', 'layer_ratios')
    """

    activation: str
    inits: tuple[str, ...]
    activation_grad_norms: jax.Array
    layer_ratios: jax.Array
    mean_ratio: jax.Array
    predicted: tuple[float, ...] | None


class ResidualComparison(NamedTuple):
    """Activation-gradient norms of a plain MLP and a residual stack of the same depth.

    Attributes:
      activation: the activation name.
      init: the initialisation name (both networks).
      plain: (*S, L+1) ‖∂L/∂H_l‖_F of the MLP, l = 0…L.
      residual: (*S, L+1) the same for the residual stack.
      plain_ratio: (*S,) first-to-last ratio ‖∂L/∂H_0‖ / ‖∂L/∂H_L‖ of the MLP.
      residual_ratio: (*S,) the same for the residual stack.

    Example:
      See :func:`compare_residual`.

      >>> from jaxflow.experiments import ResidualComparison
      >>> ResidualComparison._fields[-2:]
      ('plain_ratio', 'residual_ratio')
    """

    activation: str
    init: str
    plain: jax.Array
    residual: jax.Array
    plain_ratio: jax.Array
    residual_ratio: jax.Array


@functools.cache
def _pytorch_default(fan_in: int) -> InitScheme:
    """The registry's ``"pytorch"`` scheme at this fan-in (one object per width, so a jit keyed on
    the models sees the same scheme twice)."""
    return get_init("pytorch").for_fan_in(fan_in)


def _default_init(activation: str) -> str:
    return "he" if activation in _HE_FAMILY else "xavier"


def _resolve_init(init, activation: str, width: int) -> InitScheme:
    if init is None:
        init = _default_init(activation)
    if isinstance(init, str) and init == "pytorch":
        return _pytorch_default(width)
    return get_init(init)


def _inits_for(activations, init, width):
    if isinstance(init, Mapping):
        missing = [a for a in activations if a not in init]
        if missing:
            raise ValueError(f"init has no entry for activations {missing}; it maps {sorted(init)}")
        return tuple(_resolve_init(init[a], a, width) for a in activations)
    return tuple(_resolve_init(init, a, width) for a in activations)


def _keys(key):
    """(flat keys (S,), the key batch shape)."""
    if key is None:
        key = jax.random.key(0)
    if not jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        raise TypeError(
            f"key must be a typed key array from jax.random.key(...) (one key or a batch of them); "
            f"got {type(key).__name__} {getattr(key, 'dtype', '')}"
        )
    return key.reshape(-1), key.shape


def _names(values, what):
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise ValueError(f"{what} is empty; give at least one")
    return values


@functools.lru_cache(maxsize=32)
def _flow(models: tuple, batch: int, loss: Any, notes: bool):
    """The one compiled call: keys (S,) → per model (loss, ∂L/∂h_l norms, and for ``notes`` (the
    notes' MLPs) also the Linear weight-gradient norms, GradientStats and variables)."""
    loss_fn = get_loss(loss)

    def one(model, key):
        k_init, k_x, k_y = jax.random.split(key, 3)
        x = jax.random.normal(k_x, (batch, model.input_dim), model.param_dtype)
        y = jax.random.normal(k_y, (batch, model.out_dim), model.param_dtype)
        return measure(model, model.init(k_init, x), x, y)

    def measure(model, variables, x, y):
        value, grads, taps = loss_and_gradients(model, variables, x, y, loss_fn)
        h_norms = scaled_norm(taps, axis=(1, 2))
        if not notes:
            return value, h_norms
        kernels = grads["blocks"]["Dense_0"]["kernel"]
        weights = jnp.concatenate(
            [scaled_norm(kernels, axis=(1, 2)), scaled_norm(grads["readout"]["kernel"]).reshape(1)]
        )
        stats = gradient_stats(grads, variables["params"])
        return value, h_norms, weights, stats, variables

    def run(keys):
        return tuple(jax.vmap(functools.partial(one, model))(keys) for model in models)

    return jax.jit(run)


@functools.cache
def _flow_given(models: tuple, loss: Any):
    """The notes' measurement on given weights and data: variables, x, y stacked over models."""
    loss_fn = get_loss(loss)

    def run(variables, xs, ys):
        outputs = []
        for i, model in enumerate(models):
            mine = jax.tree.map(lambda a, i=i: a[i], variables)
            value, grads, taps = loss_and_gradients(model, mine, xs[i], ys[i], loss_fn)
            kernels = grads["blocks"]["Dense_0"]["kernel"]
            weights = jnp.concatenate(
                [
                    scaled_norm(kernels, axis=(1, 2)),
                    scaled_norm(grads["readout"]["kernel"]).reshape(1),
                ]
            )
            out = (
                value,
                scaled_norm(taps, axis=(1, 2)),
                weights,
                gradient_stats(grads, mine["params"]),
                mine,
            )
            outputs.append(jax.tree.map(lambda a: a[None], out))  # a seed axis of length 1
        return tuple(outputs)

    return jax.jit(run)


def _given(activations, depth, width, batch, variables, x, y):
    """Checks the shapes of given weights and data against the comparison's networks."""
    count = len(activations)
    expected = {
        "x": (count, batch, width),
        "y": (count, batch, 1),
        "blocks kernel": (count, depth, width, width),
        "readout kernel": (count, width, 1),
    }
    try:
        got = {
            "x": jnp.shape(x),
            "y": jnp.shape(y),
            "blocks kernel": jnp.shape(variables["params"]["blocks"]["Dense_0"]["kernel"]),
            "readout kernel": jnp.shape(variables["params"]["readout"]["kernel"]),
        }
    except (KeyError, TypeError):
        raise ValueError(
            "variables must be the networks' variables stacked over activations: "
            "{'params': {'blocks': {'Dense_0': ...}, 'readout': ...}} with a leading axis of "
            f"length {count}"
        ) from None
    for name, shape in expected.items():
        if tuple(got[name]) != shape:
            raise ValueError(f"{name} has shape {tuple(got[name])}; it must be {shape}")


def _run(models, batch, loss, key, notes=False):
    keys, shape = _keys(key)
    outputs = _flow(tuple(models), batch, loss, notes)(keys)
    return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), outputs)


@jax.jit  # one program for the whole tree; eagerly each leaf's stack is compiled on its own
def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def compare_activations(
    activations=("relu", "sigmoid", "tanh"),
    depth: int = 10,
    width: int = 64,
    batch: int = 32,
    *,
    key=None,
    init: Any = None,
    loss: Any = "mse",
    variables: Any = None,
    x: Any = None,
    y: Any = None,
) -> ActivationComparison:
    """The notes' ``compare_activations``: per-layer gradient norms of one deep MLP per activation.

    Each network is the notes' ``nn.Sequential``: ``depth`` × (Linear(width, width) → φ), then
    Linear(width, 1), on x ~ N(0, 1) of shape (batch, width) and y ~ N(0, 1) of shape (batch, 1),
    MSE loss; all activations and seeds run in one compiled call.

    Initialisation: the notes' networks use PyTorch's default, W, b ~ U(±1/√fan_in)
    (``init="pytorch"`` reproduces it; σ_w² = 1/3, below the critical 2 of ReLU and 1 of tanh, so
    every activation's gradient shrinks with depth there). The default ``init=None`` uses what the
    notes recommend instead: He for ReLU, Xavier for sigmoid and tanh. A name, pair or
    :class:`~jaxflow.InitScheme` applies to all; a mapping gives one per activation.

    Args:
      activations: names from :data:`jaxflow.ACTIVATIONS`.
      depth: hidden layers L.
      width: width n (and input features).
      batch: examples per batch.
      key: a ``jax.random.key`` (default ``key(0)``), or an array of keys for several seeds.
      init: ``None`` (He for ReLU, Xavier otherwise), ``"pytorch"``, any :func:`jaxflow.get_init`
        argument, or a mapping activation → init.
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``.
      variables, x, y: measure these networks on this data instead of drawing them (all three or
        none): the variables of the activations' MLPs stacked on a leading activation axis, x
        (activations, batch, width) and y (activations, batch, 1) — e.g. weights shared with a
        PyTorch run. The result then has one "seed" and ``inits`` reads ``"given"``.

    Returns:
      An :class:`ActivationComparison`.

    Raises:
      ValueError: for unknown activations or inits, sizes < 1, or given arrays of the wrong shape.

    References:
      Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks",
      AISTATS 2010; He et al., "Delving deep into rectifiers", ICCV 2015.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_activations
      >>> result = compare_activations(key=jax.random.split(jax.random.key(0), 8))  # 8 seeds
      >>> result.inits, result.weight_grad_norms.shape  # (activation, seed, Linear layer)
      (('he', 'xavier', 'xavier'), (3, 8, 11))
      >>> sigmoid = result.weight_grad_norms[1]
      >>> bool((sigmoid[:, 0] < 1e-2 * sigmoid[:, -2]).all())  # layer 1 vs layer 10
      True
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    activations = _names(activations, "activations")
    depth, width, batch = (
        positive_int(n, v) for n, v in (("depth", depth), ("width", width), ("batch", batch))
    )
    given = [a is not None for a in (variables, x, y)]
    if any(given) and not all(given):
        raise ValueError("variables, x and y go together: pass all three or none")
    if all(given):
        _given(activations, depth, width, batch, variables, x, y)
        models = tuple(mlp(depth, width, activation=a) for a in activations)
        outputs = _flow_given(models, get_loss(loss))(variables, jnp.asarray(x), jnp.asarray(y))
        names = ("given",) * len(activations)
    else:
        schemes = _inits_for(activations, init, width)
        models = [
            mlp(depth, width, activation=a, init=s)
            for a, s in zip(activations, schemes, strict=True)
        ]
        outputs = _run(models, batch, loss, key, notes=True)
        names = tuple(s.name for s in schemes)
    value, h_norms, weights, stats, variables = zip(*outputs, strict=True)
    return ActivationComparison(
        activations=activations,
        inits=names,
        weight_grad_norms=jnp.stack(weights),
        activation_grad_norms=jnp.stack(h_norms),
        loss=jnp.stack(value),
        stats=_stack(stats),
        variables=_stack(variables),
    )


def compare_inits(
    inits=("xavier", "he"),
    depth: int = 30,
    width: int = 64,
    batch: int = 32,
    *,
    activation: str = "relu",
    key=None,
    loss: Any = "mse",
) -> InitComparison:
    """Xavier vs He on a deep MLP: how much the activation gradient shrinks per layer, backward.

    For ReLU with W ~ N(0, σ_w²/fan_in) and zero biases, half the units pass the gradient, so the
    backward second moment is multiplied by σ_w²/2 per layer: the per-layer norm ratio is
    √(σ_w²/2), 1/√2 for Xavier (σ_w² = 1 on square layers) and 1 for He (σ_w² = 2), He et al.
    (2015), eq. 13. All inits and seeds run in one compiled call.

    Args:
      inits: a sequence of :func:`jaxflow.get_init` arguments (names, mean-field pairs, schemes):
        ``("xavier", (2.0, 0.0))``; a single pair must be wrapped, ``[(2.0, 0.0)]``.
      depth: hidden layers L.
      width: width n.
      batch: examples per batch.
      activation: the activation of every network.
      key: a ``jax.random.key`` (default ``key(0)``), or an array of keys for several seeds.
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``.

    Returns:
      An :class:`InitComparison`.

    References:
      He et al., "Delving deep into rectifiers", ICCV 2015; Glorot & Bengio, AISTATS 2010.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_inits
      >>> result = compare_inits(key=jax.random.split(jax.random.key(5), 16))  # 16 seeds
      >>> result.layer_ratios.shape, result.predicted  # (init, seed, layer)
      ((2, 16, 30), (0.7071067811865476, 1.0))
      >>> [round(float((r**2).mean()), 1) for r in result.layer_ratios]  # E[ratio²] = σ_w²/2
      [0.5, 1.0]
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    inits = _names(inits, "inits") if not isinstance(inits, (InitScheme,)) else (inits,)
    depth, width, batch = (
        positive_int(n, v) for n, v in (("depth", depth), ("width", width), ("batch", batch))
    )
    schemes = tuple(get_init(i) for i in inits)
    models = [mlp(depth, width, activation=activation, init=s) for s in schemes]
    outputs = _run(models, batch, loss, key)
    h_norms = jnp.stack([h for _, h in outputs])
    predicted = None
    if activation == "relu":
        predicted = tuple(math.sqrt(float(s.sigma_w2) / 2.0) for s in schemes)
    return InitComparison(
        activation=activation,
        inits=tuple(s.name for s in schemes),
        activation_grad_norms=h_norms,
        layer_ratios=h_norms[..., :-1] / h_norms[..., 1:],
        mean_ratio=(h_norms[..., 0] / h_norms[..., -1]) ** (1.0 / depth),
        predicted=predicted,
    )


def compare_residual(
    depth: int = 50,
    width: int = 64,
    activation: str = "relu",
    *,
    init: Any = None,
    batch: int = 32,
    branch_depth: int = 2,
    norm: str | None = None,
    key=None,
    loss: Any = "mse",
) -> ResidualComparison:
    """The first-to-last activation-gradient ratio of a plain MLP and a residual stack.

    Both have ``depth`` blocks of width n, the same activation and init; the residual block is the
    notes' h ↦ h + Linear(φ(Linear(h))) (``branch_depth=2``), whose Jacobian I + ∂F/∂h keeps an
    identity path for the gradient (He et al. 2016). Both networks and all seeds run in one
    compiled call.

    **He-initialised ReLU residual stacks grow.** For h_l = h_{l−1} + W₂φ(W₁h_{l−1} + b₁) + b₂
    with σ_w² = 2 and zero biases, the branch adds σ_w²·½·σ_w² q = 2q to the per-unit variance, so
    q_l = 3 q_{l−1} and ‖h_l‖ ∝ 3^{l/2}. Backward, each block's I + ∂F/∂h multiplies the expected
    squared gradient by 1 + 2 = 3, so ‖∂L/∂h_0‖/‖∂L/∂h_L‖ ≈ 3^{L/2} (at width n the median is
    lower by about e^{−L/n}: a block's squared factor has variance ≈ 36/n about its mean 3, and
    the logarithm of a product of random factors falls below that of its mean). With MSE,
    ∂L/∂h_L itself grows like the output, 3^{L/2}, so ‖∂L/∂h_0‖ ∝ 3^L and passes float32's
    maximum ≈ 3.4e38 between L = 82 and 83. Measured (defaults: width 64, batch 32, ``key(0)``):
    the ratio is 3.85e18 at L = 80 (3^{40} = 1.2e19; 3^{40}·e^{−80/64} = 3.5e18), ‖∂L/∂h_0‖ =
    2.43e38 at L = 82, the first ``inf`` at L = 83 and the first ``nan`` at L = 86.

    Args:
      depth: blocks L.
      width: width n.
      activation: a name from :data:`jaxflow.ACTIVATIONS`.
      init: ``None`` (He for ReLU, Xavier otherwise) or any :func:`jaxflow.get_init` argument.
      batch: examples per batch.
      branch_depth: Linear layers per residual branch.
      norm: the residual branch's normalisation (``None``, ``"layer"``, ``"batch"``). Without one
        a He-initialised ReLU stack grows geometrically (see above) and overflows float32 past
        depth ~82; use a smaller init or a norm for deeper stacks.
      key: a ``jax.random.key`` (default ``key(0)``), or an array of keys for several seeds.
      loss: ``"mse"`` or a per-example ``loss(prediction, y) -> scalar``.

    Returns:
      A :class:`ResidualComparison`.

    References:
      He et al., "Deep residual learning for image recognition", CVPR 2016.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_residual
      >>> keys = jax.random.split(jax.random.key(3), 4)
      >>> result = compare_residual(activation="sigmoid", key=keys)  # depth 50, width 64
      >>> bool((result.plain_ratio < 1e-10).all()), bool((result.residual_ratio > 1e-2).all())
      (True, True)
    """
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    depth, width, batch = (
        positive_int(n, v) for n, v in (("depth", depth), ("width", width), ("batch", batch))
    )
    scheme = _resolve_init(init, activation, width)
    models = [
        mlp(depth, width, activation=activation, init=scheme),
        residual_stack(
            depth, width, activation=activation, init=scheme, branch_depth=branch_depth, norm=norm
        ),
    ]
    (_, plain), (_, residual) = _run(models, batch, loss, key)
    return ResidualComparison(
        activation=activation,
        init=scheme.name,
        plain=plain,
        residual=residual,
        plain_ratio=plain[..., 0] / plain[..., -1],
        residual_ratio=residual[..., 0] / residual[..., -1],
    )

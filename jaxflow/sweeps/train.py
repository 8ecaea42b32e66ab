"""Training every network of a grid in one compiled call: the trainability engine.

Each configuration (depth × activation × init × seed of a :class:`~jaxflow.Grid`, ``model="mlp"``)
is an MLP ``input map → depth blocks → readout`` on a classification data set, trained by SGD (or
Adam) on minibatches of the training set. All of them run together:

* **Parameters** are drawn inside the kernel exactly as the sweep kernel draws them
  (:func:`jaxflow.sweeps.compute.draw_network`): ``k_init, k_data =
  jax.random.split(jax.random.key(seed))``, ``jf.mlp(D, width, in_dim=features,
  out_dim=classes).init(k_init, x)`` with the sweep's kernel initialiser (the variances as data,
  the weight family chosen by ``lax.switch``). Block l's weights depend on (seed, l) only, so a
  depth-d network's blocks are the first d of the deepest one.
* **One compilation for every depth, no padded compute**: every configuration carries the
  deepest stack of D blocks, and the kernel's depth d is an *unbatched* argument: each call
  trains configurations of one depth (the driver splits a chunk by depth into calls of one fixed
  size, :func:`depth_calls`), and the stack runs through :func:`first_blocks` — loops of d
  iterations with a hand-written VJP — so blocks past d are neither run nor differentiated
  (a ``lax.cond`` per layer of a scan skips their compute but not the residuals the scan's
  autodiff stacks for every layer, which on a CPU cost about as much). Their gradients are
  exactly zero, and their updates are masked to zero as well (so Adam, or any optimiser, leaves
  them untouched): the trained depth-d network is the depth-d ``jf.mlp`` trained alone (tested,
  to float32 rounding).
* **Optimiser steps** run under ``lax.scan`` (an outer scan over recording intervals, an inner one
  over the ``record_every`` steps of each); minibatch t of seed s is
  ``randint(fold_in(k_data, t), (batch_size,), 0, N)`` (with replacement), shared by every
  configuration of that seed, so depths and inits of one seed see the same data.
* **Configurations** are ``vmap``-ed, chunked by the sweep's memory budget and sharded over
  devices by the sweep's own machinery (:func:`jaxflow.sweeps.run.plan`,
  :func:`~jaxflow.sweeps.run.run_chunks`), and written to / resumed from the sweep store.

Recorded per configuration, at steps 0, k, 2k, …, steps: the mean cross-entropy and accuracy on the
first ``eval_size`` training examples and the accuracy on the first ``eval_size`` test examples;
the first non-finite step; and at initialisation the spread (std over i) of ln σ_i(P_d), P_d the
Jacobian ∂h_d/∂h_0 of the depth-d network from the input map's output to the last hidden layer,
by the chain engine (:func:`jaxflow.accumulate_chain` with the graded
:func:`jaxflow.chain.log_spectrum`, exact in float32 at any depth), averaged over the first
``jacobian_inputs`` training inputs. Beside them the host adds mean-field χ₁ and ξ_c.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow import _platform
from jaxflow._checks import positive_int
from jaxflow._numerics import HIGHEST
from jaxflow.activations import get_activation
from jaxflow.chain import accumulate_chain, log_spectrum
from jaxflow.initializers import InitScheme
from jaxflow.models import mlp

from . import compute
from .grid import FAMILIES, Grid, _scheme, init_family, init_variances
from .training import OPTIMIZERS, Training, record_steps

__all__ = ["OPTIMIZERS", "Training", "trainability"]

TRACES: collections.Counter = collections.Counter()
"""How many times each training kernel was traced (each trace is one compilation)."""

TRAINING_VARIABLES = ("train_loss", "train_accuracy", "test_accuracy")


class TrainSpec(NamedTuple):
    """Everything static about a training kernel: one compilation per distinct TrainSpec.

    ``families`` and ``bias_noise`` mean what they mean in :class:`~jaxflow.sweeps.compute.Spec`
    (the sweep's initialisers read them).
    """

    width: int
    in_dim: int
    num_classes: int
    max_depth: int
    activations: tuple
    families: tuple
    bias_noise: bool
    num_train: int
    eval_train: int
    eval_test: int
    steps: int
    batch_size: int
    record_every: int
    optimizer: str
    jacobian_inputs: int


def spec_of(grid: Grid, data, training: Training) -> TrainSpec:
    """The static part of a (grid, data, training) run."""
    families = tuple(f for f in FAMILIES if any(init_family(i) == f for i in grid.init))
    return TrainSpec(
        grid.width,
        int(data.x_train.shape[1]),
        int(data.num_classes),
        grid.max_depth,
        grid.activation,
        families,
        any(init_variances(i)[1] > 0 for i in grid.init),
        int(data.x_train.shape[0]),
        min(training.eval_size, int(data.x_train.shape[0])),
        min(training.eval_size, int(data.x_test.shape[0])),
        training.steps,
        training.batch_size,
        training.record_every,
        training.optimizer,
        min(training.jacobian_inputs, int(data.x_train.shape[0])),
    )


def _model(spec: TrainSpec, activation: str, init="he"):
    return mlp(
        spec.max_depth,
        spec.width,
        activation=activation,
        init=init,
        in_dim=spec.in_dim,
        out_dim=spec.num_classes,
    )


def kernel_shapes(spec: TrainSpec) -> tuple:
    """The Dense kernels' shapes: input map, hidden block, readout (the order of ``w_vars``)."""
    n = spec.width
    return ((spec.in_dim, n), (n, n), (n, spec.num_classes))


def draw_params(spec: TrainSpec, family, w_vars, b_var, seed):
    """(params, k_data) of one configuration, drawn as the sweep kernel draws its networks.

    Args:
      spec: the static spec.
      family: index into ``spec.families`` (the same for every configuration of a call).
      w_vars: (3,) kernel variances of the input map, a hidden block and the readout.
      b_var: σ_b².
      seed: the integer seed.
    """
    k_init, k_data = jax.random.split(jax.random.key(seed))
    kernel_init = compute._kernel_init(spec, family, w_vars, kernel_shapes(spec))
    scheme = InitScheme("sweep", kernel_init, compute._bias_init(spec, b_var), None, b_var)
    x = jnp.zeros((1, spec.in_dim))
    return _model(spec, spec.activations[0], scheme).init(k_init, x)["params"], k_data


def first_blocks(block, blocks, h0, depth, activation=None):
    """h_depth = block(θ_{depth−1}, … block(θ_0, h0)): the first ``depth`` blocks of the stack,
    by loops that run ``depth`` times (``depth`` may be traced; the stack is longer).

    Reverse-mode differentiable through a hand-written VJP: the forward loop keeps each block's
    input h_l, the backward loop runs from layer ``depth − 1`` down to 0, re-slicing θ_l from
    the stack and taking ``jax.vjp(block, θ_l, h_l)`` (one recomputed block per layer); blocks
    past ``depth`` get an exactly zero gradient. Unlike a ``lax.scan`` over the whole stack with
    a ``lax.cond`` per layer, nothing is done or copied for the blocks past ``depth``: a scan's
    autodiff stacks every layer's residuals (θ_l among them, through the cond) whether or not the
    branch ran, which on a CPU costs a skipped layer about as much as a computed one. With
    ``depth`` unbatched under ``vmap`` (one depth per kernel call) the loops stay loops.

    With ``activation``, a layer is ``activation(block(θ_l, h))`` (``block`` its affine part) and
    the forward loop keeps the pre-activations too, so the backward loop recomputes nothing: the
    VJP of ``block`` is taken at h_l for its transpose only (its unused forward is dead code),
    which saves one of a layer's four matmuls (forward, recomputation, two in the VJP).

    Args:
      block: ``(θ_l, h) -> h`` (with ``activation``: the affine part ``(θ_l, h) -> z``).
      blocks: the stacked block variables (every leaf with a leading axis of length D).
      h0: the first block's input.
      depth: how many blocks to apply, 0 ≤ depth ≤ D (an int32 scalar).
      activation: an elementwise ``z -> h`` applied after ``block``, or ``None``.

    Returns:
      h_depth, shaped like h0.
    """
    split = activation is not None

    def theta(stack, layer):
        return jax.tree.map(lambda leaf: jax.lax.dynamic_index_in_dim(leaf, layer, 0, False), stack)

    @jax.custom_vjp
    def run(blocks, h0, depth):
        return forward(blocks, h0, depth)[0]

    def forward(blocks, h0, depth):
        max_depth = jax.tree.leaves(blocks)[0].shape[0]
        inputs = jnp.zeros((max_depth,) + h0.shape, h0.dtype)
        pre = jnp.zeros((max_depth if split else 0,) + h0.shape, h0.dtype)

        def body(layer, carry):
            h, inputs, pre = carry
            inputs = jax.lax.dynamic_update_index_in_dim(inputs, h, layer, 0)
            if not split:
                return block(theta(blocks, layer), h), inputs, pre
            z = block(theta(blocks, layer), h)
            pre = jax.lax.dynamic_update_index_in_dim(pre, z, layer, 0)
            return activation(z), inputs, pre

        h, inputs, pre = jax.lax.fori_loop(0, depth, body, (h0, inputs, pre))
        return h, (blocks, inputs, pre, depth)

    def backward(residuals, cotangent):
        blocks, inputs, pre, depth = residuals

        def body(i, carry):
            g, grads = carry
            layer = depth - 1 - i
            h = jax.lax.dynamic_index_in_dim(inputs, layer, 0, False)
            if split:
                z = jax.lax.dynamic_index_in_dim(pre, layer, 0, False)
                g = jax.vjp(activation, z)[1](g)[0]
                g_theta, g = jax.vjp(block, theta(blocks, layer), h)[1](g)
            else:
                g_theta, g = jax.vjp(block, theta(blocks, layer), h)[1](g)
            grads = jax.tree.map(
                lambda stack, x: jax.lax.dynamic_update_index_in_dim(stack, x, layer, 0),
                grads,
                g_theta,
            )
            return g, grads

        grads = jax.tree.map(jnp.zeros_like, blocks)
        g, grads = jax.lax.fori_loop(0, depth, body, (cotangent, grads))
        return grads, g, None

    run.defvjp(forward, backward)
    return run(blocks, h0, depth)


def masked_network(spec: TrainSpec, act_idx, depth):
    """``(apply, block_fn, stack_of)`` of the depth-``depth`` network inside the D-block stack.

    ``apply(params, x)`` are the logits, through :func:`first_blocks` (the blocks past
    ``depth`` are neither run nor differentiated); ``block_fn((l, θ_l), h)`` is block l for
    l < depth and the identity beyond (a ``lax.cond``, for the Jacobian chain);
    ``stack_of(params)`` is the :class:`~jaxflow.Stack` whose blocks are ``(layer indices,
    stacked block variables)`` for ``block_fn``.
    """
    stacks = [_model(spec, a) for a in spec.activations]  # decompose ignores the init
    branches = [m.block(False) for m in stacks]
    calls = [lambda v, h, b=b: b.apply(v, h)[0] for b in branches]

    def block(v, h):
        return calls[0](v, h) if len(calls) == 1 else jax.lax.switch(act_idx, calls, v, h)

    def block_fn(layer_and_vars, h):
        layer, v = layer_and_vars
        return jax.lax.cond(layer < depth, block, lambda v, h: h, v, h)

    def stack_of(params):
        stack = stacks[0].decompose({"params": params})
        layers = jnp.arange(spec.max_depth)
        return stack._replace(block_fn=block_fn, blocks=(layers, stack.blocks))

    # The same layer split for first_blocks: DenseBlock's φ(h W + b) (nn.Dense at HIGHEST, as in
    # jaxflow.models), so the backward loop reuses the forward's pre-activations.
    phis = [get_activation(a).fn for a in spec.activations]

    def affine(v, h):
        dense = v["params"]["Dense_0"]
        return jnp.dot(h, dense["kernel"], precision=HIGHEST) + dense["bias"][None, :]

    def phi(z):
        return phis[0](z) if len(phis) == 1 else jax.lax.switch(act_idx, phis, z)

    def apply(params, x):
        stack = stacks[0].decompose({"params": params})
        h = first_blocks(affine, stack.blocks, stack.input_map(x), depth, activation=phi)
        return stack.readout(h)

    return apply, block_fn, stack_of


def _optimizer(spec: TrainSpec, learning_rate):
    if spec.optimizer == "adam":
        return optax.adam(learning_rate)
    return optax.sgd(learning_rate)


def _metrics(logits, labels):
    """(mean cross-entropy, accuracy); a prediction with a non-finite logit counts as wrong."""
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    right = jnp.all(jnp.isfinite(logits), axis=-1) & (jnp.argmax(logits, axis=-1) == labels)
    return loss, jnp.mean(right, dtype=logits.dtype)


def jacobian_spread(spec: TrainSpec, block_fn, stack, x):
    """Mean over the inputs x (J, features) of std_i ln σ_i(P_d), P_d = ∂h_d/∂h_0.

    The graded log-spectrum is read once, after the last (padded) layer, where P_D = P_d; the
    std is over the finite ln σ_i (a ReLU product has exact zeros, ln σ = −inf, which have no
    spread to speak of: they are left out).
    """
    read_last = jnp.arange(1, spec.max_depth + 1) == spec.max_depth
    reduction = log_spectrum("graded", read_last)

    def one(h0):
        log_s = accumulate_chain(block_fn, stack.blocks, h0, reduction).emitted[-1]
        finite = jnp.isfinite(log_s)
        count = jnp.sum(finite)
        mean = jnp.sum(jnp.where(finite, log_s, 0)) / count
        var = jnp.sum(jnp.where(finite, jnp.square(log_s - mean), 0)) / count
        return jnp.sqrt(var)

    return jnp.mean(jax.vmap(one)(stack.input_map(x)))


def _finite_params(params, learning_rate):
    """Whether every parameter is finite, in one vectorised pass per leaf: x·0 is 0 for a finite x
    and NaN for ±Inf or NaN, so Σ x·0 (a matrix–vector product with zeros) is 0 exactly when every
    entry is finite, and cannot overflow. The zeros are ``0·learning_rate``, a value of the run,
    which XLA cannot fold away. XLA:CPU reduces ``jnp.all(jnp.isfinite(x))`` one element at a time:
    over a depth-32 stack of 12 networks that was ~15% of a training step's CPU time."""
    zero = jnp.zeros((), jnp.result_type(learning_rate)) * learning_rate
    total = jnp.zeros((), jnp.float32)
    for leaf in jax.tree.leaves(params):
        rows = leaf.reshape(-1, leaf.shape[-1] if leaf.ndim else 1)  # zeros of one row's length
        products = jnp.dot(rows, jnp.full(rows.shape[-1:], zero, rows.dtype), precision=HIGHEST)
        total = total + jnp.sum(products)  # zeros, or a NaN: the sum cannot overflow either
    return total == 0


def one_config(spec: TrainSpec, act_idx, family, learning_rate, data, depth, w_vars, b_var, seed):
    """Trains one configuration; returns its recorded metrics (see the module docs)."""
    x_train, y_train, x_record, y_eval, y_test = data
    params, k_data = draw_params(spec, family, w_vars, b_var, seed)
    apply, block_fn, stack_of = masked_network(spec, act_idx, depth)
    optimizer = _optimizer(spec, learning_rate)
    keep = jnp.arange(spec.max_depth) < depth

    def loss_fn(params, x, y):
        return _metrics(apply(params, x), y)[0]

    def mask_blocks(updates):
        def mask(u):
            return jnp.where(keep.reshape((-1,) + (1,) * (u.ndim - 1)), u, 0)

        return {**updates, "blocks": jax.tree.map(mask, updates["blocks"])}

    def step(carry, t):
        params, opt_state, first_bad = carry
        idx = jax.random.randint(
            jax.random.fold_in(k_data, t), (spec.batch_size,), 0, spec.num_train
        )
        loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, mask_blocks(updates))
        bad = ~(jnp.isfinite(loss) & _finite_params(params, learning_rate))
        first_bad = jnp.where((first_bad < 0) & bad, t, first_bad)
        return (params, opt_state, first_bad), None

    def record(carry):
        params, _, first_bad = carry
        logits = apply(params, x_record)  # the evaluation examples, then the test ones: one pass
        train_loss, train_acc = _metrics(logits[: spec.eval_train], y_eval)
        test_acc = _metrics(logits[spec.eval_train :], y_test)[1]
        train_loss = jnp.where(first_bad >= 0, jnp.nan, train_loss)
        return train_loss, train_acc, test_acc

    def interval(carry, bounds):
        # Steps start+1 … end, then a record. The scan has record_every steps; a step past `end`
        # is skipped by a cond whose predicate is the same for every configuration (it depends
        # on t only), so it stays a branch under vmap: the first interval (0, 0) records the
        # initial network and the last one may be short, with one trace of `step` and `record`.
        start, end = bounds

        def maybe_step(carry, t):
            return jax.lax.cond(t <= end, step, lambda c, t: (c, None), carry, t)

        ts = start + 1 + jnp.arange(spec.record_every, dtype=jnp.int32)
        carry = jax.lax.scan(maybe_step, carry, ts)[0]
        return carry, record(carry)

    recorded = np.asarray(record_steps(spec.steps, spec.record_every), np.int32)
    bounds = (np.concatenate([[0], recorded[:-1]]).astype(np.int32), recorded)
    carry = (params, optimizer.init(params), jnp.int32(-1))
    carry, curves = jax.lax.scan(interval, carry, bounds)
    out = dict(zip(TRAINING_VARIABLES, curves, strict=True))
    out["first_nonfinite_step"] = carry[2]
    if spec.jacobian_inputs:
        initial = stack_of(params)
        out["jacobian_spread"] = jacobian_spread(
            spec, block_fn, initial, x_train[: spec.jacobian_inputs]
        )
    else:
        out["jacobian_spread"] = jnp.float32(jnp.nan)
    return out


def _kernel(spec: TrainSpec, act_idx, family, learning_rate, data, depth, w_vars, b_var, seed):
    TRACES[spec] += 1  # runs only while tracing: counts compilations
    config = functools.partial(one_config, spec, act_idx, family, learning_rate, data, depth)
    with jax.default_matmul_precision("float32"):
        return jax.vmap(config)(w_vars, b_var, seed)


@functools.cache
def compiled_kernel(spec: TrainSpec, devices: tuple):
    """The jitted training kernel, its configuration axis sharded over ``devices`` (cached).

    Arguments: activation index, family index, learning rate, the data arrays and the depth
    (replicated, unbatched), then per configuration w_vars, b_var and seed.
    """
    return compute.sharded_jit(
        functools.partial(_kernel, spec), devices, replicated=5, per_config=3
    )


def bytes_per_config(spec: TrainSpec) -> int:
    """A generous estimate of one configuration's training memory inside the kernel (bytes):
    parameters, their gradient, the updated copy and the optimiser state, the activations a
    backward pass keeps (counted for all D blocks, as for the deepest depth), the
    evaluation forward passes, and the Jacobian chain's state."""
    n, F, C, D = spec.width, spec.in_dim, spec.num_classes, spec.max_depth
    params = F * n + D * (n * n + n) + n * C + n + C
    slots = {"sgd": 0, "adam": 2}[spec.optimizer]
    backprop = 4 * D * spec.batch_size * n + spec.batch_size * (F + 2 * C)
    evaluation = 3 * (spec.eval_train + spec.eval_test) * max(n, C)
    jacobian = spec.jacobian_inputs * (12 * n * n + D * n)
    curves = 3 * (spec.steps // spec.record_every + 2)
    return 4 * ((4 + slots) * params + backprop + evaluation + jacobian + curves)


class _Identity(NamedTuple):
    """What a trainability store records and checks on resume: grid, training and data."""

    grid: Grid
    training: Training
    data: dict

    def to_json(self) -> str:
        mapping = {**self.grid.to_dict(), "training": self.training.to_dict(), "data": self.data}
        return json.dumps(mapping, sort_keys=True)


def _data_fingerprint(data) -> dict:
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        array = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return {"name": str(data.name), "sha256": digest.hexdigest()[:16]}


def _check_data(data):
    fields = ("x_train", "y_train", "x_test", "y_test", "num_classes", "name")
    missing = [f for f in fields if not hasattr(data, f)]
    if missing:
        raise TypeError(
            f"data is a {type(data).__name__} without {', '.join(missing)}; pass a "
            "jaxflow.data.Dataset (x_train, y_train, x_test, y_test, num_classes, name)"
        )
    out = {}
    for split in ("train", "test"):
        x = np.asarray(getattr(data, f"x_{split}"), np.float32)
        y = np.asarray(getattr(data, f"y_{split}"))
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"data.x_{split} {x.shape} and data.y_{split} {y.shape} must be (N, features) "
                "and (N,) with N ≥ 1"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"data.y_{split} has dtype {y.dtype}; labels must be integers")
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int32)
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise ValueError(
            f"data.x_train has {out['x_train'].shape[1]} features and data.x_test "
            f"{out['x_test'].shape[1]}; they must match"
        )
    classes = positive_int("data.num_classes", data.num_classes, 2)
    for split in ("train", "test"):
        y = out[f"y_{split}"]
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(
                f"data.y_{split} holds labels outside 0…{classes - 1} (num_classes={classes})"
            )
    return out, classes


def _check_grid(grid):
    if not isinstance(grid, Grid):
        raise TypeError(f"grid is a {type(grid).__name__}; pass a jaxflow.Grid")
    if grid.model != "mlp":
        raise ValueError(f"grid.model={grid.model!r}: training runs model='mlp' only")
    for init in grid.init:
        _scheme(init)  # the sweep's checks: a family and biases the kernel can draw


def call_size(chunk_size: int, num_depths: int, num_devices: int) -> int:
    """Configurations per kernel call: a chunk's share of one depth, rounded up to the devices.

    A chunk is a run of consecutive configurations of one family group, in which the depth index
    cycles with period ``num_depths``, so no depth holds more than ⌈chunk_size/num_depths⌉ of
    them: every depth of every chunk fits one call of this fixed size (one compilation).
    """
    return math.ceil(math.ceil(chunk_size / num_depths) / num_devices) * num_devices


def depth_calls(grid: Grid, spec: TrainSpec, chunk, size: int):
    """The kernel calls of a chunk: ``[(positions, depth, (w_vars, b_var, seed)), ...]``.

    One call per depth present (more if a depth holds more than ``size`` configurations);
    ``positions`` index ``chunk.configs``; the per-configuration host arrays are padded to
    ``size`` by repeating the call's last configuration.
    """
    K = len(grid.depth)
    flat = np.asarray(chunk.configs)
    pair, depth_idx = np.divmod(flat, K)
    init_idx, seed = np.divmod(pair, grid.seeds)
    table = np.asarray([_variances(i, spec) for i in grid.init], np.float32)
    calls = []
    for k in np.unique(depth_idx):
        where = np.flatnonzero(depth_idx == k)
        for start in range(0, where.size, size):
            positions = where[start : start + size]
            take = np.concatenate([positions, np.full(size - positions.size, positions[-1])])
            inputs = (table[init_idx[take], :3], table[init_idx[take], 3], seed[take])
            calls.append((positions, np.int32(grid.depth[k]), inputs))
    return calls


def _variances(init, spec: TrainSpec):
    """(Var W input map, hidden, readout, Var b) as the scheme computes them (orthogonal: gain²)."""
    scheme = _scheme(init)
    if scheme.family == "orthogonal":
        w = [scheme.sigma_w2] * 3
    else:
        w = [scheme.kernel_variance(*shape) for shape in kernel_shapes(spec)]
    return [np.float32(v) for v in w] + [np.float32(scheme.bias_variance(spec.width))]


def _raw_dims(name):
    return ("step",) if name in TRAINING_VARIABLES else ()


def mean_field_table(grid: Grid):
    """(χ₁, ξ_c) per (activation, init) as :func:`jaxflow.theory.mean_field` gives them (NaN where
    the theory gives no number).

    Plain cases are evaluated by the theory's own rule in float64 NumPy
    (:func:`jaxflow.theory.host.chi1_xi_c`: milliseconds, no compilation); the rest — an
    activation without a NumPy form, a fixed point that is not OK, the edge of chaos — by the
    compiled theory, in one call per activation.
    """
    from jaxflow import theory
    from jaxflow.theory import host as host_theory
    from jaxflow.theory.results import TOL

    shape = (len(grid.activation), len(grid.init))
    chi1, xi_c = np.full(shape, np.nan), np.full(shape, np.nan)
    sigma = np.asarray([init_variances(i) for i in grid.init], dtype=float)
    float64 = jnp.dtype(jnp.result_type(float)) == jnp.float64  # honours jax.enable_x64
    for a, activation in enumerate(grid.activation):
        rest = []
        for i, (sigma_w2, sigma_b2) in enumerate(sigma):
            host = host_theory.chi1_xi_c(activation, sigma_w2, sigma_b2, float64=float64, tol=TOL)
            if host is None:
                rest.append(i)
            else:
                chi1[a, i], xi_c[a, i] = host
        if not rest:
            continue
        try:
            mf = theory.mean_field(activation, sigma[rest, 0], sigma[rest, 1])
        except (ValueError, ArithmeticError):
            continue
        chi1[a, rest], xi_c[a, rest] = np.asarray(mf.chi1, float), np.asarray(mf.xi_c, float)
    return chi1, xi_c


def assemble(grid: Grid, training: Training, raw, attrs: dict):
    """The labelled dataset (the layout of :func:`trainability`) from the raw per-config data."""
    import xarray as xr

    raw = raw.sortby("config")
    A, I, S, K = len(grid.activation), len(grid.init), grid.seeds, len(grid.depth)  # noqa: E741
    data = {}
    for name, var in raw.data_vars.items():
        values = np.asarray(var.values)
        values = values.reshape((A, I, S, K) + values.shape[1:])
        values = np.moveaxis(values, 3, 0)  # depth first
        data[name] = (("depth", "activation", "init", "seed") + var.dims[1:], values)
    chi1, xi_c = mean_field_table(grid)
    data["chi1"] = (("activation", "init"), chi1)
    data["xi_c"] = (("activation", "init"), xi_c)
    sigma = np.asarray([init_variances(i) for i in grid.init], dtype=float)
    coords = {
        "depth": np.asarray(grid.depth),
        "activation": np.asarray(grid.activation, dtype=object),
        "init": np.asarray(grid.init_labels, dtype=object),
        "sigma_w2": ("init", sigma[:, 0]),
        "sigma_b2": ("init", sigma[:, 1]),
        "family": ("init", np.asarray([init_family(i) for i in grid.init], dtype=object)),
        "seed": np.arange(S),
        "step": np.asarray(training.record_steps),
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    for name, text in DESCRIPTIONS.items():
        ds[name].attrs["description"] = text
    return ds


DESCRIPTIONS = {
    "train_loss": "mean cross-entropy on the first eval_size training examples (NaN once "
    "non-finite)",
    "train_accuracy": "accuracy on the first eval_size training examples",
    "test_accuracy": "accuracy on the first eval_size test examples",
    "first_nonfinite_step": "first step t whose minibatch loss or updated parameters are not "
    "finite; -1 if none",
    "chi1": "mean-field chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] at the init's (sigma_w2, sigma_b2)",
    "xi_c": "mean-field correlation depth scale xi_c = -1/ln chi_c (inf at chi_c = 1)",
    "jacobian_spread": "std over i of ln sigma_i(P_d), P_d = dh_d/dh_0 at initialisation, mean "
    "over jacobian_inputs training inputs (finite ln sigma only)",
}


def trainability(
    grid: Grid,
    data,
    training: Training,
    *,
    store=None,
    devices=None,
    memory_budget: float | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    callback=None,
):
    """Trains every network of ``grid`` on ``data`` in one compiled, chunked, sharded call.

    A driver: it jits, chunks by ``memory_budget``, shards the configurations over ``devices``
    and resumes from ``store`` with the sweep's own machinery (see :mod:`jaxflow.sweeps.train`
    for what is trained and recorded, and :func:`jaxflow.sweep` for chunks, devices and the
    store). Every depth of the grid shares one compilation (the depth is an unbatched argument:
    one call per depth in a chunk); activations are a ``lax.switch``, inits and seeds data, so a
    grid compiles once per weight family in use.
    ``jaxflow.sweep(grid, data=..., training=...)`` with ``"training"`` in ``grid.metrics``
    calls this.

    Args:
      grid: a :class:`~jaxflow.Grid` with ``model="mlp"`` (its ``batch`` and ``metrics`` are not
        used here); the hidden width is ``grid.width``.
      data: a ``jaxflow.data.Dataset`` (or anything with its fields ``x_train`` (N, features)
        float, ``y_train`` (N,) int, ``x_test``, ``y_test``, ``num_classes``, ``name``).
      training: a :class:`Training`.
      store: a Zarr store path: each finished chunk is written, a rerun resumes; a store of
        another grid, training or data set is refused.
      devices: devices to shard each chunk over (default: every local device; on a CPU, called
        before any JAX computation, one device per core, so that each core trains its share
        of the configurations — ``JAX_NUM_CPU_DEVICES`` chooses another count; see
        :func:`jaxflow.sweeps.run.resolve_training_devices`).
      memory_budget: bytes a chunk may use (default: the sweep's); chunks hold as many
        configurations as :func:`bytes_per_config` says fit.
      chunk_size: configurations per compiled call (default: from ``memory_budget``); results
        do not depend on it.
      progress: a tqdm progress bar on a terminal.
      callback: ``callback(chunk_index, num_chunks)`` after each finished chunk.

    Returns:
      An ``xarray.Dataset`` with dims ``depth``, ``activation``, ``init``, ``seed``, ``step``;
      coords ``sigma_w2``, ``sigma_b2``, ``family`` on ``init``; data vars ``train_loss``,
      ``train_accuracy``, ``test_accuracy`` (depth, activation, init, seed, step) float32 (a
      prediction whose logits are not all finite counts as wrong, so a diverged network scores
      0 and its ``train_loss`` is NaN from its first non-finite step on),
      ``first_nonfinite_step`` (depth, activation, init, seed) int32 (-1: stayed finite),
      ``jacobian_spread`` (depth, activation, init, seed) float32, ``chi1`` and ``xi_c``
      (activation, init); attrs ``grid``, ``training`` (JSON), ``dataset``, ``num_classes``,
      ``chance_accuracy`` (the most frequent test label's share), ``compilations``,
      ``jaxflow_version``, ``seconds``.

    Raises:
      TypeError: if ``grid``, ``training`` or ``data`` is of the wrong kind.
      ValueError: for a residual grid, malformed data, or a bad store/chunk size/budget.

    Example:
      >>> import types, numpy as np, jaxflow as jf
      >>> from jaxflow.experiments import trainability
      >>> x = np.random.default_rng(0).normal(size=(96, 4)).astype(np.float32)
      >>> y = (x[:, 0] > 0).astype(np.int32)
      >>> data = types.SimpleNamespace(x_train=x[:64], y_train=y[:64], x_test=x[64:],
      ...                              y_test=y[64:], num_classes=2, name="sign of x_0")
      >>> grid = jf.Grid(depth=[1, 3], activation=["tanh"], init=[(1.0, 0.05)], width=8, seeds=2)
      >>> training = jf.Training(steps=20, learning_rate=0.1, batch_size=8, record_every=10)
      >>> ds = trainability(grid, data, training, progress=False)
      >>> ds.train_loss.dims, ds.step.values.tolist()
      (('depth', 'activation', 'init', 'seed', 'step'), [0, 10, 20])
    """
    from . import run

    _check_grid(grid)
    if not isinstance(training, Training):
        raise TypeError(f"training is a {type(training).__name__}; pass a jaxflow.Training")
    arrays, num_classes = _check_data(data)
    start_time = time.perf_counter()
    _platform.prepare_training(devices)
    _platform.use_compilation_cache()
    spec = spec_of(grid, data, training)._replace(num_classes=num_classes)
    uses_lapack = "orthogonal" in spec.families or spec.jacobian_inputs > 0
    devices = run.resolve_training_devices(devices, uses_lapack)
    identity = _Identity(grid, training, _data_fingerprint(data))
    K = len(grid.depth)
    process_index, process_count = run.resolve_processes(store, kind="training run")
    chunk_size, chunks, sweep_store = run.plan(
        grid,
        spec,
        identity,
        store,
        chunk_size,
        memory_budget,
        devices,
        process_index,
        process_count,
        per_config_bytes=bytes_per_config(spec),
        per=K,
    )
    size = call_size(chunk_size, K, len(devices))
    kernel = compiled_kernel(spec, devices)
    traces_before = TRACES[spec]
    x_record = np.concatenate(
        [arrays["x_train"][: spec.eval_train], arrays["x_test"][: spec.eval_test]]
    )
    shared = (
        jnp.asarray(arrays["x_train"]),
        jnp.asarray(arrays["y_train"]),
        jnp.asarray(x_record),
        jnp.asarray(arrays["y_train"][: spec.eval_train]),
        jnp.asarray(arrays["y_test"][: spec.eval_test]),
    )
    learning_rate = np.float32(training.learning_rate)

    def dispatch(chunk):
        act, family = np.int32(chunk.activation), np.int32(chunk.family)
        return [
            (positions, kernel(act, family, learning_rate, shared, depth, *inputs))
            for positions, depth, inputs in depth_calls(grid, spec, chunk, size)
        ]

    def to_dataset(chunk, calls):
        outputs = {}
        for positions, out in calls:
            for name, value in out.items():
                value = np.asarray(value)
                if name not in outputs:
                    outputs[name] = np.empty((len(chunk.configs),) + value.shape[1:], value.dtype)
                outputs[name][positions] = value[: positions.size]
        return run.chunk_dataset(grid, chunk, outputs, K, _raw_dims)

    with run.holding(sweep_store, process_index):
        raw, done = run.run_chunks(
            dispatch,
            to_dataset,
            chunks,
            sweep_store,
            quiet=not progress,
            callback=callback,
            process_index=process_index,
            process_count=process_count,
            desc="train",
            describe=lambda chunk: run.chunk_coordinates(grid, chunk, K),
        )
        counts = np.bincount(arrays["y_test"], minlength=num_classes)
        attrs = {
            "grid": grid.to_json(),
            "training": training.to_json(),
            "dataset": str(data.name),
            "num_classes": num_classes,
            "chance_accuracy": float(counts.max() / counts.sum()),
            "compilations": TRACES[spec] - traces_before,
            "jaxflow_version": run._versions().get("jaxflow", "unknown"),
            "chunk_size": chunk_size,
            "num_chunks": len(chunks),
            "chunks_computed": json.dumps(sorted(done)),
            "num_devices": len(devices),
            "seconds": round(time.perf_counter() - start_time, 3),
        }
        ds = assemble(grid, training, raw, attrs)
        if sweep_store is not None and process_index == 0:
            sweep_store.write_result(ds)
    return ds

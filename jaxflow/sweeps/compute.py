"""The compiled sweep kernel: one chunk of (init, seed) configurations of one activation and
one weight family.

One trace serves the whole grid. What is static (and so fixes the compilation) is the
:class:`Spec`: model family, width, batch, the largest depth, the reported depths, the activation
list, which weight families occur, and the metrics. Everything else is data:

* the **activation** is an index into the grid's activations and the **weight family** (normal,
  uniform, orthogonal) an index into the families the grid uses, each chosen with ``lax.switch``.
  A chunk never mixes activations or families, so both are unbatched scalars of the call and XLA
  runs only the chosen branch (a batched index would turn the switch into a ``select`` that
  computes every branch: a QR for every configuration's orthogonal draw, used by a third of them);
* the **init scale** is per-configuration data, the variances σ_w²/fan_in and σ_b², so schemes of
  one family are ``vmap``-ed, not compiled separately;
* the **seed** is an integer; weights, inputs and targets are drawn inside the call.

Weights are those of ``jf.mlp(depth, width, activation=..., init=...).init(k_init, x)`` (or
``jf.residual_stack``) with ``k_init, k_data = jax.random.split(jax.random.key(seed))``: the core
model's own ``init`` runs inside the kernel, with a kernel initialiser that repeats jax's
``variance_scaling`` arithmetic (``normal(key)·√var``, ``uniform(key, −1, 1)·√(3·var)``, the
variances computed on the host exactly as the schemes do) or calls :func:`jaxflow.orthogonal` with
the gain as data, on the keys Flax derives for each parameter. They equal the eager ``init`` to the
last bit but for entries where XLA fuses ``normal · √var`` into an FMA inside the one compiled call
(tested: within 4 float32 ulps). Inputs x = N(0, I) (batch, width) and targets y = N(0, 1)
(batch, 1) are the columns of one draw ``jax.random.normal(k_data, (batch, width + 1))``.

**Depths from one pass.** The forward scan (:func:`jaxflow.accumulate_chain`, with one reduction
for the spectra and one for the activations h_l) runs to the largest depth D once. J_l, P_l and
the activations h_l of a depth-d network are those of the depth-D network for l ≤ d, so every
spectrum and dead/saturated fraction is computed once per layer and read as a prefix.
Gradients are not prefixes: the loss of a depth-d network reads out h_d, so its backward pass
starts at layer d. One reverse scan carries all K backward passes at once, a (K, batch, width)
cotangent into which the readout gradient of depth d_k is injected when the scan reaches layer d_k
(:func:`jaxflow.backward_chain`); each step pulls the K cotangents back through block l with one
``jax.vjp`` and reduces the weight gradient to its norm on the spot. Memory is O(batch·width·D)
for the stored activations (as in any backward pass) and O(width²) per example for the
matrices — never D matrices.
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._numerics import HIGHEST
from jaxflow.activations import get_activation
from jaxflow.chain import (
    Reduction,
    accumulate_chain,
    backward_chain,
    log_spectrum,
    outputs,
    singular_values,
)
from jaxflow.gradients.layers import saturated
from jaxflow.initializers import InitScheme
from jaxflow.initializers import orthogonal as orthogonal_init
from jaxflow.models import mlp, residual_stack

from .grid import FAMILIES

TRACES: collections.Counter = collections.Counter()
"""How many times each :class:`Spec`'s kernel was traced (each trace is one compilation)."""

SPECTRUM_STATS = ("sv_max", "sv_min", "sv_mean_sq", "sv_mean_log", "cond")
GRAD_METRICS = ("activation_grad_norm", "weight_grad_norm", "grad_ratio")


class Spec(NamedTuple):
    """Everything static about a sweep kernel: one compilation per distinct Spec."""

    model: str
    width: int
    batch: int
    max_depth: int
    depths: tuple
    activations: tuple
    families: tuple
    metrics: tuple
    saturation: float
    branch_depth: int
    norm: str | None
    bias_noise: bool
    p_spectrum_method: str = "svd"


def spec_of(grid) -> Spec:
    """The static part of a :class:`~jaxflow.Grid`."""
    from .grid import init_family, init_variances

    families = tuple(f for f in FAMILIES if any(init_family(i) == f for i in grid.init))
    return Spec(
        grid.model,
        grid.width,
        grid.batch,
        grid.max_depth,
        grid.depth,
        grid.activation,
        families,
        tuple(m for m in grid.metrics if m != "theory"),  # host-side, not part of the kernel
        grid.saturation,
        grid.branch_depth,
        grid.norm,
        any(init_variances(i)[1] > 0 for i in grid.init),
        grid.p_spectrum_method,
    )


def _kernel_init(spec, family, w_vars, shapes=None):
    """A kernel initialiser with the family index (unbatched) and the variances as data.

    ``w_vars`` is (Var(W) of a hidden width×width kernel, Var(W) of the width×1 readout kernel),
    computed on the host exactly as the scheme computes them (xavier's fan_avg differs between the
    two); for orthogonal both are gain². With ``shapes`` (a tuple of kernel shapes, e.g. input
    map, hidden, readout), ``w_vars[k]`` is the variance of a kernel of shape ``shapes[k]``
    (shapes that coincide have equal variances under every scheme: they depend on the fans only).
    """

    def variance(shape):
        if shapes is not None:
            return w_vars[shapes.index(tuple(shape))]
        return w_vars[0] if shape[0] == shape[1] else w_vars[1]

    def draw(name, key, shape, dtype):
        w_var = variance(shape).astype(dtype)
        if name == "normal":  # jax.nn.initializers.variance_scaling(..., "normal")
            return jax.random.normal(key, shape, dtype) * jnp.sqrt(w_var)
        if name == "uniform":  # variance_scaling(..., "uniform")
            return jax.random.uniform(key, shape, dtype, -1) * jnp.sqrt(3 * w_var)
        return orthogonal_init(jnp.sqrt(w_var))(key, shape, dtype)

    def init(key, shape, dtype=jnp.float32):
        draws = [functools.partial(draw, name, shape=shape, dtype=dtype) for name in spec.families]
        if len(draws) == 1:
            return draws[0](key)
        return jax.lax.switch(family, draws, key)

    return init


def _bias_init(spec, b_var):
    if not spec.bias_noise:
        # No scheme of the grid draws biases: zeros, as every named scheme, and no random draw
        # to compile (threefry is the slowest thing XLA:CPU compiles here).
        return jax.nn.initializers.zeros

    def init(key, shape, dtype=jnp.float32):
        return jnp.sqrt(b_var.astype(dtype)) * jax.random.normal(key, shape, dtype)

    return init


def build_model(spec: Spec, activation: str, init):
    """The core model of one activation at the largest depth (the sweep differentiates this)."""
    if spec.model == "mlp":
        return mlp(spec.max_depth, spec.width, activation=activation, init=init)
    return residual_stack(
        spec.max_depth,
        spec.width,
        activation=activation,
        init=init,
        branch_depth=spec.branch_depth,
        norm=spec.norm,
    )


def draw_network(spec: Spec, family, w_var, b_var, seed):
    """(variables, x, y) of one configuration, exactly as the core model draws them.

    Args:
      spec: the static spec.
      family: index into ``spec.families`` (the same for every configuration of a call).
      w_var: (2,) kernel variances (hidden, readout); see :func:`_kernel_init`.
      b_var: σ_b², the bias variance.
      seed: the integer seed.
    """
    k_init, k_data = jax.random.split(jax.random.key(seed))
    data = jax.random.normal(k_data, (spec.batch, spec.width + 1))  # one draw: x and y
    x, y = data[:, : spec.width], data[:, spec.width :]
    scheme = InitScheme(
        "sweep", _kernel_init(spec, family, w_var), _bias_init(spec, b_var), None, b_var
    )
    variables = build_model(spec, spec.activations[0], scheme).init(k_init, x)
    return variables, x, y


def _spectrum_stats(s):
    """Summaries of descending singular values s (..., n): max, min, mean σ², mean log σ, σmax/σmin."""
    return {
        "sv_max": s[..., 0],
        "sv_min": s[..., -1],
        "sv_mean_sq": jnp.mean(jnp.square(s), axis=-1),
        "sv_mean_log": jnp.mean(jnp.log(s), axis=-1),
        "cond": s[..., 0] / s[..., -1],
    }


def _kernel_norm(tree):
    """√(Σ‖kernel‖²) over the Dense kernels of a block's parameter cotangents, per leading index."""
    total = 0.0
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if getattr(path[-1], "key", None) == "kernel":
            total = total + jnp.sum(jnp.square(leaf), axis=tuple(range(1, leaf.ndim)))
    return jnp.sqrt(total)


def one_config(spec: Spec, act_idx, family, w_var, b_var, seed) -> dict:
    """Every requested metric of one configuration (see the module docs for the conventions)."""
    metrics = set(spec.metrics)
    want_J = bool(metrics & {"J_spectrum", "J_spectra"})
    want_P = bool(metrics & {"P_spectrum", "P_spectra"})
    want_grads = bool(metrics & set(GRAD_METRICS))
    want_units = bool(metrics & {"dead_fraction", "saturated_fraction"})
    variables, x, y = draw_network(spec, family, w_var, b_var, seed)
    # One decomposition per activation of the same variables (decompose ignores the init).
    stacks = [build_model(spec, a, "he").decompose(variables) for a in spec.activations]
    branches = [s.block_fn for s in stacks]

    def block_fn(v, h):
        if len(branches) == 1:
            return branches[0](v, h)
        return jax.lax.switch(act_idx, branches, v, h)

    stack = stacks[0]
    with_output = want_grads or want_units
    reductions = {}
    if want_J or want_P:
        reductions["spectra"] = _spectra_reduction(spec, want_J, want_P, x.dtype)
    if with_output:
        reductions["h"] = outputs()
    h0 = stack.input_map(x)
    with jax.default_matmul_precision("float32"):
        per_layer = jax.vmap(
            lambda h: accumulate_chain(block_fn, stack.blocks, h, reductions).emitted
        )(h0)
        spectra = per_layer.get("spectra", {})
        result = {k: v for k, v in spectra.items() if not k.endswith("_sv")}
        if "J_spectra" in metrics:
            result["J_sv"] = spectra["J_sv"]
        if "P_spectra" in metrics:
            result["P_sv"] = spectra["P_sv"]
        if want_units:
            result.update(_unit_fractions(spec, act_idx, per_layer["h"]))
        if want_grads:
            result.update(_backward(spec, block_fn, stack, h0, per_layer["h"], y))
    return {k: v for k, v in result.items() if _wanted(k, metrics)}


def _spectra_reduction(spec, want_J, want_P, dtype):
    """The forward reduction behind the J_/P_ metrics, per layer and per input.

    ``p_spectrum_method="svd"``: P_l is carried as a matrix and J_l and P_l go through one
    batched LAPACK SVD per layer. ``"stable"``: P_l is carried as the graded factorisation of
    :func:`jaxflow.log_spectrum` and read as ln σ_i(P_l) at every layer (finite at any depth);
    J_l keeps the plain SVD (one layer does not underflow). The graded update and its per-layer
    Jacobi read-out cost ≈ 7.5× the SVD path's CPU time on the reference grid (see
    :class:`~jaxflow.Grid`), hence the default ``"svd"``.
    """
    eps = jnp.finfo(dtype).eps

    def j_stats(J):
        s = singular_values(J)
        return {**{f"J_{k}": v for k, v in _spectrum_stats(s).items()}, "J_sv": s}

    if want_P and spec.p_spectrum_method == "stable":
        graded = log_spectrum("graded")

        def read(layer, state):
            log_s = graded.read(layer, state)
            out = {f"P_{k}": v for k, v in _log_spectrum_stats(log_s).items()}
            out["P_sv"] = jnp.exp(log_s)
            # Every singular value the graded method returns is resolved; only exact zeros
            # (−inf, a ReLU product with units off) are not.
            out["P_resolved"] = jnp.sum(jnp.isfinite(log_s))
            return {**out, **(j_stats(layer.jacobian) if want_J else {})}

        return graded._replace(read=read)

    def init(h0):
        return jnp.eye(h0.shape[-1], dtype=h0.dtype) if want_P else None

    def update(layer, P):
        if not want_P:
            return None
        return jnp.matmul(layer.jacobian, P, precision=HIGHEST)

    def read(layer, P):
        out = {}
        mats = ([layer.jacobian] if want_J else []) + ([P] if want_P else [])
        sv = singular_values(jnp.stack(mats))  # one LAPACK batch for J_l and P_l
        for name, s in zip(("J",) * want_J + ("P",) * want_P, sv):
            out.update({f"{name}_{k}": v for k, v in _spectrum_stats(s).items()})
            out[f"{name}_sv"] = s
            if name == "P":  # singular values above P_l's float32 rounding floor
                out["P_resolved"] = jnp.sum(s > s[0] * s.shape[-1] * eps)
        return out

    return Reduction(init, update, read)


def _log_spectrum_stats(log_s):
    """:func:`_spectrum_stats` from ln σ (descending): the means and the ratio in the log domain,
    so σ_mean_log and cond stay finite where σ itself underflows."""
    return {
        "sv_max": jnp.exp(log_s[..., 0]),
        "sv_min": jnp.exp(log_s[..., -1]),
        "sv_mean_sq": jnp.mean(jnp.exp(2 * log_s), axis=-1),
        "sv_mean_log": jnp.mean(log_s, axis=-1),
        "cond": jnp.exp(log_s[..., 0] - log_s[..., -1]),
    }


def _wanted(name, metrics):
    if name.startswith(("J_", "P_")) and not name.endswith("_sv"):
        return f"{name[0]}_spectrum" in metrics
    if name == "weight_grad_ratio":
        return "grad_ratio" in metrics
    if name in ("J_sv", "P_sv"):
        return f"{name[0]}_spectra" in metrics
    return name in metrics


def _unit_fractions(spec, act_idx, hs):
    """Per-layer fractions of dead (φ′ = 0) and saturated units (|φ′| ≤ saturation·sup|φ′|, the
    definition of :func:`jaxflow.gradients.layers.saturated`), over every input of the batch."""
    acts = [get_activation(a) for a in spec.activations]
    dphi = [lambda h, a=a: a.derivative_from_output(h) for a in acts]
    d = dphi[0](hs) if len(acts) == 1 else jax.lax.switch(act_idx, dphi, hs)  # (batch, D, n)
    sup = jnp.asarray([a.sup_derivative for a in acts], hs.dtype)[act_idx]
    dead = jnp.all(d == 0, axis=0)
    flat = jnp.all(saturated(d, sup, spec.saturation), axis=0)
    return {
        "dead_fraction": jnp.mean(dead, axis=-1, dtype=hs.dtype),
        "saturated_fraction": jnp.mean(flat, axis=-1, dtype=hs.dtype),
    }


def _backward(spec, block_fn, stack, h0, hs, y):
    """All K backward passes (one per reported depth) in one reverse scan over the blocks.

    The loss of the depth-d network is the batch-mean squared error of ``readout(h_d)`` against y
    (``nn.MSELoss``). Norms are Frobenius norms over the batch and the features.
    """
    depths = jnp.asarray(spec.depths)
    inputs = jnp.swapaxes(jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1), 0, 1)  # (D, B, n)

    def loss(h):
        return jnp.mean(jnp.square(stack.readout(h) - y))

    g_inject = jax.vmap(jax.grad(loss))(jnp.swapaxes(hs[:, depths - 1], 0, 1))  # (K, B, n)

    def emit(step):
        act_norm = jnp.sqrt(jnp.sum(jnp.square(step.cotangent), axis=(1, 2)))
        return act_norm, _kernel_norm(step.params)

    back = backward_chain(
        block_fn, stack.blocks, inputs, g_inject, depths=depths, emit=emit, params=True
    )
    G0, (act, weight) = back.input, back.emitted
    act, weight = act.T, weight.T  # (K, D)
    k = jnp.arange(len(spec.depths))
    grad_h0 = jnp.sqrt(jnp.sum(jnp.square(G0), axis=(1, 2)))
    return {
        "activation_grad_norm": act,
        "weight_grad_norm": weight,
        "grad_ratio": grad_h0 / act[k, depths - 1],
        "weight_grad_ratio": weight[:, 0] / weight[k, depths - 1],
    }


def _kernel(spec: Spec, act_idx, family, w_var, b_var, seed):
    TRACES[spec] += 1  # runs only while tracing: counts compilations, optax-style
    return jax.vmap(functools.partial(one_config, spec, act_idx, family))(w_var, b_var, seed)


@functools.cache
def compiled_kernel(spec: Spec, devices: tuple):
    """The jitted kernel with its configuration axis sharded over ``devices``.

    Cached per (spec, devices), so a second sweep of the same grid reuses the executable.
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(devices), ("config",))
    per_config = NamedSharding(mesh, PartitionSpec("config"))
    replicated = NamedSharding(mesh, PartitionSpec())
    options = None
    if devices[0].platform == "cpu":
        # The run time is LAPACK's (SVD, QR) and Eigen's matmuls, not LLVM-generated code, while
        # LLVM's -O2 pipeline over the threefry and Jacobian code is most of the compile time:
        # -O1 halves the compilation (≈2.4 → 1.2 CPU-s for the reference sweep) at no measurable
        # cost in run time.
        options = {"xla_backend_optimization_level": 1}
    return jax.jit(
        functools.partial(_kernel, spec),
        in_shardings=(replicated, replicated, per_config, per_config, per_config),
        out_shardings=per_config,
        compiler_options=options,
    )


def bytes_per_config(spec: Spec) -> int:
    """A generous estimate of one configuration's working memory inside the kernel (bytes)."""
    n, B, D, K = spec.width, spec.batch, spec.max_depth, len(spec.depths)
    # J_l, P_l, the Jacobian's cotangent basis, the stacked SVD input and LAPACK's outputs.
    matrices = 12 * B * n * n
    activations = 4 * D * B * n + 3 * K * B * n
    outputs = D * B * (12 + 2 * n) + 2 * K * D + 2 * K
    return 4 * (matrices + activations + outputs)

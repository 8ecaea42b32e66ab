"""``jaxflow reproduce``: every claim of the gradient-flow notes, measured and set beside its theory.

Each section is a function ``section(ctx) -> Section`` registered in :data:`SECTIONS`, in report
order. A section computes its numbers (jit-compiled, vmapped over seeds and configurations), saves
its figures into the report folder, and states its checks: measured value, theory, tolerance,
pass/fail. :func:`reproduce` runs them with a progress display and writes the report
(:func:`jaxflow.report.write_report`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxflow as jf
from jaxflow.report import Check, Section, write_report

__all__ = ["Report", "reproduce"]


class Context(NamedTuple):
    """What a section needs: where to write, how big to run, a key, and results to share."""

    folder: str
    quick: bool
    key: jax.Array
    shared: dict  # results computed once and read by several sections (one compiled call)
    lock: threading.Lock  # sections run on worker threads; `shared` is filled under this lock

    def once(self, name, compute):
        """``compute()`` the first time ``name`` is asked for in this run, the same result after."""
        with self.lock:
            if name not in self.shared:
                self.shared[name] = compute()
            return self.shared[name]

    def size(self, full, quick):
        """``quick`` in a quick run, ``full`` otherwise."""
        return quick if self.quick else full

    def save(self, ax, name: str) -> str:
        """Saves the figure of ``ax`` as ``name`` in the report folder; returns the file name."""
        from jaxflow.plotting import save_figure

        save_figure(ax, os.path.join(self.folder, name))
        return name


class Report(NamedTuple):
    """What :func:`reproduce` wrote.

    Attributes:
      sections: the :class:`~jaxflow.report.Section` results, in order.
      paths: ``{"markdown", "html", "json"}`` file paths.
      seconds: total wall-clock time.

    Example:
      See :func:`reproduce`; its fields:

      >>> from jaxflow.experiments import Report
      >>> Report._fields
      ('sections', 'paths', 'seconds')
    """

    sections: tuple[Section, ...]
    paths: dict
    seconds: float

    @property
    def passed(self) -> bool:
        """Whether every section passed its theory checks."""
        return all(s.passed for s in self.sections)


def _chain_rule(ctx: Context) -> Section:
    from jaxflow.plotting import new_axes

    depth, width = ctx.size((20, 32), (8, 16))
    tolerance = 1e-5
    names, errors = [], {"explicit": [], "grad": [], "vjp": [], "explicit_vs_grad": []}
    configs = [
        (family, builder, activation, init)
        for family, builder in (("mlp", jf.mlp), ("residual", jf.residual_stack))
        for activation, init in (("relu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier"))
    ]
    for family, builder, activation, init in ctx.size(configs, configs[::2]):
        model = builder(depth, width, activation=activation, init=init, in_dim=8, out_dim=4)
        kx, ky = jax.random.split(jax.random.fold_in(ctx.key, len(names)))
        x, y = jax.random.normal(kx, (4, 8)), jax.random.normal(ky, (4, 4))
        variables = model.init(ctx.key, x)
        check = jax.jit(lambda v, x, y: jf.chain_rule_check(model, v, x, y))(variables, x, y)
        # The float64 reference: the same weights and inputs, differentiated in float64.
        with jax.enable_x64(True):
            to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731

            @jax.jit
            def reference_grad(v, x, y):
                loss = lambda x, y: jnp.mean(jnp.square(model.apply(v, x) - y))  # noqa: E731
                return jax.vmap(jax.grad(loss))(x, y)

            reference = np.asarray(reference_grad(to64(variables), to64(x), to64(y)))
        norm = np.linalg.norm(reference, axis=-1)
        for field in ("explicit", "grad", "vjp"):
            value = np.asarray(getattr(check, field), np.float64)
            errors[field].append(float(np.max(np.linalg.norm(value - reference, axis=-1) / norm)))
        errors["explicit_vs_grad"].append(float(check.explicit_error.max()))
        names.append(f"{family}-{activation}")
    ax = new_axes(figsize=(7.5, 4))
    positions = np.arange(len(names))
    labels = {
        "explicit": "explicit J_inᵀ J_1ᵀ⋯J_Lᵀ J_outᵀ ∇_y L",
        "grad": "jax.grad",
        "vjp": "jax.vjp",
    }
    for offset, (field, label) in zip((-0.27, 0.0, 0.27), labels.items()):
        ax.bar(positions + offset, errors[field], 0.27, label=label)
    ax.axhline(tolerance, color="k", ls="--", lw=1, label="tolerance 1e-5")
    ax.axhline(float(jnp.finfo(jnp.float32).eps), color="gray", ls=":", lw=1, label="float32 ε")
    ax.set_yscale("log")
    ax.set_xticks(positions, names, rotation=20)
    ax.set_ylabel("relative error vs float64 (log scale)")
    ax.set_title(f"∂L/∂x three ways in float32, against float64 (depth {depth})")
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    worst = max(errors["explicit_vs_grad"])
    worst64 = max(max(errors[f]) for f in labels)
    return Section(
        "chain_rule",
        "The chain rule: the explicit Jacobian product equals autodiff",
        "∂L/∂x = J_1ᵀ J_2ᵀ ⋯ J_Lᵀ ∇_y L: backpropagation is the transposed product of the "
        "per-layer Jacobians (the notes' 'Chain Rule for Deep Networks').",
        f"For MLPs and residual stacks of depth {depth}, width {width}, with ReLU/tanh/sigmoid, "
        "every J_l was materialised with jax.jacrev and multiplied, transposed, into ∇_y L of an "
        "MSE loss (input map and readout included), for 4 random inputs; compared with jax.grad "
        "and jax.vjp of the whole loss, all in float32, and each against the same gradient "
        "computed in float64.",
        (
            Check("max relative error, explicit vs jax.grad", worst, "< 1e-5", worst < tolerance),
            Check("max relative error of all three vs float64", worst64, "< 1e-5", worst64 < tolerance),
        ),
        (ctx.save(ax, "chain_rule.png"),),
        {"configs": names, **errors, "depth": depth, "width": width},
        0.0,
    )


def _log_range(values, minimum_span=1.0):
    """A histogram range that spans at least ``minimum_span`` decades around the data."""
    low, high = float(np.min(values)), float(np.max(values))
    middle, span = (low + high) / 2, max(high - low, minimum_span)
    return middle - span / 2, middle + span / 2


def _spectra(ctx: Context) -> Section:
    from matplotlib.figure import Figure

    from jaxflow.plotting import new_axes

    depth, width, seeds = ctx.size((32, 64, 4), (16, 32, 2))
    configs = (("tanh", "xavier"), ("relu", "he"), ("sigmoid", "xavier"), ("linear", "orthogonal"))
    shown = [l for l in (1, 4, 16, depth) if l <= depth]
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplot_mosaic([["J"] * 4, ["c0", "c1", "c2", "c3"]], height_ratios=(1, 1.2))
    new_axes(axes["J"])
    numbers = {}
    isometry_error = None
    floor = width * float(jnp.finfo(jnp.float32).eps)
    for index, (activation, init) in enumerate(configs):
        model = jf.mlp(depth, width, activation=activation, init=init, use_bias=False)
        keys = jax.random.split(jax.random.fold_in(ctx.key, index), seeds)
        x = jax.random.normal(ctx.key, (width,))

        @jax.jit
        def spectra(key):
            chain = jf.jacobian_chain(model, model.init(key, x), x)
            return chain.layer_singular_values, chain.product_singular_values, chain.resolved

        layer_sv, sv, resolved = jax.vmap(spectra)(keys)  # (seeds, L, n)
        if activation == "linear":
            isometry_error = float(jnp.max(jnp.abs(sv - 1.0)))
        label = f"{activation}, {init}"
        j_logs = np.log10(np.maximum(np.asarray(layer_sv, np.float64).ravel(), 1e-30))
        j_logs = j_logs[j_logs > -8]  # exact zeros (ReLU's dead rows) are not a density
        axes["J"].hist(j_logs, bins=60, range=(-3, 1), histtype="step", density=True, label=label)
        ax = new_axes(axes[f"c{index}"])
        per_depth = []
        for l in shown:
            values = np.asarray(sv[:, l - 1], np.float64)
            # Only the float32-resolvable singular values are the network's (see JacobianChain).
            per_depth.append(np.log10(values[values >= values[:, :1] * floor]))
        span = _log_range(np.concatenate(per_depth))
        for l, logs in zip(shown, per_depth):
            ax.hist(logs, bins=30, range=span, histtype="step", density=True, label=f"P_{l}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("log10 σ(P_l)")
        ax.legend(fontsize=8)
        numbers[label] = {
            "log10_sigma_max_P": np.log10(np.asarray(sv[:, :, 0])).mean(0).tolist(),
            "resolved_P": np.asarray(resolved).mean(0).tolist(),
        }
    axes["c0"].set_ylabel("density")
    axes["J"].set_xlabel("log10 σ(J_l), all layers pooled")
    axes["J"].set_ylabel("density")
    axes["J"].set_title("Singular values of the per-layer Jacobians J_l = ∂h_l/∂h_{l−1}", fontsize=10)
    axes["J"].legend(fontsize=8)
    fig.suptitle(
        f"Jacobian spectra against depth: J_l (top) and the products P_l = J_l⋯J_1 (bottom); "
        f"width {width}, {seeds} seeds"
    )
    return Section(
        "spectra",
        "Jacobian spectra against depth",
        "Products of Jacobians spread their singular values with depth unless the network is "
        "dynamically isometric: a linear network with orthogonal weights keeps every singular "
        "value of P_l at exactly 1 (Saxe et al. 2014; Pennington et al. 2017).",
        f"Singular values of every J_l and every prefix product P_l for MLPs of depth {depth}, "
        f"width {width}, no biases, {seeds} seeds; densities of log10 σ (only singular values "
        "above the float32 rounding floor σ_max·n·ε are shown; ReLU's exact zeros are left out).",
        (
            Check(
                "linear-orthogonal: max |σ_i(P_l) − 1| over all l, i",
                isometry_error,
                "< 1e-4 (exactly 0 in exact arithmetic)",
                isometry_error < 1e-4,
            ),
        ),
        (ctx.save(fig, "spectra.png"),),
        numbers,
        0.0,
    )


def _activation_comparison(ctx: Context):
    """The notes' comparison (depth 10, width 64, batch 32, MSE), all activations in one call."""
    from jaxflow.experiments import compare_activations

    seeds = ctx.size(8, 4)
    keys = jax.random.split(jax.random.fold_in(ctx.key, 10), seeds)
    return ctx.once("activations", lambda: compare_activations(key=keys))


def _deep_sigmoid_stats(ctx: Context):
    """Gradient statistics of a 20-layer sigmoid MLP (Xavier): the notes' L = 20."""
    model = jf.mlp(20, 64, activation="sigmoid", init="xavier")
    kx, ky = jax.random.split(jax.random.fold_in(ctx.key, 15))
    x, y = jax.random.normal(kx, (32, 64)), jax.random.normal(ky, (32, 1))
    variables = model.init(jax.random.fold_in(ctx.key, 16), x)

    @jax.jit
    def stats(variables):
        def loss(params):
            return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

        return jf.gradient_stats(jax.grad(loss)(variables["params"]), variables["params"])

    return stats(variables)


def _gradient_table(ctx: Context) -> Section:
    result = _activation_comparison(ctx)
    relu_index = result.activations.index("relu")
    tables = {
        f"relu ({result.inits[relu_index]}), depth 10 — the notes' DeepNet": jax.tree.map(
            lambda a: a[relu_index, 0], result.stats
        ),
        "sigmoid (xavier), depth 20": _deep_sigmoid_stats(ctx),
    }
    checks, numbers, texts = [], {}, []
    for name, stats in tables.items():
        texts.append(f"{name}:\n" + jf.format_gradient_report(stats, unicode=True))
        norms = np.asarray(stats.norm, np.float64)
        rss = float(np.sqrt(np.sum(np.asarray(stats.layer_norms, np.float64) ** 2)))
        global_norm = float(stats.global_norm)
        short = name.split(",")[0]
        checks.append(
            Check(
                f"{short}: √Σ(per-layer norm²) vs global norm (relative)",
                abs(rss - global_norm) / global_norm,
                "< 1e-6 (the global norm is √Σ‖g‖², not Σ‖g‖)",
                abs(rss - global_norm) / global_norm < 1e-6,
            )
        )
        numbers[short] = {
            "leaf_names": list(stats.names),
            "norms": norms.tolist(),
            "status": list(stats.status_names()),
            "global_norm": global_norm,
            "sum_of_norms": float(norms.sum()),
        }
    relu, sigmoid = numbers["relu (he)"], numbers["sigmoid (xavier)"]
    first = sigmoid["leaf_names"].index("blocks/00/Dense_0/kernel")
    checks.append(
        Check(
            "sigmoid depth 20: ‖∂L/∂W_1‖ flagged ⚠ vanishing; ReLU-He: every leaf ✓",
            float(sigmoid["norms"][first]),
            "< 1e-7 (0.25^19 ≈ 3.6e-12 per unit gradient), and no ReLU flag",
            sigmoid["status"][first] == "vanishing" and set(relu["status"]) == {"ok"},
        )
    )
    return Section(
        "gradient_table",
        "Gradient monitoring: the notes' per-parameter table, with a true global norm",
        "After a backward pass, list every parameter's gradient norm, mean and max; mark ⚠ below "
        "1e-7 (vanishing) or above 1e3 (exploding) — the notes' check_gradient_flow. Saturating "
        "activations over 20 layers vanish (0.25^19 ≈ 1e-12). The global norm that clipping uses "
        "is √Σ‖g‖², not the sum of the per-parameter norms.",
        "jf.gradient_stats (every scanned block split per layer) and jf.format_gradient_report on "
        "the notes' DeepNet (10 × (Linear(64,64) + ReLU) + Linear(64,1), He, batch 32, MSE) and on "
        "a 20-layer sigmoid MLP (Xavier), one seed each.",
        tuple(checks),
        (),
        numbers,
        0.0,
        "\n\n".join(texts),
    )


def _gradient_flow(ctx: Context) -> Section:
    from jaxflow.plotting import plot_gradient_flow

    result = _activation_comparison(ctx)
    norms = np.asarray(result.weight_grad_norms, np.float64)  # (activation, seed, linear layer)
    index = {a: i for i, a in enumerate(result.activations)}
    sigmoid = norms[index["sigmoid"], :, 0] / norms[index["sigmoid"], :, -2]
    relu = norms[index["relu"], :, :-1]
    relu_spread = relu.max(axis=-1) / relu.min(axis=-1)
    ax = plot_gradient_flow(result)
    return Section(
        "gradient_flow",
        "Gradient flow by activation: the notes' gradient_flow.png",
        "With sigmoid (max σ′ = 1/4) the weight gradients shrink layer by layer towards the input; "
        "ReLU with He initialisation keeps them within a small factor across depth.",
        f"jaxflow.experiments.compare_activations: the notes' 10-layer network for ReLU (He), "
        f"sigmoid and tanh (Xavier), {norms.shape[1]} seeds in one compiled call; per-Linear "
        "weight-gradient norms (median and spread over seeds).",
        (
            Check(
                "sigmoid: ‖∂L/∂W_1‖ / ‖∂L/∂W_10‖, largest over seeds",
                float(sigmoid.max()),
                "< 1e-2 (decays with depth)",
                float(sigmoid.max()) < 1e-2,
            ),
            Check(
                "ReLU-He: max/min over the 10 hidden layers, largest over seeds",
                float(relu_spread.max()),
                "< 10",
                float(relu_spread.max()) < 10,
            ),
        ),
        (ctx.save(ax, "gradient_flow.png"),),
        {
            "activations": list(result.activations),
            "inits": list(result.inits),
            "weight_grad_norms": norms.tolist(),
        },
        0.0,
    )


def _init_comparison(ctx: Context) -> Section:
    from jaxflow.experiments import compare_inits
    from jaxflow.plotting import plot_init_comparison

    seeds = ctx.size(16, 8)
    result = compare_inits(key=jax.random.split(jax.random.fold_in(ctx.key, 11), seeds))
    ratios2 = np.asarray(result.layer_ratios, np.float64) ** 2  # (init, seed, layer)
    checks, numbers = [], {}
    for i, (init, predicted) in enumerate(zip(result.inits, result.predicted)):
        per_seed = ratios2[i].mean(axis=-1)  # pooled over layers, one value per seed
        mean, se = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(seeds)
        checks.append(
            Check(
                f"{init}: E[(per-layer ratio)²] over {seeds} seeds and 30 layers",
                float(mean),
                f"= σ_w²/2 = {predicted**2:.3g} ± 5 s.e. ({5 * se:.2g})",
                abs(mean - predicted**2) < 5 * se,
            )
        )
        numbers[init] = {"mean_ratio_squared": float(mean), "standard_error": float(se),
                         "predicted_ratio": predicted}  # fmt: skip
    ax = plot_init_comparison(result)
    return Section(
        "init",
        "Initialisation: Xavier vs He on a 30-layer ReLU network",
        "For ReLU with W ~ N(0, σ_w²/n), half the units pass the gradient, so each layer backward "
        "multiplies its squared norm by σ_w²/2: a per-layer ratio of 1/√2 with Xavier (σ_w² = 1) "
        "and 1 with He (σ_w² = 2) — He et al. (2015), eq. 13.",
        f"jaxflow.experiments.compare_inits: ‖∂L/∂h_{{l−1}}‖/‖∂L/∂h_l‖ for every layer of a "
        f"30-layer width-64 ReLU MLP, {seeds} seeds, both inits in one compiled call. The squared "
        "ratio is compared (its mean is unbiased at finite width; the ratio's mean is ~1% low).",
        tuple(checks),
        (ctx.save(ax, "init.png"),),
        numbers,
        0.0,
    )


def _residual(ctx: Context) -> Section:
    from jaxflow.experiments import compare_residual
    from jaxflow.plotting import plot_residual_comparison

    seeds = ctx.size(8, 4)
    result = compare_residual(
        activation="sigmoid", key=jax.random.split(jax.random.fold_in(ctx.key, 12), seeds)
    )
    plain, residual = np.asarray(result.plain_ratio), np.asarray(result.residual_ratio)
    ax = plot_residual_comparison(result)
    return Section(
        "residual",
        "Residual connections: an identity path for the gradient",
        "For h_l = h_{l−1} + F(h_{l−1}) the Jacobian is I + ∂F/∂h: the identity term carries the "
        "gradient even where ∂F/∂h vanishes (the notes; He et al. 2016).",
        f"jaxflow.experiments.compare_residual: ‖∂L/∂h_0‖/‖∂L/∂h_50‖ for a 50-layer sigmoid MLP and "
        f"a 50-block sigmoid residual stack (Linear → σ → Linear branches), Xavier, width 64, "
        f"{seeds} seeds.",
        (
            Check("plain MLP: first-to-last ratio, largest over seeds", float(plain.max()),
                  "< 1e-10", float(plain.max()) < 1e-10),
            Check("residual stack: first-to-last ratio, smallest over seeds", float(residual.min()),
                  "> 1e-2", float(residual.min()) > 1e-2),
        ),  # fmt: skip
        (ctx.save(ax, "residual.png"),),
        {"plain_ratio": plain.tolist(), "residual_ratio": residual.tolist()},
        0.0,
    )


def _clipping(ctx: Context) -> Section:
    import optax
    from matplotlib.figure import Figure

    from jaxflow.plotting import plot_training

    # A ReLU MLP above criticality (σ_w² = 3 > 2) with a large step: the notes' exploding case.
    depth, width, steps = 10, 16, ctx.size(60, 30)
    model = jf.mlp(depth, width, activation="relu", init=(3.0, 0.0))
    kx, ky = jax.random.split(jax.random.fold_in(ctx.key, 13))
    x, y = jax.random.normal(kx, (32, width)), jax.random.normal(ky, (32, 1))
    variables = model.init(jax.random.fold_in(ctx.key, 14), x)
    optimizer = optax.sgd(0.05)
    plain = jf.train(model, variables, (x, y), optimizer, steps)
    clipped = jf.train(model, variables, (x, y), optimizer, steps, clip_norm=1.0)
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_training(plain, left)
    left.set_title("no clipping")
    plot_training(clipped, right)
    right.set_title("optax.clip_by_global_norm(1.0)")
    final = float(clipped.loss[-1])
    return Section(
        "clipping",
        "Exploding gradients and clipping",
        "Exploding gradients make the loss NaN or Inf; clipping the global gradient norm "
        "(torch.nn.utils.clip_grad_norm_ in the notes, optax.clip_by_global_norm here) keeps "
        "training finite.",
        f"jf.train on a {depth}-layer ReLU MLP with σ_w² = 3 (above ReLU's critical 2), width "
        f"{width}, SGD at learning rate 0.05, {steps} steps, once without clipping and once with "
        "clip_by_global_norm(1.0); the loop stops at the first non-finite step and names it.",
        (
            Check("without clipping: first non-finite step", float(plain.first_nonfinite_step
                  if plain.first_nonfinite_step is not None else -1), "a step is reported",
                  plain.first_nonfinite_step is not None),
            Check("with clipping: every step finite, final loss / initial loss",
                  final / float(clipped.loss[0]), "finite and < 1", clipped.finite and
                  final < float(clipped.loss[0])),
        ),  # fmt: skip
        (ctx.save(fig, "clipping.png"),),
        {
            "plain_loss": plain.loss.tolist(),
            "plain_grad_norm": plain.grad_norm.tolist(),
            "plain_first_nonfinite_step": plain.first_nonfinite_step,
            "plain_nonfinite": list(plain.nonfinite),
            "clipped_loss": clipped.loss.tolist(),
            "clipped_grad_norm": clipped.grad_norm.tolist(),
            "clip_fraction": clipped.clip_fraction,
        },
        0.0,
    )


def _sigmoid_bound(ctx: Context) -> Section:
    from matplotlib.figure import Figure

    from jaxflow.experiments import sigmoid_bound
    from jaxflow.plotting import plot_sigmoid_bound, plot_tight_construction

    seeds = ctx.size(256, 32)
    inits = ctx.size(("xavier", "he", "orthogonal", "critical"), ("xavier", "orthogonal"))
    result = sigmoid_bound(
        seeds=seeds, inits=inits, seed_batch=min(seeds, 128), key=jax.random.fold_in(ctx.key, 20)
    )
    tight = float(np.exp(np.asarray(result.tight.log_ratio, np.float64)[-1]))
    exact = 2.0**-38
    random = result.random
    log_ratio = np.asarray(random.log_ratio, np.float64)
    log_worst = np.asarray(random.log_worst, np.float64)
    log_product = np.asarray(random.log_product, np.float64)
    log_looser = np.asarray(random.log_looser, np.float64)
    slack = 1e-4  # float32 rounding of the logarithms
    chain_holds = bool(
        np.all(log_ratio <= log_worst + slack)
        and np.all(log_worst <= log_product + slack)
        and np.all(log_product <= log_looser + slack)
    )
    inits = list(result.inits)
    xavier, orthogonal = inits.index("xavier"), inits.index("orthogonal")
    worst_exceed = np.asarray(result.worst_exceed)
    median = np.median(log_ratio[xavier, :, -1]) / np.log(10)
    predicted = float(np.log10(np.asarray(result.mean_field)[xavier, -1]))
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_tight_construction(result, left)
    plot_sigmoid_bound(result, right)
    return Section(
        "sigmoid_bound",
        "The vanishing-gradient bound and sigmoid's 0.25^19",
        "‖∂L/∂z^[1]‖ ≤ ∏_{l=2}^{L} ‖J^[l]‖ · ‖∂L/∂z^[L]‖ with J^[l] = W^[l] diag(σ′(z^[l−1])); with "
        "sup|σ′| = 1/4 and L = 20 the notes give 0.25^19 ≈ 1e-12 — which bounds the ratio only "
        "when every ‖W^[l]‖₂ ≤ 1.",
        f"jaxflow.experiments.sigmoid_bound, depth 20, width 64: (a) orthogonal weights with biases "
        f"that put every pre-activation at exactly 0, where every singular value of the backward "
        f"map is 0.25^19 = 2^−38; (b) {seeds} seeds each of {', '.join(result.inits)}, one "
        "compiled call: the measured ratio, its worst direction σ_max, the product of "
        "spectral norms and the looser ∏ sup|σ′|·‖W‖₂, beside the mean-field χ₁^((L−1)/2).",
        (
            Check("tight construction: measured ratio / 2^−38 − 1", tight / exact - 1,
                  "|·| < 1e-5 (float32)", abs(tight / exact - 1) < 1e-5),
            Check("ratio ≤ worst direction ≤ ∏‖J‖₂ ≤ ∏ sup|σ′|‖W‖₂, every seed and depth",
                  float(chain_holds), "always (1 = holds)", chain_holds),
            Check("Xavier (‖W‖₂ ≈ 2): fraction whose worst direction exceeds 0.25^19",
                  float(worst_exceed[xavier, -1]), "> 0.5: the 0.25^(L−1) line is no bound here",
                  float(worst_exceed[xavier, -1]) > 0.5),
            Check("orthogonal (‖W‖₂ = 1): fraction whose worst direction exceeds 0.25^19",
                  float(worst_exceed[orthogonal, -1]), "= 0", float(worst_exceed[orthogonal, -1]) == 0),
            Check("Xavier: median log10 ratio at L = 20 vs mean-field χ₁^(19/2)",
                  float(median - predicted), "|Δ| < 0.5 decades", abs(median - predicted) < 0.5),
        ),  # fmt: skip
        (ctx.save(fig, "sigmoid_bound.png"),),
        {
            "tight_ratio": tight,
            "two_to_minus_38": exact,
            "inits": inits,
            "exceed": np.asarray(result.exceed).tolist(),
            "worst_exceed": worst_exceed.tolist(),
            "median_log10_ratio": (np.median(log_ratio, axis=1) / np.log(10)).tolist(),
            "mean_field_log10": np.log10(np.asarray(result.mean_field)).tolist(),
            "seeds": seeds,
        },
        0.0,
    )


def _mean_field(ctx: Context) -> Section:
    from matplotlib.figure import Figure

    from jaxflow.experiments import chi1_decay
    from jaxflow.plotting import plot_chi1_decay

    seeds, smooth_width = ctx.size((32, 128), (16, 64))
    configs = (("relu", "he", 64), ("tanh", "xavier", smooth_width), ("sigmoid", "xavier", smooth_width))
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    checks, numbers = [], {}
    for index, (ax, (activation, init, width)) in enumerate(zip(axes, configs)):
        model = jf.mlp(20, width, activation=activation, init=init)
        result = chi1_decay(model, seeds=seeds, key=jax.random.fold_in(ctx.key, 30 + index))
        plot_chi1_decay(result, ax)
        ax.set_title(f"{activation}, {init} (σ_w² = {float(model.init_scheme.sigma_w2):g}), "
                     f"width {width}: χ₁ = {float(result.chi1):.4g}", fontsize=10)  # fmt: skip
        # Monte-Carlo error plus the documented O(l/n) finite-width bias of smooth activations
        # (≈ 0.34·l/n for sigmoid-Xavier; ReLU's mean is exact): allow 5 s.e. + (l/n)·χ₁^l.
        predicted, layers = np.asarray(result.predicted), np.asarray(result.layers)
        allowance = layers / width * predicted
        worst = 0.0
        for mean, error in ((result.msv, result.msv_error), (result.grad_decay, result.grad_decay_error)):
            miss = np.abs(np.asarray(mean) - predicted) / (5 * np.asarray(error) + allowance)
            worst = max(worst, float(miss.max()))
        checks.append(
            Check(
                f"{activation} ({init}, width {width}): max over l of |measured − χ₁^l| / "
                "(5 s.e. + (l/n)·χ₁^l), for (1/n)‖P_l‖_F² and the gradient decay",
                worst,
                "< 1",
                worst < 1,
            )
        )
        numbers[f"{activation}-{init}-{width}"] = {
            "chi1": float(result.chi1),
            "predicted": np.asarray(result.predicted).tolist(),
            "msv": np.asarray(result.msv).tolist(),
            "msv_error": np.asarray(result.msv_error).tolist(),
            "grad_decay": np.asarray(result.grad_decay).tolist(),
            "grad_decay_error": np.asarray(result.grad_decay_error).tolist(),
        }
    fig.suptitle(f"Mean-field χ₁^l against measurement: 20 layers, {seeds} seeds, ± 2 s.e.")
    return Section(
        "mean_field",
        "Mean-field theory: χ₁ predicts how fast Jacobians and gradients shrink",
        "At the fixed point q* of the length map, each layer multiplies the mean squared singular "
        "value of the Jacobian chain, and the squared gradient norm, by χ₁ = σ_w² E[φ′(√q* z)²] "
        "(Poole et al. 2016; Schoenholz et al. 2017): (1/n)‖P_l‖_F² ≈ χ₁^l.",
        f"jaxflow.experiments.chi1_decay: 20-layer MLPs, {seeds} seeds, inputs at the fixed point; "
        "the measured (1/n)‖P_l‖_F² and ‖∂L/∂h_{L−l}‖²/‖∂L/∂h_L‖² with Monte-Carlo standard errors "
        "against χ₁^l from jaxflow.theory (Gauss–Legendre quadrature split at the kinks). Smooth "
        "activations carry an O(l/width) finite-width bias (hence width 128 for tanh and "
        "sigmoid), allowed for in the check; the plots' 3-s.e. flags do not allow for it.",
        tuple(checks),
        (ctx.save(fig, "mean_field.png"),),
        numbers,
        0.0,
    )


def _dead_relu(ctx: Context) -> Section:
    from jaxflow.experiments import dead_relu_fraction
    from jaxflow.plotting import plot_dead_units

    width, seeds = ctx.size((256, 8), (128, 4))
    result = dead_relu_fraction(depth=20, width=width, seeds=seeds, key=jax.random.fold_in(ctx.key, 40))
    allowed = 5 * result.error + 1 / np.sqrt(width)
    miss = np.abs(result.mean - result.predicted)
    ax = plot_dead_units(result)
    return Section(
        "dead_relu",
        "Dead ReLUs",
        "ReLU does not saturate but can leave units dead: a unit whose pre-activation is ≤ 0 for "
        "every input passes no gradient. At initialisation, for two inputs with correlation ρ, the "
        "fraction dead on both is 1/4 + arcsin(ρ_l)/(2π) (Sheppard's formula), with ρ_l growing "
        "with depth along ReLU's arc-cosine kernel (Cho & Saul 2009) towards 1/2.",
        f"jaxflow.experiments.dead_relu_fraction: 20-layer ReLU MLPs (He, zero biases), width "
        f"{width}, {seeds} seeds of fresh weights and input pairs with correlation 0.5; "
        "jf.dead_unit_fraction per layer.",
        (
            Check("max over layers of |measured − predicted| / (5 s.e. + 1/√n)",
                  float(np.max(miss / allowed)), "< 1", bool(np.all(miss < allowed))),
            Check("predicted fraction rises with depth, layer 1 → 20", float(result.predicted[-1]),
                  "from 1/3 towards 1/2", bool(np.all(np.diff(result.predicted) > 0))),
        ),  # fmt: skip
        (ctx.save(ax, "dead_relu.png"),),
        {"layers": result.layers.tolist(), "predicted": result.predicted.tolist(),
         "mean": result.mean.tolist(), "error": result.error.tolist()},  # fmt: skip
        0.0,
    )


def _sweep(ctx: Context) -> Section:
    from matplotlib.figure import Figure

    from jaxflow.plotting import plot_gradient_ratio, plot_sweep_heatmap

    seeds = ctx.size(8, 4)
    grid = jf.Grid(
        depth=[2, 5, 10, 20],
        activation=["relu", "tanh", "sigmoid"],
        init=[(0.5, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0)],
        width=32,
        seeds=seeds,
        batch=4,
        metrics=["grad_ratio", "theory"],
    )
    ds = jf.sweep(grid, quiet=True)
    fig = Figure(figsize=(13, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.1))
    plot_sweep_heatmap(ds, "grad_ratio", axes=top.subplots(1, 3))
    plot_gradient_ratio(ds, ax=bottom.subplots())
    median = np.log10(np.asarray(ds["grad_ratio"].median("seed"), np.float64))
    theory = np.log10(np.asarray(ds["theory_grad_ratio"], np.float64))
    status = np.asarray(ds["theory_status"])  # (activation, init) names: "ok", "marginal", ...
    ok = np.broadcast_to((status == "ok")[:, :, None], median.shape)
    miss = np.abs(median - theory)[ok]
    marginal = [f"{a} at σ_w²={w:g}" for a, row in zip(grid.activation, status)
                for w, st in zip(ds["sigma_w2"].values, row) if st != "ok"]  # fmt: skip
    return Section(
        "sweep",
        "A depth × initialisation sweep",
        "Below the critical σ_w² the gradient shrinks geometrically with depth, above it grows "
        "(ReLU's critical point is σ_w² = 2); mean-field theory predicts the first-to-last ratio "
        "as χ₁^(d/2).",
        f"jaxflow.sweep over depths {{2, 5, 10, 20}} × ReLU/tanh/sigmoid × σ_w² ∈ {{0.5, 1, 2, 3}} "
        f"(σ_b² = 0) × {seeds} seeds, width 32, one compilation; ‖∂L/∂h_0‖/‖∂L/∂h_d‖ per network "
        "(median over seeds) against χ₁^(d/2). Cells where theory reports a marginal fixed point "
        f"({', '.join(marginal) or 'none'}) are shown but not checked.",
        (
            Check("max |log10 measured − log10 χ₁^(d/2)| where theory's fixed point is stable",
                  float(miss.max()), "< 0.5 decades (width 32)", float(miss.max()) < 0.5),
            Check("compilations for the whole grid", float(ds.attrs["compilations"]), "= 1",
                  ds.attrs["compilations"] == 1),
        ),  # fmt: skip
        (ctx.save(fig, "sweep.png"),),
        {"grad_ratio_median_log10": median.tolist(), "theory_log10": theory.tolist(),
         "theory_status": status.tolist(), "grid": grid.to_dict()},  # fmt: skip
        0.0,
    )


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "chain_rule": _chain_rule,
    "gradient_table": _gradient_table,
    "gradient_flow": _gradient_flow,
    "sigmoid_bound": _sigmoid_bound,
    "init": _init_comparison,
    "mean_field": _mean_field,
    "spectra": _spectra,
    "residual": _residual,
    "clipping": _clipping,
    "dead_relu": _dead_relu,
    "sweep": _sweep,
}
"""The report's sections, in order."""


def _prepare(folder: str) -> str:
    folder = os.fspath(folder)
    if os.path.exists(folder):
        if not os.path.isdir(folder):
            raise FileExistsError(f"out={folder!r} exists and is not a folder")
        if os.listdir(folder):
            raise FileExistsError(
                f"out={folder!r} exists and is not empty; choose another --out (nothing is "
                "overwritten)"
            )
    os.makedirs(folder, exist_ok=True)
    return folder


def reproduce(
    out: str | os.PathLike = "jaxflow-report",
    *,
    quick: bool = False,
    sections: tuple[str, ...] | None = None,
    seed: int = 0,
    progress=sys.stderr,
    jobs: int | None = None,
) -> Report:
    """Runs the canned experiments and writes the report (Markdown, HTML, figures, JSON) to ``out``.

    Args:
      out: the report folder; it must not exist or be empty (nothing is overwritten).
      quick: smaller sizes (for tests and a first look); the same sections and checks.
      sections: run only these keys of :data:`SECTIONS` (default: all, in order).
      seed: the random seed of every experiment.
      progress: a text stream for one progress line per section, or ``None`` for silence.
      jobs: sections run at once on worker threads (default: min(2, cores)); every section's
        numbers are the same whatever ``jobs`` is.

    Returns:
      A :class:`Report`; ``report.passed`` says whether every section agreed with its theory.

    Raises:
      FileExistsError: if ``out`` exists and is not empty.
      ValueError: for an unknown section name.

    Example:
      >>> import tempfile, jaxflow.experiments as ex
      >>> report = ex.reproduce(tempfile.mkdtemp(), quick=True, sections=("dead_relu",), progress=None)
      >>> report.passed
      True
    """
    keys = tuple(SECTIONS) if sections is None else tuple(sections)
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        raise ValueError(f"sections={unknown} are unknown; valid: {', '.join(SECTIONS)}")
    if jobs is None:
        jobs = min(2, os.cpu_count() or 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is not allowed; it must be an integer >= 1")
    folder = _prepare(out)
    ctx = Context(folder, quick, jax.random.key(seed), {}, threading.Lock())
    start = time.perf_counter()
    done = [0]
    report_lock = threading.Lock()

    def run(key):
        t0 = time.perf_counter()
        section = SECTIONS[key](ctx)
        section = section._replace(seconds=time.perf_counter() - t0)
        with report_lock:
            done[0] += 1
            if progress is not None:
                verdict = "pass" if section.passed else "FAIL"
                print(f"[{done[0]}/{len(keys)}] {key}: {verdict} ({section.seconds:.1f} s, "
                      f"{time.perf_counter() - start:.0f} s elapsed)", file=progress, flush=True)  # fmt: skip
        return section

    # Sections are independent and mostly compile, which XLA does outside the GIL on one core:
    # running `jobs` at a time keeps every core compiling. Results keep the report's order.
    if progress is not None:
        print(f"reproducing {len(keys)} sections ({'quick' if quick else 'full'} sizes, "
              f"{jobs} at a time) into {folder}", file=progress, flush=True)  # fmt: skip
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run, keys))
    seconds = time.perf_counter() - start
    device = jax.devices()[0]
    meta = {
        "title": "jaxflow: the gradient-flow notes, reproduced",
        "jaxflow": jf.__version__,
        "jax": jax.__version__,
        "device": f"{device.platform} ({device.device_kind}) × {jax.device_count()}",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "seconds": round(seconds, 1),
    }
    paths = write_report(results, folder, meta)
    return Report(tuple(results), paths, seconds)

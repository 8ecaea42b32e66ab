"""Report sections from mean-field theory: χ₁ decay and dead ReLUs."""

from __future__ import annotations

import jax
import numpy as np

import jaxflow as jf
from jaxflow.experiments.dead_units import dead_relu_fraction
from jaxflow.experiments.mean_field import chi1_decay
from jaxflow.plotting import plot_chi1_decay_panels, plot_dead_units
from jaxflow.report._context import Context
from jaxflow.report.writer import Check, Section

__all__ = ["dead_relu", "mean_field"]


def mean_field(ctx: Context) -> Section:
    """Mean-field χ₁^l against the measured Jacobian and gradient decay."""
    seeds, smooth_width = ctx.size((32, 128), (16, 64))
    configs = (
        ("relu", "he", 64),
        ("tanh", "xavier", smooth_width),
        ("sigmoid", "xavier", smooth_width),
    )
    checks, numbers, results, titles = [], {}, [], []
    for index, (activation, init, width) in enumerate(configs):
        model = jf.mlp(20, width, activation=activation, init=init)
        result = chi1_decay(model, seeds=seeds, key=jax.random.fold_in(ctx.key, 30 + index))
        results.append(result)
        titles.append(f"{activation}, {init} (σ_w² = {float(model.init_scheme.sigma_w2):g}), "
                      f"width {width}: χ₁ = {float(result.chi1):.4g}")  # fmt: skip
        # Monte-Carlo error plus the documented O(l/n) finite-width bias of smooth activations
        # (≈ 0.34·l/n for sigmoid-Xavier; ReLU's mean is exact): allow 5 s.e. + (l/n)·χ₁^l.
        predicted, layers = np.asarray(result.predicted), np.asarray(result.layers)
        allowance = layers / width * predicted
        worst = 0.0
        for mean, error in (
            (result.msv, result.msv_error),
            (result.grad_decay, result.grad_decay_error),
        ):
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
    fig = plot_chi1_decay_panels(
        results,
        titles,
        title=f"Mean-field χ₁^l against measurement: 20 layers, {seeds} seeds, ± 2 s.e.",
    )
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


def dead_relu(ctx: Context) -> Section:
    """Dead ReLUs at initialisation against Sheppard's formula on the arc-cosine kernel."""
    # Seeds are the replicates of the check (DeadUnits.z_scores), so they give it its power: a
    # prediction 20 % of its rise off was caught 0/20 times at width 128 with 4 seeds, 17/20 at
    # 256 with 8; 16-32 seeds are recommended.
    width, seeds = ctx.size((256, 32), (256, 16))
    key = jax.random.fold_in(ctx.key, 40)
    result = dead_relu_fraction(depth=20, width=width, seeds=seeds, key=key)
    z, pooled = result.z_scores()
    worst = max(float(np.abs(z).max()), abs(pooled))
    # What the check would say of a wrong theory: the prediction moved by 20 % of its rise.
    rise = result.predicted[-1] - result.predicted[0]
    z_off, pooled_off = result.z_scores(result.predicted + 0.2 * rise)
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
        "jf.dead_unit_fraction per layer. The seeds are the replicates: each layer's mean and "
        "the mean over layers are compared with the prediction in standard errors (the seeds' "
        "spread over √S, floored at the binomial one; DeadUnits.z_scores). The same data put a "
        "prediction shifted by 20 % of its rise at "
        f"{max(np.abs(z_off).max(), abs(pooled_off)):.1f} standard errors.",
        (
            Check(
                "largest z = (measured − predicted)/s.e., in absolute value, over the 20 layers "
                "and the layer-mean",
                worst,
                "≤ 4",
                result.agrees(),
            ),
            Check(
                "predicted fraction rises with depth, layer 1 → 20",
                float(result.predicted[-1]),
                "from 1/3 towards 1/2",
                bool(np.all(np.diff(result.predicted) > 0)),
            ),
        ),  # fmt: skip
        (ctx.save(ax, "dead_relu.png"),),
        {
            "layers": result.layers.tolist(),
            "predicted": result.predicted.tolist(),
            "mean": result.mean.tolist(),
            "error": result.error.tolist(),
            "z": z.tolist(),
            "z_layer_mean": pooled,
            "z_shifted_20_percent_of_rise": z_off.tolist(),
            "z_layer_mean_shifted_20_percent_of_rise": pooled_off,
        },  # fmt: skip
        0.0,
    )

"""Report section: signal propagation predicts which deep networks train, and how fast."""

from __future__ import annotations

import math

import numpy as np

from jaxflow.experiments.trainability import default_data, isometry_speedup, schoenholz_heatmap
from jaxflow.plotting import plot_isometry, plot_trainability
from jaxflow.report._context import Context
from jaxflow.report.writer import Check, Section

__all__ = ["trainability"]

# Margins: the worst value measured, less an allowance, so that another data split or seed still
# passes while a wrong theory line or a broken engine does not.
# Measured on the digits over five data splits (quick) and three (full), seeds 0-1 each:
# below 6ξ_c 0.86-0.89 train (quick), 0.78-0.80 (full); above it every network failed; tanh's
# speed-up at the deepest depth 2.9-3.3 (quick), 10-20 (full: a lower bound, the Gaussian
# networks never reach the target); ReLU's final-loss ratio 0.95-1.15 (quick), 0.99-1.00 (full).
BELOW_TRAIN = 0.7  # of the networks shallower than 6ξ_c, at least this fraction trains
ABOVE_FAIL = 0.75  # of the networks deeper than 6ξ_c, at least this fraction does not
SPEEDUP = 2.0  # tanh: orthogonal reaches the loss target at least this many times sooner
RELU_WITHIN = 0.35  # ReLU: |speed-up − 1| at most this (the paper: no gain)


def _percent(x) -> str:
    return "n/a" if not math.isfinite(float(x)) else f"{100 * float(x):.0f} %"


def _relu_gain(iso) -> tuple[float, str]:
    """ReLU's gain at the deepest depth: the speed-up, or the final-loss ratio where neither
    initialisation reaches the loss target (as :func:`isometry_speedup` decides ``no_speedup``)."""
    a = iso.activation.index("relu")
    if math.isfinite(float(iso.speedup[a, -1])):
        return float(iso.speedup[a, -1]), "steps-to-target ratio"
    return float(iso.loss_ratio[a, -1]), "final-loss ratio (neither reached the target)"


def _draw_six_xi_c(ax, heat, activation="tanh"):
    """6ξ_c and the critical σ_w² over the heat map, as ``plot_trainability(theory=True)`` draws
    them but on 16 σ_w² in two calls of 8.

    Why not the plot's own curve: it evaluates 400 σ_w² in one batch, and the fixed-point
    iterations of the points next to the critical σ_w² keep the whole batch running (≈ 10 s on
    2 cores, a third of the report's quick budget). Batches of 8 reuse the program the
    experiment already compiled, each call costs the same whatever its 8 points, and 6ξ_c is
    smooth except at its peak on the critical σ_w²: 8 points on each side, spaced geometrically
    towards the peak, draw it; the points within 0.02 of the critical σ_w² (where 6ξ_c is far
    above the deepest network anyway) are left out.
    """
    from jaxflow import theory

    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    critical = heat.critical_sigma_w2
    low, high = max(xlim[0], 1e-3), xlim[1]
    sides = []
    if critical - 0.02 > low:
        sides.append(critical - np.geomspace(critical - low, 0.02, 8))
    if critical + 0.02 < high:
        sides.append(critical + np.geomspace(0.02, high - critical, 8))
    xs, ys = [], []
    for side in sides:  # one call per side: the gap at the peak is not bridged by a line
        xs.append(side)
        ys.append(6 * np.asarray(theory.depth_scales(activation, side, heat.sigma_b2).xi_c, float))
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        ax.plot(x, y, color="white", linewidth=2.0, label="6ξ_c (mean field)" if i == 0 else None)
    ax.axvline(critical, color="white", linestyle="--", linewidth=1.2,
               label=f"critical σ_w² = {critical:.3g} (χ₁ = 1)")  # fmt: skip
    ax.legend(loc="upper right", fontsize=8, facecolor="0.3", labelcolor="white", framealpha=0.8)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    return ax


def _heat_table(heat) -> str:
    lines = [f"test accuracy (mean over seeds; trains at ≥ {heat.threshold:.3f}, chance "
             f"{heat.chance:.3f}); * = depth above 6ξ_c"]  # fmt: skip
    header = "depth \\ σ_w²  " + "  ".join(f"{w:>6.3g}" for w in heat.sigma_w2)
    for i, steps in enumerate(heat.steps):
        lines += ["", f"after {int(steps)} steps:", header]
        for k, depth in enumerate(heat.depth):
            cells = [
                f"{heat.accuracy[i, k, j]:>5.2f}{' ' if heat.below[k, j] else '*'}"
                for j in range(len(heat.sigma_w2))
            ]
            lines.append(f"{int(depth):>12}  " + "  ".join(cells))
    lines += ["", "6ξ_c:         " + "  ".join(f"{6 * x:>6.3g}" for x in heat.xi_c)]
    return "\n".join(lines)


def _iso_table(iso) -> str:
    lines = ["", "isometry (depth: steps to target Gaussian / orthogonal, speed-up, final loss "
             "ratio, initial Jacobian log-spread Gaussian / orthogonal):"]  # fmt: skip
    for a, activation in enumerate(iso.activation):
        lines.append(f"{activation} at σ_w² = {iso.sigma_w2[a]:.4g}, σ_b² = {iso.sigma_b2:g}:")
        for k, depth in enumerate(iso.depth):
            g, o = iso.steps_to_target[a, :, k]
            lines.append(
                f"  depth {int(depth):>3}: {g:>5.0f} / {o:<5.0f} speed-up {iso.speedup[a, k]:>5.2f}  "
                f"loss ratio {iso.loss_ratio[a, k]:>5.2f}  spread "
                f"{iso.jacobian_spread[a, 0, k]:.2f} / {iso.jacobian_spread[a, 1, k]:.2f}"
            )
    return "\n".join(lines)


def checks(heat, iso) -> tuple[Check, ...]:
    """The section's four checks of a :class:`~jaxflow.experiments.SchoenholzHeatmap` and an
    :class:`~jaxflow.experiments.IsometrySpeedup`, against the margins above."""
    late = int(heat.steps[-1])
    below, above = float(heat.fraction_below_train[-1]), float(heat.fraction_above_fail[-1])
    seeds = heat.result.sizes["seed"] if heat.result is not None else 1
    deeper = np.asarray(heat.depth)[:, None] > 6 * np.asarray(heat.xi_c)[None, :]
    count_below, count_above = int(heat.below.sum()) * seeds, int(deeper.sum()) * seeds
    tanh = iso.activation.index("tanh")
    speedup = float(iso.speedup[tanh, -1])
    relu_gain, relu_measure = _relu_gain(iso)
    deepest = int(iso.depth[-1])
    return (
        Check(f"fraction of networks below 6ξ_c that train ({count_below} networks, {late} steps)",
              below, f"≥ {BELOW_TRAIN}", below >= BELOW_TRAIN),
        Check(f"fraction of networks above 6ξ_c that do not train ({count_above} networks, "
              f"{late} steps)", above, f"≥ {ABOVE_FAIL}", above >= ABOVE_FAIL),
        Check(f"tanh at depth {deepest}: orthogonal speed-up over Gaussian (steps to half the "
              "initial loss)", speedup, f"≥ {SPEEDUP}", speedup >= SPEEDUP),
        Check(f"ReLU at depth {deepest}: {relu_measure}", relu_gain,
              f"= 1 ± {RELU_WITHIN} (no gain)", abs(relu_gain - 1) <= RELU_WITHIN),
    )  # fmt: skip


def trainability(ctx: Context) -> Section:
    """Schoenholz et al.'s heat map against 6ξ_c, and Pennington et al.'s isometry speed-up."""
    data = default_data()  # the digits, or the teacher-student task without scikit-learn
    digits = data.name.startswith("digits")
    heat = schoenholz_heatmap(data, quick=ctx.quick)
    iso = isometry_speedup(data, quick=ctx.quick)
    early, late = (int(s) for s in heat.steps)
    below, above = heat.fraction_below_train, heat.fraction_above_fail
    heat_ax = _draw_six_xi_c(plot_trainability(heat.result, step=late, theory=False), heat)
    iso_axes = plot_isometry(iso.result)
    source = (
        "scikit-learn's 8×8 digits (1,348 training, 449 test images)"
        if digits
        else "a synthetic teacher–student task (scikit-learn, which ships the digits, is not "
        "installed: `pip install 'jaxflow[data]'`; the margins were set on the digits)"
    )
    networks = heat.accuracy.shape[1] * heat.accuracy.shape[2]
    seeds = heat.result.sizes["seed"]
    return Section(
        "trainability",
        "Signal propagation predicts which deep networks train",
        "A deep tanh network (σ_b² = 0.05) trains only when its depth is below a small multiple "
        "of the correlation depth scale ξ_c: Schoenholz et al. (ICLR 2017) draw 6ξ_c over heat "
        "maps of accuracy against depth × σ_w². At criticality, orthogonal weights with a "
        "sigmoid-like activation (dynamical isometry) train faster than Gaussian ones, while ReLU "
        "gains nothing from orthogonality (Pennington, Schoenholz & Ganguli, NeurIPS 2017).",
        f"jaxflow.experiments.schoenholz_heatmap and isometry_speedup on {source}, SGD (learning "
        f"rate 0.1, minibatch 32), every network of each experiment trained in one compiled "
        f"call. Heat map: {networks} (depth, σ_w²) cells × {seeds} seeds, test accuracy after "
        f"{early} and {late} steps; a network trains when it reaches chance + 25 % of the way "
        f"to perfect ({heat.threshold:.3f}). Isometry: tanh and ReLU at their critical σ_w² "
        f"(σ_b² = {iso.sigma_b2:g}), Gaussian against orthogonal weights, depths "
        f"{', '.join(str(int(d)) for d in iso.depth)}; the speed-up is the ratio of the steps "
        "each needs to bring the training loss to half its initial value. With the number of "
        f"steps, the fraction of networks below 6ξ_c that train goes from {_percent(below[0])} "
        f"after {early} steps to {_percent(below[1])} after {late} (slow but trainable "
        "networks near the line catch up); the fraction above it that do not train from "
        f"{_percent(above[0])} to {_percent(above[1])}. At these CPU step counts the deepest networks near the critical σ_w² "
        "(where 6ξ_c diverges) have not trained yet: the trainable region lies inside the 6ξ_c "
        "line and grows towards it with the number of steps, hence the first check's margin "
        "below 1. The tanh speed-up is a lower bound where the Gaussian networks never reach "
        "the target within the run. The margins were set from "
        "runs over several seeds and data splits: the worst value seen, less an allowance.",
        checks(heat, iso),
        (
            ctx.save(heat_ax, "trainability_heatmap.png"),
            ctx.save(iso_axes[0], "trainability_isometry.png"),
        ),
        {
            "data": data.name,
            "heatmap": {
                "depth": heat.depth,
                "sigma_w2": heat.sigma_w2,
                "steps": heat.steps,
                "accuracy": heat.accuracy,
                "trains": heat.trains,
                "six_xi_c": 6 * heat.xi_c,
                "critical_sigma_w2": heat.critical_sigma_w2,
                "fraction_below_train": below,
                "fraction_above_fail": above,
                "threshold": heat.threshold,
                "chance": heat.chance,
            },
            "isometry": {
                "activation": list(iso.activation),
                "depth": iso.depth,
                "sigma_w2": iso.sigma_w2,
                "step": iso.step,
                "loss": iso.loss,
                "jacobian_spread": iso.jacobian_spread,
                "steps_to_target": iso.steps_to_target,
                "speedup": iso.speedup,
                "loss_ratio": iso.loss_ratio,
            },
            "seconds": {
                "heatmap": float(heat.result.attrs["seconds"]),
                "isometry": float(iso.result.attrs["seconds"]),
            },
        },  # fmt: skip
        0.0,
        _heat_table(heat) + "\n" + _iso_table(iso),
    )

"""Report section: the vanishing-gradient bound and sigmoid"s 0.25^19."""

from __future__ import annotations

import jax
import numpy as np

from jaxflow.experiments.bounds import sigmoid_bound
from jaxflow.plotting import plot_bound_panels
from jaxflow.report._context import Context
from jaxflow.report.writer import Check, Section

__all__ = ["sigmoid_bound_section"]


def sigmoid_bound_section(ctx: Context) -> Section:
    """The vanishing-gradient bound: exact on a tight construction, no bound for Xavier."""
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
    fig = plot_bound_panels(result)
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

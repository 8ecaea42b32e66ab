"""Report section: Jacobian spectra against depth."""

from __future__ import annotations

import numpy as np

from jaxflow.experiments.spectra import SPECTRA_CONFIGS, jacobian_spectra
from jaxflow.plotting import plot_jacobian_spectra
from jaxflow.report._context import Context
from jaxflow.report.writer import Check, Section

__all__ = ["spectra"]


def spectra(ctx: Context) -> Section:
    """Singular values of J_l and P_l against depth; linear-orthogonal stays isometric."""
    depth, width, seeds = ctx.size((32, 64, 4), (16, 32, 2))
    result = jacobian_spectra(SPECTRA_CONFIGS, depth=depth, width=width, seeds=seeds, key=ctx.key)
    # On the host from here: eager indexing of device arrays compiles a program per shape.
    product = np.asarray(result.product_singular_values)
    resolved_counts = np.asarray(result.resolved)
    numbers = {}
    isometry_error = None
    for index, ((activation, _), label) in enumerate(zip(result.configs, result.labels)):
        sv, resolved = product[index], resolved_counts[index]
        if activation == "linear":
            isometry_error = float(np.max(np.abs(sv - 1.0)))
        numbers[label] = {
            "log10_sigma_max_P": np.log10(sv[:, :, 0]).mean(0).tolist(),
            "resolved_P": resolved.mean(0).tolist(),
        }
    fig = plot_jacobian_spectra(result)
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

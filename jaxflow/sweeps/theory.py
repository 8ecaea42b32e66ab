"""Mean-field predictions beside the measured quantities, when :mod:`jaxflow.theory` exists.

For each (activation, init): χ₁ = σ_w² E[φ′(√q* z)²] (Schoenholz et al. 2017). Per layer, the mean
squared singular value of P_l is predicted as (1/n) E‖P_l‖_F² ≈ χ₁^l, and the first-to-last
gradient ratio of a depth-d network as ‖∂L/∂h_0‖ / ‖∂L/∂h_d‖ ≈ χ₁^{d/2} (each block multiplies the
expected squared norm of a backpropagated vector by χ₁). Mean-field theory is exact only as the
width grows, and assumes the pre-activations have reached q*; the sweep's inputs start at q = 1.

References:
  Poole et al., "Exponential expressivity in deep neural networks through transient chaos",
  NeurIPS 2016; Schoenholz et al., "Deep information propagation", ICLR 2017.
"""

from __future__ import annotations

import numpy as np

from .grid import init_variances


def chi1_table(grid):
    """(activation, init) array of χ₁ from :func:`jaxflow.theory.chi1`, or ``None`` without it.

    An entry is NaN where the theory declines to give a number (e.g. a diverging q*).
    """
    try:
        from jaxflow import theory
    except ImportError:
        return None
    chi1 = getattr(theory, "chi1", None)
    if chi1 is None:
        return None
    table = np.full((len(grid.activation), len(grid.init)), np.nan)
    for a, activation in enumerate(grid.activation):
        for i, init in enumerate(grid.init):
            sigma_w2, sigma_b2 = init_variances(init)
            try:
                value = chi1(activation, sigma_w2, sigma_b2)
            except (ValueError, ArithmeticError):
                continue
            value = getattr(value, "chi1", value)
            table[a, i] = float(np.asarray(value))
    return table


def add_theory(grid, ds):
    """Adds ``theory_chi1`` and the predictions beside ``P_sv_mean_sq`` and ``grad_ratio``."""
    table = chi1_table(grid)
    if table is None:
        return ds
    ds = ds.assign(theory_chi1=(("activation", "init"), table))
    ds["theory_chi1"].attrs["description"] = "mean-field chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]"
    if "P_sv_mean_sq" in ds:
        layers = ds["layer"].values.astype(float)
        ds["theory_P_sv_mean_sq"] = (
            ("activation", "init", "layer"),
            table[..., None] ** layers[None, None, :],
        )
        ds["theory_P_sv_mean_sq"].attrs["description"] = "mean-field (1/n)E||P_l||_F^2 = chi_1^l"
    if "grad_ratio" in ds:
        depths = ds["depth"].values.astype(float)
        ds["theory_grad_ratio"] = (
            ("activation", "init", "depth"),
            table[..., None] ** (depths[None, None, :] / 2),
        )
        ds["theory_grad_ratio"].attrs["description"] = "mean-field ||dL/dh_0||/||dL/dh_d|| = chi_1^(d/2)"
    return ds

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
    """χ₁ and its status per (activation, init), both from one :func:`jaxflow.theory.mean_field`
    call per activation, or ``None`` without the module.

    The status is the mean-field result's own (``jf.mean_field(a, σ_w², σ_b²).status``), never
    re-derived here, so the sweep, the report and ``jf.mean_field`` always name a cell alike
    (ReLU at σ_w² = 3: ``"diverges"``, q* = ∞; at σ_w² = 2: ``"marginal"``, every q a fixed point).

    Returns:
      ``(values, status)``: (activation, init) arrays of χ₁ (NaN where the theory gives no number)
      and the status name of each (``"ok"``, ``"marginal"``, ``"diverges"``, ...; ``"unavailable"``
      where the theory rejects the activation), or ``None``.
    """
    try:
        from jaxflow import theory
    except ImportError:
        return None
    shape = (len(grid.activation), len(grid.init))
    values = np.full(shape, np.nan)
    status = np.full(shape, "unavailable", dtype=object)
    sigma = np.asarray([init_variances(i) for i in grid.init])
    for a, activation in enumerate(grid.activation):
        try:  # one vectorised call per activation, over the grid's (σ_w², σ_b²)
            result = theory.mean_field(activation, sigma[:, 0], sigma[:, 1])
        except (ValueError, ArithmeticError):
            continue
        values[a] = np.asarray(result.chi1, dtype=float)
        status[a] = theory.PredictionStatus.name_of(np.asarray(result.status))
    values[np.isin(status, ("invalid", "not_found"))] = np.nan
    return values, status


def add_theory(ds, found):
    """Adds ``theory_chi1`` and the predictions beside ``P_sv_mean_sq`` and ``grad_ratio``.

    Args:
      ds: the assembled sweep dataset.
      found: what :func:`chi1_table` returned (``None``: the theory module is not installed,
        recorded in ``ds.attrs["theory"]``).
    """
    if found is None:
        ds.attrs["theory"] = "jaxflow.theory is not installed: no mean-field predictions"
        return ds
    table, status = found
    ds = ds.assign(
        theory_chi1=(("activation", "init"), table),
        theory_status=(("activation", "init"), status),
    )
    ds["theory_chi1"].attrs["description"] = "mean-field chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]"
    ds["theory_status"].attrs["description"] = (
        "jaxflow.mean_field's status (ok, marginal, diverges, ...)"
    )
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
        ds["theory_grad_ratio"].attrs["description"] = (
            "mean-field ||dL/dh_0||/||dL/dh_d|| = chi_1^(d/2)"
        )
    return ds

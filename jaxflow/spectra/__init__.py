"""Stable log-spectra of long Jacobian products, Lyapunov exponents, and matrix-free estimates.

A float32 product P_l = J_l ⋯ J_1 loses its small singular values within a few layers and
underflows altogether within a few dozen (see :mod:`jaxflow.jacobians`). This module never forms
P_l. It walks the chain with the same scan as the core (:func:`~jaxflow.accumulate_chain`),
carrying a factorisation whose scales live in the log domain, so ln σ_i(P_l) stays finite and
accurate at any depth. One quantity, three implementations, behind ``method=``:

* ``"svd"`` — the plain path: materialise P_l and take its SVD. Exact while P_l is representable;
  −inf once it underflows.
* ``"graded"`` (default) — the stratified product of quantum Monte Carlo (Loh et al. 1992;
  Bai et al. 2011): P_l = U_l D_l T_l with U_l orthogonal, D_l diagonal and kept as logarithms,
  T_l well conditioned. Each layer folds J_l in with a QR factorisation of J_l U_{l−1} D_{l−1}
  whose columns are pivoted by their *scaled* norms (computed from logarithms, never formed), so
  |(T̃)_ij| ≤ 1 for the new triangular factor. ln D_l alone is *not* the spectrum (it is off by
  O(ln κ(T_l))); at each emitted layer a graded SVD of D_l T_l — QR preconditioning, then one-sided
  Jacobi on log-scaled rows (Demmel & Veselić 1992) — gives every ln σ_i(P_l) to high relative
  accuracy, whatever its size.
* ``"qr"`` — Benettin et al. (1980): carry an orthonormal frame Q_l with J_l Q_{l−1} = Q_l R_l and
  accumulate Σ_{m≤l} ln|(R_m)_ii|. These are *not* the singular values of P_l: they are the
  log-volume growth of the frame's leading columns, majorised by the log singular values
  (Σ_{i≤k} of them ≤ Σ_{i≤k} ln σ_i(P_l), with equality at k = n, both being ln|det P_l|), and
  divided by l they converge to the Lyapunov exponents (:func:`lyapunov_exponents`).

Logarithms are accumulated with compensated (two-sum) addition: the running sum, ~10⁴ at depth
10,000 where one float32 ulp is ~1e-3, is not rounded at every layer; what remains is each
layer's own rounding (~ε per log, so at most L·n·ε in a sum of n logs after L layers). Exact
zeros are exact: a J_l with zero rows (ReLU units that are off) makes the product's rank drop,
and the lost singular values are −inf, not rounding.

Matrix-free estimates (wide layers, where materialising J_l is wasteful): the top singular value
by power iteration on JᵀJ with one JVP and one VJP per step (:func:`top_singular_value`), and the
mean squared singular value (1/n)‖J‖_F² by Hutchinson's estimator
(:func:`mean_squared_singular_value`), each taking a matrix or a matvec;
:func:`layer_spectral_estimates` and :func:`product_spectral_estimates` apply them to every J_l
and to P_L through the network.

Singular values without LAPACK: :func:`jacobi_singular_values` is a one-sided Jacobi SVD (values
only) in JAX operations, vectorised across a batch of small matrices — n/2 disjoint row pairs of
every matrix rotated at once — for accelerators, where batched LAPACK-style SVDs of small matrices
are slow. On CPU LAPACK is faster at every width measured (``benchmarks/svd_methods.py``), so
:func:`~jaxflow.singular_values` and the sweeps keep LAPACK there.

References:
  Benettin, Galgani, Giorgilli & Strelcyn (1980), *Lyapunov characteristic exponents for smooth
  dynamical systems and for Hamiltonian systems; a method for computing all of them*, Meccanica 15.
  Loh, Gubernatis, Scalettar, White, Scalapino & Sugar (1989), *Stable matrix-multiplication
  algorithms for low-temperature numerical simulations of fermions*; Loh & Gubernatis (1992),
  *Stable numerical simulations of models of interacting electrons in condensed-matter physics*.
  Bai, Lee, Li & Xu (2011), *Stable solutions of linear systems involving long chain of matrix
  multiplications*, Linear Algebra Appl. 435; Bai, Chen, Scalettar & Yamazaki (2011), *Numerical
  methods for quantum Monte Carlo simulations of the Hubbard model*.
  Demmel & Veselić (1992), *Jacobi's method is more accurate than QR*, SIAM J. Matrix Anal. Appl.
  13; Drmač & Veselić (2008), *New fast and accurate Jacobi SVD algorithm*, SIAM J. Matrix Anal.
  Appl. 29.
  Newman (1986), *The distribution of Lyapunov exponents: exact results for random matrices*,
  Commun. Math. Phys. 103, 121–126.
  Hestenes (1958), *Inversion of matrices by biorthogonalization and related results*, J. SIAM 6;
  Brent & Luk (1985), *The solution of singular-value and symmetric eigenvalue problems on
  multiprocessor arrays*, SIAM J. Sci. Stat. Comput. 6 (:func:`jacobi_singular_values`).
  Hutchinson (1989), *A stochastic estimator of the trace of the influence matrix*, Commun.
  Statist. Simul. Comput. 18, 1059–1076.
"""

from jaxflow.spectra.jacobi import jacobi_singular_values
from jaxflow.spectra.matrix_free import (
    HutchinsonEstimate,
    PowerIteration,
    SpectralEstimates,
    layer_spectral_estimates,
    mean_squared_singular_value,
    product_spectral_estimates,
    top_singular_value,
)
from jaxflow.spectra.stable import LogSpectrum, LyapunovSpectrum, log_spectrum, lyapunov_exponents

__all__ = [
    "HutchinsonEstimate",
    "LogSpectrum",
    "LyapunovSpectrum",
    "PowerIteration",
    "SpectralEstimates",
    "jacobi_singular_values",
    "layer_spectral_estimates",
    "log_spectrum",
    "lyapunov_exponents",
    "mean_squared_singular_value",
    "product_spectral_estimates",
    "top_singular_value",
]

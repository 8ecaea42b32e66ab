"""How close the float32 graded log-spectrum comes to float64, by depth (the numbers quoted in
``jaxflow.log_spectrum``'s docstring).

Random tanh chains h_l = tanh(W_l h_{l-1}), W_l ~ N(0, 1/n), width 32, three seeds per depth.
The float64 reference multiplies the Jacobians in NumPy, renormalising the product each layer
(the spectrum stays within ~30 nats of its top at these depths, which float64 resolves). Prints
the largest |Δ ln σ| over the top five values and over every value float64 resolves, for the
graded path and for the plain SVD (top five only: it cannot resolve the rest)::

    python benchmarks/log_spectrum_accuracy.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxflow as jf

WIDTH, SEEDS, DEPTHS = 32, 3, (1, 2, 5, 20, 100)


def block(w, h):
    return jnp.tanh(w @ h)


def reference(ws, h0):
    """ln σ(P_L) in float64, with the product renormalised every layer."""
    h, product, log_scale = np.asarray(h0, np.float64), np.eye(WIDTH), 0.0
    for w in np.asarray(ws, np.float64):
        z = w @ h
        product = ((1 - np.tanh(z) ** 2)[:, None] * w) @ product
        h = np.tanh(z)
        scale = np.linalg.norm(product)
        product, log_scale = product / scale, log_scale + np.log(scale)
    return np.log(np.linalg.svd(product, compute_uv=False)) + log_scale


def main():
    print(f"{'depth':>5}  {'graded top-5':>12}  {'graded all':>10}  {'svd top-5':>9}  span (nats)")
    for depth in DEPTHS:
        top, every, svd_top, span = [], [], [], 0.0
        for seed in range(SEEDS):
            ws = jax.random.normal(jax.random.key(seed), (depth, WIDTH, WIDTH)) / np.sqrt(WIDTH)
            h0 = jax.random.normal(jax.random.key(100 + seed), (WIDTH,))
            ref = reference(ws, h0)
            resolved = ref > ref[0] - 30
            graded = np.asarray(jf.log_spectrum(block, ws, h0, layers="last").values[0])
            plain = np.asarray(
                jf.log_spectrum(block, ws, h0, layers="last", method="svd").values[0]
            )
            top.append(np.max(np.abs(graded[:5] - ref[:5])))
            every.append(np.max(np.abs(graded[resolved] - ref[resolved])))
            svd_top.append(np.max(np.abs(plain[:5] - ref[:5])))
            span = max(span, ref[0] - ref[resolved][-1])
        print(
            f"{depth:>5}  {max(top):>12.1e}  {max(every):>10.1e}  {max(svd_top):>9.1e}  {span:.1f}"
        )


if __name__ == "__main__":
    main()

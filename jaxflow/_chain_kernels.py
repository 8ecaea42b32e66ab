"""The numerical kernels of the chain engine's log-spectrum reductions (read by
:mod:`jaxflow.spectra` and :mod:`jaxflow.blocks`): log-domain arithmetic, the graded (UDT)
update with scaled column pivoting, the graded SVD by log-scaled one-sided Jacobi, and the
Benettin QR update. Each method is an ``(init, update, read)`` triple on the state carried
through the chain's scan.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._numerics import HIGHEST, safe_log, scaled_norm
from jaxflow.chain import singular_values

# ---------------------------------------------------------------------------------------------
# Log-domain helpers


def _two_sum(a, b):
    """a + b and its rounding error (Knuth's TwoSum), so sums of logs stay exact to one rounding."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _add_logs(hi, lo, increment):
    """(hi, lo) + increment, compensated; −inf (an exact zero) absorbs everything."""
    dead = jnp.isneginf(hi) | jnp.isneginf(increment)
    s, err = _two_sum(jnp.where(dead, 0, hi), jnp.where(dead, 0, increment))
    return jnp.where(dead, -jnp.inf, s), jnp.where(dead, 0, lo + err)


def _scaled(J):
    """(J / max|J|, ln max|J|): each layer's common scale goes to the logs, so the factorisations
    below work on entries of order one whatever the size of J."""
    m = jnp.max(jnp.abs(J))
    return J / jnp.where(m > 0, m, 1), safe_log(m)


# ---------------------------------------------------------------------------------------------
# "graded": P_l = U diag(exp(hi + lo)) T, T with unit rows


def _scaled_qrcp(A, log_scale):
    """Householder QR with column pivoting of A·diag(exp(log_scale)), without forming it.

    Column scaling commutes with Householder QR (the scaled matrix has the same Q and R·diag), so
    only the pivot choice needs the scales: at step k the pivot maximises ln‖A[k:, j]‖ + ln d_j
    (Businger–Golub pivoting on the graded matrix, as in Loh et al. 1992).

    Returns (Q, R, perm) with A[:, perm] = Q R.
    """
    n = A.shape[-1]
    idx = jnp.arange(n)

    def step(k, carry):
        A, Q, log_scale, perm = carry
        below = idx >= k
        score = jnp.where(
            below, safe_log(scaled_norm(jnp.where(below[:, None], A, 0), 0)) + log_scale, -jnp.inf
        )
        p = jnp.argmax(score)
        p = jnp.where(jnp.isneginf(score[p]), k, p)  # nothing left to pivot: keep the order
        pair, swapped = jnp.stack([k, p]), jnp.stack([p, k])
        A = A.at[:, pair].set(A[:, swapped])
        log_scale = log_scale.at[pair].set(log_scale[swapped])
        perm = perm.at[pair].set(perm[swapped])
        x = jnp.where(below, A[:, k], 0)
        alpha = -jnp.where(A[k, k] < 0, -1, 1) * scaled_norm(x, 0)
        v = x.at[k].add(-alpha)
        v = v / jnp.where(jnp.max(jnp.abs(v)) > 0, jnp.max(jnp.abs(v)), 1)
        vv = jnp.sum(v * v)
        beta = jnp.where(vv > 0, 2 / jnp.where(vv > 0, vv, 1), 0)
        A = A - beta * jnp.outer(v, jnp.matmul(v, A, precision=HIGHEST))
        Q = Q - beta * jnp.outer(jnp.matmul(Q, v, precision=HIGHEST), v)
        return A, Q, log_scale, perm

    eye = jnp.eye(n, dtype=A.dtype)
    A, Q, _, perm = jax.lax.fori_loop(0, n, step, (A, eye, log_scale, idx))
    return Q, jnp.triu(A), perm


def _sorted_rows(A):
    """(order, A[order]) with rows by descending norm. Zero rows (a ReLU unit that is off) come
    last, where Householder QR never touches them, so an exactly singular product gets exact
    zeros (−inf) rather than rounding; row order does not change singular values."""
    order = jnp.argsort(-scaled_norm(A, 1), stable=True)
    return order, A[order]


def _unsort_rows(order, Q):
    """The factor of the unsorted matrix: A[order] = Q R ⇒ A = Q[argsort(order)] R."""
    return jnp.zeros_like(Q).at[order].set(Q)


def _graded_init(n, dtype):
    eye, zeros = jnp.eye(n, dtype=dtype), jnp.zeros(n, dtype)
    return eye, zeros, zeros, eye


def _graded_update(J, state):
    """P_l = J_l U D T → U' D' T' (Loh et al. 1992; Bai et al. 2011), D' as compensated logs."""
    U, hi, lo, T = state
    J, log_scale = _scaled(J)
    rows, A = _sorted_rows(jnp.matmul(J, U, precision=HIGHEST))
    Q, R, perm = _scaled_qrcp(A, hi)
    Q = _unsort_rows(rows, Q)
    diag = jnp.diagonal(R)
    r, sign = jnp.abs(diag), jnp.where(diag < 0, -1, 1).astype(R.dtype)
    hi_p, lo_p = hi[perm], lo[perm]
    zero_scale = jnp.isneginf(hi_p)
    dead = (r == 0) | zero_scale  # rows of D' that are exactly zero
    # T̃ = D'^{-1} R D_π: (T̃)_ij = R_ij d_j / (R_ii d_i), bounded by 1 thanks to the pivoting;
    # its exponent is a difference of nearby logs, exact by Sterbenz's lemma where it matters.
    safe_hi = jnp.where(zero_scale, 0, hi_p)
    delta = (safe_hi[None, :] - safe_hi[:, None]) + (lo_p[None, :] - lo_p[:, None])
    upper = jnp.triu(jnp.ones_like(R, dtype=bool), 1) & ~zero_scale[None, :]
    ratio = safe_log(jnp.abs(R)) - safe_log(jnp.where(dead, 1, r))[:, None] + delta
    T_tilde = jnp.where(upper & ~dead[:, None], jnp.sign(R) * sign[:, None] * jnp.exp(ratio), 0)
    T_tilde = T_tilde + jnp.eye(R.shape[0], dtype=R.dtype)
    T = jnp.matmul(T_tilde, T[perm], precision=HIGHEST)
    # Keep T's rows at unit norm (their scale goes to D), so T can neither overflow nor underflow.
    nu = scaled_norm(T, 1)
    T = T / jnp.where(nu > 0, nu, 1)[:, None]
    hi, lo = _add_logs(
        hi_p, lo_p, jnp.where(dead, -jnp.inf, safe_log(r) + log_scale + safe_log(nu))
    )
    return Q * sign[None, :], hi, lo, T


@functools.cache
def _round_robin(n):
    """The circle-method schedule: n − 1 rounds (n rounded up to even) of disjoint pairs."""
    m = n + n % 2
    players, rounds = list(range(m)), []
    for _ in range(m - 1):
        rounds.append([(players[i], players[m - 1 - i]) for i in range(m // 2)])
        players = [players[0], players[-1]] + players[1:-1]
    return np.array(rounds, dtype=np.int32)  # (rounds, m // 2, 2); index n is a dummy if n is odd


def _jacobi_round(s, t, pairs):
    """One round of one-sided Jacobi on the rows e^{s_i} t_i (unit t_i), disjoint pairs at once.

    For rows a (the larger) and b with ρ = e^{s_b − s_a} ≤ 1 and g = t_a·t_b, the rotation that
    makes them orthogonal has tan θ = ρτ with τ = 2g / ((1 − ρ²) + √((1 − ρ²)² + 4ρ²g²)); the new
    rows are e^{s_a} c (t_a + ρ²τ t_b) and e^{s_b} c (t_b − τ t_a), c = cos θ: bounded whatever
    ρ, so rows of any relative size are rotated without forming them.
    """
    i, j = pairs[:, 0], pairs[:, 1]
    swap = s[j] > s[i]
    a, b = jnp.where(swap, j, i), jnp.where(swap, i, j)
    s_a, s_b, t_a, t_b = s[a], s[b], t[a], t[b]
    live = ~jnp.isneginf(s_b)  # a zero row (or the dummy) has nothing to rotate
    rho = jnp.exp(jnp.where(live, s_b - s_a, 0))
    g = jnp.sum(t_a * t_b, axis=-1)
    gap = 1 - rho * rho
    denominator = gap + jnp.sqrt(gap * gap + 4 * (rho * g) ** 2)
    tau = jnp.where(denominator > 0, 2 * g / jnp.where(denominator > 0, denominator, 1), 0)
    c = jax.lax.rsqrt(1 + (rho * tau) ** 2)
    new_a = t_a + (rho * rho * tau)[:, None] * t_b
    new_b = t_b - tau[:, None] * t_a
    n_a, n_b = scaled_norm(new_a, 1), scaled_norm(new_b, 1)
    s_a2, s_b2 = s_a + safe_log(c * n_a), s_b + safe_log(c * n_b)
    t_a2 = new_a / jnp.where(n_a > 0, n_a, 1)[:, None]
    t_b2 = new_b / jnp.where(n_b > 0, n_b, 1)[:, None]
    keep = ~live
    s = s.at[a].set(jnp.where(keep, s_a, s_a2)).at[b].set(jnp.where(keep, s_b, s_b2))
    t = (
        t.at[a]
        .set(jnp.where(keep[:, None], t_a, t_a2))
        .at[b]
        .set(jnp.where(keep[:, None], t_b, t_b2))
    )
    return s, t, jnp.max(jnp.where(live, jnp.abs(g), 0))


def _graded_log_singular_values(log_d, T, max_sweeps=40):
    """ln σ(diag(e^{log_d}) T), descending, for T with unit rows: QR-preconditioned one-sided
    Jacobi (Demmel & Veselić 1992; Drmač & Veselić 2008) in the log domain.

    Sorting the rows by scale and factoring Tᵀ = QR turns D T into D B with
    B_ij = R_ij d_j/d_i (j ≥ i): upper triangular, off-diagonals damped by the grading, so the
    rows are nearly orthogonal already and Jacobi converges in a sweep or two at depth. Each
    σ_i then carries a relative error O(ε κ(T)), independent of the grading.
    """
    n = T.shape[0]
    order = jnp.argsort(-log_d)
    d, T = log_d[order], T[order]
    _, R = jnp.linalg.qr(T.T)
    dead = jnp.isneginf(d)
    safe = jnp.where(dead, 0, d)
    upper = jnp.triu(jnp.ones_like(R, dtype=bool)) & ~dead[None, :]
    B = jnp.where(upper, R * jnp.exp(jnp.minimum(safe[None, :] - safe[:, None], 0)), 0)
    B = jnp.where(dead[:, None], jnp.eye(n, dtype=R.dtype), B)
    nrm = scaled_norm(B, 1)
    s = jnp.where(dead, -jnp.inf, d + safe_log(nrm))
    t = B / jnp.where(nrm > 0, nrm, 1)[:, None]
    if n % 2:  # the round-robin schedule pairs an odd row out with a dummy zero row
        s = jnp.concatenate([s, jnp.full((1,), -jnp.inf, s.dtype)])
        t = jnp.concatenate([t, jnp.zeros((1, n), t.dtype)])
    schedule = _round_robin(n)
    tol = jnp.finfo(T.dtype).eps * n

    def sweep(carry):
        s, t, _, count = carry

        def one_round(r, carry):
            s, t, off = carry
            s, t, g = _jacobi_round(s, t, jnp.asarray(schedule)[r])
            return s, t, jnp.maximum(off, g)

        s, t, off = jax.lax.fori_loop(0, len(schedule), one_round, (s, t, jnp.zeros((), T.dtype)))
        return s, t, off, count + 1

    def unconverged(carry):
        _, _, off, count = carry
        return (off > tol) & (count < max_sweeps)

    if n > 1:
        s, _, _, _ = jax.lax.while_loop(unconverged, sweep, (s, t, jnp.array(jnp.inf, T.dtype), 0))
    return -jnp.sort(-s[:n])


class Method(NamedTuple):
    """One implementation: the state before layer 1, its per-layer update, and its read-out."""

    init: Callable[[int, Any], Any]
    update: Callable[[jax.Array, Any], Any]
    read: Callable[[Any], jax.Array]


def _eye_init(n, dtype):
    return jnp.eye(n, dtype=dtype)


def _svd_update(J, P):
    return jnp.matmul(J, P, precision=HIGHEST)


def _svd_read(P):
    return safe_log(singular_values(P))


def _qr_init(n, dtype):
    return jnp.eye(n, dtype=dtype), jnp.zeros(n, dtype), jnp.zeros(n, dtype)


def _qr_update(J, state):
    """Benettin et al. (1980): J Q = Q' R, accumulate ln|R_ii|."""
    Q, hi, lo = state
    J, log_scale = _scaled(J)
    rows, A = _sorted_rows(jnp.matmul(J, Q, precision=HIGHEST))
    Q, R = jnp.linalg.qr(A)
    Q = _unsort_rows(rows, Q)
    hi, lo = _add_logs(hi, lo, safe_log(jnp.abs(jnp.diagonal(R))) + log_scale)
    return Q, hi, lo


def _qr_read(state):
    _, hi, lo = state
    return hi + lo


def _graded_read(state):
    _, hi, lo, T = state
    return _graded_log_singular_values(hi + lo, T)


METHODS = {
    "svd": Method(_eye_init, _svd_update, _svd_read),
    "graded": Method(_graded_init, _graded_update, _graded_read),
    "qr": Method(_qr_init, _qr_update, _qr_read),
}

"""The notes' gradient table as text, from a :class:`~jaxflow.gradients.stats.GradientStats`."""

from __future__ import annotations

import sys

import numpy as np

from jaxflow._text import encodable
from jaxflow.gradients.stats import GradientStats, GradientStatus

__all__ = ["format_gradient_report"]


_MARKS = {True: ("✓", "⚠", "‖g‖/‖w‖"), False: ("ok", "!!", "|g|/|w|")}


def format_gradient_report(
    stats: GradientStats, *, stream=None, unicode: bool | None = None
) -> str:
    """The notes' gradient table as text: one line per leaf, ✓ or ⚠, then layers and totals.

    Host-side (reads the numbers). The marks are ✓ / ⚠ as in the notes, or ``ok`` / ``!!`` when
    ``stream`` cannot encode them (a plain-ASCII terminal or log).

    Args:
      stats: unbatched :class:`GradientStats` (index a batch first: ``jax.tree.map(lambda a: a[i],
        stats)``).
      stream: where the text will go, to pick the marks (default ``sys.stdout``).
      unicode: force Unicode (``True``) or ASCII (``False``) marks; ``None`` decides by ``stream``.

    Returns:
      The report, a multi-line string (print it).

    Raises:
      TypeError: if ``stats`` is not a GradientStats. ValueError: if it is batched.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> stats = jf.gradient_stats({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1e-9])})
      >>> print(jf.format_gradient_report(stats, unicode=False))  # doctest: +ELLIPSIS
      Gradient statistics: 2 leaves, global norm 5.00e+00
      ...
      !! b       norm=1.00e-09  mean=1.00e-09  max=1.00e-09  vanishing
      ok w       norm=5.00e+00  mean=3.50e+00  max=4.00e+00
      ...
    """
    if not isinstance(stats, GradientStats):
        raise TypeError(
            f"stats is a {type(stats).__name__}; pass the GradientStats of gradient_stats"
        )
    if np.ndim(stats.norm) != 1:
        raise ValueError(
            f"stats are batched (norm shape {np.shape(stats.norm)}); select one first, e.g. "
            "jax.tree.map(lambda a: a[i], stats)"
        )
    if unicode is None:
        unicode = encodable("".join(_MARKS[True]), stream or sys.stdout)
    good, bad, ratio_label = _MARKS[bool(unicode)]
    norm, mean, max_abs, ratio = (
        np.asarray(a) for a in (stats.norm, stats.mean, stats.max_abs, stats.ratio)
    )
    statuses = GradientStatus.name_of(stats.status)
    width = max(len(n) for n in stats.names)
    show_ratio = not np.all(np.isnan(ratio))
    vanishing, exploding = stats.thresholds
    lines = [
        f"Gradient statistics: {len(stats.names)} leaves, "
        f"global norm {float(stats.global_norm):.2e}",
        f"({bad} marks norm < {vanishing:.0e} vanishing, > {exploding:.0e} exploding, "
        "or NaN/Inf nonfinite)",
        "-" * (width + 60),
    ]
    for i, name in enumerate(stats.names):
        mark = good if statuses[i] == "ok" else bad
        line = (
            f"{mark} {name:{width}s}  norm={norm[i]:.2e}  mean={mean[i]:.2e}  max={max_abs[i]:.2e}"
        )
        if show_ratio:
            line += f"  {ratio_label}={ratio[i]:.2e}"
        if statuses[i] != "ok":
            line += f"  {statuses[i]}"
        lines.append(line)
    lines.append("-" * (width + 60))
    layers = ", ".join(
        f"{n} {v:.2e}"
        for n, v in zip(stats.layer_names, np.asarray(stats.layer_norms), strict=True)
    )
    lines.append(f"layer norms: {layers}")
    counts = ", ".join(
        f"{int(c)} {GradientStatus.name_of(s)}"
        for s, c in zip(GradientStatus, stats.status_counts, strict=True)
    )
    lines.append(f"status: {counts}")
    if stats.frozen:
        lines.append(f"frozen (not measured): {', '.join(stats.frozen)}")
    return "\n".join(lines)

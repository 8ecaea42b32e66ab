"""Gradient flow through depth: by activation, by initialisation, residual vs plain, training."""

from __future__ import annotations

from jaxflow.plotting._common import (
    _ACTIVATION_GRADIENT,
    _LAYER_AXIS,
    STYLE,
    _finish_log_plot,
    _median_band,
    _seed_rows,
    new_axes,
)

__all__ = [
    "plot_chain_rule_errors",
    "plot_clipping",
    "plot_gradient_flow",
    "plot_init_comparison",
    "plot_residual_comparison",
    "plot_training",
]


def plot_gradient_flow(result, ax=None, *, quantity: str = "weight"):
    """The notes' ``gradient_flow.png``: per-layer gradient norms, one line per activation, log y.

    Args:
      result: an :class:`~jaxflow.ActivationComparison` (from
        :func:`jaxflow.experiments.compare_activations`); with several seeds the line is their
        median and the band their range.
      ax: an Axes, or ``None`` for a new figure.
      quantity: ``"weight"`` (‖∂L/∂W‖ of each Linear layer, as in the notes) or ``"activation"``
        (‖∂L/∂h_l‖, l = 0…L).

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_activations
      >>> from jaxflow.plotting import plot_gradient_flow, save_figure
      >>> ax = plot_gradient_flow(compare_activations(key=jax.random.split(jax.random.key(0), 8)))
      >>> len(ax.get_lines()), ax.get_yscale()
      (3, 'log')
      >>> # save_figure(ax, "gradient_flow.png")  # the notes' figure
    """
    import numpy as np

    if quantity not in ("weight", "activation"):
        raise ValueError(f"quantity={quantity!r} is not known; use 'weight' or 'activation'")
    ax = new_axes(ax)
    values = result.weight_grad_norms if quantity == "weight" else result.activation_grad_norms
    rows = _seed_rows(values)
    depth = rows.shape[-1] - 1
    x = np.arange(1, depth + 2) if quantity == "weight" else np.arange(depth + 1)
    for name, init, per_seed in zip(result.activations, result.inits, rows):
        _median_band(ax, x, per_seed, f"{name} ({init} init)")
    ax.set_xticks(x)
    if quantity == "weight":
        xlabel = f"Layer (Linear layer index; {depth + 1} = readout)"
        ylabel = "Weight gradient norm ‖∂L/∂W‖ (log scale)"
    else:
        xlabel, ylabel = _LAYER_AXIS, _ACTIVATION_GRADIENT
    width = np.shape(result.variables["params"]["blocks"]["Dense_0"]["kernel"])[-1]
    title = f"Gradient flow comparison: MLP of depth {depth}, width {width}"
    return _finish_log_plot(ax, xlabel, ylabel, title)


def plot_init_comparison(result, ax=None):
    """Activation-gradient norms relative to the last layer, per initialisation, with theory.

    ‖∂L/∂h_l‖ / ‖∂L/∂h_L‖ against l on a log axis; the dashed lines are He et al.'s prediction
    (σ_w²/2)^((L−l)/2) for ReLU (a straight line on this axis: 1/√2 per layer for Xavier, flat for
    He).

    Args:
      result: an :class:`~jaxflow.InitComparison` (from :func:`jaxflow.experiments.compare_inits`).
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_inits
      >>> from jaxflow.plotting import plot_init_comparison
      >>> ax = plot_init_comparison(compare_inits(key=jax.random.split(jax.random.key(5), 16)))
      >>> len(ax.get_lines())  # two measured, two predicted
      4
    """
    import numpy as np

    ax = new_axes(ax)
    rows = _seed_rows(result.activation_grad_norms)
    rows = rows / rows[..., -1:]
    depth = rows.shape[-1] - 1
    x = np.arange(depth + 1)
    for i, (name, per_seed) in enumerate(zip(result.inits, rows)):
        line = _median_band(ax, x, per_seed, f"{name} (measured)")
        if result.predicted is not None:
            ax.plot(
                x,
                result.predicted[i] ** (depth - x),
                linestyle=STYLE["theory_linestyle"],
                color=line.get_color(),
                label=f"{name}: ({result.predicted[i]:.3f})^(L−l), He et al. 2015",
            )
    return _finish_log_plot(
        ax,
        _LAYER_AXIS,
        "‖∂L/∂h_l‖ / ‖∂L/∂h_L‖ (log scale)",
        f"Initialisation and backward gradient flow: {result.activation} MLP of depth {depth}",
    )


def plot_residual_comparison(result, ax=None, *, growth=None, growth_label=None):
    """Activation-gradient norms of a plain MLP and a residual stack of the same depth, log y.

    Args:
      result: a :class:`~jaxflow.ResidualComparison` (from
        :func:`jaxflow.experiments.compare_residual`).
      ax: an Axes, or ``None`` for a new figure.
      growth: the residual stack's predicted backward growth per block, or ``None``: drawn dashed
        from the median ‖∂L/∂H_L‖ back, ‖∂L/∂H_L‖·growth^(L−l) (e.g. √3 for He-ReLU blocks,
        where the gradient grows as 3^(d/2) over d blocks).
      growth_label: the legend entry of that line (default names the factor).

    Returns:
      The Axes.

    Example:
      >>> import jax
      >>> from jaxflow.experiments import compare_residual
      >>> from jaxflow.plotting import plot_residual_comparison
      >>> keys = jax.random.split(jax.random.key(3), 4)
      >>> ax = plot_residual_comparison(compare_residual(activation="sigmoid", key=keys))
      >>> [line.get_label().split(":")[0] for line in ax.get_lines()]
      ['plain MLP', 'residual stack']
    """
    import numpy as np

    ax = new_axes(ax)
    depth = np.shape(result.plain)[-1] - 1
    x = np.arange(depth + 1)
    for label, values in (("plain MLP", result.plain), ("residual stack", result.residual)):
        _median_band(ax, x, _seed_rows(np.asarray(values)[None])[0], label)
    if growth is not None:
        top = float(np.median(_seed_rows(np.asarray(result.residual)[None])[0][:, -1]))
        # Black and on top: in the residual's own colour the line hides under the median it tracks.
        ax.plot(x, top * float(growth) ** (depth - x), color="black", zorder=3,
                linestyle=STYLE["theory_linestyle"], linewidth=STYLE["linewidth"],
                label=growth_label or f"theory: ×{float(growth):.4g} per block")  # fmt: skip
    return _finish_log_plot(
        ax,
        _LAYER_AXIS,
        _ACTIVATION_GRADIENT,
        f"Residual vs plain: {result.activation} ({result.init} init), depth {depth}",
    )


def plot_training(result, ax=None):
    """Loss and pre-clipping global gradient norm per step, with clipping and divergence marked.

    Clipped steps are marked on the gradient-norm line, the clipping threshold is dashed, and the
    first non-finite step (if any) is a vertical line. The norm drawn is √Σ‖g_layer‖² in float64,
    equal to ``result.grad_norm`` (both stay finite where a plain float32 Σg² would overflow).

    Args:
      result: a :class:`~jaxflow.TrainResult` (from :func:`jaxflow.train`).
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> import jax.numpy as jnp, optax, jaxflow as jf
      >>> from jaxflow.plotting import plot_training
      >>> model = jf.mlp(2, 2, activation="tanh")
      >>> blocks = {"kernel": jnp.stack([jnp.eye(2)] * 2), "bias": jnp.zeros((2, 2))}
      >>> readout = {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}
      >>> variables = {"params": {"blocks": {"Dense_0": blocks}, "readout": readout}}
      >>> x, y = jnp.eye(2), jnp.array([[0.5], [-0.5]])
      >>> ax = plot_training(jf.train(model, variables, (x, y), optax.sgd(0.1), 20, clip_norm=0.5))
      >>> [line.get_label() for line in ax.get_lines()][2:]
      ['clipped (45% of steps)', 'clip_by_global_norm(0.5)']
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    steps = np.arange(len(result.loss))
    width = STYLE["linewidth"]
    # √Σ(layer norm)² in float64 equals the recorded optax norm wherever that is finite, and stays
    # finite where optax's float32 sum of squares overflows (exploding gradients near 1e19).
    norm = np.sqrt(np.sum(np.square(np.asarray(result.layer_norms, np.float64)), axis=-1))
    ax.plot(steps, result.loss, linewidth=width, label="loss")
    (line,) = ax.plot(steps, norm, linewidth=width, label="global gradient norm, before clipping")
    clipped = np.asarray(result.clipped, bool)
    if clipped.any():
        ax.plot(
            steps[clipped],
            norm[clipped],
            linestyle="none",
            marker="x",
            color=line.get_color(),
            label=f"clipped ({result.clip_fraction:.0%} of steps)",
        )
    if result.clip_norm is not None:
        ax.axhline(
            result.clip_norm,
            linestyle=STYLE["theory_linestyle"],
            color="gray",
            label=f"clip_by_global_norm({result.clip_norm:g})",
        )
    if result.first_nonfinite_step is not None:
        ax.axvline(
            result.first_nonfinite_step,
            color="red",
            label=f"first non-finite step ({result.first_nonfinite_step})",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish_log_plot(
        ax,
        "Step",
        "Loss and gradient norm (log scale)",
        "Training: loss and gradient norm per step",
    )


def plot_chain_rule_errors(result, ax=None):
    """∂L/∂x three ways in float32 (explicit product, ``jax.grad``, ``jax.vjp``): their relative
    errors against float64, grouped by network, log y, with the 1e-5 tolerance dashed.

    Args:
      result: a :class:`jaxflow.experiments.chain_rule.ChainRuleErrors`.
      ax: an Axes, or ``None`` for a new figure.

    Returns:
      The Axes.

    Example:
      >>> from jaxflow.experiments.chain_rule import ChainRuleErrors
      >>> from jaxflow.plotting import plot_chain_rule_errors
      >>> r = ChainRuleErrors(["mlp-relu"], [2e-7], [1e-7], [1e-7], [1e-7], 8, 16)
      >>> plot_chain_rule_errors(r).get_yscale()
      'log'
    """
    import numpy as np

    ax = new_axes(ax, figsize=(7.5, 4))
    positions = np.arange(len(result.configs))
    labels = {
        "explicit": "explicit J_inᵀ J_1ᵀ⋯J_Lᵀ J_outᵀ ∇_y L",
        "grad": "jax.grad",
        "vjp": "jax.vjp",
    }
    for offset, (field, label) in zip((-0.27, 0.0, 0.27), labels.items()):
        ax.bar(positions + offset, getattr(result, field), 0.27, label=label)
    ax.axhline(1e-5, color="k", ls="--", lw=1, label="tolerance 1e-5")
    ax.axhline(float(np.finfo(np.float32).eps), color="gray", ls=":", lw=1, label="float32 ε")
    ax.set_yscale("log")
    ax.set_xticks(positions, result.configs, rotation=20)
    ax.set_ylabel("relative error vs float64 (log scale)")
    ax.set_title(f"∂L/∂x three ways in float32, against float64 (depth {result.depth})")
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    return ax


def plot_clipping(result, fig=None):
    """Training without (left) and with (right) gradient clipping, side by side.

    Args:
      result: a :class:`jaxflow.experiments.monitoring.ClippingComparison`.
      fig: a matplotlib ``Figure`` (or ``SubFigure``) to draw on, or ``None`` for a new one.

    Returns:
      The figure.

    Example:
      >>> import jax
      >>> from jaxflow.experiments.monitoring import clipping_comparison
      >>> from jaxflow.plotting import plot_clipping
      >>> r = clipping_comparison(3, 4, 5, key=jax.random.key(0), init_key=jax.random.key(1))
      >>> [ax.get_title() for ax in plot_clipping(r).axes]
      ['no clipping', 'optax.clip_by_global_norm(1.0)']
    """
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_training(result.plain, left)
    left.set_title("no clipping")
    plot_training(result.clipped, right)
    right.set_title(f"optax.clip_by_global_norm({result.clip_norm})")
    return fig

"""The gradient monitor: :func:`~jaxflow.gradients.stats.gradient_stats` inside any optax chain."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxflow import _deprecation
from jaxflow.gradients.stats import (
    GradientStats,
    _as_names,
    _check_thresholds,
    _gradient_stats,
    _grouper,
    _plan,
    gradient_stats,
)

__all__ = ["MonitorState", "gradient_monitor"]

__getattr__ = _deprecation.getattr_hook(__name__, {"monitor": _deprecation.MONITOR})


class MonitorState(NamedTuple):
    """The state of :func:`gradient_monitor`.

    Attributes:
      count: () int32, how many updates it has seen (0: ``stats`` are zeros, nothing seen yet).
      stats: the :class:`GradientStats` of the latest updates it saw.

    Example:
      >>> import jax.numpy as jnp, jaxflow as jf
      >>> state = jf.gradient_monitor().init({"w": jnp.ones(3)})
      >>> int(state.count), state.stats.names
      (0, ('w',))
    """

    count: jax.Array
    stats: GradientStats


def gradient_monitor(
    *,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    stacked: Any = "auto",
    group_by: Any = None,
    ratio: bool = False,
) -> optax.GradientTransformation:
    """An optax transformation that passes updates through unchanged and keeps their statistics.

    Named for what it watches, not ``monitor``: ``optax.monitor(measures)`` is another
    transformation (a dict of stateful measurements of the updates), with another signature.

    Place it in any ``optax.chain``: first, it sees the raw gradients; after a clipping step, the
    clipped ones. Its state (:class:`MonitorState`) holds the latest :func:`gradient_stats`
    (global and per-layer norms, per-leaf norms, means, max |g| and status codes, status counts),
    computed inside the same jitted update.

    Any parameter tree works, as in :func:`gradient_stats`: the state has one pytree structure
    whether ``init`` saw boxed parameters (``nn.with_logical_partitioning``, NNX ``Variable``s,
    as ``nnx.Optimizer`` passes them) or plain arrays, and whether ``update`` sees boxed or plain
    gradients, so it can be carried by ``lax.scan`` and given ``out_shardings`` made from
    ``init``'s output. Functions, strings and PRNG keys in the tree (an Equinox module,
    ``eqx.filter``'s ``None`` s) are skipped.

    Its cost per step is a few passes over the gradients plus a fixed part that does not grow
    with the number of leaves: with one device, the leaves of each dtype are measured together as
    one block (a max, then Σg² of each row scaled by a power of two, and Σg), not leaf by leaf. With several
    devices they are measured leaf by leaf, so that the partitioner never has to concatenate
    differently sharded leaves (which would change how the gradients themselves are computed).
    There is no every-k-steps mode: measured, skipping steps under ``lax.cond`` saved little, as
    the condition alone makes XLA materialise the gradients (``benchmarks/README.md``).

    Args:
      vanishing, exploding, stacked, group_by: passed to :func:`gradient_stats`.
      ratio: also record ‖g‖/‖w‖ per leaf when ``update`` is given ``params``. Off by default: it
        reads every parameter once more per step (on the notes' 10-layer MLP that is about a
        third of the monitor's cost); the ``ratio`` field is NaN when off.

    Returns:
      An ``optax.GradientTransformation``; ``update`` returns the updates it was given.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxflow as jf
      >>> params = {"w": jnp.ones(3)}
      >>> opt = optax.chain(jf.gradient_monitor(), optax.adam(1e-3))
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.array([3.0, 4.0, 0.0])}
      >>> updates, state = jax.jit(opt.update)(grads, state, params)
      >>> float(state[0].stats.global_norm), int(state[0].count)
      (5.0, 1)
    """
    _check_thresholds(vanishing, exploding)
    if not isinstance(ratio, bool):
        raise TypeError(f"ratio={ratio!r} must be True or False")
    stacked = _as_names(stacked)
    _grouper(group_by)  # a bad group_by fails here, not at the first update
    measure = functools.partial(
        gradient_stats, vanishing=vanishing, exploding=exploding, stacked=stacked, group_by=group_by
    )
    thresholds = (float(vanishing), float(exploding))

    def init_fn(params):
        layout, leaves = _plan(params, stacked, group_by)
        if not leaves:
            raise ValueError(
                f"params has no floating-point leaves to monitor (skipped: {list(layout.frozen)})"
            )
        shapes = jax.eval_shape(lambda w: _gradient_stats(w, w, layout, *thresholds), leaves)
        stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return MonitorState(jnp.zeros((), jnp.int32), stats)

    def update_fn(updates, state, params=None):
        stats = measure(updates, params if ratio else None)
        if (stats.names, stats.layer_names) != (state.stats.names, state.stats.layer_names):
            missing = sorted(set(state.stats.names) - set(stats.names))
            extra = sorted(set(stats.names) - set(state.stats.names))
            raise ValueError(
                "the updates do not have the parameters' measured leaves (init measured "
                f"{missing} that the updates lack, the updates have {extra} that init did not "
                "measure); pass init the tree the updates will have"
            )
        return updates, MonitorState(state.count + 1, stats)

    return optax.GradientTransformation(init_fn, update_fn)

"""Signal propagation predicts trainability: the computations behind the report's section.

Two experiments, each one compiled training run (:func:`jaxflow.experiments.trainability`, the
engine in :mod:`jaxflow.sweeps.train`), each returning a NamedTuple of labelled numbers (the
figures live in :mod:`jaxflow.plotting`):

* :func:`schoenholz_heatmap` — Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (ICLR 2017): deep tanh
  networks (σ_b² = 0.05) train only when depth is below a small multiple of the correlation depth
  scale ξ_c. Test accuracy over depth × σ_w² after a number of SGD steps, at two step counts,
  with the fraction of configurations below 6ξ_c that train and of those above 6ξ_c that do not.
* :func:`isometry_speedup` — Pennington, Schoenholz & Ganguli (NeurIPS 2017): at criticality,
  orthogonal weights with a sigmoid-like activation (dynamical isometry) train faster than
  Gaussian ones, while ReLU networks gain little or nothing. Loss against step, the initial
  spread of the end-to-end Jacobian's log singular values, and the measured speed-up.

**"Trains"** (:func:`schoenholz_heatmap`): a network trains when its test accuracy reaches
``chance + margin·(1 − chance)`` (``margin = 0.25`` by default; chance = the most frequent test
label's share, ``ds.attrs["chance_accuracy"]``): a quarter of the way from guessing to perfect. A
network that diverged (non-finite loss) counts as not training (its accuracy is 0 by the engine's
convention).

Sizes: ``quick=True`` runs in seconds, the default in well under a minute on a 2-core CPU;
``scale`` multiplies the width, seeds and steps for bigger machines. The data set is an argument;
by default the scikit-learn digits (``jaxflow.data.digits``) when they are installed, else a
synthetic teacher–student task.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from jaxflow import _platform
from jaxflow.sweeps.grid import Grid
from jaxflow.sweeps.train import Training, trainability

__all__ = [
    "IsometrySpeedup",
    "SchoenholzHeatmap",
    "isometry_speedup",
    "schoenholz_heatmap",
    "trainability",
]


def _scaled(value: int, scale: float) -> int:
    return max(1, int(round(value * scale)))


def _check_scale(scale):
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale={scale!r} is not allowed; it must be a number > 0")
    return float(scale)


def default_data():
    """The experiments' data set: ``jaxflow.data.digits()`` when scikit-learn is installed, else
    the synthetic ``jaxflow.data.teacher_student(num_train=1024, num_test=256, features=16,
    num_classes=4, hidden=())`` (a linear teacher: a shallow network learns it to ~90% in a few
    hundred SGD steps, so what fails to train is the depth, not the task).

    Example:
      >>> from jaxflow.experiments.trainability import default_data
      >>> default_data().num_classes in (4, 10)
      True
    """
    from jaxflow import data

    try:
        return data.digits()
    except (AttributeError, ImportError):  # no scikit-learn (or a data module without digits)
        return data.teacher_student(
            num_train=1024, num_test=256, features=16, num_classes=4, hidden=()
        )


def trains_threshold(chance: float, margin: float) -> float:
    """The test accuracy at which a network counts as training: chance + margin·(1 − chance)."""
    return chance + margin * (1.0 - chance)


class SchoenholzHeatmap(NamedTuple):
    """Test accuracy over depth × σ_w² at two step counts, beside 6ξ_c.

    Attributes:
      depth: (K,) depths.
      sigma_w2: (W,) weight variances.
      steps: (2,) the two step counts.
      accuracy: (2, K, W) test accuracy, mean over seeds, after ``steps[i]`` steps.
      trains: (2, K, W) fraction of seeds whose network trains (see the module docs).
      xi_c: (W,) mean-field ξ_c at (σ_w², σ_b²).
      critical_sigma_w2: σ_w² on the edge of chaos at this σ_b².
      below: (K, W) bool, depth < 6ξ_c.
      fraction_below_train: (2,) among configurations (cells × seeds) with depth < 6ξ_c, the
        fraction that train.
      fraction_above_fail: (2,) among those with depth > 6ξ_c, the fraction that do not.
      threshold: the test accuracy that counts as training.
      chance: the chance accuracy (most frequent test label's share).
      sigma_b2: the bias variance.
      result: the engine's ``xarray.Dataset`` (every curve, seed and recorded step).

    Example:
      >>> from jaxflow.experiments.trainability import SchoenholzHeatmap
      >>> SchoenholzHeatmap._fields[:4]
      ('depth', 'sigma_w2', 'steps', 'accuracy')
    """

    depth: np.ndarray
    sigma_w2: np.ndarray
    steps: np.ndarray
    accuracy: np.ndarray
    trains: np.ndarray
    xi_c: np.ndarray
    critical_sigma_w2: float
    below: np.ndarray
    fraction_below_train: np.ndarray
    fraction_above_fail: np.ndarray
    threshold: float
    chance: float
    sigma_b2: float
    result: Any


def schoenholz_heatmap(
    data=None,
    *,
    depths=None,
    sigma_w2=None,
    sigma_b2: float = 0.05,
    activation: str = "tanh",
    steps=None,
    learning_rate: float = 0.1,
    optimizer: str = "sgd",
    batch_size: int = 32,
    width: int | None = None,
    seeds: int | None = None,
    margin: float = 0.25,
    quick: bool = False,
    scale: float = 1.0,
    store=None,
    devices=None,
    progress: bool = False,
) -> SchoenholzHeatmap:
    """Which deep networks train, over depth × σ_w², against the mean-field 6ξ_c line.

    One compiled training run: every (depth, σ_w², seed) network trained together, recorded at
    both step counts.

    Args:
      data: a ``jaxflow.data.Dataset`` (default: :func:`default_data`).
      depths: the depths (default: 2…40, quick 2…24).
      sigma_w2: the weight variances (default: 7 from 0.5 to 4.5, quick 5 from 0.5 to 4).
      sigma_b2: the bias variance (Schoenholz et al.: 0.05).
      activation: the activation (Schoenholz et al.: tanh).
      steps: the two step counts ``(early, late)`` (default (100, 300), quick (50, 150), times
        ``scale``).
      learning_rate, optimizer, batch_size: the training (see :class:`~jaxflow.Training`).
      width: hidden width (default 32, quick 16, times √scale).
      seeds: seeds per cell (default 2, times scale).
      margin: a network trains when its test accuracy reaches chance + margin·(1 − chance).
      quick: the small version.
      scale: > 0; multiplies width (by √scale), seeds and steps.
      store, devices, progress: as for :func:`jaxflow.experiments.trainability`.

    Returns:
      A :class:`SchoenholzHeatmap`.

    References:
      Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation", ICLR 2017,
      Fig. 5 (accuracy over depth × σ_w² with 6ξ_c drawn on top).

    Example:
      A tiny version (the report's is ``quick=True`` or the default):

      >>> from jaxflow.experiments.trainability import schoenholz_heatmap
      >>> heat = schoenholz_heatmap(depths=(2, 8), sigma_w2=(0.5, 1.76), steps=(10, 20),
      ...                           width=8, seeds=1)
      >>> heat.accuracy.shape, heat.fraction_below_train.shape
      ((2, 2, 2), (2,))
    """
    _platform.prepare_training(devices)  # before the theory below starts a backend
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    from jaxflow import theory

    scale = _check_scale(scale)
    data = default_data() if data is None else data
    if depths is None:
        depths = (2, 6, 12, 24) if quick else (2, 6, 12, 24, 40)
    if sigma_w2 is None:
        sigma_w2 = np.linspace(0.5, 4.0, 5) if quick else np.linspace(0.5, 4.5, 7)
    sigma_w2 = np.asarray(sigma_w2, dtype=float)
    if steps is None:
        steps = (50, 150) if quick else (100, 300)
    steps = tuple(_scaled(s, scale) for s in steps)
    if len(steps) != 2 or steps[0] >= steps[1]:
        raise ValueError(f"steps={steps!r} must be two increasing step counts (early, late)")
    width = width or _scaled(16 if quick else 32, math.sqrt(scale))
    seeds = seeds or _scaled(2, scale)
    if not 0 < margin < 1:
        raise ValueError(f"margin={margin!r} is not allowed; it must be in (0, 1)")
    grid = Grid(
        depth=depths,
        activation=[activation],
        init=[(float(s), float(sigma_b2)) for s in sigma_w2],
        width=width,
        seeds=seeds,
    )
    training = Training(
        steps=steps[1],
        learning_rate=learning_rate,
        batch_size=batch_size,
        record_every=math.gcd(*steps),
        optimizer=optimizer,
        jacobian_inputs=0,
    )
    ds = trainability(grid, data, training, store=store, devices=devices, progress=progress)
    acc = (
        ds.test_accuracy.isel(activation=0)
        .sel(step=list(steps))
        .transpose("step", "depth", "init", "seed")
    )
    acc = np.asarray(acc.values, dtype=float)  # (2, K, W, S)
    chance = float(ds.attrs["chance_accuracy"])
    threshold = trains_threshold(chance, margin)
    trained = acc >= threshold
    xi_c = np.asarray(theory.mean_field(activation, sigma_w2, sigma_b2).xi_c, dtype=float)
    depth = np.asarray(grid.depth)
    below = depth[:, None] < 6 * xi_c[None, :]
    above = depth[:, None] > 6 * xi_c[None, :]
    below_train = np.asarray([trained[i][below].mean() if below.any() else np.nan for i in (0, 1)])
    above_fail = np.asarray(
        [(~trained[i][above]).mean() if above.any() else np.nan for i in (0, 1)]
    )
    return SchoenholzHeatmap(
        depth=depth,
        sigma_w2=sigma_w2,
        steps=np.asarray(steps),
        accuracy=acc.mean(axis=-1),
        trains=trained.mean(axis=-1),
        xi_c=xi_c,
        critical_sigma_w2=float(theory.critical_sigma_w2(activation, sigma_b2).value),
        below=below,
        fraction_below_train=below_train,
        fraction_above_fail=above_fail,
        threshold=threshold,
        chance=chance,
        sigma_b2=float(sigma_b2),
        result=ds,
    )


class IsometrySpeedup(NamedTuple):
    """Orthogonal against Gaussian weights at criticality, per activation and depth.

    Attributes:
      activation: (A,) activation names.
      depth: (K,) depths.
      sigma_w2: (A,) the critical σ_w² of each activation at ``sigma_b2``.
      step: (T,) recorded steps.
      loss: (A, 2, K, T) training loss (mean over seeds); axis 1 is (gaussian, orthogonal).
      jacobian_spread: (A, 2, K) initial std of ln σ_i(P_d) (mean over seeds).
      target_loss: (A,) the loss threshold of the steps-to-target measure, per activation.
      steps_to_target: (A, 2, K) first recorded step at which the loss is ≤ ``target_loss``
        (NaN: never within the run).
      speedup: (A, K) steps_to_target Gaussian / orthogonal (> 1: orthogonal is faster; where
        a run never reaches the target its count is taken as the run's length, so the value is a
        lower bound if only the Gaussian one misses it).
      loss_ratio: (A, K) final loss Gaussian / orthogonal.
      no_speedup: (A,) whether the speed-up at the deepest depth is below ``none_below`` (the
        final-loss ratio where neither init reaches the target there); ReLU: expected True.
      none_below: the speed-up under which an activation counts as gaining nothing.
      sigma_b2: the bias variance.
      result: the engine's ``xarray.Dataset``.

    Example:
      >>> from jaxflow.experiments.trainability import IsometrySpeedup
      >>> IsometrySpeedup._fields[:5]
      ('activation', 'depth', 'sigma_w2', 'step', 'loss')
    """

    activation: tuple
    depth: np.ndarray
    sigma_w2: np.ndarray
    step: np.ndarray
    loss: np.ndarray
    jacobian_spread: np.ndarray
    target_loss: np.ndarray
    steps_to_target: np.ndarray
    speedup: np.ndarray
    loss_ratio: np.ndarray
    no_speedup: np.ndarray
    none_below: float
    sigma_b2: float
    result: Any


def isometry_speedup(
    data=None,
    *,
    activations=("tanh", "relu"),
    depths=None,
    sigma_b2: float = 1e-3,
    steps: int | None = None,
    learning_rate: float = 0.1,
    optimizer: str = "sgd",
    batch_size: int = 32,
    width: int | None = None,
    seeds: int | None = None,
    target: float = 0.5,
    none_below: float = 1.5,
    quick: bool = False,
    scale: float = 1.0,
    store=None,
    devices=None,
    progress: bool = False,
) -> IsometrySpeedup:
    """Dynamical isometry: how much faster orthogonal weights train at criticality.

    Each activation is initialised on its edge of chaos (σ_w² = ``critical_sigma_w2(activation,
    sigma_b2)``) with Gaussian and with orthogonal weights of that variance (``(σ_w², σ_b²)`` and
    ``("orthogonal", σ_w², σ_b²)`` grid entries); every (activation, init, depth, seed) network
    is trained in one compiled run (the grid is activations × every activation's two critical
    inits; the comparison reads each activation at its own).

    Args:
      data: a ``jaxflow.data.Dataset`` (default: :func:`default_data`).
      activations: a sigmoid-like activation (tanh, erf, hard_tanh) and relu.
      depths: the depths (default (8, 24, 48), quick (8, 24)).
      sigma_b2: the bias variance (small: q* is then small and the sigmoid nearly linear, where
        orthogonal weights make the Jacobian nearly an isometry).
      steps: optimiser steps (default 300, quick 100, times ``scale``).
      learning_rate, optimizer, batch_size: the training (see :class:`~jaxflow.Training`).
      width: hidden width (default 32, quick 16, times √scale).
      seeds: seeds (default 2, times scale).
      target: the steps-to-target threshold as a fraction of the initial loss (per activation,
        the mean over its networks at step 0).
      none_below: a speed-up below this counts as none.
      quick, scale, store, devices, progress: as for :func:`schoenholz_heatmap`.

    Returns:
      An :class:`IsometrySpeedup`.

    References:
      Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep learning through
      dynamical isometry: theory and practice", NeurIPS 2017 (Fig. 4: orthogonal vs Gaussian
      training speed; ReLU cannot reach isometry).

    Example:
      A tiny version (the report's is ``quick=True`` or the default):

      >>> from jaxflow.experiments.trainability import isometry_speedup
      >>> iso = isometry_speedup(depths=(4,), steps=20, width=8, seeds=1)
      >>> iso.activation, iso.loss.shape[:3], iso.speedup.shape
      (('tanh', 'relu'), (2, 2, 1), (2, 1))
    """
    _platform.prepare_training(devices)  # before the theory below starts a backend
    _platform.use_compilation_cache()  # a driver: see jaxflow._platform
    from jaxflow import theory

    scale = _check_scale(scale)
    data = default_data() if data is None else data
    activations = tuple(activations)
    if depths is None:
        depths = (8, 24) if quick else (8, 24, 48)
    steps = _scaled(steps or (100 if quick else 300), scale)
    width = width or _scaled(16 if quick else 32, math.sqrt(scale))
    seeds = seeds or _scaled(2, scale)
    critical = []
    for activation in activations:
        value = float(theory.critical_sigma_w2(activation, sigma_b2).value)
        if not math.isfinite(value):
            raise ValueError(
                f"activations: {activation!r} has no critical σ_w² at sigma_b2={sigma_b2}"
            )
        critical.append(value)
    training = Training(
        steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        record_every=max(1, steps // 20),
        optimizer=optimizer,
    )
    # One grid, one compiled run: every activation at every activation's critical pair (the
    # off-diagonal networks cost compute but no second compilation), read on the diagonal.
    inits = []
    for sw in critical:
        for entry in ((sw, sigma_b2), ("orthogonal", sw, sigma_b2)):
            if entry not in inits:
                inits.append(entry)
    grid = Grid(depth=depths, activation=activations, init=inits, width=width, seeds=seeds)
    ds = trainability(grid, data, training, store=store, devices=devices, progress=progress)
    labels = list(grid.init_labels)
    loss, spread = [], []
    for a, sw in enumerate(critical):
        gaussian, orthogonal = (sw, sigma_b2), ("orthogonal", sw, sigma_b2)
        pair = [labels[inits.index(gaussian)], labels[inits.index(orthogonal)]]
        cell = ds.isel(activation=a).sel(init=pair).mean("seed")
        loss.append(cell.train_loss.transpose("init", "depth", "step").values)
        spread.append(cell.jacobian_spread.transpose("init", "depth").values)
    loss, spread = np.asarray(loss, dtype=float), np.asarray(spread, dtype=float)
    step = np.asarray(ds.step.values)
    # Each activation's own target: ReLU and tanh networks start from different losses.
    target_loss = target * np.nanmean(loss[..., 0], axis=(1, 2))
    reached = loss <= target_loss[:, None, None, None]
    first = np.where(reached.any(-1), step[np.argmax(reached, axis=-1)], np.nan)
    counted = np.where(np.isnan(first), step[-1], first)
    speedup = counted[:, 0] / np.maximum(counted[:, 1], 1)
    speedup = np.where(np.isnan(first[:, 0]) & np.isnan(first[:, 1]), np.nan, speedup)
    ratio = loss[:, 0, :, -1] / loss[:, 1, :, -1]
    # Where neither init reaches the target at the deepest depth, the final-loss ratio stands in.
    deepest = np.where(np.isnan(speedup[:, -1]), ratio[:, -1], speedup[:, -1])
    return IsometrySpeedup(
        activation=activations,
        depth=np.asarray(sorted(depths)),
        sigma_w2=np.asarray(critical),
        step=step,
        loss=loss,
        jacobian_spread=spread,
        target_loss=target_loss,
        steps_to_target=first,
        speedup=speedup,
        loss_ratio=ratio,
        no_speedup=~(deepest >= none_below),
        none_below=float(none_below),
        sigma_b2=float(sigma_b2),
        result=ds,
    )

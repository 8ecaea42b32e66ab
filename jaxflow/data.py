"""Small classification data sets for training experiments, as flat float32 NumPy arrays.

A minimal stand-in until the full data module (digits, MNIST, CIFAR-10) is merged: the
:class:`Dataset` type and the synthetic :func:`teacher_student` task, as agreed for issue 12. This
module imports NumPy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxflow._checks import positive_int

__all__ = ["Dataset", "teacher_student"]


class Dataset(NamedTuple):
    """A classification data set split into training and test parts.

    Attributes:
      x_train: (N_train, features) float32, each example flattened.
      y_train: (N_train,) int32 labels in ``[0, num_classes)``.
      x_test: (N_test, features) float32.
      y_test: (N_test,) int32.
      num_classes: the number of classes.
      name: a short description, e.g. ``"digits(seed=0)"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str


def _seed(value) -> int:
    return positive_int("seed", value, minimum=0)



def teacher_student(
    *,
    num_train: int = 1024,
    num_test: int = 512,
    features: int = 32,
    num_classes: int = 10,
    hidden: tuple[int, ...] = (64,),
    seed: int = 0,
) -> Dataset:
    """A synthetic classification task: Gaussian inputs labelled by a random tanh teacher network.

    With ``rng = numpy.random.default_rng(seed)``, the ``num_train + num_test`` inputs are drawn
    first, x ~ N(0, I_features) (training examples first), then the teacher's weights layer by
    layer, W ~ N(0, 1/fan_in) with zero biases: hidden layers h = tanh(W h), a linear readout
    z = W h. The label is argmax_k (z_k − mean over all examples of z_k): centring each logit
    keeps the classes roughly balanced (not exactly). The inputs are already standardised in
    distribution and are returned as drawn. The task is exactly learnable by a student with the
    teacher's architecture; everything depends on ``seed`` alone.

    Args:
      num_train: training examples, ≥ 1.
      num_test: test examples, ≥ 1.
      features: input dimension, ≥ 1.
      num_classes: classes, ≥ 2.
      hidden: the teacher's hidden widths (each ≥ 1; empty for a linear teacher).
      seed: an integer ≥ 0.

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: naming the first argument that is out of range.

    Example:
      >>> from jaxflow.data import teacher_student
      >>> data = teacher_student(num_train=100, num_test=20, features=8, num_classes=3)
      >>> data.x_train.shape, data.y_test.shape, data.x_train.dtype, data.y_train.dtype
      ((100, 8), (20,), dtype('float32'), dtype('int32'))
    """
    num_train, num_test = positive_int("num_train", num_train), positive_int("num_test", num_test)
    features = positive_int("features", features)
    num_classes = positive_int("num_classes", num_classes, minimum=2)
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden={hidden!r} is not allowed; it must be a tuple of widths")
    hidden = tuple(positive_int("hidden", width) for width in hidden)
    seed = _seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_train + num_test, features))
    h = x
    for width in hidden:
        h = np.tanh(h @ (rng.standard_normal((h.shape[1], width)) / np.sqrt(h.shape[1])))
    h = h @ (rng.standard_normal((h.shape[1], num_classes)) / np.sqrt(h.shape[1]))
    y = np.argmax(h - h.mean(axis=0), axis=1)
    name = f"teacher_student(features={features}, hidden={hidden}, seed={seed})"
    return Dataset(
        x[:num_train].astype(np.float32),
        y[:num_train].astype(np.int32),
        x[num_train:].astype(np.float32),
        y[num_train:].astype(np.int32),
        num_classes,
        name,
    )

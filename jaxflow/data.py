"""Small classification data sets for training experiments, as flat float32 NumPy arrays.

Three sources, one result type (:class:`Dataset`):

* :func:`digits` — scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes). The
  images ship inside the scikit-learn wheel; nothing is ever downloaded. scikit-learn is an
  optional dependency: ``pip install 'jaxflow[data]'``.
* :func:`teacher_student` — a synthetic task: Gaussian inputs labelled by a random teacher network.
  Needs NumPy only; for tests and quick checks.
* :func:`mnist` and :func:`cifar10` — for users who have the files. They read the data sets'
  standard distribution formats (MNIST's IDX files, CIFAR-10's "python version" pickles), in the
  directory layout ``torchvision.datasets`` writes, so a copy fetched once on any machine with
  ``torchvision.datasets.MNIST(root, download=True)`` (or ``CIFAR10``) or from the original sites
  works as is. They never download.

Every split is deterministic, and standardisation (per feature, to zero mean and unit variance) is
fitted on the training part alone and applied to both parts. This module imports NumPy only;
scikit-learn is imported inside :func:`digits`.
"""

from __future__ import annotations

import gzip
import numbers
import os
import pickle
from typing import NamedTuple

import numpy as np

from jaxflow._checks import positive_int

__all__ = ["Dataset", "cifar10", "digits", "mnist", "teacher_student"]


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


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; it must be a number in (0, 1)")
    return float(value)


def _seed(value) -> int:
    return positive_int("seed", value, minimum=0)


def _standardize(x_train: np.ndarray, x_test: np.ndarray):
    """Both parts shifted and scaled by the training part's per-feature mean and standard
    deviation (float64 statistics). A feature constant on the training part (the blank corner
    pixels of the digits) is only shifted: dividing by a zero deviation would make it NaN."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def _finish(x_train, y_train, x_test, y_test, num_classes, name, standardize, scale):
    """The :class:`Dataset`: flattened, standardised (or divided by the pixel range ``scale``)."""
    x_train = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    x_test = np.asarray(x_test, np.float64).reshape(len(x_test), -1)
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    else:
        x_train, x_test = (x_train / scale).astype(np.float32), (x_test / scale).astype(np.float32)
    return Dataset(
        x_train,
        np.asarray(y_train, np.int32),
        x_test,
        np.asarray(y_test, np.int32),
        int(num_classes),
        name,
    )


def digits(*, test_fraction: float = 0.25, seed: int = 0, standardize: bool = True) -> Dataset:
    """scikit-learn's 8×8 handwritten digits, split into training and test parts by ``seed``.

    The 1,797 images (64 pixel intensities 0–16, 10 classes) are read from the files bundled in
    the scikit-learn wheel (``sklearn.datasets.load_digits``; never a download). A random
    permutation drawn from ``numpy.random.default_rng(seed)`` puts the first
    ``round(test_fraction · 1797)`` images in the test part and the rest in the training part.

    Args:
      test_fraction: the share of the images held out for testing, in (0, 1).
      seed: the split's seed, an integer ≥ 0.
      standardize: shift and scale each pixel to zero mean and unit variance over the training
        part (pixels blank on the whole training part stay 0); if False, intensities / 16 in [0, 1].

    Returns:
      A :class:`Dataset` with 64 features and 10 classes (1,348 training and 449 test images at
      the default fraction).

    Raises:
      ImportError: if scikit-learn is not installed (``pip install 'jaxflow[data]'``).
      ValueError: for a ``test_fraction`` outside (0, 1) or a negative ``seed``.

    References:
      Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning
      Repository, 1998 (the test part of that set is what scikit-learn ships).

    Example (needs scikit-learn, part of the ``test`` extra):
      >>> from jaxflow.data import digits
      >>> data = digits(seed=0)
      >>> data.x_train.shape, data.x_test.shape, data.num_classes
      ((1348, 64), (449, 64), 10)
    """
    test_fraction, seed = _fraction("test_fraction", test_fraction), _seed(seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "jaxflow.data.digits needs scikit-learn, which ships the digits images; install it "
            f"with `pip install 'jaxflow[data]'` (or `pip install scikit-learn`): {exc}"
        ) from exc
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return _finish(
        x[train], y[train], x[test], y[test], 10, f"digits(seed={seed})", standardize, 16.0
    )


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


# --------------------------------------------------------------------------------------------
# MNIST and CIFAR-10 from local files.

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _find(directories, filename):
    """The first of ``directory/filename`` and ``directory/filename.gz`` that exists, or None."""
    for directory in directories:
        for candidate in (filename, filename + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    return None


def _read_idx(path: str) -> np.ndarray:
    """An IDX file (LeCun et al.'s MNIST format; gzipped or not) as a NumPy array.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32; the data follow in C order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (its header is {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) - offset != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{path}: the IDX header says {shape}, the file holds a different size")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape)


def _subset(name: str, value, available: int) -> int:
    if value is None:
        return available
    value = positive_int(name, value)
    if value > available:
        raise ValueError(f"{name}={value} is not allowed; the files hold {available} examples")
    return value


def mnist(
    root: str | os.PathLike,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """MNIST (28×28 grey digits, 60,000 + 10,000 images) from its IDX files, never downloaded.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each possibly ``.gz``) in
    ``root/MNIST/raw`` (where ``torchvision.datasets.MNIST(root, download=True)`` puts them) or
    in ``root`` itself (the four files as distributed). To get them, on a machine with network:
    ``python -c "import torchvision; torchvision.datasets.MNIST('DIR', download=True)"``, or
    copy the four ``.gz`` files of the MNIST distribution into a directory.

    Args:
      root: the directory described above.
      num_train: use the first ``num_train`` training images (default: all).
      num_test: use the first ``num_test`` test images (default: all).
      standardize: standardise each pixel over the training part (as :func:`digits`); if False,
        intensities / 255.

    Returns:
      A :class:`Dataset` with 784 features and 10 classes.

    Raises:
      FileNotFoundError: naming the files and the places looked in, when a file is missing.
      ValueError: for a file that is not IDX, or images and labels of different counts.

    References:
      LeCun, Bottou, Bengio & Haffner, Proc. IEEE 1998 (the data set and its IDX format).
    """
    root = os.fspath(root)
    places = (os.path.join(root, "MNIST", "raw"), root)
    parts = {}
    for part, (images_file, labels_file) in _MNIST_FILES.items():
        paths = [_find(places, f) for f in (images_file, labels_file)]
        if None in paths:
            raise FileNotFoundError(
                f"MNIST's {images_file} and {labels_file} (optionally .gz) were not found in "
                f"{places[0]} or {places[1]}; jaxflow never downloads them (see "
                "jaxflow.data.mnist's docstring for how to get them)"
            )
        images, labels = (_read_idx(p) for p in paths)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"MNIST {part}: images {images.shape} and labels {labels.shape} do not match"
            )
        parts[part] = (images, labels)
    n_train = _subset("num_train", num_train, len(parts["train"][1]))
    n_test = _subset("num_test", num_test, len(parts["test"][1]))
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    return _finish(
        x_train[:n_train],
        y_train[:n_train],
        x_test[:n_test],
        y_test[:n_test],
        10,
        "mnist",
        standardize,
        255.0,
    )


def _read_cifar_batch(path: str):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # written by Python 2: keys are bytes
    data = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[b"labels"], np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{path} is not a CIFAR-10 batch (data {data.shape}, {len(labels)} labels)"
        )
    return data, labels


def cifar10(
    root: str | os.PathLike,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """CIFAR-10 (32×32 colour images, 50,000 + 10,000, 10 classes) from its Python pickles.

    Reads ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` from ``root/cifar-10-batches-py``
    (the "CIFAR-10 python version" archive unpacked, which is also what
    ``torchvision.datasets.CIFAR10(root, download=True)`` leaves) or from ``root`` itself. Each
    image is flattened in the files' own order, channel-major (3 × 32 × 32 = 3,072 features: all
    red, then green, then blue). The files are pickles: read only copies you trust.

    Args:
      root: the directory described above.
      num_train: use the first ``num_train`` training images (default: all).
      num_test: use the first ``num_test`` test images (default: all).
      standardize: standardise each feature over the training part; if False, intensities / 255.

    Returns:
      A :class:`Dataset` with 3,072 features and 10 classes.

    Raises:
      FileNotFoundError: naming the missing file and the places looked in.
      ValueError: for a file that is not a CIFAR-10 batch.

    References:
      Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009.
    """
    root = os.fspath(root)
    places = (os.path.join(root, _CIFAR_DIR), root)
    parts = {}
    for part, files in _CIFAR_FILES.items():
        batches = []
        for filename in files:
            path = next(
                (
                    os.path.join(d, filename)
                    for d in places
                    if os.path.isfile(os.path.join(d, filename))
                ),
                None,
            )
            if path is None:
                raise FileNotFoundError(
                    f"CIFAR-10's {filename} was not found in {places[0]} or {places[1]}; jaxflow "
                    "never downloads it (see jaxflow.data.cifar10's docstring)"
                )
            batches.append(_read_cifar_batch(path))
        parts[part] = tuple(np.concatenate(a) for a in zip(*batches))
    n_train = _subset("num_train", num_train, len(parts["train"][1]))
    n_test = _subset("num_test", num_test, len(parts["test"][1]))
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    return _finish(
        x_train[:n_train],
        y_train[:n_train],
        x_test[:n_test],
        y_test[:n_test],
        10,
        "cifar10",
        standardize,
        255.0,
    )

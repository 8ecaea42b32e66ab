"""jaxflow.data: shapes, dtypes, determinism, disjoint splits, standardisation against NumPy, the
local-file readers on tiny fixtures written in the data sets' own formats, and clear errors."""

import gzip
import pickle
import socket
import struct
import sys

import numpy as np
import pytest

from jaxflow import data as jd


def _check_dataset(d, features, num_classes):
    assert isinstance(d, jd.Dataset)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int32 and d.y_test.dtype == np.int32
    assert d.x_train.ndim == d.x_test.ndim == 2
    assert d.x_train.shape[1] == d.x_test.shape[1] == features
    assert d.y_train.shape == d.x_train.shape[:1] and d.y_test.shape == d.x_test.shape[:1]
    assert d.num_classes == num_classes and isinstance(d.num_classes, int)
    for y in (d.y_train, d.y_test):
        assert y.min() >= 0 and y.max() < num_classes
    assert np.all(np.isfinite(d.x_train)) and np.all(np.isfinite(d.x_test))


def _standardized_reference(x_train, x_test):
    """Per-feature (x − mean)/std with the training part's float64 statistics; std 0 → 1."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1.0
    return (x_train - mean) / std, (x_test - mean) / std


# That `import jaxflow.data` loads NumPy only (no scikit-learn, matplotlib, xarray or torch) is
# checked in the fresh interpreter of tests/test_layers.py::test_import_jaxflow_is_light.


# --------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def sklearn_digits():
    datasets = pytest.importorskip(
        "sklearn.datasets", reason="scikit-learn is not installed (pip install 'jaxflow[data]')"
    )
    return datasets.load_digits(return_X_y=True)


def test_digits_shapes_split_and_standardisation(sklearn_digits):
    x, y = sklearn_digits
    d = jd.digits(seed=3)
    _check_dataset(d, 64, 10)
    assert len(d.x_train) + len(d.x_test) == 1797 and len(d.x_test) == round(0.25 * 1797)
    # The split, recomputed from its documented definition.
    order = np.random.default_rng(3).permutation(1797)
    test, train = order[: len(d.x_test)], order[len(d.x_test) :]
    assert set(test).isdisjoint(train) and len(set(test) | set(train)) == 1797
    np.testing.assert_array_equal(d.y_train, y[train])
    np.testing.assert_array_equal(d.y_test, y[test])
    ref_train, ref_test = _standardized_reference(x[train], x[test])
    np.testing.assert_allclose(d.x_train, ref_train, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.x_test, ref_test, rtol=1e-6, atol=1e-6)
    # Fitted on the training part: there its mean is 0 and its variance 1 (or 0, blank pixels).
    np.testing.assert_allclose(d.x_train.mean(0), 0.0, atol=1e-5)
    var = d.x_train.astype(np.float64).var(0)
    assert np.all((np.abs(var - 1) < 1e-5) | (var == 0)) and np.any(var == 0)
    raw = jd.digits(seed=3, standardize=False, test_fraction=0.25)
    np.testing.assert_allclose(raw.x_train, x[train] / 16.0, rtol=1e-7)
    assert raw.x_train.min() >= 0 and raw.x_train.max() <= 1


def test_digits_is_deterministic_by_seed(sklearn_digits):
    a, b, c = jd.digits(seed=1), jd.digits(seed=1), jd.digits(seed=2)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.y_test, c.y_test)
    assert jd.digits(test_fraction=0.5).x_test.shape == (round(0.5 * 1797), 64)


def test_digits_never_opens_a_network_connection(sklearn_digits, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("jaxflow.data.digits tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert jd.digits(seed=0).x_train.shape == (1348, 64)


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn...` now raises
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxflow\[data\]'"):
        jd.digits()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"test_fraction": "half"}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_digits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jd.digits(**kwargs)


# --------------------------------------------------------------------------------------------
# teacher–student


def test_teacher_student_follows_its_documented_construction():
    d = jd.teacher_student(
        num_train=50, num_test=30, features=6, num_classes=4, hidden=(7, 5), seed=9
    )
    _check_dataset(d, 6, 4)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((80, 6))
    w1 = rng.standard_normal((6, 7)) / np.sqrt(6)
    w2 = rng.standard_normal((7, 5)) / np.sqrt(7)
    w3 = rng.standard_normal((5, 4)) / np.sqrt(5)
    z = np.tanh(np.tanh(x @ w1) @ w2) @ w3
    y = np.argmax(z - z.mean(0), axis=1)
    np.testing.assert_allclose(d.x_train, x[:50], rtol=1e-6)
    np.testing.assert_allclose(d.x_test, x[50:], rtol=1e-6)
    np.testing.assert_array_equal(d.y_train, y[:50])
    np.testing.assert_array_equal(d.y_test, y[50:])


def test_teacher_student_is_deterministic_and_uses_every_class():
    a, b = jd.teacher_student(seed=4), jd.teacher_student(seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, jd.teacher_student(seed=5).y_train)
    counts = np.bincount(a.y_train, minlength=10)
    assert counts.min() > 0  # centred logits: no class left empty on 1,024 examples
    linear = jd.teacher_student(hidden=(), num_classes=2, seed=0)
    _check_dataset(linear, 32, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_train": 0}, "num_train"),
        ({"num_test": -1}, "num_test"),
        ({"features": 2.5}, "features"),
        ({"num_classes": 1}, "num_classes"),
        ({"hidden": (8, 0)}, "hidden"),
        ({"hidden": 8}, "hidden"),
        ({"seed": -3}, "seed"),
    ],
)
def test_teacher_student_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jd.teacher_student(**kwargs)


# --------------------------------------------------------------------------------------------
# MNIST and CIFAR-10 from tiny fixtures in their own on-disk formats.


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(str(path) + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.tobytes())


def _mnist_fixture(directory, compress, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(directory / name, array, compress)
    return arrays


@pytest.mark.parametrize("layout", ["torchvision", "flat-gz"])
def test_mnist_reads_idx_files(tmp_path, layout):
    if layout == "torchvision":  # what torchvision.datasets.MNIST(root, download=True) leaves
        arrays = _mnist_fixture(tmp_path / "MNIST" / "raw", compress=False)
    else:  # the four .gz files as distributed
        arrays = _mnist_fixture(tmp_path, compress=True)
    d = jd.mnist(tmp_path, standardize=False)
    _check_dataset(d, 784, 10)
    np.testing.assert_allclose(
        d.x_train, arrays["train-images-idx3-ubyte"].reshape(12, -1) / 255.0, rtol=1e-7
    )
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])
    s = jd.mnist(tmp_path, num_train=8, num_test=3)
    ref_train, ref_test = _standardized_reference(
        arrays["train-images-idx3-ubyte"][:8].reshape(8, -1),
        arrays["t10k-images-idx3-ubyte"][:3].reshape(3, -1),
    )
    np.testing.assert_allclose(s.x_train, ref_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.x_test, ref_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s.y_train, arrays["train-labels-idx1-ubyte"][:8])


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        jd.mnist(tmp_path)
    _mnist_fixture(tmp_path, compress=False)
    with pytest.raises(ValueError, match="num_train"):
        jd.mnist(tmp_path, num_train=13)
    with pytest.raises(ValueError, match="num_test"):
        jd.mnist(tmp_path, num_test=0)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        jd.mnist(tmp_path)


def _cifar_fixture(directory, per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(directory / name, "wb") as f:  # the archive's pickles: bytes keys, list labels
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        batches[name] = (data, labels)
    return batches


def test_cifar10_reads_python_pickles(tmp_path):
    batches = _cifar_fixture(tmp_path / "cifar-10-batches-py")
    d = jd.cifar10(tmp_path, standardize=False)
    _check_dataset(d, 3072, 10)
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_allclose(d.x_train, train / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(
        d.y_train, sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    )
    np.testing.assert_array_equal(d.y_test, batches["test_batch"][1])
    s = jd.cifar10(tmp_path, num_train=10)
    ref_train, ref_test = _standardized_reference(train[:10], batches["test_batch"][0])
    np.testing.assert_allclose(s.x_train, ref_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.x_test, ref_test, rtol=1e-5, atol=1e-5)


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        jd.cifar10(tmp_path)
    _cifar_fixture(tmp_path)
    with pytest.raises(ValueError, match="num_train"):
        jd.cifar10(tmp_path, num_train=21)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        jd.cifar10(tmp_path)

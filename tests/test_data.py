"""chaingrad.data: datasets, splitting, batching, columns, the names and their tokenizer."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets

import chaingrad as cg
from chaingrad import data


def test_importing_chaingrad_needs_no_numpy_sklearn_or_torch():
    code = (
        "import sys, chaingrad as cg; cg.nn, cg.losses, cg.optim, cg.data; "
        "cg.nn.MLP(2, [3, 1])([1.0, 2.0]).backward(); "
        "print(sorted(m for m in ('numpy', 'sklearn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SKLEARN, NUMPY = ["sklearn", "sklearn.datasets"], ["numpy"]


@pytest.mark.parametrize(
    "name, call, missing, package, extra",
    [
        ("make_moons", lambda: data.make_moons(), SKLEARN, "scikit-learn", "demo"),
        ("make_blobs", lambda: data.make_blobs(), SKLEARN, "scikit-learn", "demo"),
        ("load_digits", lambda: data.load_digits(), SKLEARN, "scikit-learn", "demo"),
        ("columns", lambda: data.columns([[1.0, 2.0]]), NUMPY, "NumPy", "batch"),
        ("make_spirals", lambda: data.make_spirals(), NUMPY, "NumPy", "batch"),
        ("train_test_split", lambda: data.train_test_split([1, 2], [0, 1]), NUMPY, "NumPy", "batch"),
        ("batches", lambda: next(data.batches([1, 2], [0, 1], 1)), NUMPY, "NumPy", "batch"),
    ],
)
def test_a_missing_optional_package_names_the_extra_to_install(
    name, call, missing, package, extra, monkeypatch
):
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError) as info:
        call()
    assert str(info.value) == (
        f'cg.data.{name}() needs {package}, which the "{extra}" extra installs: pip install -e ".[{extra}]"'
    )
    assert info.value.name == missing[-1]


def test_moons_with_numpys_global_seed_are_micrograds_data():
    state = np.random.get_state()
    try:
        np.random.seed(1337)
        X, y = data.make_moons(n_samples=100, noise=0.1)
        np.random.seed(1337)
        X_sk, y_sk = sklearn.datasets.make_moons(n_samples=100, noise=0.1)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(X, X_sk)
    np.testing.assert_array_equal(y, y_sk)


def test_generators_are_reproducible_from_a_seed():
    for make in (data.make_moons, data.make_blobs, data.make_spirals):
        X1, y1 = make(n_samples=50, seed=3)
        X2, y2 = make(n_samples=50, seed=3)
        X3, _ = make(n_samples=50, seed=4)
        assert X1.shape == (50, 2) and y1.shape == (50,)
        np.testing.assert_array_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)
        assert not np.array_equal(X1, X3)


def test_blobs_are_sklearns():
    X, y = data.make_blobs(n_samples=30, centers=4, n_features=3, cluster_std=0.5, seed=1)
    X_sk, y_sk = sklearn.datasets.make_blobs(
        n_samples=30, centers=4, n_features=3, cluster_std=0.5, random_state=1
    )
    np.testing.assert_array_equal(X, X_sk)
    np.testing.assert_array_equal(y, y_sk)


def test_spirals_are_two_balanced_classes_of_points_on_spirals():
    state = np.random.get_state()
    X, y = data.make_spirals(n_samples=101, noise=0.0, seed=0)
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global generator is left alone
    assert sorted(set(y.tolist())) == [0, 1] and abs(int(np.sum(y == 0)) - int(np.sum(y == 1))) <= 1
    r = np.hypot(X[:, 0], X[:, 1])
    assert np.all((r >= 0.1 - 1e-12) & (r <= 1.0 + 1e-12))
    # Point by point, the other spiral is the same one turned by half a circle: (x, y) -> (-x, -y).
    theta = np.arctan2(X[:, 1], X[:, 0])
    turned = np.mod(theta - np.pi * y - 2 * np.pi * 1.5 * r, 2 * np.pi)
    assert np.all(np.minimum(turned, 2 * np.pi - turned) < 1e-9)


def test_digits_are_sklearns_scaled_to_unit_range():
    X, y = data.load_digits()
    X_sk, y_sk = sklearn.datasets.load_digits(return_X_y=True)
    assert X.shape == (1797, 64) and X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(X * 16, X_sk)
    np.testing.assert_array_equal(y, y_sk)
    assert y.dtype == np.int64


def test_train_test_split_partitions_the_samples():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, test_size=0.25, seed=0)
    assert len(X_test) == 3 and len(X_train) == 7  # ceil(0.25 * 10), as scikit-learn
    assert sorted(y_train.tolist() + y_test.tolist()) == list(range(10))
    np.testing.assert_array_equal(X_train[:, 0], 2 * y_train)  # rows stay with their labels
    again = data.train_test_split(X, y, test_size=0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (X_train, X_test, y_train, y_test)))
    _, X_test, _, _ = data.train_test_split(X, y, test_size=4, shuffle=False)
    np.testing.assert_array_equal(X_test, X[:4])


@pytest.mark.parametrize("test_size", [0.0, 1.0, 0, 10, -1, "half", True])
def test_train_test_split_rejects_bad_sizes(test_size):
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(np.zeros((10, 2)), np.zeros(10), test_size=test_size)


def test_batches_cover_every_sample_once():
    X = np.arange(22).reshape(11, 2)
    y = np.arange(11)
    got = list(data.batches(X, y, batch_size=4, seed=1))
    assert [len(yb) for _, yb in got] == [4, 4, 3]
    assert sorted(np.concatenate([yb for _, yb in got]).tolist()) == list(range(11))
    assert all(np.array_equal(Xb[:, 0], 2 * yb) for Xb, yb in got)
    assert [yb.tolist() for _, yb in data.batches(X, y, 4, seed=1)] == [yb.tolist() for _, yb in got]
    assert [yb.tolist() for _, yb in data.batches(X, y, 5, shuffle=False)] == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10],
    ]


@pytest.mark.parametrize(
    "X, y, batch_size, message",
    [
        (np.zeros((3, 2)), np.zeros(4), 2, "one row per sample"),
        (np.zeros((3, 2)), np.zeros(3), 0, "batch_size"),
        (np.zeros((0, 2)), np.zeros(0), 2, "no samples"),
    ],
)
def test_batches_reject_bad_input(X, y, batch_size, message):
    with pytest.raises(ValueError, match=message):
        next(data.batches(X, y, batch_size))


def test_columns_are_batched_values_one_per_feature():
    X = np.array([[1, 2, 3], [4, 5, 6]])
    cols = data.columns(X)
    assert len(cols) == 3 and all(isinstance(c, cg.Value) for c in cols)
    assert [c.data.tolist() for c in cols] == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert cols[0].data.dtype == np.float64
    with pytest.raises(ValueError, match="n_samples, n_features"):
        data.columns(np.zeros(3))


def test_names_and_tokenizer():
    names = data.load_names()
    assert len(names) > 30000 and names[0] == "emma"
    assert all(name.isalpha() and name.islower() for name in names)
    tok = data.CharTokenizer(names)
    assert tok.vocab_size == 27 and tok.bos == 26 and tok.chars == list("abcdefghijklmnopqrstuvwxyz")
    ids = tok.encode("emma")
    assert ids == [26, 4, 12, 12, 0, 26]
    assert tok.decode(ids) == "emma"
    assert tok.decode(np.array(ids)) == "emma"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tok: tok.encode("Emma"), "'E' is not in the vocabulary"),
        (lambda tok: tok.decode([0, 27]), "27 is not a token id"),
        (lambda tok: tok.decode([0, "a"]), "'a' is not a token id"),
        (lambda tok: data.CharTokenizer([""]), "at least one"),
    ],
)
def test_tokenizer_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(data.CharTokenizer(["abcdefghijklmnopqrstuvwxyz"]))

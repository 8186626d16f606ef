"""Datasets that work offline, splitting and mini-batching, and the names dataset for the GPT.

NumPy and scikit-learn are imported inside the functions that need them, so
`import chaingrad.data` needs neither; without them those functions say which
extra to install (`batch` for NumPy, `demo` for scikit-learn). Arrays come as X of shape
(n_samples, n_features) and y of shape (n_samples,). The scikit-learn
generators take `seed` as their random_state: None draws from NumPy's global
generator as scikit-learn does, so after `numpy.random.seed(1337)`,
`make_moons(100, 0.1)` is micrograd's demo data. Functions written here use
`numpy.random.default_rng(seed)` and never touch the global state.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Iterable, Iterator, Sequence
from numbers import Integral
from typing import Any

from ._backend import Value
from .checks import positive_int

__all__ = [
    "CharTokenizer",
    "batches",
    "columns",
    "load_digits",
    "load_names",
    "make_blobs",
    "make_moons",
    "make_spirals",
    "train_test_split",
]


def _require(module: str, package: str, extra: str, what: str) -> Any:
    """Import module, or raise ModuleNotFoundError naming the extra that installs its package."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ModuleNotFoundError(
            f'cg.data.{what} needs {package}, which the "{extra}" extra installs: '
            f'pip install -e ".[{extra}]"',
            name=module,
        ) from e


def _numpy(what: str) -> Any:
    return _require("numpy", "NumPy", "batch", what)


def _sklearn(what: str) -> Any:
    return _require("sklearn.datasets", "scikit-learn", "demo", what)


def make_moons(n_samples: int = 100, noise: float = 0.1, seed: int | None = None) -> tuple[Any, Any]:
    """Two interleaving half circles (scikit-learn's make_moons); y in {0, 1}."""
    datasets = _sklearn("make_moons()")
    return datasets.make_moons(n_samples=positive_int(n_samples, "n_samples"), noise=noise, random_state=seed)


def make_blobs(
    n_samples: int = 100,
    centers: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    seed: int | None = None,
) -> tuple[Any, Any]:
    """Gaussian clusters (scikit-learn's make_blobs); y in {0, ..., centers - 1}."""
    return _sklearn("make_blobs()").make_blobs(
        n_samples=positive_int(n_samples, "n_samples"),
        centers=centers,
        n_features=n_features,
        cluster_std=cluster_std,
        random_state=seed,
    )


def make_spirals(
    n_samples: int = 100, noise: float = 0.1, turns: float = 1.5, seed: int | None = None
) -> tuple[Any, Any]:
    """Two interleaved spirals of `turns` turns each; sample i belongs to spiral y = i % 2."""
    np = _numpy("make_spirals()")
    rng = np.random.default_rng(seed)
    y = np.arange(positive_int(n_samples, "n_samples")) % 2
    t = rng.uniform(0.1, 1.0, n_samples)  # how far along its spiral, also its radius
    angle = 2 * np.pi * turns * t + np.pi * y
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return X + noise * rng.standard_normal(X.shape), y


def load_digits() -> tuple[Any, Any]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 samples): X scaled to [0, 1], y in 0..9."""
    X, y = _sklearn("load_digits()").load_digits(return_X_y=True)
    return X / 16.0, y.astype(_numpy("load_digits()").int64)


def _arrays(X: Any, y: Any, name: str) -> tuple[Any, Any]:
    np = _numpy(name)
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(f"{name}: X and y need one row per sample, got shapes {X.shape} and {y.shape}")
    if len(X) == 0:
        raise ValueError(f"{name}: no samples")
    return X, y


def train_test_split(
    X: Any, y: Any, test_size: float | int = 0.25, shuffle: bool = True, seed: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """(X_train, X_test, y_train, y_test); test_size is a fraction (rounded up) or a count."""
    np = _numpy("train_test_split()")
    X, y = _arrays(X, y, "train_test_split()")
    n = len(X)
    if isinstance(test_size, float) and 0 < test_size < 1:
        n_test = int(np.ceil(test_size * n))
    elif isinstance(test_size, int) and not isinstance(test_size, bool):
        n_test = test_size
    else:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a count, got {test_size!r}")
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size!r} leaves {n_test} of {n} samples for testing; need 1..{n - 1}"
        )
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    train, test = order[n_test:], order[:n_test]
    return X[train], X[test], y[train], y[test]


def batches(
    X: Any, y: Any, batch_size: int, shuffle: bool = True, seed: int | None = None
) -> Iterator[tuple[Any, Any]]:
    """(X_batch, y_batch) pairs covering every sample once; the last batch may be smaller."""
    np = _numpy("batches()")
    X, y = _arrays(X, y, "batches()")
    positive_int(batch_size, "batch_size")
    order = np.random.default_rng(seed).permutation(len(X)) if shuffle else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]


def columns(X: Any) -> list[Value]:
    """An (n_samples, n_features) array as one batched Value per feature: the input a model takes."""
    np = _numpy("columns()")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"columns() takes an (n_samples, n_features) array, got shape {X.shape}")
    return [Value(X[:, j]) for j in range(X.shape[1])]


# ---------------------------------------------------------------------------
# Names, for the character-level GPT
# ---------------------------------------------------------------------------


def load_names() -> list[str]:
    """The names list shipped inside the package (one lower-case name per line)."""
    text = importlib.resources.files("chaingrad").joinpath("assets/names.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


class CharTokenizer:
    """Characters to token ids and back: the sorted unique characters, then one BOS token."""

    def __init__(self, docs: Iterable[str]):
        self.chars = sorted(set("".join(docs)))
        if not self.chars:
            raise ValueError("CharTokenizer needs at least one non-empty document")
        self.bos = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self._index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, doc: str) -> list[int]:
        """[BOS, one id per character, BOS]."""
        try:
            return [self.bos, *(self._index[c] for c in doc), self.bos]
        except KeyError as e:
            raise ValueError(f"encode(): character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of ids, skipping BOS."""
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < self.vocab_size:
                raise ValueError(f"decode(): {i!r} is not a token id in 0..{self.vocab_size - 1}")
        return "".join(self.chars[i] for i in ids if i != self.bos)

    def __repr__(self) -> str:
        return f"CharTokenizer({''.join(self.chars)!r} + BOS)"

"""Datasets for the book: seeded synthetic generators and local-only real data.

Conventions (shared by every function here):

* **No hidden state.** Every random function takes an explicit ``seed`` and builds its own
  ``numpy.random.default_rng``; the global NumPy / torch RNGs are never read or advanced.
  The same seed gives bitwise-identical tensors on every call.
* **Torch out.** Results are ``torch.Tensor``; floating data obeys the keyword arguments
  ``dtype`` (default ``torch.float64``) and ``device`` (default CPU), labels are ``int64``.
* **Never NaN, never a download.** Bad arguments raise ``ValueError`` naming the argument;
  data whose cast to ``dtype`` would overflow is refused instead of returned.  MNIST and
  CIFAR-10 are read only from a local folder (``root=`` or the ``DLTHEORY_DATA`` environment
  variable); if the files are missing a ``FileNotFoundError`` says where they were looked for.
  :func:`digits` (bundled with scikit-learn) is always available as a fallback, and
  :func:`available` lets a chapter choose.

Shapes in docstrings use ``n`` for the number of samples and ``d`` for the dimension.
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "available",
    "cifar10",
    "circles",
    "digits",
    "gaussian_mixture",
    "gaussian_mixture_means",
    "low_rank",
    "matrix_completion_mask",
    "mnist",
    "sparse_regression",
    "standardize",
    "train_test_split",
    "two_moons",
]

ENV_VAR = "DLTHEORY_DATA"

# --------------------------------------------------------------------------- validation


def _int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def _real(name: str, value: object) -> float:
    """``value`` as a finite Python float, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _nonneg(name: str, value: object) -> float:
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _positive(name: str, value: object) -> float:
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _seed(seed: object) -> int:
    return _int("seed", seed, minimum=0)


def _float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise ValueError(f"dtype must be a real floating torch dtype, got {dtype!r}")
    return dtype


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _to_float(array: np.ndarray, dtype: torch.dtype, device, what: str) -> torch.Tensor:
    """Cast a NumPy array to a torch tensor, refusing non-finite results (e.g. overflow)."""
    t = torch.as_tensor(np.ascontiguousarray(array)).to(dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{what} is not finite in dtype {dtype} (overflow); use a wider dtype or smaller scale"
        )
    return t.to(device=device)


def _labels(array: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.int64)).to(device=device)


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels in ``0..k-1`` with counts differing by at most one, randomly ordered."""
    return rng.permutation(np.arange(n) % k)


# --------------------------------------------------------------------------- 2-D toys


def two_moons(
    n: int,
    *,
    noise: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (the classic "moons").

    Class 0 (``n // 2`` points) lies on the upper unit half circle centred at ``(0, 0)``;
    class 1 (``n - n // 2`` points) on the lower unit half circle centred at ``(1, 0.5)``.
    Angles are evenly spaced on ``[0, pi]``; each point gets isotropic Gaussian jitter of
    standard deviation ``noise``, and the rows are shuffled.

    Returns:
        ``X``: ``[n, 2]`` floating, ``y``: ``[n]`` int64 in ``{0, 1}``.
    """
    n = _int("n", n, minimum=1)
    noise = _nonneg("noise", noise)
    rng = np.random.default_rng(_seed(seed))
    dtype = _float_dtype(dtype)

    n0, n1 = n // 2, n - n // 2
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    perm = rng.permutation(n)
    return _to_float(X[perm], dtype, device, "X"), _labels(y[perm], device)


def circles(
    n: int,
    *,
    factor: float = 0.5,
    noise: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two concentric circles centred at the origin.

    Class 0 (``n // 2`` points) lies on the unit circle, class 1 (``n - n // 2`` points) on
    the circle of radius ``factor`` (``0 < factor < 1``). Angles are evenly spaced on
    ``[0, 2 pi)``; Gaussian jitter of standard deviation ``noise``; rows shuffled.

    Returns:
        ``X``: ``[n, 2]`` floating, ``y``: ``[n]`` int64 in ``{0, 1}``.
    """
    n = _int("n", n, minimum=1)
    factor = _real("factor", factor)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must satisfy 0 < factor < 1, got {factor}")
    noise = _nonneg("noise", noise)
    rng = np.random.default_rng(_seed(seed))
    dtype = _float_dtype(dtype)

    n0, n1 = n // 2, n - n // 2
    t0 = np.linspace(0.0, 2.0 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2.0 * np.pi, n1, endpoint=False)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = factor * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    X = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    perm = rng.permutation(n)
    return _to_float(X[perm], dtype, device, "X"), _labels(y[perm], device)


# --------------------------------------------------------------------------- mixtures


def _mixture_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the means and for the samples of :func:`gaussian_mixture`."""
    means_ss, samples_ss = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(means_ss), np.random.default_rng(samples_ss)


def _min_pairwise_distance(points: np.ndarray) -> float:
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    iu = np.triu_indices(points.shape[0], k=1)
    return float(dist[iu].min())


def _mixture_means(k: int, d: int, sep: float, rng: np.random.Generator) -> np.ndarray:
    for _ in range(100):
        mu = rng.standard_normal((k, d))
        mu -= mu.mean(axis=0)
        dmin = _min_pairwise_distance(mu)
        if dmin > 1e-8:  # coincident draws have probability zero; redraw if it happens
            return mu * (sep / dmin)
    raise RuntimeError("could not draw distinct mixture means")  # pragma: no cover


def _check_mixture_args(k: object, d: object, sep: object) -> tuple[int, int, float]:
    k = _int("k", k, minimum=2)
    d = _int("d", d, minimum=1)
    sep = _positive("sep", sep)
    return k, d, sep


def gaussian_mixture_means(
    *,
    k: int = 3,
    d: int = 2,
    sep: float = 3.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """The component means used by :func:`gaussian_mixture` with the same ``k, d, sep, seed``.

    Means are drawn standard normal, centred at the origin, then scaled so that the minimum
    pairwise Euclidean distance between them is exactly ``sep`` (up to float rounding).

    Returns:
        ``means``: ``[k, d]`` floating.
    """
    k, d, sep = _check_mixture_args(k, d, sep)
    means_rng, _ = _mixture_streams(_seed(seed))
    return _to_float(_mixture_means(k, d, sep, means_rng), _float_dtype(dtype), device, "means")


def gaussian_mixture(
    n: int,
    *,
    k: int = 3,
    d: int = 2,
    sep: float = 3.0,
    std: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples from ``k >= 2`` isotropic Gaussians in ``R^d`` with well-separated means.

    The means are :func:`gaussian_mixture_means` ``(k=k, d=d, sep=sep, seed=seed)`` (minimum
    pairwise distance exactly ``sep``); class sizes differ by at most one; each sample is
    ``means[y_i] + std * N(0, I_d)``.

    Returns:
        ``X``: ``[n, d]`` floating, ``y``: ``[n]`` int64 in ``0..k-1``.
    """
    n = _int("n", n, minimum=1)
    k, d, sep = _check_mixture_args(k, d, sep)
    std = _nonneg("std", std)
    dtype = _float_dtype(dtype)
    means_rng, rng = _mixture_streams(_seed(seed))
    mu = _mixture_means(k, d, sep, means_rng)
    y = _balanced_labels(n, k, rng)
    X = mu[y] + std * rng.standard_normal((n, d))
    return _to_float(X, dtype, device, "X"), _labels(y, device)


# --------------------------------------------------------------------------- regression


def sparse_regression(
    n: int,
    d: int,
    *,
    k: int = 5,
    noise: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse linear regression with a Gaussian design.

    ``X`` has i.i.d. standard normal entries; ``w_star`` has exactly ``k`` nonzeros on a
    uniformly random support, each ``±1`` (random sign) times a magnitude uniform in
    ``[1, 2)``; ``y = X @ w_star + noise * N(0, I_n)`` (computed in float64, then cast).

    Returns:
        ``X``: ``[n, d]``, ``y``: ``[n]``, ``w_star``: ``[d]``, all floating.
    """
    n = _int("n", n, minimum=1)
    d = _int("d", d, minimum=1)
    k = _int("k", k, minimum=0)
    if k > d:
        raise ValueError(f"k must be <= d (number of nonzeros <= dimension), got k={k}, d={d}")
    noise = _nonneg("noise", noise)
    dtype = _float_dtype(dtype)
    rng = np.random.default_rng(_seed(seed))

    X = rng.standard_normal((n, d))
    support = rng.choice(d, size=k, replace=False)
    signs = rng.choice(np.array([-1.0, 1.0]), size=k)
    w = np.zeros(d)
    w[support] = signs * rng.uniform(1.0, 2.0, size=k)
    y = X @ w + noise * rng.standard_normal(n)
    return (
        _to_float(X, dtype, device, "X"),
        _to_float(y, dtype, device, "y"),
        _to_float(w, dtype, device, "w_star"),
    )


# --------------------------------------------------------------------------- matrices


def _orthonormal_columns(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed ``[rows, cols]`` matrix with orthonormal columns (sign-fixed QR)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def low_rank(
    m: int,
    n: int,
    r: int,
    *,
    singular_values: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """A random ``m x n`` matrix of rank exactly ``r``: ``M = U diag(s) V^T``.

    ``U`` (``[m, r]``) and ``V`` (``[n, r]``) have orthonormal columns (QR of Gaussian
    matrices, signs fixed so the law is Haar). ``s`` is ``singular_values`` sorted descending
    (a length-``r`` sequence of positive finite numbers, any order), or all ones by default.
    Built in float64, then cast: the singular values of ``M`` are ``s`` up to rounding.

    Returns:
        ``M``: ``[m, n]`` floating.
    """
    m = _int("m", m, minimum=1)
    n = _int("n", n, minimum=1)
    r = _int("r", r, minimum=1)
    if r > min(m, n):
        raise ValueError(f"rank r must be <= min(m, n) = {min(m, n)}, got r={r}")
    if singular_values is None:
        s = np.ones(r)
    else:
        if isinstance(singular_values, torch.Tensor):
            singular_values = singular_values.detach().cpu().numpy()
        try:
            s = np.asarray(singular_values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"singular_values must be a 1-D sequence of numbers, got {singular_values!r}"
            ) from exc
        if s.ndim != 1 or s.shape[0] != r:
            raise ValueError(
                f"singular_values must be 1-D of length r={r}, got shape {tuple(s.shape)}"
            )
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            raise ValueError(f"singular_values must be finite and > 0, got {s.tolist()}")
        s = np.sort(s)[::-1]
    dtype = _float_dtype(dtype)
    rng = np.random.default_rng(_seed(seed))
    U = _orthonormal_columns(m, r, rng)
    V = _orthonormal_columns(n, r, rng)
    return _to_float((U * s) @ V.T, dtype, device, "M")


def matrix_completion_mask(
    m: int,
    n: int,
    *,
    p: float,
    seed: int = 0,
    device=None,
) -> torch.Tensor:
    """Bernoulli(``p``) observation mask for matrix completion, ``0 < p <= 1``.

    Each entry is observed (``True``) independently with probability ``p``.

    Returns:
        ``mask``: ``[m, n]`` bool.
    """
    m = _int("m", m, minimum=1)
    n = _int("n", n, minimum=1)
    p = _real("p", p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must satisfy 0 < p <= 1, got {p}")
    rng = np.random.default_rng(_seed(seed))
    mask = rng.random((m, n)) < p
    return torch.as_tensor(mask, dtype=torch.bool).to(device=device)


# --------------------------------------------------------------------------- real data


def digits(
    *,
    flatten: bool = True,
    scale: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 handwritten digits (bundled with scikit-learn; no download).

    Pixel values are integers ``0..16``; ``scale=True`` divides them by 16 (range ``[0, 1]``).

    Returns:
        ``X``: ``[1797, 64]`` if ``flatten`` else ``[1797, 1, 8, 8]``; ``y``: ``[1797]`` int64
        in ``0..9``.
    """
    flatten = _bool("flatten", flatten)
    scale = _bool("scale", scale)
    dtype = _float_dtype(dtype)
    from sklearn.datasets import load_digits  # local import: keeps `import dltheory` light

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    if scale:
        X = X / 16.0
    if not flatten:
        X = X.reshape(-1, 1, 8, 8)
    return _to_float(X, dtype, device, "X"), _labels(bunch.target, device)


_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {
    True: tuple(f"data_batch_{i}" for i in range(1, 6)),
    False: ("test_batch",),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049

_NO_DOWNLOAD = (
    "dltheory never downloads data: place the files there yourself and set the environment "
    f"variable {ENV_VAR} to that folder (or pass root=...). Chapters that cannot find them fall "
    "back to dltheory.data.digits()."
)


def _data_root(root: str | os.PathLike | None, what: str) -> Path:
    """The data folder: ``root`` if given, else ``$DLTHEORY_DATA``; FileNotFoundError if none."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    raise FileNotFoundError(
        f"{what}: no data folder: the environment variable {ENV_VAR} is not set and no root= "
        f"was given. {_NO_DOWNLOAD}"
    )


def _mnist_dirs(root: Path) -> list[Path]:
    return [root / "mnist", root / "MNIST" / "raw", root]


def _find_plain_or_gz(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_mnist(root: Path, train: bool) -> tuple[Path, Path] | None:
    images_name, labels_name = _MNIST_FILES[train]
    for folder in _mnist_dirs(root):
        images = _find_plain_or_gz(folder, images_name)
        labels = _find_plain_or_gz(folder, labels_name)
        if images is not None and labels is not None:
            return images, labels
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (big-endian header) into a uint8 array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
        raise ValueError(
            f"{path}: wrong IDX magic number {found} (expected {magic} for MNIST {kind}); "
            "is this the right file?"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX size mismatch: header says shape {dims} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def mnist(
    *,
    train: bool = True,
    root: str | os.PathLike | None = None,
    flatten: bool = False,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from local IDX files (never downloaded).

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``train=True``) or
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (``train=False``), plain or
    ``.gz``, in ``<root>/mnist/``, ``<root>/MNIST/raw/`` and ``<root>/`` (first folder holding
    both wins), where ``root`` is the argument or else ``$DLTHEORY_DATA``.

    Returns:
        ``X``: ``[N, 1, 28, 28]`` in ``[0, 1]`` (``[N, 784]`` if ``flatten``), ``y``: ``[N]``
        int64. (Any IDX image size is accepted, e.g. Fashion-MNIST in the same layout.)

    Raises:
        FileNotFoundError: no folder configured, or the files are not there.
        ValueError: wrong magic number, truncated file, or images/labels count mismatch.
    """
    train = _bool("train", train)
    flatten = _bool("flatten", flatten)
    dtype = _float_dtype(dtype)
    split = "train" if train else "test"
    base = _data_root(root, f"MNIST ({split} split)")
    found = _find_mnist(base, train)
    if found is None:
        images_name, labels_name = _MNIST_FILES[train]
        where = ", ".join(str(p) for p in _mnist_dirs(base))
        raise FileNotFoundError(
            f"MNIST ({split} split) not found: looked for {images_name}[.gz] and "
            f"{labels_name}[.gz] in {where}. {_NO_DOWNLOAD}"
        )
    images_path, labels_path = found
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected 3-D image data, got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected 1-D labels, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST size mismatch: {images.shape[0]} images in {images_path} but "
            f"{labels.shape[0]} labels in {labels_path}"
        )
    X = torch.from_numpy(images).to(dtype=dtype) / 255.0
    X = X.reshape(X.shape[0], -1) if flatten else X.unsqueeze(1)
    return X.to(device=device), _labels(labels, device)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:  # pickle: only ever point this at files you trust
        try:
            batch = pickle.load(f, encoding="bytes")
        except Exception as exc:  # any unpickling failure is a format error
            raise ValueError(f"{path}: not a CIFAR-10 python pickle batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")

    def get(key: str):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise ValueError(f"{path}: CIFAR-10 batch has no key b{key!r}")

    data = np.asarray(get("data"))
    labels = np.asarray(get("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{path}: b'data' must be uint8 of shape [N, 3072], got {data.dtype} "
            f"{tuple(data.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"{path}: size mismatch: {data.shape[0]} images but labels of shape "
            f"{tuple(labels.shape)}"
        )
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9
    ):
        raise ValueError(f"{path}: CIFAR-10 labels must be integers in 0..9")
    return data, labels.astype(np.int64)


def cifar10(
    *,
    train: bool = True,
    root: str | os.PathLike | None = None,
    flatten: bool = False,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the local python-pickle batches (never downloaded).

    Reads ``data_batch_1`` .. ``data_batch_5`` (``train=True``, concatenated in that order) or
    ``test_batch`` from ``<root>/cifar-10-batches-py/``, where ``root`` is the argument or else
    ``$DLTHEORY_DATA``. Each batch is a pickled dict with ``b"data"`` (uint8 ``[N, 3072]``,
    channel-major) and ``b"labels"``. Pickles can run code: point this only at trusted files.

    Returns:
        ``X``: ``[N, 3, 32, 32]`` in ``[0, 1]`` (``[N, 3072]`` if ``flatten``), ``y``: ``[N]``
        int64 in ``0..9``.

    Raises:
        FileNotFoundError: no folder configured, or a batch file is missing.
        ValueError: a batch is not in the expected format.
    """
    train = _bool("train", train)
    flatten = _bool("flatten", flatten)
    dtype = _float_dtype(dtype)
    split = "train" if train else "test"
    folder = _data_root(root, f"CIFAR-10 ({split} split)") / _CIFAR_DIR
    names = _CIFAR_FILES[train]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 ({split} split) not found: looked for {', '.join(names)} in {folder} "
            f"(missing: {', '.join(missing)}). {_NO_DOWNLOAD}"
        )
    batches = [_cifar_batch(folder / name) for name in names]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    X = torch.from_numpy(data).to(dtype=dtype) / 255.0
    if not flatten:
        X = X.reshape(-1, 3, 32, 32)
    return X.to(device=device), _labels(labels, device)


def available(name: str, *, root: str | os.PathLike | None = None) -> bool:
    """Whether the local files of dataset ``name`` (``'mnist'`` or ``'cifar10'``) are present.

    Checks both the train and test split under ``root`` (else ``$DLTHEORY_DATA``) exactly as
    :func:`mnist` / :func:`cifar10` would look for them; does not parse the files. ``False`` if
    no folder is configured.
    """
    if name not in ("mnist", "cifar10"):
        raise ValueError(f"name must be 'mnist' or 'cifar10', got {name!r}")
    try:
        base = _data_root(root, name)
    except FileNotFoundError:
        return False
    if name == "mnist":
        return all(_find_mnist(base, train) is not None for train in (True, False))
    folder = base / _CIFAR_DIR
    return all((folder / f).is_file() for files in _CIFAR_FILES.values() for f in files)


# --------------------------------------------------------------------------- utilities


def train_test_split(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random split along the first axis.

    ``n_test = ceil(test_fraction * N)``, which must leave at least one sample on each side.

    Args:
        X: ``[N, ...]``; y: ``[N, ...]``.

    Returns:
        ``(X_train [N - n_test, ...], y_train, X_test [n_test, ...], y_test)`` on the inputs'
        devices and dtypes.
    """
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError("X and y must be torch tensors")
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must have a leading sample axis (ndim >= 1)")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same length, got {X.shape[0]} and {y.shape[0]}")
    test_fraction = _real("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must satisfy 0 < test_fraction < 1, got {test_fraction}")
    N = X.shape[0]
    n_test = math.ceil(test_fraction * N)
    if not 1 <= n_test <= N - 1:
        raise ValueError(
            f"test_fraction={test_fraction} of N={N} samples leaves an empty train or test set"
        )
    perm = np.random.default_rng(_seed(seed)).permutation(N)
    test_idx = torch.as_tensor(perm[:n_test])
    train_idx = torch.as_tensor(perm[n_test:])
    return (
        X[train_idx.to(X.device)],
        y[train_idx.to(y.device)],
        X[test_idx.to(X.device)],
        y[test_idx.to(y.device)],
    )


def standardize(
    X_train: torch.Tensor,
    X_test: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per feature, using the training statistics only.

    Each feature (every index after the first axis) is shifted by its training mean and divided
    by ``max(std, eps)`` (population std), so constant features map to 0 instead of NaN.

    Args:
        X_train: ``[N, ...]`` floating; X_test: ``[M, ...]`` with the same trailing shape.

    Returns:
        ``X_train_std`` if ``X_test`` is None, else ``(X_train_std, X_test_std)``; same shapes.
    """
    if not isinstance(X_train, torch.Tensor) or not X_train.is_floating_point():
        raise ValueError("X_train must be a floating-point torch tensor")
    if X_train.ndim == 0 or X_train.shape[0] == 0:
        raise ValueError(f"X_train must have at least one sample, got shape {tuple(X_train.shape)}")
    if not bool(torch.isfinite(X_train).all()):
        raise ValueError("X_train contains NaN or inf")
    eps = _positive("eps", eps)
    mean = X_train.mean(dim=0)
    eps = max(eps, torch.finfo(X_train.dtype).tiny)  # eps must not round to 0 in low precision
    scale = X_train.std(dim=0, correction=0).clamp_min(eps)
    train_std = (X_train - mean) / scale
    if X_test is None:
        return train_std
    if not isinstance(X_test, torch.Tensor) or not X_test.is_floating_point():
        raise ValueError("X_test must be a floating-point torch tensor")
    if X_test.ndim != X_train.ndim or X_test.shape[1:] != X_train.shape[1:]:
        raise ValueError(
            f"X_test must have the same feature shape as X_train, got {tuple(X_test.shape)} "
            f"vs {tuple(X_train.shape)}"
        )
    if not bool(torch.isfinite(X_test).all()):
        raise ValueError("X_test contains NaN or inf")
    return train_std, (X_test - mean) / scale

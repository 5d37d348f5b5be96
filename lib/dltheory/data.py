"""Datasets for the book: seeded synthetic generators and local-only real data.

Conventions (shared by every function here):

* **No hidden state.** Every random function takes an explicit ``seed`` and builds its own
  ``numpy.random.default_rng``; the global NumPy / torch RNGs are never read or advanced.
  The same seed gives bitwise-identical tensors on every call.
* **Torch out.** Results are ``torch.Tensor``; floating data obeys the keyword arguments
  ``dtype`` (default ``torch.float64``) and ``device`` (default CPU), labels are ``int64``.
* **Never NaN, never a download.** Bad arguments raise ``ValueError``
  (:class:`dltheory.errors.InputError`, checked by :mod:`dltheory.validation`) naming the
  function and the argument; data whose cast to ``dtype`` would overflow is refused instead
  of returned.  MNIST and CIFAR-10 are read only from a local folder (``root=`` or the
  ``DLTHEORY_DATA`` environment variable): MNIST's IDX files, and CIFAR-10's binary release
  (``cifar-10-batches-bin/``, read with ``np.frombuffer``) or its python release
  (``cifar-10-batches-py/``, pickles read by a restricted unpickler that runs no code); if
  the files are missing a ``FileNotFoundError`` says where they were looked for.
  :func:`digits` (bundled with scikit-learn) is always available as a fallback, and
  :func:`available` lets a chapter choose.

Shapes in docstrings use ``n`` for the number of samples and ``d`` for the dimension.
"""

from __future__ import annotations

import codecs
import gzip
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import validation
from .errors import InputError, InputTypeError

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
#
# Numbers, integers, booleans and tensors are checked by :mod:`dltheory.validation`. This
# module's contract is that every bad argument raises a ``ValueError``: :func:`_arg` turns
# validation's :class:`~dltheory.errors.InputTypeError` (a ``TypeError``) into an
# :class:`~dltheory.errors.InputError` (a ``ValueError``) with the same message.


def _arg(check, value, name: str, fn: str, **limits):
    """``check(value, name, fn=fn, **limits)`` (a :mod:`dltheory.validation` checker), with
    a wrong type raised as a ``ValueError`` too."""
    try:
        return check(value, name, fn=fn, **limits)
    except InputTypeError as exc:
        raise InputError(str(exc)) from None


def _count(name: str, value, fn: str, minimum: int = 1) -> int:
    return _arg(validation.integer, value, name, fn, lo=minimum)


def _seed(seed, fn: str) -> int:
    return _arg(validation.integer, seed, "seed", fn, lo=0)


def _nonneg(name: str, value, fn: str) -> float:
    return _arg(validation.real, value, name, fn, lo=0.0)


def _float_dtype(dtype, fn: str) -> torch.dtype:
    return _arg(validation.floating_dtype, dtype, "dtype", fn)


def _root(root, fn: str):
    if root is not None and not isinstance(root, str | os.PathLike):
        raise InputError(f"{fn}: root must be a folder (a str or os.PathLike) or None, got "
                         f"{type(root).__name__}")
    return root


def _to_float(array: np.ndarray, dtype: torch.dtype, device, what: str, fn: str
              ) -> torch.Tensor:
    """Cast a NumPy array to a torch tensor, refusing non-finite results (e.g. overflow)."""
    t = torch.as_tensor(np.ascontiguousarray(array)).to(dtype=dtype)
    validation.finite_output(t, what, fn=fn, cause=f"it overflows {dtype}",
                             fix="use a wider dtype or a smaller scale")
    return t.to(device=device)


def _labels(array: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.int64)).to(device=device)


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels in ``0..k-1`` with counts differing by at most one, randomly ordered."""
    return rng.permutation(np.arange(n) % k)


# --------------------------------------------------------------------------- 2-D toys


@validation.allocates("data.two_moons", "n")
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
    fn = "data.two_moons"
    n = _count("n", n, fn)
    noise = _nonneg("noise", noise, fn)
    rng = np.random.default_rng(_seed(seed, fn))
    dtype = _float_dtype(dtype, fn)

    n0, n1 = n // 2, n - n // 2
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    perm = rng.permutation(n)
    return _to_float(X[perm], dtype, device, "X", fn), _labels(y[perm], device)


@validation.allocates("data.circles", "n")
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
    fn = "data.circles"
    n = _count("n", n, fn)
    factor = _arg(validation.real, factor, "factor", fn, lo=0.0, hi=1.0, lo_open=True,
                  hi_open=True)
    noise = _nonneg("noise", noise, fn)
    rng = np.random.default_rng(_seed(seed, fn))
    dtype = _float_dtype(dtype, fn)

    n0, n1 = n // 2, n - n // 2
    t0 = np.linspace(0.0, 2.0 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2.0 * np.pi, n1, endpoint=False)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = factor * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    X = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    perm = rng.permutation(n)
    return _to_float(X[perm], dtype, device, "X", fn), _labels(y[perm], device)


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


def _check_mixture_args(k: object, d: object, sep: object, fn: str) -> tuple[int, int, float]:
    k = _count("k", k, fn, minimum=2)
    d = _count("d", d, fn)
    sep = _arg(validation.real, sep, "sep", fn, lo=0.0, lo_open=True)
    return k, d, sep


@validation.allocates("data.gaussian_mixture_means", "k and d")
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
    fn = "data.gaussian_mixture_means"
    k, d, sep = _check_mixture_args(k, d, sep, fn)
    means_rng, _ = _mixture_streams(_seed(seed, fn))
    dtype = _float_dtype(dtype, fn)
    return _to_float(_mixture_means(k, d, sep, means_rng), dtype, device, "means", fn)


@validation.allocates("data.gaussian_mixture", "n, k and d")
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
    fn = "data.gaussian_mixture"
    n = _count("n", n, fn)
    k, d, sep = _check_mixture_args(k, d, sep, fn)
    std = _nonneg("std", std, fn)
    dtype = _float_dtype(dtype, fn)
    means_rng, rng = _mixture_streams(_seed(seed, fn))
    mu = _mixture_means(k, d, sep, means_rng)
    y = _balanced_labels(n, k, rng)
    X = mu[y] + std * rng.standard_normal((n, d))
    return _to_float(X, dtype, device, "X", fn), _labels(y, device)


# --------------------------------------------------------------------------- regression


@validation.allocates("data.sparse_regression", "n and d")
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
    fn = "data.sparse_regression"
    n = _count("n", n, fn)
    d = _count("d", d, fn)
    k = _count("k", k, fn, minimum=0)
    if k > d:
        raise InputError(f"{fn}: k must be <= d (number of nonzeros <= dimension), got k={k}, "
                         f"d={d}")
    noise = _nonneg("noise", noise, fn)
    dtype = _float_dtype(dtype, fn)
    rng = np.random.default_rng(_seed(seed, fn))

    X = rng.standard_normal((n, d))
    support = rng.choice(d, size=k, replace=False)
    signs = rng.choice(np.array([-1.0, 1.0]), size=k)
    w = np.zeros(d)
    w[support] = signs * rng.uniform(1.0, 2.0, size=k)
    y = X @ w + noise * rng.standard_normal(n)
    return (
        _to_float(X, dtype, device, "X", fn),
        _to_float(y, dtype, device, "y", fn),
        _to_float(w, dtype, device, "w_star", fn),
    )


# --------------------------------------------------------------------------- matrices


def _orthonormal_columns(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed ``[rows, cols]`` matrix with orthonormal columns (sign-fixed QR)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


@validation.allocates("data.low_rank", "m and n")
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
    fn = "data.low_rank"
    m = _count("m", m, fn)
    n = _count("n", n, fn)
    r = _count("r", r, fn)
    if r > min(m, n):
        raise InputError(f"{fn}: rank r must be <= min(m, n) = {min(m, n)}, got r={r}")
    s = np.ones(r) if singular_values is None else _singular_values(singular_values, r, fn)
    dtype = _float_dtype(dtype, fn)
    rng = np.random.default_rng(_seed(seed, fn))
    U = _orthonormal_columns(m, r, rng)
    V = _orthonormal_columns(n, r, rng)
    return _to_float((U * s) @ V.T, dtype, device, "M", fn)


def _singular_values(values, r: int, fn: str) -> np.ndarray:
    """``values`` (a list, array or tensor of ``r`` positive finite numbers; a floating
    tensor of at least 32 bits) as a float64 array ``[r]``, descending."""
    name = "singular_values"
    if isinstance(values, torch.Tensor):
        floating = values.is_floating_point() or values.is_complex()
        _arg(validation.tensor, values, name, fn, floating=floating, nonempty=False)
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray | Sequence) or isinstance(values, str | bytes):
        raise InputError(f"{fn}: {name} must be a 1-D sequence of numbers, got {values!r}")
    try:
        s = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{fn}: {name} must be a 1-D sequence of numbers, got "
                         f"{values!r}") from exc
    if s.ndim != 1 or s.shape[0] != r:
        raise InputError(f"{fn}: {name} must be 1-D of length r={r}, got shape "
                         f"{tuple(s.shape)}")
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise InputError(f"{fn}: {name} must be finite and > 0, got {s.tolist()}")
    return np.sort(s)[::-1]


@validation.allocates("data.matrix_completion_mask", "m and n")
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
    fn = "data.matrix_completion_mask"
    m = _count("m", m, fn)
    n = _count("n", n, fn)
    p = _arg(validation.real, p, "p", fn, lo=0.0, hi=1.0, lo_open=True)
    rng = np.random.default_rng(_seed(seed, fn))
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
    fn = "data.digits"
    flatten = _arg(validation.boolean, flatten, "flatten", fn)
    scale = _arg(validation.boolean, scale, "scale", fn)
    dtype = _float_dtype(dtype, fn)
    from sklearn.datasets import load_digits  # local import: keeps `import dltheory` light

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    if scale:
        X = X / 16.0
    if not flatten:
        X = X.reshape(-1, 1, 8, 8)
    return _to_float(X, dtype, device, "X", fn), _labels(bunch.target, device)


_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: The two releases of CIFAR-10, in the order they are looked for: the binary one (read with
#: ``np.frombuffer``, as MNIST) and the python one (pickles, read by a restricted unpickler).
_CIFAR_LAYOUTS = {
    "cifar-10-batches-bin": {
        True: tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        False: ("test_batch.bin",),
    },
    "cifar-10-batches-py": {
        True: tuple(f"data_batch_{i}" for i in range(1, 6)),
        False: ("test_batch",),
    },
}
_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS  # binary release: a label byte, then 3072 pixel bytes
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
            raise InputError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 4:
        raise InputError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
        raise InputError(
            f"{path}: wrong IDX magic number {found} (expected {magic} for MNIST {kind}); "
            "is this the right file?"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise InputError(
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
    fn = "data.mnist"
    train = _arg(validation.boolean, train, "train", fn)
    flatten = _arg(validation.boolean, flatten, "flatten", fn)
    dtype = _float_dtype(dtype, fn)
    split = "train" if train else "test"
    base = _data_root(_root(root, fn), f"MNIST ({split} split)")
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
        raise InputError(f"{images_path}: expected 3-D image data, got shape {images.shape}")
    if labels.ndim != 1:
        raise InputError(f"{labels_path}: expected 1-D labels, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise InputError(
            f"MNIST size mismatch: {images.shape[0]} images in {images_path} but "
            f"{labels.shape[0]} labels in {labels_path}"
        )
    X = torch.from_numpy(images).to(dtype=dtype) / 255.0
    X = X.reshape(X.shape[0], -1) if flatten else X.unsqueeze(1)
    return X.to(device=device), _labels(labels, device)


def _cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch of the binary release: records of 1 label byte + 3072 pixel bytes (the red,
    green and blue 32 x 32 planes, row-major), as ``(data uint8 [N, 3072], labels [N])``."""
    raw = path.read_bytes()
    if not raw or len(raw) % _CIFAR_RECORD:
        raise InputError(
            f"{path}: not a CIFAR-10 binary batch: {len(raw)} bytes is not a positive multiple "
            f"of {_CIFAR_RECORD} (1 label byte + {_CIFAR_PIXELS} pixel bytes per image)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise InputError(f"{path}: CIFAR-10 labels must be integers in 0..9, found "
                         f"{int(labels.max())} (is this CIFAR-100?)")
    return records[:, 1:].copy(), labels


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler for the python release that builds only what a CIFAR-10 batch holds:
    dicts, lists, strings, bytes, numbers and numpy arrays. Every other global (``os.system``,
    ``builtins.eval``, any class) is refused *before* it is called, so a crafted file cannot
    run code."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("_codecs", "encode"): codecs.encode,   # bytes in a protocol-2 pickle of Python 3
    }

    def find_class(self, module: str, name: str):
        key = (module, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            key = ("multiarray", name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return super().find_class("numpy._core.numeric", name)  # arrays of protocol 5
        if key in self._ALLOWED:
            return self._ALLOWED[key]
        raise pickle.UnpicklingError(
            f"refusing to load the global {module}.{name}: a CIFAR-10 batch holds only "
            "numpy arrays, lists, strings and numbers"
        )


def _cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch of the python release: a pickled dict with ``b"data"`` (uint8 ``[N, 3072]``)
    and ``b"labels"``, read by :class:`_BatchUnpickler` (no code runs)."""
    with open(path, "rb") as f:
        try:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        except Exception as exc:  # any unpickling failure is a format error
            raise InputError(
                f"{path}: not a CIFAR-10 python batch, or not a safe one ({exc}); the "
                "binary release (cifar-10-batches-bin) needs no unpickling"
            ) from exc
    if not isinstance(batch, dict):
        raise InputError(f"{path}: expected a pickled dict, got {type(batch).__name__}")

    def get(key: str):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise InputError(f"{path}: CIFAR-10 batch has no key b{key!r}")

    data = np.asarray(get("data"))
    labels = np.asarray(get("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise InputError(
            f"{path}: b'data' must be uint8 of shape [N, 3072], got {data.dtype} "
            f"{tuple(data.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise InputError(
            f"{path}: size mismatch: {data.shape[0]} images but labels of shape "
            f"{tuple(labels.shape)}"
        )
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9
    ):
        raise InputError(f"{path}: CIFAR-10 labels must be integers in 0..9")
    return data, labels.astype(np.int64)


def _find_cifar(base: Path, train: bool) -> tuple[Path, tuple[str, ...]] | None:
    """The first release folder under ``base`` holding every batch of the split."""
    for folder, files in _CIFAR_LAYOUTS.items():
        if all((base / folder / name).is_file() for name in files[train]):
            return base / folder, files[train]
    return None


def cifar10(
    *,
    train: bool = True,
    root: str | os.PathLike | None = None,
    flatten: bool = False,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from a local copy of its binary or python release (never downloaded).

    Looks in ``<root>/cifar-10-batches-bin/`` (the binary release) and then in
    ``<root>/cifar-10-batches-py/`` (the python release), where ``root`` is the argument or
    else ``$DLTHEORY_DATA``, and reads ``data_batch_1`` .. ``data_batch_5`` (``train=True``,
    concatenated in that order) or ``test_batch`` from the first folder holding them all.
    Binary batches (``data_batch_1.bin`` .. ``test_batch.bin``) are records of 3073 bytes: a
    label byte, then 3072 pixel bytes (red, green, blue 32 x 32 planes). Python batches are
    pickled dicts with ``b"data"`` (uint8 ``[N, 3072]``, channel-major) and ``b"labels"``;
    they are read by a restricted unpickler that builds only numpy arrays, lists, strings and
    numbers and refuses any other global, so a crafted file cannot run code.

    Returns:
        ``X``: ``[N, 3, 32, 32]`` in ``[0, 1]`` (``[N, 3072]`` if ``flatten``), ``y``: ``[N]``
        int64 in ``0..9``.

    Raises:
        FileNotFoundError: no folder configured, or a batch file is missing.
        ValueError (:class:`~dltheory.errors.InputError`): a batch is not in the expected
        format, or a python batch asks for anything but numpy arrays.
    """
    fn = "data.cifar10"
    train = _arg(validation.boolean, train, "train", fn)
    flatten = _arg(validation.boolean, flatten, "flatten", fn)
    dtype = _float_dtype(dtype, fn)
    split = "train" if train else "test"
    base = _data_root(_root(root, fn), f"CIFAR-10 ({split} split)")
    found = _find_cifar(base, train)
    if found is None:
        looked = "; ".join(
            f"{', '.join(files[train])} in {base / folder} (missing: "
            f"{', '.join(n for n in files[train] if not (base / folder / n).is_file())})"
            for folder, files in _CIFAR_LAYOUTS.items()
        )
        raise FileNotFoundError(
            f"CIFAR-10 ({split} split) not found: looked for {looked}. {_NO_DOWNLOAD}"
        )
    folder, names = found
    read = _cifar_binary if folder.name == "cifar-10-batches-bin" else _cifar_pickle
    batches = [read(folder / name) for name in names]
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
    fn = "data.available"
    name = _arg(validation.choice, name, "name", fn, options=("mnist", "cifar10"))
    try:
        base = _data_root(_root(root, fn), name)
    except FileNotFoundError:
        return False
    find = _find_mnist if name == "mnist" else _find_cifar
    return all(find(base, train) is not None for train in (True, False))


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
        X: ``[N, ...]``; y: ``[N, ...]``: finite tensors, floating (at least 32 bits) or
        integer (e.g. labels or pixels).

    Returns:
        ``(X_train [N - n_test, ...], y_train, X_test [n_test, ...], y_test)`` on the inputs'
        devices and dtypes.
    """
    fn = "data.train_test_split"
    X, y = _samples(X, "X", fn), _samples(y, "y", fn)
    if X.shape[0] != y.shape[0]:
        raise InputError(f"{fn}: X and y must have the same length, got {X.shape[0]} and "
                         f"{y.shape[0]}")
    test_fraction = _arg(validation.real, test_fraction, "test_fraction", fn, lo=0.0, hi=1.0,
                         lo_open=True, hi_open=True)
    N = X.shape[0]
    n_test = math.ceil(test_fraction * N)
    if not 1 <= n_test <= N - 1:
        raise InputError(
            f"{fn}: test_fraction={test_fraction} of N={N} samples leaves an empty train or "
            "test set"
        )
    perm = np.random.default_rng(_seed(seed, fn)).permutation(N)
    test_idx = torch.as_tensor(perm[:n_test])
    train_idx = torch.as_tensor(perm[n_test:])
    return (
        X[train_idx.to(X.device)],
        y[train_idx.to(y.device)],
        X[test_idx.to(X.device)],
        y[test_idx.to(y.device)],
    )


def _samples(x, name: str, fn: str, *, floating: bool | None = None) -> torch.Tensor:
    """A finite tensor ``[N, ...]`` with ``N >= 1``: floating of at least 32 bits, or (unless
    ``floating``) of an integer dtype."""
    if floating is None:
        floating = isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex())
    return _arg(validation.tensor, x, name, fn, min_ndim=1, floating=floating,
                layout="[N, ...]")


def standardize(
    X_train: torch.Tensor,
    X_test: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per feature, using the training statistics only.

    Each feature (every index after the first axis) is shifted by its training mean and divided
    by ``max(std, eps)`` (population std), so constant features map to 0 instead of NaN.
    Values whose squares overflow (say ``1e300``) are handled by scaling each feature by its
    largest magnitude first; a result that still overflows (a test value far outside the
    training range) is refused.

    Args:
        X_train: ``[N, ...]`` finite, floating (at least 32 bits); X_test: ``[M, ...]`` with
        the same trailing shape; ``eps > 0``.

    Returns:
        ``X_train_std`` if ``X_test`` is None, else ``(X_train_std, X_test_std)``; same shapes.
    """
    fn = "data.standardize"
    X_train = _samples(X_train, "X_train", fn, floating=True)
    if X_test is not None:
        X_test = _samples(X_test, "X_test", fn, floating=True)
        if X_test.ndim != X_train.ndim or X_test.shape[1:] != X_train.shape[1:]:
            raise InputError(
                f"{fn}: X_test must have the same feature shape as X_train, got "
                f"{tuple(X_test.shape)} vs {tuple(X_train.shape)}"
            )
    eps = _arg(validation.real, eps, "eps", fn, lo=0.0, lo_open=True)
    eps = max(eps, torch.finfo(X_train.dtype).tiny)  # eps must not round to 0 in low precision
    mean, std = X_train.mean(dim=0), X_train.std(dim=0, correction=0)
    if bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
        scale = std.clamp_min(eps)
        out = [(X - mean) / scale for X in (X_train, X_test) if X is not None]
    else:
        out = _standardized_huge(X_train, X_test, eps)
    for t, name in zip(out, ("X_train", "X_test"), strict=False):
        validation.finite_output(t, f"the standardized {name}", fn=fn,
                                 cause="a test value is too far outside the training range "
                                 "for the dtype")
    return out[0] if X_test is None else tuple(out)


def _standardized_huge(X_train: torch.Tensor, X_test: torch.Tensor | None,
                       eps: float) -> list[torch.Tensor]:
    """:func:`standardize` when the variance (or the sum) of ``X_train`` overflows: the
    mean and std from ``X_train / u`` (``u`` each feature's largest magnitude, so the values
    lie in ``[-1, 1]``) times ``u`` (both at most ``u``), and ``X - mean`` halved so that it
    cannot overflow either."""
    unit = X_train.abs().amax(dim=0)
    unit = torch.where(unit > 0, unit, torch.ones_like(unit))
    Y = X_train / unit
    mean = Y.mean(dim=0) * unit
    scale = (Y.std(dim=0, correction=0) * unit).clamp_min(eps)
    return [(X * 0.5 - mean * 0.5) / scale * 2 for X in (X_train, X_test) if X is not None]

"""Tests for dltheory.data: seeded generators, local-only real data, split/standardize."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dltheory import data

FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


# --------------------------------------------------------------------------- generators table

# name -> (call(seed, **kw) returning a tuple of tensors, expected shapes, which outputs are labels)
GENERATORS = {
    "two_moons": (lambda seed, **kw: data.two_moons(10, seed=seed, **kw), [(10, 2), (10,)]),
    "circles": (lambda seed, **kw: data.circles(11, seed=seed, **kw), [(11, 2), (11,)]),
    "gaussian_mixture": (
        lambda seed, **kw: data.gaussian_mixture(12, k=4, d=3, seed=seed, **kw),
        [(12, 3), (12,)],
    ),
    "gaussian_mixture_means": (
        lambda seed, **kw: (data.gaussian_mixture_means(k=4, d=3, seed=seed, **kw),),
        [(4, 3)],
    ),
    "sparse_regression": (
        lambda seed, **kw: data.sparse_regression(9, 7, k=3, noise=0.5, seed=seed, **kw),
        [(9, 7), (9,), (7,)],
    ),
    "low_rank": (lambda seed, **kw: (data.low_rank(6, 5, 2, seed=seed, **kw),), [(6, 5)]),
}
LABELLED = {"two_moons", "circles", "gaussian_mixture"}


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_shapes_dtypes_devices(name, dtype):
    call, shapes = GENERATORS[name]
    out = call(0, dtype=dtype)
    assert [tuple(t.shape) for t in out] == shapes
    for i, t in enumerate(out):
        assert isinstance(t, torch.Tensor)
        assert t.device.type == "cpu"
        if name in LABELLED and i == 1:
            assert t.dtype == torch.int64
        else:
            assert t.dtype == dtype
            assert bool(torch.isfinite(t).all())
    # the device argument is honoured (meta tensors exist on every build)
    assert all(t.device.type == "meta" for t in call(0, dtype=dtype, device="meta"))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_default_dtype_is_float64(name):
    call, _ = GENERATORS[name]
    assert call(0)[0].dtype == torch.float64


@pytest.mark.parametrize("name", sorted(GENERATORS))
@FAST
@given(seed=seeds)
def test_generators_are_deterministic(name, seed):
    call, _ = GENERATORS[name]
    a, b, c = call(seed), call(seed), call(seed + 1)
    for ta, tb in zip(a, b, strict=True):
        assert torch.equal(ta, tb)  # bitwise identical
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_leave_global_rng_alone(name):
    call, _ = GENERATORS[name]
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    call(5)
    assert torch.equal(torch.rand(3), expected_t)
    assert np.array_equal(np.random.rand(3), expected_np)


# --------------------------------------------------------------------------- 2-D toys


@FAST
@given(n=st.integers(1, 301), seed=seeds)
def test_two_moons_and_circles_class_balance(n, seed):
    for fn in (data.two_moons, data.circles):
        X, y = fn(n, seed=seed)
        assert X.shape == (n, 2)
        assert int((y == 0).sum()) == n // 2
        assert int((y == 1).sum()) == n - n // 2
        assert set(y.tolist()) <= {0, 1}


def test_two_moons_geometry_without_noise():
    X, y = data.two_moons(200, noise=0.0, seed=3)
    outer, inner = X[y == 0], X[y == 1]
    assert torch.allclose(outer.norm(dim=1), torch.ones(100, dtype=X.dtype), atol=1e-12)
    assert bool((outer[:, 1] >= -1e-12).all())  # upper half circle
    centre = torch.tensor([1.0, 0.5], dtype=X.dtype)
    assert torch.allclose((inner - centre).norm(dim=1), torch.ones(100, dtype=X.dtype), atol=1e-12)
    assert bool((inner[:, 1] <= 0.5 + 1e-12).all())  # lower half circle


def test_two_moons_noise_is_jitter_of_given_std():
    clean, y0 = data.two_moons(4000, noise=0.0, seed=1)
    noisy, y1 = data.two_moons(4000, noise=0.2, seed=1)
    assert torch.equal(y0, y1)  # same shuffle; only the jitter differs
    resid = noisy - clean
    # sample std of 8000 N(0, 0.2^2) values is within 0.2 * (1 +- 0.05) with overwhelming prob.
    assert abs(float(resid.std()) - 0.2) < 0.01


@FAST
@given(n=st.integers(2, 200), factor=st.floats(0.01, 0.99), seed=seeds)
def test_circles_radii_exact_without_noise(n, factor, seed):
    X, y = data.circles(n, factor=factor, noise=0.0, seed=seed)
    r = X.norm(dim=1)
    assert torch.allclose(r[y == 0], torch.ones_like(r[y == 0]), rtol=0, atol=1e-12)
    assert torch.allclose(r[y == 1], torch.full_like(r[y == 1], factor), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- mixtures


def _min_pairwise(points: torch.Tensor) -> float:
    dist = torch.cdist(points, points)
    k = points.shape[0]
    return float(dist[torch.triu_indices(k, k, offset=1).unbind()].min())


@FAST
@given(k=st.integers(2, 8), d=st.integers(1, 6), sep=st.floats(0.1, 50.0), seed=seeds)
def test_mixture_min_pairwise_mean_distance_equals_sep(k, d, sep, seed):
    means = data.gaussian_mixture_means(k=k, d=d, sep=sep, seed=seed)
    assert means.shape == (k, d)
    assert math.isclose(_min_pairwise(means), sep, rel_tol=1e-12)


@FAST
@given(n=st.integers(1, 100), k=st.integers(2, 6), d=st.integers(1, 4), seed=seeds)
def test_mixture_samples_sit_on_its_means_when_std_is_zero(n, k, d, seed):
    X, y = data.gaussian_mixture(n, k=k, d=d, sep=2.5, std=0.0, seed=seed)
    means = data.gaussian_mixture_means(k=k, d=d, sep=2.5, seed=seed)
    assert torch.equal(X, means[y])
    counts = torch.bincount(y, minlength=k)
    assert counts.numel() == k  # labels in 0..k-1
    assert int(counts.max() - counts.min()) <= 1  # balanced


def test_mixture_std_controls_spread():
    X, y = data.gaussian_mixture(6000, k=3, d=2, sep=4.0, std=0.5, seed=2)
    means = data.gaussian_mixture_means(k=3, d=2, sep=4.0, seed=2)
    resid = X - means[y]
    assert abs(float(resid.std()) - 0.5) < 0.02  # 12000 draws: std error ~0.003


# --------------------------------------------------------------------------- regression


@FAST
@given(n=st.integers(1, 40), d=st.integers(1, 40), data_=st.data(), seed=seeds)
def test_sparse_regression_support_and_noiseless_labels(n, d, data_, seed):
    k = data_.draw(st.integers(0, d))
    X, y, w = data.sparse_regression(n, d, k=k, noise=0.0, seed=seed)
    assert int((w != 0).sum()) == k
    nz = w[w != 0].abs()
    assert bool(((nz >= 1) & (nz < 2)).all())
    torch.testing.assert_close(y, X @ w, rtol=0, atol=1e-12)


def test_sparse_regression_noise_and_signs():
    X, y, w = data.sparse_regression(5000, 50, k=20, noise=0.3, seed=4)
    resid = y - X @ w
    assert abs(float(resid.std()) - 0.3) < 0.02  # 5000 draws: std error ~0.003
    assert bool((w > 0).any()) and bool((w < 0).any())  # both signs occur (P(fail) = 2^-19)
    assert abs(float(X.mean())) < 0.01 and abs(float(X.std()) - 1) < 0.01  # standard normal


# --------------------------------------------------------------------------- matrices


@FAST
@given(m=st.integers(1, 12), n=st.integers(1, 12), data_=st.data(), seed=seeds)
def test_low_rank_rank_and_singular_values(m, n, data_, seed):
    r = data_.draw(st.integers(1, min(m, n)))
    s = data_.draw(st.lists(st.floats(0.1, 100.0), min_size=r, max_size=r))
    M = data.low_rank(m, n, r, singular_values=s, seed=seed)
    assert M.shape == (m, n)
    assert int(torch.linalg.matrix_rank(M)) == r
    sv = torch.linalg.svdvals(M)[:r]
    expected = torch.tensor(sorted(s, reverse=True), dtype=torch.float64)
    torch.testing.assert_close(sv, expected, rtol=1e-10, atol=0)


def test_low_rank_default_singular_values_are_ones():
    M = data.low_rank(20, 15, 4, seed=7)
    sv = torch.linalg.svdvals(M)
    torch.testing.assert_close(sv[:4], torch.ones(4, dtype=torch.float64), rtol=1e-12, atol=0)
    assert float(sv[4:].max()) < 1e-12
    # M M^T is the orthogonal projector onto a random 4-dim subspace: idempotent, trace 4
    P = M @ M.T
    torch.testing.assert_close(P @ P, P, rtol=0, atol=1e-12)
    assert math.isclose(float(P.trace()), 4.0, rel_tol=1e-12)


def test_low_rank_accepts_tensor_singular_values():
    s = torch.tensor([1.0, 3.0, 2.0])
    sv = torch.linalg.svdvals(data.low_rank(5, 5, 3, singular_values=s))
    torch.testing.assert_close(sv[:3], torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_mask_frequency_close_to_p(p):
    m, n = 300, 200
    mask = data.matrix_completion_mask(m, n, p=p, seed=11)
    assert mask.dtype == torch.bool and mask.shape == (m, n)
    freq = float(mask.double().mean())
    # 5 standard errors of a Binomial(mn, p) frequency: fails with probability < 1e-6
    assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / (m * n))


def test_mask_full_observation_and_determinism():
    assert bool(data.matrix_completion_mask(4, 6, p=1.0).all())
    a = data.matrix_completion_mask(30, 30, p=0.5, seed=1)
    assert torch.equal(a, data.matrix_completion_mask(30, 30, p=0.5, seed=1))
    assert not torch.equal(a, data.matrix_completion_mask(30, 30, p=0.5, seed=2))
    assert data.matrix_completion_mask(3, 3, p=0.5, device="meta").device.type == "meta"


# --------------------------------------------------------------------------- validation


BAD_CALLS = [
    (lambda: data.two_moons(-3), r"n must be an integer >= 1, got -3"),
    (lambda: data.two_moons(0), r"n must be an integer >= 1"),
    (lambda: data.two_moons(2.5), r"n must be an integer"),
    (lambda: data.two_moons(True), r"n must be an integer"),
    (lambda: data.two_moons(10, noise=-0.1), r"noise must lie in \[0, inf\), got -0.1"),
    (lambda: data.two_moons(10, noise=float("nan")), r"noise must be a finite number"),
    (lambda: data.two_moons(10, seed=-1), r"seed must be an integer >= 0"),
    (lambda: data.two_moons(10, dtype=torch.int64), r"dtype must be a real floating"),
    (lambda: data.circles(10, factor=1.0), r"factor must lie in \(0, 1\), got 1"),
    (lambda: data.circles(10, factor=0.0), r"factor must lie in \(0, 1\), got 0"),
    (lambda: data.gaussian_mixture(10, k=1), r"k must be an integer >= 2"),
    (lambda: data.gaussian_mixture(10, d=0), r"d must be an integer >= 1"),
    (lambda: data.gaussian_mixture(10, sep=0.0), r"sep must lie in \(0, inf\)"),
    (lambda: data.gaussian_mixture(10, std=-1.0), r"std must lie in \[0, inf\)"),
    (lambda: data.sparse_regression(10, 3, k=5), r"k must be <= d"),
    (lambda: data.sparse_regression(10, 3, k=-1), r"k must be an integer >= 0"),
    (lambda: data.sparse_regression(10, 3, k=2, noise=-1), r"noise must lie in \[0, inf\)"),
    (lambda: data.low_rank(4, 3, 4), r"rank r must be <= min\(m, n\) = 3, got r=4"),
    (lambda: data.low_rank(4, 3, 0), r"r must be an integer >= 1"),
    (lambda: data.low_rank(4, 3, 2, singular_values=[1.0]), r"length r=2"),
    (lambda: data.low_rank(4, 3, 2, singular_values=[1.0, -1.0]), r"finite and > 0"),
    (lambda: data.low_rank(4, 3, 2, singular_values=[1.0, float("nan")]), r"finite and > 0"),
    (lambda: data.low_rank(4, 3, 2, singular_values="ab"), r"singular_values must be"),
    (
        lambda: data.low_rank(4, 3, 1, singular_values=[1e300], dtype=torch.float32),
        r"not finite .*: it overflows torch.float32",
    ),
    (lambda: data.matrix_completion_mask(3, 3, p=0.0), r"p must lie in \(0, 1\], got 0"),
    (lambda: data.matrix_completion_mask(3, 3, p=1.5), r"p must lie in \(0, 1\], got 1.5"),
    (lambda: data.matrix_completion_mask(0, 3, p=0.5), r"m must be an integer >= 1"),
    (lambda: data.digits(flatten="yes"), r"flatten must be True or False"),
    (lambda: data.available("imagenet"), r"name must be one of \('mnist', 'cifar10'\)"),
]


@pytest.mark.parametrize("call,message", BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_integers_are_accepted():
    X, y = data.two_moons(np.int64(8), seed=np.int32(2))
    assert torch.equal(X, data.two_moons(8, seed=2)[0])


# --------------------------------------------------------------------------- digits


def test_digits_flat_scaled():
    X, y = data.digits()
    assert X.shape == (1797, 64) and X.dtype == torch.float64
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert set(y.tolist()) == set(range(10))


def test_digits_images_unscaled_float32():
    X, y = data.digits(flatten=False, scale=False, dtype=torch.float32)
    assert X.shape == (1797, 1, 8, 8) and X.dtype == torch.float32
    assert float(X.max()) == 16.0
    assert torch.equal(X.reshape(1797, 64) / 16, data.digits(dtype=torch.float32)[0])


# --------------------------------------------------------------------------- local files


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.tobytes()


def _write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _fake_mnist(folder: Path, prefix: str, n: int, seed: int, gz: bool = False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make both ends of the range occur
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    _write(folder / f"{prefix}-images-idx3-ubyte", _idx_bytes(images, 2051), gz)
    _write(folder / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels, 2049), gz)
    return images, labels


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw", "."])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, monkeypatch, layout, gz):
    monkeypatch.setenv("DLTHEORY_DATA", str(tmp_path))
    images, labels = _fake_mnist(tmp_path / layout, "train", 5, seed=0, gz=gz)
    X, y = data.mnist()
    assert X.shape == (5, 1, 28, 28) and X.dtype == torch.float64
    assert y.dtype == torch.int64
    torch.testing.assert_close(X[:, 0], torch.from_numpy(images).double() / 255, rtol=0, atol=0)
    assert y.tolist() == labels.tolist()
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0


def test_mnist_test_split_flatten_root_override(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTHEORY_DATA", str(tmp_path / "elsewhere"))  # overridden by root=
    _fake_mnist(tmp_path / "mnist", "train", 4, seed=1)
    images, labels = _fake_mnist(tmp_path / "mnist", "t10k", 3, seed=2)
    X, y = data.mnist(train=False, root=tmp_path, flatten=True, dtype=torch.float32)
    assert X.shape == (3, 784) and X.dtype == torch.float32
    assert torch.equal(X, torch.from_numpy(images.reshape(3, 784)).float() / 255)
    assert y.tolist() == labels.tolist()
    assert data.available("mnist", root=tmp_path)
    assert not data.available("mnist")  # env folder is empty


def test_mnist_without_folder_says_where_and_never_downloads(monkeypatch):
    monkeypatch.delenv("DLTHEORY_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="DLTHEORY_DATA") as info:
        data.mnist()
    assert "never downloads" in str(info.value)
    assert not data.available("mnist") and not data.available("cifar10")


def test_mnist_missing_files_lists_names_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTHEORY_DATA", str(tmp_path))
    _fake_mnist(tmp_path / "mnist", "train", 2, seed=0)  # train only: test split missing
    with pytest.raises(FileNotFoundError) as info:
        data.mnist(train=False)
    msg = str(info.value)
    for needle in (
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        str(tmp_path / "mnist"),
        str(tmp_path / "MNIST" / "raw"),
        "never downloads",
        "digits()",
    ):
        assert needle in msg
    assert not data.available("mnist")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_wrong_magic_number(tmp_path, gz):
    _fake_mnist(tmp_path, "train", 3, seed=0)
    bad = np.zeros((3, 28, 28), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(bad, 2049), gz)  # labels magic
    with pytest.raises(ValueError, match="wrong IDX magic number 2049 .*expected 2051"):
        data.mnist(root=tmp_path)


def test_mnist_image_label_count_mismatch(tmp_path):
    _fake_mnist(tmp_path, "train", 3, seed=0)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(4), 2049))
    with pytest.raises(ValueError, match="3 images .* but 4 labels"):
        data.mnist(root=tmp_path)


def test_mnist_truncated_file(tmp_path):
    _fake_mnist(tmp_path, "train", 3, seed=0)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="size mismatch"):
        data.mnist(root=tmp_path)


def _cifar_batch(n: int, seed: int, key_type=bytes) -> dict:
    rng = np.random.default_rng(seed)
    k = (lambda s: s.encode()) if key_type is bytes else (lambda s: s)
    return {
        k("batch_label"): b"fake",
        k("data"): rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        k("labels"): rng.integers(0, 10, size=n).tolist(),
    }


def _fake_cifar(root: Path) -> tuple[list[dict], dict]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = [_cifar_batch(2, seed=i) for i in range(1, 6)]
    for i, batch in enumerate(train, start=1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test = _cifar_batch(3, seed=99, key_type=str)  # str keys are accepted too
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    return train, test


def test_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTHEORY_DATA", str(tmp_path))
    train, test = _fake_cifar(tmp_path)
    X, y = data.cifar10()
    assert X.shape == (10, 3, 32, 32) and X.dtype == torch.float64 and y.dtype == torch.int64
    raw = np.concatenate([b[b"data"] for b in train])
    expected = torch.from_numpy(raw.reshape(10, 3, 32, 32)).double() / 255
    assert torch.equal(X, expected)
    assert y.tolist() == sum((b[b"labels"] for b in train), [])
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0

    Xt, yt = data.cifar10(train=False, flatten=True, dtype=torch.float32)
    assert Xt.shape == (3, 3072) and Xt.dtype == torch.float32
    assert torch.equal(Xt, torch.from_numpy(test["data"]).float() / 255)
    assert yt.tolist() == test["labels"]
    assert data.available("cifar10")


def test_cifar10_missing_batch(tmp_path):
    _fake_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="missing: data_batch_3") as info:
        data.cifar10(root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)
    assert "never downloads" in str(info.value)
    assert not data.available("cifar10", root=tmp_path)
    assert data.cifar10(train=False, root=tmp_path)[0].shape == (3, 3, 32, 32)  # test intact


def test_cifar10_without_folder(monkeypatch):
    monkeypatch.delenv("DLTHEORY_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="DLTHEORY_DATA is not set"):
        data.cifar10(train=False)


@pytest.mark.parametrize(
    "batch,message",
    [
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "size mismatch"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"\[N, 3072\]"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "no key"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "labels must be"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_cifar10_malformed_batch(tmp_path, batch, message):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=message):
        data.cifar10(train=False, root=tmp_path)


# --------------------------------------------------------------------------- utilities


@FAST
@given(n=st.integers(2, 60), frac=st.floats(0.01, 0.99), seed=seeds)
def test_train_test_split_is_a_seeded_partition(n, frac, seed):
    X = torch.arange(n, dtype=torch.float64).unsqueeze(1).repeat(1, 3)
    y = torch.arange(n)
    n_test = math.ceil(frac * n)
    if not 1 <= n_test <= n - 1:
        with pytest.raises(ValueError, match="empty train or test set"):
            data.train_test_split(X, y, test_fraction=frac, seed=seed)
        return
    Xtr, ytr, Xte, yte = data.train_test_split(X, y, test_fraction=frac, seed=seed)
    assert Xte.shape == (n_test, 3) and Xtr.shape == (n - n_test, 3)
    assert sorted(ytr.tolist() + yte.tolist()) == list(range(n))  # a partition
    assert torch.equal(Xtr[:, 0].long(), ytr) and torch.equal(Xte[:, 0].long(), yte)  # aligned
    again = data.train_test_split(X, y, test_fraction=frac, seed=seed)
    assert all(torch.equal(a, b) for a, b in zip((Xtr, ytr, Xte, yte), again, strict=True))


def test_train_test_split_seed_changes_split_and_validates():
    X, y = torch.randn(100, 2, generator=torch.Generator().manual_seed(0)), torch.arange(100)
    a = data.train_test_split(X, y, seed=0)[3]
    b = data.train_test_split(X, y, seed=1)[3]
    assert a.shape == (25,) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="same length"):
        data.train_test_split(X, y[:-1])
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
        data.train_test_split(X, y, test_fraction=1.0)


def test_standardize_uses_train_statistics():
    g = torch.Generator().manual_seed(0)
    Xtr = 3.0 + 2.0 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    Xtr[:, 3] = 7.0  # constant feature
    Xte = torch.randn(50, 4, generator=g, dtype=torch.float64)
    Ztr, Zte = data.standardize(Xtr, Xte)
    torch.testing.assert_close(Ztr.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        Ztr[:, :3].std(0, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    assert bool((Ztr[:, 3] == 0).all())  # constant feature -> 0, not NaN
    mean, std = Xtr.mean(0), Xtr.std(0, correction=0)
    torch.testing.assert_close(Zte[:, :3], ((Xte - mean) / std)[:, :3], atol=1e-12, rtol=0)
    assert bool(torch.isfinite(Zte).all())
    assert torch.equal(data.standardize(Xtr), Ztr)  # single-argument form returns one tensor


def test_standardize_low_precision_is_refused():
    # float16 has too few digits for the library's checks (dltheory.validation.tensor);
    # float32 keeps the constant feature at 0, not NaN
    with pytest.raises(ValueError, match="X_train has dtype torch.float16"):
        data.standardize(torch.ones(10, 2, dtype=torch.float16))
    assert bool((data.standardize(torch.ones(10, 2, dtype=torch.float32)) == 0).all())


def test_standardize_rejects_bad_input():
    with pytest.raises(ValueError, match="X_train contains NaN"):
        data.standardize(torch.tensor([[float("nan")], [1.0]]))
    with pytest.raises(ValueError, match="same feature shape"):
        data.standardize(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="X_train must be a real floating tensor"):
        data.standardize(torch.zeros(4, 3, dtype=torch.int64))

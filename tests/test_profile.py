"""Tests for dltheory.profile: profile and device selection from the environment, seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dltheory import profile
from dltheory.profile import ProfileError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(profile.ENV_PROFILE, raising=False)
    monkeypatch.delenv(profile.ENV_DEVICE, raising=False)
    monkeypatch.setattr(profile._state, "seed", profile._state.seed)  # restored afterwards


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


# --------------------------------------------------------------------------- profile name

def test_default_profile_is_ci_without_cuda(no_cuda):
    assert profile.name() == "ci"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real CPU-only default")
def test_default_profile_on_this_cpu_machine():
    assert profile.name() == "ci"
    assert profile.device() == torch.device("cpu")


def test_default_profile_is_full_with_cuda(fake_cuda):
    assert profile.name() == "full"


@pytest.mark.parametrize("value", ["ci", "full", " full ", ""])
def test_profile_from_environment(monkeypatch, no_cuda, value):
    monkeypatch.setenv("DLTHEORY_PROFILE", value)
    assert profile.name() == (value.strip() or "ci")


def test_environment_overrides_cuda(monkeypatch, fake_cuda):
    monkeypatch.setenv("DLTHEORY_PROFILE", "ci")
    assert profile.name() == "ci"


@pytest.mark.parametrize("value", ["fast", "CI ", "Full", "ci,full", "0"])
def test_unknown_profile_raises(monkeypatch, value):
    monkeypatch.setenv("DLTHEORY_PROFILE", value)
    with pytest.raises(ProfileError, match=r"DLTHEORY_PROFILE=.* is not a profile; use one of "
                                           r"ci, full"):
        profile.name()
    with pytest.raises(ProfileError, match="DLTHEORY_PROFILE"):
        profile.pick(ci=1, full=2)


def test_profile_error_is_value_error():
    assert issubclass(ProfileError, ValueError)


def test_pick(monkeypatch, no_cuda):
    assert profile.pick(ci=10, full=1000) == 10
    monkeypatch.setenv("DLTHEORY_PROFILE", "full")
    assert profile.pick(ci=10, full=1000) == 1000
    sentinel = object()
    assert profile.pick(ci=None, full=sentinel) is sentinel


def test_pick_needs_keywords():
    with pytest.raises(TypeError):
        profile.pick(1, 2)


# --------------------------------------------------------------------------- device

def test_device_cpu_without_cuda(no_cuda):
    assert profile.device() == torch.device("cpu")


def test_device_cuda_when_available(fake_cuda):
    assert profile.device().type == "cuda"


@pytest.mark.parametrize("value", ["cpu", " cpu ", "cpu:0", "meta"])
def test_device_from_environment(monkeypatch, value):
    monkeypatch.setenv("DLTHEORY_DEVICE", value)
    assert profile.device() == torch.device(value.strip())


@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_cuda_device_without_cuda_raises(monkeypatch, no_cuda, value):
    monkeypatch.setenv("DLTHEORY_DEVICE", value)
    with pytest.raises(ProfileError, match=rf"DLTHEORY_DEVICE='{value}' but no CUDA device is "
                                           r"available"):
        profile.device()


@pytest.mark.parametrize("value", ["garbage", "gpu", "cuda:x"])
def test_garbage_device_raises(monkeypatch, value):
    monkeypatch.setenv("DLTHEORY_DEVICE", value)
    with pytest.raises(ProfileError, match=rf"DLTHEORY_DEVICE='{value}' is not a torch device"):
        profile.device()


def test_dtypes():
    assert profile.exact_dtype() is torch.float64
    assert profile.fast_dtype() is torch.float32


# --------------------------------------------------------------------------- seeding

def _draws(gen=None):
    return (torch.randn(4), np.random.rand(4), [random.random() for _ in range(4)],
            torch.randn(3, generator=gen) if gen is not None else None)


def test_same_seed_same_draws():
    g1 = profile.seed(123)
    a = _draws(g1)
    g2 = profile.seed(123)
    b = _draws(g2)
    assert torch.equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert torch.equal(a[3], b[3])


def test_different_seed_different_draws():
    profile.seed(1)
    a = _draws()
    profile.seed(2)
    b = _draws()
    assert not torch.equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])
    assert a[2] != b[2]


def test_seed_returns_seeded_cpu_generator():
    g = profile.seed(7)
    assert isinstance(g, torch.Generator)
    assert g.device == torch.device("cpu")
    assert g.initial_seed() == 7
    x = torch.randn(3, generator=g, dtype=torch.float64)
    ref = torch.randn(3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.equal(x, ref)
    # the returned generator is independent of the global one: using it leaves the global
    # stream where seed() put it
    profile.seed(7)
    expected_global = torch.randn(2)
    g = profile.seed(7)
    torch.randn(5, generator=g)
    assert torch.equal(torch.randn(2), expected_global)


def test_current_seed():
    profile.seed(42)
    assert profile.current_seed() == 42
    profile.seed(np.int64(43))
    assert profile.current_seed() == 43
    assert type(profile.current_seed()) is int


@pytest.mark.parametrize(("bad", "exc", "match"), [
    (-1, ValueError, r"seed must be in \[0, 2\*\*63\), got -1"),
    (True, TypeError, r"seed must be an int, got bool"),
    (np.bool_(True), TypeError, r"seed must be an int, got bool"),
    (1.0, TypeError, r"seed must be an int, got float"),
    ("1", TypeError, r"seed must be an int, got str"),
    (None, TypeError, r"seed must be an int, got NoneType"),
])
def test_bad_seed_rejected(bad, exc, match):
    profile.seed(5)
    with pytest.raises(exc, match=match):
        profile.seed(bad)
    assert profile.current_seed() == 5


def test_too_large_seed_rejected_clearly():
    with pytest.raises(ValueError, match="seed"):
        profile.seed(2**64)


def test_describe_keys(no_cuda):
    d = profile.describe()
    assert set(d) == {"profile", "device", "torch"}
    assert d["profile"] == "ci"
    assert d["device"] == "cpu"
    assert d["torch"] == torch.__version__


def test_describe_follows_environment(monkeypatch):
    monkeypatch.setenv("DLTHEORY_PROFILE", "full")
    monkeypatch.setenv("DLTHEORY_DEVICE", "meta")
    d = profile.describe()
    assert d["profile"] == "full" and d["device"] == "meta"

"""Scale profiles, devices, dtypes and seeding.

One chapter runs at two scales. The ``ci`` profile runs on a CPU in a few minutes on two
cores; the ``full`` profile uses the sizes of the papers' figures and expects a GPU. The
profile is ``full`` when a CUDA device is present and ``ci`` otherwise; the environment
variable ``DLTHEORY_PROFILE=ci|full`` overrides that choice.

Claims hold in both profiles; only sizes change. Exactness checks run in float64 on any
device (:func:`exact_dtype`).

>>> from dltheory import profile
>>> n = profile.pick(ci=200, full=20_000)
>>> gen = profile.seed(0)          # seeds python, numpy and torch; returns a torch.Generator
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError

PROFILES = ("ci", "full")
ENV_PROFILE = "DLTHEORY_PROFILE"
ENV_DEVICE = "DLTHEORY_DEVICE"


class ProfileError(InputError):
    """An invalid profile or device setting."""


@dataclass
class _State:
    seed: int | None = None


_state = _State()


def name() -> str:
    """The active profile: ``DLTHEORY_PROFILE`` if set, else ``full`` with a GPU, else ``ci``."""
    value = os.environ.get(ENV_PROFILE, "").strip()
    if value:
        if value not in PROFILES:
            raise ProfileError(
                f"{ENV_PROFILE}={value!r} is not a profile; use one of {', '.join(PROFILES)}"
            )
        return value
    return "full" if torch.cuda.is_available() else "ci"


def pick(*, ci, full):
    """Return ``ci`` or ``full`` according to the active profile.

    >>> pick(ci=10, full=1000)   # on a CPU-only machine without DLTHEORY_PROFILE
    10
    """
    return ci if name() == "ci" else full


def device() -> torch.device:
    """The device computations run on: ``DLTHEORY_DEVICE`` if set, else CUDA if present."""
    value = os.environ.get(ENV_DEVICE, "").strip()
    if value:
        try:
            dev = torch.device(value)
        except RuntimeError as err:
            raise ProfileError(f"{ENV_DEVICE}={value!r} is not a torch device: {err}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ProfileError(f"{ENV_DEVICE}={value!r} but no CUDA device is available")
        return dev
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def exact_dtype() -> torch.dtype:
    """The dtype of exactness checks: float64, on every device."""
    return torch.float64


def fast_dtype() -> torch.dtype:
    """The dtype of large statistical experiments: float32."""
    return torch.float32


def seed(value: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's generators (all devices) and return a generator.

    The returned ``torch.Generator`` lives on the CPU and is seeded with ``value``; pass it
    to the functions that take ``generator=`` to keep randomness explicit. The seed is
    remembered so that claims can record it (:func:`current_seed`).
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {value}")
    random.seed(value)
    np.random.seed(value % 2**32)  # numpy's legacy global generator takes 32-bit seeds
    torch.manual_seed(value)
    _state.seed = value
    gen = torch.Generator()
    gen.manual_seed(value)
    return gen


def current_seed() -> int | None:
    """The last seed given to :func:`seed` in this process, or None."""
    return _state.seed


def describe() -> dict:
    """The profile, device and library versions, as recorded in the ledger."""
    dev = device()
    desc = {
        "profile": name(),
        "device": str(dev),
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        desc["device_name"] = torch.cuda.get_device_name(dev)
    return desc


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (10^6 bytes), or None where the
    platform does not report it (no ``resource`` module, as on Windows).

    In a chapter's kernel this is the chapter's peak so far; every claim records it.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_unit = 1 if sys.platform == "darwin" else 1024     # bytes on macOS, KiB elsewhere
    return round(peak * per_unit / 1e6, 1)

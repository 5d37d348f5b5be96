"""Ratio benchmarks of ``dltheory.infinite``: the infinite-width NNGP and NTK of a depth-``L``
fully connected network on ``N`` inputs (``N = 4096``, ``L = 5``: four layer steps of the
recursion on ``N x N`` matrices).

Candidate: :func:`dltheory.infinite.nngp_ntk` (eager torch; each layer is about ten
elementwise passes, run on cache-sized row blocks that go through every layer before the
next block is read). Baseline: the same recursion with its layer step written as one
expression and fused by ``torch.compile`` (inductor, generated C++/OpenMP on CPU), compiled
once outside the timed region, called once per layer; the first layer (the Gram matrix) is
the same eager code in both. Target, the issue's: the candidate within 1.2x of the fused
step (``baseline / candidate >= 1/1.2``), *or* at most 25 ns (float64) / 15 ns (float32) per
kernel entry per layer on 2 CPU cores, which is ``max_candidate_s``. The time per entry per
layer is ``candidate_s / (N^2 (L - 1))``; it is printed in the description and the params.
"""

from __future__ import annotations

import math
import warnings

import torch

from benchmarks.harness import Benchmark
from dltheory import infinite

SEED = 20240611
TARGET = 1 / 1.2


def _fused_relu(k12, k1, k2, t12, sw2: float, sb2: float):
    s = k1.sqrt()[:, None] * k2.sqrt()[None, :]
    c = (k12 / s).clamp(-1.0, 1.0)
    th = math.pi - torch.arccos(c)
    knew = sw2 / (2 * math.pi) * ((1 - c * c).clamp_min(0.0).sqrt() * s + th * k12) + sb2
    return knew, knew + sw2 / (2 * math.pi) * th * t12


def _fused_erf(k12, k1, k2, t12, sw2: float, sb2: float):
    aa = (1 + 2 * k1).sqrt()[:, None] * (1 + 2 * k2).sqrt()[None, :]
    r = (2 * k12 / aa).clamp(-1.0, 1.0)
    knew = sw2 * (2 / math.pi) * torch.arcsin(r) + sb2
    return knew, knew + sw2 * (4 / math.pi) * t12 / (aa * (1 - r * r).sqrt())


_FUSED = {"relu": _fused_relu, "erf": _fused_erf}
_COMPILED: dict = {}


def _compiled(act: str):
    """``torch.compile`` of the fused step (None when compiling fails on this machine)."""
    if act not in _COMPILED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            compiled = torch.compile(_FUSED[act], dynamic=False)

        def fn(*args):
            # torch's compiler imports torch.jit internals that warn about their own
            # deprecation on first use; that is not this benchmark's business
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return compiled(*args)

        try:
            probe = torch.ones(2, 2, dtype=torch.float64)
            fn(probe, probe[0], probe[0], probe, 1.0, 0.1)
            _COMPILED[act] = fn
        except Exception:  # noqa: BLE001 - no compiler here: fall back to the eager expression
            _COMPILED[act] = None
    return _COMPILED[act]


#: The issue's absolute alternative, seconds per kernel entry per layer.
NS_PER_ENTRY = {torch.float64: 25e-9, torch.float32: 15e-9}


def _diag_next(act: str, k, sw2: float, sb2: float):
    if act == "relu":
        return sw2 * k / 2 + sb2
    return sw2 * (2 / math.pi) * torch.arcsin(2 * k / (1 + 2 * k)) + sb2


def _one(act: str, device: str, dtype, n: int, depth: int) -> Benchmark:
    sw2, sb2 = 1.5, 0.1
    entries = n * n * (depth - 1)
    # max |difference| relative to max |entry| (entries near 0 come from cancellation
    # between the arcsine / arccos term and sigma_b^2, so entrywise relative errors mislead)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    cache: dict = {}

    def state():
        """Inputs built on first use (discovery stays cheap), and the fused step."""
        if not cache:
            gen = torch.Generator().manual_seed(SEED)
            cache["X"] = torch.randn(n, 32, generator=gen, dtype=torch.float64).to(
                device=device, dtype=dtype)
            compiled = _compiled(act)
            cache["fused"] = compiled if compiled is not None else _FUSED[act]
        return cache["X"], cache["fused"]

    def candidate():
        X, _ = state()
        return infinite.nngp_ntk(X, act=act, sw2=sw2, sb2=sb2, depth=depth)

    def baseline():
        X, fused = state()
        k12 = infinite.nngp_ntk(X, act=act, sw2=sw2, sb2=sb2, depth=1).nngp
        k1 = k12.diagonal().clone()
        t12 = k12
        for _ in range(depth - 1):
            k12, t12 = fused(k12, k1, k1, t12, sw2, sb2)
            k1 = _diag_next(act, k1, sw2, sb2)
        return k12, t12

    def check():
        kc, tc = candidate()
        kb, tb = baseline()
        off = ~torch.eye(n, dtype=torch.bool, device=kc.device)
        ek = ((kc - kb).abs()[off].max() / kb.abs().max()).item()
        et = ((tc - tb).abs()[off].max() / tb.abs().max()).item()
        if not (ek <= tol and et <= tol):
            raise AssertionError(f"{act}: max difference / max entry: K {ek:.3g}, "
                                 f"Theta {et:.3g} > {tol:.3g}")

    limit = NS_PER_ENTRY.get(dtype)
    return Benchmark(
        name=f"infinite.nngp_ntk.{act}",
        description=(f"NNGP+NTK, {act}, N = {n}, depth {depth}; baseline: the layer step "
                     f"fused by torch.compile (eager if compiling fails), once per layer; "
                     f"ns per entry per layer = candidate_s / ({n}^2 * {depth - 1}) * 1e9"),
        candidate=candidate, baseline=baseline, check=check, min_speedup=TARGET,
        device=device, params={"n": n, "depth": depth, "act": act, "entries": entries},
        max_candidate_s=None if limit is None else limit * entries,
    )


def benchmarks(device: str, dtype=torch.float64, *, n: int = 4096,
               depth: int = 5) -> list[Benchmark]:
    return [_one(act, device, dtype, n, depth) for act in infinite.ACTIVATIONS]

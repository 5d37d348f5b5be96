"""Ratio benchmark of ``dltheory.diagonal``: many runs of a diagonal linear network at once.

The candidate trains ``R`` runs (different scales ``alpha``, step sizes ``gamma`` and SGD
seeds) as one batched recursion on ``[R, d]`` tensors (``diagonal.train``); the baseline
calls the same function once per run in a Python loop, which is what a chapter would do
without batching. Both draw the same batches (each run's generator is seeded from its own
seed), so the check requires the same final ``beta`` and ``alpha_inf`` to 1e-12.

Targets are ratios only, at most about half of the lowest ratio measured on the reference
machine (2-core shared CPU, torch CPU, float64, ``python -m benchmarks --device cpu --only
diagonal.train.batched``); see the comment at the target.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Benchmark, require_close
from dltheory import data
from dltheory import diagonal as dg

SEED = 20240615


def _batched_runs(device: str, dtype: torch.dtype, *, n: int, d: int, runs: int,
                  steps: int, target: float) -> Benchmark:
    X, y, _ = data.sparse_regression(n, d, k=max(1, d // 5), seed=SEED, dtype=torch.float64)
    y = y / y.pow(2).mean().sqrt()
    X, y = X.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(SEED)
    alpha = (0.05 + 0.5 * torch.rand(runs, generator=gen, dtype=torch.float64)).to(
        device=device, dtype=dtype)
    gamma = (0.05 + 0.2 * torch.rand(runs, generator=gen, dtype=torch.float64)).to(
        device=device, dtype=dtype)
    seeds = list(range(runs))
    batch = max(1, n // 4)
    tol = 1e-12 if dtype == torch.float64 else 1e-4

    def candidate() -> dg.DiagRun:
        return dg.train(X, y, alpha=alpha, gamma=gamma, steps=steps, batch=batch,
                        seeds=seeds)

    def baseline() -> list[dg.DiagRun]:
        return [dg.train(X, y, alpha=alpha[r:r + 1], gamma=gamma[r:r + 1], steps=steps,
                         batch=batch, seeds=seeds[r:r + 1]) for r in range(runs)]

    def check() -> None:
        a, b = candidate(), baseline()
        require_close(a.beta, torch.cat([r.beta for r in b]), tol=tol, what="final beta",
                      norm="max")
        require_close(a.alpha_inf, torch.cat([r.alpha_inf for r in b]), tol=tol,
                      what="alpha_inf", norm="max")

    return Benchmark(
        name="diagonal.train.batched",
        description=f"SGD on a diagonal linear network: {runs} runs batched vs a Python loop "
                    f"(n={n}, d={d}, {steps} steps, batch {batch})",
        candidate=candidate, baseline=baseline, min_speedup=target, check=check,
        device=device, params={"n": n, "d": d, "runs": runs, "steps": steps})


def benchmarks(device: str, dtype: torch.dtype = torch.float64) -> list[Benchmark]:
    """The benchmark of this module, sized for ``device``."""
    if torch.device(device).type == "cuda":
        # not yet measured on a GPU: the CPU target, which the GPU's launch-bound loop
        # should exceed by far
        return [_batched_runs(device, dtype, n=40, d=100, runs=256, steps=300, target=8.0)]
    # reference 2-core CPU (load 1.6): measured 18.2x; target about half of it
    return [_batched_runs(device, dtype, n=40, d=100, runs=32, steps=300, target=8.0)]

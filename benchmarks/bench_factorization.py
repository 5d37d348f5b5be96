"""Ratio benchmark of ``dltheory.factorization``: deep matrix factorization over many step
sizes at once.

The candidate trains ``R`` runs of the 2 x 2 completion problem of Razin & Cohen (2020), one
step size each (the same balanced small initialization), as one batched recursion on
``[R, L, 2, 2]`` arrays (``factorization.train_matrix``); the baseline calls the same
function once per step size in a Python loop, which is what a chapter would do without
batching. The check requires the same final end-to-end matrices to 1e-12.

Targets are ratios only, at most about half of the lowest ratio measured on the reference
machine (2-core shared CPU, ``python -m benchmarks --device cpu --only
factorization.train_matrix.batched``); see the comment at the target.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Benchmark, require_close
from dltheory import factorization as fz

SEED = 20240615


def _batched_lrs(device: str, dtype: torch.dtype, *, runs: int, depth: int, steps: int,
                 target: float) -> Benchmark:
    tgt, mask = fz.razin_cohen_problem(dtype=dtype, device=device)
    f0 = fz.small_init(depth, 1e-2, [SEED], dtype=dtype, device=device).expand(
        runs, -1, -1, -1).contiguous()
    lrs = torch.logspace(-3.5, -2.5, runs, dtype=dtype, device=device)

    def candidate() -> fz.MatrixRun:
        return fz.train_matrix(f0, tgt, mask, lr=lrs, steps=steps, every=steps)

    def baseline() -> list[fz.MatrixRun]:
        return [fz.train_matrix(f0[r:r + 1], tgt, mask, lr=lrs[r:r + 1], steps=steps,
                                every=steps) for r in range(runs)]

    def check() -> None:
        a, b = candidate(), baseline()
        require_close(a.W, torch.cat([r.W for r in b]), tol=1e-12, what="final W",
                      norm="max")

    return Benchmark(
        name="factorization.train_matrix.batched",
        description=f"GD on a depth-{depth} factorization of the 2 x 2 completion problem: "
                    f"{runs} step sizes batched vs a Python loop ({steps} steps)",
        candidate=candidate, baseline=baseline, min_speedup=target, check=check,
        device=device, params={"runs": runs, "depth": depth, "steps": steps})


def benchmarks(device: str, dtype: torch.dtype = torch.float64) -> list[Benchmark]:
    """The benchmark of this module, sized for ``device`` (the loop runs in NumPy on the
    CPU whatever the device, so the GPU gets the CPU's target)."""
    # reference 2-core CPU (shared, load 5.5): measured 29.3x; target about a third of it
    return [_batched_lrs(device, dtype, runs=64, depth=3, steps=500, target=10.0)]

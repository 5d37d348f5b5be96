"""Ratio benchmark of ``dltheory.flow.gd``: gradient descent over many step sizes at once.

The candidate runs ``R`` step sizes of GD on a small deep linear network as one batched
recursion on ``[R, p]`` (``flow.gd`` with ``lr [R]``: one forward and one backward pass
per step for all runs); the baseline calls ``flow.gd`` once per step size in a Python
loop, which is what a chapter would do without batching. The check requires the same
iterates to 1e-12 (float64).

Target: a ratio only, about half of the lowest measured on the reference machine (2-core
shared CPU, load about 5.6, float64); see the comment at the target.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Benchmark, require_close
from dltheory import flow as fl

SEED = 20240615


def _batched_lrs(device: str, dtype: torch.dtype, *, n: int, widths: list, runs: int,
                 steps: int, target: float) -> Benchmark:
    g = torch.Generator().manual_seed(SEED)
    X = torch.randn(n, widths[0], generator=g, dtype=torch.float64).to(device=device,
                                                                        dtype=dtype)
    y = torch.randn(n, widths[-1], generator=g, dtype=torch.float64).to(device=device,
                                                                         dtype=dtype)
    loss = fl.mlp_loss(X, y, widths, act="linear")
    th0 = loss.init(0.3, [0]).expand(runs, -1).contiguous()
    # step sizes 0.01 * K / k for k = K..2K-1, so that T = 0.01 * K is a whole number of
    # steps of each: the runs take between `steps` and 2 * `steps` steps
    T = 0.01 * steps
    lrs = torch.tensor([T / k for k in range(steps, steps + runs)], dtype=dtype,
                       device=device)
    tol = 1e-12 if dtype == torch.float64 else 1e-4

    def candidate() -> torch.Tensor:
        return fl.gd(loss, th0, lr=lrs, times=[T])

    def baseline() -> list[torch.Tensor]:
        return [fl.gd(loss, th0[r:r + 1], lr=float(lrs[r]), times=[T]) for r in range(runs)]

    def check() -> None:
        require_close(candidate(), torch.cat(baseline(), dim=1), tol=tol, what="GD iterates",
                      norm="max")

    return Benchmark(
        name="flow.gd.batched_step_sizes",
        description=f"GD on a deep linear net {widths}: {runs} step sizes batched vs a "
                    f"Python loop (n={n}, {steps} to {steps + runs - 1} steps)",
        candidate=candidate, baseline=baseline, min_speedup=target, check=check,
        device=device, params={"n": n, "widths": widths, "runs": runs, "steps": steps})


def benchmarks(device: str, dtype: torch.dtype = torch.float64) -> list[Benchmark]:
    """The benchmark of this module, sized for ``device``."""
    if torch.device(device).type == "cuda":
        # not yet measured on a GPU: the CPU target
        return [_batched_lrs(device, dtype, n=128, widths=[16, 8, 8, 1], runs=64,
                             steps=100, target=4.0)]
    # reference 2-core shared CPU (load 6.7): one timed pair gave 7.5x (9.4x at steps=100);
    # target about half of it
    return [_batched_lrs(device, dtype, n=128, widths=[16, 8, 8, 1], runs=16, steps=20,
                         target=4.0)]

"""Ratio benchmarks of ``dltheory.landscape``: the exact Hessian of the loss in one layer.

* ``layer_hessian``: :func:`dltheory.landscape.layer_quadratic` (closed form: one forward,
  ``k`` backward passes, then ``H = 2 sum_i (J_i^T J_i) (x) (z~_i z~_i^T)`` as one matrix
  product of the stacked small factors) against :func:`torch.func.hessian` of the same
  loss as a function of the layer's flattened parameters. A 64x64 hidden layer (with bias,
  ``P = 64 * 65 = 4160``) of an MLP ``[64, 64, 64, 10]``, ``N = 256`` points, float64; the
  check is that the two Hessians agree to 1e-10 relative (Frobenius). Issue target: 20x.
* ``layer_hvp``: the matrix-free product :meth:`dltheory.landscape.Quadratic.hvp` against
  the dense ``H @ v``, on a 2048x2048 layer where a dense ``H`` would need
  ``(2048 * 2049)^2 * 8`` bytes ~ 1.4e14 (so the baseline is the autograd
  Hessian-vector product, double backward through the network; the check is that both
  agree to 1e-10). The memory of ``hvp`` is ``O(N (k out + q) + P)``, independent of
  ``P^2``: on CUDA the peak-memory ratio is reported.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Benchmark, require_close
from dltheory import landscape, nets

SEED = 0


def _is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def _setup(device: str, widths: list[int], n: int, layer: int):
    net = nets.mlp(widths, seed=SEED, bias_std=0.1).to(device).eval()
    gen = torch.Generator().manual_seed(SEED)
    X = torch.randn(n, widths[0], generator=gen, dtype=torch.float64).to(device)
    Y = torch.randn(n, widths[-1], generator=gen, dtype=torch.float64).to(device)
    info = landscape.layers(net)[layer]
    theta0 = landscape.layer_params(net, layer)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        T = theta.reshape(info.shape)
        params = {f"{info.path}.weight": T[:, :-1], f"{info.path}.bias": T[:, -1]}
        f = torch.func.functional_call(net, params, (X,))
        return ((f - Y) ** 2).sum()

    return net, X, Y, theta0, loss


def _hessian(device: str, *, width: int, n: int) -> Benchmark:
    net, X, Y, theta0, loss = _setup(device, [width, width, width, 10], n, 1)

    def candidate() -> torch.Tensor:
        return landscape.layer_quadratic(net, 1, X, Y).H

    def baseline() -> torch.Tensor:
        return torch.func.hessian(loss)(theta0)

    def check() -> None:
        with torch.no_grad():
            require_close(candidate(), baseline(), tol=1e-10,
                          what="closed-form H and torch.func.hessian")

    # Target: the 20x. Measured on the 2-core CPU (torch 2.13 CPU, float64, `python
    # -m benchmarks --device cpu --only layer_hessian [--threads 1]`): quiet machine, 2
    # threads, candidate 0.106 s, baseline 2.35 s, 22.1x; 1 thread with other jobs on the
    # cores, 22.5x-27.9x over 5 runs (0.16-0.25 s vs 3.8-5.7 s); with 2 threads under that
    # load the candidate's GEMMs stall and the ratio fell to 5.7x once. The candidate is
    # memory-bound: for each output row o one GEMM [out - o, N] @ [N, q^2] gives the blocks
    # o' >= o of H (half of the 8.9 GFLOP of the whole product), written straight into
    # theta's (o, j) order and mirrored; the earlier version (one GEMM in the (o, o', j, j')
    # order, then a permuting copy of all 138 MB of H) measured 15-17x on a quiet machine.
    # CUDA: not measured (no GPU).
    return Benchmark(
        name="layer_hessian",
        description=f"landscape.layer_quadratic (closed form, P = {theta0.numel()}) vs. "
                    f"torch.func.hessian of the loss, N = {n}",
        candidate=candidate, baseline=baseline, check=check, min_speedup=20.0,
        device=device,
        params={"widths": [width, width, width, 10], "layer": 1, "N": n,
                "P": theta0.numel(), "dtype": "float64"})


def _hvp(device: str, *, width: int, n: int) -> Benchmark:
    net, X, Y, theta0, loss = _setup(device, [width, width, 10], n, 0)
    q = landscape.layer_quadratic(net, 0, X, Y, dense=False)
    v = torch.randn(theta0.numel(), generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64).to(device)

    def candidate() -> torch.Tensor:
        return q.hvp(v)

    def baseline() -> torch.Tensor:
        # exact for the loss's Hessian only where the Gauss-Newton term is all of it: the
        # second derivative of f in the first layer of a ReLU net vanishes (fixed codes)
        return torch.func.jvp(torch.func.grad(loss), (theta0,), (v,))[1]

    def check() -> None:
        with torch.no_grad():
            require_close(candidate(), baseline(), tol=1e-10,
                          what="hvp and the autograd Hessian-vector product")

    # Reported, not a speed target of the issue: the point is the memory (no P^2 object);
    # target 1x (the matrix-free product is not slower than double backward).
    return Benchmark(
        name="layer_hvp",
        description=f"Quadratic.hvp (matrix-free, P = {theta0.numel()}, dense H would be "
                    f"{theta0.numel() ** 2 * 8:.2g} bytes) vs. autograd forward-over-reverse",
        candidate=candidate, baseline=baseline, check=check, min_speedup=1.0,
        device=device,
        params={"widths": [width, width, 10], "layer": 0, "N": n, "P": theta0.numel(),
                "dtype": "float64"})


def benchmarks(device: str, dtype: torch.dtype = torch.float64) -> list[Benchmark]:
    """The benchmarks of this module (float64 only: the check is an exactness check)."""
    if dtype != torch.float64:
        return []
    return [_hessian(device, width=64, n=256), _hvp(device, width=2048, n=256)]

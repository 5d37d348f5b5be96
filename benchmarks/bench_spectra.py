"""Ratio benchmarks of the singular-value computations of ``dltheory.perturbation``.

* ``batched_singular_values``: :func:`dltheory.perturbation.singular_values` on a batch
  ``[B, n, n]`` of layer matrices (one batched ``svdvals`` call on the device) against a
  Python loop of one ``torch.linalg.svdvals`` call per matrix. Check: the two agree to
  1e-12 relative to the largest singular value (float64; the same LAPACK/cuSOLVER
  routine, batched or not, differs only by rounding). On a CPU, LAPACK processes a batch
  one matrix at a time, so batching saves only the per-call overhead: it pays for many
  small matrices (``16384 x 4 x 4``, target 2x; at ``16 x 16`` the two are within ~1.3x of
  each other). On CUDA one batched cuSOLVER call replaces thousands of launches
  (``16384 x 32 x 32``, target 5x; not measured here: no GPU was available).
* ``hessian_condition_lanczos``: the condition number on its range of a layer's loss
  Hessian ``H`` (:func:`dltheory.landscape.layer_quadratic`) from Hessian-vector products
  only (:func:`dltheory.perturbation.range_condition_number`: Lanczos from a start in the
  range, ``steps`` = the rank bound ``N k``, never forming ``H``) against the dense route
  (form the ``P x P`` matrix, ``eigvalsh``). A hidden layer of an MLP
  ``[d, w, w, 10]`` (``P = w (w + 1)``) on ``N`` points. Check: the two condition numbers
  agree to 1e-6 relative (Lanczos is exact once the Krylov space is the range; the
  smallest eigenvalue on the range carries a rounding error ~ eps * kappa relative).
  Target: 2x.

Measured on the shared 2-core CPU (torch 2.13 CPU, float64), ``python -m benchmarks
--device cpu --threads 1 --only batched_singular_values --only
hessian_condition_lanczos``: 8.2x and 10.7x. With torch's default 2 threads on cores
shared with other jobs, the many small products of the Lanczos loop suffer from thread
contention (one run: 1.6x, another 6.4x); compare with ``--threads 1`` before concluding.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Benchmark
from dltheory import landscape, nets
from dltheory import perturbation as pt

SEED = 0


def _is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def _batched(device: str, dtype: torch.dtype, *, batch: int, n: int,
             target: float) -> Benchmark:
    gen = torch.Generator().manual_seed(SEED)
    A = (torch.randn(batch, n, n, generator=gen, dtype=torch.float64) / n ** 0.5).to(
        device=device, dtype=dtype)

    def candidate() -> torch.Tensor:
        return pt.singular_values(A)

    def baseline() -> torch.Tensor:
        return torch.stack([torch.linalg.svdvals(a) for a in A])

    def check() -> None:
        s, ref = candidate(), baseline()
        tol = (1e-12 if dtype == torch.float64 else 1e-5) * float(ref.max())
        err = float((s - ref).abs().max())
        if not err <= tol:
            raise AssertionError(f"batched and looped singular values differ by {err:.3g} "
                                 f"(> {tol:.3g})")

    return Benchmark(
        name="batched_singular_values",
        description=f"perturbation.singular_values on [{batch}, {n}, {n}] vs. a loop of "
                    "torch.linalg.svdvals",
        candidate=candidate, baseline=baseline, check=check, min_speedup=target,
        device=device, params={"batch": batch, "n": n, "dtype": str(dtype)})


def _hessian_condition(device: str, *, d: int, width: int, n: int, target: float
                       ) -> Benchmark:
    widths = [d, width, width, 10]
    net = nets.mlp(widths, seed=SEED, bias_std=0.1).to(device).eval()
    gen = torch.Generator().manual_seed(SEED)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)
    Y = torch.randn(n, 10, generator=gen, dtype=torch.float64).to(device)
    P = landscape.layers(net)[1].n_params
    steps = min(P, n * 10 + 5)                       # rank H <= N k

    def candidate() -> torch.Tensor:
        q = landscape.layer_quadratic(net, 1, X, Y, dense=False)
        return pt.range_condition_number(q.hvp, P, steps=steps,
                                         generator=torch.Generator().manual_seed(1),
                                         device=device)[0]

    def baseline() -> torch.Tensor:
        return landscape.layer_quadratic(net, 1, X, Y).condition_number()

    def check() -> None:
        k, ref = float(candidate()), float(baseline())
        if not abs(k - ref) <= 1e-6 * ref:
            raise AssertionError(f"Lanczos kappa {k:.10g} vs dense {ref:.10g}")

    return Benchmark(
        name="hessian_condition_lanczos",
        description=f"kappa of a layer Hessian on its range: Lanczos on hvp ({steps} steps) vs "
                    f"dense eigvalsh, P = {P}, N = {n}",
        candidate=candidate, baseline=baseline, check=check, min_speedup=target,
        device=device, params={"widths": widths, "layer": 1, "N": n, "P": P,
                               "steps": steps, "dtype": "float64"})


def benchmarks(device: str, dtype: torch.dtype = torch.float64, *,
               tiny: bool = False) -> list[Benchmark]:
    """The benchmarks of this module (``tiny=True``: test sizes, for the check only)."""
    if tiny:
        return [_batched(device, dtype, batch=8, n=5, target=1.0),
                _hessian_condition(device, d=8, width=8, n=4, target=1.0)]
    out = []
    if _is_cuda(device):
        out.append(_batched(device, dtype, batch=16384, n=32, target=5.0))
    else:
        out.append(_batched(device, dtype, batch=16384, n=4, target=2.0))
    if dtype == torch.float64:
        if _is_cuda(device):
            out.append(_hessian_condition(device, d=64, width=96, n=16, target=2.0))
        else:
            out.append(_hessian_condition(device, d=32, width=48, n=8, target=2.0))
    return out

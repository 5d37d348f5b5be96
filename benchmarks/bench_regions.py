"""Ratio benchmarks of ``dltheory.regions``: exact region enumeration on a segment and a plane.

* ``segment_regions``: :func:`dltheory.regions.on_segment` against dense sampling of the
  activation codes (:func:`dltheory.regions.sample_segment`) at the resolution that is
  guaranteed to find every region, one sample per ``1 / (shortest piece)``; the check is
  that this sampling finds exactly the exact count. The ratio grows with the number of
  regions and, above all, with the length of the shortest piece (which the sampling has to
  resolve): it is a property of the segment as much as of the code.
* ``segment_regions_long``: the same on a long segment (953 regions), against the same cuts
  by the general path (:func:`dltheory.cpa.trace` at every new point, which serves any CPA
  network); the check is that both find the same breakpoints (count, and 1e-12 in ``t``).
* ``plane_regions``: :func:`dltheory.regions.on_plane` against :func:`naive_plane`, the same
  exact partition computed one polygon and one unit at a time (a forward pass per polygon,
  numpy cuts carrying every unit's value along the edges); the check is that both find the
  same polygons (count, and areas to 1e-9).

Each benchmark's ``params`` carry ``regions`` and ``us_per_region``, the candidate's time per
region from a best-of-3 timing when the benchmark is built.

Absolute speed, measured on the 2-core reference CPU (torch 2.13 CPU, float64; issue
targets: <= 10 us/region on a segment for width <= 512, depth 3; <= 30 us/region on a plane
up to 1e5 regions):

* segment, MLP [16, w, w, w, 10] (a plain MLP: the roots of a site are forwarded from that
  site on; from width 320 on, the next layer's pre-activations at them come from the kinks
  of the site's activations, not from a product), bias std 0.1, segment of length 8 (440
  regions at w = 256, 953 at w = 512; min of 5 calls of ``on_segment``, repeated; the
  ``us_per_region`` of ``segment_regions_long`` is the w = 512 figure; the machine shared
  with other jobs, load ~1-2): w = 256
  8.9-14.1 us/region with 1 thread, 7.3-8.1 with 2 (the previous implementation 8.8-12.2
  and 7.0-8.3 in the same runs); w = 512 9.7-10.9 with 1 thread, 7.3-8.4 with 2 (previous:
  15.3-20.5 and 9.1-11.7). Of that, ``on_segment``'s checks and frozen copy of the network
  (a forward pass and a deepcopy) take ~2 us/region; the rest at w = 512 is about 2.3
  us/region of matrix products (a root of site k costs L - k - 2 products of 512 x 512),
  2 of kink sums, 1-1.5 of sign scans, the rest bookkeeping. ``segment_regions`` (181
  regions): 187x-221x with 1 thread (load ~3), target 50x; ``segment_regions_long`` (953
  regions): 1.6x-2.0x against the general path, target 1.25x.
* plane, MLP [2, 512, 512, 512, 10] (bias std 0.5) on [-10, 10]^2: 1,156,910 regions in
  54-97 s on 1 CPU thread (47-84 us/region: the cost per region grows with the width),
  peak RSS 1.1 GB, areas summing to the square's, Euler characteristic 1 (copies of a
  vertex within 1.0e-13 of the diameter, distinct vertices at least 1.3e-11 apart):
  ``python -m benchmarks.plane_scale --device cpu --threads 1`` (``--device cuda`` on a GPU;
  not measured, no GPU was lent).
* plane, MLP [2, 160, 160, 160, 10] on [-10, 10]^2: 106,640 regions in 1.43 s, 13.4
  us/region (1 thread; Euler characteristic 1, areas sum to the square's), peak RSS 458 MB;
  with ``budget=10**6`` (batches of polygons) 18.8 us/region, 350 MB. MLP [2, 128, 128,
  128, 10] on [-5, 5]^2: 64,842 regions, 8-12.5 us/region.
* plane, ConvNet (1, 8, 8) channels (8, 16) on a slice through three inputs: 52,776 regions
  in 4.5 s, 85 us/region (1 thread); over half of it is the forward passes of
  ``cpa.trace`` (convolutions, and copies of every site's pre-activations).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from benchmarks.harness import Benchmark
from dltheory import cpa, nets, regions

SEED = 0


def _is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def _best_of(fn, k: int = 3) -> float:
    best = math.inf
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ------------------------------------------------------------------------------- segment


def _segment(device: str, *, widths: list[int], length: float) -> Benchmark:
    net = nets.mlp(widths, seed=SEED, bias_std=0.1).to(device)
    gen = torch.Generator().manual_seed(SEED)
    x0 = torch.randn(widths[0], generator=gen, dtype=torch.float64)
    x1 = x0 + length * torch.randn(widths[0], generator=gen, dtype=torch.float64)
    x0, x1 = x0.to(device), x1.to(device)
    exact = regions.on_segment(net, x0, x1)
    # one sample per shortest piece: every piece then holds a sample (t = (i + 1/2) / n)
    n_samples = math.ceil(1.0 / float(exact.dt.min())) + 1

    def candidate() -> regions.Segment:
        return regions.on_segment(net, x0, x1)

    def baseline() -> int:
        return regions.sample_segment(net, x0, x1, n_samples)

    def check() -> None:
        found, count = baseline(), candidate().n_regions
        if found != count:
            raise AssertionError(f"dense sampling ({n_samples} points) found {found} regions, "
                                 f"exact enumeration {count}")

    us = _best_of(candidate) / exact.n_regions * 1e6
    # Measured on the 2-core CPU (torch 2.13 CPU; widths [16, 512, 512, 512, 10], seed 0,
    # length 0.45: 181 regions, shortest piece 2.6e-5 -> 37,861 samples; `python -m
    # benchmarks --device cpu --only segment_regions`, 5 runs, 2 threads and --threads 1):
    # candidate 4.2-8.1 ms, baseline 0.60-1.44 s, ratio 139x-200x  ->  target 50x (the
    # issue's target, below half of the lowest ratio). While other jobs load the 2 cores
    # the candidate, many small ops, stalls far more than the baseline's few large ones
    # (ratios down to 7x were seen with 2 threads; --threads 1 is robust to it). CUDA: not
    # measured (no GPU in that session); the sampling is one large batch, which a GPU
    # favours: target 5x, a conservative estimate.
    target = 5.0 if _is_cuda(device) else 50.0
    return Benchmark(
        name="segment_regions",
        description=f"regions.on_segment (exact, {exact.n_regions} regions, {us:.1f} "
                    f"us/region) vs. dense code sampling at the resolution that finds them "
                    f"all ({n_samples} points)",
        candidate=candidate, baseline=baseline, check=check, min_speedup=target,
        device=device,
        params={"widths": widths, "length": length, "regions": exact.n_regions,
                "samples": n_samples, "us_per_region": round(us, 2), "dtype": "float64"})


def _segment_long(device: str, *, widths: list[int], length: float) -> Benchmark:
    """A long segment (hundreds of regions): ``on_segment`` on a plain MLP (its fast path,
    the roots' next-layer pre-activations from the kinks) against the same exact cuts by
    the general path (``cpa.trace`` at every new point), which serves any CPA network."""
    net = nets.mlp(widths, seed=SEED, bias_std=0.1).to(device)
    general = torch.nn.Sequential(torch.nn.Identity(), net)
    gen = torch.Generator().manual_seed(SEED)
    x0 = torch.randn(widths[0], generator=gen, dtype=torch.float64)
    x1 = x0 + length * torch.randn(widths[0], generator=gen, dtype=torch.float64)
    x0, x1 = x0.to(device), x1.to(device)
    exact = regions.on_segment(net, x0, x1)

    def candidate() -> regions.Segment:
        return regions.on_segment(net, x0, x1)

    def baseline() -> regions.Segment:
        return regions.on_segment(general, x0, x1)

    def check() -> None:
        fast, slow = candidate().t, baseline().t
        if fast.numel() != slow.numel():
            raise AssertionError(f"fast path {fast.numel() - 1} regions, general path "
                                 f"{slow.numel() - 1}")
        gap = float((fast - slow).abs().max())
        if gap > 1e-12:   # float64 rounding of the roots, O(1e-14) measured
            raise AssertionError(f"breakpoints differ by {gap:.2e} > 1e-12")

    us = _best_of(candidate, 5) / exact.n_regions * 1e6
    # Measured on the 2-core CPU (torch 2.13 CPU; widths [16, 512, 512, 512, 10], seed 0,
    # length 8: 953 regions; `python -m benchmarks --device cpu --only segment_regions_long`):
    # ratio 1.7x-2.0x with --threads 1, 1.6x with 2 threads -> target 1.25x, a margin for
    # the shared machine. CUDA: not measured (no GPU in that session): target 1x.
    target = 1.0 if _is_cuda(device) else 1.25
    return Benchmark(
        name="segment_regions_long",
        description=f"regions.on_segment on a plain MLP (exact, {exact.n_regions} regions, "
                    f"{us:.1f} us/region) vs. the same cuts by the general path",
        candidate=candidate, baseline=baseline, check=check, min_speedup=target,
        device=device,
        params={"widths": widths, "length": length, "regions": exact.n_regions,
                "us_per_region": round(us, 2), "dtype": "float64"})


# --------------------------------------------------------------------------------- plane


def _split(Q: np.ndarray, F: np.ndarray, h: np.ndarray, eps: float):
    """Cut one convex polygon ``Q [V, 2]`` (values ``F [V, U]`` of the site's units at its
    vertices) along ``h = 0``: the sides ``h >= 0`` and ``h <= 0``, with their values."""
    pos, neg = [], []
    V = Q.shape[0]
    for a in range(V):
        b = (a + 1) % V
        if h[a] >= -eps:
            pos.append((Q[a], F[a]))
        if h[a] <= eps:
            neg.append((Q[a], F[a]))
        if (h[a] > eps and h[b] < -eps) or (h[a] < -eps and h[b] > eps):
            lam = h[a] / (h[a] - h[b])
            x = (Q[a] + lam * (Q[b] - Q[a]), F[a] + lam * (F[b] - F[a]))
            pos.append(x)
            neg.append(x)
    return [(np.array([p for p, _ in side]), np.array([f for _, f in side]))
            for side in (pos, neg)]


def naive_plane(net: torch.nn.Module, origin: torch.Tensor, u: torch.Tensor,
                v: torch.Tensor, bounds: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Naive baseline: the exact partition of a ReLU-type network's plane slice, one polygon
    at a time. For each site, each polygon's vertices are forwarded on their own, and the
    polygon is cut by each unit in turn (numpy), carrying all units' values to the new
    vertices by linear interpolation. Returns the polygons ``[V_i, 2]``."""
    smin, smax, tmin, tmax = bounds
    polys = [np.array([[smin, tmin], [smax, tmin], [smax, tmax], [smin, tmax]])]
    kinds = [s.kind for s in cpa.trace(net, origin[None])]
    if "max" in kinds:
        raise ValueError("naive_plane handles ReLU-type sites only")
    for k in range(len(kinds)):
        out = []
        for P in polys:
            st = torch.as_tensor(P, dtype=torch.float64, device=origin.device)
            X = origin + st[:, :1] * u + st[:, 1:] * v
            with torch.no_grad():
                F = cpa.trace(net, X)[k].pre.cpu().numpy()
            eps = 1e-12 * max(float(np.abs(F).max()), 1e-300)
            pieces = [(P, F)]
            for j in range(F.shape[1]):
                nxt = []
                for Q, G in pieces:
                    h = G[:, j]
                    if (h > eps).any() and (h < -eps).any():
                        nxt.extend(side for side in _split(Q, G, h, eps) if len(side[0]) >= 3)
                    else:
                        nxt.append((Q, G))
                pieces = nxt
            out.extend(Q for Q, _ in pieces)
        polys = out
    return polys


def _area(P: np.ndarray) -> float:
    x, y = P[:, 0], P[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _plane(device: str, *, widths: list[int], half: float) -> Benchmark:
    net = nets.mlp(widths, seed=SEED, bias_std=0.5).to(device)
    kw = {"dtype": torch.float64, "device": device}
    origin = torch.zeros(widths[0], **kw)
    u = torch.zeros(widths[0], **kw)
    v = torch.zeros(widths[0], **kw)
    u[0], v[1] = 1.0, 1.0
    bounds = (-half, half, -half, half)

    def candidate() -> regions.Plane:
        return regions.on_plane(net, origin, u, v, bounds)

    def baseline() -> list[np.ndarray]:
        return naive_plane(net, origin, u, v, bounds)

    def check() -> None:
        a, b = candidate(), baseline()
        if a.n_regions != len(b):
            raise AssertionError(f"on_plane found {a.n_regions} polygons, the naive "
                                 f"reference {len(b)}")
        area_a = np.sort(a.area().cpu().numpy())
        area_b = np.sort(np.array([_area(P) for P in b]))
        diff = float(np.abs(area_a - area_b).max())
        if not diff <= 1e-9 * (2 * half) ** 2:
            raise AssertionError(f"sorted polygon areas differ by {diff:.3g}")

    first = candidate()
    us = _best_of(candidate) / first.n_regions * 1e6
    # Measured on the 2-core CPU (torch 2.13 CPU; widths [2, 48, 48, 48, 10], seed 0,
    # [-0.75, 0.75]^2: 5,407 regions; `python -m benchmarks --device cpu --only
    # plane_regions`, 5 runs, 2 threads and --threads 1): candidate 59-77 ms, baseline
    # 1.49-1.85 s, ratio 24x-29x  ->  target 12x, half of the lowest ratio (the ratio grows
    # with the width: 41x at width 64, where the baseline takes 4 s). Under load on the 2
    # cores, 2 threads make the candidate stall as for segment_regions. CUDA: not measured
    # (no GPU in that session); the baseline is a forward pass per polygon and Python cuts,
    # so 10x is a conservative estimate.
    target = 10.0 if _is_cuda(device) else 12.0
    return Benchmark(
        name="plane_regions",
        description=f"regions.on_plane (vectorised, {first.n_regions} polygons, {us:.1f} "
                    "us/region) vs. the same exact cuts one polygon and one unit at a time",
        candidate=candidate, baseline=baseline, check=check, min_speedup=target,
        device=device,
        params={"widths": widths, "bounds": bounds, "regions": first.n_regions,
                "us_per_region": round(us, 2), "dtype": "float64"})


# ------------------------------------------------------------------------------- factory


def benchmarks(device: str, dtype: torch.dtype = torch.float64) -> list[Benchmark]:
    """The benchmarks of this module; none for a dtype other than float64 (exact enumeration
    is a float64 computation: ``regions`` refuses other networks)."""
    if dtype != torch.float64:
        return []
    return [_segment(device, widths=[16, 512, 512, 512, 10], length=0.45),
            _segment_long(device, widths=[16, 512, 512, 512, 10], length=8.0),
            _plane(device, widths=[2, 48, 48, 48, 10], half=0.75)]

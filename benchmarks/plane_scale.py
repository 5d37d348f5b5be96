"""Scale run of the plane enumeration: ``regions.on_plane`` on a slice with over a million
regions, with the exactness checks that still apply at that size.

    python -m benchmarks.plane_scale --device cuda            # the batched path on a GPU
    python -m benchmarks.plane_scale --device cpu --threads 1

Not a ratio benchmark (there is no baseline that finishes at this size): it prints the
number of regions, the time and time per region, the peak memory (CUDA:
``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set), and checks that
the polygons' areas sum to the rectangle's (relative error <= 1e-12) and that Euler's
formula holds (``V - E + F = 1``, with the vertex tolerance read off the gap between copies
of a vertex and distinct vertices, :meth:`dltheory.regions.Plane.vertices`). Exit status 1
when a check fails. With the defaults (MLP [2, 512, 512, 512, 10], He weights, bias standard
deviation 0.5, seed 0, on [-10, 10]^2) the partition has 1,156,910 regions.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from dltheory import nets, regions


def run(*, device: str, width: int, depth: int, half: float, seed: int,
        bias_std: float) -> dict:
    dev = torch.device(device)
    net = nets.mlp([2, *[width] * depth, 10], seed=seed, bias_std=bias_std).to(dev)
    kw = {"dtype": torch.float64, "device": dev}
    origin = torch.zeros(2, **kw)
    u, v = torch.tensor([1.0, 0.0], **kw), torch.tensor([0.0, 1.0], **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    pl = regions.on_plane(net, origin, u, v, (-half, half, -half, half))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    rect = (2 * half) ** 2
    area_err = abs(float(pl.area().sum()) - rect) / rect
    t1 = time.perf_counter()
    V, E, F = pl.graph()
    merge = pl.vertices
    return {
        "device": str(dev), "widths": [2, *[width] * depth, 10], "half": half, "seed": seed,
        "bias_std": bias_std, "threads": torch.get_num_threads(), "regions": pl.n_regions,
        "seconds": round(seconds, 2), "us_per_region": round(seconds / pl.n_regions * 1e6, 2),
        "peak_bytes": int(peak), "area_rel_error": area_err, "V": V, "E": E, "F": F,
        "euler": V - E + F, "vertex_spread": merge.spread,
        "vertex_separation": merge.separation, "graph_seconds": round(time.perf_counter() - t1, 2),
        "ok": bool(area_err <= 1e-12 and V - E + F == 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--half", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bias-std", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = run(device=a.device, width=a.width, depth=a.depth, half=a.half, seed=a.seed,
              bias_std=a.bias_std)
    if a.json:
        print(json.dumps(out))
    else:
        for k, val in out.items():
            print(f"{k:>18}: {val}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

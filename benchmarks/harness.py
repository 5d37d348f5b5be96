"""A tiny ratio-benchmark harness: candidate vs. baseline, measured in the same run.

A :class:`Benchmark` pairs a *candidate* (the library's hot path) with a *baseline* (a
naive way to compute the same thing) and a target ``min_speedup``: the benchmark passes
when ``baseline_time / candidate_time >= min_speedup``. Absolute timings depend on the
machine; the ratio, measured back to back on the same machine, is what is targeted. Where an
issue states an absolute alternative ("within 1.2x of X, or <= 25 ns per entry"), a benchmark
sets ``max_candidate_s`` and passes when either holds; the table says which one did.

Before anything is timed, the benchmark's ``check`` is run once: a speedup of a wrong
computation is worthless, so a failing check fails the benchmark.

Only the standard library and torch are used: ``time.perf_counter`` for the clock,
``torch.cuda.synchronize`` around every timed call on CUDA, warm-up calls, then the median
of interleaved repeats (a fast callable is timed several times per repeat, each call one
sample, so that its median is not at the mercy of a few stalls). On CUDA the peak-memory
ratio ``baseline_peak / candidate_peak`` (``torch.cuda.max_memory_allocated`` above what was
allocated before the call) is reported too, and checked against ``min_memory_ratio`` when
one is set.

Run ``python -m benchmarks --help`` (or ``python benchmarks/run.py --help``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = "benchmarks"
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Benchmark:
    """One ratio benchmark.

    ``candidate`` and ``baseline`` take no arguments (inputs are prepared by the factory,
    outside the timed region). ``check`` takes no arguments and raises (or returns
    ``False``) when the two do not compute the same thing. ``min_speedup`` is the target of
    ``baseline_time / candidate_time``; ``min_memory_ratio`` (CUDA only) the target of
    ``baseline_peak_bytes / candidate_peak_bytes``, reported but not enforced when ``None``.
    ``max_candidate_s``: an absolute alternative to the ratio (the candidate's median time
    in seconds); ``None`` (the default) when only the ratio counts.
    """

    name: str
    description: str
    candidate: Callable[[], object]
    baseline: Callable[[], object]
    min_speedup: float
    check: Callable[[], object] | None = None
    min_memory_ratio: float | None = None
    device: str = "cpu"
    params: dict = field(default_factory=dict)
    max_candidate_s: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"benchmark name must be a non-empty string, got {self.name!r}")
        if not (isinstance(self.min_speedup, int | float) and self.min_speedup > 0):
            raise ValueError(f"{self.name}: min_speedup must be positive, got "
                             f"{self.min_speedup!r}")
        if self.min_memory_ratio is not None and not self.min_memory_ratio > 0:
            raise ValueError(f"{self.name}: min_memory_ratio must be positive or None")
        if self.max_candidate_s is not None and not self.max_candidate_s > 0:
            raise ValueError(f"{self.name}: max_candidate_s must be positive or None")


@dataclass
class Result:
    """What :func:`measure` found. Times are medians in seconds (NaN when not timed)."""

    name: str
    candidate_s: float
    baseline_s: float
    target: float
    check_ok: bool = True
    check_error: str | None = None
    memory_ratio: float | None = None
    memory_target: float | None = None
    repeats: int = 0
    warmup: int = 0
    samples: tuple[int, int] = (0, 0)  # timed calls of candidate, baseline
    device: str = "cpu"
    params: dict = field(default_factory=dict)
    max_candidate_s: float | None = None

    @property
    def ratio(self) -> float:
        """``baseline_s / candidate_s`` (NaN when not timed, inf for a zero candidate time)."""
        if math.isnan(self.candidate_s) or math.isnan(self.baseline_s):
            return math.nan
        if self.candidate_s <= 0:
            return math.inf
        return self.baseline_s / self.candidate_s

    @property
    def memory_ok(self) -> bool:
        if self.memory_target is None or self.memory_ratio is None:
            return True
        return self.memory_ratio >= self.memory_target

    @property
    def ratio_ok(self) -> bool:
        return self.ratio >= self.target

    @property
    def absolute_ok(self) -> bool:
        """The candidate's time is within the absolute alternative (False when none is set)."""
        return self.max_candidate_s is not None and self.candidate_s <= self.max_candidate_s

    @property
    def passed(self) -> bool:
        """The check passed, the speed ratio meets its target (or the candidate's time its
        absolute alternative, when one is set), and memory its target (if set)."""
        return self.check_ok and (self.ratio_ok or self.absolute_ok) and self.memory_ok

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN and inf become ``None``, as JSON has neither)."""
        d = asdict(self)
        d.update(ratio=self.ratio, passed=self.passed)
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in d.items()}


def _is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def _sync(device: str) -> None:
    if _is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def require_close(a: torch.Tensor, b: torch.Tensor, *, tol: float, what: str,
                  norm: str = "fro") -> float:
    """For a benchmark's ``check``: the relative error of ``a`` against the reference ``b``
    (``"fro"``: ``|a - b|_F / |b|_F``; ``"max"``: ``max|a - b| / max|b|``); raises
    ``AssertionError`` naming ``what`` when it is above ``tol`` (or NaN)."""
    if norm == "fro":
        err = float((a - b).norm() / b.norm())
    elif norm == "max":
        err = float((a - b).abs().max() / b.abs().max())
    else:
        raise ValueError(f"norm must be 'fro' or 'max', got {norm!r}")
    if not err <= tol:
        raise AssertionError(f"{what} differ by {err:.3g} > {tol:.3g} (relative, {norm})")
    return err


def run_check(bench: Benchmark) -> str | None:
    """Run ``bench.check`` once; ``None`` if it passed, else a message saying why not."""
    if bench.check is None:
        return None
    try:
        out = bench.check()
    except Exception as err:  # noqa: BLE001 - any failure of the check fails the benchmark
        return f"{type(err).__name__}: {err}"
    if out is False:
        return "check returned False"
    return None


def _peak_bytes(fn: Callable[[], object], device: str) -> int:
    dev = torch.device(device)
    _sync(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    out = fn()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(dev) - before
    del out
    return max(int(peak), 1)


def measure(bench: Benchmark, *, repeats: int = 5, warmup: int = 3,
            clock: Callable[[], float] | None = None, round_s: float = 0.05,
            max_calls: int = 50) -> Result:
    """Check, warm up, then time candidate and baseline in ``repeats`` alternating rounds.

    In each round each callable is timed on its own: once, or, when its fastest warm-up call
    took less than ``round_s``, up to ``max_calls`` times (each call a sample) to fill about
    ``round_s`` seconds, so that a fast callable gets enough samples for a robust median.
    Returns the medians over all samples and the target. ``clock`` (default
    ``time.perf_counter``) is injectable for tests. If the check fails nothing is timed
    and the result fails.
    """
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not (isinstance(max_calls, int) and max_calls >= 1):
        raise ValueError(f"max_calls must be a positive integer, got {max_calls!r}")
    clock = time.perf_counter if clock is None else clock
    result = Result(name=bench.name, candidate_s=math.nan, baseline_s=math.nan,
                    target=float(bench.min_speedup), memory_target=bench.min_memory_ratio,
                    repeats=repeats, warmup=warmup, device=str(bench.device),
                    params=dict(bench.params), max_candidate_s=bench.max_candidate_s)
    error = run_check(bench)
    if error is not None:
        result.check_ok, result.check_error = False, error
        return result

    def timed(fn: Callable[[], object]) -> float:
        _sync(bench.device)
        t0 = clock()
        fn()
        _sync(bench.device)
        return clock() - t0

    def calls_per_round(estimate: float) -> int:
        if estimate <= 0 or math.isnan(estimate):
            return max_calls
        return max(1, min(max_calls, int(round_s / estimate)))

    est_c, est_b = [math.inf], [math.inf]  # warm-up times: estimates of one call
    for _ in range(warmup):
        est_c.append(timed(bench.candidate))
        est_b.append(timed(bench.baseline))
    k_c, k_b = calls_per_round(min(est_c)), calls_per_round(min(est_b))
    cand: list[float] = []
    base: list[float] = []
    for _ in range(repeats):  # interleaved, so that drift affects both alike
        cand.extend(timed(bench.candidate) for _ in range(k_c))
        base.extend(timed(bench.baseline) for _ in range(k_b))
    result.candidate_s = statistics.median(cand)
    result.baseline_s = statistics.median(base)
    result.samples = (len(cand), len(base))
    if _is_cuda(bench.device):
        result.memory_ratio = (_peak_bytes(bench.baseline, bench.device)
                               / _peak_bytes(bench.candidate, bench.device))
    return result


# ------------------------------------------------------------------------------- discovery


def bench_modules(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of the modules ``bench_*`` in the benchmarks package, sorted."""
    return sorted(f"{PACKAGE}.{m.name}" for m in pkgutil.iter_modules([str(package_dir)])
                  if m.name.startswith("bench_"))


def discover(device: str | torch.device, dtype: torch.dtype = torch.float64, *,
             only: Sequence[str] | None = None) -> list[Benchmark]:
    """Every benchmark of every ``bench_*`` module (each exposes ``benchmarks(device, dtype)``).

    ``only`` keeps the benchmarks with those names; an unknown name is an error.
    """
    found: list[Benchmark] = []
    for modname in bench_modules():
        module = importlib.import_module(modname)
        factory = getattr(module, "benchmarks", None)
        if not callable(factory):
            raise TypeError(f"{modname} has no function benchmarks(device, dtype)")
        found.extend(factory(str(device), dtype))
    names = [b.name for b in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate benchmark names: {dupes}")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"no benchmark named {unknown}; known: {names}")
        found = [b for b in found if b.name in set(only)]
    return found


# --------------------------------------------------------------------------------- report


def _fmt_s(t: float) -> str:
    return "-" if math.isnan(t) else f"{t:.4g}"


def format_table(results: Sequence[Result]) -> str:
    """A plain-text table: name, candidate s, baseline s, ratio, target, memory, verdict."""
    header = ["benchmark", "candidate s", "baseline s", "ratio", "target", "mem ratio",
              "calls", "result"]
    rows = [header]
    for r in results:
        mem = "-" if r.memory_ratio is None else f"{r.memory_ratio:.3g}x"
        if r.memory_target is not None and r.memory_ratio is not None:
            mem += f" (>= {r.memory_target:g})"
        verdict = "PASS" if r.passed else ("FAIL (check)" if not r.check_ok else "FAIL")
        if r.passed and not r.ratio_ok:
            verdict = f"PASS (candidate <= {r.max_candidate_s:.3g} s)"
        ratio = "-" if math.isnan(r.ratio) else f"{r.ratio:.3g}x"
        target = f">= {r.target:.3g}x"
        if r.max_candidate_s is not None:
            target += f" or <= {r.max_candidate_s:.3g} s"
        rows.append([r.name, _fmt_s(r.candidate_s), _fmt_s(r.baseline_s), ratio, target, mem,
                     f"{r.samples[0]}/{r.samples[1]}", verdict])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.check_error:
            lines.append(f"{r.name}: check failed: {r.check_error}")
    return "\n".join(lines)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the ratio benchmarks (candidate vs. baseline, same run); exit 1 if "
                    "any check fails or any ratio misses its target.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=default_device(),
                        help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed warm-up calls of each (the fastest sets the calls "
                             "per round)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    try:
        benches = discover(args.device, DTYPES[args.dtype], only=args.only)
    except ValueError as err:
        parser.error(str(err))
    if args.list:
        for b in benches:
            print(f"{b.name}: {b.description}")
        return 0
    print(f"device={args.device} dtype={args.dtype} repeats={args.repeats} "
          f"warmup={args.warmup} torch={torch.__version__} threads={torch.get_num_threads()}",
          flush=True)
    results = []
    for b in benches:
        print(f"  {b.name} {b.params} ...", flush=True)
        results.append(measure(b, repeats=args.repeats, warmup=args.warmup))
    print(format_table(results))
    if args.json:
        meta = {"device": args.device, "dtype": args.dtype, "repeats": args.repeats,
                "warmup": args.warmup, "torch": torch.__version__,
                "threads": torch.get_num_threads()}
        if _is_cuda(args.device):
            meta["device_name"] = torch.cuda.get_device_name()
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "results": [r.to_dict() for r in results]}, indent=2,
            default=str) + "\n")
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
        return 1
    return 0

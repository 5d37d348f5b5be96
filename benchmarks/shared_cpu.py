"""Shared-CPU benchmark: each hot path alone, then while CPU-bound processes load every core.

    python -m benchmarks.shared_cpu                      # the library as it is
    python -m benchmarks.shared_cpu --no-fair            # without its thread policy
    python -m benchmarks.shared_cpu --paths plane chapter --rounds 3 --json out.json

Each hot path runs in a fresh Python process with OpenMP's default wait policy (the
environment's ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` are removed, as on a reader's
machine), first alone and then while ``--busy`` CPU-bound processes (default: one per core)
run beside it; ``--rounds`` rounds alternate the two phases so that drift of the machine's
speed affects both alike. In a process the call is made once to warm up, then in blocks of
calls that fill about ``--block`` seconds; the time per call is the median over the blocks.
The slowdown of a path is its median loaded time over its median quiet time; the target is
at most ``--target`` (2.5) for every path. Proportional sharing of the cores between the
path's threads and the busy processes gives about 2. Exit status 1 when a path misses it.

``--no-fair`` runs the same code with the library's thread policy switched off (its count
of idle cores replaced by torch's thread count), to show what the policy
(:mod:`dltheory.threads`) is for.

The paths: exact regions on a plane (``regions.on_plane``, MLP [2, 128, 128, 128, 1], bias
standard deviation 0.5, 59,478 regions) and on a segment (``regions.on_segment``, MLP
[16, 256, 256, 256, 10], a segment of length 8), the infinite-width NNGP/NTK
(``infinite.nngp_ntk``, 1,024 points, depth 5), the structured empirical NTK
(``kernels.ntk``, MLP [16, 256, 256, 10], 256 points), and one whole chapter executed by
``python -m dltheory.runner`` in the ``ci`` profile (``--chapter``, by default Networks as
splines), timed from start to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

PATHS = ("plane", "segment", "infinite", "ntk", "chapter")
ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "book" / "splines" / "networks_as_splines.md"

_CHILD = r"""
import json, statistics, time
import torch
from dltheory import infinite, kernels, nets, regions, threads

if {no_fair}:
    threads.fair_count = lambda limit=None: torch.get_num_threads() if limit is None else limit
f64 = torch.float64
path = {path!r}
if path == "plane":
    net = nets.mlp([2, 128, 128, 128, 1], seed=0, dtype=f64, bias_std=0.5).eval()
    o, u, v = torch.zeros(2, dtype=f64), torch.eye(2, dtype=f64)[0], torch.eye(2, dtype=f64)[1]
    call = lambda: regions.on_plane(net, o, u, v, bounds=(-3, 3, -3, 3))
elif path == "segment":
    net = nets.mlp([16, 256, 256, 256, 10], seed=0, dtype=f64, bias_std=0.1).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, generator=g, dtype=f64)
    b = a + 8 * torch.nn.functional.normalize(torch.randn(16, generator=g, dtype=f64), dim=0)
    call = lambda: regions.on_segment(net, a, b)
elif path == "infinite":
    X = torch.randn(1024, 16, generator=torch.Generator().manual_seed(0), dtype=f64)
    call = lambda: infinite.nngp_ntk(X, act="relu", sw2=2.0, sb2=0.1, depth=5)
else:
    net = nets.mlp([16, 256, 256, 10], seed=0, dtype=f64).eval()
    X = torch.randn(256, 16, generator=torch.Generator().manual_seed(0), dtype=f64)
    call = lambda: kernels.ntk(net, X)
t0 = time.perf_counter()
call()
first = time.perf_counter() - t0
k = max(1, round({block} / max(first, 1e-6)))
per_call = []
for _ in range({blocks}):
    t0 = time.perf_counter()
    for _ in range(k):
        call()
    per_call.append((time.perf_counter() - t0) / k)
print(json.dumps({{"seconds": statistics.median(per_call), "calls": k * {blocks},
                  "threads": torch.get_num_threads()}}))
"""


def _env() -> dict:
    drop = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _time_path(path: str, *, no_fair: bool, block: float, blocks: int,
               own_session: bool) -> float:
    if path == "chapter":
        raise ValueError("use _time_chapter for the chapter path")
    code = _CHILD.format(path=path, no_fair=no_fair, block=block, blocks=blocks)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), check=False, start_new_session=own_session)
    if out.returncode != 0:
        raise RuntimeError(f"the {path} benchmark failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def _time_chapter(chapter: Path, *, own_session: bool) -> float:
    env = _env() | {"DLTHEORY_PROFILE": "ci"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dltheory.runner", str(chapter),
                          "--progress-every", "0"], capture_output=True, text=True, env=env,
                         check=False, start_new_session=own_session)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"the chapter {chapter} failed:\n{out.stdout[-2000:]}"
                           f"{out.stderr[-2000:]}")
    return seconds


_SPIN = """
import os
for _ in range({n} - 1):
    if os.fork() == 0:
        break
while True:
    pass
"""


class Busy:
    """``n`` CPU-bound processes for the duration of a ``with`` block: one job (a process
    and its forks, one process group), in a session of its own when ``own_session``, as a
    program started from another terminal is."""

    def __init__(self, n: int, *, own_session: bool = True) -> None:
        self.n = n
        self.own_session = own_session
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Busy:
        self.proc = subprocess.Popen([sys.executable, "-c", _SPIN.format(n=self.n)],
                                     start_new_session=self.own_session,
                                     process_group=None if self.own_session else 0)
        time.sleep(0.5)          # let them start spinning
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def measure(path: str, *, busy: int, rounds: int, no_fair: bool = False, block: float = 0.3,
            blocks: int = 5, chapter: Path = CHAPTER, sessions: bool = True) -> dict:
    """Median quiet and loaded seconds of one path over ``rounds`` alternating rounds
    (``sessions``: the busy job and the measured process each in a session of its own)."""
    def once() -> float:
        if path == "chapter":
            return _time_chapter(chapter, own_session=sessions)
        return _time_path(path, no_fair=no_fair, block=block, blocks=blocks,
                          own_session=sessions)

    quiet, loaded = [], []
    for _ in range(rounds):
        quiet.append(once())
        with Busy(busy, own_session=sessions):
            loaded.append(once())
    q, ld = statistics.median(quiet), statistics.median(loaded)
    return {"path": path, "quiet_s": q, "loaded_s": ld, "slowdown": ld / q,
            "quiet_all_s": quiet, "loaded_all_s": loaded, "busy": busy, "no_fair": no_fair,
            "sessions": sessions}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_cpu",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="busy processes beside the benchmark (default: one per core)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating quiet and loaded rounds per path (default 2)")
    parser.add_argument("--block", type=float, default=0.3,
                        help="seconds of calls per timed block (default 0.3)")
    parser.add_argument("--target", type=float, default=2.5, help="largest slowdown allowed")
    parser.add_argument("--no-fair", action="store_true",
                        help="switch the library's thread policy off (for comparison)")
    parser.add_argument("--one-session", action="store_true",
                        help="run the busy job and the measured process in this session")
    parser.add_argument("--chapter", type=Path, default=CHAPTER,
                        help="the chapter of the chapter path (default: Networks as splines)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.busy < 1:
        parser.error(f"--busy must be >= 1, got {args.busy}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if not args.block > 0:
        parser.error(f"--block must be > 0 seconds, got {args.block}")
    if not args.target > 1:
        parser.error(f"--target must be > 1, got {args.target}")
    if "chapter" in args.paths and not args.chapter.is_file():
        parser.error(f"--chapter: no chapter at {args.chapter}")
    if "chapter" in args.paths and args.no_fair:
        parser.error("--no-fair cannot reach a chapter's kernel; leave out the chapter path")
    print(f"shared CPU: {os.cpu_count()} cores, {args.busy} busy processes, "
          f"{args.rounds} rounds, thread policy {'off' if args.no_fair else 'on'}, "
          f"{'one session' if args.one_session else 'a session each'}", flush=True)
    results, missed = [], 0
    for path in args.paths:
        r = measure(path, busy=args.busy, rounds=args.rounds, no_fair=args.no_fair,
                    block=args.block, chapter=args.chapter, sessions=not args.one_session)
        r["ok"] = r["slowdown"] <= args.target
        missed += not r["ok"]
        results.append(r)
        print(f"{path:9s} quiet {r['quiet_s']:.4g} s, loaded {r['loaded_s']:.4g} s: slowdown "
              f"{r['slowdown']:.2f}x ({'met' if r['ok'] else 'MISSED'}, target <= "
              f"{args.target:g}x)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "results": results},
                                        indent=1))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

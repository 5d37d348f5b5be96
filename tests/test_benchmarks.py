"""Tests of the benchmark harness (benchmarks/): arithmetic, checks, discovery, runner.

No timing is asserted here: speed targets live in benchmarks/ as ratios measured in one run
(``python -m benchmarks``). Times below come from a fake clock.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package ``benchmarks`` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_dynamics, harness  # noqa: E402
from benchmarks.harness import Benchmark, Result, measure  # noqa: E402


class FakeClock:
    """A clock that only moves when a fake workload says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds) -> Callable[[], None]:
        """A workload that takes ``seconds`` (a number, or an iterator of numbers)."""
        it = iter(seconds) if not isinstance(seconds, int | float) else None

        def fn() -> None:
            self.now += next(it) if it is not None else seconds

        return fn


def fake_bench(clock: FakeClock, cand, base, *, target: float = 2.0, check=None,
               name: str = "fake") -> Benchmark:
    return Benchmark(name=name, description="fake workloads", candidate=clock.work(cand),
                     baseline=clock.work(base), min_speedup=target, check=check)


# ------------------------------------------------------------------------------ arithmetic


def test_ratio_is_baseline_over_candidate_from_a_fake_clock():
    clock = FakeClock()
    r = measure(fake_bench(clock, 0.5, 2.0, target=3.0), repeats=5, warmup=2, clock=clock)
    assert r.candidate_s == pytest.approx(0.5)
    assert r.baseline_s == pytest.approx(2.0)
    assert r.ratio == pytest.approx(4.0)
    assert r.target == 3.0 and r.check_ok and r.passed
    assert (r.repeats, r.warmup) == (5, 2)


def test_ratio_below_target_fails():
    clock = FakeClock()
    r = measure(fake_bench(clock, 1.0, 1.5, target=2.0), repeats=3, warmup=0, clock=clock)
    assert r.ratio == pytest.approx(1.5)
    assert r.check_ok and not r.passed


def test_medians_ignore_outliers_and_warmup_is_not_timed():
    clock = FakeClock()
    # candidate: 1 warm-up (1000 s, untimed), then 5 timed calls with one outlier
    cand = [1000.0, 1.0, 1.0, 50.0, 1.0, 1.0]
    base = [1000.0, 3.0, 3.0, 3.0, 90.0, 3.0]
    r = measure(fake_bench(clock, cand, base), repeats=5, warmup=1, clock=clock)
    assert (r.candidate_s, r.baseline_s) == (1.0, 3.0)
    assert r.ratio == pytest.approx(3.0) and r.passed


def test_fast_callables_get_more_samples_per_round():
    clock = FakeClock()
    # binary-exact durations, so that the fake clock's differences are exact too
    r = measure(fake_bench(clock, 0.0625, 1.0), repeats=3, warmup=1, clock=clock,
                round_s=0.25, max_calls=50)
    assert r.samples == (12, 3)  # 0.25 s / 0.0625 s = 4 candidate calls per round
    assert r.ratio == pytest.approx(16.0)
    r = measure(fake_bench(clock, 1e-6, 1.0), repeats=2, warmup=1, clock=clock, max_calls=7)
    assert r.samples == (14, 2)
    r = measure(fake_bench(clock, 1e-6, 1.0), repeats=2, warmup=0, clock=clock)
    assert r.samples == (2, 2)  # no warm-up, no estimate: one call per round


def test_result_arithmetic_and_json():
    r = Result(name="x", candidate_s=0.25, baseline_s=1.0, target=4.0)
    assert r.ratio == 4.0 and r.passed
    assert Result(name="x", candidate_s=0.0, baseline_s=1.0, target=4.0).ratio == math.inf
    untimed = Result(name="x", candidate_s=math.nan, baseline_s=math.nan, target=1.0)
    assert math.isnan(untimed.ratio) and not untimed.passed
    d = untimed.to_dict()
    assert d["ratio"] is None and d["candidate_s"] is None and d["passed"] is False
    json.dumps(d, allow_nan=False)


def test_memory_target_is_enforced_only_when_set():
    base = dict(name="x", candidate_s=1.0, baseline_s=2.0, target=1.0)
    assert Result(**base, memory_ratio=1.5).passed
    assert Result(**base, memory_ratio=1.5, memory_target=1.2).passed
    assert not Result(**base, memory_ratio=1.1, memory_target=1.2).passed


def test_absolute_alternative_passes_a_missed_ratio_only_when_set_and_met():
    base = dict(name="x", candidate_s=2e-8, baseline_s=1e-8, target=1 / 1.2)   # ratio 0.5
    assert not Result(**base).passed
    assert Result(**base, max_candidate_s=2.5e-8).passed
    assert not Result(**base, max_candidate_s=1.5e-8).passed
    assert not Result(**{**base, "candidate_s": math.nan}, max_candidate_s=1.0).passed
    failed_check = Result(**base, max_candidate_s=1.0, check_ok=False)
    assert not failed_check.passed
    table = harness.format_table([Result(**base, max_candidate_s=2.5e-8)])
    assert "or <= 2.5e-08 s" in table and "PASS (candidate <= 2.5e-08 s)" in table
    clock = FakeClock()
    r = measure(Benchmark(name="y", description="", candidate=clock.work(3.0),
                          baseline=clock.work(1.0), min_speedup=1.0,
                          max_candidate_s=3.5), repeats=2, warmup=0, clock=clock)
    assert r.ratio < 1.0 and r.max_candidate_s == 3.5 and r.passed
    with pytest.raises(ValueError, match="max_candidate_s"):
        Benchmark(name="x", description="", candidate=lambda: 0, baseline=lambda: 0,
                  min_speedup=1.0, max_candidate_s=0.0)


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"warmup": -1}])
def test_measure_rejects_bad_counts(kw):
    clock = FakeClock()
    with pytest.raises(ValueError):
        measure(fake_bench(clock, 1.0, 1.0), **{"repeats": 1, "warmup": 0, **kw})


def test_benchmark_rejects_bad_target():
    with pytest.raises(ValueError, match="min_speedup"):
        Benchmark(name="x", description="", candidate=lambda: 0, baseline=lambda: 0,
                  min_speedup=0)


# ----------------------------------------------------------------------------------- checks


def test_failing_check_fails_the_benchmark_and_nothing_is_timed():
    clock = FakeClock()
    calls = []

    def check():
        raise AssertionError("results differ by 1.0")

    bench = Benchmark(name="wrong", description="", candidate=lambda: calls.append("c"),
                      baseline=lambda: calls.append("b"), min_speedup=1.0, check=check)
    r = measure(bench, repeats=3, warmup=1, clock=clock)
    assert not r.check_ok and not r.passed
    assert "results differ by 1.0" in r.check_error
    assert calls == [] and math.isnan(r.ratio)
    assert "FAIL (check)" in harness.format_table([r])


def test_check_returning_false_fails_and_a_passing_check_runs_once():
    clock = FakeClock()
    r = measure(fake_bench(clock, 1.0, 9.0, check=lambda: False), repeats=1, warmup=0,
                clock=clock)
    assert not r.check_ok and not r.passed and "False" in r.check_error
    seen = []
    r = measure(fake_bench(clock, 1.0, 9.0, check=lambda: seen.append(1)), repeats=3,
                warmup=1, clock=clock)
    assert seen == [1] and r.passed


def test_a_wrong_candidate_is_caught_by_the_real_check(monkeypatch):
    """The least-squares check compares trajectories: perturb the library and it fails."""
    real = bench_dynamics.least_squares_gd

    def off_by_a_bit(X, y, *, lr, steps):
        return real(X, y, lr=lr * (1 + 1e-6), steps=steps)

    monkeypatch.setattr(bench_dynamics, "least_squares_gd", off_by_a_bit)
    bench = bench_dynamics._least_squares("cpu", torch.float64, n=8, d=20, steps=10)
    assert harness.run_check(bench) is not None


def test_require_close_measures_both_norms_and_names_the_pair():
    b = torch.tensor([1.0, -2.0, 2.0], dtype=torch.float64)
    a = b + torch.tensor([0.0, 0.0, 0.3], dtype=torch.float64)
    assert harness.require_close(a, b, tol=0.11, what="x") == pytest.approx(0.1)     # 0.3 / 3
    assert harness.require_close(a, b, tol=0.16, what="x", norm="max") == pytest.approx(0.15)
    with pytest.raises(AssertionError, match="the pair differ by 0.15 > 0.1"):
        harness.require_close(a, b, tol=0.1, what="the pair", norm="max")
    with pytest.raises(AssertionError):
        harness.require_close(a * math.nan, b, tol=1.0, what="x")
    with pytest.raises(ValueError, match="norm"):
        harness.require_close(a, b, tol=1.0, what="x", norm="l1")


# -------------------------------------------------------------------------------- discovery


def test_discovery_finds_bench_dynamics():
    assert "benchmarks.bench_dynamics" in harness.bench_modules()
    names = [b.name for b in harness.discover("cpu", torch.float64)]
    assert {"least_squares_gd", "gram_eigvalsh"} <= set(names)
    only = harness.discover("cpu", torch.float64, only=["gram_eigvalsh"])
    assert [b.name for b in only] == ["gram_eigvalsh"]
    with pytest.raises(ValueError, match="no benchmark named"):
        harness.discover("cpu", torch.float64, only=["nope"])


def test_every_benchmark_check_passes_on_cpu():
    """Each benchmark computes the same thing as its baseline, at the sizes benchmarked."""
    benches = bench_dynamics.benchmarks("cpu", torch.float64)
    assert benches
    for bench in benches:
        assert bench.check is not None, f"{bench.name} has no check"
        assert bench.min_speedup >= 1.0
        assert harness.run_check(bench) is None, bench.name


# ----------------------------------------------------------------------------------- runner


def test_runner_exit_status_and_json(monkeypatch, tmp_path, capsys):
    clock = FakeClock()
    good = fake_bench(clock, 1.0, 4.0, target=2.0, name="good")
    bad = fake_bench(clock, 1.0, 1.0, target=2.0, name="bad")
    real_measure = harness.measure
    monkeypatch.setattr(harness, "measure",
                        lambda b, **kw: real_measure(b, clock=clock, **kw))

    monkeypatch.setattr(harness, "discover", lambda device, dtype, only=None: [good])
    out = tmp_path / "r.json"
    assert harness.main(["--device", "cpu", "--repeats", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "good" in table and "PASS" in table and "4x" in table
    data = json.loads(out.read_text())
    assert data["meta"]["device"] == "cpu"
    assert data["results"][0]["ratio"] == pytest.approx(4.0)

    monkeypatch.setattr(harness, "discover", lambda device, dtype, only=None: [good, bad])
    assert harness.main(["--device", "cpu", "--repeats", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out


# ------------------------------------------------------------------------------ shared CPU


def test_shared_cpu_runs_a_path_quiet_and_loaded_and_writes_json(tmp_path, capsys):
    from benchmarks import shared_cpu

    out = tmp_path / "shared.json"
    status = shared_cpu.main(["--paths", "segment", "--rounds", "1", "--block", "0.02",
                              "--busy", "1", "--target", "1e9", "--json", str(out)])
    assert status == 0
    assert "segment" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())["results"]
    assert r["path"] == "segment" and r["quiet_s"] > 0 and r["loaded_s"] > 0
    assert r["slowdown"] == pytest.approx(r["loaded_s"] / r["quiet_s"])
    assert r["sessions"] is True and r["busy"] == 1


def _running_in_group(group: int) -> list[int]:
    """Processes of the process group ``group`` that are not zombies (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _, pgrp = stat[stat.rfind(")") + 2:].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_shared_cpu_busy_job_is_gone_after_its_block():
    from benchmarks import shared_cpu

    with shared_cpu.Busy(2) as busy:
        group = busy.proc.pid
        assert len(_running_in_group(group)) == 2
    assert _running_in_group(group) == []


@pytest.mark.parametrize("argv", [["--busy", "0"], ["--rounds", "0"], ["--block", "0"],
                                  ["--target", "1"], ["--chapter", "nowhere.md"],
                                  ["--no-fair"]])
def test_shared_cpu_refuses_bad_arguments(argv, capsys):
    from benchmarks import shared_cpu

    with pytest.raises(SystemExit) as err:
        shared_cpu.main(argv)
    assert err.value.code == 2
    assert argv[0] in capsys.readouterr().err

"""Tests of dltheory.threads: the idle-core count from the kernel's run queue, the context
manager that lowers and restores torch's thread count, the decorator on the hot paths, and
bad input (badinput.Case) for every public function."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from badinput import Case, make_tests
from dltheory import dynamics, infinite, kernels, landscape, regions, threads
from dltheory.errors import InputError, InputTypeError

linux = pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs /proc/loadavg")


@pytest.fixture(autouse=True)
def fresh_reading(monkeypatch):
    """Every test reads the (possibly pretended) run queue afresh."""
    monkeypatch.setattr(threads, "_recent", [-math.inf, None])


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _machine(monkeypatch, tmp_path, *, runnable: int, own: int, cores: int, total: int):
    """Pretend the kernel counts ``runnable`` runnable threads, ``own`` of them ours, on a
    machine of ``total`` cores of which this process may use ``cores``."""
    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"0.50 0.40 0.30 {runnable}/300 4242\n")
    monkeypatch.setattr(threads, "_LOADAVG", str(loadavg))
    monkeypatch.setattr(threads, "_own_running", lambda: own)
    monkeypatch.setattr(threads, "_cores", lambda: cores)
    monkeypatch.setattr(os, "cpu_count", lambda: total)


@pytest.mark.parametrize(("runnable", "own", "cores", "limit", "want"), [
    (1, 1, 2, 2, 2),     # idle machine: nothing changes
    (2, 2, 2, 2, 2),     # our own spinning worker is not another process
    (2, 1, 2, 2, 1),     # one other process on two cores: one core left
    (3, 1, 2, 2, 1),     # two others: none left, but never fewer than one thread
    (9, 1, 2, 2, 1),
    (3, 1, 8, 4, 4),     # two others on eight cores: six idle, capped by the limit
    (3, 1, 8, 16, 6),
])
def test_fair_count_is_the_idle_cores_within_one_and_the_limit(monkeypatch, tmp_path, runnable,
                                                               own, cores, limit, want):
    _machine(monkeypatch, tmp_path, runnable=runnable, own=own, cores=cores, total=cores)
    assert threads.fair_count(limit) == want


def test_the_system_wide_count_is_scaled_to_the_cores_this_process_may_use(monkeypatch,
                                                                          tmp_path):
    # 33 other runnable threads on a 64-core host, 4 of its cores ours: about 2 of them busy.
    _machine(monkeypatch, tmp_path, runnable=34, own=1, cores=4, total=64)
    assert threads.fair_count(4) == 2


def test_without_a_readable_count_nothing_changes(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "_LOADAVG", str(tmp_path / "absent"))
    assert threads.fair_count(3) == 3
    (tmp_path / "garbled").write_text("not a loadavg line")
    monkeypatch.setattr(threads, "_LOADAVG", str(tmp_path / "garbled"))
    monkeypatch.setattr(threads, "_recent", [-math.inf, None])
    assert threads.fair_count(5) == 5


def test_a_reading_is_reused_for_a_tenth_of_a_second_then_renewed(monkeypatch, tmp_path):
    _machine(monkeypatch, tmp_path, runnable=3, own=1, cores=2, total=2)
    assert threads.fair_count(2) == 1
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/300 4242\n")
    assert threads.fair_count(2) == 1                  # the reading of a moment ago
    monkeypatch.setattr(threads, "_recent", [time.monotonic() - threads._FRESH_S, 1.0])
    assert threads.fair_count(2) == 2                  # read again: the others are gone


def test_fair_lowers_the_count_in_its_block_and_restores_it(monkeypatch, keep_threads):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "fair_count", lambda limit=None: 1)
    with threads.fair() as n:
        assert n == 1 and torch.get_num_threads() == 1
        with threads.fair() as m:                   # nested: the outer count stands
            assert m == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"), threads.fair():
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2             # restored after an exception too


def test_fair_never_raises_the_count_above_its_limit(monkeypatch, tmp_path, keep_threads):
    torch.set_num_threads(2)
    _machine(monkeypatch, tmp_path, runnable=1, own=1, cores=8, total=8)
    with threads.fair() as n:
        assert n == 2
    with threads.fair(limit=1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


@linux
def test_busy_processes_on_every_core_leave_one_thread(keep_threads):
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(max(cores, 2))
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        assert threads.fair_count() == 1
        with threads.fair():
            assert torch.get_num_threads() == 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert torch.get_num_threads() == max(cores, 2)


def test_fair_share_keeps_the_function_and_runs_it_under_fair(monkeypatch, keep_threads):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "fair_count", lambda limit=None: 1)

    def f(x, *, scale=2):
        """Doc of f."""
        return x * scale, torch.get_num_threads()

    g = threads.fair_share(f)
    assert g.__name__ == "f" and g.__doc__ == "Doc of f." and g.__wrapped__ is f
    assert g(3, scale=4) == (12, 1)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("fn", [regions.on_segment, regions.on_plane, regions.sample_segment,
                                regions.sample_plane, regions.nearest_boundary_along,
                                infinite.nngp_ntk, infinite.cnn_nngp_ntk, kernels.ntk,
                                kernels.path_kernel, dynamics.train,
                                landscape.parameter_breakpoints])
def test_the_hot_paths_run_under_the_policy(fn):
    assert getattr(fn, "__wrapped__", None) is not None, fn.__qualname__


def test_a_hot_path_runs_with_the_fair_count(monkeypatch, keep_threads):
    torch.set_num_threads(2)
    seen = []
    monkeypatch.setattr(threads, "fair_count", lambda limit=None: 1)
    real = regions.on_segment.__wrapped__

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    net = net.double().eval()
    wrapped = threads.fair_share(spy)
    seg = wrapped(net, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    assert seen == [1] and seg.n_regions >= 1 and torch.get_num_threads() == 2


class _Events:
    def __init__(self):
        self.hooks = {}

    def register(self, event, fn):
        self.hooks.setdefault(event, []).append(fn)


class _Shell:
    """What ``per_cell`` needs of an IPython shell: its event callbacks."""

    def __init__(self):
        self.events = _Events()


def test_per_cell_runs_each_cell_under_fair_and_restores_after_it(monkeypatch, keep_threads):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "fair_count", lambda limit=None: 1)
    shell = _Shell()
    threads.per_cell(shell)
    threads.per_cell(shell)                          # a second call installs nothing more
    (start,), (end,) = shell.events.hooks["pre_run_cell"], shell.events.hooks["post_run_cell"]
    start(None)
    assert torch.get_num_threads() == 1
    with threads.fair() as n:                        # a hot path inside the cell keeps it
        assert n == 1
    end(None)
    assert torch.get_num_threads() == 2
    end(None)                                        # a cell that never started: no change
    assert torch.get_num_threads() == 2


def test_per_cell_outside_ipython_does_nothing():
    assert threads.per_cell() is None


def test_every_chapter_runs_its_cells_under_the_policy():
    root = Path(__file__).resolve().parents[1]
    from dltheory import notebooks
    for chapter in notebooks.chapters(root):
        assert "\nthreads.per_cell()" in chapter.read_text(), chapter


CASES = [
    Case("threads.fair_count", threads.fair_count, lambda: {"limit": 1},
         scalars={"limit": [0, -2, 1.5, True, "2", math.nan]}),
    Case("threads.fair", threads.fair, lambda: {"limit": None},
         scalars={"limit": [0, -1, 2.0, False, "1"]}),
    Case("threads.fair_share", threads.fair_share, lambda: {"fn": len},
         scalars={"fn": [None, 3, "regions.on_plane"]}),
    Case("threads.per_cell", threads.per_cell, lambda: {"shell": None},
         scalars={"shell": [3, "ipython", object()]}),
]

test_refused, test_pure = make_tests(CASES)


def test_errors_name_the_argument_and_the_fix():
    with pytest.raises(InputError, match=r"threads\.fair_count: limit must be a positive int"):
        threads.fair_count(0)
    with pytest.raises(InputTypeError, match=r"threads\.fair: limit must be a positive int"):
        threads.fair(2.5)
    with pytest.raises(InputTypeError, match=r"threads\.fair_share: fn must be a function"):
        threads.fair_share(None)

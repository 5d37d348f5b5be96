"""A fair share of the CPU for the library's hot paths.

PyTorch runs a parallel operation on all the threads it was given (by default one per core)
and ends it at a barrier that waits for the slowest thread. When other processes keep the
cores busy, one of those threads is often not running, and every parallel region then waits
for the scheduler to give it a turn (milliseconds each): code made of many small operations,
such as exact region enumeration on a segment, ran 22 times slower on two cores beside a
CPU-bound job on both, where sharing the cores evenly would give 2
(``benchmarks/shared_cpu.py``). OpenMP's ``OMP_WAIT_POLICY=PASSIVE`` softens this but made
the same code 1.5 to 3 times slower on an idle machine, and it only works when set before
torch is loaded.

So the hot paths (exact regions, the infinite-width and empirical kernels, the path kernel,
training loops) run under :func:`fair` (through the decorator :func:`fair_share`): on entry
it counts the other processes' running threads (Linux: ``/proc/loadavg``, less this
process's own running threads) and lowers torch's thread count to the cores they leave
idle, at least one, never above the count set before; on exit it restores that count. On
an idle machine nothing changes; on a busy one a hot path runs on the cores that are free,
with no barrier waiting for a descheduled thread. Where the count cannot be read (not
Linux), nothing changes. :func:`per_cell` applies the same rule to every cell of a
notebook, so that a chapter's own torch code shares a busy CPU too (every chapter calls it
in its first cell).

Results can differ at the level of float64 rounding with the number of threads, as for any
torch code; the book's claims carry tolerances far above that.

>>> from dltheory import threads
>>> with threads.fair():
...     pass                       # torch.get_num_threads() is the fair count in here
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from .errors import InputError, InputTypeError

F = TypeVar("F", bound=Callable)

_LOADAVG = "/proc/loadavg"
_TASKS = "/proc/self/task"
_local = threading.local()
#: How long a reading of the run queue is reused, and the last one: [time, others].
_FRESH_S = 0.1
_recent: list = [-math.inf, None]


def _own_running() -> int:
    """This process's threads in state R (running or runnable)."""
    n = 0
    try:
        tasks = os.listdir(_TASKS)
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"{_TASKS}/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:        # the thread ended meanwhile
            continue
        n += stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"R"
    return max(n, 1)           # the calling thread is running


def _others_running() -> float | None:
    """Threads of other processes running or waiting for a core among this process's cores,
    estimated from the kernel's instantaneous count of runnable threads (``/proc/loadavg``,
    system-wide, scaled by the share of the machine's cores this process may use); None
    where that count is not available. Read at most every ``_FRESH_S`` seconds (a read
    costs about 0.1 ms); in between the last reading is returned."""
    now = time.monotonic()
    if now - _recent[0] < _FRESH_S:
        return _recent[1]
    try:
        with open(_LOADAVG, "rb") as f:
            runnable = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        others = None
    else:
        mine, total = _cores(), os.cpu_count() or 1
        own = 1 if runnable <= 1 else _own_running()
        others = max(runnable - own, 0) * min(mine / total, 1.0)
    _recent[:] = [now, others]
    return others


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:     # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _limit(limit, fn: str) -> int:
    if limit is None:
        return torch.get_num_threads()
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InputTypeError(f"{fn}: limit must be a positive int or None (torch's present "
                             f"thread count), got {type(limit).__name__}")
    if limit < 1:
        raise InputError(f"{fn}: limit must be a positive int or None (torch's present "
                         f"thread count), got {limit}")
    return limit


def fair_count(limit: int | None = None) -> int:
    """The number of threads a hot path should use now: the cores left idle by other
    processes (their running threads, from the kernel's count), at least 1 and at most
    ``limit`` (default: torch's present thread count); ``limit`` itself where the count
    cannot be read (not Linux)."""
    limit = _limit(limit, "threads.fair_count")
    others = _others_running()
    if others is None:
        return limit
    idle = int(_cores() - others + 0.5)
    return max(1, min(limit, idle))


class _Fair:
    """The context manager :func:`fair` returns."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.before: int | None = None
        self.count = 0

    def __enter__(self) -> int:
        depth = getattr(_local, "depth", 0)
        if depth:                      # nested: the outermost block chose the count
            self.count = torch.get_num_threads()
        else:
            self.before = torch.get_num_threads()
            self.count = fair_count(min(self.before, self.limit or self.before))
            if self.count != self.before:
                torch.set_num_threads(self.count)
        _local.depth = depth + 1
        return self.count

    def __exit__(self, *exc) -> None:
        _local.depth -= 1
        if self.before is not None and self.count != self.before:
            torch.set_num_threads(self.before)
        self.before = None


def fair(limit: int | None = None) -> _Fair:
    """A context manager that runs its block with torch's thread count lowered to
    :func:`fair_count` (at most ``limit``) and restores the count after it; ``as`` gives the
    count. Nested blocks keep the outermost block's count (the load is read once per
    outermost call). Torch's thread count is global to the process: do not enter it from
    several Python threads at once."""
    return _Fair(None if limit is None else _limit(limit, "threads.fair"))


def fair_share(fn: F) -> F:
    """Decorate ``fn`` so that each call runs under :func:`fair`."""
    if not callable(fn):
        raise InputTypeError(f"threads.fair_share: fn must be a function to decorate, got "
                             f"{type(fn).__name__}")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with fair():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def per_cell(shell=None) -> None:
    """Run every cell of an IPython shell (the running one when ``shell`` is None) under
    :func:`fair`: the count is read when a cell starts and restored when it ends, so the
    torch code a chapter runs outside the library's hot paths shares a busy CPU the same
    way. Outside IPython it does nothing; installing twice changes nothing."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is None:
            return
    if not hasattr(getattr(shell, "events", None), "register"):
        raise InputTypeError(f"threads.per_cell: shell must be an IPython shell (with "
                             f"events), got {type(shell).__name__}")
    if getattr(shell, "_dltheory_fair", None) is not None:
        return
    block: list[_Fair] = []

    def start(*_):
        block.append(fair())
        block[-1].__enter__()

    def end(*_):
        while block:
            block.pop().__exit__(None, None, None)

    shell.events.register("pre_run_cell", start)
    shell.events.register("post_run_cell", end)
    shell._dltheory_fair = (start, end)

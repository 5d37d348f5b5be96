"""Execute a chapter outside the book build and collect its claims.

    python -m dltheory.runner book/foundations/checking_a_theorem.md --profile full

runs the chapter (a MyST Markdown notebook) in a fresh kernel with the chosen profile,
prints every claim it checked and the kernel's peak memory, and exits non-zero, naming the
claim, when a claim or a cell fails. While a chapter runs it reports which chapter (k of N)
and which cell (i of n) is executing, with the elapsed time (:class:`Progress`, whose hooks
the book's Sphinx extension installs in the build too). The tests use it for fixture
chapters; on a GPU machine it is the quickest way to run one chapter at full scale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import claims as _claims
from .profile import ENV_PROFILE, PROFILES


@dataclass
class ChapterRun:
    """What executing one chapter produced."""

    path: Path
    claims: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    notebook: object = None
    peak_rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c["ok"] for c in self.claims)


def claims_of(nb) -> list[dict]:
    """Claim records found in an executed notebook's outputs, in order."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _claims.MIME in data:
                rec = data[_claims.MIME]
                found.append(json.loads(rec) if isinstance(rec, str) else dict(rec))
    return found


def peak_of(records) -> float | None:
    """The largest ``peak_rss_mb`` of claim records (the kernel's peak up to its last claim),
    or None when no record carries one."""
    peaks = [r["peak_rss_mb"] for r in records if r.get("peak_rss_mb") is not None]
    return max(peaks) if peaks else None


#: Metadata key of the cell the runner appends to read the kernel's peak memory.
PEAK_KEY = "dltheory_peak_cell"
PEAK_MARK = "dltheory-peak-rss-mb:"
PEAK_CELL = f"""\
from dltheory import profile as _profile
print({PEAK_MARK!r}, _profile.peak_rss_mb())
"""


def _is_counted(cell) -> bool:
    """Whether a cell is one of the chapter's code cells (nbclient skips empty ones)."""
    return (cell.get("cell_type") == "code" and bool(cell.get("source", "").strip())
            and PEAK_KEY not in cell.get("metadata", {}))


class Progress:
    """Reports the execution of notebooks: which chapter (k of N), which cell (i of n) and
    the elapsed seconds, as whole lines (never carriage returns), so that a log that is not
    a terminal shows them as they come.

    Its methods are nbclient hooks (``NotebookClient(on_notebook_start=..., ...)``). A line
    is written when a chapter starts, when a cell starts at least ``every`` seconds after
    the previous line, every ``every`` seconds while one cell runs (a daemon thread), and
    when the chapter ends (with the kernel's peak memory as its claims recorded it).
    ``write`` receives each line.
    """

    def __init__(self, write: Callable[[str], None] | None = None, *, every: float = 30.0,
                 total: int | None = None) -> None:
        if every < 0:
            raise ValueError(f"Progress: every must be >= 0 seconds, got {every}")
        self.write = write or (lambda line: print(line, flush=True))
        self.every = every
        self.total = total
        self.k = 0
        self.name = ""
        self._cells: list[int] = []
        self._cell = self._done = 0
        self._start = self._cell_start = self._last = 0.0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None

    def begin(self, name: str, k: int | None = None) -> None:
        """The next notebook executed is the chapter ``name``, number ``k`` (default: the
        one after the previous)."""
        self.k = self.k + 1 if k is None else k
        self.name = name

    def _where(self) -> str:
        of = f"{self.k}/{self.total}" if self.total else str(self.k)
        return f"[{of}] {self.name}"

    def _say(self, line: str) -> None:
        self._last = time.perf_counter()
        self.write(line)

    def on_notebook_start(self, notebook, **_) -> None:
        with self._lock:
            self._cells = [i for i, c in enumerate(notebook.cells) if _is_counted(c)]
            self._cell = self._done = 0
            self._start = self._cell_start = time.perf_counter()
            n = len(self._cells)
            self._say(f"dltheory: executing {self._where()}: {n} code cell{'s' * (n != 1)}")
        if self.every > 0:
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), daemon=True).start()

    def on_cell_start(self, cell_index: int, **_) -> None:
        if cell_index not in self._cells:
            return
        with self._lock:
            now = time.perf_counter()
            self._cell, self._cell_start = self._cells.index(cell_index) + 1, now
            if now - self._last >= self.every:
                self._say(f"dltheory: {self._where()}: cell {self._cell}/{len(self._cells)}, "
                          f"{now - self._start:.0f} s")

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            with self._lock:
                now = time.perf_counter()
                if self._cell and now - self._last >= self.every:
                    self._say(f"dltheory: {self._where()}: cell {self._cell}/"
                              f"{len(self._cells)} running for {now - self._cell_start:.0f} s, "
                              f"{now - self._start:.0f} s in all")

    def on_cell_executed(self, cell_index: int, execute_reply=None, **_) -> None:
        status = (execute_reply or {}).get("content", {}).get("status", "ok")
        if cell_index in self._cells and status == "ok":
            self._done = self._cells.index(cell_index) + 1

    def on_notebook_complete(self, notebook=None, **_) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        peak = None if notebook is None else peak_of(claims_of(notebook))
        with self._lock:
            n, spent = len(self._cells), time.perf_counter() - self._start
            how = "done" if self._done == n else f"stopped at cell {self._cell}/{n}"
            said = "" if peak is None else f", peak memory {peak:.0f} MB by its last claim"
            self._say(f"dltheory: {self._where()}: {how} after {spent:.0f} s{said}")

    def hooks(self) -> dict:
        """The nbclient hooks, as keyword arguments of ``NotebookClient``."""
        return {"on_notebook_start": self.on_notebook_start,
                "on_cell_start": self.on_cell_start,
                "on_cell_executed": self.on_cell_executed,
                "on_notebook_complete": self.on_notebook_complete}


def kernel_manager_settings() -> dict:
    """The kernel manager's settings for every kernel the book starts (the runner's and the
    build's): it provisions CurveZMQ keys where the kernel declares support (ipykernel
    does), so the kernel neither runs over unencrypted TCP nor warns that it does. Empty
    with an older jupyter_client, which has no such setting (nor warning)."""
    import zmq
    from jupyter_client.manager import KernelManager

    if "transport_encryption" not in KernelManager.class_traits() or not zmq.has("curve"):
        return {}
    return {"transport_encryption": "auto"}


def kernel_config():
    """:func:`kernel_manager_settings` as the traitlets config of the runner's client."""
    from traitlets.config import Config

    return Config({"KernelManager": kernel_manager_settings()})


def run_chapter(path, *, profile: str | None = None, timeout: int = 1800,
                progress: Progress | None = None) -> ChapterRun:
    """Execute the notebook at ``path`` (``.md`` via jupytext, or ``.ipynb``) in a new kernel.

    ``progress`` (a :class:`Progress`) reports the execution as it goes; the kernel's peak
    memory (MB) is read by one more cell, appended for the run and removed after it.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no chapter at {path}")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    nb = jupytext.read(path)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL, metadata={PEAK_KEY: True}))
    run = ChapterRun(path=path, notebook=nb)
    old = os.environ.get(ENV_PROFILE)
    if profile is not None:
        os.environ[ENV_PROFILE] = profile
    os.environ.setdefault("TQDM_DISABLE", "1")
    if progress is not None:
        progress.begin(str(path))
    start = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}},
                                config=kernel_config(),
                                **(progress.hooks() if progress is not None else {}))
        client.execute()
    except CellExecutionError as err:
        run.error = _short_error(err)
    finally:
        run.seconds = time.perf_counter() - start
        if profile is not None:
            if old is None:
                os.environ.pop(ENV_PROFILE, None)
            else:
                os.environ[ENV_PROFILE] = old
    peak_cell = nb.cells.pop()
    run.claims = claims_of(nb)
    run.peak_rss_mb = _peak_printed(peak_cell)
    if run.peak_rss_mb is None:
        run.peak_rss_mb = peak_of(run.claims)
    return run


def _peak_printed(cell) -> float | None:
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(PEAK_MARK):
                value = line.removeprefix(PEAK_MARK).strip()
                return None if value == "None" else float(value)
    return None


def _short_error(err) -> str:
    ename = getattr(err, "ename", "") or "Error"
    evalue = getattr(err, "evalue", "") or str(err).strip().splitlines()[-1]
    return f"{ename}: {evalue}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dltheory.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="+", type=Path, help="chapter files (.md or .ipynb)")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="scale profile (default: full with a GPU, else ci)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--json", type=Path, default=None, help="write the claims here")
    parser.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="report the executing cell at most this often (default 30)")
    args = parser.parse_args(argv)
    if args.progress_every < 0:
        parser.error(f"--progress-every must be >= 0 seconds, got {args.progress_every}")
    failed, everything = 0, []
    progress = Progress(total=len(args.chapters), every=args.progress_every)
    for chapter in args.chapters:
        run = run_chapter(chapter, profile=args.profile, timeout=args.timeout,
                          progress=progress)
        peak = "peak memory unknown" if run.peak_rss_mb is None else \
            f"peak memory {run.peak_rss_mb:.0f} MB"
        print(f"== {chapter} ({run.seconds:.1f} s, {peak})")
        for rec in run.claims:
            said = _claims.rejects_text(rec)
            mark = _claims.verdict(rec)[0]        # a negative control is marked apart
            print(f"   {mark} {rec['name']} [{rec.get('kind')}]: "
                  f"measured {rec['measured_text']} {rec['bound']} -> {rec['status']}"
                  + (f"; {said}" if said else ""))
        if run.error:
            print(f"   chapter failed: {run.error}")
        failed += not run.ok
        everything.append({"chapter": str(chapter), "seconds": run.seconds,
                           "peak_rss_mb": run.peak_rss_mb, "error": run.error,
                           "claims": run.claims})
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    print(f"{len(args.chapters) - failed} chapters passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

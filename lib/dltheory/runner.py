"""Execute chapters outside the book build, collect their claims, record a ledger.

    python -m dltheory.runner book/foundations/checking_a_theorem.md --profile full
    python -m dltheory.runner --all --profile full --budget 600 --ledger book/ledgers/h200.json

runs chapters (MyST Markdown notebooks), each in a fresh process with a fresh kernel and
the chosen profile, prints every claim each one checked, its time, its kernel's peak host
memory and, on CUDA, its peak device memory (``torch.cuda.max_memory_allocated``), then a
summary table naming the chapters that took most of the time. ``--all`` runs every
chapter of ``_toc.yml`` that is a notebook, in reading order (``--only NAME ...`` keeps
those whose stem or path contains a NAME). ``--budget SECONDS`` bounds the whole run: a
chapter starts only while budget remains, and one still running when it runs out is
stopped (its process and kernel killed) and recorded as ``stopped: budget`` with the
claims it had checked by then; the chapters after it are ``not run: budget``.
``--ledger PATH`` writes the results with their provenance (commit, library and chapter
hashes, device, versions, command) as JSON (:mod:`dltheory.ledger`); committed under
``book/ledgers/``, they give the Verification page its full-profile column.

Exit status: 0 when every chapter ran and passed; 1 when a claim or a cell failed (the
claim is named); 3 when none failed but the budget stopped a chapter or left some unrun;
2 for bad arguments.

While a chapter runs it reports which chapter (k of N) and which cell (i of n) is
executing, with the elapsed time (:class:`Progress`, whose hooks the book's Sphinx
extension installs in the build too). The tests use it for fixture chapters; on a GPU
machine it is the quickest way to run the book at full scale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import claims as _claims
from . import ledger as _ledger
from .errors import InputError
from .profile import ENV_PROFILE, PROFILES

EXIT_FAILED = 1
"""Exit status when a claim or a cell failed (or a chapter's process died)."""
EXIT_BUDGET = 3
"""Exit status when no chapter failed but the budget stopped one or left some unrun."""


@dataclass
class ChapterRun:
    """What executing one chapter produced."""

    path: Path
    claims: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    notebook: object = None
    peak_rss_mb: float | None = None
    peak_device_mb: float | None = None

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
DEVICE_MARK = "dltheory-peak-device-mb:"
PEAK_CELL = f"""\
import sys as _sys
from dltheory import profile as _profile
print({PEAK_MARK!r}, _profile.peak_rss_mb())
_torch = _sys.modules.get("torch")
print({DEVICE_MARK!r}, round(_torch.cuda.max_memory_allocated() / 1e6, 1)
      if _torch is not None and _torch.cuda.is_initialized() else None)
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
                progress: Progress | None = None,
                on_claims: Callable[[list[dict]], None] | None = None) -> ChapterRun:
    """Execute the notebook at ``path`` (``.md`` via jupytext, or ``.ipynb``) in a new kernel.

    ``progress`` (a :class:`Progress`) reports the execution as it goes; ``on_claims``, if
    given, receives the claim records checked so far after every cell. The kernel's peak
    host memory and, where CUDA was initialized, its peak device memory (MB, 10^6 bytes)
    are read by one more cell, appended for the run and removed after it.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

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
    hooks = progress.hooks() if progress is not None else {}
    if on_claims is not None:
        hooks["on_cell_executed"] = _then(hooks.get("on_cell_executed"),
                                          lambda **_: on_claims(claims_of(nb)))
    start = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}},
                                config=kernel_config(), **hooks)
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
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
    run.peak_rss_mb = _printed(peak_cell, PEAK_MARK)
    if run.peak_rss_mb is None:
        run.peak_rss_mb = peak_of(run.claims)
    run.peak_device_mb = _printed(peak_cell, DEVICE_MARK)
    return run


def _then(first: Callable | None, second: Callable) -> Callable:
    """A hook that calls ``first`` (if any), then ``second``, with the same arguments."""
    def both(**kwargs):
        if first is not None:
            first(**kwargs)
        second(**kwargs)
    return both


def _printed(cell, mark: str) -> float | None:
    """The number the peak cell printed after ``mark`` (None when it printed ``None`` or
    did not run)."""
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(mark):
                value = line.removeprefix(mark).strip()
                return None if value == "None" else float(value)
    return None


def _short_error(err) -> str:
    ename = getattr(err, "ename", "") or type(err).__name__
    evalue = getattr(err, "evalue", "") or str(err).strip().splitlines()[-1]
    return f"{ename}: {evalue}"


# ------------------------------------------------------------------ which chapters


def book_root(start: Path | str = ".") -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``_toc.yml`` (the book's root,
    to which ``_toc.yml``'s paths are relative), or None."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return None


def toc_chapters(root: Path | str) -> list[Path]:
    """The chapters of the book at ``root`` that execute code, in reading order: the
    ``_toc.yml`` entries whose source is a notebook (a jupytext header with a kernelspec),
    which leaves out the index, the Verification page and the references."""
    from . import notebooks

    return notebooks.chapters(Path(root))


def select(chapters: list[Path], only: list[str], root: Path | str | None = None,
           ) -> list[Path]:
    """The chapters whose stem equals, or whose path (relative to ``root``, when given)
    contains, one of the names ``only`` (all of them when ``only`` is empty); a name that
    matches none is an :class:`dltheory.errors.InputError` naming the choices."""
    def hit(name: str, p: Path) -> bool:
        return name == p.stem or name in (p.as_posix() if root is None
                                          else _relative(p, Path(root)))

    for name in only:
        if not any(hit(name, p) for p in chapters):
            raise InputError(f"--only {name!r} matches no chapter; choose from "
                             f"{', '.join(p.stem for p in chapters) or 'nothing'}")
    return [p for p in chapters if not only or any(hit(n, p) for n in only)]


def docname(path: Path | str, root: Path | str) -> str:
    """A chapter's name as ``_toc.yml`` writes it (``book/kernels/path_kernel``): its path
    relative to ``root`` without suffix (the path as given when it lies outside ``root``)."""
    path = Path(path)
    try:
        rel = path.resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = path
    return rel.with_suffix("").as_posix()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# ------------------------------------------------------- one chapter, one process


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _result(chapter: str, run: ChapterRun | None, claims: list[dict], *, complete: bool,
            ) -> dict:
    """What a worker reports about one chapter (``complete``: it ran to its end)."""
    return {"chapter": chapter, "complete": complete,
            "seconds": None if run is None else run.seconds,
            "peak_rss_mb": peak_of(claims) if run is None else run.peak_rss_mb,
            "peak_device_mb": None if run is None else run.peak_device_mb,
            "error": None if run is None else run.error, "claims": claims}


def _worker(args) -> int:
    """Run one chapter in this process and write what it found to ``args.json``: after
    every cell (so that a chapter stopped by the budget leaves the claims it checked), and
    once more at the end."""
    chapter = args.chapters[0]
    k, total = (int(x) for x in args.progress_at.split("/"))
    progress = Progress(total=total, every=args.progress_every)
    progress.k = k - 1

    def snapshot(records):
        _write_json(args.json, [_result(str(chapter), None, records, complete=False)])

    run = run_chapter(chapter, profile=args.profile, timeout=args.timeout, progress=progress,
                      on_claims=snapshot)
    _write_json(args.json, [_result(str(chapter), run, run.claims, complete=True)])
    return 0 if run.ok else EXIT_FAILED


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:                 # pragma: no cover - ipykernel requires psutil
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill a process started in its own session, everything it started (the kernel, which
    jupyter_client starts in a session of its own) and their process groups; then reap it."""
    pids = [proc.pid, *_descendants(proc.pid)]
    if hasattr(os, "killpg"):
        groups = set()
        for pid in pids:
            try:
                groups.add(os.getpgid(pid))
            except OSError:
                pass
        groups.discard(os.getpgrp())
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


def _relay(stream, write: Callable[[str], None], tail: deque) -> None:
    for line in stream:
        line = line.rstrip("\n")
        tail.append(line)
        write(line)


def run_isolated(chapter: Path, *, profile: str | None = None, timeout: int = 1800,
                 progress_every: float = 30.0, k: int = 1, total: int = 1,
                 seconds_left: float | None = None,
                 write: Callable[[str], None] | None = None) -> dict:
    """Run one chapter in a fresh process (``python -m dltheory.runner`` as a worker, in a
    session of its own), relaying its progress lines to ``write``; kill it, its kernel and
    their process groups once ``seconds_left`` (None: no limit) have passed.

    Returns ``{"status", "seconds", "peak_rss_mb", "peak_device_mb", "error", "claims"}``:
    ``status`` is ``passed``, ``failed`` or ``stopped: budget`` (with the claims checked
    before the stop); ``seconds`` is the wall time of the process.
    """
    write = write or (lambda line: print(line, flush=True))
    lib = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="dltheory-runner-") as tmp:
        out = Path(tmp) / "chapter.json"
        cmd = [sys.executable, "-m", "dltheory.runner", "--worker", str(chapter),
               "--json", str(out), "--timeout", str(timeout),
               "--progress-every", str(progress_every), "--progress-at", f"{k}/{total}"]
        cmd += ["--profile", profile] if profile else []
        tail: deque = deque(maxlen=20)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace",
                                env=env, start_new_session=True)
        relay = threading.Thread(target=_relay, args=(proc.stdout, write, tail), daemon=True)
        relay.start()
        stopped = False
        try:
            proc.wait(timeout=None if seconds_left is None else max(seconds_left, 0.0))
        except subprocess.TimeoutExpired:
            stopped = True
            kill_tree(proc)
        except BaseException:           # Ctrl-C: leave no chapter running behind
            kill_tree(proc)
            raise
        seconds = round(time.perf_counter() - start, 2)
        relay.join(timeout=10)
        proc.stdout.close()
        try:
            (found,) = json.loads(out.read_text())
        except (OSError, ValueError):
            found = None
    if stopped:
        claims = [] if found is None else found["claims"]
        return {"status": "stopped: budget", "seconds": seconds,
                "peak_rss_mb": peak_of(claims), "peak_device_mb": None,
                "error": f"stopped by the budget after {seconds:.0f} s", "claims": claims}
    if found is None or not found["complete"]:
        said = " | ".join(line for line in tail if line.strip())[-600:]
        claims = [] if found is None else found["claims"]
        return {"status": "failed", "seconds": seconds, "peak_rss_mb": peak_of(claims),
                "peak_device_mb": None, "claims": claims,
                "error": f"the chapter's process exited with status {proc.returncode}"
                         + (f": {said}" if said else "")}
    ok = found["error"] is None and all(c["ok"] for c in found["claims"])
    return {"status": "passed" if ok else "failed", "seconds": seconds,
            "peak_rss_mb": found["peak_rss_mb"], "peak_device_mb": found["peak_device_mb"],
            "error": found["error"], "claims": found["claims"]}


# ---------------------------------------------------------------------- reporting


def _mb(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f}"


def chapter_lines(name: str, res: dict) -> list[str]:
    """What the runner prints about one chapter's result (:func:`run_isolated`'s dict)."""
    if res["status"] == "not run: budget":
        return [f"== {name}: not run (the budget was spent)"]
    peak = ("peak memory unknown" if res["peak_rss_mb"] is None
            else f"peak memory {res['peak_rss_mb']:.0f} MB")
    device = ("" if res["peak_device_mb"] is None
              else f", peak device memory {res['peak_device_mb']:.0f} MB")
    lines = [f"== {name} ({res['seconds']:.1f} s, {peak}{device})"]
    for rec in res["claims"]:
        said = _claims.rejects_text(rec)
        mark = _claims.verdict(rec)[0]        # a negative control is marked apart
        lines.append(f"   {mark} {rec['name']} [{rec.get('kind')}]: "
                     f"measured {rec['measured_text']} {rec['bound']} -> {rec['status']}"
                     + (f"; {said}" if said else ""))
    if res["status"] == "stopped: budget":
        lines.append(f"   chapter {res['error']}")
    elif res["error"]:
        lines.append(f"   chapter failed: {res['error']}")
    return lines


def summary_lines(results: list[tuple[str, dict]]) -> list[str]:
    """The closing table (chapter, status, time and its share, peak memories, claims) and
    the chapters that took most (80%) of the time, the longest first."""
    total = sum(r["seconds"] or 0.0 for _, r in results)
    width = max([len("chapter"), *(len(n) for n, _ in results)])
    head = (f"{'chapter':<{width}}  {'status':<15}  {'time':>9}  {'share':>5}  "
            f"{'peak MB':>7}  {'device MB':>9}  claims")
    lines = [head, "-" * len(head)]
    for name, r in results:
        s = r["seconds"] or 0.0
        share = f"{100 * s / total:.0f}%" if total > 0 and r["seconds"] is not None else "—"
        took = "—" if r["seconds"] is None else f"{s:.1f} s"
        ok = sum(c["ok"] for c in r["claims"])
        lines.append(f"{name:<{width}}  {r['status']:<15}  {took:>9}  {share:>5}  "
                     f"{_mb(r['peak_rss_mb']):>7}  {_mb(r['peak_device_mb']):>9}  "
                     f"{ok}/{len(r['claims'])} ok")
    lines.append(f"{'total':<{width}}  {'':<15}  {total:>7.1f} s")
    if total > 0:
        most, acc = [], 0.0
        for name, r in sorted(results, key=lambda x: -(x[1]["seconds"] or 0.0)):
            if acc >= 0.8 * total or not r["seconds"]:
                break
            most.append(f"{name} ({100 * r['seconds'] / total:.0f}%)")
            acc += r["seconds"]
        lines.append("most of the time: " + ", ".join(most))
    return lines


def ledger_entry(path: Path, root: Path, res: dict) -> dict:
    """A chapter's entry in a ledger (:mod:`dltheory.ledger`)."""
    return {"path": _relative(path, root), "docname": docname(path, root),
            "sha256": _ledger.file_hash(path), "status": res["status"],
            "seconds": res["seconds"], "peak_rss_mb": res["peak_rss_mb"],
            "peak_device_mb": res["peak_device_mb"], "error": res["error"],
            "claims": res["claims"]}


def _device_name(device_type: str) -> str | None:
    """The GPU's name, asked of a short-lived process (so that this one never holds a CUDA
    context while the chapters run); None for a CPU (:func:`ledger.device_info` names it) or
    when the question fails."""
    if device_type != "cuda":
        return None
    code = "import torch; print(torch.cuda.get_device_name())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dltheory.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter files (.md or .ipynb)")
    parser.add_argument("--all", action="store_true",
                        help="every chapter of _toc.yml that executes code, in reading order")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="keep the chapters whose stem or path contains a NAME")
    parser.add_argument("--root", type=Path, default=None,
                        help="the book's root, holding _toc.yml (default: the nearest "
                             "folder at or above the current one that holds it)")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="scale profile (default: full with a GPU, else ci)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="stop the run after this many seconds in all")
    parser.add_argument("--ledger", type=Path, default=None, metavar="PATH",
                        help="write the results and their provenance to this .json file")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--json", type=Path, default=None, help="write the claims here")
    parser.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="report the executing cell at most this often (default 30)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--progress-at", default="1/1", help=argparse.SUPPRESS)
    return parser


def _chapters_of(parser, args) -> tuple[Path, list[Path]]:
    """The book's root and the chapters to run, or a usage error naming the argument."""
    if args.all and args.chapters:
        parser.error("--all takes the chapters from _toc.yml: give --all or chapter paths, "
                     "not both")
    if not args.all and not args.chapters:
        parser.error("give chapter paths, or --all for every chapter of _toc.yml")
    root = args.root
    if root is not None and not (root / "_toc.yml").is_file():
        parser.error(f"--root {root}: no _toc.yml there")
    if args.all:
        root = root or book_root(Path.cwd())
        if root is None:
            parser.error(f"--all: no _toc.yml in {Path.cwd()} or above it; pass --root")
        try:
            chapters = toc_chapters(root)
        except (OSError, ValueError) as err:
            parser.error(f"--all: cannot read the chapters of {root / '_toc.yml'}: {err}")
    else:
        for p in args.chapters:
            if not p.is_file():
                parser.error(f"chapter {p}: no such file")
        chapters = list(args.chapters)
        root = root or book_root(chapters[0].parent) or Path.cwd()
    try:
        return root, select(chapters, args.only, root)
    except InputError as err:
        parser.error(str(err))


def _check_args(parser, args) -> None:
    if args.progress_every < 0:
        parser.error(f"--progress-every must be >= 0 seconds, got {args.progress_every}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        parser.error(f"--budget must be a number of seconds > 0, got {args.budget}")
    if args.ledger is not None:
        if args.ledger.suffix != ".json":
            parser.error(f"--ledger {args.ledger}: a ledger is a .json file")
        if args.ledger.is_dir():
            parser.error(f"--ledger {args.ledger}: is a folder, not a file")
    if args.worker and (len(args.chapters) != 1 or args.json is None):
        parser.error("--worker runs one chapter and needs --json")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if args.worker:
        return _worker(args)
    root, chapters = _chapters_of(parser, args)
    from . import profile as _profile

    try:
        profile = args.profile or _profile.name()
        device_type = _profile.device().type
    except _profile.ProfileError as err:
        parser.error(str(err))
    command = [Path(sys.executable).name, "-m", "dltheory.runner",
               *(sys.argv[1:] if argv is None else [str(a) for a in argv])]
    prov = None
    if args.ledger is not None:
        device = _ledger.device_info(device_type, _device_name(device_type))
        prov = _ledger.provenance(root=root, profile=profile, device=device,
                                  budget_s=args.budget, command=command)
    deadline = None if args.budget is None else time.perf_counter() + args.budget
    results: list[tuple[Path, dict]] = []
    for k, chapter in enumerate(chapters, 1):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            res = {"status": "not run: budget", "seconds": None, "peak_rss_mb": None,
                   "peak_device_mb": None, "error": None, "claims": []}
        else:
            res = run_isolated(chapter, profile=args.profile, timeout=args.timeout,
                               progress_every=args.progress_every, k=k,
                               total=len(chapters), seconds_left=left)
        results.append((chapter, res))
        print("\n".join(chapter_lines(str(chapter), res)), flush=True)
    named = [(docname(p, root), r) for p, r in results]
    print("\n".join(summary_lines(named)))
    if args.json:
        args.json.write_text(json.dumps(
            [{"chapter": str(p), **r} for p, r in results], indent=1))
    if prov is not None:
        data = {"format": _ledger.FORMAT, "version": _ledger.VERSION, "provenance": prov,
                "chapters": [ledger_entry(p, root, r) for p, r in results]}
        _ledger.write(args.ledger, data)
        print(f"ledger written to {args.ledger}")
    count = {s: sum(r["status"] == s for _, r in results) for s in _ledger.STATUSES}
    print(f"{count['passed']} chapters passed, {count['failed']} failed"
          + (f", {count['stopped: budget']} stopped by the budget"
             if count["stopped: budget"] else "")
          + (f", {count['not run: budget']} not run" if count["not run: budget"] else ""))
    if count["failed"]:
        return EXIT_FAILED
    return EXIT_BUDGET if count["stopped: budget"] or count["not run: budget"] else 0


if __name__ == "__main__":
    sys.exit(main())

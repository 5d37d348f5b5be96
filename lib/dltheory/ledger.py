"""The ledger of a full-profile run: what ran, where, on which code, and what it found.

``python -m dltheory.runner --all --profile full --ledger book/ledgers/<name>.json``
writes one; the Verification page reads every committed ``book/ledgers/*.json`` and shows,
beside each claim's ``ci`` result, its last full-profile result. A ledger is plain JSON
(no pickle), written and read only by this module::

    {"format": "dltheory-ledger", "version": 1,
     "provenance": {"date": "2026-12-03T19:33:00+00:00", "commit": "542af39...",
                    "dirty": false, "library_sha256": "9f2c...", "profile": "full",
                    "device": {"type": "cuda", "name": "NVIDIA H200"}, "torch": "2.5.1",
                    "cuda": "12.4", "cpu_count": 16, "torch_threads": 16,
                    "python": "3.11.9", "platform": "Linux-...", "budget_s": 600.0,
                    "command": ["python", "-m", "dltheory.runner", "--all", ...]},
     "chapters": [{"path": "book/kernels/path_kernel.md",
                   "docname": "book/kernels/path_kernel", "sha256": "41ab...",
                   "status": "passed", "seconds": 312.4, "peak_rss_mb": 2210.5,
                   "peak_device_mb": 15120.3, "error": null,
                   "claims": [<the records claims.check emitted>]}]}

A chapter's ``status`` is one of :data:`STATUSES`. A ledger is *stale* for a chapter when
the library's sources or that chapter's source changed since the run (:func:`stale`):
its numbers were measured on other code.

Pure functions: :func:`source_hash` and :func:`file_hash` (sha256 hex digests),
:func:`provenance` (the run's context), :func:`validate`, :func:`write` and :func:`read`
(which refuse a malformed ledger with a :class:`LedgerError` naming the file and the
field), :func:`read_all` (a folder of ledgers), :func:`stale`, :func:`date_of`, :func:`latest` and
:func:`claim_of`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError

__all__ = ["FORMAT", "VERSION", "STATUSES", "RAN", "LedgerError", "source_hash", "file_hash",
           "git_state", "device_info", "provenance", "validate", "write", "read", "read_all",
           "stale", "date_of", "latest", "claim_of"]

FORMAT = "dltheory-ledger"
VERSION = 1
STATUSES = ("passed", "failed", "stopped: budget", "not run: budget")
"""A chapter's status in a ledger."""
RAN = STATUSES[:3]
"""The statuses of a chapter that was executed (to its end or until the budget ran out)."""
CLAIM_FIELDS = {"name": str, "ok": bool, "status": str, "expect": str, "kind": str,
                "measured_text": str, "bound": str, "profile": str, "device": str}
"""The fields every claim record of a ledger has, with their types (the Verification page
reads these; the rest of :func:`dltheory.claims.check`'s record is kept as it was)."""
_HEX = re.compile(r"[0-9a-f]{64}")


class LedgerError(InputError):
    """A ledger that is missing, not JSON, or not of the ledger's structure."""


# ------------------------------------------------------------------------------ hashes


def source_hash(root: Path | str | None = None) -> str:
    """sha256 (hex) of the library's sources: every ``.py`` file under ``root`` (by default
    this package), by relative path and content, in sorted order."""
    root = Path(__file__).parent if root is None else Path(root)
    if not root.is_dir():
        raise LedgerError(f"source_hash: root {str(root)!r} is not a folder")
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def file_hash(path: Path | str) -> str:
    """sha256 (hex) of one file's bytes (a chapter's source)."""
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"file_hash: path {str(path)!r} is not a file")
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -------------------------------------------------------------------------- provenance


def git_state(root: Path | str = ".") -> dict:
    """``{"commit": hex or None, "dirty": bool or None}`` of the git checkout at ``root``:
    None where git is absent or ``root`` is not a checkout (never an error). ``dirty``:
    tracked files differ from the commit (untracked files do not count)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty}


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def device_info(device_type: str, name: str | None = None) -> dict:
    """``{"type": ..., "name": ...}``: the device the chapters ran on. The name of a CPU is
    its model (``/proc/cpuinfo``, else :func:`platform.processor`); of a GPU, ``name`` as
    the caller found it (``torch.cuda.get_device_name``); None when unknown."""
    if not isinstance(device_type, str) or not device_type:
        raise LedgerError(f"device_info: device_type must be a device type such as 'cpu' "
                          f"or 'cuda', got {device_type!r}")
    if name is None and device_type == "cpu":
        name = _cpu_name()
    return {"type": device_type, "name": name}


def provenance(*, root: Path | str, profile: str, device: dict, budget_s: float | None,
               command: list[str], library: str | None = None) -> dict:
    """The context of a run: UTC date-time, git commit and dirtiness of ``root``, the
    library hash (:func:`source_hash`, or ``library`` when the caller has it), torch, CUDA
    (``torch.version.cuda``) and python versions, CPU count and torch threads, the
    ``profile``, the ``device`` (:func:`device_info`), the ``budget_s`` (seconds or None)
    and the ``command`` line (a list of strings)."""
    import torch

    from .profile import PROFILES

    if profile not in PROFILES:
        raise LedgerError(f"provenance: profile must be one of {PROFILES}, got {profile!r}")
    if budget_s is not None and not (isinstance(budget_s, int | float)
                                     and not isinstance(budget_s, bool)
                                     and math.isfinite(budget_s) and budget_s >= 0):
        raise LedgerError(f"provenance: budget_s must be None or seconds >= 0, got "
                          f"{budget_s!r}")
    if not isinstance(command, list | tuple) or not all(isinstance(c, str) for c in command):
        raise LedgerError(f"provenance: command must be a list of strings, got {command!r}")
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **git_state(root),
        "library_sha256": source_hash() if library is None else library,
        "profile": profile,
        "device": dict(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "budget_s": None if budget_s is None else float(budget_s),
        "command": list(command),
    }


# -------------------------------------------------------------------------- validation


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _is(value, typ) -> bool:
    if typ is float:            # a JSON number: int or float, never a bool
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typ is not bool and isinstance(value, bool):
        return False
    return isinstance(value, typ)


def _field(where: str, obj: dict, key: str, types, prefix: str):
    if key not in obj:
        raise LedgerError(f"{where}: field {prefix + key!r} is missing")
    value = obj[key]
    if not any(_is(value, t) for t in (types if isinstance(types, tuple) else (types,))):
        raise LedgerError(f"{where}: field {prefix + key!r} must be {_type_name(types)}, "
                          f"got {type(value).__name__} {value!r:.60}")
    return value


def _date(where: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise LedgerError(f"{where}: field 'provenance.date' must be an ISO 8601 date-time, "
                          f"got {text!r}") from None
    if when.tzinfo is None:
        raise LedgerError(f"{where}: field 'provenance.date' must carry its time zone "
                          f"(UTC), got {text!r}")
    return when


def validate(data, where: str = "ledger") -> dict:
    """``data`` itself when it has the ledger's structure (see the module's docstring);
    else a :class:`LedgerError` naming ``where`` (the file) and the offending field."""
    from .profile import PROFILES

    if not isinstance(data, dict):
        raise LedgerError(f"{where}: a ledger is a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise LedgerError(f"{where}: field 'format' must be {FORMAT!r}, got "
                          f"{data.get('format')!r}; not a dltheory ledger")
    if data.get("version") != VERSION or isinstance(data.get("version"), bool):
        raise LedgerError(f"{where}: field 'version' must be {VERSION}, got "
                          f"{data.get('version')!r}")
    prov = _field(where, data, "provenance", dict, "")
    p = "provenance."
    _date(where, _field(where, prov, "date", str, p))
    _field(where, prov, "commit", (str, type(None)), p)
    _field(where, prov, "dirty", (bool, type(None)), p)
    if not _HEX.fullmatch(_field(where, prov, "library_sha256", str, p)):
        raise LedgerError(f"{where}: field 'provenance.library_sha256' must be a sha256 hex "
                          f"digest, got {prov['library_sha256']!r:.80}")
    if _field(where, prov, "profile", str, p) not in PROFILES:
        raise LedgerError(f"{where}: field 'provenance.profile' must be one of {PROFILES}, "
                          f"got {prov['profile']!r}")
    device = _field(where, prov, "device", dict, p)
    _field(where, device, "type", str, "provenance.device.")
    _field(where, device, "name", (str, type(None)), "provenance.device.")
    for key in ("torch", "python"):
        _field(where, prov, key, str, p)
    _field(where, prov, "cuda", (str, type(None)), p)
    _field(where, prov, "budget_s", (float, type(None)), p)
    command = _field(where, prov, "command", list, p)
    if not all(isinstance(c, str) for c in command):
        raise LedgerError(f"{where}: field 'provenance.command' must be a list of strings")
    chapters = _field(where, data, "chapters", list, "")
    for i, ch in enumerate(chapters):
        c = f"chapters[{i}]."
        if not isinstance(ch, dict):
            raise LedgerError(f"{where}: field 'chapters[{i}]' must be an object, got "
                              f"{type(ch).__name__}")
        for key in ("path", "docname"):
            _field(where, ch, key, str, c)
        if not _HEX.fullmatch(_field(where, ch, "sha256", str, c)):
            raise LedgerError(f"{where}: field '{c}sha256' must be a sha256 hex digest")
        if _field(where, ch, "status", str, c) not in STATUSES:
            raise LedgerError(f"{where}: field '{c}status' must be one of {STATUSES}, got "
                              f"{ch['status']!r}")
        for key in ("seconds", "peak_rss_mb", "peak_device_mb"):
            value = _field(where, ch, key, (float, type(None)), c)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise LedgerError(f"{where}: field '{c}{key}' must be >= 0, got {value!r}")
        _field(where, ch, "error", (str, type(None)), c)
        for j, rec in enumerate(_field(where, ch, "claims", list, c)):
            r = f"{c}claims[{j}]."
            if not isinstance(rec, dict):
                raise LedgerError(f"{where}: field '{c}claims[{j}]' must be an object")
            for key, typ in CLAIM_FIELDS.items():
                _field(where, rec, key, typ, r)
            if rec["expect"] not in ("pass", "fail"):
                raise LedgerError(f"{where}: field '{r}expect' must be 'pass' or 'fail', "
                                  f"got {rec['expect']!r}")
    return data


# ---------------------------------------------------------------------- write and read


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def write(path: Path | str, data: dict) -> Path:
    """Validate ``data`` (:func:`validate`) and write it as JSON to ``path`` (its folder is
    created; the file is replaced atomically). Returns the path."""
    path = Path(path)
    validate(data, str(path))
    try:
        text = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    except ValueError as err:           # a NaN or infinity: JSON has none
        raise LedgerError(f"{path}: the ledger holds a value JSON cannot write: {err}") \
            from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(path: Path | str) -> dict:
    """The ledger at ``path``, parsed with :mod:`json` only and validated (:func:`validate`);
    a :class:`LedgerError` naming the file (and the field) when it is missing, not UTF-8,
    not JSON (NaN and infinities included) or not of the ledger's structure."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LedgerError(f"{path}: no ledger there (file not found)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LedgerError(f"{path}: cannot read the ledger: {err}") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        raise LedgerError(f"{path}: not valid JSON: {err}") from None
    return validate(data, str(path))


def read_all(folder: Path | str) -> list[tuple[Path, dict]]:
    """Every ``*.json`` ledger in ``folder`` (sorted by name), read with :func:`read`; empty
    when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(p, read(p)) for p in sorted(folder.glob("*.json"))]


# ------------------------------------------------------------------------- staleness


def stale(data: dict, root: Path | str = ".", *, docname: str | None = None,
          library: str | None = None) -> str:
    """Why the results of ``data`` (a validated ledger) no longer describe the code at
    ``root`` (the book's root, to which chapter paths are relative), or ``""`` when they
    still do: the library's sources differ from the recorded ``library_sha256`` (``library``:
    the current hash, by default :func:`source_hash`), or a chapter's source differs from
    its recorded ``sha256`` or is gone. ``docname`` restricts the check to that chapter
    (and the library)."""
    current = source_hash() if library is None else library
    reasons = []
    if data["provenance"]["library_sha256"] != current:
        reasons.append("the library changed since the run")
    changed = []
    for ch in data["chapters"]:
        if docname is not None and ch["docname"] != docname:
            continue
        src = Path(root) / ch["path"]
        if not src.is_file():
            changed.append(f"{ch['path']} is gone")
        elif file_hash(src) != ch["sha256"]:
            changed.append(f"{ch['path']} changed")
    if changed:
        reasons.append("since the run " + ", ".join(changed))
    return "; ".join(reasons)


def date_of(data: dict) -> datetime:
    """When the run of a validated ledger started (an aware UTC datetime)."""
    return datetime.fromisoformat(data["provenance"]["date"])


def latest(ledgers: list[dict], docname: str, *, profile: str = "full") -> tuple | None:
    """``(ledger, chapter entry)`` of the most recent ledger (by recorded date) of the
    ``profile`` in which the chapter ``docname`` ran (status in :data:`RAN`); None when no
    ledger has it."""
    best = None
    for data in ledgers:
        if data["provenance"]["profile"] != profile:
            continue
        for ch in data["chapters"]:
            if ch["docname"] == docname and ch["status"] in RAN and (
                    best is None or date_of(data) > date_of(best[0])):
                best = (data, ch)
    return best


def claim_of(chapter: dict, name: str) -> dict | None:
    """The claim record named ``name`` in a ledger's chapter entry, or None."""
    return next((r for r in chapter["claims"] if r["name"] == name), None)

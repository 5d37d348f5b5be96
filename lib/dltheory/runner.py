"""Execute a chapter outside the book build and collect its claims.

    python -m dltheory.runner book/foundations/checking_a_theorem.md --profile full

runs the chapter (a MyST Markdown notebook) in a fresh kernel with the chosen profile,
prints every claim it checked, and exits non-zero, naming the claim, when a claim or a
cell fails. The tests use it for fixture chapters; on a GPU machine it is the quickest way
to run one chapter at full scale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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


def run_chapter(path, *, profile: str | None = None, timeout: int = 1800) -> ChapterRun:
    """Execute the notebook at ``path`` (``.md`` via jupytext, or ``.ipynb``) in a new kernel."""
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no chapter at {path}")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    nb = jupytext.read(path)
    run = ChapterRun(path=path, notebook=nb)
    old = os.environ.get(ENV_PROFILE)
    if profile is not None:
        os.environ[ENV_PROFILE] = profile
    os.environ.setdefault("TQDM_DISABLE", "1")
    start = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}})
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
    run.claims = claims_of(nb)
    return run


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
    args = parser.parse_args(argv)
    failed, everything = 0, []
    for chapter in args.chapters:
        run = run_chapter(chapter, profile=args.profile, timeout=args.timeout)
        print(f"== {chapter} ({run.seconds:.1f} s)")
        for rec in run.claims:
            said = _claims.rejects_text(rec)
            print(f"   {'✔' if rec['ok'] else '✘'} {rec['name']} [{rec.get('kind')}]: "
                  f"measured {rec['measured_text']} {rec['bound']} -> {rec['status']}"
                  + (f"; {said}" if said else ""))
        if run.error:
            print(f"   chapter failed: {run.error}")
        failed += not run.ok
        everything.append({"chapter": str(chapter), "seconds": run.seconds,
                           "error": run.error, "claims": run.claims})
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    print(f"{len(args.chapters) - failed} chapters passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

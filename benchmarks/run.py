"""``python benchmarks/run.py``: the same runner as ``python -m benchmarks``."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

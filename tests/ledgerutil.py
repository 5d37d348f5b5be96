"""Tiny fixture chapters and books for the tests of the full-profile runner and its ledger.

A tiny chapter checks two claims whose measured value is ``profile.pick(ci=10, full=1000)``,
so a ledger shows which profile ran it; a slow one checks a claim, writes its kernel's pid
to ``kernel.pid`` beside it, and then sleeps far longer than any test's budget.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import yaml

from bookutil import HEADER, ROOT

CI_SIZE, FULL_SIZE = 10, 1000


def tiny_chapter(name: str) -> str:
    """A chapter with a statement ``thm-<name>`` and two claims checking it: ``<name>.size``
    (the profile's size, ``<= 1000``) and the control ``<name>.control``."""
    return HEADER + textwrap.dedent(f"""
        # Tiny chapter {name}

        ```{{prf:theorem}} Sizes are bounded
        :label: thm-{name}

        The profile's size is at most {FULL_SIZE}.
        ```

        The size of the run is picked by the profile.

        ```{{code-cell}} ipython3
        from dltheory import claims, profile

        n = profile.pick(ci={CI_SIZE}, full={FULL_SIZE})
        claims.check("{name}.size", n, "<=", {FULL_SIZE}, theorem="thm-{name}",
                     kind="theorem")
        claims.check("{name}.control", n, ">=", {10 * FULL_SIZE}, theorem="thm-{name}",
                     kind="theorem", expect="fail", breaks="the size read as ten times more")
        ```
        """)


def slow_chapter(name: str, sleep: float = 600) -> str:
    """A chapter that checks ``<name>.first``, writes its kernel's pid to ``kernel.pid`` and
    then sleeps ``sleep`` seconds."""
    return HEADER + textwrap.dedent(f"""
        # Slow chapter {name}

        ```{{code-cell}} ipython3
        import os
        from pathlib import Path
        from dltheory import claims

        Path("kernel.pid").write_text(str(os.getpid()))
        claims.check("{name}.first", 0.5, "<=", 1.0, theorem="thm-{name}", kind="theorem")
        ```

        ```{{code-cell}} ipython3
        import time

        time.sleep({sleep})
        ```
        """)


def tiny_book(path: Path, chapters: dict[str, str], *, verification: bool = False) -> Path:
    """A book at ``path``: an index (not a notebook), the chapters ``{name: source}`` under
    ``book/`` in that order, and, with ``verification``, a copy of the Verification page."""
    (path / "book").mkdir(parents=True, exist_ok=True)
    (path / "book" / "index.md").write_text("# Fixture\n\nA fixture book.\n")
    entries = []
    for name, text in chapters.items():
        (path / "book" / f"{name}.md").write_text(text)
        entries.append({"file": f"book/{name}"})
    if verification:
        shutil.copy(ROOT / "book" / "verification.md", path / "book" / "verification.md")
        entries.append({"file": "book/verification"})
    toc = {"format": "jb-book", "root": "book/index", "chapters": entries}
    (path / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return path

"""Helpers to build the real book, or small fixture books, with jupyter-book."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_FLAGS = ["-W", "-n", "--keep-going"]


def jupyter_book() -> str:
    exe = Path(sys.executable).parent / "jupyter-book"
    return str(exe) if exe.exists() else "jupyter-book"


def build(path: Path, *, env: dict | None = None, timeout: int = 1800,
          extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the README's build command on the book at ``path``; returns the finished process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([jupyter_book(), "build", str(path), *BUILD_FLAGS, *(extra or [])],
                          capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=path)


def ledger(path: Path) -> dict:
    return json.loads((path / "_build" / "html" / "claims.json").read_text())


HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

CHAPTER = HEADER + textwrap.dedent("""
    # A fixture chapter

    ```{prf:theorem} Training lowers the loss
    :label: thm-fixture

    A few steps of gradient descent on two moons lower the logistic loss {cite:p}`jacot2018neural`.
    ```

    ```{code-cell} ipython3
    import torch
    from dltheory import claims, data, profile, prose

    gen = profile.seed(3)
    X, y = data.two_moons(64, seed=3)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    net = net.double()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start = loss_fn(net(X).squeeze(1), y.double()).item()
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn(net(X).squeeze(1), y.double())
        loss.backward()
        opt.step()
    final = loss_fn(net(X).squeeze(1), y.double())
    prose.glue("final", final.item())
    claims.check("fixture.loss_ratio", final / start, "<=", __BOUND__, theorem="__LABEL__",
                 kind="theorem", rivals=__RIVALS__)
    claims.check("fixture.control", final / start, ">=", 1.0, theorem="thm-fixture",
                 kind="theorem", expect="fail", breaks="enough steps of a positive step size")
    ```

    The final loss is {glue:text}`final:.4f`. __EXTRA__

    ```{code-cell} ipython3
    claims.table()
    ```
    """)


def fixture_book(path: Path, *, bound: str = "1.0", label: str = "thm-fixture",
                 extra: str = "", chapter: str | None = None,
                 rivals: str = '{"the loss falls by 90%": 0.1}') -> Path:
    """Write a one-chapter book at ``path`` using the real ``_config.yml`` and extension."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = "Fixture book"
    (path / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    toc = {"format": "jb-book", "root": "book/index",
           "chapters": [{"file": "book/chapter"}, {"file": "book/verification"}]}
    (path / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (path / "book").mkdir(exist_ok=True)
    shutil.copy(ROOT / "book" / "references.bib", path / "book" / "references.bib")
    shutil.copy(ROOT / "book" / "verification.md", path / "book" / "verification.md")
    shutil.copy(ROOT / "CITATION.cff", path / "CITATION.cff")
    (path / "book" / "index.md").write_text(
        "# Fixture\n\n```{bibliography}\n```\n")
    text = chapter if chapter is not None else CHAPTER
    text = text.replace("__BOUND__", bound).replace("__LABEL__", label)
    text = text.replace("__EXTRA__", extra).replace("__RIVALS__", rivals)
    (path / "book" / "chapter.md").write_text(text)
    return path

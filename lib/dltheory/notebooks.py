"""The ``.ipynb`` twins of the chapters (for Colab, which cannot open MyST Markdown).

Every chapter is written as a MyST Markdown notebook (``.md``). Beside it the repository
keeps an ``.ipynb`` with the same cells and no outputs; the launch buttons point to it.

    python -m dltheory.notebooks sync     # regenerate the .ipynb twins from the .md sources
    python -m dltheory.notebooks check    # exit 1 and name the chapters that are out of sync
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def toc_files(root: Path) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (without suffix), in order."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    out.append(str(node[key]))
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return out


def source_of(root: Path, entry: str) -> Path:
    """The source file of a toc entry (``.md`` or ``.ipynb``)."""
    for suffix in (".md", ".ipynb", ".rst"):
        p = Path(root) / (entry + suffix)
        if p.exists():
            return p
    raise FileNotFoundError(f"_toc.yml names {entry!r} but no {entry}.md/.ipynb/.rst exists")


def is_notebook(path: Path) -> bool:
    """A MyST Markdown file with a jupytext header and a kernelspec is a notebook."""
    text = Path(path).read_text()
    if not text.startswith("---"):
        return False
    header = yaml.safe_load(text.split("---", 2)[1]) or {}
    return "jupytext" in header and "kernelspec" in header


def chapters(root: Path) -> list[Path]:
    """The notebook chapters of the book, in table-of-contents order."""
    paths = [source_of(root, e) for e in toc_files(root)]
    return [p for p in paths if p.suffix == ".md" and is_notebook(p)]


def twin(md: Path) -> Path:
    return Path(md).with_suffix(".ipynb")


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", [])))
            for c in nb.cells]


def render(md: Path):
    """The ``.ipynb`` notebook of a chapter: same cells, no outputs, stable cell ids."""
    import jupytext

    nb = jupytext.read(md)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("jupytext", None)
    return nb


def out_of_sync(root: Path) -> list[str]:
    """Chapters whose ``.ipynb`` twin is missing or differs from the ``.md``."""
    import nbformat

    bad = []
    for md in chapters(root):
        ipynb = twin(md)
        if not ipynb.exists():
            bad.append(f"{ipynb} is missing")
            continue
        if _cells(render(md)) != _cells(nbformat.read(ipynb, as_version=4)):
            bad.append(f"{ipynb} differs from {md}")
    return bad


def sync(root: Path) -> list[Path]:
    """Write every chapter's ``.ipynb`` twin; returns the files written."""
    import nbformat

    written = []
    for md in chapters(root):
        nbformat.write(render(md), twin(md))
        written.append(twin(md))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dltheory.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("sync", "check"))
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    if args.command == "sync":
        for p in sync(args.root):
            print(f"wrote {p}")
        return 0
    bad = out_of_sync(args.root)
    for line in bad:
        print(line)
    if bad:
        print("run `python -m dltheory.notebooks sync` and commit the .ipynb files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

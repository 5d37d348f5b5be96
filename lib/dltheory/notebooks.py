"""The ``.ipynb`` twins of the chapters (for Colab, which cannot open MyST Markdown).

Every chapter is written as a MyST Markdown notebook (``.md``). Beside it the repository
keeps an ``.ipynb`` with the same cells and no outputs; the launch buttons point to it.

Two cells of a twin are generated here, not copied: its install cell (the chapter's code
cell that starts with :data:`INSTALL_MARK`) installs the library pinned to the book's
version, ``git+<repository url>@v<version>`` (:func:`install_source`), with the version of
``dltheory.__version__`` and the repository of ``_config.yml``; and a first markdown cell
(:func:`colab_note`) says what Colab will install and that a GPU runtime switches the
chapter to the ``full`` profile. The pin is a git tag, ``v`` + the version: releasing a
version means tagging its commit ``v<version>`` and pushing the tag, so that the twins of
that commit install exactly its library (a commit hash cannot pin the commit it is in).

    python -m dltheory.notebooks sync     # regenerate the .ipynb twins from the .md sources
    python -m dltheory.notebooks check    # exit 1 and name the chapters that are out of sync
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from . import __version__

INSTALL_MARK = "# In Colab, install the book's library first"


def repository_url(root: Path) -> str:
    """The repository URL of ``_config.yml`` (``repository.url``), without a trailing ``/``."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text()) or {}
    url = str((config.get("repository") or {}).get("url", "")).rstrip("/")
    if not url.startswith("https://"):
        raise ValueError(f"_config.yml's repository.url must be an https URL, got {url!r}")
    return url


def version_tag(version: str = __version__) -> str:
    """The git tag of a version of the book: ``0.1.0`` -> ``v0.1.0``."""
    parts = str(version).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"version must look like MAJOR.MINOR.PATCH, got {version!r}")
    return f"v{version}"


def install_source(url: str, version: str = __version__) -> str:
    """The code of a twin's install cell: pip-installs ``git+url@v<version>`` when the
    library is missing (in Colab), and nothing when it is present."""
    if not str(url).startswith("https://"):
        raise ValueError(f"url must be an https URL, got {url!r}")
    tag = version_tag(version)
    return (
        f"{INSTALL_MARK} (nothing is downloaded when it is present).\n"
        f"# Pinned to the book's version {version}: the git tag {tag} of the repository.\n"
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if importlib.util.find_spec("dltheory") is None:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
        f'                    "git+{url}@{tag}"],\n'
        "                   check=True)"
    )


def colab_note(url: str, version: str = __version__) -> str:
    """The first markdown cell of a twin: what Colab installs, and the profile a GPU picks.

    Full-profile times have not been measured on a GPU; the note says so rather than
    guessing one.
    """
    tag = version_tag(version)
    return (
        f"> **Running this notebook in Colab.** The first code cell installs the book's "
        f"library `dltheory` {version} (git tag `{tag}` of {url}), the version this "
        "chapter was checked with.\n>\n"
        "> On a **GPU runtime the chapter switches by itself to the `full` profile** "
        "(`dltheory.profile` picks `full` whenever CUDA is present): the sizes of the "
        "papers' figures, far longer than the `ci` profile the online book was built with "
        "(a few minutes per chapter on two CPU cores). Full-profile times have not yet been "
        "measured on a GPU, so none is promised here.\n>\n"
        "> To run the small `ci` profile on any runtime, execute "
        "`import os; os.environ[\"DLTHEORY_PROFILE\"] = \"ci\"` before the other cells."
    )


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


def render(md: Path, root: Path | None = None):
    """The ``.ipynb`` notebook of a chapter: same cells, no outputs, stable cell ids; the
    install cell pinned (:func:`install_source`) and the Colab note (:func:`colab_note`)
    first. ``root`` is the repository root (default: the parent of ``md``'s ``book/``).

    A chapter without an install cell gets one after its first cell; one with several is
    an error naming it.
    """
    import jupytext
    import nbformat

    md = Path(md)
    if root is None:
        root = next((p.parent for p in md.resolve().parents if p.name == "book"), None)
        if root is None:
            raise ValueError(f"md must lie under a book/ folder, or pass root; got {md}")
    url = repository_url(root)
    nb = jupytext.read(md)
    install = [c for c in nb.cells
               if c.cell_type == "code" and c.source.lstrip().startswith(INSTALL_MARK)]
    if len(install) > 1:
        raise ValueError(f"{md} has {len(install)} install cells starting with "
                         f"{INSTALL_MARK!r}; keep one")
    if install:
        install[0].source = install_source(url)
    else:
        cell = nbformat.v4.new_code_cell(install_source(url))
        cell.metadata["tags"] = ["remove-cell"]
        nb.cells.insert(min(1, len(nb.cells)), cell)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(colab_note(url)))
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
        if _cells(render(md, root)) != _cells(nbformat.read(ipynb, as_version=4)):
            bad.append(f"{ipynb} differs from {md}")
    return bad


def sync(root: Path) -> list[Path]:
    """Write every chapter's ``.ipynb`` twin; returns the files written."""
    import nbformat

    written = []
    for md in chapters(root):
        nbformat.write(render(md, root), twin(md))
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

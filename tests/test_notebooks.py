"""The Colab twins: the install cell pinned to the book's version, the note on profiles."""

from __future__ import annotations

import re

import nbformat
import pytest
import yaml

import dltheory
from bookutil import ROOT, fixture_book
from dltheory import notebooks

URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def _install_cells(nb) -> list:
    return [c for c in nb.cells
            if c.cell_type == "code" and c.source.startswith(notebooks.INSTALL_MARK)]


def test_the_book_has_one_version():
    """The tag the twins install is v + dltheory.__version__; the package and the citation
    must carry the same version, or the pin names a release that is not this one."""
    project = re.search(r'(?m)^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text())
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert project is not None and project.group(1) == dltheory.__version__
    assert str(citation["version"]) == dltheory.__version__


def test_install_source_pins_the_version_tag():
    src = notebooks.install_source(URL, "1.2.3")
    assert src.startswith(notebooks.INSTALL_MARK)
    assert f'"git+{URL}@v1.2.3"' in src
    assert re.findall(r"git\+\S+", src) == [f'git+{URL}@v1.2.3"],']
    compile(src, "<install cell>", "exec")                  # it is valid Python
    assert notebooks.version_tag("0.1.0") == "v0.1.0"


@pytest.mark.parametrize("version", ["0.1", "v0.1.0", "0.1.0rc1", "", "0.1.0.0"])
def test_version_tag_rejects_a_malformed_version(version):
    with pytest.raises(ValueError, match=r"version must look like MAJOR.MINOR.PATCH, got "):
        notebooks.version_tag(version)


@pytest.mark.parametrize("url", ["http://example.org/repo", "github.com/a/b", ""])
def test_install_source_and_colab_note_reject_a_non_https_url(url):
    with pytest.raises(ValueError, match=r"url must be an https URL, got "):
        notebooks.install_source(url)


def test_repository_url_must_be_https(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  url: git@github.com:a/b.git\n")
    with pytest.raises(ValueError, match=r"repository.url must be an https URL, got "
                                         r"'git@github.com:a/b.git'"):
        notebooks.repository_url(tmp_path)
    assert notebooks.repository_url(ROOT) == URL


def test_every_twin_installs_the_pinned_version_and_says_what_a_gpu_does():
    chapters = notebooks.chapters(ROOT)
    assert chapters, "no chapter found through _toc.yml"
    tag = f"v{dltheory.__version__}"
    for md in chapters:
        nb = nbformat.read(notebooks.twin(md), as_version=4)
        cells = _install_cells(nb)
        assert len(cells) == 1, f"{md}: {len(cells)} install cells in its twin"
        assert cells[0].source == notebooks.install_source(URL), md
        assert f"@{tag}\"" in cells[0].source
        assert "git+" + URL + '"' not in cells[0].source, f"{md}: unpinned install"
        note = nb.cells[0]
        assert note.cell_type == "markdown", md
        assert note.source == notebooks.colab_note(URL), md
        for words in (f"`{tag}`", "GPU runtime", "`full` profile", "not yet been measured",
                      'DLTHEORY_PROFILE"] = "ci"'):
            assert words in note.source, f"{md}: the Colab note lacks {words!r}"


def test_the_chapters_own_install_cells_are_pinned_too():
    """The .md sources carry the same install cell as their twins (the twin's is generated,
    so a stale source cell would mislead a reader of the source, not Colab)."""
    for md in notebooks.chapters(ROOT):
        assert notebooks.install_source(URL) in md.read_text(), md


def test_render_adds_a_missing_install_cell_and_refuses_two(tmp_path):
    book = fixture_book(tmp_path / "book")
    md = book / "book" / "chapter.md"
    assert notebooks.INSTALL_MARK not in md.read_text()
    nb = notebooks.render(md)
    cells = _install_cells(nb)
    assert len(cells) == 1 and cells[0].metadata["tags"] == ["remove-cell"]
    assert nb.cells.index(cells[0]) == 2           # after the note and the chapter's first cell
    cell = "\n```{code-cell} ipython3\n" + notebooks.INSTALL_MARK + "\nimport sys\n```\n"
    md.write_text(md.read_text() + cell + cell)
    with pytest.raises(ValueError, match=r"has 2 install cells starting with"):
        notebooks.render(md)


def test_render_needs_a_root_outside_a_book_folder(tmp_path):
    md = tmp_path / "chapter.md"
    md.write_text("# A chapter\n")
    with pytest.raises(ValueError, match=r"md must lie under a book/ folder, or pass root"):
        notebooks.render(md)


def test_every_figure_cell_ends_in_plot_show():
    """``plot.show()`` refuses a figure whose text would be illegible in the column, so
    every chapter cell that makes a figure must show it through ``plot.show()``."""
    import jupytext

    for md in notebooks.chapters(ROOT):
        for cell in jupytext.read(md).cells:
            src = cell.source
            if cell.cell_type != "code" or not re.search(r"plot\.figure\(|plt\.subplots?\(", src):
                continue
            assert "plt.show()" not in src, f"{md}: a figure shown with plt.show()"
            assert src.rstrip().endswith("plot.show()"), (
                f"{md}: a figure cell does not end in plot.show():\n{src[:200]}")

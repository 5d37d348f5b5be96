"""Tests of the real book's built HTML (``_build/html``).

The book is built once (by ``.ci/run`` before the tests, or by the fixture below when the
build is missing or older than a source) and then inspected: every table-of-contents
entry has a page, no math is left raw, every figure exists, the Verification page lists
the claims of every chapter, no page needs a CDN, launch and download targets exist, and
a browser with no network renders the math.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

from bookutil import ROOT, build
from dltheory import claims, notebooks

pytestmark = pytest.mark.book
HTML = ROOT / "_build" / "html"


def _sources() -> list[Path]:
    files = [ROOT / "_config.yml", ROOT / "_toc.yml", ROOT / "CITATION.cff"]
    for folder in ("book", "lib/dltheory"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts]
    return files


@pytest.fixture(scope="session")
def html() -> Path:
    stamp = HTML / "claims.json"
    newest = max(p.stat().st_mtime for p in _sources())
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        proc = build(ROOT)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return HTML


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in (html / "book").rglob("*.html"))


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def test_every_toc_entry_has_a_page(html):
    entries = notebooks.toc_files(ROOT)
    assert entries, "_toc.yml lists nothing"
    for entry in entries:
        assert (html / f"{entry}.html").is_file(), f"no page for toc entry {entry}"


def test_no_math_is_left_raw(html):
    raw = re.compile(r"\$[^$\s][^$]*\$|\\\(|\\\[|\\begin\{|\\frac|\\lVert")
    for page in _pages(html):
        soup = _soup(page)
        for tag in soup(["script", "style", "pre", "code", "textarea"]):
            tag.decompose()
        for tag in soup.select(".math, .MathJax, .highlight"):
            tag.decompose()
        text = soup.get_text(" ")
        hit = raw.search(text)
        assert hit is None, f"{page.relative_to(html)}: raw math {text[hit.start():][:80]!r}"


def test_no_cell_shows_the_repr_of_a_matplotlib_object(html):
    """A cell ending in ``ax.legend()`` prints ``<matplotlib.legend.Legend at 0x...>``: noise
    on the page. Figure cells end with ``plot.show()``."""
    stray = re.compile(r"<matplotlib\.[\w.]+ (at|object at) 0x|^Text\(\d", re.M)
    for page in _pages(html):
        for out in _soup(page).select(".cell_output .output.text_plain"):
            hit = stray.search(out.get_text())
            assert hit is None, f"{page.relative_to(html)}: a cell shows {hit.group(0)!r}..."


def test_math_is_present_for_mathjax(html):
    page = _soup(html / "book/foundations/checking_a_theorem.html")
    assert len(page.select(".math")) > 20


def test_every_figure_file_exists(html):
    n_images = 0
    for page in _pages(html):
        for img in _soup(page).find_all("img"):
            src = img.get("src", "")
            if src.startswith("data:"):
                n_images += 1
                continue
            assert not urlparse(src).scheme, f"{page.name}: remote image {src}"
            target = (page.parent / unquote(src)).resolve()
            assert target.is_file(), f"{page.relative_to(html)}: missing figure {src}"
            n_images += 1
    assert n_images > 0


def test_verification_page_has_claims_of_every_chapter(html):
    data = json.loads((html / "claims.json").read_text())
    by_doc = {c["doc"]: c["claims"] for c in data["chapters"]}
    page = _soup(html / "book/verification.html")
    rows = page.select("table.dltheory-ledger tbody tr")
    chapters = notebooks.chapters(ROOT)
    assert chapters
    for md in chapters:
        doc = md.relative_to(ROOT).with_suffix("").as_posix()
        assert by_doc.get(doc), f"no claim recorded for chapter {doc}"
        names = {r["name"] for r in by_doc[doc]}
        in_table = [r for r in rows if any(n in r.get_text() for n in names)]
        assert len(in_table) >= 1, f"the Verification page lists no claim of {doc}"
        heads = [p.get_text() for p in page.select("p.dltheory-ledger-chapter")]
        assert any(h.startswith(soup_title(html, doc)) for h in heads), heads
        # negative controls are shown as having failed as expected
        controls = [r for r in by_doc[doc] if r["expect"] == "fail"]
        assert all(r["status"] == "failed as expected" for r in controls)
    n_claims = sum(len(v) for v in by_doc.values())
    assert len(rows) == n_claims
    for row in rows:
        cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
        # claim, kind, theorem, measured, bound, status, rejects / breaks, run, wall
        assert len(cells) == 9
        assert cells[1] in claims.KINDS, cells
        assert cells[5] in ("passed", "failed as expected"), cells
        if cells[0].endswith("(negative control)"):
            assert cells[6].startswith("breaks: "), cells
        assert cells[7].split(" · ")[0] in ("ci", "full"), cells
    # every prediction names rivals and every rival is rejected
    for recs in by_doc.values():
        for r in recs:
            if r["kind"] == "prediction" and r["expect"] == "pass":
                assert r["rivals"] and all(not v["passes"] for v in r["rivals"]), r["name"]
    text = page.get_text(" ", strip=True)
    assert f"All {n_claims} claims in {len(chapters)} chapters came out as expected" in text


def soup_title(html: Path, doc: str) -> str:
    return _soup(html / f"{doc}.html").find("h1").get_text().strip("#¶ \n")


REMOTE = re.compile(r"^(https?:)?//", re.I)


def test_no_page_needs_a_cdn(html):
    for page in [*_pages(html), html / "index.html"]:
        soup = _soup(page)
        for tag in soup.find_all("script", src=True):
            assert not REMOTE.match(tag["src"]), f"{page.name} loads {tag['src']}"
        for tag in soup.find_all("link", href=True):
            rel = " ".join(tag.get("rel", []))
            if "stylesheet" in rel or "preload" in rel or "icon" in rel:
                assert not REMOTE.match(tag["href"]), f"{page.name} loads {tag['href']}"
        for tag in soup.find_all("script", src=True):
            src = tag["src"].split("?")[0]
            assert (page.parent / src).resolve().is_file(), f"{page.name}: missing {src}"
    for css in html.rglob("*.css"):
        assert not re.search(r"@import\s+(url\()?['\"]?(https?:)?//", css.read_text()), css


def test_mathjax_is_served_from_the_build(html):
    page = _soup(html / "book/foundations/checking_a_theorem.html")
    srcs = [t["src"] for t in page.find_all("script", src=True) if "mathjax" in t["src"]]
    assert srcs, "no MathJax script on a page with math"
    for src in srcs:
        assert not REMOTE.match(src)
        assert (html / "book/foundations" / src.split("?")[0]).resolve().is_file()
    fonts = list((html / "_static/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
    assert len(fonts) > 10


def test_launch_and_download_targets(html):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlparse(config["repository"]["url"]).path.strip("/")
    branch = config["repository"]["branch"]
    for md in notebooks.chapters(ROOT):
        doc = md.relative_to(ROOT).with_suffix("").as_posix()
        soup = _soup(html / f"{doc}.html")
        colab = [a["href"] for a in soup.find_all("a", href=True)
                 if "colab.research.google.com" in a["href"]]
        assert colab, f"{doc}: no Colab button"
        expected = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{doc}.ipynb"
        assert colab == [expected], colab
        ipynb = ROOT / f"{doc}.ipynb"
        assert ipynb.is_file(), f"the Colab target {ipynb} does not exist"
        nb = nbformat.read(ipynb, as_version=4)
        assert nbformat.validate(nb) is None
        assert notebooks._cells(nb) == notebooks._cells(notebooks.render(md))
        # Download buttons: the source and the executed notebook.
        downloads = {a["href"] for a in soup.find_all("a", href=True) if "_sources" in a["href"]}
        assert any(h.endswith(".md") for h in downloads), downloads
        assert any(h.endswith(".ipynb") for h in downloads), downloads
        for href in downloads:
            assert (html / f"{doc}.html").parent.joinpath(href).resolve().is_file(), href


def test_every_chapter_ends_with_its_claims_table_and_citation(html):
    for md in notebooks.chapters(ROOT):
        doc = md.relative_to(ROOT).with_suffix("").as_posix()
        soup = _soup(html / f"{doc}.html")
        assert soup.select("table.dltheory-claims"), f"{doc}: no claims table"
        cite = soup.select(".dltheory-cite")
        assert cite and "@incollection" in cite[0].get_text(), f"{doc}: no citation"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_math_renders_in_a_browser_without_network(html, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("DLTHEORY_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (DLTHEORY_REQUIRE_BROWSER) but not installed")
        pytest.skip("chromium is not installed (CI installs it)")
    page = html / "book/foundations/checking_a_theorem.html"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}",
         # no network at all: every host resolves to nothing and every proxy is dead
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
         "--allow-file-access-from-files", "--virtual-time-budget=20000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert "<html" in dom, proc.stderr[-2000:]
    n_source = len(_soup(page).select(".math"))
    n_rendered = dom.count("<mjx-container")
    assert n_rendered >= n_source > 0, (n_rendered, n_source)
    soup = BeautifulSoup(dom, "html.parser")
    for tag in soup(["script", "style", "pre", "code", "mjx-assistive-mml"]):
        tag.decompose()
    assert "\\(" not in soup.get_text() and "\\lVert" not in soup.get_text()

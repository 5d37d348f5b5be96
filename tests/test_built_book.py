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
from concurrent.futures import ThreadPoolExecutor
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
    records = [r for md in chapters
               for r in by_doc[md.relative_to(ROOT).with_suffix("").as_posix()]]
    assert len(records) == len(rows)
    for row, rec in zip(rows, records, strict=True):
        _check_claim_row(row, rec)
    # every prediction names rivals and every rival is rejected
    for recs in by_doc.values():
        for r in recs:
            if r["kind"] == "prediction" and r["expect"] == "pass":
                assert r["rivals"] and all(not v["passes"] for v in r["rivals"]), r["name"]
    text = page.get_text(" ", strip=True)
    assert f"All {n_claims} claims in {len(chapters)} chapters came out as expected" in text


STATEMENT = re.compile(r"[A-Z][a-z]+ \d+(\.\d+)*")


def _check_claim_row(row, rec: dict) -> None:
    """One row of a claims table against its record: the verdict first (a control does not
    wear the passing check), the kind under the name, the statement as "Theorem 2" linked
    to it, the numbers rounded (:func:`claims.shown_numbers`), the run under what the claim
    rejects."""
    cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
    assert len(cells) == len(claims.TABLE_COLUMNS) == 6, cells
    control = rec["expect"] == "fail"
    assert ("claim-control" in row.get("class", [])) == control
    assert cells[0] == ("⊘ failed as expected" if control else "✔ passed"), cells
    assert row.select_one(".claim-name").get_text() == rec["name"]
    assert row.select_one(".claim-kind").get_text().split(",")[0] == rec["kind"]
    link = row.find_all("td")[2].find("a", href=True)
    assert link is not None and link["href"].endswith(f"#{rec['theorem']}"), cells
    assert STATEMENT.fullmatch(cells[2]), f"{rec['name']}: checks {cells[2]!r}"
    assert (cells[3], cells[4]) == claims.shown_numbers(rec), cells
    if control:
        assert cells[5].startswith("breaks: "), cells
    assert row.select_one(".claim-run").get_text().split(" · ")[0] in ("ci", "full"), cells


def test_chapter_tables_link_statements_by_number_and_round_numbers(html):
    """Each chapter's closing table lists its claims as the Verification page does; the
    statement a claim checks reads as it does in the text ("Theorem 2"), and the numbers are
    rounded to the tolerance's precision (``1 ± 0.0634``, not ``1 ± 0.06339968441406578``)."""
    data = json.loads((html / "claims.json").read_text())
    # the label each statement has in the text, where {prf:ref} names it
    refs = {a["href"].split("#")[-1]: a.get_text() for page in _pages(html)
            for a in _soup(page).select("a.reference.internal[href*='#']")}
    n_rounded = 0
    for chapter in data["chapters"]:
        soup = _soup(html / f"{chapter['doc']}.html")
        rows = soup.select("table.dltheory-claims tbody tr")
        assert len(rows) == len(chapter["claims"]), chapter["doc"]
        for row, rec in zip(rows, chapter["claims"], strict=True):
            _check_claim_row(row, rec)
            n_rounded += claims.shown_numbers(rec) != (rec["measured_text"],
                                                       rec["bound"].removeprefix("== "))
        for row, rec in zip(rows, chapter["claims"], strict=True):
            if rec["theorem"] in refs and STATEMENT.fullmatch(refs[rec["theorem"]]):
                assert row.find_all("td")[2].get_text(strip=True) == refs[rec["theorem"]]
    assert n_rounded > 50, "rounding changed almost nothing: is it applied?"


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


# ------------------------------------------------------- nothing overflows its column

# Injected at the end of a copy of each page: once MathJax has typeset the page and the
# fonts are in, it measures every math container (display and inline), table and code
# block against the main content column (``article.bd-article``) and against every
# ancestor that clips or scrolls, and writes the findings as JSON into an element that
# ``--dump-dom`` then shows. An element overflows when its natural right edge (a table's
# own box, the ``mjx-math`` inside a math container, a code block's scroll width) lies
# beyond the nearest such edge: it is either cut off or needs a horizontal scroll.
MEASURE_JS = r"""
(function () {
  function px(v) { return parseFloat(v) || 0; }
  function contentRight(el) {
    var s = getComputedStyle(el), r = el.getBoundingClientRect();
    return r.left + el.clientLeft + el.clientWidth - px(s.paddingRight);
  }
  function clipRight(el, col) {
    var right = contentRight(col);
    for (var a = el; a && a !== col; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') right = Math.min(right, contentRight(a));
    }
    return right;
  }
  function where(el) {
    var box = el.closest('div.proof');
    if (box) {
      var title = box.querySelector('.admonition-title');
      return (box.id ? '#' + box.id + ' ' : '') +
             (title ? title.textContent.replace(/\s+/g, ' ').trim().slice(0, 60) : '');
    }
    var cell = el.closest('div.cell');
    if (cell) return (el.closest('.cell_output') ? 'output' : 'input') + ' of a code cell';
    var sec = el.closest('section[id]');
    return sec ? 'section #' + sec.id : '';
  }
  function tex(el) {
    try {
      var items = MathJax.startup.document.math.toArray ? MathJax.startup.document.math.toArray()
                  : Array.from(MathJax.startup.document.math);
      for (var i = 0; i < items.length; i++) {
        if (items[i].typesetRoot === el) return items[i].math.replace(/\s+/g, ' ').slice(0, 90);
      }
    } catch (e) {}
    return '';
  }
  function visible(el) { var r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; }
  function measure() {
    var col = document.querySelector('article.bd-article');
    var colRect = col.getBoundingClientRect();
    var found = [], counts = {math: 0, table: 0, code: 0};
    function report(kind, el, right, label) {
      counts[kind] += 1;
      var over = right - clipRight(el, col);
      if (over > 1.5) found.push({kind: kind, px: Math.round(over), where: where(el), what: label});
    }
    document.querySelectorAll('article.bd-article mjx-container').forEach(function (el) {
      var inner = el.querySelector('mjx-math');
      if (!inner || !visible(el)) return;
      var kind = el.getAttribute('display') === 'true' ? 'display math' : 'inline math';
      report('math', el, inner.getBoundingClientRect().right, kind + ' ' + tex(el));
    });
    document.querySelectorAll('article.bd-article table').forEach(function (el) {
      if (!visible(el)) return;
      report('table', el, el.getBoundingClientRect().right,
             'table.' + (el.className || '').split(' ').join('.'));
    });
    document.querySelectorAll('article.bd-article pre').forEach(function (el) {
      if (!visible(el)) return;
      var s = getComputedStyle(el), r = el.getBoundingClientRect();
      var right = r.left + el.clientLeft + el.scrollWidth - px(s.paddingRight);
      var lines = el.textContent.split('\n');
      var longest = lines.reduce(function (a, b) { return b.length > a.length ? b : a; }, '');
      report('code', el, right, 'code: ' + longest.trim().slice(0, 90));
    });
    var out = document.createElement('pre');
    out.id = 'dltheory-measure';
    out.textContent = JSON.stringify({column: Math.round(colRect.width), counts: counts,
                                      overflows: found});
    document.body.appendChild(out);
  }
  window.addEventListener('load', function () {
    var ready = (window.MathJax && MathJax.startup && MathJax.startup.promise)
                ? MathJax.startup.promise : Promise.resolve();
    ready.then(function () { return document.fonts.ready; }).then(measure);
  });
})();
"""
WIDTHS = (1280, 1920)


def _offline_browser(browser: str, profile: Path) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--allow-file-access-from-files", "--hide-scrollbars"]


def measure_overflow(browser: str, page: Path, width: int, tmp: Path) -> dict:
    """Open ``page`` offline at ``width`` px and return the measurements of
    :data:`MEASURE_JS`: ``{"column": px, "counts": {...}, "overflows": [...]}``."""
    text = page.read_text()
    base = f'<base href="{page.parent.as_uri()}/">'
    text = text.replace("<head>", "<head>" + base, 1)
    text = text.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1)
    name = f"{page.parent.name}-{page.stem}-{width}"
    copy = tmp / f"{name}.html"
    copy.write_text(text)
    proc = subprocess.run(
        [*_offline_browser(browser, tmp / f"profile-{name}"),
         f"--window-size={width},1000", "--virtual-time-budget=30000",
         "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=240)
    node = BeautifulSoup(proc.stdout, "html.parser").find(id="dltheory-measure")
    assert node is not None, (f"{page.name} at {width} px: the measurement did not finish "
                              f"{proc.stderr[-1500:]}")
    return json.loads(node.get_text())


def overflow_report(html: Path, browser: str, tmp: Path) -> tuple[list[str], dict]:
    """Every page of the book at every width in :data:`WIDTHS`: the lines naming each
    overflowing element (page, width, px, where, what) and the totals measured."""
    lines, totals = [], {"math": 0, "table": 0, "code": 0}
    jobs = [(page, width) for page in _pages(html) for width in WIDTHS]
    with ThreadPoolExecutor(max_workers=2) as pool:     # two browsers at a time
        measured = list(pool.map(lambda job: measure_overflow(browser, *job, tmp), jobs))
    for (page, width), m in zip(jobs, measured, strict=True):
        for k, v in m["counts"].items():
            totals[k] += v
        for o in m["overflows"]:
            lines.append(f"{page.relative_to(html)} @{width}px (column {m['column']} px): "
                         f"{o['kind']} overflows by {o['px']} px in {o['where']!r}: "
                         f"{o['what']}")
    return lines, totals


def test_nothing_overflows_its_column_in_a_browser(html, tmp_path):
    """At 1280 and 1920 px, with no network, no math (display or inline), no table and no
    code block on any page is wider than the column it sits in (cut off or scrolled)."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("DLTHEORY_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (DLTHEORY_REQUIRE_BROWSER) but not installed")
        pytest.skip("chromium is not installed (CI installs it)")
    lines, totals = overflow_report(html, browser, tmp_path)
    # the measurement saw the elements it is about (a page whose script failed sees none)
    assert totals["math"] > 500 and totals["table"] > 10 and totals["code"] > 50, totals
    assert not lines, f"{len(lines)} elements overflow their column:\n" + "\n".join(lines)


#: Issue 17: in the ``ci`` profile every chapter runs within 2 GB (a laptop's share).
PEAK_LIMIT_MB = 2000.0


def test_every_chapter_peaks_within_two_gigabytes_in_ci(html):
    """Each claim records its kernel's peak memory so far (``peak_rss_mb``); a chapter's
    peak is that of its last claim, and no chapter may exceed 2 GB in the ci profile."""
    data = json.loads((html / "claims.json").read_text())
    peaks, unknown = {}, []
    for chapter in data["chapters"]:
        recs = [r for r in chapter["claims"] if r["profile"] == "ci"]
        if not recs:
            continue
        values = [r.get("peak_rss_mb") for r in recs]
        if any(v is None for v in values):
            unknown.append(chapter["doc"])
        else:
            peaks[chapter["doc"]] = max(values)
    if not peaks and not unknown:
        pytest.skip("the book was built in the full profile")
    assert not unknown, f"claims without a recorded peak memory in {unknown}"
    report = ", ".join(f"{doc} {mb:.0f} MB" for doc, mb in peaks.items())
    assert max(peaks.values()) <= PEAK_LIMIT_MB, f"a chapter peaks above 2 GB: {report}"


def test_verification_page_states_its_verdict_in_its_first_lines(html):
    soup = _soup(html / "book" / "verification.html")
    article = soup.select_one("article.bd-article") or soup
    verdict = article.select_one("p.dltheory-ledger-verdict")
    assert verdict is not None, "no verdict on the Verification page"
    text = article.get_text(" ", strip=True)
    at = text.find(verdict.get_text(" ", strip=True))
    assert 0 <= at < 600, f"the verdict starts at character {at}, not in the first lines"
    assert verdict.get_text().startswith("All ") and "claims" in verdict.get_text()
    first_table = article.find("table")
    assert first_table is not None and verdict in first_table.find_all_previous("p")


def test_index_links_the_index_of_theorems(html):
    soup = _soup(html / "book" / "index.html")
    assert any(a.get("href") == "../prf-prf.html" for a in soup.find_all("a"))
    assert (html / "prf-prf.html").exists()


def full_profile_column(page: Path, ledgers: list[Path]) -> None:
    """Every claim on the Verification ``page`` has its full-profile line under its run, and
    the page says, before its first table, when the full profile last ran, or that it has
    not been recorded when there is no ledger (``ledgers``: the committed ledgers)."""
    soup = _soup(page)
    rows = soup.select("table.dltheory-ledger tbody tr")
    assert rows, "no claim on the Verification page"
    lines = [r.select_one(".claim-full") for r in rows]
    assert all(line is not None for line in lines), "a claim without its full-profile line"
    for line in lines:
        text = line.get_text()
        assert text == "full: not run at full scale" or text.startswith("full ("), text
    summary = soup.select_one("p.dltheory-ledger-full")
    assert summary is not None and summary in soup.find("table").find_all_previous("p")
    said = summary.get_text(" ", strip=True)
    if ledgers:
        assert said.startswith("The full profile last ran on "), said
    else:
        assert said.startswith("The full profile has not been recorded"), said
        assert all(line.get_text() == "full: not run at full scale" for line in lines)


def test_verification_page_shows_the_last_full_profile_result_of_every_claim(html):
    full_profile_column(html / "book" / "verification.html",
                        sorted((ROOT / "book" / "ledgers").glob("*.json")))

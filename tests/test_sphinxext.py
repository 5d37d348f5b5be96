"""Unit tests of the book's Sphinx extension and of the chapter tooling."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from bookutil import ROOT, build, fixture_book
from dltheory import ledger, notebooks, runner, sphinxext
from ledgerutil import CI_SIZE, FULL_SIZE, tiny_book, tiny_chapter


def test_library_stamp_follows_source_profile_and_nothing_else(tmp_path, monkeypatch):
    lib = tmp_path / "dltheory"
    shutil.copytree(Path(sphinxext.__file__).parent, lib,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.delenv("DLTHEORY_PROFILE", raising=False)
    base = sphinxext.library_stamp(lib)
    assert sphinxext.library_stamp(lib) == base
    (lib / "claims.py").write_text((lib / "claims.py").read_text() + "\n# edited\n")
    edited = sphinxext.library_stamp(lib)
    assert edited != base
    monkeypatch.setenv("DLTHEORY_PROFILE", "full")
    assert sphinxext.library_stamp(lib) not in (base, edited)


def _fake_app(tmp_path):
    config = types.SimpleNamespace(nb_execution_cache_path=str(tmp_path / "cache"))
    return types.SimpleNamespace(config=config, outdir=str(tmp_path / "html"))


def test_changed_stamp_clears_the_execution_cache(tmp_path, monkeypatch):
    app = _fake_app(tmp_path)
    monkeypatch.setattr(sphinxext, "library_stamp", lambda: "one")
    sphinxext._invalidate_cache(app)
    marker = tmp_path / "cache" / "executed.ipynb"
    marker.write_text("{}")
    sphinxext._invalidate_cache(app)            # same stamp: the cache stays
    assert marker.exists()
    monkeypatch.setattr(sphinxext, "library_stamp", lambda: "two")
    sphinxext._invalidate_cache(app)            # library changed: the cache goes
    assert not marker.exists()
    stamp = json.loads((tmp_path / "cache" / sphinxext.STAMP_FILE).read_text())
    assert stamp == {"stamp": "two"} and app._dltheory_stamp == "two"


def test_changed_stamp_marks_every_notebook_outdated():
    env = types.SimpleNamespace(
        found_docs={"a", "b", "v"}, dltheory_ledger_docs={"v"}, dltheory_stamp="old",
        metadata={"a": {"kernelspec": {}}, "b": {}, "v": {}})
    app = types.SimpleNamespace(_dltheory_stamp="new")
    assert sphinxext._ledger_always_outdated(app, env, set(), set(), set()) == ["a", "v"]
    # with the stamp now recorded, only the ledger page is read again
    assert sphinxext._ledger_always_outdated(app, env, set(), set(), set()) == ["v"]


def test_mathjax_is_installed_locally():
    root = sphinxext.mathjax_source()
    for part in sphinxext.MATHJAX_PARTS:
        assert (root / part).exists(), part


def test_the_config_enables_what_the_book_relies_on():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = config["sphinx"]["extra_extensions"]
    assert "sphinx_proof" in extensions and "dltheory.sphinxext" in extensions
    assert config["execute"]["allow_errors"] is False
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert config["sphinx"]["config"]["nitpicky"] is True
    assert {"amsmath", "dollarmath"} <= set(config["parse"]["myst_enable_extensions"])
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    assert config["launch_buttons"]["colab_url"]
    # the page layout (code wraps at the column's width) is in the extension's one stylesheet
    css = (ROOT / "lib" / "dltheory" / "static" / "dltheory.css").read_text()
    assert "white-space: pre-wrap" in css and "article.bd-article div.cell pre" in css


def test_every_chapter_has_an_ipynb_twin_in_sync():
    assert notebooks.chapters(ROOT), "no chapter found through _toc.yml"
    assert notebooks.out_of_sync(ROOT) == []


def test_out_of_sync_twin_is_detected(tmp_path):
    book = fixture_book(tmp_path / "book")
    assert notebooks.out_of_sync(book) == [f"{book / 'book/chapter.ipynb'} is missing"]
    notebooks.sync(book)
    assert notebooks.out_of_sync(book) == []
    md = book / "book" / "chapter.md"
    md.write_text(md.read_text().replace("range(25)", "range(26)"))
    assert notebooks.out_of_sync(book) == [
        f"{book / 'book/chapter.ipynb'} differs from {md}"]


def test_colab_install_cell_points_to_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for md in notebooks.chapters(ROOT):
        text = md.read_text()
        assert f"git+{url}" in text, f"{md}: its install cell does not use {url}"


def test_runner_executes_a_chapter_and_reports_a_failing_claim(tmp_path, capsys):
    ok = fixture_book(tmp_path / "ok") / "book" / "chapter.md"
    run = runner.run_chapter(ok, profile="ci")
    assert run.ok and [c["name"] for c in run.claims] == ["fixture.loss_ratio",
                                                          "fixture.control"]
    bad = fixture_book(tmp_path / "bad", bound="0.0") / "book" / "chapter.md"
    assert runner.main([str(bad), "--profile", "ci"]) == 1
    out = capsys.readouterr().out
    assert "fixture.loss_ratio" in out and "ClaimFailure" in out
    with pytest.raises(ValueError, match="profile must be one of"):
        runner.run_chapter(ok, profile="fast")
    with pytest.raises(FileNotFoundError, match="no chapter"):
        runner.run_chapter(tmp_path / "missing.md")


def test_theorem_title_numbers_a_statement_as_prf_ref_does():
    env = types.SimpleNamespace(
        proof_list={
            "thm-cpa": {"docname": "a", "realtype": "theorem", "countertype": "theorem",
                        "nonumber": False},
            "def-x": {"docname": "b", "realtype": "definition", "countertype": "theorem",
                      "nonumber": False},
            "lem-free": {"docname": "b", "realtype": "lemma", "countertype": "theorem",
                         "nonumber": True}},
        toc_fignumbers={"a": {"theorem": {"thm-cpa": (2,)}},
                        "b": {"theorem": {"def-x": (7,)}}})
    assert sphinxext.theorem_title(env, "thm-cpa") == "Theorem 2"
    assert sphinxext.theorem_title(env, "def-x") == "Definition 7"
    assert sphinxext.theorem_title(env, "lem-free") == "Lemma"
    assert sphinxext.theorem_title(env, "thm-missing") is None


def test_chapter_table_bundle_becomes_a_placeholder_for_the_numbered_table():
    record = {"name": "c.one", "expect": "pass", "ok": True}
    data = types.SimpleNamespace(mime_type=sphinxext._claims.TABLE_MIME,
                                 content={"claims": [record]})
    (node,) = sphinxext.ClaimMimeRenderer.handle_mime(None, data, inline=False)
    assert isinstance(node, sphinxext.claims_table_placeholder)
    assert json.loads(node["dltheory_records"]) == [record]
    other = types.SimpleNamespace(mime_type="text/html", content="<p>")
    assert sphinxext.ClaimMimeRenderer.handle_mime(None, other, inline=False) is None


# ------------------------------------------------- the Verification page's full profile


def test_library_stamp_hashes_the_sources_with_the_ledgers_one_hasher(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.py").write_text("x = 1\n")
    base = sphinxext.library_stamp(lib)
    monkeypatch.setattr(ledger, "source_hash", lambda root=None: "fixed")
    (lib / "a.py").write_text("x = 2\n")
    assert sphinxext.library_stamp(lib) == sphinxext.library_stamp(tmp_path) != base


def _ledger_of(book: Path, *, only: list[str]) -> dict:
    """Run the chapters ``only`` of ``book`` at full scale; returns the ledger written."""
    path = book / "book" / "ledgers" / "cpu.json"
    assert runner.main(["--all", "--root", str(book), "--only", *only, "--profile", "full",
                        "--ledger", str(path), "--progress-every", "0"]) == 0
    return ledger.read(path)


def test_full_line_says_fresh_stale_or_not_run(tmp_path):
    book = tiny_book(tmp_path, {"one": tiny_chapter("one"), "two": tiny_chapter("two")})
    data = _ledger_of(book, only=["one"])
    library = ledger.source_hash()
    found = sphinxext.full_profile_of([data], "book/one", book, library)
    day = data["provenance"]["date"][:10]
    name = data["provenance"]["device"]["name"]
    where = f"cpu, {name}, {day}" if name else f"cpu, {day}"
    assert sphinxext.full_line(found, "one.size") == (f"full ({where}): ✔ {FULL_SIZE}", False)
    assert sphinxext.full_line(found, "one.control")[0] == f"full ({where}): ⊘ {FULL_SIZE}"
    assert sphinxext.full_line(found, "one.new") == (f"full ({where}): not recorded", False)
    assert sphinxext.full_profile_of([data], "book/two", book, library) is None
    assert sphinxext.full_line(None, "two.size") == ("full: not run at full scale", False)
    # the library changed since the run: every result of the ledger is stale
    found = sphinxext.full_profile_of([data], "book/one", book, "0" * 64)
    assert sphinxext.full_line(found, "one.size") == (
        f"full ({where}): ✔ {FULL_SIZE} — stale", True)
    text = sphinxext.full_summary([data], book, "0" * 64).astext()
    assert text.startswith(f"The full profile last ran on {day} ")
    assert "outside a git checkout: 1 chapter (1 passed), 2 claims recorded, 2 as expected" \
        in text
    assert "Its results are stale: the library changed since the run." in text
    assert "current library and chapters" in sphinxext.full_summary([data], book,
                                                                   library).astext()
    none = sphinxext.full_summary([], book, library).astext()
    assert none.startswith("The full profile has not been recorded")


@pytest.mark.book
def test_verification_page_shows_each_claims_last_full_profile_result(tmp_path):
    book = fixture_book(tmp_path / "full", chapter=tiny_chapter("fresh"))
    for name in ("stale", "missing"):
        (book / "book" / f"{name}.md").write_text(tiny_chapter(name))
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    toc["chapters"] = [{"file": f"book/{n}"} for n in
                       ("chapter", "stale", "missing", "verification")]
    (book / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    data = _ledger_of(book, only=["chapter", "stale"])
    stale_md = book / "book" / "stale.md"
    stale_md.write_text(stale_md.read_text() + "\nA sentence written after the run.\n")
    proc = build(book)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    page = BeautifulSoup((book / "_build/html/book/verification.html").read_text(),
                         "html.parser")
    full = {row.select_one(".claim-name").get_text(): row.select_one(".claim-full")
            for row in page.select("table.dltheory-ledger tr.claim-ok")}
    day = data["provenance"]["date"][:10]
    fresh = full["fresh.size"].get_text()
    assert fresh.startswith("full (cpu, ") and fresh.endswith(f", {day}): ✔ {FULL_SIZE}")
    assert "claim-stale" not in full["fresh.size"]["class"]
    assert full["stale.size"].get_text().endswith(f"): ✔ {FULL_SIZE} — stale")
    assert "claim-stale" in full["stale.size"]["class"]
    assert full["missing.size"].get_text() == "full: not run at full scale"
    # the ci run of the same claim sits beside it, measured at the ci size
    row = full["fresh.size"].find_parent("tr")
    assert float(row.find_all("td")[3].get_text(strip=True)) == CI_SIZE
    summary = page.select_one("p.dltheory-ledger-full").get_text(" ", strip=True)
    assert summary.startswith(f"The full profile last ran on {day} ")
    assert "2 chapters (2 passed), 4 claims recorded, 4 as expected" in summary
    assert "Its results are stale: since the run book/stale.md changed." in summary
    verdict = page.select_one("p.dltheory-ledger-verdict")
    assert summary in [p.get_text(" ", strip=True) for p in verdict.find_all_next("p")[:4]]
    print(row.get_text(" | ", strip=True))
    print(summary)


@pytest.mark.book
def test_a_malformed_ledger_stops_the_build_naming_file_and_field(tmp_path):
    book = fixture_book(tmp_path / "bad", chapter=tiny_chapter("chapter"))
    (book / "book" / "ledgers").mkdir()
    (book / "book" / "ledgers" / "broken.json").write_text('{"format": "dltheory-ledger"}')
    proc = build(book)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "malformed full-profile ledger" in out and "broken.json" in out, out[-2000:]
    assert "field 'version' must be 1" in out

"""Unit tests of the book's Sphinx extension and of the chapter tooling."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest
import yaml

from bookutil import ROOT, fixture_book
from dltheory import notebooks, runner, sphinxext


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

"""The built reference list: author-year labels like the citations, each paper named once.

Uses the real book's build (the ``html`` fixture of ``test_built_book``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from pybtex.database import parse_file

from bookutil import ROOT
from test_built_book import html  # noqa: F401  (the fixture that builds the book)

pytestmark = pytest.mark.book
LABEL = re.compile(r"\D+, \d{4}[a-z]?")     # "Elkabetz and Cohen, 2021", "Hanin and Rolnick, 2019a"


def reference_entries(page: Path) -> list[tuple[str, str]]:
    """``(label, text)`` of every entry of a built reference list."""
    soup = BeautifulSoup(page.read_text(), "html.parser")
    out = []
    for div in soup.select('div.citation[role="doc-biblioentry"]'):
        label = div.select_one("span.label")
        for bracket in label.select("span.fn-bracket"):
            bracket.decompose()
        out.append((label.get_text("", strip=True), div.find("p").get_text(" ", strip=True)))
    return out


def check_entries(entries: list[tuple[str, str]]) -> list[str]:
    """What is wrong with a reference list: numeric or malformed labels, an entry that
    prints both the arXiv URL and the arXiv identifier."""
    bad = []
    for label, text in entries:
        if not LABEL.fullmatch(label):
            bad.append(f"label [{label}] is not author-year")
        if "arxiv.org/abs/" in text and re.search(r"arXiv:\d", text):
            bad.append(f"[{label}] prints both the arXiv URL and the identifier: {text[-120:]}")
    return bad


def test_check_entries_finds_numeric_labels_and_doubled_arxiv():
    assert check_entries([("Elkabetz and Cohen, 2021", "... arXiv:2107.06608.")]) == []
    assert check_entries([("1", "Paper. URL: https://arxiv.org/abs/1905.13655, "
                                "arXiv:1905.13655.")]) == [
        "label [1] is not author-year",
        "[1] prints both the arXiv URL and the identifier: Paper. URL: "
        "https://arxiv.org/abs/1905.13655, arXiv:1905.13655."]


def test_reference_list_is_author_year_and_names_each_paper_once(request):
    built = request.getfixturevalue("html")
    entries = reference_entries(built / "book" / "references.html")
    assert len(entries) == len(parse_file(ROOT / "book" / "references.bib").entries)
    assert check_entries(entries) == []
    labels = [label for label, _ in entries]
    assert len(set(labels)) == len(labels)
    assert "Elkabetz and Cohen, 2021" in labels
    firsts = [label.split(" ")[0].rstrip(",") for label in labels]
    assert firsts == sorted(firsts, key=str.casefold), "the list is not sorted by author"

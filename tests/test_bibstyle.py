"""The reference list's author-year labels (dltheory.bibstyle) and the bibliography file."""

from __future__ import annotations

import re

import pytest
import yaml
from pybtex.database import Entry, Person, parse_file
from pybtex.plugin import find_plugin

from bookutil import ROOT
from dltheory import bibstyle

BIB = ROOT / "book" / "references.bib"


def _entry(key="k", authors=(), editors=(), year="2021"):
    persons = {}
    if authors:
        persons["author"] = [Person(a) for a in authors]
    if editors:
        persons["editor"] = [Person(a) for a in editors]
    fields = {"title": "A title"} | ({"year": year} if year else {})
    e = Entry("article", fields=fields, persons=persons)
    e.key = key
    return e


@pytest.mark.parametrize(("authors", "label"), [
    (["Domingos, Pedro"], "Domingos, 2021"),
    (["Elkabetz, Omer", "Cohen, Nadav"], "Elkabetz and Cohen, 2021"),
    (["Golub, Gene H.", "Van Loan, Charles F."], "Golub and Van Loan, 2021"),
    (["Arora, Sanjeev", "Cohen, Nadav", "Hu, Wei"], "Arora et al., 2021"),
    (["{Mad} Max, A."], "Mad Max, 2021"),
    (["Ludwig van Beethoven"], "van Beethoven, 2021"),
])
def test_author_year_label(authors, label):
    assert bibstyle.author_year(_entry(authors=authors)) == label


def test_editors_stand_in_for_missing_authors():
    assert bibstyle.author_year(_entry(editors=["Doe, Jane"])) == "Doe, 2021"


def test_missing_author_or_year_is_an_error_naming_the_entry():
    with pytest.raises(ValueError, match=r"entry 'anon2020' has no author or editor"):
        bibstyle.author_year(_entry("anon2020"))
    with pytest.raises(ValueError, match=r"entry 'doe' has no year"):
        bibstyle.author_year(_entry("doe", authors=["Doe, Jane"], year=None))


def test_disambiguate_appends_letters_only_to_repeated_labels():
    assert bibstyle.disambiguate(["A 2019", "B 2019", "A 2019", "A 2019"]) == [
        "A 2019a", "B 2019", "A 2019b", "A 2019c"]
    assert bibstyle.disambiguate([]) == []


def test_the_book_selects_the_style():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert config["bibtex_default_style"] == bibstyle.NAME
    assert config["bibtex_reference_style"] == "author_year"


def test_the_books_references_get_unique_author_year_labels_sorted_by_author():
    bibstyle.register()
    style = find_plugin("pybtex.style.formatting", bibstyle.NAME)()
    entries = list(style.format_bibliography(parse_file(BIB)))
    labels = [e.label for e in entries]
    assert len(labels) == len(set(labels)) > 40
    assert all(re.fullmatch(r"\D+, \d{4}[a-z]?", label) for label in labels), labels
    assert "Elkabetz and Cohen, 2021" in labels and "Golub and Van Loan, 2013" in labels
    assert {"Hanin and Rolnick, 2019a", "Hanin and Rolnick, 2019b"} <= set(labels)
    firsts = [label.split(" ")[0].rstrip(",") for label in labels]
    assert firsts == sorted(firsts, key=str.casefold), "not sorted by first author"


def test_an_arxiv_entry_names_the_paper_once():
    """An entry with an arXiv ``eprint`` prints ``arXiv:<id>`` (linked); a ``url`` of the
    same abstract page would print the paper a second time."""
    db = parse_file(BIB)
    arxiv = [k for k, e in db.entries.items() if "eprint" in e.fields]
    assert len(arxiv) > 30
    for key in arxiv:
        url = db.entries[key].fields.get("url", "")
        assert "arxiv.org" not in url, f"{key}: both eprint and url {url}"
    for key, e in db.entries.items():          # no arXiv paper is cited by its URL alone
        assert "arxiv.org" not in e.fields.get("url", ""), key

"""The book's bibliography style: author-year labels in the reference list.

The text cites author-year (``bibtex_reference_style: author_year``: "Elkabetz and
Cohen, 2021"), so the list uses the same words as labels, ``[Elkabetz and Cohen, 2021]``,
``[Arora et al., 2019]``, instead of pybtex's numbers, sorted by author, then year, then
title. Two works with the same label get ``a``, ``b``, ... in that order
(``[Hanin and Rolnick, 2019a]``; the text's citations of them both read "Hanin and
Rolnick, 2019" and link to their own entry).

The pybtex plugins are registered by :func:`setup`, a Sphinx extension that
``dltheory.sphinxext`` loads; ``_config.yml`` selects them with
``bibtex_default_style: dltheory``. arXiv papers print their identifier once
(``arXiv:2107.06608``, linked) from the ``eprint`` field; ``references.bib`` gives them no
``url`` of the abstract page, which would print the same paper a second time.
"""

from __future__ import annotations

import string

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

NAME = "dltheory"


def _last_names(person) -> str:
    """A person's last names as plain text (``{Van Loan}`` -> ``Van Loan``)."""
    parts = [p.render_as("text") for p in person.rich_prelast_names]
    parts += [p.render_as("text") for p in person.rich_last_names]
    return " ".join(parts)


def author_year(entry) -> str:
    """The label of one pybtex entry without its disambiguating letter.

    One author: ``Domingos, 2020``; two: ``Golub and Van Loan, 2013``; three or more:
    ``Arora et al., 2019`` (the words of the text's author-year citations). Editors stand
    in for missing authors; an entry with neither, or with no ``year``, is an error naming
    the entry's key.
    """
    persons = entry.persons.get("author") or entry.persons.get("editor")
    if not persons:
        raise ValueError(f"bibliography entry {entry.key!r} has no author or editor")
    year = entry.fields.get("year")
    if not year:
        raise ValueError(f"bibliography entry {entry.key!r} has no year")
    names = [_last_names(p) for p in persons]
    if len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {year}"


def disambiguate(labels: list[str]) -> list[str]:
    """Append ``a``, ``b``, ... to labels that occur more than once, in their order."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if counts[label] == 1:
            out.append(label)
            continue
        k = seen.get(label, 0)
        seen[label] = k + 1
        out.append(label + string.ascii_lowercase[k])
    return out


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style: ``Elkabetz and Cohen, 2021`` (see :func:`author_year`)."""

    def format_labels(self, sorted_entries):
        yield from disambiguate([author_year(e) for e in sorted_entries])


class Style(PlainStyle):
    """pybtex's ``plain`` formatting (sorted by author, year, title) with author-year
    labels."""

    default_label_style = AuthorYearLabelStyle


def register() -> None:
    """Register the label and formatting styles with pybtex under the name ``dltheory``."""
    register_plugin("pybtex.style.labels", NAME, AuthorYearLabelStyle, force=True)
    register_plugin("pybtex.style.formatting", NAME, Style, force=True)


def setup(app):
    """Sphinx extension: register the styles before sphinxcontrib-bibtex reads its config."""
    register()
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}

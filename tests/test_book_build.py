"""The build cannot lie: fixture books show that every kind of error fails it.

Each test builds a small one-chapter book with the real ``_config.yml`` and the book's
Sphinx extension, using the README's build command.
"""

from __future__ import annotations

from html import unescape

import pytest

from bookutil import HEADER, build, fixture_book, ledger

pytestmark = pytest.mark.book


def _output(proc) -> str:
    return proc.stdout + proc.stderr


def test_fixture_book_builds_and_records_its_claims(tmp_path):
    book = fixture_book(tmp_path / "ok")
    proc = build(book)
    assert proc.returncode == 0, _output(proc)[-3000:]
    chapters = ledger(book)["chapters"]
    assert [c["doc"] for c in chapters] == ["book/chapter"]
    records = {r["name"]: r for r in chapters[0]["claims"]}
    assert records["fixture.loss_ratio"]["status"] == "passed"
    assert records["fixture.control"]["status"] == "failed as expected"
    assert records["fixture.loss_ratio"]["profile"] == "ci"
    # The ledger carries what each claim checks and rejects.
    ratio, control = records["fixture.loss_ratio"], records["fixture.control"]
    assert ratio["kind"] == "theorem" and control["kind"] == "theorem"
    assert ratio["rivals"][0]["name"] == "the loss falls by 90%"
    assert ratio["rivals"][0]["passes"] is False
    assert ratio["nearest_rival"] == "the loss falls by 90%"
    assert ratio["separation"] == ratio["measured"] / 0.1 > 1
    assert ratio["slack"] == 1 - ratio["measured"]
    assert control["breaks"] == "enough steps of a positive step size"
    assert control["margin"] > 1 and control["rivals"] == []
    assert records["fixture.loss_ratio"]["seed"] == 3
    html = (book / "_build/html/book/verification.html").read_text()
    assert "fixture.loss_ratio" in html and "failed as expected" in html
    assert "All 2 claims in 1 chapter came out as expected" in html
    assert "nearest rival" in html and "enough steps of a positive step size" in html
    sep = f"{ratio['separation']:.3g}"
    assert f"Smallest separation as a ratio to a rival's bound: {sep}" in unescape(html)
    # The ledger links each claim to its theorem.
    assert 'href="chapter.html#thm-fixture"' in html


BROKEN = {
    # A claim whose bound the measurement cannot meet: the loss ratio is positive.
    "failing claim": dict(bound="0.0"),
    "unknown theorem label": dict(label="thm-does-not-exist"),
    "unknown citation": dict(extra="See {cite:p}`nobody2099nothing`."),
    "broken cross-reference": dict(extra="See {prf:ref}`thm-missing`."),
    "failing cell": dict(extra="", chapter=HEADER + "# Broken\n\n```{code-cell} ipython3\n"
                         "from dltheory import claims\nraise RuntimeError('boom')\n```\n"),
    "chapter without claims": dict(chapter=HEADER + "# No claims\n\n```{code-cell} ipython3\n"
                                   "x = 1 + 1\n```\n"),
    # A rival theory that the measured loss ratio satisfies as well as the theorem does.
    "rival that also passes": dict(rivals='{"the loss falls by at least 10%": 0.9}'),
}
EXPECTED = {
    "failing claim": "fixture.loss_ratio",
    "unknown theorem label": "thm-does-not-exist",
    "unknown citation": "nobody2099nothing",
    "broken cross-reference": "thm-missing",
    "failing cell": "boom",
    "chapter without claims": "checks no claim",
    "rival that also passes": "claim 'fixture.loss_ratio' does not discriminate: rival "
                              "'the loss falls by at least 10%' also passes",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_book_fails_the_build_and_names_the_problem(tmp_path, case):
    book = fixture_book(tmp_path / "broken", **BROKEN[case])
    proc = build(book)
    out = _output(proc)
    assert proc.returncode != 0, f"{case}: the build passed\n{out[-3000:]}"
    assert EXPECTED[case] in out, f"{case}: the message does not name it\n{out[-3000:]}"


def test_two_builds_record_identical_claim_values(tmp_path):
    """Seeding makes two independent builds (fresh kernels, fresh caches) agree bitwise."""
    values = []
    for name in ("first", "second"):
        book = fixture_book(tmp_path / name)
        proc = build(book)
        assert proc.returncode == 0, _output(proc)[-3000:]
        values.append({r["name"]: r["measured"]
                       for c in ledger(book)["chapters"] for r in c["claims"]})
    assert values[0] == values[1]
    assert len(values[0]) == 2


def test_cache_is_reused_and_invalidated_by_the_profile(tmp_path):
    """A second build reuses the execution; a different profile (part of the library stamp,
    like the library's source) forces a new execution."""
    book = fixture_book(tmp_path / "cached")
    first = build(book, env={"DLTHEORY_PROFILE": "ci"})
    assert first.returncode == 0, _output(first)[-3000:]
    assert "Executing notebook" in _output(first)

    second = build(book, env={"DLTHEORY_PROFILE": "ci"})
    assert second.returncode == 0, _output(second)[-3000:]
    assert "Executing notebook" not in _output(second)
    # The verification page is rewritten by every build.
    assert "book/verification" in _output(second)

    third = build(book, env={"DLTHEORY_PROFILE": "full"})
    assert third.returncode == 0, _output(third)[-3000:]
    assert "library or profile changed" in _output(third)
    assert "Executing notebook" in _output(third)
    profiles = {r["profile"] for c in ledger(book)["chapters"] for r in c["claims"]}
    assert profiles == {"full"}

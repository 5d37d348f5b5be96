"""Progress of executing chapters, the kernels' peak memory and their transport.

The unit tests drive :class:`dltheory.runner.Progress` with the hooks nbclient calls; the
runner test executes a small chapter in a real kernel; the build test builds a fixture book
with the README's command and reads what the build printed and recorded.
"""

from __future__ import annotations

import time

import nbformat
import pytest
import yaml

from bookutil import CHAPTER, build, fixture_book, ledger
from dltheory import claims, profile, runner
from dltheory.runner import Progress

ENCRYPTION_WARNING = "without encryption"


def _notebook(*sources):
    cells = [nbformat.v4.new_markdown_cell("# title")]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    return nbformat.v4.new_notebook(cells=cells)


def _reply(status="ok"):
    return {"content": {"status": status}}


def _started(name, *sources, every=0.0, k=None, total=None):
    """A Progress that has begun the chapter ``name`` (number ``k`` of ``total``; its code
    cells ``sources``) and seen its notebook start: the Progress, the notebook and the list
    of lines it wrote."""
    lines = []
    p = Progress(lines.append, every=every, total=total)
    nb = _notebook(*sources)
    p.begin(name, k=k)
    p.on_notebook_start(notebook=nb)
    return p, nb, lines


def test_progress_names_the_chapter_k_of_n_and_each_cell_i_of_n():
    p, nb, lines = _started("book/a", "x = 1", "", "y = 2", k=2, total=3)  # "" is skipped
    for i, cell in enumerate(nb.cells):
        p.on_cell_start(cell=cell, cell_index=i)
        p.on_cell_executed(cell=cell, cell_index=i, execute_reply=_reply())
    p.on_notebook_complete(notebook=nb)
    assert lines[0] == "dltheory: executing [2/3] book/a: 2 code cells"
    assert lines[1].startswith("dltheory: [2/3] book/a: cell 1/2, ")
    assert lines[2].startswith("dltheory: [2/3] book/a: cell 2/2, ")
    assert lines[3].startswith("dltheory: [2/3] book/a: done after ")
    assert "peak memory" not in lines[3]           # no claim recorded one
    assert len(lines) == 4
    assert not any("\r" in line for line in lines)


def test_progress_counts_chapters_when_not_told_k():
    p = Progress(lambda line: None, total=2)
    p.begin("a")
    p.begin("b")
    assert p.k == 2


def test_progress_says_where_a_chapter_stopped():
    p, nb, lines = _started("book/b", "x = 1", "1 / 0", "y = 2")
    p.on_cell_start(cell=nb.cells[1], cell_index=1)
    p.on_cell_executed(cell=nb.cells[1], cell_index=1, execute_reply=_reply())
    p.on_cell_start(cell=nb.cells[2], cell_index=2)
    p.on_cell_executed(cell=nb.cells[2], cell_index=2, execute_reply=_reply("error"))
    p.on_notebook_complete(notebook=nb)
    assert lines[-1].startswith("dltheory: [1] book/b: stopped at cell 2/3 after ")


def test_progress_is_quiet_between_cells_that_follow_quickly_and_beats_during_a_long_one():
    p, nb, lines = _started("book/c", "a", "b", "c", every=0.2)
    p.on_cell_start(cell=nb.cells[1], cell_index=1)     # right after the start: no line
    assert len(lines) == 1
    time.sleep(0.7)                                       # a long cell: the thread reports
    beats = [line for line in lines if "running for" in line]
    assert beats and beats[0].startswith("dltheory: [1] book/c: cell 1/3 running for "), lines
    p.on_notebook_complete(notebook=nb)
    n = len(lines)
    time.sleep(0.5)
    assert len(lines) == n, "the heartbeat went on after the chapter ended"


def test_progress_rejects_a_negative_interval(capsys):
    with pytest.raises(ValueError, match="every"):
        Progress(every=-1)
    with pytest.raises(SystemExit):
        runner.main(["chapter.md", "--progress-every", "-1"])
    assert "--progress-every must be >= 0 seconds, got -1" in capsys.readouterr().err


def test_peak_rss_is_reported_and_recorded_by_every_claim():
    peak = profile.peak_rss_mb()
    assert peak is not None and 10 < peak < 100_000
    rec = claims.check("progress.peak", 0.5, "<=", 1.0, theorem="thm-test", kind="theorem")
    assert rec.to_dict()["peak_rss_mb"] >= peak
    assert runner.peak_of([{"peak_rss_mb": 3.0}, {"peak_rss_mb": 5.0}, {}]) == 5.0
    assert runner.peak_of([{}]) is None


def test_runner_reports_progress_and_the_kernels_peak_without_a_transport_warning(
        tmp_path, capfd):
    chapter = tmp_path / "chapter.md"
    chapter.write_text(CHAPTER.replace("__BOUND__", "1.0").replace("__LABEL__", "thm-fixture")
                       .replace("__EXTRA__", "").replace("__RIVALS__", "{'ten times': 0.1}"))
    lines = []
    run = runner.run_chapter(chapter, profile="ci", progress=Progress(lines.append, every=0))
    assert run.ok, run.error
    assert [c["name"] for c in run.claims] == ["fixture.loss_ratio", "fixture.control"]
    # the kernel imported torch: its peak is far above a bare interpreter's, and at least
    # the peak that its claims recorded
    assert run.peak_rss_mb is not None and run.peak_rss_mb > 100
    assert run.peak_rss_mb >= runner.peak_of(run.claims)
    assert lines[0] == f"dltheory: executing [1] {chapter}: 2 code cells"
    assert lines[-1].startswith(f"dltheory: [1] {chapter}: done after ")
    # the cell that reads the peak is the runner's, not the chapter's
    assert len(run.notebook.cells) == len(__import__("jupytext").read(chapter).cells)
    assert ENCRYPTION_WARNING not in capfd.readouterr().err


def test_runner_main_prints_each_chapters_peak(tmp_path, capsys):
    chapter = tmp_path / "tiny.md"
    chapter.write_text(CHAPTER.split("```{prf:theorem}")[0] + (
        "```{code-cell} ipython3\nfrom dltheory import claims\n"
        "claims.check('tiny', 0.5, '<=', 1.0, theorem='thm-x', kind='theorem')\n```\n"))
    assert runner.main([str(chapter), "--profile", "ci", "--progress-every", "0"]) == 0
    out = capsys.readouterr().out
    assert f"dltheory: executing [1/1] {chapter}: 1 code cell" in out
    assert f"== {chapter} (" in out and " MB)" in out.split(f"== {chapter} (")[1].splitlines()[0]


def test_book_build_shows_progress_records_peaks_and_starts_no_unencrypted_kernel(tmp_path):
    book = fixture_book(tmp_path / "progress")
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["sphinx"]["config"]["dltheory_progress_every"] = 0
    (book / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = build(book)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "dltheory: executing [1/1] book/chapter: 2 code cells" in out
    assert "dltheory: [1/1] book/chapter: cell 2/2, " in out
    done = out.split("dltheory: [1/1] book/chapter: done after ")[1].splitlines()[0]
    assert " s, peak memory " in done and done.endswith(" MB by its last claim"), done
    assert ENCRYPTION_WARNING not in out
    records = [r for c in ledger(book)["chapters"] for r in c["claims"]]
    assert records and all(r["peak_rss_mb"] > 100 for r in records), records

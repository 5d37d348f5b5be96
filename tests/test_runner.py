"""The full profile with one command: ``python -m dltheory.runner --all --profile full``,
each chapter in a fresh process, a budget that stops a chapter cleanly, and the ledger it
records (:mod:`dltheory.ledger`): its round trip, its refusals, and staleness.

The chapters are tiny fixtures (``ledgerutil``), run with ``--profile full`` forced on the
CPU; every ledger read here was written by the runner or built by the library's own
functions from records :func:`dltheory.claims.check` produced.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bookutil import ROOT
from dltheory import claims, ledger, runner
from dltheory.errors import InputError
from ledgerutil import CI_SIZE, FULL_SIZE, slow_chapter, tiny_book, tiny_chapter

# ----------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A book of two tiny chapters run with ``--all --profile full --ledger``: the book, the
    exit status, what it printed and the ledger's path."""
    book = tiny_book(tmp_path_factory.mktemp("full"),
                     {"alpha": tiny_chapter("alpha"), "beta": tiny_chapter("beta")})
    path = book / "book" / "ledgers" / "cpu.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = runner.main(["--all", "--root", str(book), "--profile", "full",
                            "--ledger", str(path), "--progress-every", "0"])
    return book, code, buf.getvalue(), path


def test_all_runs_every_notebook_chapter_at_full_scale_and_writes_a_ledger(full_run):
    book, code, printed, path = full_run
    assert code == 0, printed
    data = ledger.read(path)
    assert [c["docname"] for c in data["chapters"]] == ["book/alpha", "book/beta"]
    for ch in data["chapters"]:
        assert ch["status"] == "passed" and ch["error"] is None
        assert ch["path"] == ch["docname"] + ".md"
        assert ch["sha256"] == ledger.file_hash(book / ch["path"])
        assert ch["seconds"] > 0 and ch["peak_rss_mb"] > 100
        assert ch["peak_device_mb"] is None                     # no CUDA here
        size, control = ch["claims"]
        # the profile was forced: the full size was measured, and recorded as full
        assert size["measured"] == FULL_SIZE != CI_SIZE and size["profile"] == "full"
        assert size["ok"] and control["ok"] and control["expect"] == "fail"
        for key in ("name", "ok", "status", "expect", "kind", "measured_text", "bound",
                    "relation", "target", "atol", "rtol", "profile", "device", "seed"):
            assert key in size, key
    prov = data["provenance"]
    assert data["format"] == ledger.FORMAT and data["version"] == ledger.VERSION
    assert prov["profile"] == "full" and prov["budget_s"] is None
    assert prov["library_sha256"] == ledger.source_hash()
    assert prov["device"]["type"] == "cpu" and prov["cuda"] in (None, __import__(
        "torch").version.cuda)
    assert prov["commit"] is None and prov["dirty"] is None     # tmp_path is no checkout
    assert prov["torch"] and prov["python"] and prov["cpu_count"] >= 1
    assert prov["command"][-6:] == ["--profile", "full", "--ledger", str(path),
                                    "--progress-every", "0"]
    when = datetime.fromisoformat(prov["date"])
    assert when.tzinfo is not None and abs(datetime.now(timezone.utc) - when) < timedelta(
        hours=1)
    assert ledger.stale(data, book) == ""


def test_the_run_prints_each_chapter_its_claims_and_a_summary(full_run):
    book, _, printed, path = full_run
    assert "dltheory: executing [1/2] " in printed and "dltheory: executing [2/2] " in printed
    assert "== " in printed and " MB)" in printed
    assert f"⊘ alpha.control [theorem]: measured {FULL_SIZE}" in printed
    table = printed.split("chapter  ")[1]
    assert "book/alpha" in table and "passed" in table and "2/2 ok" in table
    assert "most of the time: " in printed
    assert f"ledger written to {path}" in printed
    assert printed.rstrip().endswith("2 chapters passed, 0 failed")


def test_only_keeps_the_named_chapters(full_run, tmp_path):
    book = full_run[0]
    out = tmp_path / "only.json"
    assert runner.main(["--all", "--root", str(book), "--only", "beta", "--profile", "ci",
                        "--json", str(out), "--progress-every", "0"]) == 0
    (beta,) = json.loads(out.read_text())
    assert beta["chapter"].endswith("beta.md") and beta["status"] == "passed", beta
    assert beta["claims"][0]["measured"] == CI_SIZE


def test_budget_stops_a_chapter_kills_its_kernel_and_skips_the_rest(tmp_path, capsys):
    book = tiny_book(tmp_path, {"slow": slow_chapter("slow"), "after": tiny_chapter("after")})
    path = tmp_path / "stopped.json"
    budget = 25
    start = time.monotonic()
    code = runner.main(["--all", "--root", str(book), "--profile", "full", "--budget",
                        str(budget), "--ledger", str(path), "--progress-every", "0"])
    spent = time.monotonic() - start
    printed = capsys.readouterr().out
    assert code == runner.EXIT_BUDGET == 3, printed
    assert spent < budget + 20, f"the budget of {budget} s stopped the run after {spent} s"
    data = ledger.read(path)
    slow, after = data["chapters"]
    assert slow["status"] == "stopped: budget" and "budget" in slow["error"]
    assert budget - 1 < slow["seconds"] < budget + 15
    # the claim checked before the budget ran out is kept
    assert [r["name"] for r in slow["claims"]] == ["slow.first"], printed
    assert after["status"] == "not run: budget" and after["claims"] == []
    assert after["seconds"] is None
    assert data["provenance"]["budget_s"] == budget
    assert "1 stopped by the budget, 1 not run" in printed
    # the chapter's kernel (in a session of its own) is gone with its process
    pid = int((book / "book" / "kernel.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"the kernel {pid} of the stopped chapter still runs"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def test_a_failing_claim_fails_the_run_with_status_1(tmp_path, capsys):
    book = tiny_book(tmp_path, {"bad": tiny_chapter("bad").replace(
        f'"<=", {FULL_SIZE}', '"<=", 1')})
    path = tmp_path / "bad.json"
    assert runner.main(["--all", "--root", str(book), "--profile", "ci", "--ledger",
                        str(path), "--progress-every", "0"]) == runner.EXIT_FAILED == 1
    (bad,) = ledger.read(path)["chapters"]
    assert bad["status"] == "failed" and "ClaimFailure" in bad["error"]
    assert "bad.size" in capsys.readouterr().out


# ----------------------------------------------------------------------- bad arguments


@pytest.fixture
def book(tmp_path):
    return tiny_book(tmp_path / "b", {"alpha": tiny_chapter("alpha")})


@pytest.mark.parametrize(("argv", "words"), [
    (["--all", "CHAPTER"], "give --all or chapter paths, not both"),
    ([], "give chapter paths, or --all"),
    (["missing.md"], "chapter missing.md: no such file"),
    (["--all", "--budget", "-5"], "--budget must be a number of seconds > 0, got -5"),
    (["--all", "--budget", "0"], "--budget must be a number of seconds > 0"),
    (["--all", "--budget", "nan"], "--budget must be a number of seconds > 0"),
    (["--all", "--only", "gamma"], "--only 'gamma' matches no chapter; choose from alpha"),
    (["--all", "--ledger", "out.txt"], "--ledger out.txt: a ledger is a .json file"),
    (["--all", "--timeout", "0"], "--timeout must be > 0 seconds"),
    (["--all", "--root", "NOWHERE"], "no _toc.yml there"),
    (["--all", "--budget", "ten"], "argument --budget: invalid float value: 'ten'"),
])
def test_bad_arguments_are_refused_naming_the_argument(book, argv, words, capsys,
                                                       monkeypatch, tmp_path):
    monkeypatch.chdir(book)
    argv = [str(book / "book" / "alpha.md") if a == "CHAPTER" else
            str(tmp_path) if a == "NOWHERE" else a for a in argv]
    with pytest.raises(SystemExit) as info:
        runner.main(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_a_ledger_path_that_is_a_folder_is_refused(book, capsys, monkeypatch):
    monkeypatch.chdir(book)
    with pytest.raises(SystemExit):
        runner.main(["--all", "--ledger", str(book / "book")])
    assert "--ledger" in capsys.readouterr().err


def test_all_without_a_book_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        runner.main(["--all"])
    assert "--all: no _toc.yml in" in capsys.readouterr().err


# --------------------------------------------------------------- choosing chapters


def test_the_books_chapters_are_its_notebooks_in_reading_order():
    found = [p.relative_to(ROOT).as_posix() for p in runner.toc_chapters(ROOT)]
    assert found and found[0] == "book/foundations/checking_a_theorem.md"
    for page in ("book/index.md", "book/verification.md", "book/references.md"):
        assert page not in found
    assert runner.book_root(ROOT / "book" / "kernels") == ROOT


def test_select_and_docname():
    paths = [Path("book/kernels/path_kernel.md"), Path("book/kernels/trainability.md"),
             Path("book/implicit/rank.md")]
    assert runner.select(paths, []) == paths
    assert runner.select(paths, ["rank"]) == paths[2:]
    assert runner.select(paths, ["kernels/"]) == paths[:2]
    with pytest.raises(InputError, match="'ntk' matches no chapter; choose from path_kernel"):
        runner.select(paths, ["ntk"])
    assert runner.docname(ROOT / "book/kernels/path_kernel.md", ROOT) == \
        "book/kernels/path_kernel"


def test_summary_names_the_chapters_that_take_most_of_the_time():
    def res(status, seconds):
        return {"status": status, "seconds": seconds, "peak_rss_mb": 300.0,
                "peak_device_mb": None, "error": None, "claims": []}

    lines = runner.summary_lines([("a", res("passed", 1.0)), ("b", res("passed", 90.0)),
                                  ("c", res("stopped: budget", 9.0)),
                                  ("d", res("not run: budget", None))])
    assert lines[-1] == "most of the time: b (90%)"
    d_row = next(line for line in lines if line.startswith("d "))
    assert "not run: budget" in d_row and "—" in d_row
    assert runner.chapter_lines("d", res("not run: budget", None)) == [
        "== d: not run (the budget was spent)"]
    assert runner.DEVICE_MARK in runner.PEAK_CELL and "max_memory_allocated" in runner.PEAK_CELL


# ------------------------------------------------------------------------ the ledger


def _valid(tmp_path: Path, *, date: str | None = None, profile: str = "full") -> dict:
    """A ledger built by the library's functions, for a chapter file in ``tmp_path`` and a
    claim record that :func:`claims.check` produced."""
    chapter = tmp_path / "book" / "one.md"
    chapter.parent.mkdir(parents=True, exist_ok=True)
    chapter.write_text(tiny_chapter("one"))
    rec = claims.check("one.size", 10.0, "<=", 1000.0, theorem="thm-one",
                       kind="theorem").to_dict()
    res = {"status": "passed", "seconds": 1.5, "peak_rss_mb": 250.0, "peak_device_mb": None,
           "error": None, "claims": [rec]}
    prov = ledger.provenance(root=tmp_path, profile=profile,
                             device=ledger.device_info("cpu"), budget_s=60,
                             command=["python", "-m", "dltheory.runner", "--all"])
    if date is not None:
        prov["date"] = date
    return {"format": ledger.FORMAT, "version": ledger.VERSION, "provenance": prov,
            "chapters": [runner.ledger_entry(chapter, tmp_path, res)]}


def test_ledger_round_trip(tmp_path):
    data = _valid(tmp_path)
    path = ledger.write(tmp_path / "deep" / "run.json", data)
    assert ledger.read(path) == json.loads(json.dumps(data))
    assert [p.name for p, _ in ledger.read_all(tmp_path / "deep")] == ["run.json"]
    assert ledger.read_all(tmp_path / "nowhere") == []
    assert not any(p.name.startswith(".") for p in (tmp_path / "deep").iterdir())


def _set(path: str, value):
    """A change to a ledger: set the field at ``path`` (dots and [i]) to ``value``, or
    delete it when ``value`` is :data:`DELETE`."""
    def change(data):
        keys = path.replace("[", ".").replace("]", "").split(".")
        obj = data
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        last = int(keys[-1]) if isinstance(obj, list) else keys[-1]
        if value is DELETE:
            del obj[last]
        else:
            obj[last] = value
        return data
    return change


DELETE = object()


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: [d], "a ledger is a JSON object, got list"),
    (_set("format", "other"), "field 'format' must be 'dltheory-ledger'"),
    (_set("version", 2), "field 'version' must be 1"),
    (_set("version", True), "field 'version' must be 1"),
    (_set("provenance", DELETE), "field 'provenance' is missing"),
    (_set("provenance", []), "field 'provenance' must be dict"),
    (_set("provenance.date", "yesterday"), "'provenance.date' must be an ISO 8601"),
    (_set("provenance.date", "2026-12-03T10:00:00"), "'provenance.date' must carry its time"),
    (_set("provenance.commit", 5), "field 'provenance.commit' must be str or null"),
    (_set("provenance.dirty", "no"), "field 'provenance.dirty' must be bool or null"),
    (_set("provenance.library_sha256", "abc"), "'provenance.library_sha256' must be a sha256"),
    (_set("provenance.profile", "huge"), "'provenance.profile' must be one of"),
    (_set("provenance.device", "cpu"), "field 'provenance.device' must be dict"),
    (_set("provenance.device.type", DELETE), "field 'provenance.device.type' is missing"),
    (_set("provenance.device.name", 3), "'provenance.device.name' must be str or null"),
    (_set("provenance.torch", None), "field 'provenance.torch' must be str"),
    (_set("provenance.cuda", 12.4), "field 'provenance.cuda' must be str or null"),
    (_set("provenance.budget_s", "600"), "field 'provenance.budget_s' must be float or null"),
    (_set("provenance.command", [1, 2]), "'provenance.command' must be a list of strings"),
    (_set("chapters", {}), "field 'chapters' must be list"),
    (_set("chapters[0]", "one"), "field 'chapters[0]' must be an object"),
    (_set("chapters[0].path", DELETE), "field 'chapters[0].path' is missing"),
    (_set("chapters[0].docname", None), "field 'chapters[0].docname' must be str"),
    (_set("chapters[0].sha256", "0" * 63), "'chapters[0].sha256' must be a sha256"),
    (_set("chapters[0].status", "skipped"), "'chapters[0].status' must be one of"),
    (_set("chapters[0].seconds", -1.0), "field 'chapters[0].seconds' must be >= 0"),
    (_set("chapters[0].peak_rss_mb", True), "'chapters[0].peak_rss_mb' must be float or null"),
    (_set("chapters[0].error", 0), "field 'chapters[0].error' must be str or null"),
    (_set("chapters[0].claims", None), "field 'chapters[0].claims' must be list"),
    (_set("chapters[0].claims[0]", 1), "field 'chapters[0].claims[0]' must be an object"),
    (_set("chapters[0].claims[0].name", DELETE), "'chapters[0].claims[0].name' is missing"),
    (_set("chapters[0].claims[0].ok", "yes"), "'chapters[0].claims[0].ok' must be bool"),
    (_set("chapters[0].claims[0].expect", "maybe"), "'chapters[0].claims[0].expect' must be"),
])
def test_read_refuses_a_malformed_ledger_naming_file_and_field(tmp_path, change, words):
    data = change(copy.deepcopy(_valid(tmp_path)))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ledger.LedgerError) as info:
        ledger.read(path)
    assert str(info.value).startswith(f"{path}: ") and words in str(info.value), info.value
    with pytest.raises(ledger.LedgerError, match="field|JSON object"):
        ledger.write(tmp_path / "out.json", data)              # nor is it written
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("content", "words"), [
    (None, "no ledger there"),
    (b"\xff\xfe not utf-8", "cannot read the ledger"),
    (b'{"format": ', "not valid JSON"),
    (b'{"format": NaN}', "not valid JSON: NaN is not JSON"),
])
def test_read_refuses_what_is_no_json(tmp_path, content, words):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ledger.LedgerError, match=words) as info:
        ledger.read(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, InputError)


def test_write_refuses_a_value_json_cannot_hold(tmp_path):
    data = _valid(tmp_path)
    data["chapters"][0]["claims"][0]["margin"] = float("nan")
    with pytest.raises(ledger.LedgerError, match="JSON cannot write"):
        ledger.write(tmp_path / "nan.json", data)


def test_stale_names_what_changed_since_the_run(tmp_path):
    data = _valid(tmp_path)
    assert ledger.stale(data, tmp_path) == ""
    assert ledger.stale(data, tmp_path, library="0" * 64) == "the library changed since the run"
    chapter = tmp_path / "book" / "one.md"
    chapter.write_text(chapter.read_text() + "\nOne more sentence.\n")
    assert ledger.stale(data, tmp_path) == "since the run book/one.md changed"
    assert ledger.stale(data, tmp_path, docname="book/other") == ""
    chapter.unlink()
    assert ledger.stale(data, tmp_path, docname="book/one") == "since the run book/one.md is gone"


def test_source_hash_follows_every_source_file(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.py").write_text("x = 1\n")
    first = ledger.source_hash(lib)
    assert first == ledger.source_hash(lib) and len(first) == 64
    (lib / "a.py").write_text("x = 2\n")
    assert ledger.source_hash(lib) != first
    (lib / "a.py").write_text("x = 1\n")
    (lib / "b.py").write_text("")
    assert ledger.source_hash(lib) != first
    with pytest.raises(ledger.LedgerError, match="root"):
        ledger.source_hash(tmp_path / "none")
    with pytest.raises(ledger.LedgerError, match="path"):
        ledger.file_hash(tmp_path / "none.md")


def test_latest_picks_the_most_recent_run_of_the_chapter(tmp_path):
    old = _valid(tmp_path, date="2026-01-01T00:00:00+00:00")
    new = _valid(tmp_path, date="2026-06-01T00:00:00+00:00")
    skipped = _valid(tmp_path, date="2026-09-01T00:00:00+00:00")
    skipped["chapters"][0]["status"] = "not run: budget"
    ci = _valid(tmp_path, date="2026-10-01T00:00:00+00:00", profile="ci")
    data, ch = ledger.latest([old, skipped, new, ci], "book/one")
    assert data is new and ch["docname"] == "book/one"
    assert ledger.latest([old], "book/two") is None
    assert ledger.claim_of(ch, "one.size")["name"] == "one.size"
    assert ledger.claim_of(ch, "one.other") is None


def test_provenance_refuses_bad_input_and_survives_without_git(tmp_path):
    assert ledger.git_state(tmp_path) == {"commit": None, "dirty": None}
    state = ledger.git_state(ROOT)
    assert state["commit"] is None or len(state["commit"]) == 40
    dev = ledger.device_info("cpu")
    with pytest.raises(ledger.LedgerError, match="profile"):
        ledger.provenance(root=tmp_path, profile="huge", device=dev, budget_s=None,
                          command=[])
    with pytest.raises(ledger.LedgerError, match="budget_s"):
        ledger.provenance(root=tmp_path, profile="full", device=dev, budget_s=-1,
                          command=[])
    with pytest.raises(ledger.LedgerError, match="command"):
        ledger.provenance(root=tmp_path, profile="full", device=dev, budget_s=None,
                          command="python -m")
    with pytest.raises(ledger.LedgerError, match="device_type"):
        ledger.device_info("")

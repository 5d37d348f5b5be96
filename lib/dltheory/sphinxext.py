"""Sphinx extension of the book: the claim ledger, offline MathJax, cache invalidation.

Enabled in ``_config.yml`` (``sphinx.extra_extensions: [dltheory.sphinxext]``). It

* renders the claim records that :func:`dltheory.claims.check` emits (the MIME type
  :data:`dltheory.claims.MIME`, through myst-nb's ``myst_nb.mime_renderers`` entry point)
  and collects them, per document, in the build environment;
* replaces the ``{claims-ledger}`` directive with the table of every claim of the book,
  built after all pages are read (so it is right whatever order they are read in), links
  each claim to its theorem, and warns (an error under ``-W``) when a claim cites an unknown
  label, when a recorded claim is not ok, or when a chapter executes code but checks no
  claim; the page is re-written by every build, and the ledger is also written to
  ``claims.json`` beside the HTML;
* shows, under each claim's run on that page, its last full-profile result and device,
  read from the committed ledgers of full-profile runs (``book/ledgers/*.json``, the
  config value ``dltheory_ledgers``; :mod:`dltheory.ledger`), marked stale when the library
  or the chapter changed since, and says near the verdict when and where the full profile
  last ran; a malformed ledger stops the build, naming the file and the field;
* serves MathJax 3 from the build itself (``_static/mathjax``), copied from the
  ``django-static-mathjax`` package, so that pages render math with no network;
* invalidates executed notebooks when the library, the profile, the device or the torch
  version change: jupyter-cache only hashes a notebook's own code;
* appends a "Cite this chapter" note, built from ``CITATION.cff``, to every chapter;
* disables progress bars in executed notebooks (``TQDM_DISABLE``), whose widgets would need
  a CDN to render, and reports instead, on the terminal or log of the build, which chapter
  executes (k of N) and which cell (i of n), with the elapsed time
  (:class:`dltheory.runner.Progress`; every ``dltheory_progress_every`` seconds at most,
  default 30);
* has the kernels it starts use CurveZMQ keys from their kernel manager, so that no kernel
  warns that it runs over TCP without encryption.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from importlib import resources
from pathlib import Path

import yaml
from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.nodes import make_refnode

from . import claims as _claims
from . import ledger as _ledger

logger = logging.getLogger(__name__)

ENV_CLAIMS = "dltheory_claims"
STAMP_FILE = "dltheory-stamp.json"
MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre")


# --------------------------------------------------------------------------- claims


class ClaimMimeRenderer:
    """myst-nb mime renderer for claim records (registered as an entry point)."""

    mime_priority_overrides = [("*", _claims.MIME, 1), ("*", _claims.TABLE_MIME, 1)]

    @staticmethod
    def handle_mime(renderer, data, inline):
        if inline or data.mime_type not in (_claims.MIME, _claims.TABLE_MIME):
            return None
        record = data.content
        if isinstance(record, str):
            record = json.loads(record)
        if data.mime_type == _claims.TABLE_MIME:
            # a chapter's closing table: rendered once the theorems are numbered
            return [claims_table_placeholder("", dltheory_records=json.dumps(record["claims"]))]
        mark = _claims.verdict(record)[0]
        control = record["expect"] == "fail"
        kind = f" ({record['kind']}" + (", negative control)" if control else ")")
        para = nodes.paragraph()
        para += nodes.strong(text=f"{mark} claim {record['name']}{kind}: ")
        para += nodes.Text(
            f"measured {record['measured_text']} {record['bound']}, {record['status']}"
        )
        said = _claims.rejects_text(record)
        if said:
            para += nodes.Text(f"; {said}")
        para += nodes.inline(
            text=f"  [{record['theorem']}; {record['profile']}, {record['device']}, "
            f"{record['dtype']}, seed {record['seed']}]",
            classes=["claim-meta"],
        )
        status = "claim-ok" if record["ok"] else "claim-bad"
        classes = ["output", "dltheory-claim", status] + (["claim-control"] if control else [])
        box = nodes.container("", para, classes=classes)
        box["dltheory_claim"] = json.dumps(record)
        return [box]


def _collect_claims(app, doctree):
    env = app.env
    found = []
    for node in doctree.findall(nodes.container):
        if "dltheory_claim" in node.attributes:
            found.append(json.loads(node["dltheory_claim"]))
            del node["dltheory_claim"]
    store = getattr(env, ENV_CLAIMS, {})
    store[env.docname] = found
    setattr(env, ENV_CLAIMS, store)


def _purge(app, env, docname):
    getattr(env, ENV_CLAIMS, {}).pop(docname, None)
    getattr(env, "dltheory_ledger_docs", set()).discard(docname)


def _merge(app, env, docnames, other):
    store = getattr(env, ENV_CLAIMS, {})
    theirs = getattr(other, ENV_CLAIMS, {})
    for d in docnames:
        if d in theirs:
            store[d] = theirs[d]
    setattr(env, ENV_CLAIMS, store)
    mine = getattr(env, "dltheory_ledger_docs", set())
    mine |= getattr(other, "dltheory_ledger_docs", set()) & set(docnames)
    env.dltheory_ledger_docs = mine


class ledger_placeholder(nodes.General, nodes.Element):
    """Replaced by the table of all claims once every page is read."""


class claims_table_placeholder(nodes.General, nodes.Element):
    """A chapter's closing table of claims (``dltheory_records``: their records as JSON),
    replaced by the table once the theorems it links to are numbered."""


class ClaimsLedger(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        docs = getattr(env, "dltheory_ledger_docs", set())
        docs.add(env.docname)
        env.dltheory_ledger_docs = docs
        return [ledger_placeholder("")]


def _doc_order(env) -> list[str]:
    """Documents in table-of-contents order (depth first from the root document)."""
    order, seen = [], set()

    def walk(doc):
        if doc in seen:
            return
        seen.add(doc)
        order.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(env.config.root_doc)
    order += sorted(set(env.found_docs) - seen)
    return order


def _is_notebook(env, docname) -> bool:
    return "kernelspec" in env.metadata.get(docname, {})


def _check_ledger(app, env):
    """Warnings for claims that cannot stand: unknown labels, failures, chapters without claims."""
    store = getattr(env, ENV_CLAIMS, {})
    proofs = getattr(env, "proof_list", {})
    for doc in _doc_order(env):
        records = store.get(doc, [])
        if _is_notebook(env, doc) and not records:
            logger.warning(f"chapter {doc!r} executes code but checks no claim",
                           location=doc, type="dltheory", subtype="claims")
        for r in records:
            if r["theorem"] not in proofs:
                logger.warning(
                    f"claim {r['name']!r} checks theorem label {r['theorem']!r}, which no "
                    "prf: directive of the book defines",
                    location=doc, type="dltheory", subtype="claims",
                )
            if not r["ok"]:
                logger.warning(f"claim {r['name']!r} is recorded as {r['status']}",
                               location=doc, type="dltheory", subtype="claims")
            for problem in _undiscriminating(r):
                logger.warning(f"claim {r['name']!r} {problem}",
                               location=doc, type="dltheory", subtype="claims")


def _undiscriminating(record) -> list[str]:
    """What a recorded claim lacks to discriminate (a record written by another version of
    :func:`dltheory.claims.check` may lack a kind, a prediction its rivals, a control the
    hypothesis it breaks)."""
    out = []
    if record.get("kind") not in _claims.KINDS:
        out.append(f"has no kind (one of {_claims.KINDS})")
    if record["expect"] == "fail" and not record.get("breaks"):
        out.append("is a negative control that names no broken hypothesis")
    if record["expect"] == "pass" and record.get("kind") == "prediction" \
            and not record.get("rivals"):
        out.append("is a prediction without rivals")
    return out


def theorem_title(env, label: str) -> str | None:
    """How the book numbers the statement ``label`` (``"Theorem 2"``, ``"Definition 7"``),
    as ``{prf:ref}`` writes it; None for a label no ``prf:`` directive defines."""
    proofs = getattr(env, "proof_list", {})
    if label not in proofs:
        return None
    match = proofs[label]
    kind = match.get("realtype", match.get("type", "statement")).title()
    if match.get("nonumber"):
        return kind
    numbers = getattr(env, "toc_fignumbers", {}).get(match["docname"], {})
    number = numbers.get(match.get("countertype", ""), {}).get(label)
    return kind if number is None else f"{kind} {'.'.join(map(str, number))}"


def _breakable(name: str) -> nodes.inline:
    """A claim's name that may break after its dots and underscores (``<wbr>``), not inside
    a word, so that a long name wraps in a narrow column and still copies as one word."""
    node = nodes.inline(classes=["claim-name"])
    for i, part in enumerate(re.split(r"(?<=[._])", name)):
        if i:
            node += nodes.raw("", "<wbr>", format="html")
        node += nodes.Text(part)
    return node


def _cell(*parts) -> nodes.entry:
    para = nodes.paragraph()
    for p in parts:
        para += p
    return nodes.entry("", para)


def _table(app, fromdoc, records, classes=("dltheory-ledger",), full=None):
    """Claims as a docutils table that fits the column: verdict, claim (its kind under it),
    the statement it checks as ``Theorem 2`` linked to it, measured value and bound rounded
    to the tolerance's precision, and what it rejects (its run under it, in small type).

    ``full``, if given, maps a record to ``(text, stale)``: its full-profile line
    (:func:`full_line`), shown under the run."""
    env = app.env
    proofs = getattr(env, "proof_list", {})
    cols = _claims.TABLE_COLUMNS
    table = nodes.table(classes=["dltheory-table", *classes])
    tgroup = nodes.tgroup(cols=len(cols))
    table += tgroup
    for _ in cols:
        tgroup += nodes.colspec(colwidth=1)
    thead = nodes.thead()
    tgroup += thead
    row = nodes.row()
    for c in cols:
        row += nodes.entry("", nodes.paragraph(text=c))
    thead += row
    tbody = nodes.tbody()
    tgroup += tbody
    for r, cells in zip(records, _claims.rows(records), strict=True):
        row = nodes.row(classes=cells["classes"].split())
        row += _cell(nodes.Text(cells["verdict"]))
        row += _cell(_breakable(cells["claim"]),
                     nodes.inline(text=cells["kind"], classes=["claim-kind"]))
        title = theorem_title(env, r["theorem"])
        if title is not None:
            row += _cell(make_refnode(app.builder, fromdoc, proofs[r["theorem"]]["docname"],
                                      r["theorem"], nodes.Text(title)))
        else:
            row += _cell(nodes.literal(text=r["theorem"]))
        row += _cell(nodes.Text(cells["measured"]))
        row += _cell(nodes.Text(cells["bound"]))
        last = [nodes.inline(text=cells["rejects"], classes=["claim-rejects"]),
                nodes.inline(text=cells["run"], classes=["claim-run"])]
        if full is not None:
            text, is_stale = full(r)
            last.append(nodes.inline(text=text, classes=["claim-full"]
                                     + (["claim-stale"] if is_stale else [])))
        row += _cell(*last)
        tbody += row
    return nodes.container("", table, classes=["dltheory-ledger-wrap"])


def _ledger_table(app, fromdoc):
    """The summary, then for every chapter (in reading order) its title and its claims,
    each with its last full-profile result under its run."""
    env = app.env
    store = getattr(env, ENV_CLAIMS, {})
    ledgers = getattr(app, "_dltheory_ledgers", [])
    root, library = Path(app.srcdir), _ledger.source_hash()
    out = []
    for doc in _doc_order(env):
        records = store.get(doc, [])
        if not records:
            continue
        n_controls = sum(r["expect"] == "fail" for r in records)
        title = env.titles[doc].astext() if doc in env.titles else doc
        head = nodes.paragraph(classes=["dltheory-ledger-chapter"])
        head += make_refnode(app.builder, fromdoc, doc, "", nodes.strong(text=title))
        controls = ("is a negative control" if n_controls == 1
                    else "are negative controls")
        head += nodes.Text(f" ({len(records)} claims, of which {n_controls} {controls})")
        found = full_profile_of(ledgers, doc, root, library)
        out += [head, _table(app, fromdoc, records,
                             full=lambda r, found=found: full_line(found, r["name"]))]

    return [*_summary(app, fromdoc, store, env),
            full_summary(ledgers, root, library, app.config.dltheory_ledgers), *out]


# ------------------------------------------------------------- full-profile results


def full_profile_of(ledgers: list[dict], docname: str, root: Path, library: str) -> dict | None:
    """The last full-profile run of the chapter ``docname``: ``{"ledger", "chapter",
    "stale"}`` from the most recent ledger (by recorded date) in which it ran
    (:func:`dltheory.ledger.latest`), ``stale`` the reason its results no longer describe
    the code at ``root`` (``""`` when they do; ``library``: the current library hash); None
    when no ledger has it."""
    found = _ledger.latest(ledgers, docname)
    if found is None:
        return None
    data, chapter = found
    return {"ledger": data, "chapter": chapter,
            "stale": _ledger.stale(data, root, docname=docname, library=library)}


def _where_ran(data: dict) -> str:
    dev = data["provenance"]["device"]
    return ", ".join([dev["type"], *([dev["name"]] if dev["name"] else []),
                      data["provenance"]["date"][:10]])


def full_line(found: dict | None, name: str) -> tuple[str, bool]:
    """The line under a claim's run: its last full-profile result and where it ran
    (``full (cuda, NVIDIA H200, 2026-12-03): ✔ 0.998``, ``— stale`` appended when the
    library or the chapter changed since), or ``full: not run at full scale``; and whether
    it is stale. ``found``: :func:`full_profile_of`'s dict or None."""
    if found is None:
        return "full: not run at full scale", False
    head = f"full ({_where_ran(found['ledger'])}): "
    rec = _ledger.claim_of(found["chapter"], name)
    status = found["chapter"]["status"]
    if rec is None:
        body = ("not reached (stopped: budget)" if status == "stopped: budget" else
                "not reached (the chapter failed)" if status == "failed" else "not recorded")
    else:
        measured = _claims.shown_numbers(rec)[0]
        body = (f"{_claims.verdict(rec)[0]} {measured}" if rec["ok"]
                else f"✘ {rec['status']}, {measured}")
    return head + body + (" — stale" if found["stale"] else ""), bool(found["stale"])


def full_summary(ledgers: list[dict], root: Path, library: str,
                 folder: str = "book/ledgers") -> nodes.paragraph:
    """The sentence near the verdict: when and where the full profile last ran (date,
    device, commit), how many chapters and claims it recorded, and whether it is stale;
    or that it has not been recorded (no full-profile ledger in ``folder``)."""
    para = nodes.paragraph(classes=["dltheory-ledger-full"])
    full = [d for d in ledgers if d["provenance"]["profile"] == "full"]
    if not full:
        para += nodes.Text("The full profile has not been recorded: every result on this "
                           f"page is the ci profile's (no full-profile ledger in {folder}/).")
        return para
    data = max(full, key=_ledger.date_of)
    prov, chapters = data["provenance"], data["chapters"]
    commit = "outside a git checkout" if prov["commit"] is None else (
        f"at commit {prov['commit'][:10]}"
        + (" with uncommitted changes" if prov["dirty"] else ""))
    ran = [c for c in chapters if c["status"] in _ledger.RAN]
    records = [r for c in ran for r in c["claims"]]
    counts = ", ".join(f"{sum(c['status'] == s for c in chapters)} {s}"
                       for s in _ledger.STATUSES if any(c["status"] == s for c in chapters))
    stale = _ledger.stale(data, root, library=library)
    date = prov["date"].replace("T", " ")[:16]
    dev = prov["device"]
    device = dev["type"] + (f" ({dev['name']})" if dev["name"] else "")
    para += nodes.Text(
        f"The full profile last ran on {date} UTC on {device}, {commit}: "
        f"{_verb(len(chapters), 'chapter', 'chapters')} ({counts}), "
        f"{_verb(len(records), 'claim', 'claims')} recorded, "
        f"{sum(r['ok'] for r in records)} as expected. "
        + (f"Its results are stale: {stale}. " if stale else
           "Its results were measured on the current library and chapters. ")
        + "Each claim's last full-profile result is shown under its run"
        + (f", from {len(full)} ledgers." if len(full) > 1 else "."))
    return para


def _verb(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def _summary(app, fromdoc, store, env) -> list[nodes.Node]:
    """The verdict first, then the counts: claims, kinds, rivals, controls, and the
    smallest separation between a measurement and a rival's prediction."""
    records = [(doc, r) for doc in _doc_order(env) for r in store.get(doc, [])]
    n_chapters = len({doc for doc, _ in records})
    bad = [r["name"] for _, r in records if not r["ok"]]
    controls = [r for _, r in records if r["expect"] == "fail"]
    with_rivals = [(doc, r) for doc, r in records if r.get("rivals")]

    def plural(k, word):
        return f"{k} {word}{'' if k == 1 else 's'}"

    verdict = nodes.paragraph(classes=["dltheory-ledger-verdict"])
    if bad:
        verdict += nodes.strong(text=f"{plural(len(bad), 'claim')} of {len(records)} did not "
                                     f"come out as expected: {', '.join(bad)}.")
    else:
        verdict += nodes.strong(
            text=f"All {plural(len(records), 'claim')} in {plural(n_chapters, 'chapter')} "
                 f"came out as expected: {_verb(len(records) - len(controls), 'holds', 'hold')} "
                 f"and {plural(len(controls), 'negative control')} "
                 f"{'fails' if len(controls) == 1 else 'fail'} for the hypothesis broken.")
    kinds = ", ".join(
        f"{sum(r.get('kind') == k for _, r in records)} {k}" for k in _claims.KINDS)
    counts = nodes.paragraph(
        text=f"Kinds: {kinds}. {_verb(len(with_rivals), 'claim names', 'claims name')} "
             f"rivals ({plural(sum(len(r['rivals']) for _, r in with_rivals), 'rival')} in "
             "all), each rejected by the claim's own relation and tolerance. Every row was "
             "measured by this build's execution of its chapter (or by the cached execution of an "
             "unchanged chapter, library and profile).")
    out = [verdict, counts]
    tolerance_units = [(doc, r) for doc, r in with_rivals if r["unit"] != "× the bound"]
    for group, words in ((tolerance_units, "in tolerances or half-widths"),
                         ([x for x in with_rivals if x not in tolerance_units],
                          "as a ratio to a rival's bound")):
        finite = [(doc, r) for doc, r in group if isinstance(r["separation"], float | int)]
        if not finite:
            continue
        doc, r = min(finite, key=lambda x: x[1]["separation"])
        para = nodes.paragraph(
            text=f"Smallest separation {words}: {r['separation']:.3g}, claim "
                 f"{r['name']} against rival ‘{r['nearest_rival']}’ (")
        title = env.titles[doc].astext() if doc in env.titles else doc
        para += make_refnode(app.builder, fromdoc, doc, "", nodes.Text(title))
        para += nodes.Text(").")
        out.append(para)
    return out


def _resolve_ledger(app, doctree, fromdoc):
    for node in list(doctree.findall(claims_table_placeholder)):
        records = json.loads(node["dltheory_records"])
        node.replace_self(_table(app, fromdoc, records, classes=("dltheory-claims",)))
    placeholders = list(doctree.findall(ledger_placeholder))
    if not placeholders:
        return
    _check_ledger(app, app.env)
    for node in placeholders:
        node.replace_self(_ledger_table(app, fromdoc))


def _ledger_always_outdated(app, env, added, changed, removed):
    """The ledger pages and, when the stamp changed, every notebook, are read again."""
    docs = set(getattr(env, "dltheory_ledger_docs", set()))
    stamp = app._dltheory_stamp
    if getattr(env, "dltheory_stamp", None) != stamp:
        docs |= {d for d in env.found_docs if _is_notebook(env, d)}
        env.dltheory_stamp = stamp
    return sorted(docs - set(removed))


def _write_ledger_json(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    env = app.env
    store = getattr(env, ENV_CLAIMS, {})
    out = {
        "stamp": app._dltheory_stamp,
        "chapters": [
            {"doc": d, "title": env.titles[d].astext() if d in env.titles else d,
             "claims": store[d]}
            for d in _doc_order(env) if store.get(d)
        ],
    }
    Path(app.outdir, "claims.json").write_text(json.dumps(out, indent=1, sort_keys=True))


# --------------------------------------------------------------- execution stamp


def library_stamp(root: Path | None = None) -> str:
    """Hash of what a notebook's results depend on besides its own code.

    The library's source (:func:`dltheory.ledger.source_hash` of the ``.py`` files under
    ``root``, by default this package), the profile, the device type, the torch and python
    versions.
    """
    from . import profile

    h = hashlib.sha256(_ledger.source_hash(root).encode())
    import torch

    h.update(json.dumps([profile.name(), profile.device().type, torch.__version__,
                         platform.python_version()]).encode())
    return h.hexdigest()


def _cache_dir(app) -> Path:
    path = getattr(app.config, "nb_execution_cache_path", "") or ""
    if not path:
        return Path(app.outdir).parent / ".jupyter_cache"
    return Path(path)


def _read_ledgers(app):
    """Read the full-profile ledgers (``dltheory_ledgers``, relative to the source folder)
    once per build; a malformed one stops the build with the file and the field."""
    folder = Path(app.srcdir, app.config.dltheory_ledgers)
    try:
        app._dltheory_ledgers = [data for _, data in _ledger.read_all(folder)]
    except _ledger.LedgerError as err:
        raise ExtensionError(f"dltheory: malformed full-profile ledger: {err}") from None


def _invalidate_cache(app):
    stamp = library_stamp()
    app._dltheory_stamp = stamp
    cache = _cache_dir(app)
    stamp_file = cache / STAMP_FILE
    old = json.loads(stamp_file.read_text())["stamp"] if stamp_file.exists() else None
    if old != stamp:
        if cache.exists():
            logger.info(f"dltheory: library or profile changed; clearing {cache}")
            shutil.rmtree(cache)
        cache.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps({"stamp": stamp}))


# ------------------------------------------------------------------------ mathjax


def mathjax_source() -> Path:
    """The es5 folder of the MathJax 3 distribution installed by django-static-mathjax."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / "tex-chtml.js").is_file():
        raise RuntimeError(
            "MathJax 3 is not installed: `pip install django-static-mathjax` "
            "(it is in requirements.txt); the book serves MathJax from its own build"
        )
    return root


def _setup_mathjax(app, config):
    config.mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    src = mathjax_source()
    dst = Path(app.outdir, "_static", "mathjax")
    for part in MATHJAX_PARTS:
        s, d = src / part, dst / part
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


# ----------------------------------------------------------------------- citation


def _citation(app) -> dict:
    path = Path(app.srcdir, "CITATION.cff")
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text())


def _cite_chapter(app, doctree):
    env = app.env
    doc = env.docname
    cff = getattr(app, "_dltheory_citation", {})
    if not cff or not _is_notebook(env, doc):
        return
    title = doctree.next_node(nodes.title)
    chapter = title.astext() if title is not None else doc
    authors = " and ".join(
        a.get("name") or f"{a.get('family-names', '')}, {a.get('given-names', '')}"
        for a in cff.get("authors", [])
    )
    base = (app.config.html_baseurl or "").rstrip("/")
    url = f"{base}/{doc}.html" if base else f"{doc}.html"
    year = str(cff.get("date-released", ""))[:4]
    key = "dntv-" + doc.replace("/", "-")
    bib = (
        f"@incollection{{{key},\n"
        f"  title     = {{{chapter}}},\n"
        f"  booktitle = {{{cff.get('title', '')}}},\n"
        f"  author    = {{{{{authors}}}}},\n"
        f"  year      = {{{year}}},\n"
        f"  edition   = {{{cff.get('version', '')}}},\n"
        f"  url       = {{{url}}}\n}}"
    )
    rubric = nodes.rubric(text="Cite this chapter")
    para = nodes.paragraph(
        text=f"{authors}. “{chapter}”. In {cff.get('title', '')}, version "
        f"{cff.get('version', '')}, {year}. {url}"
    )
    block = nodes.literal_block(bib, bib, language="bibtex")
    box = nodes.container("", rubric, para, block, classes=["dltheory-cite"])
    section = doctree.next_node(nodes.section)
    (section if section is not None else doctree).append(box)


# ------------------------------------------------------- kernels and progress


def _declares_kernel(path) -> bool:
    """Whether a source file is a notebook (an ``.ipynb``, or MyST text with a kernelspec)."""
    path = Path(path)
    if path.suffix == ".ipynb":
        return True
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4000)
    except OSError:
        return False
    return head.startswith("---") and "kernelspec:" in head


def _plan_progress(app, env, docnames):
    """Number the notebooks this build reads (k of N), in the order Sphinx reads them."""
    todo = [d for d in docnames if _declares_kernel(env.doc2path(d))]
    app._dltheory_notebooks = {d: k for k, d in enumerate(todo, 1)}
    app._dltheory_progress.total = len(todo)


def _progress_begin(app, docname, source):
    k = getattr(app, "_dltheory_notebooks", {}).get(docname)
    if k is not None:
        app._dltheory_progress.begin(docname, k=k)


def _kernel_defaults(app) -> dict:
    """The defaults this build gives the notebook client and kernel manager that myst-nb
    (through jupyter-cache and nbclient) creates for each notebook: the progress hooks, and
    the kernel manager's CurveZMQ policy, so that the kernel it starts gets provisioned keys
    (ipykernel's kernelspec declares support) instead of warning that it runs over TCP
    without encryption. Neither class takes configuration from myst-nb, so the defaults of
    their configurable traits are set for the build's process, and restored after it."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from .runner import kernel_manager_settings

    out = {(NotebookClient, hook): fn for hook, fn in app._dltheory_progress.hooks().items()}
    out.update({(KernelManager, name): value
                for name, value in kernel_manager_settings().items()})
    return out


def _set_kernel_defaults(app):
    from .runner import Progress

    app._dltheory_progress = Progress(lambda line: logger.info(line),
                                      every=app.config.dltheory_progress_every)
    saved = {}
    for (cls, name), value in _kernel_defaults(app).items():
        trait = cls.class_traits()[name]
        saved[cls, name] = trait.default_value
        trait.default_value = value
    app._dltheory_saved_defaults = saved


def _restore_kernel_defaults(app, exc):
    for (cls, name), value in getattr(app, "_dltheory_saved_defaults", {}).items():
        cls.class_traits()[name].default_value = value
    app._dltheory_saved_defaults = {}


# --------------------------------------------------------------------------- setup


def _config_inited(app, config):
    _setup_mathjax(app, config)
    app._dltheory_citation = _citation(app)
    # Progress bars of executed notebooks would be widgets needing a CDN: disable them.
    os.environ["TQDM_DISABLE"] = "1"


def setup(app):
    app.setup_extension("dltheory.bibstyle")  # author-year labels in the reference list
    app.add_node(ledger_placeholder)
    app.add_node(claims_table_placeholder)
    app.add_directive("claims-ledger", ClaimsLedger)
    app.add_config_value("dltheory_progress_every", 30.0, "", types=(int, float))
    app.add_config_value("dltheory_ledgers", "book/ledgers", "", types=(str,))
    app.connect("config-inited", _config_inited)
    app.connect("builder-inited", _invalidate_cache)
    app.connect("builder-inited", _read_ledgers)
    app.connect("builder-inited", _set_kernel_defaults)
    app.connect("env-before-read-docs", _plan_progress)
    app.connect("source-read", _progress_begin)
    app.connect("build-finished", _restore_kernel_defaults)
    app.connect("env-get-outdated", _ledger_always_outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("doctree-read", _collect_claims)
    app.connect("doctree-read", _cite_chapter)
    app.connect("doctree-resolved", _resolve_ledger)
    app.connect("build-finished", _write_ledger_json)
    app.connect("build-finished", _copy_mathjax)
    app.add_css_file("dltheory.css")
    static = Path(__file__).parent / "static"
    app.connect("builder-inited", lambda a: a.config.html_static_path.append(str(static)))
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}

"""Claims: named, measured statements that fail the build when the numbers disagree.

A claim compares a measured number with a target through a relation, and names the
theorem it checks (the label of a ``prf:theorem`` or ``prf:lemma``)::

    claims.check("gd.min_norm", err, "<=", 1e-10, theorem="thm-gd-min-norm")

``check`` records the claim in the session's :data:`ledger`, shows one readable line,
and raises :class:`ClaimFailure` when it fails, so that the notebook cell, the chapter
and the book build fail with a message naming the claim.

**Negative controls** are first-class: ``expect="fail"`` marks a check run where a
hypothesis of the theorem is broken. It is recorded as "failed as expected" when the
relation does not hold, and it raises when the relation *does* hold, since a check that
cannot fail proves nothing.

A measured NaN or infinity always fails, also for a negative control: a broken
measurement is not evidence about the theorem.

Relations: ``"<="`` and ``">="`` against a bound; ``"=="`` within ``atol + rtol*|target|``;
``"in"`` for a closed interval ``target=(lo, hi)``.

**Discrimination.** A check that a wrong theory also passes proves nothing, so every claim
says what it checks and what it rejects:

* ``kind`` is one of :data:`KINDS`: ``"theorem"`` (the statement's own inequality or
  identity), ``"prediction"`` (a consequence the text derives), ``"observation"`` (an
  empirical regularity, never a theorem's check) or ``"numerics"`` (two solvers or
  estimators agreeing).
* ``rivals`` maps the name of each nearest wrong theory (the other exponent, a missing
  factor, the hypothesis ignored, the bound read as an equality) to the value it predicts,
  in the form of ``target``. The claim's own relation and tolerance are applied to each
  rival, and a rival that passes too makes the claim fail: *the check does not
  discriminate*. A ``"prediction"`` must name at least one rival.
* A negative control (``expect="fail"``) names the one hypothesis it breaks
  (``breaks="..."``), shown beside it in the ledger with the margin by which it misses.

Every record carries its *margin*: the distance of the measurement from the target in
units of the claim's tolerance (:func:`excess`, at most 1 when the relation holds), and,
for each rival, the *separation*: the same distance from the rival's prediction, more than
1 when the rival is rejected. For ``"=="`` the unit is the tolerance ``atol + rtol*|t|``,
for ``"in"`` the interval's half-width, and for ``"<="`` / ``">="`` the bound itself
(a separation of 1.3 says the measurement lies 30% beyond the rival's bound).
"""

from __future__ import annotations

import html
import math
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import profile
from .errors import InputError, InputTypeError

MIME = "application/vnd.dltheory.claim+json"
RELATIONS = ("<=", ">=", "==", "in")
KINDS = ("theorem", "prediction", "observation", "numerics")
"""What a claim checks; see the module's docstring."""
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


class ClaimFailure(AssertionError):
    """A claim whose outcome is not the expected one (or whose measurement is not finite)."""


@dataclass(frozen=True)
class Rival:
    """A wrong theory a claim must reject: its name, its prediction (in the form of the
    claim's target), and the separation of the measurement from it (:func:`excess`)."""

    name: str
    target: float | tuple[float, float]
    separation: float
    passes: bool

    def to_dict(self) -> dict:
        return {"name": self.name,
                "target": list(self.target) if isinstance(self.target, tuple) else self.target,
                "separation": _json_number(self.separation), "passes": self.passes}


def holds(measured: float, relation: str, target, atol: float = 0.0,
          rtol: float = 0.0) -> bool:
    """Whether ``measured relation target`` holds (False for a non-finite measurement)."""
    if not math.isfinite(measured):
        return False
    if relation == "<=":
        return measured <= target
    if relation == ">=":
        return measured >= target
    if relation == "==":
        return abs(measured - target) <= atol + rtol * abs(target)
    return target[0] <= measured <= target[1]


def excess(measured: float, relation: str, target, atol: float = 0.0,
           rtol: float = 0.0) -> float:
    """How far ``measured`` lies from ``target``, in units of the claim's tolerance.

    ``"=="``: ``|m - t| / (atol + rtol*|t|)``; ``"in"``: ``|m - centre| / half-width``;
    ``"<="``: ``1 + (m - t)/|t|`` (``m/t`` for a positive bound); ``">="``:
    ``1 + (t - m)/|t|``. At most 1 when the relation holds, more than 1 when it does not
    (up to rounding at the edge); infinite for a zero-width tolerance that is missed.
    A zero one-sided bound is measured in absolute units (``1 + m`` for ``<= 0``).
    """
    if not math.isfinite(measured):
        return math.inf
    if relation in ("<=", ">="):
        d = measured - target if relation == "<=" else target - measured
        return 1.0 + (d / abs(target) if target != 0 else d)
    if relation == "==":
        d, unit = abs(measured - target), atol + rtol * abs(target)
    else:
        lo, hi = target
        d, unit = abs(measured - (lo + hi) / 2), (hi - lo) / 2
    if unit == 0:
        return 0.0 if d == 0 else math.inf
    return d / unit


def _json_number(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


@dataclass(frozen=True)
class Claim:
    """One checked claim, as recorded in the ledger."""

    name: str
    measured: float
    relation: str
    target: float | tuple[float, float]
    atol: float
    rtol: float
    theorem: str
    expect: str
    holds: bool
    finite: bool
    profile: str
    device: str
    dtype: str
    seed: int | None
    wall_s: float
    note: str = ""
    chapter: str = ""
    extra: dict = field(default_factory=dict)
    kind: str = "theorem"
    rivals: tuple[Rival, ...] = ()
    breaks: str = ""
    peak_rss_mb: float | None = None

    @property
    def margin(self) -> float:
        """Distance of the measurement from the target, in tolerances (:func:`excess`):
        at most 1 when the relation holds; for a negative control, the size of its miss."""
        return excess(self.measured, self.relation, self.target, self.atol, self.rtol)

    @property
    def nearest_rival(self) -> Rival | None:
        """The rival whose prediction lies closest to the measurement (None without rivals)."""
        return min(self.rivals, key=lambda r: r.separation, default=None)

    @property
    def separation(self) -> float | None:
        """The nearest rival's separation (None without rivals); more than 1 rejects it."""
        r = self.nearest_rival
        return None if r is None else r.separation

    @property
    def slack(self) -> float | None:
        """For a bound (``<=``, ``>=``) that holds: the unused part of the bound, relative to
        it (``(t - m)/|t|`` for ``<=``); None for other relations."""
        if self.relation not in ("<=", ">=") or not self.finite:
            return None
        t = self.target
        gap = t - self.measured if self.relation == "<=" else self.measured - t
        return gap / abs(t) if t != 0 else gap

    @property
    def discriminates(self) -> bool:
        """False when a rival passes the claim's relation and tolerance too."""
        return not any(r.passes for r in self.rivals)

    @property
    def ok(self) -> bool:
        """True when the outcome is the expected one (pass, or fail for a negative control)
        and no rival passes too."""
        return (self.finite and self.holds == (self.expect == "pass")
                and self.discriminates)

    @property
    def status(self) -> str:
        if not self.finite:
            return "not finite"
        if self.expect == "pass":
            if not self.holds:
                return "FAILED"
            return "passed" if self.discriminates else "DOES NOT DISCRIMINATE"
        return "failed as expected" if not self.holds else "PASSED UNEXPECTEDLY"

    def bound_text(self) -> str:
        """The relation and target as text, e.g. ``<= 1e-10`` or ``== 0.5 ± 0.01``."""
        if self.relation == "in":
            lo, hi = self.target
            return f"in [{_fmt_bound(lo)}, {_fmt_bound(hi)}]"
        if self.relation == "==":
            tol = []
            if self.atol:
                tol.append(_fmt_bound(self.atol))
            if self.rtol:
                tol.append(f"{_fmt_bound(self.rtol)}·|target|")
            return f"== {_fmt_bound(self.target)} ± {' + '.join(tol) or '0'}"
        return f"{self.relation} {_fmt_bound(self.target)}"

    def measured_text(self) -> str:
        """The measured value, with enough digits to tell it apart from the bound."""
        if not self.finite:
            return repr(self.measured)
        if self.relation == "in":
            lo, hi = self.target
            ref = lo if abs(self.measured - lo) <= abs(self.measured - hi) else hi
        else:
            ref = self.target
        return _fmt(self.measured, distinct_from=ref)

    def line(self) -> str:
        """One readable line: mark, name, measured value, bound, status, theorem."""
        mark = ("⊘" if self.expect == "fail" else "✔") if self.ok else "✘"
        if self.expect == "fail":
            kind = f" [negative control, {self.kind}; breaks: {self.breaks}]"
        else:
            kind = f" [{self.kind}]"
        return (
            f"{mark} claim {self.name}{kind}: measured {self.measured_text()} "
            f"{self.bound_text()} -> {self.status}{self.discrimination_text()} "
            f"(checks {self.theorem}; "
            f"{self.profile}, {self.device}, {self.dtype}, seed {self.seed})"
        )

    def discrimination_text(self) -> str:
        """``; slack 12%``, ``; nearest rival 'slope 2' at 3.1 tolerances`` or
        ``; misses by 4.2 tolerances``: what the claim rejects, and by how much."""
        parts = []
        if self.expect == "fail":
            if self.finite:
                parts.append(f"misses by {_fmt_ratio(self.margin)} {self.unit}")
        else:
            if self.slack is not None and self.holds:
                parts.append(f"slack {_fmt_slack(self.slack, self.target)}")
            r = self.nearest_rival
            if r is not None:
                parts.append(f"nearest rival {r.name!r} at {_fmt_ratio(r.separation)} "
                             f"{self.unit}")
        return "".join(f"; {p}" for p in parts)

    @property
    def unit(self) -> str:
        """The unit of :attr:`margin` and of the separations, in words."""
        return {"==": "tolerances", "in": "half-widths"}.get(self.relation, "× the bound")

    def _ipython_display_(self) -> None:
        """A claim is shown once, by :func:`check`; displaying the returned record again
        (as a cell's last expression) shows nothing. ``print(claim.line())`` or
        :func:`table` show it again."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target"] = list(self.target) if isinstance(self.target, tuple) else self.target
        d["status"] = self.status
        d["ok"] = self.ok
        d["bound"] = self.bound_text()
        d["measured_text"] = self.measured_text()
        d["measured"] = self.measured if self.finite else repr(self.measured)
        d["rivals"] = [r.to_dict() for r in self.rivals]
        nearest = self.nearest_rival
        d["nearest_rival"] = None if nearest is None else nearest.name
        d["separation"] = None if nearest is None else _json_number(nearest.separation)
        d["margin"] = _json_number(self.margin)
        d["slack"] = None if self.slack is None else _json_number(self.slack)
        d["unit"] = self.unit
        d["discrimination"] = self.discrimination_text().removeprefix("; ")
        return d


def _fmt(x: float, *, distinct_from: float | None = None) -> str:
    """Short text of a number: 4 significant digits, more when needed to tell ``x`` apart
    from ``distinct_from`` (so that a measured value never reads the same as its bound)."""
    if isinstance(x, int | np.integer):
        return str(int(x))
    if x == 0:
        return "0"
    if distinct_from is not None and x == distinct_from:
        return _fmt_bound(x)            # equal to the bound: write it exactly like the bound
    for digits in (4, 6, 8, 10, 12, 17):
        text = f"{x:.{digits}g}"
        if distinct_from is None or float(text) != float(f"{distinct_from:.{digits}g}"):
            return text
    return repr(x)


def _fmt_ratio(x: float) -> str:
    """A margin or separation: 2 significant digits, 3 below 10 (``1.3``, ``27``, ``4.1e+03``)."""
    if not math.isfinite(x):
        return "∞"
    return f"{x:.3g}" if x < 10 else f"{x:.2g}" if x < 1e3 else f"{x:.1e}"


def _fmt_slack(slack: float, target) -> str:
    """Slack of a bound: a percentage of a non-zero bound, or the absolute gap."""
    if target != 0:
        return f"{100 * slack:.3g}%"
    return f"{slack:.3g}"


def _fmt_bound(x: float) -> str:
    """A bound or target, written exactly (shortest repr that reads back as the same float)."""
    if isinstance(x, int | np.integer) or float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _as_number(value, what: str) -> tuple[float, str | None]:
    """Convert a scalar (python number, numpy scalar, one-element tensor) to float; a
    wrong type raises :class:`~dltheory.errors.InputTypeError`, a number too large for a
    float :class:`~dltheory.errors.InputError`, each naming ``what``."""
    dtype = None
    if isinstance(value, bool | np.bool_):
        raise InputTypeError(
            f"{what} must be a number, got a bool: pass the measured quantity, not the "
            "outcome of a comparison"
        )
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InputTypeError(
                f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise InputTypeError(f"{what} must be a real number, got a {value.dtype} tensor")
        dtype = str(value.dtype).removeprefix("torch.")
        return float(value.detach().cpu().reshape(())), dtype
    if isinstance(value, np.ndarray | np.generic):
        if value.size != 1:
            raise InputTypeError(
                f"{what} must be a scalar, got an array of shape {value.shape}")
        if value.dtype == np.bool_:
            raise InputTypeError(
                f"{what} must be a number, got a numpy bool: pass the measured quantity, not "
                "the outcome of a comparison"
            )
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise InputTypeError(f"{what} must be a real number, got numpy dtype {value.dtype}")
        return float(np.asarray(value).reshape(())), str(value.dtype)
    if isinstance(value, int | float):
        try:
            return float(value), None
        except OverflowError:
            raise InputError(f"{what} is too large for a float (a {value.bit_length()}-bit "
                             "integer); pass a finite number") from None
    raise InputTypeError(f"{what} must be a real number, got {type(value).__name__}")


class Ledger:
    """The claims checked in this session (one chapter's kernel, or one script)."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self._last = time.perf_counter()

    def reset(self) -> None:
        self.claims.clear()
        self._last = time.perf_counter()

    def add(self, claim: Claim) -> None:
        # Re-running a cell replaces the claim of the same name.
        self.claims[claim.name] = claim

    def elapsed(self) -> float:
        """Seconds since the previous claim (or since the ledger started); restarts the clock."""
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        return dt

    def __iter__(self):
        return iter(self.claims.values())

    def __len__(self) -> int:
        return len(self.claims)


ledger = Ledger()
"""The session's ledger: what :func:`check` records and :func:`table` shows."""


def check(
    name: str,
    measured,
    relation: str,
    target,
    *,
    theorem: str,
    kind: str,
    atol: float = 0.0,
    rtol: float = 0.0,
    expect: str = "pass",
    rivals: dict | None = None,
    breaks: str | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int | None = None,
    note: str = "",
) -> Claim:
    """Check a claim, record it, show one line, and raise :class:`ClaimFailure` if it fails.

    Parameters
    ----------
    name: a short identifier, unique within the chapter (``"gd.min_norm"``).
    measured: the measured number (python/numpy scalar or a one-element tensor).
    relation: one of ``"<="``, ``">="``, ``"=="``, ``"in"``.
    target: the bound (a number), or ``(lo, hi)`` for ``"in"``.
    theorem: the label of the ``prf:`` directive the claim checks (``"thm-gd-min-norm"``;
        a leading ``"prf:"`` is accepted and dropped). The book build rejects unknown labels.
    atol, rtol: tolerance of ``"=="``, which holds when
        ``|measured - target| <= atol + rtol*|target|``.
    kind: what the claim checks, one of :data:`KINDS`.
    expect: ``"pass"``, or ``"fail"`` for a negative control.
    rivals: ``{name: prediction}`` of the nearest wrong theories, each prediction in the
        form of ``target``; each must fail the same relation and tolerance. Required
        (non-empty) for a ``"prediction"``; not allowed for a negative control.
    breaks: for a negative control (and only for one), the hypothesis it breaks, in words.
    dtype: the dtype the measurement was computed in; taken from ``measured`` when it is a
        tensor or a numpy scalar.
    seed: the seed of the experiment; defaults to the last :func:`dltheory.profile.seed`.
    note: a short remark shown in the ledger.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"claim name must be a non-empty identifier of letters, digits and _.:-, got {name!r}"
        )
    if relation not in RELATIONS:
        raise ValueError(f"claim {name!r}: relation must be one of {RELATIONS}, got {relation!r}")
    if expect not in ("pass", "fail"):
        raise ValueError(f"claim {name!r}: expect must be 'pass' or 'fail', got {expect!r}")
    if kind not in KINDS:
        raise ValueError(f"claim {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if expect == "fail":
        if not isinstance(breaks, str) or not breaks.strip():
            raise ValueError(
                f"negative control {name!r}: name the hypothesis it breaks, "
                "breaks='...' (one hypothesis of the statement it controls)"
            )
        if rivals:
            raise ValueError(
                f"negative control {name!r}: a control has no rivals; give them to the "
                "claim it controls"
            )
    elif breaks is not None:
        raise ValueError(
            f"claim {name!r}: breaks= is for negative controls (expect='fail') only"
        )
    if rivals is not None and not isinstance(rivals, dict):
        raise TypeError(
            f"claim {name!r}: rivals must be a dict {{name: prediction}}, got "
            f"{type(rivals).__name__}"
        )
    if kind == "prediction" and expect == "pass" and not rivals:
        raise ValueError(
            f"claim {name!r}: a prediction names its rivals, rivals={{'the nearest wrong "
            "theory': its prediction}}; with none, say kind='observation'"
        )
    if not isinstance(theorem, str):
        raise TypeError(f"claim {name!r}: theorem must be a label string, got {type(theorem)}")
    label = theorem.removeprefix("prf:")
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"claim {name!r}: theorem label {theorem!r} is not a valid label")

    value, measured_dtype = _as_number(measured, f"claim {name!r}: measured")
    tgt = _as_target(target, relation, f"claim {name!r}")
    atol = _as_number(atol, f"claim {name!r}: atol")[0]
    rtol = _as_number(rtol, f"claim {name!r}: rtol")[0]
    if not (atol >= 0 and rtol >= 0 and math.isfinite(atol) and math.isfinite(rtol)):
        raise InputError(f"claim {name!r}: tolerances must be >= 0 and finite, got "
                         f"atol={atol}, rtol={rtol}")
    if relation != "==" and (atol or rtol):
        raise ValueError(
            f"claim {name!r}: atol/rtol only apply to '=='; put the slack in the bound of "
            f"'{relation}' instead"
        )

    finite = math.isfinite(value)
    ok_here = holds(value, relation, tgt, atol, rtol)
    rival_records = []
    for rname, prediction in (rivals or {}).items():
        if not isinstance(rname, str) or not rname.strip():
            raise ValueError(f"claim {name!r}: a rival's name must be non-empty text, "
                             f"got {rname!r}")
        rt = _as_target(prediction, relation, f"claim {name!r}: rival {rname!r}")
        rival_records.append(Rival(
            name=rname, target=rt, passes=holds(value, relation, rt, atol, rtol),
            separation=excess(value, relation, rt, atol, rtol)))

    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    dtype_text = dtype or measured_dtype or "—"
    claim = Claim(
        name=name,
        measured=value,
        relation=relation,
        target=tgt,
        atol=atol,
        rtol=rtol,
        theorem=label,
        expect=expect,
        holds=bool(ok_here),
        finite=finite,
        profile=profile.name(),
        device=profile.device().type,
        dtype=str(dtype_text),
        seed=profile.current_seed() if seed is None else int(seed),
        wall_s=ledger.elapsed(),
        note=note,
        kind=kind,
        rivals=tuple(rival_records),
        breaks=breaks or "",
        peak_rss_mb=profile.peak_rss_mb(),
    )
    ledger.add(claim)
    _show(claim)
    if not claim.ok:
        raise ClaimFailure(_failure_message(claim))
    return claim


def _as_target(target, relation: str, what: str) -> float | tuple[float, float]:
    """A target (or a rival's prediction) as a float, or ``(lo, hi)`` for ``"in"``;
    ``what`` names the claim (and the rival) in the error."""
    if relation == "in":
        if not isinstance(target, tuple | list) or len(target) != 2:
            raise InputTypeError(f"{what}: relation 'in' needs target=(lo, hi), got "
                                 f"{target!r}")
        lo = _as_number(target[0], f"{what}: lower bound")[0]
        hi = _as_number(target[1], f"{what}: upper bound")[0]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"{what}: interval ends must be finite, got [{lo}, {hi}]")
        if not lo <= hi:
            raise InputError(f"{what}: empty interval [{lo}, {hi}]")
        return (lo, hi)
    t = _as_number(target, f"{what}: target")[0]
    if not math.isfinite(t):
        raise InputError(f"{what}: target must be finite, got {t}")
    return t


def _target_text(t) -> str:
    if isinstance(t, tuple):
        return f"[{_fmt_bound(t[0])}, {_fmt_bound(t[1])}]"
    return _fmt_bound(t)


def _failure_message(claim: Claim) -> str:
    where = f"(checks {claim.theorem})"
    if not claim.finite:
        return f"claim {claim.name!r} measured {claim.measured}, which is not finite {where}"
    if claim.expect == "pass" and claim.holds:
        r = next(r for r in claim.rivals if r.passes)
        return (
            f"claim {claim.name!r} does not discriminate: rival {r.name!r} also passes "
            f"(measured {claim.measured_text()}; the rival predicts "
            f"{_target_text(r.target)}, which the claim's relation and tolerance accept "
            f"too) {where}"
        )
    if claim.expect == "pass":
        return (
            f"claim {claim.name!r} failed: measured {claim.measured_text()} is not "
            f"{claim.bound_text()} {where}"
        )
    return (
        f"negative control {claim.name!r} passed: measured {claim.measured_text()} is "
        f"{claim.bound_text()} although it breaks '{claim.breaks}', so the check cannot "
        f"tell the cases apart {where}"
    )


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show(claim: Claim) -> None:
    if _in_ipython():
        from IPython.display import display

        display({"text/plain": claim.line(), MIME: claim.to_dict()}, raw=True)
    else:
        print(claim.line(), flush=True)


TABLE_MIME = "application/vnd.dltheory.claims-table+json"
"""MIME type of a chapter's closing table (:func:`table`): the claim records, which the
book's Sphinx extension renders like the Verification page, theorems linked by number."""
TABLE_COLUMNS = ("", "claim", "checks", "measured", "bound", "rejects / breaks")
"""Columns of the claims tables; the kind goes under the claim's name, and the run
(profile, device, dtype, seed, wall time) under what the claim rejects."""


def verdict(record) -> str:
    """The verdict of a claim (a Claim or its dict) as a mark and a word: ``✔ passed`` for a
    claim that holds, ``⊘ failed as expected`` for a negative control (not the check a
    passing claim wears), ``✘ ...`` for anything that is not the expected outcome."""
    d = record.to_dict() if isinstance(record, Claim) else record
    if not d["ok"]:
        return f"✘ {d['status']}"
    return "⊘ failed as expected" if d["expect"] == "fail" else "✔ passed"


def rounded(x: float, place: int, *, strip: bool = False) -> str:
    """``x`` written to the decimal place ``10**place`` (``place=-4``: four decimals).

    A number that would keep fewer than 2 significant digits at that place (an exact check's
    ``1.2e-15`` against a tolerance of ``1e-10``) is written with 2 significant digits, and
    very large or small numbers in scientific notation with the same last digit. ``strip``
    drops trailing zeros (for a target: ``1`` rather than ``1.0000``).
    """
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise InputTypeError(f"rounded: x must be a real number, got {type(x).__name__}")
    if isinstance(place, bool) or not isinstance(place, int | np.integer):
        raise InputTypeError(f"rounded: place must be an integer, got {type(place).__name__}")
    x = float(x)
    if not math.isfinite(x):
        return repr(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    digits = mag - int(place) + 1                  # significant digits kept at that place
    if digits < 2:
        return f"{x:.2g}"
    if -5 <= mag < 6 and place >= -16:
        text = f"{x:.{max(0, -int(place))}f}"
        if strip and "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    text = f"{x:.{digits - 1}e}"
    if strip:
        mant, exp = text.split("e")
        text = (mant.rstrip("0").rstrip(".") if "." in mant else mant) + "e" + exp
    return text


def _lead(x: float) -> int:
    """Decimal place of the leading digit of ``x`` (``0.0634`` -> -2)."""
    return math.floor(math.log10(abs(x)))


def _sig(x: float, n: int = 3) -> str:
    return f"{x:.{n}g}"


def _last_place(x: float) -> int:
    """Decimal place of the last digit of ``x`` written with 3 significant digits
    (``0.0634`` -> -4, ``0.5`` -> -1, ``1e-10`` -> -10, ``50`` -> 1)."""
    mantissa = _sig(x).split("e")[0].lstrip("-").replace(".", "").strip("0")
    return _lead(x) - max(len(mantissa), 1) + 1


def shown_numbers(record) -> tuple[str, str]:
    """The measured value and the bound of a claim (a Claim or its dict) as the tables show
    them, rounded to the tolerance's precision.

    ``"=="``: the tolerance in (at most) 3 significant digits, the target to its last digit
    (``1 ± 0.0634``), the measurement one digit further (``0.98731``); ``"in"``: the same
    with the interval's width; ``"<="``/``">="``: the bound in 4 and the measurement in 3
    significant digits; a measurement that misses with at most 5 significant digits, and one
    far below that precision (an exact check's ``1.2e-15`` against ``1e-10``) with 2.
    Where rounding would make the numbers read another verdict than the exact ones (or a
    measurement read as a bound it does not equal), the measurement gets more digits.
    """
    d = record.to_dict() if isinstance(record, Claim) else record
    m, rel = d["measured"], d["relation"]
    exact = d["measured_text"], d["bound"].removeprefix("== ")   # the unrounded texts
    if not isinstance(m, int | float) or not math.isfinite(m):
        return exact
    target = tuple(d["target"]) if rel == "in" else d["target"]
    atol, rtol = d["atol"], d["rtol"]
    if rel == "==":
        unit = atol + rtol * abs(target)
        if unit == 0:
            return exact
        place = _last_place(unit)
        tol = " + ".join([_sig(atol)] * bool(atol) + [f"{_sig(rtol)}·|target|"] * bool(rtol))
        bound = f"{rounded(target, place, strip=True)} ± {tol}"
        shown_target = [float(rounded(target, place, strip=True))]
    elif rel == "in":
        lo, hi = target
        if hi == lo:
            return exact
        place = _last_place(hi - lo)
        bound = f"in [{rounded(lo, place, strip=True)}, {rounded(hi, place, strip=True)}]"
        shown_target = [float(rounded(lo, place, strip=True)),
                        float(rounded(hi, place, strip=True))]
    else:
        bound_text = _sig(target, 4) if target != 0 else "0"
        bound = f"{rel} {bound_text}"
        shown_target = [float(bound_text)]
        # 3 significant digits, 2 far below the bound (an exact check), minus the extra one
        if m == 0:
            return ("0", bound) if holds(0.0, rel, float(bound_text)) == d["holds"] else exact
        place = _lead(m) - (1 if target != 0 and abs(m) < 1e-3 * abs(target) else 2) + 1
    # a measurement that misses (a control) with at most 5 significant digits: a miss by
    # far needs no more, unless more are needed to read the right verdict
    start = place - 1 if m == 0 or d["holds"] else max(place - 1, _lead(m) - 4)
    for extra in range(0, 18):
        text = rounded(m, start - extra)
        shown = float(text)
        same_verdict = holds(shown, rel, tuple(shown_target) if rel == "in" else
                             shown_target[0], atol, rtol) == holds(m, rel, target, atol, rtol)
        # a bound must not read as met exactly when it is not; "==" shows its tolerance
        reads_as_target = rel != "==" and shown in shown_target and m not in shown_target
        if same_verdict and not reads_as_target:
            return text, bound
    return exact            # rounding the target would change the verdict: write it exactly


def rejects_text(record: dict) -> str:
    """What a recorded claim rejects (nearest rival, slack) or, for a negative control, the
    hypothesis it breaks and its miss; ``""`` when there is nothing to say."""
    said = ([f"breaks: {record['breaks']}"] if record["expect"] == "fail" else []) + (
        [record["discrimination"]] if record.get("discrimination") else [])
    return "; ".join(said)


def run_text(record: dict) -> str:
    """Where and how a recorded claim was measured: profile, device, dtype, seed, wall time."""
    seed = "—" if record["seed"] is None else str(record["seed"])
    return (f"{record['profile']} · {record['device']} · {record['dtype']} · seed {seed} · "
            f"{record['wall_s']:.2f} s")


def rows(claims) -> list[dict]:
    """Table rows for claim records (Claim objects or their dicts), one dict of strings each:

    ``verdict`` (:func:`verdict`), ``claim`` (the name), ``kind`` (with ``negative control``
    for one), ``theorem`` (the label), ``measured`` and ``bound`` (:func:`shown_numbers`),
    ``rejects`` (:func:`rejects_text`, ``—`` when empty), ``run`` (:func:`run_text`) and
    ``classes`` (``claim-ok``/``claim-bad``, and ``claim-control`` for a control).
    """
    out = []
    for c in claims:
        d = c.to_dict() if isinstance(c, Claim) else c
        control = d["expect"] == "fail"
        measured, bound = shown_numbers(d)
        out.append({
            "verdict": verdict(d),
            "claim": d["name"],
            "kind": d["kind"] + (", negative control" if control else ""),
            "theorem": d["theorem"],
            "measured": measured,
            "bound": bound,
            "rejects": rejects_text(d) or "—",
            "run": run_text(d),
            "classes": ("claim-ok" if d["ok"] else "claim-bad")
            + (" claim-control" if control else ""),
        })
    return out


def table_text(claims=None) -> str:
    """The claims as a fixed-width text table (the run of each claim on a second line)."""
    body = [[r["verdict"], f"{r['claim']} ({r['kind']})", r["theorem"], r["measured"],
             r["bound"], r["rejects"]] for r in rows(ledger if claims is None else claims)]
    runs = [r["run"] for r in rows(ledger if claims is None else claims)]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(TABLE_COLUMNS, widths, strict=True)).rstrip()]
    for r, run in zip(body, runs, strict=True):
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        lines.append(" " * (widths[0] + 2) + "run: " + run)
    return "\n".join(lines)


def table_html(claims=None) -> str:
    """The claims as an HTML table (shown where the book's extension is absent: Jupyter,
    Colab); the book renders :data:`TABLE_MIME` instead, theorems linked by number."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in TABLE_COLUMNS)
    body = []
    for r in rows(ledger if claims is None else claims):
        cells = [e(r["verdict"]),
                 f"{e(r['claim'])}<br><small>{e(r['kind'])}</small>",
                 e(r["theorem"]), e(r["measured"]), e(r["bound"]),
                 f"{e(r['rejects'])}<br><small>{e(r['run'])}</small>"]
        body.append(f'<tr class="{r["classes"]}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + "</tr>")
    return (f'<table class="dltheory-claims"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def table() -> None:
    """Show the table of the claims checked so far in this session."""
    if not len(ledger):
        raise RuntimeError("no claim has been checked in this session: nothing to tabulate")
    if _in_ipython():
        from IPython.display import display

        display({"text/plain": table_text(), "text/html": table_html(),
                 TABLE_MIME: {"claims": [c.to_dict() for c in ledger]}}, raw=True)
    else:
        print(table_text())

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

MIME = "application/vnd.dltheory.claim+json"
RELATIONS = ("<=", ">=", "==", "in")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


class ClaimFailure(AssertionError):
    """A claim whose outcome is not the expected one (or whose measurement is not finite)."""


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

    @property
    def ok(self) -> bool:
        """True when the outcome is the expected one (pass, or fail for a negative control)."""
        return self.finite and self.holds == (self.expect == "pass")

    @property
    def status(self) -> str:
        if not self.finite:
            return "not finite"
        if self.expect == "pass":
            return "passed" if self.holds else "FAILED"
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
        mark = "✔" if self.ok else "✘"
        kind = " [negative control]" if self.expect == "fail" else ""
        return (
            f"{mark} claim {self.name}{kind}: measured {self.measured_text()} "
            f"{self.bound_text()} -> {self.status} (checks {self.theorem}; "
            f"{self.profile}, {self.device}, {self.dtype}, seed {self.seed})"
        )

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


def _fmt_bound(x: float) -> str:
    """A bound or target, written exactly (shortest repr that reads back as the same float)."""
    if isinstance(x, int | np.integer) or float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _as_number(value, what: str) -> tuple[float, str | None]:
    """Convert a scalar (python number, numpy scalar, one-element tensor) to float."""
    dtype = None
    if isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{what} must be a number, got a bool: pass the measured quantity, not the "
            "outcome of a comparison"
        )
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{what} must be a real number, got a {value.dtype} tensor")
        dtype = str(value.dtype).removeprefix("torch.")
        return float(value.detach().cpu().reshape(())), dtype
    if isinstance(value, np.ndarray | np.generic):
        if value.size != 1:
            raise TypeError(f"{what} must be a scalar, got an array of shape {value.shape}")
        if value.dtype == np.bool_:
            raise TypeError(
                f"{what} must be a number, got a numpy bool: pass the measured quantity, not "
                "the outcome of a comparison"
            )
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise TypeError(f"{what} must be a real number, got numpy dtype {value.dtype}")
        return float(np.asarray(value).reshape(())), str(value.dtype)
    if isinstance(value, int | float):
        return float(value), None
    raise TypeError(f"{what} must be a real number, got {type(value).__name__}")


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
    atol: float = 0.0,
    rtol: float = 0.0,
    expect: str = "pass",
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
    expect: ``"pass"``, or ``"fail"`` for a negative control.
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
    if not isinstance(theorem, str):
        raise TypeError(f"claim {name!r}: theorem must be a label string, got {type(theorem)}")
    label = theorem.removeprefix("prf:")
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"claim {name!r}: theorem label {theorem!r} is not a valid label")

    value, measured_dtype = _as_number(measured, f"claim {name!r}: measured")
    if relation == "in":
        if not isinstance(target, tuple | list) or len(target) != 2:
            raise TypeError(f"claim {name!r}: relation 'in' needs target=(lo, hi), got {target!r}")
        lo = _as_number(target[0], f"claim {name!r}: lower bound")[0]
        hi = _as_number(target[1], f"claim {name!r}: upper bound")[0]
        if not lo <= hi:
            raise ValueError(f"claim {name!r}: empty interval [{lo}, {hi}]")
        tgt: float | tuple[float, float] = (lo, hi)
    else:
        tgt = _as_number(target, f"claim {name!r}: target")[0]
        if not math.isfinite(tgt):
            raise ValueError(f"claim {name!r}: target must be finite, got {tgt}")
    atol = _as_number(atol, f"claim {name!r}: atol")[0]
    rtol = _as_number(rtol, f"claim {name!r}: rtol")[0]
    if not (atol >= 0 and rtol >= 0 and math.isfinite(atol) and math.isfinite(rtol)):
        raise ValueError(f"claim {name!r}: tolerances must be >= 0 and finite, got "
                         f"atol={atol}, rtol={rtol}")
    if relation != "==" and (atol or rtol):
        raise ValueError(
            f"claim {name!r}: atol/rtol only apply to '=='; put the slack in the bound of "
            f"'{relation}' instead"
        )

    finite = math.isfinite(value)
    if not finite:
        holds = False
    elif relation == "<=":
        holds = value <= tgt
    elif relation == ">=":
        holds = value >= tgt
    elif relation == "==":
        holds = abs(value - tgt) <= atol + rtol * abs(tgt)
    else:
        holds = tgt[0] <= value <= tgt[1]

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
        holds=bool(holds),
        finite=finite,
        profile=profile.name(),
        device=profile.device().type,
        dtype=str(dtype_text),
        seed=profile.current_seed() if seed is None else int(seed),
        wall_s=ledger.elapsed(),
        note=note,
    )
    ledger.add(claim)
    _show(claim)
    if not claim.ok:
        raise ClaimFailure(_failure_message(claim))
    return claim


def _failure_message(claim: Claim) -> str:
    where = f"(checks {claim.theorem})"
    if not claim.finite:
        return f"claim {claim.name!r} measured {claim.measured}, which is not finite {where}"
    if claim.expect == "pass":
        return (
            f"claim {claim.name!r} failed: measured {claim.measured_text()} is not "
            f"{claim.bound_text()} {where}"
        )
    return (
        f"negative control {claim.name!r} passed: measured {claim.measured_text()} is "
        f"{claim.bound_text()} although a hypothesis is broken, so the check cannot tell "
        f"the cases apart {where}"
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


TABLE_COLUMNS = ("claim", "theorem", "measured", "bound", "status", "profile", "device",
                 "dtype", "seed", "wall (s)")


def rows(claims) -> list[list[str]]:
    """Table rows (strings) for claim records (Claim objects or their dicts)."""
    out = []
    for c in claims:
        d = c.to_dict() if isinstance(c, Claim) else c
        out.append([
            d["name"] + (" (negative control)" if d["expect"] == "fail" else ""),
            d["theorem"],
            d["measured_text"],
            d["bound"],
            d["status"],
            d["profile"],
            d["device"],
            d["dtype"],
            "—" if d["seed"] is None else str(d["seed"]),
            f"{d['wall_s']:.2f}",
        ])
    return out


def table_text(claims=None) -> str:
    """The claims as a fixed-width text table."""
    body = rows(ledger if claims is None else claims)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(TABLE_COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def table_html(claims=None) -> str:
    """The claims as an HTML table (the chapter's closing table)."""
    claims = list(ledger if claims is None else claims)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_COLUMNS)
    body = []
    for c, r in zip(claims, rows(claims), strict=True):
        ok = c.ok if isinstance(c, Claim) else c["ok"]
        cls = "claim-ok" if ok else "claim-bad"
        body.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(v)}</td>" for v in r)
                    + "</tr>")
    return (f'<table class="dltheory-claims"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def table() -> None:
    """Show the table of the claims checked so far in this session."""
    if not len(ledger):
        raise RuntimeError("no claim has been checked in this session: nothing to tabulate")
    if _in_ipython():
        from IPython.display import display

        display({"text/plain": table_text(), "text/html": table_html()}, raw=True)
    else:
        print(table_text())

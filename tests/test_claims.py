"""Tests for dltheory.claims: relations, negative controls, measured types, ledger, tables."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dltheory import claims, profile
from dltheory.claims import ClaimFailure

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
finite = st.floats(allow_nan=False, allow_infinity=False)

THM = "thm-test"
BREAKS = "the test's hypothesis"


def _expect(holds: bool) -> dict:
    """Keyword arguments of a check expected to pass, or of a control expected to fail."""
    return {"expect": "pass"} if holds else {"expect": "fail", "breaks": BREAKS}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Empty ledger, default profile/device, and no remembered seed before each test."""
    monkeypatch.delenv(profile.ENV_PROFILE, raising=False)
    monkeypatch.delenv(profile.ENV_DEVICE, raising=False)
    monkeypatch.setattr(profile._state, "seed", None)
    claims.ledger.reset()
    yield
    claims.ledger.reset()


def _measured_in(message: str) -> str:
    """The measured text quoted by a failure message."""
    m = re.search(r"measured (\S+) is", message)
    assert m is not None, message
    return m.group(1)


# --------------------------------------------------------------------------- relations

# (relation, measured, target, kwargs) that hold, and that do not hold
HOLDS = [
    ("<=", 1.0, 2.0, {}),
    ("<=", 2.0, 2.0, {}),
    (">=", 3.0, 2.0, {}),
    (">=", 2.0, 2.0, {}),
    ("==", 1.0005, 1.0, {"atol": 1e-3}),
    ("==", 101.0, 100.0, {"rtol": 0.01}),
    ("==", 0.5, 0.5, {}),
    ("in", 0.5, (0.0, 1.0), {}),
    ("in", 1.0, (0.0, 1.0), {}),
    ("in", 0.0, [0.0, 1.0], {}),
]
FAILS = [
    ("<=", 3.0, 2.0, {}),
    (">=", 1.0, 2.0, {}),
    ("==", 1.01, 1.0, {"atol": 1e-3}),
    ("==", 102.0, 100.0, {"rtol": 0.01}),
    ("==", 0.5 + 1e-16 * 8, 0.5, {}),
    ("in", 1.5, (0.0, 1.0), {}),
    ("in", -0.25, (0.0, 1.0), {}),
]


@pytest.mark.parametrize(("relation", "measured", "target", "kw"), HOLDS)
def test_relation_passes(relation, measured, target, kw):
    c = claims.check("rel.pass", measured, relation, target, theorem=THM, kind="theorem", **kw)
    assert c.holds and c.ok and c.finite
    assert c.status == "passed"
    assert claims.ledger.claims["rel.pass"] is c


@pytest.mark.parametrize(("relation", "measured", "target", "kw"), FAILS)
def test_relation_fails_names_claim_and_theorem(relation, measured, target, kw):
    with pytest.raises(ClaimFailure, match=r"claim 'rel\.fail' failed: .*\(checks thm-test\)"):
        claims.check("rel.fail", measured, relation, target, theorem=THM, kind="theorem", **kw)
    c = claims.ledger.claims["rel.fail"]  # a failing claim is still recorded
    assert not c.holds and not c.ok
    assert c.status == "FAILED"


def test_claim_failure_is_an_assertion_error():
    assert issubclass(ClaimFailure, AssertionError)


@FAST
@given(x=finite, t=finite, relation=st.sampled_from(["<=", ">="]))
def test_order_relations_agree_with_python(x, t, relation):
    holds = x <= t if relation == "<=" else x >= t
    c = claims.check("prop.order", x, relation, t, theorem=THM, kind="theorem",
                     **_expect(holds))
    assert c.holds == holds
    assert c.ok


@FAST
@given(x=st.floats(-1e6, 1e6), t=st.floats(-1e6, 1e6),
       atol=st.floats(0, 10), rtol=st.floats(0, 1))
def test_equality_relation_is_atol_plus_rtol(x, t, atol, rtol):
    holds = abs(x - t) <= atol + rtol * abs(t)
    c = claims.check("prop.eq", x, "==", t, theorem=THM, kind="theorem", atol=atol, rtol=rtol,
                     **_expect(holds))
    assert c.holds == holds


# --------------------------------------------------------------------------- negative controls

def test_negative_control_recorded_as_failed_as_expected():
    c = claims.check("neg.ok", 3.0, "<=", 1.0, theorem=THM, kind="theorem", expect="fail",
                     breaks=BREAKS)
    assert c.ok and not c.holds
    assert c.status == "failed as expected"
    assert "[negative control, theorem; breaks: the test's hypothesis]" in c.line()


@pytest.mark.parametrize(("relation", "measured", "target"),
                         [("<=", 0.5, 1.0), (">=", 2.0, 1.0), ("==", 1.0, 1.0),
                          ("in", 0.5, (0.0, 1.0))])
def test_negative_control_that_holds_raises(relation, measured, target):
    with pytest.raises(ClaimFailure,
                       match=r"negative control 'neg\.bad' passed.*cannot tell.*thm-test"):
        claims.check("neg.bad", measured, relation, target, theorem=THM, kind="theorem",
                     expect="fail", breaks=BREAKS)
    c = claims.ledger.claims["neg.bad"]
    assert c.status == "PASSED UNEXPECTEDLY" and not c.ok


@pytest.mark.parametrize("expect", ["pass", "fail"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"),
                                 torch.tensor(float("inf"))])
def test_non_finite_measured_always_raises(bad, expect):
    # "<=" with +inf target is rejected, so a fail-expecting check would otherwise pass for
    # -inf <= 1 and "fail as expected" for nan/+inf: non-finite must raise in every case.
    with pytest.raises(ClaimFailure, match=r"claim 'nf' measured .*not finite \(checks thm-test\)"):
        claims.check("nf", bad, "<=", 1.0, theorem=THM, kind="theorem", **_expect(expect == "pass"))
    c = claims.ledger.claims["nf"]
    assert c.status == "not finite"
    assert not c.finite and not c.ok


# --------------------------------------------------------------------------- measured types

@pytest.mark.parametrize(("measured", "dtype"), [
    (0.25, "—"),
    (1, "—"),
    (np.float64(0.25), "float64"),
    (np.float32(0.25), "float32"),
    (np.int32(3), "int32"),
    (np.array(0.25), "float64"),
    (np.array([0.25]), "float64"),
    (torch.tensor(0.25, dtype=torch.float64), "float64"),
    (torch.tensor(0.25, dtype=torch.float32), "float32"),
    (torch.tensor([0.25], dtype=torch.float32), "float32"),
    (torch.tensor([[0.25]], dtype=torch.float64, requires_grad=True), "float64"),
    (torch.tensor(3), "int64"),
])
def test_measured_scalar_types(measured, dtype):
    c = claims.check("types", measured, "<=", 10, theorem=THM, kind="theorem")
    assert isinstance(c.measured, float)
    assert c.measured == float(np.asarray(measured.detach() if isinstance(measured, torch.Tensor)
                                          else measured).reshape(()))
    assert c.dtype == dtype


def test_dtype_argument_overrides_and_accepts_torch_dtype():
    assert claims.check("dt1", 0.1, "<=", 1, theorem=THM, kind="theorem",
                        dtype=torch.float16).dtype == "float16"
    assert claims.check("dt2", torch.tensor(0.1), "<=", 1, theorem=THM, kind="theorem",
                        dtype="float64").dtype == "float64"


@pytest.mark.parametrize(("bad", "match"), [
    (True, r"measured must be a number, got a bool"),
    (np.bool_(False), r"got a bool"),
    ("0.5", r"measured must be a real number, got str"),
    (None, r"measured must be a real number, got NoneType"),
    (1 + 2j, r"measured must be a real number, got complex"),
    (torch.tensor([0.1, 0.2]), r"measured must be a scalar, got a tensor of shape \(2,\)"),
    (torch.zeros(2, 3), r"shape \(2, 3\)"),
    (torch.tensor(True), r"measured must be a real number, got a torch\.bool tensor"),
    (torch.tensor(1 + 2j), r"measured must be a real number, got a torch\.complex64 tensor"),
    (np.array([0.1, 0.2]), r"measured must be a scalar, got an array of shape \(2,\)"),
    ([0.1], r"measured must be a real number, got list"),
])
def test_bad_measured_types_raise_type_error(bad, match):
    with pytest.raises(TypeError, match=r"claim 'bad': .*" + match):
        claims.check("bad", bad, "<=", 1.0, theorem=THM, kind="theorem")
    assert len(claims.ledger) == 0


@pytest.mark.filterwarnings("ignore:Casting complex values to real")
@pytest.mark.parametrize("bad", [np.complex128(1 + 2j), np.array(1 + 2j), np.array([1 + 2j])])
def test_numpy_complex_measured_raises(bad):
    with pytest.raises(TypeError, match=r"claim 'cplx': measured must be a real number"):
        claims.check("cplx", bad, "<=", 2.0, theorem=THM, kind="theorem")


@pytest.mark.parametrize("bad", [np.array(True), np.array([False])])
def test_numpy_bool_array_measured_raises(bad):
    with pytest.raises(TypeError, match="bool"):
        claims.check("npbool", bad, "<=", 2.0, theorem=THM, kind="theorem")


@pytest.mark.parametrize("bad", [np.str_("0.5"), np.array("0.5")])
def test_numpy_string_measured_raises(bad):
    with pytest.raises(TypeError, match="real number"):
        claims.check("npstr", bad, "<=", 1.0, theorem=THM, kind="theorem")


# --------------------------------------------------------------------------- argument validation

@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"relation": "<"}, ValueError, r"claim 'arg': relation must be one of .*got '<'"),
    ({"relation": "eq"}, ValueError, r"relation must be one of"),
    ({"expect": "xfail"}, ValueError, r"claim 'arg': expect must be 'pass' or 'fail', got 'xfail'"),
    ({"theorem": "has space"}, ValueError, r"theorem label 'has space' is not a valid label"),
    ({"theorem": ""}, ValueError, r"theorem label '' is not a valid label"),
    ({"theorem": "prf:"}, ValueError, r"theorem label 'prf:' is not a valid label"),
    ({"theorem": None}, TypeError, r"theorem must be a label string"),
    ({"atol": 1e-3}, ValueError, r"atol/rtol only apply to '=='"),
    ({"rtol": 1e-3, "relation": ">="}, ValueError, r"atol/rtol only apply to '=='"),
    ({"relation": "==", "atol": -1e-3}, ValueError, r"tolerances must be >= 0.*atol=-0\.001"),
    ({"relation": "==", "rtol": -1.0}, ValueError, r"tolerances must be >= 0.*rtol=-1\.0"),
    ({"target": math.inf}, ValueError, r"target must be finite"),
    ({"target": math.nan, "relation": ">="}, ValueError, r"target must be finite"),
    ({"relation": "in", "target": (1.0, 0.0)}, ValueError, r"claim 'arg': empty interval"),
    ({"relation": "in", "target": 1.0}, TypeError, r"relation 'in' needs target=\(lo, hi\)"),
    ({"relation": "in", "target": (0.0, 1.0, 2.0)}, TypeError, r"needs target=\(lo, hi\)"),
    ({"kind": None}, ValueError, r"claim 'arg': kind must be one of \('theorem', 'prediction'"),
    ({"kind": "proof"}, ValueError, r"kind must be one of .*got 'proof'"),
    ({"expect": "fail"}, ValueError, r"negative control 'arg': name the hypothesis it breaks"),
    ({"expect": "fail", "breaks": "  "}, ValueError, r"name the hypothesis it breaks"),
    ({"breaks": "smoothness"}, ValueError, r"breaks= is for negative controls"),
    ({"expect": "fail", "breaks": "x", "rivals": {"r": 0.1}}, ValueError,
     r"a control has no rivals"),
    ({"kind": "prediction"}, ValueError, r"claim 'arg': a prediction names its rivals"),
    ({"kind": "prediction", "rivals": {}}, ValueError, r"a prediction names its rivals"),
    ({"rivals": [("r", 0.1)]}, TypeError, r"rivals must be a dict \{name: prediction\}"),
    ({"rivals": {"": 0.1}}, ValueError, r"a rival's name must be non-empty text"),
    ({"rivals": {"r": math.inf}}, ValueError, r"claim 'arg': rival 'r': target must be finite"),
    ({"rivals": {"r": "0.1"}}, TypeError, r"rival 'r': target must be a real number"),
    ({"relation": "in", "target": (0.0, 1.0), "rivals": {"r": 0.5}}, TypeError,
     r"rival 'r': relation 'in' needs target=\(lo, hi\)"),
])
def test_invalid_arguments(kwargs, exc, match):
    args = {"relation": "<=", "target": 1.0, "theorem": THM, "kind": "theorem", **kwargs}
    relation, target = args.pop("relation"), args.pop("target")
    with pytest.raises(exc, match=match):
        claims.check("arg", 0.5, relation, target, **args)
    assert len(claims.ledger) == 0


@pytest.mark.parametrize("name", ["", "has space", ".leading", "a/b", "<b>", 3, None])
def test_invalid_names(name):
    with pytest.raises(ValueError, match=r"claim name must be a non-empty identifier"):
        claims.check(name, 0.5, "<=", 1.0, theorem=THM, kind="theorem")


def test_name_with_trailing_newline_rejected():
    with pytest.raises(ValueError, match="claim name"):
        claims.check("a\n", 0.5, "<=", 1.0, theorem=THM, kind="theorem")


def test_label_with_trailing_newline_rejected():
    with pytest.raises(ValueError, match="not a valid label"):
        claims.check("lbl", 0.5, "<=", 1.0, theorem="thm-x\n", kind="theorem")


def test_nan_tolerance_rejected():
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("nantol", 1.0, "==", 1.0, theorem=THM, kind="theorem", atol=math.nan,
                     expect="fail", breaks=BREAKS)


def test_prf_prefix_is_dropped():
    c = claims.check("lbl", 0.5, "<=", 1.0, theorem="prf:thm-gd-min-norm", kind="theorem")
    assert c.theorem == "thm-gd-min-norm"
    assert c.to_dict()["theorem"] == "thm-gd-min-norm"


def test_degenerate_interval_is_allowed():
    c = claims.check("point", 2.0, "in", (2, 2), theorem=THM, kind="theorem")
    assert c.target == (2.0, 2.0) and c.ok


# --------------------------------------------------------------------------- ledger and records

def test_recheck_replaces_record():
    claims.check("same", 0.5, "<=", 1.0, theorem=THM, kind="theorem")
    claims.check("other", 0.5, "<=", 1.0, theorem=THM, kind="theorem")
    assert len(claims.ledger) == 2
    c = claims.check("same", 0.75, "<=", 1.0, theorem=THM, kind="theorem")
    assert len(claims.ledger) == 2
    assert claims.ledger.claims["same"] is c
    assert claims.ledger.claims["same"].measured == 0.75
    assert [x.name for x in claims.ledger] == ["same", "other"]


def test_seed_defaults_to_current_seed():
    assert claims.check("s0", 0.5, "<=", 1.0, theorem=THM, kind="theorem").seed is None
    profile.seed(1234)
    assert claims.check("s1", 0.5, "<=", 1.0, theorem=THM, kind="theorem").seed == 1234
    assert claims.check("s2", 0.5, "<=", 1.0, theorem=THM, kind="theorem", seed=7).seed == 7


def test_record_has_profile_device_and_wall_time():
    c = claims.check("meta", 0.5, "<=", 1.0, theorem=THM, kind="theorem")
    assert c.profile == profile.name()
    assert c.device == profile.device().type
    assert c.wall_s >= 0


def test_check_prints_one_line(capsys):
    claims.check("shown", 0.5, "<=", 1.0, theorem=THM, kind="theorem")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "claim shown [theorem]: measured 0.5 <= 1 -> passed; slack 50% (checks thm-test" in out


REQUIRED_KEYS = {"name", "measured", "measured_text", "bound", "status", "ok", "profile",
                 "device", "dtype", "seed", "wall_s", "theorem", "expect", "kind", "rivals",
                 "nearest_rival", "separation", "margin", "slack", "breaks"}


def test_to_dict_is_json_serialisable():
    profile.seed(3)
    recs = [
        claims.check("j1", torch.tensor(0.5, dtype=torch.float32), "<=", 1.0, theorem=THM,
                     kind="theorem"),
        claims.check("j2", 0.5, "in", (0, 1), theorem="prf:lem-x", kind="theorem",
                     note="a <b>note</b>"),
        claims.check("j3", 1.0, "==", 1.0, theorem=THM, kind="theorem", atol=1e-9, rtol=1e-6),
        claims.check("j4", 3.0, "<=", 1.0, theorem=THM, kind="theorem", expect="fail",
                     breaks=BREAKS),
    ]
    for c in recs:
        d = c.to_dict()
        assert REQUIRED_KEYS <= d.keys()
        back = json.loads(json.dumps(d, allow_nan=False))
        assert back["name"] == c.name
        assert back["ok"] is True
        assert back["seed"] == 3
        assert back["status"] == c.status
    assert json.loads(json.dumps(recs[1].to_dict()))["target"] == [0, 1]
    assert recs[0].to_dict()["dtype"] == "float32"


def test_to_dict_of_non_finite_claim_is_json_serialisable():
    with pytest.raises(ClaimFailure):
        claims.check("nanrec", math.nan, "<=", 1.0, theorem=THM, kind="theorem")
    d = claims.ledger.claims["nanrec"].to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))  # measured is written as text
    assert back["measured"] == "nan"
    assert back["status"] == "not finite" and back["ok"] is False


def test_bound_text():
    assert claims.check("b1", 0.5, "<=", 1e-10 * 1e10, theorem=THM,
                        kind="theorem").bound_text() == "<= 1"
    assert claims.check("b2", 0.5, ">=", 0.1, theorem=THM, kind="theorem").bound_text() == ">= 0.1"
    assert claims.check("b3", 0.5, "==", 0.5, theorem=THM, kind="theorem", atol=0.01,
                        rtol=0.001).bound_text() == "== 0.5 ± 0.01 + 0.001·|target|"
    assert claims.check("b4", 0.5, "==", 0.5, theorem=THM,
                        kind="theorem").bound_text() == "== 0.5 ± 0"
    assert claims.check("b5", 0.5, "in", (0, 1.5), theorem=THM,
                        kind="theorem").bound_text() == "in [0, 1.5]"


def test_measured_text_distinct_from_bound_in_failure_message():
    with pytest.raises(ClaimFailure) as err:
        claims.check("close", 1.0 + 1e-12, "<=", 1.0, theorem=THM, kind="theorem")
    msg = str(err.value)
    shown = _measured_in(msg)
    assert shown != "1"
    assert float(shown) == 1.0 + 1e-12
    assert "is not <= 1 " in msg


@pytest.mark.parametrize(("measured", "target"), [(1e-10 * (1 + 1e-9), 1e-10),
                                                  (0.99999, 1.0), (1.0000000000000002, 1.0)])
def test_measured_text_distinct_near_target(measured, target):
    c = claims.check("near", measured, ">=", target, theorem=THM, kind="theorem",
                     **_expect(measured >= target))
    assert float(c.measured_text()) != target
    assert c.measured_text() != c.bound_text().split()[1]


@FAST
@given(x=finite, t=finite, relation=st.sampled_from(["<=", ">=", "=="]))
def test_measured_text_never_reads_as_target(x, t, relation):
    holds = {"<=": x <= t, ">=": x >= t, "==": x == t}[relation]
    c = claims.check("prop.text", x, relation, t, theorem=THM, kind="theorem",
                     **_expect(holds))
    text = c.measured_text()
    if x != t:
        assert float(text) != t, (text, c.bound_text())


def test_measured_text_equal_to_target_reads_equal():
    c = claims.check("eqtext", 10001.0, "==", 10001.0, theorem=THM, kind="theorem")
    assert float(c.measured_text()) == 10001.0


def test_measured_text_distinct_from_interval_end():
    with pytest.raises(ClaimFailure) as err:
        claims.check("edge", 1.00001, "in", (0.0, 1.0), theorem=THM, kind="theorem")
    shown = _measured_in(str(err.value))
    assert float(shown) > 1.0


# --------------------------------------------------------------------------- tables

def _fill():
    claims.check("t.one", 0.5, "<=", 1.0, theorem=THM, kind="theorem")
    claims.check("t.two", 2.0, "<=", 1.0, theorem="lem-two", kind="theorem", expect="fail",
                 breaks=BREAKS)
    with pytest.raises(ClaimFailure):
        claims.check("t.three", 2.0, "<=", 1.0, theorem=THM, kind="theorem")


def test_table_text_contains_every_claim():
    _fill()
    text = claims.table_text()
    lines = text.splitlines()
    assert len(lines) == 1 + 2 * 3                  # header, then each claim and its run
    assert lines[0].split() == ["claim", "checks", "measured", "bound", "rejects", "/",
                                "breaks"]
    for name in ("t.one (theorem)", "t.two (theorem, negative control)", "t.three"):
        assert name in text
    assert "lem-two" in text and "✘ FAILED" in text and "⊘ failed as expected" in text
    assert "✔ passed" in text and text.count("run: ci · cpu") == 3


def test_table_text_of_empty_list_is_header_only():
    assert claims.table_text([]).splitlines() == [claims.table_text([])]
    assert "rejects / breaks" in claims.table_text([])


def test_table_html_rows_and_classes():
    _fill()
    out = claims.table_html()
    assert out.count("<tr class=") == 3
    assert out.count('class="claim-ok"') == 1
    assert out.count('class="claim-ok claim-control"') == 1  # a control is marked apart
    assert out.count('class="claim-bad"') == 1
    assert out.count("<th>") == len(claims.TABLE_COLUMNS) == 6
    assert "<small>theorem, negative control</small>" in out


def test_negative_controls_do_not_wear_the_passing_check():
    _fill()
    marks = {r["claim"]: r["verdict"] for r in claims.rows(claims.ledger)}
    assert marks == {"t.one": "✔ passed", "t.two": "⊘ failed as expected",
                     "t.three": "✘ FAILED"}
    assert claims.ledger.claims["t.two"].line().startswith("⊘ claim t.two")
    assert claims.ledger.claims["t.one"].line().startswith("✔ claim t.one")


def test_table_html_escapes():
    c = claims.check("esc", 0.5, "<=", 1.0, theorem=THM, kind="theorem", dtype="<f8&x>")
    out = claims.table_html([c])
    assert "&lt;f8&amp;x&gt;" in out and "<f8" not in out
    d = c.to_dict() | {"name": "<script>alert(1)</script>"}
    out = claims.table_html([d])
    assert "<script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out


def test_table_offers_the_records_to_the_book(monkeypatch):
    """In a notebook the table is also a bundle of the records (:data:`claims.TABLE_MIME`),
    which the book renders with theorems linked by number."""
    _fill()
    shown = []
    monkeypatch.setattr(claims, "_in_ipython", lambda: True)
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw: shown.append(obj))
    claims.table()
    (bundle,) = shown
    assert [r["name"] for r in bundle[claims.TABLE_MIME]["claims"]] == ["t.one", "t.two",
                                                                          "t.three"]
    json.dumps(bundle[claims.TABLE_MIME], allow_nan=False)
    assert bundle["text/html"].startswith('<table class="dltheory-claims">')


# ----------------------------------------------------------------------- rounding


@pytest.mark.parametrize(("x", "place", "strip", "text"), [
    (0.06339968441406578, -4, False, "0.0634"),
    (1.0, -4, True, "1"),
    (1.0, -4, False, "1.0000"),
    (0.98731234, -5, False, "0.98731"),
    (1.2e-15, -11, False, "1.2e-15"),          # far below the precision: 2 significant digits
    (1.234e-15, -18, False, "1.234e-15"),
    (1234567.89, 2, False, "1.2346e+06"),
    (-0.4246948257093, -10, False, "-0.4246948257"),
    (1250.0, 1, True, "1250"),
    (0.0, -3, False, "0"),
    (math.inf, -3, False, "inf"),
])
def test_rounded(x, place, strip, text):
    assert claims.rounded(x, place, strip=strip) == text


@pytest.mark.parametrize(("args", "match"), [
    (("1", -2), "x must be a real number"),
    ((True, -2), "x must be a real number"),
    ((1.0, 2.5), "place must be an integer"),
    ((1.0, None), "place must be an integer"),
])
def test_rounded_rejects_bad_input(args, match):
    with pytest.raises(TypeError, match=match):
        claims.rounded(*args)


def _shown(measured, relation, target, **kw):
    holds = claims.holds(measured, relation, target if relation != "in" else tuple(target),
                         kw.get("atol", 0.0), kw.get("rtol", 0.0))
    c = claims.check("shown.n", measured, relation, target, theorem=THM, kind="theorem",
                     **kw, **_expect(holds))
    return claims.shown_numbers(c)


@pytest.mark.parametrize(("claim", "shown"), [
    # the example: the target to the tolerance's precision, the measurement one
    # digit further
    ((0.98731234, "==", 1.0, {"atol": 0.06339968441406578}), ("0.98731", "1 ± 0.0634")),
    ((12.3456, "==", 12, {"atol": 0.5}), ("12.35", "12 ± 0.5")),
    ((0.40546537, "==", 0.4054651081081644, {"rtol": 0.01}),
     ("0.405465", "0.40547 ± 0.01·|target|")),
    # exact checks: 2 significant digits
    ((1.2e-15, "<=", 1e-10, {}), ("1.2e-15", "<= 1e-10")),
    ((3.2e-13, "==", 0.0, {"atol": 1e-10}), ("3.2e-13", "0 ± 1e-10")),
    # bounds: 4 significant digits, the measurement 3
    ((0.31234567, "<=", 0.3141592653589793, {}), ("0.312", "<= 0.3142")),
    ((0.5, "in", (0.4, 0.6), {}), ("0.50", "in [0.4, 0.6]")),
    # a control missing by far: at most 5 significant digits
    ((0.00449741489, "==", 0.0, {"atol": 1e-10}), ("0.0044974", "0 ± 1e-10")),
    # more digits where fewer would read another verdict
    ((-0.42469482570934258, "==", -0.42469482570935113, {"atol": 1e-10}),
     ("-0.42469482571", "-0.4246948257 ± 1e-10")),
    ((1.00000001, "<=", 1.0, {}), ("1.00000001", "<= 1")),
])
def test_shown_numbers(claim, shown):
    measured, relation, target, kw = claim
    assert _shown(measured, relation, target, **kw) == shown


@FAST
@given(x=finite.filter(lambda v: abs(v) < 1e12), t=finite.filter(lambda v: abs(v) < 1e12),
       tol=st.floats(1e-12, 1e3), relation=st.sampled_from(["<=", ">=", "==", "in"]))
def test_shown_numbers_read_the_same_verdict_as_the_exact_ones(x, t, tol, relation):
    target = (t, t + tol) if relation == "in" else t
    kw = {"atol": tol} if relation == "==" else {}
    measured, bound = _shown(x, relation, target, **kw)
    m = float(measured)
    if relation == "==":
        shown_t = float(bound.split(" ± ")[0])
        assert claims.holds(m, "==", shown_t, tol) == claims.holds(x, "==", t, tol)
    elif relation == "in":
        lo, hi = (float(v) for v in bound.removeprefix("in [").rstrip("]").split(", "))
        assert claims.holds(m, "in", (lo, hi)) == claims.holds(x, "in", target)
    else:                               # and a bound never reads as met exactly when not
        shown_t = float(bound.split()[1])
        assert claims.holds(m, relation, shown_t) == claims.holds(x, relation, t)
        if x != shown_t:
            assert m != shown_t, (measured, bound)


def test_an_equality_may_read_as_its_target_within_the_shown_tolerance():
    assert _shown(1.000000000000002, "==", 1.0, atol=1e-4) == ("1.00000", "1 ± 0.0001")
    assert _shown(0.99999999, "<=", 1.0) == ("0.99999999", "<= 1")


def test_table_raises_on_empty_ledger():
    with pytest.raises(RuntimeError, match="no claim has been checked"):
        claims.table()


def test_table_prints_text(capsys):
    _fill()
    capsys.readouterr()
    claims.table()
    out = capsys.readouterr().out
    assert "t.one" in out and "t.three" in out


# --------------------------------------------------------------------------- discrimination

def test_a_rival_that_also_passes_fails_the_claim_naming_both():
    with pytest.raises(ClaimFailure, match=r"claim 'hr\.slope' does not discriminate: rival "
                       r"'no bias hypothesis' also passes .*predicts 1\.05.*\(checks thm-test\)"):
        claims.check("hr.slope", 1.02, "==", 1.0, atol=0.05, theorem=THM, kind="prediction",
                     rivals={"slope 2": 2.0, "no bias hypothesis": 1.05})
    c = claims.ledger.claims["hr.slope"]  # recorded, and not ok
    assert c.holds and not c.discriminates and not c.ok
    assert c.status == "DOES NOT DISCRIMINATE"
    assert c.to_dict()["ok"] is False


def test_rivals_are_judged_by_the_claims_own_relation_and_tolerance():
    c = claims.check("sep", 1.02, "==", 1.0, atol=0.05, theorem=THM, kind="prediction",
                     rivals={"slope 2": 2.0, "slope 1.2": 1.2})
    seps = {r.name: r.separation for r in c.rivals}
    assert seps["slope 2"] == pytest.approx(0.98 / 0.05)
    assert seps["slope 1.2"] == pytest.approx(0.18 / 0.05)
    assert c.nearest_rival.name == "slope 1.2" and c.separation == seps["slope 1.2"]
    assert c.margin == pytest.approx(0.4)
    assert "nearest rival 'slope 1.2' at 3.6 tolerances" in c.line()
    # rtol scales with the rival's own prediction, as it does with the target
    c = claims.check("rt", 10.0, "==", 10.0, rtol=0.1, theorem=THM, kind="prediction",
                     rivals={"x1.2": 12.0})
    assert c.rivals[0].separation == pytest.approx(2.0 / 1.2)


@pytest.mark.parametrize(("relation", "measured", "target", "rival", "separation"), [
    ("<=", 0.5, 1.0, 0.25, 2.0),          # the measurement is twice the tighter rival bound
    (">=", 2.0, 1.0, 4.0, 1.0 + 2.0 / 4.0),
    ("in", 0.5, (0.0, 1.0), (0.8, 1.0), 0.4 / 0.1),
    ("<=", 0.5, 1.0, -0.5, 3.0),
])
def test_separation_of_one_sided_and_interval_rivals(relation, measured, target, rival,
                                                     separation):
    c = claims.check("one", measured, relation, target, theorem=THM, kind="prediction",
                     rivals={"r": rival})
    assert c.separation == pytest.approx(separation)
    assert not c.rivals[0].passes


@FAST
@given(x=st.floats(-1e6, 1e6), t=st.floats(-1e6, 1e6), r=st.floats(-1e6, 1e6),
       atol=st.floats(1e-6, 10), rtol=st.floats(0, 1),
       relation=st.sampled_from(["<=", ">=", "=="]))
def test_excess_agrees_with_the_relation(x, t, r, atol, rtol, relation):
    """A rival passes exactly when its separation is at most 1 (away from rounding)."""
    kw = {"atol": atol, "rtol": rtol} if relation == "==" else {}
    e = claims.excess(x, relation, r, **kw)
    h = claims.holds(x, relation, r, **kw)
    if abs(e - 1) > 1e-9:
        assert h == (e <= 1), (x, r, e)


def test_bound_slack_and_control_miss_are_recorded():
    c = claims.check("slack", 0.25, "<=", 1.0, theorem=THM, kind="theorem")
    assert c.slack == 0.75 and "slack 75%" in c.line()
    c = claims.check("slack0", -0.5, "<=", 0.0, theorem=THM, kind="theorem")
    assert c.slack == 0.5
    ctl = claims.check("ctl", 1.3, "==", 1.0, atol=0.1, theorem=THM, kind="prediction",
                       expect="fail", breaks="bias with a bounded density")
    assert ctl.margin == pytest.approx(3.0)
    assert "breaks: bias with a bounded density" in ctl.line()
    assert "misses by 3 tolerances" in ctl.line()
    d = ctl.to_dict()
    assert d["breaks"] == "bias with a bounded density" and d["margin"] == pytest.approx(3.0)


def test_a_control_that_passes_names_the_hypothesis_it_breaks():
    with pytest.raises(ClaimFailure, match=r"negative control 'ctl' passed: .*although it "
                       r"breaks 'sigma > 1'"):
        claims.check("ctl", 0.5, "<=", 1.0, theorem=THM, kind="theorem", expect="fail",
                     breaks="sigma > 1")


def test_to_dict_carries_kind_rivals_separation_and_breaks():
    c = claims.check("d", 1.0, "==", 1.0, atol=0.1, theorem=THM, kind="prediction",
                     rivals={"double": 2.0})
    d = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert d["kind"] == "prediction" and d["breaks"] == ""
    assert d["rivals"] == [{"name": "double", "target": 2.0, "separation": 10.0,
                            "passes": False}]
    assert d["nearest_rival"] == "double" and d["separation"] == 10.0
    assert d["unit"] == "tolerances"
    e = claims.check("e", 1.0, "==", 1.0, theorem=THM, kind="numerics",
                     rivals={"off": 1.5}).to_dict()
    assert json.loads(json.dumps(e, allow_nan=False))["separation"] == "inf"
    plain = claims.check("p", 1.0, "<=", 2.0, theorem=THM, kind="observation").to_dict()
    assert plain["rivals"] == [] and plain["separation"] is None

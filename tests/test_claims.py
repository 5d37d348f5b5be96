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
    c = claims.check("rel.pass", measured, relation, target, theorem=THM, **kw)
    assert c.holds and c.ok and c.finite
    assert c.status == "passed"
    assert claims.ledger.claims["rel.pass"] is c


@pytest.mark.parametrize(("relation", "measured", "target", "kw"), FAILS)
def test_relation_fails_names_claim_and_theorem(relation, measured, target, kw):
    with pytest.raises(ClaimFailure, match=r"claim 'rel\.fail' failed: .*\(checks thm-test\)"):
        claims.check("rel.fail", measured, relation, target, theorem=THM, **kw)
    c = claims.ledger.claims["rel.fail"]  # a failing claim is still recorded
    assert not c.holds and not c.ok
    assert c.status == "FAILED"


def test_claim_failure_is_an_assertion_error():
    assert issubclass(ClaimFailure, AssertionError)


@FAST
@given(x=finite, t=finite, relation=st.sampled_from(["<=", ">="]))
def test_order_relations_agree_with_python(x, t, relation):
    holds = x <= t if relation == "<=" else x >= t
    c = claims.check("prop.order", x, relation, t, theorem=THM,
                     expect="pass" if holds else "fail")
    assert c.holds == holds
    assert c.ok


@FAST
@given(x=st.floats(-1e6, 1e6), t=st.floats(-1e6, 1e6),
       atol=st.floats(0, 10), rtol=st.floats(0, 1))
def test_equality_relation_is_atol_plus_rtol(x, t, atol, rtol):
    holds = abs(x - t) <= atol + rtol * abs(t)
    c = claims.check("prop.eq", x, "==", t, theorem=THM, atol=atol, rtol=rtol,
                     expect="pass" if holds else "fail")
    assert c.holds == holds


# --------------------------------------------------------------------------- negative controls

def test_negative_control_recorded_as_failed_as_expected():
    c = claims.check("neg.ok", 3.0, "<=", 1.0, theorem=THM, expect="fail")
    assert c.ok and not c.holds
    assert c.status == "failed as expected"
    assert "[negative control]" in c.line()


@pytest.mark.parametrize(("relation", "measured", "target"),
                         [("<=", 0.5, 1.0), (">=", 2.0, 1.0), ("==", 1.0, 1.0),
                          ("in", 0.5, (0.0, 1.0))])
def test_negative_control_that_holds_raises(relation, measured, target):
    with pytest.raises(ClaimFailure,
                       match=r"negative control 'neg\.bad' passed.*cannot tell.*thm-test"):
        claims.check("neg.bad", measured, relation, target, theorem=THM, expect="fail")
    c = claims.ledger.claims["neg.bad"]
    assert c.status == "PASSED UNEXPECTEDLY" and not c.ok


@pytest.mark.parametrize("expect", ["pass", "fail"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"),
                                 torch.tensor(float("inf"))])
def test_non_finite_measured_always_raises(bad, expect):
    # "<=" with +inf target is rejected, so a fail-expecting check would otherwise pass for
    # -inf <= 1 and "fail as expected" for nan/+inf: non-finite must raise in every case.
    with pytest.raises(ClaimFailure, match=r"claim 'nf' measured .*not finite \(checks thm-test\)"):
        claims.check("nf", bad, "<=", 1.0, theorem=THM, expect=expect)
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
    c = claims.check("types", measured, "<=", 10, theorem=THM)
    assert isinstance(c.measured, float)
    assert c.measured == float(np.asarray(measured.detach() if isinstance(measured, torch.Tensor)
                                          else measured).reshape(()))
    assert c.dtype == dtype


def test_dtype_argument_overrides_and_accepts_torch_dtype():
    assert claims.check("dt1", 0.1, "<=", 1, theorem=THM, dtype=torch.float16).dtype == "float16"
    assert claims.check("dt2", torch.tensor(0.1), "<=", 1, theorem=THM,
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
        claims.check("bad", bad, "<=", 1.0, theorem=THM)
    assert len(claims.ledger) == 0


@pytest.mark.filterwarnings("ignore:Casting complex values to real")
@pytest.mark.parametrize("bad", [np.complex128(1 + 2j), np.array(1 + 2j), np.array([1 + 2j])])
def test_numpy_complex_measured_raises(bad):
    with pytest.raises(TypeError, match=r"claim 'cplx': measured must be a real number"):
        claims.check("cplx", bad, "<=", 2.0, theorem=THM)


@pytest.mark.parametrize("bad", [np.array(True), np.array([False])])
def test_numpy_bool_array_measured_raises(bad):
    with pytest.raises(TypeError, match="bool"):
        claims.check("npbool", bad, "<=", 2.0, theorem=THM)


@pytest.mark.parametrize("bad", [np.str_("0.5"), np.array("0.5")])
def test_numpy_string_measured_raises(bad):
    with pytest.raises(TypeError, match="real number"):
        claims.check("npstr", bad, "<=", 1.0, theorem=THM)


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
])
def test_invalid_arguments(kwargs, exc, match):
    args = {"relation": "<=", "target": 1.0, "theorem": THM, **kwargs}
    relation, target = args.pop("relation"), args.pop("target")
    with pytest.raises(exc, match=match):
        claims.check("arg", 0.5, relation, target, **args)
    assert len(claims.ledger) == 0


@pytest.mark.parametrize("name", ["", "has space", ".leading", "a/b", "<b>", 3, None])
def test_invalid_names(name):
    with pytest.raises(ValueError, match=r"claim name must be a non-empty identifier"):
        claims.check(name, 0.5, "<=", 1.0, theorem=THM)


def test_name_with_trailing_newline_rejected():
    with pytest.raises(ValueError, match="claim name"):
        claims.check("a\n", 0.5, "<=", 1.0, theorem=THM)


def test_label_with_trailing_newline_rejected():
    with pytest.raises(ValueError, match="not a valid label"):
        claims.check("lbl", 0.5, "<=", 1.0, theorem="thm-x\n")


def test_nan_tolerance_rejected():
    with pytest.raises(ValueError, match="tolerance"):
        claims.check("nantol", 1.0, "==", 1.0, theorem=THM, atol=math.nan, expect="fail")


def test_prf_prefix_is_dropped():
    c = claims.check("lbl", 0.5, "<=", 1.0, theorem="prf:thm-gd-min-norm")
    assert c.theorem == "thm-gd-min-norm"
    assert c.to_dict()["theorem"] == "thm-gd-min-norm"


def test_degenerate_interval_is_allowed():
    c = claims.check("point", 2.0, "in", (2, 2), theorem=THM)
    assert c.target == (2.0, 2.0) and c.ok


# --------------------------------------------------------------------------- ledger and records

def test_recheck_replaces_record():
    claims.check("same", 0.5, "<=", 1.0, theorem=THM)
    claims.check("other", 0.5, "<=", 1.0, theorem=THM)
    assert len(claims.ledger) == 2
    c = claims.check("same", 0.75, "<=", 1.0, theorem=THM)
    assert len(claims.ledger) == 2
    assert claims.ledger.claims["same"] is c
    assert claims.ledger.claims["same"].measured == 0.75
    assert [x.name for x in claims.ledger] == ["same", "other"]


def test_seed_defaults_to_current_seed():
    assert claims.check("s0", 0.5, "<=", 1.0, theorem=THM).seed is None
    profile.seed(1234)
    assert claims.check("s1", 0.5, "<=", 1.0, theorem=THM).seed == 1234
    assert claims.check("s2", 0.5, "<=", 1.0, theorem=THM, seed=7).seed == 7


def test_record_has_profile_device_and_wall_time():
    c = claims.check("meta", 0.5, "<=", 1.0, theorem=THM)
    assert c.profile == profile.name()
    assert c.device == profile.device().type
    assert c.wall_s >= 0


def test_check_prints_one_line(capsys):
    claims.check("shown", 0.5, "<=", 1.0, theorem=THM)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "claim shown: measured 0.5 <= 1 -> passed (checks thm-test" in out


REQUIRED_KEYS = {"name", "measured", "measured_text", "bound", "status", "ok", "profile",
                 "device", "dtype", "seed", "wall_s", "theorem", "expect"}


def test_to_dict_is_json_serialisable():
    profile.seed(3)
    recs = [
        claims.check("j1", torch.tensor(0.5, dtype=torch.float32), "<=", 1.0, theorem=THM),
        claims.check("j2", 0.5, "in", (0, 1), theorem="prf:lem-x", note="a <b>note</b>"),
        claims.check("j3", 1.0, "==", 1.0, theorem=THM, atol=1e-9, rtol=1e-6),
        claims.check("j4", 3.0, "<=", 1.0, theorem=THM, expect="fail"),
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
        claims.check("nanrec", math.nan, "<=", 1.0, theorem=THM)
    d = claims.ledger.claims["nanrec"].to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))  # measured is written as text
    assert back["measured"] == "nan"
    assert back["status"] == "not finite" and back["ok"] is False


def test_bound_text():
    assert claims.check("b1", 0.5, "<=", 1e-10 * 1e10, theorem=THM).bound_text() == "<= 1"
    assert claims.check("b2", 0.5, ">=", 0.1, theorem=THM).bound_text() == ">= 0.1"
    assert claims.check("b3", 0.5, "==", 0.5, theorem=THM, atol=0.01,
                        rtol=0.001).bound_text() == "== 0.5 ± 0.01 + 0.001·|target|"
    assert claims.check("b4", 0.5, "==", 0.5, theorem=THM).bound_text() == "== 0.5 ± 0"
    assert claims.check("b5", 0.5, "in", (0, 1.5), theorem=THM).bound_text() == "in [0, 1.5]"


def test_measured_text_distinct_from_bound_in_failure_message():
    with pytest.raises(ClaimFailure) as err:
        claims.check("close", 1.0 + 1e-12, "<=", 1.0, theorem=THM)
    msg = str(err.value)
    shown = _measured_in(msg)
    assert shown != "1"
    assert float(shown) == 1.0 + 1e-12
    assert "is not <= 1 " in msg


@pytest.mark.parametrize(("measured", "target"), [(1e-10 * (1 + 1e-9), 1e-10),
                                                  (0.99999, 1.0), (1.0000000000000002, 1.0)])
def test_measured_text_distinct_near_target(measured, target):
    c = claims.check("near", measured, ">=", target, theorem=THM, expect="pass"
                     if measured >= target else "fail")
    assert float(c.measured_text()) != target
    assert c.measured_text() != c.bound_text().split()[1]


@FAST
@given(x=finite, t=finite, relation=st.sampled_from(["<=", ">=", "=="]))
def test_measured_text_never_reads_as_target(x, t, relation):
    holds = {"<=": x <= t, ">=": x >= t, "==": x == t}[relation]
    c = claims.check("prop.text", x, relation, t, theorem=THM,
                     expect="pass" if holds else "fail")
    text = c.measured_text()
    if x != t:
        assert float(text) != t, (text, c.bound_text())


def test_measured_text_equal_to_target_reads_equal():
    c = claims.check("eqtext", 10001.0, "==", 10001.0, theorem=THM)
    assert float(c.measured_text()) == 10001.0


def test_measured_text_distinct_from_interval_end():
    with pytest.raises(ClaimFailure) as err:
        claims.check("edge", 1.00001, "in", (0.0, 1.0), theorem=THM)
    shown = _measured_in(str(err.value))
    assert float(shown) > 1.0


# --------------------------------------------------------------------------- tables

def _fill():
    claims.check("t.one", 0.5, "<=", 1.0, theorem=THM)
    claims.check("t.two", 2.0, "<=", 1.0, theorem="lem-two", expect="fail")
    with pytest.raises(ClaimFailure):
        claims.check("t.three", 2.0, "<=", 1.0, theorem=THM)


def test_table_text_contains_every_claim():
    _fill()
    text = claims.table_text()
    lines = text.splitlines()
    assert len(lines) == 1 + 3
    assert lines[0].startswith("claim")
    for name in ("t.one", "t.two (negative control)", "t.three"):
        assert name in text
    assert "lem-two" in text and "FAILED" in text and "failed as expected" in text


def test_table_text_of_empty_list_is_header_only():
    assert claims.table_text([]).splitlines() == [claims.table_text([])]
    assert "wall (s)" in claims.table_text([])


def test_table_html_rows_and_classes():
    _fill()
    out = claims.table_html()
    assert out.count("<tr class=") == 3
    assert out.count('class="claim-ok"') == 2
    assert out.count('class="claim-bad"') == 1
    assert "<th>wall (s)</th>" in out


def test_table_html_escapes():
    c = claims.check("esc", 0.5, "<=", 1.0, theorem=THM, dtype="<f8&x>")
    out = claims.table_html([c])
    assert "&lt;f8&amp;x&gt;" in out and "<f8" not in out
    d = c.to_dict() | {"name": "<script>alert(1)</script>"}
    out = claims.table_html([d])
    assert "<script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out


def test_table_raises_on_empty_ledger():
    with pytest.raises(RuntimeError, match="no claim has been checked"):
        claims.table()


def test_table_prints_text(capsys):
    _fill()
    capsys.readouterr()
    claims.table()
    out = capsys.readouterr().out
    assert "t.one" in out and "t.three" in out

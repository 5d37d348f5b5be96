"""Bad input to dltheory.cpa and dltheory.regions never yields a number (issue 13).

Every public function (and public method that takes arguments) has a :class:`Case`: each
tensor spoiled (NaN, inf, empty, an axis too few, integer, float16, NumPy, list), each
network with a NaN weight, each scalar with the bad values listed below, must raise a
library error naming the argument; every valid call must leave its arguments (values,
parameters, buffers, gradients, modes) and torch's global random state alone. The
regression tests after the cases replay the examples of the issue.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from badinput import Case, count_spoils, make_tests
from dltheory import cpa, nets, regions
from dltheory.errors import InputError, InputTypeError

F64 = torch.float64
NAN, INF = math.nan, math.inf


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _net(seed: int = 1) -> nn.Sequential:
    """A tiny float64 ReLU net ``[B, 2] -> [B, 2]`` whose parameters carry gradients (so
    that purity covers them too)."""
    net = nets.mlp([2, 6, 5, 2], seed=seed, bias_std=0.5)
    net(_randn(3, 2, seed=99)).sum().backward()
    return net


def _conv() -> nn.Conv2d:
    torch_state = torch.get_rng_state()
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dtype=F64)
    torch.set_rng_state(torch_state)
    return conv


@functools.cache
def _segment() -> regions.Segment:
    return regions.on_segment(_net(), _randn(2, seed=1), _randn(2, seed=2))


@functools.cache
def _plane() -> regions.Plane:
    return regions.on_plane(_net(), _randn(2, seed=1), *torch.eye(2, dtype=F64),
                            bounds=(-1.0, 1.0, -1.0, 1.0))


def _codes(seed: int) -> list[torch.Tensor]:
    return cpa.codes(_net(), _randn(3, 2, seed=seed))


# ----------------------------------------------------------------------- bad scalar values

METHOD = ["finite-differences", None, 1]
STRICT = [1, None, "yes"]
COUNT = [0, -3, 2.5, NAN, None, True]          # counts and chunk sizes: integers >= 1
TOL = [NAN, -1.0, INF, -INF, 1.0, 2.0, 1e300, "0.1", None, True]
RADIUS = [0.0, -1.0, NAN, INF, 1e305, "1", None]
BOUNDS = [(1, 0, 0, 1), (0, 1, 1, 1), (0, 1, 0), (0, NAN, 0, 1), (0, INF, 0, 1), "abcd",
          None, 3.0, (0, True, 0, 1), (-1e160, 1e160, -1e160, 1e160)]
PROGRESS = ["yes", 1, None]
IN_SHAPE = [(2, 7, 6), (3, 7), (3, 7, 6, 1), (3, 0, 6), (3, -2, 6), (3, 7.5, 6), (True, 7, 6),
            "abc", None, 5]
CODES = ["abc", None, [torch.tensor([True, False])], [torch.zeros(3, 6, dtype=F64)],
         [None], [torch.zeros(3, 6, dtype=torch.bool)]]   # the last: one site of two

# -------------------------------------------------------------------------------- the cases

CASES = [
    # ---- cpa
    Case("cpa.validate", cpa.validate, lambda: {"net": _net()}, nets=("net",)),
    Case("cpa.trace", cpa.trace, lambda: {"net": _net(), "x": _randn(3, 2, seed=0)},
         tensors=("x",), nets=("net",)),
    Case("cpa.preactivations", cpa.preactivations,
         lambda: {"net": _net(), "x": _randn(3, 2, seed=0)}, tensors=("x",), nets=("net",)),
    Case("cpa.codes", cpa.codes, lambda: {"net": _net(), "x": _randn(3, 2, seed=0)},
         tensors=("x",), nets=("net",)),
    Case("cpa.same_code", cpa.same_code, lambda: {"c1": _codes(0), "c2": _codes(1)},
         scalars={"c1": CODES, "c2": CODES}),
    Case("cpa.conv_matrix", cpa.conv_matrix, lambda: {"conv": _conv(), "in_shape": (3, 7, 6)},
         nets=("conv",), scalars={"in_shape": IN_SHAPE}),
    Case("cpa.affine_map[product]", cpa.affine_map,
         lambda: {"net": _net(), "x": _randn(3, 2, seed=0), "method": "product"},
         tensors=("x",), nets=("net",), scalars={"method": METHOD}),
    Case("cpa.affine_map[jacobian]", cpa.affine_map,
         lambda: {"net": _net(), "x": _randn(3, 2, seed=0), "method": "jacobian",
                  "strict": False},
         tensors=("x",), nets=("net",), scalars={"method": METHOD, "strict": STRICT}),
    Case("cpa.check_affine", cpa.check_affine,
         lambda: {"net": _net(), "x": _randn(1, 2, seed=0),
                  "x_prime": _randn(1, 2, seed=0) + 1e-6 * _randn(4, 2, seed=5),
                  "method": "jacobian", "strict": True},
         tensors=("x", "x_prime"), nets=("net",), scalars={"method": METHOD, "strict": STRICT}),
    # ---- regions
    Case("regions.on_segment", regions.on_segment,
         lambda: {"net": _net(), "x0": _randn(2, seed=1), "x1": _randn(2, seed=2),
                  "tol": 1e-13},
         tensors=("x0", "x1"), nets=("net",), scalars={"tol": TOL}),
    Case("regions.sample_segment", regions.sample_segment,
         lambda: {"net": _net(), "x0": _randn(2, seed=1), "x1": _randn(2, seed=2), "n": 64,
                  "chunk": 16},
         tensors=("x0", "x1"), nets=("net",), scalars={"n": COUNT, "chunk": COUNT}),
    Case("regions.nearest_boundary_along", regions.nearest_boundary_along,
         lambda: {"net": _net(), "x": _randn(2, seed=1), "directions": _randn(3, 2, seed=3),
                  "radius": 2.0},
         tensors=("x", "directions"), nets=("net",), scalars={"radius": RADIUS}),
    Case("regions.on_plane", regions.on_plane,
         lambda: {"net": _net(), "origin": _randn(2, seed=1), "u": _randn(2, seed=2),
                  "v": _randn(2, seed=3), "bounds": (-1.0, 1.0, -0.5, 1.5), "budget": 4096,
                  "progress": False},
         tensors=("origin", "u", "v"), nets=("net",),
         scalars={"bounds": BOUNDS, "budget": COUNT, "progress": PROGRESS}),
    Case("regions.sample_plane", regions.sample_plane,
         lambda: {"net": _net(), "origin": _randn(2, seed=1), "u": _randn(2, seed=2),
                  "v": _randn(2, seed=3), "bounds": (-1.0, 1.0, -0.5, 1.5), "n": 12,
                  "chunk": 50},
         tensors=("origin", "u", "v"), nets=("net",),
         scalars={"bounds": BOUNDS, "n": COUNT, "chunk": COUNT}),
    # ---- methods of the results (a number t, and one point st, are documented input)
    Case("regions.Segment.points", lambda seg, t: seg.points(t),
         lambda: {"seg": _segment(), "t": _randn(5, seed=4)}, tensors=("t",),
         allowed={"t": {"fewer_axes"}}),
    Case("regions.Segment.piece_of", lambda seg, t: seg.piece_of(t),
         lambda: {"seg": _segment(), "t": torch.rand(5, generator=torch.Generator()
                                                    .manual_seed(4), dtype=F64)},
         tensors=("t",), allowed={"t": {"fewer_axes"}}),
    Case("regions.Plane.points", lambda plane, st: plane.points(st),
         lambda: {"plane": _plane(), "st": _randn(5, 2, seed=4)}, tensors=("st",),
         allowed={"st": {"fewer_axes"}}),
    Case("regions.Plane.decision_boundary", lambda plane, chunk: plane.decision_boundary(
        chunk=chunk), lambda: {"plane": _plane(), "chunk": 7}, scalars={"chunk": COUNT}),
]

test_refused, test_pure = make_tests(CASES)


def test_the_cases_try_many_spoils():
    assert count_spoils(CASES) >= 200


# ------------------------------------------------------------------- regressions (issue 13)


@pytest.mark.parametrize("method", cpa.METHODS)
def test_affine_map_refuses_a_nan_input(method):
    # was: A = 0, b = 0
    with pytest.raises(InputError, match=r"cpa\.affine_map: x contains NaN"):
        cpa.affine_map(_net(), torch.tensor([[NAN, 0.0]], dtype=F64), method)


def _nan_net() -> nn.Sequential:
    net = _net()
    with torch.no_grad():
        net[2].weight[1, 3] = NAN
    return net


def test_regions_refuse_a_net_with_a_nan_weight():
    # was: one region
    o, u, v = torch.zeros(2, dtype=F64), *torch.eye(2, dtype=F64)
    with pytest.raises(InputError, match=r"regions\.on_segment: net has NaN or inf in "
                                         r"'2\.weight'"):
        regions.on_segment(_nan_net(), o - 1, o + 1)
    with pytest.raises(InputError, match=r"regions\.on_plane: net has NaN or inf"):
        regions.on_plane(_nan_net(), o, u, v, (-1, 1, -1, 1))


def _issue_net() -> nn.Sequential:
    """The issue's kind of 2-D input net: dense sampling finds ~30 regions far out."""
    return nets.mlp([2, 8, 8, 2], seed=0, bias_std=0.5)


@pytest.mark.parametrize("method", cpa.METHODS)
def test_affine_map_refuses_an_overflowing_forward_pass(method):
    with pytest.raises(InputError, match=r"net\(x\) is not finite"):
        cpa.affine_map(_issue_net(), torch.tensor([[1e308, 1e308]], dtype=F64), method)


def test_a_segment_that_overflows_is_refused():
    # was: one region, where dense sampling finds ~32
    x0 = torch.full((2,), -1e308, dtype=F64)
    with pytest.raises(regions.RegionError, match=r"on the segment from x0 to x1 reach inf.*"
                                                  r"rescale x0 and x1"):
        regions.on_segment(_issue_net(), x0, -x0)
    with pytest.raises(regions.RegionError, match="x0 and x1"):
        regions.sample_segment(_issue_net(), x0, -x0, 100)
    # large but finite, the forward pass overflowing inside: refused, not a wrong count
    with pytest.raises(regions.RegionError, match="outputs on the segment from x0 to x1"):
        regions.on_segment(_issue_net(), torch.full((2,), -1e300, dtype=F64),
                           torch.tensor([1e300, 3e299], dtype=F64))


def test_a_plane_that_overflows_is_refused():
    # was: one region, where dense sampling finds ~32
    o, u, v = torch.zeros(2, dtype=F64), *torch.eye(2, dtype=F64)
    big = (-1e160, 1e160, -1e160, 1e160)
    with pytest.raises(regions.RegionError, match=r"bounds .* reach beyond"):
        regions.on_plane(_issue_net(), o, u, v, big)
    with pytest.raises(regions.RegionError, match="origin, u, v or bounds"):
        regions.on_plane(_issue_net(), o, 1e250 * u, 1e250 * v, (-1e60, 1e60, -1e60, 1e60))
    with pytest.raises(regions.RegionError, match="x, directions or radius"):
        regions.nearest_boundary_along(_issue_net(), o, u[None], radius=1e305)


def test_large_but_finite_problems_are_computed_not_refused():
    """Without biases a ReLU net is positively homogeneous: its regions are cones, so a
    segment (a plane) scaled by 1e200 (1e100) meets the same regions at the same ``t``."""
    net = nets.mlp([2, 8, 8, 2], seed=0, bias=False)
    a, b = _randn(2, seed=7), _randn(2, seed=8)
    small, large = regions.on_segment(net, a, b), regions.on_segment(net, 1e200 * a, 1e200 * b)
    assert small.n_regions == large.n_regions > 3
    torch.testing.assert_close(large.t, small.t, rtol=0, atol=1e-12)
    # the norm of 1e200 * (b - a), whose squares overflow (it was inf)
    assert float(large.lengths.sum()) == pytest.approx(1e200 * float(small.lengths.sum()),
                                                       rel=1e-14)
    o, u, v = torch.zeros(2, dtype=F64), *torch.eye(2, dtype=F64)
    one = regions.on_plane(net, o, u, v, (-1, 1, -1, 1))
    far = regions.on_plane(net, o, u, v, (-1e100, 1e100, -1e100, 1e100))
    assert far.n_regions == one.n_regions > 3
    assert bool(torch.isfinite(far.centroid()).all()) and far.euler_characteristic() == 1
    torch.testing.assert_close(far.area().sort().values, 1e200 * one.area().sort().values,
                               rtol=1e-9, atol=0)
    x = _randn(3, 2, seed=9)
    xp = x + 1e-7 * _randn(3, 2, seed=10)
    for scale in (1e200, 1e-200):          # the norms' squares over- and underflow (was nan)
        assert cpa.check_affine(net, scale * x, scale * xp) <= 1e-14


def _kink_net() -> nn.Sequential:
    """``x -> relu(x_1)``: one kink, at ``x_1 = 0``."""
    net = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1)).to(F64)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.zero_()
        net[2].weight.fill_(1.0)
        net[2].bias.zero_()
    return net


def test_tolerances_radii_and_counts_are_checked():
    x0, x1 = torch.tensor([-1.0, 0.0], dtype=F64), torch.tensor([1.0, 0.5], dtype=F64)
    assert regions.on_segment(_kink_net(), x0, x1).n_regions == 2
    for tol in (NAN, -1.0, INF):          # were: 1 region (nan), zero-length pieces (-1)
        with pytest.raises(InputError, match=r"regions\.on_segment: tol must"):
            regions.on_segment(_kink_net(), x0, x1, tol=tol)
    for radius in (0.0, -1.0, NAN):
        with pytest.raises(InputError, match="radius must"):
            regions.nearest_boundary_along(_kink_net(), x0, x1[None], radius=radius)
    for bad in (0, -1):
        with pytest.raises(InputError, match="n must be an integer >= 1"):
            regions.sample_segment(_kink_net(), x0, x1, bad)
        with pytest.raises(InputError, match="chunk must be an integer >= 1"):
            regions.sample_segment(_kink_net(), x0, x1, 10, chunk=bad)
        with pytest.raises(InputError, match="budget must be an integer >= 1"):
            regions.on_plane(_kink_net(), x0, *torch.eye(2, dtype=F64), budget=bad)


def _inplace_pair() -> tuple[nn.Sequential, nn.Sequential]:
    """The same net twice (shared layers), its first module ``ReLU(inplace=True)`` in one,
    ``ReLU()`` in the other (cpa.validate accepts both)."""
    body = nets.mlp([2, 8, 6, 1], seed=4, bias_std=0.5)
    return nn.Sequential(nn.ReLU(inplace=True), *body), nn.Sequential(nn.ReLU(), *body)


def test_inplace_first_relu_never_overwrites_the_callers_input():
    # was: on_segment overwrote x0 with relu(x0) and found too few regions
    inplace, plain = _inplace_pair()
    x0, x1 = torch.tensor([-1.5, -2.0], dtype=F64), torch.tensor([2.0, 1.5], dtype=F64)
    keep0, keep1 = x0.clone(), x1.clone()
    ref = regions.on_segment(plain, keep0.clone(), keep1.clone())
    seg = regions.on_segment(inplace, x0, x1)
    assert torch.equal(x0, keep0) and torch.equal(x1, keep1)
    # (from relu(x0), as the overwritten x0 was, the segment meets 5 regions)
    assert seg.n_regions == ref.n_regions == 7 and torch.equal(seg.t, ref.t)
    assert regions.sample_segment(inplace, x0, x1, 500) == regions.sample_segment(
        plain, x0, x1, 500)
    d = torch.stack([x1 - x0, x0 - x1])
    assert torch.equal(regions.nearest_boundary_along(inplace, x0, d),
                       regions.nearest_boundary_along(plain, x0, d))
    assert torch.equal(x0, keep0)
    x = _randn(6, 2, seed=3)
    keep = x.clone()
    for method in cpa.METHODS:
        A, b = cpa.affine_map(inplace, x, method)
        Ar, br = cpa.affine_map(plain, x, method)
        assert torch.equal(x, keep)
        assert torch.equal(A, Ar) and torch.equal(b, br)
        xp = x + 1e-7 * _randn(6, 2, seed=4)
        keep_p = xp.clone()
        err = cpa.check_affine(inplace, x, xp, method=method)
        assert torch.equal(x, keep) and torch.equal(xp, keep_p)
        assert torch.equal(err, cpa.check_affine(plain, x, xp, method=method))
    pre = [s.pre for s in cpa.trace(inplace, x)]
    assert torch.equal(x, keep) and (x < 0).any()
    assert all(torch.equal(p, q.pre) for p, q in zip(pre, cpa.trace(plain, x), strict=True))


def test_empty_inputs_are_refused_by_name():
    net, x = _net(), _randn(2, 2, seed=0)
    empty = torch.zeros(0, 2, dtype=F64)
    for method in cpa.METHODS:          # were: raw torch errors
        with pytest.raises(InputError, match=r"cpa\.affine_map: x is empty"):
            cpa.affine_map(net, empty, method)
        with pytest.raises(InputError, match=r"cpa\.check_affine: x is empty"):
            cpa.check_affine(net, empty, x, method=method)
        with pytest.raises(InputError, match=r"cpa\.check_affine: x_prime is empty"):
            cpa.check_affine(net, x[:1], empty, method=method)


def test_conv_matrix_refuses_an_in_shape_the_conv_cannot_take():
    conv = _conv()
    with pytest.raises(InputError, match=r"in_shape \(2, 7, 6\) has 2 channels but the "
                                         r"convolution takes 3"):
        cpa.conv_matrix(conv, (2, 7, 6))
    with pytest.raises(InputError, match=r"in_shape must be \(C_in, H, W\)"):
        cpa.conv_matrix(conv, (3, 7))
    with pytest.raises(InputError, match=r"in_shape must be \(C_in, L\)"):
        cpa.conv_matrix(nn.Conv1d(3, 2, 3, dtype=F64), (3, 7, 6))
    with pytest.raises(InputError, match="in_shape .* is too small"):
        cpa.conv_matrix(nn.Conv2d(3, 2, 5, dtype=F64), (3, 4, 9))
    with pytest.raises(cpa.NotCPAError, match="groups=3"):
        cpa.conv_matrix(nn.Conv2d(3, 3, 3, groups=3, dtype=F64), (3, 7, 6))
    with pytest.raises(InputTypeError, match="conv must be"):
        cpa.conv_matrix(nn.Linear(3, 3), (3, 7, 6))


def _training_nets() -> list[nn.Module]:
    bn = nets.mlp([2, 5, 2], batchnorm=True, seed=0)                 # as built: training mode
    body = nets.mlp([2, 5, 2], seed=0)
    drop = nn.Sequential(body[0], nn.Dropout(0.5), *body[1:])
    return [bn, drop]


_x2, _p2 = _randn(3, 2, seed=0), _randn(2, seed=1)
_eye = torch.eye(2, dtype=F64)
FORWARDING = {
    "cpa.trace": lambda net: cpa.trace(net, _x2),
    "cpa.preactivations": lambda net: cpa.preactivations(net, _x2),
    "cpa.codes": lambda net: cpa.codes(net, _x2),
    "cpa.affine_map": lambda net: cpa.affine_map(net, _x2),
    "cpa.affine_map[strict=False]": lambda net: cpa.affine_map(net, _x2, "jacobian",
                                                               strict=False),
    "cpa.check_affine": lambda net: cpa.check_affine(net, _x2, _x2),
    "regions.on_segment": lambda net: regions.on_segment(net, _p2, -_p2),
    "regions.sample_segment": lambda net: regions.sample_segment(net, _p2, -_p2, 10),
    "regions.nearest_boundary_along": lambda net: regions.nearest_boundary_along(
        net, _p2, _eye),
    "regions.on_plane": lambda net: regions.on_plane(net, _p2, *_eye),
    "regions.sample_plane": lambda net: regions.sample_plane(net, _p2, *_eye, n=4),
}


@pytest.mark.parametrize("call", list(FORWARDING.values()), ids=list(FORWARDING))
def test_batch_norm_and_dropout_in_training_mode_are_refused(call):
    for net in _training_nets():
        with pytest.raises(InputError, match=r"training mode.*call net\.eval\(\)"):
            call(net)
        call(net.eval())                                              # then it runs


def test_results_of_valid_calls_are_unchanged_by_the_checks():
    """The checks add refusals only: a valid call gives the same numbers as the
    computation itself (closed forms of a one-kink net)."""
    net = _kink_net()
    seg = regions.on_segment(net, torch.tensor([-1.0, 0.0], dtype=F64),
                             torch.tensor([3.0, 1.0], dtype=F64))
    torch.testing.assert_close(seg.t, torch.tensor([0.0, 0.25, 1.0], dtype=F64),
                               rtol=0, atol=1e-15)
    assert seg.piece_of(0.3).tolist() == [1] and seg.piece_of(torch.tensor(0.1)).tolist() == [0]
    torch.testing.assert_close(seg.points(0.25), torch.tensor([[0.0, 0.25]], dtype=F64))
    A, b = cpa.affine_map(net, torch.tensor([[2.0, 5.0]], dtype=F64))
    assert A.tolist() == [[[1.0, 0.0]]] and b.tolist() == [[0.0]]

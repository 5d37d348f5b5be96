"""Tests for dltheory.cpa: validation, trace, codes and the exact affine map of CPA nets.

Exactness checks run in float64. Tolerances: the two computations of ``(A, b)`` agree to
1e-10 relative (they differ only by rounding, ~1e-15, in the order of the products), and
the affine piece at ``x`` predicts ``f(x')`` to 1e-10 relative for every ``x'`` that
shares ``x``'s activation code. Controls show the same checks failing by orders of
magnitude across region boundaries and for a smooth (GELU) network.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dltheory import cpa, nets
from dltheory.cpa import NotCPAError
from netutil import randomize_batchnorm as _randomize_batchnorm

F64 = torch.float64
TOL = 1e-10


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(shape, seed=0, scale=1.0):
    return scale * torch.randn(shape, generator=_gen(seed), dtype=F64)


def _rel(a: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor | float | None = None) -> float:
    s = ref.abs().max() if scale is None else scale
    return float(((a - ref).abs().max() / s).detach())


def _plain_2d() -> nn.Sequential:
    """A plain torch model of standard layers, with strides, padding, dilation, odd sizes."""
    torch_state = torch.get_rng_state()
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 2), dtype=F64),
        nn.BatchNorm2d(4, dtype=F64),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=2, dilation=2, dtype=F64),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d((2, 3)),
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        nn.Dropout(0.3),
        nn.Conv2d(6, 5, 1, dtype=F64),
        nn.AvgPool2d(2, padding=1, divisor_override=3),
        nn.AdaptiveAvgPool2d((3, 2)),
        nn.Flatten(),
        nn.Identity(),
        nn.Linear(30, 8, dtype=F64),
        nn.ReLU(),
        nn.Linear(8, 3, dtype=F64),
    )
    torch.set_rng_state(torch_state)
    return _randomize_batchnorm(net, 1)


def _plain_1d() -> nn.Sequential:
    torch_state = torch.get_rng_state()
    torch.manual_seed(12)
    net = nn.Sequential(
        nn.Unflatten(1, (2, 12)),
        nn.Conv1d(2, 4, 5, padding="same", dilation=2, dtype=F64),
        nn.BatchNorm1d(4, dtype=F64),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Linear(6, 5, dtype=F64),           # acts on the last dimension of [B, C, L]
        nn.LeakyReLU(0.05),
        nn.Conv1d(4, 3, 2, stride=2, padding="valid", dtype=F64),
        nn.AvgPool1d(2, stride=1),
        nn.Flatten(),
        nn.Linear(3, 2, dtype=F64),
    )
    torch.set_rng_state(torch_state)
    return _randomize_batchnorm(net, 2)


B = 0.1  # bias_std of the factories' nets, so that b is not zero
ARCHS = {
    "mlp-relu": (lambda: nets.mlp([4, 12, 12, 3], bias_std=B), (4,)),
    "mlp-leaky": (lambda: nets.mlp([4, 12, 12, 3], "leaky_relu", bias_std=B), (4,)),
    "mlp-abs": (lambda: nets.mlp([4, 12, 12, 3], "abs", bias_std=B), (4,)),
    "mlp-maxout": (lambda: nets.mlp([4, 12, 12, 3], "maxout", maxout_k=3, bias_std=B), (4,)),
    "mlp-batchnorm": (lambda: _randomize_batchnorm(
        nets.mlp([4, 12, 12, 3], batchnorm=True, bias_std=B)), (4,)),
    "convnet-max": (lambda: nets.convnet(pool="max", bias_std=B), (1, 8, 8)),
    "convnet-avg": (lambda: nets.convnet(pool="avg", bias_std=B), (1, 8, 8)),
    "convnet-maxout-bn": (lambda: _randomize_batchnorm(
        nets.convnet((2, 6, 6), (4, 6), act="maxout", batchnorm=True, bias_std=B)), (2, 6, 6)),
    "resnet": (lambda: _randomize_batchnorm(
        nets.resnet(batchnorm=True, bias_std=B)), (1, 8, 8)),
    "resnet-abs": (lambda: nets.resnet((1, 6, 6), width=4, act="abs", bias_std=B), (1, 6, 6)),
    "densenet": (lambda: nets.densenet(act="leaky_relu", bias_std=B), (1, 8, 8)),
    "densenet-bn": (lambda: _randomize_batchnorm(
        nets.densenet((1, 6, 6), batchnorm=True, bias_std=B)), (1, 6, 6)),
    "plain-2d": (_plain_2d, (2, 9, 11)),
    "plain-1d": (_plain_1d, (24,)),
}


def _eval(name):
    build, shape = ARCHS[name]
    return nets.spline_eval(build()), shape


# --------------------------------------------------------------------------- affine maps


@pytest.mark.parametrize("name", list(ARCHS))
def test_product_equals_jacobian(name):
    net, shape = _eval(name)
    x = _x((3, *shape), seed=1)
    A, b = cpa.affine_map(net, x, "product")
    Aj, bj = cpa.affine_map(net, x, "jacobian")
    y = net(x).reshape(3, -1)
    d_in = x[0].numel()
    assert A.shape == Aj.shape == (3, y.shape[1], d_in) and b.shape == bj.shape == y.shape
    assert A.dtype == F64
    assert _rel(A, Aj) <= TOL
    scale = (A.abs() @ x.reshape(3, -1, 1).abs()).max() + b.abs().max()
    assert _rel(b, bj, scale) <= TOL
    assert b.abs().max() > 1e-3                     # a non-trivial offset was checked
    assert _rel((A @ x.reshape(3, -1, 1)).squeeze(-1) + b, y) <= TOL


def _neighbours(net, x, *, eps, per_point=6, seed=5):
    """Points ``x + eps*noise`` next to each of ``x``, with the mask of those sharing its code."""
    xr = x.repeat_interleave(per_point, 0)
    xp = xr + _x(xr.shape, seed=seed, scale=eps)
    return xr, xp, cpa.same_code(cpa.codes(net, xr), cpa.codes(net, xp))


@pytest.mark.parametrize("name", list(ARCHS))
def test_affine_piece_predicts_f_on_the_region(name):
    net, shape = _eval(name)
    x = _x((3, *shape), seed=2)
    # tiny moves keep the code; moves of 1e-3 leave the region of some x in the conv nets,
    # and only those that keep the code are checked
    near = [_neighbours(net, x, eps=eps) for eps in (1e-6, 1e-3)]
    xr, xp, same = (torch.cat(parts) for parts in zip(*near, strict=True))
    assert near[0][2].sum() >= 3, "no neighbour shares the code: the test would check nothing"
    A, b = cpa.affine_map(net, xr)
    y = net(xp).reshape(len(xp), -1)
    pred = (A @ xp.reshape(len(xp), -1, 1)).squeeze(-1) + b
    err = (y - pred).norm(dim=1) / y.norm(dim=1)
    assert err[same].max() <= TOL
    assert cpa.check_affine(net, xr[same], xp[same]) <= TOL


@pytest.mark.parametrize("name", ["mlp-relu", "mlp-maxout", "convnet-max", "resnet",
                                  "densenet", "plain-2d"])
def test_affine_piece_fails_off_the_region(name):
    """Control: far neighbours have other codes and the affine piece misses f(x') there."""
    net, shape = _eval(name)
    x = _x((3, *shape), seed=3)
    xr, xp, same = _neighbours(net, x, eps=1.0)
    assert (~same).any()
    assert cpa.check_affine(net, xr[~same], xp[~same]) > 1e-4


def test_check_affine_broadcasts_one_point_and_checks_shapes():
    net, shape = _eval("mlp-relu")
    x = _x((1, *shape))
    xp = x + _x((5, *shape), seed=1, scale=1e-7)
    err = cpa.check_affine(net, x, xp)
    assert err.ndim == 0 and err.dtype == F64 and err <= TOL
    with pytest.raises(ValueError, match="does not pair"):
        cpa.check_affine(net, _x((2, 4)), _x((3, 4)))


def test_gelu_negative_control():
    """A smooth network: validation names GELU, and its tangent map is no exact piece."""
    net = nets.mlp([4, 12, 12, 3], act=nn.GELU, bias_std=B).eval()
    x = _x((3, 4), seed=4)
    with pytest.raises(NotCPAError, match=r"module '1' \(GELU\) is not continuous"):
        cpa.validate(net)
    with pytest.raises(NotCPAError, match="GELU"):
        cpa.affine_map(net, x)
    with pytest.raises(NotCPAError, match="GELU"):
        cpa.affine_map(net, x, "product", strict=False)
    xp = x + _x(x.shape, seed=6, scale=1e-3)
    err = cpa.check_affine(net, x, xp, method="jacobian", strict=False)
    assert err > 1e4 * TOL                             # the 1e-10 check fails, by far
    relu = nets.mlp([4, 12, 12, 3], bias_std=B).eval()  # same perturbation, CPA network
    xr, xq, same = _neighbours(relu, x, eps=1e-3, per_point=1, seed=6)
    assert torch.equal(xq, xp) and same.any()
    assert cpa.check_affine(relu, xr[same], xq[same], method="jacobian") <= TOL


@settings(max_examples=40, deadline=None)
@given(
    d_in=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    d_out=st.integers(1, 3),
    act=st.sampled_from(nets.ACTIVATIONS),
    batchnorm=st.booleans(),
    bias_std=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**31),
)
def test_product_equals_jacobian_random_mlps(d_in, hidden, d_out, act, batchnorm, bias_std,
                                             seed):
    net = nets.mlp([d_in, *hidden, d_out], act, batchnorm=batchnorm, bias_std=bias_std,
                   seed=seed)
    net = nets.spline_eval(_randomize_batchnorm(net, seed))
    x = _x((4, d_in), seed=seed)
    with torch.no_grad():                               # both methods work without autograd
        A, b = cpa.affine_map(net, x)
        Aj, bj = cpa.affine_map(net, x, "jacobian")
        y = net(x)
    scale = max(float(y.abs().max()), float(Aj.abs().max()), 1e-300)
    assert float((A - Aj).abs().max()) <= TOL * scale
    assert float((b - bj).abs().max()) <= TOL * scale
    assert float(((A @ x[:, :, None]).squeeze(-1) + b - y).abs().max()) <= TOL * scale


def test_conv_matrix_matches_convolution():
    g = _gen(0)
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), dtype=F64)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=F64)
    T = cpa.conv_matrix(conv, (3, 7, 6))
    ref = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    assert T.shape == (ref[0].numel(), 3 * 7 * 6)
    assert _rel(x.reshape(2, -1) @ T.T, ref.reshape(2, -1)) <= 1e-13
    for padding, dilation in [("same", 2), ("valid", 1), (3, 1)]:
        c1 = nn.Conv1d(2, 3, 4, padding=padding, dilation=dilation, dtype=F64)
        z = torch.randn(2, 2, 9, generator=g, dtype=F64)
        ref = c1(z) - c1.bias[:, None]
        T = cpa.conv_matrix(c1, (2, 9))
        assert _rel(z.reshape(2, -1) @ T.T, ref.reshape(2, -1)) <= 1e-13


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_affine_map_on_cuda():
    net = _randomize_batchnorm(nets.resnet(batchnorm=True, bias_std=B)).eval().cuda()
    x = _x((2, 1, 8, 8)).cuda()
    A, b = cpa.affine_map(net, x)
    Aj, _ = cpa.affine_map(net, x, "jacobian")
    assert A.device.type == "cuda" and _rel(A, Aj) <= TOL


# --------------------------------------------------------------------------- trace, codes


def test_trace_sites_in_execution_order():
    net = nets.resnet((1, 6, 6), width=4, blocks=2).eval()
    sites = cpa.trace(net, _x((2, 1, 6, 6)))
    assert [s.path for s in sites] == ["1", "2.body.1", "3.body.1"]
    assert [s.kind for s in sites] == ["relu"] * 3
    assert all(s.pre.shape == (2, 4 * 36) for s in sites)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sites[0].kind = "abs"


def test_trace_relu_pre_and_codes_are_the_preactivations():
    net = nets.mlp([3, 5, 4, 2], bias_std=B).eval()
    x = _x((6, 3))
    pre1 = x @ net[0].weight.T + net[0].bias
    pre2 = torch.relu(pre1) @ net[2].weight.T + net[2].bias
    sites = cpa.trace(net, x)
    assert [(s.path, s.kind) for s in sites] == [("1", "relu"), ("3", "relu")]
    assert _rel(sites[0].pre, pre1) <= 1e-14 and _rel(sites[1].pre, pre2) <= 1e-14
    c = cpa.codes(net, x)
    assert torch.equal(c[0], pre1 > 0) and torch.equal(c[1], pre2 > 0)
    assert c[0].dtype == torch.bool and c[0].any() and not c[0].all()


def test_trace_records_input_of_inplace_relu():
    net = nn.Sequential(nn.Linear(3, 8, dtype=F64), nn.ReLU(inplace=True)).eval()
    x = _x((4, 3))
    (site,) = cpa.trace(net, x)
    assert (site.pre < 0).any()
    assert _rel(site.pre, net[0](x)) <= 1e-15


def test_maxout_codes_are_the_argmax():
    net = nets.mlp([3, 5, 2], act="maxout", maxout_k=3, bias_std=B).eval()
    x = _x((8, 3))
    z = x @ net[0].weight.T + net[0].bias
    (site,) = cpa.trace(net, x)
    assert site.kind == "max" and site.pre.shape == (8, 5, 3)
    (code,) = cpa.codes(net, x)
    assert code.dtype == torch.int64
    assert torch.equal(code, z.reshape(8, 5, 3).argmax(-1))
    assert len(code.unique()) == 3


def test_maxpool_windows():
    net = nets.convnet((1, 7, 6), channels=(3,), pool="max").eval()   # odd H: floor
    x = _x((2, 1, 7, 6))
    relu, pool = cpa.trace(net, x)
    assert (relu.kind, pool.kind, pool.path) == ("relu", "max", "2")
    assert pool.pre.shape == (2, 3 * 3 * 3, 4)
    out = net[:3](x)
    assert torch.equal(pool.pre.amax(-1), out.reshape(2, -1))
    # window (c=1, i=2, j=0) holds rows 4..5, columns 0..1 of channel 1, row-major
    h = torch.relu(net[0](x))
    assert torch.equal(pool.pre[:, 9 + 6], h[:, 1, 4:6, 0:2].reshape(2, 4))


def test_codes_constant_on_a_small_segment_and_changing_on_a_long_one():
    net, shape = _eval("convnet-max")
    x = _x((1, *shape), seed=7)
    v = _x((1, *shape), seed=8)
    v = v / v.norm()
    short = x + torch.linspace(0, 1e-6, 20, dtype=F64).reshape(-1, 1, 1, 1) * v
    assert cpa.same_code(cpa.codes(net, x), cpa.codes(net, short)).all()
    A, b = cpa.affine_map(net, short)
    # The same region, so the same map: equal up to the rounding of the batched products
    # (which depends on the CPU's kernels: 1.1e-16 apart on one AVX2 machine).
    assert _rel(A, A[:1].expand_as(A)) <= 1e-12
    assert _rel(b, b[:1].expand_as(b), 1.0) <= 1e-12
    long = x + torch.linspace(0, 10, 20, dtype=F64).reshape(-1, 1, 1, 1) * v
    assert not cpa.same_code(cpa.codes(net, x), cpa.codes(net, long)).all()


def test_same_code_shapes():
    net = nets.mlp([2, 6, 1]).eval()
    c = cpa.codes(net, _x((4, 2)))
    assert cpa.same_code(c, c).shape == (4,) and cpa.same_code(c, c).all()
    other = cpa.codes(net, -_x((4, 2)))       # -x flips every relu with zero bias
    assert not cpa.same_code(c, other).any()
    with pytest.raises(ValueError, match="1 sites vs 2 sites"):
        cpa.same_code(c, c + c)
    assert cpa.same_code([c[0][:1]], [c[0]]).shape == (4,)       # a batch of 1 broadcasts
    with pytest.raises(ValueError, match="batches of 2 and 4 codes do not pair"):
        cpa.same_code([c[0][:2]], [c[0]])
    with pytest.raises(ValueError, match="differ beyond the batch"):
        cpa.same_code(c, [c[0][:, :3]])
    linear = nn.Sequential(nn.Linear(2, 2, dtype=F64))
    assert cpa.codes(linear, _x((3, 2))) == []
    assert bool(cpa.same_code([], []))


def test_module_called_twice_gives_two_sites():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(3, 4, dtype=F64), relu, nn.Linear(4, 4, dtype=F64), relu)
    x = _x((2, 3))
    sites = cpa.trace(net, x)
    assert [s.path for s in sites] == ["1", "1"]
    A, _ = cpa.affine_map(net, x)
    assert _rel(A, cpa.affine_map(net, x, "jacobian")[0]) <= TOL


def test_product_does_not_change_the_input():
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 2, dtype=F64))
    x = _x((4, 3))
    x0 = x.clone()
    A, b = cpa.affine_map(net, x)
    assert torch.equal(x, x0) and (x0 < 0).any()
    assert torch.equal(A[:, :, 0] != 0, (x0[:, None, 0] > 0).expand(4, 2))


# --------------------------------------------------------------------------- errors


def test_batchnorm_in_training_mode():
    net = nets.mlp([3, 4, 1], batchnorm=True)
    with pytest.raises(NotCPAError, match=r"'1' \(BatchNorm1d\): batch norm in training "
                                          r"mode: call net.eval\(\)"):
        cpa.affine_map(net, _x((2, 3)))
    cpa.affine_map(nets.spline_eval(net), _x((2, 3)))


def test_batchnorm_without_running_stats():
    net = nn.Sequential(nn.Linear(3, 4, dtype=F64),
                        nn.BatchNorm1d(4, track_running_stats=False, dtype=F64)).eval()
    with pytest.raises(NotCPAError, match="track_running_stats"):
        cpa.validate(net)


def test_dropout_in_training_mode():
    net = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.Dropout(0.5), nn.ReLU())
    with pytest.raises(NotCPAError, match=r"'1' \(Dropout\): dropout in training mode"):
        cpa.trace(net, _x((2, 3)))
    assert len(cpa.trace(net.eval(), _x((2, 3)))) == 1


@pytest.mark.parametrize(("layer", "name"), [
    (nn.Sigmoid(), "Sigmoid"), (nn.Softmax(dim=1), "Softmax"), (nn.Tanh(), "Tanh"),
    (nn.SiLU(), "SiLU"), (nn.ELU(), "ELU"), (nn.Softplus(), "Softplus")])
def test_smooth_layers_are_rejected_by_path(layer, name):
    body = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, dtype=F64), layer)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=F64), nets.ResidualBlock(body))
    with pytest.raises(NotCPAError, match=rf"module '1\.body\.1' \({name}\) is not continuous"):
        cpa.validate(net)


def test_unsupported_and_custom_modules():
    with pytest.raises(NotCPAError, match=r"\(Hardtanh\) is piecewise affine but not supported"):
        cpa.validate(nn.Sequential(nn.Hardtanh()))

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    class SneakyReLU(nn.ReLU):
        def forward(self, x):
            return torch.tanh(x)

    for module, name in [(Square(), "Square"), (SneakyReLU(), "SneakyReLU")]:
        with pytest.raises(NotCPAError, match=rf"'0' \({name}\) cannot be verified as CPA"):
            cpa.validate(nn.Sequential(module))
    with pytest.raises(NotCPAError, match=r"'\(root\)' \(Square\)"):
        cpa.validate(Square())
    with pytest.raises(TypeError, match="nn.Module"):
        cpa.validate(lambda x: x)


@pytest.mark.parametrize(("pool", "match"), [
    (nn.MaxPool2d(2, padding=1), "padding=1"),
    (nn.MaxPool2d(3, stride=2), r"stride \(2, 2\) != kernel_size \(3, 3\)"),
    (nn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
    (nn.MaxPool2d(2, dilation=2), "dilation=2"),
    (nn.MaxPool1d(2, return_indices=True), "return_indices"),
])
def test_unsupported_max_pooling(pool, match):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, dtype=F64), pool)
    with pytest.raises(NotCPAError, match=rf"'1' \({type(pool).__name__}\).*{match}"):
        cpa.trace(net, _x((1, 1, 8, 8)))


def test_unsupported_layer_options():
    cases = [
        (nn.Conv2d(2, 2, 3, groups=2, dtype=F64), "groups=2"),
        (nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular", dtype=F64), "padding_mode"),
        (nn.AvgPool2d(2, ceil_mode=True), "ceil_mode"),
        (nn.Flatten(0), "batch dimension"),
        (nn.Unflatten(0, (1, -1)), "batch dimension"),
    ]
    for layer, match in cases:
        with pytest.raises(NotCPAError, match=match):
            cpa.validate(nn.Sequential(layer))


def test_input_errors():
    net = nets.mlp([3, 4, 2]).eval()
    with pytest.raises(TypeError, match=r"float32 but the network's parameters are "
                                        r"torch.float64"):
        cpa.affine_map(net, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\).*2x5 and 3x4"):
        cpa.affine_map(net, _x((2, 5)))
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\)"):
        cpa.affine_map(net, _x((2, 5)), "jacobian")
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\)"):
        cpa.trace(net, _x((2, 5)))
    with pytest.raises(ValueError, match=r"batched.*\(3,\).*x\[None\]"):
        cpa.codes(net, _x((3,)))
    with pytest.raises(TypeError, match="floating"):
        cpa.affine_map(net, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        cpa.affine_map(net, [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="method must be one of"):
        cpa.affine_map(net, _x((2, 3)), "finite-differences")
    conv = nets.convnet().eval()
    with pytest.raises(ValueError, match=r"input of shape \(2, 2, 8, 8\)"):
        cpa.affine_map(conv, _x((2, 2, 8, 8)))


def test_preactivations_concatenate_the_relu_sites_and_refuse_max_sites():
    net = nets.spline_eval(nets.mlp([5, 7, 3, 2], "relu", bias_std=0.1, seed=4))
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = cpa.preactivations(net, x)
    assert z.shape == (4, 10)
    torch.testing.assert_close(z, torch.cat([s.pre for s in cpa.trace(net, x)], 1))
    # exact gradients: the first layer's pre-activations are W1 x + b1
    J = torch.func.jacrev(lambda xi: cpa.preactivations(net, xi[None])[0])(x[0])
    torch.testing.assert_close(J[:7], net[0].weight, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="max sites"):
        cpa.preactivations(nets.spline_eval(nets.mlp([5, 4, 2], "maxout")), x)

"""Bad input to dltheory.kernels and dltheory.infinite never yields a number.

Every public function (and public method of a public class) has a :class:`Case`: one valid
call on tiny float64 data from seeded generators. ``test_refused`` spoils one argument at a
time (tensors: NaN, inf, empty, one axis fewer, int, float16, NumPy, list; networks: a NaN
weight; scalars: the values listed) and requires a library error naming that argument;
``test_pure`` requires that the valid call changes none of its arguments (values, gradients,
training flags, ``requires_grad``) nor torch's global random state. The regression tests
below pin the defects of issue 13 with its examples, and the accuracy of the ReLU kernel on
coincident and near-coincident inputs against the analytic diagonal recursion and a
60-digit mpmath evaluation of the same closed forms.

Not cased: the ``forward`` of the modules :class:`dltheory.infinite.Erf`, ``NTKLinear``
and ``NTKConv2d`` (torch's module protocol; ``kernels.ntk`` traces them with ``vmap``,
where a data-dependent check cannot run); their constructors are cased.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from badinput import Case, count_spoils, make_tests
from dltheory import dynamics, infinite, kernels, nets, validation
from dltheory.errors import DLTheoryError, InputError, InputTypeError
from netutil import randn as _randn

F64 = torch.float64
NAN, INF = math.nan, math.inf


def _mlp(seed=0):
    """``[N, 3] -> [N, 2]``: ``P = 3 * 5 + 5 + 5 * 2 + 2 = 32`` parameters."""
    return nets.mlp([3, 5, 2], bias_std=0.1, seed=seed)


def _spd(n, seed=0):
    A = _randn(n, n, seed=seed)
    return A @ A.T / n + torch.eye(n, dtype=F64)


def _k4(n, k, seed=0):
    """An SPD kernel ``[n, n, k, k]`` (flat ``[n*k, n*k]`` ordered ``(example, output)``)."""
    return _spd(n * k, seed).reshape(n, k, n, k).permute(0, 2, 1, 3).contiguous()


@functools.cache
def _run():
    """A 3-step run of :func:`_mlp` on 4 points (the cases only read it)."""
    return dynamics.train(_mlp(), _randn(4, 3, seed=1), _randn(4, 2, seed=2), lr=0.1,
                          steps=3, progress=False)


@functools.cache
def _path_kernel():
    return kernels.path_kernel(_mlp(), _run(), _randn(3, 3, seed=5), progress=False)


def _signals():
    """The plan and layer signals of :func:`_mlp` on 4 points (what dynamics.train keeps)."""
    net = _mlp()
    ops = kernels._plan(net)
    P = {n: p.detach() for n, p in net.named_parameters()}
    _, sig = kernels._signals(ops, P, _randn(4, 3, seed=1))
    return ops, sig


COUNT = [0, -1, 2.5, True, NAN, "3"]
ITERS = [0, -1, 2.5, True, NAN, 10**9]
SW2 = [NAN, INF, 0.0, -1.0, True, "1.0", 1e300]
SB2 = [NAN, INF, -0.1, True, "0.1"]
DEPTH = [0, -1, 2.5, True, [], [2, 0], "3", 10**9]
ACT = ["tanh", None, 1]
FLAG = ["yes", 1, None]
SIZE = [0, -1, 2.5, True, NAN, None]
GEN = ["g", 3]
DTYPE = [torch.int64, torch.float16, "float64"]

# ----------------------------------------------------------------------------- kernels

KERNELS = [
    Case("kernels.ntk", kernels.ntk,
         lambda: dict(net=_mlp(), X1=_randn(4, 3, seed=1), X2=_randn(3, 3, seed=2)),
         tensors=("X1", "X2"), nets=("net",),
         scalars={"chunk": COUNT, "method": ["fast", None], "flat": FLAG,
                  "net": [None, "net", nn.Sequential(nn.ReLU())]}),
    Case("kernels.ntk[params]", kernels.ntk,
         lambda: dict(net=_mlp(), X1=_randn(4, 3, seed=1),
                      params=1.5 * _randn(32, seed=3), method="generic"),
         tensors=("params",), scalars={"params": [_randn(31), "p", {"nope": _randn(2)}]}),
    Case("kernels.flatten_kernel", kernels.flatten_kernel,
         lambda: dict(K=_randn(3, 2, 2, 2, seed=1)), tensors=("K",),
         scalars={"K": [_randn(3, 2, 2, 3)]}),
    # unflatten reads only the structure of net (a template): a NaN in it is legitimate
    Case("kernels.unflatten", kernels.unflatten,
         lambda: dict(net=_mlp(), vector=_randn(32, seed=4)), tensors=("vector",),
         scalars={"vector": [_randn(31)], "net": ["net"]}),
    Case("kernels.kernel_regression", kernels.kernel_regression,
         lambda: dict(K_test_train=_randn(2, 3, 2, 2, seed=1), K_train=_k4(3, 2),
                      targets=_randn(3, 2, seed=2), ridge=0.1),
         tensors=("K_test_train", "K_train", "targets"),
         scalars={"ridge": [NAN, INF, -1.0, True, "0"],
                  "K_train": [_k4(3, 2)[:, :2], _randn(3, 3, 2, 3)]}),
    Case("kernels.kernel_gd", kernels.kernel_gd,
         lambda: dict(K_train=_k4(3, 2), K_test_train=_randn(2, 3, 2, 2, seed=1),
                      targets=_randn(3, 2, seed=2), lr=0.1, steps=4,
                      f0_train=_randn(3, 2, seed=3), f0_test=_randn(2, 2, seed=4)),
         tensors=("K_train", "K_test_train", "targets", "f0_train", "f0_test"),
         scalars={"lr": [NAN, INF, 0.0, -1.0, True, "0.1", 1e300],
                  "steps": [-5, 2.5, True, NAN, "3"], "reduction": ["max", None],
                  "f0_train": [_randn(4, 2)], "f0_test": [_randn(3, 2)]}),
    Case("kernels.lazy_prediction", kernels.lazy_prediction,
         lambda: dict(net=_mlp(), traj=_run(), X=_randn(3, 3, seed=5),
                      K0=_randn(3, 4, 2, 2, seed=6)),
         tensors=("X", "K0"), nets=("net",),
         scalars={"traj": [None, "run", _run().params], "K0": [_randn(3, 4, 2, 1)],
                  "net": [nets.mlp([3, 4, 2])]}),
    Case("kernels.lazy_prediction[K0=None]", kernels.lazy_prediction,
         lambda: dict(net=_mlp(), traj=_run(), X=_randn(3, 3, seed=5)),
         tensors=("X",), nets=("net",), scalars={"X": [_randn(3, 4)]}),
    Case("kernels.path_kernel", kernels.path_kernel,
         lambda: dict(net=_mlp(), traj=_run(), X=_randn(3, 3, seed=5), progress=False),
         tensors=("X",), nets=("net",),
         scalars={"traj": [None, 3], "quadrature": ["simpson", None],
                  "nodes": [0, -1, 2.5, True, NAN, 10**6], "chunk": COUNT,
                  "strict": FLAG, "progress": [1, None], "X": [_randn(3, 4)],
                  "net": [nets.mlp([3, 4, 2]), None]}),
    Case("kernels.signals_gradient", kernels.signals_gradient,
         lambda: dict(zip(("ops", "sig"), _signals(), strict=True), g=_randn(4, 2, seed=7)),
         tensors=("g",), scalars={"g": [_randn(4, 3)], "sig": [[]]}),
    Case("kernels.PathKernel.predict", lambda pk: pk.predict(),
         lambda: dict(pk=_path_kernel())),
    Case("kernels.PathKernel.weights", lambda pk: pk.weights(),
         lambda: dict(pk=_path_kernel())),
    Case("kernels.PathKernel.relative_error", lambda pk: pk.relative_error(),
         lambda: dict(pk=_path_kernel())),
    Case("kernels.PathKernel.offset", lambda pk: pk.offset,
         lambda: dict(pk=_path_kernel())),
]

# ----------------------------------------------------------------------------- infinite


def _step_args():
    X = _randn(3, 2, seed=1)
    k12 = X @ X.T / 2 + 0.1
    k = k12.diagonal().clone()
    return dict(act="relu", k12=k12, k1=k, k2=k.clone(), t12=k12.clone(), sw2=1.5, sb2=0.1)


INFINITE = [
    Case("infinite.nngp_ntk", infinite.nngp_ntk,
         lambda: dict(X1=_randn(3, 2, seed=1), X2=_randn(2, 2, seed=2), act="relu", sw2=1.5,
                      sb2=0.1, depth=3),
         tensors=("X1", "X2"),
         scalars={"act": ACT, "sw2": [*SW2, torch.tensor([[1.0], [-1.0]])],
                  "sb2": [*SB2, torch.tensor([0.1, -0.1])], "depth": DEPTH,
                  "X2": [_randn(2, 3)]}),
    Case("infinite.nngp_ntk[erf]", infinite.nngp_ntk,
         lambda: dict(X1=_randn(3, 2, seed=1), act="erf", sw2=torch.tensor([1.0, 2.0]),
                      sb2=0.1, depth=[1, 3]),
         tensors=("X1",), scalars={"sw2": [torch.tensor([1.0, NAN]), torch.tensor([])]}),
    Case("infinite.cnn_nngp_ntk", infinite.cnn_nngp_ntk,
         lambda: dict(X1=_randn(2, 1, 3, 3, seed=1), X2=_randn(1, 1, 3, 3, seed=2), act="erf",
                      sw2=1.5, sb2=0.1, depth=[1, 2], readout="gap"),
         tensors=("X1", "X2"),
         scalars={"act": ACT, "sw2": [*SW2[:-1], torch.tensor([1.0, 2.0])], "sb2": SB2,
                  "depth": DEPTH, "readout": ["max", None], "X2": [_randn(1, 2, 3, 3)]}),
    Case("infinite.layer_step", infinite.layer_step, _step_args,
         tensors=("k12", "k1", "k2", "t12"),
         scalars={"act": ACT, "sw2": SW2[:-1], "sb2": SB2, "same": FLAG,
                  "k1": [-torch.ones(3, dtype=F64), torch.ones(2, dtype=F64)],
                  "t12": [torch.ones(3, 4, dtype=F64)],
                  "k2": [torch.ones(3, dtype=torch.float32)]}),
    Case("infinite.fixed_point", infinite.fixed_point,
         lambda: dict(act="erf", sw2=torch.tensor([1.0, 4.0], dtype=F64), sb2=0.1, iters=50),
         scalars={"act": ACT, "sw2": SW2, "sb2": [*SB2, 0.0], "iters": ITERS}),
    Case("infinite.critical_sw2", infinite.critical_sw2,
         lambda: dict(act="erf", sb2=0.1, iters=20),
         scalars={"act": ACT, "sb2": [*SB2, 0.0], "iters": ITERS}),
    Case("infinite.mean_predictor", infinite.mean_predictor,
         lambda: dict(K_test_train=_randn(2, 4, seed=1), K_train=_spd(4), Y=_randn(4, 2, seed=2)),
         tensors=("K_test_train", "K_train", "Y"),
         scalars={"K_train": [torch.ones(4, 4, dtype=F64), _randn(4, 3)],
                  "Y": [_randn(3, 2)], "K_test_train": [_randn(2, 3)]}),
    Case("infinite.linearized", infinite.linearized,
         lambda: dict(K_train=_spd(4), Y=_randn(4, 2, seed=2), lr=0.5, t=3.0,
                      K_test_train=_randn(2, 4, seed=1)),
         tensors=("K_train", "Y", "K_test_train"),
         scalars={"lr": [NAN, INF, 0.0, -1.0, True, "0.5", torch.tensor([0.5, NAN])],
                  "t": [NAN, INF, -1.0, True, "3"], "discrete": FLAG}),
    Case("infinite.linearized[discrete]", infinite.linearized,
         lambda: dict(K_train=_spd(4), Y=_randn(4, seed=2), lr=0.1, t=5, discrete=True),
         tensors=("K_train", "Y"), scalars={"lr": [1e300]}),
    Case("infinite.ntk_mlp", infinite.ntk_mlp,
         lambda: dict(d_in=3, width=4, depth=3, act="erf", sw2=1.5, sb2=0.1, out=2, seed=1),
         scalars={"d_in": SIZE, "width": SIZE, "depth": SIZE, "out": SIZE, "act": ACT,
                  "sw2": SW2[:-1], "sb2": SB2, "seed": [-1, 2.5, True, NAN, 2**64],
                  "dtype": DTYPE}),
    Case("infinite.ntk_mlp[generator]", infinite.ntk_mlp,
         lambda: dict(d_in=3, width=4, depth=2, act="relu", sw2=1.5, sb2=0.1,
                      generator=torch.Generator().manual_seed(3)),
         scalars={"generator": GEN}),
    Case("infinite.ntk_cnn", infinite.ntk_cnn,
         lambda: dict(c_in=1, hw=(3, 3), width=2, depth=2, act="relu", sw2=1.5, sb2=0.1,
                      readout="flatten", seed=1),
         scalars={"c_in": SIZE, "hw": [(3, 0), (3,), 3, (3, 2.5)], "width": SIZE,
                  "depth": SIZE, "act": ACT, "sw2": SW2[:-1], "sb2": SB2,
                  "readout": ["max", None], "out": SIZE, "seed": [-1, NAN],
                  "generator": GEN, "dtype": DTYPE}),
    Case("infinite.NTKLinear", infinite.NTKLinear,
         lambda: dict(n_in=3, n_out=2, sw2=1.5, sb2=0.1,
                      generator=torch.Generator().manual_seed(0)),
         scalars={"n_in": SIZE, "n_out": SIZE, "sw2": SW2[:-1], "sb2": SB2,
                  "generator": GEN, "dtype": DTYPE}),
    Case("infinite.NTKConv2d", infinite.NTKConv2d,
         lambda: dict(c_in=1, c_out=2, sw2=1.5, sb2=0.1),
         scalars={"c_in": SIZE, "c_out": SIZE, "sw2": SW2[:-1], "sb2": SB2,
                  "generator": GEN, "dtype": DTYPE}),
]

CASES = KERNELS + INFINITE
test_refused, test_pure = make_tests(CASES)


def test_every_case_spoils_something_or_is_argument_free():
    assert count_spoils(CASES) > 400
    for case in CASES:
        assert case.spoils() or case.name.startswith("kernels.PathKernel."), case.name


# ------------------------------------------------------------------ issue 13: kernels


def test_ntk_refuses_nan_parameters_naming_net():
    net = _mlp()
    with torch.no_grad():
        net[0].weight[1, 2] = NAN
    with pytest.raises(InputError, match=r"kernels\.ntk: net has NaN or inf in '0\.weight'"):
        kernels.ntk(net, _randn(4, 3))


def test_ntk_refuses_an_overflowing_forward_pass():
    with pytest.raises(InputError, match=r"kernels\.ntk: the kernel is not finite.*overflows"):
        kernels.ntk(_mlp(), torch.full((4, 3), 1e300, dtype=F64))


def test_kernel_regression_refuses_nan_and_integer_targets_naming_them():
    K, Kt = _k4(3, 2), _randn(2, 3, 2, 2, seed=1)
    bad = _randn(3, 2)
    bad[1, 0] = NAN
    with pytest.raises(InputError, match=r"kernel_regression: targets contains NaN"):
        kernels.kernel_regression(Kt, K, bad)
    with pytest.raises(InputTypeError, match=r"kernel_regression: targets must be a real "
                                             r"floating tensor, got dtype torch\.int64"):
        kernels.kernel_regression(Kt, K, torch.ones(3, 2, dtype=torch.int64))


def test_kernel_regression_of_a_singular_kernel_asks_for_a_ridge():
    A = torch.ones(2, 2, dtype=F64)
    with pytest.raises(InputError, match="singular.*ridge > 0"):
        kernels.kernel_regression(A, A, torch.ones(2, 1, dtype=F64))


@pytest.mark.parametrize("kw,arg", [(dict(steps=-5), "steps"), (dict(lr=NAN), "lr"),
                                    (dict(lr=-1.0), "lr"), (dict(lr=0.0), "lr")])
def test_kernel_gd_refuses_negative_steps_and_nan_or_ascending_rates(kw, arg):
    args = dict(lr=0.1, steps=3) | kw
    with pytest.raises(InputError, match=rf"kernel_gd: {arg} must"):
        kernels.kernel_gd(_k4(3, 1), _randn(2, 3, 1, 1), _randn(3, 1), **args)


def test_ntk_raw_torch_errors_are_now_library_errors():
    net, X = _mlp(), _randn(4, 3)
    cases = [
        (dict(X1=X[:0]), InputError, r"X1 is empty"),
        (dict(X1=_randn(4, 5)), InputError, r"X1 of shape \(4, 5\) does not fit net"),
        (dict(X1=torch.empty(4, 3, dtype=F64, device="meta")), InputTypeError,
         r"X1 is a 'meta' tensor"),
        (dict(X1=X, X2=_randn(2, 4)), InputError, r"X1 .* and X2 .* same shape"),
    ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match):
            kernels.ntk(net, **kw)
    bn = nets.mlp([3, 4, 1], batchnorm=True, seed=0)          # in training mode
    with pytest.raises(InputError, match=r"net has BatchNorm1d .* training mode.*eval"):
        kernels.ntk(bn, X, method="generic")
    assert torch.isfinite(kernels.ntk(bn.eval(), X, method="generic")).all()
    drop = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    with pytest.raises(InputError, match=r"net has Dropout .* training mode"):
        kernels.ntk(drop, X)
    meta = nn.Sequential(nn.Linear(3, 2, device="meta", dtype=F64))
    with pytest.raises(InputTypeError, match=r"net has a 'meta' tensor"):
        kernels.ntk(meta, X)


def test_lazy_prediction_without_a_trajectory_names_traj():
    with pytest.raises(InputTypeError, match=r"lazy_prediction: traj must be a "
                                             r"dynamics\.NetTrajectory .*got NoneType"):
        kernels.lazy_prediction(_mlp(), None, _randn(3, 3))


def test_an_inplace_first_module_never_overwrites_the_callers_inputs():
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 2)).double()
    X = _randn(5, 3)
    before = X.clone()
    K = kernels.ntk(net, X, method="structured")
    assert torch.equal(X, before)
    ref = kernels.ntk(net, X.clamp_min(0), method="structured")
    assert torch.equal(K, ref)


def test_ntk_leaves_the_nets_gradients_and_values_alone():
    net = _mlp()
    loss = net(_randn(4, 3)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    values = [p.detach().clone() for p in net.parameters()]
    for method in ("structured", "generic"):
        kernels.ntk(net, _randn(4, 3, seed=3), method=method)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters(), strict=True))
    assert all(torch.equal(v, p) for v, p in zip(values, net.parameters(), strict=True))


# ----------------------------------------------------------------- issue 13: infinite


def _diagonal_recursion(q, sw2, sb2, depth):
    """ReLU at ``c = 1``: ``K^{l+1} = sw2 K^l / 2 + sb2``, ``Theta^{l+1} = K^{l+1} +
    (sw2 / 2) Theta^l`` (``E[phi(u)^2] = q/2``, ``E[phi'(u)^2] = 1/2``)."""
    k = t = q
    for _ in range(depth - 1):
        k = sw2 * k / 2 + sb2
        t = k + sw2 / 2 * t
    return k, t


@pytest.mark.parametrize("sb2", [0.0, 0.1, 3.0])
def test_relu_kernel_of_duplicate_points_is_the_diagonal_recursion(sb2):
    X = _randn(4, 6, seed=11)
    X = torch.cat([X, X[1:2], 2 * X[2:3] if sb2 == 0 else X[2:3]])   # rows 4, 5: copies
    sw2, depth = 1.7, 6
    same = infinite.nngp_ntk(X, act="relu", sw2=sw2, sb2=sb2, depth=depth)
    cross = infinite.nngp_ntk(X, X.clone(), act="relu", sw2=sw2, sb2=sb2, depth=depth)
    for i, j in ((1, 4), (2, 5)):
        # sb2 = 0: a parallel point 2x has the angle 0 of a duplicate, at twice the norm
        scale = 2.0 if (sb2 == 0 and j == 5) else 1.0
        q = sw2 * float(X[i] @ X[i]) / 6 + sb2
        k, t = _diagonal_recursion(q, sw2, sb2, depth)
        for out in (same, cross):
            for got, want in ((out.nngp[i, j], k), (out.ntk[i, j], t)):
                assert abs(float(got) / (scale * want) - 1) <= 1e-12
    torch.testing.assert_close(cross.ntk, same.ntk, rtol=1e-12, atol=0)
    torch.testing.assert_close(cross.nngp, same.nngp, rtol=1e-12, atol=0)


def _mp_relu(x, y, sw2, sb2, depth):
    """The ReLU recursion for one pair in 60-digit arithmetic (mpmath): ``[(K^l, Theta^l,
    sqrt(K^l(x, x) K^l(y, y)))]`` for ``l = 1 .. depth``."""
    mp = pytest.importorskip("mpmath")
    ctx = mp.mp.clone()
    ctx.dps = 60
    sw2, sb2, d = ctx.mpf(sw2), ctx.mpf(sb2), len(x)

    def dot(a, b):
        return ctx.fsum(ctx.mpf(p) * ctx.mpf(q) for p, q in zip(a, b, strict=True))

    k11, k22 = sw2 * dot(x, x) / d + sb2, sw2 * dot(y, y) / d + sb2
    k12 = t12 = sw2 * dot(x, y) / d + sb2
    out = [(k12, t12, ctx.sqrt(k11 * k22))]
    for _ in range(depth - 1):
        s = ctx.sqrt(k11 * k22)
        th = ctx.acos(max(min(k12 / s, 1), -1))
        k12 = sw2 / (2 * ctx.pi) * s * (ctx.sin(th) + (ctx.pi - th) * ctx.cos(th)) + sb2
        t12 = k12 + sw2 * (ctx.pi - th) / (2 * ctx.pi) * t12
        k11, k22 = sw2 * k11 / 2 + sb2, sw2 * k22 / 2 + sb2
        out.append((k12, t12, ctx.sqrt(k11 * k22)))
    return out


@pytest.mark.parametrize("sb2", [0.0, 0.1, 2.0])
def test_relu_kernel_of_near_coincident_points_matches_60_digit_arithmetic(sb2):
    """Pairs ``x, x + delta v`` for ``delta = 1e-3 .. 1e-12`` (where ``arccos`` of the Gram
    correlation lost up to half the digits: errors ~1e-8), an exact copy, a parallel ``2x``,
    the antipode ``-x`` and a generic pair: every depth's NNGP and NTK within 1e-12 of the
    mpmath value (relative; absolute in units of ``sqrt(K(x,x) K(y,y))`` where the value
    itself vanishes, as for the antipode without bias)."""
    x, v = _randn(5, seed=3), _randn(5, seed=4)
    ys = [x + d * v for d in (1e-3, 1e-6, 1e-9, 1e-12)] + [x.clone(), 2 * x, -x, v]
    depth, sw2 = 6, 1.7
    out = infinite.nngp_ntk(torch.stack([x] * len(ys)), torch.stack(ys), act="relu", sw2=sw2,
                            sb2=sb2, depth=list(range(1, depth + 1)))
    for j, y in enumerate(ys):
        ref = _mp_relu(x.tolist(), y.tolist(), sw2, sb2, depth)
        for layer, (k, t, scale) in enumerate(ref):
            for got, want in ((out.nngp[layer, j, j], k), (out.ntk[layer, j, j], t)):
                err = abs(float(got) - float(want))
                assert err <= 1e-12 * max(abs(float(want)), 1e-3 * float(scale)), \
                    (sb2, j, layer, float(got), float(want))


def test_relu_kernel_with_a_zero_input_and_no_bias_is_zero_not_nan():
    """``x = 0``, ``sb2 = 0``: ``h^1(0) = 0``, so every ``K^l(0, .)`` and ``Theta^l(0, .)``
    is 0, the limit of ``x -> 0`` (the ReLU kernel is 1-homogeneous in each argument)."""
    X = _randn(4, 3, seed=8)
    X[1] = 0
    for X2 in (None, _randn(2, 3, seed=9)):
        out = infinite.nngp_ntk(X, X2, act="relu", sw2=1.5, sb2=0.0, depth=[1, 2, 4])
        for kern in out:
            assert torch.isfinite(kern).all()
            assert (kern[:, 1] == 0).all()
            if X2 is None:
                assert (kern[:, :, 1] == 0).all()
        rest = [0, 2, 3]
        ref = infinite.nngp_ntk(X[rest], X2, act="relu", sw2=1.5, sb2=0.0, depth=[1, 2, 4])
        cols = rest if X2 is None else slice(None)
        torch.testing.assert_close(out.ntk[:, rest][..., cols], ref.ntk, rtol=1e-13, atol=0)
    eps = 1e-6
    Xe = X.clone()
    Xe[1] = eps * _randn(3, seed=10)
    small = infinite.nngp_ntk(Xe, act="relu", sw2=1.5, sb2=0.0, depth=4)
    assert small.ntk[1].abs().max() < 10 * eps * small.ntk.abs().max()


@pytest.mark.parametrize("call,arg", [
    (lambda: infinite.fixed_point("erf", 2.0, 0.1, iters=0), "iters"),
    (lambda: infinite.critical_sw2("erf", 0.1, iters=-1), "iters"),
    (lambda: infinite.layer_step(**(_step_args() | dict(sw2=-1.0))), "sw2"),
    (lambda: infinite.ntk_mlp(3, 4, 2, "relu", NAN, 0.1), "sw2"),
    (lambda: infinite.ntk_mlp(3, 4, 2, "relu", 1.0, NAN), "sb2"),
    (lambda: infinite.ntk_mlp(3, 0, 2, "relu", 1.0, 0.1), "width"),
    (lambda: infinite.ntk_mlp(3, -1, 2, "relu", 1.0, 0.1), "width"),
])
def test_meaningless_counts_and_variances_are_refused_naming_them(call, arg):
    with pytest.raises(DLTheoryError, match=rf"\b{arg}\b"):
        call()


def test_fixed_point_default_iterations_reach_the_fixed_point():
    fp = infinite.fixed_point("erf", 2.0, 0.1)
    assert abs(float(fp.q) - 1.0463) < 1e-4
    q = float(fp.q)
    assert abs(2.0 * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q)) + 0.1 - q) <= 1e-12 * q


def test_critical_sw2_of_an_astronomical_bias_variance_returns_at_once():
    """sb2 = 1e300 used to double the bracket ~500 times with 400 Newton steps each (72 s);
    the bracket now starts beyond an analytic bound, so this is one bisection."""
    crit = infinite.critical_sw2("erf", 1e300)
    # chi_1 = (2/pi) sw2 / sqrt(sw2 + sb2) to leading order: sw2 ~ (pi/2) sqrt(sb2)
    assert abs(float(crit) / (math.pi / 2 * 1e150) - 1) < 1e-6
    with pytest.raises(InputError, match="sw2 or sb2 is too large"):
        infinite.fixed_point("erf", 1.0, 1e300)


def test_mean_predictor_of_a_singular_kernel_is_a_library_error():
    K = torch.ones(3, 3, dtype=F64)
    with pytest.raises(InputError, match=r"mean_predictor: K_train is singular"):
        infinite.mean_predictor(torch.ones(2, 3, dtype=F64), K, torch.ones(3, dtype=F64))


def test_layer_step_leaves_its_inputs_alone():
    args = _step_args()
    before = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor)}
    for same in (False, True):
        infinite.layer_step(**args, same=same)
    assert all(torch.equal(before[k], args[k]) for k in before)


def test_ntk_mlp_randomness_comes_from_a_seed_or_generator_never_the_global_one():
    state = torch.get_rng_state()
    a = infinite.ntk_mlp(3, 4, 2, "relu", 1.5, 0.1, seed=7)
    b = infinite.ntk_mlp(3, 4, 2, "relu", 1.5, 0.1,
                         generator=torch.Generator().manual_seed(7))
    default = infinite.ntk_mlp(3, 4, 2, "relu", 1.5, 0.1)
    profile = infinite.ntk_mlp(3, 4, 2, "relu", 1.5, 0.1, generator=validation.generator(None))
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(default.parameters(), profile.parameters(), strict=True):
        assert torch.equal(p, q)
    # an explicit seed gives the weights it always gave (torch.Generator().manual_seed)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(a[0].weight, torch.randn(4, 3, generator=g, dtype=F64))
    with pytest.raises(InputError, match="seed or generator, not both"):
        infinite.ntk_mlp(3, 4, 2, "relu", 1.5, 0.1, seed=1, generator=torch.Generator())


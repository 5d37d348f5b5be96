"""Tests for dltheory.kernels (empirical NTK, path kernel) and dltheory.dynamics.train.

Every kernel is compared with an independent computation: the explicit Jacobian from
``torch.func.jacrev`` (contracted by hand), a naive loop over steps, or the network itself
(the path-kernel identity ``f_{w_S}(x) = f_{w_0}(x) + sum_i C_i(x)`` compares a kernel
computed from layer-wise signals and quadrature with forward passes). Float64 throughout;
exact identities are checked to 1e-10 relative (rounding is ~1e-15), approximations
(left endpoint, too few nodes) are shown to miss by orders of magnitude more.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dltheory import dynamics, kernels, nets

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

F64 = torch.float64
TOL = 1e-10


def _x(shape, seed=0, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _tanh_mlp(widths, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        lin = nn.Linear(a, b, dtype=F64)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=F64) / a**0.5)
            lin.bias.copy_(0.1 * torch.randn(b, generator=g, dtype=F64))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _jacobian(net, X, params=None):
    """Explicit Jacobian ``[N, k, P]`` with torch.func (the reference)."""
    P = {n: p.detach() for n, p in net.named_parameters()} if params is None else params

    def f(p, x):
        return torch.func.functional_call(net, p, (x[None],)).reshape(-1)

    J = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))(P, X)
    return torch.cat([J[n].reshape(len(X), J[n].shape[1], -1) for n in P], dim=2)


def _rel(a, b):
    return float(((a - b).abs().max() / b.abs().max()).detach())


# ----------------------------------------------------------------------------- ntk


NETS = {
    "relu-k1": lambda: (nets.mlp([5, 12, 9, 1], "relu", bias_std=0.1, seed=1), (5,)),
    "relu-k3": lambda: (nets.mlp([5, 12, 9, 3], "relu", bias_std=0.1, seed=2), (5,)),
    "leaky-nobias": lambda: (nets.mlp([4, 7, 3], "leaky_relu", bias=False, seed=3), (4,)),
    "tanh": lambda: (_tanh_mlp([4, 10, 10, 2], seed=4), (4,)),
    "maxout": lambda: (nets.mlp([4, 6, 2], "maxout", seed=5), (4,)),
    "conv-max": lambda: (nets.convnet((1, 6, 6), (3, 4), 3, "relu", bias_std=0.1, seed=6),
                         (1, 6, 6)),
    "conv-avg": lambda: (nets.convnet((2, 5, 5), (3,), 2, "abs", pool="avg", seed=7),
                         (2, 5, 5)),
    "conv1d": lambda: (nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(3 * 4, 2)).double(), (2, 8)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_structured_ntk_equals_explicit_jacobian_product(name):
    net, shape = NETS[name]()
    X1, X2 = _x((7, *shape), 1), _x((5, *shape), 2)
    J1, J2 = _jacobian(net, X1), _jacobian(net, X2)
    ref = torch.einsum("iap,jbp->ijab", J1, J2)
    K = kernels.ntk(net, X1, X2, method="structured", chunk=3)
    assert K.shape == ref.shape
    assert _rel(K, ref) <= TOL
    assert _rel(kernels.ntk(net, X1, X2, method="generic", chunk=2), ref) <= TOL


@settings(max_examples=15, deadline=None)
@given(depth=st.integers(1, 4), width=st.integers(1, 9), k=st.integers(1, 3),
       act=st.sampled_from(["relu", "leaky_relu", "abs"]), seed=st.integers(0, 10_000))
def test_structured_ntk_property(depth, width, k, act, seed):
    net = nets.mlp([3] + [width] * depth + [k], act, bias_std=0.2, seed=seed)
    X1, X2 = _x((4, 3), seed), _x((6, 3), seed + 1)
    ref = torch.einsum("iap,jbp->ijab", _jacobian(net, X1), _jacobian(net, X2))
    assert _rel(kernels.ntk(net, X1, X2), ref) <= TOL


def test_ntk_flat_symmetric_psd_and_params():
    net = nets.mlp([3, 8, 2], "relu", bias_std=0.1, seed=0)
    X = _x((6, 3))
    K = kernels.ntk(net, X)
    Kf = kernels.ntk(net, X, flat=True)
    J = _jacobian(net, X).reshape(12, -1)          # rows (example, output)
    assert _rel(Kf, J @ J.T) <= TOL
    assert torch.allclose(Kf, Kf.T, atol=1e-12)
    assert torch.linalg.eigvalsh(Kf).min() > -1e-10
    assert torch.equal(kernels.flatten_kernel(K), Kf)
    # other parameters: a flat vector and a dict give the kernel at those parameters
    v = torch.nn.utils.parameters_to_vector(net.parameters()).detach() * 1.5
    P = kernels.unflatten(net, v)
    ref = _jacobian(net, X, P).reshape(12, -1)
    assert _rel(kernels.ntk(net, X, flat=True, params=v), ref @ ref.T) <= TOL
    assert _rel(kernels.ntk(net, X, flat=True, params=P, method="generic"), ref @ ref.T) <= TOL


def test_ntk_auto_falls_back_to_generic():
    net = nets.spline_eval(nets.resnet((1, 4, 4), width=2, blocks=1, n_out=2, seed=0))
    X = _x((3, 1, 4, 4))
    ref = torch.einsum("iap,jbp->ijab", _jacobian(net, X), _jacobian(net, X))
    assert _rel(kernels.ntk(net, X), ref) <= TOL
    with pytest.raises(kernels.NotStructuredError, match="ResidualBlock"):
        kernels.ntk(net, X, method="structured")


def test_ntk_errors():
    net = nets.mlp([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="same shape after the batch axis"):
        kernels.ntk(net, _x((2, 3)), _x((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        kernels.ntk(net, torch.full((2, 3), float("nan"), dtype=F64))
    with pytest.raises(TypeError, match="dtype"):
        kernels.ntk(net, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch axis"):
        kernels.ntk(net, _x((3,)))
    with pytest.raises(ValueError, match="method"):
        kernels.ntk(net, _x((2, 3)), method="fast")
    with pytest.raises(ValueError, match="chunk"):
        kernels.ntk(net, _x((2, 3)), chunk=0)
    with pytest.raises(ValueError, match=r"shape \[21\]"):
        kernels.ntk(net, _x((2, 3)), params=torch.zeros(3, dtype=F64))
    bn = nets.mlp([3, 4, 1], batchnorm=True, seed=0).eval()
    with pytest.raises(kernels.NotStructuredError, match="batch norm"):
        kernels.ntk(bn, _x((2, 3)), method="structured")


# ----------------------------------------------------------------------------- training


def test_train_matches_a_manual_sgd_loop_and_records_output_gradients():
    net = nets.mlp([3, 6, 2], "relu", bias_std=0.1, seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    X, Y = _x((9, 3), 1), _x((9, 2), 2)
    tr = dynamics.train(net, X, Y, lr=0.1, steps=5, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    ref = nets.mlp([3, 6, 2], "relu", bias_std=0.1, seed=0)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for s in range(5):
        v = torch.nn.utils.parameters_to_vector(ref.parameters()).detach()
        assert _rel(tr.params[s], v) <= 1e-14
        F = ref(X)
        assert _rel(tr.out_grads[s], (F - Y).detach() / 9) <= 1e-13
        opt.zero_grad()
        (0.5 * ((F - Y) ** 2).sum() / 9).backward()
        opt.step()
    assert _rel(tr.params[5], torch.nn.utils.parameters_to_vector(ref.parameters())) <= 1e-13
    assert tr.loss[-1] < tr.loss[0]
    loaded = tr.load(nets.mlp([3, 6, 2], seed=9))
    assert _rel(torch.nn.utils.parameters_to_vector(loaded.parameters()), tr.params[-1]) == 0


def test_train_cross_entropy_gradient_is_softmax_minus_onehot():
    net = nets.mlp([3, 6, 4], "relu", seed=1)
    X, y = _x((10, 3)), torch.arange(10) % 4
    tr = dynamics.train(net, X, y, loss="ce", lr=0.3, steps=2, reduction="sum", progress=False)
    P = kernels.unflatten(net, tr.params[1])
    F = torch.func.functional_call(net, P, (X,))
    ref = torch.softmax(F, 1) - torch.nn.functional.one_hot(y, 4).double()
    assert _rel(tr.out_grads[1], ref) <= 1e-13
    probs = torch.nn.functional.one_hot(y, 4).double()
    tr2 = dynamics.train(net, X, probs, loss="ce", lr=0.3, steps=2, reduction="sum",
                         progress=False)
    assert _rel(tr2.params, tr.params) <= 1e-13


def test_train_accepts_a_separable_callable_and_rejects_others():
    net = nets.mlp([3, 5, 1], seed=2)
    X, Y = _x((8, 3)), _x((8, 1), 1)
    tr = dynamics.train(net, X, Y, loss=lambda F, Y: ((F - Y).abs() ** 3).sum(), lr=0.01,
                        steps=2, progress=False)
    assert tr.out_grads.shape == (2, 8, 1)
    with pytest.raises(ValueError, match="not a sum"):
        dynamics.train(net, X, Y, loss=lambda F, Y: ((F - Y).mean()) ** 2, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="not a sum"):
        dynamics.train(net, X, Y, loss=lambda F, Y: (F - Y).norm(), lr=0.1, steps=1)


def test_train_errors():
    net = nets.mlp([3, 5, 2], seed=2)
    X = _x((8, 3))
    with pytest.raises(ValueError, match=r"outputs \(8, 2\).*\(8, 3\)"):
        dynamics.train(net, X, _x((8, 3)), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="one row per example"):
        dynamics.train(net, X, _x((7, 2)), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        dynamics.train(net, X, torch.full((8, 2), float("nan"), dtype=F64), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        dynamics.train(net, X * float("nan"), _x((8, 2)), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="loss must be"):
        dynamics.train(net, X, _x((8, 2)), loss="hinge", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="reduction"):
        dynamics.train(net, X, _x((8, 2)), lr=0.1, steps=1, reduction="max")
    with pytest.raises(ValueError, match="labels must lie"):
        dynamics.train(net, X, torch.full((8,), 5), loss="ce", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="lr"):
        dynamics.train(net, X, _x((8, 2)), lr=-1.0, steps=1)
    with pytest.raises(FloatingPointError, match="diverged"):
        dynamics.train(net, X, _x((8, 2)), lr=1e6, steps=20, progress=False)


# ----------------------------------------------------------------------------- path kernel


def _run(net, n=24, k=2, lr=0.1, steps=15, seed=0, loss="mse"):
    X = _x((n, 3), seed)
    Y = _x((n, k), seed + 1) if loss == "mse" else torch.arange(n) % k
    return dynamics.train(net, X, Y, loss=loss, lr=lr, steps=steps, progress=False)


@settings(max_examples=12, deadline=None)
@given(depth=st.integers(1, 3), act=st.sampled_from(["relu", "leaky_relu", "abs"]),
       k=st.integers(1, 3), seed=st.integers(0, 1000), loss=st.sampled_from(["mse", "ce"]))
def test_exact_path_kernel_reproduces_the_network(depth, act, k, seed, loss):
    if loss == "ce" and k == 1:
        k = 2
    net = nets.mlp([3] + [12] * depth + [k], act, bias_std=0.1, seed=seed)
    lr = (0.05 if loss == "mse" else 0.5) / (4**depth if act == "abs" else 1)
    tr = _run(net, k=k, lr=lr, seed=seed, loss=loss)
    Xt = _x((15, 3), seed + 7, scale=4.0)                     # far from the data
    pk = kernels.path_kernel(net, tr, Xt, progress=False)
    assert pk.quadrature == "exact"
    assert float(pk.relative_error()) <= TOL
    fS = torch.func.functional_call(net, kernels.unflatten(net, tr.params[-1]), (Xt,))
    assert _rel(pk.fS, fS.reshape(15, k)) <= 1e-14


def test_exact_split_is_needed_at_a_large_step():
    net = nets.mlp([3, 16, 16, 1], "relu", bias_std=0.1, seed=3)
    tr = _run(net, k=1, lr=0.3, steps=20)
    Xt = _x((20, 3), 5, scale=3.0)
    exact = kernels.path_kernel(net, tr, Xt, progress=False)
    assert exact.pieces > 20 * 20                              # some segments were split
    assert float(exact.relative_error()) <= TOL
    for q, n in (("gauss", 2), ("gauss", 8), ("left", None)):
        approx = kernels.path_kernel(net, tr, Xt, quadrature=q, nodes=n, progress=False)
        assert float(approx.relative_error()) > 1e-6            # the negative control fails


def test_gauss_path_kernel_converges_for_tanh_and_matches_a_jacobian_loop():
    net = _tanh_mlp([3, 8, 8, 2], seed=1)
    tr = _run(net, lr=0.2, steps=6)
    Xt = _x((5, 3), 9, scale=3.0)
    pk = kernels.path_kernel(net, tr, Xt, nodes=8, progress=False)
    assert pk.quadrature == "gauss"
    assert float(pk.relative_error()) <= TOL
    pk2 = kernels.path_kernel(net, tr, Xt, nodes=16, progress=False)
    assert _rel(pk2.K, pk.K) <= 1e-12
    # naive: sum_s sum_q w_q J(x; w_s + t_q d_s) J(X; w_s)^T from explicit Jacobians
    import numpy as np
    t, w = np.polynomial.legendre.leggauss(8)
    ref = torch.zeros_like(pk.K)
    for s in range(tr.steps):
        ws, d = tr.params[s], tr.params[s + 1] - tr.params[s]
        Jtr = _jacobian(net, tr.X, kernels.unflatten(net, ws))
        for tq, wq in zip((t + 1) / 2, w / 2, strict=True):
            Jx = _jacobian(net, Xt, kernels.unflatten(net, ws + float(tq) * d))
            ref += tr.lr * float(wq) * torch.einsum("iap,jbp->ijab", Jx, Jtr)
    assert _rel(pk.K, ref) <= TOL


def test_left_endpoint_is_the_sum_of_tangent_kernels_and_lazy_prediction():
    net = nets.mlp([3, 10, 2], "relu", bias_std=0.1, seed=2)
    tr = _run(net, lr=0.1, steps=5)
    Xt = _x((6, 3), 4)
    pk = kernels.path_kernel(net, tr, Xt, quadrature="left", progress=False)
    ref = sum(tr.lr * kernels.ntk(net, Xt, tr.X, method="generic",
                                  params=kernels.unflatten(net, tr.params[s]))
              for s in range(tr.steps))
    assert _rel(pk.K, ref) <= TOL
    C = -sum(tr.lr * torch.einsum("mnab,nb->mna",
                                  kernels.ntk(net, Xt, tr.X, method="generic",
                                              params=kernels.unflatten(net, tr.params[s])),
                                  tr.out_grads[s]) for s in range(tr.steps))
    assert _rel(pk.C, C) <= TOL
    K0 = kernels.ntk(net, Xt, tr.X, method="generic",
                     params=kernels.unflatten(net, tr.params[0]))
    lazy = kernels.lazy_prediction(net, tr, Xt)
    assert _rel(lazy, pk.f0 - tr.lr * torch.einsum("mnab,nb->ma", K0, tr.out_grads.sum(0))) \
        <= TOL


def test_domingos_weights_and_offset():
    net = nets.mlp([3, 10, 1], "relu", bias_std=0.1, seed=2)
    tr = _run(net, k=1, lr=0.1, steps=8)
    pk = kernels.path_kernel(net, tr, _x((6, 3), 4), progress=False)
    a = pk.weights()
    pred = pk.offset + torch.einsum("mnab,mnb->ma", pk.K, a)
    assert _rel(pred, pk.fS) <= 1e-9
    net3 = nets.mlp([3, 10, 3], "relu", bias_std=0.1, seed=2)
    tr3 = _run(net3, k=3, lr=0.1, steps=8)
    pk3 = kernels.path_kernel(net3, tr3, _x((6, 3), 4), progress=False)
    a3 = pk3.weights()
    assert _rel(torch.einsum("mnab,mnb->mna", pk3.K, a3), pk3.C) <= 1e-8


def test_path_kernel_on_a_conv_net_with_gauss_and_the_exact_error():
    net = nn.Sequential(nn.Conv1d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                        nn.Linear(3 * 6, 1)).double()
    X, Y = _x((8, 1, 6)), _x((8, 1), 1)
    tr = dynamics.train(net, X, Y, lr=0.05, steps=4, progress=False)
    pk = kernels.path_kernel(net, tr, _x((4, 1, 6), 3), nodes=8, progress=False)
    assert float(pk.relative_error()) <= TOL
    relu = nets.convnet((1, 4, 4), (2,), 1, "relu", seed=0)
    trc = dynamics.train(relu, _x((5, 1, 4, 4)), _x((5, 1)), lr=0.05, steps=2,
                         progress=False)
    with pytest.raises(kernels.NotPiecewiseLinearError, match="Linear layers alternating"):
        kernels.path_kernel(relu, trc, _x((2, 1, 4, 4)), quadrature="exact")
    with pytest.raises(kernels.NotPiecewiseLinearError, match="auto"):
        kernels.path_kernel(relu, trc, _x((2, 1, 4, 4)))


def test_path_kernel_errors():
    net = nets.mlp([3, 6, 2], "relu", seed=0)
    tr = _run(net, steps=2)
    tanh = _tanh_mlp([3, 6, 2])
    trt = _run(tanh, steps=2)
    with pytest.raises(kernels.NotPiecewiseLinearError, match="Tanh"):
        kernels.path_kernel(tanh, trt, _x((2, 3)), quadrature="exact")
    with pytest.raises(ValueError, match="another network"):
        kernels.path_kernel(nets.mlp([3, 7, 2], seed=0), tr, _x((2, 3)))
    with pytest.raises(ValueError, match="shaped like the training inputs"):
        kernels.path_kernel(net, tr, _x((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        kernels.path_kernel(net, tr, _x((2, 3)) * float("nan"))
    with pytest.raises(ValueError, match="nodes must be an integer"):
        kernels.path_kernel(net, tr, _x((2, 3)), nodes=0)
    deep = nets.mlp([3, 4, 4, 4, 4, 4, 2], "relu", seed=0)
    trd = _run(deep, steps=1)
    with pytest.raises(ValueError, match="needs >= 3"):
        kernels.path_kernel(deep, trd, _x((2, 3)), nodes=2)
    # ceil(L/2) = 3 nodes are exact even though they cannot pin the deepest layers' fits
    pk = kernels.path_kernel(deep, _run(deep, lr=0.02, steps=4), _x((6, 3), 1),
                             nodes=3, progress=False)
    assert float(pk.relative_error()) <= TOL
    with pytest.raises(ValueError, match="quadrature"):
        kernels.path_kernel(net, tr, _x((2, 3)), quadrature="simpson")
    with pytest.raises(TypeError, match="NetTrajectory"):
        kernels.path_kernel(net, tr.params, _x((2, 3)))


def test_kernel_regression_matches_an_explicit_solve():
    net = nets.mlp([3, 8, 2], "relu", bias_std=0.1, seed=0)
    X, Xt, Y = _x((7, 3)), _x((4, 3), 1), _x((7, 2), 2)
    Ktr, Kte = kernels.ntk(net, X, flat=True), kernels.ntk(net, Xt, X, flat=True)
    ref = (Kte @ torch.linalg.solve(Ktr + 0.1 * torch.eye(14, dtype=F64), Y.reshape(-1)))
    out = kernels.kernel_regression(kernels.ntk(net, Xt, X), kernels.ntk(net, X), Y, ridge=0.1)
    assert _rel(out, ref.reshape(4, 2)) <= TOL
    with pytest.raises(ValueError, match="do not match"):
        kernels.kernel_regression(Kte, Ktr, _x((6, 2)))


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_checks_pass_at_a_tiny_size():
    from benchmarks import bench_kernels
    from benchmarks.harness import run_check

    for bench in bench_kernels.benchmarks("cpu", F64, tiny=True):
        assert run_check(bench) is None, bench.name


def test_keep_signals_gives_the_same_run_and_the_same_path_kernel():
    net = nets.mlp([3, 9, 9, 2], "relu", bias_std=0.1, seed=4)
    X, Y = _x((12, 3)), _x((12, 2), 1)
    a = dynamics.train(net, X, Y, lr=0.1, steps=6, progress=False)
    b = dynamics.train(net, X, Y, lr=0.1, steps=6, keep_signals=True, progress=False)
    assert a.signals is None and len(b.signals) == 6
    assert _rel(b.params, a.params) <= 1e-13
    assert _rel(b.out_grads, a.out_grads) <= 1e-13
    Xt = _x((5, 3), 2, scale=3.0)
    pa = kernels.path_kernel(net, a, Xt, progress=False)
    pb = kernels.path_kernel(net, b, Xt, progress=False)
    assert _rel(pb.K, pa.K) <= 1e-12
    assert float(pb.relative_error()) <= TOL
    conv = nets.convnet((1, 4, 4), (2,), 2, "relu", pool=None, seed=0)
    Xc, Yc = _x((6, 1, 4, 4)), _x((6, 2), 3)
    c1 = dynamics.train(conv, Xc, Yc, lr=0.05, steps=3, progress=False)
    c2 = dynamics.train(conv, Xc, Yc, lr=0.05, steps=3, keep_signals=True, progress=False)
    assert _rel(c2.params, c1.params) <= 1e-13


def test_kernel_gd_is_exact_for_a_linear_model_and_tends_to_kernel_regression():
    net = nn.Sequential(nn.Linear(4, 2)).double()      # a linear model: its NTK is constant
    X, Y, Xt = _x((3, 4)), _x((3, 2), 1), _x((3, 4), 2)     # N < P: K(X, X) invertible
    tr = dynamics.train(net, X, Y, lr=0.3, steps=25, progress=False)
    K, Kt = kernels.ntk(net, X), kernels.ntk(net, Xt, X)
    with torch.no_grad():
        f0X, f0t = net(X), net(Xt)
        fS = torch.func.functional_call(net, kernels.unflatten(net, tr.params[-1]), (Xt,))
    out = kernels.kernel_gd(K, Kt, Y, lr=0.3, steps=25, f0_train=f0X, f0_test=f0t)
    assert _rel(out, fS) <= TOL
    long = kernels.kernel_gd(K, Kt, Y, lr=0.3, steps=20_000, f0_train=f0X, f0_test=f0t)
    ref = f0t + kernels.kernel_regression(Kt, K, Y - f0X)
    assert _rel(long, ref) <= 1e-8
    with pytest.raises(ValueError, match="do not match"):
        kernels.kernel_gd(K, Kt, _x((4, 2)), lr=0.1, steps=1)


def test_exact_path_kernel_for_deeper_nets_with_many_flips():
    """Four and five Linear layers: pre-activations of degree 3 and 4 in tau (roots from the
    companion matrix), large steps so that many segments are split."""
    for depth in (3, 4):
        net = nets.mlp([3] + [10] * depth + [2], "relu", bias_std=0.1, seed=depth)
        tr = _run(net, k=2, lr=0.1, steps=12, seed=depth)
        pk = kernels.path_kernel(net, tr, _x((12, 3), 3, scale=4.0), progress=False)
        assert pk.pieces > 12 * 12
        assert float(pk.relative_error()) <= TOL


def _first_layer_flips(net, tr, X) -> int:
    """Test points whose first-layer pre-activations change sign during some step."""
    name = next(n for n, m in net.named_modules() if isinstance(m, nn.Linear))
    P = [kernels.unflatten(net, p) for p in tr.params]
    h = [X @ q[f"{name}.weight"].T + q.get(f"{name}.bias", 0.0) for q in P]
    return sum(int(((h[s] * h[s + 1]) <= 0).any(1).sum()) for s in range(len(h) - 1))


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("act,k,bias", [("relu", 1, True), ("leaky_relu", 3, True),
                                        ("abs", 2, False), ("relu", 2, False)])
def test_closed_form_path_kernel_equals_the_split_quadrature(depth, act, k, bias,
                                                             monkeypatch):
    """The closed form (moments of the activation derivatives, rank-N middle step) against
    the independent split-and-Gauss-Legendre path, with large steps so that both layers
    flip (the first layer too: those points are cut into pieces)."""
    net = nets.mlp([3] + [12] * depth + [k], act, bias=bias, bias_std=0.1 if bias else 0.0,
                   seed=depth + k)
    lr = 0.3 / (4**depth if act == "abs" else 1)
    tr = _run(net, k=k, lr=lr, steps=12, seed=k)
    Xt = _x((20, 3), 11, scale=3.0)
    if depth == 2:
        assert _first_layer_flips(net, tr, Xt) > 0              # the piece branch runs
    pk = kernels.path_kernel(net, tr, Xt, progress=False)
    assert pk.pieces > 20 * 12                                  # second-layer flips too
    monkeypatch.setattr(kernels, "_closed_layout", lambda ops: None)
    ref = kernels.path_kernel(net, tr, Xt, progress=False)
    assert _rel(pk.K, ref.K) <= TOL
    assert _rel(pk.C, ref.C) <= TOL
    assert float(pk.relative_error()) <= TOL
    assert abs(pk.pieces - ref.pieces) <= 0.02 * ref.pieces


def test_closed_form_path_kernel_with_chunks_and_signals_recomputed():
    """Chunks of test points and a trajectory without kept signals give the same kernel."""
    net = nets.mlp([3, 10, 10, 2], "relu", bias_std=0.1, seed=4)
    X, Y = _x((16, 3), 1), _x((16, 2), 2)
    kept = dynamics.train(net, X, Y, lr=0.2, steps=6, keep_signals=True, progress=False)
    plain = dynamics.train(net, X, Y, lr=0.2, steps=6, progress=False)
    Xt = _x((9, 3), 5, scale=3.0)
    a = kernels.path_kernel(net, kept, Xt, progress=False)
    b = kernels.path_kernel(net, plain, Xt, chunk=4, progress=False)
    assert _rel(b.K, a.K) <= TOL and _rel(b.C, a.C) <= TOL
    assert float(b.relative_error()) <= TOL


def test_closed_form_uses_the_recorded_step_when_it_is_not_gradient_descent(monkeypatch):
    """The rank-N form of the middle layer's step holds for gradient descent only; on a
    trajectory whose steps were altered the closed form must follow the recorded segments
    (checked against the split path), not the gradients."""
    import dataclasses

    net = nets.mlp([3, 12, 12, 2], "relu", bias_std=0.1, seed=3)
    tr = _run(net, k=2, lr=0.3, steps=8, seed=2)
    p = tr.params.clone()
    p[1:] = p[:1] + 1.5 * (p[1:] - p[:1])
    altered = dataclasses.replace(tr, params=p)
    Xt = _x((12, 3), 4, scale=3.0)
    pk = kernels.path_kernel(net, altered, Xt, progress=False)
    monkeypatch.setattr(kernels, "_closed_layout", lambda ops: None)
    ref = kernels.path_kernel(net, altered, Xt, progress=False)
    assert _rel(pk.K, ref.K) <= TOL


@pytest.mark.parametrize("keep_signals", [False, True])
def test_train_with_weight_decay_matches_torch_sgd_and_breaks_the_identity(keep_signals):
    X, Y = _x((9, 3), 1), _x((9, 2), 2)
    net = nets.mlp([3, 6, 2], "relu", bias_std=0.1, seed=0)
    plain = dynamics.train(net, X, Y, lr=0.1, steps=4, keep_signals=keep_signals,
                           progress=False)
    zero = dynamics.train(net, X, Y, lr=0.1, steps=4, keep_signals=keep_signals,
                          weight_decay=0.0, progress=False)
    assert torch.equal(plain.params, zero.params)
    tr = dynamics.train(net, X, Y, lr=0.1, steps=4, keep_signals=keep_signals,
                        weight_decay=0.05, progress=False)
    ref = nets.mlp([3, 6, 2], "relu", bias_std=0.1, seed=0)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, weight_decay=0.05)
    for s in range(4):
        F = ref(X)
        assert _rel(tr.out_grads[s], (F - Y).detach() / 9) <= 1e-13   # data loss only
        opt.zero_grad()
        (0.5 * ((F - Y) ** 2).sum() / 9).backward()
        opt.step()
    assert _rel(tr.params[4], torch.nn.utils.parameters_to_vector(ref.parameters())) <= 1e-13
    Xt = _x((12, 3), 5, scale=3.0)
    assert float(kernels.path_kernel(net, plain, Xt, progress=False).relative_error()) <= TOL
    assert float(kernels.path_kernel(net, tr, Xt, progress=False).relative_error()) > 1e-4
    for bad in (-0.1, float("nan"), True):
        with pytest.raises((ValueError, TypeError), match="weight_decay"):   # True: TypeError
            dynamics.train(net, X, Y, lr=0.1, steps=1, weight_decay=bad)

"""Tests for dltheory.landscape (the loss as an exact quadratic in one layer) and the
matrix-free spectra of dltheory.spectra.

Every closed form is compared with an independent computation: torch.func.hessian / grad
of the loss as a function of the layer's flattened parameters (functional_call), the
dense H against the matrix-free H v, eigenvalues from torch.linalg, the top eigenvalue of
a huge layer against the small Gram matrix of its Gauss-Newton factors, breakpoints
against dense sampling of the activation codes. Exactness tolerance: 1e-10 relative
(float64; the computations differ by rounding only, ~1e-15).
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from dltheory import cpa, landscape, nets, spectra
from dltheory.cpa import NotCPAError
from netutil import randomize_batchnorm as _randomize_batchnorm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

F64 = torch.float64
TOL = 1e-10


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=_gen(seed), dtype=F64)


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _loss_fn(net, info, X, Y, reduction="sum"):
    """The loss as a function of the layer's flattened [W | b], by functional_call."""
    def loss(theta):
        T = theta.reshape(info.shape)
        W = (T[:, :-1] if info.bias else T).reshape(info.module.weight.shape)
        params = {f"{info.path}.weight": W}
        if info.bias:
            params[f"{info.path}.bias"] = T[:, -1]
        f = torch.func.functional_call(net, params, (X,)).reshape(X.shape[0], -1)
        total = ((f - Y.reshape(f.shape)) ** 2).sum()
        return total / X.shape[0] if reduction == "mean" else total
    return loss


def _theta(info):
    W = info.module.weight.detach().reshape(info.shape[0], -1)
    if info.bias:
        W = torch.cat([W, info.module.bias.detach()[:, None]], 1)
    return W.reshape(-1).clone()


def _reference(net, layer, X, Y, reduction="sum"):
    info = landscape.layers(net)[layer]
    loss = _loss_fn(net, info, X, Y, reduction)
    th = _theta(info)
    with torch.no_grad(), warnings.catch_warnings():
        # torch's forward-mode AD (inside hessian) loads decompositions that use the
        # deprecated torch.jit.script: a torch-internal warning, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return loss(th), torch.func.grad(loss)(th), torch.func.hessian(loss)(th)


def _plain() -> nn.Sequential:
    """Standard torch layers: strided/padded/dilated convolutions, bias=False, Conv1d."""
    state = torch.get_rng_state()
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Unflatten(1, (2, 12)),
        nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(3, 4, 3, padding="same", dilation=2, bias=False), nn.LeakyReLU(0.2),
        nn.Unflatten(2, (2, 3)), nn.Conv2d(4, 3, (2, 3), padding=(1, 0)), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 3 * 1, 5, bias=False), nn.ReLU(), nn.Linear(5, 3),
    ).double()
    torch.set_rng_state(state)
    return net


NETS = {
    "mlp-relu": (lambda: nets.mlp([5, 7, 6, 3], bias_std=0.1), (5,)),
    "mlp-leaky": (lambda: nets.mlp([5, 6, 4], "leaky_relu", bias_std=0.1), (5,)),
    "mlp-abs": (lambda: nets.mlp([5, 6, 4], "abs", bias_std=0.1), (5,)),
    "mlp-maxout": (lambda: nets.mlp([5, 6, 4], "maxout", bias_std=0.1), (5,)),
    "mlp-nobias": (lambda: nets.mlp([5, 6, 4], bias=False), (5,)),
    "mlp-batchnorm": (lambda: _randomize_batchnorm(nets.mlp([5, 6, 4], batchnorm=True)),
                      (5,)),
    "convnet-max": (lambda: nets.convnet((1, 6, 6), (3, 4), 4, bias_std=0.1), (1, 6, 6)),
    "convnet-avg": (lambda: nets.convnet((1, 6, 6), (3,), 4, "leaky_relu", pool="avg",
                                         bias_std=0.1), (1, 6, 6)),
    "resnet": (lambda: _randomize_batchnorm(nets.resnet((1, 4, 4), width=3, blocks=1,
                                                        n_out=3, batchnorm=True,
                                                        bias_std=0.1)), (1, 4, 4)),
    "densenet": (lambda: nets.densenet((1, 4, 4), growth=2, layers=2, n_out=3, width=3,
                                       bias_std=0.1), (1, 4, 4)),
    "plain": (_plain, (24,)),
}


def _data(net, in_shape, n=6, seed=1):
    X = _randn(n, *in_shape, seed=seed)
    with torch.no_grad():
        k = net(X).reshape(n, -1).shape[1]
    return X, _randn(n, k, seed=seed + 1)


# ============================================================================ layers


def test_layers_lists_parametrized_layers_in_execution_order():
    net = nets.mlp([5, 7, 6, 3])
    found = landscape.layers(net)
    assert [x.path for x in found] == ["0", "2", "4"]
    assert [x.shape for x in found] == [(7, 6), (6, 8), (3, 7)]
    assert [x.n_params for x in found] == [42, 48, 21]
    res = landscape.layers(nets.resnet((1, 4, 4), width=3, blocks=2, n_out=3))
    assert [x.kind for x in res] == ["conv2d"] * 5 + ["linear"]
    assert res[1].path == "2.body.0" and res[1].shape == (3, 3 * 9 + 1)
    plain = landscape.layers(_plain())
    assert [x.kind for x in plain] == ["conv1d", "conv1d", "conv2d", "linear", "linear"]
    assert plain[1].shape == (4, 9) and not plain[1].bias and plain[3].shape == (5, 9)


def test_layer_params_layout_is_weight_then_bias_row_major():
    net = nets.mlp([3, 2, 1], bias_std=0.5)
    th = landscape.layer_params(net, 0)
    W, b = net[0].weight, net[0].bias
    assert torch.equal(th.reshape(2, 4), torch.cat([W, b[:, None]], 1).detach())


def test_with_layer_params_copies_and_sets():
    net = nets.mlp([3, 4, 2], bias_std=0.5)
    th = _randn(16, seed=9)
    new = landscape.with_layer_params(net, 0, th)
    assert torch.equal(landscape.layer_params(new, 0), th)
    assert torch.equal(new[0].weight.detach(), th.reshape(4, 4)[:, :3])
    assert not torch.equal(landscape.layer_params(net, 0), th)       # original untouched
    assert torch.equal(new[2].weight, net[2].weight)
    with pytest.raises(ValueError, match="P = 16"):
        landscape.with_layer_params(net, 0, th[:5])


# ============================================================================ theorem


@pytest.mark.parametrize("name", sorted(NETS))
def test_closed_form_equals_autograd_hessian_and_gradient(name):
    make, in_shape = NETS[name]
    net = make().eval()
    X, Y = _data(net, in_shape)
    for layer in range(len(landscape.layers(net))):
        q = landscape.layer_quadratic(net, layer, X, Y)
        c, g, H = _reference(net, layer, X, Y)
        assert _rel(q.H, H) <= TOL, (name, layer)
        assert _rel(q.g, g) <= TOL, (name, layer)
        assert abs(float(q.c - c)) <= TOL * float(c)
        assert torch.equal(q.theta0, _theta(landscape.layers(net)[layer]))


def test_mean_reduction_scales_by_one_over_n():
    net = nets.mlp([4, 5, 2], bias_std=0.1)
    X, Y = _data(net, (4,), n=7)
    q = landscape.layer_quadratic(net, 1, X, Y, reduction="mean")
    c, g, H = _reference(net, 1, X, Y, reduction="mean")
    assert _rel(q.H, H) <= TOL and _rel(q.g, g) <= TOL and _rel(q.c, c) <= TOL


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       n=st.integers(1, 6), seed=st.integers(0, 10_000), act=st.sampled_from(
           ["relu", "leaky_relu", "abs", "maxout"]), data=st.data())
def test_property_random_mlps_match_autograd(widths, n, seed, act, data):
    net = nets.mlp(widths, act, seed=seed, bias_std=0.3)
    layer = data.draw(st.integers(0, len(widths) - 2))
    X, Y = _randn(n, widths[0], seed=seed), _randn(n, widths[-1], seed=seed + 1)
    q = landscape.layer_quadratic(net, layer, X, Y)
    c, g, H = _reference(net, layer, X, Y)
    scale = max(float(H.abs().max()), 1e-300)
    assert float((q.H - H).abs().max()) <= TOL * scale
    assert float((q.g - g).abs().max()) <= TOL * max(float(g.abs().max()), 1e-300) + 1e-300
    # the Hessian is PSD (Gauss-Newton) and of rank <= N k
    lam = q.eigvalsh()
    assert float(lam[0]) >= -1e-12 * max(float(lam[-1]), 1e-300)
    assert q.rank() <= n * widths[-1]


def test_quadratic_predicts_the_loss_exactly_within_the_region_and_not_beyond():
    net = nets.mlp([4, 8, 8, 3], bias_std=0.1, seed=2)
    X, Y = _data(net, (4,), n=10)
    for layer in range(3):
        q = landscape.layer_quadratic(net, layer, X, Y)
        d = _randn(q.n_params, seed=layer + 5)
        t_first = landscape.parameter_breakpoints(net, layer, d, X, t_max=50.0)
        tb = float(t_first[0]) if len(t_first) else 50.0
        t = torch.linspace(0, tb, 9, dtype=F64)
        true = landscape.loss_along(net, layer, d, X, Y, t)
        assert _rel(q.along(d, t), true) <= 1e-12
        assert _rel(q.value(q.theta0 + t[:, None] * d), true) <= 1e-12
        if len(t_first) and layer < 2:
            # beyond the first breakpoint (a hidden layer's code flips) the quadratic of
            # the first region stops being the loss
            tf = torch.tensor([float(t_first[-1]) * 1.5 + 1.0], dtype=F64)
            far = landscape.loss_along(net, layer, d, X, Y, tf)
            assert _rel(q.along(d, tf), far) > 1e-6


def test_tanh_gauss_newton_is_not_the_hessian():
    """Negative control: without the CPA hypothesis the term sum_i e_i d^2 f_i survives."""
    net = nets.mlp([4, 6, 3], act=nn.Tanh, bias_std=0.1)
    X, Y = _data(net, (4,), n=5)
    with pytest.raises(NotCPAError):
        landscape.layer_quadratic(net, 0, X, Y)
    q = landscape.layer_quadratic(net, 0, X, Y, strict=False)
    _, g, H = _reference(net, 0, X, Y)
    assert _rel(q.g, g) <= TOL          # the gradient is still J^T e
    assert _rel(q.H, H) > 1e-3          # but the Hessian is not Gauss-Newton


# ============================================================================ matrix-free


def test_hvp_equals_dense_and_batches():
    for name in ("mlp-relu", "convnet-max", "resnet", "plain"):
        make, in_shape = NETS[name]
        net = make().eval()
        X, Y = _data(net, in_shape)
        for layer in range(len(landscape.layers(net))):
            q = landscape.layer_quadratic(net, layer, X, Y)
            V = _randn(3, q.n_params, seed=layer)
            assert _rel(q.hvp(V), V @ q.H) <= TOL
            assert _rel(q.hvp(V[0]), q.H @ V[0]) <= TOL
            qf = landscape.layer_quadratic(net, layer, X, Y, dense=False)
            assert qf.H is None
            assert _rel(qf.value(q.theta0 + V), q.value(q.theta0 + V)) <= TOL


def test_spectra_of_the_quadratic():
    net = nets.mlp([6, 9, 4], bias_std=0.1, seed=4)
    X, Y = _data(net, (6,), n=8)
    q = landscape.layer_quadratic(net, 0, X, Y)
    lam = torch.linalg.eigvalsh(q.H)
    assert _rel(q.eigvalsh(), lam) <= TOL
    assert abs(float(q.trace() - q.H.trace())) <= TOL * float(q.H.trace())
    top = float(lam[-1])
    assert abs(float(q.top_eigenvalue(generator=_gen(0))) - top) <= 1e-10 * top
    assert abs(float(q.top_eigenvalue(method="power", steps=5000, tol=1e-15,
                                      generator=_gen(0))) - top) <= 1e-6 * top
    pos = lam[lam > q.n_params * 2.3e-16 * top]
    assert abs(float(q.condition_number()) - top / float(pos[0])) <= 1e-8 * top / float(pos[0])
    assert math.isinf(float(q.condition_number(on_range=False))) or float(lam[0]) > 0
    # without the dense H: the same non-zero spectrum and condition number from the Gram
    qm = landscape.layer_quadratic(net, 0, X, Y, dense=False)
    gram = qm.gram_eigvalsh()
    assert _rel(gram[-pos.numel():], pos) <= 1e-10
    assert float(qm.condition_number()) == pytest.approx(float(q.condition_number()), rel=1e-8)
    F = qm.factor()
    assert _rel(F.T @ F, q.H) <= TOL
    assert q.rank() == int(pos.numel()) and q.rank() <= 8 * 4
    samples = q.trace_hutchinson(2000, generator=_gen(1))
    se = float(samples.std()) / math.sqrt(samples.numel())
    assert abs(float(samples.mean()) - float(q.H.trace())) <= 5 * se
    conv = landscape.layer_quadratic(*(lambda n: (n, 0, *_data(n, (1, 6, 6))))(
        NETS["convnet-max"][0]().eval()))
    assert abs(float(conv.trace() - conv.H.trace())) <= TOL * float(conv.H.trace())


def test_huge_layer_is_matrix_free():
    """P = 2048 * 2049: a dense H would take 1.4e14 bytes; hvp and Lanczos still work, and
    the top eigenvalue equals that of the [N k, N k] Gram matrix 2 (J_i J_j^T)(z~_i.z~_j)
    (same nonzero spectrum as H = 2 M^T M), computed here from the weights directly."""
    width, n, k = 2048, 12, 3
    net = nets.mlp([width, width, k], seed=0, bias_std=0.1)
    X, Y = _randn(n, width, seed=1), _randn(n, k, seed=2)
    with pytest.raises(ValueError, match="dense=False"):
        landscape.layer_quadratic(net, 0, X, Y)
    q = landscape.layer_quadratic(net, 0, X, Y, dense=False)
    assert q.n_params == width * (width + 1)
    with torch.no_grad():
        u = net[0](X)
        J = net[2].weight[None] * (u > 0)[:, None, :]              # [n, k, width]
        Zt = torch.cat([X, torch.ones(n, 1, dtype=F64)], 1)         # [n, width + 1]
        K = 2 * torch.einsum("iao,jbo->iajb", J, J) * (Zt @ Zt.T)[:, None, :, None]
        lam = torch.linalg.eigvalsh(K.reshape(n * k, n * k))
    top = q.top_eigenvalue(steps=60, generator=_gen(0), reorthogonalize=False)
    assert abs(float(top) - float(lam[-1])) <= 1e-10 * float(lam[-1])
    assert abs(float(q.trace()) - float(lam.sum())) <= 1e-10 * float(lam.sum())
    # H v against the autograd Hessian-vector product (forward over reverse)
    loss = _loss_fn(net, landscape.layers(net)[0], X, Y)
    v = _randn(q.n_params, seed=3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # torch-internal, as above
        ref = torch.func.jvp(torch.func.grad(loss), (q.theta0,), (v,))[1]
    assert _rel(q.hvp(v), ref) <= TOL


# ============================================================================ spectra


def _psd(n, rank=None, seed=0):
    A = _randn(n, rank or n, seed=seed)
    return A @ A.T


def test_lanczos_full_run_gives_all_eigenvalues():
    A = _psd(30, seed=1)
    ritz, res = spectra.lanczos(lambda v: A @ v, 30, 30, generator=_gen(0))
    assert _rel(ritz, torch.linalg.eigvalsh(A)) <= 1e-9
    assert res.shape == ritz.shape


def test_lanczos_runs_all_steps_without_converging():
    A = _psd(50, seed=4)
    for reorth in (True, False):
        ritz, res = spectra.lanczos(lambda v: A @ v, 50, 5, generator=_gen(0),
                                    reorthogonalize=reorth)
        assert ritz.shape == (5,) and res.shape == (5,)
        assert float(ritz[-1]) <= float(torch.linalg.eigvalsh(A)[-1]) * (1 + 1e-12)


def test_lanczos_stops_on_invariant_subspace_of_low_rank():
    A = _psd(40, rank=3, seed=2)
    ritz, _ = spectra.lanczos(lambda v: A @ v, 40, 40, generator=_gen(0))
    lam = torch.linalg.eigvalsh(A)
    assert ritz.numel() <= 5
    assert abs(float(ritz[-1] - lam[-1])) <= 1e-10 * float(lam[-1])


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 1000), reorth=st.booleans())
def test_property_top_eigenvalue(n, seed, reorth):
    A = _psd(n, seed=seed)
    lam = torch.linalg.eigvalsh(A)
    top = spectra.top_eigenvalue(lambda v: A @ v, n, generator=_gen(seed),
                                 reorthogonalize=reorth, steps=200)
    assert abs(float(top - lam[-1])) <= 1e-8 * float(lam[-1])


def test_power_iteration_and_traces():
    A = torch.diag(torch.tensor([5.0, 2.0, 1.0, 0.5], dtype=F64))
    lam, v = spectra.power_iteration(lambda x: A @ x, 4, iters=2000, generator=_gen(0))
    assert abs(float(lam) - 5.0) <= 1e-10 and abs(abs(float(v[0])) - 1) <= 1e-5
    B = _psd(12, seed=3)
    assert abs(float(spectra.operator_trace(lambda x: B @ x, 12)) - float(B.trace())) <= 1e-10
    s = spectra.hutchinson_trace(lambda x: B @ x, 12, 4000, generator=_gen(2))
    assert s.shape == (4000,)
    assert abs(float(s.mean()) - float(B.trace())) <= 5 * float(s.std()) / math.sqrt(4000)
    # diagonal matrix: Rademacher probes give the trace exactly, every time
    d = spectra.hutchinson_trace(lambda x: A @ x, 4, 5, generator=_gen(0))
    assert torch.allclose(d, torch.full((5,), 8.5, dtype=F64))


def test_spectra_bad_inputs():
    A = torch.eye(3, dtype=F64)
    with pytest.raises(TypeError, match="callable"):
        spectra.lanczos(A, 3, 3)
    with pytest.raises(ValueError, match="size"):
        spectra.lanczos(lambda v: v, 0, 3)
    with pytest.raises(ValueError, match="steps"):
        spectra.lanczos(lambda v: v, 3, 0)
    with pytest.raises(ValueError, match="same shape"):
        spectra.lanczos(lambda v: v[:2], 3, 3)
    with pytest.raises(ValueError, match="non-finite"):
        spectra.power_iteration(lambda v: v * math.nan, 3)
    with pytest.raises(ValueError, match="zero"):
        spectra.lanczos(lambda v: v, 3, 3, v0=torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="method"):
        spectra.top_eigenvalue(lambda v: v, 3, method="qr")
    with pytest.raises(ValueError, match="probes"):
        spectra.hutchinson_trace(lambda v: v, 3, 0)


# ============================================================================ breakpoints


def _codes_along(net, info, d, X, t):
    """Codes of every training point at each t, by setting the parameters (independent of
    the library's hook): [T, N, n_codes] as a bool/int tensor comparison key."""
    th0 = _theta(info)
    out = []
    for ti in t:
        T = (th0 + ti * d).reshape(info.shape)
        W = (T[:, :-1] if info.bias else T).reshape(info.module.weight.shape)
        with torch.no_grad():
            old_w = info.module.weight.clone()
            info.module.weight.copy_(W)
            if info.bias:
                old_b = info.module.bias.clone()
                info.module.bias.copy_(T[:, -1])
            try:
                cs = cpa.codes(net, X)
            finally:
                info.module.weight.copy_(old_w)
                if info.bias:
                    info.module.bias.copy_(old_b)
        out.append(torch.cat([c.reshape(X.shape[0], -1).long() for c in cs], 1))
    return torch.stack(out)


@pytest.mark.parametrize("name,layer", [("mlp-relu", 0), ("mlp-relu", 1), ("mlp-abs", 0),
                                        ("mlp-maxout", 0), ("convnet-max", 1),
                                        ("resnet", 1), ("densenet", 2), ("plain", 1)])
def test_breakpoints_match_dense_sampling(name, layer):
    make, in_shape = NETS[name]
    net = make().eval()
    X, _ = _data(net, in_shape, n=5)
    info = landscape.layers(net)[layer]
    d = _randn(info.n_params, seed=7, scale=0.5)
    t_max = 2.0
    t, flips = landscape.parameter_breakpoints(net, layer, d, X, t_max=t_max,
                                               return_flips=True)
    assert len(t) > 0, "pick a longer line: the test needs breakpoints"
    assert torch.all(t > 0) and torch.all(t < t_max) and torch.all(torch.diff(t) > 0)
    assert flips.shape == (len(t), 5) and bool(flips.any(1).all())
    grid = torch.linspace(0, t_max, 401, dtype=F64)
    C = _codes_along(net, info, d, X, grid)
    changed = (C[1:] != C[:-1]).any(2)                               # [grid-1, N]
    # a flip between two grid points implies an exact breakpoint in between
    lo, hi = grid[:-1], grid[1:]
    has_bp = ((t[None, :] >= lo[:, None]) & (t[None, :] <= hi[:, None])).any(1)
    assert not bool((changed.any(1) & ~has_bp).any())
    # every exact breakpoint: the codes just before and after differ, for the flipped points
    h = 1e-9
    before = _codes_along(net, info, d, X, t - h)
    after = _codes_along(net, info, d, X, t + h)
    assert torch.equal((before != after).any(2), flips)
    # on each piece the loss is one quadratic (built at the piece's midpoint)
    edges = torch.cat([torch.zeros(1, dtype=F64), t, torch.full((1,), t_max, dtype=F64)])
    Y = _data(net, in_shape, n=5)[1]
    for a, b in list(zip(edges[:-1], edges[1:], strict=True))[:4]:
        mid = float((a + b) / 2)
        th = _theta(info) + mid * d
        probe = net
        with torch.no_grad():
            T = th.reshape(info.shape)
            saved = [p.clone() for p in (info.module.weight, info.module.bias)
                     if p is not None]
            info.module.weight.copy_((T[:, :-1] if info.bias else T)
                                     .reshape(info.module.weight.shape))
            if info.bias:
                info.module.bias.copy_(T[:, -1])
        try:
            q = landscape.layer_quadratic(probe, layer, X, Y)
            ts = torch.linspace(float(a), float(b), 5, dtype=F64) - mid
            true = landscape.loss_along(probe, layer, d, X, Y, ts)
        finally:
            with torch.no_grad():
                info.module.weight.copy_(saved[0])
                if info.bias:
                    info.module.bias.copy_(saved[1])
        assert _rel(q.along(d, ts), true) <= 1e-10


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 5), min_size=3, max_size=4), n=st.integers(1, 4),
       seed=st.integers(0, 10_000), act=st.sampled_from(["relu", "abs", "maxout"]),
       data=st.data())
def test_property_breakpoints_are_the_code_changes(widths, n, seed, act, data):
    net = nets.mlp(widths, act, seed=seed, bias_std=0.5)
    layer = data.draw(st.integers(0, len(widths) - 3))      # a layer followed by a site
    info = landscape.layers(net)[layer]
    X = _randn(n, widths[0], seed=seed)
    d = _randn(info.n_params, seed=seed + 1)
    t, flips = landscape.parameter_breakpoints(net, layer, d, X, t_max=3.0,
                                               return_flips=True)
    grid = torch.linspace(0, 3.0, 301, dtype=F64)
    C = _codes_along(net, info, d, X, grid)
    changed = (C[1:] != C[:-1]).any(2).any(1)
    inside = ((t[None, :] >= grid[:-1, None]) & (t[None, :] <= grid[1:, None])).any(1)
    assert not bool((changed & ~inside).any())
    if len(t):
        before = _codes_along(net, info, d, X, t - 1e-9)
        after = _codes_along(net, info, d, X, t + 1e-9)
        assert torch.equal((before != after).any(2), flips)


def test_breakpoints_range_and_empty():
    net = nets.mlp([3, 4, 2], bias_std=0.1)
    X = _randn(4, 3)
    d = _randn(landscape.layers(net)[1].n_params, seed=3)
    # the last layer has no nonlinearity after it: never a breakpoint
    assert landscape.parameter_breakpoints(net, 1, d, X, t_max=100.0).numel() == 0
    d0 = _randn(landscape.layers(net)[0].n_params, seed=3)
    full = landscape.parameter_breakpoints(net, 0, d0, X, t_min=-5.0, t_max=5.0)
    part = landscape.parameter_breakpoints(net, 0, d0, X, t_min=0.0, t_max=5.0)
    assert torch.allclose(full[full > 0], part, rtol=0, atol=1e-12)


def test_loss_along_and_squared_loss_against_a_direct_evaluation():
    net = nets.mlp([4, 5, 3], bias_std=0.2)
    X, Y = _data(net, (4,), n=6)
    d = _randn(landscape.layers(net)[0].n_params, seed=4)
    ts = torch.tensor([0.0, 0.7, -1.3], dtype=F64)
    got = landscape.loss_along(net, 0, d, X, Y, ts)
    got_mean = landscape.loss_along(net, 0, d, X, Y, ts, reduction="mean")
    th0 = landscape.layer_params(net, 0)
    for i, t in enumerate(ts):
        with torch.no_grad():
            f = landscape.with_layer_params(net, 0, th0 + t * d)(X)
        assert abs(float(got[i]) - float(((f - Y) ** 2).sum())) <= 1e-12 * float(got[i])
        assert abs(float(got_mean[i]) - float(((f - Y) ** 2).sum()) / 6) <= 1e-12
        assert float(landscape.squared_loss(f, Y)) == float(((f - Y) ** 2).sum())


# ============================================================================ bad input


def test_bad_inputs_raise_clear_errors():
    net = nets.mlp([3, 4, 2], bias_std=0.1)
    X, Y = _randn(5, 3), _randn(5, 2)
    with pytest.raises(ValueError, match="squared error"):
        landscape.layer_quadratic(net, 0, X, Y, loss="cross_entropy")
    with pytest.raises(ValueError, match="reduction"):
        landscape.layer_quadratic(net, 0, X, Y, reduction="max")
    with pytest.raises(IndexError, match=r"valid indices 0\.\.1"):
        landscape.layer_quadratic(net, 2, X, Y)
    with pytest.raises(TypeError, match="int index"):
        landscape.layer_quadratic(net, "0", X, Y)
    with pytest.raises(NotCPAError, match="Tanh"):
        landscape.layer_quadratic(nets.mlp([3, 4, 2], act=nn.Tanh), 0, X, Y)
    with pytest.raises(ValueError, match=r"X has shape \(5, 3\), Y has shape \(4, 2\)"):
        landscape.layer_quadratic(net, 0, X, Y[:4])
    with pytest.raises(ValueError, match="each target needs 2"):
        landscape.layer_quadratic(net, 0, X, _randn(5, 3))
    with pytest.raises(TypeError, match="one-hot"):
        landscape.layer_quadratic(net, 0, X, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="Y contains NaN or inf"):
        landscape.layer_quadratic(net, 0, X, Y * math.nan)
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        landscape.layer_quadratic(net, 0, X * math.inf, Y)
    with pytest.raises(TypeError, match="dtype"):
        landscape.layer_quadratic(net, 0, X.float(), Y)
    with pytest.raises(ValueError, match="no Linear"):
        landscape.layer_quadratic(nn.Sequential(nn.ReLU()), 0, X, Y)
    lin = nn.Linear(3, 3).double()
    shared = nn.Sequential(lin, nn.ReLU(), lin)
    with pytest.raises(ValueError, match="more than once"):
        landscape.layer_quadratic(shared, 0, X, _randn(5, 3))
    q = landscape.layer_quadratic(net, 0, X, Y, dense=False)
    with pytest.raises(ValueError, match="dense"):
        q.eigvalsh()
    with pytest.raises(ValueError, match="last dimension"):
        q.hvp(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="P = 16"):
        landscape.parameter_breakpoints(net, 0, torch.zeros(5, dtype=F64), X)
    with pytest.raises(ValueError, match="zero"):
        landscape.parameter_breakpoints(net, 0, torch.zeros(16, dtype=F64), X)
    with pytest.raises(ValueError, match="t_min < t_max"):
        landscape.parameter_breakpoints(net, 0, torch.ones(16, dtype=F64), X, t_max=-1.0)
    with pytest.raises(NotCPAError):
        landscape.parameter_breakpoints(nets.mlp([3, 4, 2], act=nn.Tanh), 0,
                                        torch.ones(16, dtype=F64), X)
    with pytest.raises(ValueError, match="squared error"):
        landscape.loss_along(net, 0, torch.ones(16, dtype=F64), X, Y, [0.0], loss="ce")


# ============================================================================ benchmark


def test_benchmark_checks_pass_at_a_tiny_size():
    from benchmarks import bench_landscape

    for bench in (bench_landscape._hessian("cpu", width=6, n=9),
                  bench_landscape._hvp("cpu", width=16, n=5)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # torch-internal, as above
            bench.check()
        assert bench.min_speedup >= 1
    assert [b.name for b in bench_landscape.benchmarks("cpu", torch.float32)] == []

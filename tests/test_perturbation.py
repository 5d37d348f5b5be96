"""Tests for dltheory.perturbation: singular-value perturbation bounds.

Each bound is checked as a property on thousands of random matrices (hypothesis draws a
seed and the sizes; each example is a batch of matrices), with the singular values of the
perturbed matrix computed independently (numpy's SVD of the explicitly built matrix).
Each bound is also checked to be tight where its proof says it is, and to FAIL when its
hypothesis is removed (the negative controls). Rounding slack: 1e-10 relative (float64,
the SVD is backward stable to ~1e-15 * ||A||).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dltheory import cpa, nets
from dltheory import perturbation as pt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

F64 = torch.float64
TOL = 1e-10
BATCH = 16
PROP = settings(max_examples=150, deadline=None)

seeds = st.integers(0, 2**31 - 1)
sizes = st.integers(1, 9)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def _np_sv(A: torch.Tensor) -> torch.Tensor:
    """Singular values by numpy (LAPACK gesdd), descending: the independent reference."""
    return torch.from_numpy(np.linalg.svd(A.numpy(), compute_uv=False))


def _slack(s: torch.Tensor) -> torch.Tensor:
    return TOL * (1 + s.abs().amax(-1, keepdim=True))


# ----------------------------------------------------------------------------- spectra


@PROP
@given(seed=seeds, m=sizes, n=sizes)
def test_singular_values_and_norm_match_numpy(seed, m, n):
    A = _randn(_gen(seed), BATCH, m, n)
    s = pt.singular_values(A)
    ref = _np_sv(A)
    assert s.shape == (BATCH, min(m, n))
    assert torch.allclose(s, ref, rtol=0, atol=1e-12 * float(ref.max()))
    assert torch.allclose(pt.spectral_norm(A), ref[:, 0], rtol=1e-12, atol=0)


@PROP
@given(seed=seeds, n=st.integers(2, 8))
def test_condition_numbers_match_numpy(seed, n):
    A = _randn(_gen(seed), BATCH, n, n)
    ref = torch.from_numpy(np.linalg.cond(A.numpy(), 2))
    assert torch.allclose(pt.condition_numbers(A), ref, rtol=1e-8)


def test_condition_numbers_singular_and_on_range():
    gen = _gen(0)
    U = _randn(gen, 6, 2)
    A = U @ _randn(gen, 2, 5)                       # rank 2
    assert float(pt.condition_numbers(A)) > 1e12          # rank-deficient up to rounding
    assert math.isinf(float(pt.condition_numbers(torch.diag(torch.tensor([1.0, 0.0],
                                                                         dtype=F64)))))
    s = np.linalg.svd(A.numpy(), compute_uv=False)
    got = float(pt.condition_numbers(A, rtol=1e-10))
    assert got == pytest.approx(s[0] / s[1], rel=1e-10)
    assert math.isinf(float(pt.condition_numbers(torch.zeros(3, 3, dtype=F64))))
    assert math.isinf(float(pt.condition_numbers(torch.zeros(3, 3, dtype=F64), rtol=1e-10)))


# ----------------------------------------------------------------------------- Weyl


@PROP
@given(seed=seeds, m=sizes, n=sizes, scale=st.floats(1e-3, 10.0))
def test_weyl_holds(seed, m, n, scale):
    gen = _gen(seed)
    A, E = _randn(gen, BATCH, m, n), scale * _randn(gen, BATCH, m, n)
    sA = _np_sv(A)
    lo, hi = pt.weyl_interval(sA, torch.linalg.matrix_norm(E, ord=2))
    s = _np_sv(A + E)
    assert (s >= lo - _slack(hi)).all() and (s <= hi + _slack(hi)).all()


def test_weyl_is_tight_for_a_multiple_of_the_identity():
    # E = w I shifts every singular value of a PSD-diagonal A by exactly w.
    A = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=F64))
    I3 = torch.eye(3, dtype=F64)
    s_plus, s_minus = _np_sv(A + 0.5 * I3), _np_sv(A - 0.5 * I3)
    lo, hi = pt.weyl_interval(_np_sv(A), 0.5)
    assert torch.allclose(s_plus, hi, atol=1e-14) and torch.allclose(s_minus, lo, atol=1e-14)


@PROP
@given(seed=seeds, n=sizes, eps=st.floats(0.0, 3.0), scale=st.floats(0.0, 2.0))
def test_skip_interval_and_condition_bound_hold(seed, n, eps, scale):
    gen = _gen(seed)
    W = scale * _randn(gen, BATCH, n, n) / math.sqrt(n)
    lo, hi = pt.skip_interval(W, eps)
    wn = torch.from_numpy(np.linalg.norm(W.numpy(), 2, axis=(1, 2)))
    assert torch.allclose(hi, eps + wn, rtol=1e-12)
    assert torch.allclose(lo, (eps - wn).clamp_min(0), atol=1e-12)
    s = _np_sv(eps * torch.eye(n, dtype=F64) + W)
    assert (s >= lo[:, None] - _slack(s)).all() and (s <= hi[:, None] + _slack(s)).all()
    bound = pt.skip_condition_bound(W, eps)
    kappa = s[:, 0] / s[:, -1]
    ok = wn < eps
    assert (kappa[ok] <= bound[ok] * (1 + TOL)).all()
    assert torch.isinf(bound[~ok]).all()


def test_skip_bound_is_tight_for_W_a_multiple_of_the_identity():
    # W = w Q with Q = diag(1, -1): eps I + W has singular values eps + w and eps - w.
    eps, w = 1.0, 0.3
    W = w * torch.diag(torch.tensor([1.0, -1.0], dtype=F64))
    s = _np_sv(eps * torch.eye(2, dtype=F64) + W)
    lo, hi = pt.skip_interval(W, eps)
    assert float(s[0]) == pytest.approx(float(hi), rel=1e-14)
    assert float(s[-1]) == pytest.approx(float(lo), rel=1e-14)
    assert float(s[0] / s[-1]) == pytest.approx(float(pt.skip_condition_bound(W, eps)), rel=1e-13)


def test_skip_bound_negative_control_fails_when_norm_exceeds_eps():
    # ||W|| > eps: the interval's lower end is 0 and W = -eps I - small makes eps I + W
    # (nearly) singular; a finite bound computed as if ||W|| < eps would be violated.
    eps = 1.0
    W = torch.diag(torch.tensor([-1.0 + 1e-9, 1.05], dtype=F64))   # ||W|| = 1.05 > eps
    s = _np_sv(eps * torch.eye(2, dtype=F64) + W)
    kappa = float(s[0] / s[-1])
    assert math.isinf(float(pt.skip_condition_bound(W, eps)))
    wn = float(torch.linalg.matrix_norm(W, ord=2))
    naive = (eps + wn) / abs(eps - wn)                   # the formula without its hypothesis
    assert kappa > naive


# ----------------------------------------------------------------------------- diagonal


@PROP
@given(seed=seeds, m=sizes, n=sizes, alpha=st.floats(0.0, 1.0), side=st.sampled_from("LR"))
def test_multiplicative_interval_holds(seed, m, n, alpha, side):
    gen = _gen(seed)
    A = _randn(gen, BATCH, m, n)
    k = m if side == "L" else n
    mag = alpha + (1 - alpha) * torch.rand(BATCH, k, generator=gen, dtype=F64)
    sign = torch.where(torch.rand(BATCH, k, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    d = mag * sign
    DA = d[:, :, None] * A if side == "L" else A * d[:, None, :]
    lo, hi = pt.multiplicative_interval(_np_sv(A), alpha)
    s = _np_sv(DA)
    assert (s >= lo - _slack(hi)).all() and (s <= hi + _slack(hi)).all()


@PROP
@given(seed=seeds, n=st.integers(2, 8), alpha=st.floats(0.01, 1.0))
def test_diagonal_condition_bound_holds(seed, n, alpha):
    gen = _gen(seed)
    A = _randn(gen, BATCH, n, n)
    d = alpha + (1 - alpha) * torch.rand(BATCH, n, generator=gen, dtype=F64)
    kA = torch.from_numpy(np.linalg.cond(A.numpy(), 2))
    kDA = torch.from_numpy(np.linalg.cond((d[:, :, None] * A).numpy(), 2))
    assert (kDA <= pt.diagonal_condition_bound(kA, alpha) * (1 + 1e-8)).all()


def test_multiplicative_bounds_are_tight_for_aligned_diagonal():
    # A = diag(s) and D = diag(1, alpha, ...) in the singular basis: s(DA) hits alpha*s.
    alpha = 0.2
    A = torch.diag(torch.tensor([1.0, 1.0, 1.0], dtype=F64))
    D = torch.diag(torch.tensor([1.0, alpha, alpha], dtype=F64))
    s = _np_sv(D @ A)
    lo, hi = pt.multiplicative_interval(_np_sv(A), alpha)
    assert float(s[0]) == pytest.approx(float(hi[0]))
    assert float(s[-1]) == pytest.approx(float(lo[-1]))
    kappa = float(s[0] / s[-1])
    assert kappa == pytest.approx(float(pt.diagonal_condition_bound(1.0, alpha)))


def test_multiplicative_negative_control_entries_above_one():
    # |d| up to 2 (outside [alpha, 1]): the upper end s_i(A) is exceeded.
    A = torch.eye(3, dtype=F64)
    s = _np_sv(torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=F64)) @ A)
    _, hi = pt.multiplicative_interval(_np_sv(A), 0.5)
    assert (s > hi + 0.5).any()


def test_abs_diagonal_does_not_move_singular_values():
    gen = _gen(3)
    A = _randn(gen, 7, 5)
    d = pt.activation_diagonal(_randn(gen, 7), "abs")
    assert torch.allclose(_np_sv(d[:, None] * A), _np_sv(A), rtol=1e-12)


@PROP
@given(seed=seeds, m=sizes, n=sizes, p=st.floats(0.0, 1.0))
def test_interlacing_holds(seed, m, n, p):
    gen = _gen(seed)
    A = _randn(gen, BATCH, m, n)
    d = (torch.rand(BATCH, m, generator=gen) < p).to(F64)
    deleted = (d == 0).sum(-1)
    lo, hi = pt.interlacing_interval(_np_sv(A), deleted)
    s = _np_sv(d[:, :, None] * A)
    assert (s >= lo - _slack(hi)).all() and (s <= hi + _slack(hi)).all()
    # independent lower end: a naive loop over the indices
    sA = _np_sv(A)
    for b in range(BATCH):
        for i in range(min(m, n)):
            j = i + int(deleted[b])
            assert float(lo[b, i]) == (float(sA[b, j]) if j < min(m, n) else 0.0)


def test_interlacing_is_tight_for_a_diagonal_matrix():
    # Deleting the rows of the largest singular values reaches the lower end s_{i+k}.
    A = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=F64))
    d = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    lo, _ = pt.interlacing_interval(_np_sv(A), 2)
    assert torch.allclose(_np_sv(d[:, None] * A), lo, atol=1e-14)


def test_interlacing_negative_control_too_few_deletions_claimed():
    # Claiming 1 deleted row when 2 were deleted: the lower end is violated.
    A = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=F64))
    d = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    lo, _ = pt.interlacing_interval(_np_sv(A), 1)
    assert (_np_sv(d[:, None] * A) < lo - 0.5).any()


@PROP
@given(seed=seeds, g=sizes, n=sizes)
def test_concat_singular_values_exact(seed, g, n):
    gen = _gen(seed)
    B = _randn(gen, BATCH, g, n) * 2
    ref = _np_sv(torch.cat([torch.eye(n, dtype=F64).expand(BATCH, n, n), B], 1))
    got = pt.concat_singular_values(_np_sv(B), n)
    assert torch.allclose(got, ref, rtol=1e-12, atol=0)
    # negative control: the additive (Weyl) guess s_i(B) + 1 overshoots for s_i(B) > 0
    assert ((_np_sv(B) + 1) > got[:, :min(g, n)] + 1e-3).any()


# ----------------------------------------------------------------------------- random


def test_quarter_circle_density_integrates_to_cdf():
    x = torch.linspace(0, 2.6, 20001, dtype=F64)
    sigma = 1.3
    p = pt.quarter_circle_density(x, sigma)
    integral = torch.cumulative_trapezoid(p, x)
    F = pt.quarter_circle_cdf(x[1:], sigma)
    assert torch.allclose(integral, F, atol=2e-4)
    edge = torch.tensor([2 * sigma], dtype=F64)
    assert float(pt.quarter_circle_cdf(edge, sigma)) == pytest.approx(1.0)
    assert float(pt.quarter_circle_density(torch.tensor([3.0], dtype=F64), sigma)) == 0.0


def test_quarter_circle_matches_large_gaussian_matrix():
    gen = _gen(0)
    n, sigma = 400, 0.7
    W = sigma * _randn(gen, n, n) / math.sqrt(n)
    s = _np_sv(W).sort().values
    emp = torch.arange(1, n + 1, dtype=F64) / n
    ks = float((emp - pt.quarter_circle_cdf(s, sigma)).abs().max())
    assert ks < 0.03
    assert float(s[-1]) == pytest.approx(2 * sigma, rel=0.05)
    # negative control: the law with the wrong scale is far off
    assert float((emp - pt.quarter_circle_cdf(s, 1.5 * sigma)).abs().max()) > 0.1


def test_gaussian_skip_condition_limit():
    assert float(pt.gaussian_skip_condition_limit(1.0, 0.25)) == pytest.approx(3.0)
    assert math.isinf(float(pt.gaussian_skip_condition_limit(1.0, 0.5)))
    gen = _gen(1)
    n, sigma = 300, 0.2
    W = sigma * _randn(gen, n, n) / math.sqrt(n)
    kappa = float(pt.condition_numbers(torch.eye(n, dtype=F64) + W))
    assert kappa <= float(pt.gaussian_skip_condition_limit(1.0, sigma)) * 1.1
    assert float(pt.condition_numbers(W)) > 10 * kappa          # kappa(W) ~ n


def test_gaussian_skip_edges_are_critical_values():
    # The edges are lambda(g) at the roots of lambda'(g) = 0, lambda(g) = 1/g^2 - t^2/(g(g-1)).
    for t in (0.1, 0.5, 0.75, 0.95):
        lo, hi = pt.gaussian_skip_edges(1.0, t)
        def lam(g, t=t):
            return 1 / g**2 - t * t / (g * (g - 1))

        def dlam(g, lam=lam):
            return (lam(g + 1e-6) - lam(g - 1e-6)) / 2e-6

        r = math.sqrt(t**4 + 8 * t * t)
        g1, g2 = 4 / (4 - t * t + r), 4 / (4 - t * t - r)
        assert abs(dlam(g1)) < 1e-5 and abs(dlam(g2)) < 1e-5
        assert float(hi) ** 2 == pytest.approx(lam(g1), rel=1e-12)
        assert float(lo) ** 2 == pytest.approx(lam(g2), rel=1e-12)
        assert 0 < float(lo) < 1 < float(hi)


def test_gaussian_skip_edges_limits_and_scaling():
    # small t: the semicircle of the symmetric part, edges 1 -+ sqrt(2) t (not 1 -+ 2 t)
    lo, hi = pt.gaussian_skip_edges(1.0, 1e-4)
    upper_gap, lower_gap = float(hi) - 1, 1 - float(lo)
    assert upper_gap == pytest.approx(math.sqrt(2) * 1e-4, rel=1e-3)
    assert lower_gap == pytest.approx(math.sqrt(2) * 1e-4, rel=1e-3)
    # only sigma / eps matters, and the edges scale with eps
    lo2, hi2 = pt.gaussian_skip_edges(2.0, 1.5)
    lo1, hi1 = pt.gaussian_skip_edges(1.0, 0.75)
    assert float(lo2) == pytest.approx(2 * float(lo1))
    assert float(hi2) == pytest.approx(2 * float(hi1))
    # the threshold is sigma = eps: finite below, inf at and above, blowing up towards it
    ks = [float(pt.gaussian_skip_condition(1.0, s)) for s in (0.5, 0.9, 0.99, 0.999)]
    assert all(math.isfinite(k) for k in ks) and ks == sorted(ks) and ks[-1] > 1e4
    assert math.isinf(float(pt.gaussian_skip_condition(1.0, 1.0)))
    assert math.isinf(float(pt.gaussian_skip_condition(1.0, 1.25)))
    assert float(pt.gaussian_skip_edges(1.0, 1.0)[1]) == pytest.approx(1.5 * math.sqrt(3))
    # exact limit below Weyl's limit bound where that exists
    for s in (0.1, 0.25, 0.4):
        assert float(pt.gaussian_skip_condition(1.0, s)) < \
            float(pt.gaussian_skip_condition_limit(1.0, s))
    with pytest.raises(ValueError, match="eps"):
        pt.gaussian_skip_edges(0.0, 0.5)
    with pytest.raises(ValueError, match="sigma"):
        pt.gaussian_skip_edges(1.0, 0.0)


def test_gaussian_skip_edges_match_large_gaussian_matrix():
    # sigma = 0.6: Weyl's bound is void (2 sigma > 1) but kappa(I + W) stays bounded
    gen = _gen(2)
    n, sigma = 400, 0.6
    W = sigma * _randn(gen, n, n) / math.sqrt(n)
    s = _np_sv(torch.eye(n, dtype=F64) + W)
    lo, hi = pt.gaussian_skip_edges(1.0, sigma)
    assert float(s[0]) == pytest.approx(float(hi), rel=0.03)
    assert float(s[-1]) == pytest.approx(float(lo), rel=0.15)       # soft edge, n^(-2/3)
    # negative control: sigma = 1.25 > eps: the smallest singular value is near 0
    s_big = _np_sv(torch.eye(n, dtype=F64) + 1.25 * W / sigma)
    assert float(s_big[-1]) < 0.02


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "abs"])
def test_activation_diagonal_reproduces_the_activation(act):
    gen = _gen(2)
    pre = _randn(gen, 5, 11)
    mod = nets.activation(act, negative_slope=0.1)
    d = pt.activation_diagonal(pre, act, alpha=0.1)
    assert torch.allclose(d * pre, mod(pre), atol=0, rtol=1e-15)


def _layer_module(arch: str, W: torch.Tensor, b: torch.Tensor, act: str, eps: float):
    n = W.shape[1]
    lin = nn.Linear(n, W.shape[0], dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(W + (eps * torch.eye(n, dtype=F64) if arch == "resnet" else 0))
        lin.bias.copy_(b)
    layer = nn.Sequential(lin, nets.activation(act, negative_slope=0.1))
    if arch == "densenet":
        return nets.DenseBlock([layer]).eval()
    return layer.eval()


@pytest.mark.parametrize("arch", ["convnet", "resnet", "densenet"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "abs"])
def test_local_linear_matches_cpa_affine_map(arch, act):
    gen = _gen(4)
    n, g = 6, (6 if arch != "densenet" else 3)
    eps = 0.7 if arch == "resnet" else 0.0
    W, b = _randn(gen, g, n), _randn(gen, g)
    net = _layer_module(arch, W, b, act, eps)
    x = _randn(gen, 8, n)
    A, _ = cpa.affine_map(net, x)
    Wfull = W + (eps * torch.eye(n, dtype=F64) if arch == "resnet" else 0)
    d = pt.activation_diagonal(x @ Wfull.T + b, act, alpha=0.1)
    J = pt.local_linear(W.expand(8, g, n), d, arch, eps=eps if arch == "resnet" else None)
    assert torch.allclose(J, A.detach(), atol=1e-14)


def test_local_linear_resnet_block_of_the_library():
    # nets.resnet's block x -> x + T2 D T1 x (conv Toeplitz matrices): the Jacobian from cpa
    # equals I + T2 D T1, so Weyl applies with E = T2 D T1.
    net = nets.resnet((1, 4, 4), width=2, blocks=1, seed=0).eval()
    block = net[2]
    x = torch.randn(3, 2, 4, 4, generator=_gen(5), dtype=F64)
    A, _ = cpa.affine_map(block, x)
    conv1, conv2 = block.body[0], block.body[2]
    T1, T2 = cpa.conv_matrix(conv1, (2, 4, 4)), cpa.conv_matrix(conv2, (2, 4, 4))
    pre = x.reshape(3, -1) @ T1.T + conv1.bias.repeat_interleave(16)
    d = pt.activation_diagonal(pre.detach(), "relu")
    E = T2 @ (d[:, :, None] * T1)
    J = torch.eye(32, dtype=F64) + E
    assert torch.allclose(A.detach(), J.detach(), atol=1e-13)
    lo, hi = pt.skip_interval(E.detach(), 1.0)
    s = _np_sv(A.detach())
    assert (s <= hi[:, None] + 1e-10).all() and (s >= lo[:, None] - 1e-10).all()


# ----------------------------------------------------------------------------- matrix-free


@pytest.mark.parametrize("seed", range(5))
def test_range_condition_number_matches_dense(seed):
    gen = _gen(seed)
    M = _randn(gen, 20, 60)
    H = M.T @ M
    kappa, lo, hi = pt.range_condition_number(lambda v: H @ v, 60, steps=60, generator=gen)
    lam = torch.linalg.eigvalsh(H)
    lam = lam[lam > 1e-10 * lam[-1]]
    assert float(hi) == pytest.approx(float(lam[-1]), rel=1e-10)
    assert float(lo) == pytest.approx(float(lam[0]), rel=1e-8)
    assert float(kappa) == pytest.approx(float(lam[-1] / lam[0]), rel=1e-8)


def test_range_condition_number_few_steps_is_a_lower_estimate():
    gen = _gen(9)
    M = _randn(gen, 40, 80)
    H = M.T @ M
    kappa, _, _ = pt.range_condition_number(lambda v: H @ v, 80, steps=5, generator=gen)
    lam = torch.linalg.eigvalsh(H)
    lam = lam[lam > 1e-10 * lam[-1]]
    assert float(kappa) <= float(lam[-1] / lam[0]) * (1 + 1e-12)


def test_range_condition_number_zero_operator():
    kappa, lo, hi = pt.range_condition_number(lambda v: 0 * v, 5, generator=_gen(0))
    assert math.isinf(float(kappa)) and float(hi) == 0


@pytest.mark.parametrize("n,arch", [(4, "convnet"), (64, "convnet"), (8, "resnet"),
                                    (8, "densenet")])
def test_layer_hessian_spectrum_matches_dense(n, arch):
    from dltheory import landscape

    gen = _gen(7)
    X = _randn(gen, n, 1, 6, 6)
    Y = _randn(gen, n, 3)
    if arch == "convnet":
        net = nets.convnet((1, 6, 6), (2, 2), n_out=3, pool=None, seed=1).eval()
    elif arch == "resnet":
        net = nets.resnet((1, 6, 6), width=2, blocks=1, n_out=3, seed=1).eval()
    else:
        net = nets.densenet((1, 6, 6), growth=2, layers=2, width=2, n_out=3, seed=1).eval()
    q = landscape.layer_quadratic(net, 1, X, Y)
    lam = torch.linalg.eigvalsh(q.H)                           # dense reference, [P]
    got = pt.layer_hessian_eigvalsh(q)
    m = got.numel()
    assert m == min(q.n_params, n * 3)
    assert torch.allclose(got, lam[-m:], atol=1e-10 * float(lam[-1]))
    assert float(pt.layer_hessian_condition(q)) == pytest.approx(
        float(q.condition_number()), rel=1e-6)
    F = pt.layer_hessian_factor(q)
    assert torch.allclose(F.T @ F, q.H, atol=1e-12 * float(q.H.abs().max()))
    with pytest.raises(TypeError, match="Quadratic"):
        pt.layer_hessian_eigvalsh(q.H)


# ----------------------------------------------------------------------------- bad input


def test_errors():
    A = torch.randn(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="square"):
        pt.skip_interval(A)
    with pytest.raises(ValueError, match="square"):
        pt.skip_condition_bound(A)
    with pytest.raises(ValueError, match="square"):
        pt.local_linear(A, torch.ones(3, dtype=F64), "resnet")
    bad = torch.eye(3, dtype=F64)
    bad[0, 0] = math.nan
    for f in (pt.singular_values, pt.condition_numbers, pt.spectral_norm, pt.skip_interval):
        with pytest.raises(ValueError, match="NaN or inf"):
            f(bad)
    inf = torch.eye(3, dtype=F64) * math.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        pt.singular_values(inf)
    s = torch.tensor([2.0, 1.0], dtype=F64)
    for alpha in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="alpha"):
            pt.multiplicative_interval(s, alpha)
        with pytest.raises(ValueError, match="alpha"):
            pt.diagonal_condition_bound(2.0, alpha)
        with pytest.raises(ValueError, match="alpha"):
            pt.activation_diagonal(s, "leaky_relu", alpha=alpha)
    with pytest.raises(ValueError, match="eps"):
        pt.skip_interval(torch.eye(2, dtype=F64), -1.0)
    with pytest.raises(ValueError, match="e_norm"):
        pt.weyl_interval(s, -1.0)
    with pytest.raises(ValueError, match="descending"):
        pt.weyl_interval(torch.tensor([1.0, 2.0], dtype=F64), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        pt.interlacing_interval(torch.tensor([1.0, -2.0], dtype=F64), 1)
    with pytest.raises(ValueError, match="deleted"):
        pt.interlacing_interval(s, -1)
    with pytest.raises(TypeError, match="deleted"):
        pt.interlacing_interval(s, 1.5)
    with pytest.raises(ValueError, match="broadcast"):
        pt.weyl_interval(torch.ones(3, 2, dtype=F64), torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="matrix"):
        pt.singular_values(torch.ones(3, dtype=F64))
    with pytest.raises(TypeError, match="floating"):
        pt.singular_values(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        pt.singular_values([[1.0]])
    with pytest.raises(ValueError, match="arch"):
        pt.local_linear(torch.eye(2, dtype=F64), torch.ones(2, dtype=F64), "vgg")
    with pytest.raises(ValueError, match="one entry per row"):
        pt.local_linear(torch.eye(2, dtype=F64), torch.ones(3, dtype=F64), "convnet")
    with pytest.raises(ValueError, match="eps applies"):
        pt.local_linear(torch.eye(2, dtype=F64), torch.ones(2, dtype=F64), "convnet", eps=1.0)
    with pytest.raises(ValueError, match="act"):
        pt.activation_diagonal(s, "gelu")
    with pytest.raises(ValueError, match="sigma"):
        pt.quarter_circle_density(s, 0.0)
    with pytest.raises(ValueError, match="condition number"):
        pt.diagonal_condition_bound(torch.tensor(0.5, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="steps"):
        pt.range_condition_number(lambda v: v, 3, steps=0)
    with pytest.raises(TypeError, match="matvec"):
        pt.range_condition_number("H", 3)
    with pytest.raises(ValueError, match="columns of B"):
        pt.concat_singular_values(s, 1)
    with pytest.raises(ValueError, match="rtol"):
        pt.condition_numbers(torch.eye(2, dtype=F64), rtol=2.0)


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_checks_pass_at_tiny_size():
    from benchmarks import bench_spectra

    for b in bench_spectra.benchmarks("cpu", tiny=True):
        assert b.check is not None
        assert b.check() is not False
        b.candidate()
        b.baseline()

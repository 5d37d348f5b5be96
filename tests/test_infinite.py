"""Tests for dltheory.infinite (infinite-width NNGP / NTK recursions, fixed points, predictions).

Independent references: Monte-Carlo estimates of the 2x2 Gaussian expectations (checked
within 6 standard errors), numerical quadrature (Gauss-Hermite) of the same expectations,
closed-form values (ReLU fixed point ``q* = sb2/(1 - sw2/2)``, arc-cosine kernel at
``c = 0``), a naive per-pair python loop of the recursion, the empirical NTK of wide finite
networks in the NTK parametrization (``kernels.ntk``, method ``"generic"``), a matrix
exponential (``torch.linalg.matrix_exp``) and a gradient-descent loop for the linearized
dynamics.
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

from dltheory import infinite as inf
from dltheory import kernels
from dltheory.errors import DLTheoryError, InputError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

F64 = torch.float64


def _x(shape, seed=0, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _phi(act, u):
    return torch.relu(u) if act == "relu" else torch.erf(u)


def _dphi(act, u):
    return (u > 0).to(u.dtype) if act == "relu" else 2 / math.sqrt(math.pi) * torch.exp(-u * u)


def _relu_expect(k11, k12, k22, deriv=False):
    """E[f(u) f(v)] for f = relu (or its step derivative) by adaptive 1-D quadrature over
    u > 0 of the conditional mean of f(v) given u (scipy.integrate.quad)."""
    from scipy import integrate
    from scipy.stats import norm

    a = math.sqrt(k11)
    b = k12 / a
    s = math.sqrt(max(k22 - b * b, 1e-300))

    def integrand(z):                      # u = a z, v | z ~ N(b z, s^2)
        m = b * z
        if deriv:
            return norm.pdf(z) * norm.cdf(m / s)
        return norm.pdf(z) * a * z * (m * norm.cdf(m / s) + s * norm.pdf(m / s))

    return integrate.quad(integrand, 0, np.inf, epsabs=1e-14, epsrel=1e-13)[0]


def _erf_dd_expect(k11, k12, k22):
    """E[erf'(u) erf'(v)] by adaptive 1-D quadrature over u of erf'(u) times the conditional
    mean E[erf'(v) | u] = (2/sqrt(pi)) exp(-m^2/(1 + 2 s^2)) / sqrt(1 + 2 s^2), the Gaussian
    integral of exp(-(m + s z)^2) (v | u ~ N(m, s^2))."""
    from scipy import integrate
    from scipy.stats import norm

    a = math.sqrt(k11)
    b = k12 / a
    s2 = max(k22 - b * b, 0.0)
    c = 2 / math.sqrt(math.pi)

    def f(z1):
        m = b * z1
        return norm.pdf(z1) * c * math.exp(-a * a * z1 * z1) * c * \
            math.exp(-m * m / (1 + 2 * s2)) / math.sqrt(1 + 2 * s2)

    return integrate.quad(f, -np.inf, np.inf, epsabs=1e-15, epsrel=1e-13)[0]


def _gh_grid(k11, k12, k22, n):
    """Weights ``W`` and points ``(u, v)`` of an ``n x n`` Gauss-Hermite grid for the centred
    Gaussian pair of covariance ``[[k11, k12], [k12, k22]]`` (on its Cholesky factor)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    a = math.sqrt(k11)
    b = k12 / a
    c = math.sqrt(max(k22 - b * b, 0.0))
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    return np.outer(w, w), a * Z1, b * Z1 + c * Z2


def _gh_expect(act, k11, k12, k22, deriv=False, n=120):
    """E[f(u) f(v)] by 2-D Gauss-Hermite quadrature on the Cholesky factor (float64, numpy);
    ReLU by adaptive quadrature (:func:`_relu_expect`), as its kink defeats Gauss-Hermite."""
    if act == "relu" and k22 - k12 * k12 / k11 > 1e-12 * k22:
        return _relu_expect(k11, k12, k22, deriv)
    W, u, v = _gh_grid(k11, k12, k22, n)
    f = (lambda t: 2 / math.sqrt(math.pi) * np.exp(-t * t)) if (deriv and act == "erf") else \
        (lambda t: (t > 0).astype(float)) if deriv else \
        (lambda t: np.maximum(t, 0)) if act == "relu" else \
        (lambda t: np.vectorize(math.erf)(t))
    return float((W * f(u) * f(v)).sum())


def _naive(act, X1, X2, sw2, sb2, depth):
    """The recursion pair by pair, with the expectations by Gauss-Hermite quadrature."""
    d = X1.shape[1]
    N1, N2 = X1.shape[0], X2.shape[0]
    K = torch.zeros(N1, N2, dtype=F64)
    T = torch.zeros(N1, N2, dtype=F64)
    for i in range(N1):
        for j in range(N2):
            k11 = sw2 * float(X1[i] @ X1[i]) / d + sb2
            k22 = sw2 * float(X2[j] @ X2[j]) / d + sb2
            k12 = sw2 * float(X1[i] @ X2[j]) / d + sb2
            t12 = k12
            for _ in range(depth - 1):
                e = _gh_expect(act, k11, k12, k22)
                ed = _gh_expect(act, k11, k12, k22, deriv=True)
                n11 = sw2 * _gh_expect(act, k11, k11, k11) + sb2
                n22 = sw2 * _gh_expect(act, k22, k22, k22) + sb2
                k12 = sw2 * e + sb2
                t12 = k12 + sw2 * ed * t12
                k11, k22 = n11, n22
            K[i, j], T[i, j] = k12, t12
    return K, T


# ---------------------------------------------------------------- closed forms vs Monte Carlo

@pytest.mark.parametrize("act", ["relu", "erf"])
def test_layer_step_matches_monte_carlo(act):
    """One step of the closed forms vs a Monte-Carlo mean over 4e6 Gaussian pairs, within
    6 standard errors, for several 2x2 covariances (correlations -0.9 ... 0.99)."""
    g = torch.Generator().manual_seed(1)
    n = 4_000_000
    for k11, k22, rho in [(1.0, 1.0, 0.5), (0.3, 2.0, -0.9), (1.5, 0.7, 0.99), (4.0, 4.0, 0.0)]:
        k12 = rho * math.sqrt(k11 * k22)
        z1 = torch.randn(n, generator=g, dtype=F64)
        z2 = torch.randn(n, generator=g, dtype=F64)
        u = math.sqrt(k11) * z1
        v = k12 / math.sqrt(k11) * z1 + math.sqrt(k22 - k12**2 / k11) * z2
        sw2, sb2 = 1.7, 0.2
        for deriv in (False, True):
            f = (_dphi if deriv else _phi)(act, u) * (_dphi if deriv else _phi)(act, v)
            mc, se = f.mean().item(), f.std().item() / math.sqrt(n)
            K = torch.tensor([[k12]], dtype=F64)
            T = torch.ones(1, 1, dtype=F64)
            kn, _, _, tn = inf.layer_step(act, K.clone(), torch.tensor([k11], dtype=F64),
                                          torch.tensor([k22], dtype=F64), T.clone(), sw2, sb2)
            closed = ((tn - kn).item() / sw2) if deriv else (kn.item() - sb2) / sw2
            assert abs(closed - mc) <= 6 * se + 1e-12, (act, k11, k22, rho, deriv, closed, mc)


def test_known_closed_form_values():
    # ReLU, orthogonal unit inputs: E[relu(u) relu(v)] = 1/(2 pi), E[1{u>0}1{v>0}] = 1/4
    K = torch.zeros(1, 1, dtype=F64)
    one = torch.ones(1, dtype=F64)
    kn, k1, _, tn = inf.layer_step("relu", K, one, one, torch.ones(1, 1, dtype=F64), 1.0, 0.0)
    assert abs(kn.item() - 1 / (2 * math.pi)) < 1e-15
    assert abs((tn - kn).item() - 0.25) < 1e-15
    assert abs(k1.item() - 0.5) < 1e-15
    # erf on the diagonal: E[erf(u)^2] = (2/pi) arcsin(2q/(1+2q)); q = 1/2 -> (2/pi) pi/6
    q = torch.tensor([0.5], dtype=F64)
    kn, k1, _, tn = inf.layer_step("erf", torch.tensor([[0.5]], dtype=F64), q, q,
                                   torch.ones(1, 1, dtype=F64), 1.0, 0.0, same=True)
    assert abs(k1.item() - 1 / 3) < 1e-15 and abs(kn.item() - 1 / 3) < 1e-15
    # E[erf'(u)^2] = (4/pi)/sqrt(1 + 4q) = (4/pi)/sqrt(3)
    assert abs((tn - kn).item() - 4 / math.pi / math.sqrt(3)) < 1e-14


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_recursion_matches_naive_quadrature_loop(act):
    X1, X2 = _x((3, 4), 1), _x((2, 4), 2)
    K, T = inf.nngp_ntk(X1, X2, act=act, sw2=1.6, sb2=0.3, depth=4)
    Kn, Tn = _naive(act, X1, X2, 1.6, 0.3, 4)
    tol = 1e-9
    assert ((K - Kn).abs() / Kn.abs()).max() < tol
    assert ((T - Tn).abs() / Tn.abs()).max() < tol


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("cross", [False, True])
def test_row_blocks_do_not_change_the_result(act, cross, monkeypatch):
    """The recursion runs on row blocks (``BLOCK_ENTRIES``): blocks of 1, 2 and 3 rows (so
    the last block is ragged, and the diagonal falls at every offset) give the one-block
    result, for batched settings and several depths; and so does a step-by-step loop of
    ``layer_step`` on the full matrices."""
    X1 = _x((11, 5), 3)
    X2 = _x((7, 5), 4) if cross else None
    sw2 = torch.tensor([[0.7], [2.5]], dtype=F64)
    sb2 = torch.tensor([0.0, 0.3, 1.1], dtype=F64)
    monkeypatch.setattr(inf, "BLOCK_ENTRIES", 10**6)
    whole = inf.nngp_ntk(X1, X2, act=act, sw2=sw2, sb2=sb2, depth=[1, 4, 2, 6])
    n2 = 7 if cross else 11
    for rows in (1, 2, 3):
        monkeypatch.setattr(inf, "BLOCK_ENTRIES", rows * n2)
        blocked = inf.nngp_ntk(X1, X2, act=act, sw2=sw2, sb2=sb2, depth=[1, 4, 2, 6])
        assert torch.allclose(blocked.nngp, whole.nngp, rtol=1e-14, atol=0)
        assert torch.allclose(blocked.ntk, whole.ntk, rtol=1e-14, atol=0)
    Y = X1 if X2 is None else X2
    k12 = (sw2[..., None, None] * (X1 @ Y.T) / 5 + sb2[:, None, None]).contiguous()
    k1 = sw2[..., None] * (X1 * X1).sum(1) / 5 + sb2[:, None]
    k2 = sw2[..., None] * (Y * Y).sum(1) / 5 + sb2[:, None]
    if not cross:
        k12.diagonal(dim1=-2, dim2=-1).copy_(k1)
    t12 = k12.clone()
    for _ in range(5):
        k12, k1, k2, t12 = inf.layer_step(act, k12, k1, k2, t12, sw2, sb2, same=not cross)
    assert torch.allclose(k12, whole.nngp[..., 3, :, :], rtol=1e-13, atol=0)
    assert torch.allclose(t12, whole.ntk[..., 3, :, :], rtol=1e-13, atol=0)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["relu", "erf"]), st.floats(0.2, 4.0), st.floats(0.0, 1.0),
       st.integers(1, 6), st.integers(0, 10_000))
def test_batched_depths_and_settings_match_single_runs(act, sw2, sb2, depth, seed):
    X = _x((5, 3), seed)
    sws = torch.tensor([sw2, 0.5 * sw2 + 0.1], dtype=F64)
    out = inf.nngp_ntk(X, act=act, sw2=sws, sb2=sb2, depth=[depth, 1])
    assert out.ntk.shape == (2, 2, 5, 5)
    for s in range(2):
        single = inf.nngp_ntk(X, act=act, sw2=float(sws[s]), sb2=sb2, depth=depth)
        torch.testing.assert_close(out.ntk[s, 0], single.ntk, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(out.nngp[s, 0], single.nngp, rtol=1e-13, atol=1e-15)
        first = sws[s] * X @ X.T / 3 + sb2
        torch.testing.assert_close(out.ntk[s, 1], first, rtol=1e-13, atol=1e-15)
    # symmetric, PSD, and the cross kernel of (X, X) equals the same-set kernel
    K = out.ntk[0, 0]
    torch.testing.assert_close(K, K.T, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(K).min() > -1e-10 * K.abs().max()
    cross = inf.nngp_ntk(X, X.clone(), act=act, sw2=sw2, sb2=sb2, depth=depth)
    # (ReLU carries sin^2(theta/2), so coincident points are as accurate as the others)
    torch.testing.assert_close(cross.ntk, K, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_empirical_ntk_of_wide_networks_converges(act):
    """Mean relative error of the empirical NTK (kernels.ntk, generic path) over 3 seeds:
    smaller at width 1024 than at width 64 by about sqrt(16) = 4 (at least 2.5x), and the
    wide one within 10%."""
    X = _x((4, 3), 5)
    depth, sw2, sb2 = 3, 1.5, 0.2
    T = inf.nngp_ntk(X, act=act, sw2=sw2, sb2=sb2, depth=depth).ntk
    errs = {}
    for width in (64, 1024):
        e = []
        for seed in range(3):
            net = inf.ntk_mlp(3, width, depth, act, sw2, sb2, seed=seed)
            Te = kernels.ntk(net, X, method="generic")[..., 0, 0]
            e.append(((Te - T).norm() / T.norm()).item())
        errs[width] = sum(e) / len(e)
    assert errs[1024] < 0.1
    assert errs[64] / errs[1024] > 2.5


def test_ntk_mlp_forward_variance_matches_nngp():
    """Output variance over 400 networks vs K^L (NNGP), within 20% (MC error ~ 7%)."""
    X = _x((2, 3), 7)
    K = inf.nngp_ntk(X, act="erf", sw2=2.0, sb2=0.1, depth=3).nngp
    outs = torch.stack([inf.ntk_mlp(3, 256, 3, "erf", 2.0, 0.1, seed=s)(X)[:, 0].detach()
                        for s in range(400)])
    emp = outs.T @ outs / outs.shape[0]
    assert ((emp.diagonal() - K.diagonal()).abs() / K.diagonal()).max() < 0.2


# ------------------------------------------------------------------------- fixed points

def test_relu_fixed_point_closed_form():
    fp = inf.fixed_point("relu", torch.tensor([1.0, 1.5, 2.5], dtype=F64), 0.2)
    torch.testing.assert_close(fp.q[:2], torch.tensor([0.2 / 0.5, 0.2 / 0.25], dtype=F64))
    assert math.isinf(fp.q[2].item())
    torch.testing.assert_close(fp.chi_1, torch.tensor([0.5, 0.75, 1.25], dtype=F64))
    assert (fp.c == 1).all() and math.isinf(fp.xi_star[0].item())
    assert (inf.critical_sw2("relu", torch.tensor([0.1, 1.0])) == 2).all()


@settings(max_examples=30, deadline=None)
@given(st.floats(0.3, 8.0), st.floats(0.01, 2.0))
def test_erf_fixed_point_is_a_fixed_point_of_the_recursion(sw2, sb2):
    fp = inf.fixed_point("erf", sw2, sb2)
    q, c = fp.q.item(), fp.c.item()
    # q* is a fixed point of the diagonal map: iterate the library's own depth recursion on
    # an input with K^1(x, x) = q* and check it stays (independent of the Newton solver)
    qn = sw2 * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q)) + sb2
    assert abs(qn - q) <= 1e-12 * q
    cn = (sw2 * (2 / math.pi) * math.asin(2 * q * c / (1 + 2 * q)) + sb2) / q
    assert abs(cn - c) <= 1e-10
    # chi_1 by quadrature of sw2 E[phi'(u)^2]
    chi = sw2 * _erf_dd_expect(q, q, q)
    assert abs(chi - fp.chi_1.item()) < 1e-9 * chi
    if fp.chi_1 < 1 - 1e-3:
        assert c == 1.0
        assert abs(fp.chi_c.item() - fp.chi_1.item()) < 1e-12
    elif fp.chi_1 > 1 + 1e-3:
        assert c < 1 and fp.chi_c < 1
        chic = sw2 * _erf_dd_expect(q, q * c, q)
        assert abs(chic - fp.chi_c.item()) < 1e-9 * chic
        assert abs(fp.xi_star.item() + 1 / math.log(fp.chi_c.item() / fp.chi_1.item())) < 1e-9


def test_deep_kernel_converges_to_the_fixed_point():
    """Off-diagonal of a deep erf kernel -> q* c* (chaotic) and diagonal -> q*."""
    X = _x((4, 6), 3)
    for sw2 in (1.0, 4.0):
        fp = inf.fixed_point("erf", sw2, 0.1)
        K = inf.nngp_ntk(X, act="erf", sw2=sw2, sb2=0.1, depth=300).nngp
        off = K[~torch.eye(4, dtype=torch.bool)]
        assert (K.diagonal() - fp.q).abs().max() < 1e-9
        assert (off - fp.q * fp.c).abs().max() < 1e-8


def test_critical_sw2_erf():
    sb2 = torch.tensor([0.05, 0.5], dtype=F64)
    crit = inf.critical_sw2("erf", sb2)
    for s in (0.999, 1.001):
        chi = inf.fixed_point("erf", crit * s, sb2).chi_1
        assert ((chi < 1) if s < 1 else (chi > 1)).all()


# ------------------------------------------------------------------------- predictions

def _psd(n, seed):
    A = _x((n, n), seed)
    return A @ A.T / n + 0.1 * torch.eye(n, dtype=F64)


def test_linearized_matches_matrix_exponential_and_gd_loop():
    K = _psd(6, 0)
    Kt = _x((3, 6), 1)
    Y = _x((6, 2), 2)
    lr, t = 0.7, 3.5
    f, ft = inf.linearized(K, Y, lr=lr, t=t, K_test_train=Kt)
    E = torch.eye(6, dtype=F64) - torch.linalg.matrix_exp(-lr * t * K)
    torch.testing.assert_close(f, E @ Y, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ft, Kt @ torch.linalg.solve(K, E @ Y), rtol=1e-10, atol=1e-12)
    # discrete: a plain GD loop on (1/2)|f - Y|^2 with frozen kernel
    fd, ftd = inf.linearized(K, Y, lr=0.5, t=7, K_test_train=Kt, discrete=True)
    fx, fz = torch.zeros_like(Y), torch.zeros(3, 2, dtype=F64)
    for _ in range(7):
        r = fx - Y
        fx, fz = fx - 0.5 * K @ r, fz - 0.5 * Kt @ r
    torch.testing.assert_close(fd, fx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ftd, fz, rtol=1e-10, atol=1e-12)
    # batched learning rates, and long time -> the mean predictor
    Kb = torch.stack([K, 2 * K])
    fb, ftb = inf.linearized(Kb, Y, lr=torch.tensor([1.0, 0.5], dtype=F64), t=1e4,
                             K_test_train=torch.stack([Kt, 2 * Kt]))
    torch.testing.assert_close(fb, torch.stack([Y, Y]), rtol=1e-9, atol=1e-9)
    mp = Kt @ torch.linalg.solve(K, Y)
    torch.testing.assert_close(ftb[0], mp, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inf.mean_predictor(Kt, K, Y), mp, rtol=1e-12, atol=1e-12)
    # a singular kernel: zero eigenvalue -> gain lr t, no NaN
    Ks = torch.zeros(2, 2, dtype=F64)
    fs, fts = inf.linearized(Ks, Y[:2], lr=1.0, t=2.0, K_test_train=torch.ones(1, 2,
                                                                               dtype=F64))
    assert torch.isfinite(fts).all() and (fs == 0).all()


# ------------------------------------------------------------------- convolutional networks

def _gh2(act, k11, k12, k22, n=120):
    """E[phi phi] and E[phi' phi'] by 2-D Gauss-Hermite quadrature (erf only: smooth)."""
    from scipy.special import erf

    W, u, v = _gh_grid(k11, k12, k22, n)
    dd = 4 / math.pi * np.exp(-u * u - v * v)
    return float((W * erf(u) * erf(v)).sum()), float((W * dd).sum())


def _naive_cnn(X, sw2, sb2, depth, readout):
    """The erf CNN recursion over every pair of inputs and positions, with python loops over
    the 3x3 offsets (circular) and the expectations by quadrature."""
    N, C, H, W = X.shape
    x = X.numpy()
    pos = [(i, j) for i in range(H) for j in range(W)]
    offs = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]

    def sh(p, d):
        return ((p[0] + d[0]) % H, (p[1] + d[1]) % W)

    keys = [(n, m, p, q) for n in range(N) for m in range(N) for p in pos for q in pos]
    K = {(n, m, p, q): sw2 * sum(float(x[n, :, sh(p, d)[0], sh(p, d)[1]]
                                       @ x[m, :, sh(q, d)[0], sh(q, d)[1]]) for d in offs)
         / (9 * C) + sb2 for n, m, p, q in keys}
    T = dict(K)
    for layer in range(2, depth + 1):
        F = {k: _gh2("erf", K[k[0], k[0], k[2], k[2]], K[k], K[k[1], k[1], k[3], k[3]])
             for k in keys}
        if layer == depth:
            pairs = [(p, p) for p in pos] if readout == "flatten" else \
                [(p, q) for p in pos for q in pos]
            Ko = np.zeros((N, N))
            To = np.zeros((N, N))
            for n in range(N):
                for m in range(N):
                    Ko[n, m] = sw2 * np.mean([F[n, m, p, q][0] for p, q in pairs]) + sb2
                    To[n, m] = Ko[n, m] + sw2 * np.mean([F[n, m, p, q][1] * T[n, m, p, q]
                                                         for p, q in pairs])
            return Ko, To
        K2, T2 = {}, {}
        for n, m, p, q in keys:
            ks = [(n, m, sh(p, d), sh(q, d)) for d in offs]
            K2[n, m, p, q] = sw2 * sum(F[k][0] for k in ks) / 9 + sb2
            T2[n, m, p, q] = K2[n, m, p, q] + sw2 * sum(F[k][1] * T[k] for k in ks) / 9
        K, T = K2, T2
    raise AssertionError("depth >= 2 expected")


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_cnn_kernels_match_a_naive_loop_over_positions(readout):
    X = _x((2, 2, 3, 3), 5)
    Kn, Tn = _naive_cnn(X, 1.7, 0.3, 3, readout)
    got = inf.cnn_nngp_ntk(X, act="erf", sw2=1.7, sb2=0.3, depth=3, readout=readout)
    # tolerance: the quadrature of E[erf' erf'] (a narrow Gaussian on the diagonal) is good
    # to about 1e-9
    assert np.allclose(got.nngp.numpy(), Kn, rtol=1e-10, atol=0)
    assert np.allclose(got.ntk.numpy(), Tn, rtol=1e-8, atol=0)


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_cnn_on_one_pixel_images_is_the_fully_connected_kernel(act, readout):
    """On 1x1 images every 3x3 offset reads the one pixel: a convolution is a dense layer."""
    X = _x((5, 3), 6)
    cnn = inf.cnn_nngp_ntk(X[:, :, None, None], act=act, sw2=1.3, sb2=0.2, depth=[1, 2, 5],
                           readout=readout)
    fc = inf.nngp_ntk(X, act=act, sw2=1.3, sb2=0.2, depth=[1, 2, 5])
    assert torch.allclose(cnn.nngp, fc.nngp, rtol=1e-12, atol=0)
    assert torch.allclose(cnn.ntk, fc.ntk, rtol=1e-12, atol=0)


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_cnn_kernels_are_the_limit_of_wide_networks(act, readout):
    """The empirical NTK of finite CNNs (:func:`ntk_cnn`, 2 seeds) approaches
    ``cnn_nngp_ntk``: relative error below 0.06 at 1024 channels and at least 2.5x smaller
    than at 64 (the width^-1/2 rate gives 4x)."""
    X = _x((4, 2, 4, 4), 7)
    T = inf.cnn_nngp_ntk(X, act=act, sw2=1.5, sb2=0.2, depth=3, readout=readout).ntk
    err = {}
    for width in (64, 1024):
        errs = []
        for seed in range(2):
            net = inf.ntk_cnn(2, (4, 4), width, 3, act, 1.5, 0.2, readout=readout, seed=seed)
            Te = kernels.ntk(net, X, method="generic")[..., 0, 0]
            errs.append(float((Te - T).norm() / T.norm()))
        err[width] = sum(errs) / 2
    assert err[1024] < 0.06 and err[64] / err[1024] > 2.5, err


def test_cnn_nngp_is_the_covariance_of_wide_network_outputs():
    """Output covariance over 8000 readout units of a 1024-channel network vs the NNGP:
    within 5% (the Monte-Carlo error of the readout is about sqrt(2/8000) = 1.6% per entry,
    the finite width adds about as much)."""
    X = _x((3, 1, 4, 4), 8)
    for readout in ("flatten", "gap"):
        net = inf.ntk_cnn(1, (4, 4), 1024, 3, "erf", 1.5, 0.2, readout=readout, out=8000,
                          seed=1)
        with torch.no_grad():
            f = net(X)
        K = inf.cnn_nngp_ntk(X, act="erf", sw2=1.5, sb2=0.2, depth=3, readout=readout).nngp
        assert float((f @ f.T / f.shape[1] - K).norm() / K.norm()) < 0.05


READOUT_KINDS = ("flatten", "gap")


def _box9(A):
    """The sum over the 3x3 offsets, circular, by ``torch.roll`` (independent of the
    library's :class:`_Box`)."""
    return sum(A.roll((-i, -j), (-2, -1)) for i in (-1, 0, 1) for j in (-1, 0, 1))


def _cnn_diagonal_recursion(x, sw2, sb2, depth):
    """ReLU CNN kernels of an image ``x [C, H, W]`` with itself at correlation 1, depths
    ``1 .. depth``: the variances ``k^{l+1}(p) = sw2 (1/9) sum_delta k^l(p + delta) / 2 +
    sb2`` (``E[relu(u)^2] = k/2``, ``E[relu'(u)^2] = 1/2``), read out at ``p`` (flatten;
    also gap when every patch of ``x`` is the same, as in a constant image)."""
    g = (x * x).sum(0) / x.shape[0]
    K, T = [sw2 * g.mean() + sb2], [sw2 * g.mean() + sb2]
    k = sw2 * _box9(g) / 9 + sb2
    t = k
    for _ in range(depth - 1):
        K.append(sw2 * (k / 2).mean() + sb2)
        T.append(K[-1] + sw2 * (t / 2).mean())
        k = sw2 * _box9(k / 2) / 9 + sb2
        t = k + sw2 * _box9(t / 2) / 9
    return torch.stack(K), torch.stack(T)


@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 9, 8)])
@pytest.mark.parametrize("sb2", [0.0, 0.1, 3.0])
def test_cnn_relu_kernel_of_duplicate_images_is_the_diagonal_recursion(shape, sb2):
    """Copies of an image at other indices (and, without bias, its double: the ReLU kernel
    is 1-homogeneous), within ``X1`` and with ``X2 = X1.clone()``: the flatten kernel of a
    copy is the diagonal recursion and the pooled one that of the image with itself, at
    every depth within 1e-12 (``arccos`` of a correlation of ``1 - eps`` was off by up to
    1e-9). (4x5 images take the product with the circulant matrix, 9x8 the shifted sums.)"""
    X = _x((6, *shape), 12)
    X = torch.cat([X, X[1:2], 2 * X[2:3] if sb2 == 0 else X[2:3]])    # rows 6, 7: copies
    sw2, depth = 1.7, 6
    pairs = ((1, 6), (6, 1), (2, 7), (7, 2))
    for readout in READOUT_KINDS:
        kw = dict(act="relu", sw2=sw2, sb2=sb2, depth=list(range(1, depth + 1)),
                  readout=readout)
        same = inf.cnn_nngp_ntk(X, **kw)
        cross = inf.cnn_nngp_ntk(X, X.clone(), **kw)
        for i, j in pairs:
            scale = 2.0 if (sb2 == 0 and 7 in (i, j)) else 1.0
            a = min(i, j)
            if readout == "flatten":
                want = _cnn_diagonal_recursion(X[a], sw2, sb2, depth)
            else:
                want = same.nngp[:, a, a], same.ntk[:, a, a]
            for out in (same, cross):
                for got, ref in zip((out.nngp[:, i, j], out.ntk[:, i, j]), want, strict=True):
                    torch.testing.assert_close(got, scale * ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(cross.nngp, same.nngp, rtol=1e-12, atol=0)
        torch.testing.assert_close(cross.ntk, same.ntk, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 9, 8)])
def test_cnn_relu_pooled_kernel_of_constant_images_and_translates(shape):
    """A constant image: every pair of patches is coincident, so its pooled kernel (with
    itself, and with 3 times itself without bias) is the diagonal recursion, within 1e-12
    (was 2e-8). An image and its circular translate: the pooled kernel is that of the image
    with itself (pooling averages over every pair of positions), within 1e-12 (was 7e-10)."""
    C, H, W = shape
    c = _x((C, 1, 1), 13).expand(C, H, W)
    y = _x(shape, 14)
    X = torch.stack([c, 3 * c, y, y.roll((1, 2), (1, 2))])
    sw2, depth = 1.7, 6
    for sb2 in (0.0, 0.4):
        out = inf.cnn_nngp_ntk(X, act="relu", sw2=sw2, sb2=sb2,
                               depth=list(range(1, depth + 1)), readout="gap")
        for got, ref in zip(out, _cnn_diagonal_recursion(c, sw2, sb2, depth), strict=True):
            torch.testing.assert_close(got[:, 0, 0], ref, rtol=1e-12, atol=0)
            if sb2 == 0:
                torch.testing.assert_close(got[:, 0, 1], 3 * ref, rtol=1e-12, atol=0)
            torch.testing.assert_close(got[:, 2, 3], got[:, 2, 2], rtol=1e-12, atol=0)
            torch.testing.assert_close(got[:, 3, 2], got[:, 3, 3], rtol=1e-12, atol=0)


def _mp_cnn_relu(x, y, sw2, sb2, depth):
    """The ReLU CNN recursion for one pair of images ``[C, H, W]`` (nested lists) in
    60-digit arithmetic (mpmath), over every pair of positions ``(p, q)`` with
    ``theta = acos`` of the correlation: ``{readout: [(K^l, Theta^l)]}``, ``l = 1 ..
    depth``, flatten (the mean over ``p = q``) and gap (over every ``(p, q)``)."""
    mp = pytest.importorskip("mpmath")
    ctx = mp.mp.clone()
    ctx.dps = 60
    w, b = ctx.mpf(sw2), ctx.mpf(sb2)
    C, H, W = len(x), len(x[0]), len(x[0][0])
    pos = [(i, j) for i in range(H) for j in range(W)]
    offs = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]

    def at(p, d):
        return (p[0] + d[0]) % H, (p[1] + d[1]) % W

    def dot(u, v, p, q):
        return ctx.fsum(ctx.mpf(u[c][p[0]][p[1]]) * ctx.mpf(v[c][q[0]][q[1]])
                        for c in range(C)) / C

    def conv(u, v, p, q):
        return w * ctx.fsum(dot(u, v, at(p, d), at(q, d)) for d in offs) / 9 + b

    kx = {p: conv(x, x, p, p) for p in pos}
    ky = {p: conv(y, y, p, p) for p in pos}
    K = {(p, q): conv(x, y, p, q) for p in pos for q in pos}
    T = dict(K)
    pairs = {"flatten": [(p, p) for p in pos], "gap": list(K)}
    out = {name: [(w * ctx.fsum(dot(x, y, *pq) for pq in P) / len(P) + b,) * 2]
           for name, P in pairs.items()}
    for layer in range(2, depth + 1):
        F, Fd = {}, {}
        for (p, q), k in K.items():
            s = ctx.sqrt(kx[p] * ky[q])
            th = ctx.acos(max(min(k / s, 1), -1))
            F[p, q] = s * (ctx.sin(th) + (ctx.pi - th) * ctx.cos(th)) / (2 * ctx.pi)
            Fd[p, q] = (ctx.pi - th) / (2 * ctx.pi) * T[p, q]
        for name, P in pairs.items():
            k_out = w * ctx.fsum(F[pq] for pq in P) / len(P) + b
            out[name].append((k_out, k_out + w * ctx.fsum(Fd[pq] for pq in P) / len(P)))
        if layer == depth:
            break
        K = {(p, q): w * ctx.fsum(F[at(p, d), at(q, d)] for d in offs) / 9 + b
             for p, q in K}
        T = {(p, q): K[p, q] + w * ctx.fsum(Fd[at(p, d), at(q, d)] for d in offs) / 9
             for p, q in K}
        kx = {p: w * ctx.fsum(kx[at(p, d)] for d in offs) / 18 + b for p in pos}
        ky = {p: w * ctx.fsum(ky[at(p, d)] for d in offs) / 18 + b for p in pos}
    return out


@pytest.mark.parametrize("sb2", [0.0, 0.1, 2.0])
def test_cnn_relu_kernel_of_near_coincident_images_matches_60_digit_arithmetic(sb2):
    """Pairs ``x, x + delta v`` (``delta = 1e-3 .. 1e-12``, where ``arccos`` of the
    correlation lost up to half the digits: errors up to 5e-9), a copy, ``2x``, ``-x``, a
    translate and an unrelated image, 2x3x4 images: every depth's flatten and pooled NNGP
    and NTK within 1e-13 of the mpmath value (relative; where the value vanishes, as for
    ``-x`` without bias, absolute in units of 1e-3 of the largest value of that depth)."""
    x, v = _x((2, 3, 4), 15), _x((2, 3, 4), 16)
    ys = [x + d * v for d in (1e-3, 1e-6, 1e-9, 1e-12)] + \
        [x.clone(), 2 * x, -x, x.roll(1, 2), v]
    sw2, depth = 1.7, 5
    refs = [_mp_cnn_relu(x.tolist(), y.tolist(), sw2, sb2, depth) for y in ys]
    for readout in READOUT_KINDS:
        out = inf.cnn_nngp_ntk(torch.stack([x] * len(ys)), torch.stack(ys), act="relu",
                               sw2=sw2, sb2=sb2, depth=list(range(1, depth + 1)),
                               readout=readout)
        for layer in range(depth):
            for kern, which in ((out.nngp, 0), (out.ntk, 1)):
                want = [float(ref[readout][layer][which]) for ref in refs]
                floor = 1e-3 * max(abs(v) for v in want)
                for j, w in enumerate(want):
                    got = float(kern[layer, j, j])
                    assert abs(got - w) <= 1e-13 * max(abs(w), floor), \
                        (readout, sb2, j, layer, which, got, w)


def test_cnn_bad_input_errors():
    X = _x((2, 1, 3, 3), 9)
    with pytest.raises(inf.InfiniteWidthError, match="readout"):
        inf.cnn_nngp_ntk(X, act="erf", sw2=1.0, sb2=0.1, depth=2, readout="max")
    with pytest.raises(InputError, match=r"images \[N, C, H, W\]"):
        inf.cnn_nngp_ntk(X[:, 0], act="erf", sw2=1.0, sb2=0.1, depth=2, readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="one setting"):
        inf.cnn_nngp_ntk(X, act="erf", sw2=torch.tensor([1.0, 2.0]), sb2=0.1, depth=2,
                         readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="sw2"):
        inf.cnn_nngp_ntk(X, act="erf", sw2=-1.0, sb2=0.1, depth=2, readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="depth"):
        inf.cnn_nngp_ntk(X, act="erf", sw2=1.0, sb2=0.1, depth=0, readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="same shape|one shape"):
        inf.cnn_nngp_ntk(X, _x((2, 1, 4, 4), 1), act="erf", sw2=1.0, sb2=0.1, depth=2,
                         readout="gap")
    with pytest.raises(InputError, match="NaN"):
        inf.cnn_nngp_ntk(X * math.nan, act="erf", sw2=1.0, sb2=0.1, depth=2, readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="unsupported activation"):
        inf.cnn_nngp_ntk(X, act="tanh", sw2=1.0, sb2=0.1, depth=2, readout="gap")
    with pytest.raises(inf.InfiniteWidthError, match="readout"):
        inf.ntk_cnn(1, (3, 3), 4, 2, "erf", 1.0, 0.1, readout="avg")


# -------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,match", [
    (dict(act="tanh", sw2=1.0, sb2=0.1, depth=2), "unsupported activation"),
    (dict(act="relu", sw2=0.0, sb2=0.1, depth=2), "sw2"),
    (dict(act="relu", sw2=-1.0, sb2=0.1, depth=2), "variance"),
    (dict(act="relu", sw2=1.0, sb2=-0.1, depth=2), "sb2"),
    (dict(act="erf", sw2=1.0, sb2=0.1, depth=0), "depth must be >= 1"),
    (dict(act="erf", sw2=1.0, sb2=0.1, depth=[3, 0]), "depth must be >= 1"),
    (dict(act="erf", sw2=1.0, sb2=0.1, depth=2.5), "depth"),
    (dict(act="erf", sw2=float("nan"), sb2=0.1, depth=2), "sw2 must be a finite number"),
    (dict(act="erf", sw2=torch.ones(2), sb2=torch.ones(3), depth=2), "broadcast"),
    (dict(act="erf", sw2=True, sb2=0.1, depth=2), "sw2 must be a real number"),
])
def test_bad_input_errors(kw, match):
    with pytest.raises(DLTheoryError, match=match):
        inf.nngp_ntk(_x((3, 2)), **kw)


def test_bad_input_errors_other_functions():
    with pytest.raises(InputError, match=r"\[N, d\]"):
        inf.nngp_ntk(_x((3, 1, 2)), act="erf", sw2=1.0, sb2=0.1, depth=2)
    with pytest.raises(inf.InfiniteWidthError, match="same input dimension"):
        inf.nngp_ntk(_x((3, 2)), _x((3, 4)), act="erf", sw2=1.0, sb2=0.1, depth=2)
    bad = _x((3, 2))
    bad[0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or inf"):
        inf.nngp_ntk(bad, act="erf", sw2=1.0, sb2=0.1, depth=2)
    with pytest.raises(inf.InfiniteWidthError, match="sb2"):
        inf.fixed_point("erf", 1.0, 0.0)
    with pytest.raises(inf.InfiniteWidthError, match="unsupported activation"):
        inf.fixed_point("tanh", 1.0, 0.1)
    with pytest.raises(inf.InfiniteWidthError, match="unsupported activation"):
        inf.critical_sw2("gelu", 0.1)
    K, Y = _psd(4, 0), _x((4, 2))
    with pytest.raises(inf.InfiniteWidthError, match="Y"):
        inf.mean_predictor(_x((2, 4)), K, _x((5, 2)))
    with pytest.raises(inf.InfiniteWidthError, match="K_test_train"):
        inf.mean_predictor(_x((2, 3)), K, Y)
    with pytest.raises(inf.InfiniteWidthError, match="K_train"):
        inf.linearized(_x((4, 3)), Y, lr=1.0, t=1.0)
    with pytest.raises(inf.InfiniteWidthError, match="lr"):
        inf.linearized(K, Y, lr=-1.0, t=1.0)
    with pytest.raises(InputError, match="t must lie in"):
        inf.linearized(K, Y, lr=1.0, t=-1.0)
    with pytest.raises(inf.InfiniteWidthError, match="unsupported activation"):
        inf.ntk_mlp(3, 8, 2, "tanh", 1.0, 0.1)
    with pytest.raises(InputError, match="depth"):
        inf.ntk_mlp(3, 8, 0, "erf", 1.0, 0.1)


# --------------------------------------------------------------------------- benchmark

def test_benchmark_check_passes_at_tiny_size():
    from benchmarks import bench_infinite

    for b in bench_infinite.benchmarks("cpu", torch.float64, n=64):
        assert b.check() is not False

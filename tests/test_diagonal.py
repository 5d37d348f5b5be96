"""Tests of dltheory.diagonal: potentials, the dual-Newton solver, the discrete identity,
batched runs, gradient flow, and bad input (badinput.Case) for every public function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from badinput import Case, make_tests
from dltheory import diagonal as dg
from dltheory.errors import DLTheoryError, InputError

F64 = torch.float64
NAN, INF = math.nan, math.inf


def _problem(n=6, d=15, seed=0, k=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    w = torch.zeros(d, dtype=F64)
    w[:k] = torch.tensor([1.0, -0.7, 0.5][:k], dtype=F64)
    return X, X @ w


# ------------------------------------------------------------------------------ potentials


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=6),
       st.floats(1e-3, 10))
def test_potential_grad_matches_autograd(vals, alpha):
    beta = torch.tensor(vals, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(dg.potential(beta, alpha), beta)
    assert torch.allclose(g, dg.potential_grad(beta.detach(), alpha), rtol=1e-12, atol=1e-14)


def test_potential_grad_matches_finite_differences():
    beta = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    alpha = torch.tensor([0.5, 0.1, 1.5], dtype=F64)
    h = 1e-6
    for j in range(3):
        e = torch.zeros(3, dtype=F64)
        e[j] = h
        fd = (dg.potential(beta + e, alpha) - dg.potential(beta - e, alpha)) / (2 * h)
        assert float(fd) == pytest.approx(float(dg.potential_grad(beta, alpha)[j]), rel=1e-8)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.floats(-20, 20), st.floats(1e-2, 5))
def test_woodworth_relation(b, alpha):
    """alpha^2 q(2 beta / alpha^2) = 4 psi_alpha(beta) coordinatewise."""
    beta = torch.tensor([b], dtype=F64)
    lhs = alpha ** 2 * dg.woodworth_q(2 * beta / alpha ** 2)
    assert float(lhs) == pytest.approx(4 * float(dg.potential(beta, alpha)), rel=1e-10,
                                       abs=1e-12)


def test_step_q_sign_and_values():
    x = torch.tensor([0.0, 0.5, 1.2, math.sqrt(2), 1.6], dtype=F64)
    q = dg.step_q(x)
    assert q[0] == 0 and q[1] == pytest.approx(-math.log(0.75))
    assert q[2] > 0 and abs(float(q[3])) < 1e-15 and q[4] < 0


def test_bregman_is_zero_at_ref_and_positive():
    ref = torch.tensor([0.2, -0.4], dtype=F64)
    assert abs(float(dg.bregman(ref, ref, 0.3))) < 1e-15
    assert float(dg.bregman(ref + 0.1, ref, 0.3)) > 0


# ---------------------------------------------------------------------------------- solver


def test_interpolant_kkt_and_generic_solver():
    from scipy.optimize import minimize

    X, y = _problem(n=3, d=6)
    Xn, yn = X.numpy(), y.numpy()
    cons = {"type": "eq", "fun": lambda b: Xn @ b - yn, "jac": lambda b: Xn}
    for alpha in (0.3, 1.0):
        sol = dg.interpolant(X, y, alpha)
        assert float(sol.kkt.max()) <= 1e-12
        assert float(dg.kkt_residual(X, y, sol.beta, alpha).max()) <= 1e-10

        def f(b, a=alpha):
            return float(dg.potential(torch.as_tensor(b), a))

        def jac(b, a=alpha):
            return dg.potential_grad(torch.as_tensor(b), a).numpy()

        res = minimize(f, np.zeros(6), jac=jac, method="SLSQP", tol=1e-14,
                       constraints=cons, options={"maxiter": 500})
        assert np.abs(res.x - sol.beta[0].numpy()).max() < 1e-6


def test_interpolant_with_reference_and_vector_alpha():
    X, y = _problem()
    alpha = torch.linspace(0.05, 0.5, 15, dtype=F64)[None]
    ref = 0.01 * torch.ones(1, 15, dtype=F64)
    sol = dg.interpolant(X, y, alpha, ref=ref)
    assert float(sol.kkt.max()) <= 1e-12
    assert float(dg.kkt_residual(X, y, sol.beta, alpha, ref=ref).max()) <= 1e-10


def test_interpolant_limits():
    X, y = _problem(n=6, d=15)
    small, large = dg.interpolant(X, y, torch.tensor([1e-10, 30.0], dtype=F64)).beta
    assert torch.allclose(large, dg.min_l2(X, y), atol=1e-5)
    l1 = dg.min_l1(X, y)
    assert (small - l1).norm() / l1.norm() < 0.1


# ------------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("batch", [None, 2])
def test_identity_step_by_step(batch):
    X, y = _problem()
    run = dg.train(X, y, alpha=0.2, gamma=torch.tensor([0.05, 0.1], dtype=F64), steps=200,
                   batch=batch, seeds=[1, 2], record=True)
    U, V, LR = run.trajectory
    err = ((U * U - V * V - 2 * 0.04 * LR.exp()).abs() / (U * U + V * V)).max()
    assert float(err) <= 1e-12


def test_identity_past_one_holds_in_absolute_value():
    """Steps with |gamma g| > 1 flip the sign of u^2 - v^2; |u^2 - v^2| = 2 alpha_k^2."""
    X, y = _problem()
    run = dg.train(X, y, alpha=0.2, gamma=0.3, steps=200, batch=1, seeds=[1], record=True)
    U, V, LR = run.trajectory
    assert bool(((U * U - V * V) < 0).any())
    err = (((U * U - V * V).abs() - 2 * 0.04 * LR.exp()).abs() / (U * U + V * V)).max()
    assert float(err) <= 1e-12


def test_limit_matches_prediction():
    X, y = _problem()
    run = dg.train(X, y, alpha=0.1, gamma=torch.tensor([0.2, 0.5], dtype=F64),
                   steps=40000, batch=2, seeds=[3, 4], tol=1e-27)
    pred = dg.interpolant(X, y, run.alpha_inf, ref=run.ref)
    assert float((pred.beta - run.beta).abs().max()) <= 1e-8
    star = dg.interpolant(X, y, 0.1).beta
    assert float((star - run.beta).abs().max()) > 1e-6


def test_batched_equals_looped():
    X, y = _problem()
    alphas = torch.tensor([0.1, 0.3, 0.5], dtype=F64)
    gammas = torch.tensor([0.1, 0.2, 0.05], dtype=F64)
    seeds = [5, 6, 7]
    big = dg.train(X, y, alpha=alphas, gamma=gammas, steps=300, batch=3, seeds=seeds)
    for r in range(3):
        one = dg.train(X, y, alpha=alphas[r:r + 1], gamma=gammas[r:r + 1], steps=300,
                       batch=3, seeds=seeds[r:r + 1])
        assert torch.allclose(big.beta[r], one.beta[0], rtol=1e-13, atol=1e-15)
        assert torch.allclose(big.alpha_inf[r], one.alpha_inf[0], rtol=1e-13)


def test_gd_ignores_seeds_and_sgd_seeds_come_from_a_generator():
    X, y = _problem()
    a = dg.train(X, y, alpha=0.2, gamma=0.1, steps=20)
    b = dg.train(X, y, alpha=0.2, gamma=0.1, steps=20, seeds=[9])
    assert torch.equal(a.beta, b.beta)
    rng = torch.get_rng_state()
    c = dg.train(X, y, alpha=0.2, gamma=0.1, steps=20, batch=2,
                 generator=torch.Generator().manual_seed(4))
    d = dg.train(X, y, alpha=0.2, gamma=0.1, steps=20, batch=2,
                 generator=torch.Generator().manual_seed(4))
    e = dg.train(X, y, alpha=0.2, gamma=0.1, steps=20, batch=2)      # the profile's seed
    assert torch.equal(c.beta, d.beta) and torch.isfinite(e.beta).all()
    assert torch.equal(rng, torch.get_rng_state())
    with pytest.raises(DLTheoryError, match="generator"):
        dg.train(X, y, alpha=0.2, gamma=0.1, steps=20, batch=2, generator=3)


def test_flow_conserves_and_matches_potential():
    X, y = _problem()
    F = dg.flow(X, y, alpha=torch.tensor([1.0], dtype=F64), time=40.0, dt=0.001)
    assert float(F.drift.max()) < 1e-10
    star = dg.interpolant(X, y, 1.0).beta
    assert float((F.beta - star).abs().max()) < 1e-8


def test_divergence_is_refused():
    X, y = _problem()
    with pytest.raises(InputError, match="gamma"):
        dg.train(X, y, alpha=2.0, gamma=50.0, steps=2000)


# ------------------------------------------------------------------------------- bad input

X0, Y0 = _problem(n=3, d=5)
B0 = torch.tensor([[0.1, -0.2, 0.3, 0.0, 0.5]], dtype=F64)
SCALE = [NAN, INF, 0.0, -1.0, True, "1"]


def _xy():
    return {"X": X0.clone(), "y": Y0.clone()}


CASES = [
    Case("diagonal.woodworth_q", dg.woodworth_q, lambda: {"z": B0.clone()}, tensors=("z",),
         allowed={"z": {"fewer_axes"}}),                       # any shape is documented
    Case("diagonal.step_q", dg.step_q, lambda: {"x": B0.clone()}, tensors=("x",),
         allowed={"x": {"fewer_axes"}}),
    Case("diagonal.potential", dg.potential, lambda: {"beta": B0.clone(), "alpha": 0.5},
         tensors=("beta",), scalars={"alpha": SCALE}, allowed={"beta": {"fewer_axes"}}),
    Case("diagonal.potential_grad", dg.potential_grad, lambda: {"beta": B0.clone(), "alpha": 0.5},
         tensors=("beta",), scalars={"alpha": SCALE}, allowed={"beta": {"fewer_axes"}}),
    Case("diagonal.bregman", dg.bregman,
         lambda: {"beta": B0.clone(), "ref": 0.5 * B0.clone(), "alpha": 0.5},
         tensors=("beta", "ref"), scalars={"alpha": SCALE},
         allowed={"beta": {"fewer_axes"}, "ref": {"fewer_axes"}}),
    Case("diagonal.interpolant", dg.interpolant,
         lambda: {**_xy(), "alpha": torch.tensor([0.5], dtype=F64)},
         tensors=("X", "y", "alpha"), scalars={"tol": [NAN, 0.0, -1.0, 2.0]},
         allowed={"alpha": {"fewer_axes"}}),
    Case("diagonal.kkt_residual", dg.kkt_residual,
         lambda: {**_xy(), "beta": B0.clone(), "alpha": 0.5},
         tensors=("X", "y", "beta"), scalars={"alpha": SCALE},
         allowed={"beta": {"fewer_axes"}}),
    Case("diagonal.min_l2", dg.min_l2, _xy, tensors=("X", "y")),
    Case("diagonal.min_l1", dg.min_l1, _xy, tensors=("X", "y")),
    Case("diagonal.loss", dg.loss, lambda: {**_xy(), "beta": B0.clone()},
         tensors=("X", "y", "beta"), allowed={"beta": {"fewer_axes"}}),
    Case("diagonal.train", dg.train,
         lambda: {**_xy(), "alpha": torch.tensor([0.2], dtype=F64),
                  "gamma": torch.tensor([0.1], dtype=F64), "steps": 5, "batch": 2,
                  "seeds": [0]},
         tensors=("X", "y", "alpha", "gamma"),
         scalars={"steps": [-1, 2.5, True, NAN], "batch": [0, 4, 1.5],
                  "seeds": [[-1], "0", [1.5]], "tol": [NAN, -1.0], "every": [0, 1.5]},
         allowed={"alpha": {"fewer_axes"}, "gamma": {"fewer_axes"}}),
    Case("diagonal.flow", dg.flow,
         lambda: {**_xy(), "alpha": torch.tensor([0.5], dtype=F64), "time": 1.0, "dt": 0.1},
         tensors=("X", "y", "alpha"), scalars={"time": SCALE, "dt": [NAN, 0.0, -1.0, 5.0]},
         allowed={"alpha": {"fewer_axes"}}),
]

test_refused, test_pure = make_tests(CASES)


def test_errors_are_library_errors():
    with pytest.raises(DLTheoryError):
        dg.interpolant(X0, Y0, -1.0)

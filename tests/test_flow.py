"""Tests of dltheory.flow: the ODE solver against closed forms, batched GD, the
approximation bound, the network loss, and bad input (badinput.Case) for every public
function."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from badinput import Case, make_tests
from dltheory import flow as fl
from dltheory.errors import DLTheoryError, InputError

F64 = torch.float64
NAN = math.nan


def _quad(lams):
    return torch.diag(torch.tensor(lams, dtype=F64))


def _qloss(A):
    return lambda th: 0.5 * ((th @ A) * th).sum(1)


# ------------------------------------------------------------------------- closed forms


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.lists(st.floats(-0.5, 2.0), min_size=2, max_size=4), st.floats(0.2, 3.0))
def test_solver_matches_the_closed_form_flow(lams, t):
    A = _quad(lams)
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(len(lams), len(lams), generator=g, dtype=F64))
    A = Q @ A @ Q.T
    A = 0.5 * (A + A.T)
    th0 = torch.randn(2, len(lams), generator=g, dtype=F64)
    sol = fl.flow(_qloss(A), th0, times=[0.0, t / 2, t])
    exact = fl.quadratic_flow(A, th0, times=[0.0, t / 2, t])
    assert float((sol.theta - exact).abs().max()) < 1e-8 * (1 + float(exact.abs().max()))


def test_radau_agrees_with_dop853():
    A = _quad([3.0, 0.1])
    th0 = torch.tensor([[1.0, -2.0]], dtype=F64)
    a = fl.flow(_qloss(A), th0, times=[1.0], method="Radau", rtol=1e-10).theta
    b = fl.flow(_qloss(A), th0, times=[1.0]).theta
    assert float((a - b).abs().max()) < 1e-8


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.lists(st.floats(-1.0, 3.0), min_size=1, max_size=3),
       st.sampled_from([0.05, 0.1, 0.2]))
def test_batched_gd_matches_closed_form_and_single_runs(lams, lr):
    A = _quad(lams)
    th0 = torch.ones(3, len(lams), dtype=F64)
    lrs = torch.tensor([lr, lr / 2, lr / 4], dtype=F64)
    times = [0.0, 2 * lr, 4 * lr]
    run = fl.gd(_qloss(A), th0, lr=lrs, times=times)
    closed = fl.quadratic_gd(A, th0, lr=lrs, times=times)
    assert torch.allclose(run, closed, rtol=1e-12, atol=1e-12)
    single = fl.gd(_qloss(A), th0[1:2], lr=float(lrs[1]), times=times)
    assert torch.equal(single[:, 0], run[:, 1])


def test_quadratic_gd_sign_of_oscillating_components():
    A = _quad([3.0])
    out = fl.quadratic_gd(A, torch.ones(1, 1, dtype=F64), lr=0.5, times=[0.5, 1.0, 1.5])
    assert out[:, 0, 0].tolist() == pytest.approx([-0.5, 0.25, -0.125])


# ---------------------------------------------------------------------------- the bound


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.floats(-1.0, 2.0), min_size=1, max_size=3),
       st.sampled_from([0.01, 0.05, 0.2]), st.integers(1, 60))
def test_bound_holds_on_quadratics(lams, lr, steps):
    A = _quad(lams)
    th0 = torch.ones(1, len(lams), dtype=F64)
    t = lr * steps
    d = (fl.quadratic_flow(A, th0, times=[t]) - fl.quadratic_gd(A, th0, lr=lr, times=[t]))
    E = fl.quadratic_bound(A, th0[0], lr=lr, steps=steps)
    assert float(d.norm()) <= float(E[-1]) * (1 + 1e-12) + 1e-14   # rounding of the difference


def test_bound_is_tight_on_the_concave_quadratic_and_needs_its_curvature_factor():
    A = _quad([-1.0])
    th0 = torch.ones(1, 1, dtype=F64)
    lr, t = 0.001, 3.0
    d = float((fl.quadratic_flow(A, th0, times=[t])
               - fl.quadratic_gd(A, th0, lr=lr, times=[t])).abs())
    E = float(fl.quadratic_bound(A, th0[0], lr=lr, steps=3000)[-1])
    E0 = float(fl.quadratic_bound(A, th0[0], lr=lr, steps=3000, negative_part=False)[-1])
    assert d <= E <= 1.01 * d
    assert d / E0 == pytest.approx(3.0 / -math.expm1(-3.0), rel=0.01)   # mu t / (1 - e^-mu t)


def test_approximation_bound_recursion():
    lam, m = torch.tensor([0.0, 1.0, 2.0], dtype=F64), torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    E = fl.approximation_bound(lam, m, lr=0.1)
    ref = [0.0]
    for a, b in zip(lam.tolist(), m.tolist(), strict=True):
        ref.append((1 + 0.1 * a) * ref[-1] + 0.5 * 0.01 * b)
    assert E.tolist() == pytest.approx(ref, rel=1e-13)


def test_quadratic_bound_refuses_steps_past_stability():
    with pytest.raises(InputError, match="lr"):
        fl.quadratic_bound(_quad([4.0]), torch.ones(1, dtype=F64), lr=0.6, steps=3)


# ----------------------------------------------------------------------------- networks


def _net(act="relu"):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(10, 4, generator=g, dtype=F64)
    y = torch.randn(10, 1, generator=g, dtype=F64)
    return fl.mlp_loss(X, y, [4, 3, 3, 1], act=act)


def test_mlp_loss_matches_a_torch_network():
    L = _net()
    th = L.init(0.7, [3])
    W1, W2, W3 = (w[0] for w in L.weights(th))
    out = torch.relu(torch.relu(L.X @ W1.T) @ W2.T) @ W3.T
    ref = 0.5 * (out - L.y).pow(2).sum() / 10
    assert float(L(th)[0]) == pytest.approx(float(ref), rel=1e-14)
    assert L.p == 4 * 3 + 3 * 3 + 3


def test_hessian_eigenvalues_of_a_quadratic():
    A = _quad([2.0, -1.0, 0.5])
    ev = fl.hessian_eigenvalues(_qloss(A), torch.ones(3, dtype=F64))
    assert ev.tolist() == pytest.approx([-1.0, 0.5, 2.0], abs=1e-12)


def test_det_sign_of_the_linear_network_product_is_kept_by_the_flow():
    """The flow conserves W_{l+1}^T W_{l+1} - W_l W_l^T, hence for square layers the sign
    of det(W_l) along the flow (the path cannot cross det = 0 without breaking balance)."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(12, 3, generator=g, dtype=F64)
    y = X @ torch.randn(3, 3, generator=g, dtype=F64)
    L = fl.mlp_loss(X, y, [3, 3, 3], act="linear")
    th0 = L.init(1.0, [5])
    path = fl.flow(L, th0, times=[0.0, 1.0, 3.0])
    W = [L.weights(path.theta[j]) for j in range(3)]
    for j in range(3):
        D = W[j][1][0].T @ W[j][1][0] - W[j][0][0] @ W[j][0][0].T
        D0 = W[0][1][0].T @ W[0][1][0] - W[0][0][0] @ W[0][0][0].T
        assert torch.allclose(D, D0, atol=1e-8)
    signs = {tuple(int(torch.sign(torch.linalg.det(w[0]))) for w in Wj) for Wj in W}
    assert len(signs) == 1


def test_gd_divergence_is_an_error():
    with pytest.raises(InputError, match="lr"):
        fl.gd(_qloss(_quad([10.0])), torch.ones(1, 1, dtype=F64), lr=1.0, times=[2000.0])


def test_times_must_be_whole_steps():
    with pytest.raises(InputError, match="times"):
        fl.gd(_qloss(_quad([1.0])), torch.ones(1, 1, dtype=F64), lr=0.3, times=[1.0])


def test_rk4_is_fourth_order_on_a_quadratic():
    A = _quad([2.0, 0.5, -0.3])
    th0 = torch.tensor([[1.0, -1.0, 0.5], [0.2, 0.3, -0.4]], dtype=F64)
    exact = fl.quadratic_flow(A, th0, times=[0.0, 1.0, 2.0])
    err = []
    for h in (0.1, 0.05):
        path = fl.flow(_qloss(A), th0, times=[0.0, 1.0, 2.0], method="RK4", step=h)
        assert path.method == "RK4" and path.step == h and path.nfev == 4 * round(2.0 / h)
        assert torch.equal(path.theta[0], th0)
        err.append(float((path.theta - exact).abs().max()))
    assert err[1] < 1e-5
    assert 12 < err[0] / err[1] < 20          # 2^4 = 16: fourth order


def test_rk4_on_a_relu_loss_converges_as_the_step_shrinks():
    g = torch.Generator().manual_seed(3)
    L = fl.mlp_loss(torch.randn(20, 3, generator=g, dtype=F64),
                    torch.randn(20, 1, generator=g, dtype=F64), [3, 5, 1], act="relu")
    th0 = L.init(0.5, [0, 1])
    ends = [fl.flow(L, th0, times=[1.0], method="RK4", step=h).theta[-1]
            for h in (1 / 32, 1 / 64, 1 / 128)]
    d1, d2 = float((ends[0] - ends[1]).norm()), float((ends[1] - ends[2]).norm())
    assert d2 < d1 and d2 < 1e-4
    assert float(L(ends[-1]).sum()) < float(L(th0).sum())


def test_rk4_step_is_required_and_only_for_rk4():
    with pytest.raises(InputError, match="step"):
        fl.flow(_qloss(A0), T0, times=[1.0], method="RK4")
    with pytest.raises(InputError, match="step"):
        fl.flow(_qloss(A0), T0, times=[1.0], step=0.1)
    with pytest.raises(InputError, match="whole number of steps"):
        fl.flow(_qloss(A0), T0, times=[0.55], method="RK4", step=0.1)
    with pytest.raises(InputError, match="smaller step"):
        fl.flow(_qloss(_quad([-50.0])), torch.ones(1, 1, dtype=F64), times=[40.0],
                method="RK4", step=0.5)


# ---------------------------------------------------------------------------- bad input

A0 = _quad([1.0, 0.5])
T0 = torch.tensor([[1.0, -0.5]], dtype=F64)
LOSS0 = _qloss(A0)
X0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
Y0 = torch.randn(6, 1, generator=torch.Generator().manual_seed(1), dtype=F64)

CASES = [
    Case("flow.gd", fl.gd,
         lambda: {"loss": LOSS0, "theta0": T0.clone(), "lr": 0.1, "times": [0.0, 0.5]},
         tensors=("theta0",), scalars={"lr": [NAN, 0.0, -1.0], "times": [[1.0, 0.5], [NAN],
                                                                         "x", []]}),
    Case("flow.flow", fl.flow,
         lambda: {"loss": LOSS0, "theta0": T0.clone(), "times": [0.0, 0.5]},
         tensors=("theta0",), scalars={"times": [[-1.0], [NAN]], "rtol": [NAN, 0.0, 1.0],
                                       "atol": [-1.0, NAN], "method": ["Euler", 3],
                                       "step": [0.1]}),
    Case("flow.flow", fl.flow,
         lambda: {"loss": LOSS0, "theta0": T0.clone(), "times": [0.0, 0.5],
                  "method": "RK4", "step": 0.1},
         tensors=("theta0",), scalars={"step": [NAN, 0.0, -0.1, None, 0.3, "x"]}),
    Case("flow.quadratic_flow", fl.quadratic_flow,
         lambda: {"A": A0.clone(), "theta0": T0.clone(), "times": [0.5]},
         tensors=("A", "theta0"), scalars={"times": [[NAN], [2.0, 1.0]]}),
    Case("flow.quadratic_gd", fl.quadratic_gd,
         lambda: {"A": A0.clone(), "theta0": T0.clone(), "lr": 0.1, "times": [0.5]},
         tensors=("A", "theta0"), scalars={"lr": [NAN, -0.1, 0.0], "times": [[0.55]]}),
    Case("flow.approximation_bound", fl.approximation_bound,
         lambda: {"lam_minus": torch.tensor([0.0, 0.5], dtype=F64),
                  "m": torch.tensor([1.0, 2.0], dtype=F64), "lr": 0.1},
         tensors=("lam_minus", "m"), scalars={"lr": [NAN, 0.0, -1.0]}),
    Case("flow.quadratic_bound", fl.quadratic_bound,
         lambda: {"A": A0.clone(), "theta0": T0[0].clone(), "lr": 0.1, "steps": 5},
         tensors=("A", "theta0"),
         scalars={"lr": [NAN, 0.0, 5.0], "steps": [0, 2.5, True],
                  "negative_part": [1, None]}),
    Case("flow.mlp_loss", fl.mlp_loss,
         lambda: {"X": X0.clone(), "y": Y0.clone(), "widths": [2, 3, 1], "act": "relu"},
         tensors=("X", "y"), scalars={"widths": [[2], [2, 0, 1], [3, 3, 1], "21"],
                                      "act": ["tanh", None]}),
    Case("flow.hessian_eigenvalues", fl.hessian_eigenvalues,
         lambda: {"loss": LOSS0, "theta": T0[0].clone()}, tensors=("theta",)),
]

test_refused, test_pure = make_tests(CASES)


def test_a_loss_that_is_not_callable_is_refused():
    with pytest.raises(DLTheoryError, match="loss"):
        fl.gd(3.0, T0, lr=0.1, times=[0.1])
    with pytest.raises(DLTheoryError, match="loss"):
        fl.flow(lambda th: th, T0, times=[0.1])          # wrong output shape

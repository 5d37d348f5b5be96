"""Tests of dltheory.factorization: products and gradients against autograd, balanced
initialization, det-sign invariance at a small step, batching, spectra against closed forms,
CP growth law, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from badinput import Case, make_tests
from dltheory import factorization as fz
from dltheory.errors import DLTheoryError

F64 = torch.float64
NAN, INF = float("nan"), float("inf")
TARGET, MASK = fz.razin_cohen_problem()


def test_problem_solutions_have_negative_det():
    x = 3.7
    W = torch.tensor([[[x, 1.0], [1.0, 0.0]]], dtype=F64)
    assert float(fz.completion_loss(W, TARGET, MASK)[0]) == 0.0
    assert abs(float(torch.linalg.det(W)[0]) + 1.0) < 1e-14


def test_grads_match_autograd():
    f = fz.gaussian_factors(3, 0.7, [1, 2]).requires_grad_(True)
    loss = fz.completion_loss(fz.product(f), TARGET, MASK).sum()
    loss.backward()
    W = fz._np_product(f.detach().numpy())
    res = MASK.numpy() * (W - TARGET.numpy())
    g = torch.as_tensor(fz._grads(f.detach().numpy(), 2 * res))
    torch.testing.assert_close(g, f.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_balanced_factors(depth):
    A = torch.randn(3, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(depth))
    f = fz.balanced_factors(A, depth, [0, 1, 2])
    torch.testing.assert_close(fz.product(f), A, rtol=1e-12, atol=1e-12)
    for j in range(depth - 1):
        torch.testing.assert_close(f[:, j + 1].mT @ f[:, j + 1], f[:, j] @ f[:, j].mT,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_small_init_det_sign_and_scale(sign):
    f = fz.small_init(3, 1e-2, list(range(8)), det_sign=sign)
    det = torch.linalg.det(fz.product(f))
    assert bool((det * sign > 0).all())
    assert float(fz.product(f).abs().max()) < 0.1


@settings(max_examples=6, deadline=None, database=None, derandomize=True)
@given(seed=st.integers(0, 10**6), depth=st.sampled_from([3, 4]))
def test_det_sign_invariant_at_small_step(seed, depth):
    # the flow keeps sign(det W) from a balanced init (L >= 2); at L >= 3 GD with a small
    # step follows it (sigma_min decays only polynomially)
    f = fz.small_init(depth, 0.1, [seed])
    run = fz.train_matrix(f, TARGET, MASK, lr=2e-3, steps=3000, every=1000)
    assert float(run.det_min[0]) > 0
    assert float(run.losses[-1, 0]) < float(run.losses[0, 0])


def test_depth_one_never_moves_w11():
    f = fz.small_init(1, 0.1, [3])
    run = fz.train_matrix(f, TARGET, MASK, lr=0.05, steps=500, every=100)
    assert float((run.products[:, 0, 0, 0] - f[0, 0, 0, 0]).abs().max()) == 0.0


def test_bound_on_w11_along_a_run():
    f = fz.small_init(3, 1e-2, [0])
    run = fz.train_matrix(f, TARGET, MASK, lr=3e-3, steps=20000, tol=0.05, every=100)
    lo = run.losses[:, 0]
    sel = lo < 1
    b = (1 - lo[sel].sqrt()) ** 2 / lo[sel].sqrt()
    assert bool((run.products[sel, 0, 0, 0].abs() >= b).all())
    assert int(run.stopped[0]) > 0


def test_batched_equals_looped_and_stops_by_loss():
    f = fz.small_init(3, 1e-2, [0, 1, 2])
    lr = torch.tensor([1e-3, 2e-3, 3e-3], dtype=F64)
    a = fz.train_matrix(f, TARGET, MASK, lr=lr, steps=3000, tol=1.0, every=50)
    for r in range(3):
        b = fz.train_matrix(f[r:r + 1], TARGET, MASK, lr=lr[r:r + 1], steps=3000, tol=1.0,
                            every=50)
        torch.testing.assert_close(a.W[r], b.W[0], rtol=0, atol=1e-13)
        assert int(a.stopped[r]) == int(b.stopped[0])
        if int(b.stopped[0]) >= 0:
            assert float(b.losses[-1, 0]) <= 1.0
    assert int(a.stopped.max()) > 0


def test_divergence_is_refused():
    with pytest.raises(DLTheoryError, match="lr"):
        fz.train_matrix(fz.gaussian_factors(3, 1.0, [0]), TARGET, MASK, lr=50.0, steps=200)


def test_effective_rank_closed_forms():
    eye = torch.eye(4, dtype=F64)
    assert abs(float(fz.effective_rank(eye)) - 4) < 1e-12
    rank1 = torch.outer(torch.arange(1.0, 4, dtype=F64), torch.ones(3, dtype=F64))
    assert abs(float(fz.effective_rank(rank1)) - 1) < 1e-6
    D = torch.diag(torch.tensor([3.0, 1.0], dtype=F64))
    p = torch.tensor([0.75, 0.25], dtype=F64)
    assert abs(float(fz.effective_rank(D)) - math.exp(float(-(p * p.log()).sum()))) < 1e-12


def test_schatten_closed_forms():
    D = torch.diag(torch.tensor([3.0, -4.0], dtype=F64))
    assert abs(float(fz.schatten(D, 1.0)) - 7) < 1e-12
    assert abs(float(fz.schatten(D, 2.0)) - 5) < 1e-12
    assert abs(float(fz.schatten(D, math.inf)) - 4) < 1e-12
    assert abs(float(fz.schatten(D, 0.5)) - (3 ** 0.5 + 2) ** 2) < 1e-12
    # the norm-minimizing completion [[0, 1], [1, 0]]: 2^(1/p)
    W = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    for p in (0.5, 1.0, 3.0):
        assert abs(float(fz.schatten(W, p)) - 2 ** (1 / p)) < 1e-12


def test_cp_tensor_and_grads_match_autograd():
    f = fz.cp_init(3, 4, 5, 0.7, [0, 1]).requires_grad_(True)
    G = torch.randn(2, 5, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    (G * fz.cp_tensor(f)).sum().backward()
    torch.testing.assert_close(fz._cp_grads(f.detach(), G), f.grad, rtol=1e-12, atol=1e-14)
    T = torch.einsum("bri,brj,brk->bijk", *f.detach().unbind(1))
    torch.testing.assert_close(fz.cp_tensor(f.detach()), T)


def test_cp_init_balanced_and_growth_law_one_step():
    f = fz.cp_init(3, 3, 4, 0.2, [5])
    n = f.norm(dim=-1)
    torch.testing.assert_close(n, torch.full_like(n, 0.2))
    torch.testing.assert_close(fz.component_norms(f), torch.full((1, 3), 0.008, dtype=F64))
    target = torch.randn(4, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(4, 4, 4, dtype=F64)
    run = fz.train_cp(f, target, mask, lr=1e-6, steps=1, every=1)
    pred = 3 * run.norms[0] ** (4 / 3) * run.align[0]
    torch.testing.assert_close(run.rate[0], pred, rtol=1e-4, atol=0)


# ------------------------------------------------------------------------------- bad input

F0 = fz.small_init(3, 0.1, [0])
SCALE = [NAN, INF, 0.0, -1.0, True, "1"]


def _mat():
    return {"factors": F0.clone(), "target": TARGET.clone(), "mask": MASK.clone()}


def _cp():
    return {"factors": fz.cp_init(3, 2, 3, 0.3, [0]), "target": torch.ones(3, 3, 3, dtype=F64),
            "mask": torch.ones(3, 3, 3, dtype=F64)}


CASES = [
    Case("factorization.razin_cohen_problem", fz.razin_cohen_problem, lambda: {},
         scalars={"dtype": [torch.int64, torch.float16, "float64"]}),
    Case("factorization.product", fz.product, lambda: {"factors": F0.clone()},
         tensors=("factors",)),
    Case("factorization.completion_loss", fz.completion_loss,
         lambda: {"W": fz.product(F0), "target": TARGET.clone(), "mask": MASK.clone()},
         tensors=("W", "target", "mask")),
    Case("factorization.balanced_factors", fz.balanced_factors,
         lambda: {"A": fz.product(F0), "depth": 3, "seeds": [0]}, tensors=("A",),
         scalars={"depth": [0, 1.5, True], "seeds": [[-1], "0", [], [1.5]]}),
    Case("factorization.small_init", fz.small_init,
         lambda: {"depth": 3, "scale": 0.1, "seeds": [0]},
         scalars={"depth": [0, 2.5], "scale": SCALE, "seeds": [[-1], "0", []],
                  "det_sign": [0, 2, "+"], "dim": [0, 1.5], "dtype": [torch.int32, None]}),
    Case("factorization.gaussian_factors", fz.gaussian_factors,
         lambda: {"depth": 2, "std": 0.5, "seeds": [0]},
         scalars={"depth": [0], "std": SCALE, "seeds": [[-1], None], "dim": [0],
                  "dtype": [torch.float16]}),
    Case("factorization.train_matrix", fz.train_matrix,
         lambda: {**_mat(), "lr": 1e-3, "steps": 5, "tol": 1e-3, "every": 2},
         tensors=("factors", "target", "mask"),
         scalars={"lr": SCALE, "steps": [0, -1, 2.5, True], "tol": [NAN, -1.0, 0.0],
                  "every": [0, 1.5]}),
    Case("factorization.effective_rank", fz.effective_rank, lambda: {"W": fz.product(F0)},
         tensors=("W",), allowed={"W": {"fewer_axes"}}),
    Case("factorization.schatten", fz.schatten, lambda: {"W": fz.product(F0), "p": 1.0},
         tensors=("W",), scalars={"p": [NAN, 0.0, -1.0, "1", True]},
         allowed={"W": {"fewer_axes"}}),
    Case("factorization.cp_tensor", fz.cp_tensor, lambda: {"factors": _cp()["factors"]},
         tensors=("factors",)),
    Case("factorization.component_norms", fz.component_norms,
         lambda: {"factors": _cp()["factors"]}, tensors=("factors",)),
    Case("factorization.cp_init", fz.cp_init,
         lambda: {"order": 3, "rank": 2, "dim": 3, "scale": 0.3, "seeds": [0]},
         scalars={"order": [1, 2.5, 100], "rank": [0], "dim": [0, True], "scale": SCALE,
                  "seeds": [[-1], "0"], "dtype": [torch.bool]}),
    Case("factorization.train_cp", fz.train_cp,
         lambda: {**_cp(), "lr": 0.01, "steps": 3, "every": 1},
         tensors=("factors", "target", "mask"),
         scalars={"lr": SCALE, "steps": [0, 1.5], "tol": [NAN, -1.0], "every": [0]}),
]

test_refused, test_pure = make_tests(CASES)


def test_bad_masks_are_refused():
    with pytest.raises(DLTheoryError, match="mask"):
        fz.train_matrix(F0, TARGET, 0.5 * MASK, lr=1e-3, steps=2)
    with pytest.raises(DLTheoryError, match="mask"):
        fz.train_cp(_cp()["factors"], _cp()["target"], 0.5 * _cp()["mask"], lr=0.1, steps=2)

"""Deep matrix factorization and CP tensor factorization, trained by batched gradient descent.

**Matrices.** A depth-``L`` factorization represents ``W = W_L ... W_1`` (``d x d``
factors); a batch of ``R`` runs is a tensor ``factors [R, L, d, d]`` with
``factors[:, j]`` the factor ``W_{j+1}``. The loss is the matrix-completion loss
``l(W) = sum_{(i,j) in Omega} (W_ij - M_ij)^2`` (:func:`completion_loss`), ``Omega`` given
by a 0/1 ``mask [d, d]``. :func:`razin_cohen_problem` is the 2 x 2 problem of Razin &
Cohen (2020), ``M = [[?, 1], [1, 0]]``. Initializations: :func:`balanced_factors` splits a
given end-to-end matrix into balanced factors (``W_{j+1}^T W_{j+1} = W_j W_j^T``, the
hypothesis of the end-to-end dynamics of Arora et al. 2019); :func:`small_init` draws a
small Gaussian end-to-end matrix per run, re-drawn until ``det`` has the requested sign,
and balances it; :func:`gaussian_factors` draws independent (unbalanced) factors.
:func:`train_matrix` runs gradient descent on the factors for all runs at once, each with
its own step size, stops each run once its loss is below ``tol``, logs the end-to-end
matrix and the loss every ``every`` steps, and tracks the extreme values of ``det W`` over
*every* step.

**Tensors.** An order-``N`` CP factorization with ``R`` components represents
``T = sum_r w_r^(1) x ... x w_r^(N)`` (outer products); a batch of ``B`` runs is
``factors [B, N, R, d]``. :func:`cp_tensor` builds ``T [B, d, ..., d]``,
:func:`component_norms` the norms ``|W_r| = prod_n |w_r^(n)|`` of the rank-one components,
:func:`cp_init` a small balanced initialization (all ``N`` vectors of a component of the same
norm), and :func:`train_cp` gradient descent on the loss ``sum_Omega (T - T*)^2`` over
observed entries, logging every component's norm and its alignment
``<-grad l(T), w_r^(1)/|w_r^(1)| x ... x w_r^(N)/|w_r^(N)|>``.

**Spectra.** :func:`effective_rank` is the effective rank of Roy & Vetterli (2007),
``exp(H(p))`` with ``p = sigma / |sigma|_1``; :func:`schatten` the Schatten-``p`` (quasi-)norm
``(sum sigma^p)^(1/p)`` (``p = 1``: nuclear; ``p = inf``: spectral).

Every function checks its input with :mod:`dltheory.validation`, draws randomness only from
generators seeded from ``seeds`` (never torch's global generator) and works on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import threads, validation
from .errors import InputError

__all__ = [
    "MatrixRun", "CPRun",
    "razin_cohen_problem", "product", "completion_loss", "balanced_factors", "small_init",
    "gaussian_factors", "train_matrix", "effective_rank", "schatten",
    "cp_tensor", "component_norms", "cp_init", "train_cp",
]

_MOD = "factorization"


# ----------------------------------------------------------------------------- checking


def _seeds(seeds, fn: str) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list | tuple):
        raise validation.InputTypeError(f"{fn}: seeds must be a list of integers, got "
                                        f"{type(seeds).__name__}")
    if not seeds:
        raise InputError(f"{fn}: seeds is empty; pass one integer per run")
    return [validation.integer(s, "seeds", fn=fn, lo=0, hi=2**63 - 1) for s in seeds]


def _factors(factors, fn: str) -> torch.Tensor:
    f = validation.tensor(factors, "factors", fn=fn, ndim=4, layout="[R, L, d, d]")
    if f.shape[2] != f.shape[3]:
        raise InputError(f"{fn}: factors must be square, got shape {tuple(f.shape)}; "
                         "pass [R, L, d, d]")
    return f


def _problem(target, mask, fn: str, like: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device,
                                  "like": "the factors are"}
    target = validation.tensor(target, "target", fn=fn, shape=(None, None) if like is None
                               else like.shape[-2:], layout="[d, d]", **kw)
    mask = validation.tensor(mask, "mask", fn=fn, shape=tuple(target.shape), layout="[d, d]",
                             dtype=target.dtype, device=target.device, like="target is")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError(f"{fn}: mask must hold only 0 and 1 (1 = observed entry)")
    return target, mask


def _lr(lr, R: int, fn: str, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(lr, torch.Tensor) or lr.ndim == 0:
        v = validation.real(lr, "lr", fn=fn, lo=0, lo_open=True)
        return torch.full((R,), v, dtype=like.dtype, device=like.device)
    lr = validation.tensor(lr, "lr", fn=fn, ndim=1, layout="[R]", dtype=like.dtype,
                           device=like.device, like="the factors are")
    if lr.shape[0] not in (1, R):
        raise InputError(f"{fn}: lr has {lr.shape[0]} entries for {R} runs; pass one per run")
    if not bool((lr > 0).all()):
        raise InputError(f"{fn}: lr must be > 0, got min {float(lr.min()):g}")
    return lr.expand(R)


def _schedule(steps, every, tol, fn: str):
    steps = validation.integer(steps, "steps", fn=fn, lo=1, hi=10**8)
    every = validation.integer(every, "every", fn=fn, lo=1)
    if tol is not None:
        tol = validation.real(tol, "tol", fn=fn, lo=0, lo_open=True)
    return steps, every, tol


# ------------------------------------------------------------------------------ matrices


def razin_cohen_problem(dtype: torch.dtype = torch.float64, device=None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target, mask)`` of the 2 x 2 completion problem ``M = [[?, 1], [1, 0]]``: entry
    ``(0, 0)`` unobserved, ``(0, 1) = (1, 0) = 1``, ``(1, 1) = 0``. Every solution
    ``[[x, 1], [1, 0]]`` has ``det = -1``."""
    dtype = validation.floating_dtype(dtype, fn=f"{_MOD}.razin_cohen_problem")
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dtype, device=device)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=dtype, device=device)
    return target, mask


def _product(f: torch.Tensor) -> torch.Tensor:
    W = f[:, 0]
    for j in range(1, f.shape[1]):
        W = f[:, j] @ W
    return W


def product(factors: torch.Tensor) -> torch.Tensor:
    """End-to-end matrices ``W = W_L ... W_1 [R, d, d]`` of ``factors [R, L, d, d]``."""
    return _product(_factors(factors, f"{_MOD}.product"))


def completion_loss(W: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
    """``l(W) = sum_ij mask_ij (W_ij - target_ij)^2`` per run: ``W [R, d, d] -> [R]``."""
    fn = f"{_MOD}.completion_loss"
    W = validation.tensor(W, "W", fn=fn, ndim=3, layout="[R, d, d]")
    target, mask = _problem(target, mask, fn, like=W[0, None, None])
    return (mask * (W - target)).pow(2).sum((-2, -1))


def _orthogonal(d: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype=dtype, device=device)


def balanced_factors(A: torch.Tensor, depth: int, seeds) -> torch.Tensor:
    """Balanced factors ``[R, L, d, d]`` whose product is ``A [R, d, d]``.

    With ``A = U S V^T`` (SVD) and random orthogonal ``Q_1 .. Q_{L-1}`` (drawn from a
    generator seeded by the run's seed): ``W_1 = Q_1 S^(1/L) V^T``,
    ``W_j = Q_j S^(1/L) Q_{j-1}^T``, ``W_L = U S^(1/L) Q_{L-1}^T``, so that
    ``W_{j+1}^T W_{j+1} = W_j W_j^T`` for every ``j``. ``depth = 1`` returns ``A`` itself.
    """
    fn = f"{_MOD}.balanced_factors"
    A = validation.tensor(A, "A", fn=fn, ndim=3, layout="[R, d, d]")
    if A.shape[1] != A.shape[2]:
        raise InputError(f"{fn}: A must be square, got shape {tuple(A.shape)}")
    depth = validation.integer(depth, "depth", fn=fn, lo=1, hi=1000)
    seeds = _seeds(seeds, fn)
    R, d = A.shape[0], A.shape[1]
    if len(seeds) not in (1, R):
        raise InputError(f"{fn}: seeds has {len(seeds)} entries for {R} runs")
    seeds = seeds * R if len(seeds) == 1 else seeds
    U, S, Vh = torch.linalg.svd(A)
    root = torch.diag_embed(S.pow(1.0 / depth))
    out = torch.empty(R, depth, d, d, dtype=A.dtype, device=A.device)
    for r, s in enumerate(seeds):
        gen = validation.seeded_generator(s)
        Q = [Vh[r].mT] + [_orthogonal(d, gen, A.dtype, A.device) for _ in range(depth - 1)] \
            + [U[r]]
        for j in range(depth):
            out[r, j] = Q[j + 1] @ root[r] @ Q[j].mT
    return out


def small_init(depth: int, scale: float, seeds, *, det_sign: int = 1, dim: int = 2,
               dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Balanced factors ``[R, L, d, d]`` of a small random end-to-end matrix per run.

    Run ``r`` draws ``A = scale * G`` (``G`` standard Gaussian ``d x d``) from a generator
    seeded by ``seeds[r]``, re-drawing until ``sign(det A) = det_sign`` (as Razin & Cohen
    re-draw until ``det > 0``), and splits it by :func:`balanced_factors`.
    """
    fn = f"{_MOD}.small_init"
    depth = validation.integer(depth, "depth", fn=fn, lo=1, hi=1000)
    scale = validation.real(scale, "scale", fn=fn, lo=0, lo_open=True)
    seeds = _seeds(seeds, fn)
    det_sign = validation.choice(det_sign, "det_sign", (1, -1), fn=fn)
    dim = validation.integer(dim, "dim", fn=fn, lo=1, hi=1000)
    dtype = validation.floating_dtype(dtype, fn=fn)
    A = torch.empty(len(seeds), dim, dim, dtype=torch.float64)
    for r, s in enumerate(seeds):
        gen = validation.seeded_generator(s)
        while True:
            G = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
            if float(torch.linalg.det(G)) * det_sign > 0:
                break
        A[r] = scale * G
    return balanced_factors(A.to(dtype=dtype, device=device), depth, seeds)


def gaussian_factors(depth: int, std: float, seeds, *, dim: int = 2,
                     dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Independent Gaussian factors ``[R, L, d, d]`` with entries of standard deviation
    ``std`` (unbalanced), drawn per run from a generator seeded by ``seeds[r]``."""
    fn = f"{_MOD}.gaussian_factors"
    depth = validation.integer(depth, "depth", fn=fn, lo=1, hi=1000)
    std = validation.real(std, "std", fn=fn, lo=0, lo_open=True)
    seeds = _seeds(seeds, fn)
    dim = validation.integer(dim, "dim", fn=fn, lo=1, hi=1000)
    dtype = validation.floating_dtype(dtype, fn=fn)
    out = torch.stack([std * torch.randn(depth, dim, dim, generator=validation.seeded_generator(s),
                                         dtype=torch.float64) for s in seeds])
    return out.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class MatrixRun:
    """A batched gradient-descent run of deep matrix factorization.

    ``factors [R, L, d, d]``: the last iterate of each run; ``W [R, d, d]`` its product;
    ``steps [K]``: the logged step numbers (0, ``every``, ... and each run's last);
    ``products [K, R, d, d]`` and ``losses [K, R]``: end-to-end matrix and loss at those
    steps (a stopped run repeats its last value); ``det_min``, ``det_max [R]``: the extreme
    values of ``det W`` over every step taken; ``stopped [R]``: the step at which the run's
    loss first fell below ``tol`` (``-1`` if never).
    """

    factors: torch.Tensor
    W: torch.Tensor
    steps: torch.Tensor
    products: torch.Tensor
    losses: torch.Tensor
    det_min: torch.Tensor
    det_max: torch.Tensor
    stopped: torch.Tensor


def _grads(f, G):
    """``dl/dW_j = (W_L..W_{j+1})^T G (W_{j-1}..W_1)^T`` for all ``j`` (NumPy ``[R, L, d, d]``),
    and the product ``W``."""
    L = f.shape[1]
    below = [None] * L                          # below[j] = W_j .. W_1 (j factors)
    acc = f[:, 0]
    for j in range(1, L):
        below[j] = acc
        acc = f[:, j] @ acc
    out = np.empty_like(f)
    above = None                                # W_L .. W_{j+2}
    for j in range(L - 1, -1, -1):
        left = G if above is None else above.transpose(0, 2, 1) @ G
        out[:, j] = left if j == 0 else left @ below[j].transpose(0, 2, 1)
        above = f[:, j] if above is None else above @ f[:, j]
    return out


def _det(W):
    if W.shape[-1] == 2:
        return W[:, 0, 0] * W[:, 1, 1] - W[:, 0, 1] * W[:, 1, 0]
    return np.linalg.det(W)


def _np_product(f):
    W = f[:, 0]
    for j in range(1, f.shape[1]):
        W = f[:, j] @ W
    return W


@threads.fair_share
def train_matrix(factors: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, lr,
                 steps: int, tol: float | None = None, every: int = 100) -> MatrixRun:
    """Gradient descent ``W_j <- W_j - lr * dl/dW_j`` on the factors of ``R`` runs at once.

    ``factors [R, L, d, d]`` (not modified); ``lr``: a positive float or ``[R]``; a run stops
    (its factors freeze) at the first step where its loss is ``<= tol``; the whole call ends
    after ``steps`` steps or when every run has stopped. The loop runs in NumPy float64 on
    the CPU (the matrices are tiny; per-step overhead, not arithmetic, is the cost) and the
    results come back in the factors' dtype and device. Raises
    :class:`~dltheory.errors.InputError` naming ``lr`` when a run diverges.
    """
    fn = f"{_MOD}.train_matrix"
    ft = _factors(factors, fn)
    target, mask = _problem(target, mask, fn, like=ft[0, 0])
    R = ft.shape[0]
    lr_t = _lr(lr, R, fn, ft)
    steps, every, tol = _schedule(steps, every, tol, fn)
    f = ft.detach().cpu().double().numpy().copy()
    M = target.detach().cpu().double().numpy()
    P = mask.detach().cpu().double().numpy()
    eta = lr_t.detach().cpu().double().numpy()[:, None, None, None].copy()
    active = np.ones(R, dtype=bool)
    stopped = np.full(R, -1, dtype=np.int64)
    W = _np_product(f)
    det = _det(W)
    det_min, det_max = det.copy(), det.copy()
    log_steps, log_W, log_loss = [], [], []
    with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported below
        k = 0
        while True:
            res = P * (W - M)
            loss = (res * res).sum((-2, -1))
            if not np.isfinite(loss).all():
                raise InputError(f"{fn}: the loss diverged at step {k}; lr is too large for "
                                 "these factors, pass a smaller lr")
            if tol is not None:
                now = active & (loss <= tol)
                if now.any():
                    stopped[now] = k
                    active &= ~now
                    eta[now] = 0.0
            done = k == steps or not active.any()
            if k % every == 0 or done:
                log_steps.append(k)
                log_W.append(W.copy())
                log_loss.append(loss)
            if done:
                break
            f -= eta * _grads(f, 2 * res)
            W = _np_product(f)
            det = _det(W)
            np.minimum(det_min, det, out=det_min)
            np.maximum(det_max, det, out=det_max)
            k += 1

    def back(a):
        return torch.as_tensor(np.asarray(a)).to(dtype=ft.dtype, device=ft.device)

    return MatrixRun(factors=back(f), W=back(W), steps=torch.tensor(log_steps),
                     products=back(np.stack(log_W)), losses=back(np.stack(log_loss)),
                     det_min=back(det_min), det_max=back(det_max),
                     stopped=torch.as_tensor(stopped, device=ft.device))


# ------------------------------------------------------------------------------- spectra


def effective_rank(W: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli 2007) ``exp(-sum p log p)``, ``p = sigma/|sigma|_1``,
    of ``W [..., m, n]`` (at least one non-zero singular value): ``[...]``."""
    fn = f"{_MOD}.effective_rank"
    W = validation.tensor(W, "W", fn=fn, min_ndim=2, layout="[..., m, n]")
    s = torch.linalg.svdvals(W)
    tot = s.sum(-1, keepdim=True)
    if not bool((tot > 0).all()):
        raise InputError(f"{fn}: W has a zero matrix, whose effective rank is undefined")
    p = s / tot
    return torch.exp(-torch.xlogy(p, p).sum(-1))


def schatten(W: torch.Tensor, p: float) -> torch.Tensor:
    """Schatten-``p`` (quasi-)norm ``(sum_r sigma_r^p)^(1/p)`` of ``W [..., m, n]``, ``p > 0``
    (``p = 1``: nuclear, ``2``: Frobenius, ``inf``: spectral): ``[...]``."""
    fn = f"{_MOD}.schatten"
    W = validation.tensor(W, "W", fn=fn, min_ndim=2, layout="[..., m, n]")
    p = validation.real(p, "p", fn=fn, lo=0, lo_open=True, finite=False)
    s = torch.linalg.svdvals(W)
    if math.isinf(p):
        return s[..., 0]
    return s.pow(p).sum(-1).pow(1.0 / p)


# ------------------------------------------------------------------------------- tensors


def _cp(factors, fn: str) -> torch.Tensor:
    f = validation.tensor(factors, "factors", fn=fn, ndim=4, layout="[B, N, R, d]")
    if f.shape[1] < 2:
        raise InputError(f"{fn}: factors must have order N >= 2, got {f.shape[1]}")
    return f


_LETTERS = "ijklmnopq"


def _cp_tensor(f: torch.Tensor) -> torch.Tensor:
    N = f.shape[1]
    ins = ",".join(f"br{_LETTERS[n]}" for n in range(N))
    return torch.einsum(f"{ins}->b{_LETTERS[:N]}", *f.unbind(1))


def cp_tensor(factors: torch.Tensor) -> torch.Tensor:
    """``T = sum_r w_r^(1) x ... x w_r^(N)`` of ``factors [B, N, R, d]``: ``[B, d, ..., d]``."""
    return _cp_tensor(_cp(factors, f"{_MOD}.cp_tensor"))


def component_norms(factors: torch.Tensor) -> torch.Tensor:
    """Norms of the rank-one components, ``|W_r| = prod_n |w_r^(n)|``: ``[B, R]``."""
    f = _cp(factors, f"{_MOD}.component_norms")
    return f.norm(dim=-1).prod(1)


def cp_init(order: int, rank: int, dim: int, scale: float, seeds, *,
            dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Small balanced CP factors ``[B, N, R, d]``: each ``w_r^(n)`` a uniformly random
    direction times ``scale``, so every component has norm ``scale^N`` and its ``N``
    vectors equal norms; run ``b`` draws from a generator seeded by ``seeds[b]``."""
    fn = f"{_MOD}.cp_init"
    order = validation.integer(order, "order", fn=fn, lo=2, hi=len(_LETTERS))
    rank = validation.integer(rank, "rank", fn=fn, lo=1, hi=10**4)
    dim = validation.integer(dim, "dim", fn=fn, lo=1, hi=10**4)
    scale = validation.real(scale, "scale", fn=fn, lo=0, lo_open=True)
    seeds = _seeds(seeds, fn)
    dtype = validation.floating_dtype(dtype, fn=fn)
    out = []
    for s in seeds:
        g = torch.randn(order, rank, dim, generator=validation.seeded_generator(s),
                        dtype=torch.float64)
        out.append(scale * g / g.norm(dim=-1, keepdim=True))
    return torch.stack(out).to(dtype=dtype, device=device)


@dataclass(frozen=True)
class CPRun:
    """A batched gradient-descent run of CP tensor factorization.

    ``factors [B, N, R, d]``: last iterate; ``steps [K]`` the logged steps; ``losses [K, B]``;
    ``norms [K, B, R]`` the component norms; ``align [K, B, R]`` each component's alignment
    ``<-grad l(T), w^(1)/|w^(1)| x ... x w^(N)/|w^(N)|>`` at the logged step;
    ``rate [K, B, R]`` the norm's change in the step that follows, divided by ``lr``
    (zero at the last logged step).
    """

    factors: torch.Tensor
    steps: torch.Tensor
    losses: torch.Tensor
    norms: torch.Tensor
    align: torch.Tensor
    rate: torch.Tensor


def _cp_grads(f: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``dl/dw_r^(n) = <G, ... x w_r^(m) x ...>`` (all modes but ``n``): ``[B, N, R, d]``."""
    B, N, R, d = f.shape
    out = []
    for n in range(N):
        H = G.movedim(n + 1, 1).reshape(B, d, -1)      # [B, d_n, prod of the other axes]
        others = [f[:, m] for m in range(N) if m != n]
        K = others[0]
        for w in others[1:]:                           # Khatri-Rao: [B, R, d^(N-1)]
            K = (K.unsqueeze(-1) * w.unsqueeze(-2)).reshape(B, R, -1)
        out.append((H @ K.mT).mT)                      # [B, R, d]
    return torch.stack(out, dim=1)


def _align(f: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    u = f / f.norm(dim=-1, keepdim=True)
    N = f.shape[1]
    ins = [f"b{_LETTERS[:N]}"] + [f"br{_LETTERS[m]}" for m in range(N)]
    return -torch.einsum(f"{','.join(ins)}->br", G, *u.unbind(1))


@threads.fair_share
def train_cp(factors: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, lr: float,
             steps: int, tol: float | None = None, every: int = 100) -> CPRun:
    """Gradient descent on CP factors ``[B, N, R, d]`` for the loss
    ``l = sum mask * (T - target)^2`` (``target``, ``mask [d, ..., d]``, ``N`` axes); stops
    after ``steps`` steps or once every run's loss is ``<= tol`` (checked when logging)."""
    fn = f"{_MOD}.train_cp"
    f = _cp(factors, fn).clone()
    N, d = f.shape[1], f.shape[3]
    target = validation.tensor(target, "target", fn=fn, shape=(d,) * N, layout="[d]*N",
                               dtype=f.dtype, device=f.device, like="the factors are")
    mask = validation.tensor(mask, "mask", fn=fn, shape=(d,) * N, layout="[d]*N",
                             dtype=f.dtype, device=f.device, like="the factors are")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError(f"{fn}: mask must hold only 0 and 1 (1 = observed entry)")
    lr = validation.real(lr, "lr", fn=fn, lo=0, lo_open=True)
    steps, every, tol = _schedule(steps, every, tol, fn)
    log = {"steps": [], "losses": [], "norms": [], "align": [], "rate": []}
    for k in range(steps + 1):
        G = 2 * mask * (_cp_tensor(f) - target)
        loss = (G * G).sum(tuple(range(1, N + 1))) / 4
        if not validation.is_finite(loss):
            raise InputError(f"{fn}: the loss diverged at step {k}; lr is too large, pass a "
                             "smaller lr")
        logging = k % every == 0 or k == steps
        if logging:
            norms = f.norm(dim=-1).prod(1)
            log["steps"].append(k)
            log["losses"].append(loss)
            log["norms"].append(norms)
            log["align"].append(_align(f, G))
        if k == steps or (logging and tol is not None and bool((loss <= tol).all())):
            log["rate"].append(torch.zeros_like(log["norms"][-1]))
            break
        f = f - lr * _cp_grads(f, G)
        if logging:
            log["rate"].append((f.norm(dim=-1).prod(1) - norms) / lr)
    return CPRun(factors=f, steps=torch.tensor(log["steps"]),
                 **{k: torch.stack(v) for k, v in log.items() if k != "steps"})

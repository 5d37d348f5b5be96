"""Diagonal linear networks: ``beta = u * v``, their training dynamics and implicit biases.

A diagonal linear network predicts ``x -> <u * v, x>`` with ``u, v`` in ``R^d``; it is
trained on the square loss ``L(beta) = |X beta - y|^2 / (2n)`` (``X [n, d]``, ``n < d``).
Every function here is batched over *runs* (independent trainings that share ``X, y``):
parameters are ``[R, d]`` tensors, and a run's initial scale ``alpha`` (``[R]`` or
``[R, d]``) and step size ``gamma`` (``[R]``) may differ. The initialization is the one of
Even, Pesme, Gunasekar & Flammarion (2023): ``u0 = sqrt(2) alpha``, ``v0 = 0``, so
``beta0 = 0``.

* :func:`train` runs gradient descent (``batch=None``) or SGD (``batch=b``: at each step
  ``b`` distinct examples drawn uniformly; each run draws its batches from its own
  generator, seeded from ``seeds``), and accumulates along the way the exact effective
  scale ``alpha_k = alpha * exp(-1/2 sum_{i<k} q(gamma g_i))`` with
  ``q(x) = -ln|1 - x^2|`` (:func:`step_q`) and the offset ``phi_k`` that together give
  ``beta_k = alpha_k^2 sinh(-2 gamma sum_i g_i + phi_k)`` exactly.
* :func:`flow` integrates gradient flow on ``(u, v)`` by classical Runge-Kutta (RK4) with
  a small fixed step: the flow is smooth and, once fitted, exponentially stable, so a
  fourth-order method with ``dt`` far below the stiffness scale reaches a limit whose
  distance to the exact flow's limit is measured by the drift of the flow's conserved
  quantity ``u^2 - v^2`` (returned as ``drift``), which RK4 does not conserve exactly.
* :func:`potential` is ``psi_alpha(beta) = 1/2 sum_j (beta_j asinh(beta_j/alpha_j^2)
  - sqrt(beta_j^2 + alpha_j^4) + alpha_j^2)``, whose gradient is ``1/2 asinh(beta/alpha^2)``
  (:func:`potential_grad`); :func:`woodworth_q` is the ``q`` of Woodworth et al. (2020),
  with ``psi_alpha(beta) = sum_j alpha_j^2 q(2 beta_j / alpha_j^2) / 4``.
* :func:`interpolant` solves ``min D_psi_alpha(beta, ref) s.t. X beta = y`` by Newton's
  method on the dual. The minimizer has the form ``beta = alpha^2 sinh(X^T nu + phi)``,
  ``phi = asinh(ref / alpha^2)``, with ``nu`` in ``R^n`` minimizing the smooth, strictly
  convex ``F(nu) = sum_j alpha_j^2 cosh((X^T nu + phi)_j) - <nu, y>`` (its Hessian
  ``X diag(alpha^2 cosh) X^T`` is positive definite when ``X`` has full row rank): ``n``
  unknowns instead of ``d``, a positive-definite ``n x n`` system per step, and quadratic
  convergence, so that the KKT residual reaches ``1e-12`` in float64. Stationarity holds by
  construction; the residual is the feasibility ``|X beta - y| / |y|``.
* :func:`kkt_residual` measures how far a given ``beta`` is from that minimizer's KKT
  conditions; :func:`min_l2` and :func:`min_l1` are the two limits of the potential
  (``alpha -> infinity`` and ``alpha -> 0``).

Every function checks its input with :mod:`dltheory.validation`, draws randomness only from
generators it builds from ``seeds`` (never torch's global generator), and works on any
device (the batch draws are made on the CPU and moved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import threads, validation
from .errors import InputError

__all__ = [
    "DiagRun", "FlowRun", "Interpolant",
    "woodworth_q", "step_q", "potential", "potential_grad", "bregman",
    "interpolant", "kkt_residual", "min_l2", "min_l1", "loss",
    "train", "flow",
]

_MOD = "diagonal"


# ----------------------------------------------------------------------------- checking


def _data(X, y, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d]")
    y = validation.tensor(y, "y", fn=fn, ndim=1, layout="[n]", dtype=X.dtype,
                          device=X.device, like="X is")
    if y.shape[0] != X.shape[0]:
        raise InputError(f"{fn}: y has {y.shape[0]} entries but X has {X.shape[0]} rows; "
                         "pass one target per row of X")
    return X, y


def _runs_vector(x, name: str, fn: str, like: torch.Tensor, *, positive: bool = True
                 ) -> torch.Tensor:
    """A per-run tensor ``[R]`` or per-run, per-coordinate ``[R, d]`` (also a float)."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        v = validation.real(x, name, fn=fn, lo=0 if positive else None, lo_open=positive)
        return torch.full((1,), v, dtype=like.dtype, device=like.device)
    x = validation.tensor(x, name, fn=fn, ndim=(1, 2), layout="[R] or [R, d]",
                          dtype=like.dtype, device=like.device, like="X is")
    if positive and not bool((x > 0).all()):
        raise InputError(f"{fn}: {name} must be > 0 everywhere, got min {float(x.min()):g}")
    return x


def _as_rd(a: torch.Tensor, R: int, d: int, name: str, fn: str) -> torch.Tensor:
    """Broadcast ``[R]``/``[1]``/``[R, d]`` to ``[R, d]``."""
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[1] not in (1, d) or a.shape[0] not in (1, R):
        raise InputError(f"{fn}: {name} has shape {tuple(a.shape)}, which does not match "
                         f"{R} runs of dimension {d}; pass [R] or [R, d]")
    return a.expand(R, d)


def _beta(beta, name: str, fn: str, *, d: int | None = None, like=None) -> torch.Tensor:
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device, "like": "X is"}
    beta = validation.tensor(beta, name, fn=fn, ndim=(1, 2), layout="[d] or [R, d]", **kw)
    if d is not None and beta.shape[-1] != d:
        raise InputError(f"{fn}: {name} has {beta.shape[-1]} coordinates but X has {d} "
                         "columns")
    return beta


# ---------------------------------------------------------------------------- potentials


def woodworth_q(z: torch.Tensor) -> torch.Tensor:
    """``q(z) = 2 - sqrt(4 + z^2) + z asinh(z / 2)`` elementwise (Woodworth et al. 2020),
    with ``q'(z) = asinh(z/2)``; any shape."""
    z = validation.tensor(z, "z", fn=f"{_MOD}.woodworth_q")
    return 2 - torch.sqrt(4 + z * z) + z * torch.asinh(z / 2)


def step_q(x: torch.Tensor) -> torch.Tensor:
    """``q(x) = -1/2 ln((1 - x^2)^2) = -ln|1 - x^2|`` elementwise: the log-shrinkage of
    ``u^2 - v^2`` in one step with ``x = gamma g``. ``q >= 0`` iff ``|x| <= sqrt(2)``;
    at ``|x| = 1`` it is ``+inf``. Any shape."""
    x = validation.tensor(x, "x", fn=f"{_MOD}.step_q")
    return _step_q(x)


def _step_q(x: torch.Tensor) -> torch.Tensor:
    x2 = x * x
    return -torch.where(x2 < 1, torch.log1p(-x2), torch.log(torch.abs(1 - x2)))


def _alpha2(alpha, beta: torch.Tensor, fn: str) -> torch.Tensor:
    if isinstance(alpha, torch.Tensor):
        alpha = validation.tensor(alpha, "alpha", fn=fn, dtype=beta.dtype,
                                  device=beta.device, like="beta is")
        if not bool((alpha > 0).all()):
            raise InputError(f"{fn}: alpha must be > 0 everywhere")
        if alpha.ndim == 1 and beta.ndim == 2 and alpha.shape[0] == beta.shape[0] \
                and alpha.shape[0] != beta.shape[1]:
            alpha = alpha[:, None]
        try:
            torch.broadcast_shapes(alpha.shape, beta.shape)
        except RuntimeError:
            raise InputError(f"{fn}: alpha of shape {tuple(alpha.shape)} does not broadcast "
                             f"against beta of shape {tuple(beta.shape)}") from None
        return alpha * alpha
    a = validation.real(alpha, "alpha", fn=fn, lo=0, lo_open=True)
    return torch.tensor(a * a, dtype=beta.dtype, device=beta.device)


def potential(beta: torch.Tensor, alpha) -> torch.Tensor:
    """``psi_alpha(beta) = 1/2 sum_j [beta_j asinh(beta_j/alpha_j^2) - sqrt(beta_j^2 +
    alpha_j^4) + alpha_j^2]``, summed over the last axis.

    ``beta``: ``[d]`` or ``[R, d]``; ``alpha``: a positive float, ``[d]``, ``[R]`` (one scale
    per run) or ``[R, d]``. Returns ``[]`` or ``[R]``. Convex, ``>= 0``, zero at ``beta = 0``.
    """
    fn = f"{_MOD}.potential"
    beta = _beta(beta, "beta", fn)
    a2 = _alpha2(alpha, beta, fn)
    return 0.5 * (beta * torch.asinh(beta / a2) - torch.sqrt(beta * beta + a2 * a2)
                  + a2).sum(-1)


def potential_grad(beta: torch.Tensor, alpha) -> torch.Tensor:
    """``grad psi_alpha(beta) = 1/2 asinh(beta / alpha^2)``, the shape of ``beta``."""
    fn = f"{_MOD}.potential_grad"
    beta = _beta(beta, "beta", fn)
    return 0.5 * torch.asinh(beta / _alpha2(alpha, beta, fn))


def bregman(beta: torch.Tensor, ref: torch.Tensor, alpha) -> torch.Tensor:
    """``D_psi_alpha(beta, ref) = psi(beta) - psi(ref) - <grad psi(ref), beta - ref>``."""
    fn = f"{_MOD}.bregman"
    beta = _beta(beta, "beta", fn)
    ref = _beta(ref, "ref", fn, d=beta.shape[-1], like=beta)
    a2 = _alpha2(alpha, beta, fn)

    def psi(b):
        return 0.5 * (b * torch.asinh(b / a2) - torch.sqrt(b * b + a2 * a2) + a2)

    return (psi(beta) - psi(ref) - 0.5 * torch.asinh(ref / a2) * (beta - ref)).sum(-1)


# --------------------------------------------------------------------------- interpolants


@dataclass(frozen=True)
class Interpolant:
    """The minimizer ``beta [R, d]`` of ``D_psi_alpha(., ref)`` on ``{X beta = y}``, its dual
    variable ``nu [R, n]`` (``beta = alpha^2 sinh(X^T nu + asinh(ref/alpha^2))``), the KKT
    residual ``|X beta - y| / |y|`` per run ``[R]`` and the Newton iterations used."""

    beta: torch.Tensor
    nu: torch.Tensor
    kkt: torch.Tensor
    iterations: int


def _check_tol(tol, fn: str) -> float:
    return validation.real(tol, "tol", fn=fn, lo=0, lo_open=True, hi=1)


def interpolant(X: torch.Tensor, y: torch.Tensor, alpha, *, ref: torch.Tensor | None = None,
                tol: float = 1e-12, max_iter: int = 500) -> Interpolant:
    """``argmin_{X beta = y} D_psi_alpha(beta, ref)`` for each run, by damped Newton on the
    dual (see the module's docstring).

    ``X [n, d]`` of full row rank, ``y [n]``; ``alpha``: positive float, ``[R]`` or
    ``[R, d]``; ``ref``: ``None`` (``ref = 0``: the minimizer of ``psi_alpha`` itself),
    ``[d]`` or ``[R, d]``. Stops when every run's ``|X beta - y|/|y| <= tol``; raises
    :class:`~dltheory.errors.InputError` naming ``max_iter`` when it does not get there.
    """
    fn = f"{_MOD}.interpolant"
    X, y = _data(X, y, fn)
    n, d = X.shape
    a = _runs_vector(alpha, "alpha", fn, X)
    tol = _check_tol(tol, fn)
    max_iter = validation.integer(max_iter, "max_iter", fn=fn, lo=1, hi=10**6)
    R = a.shape[0]
    if ref is not None:
        ref = _beta(ref, "ref", fn, d=d, like=X)
        R = max(R, ref.shape[0] if ref.ndim == 2 else 1)
    a2 = _as_rd(a, R, d, "alpha", fn) ** 2
    phi = torch.zeros(R, d, dtype=X.dtype, device=X.device) if ref is None else \
        torch.asinh(ref.expand(R, d) / a2)
    nu = torch.zeros(R, n, dtype=X.dtype, device=X.device)
    ynorm = torch.linalg.vector_norm(y).clamp_min(torch.finfo(X.dtype).tiny)

    def dual(nu_):
        return (a2 * torch.cosh(nu_ @ X + phi)).sum(-1) - nu_ @ y

    for it in range(max_iter + 1):
        z = nu @ X + phi
        beta = a2 * torch.sinh(z)
        grad = beta @ X.T - y                                    # [R, n]
        kkt = torch.linalg.vector_norm(grad, dim=-1) / ynorm
        if bool((kkt <= tol).all()):
            return Interpolant(beta, nu, kkt, it)
        if it == max_iter:
            break
        H = (X * (a2 * torch.cosh(z))[:, None, :]) @ X.T          # [R, n, n]
        step = torch.linalg.solve(H, -grad[..., None])[..., 0]
        f0, slope = dual(nu), (grad * step).sum(-1)               # slope < 0
        t = torch.ones(R, dtype=X.dtype, device=X.device)
        for _ in range(60):     # Armijo backtracking, or a decrease of |grad F| (near the
            trial = nu + t[:, None] * step     # optimum F's decrease drowns in rounding)
            f1 = dual(trial)
            g1 = torch.linalg.vector_norm(a2 * torch.sinh(trial @ X + phi) @ X.T - y, dim=-1)
            bad = ~((f1 <= f0 + 0.25 * t * slope) | (g1 < 0.5 * kkt * ynorm)) & (kkt > tol)
            if not bool(bad.any()):
                break
            t = torch.where(bad, t / 2, t)
        nu = torch.where((kkt > tol)[:, None], nu + t[:, None] * step, nu)
    raise InputError(f"{fn}: Newton did not reach the KKT residual tol={tol:g} in "
                     f"max_iter={max_iter} iterations (worst {float(kkt.max()):.3g}); raise "
                     "max_iter, or check that X has full row rank")


def kkt_residual(X: torch.Tensor, y: torch.Tensor, beta: torch.Tensor, alpha, *,
                 ref: torch.Tensor | None = None) -> torch.Tensor:
    """How far ``beta [d] or [R, d]`` is from the KKT conditions of
    ``min D_psi_alpha(., ref) s.t. X beta = y``: the larger of the relative infeasibility
    ``|X beta - y| / |y|`` and the relative part of ``asinh(beta/alpha^2) - asinh(ref/
    alpha^2)`` outside the row space of ``X``. Returns ``[]`` or ``[R]``."""
    fn = f"{_MOD}.kkt_residual"
    X, y = _data(X, y, fn)
    beta = _beta(beta, "beta", fn, d=X.shape[1], like=X)
    a2 = _alpha2(alpha, beta, fn)
    if ref is not None:
        ref = _beta(ref, "ref", fn, d=X.shape[1], like=X)
    w = torch.asinh(beta / a2) - (0 if ref is None else torch.asinh(ref / a2))
    coef = torch.linalg.lstsq(X.T, w.reshape(-1, X.shape[1]).T).solution   # [n, R]
    out_of_row = w - (X.T @ coef).T.reshape(w.shape)
    stat = torch.linalg.vector_norm(out_of_row, dim=-1) / torch.linalg.vector_norm(
        w, dim=-1).clamp_min(torch.finfo(X.dtype).tiny)
    feas = torch.linalg.vector_norm(beta @ X.T - y, dim=-1) / torch.linalg.vector_norm(
        y).clamp_min(torch.finfo(X.dtype).tiny)
    return torch.maximum(stat, feas)


def min_l2(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The minimum-l2-norm interpolant ``X^T (X X^T)^{-1} y`` ``[d]``."""
    X, y = _data(X, y, f"{_MOD}.min_l2")
    return X.T @ torch.linalg.solve(X @ X.T, y)


def min_l1(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The minimum-l1-norm interpolant ``[d]``: the linear program ``min 1^T (p + m)``,
    ``X (p - m) = y``, ``p, m >= 0``, solved by HiGHS (``scipy.optimize.linprog``),
    then polished: the LP's basic support ``S`` is kept and ``X_S beta_S = y`` solved in
    float64 (accurate to rounding when ``X_S`` is well conditioned)."""
    import numpy as np
    from scipy.optimize import linprog

    fn = f"{_MOD}.min_l1"
    X, y = _data(X, y, fn)
    Xn, yn = X.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    d = Xn.shape[1]
    res = linprog(np.ones(2 * d), A_eq=np.hstack([Xn, -Xn]), b_eq=yn, bounds=(0, None),
                  method="highs")
    if res.status != 0:
        raise InputError(f"{fn}: the linear program failed ({res.message}); check X and y")
    b = res.x[:d] - res.x[d:]
    S = np.flatnonzero(np.abs(b) > 1e-9 * max(1.0, np.abs(b).max()))
    sol, *_ = np.linalg.lstsq(Xn[:, S], yn, rcond=None)
    out = np.zeros(d)
    out[S] = sol
    return torch.as_tensor(out, dtype=X.dtype, device=X.device)


def loss(X: torch.Tensor, y: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``L(beta) = |X beta - y|^2 / (2n)`` for ``beta [d]`` or ``[R, d]``."""
    fn = f"{_MOD}.loss"
    X, y = _data(X, y, fn)
    beta = _beta(beta, "beta", fn, d=X.shape[1], like=X)
    r = beta @ X.T - y
    return 0.5 * (r * r).mean(-1)


# ------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class DiagRun:
    """The result of :func:`train` for ``R`` runs.

    ``u, v, beta``: final parameters ``[R, d]``; ``alpha``: the initial scales ``[R, d]``;
    ``alpha_inf``: the accumulated effective scale ``alpha * exp(-1/2 sum_k q(gamma g_k))``
    ``[R, d]`` (``alpha_inf = alpha`` exactly for gradient flow); ``phi``: the offset
    ``-2 sum_k (atanh(gamma g_k) - gamma g_k)`` ``[R, d]``, so that
    ``beta = alpha_inf^2 sinh(-2 gamma sum_k g_k + phi)``; ``ref``: the point
    ``alpha_inf^2 sinh(phi)`` of the Bregman divergence whose constrained minimizer the run
    converges to; ``int_loss``: ``sum_k gamma L(beta_k)`` ``[R]`` (the integrated loss in
    the flow's time ``t = k gamma``); ``sum_sq``: ``sum_k (gamma g_k)^2`` ``[R, d]`` (the
    first-order approximation ``q(x) ~ x^2`` of the log-shrinkage); ``losses``: full-batch
    loss ``[T, R]`` recorded every ``every`` steps (from step 0); ``steps``: steps taken;
    ``trajectory``: when ``record=True``, ``(u, v, log_ratio)`` each ``[steps+1, R, d]`` with
    ``log_ratio[k] = ln(alpha_k^2/alpha^2) = -sum_{i<k} q(gamma g_i)``; else None.
    """

    u: torch.Tensor
    v: torch.Tensor
    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_inf: torch.Tensor
    phi: torch.Tensor
    ref: torch.Tensor
    int_loss: torch.Tensor
    losses: torch.Tensor
    steps: int
    sum_sq: torch.Tensor
    trajectory: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def _atanh_any(x: torch.Tensor) -> torch.Tensor:
    """``1/2 ln|(1 + x)/(1 - x)|``: ``atanh`` for ``|x| < 1``, its continuation beyond."""
    return 0.5 * (torch.log(torch.abs(1 + x)) - torch.log(torch.abs(1 - x))) \
        if bool((x.abs() >= 1).any()) else torch.atanh(x)


def _batches(seeds: list[int], steps: int, n: int, b: int) -> torch.Tensor:
    """Batch indices ``[steps, R, b]``: run ``r`` draws from its own generator seeded with
    ``seeds[r]`` (so a run's batches do not depend on the other runs)."""
    out = torch.empty(steps, len(seeds), b, dtype=torch.long)
    for r, s in enumerate(seeds):
        g = validation.seeded_generator(int(s))
        out[:, r] = torch.rand(steps, n, generator=g).argsort(-1)[:, :b]
    return out


@threads.fair_share
def train(X: torch.Tensor, y: torch.Tensor, *, alpha, gamma, steps: int,
          batch: int | None = None, seeds=None, generator: torch.Generator | None = None,
          tol: float | None = None, every: int = 100, record: bool = False) -> DiagRun:
    """Gradient descent (``batch=None``) or SGD (``batch=b``) on ``beta = u * v`` for ``R``
    runs at once, from ``u0 = sqrt(2) alpha``, ``v0 = 0``.

    One step: ``g = grad L_B(beta)`` (the loss of the step's batch ``B``, all rows for GD),
    ``u <- u - gamma g v``, ``v <- v - gamma g u``. ``alpha``: positive float, ``[R]`` or
    ``[R, d]``; ``gamma``: positive float or ``[R]``; ``seeds``: one integer per run (a list
    or an integer tensor ``[R]``) seeding that run's batch generator (SGD; ignored for GD);
    when None, the seeds are drawn from ``generator`` (default: a generator seeded from the
    profile, :func:`dltheory.validation.seeded_generator`), never from torch's global
    generator; ``tol``: stop early
    once every run's full-batch loss is ``<= tol`` (checked every ``every`` steps);
    ``record``: keep every iterate (memory ``3 (steps+1) R d``). Raises
    :class:`~dltheory.errors.InputError` naming ``gamma`` when a run diverges.
    """
    fn = f"{_MOD}.train"
    X, y = _data(X, y, fn)
    n, d = X.shape
    a = _runs_vector(alpha, "alpha", fn, X)
    g_ = _runs_vector(gamma, "gamma", fn, X)
    if g_.ndim != 1:
        raise InputError(f"{fn}: gamma must be a float or [R], got shape {tuple(g_.shape)}")
    steps = validation.integer(steps, "steps", fn=fn, lo=0, hi=10**8)
    every = validation.integer(every, "every", fn=fn, lo=1)
    record = validation.boolean(record, "record", fn=fn)
    if tol is not None:
        tol = validation.real(tol, "tol", fn=fn, lo=0, lo_open=True)
    if batch is not None:
        batch = validation.integer(batch, "batch", fn=fn, lo=1, hi=n)
    R = max(a.shape[0], g_.shape[0])
    if batch is not None:
        if seeds is None:
            gen = validation.generator(generator, fn=fn)
            seeds = torch.randint(0, 2**62, (R,), generator=gen).tolist()
        if isinstance(seeds, torch.Tensor):
            seeds = validation.tensor(seeds, "seeds", fn=fn, ndim=1, floating=False)
            if seeds.is_floating_point() or seeds.dtype == torch.bool:
                raise validation.InputTypeError(f"{fn}: seeds must be integers, got dtype "
                                                f"{seeds.dtype}")
            seeds = seeds.tolist()
        if not isinstance(seeds, list | tuple):
            raise validation.InputTypeError(f"{fn}: seeds must be a list of integers, got "
                                            f"{type(seeds).__name__}")
        seeds = [validation.integer(s, "seeds", fn=fn, lo=0, hi=2**63 - 1) for s in seeds]
        R = max(R, len(seeds))
        if len(seeds) not in (1, R):
            raise InputError(f"{fn}: seeds has {len(seeds)} entries for {R} runs")
        seeds = seeds * R if len(seeds) == 1 else seeds
    alpha_rd = _as_rd(a, R, d, "alpha", fn).clone()
    gam = _as_rd(g_, R, 1, "gamma", fn)                           # [R, 1]
    u = math.sqrt(2) * alpha_rd
    v = torch.zeros_like(u)
    log_ratio = torch.zeros_like(u)                              # ln(alpha_k^2/alpha^2)
    gsum = torch.zeros_like(u)                                   # sum_k gamma g_k
    phi = torch.zeros_like(u)
    sum_sq = torch.zeros_like(u)
    int_loss = torch.zeros(R, dtype=X.dtype, device=X.device)
    losses, traj = [], ([u.clone()], [v.clone()], [log_ratio.clone()]) if record else None
    chunk = 1000
    idx = None
    k = 0
    while True:
        r_full = (u * v) @ X.T - y                               # [R, n]
        lk = 0.5 * (r_full * r_full).mean(-1)
        if not validation.is_finite(lk) or not validation.is_finite(u):
            raise InputError(f"{fn}: the run diverged at step {k} (loss not finite); "
                             "decrease gamma")
        if k % every == 0:
            losses.append(lk)
            if tol is not None and bool((lk <= tol).all()):
                break
        if k == steps:
            break
        if batch is None:
            g = (r_full @ X) / n
        else:
            if k % chunk == 0:
                idx = _batches(seeds, min(chunk, steps - k), n, batch).to(X.device)
            mask = torch.zeros(R, n, dtype=X.dtype, device=X.device)
            mask.scatter_(1, idx[k % chunk], 1.0 / batch)
            g = (r_full * mask) @ X
        x = gam * g
        int_loss += gam[:, 0] * lk
        log_ratio -= _step_q(x)
        gsum += x
        sum_sq += x * x
        phi -= 2 * (_atanh_any(x) - x)
        u, v = u - x * v, v - x * u
        k += 1
        if record:
            traj[0].append(u.clone())
            traj[1].append(v.clone())
            traj[2].append(log_ratio.clone())
    alpha_inf = alpha_rd * torch.exp(0.5 * log_ratio)
    trajectory = None if traj is None else tuple(torch.stack(t) for t in traj)
    return DiagRun(u=u, v=v, beta=u * v, alpha=alpha_rd, alpha_inf=alpha_inf, phi=phi,
                   ref=alpha_inf ** 2 * torch.sinh(phi), int_loss=int_loss,
                   losses=torch.stack(losses), steps=k, sum_sq=sum_sq, trajectory=trajectory)


@dataclass(frozen=True)
class FlowRun:
    """The result of :func:`flow`: final ``u, v, beta`` ``[R, d]``, the loss at the end
    ``[R]``, and ``drift``: ``max_t |u^2 - v^2 - 2 alpha^2| / (u^2 + v^2)`` over the
    integration ``[R]`` (the flow conserves ``u^2 - v^2``; RK4 does only approximately)."""

    u: torch.Tensor
    v: torch.Tensor
    beta: torch.Tensor
    loss: torch.Tensor
    drift: torch.Tensor


@threads.fair_share
def flow(X: torch.Tensor, y: torch.Tensor, *, alpha, time: float, dt: float) -> FlowRun:
    """Gradient flow ``u' = -g v``, ``v' = -g u`` (``g = grad L(u * v)``) from
    ``u0 = sqrt(2) alpha``, ``v0 = 0`` up to ``time``, by RK4 with step ``dt``, for ``R``
    runs at once (``alpha``: positive float, ``[R]`` or ``[R, d]``)."""
    fn = f"{_MOD}.flow"
    X, y = _data(X, y, fn)
    n, d = X.shape
    a = _runs_vector(alpha, "alpha", fn, X)
    time = validation.real(time, "time", fn=fn, lo=0, lo_open=True)
    dt = validation.real(dt, "dt", fn=fn, lo=0, lo_open=True, hi=time)
    R = a.shape[0]
    alpha_rd = _as_rd(a, R, d, "alpha", fn)
    u, v = math.sqrt(2) * alpha_rd, torch.zeros_like(alpha_rd)
    c0 = 2 * alpha_rd ** 2
    drift = torch.zeros(R, dtype=X.dtype, device=X.device)

    def field(u_, v_):
        g = ((u_ * v_) @ X.T - y) @ X / n
        return -g * v_, -g * u_

    steps = int(math.ceil(time / dt - 1e-9))
    h = time / steps
    for k in range(steps):
        k1u, k1v = field(u, v)
        k2u, k2v = field(u + h / 2 * k1u, v + h / 2 * k1v)
        k3u, k3v = field(u + h / 2 * k2u, v + h / 2 * k2v)
        k4u, k4v = field(u + h * k3u, v + h * k3v)
        u = u + h / 6 * (k1u + 2 * k2u + 2 * k3u + k4u)
        v = v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
        if k % 50 == 49 or k == steps - 1:
            uu, vv = u * u, v * v
            drift = torch.maximum(drift, ((uu - vv - c0).abs() / (uu + vv)).amax(-1))
            if not validation.is_finite(u):
                raise InputError(f"{fn}: the integration diverged at t = {(k + 1) * h:g}; "
                                 "decrease dt")
    beta = u * v
    r = beta @ X.T - y
    return FlowRun(u=u, v=v, beta=beta, loss=0.5 * (r * r).mean(-1), drift=drift)

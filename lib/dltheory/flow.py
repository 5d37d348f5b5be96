"""Gradient flow and gradient descent side by side: a real ODE solver, closed forms on
quadratics, and the discrete Grönwall bound on their distance (Elkabetz & Cohen 2021).

Every function works on a loss over a *flat* parameter vector, batched over runs: a loss is
a callable mapping ``theta [R, p]`` to ``[R]`` (run ``r``'s loss at ``theta[r]``), so that
``R`` runs (seeds, step sizes) share one forward and one backward pass.

* :func:`gd` runs gradient descent ``theta_{k+1} = theta_k - lr_r grad f(theta_k)`` for
  every run at once, each with its own step size ``lr [R]``, and records each run at the
  *times* ``t_j`` (run ``r`` at its step ``t_j / lr_r``, which must be an integer).
* :func:`flow` integrates the gradient flow ``dtheta/dt = -grad f(theta)`` of all runs as
  one ODE system with ``scipy.integrate.solve_ivp``: by default ``DOP853`` (Dormand-Prince
  8(5,3), an explicit Runge-Kutta method of order 8 with embedded error estimators and
  step-size control) at ``rtol = 1e-10``, ``atol = 1e-12``. Why this solver: the flows
  here are smooth (or piecewise smooth, for ReLU) and not stiff on the time scales
  integrated (the step it takes is set by accuracy, not stability, since ``lr * lambda_max``
  of the GD runs it is compared with is below 2); an 8th-order method reaches ``1e-10``
  with few evaluations, and its error control adapts the step where the flow turns
  (escaping a saddle). ``method="Radau"`` (implicit, order 5) is available for stiff
  problems. The tests check it against the closed forms of :func:`quadratic_flow`.
* :func:`quadratic_gd` and :func:`quadratic_flow` are the closed forms on
  ``f(theta) = theta^T A theta / 2`` (symmetric ``A``, any signature): with
  ``A = V diag(lambda) V^T``, GD is ``V (1 - lr lambda)^k V^T theta_0`` and the flow
  ``V exp(-lambda t) V^T theta_0``.
* :func:`approximation_bound` is the recursion ``E_0 = 0``,
  ``E_{k+1} = (1 + lr Lambda_k) E_k + lr^2 m_k / 2`` of the approximation theorem, with
  ``Lambda_k >= 0`` the negative part of the Hessian's smallest eigenvalue near the flow at
  time ``k lr`` and ``m_k`` a bound on ``|d^2 theta / dt^2| = |H grad f|`` on
  ``[k lr, (k+1) lr]``; :func:`quadratic_bound` evaluates it exactly on a quadratic.
* :func:`mlp_loss` builds the square loss of a fully connected network (linear or ReLU)
  as a batched loss over flat parameters; :func:`hessian_eigenvalues` gives the Hessian
  spectrum of a loss at one point (float64, dense: for the small networks of the checks).

Every function checks its input with :mod:`dltheory.validation` and raises its errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import threads, validation
from .errors import InputError, InputTypeError

__all__ = [
    "FlowPath", "MLPLoss",
    "gd", "flow", "quadratic_gd", "quadratic_flow", "approximation_bound",
    "quadratic_bound", "mlp_loss", "hessian_eigenvalues",
]

_MOD = "flow"
_ACTS = ("linear", "relu")


# ----------------------------------------------------------------------------- checkers


def _loss(loss, fn: str) -> Callable:
    if not callable(loss):
        raise InputTypeError(f"{fn}: loss must be a callable mapping theta [R, p] to [R], "
                             f"got {type(loss).__name__}")
    return loss


def _theta(theta0, fn: str) -> torch.Tensor:
    return validation.tensor(theta0, "theta0", fn=fn, ndim=2, layout="[R, p]")


def _lr(lr, R: int, like: torch.Tensor, fn: str) -> torch.Tensor:
    if isinstance(lr, torch.Tensor):
        validation.tensor(lr, "lr", fn=fn, ndim=(0, 1), layout="[R]", dtype=like.dtype,
                          device=like.device, like="theta0 is")
        lr = lr.reshape(-1)
    else:
        lr = torch.tensor([validation.real(lr, "lr", fn=fn, lo=0.0, lo_open=True)],
                          dtype=like.dtype, device=like.device)
    if lr.numel() == 1:
        lr = lr.expand(R)
    if lr.numel() != R:
        raise InputError(f"{fn}: lr must have one entry per run ({R}), got {lr.numel()}")
    if bool((lr <= 0).any()):
        raise InputError(f"{fn}: lr must be positive, got min {float(lr.min()):g}")
    return lr


def _times(times, fn: str) -> np.ndarray:
    if isinstance(times, torch.Tensor):
        validation.tensor(times, "times", fn=fn, ndim=1, layout="[T]")
        t = times.detach().cpu().double().numpy()
    elif isinstance(times, list | tuple):
        if not times:
            raise InputError(f"{fn}: times is empty; pass at least one time")
        t = np.array([validation.real(v, "times", fn=fn) for v in times], dtype=float)
    else:
        raise InputTypeError(f"{fn}: times must be a 1-D tensor or a list of numbers, got "
                             f"{type(times).__name__}")
    if (t < 0).any() or (np.diff(t) <= 0).any():
        raise InputError(f"{fn}: times must be non-negative and increasing, got {t.tolist()}")
    return t


def _value_and_grad(loss: Callable, theta: torch.Tensor, fn: str):
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        val = loss(th)
        if not isinstance(val, torch.Tensor) or val.shape != (theta.shape[0],):
            raise InputError(f"{fn}: loss must return a tensor [R] = [{theta.shape[0]}], "
                             f"got {getattr(val, 'shape', type(val).__name__)}")
        (g,) = torch.autograd.grad(val.sum(), th)
    return val.detach(), g.detach()


# --------------------------------------------------------------------------------- runs


@threads.fair_share
def gd(loss: Callable, theta0: torch.Tensor, *, lr, times) -> torch.Tensor:
    """Gradient descent of ``R`` runs at once, each with its own step size.

    ``loss``: maps ``theta [R, p]`` to ``[R]``; ``theta0 [R, p]``; ``lr``: a number or
    ``[R]``; ``times [T]``: increasing times ``t_j >= 0`` at which run ``r`` is recorded
    after ``t_j / lr_r`` steps (an integer to ``1e-9`` relative). Returns ``[T, R, p]``.
    Raises :class:`InputError` when an iterate stops being finite (the step is too large).
    """
    fn = f"{_MOD}.gd"
    loss = _loss(loss, fn)
    theta = _theta(theta0, fn)
    R = theta.shape[0]
    lr = _lr(lr, R, theta, fn)
    t = _times(times, fn)
    k = t[:, None] / lr.cpu().double().numpy()[None, :]                 # [T, R]
    steps = np.rint(k).astype(np.int64)
    if (np.abs(k - steps) > 1e-9 * np.maximum(k, 1)).any():
        raise InputError(f"{fn}: every time must be a whole number of steps of every run "
                         "(times / lr must be integers)")
    out = torch.empty((len(t), *theta.shape), dtype=theta.dtype, device=theta.device)
    at = {}
    for j in range(len(t)):
        for r in range(R):
            at.setdefault(int(steps[j, r]), []).append((j, r))
    last = steps[-1]                                                       # [R]
    active = torch.as_tensor(np.arange(int(last.max()))[:, None] < last[None, :],
                             device=theta.device)                          # [K, R]
    x = theta.detach().clone()
    for step in range(int(last.max()) + 1):
        for j, r in at.get(step, ()):
            out[j, r] = x[r]
        if step == int(last.max()):
            break
        _, g = _value_and_grad(loss, x, fn)
        x = x - (lr * active[step]).unsqueeze(1) * g
        if not validation.is_finite(x):
            raise InputError(f"{fn}: the iterates are not finite after {step + 1} steps: "
                             "lr is too large for this loss; pass a smaller lr")
    return out


@dataclass(frozen=True)
class FlowPath:
    """The flow at ``times``: ``theta [T, R, p]``; ``nfev`` gradient evaluations (each of
    all ``R`` runs), ``method``, ``rtol``, ``atol`` (NaN for the fixed-step ``"RK4"``) and
    ``step`` (``"RK4"`` only, else None)."""

    theta: torch.Tensor
    nfev: int
    method: str
    rtol: float
    atol: float
    step: float | None = None


@threads.fair_share
def flow(loss: Callable, theta0: torch.Tensor, *, times, rtol: float = 1e-10,
         atol: float = 1e-12, method: str = "DOP853", step: float | None = None) -> FlowPath:
    """Gradient flow ``dtheta/dt = -grad f(theta)`` of ``R`` runs, integrated as one system
    by ``scipy.integrate.solve_ivp`` (``method`` ``"DOP853"``, ``"Radau"`` or ``"RK45"``,
    error control at ``rtol``/``atol``) in float64, recorded at ``times [T]`` (the first may
    be 0). Returns :class:`FlowPath` with ``theta [T, R, p]`` in ``theta0``'s dtype.

    ``method="RK4"`` is the classical fixed-step Runge-Kutta method with step ``step``
    (every time a whole number of steps), run in torch on ``theta0``'s device and dtype, for
    losses that are only piecewise smooth (ReLU): an error-controlled solver shrinks its
    step at every crossing of a kink, a fixed step crosses it with a local error of order
    ``step^2`` (order ``step^5`` between kinks). Its error is not controlled: estimate it by
    halving ``step`` (``rtol``/``atol`` are not used)."""
    fn = f"{_MOD}.flow"
    loss = _loss(loss, fn)
    theta = _theta(theta0, fn)
    t = _times(times, fn)
    method = validation.choice(method, "method", ("DOP853", "Radau", "RK45", "RK4"), fn=fn)
    if method == "RK4":
        if step is None:
            raise InputError(f"{fn}: method 'RK4' needs step=; pass a positive step size")
        return _rk4(loss, theta, t, validation.real(step, "step", fn=fn, lo=0.0, lo_open=True),
                    fn)
    if step is not None:
        raise InputError(f"{fn}: step= is only for method 'RK4' ({method} chooses its own "
                         "steps); drop step or pass method='RK4'")
    from scipy.integrate import solve_ivp

    rtol = validation.real(rtol, "rtol", fn=fn, lo=1e-14, hi=1e-2)
    atol = validation.real(atol, "atol", fn=fn, lo=1e-16, hi=1.0)
    shape, dev, dt = theta.shape, theta.device, theta.dtype

    def field(_s, z):
        x = torch.as_tensor(z, dtype=torch.float64).reshape(shape).to(device=dev, dtype=dt)
        _, g = _value_and_grad(loss, x, fn)
        return -g.reshape(-1).to(device="cpu", dtype=torch.float64).numpy()

    z0 = theta.detach().reshape(-1).to(device="cpu", dtype=torch.float64).numpy()
    if t[-1] == 0:
        out = np.repeat(z0[None], len(t), axis=0)
        nfev = 0
    else:
        sol = solve_ivp(field, (0.0, float(t[-1])), z0, method=method, t_eval=t, rtol=rtol,
                        atol=atol)
        if not sol.success or not np.isfinite(sol.y).all():
            raise InputError(f"{fn}: the solver failed ({sol.message}); the flow may blow "
                             "up before the last time: pass shorter times")
        out, nfev = sol.y.T, int(sol.nfev)
    th = torch.as_tensor(out).reshape(len(t), *shape).to(device=dev, dtype=dt)
    return FlowPath(th, nfev, method, rtol, atol)


def _rk4(loss: Callable, theta: torch.Tensor, t: np.ndarray, h: float, fn: str) -> FlowPath:
    k = t / h
    marks = np.rint(k).astype(np.int64)
    if (np.abs(k - marks) > 1e-9 * np.maximum(k, 1)).any():
        raise InputError(f"{fn}: every time must be a whole number of steps (times / step "
                         "must be integers)")
    out = torch.empty((len(t), *theta.shape), dtype=theta.dtype, device=theta.device)
    x, nfev, j = theta.detach().clone(), 0, 0

    def field(z):
        return -_value_and_grad(loss, z, fn)[1]

    for n in range(int(marks[-1]) + 1):
        while j < len(t) and marks[j] == n:
            out[j], j = x, j + 1
        if n == int(marks[-1]):
            break
        k1 = field(x)
        k2 = field(x + (h / 2) * k1)
        k3 = field(x + (h / 2) * k2)
        k4 = field(x + h * k3)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        nfev += 4
        if n % 64 == 63 and not validation.is_finite(x):
            raise InputError(f"{fn}: the RK4 iterates are not finite at t = {(n + 1) * h:g}; "
                             "pass a smaller step")
    validation.finite_output(out, "the RK4 path", fn=fn, fix="pass a smaller step")
    return FlowPath(out, nfev, "RK4", float("nan"), float("nan"), h)


# --------------------------------------------------------------------------- quadratics


def _sym(A, fn: str) -> torch.Tensor:
    A = validation.tensor(A, "A", fn=fn, ndim=2, layout="[p, p]")
    if A.shape[0] != A.shape[1]:
        raise InputError(f"{fn}: A must be square [p, p], got {tuple(A.shape)}")
    if not torch.allclose(A, A.T, rtol=1e-12, atol=1e-12 * float(A.abs().max())):
        raise InputError(f"{fn}: A must be symmetric; pass (A + A.T) / 2")
    return A


def _quad(A, theta0, fn: str):
    A = _sym(A, fn)
    theta = _theta(theta0, fn)
    validation.tensor(theta, "theta0", fn=fn, ndim=2, shape=(None, A.shape[0]),
                      dtype=A.dtype, device=A.device, like="A is")
    lam, V = torch.linalg.eigh(A)
    return A, theta, lam, V


def quadratic_flow(A: torch.Tensor, theta0: torch.Tensor, *, times) -> torch.Tensor:
    """Exact gradient flow of ``f(theta) = theta^T A theta / 2`` from ``theta0 [R, p]`` at
    ``times [T]``: ``V exp(-lambda t) V^T theta0``. Returns ``[T, R, p]``."""
    fn = f"{_MOD}.quadratic_flow"
    A, theta, lam, V = _quad(A, theta0, fn)
    t = torch.as_tensor(_times(times, fn), dtype=A.dtype, device=A.device)
    c = theta @ V                                                         # [R, p]
    out = (torch.exp(-t[:, None] * lam[None, :])[:, None, :] * c[None]) @ V.T
    validation.finite_output(out, "the flow", fn=fn, cause="it overflows (the times are "
                             "too long for A's negative eigenvalues)", fix="pass shorter times")
    return out


def quadratic_gd(A: torch.Tensor, theta0: torch.Tensor, *, lr, times) -> torch.Tensor:
    """Exact GD on ``f(theta) = theta^T A theta / 2``: run ``r`` at step ``k = t_j / lr_r``
    is ``V (1 - lr_r lambda)^k V^T theta0_r``. Returns ``[T, R, p]``."""
    fn = f"{_MOD}.quadratic_gd"
    A, theta, lam, V = _quad(A, theta0, fn)
    lr = _lr(lr, theta.shape[0], theta, fn)
    t = torch.as_tensor(_times(times, fn), dtype=A.dtype, device=A.device)
    k = t[:, None] / lr[None, :]                                           # [T, R]
    if bool(((k - k.round()).abs() > 1e-9 * k.clamp(min=1)).any()):
        raise InputError(f"{fn}: every time must be a whole number of steps of every run "
                         "(times / lr must be integers)")
    k = k.round()
    base = 1 - lr[:, None] * lam[None, :]                                  # [R, p]
    factor = base.abs()[None] ** k[..., None] * torch.where(
        (base[None] < 0) & (k[..., None] % 2 == 1), -1.0, 1.0).to(A.dtype)
    out = (factor * (theta @ V)[None]) @ V.T
    validation.finite_output(out, "the iterates", fn=fn, cause="they overflow (lr or the "
                             "times are too large)", fix="pass a smaller lr or shorter times")
    return out


def approximation_bound(lam_minus: torch.Tensor, m: torch.Tensor, *, lr: float) -> torch.Tensor:
    """The recursion of the approximation theorem: ``E_0 = 0``,
    ``E_{k+1} = (1 + lr lam_minus_k) E_k + lr^2 m_k / 2`` for ``k < K``.

    ``lam_minus [K]``: non-negative (the negative part of the Hessian's smallest eigenvalue
    near the flow at time ``k lr``); ``m [K]``: non-negative bounds on ``|H grad f|`` along
    the flow on ``[k lr, (k+1) lr]``. Returns ``E [K + 1]`` (float64)."""
    fn = f"{_MOD}.approximation_bound"
    lam_minus = validation.tensor(lam_minus, "lam_minus", fn=fn, ndim=1, layout="[K]")
    m = validation.tensor(m, "m", fn=fn, ndim=1, shape=(lam_minus.shape[0],), layout="[K]")
    lr = validation.real(lr, "lr", fn=fn, lo=0.0, lo_open=True)
    for name, v in (("lam_minus", lam_minus), ("m", m)):
        if bool((v < 0).any()):
            raise InputError(f"{fn}: {name} must be non-negative, got min {float(v.min()):g}")
    grow = (1 + lr * lam_minus.double())                                  # [K]
    # E_K = sum_k (lr^2 m_k / 2) prod_{j>k} grow_j, all prefixes at once (log-space product)
    logc = torch.cat([torch.zeros(1, dtype=torch.float64, device=grow.device),
                      torch.cumsum(torch.log(grow), 0)])                 # [K + 1]
    terms = 0.5 * lr * lr * m.double() * torch.exp(-logc[1:])
    E = torch.exp(logc) * torch.cat([terms.new_zeros(1), torch.cumsum(terms, 0)])
    validation.finite_output(E, "the bound", fn=fn, cause="it overflows", fix="pass fewer "
                             "steps or smaller lam_minus")
    return E


def quadratic_bound(A: torch.Tensor, theta0: torch.Tensor, *, lr: float, steps: int,
                    negative_part: bool = True) -> torch.Tensor:
    """:func:`approximation_bound` on ``f(theta) = theta^T A theta / 2`` from ``theta0 [p]``
    (a single run): ``Lambda = max(0, -lambda_min(A))`` (the Hessian is constant) and ``m_k``
    the exact componentwise maximum of ``|A^2 exp(-A s) theta0|`` over ``s`` in
    ``[k lr, (k+1) lr]`` (each eigen-component is monotone in ``s``). The theorem needs
    ``lr lambda_max(A) <= 2``; a larger ``lr`` is refused. ``negative_part=False`` drops
    ``Lambda`` (the bound one would write ignoring negative curvature). Returns
    ``[steps + 1]``."""
    fn = f"{_MOD}.quadratic_bound"
    A = _sym(A, fn)
    theta0 = validation.tensor(theta0, "theta0", fn=fn, ndim=1, shape=(A.shape[0],),
                               dtype=A.dtype, device=A.device, like="A is", layout="[p]")
    lr = validation.real(lr, "lr", fn=fn, lo=0.0, lo_open=True)
    steps = validation.integer(steps, "steps", fn=fn, lo=1, hi=10**8)
    negative_part = validation.boolean(negative_part, "negative_part", fn=fn)
    lam, V = torch.linalg.eigh(A.double())
    if lr * float(lam.max()) > 2:
        raise InputError(f"{fn}: lr * lambda_max(A) = {lr * float(lam.max()):.4g} > 2, "
                         "outside the theorem's hypothesis; pass a smaller lr")
    c = (V.T @ theta0.double()).abs() * lam * lam                          # [p]
    k = torch.arange(steps, dtype=torch.float64, device=A.device)
    s = torch.where(lam[None, :] >= 0, k[:, None] * lr, (k[:, None] + 1) * lr)
    m = (c[None, :] * torch.exp(-lam[None, :] * s)).norm(dim=1)           # [K]
    neg = max(0.0, -float(lam.min())) if negative_part else 0.0
    return approximation_bound(torch.full_like(m, neg), m, lr=lr)


# ----------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class MLPLoss:
    """Square loss ``|net(X) - y|^2 / (2n)`` of a fully connected network with ``widths``
    ``[d_0, ..., d_L]`` (no biases) and activation ``act`` between layers, as a loss over
    flat parameters ``theta [R, p]`` (layer ``l``'s ``[d_{l+1}, d_l]`` weight, row-major,
    layer after layer). Call it on ``[R, p]``; :meth:`init` draws Gaussian weights."""

    X: torch.Tensor
    y: torch.Tensor
    widths: tuple
    act: str

    @property
    def p(self) -> int:
        return sum(a * b for a, b in zip(self.widths[1:], self.widths[:-1], strict=False))

    def weights(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Layer weights ``[R, d_{l+1}, d_l]`` of flat ``theta [R, p]``."""
        out, i = [], 0
        for a, b in zip(self.widths[:-1], self.widths[1:], strict=False):
            out.append(theta[:, i:i + a * b].reshape(-1, b, a))
            i += a * b
        return out

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        h = self.X.T.unsqueeze(0)                                         # [1, d0, n]
        Ws = self.weights(theta)
        for i, W in enumerate(Ws):
            h = W @ h                                                     # [R, d, n]
            if i < len(Ws) - 1 and self.act == "relu":
                h = torch.relu(h)
        r = h - self.y.T.unsqueeze(0)
        return 0.5 * r.pow(2).sum(dim=(1, 2)) / self.X.shape[0]

    def init(self, scale: float, seeds) -> torch.Tensor:
        """``theta [R, p]``: layer ``l`` Gaussian with std ``scale / sqrt(d_l)``, run ``r``
        drawn from a generator seeded with ``seeds[r]``."""
        fn = f"{_MOD}.MLPLoss.init"
        scale = validation.real(scale, "scale", fn=fn, lo=0.0, lo_open=True)
        if not isinstance(seeds, list | tuple) or not seeds:
            raise InputTypeError(f"{fn}: seeds must be a non-empty list of integers")
        rows = []
        for s in seeds:
            g = validation.seeded_generator(validation.integer(s, "seeds", fn=fn, lo=0))
            rows.append(torch.cat([torch.randn(b * a, generator=g, dtype=torch.float64)
                                   * scale / math.sqrt(a)
                                   for a, b in zip(self.widths[:-1], self.widths[1:],
                                                   strict=False)]))
        return torch.stack(rows).to(device=self.X.device, dtype=self.X.dtype)


def mlp_loss(X: torch.Tensor, y: torch.Tensor, widths, *, act: str = "relu") -> MLPLoss:
    """The square loss of a bias-free fully connected network on ``X [n, d_0]``,
    ``y [n, d_L]``, ``widths = [d_0, ..., d_L]``, ``act`` ``"linear"`` or ``"relu"``
    (both positively homogeneous), as an :class:`MLPLoss` over flat parameters."""
    fn = f"{_MOD}.mlp_loss"
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d_0]")
    y = validation.tensor(y, "y", fn=fn, ndim=2, layout="[n, d_L]", dtype=X.dtype,
                          device=X.device, like="X is")
    if y.shape[0] != X.shape[0]:
        raise InputError(f"{fn}: X and y must have the same number of rows, got "
                         f"{X.shape[0]} and {y.shape[0]}")
    if not isinstance(widths, list | tuple) or len(widths) < 2:
        raise InputTypeError(f"{fn}: widths must be a list [d_0, ..., d_L] of at least two "
                             f"integers, got {widths!r}")
    widths = tuple(validation.integer(w, "widths", fn=fn, lo=1, hi=10**6) for w in widths)
    if widths[0] != X.shape[1] or widths[-1] != y.shape[1]:
        raise InputError(f"{fn}: widths must start with X's {X.shape[1]} columns and end "
                         f"with y's {y.shape[1]}, got {list(widths)}")
    act = validation.choice(act, "act", _ACTS, fn=fn)
    return MLPLoss(X, y, widths, act)


def hessian_eigenvalues(loss: Callable, theta: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, float64) of the Hessian of ``loss`` at one point
    ``theta [p]`` (the loss is called on ``theta[None]``). Dense: ``p`` backward passes
    and a ``[p, p]`` eigendecomposition, for small networks."""
    fn = f"{_MOD}.hessian_eigenvalues"
    loss = _loss(loss, fn)
    theta = validation.tensor(theta, "theta", fn=fn, ndim=1, layout="[p]")
    if theta.numel() > 20000:
        raise InputError(f"{fn}: theta has {theta.numel()} entries; the dense Hessian is "
                         "for p <= 20000")

    def f(x):
        v = loss(x[None])
        if not isinstance(v, torch.Tensor) or v.shape != (1,):
            raise InputError(f"{fn}: loss must return a tensor [R] = [1] on theta[None]")
        return v[0]

    H = torch.func.jacfwd(torch.func.grad(f))(theta.detach()).double()   # forward over reverse
    H = 0.5 * (H + H.T)
    validation.finite_output(H, "the Hessian", fn=fn)
    return torch.linalg.eigvalsh(H)

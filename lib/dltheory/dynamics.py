"""Training loops that record trajectories.

``gd(loss, w0, lr=..., steps=...)`` runs plain gradient descent on a loss of a flat
parameter vector, with gradients from :func:`torch.func.grad`, and records every iterate.
``least_squares_gd`` is the same recursion for ``L(w) = |Xw - y|^2 / (2n)`` with the
gradient written out, so that the two can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Trajectory:
    """Iterates ``w[k]`` (shape ``[steps+1, d]``) and losses ``loss[k]`` (shape ``[steps+1]``)."""

    w: torch.Tensor
    loss: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        return self.w[-1]


def _check_run(w0: torch.Tensor, lr: float, steps: int) -> None:
    if not isinstance(w0, torch.Tensor) or w0.ndim != 1:
        raise ValueError(f"w0 must be a 1-D tensor, got {getattr(w0, 'shape', type(w0))}")
    if not w0.is_floating_point():
        raise TypeError(f"w0 must be a floating-point tensor, got {w0.dtype}")
    if isinstance(lr, bool) or not (isinstance(lr, int | float) and 0 < lr < math.inf):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not torch.isfinite(w0).all():
        raise ValueError("w0 contains NaN or inf")


def gd(loss: Callable[[torch.Tensor], torch.Tensor], w0: torch.Tensor, *, lr: float,
       steps: int, progress: bool = True) -> Trajectory:
    """Gradient descent ``w <- w - lr * grad loss(w)`` from ``w0`` (shape ``[d]``).

    Returns every iterate; stops with a clear error if the loss becomes non-finite.
    """
    _check_run(w0, lr, steps)
    grad = torch.func.grad_and_value(loss)
    ws = torch.empty((steps + 1, w0.numel()), dtype=w0.dtype, device=w0.device)
    losses = torch.empty(steps + 1, dtype=w0.dtype, device=w0.device)
    w = w0.detach().clone()
    for k in tqdm(range(steps + 1), desc="gradient descent", disable=not progress,
                  leave=False):
        g, value = grad(w)
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"gradient descent diverged: the loss is not finite ({float(value)}) at step "
                f"{k} with lr={lr}; a smaller step size may converge"
            )
        ws[k], losses[k] = w, value
        if k < steps:
            w = w - lr * g
    return Trajectory(ws, losses)


def least_squares_gd(X: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int,
                     w0: torch.Tensor | None = None) -> Trajectory:
    """Gradient descent on ``L(w) = |X w - y|^2 / (2n)`` with the gradient ``X^T (X w - y) / n``.

    ``X``: ``[n, d]``, ``y``: ``[n]``, ``w0``: ``[d]`` (zeros by default).
    """
    if X.ndim != 2:
        raise ValueError(f"X must be a matrix [n, d], got shape {tuple(X.shape)}")
    n, d = X.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape [{n}] to match X {tuple(X.shape)}, got "
                         f"{tuple(y.shape)}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("X or y contains NaN or inf")
    w0 = torch.zeros(d, dtype=X.dtype, device=X.device) if w0 is None else w0
    _check_run(w0, lr, steps)
    if w0.shape != (d,):
        raise ValueError(f"w0 must have shape [{d}], got {tuple(w0.shape)}")
    ws = torch.empty((steps + 1, d), dtype=X.dtype, device=X.device)
    w = w0.to(X.dtype).clone()
    for k in range(steps + 1):
        ws[k] = w
        if k < steps:
            w = w - (lr / n) * (X.T @ (X @ w - y))
    r = ws @ X.T - y
    return Trajectory(ws, (r * r).sum(1) / (2 * n))


def least_squares_gd_final(X: torch.Tensor, y: torch.Tensor, W0: torch.Tensor, *, lr: float,
                           steps: int, progress: bool = True) -> torch.Tensor:
    """Final iterates of gradient descent on ``|X w - y|^2 / (2n)`` from a batch of starts.

    ``W0``: ``[S, d]``, one start per row; returns ``[S, d]``. All starts advance together
    (one matrix product per step), so ``S`` runs cost about one run on a GPU.
    """
    if X.ndim != 2 or W0.ndim != 2 or W0.shape[1] != X.shape[1]:
        raise ValueError(f"W0 must be [S, {X.shape[-1]}] for X of shape {tuple(X.shape)}, "
                         f"got {tuple(W0.shape)}")
    n = X.shape[0]
    if y.shape != (n,):
        raise ValueError(f"y must have shape [{n}], got {tuple(y.shape)}")
    _check_run(W0[0], lr, steps)
    if not torch.isfinite(W0).all():
        raise ValueError("W0 contains NaN or inf")
    W = W0.to(X.dtype).clone()
    for _ in tqdm(range(steps), desc="gradient descent (batch)", disable=not progress,
                  leave=False):
        W = W - (lr / n) * ((W @ X.T - y) @ X)
    return W


def least_squares_error_log_norms(X: torch.Tensor, e0: torch.Tensor, *, lr: float,
                                  steps: int, progress: bool = True) -> torch.Tensor:
    """``log |e_k|`` for the error ``e_k = w_k - w_inf`` of gradient descent on
    ``|X w - y|^2 / (2n)``, for ``k = 0..steps``, followed as far as needed.

    The error obeys ``e_{k+1} = (I - lr X^T X / n) e_k`` (``y`` drops out) and stays in the
    row space of ``X``: ``e_k = X^T a_k`` with ``a_{k+1} = (I - lr X X^T / n) a_k``. This
    function runs that recursion on ``a`` (``[n]``), rescaling it to unit norm after every
    step and summing the logs of the scale factors, so the decay can be followed long after
    ``|e_k|`` itself would sink below float64's rounding of ``w_k``. ``e0`` must lie in the
    row space of ``X`` (it does for gradient descent, by the null-space lemma).
    """
    if X.ndim != 2 or e0.shape != (X.shape[1],):
        raise ValueError(f"e0 must have shape [{X.shape[-1]}] for X of shape "
                         f"{tuple(X.shape)}, got {tuple(e0.shape)}")
    _check_run(e0, lr, steps)
    n = X.shape[0]
    norm0 = e0.norm()
    if norm0 == 0:
        raise ValueError("e0 is zero: its decay is undefined")
    G = X @ X.T
    a = torch.linalg.solve(G, X @ e0.to(X.dtype))        # e0 = X^T a when e0 is in the row space
    leak = (X.T @ a - e0).norm() / norm0
    if leak > 1e-8:
        raise ValueError(f"e0 is not in the row space of X (relative residual {float(leak):.1e})")
    M = torch.eye(n, dtype=X.dtype, device=X.device) - (lr / n) * G
    out = torch.empty(steps + 1, dtype=X.dtype, device=X.device)
    out[0] = norm0.log()
    norm_a = (a @ G @ a).sqrt()                            # |e| = sqrt(a^T X X^T a)
    a = a / norm_a
    for k in tqdm(range(1, steps + 1), desc="error decay", disable=not progress, leave=False):
        a = M @ a
        scale = (a @ G @ a).sqrt()
        out[k] = out[k - 1] + scale.log()
        a = a / scale
    return out

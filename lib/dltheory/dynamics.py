"""Training loops that record trajectories.

``gd(loss, w0, lr=..., steps=...)`` runs plain gradient descent on a loss of a flat
parameter vector, with gradients from :func:`torch.func.grad`, and records every iterate.
``least_squares_gd`` is the same recursion for ``L(w) = |Xw - y|^2 / (2n)`` with the
gradient written out, so that the two can be compared.

``train(net, X, Y, loss="mse"|"ce", lr=..., steps=...)`` runs full-batch gradient descent
on a network (a per-example loss summed or averaged over examples) and returns a
:class:`NetTrajectory`: the flat parameters ``w_0..w_S`` and the output gradients
``dL/df(x_i)`` of every step, which is what :func:`dltheory.kernels.path_kernel` needs.
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


def _diverged(value: torch.Tensor, step: int, lr: float) -> FloatingPointError:
    return FloatingPointError(
        f"gradient descent diverged: the loss is not finite ({float(value.detach())}) at step "
        f"{step} with lr={lr}; a smaller step size may converge")


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
            raise _diverged(value, k, lr)
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


# --------------------------------------------------------------------------- networks

LOSSES = ("mse", "ce")


@dataclass(frozen=True)
class NetTrajectory:
    """A recorded full-batch gradient-descent run of a network (what the path kernel needs).

    ``params``: ``[S+1, P]`` flat parameter vectors ``w_0 .. w_S`` (order of
    ``torch.nn.utils.parameters_to_vector(net.parameters())``);
    ``out_grads``: ``[S, N, k]``, ``g_{s,i} = dL/df(x_i)`` at ``w_s`` (with the ``1/N`` of a
    mean), so that ``w_{s+1} = w_s - lr sum_i J(x_i; w_s)^T g_{s,i}``;
    ``outputs``: ``[S+1, N, k]`` the network on the training inputs; ``loss``: ``[S+1]``;
    ``X`` ``[N, ...]`` and ``Y`` the training data; ``lr``; ``loss_name``; ``reduction``;
    ``signals``: with ``keep_signals=True``, the layer-wise factors of the Jacobian of the
    training points at each ``w_s`` (what :func:`dltheory.kernels.path_kernel` contracts),
    else None.
    """

    params: torch.Tensor
    out_grads: torch.Tensor
    outputs: torch.Tensor
    loss: torch.Tensor
    X: torch.Tensor
    Y: torch.Tensor
    lr: float
    loss_name: str
    reduction: str
    signals: list | None = None

    @property
    def steps(self) -> int:
        return self.params.shape[0] - 1

    def param_dict(self, net: torch.nn.Module, s: int) -> dict[str, torch.Tensor]:
        """The parameters of step ``s`` as a dict for ``torch.func.functional_call(net, ...)``."""
        from .kernels import unflatten

        return unflatten(net, self.params[s])

    def load(self, net: torch.nn.Module, s: int = -1) -> torch.nn.Module:
        """Copy the parameters of step ``s`` (default: the last) into ``net``; returns it."""
        torch.nn.utils.vector_to_parameters(self.params[s].clone(), net.parameters())
        return net


def _per_example_loss(name: str, F: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``[N]`` losses: ``"mse"`` is ``|f - y|^2 / 2``, ``"ce"`` the cross-entropy of the logits
    ``f`` with integer labels ``[N]`` or target probabilities ``[N, k]``."""
    if name == "mse":
        return 0.5 * ((F - Y) ** 2).sum(1)
    if Y.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.cross_entropy(F, Y.long(), reduction="none")
    return -(Y * torch.log_softmax(F, dim=1)).sum(1)


def _check_targets(name: str, F: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    N, k = F.shape
    if name == "ce" and Y.dtype in (torch.int64, torch.int32):
        if Y.shape != (N,):
            raise ValueError(f"cross-entropy labels must have shape [{N}], got {tuple(Y.shape)}")
        if k < 2:
            raise ValueError(f"cross-entropy needs >= 2 outputs, the network has {k}")
        if Y.min() < 0 or Y.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1}, got {int(Y.min())}..{int(Y.max())}")
        return Y
    if not Y.is_floating_point():
        raise TypeError(f"targets must be floating point (or int64 labels for 'ce'), got "
                        f"{Y.dtype}")
    if Y.ndim == 1 and k == 1:
        Y = Y[:, None]
    if Y.shape != F.shape:
        raise ValueError(f"the network outputs {tuple(F.shape)} on X but the targets have shape "
                         f"{tuple(Y.shape)}: output dimensions must match")
    if not torch.isfinite(Y).all():
        raise ValueError("the targets Y contain NaN or inf")
    return Y


def _check_separable(loss_fn, F: torch.Tensor, Y: torch.Tensor, gen: torch.Generator) -> None:
    """Raise if ``loss_fn(F, Y)`` is not a sum over examples: for a sum, changing two
    examples' outputs changes the loss by the sum of the separate changes."""
    N = F.shape[0]
    if N < 2:
        return
    F = F.detach()
    base = loss_fn(F, Y)
    scale = F.abs().mean() + 1.0
    worst, ref = 0.0, float(base.abs()) + 1.0
    for _ in range(4):
        i, j = torch.randperm(N, generator=gen)[:2].tolist()
        Ei, Ej = torch.zeros_like(F), torch.zeros_like(F)
        Ei[i] = 0.5 * scale * torch.randn(F.shape[1], generator=gen, dtype=F.dtype).to(F.device)
        Ej[j] = 0.5 * scale * torch.randn(F.shape[1], generator=gen, dtype=F.dtype).to(F.device)
        mixed = loss_fn(F + Ei + Ej, Y) - loss_fn(F + Ei, Y) - loss_fn(F + Ej, Y) + base
        worst = max(worst, abs(float(mixed)))
    if worst > 1e-8 * ref:
        raise ValueError(
            "the loss is not a sum (or mean) over examples of a per-example loss: changing the "
            f"outputs of two examples together changed it by {worst:.3g} more than the sum of "
            "the separate changes; the path-kernel identity needs L = sum_i l(f(x_i), y_i)")


def train(net: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, *, loss="mse", lr: float,
          steps: int, reduction: str = "mean", keep_signals: bool = False,
          progress: bool = True, weight_decay: float = 0.0) -> NetTrajectory:
    """Full-batch gradient descent on ``net`` from its current parameters, recording what
    the path kernel needs; ``net`` itself is not modified (see :meth:`NetTrajectory.load`).

    Args:
        net: ``[N, ...] -> [N, k]`` (or ``[N]``, read as ``k = 1``), acting on each example
            on its own.
        X: ``[N, ...]``; Y: ``[N, k]`` targets (``[N]`` when ``k = 1``) for ``"mse"``, int64
            labels ``[N]`` or probabilities ``[N, k]`` for ``"ce"``.
        loss: ``"mse"`` (``l = |f - y|^2 / 2``), ``"ce"`` (cross-entropy of the logits), or
            a callable ``loss(F [N, k], Y) -> scalar`` that must be a sum over examples
            (checked: anything else raises).
        lr: step size; steps: number of steps ``S``.
        reduction: ``"mean"`` (``L = (1/N) sum_i l_i``) or ``"sum"``.
        keep_signals: compute each step's gradient from the layer-wise signals of the
            structured kernel path (``J^T g`` as outer products; ``k`` backward passes) and
            keep them, so that :func:`dltheory.kernels.path_kernel` reuses the training
            step's forward/backward work. Memory: ``S x N x k x (sum of widths)`` numbers.
        weight_decay: ``lambda >= 0``; the step becomes ``w - lr (grad L(w) + lambda w)``
            (an L2 penalty ``lambda |w|^2 / 2`` on every parameter). The recorded ``loss``
            and ``out_grads`` stay those of ``L`` alone, so with ``lambda > 0`` the step is
            no longer ``-lr sum_i J(x_i)^T g_i`` and the path-kernel identity does not hold:
            a negative control for it. Default 0: plain gradient descent.

    Returns:
        :class:`NetTrajectory` with ``w_0..w_S`` and ``g_s = dL/df(X)`` at ``w_0..w_{S-1}``.
    """
    _check_run(torch.zeros(1, dtype=torch.float64), lr, steps)
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    if not params:
        raise ValueError("the network has no parameters to train")
    p0 = next(iter(params.values()))
    if not isinstance(X, torch.Tensor) or X.ndim < 2 or not X.is_floating_point():
        raise ValueError(f"X must be a floating tensor [N, ...], got "
                         f"{getattr(X, 'shape', type(X))}")
    if X.dtype != p0.dtype:
        raise TypeError(f"X has dtype {X.dtype} but the network's parameters are {p0.dtype}")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    if any(not torch.isfinite(p).all() for p in params.values()):
        raise ValueError("the network's parameters contain NaN or inf")
    if not isinstance(Y, torch.Tensor) or len(Y) != len(X):
        raise ValueError(f"Y must be a tensor with one row per example of X {tuple(X.shape)}, "
                         f"got {getattr(Y, 'shape', type(Y))}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float) or \
            not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    wd = float(weight_decay)

    def fwd(p):
        out = torch.func.functional_call(net, p, (X,))
        return out[:, None] if out.ndim == 1 else out

    with torch.no_grad():
        F0 = fwd(params)
    if F0.ndim != 2 or F0.shape[0] != len(X):
        raise ValueError(f"the network must map X {tuple(X.shape)} to [N, k], got "
                         f"{tuple(F0.shape)}")
    N = len(X)
    if callable(loss):
        name = getattr(loss, "__name__", "custom")
        loss_fn = loss
        _check_separable(loss_fn, F0, Y, torch.Generator().manual_seed(0))
    elif loss in LOSSES:
        name = loss
        Y = _check_targets(loss, F0, Y)
        scale = 1.0 / N if reduction == "mean" else 1.0

        def loss_fn(F, Y_):
            return scale * _per_example_loss(name, F, Y_).sum()
    else:
        raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")

    names = list(params)
    flat = torch.empty((steps + 1, sum(p.numel() for p in params.values())), dtype=p0.dtype,
                       device=p0.device)
    k = F0.shape[1]
    out_grads = torch.empty((steps, N, k), dtype=p0.dtype, device=p0.device)
    outputs = torch.empty((steps + 1, N, k), dtype=p0.dtype, device=p0.device)
    losses = torch.empty(steps + 1, dtype=p0.dtype, device=p0.device)
    kept = [] if keep_signals else None
    if keep_signals:
        from . import kernels

        ops = kernels._plan(net)
    for s in tqdm(range(steps + 1), desc="training", disable=not progress, leave=False):
        flat[s] = torch.cat([params[n].reshape(-1) for n in names])
        if keep_signals:
            with torch.no_grad():
                F, sig = kernels._signals(ops, params, X)
            with torch.enable_grad():
                Fl = F.detach().requires_grad_(True)
                value = loss_fn(Fl, Y)
                if not torch.isfinite(value):
                    raise _diverged(value, s, lr)
                outputs[s], losses[s] = F, value.detach()
                if s == steps:
                    break
                (g,) = torch.autograd.grad(value, Fl)
            grad = kernels.signals_gradient(ops, sig, g)
            kept.append(sig)
            out_grads[s] = g
            params = {n: params[n] - lr * (grad[n] + wd * params[n]) if wd else
                      params[n] - lr * grad[n] for n in names}
            continue
        with torch.enable_grad():
            leaves = {n: v.detach().requires_grad_(True) for n, v in params.items()}
            F = fwd(leaves)
            value = loss_fn(F, Y)
            if not torch.isfinite(value):
                raise _diverged(value, s, lr)
            outputs[s], losses[s] = F.detach(), value.detach()
            if s == steps:
                break
            (g,) = torch.autograd.grad(value, F, retain_graph=True)
            grads = torch.autograd.grad(F, [leaves[n] for n in names], g)
        out_grads[s] = g
        params = {n: params[n] - lr * (gr + wd * params[n]) if wd else params[n] - lr * gr
                  for n, gr in zip(names, grads, strict=True)}
    return NetTrajectory(params=flat, out_grads=out_grads, outputs=outputs, loss=losses, X=X,
                         Y=Y, lr=float(lr), loss_name=name, reduction=reduction,
                         signals=kept)

"""Training loops that record trajectories.

``gd(loss, w0, lr=..., steps=...)`` runs plain gradient descent on a loss of a flat
parameter vector, with gradients from :func:`torch.func.grad`, and records every iterate.
``least_squares_gd`` is the same recursion for ``L(w) = |Xw - y|^2 / (2n)`` with the
gradient written out, so that the two can be compared.

``train(net, X, Y, loss="mse"|"ce", lr=..., steps=...)`` runs full-batch gradient descent
on a network (a per-example loss summed or averaged over examples) and returns a
:class:`NetTrajectory`: the flat parameters ``w_0..w_S`` and the output gradients
``dL/df(x_i)`` of every step, which is what :func:`dltheory.kernels.path_kernel` needs.

Arguments are checked with :mod:`dltheory.validation`: a step size ``lr`` must be a finite
real ``> 0``, a step count an integer ``>= 0``, data finite real tensors. A run whose
iterates or loss overflow raises :class:`DivergenceError` (a ``FloatingPointError`` and an
:class:`~dltheory.errors.InputError`, naming ``lr``): no function returns a non-finite
trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import threads, validation
from .errors import InputError, InputTypeError

__all__ = [
    "LOSSES", "DivergenceError", "NetTrajectory", "Trajectory", "gd", "least_squares_gd",
    "least_squares_error_log_norms", "least_squares_gd_final", "train",
]


class DivergenceError(InputError, FloatingPointError):
    """Gradient descent overflowed (the loss or the iterates are not finite): the step
    size ``lr`` is too large for the problem. Also a ``FloatingPointError``."""


@dataclass(frozen=True)
class Trajectory:
    """Iterates ``w[k]`` (shape ``[steps+1, d]``) and losses ``loss[k]`` (shape ``[steps+1]``)."""

    w: torch.Tensor
    loss: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        return self.w[-1]


def _rate(lr, fn: str) -> float:
    """The step size: a finite real ``> 0``."""
    return validation.real(lr, "lr", fn=fn, lo=0, lo_open=True)


def _count(steps, fn: str) -> int:
    """The number of steps: an integer ``>= 0``."""
    return validation.integer(steps, "steps", fn=fn, lo=0)


def _record(shape: tuple, like: torch.Tensor, fn: str) -> torch.Tensor:
    """An empty record ``[steps + 1, ...]`` in ``like``'s dtype and device; a record too
    large for the memory is refused naming ``steps``."""
    try:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    except (RuntimeError, MemoryError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{fn}: steps = {shape[0] - 1} needs a record of shape {shape} that "
                         f"cannot be allocated ({why}); record fewer steps") from err


def _diverged(value: torch.Tensor, step: int, lr: float, fn: str) -> DivergenceError:
    return DivergenceError(
        f"{fn}: gradient descent diverged: the loss is not finite ({float(value.detach())}) "
        f"at step {step} with lr={lr}; a smaller step size may converge")


def _check_finite_run(values: torch.Tensor, lr: float, fn: str) -> None:
    """Raise :class:`DivergenceError` when ``values [steps + 1, ...]`` (iterates or losses,
    one row per step) are not all finite, naming the first step that overflowed."""
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(1)
    if bool(bad.any()):
        step = int(bad.nonzero()[0])
        raise DivergenceError(
            f"{fn}: gradient descent diverged: the iterates overflow at step {step} with "
            f"lr={lr}; a smaller step size may converge")


@threads.fair_share
def gd(loss: Callable[[torch.Tensor], torch.Tensor], w0: torch.Tensor, *, lr: float,
       steps: int, progress: bool = True) -> Trajectory:
    """Gradient descent ``w <- w - lr * grad loss(w)`` from ``w0`` (shape ``[d]``).

    ``loss``: ``w [d] -> 0-d`` real tensor, differentiable by :func:`torch.func.grad`.
    Returns every iterate; stops with :class:`DivergenceError` if the loss becomes
    non-finite. ``w0`` is not modified (the loss is handed copies).
    """
    fn = "dynamics.gd"
    if not callable(loss):
        raise InputTypeError(f"{fn}: loss must be a callable w [d] -> 0-d tensor, got "
                             f"{type(loss).__name__}")
    w0 = validation.tensor(w0, "w0", fn=fn, ndim=1, layout="[d]")
    lr, steps = _rate(lr, fn), _count(steps, fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    grad = torch.func.grad_and_value(_scalar_loss(loss, fn))
    ws = _record((steps + 1, w0.numel()), w0, fn)
    losses = _record((steps + 1,), w0, fn)
    w = w0.detach().clone()
    for k in tqdm(range(steps + 1), desc="gradient descent", disable=not progress,
                  leave=False):
        g, value = grad(w)
        if not torch.isfinite(value):
            raise _diverged(value, k, lr, fn)
        ws[k], losses[k] = w, value
        if k < steps:
            w = w - lr * g
    return Trajectory(ws, losses)


def _scalar_loss(loss: Callable, fn: str) -> Callable:
    """``loss``, refusing (naming ``loss``) a value that is not a 0-d real tensor."""
    def checked(w):
        value = loss(w)
        if not isinstance(value, torch.Tensor) or value.ndim != 0 \
                or not value.is_floating_point():
            what = (f"shape {tuple(value.shape)}, dtype {value.dtype}"
                    if isinstance(value, torch.Tensor) else type(value).__name__)
            raise InputError(f"{fn}: loss must return a 0-d real floating tensor (a scalar "
                             f"loss), got {what}; reduce it with .sum() or .mean()")
        return value
    return checked


@threads.fair_share
def least_squares_gd(X: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int,
                     w0: torch.Tensor | None = None) -> Trajectory:
    """Gradient descent on ``L(w) = |X w - y|^2 / (2n)`` with the gradient ``X^T (X w - y) / n``.

    ``X``: ``[n, d]``, ``y``: ``[n]``, ``w0``: ``[d]`` (zeros by default; cast to ``X``'s
    dtype), all finite real tensors. Raises :class:`DivergenceError` if the iterates
    overflow.
    """
    fn = "dynamics.least_squares_gd"
    X, y = _design(X, y, fn)
    n, d = X.shape
    if w0 is None:
        w0 = torch.zeros(d, dtype=X.dtype, device=X.device)
    w0 = validation.tensor(w0, "w0", fn=fn, ndim=1, shape=(d,), layout=f"[d] = [{d}]")
    lr, steps = _rate(lr, fn), _count(steps, fn)
    ws = _record((steps + 1, d), X, fn)
    w = w0.to(X.dtype).clone()
    for k in range(steps + 1):
        ws[k] = w
        if k < steps:
            w = w - (lr / n) * (X.T @ (X @ w - y))
    r = ws @ X.T - y
    losses = (r * r).sum(1) / (2 * n)
    _check_finite_run(losses, lr, fn)      # an overflowing iterate makes its loss inf/NaN
    return Trajectory(ws, losses)


def _design(X, y, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares data: ``X [n, d]`` and ``y [n]``, finite real tensors."""
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d]")
    y = validation.tensor(y, "y", fn=fn, ndim=1, shape=(X.shape[0],),
                          layout=f"[n] = [{X.shape[0]}] (one target per row of X)")
    return X, y


def least_squares_gd_final(X: torch.Tensor, y: torch.Tensor, W0: torch.Tensor, *, lr: float,
                           steps: int, progress: bool = True) -> torch.Tensor:
    """Final iterates of gradient descent on ``|X w - y|^2 / (2n)`` from a batch of starts.

    ``W0``: ``[S, d]``, one start per row; returns ``[S, d]``. All starts advance together
    (one matrix product per step), so ``S`` runs cost about one run on a GPU. ``X [n, d]``,
    ``y [n]`` and ``W0`` finite real tensors; raises :class:`DivergenceError` if the final
    iterates overflow.
    """
    fn = "dynamics.least_squares_gd_final"
    X, y = _design(X, y, fn)
    n, d = X.shape
    W0 = validation.tensor(W0, "W0", fn=fn, ndim=2, shape=(None, d), layout=f"[S, {d}]")
    lr, steps = _rate(lr, fn), _count(steps, fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    W = W0.to(X.dtype).clone()
    for _ in tqdm(range(steps), desc="gradient descent (batch)", disable=not progress,
                  leave=False):
        W = W - (lr / n) * ((W @ X.T - y) @ X)
    _check_finite_run(W[None], lr, fn)
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
    row space of ``X`` (it does for gradient descent, by the null-space lemma), and the
    rows of ``X [n, d]`` must be linearly independent (``X X^T`` invertible).
    """
    fn = "dynamics.least_squares_error_log_norms"
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d]")
    e0 = validation.tensor(e0, "e0", fn=fn, ndim=1, shape=(X.shape[1],),
                           layout=f"[d] = [{X.shape[1]}]")
    lr, steps = _rate(lr, fn), _count(steps, fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    n = X.shape[0]
    norm0 = e0.norm()
    if norm0 == 0:
        raise InputError(f"{fn}: e0 is zero: its decay is undefined")
    G = X @ X.T
    try:
        a = torch.linalg.solve(G, X @ e0.to(X.dtype))    # e0 = X^T a when e0 is in the row space
    except torch.linalg.LinAlgError as err:
        raise InputError(f"{fn}: X X^T is singular (the rows of X are linearly dependent); "
                         "drop the dependent rows of X") from err
    leak = (X.T @ a - e0).norm() / norm0
    if not leak <= 1e-8:
        raise InputError(f"{fn}: e0 is not in the row space of X (relative residual "
                         f"{float(leak):.1e})")
    M = torch.eye(n, dtype=X.dtype, device=X.device) - (lr / n) * G
    out = _record((steps + 1,), X, fn)
    out[0] = norm0.log()
    norm_a = (a @ G @ a).sqrt()                            # |e| = sqrt(a^T X X^T a)
    a = a / norm_a
    for k in tqdm(range(1, steps + 1), desc="error decay", disable=not progress, leave=False):
        a = M @ a
        scale = (a @ G @ a).sqrt()
        out[k] = out[k - 1] + scale.log()
        a = a / scale
    _check_log_norms(out, lr, fn)
    return out


def _check_log_norms(out: torch.Tensor, lr: float, fn: str) -> None:
    """``log |e_k|`` must be finite: ``-inf`` when the error vanishes exactly (``lr`` times
    an eigenvalue of ``X X^T / n`` exactly 1), ``+inf``/NaN when it overflows."""
    bad = ~torch.isfinite(out)
    if not bool(bad.any()):
        return
    k = int(bad.nonzero()[0])
    if float(out[k]) == float("-inf"):
        raise InputError(f"{fn}: the error e_k is exactly 0 from step {k} on (lr={lr} times "
                         "an eigenvalue of X X^T / n is exactly 1): log |e_k| is -inf")
    raise DivergenceError(f"{fn}: gradient descent diverged: |e_k| overflows at step {k} "
                          f"with lr={lr}; a smaller step size may converge")


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
        """The parameters of step ``s`` (``-(S+1) <= s <= S``) as a dict for
        ``torch.func.functional_call(net, ...)``; ``net`` (the trained architecture) only
        supplies the names and shapes."""
        from .kernels import unflatten

        fn = "dynamics.NetTrajectory.param_dict"
        s = self._step(s, fn)
        self._fits(net, fn)
        return unflatten(net, self.params[s])

    def load(self, net: torch.nn.Module, s: int = -1) -> torch.nn.Module:
        """Copy the parameters of step ``s`` (default: the last; ``-(S+1) <= s <= S``) into
        ``net``, the trained architecture in the trajectory's dtype; returns it. This is
        the one function of the module that modifies its argument, by design."""
        fn = "dynamics.NetTrajectory.load"
        s = self._step(s, fn)
        self._fits(net, fn)
        torch.nn.utils.vector_to_parameters(self.params[s].clone(), net.parameters())
        return net

    def _step(self, s, fn: str) -> int:
        return validation.integer(s, "s", fn=fn, lo=-(self.steps + 1), hi=self.steps)

    def _fits(self, net, fn: str) -> None:
        """``net`` is a module with the trajectory's number of parameters and dtype."""
        validation.network(net, "net", fn=fn, finite=False, eval_only=False)
        params = list(net.parameters())
        count = sum(p.numel() for p in params)
        if count != self.params.shape[1]:
            raise InputError(f"{fn}: net has {count} parameters but the trajectory records "
                             f"{self.params.shape[1]}; pass the network that was trained")
        wrong = {p.dtype for p in params} - {self.params.dtype}
        if wrong:
            raise InputTypeError(f"{fn}: net has parameters of dtype {sorted(map(str, wrong))} "
                                 f"but the trajectory is {self.params.dtype}; convert net with "
                                 f".to({self.params.dtype})")


def _per_example_loss(name: str, F: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``[N]`` losses: ``"mse"`` is ``|f - y|^2 / 2``, ``"ce"`` the cross-entropy of the logits
    ``f`` with integer labels ``[N]`` or target probabilities ``[N, k]``."""
    if name == "mse":
        return 0.5 * ((F - Y) ** 2).sum(1)
    if Y.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.cross_entropy(F, Y.long(), reduction="none")
    return -(Y * torch.log_softmax(F, dim=1)).sum(1)


def _targets(name: str, F: torch.Tensor, Y, fn: str) -> torch.Tensor:
    """``Y`` checked against the outputs ``F [N, k]`` for the built-in loss ``name``: int
    labels ``[N]`` in ``0..k-1`` (``"ce"``), else real targets of ``F``'s shape."""
    N, k = F.shape
    if name == "ce" and isinstance(Y, torch.Tensor) and Y.dtype in (torch.int64, torch.int32):
        validation.tensor(Y, "Y", fn=fn, floating=False, shape=(N,), layout="[N] labels")
        if k < 2:
            raise InputError(f"{fn}: cross-entropy needs >= 2 outputs, net has {k}")
        if Y.min() < 0 or Y.max() >= k:
            raise InputError(f"{fn}: Y labels must lie in 0..{k - 1}, got "
                             f"{int(Y.min())}..{int(Y.max())}")
        return Y
    if isinstance(Y, torch.Tensor) and not Y.is_floating_point():
        raise InputTypeError(f"{fn}: Y (the targets) must be floating point (or int64 labels "
                             f"for 'ce'), got {Y.dtype}")
    Y = validation.tensor(Y, "Y", fn=fn, min_ndim=1, layout=f"[N, k] = [{N}, {k}]")
    if Y.ndim == 1 and k == 1:
        Y = Y[:, None]
    if Y.shape != F.shape:
        raise InputError(f"{fn}: the network outputs {tuple(F.shape)} on X but the targets Y "
                         f"have shape {tuple(Y.shape)}: output dimensions must match")
    return Y


def _check_separable(loss_fn, F: torch.Tensor, Y: torch.Tensor, gen: torch.Generator,
                     fn: str) -> None:
    """Raise if ``loss_fn(F, Y)`` is not a 0-d real tensor, or not a sum over examples: for a
    sum, changing two examples' outputs changes the loss by the sum of the separate
    changes."""
    F = F.detach()
    base = loss_fn(F, Y)
    if not isinstance(base, torch.Tensor) or base.ndim != 0 or not base.is_floating_point():
        what = (f"shape {tuple(base.shape)}, dtype {base.dtype}"
                if isinstance(base, torch.Tensor) else type(base).__name__)
        raise InputError(f"{fn}: loss must return a 0-d real tensor (a scalar loss), got "
                         f"{what}")
    validation.finite_output(base, "the loss at the initial outputs", fn=fn,
                             cause="loss(F, Y) overflows or is undefined there")
    N = F.shape[0]
    if N < 2:
        return
    scale = F.abs().mean() + 1.0
    worst, ref = 0.0, float(base.abs()) + 1.0
    for _ in range(4):
        i, j = torch.randperm(N, generator=gen)[:2].tolist()
        Ei, Ej = torch.zeros_like(F), torch.zeros_like(F)
        Ei[i] = 0.5 * scale * torch.randn(F.shape[1], generator=gen, dtype=F.dtype).to(F.device)
        Ej[j] = 0.5 * scale * torch.randn(F.shape[1], generator=gen, dtype=F.dtype).to(F.device)
        mixed = loss_fn(F + Ei + Ej, Y) - loss_fn(F + Ei, Y) - loss_fn(F + Ej, Y) + base
        worst = max(worst, abs(float(mixed)))
    if not worst <= 1e-8 * ref:
        raise InputError(
            f"{fn}: the loss is not a sum (or mean) over examples of a per-example loss: "
            f"changing the outputs of two examples together changed it by {worst:.3g} more "
            "than the sum of the separate changes; the path-kernel identity needs "
            "L = sum_i l(f(x_i), y_i)")


@threads.fair_share
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
    fn = "dynamics.train"
    lr, steps = _rate(lr, fn), _count(steps, fn)
    validation.choice(reduction, "reduction", ("mean", "sum"), fn=fn)
    keep_signals = validation.boolean(keep_signals, "keep_signals", fn=fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    wd = validation.real(weight_decay, "weight_decay", fn=fn, lo=0)
    # batch norm or dropout in training mode would make each output depend on the batch or a
    # random draw, and a forward pass would update the caller's running statistics
    validation.network(net, "net", fn=fn)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    if not params:
        raise InputError(f"{fn}: net has no parameters to train")
    p0 = next(iter(params.values()))
    X = validation.tensor(X, "X", fn=fn, min_ndim=2, dtype=p0.dtype, device=p0.device,
                          layout="[N, ...]")
    N = len(X)
    Y = validation.tensor(Y, "Y", fn=fn, floating=False, finite=False, nonempty=False)
    if Y.ndim == 0 or len(Y) != N:
        raise InputError(f"{fn}: Y must be a tensor with one row per example of X "
                         f"{tuple(X.shape)}, got {getattr(Y, 'shape', type(Y).__name__)}")

    def fwd(p):
        # a private copy of X for every pass: an in-place first module (ReLU(inplace=True))
        # would otherwise overwrite the caller's X, and the next pass would see its output
        out = torch.func.functional_call(net, p, (validation.private_copy(X),))
        return out[:, None] if out.ndim == 1 else out

    with torch.no_grad():
        F0 = fwd(params)
    if F0.ndim != 2 or F0.shape[0] != N:
        raise InputError(f"{fn}: net must map X {tuple(X.shape)} to [N, k], got "
                         f"{tuple(F0.shape)}")
    validation.finite_output(F0, "the network's output on X", fn=fn)
    if callable(loss):
        name = getattr(loss, "__name__", "custom")
        loss_fn = loss
        Y = validation.tensor(Y, "Y", fn=fn, floating=Y.is_floating_point())
        _check_separable(loss_fn, F0, Y, torch.Generator().manual_seed(0), fn)
    elif isinstance(loss, str) and loss in LOSSES:
        name = loss
        Y = _targets(loss, F0, Y, fn)
        scale = 1.0 / N if reduction == "mean" else 1.0

        def loss_fn(F, Y_):
            return scale * _per_example_loss(name, F, Y_).sum()
    else:
        raise InputError(f"{fn}: loss must be one of {LOSSES} or a callable, got {loss!r}")

    names = list(params)
    flat = _record((steps + 1, sum(p.numel() for p in params.values())), p0, fn)
    k = F0.shape[1]
    out_grads = _record((steps, N, k), p0, fn)
    outputs = _record((steps + 1, N, k), p0, fn)
    losses = _record((steps + 1,), p0, fn)
    kept = [] if keep_signals else None
    if keep_signals:
        from . import kernels

        ops = kernels._plan(net)
    for s in tqdm(range(steps + 1), desc="training", disable=not progress, leave=False):
        flat[s] = torch.cat([params[n].reshape(-1) for n in names])
        if keep_signals:
            with torch.no_grad():
                F, sig = kernels._signals(ops, params, validation.private_copy(X))
            with torch.enable_grad():
                Fl = F.detach().requires_grad_(True)
                value = loss_fn(Fl, Y)
                if not torch.isfinite(value):
                    raise _diverged(value, s, lr, fn)
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
                raise _diverged(value, s, lr, fn)
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

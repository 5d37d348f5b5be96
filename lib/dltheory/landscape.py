"""The loss as a function of one layer's parameters: exact quadratic pieces.

Fix a CPA network ``f`` (:mod:`dltheory.cpa`), a training set ``(X, Y)`` of ``N`` points
and one parametrized affine layer ``l`` (``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``).
The **loss convention** of this module (and of the book's landscape chapters) is the
squared error

    L(theta) = s * sum_i |f(x_i) - y_i|^2,    s = 1 (reduction="sum") or 1/N ("mean"),

where ``theta = [W_l | b_l]`` is the layer's weight with its bias appended as a last
column, flattened row-major: ``theta.reshape(out, q)`` with ``q = fan_in + 1`` (``fan_in``
alone without a bias; for a convolution ``fan_in = C_in * prod(kernel)``).

While every training point keeps its activation code, ``f(x_i)`` is affine in ``theta``:
the layer computes ``u_{i,p} = W z_{i,p} + b`` at each position ``p`` (one position for a
``Linear`` on ``[N, fan_in]``; the patches of a convolution), and the rest of the network
is affine in ``u`` with the exact derivative ``J_i = df(x_i)/du`` ``[k, out, positions]``
(for an MLP ``J_i = A_{l+1->L,i} D_{l,i}``). So ``f(x_i) = M_i theta + r_i`` with

    M_i = sum_p J_i[:, :, p] (x) z~_{i,p}^T           (z~ = [z; 1], Kronecker product),

and the loss is exactly quadratic: ``L(theta0 + d) = c + g.d + d.H d / 2`` with
``H = 2 s sum_i M_i^T M_i`` (the Gauss-Newton matrix), ``g = 2 s sum_i M_i^T e_i``,
``c = s sum_i |e_i|^2``, ``e_i = f(x_i) - y_i``. For a ``Linear`` layer
``M_i^T M_i = (J_i^T J_i) (x) (z~_i z~_i^T)``, so ``H`` is one matrix product of the
``[N, out^2]`` and ``[N, q^2]`` stacks of these small factors; the matrix-free product
``H v = 2 s sum_i J_i^T J_i V z~_i z~_i^T`` (``V = v.reshape(out, q)``) needs memory
``O(N (k out + q) + P)``, independent of ``P^2``.

Entry points: :func:`layers` (the parametrized layers in execution order, the indices
that ``layer=`` takes), :func:`layer_quadratic` -> :class:`Quadratic` (``H``, ``g``,
``c``, :meth:`Quadratic.hvp`, spectra), :func:`parameter_breakpoints` (the exact ``t``
where a training code changes along ``theta + t d``), :func:`loss_along` (the true loss
along such a line), :func:`layer_params`, :func:`with_layer_params` and
:func:`squared_loss`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cpa, regions, spectra, threads, validation
from .errors import DLTheoryError, InputError, InputTypeError

__all__ = [
    "DENSE_MAX_PARAMS", "LOSSES", "REDUCTIONS", "LayerIndexError", "LayerInfo", "Quadratic",
    "layers",
    "layer_params", "layer_quadratic", "loss_along", "parameter_breakpoints",
    "squared_loss", "with_layer_params",
]

LOSSES = ("mse", "squared")
"""Names of the supported loss: the squared error (the only loss that is quadratic)."""
REDUCTIONS = ("sum", "mean")
DENSE_MAX_PARAMS = 16384
"""Largest layer (in parameters) whose dense Hessian is built: 16384^2 float64 = 2 GiB."""
_CHUNK = 8192          # rows (points x line parameters) per forward pass
_BLOCK = 1 << 24       # elements per einsum block when building H


# ----------------------------------------------------------------------------- layers


_KINDS: dict[type, str] = {nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d"}


@dataclass(frozen=True, eq=False)
class LayerInfo:
    """A parametrized affine layer of a network.

    ``index``: its position among the network's parametrized layers (what ``layer=``
    takes); ``path``: its name in ``net.named_modules()``; ``kind``: ``"linear"``,
    ``"conv1d"`` or ``"conv2d"``; ``shape``: ``(out, q)`` of ``theta.reshape(out, q)``,
    ``q = fan_in + 1`` with a bias (``fan_in`` without).
    """

    index: int
    path: str
    kind: str
    module: nn.Module
    shape: tuple[int, int]
    bias: bool

    @property
    def n_params(self) -> int:
        """``P = out * q``."""
        return self.shape[0] * self.shape[1]


class LayerIndexError(InputError, IndexError):
    """``layer=`` is not a valid index into :func:`layers` (also an ``IndexError``)."""


def layers(net: nn.Module) -> list[LayerInfo]:
    """The parametrized affine layers of ``net`` (``Linear``, ``Conv1d``, ``Conv2d``).

    In the order of ``net.named_modules()``, which for the book's containers
    (``Sequential``, :class:`~dltheory.nets.ResidualBlock`,
    :class:`~dltheory.nets.DenseBlock`) is the order of execution; ``layers(net)[l]`` is
    the layer that ``layer=l`` selects. A network with a NaN or inf parameter is refused.
    """
    validation.network(net, "net", fn="landscape.layers", eval_only=False)
    return _layers(net)


def _layers(net: nn.Module) -> list[LayerInfo]:
    out = []
    for path, m in net.named_modules():
        kind = _KINDS.get(type(m))
        if kind is None:
            continue
        w = m.weight
        fan_in = w[0].numel()
        bias = m.bias is not None
        out.append(LayerInfo(len(out), path, kind, m, (w.shape[0], fan_in + int(bias)), bias))
    return out


def _layer(net: nn.Module, layer, fn: str) -> LayerInfo:
    """Layer ``layer`` of the (already checked) ``net``: an index into :func:`layers`."""
    if isinstance(layer, LayerInfo):
        return layer
    found = _layers(net)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InputTypeError(f"{fn}: layer must be an int index into landscape.layers(net), "
                             f"got {layer!r}")
    if not found:
        raise InputError(f"{fn}: net ({type(net).__name__}) has no Linear/Conv1d/Conv2d layer")
    if not -len(found) <= layer < len(found):
        names = ", ".join(f"{i}: {x.path} ({x.kind})" for i, x in enumerate(found))
        raise LayerIndexError(f"{fn}: layer {layer} is out of range: the network has "
                              f"{len(found)} parametrized layers, valid indices "
                              f"0..{len(found) - 1} (or negative from the end): {names}")
    return found[layer]


def layer_params(net: nn.Module, layer) -> Tensor:
    """``theta = [W | b]`` of layer ``layer``, flattened row-major: ``[P]`` (a copy)."""
    fn = "landscape.layer_params"
    validation.network(net, "net", fn=fn, eval_only=False)
    return _layer_params(_layer(net, layer, fn))


def _layer_params(info: LayerInfo) -> Tensor:
    m = info.module
    W = m.weight.detach().reshape(info.shape[0], -1)
    if info.bias:
        W = torch.cat([W, m.bias.detach()[:, None]], 1)
    return W.reshape(-1).clone()


def with_layer_params(net: nn.Module, layer, theta: Tensor) -> nn.Module:
    """A copy of ``net`` whose layer ``layer`` has the parameters ``theta [P]`` (layout of
    :func:`layer_params`); ``net`` itself is not modified."""
    fn = "landscape.with_layer_params"
    validation.network(net, "net", fn=fn, eval_only=False)
    info = _layer(net, layer, fn)
    theta = _direction(info, theta, _layer_params(info), "theta", fn)
    new = copy.deepcopy(net)
    module = dict(new.named_modules())[info.path]
    with torch.no_grad():
        for name, value in _split(info, theta).items():
            getattr(module, name).copy_(value)
    return new


def _split(info: LayerInfo, theta: Tensor) -> dict[str, Tensor]:
    """``theta [P]`` -> ``{"weight": [...], "bias": [out]}`` in the module's shapes."""
    T = theta.reshape(info.shape)
    m = info.module
    out = {"weight": (T[:, :-1] if info.bias else T).reshape(m.weight.shape)}
    if info.bias:
        out["bias"] = T[:, -1]
    return out


def _direction(info: LayerInfo, d, ref: Tensor, name: str, fn: str) -> Tensor:
    """``d`` (``P`` finite entries, any shape) as ``[P]`` in ``ref``'s dtype and device."""
    d = validation.tensor(d, name, fn=fn, layout=f"of {info.n_params} entries (theta's "
                          f"layout [out, q] = {list(info.shape)})")
    if d.numel() != info.n_params:
        raise InputError(f"{fn}: {name} has shape {tuple(d.shape)} ({d.numel()} entries) but "
                         f"layer {info.index} ({info.path}) has P = {info.n_params} "
                         f"parameters (theta.reshape{info.shape})")
    return d.reshape(-1).to(dtype=ref.dtype, device=ref.device)


def _line(t, ref: Tensor, fn: str) -> Tensor:
    """The line parameters ``t`` (a number, a sequence, a NumPy array or a tensor of finite
    reals; at least one) as a tensor of the same shape in ``ref``'s dtype and device."""
    if isinstance(t, bool) or (isinstance(t, Tensor) and (t.dtype == torch.bool
                                                         or t.is_complex())):
        raise InputTypeError(f"{fn}: t must hold real numbers, got {t!r}")
    try:
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputTypeError(f"{fn}: t must be a number or a sequence of numbers [T], got "
                             f"{type(t).__name__} ({err})") from err
    return validation.tensor(t, "t", fn=fn, layout="[T]")


# ----------------------------------------------------------------------------- inputs


def squared_loss(f: Tensor, Y: Tensor, reduction: str = "sum") -> Tensor:
    """``s * sum_i |f_i - y_i|^2`` over a batch ``f [N, ...]``, ``Y`` (``f.numel()``
    entries, reshaped as ``f``); ``s = 1`` or ``1/N``. Returns a 0-d tensor."""
    fn = "landscape.squared_loss"
    validation.choice(reduction, "reduction", REDUCTIONS, fn=fn)
    f = validation.tensor(f, "f", fn=fn, min_ndim=1, layout="[N, ...]")
    Y = validation.tensor(Y, "Y", fn=fn, min_ndim=1, layout="[N, ...]")
    if Y.numel() != f.numel():
        raise InputError(f"{fn}: Y has shape {tuple(Y.shape)} but f has shape "
                         f"{tuple(f.shape)}: they need the same number of entries")
    return _squared(f, Y, reduction, fn)


def _squared(f: Tensor, Y: Tensor, reduction: str, fn: str) -> Tensor:
    r = (f - Y.reshape(f.shape)).reshape(f.shape[0], -1)
    total = (r * r).sum()
    out = total / f.shape[0] if reduction == "mean" else total
    validation.finite_output(out, "the squared loss of f and Y", fn=fn,
                             cause="f - Y is too large to square in its dtype")
    return out


def _check_loss(loss, reduction, fn: str) -> None:
    if not isinstance(loss, str) or loss not in LOSSES:
        raise InputError(
            f"{fn}: loss={loss!r} is not supported: the loss is an exact quadratic function "
            f"of a layer's parameters only for the squared error; use loss='mse' (or "
            f"'squared'), L = s * sum_i |f(x_i) - y_i|^2")
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise InputError(f"{fn}: reduction must be one of {REDUCTIONS} (s = 1 or 1/N), got "
                         f"{reduction!r}")


def _dtype_device(net: nn.Module):
    """The dtype and device of the network's first floating parameter, or ``(None, None)``."""
    for p in net.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return None, None


def _inputs(net: nn.Module, X, fn: str) -> Tensor:
    """The training inputs ``X [N, *in_shape]``: finite, ``N >= 1``, the network's dtype."""
    dtype, device = _dtype_device(net)
    return validation.tensor(X, "X", fn=fn, min_ndim=2, dtype=dtype, device=device,
                             layout="[N, *in_shape]")


def _targets(Y, X: Tensor, fn: str) -> Tensor:
    """The targets ``Y [N, ...]`` (real, finite), one row per point of ``X``."""
    if isinstance(Y, Tensor) and not Y.is_floating_point() and not Y.is_complex():
        raise InputTypeError(f"{fn}: Y must hold real targets of the network's output shape "
                             f"[N, k], got dtype {Y.dtype} (class labels? use one-hot "
                             "targets)")
    Y = validation.tensor(Y, "Y", fn=fn, min_ndim=1, layout="[N, *out_shape]")
    if Y.shape[0] != X.shape[0]:
        raise InputError(f"{fn}: X and Y do not pair: X has shape {tuple(X.shape)}, Y has "
                         f"shape {tuple(Y.shape)} (the first dimension is the number of "
                         "points)")
    return Y


def _match(Y: Tensor, f: Tensor, fn: str) -> Tensor:
    """``Y`` (checked by :func:`_targets`) as ``[N, k]`` in ``f``'s dtype and device."""
    N, k = f.shape
    if Y[0].numel() != k:
        raise InputError(f"{fn}: Y has shape {tuple(Y.shape)} but the network's output is "
                         f"[{N}, {k}] (flattened): each target needs {k} entries")
    return Y.reshape(N, k).to(device=f.device, dtype=f.dtype)


def _forward(net: nn.Module, X: Tensor, fn: str, params: dict | None = None,
             where: str = "") -> Tensor:
    """The network on a private copy of ``X`` (an in-place first module cannot write into
    the caller's tensor), with ``params`` substituted when given: ``[N, *out]``, finite."""
    x = validation.private_copy(X)
    try:
        y = net(x) if params is None else torch.func.functional_call(net, params, (x,))
    except (RuntimeError, ValueError) as err:
        if isinstance(err, DLTheoryError):
            raise
        raise InputError(f"{fn}: the network cannot run on X of shape {tuple(X.shape)} "
                         f"[N, *in_shape]: {err}") from err
    if not isinstance(y, Tensor) or y.ndim < 1 or y.shape[0] != X.shape[0]:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise InputError(f"{fn}: net maps X of shape {tuple(X.shape)} to {shape}; it must "
                         "output [N, *out_shape] with the same number of points")
    validation.finite_output(y.detach(), f"the network's output on X{where}", fn=fn)
    return y


# ----------------------------------------------------------------------------- capture


def _pads(m: nn.Module, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
    """(left, right) zero padding per spatial dimension of a convolution."""
    if m.padding == "valid":
        return [(0, 0)] * len(spatial)
    if m.padding == "same":
        tot = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
        return [(t // 2, t - t // 2) for t in tot]
    return [(p, p) for p in m.padding]


def _patches(info: LayerInfo, z: Tensor) -> Tensor:
    """The layer's input as ``Z [N, q, L]``: the column ``z~_{i,p}`` (a 1 appended for the
    bias) of every position ``p``, so that the layer's output at ``p`` is ``[W|b] z~``."""
    N = z.shape[0]
    m = info.module
    if info.kind == "linear":
        Z = z.reshape(N, -1, z.shape[-1]).transpose(1, 2)
    else:
        x = z if info.kind == "conv2d" else z[:, :, None, :]
        kern, stride, dil = m.kernel_size, m.stride, m.dilation
        pads = _pads(m, tuple(z.shape[2:]))
        if info.kind == "conv1d":
            kern, stride, dil, pads = (1, *kern), (1, *stride), (1, *dil), [(0, 0), *pads]
        x = F.pad(x, (*pads[1], *pads[0]))
        Z = F.unfold(x, kern, dilation=dil, stride=stride)
    if info.bias:
        Z = torch.cat([Z, Z.new_ones(N, 1, Z.shape[2])], 1)
    return Z


def _capture(net: nn.Module, info: LayerInfo, X: Tensor, fn: str):
    """One forward and ``k`` backward passes: ``f [N, k]``, ``Z [N, q, L]`` and
    ``J [N, k, out, L]`` (the derivative of ``f(x_i)`` wrt the layer's output at ``p``)."""
    store: dict = {}

    def hook(module, args, out):
        if "z" in store:
            store["twice"] = True
            return None
        store["z"] = args[0].detach()
        delta = torch.zeros_like(out, requires_grad=True)
        store["delta"] = delta
        return out + delta

    handle = info.module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            y = _forward(net, X, fn)
    finally:
        handle.remove()
    if "z" not in store:
        raise InputError(f"{fn}: layer {info.index} ({info.path}) was not called by the "
                         "forward pass")
    if store.get("twice"):
        raise InputError(f"{fn}: layer {info.index} ({info.path}) is called more than once "
                         "per forward pass (shared weights): the loss is then not quadratic "
                         "in its parameters")
    N = X.shape[0]
    delta = store["delta"]
    grads = []
    with torch.enable_grad():
        f = y.reshape(N, -1)
        for a in range(f.shape[1]):
            (g,) = torch.autograd.grad(f[:, a].sum(), delta,
                                       retain_graph=a + 1 < f.shape[1], allow_unused=True)
            grads.append(torch.zeros_like(delta) if g is None else g)
    J = torch.stack(grads, 1)                                  # [N, k, *out_shape]
    out = info.shape[0]
    if info.kind == "linear":
        J = J.reshape(N, f.shape[1], -1, out).transpose(2, 3)
    else:
        J = J.reshape(N, f.shape[1], out, -1)
    Z = _patches(info, store["z"])
    if Z.shape[2] != J.shape[3]:
        raise AssertionError(f"layer {info.path}: {Z.shape[2]} patches for {J.shape[3]} "
                             "output positions")
    return f.detach(), Z, J.detach()


# ----------------------------------------------------------------------------- quadratic


@dataclass(frozen=True, eq=False)
class Quadratic:
    """The exact quadratic piece of the loss in one layer's parameters.

    ``L(theta) = c + g.(theta - theta0) + (theta - theta0).H (theta - theta0) / 2`` for every
    ``theta`` at which no training point's activation code differs from its code at
    ``theta0``. ``theta0, g [P]``; ``c`` 0-d; ``H [P, P]`` (``None`` when built with
    ``dense=False``: use :meth:`hvp`); ``shape = (out, q)``; ``Z [N, q, L]`` and
    ``J [N, k, out, L]`` the factors of ``M_i = sum_p J_i[:, :, p] (x) z~_{i,p}^T``;
    ``residual [N, k]`` ``= f(x_i) - y_i`` at ``theta0``; ``scale`` the ``s`` of the loss.
    """

    layer: LayerInfo
    theta0: Tensor
    c: Tensor
    g: Tensor
    H: Tensor | None
    Z: Tensor
    J: Tensor
    residual: Tensor
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.layer.shape

    @property
    def n_params(self) -> int:
        return self.layer.n_params

    def hvp(self, v: Tensor) -> Tensor:
        """``H v`` without forming ``H``: ``v [..., P] -> [..., P]``.

        ``H v = 2 s sum_i M_i^T (M_i v)`` with ``M_i v = sum_p J_i[:, :, p] V z~_{i,p}``,
        ``V = v.reshape(out, q)``: memory ``O(N (k out + q) L + P)`` per vector.
        """
        return self._hvp(self._vectors(v, "v", "landscape.Quadratic.hvp"))

    def _hvp(self, v: Tensor) -> Tensor:
        """:meth:`hvp` of a checked ``v``: what the spectra and :meth:`value` call."""
        out, q = self.shape
        V = v.reshape(*v.shape[:-1], out, q).to(self.Z.dtype)
        U = torch.einsum("...oj,njp->...nop", V, self.Z)       # layer output change
        w = torch.einsum("naop,...nop->...na", self.J, U)      # M_i v
        back = torch.einsum("naop,...na->...nop", self.J, w)
        Hv = torch.einsum("...nop,njp->...oj", back, self.Z)
        return (2 * self.scale) * Hv.reshape(v.shape)

    def _vectors(self, v, name: str, fn: str) -> Tensor:
        """``v [..., P]``: a finite real tensor whose last dimension is ``P``."""
        v = validation.tensor(v, name, fn=fn, min_ndim=1, layout=f"[..., {self.n_params}]")
        if v.shape[-1] != self.n_params:
            raise InputError(f"{fn}: {name} has shape {tuple(v.shape)}; its last dimension "
                             f"must be P = {self.n_params}")
        return v

    def _dense_or_hvp(self, v: Tensor) -> Tensor:
        return self.H @ v if self.H is not None else self._hvp(v)

    def value(self, theta: Tensor) -> Tensor:
        """The quadratic at ``theta [..., P]``: ``[...]``."""
        theta = self._vectors(theta, "theta", "landscape.Quadratic.value")
        d = theta - self.theta0
        Hd = (d @ self.H) if self.H is not None else self._hvp(d)
        return self.c + (d * self.g).sum(-1) + 0.5 * (d * Hd).sum(-1)

    def along(self, direction: Tensor, t) -> Tensor:
        """The quadratic on the line ``theta0 + t d``: ``c + t g.d + t^2 d.Hd / 2``, ``[T]``."""
        fn = "landscape.Quadratic.along"
        d = _direction(self.layer, direction, self.theta0, "direction", fn)
        t = _line(t, self.theta0, fn)
        gd = torch.dot(self.g, d)
        dHd = torch.dot(d, self._dense_or_hvp(d))
        return self.c + t * gd + 0.5 * t * t * dHd

    def _need_dense(self, what: str) -> Tensor:
        if self.H is None:
            raise InputError(f"landscape.Quadratic.{what} needs the dense Hessian: build the "
                             "quadratic with dense=True, or use top_eigenvalue() / trace() "
                             "(matrix-free)")
        return self.H

    def eigvalsh(self) -> Tensor:
        """Eigenvalues of ``H`` in ascending order, ``[P]`` (needs the dense ``H``)."""
        H = self._need_dense("eigvalsh()")
        return torch.linalg.eigvalsh((H + H.T) / 2)

    def rank(self, rtol: float | None = None) -> int:
        """Number of eigenvalues above ``rtol * lambda_max`` (default ``P * eps``)."""
        rtol = _rtol(rtol, "landscape.Quadratic.rank")
        lam = self.eigvalsh()
        rtol = self.n_params * torch.finfo(lam.dtype).eps if rtol is None else rtol
        return int((lam > rtol * lam[-1].clamp_min(0)).sum())

    def factor(self) -> Tensor:
        """``F = sqrt(2 s) M`` ``[N k, P]`` with ``H = F^T F`` (``M_i = sum_p J_i[:, :, p] (x)
        z~_{i,p}^T``, the rows of point ``i``): memory ``N k P``, never ``P^2``."""
        N, k = self.J.shape[:2]
        M = torch.einsum("naop,njp->naoj", self.J, self.Z).reshape(N * k, -1)
        return M * math.sqrt(2 * self.scale)

    def gram_eigvalsh(self) -> Tensor:
        """Eigenvalues (ascending) of ``H`` that can be non-zero, without ``H``: those of the
        ``[N k, N k]`` Gram matrix ``F F^T`` when ``N k < P`` (``N k`` values), else of
        ``F^T F`` itself (``P`` values)."""
        F = self.factor()
        G = F @ F.T if F.shape[0] < F.shape[1] else F.T @ F
        return torch.linalg.eigvalsh((G + G.T) / 2)

    def condition_number(self, *, on_range: bool = True, rtol: float | None = None) -> Tensor:
        """``lambda_max / lambda_min`` of ``H`` (0-d).

        ``H`` is positive semi-definite and usually singular (its rank is at most ``N k``);
        with ``on_range=True`` the smallest eigenvalue above ``rtol * lambda_max`` (default
        ``P * eps``) is used: the conditioning of the quadratic on the range of ``H``, the
        only directions in which the loss curves (from the dense ``H`` when it was built,
        else from :meth:`gram_eigvalsh`). ``on_range=False``: the plain ratio, ``inf`` when
        ``lambda_min <= 0`` (needs the dense ``H``).
        """
        fn = "landscape.Quadratic.condition_number"
        on_range = validation.boolean(on_range, "on_range", fn=fn)
        rtol = _rtol(rtol, fn)
        if not on_range:
            lam = self.eigvalsh()
            top = lam[-1]
            return top / lam[0] if lam[0] > 0 else torch.full_like(top, math.inf)
        lam = self.eigvalsh() if self.H is not None else self.gram_eigvalsh()
        top = lam[-1]
        rtol = self.n_params * torch.finfo(lam.dtype).eps if rtol is None else rtol
        pos = lam[lam > rtol * top.clamp_min(0)]
        if pos.numel() == 0:
            return torch.full_like(top, math.inf)
        return top / pos[0]

    def trace(self) -> Tensor:
        """``tr H = 2 s sum_i |M_i|_F^2`` in closed form (0-d), without forming ``H``."""
        if self.Z.shape[2] == 1:
            per = self.J.square().sum((1, 2, 3)) * self.Z.square().sum((1, 2))
        else:
            JJ = torch.einsum("naop,naoq->npq", self.J, self.J)
            ZZ = torch.einsum("njp,njq->npq", self.Z, self.Z)
            per = (JJ * ZZ).sum((1, 2))
        return 2 * self.scale * per.sum()

    def top_eigenvalue(self, *, method: str = "lanczos", steps: int = 100,
                       tol: float = 1e-12, generator: torch.Generator | None = None,
                       reorthogonalize: bool = True) -> Tensor:
        """The largest eigenvalue of ``H`` from Hessian-vector products (0-d):
        :func:`dltheory.spectra.top_eigenvalue` on :meth:`hvp`. The random start vector
        comes from ``generator``, by default one seeded from the profile
        (:func:`dltheory.validation.generator`): torch's global generator is never used."""
        fn = "landscape.Quadratic.top_eigenvalue"
        validation.choice(method, "method", ("lanczos", "power"), fn=fn)
        steps = validation.integer(steps, "steps", fn=fn, lo=1)
        tol = validation.real(tol, "tol", fn=fn, lo=0)
        reorthogonalize = validation.boolean(reorthogonalize, "reorthogonalize", fn=fn)
        generator = validation.generator(generator, fn=fn)
        return spectra.top_eigenvalue(self._hvp, self.n_params, method=method, steps=steps,
                                      tol=tol, generator=generator, dtype=self.Z.dtype,
                                      device=self.Z.device, reorthogonalize=reorthogonalize)

    def trace_hutchinson(self, probes: int, *,
                         generator: torch.Generator | None = None) -> Tensor:
        """Hutchinson's samples ``v^T H v`` (Rademacher ``v``), ``[probes]``; ``v`` is drawn
        from ``generator``, by default one seeded from the profile (never torch's global
        generator)."""
        fn = "landscape.Quadratic.trace_hutchinson"
        probes = validation.integer(probes, "probes", fn=fn, lo=1)
        generator = validation.generator(generator, fn=fn)
        return spectra.hutchinson_trace(self._hvp, self.n_params, probes, generator=generator,
                                        dtype=self.Z.dtype, device=self.Z.device)


def _rtol(rtol, fn: str) -> float | None:
    """``rtol``: None (the default ``P * eps``) or a finite real ``>= 0``."""
    return None if rtol is None else validation.real(rtol, "rtol", fn=fn, lo=0)


def _dense_hessian(Z: Tensor, J: Tensor, shape: tuple[int, int], scale: float) -> Tensor:
    """``H = 2 s sum_i M_i^T M_i`` ``[P, P]``, by blocks of points (bounded memory)."""
    N, k, out, L = J.shape
    q = Z.shape[1]
    P = out * q
    if L == 1:
        # M_i^T M_i = (J_i^T J_i) (x) (z~_i z~_i^T): for each output row o, one GEMM of the
        # stacked small factors gives H[(o, .), (o', .)] for o' >= o, written straight into
        # theta's (o, j) order and mirrored (no permuting copy of the whole [P, P] matrix)
        H = torch.empty(out, q, out, q, dtype=Z.dtype, device=Z.device)
        step = max(1, _BLOCK // (out * out + q * q))
        for s in range(0, N, step):
            Jb, Zb = J[s:s + step, :, :, 0], Z[s:s + step, :, 0]
            G = torch.einsum("nao,nap->nop", Jb, Jb) * (2 * scale)        # [n, out, out]
            ZZ = (Zb[:, :, None] * Zb[:, None, :]).reshape(len(Zb), -1)  # [n, q*q]
            for o in range(out):
                # the blocks o' >= o, and their mirror images (H is symmetric)
                blk = (G[:, o, o:].T @ ZZ).view(out - o, q, q)             # [o', j, j']
                if s == 0:
                    H[o, :, o:].copy_(blk.transpose(0, 1))
                    H[o + 1:, :, o].copy_(blk[1:].transpose(1, 2))
                else:
                    H[o, :, o:].add_(blk.transpose(0, 1))
                    H[o + 1:, :, o].add_(blk[1:].transpose(1, 2))
        return H.view(P, P)
    H = None
    step = max(1, _BLOCK // (k * P))
    for s in range(0, N, step):
        M = torch.einsum("naop,njp->naoj", J[s:s + step], Z[s:s + step]).reshape(-1, P)
        H = (2 * scale) * (M.T @ M) if H is None else H.addmm_(M.T, M, alpha=2 * scale)
    return H


@threads.fair_share
def layer_quadratic(net: nn.Module, layer, X: Tensor, Y: Tensor, *, loss: str = "mse",
                    reduction: str = "sum", dense: bool = True,
                    strict: bool = True) -> Quadratic:
    """The exact quadratic form of the loss in layer ``layer``'s parameters.

    ``net``: a CPA network (validated with :func:`dltheory.cpa.validate`; batch norm in
    eval mode); ``layer``: an index into :func:`layers` (negative counts from the end);
    ``X [N, *in_shape]``, ``Y [N, *out_shape]`` (real targets, ``N * k`` numbers for an
    output ``[N, k]``) in the network's dtype and device. ``loss``: only ``"mse"`` /
    ``"squared"``, the squared error, with ``reduction`` ``"sum"`` (``s = 1``) or
    ``"mean"`` (``s = 1/N``). ``dense=False`` skips the ``[P, P]`` matrix (use
    :meth:`Quadratic.hvp` and the matrix-free spectra); ``dense=True`` refuses layers above
    :data:`DENSE_MAX_PARAMS` parameters. ``strict=False`` skips the CPA validation: the
    negative controls use it to build the Gauss-Newton "quadratic" of a smooth network,
    which is then *not* the loss.

    One forward pass and ``k`` backward passes (``k`` outputs) give ``J`` and ``Z``; ``H``
    is then a matrix product (``Linear``) or ``M^T M`` with ``M [N k, P]`` (convolutions);
    no per-example ``P``-sized Jacobian is formed for ``Linear`` layers.

    Raises :class:`dltheory.errors.InputError` (a ``ValueError``) for another loss,
    mismatched ``X``/``Y``, empty or non-finite data, a network with NaN weights or with
    batch norm or dropout in training mode, or a layer called twice;
    :class:`LayerIndexError` (also an ``IndexError``) for a layer out of range;
    :class:`dltheory.cpa.NotCPAError` for a network that is not CPA. The network is handed
    a private copy of ``X``: neither ``X`` nor ``net`` is modified.
    """
    fn = "landscape.layer_quadratic"
    _check_loss(loss, reduction, fn)
    dense = validation.boolean(dense, "dense", fn=fn)
    strict = validation.boolean(strict, "strict", fn=fn)
    validation.network(net, "net", fn=fn)
    if strict:
        cpa.validate(net)
    info = _layer(net, layer, fn)
    X = _inputs(net, X, fn)
    Y = _targets(Y, X, fn)
    if dense and info.n_params > DENSE_MAX_PARAMS:
        raise InputError(f"{fn}: layer {info.index} ({info.path}) has P = {info.n_params} "
                         f"parameters: a dense Hessian would take "
                         f"{info.n_params ** 2 * 8 / 2**30:.3g} GiB "
                         f"(limit P <= {DENSE_MAX_PARAMS}); pass dense=False and use "
                         "Quadratic.hvp / top_eigenvalue / trace")
    f, Z, J = _capture(net, info, X, fn)
    Yf = _match(Y, f, fn)
    N = X.shape[0]
    scale = 1.0 / N if reduction == "mean" else 1.0
    e = f - Yf                                                  # [N, k]
    c = scale * (e * e).sum()
    u = torch.einsum("naop,na->nop", J, e)
    g = (2 * scale) * torch.einsum("nop,njp->oj", u, Z).reshape(-1)
    H = _dense_hessian(Z, J, info.shape, scale) if dense else None
    return Quadratic(info, _layer_params(info).to(Z.dtype), c, g, H, Z, J, e, scale)


# ----------------------------------------------------------------------------- the line


@threads.fair_share
def loss_along(net: nn.Module, layer, direction: Tensor, X: Tensor, Y: Tensor, t, *,
               loss: str = "mse", reduction: str = "sum", strict: bool = True) -> Tensor:
    """The true loss at ``theta0 + t d`` for each ``t`` ``[T]``: ``[T]``.

    Evaluates the network with the layer's parameters replaced
    (:func:`torch.func.functional_call`), one forward pass per ``t``, each on a private
    copy of ``X``; neither ``net`` nor ``X`` is modified. ``direction [P]``,
    ``X [N, *in_shape]`` and ``Y`` as in :func:`layer_quadratic`; ``t``: a number, a
    sequence or a tensor of finite reals.
    """
    fn = "landscape.loss_along"
    _check_loss(loss, reduction, fn)
    strict = validation.boolean(strict, "strict", fn=fn)
    validation.network(net, "net", fn=fn)
    if strict:
        cpa.validate(net)
    info = _layer(net, layer, fn)
    X = _inputs(net, X, fn)
    Y = _targets(Y, X, fn)
    theta0 = _layer_params(info)
    d = _direction(info, direction, theta0, "direction", fn)
    t = _line(t, theta0, fn).reshape(-1)
    out = []
    prefix = f"{info.path}." if info.path else ""
    with torch.no_grad():
        for ti in t:
            params = {prefix + k: v for k, v in _split(info, theta0 + ti * d).items()}
            f = _forward(net, X, fn, params, f" at t = {float(ti):g}").reshape(X.shape[0], -1)
            if not out:
                Yf = _match(Y, f, fn)
            out.append(_squared(f, Yf, reduction, fn))
    return torch.stack(out)


def _apply_layer(info: LayerInfo, z: Tensor, params: dict[str, Tensor]) -> Tensor:
    """The layer's operation with other parameters (no hooks are called)."""
    if info.kind == "linear":
        return F.linear(z, params["weight"], params.get("bias"))
    return info.module._conv_forward(z, params["weight"], params.get("bias"))


def _sites_rows(net: nn.Module, info: LayerInfo, dparams: dict[str, Tensor], X: Tensor,
                t: Tensor, point: Tensor, chunk: int, fn: str) -> list[tuple[str, Tensor]]:
    """Every site of ``net`` for the rows ``(t[r], point[r])``: training point
    ``X[point[r]]`` with layer ``info`` at ``theta0 + t[r] d``. Returns ``(kind, values)``
    per site, ``values [R, U]`` (unit sites) or ``[R, G, k]`` (max sites).

    The layer's output at ``theta0 + t d`` is exactly ``u + t (dW z + db)``: a forward hook
    adds ``t`` times the layer applied with the direction's parameters."""
    parts: list[list[tuple[str, Tensor]]] = []
    for s in range(0, max(len(t), 1), chunk):
        tb = t[s:s + chunk]

        def hook(module, args, out, tb=tb):
            du = _apply_layer(info, args[0], dparams)
            return out + tb.reshape(-1, *([1] * (out.ndim - 1))) * du

        handle = info.module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                sites = cpa.trace(net, X[point[s:s + chunk]])
        finally:
            handle.remove()
        for site in sites:
            validation.finite_output(site.pre, "the network along theta0 + t d for t in "
                                     "[t_min, t_max]", fn=fn, cause="t_min, t_max or "
                                     "direction are too large for the dtype")
        parts.append([(site.kind, site.pre if site.kind == "max"
                       else site.pre.reshape(len(tb), -1)) for site in sites])
    if len(parts) == 1:
        return parts[0]
    return [(p[0][0], torch.cat([q[1] for q in p])) for p in zip(*parts, strict=True)]


def _magnitude(values: Tensor) -> float:
    """The largest magnitude among ``values`` (0 for none), without an ``abs`` copy."""
    if not values.numel():
        return 0.0
    lo, hi = torch.aminmax(values)
    return max(float(hi), -float(lo))


def _row_roots(t: Tensor, point: Tensor, kind: str, vals: Tensor, eps: float):
    """Roots ``(t, point)`` of one site between consecutive rows of the same point.

    Rows are sorted by ``(point, t)``; on each interval between two consecutive rows of one
    point the site's pre-activations (or max candidates) are affine in ``t``, so a strict
    sign change (beyond ``eps``) is a zero, found by linear interpolation; for a max site,
    a crossing of two candidates that are at the top of the group there."""
    same = point[:-1] == point[1:]
    a, b = vals[:-1], vals[1:]
    if kind == "max":
        k = vals.shape[-1]
        if k < 2:
            return t.new_zeros(0), point.new_zeros(0)
        i, j = torch.triu_indices(k, k, 1, device=vals.device)
        da, db = a[..., i] - a[..., j], b[..., i] - b[..., j]
        cross = ((da > eps) & (db < -eps)) | ((da < -eps) & (db > eps))
        cross &= same[:, None, None]
        r, g, c = cross.nonzero(as_tuple=True)
        lam = da[r, g, c] / (da[r, g, c] - db[r, g, c])
        at = a[r, g] + lam[:, None] * (b[r, g] - a[r, g])
        top = at.gather(1, i[c][:, None]).squeeze(1) >= at.max(1).values - eps
        r, lam = r[top], lam[top]
    else:
        cross = ((a > eps) & (b < -eps)) | ((a < -eps) & (b > eps))
        cross &= same[:, None]
        r, u = cross.nonzero(as_tuple=True)
        lam = a[r, u] / (a[r, u] - b[r, u])
    return t[r] + lam * (t[r + 1] - t[r]), point[r]


def _order(t: Tensor, point: Tensor) -> Tensor:
    """The permutation that sorts rows by ``(point, t)``."""
    o = torch.argsort(t, stable=True)
    return o[torch.argsort(point[o], stable=True)]


def _fresh_rows(t: Tensor, point: Tensor, rt: Tensor, rp: Tensor, tol: float):
    """New roots ``(rt, rp)`` that are more than ``tol`` away from every row of the same
    point and from each other."""
    if rt.numel() == 0:
        return rt, rp
    is_new = torch.cat([torch.zeros_like(t, dtype=torch.bool),
                        torch.ones_like(rt, dtype=torch.bool)])
    T, Pt = torch.cat([t, rt]), torch.cat([point, rp])
    o = _order(T, Pt)
    T, Pt, is_new = T[o], Pt[o], is_new[o]
    near = (Pt[1:] == Pt[:-1]) & ((T[1:] - T[:-1]) <= tol)
    # drop a new root close to its predecessor (an old row or a kept new root)
    drop = torch.zeros_like(is_new)
    drop[1:] = near & is_new[1:]
    # and a new root close to an old successor
    drop[:-1] |= near & is_new[:-1] & ~is_new[1:]
    keep = is_new & ~drop
    return T[keep], Pt[keep]


def _row_codes(sites: list[tuple[str, Tensor]]) -> Tensor:
    """The code of each row as integers: ``[R, n_codes]``."""
    cols = [v.argmax(-1) if kind == "max" else (v > 0).long() for kind, v in sites]
    if not cols:
        return torch.zeros(0, 0, dtype=torch.long)
    return torch.cat([c.reshape(c.shape[0], -1) for c in cols], 1)


@threads.fair_share
def parameter_breakpoints(net: nn.Module, layer, direction: Tensor, X: Tensor, *,
                          t_max: float = 1.0, t_min: float = 0.0,
                          tol: float = regions.BREAK_TOL, return_flips: bool = False,
                          chunk: int = _CHUNK):
    """The exact ``t`` in ``(t_min, t_max)`` where a training point's code changes along
    ``theta0 + t d`` in layer ``layer``'s parameter space.

    ``direction [P]`` in the layout of :func:`layer_params`; ``X [N, *in_shape]``. Between
    two consecutive breakpoints every point keeps its activation code, so the loss is one
    quadratic (:func:`layer_quadratic` at any ``t`` inside) there.

    Exact, site by site and point by point (as :func:`dltheory.regions.on_segment` for
    each training point): the layer's output is affine in ``t``, so on each interval where
    the codes of a point's earlier sites are fixed, every pre-activation of the next site
    is affine in ``t``; its zeros (or the crossings of max candidates) follow from its
    values at the interval's ends by linear interpolation, and the new ``(t, point)`` rows
    are forwarded before the next site. Sites before the layer never change. A final pass
    at the midpoints drops roots where no code changes (ties of max candidates). The cost
    is one forward pass of about ``N + #breakpoints`` rows per site.

    Returns the sorted breakpoints ``t [B]``; with ``return_flips=True`` also
    ``flips [B, N]`` (bool), the points whose code changes at each breakpoint.
    Tolerances as in :mod:`dltheory.regions` (``ZERO_TOL`` relative, ``tol`` in ``t``).
    """
    fn = "landscape.parameter_breakpoints"
    validation.network(net, "net", fn=fn)
    cpa.validate(net)
    info = _layer(net, layer, fn)
    X = _inputs(net, X, fn)
    t_min = validation.real(t_min, "t_min", fn=fn)
    t_max = validation.real(t_max, "t_max", fn=fn)
    if not t_min < t_max:
        raise InputError(f"{fn}: need t_min < t_max, got t_min={t_min:g}, t_max={t_max:g}")
    tol = validation.real(tol, "tol", fn=fn, lo=0)
    return_flips = validation.boolean(return_flips, "return_flips", fn=fn)
    chunk = validation.integer(chunk, "chunk", fn=fn, lo=1)
    theta0 = _layer_params(info)
    d = _direction(info, direction, theta0, "direction", fn)
    if not d.abs().max() > 0:
        raise InputError(f"{fn}: direction is zero: the line does not move")
    dparams = _split(info, d)
    N = X.shape[0]
    dev = theta0.device
    ends = torch.tensor([t_min, t_max], dtype=theta0.dtype, device=dev)
    t = ends.repeat_interleave(N)
    point = torch.arange(N, device=dev).repeat(2)
    sites = _sites_rows(net, info, dparams, X, t, point, chunk, fn)
    kinds = [k for k, _ in sites]
    cache: list[Tensor | None] = [v for _, v in sites]
    for j, kind in enumerate(kinds):
        o = _order(t, point)
        vals = cache[j][o]
        eps = regions.ZERO_TOL * _magnitude(vals)
        rt, rp = _row_roots(t[o], point[o], kind, vals, eps)
        rt, rp = _fresh_rows(t, point, rt, rp, tol)
        cache[j] = None
        if rt.numel() and j + 1 < len(kinds):
            more = _sites_rows(net, info, dparams, X, rt, rp, chunk, fn)
            for i in range(j + 1, len(kinds)):
                cache[i] = torch.cat([cache[i], more[i][1]])
        t, point = torch.cat([t, rt]), torch.cat([point, rp])
    o = _order(t, point)
    t, point = t[o], point[o]
    inner = point[1:] == point[:-1]                            # consecutive rows, one point
    mids = ((t[1:] + t[:-1]) / 2)[inner]
    mid_point = point[1:][inner]
    codes = _row_codes(_sites_rows(net, info, dparams, X, mids, mid_point, chunk, fn))
    # breakpoint rows: rows with a row of the same point on both sides
    is_break = torch.zeros_like(inner)
    is_break[:-1] = inner[:-1] & inner[1:]
    # interval index r (rows r, r+1) -> position in mids; breakpoint row r+1 separates the
    # intervals r and r+1, which are consecutive in mids when both are inner
    pos = torch.cumsum(inner.long(), 0) - 1
    rows = is_break[:-1].nonzero(as_tuple=True)[0]             # interval r before row r + 1
    left, right = pos[rows], pos[rows + 1]
    flip = (codes[left] != codes[right]).any(1) if codes.numel() else \
        torch.zeros(len(rows), dtype=torch.bool, device=dev)
    bt, bp = t[rows + 1][flip], point[rows + 1][flip]
    tu, inv = torch.unique(bt, sorted=True, return_inverse=True)
    if not return_flips:
        return tu
    flips = torch.zeros(len(tu), N, dtype=torch.bool, device=dev)
    flips[inv, bp] = True
    return tu, flips

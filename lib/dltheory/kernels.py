"""Tangent kernels of finite networks: the empirical NTK and the path kernel.

**Empirical NTK.** For a network ``f(x; w)`` with ``k`` outputs, the tangent kernel is the
``k x k`` block ``Theta(x, x') = J(x; w) J(x'; w)^T`` with ``J = df/dw``. :func:`ntk` has two
paths that the tests compare:

* ``method="structured"`` (the default for ``nn.Sequential`` stacks of ``Linear`` /
  ``Conv1d`` / ``Conv2d`` layers and parameter-free per-example modules: activations,
  pooling, ``Flatten``). For a fully connected layer ``h = W z + c`` the gradient of output
  ``a`` is the outer product ``delta^a (x) z`` of the backpropagated signal
  ``delta^a = df_a/dh`` and the layer's input, so

  ``Theta(x, x')_ab = sum_l <delta_l^a(x), delta_l^b(x')> (<z_{l-1}(x), z_{l-1}(x')> + 1)``

  (the ``+ 1`` is the bias), computed for all examples at once by batched matrix products:
  no ``P``-sized Jacobian is ever formed. A convolution's gradient is the sum over
  positions of the outer products of its signal and the unfolded input patches, contracted
  layer by layer.
* ``method="generic"``: ``torch.func.jacrev`` over the parameters, ``vmap`` over examples,
  contracted chunk by chunk (``chunk`` examples at a time bound the memory), for any module.

Kernels have shape ``[N1, N2, k, k]`` (``flat=True``: ``[N1*k, N2*k]``, rows ordered
``(example, output)``).

**Path kernel** (Domingos, *Every model learned by gradient descent is approximately a
kernel machine*; Courtois, Morel & Arias for discrete steps). Along the step
``w(tau) = w_s + tau Delta_s``, ``tau in [0, 1]``, of gradient descent
``Delta_s = -lr sum_i J(x_i; w_s)^T g_{s,i}`` (``g_{s,i} = dL/df(x_i)`` at ``w_s``),

``f(x; w_{s+1}) - f(x; w_s) = -lr sum_i Kbar_s(x, x_i) g_{s,i}``,
``Kbar_s(x, x_i) = [int_0^1 J(x; w(tau)) dtau] J(x_i; w_s)^T``

exactly. :func:`path_kernel` computes ``Kbar_s`` as a *cross-parameter* structured NTK
between the test point at quadrature nodes ``w(tau_q)`` and the training points at
``w_s``. The quadrature is exact for networks of ``L`` ``Linear`` layers with ReLU, leaky
ReLU or absolute-value activations (``quadrature="exact"``): along the segment every
pre-activation of depth ``l`` is a polynomial of degree ``l`` in ``tau`` between activation
flips, the Jacobian one of degree ``<= L - 1``; the segment is split at the flips of each
test point (roots of those polynomials, layer by layer) and Gauss-Legendre with
``ceil(L/2)`` nodes per piece integrates each piece exactly. With one or two hidden layers
the same exact integral is evaluated in closed form (:func:`_closed_step`): the Jacobian
factors are polynomials in ``tau`` whose only discontinuities are the activation
derivatives, so the integral reduces to the moments ``int tau^m act'(h(tau)) dtau`` of each
unit (closed-form roots of its affine or quadratic pre-activation) and a fixed number of
Gram matrices with the training signals, with no quadrature node, piece or extra forward
pass; the middle layer's step is used in its rank-``N`` gradient-descent form. For smooth
activations
``quadrature="gauss"`` uses ``nodes`` Gauss-Legendre nodes (no splitting);
``quadrature="left"`` is the left-endpoint (tangent-kernel) approximation
``Kbar_s ~ Theta(x, x_i; w_s)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import threads, validation
from .errors import InputError, InputTypeError
from .infinite import (  # noqa: F401  (the infinite-width kernels live in `kernels` too)
    ACTIVATIONS as INFINITE_WIDTH_ACTIVATIONS,
)
from .infinite import (  # noqa: F401
    Erf,
    FixedPoint,
    InfiniteWidthError,
    Kernels,
    NTKConv2d,
    NTKLinear,
    cnn_nngp_ntk,
    critical_sw2,
    fixed_point,
    layer_step,
    linearized,
    mean_predictor,
    nngp_ntk,
    ntk_cnn,
    ntk_mlp,
)
from .nets import Abs

__all__ = [
    "NotStructuredError",
    "NotPiecewiseLinearError",
    "PathKernel",
    "ntk",
    "path_kernel",
    "lazy_prediction",
    "kernel_regression",
    "kernel_gd",
    "flatten_kernel",
]


class NotStructuredError(InputError):
    """A module that the structured (layer-wise) kernel path cannot handle."""


class NotPiecewiseLinearError(InputError):
    """The exact split of a segment needs an MLP with piecewise-linear activations."""


# ----------------------------------------------------------------------------- the plan

_PARAM_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, Abs)
_SMOOTH = (nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Softplus, nn.ELU, nn.CELU, nn.SELU,
           nn.Mish, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink)
_ELEMENTWISE = (*_PIECEWISE_LINEAR, *_SMOOTH, nn.Identity)
_BATCH_MIXING = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d,
                 nn.Dropout2d, nn.AlphaDropout)


@dataclass(frozen=True)
class _Op:
    """One leaf of a Sequential: a parametric layer (``weight``/``bias`` names into the
    parameter dict) or a parameter-free per-example function."""

    module: nn.Module
    path: str
    weight: str | None = None
    bias: str | None = None

    @property
    def param(self) -> bool:
        return self.weight is not None

    @property
    def elementwise(self) -> bool:
        return type(self.module) in _ELEMENTWISE


def _flatten_sequential(m: nn.Module, path: str, out: list) -> None:
    if type(m) is nn.Sequential:
        for name, child in m.named_children():
            _flatten_sequential(child, f"{path}.{name}" if path else name, out)
    else:
        out.append((path, m))


def _plan(net: nn.Module) -> list[_Op]:
    """The leaves of ``net`` in order, checked for the structured path.

    Raises :class:`NotStructuredError` naming the first module that is not a ``Linear`` /
    ``Conv1d`` / ``Conv2d`` layer or a parameter-free module that acts on each example
    on its own.
    """
    if not isinstance(net, nn.Module):
        raise InputTypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    leaves: list = []
    _flatten_sequential(net, "", leaves)
    ops = []
    for path, m in leaves:
        where = f"module {path or '(root)'!r} ({type(m).__name__})"
        if isinstance(m, _BATCH_MIXING):
            if isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.AlphaDropout) \
                    and not m.training:
                ops.append(_Op(m, path))
                continue
            raise NotStructuredError(
                f"{where}: batch norm and dropout are not supported by the structured kernel "
                "path (batch norm has parameters, dropout in training mode is random); use "
                "method='generic' on the network in eval mode")
        if type(m) in _PARAM_LAYERS:
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                    raise NotStructuredError(
                        f"{where}: only groups=1, padding_mode='zeros' and numeric padding "
                        "are supported by the structured path; use method='generic'")
            prefix = f"{path}." if path else ""
            ops.append(_Op(m, path, prefix + "weight",
                           prefix + "bias" if m.bias is not None else None))
            continue
        if any(True for _ in m.parameters(recurse=True)):
            raise NotStructuredError(
                f"{where} has parameters but is not Linear/Conv1d/Conv2d: the structured "
                "path cannot differentiate it layer-wise; use method='generic'")
        ops.append(_Op(m, path))
    if not any(op.param for op in ops):
        raise NotStructuredError("the network has no Linear or Conv layer: nothing to train")
    return ops


def _params(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in net.named_parameters()}


def unflatten(net: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameter dict of ``net`` (names of ``named_parameters``) from a flat vector
    ``[P]`` (finite, floating) in the order of
    ``torch.nn.utils.parameters_to_vector(net.parameters())``: views of ``vector``. Only
    the structure of ``net`` is read (a template: its own values may be anything)."""
    fn = "kernels.unflatten"
    validation.network(net, "net", fn=fn, finite=False, eval_only=False)
    vector = validation.tensor(vector, "vector", fn=fn, ndim=1, layout="[P]")
    return _unflatten(net, vector, "vector", fn)


def _unflatten(net: nn.Module, vector: torch.Tensor, name: str = "vector",
               fn: str | None = None) -> dict[str, torch.Tensor]:
    named = list(net.named_parameters())
    total = sum(p.numel() for _, p in named)
    if vector.ndim != 1 or vector.numel() != total:
        head = f"{fn}: " if fn else ""
        raise InputError(f"{head}{name}, a parameter vector of {net.__class__.__name__}, must "
                         f"have shape [{total}], got {tuple(vector.shape)}")
    out, i = {}, 0
    for name, p in named:
        out[name] = vector[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


# ----------------------------------------------------------------------------- forward


def _tau_view(tau: torch.Tensor, ndim: int) -> torch.Tensor:
    return tau.reshape(-1, *([1] * (ndim - 1)))


def _layer_fn(op: _Op, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None):
    m = op.module
    if isinstance(m, nn.Linear):
        return F.linear(h, W, b)
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    return conv(h, W, b, m.stride, m.padding, m.dilation, 1)


def _apply(op: _Op, P: dict, dP: dict | None, tau, h: torch.Tensor) -> torch.Tensor:
    """The layer at ``w + tau dw``: ``tau`` is None (``w``), a float, or a tensor ``[R]``
    (one ``tau`` per example, exact because layers are linear in their weights)."""
    W, b = P[op.weight], (P[op.bias] if op.bias else None)
    if tau is None or dP is None:
        return _layer_fn(op, h, W, b)
    dW, db = dP[op.weight], (dP[op.bias] if op.bias else None)
    if not isinstance(tau, torch.Tensor):
        return _layer_fn(op, h, W + tau * dW, None if b is None else b + tau * db)
    out = _layer_fn(op, h, W, b)
    return out + _tau_view(tau, out.ndim) * _layer_fn(op, h, dW, db)


def _forward(ops, P, X, tau=None, dP=None, upto: int | None = None):
    """Run the ops; returns ``(output, inputs)`` where ``inputs[j]`` is the input of op
    ``j``. ``upto``: stop before op ``upto`` (output is then that op's input)."""
    h, inputs = X, []
    for j, op in enumerate(ops):
        if upto is not None and j == upto:
            return h, inputs
        inputs.append(h)
        h = _apply(op, P, dP, tau, h) if op.param else op.module(h)
    return h, inputs


# ----------------------------------------------------------------------------- backward


def _vjp_input(op: _Op, P, dP, tau, g: torch.Tensor, in_shape) -> torch.Tensor:
    """Pull ``g`` ``[R, k, *out]`` back through a parametric layer to ``[R, k, *in]``."""
    m = op.module
    R, k = g.shape[:2]
    W = P[op.weight]

    def pull(Wt):
        if isinstance(m, nn.Linear):
            return g @ Wt
        gi = g.reshape(R * k, *g.shape[2:])
        shape = (R * k, *in_shape[1:])
        fn = torch.nn.grad.conv1d_input if isinstance(m, nn.Conv1d) else \
            torch.nn.grad.conv2d_input
        out = fn(shape, Wt, gi, m.stride, m.padding, m.dilation, 1)
        return out.reshape(R, k, *in_shape[1:])

    if tau is None or dP is None:
        return pull(W)
    if not isinstance(tau, torch.Tensor):
        return pull(W + tau * dP[op.weight])
    out = pull(W)
    return out + _tau_view(tau, out.ndim) * pull(dP[op.weight])


def _derivative(m: nn.Module, u: torch.Tensor) -> torch.Tensor | None:
    """The elementwise derivative of the common activations in closed form (the same
    values autograd uses, including 0 at the kink of ReLU and abs), else None."""
    t = type(m)
    if t is nn.ReLU:
        return (u > 0).to(u.dtype)
    if t is nn.LeakyReLU:
        one = torch.ones((), dtype=u.dtype, device=u.device)
        return torch.where(u > 0, one, one * m.negative_slope)
    if t is Abs:
        return torch.sign(u)
    if t is nn.Tanh:
        return 1 - torch.tanh(u) ** 2
    if t is nn.Identity:
        return torch.ones_like(u)
    return None


def _vjp_fn(op: _Op, u: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Pull ``g`` ``[R, k, *out]`` back through a parameter-free module at input ``u``."""
    if op.elementwise:
        d = _derivative(op.module, u)
        if d is not None:
            return g * d.unsqueeze(1)
    with torch.enable_grad():
        if op.elementwise:
            ui = u.detach().requires_grad_(True)
            y = op.module(ui)
            (d,) = torch.autograd.grad(y, ui, torch.ones_like(y))
            return g * d.unsqueeze(1)
        _, pullback = torch.func.vjp(op.module, u.detach())
        return torch.func.vmap(lambda c: pullback(c)[0], in_dims=1, out_dims=1)(g)


@dataclass
class _Signal:
    """Per-layer gradient factors of a batch of ``R`` examples, ``k`` outputs.

    ``kind="outer"`` (Linear): ``z`` ``[R, d_in]``, ``delta`` ``[R, k, d_out]``, ``bias``;
    the layer's gradient of output ``a`` is ``delta[:, a] (x) [z, 1]``.
    ``kind="grad"`` (convolution): ``grad`` ``[R, k, p_l]``, the layer's gradient itself.
    """

    kind: str
    z: torch.Tensor | None = None
    delta: torch.Tensor | None = None
    bias: bool = False
    grad: torch.Tensor | None = None


def _signals(ops, P, X, tau=None, dP=None, *, inputs_out: list | None = None
             ) -> tuple[torch.Tensor, list[_Signal]]:
    """Forward and ``k``-output backward pass; returns ``(f [R, k], signals per layer)``.
    ``inputs_out``: a list that receives the input of every op (pre-activations)."""
    out, inputs = _forward(ops, P, X, tau, dP)
    if inputs_out is not None:
        inputs_out.append(inputs)
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise InputError(f"net must output [B, k] (or [B]), got {tuple(out.shape)}")
    R, k = out.shape
    g = torch.eye(k, dtype=out.dtype, device=out.device).expand(R, k, k)
    first = next(j for j, op in enumerate(ops) if op.param)
    sig: list[_Signal] = []
    for j in range(len(ops) - 1, first - 1, -1):
        op, u = ops[j], inputs[j]
        if op.param:
            sig.append(_layer_signal(op, u, g))
            if j > first:
                g = _vjp_input(op, P, dP, tau, g, u.shape)
        else:
            g = _vjp_fn(op, u, g)
    sig.reverse()
    return out, sig


def _layer_signal(op: _Op, u: torch.Tensor, g: torch.Tensor) -> _Signal:
    m = op.module
    if isinstance(m, nn.Linear):
        return _Signal("outer", z=u, delta=g, bias=op.bias is not None)
    R, k = g.shape[:2]
    if isinstance(m, nn.Conv1d):
        u2 = u.unsqueeze(2)
        ks, dil, pad, st = (1, *m.kernel_size), (1, *m.dilation), (0, *m.padding), \
            (1, *m.stride)
    else:
        u2, ks, dil, pad, st = u, m.kernel_size, m.dilation, m.padding, m.stride
    U = F.unfold(u2, ks, dilation=dil, padding=pad, stride=st)      # [R, Ci*K, Pos]
    d = g.reshape(R, k, g.shape[2], -1)                              # [R, k, Co, Pos]
    G = torch.einsum("rkcp,rqp->rkcq", d, U).reshape(R, k, -1)
    if op.bias is not None:
        G = torch.cat([G, d.sum(-1)], dim=2)
    return _Signal("grad", grad=G)


def signals_gradient(ops, sig: list[_Signal], g: torch.Tensor) -> dict[str, torch.Tensor]:
    """``sum_i J(x_i)^T g_i`` from the layer signals (``g``: ``[N, k]``, finite): the
    gradient of a loss with output gradients ``g``, as a dict name -> tensor shaped like the
    parameter. ``ops`` and ``sig``: the plan and signals of :func:`_signals` (what
    :func:`dltheory.dynamics.train` keeps)."""
    fn = "kernels.signals_gradient"
    if not sig:
        raise InputError(f"{fn}: sig must hold the signals of at least one layer")
    a = sig[-1]
    N, k = (a.delta if a.kind == "outer" else a.grad).shape[:2]
    validation.tensor(g, "g", fn=fn, shape=(N, k), layout=f"[N, k] = [{N}, {k}]")
    out = {}
    for op, a in zip([op for op in ops if op.param], sig, strict=True):
        W = op.module.weight
        if a.kind == "outer":
            e = torch.einsum("na,nao->no", g, a.delta)
            out[op.weight] = (e.T @ a.z).reshape(W.shape)
            if op.bias:
                out[op.bias] = e.sum(0)
        else:
            G = torch.einsum("na,nap->p", g, a.grad)
            nw = W.numel()
            out[op.weight] = G[:nw].reshape(W.shape)
            if op.bias:
                out[op.bias] = G[nw:]
    return out


# ----------------------------------------------------------------------------- contraction


def _segment_sum(owner: torch.Tensor, values: torch.Tensor, M: int) -> torch.Tensor:
    out = torch.zeros((M, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, owner, values)


def _contract(rows: list[_Signal], train: list[_Signal], *, owner=None, weight=None,
              M: int | None = None, static_last: bool = True) -> torch.Tensor:
    """``sum_r weight_r J(row r) J(train)^T`` summed into ``owner`` -> ``[M, N, k, k]``.

    ``owner`` ``[R]`` (default: ``arange``, ``M = R``) maps rows to output rows; ``weight``
    ``[R]`` (default ones). See :func:`_contract_groups`.
    """
    if owner is None:
        M = _rows(rows)
    return _contract_groups([(rows, owner, 1.0 if weight is None else weight)], train, M,
                            static_last=static_last)


def _rows(sig: list[_Signal]) -> int:
    return (sig[0].z if sig[0].kind == "outer" else sig[0].grad).shape[0]


def _contract_groups(groups, train: list[_Signal], M: int, *,
                     static_last: bool = True) -> torch.Tensor:
    """``sum_groups sum_r w_r J(row r) J(train)^T``, rows summed into their owners.

    ``groups``: ``(signals of R rows, owner [R] or None (rows are the M outputs), weight:
    a float or ``[R]``)``. The first layer's input and (``static_last``: the network ends
    with its last parametric layer) the last layer's signal ``I_k`` do not depend on the
    parameters, so those terms are contracted once per owner with the weighted sum of the
    other factor; middle layers are contracted row by row. Convolution terms are
    contracted after summing the rows' layer gradients.
    """
    L = len(train)

    def acc(x, owner, w):
        if isinstance(w, float):
            xw = x if w == 1.0 else x * w
        else:
            xw = x * w.reshape(-1, *([1] * (x.ndim - 1)))
        return xw if owner is None else _segment_sum(owner, xw, M)

    def total_of(fn):
        out = None
        for sig, owner, w in groups:
            v = fn(sig, owner, w)
            out = v if out is None else out + v
        return out

    def ones(sig, owner, w):
        R = _rows(sig)
        ref = train[0].z if train[0].kind == "outer" else train[0].grad
        dtype, device = ref.dtype, ref.device
        return acc(torch.ones(R, dtype=dtype, device=device), owner, w)

    total = None
    diagonal = None            # the last layer's term, Z (x) I_k, added to the diagonal at the end
    for layer, b in enumerate(train):
        if b.kind == "grad":
            G = total_of(lambda sig, o, w, ly=layer: acc(sig[ly].grad, o, w))
            term = torch.einsum("iap,jbp->ijab", G, b.grad)
        elif layer == 0 and not (layer == L - 1 and static_last):
            d = total_of(lambda sig, o, w: acc(sig[0].delta, o, w))
            z = total_of(lambda sig, o, w: acc(sig[0].z, o, w)) / total_of(ones)[:, None]
            term = _outer_term(d, z, b)
        elif layer == L - 1 and static_last:
            # both signals are I_k: the term is (sum_r w_r <z_r, z_i> + bias) I_k
            z = total_of(lambda sig, o, w: acc(sig[-1].z, o, w))
            diagonal = z @ b.z.T
            if b.bias:
                diagonal = diagonal + total_of(ones)[:, None]
            continue
        else:
            term = total_of(lambda sig, o, w, ly=layer, tb=b:
                            acc(_outer_term(sig[ly].delta, sig[ly].z, tb), o, w))
        total = term if total is None else total.add_(term)
    if diagonal is not None:
        if total is None:
            k = train[-1].delta.shape[1]
            total = torch.zeros((*diagonal.shape, k, k), dtype=diagonal.dtype,
                                device=diagonal.device)
        torch.diagonal(total, dim1=2, dim2=3).add_(diagonal[:, :, None])
    return total


def _dev(s: _Signal):
    return (s.z if s.kind == "outer" else s.grad).device


def _outer_term(delta: torch.Tensor, z: torch.Tensor, b: _Signal) -> torch.Tensor:
    """``(<delta_i^a, delta_j^b>) * (<z_i, z_j> + bias)`` -> ``[I, J, k, k]``."""
    Z = z @ b.z.T
    if b.bias:
        Z = Z + 1
    D = torch.einsum("iao,jbo->ijab", delta, b.delta)
    return D * Z[:, :, None, None]


# ----------------------------------------------------------------------------- checks


def _net(net, fn: str):
    """``net`` checked (a module, finite parameters and buffers, no batch norm or dropout in
    training mode); returns the dtype and device of its parameters."""
    validation.network(net, "net", fn=fn)
    p = next(net.parameters(), None)
    if p is None:
        raise InputError(f"{fn}: net ({type(net).__name__}) has no parameters: its tangent "
                         "kernel is 0")
    return p.dtype, p.device


def _inputs(X, name: str, fn: str, dtype, device) -> torch.Tensor:
    return validation.tensor(X, name, fn=fn, min_ndim=2, dtype=dtype, device=device,
                             layout="[N, ...]")


def _probe(net: nn.Module, P: dict, X: torch.Tensor, name: str, fn: str) -> None:
    """Run the first example of ``X`` through ``net`` at ``P``: a library error when ``X``
    does not fit the network (input width, image shape) or the output is not ``[B, k]``
    (or ``[B]``), instead of torch's error from deep inside the kernel."""
    try:
        with torch.no_grad():
            out = torch.func.functional_call(net, P, (validation.private_copy(X[:1]),))
    except RuntimeError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{fn}: {name} of shape {tuple(X.shape)} does not fit net "
                         f"({why}); pass inputs shaped as the network expects") from None
    if not isinstance(out, torch.Tensor) or out.ndim not in (1, 2):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{fn}: net must output [B, k] (or [B]), got {shape}")


def _given_params(net: nn.Module, params, fn: str, dtype, device) -> dict[str, torch.Tensor]:
    """``params`` (a flat vector ``[P]`` or a dict name -> tensor, finite) as the full
    parameter dict of ``net``: entries not given keep the net's own values."""
    if isinstance(params, torch.Tensor):
        params = validation.tensor(params, "params", fn=fn, ndim=1, dtype=dtype,
                                   device=device, layout="[P]")
        return _unflatten(net, params, "params", fn)
    if not isinstance(params, dict):
        raise InputTypeError(f"{fn}: params must be a flat tensor [P] or a dict name -> "
                             f"tensor, got {type(params).__name__}")
    P = _params(net)
    for name, v in params.items():
        if name not in P:
            raise InputError(f"{fn}: params has {name!r}, which is not a parameter of net "
                             f"(its parameters: {sorted(P)})")
        P[name] = validation.tensor(v, f"params[{name!r}]", fn=fn, shape=tuple(P[name].shape),
                                    dtype=dtype, device=device, nonempty=False)
    return P


def _flat(K: torch.Tensor, name: str, fn: str) -> torch.Tensor:
    """A checked kernel ``[N1, N2, k, k]`` or ``[N1*k, N2*k]`` as the flat matrix."""
    if K.ndim == 2:
        return K
    if K.shape[2] != K.shape[3]:
        raise InputError(f"{fn}: {name} must have shape [N1, N2, k, k], got "
                         f"{tuple(K.shape)}")
    N1, N2, k, _ = K.shape
    return K.permute(0, 2, 1, 3).reshape(N1 * k, N2 * k)


def flatten_kernel(K: torch.Tensor) -> torch.Tensor:
    """``[N1, N2, k, k]`` -> ``[N1*k, N2*k]`` with rows and columns ordered ``(example,
    output)``."""
    fn = "kernels.flatten_kernel"
    K = validation.tensor(K, "K", fn=fn, ndim=4, layout="[N1, N2, k, k]")
    return _flat(K, "K", fn)


# ----------------------------------------------------------------------------- NTK

_METHODS = ("auto", "structured", "generic")


@threads.fair_share
def ntk(net: nn.Module, X1: torch.Tensor, X2: torch.Tensor | None = None, *,
        method: str = "auto", chunk: int = 256, flat: bool = False,
        params: dict[str, torch.Tensor] | torch.Tensor | None = None) -> torch.Tensor:
    """Empirical neural tangent kernel ``Theta(x, x') = J(x) J(x')^T``.

    Args:
        net: the network, ``[B, ...] -> [B, k]`` (or ``[B]``, read as ``k = 1``); it acts on
            each example on its own (batch norm and dropout in eval mode, for
            ``"generic"``); finite parameters.
        X1: ``[N1, ...]``; X2: ``[N2, ...]`` (default ``X1``): finite, in the network's
            dtype and device, shaped as the network expects. They are not modified (the
            network gets copies).
        method: ``"structured"`` (layer-wise outer products; ``nn.Sequential`` of Linear /
            Conv1d / Conv2d and parameter-free per-example modules), ``"generic"``
            (``torch.func.jacrev`` + ``vmap``, any module) or ``"auto"`` (structured when
            the network allows it).
        chunk: examples per block (``>= 1``; bounds the memory: the structured path keeps
            ``chunk x k`` signals of ``X1`` at a time, the generic one ``chunk x k x P``
            Jacobian entries).
        flat: return ``[N1*k, N2*k]`` instead of ``[N1, N2, k, k]``.
        params: evaluate at these parameters (a dict name -> tensor as in
            ``net.named_parameters()``, or a flat vector) instead of the net's own.

    Returns:
        ``[N1, N2, k, k]``: ``K[i, j, a, b] = <df_a(x1_i)/dw, df_b(x2_j)/dw>``. Raises when
        the forward pass overflows (the kernel would not be finite).
    """
    fn = "kernels.ntk"
    dtype, device = _net(net, fn)
    X1 = _inputs(X1, "X1", fn, dtype, device)
    same = X2 is None
    X2 = X1 if same else _inputs(X2, "X2", fn, dtype, device)
    if X1.shape[1:] != X2.shape[1:]:
        raise InputError(f"{fn}: X1 {tuple(X1.shape)} and X2 {tuple(X2.shape)} must have the "
                         "same shape after the batch axis")
    chunk = validation.integer(chunk, "chunk", fn=fn, lo=1)
    flat = validation.boolean(flat, "flat", fn=fn)
    method = validation.choice(method, "method", _METHODS, fn=fn)
    P = _params(net) if params is None else _given_params(net, params, fn, dtype, device)
    _probe(net, P, X1, "X1", fn)
    X1 = validation.private_copy(X1)
    X2 = X1 if same else validation.private_copy(X2)
    K = _ntk(net, P, X1, X2, same, method, chunk)
    validation.finite_output(K, "the kernel", fn=fn, cause="the forward pass overflows: X1, "
                             "X2 or the weights of net are too large for the dtype")
    return _flat(K, "K", fn) if flat else K


def _ntk(net, P, X1, X2, same: bool, method: str, chunk: int) -> torch.Tensor:
    if method == "auto":
        try:
            _plan(net)
            method = "structured"
        except NotStructuredError:
            method = "generic"
    if method == "generic":
        return _ntk_generic(net, P, X1, X2, chunk)
    ops = _plan(net)
    with torch.no_grad():
        _, s2 = _signals(ops, P, X2)
        if same and len(X1) <= chunk:
            blocks = [_contract(s2, s2, static_last=ops[-1].param)]
        else:
            blocks = [_contract(_signals(ops, P, X1[i:i + chunk])[1], s2,
                                static_last=ops[-1].param)
                      for i in range(0, len(X1), chunk)]
    return torch.cat(blocks, dim=0)


def _ntk_generic(net, P, X1, X2, chunk):
    def f(p, x):
        out = torch.func.functional_call(net, p, (x.unsqueeze(0),))
        return out.reshape(-1)

    jac = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))

    def J(X):
        j = jac(P, X)
        return torch.cat([v.reshape(v.shape[0], v.shape[1], -1) for v in j.values()], dim=2)

    rows = []
    for i in range(0, len(X1), chunk):
        J1 = J(X1[i:i + chunk])
        cols = [torch.einsum("iap,jbp->ijab", J1, J(X2[j:j + chunk]))
                for j in range(0, len(X2), chunk)]
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0).detach()


# ----------------------------------------------------------------------------- kernel machines


def _kernel_problem(K_test_train, K_train, targets, fn: str):
    """The kernels and targets of a kernel machine, checked: ``(B [M*k, N*k], A [N*k, N*k],
    targets [N, k])`` in one dtype (the promotion of theirs)."""
    layout = "[N1, N2, k, k] or flat [N1*k, N2*k]"
    K_test_train = validation.tensor(K_test_train, "K_test_train", fn=fn, ndim=(2, 4),
                                     layout=layout)
    K_train = validation.tensor(K_train, "K_train", fn=fn, ndim=(2, 4), layout=layout)
    targets = validation.tensor(targets, "targets", fn=fn, ndim=(1, 2), layout="[N, k] or [N]")
    T = targets[:, None] if targets.ndim == 1 else targets
    N, k = T.shape
    A, B = _flat(K_train, "K_train", fn), _flat(K_test_train, "K_test_train", fn)
    if A.shape != (N * k, N * k) or B.shape[1] != N * k or B.shape[0] % k:
        raise InputError(f"{fn}: the kernel shapes K_test_train {tuple(K_test_train.shape)} "
                         f"and K_train {tuple(K_train.shape)} do not match targets "
                         f"{tuple(targets.shape)} (N = {N} points, k = {k} outputs)")
    if len({A.device, B.device, T.device}) > 1:
        raise InputError(f"{fn}: K_test_train, K_train and targets must be on one device, got "
                         f"{B.device}, {A.device}, {T.device}")
    dtype = torch.promote_types(torch.promote_types(A.dtype, B.dtype), T.dtype)
    return B.to(dtype), A.to(dtype), T.to(dtype)


def kernel_regression(K_test_train: torch.Tensor, K_train: torch.Tensor,
                      targets: torch.Tensor, *, ridge: float = 0.0) -> torch.Tensor:
    """Kernel regression ``K(x, X) (K(X, X) + ridge I)^{-1} targets``.

    ``K_test_train``: ``[M, N, k, k]`` or flat ``[M*k, N*k]``; ``K_train``: ``[N, N, k, k]``
    or ``[N*k, N*k]``; ``targets``: ``[N, k]`` (or ``[N]``), all finite and floating (the
    computation runs in their promoted dtype); ``ridge >= 0``. Returns ``[M, k]``. This is
    the limit of gradient descent on the squared loss when the kernel stays frozen (the lazy
    regime). A singular ``K_train + ridge I`` raises (pass ``ridge > 0``).
    """
    fn = "kernels.kernel_regression"
    B, A, T = _kernel_problem(K_test_train, K_train, targets, fn)
    ridge = validation.real(ridge, "ridge", fn=fn, lo=0)
    N, k = T.shape
    A = A + ridge * torch.eye(N * k, dtype=A.dtype, device=A.device)
    try:
        coef = torch.linalg.solve(A, T.reshape(N * k))
    except torch.linalg.LinAlgError:
        raise InputError(f"{fn}: K_train + ridge I is singular (ridge = {ridge:g}); pass "
                         "ridge > 0") from None
    out = (B @ coef).reshape(-1, k)
    validation.finite_output(out, "the prediction", fn=fn, cause="K_train + ridge I is too "
                             "close to singular (pass a larger ridge) or the kernels or "
                             "targets are too large for the dtype")
    return out


def kernel_gd(K_train: torch.Tensor, K_test_train: torch.Tensor, targets: torch.Tensor, *,
              lr: float, steps: int, f0_train: torch.Tensor | None = None,
              f0_test: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Gradient descent on the squared loss of the model linearized with a *frozen* kernel.

    The outputs follow ``f_{s+1}(X) = f_s(X) - lr K(X, X) g_s`` and
    ``f_{s+1}(x) = f_s(x) - lr K(x, X) g_s`` with ``g_s = (f_s(X) - Y) / N`` (``reduction=
    "mean"``, loss ``(1/N) sum_i |f(x_i) - y_i|^2 / 2``; ``"sum"`` drops the ``1/N``): the
    training of a network whose tangent kernel never changes (the lazy regime). ``K_train``
    ``[N, N, k, k]`` (or flat ``[N*k, N*k]``), ``K_test_train`` ``[M, N, k, k]`` (or flat),
    ``targets`` ``[N, k]``, ``f0_*`` the initial outputs (``N*k`` and ``M*k`` entries; zeros
    by default), ``lr > 0``, ``steps >= 0``. Returns the test outputs ``[M, k]`` after
    ``steps`` steps; as ``steps -> inf`` (stable ``lr``) they tend to
    :func:`kernel_regression` of ``targets - f0_train`` plus ``f0_test``. Raises when the
    iteration diverges to inf (``lr`` too large).
    """
    fn = "kernels.kernel_gd"
    B, A, targets = _kernel_problem(K_test_train, K_train, targets, fn)
    lr = validation.real(lr, "lr", fn=fn, lo=0, lo_open=True)
    steps = validation.integer(steps, "steps", fn=fn, lo=0)
    reduction = validation.choice(reduction, "reduction", ("mean", "sum"), fn=fn)
    N, k = targets.shape
    M = B.shape[0] // k
    fX = torch.zeros_like(targets) if f0_train is None else \
        _initial(f0_train, "f0_train", N, k, targets, fn)
    fZ = torch.zeros((M, k), dtype=targets.dtype, device=targets.device) if f0_test is None \
        else _initial(f0_test, "f0_test", M, k, targets, fn)
    scale = lr / N if reduction == "mean" else lr
    for _ in range(steps):
        r = (fX - targets).reshape(-1)
        fX = fX - scale * (A @ r).reshape(N, k)
        fZ = fZ - scale * (B @ r).reshape(M, k)
    validation.finite_output(fZ, "the test outputs", fn=fn, cause="lr is too large: gradient "
                             "descent diverges (lr must stay below 2 / the largest "
                             "eigenvalue of K_train, times N for reduction='mean')")
    return fZ


def _initial(f0, name: str, n: int, k: int, like: torch.Tensor, fn: str) -> torch.Tensor:
    """Initial outputs ``f0`` (``n*k`` entries) as a fresh ``[n, k]`` tensor of ``like``'s
    dtype."""
    f0 = validation.tensor(f0, name, fn=fn, min_ndim=1, layout=f"[{n}, {k}]")
    if f0.numel() != n * k:
        raise InputError(f"{fn}: {name} must have {n} x {k} = {n * k} entries ([{n}, {k}]), "
                         f"got shape {tuple(f0.shape)}")
    return f0.reshape(n, k).to(dtype=like.dtype, device=like.device).clone()


# ----------------------------------------------------------------------------- path kernel


@dataclass(frozen=True)
class PathKernel:
    """The path-kernel machine of a recorded gradient-descent run, at test points ``X``.

    ``K``: ``[M, N, k, k]``, the path kernel ``K^p(x, x_i) = lr sum_s Kbar_s(x, x_i)``
    (Domingos' integral over training time, with time step ``lr``).
    ``C``: ``[M, N, k]``, each training point's contribution
    ``-lr sum_s Kbar_s(x, x_i) g_{s,i}``; ``f0``: ``[M, k]`` the initial network
    ``f_{w_0}(x)`` (the offset ``b``); ``fS``: ``[M, k]`` the trained network
    ``f_{w_S}(x)`` evaluated directly (for comparison). ``pieces``: number of pieces of
    the segments (summed over test points and steps; ``M * S`` when nothing was split).
    """

    K: torch.Tensor
    C: torch.Tensor
    f0: torch.Tensor
    fS: torch.Tensor
    quadrature: str
    nodes: int
    pieces: int

    @property
    def offset(self) -> torch.Tensor:
        """``b = f_{w_0}(x)``: ``[M, k]``."""
        return self.f0

    def predict(self) -> torch.Tensor:
        """The kernel machine ``f_{w_0}(x) + sum_i C_i(x)``: ``[M, k]``."""
        return self.f0 + self.C.sum(1)

    def weights(self) -> torch.Tensor:
        """Domingos' weights ``a_i(x)``: ``[M, N, k]`` with ``K^p(x, x_i) a_i(x) = C_i(x)``,
        so that ``f(x) = sum_i K^p(x, x_i) a_i(x) + b``. For one output ``a_i(x)`` is the
        path-kernel-weighted average of ``-dL/df(x_i)`` along training; it depends on ``x``
        through the weighting. Undefined (inf/nan) where ``K^p(x, x_i)`` is singular."""
        if self.K.shape[-1] == 1:
            return self.C / self.K[..., 0]
        return torch.linalg.solve(self.K, self.C.unsqueeze(-1)).squeeze(-1)

    def relative_error(self) -> torch.Tensor:
        """``|predict - fS| / |fS - f0|`` over all test points and outputs (a scalar)."""
        return (self.predict() - self.fS).norm() / (self.fS - self.f0).norm()


_QUADRATURES = ("auto", "exact", "gauss", "left")

#: The most Gauss-Legendre nodes per piece :func:`path_kernel` accepts (float64 quadrature
#: is exact to rounding long before).
MAX_NODES = 256


def _kind_of_activations(ops) -> str:
    """``"pl"`` (Linear layers with ReLU/LeakyReLU/Abs between them), ``"smooth"`` (all
    activations known smooth) or ``"other"``."""
    acts = [op for op in ops if not op.param and type(op.module) is not nn.Identity]
    if all(isinstance(op.module, nn.Linear) for op in ops if op.param) and acts and \
            all(type(op.module) in _PIECEWISE_LINEAR for op in acts) and \
            _alternates(ops):
        return "pl"
    if all(type(op.module) in _SMOOTH or isinstance(op.module, nn.Flatten) for op in acts):
        return "smooth"
    return "other"


def _alternates(ops) -> bool:
    """Linear, act, Linear, act, ..., Linear (Identity ignored)."""
    seq = [op for op in ops if type(op.module) is not nn.Identity]
    return len(seq) % 2 == 1 and all(op.param == (i % 2 == 0) for i, op in enumerate(seq))


def _gauss(n: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    t, w = np.polynomial.legendre.leggauss(n)
    return (torch.as_tensor((t + 1) / 2, dtype=dtype, device=device),
            torch.as_tensor(w / 2, dtype=dtype, device=device))


@threads.fair_share
def path_kernel(net: nn.Module, traj, X: torch.Tensor, *, quadrature: str = "auto",
                nodes: int | None = None, chunk: int = 1024, strict: bool = True,
                progress: bool = True) -> PathKernel:
    """The exact discrete path kernel of a recorded run at test points ``X`` ``[M, ...]``.

    Args:
        net: the network that was trained (its structure; its current parameters are not
            used: the trajectory's are).
        traj: a :class:`dltheory.dynamics.NetTrajectory` from :func:`dltheory.dynamics.train`
            on ``net``.
        X: test points ``[M, ...]``, shaped like the training inputs.
        quadrature: ``"exact"`` (MLP with ReLU / leaky ReLU / abs: split each step's
            segment at the activation flips of each test point, then Gauss-Legendre with
            ``ceil(L/2)`` nodes per piece, ``L`` = number of Linear layers; exact),
            ``"gauss"`` (``nodes`` Gauss-Legendre nodes on each whole step, for smooth
            activations: converges exponentially in ``nodes``), ``"left"`` (the tangent
            kernel at ``w_s``: the left-endpoint rule, exact only as ``lr -> 0``) or
            ``"auto"`` (``"exact"`` for piecewise-linear MLPs, ``"gauss"`` for smooth
            activations, else an error).
        nodes: Gauss-Legendre nodes per piece. ``"exact"`` needs ``ceil(L/2)``; its default
            ``max(ceil(L/2), L-2)`` also lets the node values (with the endpoints) pin the
            polynomial of every layer's pre-activations, so that points without flips skip
            the split. With one or two hidden layers (``L <= 3``) and at least
            ``ceil(L/2)`` nodes the exact integral is computed in closed form instead (the
            same number, without nodes). ``"gauss"``: default 6.
        chunk: test points processed at once (bounds the memory of the test-side signals).
        strict: with ``"exact"``, refuse fewer nodes than the exact rule needs (default);
            ``strict=False`` allows them, for negative controls (e.g. one node per piece,
            which would be exact only if the Jacobian were constant between flips).

    Returns:
        :class:`PathKernel`.
    """
    fn = "kernels.path_kernel"
    dtype, device = _net(net, fn)
    ops = _plan(net)
    X = _trajectory_inputs(net, traj, X, fn, dtype, device)
    quadrature = validation.choice(quadrature, "quadrature", _QUADRATURES, fn=fn)
    strict = validation.boolean(strict, "strict", fn=fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    chunk = validation.integer(chunk, "chunk", fn=fn, lo=1)
    kind = _kind_of_activations(ops)
    L = sum(op.param for op in ops)
    quadrature, nodes = _quadrature(quadrature, nodes, kind, ops, L, strict, fn)
    need = math.ceil(L / 2)
    lr, S = traj.lr, traj.params.shape[0] - 1
    M = len(X)
    k = traj.out_grads.shape[2]
    Xtr = traj.X
    tq, wq = _gauss(nodes, dtype, device)
    if quadrature == "left":
        tq, wq = torch.zeros(1, dtype=dtype, device=device), torch.ones(1, dtype=dtype,
                                                                         device=device)
    # one or two hidden layers with enough nodes for the exact rule: closed-form moments
    closed = _closed_layout(ops) if quadrature == "exact" and nodes >= need else None
    K = torch.zeros((M, len(Xtr), k, k), dtype=dtype, device=device)
    C = torch.zeros((M, len(Xtr), k), dtype=dtype, device=device)
    pieces = 0
    with torch.no_grad():
        P0 = _unflatten(net, traj.params[0])
        if quadrature == "exact":     # the forwards at w_s, w_{s+1} are shared by the steps
            prev = [_forward(ops, P0, X[i:i + chunk]) for i in range(0, M, chunk)]
            f0 = _as2d(torch.cat([rec[0] for rec in prev]))
        else:
            prev, f0 = None, _as2d(_forward(ops, P0, X)[0])
        for s in tqdm(range(S), desc="path kernel", disable=not progress, leave=False):
            Ps = _unflatten(net, traj.params[s])
            P1 = _unflatten(net, traj.params[s + 1])
            dP = _StepDiff(Ps, P1) if closed is not None else \
                _unflatten(net, traj.params[s + 1] - traj.params[s])
            train = traj.signals[s] if traj.signals is not None else \
                _signals(ops, Ps, Xtr)[1]
            g = traj.out_grads[s]                                        # [N, k]
            Ks = torch.empty_like(K) if M > chunk else None
            nxt = []
            for c0 in range(0, M, chunk):
                Xc = X[c0:c0 + chunk]
                if quadrature == "exact":
                    end = _forward(ops, P1, Xc)
                    nxt.append(end)
                    if closed is not None and Xc.ndim == 2:
                        Kc, npieces = _closed_step(closed, Ps, dP, Xc, train, -lr * g,
                                                   prev[c0 // chunk], end)
                    else:
                        Kc, npieces = _exact_step(ops, Ps, dP, Xc, train, tq, wq,
                                                  prev[c0 // chunk], end)
                else:
                    Kc = _fixed_nodes_step(ops, Ps, dP, Xc, train, tq, wq)
                    npieces = len(Xc)
                pieces += npieces
                if Ks is None:
                    Ks = Kc
                else:
                    Ks[c0:c0 + chunk] = Kc
            prev = nxt
            K.add_(Ks, alpha=lr)
            C.sub_(torch.einsum("mnab,nb->mna", Ks, g), alpha=lr)
        fS = _as2d(torch.cat([rec[0] for rec in prev])) if quadrature == "exact" else \
            _as2d(_forward(ops, _unflatten(net, traj.params[-1]), X)[0])
    for what, t in (("the path kernel K", K), ("the contributions C", C), ("f0", f0),
                    ("fS", fS)):
        validation.finite_output(t, what, fn=fn, cause="the forward pass overflows: X or "
                                 "the recorded parameters are too large for the dtype")
    return PathKernel(K=K, C=C, f0=f0, fS=fS, quadrature=quadrature, nodes=nodes,
                      pieces=pieces)


def _trajectory_inputs(net, traj, X, fn: str, dtype, device) -> torch.Tensor:
    """``traj`` (a :class:`dltheory.dynamics.NetTrajectory` recorded on ``net``) and the
    test points ``X`` checked; returns a private copy of ``X``."""
    from .dynamics import NetTrajectory

    if not isinstance(traj, NetTrajectory):
        raise InputTypeError(f"{fn}: traj must be a dynamics.NetTrajectory (from "
                             f"dynamics.train), got {type(traj).__name__}")
    like = dict(fn=fn, dtype=dtype, device=device)
    validation.tensor(traj.params, "traj.params", ndim=2, layout="[S+1, P]", **like)
    validation.tensor(traj.out_grads, "traj.out_grads", ndim=3, layout="[S, N, k]", **like)
    validation.tensor(traj.X, "traj.X", min_ndim=2, **like)
    n_params = sum(p.numel() for p in net.parameters())
    if traj.params.shape[1] != n_params:
        raise InputError(f"{fn}: the trajectory has {traj.params.shape[1]} parameters but "
                         f"net has {n_params}: traj was recorded on another network")
    X = _inputs(X, "X", fn, dtype, device)
    if X.shape[1:] != traj.X.shape[1:]:
        raise InputError(f"{fn}: test points X {tuple(X.shape)} must be shaped like the "
                         f"training inputs {tuple(traj.X.shape)} after the batch axis")
    _probe(net, _unflatten(net, traj.params[0]), X, "X", fn)
    return validation.private_copy(X)


def _quadrature(quadrature: str, nodes, kind: str, ops, L: int, strict: bool,
                fn: str) -> tuple[str, int]:
    """The rule (``"auto"`` resolved from the activations) and its number of nodes."""
    if quadrature == "auto":
        if kind == "other":
            raise NotPiecewiseLinearError(
                f"{fn}: quadrature='auto' needs an MLP with ReLU/leaky ReLU/abs activations "
                "(exact split) or only smooth activations (Gauss-Legendre); pass "
                "quadrature='gauss' with enough nodes if the activations are smooth")
        quadrature = "exact" if kind == "pl" else "gauss"
    if quadrature == "exact" and kind != "pl":
        names = sorted({type(op.module).__name__ for op in ops if not op.param})
        raise NotPiecewiseLinearError(
            f"{fn}: the exact split needs Linear layers alternating with ReLU, LeakyReLU or "
            f"Abs (the Jacobian is then polynomial in tau between activation flips); this "
            f"network has {names}. For smooth activations use quadrature='gauss' with "
            "enough nodes")
    need = math.ceil(L / 2)
    if nodes is None:   # L - 2 nodes (+ the endpoints) also pin every pre-activation's fit
        nodes = max(need, L - 2) if quadrature == "exact" else (6 if quadrature == "gauss"
                                                                   else 1)
    nodes = validation.integer(nodes, "nodes", fn=fn, lo=1, hi=MAX_NODES)
    if quadrature == "exact" and nodes < need and strict:
        raise InputError(f"{fn}: the exact split of an MLP with {L} Linear layers needs >= "
                         f"{need} Gauss-Legendre nodes per piece, got nodes={nodes}")
    return quadrature, 1 if quadrature == "left" else nodes


def _as2d(out: torch.Tensor) -> torch.Tensor:
    return out[:, None] if out.ndim == 1 else out


def _at(Ps: dict, dP: dict, t: float) -> dict:
    """The parameters ``w_s + t Delta_s`` (formed once per node, not once per layer call)."""
    return Ps if t == 0.0 else {n: Ps[n] + t * dP[n] for n in Ps}


def _fixed_nodes_step(ops, Ps, dP, Xc, train, tq, wq) -> torch.Tensor:
    """``sum_q wq J(x; w(tq)) J(X; w_s)^T`` for shared nodes ``tq``: ``[M, N, k, k]``."""
    groups = [(_signals(ops, _at(Ps, dP, t), Xc)[1], None, float(w))
              for t, w in zip(tq.tolist(), wq.tolist(), strict=True)]
    return _contract_groups(groups, train, len(Xc), static_last=ops[-1].param)


def _act_indices(ops) -> list[int]:
    return [j for j, op in enumerate(ops) if not op.param and type(op.module) is not nn.Identity]


def _no_root(c: torch.Tensor) -> torch.Tensor:
    """For polynomials ``sum_j c[..., j] t^j`` on ``t in [-1, 1]``: True where provably no
    root (``|c_0| > sum_{j>=1} |c_j|``, with a rounding margin) or identically zero."""
    head = c[..., 0].abs()
    tail = c[..., 1:].abs().sum(-1)
    eps = torch.finfo(c.dtype).eps
    return (head > tail * (1 + 1e-9) + 64 * eps * (head + tail)) | (c.abs().amax(-1) == 0)


def _vander(t: torch.Tensor, deg: int) -> torch.Tensor:
    return torch.stack([t**j for j in range(deg + 1)], dim=-1)


def _exact_step(ops, Ps, dP, Xc, train, tq, wq, start, end):
    """Exact ``sum over pieces and nodes`` for one step; returns (``[M, N, k, k]``, pieces).

    ``start``/``end``: the forward records at ``w_s`` and ``w_{s+1}`` (shared between
    consecutive steps). Layer by layer, the pre-activations of the test points are fitted
    by the exact polynomial through their values at ``tau = 0, 1`` and at the nodes (exact
    as long as the earlier layers keep their signs). Points whose polynomials provably keep
    their signs on ``[0, 1]`` use the shared nodes; at the first layer where a point may
    flip, its roots are taken from that fit and the deeper layers are split piece by piece
    (:func:`_split_step`).
    """
    M = len(Xc)
    acts = _act_indices(ops)
    node_sig, node_pre = [], []
    for t in tq.tolist():
        _, sig = _signals(ops, _at(Ps, dP, t), Xc, inputs_out=node_pre)
        node_sig.append(sig)
    ts = torch.cat([torch.zeros(1, dtype=tq.dtype, device=tq.device),
                    torch.ones(1, dtype=tq.dtype, device=tq.device), tq])
    samples_t = 2 * ts - 1
    ok = torch.ones(M, dtype=torch.bool, device=Xc.device)
    flagged = []                        # (depth, point indices, owner, lo, hi) of split points
    for depth, j in enumerate(acts, start=1):
        live = torch.nonzero(ok).flatten()
        if not len(live):
            break
        every = len(live) == M

        def at(x, live=live, every=every):
            x = x.reshape(M, -1)
            return x if every else x[live]

        u0, u1 = at(start[1][j]), at(end[1][j])
        if len(ts) < depth + 1:   # too few samples to pin the polynomial: split from here
            flagged.append((depth, live, None))
            ok[live] = False
            break
        if depth == 1:            # affine in tau: a root in [0, 1] iff the endpoint signs differ
            bad = ((u0 > 0) != (u1 > 0)) | (u0 == 0) | (u1 == 0)
            coef = None
        else:
            u = torch.stack([u0, u1, *[at(rec[j]) for rec in node_pre]])
            pinv = torch.linalg.pinv(_vander(samples_t, depth))       # [depth+1, q]
            coef = (pinv @ u.reshape(len(ts), -1)).reshape(depth + 1, len(live), -1)
            head, tail = coef[0].abs(), coef[1:].abs().sum(0)
            eps = torch.finfo(coef.dtype).eps
            bad = ~((head > tail * (1 + 1e-9) + 64 * eps * (head + tail))
                    | (coef.abs().amax(0) == 0))
        hit = bad.any(1)
        if hit.any():
            rows = torch.nonzero(hit).flatten()
            r_idx, unit = torch.nonzero(bad[rows], as_tuple=True)
            if coef is None:
                a, b = u0[rows[r_idx], unit], u1[rows[r_idx], unit]
                c = torch.stack([(a + b) / 2, (b - a) / 2], dim=1)
            else:
                c = coef[:, rows[r_idx], unit].T
            t, valid = _poly_roots(c)
            flagged.append((depth, live[rows], (r_idx, t, valid)))
            ok[live[rows]] = False
    fast = torch.nonzero(ok).flatten()
    K = torch.empty((M, *_kshape(train)), dtype=Xc.dtype, device=Xc.device)
    sl = ops[-1].param
    if 4 * (M - len(fast)) <= M:       # few split points: contract all, overwrite those
        groups = [(sig, None, float(w)) for sig, w in zip(node_sig, wq.tolist(), strict=True)]
        K = _contract_groups(groups, train, M, static_last=sl)
        if len(fast) == M:
            return K, M
    elif len(fast):
        groups = [(_take(sig, fast), None, float(w))
                  for sig, w in zip(node_sig, wq.tolist(), strict=True)]
        K[fast] = _contract_groups(groups, train, len(fast), static_last=sl)
    npieces = len(fast)
    for depth, idx, roots in flagged:
        Ms = len(idx)
        dtype, device = Xc.dtype, Xc.device
        owner = torch.arange(Ms, device=device)
        lo = torch.zeros(Ms, dtype=dtype, device=device)
        hi = torch.ones(Ms, dtype=dtype, device=device)
        first = depth
        if roots is not None:      # cut at this layer's roots, from the exact fit
            r_idx, t, valid = roots
            owner, lo, hi = _cut(owner, lo, hi, r_idx[:, None].expand_as(t)[valid], t[valid])
            first = depth + 1
        Kd, np_ = _split_step(ops, Ps, dP, Xc[idx], train, tq, wq, acts,
                              pieces=(owner, lo, hi), first_depth=first)
        K[idx] = Kd
        npieces += np_
    return K, npieces


# ----------------------------------------------------------------------------- closed form


def _closed_layout(ops):
    """``(Linear ops, activation modules)`` for ``Linear, act, Linear`` or ``Linear, act,
    Linear, act, Linear`` with piecewise-linear activations (nothing else), else None."""
    if len(ops) not in (3, 5):
        return None
    lin, acts = ops[0::2], ops[1::2]
    if not all(type(op.module) is nn.Linear for op in lin) or \
            not all(type(op.module) in _PIECEWISE_LINEAR for op in acts):
        return None
    return lin, [op.module for op in acts]


class _StepDiff(dict):
    """``Delta_s`` as a parameter dict whose entries ``P1[n] - P0[n]`` are formed on first
    use (the closed form needs only a few of them)."""

    def __init__(self, P0: dict, P1: dict):
        super().__init__()
        self._P0, self._P1 = P0, P1

    def __missing__(self, name):
        self[name] = v = self._P1[name] - self._P0[name]
        return v


def _slope(act: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """``act'(u)`` of a piecewise-linear activation where ``u != 0`` (one pass over ``u``
    plus one in place; the value at ``0`` is not the autograd one)."""
    t = type(act)
    if t is nn.ReLU:
        return torch.sign(u).clamp_min_(0)
    if t is nn.LeakyReLU:
        s = act.negative_slope
        return torch.sign(u).mul_((1 - s) / 2).add_((1 + s) / 2)
    return torch.sign(u)                                                     # Abs


def _nonzero(mask: torch.Tensor):
    return torch.nonzero(mask).unbind(1)


def _end(Ps: dict, dP: dict) -> dict:
    """The parameters ``w_{s+1}`` (as recorded when ``dP`` is a :class:`_StepDiff`)."""
    return dP._P1 if isinstance(dP, _StepDiff) else {n: Ps[n] + dP[n] for n in Ps}


def _moments(act: nn.Module, a, b, c, end):
    """The moments ``mu_m = int_0^1 t^m act'(a + b t + c t^2) dt``, ``m = 0 .. deg``
    (``c`` None: affine, ``deg = 1``), of every entry of ``[R, W]``; ``end`` is the value
    at ``t = 1``.

    ``act'`` is piecewise constant with jumps only where the polynomial changes sign. An
    entry whose polynomial provably keeps its sign on ``[0, 1]`` (same strict sign at both
    ends and, for a quadratic, no interior extremum of the other sign) has
    ``mu_m = D / (m + 1)`` with ``D = act'(a)``; the others (few) are split at their real
    roots in ``(0, 1)`` (closed form, Newton-polished) and integrated piece by piece, with
    ``act'`` read at each piece's midpoint. Returns ``(D [R, W], rows [F], units [F],
    mu [F, deg + 1] of those entries, roots per row [R])``.
    """
    cand = a * end <= 0                       # a sign change or a zero at an end
    if c is not None:                         # an interior extremum (b and b + 2c differ)
        r, u = _nonzero(torch.add(b, c, alpha=2).mul_(b) < 0)
        if len(r):
            ar, br, cr = a[r, u], b[r, u], c[r, u]
            hv = ar - br * br / (4 * cr)        # its value
            near = hv.abs() <= 1e-12 * (ar.abs() + br.abs() + cr.abs())
            cand[r, u] |= (hv * ar <= 0) | near
    D = _slope(act, a)                        # a != 0 off the candidates
    deg = 1 if c is None else 2
    nroots = torch.zeros(a.shape[0], dtype=torch.long, device=a.device)
    rows, units = _nonzero(cand)
    if not len(rows):
        return D, rows, units, a.new_zeros((0, deg + 1)), nroots
    coef = [a[rows, units], b[rows, units]] + ([] if c is None else [c[rows, units]])
    t, valid = _poly_roots(torch.stack(coef, 1))
    valid = valid & (t > 0) & (t < 1)
    t = torch.where(valid, t, torch.ones_like(t)).sort(1).values
    pts = torch.cat([torch.zeros_like(t[:, :1]), t, torch.ones_like(t[:, :1])], 1)
    lo, hi = pts[:, :-1], pts[:, 1:]
    mid = (lo + hi) / 2
    hm = coef[-1][:, None]
    for cf in coef[-2::-1]:
        hm = hm * mid + cf[:, None]
    Dm = _derivative(act, hm)
    mu = torch.stack([(Dm * (hi ** (m + 1) - lo ** (m + 1))).sum(1) / (m + 1)
                      for m in range(deg + 1)], 1)
    nroots.index_add_(0, rows, valid.sum(1))
    return D, rows, units, mu, nroots


def _gram_k(e: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``<e[m, a], d[n, b]>``: ``[M, k, W] x [N, k, W] -> [M, N, k, k]`` as one GEMM."""
    M, k, _ = e.shape
    N = d.shape[0]
    G = e.reshape(M * k, -1) @ d.reshape(N * k, -1).T
    return G.reshape(M, k, N, k).permute(0, 2, 1, 3)


def _add_diagonal(K: torch.Tensor, diag: torch.Tensor, bias: bool) -> torch.Tensor:
    if bias:
        diag += 1
    torch.diagonal(K, dim1=2, dim2=3).add_(diag[:, :, None])
    return K


def _closed1(lay, Ps, dP, train, xg, h0, h1):
    """One hidden layer, rows with pre-activations ``h0``, ``h1`` at the ends of their
    step: ``([R, N, k, k], roots per row)``."""
    lin, acts = lay
    b = h1 - h0
    D, r, u, mu, nroots = _moments(acts[0], h0, b, None, h1)
    W2, dW2 = Ps[lin[1].weight], dP[lin[1].weight]
    e0 = D[:, None] * torch.add(W2, dW2, alpha=0.5)          # mu_0 W_2 + mu_1 dW_2: [R, k, W]
    e0[r, :, u] = mu[:, :1] * W2[:, u].T + mu[:, 1:] * dW2[:, u].T
    K = _gram_k(e0, train[0].delta) * xg[:, :, None, None]
    zbar = torch.add(h0, b, alpha=0.5).mul_(D)                # mu_0 h0 + mu_1 b
    zbar[r, u] = mu[:, 0] * h0[r, u] + mu[:, 1] * b[r, u]
    return _add_diagonal(K, zbar @ train[1].z.T, lin[1].bias is not None), nroots


def _closed2(lay, Ps, dP, train, g, rank_n, xg, D1, z1a, z1b, h2a, h2b, lo=None,
             span=None):
    """Two hidden layers, rows whose first-layer derivative ``D1`` is constant on their
    piece ``[lo, lo + span]`` of the step (default ``[0, 1]``), with ``z_1`` and ``h_2`` at
    the piece's ends: ``(int_piece J(x; w(t)) dt J(X; w_s)^T [R, N, k, k], roots per row)``.

    ``g = -lr g_s`` ``[N, k]``; ``rank_n``: the step of the middle weight is the rank-``N``
    matrix ``dW_2 = sum_i sum_b g_ib delta_2^b(x_i) (x) z_1(x_i)`` (gradient descent,
    :func:`_rank_n_step`), so its products ``dW_2 v`` and ``u dW_2`` go through the Gram
    matrices with the training signals that the contraction needs anyway (two ``N``-sized
    products instead of one ``W``-sized one); else ``Delta_s`` itself is used, as for the
    other layers.
    """
    lin, acts = lay
    W2 = Ps[lin[1].weight]
    dW2 = None if rank_n else dP[lin[1].weight]
    W3, dW3 = Ps[lin[2].weight], dP[lin[2].weight]
    Z1, d2 = train[1].z, train[1].delta
    G0 = z1a @ Z1.T
    Gd = z1b @ Z1.T - G0                                          # <z_1(1) - z_1(0), Z_1>
    R, N, k = len(z1a), *g.shape
    if rank_n:                                                    # c = dW_2 (z_1(1) - z_1(0))
        c = (Gd[:, :, None] * g).reshape(R, N * k) @ d2.reshape(N * k, -1)
    else:
        c = (z1b - z1a) @ dW2.T
    if lin[1].bias:
        G0 += 1
    if span is not None:
        c *= span[:, None]
    b = torch.sub(h2b, h2a).sub_(c)                               # h_2 = h2a + b s + c s^2
    D, r, u, mu, nroots = _moments(acts[1], h2a, b, c, h2b)
    # e_j = int s^j delta_2 = mu_j W_3(lo) + mu_{j+1} span dW_3; D / (m + 1) off the flips
    lo_, span_ = (0.0, 1.0) if span is None else (lo[:, None, None], span[:, None, None])
    e0 = D[:, None] * (W3 + (lo_ + span_ / 2) * dW3)                         # [R, k, W]
    e1 = D[:, None] * (W3 / 2 + (lo_ / 2 + span_ / 3) * dW3)
    if len(r):
        lr_, sr_ = (0.0, 1.0) if span is None else (lo[r, None], span[r, None])
        W3u, dW3u = W3[:, u].T, dW3[:, u].T                                  # [F, k]
        e0[r, :, u] = mu[:, :1] * W3u + (lr_ * mu[:, :1] + sr_ * mu[:, 1:2]) * dW3u
        e1[r, :, u] = mu[:, 1:2] * W3u + (lr_ * mu[:, 1:2] + sr_ * mu[:, 2:]) * dW3u
    Ge0, Ge1 = _gram_k(e0, d2), _gram_k(e1, d2)                              # [R, N, k, k]
    K = Ge0 * G0[:, :, None, None]
    K += Ge1 * Gd[:, :, None, None]
    Gw = Ge1 if span is None else lo[:, None, None, None] * Ge0 + \
        span[:, None, None, None] * Ge1
    if rank_n:                                                        # e1 dW_2 = coef Z1
        coef, Z = torch.einsum("rnab,nb->ran", Gw, g).reshape(R * k, -1), Z1
    else:
        e1w = e1 if span is None else lo[:, None, None] * e0 + span[:, None, None] * e1
        coef, Z = e1w.reshape(R * k, -1), dW2
    d1 = torch.addmm(e0.reshape(R * k, -1) @ W2, coef, Z).reshape(R, k, -1).mul_(D1[:, None])
    K += _gram_k(d1, train[0].delta) * xg[:, :, None, None]
    z2bar = torch.add(h2a, b, alpha=0.5).add_(c, alpha=1 / 3).mul_(D)
    if len(r):
        z2bar[r, u] = (mu * torch.stack([h2a[r, u], b[r, u], c[r, u]], 1)).sum(1)
    _add_diagonal(K, z2bar @ train[2].z.T, lin[2].bias is not None)
    if span is not None:
        K *= span[:, None, None, None]
    return K, nroots


def _rank_n_step(op: _Op, Ps, dP, train, g) -> bool:
    """Whether the recorded step of the middle weight is the gradient-descent one,
    ``Delta_s W_2 = sum_i sum_b g_ib delta_2^b(x_i) (x) z_1(x_i)`` (``g = -lr g_s``), to
    rounding, on the probe vector of ones (a trajectory whose steps are not plain gradient
    descent gets False: the closed form then uses the recorded step)."""
    d2, Z1 = train[1].delta, train[1].z
    N, k = g.shape
    W0, W1 = Ps[op.weight], _end(Ps, dP)[op.weight]
    ref = W1.sum(1) - W0.sum(1)                                # Delta_s W_2 times ones
    low = d2.reshape(N * k, -1).T @ (g * Z1.sum(1)[:, None]).reshape(N * k)
    eps = torch.finfo(W0.dtype).eps
    tol = math.sqrt(eps) * float(ref.norm()) + 64 * eps * float(W0.norm()) * \
        math.sqrt(W0.shape[1])
    return float((low - ref).norm()) <= tol


def _closed_step(lay, Ps, dP, Xc, train, g, start, end):
    """Exact ``Kbar_s`` for an MLP with one or two hidden layers in closed form:
    ``([M, N, k, k], pieces)``.

    Along ``w(t) = w_s + t Delta_s`` the first pre-activations are affine in ``t``. With one
    hidden layer each unit's derivative ``D_1(t)`` is a step function with at most one jump,
    and ``Kbar = <e_0, delta_1(x_i)> (x.x_i + 1) + (<zbar_1, z_1(x_i)> + 1) I`` with
    ``e_0 = mu_0 W_2 + mu_1 dW_2``, ``zbar_1 = mu_0 h_1(0) + mu_1 (h_1(1) - h_1(0))`` and
    ``mu_m = int t^m D_1(t) dt`` (entrywise, :func:`_moments`). With two hidden layers,
    on a piece where ``D_1`` is constant (the whole step, or the pieces between the first
    layer's flips), ``z_1(t)`` is affine and the second pre-activation is the quadratic
    ``h_2(t) = a + b t + c t^2`` with ``a = h_2(0)``, ``c = dW_2 (z_1(1) - z_1(0))``,
    ``b = h_2(1) - a - c``; with the moments ``mu_m`` of ``D_2(t)`` (``m <= 2``) and
    ``e_j = mu_j W_3 + mu_{j+1} dW_3`` (``= int t^j delta_2``):

    * last layer: ``<a mu_0 + b mu_1 + c mu_2, z_2(x_i)> + 1`` on the diagonal;
    * middle: ``<e_0, delta_2(x_i)> (<z_1(0), z_1(x_i)> + 1)
      + <e_1, delta_2(x_i)> <z_1(1) - z_1(0), z_1(x_i)>``;
    * first: ``<D_1 (e_0 W_2 + e_1 dW_2), delta_1(x_i)> (x.x_i + 1)``.

    No quadrature node is materialized: a flip of the second layer only changes the moments
    of its unit; a flip of the first layer cuts the point's step into pieces (closed-form
    roots), each a segment of its own. ``g = -lr g_s`` ``[N, k]``.
    """
    lin, acts = lay
    xg = Xc @ train[0].z.T
    if lin[0].bias:
        xg += 1
    pre0, pre1 = start[1], end[1]
    h1_0, h1_1 = pre0[1], pre1[1]
    if len(lin) == 2:
        K, nroots = _closed1(lay, Ps, dP, train, xg, h1_0, h1_1)
        return K, len(Xc) + int(nroots.sum())
    rank_n = _rank_n_step(lin[1], Ps, dP, train, g)
    # D_1 is only read on points without a first-layer flip (so h_1(0) != 0 there)
    K, nroots = _closed2(lay, Ps, dP, train, g, rank_n, xg, _slope(acts[0], h1_0), pre0[2],
                         pre1[2], pre0[3], pre1[3])
    pieces = len(Xc) + int(nroots.sum())
    prod = h1_0 * h1_1
    idx = torch.nonzero(prod.amin(1) <= 0).flatten()
    if not len(idx):
        return K, pieces
    # points whose first layer flips: cut their step at those roots, one row per piece
    a, e = h1_0[idx], h1_1[idx]
    t = torch.where(prod[idx] <= 0, a / (a - e), torch.ones_like(a))
    t = torch.where((t > 0) & (t < 1), t, torch.ones_like(t))
    nmax = int(((t < 1).sum(1)).max())
    pts = t.sort(1).values[:, :nmax]
    pts = torch.cat([torch.zeros_like(pts[:, :1]), pts, torch.ones_like(pts[:, :1])], 1)
    lo, hi = pts[:, :-1], pts[:, 1:]
    keep = hi > lo
    owner = torch.arange(len(idx), device=Xc.device)[:, None].expand_as(lo)[keep]
    lo, hi = lo[keep], hi[keep]
    a, e = a[owner], e[owner]

    def at(tt):
        return a + tt[:, None] * (e - a)

    D1 = _derivative(acts[0], at((lo + hi) / 2))         # (exact, also for a unit at 0)
    W2, W2e = Ps[lin[1].weight], _end(Ps, dP)[lin[1].weight]

    def h2(z, tt):                  # the second pre-activation at (1 - tt) w_s + tt w_{s+1}
        h0 = z @ W2.T
        out = torch.addcmul(h0, tt[:, None], z @ W2e.T - h0)
        if lin[1].bias:
            out += Ps[lin[1].bias] + tt[:, None] * dP[lin[1].bias]
        return out

    z1a, z1b = D1 * at(lo), D1 * at(hi)
    Kp, nr = _closed2(lay, Ps, dP, train, g, rank_n, xg[idx][owner], D1, z1a, z1b, h2(z1a, lo),
                      h2(z1b, hi), lo=lo, span=hi - lo)
    K[idx] = _segment_sum(owner, Kp, len(idx))
    pieces += len(owner) + int(nr.sum()) - len(idx) - int(nroots[idx].sum())
    return K, pieces


def _take(sig: list[_Signal], idx: torch.Tensor) -> list[_Signal]:
    return [_Signal("grad", grad=a.grad[idx]) if a.kind == "grad" else
            _Signal("outer", z=a.z[idx], delta=a.delta[idx], bias=a.bias) for a in sig]


def _cut(owner, lo, hi, piece, t):
    """Cut the pieces ``[lo, hi]`` (of test points ``owner``) at the roots ``t`` (in the
    piece's ``[-1, 1]`` coordinate) of piece ``piece``; returns the new ``(owner, lo, hi)``,
    sorted by owner and position."""
    cut = lo[piece] + (hi - lo)[piece] * (t + 1) / 2
    keep = (cut > lo[piece]) & (cut < hi[piece])
    piece, cut = piece[keep], cut[keep]
    R = len(lo)
    ar = torch.arange(R, device=lo.device)
    pts_piece = torch.cat([ar, piece, ar])
    pts_t = torch.cat([lo, cut, hi])
    order = torch.sort(pts_t, stable=True).indices
    order = order[torch.sort(pts_piece[order], stable=True).indices]
    pp, pt = pts_piece[order], pts_t[order]
    same = (pp[1:] == pp[:-1]) & (pt[1:] > pt[:-1])
    return owner[pp[:-1][same]], pt[:-1][same], pt[1:][same]


def _kshape(train: list[_Signal]):
    a = train[-1]
    if a.kind == "outer":
        N, k = a.delta.shape[:2]
    else:
        N, k = a.grad.shape[:2]
    return (N, k, k)


def _cheb(n: int, dtype, device) -> torch.Tensor:
    j = torch.arange(n, dtype=dtype, device=device)
    return torch.cos((2 * j + 1) * math.pi / (2 * n)).flip(0)


def _roots_in(c: np.ndarray) -> list[float]:
    """Real roots in (-1, 1) of ``sum_j c[j] t^j`` (numpy; degrees >= 3)."""
    if not np.any(c):
        return []
    r = np.polynomial.polynomial.polyroots(c)
    return [float(z.real) for z in r if abs(z.imag) <= 1e-6 * (1 + abs(z.real))
            and -1 < z.real < 1]


def _poly_roots(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real roots of the polynomials ``sum_j c[f, j] t^j`` ``[F, d+1]``: ``(t [F, d],
    valid [F, d])``, polished by Newton steps. Closed forms for ``d <= 2``; a near-double
    root (a tangency, where the sign need not change) is kept, which only adds a harmless
    split."""
    F_, d1 = c.shape
    d = d1 - 1
    if d == 1:
        t = (-c[:, 0] / c[:, 1])[:, None]
        valid = (c[:, 1] != 0)[:, None]
    elif d == 2:
        c0, c1, c2 = c.unbind(1)
        disc = c1 * c1 - 4 * c2 * c0
        disc = torch.where((disc < 0) & (disc > -1e-10 * c1 * c1), torch.zeros_like(disc), disc)
        real = disc >= 0
        sq = disc.clamp_min(0).sqrt()
        sgn = torch.where(c1 >= 0, 1.0, -1.0).to(c.dtype)
        q = -(c1 + sgn * sq) / 2
        safe_q = torch.where(q == 0, torch.ones_like(q), q)
        safe_c2 = torch.where(c2 == 0, torch.ones_like(c2), c2)
        r1 = torch.where(c2 != 0, q / safe_c2, -c0 / torch.where(c1 == 0, 1.0, c1))
        r2 = c0 / safe_q
        t = torch.stack([r1, r2], 1)
        valid = torch.stack([real & ((c2 != 0) | (c1 != 0)), real & (c2 != 0) & (q != 0)], 1)
    else:
        cn = c.detach().cpu().numpy()
        t = torch.zeros((F_, d), dtype=c.dtype)
        valid = torch.zeros((F_, d), dtype=torch.bool)
        for f in range(F_):
            roots = _roots_in(cn[f])
            t[f, :len(roots)] = torch.as_tensor(roots, dtype=c.dtype)
            valid[f, :len(roots)] = True
        t, valid = t.to(c.device), valid.to(c.device)
    t = torch.where(valid & torch.isfinite(t), t, torch.zeros_like(t))
    dc = c[:, 1:] * torch.arange(1, d1, dtype=c.dtype, device=c.device)
    for _ in range(2):                                                    # Newton polish
        p = _horner(c, t)
        dp = _horner(dc, t)
        step = torch.where(dp != 0, p / torch.where(dp == 0, 1.0, dp), torch.zeros_like(p))
        t = torch.where(step.abs() < 1e-6, t - step, t)
    return t, valid & (t > -1) & (t < 1)


def _horner(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(t) + c[:, -1:]
    for j in range(c.shape[1] - 2, -1, -1):
        out = out * t + c[:, j:j + 1]
    return out


def _split_step(ops, Ps, dP, Xs, train, tq, wq, acts, *, pieces=None, first_depth=1):
    """Split ``[0, 1]`` at every activation flip of each test point, then Gauss-Legendre
    on each piece (per-example ``tau``). Returns (``[Ms, N, k, k]``, number of pieces).

    Layer by layer from ``first_depth`` (the earlier layers keep their signs on the given
    ``pieces = (owner, lo, hi)``, default ``[0, 1]`` for each point): on a piece where the
    earlier layers keep their codes, the pre-activations of depth ``l`` are polynomials of
    degree ``l`` in ``tau``; they are interpolated exactly at ``l + 1`` Chebyshev points of
    the piece, their real roots in the piece found (closed form up to degree 2, companion
    matrix above) and polished, and the piece is cut there.
    """
    Ms = len(Xs)
    dtype, device = Xs.dtype, Xs.device
    if pieces is None:
        owner = torch.arange(Ms, device=device)
        lo = torch.zeros(Ms, dtype=dtype, device=device)
        hi = torch.ones(Ms, dtype=dtype, device=device)
    else:
        owner, lo, hi = pieces
    for depth, j in enumerate(acts, start=1):
        if depth < first_depth:
            continue
        t_cheb = _cheb(depth + 1, dtype, device)
        R = len(owner)
        tau = lo[:, None] + (hi - lo)[:, None] * (t_cheb[None] + 1) / 2          # [R, d+1]
        xin = Xs[owner].repeat_interleave(depth + 1, dim=0)
        u, _ = _forward(ops, Ps, xin, tau.reshape(-1), dP, upto=j)
        u = u.reshape(R, depth + 1, -1)
        coef = torch.linalg.solve(_vander(t_cheb, depth), u).permute(0, 2, 1)    # [R, W, d+1]
        r_idx, unit = torch.nonzero(~_no_root(coef), as_tuple=True)
        t, valid = _poly_roots(coef[r_idx, unit])
        owner, lo, hi = _cut(owner, lo, hi, r_idx[:, None].expand_as(t)[valid], t[valid])
    n = len(tq)
    tau = (lo[:, None] + (hi - lo)[:, None] * tq[None]).reshape(-1)            # [R*n]
    weight = ((hi - lo)[:, None] * wq[None]).reshape(-1)
    own = owner.repeat_interleave(n)
    _, sig = _signals(ops, Ps, Xs[own], tau, dP)
    return (_contract(sig, train, owner=own, weight=weight, M=Ms, static_last=ops[-1].param),
            len(owner))


# ----------------------------------------------------------------------------- lazy baseline


@threads.fair_share
def lazy_prediction(net: nn.Module, traj, X: torch.Tensor, *,
                    K0: torch.Tensor | None = None) -> torch.Tensor:
    """The frozen-initial-NTK approximation of the trained network at ``X`` ``[M, ...]``:
    ``f_{w_0}(x) - lr sum_s Theta_0(x, X_train) g_s`` with the recorded output gradients
    ``g_s`` of the real run (``traj``, a :class:`dltheory.dynamics.NetTrajectory` recorded
    on ``net``). ``K0``: ``Theta_0(X, X_train)`` ``[M, N, k, k]`` if already computed.
    Returns ``[M, k]``."""
    fn = "kernels.lazy_prediction"
    dtype, device = _net(net, fn)
    X = _trajectory_inputs(net, traj, X, fn, dtype, device)
    P0 = _unflatten(net, traj.params[0])
    N, k = traj.out_grads.shape[1:]
    if K0 is None:
        K0 = _ntk(net, P0, X, validation.private_copy(traj.X), False, "auto", 256)
        validation.finite_output(K0, "the kernel", fn=fn, cause="the forward pass "
                                 "overflows: X is too large for the dtype")
    else:
        K0 = validation.tensor(K0, "K0", fn=fn, shape=(len(X), N, k, k), dtype=dtype,
                               device=device, layout="[M, N, k, k]")
    with torch.no_grad():
        f0 = _as2d(torch.func.functional_call(net, P0, (X,)))
    G = traj.out_grads.sum(0)                                              # [N, k]
    out = f0 - traj.lr * torch.einsum("mnab,nb->ma", K0, G)
    validation.finite_output(out, "the lazy prediction", fn=fn, cause="X or K0 is too large "
                             "for the dtype")
    return out


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

"""The spline view: a CPA network is an exact affine map on the region of each input.

A network built from affine layers and the nonlinearities ReLU, leaky ReLU, ``|x|``,
maxout and max pooling is a continuous piecewise-affine (CPA) function. Its *activation
code* at ``x`` (which units are on, the sign of each ``|x|``, the winner of each max)
fixes one affine piece, valid on the region of inputs that share the code::

    f(x') = A x' + b     for every x' with the same code as x.

Entry points:

* :func:`validate` — check that every module is a known CPA layer (and that batch norm
  and dropout are in eval mode), raising :class:`NotCPAError` naming the module;
* :func:`trace` — the pre-activations at every nonlinearity, in execution order, as a
  list of :class:`Site` (the primitive that :mod:`dltheory.regions` builds on);
* :func:`codes` and :func:`same_code` — activation codes and their comparison;
* :func:`affine_map` — ``(A, b)`` per input, by two independent computations:
  ``"product"`` composes explicit per-layer matrices (masked by the code), and
  ``"jacobian"`` differentiates the network with :mod:`torch.func`;
* :func:`check_affine` — how well the affine piece at ``x`` predicts ``f(x')``.

Inputs are batched, ``x: [B, *in_shape]``. Matrices act on inputs **flattened row-major
per sample**, ``x.reshape(B, -1)``: for an image ``[B, C, H, W]`` the index of pixel
``(c, h, w)`` is ``(c*H + h)*W + w``. Outputs are flattened the same way.

The spline view needs each sample to be processed on its own with fixed parameters: batch
norm must use its running statistics (eval mode) and dropout must be off; call
``net.eval()`` or :func:`dltheory.nets.spline_eval` first.

Bad input never yields a number: every entry point checks its arguments with
:mod:`dltheory.validation` (a finite, non-empty floating ``x`` of the network's dtype and
device; a network with finite parameters; a forward pass that does not overflow) and raises
an :class:`~dltheory.errors.InputError` (or ``InputTypeError``) naming the argument. The
network always runs on a copy of ``x``, so an in-place first module cannot overwrite it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import validation
from .errors import InputError, InputTypeError
from .nets import Abs, DenseBlock, Maxout, ResidualBlock

__all__ = [
    "NotCPAError", "Site", "validate", "trace", "preactivations", "codes", "same_code",
    "conv_matrix", "affine_map", "check_affine", "KINDS",
]

KINDS = ("relu", "leaky", "abs", "max")
"""The kinds of nonlinearity sites: ReLU, leaky ReLU, absolute value, max (pool/maxout)."""

_NONLINEAR: dict[type, str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky",
    Abs: "abs",
    Maxout: "max",
    nn.MaxPool1d: "max",
    nn.MaxPool2d: "max",
}
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_RESHAPE = (nn.Flatten, nn.Unflatten, nn.Identity)
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, *_BATCHNORM, nn.AvgPool1d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, *_RESHAPE, *_DROPOUT)
_CONTAINERS = (nn.Sequential, nn.ModuleList, ResidualBlock, DenseBlock)

# Known nonlinearities that are not CPA (smooth or saturating), and CPA ones not supported.
_SMOOTH = (nn.GELU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.SiLU,
           nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish, nn.Softsign, nn.Tanhshrink,
           nn.LogSigmoid, nn.Hardswish)
_CPA_UNSUPPORTED = (nn.Hardtanh, nn.ReLU6, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink,
                    nn.PReLU, nn.RReLU, nn.Threshold)

_SUPPORTED_TEXT = (
    "Linear, Conv1d/2d, BatchNorm1d/2d (eval), ReLU, LeakyReLU, Abs, Maxout, "
    "MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool2d, Flatten, Unflatten, Identity, "
    "Dropout (eval), inside Sequential, ResidualBlock or DenseBlock"
)


class NotCPAError(InputError):
    """A module that the spline view cannot verify as continuous piecewise-affine."""


# --------------------------------------------------------------------------- validate


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str, module: nn.Module) -> str:
    return f"module {path or '(root)'!r} ({type(module).__name__})"


def _pair(v, n: int = 2) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (v,) * n


def _check_leaf(path: str, m: nn.Module) -> None:
    """Raise NotCPAError for a known leaf whose configuration the spline view can't handle."""
    where = _where(path, m)
    if isinstance(m, _BATCHNORM):
        if m.training:
            raise NotCPAError(
                f"{where}: batch norm in training mode: call net.eval() (the spline view fixes "
                "the statistics)"
            )
        if m.running_mean is None or m.running_var is None:
            raise NotCPAError(
                f"{where}: batch norm without running statistics (track_running_stats=False) "
                "normalizes with the statistics of the batch even in eval mode, so f(x) "
                "depends on the other inputs; build it with track_running_stats=True"
            )
    elif isinstance(m, _DROPOUT):
        if m.training and m.p > 0:
            raise NotCPAError(
                f"{where}: dropout in training mode: call net.eval() (the spline view needs a "
                "deterministic network)"
            )
    elif isinstance(m, nn.Conv1d | nn.Conv2d):
        if m.groups != 1:
            raise NotCPAError(f"{where}: groups={m.groups} is not supported (only groups=1)")
        if m.padding_mode != "zeros":
            raise NotCPAError(
                f"{where}: padding_mode={m.padding_mode!r} is not supported (only 'zeros')"
            )
        if m.padding == "same" and any(s != 1 for s in m.stride):
            raise NotCPAError(f"{where}: padding='same' needs stride 1, got {m.stride}")
    elif isinstance(m, nn.MaxPool1d | nn.MaxPool2d):
        n = 1 if isinstance(m, nn.MaxPool1d) else 2
        kernel, stride = _pair(m.kernel_size, n), _pair(m.stride or m.kernel_size, n)
        bad = []
        if stride != kernel:
            bad.append(f"stride {stride} != kernel_size {kernel}")
        if any(_pair(m.padding, n)):
            bad.append(f"padding={m.padding}")
        if any(d != 1 for d in _pair(m.dilation, n)):
            bad.append(f"dilation={m.dilation}")
        if m.ceil_mode:
            bad.append("ceil_mode=True")
        if m.return_indices:
            bad.append("return_indices=True")
        if bad:
            raise NotCPAError(
                f"{where}: max pooling is supported with non-overlapping windows only "
                f"(stride == kernel_size, no padding, no dilation, no ceil_mode); got "
                f"{', '.join(bad)}"
            )
    elif isinstance(m, nn.AvgPool1d | nn.AvgPool2d):
        if m.ceil_mode:
            raise NotCPAError(f"{where}: ceil_mode=True is not supported")
    elif isinstance(m, nn.Flatten):
        if m.start_dim == 0:
            raise NotCPAError(f"{where}: Flatten(start_dim=0) merges the batch dimension")
    elif isinstance(m, nn.Unflatten):
        if m.dim == 0:
            raise NotCPAError(f"{where}: Unflatten(dim=0) splits the batch dimension")


def validate(net: nn.Module, *, fn: str = "cpa.validate") -> nn.Module:
    """Check that ``net`` is a CPA network the spline view can analyse; return it.

    Walks every submodule. Containers (``Sequential``, ``ModuleList``,
    :class:`~dltheory.nets.ResidualBlock`, :class:`~dltheory.nets.DenseBlock`) are
    walked into; leaves must be of a known CPA type (exactly, not a subclass, whose
    ``forward`` could do anything). Raises :class:`NotCPAError` naming the module's path
    and type for a non-CPA or unknown module, for batch norm or dropout in training mode,
    and for layer options the spline view does not handle; an
    :class:`~dltheory.errors.InputError` for NaN or inf in a parameter or buffer.
    ``fn`` names the calling function in messages.
    """
    validation.network(net, "net", fn=fn, finite=False, eval_only=False)
    try:
        _validate(net, "")
    except NotCPAError as err:
        raise NotCPAError(f"{fn}: net: {err}") from None
    # modes were checked by the walk (dropout with p = 0 may stay in training mode)
    validation.network(net, "net", fn=fn, eval_only=False)
    return net


def _validate(m: nn.Module, path: str) -> None:
    t = type(m)
    if t in _CONTAINERS:
        for name, child in m.named_children():
            _validate(child, _join(path, name))
        return
    if t in _NONLINEAR or t in _LINEAR:
        if any(True for _ in m.children()):
            raise NotCPAError(f"{_where(path, m)}: unexpected submodules in a leaf layer")
        _check_leaf(path, m)
        return
    where = _where(path, m)
    if isinstance(m, _SMOOTH):
        raise NotCPAError(
            f"{where} is not continuous piecewise-affine (it is smooth, so the network has "
            f"no affine pieces); the spline view supports {_SUPPORTED_TEXT}"
        )
    if isinstance(m, _CPA_UNSUPPORTED):
        raise NotCPAError(
            f"{where} is piecewise affine but not supported by the spline view; express it "
            f"with ReLUs, or use one of {_SUPPORTED_TEXT}"
        )
    raise NotCPAError(
        f"{where} cannot be verified as CPA: it is not a known CPA layer (custom modules "
        f"may compute anything); build the network from {_SUPPORTED_TEXT}"
    )


# --------------------------------------------------------------------------- inputs


def _param_dtype_device(net: nn.Module):
    for t in (*net.parameters(), *net.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return None, None


def _input(net: nn.Module, x, name: str, fn: str) -> torch.Tensor:
    """``x`` checked for ``fn`` as a batch ``[B, *in_shape]`` of finite values in the
    network's dtype and on its device (:func:`dltheory.validation.tensor`)."""
    dtype, device = _param_dtype_device(net)
    kw = dict(fn=fn, min_ndim=2, dtype=dtype, device=device, layout="[B, *in_shape] (batched)")
    try:
        return validation.tensor(x, name, **kw)
    except RuntimeError:
        # inside torch.func.vmap a value cannot steer Python (data-dependent control flow):
        # only the shape, dtype and device can be checked there
        return validation.tensor(x, name, finite=False, **kw)


def _own(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` to hand the network, so that an in-place module
    (``ReLU(inplace=True)``) can never overwrite the caller's tensor. Unlike
    :func:`dltheory.validation.private_copy` it keeps ``x``'s autograd history (and works
    under :mod:`torch.func` transforms): :func:`trace` is differentiable in ``x``."""
    return x.clone()


def _finite_result(y: torch.Tensor, what: str, fn: str) -> None:
    """:func:`dltheory.validation.finite_output` on a computed ``y`` (skipped inside
    :func:`torch.func.vmap`, where values cannot be read)."""
    try:
        finite = bool(torch.isfinite(y).all())
    except RuntimeError:
        return
    if not finite:
        validation.finite_output(y, what, fn=fn, cause="x or the network's weights are too "
                                 "large for the dtype (the forward pass overflows)")


def _forward(net: nn.Module, x: torch.Tensor, *, name: str = "x",
             fn: str | None = None) -> torch.Tensor:
    """``net(x)`` with a clear error when the shape does not fit; output ``[B, *out]``."""
    head = f"{fn}: " if fn else ""
    try:
        y = net(x)
    except (RuntimeError, ValueError) as err:
        if isinstance(err, NotCPAError):
            raise
        raise InputError(
            f"{head}the network cannot run on {name}, an input of shape {tuple(x.shape)} "
            f"[B, *in_shape]: {err}"
        ) from err
    if not isinstance(y, torch.Tensor) or y.ndim < 1 or y.shape[0] != x.shape[0]:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise InputError(
            f"{head}the network maps {name}, an input of shape {tuple(x.shape)}, to {shape}; "
            "the spline view needs an output [B, *out_shape] with the same batch size"
        )
    return y


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True, eq=False)
class Site:
    """The pre-activation of one nonlinearity, as seen on a batch.

    ``path``: the module's name in ``net.named_modules()``; ``kind``: one of
    :data:`KINDS`; ``pre``: for ``"relu"``, ``"leaky"`` and ``"abs"`` the module's input
    flattened to ``[B, n_units]``; for ``"max"`` the candidates of each max, ``[B,
    n_groups, k]`` (groups in the row-major order of the module's flattened output;
    candidates of a pooling window in row-major order, of a maxout group in channel
    order). ``pre`` keeps autograd history when ``x`` requires grad.
    """

    path: str
    kind: str
    pre: torch.Tensor

    def code(self) -> torch.Tensor:
        """The site's activation code: ``pre > 0`` ``[B, n]`` (bool) for relu, leaky and
        abs (the sign), the argmax ``[B, n_groups]`` (int64) for max."""
        return _code(self.kind, self.pre)


def _code(kind: str, pre: torch.Tensor) -> torch.Tensor:
    if kind == "max":
        return pre.argmax(dim=-1)
    return pre > 0


def _groups(m: nn.Module, h: torch.Tensor, path: str) -> torch.Tensor:
    """Candidates of every max of ``m`` on its input ``h``: ``[B, n_groups, k]``."""
    B = h.shape[0]
    if isinstance(m, Maxout):
        k = m.k
        if h.ndim < 2 or h.shape[1] % k:
            raise InputError(
                f"{_where(path, m)} needs an input [B, C*{k}, ...] whose channel count is a "
                f"multiple of {k}, got shape {tuple(h.shape)}"
            )
        C, S = h.shape[1] // k, h.shape[2:]
        return h.reshape(B, C, k, *S).movedim(2, -1).reshape(B, -1, k)
    if isinstance(m, nn.MaxPool2d):
        if h.ndim != 4:
            raise InputError(f"{_where(path, m)} needs an input [B, C, H, W], got "
                             f"shape {tuple(h.shape)}")
        kh, kw = _pair(m.kernel_size)
        _, C, H, W = h.shape
        Ho, Wo = H // kh, W // kw
        win = h[:, :, : Ho * kh, : Wo * kw].reshape(B, C, Ho, kh, Wo, kw)
        return win.permute(0, 1, 2, 4, 3, 5).reshape(B, C * Ho * Wo, kh * kw)
    if isinstance(m, nn.MaxPool1d):
        if h.ndim != 3:
            raise InputError(f"{_where(path, m)} needs an input [B, C, L], got "
                             f"shape {tuple(h.shape)}")
        (k,) = _pair(m.kernel_size, 1)
        _, C, L = h.shape
        Lo = L // k
        return h[:, :, : Lo * k].reshape(B, C * Lo, k)
    raise AssertionError(f"not a max site: {type(m).__name__}")  # pragma: no cover


def _pre(m: nn.Module, kind: str, h: torch.Tensor, path: str) -> torch.Tensor:
    if kind == "max":
        return _groups(m, h, path)
    return h.reshape(h.shape[0], -1)


def trace(net: nn.Module, x: torch.Tensor) -> list[Site]:
    """Run ``net`` on ``x`` ``[B, *in_shape]`` and record every nonlinearity, in order.

    Returns one :class:`Site` per call of a ReLU, LeakyReLU, Abs, Maxout, MaxPool1d or
    MaxPool2d module, in execution order (a module called twice gives two sites). The
    network is validated first (:func:`validate`), so batch norm must be in eval mode.
    Raises an :class:`~dltheory.errors.InputError` for a non-finite ``x`` or a forward
    pass that overflows.
    """
    return _trace(net, x, "cpa.trace")


def _trace(net: nn.Module, x, fn: str) -> list[Site]:
    validate(net, fn=fn)
    x = _input(net, x, "x", fn)
    sites: list[Site] = []
    handles = []

    def hook_for(path: str, kind: str):
        def hook(module, args):
            # clone: an in-place ReLU would overwrite its input after this hook
            sites.append(Site(path, kind, _pre(module, kind, args[0], path).clone()))
        return hook

    try:
        for path, m in net.named_modules():
            kind = _NONLINEAR.get(type(m))
            if kind is not None:
                handles.append(m.register_forward_pre_hook(hook_for(path, kind)))
        y = _forward(net, _own(x), fn=fn)
    finally:
        for handle in handles:
            handle.remove()
    _finite_result(y, "net(x)", fn)
    return sites


def preactivations(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every ReLU / leaky-ReLU / abs pre-activation of ``net`` at ``x``, concatenated in
    execution order: ``[B, U]``. Differentiable (``torch.func`` transforms apply), so the
    gradients of the units' zero sets follow from ``jacrev``. Networks with max sites
    (max pooling, maxout) have no single pre-activation per unit and are refused."""
    sites = _trace(net, x, "cpa.preactivations")
    maxes = [s.path for s in sites if s.kind == "max"]
    if maxes:
        raise InputError(f"cpa.preactivations: net has the max sites {maxes}, which have no "
                         "single pre-activation per unit; use trace() for them")
    if not sites:
        return x.new_zeros((x.shape[0], 0))
    return torch.cat([s.pre for s in sites], 1)


def codes(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The activation code of each input: one tensor per site of :func:`trace`.

    ``[B, n]`` bool (``pre > 0``) for relu, leaky and abs sites; ``[B, n_groups]`` int64
    (argmax) for max sites.
    """
    return [site.code() for site in _trace(net, x, "cpa.codes")]


def same_code(c1: list[torch.Tensor], c2: list[torch.Tensor]) -> torch.Tensor:
    """Whether two batches of codes agree, per input: ``[B]`` bool.

    The batches broadcast (a code of batch 1 compares with every code of the other batch).
    For a network without nonlinearities (one region) the answer is a 0-d ``True``.
    ``c1``, ``c2``: lists (or tuples) of codes as :func:`codes` returns them, each
    ``[B, n]``, bool or integer.
    """
    fn = "cpa.same_code"
    c1, c2 = _codes_arg(c1, "c1", fn), _codes_arg(c2, "c2", fn)
    if len(c1) != len(c2):
        raise InputError(
            f"{fn}: c1 and c2 are codes from different networks: {len(c1)} sites vs "
            f"{len(c2)} sites"
        )
    out = torch.ones((), dtype=torch.bool)
    for i, (a, b) in enumerate(zip(c1, c2, strict=True)):
        if a.shape[1:] != b.shape[1:]:
            raise InputError(
                f"{fn}: site {i}: code shapes {tuple(a.shape)} (c1) and {tuple(b.shape)} (c2) "
                "differ beyond the batch dimension"
            )
        if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
            raise InputError(
                f"{fn}: site {i}: batches of {a.shape[0]} and {b.shape[0]} codes do not pair "
                "(same batch size, or a batch of 1 on one side) in c1 and c2"
            )
        eq = (a == b).reshape(max(a.shape[0], b.shape[0]), -1).all(dim=1)
        out = out.to(eq.device) & eq
    return out


def _codes_arg(c, name: str, fn: str) -> list[torch.Tensor]:
    """``c`` checked as a list of codes: tensors ``[B, n]``, bool or integer."""
    if not isinstance(c, list | tuple):
        raise InputTypeError(f"{fn}: {name} must be a list of codes (as cpa.codes "
                             f"returns), got {type(c).__name__}")
    for i, a in enumerate(c):
        a = validation.tensor(a, f"{name}[{i}]", fn=fn, ndim=2, floating=False,
                              finite=False, nonempty=False, layout="[B, n]")
        if a.is_floating_point() or a.is_complex():
            raise InputTypeError(
                f"{fn}: {name}[{i}] has dtype {a.dtype}; a code is bool (relu, leaky, abs "
                "sites) or integer (max sites), as cpa.codes returns")
    return list(c)


# --------------------------------------------------------------------------- matrices


def _window_onehot(n_in: int, n_out: int, k: int, stride: int, left_pad: int, dil: int,
                   device) -> torch.Tensor:
    """``P[o, j, i] = 1`` iff input ``i`` sits at tap ``j`` of window ``o``: ``[n_out, k,
    n_in]`` (taps falling in the zero padding have no input, so their row is zero)."""
    pos = (torch.arange(n_out, device=device)[:, None] * stride - left_pad
           + torch.arange(k, device=device)[None, :] * dil)
    return pos[:, :, None] == torch.arange(n_in, device=device)


def _out_len(n_in: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (n_in + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _conv_geometry(m: nn.Module, spatial: tuple[int, ...]):
    """Per spatial dimension: (n_in, n_out, k, stride, left_pad, dilation)."""
    dims = []
    for i, n_in in enumerate(spatial):
        k, s, d = m.kernel_size[i], m.stride[i], m.dilation[i]
        if m.padding == "valid":
            left, n_out = 0, _out_len(n_in, k, s, 0, d)
        elif m.padding == "same":
            left, n_out = d * (k - 1) // 2, n_in
        else:
            left = m.padding[i]
            n_out = _out_len(n_in, k, s, left, d)
        dims.append((n_in, n_out, k, s, left, d))
    return dims


def conv_matrix(conv: nn.Conv1d | nn.Conv2d, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The Toeplitz matrix of a convolution (no bias): ``[C_out*prod(out), C_in*prod(in)]``.

    ``in_shape = (C_in, L)`` or ``(C_in, H, W)``. Built from the weights by index
    arithmetic: tap ``(i, j)`` of output ``(o_h, o_w)`` reads input
    ``(o_h*s_h - p_h + i*d_h, o_w*s_w - p_w + j*d_w)``, or the zero padding.
    """
    return _toeplitz(conv, _conv_args(conv, in_shape, "cpa.conv_matrix"))


def _toeplitz(conv: nn.Conv1d | nn.Conv2d, in_shape: tuple[int, ...]) -> torch.Tensor:
    C_in, *spatial = in_shape
    dev = conv.weight.device
    dims = _conv_geometry(conv, tuple(spatial))
    P = [_window_onehot(n, o, k, s, p, d, dev).to(conv.weight.dtype)
         for n, o, k, s, p, d in dims]
    W = conv.weight
    if len(spatial) == 1:
        T = torch.einsum("oqj,bjw->obqw", W, P[0])
    else:
        T = torch.einsum("oqij,aih,bjw->oabqhw", W, P[0], P[1])
    n_out = W.shape[0] * torch.Size([p.shape[0] for p in P]).numel()
    return T.reshape(n_out, C_in * torch.Size(spatial).numel())


def _conv_args(conv, in_shape, fn: str) -> tuple[int, ...]:
    """Check ``conv`` (a supported, finite ``Conv1d``/``Conv2d``) and that ``in_shape`` is an
    input shape ``(C_in, *spatial)`` it runs on; return ``in_shape`` as a tuple."""
    if type(conv) not in (nn.Conv1d, nn.Conv2d):
        raise InputTypeError(f"{fn}: conv must be a torch.nn.Conv1d or Conv2d, got "
                             f"{type(conv).__name__}")
    validation.network(conv, "conv", fn=fn)
    try:
        _check_leaf("conv", conv)
    except NotCPAError as err:
        raise NotCPAError(f"{fn}: {err}") from None
    n = len(conv.kernel_size)
    want = "(C_in, L)" if n == 1 else "(C_in, H, W)"
    if not isinstance(in_shape, tuple | list | torch.Size) or len(in_shape) != n + 1:
        raise InputError(f"{fn}: in_shape must be {want} for a {type(conv).__name__}, got "
                         f"{in_shape!r}")
    shape = tuple(validation.integer(v, "in_shape", fn=fn, lo=1) for v in in_shape)
    if shape[0] != conv.in_channels:
        raise InputError(f"{fn}: in_shape {shape} has {shape[0]} channels but the "
                         f"convolution takes {conv.in_channels}")
    for _, n_out, *_ in _conv_geometry(conv, shape[1:]):
        if n_out < 1:
            raise InputError(f"{fn}: in_shape {shape} is too small for the convolution "
                             f"(kernel {tuple(conv.kernel_size)}, dilation "
                             f"{tuple(conv.dilation)}, padding {conv.padding}): no output")
    return shape


def _avgpool_matrix(m: nn.Module, spatial: tuple[int, ...], dtype, device) -> torch.Tensor:
    """Averaging matrix of one channel: ``[prod(out), prod(in)]``."""
    n = len(spatial)
    ks, ss, ps = _pair(m.kernel_size, n), _pair(m.stride or m.kernel_size, n), _pair(m.padding, n)
    P = [_window_onehot(s, _out_len(s, k, st, p, 1), k, st, p, 1, device).to(dtype)
         for s, k, st, p in zip(spatial, ks, ss, ps, strict=True)]
    if n == 1:
        S = P[0].sum(1)                                   # [Lo, L]
    else:
        S = torch.einsum("aih,bjw->abhw", P[0], P[1]).reshape(
            P[0].shape[0] * P[1].shape[0], -1)            # [Ho*Wo, H*W]
    override = getattr(m, "divisor_override", None)
    if override:
        return S / override
    if m.count_include_pad:
        return S / torch.Size(ks).numel()
    return S / S.sum(1, keepdim=True)


def _adaptive_matrix(n_in: int, n_out: int, dtype, device) -> torch.Tensor:
    """Adaptive average pooling along one dimension: ``[n_out, n_in]``; window ``o`` is
    ``[floor(o*n_in/n_out), ceil((o+1)*n_in/n_out))``."""
    o = torch.arange(n_out, device=device)
    start = (o * n_in) // n_out
    end = -((-(o + 1) * n_in) // n_out)
    i = torch.arange(n_in, device=device)
    inside = (i[None, :] >= start[:, None]) & (i[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


# --------------------------------------------------------------------------- product


def _walk(m: nn.Module, path: str, h: torch.Tensor, M: torch.Tensor, c: torch.Tensor):
    """Push the affine map ``x -> M x + c`` (``M [B, n, d]``, ``c [B, n]``) of the current
    activation ``h [B, *s]`` (``n = prod(s)``) through module ``m``."""
    t = type(m)
    B = h.shape[0]
    if t is nn.Sequential:
        # not named_children(): it skips a module that appears twice, forward() does not
        for name, child in m._modules.items():
            h, M, c = _walk(child, _join(path, name), h, M, c)
        return h, M, c
    if t is ResidualBlock:
        hb, Mb, cb = _walk(m.body, _join(path, "body"), h, M, c)
        if hb.shape != h.shape:
            raise InputError(f"{_where(path, m)}: body maps shape {tuple(h.shape)} to "
                             f"{tuple(hb.shape)}")
        return h + hb, M + Mb, c + cb                     # (I + body) composed with (M, c)
    if t is DenseBlock:
        for i, layer in enumerate(m.layers):
            hl, Ml, cl = _walk(layer, _join(path, f"layers.{i}"), h, M, c)
            # channels are the outermost per-sample index: stacking [I; layer] stacks rows
            h, M, c = torch.cat([h, hl], 1), torch.cat([M, Ml], 1), torch.cat([c, cl], 1)
        return h, M, c

    out = m(h.clone() if getattr(m, "inplace", False) else h)
    if t is nn.Linear:
        W = m.weight                                      # [o, i] on the last dimension
        d = M.shape[-1]
        M = torch.einsum("oi,bsid->bsod", W, M.reshape(B, -1, W.shape[1], d)).reshape(B, -1, d)
        c = torch.einsum("oi,bsi->bso", W, c.reshape(B, -1, W.shape[1]))
        if m.bias is not None:
            c = c + m.bias
        c = c.reshape(B, -1)
    elif t in (nn.Conv1d, nn.Conv2d):
        T = _toeplitz(m, tuple(h.shape[1:]))              # [n_out, n_in]
        if T.shape[0] != out[0].numel():
            raise AssertionError(f"{_where(path, m)}: Toeplitz matrix has {T.shape[0]} rows "
                                 f"for an output of shape {tuple(out.shape)}")
        M, c = T @ M, c @ T.T
        if m.bias is not None:
            c = c + m.bias.repeat_interleave(out[0, 0].numel())
    elif t in _BATCHNORM:
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        shift = -m.running_mean * scale
        if m.bias is not None:
            shift = shift + m.bias
        per = h[0, 0].numel()                             # positions per channel
        scale, shift = scale.repeat_interleave(per), shift.repeat_interleave(per)
        M, c = scale[:, None] * M, scale * c + shift
    elif t in (nn.ReLU, nn.LeakyReLU, Abs):
        pre = h.reshape(B, -1)
        on = _code(_NONLINEAR[t], pre)
        off = {nn.ReLU: 0.0, nn.LeakyReLU: getattr(m, "negative_slope", 0.0), Abs: -1.0}[t]
        q = torch.where(on, torch.ones((), dtype=h.dtype, device=h.device),
                        torch.full((), off, dtype=h.dtype, device=h.device))
        M, c = q[:, :, None] * M, q * c                   # diagonal Q_omega
    elif t in (Maxout, nn.MaxPool1d, nn.MaxPool2d):
        winner = _code("max", _groups(m, h, path))       # [B, G]
        index = torch.arange(h[0].numel(), device=h.device).reshape(1, *h.shape[1:])
        cand = _groups(m, index, path)[0]                 # [G, k] flat input indices
        chosen = cand[torch.arange(cand.shape[0], device=h.device)[None, :], winner]  # [B, G]
        # selection matrix S[b, g, chosen[b, g]] = 1, applied as a row gather
        M = M.gather(1, chosen[:, :, None].expand(-1, -1, M.shape[-1]))
        c = c.gather(1, chosen)
    elif t in (nn.AvgPool1d, nn.AvgPool2d):
        S = _avgpool_matrix(m, tuple(h.shape[2:]), h.dtype, h.device)
        M = torch.einsum("lk,bckd->bcld", S, M.reshape(B, h.shape[1], -1, M.shape[-1]))
        M = M.reshape(B, -1, M.shape[-1])
        c = torch.einsum("lk,bck->bcl", S, c.reshape(B, h.shape[1], -1)).reshape(B, -1)
    elif t is nn.AdaptiveAvgPool2d:
        Ho, Wo = out.shape[-2:]
        H, W = h.shape[-2:]
        S = torch.kron(_adaptive_matrix(H, Ho, h.dtype, h.device),
                       _adaptive_matrix(W, Wo, h.dtype, h.device))
        M = torch.einsum("lk,bckd->bcld", S, M.reshape(B, -1, H * W, M.shape[-1]))
        M = M.reshape(B, -1, M.shape[-1])
        c = torch.einsum("lk,bck->bcl", S, c.reshape(B, -1, H * W)).reshape(B, -1)
    elif t in _RESHAPE or t in _DROPOUT:
        pass                                              # same per-sample row-major order
    else:
        validate(m)                                       # raises NotCPAError with the reason
        raise NotCPAError(f"{_where(path, m)} is not supported by the product method")
    if out.shape[0] != B or out[0].numel() != M.shape[1]:
        raise InputError(f"{_where(path, m)} maps {tuple(h.shape)} to {tuple(out.shape)}, "
                         f"which the spline view cannot follow per sample")
    return out, M, c


def _affine_product(net: nn.Module, x: torch.Tensor, fn: str):
    B = x.shape[0]
    d = x[0].numel()
    M = torch.eye(d, dtype=x.dtype, device=x.device).expand(B, d, d)
    c = torch.zeros(B, d, dtype=x.dtype, device=x.device)
    try:
        y, M, c = _walk(net, "", _own(x), M, c)
    except NotCPAError:
        raise
    except InputError as err:                             # a layer that x's shape does not fit
        raise InputError(f"{fn}: x of shape {tuple(x.shape)}: {err}") from err
    except RuntimeError as err:
        raise InputError(
            f"{fn}: the network cannot run on x, an input of shape {tuple(x.shape)} "
            f"[B, *in_shape]: {err}"
        ) from err
    _finite_result(y, "net(x)", fn)
    return M, c


def _affine_jacobian(net: nn.Module, x: torch.Tensor, fn: str):
    """``A = df/dx`` by reverse-mode autodiff, ``b = f(x) - A x``.

    Differentiates the batch-summed output: since a validated network treats every sample
    on its own, ``d(sum_b f(x_b))/dx_b = df/dx (x_b)``.
    """
    B = x.shape[0]
    d = x[0].numel()
    y = _forward(net, _own(x), fn=fn).reshape(B, -1)
    _finite_result(y, "net(x)", fn)
    # z is a leaf of jacrev's graph: the network gets a copy (an in-place first module)
    J = torch.func.jacrev(lambda z: net(_own(z)).reshape(B, -1).sum(0))(x)  # [d_out, B, *in]
    A = J.reshape(y.shape[1], B, d).transpose(0, 1)
    b = y - (A @ x.reshape(B, d, 1)).squeeze(-1)
    _finite_result(A, "the Jacobian A", fn)
    _finite_result(b, "the offset b = f(x) - A x", fn)
    return A, b


METHODS = ("product", "jacobian")


def affine_map(net: nn.Module, x: torch.Tensor, method: str = "product", *,
               strict: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine piece of ``net`` at each input: ``A [B, d_out, d_in]``, ``b [B, d_out]``.

    Exact: ``net(x').reshape(B, -1) = A x'.reshape(B, -1) + b`` for every ``x'`` with the
    activation code of ``x`` (in particular at ``x``). ``d_in = prod(in_shape)`` with the
    input flattened row-major per sample (see the module docstring), likewise ``d_out``.
    Computed on ``x``'s device in ``x``'s dtype (which must be the network's).

    ``method="product"`` composes explicit matrices layer by layer: ``Linear`` ``W``,
    convolution as its Toeplitz matrix (:func:`conv_matrix`), batch norm as a diagonal
    scale and shift, ReLU / leaky ReLU / abs as the diagonal ``Q_omega`` of the code (1 or
    0, 1 or the slope, +1 or -1), max pooling and maxout as the selection of the winners,
    average pooling as an averaging matrix, a residual block as ``I + body``, a dense
    block as the stack ``[I; layer]``; the offset follows as ``b <- L b + c``.
    ``method="jacobian"`` uses :func:`torch.func.jacrev` and ``b = f(x) - A x``.

    ``A`` and ``b`` carry autograd history to the parameters (both methods work inside
    ``torch.no_grad()``, which saves memory when that history is not needed).

    ``strict=False`` skips :func:`validate` (the jacobian method then runs on any
    differentiable network: the negative controls of the book use it on smooth ones); the
    network must still have finite parameters and no batch norm or dropout in training mode.

    Raises an :class:`~dltheory.errors.InputError` for an empty or non-finite ``x`` and for
    a forward pass that overflows.
    """
    return _affine_map(net, x, method, strict, "cpa.affine_map")


def _affine_map(net, x, method, strict, fn: str):
    validation.choice(method, "method", METHODS, fn=fn)
    if validation.boolean(strict, "strict", fn=fn):
        validate(net, fn=fn)
    else:
        validation.network(net, "net", fn=fn)
    x = _input(net, x, "x", fn)
    if method == "product":
        return _affine_product(net, x, fn)
    return _affine_jacobian(net, x, fn)


def check_affine(net: nn.Module, x: torch.Tensor, x_prime: torch.Tensor, *,
                 method: str = "product", strict: bool = True) -> torch.Tensor:
    """Largest relative error of the affine piece at ``x`` as a predictor at ``x_prime``.

    ``max_b |f(x'_b) - (A_b x'_b + b_b)| / |f(x'_b)|`` (Euclidean norms over outputs),
    as a 0-d tensor. ``x`` is ``[B, *in]`` and ``x_prime`` ``[B, *in]``, or ``x`` is
    ``[1, *in]`` and ``x_prime`` any batch of points compared with that one piece. It is
    at rounding level when ``x'`` shares the code of ``x``, and large across a boundary
    (or for a network that is not CPA).
    """
    fn = "cpa.check_affine"
    A, b = _affine_map(net, x, method, strict, fn)
    x_prime = _input(net, x_prime, "x_prime", fn)
    if x_prime.shape[1:] != x.shape[1:] or x.shape[0] not in (1, x_prime.shape[0]):
        raise InputError(
            f"{fn}: x_prime of shape {tuple(x_prime.shape)} does not pair with x of shape "
            f"{tuple(x.shape)}: same per-sample shape, and the same batch or a batch of 1 in x"
        )
    Bp = x_prime.shape[0]
    y = _forward(net, _own(x_prime), name="x_prime", fn=fn).reshape(Bp, -1)
    _finite_result(y, "net(x_prime)", fn)
    pred = (A @ x_prime.reshape(Bp, -1, 1)).squeeze(-1) + b
    # scale each row by a power of two (exact): the norms' squares neither overflow nor
    # underflow, and the ratio is unchanged
    m = torch.maximum(y.abs().amax(1, keepdim=True), pred.abs().amax(1, keepdim=True))
    scale = torch.ldexp(torch.ones_like(m), -torch.frexp(m).exponent)
    y, pred = y * scale, pred * scale
    tiny = torch.finfo(y.dtype).tiny
    err = (y - pred).norm(dim=1) / y.norm(dim=1).clamp_min(tiny)
    return err.max()

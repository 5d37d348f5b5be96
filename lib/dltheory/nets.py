"""Networks that are continuous piecewise-affine (CPA) functions of their input.

Every factory builds a plain ``torch.nn`` module from linear maps (``Linear``, ``Conv2d``,
batch norm in eval mode, average pooling) and CPA nonlinearities (ReLU, leaky ReLU,
absolute value, maxout, max pooling), so that :mod:`dltheory.cpa` can write it, on the
region of each input, as an exact affine map ``f(x) = A x + b``::

    >>> from dltheory import nets, cpa
    >>> net = nets.mlp([2, 16, 16, 1], act="leaky_relu", seed=0)
    >>> A, b = cpa.affine_map(net, torch.randn(5, 2, dtype=torch.float64))

Conventions shared by all factories:

* float64 by default (exactness checks run in float64), any ``dtype=`` on request;
* weights He/Kaiming-normal, ``N(0, 2/fan_in)``; biases ``N(0, bias_std**2)`` (zero by
  default). All randomness comes from a local ``torch.Generator`` seeded with ``seed``:
  building a network never reads or changes torch's global random state;
* the module is returned in **train mode**, as torch returns modules. The spline view
  needs fixed batch-norm statistics (and no dropout): call :func:`spline_eval` (or
  ``net.eval()``) before :func:`dltheory.cpa.affine_map`.

Activations are named ``"relu"``, ``"leaky_relu"`` (slope 0.1 unless told), ``"abs"`` and
``"maxout"`` (groups of ``k = 2`` unless told); see :func:`activation`. A factory also
accepts a zero-argument callable returning a module (``act=torch.nn.GELU``), which is how
chapters build the non-CPA networks of their negative controls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from . import validation
from .errors import InputError, InputTypeError

ACTIVATIONS = ("relu", "leaky_relu", "abs", "maxout")
POOLS = ("max", "avg", None)


# --------------------------------------------------------------------------- activations


class Abs(nn.Module):
    """Absolute value ``|x|``, elementwise: ``[B, *] -> [B, *]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.abs(x)


class Maxout(nn.Module):
    """Maxout over groups of ``k`` consecutive channels: ``[B, C*k, *S] -> [B, C, *S]``.

    Output channel ``c`` is the maximum of input channels ``c*k, ..., c*k + k - 1`` (at each
    spatial position of ``*S``; for a ``Linear`` layer ``*S`` is empty).
    """

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.k = validation.integer(k, "k", fn="nets.Maxout", lo=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] % self.k:
            raise InputError(
                f"Maxout(k={self.k}) needs an input [B, C*{self.k}, ...] whose channel count "
                f"is a multiple of {self.k}, got shape {tuple(x.shape)}"
            )
        B, ck, *S = x.shape
        return x.reshape(B, ck // self.k, self.k, *S).amax(dim=2)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def activation(name: str, *, negative_slope: float = 0.1, k: int = 2) -> nn.Module:
    """A new activation module by name.

    ``"relu"`` -> ``nn.ReLU()``; ``"leaky_relu"`` -> ``nn.LeakyReLU(negative_slope)``
    (``negative_slope`` a finite real); ``"abs"`` -> :class:`Abs`; ``"maxout"`` ->
    :class:`Maxout` ``(k)`` (``k >= 1`` an int, checked for every name).
    """
    return _activation(name, "name", "nets.activation", negative_slope, k)


def _activation(name, arg: str, fn: str, negative_slope: float = 0.1, k: int = 2) -> nn.Module:
    """:func:`activation`, with errors that name the caller's argument ``arg`` and ``fn``."""
    negative_slope = validation.real(negative_slope, "negative_slope", fn=fn)
    k = validation.integer(k, "maxout_k" if arg == "act" else "k", fn=fn, lo=1)
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "abs":
        return Abs()
    if name == "maxout":
        return Maxout(k)
    raise InputError(f"{fn}: {arg} is an unknown activation {name!r}; use one of "
                     f"{', '.join(ACTIVATIONS)}")


def _act_factory(act, maxout_k: int, fn: str) -> tuple[Callable[[], nn.Module], int]:
    """(a zero-argument factory of activation modules, the width multiplier it needs)."""
    if isinstance(act, str):
        _activation(act, "act", fn, k=maxout_k)  # check the name (and k) once, clearly
        return (lambda: activation(act, k=maxout_k)), (maxout_k if act == "maxout" else 1)
    if callable(act):
        probe = act()
        if not isinstance(probe, nn.Module):
            raise InputTypeError(f"{fn}: act must build an nn.Module, got "
                                 f"{type(probe).__name__}")
        return act, (probe.k if isinstance(probe, Maxout) else 1)
    raise InputTypeError(
        f"{fn}: act must be one of {', '.join(ACTIVATIONS)} or a callable returning a "
        f"module, got {act!r}"
    )


# --------------------------------------------------------------------------- blocks


class ResidualBlock(nn.Module):
    """``x + body(x)``: ``[B, C, *S] -> [B, C, *S]``; ``body`` must keep the shape.

    The factories use ``body = conv1 -> [bn1] -> act -> conv2 -> [bn2]``, so the block
    computes ``x + conv2(act(conv1(x)))``.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if y.shape != x.shape:
            raise InputError(
                f"ResidualBlock: body maps shape {tuple(x.shape)} to {tuple(y.shape)}; a "
                "residual block needs the same shape in and out"
            )
        return x + y


class DenseBlock(nn.Module):
    """Dense connectivity: for each layer, ``h <- cat([h, layer(h)], dim=1)``.

    ``[B, C, *S] -> [B, C + sum_l g_l, *S]`` where layer ``l`` maps
    ``[B, C + g_1 + ... + g_{l-1}, *S]`` to ``[B, g_l, *S]``. The factories use
    ``layer = conv -> [bn] -> act``, so each layer computes ``act(conv(h))``.
    """

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            y = layer(h)
            if y.ndim != h.ndim or y.shape[0] != h.shape[0] or y.shape[2:] != h.shape[2:]:
                raise InputError(
                    f"DenseBlock: layer {i} maps shape {tuple(h.shape)} to {tuple(y.shape)}; "
                    "it must keep the batch and spatial dimensions to be concatenated"
                )
            h = torch.cat([h, y], dim=1)
        return h


# --------------------------------------------------------------------------- init helpers


def _widths(values, name: str, fn: str) -> list[int]:
    """``values`` (a sequence of ints >= 1) as a list; ``name[i]`` names a bad entry."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InputTypeError(f"{fn}: {name} must be a sequence of positive ints, got "
                             f"{values!r}")
    return [validation.integer(w, f"{name}[{i}]", fn=fn, lo=1) for i, w in enumerate(values)]


def _init_(weight: nn.Parameter, bias: nn.Parameter | None, fan_in: int,
           gen: torch.Generator, bias_std: float) -> None:
    """He-normal weight ``N(0, 2/fan_in)`` and ``N(0, bias_std^2)`` bias, from ``gen``."""
    with torch.no_grad():
        w = torch.randn(weight.shape, generator=gen, dtype=torch.float64)
        weight.copy_(w * math.sqrt(2.0 / fan_in))
        if bias is not None:
            bias.copy_(torch.randn(bias.shape, generator=gen, dtype=torch.float64) * bias_std)


class _TooLarge(Exception):
    """A layer whose allocation failed: its size overflows int64 or the memory."""


def _allocate(make: Callable[[], nn.Module], shape: tuple) -> nn.Module:
    """``make()``, with a failed allocation turned into :class:`_TooLarge` (``shape``)."""
    try:
        return make()
    except (RuntimeError, TypeError, OverflowError, MemoryError) as err:
        raise _TooLarge(shape) from err


def _sized(fn: str, names: str):
    """Decorate a factory: a layer too large to allocate is an ``InputError`` naming the
    size arguments ``names``."""
    def wrap(factory):
        @functools.wraps(factory)
        def build(*args, **kwargs):
            try:
                return factory(*args, **kwargs)
            except _TooLarge as err:
                why = str(err.__cause__).splitlines()[0] if str(err.__cause__) else ""
                raise InputError(f"{fn}: {names} give a layer of shape {err.args[0]} that "
                                 f"cannot be allocated ({why}); pass smaller sizes"
                                 ) from err.__cause__
        return build
    return wrap


def _linear(d_in: int, d_out: int, *, bias: bool, gen, dtype, bias_std: float) -> nn.Linear:
    def make():
        # skip_init builds on the meta device: no draw from torch's global generator.
        layer = nn.utils.skip_init(nn.Linear, d_in, d_out, bias=bias, dtype=dtype)
        _init_(layer.weight, layer.bias, d_in, gen, bias_std)
        return layer
    return _allocate(make, (d_out, d_in))


def _conv(c_in: int, c_out: int, *, gen, dtype, bias_std: float) -> nn.Conv2d:
    def make():
        layer = nn.utils.skip_init(nn.Conv2d, c_in, c_out, 3, padding=1, dtype=dtype)
        _init_(layer.weight, layer.bias, c_in * 9, gen, bias_std)
        return layer
    return _allocate(make, (c_out, c_in, 3, 3))


def _batchnorm(cls, n: int, dtype) -> nn.Module:
    def make():
        layer = nn.utils.skip_init(cls, n, dtype=dtype)
        layer.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1
        return layer
    return _allocate(make, (n,))


def _setup(act, maxout_k: int, seed, dtype, bias_std, fn: str, **flags):
    """The checked arguments every factory shares: the activation factory and its rank ``k``,
    a local generator seeded with ``seed``, the dtype and the bias standard deviation; the
    boolean ``flags`` (``bias=``, ``batchnorm=``) are checked too."""
    for name, value in flags.items():
        validation.boolean(value, name, fn=fn)
    maxout_k = validation.integer(maxout_k, "maxout_k", fn=fn, lo=1)
    seed = validation.integer(seed, "seed", fn=fn, lo=0, hi=2**63 - 1)
    dtype = validation.floating_dtype(dtype, fn=fn)
    bias_std = validation.real(bias_std, "bias_std", fn=fn, lo=0)
    make_act, k = _act_factory(act, maxout_k, fn)
    return make_act, k, torch.Generator().manual_seed(seed), dtype, bias_std


def _check_in_shape(in_shape, fn: str) -> tuple[int, int, int]:
    if isinstance(in_shape, str | bytes) or not isinstance(in_shape, Iterable):
        raise InputTypeError(f"{fn}: in_shape must be (C, H, W) of positive ints, got "
                             f"{in_shape!r}")
    shape = tuple(in_shape)
    if len(shape) != 3:
        raise InputError(f"{fn}: in_shape must be (C, H, W) of positive ints, got "
                         f"{in_shape!r}")
    return tuple(validation.integer(s, f"in_shape[{i}]", fn=fn, lo=1)
                 for i, s in enumerate(shape))


# --------------------------------------------------------------------------- factories


@_sized("nets.mlp", "widths")
def mlp(
    widths: Sequence[int],
    act="relu",
    *,
    bias: bool = True,
    batchnorm: bool = False,
    maxout_k: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bias_std: float = 0.0,
) -> nn.Sequential:
    """A fully connected network ``[B, d_in] -> [B, d_out]``.

    ``widths = [d_in, h_1, ..., h_L, d_out]``. Each hidden layer is
    ``Linear -> [BatchNorm1d] -> act``; the last layer is a ``Linear`` with no activation.
    With ``act="maxout"`` a hidden layer of width ``h`` is ``Linear(., h*k) -> [BN] ->
    Maxout(k)``, so ``h`` is the width after the maxout.
    """
    fn = "nets.mlp"
    widths = _widths(widths, "widths", fn)
    if len(widths) < 2:
        raise InputError(f"{fn}: widths needs at least [d_in, d_out], got {widths!r}")
    make_act, k, gen, dtype, bias_std = _setup(act, maxout_k, seed, dtype, bias_std, fn,
                                               bias=bias, batchnorm=batchnorm)
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        last = i == len(widths) - 2
        m = 1 if last else k
        layers.append(_linear(d_in, d_out * m, bias=bias, gen=gen, dtype=dtype,
                              bias_std=bias_std))
        if not last:
            if batchnorm:
                layers.append(_batchnorm(nn.BatchNorm1d, d_out * m, dtype))
            layers.append(make_act())
    return nn.Sequential(*layers)


@_sized("nets.convnet", "in_shape, channels or n_out")
def convnet(
    in_shape: Sequence[int] = (1, 8, 8),
    channels: Sequence[int] = (8, 16),
    n_out: int = 10,
    act="relu",
    *,
    pool: str | None = "max",
    batchnorm: bool = False,
    maxout_k: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bias_std: float = 0.0,
) -> nn.Sequential:
    """A convolutional network ``[B, C, H, W] -> [B, n_out]``.

    Each stage is ``Conv2d(3x3, padding 1) -> [BatchNorm2d] -> act -> [pool 2x2]``
    (``pool`` is ``"max"``, ``"avg"`` or ``None``); then ``Flatten -> Linear``. Pooling
    halves H and W (rounding down).
    """
    fn = "nets.convnet"
    C, H, W = _check_in_shape(in_shape, fn)
    validation.choice(pool, "pool", POOLS, fn=fn)
    channels = _widths(channels, "channels", fn)
    n_out = validation.integer(n_out, "n_out", fn=fn, lo=1)
    make_act, k, gen, dtype, bias_std = _setup(act, maxout_k, seed, dtype, bias_std, fn,
                                               batchnorm=batchnorm)
    layers: list[nn.Module] = []
    c_in = C
    for stage, c in enumerate(channels):
        layers.append(_conv(c_in, c * k, gen=gen, dtype=dtype, bias_std=bias_std))
        if batchnorm:
            layers.append(_batchnorm(nn.BatchNorm2d, c * k, dtype))
        layers.append(make_act())
        if pool is not None:
            if H < 2 or W < 2:
                raise InputError(
                    f"{fn}: a 2x2 pool needs H, W >= 2, but the input {tuple(in_shape)} "
                    f"shrinks to {H}x{W} before stage {stage}; use fewer stages or "
                    "pool=None"
                )
            layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            H, W = H // 2, W // 2
        c_in = c
    layers += [nn.Flatten(),
               _linear(c_in * H * W, n_out, bias=True, gen=gen, dtype=dtype, bias_std=bias_std)]
    return nn.Sequential(*layers)


def _stem(C: int, width: int, k: int, make_act, batchnorm: bool, gen, dtype, bias_std):
    layers = [_conv(C, width * k, gen=gen, dtype=dtype, bias_std=bias_std)]
    if batchnorm:
        layers.append(_batchnorm(nn.BatchNorm2d, width * k, dtype))
    layers.append(make_act())
    return layers


@_sized("nets.resnet", "in_shape, width or n_out")
def resnet(
    in_shape: Sequence[int] = (1, 8, 8),
    width: int = 8,
    blocks: int = 2,
    n_out: int = 10,
    act="relu",
    *,
    batchnorm: bool = False,
    maxout_k: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bias_std: float = 0.0,
) -> nn.Sequential:
    """A residual network ``[B, C, H, W] -> [B, n_out]``.

    ``stem = Conv2d(C, width) -> [BN] -> act``, then ``blocks`` :class:`ResidualBlock`
    computing ``x + conv2(act(conv1(x)))`` (3x3 convolutions, padding 1, with batch norm
    after each convolution when ``batchnorm``), then ``Flatten -> Linear``.
    """
    fn = "nets.resnet"
    C, H, W = _check_in_shape(in_shape, fn)
    width = validation.integer(width, "width", fn=fn, lo=1)
    n_out = validation.integer(n_out, "n_out", fn=fn, lo=1)
    blocks = validation.integer(blocks, "blocks", fn=fn, lo=0)
    make_act, k, gen, dtype, bias_std = _setup(act, maxout_k, seed, dtype, bias_std, fn,
                                               batchnorm=batchnorm)
    layers = _stem(C, width, k, make_act, batchnorm, gen, dtype, bias_std)
    for _ in range(blocks):
        body = [_conv(width, width * k, gen=gen, dtype=dtype, bias_std=bias_std)]
        if batchnorm:
            body.append(_batchnorm(nn.BatchNorm2d, width * k, dtype))
        body += [make_act(), _conv(width, width, gen=gen, dtype=dtype, bias_std=bias_std)]
        if batchnorm:
            body.append(_batchnorm(nn.BatchNorm2d, width, dtype))
        layers.append(ResidualBlock(nn.Sequential(*body)))
    layers += [nn.Flatten(),
               _linear(width * H * W, n_out, bias=True, gen=gen, dtype=dtype, bias_std=bias_std)]
    return nn.Sequential(*layers)


@_sized("nets.densenet", "in_shape, growth, layers, width or n_out")
def densenet(
    in_shape: Sequence[int] = (1, 8, 8),
    growth: int = 4,
    layers: int = 3,
    n_out: int = 10,
    act="relu",
    *,
    width: int = 8,
    batchnorm: bool = False,
    maxout_k: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bias_std: float = 0.0,
) -> nn.Sequential:
    """A densely connected network ``[B, C, H, W] -> [B, n_out]``.

    ``stem = Conv2d(C, width) -> [BN] -> act``, then one :class:`DenseBlock` of ``layers``
    layers, each ``act([BN](conv3x3(h)))`` with ``growth`` channels concatenated to ``h``
    (``width + layers*growth`` channels at the end), then ``Flatten -> Linear``.
    """
    fn = "nets.densenet"
    C, H, W = _check_in_shape(in_shape, fn)
    growth = validation.integer(growth, "growth", fn=fn, lo=1)
    width = validation.integer(width, "width", fn=fn, lo=1)
    n_out = validation.integer(n_out, "n_out", fn=fn, lo=1)
    layers = validation.integer(layers, "layers", fn=fn, lo=0)
    make_act, k, gen, dtype, bias_std = _setup(act, maxout_k, seed, dtype, bias_std, fn,
                                               batchnorm=batchnorm)
    stem = _stem(C, width, k, make_act, batchnorm, gen, dtype, bias_std)
    dense = []
    for i in range(layers):
        layer = [_conv(width + i * growth, growth * k, gen=gen, dtype=dtype, bias_std=bias_std)]
        if batchnorm:
            layer.append(_batchnorm(nn.BatchNorm2d, growth * k, dtype))
        layer.append(make_act())
        dense.append(nn.Sequential(*layer))
    c_out = width + layers * growth
    return nn.Sequential(
        *stem,
        DenseBlock(dense),
        nn.Flatten(),
        _linear(c_out * H * W, n_out, bias=True, gen=gen, dtype=dtype, bias_std=bias_std),
    )


def spline_eval(net: nn.Module) -> nn.Module:
    """Put ``net`` in eval mode (fixed batch-norm statistics, no dropout) and return it.

    In eval mode batch norm is a fixed per-channel affine map, so the network is a CPA
    function of each input on its own, which is what :mod:`dltheory.cpa` analyses. A
    network with a NaN or inf parameter or buffer is refused (it has no spline view).
    """
    validation.network(net, "net", fn="nets.spline_eval", eval_only=False)
    return net.eval()

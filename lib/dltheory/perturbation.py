"""Singular-value perturbation bounds: why skip connections condition a layer.

The local linear representation of a layer of a CPA network at an input ``x`` is a
product of the activation code's diagonal ``D`` and an affine map (Riedi, Balestriero and
Baraniuk 2023): ``D W`` for a plain (ConvNet) layer, ``D (eps I + W)`` for a layer with a
skip connection (``eps = 1``: ResNet), ``[I; D W]`` for a dense (DenseNet) layer. This
module holds, as functions of tensors, the bounds that say how the singular values of
these matrices move:

* :func:`weyl_interval` - additive (Weyl): ``|s_i(A + E) - s_i(A)| <= ||E||_2``; hence
  :func:`skip_interval` (every singular value of ``eps I + W`` lies in
  ``[eps - ||W||, eps + ||W||]``) and :func:`skip_condition_bound`
  (``kappa(eps I + W) <= (eps + ||W||) / (eps - ||W||)`` when ``||W|| < eps``);
* :func:`multiplicative_interval` - a diagonal ``D`` with ``|d_j|`` in ``[alpha, 1]``
  (leaky ReLU, absolute value): ``alpha s_i(A) <= s_i(D A) <= s_i(A)``; hence
  :func:`diagonal_condition_bound` (``kappa(D A) <= kappa(A) / alpha``);
* :func:`interlacing_interval` - a 0/1 diagonal (ReLU) deleting ``k`` rows:
  ``s_{i+k}(A) <= s_i(D A) <= s_i(A)``;
* :func:`concat_singular_values` - exact for a dense layer: the singular values of
  ``[I; B]`` are ``sqrt(1 + s_i(B)^2)`` (and 1), so ``kappa([I; B]) <= sqrt(1 + ||B||^2)``;
* random matrices: :func:`quarter_circle_density` / :func:`quarter_circle_cdf`, the
  limiting law of the singular values of an ``n x n`` matrix with ``N(0, sigma^2/n)``
  entries, supported on ``[0, 2 sigma]``; :func:`gaussian_skip_condition_limit` (Weyl's
  limit bound, ``2 sigma < eps`` only) and the exact limits :func:`gaussian_skip_edges`,
  :func:`gaussian_skip_condition` of the extreme singular values and condition number of
  ``eps I + W`` (finite exactly when ``sigma < eps``).

Plus the batched spectra the checks need - :func:`singular_values`,
:func:`spectral_norm`, :func:`condition_numbers` (``[..., m, n]`` batches, any device) -
the local linear representations :func:`activation_diagonal` and :func:`local_linear`,
and :func:`range_condition_number`, the condition number of a positive semi-definite
operator on its range from matrix-free products (Lanczos from a start vector in the
range), e.g. of a layer's loss Hessian (:meth:`dltheory.landscape.Quadratic.hvp`);
:func:`layer_hessian_eigvalsh` / :func:`layer_hessian_condition` get the non-zero
spectrum of that Hessian ``H = 2 s M^T M`` from the smaller Gram matrix of its factor
``M [N k, P]`` (``[N k, N k]`` when ``N k < P``), never forming ``H``.

Every function validates its input with :mod:`dltheory.validation` and raises
:class:`dltheory.errors.InputError` (a ``ValueError``) or, for a wrong type or dtype,
:class:`~dltheory.errors.InputTypeError` (a ``TypeError``), naming the function, the
argument and the problem: non-square matrices where ``eps I + W`` needs a square one,
NaN/inf, float16, ``alpha`` outside ``[0, 1]``, negative norms or ``eps``, mismatched
shapes. Singular values are in
descending order, as :func:`torch.linalg.svdvals` returns them.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from . import validation
from .errors import InputError, InputTypeError

__all__ = [
    "ARCHS", "ACTIVATIONS", "singular_values", "spectral_norm", "condition_numbers",
    "weyl_interval", "skip_interval", "skip_condition_bound", "multiplicative_interval",
    "diagonal_condition_bound", "interlacing_interval", "concat_singular_values",
    "quarter_circle_density", "quarter_circle_cdf", "gaussian_skip_condition_limit",
    "gaussian_skip_edges", "gaussian_skip_condition",
    "activation_diagonal",
    "local_linear", "range_condition_number", "layer_hessian_factor", "layer_hessian_eigvalsh",
    "layer_hessian_condition",
]

ARCHS = ("convnet", "resnet", "densenet")
"""The layer kinds of :func:`local_linear`: ``D W``, ``D (eps I + W)``, ``[I; D W]``."""
ACTIVATIONS = ("relu", "leaky_relu", "abs")
"""The activations of :func:`activation_diagonal`."""


# ----------------------------------------------------------------------------- checks
#
# Tensors, numbers and integers are checked by :mod:`dltheory.validation`; what is left here
# is particular to this module: square matrices, singular values (non-negative,
# descending), and a number-or-batch argument (``eps``, ``alpha``, ...) in a range.


def _matrix(A, name: str, fn: str, *, square: bool = False) -> Tensor:
    A = validation.tensor(A, name, fn=fn, min_ndim=2,
                          layout="[..., m, n] (a matrix or a batch of matrices)")
    if square and A.shape[-1] != A.shape[-2]:
        raise InputError(f"{fn}: {name} must be square (eps I + {name} needs n x n "
                         f"matrices), got shape {tuple(A.shape)} ({A.shape[-2]} x "
                         f"{A.shape[-1]})")
    return A


def _span(lo: float, hi: float | None, lo_open: bool) -> str:
    left = "(" if lo_open else "["
    return f"{left}{lo:g}, {hi:g}]" if hi is not None else (
        f"> {lo:g}" if lo_open else f">= {lo:g}")


def _scalar_or_batch(x, name: str, like: Tensor, fn: str, *, lo: float = 0.0,
                     hi: float | None = None, lo_open: bool = False) -> Tensor:
    """A number or a tensor (broadcastable to a batch) in ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``), as a tensor of ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        if x.dtype == torch.bool:
            raise InputTypeError(f"{fn}: {name} must be a number or a real tensor, got a "
                                 "bool tensor")
        x = validation.tensor(x, name, fn=fn, floating=x.is_floating_point() or x.is_complex())
        t = x.to(dtype=like.dtype, device=like.device)
        bad = t <= lo if lo_open else t < lo
        if hi is not None:
            bad = bad | (t > hi)
        if bool(bad.any()):
            raise InputError(f"{fn}: {name} must lie in {_span(lo, hi, lo_open)}, got "
                             f"{t[bad].reshape(-1)[0].item():g}")
    else:
        v = validation.real(x, name, fn=fn, lo=lo, hi=hi, lo_open=lo_open)
        t = torch.tensor(v, dtype=like.dtype, device=like.device)
    validation.finite_output(t, name, fn=fn, cause=f"it overflows {like.dtype}",
                             fix="pass a smaller value or use float64")
    return t


def _sv(s_A, name: str, fn: str) -> Tensor:
    s = validation.tensor(s_A, name, fn=fn, min_ndim=1, layout="[..., k]")
    if (s < 0).any():
        raise InputError(f"{fn}: {name} holds singular values, which are >= 0; got a "
                         "negative entry")
    if s.shape[-1] > 1 and (s[..., 1:] > s[..., :-1]).any():
        raise InputError(f"{fn}: {name} must be in descending order (as "
                         "torch.linalg.svdvals returns them)")
    return s


def _batch_of(value: Tensor, s: Tensor, name: str, fn: str) -> Tensor:
    """``value`` ``[]`` or ``[...]`` (the batch of ``s [..., k]``) as ``[..., 1]``."""
    try:
        return torch.broadcast_to(value, s.shape[:-1])[..., None]
    except RuntimeError:
        raise InputError(f"{fn}: {name} of shape {tuple(value.shape)} does not broadcast to "
                         f"the batch {tuple(s.shape[:-1])} of singular values "
                         f"{tuple(s.shape)}") from None


# ----------------------------------------------------------------------------- spectra


def singular_values(A: Tensor) -> Tensor:
    """Singular values of a batch of matrices, descending: ``[..., m, n] -> [..., min(m, n)]``.

    One batched call of :func:`torch.linalg.svdvals` on ``A``'s device.
    """
    return torch.linalg.svdvals(_matrix(A, "A", "perturbation.singular_values"))


def spectral_norm(A: Tensor) -> Tensor:
    """``||A||_2``, the largest singular value: ``[..., m, n] -> [...]``."""
    return torch.linalg.matrix_norm(_matrix(A, "A", "perturbation.spectral_norm"), ord=2)


def condition_numbers(A: Tensor, *, rtol: float | None = None) -> Tensor:
    """``s_max / s_min`` of each matrix: ``[..., m, n] -> [...]``.

    ``rtol=None``: the smallest of the ``min(m, n)`` singular values (``inf`` when it is
    0). With ``rtol``: the smallest singular value above ``rtol * s_max`` - the condition
    number on the range of ``A`` (``inf`` for a zero matrix); ``rtol`` in ``[0, 1]``.
    """
    fn = "perturbation.condition_numbers"
    A = _matrix(A, "A", fn)
    if rtol is not None:
        rtol = validation.real(rtol, "rtol", fn=fn, lo=0.0, hi=1.0)
    s = torch.linalg.svdvals(A)
    top = s[..., 0]
    if rtol is None:
        low = s[..., -1]
    else:
        rtol = float(torch.tensor(rtol, dtype=s.dtype))         # rtol in A's precision
        keep = s > rtol * top[..., None]
        low = torch.where(keep, s, torch.full_like(s, math.inf)).amin(-1)
    out = top / low
    return torch.where((low > 0) & (top > 0), out, torch.full_like(out, math.inf))


# ----------------------------------------------------------------------------- additive


def weyl_interval(s_A: Tensor, e_norm) -> tuple[Tensor, Tensor]:
    """Weyl's bound: where the singular values of ``A + E`` lie, from those of ``A``.

    ``s_A [..., k]`` (descending), ``e_norm`` ``||E||_2`` (a number or ``[...]``) ->
    ``(lo, hi)`` ``[..., k]`` with ``lo_i = max(s_i(A) - ||E||, 0)``,
    ``hi_i = s_i(A) + ||E||``: ``lo_i <= s_i(A + E) <= hi_i`` for every ``E`` of that
    norm (same shape as ``A``).
    """
    fn = "perturbation.weyl_interval"
    s = _sv(s_A, "s_A", fn)
    e = _batch_of(_scalar_or_batch(e_norm, "e_norm (a norm)", s, fn), s, "e_norm", fn)
    return (s - e).clamp_min(0), s + e


def skip_interval(W: Tensor, eps=1.0) -> tuple[Tensor, Tensor]:
    """Every singular value of ``eps I + W`` lies in ``[max(eps - ||W||, 0), eps + ||W||]``.

    ``W [..., n, n]`` (square), ``eps >= 0`` (a number or ``[...]``) -> ``(lo, hi)``, each
    ``[...]``: Weyl's bound with ``A = eps I`` (all of whose singular values are ``eps``).
    """
    return _skip_interval(W, eps, "perturbation.skip_interval")


def _skip_interval(W, eps, fn: str) -> tuple[Tensor, Tensor]:
    W = _matrix(W, "W", fn, square=True)
    e = _scalar_or_batch(eps, "eps", W, fn)
    w = torch.linalg.matrix_norm(W, ord=2)
    try:
        torch.broadcast_shapes(e.shape, w.shape)
    except RuntimeError:
        raise InputError(f"{fn}: eps of shape {tuple(e.shape)} does not broadcast to the "
                         f"batch {tuple(w.shape)} of W") from None
    return (e - w).clamp_min(0), e + w


def skip_condition_bound(W: Tensor, eps=1.0) -> Tensor:
    """``(eps + ||W||) / (eps - ||W||)`` where ``||W||_2 < eps``, else ``inf``: ``[...]``.

    An upper bound of ``kappa(eps I + W)`` (:func:`skip_interval`); it says nothing (is
    ``inf``) once ``||W|| >= eps``.
    """
    lo, hi = _skip_interval(W, eps, "perturbation.skip_condition_bound")
    return torch.where(lo > 0, hi / lo,
                       torch.full_like(hi, math.inf))


# ----------------------------------------------------------------------------- diagonal


def multiplicative_interval(s_A: Tensor, alpha) -> tuple[Tensor, Tensor]:
    """Where the singular values of ``D A`` (or ``A D``) lie, for ``|d_j|`` in ``[alpha, 1]``.

    ``s_A [..., k]`` (descending), ``alpha`` in ``[0, 1]`` (a number or ``[...]``) ->
    ``(alpha * s_A, s_A)``. Leaky ReLU with slope ``alpha`` has ``d_j`` in ``{alpha, 1}``;
    the absolute value ``d_j = +-1`` (``alpha = 1``: the singular values do not move).
    """
    fn = "perturbation.multiplicative_interval"
    s = _sv(s_A, "s_A", fn)
    a = _batch_of(_scalar_or_batch(alpha, "alpha", s, fn, lo=0.0, hi=1.0), s, "alpha", fn)
    return a * s, s.clone()


def diagonal_condition_bound(kappa_A, alpha) -> Tensor:
    """``kappa(D A) <= kappa(A) / alpha`` for ``|d_j|`` in ``[alpha, 1]``, ``A`` square (or
    of full column rank with ``D`` acting on its rows): ``[...]`` (``inf`` for ``alpha = 0``).
    """
    fn = "perturbation.diagonal_condition_bound"
    if isinstance(kappa_A, Tensor):
        k = validation.tensor(kappa_A, "kappa_A", fn=fn)
    else:
        k = _scalar_or_batch(kappa_A, "kappa_A", torch.zeros((), dtype=torch.float64), fn,
                             lo=-math.inf)
    if (k < 1).any():
        raise InputError(f"{fn}: kappa_A is a condition number, which is >= 1; got a smaller "
                         "value")
    a = _scalar_or_batch(alpha, "alpha", k, fn, lo=0.0, hi=1.0)
    try:
        torch.broadcast_shapes(k.shape, a.shape)
    except RuntimeError:
        raise InputError(f"{fn}: alpha of shape {tuple(a.shape)} does not broadcast with "
                         f"kappa_A of shape {tuple(k.shape)}") from None
    return torch.where(a > 0, k / a,
                       torch.full_like(k * a, math.inf))


def interlacing_interval(s_A: Tensor, deleted) -> tuple[Tensor, Tensor]:
    """Row-deletion interlacing: the singular values of ``D A`` for a 0/1 diagonal ``D``.

    ``A`` is ``m x n`` with singular values ``s_A [..., k]`` (``k = min(m, n)``,
    descending); ``D`` zeroes ``deleted`` of its rows (an int or an int tensor ``[...]``,
    ``0 <= deleted``). Returns ``(lo, hi)`` ``[..., k]`` with ``hi_i = s_i(A)`` and
    ``lo_i = s_{i + deleted}(A)`` (0 when ``i + deleted > k``): ``lo <= s(D A) <= hi``.
    """
    fn = "perturbation.interlacing_interval"
    s = _sv(s_A, "s_A", fn)
    if isinstance(deleted, Tensor):
        r = validation.tensor(deleted, "deleted", fn=fn, floating=False)
        if r.is_floating_point() or r.is_complex() or r.dtype == torch.bool:
            raise InputTypeError(f"{fn}: deleted must be an int or an integer tensor, got "
                                 f"dtype {r.dtype}")
        if (r < 0).any():
            raise InputError(f"{fn}: deleted (the number of zeroed rows) must be >= 0, got "
                             f"{int(r.min())}")
        r = r.to(s.device)
    else:
        r = torch.tensor(validation.integer(deleted, "deleted (the number of zeroed rows)",
                                            fn=fn, lo=0), device=s.device)
    k = s.shape[-1]
    try:
        r = torch.broadcast_to(r, s.shape[:-1])[..., None]
    except RuntimeError:
        raise InputError(f"{fn}: deleted of shape {tuple(r.shape)} does not broadcast to the "
                         f"batch {tuple(s.shape[:-1])} of s_A {tuple(s.shape)}") from None
    idx = torch.arange(k, device=s.device) + r                       # [..., k]
    padded = torch.cat([s, torch.zeros_like(s)], -1)                 # s_j = 0 for j >= k
    lo = torch.gather(padded, -1, idx.clamp_max(2 * k - 1).expand(*s.shape))
    return lo, s.clone()


def concat_singular_values(s_B: Tensor, n: int) -> Tensor:
    """The singular values of ``[I_n; B]`` (``B`` ``g x n``) from those of ``B``, exactly.

    ``s_B [..., min(g, n)]`` (descending) -> ``[..., n]``: ``sqrt(1 + s_i(B)^2)`` for
    ``i <= min(g, n)``, then 1 - since ``[I; B]^T [I; B] = I + B^T B``.
    """
    fn = "perturbation.concat_singular_values"
    s = _sv(s_B, "s_B", fn)
    n = validation.integer(n, "n (the columns of B, at least the number of singular values "
                           "given)", fn=fn, lo=s.shape[-1])
    ones = torch.ones(*s.shape[:-1], n - s.shape[-1], dtype=s.dtype, device=s.device)
    return torch.cat([(1 + s * s).sqrt(), ones], -1)


# ----------------------------------------------------------------------------- random


def _sigma(sigma, like: Tensor, fn: str) -> Tensor:
    return _scalar_or_batch(sigma, "sigma", like, fn, lo=0.0, lo_open=True)


def quarter_circle_density(x: Tensor, sigma=1.0) -> Tensor:
    """The quarter-circle law: ``p(x) = sqrt(4 sigma^2 - x^2) / (pi sigma^2)`` on
    ``[0, 2 sigma]`` (0 outside), ``[...] -> [...]``.

    The limit (``n -> inf``) of the empirical distribution of the singular values of an
    ``n x n`` matrix with independent ``N(0, sigma^2 / n)`` entries.
    """
    fn = "perturbation.quarter_circle_density"
    x = validation.tensor(x, "x", fn=fn)
    s = _sigma(sigma, x, fn)
    inside = (x >= 0) & (x <= 2 * s)
    val = (4 * s * s - x * x).clamp_min(0).sqrt() / (math.pi * s * s)
    return torch.where(inside, val, torch.zeros_like(val))


def quarter_circle_cdf(x: Tensor, sigma=1.0) -> Tensor:
    """The distribution function of :func:`quarter_circle_density`, ``[...] -> [...]``:
    ``F(x) = (x sqrt(4 sigma^2 - x^2) / 2 + 2 sigma^2 asin(x / 2 sigma)) / (pi sigma^2)``."""
    fn = "perturbation.quarter_circle_cdf"
    x = validation.tensor(x, "x", fn=fn)
    s = _sigma(sigma, x, fn)
    u = torch.minimum(x.clamp_min(0), 2 * s)
    F = (u * (4 * s * s - u * u).clamp_min(0).sqrt() / 2
         + 2 * s * s * torch.asin((u / (2 * s)).clamp(-1, 1))) / (math.pi * s * s)
    return F.clamp(0, 1)


def gaussian_skip_condition_limit(eps, sigma) -> Tensor:
    """``(eps + 2 sigma) / (eps - 2 sigma)`` when ``2 sigma < eps``, else ``inf`` (0-d or
    ``[...]``): Weyl's large-``n`` bound of ``kappa(eps I + W)`` for ``W`` with
    ``N(0, sigma^2/n)`` entries (``||W|| -> 2 sigma``). It is not the threshold:
    ``kappa(eps I + W)`` stays bounded for every ``sigma < eps``
    (:func:`gaussian_skip_condition`)."""
    fn = "perturbation.gaussian_skip_condition_limit"
    e = _scalar_or_batch(eps, "eps", _reference(eps), fn)
    s = _sigma(sigma, e, fn)
    lo = e - 2 * s
    return torch.where(lo > 0, (e + 2 * s) / lo,
                       torch.full_like(lo, math.inf))


def gaussian_skip_edges(eps, sigma) -> tuple[Tensor, Tensor]:
    """The limits of ``s_min`` and ``s_max`` of ``eps I + W``, ``W`` ``n x n`` with
    ``N(0, sigma^2/n)`` entries, as ``n -> inf`` (0-d or ``[...]`` each).

    With ``t = sigma / eps`` the squared singular values of ``I + W/eps`` have the limit law
    of an information-plus-noise matrix (Dozier and Silverstein 2007), whose support has
    the edges ``lambda(g) = 1/g^2 - t^2/(g (g - 1))`` at the roots ``g`` of
    ``2 (t^2 - 1) g^2 + (4 - t^2) g - 2 = 0``, ``g_{1,2} = 4 / (4 - t^2 +- sqrt(t^4 +
    8 t^2))``. The upper edge is ``eps sqrt(lambda(g_1))`` (``g_1`` in ``(0, 1)``); for
    ``t < 1`` the lower one is ``eps sqrt(lambda(g_2)) > 0`` (``g_2 > 1``), for ``t >= 1``
    it is 0 (the limit law reaches 0).
    """
    return _skip_edges(eps, sigma, "perturbation.gaussian_skip_edges")


def _reference(eps) -> Tensor:
    """The dtype and device of the result: ``eps``'s when it is a floating tensor."""
    if isinstance(eps, Tensor) and eps.is_floating_point():
        return eps
    return torch.zeros((), dtype=torch.float64)


def _skip_edges(eps, sigma, fn: str) -> tuple[Tensor, Tensor]:
    e = _scalar_or_batch(eps, "eps", _reference(eps), fn, lo=0.0, lo_open=True)
    t2 = (_sigma(sigma, e, fn) / e) ** 2
    root = (t2 * t2 + 8 * t2).sqrt()

    def lam(g):
        return 1 / (g * g) - t2 / (g * (g - 1))

    below = t2 < 1
    g1 = 4 / (4 - t2 + root)                             # in (0, 1): the upper edge
    g2 = 4 / torch.where(below, 4 - t2 - root, torch.ones_like(t2))   # > 1 when t < 1
    hi = e * lam(g1).clamp_min(0).sqrt()
    lo = torch.where(below, e * lam(g2).clamp_min(0).sqrt(), torch.zeros_like(hi))
    return lo, hi


def gaussian_skip_condition(eps, sigma) -> Tensor:
    """``lim kappa(eps I + W)`` for ``W`` with ``N(0, sigma^2/n)`` entries: the ratio of the
    edges of :func:`gaussian_skip_edges`, finite exactly when ``sigma < eps`` (``inf``
    otherwise). It is below Weyl's :func:`gaussian_skip_condition_limit` where that exists
    (``2 sigma < eps``)."""
    lo, hi = _skip_edges(eps, sigma, "perturbation.gaussian_skip_condition")
    return torch.where(lo > 0, hi / lo.clamp_min(torch.finfo(lo.dtype).tiny),
                       torch.full_like(hi, math.inf))


# ----------------------------------------------------------------------------- layers


def activation_diagonal(pre: Tensor, act: str, *, alpha: float = 0.1) -> Tensor:
    """The diagonal of the activation code at the pre-activations ``pre [..., n]``: ``[..., n]``.

    ``"relu"``: 1 where ``pre > 0``, else 0; ``"leaky_relu"``: 1 or ``alpha``; ``"abs"``:
    +1 or -1 (the sign; -1 at 0, as :mod:`dltheory.cpa` codes it). So ``act(pre) = d *
    pre`` exactly.
    """
    fn = "perturbation.activation_diagonal"
    act = validation.choice(act, "act", ACTIVATIONS, fn=fn)
    pre = validation.tensor(pre, "pre", fn=fn, min_ndim=1, layout="[..., n]")
    a = _scalar_or_batch(alpha, "alpha", pre, fn, lo=0.0, hi=1.0)
    try:
        torch.broadcast_shapes(pre.shape, a.shape)
    except RuntimeError:
        raise InputError(f"{fn}: alpha of shape {tuple(a.shape)} does not broadcast to pre "
                         f"of shape {tuple(pre.shape)}") from None
    one = torch.ones_like(pre)
    if act == "relu":
        return torch.where(pre > 0, one, torch.zeros_like(pre))
    if act == "leaky_relu":
        return torch.where(pre > 0, one, a * one)
    return torch.where(pre > 0, one, -one)


def local_linear(W: Tensor, d: Tensor, arch: str, *, eps=None) -> Tensor:
    """The local linear representation (Jacobian) of one layer at one activation code.

    ``W [..., g, n]``, ``d [..., g]`` the code's diagonal (:func:`activation_diagonal`):

    * ``"convnet"``: ``D W`` ``[..., g, n]`` - the layer ``h -> act(W h + b)``;
    * ``"resnet"``: ``D (eps I + W)`` ``[..., n, n]`` (``W`` square, ``eps`` default 1) -
      the layer ``h -> act(eps h + W h + b)``;
    * ``"densenet"``: ``[I; D W]`` ``[..., n + g, n]`` - the layer
      ``h -> [h; act(W h + b)]``.
    """
    fn = "perturbation.local_linear"
    arch = validation.choice(arch, "arch", ARCHS, fn=fn)
    W = _matrix(W, "W", fn, square=arch == "resnet")
    d = validation.tensor(d, "d", fn=fn, min_ndim=1, layout="[..., g]")
    if d.shape[-1:] != W.shape[-2:-1]:
        raise InputError(f"{fn}: d has shape {tuple(d.shape)} but W has shape "
                         f"{tuple(W.shape)}: d needs one entry per row of W ({W.shape[-2]})")
    try:
        torch.broadcast_shapes(d.shape[:-1], W.shape[:-2])
    except RuntimeError:
        raise InputError(f"{fn}: the batch {tuple(d.shape[:-1])} of d does not broadcast "
                         f"with the batch {tuple(W.shape[:-2])} of W") from None
    if arch != "resnet" and eps is not None and not (
            isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps == 0):
        raise InputError(f"{fn}: eps applies to arch='resnet' only, got eps={eps!r} for "
                         f"{arch!r}")
    n = W.shape[-1]
    if arch == "convnet":
        return d[..., :, None] * W
    if arch == "resnet":
        e = _scalar_or_batch(1.0 if eps is None else eps, "eps", W, fn)
        try:
            torch.broadcast_shapes(e.shape + (1, 1), W.shape)
        except RuntimeError:
            raise InputError(f"{fn}: eps of shape {tuple(e.shape)} does not broadcast to "
                             f"the batch {tuple(W.shape[:-2])} of W") from None
        eye = torch.eye(n, dtype=W.dtype, device=W.device)
        return d[..., :, None] * (e[..., None, None] * eye + W)
    DW = d[..., :, None] * W
    eye = torch.eye(n, dtype=W.dtype, device=W.device).expand(*DW.shape[:-2], n, n)
    return torch.cat([eye, DW], -2)


# ----------------------------------------------------------------------------- matrix-free


def range_condition_number(matvec, n: int, *, steps: int = 200,
                           generator: torch.Generator | None = None,
                           dtype: torch.dtype = torch.float64, device=None,
                           rtol: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``lambda_max / lambda_min`` of a PSD operator on its range, from products only.

    Lanczos (:func:`dltheory.spectra.lanczos`, full reorthogonalization) started from
    ``v0 = A u`` (``u`` Gaussian from ``generator``; default: seeded from the profile,
    :func:`dltheory.validation.generator`), which lies in the range of ``A``: the
    Krylov space stays there, so its Ritz values approximate the non-zero eigenvalues
    only. The largest Ritz value is below ``lambda_max`` and the smallest above the
    smallest non-zero eigenvalue (Cauchy interlacing), both converging; they are exact
    once ``steps`` reaches the rank. Ritz values below ``rtol * lambda_max`` (``rtol`` in
    ``[0, 1]``, default ``n * eps``; rounding re-introduces null-space directions) are
    dropped. ``matvec``: ``v [n] -> A v [n]``, same dtype, finite.

    Returns ``(kappa, lambda_min_on_range, lambda_max)``, each 0-d. Memory ``steps * n``.
    """
    from . import spectra  # here, not at the top: spectra may re-export this module

    fn = "perturbation.range_condition_number"
    if not callable(matvec):
        raise InputTypeError(f"{fn}: matvec must be a callable v [n] -> A v [n], got "
                             f"{type(matvec).__name__}")
    n = validation.integer(n, "n (the operator's size)", fn=fn, lo=1)
    steps = validation.integer(steps, "steps", fn=fn, lo=1)
    generator = validation.generator(generator, fn=fn)
    dtype = validation.floating_dtype(dtype, fn=fn)
    if rtol is not None:
        rtol = validation.real(rtol, "rtol", fn=fn, lo=0.0, hi=1.0)
    u = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    v0 = matvec(u)
    if not isinstance(v0, Tensor) or v0.shape != u.shape or v0.dtype != u.dtype:
        got = f"{tuple(v0.shape)} {v0.dtype}" if isinstance(v0, Tensor) else \
            type(v0).__name__
        raise InputError(f"{fn}: matvec maps a vector [{n}] of dtype {dtype} to {got}; it "
                         "must return the same shape and dtype")
    validation.finite_output(v0, "matvec(u)", fn=fn, cause="the operator returned NaN or "
                             "inf (overflow?)")
    if not bool((v0 != 0).any()):
        zero = torch.zeros((), dtype=dtype, device=device)
        return torch.full_like(zero, math.inf), zero, zero
    ritz, _ = spectra.lanczos(matvec, n, steps, v0=v0, dtype=dtype, device=device)
    top = ritz[-1]
    rtol = n * torch.finfo(dtype).eps if rtol is None else float(rtol)
    pos = ritz[ritz > rtol * top.clamp_min(0)]
    if pos.numel() == 0:
        return torch.full_like(top, math.inf), top.new_zeros(()), top
    return top / pos[0], pos[0], top


# ----------------------------------------------------------------------------- layer Hessian


def _quadratic(q, fn: str):
    from .landscape import Quadratic

    if not isinstance(q, Quadratic):
        raise InputTypeError(f"{fn}: q must be a dltheory.landscape.Quadratic (from "
                             f"landscape.layer_quadratic), got {type(q).__name__}")
    return q


def layer_hessian_factor(q) -> Tensor:
    """``F [N k, P]`` with ``H = F^T F`` for a :class:`dltheory.landscape.Quadratic` ``q``
    (:meth:`~dltheory.landscape.Quadratic.factor`): ``F v`` and ``F^T F`` restricted to a
    few directions give curvatures without the ``P x P`` matrix."""
    return _quadratic(q, "perturbation.layer_hessian_factor").factor()


def layer_hessian_eigvalsh(q) -> Tensor:
    """The eigenvalues (ascending) of a layer's loss Hessian that can be non-zero, from the
    smaller Gram matrix (:meth:`~dltheory.landscape.Quadratic.gram_eigvalsh`); ``H`` is never
    formed."""
    return _quadratic(q, "perturbation.layer_hessian_eigvalsh").gram_eigvalsh()


def layer_hessian_condition(q, *, rtol: float | None = None) -> Tensor:
    """``lambda_max / lambda_min`` of a layer's loss Hessian on its range (0-d),
    :meth:`dltheory.landscape.Quadratic.condition_number` (from the Gram matrix when the
    quadratic was built with ``dense=False``); ``inf`` for a zero Hessian. ``rtol`` in
    ``[0, 1]``: eigenvalues at most ``rtol * lambda_max`` count as zero."""
    fn = "perturbation.layer_hessian_condition"
    q = _quadratic(q, fn)
    if rtol is not None:
        rtol = validation.real(rtol, "rtol", fn=fn, lo=0.0, hi=1.0)
    return q.condition_number(rtol=rtol)

"""Infinite-width NNGP and NTK of fully connected networks, their fixed points and depth scales.

**Convention** (NTK parametrization). A network of depth ``L`` has ``L`` linear layers and
``L - 1`` activations ``phi``:

``h^1 = (sigma_w / sqrt(d)) W^0 x + sigma_b b^0``,
``h^{l+1} = (sigma_w / sqrt(n_l)) W^l phi(h^l) + sigma_b b^l``, with ``W, b ~ N(0, 1)``.

As the widths ``n_l -> inf`` the pre-activations are Gaussian processes with covariance (the
NNGP kernel) ``K^l`` and the tangent kernel tends to a deterministic ``Theta^l``
(Jacot et al. 2018; Lee et al. 2019), with

``K^1 = Theta^1 = sigma_w^2 x.x'/d + sigma_b^2``,
``K^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2``,
``Theta^{l+1} = K^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l``,

``(u, v) ~ N(0, [[K^l(x,x), K^l(x,x')], [K^l(x,x'), K^l(x',x')]])``. Closed forms: ReLU, the
arc-cosine kernel of Cho & Saul (``c = k12 / sqrt(k11 k22)``, ``theta = arccos c``)

``E[phi(u)phi(v)] = (sqrt(k11 k22 - k12^2) + (pi - theta) k12) / (2 pi)``,
``E[phi'(u)phi'(v)] = (pi - theta) / (2 pi)``,

evaluated without ``arccos`` (whose error is ``sqrt(eps)`` at ``c ~ 1``): the angle of each
pair is taken from the inputs at the first layer and carried through the layers as
``sin^2(theta/2)`` by a recursion without cancellation (:func:`_relu_block`; for
convolutions :func:`_cnn_relu_block`), so duplicate, near-duplicate and distinct points (and
images) are all accurate to a few ulps;

erf (Williams 1997)

``E[phi(u)phi(v)] = (2/pi) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))``,
``E[phi'(u)phi'(v)] = (4/pi) / sqrt((1 + 2 k11)(1 + 2 k22) - 4 k12^2)``.

Every function is batched over *settings*: ``sigma_w^2`` and ``sigma_b^2`` are python numbers
or tensors (broadcast together to a batch shape ``S``), and a kernel function returns every
requested depth of one recursion pass. Float64 is the default and the tested dtype.

**Fixed points and depth scales** (Poole et al. 2016; Schoenholz et al. 2017; Xiao et al.
2020). On the diagonal ``q^{l+1} = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 -> q*``; the
correlation map ``c -> (sigma_w^2 E[phi(u)phi(v)] + sigma_b^2) / q*`` at ``k11 = k22 = q*``
has the stable fixed point ``c*``. ``chi_1 = sigma_w^2 E[phi'(u)^2]`` at ``q*`` and
``chi_c* = sigma_w^2 E[phi'(u)phi'(v)]`` at ``(q*, c*)``; ``chi_1 < 1`` is the ordered phase
(``c* = 1``), ``chi_1 > 1`` the chaotic one (``c* < 1``). Depth scales:
``xi_1 = 1/|log chi_1|``, ``xi_c = 1/|log chi_c*|`` and ``xi* = -1/log(chi_c*/chi_1)``
(``inf`` in the ordered phase, where ``chi_c* = chi_1``).

**Predictions from a kernel.** :func:`mean_predictor` (``Theta(x, X) Theta^{-1} Y``, the
infinite-time mean of gradient flow on the squared loss) and :func:`linearized` (the
outputs ``f_t = (I - e^{-eta Theta t}) Y`` on the training set and the matching test
outputs, from ``f_0 = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from . import threads, validation
from .errors import InputError, InputTypeError

__all__ = [
    "ACTIVATIONS",
    "InfiniteWidthError",
    "Kernels",
    "FixedPoint",
    "nngp_ntk",
    "cnn_nngp_ntk",
    "READOUTS",
    "layer_step",
    "fixed_point",
    "critical_sw2",
    "mean_predictor",
    "linearized",
    "Erf",
    "NTKLinear",
    "NTKConv2d",
    "ntk_mlp",
    "ntk_cnn",
]

ACTIVATIONS = ("relu", "erf")
_TWO_PI = 2.0 * math.pi


class InfiniteWidthError(InputError):
    """Bad input to an infinite-width kernel computation (named in the message)."""


class Kernels(NamedTuple):
    """The NNGP kernel ``K`` and the NTK ``Theta``, same shape."""

    nngp: torch.Tensor
    ntk: torch.Tensor


class FixedPoint(NamedTuple):
    """Fixed points and depth scales, each a tensor of the settings' batch shape."""

    q: torch.Tensor          # q*, the fixed point of the diagonal (inf where it diverges)
    c: torch.Tensor          # c*, the stable fixed point of the correlation map
    chi_1: torch.Tensor      # sigma_w^2 E[phi'(u)^2] at q*
    chi_c: torch.Tensor      # sigma_w^2 E[phi'(u) phi'(v)] at (q*, c*)
    xi_1: torch.Tensor       # 1 / |log chi_1|
    xi_c: torch.Tensor       # 1 / |log chi_c*|
    xi_star: torch.Tensor    # -1 / log(chi_c* / chi_1) (inf in the ordered phase)


# ------------------------------------------------------------------------------ validation

#: The deepest network the recursions accept: kernels reach their fixed point (or diverge)
#: within a few hundred layers, and each layer keeps ``O(N)`` diagonals.
MAX_DEPTH = 100_000

#: The most Newton or bisection steps :func:`fixed_point` and :func:`critical_sw2` take.
MAX_ITERS = 100_000


def _check_act(act, fn: str) -> str:
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise InfiniteWidthError(f"{fn}: unsupported activation act={act!r}: closed forms "
                                 f"exist here for {ACTIVATIONS}")
    return act


def _variance(name: str, value, dtype, device, *, strict: bool, fn: str,
              what: str = "a variance") -> torch.Tensor:
    """A weight or bias variance (a number, or a real tensor of settings) as a tensor of
    ``dtype``: finite, and ``> 0`` (``strict``) or ``>= 0``."""
    if isinstance(value, torch.Tensor):
        validation.tensor(value, name, fn=fn, floating=False)
        if value.dtype == torch.bool or value.is_complex():
            raise InputTypeError(f"{fn}: {name} must be a real number or tensor, got a "
                                 f"{value.dtype} tensor")
        t = value.to(dtype=dtype, device=device)
        validation.finite_output(t, name, fn=fn, cause=f"it overflows {dtype}",
                                 fix="pass smaller variances or use float64")
    else:
        t = torch.tensor(validation.real(value, name, fn=fn), dtype=dtype, device=device)
    bad = (t <= 0) if strict else (t < 0)
    if bad.any():
        need = "> 0" if strict else ">= 0"
        raise InfiniteWidthError(f"{fn}: {name} is {what} and must be {need}; got "
                                 f"{t[bad].flatten()[0].item():g}")
    return t


def _settings(sw2, sb2, dtype, device, *, strict_b: bool, fn: str):
    w = _variance("sw2", sw2, dtype, device, strict=True, fn=fn)
    b = _variance("sb2", sb2, dtype, device, strict=strict_b, fn=fn)
    try:
        w, b = torch.broadcast_tensors(w, b)
    except RuntimeError:
        raise InfiniteWidthError(f"{fn}: sw2 {tuple(w.shape)} and sb2 {tuple(b.shape)} do "
                                 "not broadcast to one batch of settings") from None
    return w, b


def _check_depths(depth, fn: str) -> tuple[list[int], bool]:
    """``depth``: an int (one depth) or a sequence of ints. Returns (list, scalar?)."""
    def ok(d):
        return isinstance(d, int) and not isinstance(d, bool)

    if ok(depth):
        depths, scalar = [depth], True
    elif isinstance(depth, Sequence | torch.Tensor) and not isinstance(depth, str) and \
            len(depth) > 0:
        depths = [int(d) if isinstance(d, torch.Tensor) and d.numel() == 1 and
                  not d.is_floating_point() and d.dtype != torch.bool else d for d in depth]
        scalar = False
        if not all(ok(d) for d in depths):
            raise InfiniteWidthError(f"{fn}: depth must be an int or a sequence of ints, got "
                                     f"{list(depth)!r}")
    else:
        raise InfiniteWidthError(f"{fn}: depth must be an int >= 1 or a non-empty sequence "
                                 f"of ints, got {depth!r}")
    low, high = min(depths), max(depths)
    if low < 1:
        raise InfiniteWidthError(f"{fn}: depth must be >= 1 (depth 1 is the linear layer "
                                 f"K^1 = sw2 x.x'/d + sb2); got {low}")
    if high > MAX_DEPTH:
        raise InfiniteWidthError(f"{fn}: depth must be <= {MAX_DEPTH} (MAX_DEPTH), got "
                                 f"{high}; the kernels have long reached their fixed point "
                                 "(see fixed_point)")
    return depths, scalar


def _check_pair(X1, X2, fn: str, *, ndim: int, layout: str):
    """``X1`` and ``X2`` (None: the same points) checked; returns ``(X1, X2, same)``."""
    X1 = validation.tensor(X1, "X1", fn=fn, ndim=ndim, layout=layout)
    if X2 is None:
        return X1, X1, True
    X2 = validation.tensor(X2, "X2", fn=fn, ndim=ndim, layout=layout)
    if X1.shape[1:] != X2.shape[1:] or X1.dtype != X2.dtype or X1.device != X2.device:
        raise InfiniteWidthError(f"{fn}: X1 {tuple(X1.shape)} ({X1.dtype}, {X1.device}) and "
                                 f"X2 {tuple(X2.shape)} ({X2.dtype}, {X2.device}) must have "
                                 "the same input dimension (same shape after the batch "
                                 "axis), dtype and device")
    return X1, X2, False


def _finite_kernels(out: Kernels, fn: str) -> Kernels:
    for what, t in (("the NNGP kernel", out.nngp), ("the NTK", out.ntk)):
        validation.finite_output(t, what, fn=fn, cause="X1, X2, sw2 or sb2 are too large "
                                 "for the dtype (the recursion overflows)")
    return out


# --------------------------------------------------------------------------- the recursion

#: Entries of one row block: the elementwise passes of a layer run on blocks this size, which
#: stay in cache (the nine work arrays of a block, float64: 9 MiB, in the last-level cache),
#: instead of streaming the whole matrix through memory once per pass; smaller blocks pay
#: the dispatch of a layer's ~20 torch calls more often (2^15: 1.2x slower on 2 cores).
BLOCK_ENTRIES = 1 << 17


def _phi2(act: str, k: torch.Tensor, w=1.0) -> torch.Tensor:
    """``w E[phi(u)^2]`` for ``u ~ N(0, k)``: ``w k/2`` (ReLU) or ``w (2/pi) arcsin(2k/(1 +
    2k))``."""
    if act == "relu":
        return w * k / 2
    return w * (2 / math.pi) * torch.arcsin(2 * k / (1 + 2 * k))


def _diag_step(act: str, k: torch.Tensor, w, b) -> torch.Tensor:
    """The diagonal ``K^{l+1}(x, x)`` from ``K^l(x, x)`` (``E[phi(u)^2]`` in closed form)."""
    return _phi2(act, k, w) + b


def _row_factor(act: str, k: torch.Tensor) -> torch.Tensor:
    """Per-point factor of the normalizer: ``sqrt(k)`` (ReLU: ``sqrt(k11 k22)``) or
    ``sqrt(1 + 2k)`` (erf: ``sqrt((1 + 2 k11)(1 + 2 k22))``)."""
    return k.sqrt() if act == "relu" else (1 + 2 * k).sqrt()


#: ReLU: pairs whose first-layer correlation lies within ``NEAR`` of +-1 take their angle
#: from the normalized inputs themselves (:class:`_FirstAngles`): ``arccos`` of a Gram-matrix
#: correlation loses half the digits of a small angle.
NEAR = 1 / 64
_NEAR_SIN = math.sqrt(1 - (1 - NEAR) ** 2) / 2


class _Scratch:
    """Work arrays for one row block ``[rows, *tail]``, reused across blocks and layers (a
    ReLU recursion's seventh holds the block's ``sin^2(theta/2)``, carried through the
    layers)."""

    def __init__(self, rows: int, tail: Sequence[int], like: torch.Tensor, n: int):
        self.bufs = [like.new_empty(rows, *tail) for _ in range(n)]
        one = dict(dtype=like.dtype, device=like.device)
        self.one, self.pi = torch.tensor(1.0, **one), torch.tensor(math.pi, **one)
        self.half, self.zero = torch.tensor(0.5, **one), torch.tensor(0.0, **one)

    def take(self, m: int) -> list[torch.Tensor]:
        return [buf[:m] for buf in self.bufs]


def _pair_diag(t: torch.Tensor, r0: int) -> torch.Tensor:
    """The entries of a row block ``t`` ``[m, N2]`` whose rows are the points of the columns
    ``r0, r0 + 1, ...`` (each point paired with itself), as a view ``[m]``; a convolutional
    block ``[m, N2, R, H, W]``: those pairs at the offset ``r = 0``, ``[H, W, m]``."""
    d = t.narrow(1, r0, t.shape[0])
    if d.ndim > 2:
        d = d.select(2, 0)
    return d.diagonal(dim1=0, dim2=1)


def _erf_block(kb: torch.Tensor, tb: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
               w: float, b: torch.Tensor, diag, scratch: _Scratch):
    """One erf layer on a row block, in place: ``kb, tb`` ``[m, N2]`` hold ``K^l, Theta^l``
    and receive ``K^{l+1}, Theta^{l+1}``. ``f1 [m]``, ``f2 [N2]``: :func:`_row_factor` of
    the rows' and the columns' diagonals; ``w`` the weight variance, ``b`` the bias variance
    (a 0-dim tensor). ``diag``: ``None``, or ``(offset, k_next)`` when the block's rows are
    the points of columns ``offset, offset + 1, ...``: their entries are set to the exact
    diagonal ``k_next [m]``."""
    m = kb.shape[0]
    s, r, dd = scratch.take(m)[:3]
    torch.outer(f1 / 2, f2, out=s)                                  # sqrt((1+2k11)(1+2k22))/2
    torch.div(kb, s, out=r).clamp_(-1.0, 1.0)
    # s sqrt(1 - r^2): the E[phi' phi'] = (2/pi) / (s sqrt(1 - r^2)) denominator
    torch.addcmul(scratch.one, r, r, value=-1.0, out=dd).sqrt_().mul_(s)
    torch.arcsin(r, out=r)
    torch.add(b, r, alpha=2 * w / math.pi, out=kb)                  # K^{l+1}
    if diag is not None:
        kb.diagonal(diag[0]).copy_(diag[1])
    torch.div(tb, dd, out=tb)
    torch.add(kb, tb, alpha=2 * w / math.pi, out=tb)                # Theta^{l+1}


# ReLU. Every pair's angle theta is carried through the layers as hv = sin^2(theta/2) =
# (1 - cos theta)/2 (never arccos of a correlation, whose error is sqrt(eps) at theta ~ 0):
# :func:`_relu_angles` turns it into the layer's terms, :func:`_relu_defect` into pi - J,
# from which the next layer's hv is a sum of nonnegative terms (:func:`_relu_block`, fully
# connected; :func:`_cnn_relu_block`, convolutional). The first layer's angles come from the
# inputs (:class:`_FirstAngles`).

def _relu_angles(hv, sh, ch, th, psi, u, scratch: _Scratch, first: bool) -> None:
    """The ReLU terms of pairs at the angles ``theta``, from ``hv = sin^2(theta/2)``: fills
    ``sh = sin(theta)/2``, ``ch = cos(theta)/2``, ``th = theta`` (not when ``first``: they
    hold the first layer's angles already, :class:`_FirstAngles`), ``psi = pi - theta`` and
    ``u = J/2``, ``J = sin theta + (pi - theta) cos theta``, so that ``E[phi(u) phi(v)] =
    sqrt(k11 k22) J / (2 pi)`` and ``E[phi'(u) phi'(v)] = psi / (2 pi)``. All arrays of one
    shape; past the first layer ``hv <= 1/2`` (the correlations are >= 0)."""
    if not first:
        torch.addcmul(hv, hv, hv, value=-1.0, out=sh).sqrt_()  # sin(theta)/2
        torch.sub(scratch.half, hv, out=ch)                    # cos(theta)/2
        torch.atan2(sh, ch, out=th)                            # theta
    torch.sub(scratch.pi, th, out=psi)                         # pi - theta
    torch.addcmul(sh, psi, ch, out=u)                          # J/2


def _relu_defect(th, sh, psi, hv) -> None:
    """``th`` (``theta``, with ``sh``, ``psi`` and ``hv`` of :func:`_relu_angles`) receives
    ``pi - J = 2 (pi - theta) sin^2(theta/2) + (theta - sin theta)``: two nonnegative terms,
    so the next layer's angle, built from it, has an absolute error of a few ulps however
    small it is."""
    torch.sub(th, sh, alpha=2.0, out=th)                       # theta - sin theta
    th.addcmul_(psi, hv, value=2.0)                            # pi - J


def _relu_rows(n: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """Per-point factors of the next ReLU layer's angles, from the norms ``n = sqrt(K^l(x,
    x))`` ``[S, N]`` (``w``, ``b`` ``[S, 1]``): the next layer's features of ``x`` are
    ``(sqrt(w/2) n e, sqrt(b))`` with ``e`` a unit vector, at the angle
    ``gamma = atan2(sqrt(b), sqrt(w/2) n)`` from the feature axis. Returns
    ``(sin(gamma/2), cos(gamma/2), cos(gamma))``."""
    gam = torch.atan2(b.sqrt().expand_as(n), (w / 2).sqrt() * n)
    return (gam / 2).sin(), (gam / 2).cos(), gam.cos()


def _relu_block(kb: torch.Tensor, tb: torch.Tensor, hv: torch.Tensor, first: bool, n1, n2,
                nxt, w: float, b: torch.Tensor, bias: bool, diag, scratch: _Scratch):
    """One ReLU layer on a row block, in place, carrying the angle ``theta`` of every pair
    as ``hv = sin^2(theta/2)`` ``[m, N2]`` (:func:`_relu_angles`).

    ``kb`` receives ``K^{l+1} = b + w s J / (2 pi)``, ``J = sin theta + (pi - theta) cos
    theta``, ``s = n1 n2``; ``tb`` (``Theta^l``) receives ``Theta^{l+1} = K^{l+1} + w (pi -
    theta) Theta^l / (2 pi)``. ``first``: the scratch arrays ``sh, ch, th`` already hold
    ``sin(theta)/2, cos(theta)/2, theta`` (:class:`_FirstAngles`; theta may exceed pi/2
    there); later theta <= pi/2 (the correlations are >= 0). ``nxt``: None (last layer) or
    the rows' and columns' :func:`_relu_rows`; ``hv`` then receives the next layer's

    ``sin^2(theta'/2) = sin^2((gamma - gamma')/2) + cos gamma cos gamma' (pi - J) / (2 pi)``,

    a sum of nonnegative terms (:func:`_relu_defect`): no cancellation, so ``theta'`` has an
    absolute error of a few ulps however small it is. ``bias``: ``b > 0`` (else ``gamma =
    0`` for every point). ``diag`` as in :func:`_erf_block`."""
    m = kb.shape[0]
    sh, ch, th, psi, u, s = scratch.take(m)[:6]
    _relu_angles(hv, sh, ch, th, psi, u, scratch, first)
    torch.outer(n1, n2, out=s)                                 # sqrt(k11 k22)
    torch.addcmul(b, u, s, value=w / math.pi, out=kb)          # K^{l+1}
    if diag is not None:
        kb.diagonal(diag[0]).copy_(diag[1])
        psi.diagonal(diag[0]).fill_(math.pi)
    torch.addcmul(kb, tb, psi, value=w / _TWO_PI, out=tb)      # Theta^{l+1}
    if nxt is None:
        return
    _relu_defect(th, sh, psi, hv)                              # pi - J
    # (every product below is formed as x_i y_j or y_j x_i alike, so that a symmetric
    # kernel stays exactly symmetric)
    (a1, c1, g1), (a2, c2, g2) = nxt
    torch.outer(g1, g2, out=s)
    if bias:
        torch.outer(a1, c2, out=u)
        u.sub_(torch.outer(c1, a2, out=psi))                   # sin((gamma - gamma')/2)
        u.mul_(u)
    else:
        u = scratch.zero
    torch.addcmul(u, th, s, value=1 / _TWO_PI, out=hv)
    if diag is not None:
        hv.diagonal(diag[0]).zero_()


class _FirstAngles:
    """First-layer angles of the ReLU recursion. The first layer's features of an input
    ``x`` (a point, or for a convolution the 3x3 patch of an image at a position) are
    ``a(x) = (sqrt(sw2/d) x, sqrt(sb2))`` (``d`` its size), with ``K^1 = <a, a'>``; the
    angle of a pair comes from its correlation ``c``, except for pairs within :data:`NEAR`
    of ``c = +-1`` when the inputs are given: those get ``sin(theta/2) = |u - u'|/2`` and
    ``cos(theta/2) = |u + u'|/2`` from the unit vectors ``u = a/|a|`` themselves (Kahan's
    angle: exact for duplicates, a few ulps for every pair). Subclasses gather the unit
    vectors of those pairs (a method ``units(i, r0, at)``: the unit vectors ``(u, u')``
    ``[k, dim]`` of the pairs at the indices ``at`` ``[k, ndim]`` of a block of rows ``r0 ..``,
    for setting ``i``) and give their size ``dim``; this class alone
    (:func:`layer_step`, from a kernel) takes every angle from ``c``."""

    exact = False
    dim = 1

    def __call__(self, i: int, r0: int, kb, f1, f2, hv, scratch: _Scratch, diag: bool):
        """Fill ``sin(theta)/2, cos(theta)/2, theta`` (the scratch arrays ``sh, ch, th``)
        and ``hv = sin^2(theta/2)``, all shaped as ``K^1`` (``kb``, the block of rows ``r0
        ..`` of setting ``i``), from ``K^1`` and the norms ``sqrt(K^1(x, x))`` of the rows
        ``f1`` and of the columns ``f2`` (broadcasting to ``kb``); ``diag``: the rows are
        the columns ``r0 ..`` (:func:`_pair_diag`, theta = 0 there)."""
        sh, ch, th = scratch.take(kb.shape[0])[:3]
        torch.mul(f1, f2, out=ch).clamp_min_(torch.finfo(ch.dtype).tiny)
        torch.div(kb, ch, out=ch).clamp_(-1.0, 1.0)                   # c = cos theta
        torch.addcmul(scratch.one, ch, ch, value=-1.0, out=sh).sqrt_().mul_(0.5)
        # |c| > 1 - NEAR, read off sin(theta)/2 (one pass)
        near = (sh < _NEAR_SIN) if self.exact else None
        ch.mul_(0.5)
        torch.sub(scratch.half, ch, out=hv)                            # (1 - c)/2
        torch.atan2(sh, ch, out=th)
        if diag:
            for t, v in ((sh, 0.0), (ch, 0.5), (hv, 0.0), (th, 0.0)):
                _pair_diag(t, r0).fill_(v)
            if near is not None:
                _pair_diag(near, r0).fill_(False)
        if near is None or not bool(near.any()):
            return
        at = near.nonzero()
        step = max(1, (1 << 20) // self.dim)
        for j in range(0, len(at), step):
            a, e = self.units(i, r0, at[j:j + step])
            where = tuple(at[j:j + step].T)
            t = torch.linalg.vector_norm(a - e, dim=1) / 2               # sin(theta/2)
            co = torch.linalg.vector_norm(a + e, dim=1) / 2              # cos(theta/2)
            sh[where], ch[where] = t * co, (co - t) * (co + t) / 2
            hv[where], th[where] = t * t, 2 * torch.atan2(t, co)


class _PointAngles(_FirstAngles):
    """:class:`_FirstAngles` of points ``X1 [N1, d]``, ``X2 [N2, d]`` (None: the same
    points) for the settings ``w, b`` ``[S]``, with the norms ``n1 [S, N1]``, ``n2 [S,
    N2]``."""

    exact = True

    def __init__(self, X1, X2, w, b, n1, n2):
        self.X1, self.X2, self.w, self.b, self.n1, self.n2 = X1, X2, w, b, n1, n2
        self.dim = X1.shape[1] + 1
        self.cache: dict[int, tuple] = {}

    def units(self, i: int, r0: int, at: torch.Tensor):
        if i not in self.cache:
            def unit(X, n):
                a = torch.cat([X * (self.w[i] / X.shape[1]).sqrt(),
                               self.b[i].sqrt().expand(len(X), 1)], dim=1)
                return a / torch.where(n > 0, n, torch.ones_like(n))[:, None]

            u1 = unit(self.X1, self.n1[i])
            self.cache[i] = (u1, u1 if self.X2 is None else unit(self.X2, self.n2[i]))
        u1, u2 = self.cache[i]
        return u1[r0 + at[:, 0]], u2[at[:, 1]]


def _recursion(act: str, k12: torch.Tensor, t12: torch.Tensor, k1s: list[torch.Tensor],
               k2s: list[torch.Tensor], w: torch.Tensor, b: torch.Tensor, same: bool,
               wanted: dict[int, tuple[torch.Tensor, torch.Tensor]],
               first: _FirstAngles | None = None, fill=None) -> None:
    """Layers ``2 .. len(k1s)`` of the recursion from layer 1, row block by row block.

    ``k12, t12`` ``[S, N1, N2]`` (contiguous; updated in place to the last layer); ``k1s[i]``
    ``[S, N1]`` and ``k2s[i]`` ``[S, N2]``: the diagonals at layer ``i + 1``; ``w, b``
    ``[S]``. ``wanted`` maps a layer to outputs ``[S, N1, N2]`` that receive its ``K`` and
    ``Theta``. A block's rows go through every layer while they are in cache. ``fill``:
    None (``k12, t12`` hold layer 1), or ``fill(i, r0, kb, tb)`` writes layer 1 of setting
    ``i`` into the block of rows ``r0 ..`` (``kb, tb``) first. ReLU: the first layer's
    angles come from ``first`` (the inputs), else from ``k12`` alone."""
    S, N1, N2 = k12.shape
    rows = max(1, min(N1, BLOCK_ENTRIES // max(N2, 1)))
    relu = act == "relu"
    scratch = _Scratch(rows, (N2,), k12, 7 if relu else 3)
    layers = len(k1s) - 1
    f1s = [_row_factor(act, k) for k in k1s]
    f2s = f1s if same else [_row_factor(act, k) for k in k2s]
    if relu:
        wb = (w[:, None], b[:, None])
        nx2 = [_relu_rows(f, *wb) for f in f2s[:layers - 1]]
        nx1 = nx2 if same else [_relu_rows(f, *wb) for f in f1s[:layers - 1]]
        hv_buf = scratch.bufs[6]
        angles = first if first is not None else _FirstAngles()
    for i in range(S):
        wi = float(w[i])
        bi = b[i]
        bias = bool(bi != 0)
        for r0 in range(0, N1, rows):
            r1 = min(N1, r0 + rows)
            kb, tb = k12[i, r0:r1], t12[i, r0:r1]
            if fill is not None:
                fill(i, r0, kb, tb)
                out = wanted.get(1)
                if out is not None:
                    out[0][i, r0:r1].copy_(kb)
                    out[1][i, r0:r1].copy_(tb)
            if relu and layers > 0:
                hv = hv_buf[:r1 - r0]
                angles(i, r0, kb, f1s[0][i, r0:r1, None], f2s[0][i], hv, scratch, same)
            for step in range(layers):
                diag = (r0, k1s[step + 1][i, r0:r1]) if same else None
                if relu:
                    nxt = None if step == layers - 1 else (
                        tuple(v[i, r0:r1] for v in nx1[step]),
                        tuple(v[i] for v in nx2[step]))
                    _relu_block(kb, tb, hv, step == 0, f1s[step][i, r0:r1], f2s[step][i],
                                nxt, wi, bi, bias, diag, scratch)
                else:
                    _erf_block(kb, tb, f1s[step][i, r0:r1], f2s[step][i], wi, bi, diag,
                               scratch)
                out = wanted.get(step + 2)
                if out is not None:
                    out[0][i, r0:r1].copy_(kb)
                    out[1][i, r0:r1].copy_(tb)


def _check_step_inputs(k12, k1, k2, t12, fn: str):
    """The four kernel tensors of :func:`layer_step`, checked against ``k12 [..., N1, N2]``."""
    k12 = validation.tensor(k12, "k12", fn=fn, min_ndim=2, layout="[..., N1, N2]")
    N1, N2 = k12.shape[-2:]
    t12 = validation.tensor(t12, "t12", fn=fn, min_ndim=2, layout="[..., N1, N2]")
    k1 = validation.tensor(k1, "k1", fn=fn, min_ndim=1, layout="[..., N1]")
    k2 = validation.tensor(k2, "k2", fn=fn, min_ndim=1, layout="[..., N2]")
    for name, t, want in (("t12", t12, (N1, N2)), ("k1", k1, (N1,)), ("k2", k2, (N2,))):
        if tuple(t.shape[t.ndim - len(want):]) != want:
            raise InputError(f"{fn}: {name} must end with shape {want} to match k12 "
                             f"{tuple(k12.shape)}, got {tuple(t.shape)}")
        if t.dtype != k12.dtype or t.device != k12.device:
            raise InputTypeError(f"{fn}: {name} ({t.dtype}, {t.device}) must share the dtype "
                                 f"and device of k12 ({k12.dtype}, {k12.device})")
    for name, t in (("k1", k1), ("k2", k2)):
        if bool((t < 0).any()):
            raise InfiniteWidthError(f"{fn}: {name} holds the variances K^l(x, x) and must be "
                                     f">= 0; got {t.min().item():g}")
    return k12, k1, k2, t12


def layer_step(act: str, k12: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
               t12: torch.Tensor, sw2, sb2, *, same: bool = False):
    """One layer of the recursion: ``(K^l, Theta^l) -> (K^{l+1}, Theta^{l+1})``.

    ``k12``, ``t12``: ``[..., N1, N2]`` (``K^l`` and ``Theta^l``); ``k1`` ``[..., N1]`` and
    ``k2`` ``[..., N2]``: the diagonals ``K^l(x, x)`` of the two sets (``>= 0``), all of
    one floating dtype. ``same=True`` when the two sets are the same points (``N1 = N2``;
    diagonal entries are then set to their exact values). ``sw2 > 0``, ``sb2 >= 0``:
    numbers or tensors of the batch shape ``[...]``. Returns ``(k12, k1, k2, t12)`` of the
    next layer, new tensors (the arguments are not modified). The elementwise work runs on
    cache-sized row blocks (:data:`BLOCK_ENTRIES`). From a kernel alone the ReLU angle is
    ``arccos`` of the correlation, whose error is ``sqrt(eps)`` near ``c = 1``:
    :func:`nngp_ntk` takes the first layer's angles from the inputs and carries them.
    """
    fn = "infinite.layer_step"
    _check_act(act, fn)
    k12, k1, k2, t12 = _check_step_inputs(k12, k1, k2, t12, fn)
    same = validation.boolean(same, "same", fn=fn)
    N1, N2 = k12.shape[-2:]
    if same and N1 != N2:
        raise InputError(f"{fn}: same=True needs one set of points (N1 = N2), got k12 "
                         f"{tuple(k12.shape)}")
    w, b = _settings(sw2, sb2, k12.dtype, k12.device, strict_b=False, fn=fn)
    try:
        batch = torch.broadcast_shapes(k12.shape[:-2], t12.shape[:-2], k1.shape[:-1],
                                       k2.shape[:-1], w.shape)
    except RuntimeError:
        raise InputError(f"{fn}: the batch shapes of k12 {tuple(k12.shape[:-2])}, t12 "
                         f"{tuple(t12.shape[:-2])}, k1 {tuple(k1.shape[:-1])}, k2 "
                         f"{tuple(k2.shape[:-1])} and sw2/sb2 {tuple(w.shape)} do not "
                         "broadcast") from None
    w = w.expand(batch).reshape(-1)
    b = b.expand(batch).reshape(-1)
    K = k12.new_empty(*batch, N1, N2).copy_(k12.expand(*batch, N1, N2)).view(-1, N1, N2)
    T = t12.new_empty(*batch, N1, N2).copy_(t12.expand(*batch, N1, N2)).view(-1, N1, N2)
    k1f = k1.expand(*batch, N1).reshape(-1, N1)
    k2f = k2.expand(*batch, N2).reshape(-1, N2)
    k1n = _diag_step(act, k1f, w[:, None], b[:, None])
    k2n = k1n if same else _diag_step(act, k2f, w[:, None], b[:, None])
    _recursion(act, K, T, [k1f, k1n], [k2f, k2n], w, b, same, {})
    out = (K.view(*batch, N1, N2), k1n.view(*batch, N1), k2n.view(*batch, N2),
           T.view(*batch, N1, N2))
    for name, t in zip(("k12", "k1", "k2", "t12"), out, strict=True):
        validation.finite_output(t, f"the next layer's {name}", fn=fn, cause="sw2, sb2 or "
                                 "the kernels are too large for the dtype")
    return out


@threads.fair_share
def nngp_ntk(X1: torch.Tensor, X2: torch.Tensor | None = None, *, act: str, sw2, sb2,
             depth) -> Kernels:
    """Infinite-width NNGP ``K^L`` and NTK ``Theta^L`` of a fully connected network.

    Args:
        X1: ``[N1, d]``; X2: ``[N2, d]`` (default: ``X1``), finite, one floating dtype.
        act: ``"relu"`` or ``"erf"``.
        sw2, sb2: weight and bias variances, numbers or tensors broadcasting to a batch
            shape ``S`` of settings (``sw2 > 0``, ``sb2 >= 0``).
        depth: an int ``L >= 1`` (the number of linear layers; ``L = 1`` is the linear model)
            or a sequence of ints (all computed in one pass up to the largest), at most
            :data:`MAX_DEPTH`.

    Returns:
        :class:`Kernels` ``(nngp, ntk)``, each ``[*S, N1, N2]`` for an int depth and
        ``[*S, D, N1, N2]`` for ``D`` depths (in the order given). Dtype and device of
        ``X1``. ReLU carries every pair's angle through the layers without ``arccos``
        (:func:`_relu_block`), so duplicate and near-duplicate points are as accurate as
        the others; a zero input with ``sb2 = 0`` has kernel 0 with every point. Raises
        when the recursion overflows the dtype.
    """
    fn = "infinite.nngp_ntk"
    _check_act(act, fn)
    X1, X2, same = _check_pair(X1, X2, fn, ndim=2, layout="[N, d] (flatten images first)")
    depths, scalar = _check_depths(depth, fn)
    w, b = _settings(sw2, sb2, X1.dtype, X1.device, strict_b=False, fn=fn)
    out = _nngp_ntk(act, X1, X2, same, w, b, depths, scalar)
    return _finite_kernels(out, fn)


def _nngp_ntk(act, X1, X2, same, w, b, depths, scalar) -> Kernels:
    S = w.shape
    wf, bf = w.reshape(-1), b.reshape(-1)
    d = X1.shape[1]
    G = X1 @ X2.T
    k1s = [wf[:, None] * (X1 * X1).sum(1) / d + bf[:, None]]
    k2s = k1s if same else [wf[:, None] * (X2 * X2).sum(1) / d + bf[:, None]]
    top = max(depths)
    for _ in range(top - 1):       # the diagonals of every layer: O(N) each
        k1s.append(_diag_step(act, k1s[-1], wf[:, None], bf[:, None]))
        if not same:
            k2s.append(_diag_step(act, k2s[-1], wf[:, None], bf[:, None]))
    N1, N2 = G.shape
    k12 = G.new_empty(len(wf), N1, N2)
    t12 = torch.empty_like(k12)
    if same:       # BLAS does not return an exactly symmetric Gram matrix: (G + G^T) / 2
        G += t12[0].copy_(G.T)     # (a blocked transpose; t12 is overwritten later)

    def fill(i: int, r0: int, kb: torch.Tensor, tb: torch.Tensor) -> None:
        """``K^1 = Theta^1 = b + w G / d`` of setting ``i``, rows ``r0 ..``, in cache."""
        g = G[r0:r0 + len(kb)]
        if same:
            g = torch.div(g, 2, out=tb)
        torch.addcmul(bf[i], wf[i], torch.div(g, d, out=tb), out=kb)
        if same:   # exact symmetric diagonal
            kb.diagonal(r0).copy_(k1s[0][i, r0:r0 + len(kb)])
        tb.copy_(kb)

    first = _PointAngles(X1, None if same else X2, wf, bf, k1s[0].sqrt(), k2s[0].sqrt()) \
        if act == "relu" else None
    if scalar:
        _recursion(act, k12, t12, k1s, k2s, wf, bf, same, {}, first, fill)
        return Kernels(k12.view(*S, N1, N2), t12.view(*S, N1, N2))
    K = k12.new_empty(k12.shape[0], len(depths), N1, N2)
    T = torch.empty_like(K)
    index = {layer: depths.index(layer) for layer in depths}
    _recursion(act, k12, t12, k1s, k2s, wf, bf, same,
               {layer: (K[:, i], T[:, i]) for layer, i in index.items()}, first, fill)
    for i, layer in enumerate(depths):        # a depth asked for twice
        if i != index[layer]:
            K[:, i], T[:, i] = K[:, index[layer]], T[:, index[layer]]
    return Kernels(K.view(*S, len(depths), N1, N2), T.view(*S, len(depths), N1, N2))


# -------------------------------------------------------------- convolutional networks

READOUTS = ("flatten", "gap")


def _erf_terms(k12: torch.Tensor, ka: torch.Tensor, kb: torch.Tensor):
    """erf: ``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` for ``Cov(u, v) = k12`` and
    variances ``ka``, ``kb`` (all broadcast together)."""
    aa = ((1 + 2 * ka) * (1 + 2 * kb)).sqrt()
    r = (2 * k12 / aa).clamp(-1.0, 1.0)
    return (2 / math.pi) * torch.arcsin(r), (4 / math.pi) / (aa * (1 - r * r).sqrt())


class _Box:
    """The sum over the 3x3 offsets ``delta`` of ``A[..., p + delta]``, circular, on the last
    two (spatial) axes ``[..., H, W]`` (9 times the 3x3 box filter): an exact sum of the 9
    terms, as a product with the ``[H W, H W]`` 0/1 circulant matrix for small or narrow
    images (``H W <= P``, or ``W < 8`` and ``H W <= 4 P``; ``P`` = 32 in float64, 64 in
    float32: the product costs ``H W`` flops an entry), else as sums of shifted slices along
    each axis (``avg_pool2d`` on a circular pad is several times slower on CPU)."""

    def __init__(self, H: int, W: int, like: torch.Tensor):
        self.H, self.W = H, W
        self.M = None
        small = 32 if like.element_size() > 4 else 64
        if H * W <= small or (W < 8 and H * W <= 4 * small):
            idx = torch.arange(H * W).view(H, W)
            M = torch.zeros(H * W, H * W, dtype=like.dtype)
            for dh in (-1, 0, 1):
                for dw in (-1, 0, 1):
                    # row src[p] of column p: the position p + delta
                    src = idx.roll((-dh, -dw), dims=(0, 1)).reshape(-1)
                    M.index_put_((src, torch.arange(H * W)), torch.ones(H * W, dtype=M.dtype),
                                 accumulate=True)
            self.M = M.to(like.device)

    def __call__(self, A: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A [..., H, W]``, contiguous; ``out``: a contiguous array of its shape, or None."""
        H, W = self.H, self.W
        if out is None:
            out = torch.empty_like(A, memory_format=torch.contiguous_format)
        if self.M is not None:
            torch.matmul(A.reshape(-1, H * W), self.M, out=out.view(-1, H * W))
            return out
        P = nn.functional.pad(A.reshape(-1, 1, H, W), (1, 1, 1, 1), mode="circular")[:, 0]
        r = P[..., :W] + P[..., 1:W + 1]
        r += P[..., 2:]
        o = out.view(-1, H, W)
        torch.add(r[:, :H], r[:, 1:H + 1], out=o)
        o += r[:, 2:]
        return out


class _PatchAngles(_FirstAngles):
    """:class:`_FirstAngles` of the 3x3 patches (circular) of images ``X1 [N1, C, H, W]``
    and ``X2`` (None: the same images), one setting ``w, b`` (numbers): the pair at block
    index ``(row, column, r, p)`` is the patch of the row's image at ``p`` and the column's
    at ``p + offsets[r]``. ``n1 [N1, H, W]``, ``n2``: the norms ``sqrt(K^1(x, x))`` of the
    patches."""

    exact = True

    def __init__(self, X1, X2, w: float, b: float, n1, n2, offsets):
        C = X1.shape[1]

        def pad(X):
            return nn.functional.pad(X, (1, 1, 1, 1), mode="circular")

        self.X1 = pad(X1)
        self.X2 = self.X1 if X2 is None else pad(X2)
        self.n1, self.n2 = n1, n2
        self.scale, self.bias = math.sqrt(w / (9 * C)), math.sqrt(b)
        self.off = torch.tensor(offsets, device=X1.device).view(-1, 2)
        self.dim = 9 * C + 1
        d = torch.arange(3, device=X1.device)
        self.d, self.c = d, torch.arange(C, device=X1.device)

    def _unit(self, Xp, n, img, ph, pw):
        v = Xp[img[:, None, None, None], self.c[:, None, None],
               (ph[:, None] + self.d)[:, None, :, None], (pw[:, None] + self.d)[:, None, None, :]]
        a = torch.cat([v.reshape(len(img), -1) * self.scale,
                       v.new_full((len(img), 1), self.bias)], dim=1)
        norm = n[img, ph, pw]
        return a / torch.where(norm > 0, norm, torch.ones_like(norm))[:, None]

    def units(self, i: int, r0: int, at: torch.Tensor):
        row, col, r, ph, pw = at.unbind(1)
        H, W = self.n1.shape[1:]
        qh, qw = (ph + self.off[r, 0]) % H, (pw + self.off[r, 1]) % W
        return (self._unit(self.X1, self.n1, r0 + row, ph, pw),
                self._unit(self.X2, self.n2, col, qh, qw))


def _cnn_relu_next(n: torch.Tensor, N: torch.Tensor, w: float, b: float):
    """For a ReLU convolution from the norms ``n = sqrt(K^l(x, x))`` ``[N, H, W]`` at every
    position to the next layer's ``N``: the next layer's features at ``p``, ``(sqrt(b),
    sqrt(w/9) f_delta)`` over the offsets ``delta`` (``f_delta`` the ReLU features at ``p +
    delta``, of norm ``n(p + delta) / sqrt(2)``), divided by ``N(p)``, have the unit
    "radial" part ``2 P``, ``P = (sqrt(b), sqrt(w/18) n(p + delta)) / (2 N(p))`` ``[10, N,
    H, W]`` (9 components when ``b = 0``); returns ``(P, c)``, ``c = sqrt(w / (36 pi)) / N``
    (0 where ``N = 0``: ``b = 0`` and a zero patch, whose kernel is 0)."""
    inv = torch.where(N > 0, 1 / N, torch.zeros_like(N))
    comps = [n.roll((-dh, -dw), dims=(-2, -1)) for dh in (-1, 0, 1) for dw in (-1, 0, 1)]
    P = torch.stack(comps) * (math.sqrt(w / 18) / 2)
    if b > 0:
        P = torch.cat([torch.full_like(n, math.sqrt(b) / 2)[None], P])
    return P * inv, inv * math.sqrt(w / (36 * math.pi))


def _cnn_relu_block(K, Th, hv, first: bool, n1, n2, nxt, w: float, b: torch.Tensor, diag,
                    out, box: _Box, scratch: _Scratch) -> None:
    """One ReLU layer of the convolutional recursion on a row block, in place. ``K, Th, hv``
    ``[m, N2, R, H, W]``: ``K^l``, ``Theta^l`` and ``sin^2(theta/2)`` (:func:`_relu_angles`)
    of the pairs (position ``p`` of the row's image, ``p + r`` of the column's); ``n1 [m,
    1, 1, H, W]``, ``n2 [N2, R, H, W]``: their norms ``sqrt(K^l(x, x))``. With ``s = n1 n2``,
    ``A = s J / 2 = pi E[phi(u) phi(v)]`` and ``F = (pi - theta) Theta^l = 2 pi E[phi'(u)
    phi'(v)] Theta^l``:

    ``out`` (None, or the readout's rows ``(K, Theta)`` ``[m, N2]``) receives ``K = w
    mean(A) / pi + b`` and ``K + w mean(F) / (2 pi)``, the means over ``(r, p)``;
    ``nxt`` (None at the last layer, else ``(P1, P2, c1, c2)`` of :func:`_cnn_relu_next`
    for the rows ``[.., m, 1, 1, H, W]`` and the columns at ``p + r`` ``[.., N2, R, H, W]``)
    lets ``K, Th`` receive the convolution ``K^{l+1} = b + w box(A) / (9 pi)``,
    ``Theta^{l+1} = K^{l+1} + w box(F) / (18 pi)`` (:class:`_Box`) and ``hv`` the next
    layer's

    ``sin^2(theta'/2) = |P1 - P2|^2 + c1 c2 box(s (pi - J))``,

    a quarter of the squared distance between the next layer's unit features (the radial
    part, from the norms, and the angular one, :func:`_relu_defect`): nonnegative terms, no
    cancellation (the fully connected :func:`_relu_block` is the case of one position).
    ``diag``: None, or ``(r0, k)`` when the rows are the images of the columns ``r0 ..``:
    their pairs at ``r = 0`` get the exact ``E[phi(u)^2] = k/2`` (``k [m, H, W]``)."""
    m = K.shape[0]
    sh, ch, th, psi, u, s = scratch.take(m)[:6]
    _relu_angles(hv, sh, ch, th, psi, u, scratch, first)
    torch.mul(n1, n2, out=s)                                   # sqrt(k11 k22)
    if nxt is not None:
        _relu_defect(th, sh, psi, hv)                          # pi - J
        th.mul_(s)
    u.mul_(s)                                                  # A = s J / 2
    if diag is not None:
        _pair_diag(u, diag[0]).copy_(diag[1].permute(1, 2, 0)).mul_(math.pi / 2)
    Th.mul_(psi)                                               # F
    if out is not None:
        sp = (2, 3, 4)
        torch.add(b, u.mean(dim=sp), alpha=w / math.pi, out=out[0])
        torch.add(out[0], Th.mean(dim=sp), alpha=w / _TWO_PI, out=out[1])
    if nxt is None:
        return
    torch.add(b, box(u, out=psi), alpha=w / (9 * math.pi), out=K)       # K^{l+1}
    torch.add(K, box(Th, out=psi), alpha=w / (18 * math.pi), out=Th)    # Theta^{l+1}
    P1, P2, c1, c2 = nxt
    box(th, out=hv).mul_(c1).mul_(c2)
    for p1, p2 in zip(P1, P2, strict=True):
        torch.sub(p1, p2, out=sh)
        hv.addcmul_(sh, sh)
    if diag is not None:
        _pair_diag(hv, diag[0]).zero_()


@threads.fair_share
def cnn_nngp_ntk(X1: torch.Tensor, X2: torch.Tensor | None = None, *, act: str, sw2: float,
                 sb2: float, depth, readout: str) -> Kernels:
    """Infinite-width NNGP and NTK of a convolutional network (:func:`ntk_cnn`): ``depth - 1``
    3x3 convolutions with circular padding, stride 1, each followed by ``act``, then a dense
    readout of the flattened features (``"flatten"``) or of their global average over
    positions (``"gap"``); NTK parametrization, as :func:`nngp_ntk` (``depth = 1`` is the
    readout of the input).

    With ``K^l_{pp'}(x, x')`` the covariance between position ``p`` of ``x`` and ``p'`` of
    ``x'``, a convolution gives ``K^{l+1}_{pp'} = sigma_w^2 (1/9) sum_delta
    E[phi(u_{p+delta}) phi(v_{p'+delta})] + sigma_b^2`` (and the NTK likewise with the
    derivative term). Indexed by ``(p, r = p' - p)``, a convolution is a 3x3 box filter over
    ``p`` at fixed ``r``, and ``r = 0`` is closed under the recursion: a flatten readout needs
    ``[N1, N2, H, W]`` per layer, a pooled one every offset, ``[N1, N2, H W, H, W]``. The
    readout averages over ``p`` (flatten) or over ``(p, p')`` (gap). ReLU carries the angle
    of every pair of positions as ``sin^2(theta/2)`` (:func:`_cnn_relu_block`; the first
    layer's from the 3x3 patches themselves), never ``arccos`` of a correlation: duplicate
    images, an image and its double without bias, coincident patches (a constant image, a
    translate under pooling) and near-coincident ones are accurate to a few ulps.

    Args:
        X1: images ``[N1, C, H, W]``; X2: ``[N2, C, H, W]`` (default: ``X1``).
        act: ``"relu"`` or ``"erf"``. sw2 > 0, sb2 >= 0: numbers.
        depth: an int ``>= 1`` or a sequence of ints.
        readout: ``"flatten"`` or ``"gap"``.

    Returns:
        :class:`Kernels` ``[N1, N2]`` (or ``[D, N1, N2]`` for ``D`` depths).
    """
    fn = "infinite.cnn_nngp_ntk"
    _check_act(act, fn)
    if not isinstance(readout, str) or readout not in READOUTS:
        raise InfiniteWidthError(f"{fn}: unknown readout {readout!r}; use one of {READOUTS}")
    X1, X2, same = _check_pair(X1, X2, fn, ndim=4, layout="images [N, C, H, W]")
    for name, v in (("sw2", sw2), ("sb2", sb2)):
        if isinstance(v, torch.Tensor) and v.numel() != 1:
            raise InfiniteWidthError(f"{fn}: {name}: one setting per call for CNN kernels")
    w = float(_variance("sw2", sw2, X1.dtype, X1.device, strict=True, fn=fn))
    b = float(_variance("sb2", sb2, X1.dtype, X1.device, strict=False, fn=fn))
    depths, scalar = _check_depths(depth, fn)
    return _finite_kernels(_cnn_kernels(act, X1, X2, same, w, b, depths, scalar, readout), fn)


def _cnn_kernels(act, X1, X2, same, w, b, depths, scalar, readout) -> Kernels:
    C, H, W = X1.shape[1:]
    # The state is indexed by (x, x', r, p): the covariance of position p of x with position
    # p + r of x' (circular). A convolution shifts p and p + r by the same offset, so in
    # these coordinates it is a 3x3 box filter over p for each r. Flatten needs r = 0 only.
    offsets = [(0, 0)] if readout == "flatten" else \
        [(i, j) for i in range(H) for j in range(W)]          # r = (0, 0) first

    def at_offsets(Z: torch.Tensor) -> torch.Tensor:
        """``Z [..., H, W]`` -> ``[..., R, H, W]`` with entry ``Z[..., p + r]``."""
        return torch.stack([torch.roll(Z, shifts=(-i, -j), dims=(-2, -1)) for i, j in offsets],
                           dim=-3)

    G = torch.einsum("nchw,mcrhw->nmrhw", X1, at_offsets(X2)) / C  # [N1, N2, R, H, W]
    box = _Box(H, W, G)
    w9 = w / 9
    top = max(depths)
    # the variances of every layer's units (x = x', r = 0), O(N P) each
    k1s = [w9 * box((X1 * X1).sum(1) / C) + b]
    k2s = k1s if same else [w9 * box((X2 * X2).sum(1) / C) + b]
    for _ in range(top - 2):
        k1s.append(w9 * box(_phi2(act, k1s[-1])) + b)
        if not same:
            k2s.append(w9 * box(_phi2(act, k2s[-1])) + b)
    sp = (2, 3, 4)
    N1, N2 = G.shape[:2]
    lin = w * G.mean(dim=sp) + b                       # depth 1: the readout of the input
    outK = {d: lin.clone() if d == 1 else G.new_empty(N1, N2) for d in set(depths)}
    outT = {d: lin.clone() if d == 1 else G.new_empty(N1, N2) for d in set(depths)}
    relu = act == "relu"
    bt = G.new_tensor(b)
    if relu:
        # norms at p (rows) and p + r (columns); the radial parts of every layer's angles
        n1s = [k.sqrt() for k in k1s]
        n2s = n1s if same else [k.sqrt() for k in k2s]
        n2r = [at_offsets(n) for n in n2s]
        nxt = []
        for i in range(top - 2):
            P1, c1 = _cnn_relu_next(n1s[i], n1s[i + 1], w, b)
            P2, c2 = (P1, c1) if same else _cnn_relu_next(n2s[i], n2s[i + 1], w, b)
            nxt.append((P1, at_offsets(P2), c1, at_offsets(c2)))
        first = _PatchAngles(X1, None if same else X2, w, b, n1s[0], n2s[0], offsets)
    else:
        diag = [_erf_terms(k, k, k) for k in k1s]     # E[phi^2], E[phi'^2]
        k2r = [at_offsets(k)[None] for k in k2s]       # columns' variances at p + r
    # Rows are independent given the variances: each block of rows goes through every layer
    # while it is in cache.
    rows = max(1, min(N1, BLOCK_ENTRIES // G[0].numel()))
    scratch = _Scratch(rows, G.shape[1:], G, 9 if relu else 2)
    for r0 in range(0, N1 if top > 1 else 0, rows):
        r1 = min(N1, r0 + rows)
        if relu:
            K, Th, hv = scratch.take(r1 - r0)[6:]
        else:
            K, Th = scratch.take(r1 - r0)
        box(G[r0:r1], out=K).mul_(w9).add_(b)          # the first convolution
        Th.copy_(K)
        if relu:
            first(0, r0, K, n1s[0][r0:r1, None, None], n2r[0], hv, scratch, same)
        for layer in range(2, top + 1):
            i = layer - 2
            out = (outK[layer][r0:r1], outT[layer][r0:r1]) if layer in outK else None
            if relu:
                step = None
                if layer < top:
                    P1, P2, c1, c2 = nxt[i]
                    step = (P1[:, r0:r1, None, None], P2, c1[r0:r1, None, None], c2)
                _cnn_relu_block(K, Th, hv, layer == 2, n1s[i][r0:r1, None, None], n2r[i],
                                step, w, bt, (r0, k1s[i][r0:r1]) if same else None, out,
                                box, scratch)
                continue
            Fk, Fd = _erf_terms(K, k1s[i][r0:r1, None, None], k2r[i])
            if same:             # entries x = x', r = 0: the exact variances
                idx = torch.arange(r0, r1, device=G.device)
                Fk[idx - r0, idx, 0] = diag[i][0][r0:r1]
                Fd[idx - r0, idx, 0] = diag[i][1][r0:r1]
            Fd *= Th
            if out is not None:  # the readout averages over p (flatten) or (p, p + r)
                out[0].copy_(Fk.mean(dim=sp).mul_(w).add_(b))
                out[1].copy_(Fd.mean(dim=sp).mul_(w).add_(out[0]))
            if layer == top:
                break
            box(Fk, out=K).mul_(w9).add_(b)
            box(Fd, out=Th).mul_(w9).add_(K)
    out = {d: (outK[d], outT[d]) for d in outK}
    if scalar:
        return Kernels(*out[depths[0]])
    return Kernels(torch.stack([out[d][0] for d in depths]),
                   torch.stack([out[d][1] for d in depths]))


# ------------------------------------------------------------------------ fixed points

def _erf_map_q(q, w, b):
    return w * (2 / math.pi) * torch.arcsin(2 * q / (1 + 2 * q)) + b


def _erf_q(w, b, iters: int) -> torch.Tensor:
    """``q*`` of erf: ``iters`` Newton steps from ``q = w + b`` (stopping early once a step
    repeats its iterate exactly, after which every step would)."""
    q = w + b
    for _ in range(iters):
        a = 1 + 2 * q
        dmap = w * (4 / math.pi) / (a * (1 + 4 * q).sqrt())
        nq = q - (_erf_map_q(q, w, b) - q) / (dmap - 1)
        if torch.equal(nq, q):
            break
        q = nq
    return q


def _erf_chi_1(q, w) -> torch.Tensor:
    return w * (4 / math.pi) / (1 + 4 * q).sqrt()


def _erf_c(q, w, b, iters: int) -> torch.Tensor:
    """``c*`` of erf: Newton from ``c = 0`` (stopping early as :func:`_erf_q`)."""
    a = 1 + 2 * q
    c = torch.zeros_like(w)
    for _ in range(iters):
        g = (w * (2 / math.pi) * torch.arcsin(2 * q * c / a) + b) / q
        chi_cc = w * (4 / math.pi) / (a * a - 4 * q * q * c * c).clamp_min(1e-300).sqrt()
        step = (g - c) / (chi_cc - 1)
        nc = torch.where(chi_cc < 1, (c - step).clamp(max=1.0), torch.ones_like(c))
        if torch.equal(nc, c):
            break
        c = nc
    return c


def fixed_point(act: str, sw2, sb2, *, iters: int = 200) -> FixedPoint:
    """Fixed points ``q*``, ``c*``, slopes ``chi_1``, ``chi_c*`` and depth scales.

    ``sw2 > 0`` and ``sb2 > 0`` (numbers or tensors; float64 unless a floating tensor is
    given). ReLU in closed form: ``chi_1 = chi_c* = sw2/2``, ``c* = 1``,
    ``q* = sb2 / (1 - sw2/2)`` for ``sw2 < 2`` and ``inf`` for ``sw2 >= 2`` (the diagonal
    diverges: there is no chaotic phase). Erf by Newton's method: for ``q*`` from
    ``sw2 + sb2`` (a point right of the root of the concave ``map(q) - q``), for ``c*`` from
    ``c = 0`` (left of the stable root of the convex ``map(c) - c``), so both converge
    monotonically; at most ``iters`` Newton steps (``1 <= iters <=`` :data:`MAX_ITERS`),
    fewer once an iterate repeats. Raises when the variances are too large for the dtype.
    """
    fn = "infinite.fixed_point"
    _check_act(act, fn)
    iters = validation.integer(iters, "iters", fn=fn, lo=1, hi=MAX_ITERS)
    ref = next((v for v in (sw2, sb2) if isinstance(v, torch.Tensor) and
                v.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.float64
    device = ref.device if ref is not None else None
    w, b = _settings(sw2, sb2, dtype, device, strict_b=True, fn=fn)
    if act == "relu":
        chi = w / 2
        q = torch.where(chi < 1, b / (1 - chi).clamp_min(1e-300), torch.full_like(w, math.inf))
        c = torch.ones_like(w)
        chi_c = chi.clone()
    else:
        q = _erf_q(w, b, iters)
        a = 1 + 2 * q
        chi = _erf_chi_1(q, w)
        c = _erf_c(q, w, b, iters)
        # ordered phase (chi_1 <= 1): the only fixed point in [0, 1] is c* = 1 (convexity)
        c = torch.where(chi <= 1, torch.ones_like(c), c)
        chi_c = w * (4 / math.pi) / (a * a - 4 * q * q * c * c).clamp_min(1e-300).sqrt()
    lc, lcc = chi.log(), chi_c.log()
    xi_1 = 1 / lc.abs()
    xi_c = 1 / lcc.abs()
    ratio = lcc - lc
    xi_star = torch.where(ratio < -1e-12, -1 / ratio.clamp(max=-1e-300),
                          torch.full_like(w, math.inf))
    out = FixedPoint(q, c, chi, chi_c, xi_1, xi_c, xi_star)
    if any(bool(torch.isnan(v).any()) for v in out):
        raise InputError(f"{fn}: the fixed point is undefined (NaN) for these variances: sw2 "
                         "or sb2 is too large for the dtype; pass smaller variances")
    return out


def _chaos_bound(b: torch.Tensor) -> torch.Tensor:
    """A ``sw2`` beyond the erf transition for bias variance ``b``: as ``q* <= sw2 + b``,
    ``chi_1 >= sw2 (4/pi) / sqrt(1 + 4 sw2 + 4 b)``, which exceeds 1 beyond the larger root
    of ``(16/pi^2) s^2 - 4 s - (1 + 4 b)``."""
    a = 16 / math.pi ** 2
    return (4 + (16 + 4 * a * (1 + 4 * b)).sqrt()) / (2 * a)


def critical_sw2(act: str, sb2, *, iters: int = 100) -> torch.Tensor:
    """The order-to-chaos transition ``sigma_w^2`` where ``chi_1 = 1``, for each ``sb2 > 0``.

    ReLU: ``2`` for every ``sb2`` (beyond it ``q*`` diverges). Erf: ``iters`` bisection
    steps on ``sw2`` (``chi_1`` increases with ``sw2``; at ``sw2 = pi/4`` it is ``<= 1``),
    from the bracket ``[pi/4, 4 * 2^k]`` with the first ``k`` that is chaotic (``k`` taken
    from :func:`_chaos_bound` for astronomically large ``sb2``, where doubling would take
    hundreds of steps).
    """
    fn = "infinite.critical_sw2"
    _check_act(act, fn)
    iters = validation.integer(iters, "iters", fn=fn, lo=1, hi=MAX_ITERS)
    _, b = _settings(1.0, sb2, sb2.dtype if isinstance(sb2, torch.Tensor) and
                     sb2.is_floating_point() else torch.float64,
                     sb2.device if isinstance(sb2, torch.Tensor) else None, strict_b=True,
                     fn=fn)
    if act == "relu":
        return torch.full_like(b, 2.0)
    lo = torch.full_like(b, math.pi / 4)
    doublings = torch.log2(_chaos_bound(b.double()) / 4).ceil().clamp_min(0)
    hi = torch.where(doublings > 60, 4 * 2.0 ** doublings, 4.0).to(b.dtype)
    if not bool(torch.isfinite(hi).all()):
        raise InputError(f"{fn}: sb2 is too large for the dtype (the transition sw2 "
                         "overflows); pass a smaller sb2")
    while True:
        ordered = _erf_chi_1(_erf_q(hi, b, 200), hi) <= 1
        if not bool(ordered.any()):
            break
        hi = torch.where(ordered, 2 * hi, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        chaotic = _erf_chi_1(_erf_q(mid, b, 60), mid) > 1
        hi = torch.where(chaotic, mid, hi)
        lo = torch.where(chaotic, lo, mid)
    out = (lo + hi) / 2
    validation.finite_output(out, "the transition sw2", fn=fn,
                             cause="sb2 is too large for the dtype")
    return out


# ----------------------------------------------------------------------- predictions

def _check_kernel_targets(K_train, Y, K_test_train, fn: str):
    """The kernels and targets of a prediction; returns ``Y`` as ``[..., N, k]``."""
    K_train = validation.tensor(K_train, "K_train", fn=fn, min_ndim=2, layout="[..., N, N]")
    Y = validation.tensor(Y, "Y", fn=fn, min_ndim=1, layout="[N] or [..., N, k]")
    if K_test_train is not None:
        K_test_train = validation.tensor(K_test_train, "K_test_train", fn=fn, min_ndim=2,
                                         layout="[..., M, N]")
        if K_test_train.dtype != K_train.dtype or K_test_train.device != K_train.device:
            raise InputTypeError(f"{fn}: K_test_train ({K_test_train.dtype}, "
                                 f"{K_test_train.device}) and K_train ({K_train.dtype}, "
                                 f"{K_train.device}) must share dtype and device")
    if K_train.shape[-1] != K_train.shape[-2]:
        raise InfiniteWidthError(f"{fn}: K_train must be [..., N, N], got "
                                 f"{tuple(K_train.shape)}")
    N = K_train.shape[-1]
    if Y.shape[0 if Y.ndim == 1 else -2] != N:
        raise InfiniteWidthError(f"{fn}: Y {tuple(Y.shape)} must be [N] or [..., N, k] with "
                                 f"N = {N} (K_train {tuple(K_train.shape)})")
    if K_test_train is not None and K_test_train.shape[-1] != N:
        raise InfiniteWidthError(f"{fn}: K_test_train {tuple(K_test_train.shape)} must be "
                                 f"[..., M, N] with N = {N}")
    return Y[:, None] if Y.ndim == 1 else Y


def mean_predictor(K_test_train: torch.Tensor, K_train: torch.Tensor,
                   Y: torch.Tensor) -> torch.Tensor:
    """``Theta(x, X) Theta(X, X)^{-1} Y``: the mean prediction after infinite training time.

    ``K_test_train`` ``[..., M, N]``, ``K_train`` ``[..., N, N]`` (invertible), ``Y``
    ``[N, k]`` (or ``[N]``, or batched ``[..., N, k]``); batch dimensions broadcast. Returns
    ``[..., M, k]``. Solved by LU (``torch.linalg.solve``) in the kernels' dtype; a singular
    ``K_train`` (duplicate points, a kernel of too low rank) raises.
    """
    fn = "infinite.mean_predictor"
    Y = _check_kernel_targets(K_train, Y, K_test_train, fn)
    try:
        coef = torch.linalg.solve(K_train, Y.to(K_train.dtype))
    except torch.linalg.LinAlgError:
        raise InputError(f"{fn}: K_train is singular (duplicate points, or a kernel of rank "
                         "< N): the mean predictor is undefined; drop duplicates or add a "
                         "ridge, K_train + lam I") from None
    except RuntimeError as e:
        raise InputError(f"{fn}: the batch shapes of K_train {tuple(K_train.shape)}, Y "
                         f"{tuple(Y.shape)} and K_test_train {tuple(K_test_train.shape)} do "
                         f"not broadcast ({e})") from None
    out = K_test_train @ coef
    validation.finite_output(out, "the mean prediction", fn=fn, cause="K_train is too close "
                             "to singular, or K_test_train, K_train or Y too large for the dtype")
    return out


def linearized(K_train: torch.Tensor, Y: torch.Tensor, *, lr, t, K_test_train=None,
               discrete: bool = False):
    """Outputs of the linearized model trained from ``f_0 = 0`` with a frozen kernel.

    Gradient flow on ``(1/2)|f(X) - Y|^2`` with learning rate ``lr`` for time ``t``:
    ``f_t(X) = (I - e^{-lr K t}) Y`` and ``f_t(x) = K(x, X) K^{-1} (I - e^{-lr K t}) Y``
    (``discrete=True``: ``t`` steps of gradient descent, ``(I - lr K)^t`` in place of
    ``e^{-lr K t}``). Computed in the eigenbasis of ``K_train`` (``eigh``), so that small
    eigenvalues are harmless: ``(1 - e^{-lr t lam}) / lam -> lr t``.

    ``K_train`` ``[..., N, N]`` (symmetric), ``Y`` ``[N, k]`` (or ``[N]``), ``lr > 0`` a
    number or a tensor broadcastable to the batch shape ``[...]`` (e.g. ``2 / lambda_max``
    per setting), ``t >= 0``. Returns ``(f_train [..., N, k], f_test [..., M, k] or None)``;
    raises when they overflow (``discrete`` with ``lr`` beyond ``2 / lambda_max``).
    """
    fn = "infinite.linearized"
    Y = _check_kernel_targets(K_train, Y, K_test_train, fn)
    checked = validation.real(t, "t", fn=fn, lo=0)
    t = t if isinstance(t, int | float) else checked
    discrete = validation.boolean(discrete, "discrete", fn=fn)
    lr = _variance("lr", lr, K_train.dtype, K_train.device, strict=True, fn=fn,
                   what="a learning rate")
    f_train, f_test = _linearized(K_train, Y, lr, t, K_test_train, discrete)
    for what, out in (("f_train", f_train), ("f_test", f_test)):
        if out is not None:
            validation.finite_output(out, what, fn=fn, cause="lr or t too large (the "
                                     "iteration diverges) or the kernels too large for the dtype")
    return f_train, f_test


def _linearized(K_train, Y, lr, t, K_test_train, discrete):
    lam, V = torch.linalg.eigh(K_train)
    lr_b = lr[..., None] if lr.ndim else lr
    x = lr_b * lam
    if discrete:
        decay = (1 - x) ** t
    else:
        decay = torch.exp(-x * t)
    tiny = lam.abs() <= 1e-300
    gain = torch.where(tiny, lr_b * t * torch.ones_like(lam),
                       (1 - decay) / torch.where(tiny, torch.ones_like(lam), lam))
    if not discrete:
        gain = torch.where(tiny, gain, -torch.expm1(-x * t) / torch.where(tiny,
                                                                          torch.ones_like(lam),
                                                                          lam))
    coef = V.transpose(-1, -2) @ Y.to(K_train.dtype)                    # [..., N, k]
    f_train = V @ ((gain * lam)[..., None] * coef)
    f_test = None
    if K_test_train is not None:
        f_test = K_test_train @ (V @ (gain[..., None] * coef))
    return f_train, f_test


# --------------------------------------------------------- finite networks, NTK param.

class Erf(nn.Module):
    """The elementwise error function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def _net_args(fn: str, sw2, sb2, dtype, **sizes) -> tuple[float, float]:
    """The sizes (ints >= 1), variances (``sw2 > 0``, ``sb2 >= 0``) and dtype of a finite
    network in the NTK parametrization; returns the variances as floats."""
    for name, v in sizes.items():
        validation.integer(v, name, fn=fn, lo=1)
    sw2 = validation.real(sw2, "sw2", fn=fn, lo=0, lo_open=True)
    sb2 = validation.real(sb2, "sb2", fn=fn, lo=0)
    if dtype not in (torch.float32, torch.float64):
        raise InputTypeError(f"{fn}: dtype must be torch.float32 or torch.float64, got "
                             f"{dtype!r}")
    return sw2, sb2


def _net_generator(seed, generator, fn: str) -> torch.Generator:
    """``seed`` (an int >= 0) or ``generator``; neither: the profile's seed
    (:func:`dltheory.validation.generator`). Never torch's global generator."""
    if seed is not None and generator is not None:
        raise InputError(f"{fn}: pass seed or generator, not both")
    if seed is not None:
        return validation.seeded_generator(validation.integer(seed, "seed", fn=fn, lo=0,
                                                              hi=2**64 - 1))
    return validation.generator(generator, fn=fn)


class NTKLinear(nn.Module):
    """``h = (sigma_w / sqrt(n_in)) W x + sigma_b b`` with ``W, b ~ N(0, 1)`` (NTK
    parametrization): the gradient with respect to ``(W, b)`` carries the factors, so the
    empirical NTK of a stack of these tends to :func:`nngp_ntk`'s ``Theta``. Weights from
    ``generator`` (default: a generator seeded with the profile's seed)."""

    def __init__(self, n_in: int, n_out: int, sw2: float, sb2: float, *,
                 generator: torch.Generator | None = None, dtype=torch.float64):
        fn = "infinite.NTKLinear"
        sw2, sb2 = _net_args(fn, sw2, sb2, dtype, n_in=n_in, n_out=n_out)
        generator = validation.generator(generator, fn=fn)
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator,
                                               dtype=torch.float64).to(dtype))
        self.bias = nn.Parameter(torch.randn(n_out, generator=generator,
                                             dtype=torch.float64).to(dtype))
        self.sw, self.sb, self.n_in = math.sqrt(sw2), math.sqrt(sb2), n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.sw / math.sqrt(self.n_in)) * (x @ self.weight.T) + self.sb * self.bias


@threads.fair_share
def ntk_mlp(d_in: int, width: int, depth: int, act: str, sw2: float, sb2: float, *,
            out: int = 1, seed: int | None = None, generator: torch.Generator | None = None,
            dtype=torch.float64) -> nn.Sequential:
    """A finite fully connected network in the NTK parametrization: ``depth`` linear layers
    (``depth - 1`` hidden layers of ``width`` units, activation ``act``), ``out`` outputs,
    weights and biases ``N(0, 1)`` drawn from ``generator``, or from a generator seeded with
    ``seed`` (default: the profile's seed; never torch's global generator). Sizes are ints
    ``>= 1``, ``sw2 > 0``, ``sb2 >= 0``."""
    fn = "infinite.ntk_mlp"
    _check_act(act, fn)
    sw2, sb2 = _net_args(fn, sw2, sb2, dtype, d_in=d_in, width=width, depth=depth, out=out)
    gen = _net_generator(seed, generator, fn)
    dims = [d_in] + [width] * (depth - 1) + [out]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(NTKLinear(dims[i], dims[i + 1], sw2, sb2, generator=gen, dtype=dtype))
        if i < depth - 1:
            layers.append(nn.ReLU() if act == "relu" else Erf())
    return nn.Sequential(*layers)


class NTKConv2d(nn.Module):
    """``h = (sigma_w / sqrt(9 c_in)) W * x + sigma_b b``: a 3x3 convolution with circular
    padding in the NTK parametrization, ``W, b ~ N(0, 1)`` from ``generator`` (default: a
    generator seeded with the profile's seed)."""

    def __init__(self, c_in: int, c_out: int, sw2: float, sb2: float, *,
                 generator: torch.Generator | None = None, dtype=torch.float64):
        fn = "infinite.NTKConv2d"
        sw2, sb2 = _net_args(fn, sw2, sb2, dtype, c_in=c_in, c_out=c_out)
        generator = validation.generator(generator, fn=fn)
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3, generator=generator,
                                               dtype=torch.float64).to(dtype))
        self.bias = nn.Parameter(torch.randn(c_out, generator=generator,
                                             dtype=torch.float64).to(dtype))
        self.sw, self.sb, self.fan = math.sqrt(sw2), math.sqrt(sb2), 9 * c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="circular")
        return (self.sw / math.sqrt(self.fan)) * nn.functional.conv2d(x, self.weight) + \
            self.sb * self.bias[:, None, None]


class _GlobalMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


@threads.fair_share
def ntk_cnn(c_in: int, hw: tuple[int, int], width: int, depth: int, act: str, sw2: float,
            sb2: float, *, readout: str, out: int = 1, seed: int | None = None,
            generator: torch.Generator | None = None, dtype=torch.float64) -> nn.Sequential:
    """A finite convolutional network in the NTK parametrization, the finite counterpart of
    :func:`cnn_nngp_ntk`: ``depth - 1`` layers of :class:`NTKConv2d` (``width`` channels) and
    ``act``, then ``"flatten"`` or ``"gap"`` and an :class:`NTKLinear` readout to ``out``
    outputs. Inputs ``[N, c_in, *hw]``. Randomness as :func:`ntk_mlp`."""
    fn = "infinite.ntk_cnn"
    _check_act(act, fn)
    if not isinstance(readout, str) or readout not in READOUTS:
        raise InfiniteWidthError(f"{fn}: unknown readout {readout!r}; use one of {READOUTS}")
    if not isinstance(hw, tuple | list) or len(hw) != 2:
        raise InputTypeError(f"{fn}: hw must be a pair (H, W) of ints, got {hw!r}")
    sw2, sb2 = _net_args(fn, sw2, sb2, dtype, c_in=c_in, width=width, depth=depth, out=out,
                         hw=hw[0])
    validation.integer(hw[1], "hw", fn=fn, lo=1)
    gen = _net_generator(seed, generator, fn)
    layers: list[nn.Module] = []
    c = c_in
    for _ in range(depth - 1):
        layers += [NTKConv2d(c, width, sw2, sb2, generator=gen, dtype=dtype),
                   nn.ReLU() if act == "relu" else Erf()]
        c = width
    fan = c * hw[0] * hw[1] if readout == "flatten" else c
    layers += [nn.Flatten() if readout == "flatten" else _GlobalMean(),
               NTKLinear(fan, out, sw2, sb2, generator=gen, dtype=dtype)]
    return nn.Sequential(*layers)

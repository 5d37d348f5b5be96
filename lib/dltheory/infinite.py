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
``E[phi'(u)phi'(v)] = (pi - theta) / (2 pi)``;

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

from .errors import InputError

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

def _check_act(act) -> str:
    if act not in ACTIVATIONS:
        raise InfiniteWidthError(
            f"unsupported activation {act!r}: closed forms exist here for {ACTIVATIONS}")
    return act


def _variance(name: str, value, dtype, device, *, strict: bool) -> torch.Tensor:
    if isinstance(value, bool):
        raise InfiniteWidthError(f"{name} must be a number or a tensor, got a bool")
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise InfiniteWidthError(f"{name} must be real, got a {value.dtype} tensor")
        t = value.to(dtype=dtype, device=device)
    elif isinstance(value, int | float):
        t = torch.tensor(float(value), dtype=dtype, device=device)
    else:
        raise InfiniteWidthError(f"{name} must be a number or a tensor, got "
                                 f"{type(value).__name__}")
    if not torch.isfinite(t).all():
        raise InfiniteWidthError(f"{name} contains NaN or inf")
    bad = (t <= 0) if strict else (t < 0)
    if bad.any():
        need = "> 0" if strict else ">= 0"
        raise InfiniteWidthError(
            f"{name} is a variance and must be {need}; got {t[bad].flatten()[0].item():g}")
    return t


def _settings(sw2, sb2, dtype, device, *, strict_b: bool):
    w = _variance("sigma_w^2 (sw2)", sw2, dtype, device, strict=True)
    b = _variance("sigma_b^2 (sb2)", sb2, dtype, device, strict=strict_b)
    try:
        w, b = torch.broadcast_tensors(w, b)
    except RuntimeError:
        raise InfiniteWidthError(f"sw2 {tuple(w.shape)} and sb2 {tuple(b.shape)} do not "
                                 "broadcast to one batch of settings") from None
    return w, b


def _check_depths(depth) -> tuple[list[int], bool]:
    """``depth``: an int (one depth) or a sequence of ints. Returns (sorted list, scalar?)."""
    def ok(d):
        return isinstance(d, int) and not isinstance(d, bool)

    if ok(depth):
        depths, scalar = [depth], True
    elif isinstance(depth, Sequence | torch.Tensor) and len(depth) > 0:
        depths = [int(d) if isinstance(d, torch.Tensor) and d.numel() == 1 and
                  not d.is_floating_point() else d for d in depth]
        scalar = False
        if not all(ok(d) for d in depths):
            raise InfiniteWidthError(f"depths must be ints, got {list(depth)!r}")
    else:
        raise InfiniteWidthError(f"depth must be an int >= 1 or a non-empty sequence of ints, "
                                 f"got {depth!r}")
    low = min(depths)
    if low < 1:
        raise InfiniteWidthError(f"depth must be >= 1 (depth 1 is the linear layer "
                                 f"K^1 = sw2 x.x'/d + sb2); got {low}")
    return depths, scalar


def _check_X(X, name: str, *, ndim: int = 2,
             layout: str = "[N, d] (flatten images first)") -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise InfiniteWidthError(f"{name} must be a tensor, got {type(X).__name__}")
    if X.ndim != ndim:
        raise InfiniteWidthError(f"{name} must be {layout}, got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise InfiniteWidthError(f"{name} must be floating point, got {X.dtype}")
    if not torch.isfinite(X).all():
        raise InfiniteWidthError(f"{name} contains NaN or inf")
    return X


# --------------------------------------------------------------------------- the recursion

#: Entries of one row block: the elementwise passes of a layer run on blocks this size, which
#: stay in cache (six float64 arrays of 2^15 entries: 1.5 MiB), instead of streaming the
#: whole matrix through memory once per pass.
BLOCK_ENTRIES = 1 << 15


def _diag_step(act: str, k: torch.Tensor, w, b) -> torch.Tensor:
    """The diagonal ``K^{l+1}(x, x)`` from ``K^l(x, x)`` (``E[phi(u)^2]`` in closed form)."""
    if act == "relu":
        return w * k / 2 + b
    return w * (2 / math.pi) * torch.arcsin(2 * k / (1 + 2 * k)) + b


def _row_factor(act: str, k: torch.Tensor) -> torch.Tensor:
    """Per-point factor of the normalizer: ``sqrt(k)`` (ReLU: ``sqrt(k11 k22)``) or
    ``sqrt(1 + 2k)`` (erf: ``sqrt((1 + 2 k11)(1 + 2 k22))``)."""
    return k.sqrt() if act == "relu" else (1 + 2 * k).sqrt()


class _Scratch:
    """Work arrays for one row block, reused across blocks and layers."""

    def __init__(self, rows: int, cols: int, like: torch.Tensor, n: int):
        self.bufs = [like.new_empty(rows, cols) for _ in range(n)]
        one = dict(dtype=like.dtype, device=like.device)
        self.one, self.pi = torch.tensor(1.0, **one), torch.tensor(math.pi, **one)

    def take(self, m: int) -> list[torch.Tensor]:
        return [buf[:m] for buf in self.bufs]


def _block_layer(act: str, kb: torch.Tensor, tb: torch.Tensor, f1: torch.Tensor,
                 f2: torch.Tensor, w: float, b: torch.Tensor, diag, scratch: _Scratch):
    """One layer on a row block, in place: ``kb, tb`` ``[m, N2]`` hold ``K^l, Theta^l`` and
    receive ``K^{l+1}, Theta^{l+1}``. ``f1 [m]``, ``f2 [N2]``: :func:`_row_factor` of the
    rows' and the columns' diagonals; ``w`` the weight variance, ``b`` the bias variance (a
    0-dim tensor). ``diag``: ``None``, or ``(offset, k_next)`` when the block's rows are the
    points of columns ``offset, offset + 1, ...``: their entries are set to the exact
    diagonal ``k_next [m]``."""
    m = kb.shape[0]
    if act == "relu":
        s, c, psi, j = scratch.take(m)
        torch.outer(f1, f2, out=s)                                  # sqrt(k11 k22)
        torch.div(kb, s, out=c).clamp_(-1.0, 1.0)                   # correlation
        torch.arccos(c, out=psi)
        torch.sub(scratch.pi, psi, out=psi)                         # pi - theta
        torch.addcmul(scratch.one, c, c, value=-1.0, out=j).sqrt_()  # sin theta
        j.addcmul_(psi, c)                                          # 2 pi E[phi phi] / s
        torch.addcmul(b, j, s, value=w / _TWO_PI, out=kb)           # K^{l+1}
        if diag is not None:
            kb.diagonal(diag[0]).copy_(diag[1])
            psi.diagonal(diag[0]).fill_(math.pi)
        torch.addcmul(kb, tb, psi, value=w / _TWO_PI, out=tb)       # Theta^{l+1}
        return
    s, r, dd = scratch.take(m)
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


def _recursion(act: str, k12: torch.Tensor, t12: torch.Tensor, k1s: list[torch.Tensor],
               k2s: list[torch.Tensor], w: torch.Tensor, b: torch.Tensor, same: bool,
               wanted: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Layers ``2 .. len(k1s)`` of the recursion from layer 1, row block by row block.

    ``k12, t12`` ``[S, N1, N2]`` (contiguous; updated in place to the last layer); ``k1s[i]``
    ``[S, N1]`` and ``k2s[i]`` ``[S, N2]``: the diagonals at layer ``i + 1``; ``w, b``
    ``[S]``. ``wanted`` maps a layer to outputs ``[S, N1, N2]`` that receive its ``K`` and
    ``Theta``. A block's rows go through every layer while they are in cache."""
    S, N1, N2 = k12.shape
    rows = max(1, min(N1, BLOCK_ENTRIES // max(N2, 1)))
    scratch = _Scratch(rows, N2, k12, 4 if act == "relu" else 3)
    layers = len(k1s) - 1
    f1s = [_row_factor(act, k) for k in k1s]
    f2s = f1s if same else [_row_factor(act, k) for k in k2s]
    for i in range(S):
        wi = float(w[i])
        bi = b[i]
        for r0 in range(0, N1, rows):
            r1 = min(N1, r0 + rows)
            kb, tb = k12[i, r0:r1], t12[i, r0:r1]
            for step in range(layers):
                diag = (r0, k1s[step + 1][i, r0:r1]) if same else None
                _block_layer(act, kb, tb, f1s[step][i, r0:r1], f2s[step][i], wi, bi, diag,
                             scratch)
                out = wanted.get(step + 2)
                if out is not None:
                    out[0][i, r0:r1].copy_(kb)
                    out[1][i, r0:r1].copy_(tb)


def layer_step(act: str, k12: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
               t12: torch.Tensor, sw2, sb2, *, same: bool = False):
    """One layer of the recursion: ``(K^l, Theta^l) -> (K^{l+1}, Theta^{l+1})``.

    ``k12``, ``t12``: ``[..., N1, N2]`` (``K^l`` and ``Theta^l``); ``k1`` ``[..., N1]`` and
    ``k2`` ``[..., N2]``: the diagonals ``K^l(x, x)`` of the two sets. ``same=True`` when
    the two sets are the same points (``N1 = N2``; diagonal entries are then set to their
    exact values). ``sw2``, ``sb2``: numbers or tensors of the batch shape ``[...]``.
    Returns ``(k12, k1, k2, t12)`` of the next layer; ``k12`` and ``t12`` are consumed
    (updated in place when contiguous). The elementwise work runs on cache-sized row blocks
    (:data:`BLOCK_ENTRIES`).
    """
    _check_act(act)
    batch = torch.broadcast_shapes(k12.shape[:-2], t12.shape[:-2], k1.shape[:-1],
                                   k2.shape[:-1], torch.as_tensor(sw2).shape,
                                   torch.as_tensor(sb2).shape)
    N1, N2 = k12.shape[-2:]
    opts = dict(dtype=k12.dtype, device=k12.device)
    w = torch.as_tensor(sw2, **opts).expand(batch).reshape(-1)
    b = torch.as_tensor(sb2, **opts).expand(batch).reshape(-1)
    K = k12.expand(*batch, N1, N2).contiguous().view(-1, N1, N2)
    T = t12.expand(*batch, N1, N2).contiguous().view(-1, N1, N2)
    k1f = k1.expand(*batch, N1).reshape(-1, N1)
    k2f = k2.expand(*batch, N2).reshape(-1, N2)
    k1n = _diag_step(act, k1f, w[:, None], b[:, None])
    k2n = k1n if same else _diag_step(act, k2f, w[:, None], b[:, None])
    _recursion(act, K, T, [k1f, k1n], [k2f, k2n], w, b, same, {})
    return (K.view(*batch, N1, N2), k1n.view(*batch, N1), k2n.view(*batch, N2),
            T.view(*batch, N1, N2))


def nngp_ntk(X1: torch.Tensor, X2: torch.Tensor | None = None, *, act: str, sw2, sb2,
             depth) -> Kernels:
    """Infinite-width NNGP ``K^L`` and NTK ``Theta^L`` of a fully connected network.

    Args:
        X1: ``[N1, d]``; X2: ``[N2, d]`` (default: ``X1``).
        act: ``"relu"`` or ``"erf"``.
        sw2, sb2: weight and bias variances, numbers or tensors broadcasting to a batch
            shape ``S`` of settings (``sw2 > 0``, ``sb2 >= 0``).
        depth: an int ``L >= 1`` (the number of linear layers; ``L = 1`` is the linear model)
            or a sequence of ints (all computed in one pass up to the largest).

    Returns:
        :class:`Kernels` ``(nngp, ntk)``, each ``[*S, N1, N2]`` for an int depth and
        ``[*S, D, N1, N2]`` for ``D`` depths (in the order given). Dtype and device of
        ``X1``.
    """
    _check_act(act)
    X1 = _check_X(X1, "X1")
    same = X2 is None
    X2 = X1 if same else _check_X(X2, "X2")
    if X1.shape[1] != X2.shape[1] or X1.dtype != X2.dtype or X1.device != X2.device:
        raise InfiniteWidthError(f"X1 {tuple(X1.shape)} ({X1.dtype}, {X1.device}) and X2 "
                                 f"{tuple(X2.shape)} ({X2.dtype}, {X2.device}) must have the "
                                 "same input dimension, dtype and device")
    depths, scalar = _check_depths(depth)
    w, b = _settings(sw2, sb2, X1.dtype, X1.device, strict_b=False)
    S = w.shape
    wf, bf = w.reshape(-1), b.reshape(-1)
    d = X1.shape[1]
    G = X1 @ X2.T
    if same:       # BLAS does not return an exactly symmetric Gram matrix
        G = (G + G.T) / 2
    k12 = torch.addcmul(bf[:, None, None], wf[:, None, None], G / d)
    k1s = [wf[:, None] * (X1 * X1).sum(1) / d + bf[:, None]]
    k2s = k1s if same else [wf[:, None] * (X2 * X2).sum(1) / d + bf[:, None]]
    top = max(depths)
    for _ in range(top - 1):       # the diagonals of every layer: O(N) each
        k1s.append(_diag_step(act, k1s[-1], wf[:, None], bf[:, None]))
        if not same:
            k2s.append(_diag_step(act, k2s[-1], wf[:, None], bf[:, None]))
    if same:       # exact symmetric diagonal
        k12.diagonal(dim1=-2, dim2=-1).copy_(k1s[0])
    t12 = k12.clone()
    N1, N2 = k12.shape[-2:]
    if scalar:
        _recursion(act, k12, t12, k1s, k2s, wf, bf, same, {})
        return Kernels(k12.view(*S, N1, N2), t12.view(*S, N1, N2))
    K = k12.new_empty(k12.shape[0], len(depths), N1, N2)
    T = torch.empty_like(K)
    first = {layer: depths.index(layer) for layer in depths}
    if 1 in first:
        K[:, first[1]], T[:, first[1]] = k12, t12
    _recursion(act, k12, t12, k1s, k2s, wf, bf, same,
               {layer: (K[:, i], T[:, i]) for layer, i in first.items() if layer > 1})
    for i, layer in enumerate(depths):        # a depth asked for twice
        if i != first[layer]:
            K[:, i], T[:, i] = K[:, first[layer]], T[:, first[layer]]
    return Kernels(K.view(*S, len(depths), N1, N2), T.view(*S, len(depths), N1, N2))


# -------------------------------------------------------------- convolutional networks

READOUTS = ("flatten", "gap")


def _pair_terms(act: str, k12: torch.Tensor, ka: torch.Tensor, kb: torch.Tensor):
    """``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` for ``Cov(u, v) = k12`` and variances
    ``ka``, ``kb`` (all broadcast together)."""
    if act == "relu":
        s = (ka * kb).sqrt()
        c = (k12 / s.clamp_min(1e-300)).clamp(-1.0, 1.0)
        psi = math.pi - torch.arccos(c)
        return (s * (1 - c * c).sqrt() + psi * k12) / _TWO_PI, psi / _TWO_PI
    aa = ((1 + 2 * ka) * (1 + 2 * kb)).sqrt()
    r = (2 * k12 / aa).clamp(-1.0, 1.0)
    return (2 / math.pi) * torch.arcsin(r), (4 / math.pi) / (aa * (1 - r * r).sqrt())


def _box(A: torch.Tensor) -> torch.Tensor:
    """``(1/9) sum_delta A[..., p + delta]`` over the 3x3 offsets ``delta``, circular, on the
    last two (spatial) axes."""
    H, W = A.shape[-2:]
    flat = nn.functional.pad(A.reshape(-1, 1, H, W), (1, 1, 1, 1), mode="circular")
    return nn.functional.avg_pool2d(flat, 3, stride=1).reshape(A.shape)


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
    readout averages over ``p`` (flatten) or over ``(p, p')`` (gap).

    Args:
        X1: images ``[N1, C, H, W]``; X2: ``[N2, C, H, W]`` (default: ``X1``).
        act: ``"relu"`` or ``"erf"``. sw2 > 0, sb2 >= 0: numbers.
        depth: an int ``>= 1`` or a sequence of ints.
        readout: ``"flatten"`` or ``"gap"``.

    Returns:
        :class:`Kernels` ``[N1, N2]`` (or ``[D, N1, N2]`` for ``D`` depths).
    """
    _check_act(act)
    if readout not in READOUTS:
        raise InfiniteWidthError(f"unknown readout {readout!r}; use one of {READOUTS}")
    X1 = _check_X(X1, "X1", ndim=4, layout="images [N, C, H, W]")
    same = X2 is None
    X2 = X1 if same else _check_X(X2, "X2", ndim=4, layout="images [N, C, H, W]")
    if X1.shape[1:] != X2.shape[1:] or X1.dtype != X2.dtype or X1.device != X2.device:
        raise InfiniteWidthError(f"X1 {tuple(X1.shape)} and X2 {tuple(X2.shape)} must be "
                                 "images of one shape, dtype and device")
    for name, v in (("sw2", sw2), ("sb2", sb2)):
        if isinstance(v, torch.Tensor) and v.numel() != 1:
            raise InfiniteWidthError(f"{name}: one setting per call for CNN kernels")
    w = float(_variance("sigma_w^2 (sw2)", sw2, X1.dtype, X1.device, strict=True))
    b = float(_variance("sigma_b^2 (sb2)", sb2, X1.dtype, X1.device, strict=False))
    depths, scalar = _check_depths(depth)
    C, H, W = X1.shape[1:]
    # The state is indexed by (x, x', r, p): the covariance of position p of x with position
    # p + r of x' (circular). A convolution shifts p and p + r by the same offset, so in
    # these coordinates it is a 3x3 box filter over p for each r. Flatten needs r = 0 only.
    offsets = [(0, 0)] if readout == "flatten" else \
        [(i, j) for i in range(H) for j in range(W)]          # r = (0, 0) first

    def at_offsets(Z: torch.Tensor) -> torch.Tensor:
        """``Z [N, ..., H, W]`` -> ``[N, ..., R, H, W]`` with entry ``Z[..., p + r]``."""
        return torch.stack([torch.roll(Z, shifts=(-i, -j), dims=(-2, -1)) for i, j in offsets],
                           dim=-3)

    G = torch.einsum("nchw,mcrhw->nmrhw", X1, at_offsets(X2)) / C  # [N1, N2, R, H, W]
    g1 = (X1 * X1).sum(1) / C                                      # [N1, H, W]
    g2 = (X2 * X2).sum(1) / C

    top = max(depths)
    # the variances of every layer's units (x = x', r = 0), O(N P) each
    k1s, k2s = [w * _box(g1) + b], [w * _box(g2) + b]
    for _ in range(top - 2):
        k1s.append(w * _box(_pair_terms(act, k1s[-1], k1s[-1], k1s[-1])[0]) + b)
        k2s.append(k1s[-1] if same else
                   w * _box(_pair_terms(act, k2s[-1], k2s[-1], k2s[-1])[0]) + b)
    diag = [_pair_terms(act, k, k, k) for k in k1s]   # E[phi^2], E[phi'^2]
    k2r = [at_offsets(k)[None] for k in k2s]           # columns' variances at p + r
    sp = (2, 3, 4)
    N1, N2 = G.shape[:2]
    lin = w * G.mean(dim=sp) + b                       # depth 1: the readout of the input
    outK = {d: lin.clone() if d == 1 else G.new_empty(N1, N2) for d in set(depths)}
    outT = {d: lin.clone() if d == 1 else G.new_empty(N1, N2) for d in set(depths)}
    # Rows are independent given the variances: each block of rows goes through every layer
    # while it is in cache.
    rows = max(1, min(N1, (BLOCK_ENTRIES * 4) // G[0].numel()))
    for r0 in range(0, N1, rows):
        r1 = min(N1, r0 + rows)
        K = _box(G[r0:r1]).mul_(w).add_(b)             # the first convolution
        Th = K.clone()
        for layer in range(2, top + 1):
            i = layer - 2
            Fk, Fd = _pair_terms(act, K, k1s[i][r0:r1, None, None], k2r[i])
            if same:             # entries x = x', r = 0: the exact variances
                idx = torch.arange(r0, r1, device=G.device)
                Fk[idx - r0, idx, 0] = diag[i][0][r0:r1]
                Fd[idx - r0, idx, 0] = diag[i][1][r0:r1]
            Fd *= Th
            if layer in outK:    # the readout averages over p (flatten) or (p, p + r)
                outK[layer][r0:r1] = Fk.mean(dim=sp).mul_(w).add_(b)
                outT[layer][r0:r1] = Fd.mean(dim=sp).mul_(w).add_(outK[layer][r0:r1])
            if layer == top:
                break
            K = _box(Fk).mul_(w).add_(b)
            Th = _box(Fd).mul_(w).add_(K)
    out = {d: (outK[d], outT[d]) for d in outK}
    if scalar:
        return Kernels(*out[depths[0]])
    return Kernels(torch.stack([out[d][0] for d in depths]),
                   torch.stack([out[d][1] for d in depths]))


# ------------------------------------------------------------------------ fixed points

def _erf_map_q(q, w, b):
    return w * (2 / math.pi) * torch.arcsin(2 * q / (1 + 2 * q)) + b


def fixed_point(act: str, sw2, sb2, *, iters: int = 200) -> FixedPoint:
    """Fixed points ``q*``, ``c*``, slopes ``chi_1``, ``chi_c*`` and depth scales.

    ``sw2 > 0`` and ``sb2 > 0`` (numbers or tensors; float64 unless a floating tensor is
    given). ReLU in closed form: ``chi_1 = chi_c* = sw2/2``, ``c* = 1``,
    ``q* = sb2 / (1 - sw2/2)`` for ``sw2 < 2`` and ``inf`` for ``sw2 >= 2`` (the diagonal
    diverges: there is no chaotic phase). Erf by Newton's method: for ``q*`` from
    ``sw2 + sb2`` (a point right of the root of the concave ``map(q) - q``), for ``c*`` from
    ``c = 0`` (left of the stable root of the convex ``map(c) - c``), so both converge
    monotonically; ``iters`` Newton steps.
    """
    _check_act(act)
    ref = next((v for v in (sw2, sb2) if isinstance(v, torch.Tensor) and
                v.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.float64
    device = ref.device if ref is not None else None
    w, b = _settings(sw2, sb2, dtype, device, strict_b=True)
    if act == "relu":
        chi = w / 2
        q = torch.where(chi < 1, b / (1 - chi).clamp_min(1e-300), torch.full_like(w, math.inf))
        c = torch.ones_like(w)
        chi_c = chi.clone()
    else:
        q = w + b
        for _ in range(iters):
            a = 1 + 2 * q
            dmap = w * (4 / math.pi) / (a * (1 + 4 * q).sqrt())
            q = q - (_erf_map_q(q, w, b) - q) / (dmap - 1)
        a = 1 + 2 * q
        chi = w * (4 / math.pi) / (1 + 4 * q).sqrt()
        c = torch.zeros_like(w)
        for _ in range(iters):
            g = (w * (2 / math.pi) * torch.arcsin(2 * q * c / a) + b) / q
            chi_cc = w * (4 / math.pi) / (a * a - 4 * q * q * c * c).clamp_min(1e-300).sqrt()
            step = (g - c) / (chi_cc - 1)
            c = torch.where(chi_cc < 1, (c - step).clamp(max=1.0), torch.ones_like(c))
        # ordered phase (chi_1 <= 1): the only fixed point in [0, 1] is c* = 1 (convexity)
        c = torch.where(chi <= 1, torch.ones_like(c), c)
        chi_c = w * (4 / math.pi) / (a * a - 4 * q * q * c * c).clamp_min(1e-300).sqrt()
    lc, lcc = chi.log(), chi_c.log()
    xi_1 = 1 / lc.abs()
    xi_c = 1 / lcc.abs()
    ratio = lcc - lc
    xi_star = torch.where(ratio < -1e-12, -1 / ratio.clamp(max=-1e-300),
                          torch.full_like(w, math.inf))
    return FixedPoint(q, c, chi, chi_c, xi_1, xi_c, xi_star)


def critical_sw2(act: str, sb2, *, iters: int = 100) -> torch.Tensor:
    """The order-to-chaos transition ``sigma_w^2`` where ``chi_1 = 1``, for each ``sb2 > 0``.

    ReLU: ``2`` for every ``sb2`` (beyond it ``q*`` diverges). Erf: bisection on ``sw2``
    (``chi_1`` increases with ``sw2``; at ``sw2 = pi/4`` it is ``<= 1``).
    """
    _check_act(act)
    _, b = _settings(1.0, sb2, sb2.dtype if isinstance(sb2, torch.Tensor) and
                     sb2.is_floating_point() else torch.float64,
                     sb2.device if isinstance(sb2, torch.Tensor) else None, strict_b=True)
    if act == "relu":
        return torch.full_like(b, 2.0)
    lo = torch.full_like(b, math.pi / 4)
    hi = torch.full_like(b, 4.0)
    while bool((fixed_point(act, hi, b).chi_1 <= 1).any()):
        hi = torch.where(fixed_point(act, hi, b).chi_1 <= 1, 2 * hi, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        chaotic = fixed_point(act, mid, b, iters=60).chi_1 > 1
        hi = torch.where(chaotic, mid, hi)
        lo = torch.where(chaotic, lo, mid)
    return (lo + hi) / 2


# ----------------------------------------------------------------------- predictions

def _check_kernel_targets(K_train, Y, K_test_train=None):
    for name, t in (("K_train", K_train), ("Y", Y), ("K_test_train", K_test_train)):
        if t is not None and (not isinstance(t, torch.Tensor) or not t.is_floating_point()):
            raise InfiniteWidthError(f"{name} must be a floating tensor")
        if t is not None and not torch.isfinite(t).all():
            raise InfiniteWidthError(f"{name} contains NaN or inf")
    if K_train.ndim < 2 or K_train.shape[-1] != K_train.shape[-2]:
        raise InfiniteWidthError(f"K_train must be [..., N, N], got {tuple(K_train.shape)}")
    N = K_train.shape[-1]
    if Y.ndim < 1 or Y.shape[0 if Y.ndim == 1 else -2] != N:
        raise InfiniteWidthError(f"Y {tuple(Y.shape)} must be [N] or [..., N, k] with "
                                 f"N = {N} (K_train {tuple(K_train.shape)})")
    if K_test_train is not None and (K_test_train.ndim < 2 or K_test_train.shape[-1] != N):
        raise InfiniteWidthError(f"K_test_train {tuple(K_test_train.shape)} must be "
                                 f"[..., M, N] with N = {N}")
    return Y[:, None] if Y.ndim == 1 else Y


def mean_predictor(K_test_train: torch.Tensor, K_train: torch.Tensor,
                   Y: torch.Tensor) -> torch.Tensor:
    """``Theta(x, X) Theta(X, X)^{-1} Y``: the mean prediction after infinite training time.

    ``K_test_train`` ``[..., M, N]``, ``K_train`` ``[..., N, N]``, ``Y`` ``[N, k]`` (or
    ``[N]``, or batched ``[..., N, k]``); batch dimensions broadcast. Returns ``[..., M, k]``.
    Solved by LU (``torch.linalg.solve``) in the kernels' dtype.
    """
    Y = _check_kernel_targets(K_train, Y, K_test_train)
    return K_test_train @ torch.linalg.solve(K_train, Y.to(K_train.dtype))


def linearized(K_train: torch.Tensor, Y: torch.Tensor, *, lr, t, K_test_train=None,
               discrete: bool = False):
    """Outputs of the linearized model trained from ``f_0 = 0`` with a frozen kernel.

    Gradient flow on ``(1/2)|f(X) - Y|^2`` with learning rate ``lr`` for time ``t``:
    ``f_t(X) = (I - e^{-lr K t}) Y`` and ``f_t(x) = K(x, X) K^{-1} (I - e^{-lr K t}) Y``
    (``discrete=True``: ``t`` steps of gradient descent, ``(I - lr K)^t`` in place of
    ``e^{-lr K t}``). Computed in the eigenbasis of ``K_train`` (``eigh``), so that small
    eigenvalues are harmless: ``(1 - e^{-lr t lam}) / lam -> lr t``.

    ``K_train`` ``[..., N, N]`` (symmetric), ``Y`` ``[N, k]`` (or ``[N]``), ``lr`` a number
    or a tensor broadcastable to the batch shape ``[...]`` (e.g. ``2 / lambda_max`` per
    setting), ``t >= 0``. Returns ``(f_train [..., N, k], f_test [..., M, k] or None)``.
    """
    Y = _check_kernel_targets(K_train, Y, K_test_train)
    if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0 or \
            not math.isfinite(t):
        raise InfiniteWidthError(f"t must be a finite number >= 0, got {t!r}")
    lr = torch.as_tensor(lr, dtype=K_train.dtype, device=K_train.device)
    if not torch.isfinite(lr).all() or (lr <= 0).any():
        raise InfiniteWidthError("lr must be finite and > 0")
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


class NTKLinear(nn.Module):
    """``h = (sigma_w / sqrt(n_in)) W x + sigma_b b`` with ``W, b ~ N(0, 1)`` (NTK
    parametrization): the gradient with respect to ``(W, b)`` carries the factors, so the
    empirical NTK of a stack of these tends to :func:`nngp_ntk`'s ``Theta``."""

    def __init__(self, n_in: int, n_out: int, sw2: float, sb2: float, *,
                 generator: torch.Generator, dtype=torch.float64):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator,
                                               dtype=torch.float64).to(dtype))
        self.bias = nn.Parameter(torch.randn(n_out, generator=generator,
                                             dtype=torch.float64).to(dtype))
        self.sw, self.sb, self.n_in = math.sqrt(sw2), math.sqrt(sb2), n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.sw / math.sqrt(self.n_in)) * (x @ self.weight.T) + self.sb * self.bias


def ntk_mlp(d_in: int, width: int, depth: int, act: str, sw2: float, sb2: float, *,
            out: int = 1, seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """A finite fully connected network in the NTK parametrization: ``depth`` linear layers
    (``depth - 1`` hidden layers of ``width`` units, activation ``act``), ``out`` outputs,
    weights and biases ``N(0, 1)`` drawn from a generator seeded with ``seed``."""
    _check_act(act)
    _check_depths(depth)
    if sw2 <= 0 or sb2 < 0:
        raise InfiniteWidthError(f"need sw2 > 0 and sb2 >= 0, got {sw2}, {sb2}")
    gen = torch.Generator().manual_seed(seed)
    dims = [d_in] + [width] * (depth - 1) + [out]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(NTKLinear(dims[i], dims[i + 1], sw2, sb2, generator=gen, dtype=dtype))
        if i < depth - 1:
            layers.append(nn.ReLU() if act == "relu" else Erf())
    return nn.Sequential(*layers)


class NTKConv2d(nn.Module):
    """``h = (sigma_w / sqrt(9 c_in)) W * x + sigma_b b``: a 3x3 convolution with circular
    padding in the NTK parametrization, ``W, b ~ N(0, 1)``."""

    def __init__(self, c_in: int, c_out: int, sw2: float, sb2: float, *,
                 generator: torch.Generator, dtype=torch.float64):
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


def ntk_cnn(c_in: int, hw: tuple[int, int], width: int, depth: int, act: str, sw2: float,
            sb2: float, *, readout: str, out: int = 1, seed: int = 0,
            dtype=torch.float64) -> nn.Sequential:
    """A finite convolutional network in the NTK parametrization, the finite counterpart of
    :func:`cnn_nngp_ntk`: ``depth - 1`` layers of :class:`NTKConv2d` (``width`` channels) and
    ``act``, then ``"flatten"`` or ``"gap"`` and an :class:`NTKLinear` readout to ``out``
    outputs. Inputs ``[N, c_in, *hw]``."""
    _check_act(act)
    _check_depths(depth)
    if readout not in READOUTS:
        raise InfiniteWidthError(f"unknown readout {readout!r}; use one of {READOUTS}")
    if sw2 <= 0 or sb2 < 0:
        raise InfiniteWidthError(f"need sw2 > 0 and sb2 >= 0, got {sw2}, {sb2}")
    gen = torch.Generator().manual_seed(seed)
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

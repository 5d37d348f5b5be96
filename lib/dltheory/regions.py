"""Exact linear regions of a CPA network on a segment and on a 2-D slice of its input space.

A continuous piecewise-affine (CPA) network is affine on each *activation region*: the set
of inputs that share one activation code (the sign of every ReLU, leaky-ReLU and abs
pre-activation, and the winner of every max group: max-pooling window or maxout group).
Restricted to a segment ``x(t) = x0 + t (x1 - x0)``, ``t in [0, 1]``, the regions are
intervals; restricted to a plane ``x(s, t) = origin + s u + t v`` over a rectangle, they are
convex polygons (an activation region is an intersection of half-spaces). This module finds
them exactly, up to float64 rounding, without sampling:

**Site by site.** Nonlinearities ("sites", as listed by :func:`dltheory.cpa.trace`) are
processed in execution order. On every piece of the current partition the codes of all
earlier sites are constant, so each pre-activation of the current site is *affine* on the
piece; its values at the piece's endpoints (segment) or vertices (plane), from one ordinary
batched forward pass, therefore determine it on the whole piece. Its kinks are then cut
exactly: the zero of a ReLU-type unit (by linear interpolation), or the breakpoints of the
upper envelope of a max group (the crossings of two candidates where they are the largest).
After the last site every piece lies in one activation region.

**Ties.** A ReLU-type unit is the max group ``(pre, 0)``; the winner of a tie is the first
candidate, as for ``torch.argmax`` (so ``pre == 0`` counts as active). A candidate that ties
with an earlier one on a whole piece (two dead inputs of a max-pooling window) never wins it.

**Tolerances** (float64): a pre-activation or candidate difference whose magnitude is at most
``ZERO_TOL`` (1e-12) times the largest magnitude of its site at the current points counts as
zero, so regions thinner than that (relative) are not resolved; segment breakpoints closer
than ``BREAK_TOL`` (1e-13, in ``t``) are one breakpoint. To count a plane's vertices
(:meth:`Plane.graph`, Euler's formula) the copies of a vertex computed in different polygons
are merged with a tolerance read off the gap between their spread and the distance between
distinct vertices (:class:`VertexMerge`), never a fixed one: a fine partition has distinct
vertices closer than any fixed tolerance that would merge all copies.

**Bad input** never yields a number: the arguments are checked with
:mod:`dltheory.validation` (a CPA network, :func:`dltheory.cpa.validate`, with finite float64
parameters in eval mode; finite, non-empty floating inputs, which are copied, so a network's
in-place module never writes into them; tolerances and counts in range), and a problem too
large for float64 is refused rather than enumerated wrongly: input coordinates,
pre-activations and outputs beyond :data:`VALUE_LIMIT`, plane coordinates beyond
:data:`BOUNDS_LIMIT`. The errors are :class:`RegionError` (an
:class:`~dltheory.errors.InputError`) or those of :mod:`dltheory.validation`.

Entry points: :func:`on_segment` -> :class:`Segment`, :func:`on_plane` -> :class:`Plane`
(with :meth:`Plane.decision_boundary` -> :class:`Boundary`), :func:`nearest_boundary_along`,
and the dense-sampling counterparts :func:`sample_segment` and :func:`sample_plane`, which
count the regions that sampling finds (never more than the exact count).

Example (``net`` from :mod:`dltheory.nets`, ``x0, x1, x2`` three inputs)::

    seg = regions.on_segment(net, x0, x1)
    seg.n_regions, seg.t                     # breakpoints in t, 0 and 1 included
    pl = regions.on_plane(net, x0, x1 - x0, x2 - x0, bounds=(-0.5, 1.5, -0.5, 1.5))
    pl.area().sum(), pl.euler_characteristic()    # the rectangle's area (4), and 1
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import cpa, threads, validation
from .errors import InputError, InputTypeError
from .nets import Abs

__all__ = [
    "BOUNDS_LIMIT",
    "BREAK_TOL",
    "VALUE_LIMIT",
    "ZERO_TOL",
    "Boundary",
    "Plane",
    "VertexMerge",
    "RegionError",
    "Segment",
    "nearest_boundary_along",
    "on_plane",
    "on_segment",
    "sample_plane",
    "sample_segment",
]

ZERO_TOL = 1e-12
BREAK_TOL = 1e-13
F64 = torch.float64
_UNIT_KINDS = ("relu", "leaky", "abs")
_KINDS = (*_UNIT_KINDS, "max")
_CHUNK = 4096  # points per forward pass


def _frozen(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose later training cannot change a computed partition's maps."""
    return copy.deepcopy(net).requires_grad_(False)


class RegionError(InputError):
    """Invalid input to a region enumeration (shape, degenerate segment or plane, bounds,
    a problem too large for float64)."""


# ============================================================================ input checks

VALUE_LIMIT = 1e300
"""The largest magnitude of an input coordinate, a pre-activation or an output that the
enumerations accept: the cuts take differences of differences of these values, which must
not overflow float64 (about 1.8e308)."""
BOUNDS_LIMIT = 1e100
"""The largest magnitude of a plane coordinate (``bounds``): the polygons' areas and
centroids take products of three coordinates. Scale ``u`` and ``v`` instead."""


class _Where(NamedTuple):
    """Where a check runs, for its message: the function, the place of the points (``"on the
    segment from x0 to x1"``) and the arguments that set their scale."""

    fn: str
    place: str
    names: str


def _check_scale(scale: float, what: str, where: _Where) -> None:
    """Raise when ``scale`` (a largest magnitude, NaN or inf included) exceeds
    :data:`VALUE_LIMIT`: the problem is too large for float64, the forward pass overflows."""
    if not scale <= VALUE_LIMIT:
        raise RegionError(
            f"{where.fn}: {what} {where.place} reach {scale:g}, beyond {VALUE_LIMIT:g}, where "
            f"float64 overflows (the forward pass, or the differences the exact cuts take); "
            f"rescale {where.names} (or the network's weights)")


def _net_dtype_device(net: nn.Module):
    for t in (*net.parameters(), *net.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return None, torch.device("cpu")


def _network(net: nn.Module, fn: str) -> nn.Module:
    """Check ``net``: a CPA network (:func:`dltheory.cpa.validate`: finite parameters, eval
    mode) with float64 parameters (exactness needs float64)."""
    cpa.validate(net, fn=fn)
    dtype, _ = _net_dtype_device(net)
    if dtype is not None and dtype != F64:
        raise RegionError(f"{fn}: regions need a float64 network, but net "
                          f"({type(net).__name__}) has {dtype} parameters; call net.double()")
    return net


def _as_tensor(net: nn.Module, x, name: str, fn: str) -> Tensor:
    """A private float64 copy of ``x`` on the net's device (:func:`dltheory.validation.
    tensor`: a real floating tensor, float32 converted exactly, of finite values, not
    empty). Never the caller's tensor, which a net's in-place module could overwrite."""
    x = validation.tensor(x, name, fn=fn)
    if x.dim() == 0:
        raise RegionError(f"{fn}: {name} is a scalar; pass one input of the network (no batch "
                          "dimension)")
    _, device = _net_dtype_device(net)
    return validation.private_copy(x).to(dtype=F64, device=device)


def _as_input(net: nn.Module, x, name: str, fn: str) -> Tensor:
    """Check that ``x`` is one input of ``net`` (no batch dimension): ``net(x[None])`` must
    run and give an output of shape ``[1, d_out]``."""
    x = _as_tensor(net, x, name, fn)
    try:
        with torch.no_grad():
            out = net(x[None].clone())
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise RegionError(f"{fn}: {name} of shape {tuple(x.shape)} does not fit the network's "
                          f"input (pass one input without the batch dimension): {err}") from err
    if not (isinstance(out, Tensor) and out.dim() == 2 and out.shape[0] == 1):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise RegionError(f"{fn}: {name} of shape {tuple(x.shape)}: the network maps the "
                          f"batch x[None] to {got}, not to [1, d_out]; pass one input without "
                          "the batch dimension")
    return x


def _like(net: nn.Module, ref: Tensor, x, name: str, ref_name: str, fn: str) -> Tensor:
    x = _as_tensor(net, x, name, fn)
    if x.shape != ref.shape:
        raise RegionError(f"{fn}: {name} has shape {tuple(x.shape)}, but {ref_name} has shape "
                          f"{tuple(ref.shape)}")
    return x


def _check_bounds(bounds, fn: str) -> tuple[float, float, float, float]:
    """``bounds = (smin, smax, tmin, tmax)``: four finite numbers (each checked by
    :func:`dltheory.validation.real`), ``smin < smax``, ``tmin < tmax``, all within
    :data:`BOUNDS_LIMIT`."""
    if isinstance(bounds, str | bytes) or not hasattr(bounds, "__len__"):
        raise RegionError(f"{fn}: bounds must be four numbers (smin, smax, tmin, tmax), got "
                          f"{bounds!r}")
    if len(bounds) != 4:
        raise RegionError(f"{fn}: bounds must be four numbers (smin, smax, tmin, tmax), got "
                          f"{len(bounds)}")
    vals = tuple(validation.real(b, f"bounds[{i}]", fn=fn) for i, b in enumerate(bounds))
    smin, smax, tmin, tmax = vals
    if not (smin < smax and tmin < tmax):
        raise RegionError(f"{fn}: bounds (smin, smax, tmin, tmax) = {vals} are empty or "
                          "inverted; need smin < smax and tmin < tmax")
    if max(map(abs, vals)) > BOUNDS_LIMIT:
        raise RegionError(f"{fn}: bounds {vals} reach beyond +-{BOUNDS_LIMIT:g}, where the "
                          "polygons' areas and centroids overflow float64; scale u and v "
                          "instead")
    return vals


def _norm(x: Tensor, dim=None) -> Tensor:
    """``torch.linalg.vector_norm(x, dim=dim)`` without overflow or underflow of the squares:
    ``x`` is scaled by a power of two first (exactly, so normal inputs give the same bits)."""
    m = _scale(x)
    if m == 0.0 or not math.isfinite(m):
        return torch.linalg.vector_norm(x, dim=dim)
    k = math.frexp(m)[1]                                  # 2**(k - 1) <= m < 2**k
    h = k // 2                                            # two steps: 2**k may overflow
    y = x * math.ldexp(1.0, -h) * math.ldexp(1.0, h - k)
    return torch.linalg.vector_norm(y, dim=dim) * math.ldexp(1.0, h) * math.ldexp(1.0, k - h)


def _check_line(net: nn.Module, x0: Tensor, x1: Tensor, where: _Where) -> None:
    """The scale of the segment from ``x0`` to ``x1`` (its points ``x0 + t (x1 - x0)``) and
    of the network's outputs at its ends (a forward pass of copies). The points lie between
    the ends; ``x1 - x0`` must not overflow."""
    reach = max(_scale(x0), _scale(x1)) if math.isfinite(_scale(x1 - x0)) else math.inf
    _check_scale(reach, "the input coordinates (or the difference of the ends)", where)
    with torch.no_grad():
        out = net(torch.stack([x0, x1]))
    _check_scale(_scale(out), "the network's outputs", where)


def _count(n, name: str, fn: str) -> int:
    """A count or a chunk size: an integer >= 1 (:func:`dltheory.validation.integer`)."""
    return validation.integer(n, name, fn=fn, lo=1)


def _params(t, name: str, fn: str, device, ndim) -> Tensor:
    """Parameters (``t`` on a segment, ``(s, t)`` on a plane) as float64 on ``device``: a
    real number, or a real floating tensor with ``ndim`` axes, finite, not empty."""
    if not isinstance(t, Tensor):
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise InputTypeError(f"{fn}: {name} must be a torch.Tensor or a number, got "
                                 f"{type(t).__name__} (convert with torch.as_tensor)")
        t = torch.tensor(validation.real(t, name, fn=fn), dtype=F64)
    t = validation.tensor(t, name, fn=fn, ndim=ndim)
    return t.to(dtype=F64, device=device)


# ================================================================================ sites


class _Site(NamedTuple):
    """One nonlinearity's values at a batch of points: ``kind`` and ``values``, ``[B, U]``
    for ReLU-type units, ``[B, G, k]`` for max groups (candidates last)."""

    kind: str
    values: Tensor


def _trace(net: nn.Module, X: Tensor, where: _Where, *, keep: range | None = None,
           chunk: int = _CHUNK) -> list[_Site | None]:
    """The sites of ``net`` at the batch ``X`` ``[B, *in]``, from forward passes of ``chunk``
    points (so that the memory of one pass stays bounded). Only the sites whose index is in
    ``keep`` (default all) keep their values; the others are ``None``. Kept values beyond
    :data:`VALUE_LIMIT` raise (:func:`_check_scale`, naming ``where``)."""
    parts: list[list[_Site | None]] = []
    with torch.no_grad():
        for start in range(0, max(X.shape[0], 1), chunk):
            sites: list[_Site | None] = []
            for i, s in enumerate(cpa.trace(net, X[start:start + chunk])):
                if s.kind not in _KINDS:
                    raise RegionError(f"site {s.path!r} has kind {s.kind!r}; regions knows "
                                      f"{', '.join(_KINDS)}")
                if keep is not None and i not in keep:
                    sites.append(None)
                    continue
                b = s.pre.shape[0]
                vals = s.pre.reshape(b, -1) if s.kind in _UNIT_KINDS else s.pre
                if s.kind == "max" and vals.dim() != 3:
                    raise RegionError(f"max site {s.path!r} has pre of shape "
                                      f"{tuple(s.pre.shape)}, expected [B, n_groups, k]")
                vals = vals.to(F64)
                _check_scale(_scale(vals), "the network's pre-activations", where)
                sites.append(_Site(s.kind, vals))
            parts.append(sites)
    if len(parts) == 1:
        return parts[0]
    if len({len(p) for p in parts}) != 1:
        raise RegionError("the network's sites differ between forward passes; regions need "
                          "a fixed sequence of nonlinearities")
    return [None if p[0] is None else _Site(p[0].kind, torch.cat([q.values for q in p]))
            for p in zip(*parts, strict=True)]


def _pattern(sites: list[_Site]) -> Tensor:
    """The activation code as one row of packed bits per point, ``[B, W]`` int64 (two points
    have the same code exactly when their rows are equal): for ReLU-type units one bit, set
    when the unit is inactive (the winner of ``(pre, 0)`` is 0); for a max group of ``k``
    candidates the argmax in ``ceil(log2 k)`` bits."""
    cols = []
    for s in sites:
        if s.kind in _UNIT_KINDS:
            cols.append(s.values < 0)
        else:
            k = s.values.shape[-1]
            nb = max(1, math.ceil(math.log2(k)))
            win = s.values.argmax(-1)                                        # [B, G]
            shifts = torch.arange(nb, device=win.device)
            cols.append(((win[..., None] >> shifts) & 1).bool().reshape(win.shape[0], -1))
    if not cols:
        return torch.zeros(0, 1, dtype=torch.int64)
    b = _pack(torch.cat(cols, dim=1))                                        # [B, F/8] uint8
    b = torch.nn.functional.pad(b, (0, (-b.shape[1]) % 8)).contiguous()
    return b.view(torch.int64)


def _scale(values: Tensor) -> float:
    """The largest magnitude among ``values`` (0 for none), without an ``abs`` copy."""
    if not values.numel():
        return 0.0
    lo, hi = torch.aminmax(values)
    return max(float(hi), -float(lo))


# ============================================================================== segment


def _on_line(x0: Tensor, dx: Tensor, t: Tensor) -> Tensor:
    """Points ``x0 + t dx``: ``t [N]`` -> ``[N, *x0.shape]``."""
    return x0 + t.reshape(-1, *([1] * x0.dim())) * dx


def _signs(pre: Tensor) -> Tensor:
    """``pre < 0`` for ``pre [N, U]``, as ``[N, W]`` bools with ``W`` the multiple of 8 from
    ``U`` on (the padding ``False``)."""
    n, units = pre.shape
    width = -(-units // 8) * 8
    neg = torch.empty(n, width, dtype=torch.bool, device=pre.device)
    if width == units:
        return torch.lt(pre, 0, out=neg)
    neg[:, units:] = False
    torch.lt(pre, 0, out=neg[:, :units])
    return neg


def _changes(neg: Tensor) -> tuple[Tensor, Tensor]:
    """Where consecutive rows of ``neg [N, W]`` (bools, ``W`` a multiple of 8) differ: rows
    ``p`` (between ``p`` and ``p + 1``) and columns ``u``, ``[C]`` each, in row-major order.
    The rows are compared eight columns at a time (viewed as int64 words), and only the few
    words that differ are expanded (``nonzero`` over every column costs several times
    more)."""
    words = neg.view(torch.int64)                                    # [N, W / 8]
    diff = words[1:] ^ words[:-1]
    p, q = diff.nonzero(as_tuple=True)                                # differing words (few)
    i, b = diff[p, q].view(torch.uint8).view(-1, 8).nonzero(as_tuple=True)
    return p[i], q[i] * 8 + b


def _sign_changes(pre: Tensor) -> tuple[Tensor, Tensor]:
    """Where a unit changes sign (``< 0`` against ``>= 0``) between consecutive rows of
    ``pre [N, U]``: the row ``p`` (a change between rows ``p`` and ``p + 1``) and the unit
    ``u`` of each change, ``[C]`` each, in row-major order. One comparison pass over
    ``pre`` (:func:`_signs`, :func:`_changes`)."""
    return _changes(_signs(pre))


def _unit_roots(t: Tensor, pre: Tensor, eps: float) -> Tensor:
    """Zeros of ReLU-type pre-activations, affine on each piece ``[t_i, t_{i+1}]``.

    ``t [N]`` sorted, ``pre [N, U]`` -> roots (unsorted) where a unit changes sign strictly
    (beyond ``eps``) between consecutive points."""
    p, u = _sign_changes(pre)
    fa, fb = pre[p, u], pre[p + 1, u]
    beyond = (fa.abs() > eps) & (fb.abs() > eps)
    p, fa, fb = p[beyond], fa[beyond], fb[beyond]
    return t[p] + fa / (fa - fb) * (t[p + 1] - t[p])


def _max_roots(t: Tensor, c: Tensor, eps: float) -> Tensor:
    """Breakpoints of the upper envelope of each max group on each piece.

    ``t [N]`` sorted, ``c [N, G, k]``: candidates are affine on each piece, so the argmax
    changes only where two candidates cross at the top; all pairwise crossings are found,
    and those below the envelope (by more than ``eps``) are dropped."""
    k = c.shape[-1]
    if k < 2:
        return t.new_zeros(0)
    i, j = torch.triu_indices(k, k, 1, device=c.device)
    a, b = c[:-1], c[1:]
    da, db = a[..., i] - a[..., j], b[..., i] - b[..., j]
    cross = ((da > eps) & (db < -eps)) | ((da < -eps) & (db > eps))
    p, g, q = cross.nonzero(as_tuple=True)
    lam = da[p, g, q] / (da[p, g, q] - db[p, g, q])
    ca, cb = a[p, g], b[p, g]
    at = ca + lam[:, None] * (cb - ca)
    on_top = at.gather(1, i[q][:, None]).squeeze(1) >= at.max(1).values - eps
    return (t[p] + lam * (t[p + 1] - t[p]))[on_top]


def _fresh(t: Tensor, roots: Tensor, tol: float) -> Tensor:
    """The roots, sorted, at least ``tol`` away from the sorted ``t`` and from each other."""
    if roots.numel() == 0:
        return roots
    r = roots.sort().values
    pos = torch.searchsorted(t, r)
    left = t[(pos - 1).clamp_min(0)]
    right = t[pos.clamp_max(t.numel() - 1)]
    r = r[((r - left) > tol) & ((right - r) > tol)]
    if r.numel() > 1:
        r = r[torch.cat([r.new_ones(1, dtype=torch.bool), torch.diff(r) > tol])]
    return r


class _Dense(NamedTuple):
    """One hidden layer of a plain fully connected network: ``z = W h + c``, then the
    elementwise activation ``kind`` with slopes ``(slope for z >= 0, slope for z < 0)``."""

    W: Tensor
    c: Tensor
    kind: str
    slopes: tuple[float, float]

    def act(self, z: Tensor) -> Tensor:
        if self.kind == "relu":
            return torch.relu(z)
        if self.kind == "abs":
            return torch.abs(z)
        return torch.nn.functional.leaky_relu(z, self.slopes[1])


def _plain_mlp(net: nn.Module, x0: Tensor) -> list[_Dense] | None:
    """The hidden layers of ``net`` if it is a plain fully connected network on vector
    inputs (``Sequential``s of ``Linear`` layers, each hidden one followed by ReLU, leaky ReLU
    or Abs, and an optional last ``Linear``), else ``None``."""
    if x0.dim() != 1 or not isinstance(net, nn.Sequential):
        return None
    leaves = [m for m in net.modules() if not isinstance(m, nn.Sequential)]
    layers, i = [], 0
    while i < len(leaves):
        lin = leaves[i]
        if type(lin) is not nn.Linear:
            return None
        if i + 1 == len(leaves):
            break                                          # the output layer: not a site
        act = leaves[i + 1]
        if type(act) is nn.ReLU:
            kind, slopes = "relu", (1.0, 0.0)
        elif type(act) is nn.LeakyReLU:
            kind, slopes = "leaky", (1.0, float(act.negative_slope))
        elif type(act) is Abs:
            kind, slopes = "abs", (1.0, -1.0)
        else:
            return None
        W = lin.weight.detach()
        c = lin.bias.detach() if lin.bias is not None else W.new_zeros(W.shape[0])
        layers.append(_Dense(W, c, kind, slopes))
        i += 2
    return layers or None


class _Pending(NamedTuple):
    """A layer's pre-activations at the sorted points, not merged into one array: row ``i``
    of ``old`` is at point ``pos_old[i]``, row ``j`` of ``new`` at ``pos_new[j]``; rows sent to
    ``n`` or beyond are at no point (and zero)."""

    old: Tensor
    new: Tensor
    pos_old: Tensor
    pos_new: Tensor
    n: int


def _site_changes(pre: Tensor | _Pending) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """The sign changes of a layer's units between consecutive points: rows ``p``, units
    ``u`` (as :func:`_sign_changes`), the values at both ends ``fa, fb``, and the largest
    magnitude at the points. A :class:`_Pending` layer is read without merging its rows:
    only its signs are merged (a byte per unit)."""
    if isinstance(pre, Tensor):
        p, u = _sign_changes(pre)
        return p, u, pre[p, u], pre[p + 1, u], _scale(pre)
    old, new, pos_old, pos_new, n = pre
    n_old, units = old.shape
    a, b = _signs(old).view(torch.int64), _signs(new).view(torch.int64)   # 8 signs a word
    neg = a.new_empty((n_old + new.shape[0], a.shape[1]))
    neg.index_copy_(0, pos_old, a).index_copy_(0, pos_new, b)
    p, u = _changes(neg[:n].view(torch.bool))
    row = torch.empty(n_old + new.shape[0], dtype=torch.long, device=old.device)
    row.index_copy_(0, pos_old, torch.arange(n_old, device=old.device))
    row.index_copy_(0, pos_new, torch.arange(n_old, row.numel(), device=old.device))
    at = row[:n] * units          # flat offsets of the points' rows in [old; new]
    flat_old, flat_new = old.view(-1), new.view(-1)
    split = n_old * units

    def value(i: Tensor) -> Tensor:
        i = i + u
        fresh = i >= split
        return torch.where(fresh, flat_new[(i - split).clamp_min_(0)],
                           flat_old[i.clamp_max(split - 1)])

    return p, u, value(at[p]), value(at[p + 1]), max(_scale(old), _scale(new))


_BLOCK = 16  # kinks per block in _kink_values (one [block, block] matrix per block)
# From this width on a layer's roots get the next layer's pre-activations from its kinks
# (_kink_values); below it from the matrix product, as cheap there (measured on a 2-core CPU).
_KINK_WIDTH = 320


def _act_(layer: _Dense, z: Tensor) -> Tensor:
    """``layer.act(z)`` in place."""
    if layer.kind == "relu":
        return z.relu_()
    if layer.kind == "abs":
        return z.abs_()
    return torch.nn.functional.leaky_relu_(z, layer.slopes[1])


def _merge(old: Tensor, new: Tensor, pos_old: Tensor, pos_new: Tensor, n: int) -> Tensor:
    """The first ``n`` rows of the interleaving of ``old`` and ``new``: row ``i`` of ``old``
    goes to ``pos_old[i]``, row ``j`` of ``new`` to ``pos_new[j]`` (distinct positions,
    ``< len(old) + len(new)``; rows sent to ``n`` or beyond are dropped)."""
    out = old.new_empty((old.shape[0] + new.shape[0], *old.shape[1:]))
    out.index_copy_(0, pos_old, old)
    out.index_copy_(0, pos_new, new)
    return out[:n]


def _between_ends(old: Tensor, n: int) -> Tensor:
    """``[n, ...]`` with the two rows of ``old`` first and last; rows ``1 .. n - 2`` to be
    filled (the new points between the two ends)."""
    out = old.new_empty((n, *old.shape[1:]))
    out[0], out[-1] = old[0], old[1]
    return out


def _kink_values(W: Tensor, vals: Tensor, p: Tensor, u: Tensor, f: Tensor, c: Tensor, *,
                 block: int = _BLOCK) -> Tensor:
    """The next layer's pre-activations at the kinks of this layer's activations, without a
    matrix product.

    On a piece ``[a, b]`` of the current partition every unit of this layer is affine, so
    the next layer's pre-activation ``z = W act(.) + bias`` is piecewise affine with a kink
    where a unit ``u`` changes sign, at ``t = a + f (b - a)``: there the slope of ``z`` (per
    unit of ``f``) jumps by ``c W[:, u]``, ``c = (s_+ - s_-) |pre_u(b) - pre_u(a)|`` (``s_+,
    s_-`` the activation's slopes; the jump is upward whichever way the unit crosses).
    Given its values at the ends, ``z`` at a point ``g`` of the piece is the linear
    interpolation minus the Green's function of the kinks::

        z(g) = (1 - g) z(a) + g z(b) - sum_i c_i min(f_i, g) (1 - max(f_i, g)) W[:, u_i],

    with non-negative weights (nothing cancels between the two ends, and no step size
    enters). The kinks are cut into blocks of ``block`` consecutive ones; the sum over a
    block is one small matrix product ``[block, block] @ [block, w']``, and a piece
    spanning blocks adds the other blocks' sums over it: the blocks' sums over their first
    and last pieces (one ``[2, block] @ [block, w']`` product per block), summed by two
    ``[blocks, blocks]`` products. About ``2 (block + 4) w'`` flops per kink, against
    ``2 U w'`` for the next layer's matrix product at the point.

    ``W [w', U]``: the next layer's weight; ``vals [N, w']``: its pre-activations at the
    sorted points; the kinks, ``[M]`` each, ``M`` a multiple of ``block``, sorted by piece
    and then position: ``p`` (piece index), ``u`` (unit), ``f`` (position in the piece, in
    ``[0, 1]``) and ``c`` (size; 0 for dummies). Returns ``[M, w']``."""
    nb = p.numel() // block
    P, F, C = p.view(nb, block), f.view(nb, block), c.view(nb, block)
    cols = torch.gather(W, 1, u.expand(W.shape[0], -1))      # [w', M]: the columns W[:, u]
    cols = cols.view(-1, nb, block).permute(1, 2, 0)         # [blocks, block, w']
    one = bool(p[0] == p[-1])                                 # a single piece
    coef = torch.stack([1 - F, F], -1)                       # [blocks, block, 2]
    spans = nb > 1 and (one or bool((P[1:, 0] == P[:-1, -1]).any()))   # a piece spans blocks
    if spans:  # the blocks' sums over their last and first pieces
        first, last = P == P[:, :1], P == P[:, -1:]
        cf = C * F
        part = torch.bmm(torch.stack([cf * last, (C - cf) * first], 1), cols)  # [blocks, 2, w']
        if one:
            after = torch.ones(nb, nb, dtype=F.dtype, device=F.device).triu_(1)
            before = after.T
        else:
            beta = torch.arange(nb, device=p.device)
            start = torch.searchsorted(p, P[:, 0].contiguous()) // block   # the piece's blocks
            end = (torch.searchsorted(p, P[:, -1].contiguous(), right=True) - 1) // block
            before = ((beta >= start[:, None]) & (beta < beta[:, None])).to(F.dtype)
            after = ((beta > beta[:, None]) & (beta <= end[:, None])).to(F.dtype)
        sums = torch.stack([before @ part[:, 0], after @ part[:, 1]], 1)   # [blocks, 2, w']
    if one:  # the interpolation between the piece's ends, less the other blocks' sums
        q = int(p[0])
        ends = vals[q:q + 2][None]                            # [1, 2, w']
        z = torch.bmm(coef, ends - sums if spans else ends.expand(nb, 2, -1))
    else:
        z = torch.nn.functional.embedding_bag(torch.stack([p, p + 1], 1), vals,
                                              per_sample_weights=coef.view(-1, 2), mode="sum")
        z = z.view(nb, block, -1)
        if spans:
            z.baddbmm_(coef * torch.stack([first, last], -1), sums, alpha=-1)
    g = torch.minimum(F[:, :, None], F[:, None, :])          # [blocks, target, source]
    g.mul_(1 - torch.maximum(F[:, :, None], F[:, None, :])).mul_(C[:, None, :])
    if not one:
        g.mul_(P[:, :, None] == P[:, None, :])
    return z.baddbmm_(g, cols, alpha=-1).view(nb * block, -1)


def _mlp_breaks(layers: list[_Dense], x0: Tensor, x1: Tensor, *, tol: float,
                where: _Where) -> Tensor:
    """:func:`_segment_breaks` for a plain fully connected network (:func:`_plain_mlp`).

    The same site-by-site cuts, with every layer's pre-activations kept at the sorted
    points (the new rows merged in, no sort; the last layer's only scanned for sign
    changes, :class:`_Pending`). The roots of site ``k`` get the later layers'
    pre-activations from the matrix products, except that from a layer width of
    ``_KINK_WIDTH`` on the next layer's come from the kinks of site ``k``'s activations
    (:func:`_kink_values`, no product): a root of site ``k`` then costs ``L - k - 2``
    instead of ``L - k - 1`` of the ``L`` hidden layers' products. Sign changes are found
    eight units at a time (:func:`_changes`)."""
    device = x0.device
    ts = torch.tensor([0.0, 1.0], dtype=F64, device=device)
    h = torch.stack([x0, x1])
    vals: list[Tensor | _Pending | None] = []
    for layer in layers:
        z = torch.addmm(layer.c, h, layer.W.T)
        vals.append(z)
        h = layer.act(z)
    L, B = len(layers), _BLOCK
    for k in range(L):
        pre, vals[k] = vals[k], None
        p, u, fa, fb, scale = _site_changes(pre)
        _check_scale(scale, "the network's pre-activations", where)
        m = p.numel()
        if not m:
            continue
        f = fa / (fa - fb)                                   # in [0, 1]: fa, fb differ in sign
        ok = torch.minimum(fa.abs(), fb.abs()) > ZERO_TOL * scale   # as _unit_roots
        kinks = k + 1 < L and layers[k].W.shape[0] >= _KINK_WIDTH
        if kinks:  # the jumps of the activation's slope; ``pre`` is no longer needed
            c = (fb - fa).abs_().mul_(layers[k].slopes[0] - layers[k].slopes[1])
            pre = None
        order = torch.argsort(f, stable=True)               # by piece, then position
        order = order.index_select(0, torch.argsort(p.index_select(0, order), stable=True))
        M = -(-m // B) * B if kinks else m
        if M > m:  # dummy kinks for _kink_values: copies of the last one (of size 0)
            order = torch.cat([order, order[-1:].expand(M - m)])
        p, f, ok = p.index_select(0, order), f.index_select(0, order), ok.index_select(0, order)
        ta, tb = ts.index_select(0, p), ts.index_select(0, p + 1)
        x = torch.addcmul(ta, f, tb - ta)
        # The new points, as _fresh: more than tol away from the old points and from each
        # other (which drops the dummies).
        keep = ok & (torch.minimum(x - ta, tb - x) > tol)
        kept = keep.nonzero().squeeze(1)
        close = torch.diff(x.index_select(0, kept)) <= tol
        if bool(close.any()):
            keep[kept[1:][close]] = False
            kept = keep.nonzero().squeeze(1)
        n_old, n = ts.numel(), kept.numel()
        if not n:
            continue
        n_all = n_old + n
        # merged positions: a new point goes after its piece's left end and the earlier new
        # points; the other kinks to n_all, n_all + 1, ... (which _merge drops)
        pos = torch.where(keep, p + keep.cumsum(0), (n_all - 1) + (~keep).cumsum(0))
        pos_old = torch.arange(n_old, device=device)
        pos_old += torch.searchsorted(p.index_select(0, kept), pos_old)
        ts = _merge(ts, x, pos_old, pos, n_all)
        if k + 1 == L:
            break
        ends = n_old == 2   # the new points lie between the two ends: rows 1 .. n
        view = False        # whether z is rows of vals (then not to be changed in place)
        if kinks:  # every sign change is a kink of the next layer
            c = c.index_select(0, order)
            c[m:] = 0
            z = _kink_values(layers[k + 1].W, vals[k + 1], p, u.index_select(0, order), f, c,
                             block=B)                              # [M, w']
            if ends:
                v = _between_ends(vals[k + 1], n_all)
                z, view = torch.index_select(z, 0, kept, out=v[1:-1]), True
            elif k + 2 < L:
                v = _merge(vals[k + 1], z, pos_old, pos, n_all)
                z = z.index_select(0, kept)
            else:  # the last layer: its rows are only scanned for sign changes
                z.index_fill_(0, (~keep).nonzero().squeeze(1), 0)
                v = _Pending(vals[k + 1], z, pos_old, pos, n_all)
            vals[k + 1] = v
        else:  # this layer's pre-activations at the new points: affine on a piece
            q, g = p.index_select(0, kept), f.index_select(0, kept)[:, None]
            z = torch.lerp(pre.index_select(0, q), pre.index_select(0, q + 1), g)
        pre, kept = None, pos.index_select(0, kept)
        for j in range(k + 2 if kinks else k + 1, L):
            h = layers[j - 1].act(z) if view else _act_(layers[j - 1], z)
            if ends:
                v = _between_ends(vals[j], n_all)
                z, view = torch.addmm(layers[j].c, h, layers[j].W.T, out=v[1:-1]), True
            else:
                z = torch.addmm(layers[j].c, h, layers[j].W.T)
                v = _merge(vals[j], z, pos_old, kept, n_all)
            vals[j] = v
    return ts


def _segment_breaks(net: nn.Module, x0: Tensor, x1: Tensor, *, tol: float,
                    where: _Where) -> Tensor:
    """Sorted breakpoints ``[P+1]`` of the activation regions on ``[x0, x1]``."""
    layers = _plain_mlp(net, x0)
    if layers is not None:
        return _mlp_breaks(layers, x0, x1, tol=tol, where=where)
    dx = x1 - x0
    t_all = torch.tensor([0.0, 1.0], dtype=F64, device=x0.device)
    sites = _trace(net, _on_line(x0, dx, t_all), where)
    kinds = [s.kind for s in sites]
    cache: list[Tensor | None] = [s.values for s in sites]
    for k, kind in enumerate(kinds):
        order = torch.argsort(t_all)
        ts, vals = t_all[order], cache[k][order]
        eps = ZERO_TOL * _scale(vals)
        if kind in _UNIT_KINDS:
            roots = _unit_roots(ts, vals, eps)
        else:
            roots = _max_roots(ts, vals, eps)
        new = _fresh(ts, roots, tol)
        cache[k] = None
        if new.numel() and k + 1 < len(kinds):
            more = _trace(net, _on_line(x0, dx, new), where, keep=range(k + 1, len(kinds)))
            if len(more) != len(kinds):
                raise RegionError("the network's sites differ between forward passes; "
                                  "regions need a fixed sequence of nonlinearities")
            for j in range(k + 1, len(kinds)):
                cache[j] = torch.cat([cache[j], more[j].values])
        t_all = torch.cat([t_all, new])
    t = t_all.sort().values
    if any(kind == "max" for kind in kinds) and t.numel() > 2:
        # Crossings kept within eps of the envelope may split a region: merge equal codes.
        mids = (t[:-1] + t[1:]) / 2
        pat = _pattern(_trace(net, _on_line(x0, dx, mids), where))
        change = (pat[1:] != pat[:-1]).any(1)
        t = torch.cat([t[:1], t[1:-1][change], t[-1:]])
    return t


@dataclass(frozen=True, eq=False)
class Segment:
    """The activation regions of ``net`` on the segment ``x(t) = x0 + t (x1 - x0)``.

    ``t`` ``[P+1]``: sorted breakpoints, ``t[0] = 0`` and ``t[-1] = 1``; piece ``i`` is
    ``[t[i], t[i+1]]`` and lies in one activation region; adjacent pieces have different codes.
    ``codes`` and ``affine`` are computed on first use, at the pieces' midpoints.
    """

    net: nn.Module
    x0: Tensor
    x1: Tensor
    t: Tensor

    @property
    def n_regions(self) -> int:
        """Number of pieces ``P`` (activation regions met by the segment)."""
        return self.t.numel() - 1

    @property
    def dt(self) -> Tensor:
        """Piece lengths in ``t``, ``[P]`` (they sum to 1)."""
        return torch.diff(self.t)

    @property
    def lengths(self) -> Tensor:
        """Piece lengths in input space, ``[P]``: ``dt * ||x1 - x0||``."""
        return self.dt * _norm(self.x1 - self.x0)

    @property
    def midpoints(self) -> Tensor:
        """Midpoints of the pieces in ``t``, ``[P]``."""
        return (self.t[:-1] + self.t[1:]) / 2

    def points(self, t) -> Tensor:
        """Inputs at parameters ``t`` ``[N]`` (or one number): ``[N, *x0.shape]``."""
        t = _params(t, "t", "regions.Segment.points", self.x0.device, (0, 1)).reshape(-1)
        return _on_line(self.x0, self.x1 - self.x0, t)

    def piece_of(self, t) -> Tensor:
        """Index of the piece containing each ``t`` ``[N]`` (or one number; a breakpoint goes
        right): ``[N]``."""
        t = _params(t, "t", "regions.Segment.piece_of", self.t.device, (0, 1)).reshape(-1)
        return (torch.searchsorted(self.t, t, right=True) - 1).clamp(0, self.n_regions - 1)

    @cached_property
    def codes(self):
        """``cpa.codes`` at the pieces' midpoints (batch of ``P``)."""
        with torch.no_grad():
            return cpa.codes(self.net, self.points(self.midpoints))

    @cached_property
    def affine(self) -> tuple[Tensor, Tensor]:
        """Per piece the input-space affine map ``f(x) = A x + b``: ``A [P, d_out, d_in]``,
        ``b [P, d_out]`` (``cpa.affine_map`` at the midpoints)."""
        return _affine_chunks(self.net, self.points(self.midpoints))

    @property
    def A(self) -> Tensor:
        return self.affine[0]

    @property
    def b(self) -> Tensor:
        return self.affine[1]

    def affine_t(self) -> tuple[Tensor, Tensor]:
        """Per piece ``f(x(t)) = slope t + intercept``: ``slope, intercept [P, d_out]``."""
        A, b = self.affine
        dx = (self.x1 - self.x0).reshape(-1)
        return A @ dx, A @ self.x0.reshape(-1) + b


def _affine_chunks(net: nn.Module, X: Tensor, *, chunk: int = _CHUNK) -> tuple[Tensor, Tensor]:
    As, bs = [], []
    with torch.no_grad():
        for start in range(0, X.shape[0], chunk):
            A, b = cpa.affine_map(net, X[start:start + chunk])
            As.append(A)
            bs.append(b)
    return torch.cat(As), torch.cat(bs)


@threads.fair_share
def on_segment(net: nn.Module, x0, x1, *, tol: float = BREAK_TOL) -> Segment:
    """The exact activation regions of ``net`` on the segment from ``x0`` to ``x1``.

    ``x0``, ``x1``: one input each (the network's input shape, no batch dimension), distinct.
    ``tol``: breakpoints closer than this (in ``t``) are one. One forward pass per site, on
    the breakpoints found so far (the points found at the last site are never forwarded;
    with max sites one more pass at the midpoints merges pieces whose codes agree). For a
    plain fully connected network (``Linear`` layers with ReLU, leaky ReLU or Abs) the roots
    of a site are forwarded from that site on, from pre-activations interpolated between
    the known points, which saves the earlier layers' products (and from a width of 320 on,
    the next layer's pre-activations there come from the activations' kinks, without a
    product).

    Raises :class:`dltheory.cpa.NotCPAError` for a network that is not CPA, and
    :class:`RegionError` (an :class:`~dltheory.errors.InputError`) for inputs of the wrong
    shape, non-finite inputs, ``x0 == x1``, a ``tol`` outside ``[0, 1)``, and a segment
    whose coordinates or forward pass reach beyond :data:`VALUE_LIMIT` (float64 overflows).
    """
    fn = "regions.on_segment"
    x0, x1 = _segment_args(net, x0, x1, fn)
    tol = validation.real(tol, "tol", fn=fn, lo=0.0, hi=1.0, hi_open=True)
    where = _Where(fn, "on the segment from x0 to x1", "x0 and x1")
    _check_line(net, x0, x1, where)
    # The Segment keeps a frozen copy: its codes and affine maps are computed on first use,
    # and must be those of the network that was cut, even if the caller trains it later.
    return Segment(_frozen(net), x0, x1, _segment_breaks(net, x0, x1, tol=tol, where=where))


def _segment_args(net: nn.Module, x0, x1, fn: str, *,
                  distinct: bool = True) -> tuple[Tensor, Tensor]:
    """``net`` checked, and private float64 copies of the inputs ``x0``, ``x1`` (with
    ``distinct``, different)."""
    _network(net, fn)
    x0 = _as_input(net, x0, "x0", fn)
    x1 = _like(net, x0, x1, "x1", "x0", fn)
    if distinct and torch.equal(x0, x1):
        raise RegionError(f"{fn}: x0 == x1: the segment has zero length")
    return x0, x1


@threads.fair_share
def nearest_boundary_along(net: nn.Module, x, directions, *, radius: float = 1.0) -> Tensor:
    """Exact distance from ``x`` to the first region boundary along each direction.

    ``x``: one input; ``directions`` ``[D, *x.shape]`` (normalised here). For each, the
    regions on ``[x, x + radius d]`` are enumerated and the first breakpoint is returned as a
    distance in input space; ``inf`` where the ray leaves no region within ``radius``.
    Returns ``[D]``. ``radius`` must be positive and finite, and the rays within
    :data:`VALUE_LIMIT` (as for :func:`on_segment`).
    """
    fn = "regions.nearest_boundary_along"
    _network(net, fn)
    x = _as_input(net, x, "x", fn)
    d = _as_tensor(net, directions, "directions", fn)
    if d.dim() != x.dim() + 1 or d.shape[1:] != x.shape:
        raise RegionError(f"{fn}: directions must have shape [D, *x.shape] = "
                          f"[D, {tuple(x.shape)}], got {tuple(d.shape)}")
    radius = validation.real(radius, "radius", fn=fn, lo=0.0, lo_open=True)
    norms = torch.stack([_norm(di) for di in d])
    if (norms == 0).any():
        raise RegionError(f"{fn}: directions: direction {int((norms == 0).nonzero()[0])} "
                          "is zero")
    where = _Where(fn, "on the rays from x within radius", "x, directions or radius")
    ends = [x + (radius / norms[i]) * d[i] for i in range(d.shape[0])]
    for end in ends:
        _check_line(net, x, end, where)
    out = torch.full((d.shape[0],), math.inf, dtype=F64, device=x.device)
    for i in range(d.shape[0]):
        t = _segment_breaks(net, x, ends[i], tol=BREAK_TOL, where=where)
        if t.numel() > 2:
            out[i] = float(t[1]) * radius
    return out


@threads.fair_share
def sample_segment(net: nn.Module, x0, x1, n: int, *, chunk: int = _CHUNK) -> int:
    """Regions found by dense sampling: the number of runs of equal codes at the ``n``
    points ``t = (i + 1/2) / n``. Never more than the exact count (a region meets a segment
    in one interval); equal to it once every piece is longer than ``1/n``. ``n`` and
    ``chunk`` (points per forward pass) are integers >= 1; the inputs are checked as by
    :func:`on_segment`."""
    fn = "regions.sample_segment"
    x0, x1 = _segment_args(net, x0, x1, fn, distinct=False)
    n, chunk = _count(n, "n", fn), _count(chunk, "chunk", fn)
    where = _Where(fn, "on the segment from x0 to x1", "x0 and x1")
    _check_line(net, x0, x1, where)
    dx = x1 - x0
    runs, last = 0, None
    for start in range(0, n, chunk):
        t = (torch.arange(start, min(n, start + chunk), dtype=F64, device=x0.device) + 0.5) / n
        pat = _pattern(_trace(net, _on_line(x0, dx, t), where, chunk=chunk))
        if last is not None:
            pat = torch.cat([last, pat])
            runs += int((pat[1:] != pat[:-1]).any(1).sum())
        else:
            runs += 1 + int((pat[1:] != pat[:-1]).any(1).sum())
        last = pat[-1:]
    return runs


# ================================================================================ plane


class _Frame(NamedTuple):
    origin: Tensor
    u: Tensor
    v: Tensor

    def points(self, st: Tensor) -> Tensor:
        """Inputs at plane coordinates ``st [N, 2]``: ``[N, *origin.shape]``."""
        shape = (-1, *([1] * self.origin.dim()))
        return (self.origin + st[:, 0].reshape(shape) * self.u
                + st[:, 1].reshape(shape) * self.v)


def _polygon_area(P: Tensor, n: Tensor) -> Tensor:
    """Signed (counter-clockwise positive) areas of padded polygons ``P [R, V, 2]`` with
    ``n [R]`` vertices each: ``[R]``. Coordinates are taken relative to the first vertex."""
    V = P.shape[1]
    idx = torch.arange(V, device=P.device)
    nxt = torch.where(idx[None] + 1 < n[:, None], idx[None] + 1, 0)
    Q = P - P[:, :1]
    Qn = Q.gather(1, nxt[..., None].expand(-1, -1, 2))
    cross = Q[..., 0] * Qn[..., 1] - Q[..., 1] * Qn[..., 0]
    return (cross * (idx[None] < n[:, None])).sum(1) / 2


def _polygon_centroid(P: Tensor, n: Tensor) -> Tensor:
    """Area centroids ``[R, 2]`` of padded polygons (vertex mean for degenerate ones)."""
    V = P.shape[1]
    idx = torch.arange(V, device=P.device)
    valid = idx[None] < n[:, None]
    nxt = torch.where(idx[None] + 1 < n[:, None], idx[None] + 1, 0)
    o = P[:, :1]
    Q = P - o
    Qn = Q.gather(1, nxt[..., None].expand(-1, -1, 2))
    cross = (Q[..., 0] * Qn[..., 1] - Q[..., 1] * Qn[..., 0]) * valid
    area = cross.sum(1) / 2
    c = ((Q + Qn) * cross[..., None]).sum(1) / (6 * area[:, None])
    mean = (Q * valid[..., None]).sum(1) / n[:, None]
    ok = area.abs() > 0
    return o[:, 0] + torch.where(ok[:, None], c, mean)


def _clip(P: Tensor, n: Tensor, h: Tensor, eps: float, *, both: bool = False):
    """Clip convex polygons to the half-planes ``h >= 0`` (Sutherland-Hodgman, vectorised).

    ``P [m, V, 2]`` padded counter-clockwise polygons with ``n [m]`` vertices, ``h [m, V]``
    the values at the vertices of a function affine on each polygon; ``|h| <= eps`` counts as
    0 (on the line). The intersection with an edge is interpolated from the edge's
    lexicographically smaller endpoint, so two polygons sharing the edge get the same point.
    Returns ``(Q, count, pos, neg)``: the clipped polygons ``[m, V', 2]``, their counts
    ``[m]`` (below 3 when nothing of positive area is left), and whether each polygon had a
    vertex with ``h > eps``, and one with ``h < -eps``. With ``both``, ``(Q, count)`` is a
    pair: the sides ``h >= 0`` and ``h <= 0``.
    """
    m, V = h.shape
    idx = torch.arange(V, device=P.device)
    valid = idx[None] < n[:, None]
    sig = ((h > eps).to(torch.int8) - (h < -eps).to(torch.int8)) * valid
    nxt = torch.where(idx[None] + 1 < n[:, None], idx[None] + 1, 0)
    Pn = P.gather(1, nxt[..., None].expand(-1, -1, 2))
    hn, sn = h.gather(1, nxt), sig.gather(1, nxt)
    cross = (sig * sn) < 0
    swap = (Pn[..., 0] < P[..., 0]) | ((Pn[..., 0] == P[..., 0]) & (Pn[..., 1] < P[..., 1]))
    pa, pb = torch.where(swap[..., None], Pn, P), torch.where(swap[..., None], P, Pn)
    ha, hb = torch.where(swap, hn, h), torch.where(swap, h, hn)
    lam = torch.where(cross, ha, 0.0) / torch.where(cross, ha - hb, 1.0)
    out = torch.stack([P, pa + lam[..., None] * (pb - pa)], dim=2).reshape(m, 2 * V, 2)
    pos, neg = (sig > 0).any(1), (sig < 0).any(1)
    sides = [_compact(out, torch.stack([valid & (sig >= 0), cross], 2).reshape(m, 2 * V))]
    if both:
        sides.append(_compact(out, torch.stack([valid & (sig <= 0), cross], 2)
                              .reshape(m, 2 * V)))
        return sides[0], sides[1], pos, neg
    return (*sides[0], pos, neg)


def _compact(out: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The kept slots of ``out [m, S, 2]`` moved to the front: ``[m, W, 2]`` and counts."""
    m = out.shape[0]
    count = keep.sum(1)
    width = max(int(count.max()) if m else 0, 1)
    pos = keep.cumsum(1) - 1
    Q = out.new_zeros(m, width, 2)
    rows = torch.arange(m, device=out.device)[:, None].expand_as(keep)
    Q[rows[keep], pos[keep]] = out[keep]
    return Q, count


_BITS = 2 ** torch.arange(8, dtype=torch.uint8)


def _pack(b: Tensor) -> Tensor:
    """Bit-pack the rows of a bool tensor ``[N, F]`` -> ``[N, ceil(F / 8)]`` uint8."""
    N, F = b.shape
    b = torch.nn.functional.pad(b, (0, (-F) % 8)).reshape(N, -1, 8).to(torch.uint8)
    return (b * _BITS.to(b.device)).sum(-1, dtype=torch.uint8)


def _unpack(x: Tensor, F: int) -> Tensor:
    """Inverse of :func:`_pack`: ``[N, W]`` uint8 -> ``[N, F]`` bool."""
    bits = (x[..., None] & _BITS.to(x.device)) != 0
    return bits.reshape(x.shape[0], -1)[:, :F]


def _unique_rows(X: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows of ``X [N, 2]`` (bitwise equal coordinates) and the inverse ``[N]``: two
    stable 1-D sorts, faster than ``torch.unique(dim=0)``."""
    o1 = torch.argsort(X[:, 1], stable=True)
    order = o1[torch.argsort(X[o1, 0], stable=True)]
    Xs = X[order]
    new = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
    new[1:] = (Xs[1:] != Xs[:-1]).any(1)
    inv = torch.empty_like(order)
    inv[order] = new.cumsum(0) - 1
    return Xs[new], inv


def _qr3(Phi: Tensor) -> tuple[Tensor, Tensor]:
    """Thin QR of ``Phi [B, V, 3]`` by modified Gram-Schmidt: ``Q [B, V, 3]``, ``R [B, 3, 3]``
    (columns of zero norm give zero columns of ``Q``)."""
    qs = []
    R = Phi.new_zeros(Phi.shape[0], 3, 3)
    for j in range(3):
        a = Phi[..., j]
        for i, q in enumerate(qs):
            r = (q * a).sum(-1)
            R[:, i, j] = r
            a = a - r[:, None] * q
        nrm = torch.linalg.vector_norm(a, dim=-1)
        R[:, j, j] = nrm
        qs.append(a / torch.where(nrm > 0, nrm, 1.0)[:, None])
    return torch.stack(qs, -1), R


class _Fit(NamedTuple):
    """Affine fits of a site's values: for the candidate pair ``q`` (a polygon ``origin[q]``
    of the batch and a group whose winner changes on it), each candidate value is
    ``c(s, t) = coef[q, :, 0] + coef[q, :, 1] (s - centre_s) / scale + coef[q, :, 2]
    (t - centre_t) / scale`` with the polygon's ``centre [B, 2]`` and ``scale [B]``;
    ``coef [Q, k, 3]``."""

    centre: Tensor
    scale: Tensor
    coef: Tensor

    def at(self, pair: Tensor, poly: Tensor, P: Tensor) -> Tensor:
        """Candidate values of the pairs ``pair [m]`` at the vertices ``P [m, V, 2]`` of
        polygons inside the batch's polygons ``poly [m]``: ``[m, V, k]``."""
        xt = (P - self.centre[poly][:, None]) / self.scale[poly][:, None, None]
        c = self.coef[pair]                             # [m, k, 3]
        return torch.baddbmm(c[:, None, :, 0], xt, c[:, :, 1:].transpose(1, 2))


def _frames(P: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per polygon the centre ``[B, 2]`` and scale ``[B]`` of its vertices, and the thin QR
    factors ``Q [B, V, 3]``, ``R [B, 3, 3]`` of the design matrix ``[1, (x - centre) /
    scale]`` at its vertices (padded rows zero), for least-squares affine fits."""
    V = P.shape[1]
    w = (torch.arange(V, device=P.device)[None] < n[:, None]).to(F64)
    centre = (P * w[..., None]).sum(1) / n[:, None]
    scale = (torch.linalg.vector_norm(P - centre[:, None], dim=-1) * w).amax(1)
    scale = torch.where(scale > 0, scale, 1.0)
    xt = (P - centre[:, None]) / scale[:, None, None] * w[..., None]
    Q, R = _qr3(torch.cat([w[..., None], xt], dim=-1))
    return centre, scale, Q, R


def _solve_fit(Q: Tensor, R: Tensor, Y: Tensor) -> Tensor:
    """Least-squares coefficients ``[m, k, 3]`` of values ``Y [m, V, k]`` at vertices with
    QR factors ``Q [m, V, 3]``, ``R [m, 3, 3]`` (exact up to rounding: the values are affine
    on each polygon). A zero pivot (a degenerate polygon) gives a zero coefficient."""
    qty = torch.bmm(Q.transpose(1, 2), Y)                         # [m, 3, k]
    piv = torch.diagonal(R, dim1=1, dim2=2)
    inv = torch.where(piv > 1e-14 * piv[:, :1], 1.0 / torch.where(piv > 0, piv, 1.0), 0.0)
    c2 = qty[:, 2] * inv[:, 2, None]
    c1 = (qty[:, 1] - R[:, 1, 2, None] * c2) * inv[:, 1, None]
    c0 = (qty[:, 0] - R[:, 0, 1, None] * c1 - R[:, 0, 2, None] * c2) * inv[:, 0, None]
    return torch.stack([c0, c1, c2], dim=-1)


class _Polys:
    """A growable set of padded convex polygons: ``P [cap, V, 2]``, counts ``n``, and the
    polygon ``origin`` (of the batch, at the site's start) that each lies in."""

    def __init__(self, P: Tensor, n: Tensor, origin: Tensor) -> None:
        self.P, self.n, self.origin, self.size = P, n, origin, P.shape[0]

    def _reserve(self, extra: int, width: int) -> None:
        cap, V = self.P.shape[:2]
        if self.size + extra > cap or width > V:
            cap = max(cap, 2 * (self.size + extra))
            V = max(V, width)
            P = self.P.new_zeros(cap, V, 2)
            P[:self.size, :self.P.shape[1]] = self.P[:self.size]
            n = self.n.new_zeros(cap)
            n[:self.size] = self.n[:self.size]
            origin = self.origin.new_zeros(cap)
            origin[:self.size] = self.origin[:self.size]
            self.P, self.n, self.origin = P, n, origin

    def replace(self, rows: Tensor, P: Tensor, n: Tensor) -> None:
        self._reserve(0, P.shape[1])
        self.P[rows] = 0.0
        self.P[rows, :P.shape[1]] = P
        self.n[rows] = n

    def append(self, P: Tensor, n: Tensor, origin: Tensor) -> None:
        m = P.shape[0]
        if m == 0:
            return
        self._reserve(m, P.shape[1])
        self.P[self.size:self.size + m, :P.shape[1]] = P
        self.n[self.size:self.size + m] = n
        self.origin[self.size:self.size + m] = origin
        self.size += m

    def trimmed(self) -> tuple[Tensor, Tensor]:
        n = self.n[:self.size]
        width = int(n.max()) if self.size else 1
        return self.P[:self.size, :width], n


def _max_cells(values, P: Tensor, n: Tensor, c: Tensor,
               eps: float) -> list[tuple[Tensor, Tensor]]:
    """The cells of max groups in the polygons ``P [m, V, 2]`` (candidate values ``c
    [m, V, k]`` at their vertices; ``values(Q)`` gives them at the vertices of polygons
    ``Q`` inside the same ones): for each candidate ``i`` the polygon clipped to
    ``c_i >= c_j`` for every ``j != i``. Ties go to the first candidate, so a cell is empty
    where ``c_i <= c_j`` everywhere for some ``j < i``."""
    k = c.shape[-1]
    cells = []
    for i in range(k):
        Q, cnt, ci = P, n, c
        empty = torch.zeros(P.shape[0], dtype=torch.bool, device=P.device)
        for j in range(k):
            if j == i:
                continue
            if ci is None:
                ci = values(Q)
            Q, cnt, pos, neg = _clip(Q, cnt, ci[..., i] - ci[..., j], eps)
            ci = None
            empty |= ~pos & neg if j > i else ~pos
        cells.append((Q, torch.where(empty | (cnt < 3), 0, cnt)))
    return cells


def _cut_batch(net: nn.Module, frame: _Frame, P: Tensor, n: Tensor, site: int,
               n_sites: int, budget: int, where: _Where) -> tuple[Tensor, Tensor]:
    """Cut the polygons ``P [B, V, 2]`` (each inside one region of the sites before ``site``)
    along the kinks of ``site``; returns the new padded polygons and counts.

    One forward pass at the unique vertices gives the site's values there; for every pair
    (polygon, group) whose winner is not the same at all vertices the values are fitted by
    an affine function of ``(s, t)``. Then in step ``r`` every polygon is cut by the ``r``-th
    such group of the polygon it lies in, so the number of steps is the largest number of
    groups met by one polygon, not the number of groups.
    """
    B, V = P.shape[:2]
    valid = torch.arange(V, device=P.device)[None] < n[:, None]
    uniq, inv = _unique_rows(P[valid])
    sites = _trace(net, frame.points(uniq), where, keep=range(site, site + 1))
    if len(sites) != n_sites:
        raise RegionError("the network's sites differ between forward passes; regions need "
                          "a fixed sequence of nonlinearities")
    kind, vals = sites[site]
    del sites
    unit = kind in _UNIT_KINDS
    if unit:
        vals = vals[..., None]                           # [nv, U, 1]: candidate pre (vs 0)
    scale = _scale(vals)
    if scale == 0.0:
        return P, n
    eps = ZERO_TOL * scale
    idx = torch.zeros(B, V, dtype=torch.long, device=P.device)
    idx[valid] = inv
    idx = torch.where(valid, idx, idx[:, :1])            # padded slots repeat vertex 0
    # which groups change winner on which polygon: from bit-packed per-vertex tests,
    # reduced over each polygon's vertices (64x less memory traffic than the values)
    flat = vals.reshape(vals.shape[0], -1)
    if unit:
        pos, neg = _pack(flat > eps), _pack(flat < -eps)
        any_pos, any_neg = pos[idx[:, 0]], neg[idx[:, 0]]
        for j in range(1, V):
            any_pos |= pos[idx[:, j]]
            any_neg |= neg[idx[:, j]]
        split = _unpack(any_pos & any_neg, flat.shape[1])                    # [B, U]
        del pos, neg, any_pos, any_neg
    else:
        win = _pack((vals >= vals.amax(-1, keepdim=True) - eps).reshape(flat.shape))
        always = win[idx[:, 0]]
        for j in range(1, V):
            always &= win[idx[:, j]]
        split = ~_unpack(always, flat.shape[1]).reshape(B, *vals.shape[1:]).any(-1)
        del win, always
    del flat
    centre, span, Qf, Rf = _frames(P, n)
    o, g = split.nonzero(as_tuple=True)
    del split
    chunk = max(1, budget // (V * vals.shape[-1]))
    pair_poly, coefs = [o], []
    for a in range(0, o.numel(), chunk):
        oo, gg = o[a:a + chunk], g[a:a + chunk]
        coefs.append(_solve_fit(Qf[oo], Rf[oo], vals[idx[oo], gg[:, None]]))
    del vals
    if not coefs:
        return P, n
    pair_poly = torch.cat(pair_poly)
    fit = _Fit(centre, span, torch.cat(coefs))
    count = torch.bincount(pair_poly, minlength=B)
    first_pair = count.cumsum(0) - count
    polys = _Polys(P.clone(), n.clone(), torch.arange(B, device=P.device))
    for r in range(int(count.max()) if B else 0):
        rows = (count[polys.origin[:polys.size]] > r).nonzero().flatten()
        poly = polys.origin[rows]
        pair = first_pair[poly] + r
        Pr, nr = polys.P[rows], polys.n[rows]
        c = fit.at(pair, poly, Pr)
        ok = torch.arange(Pr.shape[1], device=P.device)[None] < nr[:, None]
        if unit:
            h = c[..., 0]
            go = ((h > eps) & ok).any(1) & ((h < -eps) & ok).any(1)
        else:
            go = ~((c >= c.amax(-1, keepdim=True) - eps) | ~ok[..., None]).all(1).any(-1)
        if not bool(go.any()):
            continue
        rows, poly, pair, Pr, nr, c = rows[go], poly[go], pair[go], Pr[go], nr[go], c[go]
        if unit:
            (Qa, na), (Qb, nb), _, _ = _clip(Pr, nr, c[..., 0], eps, both=True)
            polys.replace(rows, Qa, na)
            polys.append(Qb, nb, poly)
            continue
        cells = _max_cells(lambda Q, pair=pair, poly=poly: fit.at(pair, poly, Q),
                           Pr, nr, c, eps)
        k = len(cells)
        alive = torch.stack([cnt >= 3 for _, cnt in cells], 1)       # [m, k]
        has = alive.any(1)
        first = alive.to(torch.int8).argmax(1)
        width = max(Q.shape[1] for Q, _ in cells)
        Qs = torch.stack([torch.nn.functional.pad(Q, (0, 0, 0, width - Q.shape[1]))
                          for Q, _ in cells], 1)                     # [m, k, W, 2]
        cnts = torch.stack([cnt for _, cnt in cells], 1)
        am = torch.arange(rows.shape[0], device=P.device)
        polys.replace(rows[has], Qs[am, first][has], cnts[am, first][has])
        extra = alive & (torch.arange(k, device=P.device)[None] != first[:, None])
        polys.append(Qs[extra], cnts[extra], poly[:, None].expand(-1, k)[extra])
    return polys.trimmed()


def _morton(xy: Tensor, lo: Tensor, hi: Tensor, bits: int = 16) -> Tensor:
    """Z-order keys ``[N]`` of points ``xy [N, 2]`` in the box ``[lo, hi]``."""
    q = ((xy - lo) / (hi - lo) * (2**bits - 1)).clamp(0, 2**bits - 1).long()
    key = torch.zeros(xy.shape[0], dtype=torch.long, device=xy.device)
    for b in range(bits):
        key |= ((q[:, 0] >> b) & 1) << (2 * b)
        key |= ((q[:, 1] >> b) & 1) << (2 * b + 1)
    return key


def _pad_cat(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    width = max(P.shape[1] for P, _ in parts)
    Ps = [torch.nn.functional.pad(P, (0, 0, 0, width - P.shape[1])) for P, _ in parts]
    return torch.cat(Ps), torch.cat([n for _, n in parts])


def _plane_polygons(net: nn.Module, frame: _Frame, rect: Tensor, *, budget: int,
                    progress: bool, where: _Where) -> tuple[Tensor, Tensor]:
    P = rect[None]
    n = torch.tensor([4], device=rect.device)
    sizes = [s.values[0].numel() for s in _trace(net, frame.points(rect[:1]), where)]
    lo, hi = rect[0], rect[2]
    for site, size in enumerate(tqdm(sizes, desc="sites", disable=not progress)):
        # per polygon about 2 vertices' values of the site are held (the forward pass)
        batch = max(1, budget // (4 * max(size, 1)))
        if P.shape[0] > batch:
            c = _polygon_centroid(P, n)
            order = torch.argsort(_morton(c, lo, hi))
            P, n = P[order], n[order]
        parts = [_cut_batch(net, frame, P[a:a + batch], n[a:a + batch], site, len(sizes),
                             budget, where)
                 for a in range(0, P.shape[0], batch)]
        P, n = _pad_cat(parts)
    return P, n


class VertexMerge(NamedTuple):
    """How :meth:`Plane.graph` told shared vertices from distinct ones (lengths relative to
    the rectangle's diameter): copies of one vertex (computed in different polygons) were at
    most ``spread`` apart, distinct vertices at least ``separation``; ``tol`` lies in the gap
    between them. ``ids [N]`` number the merged vertices ``0..V-1``."""

    ids: Tensor
    tol: float
    spread: float
    separation: float


ROUNDING_FLOOR = 1e-15
"""Distances below this (relative to the diameter) are rounding: such vertices are merged."""
MIN_GAP = 100.0
"""The gap, as a ratio, that separates copies of a vertex from distinct vertices."""


def _merge_vertices(X: Tensor, diam: float, *, radius: float = 1e-8) -> VertexMerge:
    """Merge the copies of each vertex among the points ``X [N, 2]``.

    A vertex shared by several polygons is computed in each of them; the copies agree to
    rounding, but how closely depends on the conditioning of the lines that meet there, and
    distinct vertices of a fine partition can be closer than any fixed tolerance. So the
    tolerance is read off the data: the distances between all pairs closer than ``radius``
    (relative) are sorted, and the first gap of at least ``MIN_GAP`` above ``ROUNDING_FLOOR``
    separates copies (below) from distinct vertices (above); points are merged by connected
    components below the gap. Raises :class:`RegionError` when no such gap exists (the
    partition is finer than float64 can resolve).
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    Xn = X.detach().cpu().numpy()
    N = Xn.shape[0]
    pairs = cKDTree(Xn).query_pairs(radius * diam, output_type="ndarray")
    d = np.linalg.norm(Xn[pairs[:, 0]] - Xn[pairs[:, 1]], axis=1) / diam
    levels = np.unique(np.concatenate([[ROUNDING_FLOOR], d[d > ROUNDING_FLOOR], [radius]]))
    ratio = levels[1:] / levels[:-1]
    wide = np.flatnonzero(ratio >= MIN_GAP)
    if wide.size == 0:
        raise RegionError(
            f"cannot tell shared vertices from distinct ones: the distances between "
            f"vertices closer than {radius:g} (relative to the diameter) show no gap of "
            f"{MIN_GAP:g}x above {ROUNDING_FLOOR:g}; the partition is finer than float64 "
            f"resolves")
    g = int(wide[0])
    spread, separation = float(levels[g]), float(levels[g + 1])
    tol = math.sqrt(spread * separation)
    close = pairs[d <= tol]
    graph = coo_matrix((np.ones(close.shape[0]), (close[:, 0], close[:, 1])), shape=(N, N))
    _, labels = connected_components(graph, directed=False)
    return VertexMerge(torch.as_tensor(labels, dtype=torch.long), tol,
                       float(d[d <= tol].max(initial=0.0)), separation)


class Boundary(NamedTuple):
    """Decision-boundary segments in plane coordinates: ``segments [S, 2, 2]`` (two
    endpoints ``(s, t)`` each), ``pairs [S, 2]`` the two tied top classes (``(0, 0)`` for a
    single logit, whose boundary is ``logit = 0``), ``polygon [S]`` the region each lies in."""

    segments: Tensor
    pairs: Tensor
    polygon: Tensor

    @property
    def length(self) -> float:
        """Total length in plane coordinates."""
        d = self.segments[:, 1] - self.segments[:, 0]
        return float(torch.linalg.vector_norm(d, dim=1).sum())


@dataclass(frozen=True, eq=False)
class Plane:
    """The activation regions of ``net`` on the rectangle ``bounds = (smin, smax, tmin,
    tmax)`` of the plane ``x(s, t) = origin + s u + t v``, as convex polygons.

    ``P [R, Vmax, 2]``: vertices in ``(s, t)`` coordinates, counter-clockwise, padded;
    ``n [R]``: vertex counts. Polygon ``r`` lies in one activation region; polygons partition
    the rectangle. ``codes`` and ``affine`` are computed on first use, at the centroids.
    """

    net: nn.Module
    origin: Tensor
    u: Tensor
    v: Tensor
    bounds: tuple[float, float, float, float]
    P: Tensor
    n: Tensor

    @property
    def n_regions(self) -> int:
        return self.P.shape[0]

    @property
    def polygons(self) -> list[Tensor]:
        """Per polygon its vertices ``[V_i, 2]`` (``(s, t)``, counter-clockwise)."""
        return [p[:k] for p, k in zip(self.P, self.n.tolist(), strict=True)]

    def area(self) -> Tensor:
        """Areas ``[R]`` in ``(s, t)`` units (they sum to the rectangle's area)."""
        return _polygon_area(self.P, self.n)

    def centroid(self) -> Tensor:
        """Area centroids ``[R, 2]`` in ``(s, t)`` coordinates."""
        return _polygon_centroid(self.P, self.n)

    def points(self, st) -> Tensor:
        """Inputs at plane coordinates ``st [N, 2]`` (or one point ``[2]``):
        ``[N, *origin.shape]``."""
        fn = "regions.Plane.points"
        st = _params(st, "st", fn, self.origin.device, (1, 2))
        if st.shape[-1] != 2:
            raise InputError(f"{fn}: st must have shape [N, 2] or [2] (plane coordinates "
                             f"(s, t)), got {tuple(st.shape)}")
        return _Frame(self.origin, self.u, self.v).points(st.reshape(-1, 2))

    @cached_property
    def codes(self):
        """``cpa.codes`` at the centroids (batch of ``R``)."""
        with torch.no_grad():
            return cpa.codes(self.net, self.points(self.centroid()))

    @cached_property
    def affine(self) -> tuple[Tensor, Tensor]:
        """Per polygon the *input-space* affine map ``f(x) = A x + b`` (``x`` flattened):
        ``A [R, d_out, d_in]``, ``b [R, d_out]`` (``cpa.affine_map`` at the centroids)."""
        return _affine_chunks(self.net, self.points(self.centroid()))

    @cached_property
    def affine_st(self) -> tuple[Tensor, Tensor]:
        """Per polygon the map in *plane coordinates*: ``f(x(s, t)) = G [s, t] + c`` with
        ``G [R, d_out, 2]``, ``c [R, d_out]``."""
        A, b = self.affine
        uv = torch.stack([self.u.reshape(-1), self.v.reshape(-1)], dim=1)
        return A @ uv, A @ self.origin.reshape(-1) + b

    @cached_property
    def vertices(self) -> VertexMerge:
        """The polygons' vertices merged across polygons (see :class:`VertexMerge`): ids
        for the valid slots of ``P`` (row-major), and the tolerance that was read off the
        gap between copies of a vertex and distinct vertices."""
        smin, smax, tmin, tmax = self.bounds
        diam = math.hypot(smax - smin, tmax - tmin)
        valid = torch.arange(self.P.shape[1], device=self.n.device)[None] < self.n[:, None]
        return _merge_vertices(self.P[valid], diam)

    def graph(self) -> tuple[int, int, int]:
        """``(V, E, F)`` of the subdivision: vertices merged across polygons as in
        :attr:`vertices`, edges the distinct pairs of consecutive merged vertices, ``F`` the
        polygons (the outer face not counted)."""
        P, n = self.P.cpu(), self.n.cpu()
        R, Vm = P.shape[:2]
        idx = torch.arange(Vm)
        valid = idx[None] < n[:, None]
        ids = torch.full((R, Vm), -1, dtype=torch.long)
        ids[valid] = self.vertices.ids
        nxt = torch.where(idx[None] + 1 < n[:, None], idx[None] + 1, 0)
        a, b = ids[valid], ids.gather(1, nxt)[valid]
        keep = a != b
        lo, hi = torch.minimum(a, b)[keep], torch.maximum(a, b)[keep]
        K = int(ids.max()) + 1
        n_edges = torch.unique(lo * K + hi).numel()
        n_vertices = torch.unique(torch.cat([lo, hi])).numel()
        return n_vertices, n_edges, R

    def euler_characteristic(self) -> int:
        """``V - E + F`` of the subdivision with bounded faces only: 1 for a partition of the
        rectangle into polygons (2 with the outer face)."""
        V, E, F = self.graph()
        return V - E + F

    def decision_boundary(self, *, chunk: int = 2048) -> Boundary:
        """Where the predicted class changes, exactly: in each polygon the logits are affine
        in ``(s, t)``; for each pair of classes the tie line is clipped to the polygon and to
        where the tied pair is above every other class. A single logit's boundary is
        ``logit = 0``. Ties on a whole polygon (identical logits) are not boundaries.
        ``chunk``: polygons per vectorised step, an integer >= 1."""
        chunk = _count(chunk, "chunk", "regions.Plane.decision_boundary")
        G, c = self.affine_st
        R, C = c.shape
        dev = c.device
        if C == 1:
            pi = pj = torch.zeros(1, dtype=torch.long, device=dev)
        else:
            pi, pj = torch.triu_indices(C, C, 1, device=dev)
        cent = self.centroid()
        smin, smax, tmin, tmax = self.bounds
        len_tol = 1e-12 * math.hypot(smax - smin, tmax - tmin)
        segs, pairs, polys = [], [], []
        for a in range(0, R, chunk):
            sl = slice(a, a + chunk)
            ends, r, q = _tie_segments(G[sl], c[sl], self.P[sl], self.n[sl], cent[sl],
                                       pi, pj, len_tol)
            segs.append(ends)
            pairs.append(torch.stack([pi[q], pj[q]], 1))
            polys.append(r + a)
        return Boundary(torch.cat(segs), torch.cat(pairs), torch.cat(polys))


class _Interval(NamedTuple):
    """Parameter intervals ``[lo, hi]`` on lines ``p0 + lam d``, and which are empty."""

    lo: Tensor
    hi: Tensor
    empty: Tensor


def _restrict(iv: _Interval, p0: Tensor, d: Tensor, w: Tensor, b: Tensor,
              tol: Tensor) -> _Interval:
    """Intersect the intervals with the half-planes ``w . x + b >= 0`` (``w [..., 2]``,
    ``b [...]``, broadcasting with the lines ``p0, d [..., 2]``); a line parallel to its
    half-plane's boundary is kept whole when inside (within ``tol``), else emptied."""
    hp = (w * p0).sum(-1) + b
    ad = (w * d).sum(-1)
    par = ad.abs() <= 1e-13 * torch.linalg.vector_norm(w, dim=-1)
    r = -hp / torch.where(par, 1.0, ad)
    lo = torch.where(~par & (ad > 0), torch.maximum(iv.lo, r), iv.lo)
    hi = torch.where(~par & (ad < 0), torch.minimum(iv.hi, r), iv.hi)
    return _Interval(lo, hi, iv.empty | (par & (hp < -tol)))


def _tie_segments(G: Tensor, c: Tensor, P: Tensor, n: Tensor, cent: Tensor, pi: Tensor,
                  pj: Tensor, len_tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Decision-boundary pieces in polygons ``P [r, V, 2]`` with logits ``G [r, C, 2] x + c
    [r, C]``: for each class pair ``(pi[q], pj[q])`` the tie line clipped to the polygon and to
    where the pair is on top (for ``C == 1`` the line ``logit = 0``). Returns the segments
    ``[S, 2, 2]``, their polygons ``[S]`` and pair indices ``[S]``."""
    C = c.shape[1]
    if C == 1:
        gw, gc = G[:, :1], c[:, :1]                                   # [r, 1, 2], [r, 1]
    else:
        gw, gc = G[:, pi] - G[:, pj], c[:, pi] - c[:, pj]             # [r, q, 2], [r, q]
    scale = c.abs().amax(1, keepdim=True) + 1.0
    nrm2 = (gw * gw).sum(-1)
    line = nrm2.sqrt() > 1e-12 * scale
    nrm2 = torch.where(line, nrm2, 1.0)
    # the point of each tie line nearest the centroid, and its unit direction
    p0 = cent[:, None] - ((gw * cent[:, None]).sum(-1) + gc)[..., None] / nrm2[..., None] * gw
    d = torch.stack([-gw[..., 1], gw[..., 0]], -1) / nrm2.sqrt()[..., None]
    iv = _Interval(torch.full(gc.shape, -math.inf, dtype=F64, device=c.device),
                   torch.full(gc.shape, math.inf, dtype=F64, device=c.device), ~line)
    for e in range(P.shape[1]):                       # edges: inward normals (counter-clockwise)
        ok = e < n
        va = P[:, e]
        vb = P.gather(1, torch.where(e + 1 < n, e + 1, 0)[:, None, None].expand(-1, 1, 2))[:, 0]
        ed = vb - va
        w = torch.stack([-ed[:, 1], ed[:, 0]], -1) * ok[:, None]
        b = -(w * va).sum(-1)
        tol = len_tol * torch.linalg.vector_norm(w, dim=-1)
        iv = _restrict(iv, p0, d, w[:, None], b[:, None], tol[:, None])
    if C > 1:
        for other in range(C):                        # the tied pair above every other class
            mask = ((pi != other) & (pj != other)).to(F64)
            w = (G[:, pi] - G[:, other, None]) * mask[None, :, None]
            b = (c[:, pi] - c[:, other, None]) * mask[None]
            iv = _restrict(iv, p0, d, w, b, 1e-12 * scale)
    keep = ~iv.empty & (iv.hi - iv.lo > len_tol)
    r, q = keep.nonzero(as_tuple=True)
    ends = torch.stack([p0[r, q] + iv.lo[r, q, None] * d[r, q],
                        p0[r, q] + iv.hi[r, q, None] * d[r, q]], 1)
    return ends, r, q


@threads.fair_share
def on_plane(net: nn.Module, origin, u, v, bounds=(0.0, 1.0, 0.0, 1.0), *,
             budget: int = 2**24, progress: bool = False) -> Plane:
    """The exact activation regions of ``net`` on a rectangle of the plane through
    ``origin`` spanned by ``u`` and ``v`` (one input each, same shape, not collinear).

    ``bounds = (smin, smax, tmin, tmax)``: the rectangle in plane coordinates (the outputs'
    polygons are in these ``(s, t)`` coordinates). ``budget``: about the most float64 values
    of a site's pre-activations held at once: the polygons of a site are cut in spatially
    ordered batches of ``budget // (4 * values per input)`` polygons, so memory stays
    bounded at any number of regions (the default, 2**24, is 128 MiB). One forward pass per
    site and batch, at the unique vertices; ``progress`` shows a bar over the sites.

    Exactness: every pre-activation of a site is affine on each polygon cut by the earlier
    sites, so it is fitted there from its vertex values (least squares, exact up to
    rounding) and the polygon is clipped along its zero line (ReLU, leaky ReLU, abs) or into
    the cells of each max group's upper envelope (each cell: the polygon clipped to
    ``c_i >= c_j`` for all ``j``), never over-cut, so no merging is needed.

    Raises :class:`dltheory.cpa.NotCPAError` for a network that is not CPA, and
    :class:`RegionError` (an :class:`~dltheory.errors.InputError`) for inputs of the wrong
    shape, non-finite inputs, collinear (or zero) ``u``, ``v``, empty, inverted or
    non-finite bounds or bounds beyond :data:`BOUNDS_LIMIT`, a ``budget`` below 1, and a
    rectangle whose points or forward pass reach beyond :data:`VALUE_LIMIT` (float64
    overflows).
    """
    fn = "regions.on_plane"
    frame, bounds, rect = _plane_args(net, origin, u, v, bounds, fn)
    _check_plane(frame.u, frame.v, fn)
    budget = _count(budget, "budget", fn)
    progress = validation.boolean(progress, "progress", fn=fn)
    where = _Where(fn, "on the plane's rectangle", "origin, u, v or bounds")
    _check_rect(net, frame, rect, where)
    P, n = _plane_polygons(net, frame, rect, budget=budget, progress=progress, where=where)
    return Plane(_frozen(net), frame.origin, frame.u, frame.v, bounds, P, n)


def _plane_args(net: nn.Module, origin, u, v, bounds, fn: str):
    """``net`` checked, the plane (private float64 copies of ``origin``, ``u``, ``v``), the
    bounds ``(smin, smax, tmin, tmax)`` and the rectangle's corners ``[4, 2]``
    (counter-clockwise from ``(smin, tmin)``)."""
    _network(net, fn)
    origin = _as_input(net, origin, "origin", fn)
    u = _like(net, origin, u, "u", "origin", fn)
    v = _like(net, origin, v, "v", "origin", fn)
    smin, smax, tmin, tmax = _check_bounds(bounds, fn)
    rect = torch.tensor([[smin, tmin], [smax, tmin], [smax, tmax], [smin, tmax]], dtype=F64,
                        device=origin.device)
    return _Frame(origin, u, v), (smin, smax, tmin, tmax), rect


def _check_plane(u: Tensor, v: Tensor, fn: str) -> None:
    """Raise for a zero ``u`` or ``v``, or collinear ones (scaled first: no overflow)."""
    su, sv = _scale(u), _scale(v)
    if su == 0.0 or sv == 0.0:
        raise RegionError(f"{fn}: {'u' if su == 0.0 else 'v'} is zero: the plane is "
                          "degenerate")
    u, v = u / su, v / sv
    uu, vv, uv = float((u * u).sum()), float((v * v).sum()), float((u * v).sum())
    if uu * vv - uv * uv <= 1e-12 * uu * vv:
        raise RegionError(f"{fn}: u and v are collinear (|u x v| <= 1e-6 |u| |v|): the plane "
                          "is degenerate")


def _check_rect(net: nn.Module, frame: _Frame, rect: Tensor, where: _Where) -> None:
    """The scale of the rectangle's points ``origin + s u + t v`` (each term bounded) and of
    the network's outputs at its corners (a forward pass of fresh points)."""
    reach = _scale(frame.origin) + _scale(rect) * (_scale(frame.u) + _scale(frame.v))
    _check_scale(reach, "the input coordinates", where)
    with torch.no_grad():
        out = net(frame.points(rect))
    _check_scale(_scale(out), "the network's outputs", where)


@threads.fair_share
def sample_plane(net: nn.Module, origin, u, v, bounds=(0.0, 1.0, 0.0, 1.0), n: int = 256, *,
                 chunk: int = 4 * _CHUNK) -> int:
    """Regions found by dense sampling: the number of distinct codes at the centres of an
    ``n x n`` grid of the rectangle. Never more than the exact count (each activation
    region meets the plane in one convex polygon). ``n`` and ``chunk`` (points per forward
    pass) are integers >= 1; the other arguments are checked as by :func:`on_plane` (``u``
    and ``v`` may be collinear here)."""
    fn = "regions.sample_plane"
    frame, (smin, smax, tmin, tmax), rect = _plane_args(net, origin, u, v, bounds, fn)
    n, chunk = _count(n, "n", fn), _count(chunk, "chunk", fn)
    where = _Where(fn, "on the plane's rectangle", "origin, u, v or bounds")
    _check_rect(net, frame, rect, where)
    g = (torch.arange(n, dtype=F64, device=rect.device) + 0.5) / n
    s, t = smin + g * (smax - smin), tmin + g * (tmax - tmin)
    st = torch.stack(torch.meshgrid(s, t, indexing="ij"), -1).reshape(-1, 2)
    seen, fresh, pending = None, [], 0
    for a in range(0, st.shape[0], chunk):
        pat = torch.unique(_pattern(_trace(net, frame.points(st[a:a + chunk]), where)), dim=0)
        fresh.append(pat)
        pending += pat.shape[0]
        # merge the chunks' codes into ``seen`` only once they outnumber it (amortised)
        if seen is None or pending > seen.shape[0]:
            seen = torch.unique(torch.cat(fresh if seen is None else [seen, *fresh]), dim=0)
            fresh, pending = [], 0
    if fresh:
        seen = torch.unique(torch.cat([seen, *fresh]), dim=0)
    return int(seen.shape[0])

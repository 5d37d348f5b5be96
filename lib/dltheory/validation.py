"""One place that checks what a caller hands the library, and the errors it raises.

Every public function of ``dltheory`` checks its arguments here before it computes, so the
same mistake gets the same error everywhere, and a bad input never comes back as a number.

The errors are those of :mod:`dltheory.errors` (base :class:`DLTheoryError`; a value out of
range, non-finite, empty or mis-shaped is an :class:`InputError`, also a ``ValueError``; the
wrong kind of object or dtype an :class:`InputTypeError`, also a ``TypeError``). Every
message names the function, the argument and the fix::

    kernels.ntk: X contains NaN or inf (first at index (3, 0)); pass finite values

The checkers are small pure functions. Tensors are never copied or modified here, except
by :func:`private_copy`, which exists so that a net with in-place modules cannot overwrite
the caller's tensor. :func:`network` checks a ``torch.nn.Module`` (finite parameters and
buffers, no mode-dependent module in training mode); :func:`seeded_generator` is the
library's default source of randomness (a generator seeded from the profile), so that no
function draws from, or advances, torch's global generator.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable

import torch
from torch import nn

from dltheory import profile
from dltheory.errors import DLTheoryError, InputError, InputTypeError

__all__ = [
    "DLTheoryError", "InputError", "InputTypeError",
    "tensor", "is_finite", "real", "integer", "floating_dtype", "boolean", "choice", "network",
    "finite_output", "allocates",
    "private_copy", "seeded_generator", "generator",
]


def _say(fn: str | None, name: str, problem: str, fix: str | None = None) -> str:
    head = f"{fn}: " if fn else ""
    tail = f"; {fix}" if fix else ""
    return f"{head}{name} {problem}{tail}"


def is_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite: one pass (``aminmax`` propagates NaN and
    keeps inf), several times faster than ``isfinite(t).all()`` on large tensors."""
    if t.numel() == 0 or not (t.is_floating_point() or t.is_complex()):
        return True
    if t.is_complex():
        return bool(torch.isfinite(t).all())
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _first_bad(t: torch.Tensor) -> str:
    bad = (~torch.isfinite(t)).nonzero()
    if bad.numel() == 0:
        return ""
    idx = tuple(int(i) for i in bad[0])
    value = t[idx].item() if t.ndim else t.item()
    return f" (first {value} at index {idx if t.ndim else '()'})"


# ---------------------------------------------------------------------------------- tensors


def tensor(x, name: str, *, fn: str | None = None, ndim: int | Iterable[int] | None = None,
           min_ndim: int | None = None, shape: tuple | None = None, floating: bool = True,
           finite: bool = True, nonempty: bool = True, dtype: torch.dtype | None = None,
           device: torch.device | None = None, layout: str | None = None,
           numpy_ok: bool = False, like: str = "the network's parameters are") -> torch.Tensor:
    """Check that ``x`` is a tensor the caller may hand ``fn`` as ``name``; return it as is.

    ``ndim``: the allowed number of axes (an int or several); ``min_ndim``: at least this
    many; ``shape``: the exact shape, ``None`` entries free; ``floating``: a real
    floating dtype of at least 32 bits (float16/bfloat16 lose the digits the library's
    checks need); ``finite``: no NaN or inf; ``nonempty``: no axis of length 0;
    ``dtype``/``device``: must match (``like`` words whose they are in messages: "the
    network's parameters are", "K_train is"); ``layout`` words the
    expected shape in messages (e.g. ``"[N, d]"``); ``numpy_ok`` converts a NumPy array
    (never a list) with ``torch.as_tensor`` instead of refusing it.
    """
    want = f" {layout}" if layout else ""
    if numpy_ok and type(x).__module__ == "numpy" and hasattr(x, "__array__"):
        x = torch.as_tensor(x)
    if not isinstance(x, torch.Tensor):
        hint = " (convert with torch.as_tensor)" if hasattr(x, "__array__") or isinstance(
            x, list | tuple) else ""
        raise InputTypeError(_say(fn, name, f"must be a torch.Tensor{want}, got "
                                  f"{type(x).__name__}{hint}"))
    if x.is_meta:
        raise InputTypeError(_say(fn, name, "is a 'meta' tensor (it has no values)",
                                  "pass a tensor on a real device"))
    if floating:
        if not x.is_floating_point() or x.is_complex():
            raise InputTypeError(_say(fn, name, f"must be a real floating tensor, got dtype "
                                      f"{x.dtype}", "convert with .double() or .float()"))
        if x.dtype in (torch.float16, torch.bfloat16):
            raise InputTypeError(_say(fn, name, f"has dtype {x.dtype}, too few digits for "
                                      "the library's checks", "convert with .float() or "
                                      ".double()"))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            axes = " or ".join(str(a) for a in allowed)
            noun = "axis" if allowed == (1,) else "axes"
            raise InputError(_say(fn, name, f"must have {axes} {noun}{want}, got shape "
                                  f"{tuple(x.shape)}"))
    if min_ndim is not None and x.ndim < min_ndim:
        raise InputError(_say(fn, name, f"must have at least {min_ndim} axes{want}, got "
                              f"shape {tuple(x.shape)}",
                              "add a batch axis with x[None]" if min_ndim == x.ndim + 1
                              else None))
    if shape is not None:
        if len(shape) != x.ndim or any(s is not None and s != n
                                       for s, n in zip(shape, x.shape, strict=True)):
            show = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise InputError(_say(fn, name, f"must have shape {show}, got {tuple(x.shape)}"))
    if nonempty and x.numel() == 0:
        raise InputError(_say(fn, name, f"is empty (shape {tuple(x.shape)})",
                              "pass at least one entry along every axis"))
    if dtype is not None and x.dtype != dtype:
        raise InputTypeError(_say(fn, name, f"has dtype {x.dtype} but {like} {dtype}",
                                  f"convert one of them (.to({dtype}))"))
    if device is not None and x.device != torch.device(device):
        raise InputError(_say(fn, name, f"is on {x.device} but {like} on {device}",
                              f"move it with .to({str(device)!r})"))
    if finite and not is_finite(x):
        raise InputError(_say(fn, name, f"contains NaN or inf{_first_bad(x)}",
                              "pass finite values"))
    return x


def finite_output(y: torch.Tensor, what: str, *, fn: str | None = None,
                  cause: str = "the inputs or weights are too large for the dtype",
                  fix: str | None = None) -> None:
    """Raise when a computed ``y`` (a forward pass, a kernel) is not finite: overflow.
    ``fix`` words the remedy (default: rescale, or float64 when ``y`` is not float64)."""
    if not is_finite(y):
        if fix is None:
            fix = ("rescale the inputs" if y.dtype == torch.float64
                   else "rescale the inputs or use float64")
        raise InputError(_say(fn, what, f"is not finite{_first_bad(y)}: {cause}", fix))


def private_copy(x: torch.Tensor) -> torch.Tensor:
    """A detached copy of ``x``: what the library hands a net, so that an in-place module
    (``ReLU(inplace=True)``, a view followed by ``relu_``) can never write into the
    caller's tensor."""
    return x.detach().clone()


def _too_large(fn: str, sizes: str, why: str) -> str:
    return f"{fn}: the sizes ({sizes}) need more memory than there is ({why}); pass smaller ones"


def allocates(fn: str, sizes: str):
    """Decorate a function that allocates arrays from its size arguments (``sizes``, e.g.
    ``"n and d"``): running out of memory becomes an :class:`InputError` naming them,
    raised at once, instead of a raw ``MemoryError`` or allocator error from deep inside
    NumPy or torch."""
    def wrap(f):
        @functools.wraps(f)
        def call(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except MemoryError as err:
                why = str(err).splitlines()[0] if str(err) else "out of memory"
                raise InputError(_too_large(fn, sizes, why)) from None
            except RuntimeError as err:
                if "alloc" not in str(err).lower() and "memory" not in str(err).lower():
                    raise
                raise InputError(_too_large(fn, sizes, str(err).splitlines()[0])) from None
        return call
    return wrap


# ---------------------------------------------------------------------------------- numbers


def real(x, name: str, *, fn: str | None = None, lo: float | None = None,
         hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
         finite: bool = True) -> float:
    """``x`` as a Python float: a real number (not a bool), not NaN, finite unless
    ``finite=False``, and in ``[lo, hi]`` (``lo_open``/``hi_open`` exclude the ends)."""
    if isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_complex() \
            and x.dtype != torch.bool:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise InputTypeError(_say(fn, name, f"must be a real number, got {x!r}"))
    try:
        v = float(x)
    except OverflowError:
        raise InputError(_say(fn, name, "is too large for a float", "pass a finite "
                              "number")) from None
    if math.isnan(v) or (finite and math.isinf(v)):
        raise InputError(_say(fn, name, f"must be a finite number, got {v}"))
    below = lo is not None and (v <= lo if lo_open else v < lo)
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if below or above:
        left = "(" if lo_open or lo is None else "["
        right = ")" if hi_open or hi is None else "]"
        span = f"{left}{'-inf' if lo is None else f'{lo:g}'}, " \
               f"{'inf' if hi is None else f'{hi:g}'}{right}"
        raise InputError(_say(fn, name, f"must lie in {span}, got {v:g}"))
    return v


def integer(x, name: str, *, fn: str | None = None, lo: int | None = None,
            hi: int | None = None) -> int:
    """``x`` as a Python int (not a bool, not a float) in ``[lo, hi]``."""
    if isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_floating_point() \
            and x.dtype != torch.bool:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise InputTypeError(_say(fn, name, f"must be an integer, got {x!r}"))
    v = int(x)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" if lo is not None \
            else f"<= {hi}"
        raise InputError(_say(fn, name, f"must be an integer {span}, got {v}"))
    return v


def floating_dtype(dtype, name: str = "dtype", *, fn: str | None = None) -> torch.dtype:
    """``dtype`` if it is a real floating torch dtype of at least 32 bits."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise InputTypeError(_say(fn, name, f"must be a real floating torch dtype "
                                  f"(torch.float32 or torch.float64), got {dtype!r}"))
    if dtype in (torch.float16, torch.bfloat16):
        raise InputTypeError(_say(fn, name, f"is {dtype}, too few digits for the library's "
                                  "checks", "use torch.float32 or torch.float64"))
    return dtype


def boolean(x, name: str, *, fn: str | None = None) -> bool:
    if not isinstance(x, bool) and type(x).__name__ != "bool_":
        raise InputTypeError(_say(fn, name, f"must be True or False, got {x!r}"))
    return bool(x)


def choice(x, name: str, options: Iterable, *, fn: str | None = None):
    options = tuple(options)
    if not any(x == o and type(x) is type(o) for o in options):
        raise InputError(_say(fn, name, f"must be one of {options}, got {x!r}"))
    return x


# --------------------------------------------------------------------------------- networks

#: Modules whose forward depends on ``training``: in training mode they use batch
#: statistics (and update running ones) or drop units at random.
MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd,
                  nn.AlphaDropout, nn.FeatureAlphaDropout)


def network(net, name: str = "net", *, fn: str | None = None, finite: bool = True,
            eval_only: bool = True) -> nn.Module:
    """Check a ``torch.nn.Module``: finite floating parameters and buffers, and (with
    ``eval_only``) no batch norm or dropout in training mode, whose output would depend on
    the batch or on a random draw, and whose running statistics a forward pass would
    change. Returns ``net`` unchanged."""
    if not isinstance(net, nn.Module):
        raise InputTypeError(_say(fn, name, f"must be a torch.nn.Module, got "
                                  f"{type(net).__name__}"))
    if eval_only:
        for path, m in net.named_modules():
            if m.training and isinstance(m, MODE_DEPENDENT):
                raise InputError(_say(fn, name, f"has {type(m).__name__} at "
                                      f"{path or '(root)'!r} in training mode (its output "
                                      "depends on the batch or a random draw)",
                                      "call net.eval() first"))
    if finite:
        tensors = [(n, p) for n, p in (*net.named_parameters(), *net.named_buffers())]
        for pname, p in tensors:
            if p.is_meta:
                raise InputTypeError(_say(fn, name, f"has a 'meta' tensor {pname!r}",
                                          "materialize the network first"))
        floats = [(n, p) for n, p in tensors if p.is_floating_point() and p.numel()]
        if floats and not _all_finite([p for _, p in floats]):   # one readback
            pname, p = next((n, p) for n, p in floats if not is_finite(p))
            raise InputError(_say(fn, name, f"has NaN or inf in {pname!r}{_first_bad(p)}",
                                  "pass a network with finite weights"))
    return net


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, read back once per device."""
    by_device: dict = {}
    for t in tensors:
        lo, hi = torch.aminmax(t)
        by_device.setdefault(t.device, []).append(torch.isfinite(lo) & torch.isfinite(hi))
    return all(bool(torch.stack(flags).all()) for flags in by_device.values())


# ------------------------------------------------------------------------------- randomness


#: The seed of the default generator when no profile seed has been set in this process.
DEFAULT_SEED = 0


def seeded_generator(seed: int | None = None, device="cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``, or, when ``seed`` is
    None, with the profile's seed (``profile.current_seed()``, else :data:`DEFAULT_SEED`):
    the library's default source of randomness, the same in every fresh process.
    Drawing from it neither reads nor advances torch's global generator."""
    if seed is None:
        seed = profile.current_seed()
        seed = DEFAULT_SEED if seed is None else seed
    seed = integer(seed, "seed", lo=0, hi=2**64 - 1)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def generator(g, name: str = "generator", *, fn: str | None = None,
              device="cpu") -> torch.Generator:
    """``g`` if it is a ``torch.Generator``; a :func:`seeded_generator` (the profile's seed)
    when it is None."""
    if g is None:
        return seeded_generator(device=device)
    if not isinstance(g, torch.Generator):
        raise InputTypeError(_say(fn, name, f"must be a torch.Generator or None, got "
                                  f"{type(g).__name__}"))
    return g

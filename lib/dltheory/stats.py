"""Fits and intervals for statistical and asymptotic claims.

The data (``x``, ``y``, ``values``) may be 1-D tensors (real floating of at least 32 bits,
or integer), NumPy arrays or lists of numbers; they must be finite. Bad input raises
:class:`dltheory.errors.InputError` (a ``ValueError``) or
:class:`~dltheory.errors.InputTypeError` (a ``TypeError``) naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as _st

from . import validation
from .errors import InputError, InputTypeError


@dataclass(frozen=True)
class LineFit:
    """``y ≈ intercept + slope * x`` by least squares, with standard errors."""

    slope: float
    intercept: float
    slope_stderr: float
    intercept_stderr: float
    n: int

    def slope_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided Student-t confidence interval of the slope, ``level`` in ``(0, 1)``."""
        fn = "stats.LineFit.slope_interval"
        level = _level(level, fn)
        if self.n < 3:
            raise InputError(f"{fn}: a confidence interval needs at least 3 points, got "
                             f"n={self.n}")
        t = _st.t.ppf(0.5 + level / 2, self.n - 2)
        return self.slope - t * self.slope_stderr, self.slope + t * self.slope_stderr


def _level(level, fn: str) -> float:
    """A confidence level, a probability in ``(0, 1)`` such as 0.95."""
    return validation.real(level, "level", fn=fn, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def _vec(x, name: str, fn: str) -> np.ndarray:
    """``x`` (a 1-D tensor, array or list of numbers) as a finite float64 array ``[n]``."""
    if isinstance(x, torch.Tensor):
        floating = x.is_floating_point() or x.is_complex()
        validation.tensor(x, name, fn=fn, ndim=1, floating=floating, layout="[n]")
        return x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise InputTypeError(f"{fn}: {name} must be a 1-D tensor, array or list of real "
                             f"numbers, got {type(x).__name__}") from None
    return validation.tensor(torch.from_numpy(a), name, fn=fn, ndim=1, layout="[n]").numpy()


def _finite(fn: str, what: str, *numbers: float) -> None:
    """Refuse a result that overflowed (the data are finite, so only overflow is left)."""
    if not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{fn}: the {what} overflows the float range: the data are too "
                         "large; rescale them")


def fit_line(x, y) -> LineFit:
    """Least-squares line through ``(x, y)`` with the slope's and intercept's standard errors."""
    fn = "stats.fit_line"
    x, y = _vec(x, "x", fn), _vec(y, "y", fn)
    if x.shape != y.shape:
        raise InputError(f"{fn}: x and y must have the same length, got {x.size} and "
                         f"{y.size}")
    if x.size < 3:
        raise InputError(f"{fn}: fitting a line with standard errors needs >= 3 points, got "
                         f"{x.size}")
    if np.ptp(x) == 0:
        raise InputError(f"{fn}: x is constant: the slope is undefined")
    n = x.size
    with np.errstate(over="ignore", invalid="ignore"):    # overflow is refused below
        xm, ym = x.mean(), y.mean()
        sxx = float(((x - xm) ** 2).sum())
        slope = float(((x - xm) * (y - ym)).sum() / sxx)
        intercept = float(ym - slope * xm)
        resid = y - (intercept + slope * x)
        s2 = float((resid**2).sum() / (n - 2))           # unbiased residual variance
        slope_se = math.sqrt(s2 / sxx)
        intercept_se = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    _finite(fn, "fit", sxx, s2, slope, intercept, slope_se, intercept_se)
    return LineFit(slope, intercept, slope_se, intercept_se, int(n))


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values [n]`` and its two-sided Student-t confidence interval
    ``(mean, lo, hi)`` at ``level`` in ``(0, 1)``."""
    fn = "stats.mean_interval"
    level = _level(level, fn)
    v = _vec(values, "values", fn)
    if v.size < 2:
        raise InputError(f"{fn}: an interval needs at least 2 values, got {v.size}")
    with np.errstate(over="ignore", invalid="ignore"):    # overflow is refused below
        m = float(v.mean())
        half = float(_st.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1)
                     / math.sqrt(v.size))
    _finite(fn, "mean or its interval", m, half, m - half, m + half)
    return m, m - half, m + half

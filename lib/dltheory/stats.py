"""Fits and intervals for statistical and asymptotic claims."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as _st


@dataclass(frozen=True)
class LineFit:
    """``y ≈ intercept + slope * x`` by least squares, with standard errors."""

    slope: float
    intercept: float
    slope_stderr: float
    intercept_stderr: float
    n: int

    def slope_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided Student-t confidence interval of the slope."""
        _check_level(level)
        if self.n < 3:
            raise ValueError("a confidence interval needs at least 3 points")
        t = _st.t.ppf(0.5 + level / 2, self.n - 2)
        return self.slope - t * self.slope_stderr, self.slope + t * self.slope_stderr


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValueError(f"level must be a probability in (0, 1), e.g. 0.95; got {level!r}")


def _vec(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def fit_line(x, y) -> LineFit:
    """Least-squares line through ``(x, y)`` with the slope's and intercept's standard errors."""
    x, y = _vec(x, "x"), _vec(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"fitting a line with standard errors needs >= 3 points, got {x.size}")
    if np.ptp(x) == 0:
        raise ValueError("x is constant: the slope is undefined")
    n = x.size
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    resid = y - (intercept + slope * x)
    s2 = float((resid**2).sum() / (n - 2))           # unbiased residual variance
    slope_se = math.sqrt(s2 / sxx)
    intercept_se = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    return LineFit(slope, intercept, slope_se, intercept_se, int(n))


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its two-sided Student-t confidence interval ``(mean, lo, hi)``."""
    _check_level(level)
    v = _vec(values, "values")
    if v.size < 2:
        raise ValueError("an interval needs at least 2 values")
    m = float(v.mean())
    half = float(_st.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half

"""The book's figure style and the few plots that recur.

``plot.style()`` applies one style to every figure of a chapter (call it once, in the
chapter's setup cell). ``plot.figure(ncols)`` makes a row of axes in that style.
``plot.rate(ax, k, err, slope=..., intercept=...)`` draws a semilog convergence curve with
its fitted or predicted exponential rate. ``plot.partition(ax, plane, ...)`` draws the exact
linear regions of a network on a 2-D slice (a :class:`dltheory.regions.Plane`).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection, PolyCollection

PALETTE = ("#1b5e9e", "#d1495b", "#2e7d32", "#edae49", "#66468c", "#00798c", "#555555")

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.figsize": (6.4, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
    "svg.hashsalt": "dltheory",  # deterministic SVG ids
}


def style() -> None:
    """Apply the book's figure style to matplotlib."""
    mpl.rcParams.update(STYLE)


def figure(ncols: int = 1, *, width: float | None = None, height: float = 3.4):
    """A figure with ``ncols`` axes in a row, in the book's style. Returns ``(fig, axes)``.

    ``axes`` is a single Axes when ``ncols == 1``, else an array of Axes.
    """
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = int(ncols)
    style()
    width = width if width is not None else min(3.6 * ncols + 1.0, 11.0)
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=True)
    return fig, axes


def show() -> None:
    """Draw the current figure and return nothing, so that a cell ending in a figure shows
    the figure and not the repr of its last artist (``<matplotlib.legend.Legend at ...>``)."""
    plt.show()


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def rate(ax, k, err, *, slope=None, intercept=None, label="measured", fit_label=None,
         color=None):
    """Semilog plot of an error ``err[k]`` and the line ``exp(intercept + slope*k)``.

    ``slope`` is a log-rate per step (natural log); ``intercept`` defaults to ``log(err[0])``.
    """
    k, err = _np(k), _np(err)
    if k.shape != err.shape:
        raise ValueError(f"k and err must have the same shape, got {k.shape} and {err.shape}")
    (line,) = ax.semilogy(k, err, label=label, color=color)
    if slope is not None:
        b = float(np.log(err[0])) if intercept is None else float(intercept)
        ax.semilogy(k, np.exp(b + float(slope) * k), "--", color=line.get_color(), alpha=0.7,
                    label=fit_label or f"slope {float(slope):.4f} per step")
    ax.set_xlabel("step $k$")
    ax.legend()
    return ax


def partition(ax, plane, title: str = "", *, marks=None, boundary: bool = False,
              seed: int = 0):
    """Draw the polygons of a :class:`dltheory.regions.Plane` in random (seeded) colours,
    the points ``marks`` ``[M, 2]`` (in the plane's ``(s, t)`` coordinates) as white dots,
    and, with ``boundary=True``, the exact decision boundary in black."""
    rng = np.random.default_rng(seed)
    polys = [p.detach().cpu().numpy() for p in plane.polygons]
    ax.add_collection(PolyCollection(polys, facecolors=rng.uniform(0.2, 0.95, (len(polys), 3)),
                                     edgecolors="white", linewidths=0.1))
    if boundary:
        segs = plane.decision_boundary().segments.detach().cpu().numpy()
        ax.add_collection(LineCollection(segs, colors="k", linewidths=1.2))
    if marks is not None:
        ax.plot(*_np(marks).T, "o", ms=5, mfc="white", mec="k")
    ax.set(xlim=plane.bounds[:2], ylim=plane.bounds[2:], aspect="equal", title=title)
    ax.grid(False)
    return ax

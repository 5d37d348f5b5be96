"""The book's figure style and the few plots that recur.

``plot.style()`` applies one style to every figure of a chapter (call it once, in the
chapter's setup cell). ``plot.figure(n)`` makes ``n`` axes in that style, in rows of at
most three. ``plot.show()`` shows the current figure after checking that its smallest
text stays legible in the book's column (:func:`smallest_text_px`).

Legibility: the HTML column is 610-730 px wide and a PNG wider than it is scaled down to
it. A figure is drawn at ``figure.dpi`` = 110 px per inch, so a figure of ``w`` inches
shows its text at ``size_pt / 72 * min(110, COLUMN_PX / w)`` px. With text of at least
9 pt and figures of at most :data:`MAX_WIDTH` = 7.5 in, the smallest text is at least
10.2 px at the narrowest column; :func:`show` refuses a figure whose smallest text would
be under :data:`MIN_TEXT_PX` (the PNG's tight bounding box can add a few
per cent to its width; the rule keeps a margin for that).

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
from matplotlib.text import Text

PALETTE = ("#1b5e9e", "#d1495b", "#2e7d32", "#edae49", "#66468c", "#00798c", "#555555")

#: The narrowest width (px) of the book's text column in the HTML theme.
COLUMN_PX = 610
#: The widest figure (inches) :func:`figure` makes: 825 px at 110 dpi, shown at 610-730.
MAX_WIDTH = 7.5
#: The smallest text height (px, at the narrowest column) :func:`show` accepts.
MIN_TEXT_PX = 9.0

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.figsize": (6.4, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
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


def figure(n: int = 1, *, per_row: int = 3, width: float | None = None,
           height: float = 3.4):
    """A figure with ``n`` axes in the book's style, in rows of at most ``per_row`` (as
    even as possible: 4 axes make 2 x 2). Returns ``(fig, axes)``.

    ``axes`` is a single Axes when ``n == 1``, else a flat array of ``n`` Axes, in reading
    order. ``width`` (inches, at most :data:`MAX_WIDTH`) defaults to
    ``min(3.6 * columns + 1, MAX_WIDTH)``; ``height`` is the height of one row.
    """
    for arg, value in (("n", n), ("per_row", per_row)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    if width is not None and not 0 < float(width) <= MAX_WIDTH:
        raise ValueError(f"width must be in (0, {MAX_WIDTH}] inches (the column shows wider "
                         f"figures scaled down, with illegible text), got {width!r}")
    if not float(height) > 0:
        raise ValueError(f"height must be positive, got {height!r}")
    n, per_row = int(n), int(per_row)
    rows = -(-n // per_row)
    cols = -(-n // rows)
    style()
    width = float(width) if width is not None else min(3.6 * cols + 1.0, MAX_WIDTH)
    fig, grid = plt.subplots(rows, cols, figsize=(width, float(height) * rows), squeeze=False)
    flat = grid.ravel()
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, (flat[0] if n == 1 else flat[:n])


def smallest_text_px(fig=None, *, column_px: float = COLUMN_PX) -> float:
    """The height (px) of the smallest visible text of ``fig`` (default: the current
    figure) when the book shows it in a column ``column_px`` wide: a PNG of ``w`` inches
    at ``fig.dpi`` is scaled to ``min(1, column_px / (w * dpi))``. ``inf`` when the figure
    has no text."""
    fig = plt.gcf() if fig is None else fig
    if not float(column_px) > 0:
        raise ValueError(f"column_px must be positive, got {column_px!r}")
    px_per_inch = min(float(fig.dpi), float(column_px) / float(fig.get_size_inches()[0]))
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()
             and (t.axes is None or t.axes.get_visible())]
    return min(sizes, default=float("inf")) / 72.0 * px_per_inch


def show() -> None:
    """Draw the current figure and return nothing, so that a cell ending in a figure shows
    the figure and not the repr of its last artist (``<matplotlib.legend.Legend at ...>``).

    Refuses (``ValueError``) a figure whose smallest text would be shown under
    :data:`MIN_TEXT_PX` px in the book's column (:func:`smallest_text_px`)."""
    fig = plt.gcf()
    fig.canvas.draw()            # tick labels exist only once drawn
    px = smallest_text_px(fig)
    if px < MIN_TEXT_PX:
        raise ValueError(f"the figure's smallest text would show at {px:.1f} px in a "
                         f"{COLUMN_PX} px column (at least {MIN_TEXT_PX:g} px): make it "
                         f"narrower than {MAX_WIDTH} in or its text at least 9 pt")
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

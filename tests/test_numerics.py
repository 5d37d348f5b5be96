"""Tests for dltheory.stats, spectra, dynamics, plot and prose."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from scipy import stats as sps  # noqa: E402

from dltheory import dynamics, plot, prose, spectra, stats  # noqa: E402

FAST = settings(max_examples=40, deadline=None)
F64 = torch.float64


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# =========================================================================== stats.fit_line

slopes = st.one_of(st.floats(1e-3, 100.0), st.floats(-100.0, -1e-3))


@FAST
@given(slope=slopes, intercept=st.floats(-100.0, 100.0), n=st.integers(3, 40),
       lo=st.floats(-10.0, 0.0), width=st.floats(0.5, 20.0))
def test_fit_line_recovers_exact_lines(slope, intercept, n, lo, width):
    x = np.linspace(lo, lo + width, n)
    y = intercept + slope * x
    fit = stats.fit_line(x, y)
    scale = 1.0 + abs(slope) + abs(intercept)
    # float64 rounding of y = a + b x alone is ~1e-16*scale per point; 1e-12*scale is the
    # stated tolerance for slope and intercept.
    assert abs(fit.slope - slope) <= 1e-12 * scale
    assert abs(fit.intercept - intercept) <= 1e-12 * scale
    assert fit.n == n
    # The standard error is sqrt(1 - r^2)-proportional; r itself is computed in floating
    # point, so 1 - r^2 is only known to ~1e-16 and the stderr to ~1e-8 * scale.
    assert 0.0 <= fit.slope_stderr <= 1e-6 * scale
    assert 0.0 <= fit.intercept_stderr <= 1e-6 * scale * (1 + abs(lo) + width)


def test_fit_line_horizontal_exact_line_has_zero_stderr():
    fit = stats.fit_line([0.0, 1.0, 2.0, 3.0], [2.0, 2.0, 2.0, 2.0])
    assert fit.slope == 0.0 and fit.intercept == 2.0
    assert fit.slope_stderr == 0.0
    assert fit.slope_interval() == (0.0, 0.0)


def _noisy(seed: int, n: int = 60, slope: float = 2.0, intercept: float = 1.0,
           sigma: float = 0.3):
    rng = _rng(seed)
    x = rng.uniform(-2, 2, n)
    return x, intercept + slope * x + sigma * rng.standard_normal(n)


def test_fit_line_noisy_matches_closed_form():
    x, y = _noisy(0)
    fit = stats.fit_line(x, y)
    n = x.size
    xc = x - x.mean()
    b = (xc @ (y - y.mean())) / (xc @ xc)
    a = y.mean() - b * x.mean()
    s2 = np.sum((y - a - b * x) ** 2) / (n - 2)
    se = math.sqrt(s2 / (xc @ xc))
    np.testing.assert_allclose(fit.slope, b, rtol=1e-12)
    np.testing.assert_allclose(fit.intercept, a, rtol=1e-12)
    np.testing.assert_allclose(fit.slope_stderr, se, rtol=1e-10)
    np.testing.assert_allclose(fit.intercept_stderr, se * math.sqrt(np.mean(x**2)), rtol=1e-10)
    assert fit.slope_stderr > 0 and fit.intercept_stderr > 0


def test_slope_interval_covers_true_slope_and_nests():
    x, y = _noisy(1)
    fit = stats.fit_line(torch.from_numpy(x), torch.from_numpy(y))  # tensors are accepted
    lo, hi = fit.slope_interval()
    assert lo < 2.0 < hi
    t = sps.t.ppf(0.975, x.size - 2)
    np.testing.assert_allclose([lo, hi], [fit.slope - t * fit.slope_stderr,
                                          fit.slope + t * fit.slope_stderr], rtol=1e-12)
    lo80, hi80 = fit.slope_interval(0.8)
    assert lo < lo80 < fit.slope < hi80 < hi


def test_slope_interval_coverage():
    # The t-interval of the slope is exact for Gaussian noise: over 400 independent seeded
    # fits the number covering the true slope is Binomial(400, 0.95) (mean 380, sd 4.4).
    # [360, 396] (90%..99%) is more than 3.6 sd on either side.
    covered = 0
    for seed in range(400):
        x, y = _noisy(10_000 + seed, n=12)
        lo, hi = stats.fit_line(x, y).slope_interval(0.95)
        covered += lo <= 2.0 <= hi
    assert 360 <= covered <= 396


@pytest.mark.parametrize(("x", "y", "match"), [
    ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0], r"x and y must have the same length, got 3 and 4"),
    ([0.0, 1.0], [0.0, 1.0], r"needs >= 3 points, got 2"),
    ([1.0, 1.0, 1.0], [0.0, 1.0, 2.0], r"x is constant: the slope is undefined"),
    ([0.0, math.nan, 2.0], [0.0, 1.0, 2.0], r"x contains NaN or inf"),
    ([0.0, 1.0, 2.0], [0.0, math.inf, 2.0], r"y contains NaN or inf"),
    ([[0.0, 1.0, 2.0]], [0.0, 1.0, 2.0], r"x must have 1 axis \[n\], got shape \(1, 3\)"),
    (3.0, [0.0, 1.0, 2.0], r"x must have 1 axis \[n\], got shape \(\)"),
])
def test_fit_line_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        stats.fit_line(x, y)


def test_slope_interval_needs_three_points():
    fit = stats.LineFit(1.0, 0.0, 0.1, 0.1, n=2)
    with pytest.raises(ValueError, match="at least 3 points"):
        fit.slope_interval()


# =========================================================================== stats.mean_interval

def test_mean_interval_values():
    v = _rng(2).normal(3.0, 2.0, 25)
    m, lo, hi = stats.mean_interval(v)
    np.testing.assert_allclose(m, v.mean(), rtol=1e-14)
    half = sps.t.ppf(0.975, 24) * v.std(ddof=1) / 5.0
    np.testing.assert_allclose([lo, hi], [m - half, m + half], rtol=1e-12)
    assert lo < m < hi
    m80, lo80, hi80 = stats.mean_interval(torch.from_numpy(v), level=0.8)
    assert m80 == m
    assert lo < lo80 < m < hi80 < hi


@FAST
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30),
       st.floats(0.5, 0.999))
def test_mean_interval_contains_mean(values, level):
    m, lo, hi = stats.mean_interval(values, level=level)
    np.testing.assert_allclose(m, np.mean(values), rtol=1e-12, atol=1e-9)
    assert lo <= m <= hi


def test_mean_interval_coverage():
    # For Gaussian samples the Student-t interval is exact, so the number of the 400 seeded
    # trials whose 95% interval covers the true mean is Binomial(400, 0.95): mean 380,
    # sd sqrt(400 * 0.95 * 0.05) = 4.4. The band [360, 396] (90%..99%) lies more than 3.6 sd
    # from the mean on both sides, so a correct interval fails it with probability < 1e-3,
    # while an interval of the wrong width (e.g. a z-interval with n=8, or level ignored)
    # falls outside it.
    rng = _rng(3)
    samples = rng.normal(5.0, 3.0, size=(400, 8))
    covered = 0
    for row in samples:
        _, lo, hi = stats.mean_interval(row)
        covered += lo <= 5.0 <= hi
    assert 360 <= covered <= 396


@pytest.mark.parametrize(("values", "match"), [
    ([1.0], r"an interval needs at least 2 values"),
    ([1.0, math.nan, 2.0], r"values contains NaN or inf"),
    ([[1.0, 2.0]], r"values must have 1 axis"),
])
def test_mean_interval_errors(values, match):
    with pytest.raises(ValueError, match=match):
        stats.mean_interval(values)


@pytest.mark.parametrize("level", [95, 1.5, -0.1, math.nan])
def test_interval_level_validated(level):
    with pytest.raises(ValueError, match="level"):
        stats.mean_interval([1.0, 2.0, 3.0], level=level)


# =========================================================================== spectra

@pytest.mark.parametrize(("n", "d", "scale"), [(3, 8, 1.0), (5, 5, 0.5), (4, 30, 1 / 30)])
def test_gram_eigvalsh_equals_nonzero_eigs_of_xtx(n, d, scale):
    X = _randn(n, d, seed=n * 100 + d)
    ev = spectra.gram_eigvalsh(X, scale=scale)
    assert ev.shape == (n,) and ev.dtype == F64
    assert torch.all(ev[1:] >= ev[:-1])  # ascending
    full = np.linalg.eigvalsh(scale * (X.T @ X).numpy())
    np.testing.assert_allclose(ev.numpy(), full[-n:], rtol=1e-10, atol=1e-10 * full.max())
    np.testing.assert_allclose(full[:-n], 0.0, atol=1e-10 * full.max())


def test_gram_eigvalsh_tall_matrix_has_zero_eigenvalues():
    X = _randn(7, 3, seed=11)
    ev = spectra.gram_eigvalsh(X).numpy()
    np.testing.assert_allclose(ev[:4], 0.0, atol=1e-12 * ev.max())
    np.testing.assert_allclose(ev[4:], np.linalg.eigvalsh((X.T @ X).numpy()), rtol=1e-10)


@pytest.mark.parametrize(("n", "d", "rank"), [(3, 8, 3), (8, 3, 3), (6, 6, 2), (4, 10, 1),
                                              (5, 7, 0), (6, 6, 6)])
def test_null_space_projector(n, d, rank):
    X = _randn(n, rank, seed=rank) @ _randn(rank, d, seed=d + 50) if rank else \
        torch.zeros(n, d, dtype=F64)
    P = spectra.null_space_projector(X)
    assert P.shape == (d, d) and P.dtype == F64
    tol = 1e-12
    np.testing.assert_allclose(P.numpy(), P.T.numpy(), atol=tol)
    np.testing.assert_allclose((P @ P).numpy(), P.numpy(), atol=tol)
    scale = max(1.0, torch.linalg.matrix_norm(X, ord=2).item())
    np.testing.assert_allclose((X @ P).numpy(), 0.0, atol=tol * scale)
    assert np.linalg.matrix_rank(X.numpy()) == rank
    np.testing.assert_allclose(torch.trace(P).item(), d - rank, atol=tol)


def test_condition_number_matches_numpy():
    for shape, seed in [((6, 6), 0), ((5, 8), 1), ((9, 4), 2)]:
        A = _randn(*shape, seed=seed)
        np.testing.assert_allclose(spectra.condition_number(A).item(),
                                   np.linalg.cond(A.numpy()), rtol=1e-10)
    A = torch.diag(torch.tensor([4.0, 2.0, 0.5], dtype=F64))
    assert spectra.condition_number(A).item() == pytest.approx(8.0, rel=1e-14)


def test_condition_number_exactly_singular_is_inf():
    A = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)
    assert spectra.condition_number(A).item() == math.inf


def test_condition_number_of_zero_matrix_is_inf():
    assert spectra.condition_number(torch.zeros(3, 3, dtype=F64)).item() == math.inf


@pytest.mark.parametrize("fn", [spectra.gram_eigvalsh, spectra.null_space_projector])
@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_spectra_shape_errors(fn, shape):
    with pytest.raises(ValueError, match=r"X must have 2 axes \[n, d\], got shape "
                       + re_shape(shape)):
        fn(torch.zeros(shape, dtype=F64))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_condition_number_shape_error(shape):
    with pytest.raises(ValueError, match=r"A must have 2 axes \[m, n\], got shape "
                       + re_shape(shape)):
        spectra.condition_number(torch.zeros(shape, dtype=F64))


def re_shape(shape: tuple[int, ...]) -> str:
    return r"\(" + r",\s?".join(map(str, shape)) + ("," if len(shape) == 1 else "") + r"\)"


# =========================================================================== dynamics

def _ls_problem(n: int = 5, d: int = 20, seed: int = 0):
    X = _randn(n, d, seed=seed)
    y = _randn(n, seed=seed + 1)
    lam = torch.linalg.eigvalsh(X @ X.T / n)
    return X, y, lam


def test_gd_and_least_squares_gd_agree():
    X, y, lam = _ls_problem()
    n = X.shape[0]
    lr = 1.0 / lam.max().item()
    w0 = _randn(X.shape[1], seed=9)
    a = dynamics.least_squares_gd(X, y, lr=lr, steps=200, w0=w0)
    b = dynamics.gd(lambda w: ((X @ w - y) ** 2).sum() / (2 * n), w0, lr=lr, steps=200,
                    progress=False)
    assert a.w.shape == b.w.shape == (201, X.shape[1])
    assert a.loss.shape == b.loss.shape == (201,)
    np.testing.assert_allclose(a.w.numpy(), b.w.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.loss.numpy(), b.loss.numpy(), rtol=1e-12, atol=1e-15)
    assert torch.equal(a.w[0], w0) and torch.equal(b.w[0], w0)


def test_least_squares_gd_converges_to_min_norm_solution():
    X, y, lam = _ls_problem()
    lr = 1.0 / lam.max().item()
    # error contracts by (1 - lam_min/lam_max) per step in the row space; zero start stays in it
    rate = 1 - (lam.min() / lam.max()).item()
    steps = math.ceil(math.log(1e-15) / math.log(rate))
    assert steps < 5000
    tr = dynamics.least_squares_gd(X, y, lr=lr, steps=steps)
    w_star = torch.linalg.pinv(X) @ y
    np.testing.assert_allclose(tr.final.numpy(), w_star.numpy(), atol=1e-10)
    np.testing.assert_allclose((X @ tr.final).numpy(), y.numpy(), atol=1e-10)
    assert torch.all(tr.loss[1:] <= tr.loss[:-1] + 1e-15)  # monotone for lr <= 1/L
    assert tr.loss[-1].item() < 1e-20


def test_trajectory_final_and_loss_per_step():
    X, y, lam = _ls_problem(n=4, d=6, seed=3)
    tr = dynamics.least_squares_gd(X, y, lr=0.5 / lam.max().item(), steps=7)
    assert torch.equal(tr.final, tr.w[-1])
    n = X.shape[0]
    for k in range(8):
        r = X @ tr.w[k] - y
        np.testing.assert_allclose(tr.loss[k].item(), (r @ r).item() / (2 * n), rtol=1e-12)


def test_gd_on_separable_quadratic_matches_closed_form():
    a = torch.tensor([0.5, 1.0, 3.0], dtype=F64)
    w0 = torch.tensor([1.0, -2.0, 0.25], dtype=F64)
    lr = 0.2
    tr = dynamics.gd(lambda w: 0.5 * (a * w * w).sum(), w0, lr=lr, steps=25, progress=False)
    k = torch.arange(26, dtype=F64)[:, None]
    expected = (1 - lr * a) ** k * w0
    np.testing.assert_allclose(tr.w.numpy(), expected.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tr.loss.numpy(), (0.5 * (a * expected**2).sum(1)).numpy(),
                               rtol=1e-12, atol=1e-15)
    assert torch.equal(tr.final, tr.w[-1])


def test_zero_steps_records_start_only():
    X, y, _ = _ls_problem(n=3, d=4)
    tr = dynamics.least_squares_gd(X, y, lr=0.1, steps=0)
    assert tr.w.shape == (1, 4) and torch.equal(tr.final, torch.zeros(4, dtype=F64))
    np.testing.assert_allclose(tr.loss[0].item(), (y @ y).item() / 6, rtol=1e-14)


def test_least_squares_gd_casts_w0_to_x_dtype():
    X, y, _ = _ls_problem(n=3, d=4)
    tr = dynamics.least_squares_gd(X, y, lr=0.1, steps=2, w0=torch.ones(4, dtype=torch.float32))
    assert tr.w.dtype == F64


_X, _Y, _ = _ls_problem(n=3, d=4)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"X": _X[0]}, ValueError, r"X must have 2 axes \[n, d\], got shape \(4,\)"),
    ({"y": _Y[:2]}, ValueError, r"y must have shape \[3\], got \(2,\)"),
    ({"y": _Y[:, None]}, ValueError, r"y must have 1 axis \[n\] = \[3\]"),
    ({"X": _X.clone().fill_(math.nan)}, ValueError, r"X contains NaN or inf"),
    ({"y": torch.full((3,), math.inf, dtype=F64)}, ValueError, r"y contains NaN or inf"),
    ({"lr": 0.0}, ValueError, r"lr must lie in \(0, inf\), got 0"),
    ({"lr": -0.1}, ValueError, r"lr must lie in \(0, inf\), got -0\.1"),
    ({"lr": math.nan}, ValueError, r"lr must be a finite number, got nan"),
    ({"lr": "0.1"}, TypeError, r"lr must be a real number, got '0\.1'"),
    ({"steps": -1}, ValueError, r"steps must be an integer >= 0, got -1"),
    ({"steps": 2.0}, TypeError, r"steps must be an integer, got 2\.0"),
    ({"w0": torch.zeros(5, dtype=F64)}, ValueError, r"w0 must have shape \[4\], got \(5,\)"),
    ({"w0": torch.zeros(4, 1, dtype=F64)}, ValueError, r"w0 must have 1 axis \[d\]"),
    ({"w0": torch.zeros(4, dtype=torch.int64)}, TypeError, r"w0 must be a real floating tensor"),
    ({"w0": torch.full((4,), math.nan, dtype=F64)}, ValueError, r"w0 contains NaN or inf"),
])
def test_least_squares_gd_errors(kwargs, exc, match):
    args = {"X": _X, "y": _Y, "lr": 0.1, "steps": 3} | kwargs
    with pytest.raises(exc, match=match):
        dynamics.least_squares_gd(args.pop("X"), args.pop("y"), **args)


@pytest.mark.parametrize(("w0", "kwargs", "exc", "match"), [
    (np.zeros(3), {}, TypeError, r"w0 must be a torch\.Tensor \[d\], got ndarray"),
    (torch.zeros(2, 2, dtype=F64), {}, ValueError, r"w0 must have 1 axis \[d\], got shape"),
    (torch.zeros(3, dtype=torch.int32), {}, TypeError, r"floating tensor, got dtype torch\.int32"),
    (torch.zeros(3, dtype=F64), {"lr": 0}, ValueError, r"lr must lie in \(0, inf\)"),
    (torch.zeros(3, dtype=F64), {"steps": -2}, ValueError, r"steps must be an integer >= 0"),
    (torch.tensor([0.0, math.inf, 0.0], dtype=F64), {}, ValueError, r"w0 contains NaN or inf"),
])
def test_gd_errors(w0, kwargs, exc, match):
    args = {"lr": 0.1, "steps": 3, "progress": False} | kwargs
    with pytest.raises(exc, match=match):
        dynamics.gd(lambda w: (w * w).sum(), w0, **args)


def test_gd_stops_on_non_finite_loss():
    with pytest.raises((ValueError, FloatingPointError, RuntimeError), match="(?i)finite"):
        dynamics.gd(lambda w: (w * w).sum(), torch.ones(2, dtype=F64), lr=10.0, steps=400,
                    progress=False)


def test_infinite_lr_rejected():
    with pytest.raises(ValueError, match="lr must be"):
        dynamics.least_squares_gd(_X, _Y, lr=math.inf, steps=3)


# =========================================================================== plot

@pytest.fixture
def mpl_state():
    with matplotlib.rc_context():
        yield
    plt.close("all")


def test_figure_single_axes(mpl_state):
    fig, ax = plot.figure(1)
    assert isinstance(ax, Axes)
    assert len(fig.axes) == 1
    np.testing.assert_allclose(fig.get_size_inches(), [4.6, 3.4])


@pytest.mark.parametrize(("n", "rows", "cols"), [(2, 1, 2), (3, 1, 3), (4, 2, 2), (5, 2, 3),
                                                 (6, 2, 3), (7, 3, 3)])
def test_figure_axes_in_rows_of_at_most_three(mpl_state, n, rows, cols):
    fig, axes = plot.figure(n, height=2.0)
    assert isinstance(axes, np.ndarray) and axes.shape == (n,)
    assert all(isinstance(a, Axes) for a in axes)
    assert len(fig.axes) == n                      # the unused cells of the grid are removed
    spec = axes[0].get_subplotspec().get_gridspec()
    assert (spec.nrows, spec.ncols) == (rows, cols)
    np.testing.assert_allclose(fig.get_size_inches(),
                               [min(3.6 * cols + 1.0, plot.MAX_WIDTH), 2.0 * rows])


def test_figure_per_row(mpl_state):
    fig, axes = plot.figure(3, per_row=2, height=2.5)
    spec = axes[0].get_subplotspec().get_gridspec()
    assert (spec.nrows, spec.ncols) == (2, 2)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(fig.get_size_inches(), [plot.MAX_WIDTH, 5.0])


def test_figure_width(mpl_state):
    fig, _ = plot.figure(2, width=6.0)
    np.testing.assert_allclose(fig.get_size_inches(), [6.0, 3.4])


@pytest.mark.parametrize("n", [0, -1, 1.0, "2", None, True])
def test_figure_bad_n(mpl_state, n):
    with pytest.raises(ValueError, match=r"n must be a positive integer, got "):
        plot.figure(n)
    assert plt.get_fignums() == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"per_row": 0}, r"per_row must be a positive integer, got 0"),
    ({"width": 9.0}, r"width must be in \(0, 7.5\] inches .* got 9.0"),
    ({"width": 0.0}, r"width must be in \(0, 7.5\] inches"),
    ({"height": -1.0}, r"height must be positive, got -1.0"),
])
def test_figure_bad_size(mpl_state, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot.figure(2, **kwargs)
    assert plt.get_fignums() == []


def test_smallest_text_px_scales_a_wide_figure_to_the_column(mpl_state):
    plot.style()
    fig = plt.figure(figsize=(11.0, 3.0), dpi=110)
    fig.text(0.5, 0.5, "label", fontsize=10)
    # 11 in at 110 dpi = 1210 px, shown in 610 px: 10 pt -> 10/72 * 610/11 px
    assert plot.smallest_text_px(fig) == pytest.approx(10 / 72 * 610 / 11, rel=1e-12)
    fig2 = plt.figure(figsize=(4.0, 3.0), dpi=110)
    fig2.text(0.5, 0.5, "label", fontsize=10)
    fig2.text(0.5, 0.2, "", fontsize=4)             # empty text is not text a reader sees
    # 440 px fits the column: shown at its own size
    assert plot.smallest_text_px(fig2) == pytest.approx(10 / 72 * 110, rel=1e-12)
    assert plot.smallest_text_px(plt.figure()) == math.inf
    with pytest.raises(ValueError, match=r"column_px must be positive, got 0"):
        plot.smallest_text_px(fig, column_px=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_default_figures_are_legible_in_the_column(mpl_state, n):
    fig, axes = plot.figure(n)
    for ax in np.atleast_1d(axes):
        ax.plot([1, 10, 100], [3, 2, 1], label="a curve")
        ax.set(xlabel="x label", ylabel="y label", title="a title")
        ax.legend()
    fig.canvas.draw()
    assert plot.smallest_text_px(fig) >= plot.MIN_TEXT_PX


def test_show_refuses_illegible_text(mpl_state, monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    _, ax = plot.figure(2)
    ax[0].plot([0, 1], label="x")
    ax[0].legend()
    plot.show()
    assert shown == [True]
    _, ax = plot.figure(2)
    ax[0].plot([0, 1], label="x")
    ax[0].legend(fontsize=6)      # 6 pt in a 7.5 in figure: 6.8 px in a 610 px column
    with pytest.raises(ValueError, match=r"smallest text would show at 6.8 px in a 610 px"):
        plot.show()
    assert shown == [True]


def _norm(v):
    return list(v) if isinstance(v, tuple | list) else v


def test_style_sets_rcparams(mpl_state):
    matplotlib.rcdefaults()
    assert matplotlib.rcParams["axes.grid"] is False
    plot.style()
    for key, value in plot.STYLE.items():
        assert _norm(matplotlib.rcParams[key]) == _norm(value), key
    colors = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert colors == list(plot.PALETTE)


def test_rate_draws_measured_and_fitted_line(mpl_state):
    _, ax = plot.figure()
    k = torch.arange(10, dtype=F64)
    err = 3.0 * torch.exp(-0.5 * k)
    out = plot.rate(ax, k, err, slope=-0.5)
    assert out is ax
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), err.numpy(), rtol=1e-15)
    # intercept defaults to log(err[0]), so the fit coincides with the exact curve
    np.testing.assert_allclose(lines[1].get_ydata(), err.numpy(), rtol=1e-12)
    assert lines[1].get_label() == "slope -0.5000 per step"
    assert lines[1].get_color() == lines[0].get_color()
    assert ax.get_yscale() == "log"
    assert ax.get_legend() is not None


def test_rate_with_intercept_and_without_slope(mpl_state):
    _, ax = plot.figure()
    k = np.arange(5.0)
    plot.rate(ax, k, np.exp(-k), slope=-1.0, intercept=math.log(2.0), fit_label="predicted")
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), 2.0 * np.exp(-k), rtol=1e-12)
    assert ax.get_lines()[1].get_label() == "predicted"
    _, ax2 = plot.figure()
    plot.rate(ax2, k, np.exp(-k))
    assert len(ax2.get_lines()) == 1


def test_rate_shape_mismatch(mpl_state):
    _, ax = plot.figure()
    with pytest.raises(ValueError, match=r"k and err must have the same shape, got \(5,\) and "
                                         r"\(4,\)"):
        plot.rate(ax, np.arange(5), np.ones(4))
    assert len(ax.get_lines()) == 0


# =========================================================================== prose
# prose.glue's return value changed while these tests were written (it returned ``value``, it
# now returns None), so the tests look at what reaches myst_nb.glue instead.

@pytest.fixture
def glued(monkeypatch):
    """Record the calls prose.glue makes to myst_nb.glue."""
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue",
                        lambda name, value, display=False: calls.append((name, value, display)))
    return calls


@pytest.mark.parametrize("value", [0.886, 3, -2.5e-12, "text", np.float64(1.25)])
def test_glue_real_myst_nb_does_not_raise(value, capsys):
    prose.glue("prose.value", value)  # outside a kernel myst_nb.glue must not raise
    capsys.readouterr()


@pytest.mark.parametrize("value", [0.886, 3, "text"])
def test_glue_passes_value_to_myst_nb(glued, value):
    prose.glue("prose.value", value, display=True)
    assert glued == [("prose.value", value, True)]


@pytest.mark.parametrize(("tensor", "expected", "kind"), [
    (torch.tensor(0.5, dtype=F64), 0.5, float),
    (torch.tensor([2.25], dtype=torch.float32), 2.25, float),
    (torch.tensor(7), 7, int),
])
def test_glue_scalar_tensor_becomes_python_number(glued, tensor, expected, kind):
    prose.glue("prose.tensor", tensor)
    [(name, value, display)] = glued
    assert name == "prose.tensor" and display is False
    assert type(value) is kind and value == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"),
                                   torch.tensor(math.inf)])
def test_glue_rejects_non_finite(glued, value):
    with pytest.raises(ValueError, match=r"glue 'bad': refusing to quote a non-finite number"):
        prose.glue("bad", value)
    assert glued == []


def test_glue_rejects_non_finite_float32(glued):
    with pytest.raises(ValueError, match="non-finite"):
        prose.glue("bad32", np.float32("nan"))


@pytest.mark.parametrize("tensor", [torch.tensor([1.0, 2.0]), torch.zeros(2, 2)])
def test_glue_rejects_multi_element_tensors(glued, tensor):
    with pytest.raises(TypeError, match=r"glue 'many': only scalars are glued, got shape \("):
        prose.glue("many", tensor)
    assert glued == []


def test_bool_step_size_and_steps_are_rejected():
    with pytest.raises(TypeError, match="lr must be a real number, got True"):
        dynamics.least_squares_gd(_X, _Y, lr=True, steps=3)
    with pytest.raises(TypeError, match="steps must be an integer, got True"):
        dynamics.least_squares_gd(_X, _Y, lr=0.1, steps=True)


def test_figure_accepts_numpy_integers_and_rejects_bools():
    fig, axes = plot.figure(np.int64(2))
    assert len(axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="n must be a positive integer, got True"):
        plot.figure(True)


def _underdetermined(seed: int = 11, n: int = 6, d: int = 15):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randn(n, generator=g, dtype=F64)
    lr = float(1 / spectra.gram_eigvalsh(X, scale=1 / n).max())
    return X, y, lr


def test_batched_final_iterates_equal_single_runs():
    X, y, lr = _underdetermined()
    W0 = torch.randn(4, X.shape[1], generator=torch.Generator().manual_seed(2), dtype=F64)
    finals = dynamics.least_squares_gd_final(X, y, W0, lr=lr, steps=50, progress=False)
    for i in range(4):
        single = dynamics.least_squares_gd(X, y, lr=lr, steps=50, w0=W0[i]).final
        torch.testing.assert_close(finals[i], single, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"W0 must have shape \[\*, 15\]"):
        dynamics.least_squares_gd_final(X, y, W0[:, :3], lr=lr, steps=5)


def test_error_log_norms_follow_gradient_descent_past_rounding():
    X, y, lr = _underdetermined()
    w_dagger = torch.linalg.pinv(X) @ y
    run = dynamics.least_squares_gd(X, y, lr=lr, steps=60)
    err = (run.w - w_dagger).norm(dim=1)
    log_e = dynamics.least_squares_error_log_norms(X, run.w[0] - w_dagger, lr=lr, steps=2000,
                                                   progress=False)
    above = err / err[0] > 1e-8
    assert above.sum() > 10
    # same curve as gradient descent while its error is above rounding (1e-8 relative)
    assert (log_e[:61][above] - err[above].log()).abs().max() < 1e-6
    # and it keeps decaying at the slowest rate, far below float64's range for err itself
    mu = (1 - lr * spectra.gram_eigvalsh(X, scale=1 / X.shape[0])).abs().max()
    slope = (log_e[-1] - log_e[-501]) / 500
    assert log_e[-1] - log_e[0] < -100
    assert abs(slope / mu.log() - 1) < 1e-6


def test_error_log_norms_reject_a_start_outside_the_row_space():
    X, _, lr = _underdetermined()
    null = spectra.null_space_projector(X) @ torch.ones(X.shape[1], dtype=F64)
    with pytest.raises(ValueError, match="not in the row space"):
        dynamics.least_squares_error_log_norms(X, null, lr=lr, steps=3)
    with pytest.raises(ValueError, match="e0 is zero"):
        dynamics.least_squares_error_log_norms(X, torch.zeros(X.shape[1], dtype=F64), lr=lr,
                                               steps=3)

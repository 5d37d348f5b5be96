"""Spectra: eigenvalues, singular values and condition numbers.

Dense helpers (``gram_eigvalsh``, ``condition_number``, ``null_space_projector``), the
matrix-free ones for a symmetric operator known only by its products (``lanczos``,
``top_eigenvalue``, ``power_iteration``, ``hutchinson_trace``, ``operator_trace``), and,
re-exported from :mod:`dltheory.perturbation`, batched singular values and the
singular-value perturbation bounds (Weyl, multiplicative, interlacing, skip connections,
random matrices) with the local linear representation of a layer.
"""

from __future__ import annotations

import torch

from . import validation
from .errors import InputError, InputTypeError
from .perturbation import (  # noqa: F401  (the perturbation bounds live in `spectra` too)
    ACTIVATIONS,
    ARCHS,
    activation_diagonal,
    concat_singular_values,
    condition_numbers,
    diagonal_condition_bound,
    gaussian_skip_condition_limit,
    interlacing_interval,
    layer_hessian_condition,
    layer_hessian_eigvalsh,
    layer_hessian_factor,
    local_linear,
    multiplicative_interval,
    quarter_circle_cdf,
    quarter_circle_density,
    range_condition_number,
    singular_values,
    skip_condition_bound,
    skip_interval,
    spectral_norm,
    weyl_interval,
)


def gram_eigvalsh(X: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
    """Eigenvalues (ascending) of ``scale * X X^T`` for ``X`` of shape ``[n, d]``: ``[n]``.

    For ``n <= d`` these are the non-zero eigenvalues of ``scale * X^T X`` (when X has full
    row rank), computed on the smaller ``n x n`` matrix. ``X`` is a finite real floating
    tensor (an integer matrix is refused: its product could wrap around; convert it with
    ``.double()``), ``scale >= 0``.
    """
    fn = "spectra.gram_eigvalsh"
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d]")
    scale = validation.real(scale, "scale", fn=fn, lo=0.0)
    G = scale * (X @ X.T)
    validation.finite_output(G, "scale * X X^T", fn=fn, cause="X or scale is too large "
                             "for the dtype")
    return torch.linalg.eigvalsh((G + G.T) / 2)


def condition_number(A: torch.Tensor) -> torch.Tensor:
    """Ratio of the largest to the smallest singular value of ``A [m, n]`` (0-d; inf if
    singular)."""
    A = validation.tensor(A, "A", fn="spectra.condition_number", ndim=2, layout="[m, n]")
    return condition_numbers(A)


def null_space_projector(X: torch.Tensor, *, rtol: float | None = None) -> torch.Tensor:
    """Orthogonal projector ``[d, d]`` onto the null space of ``X`` (``[n, d]``).

    Singular values at most ``rtol * s_max`` count as zero; ``rtol`` in ``[0, 1]``
    (default ``max(n, d) * eps`` of the dtype).
    """
    fn = "spectra.null_space_projector"
    X = validation.tensor(X, "X", fn=fn, ndim=2, layout="[n, d]")
    if rtol is not None:
        rtol = validation.real(rtol, "rtol", fn=fn, lo=0.0, hi=1.0)
    d = X.shape[1]
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    tol = (rtol if rtol is not None else max(X.shape) * torch.finfo(X.dtype).eps) * S.max()
    V = Vh[S > tol].T
    return torch.eye(d, dtype=X.dtype, device=X.device) - V @ V.T


# ------------------------------------------------------------------ matrix-free operators
#
# A symmetric operator given only by its products ``matvec(v)`` (``[n] -> [n]``), e.g. a
# Hessian-vector product: Lanczos and power iteration for the top of the spectrum, and
# Hutchinson's estimator for the trace. Memory is O(n) per stored vector, never O(n^2).
# Random start and probe vectors come from ``generator``, by default
# :func:`dltheory.validation.generator` (seeded from the profile): the same in every fresh
# process, and torch's global generator is never drawn from.


def _operator(matvec, n, fn: str) -> int:
    if not callable(matvec):
        raise InputTypeError(f"{fn}: matvec must be a callable v [n] -> A v [n], got "
                             f"{type(matvec).__name__}")
    return validation.integer(n, "n (the operator's size)", fn=fn, lo=1)


def _rel_tol(tol, fn: str) -> float:
    return validation.real(tol, "tol", fn=fn, lo=0.0, hi=1.0, hi_open=True)


def _apply(matvec, v: torch.Tensor, fn: str) -> torch.Tensor:
    w = matvec(v)
    if not isinstance(w, torch.Tensor) or w.shape != v.shape:
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise InputError(f"{fn}: matvec maps a vector of shape {tuple(v.shape)} to {got}; it "
                         "must return the same shape")
    if w.dtype != v.dtype:
        raise InputTypeError(f"{fn}: matvec maps a vector of dtype {v.dtype} to dtype "
                             f"{w.dtype}; it must keep the dtype (pass dtype=...)")
    if not bool(torch.isfinite(w).all()):
        raise InputError(f"{fn}: matvec returned non-finite values (NaN or inf) for a finite "
                         "vector; check the operator (overflow?) or rescale it")
    return w


def _unit(v: torch.Tensor) -> torch.Tensor:
    """``v / |v|`` for a non-zero finite ``v``, also when ``|v|`` overflows."""
    nv = torch.linalg.vector_norm(v)
    if not torch.isfinite(nv):                      # scale by max |v_i| first
        v = v / v.abs().max()
        nv = torch.linalg.vector_norm(v)
    return v / nv


def _start(n: int, v0, generator: torch.Generator, dtype, device, fn: str) -> torch.Tensor:
    """The unit start vector ``[n]``: ``v0`` normalized, or a Gaussian one."""
    if v0 is None:
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype=dtype,
                                                                          device=device)
    else:
        v0 = validation.tensor(v0, "v0", fn=fn, shape=(n,), layout=f"[{n}]")
    if not bool((v0 != 0).any()):
        raise InputError(f"{fn}: the start vector v0 is zero; pass a non-zero v0 (or None "
                         "for a random one)")
    return _unit(v0)


def lanczos(matvec, n: int, steps: int, *, v0: torch.Tensor | None = None,
            generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
            device=None, reorthogonalize: bool = True, tol: float = 0.0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values of a symmetric operator after at most ``steps`` Lanczos steps.

    ``matvec``: ``v [n] -> A v [n]`` with ``A`` symmetric (same dtype, finite values).
    Starts from ``v0 [n]`` (default: a Gaussian vector drawn from ``generator``, by default
    seeded from the profile, :func:`dltheory.validation.generator`). With
    ``reorthogonalize=True`` every new vector is orthogonalized against all previous ones
    (memory ``steps * n``; the Ritz values are then those of exact arithmetic); with
    ``False`` only three vectors are kept (memory ``3 n``): the extreme Ritz values still
    converge, but converged ones may repeat ("ghost" copies). Stops early when the Krylov
    space is invariant, or when ``tol > 0`` and the residual bound of the largest Ritz
    value, ``beta_m |s_m|``, is at most ``tol`` times its magnitude (``tol`` in ``[0, 1)``).

    Returns ``(ritz [m], residual [m])``: the Ritz values in ascending order and their
    residual bounds ``|beta_m s_{m,j}|`` (``A`` has an eigenvalue within that distance of
    each Ritz value).
    """
    fn = "spectra.lanczos"
    n = _operator(matvec, n, fn)
    steps = min(validation.integer(steps, "steps", fn=fn, lo=1), n)
    dtype = validation.floating_dtype(dtype, fn=fn)
    reorthogonalize = validation.boolean(reorthogonalize, "reorthogonalize", fn=fn)
    tol = _rel_tol(tol, fn)
    q = _start(n, v0, validation.generator(generator, fn=fn), dtype, device, fn)
    if reorthogonalize:                             # the Lanczos basis, one row per step
        Q = q.new_empty(steps, n)
        Q[0] = q
    alphas, betas = [], []
    q_prev = torch.zeros_like(q)
    beta = q.new_zeros(())
    ritz = resid = None
    for j in range(steps):
        w = _apply(matvec, q, fn)
        alpha = torch.dot(w, q)
        w = w - alpha * q - beta * q_prev
        if reorthogonalize:
            B = Q[:j + 1]                           # [j+1, n]
            for _ in range(2):                      # twice is enough (Kahan-Parlett)
                w = w - B.T @ (B @ w)
        alphas.append(alpha)
        beta = torch.linalg.vector_norm(w)
        T = torch.diag(torch.stack(alphas))
        if j:
            off = torch.stack(betas)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        validation.finite_output(T, "the Lanczos matrix", fn=fn,
                                 cause="the operator's values are too large for the dtype")
        ritz, S = torch.linalg.eigh(T)
        resid = (beta * S[-1]).abs()
        scale = ritz.abs().max()
        if beta <= 1e3 * torch.finfo(q.dtype).eps * max(float(scale), 1e-300):
            break                                   # invariant subspace: Ritz values exact
        if tol > 0 and resid[-1] <= tol * scale:
            break
        if j + 1 == steps:
            break
        betas.append(beta)
        q_prev, q = q, w / beta
        if reorthogonalize:
            Q[j + 1] = q
    validation.finite_output(resid, "the Lanczos residual", fn=fn,
                             cause="the operator's values are too large for the dtype")
    return ritz, resid


METHODS = ("lanczos", "power")
"""The methods of :func:`top_eigenvalue`."""


def top_eigenvalue(matvec, n: int, *, method: str = "lanczos", steps: int = 100,
                   tol: float = 1e-12, v0: torch.Tensor | None = None,
                   generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64, device=None,
                   reorthogonalize: bool = True) -> torch.Tensor:
    """The largest eigenvalue of a symmetric positive semi-definite operator, 0-d tensor.

    ``method="lanczos"`` (default): the largest Ritz value of :func:`lanczos`, stopped
    when its residual bound is at most ``tol`` times its value. ``method="power"``: power
    iteration (:func:`power_iteration`), the Rayleigh quotient after it settles to ``tol``
    relative; slower when the top two eigenvalues are close. For a PSD operator the largest
    eigenvalue is also the largest in magnitude, which power iteration needs. ``steps``:
    at most that many products; ``tol`` in ``[0, 1)``; ``generator`` as in :func:`lanczos`.
    """
    fn = "spectra.top_eigenvalue"
    method = validation.choice(method, "method", METHODS, fn=fn)
    _operator(matvec, n, fn)
    validation.integer(steps, "steps", fn=fn, lo=1)
    _rel_tol(tol, fn)
    validation.boolean(reorthogonalize, "reorthogonalize", fn=fn)
    if method == "lanczos":
        ritz, _ = lanczos(matvec, n, steps, v0=v0, generator=generator, dtype=dtype,
                          device=device, reorthogonalize=reorthogonalize, tol=tol)
        return ritz[-1]
    return power_iteration(matvec, n, iters=steps, tol=tol, v0=v0, generator=generator,
                           dtype=dtype, device=device)[0]


def power_iteration(matvec, n: int, *, iters: int = 1000, tol: float = 1e-12,
                    v0: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64, device=None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant eigenpair ``(lambda, v)`` of a symmetric operator by power iteration.

    Iterates ``v <- A v / |A v|`` until the Rayleigh quotient changes by at most ``tol``
    (in ``[0, 1)``) relative, or ``iters`` products. Memory ``2 n``. Returns the Rayleigh
    quotient (0-d) and the unit vector ``[n]``. ``v0``, ``generator``: as in
    :func:`lanczos`.
    """
    fn = "spectra.power_iteration"
    n = _operator(matvec, n, fn)
    iters = validation.integer(iters, "iters", fn=fn, lo=1)
    tol = _rel_tol(tol, fn)
    dtype = validation.floating_dtype(dtype, fn=fn)
    v = _start(n, v0, validation.generator(generator, fn=fn), dtype, device, fn)
    lam = None
    for _ in range(iters):
        w = _apply(matvec, v, fn)
        new = torch.dot(v, w)
        nw = torch.linalg.vector_norm(w)
        validation.finite_output(new, "the Rayleigh quotient", fn=fn,
                                 cause="the operator's values are too large for the dtype")
        if not nw > 0:
            return new, v                           # A v = 0: eigenvalue 0
        v = _unit(w)
        if lam is not None and (new - lam).abs() <= tol * new.abs():
            return new, v
        lam = new
    return lam, v


def hutchinson_trace(matvec, n: int, probes: int, *,
                     generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Hutchinson's estimates of ``tr(A)``: ``v^T A v`` for ``probes`` Rademacher vectors.

    Returns the ``[probes]`` samples (unbiased, independent); their mean estimates the
    trace, their spread gives a confidence interval (:func:`dltheory.stats.mean_interval`).
    The probes come from ``generator`` (default: seeded from the profile, as in
    :func:`lanczos`).
    """
    fn = "spectra.hutchinson_trace"
    n = _operator(matvec, n, fn)
    probes = validation.integer(probes, "probes", fn=fn, lo=1)
    dtype = validation.floating_dtype(dtype, fn=fn)
    generator = validation.generator(generator, fn=fn)
    out = []
    for _ in range(probes):
        v = (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(dtype=dtype,
                                                                        device=device)
        out.append(torch.dot(v, _apply(matvec, v, fn)))
    samples = torch.stack(out)
    validation.finite_output(samples, "v^T A v", fn=fn,
                             cause="the operator's values are too large for the dtype")
    return samples


def operator_trace(matvec, n: int, *, dtype: torch.dtype = torch.float64,
                   device=None) -> torch.Tensor:
    """The exact trace ``sum_j e_j^T A e_j`` from ``n`` products (for small ``n``), 0-d."""
    fn = "spectra.operator_trace"
    n = _operator(matvec, n, fn)
    dtype = validation.floating_dtype(dtype, fn=fn)
    total = torch.zeros((), dtype=dtype, device=device)
    for j in range(n):
        e = torch.zeros(n, dtype=dtype, device=device)
        e[j] = 1
        total = total + _apply(matvec, e, fn)[j]
    validation.finite_output(total, "the trace", fn=fn,
                             cause="the operator's values are too large for the dtype")
    return total

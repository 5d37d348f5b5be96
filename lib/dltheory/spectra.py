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
    """Eigenvalues (ascending) of ``scale * X X^T`` for ``X`` of shape ``[n, d]``.

    For ``n <= d`` these are the non-zero eigenvalues of ``scale * X^T X`` (when X has full
    row rank), computed on the smaller ``n x n`` matrix.
    """
    if X.ndim != 2:
        raise ValueError(f"X must be a matrix, got shape {tuple(X.shape)}")
    G = scale * (X @ X.T)
    return torch.linalg.eigvalsh((G + G.T) / 2)


def condition_number(A: torch.Tensor) -> torch.Tensor:
    """Ratio of the largest to the smallest singular value of ``A`` (inf if singular)."""
    if A.ndim != 2:
        raise ValueError(f"A must be a matrix, got shape {tuple(A.shape)}")
    return condition_numbers(A)


def null_space_projector(X: torch.Tensor, *, rtol: float | None = None) -> torch.Tensor:
    """Orthogonal projector ``[d, d]`` onto the null space of ``X`` (``[n, d]``)."""
    if X.ndim != 2:
        raise ValueError(f"X must be a matrix, got shape {tuple(X.shape)}")
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


def _check_operator(matvec, n) -> int:
    if not callable(matvec):
        raise TypeError(f"matvec must be a callable v [n] -> [n], got {type(matvec).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the operator's size) must be a positive int, got {n!r}")
    return n


def _apply(matvec, v: torch.Tensor) -> torch.Tensor:
    w = matvec(v)
    if not isinstance(w, torch.Tensor) or w.shape != v.shape:
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"matvec maps a vector of shape {tuple(v.shape)} to {got}; it must "
                         "return the same shape")
    if not torch.isfinite(w).all():
        raise ValueError("matvec returned non-finite values")
    return w


def _start(n: int, v0, generator, dtype, device) -> torch.Tensor:
    if v0 is None:
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype=dtype,
                                                                          device=device)
    elif v0.shape != (n,):
        raise ValueError(f"v0 must have shape [{n}], got {tuple(v0.shape)}")
    nv = torch.linalg.vector_norm(v0)
    if not nv > 0:
        raise ValueError("the start vector v0 is zero")
    return v0 / nv


def lanczos(matvec, n: int, steps: int, *, v0: torch.Tensor | None = None,
            generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
            device=None, reorthogonalize: bool = True, tol: float = 0.0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values of a symmetric operator after at most ``steps`` Lanczos steps.

    ``matvec``: ``v [n] -> A v [n]`` with ``A`` symmetric. Starts from ``v0`` (default: a
    Gaussian vector drawn from ``generator``). With ``reorthogonalize=True`` every new
    vector is orthogonalized against all previous ones (memory ``steps * n``; the Ritz
    values are then those of exact arithmetic); with ``False`` only three vectors are kept
    (memory ``3 n``): the extreme Ritz values still converge, but converged ones may repeat
    ("ghost" copies). Stops early when the Krylov space is invariant, or when ``tol > 0``
    and the residual bound of the largest Ritz value, ``beta_m |s_m|``, is at most ``tol``
    times its magnitude.

    Returns ``(ritz [m], residual [m])``: the Ritz values in ascending order and their
    residual bounds ``|beta_m s_{m,j}|`` (``A`` has an eigenvalue within that distance of
    each Ritz value).
    """
    n = _check_operator(matvec, n)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    steps = min(steps, n)
    q = _start(n, v0, generator, dtype, device)
    if reorthogonalize:                             # the Lanczos basis, one row per step
        Q = q.new_empty(steps, n)
        Q[0] = q
    alphas, betas = [], []
    q_prev = torch.zeros_like(q)
    beta = q.new_zeros(())
    ritz = resid = None
    for j in range(steps):
        w = _apply(matvec, q)
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
    return ritz, resid


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
    eigenvalue is also the largest in magnitude, which power iteration needs.
    """
    if method == "lanczos":
        ritz, _ = lanczos(matvec, n, steps, v0=v0, generator=generator, dtype=dtype,
                          device=device, reorthogonalize=reorthogonalize, tol=tol)
        return ritz[-1]
    if method == "power":
        return power_iteration(matvec, n, iters=steps, tol=tol, v0=v0, generator=generator,
                               dtype=dtype, device=device)[0]
    raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")


def power_iteration(matvec, n: int, *, iters: int = 1000, tol: float = 1e-12,
                    v0: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64, device=None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant eigenpair ``(lambda, v)`` of a symmetric operator by power iteration.

    Iterates ``v <- A v / |A v|`` until the Rayleigh quotient changes by at most ``tol``
    relative, or ``iters`` products. Memory ``2 n``. Returns the Rayleigh quotient (0-d)
    and the unit vector ``[n]``.
    """
    n = _check_operator(matvec, n)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    v = _start(n, v0, generator, dtype, device)
    lam = None
    for _ in range(iters):
        w = _apply(matvec, v)
        new = torch.dot(v, w)
        nw = torch.linalg.vector_norm(w)
        if not nw > 0:
            return new, v                           # A v = 0: eigenvalue 0
        v = w / nw
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
    """
    n = _check_operator(matvec, n)
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive int, got {probes!r}")
    out = []
    for _ in range(probes):
        v = (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(dtype=dtype,
                                                                        device=device)
        out.append(torch.dot(v, _apply(matvec, v)))
    return torch.stack(out)


def operator_trace(matvec, n: int, *, dtype: torch.dtype = torch.float64,
                   device=None) -> torch.Tensor:
    """The exact trace ``sum_j e_j^T A e_j`` from ``n`` products (for small ``n``)."""
    n = _check_operator(matvec, n)
    total = torch.zeros((), dtype=dtype, device=device)
    for j in range(n):
        e = torch.zeros(n, dtype=dtype, device=device)
        e[j] = 1
        total = total + _apply(matvec, e)[j]
    return total

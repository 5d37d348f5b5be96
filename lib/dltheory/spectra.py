"""Spectra: eigenvalues, singular values and condition numbers."""

from __future__ import annotations

import torch


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
    s = torch.linalg.svdvals(A)
    if s.min() == 0:
        return torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    return s.max() / s.min()


def null_space_projector(X: torch.Tensor, *, rtol: float | None = None) -> torch.Tensor:
    """Orthogonal projector ``[d, d]`` onto the null space of ``X`` (``[n, d]``)."""
    if X.ndim != 2:
        raise ValueError(f"X must be a matrix, got shape {tuple(X.shape)}")
    d = X.shape[1]
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    tol = (rtol if rtol is not None else max(X.shape) * torch.finfo(X.dtype).eps) * S.max()
    V = Vh[S > tol].T
    return torch.eye(d, dtype=X.dtype, device=X.device) - V @ V.T

"""Helpers shared by the library tests (not tests themselves)."""

from __future__ import annotations

import torch
from torch import nn

F64 = torch.float64


def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so batch norm is not ~identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g, dtype=F64))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=F64))
                if m.affine:
                    m.weight.copy_(1 + 0.3 * torch.randn(n, generator=g, dtype=F64))
                    m.bias.copy_(0.2 * torch.randn(n, generator=g, dtype=F64))
    return net


def randn(*shape, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """``scale * N(0, 1)`` in float64 of ``shape``, from a generator seeded with ``seed``."""
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)

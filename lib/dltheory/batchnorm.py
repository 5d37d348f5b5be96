"""Batch normalization seen through the spline view: batch statistics, boundaries, gradients.

In training mode a ``BatchNorm1d`` layer normalizes each unit with the mean and the
(biased) variance of the current batch, so the network's output at one input depends on
the others; in eval mode it uses fixed statistics and is a per-unit affine map, so the
network is continuous piecewise affine (:mod:`dltheory.cpa`, :mod:`dltheory.regions`).
This module connects the two:

* :func:`batch_stats` the statistics a training-mode forward pass computes at every batch
  norm (the network itself is left unchanged); :func:`population_stats` the inference
  statistics of Ioffe & Szegedy, averaged over mini-batches, with the unbiased variance;
* :func:`with_stats` an eval-mode copy that uses given statistics: with the statistics of
  a batch it equals the training-mode network on that batch, and is CPA;
* :func:`boundaries` the hyperplane of every unit of a ``Linear -> BatchNorm1d -> act``
  network in its layer's input space, ``{h : W_k h = c_k}``;
* :func:`input_grad` the closed-form gradient through training-mode batch norm;
* :func:`offset_jitter` the standard deviation of a batch mean over mini-batches drawn
  without replacement.

Shapes: a batch ``X [B, d]``; a unit's statistics ``mean [C]``, ``var [C]``.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import validation
from .errors import InputError, InputTypeError

__all__ = ["Stats", "Hyperplanes", "batch_stats", "population_stats", "with_stats",
           "boundaries", "input_grad", "offset_jitter"]


class Stats(NamedTuple):
    """One batch norm's statistics: ``mean [C]`` and ``var [C]`` of its input."""

    mean: Tensor
    var: Tensor


class Hyperplanes(NamedTuple):
    """Layer ``l``'s unit boundaries ``{h : W[k] h = c[k]}`` in its input space, with the
    batch's inputs ``H [B, d]`` to that layer."""

    W: Tensor
    c: Tensor
    H: Tensor


def _bns(net: nn.Module, fn: str) -> list[nn.Module]:
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    if not bns:
        raise InputError(f"{fn}: net has no batch norm layer; build it with batchnorm=True")
    return bns


def _batch(net: nn.Module, X, fn: str) -> Tensor:
    p = next(net.parameters(), None)
    X = validation.tensor(X, "X", fn=fn, min_ndim=2, layout="[B, ...]",
                          dtype=None if p is None else p.dtype)
    if X.shape[0] < 2:
        raise InputError(f"{fn}: X has a batch of {X.shape[0]} input; batch statistics need "
                         "at least 2")
    return X


def _reduce_dims(x: Tensor) -> list[int]:
    return [0, *range(2, x.ndim)]


@torch.no_grad()
def batch_stats(net: nn.Module, X) -> list[Stats]:
    """The statistics every batch norm of ``net`` computes in training mode on the batch
    ``X [B, ...]``: per layer, in execution order, ``Stats(mean, var)`` with the biased
    variance (the one training mode normalizes with). ``net`` is not changed (a copy runs
    the forward pass, so its running statistics and mode stay as they are)."""
    fn = "batchnorm.batch_stats"
    validation.network(net, "net", fn=fn, eval_only=False)
    _bns(net, fn)
    X = _batch(net, X, fn)
    twin = copy.deepcopy(net).train()
    out: list[Stats] = []

    def hook(module, args):
        x = args[0]
        dims = _reduce_dims(x)
        out.append(Stats(x.mean(dims), x.var(dims, unbiased=False)))

    for m in _bns(twin, fn):
        m.register_forward_pre_hook(hook)
    twin(validation.private_copy(X))
    return out


def population_stats(net: nn.Module, batches, *, unbiased: bool = True) -> list[Stats]:
    """Inference statistics from training mini-batches ``batches [M, m, ...]`` (Ioffe &
    Szegedy, Alg. 2): per batch norm, the mean of the batch means and
    ``m/(m-1)`` times the mean of the (biased) batch variances (``unbiased=False``: the
    plain mean of the batch variances)."""
    fn = "batchnorm.population_stats"
    validation.network(net, "net", fn=fn, eval_only=False)
    p = next(net.parameters(), None)
    batches = validation.tensor(batches, "batches", fn=fn, min_ndim=3, layout="[M, m, ...]",
                                dtype=None if p is None else p.dtype)
    unbiased = validation.boolean(unbiased, "unbiased", fn=fn)
    m = batches.shape[1]
    if m < 2:
        raise InputError(f"{fn}: batches has mini-batches of {m} input; need at least 2")
    per = [batch_stats(net, b) for b in batches]
    factor = m / (m - 1) if unbiased else 1.0
    return [Stats(torch.stack([s[i].mean for s in per]).mean(0),
                  factor * torch.stack([s[i].var for s in per]).mean(0))
            for i in range(len(per[0]))]


def _stats_list(net: nn.Module, stats, fn: str) -> list[Stats]:
    bns = _bns(net, fn)
    if not isinstance(stats, list | tuple) or len(stats) != len(bns):
        raise InputTypeError(f"{fn}: stats must be a list of {len(bns)} (mean, var) pairs, "
                             f"one per batch norm of net, got {type(stats).__name__}"
                             + (f" of length {len(stats)}" if isinstance(stats, list | tuple)
                                else ""))
    out = []
    for i, (bn, s) in enumerate(zip(bns, stats, strict=True)):
        if not isinstance(s, tuple | list) or len(s) != 2:
            raise InputTypeError(f"{fn}: stats[{i}] must be a (mean, var) pair")
        C = bn.num_features
        mean = validation.tensor(s[0], f"stats[{i}].mean", fn=fn, shape=(C,))
        var = validation.tensor(s[1], f"stats[{i}].var", fn=fn, shape=(C,))
        if bool((var < 0).any()):
            raise InputError(f"{fn}: stats[{i}].var has a negative entry; pass variances >= 0")
        out.append(Stats(mean, var))
    return out


@torch.no_grad()
def with_stats(net: nn.Module, stats) -> nn.Module:
    """An eval-mode copy of ``net`` whose batch norms use ``stats`` (a list of
    ``(mean [C], var [C])``, one per batch norm in execution order) as running statistics.
    With ``stats = batch_stats(net, X)`` it computes, input by input, what the training-mode
    network computes on the batch ``X``; it is CPA, so :mod:`dltheory.regions` can cut it."""
    fn = "batchnorm.with_stats"
    validation.network(net, "net", fn=fn, eval_only=False)
    stats = _stats_list(net, stats, fn)
    twin = copy.deepcopy(net)
    for bn, s in zip(_bns(twin, fn), stats, strict=True):
        bn.running_mean.copy_(s.mean.to(bn.running_mean))
        bn.running_var.copy_(s.var.to(bn.running_var))
    return twin.eval()


def _dense_layers(net: nn.Module, fn: str) -> list[tuple[nn.Linear, nn.BatchNorm1d]]:
    leaves = [m for m in net.modules() if not isinstance(m, nn.Sequential)]
    pairs = [(a, b) for a, b in zip(leaves[:-1], leaves[1:], strict=True)
             if isinstance(b, nn.BatchNorm1d)]
    if not pairs or any(type(a) is not nn.Linear for a, _ in pairs):
        raise InputError(f"{fn}: net must be a fully connected network whose every batch "
                         "norm follows a Linear layer (nets.mlp(..., batchnorm=True))")
    return pairs


@torch.no_grad()
def boundaries(net: nn.Module, X, stats=None) -> list[Hyperplanes]:
    """Every hidden unit's boundary in its layer's input space, for a ``Linear ->
    BatchNorm1d -> act`` network (``nets.mlp(..., batchnorm=True)``) normalized with the
    statistics of the batch ``X [B, d]`` (``stats=None``) or with given ``stats``.

    Unit ``k`` of a layer with weights ``w_k``, bias ``b_k``, BN scale ``gamma_k``, shift
    ``beta_k`` and statistics ``(mu_k, var_k)`` changes sign on
    ``{h : <w_k, h> = c_k}``, ``c_k = mu_k - b_k - beta_k sqrt(var_k + eps)/gamma_k``.
    ``H`` holds the layer's inputs on the batch, computed with the same statistics."""
    fn = "batchnorm.boundaries"
    validation.network(net, "net", fn=fn, eval_only=False)
    pairs = _dense_layers(net, fn)
    X = _batch(net, X, fn)
    if X.ndim != 2:
        raise InputError(f"{fn}: X must have shape [B, d], got {tuple(X.shape)}")
    stats = batch_stats(net, X) if stats is None else _stats_list(net, stats, fn)
    if any(float(bn.weight.abs().min()) == 0 for _, bn in pairs if bn.weight is not None):
        raise InputError(f"{fn}: net has a batch norm with a zero scale (gamma): its unit "
                         "has no boundary")
    evalnet = with_stats(net, stats)
    inputs: list[Tensor] = []
    hooks = [lin.register_forward_pre_hook(lambda _m, a: inputs.append(a[0]))
             for lin, _ in [p for p in _dense_layers(evalnet, fn)]]
    evalnet(validation.private_copy(X))
    for h in hooks:
        h.remove()
    out = []
    for (lin, bn), s, H in zip(pairs, stats, inputs, strict=True):
        W = lin.weight.detach()
        b = lin.bias.detach() if lin.bias is not None else W.new_zeros(W.shape[0])
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(b)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(b)
        c = s.mean - b - beta * torch.sqrt(s.var + bn.eps) / gamma
        out.append(Hyperplanes(W.clone(), c, H))
    return out


def input_grad(x, g, gamma, *, eps: float = 0.0) -> Tensor:
    """The gradient ``[B, C]`` of a loss with respect to the input ``x [B, C]`` of
    training-mode batch norm ``y = gamma (x - mean)/sqrt(var + eps) + beta``, given the
    upstream gradient ``g = dL/dy [B, C]`` and the scale ``gamma [C]``:
    ``(gamma/sigma) (g - mean(g) - xhat mean(g xhat))`` per unit. With ``eps = 0`` this is
    ``(gamma/sigma)`` times the orthogonal projection of ``g`` off ``1`` and ``xhat``."""
    fn = "batchnorm.input_grad"
    x = validation.tensor(x, "x", fn=fn, ndim=2, layout="[B, C]")
    g = validation.tensor(g, "g", fn=fn, shape=tuple(x.shape), dtype=x.dtype, like="x is")
    gamma = validation.tensor(gamma, "gamma", fn=fn, shape=(x.shape[1],), dtype=x.dtype,
                              like="x is")
    eps = validation.real(eps, "eps", fn=fn, lo=0.0)
    if x.shape[0] < 2:
        raise InputError(f"{fn}: x has a batch of {x.shape[0]} input; need at least 2")
    mu = x.mean(0)
    sigma = torch.sqrt(x.var(0, unbiased=False) + eps)
    if bool((sigma == 0).any()):
        raise InputError(f"{fn}: x has a unit constant over the batch with eps = 0 "
                         "(sigma = 0); pass eps > 0")
    xhat = (x - mu) / sigma
    return gamma / sigma * (g - g.mean(0) - xhat * (g * xhat).mean(0))


def offset_jitter(sigma: float, B: int, N: int) -> float:
    """The standard deviation of the mean of ``B`` of ``N`` values (population standard
    deviation ``sigma``, divisor ``N``) drawn without replacement:
    ``sigma/sqrt(B) * sqrt((N - B)/(N - 1))``; 0 for the full batch ``B = N``."""
    fn = "batchnorm.offset_jitter"
    sigma = validation.real(sigma, "sigma", fn=fn, lo=0.0)
    N = validation.integer(N, "N", fn=fn, lo=2)
    B = validation.integer(B, "B", fn=fn, lo=1)
    if B > N:
        raise InputError(f"{fn}: B = {B} exceeds N = {N}; a mini-batch holds at most the N "
                         "points it is drawn from")
    return sigma / math.sqrt(B) * math.sqrt((N - B) / (N - 1))

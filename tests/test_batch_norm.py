"""Tests of dltheory.batchnorm: batch statistics, eval copies with given statistics, unit
boundaries, the BN gradient, the offset jitter; and bad input (badinput.Case)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from badinput import Case, make_tests
from dltheory import batchnorm as bn
from dltheory import cpa, nets, regions
from dltheory.errors import InputError

F64 = torch.float64
NAN = float("nan")


def _data(n=40, d=2, seed=0, shift=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64) + shift


def test_batch_stats_are_those_of_training_mode_and_leave_the_net_alone():
    net = nets.mlp([2, 6, 5, 1], batchnorm=True, seed=1)
    X = _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    st = bn.batch_stats(net, X)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    z = X @ net[0].weight.T + net[0].bias
    assert torch.allclose(st[0].mean, z.mean(0), rtol=0, atol=1e-13)
    assert torch.allclose(st[0].var, z.var(0, unbiased=False), rtol=1e-13)
    assert [s.mean.shape[0] for s in st] == [6, 5]


def test_with_stats_of_the_batch_equals_training_mode_on_it_and_is_cpa():
    net = nets.mlp([2, 8, 8, 3], batchnorm=True, seed=2)
    X = _data(seed=2)
    ev = bn.with_stats(net, bn.batch_stats(net, X))
    assert not ev.training and net.training
    with torch.no_grad():
        assert torch.allclose(ev(X), net(X), rtol=0, atol=1e-12)
    cpa.validate(ev)
    regions.on_segment(ev, X[0], X[1])                    # the spline view accepts it


def test_boundaries_pass_through_each_layers_centroid_with_zero_shift():
    net = nets.mlp([3, 7, 7, 7, 1], batchnorm=True, seed=3, bias_std=0.5)
    X = _data(d=3, seed=3)
    for hp in bn.boundaries(net, X):
        assert torch.allclose(hp.W @ hp.H.mean(0), hp.c, rtol=0, atol=1e-12)


def test_boundaries_are_where_the_eval_network_changes_sign_with_a_shift():
    net = nets.mlp([2, 5, 1], batchnorm=True, seed=4)
    with torch.no_grad():
        net[1].bias.copy_(torch.linspace(-1, 1, 5, dtype=F64))
        net[1].weight.copy_(torch.linspace(0.5, 2, 5, dtype=F64))
    X = _data(seed=4)
    hp = bn.boundaries(net, X)[0]
    ev = bn.with_stats(net, bn.batch_stats(net, X))
    k, w = 2, hp.W[2]
    x_on = w * hp.c[k] / (w @ w)                          # a point of the hyperplane
    with torch.no_grad():
        pre = ev[1](ev[0](x_on[None]))[0, k]
    assert abs(float(pre)) < 1e-12


def test_population_stats_unbiased_factor():
    net = nets.mlp([2, 4, 1], batchnorm=True, seed=0)
    batches = _data(n=30, seed=5).reshape(10, 3, 2)
    unb = bn.population_stats(net, batches)
    bia = bn.population_stats(net, batches, unbiased=False)
    assert torch.allclose(unb[0].var, 1.5 * bia[0].var, rtol=1e-14)
    assert torch.allclose(unb[0].mean, bia[0].mean)


def test_input_grad_is_autograd_of_batch_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g, dtype=F64).requires_grad_(True)
    gam = torch.rand(4, generator=g, dtype=F64) + 0.5
    up = torch.randn(9, 4, generator=g, dtype=F64)
    nn.functional.batch_norm(x, None, None, gam, None, training=True, eps=1e-3).backward(up)
    assert torch.allclose(bn.input_grad(x.detach(), up, gam, eps=1e-3), x.grad, atol=1e-13)


def test_offset_jitter_formula_and_full_batch():
    assert bn.offset_jitter(2.0, 10, 10) == 0.0
    assert math.isclose(bn.offset_jitter(2.0, 1, 10), 2.0)
    assert math.isclose(bn.offset_jitter(1.0, 4, 9), 0.5 * math.sqrt(5 / 8))


def test_wrong_mode_and_wrong_networks_are_refused_clearly():
    net = nets.mlp([2, 4, 1], batchnorm=True)             # training mode, as built
    with pytest.raises(cpa.NotCPAError, match="training mode"):
        regions.on_plane(net, torch.zeros(2, dtype=F64), torch.tensor([1.0, 0], dtype=F64),
                         torch.tensor([0, 1.0], dtype=F64))
    with pytest.raises(InputError, match="no batch norm"):
        bn.batch_stats(nets.mlp([2, 4, 1]), _data())
    with pytest.raises(InputError, match="at least 2"):
        bn.batch_stats(net, _data(n=1))
    with pytest.raises(InputError, match="follows a Linear"):
        bn.boundaries(nets.convnet((1, 4, 4), channels=(2,), n_out=1, batchnorm=True),
                      torch.zeros(3, 1, 4, 4, dtype=F64))
    with pytest.raises(TypeError, match="list of 1"):
        bn.with_stats(net, [])
    with pytest.raises(InputError, match="negative"):
        bn.with_stats(net, [(torch.zeros(4, dtype=F64), -torch.ones(4, dtype=F64))])
    with pytest.raises(InputError, match="eps > 0"):
        bn.input_grad(torch.ones(3, 2, dtype=F64), torch.ones(3, 2, dtype=F64),
                      torch.ones(2, dtype=F64))


def _net():
    return nets.mlp([2, 4, 3, 1], batchnorm=True, seed=0)


def _stats():
    return [(torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64)),
            (torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64))]


CASES = [
    Case("batchnorm.batch_stats", bn.batch_stats, lambda: {"net": _net(), "X": _data()},
         tensors=("X",), nets=("net",)),
    Case("batchnorm.population_stats", bn.population_stats,
         lambda: {"net": _net(), "batches": _data(n=12).reshape(3, 4, 2), "unbiased": True},
         tensors=("batches",), nets=("net",), scalars={"unbiased": [1, "yes", None]}),
    Case("batchnorm.with_stats", bn.with_stats, lambda: {"net": _net(), "stats": _stats()},
         nets=("net",), scalars={"stats": [[], None, [(torch.zeros(4, dtype=F64),)] * 2]}),
    Case("batchnorm.boundaries", bn.boundaries,
         lambda: {"net": _net(), "X": _data(), "stats": None}, tensors=("X",), nets=("net",),
         scalars={"stats": [[], "batch"]}),
    Case("batchnorm.input_grad", bn.input_grad,
         lambda: {"x": _data(n=6, d=3), "g": _data(n=6, d=3, seed=1),
                  "gamma": torch.ones(3, dtype=F64), "eps": 0.0},
         tensors=("x", "g", "gamma"), scalars={"eps": [NAN, -1.0, "0"]},
         allowed={"gamma": set()}),
    Case("batchnorm.offset_jitter", bn.offset_jitter,
         lambda: {"sigma": 1.0, "B": 4, "N": 10},
         scalars={"sigma": [NAN, -1.0, math.inf], "B": [0, 11, 2.5, True],
                  "N": [1, 3, 2.0]}),
]

test_refused, test_pure = make_tests(CASES)

"""Tests for dltheory.nets: activations, factories, initialization, seeding, modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dltheory import nets
from dltheory.nets import Abs, DenseBlock, Maxout, ResidualBlock

F64 = torch.float64


def _x(shape, seed=0, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- activations


def test_abs_is_absolute_value():
    x = _x((5, 7))
    assert torch.equal(Abs()(x), x.abs())
    assert (x < 0).any()  # the test would not notice a plain identity otherwise


def test_maxout_takes_max_over_consecutive_channel_groups():
    x = _x((3, 6, 4, 5))
    y = Maxout(3)(x)
    assert y.shape == (3, 2, 4, 5)
    assert torch.equal(y[:, 0], torch.maximum(torch.maximum(x[:, 0], x[:, 1]), x[:, 2]))
    assert torch.equal(y[:, 1], torch.maximum(torch.maximum(x[:, 3], x[:, 4]), x[:, 5]))
    z = Maxout(2)(_x((4, 6)))
    assert z.shape == (4, 3)


def test_maxout_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"multiple of 4.*\(2, 6\)"):
        Maxout(4)(_x((2, 6)))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        Maxout(0)


@pytest.mark.parametrize(("name", "cls"), [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU),
                                           ("abs", Abs), ("maxout", Maxout)])
def test_activation_factory(name, cls):
    assert type(nets.activation(name)) is cls


def test_activation_options_and_unknown_name():
    assert nets.activation("leaky_relu").negative_slope == 0.1
    assert nets.activation("leaky_relu", negative_slope=0.3).negative_slope == 0.3
    assert nets.activation("maxout").k == 2
    assert nets.activation("maxout", k=4).k == 4
    with pytest.raises(ValueError, match="relu, leaky_relu, abs, maxout") as err:
        nets.activation("gelu")
    assert "'gelu'" in str(err.value)


# --------------------------------------------------------------------------- mlp


def test_mlp_structure():
    net = nets.mlp([3, 5, 7, 2], act="abs", batchnorm=True)
    types = [type(m) for m in net]
    assert types == [nn.Linear, nn.BatchNorm1d, Abs, nn.Linear, nn.BatchNorm1d, Abs, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [
        (3, 5), (5, 7), (7, 2)]
    assert net(_x((4, 3))).shape == (4, 2)


def test_mlp_maxout_widths_are_after_the_max():
    net = nets.mlp([3, 5, 2], act="maxout", maxout_k=3)
    assert [type(m) for m in net] == [nn.Linear, Maxout, nn.Linear]
    assert net[0].out_features == 15 and net[1].k == 3 and net[2].in_features == 5
    assert net(_x((4, 3))).shape == (4, 2)


def test_mlp_without_bias_and_callable_act():
    net = nets.mlp([3, 4, 1], bias=False)
    assert all(m.bias is None for m in net if isinstance(m, nn.Linear))
    gelu = nets.mlp([3, 4, 1], act=nn.GELU)
    assert isinstance(gelu[1], nn.GELU)


def test_mlp_bad_arguments():
    with pytest.raises(ValueError, match="at least"):
        nets.mlp([3])
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        nets.mlp([3, 0, 1])
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        nets.mlp([3, 4, 1], act="tanh")
    with pytest.raises(TypeError, match="dtype"):
        nets.mlp([3, 4, 1], dtype=torch.int64)
    with pytest.raises(ValueError, match="bias_std"):
        nets.mlp([3, 4, 1], bias_std=-1.0)


def test_he_init_and_bias_std():
    net = nets.mlp([400, 400, 1], seed=3, bias_std=0.5)
    w, b = net[0].weight, net[0].bias
    assert w.dtype == F64
    assert abs(w.std().item() / math.sqrt(2 / 400) - 1) < 0.02
    assert abs(w.mean().item()) < 5 * math.sqrt(2 / 400) / 400    # 5 standard errors
    assert abs(b.std().item() / 0.5 - 1) < 0.15
    assert torch.count_nonzero(nets.mlp([4, 4, 1])[0].bias) == 0   # bias_std=0 by default


def test_conv_he_init_uses_fan_in_of_the_kernel():
    net = nets.convnet((4, 8, 8), channels=(256,), seed=1)
    w = net[0].weight
    assert abs(w.std().item() / math.sqrt(2 / (4 * 9)) - 1) < 0.03


def test_seeding_is_local_and_reproducible():
    state = torch.get_rng_state()
    a = nets.mlp([3, 8, 2], seed=7, bias_std=0.1)
    nets.convnet(seed=1)
    nets.resnet(seed=1, batchnorm=True)
    nets.densenet(seed=1)
    assert torch.equal(torch.get_rng_state(), state)   # the global generator is untouched
    b = nets.mlp([3, 8, 2], seed=7, bias_std=0.1)
    c = nets.mlp([3, 8, 2], seed=8, bias_std=0.1)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_dtype_and_train_mode():
    net = nets.mlp([3, 4, 1], batchnorm=True)
    assert all(p.dtype == F64 for p in net.parameters())
    assert net.training and net[1].training            # returned in train mode, like torch
    assert nets.spline_eval(net) is net
    assert not net.training and not net[1].training
    f32 = nets.convnet(dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in f32.parameters())


# --------------------------------------------------------------------------- conv nets


@pytest.mark.parametrize("pool", ["max", "avg", None])
def test_convnet_shapes(pool):
    net = nets.convnet((2, 9, 7), channels=(3, 5), n_out=4, pool=pool, batchnorm=True)
    assert net(_x((6, 2, 9, 7))).shape == (6, 4)
    kinds = {type(m) for m in net}
    assert (nn.MaxPool2d in kinds) == (pool == "max")
    assert (nn.AvgPool2d in kinds) == (pool == "avg")
    assert nn.BatchNorm2d in kinds
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in convs)


def test_convnet_maxout_and_bad_pool():
    net = nets.convnet(act="maxout", maxout_k=3)
    assert net[0].out_channels == 24 and net(_x((2, 1, 8, 8))).shape == (2, 10)
    with pytest.raises(ValueError, match="pool must be one of"):
        nets.convnet(pool="sum")
    with pytest.raises(ValueError, match="shrinks to 1x1"):
        nets.convnet((1, 2, 2), channels=(2, 2))
    with pytest.raises(ValueError, match="in_shape"):
        nets.convnet((8, 8))


def test_resnet_blocks():
    net = nets.resnet((2, 6, 6), width=5, blocks=3, n_out=3, batchnorm=True, act="leaky_relu")
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3
    assert [type(m) for m in blocks[0].body] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU,
                                                 nn.Conv2d, nn.BatchNorm2d]
    assert net(_x((4, 2, 6, 6))).shape == (4, 3)


def test_residual_block_computes_x_plus_body():
    body = nn.Sequential(nn.Linear(4, 4, dtype=F64), nn.ReLU())
    x = _x((3, 4))
    assert torch.equal(ResidualBlock(body)(x), x + body(x))
    with pytest.raises(ValueError, match=r"\(3, 4\) to \(3, 2\)"):
        ResidualBlock(nn.Linear(4, 2, dtype=F64))(x)


def test_densenet_concatenates():
    net = nets.densenet((1, 5, 5), growth=3, layers=4, width=2, n_out=2)
    dense = next(m for m in net if isinstance(m, DenseBlock))
    assert len(dense.layers) == 4
    assert [layer[0].in_channels for layer in dense.layers] == [2, 5, 8, 11]
    assert net[-1].in_features == 14 * 25
    x = _x((2, 2, 5, 5))
    h = dense(x)
    assert h.shape == (2, 14, 5, 5)
    assert torch.equal(h[:, :2], x)                           # the input is kept
    assert torch.equal(h[:, 2:5], dense.layers[0](x))         # then act(conv(h))


def test_dense_block_rejects_spatial_change():
    block = DenseBlock([nn.Conv2d(1, 2, 3, dtype=F64)])
    with pytest.raises(ValueError, match="spatial"):
        block(_x((1, 1, 5, 5)))

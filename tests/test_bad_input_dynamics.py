"""Bad input to dltheory.dynamics, dltheory.landscape and dltheory.nets never yields a number.

Every public function (and public method of a public class) has a :class:`Case`: one valid
call on tiny float64 data from seeded generators. ``test_refused`` spoils one argument at a
time (tensors: NaN, inf, empty, one axis fewer, int, float16, NumPy, list; networks: a NaN
weight; scalars: the values listed) and requires a library error naming that argument;
``test_pure`` requires that the valid call changes none of its arguments (values, gradients,
training flags, ``requires_grad``) nor torch's global random state. The regression tests
below pin the defects of issue 13 with its examples.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from badinput import Case, count_spoils, make_tests
from dltheory import dynamics, landscape, nets, validation
from dltheory.errors import DLTheoryError, InputError
from netutil import randn as _randn

F64 = torch.float64
NAN, INF = math.nan, math.inf


def _mlp(seed=0):
    """``[N, 3] -> [N, 2]``; layer 0 has ``P = 5 * 4 = 20`` parameters."""
    return nets.mlp([3, 5, 2], bias_std=0.1, seed=seed)


def _data(n=6):
    return _randn(n, 3, seed=1), _randn(n, 2, seed=2)


def _ls():
    """An underdetermined least-squares problem ``X [4, 6]``, ``y [4]``."""
    return _randn(4, 6, seed=3), _randn(4, seed=4)


def _quadratic(dense=True):
    X, Y = _data()
    return landscape.layer_quadratic(_mlp(), 0, X, Y, dense=dense)


@functools.cache
def _run():
    """A 3-step run of :func:`_mlp` (never modified: the cases only read it)."""
    X, Y = _data()
    return dynamics.train(_mlp(), X, Y, lr=0.1, steps=3, progress=False)


LR = [NAN, INF, 0.0, -0.1, True, "0.1"]
STEPS = [-1, 2.5, True, NAN, "3"]
LAYER = [2, -3, 1.5, "0", True]
SEED = [-1, 1.5, True, 2**64, NAN]
DTYPE = [torch.int64, "float64", torch.complex64]
BIAS_STD = [-1.0, NAN, INF, "0.1"]
IN_SHAPE = [(8, 8), (1, 0, 8), (1, 8.5, 8), None, "abc"]
SIZE = [0, -1, 2.5, True]
# t may be a number, a list or an array (documented): only non-finite and empty t are bad
T_OK = {"fewer_axes", "int", "half", "numpy", "list"}


def _not_scalar(w):
    return w * w


# ----------------------------------------------------------------------------- dynamics

DYNAMICS = [
    Case("dynamics.gd", dynamics.gd,
         lambda: dict(loss=lambda w: (w * w).sum(), w0=_randn(3), lr=0.1, steps=4,
                      progress=False),
         tensors=("w0",),
         scalars={"lr": [*LR, 1e300], "steps": [*STEPS, 10**15],
                  "loss": [_not_scalar, "sum", lambda w: 3.0], "progress": ["no"]}),
    Case("dynamics.least_squares_gd", dynamics.least_squares_gd,
         lambda: dict(X=_ls()[0], y=_ls()[1], lr=0.1, steps=5, w0=_randn(6, seed=5)),
         tensors=("X", "y", "w0"),
         scalars={"lr": [*LR, 1e300], "steps": [*STEPS, 10**15]}),
    Case("dynamics.least_squares_gd_final", dynamics.least_squares_gd_final,
         lambda: dict(X=_ls()[0], y=_ls()[1], W0=_randn(3, 6, seed=6), lr=0.1, steps=5,
                      progress=False),
         tensors=("X", "y", "W0"),
         scalars={"lr": [*LR, 1e300], "steps": STEPS, "progress": [0]}),
    Case("dynamics.least_squares_error_log_norms", dynamics.least_squares_error_log_norms,
         lambda: dict(X=_ls()[0], e0=_ls()[0].T @ _randn(4, seed=7), lr=0.1, steps=5,
                      progress=False),
         tensors=("X", "e0"),
         scalars={"lr": [*LR, 1e300], "steps": [*STEPS, 10**15], "progress": [None]}),
    Case("dynamics.train", dynamics.train,
         lambda: dict(net=_mlp(), X=_data()[0], Y=_data()[1], lr=0.1, steps=3,
                      progress=False),
         tensors=("X", "Y"), nets=("net",),
         scalars={"lr": [*LR, 1e300], "steps": [*STEPS, 10**15],
                  "loss": ["hinge", 3, lambda F, Y: F - Y], "reduction": ["max", None],
                  "weight_decay": [-0.1, NAN, INF, True], "keep_signals": ["yes"],
                  "progress": [1], "net": ["net", nn.Sequential()]}),
    # load writes step s into net by design; s = 0 holds net's own parameters, so the valid
    # call leaves it as it was. A NaN in net is legitimate: load overwrites it.
    Case("dynamics.NetTrajectory.load", lambda run, net, s: run.load(net, s),
         lambda: dict(run=_run(), net=_mlp(), s=0),
         scalars={"s": [4, -5, 1.5, True, NAN, "0"],
                  "net": ["net", nets.mlp([3, 4, 2]),
                          nets.mlp([3, 5, 2], dtype=torch.float32)]}),
    Case("dynamics.NetTrajectory.param_dict", lambda run, net, s: run.param_dict(net, s),
         lambda: dict(run=_run(), net=_mlp(), s=-1),
         scalars={"s": [4, -5, 1.5, True, NAN], "net": [None, nets.mlp([3, 4, 2])]}),
]

# ----------------------------------------------------------------------------- landscape

LANDSCAPE = [
    Case("landscape.layers", landscape.layers, lambda: dict(net=_mlp()), nets=("net",),
         scalars={"net": ["net"]}),
    Case("landscape.layer_params", landscape.layer_params,
         lambda: dict(net=_mlp(), layer=1), nets=("net",), scalars={"layer": LAYER}),
    Case("landscape.with_layer_params", landscape.with_layer_params,
         lambda: dict(net=_mlp(), layer=0, theta=_randn(20, seed=9)),
         tensors=("theta",), nets=("net",), scalars={"layer": LAYER}),
    Case("landscape.squared_loss", landscape.squared_loss,
         lambda: dict(f=_randn(5, 2, seed=1), Y=_randn(5, 2, seed=2), reduction="mean"),
         tensors=("f", "Y"), scalars={"reduction": ["max", 1]}),
    Case("landscape.layer_quadratic", landscape.layer_quadratic,
         lambda: dict(net=_mlp(), layer=0, X=_data()[0], Y=_data()[1]),
         tensors=("X", "Y"), nets=("net",),
         scalars={"layer": LAYER, "loss": ["ce", 3], "reduction": ["max"],
                  "dense": ["yes"], "strict": [1]}),
    Case("landscape.loss_along", landscape.loss_along,
         lambda: dict(net=_mlp(), layer=0, direction=_randn(20, seed=8), X=_data()[0],
                      Y=_data()[1], t=torch.tensor([0.0, 0.5, -1.0], dtype=F64)),
         tensors=("direction", "X", "Y", "t"), nets=("net",), allowed={"t": T_OK},
         scalars={"layer": LAYER, "loss": ["ce"], "reduction": [None], "strict": ["no"],
                  "t": [[], "t", [0.0, NAN]]}),
    Case("landscape.parameter_breakpoints", landscape.parameter_breakpoints,
         lambda: dict(net=_mlp(), layer=0, direction=_randn(20, seed=8), X=_data()[0],
                      t_min=-1.0, t_max=1.0),
         tensors=("direction", "X"), nets=("net",),
         scalars={"layer": LAYER, "t_max": [NAN, INF, -2.0, "1"], "t_min": [NAN, -INF, 2.0],
                  "tol": [-1.0, NAN, INF], "chunk": [0, -1, 1.5, True],
                  "return_flips": ["yes"]}),
]

QUADRATIC = [
    Case("landscape.Quadratic.value", lambda q, theta: q.value(theta),
         lambda: dict(q=_quadratic(), theta=_randn(20, seed=10)), tensors=("theta",),
         scalars={"theta": [_randn(21, seed=10)]}),
    Case("landscape.Quadratic.value(matrix-free)", lambda q, theta: q.value(theta),
         lambda: dict(q=_quadratic(dense=False), theta=_randn(20, seed=10)),
         tensors=("theta",), scalars={"theta": [_randn(2, 19, seed=10)]}),
    Case("landscape.Quadratic.along", lambda q, direction, t: q.along(direction, t),
         lambda: dict(q=_quadratic(), direction=_randn(20, seed=11),
                      t=torch.tensor([0.0, 0.3], dtype=F64)),
         tensors=("direction", "t"), allowed={"t": T_OK}, scalars={"t": [[], NAN, "t"]}),
    Case("landscape.Quadratic.hvp", lambda q, v: q.hvp(v),
         lambda: dict(q=_quadratic(), v=_randn(20, seed=12)), tensors=("v",),
         scalars={"v": [_randn(19, seed=12)]}),
    Case("landscape.Quadratic.eigvalsh", lambda q: q.eigvalsh(),
         lambda: dict(q=_quadratic())),
    Case("landscape.Quadratic.factor", lambda q: q.factor(), lambda: dict(q=_quadratic())),
    Case("landscape.Quadratic.gram_eigvalsh", lambda q: q.gram_eigvalsh(),
         lambda: dict(q=_quadratic(dense=False))),
    Case("landscape.Quadratic.trace", lambda q: q.trace(), lambda: dict(q=_quadratic())),
    Case("landscape.Quadratic.rank", lambda q, rtol: q.rank(rtol),
         lambda: dict(q=_quadratic(), rtol=1e-10),
         scalars={"rtol": [-1.0, NAN, INF, "1e-10", True]}),
    Case("landscape.Quadratic.condition_number",
         lambda q, on_range, rtol: q.condition_number(on_range=on_range, rtol=rtol),
         lambda: dict(q=_quadratic(dense=False), on_range=True, rtol=1e-10),
         scalars={"rtol": [-1.0, NAN, INF], "on_range": ["yes", None]}),
    Case("landscape.Quadratic.top_eigenvalue",
         lambda q, **kw: q.top_eigenvalue(**kw),
         lambda: dict(q=_quadratic(dense=False), steps=20, method="lanczos", tol=1e-12,
                      generator=None, reorthogonalize=True),
         scalars={"steps": [0, -1, 1.5, True], "method": ["qr", None],
                  "tol": [-1.0, NAN, INF], "generator": [3, "seed"],
                  "reorthogonalize": ["no"]}),
    Case("landscape.Quadratic.trace_hutchinson",
         lambda q, probes, generator: q.trace_hutchinson(probes, generator=generator),
         lambda: dict(q=_quadratic(dense=False), probes=4, generator=None),
         scalars={"probes": [0, -1, 2.5, True, NAN], "generator": [5]}),
]

# ----------------------------------------------------------------------------- nets

_COMMON = {"seed": SEED, "dtype": DTYPE, "bias_std": BIAS_STD, "maxout_k": [0, 1.5],
           "batchnorm": ["no", 1], "act": ["tanh", 3, lambda: 3]}

NETS = [
    Case("nets.mlp", nets.mlp, lambda: dict(widths=[3, 4, 2], act="relu", seed=1),
         scalars={"widths": [[3], [3, 0, 1], [3, -1, 1], [3, 2.5, 1], "34", None,
                             [3, 10**30, 1]], "bias": [1], **_COMMON}),
    Case("nets.convnet", nets.convnet,
         lambda: dict(in_shape=(1, 4, 4), channels=(2,), n_out=3, seed=1),
         scalars={"in_shape": IN_SHAPE, "channels": [(0,), (2.5,), 3, "ab", (10**30,)],
                  "n_out": SIZE, "pool": ["sum", 2], **_COMMON}),
    Case("nets.resnet", nets.resnet,
         lambda: dict(in_shape=(1, 4, 4), width=2, blocks=1, n_out=3, seed=1),
         scalars={"in_shape": IN_SHAPE, "width": SIZE, "blocks": [-1, 1.5, None],
                  "n_out": SIZE, **_COMMON}),
    Case("nets.densenet", nets.densenet,
         lambda: dict(in_shape=(1, 4, 4), growth=2, layers=2, width=2, n_out=3, seed=1),
         scalars={"in_shape": IN_SHAPE, "growth": SIZE, "layers": [-1, 1.5],
                  "width": SIZE, "n_out": SIZE, **_COMMON}),
    Case("nets.activation", nets.activation,
         lambda: dict(name="leaky_relu", negative_slope=0.2, k=2),
         scalars={"name": ["gelu", 3, None], "negative_slope": [NAN, INF, "0.1"],
                  "k": [0, -2, 1.5, True]}),
    Case("nets.Maxout", nets.Maxout, lambda: dict(k=3), scalars={"k": [0, -1, 1.5, True]}),
    # spline_eval sets eval mode by design: a net already in eval mode must stay as it is
    Case("nets.spline_eval", nets.spline_eval, lambda: dict(net=_mlp().eval()),
         nets=("net",), scalars={"net": ["net"]}),
]

CASES = DYNAMICS + LANDSCAPE + QUADRATIC + NETS
test_refused, test_pure = make_tests(CASES)


def test_every_case_spoils_something_or_is_argument_free():
    assert count_spoils(CASES) > 400
    for case in CASES:
        assert case.spoils() or not (case.tensors or case.nets or case.scalars), case.name


# ============================================================================ regressions


def _bn_net():
    net = nets.mlp([3, 5, 2], batchnorm=True, bias_std=0.1)      # train mode, as torch
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
    return net


def test_train_refuses_batch_norm_in_training_mode_and_leaves_its_statistics():
    net = _bn_net()
    X, Y = _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError, match=r"net has BatchNorm1d .* training mode.*net\.eval\(\)"):
        dynamics.train(net, X, Y, lr=0.1, steps=2, progress=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    run = dynamics.train(net.eval(), X, Y, lr=0.1, steps=2, progress=False)   # eval: fine
    assert torch.isfinite(run.loss).all()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_train_refuses_dropout_in_training_mode():
    mlp = _mlp()
    net = nn.Sequential(mlp[0], mlp[1], nn.Dropout(0.5), mlp[2])
    X, Y = _data()
    rng = torch.get_rng_state()
    with pytest.raises(InputError, match=r"Dropout .* training mode.*net\.eval\(\)"):
        dynamics.train(net, X, Y, lr=0.1, steps=2, progress=False)
    assert torch.equal(rng, torch.get_rng_state())
    plain = nn.Sequential(*[m for m in net if not isinstance(m, nn.Dropout)])
    a = dynamics.train(net.eval(), X, Y, lr=0.1, steps=2, progress=False)
    b = dynamics.train(plain, X, Y, lr=0.1, steps=2, progress=False)
    assert torch.equal(a.params, b.params)                  # eval-mode dropout is identity


def _inplace_pair():
    """The same network with an in-place and an out-of-place ReLU as its first module."""
    base = _mlp()
    return (nn.Sequential(nn.ReLU(inplace=True), *copy.deepcopy(base)),
            nn.Sequential(nn.ReLU(), *copy.deepcopy(base)))


def test_an_inplace_first_module_never_overwrites_the_callers_x():
    inplace, plain = _inplace_pair()
    X, Y = _data()
    X0 = X.clone()
    assert (X < 0).any()                     # an in-place ReLU would change X
    qa, qb = (landscape.layer_quadratic(n, 0, X, Y) for n in (inplace, plain))
    assert torch.equal(X, X0)
    assert torch.equal(qa.H, qb.H) and torch.equal(qa.g, qb.g) and torch.equal(qa.c, qb.c)
    d, t = _randn(20, seed=8), [0.0, 0.5, -1.0]
    la, lb = (landscape.loss_along(n, 0, d, X, Y, t) for n in (inplace, plain))
    assert torch.equal(X, X0) and torch.equal(la, lb)
    ra, rb = (dynamics.train(n, X, Y, lr=0.1, steps=3, progress=False)
              for n in (inplace, plain))
    assert torch.equal(X, X0)
    assert torch.equal(ra.params, rb.params) and torch.equal(ra.loss, rb.loss)
    ka, kb = (dynamics.train(n, X, Y, lr=0.1, steps=2, keep_signals=True, progress=False)
              for n in (inplace, plain))
    assert torch.equal(X, X0) and torch.equal(ka.params, kb.params)


def test_least_squares_bad_x_is_refused_naming_x():
    X, y = _ls()
    with pytest.raises(InputError, match=r"least_squares_gd_final: X contains NaN"):
        dynamics.least_squares_gd_final(X * NAN, y, _randn(2, 6), lr=0.1, steps=3)
    with pytest.raises(TypeError, match=r"least_squares_gd: X must be a real floating"):
        dynamics.least_squares_gd(X.round().long(), y, lr=0.1, steps=3)     # not "w0"
    with pytest.raises(TypeError, match=r"least_squares_gd: X must be a torch\.Tensor"):
        dynamics.least_squares_gd(X.numpy(), y, lr=0.1, steps=3)


def test_gd_refuses_a_loss_that_is_not_a_scalar():
    with pytest.raises(InputError, match=r"dynamics\.gd: loss must return a 0-d .*shape \(3,\)"):
        dynamics.gd(lambda w: w * w, _randn(3), lr=0.1, steps=2, progress=False)


def test_overflowing_runs_raise_divergence_naming_lr():
    X, y = _ls()
    for call in (lambda: dynamics.least_squares_gd(X, y, lr=1e300, steps=3),
                 lambda: dynamics.least_squares_gd_final(X, y, _randn(2, 6), lr=1e300,
                                                         steps=3, progress=False),
                 lambda: dynamics.gd(lambda w: (w * w).sum(), _randn(3), lr=1e300, steps=3,
                                     progress=False)):
        with pytest.raises(dynamics.DivergenceError, match=r"diverged.*lr=1e\+300"):
            call()
    assert issubclass(dynamics.DivergenceError, FloatingPointError)


def test_quadratic_rank_and_condition_number_refuse_a_negative_rtol():
    X, Y = _randn(2, 5, seed=1), _randn(2, 3, seed=2)
    q = landscape.layer_quadratic(nets.mlp([5, 4, 3], "leaky_relu", bias_std=0.1), 0, X, Y)
    assert q.n_params == 24
    lam = q.eigvalsh()
    true_rank = int((lam > 24 * torch.finfo(F64).eps * lam[-1]).sum())
    assert q.rank() == true_rank == 6                 # rank <= N k = 6
    for bad in (-1, NAN):
        with pytest.raises(InputError, match=r"Quadratic\.rank: rtol"):
            q.rank(rtol=bad)
        with pytest.raises(InputError, match=r"Quadratic\.condition_number: rtol"):
            q.condition_number(rtol=bad)
    assert float(q.condition_number()) >= 1


def test_quadratic_value_refuses_a_wrong_size_theta():
    q = _quadratic()
    with pytest.raises(InputError, match=r"Quadratic\.value: theta has shape \(5,\).*P = 20"):
        q.value(_randn(5))


def test_quadratic_spectra_default_to_the_profile_generator_not_the_global_one():
    q = _quadratic(dense=False)
    rng = torch.get_rng_state()
    top = q.top_eigenvalue(steps=5, tol=0.0)
    probes = q.trace_hutchinson(6)
    assert torch.equal(rng, torch.get_rng_state())
    assert torch.equal(top, q.top_eigenvalue(steps=5, tol=0.0,
                                             generator=validation.seeded_generator()))
    assert torch.equal(probes, q.trace_hutchinson(6, generator=validation.seeded_generator()))
    torch.manual_seed(123)                     # the global state does not matter
    assert torch.equal(top, q.top_eigenvalue(steps=5, tol=0.0))
    torch.set_rng_state(rng)


def test_breakpoints_chunk_and_empty_inputs_are_refused_clearly():
    net, (X, Y) = _mlp(), _data()
    d = _randn(20, seed=8)
    with pytest.raises(InputError, match=r"parameter_breakpoints: chunk must be an integer >= 1"):
        landscape.parameter_breakpoints(net, 0, d, X, chunk=0)
    with pytest.raises(InputError, match=r"layer_quadratic: X is empty"):
        landscape.layer_quadratic(net, 0, X[:0], Y[:0])
    with pytest.raises(InputError, match=r"dynamics\.train: X is empty"):
        dynamics.train(net, X[:0], Y[:0], lr=0.1, steps=1)


@pytest.mark.parametrize(("lr", "steps"), [(-0.1, 3), (NAN, 3), (0.0, 3), (INF, 3),
                                           (0.1, -1), (0.1, 2.0)])
def test_step_sizes_and_counts_are_refused_everywhere(lr, steps):
    X, y = _ls()
    net, (Xn, Yn) = _mlp(), _data()
    calls = [lambda: dynamics.gd(lambda w: (w * w).sum(), _randn(3), lr=lr, steps=steps),
             lambda: dynamics.least_squares_gd(X, y, lr=lr, steps=steps),
             lambda: dynamics.least_squares_gd_final(X, y, _randn(2, 6), lr=lr, steps=steps),
             lambda: dynamics.least_squares_error_log_norms(X, X.T @ _randn(4), lr=lr,
                                                            steps=steps),
             lambda: dynamics.train(net, Xn, Yn, lr=lr, steps=steps)]
    for call in calls:
        with pytest.raises(DLTheoryError, match=r"\b(lr|steps)\b"):
            call()


def test_t_as_a_list_or_array_gives_the_same_answer_as_the_tensor():
    net, (X, Y) = _mlp(), _data()
    d, t = _randn(20, seed=8), [0.0, 0.5, -1.0]
    ref = landscape.loss_along(net, 0, d, X, Y, torch.tensor(t, dtype=F64))
    assert torch.equal(ref, landscape.loss_along(net, 0, d, X, Y, t))
    assert torch.equal(ref, landscape.loss_along(net, 0, d, X, Y, np.array(t)))
    q = _quadratic()
    ref = q.along(d, torch.tensor(t, dtype=F64))
    assert torch.equal(ref, q.along(d, t)) and torch.equal(ref, q.along(d, np.array(t)))
    assert torch.equal(q.along(d, 0.5), ref[1])


def test_layer_out_of_range_is_an_index_error_and_a_library_error():
    with pytest.raises(IndexError, match=r"layer 5 is out of range") as info:
        landscape.layer_params(_mlp(), 5)
    assert isinstance(info.value, DLTheoryError)

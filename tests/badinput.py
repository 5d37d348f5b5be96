"""A harness for the bad-input tests: a public function, a valid call, and what to spoil.

A :class:`Case` names a public function and builds one valid call (fresh keyword arguments
each time). The tests spoil one argument at a time and require a library error
(:class:`dltheory.errors.DLTheoryError`) whose message names that argument:

- each tensor argument: a NaN or an inf at a drawn position, a 0-length axis, one axis too
  few, an integer dtype, float16, a NumPy array, a nested list;
- each network argument: a NaN in a drawn parameter;
- each scalar argument: the bad values the case lists (NaN, negative tolerances, zero
  counts, absurd sizes).

:func:`assert_pure` runs the valid call and requires that it changed nothing it was handed
(tensors, parameters, buffers, gradients, training flags) and left torch's global random
state where it was.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from dltheory.errors import DLTheoryError

TENSOR_SPOILS = ("nan", "inf", "empty", "fewer_axes", "int", "half", "numpy", "list")


@dataclass
class Case:
    """``call(**args())`` is a valid call of the public function ``name``."""

    name: str
    call: Callable
    args: Callable[[], dict]
    tensors: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()
    scalars: dict[str, list] = field(default_factory=dict)
    #: tensor spoils that are legitimate input for an argument (e.g. ``{"x": {"list"}}``
    #: where lists are documented as accepted).
    allowed: dict[str, set[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # short ids in pytest output
        return self.name

    def spoils(self) -> list[tuple[str, str]]:
        out = []
        for arg in self.tensors:
            out += [(arg, s) for s in TENSOR_SPOILS if s not in self.allowed.get(arg, set())]
        out += [(arg, "nan_weight") for arg in self.nets]
        for arg, values in self.scalars.items():
            out += [(arg, f"value:{i}") for i in range(len(values))]
        return out


def spoil_tensor(x: torch.Tensor, how: str, pick: float = 0.0):
    """``x`` spoiled ``how``; ``pick`` in [0, 1) chooses the entry of a NaN or inf."""
    if how in ("nan", "inf"):
        y = x.detach().clone()
        flat = y.reshape(-1)
        flat[int(pick * flat.numel()) % flat.numel()] = float(how)
        return y
    if how == "empty":
        return x.detach()[:0].clone()
    if how == "fewer_axes":
        return x.detach()[0].clone()
    if how == "int":
        return x.detach().round().to(torch.int64)
    if how == "half":
        return x.detach().to(torch.float16)
    if how == "numpy":
        return x.detach().cpu().numpy()
    if how == "list":
        return x.detach().cpu().tolist()
    raise ValueError(how)


def spoil_net(net: nn.Module, pick: float = 0.0) -> nn.Module:
    bad = copy.deepcopy(net)
    params = [p for p in bad.parameters() if p.is_floating_point()]
    p = params[int(pick * len(params)) % len(params)]
    with torch.no_grad():
        p.view(-1)[0] = float("nan")
    return bad


def spoiled_call(case: Case, arg: str, spoil: str, pick: float = 0.0) -> dict:
    kwargs = case.args()
    if spoil == "nan_weight":
        kwargs[arg] = spoil_net(kwargs[arg], pick)
    elif spoil.startswith("value:"):
        kwargs[arg] = case.scalars[arg][int(spoil.split(":")[1])]
    else:
        kwargs[arg] = spoil_tensor(kwargs[arg], spoil, pick)
    return kwargs


def assert_refused(case: Case, arg: str, spoil: str, pick: float = 0.0) -> None:
    """The spoiled call raises a library error that names ``arg``."""
    kwargs = spoiled_call(case, arg, spoil, pick)
    with pytest.raises(DLTheoryError) as info:
        case.call(**kwargs)
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(arg)}\b", msg), (
        f"{case.name} with {arg} spoiled ({spoil}) raised without naming {arg!r}: {msg}")


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().clone(), value.requires_grad)
    if isinstance(value, np.ndarray):
        return ("array", value.copy())
    if isinstance(value, nn.Module):
        state = {k: v.detach().clone() for k, v in value.state_dict(keep_vars=True).items()}
        grads = {n: None if p.grad is None else p.grad.clone()
                 for n, p in value.named_parameters()}
        modes = {n: m.training for n, m in value.named_modules()}
        flags = {n: p.requires_grad for n, p in value.named_parameters()}
        return ("module", state, grads, modes, flags)
    if isinstance(value, list | tuple):
        return ("seq", [_snapshot(v) for v in value])
    return ("other", None)


def _same(before, value) -> bool:
    kind = before[0]
    if kind == "tensor":
        return (torch.equal(before[1], value.detach()) and before[2] == value.requires_grad)
    if kind == "array":
        return np.array_equal(before[1], value)
    if kind == "module":
        _, state, grads, modes, flags = before
        now = {k: v.detach() for k, v in value.state_dict(keep_vars=True).items()}
        if state.keys() != now.keys() or not all(torch.equal(state[k], now[k]) for k in now):
            return False
        for n, p in value.named_parameters():
            g = grads[n]
            if (g is None) != (p.grad is None) or (g is not None and not torch.equal(g, p.grad)):
                return False
        return (modes == {n: m.training for n, m in value.named_modules()}
                and flags == {n: p.requires_grad for n, p in value.named_parameters()})
    if kind == "seq":
        return all(_same(b, v) for b, v in zip(before[1], value, strict=True))
    return True


def assert_pure(case: Case) -> None:
    """The valid call modifies none of its arguments and not torch's global RNG state."""
    kwargs = case.args()
    before = {k: _snapshot(v) for k, v in kwargs.items()}
    rng = torch.get_rng_state()
    case.call(**kwargs)
    changed = [k for k, v in kwargs.items() if not _same(before[k], v)]
    assert not changed, f"{case.name} modified its argument(s) {changed}"
    assert torch.equal(rng, torch.get_rng_state()), (
        f"{case.name} drew from (or reseeded) torch's global random generator")


RANDOM_SPOILS = ("nan", "inf", "nan_weight")


def make_tests(cases: list[Case], *, examples: int = 4):
    """The two tests of a list of cases: every spoil refused (a NaN or inf at ``examples``
    drawn positions), and every valid call pure. Assign them at module level::

        test_refused, test_pure = make_tests(CASES)
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    params = [pytest.param(c, a, s, id=f"{c.name}-{a}-{s}") for c in cases
              for a, s in c.spoils()]

    @pytest.mark.parametrize(("case", "arg", "spoil"), params)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def test_refused(case, arg, spoil, data):
        pick = data.draw(st.floats(0, 1, exclude_max=True)) if spoil in RANDOM_SPOILS else 0.0
        assert_refused(case, arg, spoil, pick)

    @pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in cases])
    def test_pure(case):
        assert_pure(case)

    return test_refused, test_pure


def count_spoils(cases: list[Case]) -> int:
    """How many (function, argument, spoil) combinations the cases try."""
    return sum(len(c.spoils()) for c in cases)

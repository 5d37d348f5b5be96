"""The validation layer (dltheory.validation, dltheory.errors) and the library-wide rules it
serves: one error hierarchy, every public function covered by a bad-input case, and no
draw from a global random generator anywhere in the library."""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dltheory import validation as v
from dltheory.errors import DLTheoryError, InputError, InputTypeError

LIB = Path(__file__).resolve().parents[1] / "lib" / "dltheory"

#: The modules whose public functions take user input and are held to issue 13's rule.
CHECKED = ("cpa", "regions", "kernels", "infinite", "dynamics", "landscape", "nets",
           "spectra", "perturbation", "data", "stats", "diagonal",
           "batchnorm", "factorization", "flow", "threads")
#: The test files that hold their bad-input cases.
CASE_FILES = ("test_bad_input_cpa_regions", "test_bad_input_kernels",
              "test_bad_input_dynamics", "test_bad_input_spectra_data", "test_diagonal",
              "test_batch_norm", "test_factorization", "test_flow", "test_threads")


# ------------------------------------------------------------------------------- hierarchy


def test_errors_are_one_hierarchy_and_keep_the_builtin_bases():
    assert issubclass(InputError, DLTheoryError) and issubclass(InputError, ValueError)
    assert issubclass(InputTypeError, DLTheoryError) and issubclass(InputTypeError, TypeError)
    from dltheory import cpa, infinite, kernels, ledger, profile, regions
    for err in (cpa.NotCPAError, regions.RegionError, infinite.InfiniteWidthError,
                kernels.NotStructuredError, kernels.NotPiecewiseLinearError,
                profile.ProfileError, ledger.LedgerError):
        assert issubclass(err, InputError), err


def _library_error_classes():
    for name in (*CHECKED, "claims", "profile", "ledger"):
        mod = importlib.import_module(f"dltheory.{name}")
        for obj in vars(mod).values():
            if (inspect.isclass(obj) and issubclass(obj, Exception)
                    and obj.__module__ == mod.__name__ and obj.__name__ != "ClaimFailure"
                    and not obj.__name__.startswith("_")):  # private ones never escape
                yield obj


def test_every_error_class_the_library_defines_is_a_dltheory_error():
    classes = list(_library_error_classes())
    assert classes, "found no error classes at all"
    assert all(issubclass(c, DLTheoryError) for c in classes), [
        c.__name__ for c in classes if not issubclass(c, DLTheoryError)]


# -------------------------------------------------------------------------------- checkers


@pytest.mark.parametrize(("bad", "err", "words"), [
    ([[1.0, 2.0]], InputTypeError, "convert with torch.as_tensor"),
    (torch.ones(2, 2, dtype=torch.int64), InputTypeError, "real floating"),
    (torch.ones(2, 2, dtype=torch.float16), InputTypeError, "too few digits"),
    (torch.ones(0, 2), InputError, "is empty"),
    (torch.ones(2), InputError, "at least 2 axes"),
    (torch.tensor([[1.0, math.inf]]), InputError, r"first inf at index \(0, 1\)"),
    (torch.empty(2, 2, device="meta"), InputTypeError, "meta"),
])
def test_tensor_refuses_and_names_function_argument_and_fix(bad, err, words):
    with pytest.raises(err, match=rf"^mod\.fn: X .*{words}"):
        v.tensor(bad, "X", fn="mod.fn", min_ndim=2)


def test_tensor_returns_the_callers_tensor_itself():
    x = torch.ones(3, 2)
    assert v.tensor(x, "x", min_ndim=2) is x
    a = np.ones((3, 2))
    assert torch.equal(v.tensor(a, "x", numpy_ok=True), torch.ones(3, 2, dtype=torch.float64))


@pytest.mark.parametrize(("value", "kw", "err"), [
    (math.nan, {}, InputError), (math.inf, {}, InputError), (-1.0, {"lo": 0}, InputError),
    (0.0, {"lo": 0, "lo_open": True}, InputError), (True, {}, InputTypeError),
    ("1", {}, InputTypeError), (10**400, {}, InputError), (2.0, {"hi": 1}, InputError),
])
def test_real_refuses(value, kw, err):
    with pytest.raises(err, match="tol"):
        v.real(value, "tol", **kw)


@pytest.mark.parametrize(("value", "err"), [(0, InputError), (1.0, InputTypeError),
                                            (True, InputTypeError), (-3, InputError)])
def test_integer_refuses(value, err):
    with pytest.raises(err, match="steps"):
        v.integer(value, "steps", lo=1)


def test_network_refuses_nan_weights_and_training_mode_batch_norm_and_dropout():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.1))
    with pytest.raises(InputError, match=r"BatchNorm1d at '1' in training mode.*net.eval"):
        v.network(net, fn="f")
    net.eval()
    assert v.network(net) is net
    with torch.no_grad():
        net[0].weight[1, 0] = math.nan
    with pytest.raises(InputError, match=r"NaN or inf in '0.weight'"):
        v.network(net)


def test_private_copy_protects_the_callers_tensor_from_inplace_modules():
    x = torch.tensor([[-1.0, 2.0]])
    nn.ReLU(inplace=True)(v.private_copy(x))
    assert torch.equal(x, torch.tensor([[-1.0, 2.0]]))


def test_seeded_generator_leaves_the_global_state_alone_and_repeats():
    state = torch.get_rng_state()
    a = torch.randn(4, generator=v.seeded_generator())
    b = torch.randn(4, generator=v.seeded_generator())
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    with pytest.raises(InputTypeError, match="generator"):
        v.generator(0)


# ---------------------------------------------------------------------------- library rules

_RANDOM_CALLS = {"randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial",
                 "normal_", "uniform_", "bernoulli_", "random_", "exponential_", "randn_like",
                 "rand_like", "randint_like", "poisson"}


def _global_draws(path: Path) -> list[str]:
    """Calls in ``path`` that draw from a global generator: torch's random functions without
    ``generator=``, and NumPy's legacy ``np.random.*`` functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        base = ast.unparse(node.func.value)
        if base in ("np.random", "numpy.random") and name not in (
                "default_rng", "Generator", "SeedSequence", "PCG64"):
            found.append(f"{path.name}:{node.lineno} {base}.{name}")
        elif name in _RANDOM_CALLS and not any(k.arg == "generator" for k in node.keywords):
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    return found


def test_the_library_never_draws_from_a_global_generator():
    # profile.seed seeds the global generators on purpose (for the chapters' own code).
    files = [p for p in sorted(LIB.glob("*.py")) if p.name != "profile.py"]
    found = [hit for p in files for hit in _global_draws(p)]
    assert not found, found


def test_the_scan_sees_a_global_draw():
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("import torch\nx = torch.randn(3)\ny = torch.randn(3, generator=g)\n")
    assert _global_draws(Path(f.name)) == [f"{Path(f.name).name}:2 torch.randn"]


def _public_functions():
    for name in CHECKED:
        mod = importlib.import_module(f"dltheory.{name}")
        for fname, obj in vars(mod).items():
            if (inspect.isfunction(obj) and not fname.startswith("_")
                    and obj.__module__ == mod.__name__):
                yield f"{name}.{fname}"


def test_every_public_function_has_a_bad_input_case():
    names = set()
    for f in CASE_FILES:
        names |= {c.name.split("[")[0] for c in importlib.import_module(f).CASES}
    missing = sorted(set(_public_functions()) - names)
    assert not missing, f"public functions without a bad-input Case: {missing}"


def test_allocates_turns_running_out_of_memory_into_an_error_naming_the_sizes():
    @v.allocates("mod.make", "n and d")
    def make(n, d):
        return np.empty((n, d))

    with pytest.raises(InputError, match=r"^mod\.make: the sizes \(n and d\) need more memory"):
        make(10**9, 10**9)
    assert make(2, 3).shape == (2, 3)


@pytest.mark.parametrize("call", [
    lambda: __import__("dltheory.data").data.two_moons(10**12),
    lambda: __import__("dltheory.data").data.low_rank(10**7, 10**7, 3),
    lambda: __import__("dltheory.data").data.gaussian_mixture(10, d=10**12),
])
def test_data_sets_too_large_to_allocate_are_refused_by_name(call):
    with pytest.raises(InputError, match=r"the sizes \(.*\) need more memory"):
        call()

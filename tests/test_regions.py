"""Tests for dltheory.regions: exact activation regions on segments and on 2-D slices.

Closed forms first (a one-hidden-layer ReLU net is a line arrangement: kinks at ``-b_i/w_i``
in 1-D, faces ``1 + lines + crossings`` in a rectangle), then the invariants that every
exact partition must satisfy on every architecture: each piece has one code and one affine
map, the polygons tile the rectangle (areas, Euler's formula), sampling never finds more
regions than the exact count and finds them all when fine enough, decision-boundary points
are ties of the top two logits.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dltheory import cpa, data, nets, regions
from dltheory.errors import DLTheoryError, InputError

F64 = torch.float64
FAST = settings(max_examples=20, deadline=None)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def one_layer(W: torch.Tensor, b: torch.Tensor, a: torch.Tensor | None = None) -> nn.Sequential:
    """``x -> a . relu(W x + b)`` with hand-set float64 parameters (``W [H, d]``)."""
    H, d = W.shape
    net = nn.Sequential(nn.Linear(d, H), nn.ReLU(), nn.Linear(H, 1)).to(F64)
    with torch.no_grad():
        net[0].weight.copy_(W)
        net[0].bias.copy_(b)
        net[2].weight.copy_(torch.ones(1, H, dtype=F64) if a is None else a.reshape(1, H))
        net[2].bias.zero_()
    return net


def digit_frame():
    """Three digits of scikit-learn's set, ``[1, 8, 8]`` each, as a plane: origin x0 and
    directions x1 - x0, x2 - x0 (so that (0, 0), (1, 0), (0, 1) are the three digits)."""
    X, _ = data.digits(flatten=False)
    return X[0], X[1] - X[0], X[2] - X[0]


# ============================================================== closed forms (hand-built)


def test_segment_breakpoints_of_a_one_layer_net_are_minus_b_over_w():
    W = _t(1.0, -2.0, 0.5, 3.0).reshape(4, 1)
    b = _t(0.3, 0.4, -0.6, 2.5)
    net = one_layer(W, b)
    x0, x1 = _t(-1.0), _t(2.0)
    seg = regions.on_segment(net, x0, x1)
    kinks = (-b / W[:, 0]).sort().values                 # -0.8333, -0.3, 0.2, 1.2
    expected = torch.cat([_t(0.0), (kinks + 1.0) / 3.0, _t(1.0)])
    assert seg.n_regions == 5
    torch.testing.assert_close(seg.t, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(seg.dt.sum(), _t(1.0)[0], rtol=0, atol=1e-15)
    torch.testing.assert_close(seg.lengths, seg.dt * 3.0, rtol=1e-15, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_finds_every_kink_of_a_random_one_layer_net(seed):
    H = 40
    W, b = _randn(H, 1, seed=seed), _randn(H, seed=seed + 100)
    net = one_layer(W, b, a=_randn(H, seed=seed + 200))
    kinks = -b / W[:, 0]
    inside = kinks[(kinks > -2) & (kinks < 2)].sort().values
    seg = regions.on_segment(net, _t(-2.0), _t(2.0))
    expected = torch.cat([_t(0.0), (inside + 2.0) / 4.0, _t(1.0)])
    assert seg.n_regions == inside.numel() + 1
    torch.testing.assert_close(seg.t, expected, rtol=0, atol=1e-13)


def _arrangement_faces(W: torch.Tensor, b: torch.Tensor, lim: float) -> int:
    """Faces of the arrangement of lines ``W x + b = 0`` inside ``[-lim, lim]^2`` (lines in
    general position): 1 + number of lines crossing the square + number of crossings in it."""
    corners = _t(-lim, -lim, lim, -lim, lim, lim, -lim, lim).reshape(4, 2)
    vals = corners @ W.T + b                                           # [4, H]
    crossing = ((vals > 0).any(0) & (vals < 0).any(0)).sum().item()
    inside = 0
    H = W.shape[0]
    for i in range(H):
        for j in range(i + 1, H):
            M = torch.stack([W[i], W[j]])
            p = torch.linalg.solve(M, -torch.stack([b[i], b[j]]))
            inside += bool((p.abs() < lim).all())
    return 1 + crossing + inside


@pytest.mark.parametrize("seed", [0, 1])
def test_plane_of_a_one_layer_net_is_the_line_arrangement(seed):
    H = 12
    W, b = _randn(H, 2, seed=seed), 0.5 * _randn(H, seed=seed + 10)
    net = one_layer(W, b)
    o, u, v = _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0)
    pl = regions.on_plane(net, o, u, v, bounds=(-1.0, 1.0, -1.0, 1.0))
    assert pl.n_regions == _arrangement_faces(W, b, 1.0)
    # every vertex lies on the square's boundary or on one of the lines
    V = torch.cat(pl.polygons)
    on_line = ((V @ W.T + b).abs() <= 1e-12).any(1)
    on_edge = ((V.abs() - 1.0).abs() <= 1e-15).any(1)
    assert bool((on_line | on_edge).all())
    assert pl.euler_characteristic() == 1


def test_identical_max_candidates_make_one_cell():
    """maxout(x1, x1, -x1 + 0.2 x2, x2): candidates 0 and 1 tie everywhere; the cells are
    those of the three distinct lines (the tie goes to the first, as in argmax)."""
    lin = nn.Linear(2, 4).to(F64)
    with torch.no_grad():
        lin.weight.copy_(_t(1.0, 0.0, 1.0, 0.0, -1.0, 0.2, 0.0, 1.0).reshape(4, 2))
        lin.bias.copy_(_t(0.0, 0.0, 0.1, -0.2))
    net = nn.Sequential(lin, nets.Maxout(4), nn.Linear(1, 1).to(F64))
    pl = regions.on_plane(net, _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0), (-1, 1, -1, 1))
    assert pl.n_regions == 3                             # winners x1, -x1 + .2 x2 + .1, x2 - .2
    assert abs(float(pl.area().sum()) - 4.0) <= 4e-12
    assert pl.euler_characteristic() == 1
    assert sorted(pl.codes[0][:, 0].tolist()) == [0, 2, 3]
    seg = regions.on_segment(net, _t(-1.0, -1.0), _t(1.0, 1.0))
    assert seg.n_regions == regions.sample_segment(net, _t(-1.0, -1.0), _t(1.0, 1.0), 10_000)


def test_a_linear_network_is_one_region():
    net = nn.Sequential(nn.Linear(2, 3)).to(F64)
    seg = regions.on_segment(net, _t(0.0, 0.0), _t(1.0, 2.0))
    assert seg.n_regions == 1 and seg.t.tolist() == [0.0, 1.0]
    pl = regions.on_plane(net, _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0))
    assert pl.n_regions == 1 and pl.euler_characteristic() == 1
    assert float(pl.area().sum()) == 1.0


# ======================================================= invariants on every architecture


def _mlp(act: str, seed: int = 0, widths=(2, 12, 12, 3)) -> nn.Module:
    return nets.mlp(list(widths), act=act, seed=seed, bias_std=0.5)


NETS_2D = {
    "relu": lambda: _mlp("relu"),
    "leaky_relu": lambda: _mlp("leaky_relu"),
    "abs": lambda: _mlp("abs"),
    "maxout": lambda: _mlp("maxout"),
}
NETS_IMG = {
    "convnet": lambda: nets.convnet(channels=(2, 4), seed=0, bias_std=0.1),
    "resnet": lambda: nets.resnet(width=2, blocks=1, seed=0, bias_std=0.1),
}


def _frame(name: str):
    if name in NETS_2D:
        return NETS_2D[name](), (_t(-0.2, 0.1), _t(1.0, 0.2), _t(-0.1, 1.0)), (-2, 2, -2, 2)
    return NETS_IMG[name](), digit_frame(), (0.0, 1.0, 0.0, 1.0)


ALL = [*NETS_2D, *NETS_IMG]


def _interior(P: torch.Tensor, n: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` random interior points of each polygon (Dirichlet weights of its vertices):
    ``[R, k, 2]``."""
    g = torch.Generator().manual_seed(seed)
    V = P.shape[1]
    w = -torch.log(torch.rand(P.shape[0], k, V, generator=g, dtype=F64))
    w = w * (torch.arange(V)[None, None] < n[:, None, None])
    w = w / w.sum(-1, keepdim=True)
    return w @ P


@pytest.fixture(scope="module", params=ALL)
def plane(request):
    net, (o, u, v), bounds = _frame(request.param)
    return regions.on_plane(net, o, u, v, bounds=bounds)


def test_polygons_tile_the_rectangle(plane):
    smin, smax, tmin, tmax = plane.bounds
    rect = (smax - smin) * (tmax - tmin)
    area = plane.area()
    assert bool((area > 0).all()), "every polygon is counter-clockwise with positive area"
    assert abs(float(area.sum()) - rect) <= 1e-12 * rect
    assert plane.n_regions > 20
    # all vertices inside the rectangle
    V = torch.cat(plane.polygons)
    assert float(V[:, 0].min()) >= smin and float(V[:, 0].max()) <= smax
    assert float(V[:, 1].min()) >= tmin and float(V[:, 1].max()) <= tmax


def test_euler_formula(plane):
    V, E, F = plane.graph()
    assert F == plane.n_regions
    assert V - E + F == 1 == plane.euler_characteristic()


def _strips(xs, *, jitter: float = 0.0, seed: int = 0) -> regions.Plane:
    """The unit square cut by vertical lines at ``xs`` into strips, as a Plane; each strip's
    copy of a shared vertex moved by up to ``jitter`` (as polygons computed separately are)."""
    edges = [0.0, *xs, 1.0]
    P = torch.tensor([[[a, 0.0], [b, 0.0], [b, 1.0], [a, 1.0]]
                      for a, b in zip(edges[:-1], edges[1:], strict=True)], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    P = P + jitter * (2 * torch.rand(P.shape, generator=gen, dtype=torch.float64) - 1)
    n = torch.full((P.shape[0],), 4)
    z = torch.zeros(2, dtype=torch.float64)
    return regions.Plane(nn.Identity(), z, torch.tensor([1.0, 0.0], dtype=torch.float64),
                         torch.tensor([0.0, 1.0], dtype=torch.float64), (0.0, 1.0, 0.0, 1.0),
                         P, n)


def test_vertex_merge_reads_its_tolerance_off_the_gap():
    # A sliver 1e-11 wide (below any fixed 1e-10 tolerance) next to copies that disagree by
    # up to 1e-14: V - E + F is 1 only if the copies merge and the sliver's corners do not.
    pl = _strips([0.5, 0.5 + 1e-11], jitter=1e-14)
    V, E, F = pl.graph()
    assert (V, E, F) == (8, 10, 3) and pl.euler_characteristic() == 1
    m = pl.vertices
    diam = math.sqrt(2)
    assert 0 < m.spread <= 2 * math.sqrt(2) * 1e-14 / diam          # the copies' jitter
    assert m.spread < m.tol < m.separation
    assert m.separation == pytest.approx(1e-11 / diam, rel=1e-2)    # the sliver's width
    # exact copies: nothing to read, everything above the rounding floor is distinct
    assert _strips([0.25, 0.5]).euler_characteristic() == 1
    # a fixed tolerance above the sliver's width would have merged its corners
    fixed = _strips([0.5, 0.5 + 1e-11])
    assert fixed.vertices.separation * math.sqrt(2) == pytest.approx(1e-11, rel=1e-3)


def test_vertex_merge_refuses_a_partition_without_a_gap():
    # strips whose widths fill every decade from 1e-14 to 1e-9: no scale separates copies
    # from distinct vertices, so no Euler characteristic is claimed
    xs, x = [], 0.3
    for w in torch.logspace(-14, -9, 16, dtype=torch.float64).tolist():
        x += w
        xs.append(x)
    with pytest.raises(regions.RegionError, match="cannot tell shared vertices"):
        _strips(xs).euler_characteristic()


def test_each_polygon_has_one_code(plane):
    pts = _interior(plane.P, plane.n, 3, seed=1)                   # [R, 3, 2]
    ref = plane.codes
    for j in range(pts.shape[1]):
        codes = cpa.codes(plane.net, plane.points(pts[:, j]))
        assert bool(cpa.same_code(codes, ref).all())


def test_each_polygon_has_one_affine_map(plane):
    A, b = plane.affine
    pts = torch.cat([plane.centroid()[:, None], _interior(plane.P, plane.n, 3, seed=2)], 1)
    for j in range(pts.shape[1]):
        x = plane.points(pts[:, j])
        with torch.no_grad():
            y = plane.net(x)
        pred = (A @ x.reshape(x.shape[0], -1, 1)).squeeze(-1) + b
        assert float((pred - y).abs().max()) <= 1e-10 * (1 + float(y.abs().max()))
    # the map in plane coordinates agrees with the input-space one
    G, c = plane.affine_st
    st_ = pts[:, 1]
    with torch.no_grad():
        y = plane.net(plane.points(st_))
    pred = (G @ st_[..., None]).squeeze(-1) + c
    assert float((pred - y).abs().max()) <= 1e-10 * (1 + float(y.abs().max()))


def test_sampling_never_finds_more_regions_than_exact(plane):
    found = regions.sample_plane(plane.net, plane.origin, plane.u, plane.v, plane.bounds,
                                 n=120)
    assert 0 < found <= plane.n_regions


def test_decision_boundary_points_are_ties_of_the_top_two(plane):
    bd = plane.decision_boundary()
    assert bd.segments.shape[0] > 0 and bd.length > 0
    lam = _t(0.0, 0.25, 0.5, 1.0)
    for t in lam:
        pts = bd.segments[:, 0] + t * (bd.segments[:, 1] - bd.segments[:, 0])
        with torch.no_grad():
            y = plane.net(plane.points(pts))
        top = y.topk(2, dim=1)
        scale = 1 + float(y.abs().max())
        assert float((top.values[:, 0] - top.values[:, 1]).abs().max()) <= 1e-9 * scale
        yi = y.gather(1, bd.pairs[:, :1])[:, 0]
        yj = y.gather(1, bd.pairs[:, 1:])[:, 0]
        assert float((yi - top.values[:, 0]).abs().max()) <= 1e-9 * scale
        assert float((yj - top.values[:, 0]).abs().max()) <= 1e-9 * scale


def test_decision_boundary_meets_exactly_the_polygons_whose_class_changes(plane):
    """A polygon contains boundary iff the (affine) argmax differs between its vertices."""
    G, c = plane.affine_st
    logits = (plane.P @ G.transpose(1, 2)) + c[:, None]                   # [R, V, C]
    valid = torch.arange(plane.P.shape[1])[None] < plane.n[:, None]
    top = logits.max(-1)
    # a vertex is "for class k" if k is within rounding of the max there
    near = logits >= top.values[..., None] - 1e-9 * (1 + logits.abs().amax((1, 2)))[:, None,
                                                                                  None]
    always = (near | ~valid[..., None]).all(1).any(-1)                    # one class wins all
    has = torch.zeros(plane.n_regions, dtype=torch.bool)
    has[plane.decision_boundary().polygon] = True
    assert torch.equal(has, ~always)


@settings(max_examples=25, deadline=None)
@given(act=st.sampled_from(["relu", "leaky_relu", "abs"]), depth=st.integers(1, 4),
       width=st.integers(3, 40), bias=st.booleans(), seed=st.integers(0, 10**6))
def test_plain_mlp_fast_path_equals_the_general_cuts(act, depth, width, bias, seed):
    # A plain MLP takes the fast path (roots forwarded from their own site on); wrapping it
    # in an Identity sends it through the general one (cpa.trace at every new point).
    net = nets.mlp([5, *[width] * depth, 3], act=act, bias=bias, seed=seed,
                   bias_std=0.3 if bias else 0.0)
    assert regions._plain_mlp(net, torch.zeros(5, dtype=torch.float64)) is not None
    general = nn.Sequential(nn.Identity(), net)
    assert regions._plain_mlp(general, torch.zeros(5, dtype=torch.float64)) is None
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(5, generator=gen, dtype=torch.float64)
    x1 = x0 + 4 * torch.randn(5, generator=gen, dtype=torch.float64)
    fast = regions.on_segment(net, x0, x1).t
    slow = regions.on_segment(general, x0, x1).t
    assert fast.numel() == slow.numel()
    assert float((fast - slow).abs().max()) <= 1e-12


PATHS = ["kinks", "products"]


@contextlib.contextmanager
def _fast_path(path: str):
    """The plain-MLP fast path's way to the next layer's pre-activations at new points:
    from the kinks of the current activations (regions._kink_values) or from the matrix
    products (its way below regions._KINK_WIDTH)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(regions, "_KINK_WIDTH", 0 if path == "kinks" else 10**9)
        yield


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=25, deadline=None)
@given(act=st.sampled_from(["relu", "leaky_relu", "abs"]), depth=st.integers(1, 4),
       width=st.integers(3, 48), length=st.sampled_from([1.0, 4.0, 16.0]),
       bias=st.booleans(), seed=st.integers(0, 10**6))
def test_both_fast_paths_equal_the_general_cuts(path, act, depth, width, length, bias, seed):
    # Long segments put many roots (more than a block of _kink_values) on one piece.
    net = nets.mlp([5, *[width] * depth, 3], act=act, bias=bias, seed=seed,
                   bias_std=0.3 if bias else 0.0)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(5, generator=gen, dtype=F64)
    x1 = x0 + length * torch.randn(5, generator=gen, dtype=F64)
    with _fast_path(path):
        fast = regions.on_segment(net, x0, x1).t
    slow = regions.on_segment(nn.Sequential(nn.Identity(), net), x0, x1).t
    assert fast.numel() == slow.numel()
    assert float((fast - slow).abs().max()) <= 1e-12


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "abs"])
def test_both_fast_paths_on_a_wide_net_equal_the_general_cuts(path, act):
    # width 320 (the kink path by default), a segment crossing ~600 regions
    net = nets.mlp([16, 320, 320, 320, 10], act=act, seed=3, bias_std=0.1)
    x0 = _randn(16, seed=4)
    x1 = x0 + 8 * _randn(16, seed=5)
    with _fast_path(path):
        fast = regions.on_segment(net, x0, x1)
    slow = regions.on_segment(nn.Sequential(nn.Identity(), net), x0, x1)
    assert fast.n_regions == slow.n_regions > 300
    assert float((fast.t - slow.t).abs().max()) <= 1e-12
    # every piece has one code, and adjacent pieces differ
    ta, tb = fast.t[:-1], fast.t[1:]
    for frac in (0.02, 0.98):
        codes = cpa.codes(net, fast.points(ta + frac * (tb - ta)))
        assert bool(cpa.same_code(codes, fast.codes).all())
    assert not bool(cpa.same_code([c[:-1] for c in fast.codes], [c[1:] for c in fast.codes])
                    .any())


def _first_layer_kinks(net: nn.Sequential, x0, x1, ts: torch.Tensor):
    """The sign changes of the first hidden layer's units between consecutive points ``ts``
    (a naive loop over pieces and units; the first layer is affine in ``t`` everywhere),
    sorted by piece and position: piece, unit, position f, size c."""
    z = net[0](x0 + ts[:, None] * (x1 - x0)).detach()
    act = net[1]    # the jump of the activation's slope at 0
    slope_jump = {nn.ReLU: 1.0, nn.LeakyReLU: 1.0 - getattr(act, "negative_slope", 0.0),
                  nets.Abs: 2.0}[type(act)]
    rows = []
    for q in range(ts.numel() - 1):
        for unit in range(z.shape[1]):
            a, b = float(z[q, unit]), float(z[q + 1, unit])
            if (a < 0) != (b < 0):
                rows.append((q, a / (a - b), unit, slope_jump * abs(b - a)))
    rows.sort()
    p = torch.tensor([r[0] for r in rows])
    f = torch.tensor([r[1] for r in rows], dtype=F64)
    u = torch.tensor([r[2] for r in rows])
    c = torch.tensor([r[3] for r in rows], dtype=F64)
    return p, u, f, c


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "abs"])
@pytest.mark.parametrize("n_points", [2, 7, 40])
@pytest.mark.parametrize("block", [4, 16])
def test_kink_values_equal_the_forward_pass(kind, n_points, block):
    # The second layer's pre-activations at the first layer's kinks, from the kinks
    # (Green's function of the piece, in blocks) against the network's forward pass there.
    # One piece (n_points = 2) holds all ~80 kinks (blocks chained); 40 points give small
    # pieces, some spanning two blocks.
    net = nets.mlp([6, 400, 50, 2], act=kind, seed=11, bias_std=0.2)
    x0 = _randn(6, seed=12)
    x1 = x0 + 10 * _randn(6, seed=13)
    ts = torch.cat([_t(0.0), torch.rand(n_points - 2, generator=torch.Generator()
                                        .manual_seed(14), dtype=F64).sort().values, _t(1.0)])
    p, u, f, c = _first_layer_kinks(net, x0, x1, ts)
    m = p.numel()
    assert m > 2 * block
    pad = -m % block                     # dummies: copies of the last kink, of size 0
    p, u, f = (torch.cat([t, t[-1:].expand(pad)]) for t in (p, u, f))
    c = torch.cat([c, c.new_zeros(pad)])
    second = net[2]
    vals = second(net[1](net[0](x0 + ts[:, None] * (x1 - x0)))).detach()
    z = regions._kink_values(second.weight.detach(), vals, p, u, f, c, block=block)
    assert z.shape == (m + pad, 50)
    t = ts[p] + f * (ts[p + 1] - ts[p])
    ref = second(net[1](net[0](x0 + t[:, None] * (x1 - x0)))).detach()
    scale = float(vals.abs().max())
    assert float((z - ref).abs().max()) <= 1e-12 * scale


@FAST
@given(n=st.integers(1, 30), units=st.integers(1, 70), seed=st.integers(0, 10**6))
def test_sign_changes_are_the_dense_comparison(n, units, seed):
    gen = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, units, generator=gen, dtype=F64)
    pre[torch.rand(n, units, generator=gen) < 0.1] = 0.0      # zero is >= 0 (active) ...
    pre[torch.rand(n, units, generator=gen) < 0.1] = -0.0     # ... and so is -0.0
    neg = pre < 0
    p_ref, u_ref = (neg[:-1] != neg[1:]).nonzero(as_tuple=True)
    p, u = regions._sign_changes(pre)
    assert torch.equal(p, p_ref) and torch.equal(u, u_ref)


def test_fast_path_is_only_for_plain_mlps():
    z = torch.zeros(4, dtype=torch.float64)
    assert regions._plain_mlp(nets.mlp([4, 8, 8, 2], act="maxout"), z) is None
    assert regions._plain_mlp(nets.mlp([4, 8, 8, 2], batchnorm=True).eval(), z) is None
    assert regions._plain_mlp(nn.Sequential(nn.Linear(4, 3).double(), nn.Tanh()), z) is None
    conv = nets.convnet((1, 6, 6), channels=(2,), n_out=2)
    assert regions._plain_mlp(conv, torch.zeros(1, 6, 6, dtype=torch.float64)) is None


@pytest.mark.parametrize("name", ALL)
def test_segment_pieces_have_one_code_and_sampling_agrees(name):
    net, (o, u, v), _ = _frame(name)
    x0, x1 = o, o + u + v
    seg = regions.on_segment(net, x0, x1)
    assert seg.n_regions > 3
    assert seg.t[0] == 0 and seg.t[-1] == 1 and bool((seg.dt > 0).all())
    ta, tb = seg.t[:-1], seg.t[1:]
    for f in (0.05, 0.5, 0.95):
        codes = cpa.codes(net, seg.points(ta + f * (tb - ta)))
        assert bool(cpa.same_code(codes, seg.codes).all())
    # adjacent pieces differ (no over-splitting)
    assert not bool(cpa.same_code([c[:-1] for c in seg.codes], [c[1:] for c in seg.codes])
                    .any())
    # dense sampling: never more, and all of them at a resolution finer than the shortest piece
    assert regions.sample_segment(net, x0, x1, 16) <= seg.n_regions
    fine = math.ceil(1.0 / float(seg.dt.min())) + 1
    assert regions.sample_segment(net, x0, x1, fine) == seg.n_regions
    # the piecewise affine maps reproduce the network
    A, b = seg.affine
    x = seg.points(ta + 0.3 * (tb - ta))
    with torch.no_grad():
        y = net(x)
    pred = (A @ x.reshape(x.shape[0], -1, 1)).squeeze(-1) + b
    assert float((pred - y).abs().max()) <= 1e-10 * (1 + float(y.abs().max()))
    slope, icpt = seg.affine_t()
    tm = seg.midpoints
    torch.testing.assert_close(slope * tm[:, None] + icpt, net(seg.points(tm)).detach(),
                               rtol=1e-10, atol=1e-10)


def test_small_budget_batches_give_the_same_partition():
    net, (o, u, v), bounds = _frame("relu")
    whole = regions.on_plane(net, o, u, v, bounds=bounds)
    parts = regions.on_plane(net, o, u, v, bounds=bounds, budget=2000)
    assert parts.n_regions == whole.n_regions
    torch.testing.assert_close(parts.area().sort().values, whole.area().sort().values,
                               rtol=1e-9, atol=1e-13)
    assert parts.euler_characteristic() == 1


def test_single_logit_boundary_is_logit_zero():
    net = nets.mlp([2, 10, 10, 1], seed=3, bias_std=0.5)
    pl = regions.on_plane(net, _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0), (-2, 2, -2, 2))
    bd = pl.decision_boundary()
    assert bd.segments.shape[0] > 0 and bool((bd.pairs == 0).all())
    mid = bd.segments.mean(1)
    with torch.no_grad():
        y = net(pl.points(mid))
    assert float(y.abs().max()) <= 1e-9 * (1 + float(pl.affine_st[1].abs().max()))


def test_nearest_boundary_along_is_the_nearest_kink():
    W = _t(1.0, -2.0, 0.5, 3.0).reshape(4, 1)
    b = _t(0.3, 0.4, -0.6, 2.5)
    net = one_layer(W, b)
    kinks = -b / W[:, 0]                                 # -0.8333, 0.2, 1.2, -0.3 (per unit)
    x = _t(0.05)
    d = regions.nearest_boundary_along(net, x, _t(1.0, -3.0).reshape(2, 1), radius=5.0)
    torch.testing.assert_close(d, torch.stack([(kinks[kinks > 0.05] - 0.05).min(),
                                               (0.05 - kinks[kinks < 0.05]).min()]),
                               rtol=0, atol=1e-13)
    far = regions.nearest_boundary_along(net, x, _t(1.0).reshape(1, 1), radius=0.1)
    assert far.tolist() == [math.inf]


# ============================================================================ property


@FAST
@given(seed=st.integers(0, 10_000), act=st.sampled_from(nets.ACTIVATIONS),
       width=st.integers(2, 10), depth=st.integers(1, 3), d_in=st.integers(1, 4))
def test_random_nets_sampling_never_exceeds_exact_count(seed, act, width, depth, d_in):
    net = nets.mlp([d_in, *[width] * depth, 2], act=act, seed=seed, bias_std=0.5)
    x0, x1 = _randn(d_in, seed=seed), _randn(d_in, seed=seed + 1)
    seg = regions.on_segment(net, x0, x1)
    found = regions.sample_segment(net, x0, x1, 300)
    assert found in range(1, seg.n_regions + 1)
    assert torch.equal(seg.t, seg.t.sort().values) and bool((seg.dt > 0).all())
    if d_in >= 2:
        u, v = _randn(d_in, seed=seed + 2), _randn(d_in, seed=seed + 3)
        pl = regions.on_plane(net, x0, u, v, bounds=(-1, 1, -1, 1))
        assert regions.sample_plane(net, x0, u, v, (-1, 1, -1, 1), n=40) <= pl.n_regions
        assert abs(float(pl.area().sum()) - 4.0) <= 4e-12


# ============================================================================== errors


def test_errors_name_the_problem():
    net = nets.mlp([2, 4, 1], seed=0, bias_std=0.5)
    o, u, v = _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0)
    with pytest.raises(regions.RegionError, match="does not fit the network's input"):
        regions.on_segment(net, _t(0.0, 0.0, 0.0), _t(1.0, 1.0, 1.0))
    with pytest.raises(regions.RegionError, match="without the batch dimension"):
        regions.on_segment(net, o[None], u[None])
    with pytest.raises(regions.RegionError, match="x1 has shape"):
        regions.on_segment(net, o, _t(1.0, 1.0, 1.0))
    with pytest.raises(regions.RegionError, match="zero length"):
        regions.on_segment(net, u, u.clone())
    with pytest.raises(InputError, match="x1 contains NaN or inf"):
        regions.on_segment(net, o, _t(math.nan, 1.0))
    with pytest.raises(InputError, match="origin contains NaN or inf"):
        regions.on_plane(net, _t(math.inf, 0.0), u, v)
    with pytest.raises(regions.RegionError, match="collinear"):
        regions.on_plane(net, o, u, 2.5 * u)
    with pytest.raises(regions.RegionError, match="v is zero"):
        regions.on_plane(net, o, u, 0 * v)
    for bad in [(1, 0, 0, 1), (0, 1, 1, 1), (0, 1, 0), (0, math.inf, 0, 1), "abcd"]:
        # RegionError for the rectangle, InputError / InputTypeError for a bound itself
        with pytest.raises(DLTheoryError, match="bounds"):
            regions.on_plane(net, o, u, v, bounds=bad)
    with pytest.raises(regions.RegionError, match="float64"):
        regions.on_segment(nets.mlp([2, 4, 1], dtype=torch.float32), o, u)
    with pytest.raises(regions.RegionError, match="directions must have shape"):
        regions.nearest_boundary_along(net, o, u)
    with pytest.raises(regions.RegionError, match="direction 1 is zero"):
        regions.nearest_boundary_along(net, o, torch.stack([u, 0 * u]))


def test_non_cpa_networks_are_refused():
    o, u, v = _t(0.0, 0.0), _t(1.0, 0.0), _t(0.0, 1.0)
    smooth = nets.mlp([2, 4, 1], act=nn.Tanh, seed=0)
    with pytest.raises(cpa.NotCPAError, match="Tanh"):
        regions.on_segment(smooth, o, u)
    with pytest.raises(cpa.NotCPAError, match="Tanh"):
        regions.on_plane(smooth, o, u, v)
    bn = nets.mlp([2, 4, 1], batchnorm=True, seed=0)           # train mode, as built
    with pytest.raises(cpa.NotCPAError, match="training mode"):
        regions.on_segment(bn, o, u)
    assert regions.on_segment(nets.spline_eval(bn), o, u).n_regions >= 1


def test_partitions_keep_the_network_they_cut():
    """Codes and affine maps are computed lazily; training the network afterwards must not
    change them (they describe the network that was cut)."""
    net = nets.spline_eval(nets.mlp([2, 8, 2], "relu", bias_std=0.1, seed=5))
    o = torch.zeros(2, dtype=torch.float64)
    u, v = torch.eye(2, dtype=torch.float64)
    pl = regions.on_plane(net, o, u, v, bounds=(-1, 1, -1, 1))
    seg = regions.on_segment(net, o - 1, o + 1)
    with torch.no_grad():
        before = net(pl.points(pl.centroid())).clone()
        for p in net.parameters():
            p.add_(1.0)
    A, b = pl.affine
    x = pl.points(pl.centroid())
    after = (A @ x[:, :, None]).squeeze(-1) + b
    assert torch.allclose(after, before, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(net(x), before)
    A_seg, b_seg = seg.affine
    xs = seg.points(seg.midpoints)
    frozen = (A_seg @ xs[:, :, None]).squeeze(-1) + b_seg
    assert torch.allclose(frozen, seg.net(xs), rtol=1e-12, atol=1e-12)
    assert seg.net is not net and pl.net is not net


def test_long_segment_benchmark_checks_the_fast_path_against_the_general_one(monkeypatch):
    from benchmarks import bench_regions
    from benchmarks.harness import run_check

    bench = bench_regions._segment_long("cpu", widths=[6, 40, 40, 3], length=6.0)
    assert bench.params["regions"] > 20 and bench.min_speedup >= 1.0
    assert run_check(bench) is None
    # a fast path that loses a breakpoint fails the check
    full = regions._mlp_breaks
    monkeypatch.setattr(regions, "_mlp_breaks",
                        lambda *a, **k: torch.cat([full(*a, **k)[:2], full(*a, **k)[3:]]))
    assert "regions" in run_check(bench)

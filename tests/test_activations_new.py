"""Parameterised and new activations (leaky_relu any slope, elu alpha, softplus beta, hardtanh, relu6,
gelu (erf and tanh forms), silu): values / derivatives against torch's autograd, sound derivative ranges,
loaders (torch, ONNX, npz), and every method either sound against the exact FGL or refusing."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from helpers import small_network
from lipopt.api import lower_bound, make_problem, upper_bound
from lipopt.domain import Ball, Box, interval_bounds, linear_bounds
from lipopt.errors import InvalidInputError, SolverFailure
from lipopt.exact.enumerate import dual_norm
from lipopt.methods.registry import METHODS, lower_methods, upper_methods
from lipopt.model import build_network, load
from lipopt.model.activations import (ACTIVATIONS, check_activation, derivative, make_activation, slope_range,
                                      value, value_range)
from lipopt.model.npz import save_npz
from lipopt.model.smooth import CRITICAL, MINIMUM, MINIMUM_AT
from lipopt.slopes import local_slopes

torch = pytest.importorskip("torch")
F = torch.nn.functional

NEW = ["leaky_relu:0.2", "leaky_relu:-0.5", "leaky_relu:2.5", "elu:0.5", "elu:2", "softplus:2", "hardtanh",
       "hardtanh:-2:0.5", "relu6", "gelu", "gelu_tanh", "silu"]


def _torch_fn(spec: str):
    act = check_activation(spec)
    p = act.params
    return {"leaky_relu": lambda x: F.leaky_relu(x, p[0]), "elu": lambda x: F.elu(x, p[0]),
            "softplus": lambda x: F.softplus(x, p[0]), "hardtanh": lambda x: F.hardtanh(x, p[0], p[1]),
            "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu}[act.name]


def _kinks(spec: str) -> list[float]:
    act = check_activation(spec)
    return list(act.params) if act.name == "hardtanh" else [CRITICAL[act.name], -CRITICAL[act.name],
                                                           MINIMUM_AT[act.name]] if act.name in CRITICAL else [0.0]


def _points(spec: str, rng) -> np.ndarray:
    near = np.concatenate([k + np.array([0.0, 1e-12, -1e-12, 1e-7, -1e-7, 1e-3, -1e-3]) for k in _kinks(spec)])
    return np.concatenate([rng.standard_normal(2000) * 4, rng.standard_normal(200) * 60, near,
                           [-700.0, -50.0, -30.0, 30.0, 50.0, 700.0]])


@pytest.mark.parametrize("spec", NEW)
def test_value_and_derivative_equal_torch(spec):
    act = check_activation(spec)
    z = _points(spec, np.random.default_rng(1))
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = _torch_fn(spec)(t)
    (g,) = torch.autograd.grad(y.sum(), t)
    # torch's softplus switches to z beyond beta z > 20 (lipopt keeps the smooth function): e^-20 / beta
    np.testing.assert_allclose(value(act, z), y.detach().numpy(), rtol=1e-13, atol=3e-9)
    np.testing.assert_allclose(derivative(act, z), g.numpy(), rtol=1e-12, atol=3e-9)


def test_specs_parameters_and_errors():
    assert make_activation("leakyrelu", negative_slope=0.2) == check_activation("leaky_relu:0.2")
    assert make_activation("gelu", approximate="tanh") == ACTIVATIONS["gelu_tanh"]
    assert check_activation("relu6") == make_activation("hardtanh", min_val=0, max_val=6)
    assert check_activation("leaky_relu") == check_activation("leaky_relu:0.01") == ACTIVATIONS["leaky_relu"]
    assert (check_activation("leaky_relu:2").slope_lo, check_activation("leaky_relu:2").slope_hi) == (1.0, 2.0)
    assert (check_activation("leaky_relu:-3").slope_lo, check_activation("leaky_relu:-3").slope_hi) == (-3.0, 1.0)
    for spec in NEW:
        assert check_activation(check_activation(spec).spec) == check_activation(spec)
    for bad in ["leaky_relu:abc", "leaky_relu:nan", "leaky_relu:inf", "hardtanh:1:-1", "hardtanh:-inf:inf",
                "elu:-1", "softplus:0", "gelu:1", "relu6:1", "hardtanh:1", "mish"]:
        with pytest.raises(InvalidInputError):
            check_activation(bad)
    with pytest.raises(InvalidInputError, match="approximate"):
        make_activation("gelu", approximate="fast")


def test_global_ranges():
    z = np.linspace(-30, 30, 600001)
    for name, (lo, hi) in {"gelu": (-0.128904145185, 1.128904145185), "silu": (-0.099839320129, 1.099839320129),
                           "gelu_tanh": (-0.128993068659, 1.128993068659)}.items():
        act = ACTIVATIONS[name]
        d = derivative(act, z)
        assert act.slope_lo <= d.min() and d.max() <= act.slope_hi
        assert abs(act.slope_lo - lo) < 1e-11 and abs(act.slope_hi - hi) < 1e-11
        assert act.slope_hi - d.max() < 1e-9 and d.min() - act.slope_lo < 1e-9
        assert abs(act.slope_lo + act.slope_hi - 1.0) < 1e-12   # sigma'(z) + sigma'(-z) = 1
        v = value(act, z)
        assert MINIMUM[name] <= v.min() < MINIMUM[name] + 1e-9
    for spec in NEW:
        act = check_activation(spec)
        slo, shi = slope_range(act, np.array([-1e308]), np.array([1e308]))
        assert (slo[0], shi[0]) == (act.slope_lo, act.slope_hi)


def test_curvature_sign_changes_once():
    """The critical points of gelu' / silu' / gelu_tanh' are the only sign changes of sigma'' for z > 0
    (and by symmetry z < 0): slope_range relies on sigma' being monotone between them."""
    from lipopt.model.smooth import curvature_sign
    z = np.linspace(1e-6, 800.0, 2_000_001)
    for name, c in CRITICAL.items():
        s = curvature_sign(name, z)
        changes = z[np.flatnonzero(np.diff(np.sign(s)) != 0)]
        assert changes.size == 1 and abs(changes[0] - c) < 1e-3


def _intervals(rng, spec, k):
    centres = np.concatenate([rng.standard_normal(k) * rng.choice([0.1, 1.0, 5.0, 40.0], k),
                              rng.choice(_kinks(spec), k) + rng.standard_normal(k) * 1e-3])
    widths = np.abs(rng.standard_normal(2 * k)) * rng.choice([0.0, 1e-12, 1e-6, 0.01, 0.5, 3.0, 30.0, 1e6], 2 * k)
    return centres - widths, centres + widths


@pytest.mark.parametrize("spec", NEW)
def test_slope_range_contains_dense_samples(spec):
    act = check_activation(spec)
    lo, hi = _intervals(np.random.default_rng(3), spec, 100)
    slo, shi = slope_range(act, lo, hi)
    t = np.linspace(0.0, 1.0, 501)  # 200 intervals x > 500 points: > 100k
    z = np.hstack([lo[:, None] + t[None, :] * (hi - lo)[:, None], hi[:, None]] +
                  [np.clip(k + e, lo, hi)[:, None] for k in _kinks(spec) for e in (0.0, 1e-9, -1e-9)])
    z = np.clip(z, lo[:, None], hi[:, None])  # lo + 1 * (hi - lo) may round past hi
    d = derivative(act, z)
    assert np.all(slo[:, None] <= d) and np.all(d <= shi[:, None])
    assert np.all(act.slope_lo <= slo) and np.all(shi <= act.slope_hi)
    # tight: the range is attained up to the margins (samples include the critical points / kinks)
    assert np.all(d.min(axis=1) - slo <= 1e-9) and np.all(shi - d.max(axis=1) <= 1e-9)
    vlo, vhi = value_range(act, lo, hi)
    v = value(act, z)
    assert np.all(vlo[:, None] <= v) and np.all(v <= vhi[:, None])


# ---------------------------------------------------------------------------------------------------
# loaders

MODULES = {
    "leaky": lambda: torch.nn.LeakyReLU(0.2), "leaky_neg": lambda: torch.nn.LeakyReLU(-0.3),
    "leaky_big": lambda: torch.nn.LeakyReLU(1.7), "hardtanh": lambda: torch.nn.Hardtanh(-0.5, 0.7),
    "relu6": torch.nn.ReLU6, "gelu": torch.nn.GELU, "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"),
    "silu": torch.nn.SiLU, "hardsigmoid": torch.nn.Hardsigmoid, "elu": lambda: torch.nn.ELU(0.5),
}


def _model(kind, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), MODULES[kind](), torch.nn.Linear(6, 5), MODULES[kind](),
                               torch.nn.Linear(5, 2)).double().eval()


def _same_function(net, model, atol):
    x = torch.tensor(np.random.default_rng(5).standard_normal((200, 4)) * 3, dtype=torch.float64,
                     requires_grad=True)
    y = model(x)
    np.testing.assert_allclose(net.forward(x.detach().numpy()), y.detach().numpy(), rtol=0, atol=atol)
    (g,) = torch.autograd.grad(y[:, 0].sum() - y[:, 1].sum(), x)
    np.testing.assert_allclose(net.gradient(x.detach().numpy(), np.array([1.0, -1.0])), g.numpy(), rtol=0,
                               atol=1e-6)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_torch_loader(kind):
    model = _model(kind)
    _same_function(load(model), model, 1e-12)
    traced = torch.fx.symbolic_trace(model)  # the fx path (a GraphModule is not an nn.Sequential)
    _same_function(load(traced), model, 1e-12)


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("kind", sorted(MODULES))
def test_onnx_loader(tmp_path, kind, opset):
    model = _model(kind).float()
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 4),), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    net = load(path)
    assert net.depth == 2
    _same_function(net, model.double(), 1e-5)  # float32 weights / constants in the file


def test_onnx_unmatched_pattern_names_the_op(tmp_path):
    from onnx import TensorProto, helper
    W = helper.make_tensor("W", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel())
    c = helper.make_tensor("c", TensorProto.FLOAT, [], [1.3])  # not sqrt(2): no GELU
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Div", ["h", "c"], ["a"]),
             helper.make_node("Erf", ["a"], ["e"]), helper.make_node("Mul", ["h", "e"], ["y0"]),
             helper.make_node("MatMul", ["y0", "W"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [W, c])
    path = tmp_path / "bad.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(InvalidInputError, match=r"\(Erf\)"):
        load(path)


def test_npz_activation_strings(tmp_path):
    base = small_network([3, 4, 4, 4, 4, 2], 0)
    specs = ["leaky_relu:0.2", "gelu", "hardtanh:-1:1", "relu6"]
    net = build_network(base.weights, base.biases, specs)
    path = tmp_path / "m.npz"
    save_npz(net, path)
    back = load(path)
    assert back.activations == net.activations
    x = np.random.default_rng(0).standard_normal((10, 3))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    with pytest.raises(InvalidInputError, match="leaky_relu"):
        build_network(base.weights, base.biases, ["leaky_relu:x"] + specs[1:])


# ---------------------------------------------------------------------------------------------------
# methods: sound against the exact FGL (itself checked by brute force over the vertices)

def _brute_fgl(net, c, slopes, norm) -> float:
    """max over every vertex of the derivative box of the dual norm of the gradient (the FGL: a norm of
    a multi-affine function of the slopes is convex in each, so its maximum is at a vertex)."""
    Ws = [W.toarray() for W in net.weights]
    free = [(l, j) for l in range(net.depth) for j in range(Ws[l].shape[0]) if slopes.lo[l][j] < slopes.hi[l][j]]
    best = 0.0
    for bits in itertools.product((0, 1), repeat=len(free)):
        s = [np.array(lo, dtype=float) for lo in slopes.lo]
        for (l, j), b in zip(free, bits):
            if b:
                s[l][j] = slopes.hi[l][j]
        v = c
        for l in range(net.depth, 0, -1):
            v = s[l - 1] * (Ws[l].T @ v)
        best = max(best, float(dual_norm(Ws[0].T @ v, norm)))
    return best


def _nets(count):
    specs = NEW + ["relu", "tanh", "leaky_relu"]
    for k in range(count):
        spec = specs[k % len(specs)]
        widths = [3, 3, 2] if k % 3 else [2, 3, 3, 1]
        base = small_network(widths, 100 + k, scale=1.5)
        net = build_network(base.weights, base.biases, [spec] * base.depth)
        c = np.zeros(widths[-1])
        c[0] = 1.0
        x0 = np.random.default_rng(k).uniform(-1, 1, widths[0])
        domain = None if k % 2 == 0 else Box(x0 - 0.3, x0 + 0.3) if k % 4 == 1 else Ball(x0, 0.3, "inf")
        yield spec, net, c, domain, ("inf", "2", "1")[k % 3]


def _check_methods(count, methods):
    checked, failures = 0, []
    for spec, net, c, domain, norm in _nets(count):
        exact = upper_bound(net, method="exact-fgl", c=c, domain=domain, lower=False, norm=norm)
        problem = make_problem(net, c, norm, domain, "linear", {})
        brute = _brute_fgl(net, c, problem.slopes, norm)
        # the true (local) constant is at least every gradient norm at points of the domain
        x = (np.random.default_rng(0).uniform(-3, 3, (4000, net.widths[0])) if domain is None else
             domain.sample(4000, np.random.default_rng(0)))
        sampled = float(dual_norm(net.gradient(x, c), norm).max())
        assert sampled <= brute * (1 + 1e-9) + 1e-12
        assert exact.upper_bound >= brute * (1 - 1e-12) and exact.upper_bound <= brute * (1 + 1e-9) + 1e-12, spec
        for name in methods:
            why = METHODS[name].capabilities.refuse(problem)
            if why is not None:
                with pytest.raises(InvalidInputError, match="Applicable here"):
                    upper_bound(net, method=name, c=c, domain=domain, lower=False, norm=norm)
                continue
            try:
                res = upper_bound(net, method=name, c=c, domain=domain, lower=False, time_limit=60, norm=norm)
            except SolverFailure:  # no number rather than a wrong one (l2-fast / l2-opt: negative slopes)
                failures.append((spec, name))
                continue
            # the MIP bounds the activation-consistent constant, which may lie below the FGL
            ref = sampled if name == "exact" else brute
            assert res.upper_bound >= ref * (1 - 1e-9) - 1e-12, (spec, name, domain, res.upper_bound, ref)
            checked += 1
        for name in lower_methods():
            low = lower_bound(net, method=name, c=c, domain=domain, samples=256, time_limit=5, norm=norm)
            assert low.lower_bound <= exact.upper_bound * (1 + 1e-9) + 1e-12, (spec, name)
    assert len(failures) <= checked // 10, failures
    return checked


FAST_METHODS = ["product", "lp", "exact", "interval", "lifted-lp", "compose"]


def test_methods_sound_or_refuse_fast():
    methods = [m for m in FAST_METHODS if m in upper_methods()]
    assert _check_methods(15, methods) > 0


@pytest.mark.slow
def test_methods_sound_or_refuse_all():
    methods = [m for m in upper_methods() if m not in ("auto",)]
    assert _check_methods(54, methods) > 0


@pytest.mark.parametrize("slope", [2.5, -0.5] + [pytest.param(a, marks=pytest.mark.slow) for a in (0.3, 1.7)])
def test_mip_any_leaky_slope_equals_region_enumeration(slope, monkeypatch):
    """The MIP with h = alpha z + (1 - alpha) relu(z) (rows flipped for alpha > 1, h's bounds for
    alpha < 0): every real point is feasible, and the bracket contains the maximum over the activation
    regions (test_exact_mip's enumeration, with this slope)."""
    import test_exact_mip as T
    from lipopt.exact.mip import build_mip, exact_lipschitz_mip, point_to_columns
    monkeypatch.setitem(T.ALPHA, "leaky_relu", slope)
    for widths, seed in [((2, 4, 1), 0), ((2, 4, 3, 1), 1), ((3, 4, 4, 1), 2)][:3 if slope in (0.3, 1.7) else 2]:
        base = small_network(widths, seed)
        net = build_network(base.weights, base.biases, [f"leaky_relu:{slope}"] * base.depth)
        lo, hi = -np.ones(widths[0]), np.ones(widths[0])
        c = np.ones(1)
        for norm in ("inf", "1"):
            model = build_mip(net, c, Box(lo, hi), norm)
            for x in Box(lo, hi).sample(50, np.random.default_rng(seed)):
                col = point_to_columns(model, net, c, x)
                act = model.A @ col
                scale = 1e-9 * (1 + abs(model.A) @ np.abs(col))
                assert np.all(act >= model.row_lo - scale) and np.all(act <= model.row_hi + scale)
                assert np.all(col >= model.lb) and np.all(col <= model.ub)
            ref, _ = T.enumerate_regions(net, c, lo, hi, norm)
            r = exact_lipschitz_mip(net, c, Box(lo, hi), norm)
            tol = 1e-9 * max(1.0, ref)
            assert r.lower - tol <= ref <= r.upper + tol, (slope, widths, norm, r.lower, ref, r.upper)
            assert r.upper - r.lower <= 1e-4 * max(1.0, ref)


def test_mip_refuses_non_leaky():
    base = small_network([3, 4, 2], 0)
    x0 = np.zeros(3)
    for spec, ok in [("leaky_relu:0.2", True), ("leaky_relu:1.5", True), ("leaky_relu:-0.2", True),
                     ("hardtanh", False), ("relu6", False), ("gelu", False)]:
        net = build_network(base.weights, base.biases, [spec])
        problem = make_problem(net, np.array([1.0, 0.0]), "inf", Box(x0 - 1, x0 + 1), "linear", {})
        assert (METHODS["exact"].capabilities.refuse(problem) is None) == ok, spec


@pytest.mark.parametrize("spec", NEW)
def test_preactivation_bounds_contain_samples(spec):
    base = small_network([3, 5, 5, 2], 7, scale=1.5)
    net = build_network(base.weights, base.biases, [spec] * 2)
    dom = Box(-np.ones(3), np.ones(3))
    x = np.random.default_rng(0).uniform(-1, 1, (4000, 3))
    _, zs = net.forward_with_preactivations(x)
    for bounds in (interval_bounds(net, dom), linear_bounds(net, dom)):
        for l, z in enumerate(zs):
            assert np.all(bounds.lo[l] <= z) and np.all(z <= bounds.hi[l])
    box = local_slopes(net, dom, "linear")
    g = [derivative(net.activations[l], z) for l, z in enumerate(zs)]
    for l in range(2):
        assert np.all(box.lo[l] <= g[l]) and np.all(g[l] <= box.hi[l])


def test_onnx_gelu_half_first_variant(tmp_path):
    """(0.5 x) (1 + erf(x / sqrt 2)) with the division written as a product: fused to one GELU."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(2)
    W1, W2 = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    inits = [helper.make_tensor("W1", TensorProto.FLOAT, [3, 4], W1.ravel()),
             helper.make_tensor("W2", TensorProto.FLOAT, [4, 2], W2.ravel()),
             helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
             helper.make_tensor("isq", TensorProto.FLOAT, [], [0.70710678]),
             helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Mul", ["h", "isq"], ["a"]),
             helper.make_node("Mul", ["half", "h"], ["hh"]), helper.make_node("Erf", ["a"], ["e"]),
             helper.make_node("Add", ["one", "e"], ["p"]), helper.make_node("Mul", ["p", "hh"], ["g"]),
             helper.make_node("MatMul", ["g", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    path = tmp_path / "gelu.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    net = load(path)
    assert [a.name for a in net.activations] == ["gelu"]
    x = rng.standard_normal((50, 3))
    h = x @ W1.astype(float)
    want = (0.5 * h * (1 + torch.erf(torch.tensor(h) / np.sqrt(2)).numpy())) @ W2.astype(float)
    np.testing.assert_allclose(net.forward(x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec,homogeneous", [("leaky_relu:2.5", True), ("leaky_relu:-0.4", True),
                                              ("hardtanh", False), ("relu6", False), ("gelu", False)])
def test_scaling_consistency(spec, homogeneous):
    """Exact power-of-two normalisation keeps f up to 2^-S only for homogeneous activations (any leaky
    slope); hardtanh / relu6 / gelu networks are never 'consistent'."""
    from lipopt.scaling import normalise
    base = small_network([3, 5, 4, 2], 4, scale=37.0)
    net = build_network(base.weights, base.biases, [spec] * 2)
    s = normalise(net, consistent=True)
    assert (s is not None) == homogeneous
    if s is not None:
        x = np.random.default_rng(0).standard_normal((100, 3))
        S = sum(s.exponents)
        np.testing.assert_array_equal(np.ldexp(s.net.forward(x), S), net.forward(x))



class _Residual(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.act = torch.nn.Linear(3, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 1), act

    def forward(self, x):
        h = self.act(self.fc1(x))
        return self.fc3(self.act(self.fc2(h)) + h)


@pytest.mark.parametrize("kind", ["leaky", "leaky_big", "hardtanh", "gelu", "silu"])
def test_graph_networks_carry_parameters(kind):
    """Residual models load as GraphNetworks with the parameterised activations (values and gradients
    equal torch's); the shared witness analysis certifies points; sampled lower <= graph product bound."""
    from lipopt.baselines.graph_lower import certain_graph_rows
    torch.manual_seed(3)
    model = _Residual(MODULES[kind]()).double().eval()
    g = load(model)
    assert g.activations[0] == load(torch.nn.Sequential(torch.nn.Linear(2, 2), MODULES[kind]())).activations[0]
    x = torch.tensor(np.random.default_rng(1).standard_normal((300, 3)), dtype=torch.float64, requires_grad=True)
    y = model(x)
    np.testing.assert_allclose(g.forward(x.detach().numpy()), y.detach().numpy(), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(g.gradient(x.detach().numpy(), np.ones(1)), grad.numpy(), rtol=0, atol=1e-12)
    assert certain_graph_rows(g, x.detach().numpy()).any()
    lo = lower_bound(g, method="sampling", samples=256, time_limit=5).lower_bound
    assert lo <= upper_bound(g, method="product", lower=False).upper_bound


@pytest.mark.parametrize("spec", ["leaky_relu:0.2", "hardtanh:-2:0.5", "elu:2", "gelu_tanh"])
def test_chain_graph_to_network_keeps_parameters(spec):
    from lipopt.model.conv import Activation as ActLayer
    from lipopt.model.graph import GraphBuilder
    rng = np.random.default_rng(0)
    b = GraphBuilder((3,))
    i = b.affine(0, rng.standard_normal((4, 3)), rng.standard_normal(4), (4,))
    i = b.layer(i, ActLayer("act", spec))
    i = b.affine(i, rng.standard_normal((1, 4)), np.zeros(1), (1,))
    net = b.finish(i).to_network()
    assert net.activations == (check_activation(spec),)


@pytest.mark.parametrize("opset,inputs,attrs,want", [
    (13, ["", "mx"], {}, "hardtanh:-inf:0.75"),      # only max, min input omitted: position matters
    (13, ["mn"], {}, "relu"),                        # only min = 0
    (13, ["mn2", "mx"], {}, "hardtanh:-0.5:0.75"),
    (6, [], {"min": -0.5, "max": 0.75}, "hardtanh:-0.5:0.75"),   # attributes before opset 11
    (6, [], {"max": 0.75}, "hardtanh:-inf:0.75"),
])
def test_onnx_clip(tmp_path, opset, inputs, attrs, want):
    from onnx import TensorProto, helper
    W = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]], dtype=np.float32)
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [2, 3], W.T.ravel()),
             helper.make_tensor("V", TensorProto.FLOAT, [3, 1], np.ones(3, np.float32)),
             helper.make_tensor("mn", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("mn2", TensorProto.FLOAT, [], [-0.5]),
             helper.make_tensor("mx", TensorProto.FLOAT, [], [0.75])]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Clip", ["h"] + inputs, ["c"], **attrs),
             helper.make_node("MatMul", ["c", "V"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], inits)
    path = tmp_path / "clip.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
    net = load(path)
    assert net.activations == (check_activation(want),)
    x = np.random.default_rng(0).standard_normal((100, 2))
    lo, hi = check_activation(want).params if want != "relu" else (0.0, np.inf)
    want_y = np.clip(x @ W.astype(float).T, lo, hi) @ np.ones((3, 1))  # the file's weight is W^T
    np.testing.assert_allclose(net.forward(x), want_y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", NEW)
def test_relaxation_lines_enclose(spec):
    """CROWN's lines aL z + bL <= sigma(z) <= aU z + bU on [lo, hi] (intercepts from all roots of sigma' = a)."""
    from lipopt.domain import relaxation
    act = check_activation(spec)
    lo, hi = _intervals(np.random.default_rng(11), spec, 150)
    aL, bL, aU, bU = relaxation(act, lo, hi)
    t = np.linspace(0.0, 1.0, 1001)
    z = np.hstack([lo[:, None] + t[None, :] * (hi - lo)[:, None], hi[:, None]] +
                  [np.clip(k, lo, hi)[:, None] for k in _kinks(spec)])
    z = np.clip(z, lo[:, None], hi[:, None])
    v = value(act, z)
    assert np.all(aL[:, None] * z + bL[:, None] <= v) and np.all(v <= aU[:, None] * z + bU[:, None])

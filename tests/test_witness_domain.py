"""Lower bounds only from witnesses provably inside the exact domain, with a certain activation pattern.

The exact domain is the set of reals defined by the stored floats (c +- r are exact reals, not
fl(c +- r)). Every check of a witness here is independent of lipopt's own checker: membership by
fractions.Fraction, the activation pattern by an exact Fraction forward pass.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import lipopt
from lipopt.baselines.ascent import ascent_lower_bound, local_lower_bound
from lipopt.baselines.patterns import realise_pattern
from lipopt.baselines.sampling import sampled_lower_bound
from lipopt.baselines.witness import best_witness, certain_rows
from lipopt.domain import Ball, Box
from lipopt.errors import InvalidInputError
from lipopt.exact.enumerate import dual_norm
from lipopt.exact.mip import exact_lipschitz_mip
from lipopt.model.activations import LEAKY_SLOPE
from lipopt.model.network import build_network

B = -3.3000000000000003   # 11 x + B < 0 on the exact ball [0.1 - 0.2, 0.1 + 0.2] (binary64 reals)


def kink_net():
    """f(x) = relu(11 x - 3.3000000000000003): 0 on the exact ball, slope 11 just beyond its end."""
    return build_network([[[11.0]], [[1.0]]], [[B], [0.0]])


def kink_ball():
    return Ball(center=[0.1], radius=0.2, p="inf")


# -------------------------------------------------------------------------------------------------
# Independent references


def frac_inside(dom, x, box=None, clip=None) -> bool:
    """Exact membership by Fractions. ``box``/``clip``: the raw arrays the domain was built from."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        return False
    X = [Fraction(float(v)) for v in x]
    n = len(X)
    if clip is not None:
        clo, chi = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in clip)
        if any(v < Fraction(float(a)) or v > Fraction(float(b)) for v, a, b in zip(X, clo, chi)):
            return False
    if box is not None:
        lo, hi = box
        return all(Fraction(float(a)) <= v <= Fraction(float(b)) for v, a, b in zip(X, lo, hi))
    C = [Fraction(float(v)) for v in dom.center]
    r = Fraction(dom.radius)
    if dom.p == "inf":
        return all(abs(v - c) <= r for v, c in zip(X, C))
    return sum((v - c) ** 2 for v, c in zip(X, C)) <= r * r


def frac_forward_signs(net, x):
    """Exact pre-activations (Fractions; leaky slope = the float LEAKY_SLOPE) of every hidden layer."""
    h = [Fraction(float(v)) for v in x]
    zs = []
    alpha = Fraction(LEAKY_SLOPE)
    for l in range(net.depth):
        W = net.weights[l].toarray()
        b = net.biases[l]
        z = [sum((Fraction(float(W[i, j])) * h[j] for j in range(len(h)) if W[i, j] != 0), Fraction(0))
             + Fraction(float(b[i])) for i in range(W.shape[0])]
        zs.append(z)
        act = net.activations[l].name
        h = [v if v > 0 else (Fraction(0) if act == "relu" else alpha * v) for v in z]
    return zs


def assert_valid_witness(net, c, norm, dom, value, x, box=None, clip=None):
    """x exactly in the domain; if value > 0: the exact pattern at x has no zero pre-activation and
    agrees with the float one, and value is the gradient norm of that pattern at x."""
    x = np.asarray(x, dtype=np.float64)
    if dom is not None:
        assert frac_inside(dom, x, box, clip), (x, dom)
        assert dom.contains_exact(x)
    assert value >= 0.0
    if value == 0.0:
        return
    exact = frac_forward_signs(net, x)
    _, zs = net.forward_with_preactivations(x[None, :])
    for ze, zf in zip(exact, zs):
        assert all(v != 0 for v in ze), "witness on a kink"
        assert [v > 0 for v in ze] == list(zf[0] > 0), "float pattern differs from the exact one"
    assert value == pytest.approx(float(dual_norm(net.gradient(x[None, :], c), norm)[0]), rel=1e-12)


# -------------------------------------------------------------------------------------------------
# The kink just outside the exact ball


def test_kink_outside_exact_ball_domain_facts():
    dom = kink_ball()
    lo, hi = dom.inner_box()
    # fl(0.1 + 0.2) = 0.30000000000000004 lies outside the exact ball, 0.3 inside
    assert not frac_inside(dom, [0.1 + 0.2]) and not dom.contains_exact([0.1 + 0.2])
    assert frac_inside(dom, hi) and not frac_inside(dom, np.nextafter(hi, np.inf))
    assert frac_inside(dom, lo) and not frac_inside(dom, np.nextafter(lo, -np.inf))
    assert hi[0] == 0.3
    # on the exact ball 11 x + B < 0: f is 0 there
    assert Fraction(11) * (Fraction(0.1) + Fraction(0.2)) + Fraction(B) < 0
    assert not certain_rows(kink_net(), np.array([[0.3]]))[0]       # float z = 0, exact z < 0
    assert certain_rows(kink_net(), np.array([[0.29], [0.31]])).all()


@pytest.mark.parametrize("method", ["sampling", "ascent"])
def test_kink_lower_bound_is_zero(method):
    r = lipopt.lower_bound(kink_net(), method=method, domain=kink_ball())
    assert r.lower_bound == 0.0
    assert frac_inside(kink_ball(), r.details["witness"])


def test_kink_exact_mip_does_not_claim_11():
    net, dom = kink_net(), kink_ball()
    r = lipopt.upper_bound(net, method="exact", domain=dom)
    lo, hi = r.details["bracket"]
    assert r.lower_bound == 0.0 and lo == 0.0
    assert r.status != "optimal"
    assert hi >= 0.0 and r.upper_bound >= 0.0
    assert frac_inside(dom, r.details["lower_bound_witness"])
    assert frac_inside(dom, r.details["witness_x"])
    m = exact_lipschitz_mip(net, np.ones(1), dom)
    assert m.lower == 0.0 and m.status == "open" and frac_inside(dom, m.x)


def test_kink_outside_box_and_clip():
    """The same kink with the ball given as a clip range, and as a Box: only exact floats count."""
    net = kink_net()
    hi = np.nextafter(0.3, np.inf)       # 0.30000000000000004: f has slope 11 there
    box = Box([0.0], [0.3])
    assert lipopt.lower_bound(net, domain=box).lower_bound == 0.0
    assert not Box([0.0], [0.3]).contains_exact([hi]) and Box([0.0], [hi]).contains_exact([hi])
    assert lipopt.lower_bound(net, domain=Box([0.0], [0.5])).lower_bound == 11.0
    clipped = Ball([0.2], 1.0, "inf", clip=(0.0, 0.3))
    r = lipopt.lower_bound(net, method="ascent", domain=clipped)
    assert r.lower_bound == 0.0 and frac_inside(clipped, r.details["witness"], clip=(0.0, 0.3))


def test_float_sign_wrong_at_a_vertex():
    """z = x1 + x2 + x3 + 2^-60 at the vertex (1, -2^-54, -1): the float sum is 2^-60 > 0 (1 - 2^-54
    rounds to 1) but the exact z is -2^-54 + 2^-60 < 0, and z < 0 on the whole box: f = 0 there, yet the
    float gradient at that vertex has norm 3. No method may report it."""
    t = 2.0 ** -54
    net = build_network([[[1.0, 1.0, 1.0]], [[1.0]]], [[2.0 ** -60], [0.0]])
    vertex = np.array([1.0, -t, -1.0])
    box = Box([0.5, -t - 0.5, -1.5], vertex)
    assert net.forward_with_preactivations(vertex[None, :])[1][0][0, 0] > 0
    assert frac_forward_signs(net, vertex)[0][0] < 0
    assert not certain_rows(net, vertex[None, :])[0]
    for method in ("sampling", "ascent"):
        r = lipopt.lower_bound(net, method=method, domain=box)
        assert r.lower_bound == 0.0
    m = exact_lipschitz_mip(net, np.ones(1), box)
    assert m.lower == 0.0 and m.status != "optimal"


# -------------------------------------------------------------------------------------------------
# The radius-0 ball {0}


@pytest.mark.parametrize("w", [1.0, -1.0])
def test_radius_zero_ball(w):
    net = build_network([[[w]], [[1.0]]], [[0.0], [0.0]])
    dom = Ball([0.0], 0.0)
    assert dom.inside_point([-5e-324])[0] == 0.0 and not dom.contains_exact([-5e-324])
    for method in ("sampling", "ascent"):
        r = lipopt.lower_bound(net, method=method, domain=dom)
        assert r.lower_bound == 0.0 and r.details["witness"] == [0.0]
    m = exact_lipschitz_mip(net, np.ones(1), dom)
    assert m.lower == 0.0 and m.x[0] == 0.0 and m.status != "optimal"
    r = lipopt.upper_bound(net, method="exact", domain=dom)
    assert r.lower_bound == 0.0 and r.status != "optimal" and r.details["witness_x"] == [0.0]


# -------------------------------------------------------------------------------------------------
# contains_exact / inside_point / sample / project against Fractions


def random_domains(rng, n):
    """(domain, box, clip) triples: awkward decimal centres, radii down to 1e-300 and 0."""
    out = []
    for r, p, clipped in itertools.product([0.0, 1e-300, 1e-17, 3e-9, 0.1, 0.7], ["inf", "2"], [False, True]):
        c = np.round(rng.uniform(-1, 1, n), rng.integers(1, 4))
        clip = (c - rng.uniform(0, 0.5 * r + 1e-300, n), np.minimum(c + 0.3 * r, 0.9)) if clipped else None
        if clip is not None:
            clip = (np.minimum(clip[0], c), np.maximum(clip[1], c))
        out.append((Ball(c, r, p, clip=clip), None, clip))
    for _ in range(4):
        lo = np.round(rng.uniform(-1, 0, n), 2)
        hi = lo + np.round(rng.uniform(0, 1, n), 1)
        out.append((Box(lo, hi), (lo, hi), None))
    return out


def near_boundary_points(rng, dom, k):
    n = dom.dim
    lo, hi = dom.bounding_box()
    pts = []
    for _ in range(k):
        which = rng.integers(0, 3, n)
        base = np.where(which == 0, lo, np.where(which == 1, hi, dom.inner_box()[0]))
        steps = rng.integers(-3, 4, n)
        x = base.copy()
        for i in range(n):
            for _ in range(abs(steps[i])):
                x[i] = np.nextafter(x[i], np.inf if steps[i] > 0 else -np.inf)
        pts.append(x)
    if isinstance(dom, Ball) and dom.p == "2":
        for _ in range(k):
            u = rng.standard_normal(n)
            u /= np.linalg.norm(u)
            x = dom.center + dom.radius * u
            pts.append(x)
            pts.append(np.nextafter(x, dom.center))
            pts.append(np.nextafter(x, x + np.sign(u)))
    return np.array(pts)


def test_contains_exact_matches_fractions_near_boundary():
    rng = np.random.default_rng(0)
    checked = outside = 0
    for n in (1, 3):
        for dom, box, clip in random_domains(rng, n):
            X = near_boundary_points(rng, dom, 12)
            got = dom.contains_exact(X)
            for x, g in zip(X, got):
                ref = frac_inside(dom, x, box, clip)
                assert g == ref, (dom, x)
                single = dom.contains_exact(x)
                assert isinstance(single, bool) and single == ref
                checked += 1
                outside += not ref
    assert checked > 500 and 0.1 * checked < outside < 0.9 * checked   # both sides exercised


def test_inside_point_sample_project_are_exactly_inside():
    rng = np.random.default_rng(1)
    for n in (1, 4):
        for dom, box, clip in random_domains(rng, n):
            far = [rng.standard_normal(n) * s for s in (1e-300, 1e-9, 1.0, 1e300)]
            far += [np.full(n, np.nan), np.full(n, np.inf), dom.bounding_box()[1], dom.bounding_box()[0]]
            for x in far:
                y = dom.inside_point(x)
                assert y.shape == (n,) and frac_inside(dom, y, box, clip), (dom, x, y)
            S = dom.sample(40, rng)
            P = dom.project(np.vstack([S + rng.standard_normal(S.shape) * s for s in (1e-16, 1e-3, 10.0)]))
            for x in np.vstack([S[::4], P[::6]]):
                assert frac_inside(dom, x, box, clip), (dom, x)
            assert dom.contains_exact(np.vstack([S, P])).all()


def test_inside_point_rejects_bad_shape():
    with pytest.raises(InvalidInputError):
        Ball([0.0, 1.0], 0.1).inside_point([1.0])
    with pytest.raises(InvalidInputError):
        Box([0.0], [1.0]).contains_exact([[1.0, 2.0]])


# -------------------------------------------------------------------------------------------------
# Every reported witness is valid: random networks and domains


def random_net(rng, widths, act):
    Ws = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    bs = [rng.standard_normal(widths[i + 1]) for i in range(len(widths) - 1)]
    return build_network(Ws, bs, [act] * (len(widths) - 2))


def test_local_witnesses_property(trials: int = 4):
    rng = np.random.default_rng(2)
    count = 0
    for trial in range(trials):
        n = int(rng.integers(1, 4))
        widths = [n] + [int(rng.integers(2, 6)) for _ in range(int(rng.integers(1, 3)))] + [1]
        net = random_net(rng, widths, ["relu", "leaky_relu"][trial % 2])
        c = np.ones(1)
        doms = random_domains(rng, n)
        for k in rng.choice(len(doms), 5, replace=False):
            dom, box, clip = doms[k]
            for norm in ("inf", "2"):
                r = local_lower_bound(net, c, dom, norm, samples=64, restarts=2, steps=4, proposals=8, seed=trial)
                assert_valid_witness(net, c, norm, dom, r.value, r.point, box, clip)
                count += 1
            a = ascent_lower_bound(net, c, "inf", dom, samples=64, seed=trial,
                                   patterns=[[np.ones(w) for w in widths[1:-1]]])
            assert_valid_witness(net, c, "inf", dom, a.value, a.point, box, clip)
    assert count == 10 * trials


@pytest.mark.slow
def test_local_witnesses_property_more():
    test_local_witnesses_property(10)


def test_mip_witnesses_property():
    rng = np.random.default_rng(3)
    for trial in range(8):
        n = int(rng.integers(1, 3))
        widths = [n, int(rng.integers(2, 5)), 1]
        net = random_net(rng, widths, ["relu", "leaky_relu"][trial % 2])
        doms = [d for d in random_domains(rng, n) if isinstance(d[0], Box) or d[0].p == "inf"]
        dom, box, clip = doms[int(rng.integers(len(doms)))]
        m = exact_lipschitz_mip(net, np.ones(1), dom)
        assert_valid_witness(net, np.ones(1), "inf", dom, m.lower, m.x, box, clip)
        assert m.lower <= m.upper
        if m.status == "optimal":
            assert m.upper - m.lower <= 1e-4 * max(1.0, m.upper)


def test_global_sampling_and_pattern_witnesses_are_certain():
    rng = np.random.default_rng(4)
    for trial in range(6):
        net = random_net(rng, [3, 5, 4, 1], "relu")
        s = sampled_lower_bound(net, np.ones(1), "inf", samples=200, seed=trial)
        assert_valid_witness(net, np.ones(1), "inf", None, s.value, s.point)
        rp = realise_pattern(net, np.ones(1), [np.ones(5), np.zeros(4)], "inf")
        if rp is not None:
            assert_valid_witness(net, np.ones(1), "inf", None, rp.value, rp.point)


def test_best_witness_moves_off_a_kink():
    """A candidate exactly on a kink (x = 0 for relu(x)) is moved by a tiny step; the value found is
    the slope on whichever side it lands, at a point whose pattern is certain."""
    net = build_network([[[1.0]], [[1.0]]], [[0.0], [0.0]])
    dom = Box([-1.0], [1.0])
    w = best_witness(net, np.ones(1), "inf", np.zeros((1, 1)), dom, values=np.array([1.0]))
    assert w.certain and w.point[0] != 0.0 and dom.contains_exact(w.point)
    assert w.value == (1.0 if w.point[0] > 0 else 0.0)


def test_ascent_escalation_keeps_a_valid_best_and_is_deterministic(monkeypatch):
    """The escalation rounds (more samples and restarts, fresh seeds) never lose the first pass's
    value, report a witness inside the domain, repeat exactly, and stop when a round gains little."""
    import lipopt.baselines.ascent as ascent
    rng = np.random.default_rng(7)
    for trial in range(4):
        widths = [6] + [12] * 5 + [1]
        net = random_net(rng, widths, ["relu", "leaky_relu"][trial % 2])
        c = np.ones(1)
        dom = Ball(rng.standard_normal(6), 0.5, "inf")
        a = ascent_lower_bound(net, c, "inf", dom, samples=256, seed=trial)
        assert_valid_witness(net, c, "inf", dom, a.value, a.point)
        b = ascent_lower_bound(net, c, "inf", dom, samples=256, seed=trial)
        assert (a.value, a.evaluations) == (b.value, b.evaluations)
        np.testing.assert_array_equal(a.point, b.point)
        monkeypatch.setattr(ascent, "ESCALATION_EFFORT", 0.0)
        first = ascent_lower_bound(net, c, "inf", dom, samples=256, seed=trial)
        monkeypatch.undo()
        assert a.value >= first.value and a.evaluations > first.evaluations
    shallow = random_net(rng, [2, 3, 1], "relu")   # the first pass finds the maximum: one round more
    dom = Ball(np.zeros(2), 1.0, "inf")
    monkeypatch.setattr(ascent, "ESCALATION_EFFORT", 0.0)
    first = ascent_lower_bound(shallow, np.ones(1), "inf", dom, samples=256)
    monkeypatch.undo()
    a = ascent_lower_bound(shallow, np.ones(1), "inf", dom, samples=256)
    assert a.value == first.value and a.evaluations <= 4 * first.evaluations

"""API methods exact-fgl and ascent: certified exact values, brackets, and lower bounds that are real."""
import numpy as np
import pytest
from helpers import small_network

import lipopt
from lipopt.baselines.patterns import realise_pattern
from lipopt.domain import Box, local_slopes
from lipopt.exact import exact_fgl
from lipopt.model import build_network
from lipopt.model.random import random_network

CASES = [((6, 5, 1), None), ((8, 12, 1), 5), ((5, 6, 4, 1), None), ((10, 10, 6, 1), 3)]


@pytest.mark.parametrize("widths,band", CASES)
@pytest.mark.parametrize("seed", [0, 1] + [pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4, 5)])
def test_exact_fgl_method_certifies_enumeration(widths, band, seed):   # ~1.6 s a case (ascent): 2 seeds by default
    net = small_network(widths, seed, band=band)
    for norm in ("inf", "2", "1"):
        ex = exact_fgl(net, np.ones(1), norm).value
        r = lipopt.upper_bound(net, norm=norm, method="exact-fgl", lower="ascent", seed=seed)
        assert r.status == "optimal"
        assert ex <= r.upper_bound <= ex * (1 + 1e-9) + 1e-12
        assert r.lower_bound <= r.upper_bound
        # the lower bound is a real gradient norm at the reported witness
        x = np.array(r.details["lower_bound_witness"])[None, :]
        g = net.gradient(x, np.ones(1))[0]
        q = {"inf": 1, "2": 2, "1": np.inf}[norm]
        assert r.lower_bound == pytest.approx(np.linalg.norm(g, q), rel=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_ascent_reaches_fgl_when_every_pattern_is_realisable(seed):
    """One hidden layer with n1 <= n0 and generic weights: every activation pattern is a nonempty open
    region, so the true Lipschitz constant equals the FGL and the realised maximiser attains it."""
    net = small_network((8, 6, 1), seed)
    ex = exact_fgl(net, np.ones(1)).value
    lb = lipopt.lower_bound(net, method="ascent", seed=seed)
    assert lb.lower_bound == pytest.approx(ex, rel=1e-9)
    assert lb.lower_bound <= lipopt.upper_bound(net, method="lp", lower=False).upper_bound


@pytest.mark.parametrize("seed", range(8))
def test_local_ascent_stays_in_domain_and_below_fgl(seed):
    net = small_network((6, 8, 5, 1), seed)
    rng = np.random.default_rng(seed)
    center = rng.standard_normal(6)
    box = Box(center - 0.3, center + 0.3)
    lb = lipopt.lower_bound(net, method="ascent", domain=box, seed=seed)
    x = np.array(lb.details["witness"])
    assert box.contains(x)
    fgl = exact_fgl(net, np.ones(1), "inf", local_slopes(net, box)).value
    assert lb.lower_bound <= fgl * (1 + 1e-12)
    assert lb.lower_bound >= lipopt.lower_bound(net, method="sampling", domain=box, seed=seed).lower_bound * 0.999


def test_realise_pattern_of_a_known_region():
    rng = np.random.default_rng(3)
    net = small_network((4, 3, 1), 3)
    x0 = rng.standard_normal(4)
    _, zs = net.forward_with_preactivations(x0[None, :])
    pattern = [(zs[0][0] > 0).astype(float)]
    r = realise_pattern(net, np.ones(1), pattern)
    assert r.realised and r.margin > 0
    _, zr = net.forward_with_preactivations(r.point[None, :])
    assert np.array_equal(zr[0][0] > 0, zs[0][0] > 0)


def test_unrealisable_pattern_still_gives_a_valid_point():
    # z1 = x + 1 and z2 = -x + 1 cannot both be <= 0: the pattern "both inactive" has no input
    net = build_network([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])], [np.array([1.0, 1.0]), np.zeros(1)])
    r = realise_pattern(net, np.ones(1), [np.zeros(2)])
    assert not r.realised
    assert r.value == pytest.approx(abs(net.gradient(r.point[None, :], np.ones(1))[0, 0]))


def test_time_limit_gives_a_certified_bracket():
    net = random_network((40, 40, 1), band=None, seed=1, bias=True)
    r = lipopt.upper_bound(net, method="exact-fgl", time_limit=1e-3, lower=False)
    lo, hi = r.details["bracket"]
    assert r.status in ("time_limit", "optimal") and lo <= hi == r.upper_bound
    full = lipopt.upper_bound(net, method="exact-fgl", lower=False)
    assert full.status == "optimal" and lo <= full.raw_value <= hi


def test_exact_fgl_refuses_large_enumeration():
    net = small_network((6, 100, 100, 100, 1), 0)   # 300 free neurons: beyond enumeration and the B&B's 256
    with pytest.raises(lipopt.InvalidInputError, match="limited to 256 free units"):
        lipopt.upper_bound(net, method="exact-fgl")
    with pytest.raises(lipopt.InvalidInputError, match="lower must be"):
        lipopt.upper_bound(net, method="product", lower="magic")
    with pytest.raises(lipopt.InvalidInputError, match="time_limit"):
        lipopt.upper_bound(net, method="product", time_limit=-1)


@pytest.mark.parametrize("seed", range(4))
def test_exact_fgl_closed_by_the_lp_or_by_resumed_search(seed, monkeypatch):
    """Force the first search to stop at once: the LiPopt LP either meets the incumbent (proved,
    algorithm "...+lp") or the search resumes; either way the bound is certified and proved."""
    import lipopt.methods as methods
    import lipopt.methods.exact  # noqa: F401 (the module whose FIRST_SEARCH the search reads)
    net = random_network((30, 30, 10, 1), band=9, seed=seed, bias=True)
    reference = lipopt.upper_bound(net, method="exact-fgl", lower=False)
    monkeypatch.setattr(methods.exact, "FIRST_SEARCH", 1e-6)
    r = lipopt.upper_bound(net, method="exact-fgl", lower=False)
    lo, hi = r.details["bracket"]
    assert r.status == "optimal" and lo <= reference.raw_value <= hi == r.upper_bound
    assert hi - lo <= methods.CLOSE_GAP * abs(lo) + r.details["rounding_error"]
    lp = lipopt.upper_bound(net, method="lp", lower=False).upper_bound
    assert r.upper_bound <= lp


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_auto_is_the_best_certified_attempt(seed, norm):
    net = small_network((6, 7, 5, 1), seed)
    ex = exact_fgl(net, np.ones(1), norm).value
    r = lipopt.upper_bound(net, method="auto", norm=norm, lower=False, time_limit=20)
    values = [a["value"] for a in r.details["attempts"] if a["value"] is not None]
    assert r.upper_bound == min(values) and r.upper_bound >= ex
    assert r.upper_bound <= lipopt.upper_bound(net, method="product", norm=norm, lower=False).upper_bound
    assert r.details["best_method"] in {a["method"] for a in r.details["attempts"]}


@pytest.mark.parametrize("seed", range(3))
def test_auto_on_a_dense_layer_is_at_most_shor(seed):
    """Dense 40-40-1: either the FGL is proved within the quick search (then nothing is tighter) or
    the SDP is tried; the result never exceeds the Shor bound."""
    net = random_network((40, 40, 1), band=None, seed=seed, bias=True)
    shor = lipopt.upper_bound(net, method="sdp", lower=False).upper_bound
    r = lipopt.upper_bound(net, method="auto", lower=False, time_limit=20)
    assert r.upper_bound <= shor * (1 + 1e-9)
    tried = {a["method"] for a in r.details["attempts"]}
    assert r.status == "optimal" or "sdp" in tried


def test_sdp_lipsdp_and_mip_through_the_api():
    net = small_network((5, 6, 1), 2)
    ex2 = exact_fgl(net, np.ones(1), "2").value
    assert lipopt.upper_bound(net, method="sdp", norm="2").upper_bound >= ex2
    assert lipopt.upper_bound(net, method="lipsdp", norm="2").upper_bound >= ex2
    with pytest.raises(lipopt.InvalidInputError, match="supports norms 2; got inf. Applicable here: .*sdp"):
        lipopt.upper_bound(net, method="lipsdp", norm="inf")
    with pytest.raises(lipopt.InvalidInputError, match="bounded input domain"):
        lipopt.upper_bound(net, method="exact")
    box = Box(np.full(5, -1.0), np.full(5, 1.0))
    r = lipopt.upper_bound(net, method="exact", domain=box)
    fgl = exact_fgl(net, np.ones(1), "inf", local_slopes(net, box)).value
    lo, hi = r.details["bracket"]
    assert r.status == "optimal" and lo <= hi <= fgl * (1 + 1e-6) and r.lower_bound >= lo
    assert box.contains(np.array(r.details["lower_bound_witness"]))

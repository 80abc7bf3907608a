"""The l_inf FGL search resumes instead of restarting (issue 14: auto's returning search, the LP-closing
stage of exact-fgl). Every intermediate bracket of a search run in many short windows contains the
brute-force FGL, the brackets only tighten, and the search finishes with the enumerated value; the
method runners keep one search object across their windows."""
import itertools

import numpy as np
import pytest

from lipopt.exact import ExactSearch, exact_fgl
from lipopt.methods import exact as exact_methods
from lipopt.polynomial import SlopeBox

from helpers import small_network

CASES = [((w0, w1, 1), band, seed) for (w0, w1), band, seed in
         itertools.product([(14, 10), (16, 12)], (None, 3), range(3))] + \
        [((w0, w1, w2, 1), None, seed) for (w0, w1, w2), seed in
         itertools.product([(8, 6, 4), (10, 5, 5), (9, 6, 3)], range(4))]


def _local_box(net, seed):
    rng = np.random.default_rng(seed)
    state = [rng.choice([0, 1, 2], n, p=[0.7, 0.15, 0.15]) for n in net.widths[1:-1]]
    return SlopeBox(tuple(np.where(s == 2, 1.0, 0.0) for s in state), tuple(np.where(s == 1, 0.0, 1.0) for s in state))


@pytest.mark.parametrize("widths,band,seed", CASES)
@pytest.mark.parametrize("box", ["global", "local"])
def test_windows_bracket_and_finish_at_the_fgl(widths, band, seed, box):
    net = small_network(widths, seed, band=band)
    slopes = None if box == "global" else _local_box(net, seed)
    c = np.ones(1)
    truth = exact_fgl(net, c, norm="inf", slopes=slopes).value
    tol = 1e-9 * max(1.0, abs(truth))
    search = ExactSearch(net, c, slopes, method="bnb", seed=seed)
    lower, upper = -np.inf, np.inf
    for _ in range(100_000):
        r = search.run(1e-4)   # far shorter than the search: it is stopped and resumed many times
        assert r.lower - r.rounding_error <= truth + tol and truth <= r.upper + r.rounding_error + tol
        assert r.lower >= lower - tol and r.upper <= upper + tol   # resumed brackets only tighten
        lower, upper = r.lower, r.upper
        if r.optimal:
            break
    assert r.optimal
    assert abs(r.upper - truth) <= tol and abs(r.lower - truth) <= tol


def test_a_proved_search_is_not_run_again():
    net = small_network((12, 8, 1), 0)
    search = ExactSearch(net, np.ones(1), method="bnb")
    first = search.run(None)
    assert first.optimal and search.run(1e-6) is first


class _Counting(ExactSearch):
    made = 0

    def __init__(self, *args, **kwargs):
        type(self).made += 1
        super().__init__(*args, **kwargs)


def test_auto_session_keeps_one_search(monkeypatch):
    monkeypatch.setattr(exact_methods, "ExactSearch", _Counting)
    _Counting.made = 0
    net = small_network((24, 20, 8, 1), 1)
    run = exact_methods.exact_session(free=28)
    slopes = SlopeBox(tuple(np.zeros(w) for w in net.widths[1:-1]), tuple(np.ones(w) for w in net.widths[1:-1]))
    a = run(net, np.ones(1), "inf", slopes, {"time_limit": 0.01})
    b = run(net, np.ones(1), "inf", slopes, {"time_limit": 30.0})
    assert _Counting.made == 1
    lo_a, up_a = a.details["bracket"]
    lo_b, up_b = b.details["bracket"]
    assert lo_b >= lo_a and up_b <= up_a and b.sizes["nodes"] >= a.sizes["nodes"]


def test_exact_fgl_resumes_after_the_lp_stage(monkeypatch):
    monkeypatch.setattr(exact_methods, "ExactSearch", _Counting)
    _Counting.made = 0
    net = small_network((24, 20, 8, 1), 2)
    slopes = SlopeBox(tuple(np.zeros(w) for w in net.widths[1:-1]), tuple(np.ones(w) for w in net.widths[1:-1]))
    out = exact_methods.run_exact_fgl(net, np.ones(1), "inf", slopes, {"time_limit": 0.2})
    assert _Counting.made == 1
    lo, up = out.details["bracket"]
    assert lo <= up

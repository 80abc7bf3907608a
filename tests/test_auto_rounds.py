"""auto's allocation: the MIP runs last with half of what is left while an anytime method leads, then the
leading anytime method reruns with the rest (its rerun is not resumed, so it needs well more time than its
first share), or first an anytime method that ran out of time before any bound; the MIP is not started
when HiGHS' uninterruptible setup alone would exceed its time (from the weights' count, then the model's)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from lipopt.domain import Box
from lipopt.errors import OutOfTime, SolverFailure
from lipopt.exact import mip as mip_module
from lipopt.exact.mip import exact_lipschitz_mip
from lipopt.methods import registry
from lipopt.methods.auto import run_auto
from lipopt.methods.base import MethodOutput
from lipopt.model import build_network
from lipopt.problem import Problem
from lipopt.slopes import global_slopes, local_slopes


def _net(widths, seed=0):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    return build_network(Ws, [0.1 * rng.standard_normal(b) for b in widths[1:]], ["relu"] * (len(widths) - 2))


def _fake(value_at, calls):
    """An anytime runner whose bound improves with its time limit (value_at(limit)); records its limits."""
    def run(net, vec, norm, slopes, opts):
        calls.append(opts["time_limit"])
        return MethodOutput(upper=value_at(opts["time_limit"]))
    return run


def _only(monkeypatch, entries):
    """The registry reduced to the product bound plus ``entries`` (name -> (runner, anytime))."""
    methods = {"product": registry.METHODS["product"]}
    base = registry.METHODS["interval"]
    for name, (runner, anytime) in entries.items():
        methods[name] = dataclasses.replace(base, name=name, runner=runner, anytime=anytime, estimate=lambda p, o: 0.01,
                                            subsumes=(), preferred=frozenset())
    monkeypatch.setattr(registry, "METHODS", methods)
    monkeypatch.setattr(registry, "applicable", lambda problem, kind="upper": list(methods.values()))


def test_leading_anytime_method_gets_a_second_round(monkeypatch):
    net = _net((6, 8, 8, 8, 1))
    calls_a, calls_b = [], []
    # A leads from the start and improves with time; B, C, D are worse at any limit (all four return at
    # once, so A's first share, a quarter, leaves far more than twice itself for the second round)
    _only(monkeypatch, {"fake-a": (_fake(lambda t: 1.0 + 1.0 / t, calls_a), True),
                        **{f"fake-{k}": (_fake(lambda t: 50.0, calls_b), True) for k in "bcd"}})
    out = run_auto(net, np.ones(1), "inf", global_slopes(net), {"time_limit": 3.0})
    assert len(calls_a) == 2 and len(calls_b) == 3
    assert calls_a[1] > 2 * calls_a[0]                  # the rerun had well more time
    assert out.upper == 1.0 + 1.0 / calls_a[1] < 1.0 + 1.0 / calls_a[0]
    assert out.details["best_method"] == "fake-a"


def test_an_anytime_method_out_of_time_gets_the_second_round_before_the_leader(monkeypatch):
    net = _net((6, 8, 8, 8, 1))
    calls_late, calls_lead = [], []

    def late(net, vec, norm, slopes, opts):   # needs more than its first share, then beats everything
        calls_late.append(opts["time_limit"])
        if opts["time_limit"] < 1.0:
            raise OutOfTime("time limit reached")
        return MethodOutput(upper=1.5)
    _only(monkeypatch, {"fake-a": (_fake(lambda t: 10.0, calls_lead), True), "fake-b": (late, True),
                        **{f"fake-{k}": (_fake(lambda t: 50.0, []), True) for k in "cd"}})
    out = run_auto(net, np.ones(1), "inf", global_slopes(net), {"time_limit": 2.5})
    assert len(calls_late) == 2 and calls_late[0] < 1.0 <= calls_late[1] and len(calls_lead) == 1
    assert out.upper == 1.5 and out.details["best_method"] == "fake-b"
    first = [a for a in out.details["attempts"] if a["method"] == "fake-b"][0]
    assert first["out_of_time"] and first["value"] is None


def test_a_plain_failure_gets_no_second_round(monkeypatch):
    net = _net((6, 8, 8, 8, 1))
    calls = []

    def broken(net, vec, norm, slopes, opts):
        calls.append(opts["time_limit"])
        raise SolverFailure("not definite")
    _only(monkeypatch, {"fake-a": (_fake(lambda t: 10.0, []), False), "fake-b": (broken, True)})
    out = run_auto(net, np.ones(1), "inf", global_slopes(net), {"time_limit": 2.0})
    assert len(calls) == 1 and out.upper == 10.0


def test_no_second_round_for_a_leader_that_stops_by_itself(monkeypatch):
    net = _net((6, 8, 8, 8, 1))
    calls_a, calls_b = [], []
    _only(monkeypatch, {"fake-a": (_fake(lambda t: 2.0, calls_a), False),
                        "fake-b": (_fake(lambda t: 50.0, calls_b), True)})
    out = run_auto(net, np.ones(1), "inf", global_slopes(net), {"time_limit": 2.0})
    assert len(calls_a) == 1 and len(calls_b) == 1 and out.upper == 2.0


def test_mip_is_not_started_when_its_setup_exceeds_the_time_left(monkeypatch):
    net = _net((8, 10, 10, 1), seed=3)
    x0 = np.zeros(8)
    dom = Box(x0 - 0.5, x0 + 0.5)
    full = exact_lipschitz_mip(net, np.ones(1), dom, "inf", time_limit=30.0)
    # a setup cost per nonzero that no limit can cover: the solve is skipped, the bound is the trivial one
    monkeypatch.setattr(mip_module, "HIGHS_SETUP_PER_NONZERO", 1e3)
    monkeypatch.setattr(mip_module, "MIP_NONZEROS_PER_WEIGHT", 0.0)   # past the shape check: the model's own
    t0 = time.perf_counter()
    r = exact_lipschitz_mip(net, np.ones(1), dom, "inf", time_limit=30.0)
    assert r.status == "time_limit" and r.info["highs_status"].startswith("not started")
    assert r.upper == r.info["trivial_bound"] >= full.upper >= r.lower
    assert r.lower <= full.upper and r.nodes == 0
    assert time.perf_counter() - t0 < 30.0


def test_mip_refuses_from_shapes_before_building_when_setup_cannot_fit(monkeypatch):
    net = _net((8, 10, 10, 1), seed=3)
    dom = Box(np.full(8, -0.5), np.full(8, 0.5))
    monkeypatch.setattr(mip_module, "HIGHS_SETUP_PER_NONZERO", 1e3)
    monkeypatch.setattr(mip_module, "build_mip", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(SolverFailure, match="setup alone"):
        exact_lipschitz_mip(net, np.ones(1), dom, "inf", time_limit=30.0)
    monkeypatch.setattr(mip_module, "HIGHS_SETUP_PER_NONZERO", 1e-12)   # fits: built and solved
    monkeypatch.undo()
    assert exact_lipschitz_mip(net, np.ones(1), dom, "inf", time_limit=30.0).upper > 0


def test_auto_leaves_the_mip_out_above_its_free_neuron_cap(monkeypatch):
    """With more free neurons than AUTO_MIP_FREE the MIP is not among auto's attempts (it would end at the
    interval bound); at or below the cap it runs."""
    from lipopt.methods import auto as auto_module
    net = _net((8, 12, 12, 12, 1), seed=3)   # deep enough that no exact search proves the FGL first
    dom = Box(np.full(8, -0.5), np.full(8, 0.5))
    slopes = local_slopes(net, dom)
    free = Problem(net, np.ones(1), "inf", dom, slopes).free_neurons    # what auto reads
    assert free > 0
    for cap, expect in ((free - 1, False), (free, True)):
        monkeypatch.setattr(auto_module, "AUTO_MIP_FREE", cap)
        out = run_auto(net, np.ones(1), "inf", slopes, {"time_limit": 1.5, "domain": dom})
        assert any(a["method"] == "exact" for a in out.details["attempts"]) is expect

"""Chen et al.'s published per-seed numbers: our networks are theirs bit for bit, our LiPopt-3 equals
their LiPopt-3, and their LiPopt-4 on (10, 10, 1), s = 4 is below the exact maximum on every seed."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

import lipopt
from lipopt.exact.enumerate import exact_fgl
from lipopt.model.random import random_network, torch_random_network

pytest.importorskip("torch")


def _published():
    with resources.files("lipopt").joinpath("experiments", "data", "chen2020.json").open() as f:
        return json.load(f)


def _value(entries, widths, band, seed, method):
    for e in entries:
        if e["widths"] == list(widths) and e["band"] == band and e["seed"] == seed and e["method"] == method:
            return e["value"]
    raise KeyError((widths, band, seed, method))


def test_published_file_is_complete_and_cited():
    d = _published()
    assert "CertDNN" in d["url"] and "Chen" in d["source"]
    groups = {}
    for e in d["entries"]:
        assert e["norm"] == "inf" and 0 <= e["seed"] <= 9 and np.isfinite(e["value"])
        groups.setdefault((tuple(e["widths"]), e["band"], e["method"]), set()).add(e["seed"])
    assert all(seeds == set(range(10)) for seeds in groups.values())
    assert ((80, 80, 1), 20, "LiPopt-3") in groups and ((20, 20, 10, 1), 8, "LiPopt-4") in groups


@pytest.mark.parametrize("widths,band", [((10, 10, 1), 4), ((10, 10, 1), 12), ((5, 5, 10, 1), 8)])
def test_our_lipopt3_equals_the_published_per_seed(widths, band):
    entries = _published()["entries"]
    for seed in range(10):
        net = torch_random_network(widths, band=band, seed=seed)
        ours = lipopt.upper_bound(net, method="lp", degree=3, lower=False).upper_bound
        theirs = _value(entries, widths, band, seed, "LiPopt-3")
        exact = exact_fgl(net, np.ones(1)).value
        assert ours >= exact - 1e-12
        assert abs(ours - theirs) <= 1e-6 * theirs, (seed, ours, theirs)


def test_published_lipopt4_is_below_the_exact_value_on_10_10_s4():
    entries = _published()["entries"]
    for seed in range(10):
        net = torch_random_network((10, 10, 1), band=4, seed=seed)
        exact = exact_fgl(net, np.ones(1)).value
        assert _value(entries, (10, 10, 1), 4, seed, "LiPopt-4") < exact * (1 - 1e-3)
        ours4 = lipopt.upper_bound(net, method="lp", degree=4, lower=False).upper_bound
        assert ours4 >= exact - 1e-12


def test_torch_networks_are_deterministic_and_leave_the_global_rng_alone():
    import torch
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = torch_random_network((6, 7, 1), band=3, seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = torch_random_network((6, 7, 1), band=3, seed=5)
    for Wa, Wb in zip(a.weights, b.weights):
        assert np.array_equal(np.asarray(Wa.todense() if hasattr(Wa, "todense") else Wa),
                              np.asarray(Wb.todense() if hasattr(Wb, "todense") else Wb))
    W0 = np.asarray(a.weights[0].todense() if hasattr(a.weights[0], "todense") else a.weights[0])
    assert np.all(W0[np.abs(np.subtract.outer(np.arange(7), np.arange(6))) > 1] == 0)
    # not the numpy generator's network
    c = random_network((6, 7, 1), band=3, seed=5)
    W0c = np.asarray(c.weights[0].todense() if hasattr(c.weights[0], "todense") else c.weights[0])
    assert not np.array_equal(W0, W0c)

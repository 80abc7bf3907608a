"""One contract battery run against every entry of the method registry (``lipopt.methods.METHODS``).

A new registry entry is tested automatically: every case below is generated from the entries'
declared Capabilities, never from a hand-kept list of method names.

1. Soundness inside the declared capabilities: on seeded small networks (widths 2-5, so vertex
   enumeration is cheap), every upper bound >= the exact FGL max_{s in box} ||W_1^T S_1 ... c||_q over
   the Problem's own derivative box (the activation-consistent MIP, and ``auto`` when it returns the
   MIP, instead >= the best densely sampled gradient norm in the domain), and every lower bound <= the
   exact FGL, <= every upper bound, attained at a witness inside the domain.
2. Refusal outside the capabilities: the API and the CLI give the registry's one sentence.
3. Budget: ``time_limit`` bounds the wall time of a whole call.
4. CLI choices and ``gap`` rows are exactly the registry's (applicable) methods.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import signal
import time

import numpy as np
import pytest

from lipopt import InvalidInputError, SolverFailure, api, cli
from lipopt.domain import Ball, Box
from lipopt.exact import exact_fgl
from lipopt.gap import gap_report
from lipopt.methods import METHODS, Capabilities, applicable, resolve
from lipopt.model import build_network, output_vector
from lipopt.model.activations import ACTIVATIONS
from lipopt.problem import Norm

NORMS = tuple(n.value for n in Norm)
DEPTHS = (1, 2, 3)
DOMAINS = ("global", "box", "inf-ball", "2-ball")
ACTS = ("relu", "tanh")
TIME_LIMIT = 10.0
SAMPLES = 256
REL = 1e-12     # float rounding of a gradient norm next to its exact value (widths <= 5, depth <= 3)
MIP_REL = 1e-6  # the MIP's upper end rests on HiGHS' tolerances (the registry says so)


# ------------------------------------------------------------------------------------------------
# Seeded problems


def _network(depth: int, act: str, seed: int, widths=None):
    """Gaussian weights scaled by 1/sqrt(fan-in), Gaussian biases: a mix of fixed and free neurons on
    the domains below. Two outputs, so both an output index and a margin occur."""
    rng = np.random.default_rng(seed)
    widths = widths or [int(w) for w in rng.integers(2, 6, size=depth + 1)] + [2]
    Ws = [rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l]) for l in range(len(widths) - 1)]
    bs = [0.5 * rng.standard_normal(widths[l + 1]) for l in range(len(widths) - 1)]
    return build_network(Ws, bs, [act] * (len(widths) - 2))


def _domain(kind: str, n: int, seed: int):
    rng = np.random.default_rng(10_000 + seed)
    if kind == "global":
        return None
    if kind == "box":
        lo = rng.uniform(-1.0, 0.5, n)
        return Box(lo, lo + rng.uniform(0.1, 1.5, n))
    return Ball(rng.standard_normal(n), float(rng.uniform(0.2, 1.0)), "inf" if kind == "inf-ball" else "2")


def _selection(seed: int) -> dict:
    return {"output": 1} if seed % 2 else {"margin": (0, 1)}


class Case:
    """One seeded problem: network, output selection, norm, domain, and the registry's Problem."""

    def __init__(self, norm, depth, dom, act, seed):
        self.norm, self.depth, self.dom, self.act, self.seed = norm, depth, dom, act, seed
        self.net = _network(depth, act, seed)
        self.domain = _domain(dom, self.net.widths[0], seed)
        self.sel = _selection(seed)
        vec = output_vector(self.net, self.sel.get("output"), self.sel.get("margin"), None)
        self.problem = api.make_problem(self.net, vec, norm, self.domain, "linear", {})

    @property
    def id(self) -> str:
        return f"{self.norm}-d{self.depth}-{self.dom}-{self.act}-s{self.seed}"

    def kwargs(self) -> dict:
        return {"norm": self.norm, "domain": self.domain, **self.sel}


def _declared(caps, problem, dom: str) -> bool:
    """Whether the declared fields (not ``refuse``) accept the problem: the battery decides what to
    test from the declarations, and checks separately that ``refuse`` agrees."""
    lo, hi = caps.depths
    return (problem.norm in caps.norms and lo <= problem.depth and (hi is None or problem.depth <= hi)
            and (dom != "global" or not caps.needs_domain) and (dom == "global" or dom in caps.domains)
            and (caps.activations is None or problem.activations <= caps.activations))


# one seeded network per (norm, depth, domain, activation); the seed runs over the grid so that the
# 72 problems are 72 different networks
CASES = [Case(norm, depth, dom, act, seed) for seed, (norm, depth, dom, act)
         in enumerate(itertools.product(NORMS, DEPTHS, DOMAINS, ACTS))]
SOUND = [(name, case) for name, m in METHODS.items() for case in CASES
         if _declared(m.capabilities, case.problem, case.dom)]


COVERED_UPPER = ("l2-fast", "l2-opt", "l2-weighted", "sdp", "lp")   # 0.1-0.3 s a case (solvers, sweeps)


def _fast(name: str, case: Case) -> bool:
    """The lower-bound methods' local search costs 0.1-0.4 s a call whatever the network (8 restarts x
    40 steps), so the default run gives them a covering third of the grid: one depth per (norm,
    domain, activation), every pair of factors still met; ``-m slow`` runs the other two thirds. The
    same for the upper-bound methods in COVERED_UPPER (their own soundness sweeps are elsewhere too)."""
    if METHODS[name].kind == "upper" and name not in COVERED_UPPER:
        return True
    return (NORMS.index(case.norm) + case.depth + DOMAINS.index(case.dom) + ACTS.index(case.act)) % 3 == 0


def _param(name, case):
    marks = () if _fast(name, case) else (pytest.mark.slow,)
    return pytest.param(name, case, id=f"{name}-{case.id}", marks=marks)


@functools.lru_cache(maxsize=None)
def _fgl(case: Case) -> float:
    """The exact FGL over the Problem's own derivative box (vertex enumeration)."""
    p = case.problem
    return exact_fgl(case.net, p.c, case.norm, p.slopes).value


@functools.lru_cache(maxsize=None)
def _sampled(case: Case) -> float:
    """Best dual gradient norm over 4096 seeded points of the domain (or of [-3, 3]^n globally)."""
    rng = np.random.default_rng(case.seed)
    n = case.net.widths[0]
    X = rng.uniform(-3, 3, (4096, n)) if case.domain is None else case.domain.sample(4096, rng)
    if case.domain is not None:
        assert case.domain.contains_exact(X).all()
    return float(Norm(case.norm).dual(case.net.gradient(X, case.problem.c)).max())


@functools.lru_cache(maxsize=None)
def _lower(name: str, case: Case):
    return api.lower_bound(case.net, method=name, samples=SAMPLES, seed=case.seed, time_limit=TIME_LIMIT,
                           **case.kwargs())


def _lowers(case: Case) -> float:
    """The best lower bound of the lower-bound methods that the default run gives this case."""
    return max([_lower(m.name, case).lower_bound for m in applicable(case.problem, "lower")
                if _fast(m.name, case)], default=0.0)


def _check_witness(case: Case, value: float, witness) -> None:
    """A lower bound is a gradient norm at a point of the domain: recompute it there."""
    x = np.asarray(witness, dtype=np.float64)
    assert x.shape == (case.net.widths[0],)
    if case.domain is not None:
        assert case.domain.contains_exact(x), f"witness {x} outside the domain"
    at = float(Norm(case.norm).dual(case.net.gradient(x[None, :], case.problem.c))[0])
    assert value <= at * (1 + REL) + 1e-300, f"lower bound {value!r} above the gradient norm {at!r} at its witness"


def test_battery_covers_every_method_and_declaration_agrees_with_refuse():
    """Every registry entry gets soundness cases; ``refuse`` accepts everything the fields declare
    (and, for these small networks, refuses nothing else)."""
    for name, m in METHODS.items():
        assert any(n == name for n, _ in SOUND), f"{name}: no soundness case"
        for case in CASES:
            accepted = m.capabilities.refuse(case.problem) is None
            assert accepted == _declared(m.capabilities, case.problem, case.dom), (name, case.id)


@pytest.mark.parametrize("name,case", [_param(n, c) for n, c in SOUND])
def test_sound_within_capabilities(name, case):
    m = METHODS[name]
    fgl = _fgl(case)
    sampled = _sampled(case)
    # the derivative box itself is sound: no gradient in the domain exceeds its FGL
    assert sampled <= fgl * (1 + REL), (sampled, fgl)
    if m.kind == "lower":
        res = _lower(name, case)
        lb = res.lower_bound
        assert res.upper_bound is None and np.isfinite(lb) and lb >= 0
        assert lb <= fgl * (1 + REL), f"lower bound {lb!r} above the exact FGL {fgl!r}"
        _check_witness(case, lb, res.details["witness"])
        return
    mip = name == "exact"
    opts = {"sdp_solver": ("sdpa", "clarabel")[case.seed % 2]} if "sdp_solver" in m.options else {}
    res = api.upper_bound(case.net, method=name, time_limit=TIME_LIMIT, samples=SAMPLES, seed=case.seed,
                          lower="sampling" if mip else False, **opts, **case.kwargs())
    ub = res.upper_bound
    assert res.method == name and res.norm == case.norm and np.isfinite(ub)
    consistent = mip or res.details.get("best_method") == "exact"   # auto may return the MIP's value
    if consistent:
        # activation-consistent: >= every gradient norm in the domain (not necessarily >= the FGL)
        assert ub >= sampled * (1 - MIP_REL), f"MIP upper {ub!r} below a sampled gradient norm {sampled!r}"
        assert ub >= _lowers(case) * (1 - MIP_REL), (ub, _lowers(case))
    else:
        assert ub >= fgl * (1 - REL), f"upper bound {ub!r} below the exact FGL {fgl!r}"
        assert ub >= _lowers(case), (ub, _lowers(case))
    if mip:
        lo, hi = res.details["bracket"]
        assert lo <= fgl * (1 + REL) and lo <= hi, (lo, hi, fgl)
        assert res.lower_bound is not None and res.lower_bound <= ub * (1 + MIP_REL)
        assert res.lower_bound <= fgl * (1 + REL)
        _check_witness(case, res.lower_bound, res.details["lower_bound_witness"])


# ------------------------------------------------------------------------------------------------
# 2. Refusal outside the declared capabilities


def _base(caps) -> dict:
    """A problem spec every declaration accepts (the refusal cases change one factor of it)."""
    lo, hi = caps.depths
    return {"norm": "inf" if "inf" in caps.norms else sorted(caps.norms)[0], "depth": max(lo, 1),
            "dom": sorted(caps.domains)[0] if caps.needs_domain else "global",
            "act": "relu" if caps.activations is None or "relu" in caps.activations else sorted(caps.activations)[0],
            "widths": None}


def _violations(m) -> list[tuple[str, dict]]:
    """One problem spec per declared restriction of ``m``, violating that restriction only."""
    caps, out = m.capabilities, []
    base = _base(caps)
    out += [(f"norm {n}", {**base, "norm": n}) for n in NORMS if n not in caps.norms]
    lo, hi = caps.depths
    if lo > 0:
        out.append((f"depth {lo - 1}", {**base, "depth": lo - 1}))
    if hi is not None:
        out.append((f"depth {hi + 1}", {**base, "depth": hi + 1}))
    if caps.needs_domain:
        out.append(("global", {**base, "dom": "global"}))
    out += [(f"domain {d}", {**base, "dom": d}) for d in DOMAINS[1:] if d not in caps.domains]
    if caps.activations is not None:
        out += [(f"activation {a}", {**base, "act": a}) for a in sorted(ACTIVATIONS) if a not in caps.activations]
    if caps.check is not None and not getattr(caps.check, "graphs_only", False):
        # a shape-only check: look for a larger network (wide enough to exceed size limits: 13, then 100 per
        # layer, e.g. the zonotope branch and bound's 256 free units) it refuses
        # while every declared field accepts it
        for width, norm, depth in itertools.product((13, 100), sorted(caps.norms), range(max(lo, 1), 4)):
            if hi is not None and depth > hi:
                continue
            spec = {**base, "norm": norm, "depth": depth, "widths": [3] + [width] * depth + [2]}
            if caps.check(_spec_problem(spec)) is not None:
                out.append((f"check {norm}-d{depth}-{width}", spec))
                break
        else:
            out.append(("check (no refused problem found)", None))
    return out


def _spec_net(spec):
    widths = spec["widths"] or [3] + [4] * spec["depth"] + [2]
    return _network(spec["depth"], spec["act"], 7, widths)


def _spec_problem(spec):
    net = _spec_net(spec)
    dom = _domain(spec["dom"], net.widths[0], 7)
    return api.make_problem(net, output_vector(net, 1, None, None), spec["norm"], dom, "linear", {})


REFUSALS = [(name, why, spec) for name, m in METHODS.items() for why, spec in _violations(m)]


def test_every_declared_restriction_has_a_refusal_case():
    """The generator knows every Capabilities field (a new kind of restriction must be added to it)
    and found a violating problem for every restriction, shape checks included."""
    assert {f.name for f in dataclasses.fields(Capabilities)} == {
        "kind", "norms", "depths", "needs_domain", "domains", "activations", "exact_arithmetic", "check",
        "layers"}  # layers (graph node kinds): refusals of graphs are in tests/test_graph.py
    assert all(spec is not None for _, _, spec in REFUSALS), [(n, w) for n, w, s in REFUSALS if s is None]
    for name, m in METHODS.items():
        c = m.capabilities
        restricted = (set(NORMS) - c.norms or c.depths != (0, None) or c.needs_domain
                      or set(DOMAINS[1:]) - c.domains or c.activations is not None
                      or (c.check is not None and not getattr(c.check, "graphs_only", False)))
        # a check on graph structure only (graphs_only) has its refusal cases with the graph tests
        assert bool(restricted) == any(n == name for n, _, _ in REFUSALS), name


def _write_npz(path, net, act):
    arrays = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W.toarray(), b
    if net.depth:
        arrays["activations"] = np.array([act] * net.depth)
    np.savez(path, **arrays)


def _domain_argv(domain, tmp_path) -> list[str]:
    if domain is None:
        return []
    if isinstance(domain, Box):
        np.save(tmp_path / "lo.npy", domain.lower)
        np.save(tmp_path / "hi.npy", domain.upper)
        return ["--lower", str(tmp_path / "lo.npy"), "--upper", str(tmp_path / "hi.npy")]
    np.save(tmp_path / "x0.npy", domain.center)
    return ["--center", str(tmp_path / "x0.npy"), "--radius", repr(domain.radius), "--ball", domain.p]


@pytest.mark.parametrize("name,what,spec", REFUSALS, ids=[f"{n}-{w}" for n, w, _ in REFUSALS])
def test_refusal_outside_capabilities(name, what, spec, tmp_path, capsys):
    m = METHODS[name]
    net = _spec_net(spec)
    domain = _domain(spec["dom"], net.widths[0], 7)
    problem = api.make_problem(net, output_vector(net, 1, None, None), spec["norm"], domain, "linear", {})
    why = m.capabilities.refuse(problem)
    assert why is not None, f"{name} accepts a problem outside its declaration ({what})"
    # the reason names what is wrong (a shape check's own reason, for a check)
    key = {"norm": f"got {spec['norm']}", "depth": "hidden layer", "global": "domain", "domain": spec["dom"],
           "activation": spec["act"]}.get(what.split()[0]) or m.capabilities.check(problem)
    assert key in why, (why, key)
    ok = [a.name for a in applicable(problem, m.kind)]
    assert name not in ok
    with pytest.raises(InvalidInputError) as registry:
        resolve(name, problem, m.kind)
    sentence = str(registry.value)
    assert sentence.startswith(f"{name} (") and f") {why}. " in sentence
    assert sentence.endswith(f"Applicable here: {', '.join(ok) or 'none'}")
    # the API: exactly the registry's sentence, no number
    call = api.upper_bound if m.kind == "upper" else api.lower_bound
    extra = {"lower": False} if m.kind == "upper" else {}
    with pytest.raises(InvalidInputError) as raised:
        call(net, norm=spec["norm"], method=name, output=1, domain=domain, samples=SAMPLES, time_limit=5, **extra)
    assert str(raised.value) == sentence
    # the CLI: exit 2, that sentence (in the CLI's flag spelling, cli.one_line) on one stderr line,
    # nothing on stdout
    _write_npz(tmp_path / "net.npz", net, spec["act"])
    argv = ["bound", str(tmp_path / "net.npz"), "--norm", spec["norm"], "--method", name, "--output", "1",
            "--samples", str(SAMPLES), "--time-limit", "5"] + _domain_argv(domain, tmp_path)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"lipopt: error: {cli.one_line(sentence)}\n"
    assert f"{name} (" in err and err.endswith(f"Applicable here: {', '.join(ok) or 'none'}\n")


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.capabilities.depths[0] == 0])
@pytest.mark.parametrize("dom", DOMAINS)
def test_linear_network_within_capabilities(name, dom):
    """No hidden layer (declared depth 0): f = w^T x + b, so L = ||w||_q exactly, global or local."""
    m = METHODS[name]
    w = np.array([[0.75, -2.0, 0.5]])
    net = build_network([np.vstack([w, -w])], [np.zeros(2)])
    domain = _domain(dom, 3, 3)
    exact = float(Norm("inf").dual(w)[0])   # ||w||_1 = 3.25, both for f_0 and for f_0 - f_1 halved
    if m.kind == "lower":
        res = api.lower_bound(net, method=name, output=0, domain=domain, samples=SAMPLES, time_limit=TIME_LIMIT)
        assert res.lower_bound == pytest.approx(exact, rel=1e-12) and res.lower_bound <= exact
    else:
        res = api.upper_bound(net, method=name, output=0, domain=domain, samples=SAMPLES, time_limit=TIME_LIMIT)
        assert exact <= res.upper_bound <= exact * (1 + 1e-6)   # a relaxation of a linear map is tight
        assert res.lower_bound <= exact


# ------------------------------------------------------------------------------------------------
# 3. Budget: time_limit bounds the wall time of the whole call


BUDGET, SHARP = 2.0, 0.5   # the contract's limit, and a sharper one that an unbounded 1-2 s search overruns
BUDGET_NETS = {2: [6, 11, 11, 2], 1: [6, 22, 2]}   # 22 free neurons: searches and LPs with real work


def _budget_cases():
    """Every method on the first of (depth 2, depth 1) x (global, box, balls) that it accepts: with
    every norm it declares under SHARP, with its first norm (l1 if declared) under BUDGET."""
    out = []
    for name, m in METHODS.items():
        for i, norm in enumerate(sorted(m.capabilities.norms)):
            for depth, dom in itertools.product((2, 1), DOMAINS):
                spec = {"norm": norm, "depth": depth, "dom": dom, "act": "relu", "widths": BUDGET_NETS[depth]}
                if m.capabilities.refuse(_spec_problem(spec)) is None:
                    out += [pytest.param(name, spec, limit, id=f"{name}-{norm}-d{depth}-{dom}-{limit:g}s")
                            for limit in ((BUDGET, SHARP) if i == 0 else (SHARP,))]
                    break
    return out


class _Overrun(BaseException):
    """Raised by the watchdog alarm (a BaseException: no ``except Exception`` in lipopt swallows it)."""


def _run_timed(call, kwargs: dict, kind: str, wait: float):
    """call(**kwargs) under a SIGALRM watchdog, so that an overrunning call costs the battery ``wait``
    seconds, not its whole run time (the alarm interrupts Python code; a solver call in C returns at
    its own limit first). Returns (wall seconds or None if interrupted, Result.seconds, the bound,
    the SolverFailure / error text or None)."""
    def alarm(signum, frame):
        raise _Overrun
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, wait)
    t0 = time.perf_counter()
    try:
        res = call(**kwargs)
        wall = time.perf_counter() - t0
        return wall, res.seconds, res.upper_bound if kind == "upper" else res.lower_bound, None
    except SolverFailure as exc:   # giving up at the deadline is allowed; overrunning it is not
        return time.perf_counter() - t0, None, None, f"SolverFailure: {exc}"
    except _Overrun:
        return None, None, None, "still running"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name,spec,limit", _budget_cases())
def test_time_limit_bounds_the_call(name, spec, limit):
    """Result.seconds and the wall time of the call are at most 1.1 time_limit + 0.5 s."""
    m = METHODS[name]
    net = _spec_net(spec)
    domain = _domain(spec["dom"], net.widths[0], 7)
    call = api.upper_bound if m.kind == "upper" else api.lower_bound
    bound = 1.1 * limit + 0.5
    kwargs = {"net": net, "norm": spec["norm"], "method": name, "output": 1, "domain": domain, "time_limit": limit}
    wall, seconds, value, error = _run_timed(call, kwargs, m.kind, bound + 1.0)
    assert wall is not None, f"{name}: still running after {bound + 1:.2f} s under time_limit={limit}"
    assert wall <= bound, f"{name}: {wall:.2f} s of wall time under time_limit={limit} ({error or 'ok'})"
    if error is None:
        assert seconds <= bound and seconds <= wall
        assert value is not None and np.isfinite(value)


# ------------------------------------------------------------------------------------------------
# 4. The CLI's choices and gap's rows are the registry's


def _subparser(name):
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_cli_method_choices_are_the_registry():
    actions = {a.dest: a for a in _subparser("bound")._actions}
    choices = list(actions["method"].choices)
    assert sorted(choices) == sorted(METHODS) and len(choices) == len(set(choices))
    assert list(actions["lower_method"].choices) == [n for n, m in METHODS.items() if m.kind == "lower"]


def test_cli_rejects_a_name_outside_the_registry(tmp_path, capsys):
    bogus = "lp2" if "lp2" not in METHODS else "no-such-method"
    _write_npz(tmp_path / "net.npz", _network(1, "relu", 0), "relu")
    with pytest.raises(SystemExit) as exc:
        cli.main(["bound", str(tmp_path / "net.npz"), "--method", bogus])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and len(err.splitlines()) == 1 and bogus in err


GAP_CASES = [  # (norm, depth, domain, activation, degrees)
    ("inf", 1, "box", "relu", [2, 3]),        # lp twice, sdp2, the MIP and its witness row
    ("2", 2, "2-ball", "tanh", None),         # lipsdp, no lp
    ("1", 1, "global", "leaky_relu", None),
]


@pytest.mark.parametrize("norm,depth,dom,act,degrees", GAP_CASES, ids=[f"{c[0]}-d{c[1]}-{c[2]}-{c[3]}" for c in GAP_CASES])
def test_gap_rows_are_the_applicable_methods(norm, depth, dom, act, degrees):
    net = _network(depth, act, 5)
    domain = _domain(dom, net.widths[0], 5)
    problem = api.make_problem(net, output_vector(net, 0, None, None), norm, domain, "linear", {})
    rep = gap_report(net, norm=norm, output=0, domain=domain, time_limit=TIME_LIMIT, degrees=degrees,
                     samples=SAMPLES)
    got = [(r["kind"], r["method"]) for r in rep["rows"]]
    want = [("lower", m.name) for m in applicable(problem, "lower")]
    for m in applicable(problem, "upper"):
        if m.name == "auto":
            continue
        if m.name == "lp":
            want += [("upper", f"LiPopt-{k}") for k in (degrees or [max(3, depth + 1)])]
        else:
            want.append(("upper", m.name))
        if m.name == "exact":   # the MIP's witness is a lower bound too
            want.append(("lower", "exact witness"))
    assert got == want
    assert all(r["error"] is None and r["value"] is not None for r in rep["rows"]), rep["rows"]
    lowers = [r["value"] for r in rep["rows"] if r["kind"] == "lower"]
    uppers = [r["value"] for r in rep["rows"] if r["kind"] == "upper"]
    assert max(lowers) <= min(uppers) * (1 + MIP_REL)

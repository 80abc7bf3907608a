"""The SDP methods: Shor (order 1), the sparse order-2 moment SDP and LipSDP-Neuron. The relaxations
build the programs (``relaxations.shor`` / ``moments`` / ``lipsdp``); here each is solved for its
multipliers and certified (``methods.base.solve_and_certify``: a rigorous lambda_min bound of the Gram
matrix, shifted by R^2, or the moment blocks one by one), so no relaxation imports a solver or a certifier.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..certify.gram import certify_gram
from ..certify.moments import certify_moments
from ..errors import InvalidInputError, SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lipsdp import lipsdp_system
from ..relaxations.moments import order2_system, to_sdp
from ..relaxations.quadratic import (_select, build_model, check_c, check_slopes, constant_forms, gradient_forms,
                                     interval, products, radius_squared)
from ..relaxations.shor import NORMS, SDPBound, gram_system, shor_sdp, shor_system
from ..rounding import up
from .base import MethodOutput, _jsonable, solve_and_certify

DEFAULT_CLIQUE_SIZE = 4      # sdp2: 1.5 s and 2.5 % below Shor on a dense 80-80-1 net (q = 6: 10 s, 4 %)


def run_sdp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Shor (order-1 SDP) relaxation of the norm-gradient polynomial, certified from its dual
    (certify_sdp: a rigorous lambda_min bound of the Gram matrix, shifted by R^2)."""
    r = shor_bound(net, vec, slopes, norm, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"))
    return _sdp_output(r)


def run_sdp2(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Sparse order-2 SDP (Lasserre order 2 on cliques of a hidden neuron and its strongest inputs, plus
    the Shor block), certified block by block (relaxations.moments)."""
    size = opts.get("clique_size")
    r = order2_bound(net, vec, slopes, norm, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"),
                     clique_size=DEFAULT_CLIQUE_SIZE if size is None else size)
    return _sdp_output(r)


def run_lipsdp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """LipSDP-Neuron (Fazlyab et al. 2019), the l2 reference, certified like the Shor SDP."""
    if norm != "2":
        raise InvalidInputError(f"LipSDP-Neuron bounds the l2 Lipschitz constant; got norm l_{norm} "
                                "(use --method sdp for l_inf and l1)")
    r = lipsdp_neuron(net, vec, slopes, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"))
    return _sdp_output(r)


def _sdp_output(r) -> MethodOutput:
    # any multipliers certify a valid bound (certify_sdp), so an inaccurate solve still yields one;
    # the relaxations raise SolverFailure themselves when the solver returned nothing usable
    return MethodOutput(r.upper, raw=r.raw, timings=dict(r.timings), sizes=dict(r.sizes),
                        details={k: v for k, v in r.details.items() if _jsonable(v)}
                        | {"relaxation": r.method, "solver_status": r.status})

def solve_gram(system, solver: str, time_limit: float | None, threads: int | None = None,
               tolerance: float | None = None):
    """Solve the Shor-form SDP of a GramSystem and certify it (certify.gram): (solution, certificate, timings)."""
    t0 = time.perf_counter()
    sdp = shor_sdp(system)
    t1 = time.perf_counter()
    sol, cert, tim = solve_and_certify(sdp, lambda y: certify_gram(system, y), solver, time_limit, threads, tolerance)
    return sol, cert, {"build_sdp": t1 - t0, **tim}


def shor_bound(net: Network, c, slopes: SlopeBox | None = None, norm: str = "inf", solver: str = "sdpa",
               time_limit: float | None = None, *, mccormick: bool = True, tt_products: bool = False,
               threads: int | None = None, tolerance: float | None = None) -> SDPBound:
    """Certified Shor bound on max P (the FGL of c^T f for the input norm ``norm``).

    ``tt_products`` adds the products (1 +- t_i)(1 +- t_k) >= 0 (i < k) for norm "inf" (RLT-style;
    O(n_0^2) extra multipliers). ``mccormick`` adds the McCormick products for lifted variables.
    """
    t_start = time.perf_counter()
    if norm not in NORMS:
        raise InvalidInputError(f"unknown norm {norm!r}; choose inf, 2 or 1")
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    deadline = None if time_limit is None else t_start + float(time_limit)
    if norm == "1":
        return _shor_l1(net, c, slopes, solver, deadline, mccormick, threads, tolerance, t_start)

    system, model = shor_system(net, c, slopes, norm, mccormick=mccormick, tt_products=tt_products)
    N = system.order
    t_build = time.perf_counter() - t_start
    remaining = None if deadline is None else deadline - time.perf_counter()
    if remaining is not None and remaining <= 0:
        raise SolverFailure("time limit reached while building the Shor relaxation")
    sol, cert, tim = solve_gram(system, solver, remaining, threads, tolerance)
    timings = {"build": t_build, **tim, "total": time.perf_counter() - t_start}
    return SDPBound(upper=cert.upper, raw=cert.lam, status=sol.status.value, method="shor", norm=norm,
                    sizes={"order": N, "ineq": system.n_ineq, "eq": system.n_eq, "lifted": model.n_lifted,
                           "fixed": model.n_fixed, "constraints": 1 + system.n_ineq + system.n_eq},
                    timings=timings,
                    details={"solver": sol.solver, "nu": cert.nu, "penalty": cert.penalty, "R2": cert.R2,
                             "clipped": cert.clipped, "message": sol.message, **sol.info})



def _shor_l1(net, c, slopes, solver, deadline, mccormick, threads, tolerance, t_start) -> SDPBound:
    """max_i |g_i| over the slope box: 2 n_0 signed problems without t (see module docstring)."""
    model = build_model(net, c, slopes, with_t=False, mccormick=mccormick)
    nmax, N = len(model.lo), model.ncols
    r0 = gradient_forms(net, model)
    n0 = net.widths[0]
    if model.n_lifted == 0:
        # every +-g_i is affine in z over a box (one hidden layer): Shor is exact; closed form
        lo, hi = interval(r0, model.lo, model.hi)
        up_ = float(np.max(np.maximum(hi, -lo)))
        return SDPBound(upper=up_, raw=up_, status="optimal", method="shor", norm="1",
                        sizes={"order": N, "problems": 0}, timings={"total": time.perf_counter() - t_start},
                        details={"closed_form": True})
    R2 = radius_squared(model.lo[:N], model.hi[:N])
    best, best_raw, worst_status, total_solve, order_info = -np.inf, -np.inf, "optimal", 0.0, None
    one = constant_forms(np.ones(1), np.zeros(1), nmax)
    for i in range(n0):
        ri = _select(r0, np.array([i]))
        for sign in (1.0, -1.0):
            Q = products(one, ri, np.zeros(1, np.int64), 1, nmax, sign=np.array([sign]))
            system = gram_system(nmax, N, Q, list(model.ineq), model.eq, R2)
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                raise SolverFailure("time limit reached during the l1 Shor problems")
            sol, cert, tim = solve_gram(system, solver, remaining, threads, tolerance)
            total_solve += tim["solve"]
            best, best_raw = max(best, cert.upper), max(best_raw, cert.lam)
            if sol.status.value != "optimal":
                worst_status = sol.status.value
            order_info = {"order": N, "ineq": system.n_ineq, "eq": system.n_eq, "problems": 2 * n0,
                          "lifted": model.n_lifted}
    return SDPBound(upper=best, raw=best_raw, status=worst_status, method="shor", norm="1", sizes=order_info,
                    timings={"solve": total_solve, "total": time.perf_counter() - t_start}, details={})


def lipsdp_neuron(net: Network, c, slopes: SlopeBox | None = None, solver: str = "sdpa",
                  time_limit: float | None = None, *, threads: int | None = None,
                  tolerance: float | None = None) -> SDPBound:
    """Certified LipSDP-Neuron upper bound on the l2 Lipschitz constant of c^T f over the slope box: the
    LMI of ``relaxations.lipsdp``, certified like the Shor SDP; sqrt(rho) rounded up."""
    t0 = time.perf_counter()
    system, m = lipsdp_system(net, c, slopes)
    t_build = time.perf_counter() - t0
    remaining = None if time_limit is None else float(time_limit) - t_build
    if remaining is not None and remaining <= 0:
        raise SolverFailure("time limit reached while building LipSDP")
    sol, cert, tim = solve_gram(system, solver, remaining, threads, tolerance)
    rho = max(cert.upper, 0.0)
    t1 = time.perf_counter()
    layered = _layer_certificate(net, c, slopes, sol.y, m)
    tim["certify_layers"] = time.perf_counter() - t1
    if layered is not None and layered < rho:
        rho = layered
    N = system.order
    return SDPBound(upper=up(math.sqrt(rho)), raw=math.sqrt(max(cert.lam, 0.0)), status=sol.status.value,
                    method="lipsdp-neuron", norm="2", sizes={"order": N, "multipliers": m, "constraints": 1 + m},
                    timings={"build": t_build, **tim, "total": time.perf_counter() - t0},
                    details={"solver": sol.solver, "rho": rho, "rho_dense": cert.upper, "rho_layers": layered,
                             "rho_raw": cert.lam, "nu": cert.nu, "penalty": cert.penalty, "R2": system.R2,
                             "clipped": cert.clipped, **sol.info})


def _layer_certificate(net: Network, c, slopes, y, m: int) -> float | None:
    """The solver's point (rho = lambda, tau = mu clipped to >= 0) certified layer by layer: the block
    Cholesky certificate of ``l2.certify`` on the same block-tridiagonal LMI, with LipSDP's R^2 argument
    per block. The dense certificate charges its lambda_min deficit times the whole R^2 (growth of every
    layer), which on deep nets can cost more than the bound; the smaller of the two is kept. None when
    the point has nothing to certify."""
    from ..relaxations.lipsdp_layers import layer_data
    from .l2 import certify
    y = np.asarray(y, dtype=np.float64)
    lam = float(y[0])
    mu = np.maximum(y[1:1 + m], 0.0)
    if not (lam > 0 and math.isfinite(lam) and np.all(np.isfinite(mu))):
        return None
    data = layer_data(net, c, slopes)
    if data is None:
        return None
    t, off = [], 0
    for kept, w in zip(data.kept, net.widths[1:-1]):
        t.append(mu[off:off + w][kept] / lam)
        off += w
    try:
        rho_c, _, _ = certify(data, lam, t)
    except (SolverFailure, np.linalg.LinAlgError):
        return None
    return rho_c if math.isfinite(rho_c) else None


def order2_bound(net: Network, c, slopes: SlopeBox | None = None, norm: str = "inf", solver: str = "sdpa",
                 time_limit: float | None = None, *, clique_size: int = 3, cliques: list | None = None,
                 threads: int | None = None, tolerance: float | None = None) -> SDPBound:
    """Certified sparse order-2 bound on the l_inf FGL of c^T f (one hidden layer): the moment system of
    ``relaxations.moments.order2_system``, certified block by block by ``certify.moments``."""
    t0 = time.perf_counter()
    system, poly, cl = order2_system(net, c, slopes, norm, clique_size=clique_size, cliques=cliques)
    sdp = to_sdp(system)
    t1 = time.perf_counter()
    remaining = None if time_limit is None else time_limit - (t1 - t0)
    if remaining is not None and remaining <= 0:
        raise SolverFailure("time limit reached while building the order-2 SDP")
    sol, cert, tim = solve_and_certify(sdp, lambda y: certify_moments(system, y), solver, remaining, threads, tolerance)
    return SDPBound(upper=cert.upper, raw=cert.lam, status=sol.status.value, method="order2", norm=norm,
                    sizes={"blocks": len(system.orders), "order": system.orders[0],
                           "clique_block": max(system.orders[1:], default=0), "cliques": len(cl),
                           "multipliers": system.n_multipliers, "free_neurons": poly.m},
                    timings={"build": t1 - t0, **tim, "total": time.perf_counter() - t0},
                    details={"solver": sol.solver, "clique_size": clique_size, "penalty": cert.penalty,
                             "min_nu": float(min(cert.nu)), "message": sol.message, **sol.info})

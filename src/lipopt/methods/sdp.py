"""The SDP methods: Shor (order 1), the sparse order-2 moment SDP and LipSDP-Neuron, each certified
from its dual by a rigorous lambda_min bound (certify_sdp / the moment blocks)."""
from __future__ import annotations

from ..errors import InvalidInputError
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lipsdp import lipsdp_neuron
from ..relaxations.moments import order2_bound
from ..relaxations.shor import shor_bound
from .base import MethodOutput, _jsonable

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

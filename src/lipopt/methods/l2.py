"""Layer-structured l2 methods: feasible points of the LipSDP-Neuron LMI found layer by layer
(closed form, or refined by L-BFGS) and certified by a rigorous block LDL^T bound (relaxations.lipsdp_layers)."""
from __future__ import annotations

from ..errors import InvalidInputError
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lipsdp_layers import estimate_bytes, lipsdp_layers
from .base import MethodOutput
from .sdp import _sdp_output


def _run(mode):
    def run(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
        if norm != "2":
            raise InvalidInputError(f"the layer-structured LipSDP bounds the l2 Lipschitz constant; got norm l_{norm}")
        r = lipsdp_layers(net, vec, slopes, mode=mode, time_limit=opts.get("time_limit"))
        return _sdp_output(r)
    run.__name__ = f"run_l2_{mode}"
    run.__doc__ = (f"Layer-structured LipSDP-Neuron ({mode}): multipliers by sequential Schur complements, "
                   "bound certified by a rigorous block LDL^T lambda_min bound.")
    return run


run_l2_fast = _run("fast")
run_l2_opt = _run("opt")


def l2_estimate(problem, opts) -> float:
    """Seconds from shapes: a few dense n^3 products per layer (~1 GFlop/s on one core, measured order)."""
    w = problem.net.widths
    flops = sum(a * b * max(a, b) for a, b in zip(w[:-2], w[1:-1])) + sum(x ** 3 for x in w[:-1])
    return 8 * flops / 1e9


def l2_opt_estimate(problem, opts) -> float:
    return 40 * l2_estimate(problem, opts)


def l2_precheck(problem, opts) -> None:
    from .. import memory
    memory.require(estimate_bytes(problem.net.widths), f"the layer-structured LipSDP (widths {list(problem.net.widths)})",
                   "--method product fits")

"""Thin LP solver adapters and a preference-ordered registry."""
from __future__ import annotations

import importlib.util

from ..errors import InvalidInputError
from .base import SOLUTION_PRESENT, LinearProgram, SolverOutput, Status
from .sdp import SDP_SOLVERS, SDPSolution, SemidefiniteProgram, installed_sdp_solvers, solve_sdp

# name -> (module that must be importable, adapter module)
LP_SOLVERS = {"highs": ("highspy", "highs"), "clarabel": ("clarabel", "clarabel_lp")}


def installed_lp_solvers() -> list[str]:
    return [name for name, (mod, _) in LP_SOLVERS.items() if importlib.util.find_spec(mod) is not None]


def solve_lp(lp: LinearProgram, solver: str = "highs", **options) -> SolverOutput:
    """Solve ``lp`` with the named adapter (options: method, time_limit, threads)."""
    if solver not in LP_SOLVERS:
        raise InvalidInputError(f"unknown LP solver {solver!r}; choose from {', '.join(LP_SOLVERS)}")
    if solver not in installed_lp_solvers():
        raise InvalidInputError(f"LP solver {solver!r} is not installed (pip install {LP_SOLVERS[solver][0]})")
    module = importlib.import_module(f".{LP_SOLVERS[solver][1]}", __name__)
    if solver == "clarabel":
        options.pop("method", None)
    return module.solve(lp, **options)


__all__ = ["LP_SOLVERS", "LinearProgram", "SDP_SOLVERS", "SDPSolution", "SOLUTION_PRESENT", "SemidefiniteProgram",
           "SolverOutput", "Status", "installed_lp_solvers", "installed_sdp_solvers", "solve_lp", "solve_sdp"]

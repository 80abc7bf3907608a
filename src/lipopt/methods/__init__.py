"""Bound methods: one module per family, one registry (``registry.METHODS``) that every consumer reads.

* lp         LiPopt-k: Krivine LP, certified by certify.certify_krivine (methods.lp);
* sdp, sdp2, lipsdp   Shor, sparse order-2 moment SDP, LipSDP-Neuron, certified from their duals by a
             rigorous eigenvalue bound (methods.sdp);
* exact-fgl  exact maximum of the norm-gradient polynomial plus an a-priori rounding bound; exact
             the activation-consistent MIP, whose upper end rests on HiGHS' tolerances (methods.exact);
* product    product of layer operator norms (methods.baselines);
* auto       an anytime portfolio over the registry (methods.auto);
* sampling, ascent    lower bounds (gradient norms at witnesses provably inside the domain).
Every runner runs on the network normalised by exact powers of two (methods.base.normalised).
"""
from __future__ import annotations

from .auto import AUTO_BUDGET, AUTO_FIRST_SEARCH, run_auto
from .base import CLOSE_GAP, MethodOutput, normalised
from .baselines import run_product
from .exact import FIRST_SEARCH, exact_certified, run_exact_fgl, run_exact_mip
from .lp import AUTO_SIMPLEX_COLUMNS, LP_NORMS, MAX_DEGREE, check_degree, run_lp
from .registry import METHODS, Capabilities, Method, applicable, lower_methods, resolve, upper_methods
from .sdp import DEFAULT_CLIQUE_SIZE, run_lipsdp, run_sdp, run_sdp2

# kept for one release: name -> runner of every upper-bound method (experiments and user code use it)
RUNNERS = {name: m.runner for name, m in METHODS.items() if m.kind == "upper"}

__all__ = ["AUTO_BUDGET", "AUTO_FIRST_SEARCH", "AUTO_SIMPLEX_COLUMNS", "CLOSE_GAP", "Capabilities",
           "DEFAULT_CLIQUE_SIZE", "FIRST_SEARCH", "LP_NORMS", "MAX_DEGREE", "METHODS", "Method", "MethodOutput",
           "RUNNERS", "applicable", "check_degree", "exact_certified", "lower_methods", "normalised", "resolve",
           "run_auto", "run_exact_fgl", "run_exact_mip", "run_lipsdp", "run_lp", "run_product", "run_sdp",
           "run_sdp2", "upper_methods"]

"""Exact l_inf FGL of networks with one or two hidden layers by branch and bound.

Write every derivative box as s = m + r*sigma, sigma in [-1, 1] (m, r: midpoint and radius of [lo, hi]).

One hidden layer (v = W_1^T c, A = diag(v) W_0): maximising over s in closed form,
    FGL = max_{t in {-1,1}^n0} sum_j r_j |A_j t| + m^T A t = ||M||_{inf->1},   M = [m^T A; diag(r) A],
where the linear row may carry |.| because t -> -t changes nothing else. ||M t||_1 is even in t, so the
first variable is fixed to +1; we branch on the columns of M (inputs), or on its rows (units) when
they are clearly fewer: max_sigma ||M^T sigma||_1 is the same number.

Two hidden layers (v = W_2^T c, tau the free signs of layer 2, x = W_0 t, y = W_1^T diag(s_2) v = y0 + Y tau):
    FGL = max_{t, tau} sum_i phi_i(x_i y_i),    phi_i(z) = max(lo_i z, hi_i z) = m_i z + r_i |z|,
with s_1 maximised in closed form. We branch on tau first when it has at most TAU_FIRST_MAX signs (the
last hidden layer is usually narrow; once tau is fixed every node bound is a cheap one-factor bound),
otherwise on t first.

Node bounds (closed form, one numpy call per batch of nodes):
  * interval / corner: a unit whose pre-activation range is known exactly (all its inputs fixed) is
    exact; otherwise phi is convex, so its maximum over the box of (x_i, y_i) is at a corner;
  * Russian doll: phi is subadditive (|a + b| <= |a| + |b|, r >= 0), so the free inputs t_k.. add at
    most the FGL of the same network restricted to inputs k.. . These suffix values are computed first,
    from the shortest suffix up, each by the same branch and bound using the shorter ones; the longest
    suffixes are bounded by FGL(k..s) + FGL(s..) instead of being solved (see ``_doll_bounds``).
The incumbent comes from alternating maximisation (each group of variables in closed form given the
others) and 1-flip local search from seeded random starts. The search is depth first, children of a
batch sorted so the best bound is explored first. With a deadline the answer is a bracket
[incumbent, max open bound] with status "time_limit", never a claimed optimum; ``bnb_search`` returns
the search itself, whose later ``run(deadline)`` calls resume it (open nodes, incumbent, doll bounds).

Modules: ``search`` (the depth-first engine and the doll bounds), ``bnb_one`` and ``bnb_two`` (the two
forms); this one checks inputs, evaluates witnesses and dispatches.

Values are exact up to floating-point rounding of the sums (relative error ~ n * 1e-16): pruning uses
bound <= incumbent in floating point; ``rounding_error`` bounds that error.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import SlopeBox
from .fgl_common import BnBResult, check_inputs, evaluate_witness, rounding_bound
from .bnb_one import OneLayerBnB, best_slopes_one, one_layer_matrix, solve_inf_to_one
from .bnb_two import TAU_FIRST_MAX, TwoLayerBnB, TwoLayerForm, solve_two_layer, two_layer_form

__all__ = ["TAU_FIRST_MAX", "BnBResult", "OneLayerBnB", "TwoLayerBnB", "TwoLayerForm", "best_slopes_one",
           "bnb_fgl", "bnb_one_layer", "bnb_search", "bnb_two_layer", "check_inputs", "evaluate_witness",
           "one_layer_matrix", "rounding_bound", "solve_inf_to_one", "solve_two_layer", "two_layer_form"]


def bnb_search(net: Network, c, slopes: SlopeBox | None = None, *, seed: int = 0, russian_doll: bool = True,
               tau_first: bool | None = None, starts: int = 24):
    """The resumable l_inf FGL search (OneLayerBnB / TwoLayerBnB): ``run(deadline) -> BnBResult``."""
    c, slopes = check_inputs(net, c, slopes)
    if net.depth == 1:
        return OneLayerBnB(net, c, slopes, seed=seed, russian_doll=russian_doll, starts=starts)
    if net.depth == 2:
        return TwoLayerBnB(net, c, slopes, seed=seed, russian_doll=russian_doll, tau_first=tau_first,
                           starts=starts)
    raise InvalidInputError(f"branch and bound handles 1 or 2 hidden layers; this network has {net.depth}")


def bnb_fgl(net: Network, c, slopes: SlopeBox | None = None, *, time_limit: float | None = None,
            seed: int = 0, russian_doll: bool = True, tau_first: bool | None = None,
            starts: int = 24) -> BnBResult:
    """Exact l_inf FGL (t in {-1,1}^n0) for one or two hidden layers by branch and bound, in one run."""
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    return bnb_search(net, c, slopes, seed=seed, russian_doll=russian_doll, tau_first=tau_first,
                      starts=starts).run(deadline)


def bnb_one_layer(net: Network, c: np.ndarray, slopes: SlopeBox, *, deadline: float | None = None,
                  seed: int = 0, russian_doll: bool = True, starts: int = 24) -> BnBResult:
    """Exact l_inf FGL of a one-hidden-layer network as ||M||_{inf->1}, in one run."""
    return OneLayerBnB(net, c, slopes, seed=seed, russian_doll=russian_doll, starts=starts).run(deadline)


def bnb_two_layer(net: Network, c: np.ndarray, slopes: SlopeBox, *, deadline: float | None = None,
                  seed: int = 0, russian_doll: bool = True, tau_first: bool | None = None,
                  starts: int = 24) -> BnBResult:
    """Exact l_inf FGL of a two-hidden-layer network, in one run."""
    return TwoLayerBnB(net, c, slopes, seed=seed, russian_doll=russian_doll, tau_first=tau_first,
                       starts=starts).run(deadline)

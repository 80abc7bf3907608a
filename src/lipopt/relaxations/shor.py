"""Shor (order-1 SDP) relaxation of the norm-gradient polynomial, with certified values.

The norm-gradient polynomial P(t, s) = t^T W_0^T diag(s_1) W_1^T ... diag(s_d) W_d^T c is written as a
QCQP in v = [1; z] (``quadratic.build_model``: bilinear for one hidden layer, lifted products
w = s o r for deeper nets), and bounded by the Shor SDP in its SOS/dual form

    min lambda  s.t.  Z = lambda e0 e0^T - Q - sum_k mu_k G_k - sum_k nu_k H_k  >= 0,  mu >= 0,

i.e. lambda - P - sum mu g - sum nu h is a sum of squares of affine forms. The reported ``upper`` is
certified from the solver's multipliers by ``certify.gram.certify_gram`` (in ``methods.sdp``) (any multipliers give a valid
bound; rounding is bounded rigorously). Norms of the input (the gradient gets the dual norm):

* ``"inf"``: t_i^2 <= 1 (the l_inf FGL, dual norm l1 on the gradient);
* ``"2"``:   ||t||^2 <= 1 (a single quadratic constraint; dual norm l2);
* ``"1"``:   max_i |g_i|: 2 n_0 problems with t = +-e_i fixed, max +-(W_0^T x_1)_i. For one hidden layer
  each is a linear function over a box, on which Shor is exact (s_j^2 <= X_jj <= (lo+hi) s_j - lo hi
  forces s in the box), so we evaluate that exact value in closed form with rounding bounds instead of
  solving 2 n_0 SDPs. Deeper nets solve the 2 n_0 SDPs (the one-SDP l1-ball lifting t = p - q,
  sum p + q <= 1 is looser: its Shor relaxation does not see the vertices +-e_i).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .. import memory
from ..errors import InvalidInputError
from ..model.network import Network
from ..slopes import SlopeBox
from ..solvers.sdp import SemidefiniteProgram
from .quadratic import (GramSystem, _stack, build_model, check_c, check_slopes, gradient_forms, products,
                        radius_squared, shrink, unit_forms)

NORMS = ("inf", "2", "1")
MAX_ORDER = 3000  # dense Gram matrices of this order cost ~ 70 MB and a few seconds to certify


@dataclass
class SDPBound:
    """A certified upper bound from an SDP relaxation.

    ``upper`` holds in exact arithmetic; ``raw`` is the solver's objective (not certified);
    ``sizes`` gives the PSD matrix order(s) and constraint counts; ``timings`` seconds per phase.
    """
    upper: float
    raw: float
    status: str
    method: str
    norm: str
    sizes: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def gram_system(order_max: int, ncols: int, Q: tuple, ineq: list, eq: list, R2: float) -> GramSystem:
    """Assemble a GramSystem (shrinking vec(nmax x nmax) storage to the used order)."""
    def cat(parts, which):
        if not parts:
            return sp.csr_array((0, ncols * ncols))
        return sp.csr_array(sp.vstack([shrink(p[which], order_max, ncols) for p in parts]))
    return GramSystem(order=ncols, Q=shrink(Q[0], order_max, ncols), Q_err=shrink(Q[1], order_max, ncols),
                      G=cat(ineq, 0), G_err=cat(ineq, 1), H=cat(eq, 0), H_err=cat(eq, 1), R2=R2)


def shor_sdp(system: GramSystem) -> SemidefiniteProgram:
    """SeDuMi form of  max -lambda  s.t.  Z(lambda, mu, nu) >= 0, mu >= 0  (y = (lambda, mu, nu))."""
    N, m1, m2 = system.order, system.n_ineq, system.n_eq
    m = 1 + m1 + m2
    e00 = sp.csr_array(([-1.0], ([0], [0])), shape=(1, N * N)) if system.lead is None else -system.lead
    psd = sp.vstack([e00, system.G, system.H])
    lp = sp.csr_array((-np.ones(m1), (1 + np.arange(m1), np.arange(m1))), shape=(m, m1))
    A = sp.csr_array(sp.hstack([lp, psd]))
    c = np.concatenate([np.zeros(m1), -system.Q.toarray().ravel()])
    b = np.zeros(m)
    b[0] = -1.0
    return SemidefiniteProgram(c=c, A=A, b=b, l=m1, s=(N,))


def shor_system(net: Network, c, slopes: SlopeBox | None = None, norm: str = "inf", *, mccormick: bool = True,
                tt_products: bool = False):
    """The Gram system (objective, constraints, R^2) of the Shor relaxation for norm "inf" or "2"."""
    if norm not in ("inf", "2"):
        raise InvalidInputError(f"shor_system handles norms inf and 2, not {norm!r}")
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    model = build_model(net, c, slopes, with_t=True, mccormick=mccormick)
    nmax = len(model.lo)
    N = model.ncols
    if N > MAX_ORDER:
        raise InvalidInputError(f"the Shor matrix would have order {N} (limit {MAX_ORDER})")
    memory.require(float(N) * N * memory.BYTES_PER_SDP_ENTRY, f"the Shor SDP (matrix order {N:,})",
                   "a smaller network or --method product fit")
    r0 = gradient_forms(net, model)
    n0 = net.widths[0]
    Q = products(unit_forms(model.t_index, nmax), r0, np.zeros(n0, np.int64), 1, nmax)
    ineq = list(model.ineq)
    ti = model.t_index
    if norm == "inf":
        ineq.insert(0, products(unit_forms(ti, nmax, const=np.ones(n0)),
                                unit_forms(ti, nmax, const=np.ones(n0), coef=-np.ones(n0)),
                                np.arange(n0), n0, nmax))
        if tt_products and n0 > 1:
            i, k = np.triu_indices(n0, 1)
            A, B = [], []
            for si in (1.0, -1.0):
                for sk in (1.0, -1.0):
                    A.append(unit_forms(ti[i], nmax, const=np.ones(len(i)), coef=np.full(len(i), si)))
                    B.append(unit_forms(ti[k], nmax, const=np.ones(len(i)), coef=np.full(len(i), sk)))
            ineq.append(products(_stack(A), _stack(B), np.arange(4 * len(i)), 4 * len(i), nmax))
        R2 = radius_squared(model.lo[:N], model.hi[:N])
    else:  # "2": 1 - ||t||^2 >= 0, exact coefficients
        rows = np.zeros(n0 + 1, np.int64)
        cols = np.concatenate([[0], ti * nmax + ti])
        vals = np.concatenate([[1.0], -np.ones(n0)])
        G = sp.csr_array((vals, (rows, cols)), shape=(1, nmax * nmax))
        ineq.insert(0, (G, sp.csr_array((1, nmax * nmax))))
        R2 = radius_squared(model.lo[:N], model.hi[:N], skip=ti, extra=1.0)
    return gram_system(nmax, N, Q, ineq, model.eq, R2), model

"""Former home of the SDP Gram certificate, kept for one release as a re-export.

Moved: ``certify_gram``, ``gram_matrix``, ``lambda_min_lower_bound``, ``EigenBound``, ``GramCertificate`` to
``lipopt.certify.gram``; ``GramSystem`` to ``lipopt.relaxations.quadratic``; ``U``, ``gamma``, ``up``,
``down``, ``sum_up``, ``sum_down``, ``norm2_bound`` to ``lipopt.rounding``.
"""
from .certify.gram import EigenBound, GramCertificate, certify_gram, gram_matrix, lambda_min_lower_bound
from .relaxations.quadratic import GramSystem
from .rounding import U, down, gamma, norm2_bound, sum_down, sum_up, up

__all__ = ["EigenBound", "GramCertificate", "GramSystem", "U", "certify_gram", "down", "gamma", "gram_matrix",
           "lambda_min_lower_bound", "norm2_bound", "sum_down", "sum_up", "up"]

"""Certification: every number lipopt reports as certified is made here, from a relaxation's data and any
(possibly inaccurate) solver answer, with the binary64 rules of ``lipopt.rounding``.

``krivine`` (LP hierarchy: Krivine / Handelman multipliers), ``gram`` (SDP: Gram identity and a rigorous
lambda_min bound), ``moments`` (sparse order-2 moment SDP, block by block). This package sits downstream
of ``relaxations`` (it imports their data types: KrivineStructure, GramSystem, MomentSystem); relaxations
never import it at module level.
"""
from .krivine import UNIT_ROUNDOFF, Certificate, certify_krivine

__all__ = ["UNIT_ROUNDOFF", "Certificate", "certify_krivine"]

"""lipopt: certified upper bounds on the Lipschitz constant of neural networks (LiPopt)."""
from .api import lower_bound, upper_bound
from .errors import InvalidInputError, LipoptError, SolverFailure, UncoveredMonomialError
from .model import Network, load
from .result import Result

__version__ = "0.1.0"
__all__ = ["InvalidInputError", "LipoptError", "Network", "Result", "SolverFailure",
           "UncoveredMonomialError", "load", "lower_bound", "upper_bound"]

"""Exception family: the CLI maps InvalidInputError to exit 2 and SolverFailure to exit 3."""


class LipoptError(Exception):
    """Base class of every error lipopt raises on purpose."""


class InvalidInputError(LipoptError, ValueError):
    """The model, domain or options are malformed or unsupported."""


class UncoveredMonomialError(InvalidInputError):
    """A monomial of the polynomial lies in no clique of the certificate (soundness rule 1)."""


class SolverFailure(LipoptError, RuntimeError):
    """The solver failed, timed out or returned no usable point; never reported as a bound."""


class OutOfTime(SolverFailure):
    """The time limit ran out before the method had any certified bound (more time may give one)."""

"""Memory budget: sizes are estimated from shapes and checked before anything large is allocated.

``limit(bytes)`` sets the budget for the current call (a context variable, so threads and nested calls
see their own); ``require(nbytes, what, hint)`` refuses with InvalidInputError naming the estimate, the
limit and what would fit. The per-item byte costs below were measured on this code (peak RSS of the
process tree; see the note of the commit that introduced them) and round up.
"""
from __future__ import annotations

import contextlib
import contextvars

from .errors import InvalidInputError
from .options import default_memory_limit, fmt_bytes

_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("lipopt_memory_limit", default=None)

# bytes per item, measured (peak RSS / count) and rounded up
BYTES_PER_GRAM_PRODUCT = 160   # quadratic.products: index, value, error and CSR arrays per a_k b_k^T entry
BYTES_PER_SDP_ENTRY = 450      # dense PSD block entries held by SDPA and the eigenvalue certificate
BYTES_PER_PATH_VAR = 40        # path table of the norm-gradient polynomial: per path and layer
BYTES_PER_LP_COLUMN = 400      # Krivine LP: template, matrix, HiGHS copies per column (k <= 4)
BYTES_PER_SAMPLE_ENTRY = 48    # sampled gradients: points, activations, backward vectors per entry


def current() -> int:
    value = _LIMIT.get()
    return default_memory_limit() if value is None else value


@contextlib.contextmanager
def limit(nbytes: int | None):
    token = _LIMIT.set(nbytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def require(nbytes: float, what: str, hint: str = "") -> None:
    """Refuse when ``nbytes`` (an estimate) exceeds the current memory limit."""
    cap = current()
    if nbytes > cap:
        fits = f"; {hint}" if hint else ""
        raise InvalidInputError(f"{what} needs about {fmt_bytes(nbytes)}, above the memory limit of "
                                f"{fmt_bytes(cap)} (memory_limit){fits}")


def fits(nbytes: float) -> bool:
    return nbytes <= current()

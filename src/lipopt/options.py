"""Option validation: every numeric or enumerated option of the API is checked here, once, before any
work starts (the CLI passes its flags straight through and rewrites the names in its error line).

Each check returns the normalised value or raises InvalidInputError naming the option by its Python
name; ``cli.CLI_SPELLING`` maps those names to the flags.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .errors import InvalidInputError

MAX_SAMPLES = 10_000_000        # sampled gradients are evaluated in chunks; beyond this it is minutes
MAX_SEED = 2**63 - 1
MAX_TIME_LIMIT = 7 * 24 * 3600.0
DEFAULT_MEMORY_SHARE = 0.5      # default memory limit: half of the machine's physical memory


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def time_limit(value, name: str = "time_limit", allow_none: bool = True) -> float | None:
    """A positive, finite number of seconds (None = no limit, where allowed)."""
    if value is None and allow_none:
        return None
    if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(float(value)) and 0 < float(value) <= MAX_TIME_LIMIT):
        raise InvalidInputError(f"{name} must be a positive number of seconds (at most {MAX_TIME_LIMIT:g}), "
                                f"got {value!r}")
    return float(value)


def positive_int(value, name: str, maximum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be at most {maximum:,}, got {value:,}")
    return int(value)


def samples(value) -> int:
    return positive_int(value, "samples", MAX_SAMPLES)


def seed(value) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_SEED:
        raise InvalidInputError(f"seed must be an integer in [0, 2^63 - 1], got {value!r}")
    return int(value)


def choice(value, name: str, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def physical_memory() -> int | None:
    """Bytes of physical memory (sysconf), or None where it cannot be read."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None
    return pages * size if pages > 0 and size > 0 else None


def default_memory_limit() -> int:
    return int(DEFAULT_MEMORY_SHARE * (physical_memory() or 8 << 30))


def memory_limit(value) -> int:
    """Bytes; None = the default share of physical memory. Accepts a number of bytes or a float of GB
    given as a string like "4GB" / "512MB"."""
    if value is None:
        return default_memory_limit()
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        units = {"TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3, "T": 1e12, "G": 1e9, "M": 1e6, "K": 1e3, "B": 1.0}
        for unit, factor in units.items():
            if text.endswith(unit):
                try:
                    value = float(text[:-len(unit)]) * factor
                except ValueError:
                    break
                break
        else:
            try:
                value = float(text)
            except ValueError:
                pass
    if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(float(value)) and float(value) >= 1e6):
        raise InvalidInputError(f"memory_limit must be a size of at least 1MB (e.g. 4GB), got {value!r}")
    return int(value)


def input_shape(value, n_inputs: int | None = None) -> tuple[int, ...] | None:
    """Positive sizes without the batch dimension; when the network's input width is already known
    (npz models, Networks), their product must equal it."""
    if value is None:
        return None
    try:
        shape = tuple(value) if np.ndim(value) else (value,)
    except TypeError:
        raise InvalidInputError(f"input_shape must be a tuple of positive integers, got {value!r}") from None
    if not shape or not all(_is_int(s) and s >= 1 for s in shape):
        shown = " ".join(map(str, shape)) if shape else "nothing"
        raise InvalidInputError(f"input_shape must be positive integers without the batch dimension, got {shown}")
    shape = tuple(int(s) for s in shape)
    if n_inputs is not None and math.prod(shape) != n_inputs:
        raise InvalidInputError(f"input_shape {shape} has {math.prod(shape):,} entries but the model has "
                                f"{n_inputs:,} inputs")
    return shape


def fmt_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"

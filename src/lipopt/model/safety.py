"""Checks shared by the model loaders: reading a file runs no code from it, is bounded in memory, and every
array that reaches a Network is real, finite and named in the error otherwise.

* ``MEMORY_BUDGET``: the most bytes a model file may make us allocate (25 % of physical RAM), checked on
  the sizes a file *declares* (zip members, .npy headers) before any data is read.
* ``check_zip``: every member of a zip archive (.npz, torch.save, TorchScript) is read once and its CRC-32
  compared, so a corrupted weight byte is an error instead of a wrong (yet "certified") bound.
* ``real_array`` / ``check_dtype``: one definition of a valid model array (bool/int/uint/float, finite).
* ``one_line`` / ``clean_errors``: error messages are one line without escape sequences or control
  characters (they come from file names, zip member names and third-party exception texts).
"""
from __future__ import annotations

import functools
import math
import os
import re
import struct
import unicodedata
import zipfile
import zlib

import numpy as np

from ..errors import InvalidInputError
from ..options import physical_memory


# Fixed per machine (physical RAM, not "currently free"), so the same file is accepted or refused every time.
MEMORY_BUDGET: int = (physical_memory() or 16 * 2**30) // 4

REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floating point
_KIND_NAMES = {"c": "complex numbers would lose their imaginary part", "M": "dates, not numbers",
               "m": "time spans, not numbers", "O": "pickled Python objects", "V": "a structured / void type",
               "U": "text", "S": "bytes"}


class InvalidArrayError(InvalidInputError):
    """A model array with a non-real dtype or non-finite values (loaders re-raise it instead of listing
    the layer as 'unsupported')."""


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_budget(nbytes: int, what: str) -> None:
    """Refuse a file that declares more than MEMORY_BUDGET bytes (before reading it)."""
    if nbytes > MEMORY_BUDGET:
        raise InvalidInputError(f"{what} declares {human_bytes(nbytes)} of data, more than the "
                                f"{human_bytes(MEMORY_BUDGET)} allowed for a model file (a quarter of the "
                                f"machine's memory): malformed or too large")


def check_dtype(dtype, name: str, allow_strings: bool = False) -> np.dtype:
    """``dtype`` if it is real numeric (or a string dtype when ``allow_strings``), else InvalidArrayError."""
    dtype = np.dtype(dtype)
    if dtype.kind in REAL_KINDS and dtype.fields is None and dtype.subdtype is None:
        return dtype
    if allow_strings and dtype.kind in "US":
        return dtype
    kind = _KIND_NAMES.get(dtype.kind, f"kind {dtype.kind!r}")
    raise InvalidArrayError(f"{name} has dtype {dtype} ({kind}); model arrays must be real numbers "
                            f"(bool, int, uint or float)")


def real_array(a, name: str) -> np.ndarray:
    """``a`` as a float64 ndarray after checking its dtype is real numeric and every value is finite."""
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise InvalidArrayError(f"{name} is not a numeric array ({first_line(exc)})") from None
    if arr.dtype.kind == "O":
        raise InvalidArrayError(f"{name} is not a numeric array (got Python objects of type "
                                f"{type(arr.flat[0]).__name__ if arr.size else 'object'})")
    check_dtype(arr.dtype, name)
    with np.errstate(over="ignore"):  # float128 beyond float64's range becomes inf, reported just below
        out = arr.astype(np.float64, copy=False)
    check_finite(out, name)
    return out


def check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise InvalidArrayError(f"{name} contains NaN or Inf ({int(bad.sum())} of {bad.size} values)")


# ------------------------------------------------------------------------------------------ zip archives

def check_zip(z: zipfile.ZipFile, source: str) -> None:
    """Budget on the declared (uncompressed) member sizes, then every member read to the end so that
    zipfile compares its CRC-32: a corrupted member is an InvalidInputError naming it."""
    infos = z.infolist()
    check_budget(sum(i.file_size for i in infos), source)
    for info in infos:
        try:
            with z.open(info) as f:
                while f.read(1 << 20):
                    pass
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
                ValueError, struct.error) as exc:  # RuntimeError: encrypted; NotImplementedError: compression
            raise InvalidInputError(f"{source}: archive member {info.filename!r} is corrupted or unreadable "
                                    f"({first_line(exc)})") from None


def open_zip(path, source: str, what: str = "a readable zip archive") -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error) as exc:
        raise InvalidInputError(f"{source}: not {what} ({first_line(exc)})") from None


# -------------------------------------------------------------------------------------------- messages

_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|"
                      r"[ -/]*[0-~])|\x9b[0-?]*[ -/]*[@-~]")


def one_line(text, limit: int = 1000) -> str:
    """``text`` on one line: ANSI/terminal escape sequences removed, control and format characters
    (newlines, tabs, bidi overrides, ...) replaced by spaces, runs of spaces collapsed, at most ``limit``."""
    text = _ESCAPES.sub("", str(text))
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    text = re.sub(r" {2,}", " ", text).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (escape sequences removed), or its type name."""
    text = _ESCAPES.sub("", str(exc))
    for line in text.splitlines():
        if line.strip():
            return one_line(line, limit)
    return type(exc).__name__


def clean_errors(func):
    """Decorator for loaders: an InvalidInputError leaves with a one-line message; low-level read errors
    that slipped through (zlib, struct, EOF, OS errors) become one InvalidInputError instead of a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InvalidInputError as exc:
            exc.args = (one_line(str(exc)),)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, struct.error, OSError, UnicodeError) as exc:
            what = args[0] if args and isinstance(args[0], (str, os.PathLike)) else "model"
            raise InvalidInputError(one_line(f"{os.fspath(what)}: unreadable model file "
                                             f"({first_line(exc)})")) from None
    return wrapper


def declared_elements(shape) -> int:
    return math.prod(int(s) for s in shape)

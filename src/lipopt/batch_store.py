"""Result store of ``lipopt batch``: an append-only CSV journal whose rows verify themselves on resume.

Every row carries ``checksum`` = the first 16 hex digits of sha256 over a canonical serialisation of its
fields: ``json.dumps([field, ...])`` in ``COLUMNS`` order after ``normalize_row`` (ints as ints, floats as
Python floats, which json writes with ``repr`` so they round-trip exactly; text on one line; empty = None).
On resume a row is kept only if it parses and its recomputed checksum matches: a bound cut from 97.79 to
``97.`` parses to 97.0, hashes differently and is recomputed instead of being reported as certified. This
detects accidental damage (truncation, bit rot, editing), not a forger, who can recompute the hash.

Writing: the driver is the only writer (``flock``). Each chunk's rows are one ``os.write`` on an
``O_APPEND`` descriptor followed by ``fsync``, so a crash leaves at most a partial *last* line, which then
fails verification like any damaged row. Every record is exactly one line (text fields are put on one
line), so the journal is read line by line: a line of non-UTF-8 bytes costs that line, not the file.
When anything was dropped the journal is rewritten (to a new locked file, renamed over the old one)
with only the verified rows before anything is appended. A file whose first line is not the lipopt
batch header (someone else's CSV) is refused, never overwritten.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path

from .errors import InvalidInputError

COLUMNS = ("index", "label", "output", "upper_bound", "lower_bound", "gap", "status", "seconds",
           "lp_rows", "lp_columns", "lp_nonzeros", "fixed_neurons", "hidden_neurons",
           "lp_structures_built", "error")
CHECKSUM = "checksum"
FILE_COLUMNS = COLUMNS + (CHECKSUM,)
_INT_COLUMNS = {"index", "label", "output", "lp_rows", "lp_columns", "lp_nonzeros", "fixed_neurons",
                "hidden_neurons", "lp_structures_built"}
_FLOAT_COLUMNS = {"upper_bound", "lower_bound", "gap", "seconds"}
_HEADER = (",".join(FILE_COLUMNS) + "\n").encode()
_OLD_HEADER = ",".join(COLUMNS)  # before rows carried checksums: readable, but no row is verified
MAX_ERROR_CHARS = 500


def one_line(s) -> str:
    """Whitespace runs (newlines included) collapsed to one space, cut to MAX_ERROR_CHARS."""
    s = " ".join(str(s).split())
    return s if len(s) <= MAX_ERROR_CHARS else s[: MAX_ERROR_CHARS - 3] + "..."


def normalize_row(row: dict) -> dict:
    """The row with plain Python values (what is written and hashed): int, float, one-line str or None."""
    out = {}
    for c in COLUMNS:
        v = row.get(c)
        if v is None:
            out[c] = None
        elif c in _INT_COLUMNS:
            out[c] = int(v)
        elif c in _FLOAT_COLUMNS:
            out[c] = float(v)
        else:
            v = one_line(v)
            out[c] = v or None  # CSV cannot tell "" from missing: both are None
    return out


def error_rows(items, exc) -> list[dict]:
    """Rows recording that ``exc`` hit every item of ``items`` [(index, x, output, margin, label), ...]."""
    msg = one_line(f"{type(exc).__name__}: {exc}")
    rows = []
    for i, _x, out, _m, label in items:
        row = dict.fromkeys(COLUMNS)
        row.update(index=i, label=label, output=out, status="error", error=msg)
        rows.append(row)
    return rows


def row_checksum(row: dict) -> str:
    """sha256 (16 hex digits) of json.dumps of the normalised fields in COLUMNS order (floats by repr)."""
    row = normalize_row(row)
    text = json.dumps([row[c] for c in COLUMNS], separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def encode_rows(rows) -> bytes:
    """CSV lines (one per row, checksum last); floats are written with repr so they read back exactly."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        r = normalize_row(r)
        w.writerow(["" if r[c] is None else repr(r[c]) if c in _FLOAT_COLUMNS else r[c] for c in COLUMNS]
                   + [row_checksum(r)])
    return buf.getvalue().encode("utf-8")


def _parse(fields) -> dict:
    row = {}
    for c, v in zip(COLUMNS, fields):
        if v == "" or v is None:
            row[c] = None
        elif c in _INT_COLUMNS:
            row[c] = int(v)
        elif c in _FLOAT_COLUMNS:
            row[c] = float(v)
        else:
            row[c] = v
    return row


def verify_line(text: str) -> tuple[dict | None, str]:
    """(row, "") if the line parses into all fields and its checksum matches, else (None, reason)."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return None, "unparsable"
    if len(fields) != len(FILE_COLUMNS):
        return None, "unparsable"
    try:
        row = _parse(fields)
    except (ValueError, OverflowError):
        return None, "unparsable"
    if row["index"] is None:
        return None, "unparsable"
    if not fields[-1]:
        return None, "no checksum"
    try:
        ok = row_checksum(row) == fields[-1]
    except (ValueError, OverflowError):
        ok = False
    return (normalize_row(row), "") if ok else (None, "checksum mismatch")


class ResultStore:
    """Rows by index, persisted in ``out`` (.csv) or streamed to ``out + '.journal.csv'`` (.parquet).

    Use: ``open()`` (lock), ``load()`` (verified rows), ``prepare()`` (repair the journal, write the
    header), ``append(rows)`` ..., ``finalize(rows)``, ``close()``. After ``load``, ``failed_verification``
    counts the dropped rows and ``problems`` says why (reason -> count).
    """

    def __init__(self, out):
        self.out = Path(out)
        suffix = self.out.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise InvalidInputError(f"out must end in .csv or .parquet, got {self.out}")
        if not self.out.parent.is_dir():
            raise InvalidInputError(f"the directory of out {self.out} does not exist")
        self.parquet = suffix == ".parquet"
        if self.parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise InvalidInputError("parquet output needs pyarrow (pip install 'lipopt[dask]'); "
                                        "or write .csv") from None
        self.journal = self.out.with_name(self.out.name + ".journal.csv") if self.parquet else self.out
        self.meta_path = self.out.with_name(self.out.name + ".meta.json")
        self._fd = None
        self._locked = False
        self._stale_fds: list[int] = []  # replaced journals: kept locked until close (one writer)
        self._journal_rows: dict[int, dict] = {}
        self._rewrite = False
        self.problems: Counter = Counter()
        self.unreadable = ""  # why a parquet out could not be read at all

    @property
    def failed_verification(self) -> int:
        return sum(self.problems.values())

    def problem_line(self) -> str:
        """One line: how many rows were dropped and why, and whether the parquet out was unreadable."""
        parts = []
        if self.unreadable:
            parts.append(f"{self.out} is unreadable ({self.unreadable}), all its rows are recomputed")
        if self.problems:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.problems.items()))
            n = self.failed_verification
            parts.append(f"{n} row{'s' if n != 1 else ''} of {self.out} failed verification ({why}); "
                         "recomputing them")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------------- reading

    def load(self) -> dict[int, dict]:
        """Verified rows by index (later rows win); damaged rows are counted in ``problems``."""
        rows: dict[int, dict] = {}
        self.problems, self.unreadable = Counter(), ""
        if self.parquet and self.out.exists():
            rows.update(self._load_parquet())
        if self.journal.exists():
            self._journal_rows = self._load_journal(self.journal.read_bytes())
            rows.update(self._journal_rows)
        return rows

    def _not_ours(self, path, why: str) -> InvalidInputError:
        return InvalidInputError(f"{path} is not a lipopt batch file ({why}); refusing to overwrite it: "
                                 "choose another out, or delete it to start over")

    def _load_parquet(self) -> dict[int, dict]:
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(self.out)
            records = table.to_pylist()
        except Exception as exc:  # damaged bytes: pyarrow raises many types
            if not self.meta_path.exists():
                raise self._not_ours(self.out, f"unreadable parquet: {one_line(exc)[:200]}") from None
            self.unreadable = one_line(exc)[:200]  # ours (it has a meta file): recompute all its rows
            return {}
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise self._not_ours(self.out, f"no column {missing[0]!r}")
        rows = {}
        for rec in records:
            try:
                row = normalize_row(rec)
                ok = CHECKSUM in rec and rec[CHECKSUM] == row_checksum(row)
            except (TypeError, ValueError, OverflowError):
                ok = False
            if ok and row["index"] is not None:
                rows[row["index"]] = row
            else:
                self.problems["no checksum" if not rec.get(CHECKSUM) else "checksum mismatch"] += 1
        return rows

    def _load_journal(self, data: bytes) -> dict[int, dict]:
        rows: dict[int, dict] = {}
        if not data or _HEADER.startswith(data):  # empty, or a header cut by a crash
            self._rewrite = bool(data)
            return rows
        lines = data.split(b"\n")
        last = lines.pop()  # b"" when the file ends with a newline; else a line cut by a crash
        if not lines:
            raise self._not_ours(self.journal, "no lipopt batch header")
        try:
            header = lines[0].rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise self._not_ours(self.journal, "its first line is not text") from None
        if header != _HEADER.decode().rstrip("\n") and header != _OLD_HEADER:
            shown = one_line(header)[:60]
            raise self._not_ours(self.journal, f"first line {shown!r} is not the lipopt batch header")
        old = header == _OLD_HEADER
        body = [(ln, False) for ln in lines[1:]] + ([(last, True)] if last else [])
        for raw, cut in body:
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
                row, reason = (None, "no checksum") if old else verify_line(text)
            except UnicodeDecodeError:
                row, reason = None, "not UTF-8"
            if row is None:
                self.problems["cut-off last line" if cut else reason] += 1
                continue
            rows[row["index"]] = row
        self._rewrite = bool(self.problems) or old or bool(last)
        return rows

    # ------------------------------------------------------------------------------------- writing

    def open(self) -> None:
        """Open the journal for appending and lock it: one writer per out file."""
        self._fd = self._open_locked(self.journal, os.O_CREAT)

    def _open_locked(self, path: Path, flags: int) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | flags, 0o644)
        except OSError as exc:  # a directory, no permission, ...
            raise InvalidInputError(f"cannot write {path} ({exc.strerror or exc})") from None
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            os.close(fd)
            self.close()
            raise InvalidInputError(f"another lipopt batch is writing to {self.journal}") from None
        self._locked = True
        return fd

    def prepare(self) -> None:
        """Before appending: replace a damaged journal by its verified rows; write the header if empty."""
        if self._rewrite:
            tmp = self.journal.with_name(self.journal.name + ".repair.tmp")
            fd = self._open_locked(tmp, os.O_CREAT | os.O_TRUNC)
            self._stale_fds.append(self._fd)
            self._fd = fd
            self._write(_HEADER + encode_rows(self._journal_rows[i] for i in sorted(self._journal_rows)))
            os.replace(tmp, self.journal)
            self._rewrite = False
        elif os.fstat(self._fd).st_size == 0:
            self._write(_HEADER)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def append(self, rows) -> None:
        if rows:
            self._write(encode_rows(rows))

    def close(self) -> None:
        """Release the lock; a journal of this run that holds no row (e.g. refused run) is removed."""
        if self._fd is not None:
            if self._locked and self._holds_no_rows():
                self.journal.unlink(missing_ok=True)
                if not self.out.exists():
                    self.meta_path.unlink(missing_ok=True)  # it described nothing
            os.close(self._fd)
            self._fd = None
        for fd in self._stale_fds:
            os.close(fd)
        self._stale_fds = []
        self._locked = False

    def _holds_no_rows(self) -> bool:
        """The journal is still our file (not replaced by finalize) and holds nothing or only the header."""
        st = os.fstat(self._fd)
        try:
            same = os.stat(self.journal).st_ino == st.st_ino
        except FileNotFoundError:
            return False
        # compare the bytes, not only the size: a short foreign file that was refused must survive
        return same and st.st_size <= len(_HEADER) and self.journal.read_bytes() in (b"", _HEADER)

    def finalize(self, rows: dict[int, dict]) -> None:
        """Rewrite ``out`` atomically: one row per index, sorted, each with its checksum."""
        ordered = [normalize_row(rows[i]) for i in sorted(rows)]
        tmp = self.out.with_name(self.out.name + ".tmp")
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq
            types = {c: pa.int64() if c in _INT_COLUMNS else pa.float64() if c in _FLOAT_COLUMNS else pa.string()
                     for c in COLUMNS}
            cols = {c: pa.array([r[c] for r in ordered], type=types[c]) for c in COLUMNS}
            cols[CHECKSUM] = pa.array([row_checksum(r) for r in ordered], type=pa.string())
            pq.write_table(pa.table(cols), tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(_HEADER + encode_rows(ordered))
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.out)
        if self.parquet and self.journal.exists():
            self.journal.unlink()

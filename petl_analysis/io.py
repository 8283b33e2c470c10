"""Crash-safe file output: atomic whole-file writes and an append-only JSON-lines trial log.

Every results file is written through these helpers, so an interrupted run never leaves a half-written artefact,
and a killed probe or sweep loses at most the trial in flight.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import PetlError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check it is writable, or raise a one-line :class:`PetlError`."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PetlError(f"cannot create output directory {str(p)!r}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK):
        raise PetlError(f"output directory {str(p)!r} is not writable")
    return p


def check_output_path(path: str | os.PathLike, *, directory: bool = False, what: str = "output") -> Path:
    """Check, before any work starts, that ``path`` can be written: a file (``directory=False``) or a folder, its
    missing parents created on write. Raises a one-line :class:`PetlError` otherwise, so that a long run does not
    end in a traceback with its result lost.

    Writability is tried, not assumed (``os.access`` says yes to root under ``/sys``): a temporary file is
    created and removed in the nearest existing folder; nothing else is written and no folder is created."""
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise PetlError(f"{what} {str(p)!r} is a file; expected a directory (or a path where one can be made)")
    if not directory and p.is_dir():
        raise PetlError(f"{what} {str(p)!r} is a directory; expected a file name (e.g. {str(p / 'out.json')!r})")
    folder = p if directory else (p.parent if str(p.parent) else Path("."))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        action = f"create output directory {str(p)!r} ({what})" if directory else f"write {what} {str(p)!r}"
        raise PetlError(f"cannot {action}: {str(folder)!r} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".petl-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PetlError(
            f"cannot write {what} {str(p)!r}: directory {str(folder)!r} is not writable ({e.strerror or e})"
        ) from None
    return p


def current_umask() -> int:
    """The process umask (read from ``/proc`` where it can be, so no other thread sees a changed umask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no read-only query exists elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask), not the ``0o600``
    of :func:`tempfile.mkstemp`, so artefacts on shared filesystems stay readable by the group as usual.
    """
    p = Path(path)
    if p.is_dir():
        raise PetlError(f"cannot write {str(p)!r}: it is a directory; expected a file name")
    ensure_writable_dir(p.parent if str(p.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:  # e.g. root under /sys, where os.access says writable
        raise PetlError(
            f"cannot write {str(p)!r}: directory {str(p.parent)!r} is not writable ({e.strerror or e})"
        ) from None
    try:
        if hasattr(os, "fchmod"):  # POSIX; elsewhere mkstemp's mode is the platform's default
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON document, turning missing files and syntax errors into one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise PetlError(f"{what} {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PetlError(f"{what} {str(p)!r} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise PetlError(f"{what} {str(p)!r} is not a UTF-8 text file") from None


class JsonlLog:
    """Append-only log of JSON records, one per line, fsync'ed after each append.

    A crash can at worst leave a final line without its newline; :meth:`read` drops such a torn tail (it was the
    record in flight) but reports any *other* malformed line with its line number.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record. Costs O(1) in the size of the log (a long sweep appends thousands): only the last byte
        is read, to find a torn tail."""
        line = json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n"
        ensure_writable_dir(self.path.parent if str(self.path.parent) else ".")
        self._drop_torn_tail()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _drop_torn_tail(self) -> None:
        """Cut a last line without its newline (the record in flight when a writer died); reads the whole file only
        then."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        atomic_write_bytes(self.path, data[:cut])

    def read(self) -> list[dict[str, Any]]:
        return list(self.iter_records())

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for _, rec in self.iter_numbered():
            yield rec

    def where(self, lineno: int) -> str:
        """How error messages name record ``lineno`` (1-based line number)."""
        return f"results file {str(self.path)!r} line {lineno}"

    def iter_numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line number, record)`` pairs; raises a one-line :class:`PetlError` naming the file and line."""
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        torn_tail = not text.endswith("\n")
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if torn_tail and i == len(lines):
                    return  # the record being written when the process died
                raise PetlError(f"{self.where(i)} is not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise PetlError(f"{self.where(i)}: expected a JSON object, got {type(rec).__name__}")
            yield i, rec


class MemoryLog:
    """In-memory stand-in for :class:`JsonlLog` when no results file is wanted (library use, tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        return list(self.records)

    def iter_numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        yield from enumerate(list(self.records), start=1)

    def where(self, lineno: int) -> str:
        return f"in-memory results record {lineno}"

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

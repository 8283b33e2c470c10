"""Versioned, JSON-serialisable artefacts passed between pipeline stages.

Every stage hands the next a small dataclass (``ProbeResult``, ``Ranking``, ``Plan``, ``RunResult``,
``SweepResult``) that users can save, inspect, edit and pass back on the command line. Each artefact class names
its ``SCHEMA`` and ``VERSION``; a file of an older version is migrated on load (``MIGRATIONS``), one of another
schema or an unknown version is a one-line error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from ._version import __version__
from .constraints import describe, invalid
from .errors import PetlError
from .io import atomic_write_json, read_json

A = TypeVar("A", bound="Artefact")
#: The keys of an artefact file that are not its fields.
HEADER = ("schema", "version", "tool_version")
#: Where loading says it left out fields of a newer release (the CLI prints the library's notes).
logger = logging.getLogger("petl_analysis")

#: The trial encoding moved to :mod:`petl_analysis.trials`; these names still import from here.
_MOVED_TO_TRIALS = ("key_json", "trial_payload", "spec_from_payload")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_TRIALS:
        from . import trials

        return getattr(trials, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def persisted_fields(obj: Any) -> list[dataclasses.Field]:
    """The fields of a dataclass that its JSON holds: all but those marked ``metadata={"transient": True}`` (state
    kept in memory only, e.g. the fitted curve behind a d90)."""
    return [f for f in dataclasses.fields(obj) if not f.metadata.get("transient")]


def to_jsonable(obj: Any) -> Any:
    """Recursively convert dataclasses, tuples and numpy scalars into plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(stored_value(obj, f.name)) for f in persisted_fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()  # numpy / torch scalar
    return obj


def stored_value(obj: Any, name: str) -> Any:
    """A dataclass field's value as JSON holds it: through the class's ``JSON_ENCODING`` (``{field: {value: as
    written}}``: values written as files made before the field took them hold them; the class reads those back
    itself), else as it is."""
    value = getattr(obj, name)
    encoding = getattr(type(obj), "JSON_ENCODING", {}).get(name)
    return encoding.get(value, value) if encoding and isinstance(value, str) else value


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _type_text(tp: Any) -> str:
    """``float | None`` as a message says it: ``a float or None``."""
    args = get_args(tp) if _is_union(tp) else (tp,)
    if not all(isinstance(a, type) for a in args):  # list[str] | None and the like: the hint itself
        return str(tp)
    return describe([None if a is type(None) else a for a in args])


def _dataclass_from_jsonable(tp: Any, value: Any, where: str, ignored: list[str] | None) -> Any:
    """:func:`from_jsonable` of a dataclass: its persisted fields, legacy values for fields it gained later, and a
    one-line error naming a nested record."""
    if not isinstance(value, dict):
        raise invalid(where or tp.__name__, "an object", value)
    hints = get_type_hints(tp)
    kwargs = {}
    names = {f.name for f in persisted_fields(tp) if f.init}
    unknown = set(value) - names
    if unknown and ignored is None:
        raise PetlError(f"{where or tp.__name__}: unknown field(s) {sorted(unknown)}; expected {sorted(names)}")
    if unknown:
        ignored.extend(f"{where}.{k}" if where else k for k in sorted(unknown))
    # A field added after records existed: a record that lacks it was made under its legacy value.
    kwargs.update({k: v for k, v in getattr(tp, "LEGACY_VALUES", {}).items() if k not in value})
    for f in persisted_fields(tp):
        if not f.init or f.name not in value:
            continue
        kwargs[f.name] = from_jsonable(
            hints[f.name], value[f.name], f"{where}.{f.name}" if where else f.name, ignored=ignored
        )
    try:
        return tp(**kwargs)
    except TypeError as e:
        raise PetlError(f"{where or tp.__name__}: {e}") from None
    except PetlError as e:
        if "." not in where and "[" not in where:  # the artefact itself: the caller names the file
            raise
        raise PetlError(f"{where}: {e}") from None  # a nested record: say which one


def from_jsonable(tp: Any, value: Any, where: str = "", *, ignored: list[str] | None = None) -> Any:
    """Inverse of :func:`to_jsonable` guided by type hints (nested dataclasses, lists, dicts, tuples, Optional).

    A field a dataclass does not have is an error, unless ``ignored`` is a list: it is then left out and its path
    appended there (a record written by a newer release, :meth:`Artefact.from_dict`)."""
    if tp is Any or value is None:
        return value
    if _is_union(tp):
        for a in (a for a in get_args(tp) if a is not type(None)):
            try:
                return from_jsonable(a, value, where, ignored=ignored)
            except (TypeError, ValueError, KeyError):
                continue
        raise invalid(where or "value", _type_text(tp), value)
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass_from_jsonable(tp, value, where, ignored)
    if origin in (list, list):
        (arg,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise invalid(where, "a list", value)
        return [from_jsonable(arg, v, f"{where}[{i}]", ignored=ignored) for i, v in enumerate(value)]
    if origin in (tuple, tuple):
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise invalid(where, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v, where, ignored=ignored) for v in value)
        return tuple(from_jsonable(a, v, where, ignored=ignored) for a, v in zip(args, value))
    if origin in (dict, dict):
        _, vt = get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise invalid(where, "an object", value)
        return {k: from_jsonable(vt, v, f"{where}.{k}", ignored=ignored) for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float:  # a garbled number would otherwise surface later as a TypeError deep in the analysis
        raise invalid(where, "a number", value)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise invalid(where, describe([tp]), value)
    return value


def _release(version: Any) -> tuple[int, ...]:
    """``"0.12.1"`` -> ``(0, 12, 1)`` (the leading numbers; ``()`` for anything else)."""
    numbers = re.match(r"\d+(\.\d+)*", str(version or ""))
    return tuple(int(n) for n in numbers.group(0).split(".")) if numbers else ()


@dataclasses.dataclass
class Artefact:
    """Base class: subclasses are dataclasses with ``SCHEMA`` and ``VERSION`` class variables.

    The one persistence convention of every JSON the tool writes: a header (``schema``, ``version``,
    ``tool_version``) and the fields, written atomically (:meth:`save`).

    - ``MIGRATIONS[v]`` turns the body (the fields) of a version-``v`` file into that of version ``v + 1``, so files
      written by an older release load (as timm's ``checkpoint_filter_fn`` converts old checkpoints) and stay
      byte-identical on disk; a version above ``VERSION`` is refused (its fields may mean something else).
    - A field this release does not know, in a file a newer release wrote (``tool_version`` above ours), is left
      out with a one-line warning (as peft drops unknown config keys): releases add optional fields without a new
      ``version``. From this release or an older one, an unknown field is an error (a typo in an edited file).
    - :meth:`read_header` is where a file of an older layout (another header, or none) is recognised.
    """

    SCHEMA: ClassVar[str] = "artefact"
    VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def to_dict(self) -> dict[str, Any]:
        body = to_jsonable(self)
        return {"schema": self.SCHEMA, "version": self.VERSION, "tool_version": __version__, **body}

    @classmethod
    def read_header(cls, data: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
        """``(schema, version, tool_version, body)`` of a loaded JSON object; subclasses whose older files have
        another header override it."""
        body = {k: v for k, v in data.items() if k not in HEADER}
        return data.get("schema"), data.get("version"), data.get("tool_version"), body

    @classmethod
    def from_dict(cls: type[A], data: dict[str, Any], source: str = "") -> A:
        where = f"{source!r}: " if source else ""
        if not isinstance(data, dict):
            raise PetlError(f"{where}expected a JSON object holding a {cls.SCHEMA}")
        schema, version, tool_version, body = cls.read_header(data)
        if schema != cls.SCHEMA:
            raise PetlError(f"{where}expected a {cls.SCHEMA} artefact, found schema {schema!r}")
        while isinstance(version, int) and version in cls.MIGRATIONS and version < cls.VERSION:
            body, version = cls.MIGRATIONS[version](body), version + 1
        if version != cls.VERSION:
            raise PetlError(
                f"{where}{cls.SCHEMA} schema version {version!r} is not supported; expected version {cls.VERSION}"
            )
        newer = _release(tool_version) > _release(__version__)
        ignored: list[str] | None = [] if newer else None
        try:
            loaded = from_jsonable(cls, body, cls.SCHEMA, ignored=ignored)
        except PetlError as e:
            raise PetlError(f"{where}{e}") from None
        if ignored:
            logger.warning(
                f"{where}written by petl-analysis {tool_version} (this is {__version__}); "
                f"ignored the field(s) it added: {', '.join(ignored)}"
            )
        return loaded

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file + rename) as indented JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[A], path: str | os.PathLike) -> A:
        return cls.from_dict(read_json(path, what=f"{cls.SCHEMA} file"), source=str(path))

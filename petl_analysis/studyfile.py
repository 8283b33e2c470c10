"""Study files: a command's settings as TOML (or YAML), read into sections and written back resolved.

A study file holds tables of settings: ``[model]``, ``[data]``, ``[recipe]``, ``[probe]`` with ``[probe.recipe]``,
``[execution]``, one per command... Which sections and keys exist, and what each accepts, is the reader's business
(the CLI: every option of a command is a key); this module only turns files into ``{"probe.recipe": {...}}`` and
back, with one-line errors naming the file. Torch-free.

Example::

    sections = read_study_file("study.toml")          # {"model": {"model": "petl_vit_tiny"}, "recipe": {...}}
    write_study_file("probe.json.config.toml", sections, header="petl-analyze probe")
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .errors import PetlError
from .io import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

#: Suffixes read as YAML (needs pyyaml, which timm requires); every other file is read as TOML.
YAML_SUFFIXES = (".yaml", ".yml")


def read_study_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The tables of a TOML or YAML study file, nested tables named with dots: ``[probe.recipe]`` -> ``"probe.recipe"``.

    Raises:
        PetlError: the file is missing, not valid TOML/YAML, or holds a value outside any table.
    """
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise PetlError(f"study file {name!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PetlError(f"study file {name!r} is not a UTF-8 text file") from None
    if p.suffix.lower() in YAML_SUFFIXES:
        document = _read_yaml(text, name)
    else:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PetlError(f"{name}: not valid TOML ({e})") from None
    if not isinstance(document, dict):
        raise PetlError(f"{name}: expected tables of settings ([model], [recipe], ...); got {type(document).__name__}")
    sections: dict[str, dict[str, Any]] = {}
    _flatten(document, "", sections, name)
    return sections


def _read_yaml(text: str, name: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise PetlError(f"{name}: reading YAML needs pyyaml (pip install pyyaml); or write the file as TOML") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PetlError(f"{name}: not valid YAML ({' '.join(str(e).split())})") from None
    return {} if document is None else document


def _flatten(table: dict[str, Any], prefix: str, out: dict[str, dict[str, Any]], name: str) -> None:
    """Tables of ``table`` into ``out`` under dotted names; plain values at the top level are refused."""
    for key, value in table.items():
        section = f"{prefix}{key}"
        if isinstance(value, dict):
            out.setdefault(section, {})
            _flatten(value, f"{section}.", out, name)
        elif not prefix:
            raise PetlError(f"{name}: {key} = {value!r} is outside a table; put it under one, e.g. [recipe]")
        else:
            out.setdefault(prefix[:-1], {})[key] = value


def to_toml(sections: dict[str, dict[str, Any]], header: str = "") -> str:
    """TOML text of ``sections`` (dotted names become nested tables), in their order; ``None`` values (unset) and
    empty sections are left out. ``header`` lines become comments at the top."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in sections.items():
        shown = {k: v for k, v in values.items() if v is not None}
        if not shown:
            continue
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value, f'{section}.{key}')}" for key, value in shown.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's string escapes are TOML's basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TypeError(f"{where}: cannot write {type(value).__name__} {value!r} as TOML")


def write_study_file(path: str | os.PathLike, sections: dict[str, dict[str, Any]], header: str = "") -> Path:
    """Write ``sections`` as TOML to ``path`` atomically (see :func:`to_toml`)."""
    return atomic_write_text(path, to_toml(sections, header))

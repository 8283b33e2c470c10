from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from petl_analysis.artefacts import Artefact
from petl_analysis.errors import PetlError
from petl_analysis.io import JsonlLog, atomic_write_json, read_json


@dataclass
class _Inner:
    a: int
    b: list[float] = field(default_factory=list)


@dataclass
class _Thing(Artefact):
    SCHEMA = "thing"
    VERSION = 2
    name: str = ""
    inner: _Inner | None = None
    table: dict[str, _Inner] = field(default_factory=dict)


def test_artefact_round_trip(tmp_path) -> None:
    t = _Thing(name="x", inner=_Inner(1, [0.5]), table={"k": _Inner(2)})
    path = t.save(tmp_path / "t.json")
    assert _Thing.load(path) == t
    assert json.loads(path.read_text())["schema"] == "thing"


def test_artefact_schema_and_version_errors(tmp_path) -> None:
    d = _Thing(name="x").to_dict()
    atomic_write_json(tmp_path / "v.json", {**d, "version": 1})
    with pytest.raises(PetlError, match="version 1 is not supported; expected version 2"):
        _Thing.load(tmp_path / "v.json")
    atomic_write_json(tmp_path / "s.json", {**d, "schema": "plan"})
    with pytest.raises(PetlError, match="expected a thing artefact, found schema 'plan'"):
        _Thing.load(tmp_path / "s.json")
    atomic_write_json(tmp_path / "f.json", {**d, "bogus": 1})
    with pytest.raises(PetlError, match="unknown field"):
        _Thing.load(tmp_path / "f.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PetlError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_atomic_write_leaves_no_temp_files(tmp_path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert read_json(tmp_path / "a.json") == {"x": 2}


def test_jsonl_torn_tail_is_dropped_but_corruption_is_reported(tmp_path) -> None:
    log = JsonlLog(tmp_path / "trials.jsonl")
    log.append({"i": 1})
    log.append({"i": 2})
    with open(log.path, "a") as f:
        f.write('{"i": 3, "trunc')  # killed mid-write
    assert log.read() == [{"i": 1}, {"i": 2}]
    log.append({"i": 4})
    assert log.read() == [{"i": 1}, {"i": 2}, {"i": 4}]
    lines = log.path.read_text().splitlines()
    lines[1] = "garbage"
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PetlError, match="line 2 is not valid JSON"):
        log.read()

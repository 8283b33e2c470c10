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


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    import os

    before = os.umask(0o022)
    os.umask(before)
    yield lambda mask: os.umask(mask)
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_atomic_writes_follow_the_umask_like_a_plain_open(tmp_path, umask, mask, mode) -> None:
    from petl_analysis.io import atomic_write_bytes, current_umask

    umask(mask)
    assert current_umask() == mask
    path = atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert path.stat().st_mode & 0o777 == mode
    atomic_write_bytes(path, b"{}")  # replacing keeps following the umask
    assert path.stat().st_mode & 0o777 == mode
    (tmp_path / "plain").write_text("x")
    assert (tmp_path / "plain").stat().st_mode & 0o777 == mode


def test_artefacts_and_report_files_are_group_readable_under_a_shared_umask(tmp_path, umask) -> None:
    from helpers import synthetic_probe

    from petl_analysis.report import write_report

    umask(0o002)
    probe = synthetic_probe()
    saved = probe.save(tmp_path / "probe.json")
    files = write_report(None, probe, tmp_path / "report", dpi=30)
    for p in [saved, *files.paths()]:
        assert p.stat().st_mode & 0o777 == 0o664, p

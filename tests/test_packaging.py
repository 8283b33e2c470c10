"""Packaging guards: every library package is installed, and the CLI is not a top-level ``cli`` package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"packages = \[(.*?)\]", text, re.S)
    assert block, "pyproject.toml must list packages explicitly"
    return set(re.findall(r'"([\w.]+)"', block.group(1)))


def test_every_package_is_declared() -> None:
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "petl_analysis").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found - _declared_packages() == set(), "add these packages to pyproject.toml"
    assert "petl_analysis.cli" in _declared_packages() and "cli" not in _declared_packages()


def test_library_never_imports_typer() -> None:
    offenders = [
        p for p in (ROOT / "petl_analysis").rglob("*.py") if re.search(r"^\s*(import|from) typer", p.read_text(), re.M)
    ]
    assert offenders == []


#: Library features that need a newer release than a dependency's first: (package, text in the source, first release).
FEATURE_FLOORS = [
    ("joblib", 'return_as="generator_unordered"', (1, 4)),
    ("joblib", "parallel_config", (1, 3)),
    ("timm", "list_optimizers", (1, 0, 12)),
]


def _floor(package: str) -> tuple[int, ...]:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(rf'"{package}>=([\d.]+)', text)
    assert found, f"pyproject.toml declares no floor for {package}"
    return tuple(int(v) for v in found.group(1).split("."))


def test_dependency_floors_allow_only_releases_with_the_features_the_library_uses() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "petl_analysis").rglob("*.py"))
    for package, feature, first in FEATURE_FLOORS:
        if feature in source:
            assert _floor(package) >= first, f"{feature} needs {package}>={'.'.join(map(str, first))}"

"""The public API: ``from petl_analysis import NAME`` for every name of ``__all__``, documented, lazily imported,
and listed on the docs page "API stability"."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import petl_analysis

ROOT = Path(__file__).resolve().parent.parent
STABILITY_PAGE = ROOT / "docs" / "reference" / "api-stability.md"


def _own_docstring(obj: object) -> str:
    """The object's docstring, not one it inherits or that ``dataclass`` generates (``Name(field: type, ...)``)."""
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    doc = (doc or "").strip()
    name = getattr(obj, "__name__", "")
    return "" if doc.startswith(f"{name}(") else doc


@pytest.mark.parametrize("name", [n for n in petl_analysis.__all__ if n != "__version__"])
def test_every_public_name_imports_and_has_a_docstring(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from petl_analysis import {name}", namespace)
    obj = namespace[name]
    assert _own_docstring(obj), f"petl_analysis.{name} has no docstring of its own"


def test_all_is_the_lazy_exports_and_the_type_checking_imports() -> None:
    assert len(set(petl_analysis.__all__)) == len(petl_analysis.__all__), "duplicate names in __all__"
    assert set(petl_analysis.__all__) == {*petl_analysis._EXPORTS, "PetlError", "__version__"}
    tree = ast.parse((ROOT / "petl_analysis" / "__init__.py").read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {f"{imp.module}.{a.name}" for imp in guarded.body if isinstance(imp, ast.ImportFrom) for a in imp.names}
    assert seen == {f"{module}.{name}" for name, module in petl_analysis._EXPORTS.items()}


def test_the_exports_name_their_defining_module() -> None:
    for name, module in petl_analysis._EXPORTS.items():
        assert getattr(petl_analysis, name).__module__.startswith(f"petl_analysis.{module}"), name


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        petl_analysis.not_a_name  # noqa: B018


def test_the_api_stability_page_lists_exactly_all() -> None:
    text = STABILITY_PAGE.read_text()
    block = text.split("<!-- public-api:start -->")[1].split("<!-- public-api:end -->")[0]
    listed = re.findall(r"`(\w+)`", block)
    assert sorted(listed) == sorted(petl_analysis.__all__)


def test_import_is_cheap() -> None:
    """``import petl_analysis`` must not import torch or timm: the CLI's --help and light scripts depend on it."""
    code = "import sys, petl_analysis; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "torch" not in out and "timm" not in out, out


def test_py_typed_ships() -> None:
    assert (Path(petl_analysis.__file__).parent / "py.typed").is_file()

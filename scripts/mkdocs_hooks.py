"""mkdocs hooks: pages generated at build time, so the docs cannot drift from the code.

- ``reference/cli.md``: every command of the Typer app, its options (from the click parameters) and its ``--help``;
- ``reference/api.md``: one mkdocstrings entry per name of ``petl_analysis.__all__``, grouped by defining module;
- ``changelog.md``, ``license.md``, ``reference/model-card.md``,
  ``reference/model-card-dinov2.md``, ``reference/data-card.md``: the repository's
  files, included as they are (one copy in the repository, none in ``docs/``);
- the report figures under ``reports/`` are added as site files, so pages link them where they are committed.

Wired in ``mkdocs.yml`` (``hooks:``); run by ``mkdocs build``.
"""

from __future__ import annotations

import importlib
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

# Repository files shown as pages: site path -> (file, title line put above it or None when it has one).
INCLUDED = {
    "changelog.md": ("CHANGELOG.md", None),
    "license.md": ("LICENSE", "# Licence\n\n```text\n{text}```\n\n{notices}"),
    "reference/model-card.md": ("petl_analysis/models/MODEL_CARD.md", None),
    "reference/model-card-dinov2.md": ("petl_analysis/models/MODEL_CARD_DINOV2_S14.md", None),
    "reference/data-card.md": ("petl_analysis/data/DATA_CARD.md", None),
}


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param) -> str:
    if getattr(param, "required", False):
        return "required"
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return "off" if not param.default else "on"
    value = param.default
    if callable(value):
        return "(computed)"
    if value is None or value == "" or value == ():
        return ""
    if isinstance(value, bool) and param.secondary_opts:
        return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
    return f"`{value}`"


def _kind(param) -> str:
    # Typer >= 0.20 vendors its own click, so parameters are read by duck typing, not click's classes.
    if getattr(param, "is_flag", False):
        return "flag"
    bare = getattr(param, "bare_type", None)
    return bare() if callable(bare) else getattr(getattr(param, "type", None), "name", "")


def cli_reference() -> str:
    """Markdown for every visible command of ``petl-analyze``: usage, one options table per help panel, --help."""
    import typer
    from typer.testing import CliRunner

    app = importlib.import_module("petl_analysis.cli.main").app
    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="petl-analyze")
    out = [
        "# CLI reference",
        "",
        "Generated from the Typer app when the site is built (`scripts/mkdocs_hooks.py`), so it is what "
        "`petl-analyze COMMAND --help` says for this version.",
        "",
        "```text",
        _help([], CliRunner(), app).rstrip(),
        "```",
        "",
    ]
    for name in group.list_commands(root):
        cmd = group.get_command(root, name)
        if cmd is None or cmd.hidden:
            continue
        ctx = cmd.context_class(cmd, info_name=name, parent=root)
        out += [f"## `{name}`", "", (cmd.help or "").strip(), "", "```text"]
        out += [" ".join(["petl-analyze", name, *cmd.collect_usage_pieces(ctx)]), "```", ""]
        panels: dict[str, list[str]] = {}
        for param in cmd.get_params(ctx):
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            names = ", ".join(f"`{o}`" for o in [*param.opts, *getattr(param, "secondary_opts", [])])
            if param.param_type_name == "argument":
                names = f"`{param.name.upper()}` (argument)"
            row = f"| {names} | {_kind(param)} | {_default(param)} | {_cell(getattr(param, 'help', '') or '')} |"
            panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(row)
        for panel, rows in panels.items():
            out += [f"**{panel}**", "", "| option | type | default | help |", "|---|---|---|---|", *rows, ""]
        out += [f'??? note "`petl-analyze {name} --help`"', "", "    ```text"]
        out += ["    " + line if line else "" for line in _help([name], CliRunner(), app).rstrip().splitlines()]
        out += ["    ```", ""]
    return "\n".join(out)


def _help(args: list[str], runner, app) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
    if result.exit_code != 0:
        raise RuntimeError(f"petl-analyze {' '.join(args)} --help failed: {result.output}")
    return re.sub(r"[ \t]+$", "", result.output, flags=re.M)


def api_reference() -> str:
    """Markdown with a mkdocstrings entry per public name, grouped by the module that defines it."""
    import petl_analysis

    groups: dict[str, list[str]] = {}
    for name, module in petl_analysis._EXPORTS.items():
        groups.setdefault(module, []).append(name)
    out = [
        "# Python API reference",
        "",
        "Every name below is importable as `from petl_analysis import NAME` and is part of the stable API "
        "([API stability](api-stability.md)). Generated from the docstrings when the site is built.",
        "",
        "`PetlError` (every user-facing failure: a one-line message) and `__version__` complete `__all__`.",
        "",
        "::: petl_analysis.errors.PetlError",
        "",
    ]
    for module, names in groups.items():
        doc = (importlib.import_module(f"petl_analysis.{module}").__doc__ or "").strip().split("\n\n")[0]
        out += [f"## `petl_analysis.{module}`", "", _ROLE_MD.sub("`", " ".join(doc.split())), ""]
        out += [f"::: petl_analysis.{module}.{name}\n" for name in names]
    return "\n".join(out)


def _included(page: str) -> str:
    path, template = INCLUDED[page]
    text = (ROOT / path).read_text(encoding="utf-8")
    if template is None:
        return text.replace("](docs/", "](")  # links written for the repository root, read from the site root
    notices = (ROOT / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8").replace("# ", "## ", 1)
    return template.format(text=text, notices=notices)


_ROLE_HTML = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):<code>~?")
_ROLE_MD = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):`~?")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings use Sphinx roles (:class:`X`); show them as code, not as a literal ':class:' before it."""
    return _ROLE_HTML.sub("<code>", html)


def on_files(files: Files, config) -> Files:
    with redirect_stdout(io.StringIO()):  # importing the app must not print into the build log
        generated = {"reference/cli.md": cli_reference(), "reference/api.md": api_reference()}
    generated.update({page: _included(page) for page in INCLUDED})
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    for png in sorted((ROOT / "reports").rglob("*.png")):
        files.append(File.generated(config, png.relative_to(ROOT).as_posix(), abs_src_path=str(png)))
    return files

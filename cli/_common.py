"""Shared CLI plumbing: one-line errors, progress bars, tables, option parsing."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import rich.markup
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from petl_analysis.errors import PetlError

# Wide tables when output is not a terminal (CI logs, files): rich would otherwise wrap at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings meant for the user (e.g. skipped images) as ``warning: <one line>``, without a source line."""
    from petl_analysis.data.folder import BadImagesWarning  # here, not at import: the data package imports torch

    if issubclass(category, BadImagesWarning):
        err_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True, highlight=False)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


#: Lines printed (on stderr) with the first progress line, i.e. once work has started: the resolved recipe, which
#: would be noise above a one-line error about the input.
_with_first_progress: list[str] = []


def show_with_first_progress(text: str) -> None:
    """Print ``text`` on stderr just before the command's first progress line (not at all if it fails first)."""
    _with_first_progress.append(text)


def _flush_first_progress() -> None:
    while _with_first_progress:
        err_console.print(_with_first_progress.pop(0), highlight=False, soft_wrap=True, markup=False)


def fail(error: PetlError) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit with code 2 (also from option callbacks, which run before the
    command and so outside :func:`handle_errors`)."""
    # The message is text, not markup: "[dinov2]" or "blocks[0-5]" must print as written.
    err_console.print(f"[bold red]error:[/] {rich.markup.escape(str(error))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2) from None


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`PetlError` into ``error: <one line>`` on stderr and exit code 2; user warnings to one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _with_first_progress.clear()
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return fn(*args, **kwargs)
        except PetlError as e:
            fail(e)
        except KeyboardInterrupt:
            err_console.print("interrupted; finished work is saved, rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_ints(value: str | None, what: str) -> list[int]:
    out = []
    for v in split_list(value):
        try:
            out.append(int(float(v.lower().replace("k", "e3").replace("m", "e6"))))
        except ValueError:
            raise PetlError(
                f"{what}: {v!r} is not a number; expected a comma-separated list of integers such as 16,64,256"
            ) from None
    return out


def print_table(
    rows: Sequence[dict[str, Any]], title: str | None = None, columns: Sequence[str] | None = None
) -> None:
    if not rows:
        console.print("(no rows)")
        return
    cols = list(columns or rows[0].keys())
    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(str(c), justify="right" if isinstance(rows[0].get(c), (int, float)) else "left")
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in cols])
    console.print(table)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return str(v)
    return str(v)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A rich progress bar with ETA; yields ``advance(n=1, description=None)``, whose ``advance.expect(n)`` adds
    ``n`` steps to the total (stages that learn their trial count as they go: the probe's rounds, a pipeline)."""
    steps = [total]

    def expect(n: int) -> None:
        steps[0] = (steps[0] or 0) + n

    if not sys.stderr.isatty() and not console.is_terminal:
        # Non-interactive (CI, pipes): print a line per step instead of redrawing a bar.
        done = [0]

        def advance_plain(n: int = 1, description_: str | None = None) -> None:
            _flush_first_progress()
            done[0] += n
            if description_:
                shown = steps[0] if steps[0] is not None else "?"
                err_console.print(f"[{done[0]}/{shown}] {description_}", highlight=False, markup=False)

        advance_plain.expect = expect  # type: ignore[attr-defined]
        yield advance_plain
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1, description_: str | None = None) -> None:
            _flush_first_progress()
            prog.update(task, advance=n, description=description_ or description)

        def expect_bar(n: int) -> None:
            expect(n)
            prog.update(task, total=steps[0])

        advance.expect = expect_bar  # type: ignore[attr-defined]
        yield advance

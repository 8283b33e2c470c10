"""Shared CLI plumbing: one-line errors, progress bars, tables, option parsing."""

from __future__ import annotations

import functools
import sys
import time
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
        say("warning", message, err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


#: How much progress the commands print: -1 (``-q``: none; results, warnings and errors only), 0 (a bar, or a line
#: per trial where the output is not a terminal), 1 (``-v``: also a line per epoch of an in-process training).
_verbosity = [0]


def set_verbosity(level: int) -> None:
    """Set by the global ``-q`` (-1) / ``-v`` (1) flags."""
    _verbosity[0] = level


#: Lines printed (on stderr) with the first progress line, i.e. once work has started: the resolved recipe, which
#: would be noise above a one-line error about the input.
_with_first_progress: list[str] = []


def show_with_first_progress(text: str) -> None:
    """Print ``text`` on stderr just before the command's first progress line (not at all if it fails first, or
    under ``-q``)."""
    if _verbosity[0] >= 0:
        _with_first_progress.append(text)


def _flush_first_progress() -> None:
    while _with_first_progress:
        err_console.print(_with_first_progress.pop(0), highlight=False, soft_wrap=True, markup=False)


_LABELS = {"warning": "[yellow]warning:[/]", "note": "[cyan]note:[/]"}


def say(label: str, text: object, *, err: bool = False) -> None:
    """Print ``warning: <text>`` or ``note: <text>``; the text is text, not markup (a study file's ``[probe]`` table,
    a folder named ``x[1]``), so it prints as written."""
    (err_console if err else console).print(
        f"{_LABELS[label]} {rich.markup.escape(str(text))}", soft_wrap=True, highlight=False
    )


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


def _eta(done: int, total: int | None, fresh: int, busy_s: float) -> str:
    """`` (ETA m:ss)`` at the pace of the steps that did work (``busy_s`` seconds for ``fresh`` steps), or nothing."""
    if not total or not fresh or done >= total:
        return ""
    left = busy_s / fresh * (total - done)
    return f" (ETA {int(left // 60)}:{int(left % 60):02d})"


#: How a progress line names the probe's baseline trials.
_BASELINES = {"head": "floor (head alone)", "ft": "ceiling (full fine-tuning)", "lp": "linear probe"}


def _units_label(units: list[str]) -> str:
    """A probe target named as the catalogue does: ``attn.q`` for ``blocks.0.attn.q`` .. ``blocks.11.attn.q``,
    ``blocks.3.attn.q`` for one block's."""
    import re

    parts = [re.match(r"^blocks\.(\d+)\.(.+)$", u) for u in units]
    if len(units) <= 1 or not all(parts):
        return ",".join(units) or "?"
    blocks = sorted({int(m.group(1)) for m in parts})
    kinds = ",".join(dict.fromkeys(m.group(2) for m in parts))
    return kinds if len(blocks) > 1 else f"blocks.{blocks[0]}.{kinds}"


def trial_label(trial) -> str:
    """What a trial trains, as a progress line names it: a probe's target and d, a sweep's method, a baseline."""
    from petl_analysis.sweep.sweep import RunTrial

    p = trial.payload
    if trial.kind == "subspace":
        return f"{_units_label(p.get('units') or [])} d={p.get('d')}"
    if trial.kind == "run":
        return trial.spec(RunTrial).config.get("method", trial.kind)
    return _BASELINES.get(trial.kind, trial.kind)


def _epoch_text(log: Any) -> str:
    from petl_analysis.trials import running_trial

    trial = running_trial()
    if trial is not None:
        what = f"{trial_label(trial)} seed {trial.payload.get('seed')}: "
    else:  # a training the command runs itself (train)
        what = f"seed {log.seed}: " if log.seed is not None else ""
    val = f", val {log.val_acc:.3f}" if log.val_acc is not None else ""
    return f"{what}epoch {log.epoch}/{log.epochs}: loss {log.train_loss:.4f}{val} ({log.elapsed_s:.0f} s)"


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A rich progress bar with ETA; yields ``advance(n=1, description=None, cached=False)``, whose
    ``advance.expect(n)`` adds ``n`` steps to the total (stages that learn their trial count as they go: the probe's
    rounds, a pipeline). Where the output is not a terminal, a line per step with its ETA (cached steps do not count
    towards the pace). While open, every epoch of a training run in this process is shown: in the bar's text, or
    as a line under ``-v``; trials in worker processes show at trial granularity. Nothing under ``-q``."""
    steps = [total]

    def expect(n: int) -> None:
        steps[0] = (steps[0] or 0) + n

    if _verbosity[0] < 0:
        mode = _quiet_progress(expect)
    elif not sys.stderr.isatty() and not console.is_terminal:
        mode = _plain_progress(steps, expect)
    else:
        mode = _bar_progress(description, total, steps, expect)
    with mode as advance:
        yield advance


@contextmanager
def _quiet_progress(expect: Callable[[int], None]) -> Iterator[Callable[..., None]]:
    """``-q``: no progress at all."""

    def advance_quiet(n: int = 1, description_: str | None = None, cached: bool = False) -> None:
        _with_first_progress.clear()

    advance_quiet.expect = expect  # type: ignore[attr-defined]
    yield advance_quiet


@contextmanager
def _plain_progress(steps: list[int | None], expect: Callable[[int], None]) -> Iterator[Callable[..., None]]:
    """Non-interactive (CI, pipes): a line per step with its ETA instead of redrawing a bar; epochs under ``-v``."""
    from petl_analysis.engine import epoch_listener

    done, fresh, busy, last = [0], [0], [0.0], [time.perf_counter()]

    def advance_plain(n: int = 1, description_: str | None = None, cached: bool = False) -> None:
        _flush_first_progress()
        now = time.perf_counter()
        done[0] += n
        if not cached:  # a step read from a log comes at once: not the pace of the work left
            fresh[0] += n
            busy[0] += now - last[0]
        last[0] = now
        if description_:
            shown = steps[0] if steps[0] is not None else "?"
            eta = _eta(done[0], steps[0], fresh[0], busy[0])
            err_console.print(f"[{done[0]}/{shown}] {description_}{eta}", highlight=False, markup=False)

    def epoch_plain(log: Any) -> None:
        if _verbosity[0] > 0:
            _flush_first_progress()
            err_console.print(f"  {_epoch_text(log)}", highlight=False, markup=False)

    advance_plain.expect = expect  # type: ignore[attr-defined]
    with epoch_listener(epoch_plain):
        yield advance_plain


@contextmanager
def _bar_progress(
    description: str, total: int | None, steps: list[int | None], expect: Callable[[int], None]
) -> Iterator[Callable[..., None]]:
    """A terminal: a rich bar with ETA, the epoch in progress in its text (a line per epoch under ``-v``)."""
    from petl_analysis.engine import epoch_listener

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
        last = [description]

        def advance(n: int = 1, description_: str | None = None, cached: bool = False) -> None:
            _flush_first_progress()
            last[0] = description_ or description
            prog.update(task, advance=n, description=last[0])

        def expect_bar(n: int) -> None:
            expect(n)
            prog.update(task, total=steps[0])

        def epoch_bar(log: Any) -> None:  # the training in progress, after the last finished step
            prog.update(task, description=f"{last[0]} | {_epoch_text(log)}")
            if _verbosity[0] > 0:
                prog.console.print(f"  {_epoch_text(log)}", highlight=False, markup=False)

        advance.expect = expect_bar  # type: ignore[attr-defined]
        with epoch_listener(epoch_bar):
            yield advance

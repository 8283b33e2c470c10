"""Declared constraints: what a setting accepts, said once, checked and worded the same everywhere.

A dataclass declares ``CONSTRAINTS = {"lr": number(above=0), ...}`` (scikit-learn's ``_parameter_constraints``) and
calls :func:`check_fields` in ``__post_init__``; a study file's reader checks a key against the same constraint. So
``Recipe(lr=-1)`` and ``lr = -1`` under ``[recipe]`` fail with one phrasing: ``... lr must be a float > 0; got -1``.
Torch-free (the CLI checks a study file before anything heavy loads).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import PetlError


@dataclass(frozen=True)
class Constraint:
    """The values a setting accepts.

    Attributes:
        kind: ``int``, ``float``, ``bool``, ``str`` or ``list`` (of strings).
        low, high: bounds of a number (``None``: unbounded); ``low_open``/``high_open`` exclude them.
        choices: the accepted strings, or a function returning them (looked up only for a value outside
            ``choices_fast``, e.g. timm's optimizer names, whose registry imports torch).
        choices_fast: accepted without calling ``choices``.
        optional: ``None`` is accepted (in a study file: the key left out).
        wording: how an error names the accepted values, when the generated phrase would be too long.
        flag_too: a string setting that also takes ``True``/``False`` (a flag it once was, e.g. ``amp``).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    choices_fast: tuple[str, ...] = ()
    optional: bool = False
    wording: str | None = None
    flag_too: bool = False

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of the kind and within the bounds or choices."""
        if value is None:
            return self.optional
        if self.flag_too and isinstance(value, bool):
            return True
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is list:
            return isinstance(value, list) and all(isinstance(v, str) for v in value)
        if self.kind is str:
            if not isinstance(value, str):
                return False
            if self.choices is None or value in self.choices_fast:
                return True
            return value in (self.choices() if callable(self.choices) else self.choices)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def expected(self) -> str:
        """What the setting accepts, as an error message says it (``a float > 0``, ``one of: a, b``)."""
        if self.wording:
            text = self.wording
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is list:
            text = "a list of strings"
        elif self.kind is str:
            names = self.choices() if callable(self.choices) else self.choices
            text = f"one of: {', '.join(names)}" if names is not None else "a string"
        else:
            text = ("an integer" if self.kind is int else "a float") + self._bounds()
        return f"{text} (or unset)" if self.optional else text

    def _bounds(self) -> str:
        lo = None if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        hi = None if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        if lo and hi:
            return f" in {lo}, {hi}"
        if lo:
            return f" {'>' if self.low_open else '>='} {self.low:g}"
        if hi:
            return f" {'<' if self.high_open else '<='} {self.high:g}"
        return ""

    def check(self, name: str, value: Any, where: str = "") -> None:
        """Raise the one-line :class:`PetlError` ``<where><name> must be <expected>; got <value>`` unless accepted."""
        if not self.accepts(value):
            raise PetlError(f"{where}{name} must be {self.expected()}; got {value!r}")


def integer(*, at_least: int | None = None, optional: bool = False) -> Constraint:
    """An integer, at least ``at_least``."""
    return Constraint(int, low=at_least, optional=optional)


def number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    optional: bool = False,
) -> Constraint:
    """A finite float (an integer is accepted) within the given bounds."""
    return Constraint(
        float,
        low=above if above is not None else at_least,
        low_open=above is not None,
        high=below if below is not None else at_most,
        high_open=below is not None,
        optional=optional,
    )


def one_of(
    choices: Sequence[str] | Callable[[], Sequence[str]],
    *,
    fast: tuple[str, ...] = (),
    wording: str | None = None,
    optional: bool = False,
    flag_too: bool = False,
) -> Constraint:
    """One of the strings ``choices`` (a function is called only for a value outside ``fast``); ``flag_too``: or
    ``True``/``False``."""
    return Constraint(str, choices=choices, choices_fast=fast, wording=wording, optional=optional, flag_too=flag_too)


def flag() -> Constraint:
    """``True`` or ``False``."""
    return Constraint(bool)


def from_annotation(annotation: Any) -> Constraint:
    """The constraint a type hint implies (``int | None``: an optional integer; ``list[str]``: strings)."""
    if isinstance(annotation, str):
        raise TypeError(f"resolve the annotation {annotation!r} first (typing.get_type_hints)")
    optional = False
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else Any
    if typing.get_origin(annotation) is list or annotation is list:
        return Constraint(list, optional=optional)
    if annotation in (int, float, bool, str):
        return Constraint(annotation, optional=optional)
    raise TypeError(f"no constraint for the type {annotation!r}; declare one")


def field_constraints(cls: type) -> dict[str, Constraint]:
    """Every init field of dataclass ``cls`` with its constraint: the declared one (``cls.CONSTRAINTS``), else the
    one its type hint implies."""
    declared = getattr(cls, "CONSTRAINTS", {})
    hints = typing.get_type_hints(cls)
    return {f.name: declared.get(f.name) or from_annotation(hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def check_fields(obj: Any, where: str) -> None:
    """Check every field of dataclass ``obj`` that its class declares a constraint for (``CONSTRAINTS``)."""
    for name, constraint in getattr(type(obj), "CONSTRAINTS", {}).items():
        constraint.check(name, getattr(obj, name), where)

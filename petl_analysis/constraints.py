"""Declared field constraints and the one message of a bad value (scikit-learn's ``_parameter_constraints``).

A config class declares, for each of its fields, the values it accepts::

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "threshold": [Interval(Real, 0, 1, closed="right")],
        "seeds": [Interval(Integral, 1, None, closed="left")],
        "head": [Options(str, {"train", "frozen"})],
        "said": ["boolean"],
        "max_d": [Interval(Integral, 1, None, closed="left"), None],
    }

and calls :func:`validate_fields` in ``__post_init__`` (functions call :func:`validate_params` on their arguments).
A value that satisfies none of its field's constraints is a :class:`~petl_analysis.errors.PetlError` phrased one
way, always::

    ProbeConfig.threshold must be a float in (0, 1]; got 1.5

A class whose fields a user sets by their meaning (``--shots``) may name them so (``_field_meanings``): ``training
images per class (shots) must be an integer >= 1, or unset for the full training set; got 0``.

Constraints (each a list entry; a value passes when it satisfies any one):

- :class:`Interval` ``(Integral | Real, left, right, closed)``: a number in a range (bools are not numbers; a
  float must be finite);
- :class:`Options` ``(type, options)``: one of a set (any container: a registry reads its names when asked);
- ``"boolean"``: ``True`` or ``False``; ``None``: ``None``; :class:`Unset` ``(meaning)``: ``None``, read as
  ``meaning``; ``"callable"``: a callable; a type: an instance of it;
- :class:`ListOf` ``(constraints, non_empty, unique)``: a list (or tuple) whose every item passes;
- :class:`Satisfies` ``(predicate, description)``: anything else that one predicate can say.

Cross-field rules (``val_fraction + test_fraction < 1``) stay in ``__post_init__``, phrased the same way
(:func:`invalid`). A raw value read elsewhere (a study file's ``lr = 'abc'`` under ``[recipe]``) is checked against
the field's declared constraints by :func:`check_value`, under the reader's own subject (``study.toml: [recipe]
lr must be a float > 0; got 'abc'``); an option without a declared field takes the constraints its type hint implies
(:func:`from_annotation`). Torch-free: the CLI checks a study file before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection, Mapping
from numbers import Integral, Real
from typing import Any, Union

from .errors import PetlError

__all__ = [
    "Constraint",
    "Interval",
    "ListOf",
    "Options",
    "Satisfies",
    "Unset",
    "check_value",
    "describe",
    "from_annotation",
    "invalid",
    "make_constraint",
    "validate_fields",
    "validate_params",
]


class Constraint:
    """A set of accepted values: :meth:`is_satisfied_by` says whether ``value`` is in it, ``str()`` names it as the
    error message does (``an integer >= 1``)."""

    def is_satisfied_by(self, value: Any) -> bool:
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    return kind is Integral or math.isfinite(value)


class Interval(Constraint):
    """A number of ``kind`` (:class:`numbers.Integral` or :class:`numbers.Real`) between ``left`` and ``right``
    (``None``: unbounded on that side); ``closed`` is ``"left"``, ``"right"``, ``"both"`` or ``"neither"``. A
    ``Real`` must be finite (no NaN or infinity); ``bool`` is neither kind."""

    def __init__(self, kind: type, left: float | None, right: float | None, *, closed: str = "both") -> None:
        if kind not in (Integral, Real):
            raise TypeError(f"Interval kind must be numbers.Integral or numbers.Real, got {kind!r}")
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither', got {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if not _is_number(value, self.kind):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        what = "an integer" if self.kind is Integral else "a float"
        left_in, right_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.left is not None and self.right is not None:
            return f"{what} in {'[' if left_in else '('}{self.left:g}, {self.right:g}{']' if right_in else ')'}"
        if self.left is not None:
            return f"{what} {'>=' if left_in else '>'} {self.left:g}"
        if self.right is not None:
            return f"{what} {'<=' if right_in else '<'} {self.right:g}"
        return what


class Options(Constraint):
    """One of ``options`` (of ``kind``): a set, or any container answering ``in`` and iteration (a registry, read
    when asked, so a method registered later is accepted), or a function returning one (called only for a value
    outside ``fast``: timm's optimizer names, whose registry imports torch). ``what`` names them in the message
    when listing them would be too long (default: ``one of 'a', 'b'``)."""

    def __init__(
        self,
        kind: type,
        options: Collection[Any] | Callable[[], Collection[Any]],
        *,
        fast: Collection[Any] = (),
        what: str = "",
    ) -> None:
        self.kind, self.options, self.fast, self.what = kind, options, fast, what

    def _options(self) -> Collection[Any]:
        return self.options() if callable(self.options) else self.options

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) and self.kind is not bool:
            return False
        return isinstance(value, self.kind) and (value in self.fast or value in self._options())

    def __str__(self) -> str:
        if self.what:
            return self.what
        shown = [repr(o) for o in sorted(self._options())]
        return shown[0] if len(shown) == 1 else f"one of {', '.join(shown)}"


class Unset(Constraint):
    """``None``, which the field reads as ``meaning`` (``"the full training set"``)."""

    def __init__(self, meaning: str) -> None:
        self.meaning = meaning

    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return f"unset for {self.meaning}"


class Satisfies(Constraint):
    """A value for which ``predicate`` is true, named ``description`` (``"a non-empty str"``)."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def is_satisfied_by(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (AttributeError, TypeError, ValueError):  # a value of another type is simply not accepted
            return False

    def __str__(self) -> str:
        return self.description


class ListOf(Constraint):
    """A list (or tuple) whose every item satisfies one of ``items``; ``non_empty``: at least one item;
    ``unique``: no item twice. ``what`` names the items in the message (default: the item constraints)."""

    def __init__(
        self, items: list[Any] | Any, *, non_empty: bool = False, unique: bool = False, what: str = ""
    ) -> None:
        self.items = [make_constraint(c) for c in (items if isinstance(items, list) else [items])]
        self.non_empty, self.unique, self.what = non_empty, unique, what

    def is_satisfied_by(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or (self.non_empty and not value):
            return False
        if self.unique and len(set(value)) != len(value):
            return False
        return all(any(c.is_satisfied_by(v) for c in self.items) for v in value)

    def __str__(self) -> str:
        head = "a non-empty list" if self.non_empty else "a list"
        what = self.what or f"items each {_alternatives(self.items)}"
        return f"{head} of {what}" + (", without repeats" if self.unique else "")


class _Boolean(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _Callable(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


class _InstancesOf(Constraint):
    def __init__(self, kind: type) -> None:
        self.kind = kind

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind) and not (isinstance(value, bool) and self.kind is not bool)

    def __str__(self) -> str:
        name = self.kind.__name__
        return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def make_constraint(spec: Any) -> Constraint:
    """The :class:`Constraint` of one declared entry (``"boolean"``, ``None``, ``"callable"``, a type, or a
    constraint itself)."""
    if isinstance(spec, Constraint):
        return spec
    if spec is None:
        return _NoneConstraint()
    if spec == "boolean":
        return _Boolean()
    if spec == "callable":
        return _Callable()
    if isinstance(spec, type):
        return _InstancesOf(spec)
    raise TypeError(f"not a constraint: {spec!r}")


def _alternatives(constraints: list[Constraint]) -> str:
    words = [str(c) for c in constraints]
    if len(words) == 1:
        return words[0]
    joiner = ", or " if any(isinstance(c, Unset) for c in constraints) else " or "
    return f"{', '.join(words[:-1])}{joiner}{words[-1]}"


def describe(constraints: list[Any]) -> str:
    """What a field with these declared constraints accepts, as the message says it (``a float in (0, 1] or
    None``)."""
    return _alternatives([make_constraint(c) for c in constraints])


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def invalid(subject: str, expected: str, value: Any) -> PetlError:
    """The one message of a bad value: ``<subject> must be <expected>; got <value>`` (also for cross-field rules,
    e.g. ``SplitSpec.val_fraction + test_fraction must be < 1 to leave a train pool; got 1.0``)."""
    return PetlError(f"{subject} must be {expected}; got {_shown(value)}")


def check_value(subject: str, value: Any, constraints: list[Any]) -> None:
    """Check one raw value against a field's declared constraints, under the caller's ``subject`` (a study file
    reader: ``study.toml: [recipe] lr``); raise :func:`invalid`'s error unless one is satisfied."""
    accepted = [make_constraint(c) for c in constraints]
    if not any(c.is_satisfied_by(value) for c in accepted):
        raise invalid(subject, _alternatives(accepted), value)


def from_annotation(annotation: Any, unset: str = "its default") -> list[Constraint]:
    """The constraints a type hint implies, for a setting that declares none (a CLI option): ``int`` an integer,
    ``float`` a float, ``bool`` true or false, ``str`` a str, ``list[str]`` a list of strings; ``X | None`` also
    accepts None, read as ``unset``.

    Raises:
        TypeError: a hint it cannot read (declare the constraints instead).
    """
    if isinstance(annotation, str):
        raise TypeError(f"resolve the annotation {annotation!r} first (typing.get_type_hints)")
    optional: list[Constraint] = []
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            optional = [Unset(unset)]
        annotation = args[0] if len(args) == 1 else Any
    if typing.get_origin(annotation) is list or annotation is list:
        return [ListOf(str, what="strings"), *optional]
    if annotation in (int, float):
        return [Interval(Integral if annotation is int else Real, None, None), *optional]
    if annotation is bool:
        return [_Boolean(), *optional]
    if annotation is str:
        return [_InstancesOf(str), *optional]
    raise TypeError(f"no constraint for the type {annotation!r}; declare one")


def validate_params(
    owner: str,
    values: Mapping[str, Any],
    constraints: Mapping[str, list[Any]],
    meanings: Mapping[str, str] | None = None,
) -> None:
    """Check every value that has declared constraints; raise :func:`invalid`'s error for the first that fails.

    Args:
        owner: who the values belong to (a class or function name): the message says ``owner.name``.
        values: ``name -> value``; names without constraints are not checked.
        constraints: ``name -> [constraint, ...]``; a value passes when it satisfies any one.
        meanings: ``name -> what it means`` for fields a user sets by their meaning: the message then says
            ``<meaning> (<name>)`` instead of ``owner.name``.

    Raises:
        PetlError: ``ProbeConfig.threshold must be a float in (0, 1]; got 1.5``.
    """
    for name, declared in constraints.items():
        if name not in values:
            continue
        meaning = (meanings or {}).get(name)
        check_value(f"{meaning} ({name})" if meaning else f"{owner}.{name}", values[name], declared)


def validate_fields(obj: Any) -> None:
    """Check a dataclass's fields against its class's ``_parameter_constraints`` (named by the class, or by its
    ``_field_meanings``)."""
    cls = type(obj)
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    validate_params(cls.__name__, values, cls._parameter_constraints, getattr(cls, "_field_meanings", None))

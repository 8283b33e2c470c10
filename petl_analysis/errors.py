"""One exception type for every user-facing failure.

The CLI turns a :class:`PetlError` into a single line on stderr and a non-zero exit code; anything else is a bug
and keeps its traceback. Messages say *what* was wrong, *where* (file, name) and *what was expected*.
"""

from __future__ import annotations


class PetlError(ValueError):
    """Bad input: an unknown name, a malformed file, an impossible configuration.

    Subclasses ``ValueError`` so library users can catch it generically.
    """

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


def expected_one_of(what: str, got: object, choices: list[str] | tuple[str, ...]) -> PetlError:
    """Build the standard "unknown X 'y'; expected one of: a, b, c" error."""
    shown = ", ".join(sorted(map(str, choices))) or "(none)"
    return PetlError(f"unknown {what} {got!r}; expected one of: {shown}")

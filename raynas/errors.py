"""Errors a user can fix, and the one family of value checks behind every setting.

The CLI prints a ``UserError`` as one line and exits 2. Every message names
the field and says what is allowed, in one format::

    section.field: <problem>; got <value>
    section.field: <value> is not allowed; allowed values: [...]

The ``*_problem`` functions say what is wrong with a value (None: nothing);
the settings loader (``raynas.settings``) and the ``check_*`` helpers for
plain function arguments both use them, so a rule is written once.
"""

from __future__ import annotations

from typing import Any, Iterable


class UserError(ValueError):
    """Bad input (configuration, paths, names): the message says what and where."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole_problem(value: Any, minimum: int) -> str | None:
    """Why ``value`` is not an integer >= ``minimum`` (bools and 2.5 are not), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"must be a whole number >= {minimum}"
    return None


def number_problem(value: Any, low: float | None = None, high: float | None = None,
                   low_open: bool = False) -> str | None:
    """Why ``value`` is not a number in the range (``low`` excluded when ``low_open``), or None."""
    if low is not None and high is not None:
        wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        wanted = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        wanted = "a number"
    if not _is_number(value) or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and value > high):
        return f"must be {wanted}"
    return None


def size_problem(value: Any) -> str | None:
    """Why ``value`` is not an image size (an int > 0, the shorter side, or ``[height, width]``), or None."""
    def side(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0
    if value is None or side(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(side, value))):
        return None
    return "expected an int > 0 (shorter side) or [height, width] of ints > 0"


def choice_problem(value: Any, allowed: Iterable[Any]) -> str | None:
    """Why ``value`` is not one of ``allowed``, or None."""
    allowed = list(allowed)
    if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
        return f"{value!r} is not allowed; allowed values: {allowed}"
    return None


def field_error(field: str, problem: str, value: Any) -> UserError:
    """The one message format: ``field: problem; got value`` (a choice problem already names the value)."""
    if " is not allowed; allowed values: " in problem:
        return UserError(f"{field}: {problem}")
    return UserError(f"{field}: {problem}; got {value!r}")


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the field."""
    problem = choice_problem(value, allowed)
    if problem:
        raise field_error(field, problem, value)
    return value


def check_number(field: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> Any:
    """Return ``value`` if it is a number in the range (see ``number_problem``), else raise naming the field."""
    problem = number_problem(value, low, high, low_open)
    if problem:
        raise field_error(field, problem, value)
    return value


def check_positive(field: str, value: Any) -> Any:
    """Return ``value`` if it is a number > 0, else raise naming the field."""
    return check_number(field, value, 0, low_open=True)


def check_whole(field: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum`` (not a bool, not 2.5), else raise naming the field."""
    problem = whole_problem(value, minimum)
    if problem:
        raise field_error(field, problem, value)
    return value

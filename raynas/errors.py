"""Errors a user can fix; the CLI prints them as one line and exits 2."""

from __future__ import annotations

from typing import Any, Iterable


class UserError(ValueError):
    """Bad input (configuration, paths, names): the message says what and where."""


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the field."""
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"{field}: {value!r} is not allowed; allowed values: {allowed}")
    return value


def check_positive(field: str, value: Any) -> Any:
    """Return ``value`` if it is a number > 0, else raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UserError(f"{field}: must be a number > 0, got {value!r}")
    return value


def check_whole(field: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum`` (not a bool), else raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{field}: must be a whole number >= {minimum}, got {value!r}")
    return value

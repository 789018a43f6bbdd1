"""The one settings loader: YAML sections and JSON options → validated pydantic models.

Every section of every file (``sweep`` and its objective's fields, the
supernet-training sections, sub-network evaluation, latency, ``finetune``,
``report``) is a ``Section``: typed fields, each with its one default,
unknown keys rejected, and every error in the one format of
``raynas.errors`` (``section.field: problem; got value``), raised as a
``UserError``. Field types carry the rules (``Whole(1)``, ``Positive``,
``Fraction``, ``Choice(...)``), written once in ``raynas.errors``.

>>> class Demo(Section):
...     budget: Whole(1) = 200
>>> Demo.load({"budget": 50}, "sweep").budget
50
>>> Demo.load({"budget": 2.5}, "sweep")
Traceback (most recent call last):
raynas.errors.UserError: sweep.budget: must be a whole number >= 1; got 2.5
>>> Demo.load({"budgett": 5}, "sweep")
Traceback (most recent call last):
raynas.errors.UserError: sweep: unknown field(s) ['budgett']; allowed fields: ['budget']
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Mapping, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from raynas.errors import UserError, choice_problem, field_error, number_problem, whole_problem

S = TypeVar("S", bound="Section")


def _rule(problem_of) -> BeforeValidator:
    """A field rule: ``problem_of(value)`` says what is wrong (None: the value is kept as given)."""

    def check(value: Any) -> Any:
        problem = problem_of(value)
        if problem:
            raise ValueError(problem)
        return value

    return BeforeValidator(check)


def Whole(minimum: int = 0) -> Any:
    """An integer >= ``minimum``; 2.5, "3" and True are refused."""
    return Annotated[int, _rule(lambda v: whole_problem(v, minimum))]


def Number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    """A number (int or float, not a bool) in the range; kept as a float."""
    return Annotated[float, _rule(lambda v: number_problem(v, low, high, low_open))]


def Choice(*allowed: Any) -> Any:
    """One of ``allowed`` (the error lists them)."""
    return Annotated[Any, _rule(lambda v: choice_problem(v, allowed))]


Positive = Number(0, low_open=True)
NonNegative = Number(0)
Fraction = Number(0, 1)

_PHRASES = {
    "missing": "required",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "too_short": "has too few items",
    "too_long": "has too many items",
}


def _path(section: str, loc: tuple) -> str:
    text = section
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section class that holds the field at ``loc`` (nested sections are followed)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _user_error(section: str, model: type[BaseModel], error: ValidationError) -> UserError:
    errors = error.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == parent)
        holder = _model_at(model, parent)
        allowed = f"; allowed fields: {list(holder.model_fields)}" if holder is not None else ""
        return UserError(f"{_path(section, parent)}: unknown field(s) {names}{allowed}")
    first = errors[0]
    if first["type"] == "value_error":
        problem = str(first["ctx"]["error"])
    elif first["type"] == "literal_error":
        problem = f"{first['input']!r} is not allowed; allowed values: [{first['ctx']['expected']}]"
    else:
        problem = _PHRASES.get(first["type"], first["msg"])
    if first["type"] == "missing":
        return UserError(f"{_path(section, first['loc'])}: {problem}")
    return field_error(_path(section, first["loc"]), problem, first["input"])


class _SectionType(type(BaseModel)):
    """Keyword construction (``Cls(**fields)``) reports errors like ``load``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            obj = super().__call__(*args, **kwargs)
        except ValidationError as err:
            raise _user_error(cls.SECTION, cls, err) from None
        obj.check(cls.SECTION)
        return obj


class Section(BaseModel, metaclass=_SectionType):
    """A settings section: typed fields with one default each; unknown keys are errors.

    ``load(data, section)`` validates a mapping (``section`` names it in errors,
    default ``SECTION``); ``Cls(**fields)`` does the same for keyword arguments;
    ``dump()`` is its JSON-able form, which ``load`` reads back unchanged.
    Rules across fields go into ``check(section)``, which raises ``UserError``
    naming the field and calls the ``check`` of nested sections.
    """

    model_config = ConfigDict(extra="forbid", validate_default=False)
    SECTION: ClassVar[str] = "settings"

    @classmethod
    def load(cls: type[S], data: Mapping[str, Any] | None, section: str | None = None) -> S:
        """Validate ``data`` (None: every default); errors are ``UserError`` naming ``section.field``."""
        section = section or cls.SECTION
        if data is None:
            data = {}
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise field_error(section, "must be a mapping of fields", data)
        try:
            obj = cls.model_validate(dict(data))
        except ValidationError as err:
            raise _user_error(section, cls, err) from None
        obj.check(section)
        return obj

    def check(self, section: str) -> None:
        """Rules across fields (a field's own rule lives in its type); raise ``UserError``."""

    @staticmethod
    def field(section: str, name: str) -> str:
        """``section.name`` (just ``name`` at the top level of a file)."""
        return f"{section}.{name}" if section else name

    def dump(self) -> dict[str, Any]:
        """The section as plain JSON-able data (tuples become lists)."""
        return self.model_dump(mode="json")

    def updated(self: S, changes: Mapping[str, Any], section: str | None = None) -> S:
        """A copy with ``changes`` applied, validated as a whole."""
        return type(self).load({**self.dump(), **changes}, section)


def read_sections(path: str | Path, allowed: Iterable[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; keys other than ``allowed`` are rejected, naming the allowed ones."""
    import yaml

    allowed = list(allowed)
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config: file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config: {path} is not valid YAML ({err})") from None
    if not isinstance(data, Mapping):
        raise UserError(f"config: {path} must hold a mapping of sections {allowed}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"config: unknown section(s) {unknown} in {path}; allowed sections: {allowed}")
    return dict(data)

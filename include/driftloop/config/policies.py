"""What the versioned policy files (drift, promotion) share: their error type, overrides, and
the wording of a pydantic validation error as one line a person can act on."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError
    from pydantic.fields import FieldInfo


class PolicyError(ValueError):
    """A policy file (or a run-time override of it) is invalid; the message names the key."""


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied key by key, nested mappings merged, inputs untouched."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    """The field a validation error's location points at, through nested models."""
    from pydantic import BaseModel

    field = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
    return field


def _allowed_range(field: FieldInfo | None) -> str:
    """``[0, 1)``-style text of a field's bounds when it has both, else ``""``."""
    if field is None:
        return ""
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds.get("gt"))
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds.get("lt"))
    if low[1] is None or high[1] is None:
        return ""
    return f" (allowed: {low[0]}{low[1]:g}, {high[1]:g}{high[0]})"


_BOUND_WORDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def describe_problem(model: type[BaseModel], problem: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as a sentence naming the
    key path: ``'retention.keep_last' must be >= 1, got 0``."""
    loc = tuple(problem["loc"])
    key = ".".join(str(part) for part in loc)
    kind = problem["type"]
    got = problem.get("input")
    ctx = problem.get("ctx") or {}
    if kind == "missing":
        return f"missing key {key!r}"
    if kind == "extra_forbidden":
        parent = _field_at(model, loc[:-1]) if len(loc) > 1 else None
        owner = parent.annotation if parent is not None else model
        known = sorted(getattr(owner, "model_fields", {}))
        return f"unknown key {key!r} (known: {known})"
    if kind in ("float_type", "float_parsing", "bool_is_no_number"):
        return f"{key!r} must be a number, got {got!r}"
    if kind == "finite_number":
        return f"{key!r} must be finite, got {got!r}"
    if kind in ("int_type", "int_parsing", "int_from_float", "bool_is_no_integer"):
        return f"{key!r} must be an integer, got {got!r}"
    if kind in _BOUND_WORDS:
        word, name = _BOUND_WORDS[kind]
        allowed = _allowed_range(_field_at(model, loc))
        return f"{key!r} must be {word} {ctx[name]:g}, got {got!r}{allowed}"
    if kind == "literal_error":
        return f"{key!r} must be one of {ctx['expected']}, got {got!r}"
    if kind in ("model_type", "dict_type"):
        return f"{key!r} must be a mapping, got {got!r}"
    if kind == "true_or_false":
        return f"{key!r} must be true or false, got {got!r}"
    if kind in ("string_type", "string_too_short"):
        return f"{key!r} must be a non-empty string, got {got!r}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{key!r}: {message}" if key else message


def describe_validation_error(model: type[BaseModel], err: ValidationError) -> str:
    """Every problem of a validation error, each naming its key, joined by ``; ``."""
    return "; ".join(describe_problem(model, problem) for problem in err.errors())

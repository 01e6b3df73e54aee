"""The estimator's form, made from the project's schema (components/core/projects/carvision.py
COLUMNS): one field per input column, with its type, range and allowed values as help. The form
checks and parses nothing: numbers go as typed, and the predictor reads them with the parser it
reads every request with, so its answer, or its refusal, is the one that counts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.core.spec import Column, ProjectSpec

KEY_PREFIX = "car."
EXAMPLE: dict[str, Any] = {
    "model_year": 2011,
    "model": "bmw x5",
    "condition": "good",
    "cylinders": 6,
    "fuel": "gas",
    "odometer": 145_000,
    "transmission": "automatic",
    "type": "SUV",
    "paint_color": None,
    "is_4wd": 1,
}
"""The car the form opens with (the docs' example); the posting date is the listings' latest."""
NOT_GIVEN = "(not given)"


@dataclass(frozen=True)
class Field:
    column: Column
    label: str
    help: str

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.column.name


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def help_text(column: Column) -> str:
    parts = [column.description] if column.description else []
    if column.minimum is not None and column.maximum is not None:
        parts.append(f"from {_number(column.minimum)} to {_number(column.maximum)}")
    if column.categories:
        parts.append("one of " + ", ".join(column.categories))
    if column.dtype == "date":
        parts.append("an ISO date")
    parts.append("may be left blank" if column.nullable else "required")
    return "; ".join(parts)


def fields(spec: ProjectSpec) -> list[Field]:
    return [
        Field(column, column.name.replace("_", " "), help_text(column)) for column in spec.columns
    ]


def _is_number(column: Column) -> bool:
    return column.dtype in ("float", "int")


def defaults(spec: ProjectSpec, latest_posting: dt.date | None) -> dict[str, Any]:
    """The example car, posted on the listings' latest date (today without listings); numbers
    as the text of their fields."""
    values = {c.name: EXAMPLE.get(c.name) for c in spec.columns}
    for column in spec.columns:
        if _is_number(column):
            value = values[column.name]
            values[column.name] = "" if value is None else str(value)
    values["date_posted"] = latest_posting or dt.date.today()
    return values


def options(column: Column) -> list[Any]:
    """A category field's choices: its allowed values, with `not given` first when blank is
    allowed."""
    allowed: list[Any] = list(column.categories or ())
    return [None, *allowed] if column.nullable else allowed


def instance(spec: ProjectSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values as one v1 instance: blanks as null, dates as ISO text, everything else
    as entered (numbers as their text, which the predictor parses)."""
    car: dict[str, Any] = {}
    for column in spec.columns:
        value = values.get(column.name)
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, float) and math.isnan(value):
            value = None
        if isinstance(value, dt.date):
            value = value.isoformat()
        car[column.name] = value
    return car

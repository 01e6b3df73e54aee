"""Request bodies to a validated frame of raw input columns, or a 400 naming what is wrong.

Rules (documented in docs/serving.md):
- v1: a JSON object `{"instances": [{field: value, ...}, ...]}`; v2: one named input per field.
- At most MAX_INSTANCES instances per predict request (MAX_EXPLAIN_INSTANCES per explain), and
  at least one.
- Every field of a non-nullable column is required; a nullable field may be null or left out.
- Values are checked by the project schema through `column_violations`, the same checks the
  pipelines' validate step applies: type, whole numbers, finite, range, allowed categories,
  non-empty strings, ISO dates. JSON booleans are not numbers. NaN counts as a blank value.
- Fields that are not input columns are ignored, and the v1 response lists them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from components.core.spec import ProjectSpec
from components.core.validate import column_violations

MAX_INSTANCES = 1000
MAX_EXPLAIN_INSTANCES = 20
MAX_LISTED_PROBLEMS = 10
REQUEST_FIELD = "request"
"""The `field` reported for problems with the body as a whole (not JSON, no instances, ...)."""
INSTANCE_FIELD = "instances"
"""The `field` reported for an instance that is not an object."""


@dataclass(frozen=True)
class Problem:
    field: str
    rule: str
    instance: int | None = None
    value: object = None
    show_value: bool = False

    def describe(self) -> str:
        if self.field == REQUEST_FIELD:
            return f"request: {self.rule}"
        if self.field == INSTANCE_FIELD:
            return f"instance {self.instance}: {self.rule}"
        where = "" if self.instance is None else f"instance {self.instance}, "
        got = f" (got {shown(self.value)})" if self.show_value else ""
        return f"{where}field {self.field!r}: {self.rule}{got}"


class RequestRejected(InvalidInput):
    """A 400 whose problems stay readable for metrics (fields) as well as for the client."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        listed = "; ".join(p.describe() for p in self.problems[:MAX_LISTED_PROBLEMS])
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        count = f"{len(self.problems)} problems: " if len(self.problems) > 1 else ""
        super().__init__(f"{count}{listed}{suffix}")

    @property
    def fields(self) -> set[str]:
        return {p.field for p in self.problems}


def rejected(rule: str, field_name: str = REQUEST_FIELD) -> RequestRejected:
    return RequestRejected([Problem(field_name, rule)])


def shown(value: object, limit: int = 60) -> str:
    """A value as the client wrote it in JSON (NaN stays NaN), cut to `limit` characters."""
    try:
        text = json.dumps(value, default=repr)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Parsed:
    """A request whose body has been read: raw column values, not yet checked by the schema."""

    columns: dict[str, list[Any]]
    rows: int
    payload: dict[str, Any] | InferRequest
    ignored_fields: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Found while reading: missing fields, instances that are not objects."""
    request_id: str | None = None
    """Set by the predictor: the client's X-Request-ID, or one it made (the inference log's)."""


def _schema_number(value: Any) -> Any:
    """A value of a number field as the schema check should see it.

    JSON `true` passes pandas' number coercion as 1, and a list or object makes it raise; both
    become text, which the check reports as not a number. Integers beyond 64 bits (Python's
    JSON reads them exactly) also make pandas raise: they become floats, or infinity.
    """
    if isinstance(value, bool) or not (value is None or isinstance(value, int | float | str)):
        return str(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _for_schema(values: list[Any], numeric: bool) -> pd.Series:
    return pd.Series([_schema_number(v) for v in values] if numeric else values, dtype=object)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):  # a numeric string that passed the schema check
        return float(pd.to_numeric(value))
    return float(value)


def _model_column(values: list[Any], numeric: bool) -> np.ndarray:
    """The column the model sees, once the schema check has passed: numbers as float64, and
    blanks as NaN, as read from a CSV (the imputers treat NaN, not None, as missing)."""
    if numeric:
        return np.array([_number(v) for v in values], dtype=float)
    return np.array([math.nan if v is None else v for v in values], dtype=object)


def _column_problems(
    spec: ProjectSpec, column_name: str, values: list[Any], numeric: bool
) -> dict[int, tuple[str, object]]:
    """Row -> (rule, value) for the rows of one column that break the schema."""
    column = spec.column(column_name)
    found: dict[int, tuple[str, object]] = {}
    for violation in column_violations(column, _for_schema(values, numeric)):
        for row in violation.rows:
            found.setdefault(row, (violation.rule, values[row]))
    return found


def validate_group(
    spec: ProjectSpec, requests: Sequence[Parsed]
) -> tuple[pd.DataFrame, list[RequestRejected | None]]:
    """Checks several requests with one schema check per column (its cost is per call, not per
    row), and returns the model frame of the valid ones, their rows in order, with each request's
    400 or None. A request's problems follow the ones found while reading it, without repeating
    a field or instance already reported there."""
    offsets = np.cumsum([0, *(r.rows for r in requests)])
    owner = np.repeat(np.arange(len(requests)), [r.rows for r in requests])
    problems = [list(r.problems) for r in requests]
    skip = [
        (
            {(p.instance, p.field) for p in r.problems},
            {p.instance for p in r.problems if p.field == INSTANCE_FIELD},
        )
        for r in requests
    ]
    merged: dict[str, list[Any]] = {}
    for column in spec.columns:
        values: list[Any] = []
        for request in requests:
            values.extend(request.columns.get(column.name) or [None] * request.rows)
        merged[column.name] = values
        numeric = column.dtype in ("float", "int")
        for row, (rule, value) in _column_problems(spec, column.name, values, numeric).items():
            index = int(owner[row])
            local = row - int(offsets[index])
            reported, broken = skip[index]
            if local not in broken and (local, column.name) not in reported:
                problems[index].append(Problem(column.name, rule, local, value, show_value=True))
    order = {name: i for i, name in enumerate(spec.input_columns)}
    verdicts: list[RequestRejected | None] = []
    for found in problems:
        found.sort(
            key=lambda p: (p.instance if p.instance is not None else -1, order.get(p.field, -1))
        )
        verdicts.append(RequestRejected(found) if found else None)
    keep = np.repeat([v is None for v in verdicts], [r.rows for r in requests])
    data = {}
    for column in spec.columns:
        kept = [v for v, k in zip(merged[column.name], keep, strict=True) if k]
        data[column.name] = _model_column(kept, column.dtype in ("float", "int"))
    return pd.DataFrame(data), verdicts


def validated_frame(spec: ProjectSpec, request: Parsed) -> pd.DataFrame:
    """One request's model frame, or its 400."""
    frame, (verdict,) = validate_group(spec, [request])
    if verdict is not None:
        raise verdict
    return frame


def _check_size(rows: int, limit: int) -> None:
    if rows == 0:
        raise rejected("no instances: send at least one")
    if rows > limit:
        raise rejected(f"{rows} instances exceed the limit of {limit} per request")


def from_v1(spec: ProjectSpec, payload: object, limit: int) -> Parsed:
    """`{"instances": [{field: value}, ...]}`, read; the schema check comes later."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise rejected('expected a JSON object {"instances": [{field: value, ...}, ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise rejected(f"'instances' must be a list of objects, got {type(instances).__name__}")
    _check_size(len(instances), limit)
    known = set(spec.input_columns)
    required = [c.name for c in spec.columns if not c.nullable]
    problems: list[Problem] = []
    ignored: set[str] = set()
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            problems.append(
                Problem(
                    INSTANCE_FIELD, f"expected an object keyed by field, got {shown(instance)}", i
                )
            )
            continue
        problems.extend(
            Problem(name, "missing (required)", i) for name in required if name not in instance
        )
        if len(instance) > len(known) or not known.issuperset(instance):
            ignored.update(k for k in instance if k not in known)
    rows = [instance if isinstance(instance, dict) else {} for instance in instances]
    columns = {name: [row.get(name) for row in rows] for name in spec.input_columns}
    return Parsed(columns, len(instances), payload, sorted(map(str, ignored)), problems)


def _flat(data: Any) -> list[Any]:
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        return [data]
    # [[v], [v], ...] (shape [n, 1]) counts as one value per row
    if data and all(isinstance(row, list) and len(row) == 1 for row in data):
        return [row[0] for row in data]
    return list(data)


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def from_v2(spec: ProjectSpec, request: InferRequest, limit: int) -> Parsed:
    """Open Inference Protocol: one named input per field, each with one value per row."""
    inputs = {inp.name: [_decoded(v) for v in _flat(inp.data)] for inp in request.inputs}
    required = [c.name for c in spec.columns if not c.nullable]
    missing = [Problem(name, "missing input (required)") for name in required if name not in inputs]
    if missing:
        raise RequestRejected(missing)
    lengths = {name: len(inputs[name]) for name in spec.input_columns if name in inputs}
    rows = max(lengths.values(), default=0)
    _check_size(rows, limit)
    uneven = [
        Problem(name, f"{n} values where the other inputs have {rows}")
        for name, n in lengths.items()
        if n != rows
    ]
    if uneven:
        raise RequestRejected(uneven)
    known = set(spec.input_columns)
    columns = {name: values for name, values in inputs.items() if name in known}
    ignored = sorted(name for name in inputs if name not in known)
    return Parsed(columns, rows, request, ignored)

"""Request bodies to a validated frame of raw input columns, or a 400 naming what is wrong.

Rules (documented in docs/serving.md):
- v1: a JSON object `{"instances": [{field: value, ...}, ...]}`; v2: one named input per field.
- At most MAX_INSTANCES instances per predict request (MAX_EXPLAIN_INSTANCES per explain), and
  at least one.
- Every field of a non-nullable column is required; a nullable field may be null or left out.
- Values are checked by the project schema through `column_violations`, the same checks the
  pipelines' validate step applies: type, whole numbers, finite, range, allowed categories,
  non-empty strings, ISO dates. JSON booleans are not numbers. NaN counts as a blank value.
- Fields that are not input columns are ignored, and the v1 response lists them; except a field
  that looks like a misspelling of an input field the request left out (`Agee` without `Age`),
  which is refused with a "did you mean".

A 400's body (`RequestRejected.body`) carries the message and every problem as data:
`{"error": str, "problems": [{"instance", "field", "rule", "value", "did_you_mean"}, ...]}`.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from components.core.spec import ProjectSpec
from components.core.validate import column_violations, parse_number

MAX_INSTANCES = 1000
MAX_EXPLAIN_INSTANCES = 20
MAX_LISTED_PROBLEMS = 10
"""Problems the one-line message spells out."""
MAX_BODY_PROBLEMS = 100
"""Problems the body lists as data (a 1000-row request could otherwise answer with 10,000)."""
MAX_VALUE_CHARS = 200
"""Longer values (as JSON) are sent back as their text, cut to this length."""
SUGGESTION_CUTOFF = 0.75
"""difflib ratio from which a sent field is taken for a misspelling of a known one. The real
files' columns that are not inputs (CustomerId, Surname, days_listed, ...) stay under 0.65."""
REQUEST_FIELD = "request"
"""The metrics label for problems with the body as a whole (not JSON, no instances, ...)."""
INSTANCE_FIELD = "instances"
"""The metrics label for an instance that is not an object."""
MISSING = "missing"
UNKNOWN_FIELD = "unknown_field"


@dataclass(frozen=True)
class Problem:
    field: str | None
    """The input field; the name the client sent for UNKNOWN_FIELD; None for the body, or an
    instance, as a whole."""
    rule: str
    """Short name of the rule broken: `missing`, `unknown_field`, `type`, `minimum`, ..."""
    detail: str
    """What is wrong, in words."""
    instance: int | None = None
    value: object = None
    show_value: bool = False
    suggestion: str | None = None
    """The known field that a misspelt one probably meant."""

    def describe(self) -> str:
        if self.field is None:
            return (
                f"request: {self.detail}"
                if self.instance is None
                else f"instance {self.instance}: {self.detail}"
            )
        where = "" if self.instance is None else f"instance {self.instance}, "
        got = f" (got {shown(self.value)})" if self.show_value else ""
        return f"{where}field {self.field!r}: {self.detail}{got}"

    @property
    def metric_field(self) -> str:
        """The `field` label of mlops_validation_failures_total: always a known name or one of
        the two fixed labels, so that clients cannot grow the label set."""
        if self.rule == UNKNOWN_FIELD:
            return self.suggestion or REQUEST_FIELD
        if self.field is None:
            return REQUEST_FIELD if self.instance is None else INSTANCE_FIELD
        return self.field

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "field": self.field,
            "rule": self.rule,
            "value": _json_safe(self.value),
            "did_you_mean": self.suggestion,
        }


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
        return {p.metric_field for p in self.problems}

    def body(self) -> dict[str, Any]:
        return {
            "error": str(self),
            "problems": [p.to_json() for p in self.problems[:MAX_BODY_PROBLEMS]],
        }


def rejected(rule: str, detail: str) -> RequestRejected:
    """A 400 about the body as a whole."""
    return RequestRejected([Problem(None, rule, detail)])


MAX_ECHOED_DEPTH = 20
"""Deeper values are sent back as text: echoing them as sent could exhaust the stack."""


def shown(value: object, limit: int = 60) -> str:
    """A value as the client wrote it in JSON (NaN stays NaN), cut to `limit` characters."""
    try:
        text = json.dumps(value, default=repr)
    except ValueError:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain_json(value: object, depth: int = 0) -> bool:
    """JSON that any client reads back as sent: no NaN or Infinity, no integer beyond 64 bits,
    not nested deeper than MAX_ECHOED_DEPTH."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= MAX_ECHOED_DEPTH:
        return False
    if isinstance(value, list):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v, depth + 1) for k, v in value.items())
    return False


def _json_safe(value: object) -> object:
    """The offending value for the error body: as sent when it is plain JSON of modest size,
    else its JSON text (cut short): NaN, Infinity, huge integers, long texts and lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if _plain_json(value) and len(shown(value, MAX_VALUE_CHARS + 1)) <= MAX_VALUE_CHARS:
        return value
    return shown(value, MAX_VALUE_CHARS)


@functools.lru_cache(maxsize=1024)
def closest(name: str, candidates: tuple[str, ...]) -> str | None:
    """The candidate that `name` most likely misspells (difflib, case ignored), if one is close."""
    lowered = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=SUGGESTION_CUTOFF)
    return lowered[found[0]] if found else None


def _field_problems(
    spec: ProjectSpec, sent: Mapping[str, Any], instance: int | None, kind: str = "field"
) -> list[Problem]:
    """Required fields that `sent` lacks, and sent fields that look like misspellings of fields
    it lacks: `Agee` sent without `Age` is one problem that names both and suggests `Age`. Other
    unknown fields are not problems (the caller ignores them). `kind`: "field" (v1) or "input"
    (v2), for the messages."""
    absent = tuple(name for name in spec.input_columns if name not in sent)
    if not absent:
        return []
    known = set(spec.input_columns)
    plural = "input fields" if kind == "field" else "inputs"
    problems: list[Problem] = []
    meant: set[str] = set()
    for key in sent:
        match = None if key in known else closest(str(key), absent)
        if match is None:
            continue
        meant.add(match)
        lacking = (
            f"so {match!r} would be read as blank"
            if spec.column(match).nullable
            else f"and the required {kind} {match!r} is missing"
        )
        problems.append(
            Problem(
                str(key),
                UNKNOWN_FIELD,
                f"not one of {spec.name}'s {plural}, {lacking}: did you mean {match!r}?",
                instance,
                sent[key],
                suggestion=match,
            )
        )
    missing = "missing (required)" if kind == "field" else f"missing {kind} (required)"
    problems.extend(
        Problem(name, MISSING, missing, instance)
        for name in absent
        if name not in meant and not spec.column(name).nullable
    )
    return problems


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
    become text (their type's name: str() of a deeply nested list would exhaust the stack),
    which the check reports as not a number. Integers beyond 64 bits (Python's JSON reads them
    exactly) also make pandas raise: they become floats, or infinity.
    """
    if isinstance(value, bool) or not (value is None or isinstance(value, int | float | str)):
        return f"<{type(value).__name__}>"
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _for_schema(values: list[Any], numeric: bool) -> np.ndarray:
    checked = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):  # one by one: a list value must stay one object
        checked[row] = _schema_number(value) if numeric else value
    return checked


def _number(value: Any) -> float:
    # the schema check's own parser: a string it accepted is read as the same number here
    return math.nan if value is None else parse_number(value)


def _model_column(values: list[Any], numeric: bool) -> np.ndarray:
    """The column the model sees, once the schema check has passed: numbers as float64, and
    blanks as NaN, as read from a CSV (the imputers treat NaN, not None, as missing)."""
    if numeric:
        return np.array([_number(v) for v in values], dtype=float)
    return np.array([math.nan if v is None else v for v in values], dtype=object)


def _column_problems(
    spec: ProjectSpec, column_name: str, values: list[Any], numeric: bool
) -> dict[int, tuple[str, str, object]]:
    """Row -> (rule, detail, value) for the rows of one column that break the schema."""
    column = spec.column(column_name)
    found: dict[int, tuple[str, str, object]] = {}
    for violation in column_violations(column, _for_schema(values, numeric)):
        for row in violation.rows:
            found.setdefault(row, (violation.code, violation.rule, values[row]))
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
    # a misspelt field's problem stands for the field it meant, which would read as blank
    skip = [
        (
            {(p.instance, p.suggestion or p.field) for p in r.problems},
            {p.instance for p in r.problems if p.field is None},
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
        broken_rows = _column_problems(spec, column.name, values, numeric)
        for row, (rule, detail, value) in broken_rows.items():
            index = int(owner[row])
            local = row - int(offsets[index])
            reported, broken = skip[index]
            if local not in broken and (local, column.name) not in reported:
                problems[index].append(
                    Problem(column.name, rule, detail, local, value, show_value=True)
                )
    order = {name: i for i, name in enumerate(spec.input_columns)}
    verdicts: list[RequestRejected | None] = []
    for found in problems:
        found.sort(
            key=lambda p: (
                p.instance if p.instance is not None else -1,
                order.get(p.suggestion or p.field or "", -1),
            )
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
        raise rejected("min_instances", "no instances: send at least one")
    if rows > limit:
        raise rejected("max_instances", f"{rows} instances exceed the limit of {limit} per request")


def from_v1(spec: ProjectSpec, payload: object, limit: int) -> Parsed:
    """`{"instances": [{field: value}, ...]}`, read; the schema check comes later."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise rejected("format", 'expected a JSON object {"instances": [{field: value, ...}, ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise rejected(
            "format", f"'instances' must be a list of objects, got {type(instances).__name__}"
        )
    _check_size(len(instances), limit)
    names = spec.input_columns
    known = set(names)
    problems: list[Problem] = []
    ignored: set[str] = set()
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            problems.append(
                Problem(
                    None,
                    "type",
                    f"expected an object keyed by field, got {shown(instance)}",
                    i,
                    instance,
                )
            )
            continue
        found = _field_problems(spec, instance, i) if any(n not in instance for n in names) else []
        problems.extend(found)
        if len(instance) > len(known) or not known.issuperset(instance):
            misspelt = {p.field for p in found if p.rule == UNKNOWN_FIELD}
            ignored.update(k for k in instance if k not in known and k not in misspelt)
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
    missing = _field_problems(spec, inputs, None, "input")
    if missing:
        raise RequestRejected(missing)
    lengths = {name: len(inputs[name]) for name in spec.input_columns if name in inputs}
    rows = max(lengths.values(), default=0)
    _check_size(rows, limit)
    uneven = [
        Problem(name, "shape", f"{n} values where the other inputs have {rows}", value=n)
        for name, n in lengths.items()
        if n != rows
    ]
    if uneven:
        raise RequestRejected(uneven)
    known = set(spec.input_columns)
    columns = {name: values for name, values in inputs.items() if name in known}
    ignored = sorted(name for name in inputs if name not in known)
    return Parsed(columns, rows, request, ignored)

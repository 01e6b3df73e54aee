"""Checks a frame against a project's schema. Shared by the validate step and the model server."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.core.spec import Column, ProjectSpec


@dataclass(frozen=True)
class Violation:
    """One rule broken by one column, on the listed row positions (empty for whole-column rules)."""

    column: str
    rule: str
    rows: tuple[int, ...] = ()
    example: object = None
    code: str = ""
    """The rule's short name for machines (`type`, `minimum`, `category`, ...; set by
    `column_violations`); `rule` says it in words."""

    def describe(self) -> str:
        where = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
            where = f" in {len(self.rows)} row(s) (row {shown}{more}; e.g. {self.example!r})"
        return f"column {self.column!r}: {self.rule}{where}"


class DataValidationError(ValueError):
    def __init__(self, dataset: str, violations: list[Violation]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {v.describe()}" for v in violations)
        super().__init__(f"{dataset} failed validation with {len(violations)} problem(s):\n{lines}")


def _violation(
    column: str, rule: str, mask: np.ndarray, raw: np.ndarray, code: str = ""
) -> Violation | None:
    if not mask.any():  # the usual case, checked at a fraction of flatnonzero's cost
        return None
    rows = np.flatnonzero(mask)
    example = raw[rows[0]]
    return Violation(
        column,
        rule,
        tuple(int(r) for r in rows),
        example.item() if isinstance(example, np.generic) else example,
        code,
    )


def parse_number(value: object) -> float:
    """The value as a float, NaN when it is not a number: the one parser of a numeric field, so
    that the validate step, the server's schema check and the model it feeds read the same
    number. A boolean is not a number here: JSON true/false would otherwise pass as 1/0. Nor is
    text that Python's float() reads but pandas and a CSV reader do not: digits of other
    scripts (Arabic-Indic, fullwidth), other Unicode spaces, underscores ("1_000")."""
    if isinstance(value, bool | np.bool_):
        return np.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        if not value.isascii() or "_" in value:
            return np.nan
        try:
            return float(value)
        except ValueError:
            return np.nan
    return np.nan


def _numbers(values: pd.Series | np.ndarray, raw: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iuf":
        return (
            np.asarray(values, dtype=float)
            if isinstance(values, np.ndarray)
            else values.to_numpy(dtype=float)
        )
    return np.fromiter((parse_number(v) for v in raw), dtype=float, count=len(raw))


def _is_iso_date(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return False
    return True


def column_violations(column: Column, values: pd.Series | np.ndarray) -> list[Violation]:
    """Every rule of `column` that `values` breaks, with the positions of the rows that break it.

    Works on plain arrays: the server calls it on every request, often for one row.
    """
    name = column.name
    raw = values if isinstance(values, np.ndarray) else values.to_numpy(dtype=object)
    raw = raw.astype(object, copy=False)
    present = ~pd.isna(raw)
    found: list[Violation | None] = []
    if not column.nullable:
        found.append(_violation(name, "blank value where one is required", ~present, raw, "blank"))
    if column.dtype in ("float", "int"):
        numbers = _numbers(values, raw)
        known = ~np.isnan(numbers)
        found.append(
            _violation(
                name, f"not a number (expected {column.dtype})", present & ~known, raw, "type"
            )
        )
        finite = np.isfinite(numbers)
        found.append(_violation(name, "not a finite number", known & ~finite, raw, "finite"))
        if column.dtype == "int":
            found.append(
                _violation(
                    name,
                    "not a whole number",
                    finite & (numbers != np.round(numbers)),
                    raw,
                    "whole",
                )
            )
        checked = np.where(finite, numbers, np.nan)
        with np.errstate(invalid="ignore"):
            if column.minimum is not None:
                found.append(
                    _violation(
                        name,
                        f"below the minimum {column.minimum:g}",
                        checked < column.minimum,
                        raw,
                        "minimum",
                    )
                )
            if column.maximum is not None:
                found.append(
                    _violation(
                        name,
                        f"above the maximum {column.maximum:g}",
                        checked > column.maximum,
                        raw,
                        "maximum",
                    )
                )
    elif column.dtype == "category":
        allowed = frozenset(column.categories or ())
        known = np.fromiter(
            (isinstance(v, str) and v in allowed for v in raw), dtype=bool, count=len(raw)
        )
        found.append(
            _violation(
                name,
                f"not one of the allowed values {sorted(allowed)}",
                present & ~known,
                raw,
                "category",
            )
        )
    elif column.dtype == "string":
        text = np.fromiter(
            (isinstance(v, str) and v.strip() != "" for v in raw), dtype=bool, count=len(raw)
        )
        found.append(_violation(name, "not a non-empty string", present & ~text, raw, "text"))
    elif column.dtype == "date":
        dates = np.fromiter((_is_iso_date(v) for v in raw), dtype=bool, count=len(raw))
        found.append(
            _violation(name, "not an ISO date (YYYY-MM-DD)", present & ~dates, raw, "date")
        )
    return [v for v in found if v is not None]


def _target_violations(spec: ProjectSpec, target: pd.Series) -> list[Violation]:
    name = spec.target
    raw = target.to_numpy(dtype=object)
    present = ~pd.isna(raw)
    numbers = _numbers(target, raw)
    known = ~np.isnan(numbers)
    found = [
        _violation(name, "blank target", ~present, raw),
        _violation(name, "target is not a number", present & ~known, raw),
    ]
    allowed = spec.task.target_values
    if allowed is not None:
        named = " or ".join(map(str, allowed))
        found.append(
            _violation(name, f"target is not {named}", known & ~np.isin(numbers, allowed), raw)
        )
        classes = sorted({int(c) for c in numbers[known] if c in allowed})
        if len(classes) < len(allowed):
            both = " and ".join(map(str, allowed))
            found.append(
                Violation(name, f"target has a single class {classes}; both {both} are needed")
            )
    return [v for v in found if v is not None]


def frame_violations(spec: ProjectSpec, frame: pd.DataFrame, with_target: bool) -> list[Violation]:
    """Schema, types, ranges, categories and (when `with_target`) target values of a whole frame."""
    found: list[Violation] = []
    expected = spec.input_columns + ([spec.target] if with_target else [])
    for name in expected:
        if name not in frame.columns:
            found.append(Violation(name, "missing column"))
    for column in spec.columns:
        if column.name in frame.columns:
            found.extend(column_violations(column, frame[column.name]))
    if with_target and spec.target in frame.columns:
        found.extend(_target_violations(spec, frame[spec.target]))
    return found


@dataclass
class ValidationReport:
    rows: int
    duplicate_rows: int
    missing_by_column: dict[str, int]
    target_balance: dict[str, float] = field(default_factory=dict)
    unexpected_columns: list[str] = field(default_factory=list)

    def to_markdown(self, dataset: str) -> str:
        lines = [
            f"### {dataset}",
            "",
            f"- rows: {self.rows}",
            f"- duplicate rows: {self.duplicate_rows}",
        ]
        if self.unexpected_columns:
            lines.append(
                f"- columns not in the schema (ignored): {', '.join(self.unexpected_columns)}"
            )
        if self.target_balance:
            lines.append(
                "- target: " + ", ".join(f"{k}: {v:.1%}" for k, v in self.target_balance.items())
            )
        lines += ["", "| column | blanks |", "|---|---|"]
        lines += [f"| {col} | {n} |" for col, n in self.missing_by_column.items()]
        return "\n".join(lines) + "\n"


def validate(
    spec: ProjectSpec, frame: pd.DataFrame, dataset: str, with_target: bool = True
) -> ValidationReport:
    """Raises DataValidationError naming every column and rule broken; else returns the report."""
    violations = frame_violations(spec, frame, with_target)
    if len(frame) < spec.min_rows and with_target:
        violations.append(
            Violation("*", f"only {len(frame)} rows; at least {spec.min_rows} are needed")
        )
    if violations:
        raise DataValidationError(f"{spec.name} {dataset}", violations)
    known = set(spec.source_columns)
    balance = spec.task.target_balance(frame[spec.target]) if with_target else {}
    return ValidationReport(
        rows=len(frame),
        duplicate_rows=int(frame.duplicated().sum()),
        missing_by_column={c: int(frame[c].isna().sum()) for c in frame.columns},
        target_balance=balance,
        unexpected_columns=[c for c in frame.columns if c not in known],
    )

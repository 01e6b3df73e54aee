"""Checks a frame against a project's schema. Shared by the validate step and the model server."""

from __future__ import annotations

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


def _positions(mask: pd.Series) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(mask.to_numpy()))


def _violation(column: str, rule: str, mask: pd.Series, values: pd.Series) -> Violation | None:
    rows = _positions(mask)
    if not rows:
        return None
    example = values.iloc[rows[0]]
    return Violation(
        column, rule, rows, example.item() if isinstance(example, np.generic) else example
    )


def column_violations(column: Column, values: pd.Series) -> list[Violation]:
    """Every rule of `column` that `values` breaks, with the positions of the rows that break it."""
    found: list[Violation | None] = []
    present = values.notna()
    if not column.nullable:
        found.append(_violation(column.name, "blank value where one is required", ~present, values))
    if column.dtype in ("float", "int"):
        # JSON true/false would pass as 1/0: a boolean is not a number here.
        boolean = values.map(lambda v: isinstance(v, bool | np.bool_))
        numbers = pd.to_numeric(values.where(~boolean), errors="coerce")
        not_number = present & numbers.isna()
        found.append(
            _violation(column.name, f"not a number (expected {column.dtype})", not_number, values)
        )
        if column.dtype == "int":
            fractional = numbers.notna() & (numbers != numbers.round())
            found.append(_violation(column.name, "not a whole number", fractional, values))
        infinite = numbers.notna() & ~np.isfinite(numbers.astype(float))
        found.append(_violation(column.name, "not a finite number", infinite, values))
        finite = numbers.where(~infinite)
        if column.minimum is not None:
            found.append(
                _violation(
                    column.name,
                    f"below the minimum {column.minimum:g}",
                    finite < column.minimum,
                    values,
                )
            )
        if column.maximum is not None:
            found.append(
                _violation(
                    column.name,
                    f"above the maximum {column.maximum:g}",
                    finite > column.maximum,
                    values,
                )
            )
    elif column.dtype == "category":
        allowed = set(column.categories or ())
        unknown = present & ~values.map(lambda v: isinstance(v, str) and v in allowed)
        found.append(
            _violation(
                column.name, f"not one of the allowed values {sorted(allowed)}", unknown, values
            )
        )
    elif column.dtype == "string":
        not_text = present & ~values.map(lambda v: isinstance(v, str) and v.strip() != "")
        found.append(_violation(column.name, "not a non-empty string", not_text, values))
    elif column.dtype == "date":
        is_text = values.map(lambda v: isinstance(v, str))
        parsed = pd.to_datetime(values.where(is_text), errors="coerce", format="ISO8601")
        found.append(
            _violation(column.name, "not an ISO date (YYYY-MM-DD)", present & parsed.isna(), values)
        )
    return [v for v in found if v is not None]


def target_violations(spec: ProjectSpec, target: pd.Series) -> list[Violation]:
    name = spec.target
    found: list[Violation | None] = [_violation(name, "blank target", target.isna(), target)]
    numbers = pd.to_numeric(target, errors="coerce")
    found.append(
        _violation(name, "target is not a number", target.notna() & numbers.isna(), target)
    )
    if spec.task == "binary":
        found.append(
            _violation(
                name, "target is not 0 or 1", numbers.notna() & ~numbers.isin([0, 1]), target
            )
        )
        classes = {int(c) for c in numbers.dropna().unique() if c in (0, 1)}
        if len(classes) < 2:
            found.append(
                Violation(
                    name, f"target has a single class {sorted(classes)}; both 0 and 1 are needed"
                )
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
        found.extend(target_violations(spec, frame[spec.target]))
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
    balance: dict[str, float] = {}
    if with_target and spec.task == "binary":
        shares = frame[spec.target].astype(int).value_counts(normalize=True)
        labels = spec.class_labels or ("0", "1")
        balance = {f"{labels[k]} ({k})": float(shares.get(k, 0.0)) for k in (0, 1)}
    return ValidationReport(
        rows=len(frame),
        duplicate_rows=int(frame.duplicated().sum()),
        missing_by_column={c: int(frame[c].isna().sum()) for c in frame.columns},
        target_balance=balance,
        unexpected_columns=[c for c in frame.columns if c not in known],
    )

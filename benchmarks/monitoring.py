"""How often monitoring cries wolf, and how often it sees a real shift, on the real data with the
registered champions (`make bench-monitoring`).

For each project: the champion and its reference (the training sample registered with it) come
from MLflow, exactly as the monitoring pipeline reads them. The real file is split again with the
reference's recorded seed and test share (its sha256 checked against the recorded one), and
windows are drawn from the held-out part, which the champion never saw:

- false alarms: 20 iid windows of each size (500, 1000, 2000 rows), drawn without replacement
  where the held-out part is large enough and by bootstrap where it is not (said in the table);
- detection: 10 windows of 500 rows with a planted multiplicative shift of each numeric column
  (more than five distinct values) among the policy's most important columns, at several sizes;
  a hit is a drift verdict naming that column;
- restraint: the same shifts of the most important numeric column outside them, which the
  policy reports but must not call drift on its own;
- large windows: 10 iid windows of each of LARGE_SIZES rows (bootstrap of the held-out part),
  with and without a shift of the most important numeric column, whose drift verdict comes from
  the sample of SAMPLE_ROWS that collect draws while streaming.

Every window goes through the monitoring pipeline's own `collect` logic (written as a CSV of
served rows, streamed by `window.collect_file`, drift on the sample it draws): a window of at
most SAMPLE_ROWS rows is its own sample, and its verdict is checked against the one the whole
window gives read directly (the "sampled = whole" column counts the windows that agree).

Writes .state/bench/monitoring.md and prints it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd

from benchmarks.options import champion_benchmark_parser
from components.core import drift, ingest, reference
from components.core.drift import DriftSummary
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.window import SAMPLE_ROWS, collect_file
from pipelines.local import project_list

OUT_DIR = Path(".state/bench")
SIZES = (500, 1000, 2000)
IID_WINDOWS = 20
SHIFT_WINDOWS = 10
SHIFT_ROWS = 500
FACTORS = (1.05, 1.1, 1.2, 1.5)
LARGE_SIZES = (50_000, 200_000)
LARGE_WINDOWS = 10
LARGE_FACTOR = 1.2


class Verdicts:
    """Windows through collect's streaming path; counts where its verdict and the whole
    window's differ (they cannot differ below SAMPLE_ROWS rows: the sample is the window)."""

    def __init__(self, spec: ProjectSpec, rows: pd.DataFrame, importance: dict[str, float]):
        self.spec, self.rows, self.importance = spec, rows, importance
        self.folder = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
        self.compared = self.agreed = 0

    def __call__(self, window: pd.DataFrame) -> DriftSummary:
        # a shifted column is kept to what the server accepts (whole numbers, its range), as
        # served rows are: collect validates the window as the server validates a request
        window = window.copy()
        for column in self.spec.columns:
            if column.dtype not in ("float", "int") or column.name not in window:
                continue
            values = window[column.name].clip(column.minimum, column.maximum)
            window[column.name] = values.round() if column.dtype == "int" else values
        path = self.folder / "window.csv"
        window.drop(columns=[self.spec.target], errors="ignore").to_csv(path, index=False)
        collected = collect_file(self.spec, str(path), self.folder / "labelled.parquet")
        sampled = collected.sample[self.spec.input_columns]
        found = drift.detect(self.spec, self.rows, sampled, self.importance).summary
        if len(window) <= SAMPLE_ROWS:
            whole = drift.detect(self.spec, self.rows, window, self.importance).summary
            self.compared += 1
            self.agreed += (whole.drift_detected, whole.drifted_columns) == (
                found.drift_detected,
                found.drifted_columns,
            )
        return found


def bench_project(name: str, data_dir: Path) -> list[str]:
    spec = PROJECTS[name]
    version, record, rows = reference.load_alias(name)
    if record.synthetic:
        return [f"| {name} | champion v{version} was trained on synthetic data: skipped | | |"]
    path = data_dir / spec.data_file
    parts, info = ingest.ingest(spec, str(path), record.seed, record.test_size)
    if info.sha256 != record.source_sha256:
        raise SystemExit(
            f"{path} has sha256 {info.sha256}, the champion v{version} of {name} was trained on "
            f"{record.source_sha256}: not the same data"
        )
    held_out = parts.test
    verdict = Verdicts(spec, rows, record.importance)
    lines = []
    for size in SIZES:
        bootstrap = size > len(held_out)
        alarms = 0
        for i in range(IID_WINDOWS):
            window = held_out.sample(size, random_state=1000 + i, replace=bootstrap)
            alarms += verdict(window).drift_detected
        how = f"iid, {size} rows" + (f" (bootstrap of {len(held_out)})" if bootstrap else "")
        lines.append(
            f"| {name} v{version} | {how} | false alarms | {alarms}/{IID_WINDOWS} "
            f"({alarms / IID_WINDOWS:.0%}) |"
        )
    ranked = sorted(record.importance, key=lambda c: -record.importance[c])
    top = drift.DriftPolicy().important_columns
    numeric = [
        c for c in ranked if spec.column(c).dtype in ("float", "int") and held_out[c].nunique() > 5
    ]
    important = [c for c in numeric if ranked.index(c) < top]
    minor = [c for c in numeric if ranked.index(c) >= top and record.importance[c] > 0][:1]
    for column in important + minor:
        rank = ranked.index(column) + 1
        for factor in FACTORS:
            hits = 0
            for i in range(SHIFT_WINDOWS):
                window = drift.shift(
                    held_out.sample(SHIFT_ROWS, random_state=2000 + i), {column: factor}
                )
                found = verdict(window)
                hits += found.drift_detected and column in found.drifted_columns
            measure = (
                "detected, naming it"
                if column in important
                else "drift verdicts (minor column: none expected)"
            )
            lines.append(
                f"| {name} v{version} | {column} (#{rank} by importance) x{factor:g}, "
                f"{SHIFT_ROWS} rows | {measure} | {hits}/{SHIFT_WINDOWS} "
                f"({hits / SHIFT_WINDOWS:.0%}) |"
            )
    if important:
        for size in LARGE_SIZES:
            alarms = hits = 0
            for i in range(LARGE_WINDOWS):
                window = held_out.sample(size, random_state=3000 + i, replace=True)
                alarms += verdict(window).drift_detected
                found = verdict(drift.shift(window, {important[0]: LARGE_FACTOR}))
                hits += found.drift_detected and important[0] in found.drifted_columns
            how = f"iid, {size:,} rows (bootstrap), drift on a sample of {SAMPLE_ROWS:,}"
            lines.append(
                f"| {name} v{version} | {how} | false alarms | {alarms}/{LARGE_WINDOWS} "
                f"({alarms / LARGE_WINDOWS:.0%}) |"
            )
            lines.append(
                f"| {name} v{version} | the same, {important[0]} x{LARGE_FACTOR:g} | detected, "
                f"naming it | {hits}/{LARGE_WINDOWS} ({hits / LARGE_WINDOWS:.0%}) |"
            )
    lines.append(
        f"| {name} v{version} | every window of at most {SAMPLE_ROWS:,} rows | sampled = whole "
        f"(verdict and drifted columns) | {verdict.agreed}/{verdict.compared} |"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = champion_benchmark_parser(__doc__)
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri)
    names = project_list(args.project)
    start = time.perf_counter()
    rows = []
    for name in names:
        try:
            rows += bench_project(name, args.data_dir)
        except reference.NoReference as why:
            rows.append(f"| {name} | {why} (train it first: `make run DATA_DIR=...`) | | |")
    policy = drift.DriftPolicy()
    text = "\n".join(
        [
            "# Monitoring: false alarms and detection on the real data",
            "",
            f"Command: `make bench-monitoring DATA_DIR={args.data_dir}` against {args.tracking_uri}; "
            f"{time.perf_counter() - start:.0f} s. Policy: min_rows {policy.min_rows}, top "
            f"{policy.important_columns} columns by importance, weighted share "
            f"{policy.weighted_share:g}, thresholds {policy.numeric_threshold:g} (numeric, "
            f"normed Wasserstein) and {policy.categorical_threshold:g} (categorical, Jensen-Shannon).",
            "",
            "| champion | windows | measure | result |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "monitoring.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

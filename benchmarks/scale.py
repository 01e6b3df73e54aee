"""Production volume (`make bench-scale`): the monitoring and batch scoring pipelines at a day of
traffic and at millions of rows, every step measured, on rows made from the real files.

- Monitoring: for each size (1M, 3M, 10M logged rows), an inference log written as the server
  writes it at RATE requests a second, one row each (a day at about 115 requests/s is 10M rows):
  one JSON-lines part a second (the server's flush interval), in its project/date/hour folder,
  each record the bytes `serving.inference_log.records` gives, with the telecom champion's own
  answers to real rows drawn with replacement from users_behavior.csv; labels (the real target)
  for LABELLED_SHARE of the requests. The monitoring pipeline (retrain off) runs twice over it
  through kfp.local: first, the catch-up, when compact-log turns every closed hour of JSON into
  Parquet; then the steady state a schedule sees, the closed hours already compacted.
- Batch scoring: for each size, a CSV of real bankchurn rows (Churn.csv, target dropped) drawn
  with replacement, scored by the bankchurn champion through the batch scoring pipeline
  (reasons off, shards of the pipeline's default size).

Each step is a process of its own started through GNU time (`benchmarks.cost.measured_steps`):
its wall time, rows per second and max RSS, against the memory limit `pipelines/resources.py`
declares for it. The runs use a copy of the MLflow store (the registered champions are read
where they are). Writes .state/bench/scale.md, scale.json and scale.png, and prints the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import cost
from benchmarks.cost import OUT_DIR, commit, run_pipeline, scratch_store
from benchmarks.options import champion_benchmark_parser
from components.core import inference_log, ingest, loading
from components.core.contracts import CHAMPION
from components.core.projects import PROJECTS
from components.core.scoring import prediction_columns
from pipelines.resources import STEPS, mebibytes

WORK = OUT_DIR / "scale"
SIZES = (1_000_000, 3_000_000, 10_000_000)
RATE = 115
"""Requests a second, one row each: 10M rows are a day."""
LABELLED_SHARE = 0.1
WINDOW_PROJECT, BATCH_PROJECT = "telecom", "bankchurn"
CSV_CHUNK = 500_000


# -- the inference log ------------------------------------------------------------------------


def record_fragments(project: str, data_dir: Path, tracking: str) -> tuple[list[str], np.ndarray]:
    """(the `"inputs": ..., "outputs": ...` text of each real row's log record, as the server
    writes it with the champion's answer; each row's target)."""
    import mlflow

    from serving.inference_log import Answered, records

    spec = PROJECTS[project]
    mlflow.set_tracking_uri(tracking)
    frame, _ = ingest.load(spec, str(data_dir / spec.data_file))
    loaded = loading.load(spec, f"models:/{project}@{CHAMPION}")
    inputs = frame[spec.input_columns].reset_index(drop=True)
    output = loaded.output(spec, inputs)
    answered = Answered(
        request_id="r",
        when=dt.datetime.now(dt.UTC),
        model_version="0",
        inputs={c: inputs[c].to_numpy(dtype=float) for c in spec.input_columns},
        outputs=prediction_columns(spec, output, loaded.threshold),
        rows=len(inputs),
    )
    whole = [c.name for c in spec.columns if c.dtype == "int"]
    fragments = []
    for item in records(project, answered, whole):
        text = json.dumps({"inputs": item["inputs"], "outputs": item["outputs"]}, allow_nan=False)
        fragments.append(text[1:-1])
    return fragments, frame[spec.target].to_numpy()


def write_log(
    project: str,
    rows: int,
    root: Path,
    fragments: list[str],
    targets: np.ndarray,
    version: str,
    seed: int = 0,
) -> tuple[Path, dt.datetime]:
    """`rows` logged rows ending now, one part file a second; returns (the labels file, the
    first row's time). Each line is the server's record of a one-row request."""
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    seconds = -(-rows // RATE)
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = end - dt.timedelta(seconds=seconds)
    head = f'{{"schema_version": {inference_log.SCHEMA_VERSION}, "request_id": "'
    labels = root / "labels.csv"
    root.mkdir(parents=True)
    with labels.open("w") as labelled:
        labelled.write(f"request_id,row,{PROJECTS[project].target}\n")
        written = 0
        for second in range(seconds):
            count = min(RATE, rows - written)
            when = start + dt.timedelta(seconds=second)
            picks = rng.integers(0, len(fragments), count)
            lines = []
            for j, pick in enumerate(picks):
                number = written + j
                stamp = (when + dt.timedelta(microseconds=j * (1_000_000 // RATE))).isoformat(
                    timespec="microseconds"
                )
                request = f"{seed:08x}{number:024x}"
                lines.append(
                    f'{head}{request}", "row": 0, "time": "{stamp}", "project": "{project}", '
                    f'"model_version": "{version}", "stage": "champion", "latency_ms": null, '
                    f'"error": null, "sample_rate": 1.0, '
                    f"{fragments[pick]}}}"
                )
                if number % round(1 / LABELLED_SHARE) == 0:
                    labelled.write(f"{request},0,{targets[pick]}\n")
            folder = root / inference_log.partition(project, when)
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{inference_log.PART_PREFIX}{when:%Y%m%dT%H%M%S%f}-1-{second:08x}"
            (folder / f"{name}{inference_log.PART_SUFFIX}").write_text("\n".join(lines) + "\n")
            written += count
    return labels, start


def check_record_format(project: str, fragments: list[str], version: str) -> None:
    """The generated line is byte for byte the server's record (json.dumps of `record`)."""
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    parsed = json.loads("{" + fragments[0] + "}")
    expected = json.dumps(
        inference_log.record("x", 0, when, project, version, parsed["inputs"], parsed["outputs"]),
        allow_nan=False,
        default=str,
    )
    head = f'{{"schema_version": {inference_log.SCHEMA_VERSION}, "request_id": "'
    made = (
        f'{head}x", "row": 0, "time": "{when.isoformat(timespec="microseconds")}", '
        f'"project": "{project}", "model_version": "{version}", "stage": "champion", '
        f'"latency_ms": null, "error": null, "sample_rate": 1.0, {fragments[0]}}}'
    )
    if made != expected:
        raise SystemExit(f"the generated record differs from the server's:\n{made}\n{expected}")


# -- the batch --------------------------------------------------------------------------------


def batch_file(project: str, rows: int, data_dir: Path) -> Path:
    """A CSV of `rows` real rows drawn with replacement (the target dropped, row numbers anew),
    kept under WORK/data for the next run."""
    spec = PROJECTS[project]
    source = data_dir / spec.data_file
    path = WORK / "data" / f"{project}-{rows}.csv"
    stamp = path.with_suffix(".source")
    made_from = f"{source.resolve()} {source.stat().st_size} {rows}"
    if path.is_file() and stamp.is_file() and stamp.read_text() == made_from:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(source).drop(columns=[spec.target])
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        for first in range(0, rows, CSV_CHUNK):
            count = min(CSV_CHUNK, rows - first)
            chunk = frame.iloc[rng.integers(0, len(frame), count)].reset_index(drop=True)
            if "RowNumber" in chunk.columns:
                chunk["RowNumber"] = np.arange(first + 1, first + count + 1)
            chunk.to_csv(out, index=False, header=first == 0)
    stamp.write_text(made_from)
    return path


# -- measuring --------------------------------------------------------------------------------


def steps_of(run: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """Per step: wall seconds (summed over a ParallelFor's tasks, which kfp.local runs two at a
    time), rows/s, the largest max RSS of its processes and its declared limit."""
    found = []
    for name, usages in run["steps"].items():
        wall = sum(u["wall_s"] for u in usages)
        rss = max(u["max_rss_mib"] for u in usages)
        limit = mebibytes(STEPS[name].memory_limit) if name in STEPS else float("nan")
        cpu = sum(u["cpu_s"] for u in usages)
        found.append(
            {
                "step": name,
                "tasks": len(usages),
                "wall_s": round(wall, 1),
                "mean_cores": round(cpu / wall, 2) if wall else None,
                "peak_cores": round(max(u["peak_cores"] for u in usages), 2),
                "rows_per_s": round(rows / wall) if wall else None,
                "max_rss_mib": round(rss),
                "limit_mib": limit,
                "within_limit": rss <= limit,
                "ok": all(u["ok"] for u in usages),
            }
        )
    return found


def measure_monitoring(rows: int, data_dir: Path, store: str) -> dict[str, Any]:
    import mlflow

    from pipelines import monitoring

    spec = PROJECTS[WINDOW_PROJECT]
    mlflow.set_tracking_uri(store)
    version = str(mlflow.MlflowClient().get_model_version_by_alias(spec.name, CHAMPION).version)
    fragments, targets = record_fragments(spec.name, data_dir, store)
    check_record_format(spec.name, fragments, version)
    root = WORK / "log" / f"{rows}"
    started = time.monotonic()
    labels, first = write_log(spec.name, rows, root, fragments, targets, version)
    written = time.monotonic() - started
    print(f"{rows:,} logged rows written in {written:.0f} s under {root}", flush=True)
    hours = (dt.datetime.now(dt.UTC) - first).total_seconds() / 3600 + 0.05
    found: dict[str, Any] = {"rows": rows, "window_hours": round(hours, 2), "generate_s": written}
    for phase in ("first", "steady"):
        began = time.monotonic()
        run = run_pipeline(
            f"{spec.name} monitoring {rows} {phase}",
            monitoring.PIPELINES[spec.name],
            mlflow_tracking_uri=store,
            log_root=str(root),
            window_hours=hours,
            labels=str(labels),
            retrain=False,
        )
        wall = round(time.monotonic() - began, 1)
        found[phase] = {"error": run["error"], "steps": steps_of(run, rows), "wall_s": wall}
        found[phase]["latest"] = latest_summary(spec.name)
    shutil.rmtree(root)
    return found


def latest_summary(project: str) -> dict[str, Any]:
    """The figures the newest monitoring run recorded: rows, rows_sampled, labelled rows."""
    runs = sorted((WORK / "kfp").glob(f"{project}-monitoring-*"), key=os.path.getmtime)
    for path in reversed(runs):
        for summary in path.glob("check/summary*"):
            record = json.loads(summary.read_text())
            keys = ("rows", "rows_sampled", "labelled_rows", "live_metrics", "drift_detected")
            return {k: record.get(k) for k in keys}
    return {}


def measure_batch(rows: int, data_dir: Path, store: str) -> dict[str, Any]:
    from pipelines import batch_scoring

    path = batch_file(BATCH_PROJECT, rows, data_dir)
    began = time.monotonic()
    run = run_pipeline(
        f"{BATCH_PROJECT} batch {rows}",
        batch_scoring.PIPELINES[BATCH_PROJECT],
        mlflow_tracking_uri=store,
        source=str(path),
        with_reasons=False,
    )
    wall = round(time.monotonic() - began, 1)
    return {"rows": rows, "error": run["error"], "steps": steps_of(run, rows), "wall_s": wall}


# -- the report -------------------------------------------------------------------------------


def step_table(title: str, runs: list[tuple[int, dict[str, Any]]]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| rows | step | tasks | wall s | rows/s | mean / peak cores | max RSS MiB | limit MiB "
        "| within |",
        "|---:|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for rows, run in runs:
        for step in run["steps"]:
            lines.append(
                f"| {rows:,} | {step['step']} | {step['tasks']} | {step['wall_s']:.1f} | "
                f"{step['rows_per_s'] or 0:,} | {step['mean_cores']} / {step['peak_cores']} | "
                f"{step['max_rss_mib']:,} | "
                f"{step['limit_mib']:,.0f} | {'yes' if step['within_limit'] else 'NO'} |"
            )
        lines.append(
            f"| {rows:,} | **the pipeline, end to end** | | **{run['wall_s']:.1f}** | "
            f"{rows / run['wall_s']:,.0f} | | | | |"
        )
        if run.get("error"):
            lines.append(f"| {rows:,} | ERROR: {run['error'][:200]} | | | | | | | |")
    return [*lines, ""]


def markdown(found: dict[str, Any]) -> str:
    about = found["about"]
    lines = [
        "## Production volume (make bench-scale)",
        "",
        f"Commit {about['commit']}, {about['finished']}, {about['machine']}. Data: "
        f"{about['window_data']} and {about['batch_data']}. Command: `{about['command']}`.",
        "",
    ]
    monitoring = found.get("monitoring", [])
    if monitoring:
        for phase, said in (
            ("first", "first run: compact-log turns every closed hour of JSON into Parquet"),
            ("steady", "steady state: the closed hours already compacted"),
        ):
            runs = [(m["rows"], m[phase]) for m in monitoring]
            lines += step_table(f"Monitoring a window of {WINDOW_PROJECT}, {said}", runs)
        lines += [
            "| rows logged | window hours | rows in the window | rows sampled for drift | "
            "labelled rows |",
            "|---:|---:|---:|---:|---:|",
        ]
        for m in monitoring:
            latest = m["steady"]["latest"]
            lines.append(
                f"| {m['rows']:,} | {m['window_hours']} | {latest.get('rows') or 0:,} | "
                f"{latest.get('rows_sampled') or 0:,} | {latest.get('labelled_rows') or 0:,} |"
            )
        lines.append("")
    batches = found.get("batch", [])
    if batches:
        lines += step_table(
            f"Batch scoring {BATCH_PROJECT} (reasons off)", [(b["rows"], b) for b in batches]
        )
    return "\n".join(lines)


def plot(found: dict[str, Any], path: Path) -> None:
    from components.core import report

    plt = report.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    series = [
        ("monitoring (steady)", [(m["rows"], m["steady"]) for m in found.get("monitoring", [])]),
        ("batch scoring", [(b["rows"], b) for b in found.get("batch", [])]),
    ]
    for column, (title, runs) in enumerate(series):
        if not runs:
            continue
        names = [s["step"] for s in runs[-1][1]["steps"]]
        sizes = [rows / 1e6 for rows, _ in runs]
        for name in names:
            walls, peaks = [], []
            for _, run in runs:
                step = next((s for s in run["steps"] if s["step"] == name), None)
                walls.append(step["wall_s"] if step else np.nan)
                peaks.append(step["max_rss_mib"] if step else np.nan)
            axes[0][column].plot(sizes, walls, marker="o", label=name)
            axes[1][column].plot(sizes, peaks, marker="o", label=name)
        axes[0][column].set(title=f"{title}: wall time", xlabel="million rows", ylabel="seconds")
        axes[1][column].set(title=f"{title}: peak memory", xlabel="million rows", ylabel="MiB")
        axes[1][column].set_ylim(bottom=0)
        axes[0][column].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = champion_benchmark_parser(__doc__, prog="python -m benchmarks.scale")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="row counts, with commas (%(default)s)"
    )
    parser.add_argument("--parts", default="monitoring,batch", help="%(default)s")
    parser.add_argument("--plot", type=Path, default=OUT_DIR / "scale.png")
    args = parser.parse_args(argv)
    from kfp import local

    sizes = [int(s) for s in args.sizes.split(",")]
    parts = set(args.parts.split(","))
    for project in (WINDOW_PROJECT, BATCH_PROJECT):
        if not (args.data_dir / PROJECTS[project].data_file).is_file():
            raise SystemExit(f"bench-scale needs the real files in {args.data_dir}")
    WORK.mkdir(parents=True, exist_ok=True)
    (cost.WORK / "logs").mkdir(parents=True, exist_ok=True)
    store = scratch_store(args.tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = store
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(WORK / "kfp"),
        enable_caching=False,
        raise_on_error=True,
    )
    found: dict[str, Any] = {
        "about": {
            "commit": commit(),
            "machine": f"{os.cpu_count()} cores",
            "command": "make bench-scale " + " ".join(argv or sys.argv[1:]),
            "window_data": f"{PROJECTS[WINDOW_PROJECT].data_file} rows resampled into an "
            f"inference log at {RATE} requests/s, {LABELLED_SHARE:.0%} labelled",
            "batch_data": f"{PROJECTS[BATCH_PROJECT].data_file} rows resampled",
        }
    }
    if "monitoring" in parts:
        found["monitoring"] = [measure_monitoring(n, args.data_dir, store) for n in sizes]
    if "batch" in parts:
        found["batch"] = [measure_batch(n, args.data_dir, store) for n in sizes]
    found["about"]["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (OUT_DIR / "scale.json").write_text(json.dumps(found, indent=2))
    text = markdown(found)
    (OUT_DIR / "scale.md").write_text(text + "\n")
    plot(found, args.plot)
    print(text)
    print(f"\nwritten: {OUT_DIR / 'scale.md'}, {OUT_DIR / 'scale.json'}, {args.plot}")
    runs = [m[p] for m in found.get("monitoring", []) for p in ("first", "steady")]
    failed = [r for r in [*runs, *found.get("batch", [])] if r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

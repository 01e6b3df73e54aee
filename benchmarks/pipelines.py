"""Benchmarks on the real data.

`quality`: the evaluation protocol (docs/protocol.md) for each project, the figures next to the
reference portfolio's and the targets. `pipelines`: wall time per step and per pipeline through
kfp.local, uncached and then cached. Both write Markdown under .state/bench/ and print it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.options import add_data_dir
from components.core import evaluate, ingest, metrics, train
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from pipelines import local
from pipelines.training import STEPS

OUT_DIR = Path(".state/bench")
SEED = 42
TEST_SIZE = 0.2
USD_METRICS = {"rmse", "mae"}


def seen_in_training(spec: ProjectSpec, train: pd.DataFrame, test: pd.DataFrame) -> pd.Series:
    """Test rows that repeat a training row in every field but dates: the same listing or
    customer posted again. A random split puts such pairs on both sides and flatters the test."""
    key = [c.name for c in spec.columns if c.dtype != "date"] + [spec.target]

    def as_text(frame: pd.DataFrame) -> pd.Series:
        return frame[key].astype(str).agg("|".join, axis=1)

    return as_text(test).isin(set(as_text(train)))


def figure(metric: str, value: float) -> str:
    """Money in whole dollars, ratios to four decimals."""
    return f"{value:,.0f}" if metric in USD_METRICS else f"{value:.4f}"


def plain(metric: str, value: float) -> str:
    """A published figure as it was written (money with thousands separators)."""
    return f"{value:,.0f}" if metric in USD_METRICS else f"{value:g}"


def shown(metric: str, value: float, target: float | None, met: bool) -> str:
    """As `figure`, with more decimals where it would round a missed target up to it."""
    if target is not None and not met and figure(metric, value) == figure(metric, target):
        return f"{value:,.2f}" if metric in USD_METRICS else f"{value:.6f}"
    return figure(metric, value)


def quality_row(spec: ProjectSpec, data_dir: Path) -> tuple[list[str], dict[str, Any]]:
    source = str(data_dir / spec.data_file)
    parts, info = ingest.ingest(spec, source, SEED, TEST_SIZE)
    result = train.train(spec, parts.train, SEED)
    scored, score = evaluate.evaluate(spec, result.model, parts.test)
    shown_metrics = list(
        dict.fromkeys([*spec.targets, *spec.reference_figures, spec.primary_metric])
    )
    intervals = evaluate.bootstrap_intervals(
        spec,
        train.split_xy(spec, parts.test)[1].to_numpy(),
        score,
        scored.metrics.get("threshold", 0.5),  # the threshold the test figures were taken at
        shown_metrics,
        seed=SEED,
    )
    repeated = seen_in_training(spec, parts.train, parts.test)
    unseen = (
        evaluate.evaluate(spec, result.model, parts.test[~repeated])[0]
        if repeated.any()
        else scored
    )
    lines = []
    met_all = True
    for metric in shown_metrics:
        test = scored.metrics[metric]
        low, high = intervals[metric]
        target = spec.targets.get(metric)
        met = target is None or metrics.metric(metric).meets(test, target)
        met_all &= met
        cv = (
            f"{figure(metric, result.cv_mean[metric])} ± {figure(metric, result.cv_std[metric])}"
            if metric in result.cv_mean
            else "n/a"
        )
        reference = spec.reference_figures.get(metric)
        lines.append(
            f"| {spec.name} | {metric} | {cv} | **{shown(metric, test, target, met)}** | "
            f"{figure(metric, low)} to {figure(metric, high)} | "
            f"{'' if reference is None else plain(metric, reference)} | "
            f"{'' if target is None else plain(metric, target)} | "
            f"{'' if target is None else ('yes' if met else 'NO')} |"
        )
    detail = {
        "project": spec.name,
        "source": source,
        "sha256": info.sha256,
        "rows": info.rows,
        "removed_rows": info.removed_rows,
        "train_rows": info.train_rows,
        "test_rows": info.test_rows,
        "model": result.best.candidate,
        "params": result.best.params,
        "threshold": result.threshold,
        "trials": len(result.trials),
        "train_seconds": round(result.seconds, 1),
        "test_metrics": scored.metrics,
        "test_intervals_95": intervals,
        "repeated_test_rows": int(repeated.sum()),
        "unseen_test_metrics": unseen.metrics,
        "groups": [group.model_dump() for group in scored.groups],
        "all_targets_met": met_all,
        "targets": list(spec.targets),
        "primary_metric": spec.primary_metric,
        "candidates": candidate_rows(spec, result),
    }
    return lines, detail


def candidate_rows(spec: ProjectSpec, result: train.TrainResult) -> list[dict[str, Any]]:
    """The best trial of each candidate model by CV on the primary metric: what the choice
    was made between (training part only; classifiers at threshold 0.5)."""
    rows = []
    for cand in spec.candidates:
        tried = [t for t in result.trials if t.candidate == cand.name]
        if not tried:
            continue
        best = max(tried, key=lambda t: spec.primary.rank(t.cv_mean[spec.primary_metric]))
        rows.append(
            {
                "candidate": cand.name,
                "trials": len(tried),
                **{m: best.cv_mean[m] for m in spec.task.cv_metrics},
                "params": best.params,
            }
        )
    return rows


def bench_quality(data_dir: Path, projects: list[str]) -> str:
    rows: list[str] = []
    details = []
    for name in projects:
        spec = PROJECTS[name]
        if not (data_dir / spec.data_file).is_file():
            rows.append(f"| {name} | skipped: {data_dir / spec.data_file} not found | | | | | | |")
            continue
        lines, detail = quality_row(spec, data_dir)
        rows += lines
        details.append(detail)
        print(f"{name}: {detail['model']} in {detail['train_seconds']} s", flush=True)
    header = [
        "# Quality benchmark",
        "",
        f"Protocol: stratified 80/20 split (plain for regression), seed {SEED}; model, "
        "hyperparameters and threshold chosen by 5-fold CV on the training part; the test part scored once. "
        "The interval is a 95% percentile bootstrap of the test rows (1,000 resamples): how far a "
        "test split of this size moves the figure by the luck of the draw.",
        f"Command: `make bench-quality DATA_DIR={data_dir}`",
        "",
        "| project | metric | CV mean ± std (5 folds) | test | test 95% interval | reference portfolio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    body = "\n".join(header + rows) + "\n\n## Chosen models\n\n"
    for d in details:
        threshold = f", threshold {d['threshold']:.4f}" if d["threshold"] is not None else ""
        removed = "".join(
            f"; {n} rows removed by the cleaning rule" for n in d["removed_rows"].values()
        )
        body += (
            f"- **{d['project']}**: {d['model']} {d['params']}{threshold}; {d['trials']} trials in "
            f"{d['train_seconds']} s; data `{d['source']}` sha256 {d['sha256'][:12]}, {d['rows']} rows{removed}; "
            f"train {d['train_rows']}, test {d['test_rows']}\n"
        )
    body += (
        "\n## Candidates compared\n\nThe best trial of each candidate by 5-fold CV on the "
        "training part (primary metric in bold); classifiers at threshold 0.5.\n"
    )
    for d in details:
        metrics = [k for k in d["candidates"][0] if k not in ("candidate", "trials", "params")]
        body += f"\n| {d['project']} | trials | " + " | ".join(metrics) + " | parameters |\n"
        body += "|---" * (len(metrics) + 3) + "|\n"
        for c in d["candidates"]:
            cells = [
                f"**{figure(m, c[m])}**" if m == d["primary_metric"] else figure(m, c[m])
                for m in metrics
            ]
            body += (
                f"| {c['candidate']} | {c['trials']} | "
                + " | ".join(cells)
                + f" | {c['params']} |\n"
            )
    body += (
        "\n## Test rows that repeat a training row\n\nA test row that matches a training row in "
        "every field but dates (the same listing or customer posted again) lands on both sides of "
        "a random split. The protocol keeps them, as the reference figures do; this shows the "
        "test figures without them.\n\n| project | repeated test rows | metric | test | test without them |\n"
        "|---|---|---|---|---|\n"
    )
    for d in details:
        for metric in d["targets"]:
            body += (
                f"| {d['project']} | {d['repeated_test_rows']} of {d['test_rows']} | {metric} | "
                f"{figure(metric, d['test_metrics'][metric])} | "
                f"{figure(metric, d['unseen_test_metrics'][metric])} |\n"
            )
    for d in details:
        if d["groups"]:
            keys = [k for k in d["groups"][0] if k not in ("column", "group")]
            body += (
                f"\n### {d['project']} by group (test)\n\n| column | group | "
                + " | ".join(keys)
                + " |\n"
            )
            body += "|---" * (len(keys) + 2) + "|\n"
            for g in d["groups"]:
                body += (
                    f"| {g['column']} | {g['group']} | "
                    + " | ".join(
                        f"{g[k]:.4f}" if isinstance(g[k], float) else str(g[k]) for k in keys
                    )
                    + " |\n"
                )
    (OUT_DIR / "quality.json").write_text(json.dumps(details, indent=2, default=str))
    return body


def bench_pipelines(data_dir: Path, projects: list[str], jobs: int) -> str:
    runs = {}
    # First pass on an empty cache (every step runs and fills it), second pass served from it.
    # Each pass is its own process, as `make run` is, so the times include interpreter start.
    shutil.rmtree(local.STATE_DIR / "kfp" / ".kfp_cache", ignore_errors=True)
    for label in ("uncached", "cached re-run"):
        timings = OUT_DIR / f"pipelines-{label.split()[0]}.json"
        command = [
            sys.executable,
            "-m",
            "pipelines.local",
            "--data-dir",
            str(data_dir),
            "--timings",
            str(timings),
            "--jobs",
            str(jobs),
            "--project",
            ",".join(projects),
        ]
        start = time.perf_counter()
        code = subprocess.run(command, check=False).returncode
        runs[label] = (time.perf_counter() - start, json.loads(timings.read_text()), code)
    steps = list(STEPS)
    lines = [
        "# Pipeline benchmark",
        "",
        f"Command: `make bench-pipelines DATA_DIR={data_dir} JOBS={jobs}` (kfp.local SubprocessRunner, "
        f"MLflow on SQLite, {jobs} pipeline(s) at a time, {os.cpu_count()} cores).",
        "",
        "| run | project | " + " | ".join(steps) + " | pipeline |",
        "|---|---|" + "---|" * (len(steps) + 1),
    ]
    for label, (total, outcomes, code) in runs.items():
        for o in outcomes:
            cells = [f"{o['steps'][s]:.1f}" if s in o["steps"] else "cached" for s in steps]
            lines.append(
                f"| {label} | {o['project']} | " + " | ".join(cells) + f" | {o['seconds']:.1f} |"
            )
        lines.append(
            f"| {label} | **all** | "
            + " | " * len(steps)
            + f"**{total:.1f}**{'' if code == 0 else ' (failed)'} |"
        )
    return (
        "\n".join(lines)
        + "\n\nTimes in seconds, wall clock, including each step's process start.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["quality", "pipelines"])
    add_data_dir(parser)
    parser.add_argument(
        "--project",
        default="all",
        type=local.project_list,
        help=f"'all' or a comma-separated list of {', '.join(PROJECTS)}",
    )
    parser.add_argument(
        "--jobs", type=int, default=local.default_jobs(), help="pipelines at a time"
    )
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(
            f"data directory {args.data_dir} not found: the benchmarks run on the real data"
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    text = (
        bench_quality(args.data_dir, args.project)
        if args.kind == "quality"
        else bench_pipelines(args.data_dir, args.project, args.jobs)
    )
    out = OUT_DIR / f"{args.kind}.md"
    out.write_text(text)
    print(f"\n{text}\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

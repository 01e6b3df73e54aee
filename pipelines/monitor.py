"""Runs a project's monitoring pipeline on this machine through `kfp.local`, over the local
server's inference log or a file of served inputs, and writes `.state/monitor/<project>/latest.json`.

`python -m pipelines.monitor --help` lists the options; `make monitor PROJECT=<p>` is the entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.core import retraining
from components.core.contracts import PROMOTIONS, MonitoringSummary, RolloutVerdict
from components.core.drift import IMPORTANT_COLUMNS, MIN_ROWS
from components.core.inference_log import RETENTION_DAYS
from components.core.judge import APPROVALS, JudgePolicy
from components.core.monitoring import LOG_SOURCE, QUALITY_TOLERANCE
from components.core.projects import PROJECTS
from components.core.window import SAMPLE_ROWS
from pipelines.local import STATE_DIR, Progress, default_tracking_uri, init_local_runner

DEFAULT_LOG_ROOT = STATE_DIR / "inference"


def latest(
    summary: MonitoringSummary,
    retrain_enabled: bool,
    done: retraining.Outcome,
    judged: RolloutVerdict | None = None,
) -> dict[str, Any]:
    """What `latest.json` says: the fields a user or a script reads first, then the whole record."""
    return {
        "project": summary.project,
        "time": summary.time,
        "window": summary.window,
        "rows": summary.rows,
        "rows_sampled": summary.rows_sampled,
        "rows_served": summary.collected.rows_estimated if summary.collected else summary.rows,
        "labelled_rows": summary.labelled_rows,
        "log_parts_skipped": summary.collected.parts_skipped if summary.collected else 0,
        "window_note": summary.collected.note if summary.collected else "",
        "enough_data": summary.drift.enough_data,
        "drift_detected": summary.drift.drift_detected,
        "drifted_columns": summary.drift.drifted_columns,
        "drifted_important_columns": summary.drift.drifted_important_columns,
        "live_metrics": summary.live_metrics,
        "live_intervals": summary.live_intervals,
        "retrain_recommended": summary.retrain,
        "retrain_enabled": retrain_enabled,
        "retrained": done.retrained,
        "retrained_version": done.version,
        "promoted": done.promoted,
        "champion_version_before": summary.champion_version,
        "champion_version_after": done.champion_after,
        "reason": summary.reason,
        "retraining": summary.retraining,
        "decision": done.decision,
        "rollout": json.loads(judged.to_json()) if judged else None,
        "summary": json.loads(summary.to_json()),
    }


def render(
    summary: MonitoringSummary,
    done: retraining.Outcome,
    report: str,
    written: Path,
    judged: RolloutVerdict | None = None,
) -> str:
    live = ", ".join(f"{k} {v:.4f}" for k, v in summary.live_metrics.items()) or "no labels"
    collected = summary.collected
    counts = f"{summary.rows:,} rows, {summary.labelled_rows:,} labelled"
    if collected is not None and collected.rows_estimated != collected.rows:
        counts += f", {collected.rows_estimated:,.0f} served"
    if summary.rows_sampled != summary.rows:
        counts += f"; drift on a sample of {summary.rows_sampled:,}"
    notes = []
    if collected is not None and collected.note:
        notes.append(f"   note      {collected.note}")
    if collected is not None and collected.parts_skipped:
        notes.append(
            f"   skipped   {collected.parts_skipped} unreadable log part(s): {collected.skipped[0]}"
        )
    retrained = (
        [f"   retrained v{done.version}: {done.decision}"]
        if done.retrained
        else [f"   retrain   {summary.retraining}"] * bool(summary.retraining)
    )
    return "\n".join(
        [
            f"== {summary.project} monitoring: champion v{summary.champion_version or '-'}",
            f"   window    {summary.window}: {counts}",
            *notes,
            f"   drift     {summary.drift.reason}",
            f"   quality   {live}",
            f"   verdict   {'RETRAIN: ' if summary.retrain else ''}{summary.reason}",
            *retrained,
            *([f"   rollout   {_rollout_line(judged)}"] if judged else []),
            f"   champion  v{done.champion_after or '-'}",
            f"   report    {report}",
            f"   latest    {written}",
        ]
    )


def _rollout_line(judged: RolloutVerdict) -> str:
    if not judged.version:
        return judged.reason
    moved = f" -> {judged.moved_to}" if judged.moved_to else ""
    return f"v{judged.version} ({judged.stage}): {judged.action}{moved}: {judged.reason}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument(
        "--data",
        default="",
        help="a CSV of served inputs (path or URL; its target column is the ground truth); "
        "default: the inference log",
    )
    parser.add_argument(
        "--log-root", default=os.environ.get("MLOPS_INFERENCE_LOG") or str(DEFAULT_LOG_ROOT)
    )
    parser.add_argument("--hours", type=float, default=24.0, help="window of the log, in hours")
    parser.add_argument(
        "--retention-days",
        type=float,
        default=RETENTION_DAYS,
        help="days the inference log keeps; older hours are deleted first (0: keep everything)",
    )
    parser.add_argument(
        "--drift-sample-rows",
        type=int,
        default=SAMPLE_ROWS,
        help="rows of the window the drift check compares (a random sample)",
    )
    parser.add_argument("--labels", default="", help="CSV of request_id, row and the target")
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument("--pushgateway", default=os.environ.get("PUSHGATEWAY", ""))
    parser.add_argument("--min-rows", type=int, default=MIN_ROWS)
    parser.add_argument("--important-columns", type=int, default=IMPORTANT_COLUMNS)
    parser.add_argument("--quality-tolerance", type=float, default=QUALITY_TOLERANCE)
    parser.add_argument(
        "--approval",
        choices=APPROVALS,
        default=APPROVALS[0],
        help="the rollout judge's promotions: automatic, or held for `make approve`",
    )
    parser.add_argument(
        "--rollout-policy",
        default="{}",
        help='the rollout judge\'s policy fields to change, as JSON, e.g. {"canary_share": 0.2}',
    )
    parser.add_argument(
        "--promotion",
        choices=PROMOTIONS,
        default=PROMOTIONS[0],
        help="a retrained model that beats the champion: becomes it (direct), or goes to shadow "
        "beside it for the rollout judge (staged)",
    )
    parser.add_argument("--retrain", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--retrain-min-labelled-rows", type=int, default=retraining.MIN_LABELLED_ROWS
    )
    parser.add_argument("--holdout-share", type=float, default=retraining.HOLDOUT_SHARE)
    parser.add_argument(
        "--retrain-source",
        default="",
        help="where the champion's training data is now, if it moved (its hash must match)",
    )
    parser.add_argument(
        "--trials", type=int, default=0, help="search trials per candidate when retraining"
    )
    parser.add_argument(
        "--gate-overrides", default="{}", help='retraining gates as JSON, e.g. {"accuracy": 0.8}'
    )
    args = parser.parse_args(argv)
    args.no_cache = True
    try:
        JudgePolicy.from_json(args.rollout_policy)
    except ValueError as exc:
        parser.error(str(exc))

    from pipelines.monitoring import PIPELINES
    from pipelines.resources import for_local_run

    init_local_runner(args)
    log_path = STATE_DIR / "logs" / f"{args.project}-monitoring.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log, contextlib.redirect_stdout(Progress(sys.stdout, log)):
        try:
            task = for_local_run(PIPELINES[args.project])(
                source=args.data or LOG_SOURCE,
                log_root=args.log_root,
                window_hours=args.hours,
                retention_days=args.retention_days,
                labels=args.labels,
                drift_sample_rows=args.drift_sample_rows,
                mlflow_tracking_uri=args.tracking_uri,
                min_rows=args.min_rows,
                important_columns=args.important_columns,
                quality_tolerance=args.quality_tolerance,
                pushgateway=args.pushgateway,
                rollout_approval=args.approval,
                rollout_policy=args.rollout_policy,
                promotion=args.promotion,
                retrain=bool(args.retrain),
                retrain_min_labelled_rows=args.retrain_min_labelled_rows,
                holdout_share=args.holdout_share,
                retrain_source=args.retrain_source,
                trials_per_candidate=args.trials,
                gate_overrides=args.gate_overrides,
            )
        except Exception as exc:  # the failing step's output is shown above; name the log too
            print(
                f"monitoring {args.project} FAILED: {type(exc).__name__}: {exc} (log: {log_path})",
                file=sys.stderr,
            )
            return 1
    summary = MonitoringSummary.read(task.outputs["summary"].path)
    done = retraining.outcome(PROJECTS[args.project], summary.time)
    written = STATE_DIR / "monitor" / args.project / "latest.json"
    written.parent.mkdir(parents=True, exist_ok=True)
    judged = RolloutVerdict.read(task.outputs["rollout"].path)
    written.write_text(json.dumps(latest(summary, bool(args.retrain), done, judged), indent=2))
    print(render(summary, done, task.outputs["report"].path, written, judged))
    return 0


if __name__ == "__main__":
    sys.exit(main())

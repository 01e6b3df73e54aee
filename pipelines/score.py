"""Scores a file with a project's model through its batch scoring pipeline, run on this machine by
`kfp.local`, and copies the predictions (and the rejected rows beside them) to `--out`.

`python -m pipelines.score --help` lists the options; `make score PROJECT=<p> DATA=<path or URL>
OUT=<file>` is the entry point. The output's extension (.csv or .parquet) sets the format.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from components.core.contracts import ScoringSummary
from components.core.drift import MIN_ROWS
from components.core.engine import deliver
from components.core.projects import PROJECTS
from components.core.scoring import (
    DRIFT_GATES,
    MAX_REJECTED_SHARE,
    SHARD_ROWS,
    ScoringError,
    rejected_path,
    table_format,
)
from pipelines.local import (
    ANSI,
    STATE_DIR,
    TASK_END,
    TASK_START,
    Progress,
    default_tracking_uri,
    init_local_runner,
)


class _ShardProgress(Progress):
    """Progress where one task name runs several times at once (the shards, each in a thread of
    kfp.local's): writes are serialised, and each end is timed from the earliest start of that
    name still open."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.open: defaultdict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def _line(self, line: str) -> None:
        if started := TASK_START.search(line):
            self.open[started[1]].append(time.perf_counter())
        elif (ended := TASK_END.search(line)) and self.open[ended[1]]:
            # the base class times the end from this start
            self.started[ended[1]] = self.open[ended[1]].popleft()
            super()._line(line)
            return
        super()._line(line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument("--data", required=True, help="path or URL of a .csv or .parquet file")
    parser.add_argument(
        "--out", required=True, help="output file or URL (e.g. s3://...), .csv or .parquet"
    )
    parser.add_argument("--model-version", default="", help="a version number; default: champion")
    parser.add_argument("--shard-rows", type=int, default=SHARD_ROWS)
    parser.add_argument("--max-rejected-share", type=float, default=MAX_REJECTED_SHARE)
    parser.add_argument("--drift-gate", choices=DRIFT_GATES, default="warn")
    parser.add_argument("--drift-min-rows", type=int, default=MIN_ROWS)
    parser.add_argument(
        "--reasons",
        type=int,
        choices=(0, 1),
        default=None,
        help="1: add each row's top reasons, 0: none (default: the project's)",
    )
    parser.add_argument("--allow-unverified-model", action="store_true")
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    args = parser.parse_args(argv)
    try:
        args.output_format = table_format(str(args.out))
    except ScoringError as error:
        parser.error(f"--out: {error}")
    args.no_cache = True  # the champion and the file change between runs
    if Path(args.data).is_file():  # the steps and the reports name it wherever they run
        args.data = str(Path(args.data).resolve())
    return args


def render(summary: ScoringSummary, out: str, rejected: str, report: str, drift: str) -> str:
    rules = ", ".join(f"{rule} {n:,}" for rule, n in summary.rejected_by_rule.items())
    return "\n".join(
        [
            f"== {summary.project} batch scoring: {summary.model_name} v{summary.model_version}"
            + ("" if summary.model_verified else " (UNVERIFIED)"),
            f"   data      {summary.source} (sha256 {summary.source_sha256[:12]})",
            f"   rows      {summary.rows:,} read, {summary.scored_rows:,} scored, "
            f"{summary.rejected_rows:,} rejected" + (f" ({rules})" if rules else ""),
            f"   shards    {summary.shards}; reasons {'on' if summary.with_reasons else 'off'}",
            f"   drift     {summary.drift_reason}",
            f"   output    {out}",
            f"   rejected  {rejected}",
            f"   summary   {report}",
            f"   drift     {drift}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipelines.batch_scoring import KIND, PIPELINES
    from pipelines.resources import for_local_run

    spec = PROJECTS[args.project]
    init_local_runner(args)
    print(f"MLflow: {args.tracking_uri}\n--> {args.project}: {args.data}", flush=True)
    log_path = STATE_DIR / "logs" / f"{args.project}-{KIND}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    reasons = {} if args.reasons is None else {"with_reasons": bool(args.reasons)}
    with log_path.open("w") as log, contextlib.redirect_stdout(_ShardProgress(sys.stdout, log)):
        try:
            task = for_local_run(PIPELINES[spec.name])(
                mlflow_tracking_uri=args.tracking_uri,
                source=args.data,
                model_version=args.model_version,
                output_format=args.output_format,
                max_rejected_share=args.max_rejected_share,
                shard_rows=args.shard_rows,
                drift_gate=args.drift_gate,
                drift_min_rows=args.drift_min_rows,
                allow_unverified_model=args.allow_unverified_model,
                **reasons,
            )
        except Exception as exc:  # the failing step's output is shown above; name the log too
            print(
                f"batch scoring {args.project} FAILED: {type(exc).__name__}: {ANSI.sub('', str(exc))} "
                f"(log: {log_path})",
                file=sys.stderr,
            )
            return 1
    outputs = task.outputs
    rejected = rejected_path(args.out)
    try:
        deliver(outputs["predictions"].path, args.out)
        deliver(outputs["rejected"].path, rejected)
    except Exception as exc:  # the run's outputs stay where kfp.local wrote them
        print(
            f"batch scoring {args.project}: could not write {args.out}: {type(exc).__name__}: "
            f"{exc}; the scored rows are kept in {outputs['predictions'].path} and the "
            f"rejected rows in {outputs['rejected'].path}",
            file=sys.stderr,
        )
        return 1
    summary = ScoringSummary.read(outputs["summary"].path)
    print(render(summary, args.out, rejected, outputs["report"].path, outputs["drift_report"].path))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs the project pipelines on this machine through `kfp.local` (SubprocessRunner), with MLflow
on a local SQLite store. `python -m pipelines.local --help` lists the options."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from components.core.ingest import SYNTHETIC_NOTICE
from components.core.projects import PROJECTS

STATE_DIR = Path(os.environ.get("MLOPS_STATE_DIR", ".state")).resolve()


def default_tracking_uri() -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{STATE_DIR / 'mlflow' / 'mlflow.db'}"
    )


def resolve_source(project: str, data: str | None, data_dir: str | None) -> str:
    """DATA for one project, else DATA_DIR/<file>, else the synthetic generator."""
    if data:
        return data
    if data_dir:
        path = Path(data_dir) / PROJECTS[project].data_file
        if not path.is_file():
            raise SystemExit(
                f"DATA_DIR={data_dir} has no {PROJECTS[project].data_file} for {project}"
            )
        return str(path)
    return "synthetic"


ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"Executing task '([^']+)'")
TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


class Progress(io.TextIOBase):
    """Stands in for stdout during a run: the full kfp.local log goes to a file, the terminal
    gets one line per step with its wall time, and the tail of a failing step's output."""

    def __init__(self, terminal: TextIO, log: TextIO) -> None:
        self.terminal, self.log = terminal, log
        self.buffer = ""
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self.recent: deque[str] = deque(maxlen=400)

    def write(self, text: str) -> int:
        self.log.write(text)
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for raw in lines:
            self._line(ANSI.sub("", raw))
        return len(text)

    def _line(self, line: str) -> None:
        if started := TASK_START.search(line):
            self.started[started[1]] = time.perf_counter()
            self.recent.clear()
            self.terminal.write(f"    {started[1]:<10} running...\r")
        elif ended := TASK_END.search(line):
            task, status = ended[1], ended[2]
            seconds = time.perf_counter() - self.started.get(task, time.perf_counter())
            self.durations[task] = seconds
            self.terminal.write(f"    {task:<10} {seconds:6.1f} s  {status}\n")
            if status != "SUCCESS":
                lines = [entry for entry in self.recent if entry.strip()]
                starts = [i for i, entry in enumerate(lines) if "Traceback" in entry]
                # Show what the step printed last before its traceback, then the error itself.
                tail = lines[max(0, starts[-1] - 3) :] if starts else lines[-25:]
                self.terminal.write("".join(f"      | {entry}\n" for entry in tail))
        else:
            self.recent.append(line)
        self.terminal.flush()

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


@dataclass
class Outcome:
    project: str
    source: str
    seconds: float
    ok: bool
    error: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)


def run_project(project: str, source: str, args: argparse.Namespace) -> Outcome:
    from pipelines.training import PIPELINES

    log_path = STATE_DIR / "logs" / f"{project}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        progress = Progress(sys.stdout, log)
        try:
            with contextlib.redirect_stdout(progress):
                task = PIPELINES[project](
                    source=source,
                    seed=args.seed,
                    test_size=args.test_size,
                    trials_per_candidate=args.trials,
                    gate_overrides=args.gates,
                    mlflow_tracking_uri=args.tracking_uri,
                )
        except Exception as exc:  # report the failed project and go on with the others
            error = f"{type(exc).__name__}: {exc} (full log: {log_path})"
            return Outcome(
                project, source, time.perf_counter() - start, False, error, steps=progress.durations
            )
    outputs = {name: getattr(value, "path", value) for name, value in task.outputs.items()}
    return Outcome(
        project,
        source,
        time.perf_counter() - start,
        True,
        outputs=outputs,
        steps=progress.durations,
    )


def summary(outcome: Outcome) -> str:
    lines = [f"== {outcome.project}: {'OK' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s"]
    if not outcome.ok:
        return "\n".join([*lines, f"   {outcome.error.strip()[:2000]}"])
    out = outcome.outputs
    registration = json.loads(Path(out["registration"]).read_text())
    source = json.loads(Path(out["source_info"]).read_text())
    evaluation = json.loads(Path(out["evaluation"]).read_text())
    drift = json.loads(Path(out["drift_summary"]).read_text())
    lines += [
        f"   data      {source['source']}  ({source['rows']} rows, sha256 {source['sha256'][:12]})",
        *([f"   !!        {source['notice']}"] if source.get("notice") else []),
        *[f"   gate      {line}" for line in evaluation["gates"]],
        f"   drift     share {drift['drift_share']:.2f} ({drift['drifted_columns']} columns), dataset drift {drift['dataset_drift']}",
        f"   mlflow    {outcome.project} v{registration['version']} aliases {registration['aliases']}: {registration['decision']}",
        f"   reports   {out['evaluation_report']}",
        f"             {out['explanation_report']}",
        f"             {out['drift_report']}",
        f"   card      {out['model_card']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", default="all", choices=["all", *PROJECTS])
    parser.add_argument(
        "--data", default=os.environ.get("DATA") or None, help="path or URL (one project)"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("DATA_DIR") or None,
        help="folder with the three CSV files",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument(
        "--trials", type=int, default=4, help="hyperparameter trials per candidate model"
    )
    parser.add_argument(
        "--gates", default="{}", help='gate overrides as JSON, e.g. {"roc_auc": 0.8}'
    )
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--timings", type=Path, help="write step and pipeline wall times as JSON here"
    )
    args = parser.parse_args(argv)
    projects = list(PROJECTS) if args.project == "all" else [args.project]
    if args.data and len(projects) > 1:
        parser.error("DATA names one file: give PROJECT too (or use DATA_DIR for all three)")

    from kfp import local

    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    (STATE_DIR / "mlflow").mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(STATE_DIR / "kfp"),
        enable_caching=not args.no_cache,
        raise_on_error=True,
    )
    print(
        f"MLflow: {args.tracking_uri}\nKFP pipeline root: {STATE_DIR / 'kfp'} (cache {'off' if args.no_cache else 'on'})"
    )
    outcomes = []
    for project in projects:
        source = resolve_source(project, args.data, args.data_dir)
        if source == "synthetic":
            print(f"\n!!! {project}: no DATA or DATA_DIR given. {SYNTHETIC_NOTICE}.\n")
        print(f"--> {project}: {source}", flush=True)
        outcomes.append(run_project(project, source, args))
    print("\n" + "\n\n".join(summary(o) for o in outcomes))
    if args.timings:
        args.timings.parent.mkdir(parents=True, exist_ok=True)
        args.timings.write_text(
            json.dumps(
                [
                    {
                        "project": o.project,
                        "source": o.source,
                        "ok": o.ok,
                        "seconds": o.seconds,
                        "steps": o.steps,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Runs the project pipelines on this machine through `kfp.local` (SubprocessRunner), with MLflow
on a local SQLite store. `python -m pipelines.local --help` lists the options."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from components.core.contracts import (
    PROMOTIONS,
    DriftSummary,
    EvaluationSummary,
    Registration,
    SourceInfo,
)
from components.core.ingest import SYNTHETIC_NOTICE
from components.core.projects import PROJECTS

STATE_DIR = Path(os.environ.get("MLOPS_STATE_DIR", ".state")).resolve()


def default_tracking_uri() -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{STATE_DIR / 'mlflow' / 'mlflow.db'}"
    )


def _resolve_source(project: str, data: str | None, data_dir: str | None) -> str:
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

    def __init__(self, terminal: TextIO, log: TextIO, prefix: str = "", live: bool = True) -> None:
        self.terminal, self.log = terminal, log
        self.prefix = prefix
        """Names the project on every line when several run at once."""
        self.live = live
        """Show a 'running...' line that the step's result overwrites (one project at a time)."""
        self.buffer = ""
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self.recent: deque[str] = deque(maxlen=400)

    def write(self, text: str) -> int:
        # kfp.local's log handler keeps this stream after the run: later records (an HTTP
        # client's, say) must not write to the closed log file.
        if not self.log.closed:
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
            if self.live:
                self.terminal.write(f"    {self.prefix}{started[1]:<10} running...\r")
        elif ended := TASK_END.search(line):
            task, status = ended[1], ended[2]
            seconds = time.perf_counter() - self.started.get(task, time.perf_counter())
            self.durations[task] = seconds
            self.terminal.write(f"    {self.prefix}{task:<10} {seconds:6.1f} s  {status}\n")
            if status != "SUCCESS":
                lines = [entry for entry in self.recent if entry.strip()]
                starts = [i for i, entry in enumerate(lines) if "Traceback" in entry]
                # Show what the step printed last before its traceback, then the error itself.
                tail = lines[max(0, starts[-1] - 3) :] if starts else lines[-25:]
                self.terminal.write("".join(f"      {self.prefix}| {entry}\n" for entry in tail))
        else:
            self.recent.append(line)
        self.terminal.flush()

    def flush(self) -> None:
        if not self.log.closed:
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


def init_local_runner(args: argparse.Namespace) -> None:
    from kfp import local

    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(STATE_DIR / "kfp"),
        enable_caching=not args.no_cache,
        raise_on_error=True,
    )


def _run_project(
    project: str, source: str, args: argparse.Namespace, concurrent: bool = False
) -> Outcome:
    from pipelines.resources import for_local_run
    from pipelines.training import PIPELINES

    log_path = STATE_DIR / "logs" / f"{project}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        prefix = f"{project:<10} " if concurrent else ""
        progress = Progress(sys.stdout, log, prefix=prefix, live=not concurrent)
        try:
            with contextlib.redirect_stdout(progress):
                task = for_local_run(PIPELINES[project])(
                    source=source,
                    seed=args.seed,
                    test_size=args.test_size,
                    trials_per_candidate=args.trials,
                    gate_overrides=args.gates,
                    promotion=args.promotion,
                    mlflow_tracking_uri=args.tracking_uri,
                    # 0 keeps each project's own default.
                    **({"explained_rows": args.explained_rows} if args.explained_rows else {}),
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


def _run_in_worker(project: str, source: str, args: argparse.Namespace) -> Outcome:
    """One project's pipeline in its own process: kfp.local's configuration is process-global.

    The steps inherit one OpenMP thread each: several pipelines already share the cores, and
    OpenMP threads that outnumber them spin and slow every step down.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    init_local_runner(args)
    return _run_project(project, source, args, concurrent=True)


def _ensure_tracking_store(tracking_uri: str) -> None:
    """Creates a new SQLite store's tables once, before concurrent runs would race to do it."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    if Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri).search_experiments(max_results=1)


def summary(outcome: Outcome) -> str:
    lines = [f"== {outcome.project}: {'OK' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s"]
    if not outcome.ok:
        return "\n".join([*lines, f"   {outcome.error.strip()[:2000]}"])
    out = outcome.outputs
    registration = Registration.read(out["registration"])
    source = SourceInfo.read(out["source_info"])
    evaluation = EvaluationSummary.read(out["evaluation"])
    drift = DriftSummary.read(out["drift_summary"])
    lines += [
        f"   data      {source.source}  ({source.rows} rows, sha256 {source.sha256[:12]})",
        *([f"   !!        {source.notice}"] if source.notice else []),
        *[f"   gate      {line}" for line in evaluation.gates],
        *([f"   reading   {evaluation.reading}"] if evaluation.reading else []),
        f"   drift     {drift.reason}"
        + (f" (vs {drift.reference})" if drift.reference_rows else ""),
        f"   mlflow    {outcome.project} v{registration.version} aliases {registration.aliases}: {registration.decision}",
        f"   compiled  {registration.compiled_model or 'not recorded'}",
        f"   reports   {out['evaluation_report']}",
        f"             {out['explanation_report']}",
        f"             {out['drift_report']}",
        f"   card      {out['model_card']}",
        f"   serving   {out['inference_service']}",
    ]
    return "\n".join(lines)


def default_jobs() -> int:
    """`JOBS` from the environment, else one pipeline per core."""
    return int(os.environ.get("JOBS") or os.cpu_count() or 1)


def project_list(value: str) -> list[str]:
    if value == "all":
        return list(PROJECTS)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROJECTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown project {', '.join(unknown) or repr(value)}; choose from {', '.join(PROJECTS)} or all"
        )
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--project",
        default="all",
        type=project_list,
        help=f"'all' or a comma-separated list of {', '.join(PROJECTS)}",
    )
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
        "--trials",
        type=int,
        default=0,
        help="hyperparameter trials per candidate model (0: the project's default)",
    )
    parser.add_argument(
        "--explained-rows",
        type=int,
        default=0,
        help="test rows the explain step explains (0: the project's default)",
    )
    parser.add_argument(
        "--gates", default="{}", help='gate overrides as JSON, e.g. {"roc_auc": 0.8}'
    )
    parser.add_argument(
        "--promotion",
        choices=PROMOTIONS,
        default=PROMOTIONS[0],
        help="a model that beats the champion: becomes it (direct), or goes to shadow beside it "
        "for the rollout judge (staged)",
    )
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        help="pipelines run at once, each in its own process (default: one per core; 1: one "
        "after another)",
    )
    parser.add_argument(
        "--timings", type=Path, help="write step and pipeline wall times as JSON here"
    )
    args = parser.parse_args(argv)
    projects = args.project
    if args.data and len(projects) > 1:
        parser.error("DATA names one file: give PROJECT too (or use DATA_DIR for all three)")

    (STATE_DIR / "mlflow").mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(args.jobs, len(projects)))
    print(
        f"MLflow: {args.tracking_uri}\nKFP pipeline root: {STATE_DIR / 'kfp'} (cache {'off' if args.no_cache else 'on'})"
        + (f"\n{jobs} pipelines at a time, each in its own process" if jobs > 1 else "")
    )
    sources = {p: _resolve_source(p, args.data, args.data_dir) for p in projects}

    def announce(project: str) -> None:
        if sources[project] == "synthetic":
            print(f"\n!!! {project}: no DATA or DATA_DIR given. {SYNTHETIC_NOTICE}.\n")
        print(f"--> {project}: {sources[project]}", flush=True)

    outcomes = []
    if jobs == 1:
        init_local_runner(args)
        for project in projects:
            announce(project)
            outcomes.append(_run_project(project, sources[project], args))
    else:
        for project in projects:
            announce(project)
        _ensure_tracking_store(args.tracking_uri)
        # Forked workers start with this process's imports instead of paying for them again;
        # they only drive kfp.local, whose steps are fresh subprocesses.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_run_in_worker, p, sources[p], args) for p in projects]
            outcomes = [future.result() for future in futures]
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

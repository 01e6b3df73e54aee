"""What running the projects costs in CPU and memory, measured on the real data (`make bench-cost`).

For each project:

- every step of one training run, and of one monitoring run and one batch scoring run of the
  real file: each pipeline through kfp.local's SubprocessRunner, as `make run` and `make score`
  run them (cache off), so each step is a process of its own, started through GNU time
  (/usr/bin/time), which reports the process's and its descendants' user+sys CPU-seconds and
  max RSS: the step's own. Its process tree's CPU is also read every second (/proc) for the
  most cores it kept busy. The runs use a copy of the MLflow store in .state/bench/cost/ (new runs and models
  are written there), so drift, check and register work against the real champions without
  changing the store `make run` uses. The training run uses seed 43: its model is then new to
  the store, and register does all its work (a model already registered is skipped).
- serving: the real server (`python -m serving`) on `models:/<project>@champion`, REQUESTS
  single-row v1 requests one after another on one keep-alive connection (after a warm-up), the
  server's process tree's CPU-seconds (/proc) before and after, scaled to 1,000,000 requests;
  its peak memory is VmHWM (/proc/<pid>/status).
- batch: a fresh process pins and loads the champion as a score step does, resamples the real
  rows with replacement to 1,000,000, screens them as validate-rows does and scores them with
  `scoring.score_frame` (with reasons when the project's batch pipeline gives them by default;
  bankchurn also without); GNU time gives its CPU and max RSS, the process its phases' CPU.
- carvision: the dashboard (apps/carvision) through one session of its four tabs in headless
  Chromium (benchmarks/screenshots.py), against the carvision server.

Writes .state/bench/cost.md (and cost.json) and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.options import champion_benchmark_parser
from benchmarks.serving import tree_cpu_seconds, v1_body
from components.core.contracts import CHAMPION
from components.core.projects import PROJECTS
from pipelines.local import Progress, project_list
from tests.support.servers import REPO_ROOT, ServerProcess, free_port, launch, start

OUT_DIR = REPO_ROOT / ".state" / "bench"
WORK = OUT_DIR / "cost"
SEED = 43
REQUESTS = 2000
WARMUP = 200
BATCH_ROWS = 1_000_000
MILLION = 1_000_000
SAMPLE_S = 1.0
TIME = "/usr/bin/time"
PARTS = ("training", "monitoring", "batch-scoring", "serving", "batch", "app")


@dataclass
class Usage:
    cpu_s: float
    """user + sys CPU-seconds of the process and its descendants."""
    max_rss_mib: float
    wall_s: float
    peak_cores: float
    """The most CPU-seconds per second it used over any SAMPLE_S."""
    ok: bool = True


# --- measuring a process ----------------------------------------------------------------------


def family(pid: int) -> set[int]:
    """The process and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                text = (entry / "stat").read_text()
                parents[int(entry.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    found = {pid}
    while grown := {p for p, parent in parents.items() if parent in found} - found:
        found |= grown
    return found


def status_mib(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory figure (VmHWM, VmRSS) summed over the process tree, in MiB."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1]) / 1024
    return total


class Sampler(threading.Thread):
    """Reads a process tree's CPU-seconds every SAMPLE_S; `peak` is the most cores it used."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        last, cpu = time.monotonic(), tree_cpu_seconds(self.pid)
        while not self.done.wait(SAMPLE_S):
            now, seen = time.monotonic(), tree_cpu_seconds(self.pid)
            self.peak = max(self.peak, (seen - cpu) / (now - last))
            last, cpu = now, seen


def run_measured(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    echo: Callable[[str], object] | None = None,
) -> tuple[int, Usage, str]:
    """Runs `command` to its end: (exit code, its usage, the tail of its output).

    Through GNU time: a child's max RSS counts the memory of the process it was forked from,
    which for this process is hundreds of MiB; time's own is a few MiB."""
    if not Path(TIME).is_file():
        raise SystemExit(f"{TIME} is missing (Debian package `time`)")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.monotonic()
        process = subprocess.Popen(
            [TIME, "-f", "%U %S %M", "-o", report.name, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
        sampler = Sampler(process.pid)
        sampler.start()
        tail: deque[str] = deque(maxlen=200)
        assert process.stdout is not None
        for line in iter(process.stdout.readline, ""):
            tail.append(line)
            if echo:
                echo(line)
        code = process.wait()
        sampler.done.set()
        sampler.join()
        process.stdout.close()
        wall = time.monotonic() - started
        # The last line: a failed command adds "Command exited with non-zero status N" above it.
        user, system, max_rss_kib = report.read().split("\n")[-2].split()
    usage = Usage(float(user) + float(system), int(max_rss_kib) / 1024, wall, sampler.peak)
    usage.ok = code == 0
    return code, usage, "".join(tail)


# --- pipeline steps through kfp.local ---------------------------------------------------------


@contextlib.contextmanager
def measured_steps() -> Iterator[dict[str, list[Usage]]]:
    """kfp.local with each step's process measured: {task display name: [Usage per process]}
    (several for a step in a ParallelFor, or retried)."""
    from kfp.local import subprocess_task_handler
    from kfp.local.orchestrator import task_executor

    found: dict[str, list[Usage]] = {}
    current = threading.local()  # ParallelFor runs its tasks in threads
    execute = task_executor.execute_single_task
    run = subprocess_task_handler.run_local_subprocess

    def named(**kwargs: Any) -> Any:
        current.step = kwargs["task_spec"].task_info.name or kwargs["task_name"]
        return execute(**kwargs)

    def measured(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        env = {**os.environ, **env_vars} if env_vars else None
        code, usage, _ = run_measured(full_command, env, echo=lambda line: print(line, end=""))
        print("\n")
        found.setdefault(current.step, []).append(usage)
        return code

    setattr(task_executor, "execute_single_task", named)  # noqa: B010
    setattr(subprocess_task_handler, "run_local_subprocess", measured)  # noqa: B010
    try:
        yield found
    finally:
        setattr(task_executor, "execute_single_task", execute)  # noqa: B010
        setattr(subprocess_task_handler, "run_local_subprocess", run)  # noqa: B010


def scratch_store(shared_uri: str) -> str:
    """A snapshot of the local SQLite store whose experiments keep their new runs and models
    under WORK; the champions' files are read where they are."""
    if not shared_uri.startswith("sqlite:///"):
        raise SystemExit(f"bench-cost copies the local SQLite store; {shared_uri} is not one")
    target = WORK / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(shared_uri.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # consistent even while another process writes the store
        artifacts = (WORK / "mlflow" / "artifacts").as_uri()
        copy.execute("UPDATE experiments SET artifact_location = ? || '/' || name", (artifacts,))
        copy.commit()
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{target}"


def run_pipeline(label: str, pipeline: Callable[..., Any], **arguments: Any) -> dict[str, Any]:
    """One run with each step measured: {"steps": {name: [Usage, ...]}, "error": ...}."""
    log = WORK / "logs" / f"{label.replace(' ', '-')}.log"
    error = ""
    with log.open("w") as out, measured_steps() as found:
        progress = Progress(sys.stdout, out, prefix=f"{label:<24} ", live=False)
        try:
            with contextlib.redirect_stdout(progress):
                pipeline(**arguments)
        except Exception as exc:  # report it and go on with the other measurements
            error = f"{type(exc).__name__}: {str(exc)[:300]} (log: {log})"
    return {
        "steps": {name: [asdict(u) for u in runs] for name, runs in found.items()},
        "error": error,
    }


def pipelines(projects: list[str], parts: set[str], data_dir: Path, store: str) -> dict[str, Any]:
    from kfp import local

    from pipelines import batch_scoring, monitoring, training

    os.environ["MLFLOW_TRACKING_URI"] = store
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(WORK / "kfp"),
        enable_caching=False,
        raise_on_error=True,
    )
    found: dict[str, Any] = {}
    for project in projects:
        source = str(data_dir / PROJECTS[project].data_file)
        runs: dict[str, tuple[Mapping[str, Any], dict[str, Any]]] = {
            "training": (training.PIPELINES, {"seed": SEED}),
            "monitoring": (monitoring.PIPELINES, {"retrain": False}),
            "batch-scoring": (batch_scoring.PIPELINES, {"allow_unverified_model": True}),
        }
        for kind, (built, extra) in runs.items():
            if kind in parts:
                found[f"{project} {kind}"] = run_pipeline(
                    f"{project} {kind}",
                    built[project],
                    source=source,
                    mlflow_tracking_uri=store,
                    **extra,
                )
    return found


# --- serving and the dashboard ----------------------------------------------------------------


def champion(project: str, tracking: str) -> tuple[str, bool]:
    """(version, whether a model file digest vouches for it)."""
    import mlflow

    from components.core.loading import DIGEST_TAG

    found = mlflow.MlflowClient(tracking).get_model_version_by_alias(project, CHAMPION)
    return str(found.version), bool((found.tags or {}).get(DIGEST_TAG))


def serving(
    project: str, data_dir: Path, tracking: str, requests: int, app: bool
) -> dict[str, Any]:
    import httpx

    from components.core import ingest

    spec = PROJECTS[project]
    version, verified = champion(project, tracking)
    frame, _ = ingest.load(spec, str(data_dir / spec.data_file))
    rows = frame.sample(min(500, len(frame)), random_state=0)
    bodies = [v1_body(spec, rows.iloc[[i]]) for i in range(len(rows))]
    server = launch(
        project,
        f"models:/{project}@{CHAMPION}",
        WORK / "logs" / f"{project}-server.log",
        env={"MLFLOW_TRACKING_URI": tracking},
        extra_args=[] if verified else ["--allow-unverified-model"],
    )
    try:
        server.wait_ready(600)
        pid = server.process.pid
        startup_cpu = tree_cpu_seconds(pid)
        url = f"{server.url}/v1/models/{project}:predict"
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=60) as client:

            def send(count: int) -> None:
                for i in range(count):
                    answer = client.post(url, content=bodies[i % len(bodies)], headers=headers)
                    answer.raise_for_status()

            send(WARMUP)
            before, started = tree_cpu_seconds(pid), time.perf_counter()
            send(requests)
            wall, cpu = time.perf_counter() - started, tree_cpu_seconds(pid) - before
        found = {
            "version": version,
            "verified": verified,
            "requests": requests,
            "cpu_s": cpu,
            "wall_s": wall,
            "startup_cpu_s": startup_cpu,
            "peak_rss_mib": status_mib(pid, "VmHWM"),
            "rss_mib": status_mib(pid, "VmRSS"),
        }
        if app:
            found["app"] = dashboard(server, tracking, data_dir / spec.data_file)
        return found
    finally:
        server.stop()


def dashboard(predictor: ServerProcess, tracking: str, data: Path) -> dict[str, Any]:
    """One viewer's session through the dashboard's tabs (the estimator's form sent once)."""
    from apps.carvision.settings import DATA_ENV, PREDICTOR_ENV, TRACKING_ENV
    from benchmarks.screenshots import APP_TABS, app_command, shoot_app

    if shutil.which("chromium") is None:
        return {"error": "not measured: chromium is not installed"}
    port = free_port()
    env = {TRACKING_ENV: tracking, DATA_ENV: str(data), PREDICTOR_ENV: predictor.url}
    app = start(
        "dashboard", app_command(sys.executable, port), WORK / "logs" / "app.log", port, env
    )
    try:
        app.wait_ready(120, path="/_stcore/health")
        startup = tree_cpu_seconds(app.process.pid)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            shoot_app(app.url, Path(folder))
        return {
            "tabs": len(APP_TABS),
            "cpu_s": tree_cpu_seconds(app.process.pid) - startup,
            "wall_s": time.perf_counter() - started,
            "startup_cpu_s": startup,
            "peak_rss_mib": status_mib(app.process.pid, "VmHWM"),
        }
    finally:
        app.stop()


# --- batch ------------------------------------------------------------------------------------


def score_driver(project: str, rows: int, reasons: bool, data_dir: Path, tracking: str) -> None:
    """In its own process: the champion scores `rows` real rows drawn with replacement; prints
    each phase's CPU-seconds and the process's max RSS after it as JSON."""
    import mlflow

    from components.core import scoring

    def used() -> tuple[float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return own.ru_utime + own.ru_stime, own.ru_maxrss / 1024

    mlflow.set_tracking_uri(tracking)
    spec = PROJECTS[project]
    phases: dict[str, dict[str, float]] = {}
    last = used()[0]

    def phase(name: str) -> None:
        nonlocal last
        cpu, rss = used()
        phases[name] = {"cpu_s": cpu - last, "max_rss_mib": rss}
        last = cpu

    pinned = scoring.pin(spec, allow_unverified=True)
    loaded = scoring.load_pinned(spec, pinned)
    frame, _, _ = scoring.read_table(str(data_dir / spec.data_file))
    frame = frame.drop(columns=[spec.target]).sample(rows, replace=True, random_state=0)
    frame = frame.reset_index(drop=True)
    phase("load")
    valid = scoring.screen(spec, frame).valid
    phase("screen")
    background = loaded.background if reasons else None
    scoring.score_frame(spec, loaded.model, loaded.threshold, valid, pinned.version, background)
    phase("score")
    print(json.dumps({"version": pinned.version, "valid_rows": len(valid), "phases": phases}))


def batch(project: str, data_dir: Path, tracking: str, rows: int) -> list[dict[str, Any]]:
    spec = PROJECTS[project]
    found = []
    for reasons in dict.fromkeys([spec.task.with_reasons, False]):
        command = [
            *(sys.executable, "-m", "benchmarks.cost", "--score-driver", project),
            *("--rows", str(rows), "--reasons", str(int(reasons))),
            *("--data-dir", str(data_dir), "--tracking-uri", tracking),
        ]
        code, usage, output = run_measured(command)
        lines = output.strip().splitlines()
        if code != 0 or not lines:
            found.append({"reasons": reasons, "error": output[-1500:]})
            continue
        found.append({"reasons": reasons, "rows": rows, **asdict(usage), **json.loads(lines[-1])})
    return found


# --- the report -------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "absent"


def commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def markdown(found: dict[str, Any]) -> str:
    about = found["about"]
    lines = [
        "# Cost: CPU and memory per training run, per million predictions, per million batch rows",
        "",
        f"Command: `{about['command']}`; {about['date']}, commit {about['commit']}; machine: "
        f"{about['cores']} cores, {about['memory_gib']:.0f} GiB, load average "
        f"{about['load_before']} before and {about['load_after']} after "
        f"(OMP_NUM_THREADS={about['omp']}); took {about['seconds']:.0f} s.",
        "Data: " + ", ".join(f"{name} (sha256 {sha})" for name, sha in about["data"].items()) + ".",
        "MLflow: the champions of " + about["tracking"] + "; the pipelines ran against a copy "
        f"of it ({about['scratch']}), the training run with seed {SEED}.",
        "",
        "## Pipeline steps",
        "",
        "Each step is its own process (kfp.local SubprocessRunner, cache off): CPU-s is user+sys "
        "of the process and its children (GNU time), peak cores the most CPU-seconds per second "
        f"over any {SAMPLE_S:g} s, max RSS the process's peak. A step run several times (score "
        "per shard) shows the sum of CPU-s and wall and the largest peak and RSS.",
        "",
        "| pipeline | step | runs | CPU-s | peak cores | wall s | max RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    from pipelines import batch_scoring, monitoring, notice, training

    order = [
        *training.STEPS,
        training.MARKET_STEP,
        *monitoring.STEPS,
        *batch_scoring.STEPS,
        notice.NOTIFY_STEP,
    ]
    for label, run in found["pipelines"].items():
        total_cpu = total_wall = 0.0
        steps = sorted(run["steps"].items(), key=lambda item: order.index(item[0]))
        for step, runs in steps:
            cpu, wall = sum(r["cpu_s"] for r in runs), sum(r["wall_s"] for r in runs)
            total_cpu, total_wall = total_cpu + cpu, total_wall + wall
            failed = "" if all(r["ok"] for r in runs) else " (FAILED)"
            lines.append(
                f"| {label} | {step}{failed} | {len(runs)} | {cpu:.1f} | "
                f"{max(r['peak_cores'] for r in runs):.2f} | {wall:.1f} | "
                f"{max(r['max_rss_mib'] for r in runs):,.0f} |"
            )
        lines.append(f"| {label} | **all** | | **{total_cpu:.1f}** | | **{total_wall:.1f}** | |")
        if run["error"]:
            lines.append(f"| {label} | run failed: {run['error']} | | | | | |")
    lines += [
        "",
        "## Serving: one million single-row predictions",
        "",
        "`python -m serving` on the champion (tests/support/servers.launch, no inference log, no "
        "token); single-row v1 requests one at a time on one keep-alive connection after "
        f"{WARMUP} warm-up requests. Server CPU is its process tree's (/proc) over the requests, "
        "scaled to 1,000,000; peak RSS is VmHWM (start-up included).",
        "",
        "| project | champion | requests | server CPU ms per request | CPU-s per 1M requests "
        "| wall ms per request | start-up CPU-s | peak RSS MiB | RSS after MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for project, s in found["serving"].items():
        if "error" in s:
            lines.append(f"| {project} | {s['error']} | | | | | | | |")
            continue
        per = s["cpu_s"] / s["requests"]
        lines.append(
            f"| {project} | v{s['version']}{'' if s['verified'] else ' (unverified)'} | "
            f"{s['requests']:,} | {per * 1000:.2f} | {per * MILLION:,.0f} | "
            f"{s['wall_s'] / s['requests'] * 1000:.2f} | {s['startup_cpu_s']:.1f} | "
            f"{s['peak_rss_mib']:,.0f} | {s['rss_mib']:,.0f} |"
        )
    lines += [
        "",
        "## Batch: one million rows",
        "",
        "A fresh process per line: the champion pinned and loaded as a score step does, the real "
        f"rows resampled with replacement to {about['batch_rows']:,}, screened (validate-rows) and scored "
        "in one `scoring.score_frame` call. CPU-s and max RSS of the whole process (GNU time); the "
        "phases' CPU-s from the process itself.",
        "",
        "| project | champion | reasons | valid rows | load CPU-s | screen CPU-s | score CPU-s "
        "| CPU-s per 1M rows (screen + score) | process CPU-s | max RSS MiB | wall s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for project, runs in found["batch"].items():
        for b in runs:
            if "error" in b:
                lines.append(f"| {project} | failed: {b['error'][-300:]!r} |||||||||")
                continue
            p = b["phases"]
            work = (p["screen"]["cpu_s"] + p["score"]["cpu_s"]) * MILLION / b["rows"]
            lines.append(
                f"| {project} | v{b['version']} | {'yes' if b['reasons'] else 'no'} | "
                f"{b['valid_rows']:,} | {p['load']['cpu_s']:.1f} | {p['screen']['cpu_s']:.1f} | "
                f"{p['score']['cpu_s']:.1f} | {work:,.0f} | {b['cpu_s']:.1f} | "
                f"{b['max_rss_mib']:,.0f} | {b['wall_s']:.1f} |"
            )
    app = found["serving"].get("carvision", {}).get("app")
    if app:
        lines += ["", "## The CarVision dashboard", ""]
        if "error" in app:
            lines.append(f"Dashboard: {app['error']}.")
        else:
            lines.append(
                f"One session through its {app['tabs']} tabs (headless Chromium, the estimator's "
                f"form sent once): {app['cpu_s']:.1f} CPU-s in {app['wall_s']:.0f} s, "
                f"{app['startup_cpu_s']:.1f} CPU-s to start, peak RSS {app['peak_rss_mib']:,.0f} "
                "MiB (VmHWM of the Streamlit process tree)."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = champion_benchmark_parser(__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--rows", type=int, default=BATCH_ROWS)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--score-driver", help=argparse.SUPPRESS)
    parser.add_argument("--reasons", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.score_driver:
        score_driver(
            args.score_driver, args.rows, bool(args.reasons), args.data_dir, args.tracking_uri
        )
        return 0
    projects = project_list(args.project)
    parts = set(args.parts.split(","))
    absent = [p for p in projects if not (args.data_dir / PROJECTS[p].data_file).is_file()]
    if absent:
        print(f"real data absent for {', '.join(absent)} in {args.data_dir}", file=sys.stderr)
        return 2
    started, commit_before = time.perf_counter(), commit()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    store = scratch_store(args.tracking_uri)
    found: dict[str, Any] = {"pipelines": {}, "serving": {}, "batch": {}}
    found["pipelines"] = pipelines(projects, parts, args.data_dir, store)
    for project in projects:
        if "serving" in parts:
            app = "app" in parts and project == "carvision"
            print(f"{project}: serving {args.requests:,} requests", flush=True)
            found["serving"][project] = serving(
                project, args.data_dir, args.tracking_uri, args.requests, app
            )
        if "batch" in parts:
            print(f"{project}: scoring {args.rows:,} rows", flush=True)
            found["batch"][project] = batch(project, args.data_dir, args.tracking_uri, args.rows)
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    found["about"] = {
        "command": "make bench-cost DATA_DIR="
        + str(args.data_dir)
        + ("" if args.project == "all" else f" PROJECT={args.project}"),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # The code may move while this runs (a shared working tree): then both ends are named.
        "commit": commit_before if commit() == commit_before else f"{commit_before} to {commit()}",
        "cores": os.cpu_count(),
        "memory_gib": pages / 2**30,
        "omp": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_before": load_before,
        "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "data": {
            PROJECTS[p].data_file: sha256_of(args.data_dir / PROJECTS[p].data_file)
            for p in projects
        },
        "tracking": args.tracking_uri,
        "scratch": store,
        "requests": args.requests,
        "batch_rows": args.rows,
    }
    text = markdown(found)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "cost.json").write_text(json.dumps(found, indent=2))
    (OUT_DIR / "cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

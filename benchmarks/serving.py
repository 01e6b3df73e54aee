"""The registered champions served: in process, by this server and by MLServer, on the real rows.

`python -m benchmarks.serving [--project all|bankchurn,telecom,...] [--tracking-uri URI]
[--data-dir DIR] [--requests N] [--skip-mlserver]` (`make bench-serving`; default: all three).

For each project, the version `models:/<project>@champion` names in the tracking store (default
`.state/mlflow/mlflow.db`, as `make run` writes it) is pinned, its model file's digest with it
(taken from the file, said as UNVERIFIED, when the version has no `model_file_sha256` tag), and
loaded as the server loads it. The rows are the project's real file, screened by the row checks
the server applies (`scoring.screen`, as batch scoring reads a file). Side by side:

1. the sklearn pipeline in this process (`model_output`): single-row p50/p99 over REQUESTS rows
   of the file, one call per row, and rows/s on all rows in one call (best of BATCH_REPEATS);
2. the compiled path in this process (`LoadedModel.compiled.output`, ONNX Runtime on one
   thread, as the server runs it): the same figures, or why the champion has no graph;
3. this server (`python -m serving` on the pinned version and digest), v1 and v2, with the
   inference log on (the default) and off, one single-row request at a time over one
   keep-alive connection on 127.0.0.1: p50, p90, p99, p99.9;
4. the same with CONCURRENCY connections: requests/s, p50 and p99;
5. MLServer 1.7 with its sklearn runtime (its own venv, `.state/bench/mlserver-venv`, created
   with uv on first use: it pins fastapi<0.116) on the same fitted model dumped with joblib, with
   its defaults and with `parallel_workers=0`, v2 with a pandas-coded request: 3 and 4.

The servers run pinned to core SERVER_CPU (`taskset`), the in-process figures on that core too,
with one OpenMP thread (`threadpool_limits(1)`, as `python -m serving` sets it); the load
generator, wrk (Debian package; `benchmarks/wrk_rows.lua` sends the real rows in turn), runs on
CLIENT_CPU, closed loop, WRK_SECONDS per measurement after a warm-up: one C thread saturates
the server's core, which a Python client cannot. Sequential figures are also given in CPU
time per request (of the server's process tree, or of this process), which, unlike wall time,
does not grow when other work takes the core.

Checks: every screened row of the file is sent to this server, CHECK_BATCH instances per v1
request, and its answers compared with `model_output` of the loaded sklearn pipeline
(probabilities within 1e-6 and the same decision at the threshold; prices within 0.01 USD),
as is the compiled path in process. Verdicts per champion and protocol: one connection p50 <=
1.5 ms and p99 <= 3 ms; 8 connections >= 1,500 requests/s with p99 <= 4x their p50; each ahead of
the better MLServer configuration on the same figure. Where the time of
one single-row v1 request goes: the predictor's stages timed in process (p50), next to the HTTP
p50 and to a round trip to the server's liveness route, which does no model work.

The inference log's cost is kept because it is cheap here: a second server of the same version,
logging what it answers, starts beside the first, and the sequential v1 requests go to the two in
alternating blocks (after each block a pause lets the log write, so its writing is not charged
to the other server); target: at most TARGET_LOG_COST_P50_MS of p50. Gone from the earlier
benchmark, which served a model it trained: `--candidate`, `--model-uri`, `--log-cost-only`, the
100-instance requests and the in-process timing of the log's own work per row (10 and 17
microseconds when last measured).

The Markdown report, with its provenance (command, data files, versions, date, commit, cores, the
machine's other load during the run), goes to .state/bench/serving.md and is printed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmarks.batch import rate, timed
from benchmarks.options import champion_benchmark_parser
from components.core import compiled as compiled_graph
from components.core.compiled import Agreement
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from pipelines.local import project_list
from tests.support.servers import REPO_ROOT, ServerProcess, free_port, launch, server_env

STATE = REPO_ROOT / ".state" / "bench"
MLSERVER_VENV = STATE / "mlserver-venv"
MLSERVER_VERSION = "1.7.1"
SERVER_CPU, CLIENT_CPU = 0, 1
CONCURRENCY = 8
CHECK_BATCH = 500
"""Instances per v1 request of the equality check."""
BATCH_REPEATS = 3
TARGET_P50_MS = 1.5
TARGET_P99_MS = 3.0
TARGET_CONCURRENT_RPS = 1500.0
TARGET_CONCURRENT_TAIL = 4.0
"""8 connections: p99 at most this many times their p50."""
TARGET_LOG_COST_P50_MS = 0.2
LOG_COST_BLOCKS = 10
WRK_SCRIPT = Path(__file__).with_name("wrk_rows.lua")
WRK_SECONDS = 10.0
"""Each closed-loop measurement (the log's cost: twice that per server, in blocks)."""
WARM_UP_SECONDS = 2.0
LOG_FLUSH_PAUSE_S = 1.5
"""After each block: longer than the log's flush interval (1 s), so the write lands in it."""
BUSY_CORES = 0.15
"""Other processes' average use of the cores above which the machine is said to be busy."""
JSON_HEADERS = {"Content-Type": "application/json"}
BODY = "reading the body (preprocess)"
RUN_GROUP = "run_group: schema check, model, fields, response"
ENCODE = "JSON encoding of the response"


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    cpu_ms: float
    """CPU time the server (or, in process, this process) spent per request: unlike wall-clock
    figures, it does not grow when other work on the machine takes the core."""
    p90_ms: float = math.nan
    p999_ms: float = math.nan

    @classmethod
    def of(cls, latencies_s: list[float], requests_per_s: float, cpu_ms: float) -> Figures:
        ms = np.asarray(latencies_s) * 1000
        p50, p90, p99, p999 = (float(v) for v in np.percentile(ms, [50, 90, 99, 99.9]))
        return cls(p50, p99, requests_per_s, cpu_ms, p90, p999)


@dataclass(frozen=True)
class WrkRun:
    """One run of wrk: its counts and its latency quantiles."""

    requests: int
    seconds: float
    quantiles_us: np.ndarray
    """At WRK_QUANTILES evenly spaced levels (the script's)."""


def run_wrk(url: str, bodies: Sequence[bytes | None], connections: int, seconds: float,
            first: int = 0) -> WrkRun:  # fmt: skip
    """wrk on core CLIENT_CPU for `seconds`: `connections` keep-alive connections POSTing
    `bodies` in turn from `first` (GETs for [None]). A socket error or an answer other than
    2xx stops the benchmark, naming the URL."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench-serving needs wrk, the load generator: apt-get install wrk")
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "WRK_OUT": str(Path(folder) / "out.json")}
        if bodies != [None]:
            rotated = [*bodies[first % len(bodies) :], *bodies[: first % len(bodies)]]
            lines = Path(folder) / "bodies.jsonl"
            lines.write_bytes(b"\n".join(b for b in rotated if b is not None) + b"\n")
            env["BODIES"] = str(lines)
        command = ["taskset", "-c", str(CLIENT_CPU), wrk, "-t1", f"-c{connections}",
                   f"-d{seconds:g}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, env=env)
        found = json.loads(Path(env["WRK_OUT"]).read_text())
    if found["socket_errors"] or found["non2xx"] or not found["requests"]:
        raise RuntimeError(
            f"wrk on {url}: {found['requests']} requests, {found['socket_errors']} socket "
            f"errors, {found['non2xx']} answers other than 2xx"
        )
    quantiles = np.asarray(found["quantiles_us"], dtype=float)
    return WrkRun(found["requests"], found["duration_us"] / 1e6, quantiles)


def pooled(runs: Sequence[WrkRun], cpu_ms: float) -> Figures:
    """The figures of several runs together: each run's quantiles weighted by its requests."""
    values = np.concatenate([r.quantiles_us for r in runs]) / 1000.0
    weights = np.concatenate([np.full(len(r.quantiles_us), r.requests / len(r.quantiles_us))
                              for r in runs])  # fmt: skip
    order = np.argsort(values)
    values, cumulative = values[order], np.cumsum(weights[order])
    cumulative /= cumulative[-1]

    def at(level: float) -> float:
        return float(values[min(int(np.searchsorted(cumulative, level)), len(values) - 1)])

    requests, seconds = sum(r.requests for r in runs), sum(r.seconds for r in runs)
    return Figures(at(0.5), at(0.99), requests / seconds, cpu_ms, at(0.9), at(0.999))


@dataclass
class Row:
    """One line of the table: a way of answering, and what was measured of it."""

    path: str
    single: Figures | None = None
    """One single-row request (or call) at a time."""
    concurrent: Figures | None = None
    """CONCURRENCY single-row requests in flight."""
    batch_rows_per_s: float | None = None
    """All the rows in one call."""
    note: str = ""


@dataclass
class LogCost:
    plain: Figures
    logged: Figures
    rows_written: float
    rows_dropped: float

    def text(self) -> str:
        p50 = self.logged.p50_ms - self.plain.p50_ms
        ok = "met" if p50 <= TARGET_LOG_COST_P50_MS else "**MISSED**"
        return (
            f"p50 {p50:+.2f} ms (target <= {TARGET_LOG_COST_P50_MS:g} ms: {ok}), "
            f"p99 {self.logged.p99_ms - self.plain.p99_ms:+.2f} ms, "
            f"server CPU {self.logged.cpu_ms - self.plain.cpu_ms:+.2f} ms per request "
            f"({self.plain.p50_ms:.2f} / {self.logged.p50_ms:.2f} ms p50 without / with; "
            f"rows written {self.rows_written:.0f}, dropped {self.rows_dropped:.0f})"
        )


@dataclass
class Champion:
    project: str
    version: str
    verified: bool
    model_sha256: str
    compiled_note: str
    compiled_sha256: str
    data: str
    data_sha256: str
    rows: int
    file_rows: int
    table: list[Row] = field(default_factory=list)
    compiled_agreement: Agreement | None = None
    served_agreement: Agreement | None = None
    served_path: str = ""
    """What the server's log says answers (its compiled graph's note)."""
    log_cost: LogCost | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)
    round_trip: Figures | None = None
    """This server's liveness route (`GET /`): HTTP, uvicorn and the client, no model work."""
    notes: list[str] = field(default_factory=list)

    def row(self, path: str) -> Row | None:
        return next((r for r in self.table if r.path == path), None)


OURS = {"v1": "this server, v1 (inference log on: the default)", "v2": "this server, v2 (log on)"}
LOG_OFF = {"v1": "this server, v1, log off", "v2": "this server, v2, log off"}


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants, from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        stats[int(entry.name)] = (int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))
    family = {pid}
    while True:
        grown = family | {p for p, (parent, _) in stats.items() if parent in family}
        if grown == family:
            break
        family = grown
    return sum(stats.get(member, (0, 0.0))[1] for member in family)


# --- the machine ------------------------------------------------------------------------------


@dataclass
class MachineLoad:
    """How much CPU other processes took while the benchmark ran: the machine's busy time from
    /proc/stat less this process's and its (waited-for) children's."""

    started: float = field(default_factory=time.perf_counter)
    busy: float = field(default_factory=lambda: MachineLoad.machine_busy_s())
    ours: float = field(default_factory=lambda: MachineLoad.own_cpu_s())
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    @staticmethod
    def machine_busy_s() -> float:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def own_cpu_s() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def text(self) -> str:
        wall = time.perf_counter() - self.started
        others = (self.machine_busy_s() - self.busy) - (self.own_cpu_s() - self.ours)
        cores = max(0.0, others / wall)
        verdict = "BUSY" if cores > BUSY_CORES else "otherwise idle"
        before = " ".join(f"{x:.2f}" for x in self.load_before)
        after = " ".join(f"{x:.2f}" for x in os.getloadavg())
        return (
            f"{verdict}: other processes used {cores:.2f} of the {os.cpu_count()} cores on "
            f"average over the {wall:.0f} s run (load average {before} before, {after} after)"
        )


def wrk_version() -> str:
    found = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    words = (found.stdout or found.stderr).split()
    return " ".join(words[:2]) if words else "wrk"


def git(*args: str) -> str:
    found = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    return found.stdout if found.returncode == 0 else ""


def commit_text() -> str:
    """HEAD, and the files of the code measured that differ from it."""
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    status = git("status", "--porcelain", "--", "serving", "components", "benchmarks/serving.py")
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    return head + (f"; uncommitted changes in {', '.join(changed)}" if changed else "")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# --- rows and request bodies --------------------------------------------------------------------


def real_rows(spec: ProjectSpec, data_dir: Path) -> tuple[pd.DataFrame, Path, str, int]:
    """(the file's rows the server accepts, as the model reads them; the file; its sha256; the
    file's row count), screened with the server's row checks as batch scoring screens a file."""
    from components.core import scoring

    path = data_dir / spec.data_file
    frame, sha256, _ = scoring.read_table(str(path))
    screened = scoring.screen(spec, frame.drop(columns=[spec.target], errors="ignore"), str(path))
    return screened.valid[spec.input_columns].reset_index(drop=True), path, sha256, len(frame)


def json_rows(spec: ProjectSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(k): None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in frame[spec.input_columns].to_dict("records")
    ]


def v1_body(spec: ProjectSpec, frame: pd.DataFrame) -> bytes:
    return json.dumps({"instances": json_rows(spec, frame)}).encode()


def v2_body(spec: ProjectSpec, frame: pd.DataFrame, outputs: list[str] | None = None) -> bytes:
    rows = json_rows(spec, frame)
    inputs = []
    for column in spec.columns:
        numeric = column.dtype in ("float", "int")
        inputs.append(
            {
                "name": column.name,
                "shape": [len(rows)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": [row[column.name] for row in rows],
            }
        )
    body: dict[str, Any] = {"inputs": inputs, "parameters": {"content_type": "pd"}}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(body).encode()


# --- measuring ----------------------------------------------------------------------------------


def measure_calls(
    call: Callable[[pd.DataFrame], object], frames: Sequence[pd.DataFrame]
) -> Figures:
    """One call per frame, in this process, after a warm-up."""
    for frame in frames[: max(20, len(frames) // 10)]:
        call(frame)
    latencies = []
    started, cpu_before = time.perf_counter(), time.process_time()
    for frame in frames:
        start = time.perf_counter()
        call(frame)
        latencies.append(time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu_before) * 1000 / len(frames)
    return Figures.of(latencies, len(frames) / (time.perf_counter() - started), cpu_ms)


def p50_ms(call: Callable[[], object], calls: int) -> float:
    for _ in range(max(20, calls // 10)):
        call()
    found = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        found.append(time.perf_counter() - start)
    return float(np.percentile(np.asarray(found) * 1000, 50))


def measure_http(
    url: str, bodies: Sequence[bytes | None], server_pid: int, connections: int
) -> Figures:
    """wrk for WRK_SECONDS after a warm-up of WARM_UP_SECONDS, closed loop: each connection
    sends its next request when the last is answered."""
    run_wrk(url, bodies, connections, WARM_UP_SECONDS)
    cpu_before = tree_cpu_seconds(server_pid)
    run = run_wrk(url, bodies, connections, WRK_SECONDS)
    cpu_ms = (tree_cpu_seconds(server_pid) - cpu_before) * 1000 / run.requests
    return pooled([run], cpu_ms)


def metric_value(server: ServerProcess, name: str, project: str) -> float:
    import httpx

    for line in httpx.get(server.url + "/metrics", timeout=10.0).text.splitlines():
        if line.startswith(f'{name}{{project="{project}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def sequential_with_log(
    spec: ProjectSpec, plain: ServerProcess, logged: ServerProcess, bodies: list[bytes]
) -> LogCost:
    """Single-row v1 requests over one connection to the server without and with the
    inference log, in LOG_COST_BLOCKS alternating blocks of the same bodies, a pause after
    each (so that one server's log write is not charged to the other, on the same core)."""
    servers = {"plain": plain, "logged": logged}
    path = f"/v1/models/{spec.name}:predict"
    block = WRK_SECONDS / LOG_COST_BLOCKS * 2
    for server in servers.values():  # warm-up
        run_wrk(server.url + path, bodies, 1, WARM_UP_SECONDS)
    time.sleep(LOG_FLUSH_PAUSE_S)
    runs: dict[str, list[WrkRun]] = {name: [] for name in servers}
    cpu = dict.fromkeys(servers, 0.0)
    for index in range(LOG_COST_BLOCKS):
        for name, server in servers.items():
            before = tree_cpu_seconds(server.process.pid)
            runs[name].append(run_wrk(server.url + path, bodies, 1, block, index * 97))
            time.sleep(LOG_FLUSH_PAUSE_S)
            cpu[name] += tree_cpu_seconds(server.process.pid) - before
    figures = {
        name: pooled(runs[name], cpu[name] * 1000 / sum(r.requests for r in runs[name]))
        for name in servers
    }
    written = metric_value(logged, "mlops_inference_log_records_total", spec.name)
    dropped = metric_value(logged, "mlops_inference_log_dropped_total", spec.name)
    return LogCost(figures["plain"], figures["logged"], written, dropped)


# --- the equality check -------------------------------------------------------------------------


def served_agreement(
    spec: ProjectSpec,
    server: ServerProcess,
    rows: pd.DataFrame,
    expected: np.ndarray,
    threshold: float,
) -> Agreement:
    """This server's v1 answers on every row, CHECK_BATCH a request, against `expected`
    (`model_output` of the sklearn pipeline): the largest difference of the output and, for a
    binary task, the rows whose decision differs from the pipeline's at the threshold."""
    import httpx

    url = f"{server.url}/v1/models/{spec.name}:predict"
    answers: list[dict[str, Any]] = []
    with httpx.Client(timeout=120.0) as client:
        for start in range(0, len(rows), CHECK_BATCH):
            body = v1_body(spec, rows.iloc[start : start + CHECK_BATCH])
            response = client.post(url, content=body, headers=JSON_HEADERS)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
            answers.extend(response.json()["predictions"])
    if len(answers) != len(rows):
        raise RuntimeError(f"{url} answered {len(answers)} rows of {len(rows)}")
    task = spec.task
    served = np.array([a[task.explained_field] for a in answers], dtype=float)
    differ = 0
    if task.decision:
        wanted = task.columns(expected, threshold)[task.decision]
        decisions = np.array([a[task.decision] for a in answers], dtype=object)
        differ = int(np.sum(decisions != wanted.astype(object)))
    tolerance = (
        compiled_graph.PROBABILITY_TOLERANCE
        if task.probabilistic
        else compiled_graph.PRICE_TOLERANCE
    )
    difference = float(np.max(np.abs(served - expected))) if len(rows) else 0.0
    if not np.all(np.isfinite(served)):
        difference = math.inf
    return Agreement(len(rows), difference, tolerance, differ)


def served_note(server: ServerProcess, project: str) -> str:
    """The server's own line on what answers (the compiled graph's note), from its log."""
    pattern = re.compile(rf"loaded {re.escape(project)} model from .*?; (.*)\)\s*$")
    for line in server.log_tail(200_000).splitlines():
        found = pattern.search(line)
        if found:
            return found.group(1)
    return "not found in the server's log"


# --- where a single-row request's time goes -----------------------------------------------------


def stages(
    spec: ProjectSpec, predictor: Any, frame: pd.DataFrame, calls: int
) -> list[tuple[str, float]]:
    """In-process p50 of each stage of one single-row v1 request inside the predictor."""
    import orjson

    from serving.inputs import validate_group

    loaded = predictor.loaded
    payload = {"instances": json_rows(spec, frame)}
    parsed = predictor.preprocess(payload)
    model_frame, _ = validate_group(spec, [parsed])
    found = [
        (BODY, p50_ms(lambda: predictor.preprocess(payload), calls)),
        ("schema check and model frame", p50_ms(lambda: validate_group(spec, [parsed]), calls)),
    ]
    graph = loaded.compiled
    if graph is not None:
        feed = graph.feed(model_frame)
        found.append(
            (
                "feature step and graph inputs (compiled feed)",
                p50_ms(lambda: graph.feed(model_frame), calls),
            )
        )
        found.append(
            (
                "ONNX Runtime run",
                p50_ms(lambda: graph.session.run([graph.output_name], feed), calls),
            )
        )
        if graph.tail is not None:
            middle = np.asarray(graph.session.run([graph.output_name], feed)[0])
            tail = graph.tail
            found.append(
                (
                    f"{type(tail).__name__} after the graph",
                    p50_ms(lambda: tail.predict_proba(middle), calls),
                )
            )
        found.append(
            ("model output, all of it (compiled)", p50_ms(lambda: graph.output(model_frame), calls))
        )
    else:
        found.append(
            (
                "model output (sklearn pipeline)",
                p50_ms(lambda: spec.task.model_output(loaded.model, model_frame), calls),
            )
        )
    whole = p50_ms(lambda: predictor.run_group([parsed]), calls)
    found.append((RUN_GROUP, whole))
    # as FastAPI's ORJSONResponse encodes it
    response = predictor.run_group([parsed])[0]
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    encode = p50_ms(lambda: orjson.dumps(response, option=option), calls)
    found.append((ENCODE, encode))
    return found


# --- MLServer -----------------------------------------------------------------------------------


def mlserver_python() -> Path | None:
    """MLServer's own venv (created on first use with uv), or None if it cannot be installed."""
    python = MLSERVER_VENV / "bin" / "python"
    if python.is_file():
        return python
    from importlib.metadata import PackageNotFoundError, version

    # what unpickling the champions needs, at this venv's versions
    pins = []
    for name in ("scikit-learn", "pandas", "numpy", "scipy", "imbalanced-learn", "catboost"):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    # MLServer 1.7's worker processes call asyncio.get_event_loop(), which uvloop 0.22+ refuses
    pins.append("uvloop==0.21.0")
    try:
        subprocess.run(["uv", "venv", "-q", str(MLSERVER_VENV), "--python", "3.11"], check=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                f"mlserver=={MLSERVER_VERSION}",
                f"mlserver-sklearn=={MLSERVER_VERSION}",
                *pins,
            ],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"MLServer could not be installed ({exc}); benchmarking without it", file=sys.stderr)
        shutil.rmtree(MLSERVER_VENV, ignore_errors=True)
        return None
    return python


def start_mlserver(
    spec: ProjectSpec, model: Any, python: Path, parallel_workers: int | None
) -> ServerProcess:
    """MLServer on core SERVER_CPU; `parallel_workers` None keeps its default (1 worker process)."""
    import joblib

    folder = STATE / "mlserver" / spec.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    port = free_port()
    settings: dict[str, Any] = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": spec.name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    log_path = STATE / "logs" / f"mlserver-{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(SERVER_CPU),
                str(python.parent / "mlserver"),
                "start",
                str(folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
            cwd=folder,
        )
    return ServerProcess(f"mlserver {spec.name}", port, process, log_path)


def bench_mlserver(
    spec: ProjectSpec, model: Any, python: Path, singles: list[pd.DataFrame], requests: int
) -> tuple[list[Row], list[str]]:
    rows, notes = [], []
    outputs = ["predict_proba"] if spec.task.probabilistic else None
    bodies = [v2_body(spec, frame, outputs) for frame in singles]
    for workers, label in ((None, "defaults"), (0, "parallel_workers=0")):
        path = f"MLServer {MLSERVER_VERSION} sklearn runtime ({label}), v2"
        server = start_mlserver(spec, model, python, workers)
        try:
            # with worker processes, MLServer is ready before its model is: ask for the model
            server.wait_ready(path=f"/v2/models/{spec.name}/ready")
            url = f"{server.url}/v2/models/{spec.name}/infer"
            pid = server.process.pid
            single = measure_http(url, bodies, pid, 1)
            concurrent = measure_http(url, bodies, pid, CONCURRENCY)
            rows.append(Row(path, single, concurrent))
        except (RuntimeError, TimeoutError) as exc:
            rows.append(Row(path, note="failed (see notes)"))
            notes.append(f"{path} failed: {str(exc)[:1500]}")
        finally:
            server.stop()
    return rows, notes


def in_process(
    bench: Champion,
    spec: ProjectSpec,
    predictor: Any,
    rows: pd.DataFrame,
    singles: list[pd.DataFrame],
    requests: int,
) -> None:
    """The sklearn pipeline and the compiled path in this process, one row at a time and all
    rows at once, the compiled path checked on all rows, and the predictor's stages."""
    loaded = predictor.loaded
    graph = loaded.compiled

    def sklearn(frame: pd.DataFrame) -> np.ndarray:
        return spec.task.model_output(loaded.model, frame)

    seconds = timed(lambda: sklearn(rows), BATCH_REPEATS)
    bench.table.append(
        Row(
            "in-process sklearn pipeline",
            measure_calls(sklearn, singles),
            None,
            len(rows) / seconds,
        )
    )
    compiled_path = "in-process compiled (ONNX Runtime, 1 thread)"
    if graph is not None:
        bench.compiled_agreement = compiled_graph.agreement(spec, loaded.model, graph, rows)
        seconds = timed(lambda: graph.output(rows), BATCH_REPEATS)
        figures = measure_calls(graph.output, singles)
        bench.table.append(Row(compiled_path, figures, None, len(rows) / seconds))
    else:
        bench.table.append(Row(compiled_path, note=f"no graph: {loaded.compiled_note}"))
    bench.stages = stages(spec, predictor, singles[0], requests)


# --- one champion -------------------------------------------------------------------------------


def bench_champion(
    spec: ProjectSpec, data_dir: Path, tracking: str, requests: int, mlserver: Path | None
) -> Champion:
    from components.core import scoring
    from components.core.loading import Verification
    from serving.predictor import ProjectPredictor

    pinned = scoring.pin(spec, allow_unverified=True)
    check = Verification(
        pinned.model_file_sha256, require=True, expected_from="the digest pinned for the benchmark"
    )
    # loaded as the server loads it (one ONNX Runtime thread), with its warm-ups
    predictor = ProjectPredictor(spec.name, pinned.uri, verification=check)
    predictor.load()
    loaded = predictor.loaded
    assert loaded is not None
    rows, path, sha256, file_rows = real_rows(spec, data_dir)
    graph = loaded.compiled
    bench = Champion(
        spec.name,
        pinned.version,
        pinned.verified,
        pinned.model_file_sha256,
        loaded.compiled_note,
        graph.graph_sha256 if graph is not None else "",
        str(path),
        sha256,
        len(rows),
        file_rows,
    )
    picked = rows.sample(min(requests, len(rows)), random_state=0).index
    singles = [rows.iloc[[i]] for i in picked]
    threshold = loaded.threshold if loaded.threshold is not None else 0.5
    expected = spec.task.model_output(loaded.model, rows)

    # in process, on the server's core, with one OpenMP thread as the server has
    os.sched_setaffinity(0, {SERVER_CPU})
    with threadpool_limits(1):
        in_process(bench, spec, predictor, rows, singles, requests)

    # over HTTP, this process on the other core
    os.sched_setaffinity(0, {CLIENT_CPU})
    logs = STATE / "logs"
    digest = ["--model_sha256", pinned.model_file_sha256]
    env = {"MLFLOW_TRACKING_URI": tracking}
    log_root = STATE / "inference-log" / spec.name
    shutil.rmtree(log_root, ignore_errors=True)
    plain = launch(
        spec.name,
        pinned.uri,
        logs / f"{spec.name}-server.log",
        cpu=SERVER_CPU,
        extra_args=digest,
        env=env,
    )
    logged = launch(
        spec.name,
        pinned.uri,
        logs / f"{spec.name}-server-logged.log",
        cpu=SERVER_CPU,
        extra_args=digest,
        env=env,
        inference_log=log_root,
    )
    try:
        plain.wait_ready(600)
        logged.wait_ready(600)
        bench.served_path = served_note(plain, spec.name)
        v1 = [v1_body(spec, frame) for frame in singles]
        v2 = [v2_body(spec, frame) for frame in singles]
        bench.log_cost = sequential_with_log(spec, plain, logged, v1)
        routes = {"v1": f"/v1/models/{spec.name}:predict", "v2": f"/v2/models/{spec.name}/infer"}
        bodies = {"v1": v1, "v2": v2}
        for protocol in ("v1", "v2"):
            # in one run each: the log's blocks, with a pause before each, are for comparing
            for server, label in ((logged, OURS[protocol]), (plain, LOG_OFF[protocol])):
                url, pid = server.url + routes[protocol], server.process.pid
                single = measure_http(url, bodies[protocol], pid, 1)
                concurrent = measure_http(url, bodies[protocol], pid, CONCURRENCY)
                bench.table.append(Row(label, single, concurrent))
        logged.stop()
        bench.served_agreement = served_agreement(spec, plain, rows, expected, threshold)
        bench.round_trip = measure_http(plain.url + "/", [None], plain.process.pid, 1)
    finally:
        logged.stop()
        plain.stop()

    if mlserver is None:
        bench.notes.append("MLServer: not measured (not installed, or --skip-mlserver)")
    else:
        found, notes = bench_mlserver(spec, loaded.model, mlserver, singles, requests)
        bench.table.extend(found)
        bench.notes.extend(notes)
    return bench


# --- the report ---------------------------------------------------------------------------------


def verdict(value: float, ok: bool) -> str:
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return f"{shown} {'met' if ok else '**MISSED**'}"


def cells(figures: Figures | None, *names: str) -> list[str]:
    """The named figures with their digits (requests/s whole, p99 of many clients to 0.1), or
    dashes when not measured."""
    digits = {"requests_per_s": 0}
    return [
        "-" if figures is None else f"{getattr(figures, name):,.{digits.get(name, 2)}f}"
        for name in names
    ]


def time_split(bench: Champion) -> list[tuple[str, float]]:
    """The predictor's stages, then the HTTP p50 split into the predictor's part, a bare round
    trip to the server and the rest (routing, middlewares, the event loop)."""
    v1 = bench.row(LOG_OFF["v1"])  # the stages are timed without the log
    http = v1.single.p50_ms if v1 is not None and v1.single is not None else math.nan
    trip = bench.round_trip.p50_ms if bench.round_trip is not None else math.nan
    inside = dict(bench.stages)
    outside = http - sum(inside.get(name, 0.0) for name in (BODY, RUN_GROUP, ENCODE))
    return [
        *bench.stages,
        ("HTTP v1 single-row p50 (log off)", http),
        ("of which outside the predictor (less reading, run_group, JSON encoding)", outside),
        ("of that, a round trip to `GET /` (uvicorn, loopback, wrk)", trip),
        ("the rest: FastAPI and KServe's predict route, middlewares, event loop", outside - trip),
    ]


def best_mlserver(bench: Champion) -> Row | None:
    """The MLServer configuration with the most requests/s at CONCURRENCY connections."""
    measured = [r for r in bench.table if r.path.startswith("MLServer") and r.concurrent]
    return max(measured, key=lambda r: r.concurrent.requests_per_s if r.concurrent else 0.0,
               default=None)  # fmt: skip


def ahead(ours: Row, rival: Row | None) -> str:
    """Which of p50, p99 (one connection) and requests/s, p99 (CONCURRENCY) beat MLServer's."""
    if rival is None or rival.single is None or rival.concurrent is None:
        return "MLServer not measured"
    assert ours.single is not None and ours.concurrent is not None
    behind = [
        name
        for name, won in (
            ("p50", ours.single.p50_ms < rival.single.p50_ms),
            ("p99", ours.single.p99_ms < rival.single.p99_ms),
            (
                f"{CONCURRENCY}-conn req/s",
                ours.concurrent.requests_per_s > rival.concurrent.requests_per_s,
            ),
            (f"{CONCURRENCY}-conn p99", ours.concurrent.p99_ms < rival.concurrent.p99_ms),
        )
        if not won
    ]
    return "met" if not behind else f"**MISSED** ({', '.join(behind)})"


def markdown(champions: list[Champion], provenance: list[str]) -> str:
    lines = ["# Serving benchmark: the registered champions", "", *provenance, ""]
    lines += [
        "Single row: one request (or call) at a time, over one keep-alive connection. "
        f"{CONCURRENCY} conns: single-row requests in flight at once, one per connection (wrk, "
        "closed loop). All rows: the whole screened file in one call. CPU: of the server's "
        "processes (in process: of this one) per single-row request.",
        "",
        "| champion | path | single row p50 ms | p90 ms | p99 ms | p99.9 ms | CPU ms | "
        f"{CONCURRENCY} conns req/s | {CONCURRENCY} conns p50 ms | {CONCURRENCY} conns p99 ms "
        "| all rows, rows/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for bench in champions:
        name = f"{bench.project} v{bench.version}"
        for row in bench.table:
            single, concurrent = row.single, row.concurrent
            rows_per_s = rate(row.batch_rows_per_s) if row.batch_rows_per_s else "-"
            if single is None and concurrent is None:
                lines.append(f"| {name} | {row.path}: {row.note} |" + " - |" * 9)
                continue
            found = [
                *cells(single, "p50_ms", "p90_ms", "p99_ms", "p999_ms", "cpu_ms"),
                *cells(concurrent, "requests_per_s", "p50_ms", "p99_ms"),
            ]
            lines.append(f"| {name} | {row.path} | {' | '.join(found)} | {rows_per_s} |")
    lines += [
        "",
        f"Targets for this server, per champion and protocol: one connection p50 <= "
        f"{TARGET_P50_MS:g} ms and p99 <= {TARGET_P99_MS:g} ms; {CONCURRENCY} connections >= "
        f"{TARGET_CONCURRENT_RPS:,.0f} req/s with p99 <= {TARGET_CONCURRENT_TAIL:g}x their p50; "
        "each figure ahead of the better MLServer configuration's in the same run.",
        "",
        f"| champion | protocol | p50 ms (<= {TARGET_P50_MS:g}) | p99 ms (<= {TARGET_P99_MS:g}) "
        f"| {CONCURRENCY} conns req/s (>= {TARGET_CONCURRENT_RPS:,.0f}) "
        f"| {CONCURRENCY} conns p99 / p50 (<= {TARGET_CONCURRENT_TAIL:g}) | ahead of MLServer |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench in champions:
        rival = best_mlserver(bench)
        for protocol, path in OURS.items():
            ours = bench.row(path)
            if ours is None or ours.single is None or ours.concurrent is None:
                lines.append(f"| {bench.project} | {protocol} | not measured | | | | |")
                continue
            s, c = ours.single, ours.concurrent
            tail = c.p99_ms / c.p50_ms
            lines.append(
                f"| {bench.project} v{bench.version} | {protocol} "
                f"| {verdict(s.p50_ms, s.p50_ms <= TARGET_P50_MS)} "
                f"| {verdict(s.p99_ms, s.p99_ms <= TARGET_P99_MS)} "
                f"| {verdict(c.requests_per_s, c.requests_per_s >= TARGET_CONCURRENT_RPS)} "
                f"| {verdict(tail, tail <= TARGET_CONCURRENT_TAIL)} | {ahead(ours, rival)} |"
            )
    lines += [
        "",
        "Answers against the MLflow sklearn pipeline's `model_output` on every screened row of "
        f"the file (served: v1, {CHECK_BATCH} instances a request; probabilities within "
        f"{compiled_graph.PROBABILITY_TOLERANCE:g} and the same decisions at the threshold, prices "
        f"within {compiled_graph.PRICE_TOLERANCE:g} USD):",
        "",
        "| champion | rows (of the file's) | this server | in-process compiled path |",
        "|---|---:|---|---|",
    ]
    for bench in champions:

        def agreed(found: Agreement | None) -> str:
            if found is None:
                return "not checked"
            return f"{'equal' if found.matches else '**DIFFERENT**'}: {found.text()}"

        lines.append(
            f"| {bench.project} v{bench.version} | {bench.rows:,} ({bench.file_rows:,}) "
            f"| {agreed(bench.served_agreement)} | {agreed(bench.compiled_agreement)} |"
        )
    lines += ["", "The champions:", ""]
    for bench in champions:
        vouched = (
            "verified by its model_file_sha256 tag"
            if bench.verified
            else "UNVERIFIED: the version has no model_file_sha256 tag, so the file's digest was "
            "pinned when the run started"
        )
        graph = (
            f"compiled graph sha256 {bench.compiled_sha256[:12]}: " if bench.compiled_sha256 else ""
        )
        lines.append(
            f"- {bench.project} v{bench.version}: model file sha256 {bench.model_sha256[:12]} "
            f"({vouched}); {graph}{bench.compiled_note}. The server: {bench.served_path}. "
            f"Data: {bench.data} (sha256 {bench.data_sha256[:12]})."
        )
        if bench.log_cost is not None:
            lines.append(
                f"  Inference log's cost (v1, sequential, alternating blocks): {bench.log_cost.text()}."
            )
        lines.extend(f"  {note}" for note in bench.notes)
    split = {bench.project: time_split(bench) for bench in champions}
    names = list(dict.fromkeys(name for found in split.values() for name, _ in found))
    lines += [
        "",
        "Where one single-row v1 request's time goes (p50 ms): the predictor's stages timed in "
        "process (they nest: the model lines are parts of run_group), next to the HTTP p50 "
        "measured above and a round trip to the server's liveness route, which does no model "
        "work:",
        "",
        "| stage | " + " | ".join(f"{b.project} v{b.version}" for b in champions) + " |",
        "|---|" + "---:|" * len(champions),
    ]
    for name in names:
        values = [dict(split[bench.project]).get(name) for bench in champions]
        shown = ["-" if v is None else "< 0.001" if 0 <= v < 0.001 else f"{v:.3f}" for v in values]
        lines.append(f"| {name} | {' | '.join(shown)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = champion_benchmark_parser(__doc__, prog="python -m benchmarks.serving")
    parser.add_argument(
        "--requests", type=int, default=1000, help="single-row requests per measurement"
    )
    parser.add_argument("--skip-mlserver", action="store_true")
    args = parser.parse_args(argv)
    names = project_list(args.project)
    if len(os.sched_getaffinity(0)) < 2:
        print(
            "the benchmark needs two cores: one for the server, one for the load", file=sys.stderr
        )
        return 2
    absent = [str(args.data_dir / PROJECTS[n].data_file) for n in names]
    absent = [p for p in absent if not Path(p).is_file()]
    if absent:
        print(f"real data not found: {', '.join(absent)} (set --data-dir)", file=sys.stderr)
        return 2
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    mlflow.set_tracking_uri(args.tracking_uri)
    STATE.mkdir(parents=True, exist_ok=True)
    load = MachineLoad()
    started = dt.datetime.now(dt.UTC)
    commit = commit_text()  # the code the servers start from
    allowed = os.sched_getaffinity(0)
    python = None if args.skip_mlserver else mlserver_python()
    champions = []
    try:
        for name in names:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            champions.append(
                bench_champion(
                    PROJECTS[name], args.data_dir, args.tracking_uri, args.requests, python
                )
            )
    finally:
        os.sched_setaffinity(0, allowed)
    command = shlex.join(
        ["python", "-m", "benchmarks.serving", *(sys.argv[1:] if argv is None else argv)]
    )
    via_make = " (run by `make bench-serving`)" if os.environ.get("MAKELEVEL") else ""
    now = commit_text()
    provenance = [
        f"- command: `{command}`{via_make}",
        f"- data: {', '.join(f'{b.data} ({b.rows:,} rows kept of {b.file_rows:,})' for b in champions)}",
        f"- models: {', '.join(f'models:/{b.project}@champion = v{b.version}' for b in champions)} "
        f"in {args.tracking_uri}",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; commit {commit}"
        + ("" if now == commit else f" (at the end: {now})"),
        f"- machine: {os.cpu_count()} cores ({cpu_model()}); servers on core {SERVER_CPU}, "
        f"in-process figures on core {SERVER_CPU}, load generator ({wrk_version()}) on core "
        f"{CLIENT_CPU}, {WRK_SECONDS:g} s per measurement after {WARM_UP_SECONDS:g} s of "
        f"warm-up; in process, {args.requests} single-row calls",
        f"- machine load: {load.text()}",
    ]
    text = markdown(champions, provenance)
    (STATE / "serving.md").write_text(text)
    print(text)
    print(f"(written to {STATE / 'serving.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

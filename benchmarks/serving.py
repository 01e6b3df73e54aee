"""Latency and throughput of the predictor next to the in-process floor and MLServer.

`python -m benchmarks.serving --project telecom [--model-uri DIR] [--candidate NAME] [--data-dir DIR]`

The server under test is pinned to core 0 (`taskset -c 0`); this process, which generates load
over HTTP on 127.0.0.1 with aiohttp, runs on core 1. Latency (p50, p99) is measured with one
request in flight, throughput with CONCURRENCY requests in flight. The floor is the same
pipeline's `predict_proba` (or `predict`) on a ready DataFrame, in this process, on core 0.
MLServer 1.7 with its sklearn runtime runs in its own venv (it pins fastapi<0.116) and serves the
same fitted model, dumped with joblib, over its v2 route with a pandas-coded request.
The inference log's cost: two servers of the same model on core 0, one logging what it answers
and one not, take single-instance v1 requests one at a time, in alternating blocks (after each
block a pause lets the log write, so that its writing is not charged to the other server).
The Markdown table goes to .state/bench/serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd

from components.core import ingest, train
from components.core.spec import ProjectSpec
from tests.support.data import real_data_dir
from tests.support.models import save
from tests.support.servers import REPO_ROOT, ServerProcess, free_port, launch, server_env

STATE = REPO_ROOT / ".state" / "bench"
MLSERVER_VENV = STATE / "mlserver-venv"
MLSERVER_VERSION = "1.7.1"
SERVER_CPU, CLIENT_CPU = 0, 1
CONCURRENCY = 8
TARGET_P50_OVER_FLOOR_MS = 3.0
TARGET_P99_MS = 15.0
TARGET_THROUGHPUT_RATIO = 1.2
TARGET_LOG_COST_P50_MS = 0.3
LOG_COST_BLOCKS = 10
LOG_FLUSH_PAUSE_S = 1.5
"""After each block: longer than the log's flush interval (1 s), so the write lands in it."""


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    cpu_ms: float
    """CPU time the server (or, in process, this process) spent per request: unlike wall-clock
    figures, it does not grow when other work on the machine takes the core."""

    @classmethod
    def of(cls, latencies_s: list[float], requests_per_s: float, cpu_ms: float) -> Figures:
        ms = np.asarray(latencies_s) * 1000
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        return cls(p50, p99, requests_per_s, cpu_ms)


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


@dataclass
class Row:
    system: str
    batch: int
    figures: Figures | None
    note: str = ""


@dataclass
class Bench:
    project: str
    model_source: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_cost: LogCost | None = None

    def figures(self, system: str, batch: int) -> Figures | None:
        return next((r.figures for r in self.rows if r.system == system and r.batch == batch), None)


# --- the model ------------------------------------------------------------------------------


def data_frame(spec: ProjectSpec, data_dir: Path) -> tuple[pd.DataFrame, str]:
    path = data_dir / spec.data_file
    if path.is_file():
        frame, _ = ingest.load(spec, str(path))
        return frame, f"real data ({path})"
    frame, _ = ingest.load(spec, "synthetic")
    return frame, f"SYNTHETIC data ({path} not found)"


def prepare_model(
    spec: ProjectSpec, model_uri: str | None, candidate: str | None, data_dir: Path
) -> tuple[str, Any, pd.DataFrame, str]:
    """(model uri, fitted model, rows to send, where the model came from)."""
    from components.core.loading import load

    frame, data_source = data_frame(spec, data_dir)
    split = ingest.split(spec, frame, test_size=0.2, seed=42)
    if model_uri:
        return (
            model_uri,
            load(spec, model_uri).model,
            split.test,
            f"{model_uri}; requests from {data_source}",
        )
    narrowed = spec
    if candidate:
        narrowed = dataclasses.replace(spec, candidates=(spec.candidate(candidate),))
    result = train.train(narrowed, split.train, seed=42, trials_per_candidate=1, time_budget_s=60)
    target = STATE / f"model-{spec.name}"
    shutil.rmtree(target, ignore_errors=True)
    save(spec, result.model, split.train, target)
    source = f"trained here on {data_source}: {result.best.candidate}, 1 trial per candidate"
    return str(target), load(spec, str(target)).model, split.test, source


# --- load generation ------------------------------------------------------------------------


async def _drive(
    url: str, body: bytes, requests: int, concurrency: int, headers: dict[str, str]
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(
                            f"{url} answered {response.status}: {await response.text()}"
                        )
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, requests / elapsed


def measure_http(url: str, body: bytes, requests: int, server_pid: int) -> Figures:
    headers = {"Content-Type": "application/json"}
    asyncio.run(_drive(url, body, max(50, requests // 10), 1, headers))  # warm-up
    cpu_before = tree_cpu_seconds(server_pid)
    latencies, _ = asyncio.run(_drive(url, body, requests, 1, headers))
    cpu_ms = (tree_cpu_seconds(server_pid) - cpu_before) * 1000 / requests
    _, throughput = asyncio.run(_drive(url, body, requests, CONCURRENCY, headers))
    return Figures.of(latencies, throughput, cpu_ms)


def measure_in_process(call: Callable[[], Any], requests: int) -> Figures:
    for _ in range(max(20, requests // 10)):
        call()
    latencies = []
    started, cpu_before = time.perf_counter(), time.process_time()
    for _ in range(requests):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu_before) * 1000 / requests
    return Figures.of(latencies, requests / (time.perf_counter() - started), cpu_ms)


@dataclass
class LogCost:
    plain: Figures
    logged: Figures
    rows_written: float
    rows_dropped: float
    requests: int

    def lines(self) -> list[str]:
        p50 = self.logged.p50_ms - self.plain.p50_ms
        p99 = self.logged.p99_ms - self.plain.p99_ms
        cpu = self.logged.cpu_ms - self.plain.cpu_ms
        ok = "met" if p50 <= TARGET_LOG_COST_P50_MS else "MISSED"
        return [
            "",
            f"The inference log's cost (v1, one instance per request, one request in flight, "
            f"{self.requests} requests to each server in {LOG_COST_BLOCKS} alternating blocks):",
            "",
            "| server | p50 ms | p99 ms | server CPU ms per request |",
            "|---|---:|---:|---:|",
            f"| without the log | {self.plain.p50_ms:.2f} | {self.plain.p99_ms:.2f} "
            f"| {self.plain.cpu_ms:.2f} |",
            f"| with the log | {self.logged.p50_ms:.2f} | {self.logged.p99_ms:.2f} "
            f"| {self.logged.cpu_ms:.2f} |",
            f"| difference | {p50:+.2f} | {p99:+.2f} | {cpu:+.2f} |",
            "",
            f"- log cost at p50: {p50:+.3f} ms (target <= {TARGET_LOG_COST_P50_MS:g} ms): {ok}; "
            f"rows written {self.rows_written:.0f}, dropped {self.rows_dropped:.0f}",
        ]


def metric_value(server: ServerProcess, name: str, project: str) -> float:
    import httpx

    for line in httpx.get(server.url + "/metrics", timeout=10.0).text.splitlines():
        if line.startswith(f'{name}{{project="{project}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def measure_log_cost(
    spec: ProjectSpec, model_uri: str, frame: pd.DataFrame, requests: int
) -> LogCost:
    """The same model served with and without the inference log, measured block by block."""
    root = STATE / "inference-log"
    shutil.rmtree(root, ignore_errors=True)
    plain = launch(spec.name, model_uri, STATE / "server-plain.log", cpu=SERVER_CPU)
    logged = launch(
        spec.name, model_uri, STATE / "server-logged.log", cpu=SERVER_CPU, inference_log=root
    )
    servers = {"plain": plain, "logged": logged}
    try:
        for server in servers.values():
            server.wait_ready()
        body = v1_body(spec, frame)
        headers = {"Content-Type": "application/json"}
        latencies: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, float] = dict.fromkeys(servers, 0.0)
        block = max(1, requests // LOG_COST_BLOCKS)
        for server in servers.values():  # warm-up
            url = f"{server.url}/v1/models/{spec.name}:predict"
            asyncio.run(_drive(url, body, max(50, block), 1, headers))
        time.sleep(LOG_FLUSH_PAUSE_S)
        for _ in range(LOG_COST_BLOCKS):
            for name, server in servers.items():
                url = f"{server.url}/v1/models/{spec.name}:predict"
                before = tree_cpu_seconds(server.process.pid)
                found, _ = asyncio.run(_drive(url, body, block, 1, headers))
                time.sleep(LOG_FLUSH_PAUSE_S)
                cpu[name] += tree_cpu_seconds(server.process.pid) - before
                latencies[name].extend(found)
        done = block * LOG_COST_BLOCKS
        figures = {
            name: Figures.of(latencies[name], math.nan, cpu[name] * 1000 / done) for name in servers
        }
        written = metric_value(logged, "mlops_inference_log_records_total", spec.name)
        dropped = metric_value(logged, "mlops_inference_log_dropped_total", spec.name)
    finally:
        for server in servers.values():
            server.stop()
    return LogCost(figures["plain"], figures["logged"], written, dropped, done)


# --- request bodies -------------------------------------------------------------------------


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


# --- MLServer -------------------------------------------------------------------------------


def mlserver_python() -> Path | None:
    """MLServer's own venv (created on first use with uv), or None if it cannot be installed."""
    python = MLSERVER_VENV / "bin" / "python"
    if python.is_file():
        return python
    import sklearn

    pins = [
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]
    from importlib.metadata import version

    pins += [f"imbalanced-learn=={version('imbalanced-learn')}", f"scipy=={version('scipy')}"]
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
        return None
    return python


def start_mlserver(
    spec: ProjectSpec, model: Any, python: Path, parallel_workers: int | None
) -> ServerProcess:
    """MLServer on core 0; `parallel_workers` None keeps its default (1 worker process)."""
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
    log_path = STATE / "mlserver.log"
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


# --- where the time goes --------------------------------------------------------------------


def breakdown(spec: ProjectSpec, model_uri: str, frame: pd.DataFrame, requests: int) -> list[str]:
    """Per-stage p50 of one single-instance request inside the predictor, without HTTP."""
    import orjson

    from components.core.validate import column_violations
    from serving.inputs import validate_group
    from serving.predictor import ProjectPredictor

    predictor = ProjectPredictor(spec.name, model_uri)
    predictor.load()
    assert predictor.loaded is not None
    model = predictor.loaded.model
    predict = model.predict_proba if spec.task == "binary" else model.predict
    payload = {"instances": json_rows(spec, frame.head(1))}
    parsed = predictor.preprocess(payload)
    model_frame, _ = validate_group(spec, [parsed])
    stages: dict[str, Callable[[], Any]] = {
        "read the body (preprocess)": lambda: predictor.preprocess(payload),
        "schema check and model frame": lambda: validate_group(spec, [parsed]),
        "model (predict_proba / predict)": lambda: predict(model_frame),
        "all of the above but reading, plus the response": lambda: predictor.run_group([parsed]),
        "JSON encoding of the response": lambda: orjson.dumps(predictor.run_group([parsed])[0]),
    }
    lines = []
    for name, call in stages.items():
        lines.append(f"| {name} | {measure_in_process(call, requests).p50_ms:.2f} |")
    column = spec.columns[0]
    series = pd.Series([frame[column.name].iloc[0]], dtype=object)
    figures = measure_in_process(lambda: column_violations(column, series), requests)
    lines.append(
        f"| of which one `column_violations` call (one per column, {len(spec.columns)} columns) "
        f"| {figures.p50_ms:.2f} |"
    )
    return lines


def log_breakdown(spec: ProjectSpec, frame: pd.DataFrame, requests: int) -> list[str]:
    """In-process p50 of the inference log's own work for one answered single-instance request:
    what the request path does (the model frame's columns taken, the row queued) and what the
    writer thread does per row (a record and its JSON line; the file write is per batch)."""
    from components.core.inference_log import utc_now
    from serving.inference_log import Answered, InferenceLogWriter, records
    from serving.inputs import from_v1, validate_group

    parsed = from_v1(spec, {"instances": json_rows(spec, frame.head(1))}, 1)
    model_frame, _ = validate_group(spec, [parsed])
    outputs = {"output": np.array([0.5])}
    # never started: nothing is written, and the queue only grows (by `requests` rows or so)
    writer = InferenceLogWriter(str(STATE / "unused"), spec.name, max_queued=10 * requests + 1000)

    def answered() -> Answered:
        inputs = {name: model_frame[name].to_numpy() for name in spec.input_columns}
        return Answered("id", utc_now(), "1", {k: v[0:1] for k, v in inputs.items()}, outputs, 1)

    def line() -> str:
        return json.dumps(records(spec.name, answered())[0], allow_nan=False, default=str)

    queued = measure_in_process(lambda: writer.submit(answered()), requests).p50_ms
    written = measure_in_process(line, requests).p50_ms
    return [
        f"| inference log, request path: an answered row queued | {queued:.3f} |",
        f"| inference log, writer thread: the row's record and JSON line | {written:.3f} |",
    ]


# --- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Bench:
    from components.core.projects import get_spec

    spec = get_spec(args.project)
    model_uri, model, test, source = prepare_model(
        spec, args.model_uri, args.candidate, args.data_dir
    )
    bench = Bench(spec.name, source)
    bench.notes.append(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.log_cost_only:
        os.sched_setaffinity(0, {CLIENT_CPU})
        one = test.sample(1, random_state=1)  # the single-instance body of the full run
        bench.log_cost = measure_log_cost(spec, model_uri, one, args.requests)
        bench.notes.append(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        bench.notes.extend(bench.log_cost.lines())
        os.sched_setaffinity(0, {SERVER_CPU})
        bench.notes += ["", "| stage (in process) | p50 ms |", "|---|---:|"]
        bench.notes.extend(log_breakdown(spec, one, args.requests))
        return bench
    bodies = {
        batch: test.sample(batch, random_state=batch, replace=len(test) < batch)
        for batch in (1, 100)
    }
    requests = {1: args.requests, 100: max(100, args.requests // 5)}

    # the floor, on the server's core
    os.sched_setaffinity(0, {SERVER_CPU})
    predict = model.predict_proba if spec.task == "binary" else model.predict
    for batch, frame in bodies.items():
        inputs = frame[spec.input_columns]
        figures = measure_in_process(partial(predict, inputs), requests[batch])
        bench.rows.append(Row("in-process pipeline (floor)", batch, figures))
    stages = breakdown(spec, model_uri, test, args.requests)
    stages += log_breakdown(spec, bodies[1], args.requests)
    os.sched_setaffinity(0, {CLIENT_CPU})

    server = launch(spec.name, model_uri, STATE / "server.log", cpu=SERVER_CPU)
    try:
        server.wait_ready()
        for batch, frame in bodies.items():
            for protocol, url, body in (
                ("v1", f"{server.url}/v1/models/{spec.name}:predict", v1_body(spec, frame)),
                ("v2", f"{server.url}/v2/models/{spec.name}/infer", v2_body(spec, frame)),
            ):
                figures = measure_http(url, body, requests[batch], server.process.pid)
                bench.rows.append(Row(f"this predictor, {protocol}", batch, figures))
    finally:
        server.stop()
    bench.log_cost = measure_log_cost(spec, model_uri, bodies[1], args.requests)

    python = None if args.skip_mlserver else mlserver_python()
    if python is None:
        bench.notes.append("MLServer: not measured (not installed, or --skip-mlserver)")
    else:
        for workers, label in ((None, "defaults"), (0, "parallel_workers=0")):
            system = f"MLServer 1.7 sklearn runtime ({label}), v2"
            mlserver = start_mlserver(spec, model, python, workers)
            try:
                # with worker processes, MLServer is ready before its model is: ask for the model
                mlserver.wait_ready(path=f"/v2/models/{spec.name}/ready")
                outputs = ["predict_proba"] if spec.task == "binary" else None
                url = f"{mlserver.url}/v2/models/{spec.name}/infer"
                for batch, frame in bodies.items():
                    body = v2_body(spec, frame, outputs)
                    figures = measure_http(url, body, requests[batch], mlserver.process.pid)
                    bench.rows.append(Row(system, batch, figures))
            except (RuntimeError, TimeoutError) as exc:
                bench.notes.append(f"{system} failed: {exc}")
            finally:
                mlserver.stop()
    bench.notes.append(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench.notes.extend(verdicts(bench))
    if bench.log_cost is not None:
        bench.notes.extend(bench.log_cost.lines())
    bench.notes.append("")
    bench.notes.append(
        "Where a single-instance request's time goes inside the predictor (p50 ms, no HTTP):"
    )
    bench.notes.append("")
    bench.notes.append("| stage | p50 ms |")
    bench.notes.append("|---|---:|")
    bench.notes.extend(stages)
    return bench


def verdicts(bench: Bench) -> list[str]:
    floor = bench.figures("in-process pipeline (floor)", 1)
    ours = bench.figures("this predictor, v1", 1)
    peers = [
        r for r in bench.rows if r.system.startswith("MLServer") and r.batch == 1 and r.figures
    ]
    lines = ["", "Targets (single-instance requests, v1):", ""]
    if floor and ours:
        over = ours.p50_ms - floor.p50_ms
        ok = "met" if over <= TARGET_P50_OVER_FLOOR_MS else "MISSED"
        lines.append(
            f"- p50 over the floor: {over:.2f} ms (target <= {TARGET_P50_OVER_FLOOR_MS:g} ms): "
            f"{ok}; in server CPU per request: {ours.cpu_ms - floor.cpu_ms:.2f} ms over the floor"
        )
        ok = "met" if ours.p99_ms < TARGET_P99_MS else "MISSED"
        lines.append(f"- p99: {ours.p99_ms:.2f} ms (target < {TARGET_P99_MS:g} ms): {ok}")
    if ours:
        for peer in peers:
            assert peer.figures is not None
            ratio = ours.requests_per_s / peer.figures.requests_per_s
            ok = "met" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSED"
            lines.append(
                f"- throughput vs {peer.system}: {ratio:.2f}x "
                f"(target >= {TARGET_THROUGHPUT_RATIO:g}x): {ok}"
            )
    return lines


def markdown(bench: Bench) -> str:
    lines = [
        f"# Serving benchmark: {bench.project}",
        "",
        f"Model: {bench.model_source}.",
        f"Server on core {SERVER_CPU}, load generator (aiohttp) on core {CLIENT_CPU}; p50/p99 with one "
        f"request in flight, throughput with {CONCURRENCY} in flight.",
        "",
        "| system | instances per request | p50 ms | p99 ms | requests/s | instances/s "
        "| server CPU ms per request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in bench.rows:
        if row.figures is None:
            lines.append(f"| {row.system} | {row.batch} | - | - | - | - | - |")
            continue
        f = row.figures
        lines.append(
            f"| {row.system} | {row.batch} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
            f"{f.requests_per_s:.0f} | {f.requests_per_s * row.batch:.0f} | {f.cpu_ms:.2f} |"
        )
    lines.append("")
    lines.extend(bench.notes)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--project", default="telecom")
    parser.add_argument(
        "--model-uri", default=None, help="serve this model instead of training one"
    )
    parser.add_argument(
        "--candidate", default=None, help="train only this candidate (default: all, 1 trial each)"
    )
    parser.add_argument(
        "--requests", type=int, default=1000, help="single-instance requests per measurement"
    )
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument(
        "--log-cost-only",
        action="store_true",
        help="measure only the inference log's cost (the same server with and without it)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=real_data_dir(),
        help="folder with the real files (default: DATA_DIR, else ../shared/data: %(default)s); "
        "synthetic rows when the project's file is not there",
    )
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print(
            "the benchmark needs two cores: one for the server, one for the load", file=sys.stderr
        )
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = run(args)
    text = markdown(bench)
    (STATE / "serving.md").write_text(text)
    print(text)
    print(f"(written to {STATE / 'serving.md'} in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

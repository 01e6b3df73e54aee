"""What a shadow costs the champion's answers (`make bench-shadow`, .state/bench/shadow.md).

The registered telecom champion (`models:/telecom@champion` in the tracking store, as `make run`
writes it) is copied twice into a registry of the benchmark's own (a SQLite file under
.state/bench), as version 1 (champion) and version 2 (the same model, to be staged), so the
user's registry is left alone. One server (`python -m serving`, pinned to core SERVER_CPU, its
inference log on, following the alias every second) answers single-row v1 requests of the real
file, paced at RATE requests/s by a client on core CLIENT_CPU, over one keep-alive connection:
blocks of BLOCK requests alternate between no staged version and version 2 in shadow (the
registry move made, and seen on the server's /metrics, between blocks). Side by side in the one
run: the champion's p50, p90 and p99 in each mode, and the shadow rows logged. Target: the
shadow adds at most 0.5 ms to the p50.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.serving import CLIENT_CPU, JSON_HEADERS, SERVER_CPU, commit_text, v1_body
from components.core import ingest, rollout
from components.core.contracts import CHAMPION
from components.core.loading import DIGEST_TAG
from components.core.projects import get_spec
from components.core.rollout import Stage
from pipelines.local import default_tracking_uri
from tests.support.data import real_data_dir
from tests.support.servers import launch

STATE = Path(__file__).resolve().parents[1] / ".state" / "bench"
TARGET_P50_MS = 0.5


async def _paced(url: str, bodies: list[bytes], requests: int, rate: float) -> list[float]:
    """`requests` POSTs sent every 1/rate s (or as soon as the last answered), latencies in s."""
    latencies = []
    async with aiohttp.ClientSession(headers=JSON_HEADERS) as session:
        start = time.perf_counter()
        for i in range(requests):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            began = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)]) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            latencies.append(time.perf_counter() - began)
    return latencies


def _staged_on(url: str) -> str:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10.0).text
    return next((line for line in text.splitlines() if line.startswith("mlops_staged_share{")), "")


def _wait(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=real_data_dir())
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--block", type=int, default=1500, help="requests per block")
    parser.add_argument("--blocks", type=int, default=4, help="blocks per mode")
    args = parser.parse_args(argv)
    spec = get_spec("telecom")
    source = args.data_dir / spec.data_file
    if not source.is_file():
        raise SystemExit(f"bench-shadow needs the real {spec.data_file}: {source} is absent")
    mlflow.set_tracking_uri(args.tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(spec.name, CHAMPION)
    digest = (champion.tags or {}).get(DIGEST_TAG, "")
    files = Path(mlflow.artifacts.download_artifacts(f"models:/{spec.name}/{champion.version}"))
    root = Path(tempfile.mkdtemp(prefix="shadow-", dir=STATE if STATE.exists() else None))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    own = mlflow.MlflowClient()
    experiment = own.create_experiment("shadow", artifact_location=str(root / "runs"))
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifacts(str(files), artifact_path="model")
        version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", spec.name).version)
        if digest:
            own.set_model_version_tag(spec.name, version, DIGEST_TAG, digest)
    own.set_registered_model_alias(spec.name, CHAMPION, "1")
    frame, _ = ingest.load(spec, str(source))
    bodies = [v1_body(spec, frame.iloc[[i]]) for i in range(len(frame))]
    extra = ["--refresh_interval", "1"] + ([] if digest else ["--allow-unverified-model"])
    server = launch(spec.name, f"models:/{spec.name}@{CHAMPION}", root / "server.log",
                    cpu=SERVER_CPU, extra_args=extra, env={"MLFLOW_TRACKING_URI": uri},
                    inference_log=root / "inference")  # fmt: skip
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    started = dt.datetime.now(dt.UTC)
    found: dict[str, list[float]] = {"champion alone": [], "champion with a shadow": []}
    try:
        server.wait_ready(timeout=300.0)
        predict = f"{server.url}/v1/models/{spec.name}:predict"
        asyncio.run(_paced(predict, bodies, 300, args.rate))  # warm-up
        for block in range(2 * args.blocks):
            shadow = block % 2 == 1
            mlflow.set_tracking_uri(uri)
            if shadow:
                rollout.stage(spec.name, "2", Stage.SHADOW, reason="bench-shadow")
                _wait(lambda: 'stage="shadow"' in _staged_on(server.url), "the shadow")
            elif block:
                rollout.stage(spec.name, "2", Stage.RETIRED, reason="bench-shadow")
                _wait(lambda: not _staged_on(server.url), "the shadow's end")
            mode = "champion with a shadow" if shadow else "champion alone"
            offset = block * args.block
            found[mode] += asyncio.run(
                _paced(predict, bodies[offset:] + bodies[:offset], args.block, args.rate)
            )
        shadow_rows = _metric(server.url, "mlops_arm_rows_total", 'stage="shadow"')
        dropped = _metric(server.url, "mlops_shadow_dropped_total", "")
    finally:
        os.sched_setaffinity(0, allowed)
        server.stop()
    lines = [
        "| mode | requests | p50 ms | p90 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    p50 = {}
    for mode, latencies in found.items():
        ms = np.asarray(latencies) * 1000
        p50[mode] = float(np.percentile(ms, 50))
        lines.append(f"| {mode} | {len(ms):,} | {p50[mode]:.3f} | "
                     f"{np.percentile(ms, 90):.3f} | {np.percentile(ms, 99):.3f} |")  # fmt: skip
    added = p50["champion with a shadow"] - p50["champion alone"]
    verdict = "met" if added <= TARGET_P50_MS else "NOT met"
    text = "\n".join(
        [
            "# A shadow's cost to the champion's answers",
            "",
            f"`{shlex.join(['python', '-m', 'benchmarks.shadow', *(sys.argv[1:] if argv is None else argv)])}`"
            f"{' (make bench-shadow)' if os.environ.get('MAKELEVEL') else ''}, "
            f"{started:%Y-%m-%d %H:%M} UTC, commit {commit_text()}: the registered "
            f"models:/telecom@champion (v{champion.version} in {args.tracking_uri}) as both "
            f"versions; single-row v1 requests of {source} at {args.rate:g}/s, blocks of "
            f"{args.block:,} alternating; server on core {SERVER_CPU}, client on core "
            f"{CLIENT_CPU}; inference log on.",
            "",
            *lines,
            "",
            f"The shadow added {added:+.3f} ms to the p50 (target: at most {TARGET_P50_MS} ms, "
            f"{verdict}); it scored {shadow_rows:,.0f} rows and skipped {dropped:,.0f}.",
            "",
        ]
    )
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "shadow.md").write_text(text)
    print(text)
    shutil.rmtree(root, ignore_errors=True)
    return 0


def _metric(url: str, name: str, selector: str) -> float:
    import httpx

    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10.0).text.splitlines():
        if line.startswith(name + "{") and selector in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


if __name__ == "__main__":
    raise SystemExit(main())

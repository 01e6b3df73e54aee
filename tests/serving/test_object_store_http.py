"""The inference log on object storage, as on a cluster: a bankchurn server logs what it answers
to `s3://` (a real S3 API on 127.0.0.1, tests/support/object_store.py), and the monitoring
side reads that window back, row for row, from the same URL. Then the store goes down under the
server: every prediction is still answered, the rows it could not log are dropped and counted,
and once the store is back the log is written again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from components.core.inference_log import OUTPUT_PREFIX, PART_SUFFIX, read_window
from tests.serving.support import (
    JSON,
    START_WAIT_SECONDS,
    Served,
    instances,
    metric,
    post,
    wait_until,
)
from tests.support.object_store import ObjectStore, run_object_store
from tests.support.servers import ServerProcess, launch

BUCKET = "mlops-logs"
ROOT = f"s3://{BUCKET}/inference"
FLUSH_WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    found = run_object_store(tmp_path_factory.mktemp("s3"))
    try:
        found.create_bucket(BUCKET)
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def s3_logged(
    store: ObjectStore, served: dict[str, Served], models_root: Path
) -> Iterator[ServerProcess]:
    server = launch(
        "bankchurn",
        served["bankchurn"].model_dir,
        models_root / "logs" / "s3-logged.log",
        inference_log=ROOT,
        # one attempt per write: an outage shows in the counter at once, not after backoffs
        env=store.env | {"AWS_MAX_ATTEMPTS": "1"},
    )
    try:
        server.wait_ready(timeout=START_WAIT_SECONDS)
        yield server
    finally:
        server.stop()


def test_a_server_logs_to_s3_and_monitoring_reads_the_window_back(
    s3_logged: ServerProcess,
    store: ObjectStore,
    served: dict[str, Served],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.use(monkeypatch)
    bankchurn = served["bankchurn"]
    rows = instances(bankchurn.spec, bankchurn.test_frame.head(6))
    sent = {f"s3-{uuid.uuid4().hex[:8]}-{n}": rows[n : n + 2] for n in range(0, 6, 2)}
    answers = {}
    for rid, body in sent.items():
        response = post(
            s3_logged,
            "/v1/models/bankchurn:predict",
            {"instances": body},
            {**JSON, "X-Request-ID": rid},
        )
        assert response.status_code == 200, response.text
        answers[rid] = response.json()["predictions"]

    def logged() -> pd.DataFrame | None:
        frame = read_window(ROOT, "bankchurn")
        mine = frame[frame["request_id"].isin(sent)] if not frame.empty else frame
        return mine if len(mine) == 6 else None

    log = wait_until(logged, FLUSH_WAIT_SECONDS, "the s3:// log's rows", s3_logged)
    import s3fs

    parts = s3fs.S3FileSystem().find(f"{BUCKET}/inference")
    assert parts and all(p.endswith(PART_SUFFIX) for p in parts), parts
    for rid, body in sent.items():
        mine = log[log["request_id"] == rid].sort_values("row")
        assert mine["row"].tolist() == [0, 1]
        assert mine["CreditScore"].tolist() == [row["CreditScore"] for row in body]
        probability = [answer["churn_probability"] for answer in answers[rid]]
        assert mine[f"{OUTPUT_PREFIX}churn_probability"].tolist() == pytest.approx(
            probability, abs=1e-12
        )


def test_the_store_down_drops_and_counts_log_rows_and_no_prediction_fails(
    s3_logged: ServerProcess,
    store: ObjectStore,
    served: dict[str, Served],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.use(monkeypatch)
    rows = instances(served["bankchurn"].spec, served["bankchurn"].test_frame.head(4))

    def predict(prefix: str, requests: int) -> set[str]:
        sent = set()
        for n in range(requests):
            rid = f"{prefix}-{uuid.uuid4().hex[:8]}-{n}"
            answer = post(
                s3_logged, "/v1/models/bankchurn:predict", {"instances": rows},
                {**JSON, "X-Request-ID": rid},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            sent.add(rid)
        return sent

    def dropped() -> float:
        return metric(s3_logged, "mlops_inference_log_dropped_total", project="bankchurn")

    before = dropped()
    store.stack.stop("s3")
    try:
        predict("outage", 20)
        lost = wait_until(
            lambda: dropped() - before >= 20 * len(rows) and dropped() - before,
            FLUSH_WAIT_SECONDS * 2,
            "the rows the server could not log counted as dropped",
            s3_logged,
        )
    finally:
        store.stack.up(only=["s3"])
    assert lost == 20 * len(rows)

    after = predict("back", 3)

    def logged_again() -> bool:
        frame = read_window(ROOT, "bankchurn")
        return not frame.empty and after <= set(frame["request_id"])

    wait_until(logged_again, FLUSH_WAIT_SECONDS, "the log written again once the store is back")
    assert dropped() - before == lost

"""The inference log over real HTTP: a bankchurn server that logs to a folder (`logged`) and one
whose log can neither keep up (a queue of one row) nor write (`dropping`); conftest starts both."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from components.core.inference_log import OUTPUT_PREFIX, keeps, read_window
from serving.__main__ import main
from tests.serving.support import (
    JSON,
    LOGGED_VERSION,
    SAMPLED_RATE,
    START_WAIT_SECONDS,
    Served,
    instances,
    metric,
    post,
    v2_body,
    wait_until,
)
from tests.support.servers import ServerProcess

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
FLUSH_WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def logged(processes: dict[str, ServerProcess]) -> ServerProcess:
    processes["logged"].wait_ready(timeout=START_WAIT_SECONDS)
    return processes["logged"]


def _predict(server: ServerProcess, rows: list[dict[str, Any]], rid: str | None) -> httpx.Response:
    headers = {**JSON, **({"X-Request-ID": rid} if rid is not None else {})}
    return post(server, f"/v1/models/{server.project}:predict", {"instances": rows}, headers)


def _rows(served: dict[str, Served], count: int) -> list[dict[str, Any]]:
    s = served["bankchurn"]
    return instances(s.spec, s.test_frame.head(count))


def _logged_rows(root: str, ids: set[str]) -> pd.DataFrame | None:
    """The log's rows of these request ids, once every one of them is there."""
    frame = read_window(root, "bankchurn")
    if frame.empty:
        return None
    mine = frame[frame["request_id"].isin(ids)]
    return mine if set(mine["request_id"]) == ids else None


def _same(logged: Any, sent: Any) -> bool:
    if sent is None:
        return logged is None or (isinstance(logged, float) and math.isnan(logged))
    return bool(logged == sent)


def test_a_predict_answers_with_the_request_id_it_was_sent_or_a_new_one(
    logged: ServerProcess, served: dict[str, Served]
) -> None:
    rows = _rows(served, 2)
    given = _predict(logged, rows, "abc-1")
    assert given.status_code == 200, given.text
    assert given.headers["X-Request-ID"] == "abc-1"
    first, second = _predict(logged, rows, None), _predict(logged, rows, None)
    assert GENERATED_ID.fullmatch(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    # not an id we keep: spaces, or more than 128 characters
    for unusable in ("two words", "a" * 129):
        answer = _predict(logged, rows, unusable)
        assert GENERATED_ID.fullmatch(answer.headers["X-Request-ID"])
    assert _predict(logged, rows, "a:b.c_d-" + "e" * 120).headers["X-Request-ID"].endswith("e")
    spec = served["bankchurn"].spec
    v2 = post(
        logged,
        "/v2/models/bankchurn/infer",
        v2_body(rows, spec.input_columns),
        {**JSON, "X-Request-ID": "v2-abc"},
    )
    assert v2.status_code == 200, v2.text
    assert v2.headers["X-Request-ID"] == "v2-abc"


def test_the_log_holds_every_answered_row_with_its_request_id_version_inputs_and_outputs(
    logged: ServerProcess, served: dict[str, Served], inference_logs: dict[str, str]
) -> None:
    spec = served["bankchurn"].spec
    rows = _rows(served, 12)
    rows[3]["Tenure"] = None  # a blank, logged as null
    tag = uuid.uuid4().hex[:8]
    rejected_id = f"rejected-{tag}"
    bad = _predict(logged, [rows[0], {**rows[1], "Geography": "Atlantis"}], rejected_id)
    assert bad.status_code == 400

    # sent together, so that the server predicts them as one group
    bodies = {f"v1-{tag}-{n}": rows[a:b] for n, (a, b) in enumerate([(0, 1), (1, 3), (3, 10)])}

    async def together() -> list[httpx.Response]:
        url = f"{logged.url}/v1/models/bankchurn:predict"
        async with httpx.AsyncClient(timeout=60.0) as client:
            return await asyncio.gather(
                *(
                    client.post(url, json={"instances": body}, headers={"X-Request-ID": rid})
                    for rid, body in bodies.items()
                )
            )

    before = dt.datetime.now(dt.UTC)
    answers: dict[str, list[dict[str, Any]]] = {}
    for rid, response in zip(bodies, asyncio.run(together()), strict=True):
        assert response.status_code == 200, response.text
        answers[rid] = response.json()["predictions"]
    v2_id = f"v2-{tag}"
    bodies[v2_id] = rows[10:12]
    v2 = post(
        logged,
        "/v2/models/bankchurn/infer",
        v2_body(bodies[v2_id], spec.input_columns),
        {**JSON, "X-Request-ID": v2_id},
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    answers[v2_id] = [{name: values[i] for name, values in outputs.items()} for i in range(2)]

    root = inference_logs["logged"]
    log = wait_until(
        lambda: _logged_rows(root, set(bodies)), FLUSH_WAIT_SECONDS, "the log's rows", logged
    )
    assert rejected_id not in set(read_window(root, "bankchurn")["request_id"])
    assert len(log) == sum(len(b) for b in bodies.values())
    for rid, body in bodies.items():
        mine = log[log["request_id"] == rid].sort_values("row")
        assert list(mine["row"]) == list(range(len(body)))
        assert set(mine["model_version"]) == {LOGGED_VERSION}
        times = pd.to_datetime(mine["time"], utc=True, format="ISO8601")
        assert (times >= pd.Timestamp(before)).all()
        assert (times <= pd.Timestamp(dt.datetime.now(dt.UTC))).all()
        for (_, entry), sent, answer in zip(mine.iterrows(), body, answers[rid], strict=True):
            for column in spec.input_columns:
                assert _same(entry[column], sent[column]), (rid, column, entry[column])
            assert {k: entry[OUTPUT_PREFIX + k] for k in answer} == answer
    assert pd.isna(log[log["request_id"] == f"v1-{tag}-2"].sort_values("row")["Tenure"].iloc[0])
    whole = [c.name for c in spec.columns if c.dtype == "int" and not c.nullable]
    assert all(pd.api.types.is_integer_dtype(log[c]) for c in whole)  # 42, not 42.0


def test_a_full_or_unwritable_log_drops_rows_and_never_fails_a_request(
    processes: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    """The `dropping` server's queue holds one row and its log root is under a file."""
    server = processes["dropping"]
    server.wait_ready(timeout=START_WAIT_SECONDS)
    rows = _rows(served, 2)

    def dropped() -> float:
        return metric(server, "mlops_inference_log_dropped_total", project="bankchurn")

    before = dropped()

    async def burst() -> list[int]:
        url = f"{server.url}/v1/models/bankchurn:predict"
        async with httpx.AsyncClient(timeout=60.0) as client:
            answers = await asyncio.gather(
                *(client.post(url, json={"instances": rows}) for _ in range(20))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 20
    # two rows never fit a queue of one: each request's rows were dropped as it was answered
    assert dropped() >= before + 40
    # one row fits, and then cannot be written
    for _ in range(3):
        assert _predict(server, rows[:1], None).status_code == 200
    wait_until(lambda: dropped() >= before + 43, FLUSH_WAIT_SECONDS, "dropped rows", server)
    assert metric(server, "mlops_inference_log_records_total", project="bankchurn") == 0
    assert "inference log: cannot write" in server.log_tail(50_000)
    assert server.status("/v2/health/ready") == 200


def test_a_sampled_log_keeps_the_requests_its_rate_chooses_and_says_so_on_every_row(
    processes: dict[str, ServerProcess], served: dict[str, Served], inference_logs: dict[str, str]
) -> None:
    """The `sampled` server logs SAMPLED_RATE of the requests, by a hash of the request id."""
    server = processes["sampled"]
    server.wait_ready(timeout=START_WAIT_SECONDS)
    rows = _rows(served, 2)
    tag = uuid.uuid4().hex[:8]
    ids = [f"s-{tag}-{i}" for i in range(120)]
    for rid in ids:
        assert _predict(server, rows, rid).status_code == 200
    kept = {rid for rid in ids if keeps(rid, SAMPLED_RATE)}
    assert 10 < len(kept) < 50  # about a quarter of 120
    found = wait_until(
        lambda: _logged_rows(inference_logs["sampled"], kept), FLUSH_WAIT_SECONDS, "rows", server
    )
    assert len(found) == 2 * len(kept) and set(found["sample_rate"]) == {SAMPLED_RATE}
    everything = read_window(inference_logs["sampled"], "bankchurn")
    mine = everything[everything["request_id"].str.startswith(f"s-{tag}-")]
    assert set(mine["request_id"]) == kept  # and none of the others
    left_out = metric(server, "mlops_inference_log_sampled_out_total", project="bankchurn")
    assert left_out == 2 * (len(ids) - len(kept))


@pytest.mark.parametrize("rate", ["0", "1.5", "nan"])
def test_a_sample_rate_outside_0_to_1_is_refused(
    rate: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "--model_name",
                "telecom",
                "--model_uri",
                str(tmp_path),
                "--inference_log_sample",
                rate,
            ]
        )
    assert exit_.value.code == 2
    assert "--inference_log_sample" in capsys.readouterr().err

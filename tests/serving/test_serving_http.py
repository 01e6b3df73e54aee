"""The model server over real HTTP on 127.0.0.1: one server process per project (conftest)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from components.core.loading import ModelLoadError, load, single_threaded
from components.core.outputs import risk_bands
from components.core.projects import get_spec
from serving.inputs import MAX_EXPLAIN_INSTANCES, MAX_INSTANCES

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from tests.serving.support import (
    CANDIDATES,
    SLOW_RELEASE,
    Served,
    instances,
    post,
    predict,
    v2_body,
)
from tests.support import data
from tests.support.servers import ServerProcess

# --- start-up and health -------------------------------------------------------------------


def test_readiness_and_predict_answer_503_until_the_model_has_loaded(
    processes: dict[str, ServerProcess], served: dict[str, Served], models_root: Path
) -> None:
    slow = processes["slow"]
    slow.wait_live()  # listening; the model's unpickling waits for the release file
    rows = instances(served["telecom"].spec, served["telecom"].test_frame.head(1))
    assert slow.status("/v2/health/ready") == 503
    assert slow.status("/v1/models/telecom") == 503
    assert slow.status("/v2/models/telecom/ready") == 503
    assert predict(slow, rows).status_code == 503
    assert post(slow, "/v1/models/telecom:explain", {"instances": rows}).status_code == 503
    assert slow.status("/v2/health/live") == 200  # alive while loading: no restart by liveness
    (models_root / SLOW_RELEASE).touch()
    slow.wait_ready()
    assert slow.status("/v1/models/telecom") == 200
    assert predict(slow, rows).status_code == 200
    # "not ready yet" is expected while loading: one INFO line each, no traceback
    log = slow.log_tail(10_000_000)
    not_ready = [line for line in log.splitlines() if "NotReady: " in line]
    assert not_ready
    assert all(" kserve INFO " in line for line in not_ready)
    assert "Traceback" not in log


def test_a_corrupt_model_stops_the_server_with_its_uri_and_cause(
    processes: dict[str, ServerProcess], broken_model_dirs: dict[str, Path]
) -> None:
    process = processes["corrupt"]
    assert process.wait_exit() == 1
    lines = process.log_tail(20_000).splitlines()
    message = next(line for line in lines if line.startswith("error: cannot serve telecom"))
    assert str(broken_model_dirs["corrupt"]) in message
    assert "UnpicklingError" in message


@pytest.mark.parametrize(
    ("uri", "cause"),
    [
        ("{root}/no-such-model", "no such directory"),
        ("{root}", "no MLmodel file"),
        ("models:/telecom", "expected models:/NAME@ALIAS or models:/NAME/VERSION"),
    ],
)
def test_a_model_that_cannot_be_found_is_an_error_naming_the_uri_and_cause(
    uri: str, cause: str, models_root: Path
) -> None:
    uri = uri.format(root=models_root)
    with pytest.raises(ModelLoadError) as error:
        load(get_spec("telecom"), uri)
    assert uri in str(error.value)
    assert cause in str(error.value)


def test_another_projects_model_is_refused(served: dict[str, Served]) -> None:
    with pytest.raises(ModelLoadError, match="lacks the columns"):
        load(get_spec("bankchurn"), str(served["telecom"].model_dir))


# --- predictions ---------------------------------------------------------------------------


@pytest.mark.parametrize("project", list(CANDIDATES))
def test_served_predictions_equal_in_process_predictions_of_the_saved_model(
    project: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    import mlflow.sklearn

    s = served[project]
    frame = s.test_frame.head(60)
    reference = mlflow.sklearn.load_model(str(s.model_dir))
    response = predict(servers[project], instances(s.spec, frame))
    assert response.status_code == 200, response.text
    predictions = pd.DataFrame(response.json()["predictions"])
    expected = s.spec.task.model_output(reference, frame[s.spec.input_columns])
    if project == "carvision":
        np.testing.assert_allclose(predictions["price"], expected, rtol=1e-9)
        return
    labels = np.asarray(reference.predict(frame[s.spec.input_columns]))
    if project == "telecom":
        np.testing.assert_allclose(predictions["ultra_probability"], expected, rtol=1e-9)
        assert list(predictions["recommended_plan"]) == [
            "Ultra" if y else "Standard" for y in labels
        ]
    else:
        np.testing.assert_allclose(predictions["churn_probability"], expected, rtol=1e-9)
        assert list(predictions["churn"]) == labels.tolist()
        bands = risk_bands(expected, float(reference.threshold))
        assert list(predictions["risk_band"]) == list(bands)
        assert (predictions["risk_band"] == "high").tolist() == (labels == 1).tolist()


@pytest.mark.parametrize("project", list(CANDIDATES))
def test_v2_infer_with_one_named_input_per_field_matches_v1(
    project: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served[project]
    rows = instances(s.spec, s.test_frame.head(5))
    server = servers[project]
    v1 = predict(server, rows).json()["predictions"]
    response = post(server, f"/v2/models/{project}/infer", v2_body(rows, s.spec.input_columns))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert set(outputs) == set(v1[0])
    for name, values in outputs.items():
        assert values == [row[name] for row in v1]


def test_fields_outside_the_schema_are_ignored_and_listed(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served["bankchurn"]
    row = instances(s.spec, s.test_frame.head(1))[0]
    plain = predict(servers["bankchurn"], [row]).json()
    extended = predict(servers["bankchurn"], [{**row, "Surname": "Hill", "CustomerId": 1}]).json()
    assert extended["predictions"] == plain["predictions"]
    assert extended["ignored_fields"] == ["CustomerId", "Surname"]
    assert "ignored_fields" not in plain


def test_a_nullable_field_may_be_null_or_left_out(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served["bankchurn"]
    row = instances(s.spec, s.test_frame.head(1))[0]
    with_null = predict(servers["bankchurn"], [{**row, "Tenure": None}])
    left_out = predict(servers["bankchurn"], [{k: v for k, v in row.items() if k != "Tenure"}])
    assert with_null.status_code == left_out.status_code == 200
    assert with_null.json() == left_out.json()


def test_concurrent_requests_each_get_their_own_answer(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    """Requests that arrive together are checked and predicted as one group; each must still get
    the answer (or the 400) it gets alone. Probabilities may differ in the last bits: the model's
    arithmetic depends on the batch size."""
    import asyncio

    s = served["bankchurn"]
    rows = instances(s.spec, s.test_frame.head(40))
    bodies = [rows[i : i + 1 + i % 4] for i in range(0, 36, 3)]
    bodies.insert(5, [rows[0], {**rows[1], "Geography": "Atlantis"}])
    alone = [predict(servers["bankchurn"], body) for body in bodies]

    async def together() -> list[httpx.Response]:
        url = f"{servers['bankchurn'].url}/v1/models/bankchurn:predict"
        async with httpx.AsyncClient(timeout=60.0) as client:
            return await asyncio.gather(
                *(client.post(url, json={"instances": body}) for body in bodies for _ in range(3))
            )

    responses = asyncio.run(together())
    for i, response in enumerate(responses):
        expected = alone[i // 3]
        assert response.status_code == expected.status_code
        if expected.status_code != 200:
            assert response.json() == expected.json()
            continue
        got, want = response.json()["predictions"], expected.json()["predictions"]
        assert [{**p, "churn_probability": 0} for p in got] == [
            {**p, "churn_probability": 0} for p in want
        ]
        np.testing.assert_allclose(
            [p["churn_probability"] for p in got],
            [p["churn_probability"] for p in want],
            rtol=1e-12,
        )
    assert "instance 1, field 'Geography'" in alone[5].json()["error"]


# --- explanations --------------------------------------------------------------------------


@pytest.mark.parametrize("project", list(CANDIDATES))
def test_explanations_add_up_to_the_served_prediction(
    project: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served[project]
    rows = instances(s.spec, s.test_frame.head(3))
    server = servers[project]
    response = post(server, f"/v1/models/{project}:explain", {"instances": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    field = body["explained_output"]
    served_values = [p[field] for p in predict(server, rows).json()["predictions"]]
    scale = 1.0 if s.spec.task.probabilistic else max(abs(v) for v in served_values)
    for explanation, value in zip(body["explanations"], served_values, strict=True):
        assert set(explanation["contributions"]) == set(s.spec.input_columns)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(value, abs=1e-6 * scale)
        assert explanation["output"] == pytest.approx(value, abs=1e-9 * scale)


def test_explain_refuses_more_instances_than_its_limit(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served["telecom"]
    rows = instances(s.spec, s.test_frame.head(MAX_EXPLAIN_INSTANCES + 1))
    response = post(servers["telecom"], "/v1/models/telecom:explain", {"instances": rows})
    assert response.status_code == 400
    assert f"limit of {MAX_EXPLAIN_INSTANCES}" in response.json()["error"]


# --- malformed requests --------------------------------------------------------------------


def _row(served: dict[str, Served], project: str) -> dict[str, Any]:
    s = served[project]
    return instances(s.spec, s.test_frame.head(1))[0]


def _body(instances_value: Any) -> bytes:
    return json.dumps({"instances": instances_value}).encode()


# (project, body from a valid row, content type, fragments the error must contain, the rule
# of a problem listed in the body)
MALFORMED: dict[str, tuple[str, Any, str, list[str], str]] = {
    "missing field": (
        "telecom",
        lambda r: _body([{k: v for k, v in r.items() if k != "calls"}]),
        "application/json",
        ["instance 0", "'calls'", "missing"],
        "missing",
    ),
    "wrong type": (
        "telecom",
        lambda r: _body([{**r, "minutes": "lots"}]),
        "application/json",
        ["instance 0", "'minutes'", "not a number", '"lots"'],
        "type",
    ),
    "boolean for a number": (
        "bankchurn",
        lambda r: _body([{**r, "HasCrCard": True}]),
        "application/json",
        ["'HasCrCard'", "not a number", "true"],
        "type",
    ),
    "NaN": (
        "telecom",
        lambda r: json.dumps({"instances": [r, {**r, "messages": float("nan")}]}).encode(),
        "application/json",
        ["instance 1", "'messages'", "blank value"],
        "blank",
    ),
    "Infinity": (
        "telecom",
        lambda r: json.dumps({"instances": [{**r, "mb_used": float("inf")}]}).encode(),
        "application/json",
        ["'mb_used'", "not a finite number"],
        "finite",
    ),
    "number beyond 64 bits": (
        "telecom",
        lambda r: _body([{**r, "calls": 10**400}]),
        "application/json",
        ["'calls'", "not a finite number"],
        "finite",
    ),
    "negative minutes": (
        "telecom",
        lambda r: _body([{**r, "minutes": -5}]),
        "application/json",
        ["'minutes'", "below the minimum 0", "-5"],
        "minimum",
    ),
    "fractional age": (
        "bankchurn",
        lambda r: _body([{**r, "Age": 40.5}]),
        "application/json",
        ["'Age'", "not a whole number"],
        "whole",
    ),
    "unknown category": (
        "bankchurn",
        lambda r: _body([r, r, {**r, "Geography": "Atlantis"}]),
        "application/json",
        ["instance 2", "'Geography'", "allowed values", "Atlantis"],
        "category",
    ),
    "bad date": (
        "carvision",
        lambda r: _body([{**r, "date_posted": "last tuesday"}]),
        "application/json",
        ["'date_posted'", "ISO date"],
        "date",
    ),
    "object as a value": (
        "telecom",
        lambda r: _body([{**r, "calls": {"n": 3}}]),
        "application/json",
        ["'calls'", "not a number"],
        "type",
    ),
    "empty instances": (
        "telecom",
        lambda r: _body([]),
        "application/json",
        ["no instances"],
        "min_instances",
    ),
    "10,000 instances": (
        "telecom",
        lambda r: _body([r] * 10_000),
        "application/json",
        ["10000 instances", f"limit of {MAX_INSTANCES}"],
        "max_instances",
    ),
    "instances not a list": (
        "telecom",
        lambda r: _body(r),
        "application/json",
        ["'instances' must be a list"],
        "format",
    ),
    "instance not an object": (
        "telecom",
        lambda r: _body([r, [1, 2, 3]]),
        "application/json",
        ["instance 1", "expected an object"],
        "type",
    ),
    "body not an object": (
        "telecom",
        lambda r: json.dumps([r]).encode(),
        "application/json",
        ['{"instances"'],
        "format",
    ),
    "non-JSON body": (
        "telecom",
        lambda r: b"calls=3&minutes=4",
        "application/json",
        ["not valid JSON"],
        "json",
    ),
    "truncated JSON": (
        "telecom",
        lambda r: _body([r])[:-5],
        "application/json",
        ["not valid JSON"],
        "json",
    ),
    "wrong content type": (
        "telecom",
        lambda r: _body([r]),
        "text/plain",
        ["Content-Type", "text/plain"],
        "content_type",
    ),
    "deeply nested JSON": (
        "telecom",
        lambda r: b"[" * 100_000 + b"]" * 100_000,
        "application/json",
        ["not valid JSON"],
        "json",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_400_naming_the_field_and_rule_and_the_server_keeps_serving(
    case: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    project, make_body, content_type, fragments, rule = MALFORMED[case]
    server = servers[project]
    response = post(
        server,
        f"/v1/models/{project}:predict",
        make_body(_row(served, project)),
        {"Content-Type": content_type},
    )
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message
    assert rule in {problem["rule"] for problem in response.json()["problems"]}
    assert server.status("/v2/health/ready") == 200
    assert predict(server, [_row(served, project)]).status_code == 200


@pytest.mark.parametrize(
    ("case", "change", "fragments", "rule"),
    [
        ("missing input", lambda inputs: inputs[1:], ["'calls'", "missing input"], "missing"),
        (
            "uneven lengths",
            lambda inputs: [
                {**inputs[0], "shape": [2], "data": inputs[0]["data"] * 2},
                *inputs[1:],
            ],
            ["values where the other inputs have"],
            "shape",
        ),
        (
            "negative value",
            lambda inputs: [*inputs[:1], {**inputs[1], "data": [-1.0]}, *inputs[2:]],
            ["'minutes'", "below the minimum"],
            "minimum",
        ),
    ],
)
def test_malformed_v2_requests_get_400(
    case: str,
    change: Any,
    fragments: list[str],
    rule: str,
    servers: dict[str, ServerProcess],
    served: dict[str, Served],
) -> None:
    s = served["telecom"]
    body = v2_body(instances(s.spec, s.test_frame.head(1)), s.spec.input_columns)
    body["inputs"] = change(body["inputs"])
    response = post(servers["telecom"], "/v2/models/telecom/infer", body)
    assert response.status_code == 400, response.text
    for fragment in fragments:
        assert fragment in response.json()["error"]
    assert {problem["rule"] for problem in response.json()["problems"]} == {rule}


# --- metrics -------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """Value of the sample `name{labels...}` in Prometheus text, or 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_rejections_and_predictions(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    server = servers["bankchurn"]
    before = httpx.get(server.url + "/metrics").text
    row = _row(served, "bankchurn")
    assert predict(server, [row, row, row]).status_code == 200
    assert predict(server, [{**row, "Geography": "Mars"}]).status_code == 400
    after = httpx.get(server.url + "/metrics").text

    predict_route = "/v1/models/{model_name}:predict"
    for status in ("200", "400"):
        labels = {"route": predict_route, "status": status}
        assert _sample(after, "mlops_http_requests_total", **labels) == (
            _sample(before, "mlops_http_requests_total", **labels) + 1
        )
    geography = {"project": "bankchurn", "field": "Geography"}
    assert _sample(after, "mlops_validation_failures_total", **geography) == (
        _sample(before, "mlops_validation_failures_total", **geography) + 1
    )
    predicted = sum(
        _sample(after, "mlops_predictions_total", project="bankchurn", **{"class": label})
        - _sample(before, "mlops_predictions_total", project="bankchurn", **{"class": label})
        for label in ("stays", "churns")
    )
    assert predicted == 3
    assert re.search(r'mlops_model_info\{[^}]*project="bankchurn"[^}]*\} 1\.0', after)
    assert _sample(after, "request_predict_seconds_count", model_name="bankchurn") > 0
    # every collection is timed; the young generation's run all the time
    assert _sample(after, "mlops_gc_pause_seconds_count", generation="0") > 0

    carvision = servers["carvision"]
    assert predict(carvision, [_row(served, "carvision")]).status_code == 200
    prices = httpx.get(carvision.url + "/metrics").text
    assert _sample(prices, "mlops_predicted_value_count", project="carvision", unit="USD") >= 1


def test_classifiers_export_the_class_shares_they_predicted_on_the_held_out_split(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    for project in ("telecom", "bankchurn"):
        s = served[project]
        predicted = np.asarray(s.model.predict(s.test_frame[s.spec.input_columns]))
        negative, positive = s.spec.task.labels
        text = httpx.get(servers[project].url + "/metrics").text
        share = {
            label: _sample(text, "mlops_reference_class_share", project=project, **{"class": label})
            for label in (negative, positive)
        }
        assert share[positive] == pytest.approx(float(np.mean(predicted == 1)), abs=1e-6)
        assert share[negative] + share[positive] == pytest.approx(1.0)
    # A regression model predicts no classes, so it has no reference share.
    assert (
        "mlops_reference_class_share{" not in httpx.get(servers["carvision"].url + "/metrics").text
    )


@pytest.mark.slow
def test_a_registry_uri_is_served_with_its_version_and_run_id(
    tmp_path: Path, served: dict[str, Served]
) -> None:
    """Marked slow: a new SQLite registry migrates its schema for about ten seconds."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("serving", artifact_location=str(tmp_path / "runs"))
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifacts(str(served["telecom"].model_dir), artifact_path="model")
        registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", "telecom")
        client.set_registered_model_alias("telecom", "champion", registered.version)
        spec = get_spec("telecom")
        for uri in ("models:/telecom@champion", f"models:/telecom/{registered.version}"):
            loaded = load(spec, uri)
            assert loaded.provenance.version == str(registered.version)
            assert loaded.provenance.run_id == run.info.run_id
            rows = served["telecom"].test_frame.head(5)[spec.input_columns]
            np.testing.assert_allclose(
                spec.task.model_output(loaded.model, rows),
                spec.task.model_output(served["telecom"].model, rows),
            )
        with pytest.raises(ModelLoadError, match="models:/telecom@nobody"):
            load(spec, "models:/telecom@nobody")
    finally:
        mlflow.set_tracking_uri(previous)


# --- in-process ----------------------------------------------------------------------------


def test_fitted_estimators_are_made_single_threaded(served: dict[str, Served]) -> None:
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(served["carvision"].model_dir))
    forest = model.steps[-1][1]
    forest.n_jobs = 2  # as a model registered without single-threading would have it
    assert single_threaded(model) == 1
    assert forest.n_jobs == 1
    assert single_threaded(model) == 0


# --- real data -----------------------------------------------------------------------------


@pytest.mark.real_data
def test_served_predictions_equal_in_process_on_real_telecom_rows(
    real_telecom: Served | None, processes: dict[str, ServerProcess]
) -> None:
    if real_telecom is None:
        pytest.skip(data.missing(get_spec("telecom")))
    server = processes["real"]
    server.wait_ready()
    spec, rows = real_telecom.spec, real_telecom.test_frame.head(200)
    response = predict(server, instances(spec, rows))
    assert response.status_code == 200, response.text
    served_p = [p["ultra_probability"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(
        served_p, spec.task.model_output(real_telecom.model, rows), rtol=1e-9
    )

"""What a client sees besides predictions, over real HTTP on 127.0.0.1: error bodies that name
each problem as data (with "did you mean" for misspelt fields and model names), v2 metadata and
model versions, one INFO line per client error in the server's log, and gRPC only when asked.
The servers are the session's (conftest)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import psutil
import pytest

from components.core.projects import get_spec
from serving.__main__ import main
from tests.serving.support import (
    LOGGED_VERSION,
    PLANTED_FAULT,
    START_WAIT_SECONDS,
    Served,
    instances,
    metric,
    post,
    predict,
    v2_body,
    wait_until,
)
from tests.support.servers import ServerProcess


def _row(served: dict[str, Served], project: str) -> dict[str, Any]:
    s = served[project]
    return instances(s.spec, s.test_frame.head(1))[0]


def _without(row: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != name}


def _problem(**fields: Any) -> dict[str, Any]:
    return {"instance": None, "field": None, "value": None, "did_you_mean": None, **fields}


# --- error bodies --------------------------------------------------------------------------


def test_a_misspelt_field_next_to_the_missing_one_is_one_problem_suggesting_it(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    server = servers["bankchurn"]
    before = metric(server, "mlops_validation_failures_total", project="bankchurn", field="Age")
    row = {**_without(_row(served, "bankchurn"), "Age"), "Agee": 42}
    response = predict(server, [row])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == (
        "instance 0, field 'Agee': not one of bankchurn's input fields, and the required field "
        "'Age' is missing: did you mean 'Age'?"
    )
    assert body["problems"] == [
        _problem(instance=0, field="Agee", rule="unknown_field", value=42, did_you_mean="Age")
    ]
    # counted under the field meant: clients cannot add label values of their own
    after = metric(server, "mlops_validation_failures_total", project="bankchurn", field="Age")
    assert after == before + 1
    assert 'field="Agee"' not in httpx.get(server.url + "/metrics").text


@pytest.mark.parametrize(
    ("sent", "meant", "fragment"),
    [
        ("age", "Age", "the required field 'Age' is missing"),  # case is ignored
        ("Tenur", "Tenure", "so 'Tenure' would be read as blank"),  # nullable: not silently blank
    ],
)
def test_other_misspellings_are_refused_with_the_field_meant(
    sent: str,
    meant: str,
    fragment: str,
    servers: dict[str, ServerProcess],
    served: dict[str, Served],
) -> None:
    row = _row(served, "bankchurn")
    response = predict(servers["bankchurn"], [{**_without(row, meant), sent: row[meant] or 1}])
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert f"did you mean {meant!r}?" in response.json()["error"]
    (problem,) = response.json()["problems"]
    assert (problem["field"], problem["rule"], problem["did_you_mean"]) == (
        sent,
        "unknown_field",
        meant,
    )


def test_unrelated_extra_fields_are_still_ignored_when_a_nullable_field_is_left_out(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    row = {**_without(_row(served, "bankchurn"), "Tenure"), "CustomerId": 7, "Surname": "Hill"}
    response = predict(servers["bankchurn"], [row])
    assert response.status_code == 200, response.text
    assert response.json()["ignored_fields"] == ["CustomerId", "Surname"]


def test_a_missing_field_without_a_near_name_is_reported_as_missing(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    row = {**_without(_row(served, "bankchurn"), "Age"), "Surname": "Hill"}
    response = predict(servers["bankchurn"], [row])
    assert response.status_code == 400
    assert response.json() == {
        "error": "instance 0, field 'Age': missing (required)",
        "problems": [_problem(instance=0, field="Age", rule="missing")],
    }


def test_the_body_lists_every_problem_with_its_instance_field_rule_and_value(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    row = _row(served, "bankchurn")
    body = {
        "instances": [
            {**row, "Geography": "Atlantis", "Balance": math.nan},
            {**row, "Age": 40.5, "CreditScore": 10**30, "HasCrCard": {"n": 1}},
            [1, 2],
        ]
    }
    response = post(servers["bankchurn"], "/v1/models/bankchurn:predict", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("6 problems: instance 0, field 'Geography': not one of the allowed")
    assert response.json()["problems"] == [
        _problem(instance=0, field="Geography", rule="category", value="Atlantis"),
        _problem(instance=0, field="Balance", rule="blank", value="NaN"),  # JSON has no NaN
        _problem(instance=1, field="CreditScore", rule="maximum", value=str(10**30)),
        _problem(instance=1, field="Age", rule="whole", value=40.5),
        _problem(instance=1, field="HasCrCard", rule="type", value={"n": 1}),
        _problem(instance=2, rule="type", value=[1, 2]),
    ]


@pytest.mark.parametrize(
    ("case", "body", "content_type", "rule"),
    [
        ("not JSON", b"{'instances': []}", "application/json", "json"),
        ("not JSON at all", b"instances", "text/plain", "content_type"),
        ("no instances", b'{"rows": []}', "application/json", "format"),
        ("empty", b'{"instances": []}', "application/json", "min_instances"),
    ],
)
def test_body_level_problems_have_no_instance_or_field(
    case: str, body: bytes, content_type: str, rule: str, servers: dict[str, ServerProcess]
) -> None:
    response = post(
        servers["telecom"], "/v1/models/telecom:predict", body, {"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    (problem,) = response.json()["problems"]
    assert problem == _problem(rule=rule)
    assert response.json()["error"].startswith("request: ")


def test_v2_names_a_misspelt_input_and_the_required_one_it_stands_for(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    s = served["telecom"]
    body = v2_body(instances(s.spec, s.test_frame.head(2)), s.spec.input_columns)
    body["inputs"][0]["name"] = "cals"  # calls
    response = post(servers["telecom"], "/v2/models/telecom/infer", body)
    assert response.status_code == 400, response.text
    assert "field 'cals'" in response.json()["error"]
    assert (
        "the required input 'calls' is missing: did you mean 'calls'?" in (response.json()["error"])
    )
    (problem,) = response.json()["problems"]
    assert problem["field"] == "cals" and problem["did_you_mean"] == "calls"
    assert problem["rule"] == "unknown_field"
    assert problem["value"] == body["inputs"][0]["data"]


def test_v2_body_outside_the_protocol_gets_422_with_its_problems(
    servers: dict[str, ServerProcess],
) -> None:
    response = post(servers["telecom"], "/v2/models/telecom/infer", {"inputs": [{"name": "x"}]})
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert {(p["field"], p["rule"]) for p in problems} == {
        ("inputs.0.shape", "missing"),
        ("inputs.0.datatype", "missing"),
        ("inputs.0.data", "missing"),
    }
    assert "field 'inputs.0.data': Field required" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/telecon:predict"),
        ("POST", "/v1/models/telecon:explain"),
        ("POST", "/v2/models/telecon/infer"),
        ("GET", "/v2/models/telecon"),
    ],
)
def test_an_unknown_model_name_is_a_404_suggesting_the_served_one(
    method: str, path: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    server = servers["telecom"]
    rows = [_row(served, "telecom")]
    body = v2_body(rows, served["telecom"].spec.input_columns) if "/v2/" in path else None
    if path.startswith("/v1/"):
        body = {"instances": rows}
    response = httpx.request(method, server.url + path, json=body)
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": "no model named 'telecon' here: did you mean 'telecom'? (served: telecom)",
        "problems": [_problem(rule="model_name", value="telecon", did_you_mean="telecom")],
    }


# --- v2 metadata and versions --------------------------------------------------------------

V2_DATATYPE = {
    "float": "FP64",
    "int": "INT64",
    "category": "BYTES",
    "string": "BYTES",
    "date": "BYTES",
}


@pytest.fixture(scope="module")
def logged(processes: dict[str, ServerProcess]) -> ServerProcess:
    """The bankchurn server started with --model_version."""
    processes["logged"].wait_ready(timeout=START_WAIT_SECONDS)
    return processes["logged"]


@pytest.mark.parametrize("project", ["bankchurn", "carvision"])
def test_v2_metadata_lists_the_schema_inputs_the_outputs_and_the_served_version(
    project: str,
    servers: dict[str, ServerProcess],
    logged: ServerProcess,
    served: dict[str, Served],
) -> None:
    server = logged if project == "bankchurn" else servers[project]
    metadata = httpx.get(f"{server.url}/v2/models/{project}").json()
    spec = get_spec(project)
    assert metadata["name"] == project
    assert metadata["inputs"] == [
        {"name": c.name, "datatype": V2_DATATYPE[c.dtype], "shape": [-1]} for c in spec.columns
    ]
    # the outputs are what an answer carries, with the same datatypes
    rows = instances(spec, served[project].test_frame.head(2))
    answer = post(server, f"/v2/models/{project}/infer", v2_body(rows, spec.input_columns))
    assert metadata["outputs"] == [
        {"name": o["name"], "datatype": o["datatype"], "shape": [-1]}
        for o in answer.json()["outputs"]
    ]
    # the version is --model_version's, or "unknown" for a directory without one
    expected = LOGGED_VERSION if project == "bankchurn" else "unknown"
    assert metadata["versions"] == [expected]
    assert answer.json()["model_version"] == expected


def test_v2_metadata_of_bankchurn_names_its_decision_and_risk_band(logged: ServerProcess) -> None:
    outputs = httpx.get(f"{logged.url}/v2/models/bankchurn").json()["outputs"]
    assert outputs == [
        {"name": "churn_probability", "datatype": "FP64", "shape": [-1]},
        {"name": "churn", "datatype": "INT64", "shape": [-1]},
        {"name": "risk_band", "datatype": "BYTES", "shape": [-1]},
    ]


# --- the server's log ----------------------------------------------------------------------


def _log_since(server: ServerProcess, offset: int) -> str:
    return server.log_path.read_bytes()[offset:].decode(errors="replace")


@pytest.fixture
def log_offset(servers: dict[str, ServerProcess]) -> Iterator[int]:
    yield servers["carvision"].log_path.stat().st_size


def test_client_errors_are_logged_as_one_info_line_without_a_traceback(
    servers: dict[str, ServerProcess], served: dict[str, Served], log_offset: int
) -> None:
    server = servers["carvision"]
    row = _row(served, "carvision")
    sent = [
        post(server, "/v1/models/carvision:predict", b"{not json"),
        predict(server, [_without(row, "fuel")]),
        predict(server, [{**row, "odometer": -1}]),
        post(server, "/v1/models/carvision:explain", {"instances": [{**row, "type": "boat"}]}),
        post(server, "/v2/models/carvision/infer", {"inputs": "none"}),
        post(server, "/v1/models/carvison:predict", {"instances": [row]}),
    ]
    assert [r.status_code for r in sent] == [400, 400, 400, 400, 422, 404]

    def logged_lines() -> list[str] | None:
        lines = [
            line for line in _log_since(server, log_offset).splitlines() if "client error" in line
        ]
        return lines if len(lines) == len(sent) else None

    lines = wait_until(logged_lines, 10.0, "a log line per client error", server)
    for line, response in zip(lines, sent, strict=True):
        assert " kserve INFO " in line
        assert f"client error {response.status_code} on " in line
        assert response.json()["error"] in line  # the message, on the same line
    text = _log_since(server, log_offset)
    assert "Traceback" not in text
    assert " ERROR " not in text


def test_a_fault_in_the_server_is_a_500_logged_at_error_with_its_traceback(
    processes: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    server = processes["failing"]
    server.wait_ready(timeout=START_WAIT_SECONDS)
    offset = server.log_path.stat().st_size
    column, value = PLANTED_FAULT
    row = _row(served, "telecom")
    assert predict(server, [row]).status_code == 200
    response = predict(server, [{**row, column: value}])
    assert response.status_code == 500
    assert "planted fault" in response.json()["error"]

    def fault_logged() -> str | None:
        text = _log_since(server, offset)
        return text if "planted fault" in text else None

    text = wait_until(fault_logged, 10.0, "the fault in the log", server)
    assert " kserve ERROR " in text
    assert "Traceback (most recent call last)" in text
    assert predict(server, [row]).status_code == 200  # and it goes on serving


# --- gRPC ----------------------------------------------------------------------------------


def _listening(process: ServerProcess) -> set[int]:
    sockets = psutil.Process(process.process.pid).connections(kind="inet")
    return {s.laddr.port for s in sockets if s.status == psutil.CONN_LISTEN}


def _flag(process: ServerProcess, name: str) -> str:
    args = [str(a) for a in cast(list[Any], process.process.args)]
    return args[args.index(name) + 1]


def test_no_grpc_port_is_bound_unless_one_is_given(
    servers: dict[str, ServerProcess], processes: dict[str, ServerProcess]
) -> None:
    for server in servers.values():
        assert _listening(server) == {server.port}
    failing = processes["failing"]
    failing.wait_ready(timeout=START_WAIT_SECONDS)
    grpc_port = int(_flag(failing, "--grpc-port"))
    assert _listening(failing) == {failing.port, grpc_port}
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="telecom"), timeout=10).ready


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--enable_grpc", "true"], "--enable_grpc true needs a port: add --grpc-port PORT"),
        (["--grpc-port", "9001", "--enable_grpc", "false"], "contradict each other"),
        (["--grpc_port", "0"], "--grpc-port must be a TCP port"),
        (["--grpc-port", "8080", "--http_port", "8080"], "are both 8080"),
    ],
)
def test_grpc_flags_that_cannot_be_served_are_refused(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--model_name", "telecom", "--model_uri", str(tmp_path), *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err

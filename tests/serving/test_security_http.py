"""The server's security over real HTTP and real processes: the bearer token (the session's
guarded server), numbers in other scripts, and the model file's sha256 checked before
unpickling, against a real MLflow SQLite registry whose stored model file is tampered with."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from components.core import compiled, loading
from components.core import registry as core_registry
from components.core.lineage import file_sha256
from components.core.loading import ModelVerificationError, Verification, load
from components.core.projects import get_spec
from pipelines import traffic
from serving import auth, limits
from serving.__main__ import main
from tests.serving.support import (
    GUARDED_BODY_LIMIT,
    JSON,
    START_WAIT_SECONDS,
    ApiToken,
    Served,
    instances,
    metric,
    post,
    predict,
    v2_body,
    wait_until,
)
from tests.support.models import model_file_sha256
from tests.support.servers import ServerProcess, launch

UNAUTHORIZED = {"error": "missing or invalid bearer token", "problems": []}


@pytest.fixture(scope="module")
def guarded(processes: dict[str, ServerProcess]) -> ServerProcess:
    """The bankchurn server that requires the session's token (from --api-token-file)."""
    processes["guarded"].wait_ready(timeout=START_WAIT_SECONDS)
    return processes["guarded"]


def _row(served: dict[str, Served], project: str = "bankchurn") -> dict[str, Any]:
    s = served[project]
    return instances(s.spec, s.test_frame.head(1))[0]


def _closed_calls(row: dict[str, Any]) -> list[tuple[str, Any]]:
    columns = get_spec("bankchurn").input_columns
    return [
        ("/v1/models/bankchurn:predict", {"instances": [row]}),
        ("/v1/models/bankchurn:explain", {"instances": [row]}),
        ("/v2/models/bankchurn/infer", v2_body([row], columns)),
    ]


# --- the bearer token ----------------------------------------------------------------------


def test_predict_explain_and_infer_answer_401_without_the_token_and_200_with_it(
    guarded: ServerProcess, served: dict[str, Served], api_token: ApiToken
) -> None:
    row = _row(served)
    refused = [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {api_token.value}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {api_token.value}x"},
        {"Authorization": f"Bearer {api_token.value[:-1]}"},
    ]
    for path, body in _closed_calls(row):
        for headers in refused:
            answer = post(guarded, path, body, {**JSON, **headers})
            assert answer.status_code == 401, (path, headers, answer.text)
            assert answer.json() == UNAUTHORIZED
            assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert post(guarded, path, body, {**JSON, **api_token.header}).status_code == 200
        # the scheme is case-insensitive (RFC 7235)
        lower = {"Authorization": f"bearer {api_token.value}"}
        assert post(guarded, path, body, {**JSON, **lower}).status_code == 200
    # two Authorization headers: ambiguous, refused
    twice = httpx.post(
        guarded.url + "/v1/models/bankchurn:predict",
        json={"instances": [row]},
        headers=[("Authorization", "Bearer x"), *api_token.header.items()],
    )
    assert twice.status_code == 401
    # a misspelt model name is a 404 only for a client that has the token
    wrong = "/v1/models/bankchurm:predict"
    assert post(guarded, wrong, {"instances": [row]}).status_code == 401
    assert post(guarded, wrong, {"instances": [row]}, {**JSON, **api_token.header}).status_code == (
        404
    )


def test_health_readiness_metadata_and_metrics_stay_open_and_the_rest_is_closed(
    guarded: ServerProcess, api_token: ApiToken
) -> None:
    for path in (
        "/",
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/models/bankchurn",
        "/v2/models/bankchurn",
        "/v2/models/bankchurn/ready",
        "/metrics",
    ):
        assert guarded.status(path) == 200, path
    # routes nobody listed need the token too: KServe's repository API, unknown paths
    for method, path in (
        ("POST", "/v2/repository/models/bankchurn/unload"),
        ("POST", "/v2/repository/models/bankchurn/load"),
        ("GET", "/docs"),
        ("GET", "/no/such/route"),
        ("POST", "/v2/health/ready"),
    ):
        answer = httpx.request(method, guarded.url + path)
        assert answer.status_code == 401, (method, path)
    assert guarded.status("/v2/health/ready") == 200  # nothing above unloaded the model


# --- the body limit ------------------------------------------------------------------------


def _padded(rows: list[dict[str, Any]], size: int) -> bytes:
    """A predict body of exactly `size` bytes: the rows, then spaces (still valid JSON)."""
    body = json.dumps({"instances": rows}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_a_body_over_the_limit_is_refused_413_unread_and_one_at_the_limit_is_answered(
    guarded: ServerProcess, served: dict[str, Served], api_token: ApiToken
) -> None:
    path, route = "/v1/models/bankchurn:predict", "/v1/models/{model_name}:predict"
    rows = [_row(served)]
    headers = {**JSON, **api_token.header}
    refused = {"error": limits.too_large(GUARDED_BODY_LIMIT), "problems": []}
    before = metric(guarded, "mlops_http_requests_total", route=route, status="413")
    offset = guarded.log_path.stat().st_size

    at_limit = post(guarded, path, _padded(rows, GUARDED_BODY_LIMIT), headers)
    assert at_limit.status_code == 200, at_limit.text
    assert len(at_limit.json()["predictions"]) == 1

    # declared by Content-Length: refused before a byte is read
    over = post(guarded, path, _padded(rows, GUARDED_BODY_LIMIT + 1), headers)
    assert over.status_code == 413
    assert over.json() == refused

    # chunked, with no length declared: refused once the limit is passed
    def chunks() -> Iterator[bytes]:
        body = _padded(rows, 4 * GUARDED_BODY_LIMIT)
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    streamed = httpx.post(guarded.url + path, content=chunks(), headers=headers, timeout=60.0)
    assert streamed.status_code == 413
    assert streamed.json() == refused

    # without the token the body is never read: the answer is the 401
    assert post(guarded, path, _padded(rows, GUARDED_BODY_LIMIT + 1)).status_code == 401

    assert predict_with(guarded, rows[0], api_token).status_code == 200  # still serving
    assert metric(guarded, "mlops_http_requests_total", route=route, status="413") == before + 2

    def lines() -> list[str] | None:
        text = guarded.log_path.read_text(errors="replace")[offset:]
        found = [line for line in text.splitlines() if "client error 413" in line]
        return found if len(found) == 2 else None

    for line in wait_until(lines, 10.0, "a log line per 413", guarded):
        assert line.endswith(f"client error 413 on POST {route}: {refused['error']}")


def test_the_body_limit_must_be_a_positive_number_of_bytes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for given in ("0", "-5", "4MB"):
        assert "--max_request_bytes" in _refused(["--max_request_bytes", given], capsys)


def test_a_401_is_one_info_line_counted_by_route_and_never_shows_a_token(
    guarded: ServerProcess, served: dict[str, Served], api_token: ApiToken
) -> None:
    route = "/v1/models/{model_name}:predict"
    before = metric(guarded, "mlops_http_requests_total", route=route, status="401")
    offset = guarded.log_path.stat().st_size
    wrong = "wrong-token-" + uuid.uuid4().hex
    row = _row(served)
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}):
        answer = post(guarded, "/v1/models/bankchurn:predict", {"instances": [row]}, headers)
        assert answer.status_code == 401
    assert predict_with(guarded, row, api_token).status_code == 200

    def lines() -> list[str] | None:
        text = guarded.log_path.read_text(errors="replace")[offset:]
        found = [line for line in text.splitlines() if "client error 401" in line]
        return found if len(found) == 2 else None

    for line in wait_until(lines, 10.0, "a log line per 401", guarded):
        assert " kserve INFO " in line
        assert line.endswith(f"client error 401 on POST {route}: missing or invalid bearer token")
    assert metric(guarded, "mlops_http_requests_total", route=route, status="401") == before + 2
    log = guarded.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    for secret in (api_token.value, wrong, "Bearer ", "uthorization"):
        assert secret not in log
    assert f"require the bearer token from --api-token-file {api_token.path}" in log


def predict_with(server: ServerProcess, row: dict[str, Any], token: ApiToken) -> httpx.Response:
    path = f"/v1/models/{server.project}:predict"
    return post(server, path, {"instances": [row]}, {**JSON, **token.header})


def test_traffic_sends_the_token_from_the_environment_or_a_file(
    guarded: ServerProcess,
    api_token: ApiToken,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--project", "bankchurn", "--port", str(guarded.port), "--rows", "3"]
    monkeypatch.delenv(traffic.TOKEN_ENV, raising=False)
    assert traffic.main(base) == 2
    assert "answered 401: it requires a bearer token" in capsys.readouterr().err
    assert traffic.main([*base, "--api-token-file", str(api_token.path)]) == 0
    assert "3 answered" in capsys.readouterr().out
    monkeypatch.setenv(traffic.TOKEN_ENV, api_token.value)
    assert traffic.main(base) == 0
    monkeypatch.setenv(traffic.TOKEN_ENV, "not-the-token")
    assert traffic.main(base) == 2
    assert "it refused the bearer token given" in capsys.readouterr().err


def _refused(flags: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["--model_name", "telecom", *flags])
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_token_that_cannot_be_used_stops_the_server_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    missing = tmp_path / "missing"
    assert f"cannot read the API token file {missing}: No such file" in _refused(
        ["--api-token-file", str(missing)], capsys
    )
    assert "Is a directory" in _refused(["--api-token-file", str(tmp_path)], capsys)
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    assert f"the API token file {empty} is empty" in _refused(
        ["--api-token-file", str(empty)], capsys
    )
    spaced = tmp_path / "spaced"
    spaced.write_text("two words\n")
    err = _refused(["--api-token-file", str(spaced)], capsys)
    assert "printable ASCII" in err and "two words" not in err
    good = tmp_path / "good"
    good.write_text("a-good-token-of-enough-length\n")
    assert "--grpc-port with an API token" in _refused(
        ["--api-token-file", str(good), "--grpc-port", "9001"], capsys
    )
    assert "would write the Authorization header" in _refused(
        ["--api-token-file", str(good), "--access_log_format", "%(h)s %({authorization}i)s"],
        capsys,
    )
    monkeypatch.setenv(auth.TOKEN_ENV, "")
    assert "$MLOPS_API_TOKEN is empty" in _refused([], capsys)
    monkeypatch.setenv(auth.TOKEN_ENV, "from-the-environment")
    assert "give the token one way" in _refused(["--api-token-file", str(good)], capsys)


def test_the_token_is_read_from_the_environment_or_a_file_and_stripped(tmp_path: Path) -> None:
    assert auth.read_token(None, {}) is None
    assert auth.read_token(None, {auth.TOKEN_ENV: " abc.DEF-123_~+/= \n"}) == b"abc.DEF-123_~+/="
    path = tmp_path / "token"
    path.write_bytes(b"\n  s3cret-token\r\n")
    assert auth.read_token(str(path), {}) == b"s3cret-token"
    with pytest.raises(auth.TokenError, match="printable ASCII"):
        auth.read_token(None, {auth.TOKEN_ENV: "tok\u00e9n"})
    assert auth.bearer([(b"authorization", b"Bearer  abc ")]) == b"abc"
    assert auth.bearer([(b"authorization", b"Token abc")]) is None
    assert auth.bearer([]) is None
    # open only on GET and HEAD of the listed routes
    assert auth.is_open("GET", "/v2/health/ready") and auth.is_open("HEAD", "/metrics")
    assert not auth.is_open("POST", "/v1/models/bankchurn:predict")
    assert not auth.is_open("GET", "/v2/models/bankchurn/infer")
    assert not auth.is_open("GET", "/v2/health/ready/")
    assert auth.route_template("/v1/models/x:explain") == "/v1/models/{model_name}:explain"


def test_nobody_can_unload_or_load_the_served_model_through_the_repository_api(
    guarded: ServerProcess, api_token: ApiToken
) -> None:
    """KServe's repository routes would let a client unload the model, leaving the pod alive
    and never ready again: refused even with the token (and without a token on any server)."""
    for action in ("unload", "load"):
        answer = post(guarded, f"/v2/repository/models/bankchurn/{action}", {}, api_token.header)
        assert answer.status_code == 403, answer.text
        assert answer.json()["problems"][0]["rule"] == "forbidden"
        assert "does not load or unload models" in answer.json()["error"]
    assert guarded.status("/v2/health/ready") == 200


# --- numbers in other scripts --------------------------------------------------------------


@pytest.mark.parametrize("text", ["\u0666\u0661\u0669", "\uff16\uff11\uff19", "6_19", "619\u00a0"])
def test_a_number_in_other_digits_is_a_400_naming_the_field_on_every_route(
    text: str, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    """Python's float() reads these and pandas does not: they once reached the model as text
    and answered 500. The schema check and the model now read numbers with one parser."""
    server = servers["bankchurn"]
    row = {**_row(served), "CreditScore": text}
    for path, body in _closed_calls(row):
        answer = post(server, path, body)
        assert answer.status_code == 400, (path, answer.text)
        problem = answer.json()["problems"][0]
        assert (problem["field"], problem["rule"], problem["value"]) == (
            "CreditScore",
            "type",
            text,
        )
        assert "field 'CreditScore': not a number" in answer.json()["error"]


def test_an_ascii_numeric_string_is_read_as_the_number(
    servers: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    server = servers["bankchurn"]
    row = _row(served)
    as_text = {**row, "CreditScore": f" {row['CreditScore']} ", "Balance": str(row["Balance"])}
    number, text = predict(server, [row]), predict(server, [as_text])
    assert number.status_code == text.status_code == 200
    assert number.json()["predictions"] == text.json()["predictions"]


# --- the model file's sha256 ---------------------------------------------------------------


class RunsCode:
    """A pickle that creates `marker` when unpickled: what a tampered model file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


@dataclass
class Registry:
    uri: str
    name: str
    versions: dict[str, str]
    """kind -> version"""
    digests: dict[str, str]
    """kind -> the model_file_sha256 tag it was registered with"""
    marker: Path
    files: dict[str, Path]
    """kind -> the model file in the store, which a server on this machine reads"""


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def verified_registry(
    mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory, served: dict[str, Served]
) -> Registry:
    """Three versions of one telecom model, tagged as the register step tags them (one
    without the tag, as registered before it existed); the `tampered` one's stored file is
    then replaced by a pickle that would run code."""
    import mlflow

    root = tmp_path_factory.mktemp("verified")
    name = f"verified-{uuid.uuid4().hex[:8]}"
    registry = Registry(mlflow_uri, name, {}, {}, root / "code-ran", {})
    with tracking(mlflow_uri):
        client = mlflow.MlflowClient()
        experiment = client.create_experiment(name, artifact_location=str(root / "runs"))
        for kind in ("good", "tampered", "untagged"):
            with mlflow.start_run(experiment_id=experiment) as run:
                mlflow.log_artifacts(str(served["telecom"].model_dir), artifact_path="model")
            version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)
            registry.versions[kind] = version
            stored = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}")
            registry.files[kind] = Path(stored) / "model.pkl"
            digest = hashlib.sha256(registry.files[kind].read_bytes()).hexdigest()
            if kind != "untagged":
                client.set_model_version_tag(name, version, loading.DIGEST_TAG, digest)
            registry.digests[kind] = digest
        registry.files["tampered"].write_bytes(pickle.dumps(RunsCode(registry.marker)))
    return registry


@pytest.fixture(scope="module")
def with_graph(served: dict[str, Served], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The telecom session model's directory with its compiled graph, as registration writes
    it: verified on the model's test rows."""
    s = served["telecom"]
    path = tmp_path_factory.mktemp("with-graph") / "model"
    shutil.copytree(s.model_dir, path)
    found = compiled.compile_model(s.spec, s.model, s.test_frame[s.spec.input_columns], "test")
    assert found.graph is not None, found.reason
    compiled.write(found, path / compiled.FOLDER)
    return path


def graph_sha256(model_dir: Path) -> str:
    return file_sha256(model_dir / compiled.FOLDER / compiled.GRAPH_FILE)


@pytest.fixture(scope="module")
def refused(
    verified_registry: Registry,
    served: dict[str, Served],
    with_graph: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServerProcess]]:
    """Servers that must refuse their model, started together: the tampered registry version,
    a model directory given a --model_sha256 that is not its file's, and one given a
    --compiled_sha256 that is not its graph's."""
    root = tmp_path_factory.mktemp("refused")
    r = verified_registry
    started = {
        "wrong_graph": launch(
            "telecom",
            with_graph,
            root / "wrong-graph.log",
            extra_args=["--compiled_sha256", "cd" * 32],
        ),
        "tampered": launch(
            "telecom",
            f"models:/{r.name}/{r.versions['tampered']}",
            root / "tampered.log",
            env={"MLFLOW_TRACKING_URI": r.uri},
        ),
        "wrong_flag": launch(
            "telecom",
            served["telecom"].model_dir,
            root / "wrong-flag.log",
            extra_args=["--model_sha256", "ab" * 32],
        ),
    }
    yield started
    for process in started.values():
        process.stop()


def _error_line(process: ServerProcess) -> str:
    assert process.wait_exit() == 1, process.log_tail()
    lines = process.log_tail(50_000).splitlines()
    return next(line for line in lines if line.startswith("error: cannot serve telecom"))


def test_a_tampered_registry_model_is_refused_before_it_is_unpickled(
    refused: dict[str, ServerProcess], verified_registry: Registry
) -> None:
    r = verified_registry
    message = _error_line(refused["tampered"])
    found = hashlib.sha256(r.files["tampered"].read_bytes()).hexdigest()
    assert f"models:/{r.name}/{r.versions['tampered']}" in message
    assert f"has sha256 {found}, expected {r.digests['tampered']}" in message
    assert f"the model_file_sha256 tag of version {r.versions['tampered']}" in message
    assert not r.marker.exists()  # the file's code never ran


def test_a_wrong_model_sha256_flag_is_refused(
    refused: dict[str, ServerProcess], served: dict[str, Served]
) -> None:
    message = _error_line(refused["wrong_flag"])
    model_dir = served["telecom"].model_dir
    assert str(model_dir) in message
    assert f"has sha256 {model_file_sha256(model_dir)}, expected {'ab' * 32}" in message
    assert "(--model_sha256)" in message


def test_a_pinned_graph_serves_and_a_graph_of_another_digest_is_refused(
    refused: dict[str, ServerProcess],
    served: dict[str, Served],
    with_graph: Path,
    tmp_path: Path,
) -> None:
    message = _error_line(refused["wrong_graph"])
    assert f"has sha256 {graph_sha256(with_graph)}, expected {'cd' * 32}" in message
    assert "(--compiled_sha256)" in message

    s = served["telecom"]
    process = launch(
        "telecom",
        with_graph,
        tmp_path / "pinned-graph.log",
        extra_args=["--compiled_sha256", graph_sha256(with_graph)],
    )
    try:
        process.wait_ready(timeout=START_WAIT_SECONDS)
        assert "onnxruntime graph" in process.log_tail(50_000)  # the graph answers
        frame = s.test_frame.head(60)
        response = predict(process, instances(s.spec, frame))
        assert response.status_code == 200, response.text
        got = [p["ultra_probability"] for p in response.json()["predictions"]]
        expected = s.spec.task.model_output(s.model, frame[s.spec.input_columns])
        np.testing.assert_allclose(got, expected, atol=compiled.PROBABILITY_TOLERANCE)
    finally:
        process.stop()


def test_an_untampered_version_loads_and_one_without_a_digest_needs_permission(
    verified_registry: Registry, served: dict[str, Served], tmp_path: Path
) -> None:
    r, spec = verified_registry, get_spec("telecom")
    strict = Verification(require=True)
    with tracking(r.uri):
        alias = f"models:/{r.name}/{r.versions['good']}"
        loaded = load(spec, alias, verification=strict)
        assert loaded.model_file_sha256 == r.digests["good"]
        # the flag and the tag must both match
        pinned = Verification(r.digests["good"].upper(), require=True)
        assert load(spec, alias, verification=pinned).provenance.version == r.versions["good"]
        with pytest.raises(ModelVerificationError, match=r"expected 0{64} \(--model_sha256\)"):
            load(spec, alias, verification=Verification("0" * 64, require=True))
        untagged = f"models:/{r.name}/{r.versions['untagged']}"
        with pytest.raises(ModelVerificationError, match="has no model_file_sha256 tag"):
            load(spec, untagged, verification=strict)
        assert load(spec, untagged).model_file_sha256 == r.digests["untagged"]  # with a warning
    with pytest.raises(ModelVerificationError, match="--allow-unverified-model"):
        load(spec, str(served["telecom"].model_dir), verification=strict)
    # code the MLmodel would put on the import path is not covered by the digest: refused
    with_code = tmp_path / "with-code"
    shutil.copytree(served["telecom"].model_dir, with_code)
    description = yaml.safe_load((with_code / "MLmodel").read_text())
    description["flavors"]["sklearn"]["code"] = "code"
    (with_code / "MLmodel").write_text(yaml.safe_dump(description))
    with pytest.raises(ModelVerificationError, match="adds code paths"):
        load(spec, str(with_code), verification=Verification(model_file_sha256(with_code)))


def test_the_server_and_the_register_step_name_the_same_tags() -> None:
    assert loading.DIGEST_TAG == core_registry.MODEL_FILE_DIGEST_TAG == "model_file_sha256"
    assert loading.COMPILED_DIGEST_TAG == core_registry.COMPILED_DIGEST_TAG


def test_a_malformed_digest_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--model_sha256", "--compiled_sha256"):
        err = _refused([flag, "xyz"], capsys)
        assert f"{flag} must be 64 hexadecimal digits, got 'xyz'" in err


def test_a_server_serving_unverified_by_permission_says_so(guarded: ServerProcess) -> None:
    log = guarded.log_tail(10_000_000)
    warning = next(line for line in log.splitlines() if "UNVERIFIED" in line)
    assert " WARNING " in warning and re.search(r"its sha256 is [0-9a-f]{64}", warning)

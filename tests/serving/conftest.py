"""Session fixtures: a quick model per project, saved as the register step saves it, and one
server process per project, all started at once so that their start-up overlaps."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.core import ingest
from components.core.projects import get_spec
from tests.serving.support import (
    CANDIDATES,
    GUARDED_BODY_LIMIT,
    LOGGED_VERSION,
    PLANTED_FAULT,
    SAMPLED_RATE,
    SLOW_RELEASE,
    ApiToken,
    FailsOn,
    Served,
    SlowToUnpickle,
    quick_model,
)
from tests.support import data
from tests.support.models import save
from tests.support.servers import ServerProcess, free_port, launch


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fuzz test runs after every other test: it leaves hundreds of 4xx in the project
    servers' request counters, which the live monitoring test's rejection alert would read."""
    fuzz = [item for item in items if item.path.name == "test_fuzz_http.py"]
    if fuzz:
        items[:] = [item for item in items if item.path.name != "test_fuzz_http.py"] + fuzz


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving-models")


@pytest.fixture(scope="session")
def served(models_root: Path) -> dict[str, Served]:
    out = {}
    for project, candidate in CANDIDATES.items():
        spec = get_spec(project)
        frame, _ = ingest.load(spec, "synthetic:2000")
        split = ingest.split(spec, frame, test_size=0.2, seed=42)
        model = quick_model(spec, candidate, split.train)
        model_dir = save(
            spec, model, split.train, models_root / project, reference_frame=split.test
        )
        out[project] = Served(spec, model_dir, model, split.test)
    return out


@pytest.fixture(scope="session")
def broken_model_dirs(models_root: Path, served: dict[str, Served]) -> dict[str, Path]:
    """A model that loads slowly, one whose pickle is corrupt and one that fails on one value."""
    telecom = served["telecom"]
    telecom.model.load_delay_ = SlowToUnpickle(models_root / SLOW_RELEASE)
    try:
        slow = save(telecom.spec, telecom.model, telecom.test_frame, models_root / "slow")
    finally:
        del telecom.model.load_delay_
    corrupt = models_root / "corrupt"
    corrupt.mkdir()
    for item in telecom.model_dir.iterdir():
        (corrupt / item.name).write_bytes(item.read_bytes())
    (corrupt / "model.pkl").write_bytes(b"this is not a pickle")
    failing = save(
        telecom.spec,
        FailsOn(telecom.model, *PLANTED_FAULT),
        telecom.test_frame,
        models_root / "failing",
    )
    return {"slow": slow, "corrupt": corrupt, "failing": failing}


@pytest.fixture(scope="session")
def real_telecom(request: pytest.FixtureRequest, models_root: Path) -> Served | None:
    """A telecom model trained on the real file, when a selected test needs it and it exists."""
    wanted = any(item.get_closest_marker("real_data") for item in request.session.items)
    spec = get_spec("telecom")
    path = data.real_file(spec)
    if not wanted or path is None:
        return None
    frame, _ = ingest.load(spec, str(path))
    split = ingest.split(spec, frame, test_size=0.2, seed=42)
    model = quick_model(spec, CANDIDATES["telecom"], split.train)
    model_dir = save(spec, model, split.train, models_root / "telecom-real")
    return Served(spec, model_dir, model, split.test)


@pytest.fixture(scope="session")
def inference_logs(models_root: Path) -> dict[str, str]:
    """Inference log roots: one the logging server writes, one it cannot (a path under a file)."""
    blocker = models_root / "a-file"
    blocker.write_text("not a folder")
    return {
        "logged": str(models_root / "inference"),
        "sampled": str(models_root / "sampled-inference"),
        "unwritable": str(blocker / "inference"),
    }


@pytest.fixture(scope="session")
def api_token(models_root: Path) -> ApiToken:
    """The bearer token of the guarded server, in a file only its owner reads."""
    value = secrets.token_urlsafe(32)
    path = models_root / "api-token"
    path.write_text(f"{value}\n")  # a trailing newline, as `echo` writes it: stripped
    path.chmod(0o600)
    return ApiToken(value, path)


@pytest.fixture(scope="session")
def processes(
    served: dict[str, Served],
    broken_model_dirs: dict[str, Path],
    real_telecom: Served | None,
    inference_logs: dict[str, str],
    models_root: Path,
    api_token: ApiToken,
) -> Iterator[dict[str, ServerProcess]]:
    logs = models_root / "logs"
    started = {name: launch(name, s.model_dir, logs / f"{name}.log") for name, s in served.items()}
    for kind, path in broken_model_dirs.items():
        # the failing server is also the one that serves gRPC: no other server binds a gRPC port
        grpc = ["--grpc-port", str(free_port())] if kind == "failing" else []
        started[kind] = launch("telecom", path, logs / f"{kind}.log", extra_args=grpc)
    # bankchurn has every kind of field: whole numbers, categories, a nullable one
    bankchurn = served["bankchurn"].model_dir
    started["logged"] = launch(
        "bankchurn",
        bankchurn,
        logs / "logged.log",
        inference_log=inference_logs["logged"],
        extra_args=["--model_version", LOGGED_VERSION],
    )
    started["sampled"] = launch(
        "bankchurn",
        bankchurn,
        logs / "sampled.log",
        inference_log=inference_logs["sampled"],
        extra_args=["--inference_log_sample", str(SAMPLED_RATE)],
    )
    started["dropping"] = launch(
        "bankchurn",
        bankchurn,
        logs / "dropping.log",
        inference_log=inference_logs["unwritable"],
        extra_args=["--inference_log_queue", "1"],
    )
    # a token from a file, a model directory served without a digest, by permission, and a
    # small body limit
    started["guarded"] = launch(
        "bankchurn",
        bankchurn,
        logs / "guarded.log",
        pin_digest=False,
        extra_args=[
            "--api-token-file",
            str(api_token.path),
            "--allow-unverified-model",
            "--max_request_bytes",
            str(GUARDED_BODY_LIMIT),
        ],
    )
    if real_telecom is not None:
        started["real"] = launch("telecom", real_telecom.model_dir, logs / "real.log")
    yield started
    for process in started.values():
        process.terminate()
    for process in started.values():
        process.stop()


@pytest.fixture(scope="session")
def servers(processes: dict[str, ServerProcess]) -> dict[str, ServerProcess]:
    """The three project servers, ready."""
    ready = {name: processes[name] for name in CANDIDATES}
    for process in ready.values():
        process.wait_ready()
    return ready

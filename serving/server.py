"""KServe's ModelServer, listening while the model loads, with readiness that means "can predict".

Out of the box KServe 0.21 refuses to start before a model is ready, and once started
`/v2/health/ready` answers 200 whether or not any model is loaded. Here the HTTP server starts
first and the model loads in the background: until `load()` finishes, `/v2/health/ready`,
`/v1/models/<name>`, `/v2/models/<name>/ready`, predict and explain answer 503, while liveness
(`/`, `/v2/health/live`) answers 200 so that a slow load is not mistaken for a hung process.
A load that fails stops the server with the error.

Client errors are answered and logged as `serving.errors` says: a 400 or 404 names the problem
as data, and logs one INFO line. With an API token, `serving.auth` answers 401 on the closed
routes to requests without it; `serving.limits` answers 413 to a body over the size limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kserve
from kserve.constants.constants import PredictorProtocol
from kserve.errors import InvalidInput
from kserve.model import BaseKServeModel
from kserve.model_server import app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.exceptions import HTTPException

from serving import errors
from serving.auth import BearerAuth
from serving.inputs import rejected
from serving.limits import DEFAULT_MAX_REQUEST_BYTES, BodyLimit
from serving.metrics import RequestMetrics
from serving.predictor import ProjectPredictor


class _ReadinessDataPlane(DataPlane):
    def _known(self, name: str) -> None:
        if self.model_registry.get_model(name) is None:
            raise errors.UnknownModel(name, list(self.model_registry.get_models()))

    def get_model_from_registry(self, name: str) -> BaseKServeModel:
        self._known(name)
        return super().get_model_from_registry(name)

    async def get_model(self, name: str) -> BaseKServeModel:
        self._known(name)
        return await super().get_model(name)

    async def model_ready(
        self, model_name: str, disable_predictor_health_check: bool = False
    ) -> bool:
        self._known(model_name)
        return bool(await super().model_ready(model_name, disable_predictor_health_check))

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        """KServe's metadata (inputs and outputs from the model) plus the served version."""
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        version = getattr(self.get_model_from_registry(model_name), "served_version", None)
        if version is not None:
            metadata["versions"] = [version]
        return metadata

    async def ready(self) -> bool:
        """Ready when at least one model is registered and every registered model is ready."""
        models = list(self.model_registry.get_models().values())
        if not models:
            return False
        for model in models:
            if not await model.healthy():
                return False
        return bool(await super().ready())

    def decode(
        self,
        body: Any,
        headers: Any,
        protocol_version: str = PredictorProtocol.REST_V1.value,
        model_name: str | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """A v1 body that KServe's JSON reader rejects goes to the model undecoded, which
        reports it with the rest of its validation (and reads NaN, as `json.dumps` writes it).
        KServe's other refusals become the server's 400, with the same body as the others."""
        try:
            return super().decode(body, headers, protocol_version, model_name)
        except InvalidInput as exc:
            if protocol_version == PredictorProtocol.REST_V1.value and isinstance(body, bytes):
                return body, {}
            if isinstance(body, bytes):  # a v2 body FastAPI did not take for JSON
                raise rejected(
                    "content_type",
                    "send the body as JSON with Content-Type: application/json "
                    f"(read as the binary extension: {exc})",
                ) from exc
            raise rejected("format", str(exc)) from exc


REPOSITORY_CLOSED = (
    "this server serves the model it loaded at start: it does not load or unload models on request"
)


class _FixedModelRepository(ModelRepositoryExtension):
    """KServe's repository API (`POST /v2/repository/models/<name>/load` and `unload`) would let
    any client unload the served model, leaving the pod alive and never ready again: refused."""

    async def load(self, model_name: str) -> None:
        raise HTTPException(403, REPOSITORY_CLOSED)

    async def unload(self, model_name: str) -> None:
        raise HTTPException(403, REPOSITORY_CLOSED)


class ModelServer(kserve.ModelServer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.workers != 1:
            raise ValueError("serve one process per pod or core: --workers must be 1")
        # start() builds the REST server from self.dataplane and the repository extension, so
        # replacing them here is enough
        self.dataplane = _ReadinessDataPlane(model_registry=self.registered_models)
        self.model_repository_extension = _FixedModelRepository(self.registered_models)
        errors.install(app)  # after super().__init__, which sets up KServe's logging

    def serve_while_loading(
        self,
        model: ProjectPredictor,
        token: bytes | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        """Starts listening at once and loads the model meanwhile; returns when the server stops.
        With a `token`, the closed routes need it as a bearer token (`serving.auth`); bodies over
        `max_request_bytes` are refused unread (`serving.limits`).

        Raises the load error (ModelLoadError) if the model cannot be loaded.
        """
        self.register_model(model)
        model.enable_latency_logging = self.enable_latency_logging
        # inside the token check: a request without the token is refused before its body is read
        app.add_middleware(BodyLimit, limit=max_request_bytes)
        if token:
            app.add_middleware(BearerAuth, token=token)
        # added last, so outside the token check: it counts the 401s too
        app.add_middleware(RequestMetrics)
        # start() gathers self.servers: a load that raises ends the gather, and start() with it
        self.servers.append(asyncio.to_thread(model.load))
        self.start([])

"""The predictor: a KServe model, in the style of KServe's sklearnserver, for any project spec."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from kserve import Model
from kserve.logging import logger
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import get_predict_response

from components.core.explain import Explainer, explainer_for
from components.core.lineage import utc_now
from components.core.loading import (
    UNCHECKED_WHEN_UNKNOWN,
    LoadedModel,
    ModelLoadError,
    Verification,
    load,
)
from components.core.model_uri import MODELS_SCHEME
from components.core.model_uri import parse as parse_model_uri
from components.core.projects import get_spec
from components.core.rollout import Stage, Staged
from serving import metrics
from serving.batching import Grouper
from serving.inference_log import (
    REQUEST_ID_HEADER,
    InferenceLogWriter,
    answered_spans,
    new_request_id,
    request_id,
)
from serving.inputs import (
    MAX_EXPLAIN_INSTANCES,
    MAX_INSTANCES,
    REQUEST_FIELD,
    Parsed,
    RequestRejected,
    from_v1,
    from_v2,
    rejected,
    validate_group,
    validated_frame,
)
from serving.refresh import AliasRefresher, StagedFollower, follows_alias
from serving.shadow import ShadowScorer, ShadowWork

WARM_UP_ROWS = 5
V2_DATATYPES = {
    "float": "FP64",
    "int": "INT64",
    "category": "BYTES",
    "string": "BYTES",
    "date": "BYTES",
}
"""Open Inference Protocol datatype of each schema column type (text of any kind is BYTES)."""
MAX_EXPLAINER_VOCABULARY = 10_000
"""Distinct text values the explainer may collect before it is rebuilt (free-text fields)."""


@dataclass(frozen=True)
class Arm:
    """The staged version served beside the champion: its model and its stage."""

    staged: Staged
    loaded: LoadedModel


CHAMPION_STAGE = str(Stage.CHAMPION)
_UNANSWERED = RuntimeError("no model answered this request")


def _rows_of(frame: pd.DataFrame, spans: list[tuple[int, int, int]]) -> pd.DataFrame:
    """The frame's rows of these requests, in order (the frame itself when they are all)."""
    if sum(end - first for _, first, end in spans) == len(frame):
        return frame
    picked = np.concatenate([np.arange(first, end) for _, first, end in spans])
    return frame.iloc[picked].reset_index(drop=True)


def _relative(
    requests: Sequence[Parsed], spans: list[tuple[int, int, int]]
) -> list[tuple[str, int, int]]:
    """(request id, first row, end row) of each span within the frame `_rows_of` gives."""
    out, offset = [], 0
    for index, first, end in spans:
        out.append((requests[index].request_id or new_request_id(), offset, offset + end - first))
        offset += end - first
    return out


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # no header: try JSON, as KServe does
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _parse_body(body: bytes | bytearray | str, content_type: str | None) -> Any:
    """A body KServe handed over undecoded: it had a non-JSON content type, or was not JSON.

    Python's JSON reader accepts NaN and Infinity (as `json.dumps` writes them), so those reach
    the schema check and are reported against their field.
    """
    if not _is_json_media_type(content_type):
        raise rejected(
            "content_type",
            f"unsupported Content-Type {content_type!r}: send JSON with "
            "Content-Type: application/json",
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise rejected("json", f"body is not valid JSON: {exc}") from None


def settle_heap() -> None:
    """Collects what the last model swap left, then moves every object alive now (the models,
    the libraries) out of the collector's generations (`gc.freeze`). Otherwise each full
    collection walks those half a million objects, about 150 ms on one core, and the requests
    waiting meanwhile are the server's p99 under load. It costs one full collection per load
    or swap; the frozen objects are unfrozen first, so a replaced model's cycles are freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ProjectPredictor(Model):
    """Serves one project's MLflow model on KServe's v1 and v2 routes, with SHAP explanations.

    `load()` loads the model, runs a warm-up prediction and a warm-up explanation (SHAP compiles
    its numba code on first use), and only then sets `ready`. With an inference log, every
    answered prediction row is handed to it; with a refresh interval and a registry alias, a
    new version the alias moves to is loaded the same way and then swapped in.
    """

    def __init__(
        self,
        name: str,
        model_uri: str,
        model_version: str | None = None,
        *,
        inference_log: InferenceLogWriter | None = None,
        refresh_interval: float = 0.0,
        verification: Verification = UNCHECKED_WHEN_UNKNOWN,
        serving_stage: str = CHAMPION_STAGE,
    ) -> None:
        # KServe passes `response_headers` to predict() only when asked (X-Request-ID)
        super().__init__(name, return_response_headers=True)
        self.spec = get_spec(name)
        self.task = self.spec.task
        self.model_uri = model_uri
        self.model_version = model_version
        self.inference_log = inference_log
        self.refresh_interval = refresh_interval
        self.verification = verification
        # What this server's own model is in a rollout: the champion, or (on a cluster, where
        # KServe routes the canary's share to a Deployment of its own) the canary.
        self.serving_stage = serving_stage
        self.refresher: AliasRefresher | None = None
        self.staged_follower: StagedFollower | None = None
        self.arm: Arm | None = None
        self.shadow = ShadowScorer(self.spec, inference_log)
        self.loaded: LoadedModel | None = None
        self.explainer: Explainer | None = None
        # The explainer keeps a vocabulary of text values, so one explanation at a time; a
        # refresh swaps the model and its explainer together under the same lock.
        self._explain_lock = threading.Lock()
        self.grouper: Grouper[Parsed, dict[str, Any] | InferResponse] = Grouper(
            self.run_group, MAX_INSTANCES
        )
        self.ready = False

    def start(self) -> None:
        """KServe's default marks the model ready here; readiness must come from `load()` only."""

    def load(self) -> bool:
        self._install(*self._prepare(self.model_uri, self.model_version, self.verification))
        self.ready = True
        if self.refresh_interval > 0:
            if follows_alias(self.model_uri):
                self.refresher = AliasRefresher(
                    self.name,
                    self.model_uri,
                    self.refresh_interval,
                    lambda: self._model().provenance.version,
                    self.refresh,
                ).start()
                parts = parse_model_uri(self.model_uri)
                assert parts is not None
                self.staged_follower = StagedFollower(
                    self.name,
                    parts.name,
                    self.refresh_interval,
                    lambda: None if self.arm is None else self.arm.staged,
                    self.stage_version,
                    self.restage,
                )
                self.staged_follower.check()  # a version staged before the server started
                self.staged_follower.start()
            else:
                logger.warning(
                    "--refresh_interval ignored: %s is not a registry alias (models:/NAME@ALIAS)",
                    self.model_uri,
                )
        return self.ready

    def refresh(self, version: str) -> None:
        """Loads and warms `version` of the registered model the alias names, then serves it.
        A prediction in flight finishes on the model it started with. It is verified by its
        own version's digest tag: --model_sha256 names the file of the version served first."""
        parts = parse_model_uri(self.model_uri)
        assert parts is not None
        checked = Verification(require=self.verification.require)
        self._install(*self._prepare(f"{MODELS_SCHEME}{parts.name}/{version}", None, checked))

    def stage_version(self, staged: Staged) -> None:
        """Loads and warms the staged version, then serves it beside the champion."""
        parts = parse_model_uri(self.model_uri)
        assert parts is not None
        uri = f"{MODELS_SCHEME}{parts.name}/{staged.version}"
        checked = Verification(require=self.verification.require)
        loaded = load(self.spec, uri, None, checked)
        self._warm(loaded, uri)
        self.arm = Arm(staged, loaded)
        settle_heap()
        for stage in (Stage.SHADOW, Stage.CANARY):
            metrics.record_arm_error(self.name, str(stage), staged.version, 0)
        metrics.record_staged(self.name, staged.stage, staged.version, staged.share)

    def restage(self, staged: Staged | None) -> None:
        """The staged version's new stage or share, or (None) the end of its arm."""
        if staged is None or self.arm is None:
            self.arm = None
            metrics.record_staged(self.name, None, None, 0.0)
            settle_heap()
            return
        self.arm = Arm(staged, self.arm.loaded)
        metrics.record_staged(self.name, staged.stage, staged.version, staged.share)

    def _warm(self, loaded: LoadedModel, uri: str) -> None:
        try:
            warm = loaded.background.head(WARM_UP_ROWS)
            output = loaded.output(self.spec, warm)
            if output.shape != (len(warm),) or not np.all(np.isfinite(output)):
                raise ValueError(f"expected {len(warm)} finite outputs, got {output!r}")
        except Exception as exc:  # a model that cannot predict its own training rows is unusable
            raise ModelLoadError(
                f"model from {uri} failed its warm-up prediction: {type(exc).__name__}: {exc}"
            ) from exc

    def _prepare(
        self, uri: str, version: str | None, verification: Verification
    ) -> tuple[LoadedModel, Explainer]:
        loaded = load(self.spec, uri, version, verification)
        self._warm(loaded, uri)
        try:
            explainer = explainer_for(self.spec, loaded.model, loaded.background)
            explainer.explain(loaded.background.head(1))
        except Exception as exc:  # a model that cannot predict its own training rows is unusable
            raise ModelLoadError(
                f"model from {uri} failed its warm-up prediction: {type(exc).__name__}: {exc}"
            ) from exc
        return loaded, explainer

    def _install(self, loaded: LoadedModel, explainer: Explainer) -> None:
        previous = self.loaded
        with self._explain_lock:
            self.loaded, self.explainer = loaded, explainer
        provenance = loaded.provenance
        metrics.record_model(self.name, provenance.version, provenance.run_id)
        metrics.record_arm_error(self.name, self.serving_stage, provenance.version, 0)
        if previous is not None:
            old = previous.provenance
            if (old.version, old.run_id) != (provenance.version, provenance.run_id):
                metrics.forget_model(self.name, old.version, old.run_id)
        if previous is not None or loaded.reference_class_share:
            metrics.record_reference(self.name, loaded.reference_class_share)
        logger.info(
            "%s %s model from %s (version %s, run %s, threshold %s, n_jobs set to 1 on %d; %s)",
            "loaded" if previous is None else "now serving",
            self.name,
            provenance.uri,
            provenance.version,
            provenance.run_id,
            loaded.threshold,
            loaded.single_threaded,
            loaded.compiled_note,
        )
        del previous  # the replaced model goes with this collection
        settle_heap()

    def stop(self) -> None:
        """KServe calls this when the server stops: no more refreshes, and the inference log
        writes what is still queued."""
        super().stop()
        self.close()

    def close(self) -> None:
        if self.refresher is not None:
            self.refresher.stop()
        if self.staged_follower is not None:
            self.staged_follower.stop()
        self.shadow.close()
        if self.inference_log is not None:
            self.inference_log.close()

    # Sync: reading the body is cheap, and KServe runs a sync handler on the event loop.
    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Parsed:
        try:
            if isinstance(payload, InferRequest):
                return from_v2(self.spec, payload, MAX_INSTANCES)
            if isinstance(payload, bytes | bytearray | str):
                payload = _parse_body(payload, (headers or {}).get("content-type"))
            return from_v1(self.spec, payload, MAX_INSTANCES)
        except RequestRejected as exc:
            metrics.record_rejection(self.name, exc.fields)
            raise

    @property
    def served_version(self) -> str | None:
        """The version of the model answering now (None while the first one loads)."""
        return None if self.loaded is None else self.loaded.provenance.version

    def get_input_types(self) -> list[dict[str, Any]]:
        """v2 metadata: one input per raw column of the schema, one value per row."""
        return [
            {"name": c.name, "datatype": V2_DATATYPES[c.dtype], "shape": [-1]}
            for c in self.spec.columns
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        """v2 metadata: the fields a prediction returns, typed as the responses type them (the
        project's output format applied to one made-up output)."""
        sample = self._columns(np.array([0.5]), 0.5)
        return [
            {"name": name, "datatype": from_np_dtype(values.dtype), "shape": [-1]}
            for name, values in sample.items()
        ]

    def _model(self) -> LoadedModel:
        if self.loaded is None:  # KServe answers 503 before this while the model is not ready
            raise RuntimeError(f"{self.name} model is not loaded")
        return self.loaded

    async def predict(
        self,
        payload: Parsed,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        payload.request_id = request_id(headers)
        result = await self.grouper.submit(payload, payload.rows)
        if response_headers is not None:
            response_headers[REQUEST_ID_HEADER] = payload.request_id
        return result

    def run_group(
        self, requests: Sequence[Parsed]
    ) -> list[dict[str, Any] | InferResponse | RequestRejected | Exception]:
        """Schema check and prediction of several requests at once; a response or 400 each.
        The whole group is predicted by the models served when it started, even if a refresh
        swaps one meanwhile: the champion's requests by the champion, a canary's share of them
        by the canary, and a copy of the champion's handed to a shadow."""
        loaded, arm = self._model(), self.arm
        frame, verdicts = validate_group(self.spec, requests)
        for verdict in verdicts:
            if verdict is not None:
                metrics.record_rejection(self.name, verdict.fields)
        # the 400s where they are; the answers fill the rest
        results: list[dict[str, Any] | InferResponse | RequestRejected | Exception] = [
            verdict if verdict is not None else _UNANSWERED for verdict in verdicts
        ]
        if not len(frame):
            return results
        when = utc_now()
        spans: list[tuple[int, int, int]] = []  # (request index, first row, end row)
        canary: list[tuple[int, int, int]] = []
        offset = 0
        for index, (request, verdict) in enumerate(zip(requests, verdicts, strict=True)):
            if verdict is not None:
                continue
            request.request_id = request.request_id or new_request_id()
            span = (index, offset, offset + request.rows)
            offset += request.rows
            answered_by_canary = arm is not None and arm.staged.answers(request.request_id)
            (canary if answered_by_canary else spans).append(span)
        if spans:
            self._answer(requests, results, frame, spans, loaded, self.serving_stage, when)
        if canary and arm is not None:
            self._answer(requests, results, frame, canary, arm.loaded, str(Stage.CANARY), when)
        if spans and arm is not None and arm.staged.stage is Stage.SHADOW:
            rows = _rows_of(frame, spans)
            self.shadow.offer(
                ShadowWork(
                    arm.loaded,
                    rows,
                    _relative(requests, spans),
                    when,
                )
            )
        return results

    def _answer(
        self,
        requests: Sequence[Parsed],
        results: list[dict[str, Any] | InferResponse | RequestRejected | Exception],
        frame: pd.DataFrame,
        spans: list[tuple[int, int, int]],
        loaded: LoadedModel,
        stage: str,
        when: dt.datetime,
    ) -> None:
        """Predicts `spans` of the group's frame with `loaded`, and puts the answers in
        `results`. The champion's failure fails the group as before; a canary's fails only its
        own requests (a 500 each), counted against its version."""
        rows = _rows_of(frame, spans)
        version = loaded.provenance.version
        log = self.inference_log
        inputs = {name: rows[name].to_numpy() for name in self.spec.input_columns} if log else {}
        own = stage == self.serving_stage
        began = time.perf_counter()
        try:
            outputs, output = self._outputs(loaded, rows, served=own)
        except Exception as exc:
            seconds = time.perf_counter() - began
            metrics.record_arm_error(self.name, stage, version, len(spans))
            error = f"{type(exc).__name__}: {exc}"[:500]
            if log is not None:  # the rollout judge counts every arm's failures
                for answered in answered_spans(
                    _relative(requests, spans), inputs, {}, when, version, stage, seconds, error
                ):
                    log.submit(answered)
            if own:
                raise
            logger.error(
                "canary version %s of %s failed on %d requests: %s",
                version, self.name, len(spans), error,
            )  # fmt: skip
            failed = RuntimeError(f"the {self.name} model failed on this request")
            for index, _, _ in spans:
                results[index] = failed
            return
        seconds = time.perf_counter() - began
        metrics.record_arm(self.name, stage, version, seconds, output)
        offset = 0
        for index, first, end in spans:
            size = end - first
            part = {name: values[offset : offset + size] for name, values in outputs.items()}
            results[index] = self._response(requests[index], part, version)
            offset += size
        if log is not None:
            for answered in answered_spans(
                _relative(requests, spans), inputs, outputs, when, version, stage, seconds
            ):
                log.submit(answered)

    def _outputs(
        self, loaded: LoadedModel, frame: pd.DataFrame, served: bool = True
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The response's fields and the model's output. `served`: the champion's answers,
        which the served-output metrics (the alerts' reference comparison) count."""
        # P(positive) for classifiers, the price for regression: the same output explain() explains.
        output = loaded.output(self.spec, frame)
        threshold = loaded.threshold if loaded.threshold is not None else 0.5
        if served:
            self.task.record_served(metrics, self.name, output, threshold)
        return self._columns(output, threshold), output

    def _columns(self, output: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
        """The response's fields for the model's outputs, in the project's output format."""
        return self.task.columns(output, threshold)

    def _response(
        self, request: Parsed, part: dict[str, np.ndarray], version: str
    ) -> dict[str, Any] | InferResponse:
        if isinstance(request.payload, InferRequest):
            answer = get_predict_response(request.payload, pd.DataFrame(part), self.name)
            answer.model_version = version
            return answer
        names = list(part)
        rows = [
            dict(zip(names, values, strict=True))
            for values in zip(*(part[n].tolist() for n in names), strict=True)
        ]
        response: dict[str, Any] = get_predict_response(request.payload, rows, self.name)
        if request.ignored_fields:
            response["ignored_fields"] = request.ignored_fields
        return response

    async def explain(
        self, payload: Parsed, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if payload.rows > MAX_EXPLAIN_INSTANCES:
            metrics.record_rejection(self.name, [REQUEST_FIELD])
            raise rejected(
                "max_instances",
                f"{payload.rows} instances exceed the limit of {MAX_EXPLAIN_INSTANCES} "
                "per explain request",
            )
        try:
            frame = validated_frame(self.spec, payload)
        except RequestRejected as exc:
            metrics.record_rejection(self.name, exc.fields)
            raise
        # Permutation SHAP takes tenths of a second per instance: off the event loop, so that
        # health checks and predictions keep being answered meanwhile.
        return await asyncio.to_thread(self._explain, frame, payload.ignored_fields)

    def _explain(self, frame: pd.DataFrame, ignored_fields: list[str]) -> dict[str, Any]:
        with self._explain_lock:
            loaded, explainer = self._model(), self.explainer
            assert explainer is not None
            explanation = explainer.explain(frame)
            if explainer.vocabulary_size() > MAX_EXPLAINER_VOCABULARY:
                self.explainer = explainer_for(self.spec, loaded.model, loaded.background)
        served = loaded.output(self.spec, frame)
        contributions: pd.DataFrame = explanation.contributions
        return {
            "explanations": [
                {
                    "output": float(value),
                    "base_value": explanation.base_value,
                    "contributions": row,
                }
                for value, row in zip(served, contributions.to_dict("records"), strict=True)
            ],
            "explained_output": self.task.explained_field,
            "method": explanation.method,
            **({"ignored_fields": ignored_fields} if ignored_fields else {}),
        }

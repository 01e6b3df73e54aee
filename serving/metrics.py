"""Prometheus metrics of the server, next to KServe's own latency histograms.

KServe 0.21 serves `/metrics` from prometheus_client's default REGISTRY on the HTTP port, so
metrics created here with the default registry appear there without another endpoint.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "unmatched"
ROUTE_TEMPLATE = "mlops.route_template"
"""Scope key naming the route of a request answered before routing (a 401)."""

REQUESTS = Counter(
    "mlops_http_requests",
    "HTTP requests by route template, method and status code",
    ["route", "method", "status"],
)
VALIDATION_FAILURES = Counter(
    "mlops_validation_failures",
    "Rejected requests (400) by the field that failed; 'request' for the body as a whole",
    ["project", "field"],
)
PREDICTIONS = Counter(
    "mlops_predictions",
    "Instances predicted by a classifier, by predicted class",
    ["project", "class"],
)
VALUE_BUCKETS = tuple(
    round(step * 10.0**power, 6) for power in range(-2, 7) for step in (1, 1.5, 2, 3, 5, 7.5)
)
"""From 0.01 to 7.5 million in steps of at most 2x: one set of buckets for any regression
target, fine enough for a median between two neighbours to read within half a step."""
PREDICTED_VALUE = Histogram(
    "mlops_predicted_value",
    "Values predicted by a regression model, in the unit of its target",
    ["project", "unit"],
    buckets=VALUE_BUCKETS,
)
REFERENCE_CLASS_SHARE = Gauge(
    "mlops_reference_class_share",
    "Share of each class the served classifier predicted on its held-out test split",
    ["project", "class"],
)
MODEL_INFO = Gauge(
    "mlops_model_info",
    "The served model: always 1, labelled with its registry version and MLflow run id",
    ["project", "version", "run_id"],
)
MODEL_REFRESH_FAILURES = Counter(
    "mlops_model_refresh_failures",
    "Registry alias moves whose new model version could not be loaded (the old one kept serving)",
    ["project"],
)
GC_PAUSE = Histogram(
    "mlops_gc_pause_seconds",
    "Garbage-collector pauses of the server process, by generation: every request waits "
    "through one (generation 2, a full collection, is the long one)",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
INFERENCE_LOG_RECORDS = Counter(
    "mlops_inference_log_records",
    "Predicted rows written to the inference log",
    ["project"],
)
INFERENCE_LOG_SAMPLED_OUT = Counter(
    "mlops_inference_log_sampled_out",
    "Predicted rows left out of the inference log by its sample rate (by design, not lost)",
    ["project"],
)
INFERENCE_LOG_DROPPED = Counter(
    "mlops_inference_log_dropped",
    "Predicted rows not written to the inference log: its queue was full, or the write failed",
    ["project"],
)

# One series per rollout arm (stage champion, canary or shadow, and the version), so that the
# dashboard and the rollout judge see the arms side by side.
ARM_ROWS = Counter(
    "mlops_arm_rows",
    "Rows predicted, by the rollout stage and version that predicted them (shadow: never returned)",
    ["project", "stage", "version"],
)
ARM_ERRORS = Counter(
    "mlops_arm_errors",
    "Requests a version's prediction failed on, by rollout stage and version",
    ["project", "stage", "version"],
)
ARM_SECONDS = Histogram(
    "mlops_arm_prediction_seconds",
    "Time of one model call over a group of requests, by rollout stage and version",
    ["project", "stage", "version"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ARM_OUTPUT = Histogram(
    "mlops_arm_output",
    "The model's output per row (P(positive), or the predicted value), by stage and version",
    ["project", "stage", "version"],
    buckets=tuple(sorted({round(0.1 * i, 1) for i in range(1, 10)} | set(VALUE_BUCKETS))),
)
STAGED = Gauge(
    "mlops_staged_share",
    "The version being rolled out beside the champion: the share of requests it answers "
    "(0 in shadow), labelled with its stage",
    ["project", "stage", "version"],
)
SHADOW_DROPPED = Counter(
    "mlops_shadow_dropped",
    "Rows the shadow version did not score: its queue was full (the champion answered them)",
    ["project"],
)


def record_arm(project: str, stage: str, version: str, seconds: float, output: np.ndarray) -> None:
    ARM_ROWS.labels(project, stage, version).inc(len(output))
    ARM_SECONDS.labels(project, stage, version).observe(seconds)
    observe_all(ARM_OUTPUT.labels(project, stage, version), output)


def observe_all(histogram: Histogram, values: np.ndarray) -> None:
    """`histogram.observe` of every value, in one pass: a bucket count per bucket hit rather
    than a Python call per row. prometheus_client (pinned) keeps per-bucket counts and a sum;
    tests/unit/test_rollout.py checks the result against `observe`."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return
    bounds = np.asarray(histogram._upper_bounds)
    hits = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for index in np.flatnonzero(hits):
        histogram._buckets[index].inc(int(hits[index]))
    histogram._sum.inc(float(values.sum()))


def record_arm_error(project: str, stage: str, version: str, requests: int) -> None:
    ARM_ERRORS.labels(project, stage, version).inc(requests)


def record_staged(project: str, stage: str | None, version: str | None, share: float) -> None:
    """The staged version now (None: none); the one before disappears."""
    STAGED.remove_by_labels({"project": project})
    if stage is not None and version is not None:
        STAGED.labels(project, stage, version).set(share)


def record_model(project: str, version: str, run_id: str) -> None:
    MODEL_INFO.labels(project, version, run_id).set(1)


def forget_model(project: str, version: str, run_id: str) -> None:
    """The model is no longer served (a refresh replaced it): its series disappears."""
    MODEL_INFO.remove(project, version, run_id)


def record_reference(project: str, shares: dict[str, float] | None) -> None:
    """The served model's reference class shares; None (none stored) clears the project's.
    A project's class labels are fixed by its spec, so new shares overwrite the old ones."""
    if not shares:
        REFERENCE_CLASS_SHARE.remove_by_labels({"project": project})
        return
    for label, share in shares.items():
        REFERENCE_CLASS_SHARE.labels(project, label).set(share)


def record_rejection(project: str, fields: Iterable[str]) -> None:
    for name in sorted(set(fields)):
        VALIDATION_FAILURES.labels(project, name).inc()


def record_classes(project: str, labels: tuple[str, str], positive: np.ndarray) -> None:
    hits = int(np.count_nonzero(positive))
    if hits:
        PREDICTIONS.labels(project, labels[1]).inc(hits)
    if len(positive) - hits:
        PREDICTIONS.labels(project, labels[0]).inc(len(positive) - hits)


def record_values(project: str, unit: str, values: np.ndarray) -> None:
    histogram = PREDICTED_VALUE.labels(project, unit)
    for value in values:
        histogram.observe(float(value))


class RequestMetrics:
    """ASGI middleware counting responses by route template (not raw path, which is unbounded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the outer error middleware answers if the app raises

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or scope.get(
                ROUTE_TEMPLATE, UNMATCHED_ROUTE
            )
            REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()


def watch_gc() -> None:
    """Times every collection of this process into GC_PAUSE (once; a second call adds nothing).
    A few microseconds per collection: the server's tail is where a pause shows first."""
    if any(getattr(c, "__name__", "") == _time_collection.__name__ for c in gc.callbacks):
        return
    gc.callbacks.append(_time_collection)


_GC_STARTED: list[float] = [0.0]
_GC_CHILDREN = [GC_PAUSE.labels(str(generation)) for generation in range(3)]


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _GC_STARTED[0] = time.perf_counter()
    else:
        _GC_CHILDREN[info["generation"]].observe(time.perf_counter() - _GC_STARTED[0])

"""The model-serving Grafana dashboard, as code: one function per panel.

A fixed uid keeps links stable across regenerations; `$datasource` picks the Prometheus and
`$isvc` the projects. The serving panels read the servers' series (label `isvc`); the row "Data
and model quality" reads what monitoring runs push to the Pushgateway (label `project`, the same
names) and the servers' inference-log counters. Tests run every panel's query against a real
Prometheus that scrapes real model servers and a real Pushgateway.
"""

from __future__ import annotations

from typing import Any

from grafana import alerts, promql

UID = "mlops-serving"
TITLE = "MLOps model serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR = 'isvc=~"$isvc"'
PUSHED = 'project=~"$isvc"'
"""The same projects on the series a monitoring run pushes, which name them `project`."""
RATE_WINDOW = "$__rate_interval"


def target(expr: str, legend: str, ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def panel(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    kind: str = "timeseries",
    unit: str = "short",
    field: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`field` adds to the field defaults (mappings, thresholds); `options` are the panel's."""
    x, y, w, h = grid
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, **(field or {})}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def row(title: str, y: int) -> dict[str, Any]:
    """A row header: the panels below it, up to the next row, belong to it."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def thresholds(base: str, *steps: tuple[float, str]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


def _serving_versions() -> dict[str, Any]:
    return panel(
        "Model version served",
        "Registry version each project's pods serve (mlops_model_info). Two versions at once "
        "mean a rollout is in progress or stuck.",
        [
            target(
                f"max by (isvc, version) (mlops_model_info{{{SELECTOR}}})", "{{isvc}} v{{version}}"
            )
        ],
        (0, 0, 8, 5),
        kind="stat",
        textMode="name",
        colorMode="none",
    )


def _servers_up() -> dict[str, Any]:
    return panel(
        "Servers up",
        "Model server pods answering Prometheus scrapes.",
        [target(f"sum by (isvc) (up{{{SELECTOR}}})", "{{isvc}}")],
        (8, 0, 4, 5),
        kind="stat",
    )


def _request_rate() -> dict[str, Any]:
    return panel(
        "Requests per second by status",
        "HTTP requests to the model servers by status code (all routes).",
        [
            target(
                f"sum by (isvc, status) (rate(mlops_http_requests_total{{{SELECTOR}}}[$__rate_interval]))",
                "{{isvc}} {{status}}",
            )
        ],
        (12, 0, 12, 8),
        unit="reqps",
    )


def _error_ratio() -> dict[str, Any]:
    return panel(
        "Server error ratio (5xx)",
        "Share of requests answered 5xx. Alert MLOpsServerErrors fires above 5% for 5 minutes.",
        [
            target(
                promql.ratio(
                    f'mlops_http_requests_total{{{SELECTOR},status=~"5.."}}',
                    f"mlops_http_requests_total{{{SELECTOR}}}",
                    RATE_WINDOW,
                ),
                "{{isvc}}",
            )
        ],
        (0, 5, 12, 8),
        unit="percentunit",
    )


def quantiles(
    histogram: str, wanted: dict[str, str], by: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """One target per quantile of a histogram, per project (and per label in `by`); `wanted`
    maps legend to quantile."""
    labels = ", ".join(("isvc", *by, "le"))
    shown = "".join(f" ({{{{{label}}}}})" for label in by)
    return [
        target(
            f"histogram_quantile({q}, sum by ({labels}) "
            f"(rate({histogram}_bucket{{{SELECTOR}}}[$__rate_interval])))",
            f"{{{{isvc}}}} {name}{shown}",
            chr(ord("A") + i),
        )
        for i, (name, q) in enumerate(wanted.items())
    ]


def _predict_latency() -> dict[str, Any]:
    return panel(
        "Predict latency",
        "KServe's request_predict_seconds: the model's predict call, per project. Alert "
        "MLOpsPredictLatencyHigh fires when p99 stays above 100 ms.",
        quantiles("request_predict_seconds", {"p50": "0.5", "p95": "0.95", "p99": "0.99"}),
        (12, 8, 12, 8),
        unit="s",
    )


def _validation_failures() -> dict[str, Any]:
    return panel(
        "Rejected requests by field",
        "Requests refused with 400, by the input field that broke the schema ('request' for "
        "the body as a whole).",
        [
            target(
                f"sum by (isvc, field) (rate(mlops_validation_failures_total{{{SELECTOR}}}[$__rate_interval]))",
                "{{isvc}} {{field}}",
            )
        ],
        (0, 13, 12, 8),
        unit="reqps",
    )


def class_share() -> dict[str, Any]:
    return panel(
        "Predicted class share (classifiers)",
        "Share of each predicted class, next to the share the model predicted on its held-out "
        "test split. A lasting move is a sign of input drift (alerts MLOpsPredictionShift and "
        "MLOpsPredictionsAwayFromReference).",
        [
            target(promql.class_share(RATE_WINDOW, SELECTOR), "{{isvc}} {{class}}"),
            target(
                f"max by (isvc, class) (mlops_reference_class_share{{{SELECTOR}}})",
                "{{isvc}} {{class}} on the held-out test split",
                "B",
            ),
        ],
        (12, 16, 12, 8),
        unit="percentunit",
        tooltip={"mode": "multi"},
    )


def _predicted_value() -> dict[str, Any]:
    return panel(
        "Predicted value (regression)",
        "Median and 90th percentile of the values a regression model predicts, in its target's "
        "unit (the series' `unit` label).",
        quantiles("mlops_predicted_value", {"median": "0.5", "p90": "0.9"}, by=("unit",)),
        (0, 21, 12, 8),
    )


PANELS = (
    _serving_versions,
    _servers_up,
    _request_rate,
    _error_ratio,
    _predict_latency,
    _validation_failures,
    class_share,
    _predicted_value,
)

# --- Data and model quality: what the monitoring runs push, and the inference log ------------
QUALITY_ROW = "Data and model quality"
QUALITY_Y = 29
"""Below the serving panels (predicted price ends at y 29)."""


def drift_detected() -> dict[str, Any]:
    return panel(
        "Drift detected",
        "Whether the last monitoring run of each project found its inputs drifted from the "
        "champion's reference (an important column drifted, or the drifted columns carry "
        "enough of the importance). Alert MLOpsDataDrift.",
        [target(f"max by (project) (mlops_monitoring_drift_detected{{{PUSHED}}})", "{{project}}")],
        (0, QUALITY_Y + 1, 6, 5),
        kind="stat",
        field={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "no drift", "color": "green"},
                        "1": {"text": "drift", "color": "red"},
                    },
                }
            ],
            "color": {"mode": "thresholds"},
            "thresholds": thresholds("green", (1, "red")),
        },
        colorMode="background",
    )


def drifted_important_columns() -> dict[str, Any]:
    return panel(
        "Drifted important columns",
        "How many of the model's most important columns drifted in the last monitoring run.",
        [
            target(
                f"max by (project) (mlops_monitoring_drifted_important_columns{{{PUSHED}}})",
                "{{project}}",
            )
        ],
        (6, QUALITY_Y + 1, 6, 5),
        kind="stat",
        field={"color": {"mode": "thresholds"}, "thresholds": thresholds("green", (1, "red"))},
    )


def _rows_monitored() -> dict[str, Any]:
    return panel(
        "Rows monitored",
        "Rows in the last monitoring run's window, and how many of them had ground truth (live "
        f"quality is alerted on from {alerts.MIN_LABELLED_ROWS} labelled rows).",
        [
            target(f"max by (project) (mlops_monitoring_rows{{{PUSHED}}})", "{{project}} rows"),
            target(
                f"max by (project) (mlops_monitoring_labelled_rows{{{PUSHED}}})",
                "{{project}} labelled",
                "B",
            ),
        ],
        (12, QUALITY_Y + 1, 6, 5),
        kind="stat",
    )


def _since_last_run() -> dict[str, Any]:
    return panel(
        "Time since last monitoring run",
        f"Age of each project's last pushed monitoring run. Alert MLOpsMonitoringStale fires "
        f"past {alerts.STALE_AFTER_HOURS} hours.",
        [
            target(
                "time() - max by (project) "
                f"(mlops_monitoring_last_run_timestamp_seconds{{{PUSHED}}})",
                "{{project}}",
            )
        ],
        (18, QUALITY_Y + 1, 6, 5),
        kind="stat",
        unit="s",
        field={
            "color": {"mode": "thresholds"},
            "thresholds": thresholds("green", (alerts.STALE_AFTER_HOURS * 3600, "red")),
        },
    )


def drift_share() -> dict[str, Any]:
    return panel(
        "Drift share",
        "Share of the model's importance carried by the drifted columns, and share of the input "
        "columns that drifted, run after run.",
        [
            target(
                f"max by (project) (mlops_monitoring_weighted_drift_share{{{PUSHED}}})",
                "{{project}} weighted by importance",
            ),
            target(
                f"max by (project) (mlops_monitoring_drift_share{{{PUSHED}}})",
                "{{project}} share of columns",
                "B",
            ),
        ],
        (0, QUALITY_Y + 6, 12, 8),
        unit="percentunit",
    )


def live_quality() -> dict[str, Any]:
    watched = promql.metric_names(promql.SCORES + promql.ERRORS)
    return panel(
        "Live vs registered quality",
        "The champion's figures on the labelled rows of each monitoring run, next to the same "
        "figures on its test split at registration. Alert MLOpsLiveQualityDrop fires when a "
        f"score falls more than {alerts.SCORE_TOLERANCE:g} below, or an error rises more than "
        f"{alerts.ERROR_TOLERANCE:.0%} above.",
        [
            target(
                f'max by (project, metric) (mlops_monitoring_live_metric{{{PUSHED},metric=~"{watched}"}})',
                "{{project}} {{metric}} live",
            ),
            target(
                f'max by (project, metric) (mlops_monitoring_registered_metric{{{PUSHED},metric=~"{watched}"}})',
                "{{project}} {{metric}} registered",
                "B",
            ),
        ],
        (12, QUALITY_Y + 6, 12, 8),
        tooltip={"mode": "multi"},
    )


def drifted_columns() -> dict[str, Any]:
    return panel(
        "Drifted columns",
        "The input columns that drifted in each project's last monitoring run.",
        [
            target(
                f"max by (project, column) (mlops_monitoring_column_drifted{{{PUSHED}}})",
                "{{project}} {{column}}",
                format="table",
                instant=True,
            )
        ],
        (0, QUALITY_Y + 14, 12, 8),
        kind="table",
    )


def inference_log() -> dict[str, Any]:
    return panel(
        "Inference log rows written and dropped",
        "Predicted rows the servers wrote to the inference log, which monitoring runs read, and "
        "rows they dropped (queue full or write failed). Alert MLOpsInferenceLogDropping.",
        [
            target(
                f"sum by (isvc) (rate(mlops_inference_log_records_total{{{SELECTOR}}}[$__rate_interval]))",
                "{{isvc}} written",
            ),
            target(
                f"sum by (isvc) (rate(mlops_inference_log_dropped_total{{{SELECTOR}}}[$__rate_interval]))",
                "{{isvc}} dropped",
                "B",
            ),
        ],
        (12, QUALITY_Y + 14, 12, 8),
        unit="cps",
    )


QUALITY_PANELS = (
    drift_detected,
    drifted_important_columns,
    _rows_monitored,
    _since_last_run,
    drift_share,
    live_quality,
    drifted_columns,
    inference_log,
)

# --- Rollout: the champion and the version staged beside it, arm by arm -----------------------
ROLLOUT_ROW = "Rollout: champion and staged version"
ROLLOUT_Y = QUALITY_Y + 22
"""Below the quality panels (the inference log panel ends at QUALITY_Y + 22)."""
ARM = "isvc, stage, version"
ARM_LEGEND = "{{isvc}} {{stage}} v{{version}}"


def staged_version() -> dict[str, Any]:
    return panel(
        "Staged version",
        "The version being rolled out beside each project's champion, its stage and the share "
        "of requests it answers (0: shadow, which answers none). Empty: no rollout.",
        [target(f"max by ({ARM}) (mlops_staged_share{{{SELECTOR}}})", ARM_LEGEND)],
        (0, ROLLOUT_Y + 1, 6, 8),
        kind="stat",
        unit="percentunit",
        textMode="value_and_name",
        colorMode="none",
    )


def arm_rows() -> dict[str, Any]:
    return panel(
        "Rows predicted per second by arm",
        "Rows each version predicted, by its stage: champion and canary answers were returned, "
        "shadow answers only logged.",
        [
            target(
                f"sum by ({ARM}) (rate(mlops_arm_rows_total{{{SELECTOR}}}[{RATE_WINDOW}]))",
                ARM_LEGEND,
            )
        ],
        (6, ROLLOUT_Y + 1, 9, 8),
        unit="rps",
    )


def arm_errors() -> dict[str, Any]:
    return panel(
        "Failed requests per second by arm",
        "Requests a version's model call failed on: a canary's are answered 500, a shadow's "
        "are only counted.",
        [
            target(
                f"sum by ({ARM}) (rate(mlops_arm_errors_total{{{SELECTOR}}}[{RATE_WINDOW}]))",
                ARM_LEGEND,
            )
        ],
        (15, ROLLOUT_Y + 1, 9, 8),
        unit="reqps",
    )


def arm_latency() -> dict[str, Any]:
    return panel(
        "Model call time by arm (median, p95)",
        "Time of one model call over a group of requests, per version and stage.",
        [
            target(
                f"histogram_quantile({q}, sum by ({ARM}, le) "
                f"(rate(mlops_arm_prediction_seconds_bucket{{{SELECTOR}}}[{RATE_WINDOW}])))",
                f"{ARM_LEGEND} {name}",
                ref,
            )
            for ref, (name, q) in zip("AB", (("median", "0.5"), ("p95", "0.95")), strict=True)
        ],
        (0, ROLLOUT_Y + 9, 12, 8),
        unit="s",
    )


def arm_output() -> dict[str, Any]:
    return panel(
        "Mean output by arm",
        "Mean model output per row (P(positive) for a classifier, the predicted value for a "
        "regression), per version and stage: the arms side by side on the same traffic.",
        [
            target(
                f"sum by ({ARM}) (rate(mlops_arm_output_sum{{{SELECTOR}}}[{RATE_WINDOW}]))\n"
                f"  /\nsum by ({ARM}) (rate(mlops_arm_output_count{{{SELECTOR}}}[{RATE_WINDOW}]))",
                ARM_LEGEND,
            )
        ],
        (12, ROLLOUT_Y + 9, 12, 8),
    )


ROLLOUT_PANELS = (staged_version, arm_rows, arm_errors, arm_latency, arm_output)


def variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        {
            "name": "isvc",
            "label": "Project",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(mlops_model_info, isvc)", "refId": "isvc"},
            "definition": "label_values(mlops_model_info, isvc)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "refresh": 2,
            "hide": 0,
        },
    ]


def dashboard() -> dict[str, Any]:
    made = [make() for make in PANELS] + [row(QUALITY_ROW, QUALITY_Y)]
    made += [make() for make in QUALITY_PANELS] + [row(ROLLOUT_ROW, ROLLOUT_Y)]
    made += [make() for make in ROLLOUT_PANELS]
    panels = [{"id": number, **p} for number, p in enumerate(made, start=1)]
    return {
        "uid": UID,
        "title": TITLE,
        "description": "KServe model servers of the kubeflow-mlops projects, one per project, "
        "and the data and model quality their monitoring runs report.",
        "tags": ["kubeflow-mlops", "kserve"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "panels": panels,
    }


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target (rows have none)."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]

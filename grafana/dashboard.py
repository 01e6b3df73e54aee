"""The model-serving Grafana dashboard, as code: one function per panel.

A fixed uid keeps links stable across regenerations; `$datasource` picks the Prometheus and
`$isvc` the projects. Tests run every panel's query against a real Prometheus that scrapes real
model servers.
"""

from __future__ import annotations

from typing import Any

from grafana import promql

UID = "mlops-serving"
TITLE = "MLOps model serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR = 'isvc=~"$isvc"'
RATE_WINDOW = "$__rate_interval"


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    kind: str = "timeseries",
    unit: str = "short",
    **options: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def serving_versions() -> dict[str, Any]:
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


def servers_up() -> dict[str, Any]:
    return panel(
        "Servers up",
        "Model server pods answering Prometheus scrapes.",
        [target(f"sum by (isvc) (up{{{SELECTOR}}})", "{{isvc}}")],
        (8, 0, 4, 5),
        kind="stat",
    )


def request_rate() -> dict[str, Any]:
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


def error_ratio() -> dict[str, Any]:
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


def quantiles(histogram: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
    """One target per quantile of a histogram, per project; `wanted` maps legend to quantile."""
    return [
        target(
            f"histogram_quantile({q}, sum by (isvc, le) "
            f"(rate({histogram}_bucket{{{SELECTOR}}}[$__rate_interval])))",
            f"{{{{isvc}}}} {name}",
            chr(ord("A") + i),
        )
        for i, (name, q) in enumerate(wanted.items())
    ]


def predict_latency() -> dict[str, Any]:
    return panel(
        "Predict latency",
        "KServe's request_predict_seconds: the model's predict call, per project. Alert "
        "MLOpsPredictLatencyHigh fires when p99 stays above 100 ms.",
        quantiles("request_predict_seconds", {"p50": "0.5", "p95": "0.95", "p99": "0.99"}),
        (12, 8, 12, 8),
        unit="s",
    )


def validation_failures() -> dict[str, Any]:
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


def predicted_price() -> dict[str, Any]:
    return panel(
        "Predicted price (regression)",
        "Median and 90th percentile of the prices a regression model predicts (USD).",
        quantiles("mlops_predicted_price_usd", {"median": "0.5", "p90": "0.9"}),
        (0, 21, 12, 8),
        unit="currencyUSD",
    )


PANELS = (
    serving_versions,
    servers_up,
    request_rate,
    error_ratio,
    predict_latency,
    validation_failures,
    class_share,
    predicted_price,
)


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
    panels = []
    for number, make in enumerate(PANELS, start=1):
        panels.append({"id": number, **make()})
    return {
        "uid": UID,
        "title": TITLE,
        "description": "KServe model servers of the kubeflow-mlops projects, one per project.",
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
    """(panel title, PromQL) of every panel target."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]

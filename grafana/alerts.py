"""Prometheus alerting rules for the model servers, as code.

Every rule reads a series the server really emits (tests check each name against a live
`/metrics`), carries `summary`, `description` and `severity`, and has a promtool unit test in
`tests/cluster/alerts_test.yml`. Scrape targets carry the `isvc` label: the PodMonitor copies
it from the pod's `app.kubernetes.io/name` (the project).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana.promql import class_share, ratio

GROUP_NAME = "mlops-serving"
RUNBOOK = "https://github.com/kubeflow-mlops/kubeflow-mlops/blob/main/docs/operations.md"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{RUNBOOK}#{self.name.lower()}",
            },
        }


ALERTS = (
    Alert(
        "MLOpsModelServerDown",
        'up{isvc!=""} == 0',
        "2m",
        "critical",
        "Model server {{ $labels.isvc }} is not answering scrapes",
        "Prometheus could not scrape {{ $labels.instance }} ({{ $labels.isvc }}) for 2 minutes: "
        "the pod is down, restarting, or its /metrics port is unreachable.",
    ),
    Alert(
        "MLOpsServerErrors",
        ratio(
            'mlops_http_requests_total{status=~"5.."}',
            "mlops_http_requests_total",
            "5m",
        )
        + " > 0.05",
        "5m",
        "critical",
        "Model server {{ $labels.isvc }} fails more than 5% of requests",
        "{{ $value | humanizePercentage }} of requests to {{ $labels.isvc }} answered 5xx over "
        "5 minutes. The server log names the exception; 503 means the model is not loaded.",
    ),
    Alert(
        "MLOpsRequestsRejected",
        ratio(
            'mlops_http_requests_total{status=~"4.."}',
            "mlops_http_requests_total",
            "10m",
        )
        + " > 0.10",
        "10m",
        "warning",
        "More than 10% of requests to {{ $labels.isvc }} are rejected",
        "{{ $value | humanizePercentage }} of requests to {{ $labels.isvc }} answered 4xx over "
        "10 minutes: a caller sends data that breaks the schema. "
        "mlops_validation_failures_total names the field.",
    ),
    Alert(
        "MLOpsPredictLatencyHigh",
        "histogram_quantile(0.99,\n"
        "  sum by (isvc, le) (rate(request_predict_seconds_bucket[5m]))\n) > 0.1",
        "10m",
        "warning",
        "p99 predict latency of {{ $labels.isvc }} is above 100 ms",
        "The 99th percentile of the model's predict time on {{ $labels.isvc }} is "
        "{{ $value | humanizeDuration }} over 5 minutes: batches are larger than usual, "
        "or the pod is short of CPU.",
    ),
    Alert(
        "MLOpsPredictionShift",
        "max by (isvc) (abs(\n"
        + class_share("1h")
        + "\n  -\n"
        + class_share("1d")
        + "\n)) > 0.15\n"
        "and on (isvc) sum by (isvc) (increase(mlops_predictions_total[1h])) >= 100",
        "30m",
        "warning",
        "Predicted classes of {{ $labels.isvc }} moved by more than 15 points",
        "Over the last hour the share of a predicted class on {{ $labels.isvc }} differs from "
        "its share over the last day by {{ $value | humanizePercentage }}. The input may have "
        "drifted: run the pipeline's drift step on recent data.",
    ),
    Alert(
        "MLOpsPredictionsAwayFromReference",
        "max by (isvc) (abs(\n"
        + class_share("6h")
        + "\n  -\nmax by (isvc, class) (mlops_reference_class_share)\n)) > 0.15\n"
        "and on (isvc) sum by (isvc) (increase(mlops_predictions_total[6h])) >= 200",
        "1h",
        "warning",
        "{{ $labels.isvc }} predicts classes far from its held-out test split",
        "Over 6 hours the share of a predicted class on {{ $labels.isvc }} differs by "
        "{{ $value | humanizePercentage }} from the share the model predicted on its held-out "
        "test split at registration: the live inputs no longer look like the data the model "
        "was evaluated on. Run the pipeline on recent data (its drift step names the columns).",
    ),
    Alert(
        "MLOpsModelVersionsMixed",
        "count by (isvc) (count by (isvc, version) (mlops_model_info)) > 1",
        "30m",
        "warning",
        "{{ $labels.isvc }} serves {{ $value }} model versions at once",
        "Pods of {{ $labels.isvc }} have served different registry versions for 30 minutes: "
        "a rollout is stuck. Compare mlops_model_info across pods.",
    ),
)


def rule_groups() -> dict[str, Any]:
    """The rules file that Prometheus and promtool read."""
    return {"groups": [{"name": GROUP_NAME, "rules": [alert.rule() for alert in ALERTS]}]}


def prometheus_rule(namespace: str = "kubeflow-mlops") -> dict[str, Any]:
    """The same rules as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": GROUP_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "kubeflow-mlops", "role": "alert-rules"},
        },
        "spec": rule_groups(),
    }

"""Prometheus alerting rules for the model servers, as code.

Every rule reads a series the server or a monitoring run really emits (tests check each name
against a live Prometheus), carries `summary`, `description` and `severity`, and has a promtool
unit test in `tests/cluster/alerts_test.yml`. The servers' series carry the `isvc` label: the
PodMonitor copies it from the pod's `app.kubernetes.io/name` (the project). A monitoring run
pushes its figures to a Pushgateway with the label `project`, which the scrape keeps
(`honor_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana.promql import ERRORS, SCORES, class_share, metric_names, ratio

GROUP_NAME = "mlops-serving"
RUNBOOK = "https://github.com/kubeflow-mlops/kubeflow-mlops/blob/main/docs/operations.md"
SCORE_TOLERANCE = 0.05
"""How far a live score (higher is better) may fall below the registered one: the monitoring
policy's default quality tolerance."""
ERROR_TOLERANCE = 0.10
"""How far a live error (lower is better) may rise above the registered one, relative to it:
errors are in the target's unit (USD for a price), so an absolute bound would mean nothing."""
MIN_LABELLED_ROWS = 100
"""Labelled rows below which the live figures are shown but not alerted on (the policy's own)."""
STAGED = 'stage=~"canary|shadow"'
"""The series of a version staged beside the champion (components.core.rollout)."""
ON_REQUEST_PATH = 'stage="canary"'
"""A staged version whose calls are timed as the champion's are (a shadow's run on a background
thread that waits for the requests', so its times are not comparable)."""
STAGED_ERROR_SHARE = 0.02
STAGED_SLOWER_S = 0.005
"""The rollout judge's latency margin (components.core.judge.JudgePolicy)."""
STALE_AFTER_HOURS = 26
"""A daily monitoring run, with two hours of slack."""


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str
    key: str = "isvc"
    """The label that names the project: `isvc` on the servers' series, `project` on the
    monitoring runs' pushed ones."""

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
        "drifted: run the monitoring pipeline on recent inputs.",
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
        "was evaluated on. Run the monitoring pipeline on recent inputs: it names the columns.",
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
    Alert(
        "MLOpsStagedVersionFailing",
        f"sum by (isvc, stage, version) (rate(mlops_arm_errors_total{{{STAGED}}}[5m]))\n"
        f"  /\nsum by (isvc, stage, version) (rate(mlops_arm_rows_total{{{STAGED}}}[5m]))\n"
        f"  > {STAGED_ERROR_SHARE}",
        "2m",
        "critical",
        "The staged version {{ $labels.version }} of {{ $labels.isvc }} fails in {{ $labels.stage }}",
        "Version {{ $labels.version }} of {{ $labels.isvc }}, in {{ $labels.stage }}, failed "
        "{{ $value | humanizePercentage }} as many requests as it answered rows over 5 minutes "
        "(a canary's failures are answered 500). Roll it back: make stage ... TO=rolled_back, "
        "or let make judge do it.",
    ),
    Alert(
        "MLOpsStagedVersionSlow",
        f"histogram_quantile(0.5, sum by (isvc, le) "
        f"(rate(mlops_arm_prediction_seconds_bucket{{{ON_REQUEST_PATH}}}[5m])))\n"
        f"  - on (isvc)\nhistogram_quantile(0.5, sum by (isvc, le) "
        f'(rate(mlops_arm_prediction_seconds_bucket{{stage="champion"}}[5m])))\n'
        f"  > {STAGED_SLOWER_S}",
        "5m",
        "warning",
        "The canary of {{ $labels.isvc }} answers slower than its champion",
        "The median model call of the canary beside {{ $labels.isvc }}'s champion took "
        "{{ $value | humanizeDuration }} longer than the champion's over 5 minutes (more than "
        f"{STAGED_SLOWER_S * 1000:g} ms, the judge's latency margin).",
    ),
    Alert(
        "MLOpsInferenceLogDropping",
        "sum by (isvc) (increase(mlops_inference_log_dropped_total[5m])) > 0",
        "10m",
        "warning",
        "{{ $labels.isvc }} drops inference-log records",
        '{{ $labels.isvc }} dropped {{ $value | printf "%.0f" }} predicted rows from its '
        "inference log in the last 5 minutes, and has been dropping for 10: the log's queue was "
        "full or its store refused the writes. Predictions still succeed, but monitoring "
        "windows read from the log miss those rows.",
    ),
    Alert(
        "MLOpsDataDrift",
        "max by (project) (mlops_monitoring_weighted_drift_share)\n"
        "and on (project) max by (project) (mlops_monitoring_drift_detected) == 1\n"
        "and on (project) max by (project) (mlops_monitoring_enough_data) == 1",
        "5m",
        "warning",
        "The inputs of {{ $labels.project }} drifted from the champion's reference",
        "The last monitoring run of {{ $labels.project }} found drift on enough rows to judge "
        "(an important column drifted, or the drifted columns together carry enough of the "
        "model's importance): the drifted columns carry {{ $value | humanizePercentage }} of "
        "the importance. mlops_monitoring_column_drifted names them; the run's report shows "
        "each column's score.",
        key="project",
    ),
    Alert(
        "MLOpsLiveQualityDrop",
        "max by (project, metric) (\n"
        f'    mlops_monitoring_live_metric{{metric=~"{metric_names(SCORES)}"}}\n'
        f'  < mlops_monitoring_registered_metric{{metric=~"{metric_names(SCORES)}"}}'
        f" - {SCORE_TOLERANCE:g}\n"
        "  or\n"
        f'    mlops_monitoring_live_metric{{metric=~"{metric_names(ERRORS)}"}}\n'
        f'  > mlops_monitoring_registered_metric{{metric=~"{metric_names(ERRORS)}"}}'
        f" * {1 + ERROR_TOLERANCE:g}\n"
        ")\n"
        "and on (project) max by (project) (mlops_monitoring_labelled_rows)"
        f" >= {MIN_LABELLED_ROWS}",
        "5m",
        "warning",
        "Live {{ $labels.metric }} of {{ $labels.project }} is worse than its registered figure",
        "On the labelled rows of its last monitoring run, the champion of {{ $labels.project }} "
        'has {{ $labels.metric }} {{ $value | printf "%.4g" }}: worse than on its test split '
        f"at registration by more than the tolerance ({SCORE_TOLERANCE:g} below for a score, "
        f"{ERROR_TOLERANCE:.0%} above for an error). "
        "mlops_monitoring_registered_metric has the registered figure.",
        key="project",
    ),
    Alert(
        "MLOpsRetrainRecommended",
        "max by (project) (mlops_monitoring_retrain_recommended) == 1",
        "5m",
        "info",
        "The last monitoring run recommends retraining {{ $labels.project }}",
        "The monitoring policy calls for retraining {{ $labels.project }}: its inputs drifted, "
        "or its live quality fell short of the registered one. The run's latest.json and "
        "report give the reason.",
        key="project",
    ),
    Alert(
        "MLOpsMonitoringStale",
        "time() - max by (project) (mlops_monitoring_last_run_timestamp_seconds)\n"
        f"  > {STALE_AFTER_HOURS} * 3600",
        "10m",
        "warning",
        f"{{{{ $labels.project }}}} has not been monitored for over {STALE_AFTER_HOURS} hours",
        "The last monitoring run of {{ $labels.project }} pushed its figures "
        "{{ $value | humanizeDuration }} ago: its recurring run stopped or fails before "
        "publishing, so drift and quality go unchecked.",
        key="project",
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

"""Alertmanager's route from the action alerts to the alert receiver (pipelines/alert_receiver.py),
as code, in the two forms it takes: the configuration file an Alertmanager reads
(`alertmanager_config`: this machine's stack and the tests), and the prometheus-operator's
AlertmanagerConfig that adds the same route on a cluster (`alertmanager_config_resource`,
generated into manifests/components/alert-receiver by `make generate`).

Both group a notification by alert name and project (`isvc` or `project`), send resolved
alerts too (a resolved alert no longer holds back a run), and put no limit on the alerts a
notification carries. The receiver's gate, not Alertmanager's intervals, bounds the runs.

    python -m grafana.alertmanager --receiver-url http://127.0.0.1:9095/alerts [--token-file F]

prints the configuration file for an Alertmanager on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelines.alert_receiver import ACTION_ALERTS, ALERTS_PATH, PROJECT_LABELS, ROLLBACK_ALERTS

ROUTED = (*ACTION_ALERTS, *ROLLBACK_ALERTS)
"""What the receiver acts on: the alerts that start a monitoring run, and those that roll a
staged version back."""
RECEIVER = "mlops-alert-receiver"
"""The receiver's name in Alertmanager, and the name of its Kubernetes objects."""
DROP = "null"
"""The default route's receiver, which notifies nobody: this file routes the action alerts only."""
GROUP_BY = ("alertname", *PROJECT_LABELS)
GROUP_WAIT = "30s"
GROUP_INTERVAL = "5m"
REPEAT_INTERVAL = "4h"
"""Under the receiver's 6-hour cool-down: a repeat is deduplicated, not a second run."""
NAMESPACE = "kubeflow-mlops"
"""The prod overlay's namespace, where the component runs."""
PORT = 8080
CLUSTER_URL = f"http://{RECEIVER}.{NAMESPACE}.svc:{PORT}{ALERTS_PATH}"
TOKEN_SECRET = f"{RECEIVER}-token"
TOKEN_KEY = "token"


def _alertname_regex(alerts: Sequence[str]) -> str:
    # Alert names are identifiers; Alertmanager anchors the regex.
    return "|".join(alerts)


def alertmanager_config(
    receiver_url: str,
    token_file: str | Path | None = None,
    *,
    group_wait: str = GROUP_WAIT,
    group_interval: str = GROUP_INTERVAL,
    repeat_interval: str = REPEAT_INTERVAL,
    alerts: Sequence[str] = ROUTED,
) -> dict[str, Any]:
    """An Alertmanager configuration (alertmanager.yml) that sends `alerts` to the receiver at
    `receiver_url` with the bearer token in `token_file`, and every other alert nowhere."""
    webhook: dict[str, Any] = {"url": receiver_url, "send_resolved": True, "max_alerts": 0}
    if token_file:
        webhook["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
        }
    return {
        "route": {
            "receiver": DROP,
            "group_by": list(GROUP_BY),
            "routes": [
                {
                    "receiver": RECEIVER,
                    "matchers": [f'alertname=~"{_alertname_regex(alerts)}"'],
                    "group_by": list(GROUP_BY),
                    "group_wait": group_wait,
                    "group_interval": group_interval,
                    "repeat_interval": repeat_interval,
                }
            ],
        },
        "receivers": [{"name": DROP}, {"name": RECEIVER, "webhook_configs": [webhook]}],
    }


def alertmanager_config_resource(
    receiver_url: str = CLUSTER_URL,
    *,
    group_wait: str = GROUP_WAIT,
    group_interval: str = GROUP_INTERVAL,
    repeat_interval: str = REPEAT_INTERVAL,
    alerts: Sequence[str] = ROUTED,
) -> dict[str, Any]:
    """The same route as an AlertmanagerConfig (monitoring.coreos.com/v1alpha1), its token read
    from the Secret `mlops-alert-receiver-token` of its own namespace."""
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {
            "name": RECEIVER,
            "labels": {
                "app.kubernetes.io/name": RECEIVER,
                "app.kubernetes.io/part-of": "kubeflow-mlops",
                "app.kubernetes.io/component": "alert-receiver",
            },
        },
        "spec": {
            "route": {
                "receiver": RECEIVER,
                "matchers": [
                    {"name": "alertname", "matchType": "=~", "value": _alertname_regex(alerts)}
                ],
                "groupBy": list(GROUP_BY),
                "groupWait": group_wait,
                "groupInterval": group_interval,
                "repeatInterval": repeat_interval,
            },
            "receivers": [
                {
                    "name": RECEIVER,
                    "webhookConfigs": [
                        {
                            "url": receiver_url,
                            "sendResolved": True,
                            "maxAlerts": 0,
                            "httpConfig": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials": {"name": TOKEN_SECRET, "key": TOKEN_KEY},
                                }
                            },
                        }
                    ],
                }
            ],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receiver-url", required=True, help="the receiver's POST /alerts URL")
    parser.add_argument("--token-file", default="", help="a file holding the receiver's token")
    args = parser.parse_args(argv)
    config = alertmanager_config(args.receiver_url, args.token_file or None)
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

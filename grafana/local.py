"""Prometheus on this machine, scraping model servers on localhost with the alert rules loaded.

The scrape targets get the `isvc` label that the PodMonitor sets on a cluster, so the rules and
the dashboard's queries read the same series here as there. Given a Pushgateway (`--pushgateway`
or env PUSHGATEWAY, e.g. `make pushgateway`), it scrapes that too with `honor_labels`, as the
ServiceMonitor does on a cluster, so the monitoring runs' pushed `job` and `project` are kept.
`make prometheus` runs it against `make serve`; the monitoring tests run it against their own
servers and Pushgateway.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from grafana import alerts

RULES = Path(__file__).resolve().parent / "alerts" / f"{alerts.GROUP_NAME}.rules.yml"
JOB = "mlops-serving"
PUSHGATEWAY_JOB = "mlops-pushgateway"
"""The scrape job's name; the series keep the pushed job, `mlops-monitoring`."""


def file_targets(targets: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """`targets` ((project, host:port); replicas repeat the project) as a file_sd file's body."""
    return [{"targets": [address], "labels": {"isvc": project}} for project, address in targets]


def prometheus_config(
    targets: dict[str, str],
    interval: str = "5s",
    pushgateway: str | None = None,
    *,
    targets_file: Path | None = None,
    alertmanager: str | None = None,
    rules: Path = RULES,
) -> dict[str, Any]:
    """Scrape config for `targets` (project -> host:port), and the servers `targets_file` lists
    (reread whenever it changes), and, when given, the Pushgateway at `pushgateway` (host:port),
    with the rules loaded and the alerts sent to the Alertmanager at `alertmanager`."""
    serving: dict[str, Any] = {"job_name": JOB}
    if targets:
        serving["static_configs"] = file_targets(sorted(targets.items()))
    if targets_file is not None:
        serving["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "5s"}]
    scrapes: list[dict[str, Any]] = [serving] if len(serving) > 1 else []
    if pushgateway:
        scrapes.append(
            {
                "job_name": PUSHGATEWAY_JOB,
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway]}],
            }
        )
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": scrapes,
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def command(config: Path, data: Path, listen: str) -> list[str]:
    """Prometheus's command line; the caller checks that it is installed."""
    return [
        shutil.which("prometheus") or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={listen}",
    ]


def _parse_target(text: str) -> tuple[str, str]:
    project, sep, address = text.partition("=")
    if not sep or ":" not in address:
        raise argparse.ArgumentTypeError(f"expected PROJECT=HOST:PORT, got {text!r}")
    return project, address


def _parse_address(text: str) -> str:
    if text and ":" not in text:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="+", type=_parse_target, help="PROJECT=HOST:PORT")
    parser.add_argument("--state", type=Path, default=Path(".state/prometheus"))
    parser.add_argument("--listen", default="127.0.0.1:9090")
    parser.add_argument(
        "--pushgateway",
        type=_parse_address,
        default=os.environ.get("PUSHGATEWAY", ""),
        help="HOST:PORT of a Pushgateway to scrape too (default: env PUSHGATEWAY)",
    )
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)
    config = args.state / "prometheus.yml"
    targets = dict(args.targets)
    config.write_text(yaml.safe_dump(prometheus_config(targets, pushgateway=args.pushgateway)))
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed: apt-get install prometheus")
    argv_ = command(config, args.state / "data", args.listen)
    scraped = f"{targets}" + (
        f" and the Pushgateway {args.pushgateway}" if args.pushgateway else ""
    )
    print(f"Prometheus on http://{args.listen} scraping {scraped}", file=sys.stderr)
    os.execv(argv_[0], argv_)
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    raise SystemExit(main())

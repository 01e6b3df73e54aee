"""Checkov policies for Terraform's `helm_release`, which checkov's own checks pass unseen.

Checkov reads the release's attributes, not the chart: what the chart deploys is scanned only by
rendering it (`helm template` piped to checkov, on a machine that reaches the chart registries).
These policies check what the release itself decides: which chart, fetched how, with what
values. They run in `make check-manifests` (--external-checks-dir) and outside checkov in
tests/cluster/test_security.py.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
TLS_REPOSITORY = re.compile(r"^(https|oci)://")
# A key that holds a secret itself; keys naming where one is (passwordKey, existingSecret,
# tokenSecretName, ...) are fine.
SECRET_KEY = re.compile(r"(?i)(password|passwd|token|api[_-]?key|secret[_-]?key|private[_-]?key)")
REFERENCE_KEY = re.compile(r"(?i)(key|name|ref|existingsecret|secret|file|path)$")
# Keys in the `values` text as checkov reads it: 'key': ..., "key": ..., key = ..., key: ...
VALUES_KEY = re.compile(r"""['"]?([A-Za-z_][\w.-]*)['"]?\s*(?::|=)(?!=)""")


def first(conf: dict[str, Any], name: str) -> Any:
    value = conf.get(name)
    return value[0] if isinstance(value, list) and value else value


def secret_keys(keys: list[str]) -> list[str]:
    return [
        key
        for key in keys
        if SECRET_KEY.search(key.rsplit(".", 1)[-1])
        and not REFERENCE_KEY.search(key.rsplit(".", 1)[-1])
    ]


class PinnedChartVersion(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="Helm release pins an exact chart version",
            id="CKV_MLOPS_HELM_1",
            categories=[CheckCategories.SUPPLY_CHAIN],
            supported_resources=["helm_release"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        version = first(conf, "version")
        if isinstance(version, str) and version.startswith("${var."):
            # A variable: its default is checked where it is declared (test_security.py).
            return CheckResult.PASSED
        if isinstance(version, str) and EXACT_VERSION.match(version):
            return CheckResult.PASSED
        return CheckResult.FAILED


class ChartOverTls(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="Helm release fetches its chart over TLS (https:// or oci:// repository)",
            id="CKV_MLOPS_HELM_2",
            categories=[CheckCategories.SUPPLY_CHAIN],
            supported_resources=["helm_release"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        repository = first(conf, "repository")
        source = repository if repository else first(conf, "chart")
        if isinstance(source, str) and (
            TLS_REPOSITORY.match(source) or (not repository and "://" not in source)
        ):
            # A repository over TLS, or a chart from a local path.
            return CheckResult.PASSED
        return CheckResult.FAILED


class NoSecretInValues(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="Helm release passes secrets through set_sensitive, not values or set",
            id="CKV_MLOPS_HELM_3",
            categories=[CheckCategories.SECRETS],
            supported_resources=["helm_release"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        keys = [str(first(block, "name")) for block in conf.get("set", []) or []]
        for values in conf.get("values", []) or []:
            for text in values if isinstance(values, list) else [values]:
                keys += VALUES_KEY.findall(str(text))
        found = secret_keys(keys)
        if found:
            self.details.append(f"secret-looking keys outside set_sensitive: {sorted(found)}")
            return CheckResult.FAILED
        return CheckResult.PASSED


pinned_chart_version = PinnedChartVersion()
chart_over_tls = ChartOverTls()
no_secret_in_values = NoSecretInValues()

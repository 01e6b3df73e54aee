"""Writes the JSON schemas of the custom resources the manifests use, from Python packages that
carry their APIs (the CRD files themselves are published only on GitHub).

Run once per version change, in a scratch venv with exactly these packages (SOURCES), never in
the project's:

    uv venv /tmp/schemas && VIRTUAL_ENV=/tmp/schemas uv pip install \
        kserve==0.21.0 kubernetes==35.0.0 \
        cloudcoil-models-prometheus-operator==0.79.2.1 cloudcoil-models-istio==1.24.2.1
    /tmp/schemas/bin/python tests/cluster/schemas/build.py tests/cluster/schemas

- InferenceService, ClusterStorageContainer: KServe's Python SDK models at v0.21.0, which KServe
  generates from the same Go API types as its CRDs (field names, types, required fields); the pod
  fields come from the Kubernetes client's models (35.0.0, the oldest that installs beside that
  SDK: its urllib3 floor rules out the 1.34 client of KServe's own Go API types).
- PodMonitor, ServiceMonitor, PrometheusRule, AlertmanagerConfig (v1alpha1): cloudcoil's models
  generated from the prometheus-operator v0.79.2 CRDs.
- AuthorizationPolicy, RequestAuthentication: cloudcoil's models generated from the Istio 1.24.2
  CRDs.

Every object is closed (additionalProperties: false), as the API server's strict field
validation (kubectl's default) refuses unknown fields. Enums, patterns and CEL rules of the CRDs
are not carried over.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

SOURCES = {
    "kserve": "0.21.0",
    "kubernetes": "35.0.0",
    "cloudcoil.models.prometheus_operator": "0.79.2.1",
    "cloudcoil.models.istio": "1.24.2.1",
}
GO_PACKAGE = re.compile(
    r"^K8sIoApi(?:machineryPkgApisMeta|[A-Z][a-z]+)((?:V\d+)(?:alpha\d+|beta\d+)?[A-Z]\w+)$"
)
LIST = re.compile(r"^list\[(.+)\]$")
DICT = re.compile(r"^dict\(str, (.+)\)$")
PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string"},
    "date": {"type": "string"},
    "object": {},
}
QUANTITY = {"type": ["string", "integer", "number"]}


def openapi_model(name: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    # The SDK names some Kubernetes types by their Go package (K8sIoApiAutoscalingV2Foo).
    go_name = GO_PACKAGE.match(name)
    candidates = [name] + ([go_name[1]] if go_name else [])
    for candidate in candidates:
        for module in (kserve.models, kubernetes.client.models):
            if hasattr(module, candidate):
                return getattr(module, candidate)
    raise KeyError(f"no model {name}")


def required(cls: Any, attribute: str) -> bool:
    setter = getattr(cls, attribute).fset
    return setter is not None and "must not be `None`" in inspect.getsource(setter)


def sdk_schema(root: str) -> dict[str, Any]:
    """A JSON schema from openapi-generator models (their openapi_types and attribute_map)."""
    defs: dict[str, Any] = {}
    unresolved: list[str] = []

    def of(type_name: str, owner: str = "", field: str = "") -> dict[str, Any]:
        if owner == "V1ResourceRequirements" and field in {"limits", "requests"}:
            return {"type": "object", "additionalProperties": QUANTITY}
        if type_name in PRIMITIVES:
            return PRIMITIVES[type_name]
        if match := LIST.match(type_name):
            return {"type": "array", "items": of(match[1])}
        if match := DICT.match(type_name):
            return {"type": "object", "additionalProperties": of(match[1])}
        if type_name in unresolved:
            return {}
        if type_name not in defs:
            try:
                cls = openapi_model(type_name)
            except KeyError:
                # A type the SDK names but does not define (a quantity): any value.
                unresolved.append(type_name)
                return {}
            defs[type_name] = {}
            properties = {
                cls.attribute_map[attr]: of(kind, type_name, attr)
                for attr, kind in cls.openapi_types.items()
            }
            defs[type_name] = {
                "type": "object",
                "properties": properties,
                "required": sorted(
                    cls.attribute_map[attr] for attr in cls.openapi_types if required(cls, attr)
                ),
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{type_name}"}

    top = of(root)
    header = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"types the SDK names without defining, so any value: {sorted(unresolved)}",
    }
    return header | {"$defs": defs} | top


def closed(schema: Any) -> Any:
    """Every object with declared properties refuses others."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def pydantic_schema(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema"} | closed(schema)


def main(directory: Path) -> None:
    from importlib.metadata import version

    import kserve  # noqa: F401

    found = {
        "kserve": version("kserve"),
        "kubernetes": version("kubernetes"),
        "cloudcoil.models.prometheus_operator": version("cloudcoil.models.prometheus_operator"),
        "cloudcoil.models.istio": version("cloudcoil.models.istio"),
    }
    if found != SOURCES:
        raise SystemExit(f"expected {SOURCES}, found {found}")
    from cloudcoil.models.istio.security import v1 as istio_security
    from cloudcoil.models.prometheus_operator import v1 as monitoring
    from cloudcoil.models.prometheus_operator import v1alpha1 as monitoring_alpha

    schemas = {
        ("serving.kserve.io/v1beta1", "InferenceService"): sdk_schema("V1beta1InferenceService"),
        ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"): sdk_schema(
            "V1alpha1ClusterStorageContainer"
        ),
        ("monitoring.coreos.com/v1", "PodMonitor"): pydantic_schema(monitoring.PodMonitor),
        ("monitoring.coreos.com/v1", "ServiceMonitor"): pydantic_schema(monitoring.ServiceMonitor),
        ("monitoring.coreos.com/v1", "PrometheusRule"): pydantic_schema(monitoring.PrometheusRule),
        ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): pydantic_schema(
            monitoring_alpha.AlertmanagerConfig
        ),
        ("security.istio.io/v1", "AuthorizationPolicy"): pydantic_schema(
            istio_security.AuthorizationPolicy
        ),
        ("security.istio.io/v1", "RequestAuthentication"): pydantic_schema(
            istio_security.RequestAuthentication
        ),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for (api_version, kind), schema in schemas.items():
        group, _, ver = api_version.partition("/")
        path = directory / f"{group}_{ver}_{kind}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(path)
    (directory / "SOURCES.json").write_text(json.dumps(SOURCES, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

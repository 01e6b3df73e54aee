"""Every document of the built manifests against its API's schema: the Kubernetes kinds against
the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields refused) of KUBERNETES,
the custom resources against the schemas vendored in tests/cluster/schemas/ (their sources in
SOURCES.json, how they are made in build.py). A kind with no schema is an error, not a pass.

Runs in the checks' own venv (tests/cluster/tools.lock), not the project's:

    python tests/cluster/validate_schemas.py FILE.yaml...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES = "1.30.0"
"""The oldest Kubernetes the manifests support (ValidatingAdmissionPolicy is v1 from 1.30)."""
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def custom_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.partition("/")
    path = SCHEMAS / f"{group}_{version}_{kind}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def problems(doc: dict[str, Any]) -> list[str]:
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    schema = custom_schema(api_version, kind)
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '.'}: {error.message}"
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.path) or "."
        return [f"{where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {api_version} {kind} (Kubernetes {KUBERNETES} or vendored)"]
    return []


def misspelt(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document with a misspelt field deep in it, which its schema must refuse; None for a
    document without a `spec` (a Namespace, a ConfigMap)."""
    copy = json.loads(json.dumps(doc))
    spec = copy.get("spec")
    if not isinstance(spec, dict):
        return None
    inner = spec.get("predictor") or spec.get("template", {}).get("spec") or spec
    containers = inner.get("containers") if isinstance(inner, dict) else None
    if containers:
        containers[0]["securityContex"] = containers[0].pop("securityContext", {})
    else:
        spec["selectr"] = {}
    return copy


def main(paths: list[str]) -> int:
    checked = failed = caught = 0
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            checked += 1
            # The schema must be strict enough to refuse a typo, or passing it means little.
            wrong = misspelt(doc)
            if wrong is not None:
                if not problems(wrong):
                    failed += 1
                    print(f"{path}: {doc.get('kind')}: a misspelt field passes its schema")
                    continue
                caught += 1
            found = problems(doc)
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if found:
                failed += 1
                for problem in found:
                    print(f"{path}: {name}: {problem}")
    print(f"schemas: misspelt fields refused in {caught} documents")
    print(f"schemas: {checked - failed} passed, {failed} failed")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

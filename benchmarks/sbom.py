"""The image's software bill of materials, read from the built image itself (`make image` runs it).

    python -m benchmarks.sbom [--image IMAGE] [--out .state/image/sbom.cdx.json]

It lists what is installed in the image, not what a lock file asks for: the Python packages of
its venv (`pip list`) and the Debian packages of its base (`dpkg-query`), as a CycloneDX 1.5 JSON
document with package URLs, the image's ID and its base. It fails when a test or lint tool is in
the image, or when the venv differs from the runtime lock.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.image_check import PODMAN, RUN
from components.image import IMAGE

FORBIDDEN = ("pytest", "ruff", "mypy", "coverage", "hypothesis")
"""Tools that belong to development, never to the image."""
LOCK = Path("requirements-runtime.lock")
LABELS = {
    "base-image": "org.opencontainers.image.base.name",
    "base-digest": "org.opencontainers.image.base.digest",
    "revision": "org.opencontainers.image.revision",
}
"""What the image says of its origin (labels `make image` sets)."""


def in_image(image: str, *command: str) -> str:
    done = subprocess.run(
        [*RUN, "--entrypoint", command[0], image, *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout


def inspect(image: str, template: str) -> str:
    done = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", template, image],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path = LOCK) -> dict[str, str]:
    return {
        normal(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", path.read_text(), re.M)
    }


def python_packages(image: str) -> dict[str, str]:
    listed = json.loads(in_image(image, "python", "-m", "pip", "list", "--format=json"))
    return {normal(p["name"]): p["version"] for p in listed}


def debian_packages(image: str) -> dict[str, str]:
    text = in_image(image, "dpkg-query", "-W", "-f=${Package}\t${Version}\n")
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def problems(installed: dict[str, str], lock: dict[str, str]) -> list[str]:
    found = [f"{tool} is in the image" for tool in FORBIDDEN if tool in installed]
    for name, version in lock.items():
        if installed.get(name) != version:
            found.append(f"{name}: lock {version}, image {installed.get(name, 'missing')}")
    tooling = {"pip", "setuptools", "wheel"}
    found += [
        f"{name} {version} is in the image but not in the lock"
        for name, version in installed.items()
        if name not in lock and name not in tooling
    ]
    return found


def document(image: str, python: dict[str, str], debian: dict[str, str]) -> dict[str, Any]:
    components = [
        {"type": "library", "name": n, "version": v, "purl": f"pkg:pypi/{n}@{v}"}
        for n, v in sorted(python.items())
    ] + [
        {
            "type": "library",
            "name": n,
            "version": v,
            "purl": f"pkg:deb/debian/{n}@{v}?distro=bookworm",
        }
        for n, v in sorted(debian.items())
    ]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "component": {
                "type": "container",
                "name": image,
                "version": inspect(image, "{{.Id}}"),
                "properties": [
                    {"name": name, "value": inspect(image, f'{{{{index .Labels "{label}"}}}}')}
                    for name, label in LABELS.items()
                ]
                + [{"name": "size-bytes", "value": inspect(image, "{{.Size}}")}],
            },
        },
        "components": components,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--out", default=".state/image/sbom.cdx.json")
    args = parser.parse_args(argv)
    python = python_packages(args.image)
    debian = debian_packages(args.image)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document(args.image, python, debian), indent=2))
    size_mb = int(inspect(args.image, "{{.Size}}")) / 1e6
    print(
        f"SBOM of {args.image}: {len(python)} Python and {len(debian)} Debian packages, "
        f"image {size_mb:,.0f} MB -> {out}"
    )
    found = problems(python, locked())
    for line in found:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
